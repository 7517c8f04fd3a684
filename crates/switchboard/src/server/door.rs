//! Limits at the door: how many connections the server holds, in total and per client address, how
//! fast one address may open new ones, and how long and large a request head may be. The counts are
//! checked when a TCP connection is accepted, before a byte of it is read; a refused connection gets
//! a short HTTP answer with `Retry-After` and is closed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

/// Server-wide limits, checked before any route sees a request. The defaults suit a server that
/// faces the internet; `Switchboard::server_config` changes them.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Connections held at once, WebSocket and plain HTTP together (default 10 000; `None`: no
    /// limit). Past it a new connection gets 503 with `Retry-After`.
    pub max_connections: Option<usize>,
    /// Connections held at once from one client address (default 256; `None`: no limit). Past it,
    /// 429 with `Retry-After`.
    pub max_connections_per_ip: Option<usize>,
    /// New connections per second from one client address, with a burst of as many (default 50;
    /// `None`: no limit). Past it, 429 with `Retry-After`.
    pub connections_per_second_per_ip: Option<NonZeroU32>,
    /// Time a client has to send its whole request head, from the moment it connected (default 10 s;
    /// after it the connection is closed). Bounds slowloris.
    pub request_head_timeout: Duration,
    /// Time a client has to complete the TLS handshake (default 10 s).
    pub tls_handshake_timeout: Duration,
    /// Largest request head (request line and headers) in bytes (default 16 KiB; 431 beyond).
    pub max_request_head_bytes: usize,
    /// Most headers in one request (default 100; 431 beyond).
    pub max_headers: usize,
    /// What `Retry-After` says to a refused client (default 5 s).
    pub retry_after: Duration,
    /// Whether clients on a loopback address skip the per-address limits (default true). Behind a
    /// reverse proxy on the same host every client comes from loopback, and the proxy is where
    /// per-client limits belong; the total limit still applies.
    pub exempt_loopback: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_connections: Some(10_000),
            max_connections_per_ip: Some(256),
            connections_per_second_per_ip: NonZeroU32::new(50),
            request_head_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
            max_request_head_bytes: 16 << 10,
            max_headers: 100,
            retry_after: Duration::from_secs(5),
            exempt_loopback: true,
        }
    }
}

impl ServerConfig {
    /// No connection limits at all (request heads stay bounded): for benchmarks and trusted networks.
    pub fn unlimited() -> Self {
        Self {
            max_connections: None,
            max_connections_per_ip: None,
            connections_per_second_per_ip: None,
            ..Self::default()
        }
    }
}

/// Why a connection was refused at the door.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The server holds `max_connections`.
    Full,
    /// The address holds `max_connections_per_ip`.
    TooManyFromAddress,
    /// The address opens connections too fast; it may again after this long.
    TooFast(Duration),
}

/// Connections refused at the door since the server started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DoorStats {
    /// Connections held now.
    pub open: usize,
    /// Refused because the server was full (503).
    pub refused_full: u64,
    /// Refused because their address held its share (429).
    pub refused_per_ip: u64,
    /// Refused because their address connected too fast (429).
    pub refused_rate: u64,
}

/// The door of one server.
pub(crate) struct Door {
    pub(crate) config: ServerConfig,
    open: AtomicUsize,
    per_address: Mutex<HashMap<IpAddr, usize>>,
    rate: Option<DefaultKeyedRateLimiter<IpAddr>>,
    refused_full: AtomicU64,
    refused_per_ip: AtomicU64,
    refused_rate: AtomicU64,
}

/// What a request carries of its connection's admission, so that an upgraded connection keeps it.
#[derive(Clone)]
pub(crate) struct Held(#[allow(dead_code)] pub(crate) Arc<Admitted>);

/// A connection let in. Held by its HTTP connection and, after an upgrade, by its peer: the count
/// goes down when the last holder is gone.
pub(crate) struct Admitted {
    door: Arc<Door>,
    /// The address it counts for, if it counts in the per-address limit.
    address: Option<IpAddr>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.door.open.fetch_sub(1, Ordering::AcqRel);
        if let Some(address) = self.address {
            let mut per_address = self.door.per_address();
            if let Some(count) = per_address.get_mut(&address) {
                *count -= 1;
                if *count == 0 {
                    per_address.remove(&address);
                }
            }
        }
    }
}

impl Door {
    pub(crate) fn new(config: ServerConfig) -> Self {
        let rate = config.connections_per_second_per_ip.map(|n| DefaultKeyedRateLimiter::keyed(Quota::per_second(n)));
        Self {
            config,
            open: AtomicUsize::new(0),
            per_address: Mutex::default(),
            rate,
            refused_full: AtomicU64::new(0),
            refused_per_ip: AtomicU64::new(0),
            refused_rate: AtomicU64::new(0),
        }
    }

    fn per_address(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.per_address.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lets a connection from `address` in, or says why not.
    pub(crate) fn admit(self: &Arc<Self>, address: IpAddr) -> Result<Arc<Admitted>, Refusal> {
        // An IPv4 client on a dual-stack socket is one address, however it is written.
        let address = address.to_canonical();
        let per_address = !(self.config.exempt_loopback && address.is_loopback());
        if let Some(rate) = self.rate.as_ref().filter(|_| per_address) {
            if let Err(not_until) = rate.check_key(&address) {
                self.refused_rate.fetch_add(1, Ordering::Relaxed);
                return Err(Refusal::TooFast(not_until.wait_time_from(DefaultClock::default().now())));
            }
        }
        if let Some(max) = self.config.max_connections {
            if self.open.fetch_add(1, Ordering::AcqRel) >= max {
                self.open.fetch_sub(1, Ordering::AcqRel);
                self.refused_full.fetch_add(1, Ordering::Relaxed);
                return Err(Refusal::Full);
            }
        } else {
            self.open.fetch_add(1, Ordering::AcqRel);
        }
        if let Some(max) = self.config.max_connections_per_ip.filter(|_| per_address) {
            let mut per_address = self.per_address();
            let count = per_address.entry(address).or_insert(0);
            if *count >= max {
                drop(per_address);
                self.open.fetch_sub(1, Ordering::AcqRel);
                self.refused_per_ip.fetch_add(1, Ordering::Relaxed);
                return Err(Refusal::TooManyFromAddress);
            }
            *count += 1;
            return Ok(Arc::new(Admitted { door: self.clone(), address: Some(address) }));
        }
        Ok(Arc::new(Admitted { door: self.clone(), address: None }))
    }

    /// Forgets the rate of addresses that have not connected lately (called every second).
    pub(crate) fn sweep(&self) {
        if let Some(rate) = &self.rate {
            rate.retain_recent();
            rate.shrink_to_fit();
        }
    }

    pub(crate) fn stats(&self) -> DoorStats {
        DoorStats {
            open: self.open.load(Ordering::Relaxed),
            refused_full: self.refused_full.load(Ordering::Relaxed),
            refused_per_ip: self.refused_per_ip.load(Ordering::Relaxed),
            refused_rate: self.refused_rate.load(Ordering::Relaxed),
        }
    }

    /// The whole HTTP answer to a refused connection.
    pub(crate) fn answer(&self, refusal: Refusal) -> String {
        let (status, why, after) = match refusal {
            Refusal::Full => {
                ("503 Service Unavailable", "the server is at its connection limit", self.config.retry_after)
            }
            Refusal::TooManyFromAddress => {
                ("429 Too Many Requests", "too many connections from your address", self.config.retry_after)
            }
            Refusal::TooFast(wait) => ("429 Too Many Requests", "too many new connections from your address", wait),
        };
        let seconds = after.as_secs_f64().ceil().max(1.0) as u64;
        format!(
            "HTTP/1.1 {status}\r\nRetry-After: {seconds}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{why}\n",
            why.len() + 1
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn caps_count_open_connections_and_free_them_when_they_go() {
        let config = ServerConfig {
            exempt_loopback: false,
            max_connections: Some(3),
            max_connections_per_ip: Some(2),
            connections_per_second_per_ip: None,
            ..ServerConfig::default()
        };
        let door = Arc::new(Door::new(config));
        let a1 = door.admit(ip("10.0.0.1")).expect("first");
        let _a2 = door.admit(ip("::ffff:10.0.0.1")).expect("second, the same address written as IPv6");
        assert_eq!(door.admit(ip("10.0.0.1")).err(), Some(Refusal::TooManyFromAddress));
        let _b = door.admit(ip("10.0.0.2")).expect("another address");
        assert_eq!(door.admit(ip("10.0.0.3")).err(), Some(Refusal::Full));
        drop(a1);
        assert!(door.admit(ip("10.0.0.1")).is_ok(), "a slot freed");
        let stats = door.stats();
        assert_eq!((stats.refused_per_ip, stats.refused_full), (1, 1));
        assert!(door.answer(Refusal::Full).starts_with("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\n"));
    }

    #[test]
    fn a_fast_address_is_told_when_to_come_back() {
        let config = ServerConfig {
            connections_per_second_per_ip: NonZeroU32::new(2),
            exempt_loopback: false,
            ..ServerConfig::unlimited()
        };
        let door = Arc::new(Door::new(config));
        let _first = door.admit(ip("10.0.0.1")).expect("1");
        let _second = door.admit(ip("10.0.0.1")).expect("2");
        let Err(Refusal::TooFast(wait)) = door.admit(ip("10.0.0.1")) else { panic!("the third is refused") };
        assert!(wait <= Duration::from_millis(500), "{wait:?}");
        assert!(door.admit(ip("10.0.0.2")).is_ok(), "other addresses are not affected");
        let exempt = Arc::new(Door::new(ServerConfig {
            connections_per_second_per_ip: NonZeroU32::new(1),
            ..ServerConfig::default()
        }));
        assert!((0..10).all(|_| exempt.admit(ip("127.0.0.1")).is_ok()), "loopback is exempt by default");
        assert!(door.answer(Refusal::TooFast(wait)).contains("Retry-After: 1\r\n"));
    }
}
