//! `RedisBroker`: publications cross nodes through Redis PUBLISH/SUBSCRIBE.
//!
//! Each node subscribes to a topic's channel only while it has local subscribers, tags what it
//! publishes with its node id, and ignores its own publications when Redis echoes them back. When
//! Redis goes away, local delivery goes on; publications that cannot be forwarded are counted and
//! logged; the subscriber connection reconnects with backoff and resubscribes on its own.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::broker::{decode_envelope, encode_envelope, Broker, Inbox};
use crate::Message;

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Connects the nodes of a cluster through Redis (`switchboard serve --broker redis://...`).
pub struct RedisBroker {
    client: redis::Client,
    node: Uuid,
    prefix: String,
    publish_tx: mpsc::UnboundedSender<(String, Bytes)>,
    publish_rx: Mutex<Option<mpsc::UnboundedReceiver<(String, Bytes)>>>,
    interest_tx: mpsc::UnboundedSender<Interest>,
    interest_rx: Mutex<Option<mpsc::UnboundedReceiver<Interest>>>,
    stats: Arc<RedisStats>,
}

enum Interest {
    Subscribe(String),
    Unsubscribe(String),
}

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
}

impl Broker for RedisBroker {
    fn start(&self, inbox: Inbox) {
        let publish_rx = self.publish_rx.lock().unwrap_or_else(|p| p.into_inner()).take();
        let interest_rx = self.interest_rx.lock().unwrap_or_else(|p| p.into_inner()).take();
        let (Some(publish_rx), Some(interest_rx)) = (publish_rx, interest_rx) else {
            tracing::warn!("RedisBroker::start called twice: ignored");
            return;
        };
        tokio::spawn(publisher(self.client.clone(), publish_rx, self.stats.clone()));
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
        let _ = self.publish_tx.send((self.channel(topic), encode_envelope(self.node, message)));
    }

    fn subscribe(&self, topic: &str) {
        let _ = self.interest_tx.send(Interest::Subscribe(self.channel(topic)));
    }

    fn unsubscribe(&self, topic: &str) {
        let _ = self.interest_tx.send(Interest::Unsubscribe(self.channel(topic)));
    }
}

/// Forwards publications in order, one connection, never blocking the publishers.
async fn publisher(client: redis::Client, mut queue: mpsc::UnboundedReceiver<(String, Bytes)>, stats: Arc<RedisStats>) {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(1)))
        .set_number_of_retries(1)
        .set_max_delay(MAX_BACKOFF);
    let mut connection: Option<ConnectionManager> = None;
    let mut failures_logged = 0u64;
    while let Some((channel, payload)) = queue.recv().await {
        if connection.is_none() {
            match ConnectionManager::new_with_config(client.clone(), config.clone()).await {
                Ok(manager) => connection = Some(manager),
                Err(error) => {
                    count_failure(&stats, &mut failures_logged, &error);
                    continue;
                }
            }
        }
        let Some(manager) = connection.as_mut() else { continue };
        // A connection that died while idle is only noticed on use: retry (the manager reconnects), so
        // the first publication after Redis comes back is not lost.
        let mut attempt = 0;
        let sent: redis::RedisResult<i64> = loop {
            let sent = redis::cmd("PUBLISH").arg(&channel).arg(payload.as_ref()).query_async(manager).await;
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
            Ok(_) => {
                stats.forwarded.fetch_add(1, Ordering::Relaxed);
                failures_logged = 0;
            }
            Err(error) => count_failure(&stats, &mut failures_logged, &error),
        }
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
                    let result = match &change {
                        Interest::Subscribe(channel) => sink.subscribe(channel).await,
                        Interest::Unsubscribe(channel) => sink.unsubscribe(channel).await,
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
                        Some((origin, _)) if origin == node => {}
                        Some((_, publication)) => {
                            stats.received.fetch_add(1, Ordering::Relaxed);
                            inbox.deliver(topic, publication);
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
        Interest::Subscribe(channel) => {
            wanted.insert(channel);
        }
        Interest::Unsubscribe(channel) => {
            wanted.remove(&channel);
        }
    }
}
