//! Worker slots: one entry per attached process, for push wake-ups.
//!
//! A process takes a free slot when it attaches (a slot whose owner is gone
//! counts as free: the caller supplies the liveness check) and frees it when
//! it exits. Posters walk the slots to wake readers; the `wake` flag
//! coalesces a burst of posts into one wake-up per reader.

use core::sync::atomic::{AtomicI32, AtomicU32, Ordering};

use super::layout::Zone;
use super::{Guard, ZoneLock};

/// One slot.
#[repr(C)]
pub struct Slot {
    /// Owner pid, 0 when free.
    pid: AtomicI32,
    /// 1 while a wake-up is pending (sent and not yet consumed).
    wake: AtomicU32,
    /// The owner's `ngx_worker` number (informational).
    worker: AtomicI32,
    /// 1 if the owner accepts push wake-ups.
    push: AtomicU32,
    _pad: [u64; 6],
}

impl Zone {
    /// Takes a slot for `pid`; `alive(pid)` tells whether an owner still runs.
    pub fn slot_acquire(
        &self,
        lock: &(impl ZoneLock + ?Sized),
        pid: i32,
        worker: i32,
        alive: impl Fn(i32) -> bool,
    ) -> Option<usize> {
        let slots = self.slots();
        let _g = Guard::new(lock);
        let idx = slots
            .iter()
            .position(|s| s.pid.load(Ordering::Relaxed) == pid)
            .or_else(|| {
                slots.iter().position(|s| {
                    let p = s.pid.load(Ordering::Relaxed);
                    p == 0 || !alive(p)
                })
            })?;
        let s = &slots[idx];
        s.wake.store(0, Ordering::Relaxed);
        s.push.store(0, Ordering::Relaxed);
        s.worker.store(worker, Ordering::Relaxed);
        s.pid.store(pid, Ordering::Release);
        Some(idx)
    }

    /// Frees slot `idx` if `pid` still owns it.
    pub fn slot_release(&self, idx: usize, pid: i32) {
        if let Some(s) = self.slots().get(idx) {
            s.push.store(0, Ordering::Relaxed);
            let _ = s
                .pid
                .compare_exchange(pid, 0, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    /// Marks slot `idx` as reachable by push wake-ups (or not).
    pub fn slot_set_push(&self, idx: usize, on: bool) {
        if let Some(s) = self.slots().get(idx) {
            s.push.store(on as u32, Ordering::Release);
        }
    }

    /// Takes this reader's pending-wake flag before it drains the log (so a
    /// post that lands after the drain started wakes it again); true if a
    /// poster had set it. A wake-up without the flag did not come from a
    /// poster and can be ignored.
    pub fn slot_take_wake(&self, idx: usize) -> bool {
        self.slots()
            .get(idx)
            .is_some_and(|s| s.wake.swap(0, Ordering::SeqCst) != 0)
    }

    /// Clears slot `idx`'s wake flag after a wake-up could not be sent, so the
    /// next post tries again instead of assuming one is pending.
    pub fn slot_reset_wake(&self, idx: usize) {
        if let Some(s) = self.slots().get(idx) {
            s.wake.store(0, Ordering::SeqCst);
        }
    }

    /// Calls `wake(pid)` for every push-enabled slot except `except`, whose
    /// wake flag was not already set (coalescing).
    pub fn slots_to_wake(&self, except: Option<usize>, mut wake: impl FnMut(usize, i32)) {
        for (i, s) in self.slots().iter().enumerate() {
            if Some(i) == except || s.push.load(Ordering::Acquire) == 0 {
                continue;
            }
            let pid = s.pid.load(Ordering::Acquire);
            if pid != 0 && s.wake.swap(1, Ordering::SeqCst) == 0 {
                wake(i, pid);
            }
        }
    }

    /// (slot, pid, worker) of every occupied slot.
    pub fn slot_owners(&self) -> Vec<(usize, i32, i32)> {
        self.slots()
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let p = s.pid.load(Ordering::Acquire);
                (p != 0).then(|| (i, p, s.worker.load(Ordering::Relaxed)))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::zone::layout::testing::zone;
    use crate::zone::TestLock;

    #[test]
    fn acquire_reuses_dead_and_own_slots() {
        let z = zone(64 * 1024);
        let l = TestLock::default();
        let a = z.slot_acquire(&l, 100, 0, |_| true).unwrap();
        let b = z.slot_acquire(&l, 101, 1, |_| true).unwrap();
        assert_ne!(a, b);
        assert_eq!(z.slot_acquire(&l, 100, 0, |_| true), Some(a));
        // 100 died: its slot is taken over.
        assert_eq!(z.slot_acquire(&l, 102, 0, |p| p != 100), Some(a));
        z.slot_release(b, 101);
        assert_eq!(z.slot_owners(), vec![(a, 102, 0)]);
    }

    #[test]
    fn wake_is_coalesced_until_cleared() {
        let z = zone(64 * 1024);
        let l = TestLock::default();
        let a = z.slot_acquire(&l, 1, 0, |_| true).unwrap();
        let b = z.slot_acquire(&l, 2, 1, |_| true).unwrap();
        z.slot_set_push(a, true);
        z.slot_set_push(b, true);
        let mut woken = Vec::new();
        z.slots_to_wake(Some(a), |_, p| woken.push(p));
        z.slots_to_wake(Some(a), |_, p| woken.push(p));
        assert_eq!(woken, vec![2]);
        assert!(z.slot_take_wake(b));
        assert!(!z.slot_take_wake(b), "taken once");
        // A wake-up that could not be sent is retried by the next post.
        z.slots_to_wake(Some(a), |i, _| z.slot_reset_wake(i));
        z.slots_to_wake(Some(a), |_, p| woken.push(p));
        assert!(z.slot_take_wake(b));
        z.slots_to_wake(None, |_, p| woken.push(p));
        assert_eq!(woken, vec![2, 2, 1, 2]);
    }
}
