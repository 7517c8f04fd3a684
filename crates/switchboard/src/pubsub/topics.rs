//! The local topic table: who is subscribed to what on this node, and the encode-once fan-out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::broker::{MemoryBroker, SharedBroker};
use super::format::{Publication, PublicationFormat};
use super::framed::{FanOut, Framed};
use super::history::{HistoryConfig, HistorySlice, MemoryHistory, Position};
use super::hub::PubSubStats;
use super::recovery::RECOVERY_TIMEOUT;
use crate::server::{Outgoing, Peer, SlowConsumerPolicy, QUEUE_ENTRY_COST};
use crate::Message;

/// Pub/sub settings of a server.
#[derive(Clone, Debug)]
pub struct PubSubConfig {
    /// Bytes a subscriber may have queued before `slow_consumer` applies (default 1 MiB). Each queued
    /// publication counts its payload plus `QUEUE_ENTRY_COST`.
    pub max_subscriber_queue: usize,
    /// What happens to a subscriber over that limit (default: close with 1013).
    pub slow_consumer: SlowConsumerPolicy,
    /// Per-topic history for `subscribe_since` (default: none). Kept in memory, or by the broker
    /// when it keeps history (Redis): then it is shared by every node.
    pub history: Option<HistoryConfig>,
    /// How publications reach subscribers (default: as published). `PublicationFormat::JsonEnvelope`
    /// gives clients the position of everything they receive.
    pub format: PublicationFormat,
}

impl Default for PubSubConfig {
    fn default() -> Self {
        Self {
            max_subscriber_queue: 1 << 20,
            slow_consumer: SlowConsumerPolicy::Close,
            history: None,
            format: PublicationFormat::Raw,
        }
    }
}

/// A local subscriber. While it recovers from history, live publications wait in `held` so that none
/// slips between the history read and the subscription, and none overtakes the replay.
pub(super) struct Subscriber {
    pub(super) peer: Peer,
    pub(super) held: Option<HeldBack>,
}

/// Publications held back for a recovering subscriber, bounded like its queue.
#[derive(Default)]
pub(super) struct HeldBack {
    pub(super) items: Vec<Pending>,
    pub(super) bytes: usize,
}

pub(super) struct Pending {
    pub(super) offset: Option<u64>,
    pub(super) frame: Bytes,
    pub(super) len: usize,
}

#[derive(Default)]
pub(super) struct Topic {
    pub(super) subscribers: HashMap<Uuid, Subscriber>,
    pub(super) history: Option<MemoryHistory>,
}

impl Topic {
    /// Nobody listens and nothing is kept: the topic can go.
    pub(super) fn is_unused(&self) -> bool {
        self.subscribers.is_empty() && self.history.as_ref().is_none_or(MemoryHistory::is_empty)
    }
}

#[derive(Default)]
pub(super) struct Counters {
    published: AtomicU64,
    delivered: AtomicU64,
    pub(super) dropped: AtomicU64,
    pub(super) slow_closed: AtomicU64,
    pub(super) history_evicted: AtomicU64,
}

/// A subscriber's queue limit and what happens beyond it.
#[derive(Clone, Copy)]
pub(super) struct QueueLimits {
    pub(super) limit: usize,
    pub(super) policy: SlowConsumerPolicy,
}

/// Where a publication's position comes from.
pub(crate) enum Positioned {
    /// Known now (memory history), or none (no history, or not recorded).
    Now(Option<Position>),
    /// Assigned by the broker; arrives when it is recorded.
    Later(oneshot::Receiver<Position>),
}

impl Positioned {
    pub(crate) async fn wait(self) -> Option<Position> {
        match self {
            Self::Now(position) => position,
            Self::Later(receiver) => receiver.await.ok(),
        }
    }
}

/// The history position a delivery carries.
enum Stamp {
    /// Append to this node's memory history (if it keeps one) and use that position.
    Local,
    /// Recorded elsewhere (or not at all).
    Given(Option<Position>),
}

pub(crate) struct Topics {
    /// Lock order: the table, then a topic. Publishing takes the table's read lock only.
    pub(super) table: RwLock<HashMap<Arc<str>, Arc<Mutex<Topic>>>>,
    pub(crate) config: RwLock<PubSubConfig>,
    broker: RwLock<SharedBroker>,
    pub(super) counters: Counters,
    /// Bytes held by the memory history of every topic together.
    pub(super) history_bytes: Arc<AtomicUsize>,
    /// Orders appends across topics, so that eviction takes the oldest first.
    append_seq: AtomicU64,
    pub(super) evicting: AtomicBool,
}

impl Default for Topics {
    fn default() -> Self {
        Self {
            table: RwLock::default(),
            config: RwLock::default(),
            broker: RwLock::new(Arc::new(MemoryBroker)),
            counters: Counters::default(),
            history_bytes: Arc::default(),
            append_seq: AtomicU64::new(0),
            evicting: AtomicBool::new(false),
        }
    }
}

pub(super) fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    // Every critical section is a map operation that cannot be left half done by a panic.
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(super) fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Topics {
    pub(crate) fn set_broker(&self, broker: SharedBroker) {
        *write(&self.broker) = broker;
    }

    pub(super) fn broker(&self) -> SharedBroker {
        read(&self.broker).clone()
    }

    /// The history settings, and whether the broker (rather than this node's memory) keeps it.
    pub(super) fn history(&self) -> Option<(HistoryConfig, bool)> {
        let history = read(&self.config).history?;
        Some((history, self.broker().keeps_history()))
    }

    fn new_topic(&self) -> Topic {
        let history = match self.history() {
            Some((config, false)) => Some(MemoryHistory::new(config, self.history_bytes.clone())),
            _ => None,
        };
        Topic { subscribers: HashMap::new(), history }
    }

    /// Runs `f` on the topic, creating it if needed, with the table's read lock held (so the topic
    /// cannot be removed meanwhile).
    pub(super) fn with_topic<R>(&self, topic: &str, f: impl FnOnce(&mut Topic) -> R) -> R {
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

    /// Adds `peer` to `entry` (recovering: its live publications are held back). Returns whether it
    /// was new, and whether it is the topic's first subscriber on this node.
    pub(super) fn add_to(entry: &mut Topic, peer: &Peer, recovering: bool) -> (bool, bool) {
        let held = recovering.then(HeldBack::default);
        let newly = match entry.subscribers.get_mut(&peer.id()) {
            Some(subscriber) => {
                if subscriber.held.is_none() {
                    subscriber.held = held;
                }
                false
            }
            None => {
                entry.subscribers.insert(peer.id(), Subscriber { peer: peer.clone(), held });
                true
            }
        };
        (newly, newly && entry.subscribers.len() == 1)
    }

    /// Subscribes `peer`; returns false if it already was. Tells the broker if it is this node's first
    /// subscriber.
    pub(crate) fn subscribe(&self, topic: &str, peer: &Peer) -> bool {
        let (newly, first) = self.with_topic(topic, |entry| Self::add_to(entry, peer, false));
        if first {
            self.broker().subscribe(topic);
        }
        newly
    }

    /// The slow-consumer limit and policy, read once per publication rather than once per subscriber.
    pub(super) fn queue_limits(&self) -> QueueLimits {
        let config = read(&self.config);
        QueueLimits { limit: config.max_subscriber_queue, policy: config.slow_consumer }
    }

    /// Queues a framed publication to one subscriber under the slow-consumer policy.
    pub(super) fn enqueue(&self, topic: &str, peer: &Peer, frame: Bytes, len: usize, limits: QueueLimits) -> bool {
        let QueueLimits { limit, policy } = limits;
        match peer.enqueue_item(Outgoing::Frame { frame, accounted: len + QUEUE_ENTRY_COST }, len, limit, policy) {
            Ok(()) => true,
            Err(crate::SendError::QueueFull { .. }) => {
                self.count_slow(topic, peer, policy);
                false
            }
            Err(_) => false,
        }
    }

    /// Counts a refusal: once per closed peer (`Close`), once per skipped publication (`Drop`).
    pub(super) fn count_slow(&self, topic: &str, peer: &Peer, policy: SlowConsumerPolicy) {
        let counter = match policy {
            SlowConsumerPolicy::Close => &self.counters.slow_closed,
            SlowConsumerPolicy::Drop => &self.counters.dropped,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(peer = %peer.id(), topic, ?policy, "slow subscriber");
    }

    /// Unsubscribes `peer`; returns false if it was not subscribed. A topic nobody listens to and
    /// with nothing kept goes at once (one with history stays until its history expires).
    pub(crate) fn unsubscribe(&self, topic: &str, peer_id: Uuid) -> bool {
        let mut table = write(&self.table);
        let Some(entry) = table.get(topic).cloned() else { return false };
        let (removed, last, unused) = {
            let mut guard = lock(&entry);
            let removed = guard.subscribers.remove(&peer_id).is_some();
            (removed, removed && guard.subscribers.is_empty(), guard.is_unused())
        };
        if unused {
            table.remove(topic);
        }
        drop(table);
        if last {
            self.broker().unsubscribe(topic);
        }
        removed
    }

    /// Publishes from this node. Returns the number of local deliveries (for publications the broker
    /// records, the local subscribers it will reach) and the position.
    pub(crate) fn publish(&self, topic: &str, message: &Message, except: Option<Uuid>) -> (usize, Positioned) {
        let broker = self.broker();
        if let Some((config, true)) = self.history() {
            // Delivered here too when the broker hands it back, with its position.
            let position = broker.publish_recorded(topic, message, except, &config);
            let local = read(&self.table)
                .get(topic)
                .map_or(0, |entry| lock(entry).subscribers.keys().filter(|id| Some(**id) != except).count());
            return (local, Positioned::Later(position));
        }
        let (delivered, position) = self.deliver(topic, message, except, Stamp::Local);
        broker.publish(topic, message);
        (delivered, Positioned::Now(position))
    }

    /// A publication handed over by the broker: local subscribers only.
    pub(crate) fn deliver_from_broker(
        &self,
        topic: &str,
        message: Message,
        position: Option<Position>,
        except: Option<Uuid>,
    ) {
        self.deliver(topic, &message, except, Stamp::Given(position));
    }

    fn deliver(&self, topic: &str, message: &Message, except: Option<Uuid>, stamp: Stamp) -> (usize, Option<Position>) {
        self.counters.published.fetch_add(1, Ordering::Relaxed);
        let format = read(&self.config).format.clone();
        let limits = self.queue_limits();
        let fan_out = |entry: &mut Topic| {
            let position = match &stamp {
                Stamp::Local => entry.history.as_ref().map(MemoryHistory::next_position),
                Stamp::Given(position) => position.clone(),
            };
            // Formatted and framed once; every subscriber's queue (and the history) gets the same
            // reference-counted bytes.
            let formatted;
            let message = match format {
                PublicationFormat::Raw => message,
                _ => {
                    formatted = format.apply(&Publication { topic, position: position.as_ref(), message });
                    &formatted
                }
            };
            let framed = Arc::new(Framed::new(message));
            if let (Stamp::Local, Some(history)) = (&stamp, entry.history.as_mut()) {
                history.append(framed.clone(), self.append_seq.fetch_add(1, Ordering::Relaxed));
            }
            let mut frames = FanOut::new(&framed);
            let mut delivered = 0;
            let offset = position.as_ref().map(|p| p.offset);
            for (id, subscriber) in entry.subscribers.iter_mut() {
                if Some(*id) == except {
                    continue;
                }
                let frame = frames.for_peer(&subscriber.peer);
                if let Some(held) = subscriber.held.as_mut() {
                    self.hold_back(topic, &subscriber.peer, held, Pending { offset, frame, len: framed.len() }, limits);
                    continue;
                }
                if self.enqueue(topic, &subscriber.peer, frame, framed.len(), limits) {
                    delivered += 1;
                }
            }
            (delivered, position)
        };
        let memory_history = match self.history() {
            Some((config, false)) => Some(config),
            _ => None,
        };
        let (delivered, position) = if memory_history.is_some() {
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
        if let Some(config) = memory_history {
            self.enforce_history_budget(config.max_bytes);
        }
        (delivered, position)
    }

    /// Holds a publication back for a recovering subscriber, within its queue limit.
    fn hold_back(&self, topic: &str, peer: &Peer, held: &mut HeldBack, pending: Pending, limits: QueueLimits) {
        let cost = pending.len + QUEUE_ENTRY_COST;
        if !held.items.is_empty() && held.bytes + cost > limits.limit {
            if limits.policy == SlowConsumerPolicy::Drop || peer.mark_slow_consumer(held.bytes, limits.limit) {
                self.count_slow(topic, peer, limits.policy);
            }
            return;
        }
        held.bytes += cost;
        held.items.push(pending);
    }

    pub(crate) fn subscribers(&self, topic: &str) -> Vec<Peer> {
        read(&self.table)
            .get(topic)
            .map(|t| lock(t).subscribers.values().map(|s| s.peer.clone()).collect())
            .unwrap_or_default()
    }

    pub(crate) fn list(&self) -> Vec<(String, usize)> {
        let mut topics: Vec<(String, usize)> =
            read(&self.table).iter().map(|(name, t)| (name.to_string(), lock(t).subscribers.len())).collect();
        topics.sort();
        topics
    }

    /// The latest position of `topic`, from memory or from the broker. `None` without history, or for
    /// a topic this node does not know (nothing published, nobody subscribed).
    pub(crate) async fn position(&self, topic: &str) -> Option<Position> {
        match self.history()? {
            (_, false) => {
                read(&self.table).get(topic).and_then(|t| lock(t).history.as_ref().map(MemoryHistory::position))
            }
            (config, true) => {
                let read = self.broker().history(topic, u64::MAX, &config);
                match tokio::time::timeout(RECOVERY_TIMEOUT, read).await {
                    Ok(Ok(HistorySlice { epoch, latest, .. })) => Some(Position { epoch, offset: latest }),
                    _ => None,
                }
            }
        }
    }

    pub(crate) fn stats(&self) -> PubSubStats {
        PubSubStats {
            topics: read(&self.table).len(),
            published: self.counters.published.load(Ordering::Relaxed),
            delivered: self.counters.delivered.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
            slow_closed: self.counters.slow_closed.load(Ordering::Relaxed),
            history_bytes: self.history_bytes.load(Ordering::Relaxed),
            history_evicted: self.counters.history_evicted.load(Ordering::Relaxed),
        }
    }
}
