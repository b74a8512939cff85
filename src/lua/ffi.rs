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
    worker::with(|w| w.is_some_and(|w| w.handle.zone.has_pending(&w.cursor))) as libc::c_int
}
