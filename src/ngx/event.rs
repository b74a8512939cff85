//! Running something on the event loop's next turn: an event posted to
//! nginx's `ngx_posted_next_events` (nginx >= 1.17.5) runs after the next
//! `epoll_wait`, so whatever waits for it lets connections, signals and
//! timers be served first. A timer cannot promise that: a handler that
//! calls `ngx.update_time()` makes a 1 ms timer expire in the same pass.

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::ptr::addr_of_mut;

use ngx::ffi::{ngx_event_t, ngx_post_event, ngx_posted_next_events};

struct Event(UnsafeCell<ngx_event_t>);
// SAFETY: touched only from the nginx event-loop thread of each process.
unsafe impl Sync for Event {}

// SAFETY: an all-zero ngx_event_t is a valid idle event.
static NEXT: Event = Event(UnsafeCell::new(unsafe { core::mem::zeroed() }));

/// Posts the next-turn event with `handler` (one pending post at a time:
/// a second call before it ran changes nothing but the handler).
///
/// # Safety
/// Call on the event-loop thread; `data` must stay valid until the handler ran.
pub unsafe fn post(handler: unsafe extern "C" fn(*mut ngx_event_t), data: *mut c_void) {
    let ev = NEXT.0.get();
    // SAFETY: our static event, on the event-loop thread; the queue is
    // nginx's, which only this thread touches. ngx_post_event does nothing
    // when the event is already posted.
    unsafe {
        (*ev).handler = Some(handler);
        (*ev).data = data;
        (*ev).log = crate::ngx::log::cycle_log();
        ngx_post_event(ev, addr_of_mut!(ngx_posted_next_events));
    }
}
