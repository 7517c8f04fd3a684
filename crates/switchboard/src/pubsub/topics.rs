//! The local topic table: who is subscribed to what on this node, and the encode-once fan-out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use switchboard_wire::server_frame;
use uuid::Uuid;

use super::broker::{MemoryBroker, SharedBroker};
use super::history::{HistoryConfig, MemoryHistory, Position, Recovery};
use super::hub::PubSubStats;
use crate::server::{Outgoing, Peer, SlowConsumerPolicy};
use crate::Message;

/// Pub/sub settings of a server.
#[derive(Clone, Debug)]
pub struct PubSubConfig {
    /// Bytes a subscriber may have queued before `slow_consumer` applies (default 1 MiB).
    pub max_subscriber_queue: usize,
    /// What happens to a subscriber over that limit (default: close with 1013).
    pub slow_consumer: SlowConsumerPolicy,
    /// Per-topic history for `subscribe_since` (default: none).
    pub history: Option<HistoryConfig>,
}

impl Default for PubSubConfig {
    fn default() -> Self {
        Self { max_subscriber_queue: 1 << 20, slow_consumer: SlowConsumerPolicy::Close, history: None }
    }
}

#[derive(Default)]
struct Topic {
    subscribers: HashMap<Uuid, Peer>,
    history: Option<MemoryHistory>,
}

#[derive(Default)]
struct Counters {
    published: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
    slow_closed: AtomicU64,
}

pub(crate) struct Topics {
    /// Lock order: the table, then a topic. Publishing takes the table's read lock only.
    table: RwLock<HashMap<Arc<str>, Arc<Mutex<Topic>>>>,
    pub(crate) config: RwLock<PubSubConfig>,
    broker: RwLock<SharedBroker>,
    counters: Counters,
}

impl Default for Topics {
    fn default() -> Self {
        Self {
            table: RwLock::default(),
            config: RwLock::default(),
            broker: RwLock::new(Arc::new(MemoryBroker)),
            counters: Counters::default(),
        }
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    // Every critical section is a map operation that cannot be left half done by a panic.
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Topics {
    pub(crate) fn set_broker(&self, broker: SharedBroker) {
        *write(&self.broker) = broker;
    }

    fn broker(&self) -> SharedBroker {
        read(&self.broker).clone()
    }

    fn new_topic(&self) -> Topic {
        Topic { subscribers: HashMap::new(), history: read(&self.config).history.map(MemoryHistory::new) }
    }

    /// Runs `f` on the topic, creating it if needed, with the table's read lock held (so the topic
    /// cannot be removed meanwhile).
    fn with_topic<R>(&self, topic: &str, f: impl FnOnce(&mut Topic) -> R) -> R {
        {
            let table = read(&self.table);
            if let Some(entry) = table.get(topic) {
                return f(&mut lock(entry));
            }
        }
        let mut table = write(&self.table);
        let entry = table.entry(Arc::from(topic)).or_insert_with(|| Arc::new(Mutex::new(self.new_topic()))).clone();
        let mut guard = lock(&entry);
        f(&mut guard)
    }

    /// Subscribes `peer`; returns false if it already was.
    pub(crate) fn subscribe(&self, topic: &str, peer: &Peer) -> bool {
        let (newly, first) = self.with_topic(topic, |entry| {
            let newly = entry.subscribers.insert(peer.id(), peer.clone()).is_none();
            (newly, newly && entry.subscribers.len() == 1)
        });
        if first {
            self.broker().subscribe(topic);
        }
        newly
    }

    /// Subscribes `peer` after replaying what it missed since `since`.
    pub(crate) fn subscribe_since(&self, topic: &str, peer: &Peer, since: &Position) -> Recovery {
        let (recovery, first) = self.with_topic(topic, |entry| {
            // Under the topic's lock no publication can slip between the replay and the subscription.
            let (recovery, missed) = match entry.history.as_mut() {
                Some(history) => {
                    let missed = history.since(since);
                    let recovery = Recovery {
                        recovered: missed.is_some(),
                        replayed: missed.as_ref().map_or(0, Vec::len),
                        position: history.position(),
                    };
                    (recovery, missed.unwrap_or_default())
                }
                None => (Recovery { recovered: false, replayed: 0, position: since.clone() }, Vec::new()),
            };
            for message in missed {
                let _ = peer.send(message);
            }
            let newly = entry.subscribers.insert(peer.id(), peer.clone()).is_none();
            (recovery, newly && entry.subscribers.len() == 1)
        });
        if first {
            self.broker().subscribe(topic);
        }
        recovery
    }

    /// Unsubscribes `peer`; returns false if it was not subscribed.
    pub(crate) fn unsubscribe(&self, topic: &str, peer_id: Uuid) -> bool {
        let mut table = write(&self.table);
        let Some(entry) = table.get(topic).cloned() else { return false };
        let (removed, last, keep) = {
            let mut guard = lock(&entry);
            let removed = guard.subscribers.remove(&peer_id).is_some();
            (removed, removed && guard.subscribers.is_empty(), guard.history.is_some())
        };
        if last && !keep {
            table.remove(topic);
        }
        drop(table);
        if last {
            self.broker().unsubscribe(topic);
        }
        removed
    }

    /// Publishes from this node: history, local subscribers (but `except`), and the other nodes.
    /// Returns the number of local deliveries and the position, if the topic keeps history.
    pub(crate) fn publish(&self, topic: &str, message: &Message, except: Option<Uuid>) -> (usize, Option<Position>) {
        let (delivered, position) = self.deliver(topic, message, except);
        self.broker().publish(topic, message);
        (delivered, position)
    }

    /// A publication from another node: local subscribers only.
    pub(crate) fn deliver_remote(&self, topic: &str, message: Message) {
        self.deliver(topic, &message, None);
    }

    fn deliver(&self, topic: &str, message: &Message, except: Option<Uuid>) -> (usize, Option<Position>) {
        self.counters.published.fetch_add(1, Ordering::Relaxed);
        let (limit, policy) = {
            let config = read(&self.config);
            (config.max_subscriber_queue, config.slow_consumer)
        };
        // Framed once; every subscriber's queue gets the same reference-counted bytes.
        let frame: Bytes = server_frame(message.kind(), message.bytes());
        let fan_out = |entry: &mut Topic| {
            let position = entry.history.as_mut().map(|h| h.append(message));
            let mut delivered = 0;
            for peer in entry.subscribers.values() {
                if Some(peer.id()) == except {
                    continue;
                }
                let item = Outgoing::Frame { frame: frame.clone(), accounted: message.len() };
                match peer.enqueue_item(item, message.len(), limit, policy) {
                    Ok(()) => delivered += 1,
                    Err(crate::SendError::QueueFull { .. }) => {
                        let counter = match policy {
                            SlowConsumerPolicy::Close => &self.counters.slow_closed,
                            SlowConsumerPolicy::Drop => &self.counters.dropped,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(peer = %peer.id(), topic, ?policy, "slow subscriber");
                    }
                    Err(_) => {}
                }
            }
            (delivered, position)
        };
        let (delivered, position) = if read(&self.config).history.is_some() {
            // With history, a publication is recorded even when nobody here listens.
            self.with_topic(topic, fan_out)
        } else {
            let table = read(&self.table);
            match table.get(topic) {
                Some(entry) => fan_out(&mut lock(entry)),
                None => (0, None),
            }
        };
        self.counters.delivered.fetch_add(delivered as u64, Ordering::Relaxed);
        (delivered, position)
    }

    pub(crate) fn subscribers(&self, topic: &str) -> Vec<Peer> {
        read(&self.table).get(topic).map(|t| lock(t).subscribers.values().cloned().collect()).unwrap_or_default()
    }

    pub(crate) fn list(&self) -> Vec<(String, usize)> {
        let mut topics: Vec<(String, usize)> =
            read(&self.table).iter().map(|(name, t)| (name.to_string(), lock(t).subscribers.len())).collect();
        topics.sort();
        topics
    }

    pub(crate) fn position(&self, topic: &str) -> Option<Position> {
        read(&self.table).get(topic).and_then(|t| lock(t).history.as_ref().map(MemoryHistory::position))
    }

    pub(crate) fn stats(&self) -> PubSubStats {
        PubSubStats {
            topics: read(&self.table).len(),
            published: self.counters.published.load(Ordering::Relaxed),
            delivered: self.counters.delivered.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
            slow_closed: self.counters.slow_closed.load(Ordering::Relaxed),
        }
    }
}
