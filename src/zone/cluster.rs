//! The cluster bridge's state inside a zone: the lease that says which
//! worker of this node talks to Redis, where the bridge is in the stream
//! and in the local log, the other nodes' ordinals, and the counters.
//!
//! Everything here survives reloads and bridge hand-overs because it lives
//! in the zone, not in a worker. Writes that must agree with each other
//! (lease, stream id, node table) happen under the zone lock; counters are
//! relaxed atomics.
//!
//! Exactly-once across nodes rests on two numbers:
//! - every cluster record gets a per-node **ordinal** (1, 2, ...) when it is
//!   posted, under the lock, so ordinals follow log order;
//! - a receiving node keeps, per sending node and zone **epoch** (a random
//!   number chosen when the sender's zone was created), the last ordinal it
//!   delivered. A smaller or equal ordinal is a duplicate (a bridge that died
//!   after XADD and before it recorded it, so the next bridge sent it
//!   again); a jump is an exact count of lost events (trimmed from the
//!   stream, or overwritten in the sender's log before its bridge sent them).

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::lock::{Guard, ZoneLock};
use super::ring::Cursor;

/// Nodes whose ordinals a zone remembers (least recently heard replaced).
pub const NODES: usize = 64;

/// How long a lease lasts without renewal (ms).
pub const LEASE_MS: u64 = 1_000;

/// `connected` bits: the sending and the reading connection work.
pub const OUT_UP: u64 = 1;
pub const IN_UP: u64 = 2;

/// The stream id the bridge reads after once a stream was found reset: all
/// of the new stream (ids from `XADD *` are never `0-1`; `0-0` means none).
pub const RESET_ID: (u64, u64) = (0, 1);

/// One other node as this zone last heard it.
#[repr(C)]
#[derive(Default)]
pub struct NodeEntry {
    /// FNV-1a of the node's name (0: free).
    pub name_hash: AtomicU64,
    pub epoch: AtomicU64,
    pub ordinal: AtomicU64,
    /// When this zone last heard from it (monotonic ms).
    pub heard_ms: AtomicU64,
}

/// Counters the status endpoint shows (all since the zone was created).
#[repr(C)]
#[derive(Default)]
pub struct ClusterCounters {
    /// Events appended to the stream, and read from it for this node.
    pub events_out: AtomicU64,
    pub events_in: AtomicU64,
    /// Stream entries of this node skipped by its own reader.
    pub own_skipped: AtomicU64,
    /// Entries seen again after a hand-over (dropped).
    pub duplicates: AtomicU64,
    /// Other nodes' events this node never got (ordinal gaps).
    pub lost_in: AtomicU64,
    /// This node's cluster events overwritten in the log before the bridge
    /// sent them.
    pub lost_out: AtomicU64,
    /// Posts refused because too many cluster events waited for Redis.
    pub refused: AtomicU64,
    /// Connections made after a failure, and failed attempts.
    pub reconnects: AtomicU64,
    pub errors: AtomicU64,
    /// Cluster `unique` events: claimed here, claimed by another node, and
    /// not decided because Redis failed (not run).
    pub unique_won: AtomicU64,
    pub unique_lost: AtomicU64,
    pub unique_failed: AtomicU64,
    /// Bridge hand-overs (leases taken).
    pub leases: AtomicU64,
    /// Bridge light threads restarted after they died (a Lua error).
    pub restarts: AtomicU64,
    /// Streams found reset (their last id went back: FLUSHALL, a new Redis).
    pub stream_resets: AtomicU64,
    /// Implausible ordinal jumps taken as a new epoch (not as loss).
    pub ordinal_jumps: AtomicU64,
    /// Entries dropped, by [`DropReason`] (`duplicates` counts its own).
    pub dropped: [AtomicU64; DROPS],
}

/// Why the bridge dropped a stream entry (see `ClusterCounters::dropped`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Not a stream entry (no id, or not an id and fields).
    NotAnEntry = 0,
    /// A field of a cluster event missing (`n`, `e`, `o`, `s`, `v`, `d`).
    MissingField,
    /// A field no cluster event has.
    UnknownField,
    /// `e` or `o` is not a number.
    BadField,
    /// `d` does not decode.
    BadData,
    /// Without the right HMAC (`secret=`).
    BadHmac,
    /// Larger than this node's zone takes.
    TooLarge,
}

/// Number of [`DropReason`]s.
pub const DROPS: usize = 7;

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; DROPS] = [
        DropReason::NotAnEntry,
        DropReason::MissingField,
        DropReason::UnknownField,
        DropReason::BadField,
        DropReason::BadData,
        DropReason::BadHmac,
        DropReason::TooLarge,
    ];

    /// The reason's name in status and logs.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::NotAnEntry => "not_an_entry",
            DropReason::MissingField => "missing_field",
            DropReason::UnknownField => "unknown_field",
            DropReason::BadField => "bad_field",
            DropReason::BadData => "bad_data",
            DropReason::BadHmac => "bad_hmac",
            DropReason::TooLarge => "too_large",
        }
    }
}

/// The bridge's state in the zone header.
#[repr(C)]
pub struct ClusterBlock {
    /// Random, set once when the zone is created: tells the other nodes
    /// that ordinals start again.
    pub epoch: AtomicU64,
    /// The next cluster record's ordinal is this + 1.
    pub ordinal: AtomicU64,
    /// The highest ordinal the bridge appended to the stream.
    pub acked: AtomicU64,
    /// The lease: holder pid (0: none), token (bumped per take), expiry.
    pub lease_pid: AtomicU64,
    pub lease_token: AtomicU64,
    pub lease_until_ms: AtomicU64,
    /// The last stream id this node handled (`ms-seq`), valid when
    /// `in_joined` is 1: the first bridge joined the stream there (an empty
    /// stream's start is `0-0`, so the id alone cannot tell).
    pub in_ms: AtomicU64,
    pub in_seq: AtomicU64,
    pub in_joined: AtomicU64,
    /// Where the bridge is in the local log (saved after each XADD batch):
    /// the next record's position and seq, valid when `out_saved` is 1.
    pub out_pos: AtomicU64,
    pub out_next_seq: AtomicU64,
    pub out_saved: AtomicU64,
    /// The bridge's working directions ([`OUT_UP`] | [`IN_UP`]); since when
    /// both work (wall ms).
    pub connected: AtomicU64,
    pub connected_ms: AtomicU64,
    /// How far the stream's newest entry is ahead of the last one handled (ms).
    pub lag_ms: AtomicU64,
    pub counters: ClusterCounters,
    pub nodes: [NodeEntry; NODES],
}

impl Default for ClusterBlock {
    fn default() -> Self {
        ClusterBlock {
            epoch: AtomicU64::new(0),
            ordinal: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            lease_pid: AtomicU64::new(0),
            lease_token: AtomicU64::new(0),
            lease_until_ms: AtomicU64::new(0),
            in_ms: AtomicU64::new(0),
            in_seq: AtomicU64::new(0),
            in_joined: AtomicU64::new(0),
            out_pos: AtomicU64::new(0),
            out_next_seq: AtomicU64::new(0),
            out_saved: AtomicU64::new(0),
            connected: AtomicU64::new(0),
            connected_ms: AtomicU64::new(0),
            lag_ms: AtomicU64::new(0),
            counters: ClusterCounters::default(),
            nodes: core::array::from_fn(|_| NodeEntry::default()),
        }
    }
}

/// Parses a stream id `ms-seq`.
pub fn parse_id(s: &[u8]) -> Option<(u64, u64)> {
    let s = core::str::from_utf8(s).ok()?;
    let (ms, seq) = s.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// FNV-1a, 64 bit, never 0.
pub fn name_hash(name: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h.max(1)
}

/// What a received entry is, for this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// New: deliver it (`lost` events of that node were missed before it).
    New { lost: u64 },
    /// Already delivered (or older than what we have).
    Duplicate,
    /// An ordinal too far from the last one to be real (more than the
    /// stream holds): delivered, and taken as the start of a new epoch.
    Jump,
}

impl ClusterBlock {
    /// Sets the epoch of a fresh zone.
    pub fn init(&self, epoch: u64) {
        self.epoch.store(epoch.max(1), Relaxed);
    }

    /// Takes the lease for `pid` if nobody holds a live one: the holder is
    /// none, expired at `now_ms`, or not `alive`. Returns the new token.
    pub fn take(
        &self,
        lock: &(impl ZoneLock + ?Sized),
        pid: u64,
        now_ms: u64,
        alive: impl Fn(u64) -> bool,
    ) -> Option<u64> {
        let _g = Guard::new(lock);
        let holder = self.lease_pid.load(Relaxed);
        let until = self.lease_until_ms.load(Relaxed);
        if holder != 0 && holder != pid && until > now_ms && alive(holder) {
            return None;
        }
        let token = self.lease_token.load(Relaxed) + 1;
        self.lease_token.store(token, Relaxed);
        self.lease_pid.store(pid, Relaxed);
        self.lease_until_ms.store(now_ms + LEASE_MS, Relaxed);
        self.counters.leases.fetch_add(1, Relaxed);
        Some(token)
    }

    /// True while `token` is the live lease.
    pub fn holds(&self, token: u64, now_ms: u64) -> bool {
        self.lease_token.load(Relaxed) == token && self.lease_until_ms.load(Relaxed) > now_ms
    }

    /// Extends the lease of `token`; false when it was lost.
    pub fn renew(&self, lock: &(impl ZoneLock + ?Sized), token: u64, now_ms: u64) -> bool {
        let _g = Guard::new(lock);
        if !self.holds(token, now_ms) {
            return false;
        }
        self.lease_until_ms.store(now_ms + LEASE_MS, Relaxed);
        true
    }

    /// Gives the lease of `token` up (a worker exiting).
    pub fn release(&self, lock: &(impl ZoneLock + ?Sized), token: u64) {
        let _g = Guard::new(lock);
        if self.lease_token.load(Relaxed) == token {
            self.lease_pid.store(0, Relaxed);
            self.lease_until_ms.store(0, Relaxed);
            self.connected.store(0, Relaxed);
        }
    }

    /// Records whether the bridge's directions `bits` ([`OUT_UP`],
    /// [`IN_UP`]) work, and its lag, for the holder of `token` only: a bridge
    /// that lost the lease (an old generation's, unwinding after a reload)
    /// must not mark down the connections of the one that took over. False
    /// when `token` is not the live lease. `wall_ms`: when both came up.
    #[allow(clippy::too_many_arguments)]
    pub fn set_state(
        &self,
        lock: &(impl ZoneLock + ?Sized),
        token: u64,
        bits: u64,
        up: bool,
        lag_ms: Option<u64>,
        now_ms: u64,
        wall_ms: u64,
    ) -> bool {
        let _g = Guard::new(lock);
        if !self.holds(token, now_ms) {
            return false;
        }
        let both = OUT_UP | IN_UP;
        let bits = bits & both;
        let was = if up {
            self.connected.fetch_or(bits, Relaxed)
        } else {
            self.connected.fetch_and(!bits, Relaxed)
        };
        if up && was != both && was | bits == both {
            self.connected_ms.store(wall_ms, Relaxed);
        }
        if let Some(l) = lag_ms {
            self.lag_ms.store(l, Relaxed);
        }
        true
    }

    /// The last stream id handled, or where the first bridge joined the
    /// stream; `None` until a bridge did.
    pub fn last_id(&self) -> Option<(u64, u64)> {
        let (ms, seq) = (self.in_ms.load(Relaxed), self.in_seq.load(Relaxed));
        (self.in_joined.load(Relaxed) == 1).then_some((ms, seq))
    }

    /// Moves the last handled stream id forward (never back); the first
    /// call records where this zone joined the stream, even `0-0`. Caller
    /// holds the lock.
    pub fn advance_locked(&self, id: (u64, u64)) -> bool {
        self.in_joined.store(1, Relaxed);
        let cur = (self.in_ms.load(Relaxed), self.in_seq.load(Relaxed));
        if id <= cur {
            return false;
        }
        self.in_ms.store(id.0, Relaxed);
        self.in_seq.store(id.1, Relaxed);
        true
    }

    /// Starts reading the stream again from its beginning (it was reset).
    /// Caller holds the lock.
    pub fn reset_in_locked(&self) {
        self.in_ms.store(RESET_ID.0, Relaxed);
        self.in_seq.store(RESET_ID.1, Relaxed);
        self.counters.stream_resets.fetch_add(1, Relaxed);
    }

    /// Records an entry from node `hash` (its `epoch` and `ordinal`) heard at
    /// `now_ms`. `max_gap`: the largest ordinal step (either way) taken as
    /// real; `None` trusts every ordinal (signed entries). Caller holds the lock.
    pub fn arrive_locked(
        &self,
        hash: u64,
        epoch: u64,
        ordinal: u64,
        now_ms: u64,
        max_gap: Option<u64>,
    ) -> Arrival {
        let entry = self
            .nodes
            .iter()
            .find(|n| n.name_hash.load(Relaxed) == hash)
            .or_else(|| self.nodes.iter().find(|n| n.name_hash.load(Relaxed) == 0))
            .unwrap_or_else(|| {
                self.nodes
                    .iter()
                    .min_by_key(|n| n.heard_ms.load(Relaxed))
                    .expect("NODES > 0")
            });
        let known = entry.name_hash.load(Relaxed) == hash;
        let (e, last) = (entry.epoch.load(Relaxed), entry.ordinal.load(Relaxed));
        let far = |a: u64, b: u64| max_gap.is_some_and(|m| a.saturating_sub(b) > m);
        let arrival = if !known || e != epoch {
            // A node first heard of, or a new zone there: its count starts
            // here (what it posted before we knew it is not ours to count).
            Arrival::New { lost: 0 }
        } else if far(ordinal, last) || far(last, ordinal) {
            // Not a real step (a forged or corrupt ordinal, or the one
            // after it): a new count starts here, none is lost or silenced.
            Arrival::Jump
        } else if ordinal <= last {
            Arrival::Duplicate
        } else {
            Arrival::New {
                lost: ordinal - last - 1,
            }
        };
        if arrival != Arrival::Duplicate {
            entry.name_hash.store(hash, Relaxed);
            entry.epoch.store(epoch, Relaxed);
            entry.ordinal.store(ordinal, Relaxed);
        }
        entry.heard_ms.store(now_ms, Relaxed);
        arrival
    }

    /// Saves the bridge's log position after a batch reached Redis, with the
    /// highest ordinal in it (0: none). Only the lease holder's save counts.
    pub fn save_out(
        &self,
        lock: &(impl ZoneLock + ?Sized),
        token: u64,
        cur: Cursor,
        acked: u64,
        now_ms: u64,
    ) -> bool {
        let _g = Guard::new(lock);
        if !self.holds(token, now_ms) {
            return false;
        }
        self.out_pos.store(cur.pos, Relaxed);
        self.out_next_seq.store(cur.next_seq, Relaxed);
        self.out_saved.store(1, Relaxed);
        if acked > self.acked.load(Relaxed) {
            self.acked.store(acked, Relaxed);
        }
        true
    }

    /// The saved log position, if a bridge ever saved one.
    pub fn saved_out(&self) -> Option<Cursor> {
        (self.out_saved.load(Relaxed) == 1)
            .then(|| Cursor::new(self.out_pos.load(Relaxed), self.out_next_seq.load(Relaxed)))
    }

    /// Cluster events posted and not yet in the stream.
    pub fn waiting(&self) -> u64 {
        self.ordinal
            .load(Relaxed)
            .saturating_sub(self.acked.load(Relaxed))
    }
}

/// A copy of the block's counters, for the status endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterStats {
    pub lease_pid: u64,
    pub leases: u64,
    pub connected: bool,
    pub connected_ms: u64,
    pub lag_ms: u64,
    pub waiting: u64,
    pub posted: u64,
    pub events_out: u64,
    pub events_in: u64,
    pub own_skipped: u64,
    pub duplicates: u64,
    pub lost_in: u64,
    pub lost_out: u64,
    pub refused: u64,
    pub reconnects: u64,
    pub errors: u64,
    pub unique_won: u64,
    pub unique_lost: u64,
    pub unique_failed: u64,
    pub last_id: Option<(u64, u64)>,
    pub nodes_heard: u64,
    pub restarts: u64,
    pub stream_resets: u64,
    pub ordinal_jumps: u64,
    pub dropped: [u64; DROPS],
}

impl ClusterBlock {
    /// Reads the counters.
    pub fn stats(&self, now_ms: u64) -> ClusterStats {
        let c = &self.counters;
        let live = self.lease_until_ms.load(Relaxed) > now_ms;
        ClusterStats {
            lease_pid: if live {
                self.lease_pid.load(Relaxed)
            } else {
                0
            },
            leases: c.leases.load(Relaxed),
            connected: live && self.connected.load(Relaxed) == OUT_UP | IN_UP,
            connected_ms: self.connected_ms.load(Relaxed),
            lag_ms: self.lag_ms.load(Relaxed),
            waiting: self.waiting(),
            posted: self.ordinal.load(Relaxed),
            events_out: c.events_out.load(Relaxed),
            events_in: c.events_in.load(Relaxed),
            own_skipped: c.own_skipped.load(Relaxed),
            duplicates: c.duplicates.load(Relaxed),
            lost_in: c.lost_in.load(Relaxed),
            lost_out: c.lost_out.load(Relaxed),
            refused: c.refused.load(Relaxed),
            reconnects: c.reconnects.load(Relaxed),
            errors: c.errors.load(Relaxed),
            unique_won: c.unique_won.load(Relaxed),
            unique_lost: c.unique_lost.load(Relaxed),
            unique_failed: c.unique_failed.load(Relaxed),
            last_id: self.last_id(),
            nodes_heard: self
                .nodes
                .iter()
                .filter(|n| n.name_hash.load(Relaxed) != 0)
                .count() as u64,
            restarts: c.restarts.load(Relaxed),
            stream_resets: c.stream_resets.load(Relaxed),
            ordinal_jumps: c.ordinal_jumps.load(Relaxed),
            dropped: core::array::from_fn(|i| c.dropped[i].load(Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zone::lock::TestLock;

    fn block() -> Box<ClusterBlock> {
        let b = Box::<ClusterBlock>::default();
        b.init(7);
        b
    }

    #[test]
    fn one_holder_at_a_time_and_takeover_on_expiry_or_death() {
        let (b, l) = (block(), TestLock::default());
        let t1 = b.take(&l, 100, 1_000, |_| true).unwrap();
        assert!(b.take(&l, 200, 1_500, |_| true).is_none());
        assert!(b.renew(&l, t1, 1_900));
        assert!(b.take(&l, 200, 2_800, |_| true).is_none());
        // expired
        let t2 = b.take(&l, 200, 2_901, |_| true).unwrap();
        assert!(!b.renew(&l, t1, 2_950), "the old holder lost it");
        assert!(!b.holds(t1, 2_950) && b.holds(t2, 2_950));
        // dead holder: taken at once
        let t3 = b.take(&l, 300, 3_000, |pid| pid != 200).unwrap();
        b.release(&l, t2); // stale release does nothing
        assert!(b.holds(t3, 3_100));
        b.release(&l, t3);
        assert!(!b.holds(t3, 3_100));
        assert!(b.take(&l, 400, 3_100, |_| true).is_some());
        assert_eq!(b.counters.leases.load(Relaxed), 4);
    }

    #[test]
    fn only_the_lease_holder_sets_the_connection_state() {
        let (b, l) = (block(), TestLock::default());
        let old = b.take(&l, 100, 1_000, |_| true).unwrap();
        assert!(b.set_state(&l, old, OUT_UP | IN_UP, true, None, 1_000, 5));
        // the old holder exits; a new worker takes over and connects
        b.release(&l, old);
        let new = b.take(&l, 200, 1_100, |_| true).unwrap();
        assert!(b.set_state(&l, new, OUT_UP, true, None, 1_100, 6));
        assert!(b.set_state(&l, new, IN_UP, true, Some(3), 1_100, 7));
        // the old bridge's loops unwind after that: they change nothing
        assert!(!b.set_state(&l, old, OUT_UP | IN_UP, false, Some(9), 1_200, 8));
        let s = b.stats(1_200);
        assert!(s.connected && s.connected_ms == 7 && s.lag_ms == 3);
        assert!(b.set_state(&l, new, IN_UP, false, None, 1_200, 9));
        assert!(!b.stats(1_200).connected);
    }

    #[test]
    fn ordinals_give_duplicates_and_exact_gaps() {
        let b = block();
        let a = name_hash(b"node-a");
        assert_eq!(b.arrive_locked(a, 9, 5, 1, None), Arrival::New { lost: 0 });
        assert_eq!(b.arrive_locked(a, 9, 6, 2, None), Arrival::New { lost: 0 });
        assert_eq!(b.arrive_locked(a, 9, 6, 3, None), Arrival::Duplicate);
        assert_eq!(b.arrive_locked(a, 9, 4, 3, None), Arrival::Duplicate);
        assert_eq!(
            b.arrive_locked(a, 9, 17, 4, None),
            Arrival::New { lost: 10 }
        );
        // the node's zone was re-created: its ordinals start again
        assert_eq!(b.arrive_locked(a, 10, 1, 5, None), Arrival::New { lost: 0 });
        let c = name_hash(b"node-c");
        assert_eq!(b.arrive_locked(c, 1, 1, 6, None), Arrival::New { lost: 0 });
        assert_eq!(b.arrive_locked(a, 10, 2, 7, None), Arrival::New { lost: 0 });
    }

    #[test]
    fn implausible_jumps_start_a_new_count_and_silence_nobody() {
        let b = block();
        let a = name_hash(b"node-a");
        let m = Some(100);
        assert_eq!(b.arrive_locked(a, 9, 2, 1, m), Arrival::New { lost: 0 });
        // a forged ordinal between real 2 and 3
        assert_eq!(b.arrive_locked(a, 9, 999_999_999_999, 2, m), Arrival::Jump);
        // the real ones are not duplicates
        assert_eq!(b.arrive_locked(a, 9, 3, 3, m), Arrival::Jump);
        assert_eq!(b.arrive_locked(a, 9, 4, 4, m), Arrival::New { lost: 0 });
        assert_eq!(b.arrive_locked(a, 9, 4, 5, m), Arrival::Duplicate);
        // a plausible gap is still loss
        assert_eq!(b.arrive_locked(a, 9, 104, 6, m), Arrival::New { lost: 99 });
        // trusted (signed): any step is real
        assert_eq!(
            b.arrive_locked(a, 9, 1_000_000, 7, None),
            Arrival::New { lost: 999_895 }
        );
    }

    #[test]
    fn a_full_node_table_forgets_the_least_recently_heard() {
        let b = block();
        for i in 0..NODES as u64 {
            b.arrive_locked(1000 + i, 1, 1, 10 + i, None);
        }
        // node 1000 is the oldest: replaced by a newcomer
        assert_eq!(
            b.arrive_locked(5, 1, 1, 500, None),
            Arrival::New { lost: 0 }
        );
        assert_eq!(
            b.arrive_locked(1001, 1, 3, 501, None),
            Arrival::New { lost: 1 }
        );
        assert_eq!(
            b.arrive_locked(1000, 1, 9, 502, None),
            Arrival::New { lost: 0 }
        );
    }

    #[test]
    fn stream_ids_only_move_forward_and_saves_need_the_lease() {
        let (b, l) = (block(), TestLock::default());
        assert_eq!(b.last_id(), None);
        // joining an empty stream: its start is kept, not "none yet"
        assert!(!b.advance_locked((0, 0)));
        assert_eq!(b.last_id(), Some((0, 0)));
        assert!(b.advance_locked((5, 0)));
        assert!(!b.advance_locked((4, 9)));
        assert!(b.advance_locked((5, 1)));
        assert_eq!(b.last_id(), Some((5, 1)));
        let t = b.take(&l, 1, 0, |_| true).unwrap();
        let cur = Cursor::new(64, 3);
        b.ordinal.store(10, Relaxed);
        assert!(b.save_out(&l, t, cur, 8, 10));
        assert_eq!((b.saved_out(), b.waiting()), (Some(cur), 2));
        assert!(!b.save_out(&l, t + 1, cur, 10, 10));
        assert_eq!(b.waiting(), 2);
        assert_ne!(name_hash(b""), 0);
    }

    #[test]
    fn stream_ids() {
        assert_eq!(parse_id(b"1700000000000-3"), Some((1_700_000_000_000, 3)));
        assert_eq!(parse_id(b"0-0"), Some((0, 0)));
        assert_eq!(parse_id(b"12"), None);
        assert_eq!(parse_id(b"a-1"), None);
    }
}
