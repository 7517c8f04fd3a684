//! Per-peer rate limits: token buckets for messages, bytes and pings, checked as frames arrive.
//! They are allocated on a peer's first ping or (when a message limit is set) first message, so an
//! idle connection carries none.

use tokio::time::Instant;

use super::config::WsConfig;

/// What happens to a peer that sends faster than its limits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RateLimitPolicy {
    /// Close it with 1008 (policy violation) and a reason naming the limit.
    #[default]
    Close,
    /// Drop the messages over the limit (they never reach the hooks) and count them in the
    /// route's `rate_limited`.
    Drop,
}

/// A token bucket: `capacity` tokens, refilled at `per_second`.
#[derive(Debug)]
struct Bucket {
    capacity: f64,
    per_second: f64,
    tokens: f64,
}

impl Bucket {
    fn new(per_second: f64, capacity: f64) -> Self {
        Self { capacity, per_second, tokens: capacity }
    }

    fn refill(&mut self, elapsed: f64) {
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
    }

    fn take(&mut self, amount: f64) -> bool {
        if self.tokens >= amount {
            self.tokens -= amount;
            true
        } else {
            false
        }
    }
}

/// Which limit a peer went past.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exceeded {
    Messages(u32),
    Bytes(u64),
    Pings(u32),
}

impl Exceeded {
    /// The close reason (well under the 123 bytes a close frame allows).
    pub(crate) fn reason(self) -> String {
        match self {
            Self::Messages(limit) => format!("message rate limit exceeded ({limit}/s)"),
            Self::Bytes(limit) => format!("byte rate limit exceeded ({limit} B/s)"),
            Self::Pings(limit) => format!("ping flood ({limit} pings/s allowed)"),
        }
    }
}

/// One peer's buckets.
#[derive(Debug)]
pub(crate) struct RateLimits {
    last: Instant,
    messages: Option<(u32, Bucket)>,
    bytes: Option<(u64, Bucket)>,
    pings: (u32, Bucket),
}

impl RateLimits {
    pub(crate) fn new(config: &WsConfig) -> Self {
        let messages = config.max_messages_per_second.map(|n| (n, Bucket::new(f64::from(n), f64::from(n))));
        // One message of the largest size must always fit, or the limit would refuse it forever.
        let bytes = config
            .max_bytes_per_second
            .map(|n| (n, Bucket::new(n as f64, (n as f64).max(config.max_message_size as f64))));
        let pings = config.max_pings_per_second;
        Self { last: Instant::now(), messages, bytes, pings: (pings, Bucket::new(f64::from(pings), f64::from(pings))) }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        if let Some((_, bucket)) = &mut self.messages {
            bucket.refill(elapsed);
        }
        if let Some((_, bucket)) = &mut self.bytes {
            bucket.refill(elapsed);
        }
        self.pings.1.refill(elapsed);
    }

    /// A message of `len` bytes arrived.
    pub(crate) fn message(&mut self, len: usize) -> Result<(), Exceeded> {
        self.refill();
        if let Some((limit, bucket)) = &mut self.messages {
            if !bucket.take(1.0) {
                return Err(Exceeded::Messages(*limit));
            }
        }
        if let Some((limit, bucket)) = &mut self.bytes {
            if !bucket.take(len as f64) {
                return Err(Exceeded::Bytes(*limit));
            }
        }
        Ok(())
    }

    /// A ping arrived.
    pub(crate) fn ping(&mut self) -> Result<(), Exceeded> {
        self.refill();
        match self.pings.1.take(1.0) {
            true => Ok(()),
            false => Err(Exceeded::Pings(self.pings.0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn buckets_refill_with_time_and_bytes_always_fit_one_largest_message() {
        let config = WsConfig {
            max_messages_per_second: Some(2),
            max_bytes_per_second: Some(10),
            max_pings_per_second: 1,
            ..WsConfig::default()
        }
        .max_message_size(100);
        let mut limits = RateLimits::new(&config);
        assert_eq!(limits.message(100), Ok(()), "one message of the largest size fits");
        assert_eq!(limits.message(1), Err(Exceeded::Bytes(10)));
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(limits.message(5), Ok(()), "half a second refills 5 bytes and 1 message");
        assert_eq!(limits.message(0), Err(Exceeded::Messages(2)));
        assert_eq!(limits.ping(), Ok(()));
        assert_eq!(limits.ping(), Err(Exceeded::Pings(1)));
        assert_eq!(Exceeded::Pings(1).reason(), "ping flood (1 pings/s allowed)");
    }
}
