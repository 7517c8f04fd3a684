//! `subscribe_since`: a subscriber that comes back replays what it missed, then receives live
//! publications, none lost and none twice.
//!
//! The subscriber is registered first as *recovering*: live publications are held back for it (within
//! its queue limit). The missed publications are then fed into its queue as the queue drains, outside
//! the topic's lock, so a backlog of any size the history holds goes through a queue limit of any
//! size, and nobody else waits for it. Last, what was held back is released, skipping what the replay
//! covered.

use std::sync::Arc;
use std::time::Duration;

use super::format::Publication;
use super::framed::Framed;
use super::history::{HistoryConfig, Position, Recovery};
use super::topics::{lock, read, Topics};
use crate::server::Peer;
use crate::Message;

/// How long `subscribe_since` waits for the broker before it gives up recovering.
pub(super) const RECOVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// A missed publication: kept in this node's memory (framed already, its position inside), or read
/// from the broker with its offset.
enum Missed {
    Kept(Arc<Framed>),
    Fetched(u64, Message),
}

impl Topics {
    /// Subscribes `peer` after replaying what it missed since `since`. Returns once the replay is
    /// queued (the caller's welcome then follows it).
    pub(crate) async fn subscribe_since(&self, topic: &str, peer: &Peer, since: &Position) -> Recovery {
        let not_recovered = Recovery { recovered: false, replayed: 0, position: since.clone() };
        let (recovery, missed) = match self.history() {
            None => {
                self.subscribe(topic, peer);
                return not_recovered;
            }
            Some((_, false)) => {
                let (recovery, missed, first) = self.with_topic(topic, |entry| {
                    // Under the topic's lock: nothing is published between the read and the hold-back.
                    let (recovery, missed) = match entry.history.as_mut() {
                        Some(history) => history.recover(since),
                        None => (not_recovered.clone(), Vec::new()),
                    };
                    let (_, first) = Self::add_to(entry, peer, true);
                    (recovery, missed, first)
                });
                if first {
                    self.broker().subscribe(topic);
                }
                (recovery, missed.into_iter().map(|(_, framed)| Missed::Kept(framed)).collect())
            }
            Some((config, true)) => self.read_broker_history(topic, peer, since, config).await,
        };
        self.replay(topic, peer, &recovery.position.epoch, missed).await;
        let covered = if recovery.recovered { recovery.position.offset } else { 0 };
        self.release_held(topic, peer, covered).await;
        recovery
    }

    /// The cluster case: hold live publications back, make sure this node receives the topic, then read
    /// the broker's history.
    async fn read_broker_history(
        &self,
        topic: &str,
        peer: &Peer,
        since: &Position,
        config: HistoryConfig,
    ) -> (Recovery, Vec<Missed>) {
        let (_, first) = self.with_topic(topic, |entry| Self::add_to(entry, peer, true));
        let broker = self.broker();
        if first {
            broker.subscribe(topic);
        }
        let read = async {
            if !tokio::time::timeout(RECOVERY_TIMEOUT, broker.ready(topic)).await.unwrap_or(false) {
                return Err("the broker is not connected".into());
            }
            match tokio::time::timeout(RECOVERY_TIMEOUT, broker.history(topic, since.offset, &config)).await {
                Ok(read) => read,
                Err(_) => Err("reading the history timed out".into()),
            }
        };
        match read.await {
            Ok(slice) => {
                let (recovery, missed) = slice.recover(since);
                (recovery, missed.into_iter().map(|(offset, message)| Missed::Fetched(offset, message)).collect())
            }
            Err(error) => {
                let error: crate::BoxError = error;
                tracing::warn!(topic, %error, "cannot recover from the broker's history");
                (Recovery { recovered: false, replayed: 0, position: since.clone() }, Vec::new())
            }
        }
    }

    /// Queues the missed publications one by one, each when the peer's queue has room for it.
    async fn replay(&self, topic: &str, peer: &Peer, epoch: &str, missed: Vec<Missed>) {
        let format = read(&self.config).format.clone();
        let limits = self.queue_limits();
        for missed in missed {
            let framed = match missed {
                Missed::Kept(framed) => framed,
                Missed::Fetched(offset, message) => {
                    let position = Position { epoch: epoch.to_owned(), offset };
                    let publication = Publication { topic, position: Some(&position), message: &message };
                    Arc::new(Framed::new(&format.apply(&publication)))
                }
            };
            if !peer.wait_for_room(framed.len(), limits.limit).await {
                return;
            }
            let frame = framed.frame_for_off_thread(peer).await;
            if !self.enqueue(topic, peer, frame, framed.len(), limits) {
                return;
            }
        }
    }

    /// Ends the recovery: what was held back goes to the queue as it drains (but what the replay
    /// covered), and once nothing is held back any more, live publications flow directly. What is
    /// published meanwhile is held back behind it, so the order is kept.
    async fn release_held(&self, topic: &str, peer: &Peer, covered: u64) {
        let limits = self.queue_limits();
        loop {
            let Some(entry) = read(&self.table).get(topic).cloned() else { return };
            let items = {
                let mut entry = lock(&entry);
                let Some(subscriber) = entry.subscribers.get_mut(&peer.id()) else { return };
                let Some(held) = subscriber.held.as_mut() else { return };
                if held.items.is_empty() {
                    subscriber.held = None;
                    return;
                }
                held.bytes = 0;
                std::mem::take(&mut held.items)
            };
            for pending in items.into_iter().filter(|p| p.offset.is_none_or(|offset| offset > covered)) {
                if !peer.wait_for_room(pending.len, limits.limit).await {
                    return;
                }
                self.enqueue(topic, peer, pending.frame, pending.len, limits);
            }
        }
    }
}
