//! The local topic table: who is subscribed to what on this node, and the encode-once fan-out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use switchboard_wire::{server_frame, server_frame_compressed};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::broker::{MemoryBroker, SharedBroker};
use super::format::{Publication, PublicationFormat};
use super::history::{HistoryConfig, HistorySlice, MemoryHistory, Position, Recovery};
use super::hub::PubSubStats;
use crate::server::{Outgoing, Peer, SharedCompression, SlowConsumerPolicy};
use crate::Message;

/// Pub/sub settings of a server.
#[derive(Clone, Debug)]
pub struct PubSubConfig {
    /// Bytes a subscriber may have queued before `slow_consumer` applies (default 1 MiB).
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

/// How long `subscribe_since` waits for the broker before it gives up recovering.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// A local subscriber. While it recovers from the broker's history, live publications wait in
/// `pending` so that none slips between the history read and the subscription.
struct Subscriber {
    peer: Peer,
    pending: Option<Vec<Pending>>,
}

struct Pending {
    offset: Option<u64>,
    frame: Bytes,
    len: usize,
}

#[derive(Default)]
struct Topic {
    subscribers: HashMap<Uuid, Subscriber>,
    history: Option<MemoryHistory>,
}

#[derive(Default)]
struct Counters {
    published: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
    slow_closed: AtomicU64,
}

/// A subscriber's queue limit and what happens beyond it.
#[derive(Clone, Copy)]
struct QueueLimits {
    limit: usize,
    policy: SlowConsumerPolicy,
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

/// Messages shorter than this go out uncompressed: DEFLATE would make them longer.
const COMPRESSION_THRESHOLD: usize = 32;

/// The frames of one publication, each built on first use: the plain frame, and one compressed frame
/// per compression setting among its subscribers that negotiated `server_no_context_takeover` (with no
/// context kept between messages, one compressed frame is valid for all of them).
struct PublicationFrames<'a> {
    message: &'a Message,
    plain: Option<Bytes>,
    compressed: Vec<(SharedCompression, Bytes)>,
}

impl<'a> PublicationFrames<'a> {
    fn new(message: &'a Message) -> Self {
        Self { message, plain: None, compressed: Vec::new() }
    }

    fn for_peer(&mut self, peer: &Peer) -> Bytes {
        let message = self.message;
        match peer.shared.shared_compression {
            Some(setting) if message.len() >= COMPRESSION_THRESHOLD => {
                if let Some((_, frame)) = self.compressed.iter().find(|(s, _)| *s == setting) {
                    return frame.clone();
                }
                let frame =
                    server_frame_compressed(message.kind(), message.bytes(), setting.level, setting.window_bits);
                self.compressed.push((setting, frame.clone()));
                frame
            }
            _ => self.plain.get_or_insert_with(|| server_frame(message.kind(), message.bytes())).clone(),
        }
    }
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

    /// The history settings, and whether the broker (rather than this node's memory) keeps it.
    fn history(&self) -> Option<(HistoryConfig, bool)> {
        let history = read(&self.config).history?;
        Some((history, self.broker().keeps_history()))
    }

    fn new_topic(&self) -> Topic {
        let history = match self.history() {
            Some((config, false)) => Some(MemoryHistory::new(config)),
            _ => None,
        };
        Topic { subscribers: HashMap::new(), history }
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

    /// Adds `peer` (recovering or live); tells the broker if it is this node's first subscriber.
    /// Returns false if it was subscribed already.
    fn add(&self, topic: &str, peer: &Peer, recovering: bool) -> bool {
        let (newly, first) = self.with_topic(topic, |entry| {
            let pending = recovering.then(Vec::new);
            let newly = match entry.subscribers.get_mut(&peer.id()) {
                Some(subscriber) => {
                    subscriber.pending = subscriber.pending.take().or(pending);
                    false
                }
                None => {
                    entry.subscribers.insert(peer.id(), Subscriber { peer: peer.clone(), pending });
                    true
                }
            };
            (newly, newly && entry.subscribers.len() == 1)
        });
        if first {
            self.broker().subscribe(topic);
        }
        newly
    }

    /// Subscribes `peer`; returns false if it already was.
    pub(crate) fn subscribe(&self, topic: &str, peer: &Peer) -> bool {
        self.add(topic, peer, false)
    }

    /// Subscribes `peer` after replaying what it missed since `since`.
    pub(crate) async fn subscribe_since(&self, topic: &str, peer: &Peer, since: &Position) -> Recovery {
        match self.history() {
            None => {
                self.subscribe(topic, peer);
                Recovery { recovered: false, replayed: 0, position: since.clone() }
            }
            Some((_, false)) => self.subscribe_since_memory(topic, peer, since),
            Some((config, true)) => self.subscribe_since_broker(topic, peer, since, config).await,
        }
    }

    fn subscribe_since_memory(&self, topic: &str, peer: &Peer, since: &Position) -> Recovery {
        let (recovery, first) = self.with_topic(topic, |entry| {
            // Under the topic's lock no publication can slip between the replay and the subscription.
            let slice = entry.history.as_mut().map(MemoryHistory::slice).unwrap_or_default();
            let (recovery, missed) = slice.recover(since);
            self.replay(topic, peer, &recovery.position.epoch, missed);
            let newly = entry.subscribers.insert(peer.id(), Subscriber { peer: peer.clone(), pending: None }).is_none();
            (recovery, newly && entry.subscribers.len() == 1)
        });
        if first {
            self.broker().subscribe(topic);
        }
        recovery
    }

    /// The cluster case: subscribe as recovering (live publications are held back), make sure this node
    /// receives the topic, read the broker's history, then replay and release what was held back,
    /// skipping what the replay covered.
    async fn subscribe_since_broker(
        &self,
        topic: &str,
        peer: &Peer,
        since: &Position,
        config: HistoryConfig,
    ) -> Recovery {
        self.add(topic, peer, true);
        let broker = self.broker();
        let read = async {
            if !tokio::time::timeout(RECOVERY_TIMEOUT, broker.ready(topic)).await.unwrap_or(false) {
                return Err("the broker is not connected".into());
            }
            match tokio::time::timeout(RECOVERY_TIMEOUT, broker.history(topic, since.offset, &config)).await {
                Ok(read) => read,
                Err(_) => Err("reading the history timed out".into()),
            }
        };
        let (recovery, missed) = match read.await {
            Ok(slice) => slice.recover(since),
            Err(error) => {
                let error: crate::BoxError = error;
                tracing::warn!(topic, %error, "cannot recover from the broker's history");
                (Recovery { recovered: false, replayed: 0, position: since.clone() }, Vec::new())
            }
        };
        let covered = if recovery.recovered { recovery.position.offset } else { 0 };
        let limits = self.queue_limits();
        self.with_topic(topic, |entry| {
            let Some(subscriber) = entry.subscribers.get_mut(&peer.id()) else { return };
            let held = subscriber.pending.take().unwrap_or_default();
            self.replay(topic, peer, &recovery.position.epoch, missed);
            for pending in held.into_iter().filter(|p| p.offset.is_none_or(|offset| offset > covered)) {
                self.enqueue(topic, peer, pending.frame, pending.len, limits);
            }
        });
        recovery
    }

    /// Queues missed publications to `peer`, formatted with their positions.
    fn replay(&self, topic: &str, peer: &Peer, epoch: &str, missed: Vec<(u64, Message)>) {
        let format = read(&self.config).format.clone();
        let limits = self.queue_limits();
        for (offset, message) in missed {
            let position = Position { epoch: epoch.to_owned(), offset };
            let message = format.apply(&Publication { topic, position: Some(&position), message: &message });
            let frame = PublicationFrames::new(&message).for_peer(peer);
            self.enqueue(topic, peer, frame, message.len(), limits);
        }
    }

    /// The slow-consumer limit and policy, read once per publication rather than once per subscriber.
    fn queue_limits(&self) -> QueueLimits {
        let config = read(&self.config);
        QueueLimits { limit: config.max_subscriber_queue, policy: config.slow_consumer }
    }

    /// Queues a framed publication to one subscriber under the slow-consumer policy.
    fn enqueue(&self, topic: &str, peer: &Peer, frame: Bytes, len: usize, limits: QueueLimits) -> bool {
        let QueueLimits { limit, policy } = limits;
        match peer.enqueue_item(Outgoing::Frame { frame, accounted: len }, len, limit, policy) {
            Ok(()) => true,
            Err(crate::SendError::QueueFull { .. }) => {
                let counter = match policy {
                    SlowConsumerPolicy::Close => &self.counters.slow_closed,
                    SlowConsumerPolicy::Drop => &self.counters.dropped,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(peer = %peer.id(), topic, ?policy, "slow subscriber");
                false
            }
            Err(_) => false,
        }
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
            let position = match stamp {
                Stamp::Local => entry.history.as_mut().map(|h| h.append(message)),
                Stamp::Given(position) => position,
            };
            // Formatted and framed once; every subscriber's queue gets the same reference-counted bytes.
            let formatted;
            let message = match format {
                PublicationFormat::Raw => message,
                _ => {
                    formatted = format.apply(&Publication { topic, position: position.as_ref(), message });
                    &formatted
                }
            };
            let mut frames = PublicationFrames::new(message);
            let mut delivered = 0;
            for (id, subscriber) in entry.subscribers.iter_mut() {
                if Some(*id) == except {
                    continue;
                }
                if let Some(pending) = subscriber.pending.as_mut() {
                    let offset = position.as_ref().map(|p| p.offset);
                    pending.push(Pending { offset, frame: frames.for_peer(&subscriber.peer), len: message.len() });
                    continue;
                }
                if self.enqueue(topic, &subscriber.peer, frames.for_peer(&subscriber.peer), message.len(), limits) {
                    delivered += 1;
                }
            }
            (delivered, position)
        };
        let keeps_memory_history = matches!(self.history(), Some((_, false)));
        let (delivered, position) = if keeps_memory_history {
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

    /// The latest position of `topic`, from memory or from the broker.
    pub(crate) async fn position(&self, topic: &str) -> Option<Position> {
        match self.history()? {
            (_, false) => Some(self.with_topic(topic, |t| t.history.as_ref().map(MemoryHistory::position))?),
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
        }
    }
}
