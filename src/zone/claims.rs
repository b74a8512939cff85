//! Claims: which worker handles a `unique` event, until the claim expires.
//!
//! A fixed open-addressing table keyed by a 64-bit hash of the unique value
//! (FNV-1a; two distinct values colliding is treated as the same value).
//! Entries are only touched under the zone lock; they are atomics so that the
//! table can be shared between processes without `unsafe` aliasing.
//! An expired entry is free. When the probe window holds no free entry, the
//! one closest to expiry is taken over (documented limit: more distinct live
//! unique values than the table holds can let one run twice).

use core::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use super::lock::{Guard, ZoneLock};

/// One table entry.
#[repr(C)]
pub struct Claim {
    hash: AtomicU64,
    expires_ms: AtomicU64,
    pid: AtomicI32,
    _pad: [u32; 3],
}

/// Result of trying to claim a unique value.
#[derive(Debug, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// This caller handles the event.
    Mine,
    /// Already claimed (and not expired) by this pid.
    Taken(i32),
}

/// The claims table of one zone.
#[derive(Clone, Copy)]
pub struct Claims<'a>(pub(crate) &'a [Claim]);

const PROBE: usize = 16;

/// FNV-1a, never 0 (0 marks an empty entry).
pub fn hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h.max(1)
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

    /// Claims `unique` for `pid` until `now_ms + ttl_ms`, unless someone holds it.
    pub fn claim(
        &self,
        lock: &(impl ZoneLock + ?Sized),
        unique: &[u8],
        pid: i32,
        now_ms: u64,
        ttl_ms: u64,
    ) -> ClaimOutcome {
        let table = self.0;
        let h = hash(unique);
        let start = (h % table.len() as u64) as usize;
        let _g = Guard::new(lock);
        // Free (expired) entries rank 0, live ones by expiry: take the lowest.
        let (mut idx, mut rank) = (start, u64::MAX);
        for i in 0..PROBE.min(table.len()) {
            let at = (start + i) % table.len();
            let e = &table[at];
            let expires = e.expires_ms.load(Ordering::Relaxed);
            let live = expires > now_ms;
            if live && e.hash.load(Ordering::Relaxed) == h {
                return ClaimOutcome::Taken(e.pid.load(Ordering::Relaxed));
            }
            let r = if live { expires } else { 0 };
            if r < rank {
                (idx, rank) = (at, r);
            }
        }
        let e = &table[idx];
        e.hash.store(h, Ordering::Relaxed);
        e.pid.store(pid, Ordering::Relaxed);
        e.expires_ms
            .store(now_ms + ttl_ms.max(1), Ordering::Relaxed);
        ClaimOutcome::Mine
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
                expires_ms: AtomicU64::new(0),
                pid: AtomicI32::new(0),
                _pad: [0; 3],
            })
            .collect();
        Claims(Box::leak(table.into_boxed_slice()))
    }

    #[test]
    fn first_claims_then_others_skip_until_expiry() {
        let z = zone(64);
        let l = TestLock::default();
        assert_eq!(z.claim(&l, b"k", 10, 1000, 500), ClaimOutcome::Mine);
        assert_eq!(z.claim(&l, b"k", 11, 1200, 500), ClaimOutcome::Taken(10));
        assert_eq!(z.claim(&l, b"k", 10, 1499, 500), ClaimOutcome::Taken(10));
        assert_eq!(z.claim(&l, b"k", 11, 1500, 500), ClaimOutcome::Mine);
        assert_eq!(z.claim(&l, b"other", 12, 1500, 500), ClaimOutcome::Mine);
    }

    #[test]
    fn full_window_takes_over_the_closest_to_expiry() {
        let z = zone(64);
        let l = TestLock::default();
        let n = z.len() * 2;
        for i in 0..n {
            let k = format!("key-{i}");
            assert_eq!(
                z.claim(&l, k.as_bytes(), 1, 0, 1_000_000 + i as u64),
                ClaimOutcome::Mine
            );
        }
        // The most recent claim is still there.
        let k = format!("key-{}", n - 1);
        assert_eq!(z.claim(&l, k.as_bytes(), 2, 10, 5), ClaimOutcome::Taken(1));
    }

    #[test]
    fn hash_is_never_zero() {
        assert_ne!(hash(b""), 0);
        assert_ne!(hash(b"a"), hash(b"b"));
    }
}
