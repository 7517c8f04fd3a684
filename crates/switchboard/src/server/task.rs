//! The connection task: one per peer, it owns the socket, reads frames, runs the hooks, and writes
//! everything queued for the peer. Nothing else touches the socket, so nothing else can block on it.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use futures_util::FutureExt;
use switchboard_wire::{CloseCode, CloseFrame, CloseState, Connection, Event, MessageKind, ProtocolError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::app::AppShared;
use super::buffer_pool;
use super::config::WsConfig;
use super::hooks::{DynHooks, Handled, HookResult};
use super::peer::{Outgoing, Peer, ReadyState, QUEUE_ENTRY_COST, TERMINATE};
use super::write_queue::WriteQueue;
use crate::error::{CloseEvent, Error};
use crate::Message;

/// Room made before each read; a larger frame grows the buffer as needed.
const READ_CHUNK: usize = 4096;
/// Queued items are encoded until this much waits to be written (the rest stays queued).
const KEEP_BUFFER: usize = 64 * 1024;
/// How long a failed connection waits for the peer to see our close frame before dropping it.
const LINGER: Duration = Duration::from_secs(1);

/// Why a write did not complete.
enum WriteFailed {
    Io(std::io::Error),
    /// The peer was aborted (slow consumer, terminate, shutdown) before the write started, or while
    /// it was blocked (`mid_write`: part of what was queued went out, maybe part of a frame).
    Aborted {
        mid_write: bool,
    },
    /// The peer read nothing for this long.
    Stalled(Duration),
}

pub(crate) struct PeerTask<IO> {
    pub(crate) io: IO,
    pub(crate) conn: Connection,
    pub(crate) peer: Peer,
    pub(crate) hooks: Arc<dyn DynHooks>,
    pub(crate) config: Arc<WsConfig>,
    pub(crate) app: Arc<AppShared>,
    /// Bytes read and not yet parsed. Borrowed from the thread's pool while bytes are in flight, so an
    /// idle connection holds no buffer.
    pub(crate) read_buf: BytesMut,
    /// Items taken from the outbox and not yet encoded.
    pub(crate) pending: VecDeque<Outgoing>,
    /// The `open` or `message` hook in progress. While it runs, reading pauses (the peer's messages
    /// reach the hooks one at a time, in order) but writes, pings and deadlines go on.
    pub(crate) hook: Option<HookFuture>,
    /// Bytes of incomplete incoming messages this connection holds, counted in the server-wide budget.
    pub(crate) incomplete: usize,
    /// Its place in the server's connection count (none when served by another HTTP server): held,
    /// never read; dropping it frees the place.
    #[allow(dead_code)]
    pub(crate) admitted: Option<super::door::Held>,
    /// Its rate limits, made at its first ping or limited message.
    pub(crate) rates: Option<Box<super::rate::RateLimits>>,
}

/// What a connection task starts from, whatever its I/O.
pub(crate) struct Start {
    pub(crate) conn: Connection,
    pub(crate) peer: Peer,
    pub(crate) hooks: Arc<dyn DynHooks>,
    pub(crate) config: Arc<WsConfig>,
    pub(crate) app: Arc<AppShared>,
    pub(crate) admitted: Option<super::door::Held>,
}

impl<IO> PeerTask<IO> {
    /// The task of an upgraded connection; `read_buf` holds what came after the handshake.
    pub(crate) fn new(io: IO, read_buf: BytesMut, start: Start) -> Self {
        let Start { conn, peer, hooks, config, app, admitted } = start;
        Self {
            io,
            conn,
            peer,
            hooks,
            config,
            app,
            read_buf,
            pending: VecDeque::new(),
            hook: None,
            incomplete: 0,
            admitted,
            rates: None,
        }
    }
}

/// A hook call in progress, its error or panic already turned into an `Error`.
pub(crate) type HookFuture = Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>;

impl<IO> Drop for PeerTask<IO> {
    fn drop(&mut self) {
        // Sends fail from now on (SendError::Closed) instead of queueing for nobody.
        self.peer.shared.outbox.close();
        self.app.incomplete.release(std::mem::take(&mut self.incomplete));
    }
}

/// What parsing the buffered input led to.
enum Parsed {
    /// Parsed all that could be; `messages` complete messages went to the hooks.
    Continue { messages: bool },
    /// The connection ended.
    Ended(CloseEvent),
}

impl<IO: AsyncRead + AsyncWrite + Unpin + Send> PeerTask<IO> {
    pub(crate) async fn run(mut self) {
        let peer = self.peer.clone();
        peer.set_ready_state(ReadyState::Open);
        peer.shared.route.peers.insert(&peer);
        self.app.register(&peer);
        if self.app.is_shutting_down() {
            let _ = peer.close(CloseCode::GOING_AWAY.0, "server shutting down");
        }
        let mut write_buf = WriteQueue::default();
        // The open hook runs inside the loop, so what it queues (a welcome, a replay fed as the queue
        // drains) is written while it still runs. Frames that came with the handshake wait for it.
        self.hook = Some(Box::pin(call_hook("open", self.hooks.open(peer.clone()))));
        let event = self.drive(&mut write_buf).await;
        // A hook still running when the connection ended is dropped: its peer is gone.
        self.hook = None;
        peer.set_ready_state(ReadyState::Closed);
        peer.leave_topics();
        self.app.unregister(&peer);
        let code = event.code;
        tracing::debug!(peer = %peer.id(), code = event.code, reason = %event.reason, clean = event.was_clean, "closed");
        if let Err(error) = call_hook("close", self.hooks.close(peer.clone(), event)).await {
            Box::pin(self.report(error)).await;
        }
        peer.shared.route.peer_left(&peer, code);
        peer.shared.route.peers.remove(&peer.id());
    }

    async fn drive(&mut self, write_buf: &mut WriteQueue) -> CloseEvent {
        let config = self.config.clone();
        let start = Instant::now();
        let mut last_frame = start;
        let mut last_message = start;
        let mut next_ping = config.ping_interval.map(|every| start + every);
        let mut close_deadline: Option<Instant> = None;
        let mut message_deadline: Option<Instant> = None;
        let mut accounted = 0usize;
        // The keep-alive and idle deadlines move with every frame; re-arming a timer per frame would
        // cost more than the echo itself. They are checked when the timer fires and re-armed then.
        let mut keepalive_at = config.keepalive_timeout.map(|t| start + t);
        let mut idle_at = config.idle_timeout.map(|t| start + t);
        // Reading the clock per frame is only worth it when a timeout depends on it.
        let tracks_time = config.keepalive_timeout.is_some() || config.idle_timeout.is_some();
        let timer = tokio::time::sleep_until(start + Duration::from_secs(3600));
        tokio::pin!(timer);
        let mut armed: Option<Instant> = None;
        // The deadlines only move when the timer fires, a close is sent, or a message starts or ends:
        // recompute them only then.
        let mut deadlines_moved = true;
        loop {
            // An abort (slow consumer, terminate, shutdown) jumps the queue. `abort_with` also queues a
            // wake-up item, so an idle task gets here; checking a flag costs less than a Notify per turn.
            if self.peer.shared.abort.load(Ordering::Acquire) != 0 {
                return Box::pin(self.abort(write_buf, false)).await;
            }
            if deadlines_moved {
                deadlines_moved = false;
                let deadline =
                    [next_ping, keepalive_at, idle_at, close_deadline, message_deadline].into_iter().flatten().min();
                if deadline != armed {
                    if let Some(at) = deadline {
                        timer.as_mut().reset(at);
                    }
                    armed = deadline;
                }
            }
            let outbox = &self.peer.shared.outbox;
            let pending = &self.pending;
            let hook = &mut self.hook;
            let reading = hook.is_none();
            // Whether new input was parsed in this turn (and what it did).
            let parsed = tokio::select! {
                biased;
                () = std::future::poll_fn(|cx| if pending.is_empty() { outbox.poll_ready(cx) } else { Poll::Ready(()) }) => {
                    accounted += self.drain_queue(write_buf);
                    if let Err(failure) = self.flush(write_buf, &mut accounted).await {
                        return Box::pin(self.write_failed(failure, write_buf)).await;
                    }
                    if self.conn.close_state() == CloseState::CloseSent && close_deadline.is_none() {
                        self.peer.set_ready_state(ReadyState::Closing);
                        close_deadline = Some(Instant::now() + config.close_timeout);
                        deadlines_moved = true;
                    }
                    None
                }
                finished = poll_hook(hook), if !reading => {
                    self.hook = None;
                    if let Err(error) = finished {
                        if self.peer.shared.abort.load(Ordering::Acquire) != 0 {
                            // The hook failed because the peer is being closed (its sends fail): the
                            // close that is under way says why, not 1011.
                            tracing::debug!(peer = %self.peer.id(), %error, "hook failed while the peer was closing");
                            return Box::pin(self.abort(write_buf, false)).await;
                        }
                        return Box::pin(self.fail_internal(error, write_buf)).await;
                    }
                    if tracks_time {
                        // Reading paused while the hook ran: the peer is not to blame for that time.
                        last_frame = Instant::now();
                    }
                    // Frames that arrived behind the message (or the handshake) are parsed now.
                    Some(self.parse_input(write_buf, &mut accounted).await)
                }
                read = read_more(&mut self.io, &mut self.read_buf), if reading => {
                    match read {
                        Ok(0) => return self.eof(),
                        Err(e) => return Box::pin(self.lost(e)).await,
                        Ok(_) => {}
                    }
                    // What the hooks queue from here on is drained below: no need to wake this task.
                    self.peer.shared.outbox.unregister();
                    if tracks_time {
                        last_frame = Instant::now();
                    }
                    Some(self.parse_input(write_buf, &mut accounted).await)
                }
                () = &mut timer, if armed.is_some() => {
                    armed = None;
                    deadlines_moved = true;
                    let now = Instant::now();
                    if close_deadline.is_some_and(|d| now >= d) {
                        return CloseEvent { code: 1006, reason: "close handshake timed out".into(), was_clean: false };
                    }
                    if let Some(timeout) = message_deadline.filter(|d| now >= *d).and(config.message_timeout) {
                        Box::pin(self.report(Error::MessageTimeout(timeout))).await;
                        let reason = format!("message not completed within {}s", timeout.as_secs_f64());
                        return Box::pin(self.close_now(CloseFrame::new(CloseCode::POLICY_VIOLATION, reason), write_buf)).await;
                    }
                    // While a hook runs nothing is read, so silence proves nothing about the peer.
                    let waiting_for_hook = self.hook.is_some();
                    if let Some(timeout) = config.keepalive_timeout {
                        if now >= last_frame + timeout && !waiting_for_hook {
                            Box::pin(self.report(Error::KeepaliveTimeout(timeout))).await;
                            return Box::pin(self.close_now(CloseFrame::new(CloseCode::INTERNAL_ERROR, "keep-alive timeout"), write_buf)).await;
                        }
                        keepalive_at = Some(last_frame.max(now - timeout) + timeout);
                    }
                    if let Some(timeout) = config.idle_timeout {
                        if now >= last_message + timeout && close_deadline.is_none() && !waiting_for_hook {
                            let _ = self.peer.close(CloseCode::NORMAL.0, "idle timeout");
                            last_message = now + config.close_timeout;
                        }
                        idle_at = Some(last_message.max(now - timeout) + timeout);
                    }
                    if let Some(at) = next_ping.filter(|at| now >= *at) {
                        self.conn.encode_ping(b"", write_buf.buf());
                        if let Err(failure) = self.flush(write_buf, &mut accounted).await {
                            return Box::pin(self.write_failed(failure, write_buf)).await;
                        }
                        next_ping = config.ping_interval.map(|every| at.max(now - every) + every);
                    }
                    None
                }
            };
            let Some(parsed) = parsed else { continue };
            match parsed {
                Parsed::Ended(event) => return event,
                Parsed::Continue { messages } => {
                    if messages {
                        last_message = last_frame;
                    }
                }
            }
            if let Some(event) = Box::pin(self.account_incomplete(write_buf)).await {
                return event;
            }
            match (self.conn.is_mid_message(), message_deadline.is_some(), config.message_timeout) {
                (true, false, Some(timeout)) => {
                    message_deadline = Some(Instant::now() + timeout);
                    deadlines_moved = true;
                }
                (false, true, _) => {
                    message_deadline = None;
                    deadlines_moved = true;
                }
                _ => {}
            }
            // Replies the hooks queued go out in the same write as the pongs.
            accounted += self.drain_queue(write_buf);
            if let Err(failure) = self.flush(write_buf, &mut accounted).await {
                return Box::pin(self.write_failed(failure, write_buf)).await;
            }
            if self.read_buf.is_empty() {
                buffer_pool::give_back(&mut self.read_buf);
            }
        }
    }

    /// Parses the buffered input and hands complete messages to the hooks, until more bytes are
    /// needed or a message hook has to be awaited (it is left in `self.hook`).
    async fn parse_input(&mut self, write_buf: &mut WriteQueue, accounted: &mut usize) -> Parsed {
        let mut messages = false;
        while self.hook.is_none() {
            match self.conn.receive(&mut self.read_buf) {
                Ok(None) => break,
                Ok(Some(Event::Message(kind, data))) => {
                    messages = true;
                    self.peer.shared.counters.received(data.len());
                    if self.config.max_messages_per_second.is_some() || self.config.max_bytes_per_second.is_some() {
                        let config = &self.config;
                        let rates = self.rates.get_or_insert_with(|| Box::new(super::rate::RateLimits::new(config)));
                        if let Err(exceeded) = rates.message(data.len()) {
                            self.peer.shared.route.rate_limited();
                            if self.config.rate_limit_policy == super::rate::RateLimitPolicy::Drop {
                                continue;
                            }
                            return Parsed::Ended(self.rate_exceeded(exceeded, write_buf).await);
                        }
                    }
                    let message = Message::from_wire(kind, data);
                    match self.hooks.message_now(&self.peer, message) {
                        Handled::Done(Ok(())) => {}
                        Handled::Done(Err(error)) => return Parsed::Ended(self.fail_internal(error, write_buf).await),
                        Handled::Async(message) => {
                            let call = self.hooks.message(self.peer.clone(), message);
                            self.hook = Some(Box::pin(call_hook("message", call)));
                        }
                    }
                }
                Ok(Some(Event::Ping(payload))) => {
                    let config = &self.config;
                    let rates = self.rates.get_or_insert_with(|| Box::new(super::rate::RateLimits::new(config)));
                    if let Err(exceeded) = rates.ping() {
                        self.peer.shared.route.rate_limited();
                        return Parsed::Ended(self.rate_exceeded(exceeded, write_buf).await);
                    }
                    self.conn.encode_pong(&payload, write_buf.buf());
                }
                Ok(Some(Event::Pong(_))) => {}
                Ok(Some(Event::Close(frame))) => {
                    return Parsed::Ended(self.peer_closed(frame, write_buf, accounted).await);
                }
                Err(error) => return Parsed::Ended(self.fail_protocol(error, write_buf).await),
            }
        }
        Parsed::Continue { messages }
    }

    /// Counts what this connection holds of incomplete messages in the server-wide budget. Over the
    /// budget, the connection whose input took the total past it is closed: with 1009 when the message
    /// it is sending is larger than the whole budget (it could never fit), with 1013 otherwise.
    async fn account_incomplete(&mut self, write_buf: &mut WriteQueue) -> Option<CloseEvent> {
        let held = self.read_buf.len() + self.conn.partial_len();
        let before = std::mem::replace(&mut self.incomplete, held);
        let over = self.app.incomplete.update(before, held)?;
        let (code, reason) = if self.conn.incoming_message_len().max(held) > over.budget {
            (CloseCode::MESSAGE_TOO_BIG, "message larger than the server's budget for incomplete messages")
        } else {
            (CloseCode::TRY_AGAIN_LATER, "server busy: too many incomplete messages")
        };
        tracing::warn!(peer = %self.peer.id(), held, total = over.total, budget = over.budget, code = code.0, "{reason}");
        self.report(Error::IncompleteBudget { held, total: over.total, budget: over.budget }).await;
        Some(self.close_now(CloseFrame::new(code, reason), write_buf).await)
    }

    /// Encodes one queued item; returns the message bytes it accounts for in `buffered_amount`.
    fn encode(&mut self, item: Outgoing, write_buf: &mut WriteQueue) -> usize {
        match item {
            Outgoing::Message(message) => {
                let len = message.len();
                let kind = if message.is_text() { MessageKind::Text } else { MessageKind::Binary };
                self.peer.shared.counters.sent(len);
                self.conn.encode_message(kind, message.bytes(), write_buf.buf());
                len + QUEUE_ENTRY_COST
            }
            Outgoing::Frame { frame, accounted } => {
                if self.conn.can_send_data() {
                    self.peer.shared.counters.sent(accounted.saturating_sub(QUEUE_ENTRY_COST));
                    write_buf.push_shared(frame);
                }
                accounted
            }
            Outgoing::Wake => 0,
            Outgoing::Ping(payload) => {
                self.conn.encode_ping(&payload, write_buf.buf());
                0
            }
            Outgoing::Close(frame) => {
                self.conn.encode_close(Some(&frame), write_buf.buf());
                0
            }
        }
    }

    fn drain_queue(&mut self, write_buf: &mut WriteQueue) -> usize {
        let mut accounted = 0;
        if self.pending.is_empty() {
            self.peer.shared.outbox.take_all(&mut self.pending);
        }
        while write_buf.len() < KEEP_BUFFER {
            match self.pending.pop_front() {
                Some(item) => accounted += self.encode(item, write_buf),
                None => break,
            }
        }
        accounted
    }

    /// Writes `write_buf` out. A peer that stops reading would block this forever, so the write also
    /// ends when the peer is aborted (slow consumer, terminate, shutdown) or makes no progress for the
    /// keep-alive timeout.
    async fn flush(&mut self, write_buf: &mut WriteQueue, accounted: &mut usize) -> Result<(), WriteFailed> {
        if write_buf.is_empty() {
            return Ok(());
        }
        if self.peer.shared.abort.load(Ordering::Acquire) != 0 {
            return Err(WriteFailed::Aborted { mid_write: false });
        }
        let write = write_buf.write_to(&mut self.io);
        tokio::pin!(write);
        // Most writes complete at once; only a blocked one needs the abort signal and a stall timer.
        match futures_util::FutureExt::now_or_never(write.as_mut()) {
            Some(written) => written.map_err(WriteFailed::Io)?,
            None => {
                // A blocked write: rare, so its timer and abort signal live on the heap, not in every
                // connection's task.
                let stall = self.config.keepalive_timeout.unwrap_or(Duration::from_secs(24 * 3600));
                let abort_signal = &self.peer.shared.abort_signal;
                Box::pin(async move {
                    tokio::select! {
                        biased;
                        written = &mut write => written.map_err(WriteFailed::Io),
                        () = abort_signal.notified() => Err(WriteFailed::Aborted { mid_write: true }),
                        () = tokio::time::sleep(stall) => Err(WriteFailed::Stalled(stall)),
                    }
                })
                .await?
            }
        }
        self.peer.shared.buffered.fetch_sub(std::mem::take(accounted), Ordering::AcqRel);
        if self.peer.shared.drain_wanted.load(Ordering::SeqCst) {
            self.peer.shared.drained.notify_waiters();
        }
        Ok(())
    }

    /// The peer's close frame arrived: answer it (unless it answers ours), then close the transport.
    async fn peer_closed(
        &mut self,
        frame: Option<CloseFrame>,
        write_buf: &mut WriteQueue,
        accounted: &mut usize,
    ) -> CloseEvent {
        self.peer.set_ready_state(ReadyState::Closing);
        let (code, reason) =
            frame.as_ref().map_or((CloseCode::NO_STATUS.0, String::new()), |f| (f.code.0, f.reason.clone()));
        *accounted += self.drain_queue(write_buf);
        if self.conn.close_state() == CloseState::CloseReceived {
            // Echo the frame (RFC 6455 section 5.5.1); an empty close is answered with an empty close.
            self.conn.encode_close(frame.as_ref(), write_buf.buf());
        }
        if let Err(failure) = self.flush(write_buf, accounted).await {
            return self.write_failed(failure, write_buf).await;
        }
        self.linger().await;
        CloseEvent { code, reason, was_clean: true }
    }

    /// The peer broke the protocol: send the close code it earned, tell the error hook, close.
    async fn fail_protocol(&mut self, error: ProtocolError, write_buf: &mut WriteQueue) -> CloseEvent {
        tracing::debug!(peer = %self.peer.id(), %error, "protocol error");
        let code = error.close_code();
        let reason = error.to_string();
        // What the hooks queued before the bad frame still goes out, ahead of the close frame.
        self.drain_queue(write_buf);
        self.conn.fail(&error, write_buf.buf());
        self.write_best_effort(write_buf).await;
        self.report(Error::Protocol(error)).await;
        self.linger().await;
        CloseEvent { code: code.0, reason, was_clean: false }
    }

    /// A hook failed: close with 1011 and tell the error hook.
    async fn fail_internal(&mut self, error: Error, write_buf: &mut WriteQueue) -> CloseEvent {
        tracing::warn!(peer = %self.peer.id(), %error, "closing peer with 1011");
        self.report(error).await;
        self.close_now(CloseFrame::new(CloseCode::INTERNAL_ERROR, "internal error"), write_buf).await
    }

    /// Sends `frame` ahead of anything queued and closes without waiting for the answer.
    /// The peer sent faster than its limits: 1008 with the limit in the reason.
    async fn rate_exceeded(&mut self, exceeded: super::rate::Exceeded, write_buf: &mut WriteQueue) -> CloseEvent {
        let reason = exceeded.reason();
        tracing::debug!(peer = %self.peer.id(), %reason, "closing peer with 1008");
        self.close_now(CloseFrame::new(CloseCode::POLICY_VIOLATION, reason), write_buf).await
    }

    async fn close_now(&mut self, frame: CloseFrame, write_buf: &mut WriteQueue) -> CloseEvent {
        write_buf.clear();
        self.close_after(frame, write_buf).await
    }

    /// Sends what is in `write_buf`, then `frame`, and closes without waiting for the answer.
    async fn close_after(&mut self, frame: CloseFrame, write_buf: &mut WriteQueue) -> CloseEvent {
        self.peer.set_ready_state(ReadyState::Closing);
        // Nothing more is parsed: what an incomplete message held is freed now, not after the linger.
        self.read_buf = BytesMut::new();
        self.app.incomplete.release(std::mem::take(&mut self.incomplete));
        self.conn.encode_close(Some(&frame), write_buf.buf());
        self.conn.abort();
        self.write_best_effort(write_buf).await;
        self.linger().await;
        CloseEvent { code: frame.code.0, reason: frame.reason, was_clean: false }
    }

    /// Handles `abort_with`: terminate, or a close that jumps the queue. `mid_write`: a blocked write was
    /// cut off, maybe inside a frame; what is left of it goes out first (the close frame can only follow
    /// a whole frame), then the close frame, as far as the socket takes them within the close timeout.
    async fn abort(&mut self, write_buf: &mut WriteQueue, mid_write: bool) -> CloseEvent {
        let code = self.peer.shared.abort.load(Ordering::Acquire);
        if code == TERMINATE || code == 0 {
            self.conn.abort();
            return CloseEvent { code: 1006, reason: "terminated".into(), was_clean: false };
        }
        let reason = if code == CloseCode::TRY_AGAIN_LATER.0 { "slow consumer" } else { "closing" };
        if code == CloseCode::TRY_AGAIN_LATER.0 {
            let (buffered, limit) = self.peer.slow_consumer_report();
            self.report(Error::SlowConsumer { buffered, limit }).await;
        }
        if !mid_write {
            write_buf.clear();
        }
        self.close_after(CloseFrame::new(code, reason), write_buf).await
    }

    async fn write_failed(&mut self, failure: WriteFailed, write_buf: &mut WriteQueue) -> CloseEvent {
        match failure {
            WriteFailed::Io(error) => self.lost(error).await,
            WriteFailed::Aborted { mid_write } => self.abort(write_buf, mid_write).await,
            WriteFailed::Stalled(after) => {
                let error =
                    std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no write progress for {after:?}"));
                self.lost(error).await
            }
        }
    }

    /// Writes what is in `write_buf`, giving up after the close timeout (the peer may be stalled).
    async fn write_best_effort(&mut self, write_buf: &mut WriteQueue) {
        let timeout = self.config.close_timeout;
        let _ = tokio::time::timeout(timeout, async { write_buf.write_to(&mut self.io).await }).await;
        write_buf.clear();
    }

    /// Closes our side and reads (and discards) until the peer closes too, so that our last frames are
    /// not destroyed by a TCP reset from unread input.
    async fn linger(&mut self) {
        let _ = tokio::time::timeout(LINGER, async {
            let _ = self.io.shutdown().await;
            let mut sink = vec![0u8; 1024];
            while matches!(self.io.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
    }

    fn eof(&mut self) -> CloseEvent {
        self.conn.abort();
        CloseEvent { code: 1006, reason: "connection closed without a close frame".into(), was_clean: false }
    }

    async fn lost(&mut self, error: std::io::Error) -> CloseEvent {
        self.conn.abort();
        let reason = error.to_string();
        self.report(Error::Io(error)).await;
        CloseEvent { code: 1006, reason, was_clean: false }
    }

    async fn report(&mut self, error: Error) {
        tracing::debug!(peer = %self.peer.id(), %error, "error hook");
        let hooks = self.hooks.clone();
        let peer = self.peer.clone();
        if let Err(panic) = AssertUnwindSafe(hooks.error(peer, error)).catch_unwind().await {
            tracing::error!(error = %Error::from_panic("error", panic), "the error hook panicked");
        }
    }
}

/// Reads more bytes.
async fn read_more<IO: AsyncRead + Unpin>(io: &mut IO, buf: &mut BytesMut) -> std::io::Result<usize> {
    std::future::poll_fn(|cx| poll_read_pooled(Pin::new(&mut *io), cx, buf)).await
}

/// One read attempt into `buf`, which borrows a pooled buffer if it has none and gives it back if
/// nothing arrived: waiting for data costs no memory.
fn poll_read_pooled<IO: AsyncRead>(
    io: Pin<&mut IO>,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<std::io::Result<usize>> {
    if buf.capacity() == 0 {
        *buf = buffer_pool::take();
    } else if buf.capacity() - buf.len() < READ_CHUNK {
        buf.reserve(READ_CHUNK);
    }
    let read = tokio_util::io::poll_read_buf(io, cx, buf);
    if read.is_pending() && buf.is_empty() {
        buffer_pool::give_back(buf);
    }
    read
}

/// Polls the hook in progress (never ready when there is none).
async fn poll_hook(hook: &mut Option<HookFuture>) -> Result<(), Error> {
    std::future::poll_fn(|cx| match hook.as_mut() {
        Some(call) => call.as_mut().poll(cx),
        None => Poll::Pending,
    })
    .await
}

/// Runs a hook, turning a returned error or a panic into an `Error`.
async fn call_hook(hook: &'static str, fut: impl std::future::Future<Output = HookResult>) -> Result<(), Error> {
    match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(source)) => Err(Error::Hook { hook, source }),
        Err(panic) => Err(Error::from_panic(hook, panic)),
    }
}
