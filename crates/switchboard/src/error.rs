//! Errors that reach the `error` hook, and errors of sending.

use std::fmt;

pub use switchboard_wire::ProtocolError;

/// A boxed error from user code (a hook that returned `Err`).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Something went wrong on one peer's connection. Passed to the `error` hook; never takes the server
/// down.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The peer broke the protocol; the connection was closed with `err.close_code()`.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// A hook returned an error; the peer was closed with 1011.
    #[error("{hook} hook failed: {source}")]
    Hook {
        /// Which hook.
        hook: &'static str,
        /// What it returned.
        source: BoxError,
    },
    /// A hook panicked; the peer was closed with 1011.
    #[error("{hook} hook panicked: {message}")]
    Panic {
        /// Which hook.
        hook: &'static str,
        /// The panic message.
        message: String,
    },
    /// Reading from or writing to the socket failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent nothing (not even a pong) for too long.
    #[error("no frame from the peer for {0:?}: keep-alive timeout")]
    KeepaliveTimeout(std::time::Duration),
    /// The peer started a message and did not complete it in time (`WsConfig::message_timeout`); it
    /// was closed with 1008.
    #[error("message not completed within {0:?}")]
    MessageTimeout(std::time::Duration),
    /// Incomplete incoming messages on all connections together held more than the server's budget
    /// (`Switchboard::max_incomplete_bytes`); this peer's input took the total past it, and it was
    /// closed with 1013 (or 1009 when its own message was larger than the whole budget).
    #[error("incomplete messages over budget: this peer held {held} bytes, all peers {total}, budget {budget}")]
    IncompleteBudget {
        /// Bytes of incomplete messages this peer held.
        held: usize,
        /// Bytes of incomplete messages held by all peers.
        total: usize,
        /// The server-wide budget.
        budget: usize,
    },
    /// More bytes were queued for the peer than its limit allows.
    #[error("slow consumer: {buffered} bytes queued, limit {limit}")]
    SlowConsumer {
        /// Bytes queued when the limit was hit.
        buffered: usize,
        /// The limit.
        limit: usize,
    },
}

impl Error {
    pub(crate) fn from_panic(hook: &'static str, payload: Box<dyn std::any::Any + Send>) -> Self {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".to_owned());
        Self::Panic { hook, message }
    }
}

/// A message could not be queued for a peer.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The connection is closing or closed.
    #[error("the connection is closed")]
    Closed,
    /// The peer's queue is over its byte limit: a slow consumer. The peer is being closed with 1013.
    #[error("the peer's send queue is full ({buffered} bytes queued, limit {limit}); closing it as a slow consumer")]
    QueueFull {
        /// Bytes queued.
        buffered: usize,
        /// The limit.
        limit: usize,
    },
    /// The value could not be serialised as JSON.
    #[error("could not encode JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// `close` was called with a code an application may not send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("close code {0} may not be sent: use 1000, 1001-1003, 1007-1014 or 3000-4999")]
pub struct InvalidCloseCode(pub u16);

/// How a connection ended, as the `close` hook and client `closes()` streams see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseEvent {
    /// The code: the peer's, 1005 when its close frame had none, 1006 when the connection dropped.
    pub code: u16,
    /// The reason, possibly empty.
    pub reason: String,
    /// Whether both close frames were exchanged.
    pub was_clean: bool,
}

impl fmt::Display for CloseEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}{}", self.code, self.reason, if self.was_clean { "" } else { " (unclean)" })
    }
}
