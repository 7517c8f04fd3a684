//! Per-route limits and timers.

use std::time::Duration;

use switchboard_wire::deflate::DeflateConfig;

/// Limits, timers and compression for the peers of one route. The defaults suit most applications.
#[derive(Clone, Debug)]
pub struct WsConfig {
    /// Largest message accepted from a peer, after decompression (default 16 MiB; 1009 beyond).
    pub max_message_size: usize,
    /// Largest frame accepted from a peer (default: the message limit).
    pub max_frame_size: usize,
    /// How often the server pings a peer (default 30 s; `None` turns pings off).
    pub ping_interval: Option<Duration>,
    /// A peer that sends nothing at all, not even a pong, for this long is closed with 1011
    /// (default 75 s: two missed pings and some slack).
    pub keepalive_timeout: Option<Duration>,
    /// A message must be complete this long after its first byte arrived, or the peer is closed with
    /// 1008 (default 60 s; `None`: no deadline). Without it a peer could hold a large partial message
    /// for as long as it trickles a byte now and then.
    pub message_timeout: Option<Duration>,
    /// A peer that sends no message for this long is closed with 1000 "idle timeout" (default: off).
    pub idle_timeout: Option<Duration>,
    /// Bytes that may wait in a peer's send queue (default 8 MiB). One message is always accepted
    /// into an empty queue, whatever its size. Past the limit the peer is a slow consumer and is closed
    /// with 1013.
    pub max_buffered_bytes: usize,
    /// How long to wait for the peer's close frame after sending ours (default 5 s).
    pub close_timeout: Duration,
    /// permessage-deflate: `None` (default) declines it. Compression costs 70-300 KiB of memory per
    /// connection and several microseconds per message; turn it on where bandwidth matters more.
    pub compression: Option<DeflateConfig>,
    /// The web pages that may connect, by `Origin` (default `None`: any). Each entry is a whole
    /// origin (`https://app.example.com`), a host (any scheme and port), `*.example.com` (its
    /// subdomains) or `*`. Pages served by this server itself are always allowed. Others get 403.
    pub allowed_origins: Option<Vec<String>>,
    /// Refuse (403) upgrades without an `Origin` header, i.e. clients that are not browsers
    /// (default false).
    pub require_origin: bool,
    /// The most frames one incoming message may come in (default 131 072; 1009 beyond).
    pub max_fragments: usize,
    /// Messages per second a peer may send, with a burst of as many (default: no limit). Past it,
    /// `rate_limit_policy` applies.
    pub max_messages_per_second: Option<u32>,
    /// Payload bytes per second a peer may send (default: no limit); the burst is a second's worth,
    /// and at least one message of `max_message_size`. Past it, `rate_limit_policy` applies.
    pub max_bytes_per_second: Option<u64>,
    /// Close (1008, the default) or drop and count, past a message or byte rate limit.
    pub rate_limit_policy: super::rate::RateLimitPolicy,
    /// Pings per second a peer may send, with a burst of as many (default 50). Past it the peer is
    /// closed with 1008 "ping flood": every ping costs a pong, whether or not the peer reads them.
    pub max_pings_per_second: u32,
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            max_message_size: 16 << 20,
            max_frame_size: 16 << 20,
            ping_interval: Some(Duration::from_secs(30)),
            keepalive_timeout: Some(Duration::from_secs(75)),
            message_timeout: Some(Duration::from_secs(60)),
            idle_timeout: None,
            max_buffered_bytes: 8 << 20,
            close_timeout: Duration::from_secs(5),
            compression: None,
            allowed_origins: None,
            require_origin: false,
            max_fragments: 1 << 17,
            max_messages_per_second: None,
            max_bytes_per_second: None,
            rate_limit_policy: super::rate::RateLimitPolicy::Close,
            max_pings_per_second: 50,
        }
    }
}

impl WsConfig {
    /// Sets the message and frame size limit.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self.max_frame_size = bytes;
        self
    }

    /// Sets (or with `None` turns off) the ping interval.
    pub fn ping_interval(mut self, interval: Option<Duration>) -> Self {
        self.ping_interval = interval;
        self
    }

    /// Sets (or turns off) the keep-alive timeout.
    pub fn keepalive_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.keepalive_timeout = timeout;
        self
    }

    /// Sets (or turns off) the deadline for completing a message once started.
    pub fn message_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.message_timeout = timeout;
        self
    }

    /// Sets (or turns off) the idle timeout.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sets the send queue limit in bytes.
    pub fn max_buffered_bytes(mut self, bytes: usize) -> Self {
        self.max_buffered_bytes = bytes;
        self
    }

    /// Sets the close handshake timeout.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Limits how fast a peer may send: messages and payload bytes per second (`None`: no limit),
    /// and what happens past the limit.
    pub fn rate_limit(
        mut self,
        messages: Option<u32>,
        bytes: Option<u64>,
        policy: super::rate::RateLimitPolicy,
    ) -> Self {
        self.max_messages_per_second = messages;
        self.max_bytes_per_second = bytes;
        self.rate_limit_policy = policy;
        self
    }

    /// Lets only these origins connect (see [`WsConfig::allowed_origins`]).
    pub fn allowed_origins<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed_origins = Some(origins.into_iter().map(Into::into).collect());
        self
    }

    /// Accepts permessage-deflate offers with these settings (`DeflateConfig::default()`: level 1).
    pub fn compression(mut self, config: Option<DeflateConfig>) -> Self {
        self.compression = config;
        self
    }
}
