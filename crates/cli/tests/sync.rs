//! Store sync against the real `switchboard serve`, each scenario twice: on its SQLite data folder
//! and on a private PostgreSQL cluster. Convergence, compare-and-set, exactly once across a killed
//! server, resumption with `since`, refetch past the log, `ready` meaning live, fritz2's raw format
//! beside v1 clients, and bad input.

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use support::postgres::PgCluster;
use support::sync::SyncClient;
use support::ServeProcess;
use switchboard::websocket;

/// Where a scenario's server keeps the collections; it outlives the servers a scenario restarts.
enum Backend {
    Sqlite(std::path::PathBuf),
    Postgres { url: String, _cluster: PgCluster },
}

impl Backend {
    fn sqlite(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("switchboard-sync-{name}-{}", std::process::id()));
        Self::Sqlite(dir)
    }

    fn postgres() -> Self {
        let cluster = PgCluster::start();
        Self::Postgres { url: cluster.database("sync"), _cluster: cluster }
    }

    fn serve(&self, extra: &[&str]) -> ServeProcess {
        let mut args = match self {
            Self::Sqlite(dir) => vec!["--data", dir.to_str().expect("utf-8 path")],
            Self::Postgres { url, .. } => vec!["--database", url.as_str()],
        };
        args.extend_from_slice(extra);
        ServeProcess::start(&args)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Self::Sqlite(dir) = self {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Runs each scenario as a test on SQLite and as a test on PostgreSQL.
macro_rules! on_both_stores {
    ($($scenario:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[tokio::test]
            async fn $scenario() {
                super::$scenario(super::Backend::sqlite(stringify!($scenario))).await
            })*
        }
        mod on_postgres {
            $(#[tokio::test]
            async fn $scenario() {
                super::$scenario(super::Backend::postgres()).await
            })*
        }
    };
}

on_both_stores!(
    two_clients_writing_one_entity_converge_and_base_version_lets_exactly_one_win,
    a_mutation_replayed_after_the_server_was_killed_gets_its_first_ack_and_applies_once,
    a_client_resuming_with_since_gets_every_later_change_once_and_a_truncated_log_gives_refetch,
    a_write_right_after_ready_reaches_every_subscriber,
    fritz2_raw_clients_and_v1_clients_see_each_others_changes,
    bad_sync_input_is_named_and_harms_no_one_else,
);

async fn two_clients_writing_one_entity_converge_and_base_version_lets_exactly_one_win(backend: Backend) {
    let server = backend.serve(&[]);
    let (mut a, got) = SyncClient::subscribe(server.addr, "people", "client-a", None).await;
    assert_eq!(got, vec![json!({"type":"snapshot","entities":[],"version":0}), json!({"type":"ready","version":0})]);
    let (mut b, _) = SyncClient::subscribe(server.addr, "people", "client-b", None).await;

    // Last write wins: both write at once; both see both changes in one order and end equal.
    a.mutate("a1", "p1", json!({"name": "Ada", "age": 36}), None).await;
    b.mutate("b1", "p1", json!({"name": "Bob", "age": 40}), None).await;
    let mut seen_a = Vec::new();
    let mut seen_b = Vec::new();
    while seen_a.len() < 2 {
        seen_a.push(a.recv_type("change").await);
    }
    while seen_b.len() < 2 {
        seen_b.push(b.recv_type("change").await);
    }
    assert_eq!(seen_a, seen_b, "every subscriber sees the same changes in the same order");
    assert_eq!(seen_a[0]["version"], 1);
    assert_eq!(seen_a[1]["version"], 2);

    // Compare-and-set: both write on top of version 2; exactly one is applied.
    a.mutate("a2", "p1", json!({"name": "Ada", "age": 37}), Some(2)).await;
    b.mutate("b2", "p1", json!({"name": "Bob", "age": 41}), Some(2)).await;
    let answer_a = a.answer("a2").await;
    let answer_b = b.answer("b2").await;
    let (winner, loser) = match (answer_a["type"].as_str(), answer_b["type"].as_str()) {
        (Some("ack"), Some("reject")) => (answer_a, answer_b),
        (Some("reject"), Some("ack")) => (answer_b, answer_a),
        other => panic!("exactly one of two writes on one base version wins: {other:?}"),
    };
    assert_eq!(winner["version"], 3);
    assert_eq!(loser["retryable"], false);
    assert_eq!(loser["current"]["version"], 3, "the loser rolls back to the winner's value: {loser}");
    assert_eq!(loser["current"]["data"], winner["data"]);
    assert!(loser["reason"].as_str().unwrap_or("").contains("version conflict"), "{loser}");
    drop(server);
}

async fn a_mutation_replayed_after_the_server_was_killed_gets_its_first_ack_and_applies_once(backend: Backend) {
    let server = backend.serve(&[]);
    let (writer, _) = SyncClient::subscribe(server.addr, "counters", "writer", None).await;
    let (mut observer, _) = SyncClient::subscribe(server.addr, "counters", "observer", None).await;
    writer.mutate("m1", "c", json!({"count": 1}), Some(0)).await;
    // The observer sees the commit; the writer never reads its ack: it is lost with the server.
    let change = observer.recv_type("change").await;
    assert_eq!(change["version"], 1);
    drop(writer);
    drop(server); // SIGKILL

    let server = backend.serve(&[]);
    let (mut writer, got) = SyncClient::subscribe(server.addr, "counters", "writer", None).await;
    assert_eq!(got[0]["entities"], json!([{"id": "c", "data": {"count": 1}, "version": 1}]), "the commit survived");
    // The client sends its unanswered mutation again: same id, same base.
    writer.mutate("m1", "c", json!({"count": 1}), Some(0)).await;
    let ack = writer.recv().await;
    assert_eq!(ack, json!({"type": "ack", "mutation_id": "m1", "version": 1, "data": {"count": 1}}));
    // And again, as an increment without a base: still once.
    writer.mutate("m1", "c", json!({"count": 2}), None).await;
    assert_eq!(writer.recv().await["version"], 1);
    let (_, got) = SyncClient::subscribe(server.addr, "counters", "reader", None).await;
    assert_eq!(got[0]["version"], 1, "applied once: {got:?}");
    drop(server);
}

async fn a_client_resuming_with_since_gets_every_later_change_once_and_a_truncated_log_gives_refetch(backend: Backend) {
    let server = backend.serve(&["--sync-log", "8"]);
    let (mut writer, _) = SyncClient::subscribe(server.addr, "notes", "writer", None).await;
    for n in 1..=5u64 {
        writer.mutate(&format!("m{n}"), &format!("n{}", n % 2), json!({"n": n}), None).await;
        assert_eq!(writer.recv_type("ack").await["version"], n);
    }
    // A reader that had version 2 resumes: changes 3, 4, 5, once each, in order, then ready.
    let (_, got) = SyncClient::subscribe(server.addr, "notes", "reader", Some(2)).await;
    let versions: Vec<_> =
        got.iter().map(|m| (m["type"].as_str().unwrap_or("").to_owned(), m["version"].clone())).collect();
    assert_eq!(
        versions,
        vec![
            ("change".into(), json!(3)),
            ("change".into(), json!(4)),
            ("change".into(), json!(5)),
            ("ready".into(), json!(5))
        ]
    );
    assert_eq!(got[2]["data"], json!({"n": 5}));
    assert_eq!(got[2]["origin"], json!({"client": "writer", "mutation_id": "m5"}));

    // Past the log: 20 more changes with a log of 8 (pruned in steps); version 2 is gone.
    for n in 6..=25u64 {
        writer.mutate(&format!("m{n}"), "n0", json!({"n": n}), None).await;
        writer.recv_type("ack").await;
    }
    let (_, got) = SyncClient::subscribe(server.addr, "notes", "reader", Some(2)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["type"], "refetch");
    assert!(got[0]["reason"].as_str().unwrap_or("").contains("starts at version"), "{got:?}");
    // From the future (a database that was reset): refetch too.
    let (_, got) = SyncClient::subscribe(server.addr, "notes", "reader", Some(1000)).await;
    assert_eq!(got[0]["type"], "refetch");
    // A reader that is recent enough resumes.
    let (_, got) = SyncClient::subscribe(server.addr, "notes", "reader", Some(24)).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0]["version"], 25);
    drop(server);
}

async fn a_write_right_after_ready_reaches_every_subscriber(backend: Backend) {
    let server = backend.serve(&[]);
    let (writer, _) = SyncClient::subscribe(server.addr, "live", "writer", None).await;
    // Subscribers join while writes flow; each sees a contiguous run of versions after its ready.
    let writes = tokio::spawn(async move {
        for n in 1..=200u64 {
            writer.mutate(&format!("m{n}"), &format!("e{}", n % 7), json!({"n": n}), None).await;
        }
        writer
    });
    let mut readers = Vec::new();
    for r in 0..5 {
        readers.push(SyncClient::subscribe(server.addr, "live", &format!("reader-{r}"), None).await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _writer = writes.await.expect("writer");
    for (mut reader, got) in readers {
        let ready = got.last().expect("ready")["version"].as_u64().expect("version");
        let snapshot = &got[0];
        assert_eq!(snapshot["type"], "snapshot");
        // Changes committed while the snapshot was read come between it and ready, contiguous.
        let mut at = snapshot["version"].as_u64().expect("version");
        for held in &got[1..got.len() - 1] {
            assert_eq!(held["type"], "change");
            assert_eq!(held["version"].as_u64(), Some(at + 1), "{got:?}");
            at += 1;
        }
        assert_eq!(at, ready, "ready names the version the subscriber is at: {got:?}");
        let mut next = ready + 1;
        while next <= 200 {
            let change = reader.recv_type("change").await;
            assert_eq!(change["version"].as_u64(), Some(next), "contiguous after ready");
            next += 1;
        }
    }
    drop(server);
}

async fn fritz2_raw_clients_and_v1_clients_see_each_others_changes(backend: Backend) {
    let server = backend.serve(&[]);
    let (mut v1, _) = SyncClient::subscribe(server.addr, "people", "v1", None).await;
    v1.mutate("m1", "p7", json!({"_id": "p7", "name": "Ada", "age": 36}), None).await;
    assert_eq!(v1.recv_type("change").await["version"], 1);

    // fritz2's syncWith: no subprotocol, the entity's URL, bare JSON entities both ways.
    let raw = websocket(&format!("ws://{}/sync/people/p7", server.addr)).expect("url").connect();
    let mut raw_messages = raw.messages();
    let first =
        tokio::time::timeout(Duration::from_secs(5), raw_messages.next()).await.expect("current value").expect("open");
    assert_eq!(
        serde_json::from_str::<Value>(first.text().expect("text")).expect("json"),
        json!({"_id": "p7", "name": "Ada", "age": 36})
    );
    raw.send(json!({"_id": "p7", "name": "Ada", "age": 37}).to_string()).await.expect("send");
    let change = v1.recv_type("change").await;
    assert_eq!(change["version"], 2);
    assert_eq!(change["data"]["age"], 37);
    assert!(change["origin"]["client"].as_str().unwrap_or("").starts_with("fritz2:"), "{change}");

    v1.mutate("m2", "p7", json!({"_id": "p7", "name": "Ada", "age": 38}), None).await;
    let next =
        tokio::time::timeout(Duration::from_secs(5), raw_messages.next()).await.expect("v1's change").expect("open");
    // The raw client got the v1 client's value, not its own write back.
    assert_eq!(serde_json::from_str::<Value>(next.text().expect("text")).expect("json")["age"], 38);

    // A raw connection needs an entity; v1 needs the subprotocol.
    let (_, status) = support::RawClient::handshake(server.addr, "/sync/people", &[]).await;
    assert_eq!(status, 400);
    drop(server);
}

async fn bad_sync_input_is_named_and_harms_no_one_else(backend: Backend) {
    let server = backend.serve(&[]);
    let (mut good, _) = SyncClient::subscribe(server.addr, "things", "good", None).await;

    // Broken JSON and unknown types are protocol violations: 1008 with the reason.
    for (text, reason) in [
        ("{not json", "sync message: key must be a string"),
        (r#"{"type":"subscribe"}"#, "sync message: unknown variant `subscribe`"),
        (r#"{"type":"mutate","id":"a","data":1}"#, "sync message: missing field `mutation_id`"),
    ] {
        let bad = SyncClient::connect(server.addr, "things").await;
        bad.send_text(text).await;
        let close = tokio::time::timeout(Duration::from_secs(5), bad.session.closed()).await.expect("closed");
        assert_eq!(close.code, 1008, "{text}");
        assert!(close.reason.starts_with(reason), "{text}: {}", close.reason);
    }
    // Well formed but not servable: answered, the connection stays.
    let mut other = SyncClient::connect(server.addr, "things").await;
    other.mutate("early", "x", json!(1), None).await;
    let early = other.recv().await;
    assert_eq!(early["type"], "reject");
    assert!(early["reason"].as_str().unwrap_or("").contains("send sub before writing"), "{early}");
    other.send(json!({"type": "sub", "collection": "elsewhere"})).await;
    let wrong = other.recv().await;
    assert_eq!(wrong["type"], "error");
    assert!(wrong["reason"].as_str().unwrap_or("").contains("\"things\", not \"elsewhere\""), "{wrong}");
    other.send(json!({"type": "sub", "collection": "things", "client": "other"})).await;
    other.recv_type("ready").await;
    let big = "x".repeat(2 << 20);
    other.mutate("big", "x", json!({"blob": big}), None).await;
    let rejected = other.recv_type("reject").await;
    assert!(rejected["reason"].as_str().unwrap_or("").contains("at most 1048576"), "{rejected}");
    // The good subscriber saw none of that, and still gets the next change.
    other.mutate("fine", "x", json!({"ok": true}), None).await;
    let change = good.recv().await;
    assert_eq!(change["type"], "change");
    assert_eq!(change["data"], json!({"ok": true}));
    drop(server);
}
