//! Push delivery: waking other workers the moment an event is posted.
//!
//! Every attached worker owns an abstract-namespace unix datagram socket
//! named after the zone and its pid, registered in nginx's event loop, and a
//! slot in the zone marked "push". A poster sends one byte to each other
//! worker whose slot wake flag it flipped from 0 to 1 (so a burst costs each
//! reader one wake-up); the reader's read handler drains the socket, clears
//! its flag and posts the Lua semaphore its dispatch loop waits on
//! (`ngx_http_lua_ffi_sema_post`). The connection is marked idle, so at
//! graceful shutdown nginx calls the handler with `close` set and the loop
//! wakes up to exit at once.
//!
//! `env NGX_WORKER_EVENTS_NO_PUSH=1;` in nginx.conf turns it off (to measure
//! or debug the interval-only mode).
//!
//! What it does not do: deliver anything. It only shortens the wait; the
//! `interval` loop stays as the safety net, and when any of this fails the
//! worker logs it once and falls back to that loop.

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::ptr;

use ngx::ffi::{
    ngx_close_connection, ngx_connection_t, ngx_event_t, ngx_get_connection, ngx_handle_read_event,
};

use crate::shm::ZoneHandle;
use crate::worker::pid;

type SemaPost = unsafe extern "C" fn(*mut c_void, libc::c_int) -> libc::c_int;

struct Notifier {
    pid: i32,
    slot: usize,
    handle: ZoneHandle,
    conn: *mut ngx_connection_t,
    sema: *mut c_void,
    sema_post: Option<SemaPost>,
}

struct State {
    notifier: Option<Notifier>,
    send_fd: libc::c_int,
    send_pid: i32,
    warned: bool,
}

struct Global(UnsafeCell<State>);
// SAFETY: touched only from the nginx event-loop thread of each process.
unsafe impl Sync for Global {}

static STATE: Global = Global(UnsafeCell::new(State {
    notifier: None,
    send_fd: -1,
    send_pid: 0,
    warned: false,
}));

fn state() -> &'static mut State {
    // SAFETY: single-threaded access; callers never hold two of these at once
    // across a call that could re-enter (none of our callers run Lua).
    unsafe { &mut *STATE.0.get() }
}

fn warn_once(what: core::fmt::Arguments) {
    let st = state();
    if !st.warned {
        st.warned = true;
        crate::wev_log!(
            WARN,
            "push wake-ups unavailable ({}), falling back to the interval loop",
            what
        );
    }
}

/// The socket address of `pid`'s notifier for the zone at `zone`.
fn address(zone: usize, pid: i32) -> (libc::sockaddr_un, libc::socklen_t) {
    // SAFETY: sockaddr_un is plain data; all-zero is valid.
    let mut sa: libc::sockaddr_un = unsafe { core::mem::zeroed() };
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let name = format!("ngx-worker-events/{zone:x}/{pid}");
    // sun_path[0] stays 0: abstract namespace (no file, gone with the socket).
    for (i, b) in name.bytes().enumerate() {
        sa.sun_path[i + 1] = b as libc::c_char;
    }
    let len = core::mem::size_of::<libc::sa_family_t>() + 1 + name.len();
    (sa, len as libc::socklen_t)
}

/// Sets up this worker's notifier for `handle`'s zone and marks its slot.
pub fn enable(handle: &ZoneHandle, slot: usize) {
    let st = state();
    if st.notifier.as_ref().is_some_and(|n| n.pid == pid()) {
        return;
    }
    st.notifier = None;
    if std::env::var_os("NGX_WORKER_EVENTS_NO_PUSH").is_some_and(|v| v == "1") {
        return warn_once(format_args!("disabled by NGX_WORKER_EVENTS_NO_PUSH"));
    }
    let zone = handle.zone.base() as usize;
    // SAFETY: plain socket syscalls on a descriptor we own.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return warn_once(format_args!("socket: {}", std::io::Error::last_os_error()));
    }
    let (sa, len) = address(zone, pid());
    // SAFETY: `sa` is a valid sockaddr_un of `len` bytes.
    if unsafe { libc::bind(fd, &sa as *const _ as *const libc::sockaddr, len) } != 0 {
        let e = std::io::Error::last_os_error();
        // SAFETY: closing our own descriptor.
        unsafe { libc::close(fd) };
        return warn_once(format_args!("bind: {e}"));
    }
    let log = crate::log::cycle_log();
    // SAFETY: the event module is initialised in worker processes; nginx
    // takes ownership of `fd` with the connection.
    let c = unsafe { ngx_get_connection(fd, log) };
    if c.is_null() {
        // SAFETY: closing our own descriptor.
        unsafe { libc::close(fd) };
        return warn_once(format_args!("no free connection"));
    }
    // SAFETY: `c` is a fresh connection with valid read/write events.
    unsafe {
        (*c).set_idle(1);
        (*c).data = ptr::null_mut();
        let rev = (*c).read;
        (*rev).handler = Some(on_readable);
        (*rev).log = log;
        (*(*c).write).log = log;
        if ngx_handle_read_event(rev, 0) != ngx::ffi::NGX_OK as ngx::ffi::ngx_int_t {
            ngx_close_connection(c);
            return warn_once(format_args!("cannot add the socket to the event loop"));
        }
    }
    let sym = crate::lua::lookup_symbol(c"ngx_http_lua_ffi_sema_post");
    // SAFETY: lua-nginx-module 0.10.x exports it with this signature.
    let sema_post =
        (!sym.is_null()).then(|| unsafe { core::mem::transmute::<*mut c_void, SemaPost>(sym) });
    st.notifier = Some(Notifier {
        pid: pid(),
        slot,
        handle: *handle,
        conn: c,
        sema: ptr::null_mut(),
        sema_post,
    });
    handle.zone.slot_set_push(slot, true);
}

/// Read handler: drain the socket, re-arm the wake flag, wake the Lua loop.
unsafe extern "C" fn on_readable(ev: *mut ngx_event_t) {
    crate::util::catch_unwind_or((), || {
        // SAFETY: nginx passes our connection's read event.
        let c = unsafe { (*ev).data as *mut ngx_connection_t };
        let mut buf = [0u8; 64];
        // SAFETY: reading into a local buffer from our own socket.
        while unsafe { libc::recv((*c).fd, buf.as_mut_ptr().cast(), buf.len(), 0) } > 0 {}
        let st = state();
        let Some(n) = st.notifier.as_ref() else {
            return;
        };
        // SAFETY: `c` is valid until closed below.
        let closing = unsafe { (*c).close() } != 0;
        // Only a poster sets the flag before sending: a datagram from anyone
        // else (the socket name is guessable) costs a recv, not a Lua wake-up.
        let from_poster = !closing && n.handle.zone.slot_take_wake(n.slot);
        if !closing {
            // SAFETY: re-arming our read event (required for level/edge modes alike).
            unsafe { ngx_handle_read_event(ev, 0) };
        }
        if closing || from_poster {
            post_sema(n);
        }
        if closing {
            // Graceful shutdown: stop receiving; the loop exits on wake-up.
            disable();
            kick_event_loop();
        }
    });
}

/// A 1 ms cancelable timer: makes the event loop turn (and run the posted
/// semaphore event) now instead of sleeping until its next timer.
fn kick_event_loop() {
    struct Kick(UnsafeCell<ngx_event_t>);
    // SAFETY: event-loop thread only.
    unsafe impl Sync for Kick {}
    // SAFETY: an all-zero ngx_event_t is a valid idle event.
    static KICK: Kick = Kick(UnsafeCell::new(unsafe { core::mem::zeroed() }));
    unsafe extern "C" fn nothing(_ev: *mut ngx_event_t) {}
    let ev = KICK.0.get();
    // SAFETY: our static event; nginx's timer tree holds it only until it
    // fires (1 ms) and it is cancelable, so it never delays worker exit.
    unsafe {
        if (*ev).timer_set() != 0 {
            return;
        }
        (*ev).handler = Some(nothing);
        (*ev).log = crate::log::cycle_log();
        (*ev).set_cancelable(1);
        ngx::ffi::ngx_add_timer(ev, 1);
    }
}

fn post_sema(n: &Notifier) {
    if let (Some(post), false) = (n.sema_post, n.sema.is_null()) {
        // SAFETY: the Lua side keeps the semaphore alive while it is registered
        // (see `ngx_worker_events_set_sema`), and we run on the event loop.
        unsafe { post(n.sema, 1) };
    }
}

/// Stops push delivery in this worker (exit, or shutdown started).
pub fn disable() {
    let st = state();
    if let Some(n) = st.notifier.take() {
        if n.pid == pid() {
            n.handle.zone.slot_set_push(n.slot, false);
            // SAFETY: our connection, still open.
            unsafe { ngx_close_connection(n.conn) };
        }
    }
}

/// Wakes the other push-enabled workers of `handle`'s zone.
pub fn wake_others(handle: &ZoneHandle, slot: Option<usize>) {
    let st = state();
    if st.send_pid != pid() {
        st.send_pid = pid();
        // SAFETY: creating a socket we own.
        st.send_fd = unsafe {
            libc::socket(
                libc::AF_UNIX,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
    }
    if st.send_fd < 0 {
        return;
    }
    let zone = handle.zone.base() as usize;
    let fd = st.send_fd;
    handle.zone.slots_to_wake(slot, |idx, to| {
        let (sa, len) = address(zone, to);
        // SAFETY: valid address and a one-byte local buffer.
        let sent = unsafe {
            libc::sendto(
                fd,
                b"!".as_ptr().cast(),
                1,
                libc::MSG_DONTWAIT,
                &sa as *const _ as *const libc::sockaddr,
                len,
            )
        };
        if sent != 1 {
            // Not sent. Nobody listens at that name any more (the worker died
            // without freeing its slot): stop pushing to it. Otherwise (its
            // queue is full): clear the flag we set, so a later post retries.
            let gone = std::io::Error::last_os_error().raw_os_error() == Some(libc::ECONNREFUSED);
            if gone {
                handle.zone.slot_set_push(idx, false);
            }
            handle.zone.slot_reset_wake(idx);
        }
    });
}

/// Registers the semaphore the Lua loop waits on (NULL to unregister).
/// Returns 1 when push wake-ups are active in this worker, else 0.
#[no_mangle]
pub extern "C" fn ngx_worker_events_set_sema(sema: *mut c_void) -> libc::c_int {
    crate::util::catch_unwind_or(0, || {
        let st = state();
        match st.notifier.as_mut() {
            Some(n) if n.pid == pid() && n.sema_post.is_some() => {
                n.sema = sema;
                1
            }
            _ => 0,
        }
    })
}
