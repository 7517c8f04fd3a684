//! `Socket`: a cheap, cloneable description of where and how to connect (fritz2's `Socket`).

use std::time::Duration;

use http::{HeaderName, HeaderValue};
use switchboard_wire::deflate::DeflateConfig;

use super::error::ConnectError;
use super::policy::ReconnectPolicy;
use super::session::Session;
use super::tls::ClientTls;
use super::url::WsUrl;

/// Creates a socket for `url` (`ws://` or `wss://`). A malformed URL or another scheme is an error now,
/// not when connecting.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use futures_util::StreamExt;
///
/// let socket = switchboard::websocket("ws://localhost:3333/chat")?.protocols(["chat.v1"]);
/// let session = socket.connect();
/// let mut texts = session.messages().texts();
/// session.send("Hello").await?;
/// while let Some(text) = texts.next().await {
///     println!("Server said: {text}");
/// }
/// # Ok(()) }
/// ```
pub fn websocket(url: &str) -> Result<Socket, ConnectError> {
    Ok(Socket {
        url: WsUrl::parse(url)?,
        protocols: Vec::new(),
        headers: Vec::new(),
        compression: Some(DeflateConfig::default()),
        max_message_size: 64 << 20,
        connect_timeout: Duration::from_secs(10),
        close_timeout: Duration::from_secs(5),
        tls: None,
        reconnect: None,
        keepalive: None,
        max_queued_bytes: 16 << 20,
    })
}

/// Where and how to connect. Every builder method returns a new `Socket`; `connect` may be called
/// any number of times, each giving an independent `Session`.
#[derive(Clone, Debug)]
pub struct Socket {
    pub(crate) url: WsUrl,
    pub(crate) protocols: Vec<String>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) compression: Option<DeflateConfig>,
    pub(crate) max_message_size: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) close_timeout: Duration,
    pub(crate) tls: Option<ClientTls>,
    pub(crate) reconnect: Option<ReconnectPolicy>,
    pub(crate) keepalive: Option<(Duration, Duration)>,
    pub(crate) max_queued_bytes: usize,
}

impl Socket {
    /// The URL.
    pub fn url(&self) -> &WsUrl {
        &self.url
    }

    /// Subprotocols to offer, in order of preference (`Sec-WebSocket-Protocol`).
    pub fn protocols<I, S>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Adds a request header (e.g. `Authorization`). Invalid names or values are an error at once.
    pub fn header(mut self, name: &str, value: &str) -> Result<Self, ConnectError> {
        HeaderName::try_from(name).map_err(|_| ConnectError::InvalidHeader(name.to_owned()))?;
        HeaderValue::try_from(value).map_err(|_| ConnectError::InvalidHeader(format!("{name}: {value}")))?;
        self.headers.push((name.to_owned(), value.to_owned()));
        Ok(self)
    }

    /// Offers permessage-deflate (on by default) or not.
    pub fn compression(mut self, enabled: bool) -> Self {
        self.compression = enabled.then(DeflateConfig::default);
        self
    }

    /// Offers permessage-deflate with these settings.
    pub fn compression_config(mut self, config: DeflateConfig) -> Self {
        self.compression = Some(config);
        self
    }

    /// The largest message accepted from the server (default 64 MiB; 1009 beyond).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// How long DNS, TCP, TLS and the upgrade may take together (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long `close` waits for the server's close frame (default 5 s).
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// TLS settings for wss:// (default: the web PKI roots).
    pub fn tls(mut self, tls: ClientTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Reconnects after the connection ends, as the policy says (off by default, as in fritz2).
    pub fn reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.reconnect = Some(policy);
        self
    }

    /// Pings every `interval`; a server that sends nothing for `timeout` is dead and the connection is
    /// closed with 1006 (and reconnected if the policy says so). Off by default.
    pub fn keepalive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keepalive = Some((interval, timeout.max(interval)));
        self
    }

    /// Bytes that may wait in the outgoing queue, while connecting or behind a slow link (default
    /// 16 MiB). `send` waits for room; `try_send` fails with `SendError::QueueFull`.
    pub fn max_queued_bytes(mut self, bytes: usize) -> Self {
        self.max_queued_bytes = bytes.max(1);
        self
    }

    /// A socket for the same server with `path` appended (fritz2's `append`).
    pub fn append(&self, path: &str) -> Result<Self, ConnectError> {
        Ok(Self { url: self.url.append(path)?, ..self.clone() })
    }

    /// Starts connecting in the background and returns the session at once, in state Connecting.
    /// Must be called inside a tokio runtime.
    pub fn connect(&self) -> Session {
        Session::start(self.clone())
    }
}
