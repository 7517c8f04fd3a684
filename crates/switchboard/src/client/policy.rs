//! The reconnect policy: exponential backoff with full jitter, and what close codes mean for it.

use std::time::Duration;

/// When and how fast a session reconnects after its connection ends. Off unless set with
/// `Socket::reconnect`.
///
/// Delays grow exponentially from `min_delay` to `max_delay`, each drawn uniformly from zero to the
/// current cap ("full jitter", so a fleet of clients does not reconnect in lockstep). The growth resets
/// only after a connection stayed open for `stable_after`.
///
/// Close codes decide: 1000 (normal), 1002, 1003, 1007, 1008, 1009, 1010 and 4000-4099 stop
/// reconnecting (trying again would fail the same way); 4200-4299 reconnect at once; everything else
/// (1001, 1006, 1011-1014, 4100-4199, 3000-3999 ...) reconnects after the backoff delay.
#[derive(Clone, Debug)]
pub struct ReconnectPolicy {
    /// The first delay cap (default 500 ms).
    pub min_delay: Duration,
    /// The largest delay cap (default 20 s).
    pub max_delay: Duration,
    /// A connection that stays open this long resets the backoff (default 5 s).
    pub stable_after: Duration,
    /// Give up after this many attempts in a row (default: never).
    pub max_attempts: Option<u32>,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
            stable_after: Duration::from_secs(5),
            max_attempts: None,
        }
    }
}

/// What the policy says after a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Do not reconnect.
    Stop,
    /// Reconnect after this delay.
    After(Duration),
}

impl ReconnectPolicy {
    /// Sets the backoff range.
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.min_delay = min;
        self.max_delay = max.max(min);
        self
    }

    /// Sets how long a connection must stay up to reset the backoff.
    pub fn stable_after(mut self, after: Duration) -> Self {
        self.stable_after = after;
        self
    }

    /// Sets the attempt limit.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// Decides after close `code` (1006 for a failed or dropped connection) on consecutive attempt
    /// `attempt` (0 for the first retry). `random` is uniform in [0, 1).
    pub fn decide(&self, code: u16, attempt: u32, random: f64) -> Decision {
        if self.max_attempts.is_some_and(|max| attempt >= max) {
            return Decision::Stop;
        }
        match code {
            1000 | 1002 | 1003 | 1007 | 1008 | 1009 | 1010 | 4000..=4099 => Decision::Stop,
            4200..=4299 => Decision::After(Duration::ZERO),
            _ => {
                let cap = self.min_delay.saturating_mul(1u32 << attempt.min(20)).min(self.max_delay);
                Decision::After(cap.mul_f64(random.clamp(0.0, 1.0)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_decide() {
        let policy = ReconnectPolicy::default();
        for code in [1000, 1002, 1008, 4000, 4099] {
            assert_eq!(policy.decide(code, 0, 0.5), Decision::Stop, "{code}");
        }
        assert_eq!(policy.decide(4200, 3, 0.5), Decision::After(Duration::ZERO));
        assert_eq!(policy.decide(4100, 0, 0.5), Decision::After(Duration::from_millis(250)));
        assert_eq!(policy.decide(1001, 0, 0.0), Decision::After(Duration::ZERO));
    }

    #[test]
    fn backoff_grows_to_the_cap_with_full_jitter() {
        let policy = ReconnectPolicy::default();
        let cap = |attempt| match policy.decide(1006, attempt, 1.0) {
            Decision::After(d) => d,
            Decision::Stop => panic!("stopped"),
        };
        assert_eq!(cap(0), Duration::from_millis(500));
        assert_eq!(cap(1), Duration::from_secs(1));
        assert_eq!(cap(3), Duration::from_secs(4));
        assert_eq!(cap(10), Duration::from_secs(20));
        assert_eq!(cap(40), Duration::from_secs(20));
        assert_eq!(policy.decide(1006, 5, 0.0), Decision::After(Duration::ZERO));
        assert_eq!(policy.clone().max_attempts(3).decide(1006, 3, 0.5), Decision::Stop);
    }
}
