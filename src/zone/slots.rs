//! Worker slots: one entry per attached worker process.
//!
//! A worker takes a free slot when it attaches to a zone (a slot whose owner
//! is gone counts as free: the caller supplies the liveness check) and frees
//! it when it exits. A slot records who owns it (pid, `ngx_worker` number,
//! the zone generation it started in) and how to wake it: posters walk the
//! slots, and the `wake` flag coalesces posts into one wake-up per reader
//! for as long as the reader is awake (it clears the flag only when it has
//! drained the log and goes to sleep).
//!
//! For lifecycle tracking (`resty.worker.manager`) a slot also holds the
//! owner's state (running / exiting / unresponsive), its last heartbeat and
//! when it started; a slot whose heartbeat was never stamped is not
//! *managed* (its worker does not run the manager) and is not counted.

use core::sync::atomic::{fence, AtomicI32, AtomicU32, AtomicU64, Ordering};

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
    /// [`SlotState`] of the owner.
    state: AtomicU32,
    _spare: u32,
    /// The owner's last heartbeat (monotonic ms), 0: never (not managed).
    beat_ms: AtomicU64,
    /// When the owner took the slot (wall clock, ms since the epoch).
    started_ms: AtomicU64,
    /// Counters of the owner, for the status endpoint (see [`SlotCounters`]).
    delivered: AtomicU64,
    lost: AtomicU64,
    wakeups: AtomicU64,
    handler_errors: AtomicU64,
    /// Log position and seq its slowest consumer has read up to.
    read_pos: AtomicU64,
    read_seq: AtomicU64,
    /// The eventfd group (`ngx::eventfd`) the owner watches its doorbell
    /// in, 0: none (datagrams only). Set before `push`.
    group: AtomicU64,
    _pad: [u64; 1],
}

/// What a slot's owner counted (since it took the slot).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotCounters {
    /// Records handed to its consumers (one per consumer and record).
    pub delivered: u64,
    /// Records its consumers lost (overwritten before they read them).
    pub lost: u64,
    /// Push wake-ups it received from posters.
    pub wakeups: u64,
    /// Handlers that raised.
    pub handler_errors: u64,
    /// Log position and seq of its slowest consumer (0: none read yet).
    pub read_pos: u64,
    pub read_seq: u64,
}

/// A counter of a slot.
#[derive(Clone, Copy, Debug)]
pub enum SlotCounter {
    Delivered,
    Lost,
    Wakeups,
    HandlerErrors,
}

/// A slot owner's lifecycle state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum SlotState {
    Running = 0,
    /// Its worker is exiting (counted no more).
    Exiting = 1,
    /// Its heartbeat is overdue.
    Unresponsive = 2,
}

impl SlotState {
    fn from_u32(v: u32) -> SlotState {
        match v {
            1 => SlotState::Exiting,
            2 => SlotState::Unresponsive,
            _ => SlotState::Running,
        }
    }

    /// The name `resty.worker.manager` reports.
    pub fn as_str(self) -> &'static str {
        match self {
            SlotState::Running => "running",
            SlotState::Exiting => "exiting",
            SlotState::Unresponsive => "unresponsive",
        }
    }
}

/// Who owns an occupied slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotOwner {
    pub slot: usize,
    pub pid: i32,
    pub worker: i32,
    pub generation: u64,
    pub push: bool,
    pub state: SlotState,
    /// Last heartbeat (monotonic ms); 0 when not managed.
    pub beat_ms: u64,
    /// Wall clock ms when it took the slot.
    pub started_ms: u64,
}

impl SlotOwner {
    /// Its worker runs the lifecycle manager (it stamped a heartbeat).
    pub fn managed(&self) -> bool {
        self.beat_ms != 0
    }

    /// Counted as a live worker of its generation (a dead owner not yet
    /// reaped still is).
    pub fn counted(&self) -> bool {
        self.managed() && self.state != SlotState::Exiting
    }
}

/// The slot table of one zone.
#[derive(Clone, Copy)]
pub struct Slots<'a>(pub(crate) &'a [Slot]);

impl Slots<'_> {
    /// Takes a slot for `pid` (its own, else a free one, else one whose
    /// owner is gone: a dead owner's slot stays for the lifecycle manager to
    /// account while free ones remain); `alive(pid)` tells whether an owner
    /// still runs; `now_wall_ms` is when.
    pub fn acquire(
        &self,
        lock: &(impl ZoneLock + ?Sized),
        pid: i32,
        worker: i32,
        generation: u64,
        now_wall_ms: u64,
        alive: impl Fn(i32) -> bool,
    ) -> Option<usize> {
        let slots = self.0;
        let _g = Guard::new(lock);
        let owner = |s: &Slot| s.pid.load(Ordering::Relaxed);
        if let Some(idx) = slots.iter().position(|s| owner(s) == pid) {
            return Some(idx);
        }
        let idx = slots
            .iter()
            .position(|s| owner(s) == 0)
            .or_else(|| slots.iter().position(|s| !alive(owner(s))))?;
        let s = &slots[idx];
        s.wake.store(0, Ordering::Relaxed);
        s.push.store(0, Ordering::Relaxed);
        s.group.store(0, Ordering::Relaxed);
        s.worker.store(worker, Ordering::Relaxed);
        s.generation.store(generation, Ordering::Relaxed);
        s.state.store(SlotState::Running as u32, Ordering::Relaxed);
        s.beat_ms.store(0, Ordering::Relaxed);
        s.started_ms.store(now_wall_ms, Ordering::Relaxed);
        for c in [
            &s.delivered,
            &s.lost,
            &s.wakeups,
            &s.handler_errors,
            &s.read_pos,
            &s.read_seq,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        s.pid.store(pid, Ordering::Release);
        Some(idx)
    }

    /// Adds `n` to a counter of slot `idx` (its owner's own, no lock).
    pub fn count(&self, idx: usize, which: SlotCounter, n: u64) {
        if let Some(s) = self.0.get(idx) {
            let c = match which {
                SlotCounter::Delivered => &s.delivered,
                SlotCounter::Lost => &s.lost,
                SlotCounter::Wakeups => &s.wakeups,
                SlotCounter::HandlerErrors => &s.handler_errors,
            };
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Records how far slot `idx`'s slowest consumer has read.
    pub fn set_read(&self, idx: usize, pos: u64, seq: u64) {
        if let Some(s) = self.0.get(idx) {
            s.read_pos.store(pos, Ordering::Relaxed);
            s.read_seq.store(seq, Ordering::Relaxed);
        }
    }

    /// The counters of slot `idx`.
    pub fn counters(&self, idx: usize) -> SlotCounters {
        self.0
            .get(idx)
            .map_or_else(SlotCounters::default, |s| SlotCounters {
                delivered: s.delivered.load(Ordering::Relaxed),
                lost: s.lost.load(Ordering::Relaxed),
                wakeups: s.wakeups.load(Ordering::Relaxed),
                handler_errors: s.handler_errors.load(Ordering::Relaxed),
                read_pos: s.read_pos.load(Ordering::Relaxed),
                read_seq: s.read_seq.load(Ordering::Relaxed),
            })
    }

    /// Stamps slot `idx`'s heartbeat (the first stamp makes it managed).
    pub fn beat(&self, idx: usize, now_ms: u64) {
        if let Some(s) = self.0.get(idx) {
            s.beat_ms.store(now_ms.max(1), Ordering::Release);
        }
    }

    /// Moves slot `idx` from state `from` to `to`; false if it was not in `from`.
    pub fn change_state(&self, idx: usize, pid: i32, from: SlotState, to: SlotState) -> bool {
        self.0.get(idx).is_some_and(|s| {
            s.pid.load(Ordering::Acquire) == pid
                && s.state
                    .compare_exchange(from as u32, to as u32, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
        })
    }

    /// Marks slot `idx` exiting (counted no more), whatever its state.
    pub fn set_exiting(&self, idx: usize, pid: i32) {
        if let Some(s) = self.0.get(idx) {
            if s.pid.load(Ordering::Acquire) == pid {
                s.state.store(SlotState::Exiting as u32, Ordering::Release);
            }
        }
    }

    /// Frees every slot whose owner is gone; returns who they were (once:
    /// under the lock, so two reapers never report the same owner).
    pub fn reap(
        &self,
        lock: &(impl ZoneLock + ?Sized),
        alive: impl Fn(i32) -> bool,
    ) -> Vec<SlotOwner> {
        let _g = Guard::new(lock);
        let mut out = Vec::new();
        for (i, s) in self.0.iter().enumerate() {
            let pid = s.pid.load(Ordering::Relaxed);
            if pid != 0 && !alive(pid) {
                if let Some(o) = self.owner(i) {
                    out.push(o);
                }
                s.push.store(0, Ordering::Relaxed);
                s.pid.store(0, Ordering::Release);
            }
        }
        out
    }

    fn owner(&self, slot: usize) -> Option<SlotOwner> {
        let s = self.0.get(slot)?;
        let pid = s.pid.load(Ordering::Acquire);
        (pid != 0).then(|| SlotOwner {
            slot,
            pid,
            worker: s.worker.load(Ordering::Relaxed),
            generation: s.generation.load(Ordering::Relaxed),
            push: s.push.load(Ordering::Relaxed) != 0,
            state: SlotState::from_u32(s.state.load(Ordering::Acquire)),
            beat_ms: s.beat_ms.load(Ordering::Acquire),
            started_ms: s.started_ms.load(Ordering::Relaxed),
        })
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

    /// Publishes the eventfd group slot `idx`'s owner watches (before `set_push`).
    pub fn set_group(&self, idx: usize, group: u64) {
        if let Some(s) = self.0.get(idx) {
            s.group.store(group, Ordering::Release);
        }
    }

    /// Slot `idx`'s eventfd group and `ngx_worker` number (read after
    /// seeing `push`): a poster of the same group rings that worker's eventfd.
    pub fn group(&self, idx: usize) -> (u64, i32) {
        self.0.get(idx).map_or((0, -1), |s| {
            (
                s.group.load(Ordering::Acquire),
                s.worker.load(Ordering::Relaxed),
            )
        })
    }

    /// Marks slot `idx` as reachable by push wake-ups (or not).
    pub fn set_push(&self, idx: usize, on: bool) {
        if let Some(s) = self.0.get(idx) {
            s.push.store(on as u32, Ordering::Release);
        }
    }

    /// True while slot `idx`'s wake flag is set: a poster sent its owner a
    /// wake-up that the owner has not slept since (posters send no other).
    /// A datagram that finds it clear did not come from a poster.
    pub fn wake_set(&self, idx: usize) -> bool {
        self.0
            .get(idx)
            .is_some_and(|s| s.wake.load(Ordering::SeqCst) != 0)
    }

    /// Clears this reader's wake flag when it has drained the log and goes
    /// to sleep; true if a poster had set it. The reader then looks at the
    /// log once more: a post that saw the flag still set sent nothing.
    pub fn take_wake(&self, idx: usize) -> bool {
        let took = self
            .0
            .get(idx)
            .is_some_and(|s| s.wake.swap(0, Ordering::SeqCst) != 0);
        // Pairs with the poster's fence (`Zone::to_wake`): the drain that
        // follows sees every record whose poster saw the flag still set.
        fence(Ordering::SeqCst);
        took
    }

    /// Clears slot `idx`'s wake flag after a wake-up could not be sent, so the
    /// next post tries again instead of assuming one is pending.
    pub fn reset_wake(&self, idx: usize) {
        if let Some(s) = self.0.get(idx) {
            s.wake.store(0, Ordering::SeqCst);
        }
    }

    /// Calls `wake(slot, pid)` for every push-enabled slot below `below`
    /// except `except` whose wake flag was not already set (coalescing).
    /// A flag already set is only loaded: a burst of posts does not write
    /// the readers' lines (the caller fences before, see `Zone::to_wake`).
    pub fn to_wake(&self, except: Option<usize>, below: usize, mut wake: impl FnMut(usize, i32)) {
        for (i, s) in self.0.iter().enumerate().take(below) {
            if Some(i) == except
                || s.push.load(Ordering::Acquire) == 0
                || s.wake.load(Ordering::SeqCst) != 0
            {
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
        (0..self.0.len()).filter_map(|i| self.owner(i)).collect()
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
            state: AtomicU32::new(0),
            _spare: 0,
            beat_ms: AtomicU64::new(0),
            started_ms: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            wakeups: AtomicU64::new(0),
            handler_errors: AtomicU64::new(0),
            read_pos: AtomicU64::new(0),
            read_seq: AtomicU64::new(0),
            group: AtomicU64::new(0),
            _pad: [0; 1],
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
        let z2 = test_table(2);
        let a = z2.acquire(&l, 100, 0, 1, 5, |_| true).unwrap();
        let b = z2.acquire(&l, 101, 1, 1, 5, |_| true).unwrap();
        assert_ne!(a, b);
        assert_eq!(z2.acquire(&l, 100, 0, 1, 5, |_| true), Some(a));
        // 100 died and no slot is free: its slot is taken over, by a worker
        // of the next generation.
        assert_eq!(z2.acquire(&l, 102, 0, 2, 7, |p| p != 100), Some(a));
        z2.release(b, 101);
        assert_eq!(
            z2.owners(),
            vec![SlotOwner {
                slot: a,
                pid: 102,
                worker: 0,
                generation: 2,
                push: false,
                state: SlotState::Running,
                beat_ms: 0,
                started_ms: 7,
            }]
        );
        // with free slots left, a dead owner's slot waits to be reaped
        let c = z.acquire(&l, 200, 0, 1, 5, |_| true).unwrap();
        let d = z.acquire(&l, 201, 1, 1, 5, |p| p != 200).unwrap();
        assert_ne!(c, d);
    }

    #[test]
    fn a_slot_is_one_or_two_cache_lines_and_counts() {
        assert_eq!(core::mem::size_of::<Slot>(), 128);
        let z = test_table(2);
        let l = TestLock::default();
        let a = z.acquire(&l, 1, 0, 1, 0, |_| true).unwrap();
        z.count(a, SlotCounter::Delivered, 3);
        z.count(a, SlotCounter::Lost, 2);
        z.set_read(a, 640, 9);
        let c = z.counters(a);
        assert_eq!(
            (c.delivered, c.lost, c.read_pos, c.read_seq),
            (3, 2, 640, 9)
        );
        z.release(a, 1);
        // a new owner starts from zero
        let b = z.acquire(&l, 2, 0, 1, 0, |_| true).unwrap();
        assert_eq!(z.counters(b), SlotCounters::default());
    }

    #[test]
    fn a_full_table_refuses() {
        let z = test_table(2);
        let l = TestLock::default();
        assert!(z.acquire(&l, 1, 0, 1, 0, |_| true).is_some());
        assert!(z.acquire(&l, 2, 1, 1, 0, |_| true).is_some());
        assert_eq!(z.acquire(&l, 3, 2, 1, 0, |_| true), None);
    }

    #[test]
    fn lifecycle_state_beat_and_reap() {
        let z = test_table(4);
        let l = TestLock::default();
        let a = z.acquire(&l, 10, 0, 3, 1000, |_| true).unwrap();
        let b = z.acquire(&l, 11, 1, 3, 1000, |_| true).unwrap();
        assert!(!z.owners()[0].managed());
        z.beat(a, 50);
        z.beat(b, 60);
        assert!(z.owners().iter().all(|o| o.counted()));
        assert!(z.change_state(b, 11, SlotState::Running, SlotState::Unresponsive));
        assert!(
            !z.change_state(b, 11, SlotState::Running, SlotState::Unresponsive),
            "once"
        );
        assert!(
            !z.change_state(b, 99, SlotState::Unresponsive, SlotState::Running),
            "not its pid"
        );
        z.set_exiting(a, 10);
        let o = z.owners();
        assert_eq!((o[0].state, o[0].counted()), (SlotState::Exiting, false));
        assert_eq!(
            (o[1].state, o[1].counted()),
            (SlotState::Unresponsive, true)
        );
        // 11 dies: reaped once, with who it was
        let gone = z.reap(&l, |p| p != 11);
        assert_eq!(gone.len(), 1);
        assert_eq!(
            (gone[0].pid, gone[0].worker, gone[0].generation),
            (11, 1, 3)
        );
        assert!(z.reap(&l, |p| p != 11).is_empty());
        assert_eq!(z.owners().len(), 1);
    }

    #[test]
    fn wake_is_coalesced_until_cleared() {
        let z = test_table(8);
        let l = TestLock::default();
        let a = z.acquire(&l, 1, 0, 1, 0, |_| true).unwrap();
        let b = z.acquire(&l, 2, 1, 1, 0, |_| true).unwrap();
        z.set_push(a, true);
        z.set_push(b, true);
        let mut woken = Vec::new();
        z.to_wake(Some(a), usize::MAX, |_, p| woken.push(p));
        z.to_wake(Some(a), usize::MAX, |_, p| woken.push(p));
        assert_eq!(woken, vec![2]);
        assert!(z.take_wake(b));
        assert!(!z.take_wake(b), "taken once");
        // A wake-up that could not be sent is retried by the next post.
        z.to_wake(Some(a), usize::MAX, |i, _| z.reset_wake(i));
        z.to_wake(Some(a), usize::MAX, |_, p| woken.push(p));
        assert!(z.take_wake(b));
        z.to_wake(None, usize::MAX, |_, p| woken.push(p));
        assert_eq!(woken, vec![2, 2, 1, 2]);
    }
}
