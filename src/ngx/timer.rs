//! Cancelable native timers.
//!
//! nginx's timers need `ev.log` and `cancelable` set, and must not be
//! re-armed once the worker is exiting, or they hold it alive at shutdown.

use core::cell::UnsafeCell;

use ngx::ffi::{ngx_add_timer, ngx_event_t};

struct Kick(UnsafeCell<ngx_event_t>);
// SAFETY: touched only from the nginx event-loop thread of each process.
unsafe impl Sync for Kick {}

// SAFETY: an all-zero ngx_event_t is a valid idle event.
static KICK: Kick = Kick(UnsafeCell::new(unsafe { core::mem::zeroed() }));

unsafe extern "C" fn nothing(_ev: *mut ngx_event_t) {}

/// A 1 ms cancelable timer: makes the event loop turn (and run posted
/// events, such as a semaphore post) now instead of sleeping until its next
/// timer. Several kicks before it fires are one.
pub fn kick_event_loop() {
    let ev = KICK.0.get();
    // SAFETY:
    // - our static event, used only on the event-loop thread;
    // - nginx's timer tree holds it only until it fires (1 ms), and it is
    //   cancelable, so it never delays worker exit.
    unsafe {
        if (*ev).timer_set() != 0 {
            return;
        }
        (*ev).handler = Some(nothing);
        (*ev).log = crate::ngx::log::cycle_log();
        (*ev).set_cancelable(1);
        ngx_add_timer(ev, 1);
    }
}
