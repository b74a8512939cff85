//! One snapshot of a zone's counters, for Lua `stats()` and the status endpoint.

use core::sync::atomic::Ordering::Relaxed;

use super::layout::Zone;
use super::slots::SlotOwner;

/// A zone's counters at one moment (each read atomically, not all at once).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneStats {
    /// Log position one past the newest record.
    pub head: u64,
    /// Log position of the oldest intact record.
    pub tail: u64,
    /// The seq the next record gets.
    pub next_seq: u64,
    /// Records posted since the zone was created.
    pub posted: u64,
    /// Records evicted to make room since the zone was created.
    pub evicted: u64,
    /// Capacity of the log in bytes.
    pub log_size: u64,
    /// The largest record the log accepts, in bytes.
    pub max_record: u64,
    /// Configuration cycles (start, reloads) that adopted the zone.
    pub generation: u64,
    /// Occupied worker slots.
    pub workers: Vec<SlotOwner>,
    /// Entries of the claims table (live `unique` keys it can hold).
    pub claims_capacity: u64,
    /// Posts refused because their key found no room in the claims table.
    pub claims_refused: u64,
}

impl Zone {
    /// Reads the counters.
    pub fn stats(&self) -> ZoneStats {
        let ring = self.ring();
        let h = ring.header();
        ZoneStats {
            head: h.head.load(Relaxed),
            tail: h.tail.load(Relaxed),
            next_seq: h.head_seq.load(Relaxed),
            posted: h.posted.load(Relaxed),
            evicted: h.evicted.load(Relaxed),
            log_size: ring.cap(),
            max_record: ring.max_record(),
            generation: self.generation(),
            workers: self.slots().owners(),
            claims_capacity: self.claims().len() as u64,
            claims_refused: self.header().claims_refused.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::zone::layout::testing::zone;
    use crate::zone::lock::TestLock;

    #[test]
    fn stats_follow_posts_and_slots() {
        let z = zone(64 * 1024);
        let l = TestLock::default();
        z.ring().append(&l, 5, b"s", b"e", None, b"x").unwrap();
        z.slots().acquire(&l, 5, 0, 1, 0, |_| true).unwrap();
        let s = z.stats();
        assert_eq!((s.posted, s.next_seq, s.evicted, s.tail), (1, 2, 0, 0));
        assert_eq!(s.head, 40);
        assert_eq!(s.workers.len(), 1);
        assert_eq!(s.log_size, z.ring().cap());
    }
}
