//! `Session`: one logical connection (fritz2's `Session`), with message and state streams.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_core::Stream;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use switchboard_wire::CloseFrame;
use tokio::sync::{broadcast, mpsc, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::BroadcastStream;

use super::driver;
use super::error::{SendError, SessionError};
use super::socket::Socket;
use crate::error::{CloseEvent, InvalidCloseCode};
use crate::Message;

/// Where a session stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// A connection attempt is under way (`attempt` 0 is the first).
    Connecting {
        /// How many attempts came before this one.
        attempt: u32,
    },
    /// Open: messages flow.
    Open,
    /// Our close frame is sent; waiting for the server's.
    Closing,
    /// The connection ended and the reconnect policy waits `delay` before the next attempt.
    Reconnecting {
        /// The number of the next attempt.
        attempt: u32,
        /// How long until it starts.
        delay: std::time::Duration,
    },
    /// Closed for good: no more messages, no more reconnects.
    Closed(CloseEvent),
}

impl State {
    /// Connecting or waiting to reconnect.
    pub fn is_connecting(&self) -> bool {
        matches!(self, Self::Connecting { .. } | Self::Reconnecting { .. })
    }

    /// Open.
    pub fn is_open(&self) -> bool {
        matches!(self, Self::Open)
    }

    /// Closed for good.
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed(_))
    }
}

/// Lifecycle events, broadcast to the state streams.
#[derive(Clone, Debug)]
pub(crate) enum Lifecycle {
    State(State),
    Opened,
    Closed(CloseEvent),
    Error(SessionError),
    /// The session is closed for good: the lifecycle streams end here.
    Finished,
}

/// What waits to be written: a message and its share of the queue budget.
pub(crate) struct Outgoing {
    pub(crate) message: Message,
    pub(crate) _permit: Option<OwnedSemaphorePermit>,
}

/// Messages that arrive before anyone subscribed are kept for the first subscriber, up to these
/// bounds; beyond them the oldest are dropped with a warning.
const EARLY_MESSAGES: usize = 4096;
const EARLY_BYTES: usize = 16 << 20;
/// Each subscriber's channel: a subscriber this far behind slows the reading of the socket.
const SUBSCRIBER_CAPACITY: usize = 256;

#[derive(Default)]
struct Subscribers {
    list: Vec<mpsc::Sender<Message>>,
    /// `Some` until the first subscriber arrives.
    early: Option<(VecDeque<Message>, usize)>,
}

pub(crate) struct SessionShared {
    pub(crate) url: String,
    state: watch::Sender<State>,
    events: broadcast::Sender<Lifecycle>,
    subscribers: Mutex<Subscribers>,
    commands: mpsc::UnboundedSender<Outgoing>,
    budget: Arc<Semaphore>,
    max_queued: usize,
    close_request: Mutex<Option<CloseFrame>>,
    pub(crate) close_signal: Notify,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section here is a single push, pop or clone: a panic cannot leave them half done.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SessionShared {
    pub(crate) fn set_state(&self, state: State) {
        tracing::debug!(url = %self.url, ?state, "session state");
        self.state.send_replace(state.clone());
        let _ = self.events.send(Lifecycle::State(state));
    }

    pub(crate) fn current_state(&self) -> State {
        self.state.borrow().clone()
    }

    pub(crate) fn emit(&self, event: Lifecycle) {
        let _ = self.events.send(event);
    }

    pub(crate) fn emit_error(&self, error: SessionError) {
        tracing::debug!(url = %self.url, %error, "session error");
        let _ = self.events.send(Lifecycle::Error(error));
    }

    /// The close the user asked for, if any.
    pub(crate) fn requested_close(&self) -> Option<CloseFrame> {
        lock(&self.close_request).clone()
    }

    fn request_close(&self, frame: CloseFrame) {
        let mut request = lock(&self.close_request);
        if request.is_none() {
            *request = Some(frame);
            drop(request);
            // notify_one stores a permit, so a driver between two awaits still sees it.
            self.close_signal.notify_one();
        }
    }

    /// Hands a received message to every subscriber, waiting for room (backpressure).
    pub(crate) async fn deliver(&self, message: Message) {
        let targets = {
            let mut subs = lock(&self.subscribers);
            if subs.list.is_empty() {
                if let Some((early, bytes)) = subs.early.as_mut() {
                    *bytes += message.len();
                    early.push_back(message);
                    while early.len() > EARLY_MESSAGES || *bytes > EARLY_BYTES {
                        if let Some(old) = early.pop_front() {
                            *bytes -= old.len();
                            tracing::warn!(url = %self.url, "no subscriber yet: dropped the oldest early message");
                        }
                    }
                } else {
                    tracing::debug!(url = %self.url, "message dropped: every subscriber is gone");
                }
                return;
            }
            subs.list.clone()
        };
        let mut gone = false;
        for target in targets {
            gone |= target.send(message.clone()).await.is_err();
        }
        if gone {
            lock(&self.subscribers).list.retain(|s| !s.is_closed());
        }
    }

    /// Waits (at most `limit`) until every subscriber has taken what was delivered to it, then a
    /// moment more for the application to act on the last message.
    pub(crate) async fn settle(&self, limit: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let pending = lock(&self.subscribers).list.iter().any(|s| s.capacity() < s.max_capacity());
            if !pending || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }

    /// The session is over: record the final state and fail what is still queued.
    pub(crate) fn finish(&self, close: CloseEvent, commands: &mut mpsc::UnboundedReceiver<Outgoing>) {
        commands.close();
        while commands.try_recv().is_ok() {}
        self.budget.close();
        self.set_state(State::Closed(close));
        // Message streams end once they have handed out what they hold.
        lock(&self.subscribers).list.clear();
        let _ = self.events.send(Lifecycle::Finished);
    }
}

/// Closes the connection when the last `Session` handle (and `Messages` stream) is dropped.
struct HandleGuard(Arc<SessionShared>);

impl Drop for HandleGuard {
    fn drop(&mut self) {
        self.0.request_close(CloseFrame::new(1000, "session dropped"));
    }
}

/// A connection to a server, started by `Socket::connect`. Cloning gives another handle to the same
/// session; when every handle and every `Messages` stream is dropped, the session closes with 1000.
#[derive(Clone)]
pub struct Session {
    shared: Arc<SessionShared>,
    guard: Arc<HandleGuard>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("url", &self.shared.url).field("state", &self.shared.current_state()).finish()
    }
}

impl Session {
    pub(crate) fn start(socket: Socket) -> Self {
        let (commands, receiver) = mpsc::unbounded_channel();
        let (state, _) = watch::channel(State::Connecting { attempt: 0 });
        let (events, _) = broadcast::channel(256);
        let shared = Arc::new(SessionShared {
            url: socket.url.to_string(),
            state,
            events,
            subscribers: Mutex::new(Subscribers { list: Vec::new(), early: Some((VecDeque::new(), 0)) }),
            commands,
            budget: Arc::new(Semaphore::new(socket.max_queued_bytes)),
            max_queued: socket.max_queued_bytes,
            close_request: Mutex::new(None),
            close_signal: Notify::new(),
        });
        tokio::spawn(driver::run(socket, shared.clone(), receiver));
        Self { guard: Arc::new(HandleGuard(shared.clone())), shared }
    }

    /// The current state, without waiting.
    pub fn current_state(&self) -> State {
        self.shared.current_state()
    }

    /// Every message from the server (fritz2's `messages`). The first subscriber also gets what
    /// arrived before it subscribed; several subscribers each get every message, and a slow one slows
    /// the reading of the socket rather than losing messages. The stream ends when the session is
    /// closed for good (reconnects do not end it).
    pub fn messages(&self) -> Messages {
        let (tx, rx) = mpsc::channel(SUBSCRIBER_CAPACITY);
        let backlog = {
            let mut subs = lock(&self.shared.subscribers);
            // After the end, the stream only hands out what was buffered (`finish` clears the list
            // after setting the state, under this lock, so no sender can outlive it).
            if !self.shared.current_state().is_closed() {
                subs.list.push(tx);
            }
            subs.early.take().map(|(early, _)| early).unwrap_or_default()
        };
        Messages { backlog, rx, _guard: self.guard.clone() }
    }

    /// The state, now and at every change; the stream ends after the final `Closed`.
    pub fn state(&self) -> impl Stream<Item = State> + Send + 'static {
        let events = self.shared.events.subscribe();
        let now = self.shared.current_state();
        let first = futures_util::stream::once(std::future::ready(now.clone()));
        if now.is_closed() {
            return futures_util::future::Either::Left(first);
        }
        let changes = until_finished(BroadcastStream::new(events)).filter_map(|event| async move {
            match event {
                Lifecycle::State(state) => Some(state),
                _ => None,
            }
        });
        futures_util::future::Either::Right(dedup(first.chain(changes)))
    }

    /// Whether a connection attempt is under way (or a reconnect is pending), now and at every change.
    pub fn is_connecting(&self) -> impl Stream<Item = bool> + Send + 'static {
        dedup(self.state().map(|s| s.is_connecting()))
    }

    /// Whether the session is open, now and at every change.
    pub fn is_open(&self) -> impl Stream<Item = bool> + Send + 'static {
        dedup(self.state().map(|s| s.is_open()))
    }

    /// Whether the session is closed for good, now and at every change.
    pub fn is_closed(&self) -> impl Stream<Item = bool> + Send + 'static {
        dedup(self.state().map(|s| s.is_closed()))
    }

    /// One item each time a connection opens (again, after a reconnect). Like `closes()` and
    /// `errors()`, it ends when the session is closed for good.
    pub fn opens(&self) -> impl Stream<Item = ()> + Send + 'static {
        self.lifecycle(|event| matches!(event, Lifecycle::Opened).then_some(()))
    }

    /// One item each time a connection closes, with its code, reason and cleanliness.
    pub fn closes(&self) -> impl Stream<Item = CloseEvent> + Send + 'static {
        self.lifecycle(|event| match event {
            Lifecycle::Closed(close) => Some(close),
            _ => None,
        })
    }

    /// Connection and protocol errors, as they happen.
    pub fn errors(&self) -> impl Stream<Item = SessionError> + Send + 'static {
        self.lifecycle(|event| match event {
            Lifecycle::Error(error) => Some(error),
            _ => None,
        })
    }

    fn lifecycle<T: Send + 'static>(&self, pick: fn(Lifecycle) -> Option<T>) -> impl Stream<Item = T> + Send + 'static {
        let events = self.shared.events.subscribe();
        let finished = self.shared.current_state().is_closed();
        until_finished(BroadcastStream::new(events))
            .take_while(move |_| std::future::ready(!finished))
            .filter_map(move |event| std::future::ready(pick(event)))
    }

    /// Waits until the session is closed for good and returns how.
    pub async fn closed(&self) -> CloseEvent {
        let mut state = self.shared.state.subscribe();
        loop {
            if let State::Closed(close) = &*state.borrow_and_update() {
                return close.clone();
            }
            if state.changed().await.is_err() {
                return CloseEvent { code: 1006, reason: "session ended".into(), was_clean: false };
            }
        }
    }

    /// Queues a message (`&str`/`String` as text, `Vec<u8>`/`Bytes` as binary). While connecting it waits
    /// in the queue and goes out once open, in order. Waits when the queue is full. Fails with
    /// `SendError::Closed` once the session is closed for good.
    pub async fn send(&self, message: impl Into<Message>) -> Result<(), SendError> {
        let message = message.into();
        self.closed_error()?;
        let permits = self.permits_for(&message);
        let permit = match self.shared.budget.clone().acquire_many_owned(permits).await {
            Ok(permit) => permit,
            Err(_) => return Err(self.closed_now()),
        };
        self.enqueue(message, permit)
    }

    /// Like `send`, but fails with `SendError::QueueFull` instead of waiting.
    pub fn try_send(&self, message: impl Into<Message>) -> Result<(), SendError> {
        let message = message.into();
        self.closed_error()?;
        let permits = self.permits_for(&message);
        match self.shared.budget.clone().try_acquire_many_owned(permits) {
            Ok(permit) => self.enqueue(message, permit),
            Err(tokio::sync::TryAcquireError::NoPermits) => Err(SendError::QueueFull { limit: self.shared.max_queued }),
            Err(tokio::sync::TryAcquireError::Closed) => Err(self.closed_now()),
        }
    }

    /// Queues `value` as a JSON text message.
    pub async fn send_json<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), SendError> {
        let message = Message::from_json(value).map_err(|e| SendError::Json(Arc::new(e)))?;
        self.send(message).await
    }

    fn permits_for(&self, message: &Message) -> u32 {
        // A message larger than the whole budget takes all of it (it waits for an empty queue).
        message.len().clamp(1, self.shared.max_queued).min(u32::MAX as usize) as u32
    }

    fn enqueue(&self, message: Message, permit: OwnedSemaphorePermit) -> Result<(), SendError> {
        self.shared.commands.send(Outgoing { message, _permit: Some(permit) }).map_err(|_| self.closed_now())
    }

    /// The error for a send that found the queue shut: the session's final close.
    fn closed_now(&self) -> SendError {
        match self.shared.current_state() {
            State::Closed(close) => SendError::Closed { code: close.code, reason: close.reason },
            _ => SendError::Closed { code: 1006, reason: "the session ended".into() },
        }
    }

    fn closed_error(&self) -> Result<(), SendError> {
        match self.shared.current_state() {
            State::Closed(close) => Err(SendError::Closed { code: close.code, reason: close.reason }),
            _ => Ok(()),
        }
    }

    /// Closes the session: `code` defaults to 1000; only 1000 and 3000-4999 may be used (as in
    /// browsers). Messages queued before are sent first. Waits for the close handshake (at most the
    /// socket's close timeout) and returns how the session closed. No reconnect follows.
    pub async fn close(&self, code: impl Into<Option<u16>>, reason: &str) -> Result<CloseEvent, InvalidCloseCode> {
        let code = code.into().unwrap_or(1000);
        if code != 1000 && !(3000..=4999).contains(&code) {
            return Err(InvalidCloseCode(code));
        }
        self.shared.request_close(CloseFrame::new(code, reason));
        Ok(self.closed().await)
    }
}

/// Lifecycle events up to `Finished` (a subscriber that fell behind skips what it missed).
fn until_finished(events: BroadcastStream<Lifecycle>) -> impl Stream<Item = Lifecycle> + Send + 'static {
    events
        .filter_map(|event| std::future::ready(event.ok()))
        .take_while(|event| std::future::ready(!matches!(event, Lifecycle::Finished)))
}

/// Drops consecutive repeats.
fn dedup<T: PartialEq + Clone + Send + 'static>(
    stream: impl Stream<Item = T> + Send + 'static,
) -> impl Stream<Item = T> + Send + 'static {
    let mut last: Option<T> = None;
    stream.filter_map(move |item| {
        let fresh = last.as_ref() != Some(&item);
        if fresh {
            last = Some(item.clone());
        }
        std::future::ready(fresh.then_some(item))
    })
}

/// The stream of messages from `Session::messages`, with adapters for the seed's views.
pub struct Messages {
    backlog: VecDeque<Message>,
    rx: mpsc::Receiver<Message>,
    _guard: Arc<HandleGuard>,
}

impl Stream for Messages {
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        if let Some(message) = self.backlog.pop_front() {
            return Poll::Ready(Some(message));
        }
        self.rx.poll_recv(cx)
    }
}

impl Messages {
    /// The text of each text message (fritz2's `body`); binary messages are skipped.
    pub fn texts(self) -> impl Stream<Item = String> + Send + 'static {
        self.filter_map(|m| std::future::ready(m.is_text().then(|| m.text().map(str::to_owned).unwrap_or_default())))
    }

    /// The bytes of each binary message (fritz2's `arrayBuffer` and `blob`); text messages are skipped.
    pub fn binary(self) -> impl Stream<Item = Bytes> + Send + 'static {
        self.filter_map(|m| std::future::ready(m.is_binary().then(|| m.into_bytes())))
    }

    /// Each text message parsed as JSON (fritz2's `data`); a message that does not parse yields `Err`.
    pub fn json<T: DeserializeOwned + Send + 'static>(
        self,
    ) -> impl Stream<Item = Result<T, serde_json::Error>> + Send + 'static {
        self.filter_map(|m| std::future::ready(m.is_text().then(|| m.json::<T>())))
    }
}
