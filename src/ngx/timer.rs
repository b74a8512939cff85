//! Cancelable native timers.
//!
//! nginx's timers need `ev.log` and `cancelable` set, and must not be
//! re-armed once the worker is exiting, or they hold it alive at shutdown.
//! They also need `ev.data` to point at a connection: a `--with-debug`
//! nginx (Debian's) logs `event timer add/del: <fd>` by reading
//! `((ngx_connection_t *) ev->data)->fd` at `error_log ... debug`.

use core::cell::UnsafeCell;
use core::ffi::c_void;

use ngx::ffi::{ngx_add_timer, ngx_connection_t, ngx_del_timer, ngx_event_t};

/// The stand-in connection the kick's `data` points at (fd -1, as nginx's
/// own timer-only events use).
struct Dummy(UnsafeCell<ngx_connection_t>);
// SAFETY: touched only from the nginx event-loop thread of each process.
unsafe impl Sync for Dummy {}

// SAFETY: an all-zero ngx_connection_t is plain data nobody dereferences
// beyond its `fd` (set to -1 before use).
static DUMMY: Dummy = Dummy(UnsafeCell::new(unsafe { core::mem::zeroed() }));

static KICK: Timer = Timer::new();

/// The stand-in connection for a [`Timer`]'s `data` (fd -1), valid for the
/// process' life.
pub fn stand_in() -> *mut ngx_connection_t {
    let dummy = DUMMY.0.get();
    // SAFETY: our static, touched only on the event-loop thread.
    unsafe { (*dummy).fd = -1 };
    dummy
}

unsafe extern "C" fn nothing(_ev: *mut ngx_event_t) {}

/// A 1 ms cancelable timer: makes the event loop turn (and run posted
/// events, such as a semaphore post) now instead of sleeping until its next
/// timer. Several kicks before it fires are one.
pub fn kick_event_loop() {
    // SAFETY: our static stand-in connection, used only on the event-loop
    // thread and alive for the process' life.
    unsafe { KICK.arm(1, nothing, stand_in()) }
}

/// A one-shot cancelable timer in a static: `arm` it with a handler and
/// the connection its event's `data` points at (see the module doc).
pub struct Timer(UnsafeCell<ngx_event_t>);
// SAFETY: touched only from the nginx event-loop thread of each process.
unsafe impl Sync for Timer {}

impl Default for Timer {
    fn default() -> Self {
        Timer::new()
    }
}

impl Timer {
    /// An idle timer.
    pub const fn new() -> Timer {
        // SAFETY: an all-zero ngx_event_t is a valid idle event.
        Timer(UnsafeCell::new(unsafe { core::mem::zeroed() }))
    }

    /// Fires `handler` in `ms` milliseconds (unless already armed).
    ///
    /// # Safety
    /// `conn` must stay a valid connection until the timer fires or is
    /// cancelled; call on the event-loop thread.
    pub unsafe fn arm(
        &'static self,
        ms: usize,
        handler: unsafe extern "C" fn(*mut ngx_event_t),
        conn: *mut ngx_connection_t,
    ) {
        let ev = self.0.get();
        // SAFETY: our static event on the event-loop thread; cancelable, so
        // it never delays worker exit; `conn` per the contract.
        unsafe {
            if (*ev).timer_set() != 0 {
                return;
            }
            (*ev).data = conn as *mut c_void;
            (*ev).handler = Some(handler);
            (*ev).log = crate::ngx::log::cycle_log();
            (*ev).set_cancelable(1);
            ngx_add_timer(ev, ms as _);
        }
    }

    /// Disarms it if armed.
    pub fn cancel(&'static self) {
        let ev = self.0.get();
        // SAFETY: our static event on the event-loop thread.
        unsafe {
            if (*ev).timer_set() != 0 {
                ngx_del_timer(ev);
            }
        }
    }
}
