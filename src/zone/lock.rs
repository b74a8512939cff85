//! The writers' lock over one zone, as a trait, and the guard that releases it.
//!
//! In nginx the lock is the slab pool mutex (see `crate::ngx::shm`), which
//! the master force-unlocks when a worker dies holding it; unit tests use a
//! spinning [`TestLock`] with threads standing in for worker processes.

/// Mutual exclusion between processes for writers of one zone.
///
/// Implementations must not be re-entrant and must be cheap: the lock is held
/// only while one record is copied in or one table entry is updated.
pub trait ZoneLock {
    /// Holds the lock; dropping it releases the lock.
    type Held<'a>
    where
        Self: 'a;
    /// Acquires the lock (spins/sleeps until it is free).
    fn lock(&self) -> Self::Held<'_>;
}

/// Holds a [`ZoneLock`] until dropped.
#[must_use = "the lock is released when the guard is dropped"]
pub struct Guard<'a, L: ZoneLock + ?Sized + 'a>(
    #[allow(dead_code, reason = "held for its Drop")] L::Held<'a>,
);

impl<'a, L: ZoneLock + ?Sized> Guard<'a, L> {
    /// Locks `lock` until the guard is dropped.
    pub fn new(lock: &'a L) -> Self {
        Guard(lock.lock())
    }
}

/// A spinning lock for unit tests.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct TestLock(std::sync::atomic::AtomicBool);

/// [`TestLock`] held.
#[cfg(test)]
pub(crate) struct TestHeld<'a>(&'a std::sync::atomic::AtomicBool);

#[cfg(test)]
impl Drop for TestHeld<'_> {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Release);
    }
}

#[cfg(test)]
impl ZoneLock for TestLock {
    type Held<'a> = TestHeld<'a>;
    fn lock(&self) -> TestHeld<'_> {
        use std::sync::atomic::Ordering;
        while self
            .0
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
        TestHeld(&self.0)
    }
}
