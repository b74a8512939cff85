//! `ProcessCell`: the one kind of per-process global state.
//!
//! nginx runs Lua and module callbacks on one thread per process, so
//! per-process state needs no lock, only two guarantees this cell gives:
//! - **no aliasing**: `with` refuses to hand out a second `&mut` while one
//!   is live (re-entrancy from a callback), instead of creating one;
//! - **fork reset**: state created before a `fork()` (e.g. by `init_by_lua`
//!   in the master) belongs to the parent; the child gets a fresh value.
//!   The parent's value is forgotten, not dropped: its descriptors and
//!   nginx connections are the parent's to close.

use core::cell::{Cell, UnsafeCell};

use crate::ngx::process;

/// `with` was called while a borrow of the same cell was live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reentered;

impl core::fmt::Display for Reentered {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("internal error: per-process state re-entered")
    }
}

/// A per-process value, created on first use.
pub struct ProcessCell<T> {
    value: UnsafeCell<Option<T>>,
    pid: Cell<i32>,
    busy: Cell<bool>,
}

// SAFETY: only ever accessed from the single nginx event-loop thread of a
// process (Lua code and module hooks); nginx thread pools never call us.
unsafe impl<T> Sync for ProcessCell<T> {}

struct Busy<'a>(&'a Cell<bool>);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

impl<T: Default> Default for ProcessCell<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Default> ProcessCell<T> {
    /// An empty cell (the value is created on first use).
    pub const fn new() -> Self {
        ProcessCell {
            value: UnsafeCell::new(None),
            pid: Cell::new(0),
            busy: Cell::new(false),
        }
    }

    /// Runs `f` with this process' value.
    ///
    /// `f` must not run Lua code: a Lua error would unwind past the guard
    /// with `longjmp` and leave the cell marked busy.
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> Result<R, Reentered> {
        if self.busy.replace(true) {
            return Err(Reentered);
        }
        let _busy = Busy(&self.busy);
        // SAFETY: `busy` was false and is now true until `_busy` drops, so
        // this is the only reference to the value (single thread, see Sync).
        let slot = unsafe { &mut *self.value.get() };
        let me = process::pid();
        if self.pid.get() != me {
            if let Some(inherited) = slot.take() {
                core::mem::forget(inherited);
            }
            self.pid.set(me);
        }
        Ok(f(slot.get_or_insert_with(T::default)))
    }
}
