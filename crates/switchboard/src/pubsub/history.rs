//! Per-topic history: the last N publications (for at most T), each with a position `(epoch, offset)`,
//! so a subscriber that reconnects can ask for what it missed.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::Message;

/// How much history each topic keeps.
#[derive(Clone, Copy, Debug)]
pub struct HistoryConfig {
    /// Publications kept per topic.
    pub size: usize,
    /// Publications older than this are forgotten.
    pub ttl: Duration,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self { size: 100, ttl: Duration::from_secs(300) }
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
        let position = Position { epoch: self.epoch.clone(), offset: self.latest };
        let lost = Recovery { recovered: false, replayed: 0, position: position.clone() };
        if since.epoch != self.epoch || since.offset > self.latest {
            return (lost, Vec::new());
        }
        let missed: Vec<(u64, Message)> =
            self.entries.into_iter().filter(|(offset, _)| *offset > since.offset).collect();
        let complete =
            since.offset == self.latest || missed.first().is_some_and(|(first, _)| *first == since.offset + 1);
        if !complete {
            return (lost, Vec::new());
        }
        (Recovery { recovered: true, replayed: missed.len(), position }, missed)
    }
}

/// The history of one topic, in memory.
pub(crate) struct MemoryHistory {
    epoch: String,
    next_offset: u64,
    entries: VecDeque<(u64, Message, Instant)>,
    config: HistoryConfig,
}

/// A fresh epoch: random, so a restarted node never reuses one.
pub(crate) fn new_epoch() -> String {
    format!("{:016x}", rand::random::<u64>())
}

impl MemoryHistory {
    pub(crate) fn new(config: HistoryConfig) -> Self {
        Self { epoch: new_epoch(), next_offset: 1, entries: VecDeque::new(), config }
    }

    /// Appends a publication and returns its position.
    pub(crate) fn append(&mut self, message: &Message) -> Position {
        let offset = self.next_offset;
        self.next_offset += 1;
        self.entries.push_back((offset, message.clone(), Instant::now()));
        while self.entries.len() > self.config.size {
            self.entries.pop_front();
        }
        self.expire();
        Position { epoch: self.epoch.clone(), offset }
    }

    fn expire(&mut self) {
        let now = Instant::now();
        while self.entries.front().is_some_and(|(_, _, at)| now.duration_since(*at) > self.config.ttl) {
            self.entries.pop_front();
        }
    }

    /// The latest position (offset 0 before the first publication).
    pub(crate) fn position(&self) -> Position {
        Position { epoch: self.epoch.clone(), offset: self.next_offset - 1 }
    }

    /// Everything still kept.
    pub(crate) fn slice(&mut self) -> HistorySlice {
        self.expire();
        HistorySlice {
            epoch: self.epoch.clone(),
            latest: self.next_offset - 1,
            entries: self.entries.iter().map(|(offset, message, _)| (*offset, message.clone())).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_what_came_after_a_position_and_detects_gaps() {
        let mut history = MemoryHistory::new(HistoryConfig { size: 3, ttl: Duration::from_secs(60) });
        let start = history.position();
        assert_eq!(start.offset, 0);
        let positions: Vec<Position> = (0..5).map(|i| history.append(&Message::from_text(format!("m{i}")))).collect();
        assert_eq!(positions[4].offset, 5);
        // Kept: m2, m3, m4 (offsets 3, 4, 5).
        let (recovery, after_2) = history.slice().recover(&positions[1]);
        assert!(recovery.recovered);
        assert_eq!(recovery.position, positions[4]);
        assert_eq!(
            after_2.iter().map(|(o, m)| (*o, m.text().unwrap_or_default().to_owned())).collect::<Vec<_>>(),
            [(3, "m2".to_owned()), (4, "m3".to_owned()), (5, "m4".to_owned())]
        );
        assert_eq!(
            history.slice().recover(&positions[4]),
            (Recovery { recovered: true, replayed: 0, position: positions[4].clone() }, vec![])
        );
        assert!(!history.slice().recover(&start).0.recovered, "offsets 1 and 2 are gone");
        assert!(!history.slice().recover(&Position { epoch: "other".into(), offset: 4 }).0.recovered);
        assert!(!history.slice().recover(&Position { epoch: positions[0].epoch.clone(), offset: 99 }).0.recovered);
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
        let mut history = MemoryHistory::new(HistoryConfig { size: 10, ttl: Duration::from_millis(20) });
        let first = history.append(&Message::from_text("old"));
        std::thread::sleep(Duration::from_millis(40));
        assert!(!history.slice().recover(&Position { epoch: first.epoch.clone(), offset: 0 }).0.recovered);
        assert!(history.slice().recover(&first).0.recovered, "nothing came after it");
    }
}
