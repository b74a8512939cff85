//! `ngx_tasks`' native side: task windows and run locks as keys of a
//! zone's claims table (they survive reloads, and a dead owner's window is
//! taken over), and the semaphores of task loops, woken when nginx starts
//! shutting down so the loops end at once.

use core::ffi::c_void;

use crate::ngx::process;
use crate::runtime::attach::{self, AttachError};
use crate::runtime::notify;
use crate::runtime::state::STATE;
use crate::zone::claims::TaskClaim;
use crate::zone::tasks::TaskEvent;

fn now_ms() -> u64 {
    crate::ngx::monotonic_us() / 1000
}

/// Takes task key `key` in zone `zone` ("" for the default zone) for `ttl_ms`.
pub fn take(zone: &str, key: &[u8], ttl_ms: u64) -> Result<TaskClaim, AttachError> {
    let (_, handle, _) = attach::attach_named(zone)?;
    Ok(handle.zone.claims().take(
        &handle,
        key,
        process::pid(),
        now_ms(),
        ttl_ms,
        process::alive,
    ))
}

/// Marks task key `key` finished.
pub fn finish(zone: &str, key: &[u8]) -> Result<(), AttachError> {
    let (_, handle, _) = attach::attach_named(zone)?;
    handle.zone.claims().finish(&handle, key, now_ms());
    Ok(())
}

/// Frees task key `key`.
pub fn release(zone: &str, key: &[u8]) -> Result<(), AttachError> {
    let (_, handle, _) = attach::attach_named(zone)?;
    handle.zone.claims().release(&handle, key, now_ms());
    Ok(())
}

/// Counts `event` for task `name` in zone `zone` (false: its table is full).
pub fn record(zone: &str, name: &[u8], event: TaskEvent) -> Result<bool, AttachError> {
    let (_, handle, _) = attach::attach_named(zone)?;
    Ok(handle.zone.tasks().record(&handle, name, event))
}

/// Registers a task loop's semaphore to be posted when nginx starts shutting
/// down; true when that will happen (push is on in this worker), else the
/// loop must check `ngx.worker.exiting()` on its own.
pub fn set_shutdown_sema(sema: *mut c_void) -> bool {
    let _ = STATE.with(|st| {
        if !st.shutdown_semas.contains(&sema) {
            st.shutdown_semas.push(sema);
        }
    });
    notify::active()
}
