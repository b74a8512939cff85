//! `resty.worker.manager`'s native side: which zone and slot this worker's
//! lifecycle is tracked in, its heartbeat timer, and the lifecycle steps on
//! the zone's slots (start, leave, reap crashed workers, spot hung ones).
//!
//! Everything that decides a count runs under the zone lock, so concurrent
//! starts see `n_mine` 1, 2, 3, ... and exactly one exiting worker sees
//! itself last. Lua callbacks never run here: the caller gets the counts
//! and runs them after the lock is released. Crashes, hangs and recoveries
//! become events on the bus (source [`SOURCE`]), posted by the one worker
//! that noticed.
//!
//! Subsystems: the lifecycle is the worker process's, tracked once (one
//! slot, one heartbeat). When both the http and the stream subsystem's Lua
//! use the API, the second to start gets the first's counts, and each gets
//! the exit counts once: each subsystem runs its own callbacks with the
//! same numbers.

use core::sync::atomic::Ordering;

use crate::ngx::lua_module::Subsystem;
use crate::ngx::process::{self, NgxProcess};
use crate::ngx::shm::ZoneHandle;
use crate::ngx::timer::{self, Timer};
use crate::ngx::{monotonic_us, wall_ms};
use crate::runtime::cell::ProcessCell;
use crate::runtime::notify;
use crate::runtime::resolve::AttachError;
use crate::runtime::state::STATE;
use crate::runtime::{attach, post};
use crate::wire::payload::Encoder;
use crate::zone::layout::Header;
use crate::zone::manager::{counts, Counts};
use crate::zone::slots::{SlotOwner, SlotState};
use crate::zone::Guard;

/// The source of the manager's events.
pub const SOURCE: &[u8] = b"resty-worker-manager";

/// The heartbeat timer ticks at least this often (a crash is reported
/// within two ticks even when nothing respawns the worker).
const MAX_TICK_MS: u64 = 500;

/// This worker's manager.
#[derive(Clone)]
struct Tracked {
    zone: usize,
    handle: ZoneHandle,
    slot: usize,
    generation: u64,
    tick_ms: u64,
    /// A heartbeat older than this is overdue (`interval + failed`).
    overdue_ms: u64,
    left: bool,
    /// The zone's name (for messages).
    zone_name: String,
    /// What the start found (a second subsystem's start gets it too).
    started: Started,
    /// The subsystems that started, and those that got the exit counts.
    started_in: [bool; 2],
    left_in: [bool; 2],
    /// The counts at exit (with this worker still included).
    left_counts: Option<Counts>,
}

fn index(subsystem: Subsystem) -> usize {
    match subsystem {
        Subsystem::Http => 0,
        Subsystem::Stream => 1,
    }
}

impl Tracked {
    /// The newest generation that started.
    fn newest(&self) -> u64 {
        newest(self.handle.zone.header())
    }
}

/// The newest generation that started: its first managed worker ran, or
/// nginx committed its cycle (its workers may not have reached
/// `init_worker_by_lua` yet: nginx signals the old ones 100 ms after the fork).
fn newest(hdr: &Header) -> u64 {
    hdr.managed_generation
        .load(Ordering::Acquire)
        .max(hdr.committed_generation.load(Ordering::Acquire))
}

static TRACKED: ProcessCell<Option<Tracked>> = ProcessCell::new();
static TICK: Timer = Timer::new();

/// Why the manager could not start.
#[derive(Debug)]
pub enum ManagerError {
    Attach(AttachError),
    /// Every slot of the zone is taken.
    NoSlot(String),
    AlreadyStarted,
    /// The other subsystem tracks this worker in another zone.
    OtherZone(String),
    Reentered,
}

impl core::fmt::Display for ManagerError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ManagerError::Attach(e) => e.fmt(f),
            ManagerError::NoSlot(zone) => write!(
                f,
                "zone \"{zone}\" has no free worker slot: this worker's lifecycle cannot be tracked"
            ),
            ManagerError::AlreadyStarted => f.write_str("already started in this worker"),
            ManagerError::OtherZone(zone) => write!(
                f,
                "this worker's lifecycle is tracked in zone \"{zone}\" already (by the other subsystem's Lua): use the same shm in both"
            ),
            ManagerError::Reentered => f.write_str("internal error: busy"),
        }
    }
}

/// What a worker's start found.
#[derive(Clone)]
pub struct Started {
    pub generation: u64,
    /// When the generation started (wall ms).
    pub generation_ms: u64,
    /// This worker is its generation's first: the "master start" is its to run,
    /// with these counts.
    pub master: Option<Counts>,
    /// The counts for the worker start (this worker included).
    pub worker: Counts,
}

/// The start of a second subsystem in a tracked worker: the first's counts.
fn start_again(
    t: &mut Tracked,
    zone: usize,
    subsystem: Subsystem,
) -> Result<Started, ManagerError> {
    if t.started_in[index(subsystem)] {
        return Err(ManagerError::AlreadyStarted);
    }
    if t.zone != zone {
        return Err(ManagerError::OtherZone(t.zone_name.clone()));
    }
    t.started_in[index(subsystem)] = true;
    Ok(t.started.clone())
}

/// Starts tracking this worker in zone `name` ("" for the default zone),
/// for `subsystem`'s Lua (see the file's doc for two subsystems).
pub fn start(
    name: &str,
    interval_ms: u64,
    failed_ms: u64,
    subsystem: Subsystem,
) -> Result<Started, ManagerError> {
    let (zone, handle, slot) = attach::attach_named(name).map_err(ManagerError::Attach)?;
    if let Ok(Some(again)) = TRACKED.with(|t| t.as_mut().map(|t| start_again(t, zone, subsystem))) {
        return again;
    }
    let slot = slot.ok_or_else(|| ManagerError::NoSlot(name.to_string()))?;
    let generation = handle.generation;
    let slots = handle.zone.slots();
    let hdr = handle.zone.header();
    let started = {
        let _g = Guard::new(&handle);
        let first = hdr
            .managed_generation
            .fetch_max(generation, Ordering::AcqRel)
            < generation;
        if first {
            hdr.managed_generation_ms
                .store(wall_ms(), Ordering::Release);
        }
        let newest = newest(hdr);
        let master = first.then(|| {
            let c = counts(&slots.owners(), generation, newest);
            // the library's master start: no worker of its own yet, no next
            Counts {
                prev: c.prev,
                mine: 0,
                next: None,
            }
        });
        slots.beat(slot, monotonic_us() / 1000);
        let worker = counts(&slots.owners(), generation, newest);
        Started {
            generation,
            generation_ms: hdr.managed_generation_ms.load(Ordering::Acquire),
            master,
            worker,
        }
    };
    let interval = interval_ms.max(1);
    let tracked = Tracked {
        zone,
        handle,
        slot,
        generation,
        tick_ms: interval.min(MAX_TICK_MS),
        overdue_ms: interval.saturating_add(failed_ms),
        left: false,
        zone_name: STATE
            .with(|st| st.zones.get(zone).map(|a| a.name.clone()))
            .ok()
            .flatten()
            .unwrap_or_default(),
        started: started.clone(),
        started_in: [false; 2],
        left_in: [false; 2],
        left_counts: None,
    };
    let mut tracked = tracked;
    tracked.started_in[index(subsystem)] = true;
    let tick_ms = tracked.tick_ms;
    TRACKED
        .with(|t| *t = Some(tracked))
        .map_err(|_| ManagerError::Reentered)?;
    arm(tick_ms);
    Ok(started)
}

fn tracked() -> Option<Tracked> {
    TRACKED.with(|t| t.clone()).ok().flatten()
}

/// This worker leaves its generation (it is exiting): the counts with it
/// still included, `None` when not tracked or already left for `subsystem`
/// (a second subsystem gets the counts the first one got). The caller runs
/// the worker exit, and the master exit when `mine == 1`.
pub fn leave(subsystem: Subsystem) -> Option<(u64, Counts)> {
    let t = tracked().filter(|t| t.started_in[index(subsystem)] && !t.left_in[index(subsystem)])?;
    let _ = TRACKED.with(|c| {
        if let Some(c) = c {
            c.left_in[index(subsystem)] = true;
        }
    });
    if let Some(c) = t.left_counts.filter(|_| t.left) {
        return Some((t.generation, c));
    }
    TICK.cancel();
    // a worker that died (and, nginx stopping, was not replaced) must not
    // keep the last live one from seeing itself last
    reap();
    let _ = TRACKED.with(|c| {
        if let Some(c) = c {
            c.left = true;
        }
    });
    let slots = t.handle.zone.slots();
    let _g = Guard::new(&t.handle);
    let newest = t.newest();
    let c = counts(&slots.owners(), t.generation, newest);
    slots.set_exiting(t.slot, process::pid());
    let _ = TRACKED.with(|tr| {
        if let Some(tr) = tr {
            tr.left_counts = Some(c);
        }
    });
    Some((t.generation, c))
}

/// The counts for `generation` now (`None` when not tracked).
pub fn counts_for(generation: u64) -> Option<Counts> {
    let t = tracked()?;
    let newest = t.newest();
    Some(counts(&t.handle.zone.slots().owners(), generation, newest))
}

/// The tracked workers of the zone (`None` when not tracked).
pub fn workers() -> Option<Vec<SlotOwner>> {
    let t = tracked()?;
    Some(
        t.handle
            .zone
            .slots()
            .owners()
            .into_iter()
            .filter(|o| o.managed())
            .collect(),
    )
}

/// Reports every worker that died without leaving (a `crashed` event each,
/// from this worker) and frees its slot. Returns how many.
pub fn reap() -> usize {
    let Some(t) = tracked() else { return 0 };
    let gone = t.handle.zone.slots().reap(&t.handle, process::alive);
    let newest = t.newest();
    let owners = t.handle.zone.slots().owners();
    for o in gone
        .iter()
        .filter(|o| o.managed() && o.state != SlotState::Exiting)
    {
        let crashes = &t.handle.zone.header().crashes;
        crashes.fetch_add(1, Ordering::Relaxed);
        crate::wev_log!(
            ERR,
            "resty.worker.manager: worker with id '{}-{}' (ngx.worker.id() {}) died without exiting",
            o.generation,
            o.pid,
            o.worker
        );
        // an older generation's last worker crashed: its generation is over
        let c = counts(&owners, o.generation, newest);
        let last = c.mine == 0 && o.generation < newest;
        post(&t, b"crashed", o, last);
    }
    gone.len()
}

/// The heartbeat: stamp ours, recover if we were reported hung, reap the
/// dead, report the overdue.
fn tick() {
    let Some(t) = tracked().filter(|t| !t.left) else {
        return;
    };
    let slots = t.handle.zone.slots();
    let now = monotonic_us() / 1000;
    let me = process::pid();
    slots.beat(t.slot, now);
    if slots.change_state(t.slot, me, SlotState::Unresponsive, SlotState::Running) {
        if let Some(o) = slots.owners().into_iter().find(|o| o.pid == me) {
            post(&t, b"recovered", &o, false);
        }
    }
    reap();
    for o in slots.owners() {
        let overdue = now.saturating_sub(o.beat_ms) > t.overdue_ms;
        if o.pid != me
            && o.managed()
            && o.state == SlotState::Running
            && overdue
            && process::alive(o.pid)
            && slots.change_state(o.slot, o.pid, SlotState::Running, SlotState::Unresponsive)
        {
            let n = &t.handle.zone.header().unresponsive;
            n.fetch_add(1, Ordering::Relaxed);
            post(&t, b"unresponsive", &o, false);
        }
    }
}

/// Posts a lifecycle event about `who`: data `{ pid, id, worker,
/// generation, by, last }` (`id` as the library's worker ids: "gen-pid").
fn post(t: &Tracked, event: &[u8], who: &SlotOwner, last: bool) {
    let mut e = Encoder::new();
    e.table(0, 6);
    let id = format!("{}-{}", who.generation, who.pid);
    for (k, v) in [
        (&b"pid"[..], i64::from(who.pid)),
        (b"worker", i64::from(who.worker)),
        (b"generation", who.generation as i64),
        (b"by", i64::from(process::pid())),
    ] {
        e.string(k);
        e.int(v);
    }
    e.string(b"id");
    e.string(id.as_bytes());
    e.string(b"last");
    e.boolean(last);
    let appended = t.handle.zone.ring().append(
        &t.handle,
        post::origin(false),
        SOURCE,
        event,
        None,
        e.as_bytes(),
    );
    match appended {
        Ok(_) => {
            let _ = STATE.with(|st| notify::wake_local(st, t.zone, None, false));
            notify::wake_others(&t.handle, Some(t.slot));
        }
        Err(err) => crate::wev_log!(
            ERR,
            "failed posting lifecycle event \"{}\": {}",
            String::from_utf8_lossy(event),
            err
        ),
    }
}

fn arm(ms: u64) {
    // SAFETY: the stand-in connection lives for the process; we are on the
    // event-loop thread (Lua, or the timer's own handler).
    unsafe { TICK.arm(ms as usize, on_tick, timer::stand_in()) }
}

unsafe extern "C" fn on_tick(_ev: *mut ngx::ffi::ngx_event_t) {
    crate::ngx::catch_unwind_or((), || {
        tick();
        // SAFETY: nginx globals, read on the event-loop thread.
        let exiting = unsafe { ngx::ffi::ngx_exiting != 0 || ngx::ffi::ngx_terminate != 0 };
        if let Some(t) = tracked().filter(|t| !t.left && !exiting) {
            arm(t.tick_ms);
        }
    });
}

/// `exit_process`: stop the heartbeat.
pub fn on_worker_exit() {
    if NgxProcess::current().serves_requests() {
        TICK.cancel();
    }
}
