//! Messages per second over the last minute, sampled once a second from the routes' counters.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard::Hub;

/// Seconds of history.
const WINDOW: usize = 60;

/// Messages in and out per second, the last [`WINDOW`] seconds.
#[derive(Default)]
pub struct Rates {
    samples: Mutex<VecDeque<(u64, u64)>>,
}

impl Rates {
    /// Starts sampling `hub`'s routes every second (until the process ends).
    pub fn start(hub: Hub) -> Arc<Self> {
        let rates = Arc::new(Self::default());
        let weak = Arc::downgrade(&rates);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            while let Some(rates) = weak.upgrade() {
                rates.sample(&hub);
                drop(rates);
                tick.tick().await;
            }
        });
        rates
    }

    fn sample(&self, hub: &Hub) {
        let (mut messages_in, mut messages_out) = (0, 0);
        for endpoint in hub.endpoints() {
            messages_in += endpoint.traffic.messages_in;
            messages_out += endpoint.traffic.messages_out;
        }
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        if samples.len() > WINDOW {
            samples.pop_front();
        }
        samples.push_back((messages_in, messages_out));
    }

    /// Messages received and sent in each of the last seconds, oldest first.
    pub fn per_second(&self) -> (Vec<u64>, Vec<u64>) {
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let pairs = samples.iter().zip(samples.iter().skip(1));
        pairs.map(|(a, b)| (b.0.saturating_sub(a.0), b.1.saturating_sub(a.1))).unzip()
    }
}
