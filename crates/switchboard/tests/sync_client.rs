//! The Rust sync client (`Store::sync_with`, `sync_list_with`) against the hub over a real SQLite
//! file: fritz2's test-server fixture, server authority with rollback, the list variant, and 100
//! edits made offline acked in order once the server is back.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use switchboard::client::ReconnectPolicy;
use switchboard::sync::{
    Collection, Decision, EntityStore, Json, Operation, Resource, SqliteStore, Store, SyncHub, SyncStatus,
};
use switchboard::{websocket, Server, Switchboard};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Person {
    name: String,
    age: u32,
    _id: String,
}

fn people() -> Resource<Person> {
    Resource::new(|p: &Person| p._id.clone(), Json, Person::default())
}

fn database(name: &str) -> std::path::PathBuf {
    let file = std::env::temp_dir().join(format!("switchboard-sync-client-{name}-{}.sqlite3", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
    file
}

async fn serve(file: &std::path::Path, addr: &str, people: Collection) -> Server {
    serve_store(SqliteStore::open(file).expect("open the database"), addr, people).await
}

async fn serve_store(store: SqliteStore, addr: impl tokio::net::ToSocketAddrs, people: Collection) -> Server {
    let hub = SyncHub::new(store).collection("people", people);
    Switchboard::new().sync("/sync", hub).bind(addr).await.expect("bind")
}

async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), future).await.unwrap_or_else(|_| panic!("{what} within 10 s"))
}

async fn until(what: &str, condition: impl Fn() -> bool) {
    within(what, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn fritz2s_test_server_fixture_the_rewrite_lands_in_the_store_and_is_not_sent_back() {
    let file = database("fixture");
    let writes = Arc::new(AtomicUsize::new(0));
    let counted = writes.clone();
    // fritz2's test server: an entity with _id "test" comes back with its name set to "Hans".
    let rules = Collection::new().on_write(move |write| {
        counted.fetch_add(1, Ordering::SeqCst);
        match write.operation {
            Operation::Put(value) if value["_id"] == "test" => {
                let mut value = value.clone();
                value["name"] = "Hans".into();
                Decision::Rewrite(value)
            }
            _ => Decision::Accept,
        }
    });
    let server = serve(&file, "127.0.0.1:0", rules).await;
    let socket = websocket(&format!("ws://{}/sync/people", server.local_addr())).expect("url");
    let store = Store::new(Person { name: "".into(), age: 0, _id: "test".into() });
    let sync = store.sync_with(&socket, &people());
    within("synced", sync.synced()).await;
    assert_eq!(writes.load(Ordering::SeqCst), 0, "the initial value is not sent");

    store.update(|p| {
        p.name = "Ada".into();
        p.age = 36;
    });
    until("the server's value in the store", || store.current().name == "Hans").await;
    within("synced", sync.synced()).await;
    assert_eq!(store.current(), Person { name: "Hans".into(), age: 36, _id: "test".into() });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(writes.load(Ordering::SeqCst), 1, "what the server sent is not echoed back");
    sync.stop().await;
    assert_eq!(sync.current_status(), SyncStatus::Stopped);
}

#[tokio::test]
async fn a_write_the_server_refuses_rolls_the_store_back_and_is_reported() {
    let file = database("reject");
    let rules = Collection::new().on_write(|write| match write.operation {
        Operation::Put(value) if value["age"].as_u64().unwrap_or(0) > 150 => {
            Decision::Reject("age: at most 150".into())
        }
        _ => Decision::Accept,
    });
    let server = serve(&file, "127.0.0.1:0", rules).await;
    let socket = websocket(&format!("ws://{}/sync/people", server.local_addr())).expect("url");
    let store = Store::new(Person { name: "Ada".into(), age: 36, _id: "ada".into() });
    let sync = store.sync_with(&socket, &people());
    let other = Store::new(Person { _id: "ada".into(), ..Person::default() });
    let other_sync = other.sync_with(&socket, &people());
    within("synced", sync.synced()).await;
    within("synced", other_sync.synced()).await;
    store.update(|p| p.age = 37);
    within("synced", sync.synced()).await;
    until("the other store sees it", || other.current().age == 37).await;

    let mut rejections = sync.rejections();
    store.update(|p| p.age = 200);
    let rejection = within("a rejection", rejections.next()).await.expect("rejection");
    assert_eq!(rejection.reason, "age: at most 150");
    assert_eq!(rejection.current.as_ref().map(|c| c.version), Some(1));
    until("rolled back", || store.current().age == 37).await;
    assert!(sync.pending().is_empty());
    assert_eq!(other.current().age, 37, "the refused value reached no one");
}

#[tokio::test]
async fn a_list_store_syncs_the_whole_collection_by_id() {
    let file = database("list");
    let server = serve(&file, "127.0.0.1:0", Collection::new()).await;
    let socket = websocket(&format!("ws://{}/sync/people", server.local_addr())).expect("url");
    let left: Store<Vec<Person>> = Store::new(Vec::new());
    let right: Store<Vec<Person>> = Store::new(Vec::new());
    let left_sync = left.sync_list_with(&socket, &people());
    let right_sync = right.sync_list_with(&socket, &people());
    within("synced", left_sync.synced()).await;
    within("synced", right_sync.synced()).await;
    left.update(|list| {
        list.push(Person { name: "Ada".into(), age: 36, _id: "a".into() });
        list.push(Person { name: "Bob".into(), age: 40, _id: "b".into() });
    });
    until("both on the right", || right.current().len() == 2).await;
    right.update(|list| list.retain(|p| p._id != "a"));
    until("the deletion on the left", || left.current().len() == 1).await;
    assert_eq!(left.current(), vec![Person { name: "Bob".into(), age: 40, _id: "b".into() }]);
    within("synced", left_sync.synced()).await;
    within("synced", right_sync.synced()).await;
    assert_eq!(left.current(), right.current());
}

#[tokio::test]
async fn a_hundred_edits_made_offline_are_acked_in_order_when_the_server_is_back() {
    let file = database("offline");
    let server = serve(&file, "127.0.0.1:0", Collection::new()).await;
    let addr = server.local_addr();
    let socket = websocket(&format!("ws://{addr}/sync/people"))
        .expect("url")
        .reconnect(ReconnectPolicy::default().backoff(Duration::from_millis(20), Duration::from_millis(200)));
    let store: Store<Vec<Person>> = Store::new(Vec::new());
    let sync = store.sync_list_with(&socket, &people());
    within("synced", sync.synced()).await;

    server.shutdown().await;
    until("offline", || matches!(sync.current_status(), SyncStatus::Offline { .. })).await;
    for n in 0..100u32 {
        store.update(|list| list.push(Person { name: format!("p{n}"), age: n, _id: format!("{n:03}") }));
    }
    until("100 pending", || sync.current_status() == SyncStatus::Offline { pending: 100 }).await;
    let pending = sync.pending();
    assert_eq!(pending.first().map(|p| p.id.as_str()), Some("000"));
    assert_eq!(pending.last().map(|p| p.id.as_str()), Some("099"));

    // The same server comes back on the same address with the same database.
    let _server = serve(&file, &addr.to_string(), Collection::new()).await;
    let version = within("every edit acked", sync.synced()).await.expect("synced");
    assert_eq!(version, 100);
    assert!(sync.pending().is_empty());
    // The server applied them in the order they were made: entity n got version n + 1.
    let snapshot = SqliteStore::open(&file).expect("open").snapshot("people", None).await.expect("snapshot");
    let versions: Vec<u64> = snapshot.entities.iter().map(|e| e.version).collect();
    assert_eq!(versions, (1..=100).collect::<Vec<u64>>());
    let reader: Store<Vec<Person>> = Store::new(Vec::new());
    let reader_sync = reader.sync_list_with(&websocket(&format!("ws://{addr}/sync/people")).expect("url"), &people());
    within("synced", reader_sync.synced()).await;
    assert_eq!(reader.current().len(), 100);
    assert_eq!(reader.current(), store.current());
}

#[tokio::test]
async fn a_client_further_behind_than_the_log_refetches_on_its_own() {
    let file = database("refetch");
    let open = |file: &std::path::Path| SqliteStore::open_with_log_limit(file, 4).expect("open");
    let server = serve_store(open(&file), "127.0.0.1:0", Collection::new()).await;
    let addr = server.local_addr();
    let socket = websocket(&format!("ws://{addr}/sync/people"))
        .expect("url")
        .reconnect(ReconnectPolicy::default().backoff(Duration::from_millis(20), Duration::from_millis(200)));
    let store: Store<Vec<Person>> = Store::new(Vec::new());
    let sync = store.sync_list_with(&socket, &people());
    within("synced", sync.synced()).await;
    store.update(|list| list.push(Person { name: "first".into(), age: 1, _id: "000".into() }));
    assert_eq!(within("synced", sync.synced()).await, Some(1));
    server.shutdown().await;

    // While the client is away, 20 changes are made: far more than the log of 4 keeps.
    let direct = open(&file);
    for n in 1..=20u32 {
        let write = switchboard::sync::Write {
            collection: "people".into(),
            id: format!("{n:03}"),
            operation: Operation::Put(
                serde_json::to_value(Person { name: format!("p{n}"), age: n, _id: format!("{n:03}") }).expect("json"),
            ),
            base_version: None,
            origin: switchboard::sync::Origin { client: "elsewhere".into(), mutation_id: format!("m{n}") },
            decide: Arc::new(|_, _| Decision::Accept),
        };
        direct.write(write).await.expect("write");
    }
    drop(direct);
    let _server = serve_store(open(&file), addr, Collection::new()).await;
    // It resumes with since=1, is told to refetch, takes a snapshot, and is current again.
    until("the snapshot after the refetch", || store.current().len() == 21).await;
    assert_eq!(within("synced", sync.synced()).await, Some(21));
    assert_eq!(store.current()[20], Person { name: "p20".into(), age: 20, _id: "020".into() });
}
