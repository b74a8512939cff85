//! Descriptors read from nginx's event loop ([`read_connection`]), and
//! running something on the event loop's next turn: an event posted to
//! nginx's `ngx_posted_next_events` (nginx >= 1.17.5) runs after the next
//! `epoll_wait`, so whatever waits for it lets connections, signals and
//! timers be served first. A timer cannot promise that: a handler that
//! calls `ngx.update_time()` makes a 1 ms timer expire in the same pass.

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::ptr::addr_of_mut;

use std::io;

use ngx::ffi::{
    ngx_close_connection, ngx_connection_t, ngx_event_handler_pt, ngx_event_t, ngx_get_connection,
    ngx_handle_read_event, ngx_int_t, ngx_post_event, ngx_posted_next_events, NGX_OK,
};

/// Makes `fd` an nginx connection whose read event calls `handler`
/// (edge-triggered; `idle`: graceful shutdown calls it with `close` set).
/// nginx owns `fd` from here, also on failure (it is closed then).
pub fn read_connection(
    fd: libc::c_int,
    handler: ngx_event_handler_pt,
    idle: bool,
) -> io::Result<*mut ngx_connection_t> {
    let log = crate::ngx::log::cycle_log();
    // SAFETY: the event module is initialised in worker processes; nginx
    // takes ownership of `fd` with the connection.
    let c = unsafe { ngx_get_connection(fd, log) };
    if c.is_null() {
        // SAFETY: closing the caller's descriptor, given to us.
        unsafe { libc::close(fd) };
        return Err(io::Error::other("no free connection"));
    }
    // SAFETY: `c` is a fresh connection with valid read/write events.
    unsafe {
        (*c).set_idle(idle as u32);
        (*c).data = core::ptr::null_mut();
        let rev = (*c).read;
        (*rev).handler = handler;
        (*rev).log = log;
        (*(*c).write).log = log;
        if ngx_handle_read_event(rev, 0) != NGX_OK as ngx_int_t {
            ngx_close_connection(c);
            return Err(io::Error::other("cannot add it to the event loop"));
        }
    }
    Ok(c)
}

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
