//! What the topic table keeps, and for how long: history expires on time, unused topics go, and the
//! memory history of all topics together stays within its byte budget, oldest evicted first.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::history::MemoryHistory;
use super::topics::{lock, read, write, Topics};

/// How often expired history is dropped and unused topics removed.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_secs(1);

impl Topics {
    /// Drops expired history and removes topics with no subscribers and nothing kept. Returns roughly
    /// how many bytes that freed.
    pub(crate) fn sweep(&self) -> usize {
        let before = self.history_bytes.load(Ordering::Acquire);
        let removed = self.sweep_topics();
        before.saturating_sub(self.history_bytes.load(Ordering::Acquire)) + removed * TOPIC_COST
    }

    /// Returns the number of topics removed.
    fn sweep_topics(&self) -> usize {
        let mut unused: Vec<Arc<str>> = Vec::new();
        for (name, entry) in read(&self.table).iter() {
            let mut entry = lock(entry);
            if let Some(history) = entry.history.as_mut() {
                history.expire();
            }
            if entry.is_unused() {
                unused.push(name.clone());
            }
        }
        if unused.is_empty() {
            return 0;
        }
        let mut table = write(&self.table);
        let mut removed = 0;
        for name in unused {
            // Checked again: a subscriber or a publication may have come meanwhile.
            if table.get(&name).is_some_and(|entry| lock(entry).is_unused()) {
                table.remove(&name);
                removed += 1;
            }
        }
        // A table that once held many topics keeps their slots until told otherwise.
        if table.capacity() > 4 * table.len().max(64) {
            table.shrink_to_fit();
        }
        removed
    }

    /// Evicts the oldest kept publications, across topics, until the memory history is back under
    /// nine tenths of `budget` (so that eviction runs once per tenth of the budget, not per
    /// publication).
    pub(super) fn enforce_history_budget(&self, budget: usize) {
        if self.history_bytes.load(Ordering::Acquire) <= budget || self.evicting.swap(true, Ordering::AcqRel) {
            return;
        }
        let low_water = budget - budget / 10;
        let before = self.history_bytes.load(Ordering::Acquire);
        // One heap entry per topic (its oldest publication), not one per publication.
        let mut oldest: BinaryHeap<Reverse<(u64, Arc<str>)>> = read(&self.table)
            .iter()
            .filter_map(|(name, entry)| {
                let seq = lock(entry).history.as_ref().and_then(MemoryHistory::oldest_seq)?;
                Some(Reverse((seq, name.clone())))
            })
            .collect();
        let mut evicted = 0u64;
        while self.history_bytes.load(Ordering::Acquire) > low_water {
            let Some(Reverse((_, name))) = oldest.pop() else { break };
            let Some(entry) = read(&self.table).get(&name).cloned() else { continue };
            let mut entry = lock(&entry);
            let Some(history) = entry.history.as_mut() else { continue };
            if history.pop_oldest() {
                evicted += 1;
            }
            if let Some(seq) = history.oldest_seq() {
                oldest.push(Reverse((seq, name)));
            }
        }
        self.counters.history_evicted.fetch_add(evicted, Ordering::Relaxed);
        let after = self.history_bytes.load(Ordering::Acquire);
        tracing::warn!(
            evicted,
            freed = before.saturating_sub(after),
            budget,
            "history over its memory budget: evicted the oldest publications"
        );
        self.evicting.store(false, Ordering::Release);
    }
}

/// Once sweeps have freed this much, the memory is handed back to the system.
const TRIM_AFTER: usize = 4 << 20;
/// About what a removed topic frees (its entry, its table slot, an empty history).
const TOPIC_COST: usize = 256;

/// glibc keeps freed memory in its arenas (large frames end up there once its mmap threshold has
/// grown), so a server whose history expired would keep its peak size; `malloc_trim` returns it.
fn give_back_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator; it touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Sweeps the topics of a server every second for as long as the server exists.
pub(crate) async fn sweep_loop(app: Weak<crate::server::AppShared>) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut freed = 0;
    loop {
        every.tick().await;
        let Some(app) = app.upgrade() else { return };
        freed += app.topics.sweep();
        if freed >= TRIM_AFTER {
            freed = 0;
            give_back_freed_memory();
        }
    }
}
