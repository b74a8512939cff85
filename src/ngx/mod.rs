//! Thin nginx edges, no policy: what kind of process this is, the error
//! log, the shared zones and their lock, an abstract unix datagram socket in
//! the event loop, a cancelable timer, and the C functions lua-nginx-module
//! exports, the clocks. Nothing here knows about consumers, Lua APIs or events.

pub mod clock;
pub mod event;
pub mod eventfd;
pub mod log;
pub mod lua_module;
pub mod process;
pub mod shm;
pub mod socket;
pub mod timer;

pub use clock::{monotonic_us, wall_ms};
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

/// `N` random bytes from the kernel, or `None` if it has none to give now
/// (never blocks).
pub fn random_bytes<const N: usize>() -> Option<[u8; N]> {
    let mut b = [0u8; N];
    // SAFETY: getrandom writes at most `b.len()` bytes into `b`.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), libc::GRND_NONBLOCK) };
    (n == N as isize).then_some(b)
}
