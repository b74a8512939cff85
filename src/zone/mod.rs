//! The shared zone's memory layout and the algorithms over it.
//!
//! Pure code over a byte region plus atomics: no nginx and no Lua types, so
//! all of it runs under `cargo test`. The nginx side (`crate::shm`) hands us a
//! region carved from the slab pool and a [`ZoneLock`] (the slab pool mutex).
//!
//! Vocabulary, used the same way everywhere in the crate:
//! - **zone**: one `worker_events_zone`; its region holds a [`layout::Header`],
//!   the worker **slots**, the **claims** table and the event **log**.
//! - **log**: a ring of bytes holding serialised **records** back to back.
//!   Positions in it (`pos`, `head`, `tail`) are monotonic 64-bit byte counts;
//!   the byte offset is `pos % ring_cap`. A record may wrap around the end.
//! - **record**: one posted event (header + source + event + unique + data).
//! - **seq**: the record's number in the zone's global order; gaps only appear
//!   when a poster died in the middle of a post.
//! - **cursor**: a reader's (`pos`, `next_seq`); every worker has its own.
//! - **claim**: who handles a `unique` event, until it expires.
//! - **slot**: per-process entry (pid, wake-up flag) for push notification.
//!
//! Writers serialise on the zone lock, and hold it only while copying one
//! record in. Readers never take the lock on the normal path: they copy a
//! record out and then check that the writer did not reclaim it meanwhile
//! (seqlock style); only when a reader was overrun does it lock to resync.

pub mod claims;
pub mod layout;
pub mod record;
pub mod ring;
pub mod slots;

pub use layout::Zone;
pub use ring::{Cursor, ReadOutcome};

/// Mutual exclusion between processes for writers of one zone.
///
/// In nginx this is the slab pool mutex, which the master force-unlocks when
/// a worker dies holding it. Implementations must be re-entrant-free and cheap.
pub trait ZoneLock {
    /// Acquires the lock (spins/sleeps until it is free).
    fn lock(&self);
    /// Releases the lock.
    fn unlock(&self);
}

/// RAII guard over a [`ZoneLock`].
pub struct Guard<'a, L: ZoneLock + ?Sized>(&'a L);

impl<'a, L: ZoneLock + ?Sized> Guard<'a, L> {
    /// Locks `lock` until the guard is dropped.
    pub fn new(lock: &'a L) -> Self {
        lock.lock();
        Guard(lock)
    }
}

impl<L: ZoneLock + ?Sized> Drop for Guard<'_, L> {
    fn drop(&mut self) {
        self.0.unlock();
    }
}

/// A spinning lock for unit tests (threads stand in for worker processes).
#[cfg(test)]
#[derive(Default)]
pub(crate) struct TestLock(std::sync::atomic::AtomicBool);

#[cfg(test)]
impl ZoneLock for TestLock {
    fn lock(&self) {
        use std::sync::atomic::Ordering;
        while self
            .0
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
    }
    fn unlock(&self) {
        self.0.store(false, std::sync::atomic::Ordering::Release);
    }
}
