//! Traffic counters: per peer (written by its connection task only) and per route (the totals of
//! its peers that left, plus its open ones), read by dashboards and metrics exporters.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use super::peer::{Peer, PeerSet};

/// One peer's message and byte counts. Only the peer's connection task writes them, so a plain
/// load and store (no locked read-modify-write) is enough; readers may see a count one message old.
#[derive(Default)]
pub(crate) struct PeerCounters {
    messages_in: AtomicU64,
    bytes_in: AtomicU64,
    messages_out: AtomicU64,
    bytes_out: AtomicU64,
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.store(counter.load(Ordering::Relaxed) + by, Ordering::Relaxed);
}

impl PeerCounters {
    /// A message of `bytes` came in.
    pub(crate) fn received(&self, bytes: usize) {
        bump(&self.messages_in, 1);
        bump(&self.bytes_in, bytes as u64);
    }

    /// A message of `bytes` was written out.
    pub(crate) fn sent(&self, bytes: usize) {
        bump(&self.messages_out, 1);
        bump(&self.bytes_out, bytes as u64);
    }

    fn read(&self) -> Traffic {
        Traffic {
            messages_in: self.messages_in.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            messages_out: self.messages_out.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
        }
    }
}

/// Messages and payload bytes each way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Traffic {
    /// Messages received from the peer(s).
    pub messages_in: u64,
    /// Payload bytes of those messages.
    pub bytes_in: u64,
    /// Messages sent to the peer(s) (publications included).
    pub messages_out: u64,
    /// Payload bytes of those messages.
    pub bytes_out: u64,
}

impl std::ops::AddAssign for Traffic {
    fn add_assign(&mut self, other: Self) {
        self.messages_in += other.messages_in;
        self.bytes_in += other.bytes_in;
        self.messages_out += other.messages_out;
        self.bytes_out += other.bytes_out;
    }
}

/// What a peer has done so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerStats {
    /// When its upgrade was accepted.
    pub connected_at: SystemTime,
    /// Its messages and bytes each way.
    pub traffic: Traffic,
}

/// One route (a path given to `ws`): its open peers and the totals of those that left.
pub(crate) struct Route {
    pub(crate) path: String,
    pub(crate) peers: PeerSet,
    left: Mutex<Left>,
    rate_limited: AtomicU64,
}

#[derive(Default)]
struct Left {
    connections: u64,
    traffic: Traffic,
    close_codes: BTreeMap<u16, u64>,
}

impl Route {
    pub(crate) fn new(path: &str) -> Self {
        Self {
            path: path.to_owned(),
            peers: PeerSet::default(),
            left: Mutex::default(),
            rate_limited: AtomicU64::new(0),
        }
    }

    /// A peer went past a rate limit (closed, or a message dropped).
    pub(crate) fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    fn left(&self) -> std::sync::MutexGuard<'_, Left> {
        self.left.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `peer` closed with `code`: its counts move into the route's totals.
    pub(crate) fn peer_left(&self, peer: &Peer, code: u16) {
        let traffic = peer.shared.counters.read();
        let mut left = self.left();
        left.connections += 1;
        left.traffic += traffic;
        *left.close_codes.entry(code).or_default() += 1;
    }

    pub(crate) fn stats(&self) -> EndpointStats {
        let peers = self.peers.list();
        // Read the totals after listing the peers: one that leaves in between is then counted in
        // both, never in neither, so the counts never go backwards.
        let left = self.left();
        let mut traffic = left.traffic;
        for peer in &peers {
            traffic += peer.shared.counters.read();
        }
        EndpointStats {
            path: self.path.clone(),
            open: peers.len(),
            connections: left.connections + peers.len() as u64,
            traffic,
            close_codes: left.close_codes.clone(),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
        }
    }
}

/// One route's peers and traffic since the server started.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct EndpointStats {
    /// The route, as given to `ws` (`/chat`, `/sync/{collection}`).
    pub path: String,
    /// Peers open now.
    pub open: usize,
    /// Connections accepted (open and closed).
    pub connections: u64,
    /// Messages and bytes each way, of every connection.
    pub traffic: Traffic,
    /// How closed connections ended: close code (1006 for a lost connection) to count.
    pub close_codes: BTreeMap<u16, u64>,
    /// Times a peer went past a rate limit (closed with 1008, or a message dropped).
    pub rate_limited: u64,
}

impl Peer {
    /// When it connected and its messages and bytes each way.
    pub fn stats(&self) -> PeerStats {
        PeerStats { connected_at: self.shared.connected_at, traffic: self.shared.counters.read() }
    }

    /// The route it connected to, as given to `ws` (`/sync/{collection}`; the request's own path is
    /// in [`Peer::request`]).
    pub fn route(&self) -> &str {
        &self.shared.route.path
    }
}
