//! Thin nginx edges, no policy: what kind of process this is, the error
//! log, the shared zones and their lock, an abstract unix datagram socket in
//! the event loop, a cancelable timer, and the C functions lua-nginx-module
//! exports. Nothing here knows about consumers, Lua APIs or events.

pub mod event;
pub mod eventfd;
pub mod log;
pub mod lua_module;
pub mod process;
pub mod shm;
pub mod socket;
pub mod timer;

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

/// Microseconds of clock `clock`.
fn clock_us(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; both clocks used here always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

/// Microseconds of CLOCK_MONOTONIC (shared by all processes of the host).
pub fn monotonic_us() -> u64 {
    clock_us(libc::CLOCK_MONOTONIC)
}

/// Milliseconds since the Unix epoch (CLOCK_REALTIME), for times shown to
/// people; intervals use [`monotonic_us`].
pub fn wall_ms() -> u64 {
    clock_us(libc::CLOCK_REALTIME) / 1000
}

/// `N` random bytes from the kernel, or `None` if it has none to give now
/// (never blocks).
pub fn random_bytes<const N: usize>() -> Option<[u8; N]> {
    let mut b = [0u8; N];
    // SAFETY: getrandom writes at most `b.len()` bytes into `b`.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), libc::GRND_NONBLOCK) };
    (n == N as isize).then_some(b)
}
