//! Store sync, fritz2's `syncWith` done properly: two stores in two tasks edit one person through a
//! sync hub, and both end with the same value.
//!
//! ```kotlin
//! val people = Resource(Person::_id, PersonSerializer, Person())
//! val entityStore = object : RootStore<Person>(people.emptyEntity) {
//!     init { syncWith(socket, people) }
//! }
//! ```
//!
//! `cargo run -p switchboard --example sync_people` starts its own server (the hub over a SQLite
//! file in a temporary folder); pass a URL (`ws://127.0.0.1:3333/sync/people`) to use `switchboard
//! serve` instead.

use serde::{Deserialize, Serialize};
use switchboard::sync::{Collection, Json, Resource, SqliteStore, Store, SyncHub};
use switchboard::{websocket, Switchboard};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Person {
    name: String,
    age: u32,
    _id: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (url, _server) = match std::env::args().nth(1) {
        Some(url) => (url, None),
        None => {
            let file = std::env::temp_dir().join(format!("sync_people-{}.sqlite3", std::process::id()));
            let hub = SyncHub::new(SqliteStore::open(&file)?).collection("people", Collection::new());
            let server = Switchboard::new().sync("/sync", hub).bind("127.0.0.1:0").await?;
            (format!("ws://{}/sync/people", server.local_addr()), Some(server))
        }
    };
    let people = Resource::new(|p: &Person| p._id.clone(), Json, Person::default());
    let socket = websocket(&url)?;

    // Two stores of the same person, each synced over its own connection.
    let ada = Person { name: "Ada".into(), age: 36, _id: "ada".into() };
    let mut editors = Vec::new();
    for name in ["left", "right"] {
        let store = Store::new(ada.clone());
        let sync = store.sync_with(&socket, &people);
        editors.push(tokio::spawn(async move {
            sync.synced().await;
            for _ in 0..5 {
                store.update(|p| p.age += 1); // goes to the server; others' changes come back
            }
            sync.synced().await;
            println!("{name}: {:?} (pending {})", store.current(), sync.pending().len());
            (store, sync)
        }));
    }
    let mut stores = Vec::new();
    for editor in editors {
        stores.push(editor.await?);
    }
    // Last write wins (each change is the whole person), and both stores end with the same value.
    for _ in 0..100 {
        if stores[0].0.current() == stores[1].0.current() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    println!("converged: {:?}", stores[0].0.current());
    for (_, sync) in &stores {
        sync.stop().await;
    }
    Ok(())
}
