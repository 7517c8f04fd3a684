//! `Peer`: one connected client, as the hooks see it (crossws' `peer`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http::{Extensions, HeaderMap, Method, Uri, Version};
use serde::Serialize;
use switchboard_wire::{CloseCode, CloseFrame};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::error::{InvalidCloseCode, SendError};
use crate::pubsub::{Hub, Position, Recovery};
use crate::Message;

/// The connection state, numbered as the browser's `WebSocket.readyState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum ReadyState {
    /// 0: the handshake is under way.
    Connecting = 0,
    /// 1: messages flow.
    Open = 1,
    /// 2: a close frame was sent or received.
    Closing = 2,
    /// 3: the connection is gone.
    Closed = 3,
}

impl ReadyState {
    fn from_u8(value: u8) -> Self {
        match value {
            0 => Self::Connecting,
            1 => Self::Open,
            2 => Self::Closing,
            _ => Self::Closed,
        }
    }
}

/// The HTTP upgrade request a peer connected with.
#[derive(Clone, Debug)]
pub struct RequestInfo {
    /// Always GET for a valid upgrade.
    pub method: Method,
    /// Path and query as requested.
    pub uri: Uri,
    /// HTTP version (1.1).
    pub version: Version,
    /// All request headers (cookies, authorization, origin, ...).
    pub headers: HeaderMap,
}

impl RequestInfo {
    /// A copy that owns its bytes. hyper parses header values and the path as slices of its 8 KiB read
    /// buffer; a peer that kept those would keep that buffer alive for as long as it is connected.
    pub(crate) fn detached(&self) -> Self {
        let mut headers = HeaderMap::with_capacity(self.headers.len());
        for (name, value) in &self.headers {
            let name = http::HeaderName::from_bytes(name.as_str().as_bytes()).unwrap_or_else(|_| name.clone());
            let mut owned = http::HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
            owned.set_sensitive(value.is_sensitive());
            headers.append(name, owned);
        }
        Self {
            method: self.method.clone(),
            uri: Uri::try_from(self.uri.to_string()).unwrap_or_else(|_| self.uri.clone()),
            version: self.version,
            headers,
        }
    }

    /// The value of query parameter `name`, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        let query = self.uri.query()?;
        query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key) == name).then(|| percent_decode(value))
        })
    }
}

/// Decodes a query-string or form value: `%XX` escapes and `+` for a space (invalid escapes stay as
/// they are; invalid UTF-8 becomes U+FFFD).
pub fn percent_decode(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn lock_set(
    set: &Mutex<std::collections::HashSet<Arc<str>>>,
) -> std::sync::MutexGuard<'_, std::collections::HashSet<Arc<str>>> {
    set.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What other tasks ask a peer's connection task to send.
#[derive(Debug)]
pub(crate) enum Outgoing {
    Message(Message),
    /// A frame encoded once and shared by every subscriber of a publication; `accounted` is its
    /// share of `buffered_amount`.
    Frame {
        frame: bytes::Bytes,
        accounted: usize,
    },
    Ping(bytes::Bytes),
    Close(CloseFrame),
    /// Wakes the connection task so it sees an abort.
    Wake,
}

/// A set of peers (one route's, or the peers of a whole server).
#[derive(Default)]
pub(crate) struct PeerSet {
    peers: Mutex<HashMap<Uuid, Peer>>,
}

impl PeerSet {
    pub(crate) fn insert(&self, peer: &Peer) {
        self.lock().insert(peer.id(), peer.clone());
    }

    pub(crate) fn remove(&self, id: &Uuid) {
        self.lock().remove(id);
    }

    pub(crate) fn list(&self) -> Vec<Peer> {
        self.lock().values().cloned().collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Peer>> {
        // A panic while holding this lock cannot leave the map inconsistent: every operation is one call.
        self.peers.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What happens to a peer whose send queue is over its limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SlowConsumerPolicy {
    /// Close it with 1013 (try again later), ahead of what is queued.
    #[default]
    Close,
    /// Skip this message for that peer (for volatile data: positions, presence); counted.
    Drop,
}

/// Code stored in `abort` to drop the connection without a close frame.
pub(crate) const TERMINATE: u16 = 1;

/// What a queued message costs beyond its payload, in the send queue's byte count: its queue slot and,
/// for a publication, the frame's own allocation. Without it an empty message would cost nothing and a
/// queue "full at 1 MiB" could hold millions of them.
pub const QUEUE_ENTRY_COST: usize = 64;

pub(crate) struct PeerShared {
    pub(crate) id: Uuid,
    pub(crate) remote_addr: Option<SocketAddr>,
    pub(crate) request: RequestInfo,
    pub(crate) context: Extensions,
    pub(crate) protocol: Option<String>,
    pub(crate) extensions: Option<String>,
    pub(crate) state: AtomicU8,
    pub(crate) buffered: AtomicUsize,
    pub(crate) max_buffered: usize,
    pub(crate) outbox: super::outbox::Outbox,
    /// A close that jumps the queue: 0 none, `TERMINATE`, or a close code (slow consumer, shutdown).
    pub(crate) abort: AtomicU16,
    pub(crate) abort_signal: Notify,
    /// Notified when the connection task wrote queued bytes out while `drain_wanted` is set (a replay
    /// waits for room in the queue).
    pub(crate) drained: Notify,
    pub(crate) drain_wanted: AtomicBool,
    /// What the queue held, and the limit that applied, when the peer was found to be a slow consumer.
    pub(crate) slow_consumer: Mutex<(usize, usize)>,
    pub(crate) route: Arc<super::stats::Route>,
    pub(crate) counters: super::stats::PeerCounters,
    pub(crate) connected_at: std::time::SystemTime,
    pub(crate) app: Arc<super::app::AppShared>,
    pub(crate) topics: Mutex<std::collections::HashSet<Arc<str>>>,
    /// Set when the peer negotiated permessage-deflate with `server_no_context_takeover`: it can then
    /// receive publications compressed once for every such peer.
    pub(crate) shared_compression: Option<SharedCompression>,
}

/// The compression settings a shared compressed frame must match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SharedCompression {
    pub(crate) level: u32,
    pub(crate) window_bits: u8,
}

/// A connected client. Cheap to clone; every clone is the same connection.
///
/// `send` and friends never block and never wait for the network: they queue the message for the
/// peer's connection task. A peer whose queue grows past `WsConfig::max_buffered_bytes` is a slow
/// consumer and is closed with 1013.
#[derive(Clone)]
pub struct Peer {
    pub(crate) shared: Arc<PeerShared>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("id", &self.shared.id)
            .field("remote_addr", &self.shared.remote_addr)
            .field("path", &self.shared.request.uri.path())
            .field("ready_state", &self.ready_state())
            .finish()
    }
}

impl PartialEq for Peer {
    fn eq(&self, other: &Self) -> bool {
        self.shared.id == other.shared.id
    }
}

impl Eq for Peer {}

impl Peer {
    /// A unique id (UUID v4).
    pub fn id(&self) -> Uuid {
        self.shared.id
    }

    /// The client's address, when known (behind a proxy: the proxy's; see the request headers).
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.shared.remote_addr
    }

    /// The upgrade request: method, URI, headers.
    pub fn request(&self) -> &RequestInfo {
        &self.shared.request
    }

    /// Typed data attached in the `upgrade` hook with `Accept::context`.
    pub fn context<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.shared.context.get::<T>()
    }

    /// The connection state (`readyState`).
    pub fn ready_state(&self) -> ReadyState {
        ReadyState::from_u8(self.shared.state.load(Ordering::Acquire))
    }

    pub(crate) fn set_ready_state(&self, state: ReadyState) {
        self.shared.state.store(state as u8, Ordering::Release);
    }

    /// The negotiated subprotocol.
    pub fn protocol(&self) -> Option<&str> {
        self.shared.protocol.as_deref()
    }

    /// The negotiated extensions, as sent in `Sec-WebSocket-Extensions`.
    pub fn extensions(&self) -> Option<&str> {
        self.shared.extensions.as_deref()
    }

    /// Bytes queued for this peer and not yet written to its socket: each queued message counts its
    /// payload plus [`QUEUE_ENTRY_COST`] (what queueing it costs), so the limit bounds memory for any
    /// message size.
    pub fn buffered_amount(&self) -> usize {
        self.shared.buffered.load(Ordering::Acquire)
    }

    /// Queues a message: `&str`/`String` as text, `Vec<u8>`/`Bytes` as binary, or a `Message`.
    pub fn send(&self, message: impl Into<Message>) -> Result<(), SendError> {
        self.enqueue(message.into())
    }

    /// Queues a text message.
    pub fn send_text(&self, text: impl Into<String>) -> Result<(), SendError> {
        self.enqueue(Message::from_text(text))
    }

    /// Queues a binary message.
    pub fn send_binary(&self, bytes: impl Into<bytes::Bytes>) -> Result<(), SendError> {
        self.enqueue(Message::from_binary(bytes))
    }

    /// Queues `value` as a JSON text message.
    pub fn send_json<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), SendError> {
        self.enqueue(Message::from_json(value)?)
    }

    /// Queues a ping (payload cut to 125 bytes). The server also pings on its own; see `WsConfig`.
    pub fn ping(&self, payload: impl Into<bytes::Bytes>) -> Result<(), SendError> {
        if self.ready_state() != ReadyState::Open {
            return Err(SendError::Closed);
        }
        self.shared.outbox.push(Outgoing::Ping(payload.into())).map_err(|_| SendError::Closed)
    }

    fn enqueue(&self, message: Message) -> Result<(), SendError> {
        let len = message.len();
        self.enqueue_item(Outgoing::Message(message), len, self.shared.max_buffered, SlowConsumerPolicy::Close)
    }

    /// Queues an item whose payload is `len` bytes (it costs `len + QUEUE_ENTRY_COST`). Past `limit`
    /// (with something already queued, so one large message always fits) the peer is a slow consumer
    /// and `policy` decides. `QueueFull` is returned once, by the call that found the peer slow and
    /// (under `Close`) started closing it; later calls get `Closed`.
    pub(crate) fn enqueue_item(
        &self,
        item: Outgoing,
        len: usize,
        limit: usize,
        policy: SlowConsumerPolicy,
    ) -> Result<(), SendError> {
        if self.ready_state() > ReadyState::Open || self.shared.abort.load(Ordering::Acquire) != 0 {
            return Err(SendError::Closed);
        }
        let cost = len.saturating_add(QUEUE_ENTRY_COST);
        let before = self.shared.buffered.fetch_add(cost, Ordering::AcqRel);
        if before > 0 && before.saturating_add(cost) > limit {
            self.shared.buffered.fetch_sub(cost, Ordering::AcqRel);
            if policy == SlowConsumerPolicy::Close && !self.mark_slow_consumer(before, limit) {
                // Another call found it slow first (or it is closing anyway).
                return Err(SendError::Closed);
            }
            return Err(SendError::QueueFull { buffered: before, limit });
        }
        self.shared.outbox.push(item).map_err(|_| {
            self.shared.buffered.fetch_sub(cost, Ordering::AcqRel);
            SendError::Closed
        })
    }

    /// Closes the peer with 1013 as a slow consumer (`buffered` bytes queued, over `limit`), with one log
    /// line. Returns false if it was being closed already.
    pub(crate) fn mark_slow_consumer(&self, buffered: usize, limit: usize) -> bool {
        *self.shared.slow_consumer.lock().unwrap_or_else(|p| p.into_inner()) = (buffered, limit);
        let first = self.abort_with(CloseCode::TRY_AGAIN_LATER.0);
        if first {
            tracing::warn!(peer = %self.id(), buffered, limit, "slow consumer: closing with 1013");
        }
        first
    }

    /// Waits until a message of `len` bytes fits in the queue under `limit` without making the peer a
    /// slow consumer: the queue is empty, or at most half full with it. Returns false if the peer
    /// closed meanwhile.
    pub(crate) async fn wait_for_room(&self, len: usize, limit: usize) -> bool {
        let cost = len.saturating_add(QUEUE_ENTRY_COST);
        let fits = |buffered: usize| buffered == 0 || buffered.saturating_add(cost) <= limit / 2;
        loop {
            if self.ready_state() > ReadyState::Open || self.shared.abort.load(Ordering::Acquire) != 0 {
                return false;
            }
            let drained = self.shared.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            self.shared.drain_wanted.store(true, Ordering::SeqCst);
            if fits(self.buffered_amount()) {
                self.shared.drain_wanted.store(false, Ordering::SeqCst);
                return true;
            }
            // The notification is the fast path; the timeout covers a wake-up raced away.
            let _ = tokio::time::timeout(std::time::Duration::from_millis(50), drained).await;
        }
    }

    /// The queue size and the limit that made this peer a slow consumer.
    pub(crate) fn slow_consumer_report(&self) -> (usize, usize) {
        *self.shared.slow_consumer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the closing handshake with `code` and `reason` (cut to 123 bytes). Messages queued
    /// before are sent first. Codes: 1000, 1001-1003, 1007-1014, 3000-4999.
    pub fn close(&self, code: u16, reason: &str) -> Result<(), InvalidCloseCode> {
        if !CloseCode(code).is_valid_on_wire() {
            return Err(InvalidCloseCode(code));
        }
        if self.ready_state() <= ReadyState::Open {
            // If the task is gone the peer is closed already, which is what was asked.
            let _ = self.shared.outbox.push(Outgoing::Close(CloseFrame::new(code, reason)));
        }
        Ok(())
    }

    /// Drops the connection at once, without a close frame (the client sees 1006).
    pub fn terminate(&self) {
        self.abort_with(TERMINATE);
    }

    /// Closes with `code` ahead of anything queued (slow consumers, shutdown). Returns false if the
    /// peer was being aborted already.
    pub(crate) fn abort_with(&self, code: u16) -> bool {
        let first = self.shared.abort.compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire).is_ok();
        if first {
            // Wake a blocked write (it waits on the signal), leave a permit for one that has not started
            // waiting yet, and wake the task's main loop through its queue.
            self.shared.abort_signal.notify_waiters();
            self.shared.abort_signal.notify_one();
            let _ = self.shared.outbox.push(Outgoing::Wake);
        }
        first
    }

    /// Subscribes to `topic`: publications to it reach this peer until it unsubscribes or leaves.
    /// Returns false if it was subscribed already.
    pub fn subscribe(&self, topic: &str) -> bool {
        lock_set(&self.shared.topics).insert(Arc::from(topic));
        self.shared.app.topics.subscribe(topic, self)
    }

    /// Subscribes to `topic` after replaying the publications it missed since `since` (needs
    /// history: `PubSubConfig::history`). `recovered: false` means they could not all be replayed
    /// (too old, or another epoch, or the broker unreachable): the client should refetch its state.
    /// Publications that arrive meanwhile follow the replay, none twice.
    pub async fn subscribe_since(&self, topic: &str, since: &Position) -> Recovery {
        lock_set(&self.shared.topics).insert(Arc::from(topic));
        self.shared.app.topics.subscribe_since(topic, self, since).await
    }

    /// Unsubscribes from `topic`; returns false if it was not subscribed.
    pub fn unsubscribe(&self, topic: &str) -> bool {
        lock_set(&self.shared.topics).remove(topic);
        self.shared.app.topics.unsubscribe(topic, self.id())
    }

    /// The topics this peer is subscribed to.
    pub fn topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = lock_set(&self.shared.topics).iter().map(|t| t.to_string()).collect();
        topics.sort();
        topics
    }

    /// Publishes to every subscriber of `topic` but this peer (here and on other nodes). Returns the
    /// number of local subscribers it was queued for. `peer.hub().publish` includes the sender.
    pub fn publish(&self, topic: &str, message: impl Into<Message>) -> usize {
        self.shared.app.topics.publish(topic, &message.into(), Some(self.id())).0
    }

    /// The server's hub: publish to any topic, list topics and peers.
    pub fn hub(&self) -> Hub {
        Hub { app: self.shared.app.clone() }
    }

    /// Leaves every topic (when the connection ends).
    pub(crate) fn leave_topics(&self) {
        let topics: Vec<Arc<str>> = lock_set(&self.shared.topics).drain().collect();
        for topic in topics {
            self.shared.app.topics.unsubscribe(&topic, self.id());
        }
    }

    /// The peers connected to the same route, this one included.
    pub fn peers(&self) -> Vec<Peer> {
        self.shared.route.peers.list()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_decoded() {
        let info = RequestInfo {
            method: Method::GET,
            uri: "/chat?room=caf%C3%A9+bar&x".parse().unwrap(),
            version: Version::HTTP_11,
            headers: HeaderMap::new(),
        };
        assert_eq!(info.query_param("room").as_deref(), Some("café bar"));
        assert_eq!(info.query_param("x").as_deref(), Some(""));
        assert_eq!(info.query_param("y"), None);
    }
}
