//! Push delivery: waking consumers the moment an event is posted.
//!
//! Between workers: every worker owns one abstract unix datagram socket
//! with a random name (`ngx::socket`), in nginx's event loop; its slot in
//! each attached zone publishes the name and is marked "push". A poster
//! rings each other worker whose slot wake flag it flipped from 0 to 1:
//! with a `write` to that worker's eventfd when both were forked by the same
//! configuration cycle (`ngx::eventfd`: the slot publishes the group; one
//! `write` to the group's shared eventfd when there are several, once every
//! flag is set), else with a one-byte datagram (across a reload's
//! generations). The reader's
//! handler drains its eventfd or socket and posts the semaphore of every
//! consumer of the zones whose flag is set. The flag stays set
//! while the worker is awake: it is cleared only when every consumer of
//! the zone in that worker has drained the log ([`drained`]), which then
//! looks at the log once more. So a flood costs a reader that keeps up no
//! wake-up at all, and one that sleeps between posts one per sleep
//! (`ngx_http_lua_ffi_sema_post`,
//! or `ngx_stream_lua_ffi_sema_post` for a consumer in the stream
//! subsystem's Lua: each semaphore is posted by its own lua module).
//! At graceful shutdown nginx calls the handler with `close` set: every
//! loop wakes up to exit.
//!
//! Hostile local users: a datagram is only a doorbell. What wakes a
//! consumer is its flag in the zone, which only nginx's processes can write,
//! so datagrams from anyone else wake nothing; a flood costs batched
//! `recvmmsg` calls, and a poster whose datagram finds the queue full
//! leaves its flag set: the reader, busy draining, still sees it. Names are
//! random (128 bits, published only in the zone), so nobody can bind a
//! worker's name before it does, and no pid or address shows in
//! `/proc/net/unix`.
//!
//! Within a worker: a post wakes the other consumers of the same zone
//! directly. A consumer's `woken` flag coalesces wake-ups until it drains.
//!
//! `env NGX_WORKER_EVENTS_NO_PUSH=1;` in nginx.conf turns pushing off (to
//! measure or debug the interval-only mode).
//!
//! What it does not do: deliver anything. It only shortens the wait; the
//! `interval` loop stays as the safety net, and when any of this fails the
//! worker logs it once and falls back to that loop.

use ngx::ffi::ngx_event_t;

use crate::ngx::eventfd::{self, Watch};
use crate::ngx::lua_module::{self, SemaPost, Subsystem};
use crate::ngx::shm::ZoneHandle;
use crate::ngx::socket::{Listener, Sender};
use crate::ngx::timer::{self, Timer};
use crate::runtime::cell::ProcessCell;
use crate::runtime::state::{Sema, State, STATE};

#[derive(Default)]
struct Push {
    listener: Option<Listener>,
    /// The random name of `listener`.
    token: u128,
    /// This worker's eventfd doorbells: its own and its group's shared one
    /// (same-generation posters ring them).
    watches: Vec<Watch>,
    /// Its group (`ngx::eventfd`), 0: none; the group's eventfds by worker
    /// number, and the shared one (-1: none).
    group: u64,
    group_fds: Vec<core::ffi::c_int>,
    shared_fd: core::ffi::c_int,
    /// Same-generation targets of the post being woken (reused).
    to_ring: Vec<(core::ffi::c_int, usize)>,
    sender: Option<Sender>,
    /// http's semaphore post (push needs it: every worker has http Lua).
    sema_post: Option<SemaPost>,
    /// stream-lua's, looked up when a stream consumer first needs it.
    sema_post_stream: Option<SemaPost>,
    /// Listening was tried in this process (it is tried once).
    tried: bool,
    warned: bool,
    /// Handler runs in a row that found datagrams but no poster's flag.
    junk_streak: u32,
}

/// Junk handler runs in a row that make the socket pause, and for how long:
/// a flood then costs at most one drain per pause, and a real wake-up (its
/// flag is in the zone) waits at most that long.
const JUNK_STREAK: u32 = 16;
const PAUSE_MS: usize = 10;

static RESUME: Timer = Timer::new();

static PUSH: ProcessCell<Push> = ProcessCell::new();

fn address(token: u128) -> String {
    format!("ngx-worker-events/{token:032x}")
}

/// 128 random bits from the kernel (0 if it has none to give).
fn random_token() -> u128 {
    crate::ngx::random_bytes().map_or(0, u128::from_ne_bytes)
}

fn warn_once(p: &mut Push, what: core::fmt::Arguments) {
    if !p.warned {
        p.warned = true;
        crate::wev_log!(
            WARN,
            "push wake-ups unavailable ({}), falling back to the interval loop",
            what
        );
    }
}

/// Opens this worker's socket (once per process). True when push is on.
pub fn listen() -> bool {
    PUSH.with(|p| {
        if p.tried {
            return p.listener.is_some();
        }
        p.tried = true;
        p.sema_post = lua_module::sema_post(Subsystem::Http);
        if std::env::var_os("NGX_WORKER_EVENTS_NO_PUSH").is_some_and(|v| v == "1") {
            warn_once(p, format_args!("disabled by NGX_WORKER_EVENTS_NO_PUSH"));
            return false;
        }
        if p.sema_post.is_none() {
            warn_once(p, format_args!("ngx_http_lua_ffi_sema_post not found"));
            return false;
        }
        // A name taken already (by chance, or by someone guessing) gets another.
        let mut last = None;
        for _ in 0..3 {
            let token = random_token();
            if token == 0 {
                last = Some(std::io::Error::other("no random bytes for a socket name"));
                break;
            }
            match Listener::open(&address(token), Some(on_readable)) {
                Ok(l) => {
                    p.listener = Some(l);
                    p.token = token;
                    watch_eventfd(p);
                    return true;
                }
                Err(e) => last = Some(e),
            }
        }
        if let Some(e) = last {
            warn_once(p, format_args!("{e}"));
        }
        false
    })
    .unwrap_or(false)
}

/// Watches this worker's eventfd of its generation's group and the group's
/// shared one, when there is a group: posters of the same generation ring
/// them (a `write`, cheaper and quicker to wake than a datagram); the others
/// keep sending datagrams.
fn watch_eventfd(p: &mut Push) {
    p.shared_fd = -1;
    let Some(worker) = crate::ngx::process::NgxProcess::current().worker_number() else {
        return;
    };
    let Some((group, fds, shared)) = eventfd::lookup(worker) else {
        return;
    };
    let watches = [(fds[worker], true), (shared, false)]
        .into_iter()
        .map(|(fd, consume)| Watch::open(fd, Some(on_eventfd), consume))
        .collect::<Result<Vec<_>, _>>();
    match watches {
        Ok(w) => {
            p.watches = w;
            p.group = group;
            p.group_fds = fds;
            p.shared_fd = shared;
        }
        Err(e) => crate::wev_log!(
            WARN,
            "eventfd wake-ups unavailable ({}), using datagrams",
            e
        ),
    }
}

/// This worker's eventfd group (to publish in its slots; 0: none).
pub fn group() -> u64 {
    PUSH.with(|p| if p.watches.is_empty() { 0 } else { p.group })
        .unwrap_or(0)
}

/// True when this worker receives push wake-ups.
pub fn active() -> bool {
    PUSH.with(|p| p.listener.is_some()).unwrap_or(false)
}

/// The name of this worker's socket, to publish in its slots (0: none).
pub fn token() -> u128 {
    PUSH.with(|p| if p.listener.is_some() { p.token } else { 0 })
        .unwrap_or(0)
}

/// Stops receiving (worker exit, or shutdown started).
pub fn stop() {
    RESUME.cancel();
    let _ = PUSH.with(|p| {
        if let Some(l) = p.listener.take() {
            l.close();
        }
        for w in p.watches.drain(..) {
            w.close();
        }
    });
}

/// End of a flood pause: listen again and look at the flags.
unsafe extern "C" fn on_resume(ev: *mut ngx_event_t) {
    crate::ngx::catch_unwind_or((), || {
        let _ = PUSH.with(|p| {
            if let Some(l) = p.listener.as_ref() {
                l.resume();
            }
        });
    });
    // SAFETY: nginx calls timer handlers with their event; `on_readable`
    // catches its own panics.
    unsafe { on_readable(ev) };
}

/// The semaphore post function of `subsystem` (None: that lua module is
/// not in this nginx).
fn poster(p: &mut Push, subsystem: Subsystem) -> Option<SemaPost> {
    let slot = match subsystem {
        Subsystem::Http => &mut p.sema_post,
        Subsystem::Stream => &mut p.sema_post_stream,
    };
    if slot.is_none() {
        *slot = lua_module::sema_post(subsystem);
    }
    *slot
}

/// True when semaphores of `subsystem` can be posted from here.
pub fn can_post(subsystem: Subsystem) -> bool {
    PUSH.with(|p| poster(p, subsystem).is_some())
        .unwrap_or(false)
}

/// Posts `sema` (a live `ngx_{http,stream}_lua_sema_t`) once, with its
/// subsystem's lua module.
fn post_sema(sema: Sema) {
    let Ok(Some(post)) = PUSH.with(|p| poster(p, sema.subsystem)) else {
        return;
    };
    if !sema.ptr.is_null() {
        // SAFETY: the Lua side keeps the semaphore alive while it is
        // registered with its consumer (see `exports::ngx_worker_events_set_sema`),
        // it is of the subsystem whose function we call, and we run on the
        // event loop.
        unsafe { post(sema.ptr, 1) };
    }
}

/// Posts `sema` (a live `ngx_{http,stream}_lua_sema_t`) on the event loop's next
/// turn, after nginx polled for I/O: a dispatch loop that waits for it
/// between two batches lets requests, signals and timers run, even when its
/// handlers call `ngx.update_time()`.
pub fn next_turn(sema: Sema) {
    let _ = STATE.with(|st| {
        if !st.next_turn_semas.contains(&sema) {
            st.next_turn_semas.push(sema);
        }
    });
    // SAFETY: on the event-loop thread (called from Lua); the handler takes
    // its semaphores from the state, so `data` is unused.
    unsafe { crate::ngx::event::post(on_next_turn, core::ptr::null_mut()) };
}

unsafe extern "C" fn on_next_turn(_ev: *mut ngx_event_t) {
    crate::ngx::catch_unwind_or((), || {
        let semas = STATE
            .with(|st| core::mem::take(&mut st.next_turn_semas))
            .unwrap_or_default();
        for sema in semas {
            post_sema(sema);
        }
    });
}

/// Wakes the consumers of `zone` in this process, except `except` (an
/// index), unless they were woken and have not drained since; `all` wakes
/// even those (shutdown).
pub fn wake_local(st: &mut State, zone: usize, except: Option<usize>, all: bool) {
    for (i, c) in st.consumers.iter_mut().enumerate() {
        let Some(c) = c else { continue };
        if c.zone != zone || Some(i) == except || (c.woken && !all) || c.sema.is_null() {
            continue;
        }
        c.woken = true;
        post_sema(c.sema());
    }
}

/// A consumer of zone `z` (an index) was woken and has drained the log, or
/// stopped waiting: when no consumer of that zone in this process is still
/// woken, clears this worker's wake flag so that the next post from another
/// worker sends a wake-up, then looks at the log again for every sleeping
/// consumer: a post that saw the flag still set sent nothing (the fences
/// in `Zone::to_wake` and `Slots::take_wake` pair up, so either it sent or
/// its record is seen here).
pub fn drained(st: &mut State, z: usize) {
    let awake = st
        .consumers
        .iter()
        .flatten()
        .any(|c| c.zone == z && c.woken && !c.sema.is_null());
    let Some((slot, zone)) = st.zones.get(z).and_then(|a| Some((a.slot?, a.handle.zone))) else {
        return;
    };
    let slots = zone.slots();
    if awake || !slots.wake_set(slot) || !slots.take_wake(slot) {
        return;
    }
    let ring = zone.ring();
    for c in st.consumers.iter_mut().flatten() {
        if c.zone == z && !c.woken && !c.sema.is_null() && ring.has_pending(&c.cursor) {
            c.woken = true;
            post_sema(c.sema());
        }
    }
}

/// Consumer `id` found the log empty: if it had been woken, it has drained
/// (see [`drained`]).
pub fn found_empty(st: &mut State, id: u32) {
    let Some(c) = st.consumer(id) else { return };
    if core::mem::take(&mut c.woken) {
        let z = c.zone;
        drained(st, z);
    }
}

/// Wakes the consumers of every zone whose wake flag for this worker is
/// set (`closing`: of every zone, and the shutdown semaphores); true if any
/// flag was set. `rang`: a doorbell did ring (counted as a wake-up).
fn wake_flagged(rang: bool, closing: bool) -> bool {
    let mut any = false;
    let _ = STATE.with(|st| {
        for z in 0..st.zones.len() {
            // Only a poster sets the flag before ringing: a datagram from
            // anyone else costs a recv, not a wake-up.
            let flagged = st.zones[z].slot.is_some_and(|s| {
                let slots = st.zones[z].handle.zone.slots();
                let set = slots.wake_set(s);
                if set && rang {
                    slots.count(s, crate::zone::slots::SlotCounter::Wakeups, 1);
                }
                set
            });
            if closing || flagged {
                any = true;
                wake_local(st, z, None, closing);
            }
        }
        if closing {
            for sema in core::mem::take(&mut st.shutdown_semas) {
                post_sema(sema);
            }
        }
    });
    any
}

/// Read handler of the worker's eventfds (its own and the shared one).
unsafe extern "C" fn on_eventfd(ev: *mut ngx_event_t) {
    crate::ngx::catch_unwind_or((), || {
        let _ = PUSH.with(|p| {
            if let Some(w) = p.watches.iter().find(|w| w.is(ev)) {
                w.drain();
            }
        });
        // Only nginx's processes hold these eventfds: this is a ring (the
        // shared one's counter is never reset, so it says nothing).
        wake_flagged(true, false);
    });
}

/// Read handler of the worker's socket.
unsafe extern "C" fn on_readable(_ev: *mut ngx_event_t) {
    crate::ngx::catch_unwind_or((), || {
        let (read, closing) = PUSH
            .with(|p| p.listener.as_ref().map_or((0, true), |l| l.drain()))
            .unwrap_or((0, true));
        let any = wake_flagged(read > 0, closing);
        if !closing {
            let _ = PUSH.with(|p| {
                p.junk_streak = if any || read == 0 {
                    0
                } else {
                    p.junk_streak + 1
                };
                if p.junk_streak >= JUNK_STREAK {
                    // A flood: stop listening for a moment.
                    p.junk_streak = 0;
                    if let Some(l) = p.listener.as_ref() {
                        l.pause();
                        // SAFETY: the listener's connection lives until
                        // `stop`, which cancels this timer first.
                        unsafe { RESUME.arm(PAUSE_MS, on_resume, l.connection()) };
                    }
                }
            });
        }
        if closing {
            // Graceful shutdown: stop receiving; the loops exit on wake-up.
            stop();
            timer::kick_event_loop();
        }
    });
}

/// Wakes the other push-enabled workers of `handle`'s zone (`slot`: ours).
pub fn wake_others(handle: &ZoneHandle, slot: Option<usize>) {
    let _ = PUSH.with(|p| {
        if p.sender.is_none() {
            p.sender = Sender::new().ok();
        }
        // Borrowed field by field: the reused list is not moved out and
        // back on every post.
        let Push {
            to_ring,
            sender,
            group,
            group_fds,
            shared_fd,
            ..
        } = p;
        let Some(sender) = sender.as_ref() else {
            return;
        };
        to_ring.clear();
        let slots = handle.zone.slots();
        let mut sent = 0;
        let me = crate::ngx::process::NgxProcess::current().worker_number();
        handle.zone.to_wake(slot, |idx, _pid| {
            sent += 1;
            // Same generation: rung below, once every target's flag is set
            // (not our own number: that slot is a dead predecessor's).
            let (g, worker) = slots.group(idx);
            let fd = usize::try_from(worker)
                .ok()
                .filter(|&w| g == *group && g != 0 && Some(w) != me)
                .and_then(|w| group_fds.get(w).copied());
            if let Some(fd) = fd {
                to_ring.push((fd, idx));
                return;
            }
            if let Err(e) = sender.send(&address(slots.token(idx))) {
                match e.raw_os_error() {
                    // Its queue is full: it has datagrams to drain, so it
                    // runs its handler and sees the flag we set. Keep it.
                    Some(libc::EAGAIN) => {}
                    // Nobody listens at that name any more (the worker died
                    // without freeing its slot): stop pushing to it.
                    Some(libc::ECONNREFUSED) => {
                        slots.set_push(idx, false);
                        slots.reset_wake(idx);
                    }
                    // Otherwise a later post retries.
                    _ => slots.reset_wake(idx),
                }
            }
        });
        // A worker the shared eventfd wakes looks at its flag at once: ring
        // it only now that every flag is set.
        if to_ring.len() >= 2 && *shared_fd >= 0 {
            // cannot fail short of 2^64 rings
            let _ = eventfd::ring(*shared_fd);
        } else {
            for &(fd, idx) in to_ring.iter() {
                if eventfd::ring(fd).is_err() {
                    // cannot happen short of 2^64 rings: a later post retries
                    slots.reset_wake(idx);
                }
            }
        }
        if sent != 0 {
            let h = handle.zone.header();
            h.wakeups_sent
                .fetch_add(sent, core::sync::atomic::Ordering::Relaxed);
        }
    });
}
