//! `extern "C"` entry points for LuaJIT FFI (`ffi.C.*`).
//!
//! A `lua_CFunction` call aborts the LuaJIT trace it sits in; an FFI call
//! does not. The per-request fast path (`poll()` with nothing to do) goes
//! through here so the caller's request handler stays compiled.

use crate::worker;

/// 1 if broadcast records are waiting for this worker, else 0.
/// (Not attached: 0.)
#[no_mangle]
pub extern "C" fn ngx_worker_events_pending() -> libc::c_int {
    crate::util::catch_unwind_or(0, || {
        worker::with(|w| w.is_some_and(|w| w.handle.zone.has_pending(&w.cursor))) as libc::c_int
    })
}

/// Test hook: takes the zone lock and never releases it, so a test can
/// SIGKILL a worker that holds it. Does nothing (returns 0) unless nginx's
/// environment has `NGX_WORKER_EVENTS_TEST_HOOKS=1` (`env` directive).
#[no_mangle]
pub extern "C" fn ngx_worker_events_test_hold_lock() -> libc::c_int {
    crate::util::catch_unwind_or(0, || {
        if std::env::var_os("NGX_WORKER_EVENTS_TEST_HOOKS").is_none_or(|v| v != "1") {
            return 0;
        }
        worker::with(|w| match w {
            Some(w) => {
                crate::zone::ZoneLock::lock(&w.handle);
                1
            }
            None => 0,
        })
    })
}
