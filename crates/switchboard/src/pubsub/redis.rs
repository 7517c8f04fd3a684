//! `RedisBroker`: publications cross nodes through Redis PUBLISH/SUBSCRIBE.
//!
//! Each node subscribes to a topic's channel only while it has local subscribers, tags what it
//! publishes with its node id, and ignores its own publications when Redis echoes them back. When
//! Redis goes away, local delivery goes on; publications that cannot be forwarded are counted and
//! logged; the subscriber connection reconnects with backoff and resubscribes on its own.
//!
//! With history (`PubSubConfig::history`), Redis is where positions come from: one Lua script assigns
//! the next offset, appends to the topic's stream (capped at N entries and T seconds) and publishes the
//! envelope with its `epoch:offset`, atomically; every node, the publisher's own included, delivers
//! from that echo, so all nodes see one order and every delivery has a position. Keys per topic:
//! `<prefix>{topic}:stream`, `:offset` and `:epoch` (one hash slot).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::broker::{decode_envelope, encode_envelope, recorded_envelope_head, Broker, Envelope, Inbox};
use super::history::{new_epoch, HistoryConfig, HistorySlice, Position};
use crate::{BoxError, Message, MessageKind};

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Connects the nodes of a cluster through Redis (`switchboard serve --broker redis://...`).
pub struct RedisBroker {
    client: redis::Client,
    node: Uuid,
    prefix: String,
    publish_tx: mpsc::UnboundedSender<Outbound>,
    publish_rx: Mutex<Option<mpsc::UnboundedReceiver<Outbound>>>,
    interest_tx: mpsc::UnboundedSender<Interest>,
    interest_rx: Mutex<Option<mpsc::UnboundedReceiver<Interest>>>,
    stats: Arc<RedisStats>,
}

enum Interest {
    Subscribe(String),
    Unsubscribe(String),
    /// Answer `true` once the channel is subscribed on a live connection.
    Ready(String, oneshot::Sender<bool>),
}

/// What the publisher task sends to Redis, in order.
enum Outbound {
    Plain { channel: String, payload: Bytes },
    Recorded(Box<RecordedPublication>),
}

struct RecordedPublication {
    topic: String,
    keys: HistoryKeys,
    head: Bytes,
    message: Message,
    except: Option<Uuid>,
    history: HistoryConfig,
    reply: oneshot::Sender<Position>,
}

/// The Redis keys of one topic's history.
struct HistoryKeys {
    channel: String,
    stream: String,
    offset: String,
    epoch: String,
}

/// Keys are kept this long after the last publication (the stream itself for the history's TTL), so an
/// idle topic keeps its epoch and a client that was away for a while can still be told it missed nothing.
const META_TTL: Duration = Duration::from_secs(24 * 3600);

/// Assigns the next position, appends to the stream, trims it, publishes `head epoch:offset: payload`.
const PUBLISH_SCRIPT: &str = r"
local epoch = redis.call('GET', KEYS[3])
if not epoch then
  epoch = ARGV[7]
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('SET', KEYS[3], epoch)
end
local offset = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[5], '*', 'o', offset, 'k', ARGV[4], 'd', ARGV[3])
local now = redis.call('TIME')
local cutoff = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[6])
redis.call('XTRIM', KEYS[1], 'MINID', string.format('%.0f', cutoff))
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[8])
redis.call('PEXPIRE', KEYS[3], ARGV[8])
redis.call('PUBLISH', ARGV[1], ARGV[2] .. epoch .. ':' .. offset .. ':' .. ARGV[3])
return {epoch, offset}
";

/// Returns `{epoch, latest, offset1, kind1, data1, ...}` for entries after ARGV[1] and younger than the
/// TTL, creating the epoch if the topic has none.
const READ_SCRIPT: &str = r"
local epoch = redis.call('GET', KEYS[3])
if not epoch then
  epoch = ARGV[2]
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('SET', KEYS[3], epoch, 'PX', ARGV[4])
end
local latest = tonumber(redis.call('GET', KEYS[2]) or '0')
local now = redis.call('TIME')
local cutoff = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[3])
local out = {epoch, latest}
for _, entry in ipairs(redis.call('XRANGE', KEYS[1], string.format('%.0f', cutoff), '+')) do
  local fields = entry[2]
  if tonumber(fields[2]) > tonumber(ARGV[1]) then
    table.insert(out, fields[2])
    table.insert(out, fields[4])
    table.insert(out, fields[6])
  end
end
return out
";

/// Counters of a Redis broker.
#[derive(Debug, Default)]
pub struct RedisStats {
    /// Publications forwarded to Redis.
    pub forwarded: AtomicU64,
    /// Publications that could not be forwarded (Redis unreachable).
    pub forward_failures: AtomicU64,
    /// Publications received from other nodes.
    pub received: AtomicU64,
    /// Whether the subscriber connection is up.
    pub connected: AtomicBool,
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker").field("node", &self.node).field("prefix", &self.prefix).finish()
    }
}

impl RedisBroker {
    /// A broker for `url` (`redis://host:port/db`). The URL is checked now; connecting happens in the
    /// background once the server starts, and is retried for as long as it fails.
    pub fn new(url: &str) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let (publish_tx, publish_rx) = mpsc::unbounded_channel();
        let (interest_tx, interest_rx) = mpsc::unbounded_channel();
        Ok(Self {
            client,
            node: Uuid::new_v4(),
            prefix: "switchboard:topic:".to_owned(),
            publish_tx,
            publish_rx: Mutex::new(Some(publish_rx)),
            interest_tx,
            interest_rx: Mutex::new(Some(interest_rx)),
            stats: Arc::default(),
        })
    }

    /// Uses `prefix` before topic names to form channel names (default `switchboard:topic:`).
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_owned();
        self
    }

    /// This node's id, carried in every publication it forwards.
    pub fn node_id(&self) -> Uuid {
        self.node
    }

    /// The broker's counters.
    pub fn stats(&self) -> Arc<RedisStats> {
        self.stats.clone()
    }

    fn channel(&self, topic: &str) -> String {
        format!("{}{topic}", self.prefix)
    }

    fn history_keys(&self, topic: &str) -> HistoryKeys {
        let base = format!("{}{{{topic}}}", self.prefix);
        HistoryKeys {
            channel: self.channel(topic),
            stream: format!("{base}:stream"),
            offset: format!("{base}:offset"),
            epoch: format!("{base}:epoch"),
        }
    }
}

impl Broker for RedisBroker {
    fn start(&self, inbox: Inbox) {
        let publish_rx = self.publish_rx.lock().unwrap_or_else(|p| p.into_inner()).take();
        let interest_rx = self.interest_rx.lock().unwrap_or_else(|p| p.into_inner()).take();
        let (Some(publish_rx), Some(interest_rx)) = (publish_rx, interest_rx) else {
            tracing::warn!("RedisBroker::start called twice: ignored");
            return;
        };
        tokio::spawn(publisher(self.client.clone(), publish_rx, inbox.clone(), self.stats.clone()));
        tokio::spawn(subscriber(
            self.client.clone(),
            interest_rx,
            inbox,
            self.node,
            self.prefix.clone(),
            self.stats.clone(),
        ));
    }

    fn publish(&self, topic: &str, message: &Message) {
        let _ = self
            .publish_tx
            .send(Outbound::Plain { channel: self.channel(topic), payload: encode_envelope(self.node, message) });
    }

    fn keeps_history(&self) -> bool {
        true
    }

    fn publish_recorded(
        &self,
        topic: &str,
        message: &Message,
        except: Option<Uuid>,
        history: &HistoryConfig,
    ) -> oneshot::Receiver<Position> {
        let (reply, position) = oneshot::channel();
        let _ = self.publish_tx.send(Outbound::Recorded(Box::new(RecordedPublication {
            topic: topic.to_owned(),
            keys: self.history_keys(topic),
            head: recorded_envelope_head(self.node, message, except),
            message: message.clone(),
            except,
            history: *history,
            reply,
        })));
        position
    }

    fn ready(&self, topic: &str) -> BoxFuture<'static, bool> {
        let (reply, ready) = oneshot::channel();
        let _ = self.interest_tx.send(Interest::Ready(self.channel(topic), reply));
        Box::pin(async move { ready.await.unwrap_or(false) })
    }

    fn history(
        &self,
        topic: &str,
        after: u64,
        history: &HistoryConfig,
    ) -> BoxFuture<'static, Result<HistorySlice, BoxError>> {
        let client = self.client.clone();
        let keys = self.history_keys(topic);
        let ttl_ms = history.ttl.as_millis().max(1) as u64;
        Box::pin(async move {
            let mut connection = client.get_multiplexed_async_connection().await?;
            let reply: Vec<redis::Value> = redis::Script::new(READ_SCRIPT)
                .key(&keys.stream)
                .key(&keys.offset)
                .key(&keys.epoch)
                .arg(after)
                .arg(new_epoch())
                .arg(ttl_ms)
                .arg(META_TTL.as_millis() as u64)
                .invoke_async(&mut connection)
                .await?;
            parse_history(reply).ok_or_else(|| BoxError::from("malformed history reply from Redis"))
        })
    }

    fn subscribe(&self, topic: &str) {
        let _ = self.interest_tx.send(Interest::Subscribe(self.channel(topic)));
    }

    fn unsubscribe(&self, topic: &str) {
        let _ = self.interest_tx.send(Interest::Unsubscribe(self.channel(topic)));
    }
}

fn parse_history(reply: Vec<redis::Value>) -> Option<HistorySlice> {
    use redis::FromRedisValue;
    let mut fields = reply.into_iter();
    let epoch = String::from_redis_value(fields.next()?).ok()?;
    let latest = u64::from_redis_value(fields.next()?).ok()?;
    let mut entries = Vec::new();
    while let Some(offset) = fields.next() {
        let offset = u64::from_redis_value(offset).ok()?;
        let kind = match String::from_redis_value(fields.next()?).ok()?.as_str() {
            "t" => MessageKind::Text,
            _ => MessageKind::Binary,
        };
        let data = Vec::<u8>::from_redis_value(fields.next()?).ok()?;
        entries.push((offset, Message::new(kind, Bytes::from(data)).ok()?));
    }
    Some(HistorySlice { epoch, latest, entries })
}

/// Forwards publications in order, one connection, never blocking the publishers.
async fn publisher(
    client: redis::Client,
    mut queue: mpsc::UnboundedReceiver<Outbound>,
    inbox: Inbox,
    stats: Arc<RedisStats>,
) {
    let script = redis::Script::new(PUBLISH_SCRIPT);
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(1)))
        .set_number_of_retries(1)
        .set_max_delay(MAX_BACKOFF);
    let mut connection: Option<ConnectionManager> = None;
    let mut failures_logged = 0u64;
    // After a failure, publications fail fast for a moment instead of each waiting for Redis.
    let mut unreachable_until: Option<tokio::time::Instant> = None;
    while let Some(outbound) = queue.recv().await {
        if unreachable_until.is_some_and(|until| tokio::time::Instant::now() < until) {
            stats.forward_failures.fetch_add(1, Ordering::Relaxed);
            deliver_unrecorded(&inbox, outbound);
            continue;
        }
        if connection.is_none() {
            match ConnectionManager::new_with_config(client.clone(), config.clone()).await {
                Ok(manager) => connection = Some(manager),
                Err(error) => {
                    count_failure(&stats, &mut failures_logged, &error);
                    unreachable_until = Some(tokio::time::Instant::now() + MIN_BACKOFF * 5);
                    deliver_unrecorded(&inbox, outbound);
                    continue;
                }
            }
        }
        let Some(manager) = connection.as_mut() else { continue };
        // A connection that died while idle is only noticed on use: retry (the manager reconnects), so
        // the first publication after Redis comes back is not lost.
        let mut attempt = 0;
        let sent: redis::RedisResult<Option<Position>> = loop {
            let sent = match &outbound {
                Outbound::Plain { channel, payload } => redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(payload.as_ref())
                    .query_async::<i64>(manager)
                    .await
                    .map(|_| None),
                Outbound::Recorded(recorded) => {
                    let kind = if recorded.message.is_binary() { "b" } else { "t" };
                    script
                        .key(&recorded.keys.stream)
                        .key(&recorded.keys.offset)
                        .key(&recorded.keys.epoch)
                        .arg(&recorded.keys.channel)
                        .arg(recorded.head.as_ref())
                        .arg(recorded.message.bytes().as_ref())
                        .arg(kind)
                        .arg(recorded.history.size.max(1))
                        .arg(recorded.history.ttl.as_millis().max(1) as u64)
                        .arg(new_epoch())
                        .arg(META_TTL.as_millis() as u64)
                        .invoke_async::<(String, u64)>(manager)
                        .await
                        .map(|(epoch, offset)| Some(Position { epoch, offset }))
                }
            };
            match &sent {
                Err(error)
                    if attempt < 2 && (error.is_io_error() || error.is_connection_dropped() || error.is_timeout()) =>
                {
                    attempt += 1;
                    tokio::time::sleep(MIN_BACKOFF).await;
                }
                _ => break sent,
            }
        };
        match sent {
            Ok(position) => {
                stats.forwarded.fetch_add(1, Ordering::Relaxed);
                failures_logged = 0;
                unreachable_until = None;
                if let (Outbound::Recorded(recorded), Some(position)) = (outbound, position) {
                    let _ = recorded.reply.send(position);
                }
            }
            Err(error) => {
                count_failure(&stats, &mut failures_logged, &error);
                if error.is_io_error() || error.is_connection_dropped() || error.is_timeout() {
                    unreachable_until = Some(tokio::time::Instant::now() + MIN_BACKOFF * 5);
                }
                deliver_unrecorded(&inbox, outbound);
            }
        }
    }
}

/// A recorded publication that could not reach Redis still reaches this node's subscribers (without a
/// position: it is not in the history).
fn deliver_unrecorded(inbox: &Inbox, outbound: Outbound) {
    if let Outbound::Recorded(recorded) = outbound {
        let RecordedPublication { topic, message, except, .. } = *recorded;
        inbox.deliver_publication(&topic, message, None, except);
    }
}

fn count_failure(stats: &RedisStats, logged: &mut u64, error: &redis::RedisError) {
    let total = stats.forward_failures.fetch_add(1, Ordering::Relaxed) + 1;
    // One line for the first failure of an outage, then one per thousand: counted, not flooded.
    if *logged == 0 || total.is_multiple_of(1000) {
        tracing::warn!(%error, total, "could not forward a publication to Redis (local delivery goes on)");
    }
    *logged += 1;
}

/// Keeps one subscriber connection, with the channels this node needs, reconnecting on failure.
async fn subscriber(
    client: redis::Client,
    mut interest: mpsc::UnboundedReceiver<Interest>,
    inbox: Inbox,
    node: Uuid,
    prefix: String,
    stats: Arc<RedisStats>,
) {
    let mut wanted: HashSet<String> = HashSet::new();
    let mut backoff = MIN_BACKOFF;
    loop {
        let pubsub = match tokio::time::timeout(Duration::from_secs(2), client.get_async_pubsub()).await {
            Ok(Ok(pubsub)) => pubsub,
            failed => {
                let reason = match failed {
                    Ok(Err(error)) => error.to_string(),
                    _ => "timed out".to_owned(),
                };
                tracing::debug!(%reason, "Redis subscriber connection failed; retrying");
                // Keep track of interest changes while disconnected.
                let deadline = tokio::time::sleep(backoff);
                tokio::pin!(deadline);
                loop {
                    tokio::select! {
                        () = &mut deadline => break,
                        change = interest.recv() => match change {
                            Some(change) => apply(&mut wanted, change),
                            None => return,
                        },
                    }
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        let mut resubscribed = true;
        for channel in &wanted {
            resubscribed &= sink.subscribe(channel).await.is_ok();
        }
        if !resubscribed {
            continue;
        }
        tracing::info!(channels = wanted.len(), "Redis broker connected");
        stats.connected.store(true, Ordering::Relaxed);
        backoff = MIN_BACKOFF;
        loop {
            tokio::select! {
                change = interest.recv() => {
                    let Some(change) = change else { return };
                    if let Interest::Ready(channel, reply) = change {
                        let _ = reply.send(wanted.contains(&channel));
                        continue;
                    }
                    let result = match &change {
                        Interest::Subscribe(channel) => sink.subscribe(channel).await,
                        Interest::Unsubscribe(channel) => sink.unsubscribe(channel).await,
                        Interest::Ready(..) => Ok(()),
                    };
                    apply(&mut wanted, change);
                    if result.is_err() {
                        break;
                    }
                }
                message = stream.next() => {
                    let Some(message) = message else { break };
                    let Some(topic) = message.get_channel_name().strip_prefix(prefix.as_str()) else { continue };
                    match decode_envelope(Bytes::copy_from_slice(message.get_payload_bytes())) {
                        // Our own plain publications were delivered here already; recorded ones are
                        // delivered from this echo, everywhere.
                        Some(Envelope { origin, position: None, .. }) if origin == node => {}
                        Some(Envelope { origin, except, position, message }) => {
                            if origin != node {
                                stats.received.fetch_add(1, Ordering::Relaxed);
                            }
                            inbox.deliver_publication(topic, message, position, except);
                        }
                        None => tracing::warn!(channel = message.get_channel_name(), "ignored a malformed publication from Redis"),
                    }
                }
            }
        }
        stats.connected.store(false, Ordering::Relaxed);
        tracing::warn!("Redis subscriber connection lost; reconnecting");
    }
}

fn apply(wanted: &mut HashSet<String>, change: Interest) {
    match change {
        // Not connected: publications do not reach this node now.
        Interest::Ready(_, reply) => {
            let _ = reply.send(false);
        }
        Interest::Subscribe(channel) => {
            wanted.insert(channel);
        }
        Interest::Unsubscribe(channel) => {
            wanted.remove(&channel);
        }
    }
}
