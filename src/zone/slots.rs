//! Worker slots: one entry per attached worker process.
//!
//! A worker takes a free slot when it attaches to a zone (a slot whose owner
//! is gone counts as free: the caller supplies the liveness check) and frees
//! it when it exits. A slot records who owns it (pid, `ngx_worker` number,
//! the zone generation it started in) and how to wake it: posters walk the
//! slots, and the `wake` flag coalesces a burst of posts into one wake-up
//! per reader.

use core::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};

use super::lock::{Guard, ZoneLock};

/// One slot.
#[repr(C)]
pub struct Slot {
    /// Owner pid, 0 when free.
    pid: AtomicI32,
    /// 1 while a wake-up is pending (sent and not yet consumed).
    wake: AtomicU32,
    /// The owner's `ngx_worker` number.
    worker: AtomicI32,
    /// 1 if the owner accepts push wake-ups.
    push: AtomicU32,
    /// The zone generation (configuration cycle) the owner started in.
    generation: AtomicU64,
    /// The random name of the owner's wake-up socket (set before `push`).
    token: [AtomicU64; 2],
    _pad: [u64; 3],
}

/// Who owns an occupied slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotOwner {
    pub slot: usize,
    pub pid: i32,
    pub worker: i32,
    pub generation: u64,
    pub push: bool,
}

/// The slot table of one zone.
#[derive(Clone, Copy)]
pub struct Slots<'a>(pub(crate) &'a [Slot]);

impl Slots<'_> {
    /// Takes a slot for `pid`; `alive(pid)` tells whether an owner still runs.
    pub fn acquire(
        &self,
        lock: &(impl ZoneLock + ?Sized),
        pid: i32,
        worker: i32,
        generation: u64,
        alive: impl Fn(i32) -> bool,
    ) -> Option<usize> {
        let slots = self.0;
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
        s.generation.store(generation, Ordering::Relaxed);
        s.pid.store(pid, Ordering::Release);
        Some(idx)
    }

    /// Frees slot `idx` if `pid` still owns it.
    pub fn release(&self, idx: usize, pid: i32) {
        if let Some(s) = self.0.get(idx) {
            s.push.store(0, Ordering::Relaxed);
            let _ = s
                .pid
                .compare_exchange(pid, 0, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    /// Publishes the name of slot `idx`'s wake-up socket (before `set_push`).
    pub fn set_token(&self, idx: usize, token: u128) {
        if let Some(s) = self.0.get(idx) {
            s.token[0].store((token >> 64) as u64, Ordering::Relaxed);
            s.token[1].store(token as u64, Ordering::Release);
        }
    }

    /// The name of slot `idx`'s wake-up socket (read after seeing `push`).
    pub fn token(&self, idx: usize) -> u128 {
        self.0.get(idx).map_or(0, |s| {
            let lo = s.token[1].load(Ordering::Acquire);
            ((s.token[0].load(Ordering::Relaxed) as u128) << 64) | lo as u128
        })
    }

    /// Marks slot `idx` as reachable by push wake-ups (or not).
    pub fn set_push(&self, idx: usize, on: bool) {
        if let Some(s) = self.0.get(idx) {
            s.push.store(on as u32, Ordering::Release);
        }
    }

    /// Takes this reader's pending-wake flag before it drains the log (so a
    /// post that lands after the drain started wakes it again); true if a
    /// poster had set it. A wake-up without the flag did not come from a
    /// poster and can be ignored.
    pub fn take_wake(&self, idx: usize) -> bool {
        self.0
            .get(idx)
            .is_some_and(|s| s.wake.swap(0, Ordering::SeqCst) != 0)
    }

    /// Clears slot `idx`'s wake flag after a wake-up could not be sent, so the
    /// next post tries again instead of assuming one is pending.
    pub fn reset_wake(&self, idx: usize) {
        if let Some(s) = self.0.get(idx) {
            s.wake.store(0, Ordering::SeqCst);
        }
    }

    /// Calls `wake(slot, pid)` for every push-enabled slot except `except`
    /// whose wake flag was not already set (coalescing).
    pub fn to_wake(&self, except: Option<usize>, mut wake: impl FnMut(usize, i32)) {
        for (i, s) in self.0.iter().enumerate() {
            if Some(i) == except || s.push.load(Ordering::Acquire) == 0 {
                continue;
            }
            let pid = s.pid.load(Ordering::Acquire);
            if pid != 0 && s.wake.swap(1, Ordering::SeqCst) == 0 {
                wake(i, pid);
            }
        }
    }

    /// Every occupied slot.
    pub fn owners(&self) -> Vec<SlotOwner> {
        self.0
            .iter()
            .enumerate()
            .filter_map(|(slot, s)| {
                let pid = s.pid.load(Ordering::Acquire);
                (pid != 0).then(|| SlotOwner {
                    slot,
                    pid,
                    worker: s.worker.load(Ordering::Relaxed),
                    generation: s.generation.load(Ordering::Relaxed),
                    push: s.push.load(Ordering::Relaxed) != 0,
                })
            })
            .collect()
    }
}

#[cfg(test)]
pub(crate) fn test_table(n: usize) -> Slots<'static> {
    let v: Vec<Slot> = (0..n)
        .map(|_| Slot {
            pid: AtomicI32::new(0),
            wake: AtomicU32::new(0),
            worker: AtomicI32::new(0),
            push: AtomicU32::new(0),
            generation: AtomicU64::new(0),
            token: [AtomicU64::new(0), AtomicU64::new(0)],
            _pad: [0; 3],
        })
        .collect();
    Slots(Box::leak(v.into_boxed_slice()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zone::lock::TestLock;

    #[test]
    fn acquire_reuses_dead_and_own_slots() {
        let z = test_table(8);
        let l = TestLock::default();
        let a = z.acquire(&l, 100, 0, 1, |_| true).unwrap();
        let b = z.acquire(&l, 101, 1, 1, |_| true).unwrap();
        assert_ne!(a, b);
        assert_eq!(z.acquire(&l, 100, 0, 1, |_| true), Some(a));
        // 100 died: its slot is taken over, by a worker of the next generation.
        assert_eq!(z.acquire(&l, 102, 0, 2, |p| p != 100), Some(a));
        z.release(b, 101);
        assert_eq!(
            z.owners(),
            vec![SlotOwner {
                slot: a,
                pid: 102,
                worker: 0,
                generation: 2,
                push: false
            }]
        );
    }

    #[test]
    fn a_full_table_refuses() {
        let z = test_table(2);
        let l = TestLock::default();
        assert!(z.acquire(&l, 1, 0, 1, |_| true).is_some());
        assert!(z.acquire(&l, 2, 1, 1, |_| true).is_some());
        assert_eq!(z.acquire(&l, 3, 2, 1, |_| true), None);
    }

    #[test]
    fn wake_is_coalesced_until_cleared() {
        let z = test_table(8);
        let l = TestLock::default();
        let a = z.acquire(&l, 1, 0, 1, |_| true).unwrap();
        let b = z.acquire(&l, 2, 1, 1, |_| true).unwrap();
        z.set_push(a, true);
        z.set_push(b, true);
        let mut woken = Vec::new();
        z.to_wake(Some(a), |_, p| woken.push(p));
        z.to_wake(Some(a), |_, p| woken.push(p));
        assert_eq!(woken, vec![2]);
        assert!(z.take_wake(b));
        assert!(!z.take_wake(b), "taken once");
        // A wake-up that could not be sent is retried by the next post.
        z.to_wake(Some(a), |i, _| z.reset_wake(i));
        z.to_wake(Some(a), |_, p| woken.push(p));
        assert!(z.take_wake(b));
        z.to_wake(None, |_, p| woken.push(p));
        assert_eq!(woken, vec![2, 2, 1, 2]);
    }
}
