//! Small helpers shared by the nginx-facing code.

use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `f`, turning a panic into `fallback` (and an `[alert]` line), so that
/// no panic ever unwinds into nginx's C frames.
pub fn catch_unwind_or<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(e) => {
            let what = e
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| e.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            crate::wev_log!(ALERT, "internal error (panic): {}", what);
            fallback
        }
    }
}

/// True in a worker process (or with `master_process off`), false in the
/// master, the cache manager and the cache loader.
pub fn is_worker() -> bool {
    use ngx::ffi::{NGX_PROCESS_SINGLE, NGX_PROCESS_WORKER};
    // SAFETY: reading nginx's process type global.
    let p = unsafe { ngx::ffi::ngx_process } as u32;
    p == NGX_PROCESS_WORKER || p == NGX_PROCESS_SINGLE
}

/// Microseconds of CLOCK_MONOTONIC (shared by all processes of the host).
pub fn monotonic_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}
