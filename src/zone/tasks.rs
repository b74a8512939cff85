//! Interval task counters, per task identifier, for the status endpoint:
//! a small fixed table in the zone (entries found by a hash of the
//! identifier, written under the zone lock, read without it).

use core::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicU8, Ordering};

use super::claims::hash;
use super::lock::{Guard, ZoneLock};

/// Tasks whose counters a zone keeps (later ones are not counted).
pub const TASKS: usize = 64;
/// Bytes of an identifier kept (longer ones are cut).
pub const NAME_LEN: usize = 56;

/// One task's counters.
#[repr(C)]
pub struct TaskEntry {
    hash: AtomicU64,
    runs: AtomicU64,
    failures: AtomicU64,
    retries: AtomicU64,
    overlaps: AtomicU64,
    last_duration_us: AtomicU64,
    last_ms: AtomicU64,
    last_pid: AtomicI32,
    name_len: AtomicU32,
    name: [AtomicU8; NAME_LEN],
    /// Windows skipped: no room in the claims table (this word was padding
    /// before, always zero: zones of the older layout read it right).
    skipped: AtomicU64,
}

/// What happened to a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskEvent {
    /// It ran: how long, whether it raised, by whom, when (wall ms).
    Ran {
        duration_us: u64,
        failed: bool,
        pid: i32,
        wall_ms: u64,
    },
    /// A window was run again: its worker had died mid-run.
    Retried,
    /// A window was skipped: the previous run was still going.
    Overlapped,
    /// A window was skipped: the claims table had no room for its key.
    Skipped,
}

/// A task's counters, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskStats {
    pub name: Vec<u8>,
    pub runs: u64,
    pub failures: u64,
    pub retries: u64,
    pub overlaps: u64,
    pub skipped: u64,
    pub last_duration_us: u64,
    pub last_ms: u64,
    pub last_pid: i32,
}

/// The task table of one zone.
#[derive(Clone, Copy)]
pub struct Tasks<'a>(pub(crate) &'a [TaskEntry]);

impl Tasks<'_> {
    /// Counts `event` for task `name`; false when the table is full.
    pub fn record(&self, lock: &(impl ZoneLock + ?Sized), name: &[u8], event: TaskEvent) -> bool {
        let h = hash(name);
        let _g = Guard::new(lock);
        let e = match self.0.iter().find(|e| e.hash.load(Ordering::Relaxed) == h) {
            Some(e) => e,
            None => {
                let Some(e) = self.0.iter().find(|e| e.hash.load(Ordering::Relaxed) == 0) else {
                    return false;
                };
                let n = name.len().min(NAME_LEN);
                for (d, s) in e.name.iter().zip(&name[..n]) {
                    d.store(*s, Ordering::Relaxed);
                }
                e.name_len.store(n as u32, Ordering::Relaxed);
                e.hash.store(h, Ordering::Release);
                e
            }
        };
        match event {
            TaskEvent::Ran {
                duration_us,
                failed,
                pid,
                wall_ms,
            } => {
                e.runs.fetch_add(1, Ordering::Relaxed);
                if failed {
                    e.failures.fetch_add(1, Ordering::Relaxed);
                }
                e.last_duration_us.store(duration_us, Ordering::Relaxed);
                e.last_ms.store(wall_ms, Ordering::Relaxed);
                e.last_pid.store(pid, Ordering::Relaxed);
            }
            TaskEvent::Retried => {
                e.retries.fetch_add(1, Ordering::Relaxed);
            }
            TaskEvent::Overlapped => {
                e.overlaps.fetch_add(1, Ordering::Relaxed);
            }
            TaskEvent::Skipped => {
                e.skipped.fetch_add(1, Ordering::Relaxed);
            }
        }
        true
    }

    /// Every counted task.
    pub fn all(&self) -> Vec<TaskStats> {
        self.0
            .iter()
            .filter(|e| e.hash.load(Ordering::Acquire) != 0)
            .map(|e| {
                let n = (e.name_len.load(Ordering::Relaxed) as usize).min(NAME_LEN);
                TaskStats {
                    name: e.name[..n]
                        .iter()
                        .map(|b| b.load(Ordering::Relaxed))
                        .collect(),
                    runs: e.runs.load(Ordering::Relaxed),
                    failures: e.failures.load(Ordering::Relaxed),
                    retries: e.retries.load(Ordering::Relaxed),
                    overlaps: e.overlaps.load(Ordering::Relaxed),
                    skipped: e.skipped.load(Ordering::Relaxed),
                    last_duration_us: e.last_duration_us.load(Ordering::Relaxed),
                    last_ms: e.last_ms.load(Ordering::Relaxed),
                    last_pid: e.last_pid.load(Ordering::Relaxed),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zone::lock::TestLock;

    fn table(n: usize) -> Tasks<'static> {
        // SAFETY: an all-zero TaskEntry is a valid empty entry (atomics).
        let v: Vec<TaskEntry> = (0..n).map(|_| unsafe { core::mem::zeroed() }).collect();
        Tasks(Box::leak(v.into_boxed_slice()))
    }

    #[test]
    fn an_entry_keeps_its_size() {
        assert_eq!(core::mem::size_of::<TaskEntry>(), 128);
    }

    #[test]
    fn counts_per_task_and_refuses_when_full() {
        let t = table(2);
        let l = TestLock::default();
        let ran = |failed| TaskEvent::Ran {
            duration_us: 7,
            failed,
            pid: 9,
            wall_ms: 100,
        };
        assert!(t.record(&l, b"a", ran(false)));
        assert!(t.record(&l, b"a", ran(true)));
        assert!(t.record(&l, b"a", TaskEvent::Retried));
        assert!(t.record(&l, &[b'x'; 100], TaskEvent::Overlapped));
        assert!(t.record(&l, &[b'x'; 100], TaskEvent::Skipped));
        assert!(!t.record(&l, b"c", ran(false)), "full");
        let all = t.all();
        assert_eq!(all[0].name, b"a");
        assert_eq!((all[0].runs, all[0].failures, all[0].retries), (2, 1, 1));
        assert_eq!((all[0].last_pid, all[0].last_duration_us), (9, 7));
        assert_eq!(all[1].name.len(), NAME_LEN);
        assert_eq!((all[1].overlaps, all[1].skipped), (1, 1));
    }
}
