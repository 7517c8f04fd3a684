//! Client errors: creating a socket, connecting, sending, closing.

use std::sync::Arc;

/// A socket could not be created, or a connection attempt failed (fritz2's `ConnectionException`).
#[derive(Clone, Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL is malformed.
    #[error("invalid WebSocket URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Not `ws://` or `wss://`.
    #[error("unsupported scheme {0:?}: use ws:// or wss://")]
    UnsupportedScheme(String),
    /// A header name or value is not valid HTTP.
    #[error("invalid header {0:?}")]
    InvalidHeader(String),
    /// The TLS configuration is unusable (bad PEM, no roots).
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// DNS, TCP or TLS failed.
    #[error("cannot connect to {url}: {source}")]
    Io {
        /// The URL.
        url: String,
        /// The I/O error.
        source: Arc<std::io::Error>,
    },
    /// The server did not answer in time.
    #[error("connecting to {url} timed out after {after:?}")]
    Timeout {
        /// The URL.
        url: String,
        /// The configured timeout.
        after: std::time::Duration,
    },
    /// The server answered the upgrade with another status (e.g. 401, 404).
    #[error("the server refused the WebSocket upgrade with HTTP {status}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// Response headers.
        headers: Vec<(String, String)>,
    },
    /// The server's answer broke the handshake rules (bad accept key, unknown extension, ...).
    #[error("invalid handshake response: {0}")]
    Handshake(String),
}

/// A message could not be sent (the seed's `SendException`).
#[derive(Clone, Debug, thiserror::Error)]
pub enum SendError {
    /// The session is closed for good (by either side, and no reconnect will follow).
    #[error("the session is closed ({code}{}{reason})", if reason.is_empty() { "" } else { ": " })]
    Closed {
        /// The close code.
        code: u16,
        /// The close reason.
        reason: String,
    },
    /// `try_send` found the outgoing queue full.
    #[error("the outgoing queue is full ({limit} bytes)")]
    QueueFull {
        /// The queue limit in bytes.
        limit: usize,
    },
    /// The value could not be encoded as JSON.
    #[error("could not encode JSON: {0}")]
    Json(Arc<serde_json::Error>),
}

/// A connection or protocol problem, as `Session::errors()` streams it.
#[derive(Clone, Debug, thiserror::Error)]
pub enum SessionError {
    /// A connection attempt failed.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The server broke the protocol; the session closed with the matching code.
    #[error("protocol error: {0}")]
    Protocol(#[from] switchboard_wire::ProtocolError),
    /// The link failed while open.
    #[error("connection lost: {0}")]
    Io(Arc<std::io::Error>),
    /// The server sent nothing for longer than the keep-alive timeout.
    #[error("no frame from the server for {0:?}: the connection is dead")]
    KeepaliveTimeout(std::time::Duration),
}
