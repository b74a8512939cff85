//! `ngx_tasks`' native side: task windows and run locks as keys of a
//! zone's claims table (they survive reloads, and a dead owner's window is
//! taken over), and the semaphores of task loops, woken when nginx starts
//! shutting down so the loops end at once.

use crate::ngx::process;
use crate::runtime::attach;
use crate::runtime::notify;
use crate::runtime::resolve::AttachError;
use crate::runtime::state::{Sema, STATE};
use crate::zone::claims::TaskClaim;
use crate::zone::tasks::TaskEvent;

fn now_ms() -> u64 {
    crate::ngx::monotonic_us() / 1000
}

/// Attaches to zone `zone` ("" for the default zone): it exists.
pub fn resolve(zone: &str) -> Result<(), AttachError> {
    attach::attach_named(zone).map(|_| ())
}

/// Takes task key `key` in zone `zone` ("" for the default zone) for
/// `ttl_ms`; a key with no entry gets one only before `new_before_ms`
/// (monotonic). No room is counted in the zone's `claims_refused`.
pub fn take(
    zone: &str,
    key: &[u8],
    ttl_ms: u64,
    new_before_ms: u64,
) -> Result<TaskClaim, AttachError> {
    let (_, handle, _) = attach::attach_named(zone)?;
    let out = handle.zone.claims().take(
        &handle,
        key,
        process::pid(),
        now_ms(),
        ttl_ms,
        new_before_ms,
        process::alive,
    );
    if out == TaskClaim::Full {
        let refused = &handle.zone.header().claims_refused;
        refused.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    }
    Ok(out)
}

/// Marks task key `key` finished, kept until `keep_until_ms` (monotonic) at most.
pub fn finish(zone: &str, key: &[u8], keep_until_ms: u64) -> Result<(), AttachError> {
    let (_, handle, _) = attach::attach_named(zone)?;
    handle
        .zone
        .claims()
        .finish(&handle, key, now_ms(), keep_until_ms);
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
pub fn set_shutdown_sema(sema: Sema) -> bool {
    let _ = STATE.with(|st| {
        if !st.shutdown_semas.contains(&sema) {
            st.shutdown_semas.push(sema);
        }
    });
    notify::active() && notify::can_post(sema.subsystem)
}
