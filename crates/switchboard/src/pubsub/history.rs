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

/// The history of one topic, in memory.
pub(crate) struct MemoryHistory {
    epoch: String,
    next_offset: u64,
    entries: VecDeque<(u64, Message, Instant)>,
    config: HistoryConfig,
}

impl MemoryHistory {
    pub(crate) fn new(config: HistoryConfig) -> Self {
        let epoch = format!("{:016x}", rand::random::<u64>());
        Self { epoch, next_offset: 1, entries: VecDeque::new(), config }
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

    /// What came after `since`, or `None` if that cannot be told completely.
    pub(crate) fn since(&mut self, since: &Position) -> Option<Vec<Message>> {
        self.expire();
        if since.epoch != self.epoch || since.offset >= self.next_offset {
            return None;
        }
        let oldest_kept = self.entries.front().map_or(self.next_offset, |(offset, _, _)| *offset);
        if since.offset + 1 < oldest_kept {
            return None;
        }
        Some(self.entries.iter().filter(|(offset, _, _)| *offset > since.offset).map(|(_, m, _)| m.clone()).collect())
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
        let after_2 = history.since(&positions[1]).expect("complete");
        assert_eq!(
            after_2.iter().map(|m| m.text().unwrap_or_default().to_owned()).collect::<Vec<_>>(),
            ["m2", "m3", "m4"]
        );
        assert_eq!(history.since(&positions[4]).expect("nothing missed").len(), 0);
        assert!(history.since(&start).is_none(), "offsets 1 and 2 are gone");
        assert!(history.since(&Position { epoch: "other".into(), offset: 4 }).is_none());
        assert!(history.since(&Position { epoch: positions[0].epoch.clone(), offset: 99 }).is_none());
    }

    #[test]
    fn entries_expire() {
        let mut history = MemoryHistory::new(HistoryConfig { size: 10, ttl: Duration::from_millis(20) });
        let first = history.append(&Message::from_text("old"));
        std::thread::sleep(Duration::from_millis(40));
        assert!(history.since(&Position { epoch: first.epoch.clone(), offset: 0 }).is_none());
        assert_eq!(history.since(&first).expect("nothing after").len(), 0);
    }
}
