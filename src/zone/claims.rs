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
//! Expiry times are exact milliseconds of the monotonic clock: a claim
//! for `ttl` ms taken at `now` is live while the clock reads less than
//! `now + ttl`, so a 1 ms timeout means 1 ms. The expiry (40 bits: 34
//! years of uptime) and the owner's pid (24 bits: Linux's `PID_MAX_LIMIT`
//! is 2^22) share one word, so an entry is still 16 bytes.

use core::sync::atomic::{AtomicU64, Ordering};

use super::lock::{Guard, ZoneLock};

/// One table entry.
#[repr(C)]
pub struct Claim {
    hash: AtomicU64,
    /// `expires_ms << PID_BITS | owner` (see [`pack`]).
    word: AtomicU64,
}

/// Bits of [`Claim::word`] that hold the owner.
const PID_BITS: u32 = 24;
const PID_MASK: u64 = (1 << PID_BITS) - 1;
/// Largest expiry a word holds (ms); later ones are clamped to it.
const EXPIRES_MAX: u64 = (1 << (64 - PID_BITS)) - 1;

/// The owner as stored: 0 nobody, [`DONE`] all ones, a pid as itself.
fn pack(expires_ms: u64, pid: i32) -> u64 {
    let owner = if pid == DONE {
        PID_MASK
    } else {
        pid as u64 & PID_MASK
    };
    (expires_ms.min(EXPIRES_MAX) << PID_BITS) | owner
}

impl Claim {
    fn expires(&self) -> u64 {
        self.word.load(Ordering::Relaxed) >> PID_BITS
    }

    fn pid(&self) -> i32 {
        match self.word.load(Ordering::Relaxed) & PID_MASK {
            PID_MASK => DONE,
            p => p as i32,
        }
    }

    fn set(&self, hash: u64, expires_ms: u64, pid: i32) {
        self.hash.store(hash, Ordering::Relaxed);
        self.word.store(pack(expires_ms, pid), Ordering::Relaxed);
    }

    fn set_expires(&self, expires_ms: u64) {
        self.word
            .store(pack(expires_ms, self.pid()), Ordering::Relaxed);
    }

    /// Holds a key whose claim has not expired at `now` (ms).
    fn is_live(&self, now: u64) -> bool {
        self.hash.load(Ordering::Relaxed) != 0 && live(self.expires(), now)
    }
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

/// FNV-1a, never 0 (0 marks an empty entry).
pub fn hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h.max(1)
}

/// An expiry at `expires` is live at `now` (both ms): `now` is before it.
fn live(expires: u64, now: u64) -> bool {
    expires > now
}

/// When a claim taken at `now` for `ttl` ms expires (at least 1 ms).
fn until(now: u64, ttl: u64) -> u64 {
    now.saturating_add(ttl.max(1))
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
        self.0.iter().filter(|e| e.is_live(now_ms)).count()
    }

    fn probe(&self, h: u64, now: u64) -> Probe {
        let table = self.0;
        let start = (h % table.len() as u64) as usize;
        let mut free = None;
        for i in 0..PROBE.min(table.len()) {
            let at = (start + i) % table.len();
            let e = &table[at];
            let eh = e.hash.load(Ordering::Relaxed);
            let is_live = e.is_live(now);
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
        let _g = Guard::new(lock);
        match self.probe(h, now_ms) {
            Probe::Found(_) => Ok(Reserved::Live),
            Probe::Free(at) => {
                self.0[at].set(h, until(now_ms, ttl_ms), 0);
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
        let _g = Guard::new(lock);
        let at = match self.probe(h, now_ms) {
            Probe::Found(at) => {
                let owner = self.0[at].pid();
                if owner != 0 {
                    return ClaimOutcome::Taken(owner);
                }
                at
            }
            Probe::Free(at) => {
                if let Some(owner) = self.expired_owner(h, posted_ms.max(1)) {
                    return ClaimOutcome::Taken(owner);
                }
                // The reservation expired before anyone read the event.
                at
            }
            Probe::Full => return ClaimOutcome::Full,
        };
        let e = &self.0[at];
        let mine = until(now_ms, ttl_ms);
        let reserved = e.expires();
        let keep = e.hash.load(Ordering::Relaxed) == h && live(reserved, now_ms) && reserved > mine;
        // a reader's shorter ttl never cuts the poster's window short
        e.set(h, if keep { reserved } else { mine }, pid);
        ClaimOutcome::Mine
    }

    /// The owner of an expired entry still holding key hash `h` whose claim
    /// outlived the event's post time `posted` (ms), if any.
    fn expired_owner(&self, h: u64, posted: u64) -> Option<i32> {
        let table = self.0;
        let start = (h % table.len() as u64) as usize;
        for i in 0..PROBE.min(table.len()) {
            let e = &table[(start + i) % table.len()];
            let eh = e.hash.load(Ordering::Relaxed);
            if eh == 0 {
                return None;
            }
            let owner = e.pid();
            if eh == h && owner != 0 && owner != DONE && live(e.expires(), posted) {
                return Some(owner);
            }
        }
        None
    }
}

impl Claims<'_> {
    /// Takes task key `key` for `pid` until `now_ms + ttl_ms` (see the
    /// module doc); `alive(pid)` tells whether an owner still runs. A key
    /// with no live entry gets one only before `new_before_ms` (the end of
    /// its window: a finished window's entry expires then, so a worker
    /// that looks at it later must not take it as new): at or after it,
    /// the window is over ([`TaskClaim::Done`]).
    #[allow(clippy::too_many_arguments)]
    pub fn take(
        &self,
        lock: &(impl ZoneLock + ?Sized),
        key: &[u8],
        pid: i32,
        now_ms: u64,
        ttl_ms: u64,
        new_before_ms: u64,
        alive: impl Fn(i32) -> bool,
    ) -> TaskClaim {
        let h = hash(key);
        let _g = Guard::new(lock);
        let (at, out) = match self.probe(h, now_ms) {
            Probe::Found(at) => match self.0[at].pid() {
                DONE => return TaskClaim::Done,
                0 => (at, TaskClaim::Mine),
                owner if owner == pid || alive(owner) => return TaskClaim::Busy(owner),
                owner => (at, TaskClaim::Retry(owner)),
            },
            Probe::Free(_) | Probe::Full if now_ms >= new_before_ms => return TaskClaim::Done,
            Probe::Free(at) => (at, TaskClaim::Mine),
            Probe::Full => return TaskClaim::Full,
        };
        self.0[at].set(h, until(now_ms, ttl_ms), pid);
        out
    }

    /// Marks task key `key` finished, kept until `keep_until_ms` at most
    /// (the end of its window: a task holds a few entries whatever its
    /// interval), or its expiry if sooner.
    pub fn finish(
        &self,
        lock: &(impl ZoneLock + ?Sized),
        key: &[u8],
        now_ms: u64,
        keep_until_ms: u64,
    ) {
        let _g = Guard::new(lock);
        if let Probe::Found(at) = self.probe(hash(key), now_ms) {
            let e = &self.0[at];
            e.word.store(
                pack(e.expires().min(keep_until_ms), DONE),
                Ordering::Relaxed,
            );
        }
    }

    /// Frees task key `key` (a run lock, when the run ends).
    pub fn release(&self, lock: &(impl ZoneLock + ?Sized), key: &[u8], now_ms: u64) {
        let _g = Guard::new(lock);
        if let Probe::Found(at) = self.probe(hash(key), now_ms) {
            self.0[at].set_expires(now_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zone::lock::TestLock;

    /// No window end: a key may always be taken as new.
    const NEVER: u64 = u64::MAX;

    fn zone(entries: usize) -> Claims<'static> {
        let table: Vec<Claim> = (0..entries)
            .map(|_| Claim {
                hash: AtomicU64::new(0),
                word: AtomicU64::new(0),
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
        // expired: a late reader of that event still sees
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
    fn expiry_is_exact_to_the_millisecond() {
        let z = zone(64);
        let l = TestLock::default();
        // Kong's suites use 40 ms: a claim taken at any ms is live for
        // exactly 40 ms (under 64 ms ticks it was often dead on arrival)
        for t0 in [1u64, 63, 64, 65, 127, 1_000_001] {
            let k = format!("k{t0}");
            assert_eq!(z.reserve(&l, k.as_bytes(), t0, 40), Ok(Reserved::New));
            assert_eq!(z.claim(&l, k.as_bytes(), 1, t0, 40, t0), ClaimOutcome::Mine);
            for dt in [0, 1, 20, 39] {
                assert_eq!(
                    z.reserve(&l, k.as_bytes(), t0 + dt, 40),
                    Ok(Reserved::Live),
                    "{t0}+{dt}"
                );
                assert_eq!(
                    z.claim(&l, k.as_bytes(), 2, t0 + dt, 40, t0),
                    ClaimOutcome::Taken(1)
                );
            }
            assert_eq!(
                z.reserve(&l, k.as_bytes(), t0 + 40, 40),
                Ok(Reserved::New),
                "{t0}+40"
            );
        }
        // 1 ms means 1 ms
        assert_eq!(z.reserve(&l, b"one", 500, 1), Ok(Reserved::New));
        assert_eq!(z.reserve(&l, b"one", 500, 1), Ok(Reserved::Live));
        assert_eq!(z.reserve(&l, b"one", 501, 1), Ok(Reserved::New));
        // a ttl of 0 is taken as 1 ms, never as "already expired"
        assert_eq!(z.reserve(&l, b"zero", 7, 0), Ok(Reserved::New));
        assert_eq!(z.reserve(&l, b"zero", 7, 0), Ok(Reserved::Live));
    }

    #[test]
    fn owner_and_expiry_share_a_word_without_clobbering() {
        let z = zone(64);
        let l = TestLock::default();
        let max_pid: i32 = 1 << 22; // Linux PID_MAX_LIMIT
        assert_eq!(
            z.take(&l, b"w", max_pid, 10, 1000, NEVER, |_| true),
            TaskClaim::Mine
        );
        assert_eq!(
            z.take(&l, b"w", 5, 20, 1000, NEVER, |_| true),
            TaskClaim::Busy(max_pid)
        );
        z.finish(&l, b"w", 30, NEVER);
        assert_eq!(
            z.take(&l, b"w", 5, 1009, 1000, NEVER, |_| true),
            TaskClaim::Done
        );
        assert_eq!(
            z.take(&l, b"w", 5, 1010, 1000, NEVER, |_| true),
            TaskClaim::Mine
        );
        // an uptime of decades still compares right
        let late = 30 * 365 * 24 * 3600 * 1000u64;
        assert_eq!(z.reserve(&l, b"late", late, 5), Ok(Reserved::New));
        assert_eq!(z.reserve(&l, b"late", late + 4, 5), Ok(Reserved::Live));
        assert_eq!(z.reserve(&l, b"late", late + 5, 5), Ok(Reserved::New));
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
        assert_eq!(z.take(&l, b"w1", 5, 0, 1000, NEVER, alive), TaskClaim::Mine);
        assert_eq!(
            z.take(&l, b"w1", 6, 10, 1000, NEVER, alive),
            TaskClaim::Busy(5)
        );
        z.finish(&l, b"w1", 20, NEVER);
        assert_eq!(
            z.take(&l, b"w1", 6, 30, 1000, NEVER, alive),
            TaskClaim::Done
        );
        // owner 7 dies before finishing: taken over once
        assert_eq!(z.take(&l, b"w2", 7, 0, 1000, NEVER, alive), TaskClaim::Mine);
        assert_eq!(
            z.take(&l, b"w2", 6, 10, 1000, NEVER, alive),
            TaskClaim::Retry(7)
        );
        assert_eq!(
            z.take(&l, b"w2", 5, 20, 1000, NEVER, alive),
            TaskClaim::Busy(6)
        );
        // a released run lock is free again; an expired window too
        assert_eq!(
            z.take(&l, b"lock", 5, 0, 1000, NEVER, alive),
            TaskClaim::Mine
        );
        z.release(&l, b"lock", 5);
        assert_eq!(
            z.take(&l, b"lock", 6, 10, 1000, NEVER, alive),
            TaskClaim::Mine
        );
        assert_eq!(
            z.take(&l, b"w1", 6, 5000, 1000, NEVER, alive),
            TaskClaim::Mine
        );
    }

    #[test]
    fn a_finished_window_expires_at_its_end_and_is_not_taken_again() {
        let z = zone(64);
        let l = TestLock::default();
        // window [1000, 1500): taken at 1100 for a long ttl, finished at 1200
        assert_eq!(
            z.take(&l, b"w", 5, 1100, 10_000, 1500, |_| true),
            TaskClaim::Mine
        );
        assert_eq!(
            z.take(&l, b"w", 6, 1150, 10_000, 1500, |_| true),
            TaskClaim::Busy(5)
        );
        z.finish(&l, b"w", 1200, 1500);
        assert_eq!(
            z.take(&l, b"w", 6, 1499, 10_000, 1500, |_| true),
            TaskClaim::Done
        );
        assert_eq!(z.live(1499), 1);
        // its entry is free at the window's end, and a late look is not a new window
        assert_eq!(z.live(1500), 0);
        assert_eq!(
            z.take(&l, b"w", 6, 1500, 10_000, 1500, |_| true),
            TaskClaim::Done
        );
        // a recheck of a held key (no new entry) after the owner finished late
        assert_eq!(
            z.take(&l, b"x", 5, 1100, 10_000, 1500, |_| true),
            TaskClaim::Mine
        );
        z.finish(&l, b"x", 1700, 1500);
        assert_eq!(
            z.take(&l, b"x", 6, 1700, 10_000, 0, |_| true),
            TaskClaim::Done
        );
        assert_eq!(z.live(1700), 0);
        // a full table: a look after the window's end is still just "over"
        let full = zone(64);
        for i in 0..64 {
            let k = format!("k{i}");
            assert_eq!(
                full.reserve(&l, k.as_bytes(), 0, 1_000_000),
                Ok(Reserved::New)
            );
        }
        assert_eq!(
            full.take(&l, b"w", 6, 10, 1000, 0, |_| true),
            TaskClaim::Done
        );
        assert_eq!(
            full.take(&l, b"w", 6, 10, 1000, 11, |_| true),
            TaskClaim::Full
        );
    }

    #[test]
    fn a_1ms_task_on_two_workers_holds_a_few_entries() {
        // one task at interval 1 ms, 2 workers looking every ms for 2 s,
        // windows taken with the old ttl (2 * interval + 5 s)
        let z = zone(10_922);
        let l = TestLock::default();
        let mut most = 0;
        for now in 0..2_000u64 {
            for pid in [5, 6] {
                let key = format!("ngx_tasks:p:t:{now}");
                if z.take(&l, key.as_bytes(), pid, now, 5_002, now + 1, |_| true) == TaskClaim::Mine
                {
                    z.finish(&l, key.as_bytes(), now, now + 1);
                }
            }
            most = most.max(z.live(now));
        }
        assert!(most <= 2, "held {most}");
    }
}
