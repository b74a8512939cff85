//! One snapshot of a zone's counters, for Lua `stats()` and the status endpoint.

use core::sync::atomic::Ordering::Relaxed;

use super::layout::Zone;
use super::slots::{SlotCounters, SlotOwner};
use super::tasks::TaskStats;

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
    /// Bytes of the records posted (headers and padding included).
    pub bytes_posted: u64,
    /// Push wake-ups posters sent.
    pub wakeups_sent: u64,
    /// Each occupied slot's counters, in `workers` order.
    pub worker_counters: Vec<SlotCounters>,
    /// Lifecycle: newest started generation and when (wall ms), workers
    /// reported crashed, reports of unresponsive workers.
    pub managed_generation: u64,
    pub managed_generation_ms: u64,
    pub crashes: u64,
    pub unresponsive: u64,
    /// Delivery delay histogram (`layout::DELAY_BUCKETS_US`, then +Inf),
    /// sum (µs) and count.
    pub delay_buckets: Vec<u64>,
    pub delay_sum_us: u64,
    pub delay_count: u64,
    /// Interval task counters.
    pub tasks: Vec<TaskStats>,
    /// The cluster bridge's counters.
    pub cluster: super::cluster::ClusterStats,
}

fn now_ms() -> u64 {
    // CLOCK_MONOTONIC, as the lease's expiry (shared by every process)
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
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
            bytes_posted: h.bytes_posted.load(Relaxed),
            wakeups_sent: self.header().wakeups_sent.load(Relaxed),
            worker_counters: Vec::new(),
            managed_generation: self.header().managed_generation.load(Relaxed),
            managed_generation_ms: self.header().managed_generation_ms.load(Relaxed),
            crashes: self.header().crashes.load(Relaxed),
            unresponsive: self.header().unresponsive.load(Relaxed),
            delay_buckets: self
                .header()
                .delay_buckets
                .iter()
                .map(|b| b.load(Relaxed))
                .collect(),
            delay_sum_us: self.header().delay_sum_us.load(Relaxed),
            delay_count: self.header().delay_count.load(Relaxed),
            tasks: self.tasks().all(),
            cluster: self.header().cluster.stats(now_ms()),
        }
        .with_counters(self)
    }
}

impl ZoneStats {
    fn with_counters(mut self, z: &Zone) -> ZoneStats {
        let slots = z.slots();
        self.worker_counters = self
            .workers
            .iter()
            .map(|w| slots.counters(w.slot))
            .collect();
        self
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
        assert_eq!(s.head, 48); // a 40-byte header + "s" "e" "x", padded to 8
        assert_eq!(s.workers.len(), 1);
        assert_eq!(s.log_size, z.ring().cap());
    }
}
