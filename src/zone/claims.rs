//! Claims: which worker handles a `unique` event, until the claim expires.
//!
//! An open-addressing table keyed by a 64-bit hash of the unique value
//! (FNV-1a; two distinct values colliding is treated as the same value),
//! probed linearly over a window of [`PROBE`] entries. Entries are touched
//! only under the zone lock; they are atomics so that the table can be
//! shared between processes without `unsafe` aliasing.
//!
//! Two steps, so that a live claim is never dropped silently:
//! - **reserve**, by the poster before it appends the event: the key gets an
//!   entry (owner 0 = nobody yet) unless it already has a live one. When the
//!   window holds no free entry the post is refused ([`Full`]), never a live
//!   entry taken over.
//! - **claim**, by every reader: the first one takes the reserved entry
//!   ([`ClaimOutcome::Mine`]), the others see its owner.
//!
//! Interval tasks (`ngx_tasks`) use the same table for their windows: a
//! worker **takes** a window's key before it runs the task and marks it
//! **finished** ([`DONE`]) after; a key whose owner died before finishing is
//! taken over ([`TaskClaim::Retry`]). A task's run lock is a key that is
//! **released** when the run ends.
//!
//! Expiry times are kept in ticks of [`TICK_MS`] milliseconds of the
//! monotonic clock, in 32 bits (wrapping after 8.7 years of uptime, which
//! comparisons tolerate), so an entry is 16 bytes.

use core::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};

use super::lock::{Guard, ZoneLock};

/// One table entry.
#[repr(C)]
pub struct Claim {
    hash: AtomicU64,
    expires: AtomicU32,
    pid: AtomicI32,
}

/// Result of trying to claim a unique value.
#[derive(Debug, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// This caller handles the event.
    Mine,
    /// Already claimed (and not expired) by this pid.
    Taken(i32),
    /// No entry, and no room to make one: nobody runs it (never twice).
    Full,
}

/// A reservation found the key already live (a repeat within its timeout).
#[derive(Debug, PartialEq, Eq)]
pub enum Reserved {
    New,
    Live,
}

/// The owner of a task window that finished (no one takes it again).
pub const DONE: i32 = -1;

/// Result of taking a task window's (or run lock's) key.
#[derive(Debug, PartialEq, Eq)]
pub enum TaskClaim {
    /// This caller runs it.
    Mine,
    /// Its owner (this pid) died before finishing: this caller runs it again.
    Retry(i32),
    /// It ran already (finished).
    Done,
    /// A live worker (this pid) holds it.
    Busy(i32),
    /// No entry free in the key's window.
    Full,
}

/// The probe window of a key holds only live claims: the post is refused.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

/// The claims table of one zone.
#[derive(Clone, Copy)]
pub struct Claims<'a>(pub(crate) &'a [Claim]);

/// Entries probed from a key's home position.
pub const PROBE: usize = 256;
/// Resolution of expiry times.
pub const TICK_MS: u64 = 64;

/// FNV-1a, never 0 (0 marks an empty entry).
pub fn hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h.max(1)
}

fn ticks(ms: u64) -> u32 {
    ms.div_ceil(TICK_MS) as u32
}

fn live(expires: u32, now: u32) -> bool {
    (expires.wrapping_sub(now) as i32) > 0
}

/// Where a key is, or where it can go, in its window.
enum Probe {
    Found(usize),
    Free(usize),
    Full,
}

impl Claims<'_> {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for a table without entries (never, for a laid-out zone).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Live entries at `now_ms` (a full scan, for stats).
    pub fn live(&self, now_ms: u64) -> usize {
        let now = ticks(now_ms);
        self.0
            .iter()
            .filter(|e| {
                e.hash.load(Ordering::Relaxed) != 0 && live(e.expires.load(Ordering::Relaxed), now)
            })
            .count()
    }

    fn probe(&self, h: u64, now: u32) -> Probe {
        let table = self.0;
        let start = (h % table.len() as u64) as usize;
        let mut free = None;
        for i in 0..PROBE.min(table.len()) {
            let at = (start + i) % table.len();
            let e = &table[at];
            let eh = e.hash.load(Ordering::Relaxed);
            let is_live = eh != 0 && live(e.expires.load(Ordering::Relaxed), now);
            if is_live && eh == h {
                return Probe::Found(at);
            }
            if !is_live && free.is_none() {
                free = Some(at);
            }
            if eh == 0 {
                break; // never used: the key is not further on
            }
        }
        free.map_or(Probe::Full, Probe::Free)
    }

    /// The poster's step: makes sure `unique` has a live entry until
    /// `now_ms + ttl_ms` (unowned when new).
    pub fn reserve(
        &self,
        lock: &(impl ZoneLock + ?Sized),
        unique: &[u8],
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<Reserved, Full> {
        let h = hash(unique);
        let now = ticks(now_ms);
        let _g = Guard::new(lock);
        match self.probe(h, now) {
            Probe::Found(_) => Ok(Reserved::Live),
            Probe::Free(at) => {
                let e = &self.0[at];
                e.hash.store(h, Ordering::Relaxed);
                e.pid.store(0, Ordering::Relaxed);
                e.expires
                    .store(ticks(now_ms + ttl_ms.max(1)), Ordering::Relaxed);
                Ok(Reserved::New)
            }
            Probe::Full => Err(Full),
        }
    }

    /// A reader's step: takes `unique` for `pid` until `now_ms + ttl_ms`
    /// (or the reservation's expiry, if later) unless someone holds it.
    /// `posted_ms` is when the event was posted (monotonic; 0: unknown): an
    /// event posted before an owner's claim expired stays that owner's, so
    /// a reader that comes late (a stopped worker) does not run it again,
    /// while an event posted after it opens a new window.
    pub fn claim(
        &self,
        lock: &(impl ZoneLock + ?Sized),
        unique: &[u8],
        pid: i32,
        now_ms: u64,
        ttl_ms: u64,
        posted_ms: u64,
    ) -> ClaimOutcome {
        let h = hash(unique);
        let now = ticks(now_ms);
        let _g = Guard::new(lock);
        let at = match self.probe(h, now) {
            Probe::Found(at) => {
                let owner = self.0[at].pid.load(Ordering::Relaxed);
                if owner != 0 {
                    return ClaimOutcome::Taken(owner);
                }
                at
            }
            Probe::Free(at) => {
                if let Some(owner) = self.expired_owner(h, ticks(posted_ms.max(1))) {
                    return ClaimOutcome::Taken(owner);
                }
                // The reservation expired before anyone read the event.
                at
            }
            Probe::Full => return ClaimOutcome::Full,
        };
        let e = &self.0[at];
        let until = ticks(now_ms + ttl_ms.max(1));
        let reserved = e.expires.load(Ordering::Relaxed);
        let keep =
            e.hash.load(Ordering::Relaxed) == h && live(reserved, now) && live(reserved, until);
        e.hash.store(h, Ordering::Relaxed);
        e.pid.store(pid, Ordering::Relaxed);
        // a reader's shorter ttl never cuts the poster's window short
        e.expires
            .store(if keep { reserved } else { until }, Ordering::Relaxed);
        ClaimOutcome::Mine
    }

    /// The owner of an expired entry still holding key hash `h` whose claim
    /// outlived the event's post time `posted` (ticks), if any.
    fn expired_owner(&self, h: u64, posted: u32) -> Option<i32> {
        let table = self.0;
        let start = (h % table.len() as u64) as usize;
        for i in 0..PROBE.min(table.len()) {
            let e = &table[(start + i) % table.len()];
            let eh = e.hash.load(Ordering::Relaxed);
            if eh == 0 {
                return None;
            }
            let owner = e.pid.load(Ordering::Relaxed);
            let covered = live(e.expires.load(Ordering::Relaxed), posted);
            if eh == h && owner != 0 && owner != DONE && covered {
                return Some(owner);
            }
        }
        None
    }
}

impl Claims<'_> {
    /// Takes task key `key` for `pid` until `now_ms + ttl_ms` (see the
    /// module doc); `alive(pid)` tells whether an owner still runs.
    pub fn take(
        &self,
        lock: &(impl ZoneLock + ?Sized),
        key: &[u8],
        pid: i32,
        now_ms: u64,
        ttl_ms: u64,
        alive: impl Fn(i32) -> bool,
    ) -> TaskClaim {
        let h = hash(key);
        let now = ticks(now_ms);
        let _g = Guard::new(lock);
        let (at, out) = match self.probe(h, now) {
            Probe::Found(at) => match self.0[at].pid.load(Ordering::Relaxed) {
                DONE => return TaskClaim::Done,
                0 => (at, TaskClaim::Mine),
                owner if owner == pid || alive(owner) => return TaskClaim::Busy(owner),
                owner => (at, TaskClaim::Retry(owner)),
            },
            Probe::Free(at) => (at, TaskClaim::Mine),
            Probe::Full => return TaskClaim::Full,
        };
        let e = &self.0[at];
        e.hash.store(h, Ordering::Relaxed);
        e.pid.store(pid, Ordering::Relaxed);
        e.expires
            .store(ticks(now_ms + ttl_ms.max(1)), Ordering::Relaxed);
        out
    }

    /// Marks task key `key` finished (kept until it expires).
    pub fn finish(&self, lock: &(impl ZoneLock + ?Sized), key: &[u8], now_ms: u64) {
        let _g = Guard::new(lock);
        if let Probe::Found(at) = self.probe(hash(key), ticks(now_ms)) {
            self.0[at].pid.store(DONE, Ordering::Relaxed);
        }
    }

    /// Frees task key `key` (a run lock, when the run ends).
    pub fn release(&self, lock: &(impl ZoneLock + ?Sized), key: &[u8], now_ms: u64) {
        let now = ticks(now_ms);
        let _g = Guard::new(lock);
        if let Probe::Found(at) = self.probe(hash(key), now) {
            self.0[at]
                .expires
                .store(now.wrapping_sub(1), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zone::lock::TestLock;

    fn zone(entries: usize) -> Claims<'static> {
        let table: Vec<Claim> = (0..entries)
            .map(|_| Claim {
                hash: AtomicU64::new(0),
                expires: AtomicU32::new(0),
                pid: AtomicI32::new(0),
            })
            .collect();
        Claims(Box::leak(table.into_boxed_slice()))
    }

    #[test]
    fn an_entry_is_16_bytes() {
        assert_eq!(core::mem::size_of::<Claim>(), 16);
    }

    #[test]
    fn first_claims_then_others_skip_until_expiry() {
        let z = zone(64);
        let l = TestLock::default();
        assert_eq!(z.reserve(&l, b"k", 1000, 512), Ok(Reserved::New));
        assert_eq!(z.claim(&l, b"k", 10, 1000, 512, 1000), ClaimOutcome::Mine);
        assert_eq!(
            z.claim(&l, b"k", 11, 1200, 512, 1200),
            ClaimOutcome::Taken(10)
        );
        assert_eq!(z.reserve(&l, b"k", 1200, 512), Ok(Reserved::Live));
        assert_eq!(
            z.claim(&l, b"k", 10, 1400, 512, 1400),
            ClaimOutcome::Taken(10)
        );
        // expired (to within a tick): a late reader of that event still sees
        // its owner; a new post of the key opens a new window
        assert_eq!(
            z.claim(&l, b"k", 11, 1600, 512, 1000),
            ClaimOutcome::Taken(10)
        );
        assert_eq!(z.reserve(&l, b"k", 1600, 512), Ok(Reserved::New));
        assert_eq!(z.claim(&l, b"k", 11, 1600, 512, 1600), ClaimOutcome::Mine);
        assert_eq!(
            z.claim(&l, b"other", 12, 1600, 512, 1600),
            ClaimOutcome::Mine
        );
    }

    #[test]
    fn a_reservation_nobody_read_is_claimed_once() {
        let z = zone(64);
        let l = TestLock::default();
        assert_eq!(z.reserve(&l, b"k", 0, 2000), Ok(Reserved::New));
        assert_eq!(z.reserve(&l, b"k", 10, 2000), Ok(Reserved::Live));
        assert_eq!(z.claim(&l, b"k", 7, 20, 2000, 20), ClaimOutcome::Mine);
        assert_eq!(z.claim(&l, b"k", 8, 20, 2000, 20), ClaimOutcome::Taken(7));
    }

    #[test]
    fn a_full_window_refuses_and_never_takes_over_a_live_claim() {
        let z = zone(64);
        let l = TestLock::default();
        let mut held = Vec::new();
        for i in 0..1000 {
            let k = format!("key-{i}");
            match z.reserve(&l, k.as_bytes(), 0, 1_000_000) {
                Ok(Reserved::New) => held.push(k),
                Ok(Reserved::Live) => panic!("{k} was not reserved before"),
                Err(Full) => {}
            }
        }
        assert_eq!(held.len(), 64, "every entry holds a live claim");
        assert_eq!(z.live(10), 64);
        // Every held key is still there: none was taken over.
        for k in &held {
            assert_eq!(z.reserve(&l, k.as_bytes(), 10, 1), Ok(Reserved::Live));
            assert_eq!(
                z.claim(&l, k.as_bytes(), 3, 10, 1_000_000, 10),
                ClaimOutcome::Mine
            );
            assert_eq!(
                z.claim(&l, k.as_bytes(), 4, 10, 1_000_000, 10),
                ClaimOutcome::Taken(3)
            );
        }
        // A reader of a key that never got an entry runs nothing.
        assert_eq!(z.claim(&l, b"late", 5, 10, 1, 10), ClaimOutcome::Full);
        // Once they expire, room again.
        assert_eq!(z.reserve(&l, b"late", 3_000_000, 10), Ok(Reserved::New));
    }

    #[test]
    fn a_table_holds_most_of_its_entries_live() {
        let z = zone(10_922); // a 1m zone
        let l = TestLock::default();
        let mut n = 0;
        while z.reserve(&l, format!("events-one:key-{n}").as_bytes(), 0, 30_000)
            == Ok(Reserved::New)
        {
            n += 1;
        }
        assert!(
            n > 8_095,
            "held {n}: a 1m lua_shared_dict holds 8095 such keys"
        );
    }

    #[test]
    fn expiry_survives_the_tick_counter_wrapping() {
        let z = zone(64);
        let l = TestLock::default();
        let near_wrap = (u32::MAX as u64 - 2) * TICK_MS;
        assert_eq!(
            z.claim(&l, b"k", 1, near_wrap, 10 * TICK_MS, near_wrap),
            ClaimOutcome::Mine
        );
        let later = near_wrap + 5 * TICK_MS; // past the wrap, before expiry
        assert_eq!(
            z.claim(&l, b"k", 2, later, 10, later),
            ClaimOutcome::Taken(1)
        );
        let expired = near_wrap + 20 * TICK_MS;
        assert_eq!(
            z.claim(&l, b"k", 2, expired, 10, near_wrap),
            ClaimOutcome::Taken(1)
        );
        assert_eq!(z.reserve(&l, b"k", expired, 10), Ok(Reserved::New));
        assert_eq!(
            z.claim(&l, b"k", 2, expired, 10, expired),
            ClaimOutcome::Mine
        );
    }

    #[test]
    fn hash_is_never_zero() {
        assert_ne!(hash(b""), 0);
        assert_ne!(hash(b"a"), hash(b"b"));
    }

    #[test]
    fn a_late_reader_does_not_run_it_again_and_a_short_ttl_keeps_the_window() {
        let z = zone(64);
        let l = TestLock::default();
        // reserved for 5 s by the poster; claimed by a reader with a 2 s ttl
        assert_eq!(z.reserve(&l, b"k", 0, 5000), Ok(Reserved::New));
        assert_eq!(z.claim(&l, b"k", 10, 100, 2000, 100), ClaimOutcome::Mine);
        // at 3 s the key is still live (the poster's 5 s): a repeat is refused
        assert_eq!(z.reserve(&l, b"k", 3000, 5000), Ok(Reserved::Live));
        // at 9 s the claim expired: a stopped worker reading it now does not run it
        assert_eq!(
            z.claim(&l, b"k", 11, 9000, 2000, 0),
            ClaimOutcome::Taken(10)
        );
        // an event posted after that claim expired is a new window
        assert_eq!(z.claim(&l, b"k", 11, 9000, 2000, 8000), ClaimOutcome::Mine);
    }

    #[test]
    fn task_windows_run_once_and_again_after_a_crash() {
        let z = zone(64);
        let l = TestLock::default();
        let alive = |p: i32| p != 7;
        assert_eq!(z.take(&l, b"w1", 5, 0, 1000, alive), TaskClaim::Mine);
        assert_eq!(z.take(&l, b"w1", 6, 10, 1000, alive), TaskClaim::Busy(5));
        z.finish(&l, b"w1", 20);
        assert_eq!(z.take(&l, b"w1", 6, 30, 1000, alive), TaskClaim::Done);
        // owner 7 dies before finishing: taken over once
        assert_eq!(z.take(&l, b"w2", 7, 0, 1000, alive), TaskClaim::Mine);
        assert_eq!(z.take(&l, b"w2", 6, 10, 1000, alive), TaskClaim::Retry(7));
        assert_eq!(z.take(&l, b"w2", 5, 20, 1000, alive), TaskClaim::Busy(6));
        // a released run lock is free again; an expired window too
        assert_eq!(z.take(&l, b"lock", 5, 0, 1000, alive), TaskClaim::Mine);
        z.release(&l, b"lock", 5);
        assert_eq!(z.take(&l, b"lock", 6, 10, 1000, alive), TaskClaim::Mine);
        assert_eq!(z.take(&l, b"w1", 6, 5000, 1000, alive), TaskClaim::Mine);
    }
}
