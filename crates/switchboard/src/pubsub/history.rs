//! Per-topic history: the last N publications (for at most T), each with a position `(epoch, offset)`,
//! so a subscriber that reconnects can ask for what it missed.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::framed::Framed;
use crate::Message;

/// How much history each topic keeps.
#[derive(Clone, Copy, Debug)]
pub struct HistoryConfig {
    /// Publications kept per topic.
    pub size: usize,
    /// Publications older than this are forgotten (on time: a sweep runs every second).
    pub ttl: Duration,
    /// Bytes the history of all topics together may hold in this node's memory (default 64 MiB); past
    /// it the oldest publications, whatever their topic, are evicted first (counted in
    /// `PubSubStats::history_evicted` and logged). Each kept publication counts its frame plus
    /// [`HISTORY_ENTRY_COST`]. Not used when the broker keeps the history (Redis bounds it there).
    pub max_bytes: usize,
}

/// What a kept publication costs beyond its frame, in the history's byte budget (its entry, the
/// shared frame's bookkeeping).
pub const HISTORY_ENTRY_COST: usize = 128;

impl Default for HistoryConfig {
    fn default() -> Self {
        Self { size: 100, ttl: Duration::from_secs(300), max_bytes: 64 << 20 }
    }
}

/// Where a publication stands in its topic's history. `epoch` changes when the history is lost (a
/// restart of the node that held it), so offsets from another epoch mean nothing.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Position {
    /// Identifies one unbroken history.
    pub epoch: String,
    /// The publication's number in that history (the first is 1).
    pub offset: u64,
}

impl std::fmt::Display for Position {
    /// `epoch:offset`, the form [`Position::from_str`](std::str::FromStr) reads (handy in a URL).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.epoch, self.offset)
    }
}

/// A position that is not `epoch:offset`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid position {0:?}: expected EPOCH:OFFSET, e.g. 3f2a9c1d00b4e6f7:42")]
pub struct InvalidPosition(pub String);

impl std::str::FromStr for Position {
    type Err = InvalidPosition;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidPosition(text.to_owned());
        let (epoch, offset) = text.rsplit_once(':').ok_or_else(invalid)?;
        let offset = offset.parse().map_err(|_| invalid())?;
        if epoch.is_empty() {
            return Err(invalid());
        }
        Ok(Self { epoch: epoch.to_owned(), offset })
    }
}

/// The outcome of `subscribe_since`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// Whether everything after the given position was replayed. `false`: the gap was too large, too
    /// old, or from another epoch; the client should refetch its state.
    pub recovered: bool,
    /// How many publications were replayed.
    pub replayed: usize,
    /// The topic's latest position (to remember for the next reconnect).
    pub position: Position,
}

/// A topic's history as read from where it is kept: what `subscribe_since` recovers from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistorySlice {
    /// The history's epoch.
    pub epoch: String,
    /// The offset of the latest publication (0 before the first).
    pub latest: u64,
    /// Kept publications, oldest first, with their offsets (contiguous).
    pub entries: Vec<(u64, Message)>,
}

impl HistorySlice {
    /// What a subscriber at `since` missed: the replay, or `recovered: false` (and nothing to replay)
    /// when the epoch differs, `since` is from the future, or publications after it are gone.
    pub(crate) fn recover(self, since: &Position) -> (Recovery, Vec<(u64, Message)>) {
        recover(self.epoch, self.latest, self.entries, since)
    }
}

/// What a subscriber at `since` missed of a history (`entries` oldest first, with contiguous offsets,
/// the latest at `latest`): the replay, or `recovered: false` (and nothing to replay) when the epoch
/// differs, `since` is from the future, or publications after it are gone.
pub(crate) fn recover<T>(
    epoch: String,
    latest: u64,
    entries: impl IntoIterator<Item = (u64, T)>,
    since: &Position,
) -> (Recovery, Vec<(u64, T)>) {
    let lost = |epoch: String| Recovery { recovered: false, replayed: 0, position: Position { epoch, offset: latest } };
    if since.epoch != epoch || since.offset > latest {
        return (lost(epoch), Vec::new());
    }
    let missed: Vec<(u64, T)> = entries.into_iter().filter(|(offset, _)| *offset > since.offset).collect();
    let complete = since.offset == latest || missed.first().is_some_and(|(first, _)| *first == since.offset + 1);
    if !complete {
        return (lost(epoch), Vec::new());
    }
    let position = Position { epoch, offset: latest };
    (Recovery { recovered: true, replayed: missed.len(), position }, missed)
}

/// One kept publication.
struct Entry {
    offset: u64,
    /// Its place in the node-wide order of appends (eviction takes the lowest first).
    seq: u64,
    at: Instant,
    framed: Arc<Framed>,
}

impl Entry {
    fn cost(&self) -> usize {
        self.framed.frame_len() + HISTORY_ENTRY_COST
    }
}

/// The history of one topic, in memory. What it holds counts in the node-wide `bytes`.
pub(crate) struct MemoryHistory {
    epoch: String,
    next_offset: u64,
    entries: VecDeque<Entry>,
    config: HistoryConfig,
    bytes: Arc<AtomicUsize>,
}

/// A fresh epoch: random, so a restarted node never reuses one.
pub(crate) fn new_epoch() -> String {
    format!("{:016x}", rand::random::<u64>())
}

impl MemoryHistory {
    pub(crate) fn new(config: HistoryConfig, bytes: Arc<AtomicUsize>) -> Self {
        Self { epoch: new_epoch(), next_offset: 1, entries: VecDeque::new(), config, bytes }
    }

    /// Appends a publication and returns its position. `seq` orders it among every topic's appends.
    pub(crate) fn append(&mut self, framed: Arc<Framed>, seq: u64) -> Position {
        let offset = self.next_offset;
        self.next_offset += 1;
        let entry = Entry { offset, seq, at: Instant::now(), framed };
        self.bytes.fetch_add(entry.cost(), Ordering::AcqRel);
        self.entries.push_back(entry);
        while self.entries.len() > self.config.size {
            self.pop_oldest();
        }
        self.expire();
        Position { epoch: self.epoch.clone(), offset }
    }

    /// Drops the oldest entry; returns whether there was one.
    pub(crate) fn pop_oldest(&mut self) -> bool {
        match self.entries.pop_front() {
            Some(entry) => {
                self.bytes.fetch_sub(entry.cost(), Ordering::AcqRel);
                true
            }
            None => false,
        }
    }

    /// Drops the entries older than the TTL.
    pub(crate) fn expire(&mut self) {
        let now = Instant::now();
        while self.entries.front().is_some_and(|e| now.duration_since(e.at) > self.config.ttl) {
            self.pop_oldest();
        }
    }

    /// Whether nothing is kept.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The node-wide order of the oldest entry, if any.
    pub(crate) fn oldest_seq(&self) -> Option<u64> {
        self.entries.front().map(|e| e.seq)
    }

    /// The position the next append gets.
    pub(crate) fn next_position(&self) -> Position {
        Position { epoch: self.epoch.clone(), offset: self.next_offset }
    }

    /// The latest position (offset 0 before the first publication).
    pub(crate) fn position(&self) -> Position {
        Position { epoch: self.epoch.clone(), offset: self.next_offset - 1 }
    }

    /// What a subscriber at `since` missed: shared references to the kept frames.
    pub(crate) fn recover(&mut self, since: &Position) -> (Recovery, Vec<(u64, Arc<Framed>)>) {
        self.expire();
        let entries = self.entries.iter().map(|e| (e.offset, e.framed.clone()));
        recover(self.epoch.clone(), self.next_offset - 1, entries, since)
    }
}

impl Drop for MemoryHistory {
    fn drop(&mut self) {
        while self.pop_oldest() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_what_came_after_a_position_and_detects_gaps() {
        let bytes = Arc::new(AtomicUsize::new(0));
        let config = HistoryConfig { size: 3, ttl: Duration::from_secs(60), ..HistoryConfig::default() };
        let mut history = MemoryHistory::new(config, bytes.clone());
        let start = history.position();
        assert_eq!(start.offset, 0);
        let positions: Vec<Position> = (0..5).map(|i| history.append(framed(&format!("m{i}")), i)).collect();
        assert_eq!(positions[4].offset, 5);
        // Kept: m2, m3, m4 (offsets 3, 4, 5), each a 4-byte frame.
        assert_eq!(bytes.load(Ordering::Acquire), 3 * (4 + HISTORY_ENTRY_COST));
        let (recovery, after_2) = history.recover(&positions[1]);
        assert!(recovery.recovered);
        assert_eq!(recovery.position, positions[4]);
        assert_eq!(after_2.iter().map(|(o, _)| *o).collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!(history.oldest_seq(), Some(2));
        let (recovery, none) = history.recover(&positions[4]);
        assert_eq!(recovery, Recovery { recovered: true, replayed: 0, position: positions[4].clone() });
        assert!(none.is_empty());
        assert!(!history.recover(&start).0.recovered, "offsets 1 and 2 are gone");
        assert!(!history.recover(&Position { epoch: "other".into(), offset: 4 }).0.recovered);
        assert!(!history.recover(&Position { epoch: positions[0].epoch.clone(), offset: 99 }).0.recovered);
        drop(history);
        assert_eq!(bytes.load(Ordering::Acquire), 0, "a dropped history gives its bytes back");
    }

    fn framed(text: &str) -> Arc<Framed> {
        Arc::new(Framed::new(&Message::from_text(text.to_owned())))
    }

    #[test]
    fn positions_read_and_print_as_epoch_colon_offset() {
        let position: Position = "00ff:12".parse().expect("valid");
        assert_eq!(position, Position { epoch: "00ff".into(), offset: 12 });
        assert_eq!(position.to_string(), "00ff:12");
        for bad in ["", "00ff", ":3", "00ff:", "00ff:-1", "00ff:x"] {
            assert!(bad.parse::<Position>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn entries_expire() {
        let bytes = Arc::new(AtomicUsize::new(0));
        let config = HistoryConfig { size: 10, ttl: Duration::from_millis(20), ..HistoryConfig::default() };
        let mut history = MemoryHistory::new(config, bytes.clone());
        let first = history.append(framed("old"), 0);
        std::thread::sleep(Duration::from_millis(40));
        assert!(!history.recover(&Position { epoch: first.epoch.clone(), offset: 0 }).0.recovered);
        assert!(history.recover(&first).0.recovered, "nothing came after it");
        assert!(history.is_empty());
        assert_eq!(bytes.load(Ordering::Acquire), 0);
    }
}
