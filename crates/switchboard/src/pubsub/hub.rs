//! `Hub`: publishing and inspecting topics from anywhere (a hook, a background task, an HTTP route).

use std::sync::Arc;

use super::history::Position;
use crate::server::{AppShared, Peer};
use crate::Message;

/// A handle to a server's topics and peers. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    pub(crate) app: Arc<AppShared>,
}

/// Pub/sub counters since the server started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PubSubStats {
    /// Topics with local subscribers or history.
    pub topics: usize,
    /// Publications handled (local and from other nodes).
    pub published: u64,
    /// Deliveries queued to subscribers.
    pub delivered: u64,
    /// Deliveries skipped for slow subscribers (policy `Drop`).
    pub dropped: u64,
    /// Slow subscribers closed with 1013 (policy `Close`): one per closed peer.
    pub slow_closed: u64,
    /// Bytes held by this node's memory history (all topics).
    pub history_bytes: usize,
    /// Kept publications evicted to stay within `HistoryConfig::max_bytes`.
    pub history_evicted: u64,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("stats", &self.stats()).finish()
    }
}

impl Hub {
    /// Publishes to every subscriber of `topic`, here and on the other nodes. Returns the number of
    /// local subscribers it was queued for.
    pub fn publish(&self, topic: &str, message: impl Into<Message>) -> usize {
        self.app.topics.publish(topic, &message.into(), None).0
    }

    /// Publishes like `publish` and waits for the publication's history position: `None` without
    /// history, or if the broker could not record it (it was still delivered locally).
    pub async fn publish_with_position(&self, topic: &str, message: impl Into<Message>) -> Option<Position> {
        self.app.topics.publish(topic, &message.into(), None).1.wait().await
    }

    /// The local subscribers of `topic`.
    pub fn subscribers(&self, topic: &str) -> Vec<Peer> {
        self.app.topics.subscribers(topic)
    }

    /// Every topic with local subscribers (or history), and its local subscriber count.
    pub fn topics(&self) -> Vec<(String, usize)> {
        self.app.topics.list()
    }

    /// The latest history position of `topic` (when history is on; read from the broker when it
    /// keeps the history).
    pub async fn position(&self, topic: &str) -> Option<Position> {
        self.app.topics.position(topic).await
    }

    /// Every open peer of the server.
    pub fn peers(&self) -> Vec<Peer> {
        self.app.peers()
    }

    /// Refuses new upgrades (503), sends 1001 to every peer, and waits up to `grace` for their close
    /// handshakes; peers still open after that are dropped. For routes served by your own HTTP server
    /// (`switchboard::axum`); a [`Server`](crate::Server) also stops accepting in its `shutdown`.
    pub async fn shutdown(&self, grace: std::time::Duration) {
        self.app.shutdown(grace).await;
    }

    /// Every route's open peers and traffic (connections, messages and bytes each way, close codes),
    /// in the order the routes were added. Routes made with `switchboard::axum::ws` have an empty path.
    pub fn endpoints(&self) -> Vec<crate::server::EndpointStats> {
        self.app.endpoints()
    }

    /// The connection counts at the door of the server serving these routes (`None` before it
    /// serves, or for routes mounted in another HTTP server).
    pub fn door(&self) -> Option<crate::server::DoorStats> {
        self.app.door()
    }

    /// Counters.
    pub fn stats(&self) -> PubSubStats {
        self.app.topics.stats()
    }
}
