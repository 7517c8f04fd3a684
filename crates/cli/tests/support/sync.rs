//! A `switchboard.sync.v1` test client that reads JSON messages.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use switchboard::client::Messages;
use switchboard::{websocket, Session};

/// A `switchboard.sync.v1` connection that reads JSON messages.
pub struct SyncClient {
    pub session: Session,
    messages: Messages,
}

impl SyncClient {
    pub async fn connect(addr: SocketAddr, collection: &str) -> Self {
        let session = websocket(&format!("ws://{addr}/sync/{collection}"))
            .expect("url")
            .protocols(["switchboard.sync.v1"])
            .connect();
        let messages = session.messages();
        Self { session, messages }
    }

    /// Connects and subscribes as `client`, returning the snapshot (or replayed changes) and `ready`.
    pub async fn subscribe(addr: SocketAddr, collection: &str, client: &str, since: Option<u64>) -> (Self, Vec<Value>) {
        let mut this = Self::connect(addr, collection).await;
        let mut sub = json!({"type": "sub", "collection": collection, "client": client});
        if let Some(since) = since {
            sub["since"] = since.into();
        }
        this.send(sub).await;
        let mut got = Vec::new();
        loop {
            let message = this.recv().await;
            let done = message["type"] == "ready" || message["type"] == "refetch";
            got.push(message);
            if done {
                return (this, got);
            }
        }
    }

    pub async fn send(&self, message: Value) {
        self.session.send(message.to_string()).await.expect("send");
    }

    pub async fn recv(&mut self) -> Value {
        let message = tokio::time::timeout(Duration::from_secs(10), self.messages.next())
            .await
            .expect("a sync message within 10 s")
            .expect("the session is open");
        serde_json::from_str(message.text().expect("text")).expect("JSON")
    }

    /// The next message of `kind`, skipping others (changes and answers interleave).
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        loop {
            let message = self.recv().await;
            if message["type"] == kind {
                return message;
            }
        }
    }

    pub async fn mutate(&self, mutation_id: &str, id: &str, data: Value, base_version: Option<u64>) {
        let mut message = json!({"type": "mutate", "mutation_id": mutation_id, "id": id, "data": data});
        if let Some(base) = base_version {
            message["base_version"] = base.into();
        }
        self.send(message).await;
    }
}

impl SyncClient {
    /// The `ack` or `reject` of one mutation, skipping everything else.
    pub async fn answer(&mut self, mutation_id: &str) -> Value {
        loop {
            let message = self.recv().await;
            if (message["type"] == "ack" || message["type"] == "reject") && message["mutation_id"] == mutation_id {
                return message;
            }
        }
    }
}

impl SyncClient {
    pub async fn send_text(&self, text: &str) {
        self.session.send(text.to_owned()).await.expect("send");
    }
}
