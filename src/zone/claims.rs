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

    /// Finds key hash `h`'s live entry, or the entry a new one goes in:
    /// the first one not live, sparing the key's own expired claims (who
    /// ran its earlier windows, which [`Self::expired_owner`] reads) while
    /// another entry is free.
    fn probe(&self, h: u64, now: u64) -> Probe {
        let table = self.0;
        let start = (h % table.len() as u64) as usize;
        let (mut free, mut history) = (None, None);
        for i in 0..PROBE.min(table.len()) {
            let at = (start + i) % table.len();
            let e = &table[at];
            let eh = e.hash.load(Ordering::Relaxed);
            let is_live = e.is_live(now);
            if is_live && eh == h {
                return Probe::Found(at);
            }
            if !is_live && free.is_none() {
                if eh == h && e.pid() != 0 {
                    history = history.or(Some(at));
                } else {
                    free = Some(at);
                }
            }
            if eh == 0 {
                break; // never used: the key is not further on
            }
        }
        free.or(history).map_or(Probe::Full, Probe::Free)
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
                // a new window's reservation; an event posted in an earlier
                // window (read late: a busy worker) stays that window's
                if let Some(owner) = self.expired_owner(h, posted_ms.max(1)) {
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
#[path = "claims_tests.rs"]
mod tests;
