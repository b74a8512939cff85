//! Per-process state: which zone this worker is attached to, its cursor in
//! the log, and reusable buffers.
//!
//! nginx runs Lua and module callbacks on one thread per process, so the
//! state is a process-global cell touched only from that thread. It is keyed
//! by pid: state inherited through `fork()` (e.g. `configure()` called in
//! `init_by_lua`) is discarded in the child, which attaches afresh.

use core::cell::UnsafeCell;

use crate::codec::Encoder;
use crate::shm::{Lookup, ZoneHandle};
use crate::zone::Cursor;

/// This process' attachment to one zone.
pub struct Worker {
    pub pid: i32,
    pub name: String,
    pub handle: ZoneHandle,
    pub cursor: Cursor,
    /// Record copy buffer for reads.
    pub buf: Vec<u8>,
    /// Payload encoding buffer for posts.
    pub enc: Encoder,
    /// Our slot in the zone (push wake-ups), if one was free.
    pub slot: Option<usize>,
}

struct Global(UnsafeCell<Option<Worker>>);

// SAFETY: only ever accessed from the single nginx event-loop thread of a
// process (Lua code and module hooks); nginx thread pools never call us.
unsafe impl Sync for Global {}

static STATE: Global = Global(UnsafeCell::new(None));

/// The current pid (nginx's `ngx_pid`, set in every process right after
/// fork: a memory read, unlike `getpid()`, which is a system call).
pub fn pid() -> i32 {
    // SAFETY: reading an nginx process-global integer.
    unsafe { ngx::ffi::ngx_pid }
}

/// Runs `f` with this process' state (None if not attached in this process).
///
/// Not re-entrant: `f` must not call back into Lua.
pub fn with<R>(f: impl FnOnce(Option<&mut Worker>) -> R) -> R {
    // SAFETY: single-threaded access (see `Global`); `f` cannot re-enter
    // because it runs no Lua code, so no second &mut is ever created.
    let st = unsafe { &mut *STATE.0.get() };
    if st.as_ref().is_some_and(|w| w.pid != pid()) {
        // Inherited through fork: the parent's cursor and slot are not ours.
        *st = None;
    }
    f(st.as_mut())
}

/// Why attaching failed; the Lua layer turns these into messages.
#[derive(Debug, PartialEq, Eq)]
pub enum AttachError {
    NotFound,
    NotOurs,
    OtherZone(String),
}

/// Attaches this process to zone `name` (idempotent for the same name).
pub fn attach(name: &str) -> Result<bool, AttachError> {
    if let Some(existing) = with(|w| w.map(|w| w.name.clone())) {
        return if existing == name {
            Ok(false)
        } else {
            Err(AttachError::OtherZone(existing))
        };
    }
    let handle = match crate::shm::lookup(name.as_bytes()) {
        Lookup::Ours(h) => h,
        Lookup::Foreign => return Err(AttachError::NotOurs),
        Lookup::Missing => return Err(AttachError::NotFound),
    };
    let me = pid();
    let cursor = handle.zone.cursor_at_head(&handle);
    // SAFETY: reading nginx's process-global worker number.
    let worker_no = unsafe { ngx::ffi::ngx_worker } as i32;
    // Slots are for workers (push wake-ups); the master running init_by_lua
    // code must not hold one for its whole life.
    let slot = if crate::util::is_worker() {
        let slot = handle.zone.slot_acquire(&handle, me, worker_no, |p| {
            // SAFETY: kill with signal 0 only checks for existence.
            unsafe { libc::kill(p, 0) == 0 || *libc::__errno_location() != libc::ESRCH }
        });
        match slot {
            Some(slot) => crate::notify::enable(&handle, slot),
            None => crate::wev_log!(
                WARN,
                "zone \"{}\": no free worker slot, push wake-ups disabled in this worker",
                name
            ),
        }
        slot
    } else {
        None
    };
    // SAFETY: as in `with`.
    unsafe {
        *STATE.0.get() = Some(Worker {
            pid: me,
            name: name.to_string(),
            handle,
            cursor,
            buf: Vec::new(),
            enc: Encoder::new(),
            slot,
        })
    };
    Ok(true)
}

/// Detaches (worker exit): frees the slot. Returns the handle for a last post.
pub fn detach() -> Option<(ZoneHandle, i32)> {
    // SAFETY: as in `with`.
    let st = unsafe { &mut *STATE.0.get() };
    let w = st.take().filter(|w| w.pid == pid())?;
    if let Some(i) = w.slot {
        w.handle.zone.slot_release(i, w.pid);
    }
    Some((w.handle, w.pid))
}
