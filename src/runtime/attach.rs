//! Resolving zone names, attaching this process to zones, and consumers:
//! open, read, claim, close (posting: `runtime::post`, re-exported here).
//!
//! The default-zone rule (zero-config drop-in): a name that is one of our
//! zones is that zone. A name that is some other module's shared zone (a
//! `lua_shared_dict`, as lua-resty-worker-events code passes in
//! `configure{shm = ...}`) means the **default zone**: the only
//! `worker_events_zone` declared, or when none is declared, the module's
//! implicit one (see `conf`). The dict itself is left alone. The empty name
//! (an API given no zone, as resty.events code is) means the default zone
//! too. A name that is nothing fails.

use crate::ngx::process::{self, NgxProcess};
use crate::ngx::shm::{self, Lookup, ZoneHandle};
use crate::runtime::cell::Reentered;
use crate::runtime::counters;
use crate::runtime::notify;
use crate::runtime::post::KEEP_BUFFER;
pub use crate::runtime::post::{
    max_record, origin, post, put_encoder, take_encoder, ClusterPost, PostError, PostMode, Posted,
};
use crate::runtime::state::{Attachment, Consumer, ExitPost, State, STATE};
use crate::zone::record::RecordHeader;
use crate::zone::slots::SlotCounter;
use crate::zone::{ReadOutcome, ZoneStats};

/// Why a zone name could not be resolved or a consumer opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachError {
    /// No shared zone of that name.
    NotFound(String),
    /// A `lua_shared_dict` name, and several of our zones to choose from.
    Ambiguous {
        dict: String,
        zones: Vec<String>,
    },
    /// A `lua_shared_dict` name, and none of our zones (cannot happen while
    /// the implicit zone exists).
    NoDefault(String),
    /// Called in `init_by_lua*` (the master): zones there belong to a
    /// configuration that a reload replaces.
    InInit,
    /// Called in a process that takes no part: a helper (the privileged
    /// agent, where the caller did not ask for events, or a cache process).
    NotAWorker,
    Reentered,
}

impl core::fmt::Display for AttachError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AttachError::NotFound(name) => write!(f, "shm \"{name}\" not found"),
            AttachError::Ambiguous { dict, zones } if dict.is_empty() => write!(
                f,
                "no shm given and there is no single default worker_events_zone (declared: {}): pass one of them as shm",
                zones.join(", ")
            ),
            AttachError::Ambiguous { dict, zones } => write!(
                f,
                "shm \"{dict}\" is a lua_shared_dict and there is no single default worker_events_zone (declared: {}): pass one of them as shm",
                zones.join(", ")
            ),
            AttachError::NoDefault(dict) => write!(
                f,
                "shm \"{dict}\" is a lua_shared_dict and no worker_events_zone exists: declare one in http {{}} with: worker_events_zone {dict}_events 1m;"
            ),
            AttachError::InInit => f.write_str(
                "configure() is for worker processes (init_worker_by_lua* or later), not init_by_lua*",
            ),
            AttachError::NotAWorker => f.write_str(
                "not in a worker process: this is a helper process (the privileged agent takes events through resty.worker.events and resty.events only)",
            ),
            AttachError::Reentered => Reentered.fmt(f),
        }
    }
}

impl From<Reentered> for AttachError {
    fn from(_: Reentered) -> Self {
        AttachError::Reentered
    }
}

/// The zone `name` stands for (see the module doc), and whether it was a
/// `lua_shared_dict` name mapped to the default zone.
pub fn resolve(name: &str) -> Result<(String, ZoneHandle, bool), AttachError> {
    let lookup = if name.is_empty() {
        Lookup::Foreign
    } else {
        shm::lookup(name.as_bytes())
    };
    match lookup {
        Lookup::Ours(h) => Ok((name.to_string(), h, false)),
        Lookup::Missing => Err(AttachError::NotFound(name.to_string())),
        Lookup::Foreign => {
            let mut ours = shm::ours();
            match ours.len() {
                1 => {
                    let (zone, h) = ours.remove(0);
                    Ok((zone, h, true))
                }
                0 => Err(AttachError::NoDefault(name.to_string())),
                _ => Err(AttachError::Ambiguous {
                    dict: name.to_string(),
                    zones: ours.into_iter().map(|(n, _)| n).collect(),
                }),
            }
        }
    }
}

/// Index of zone `name` in `st.zones`, attaching (and taking a slot, in a
/// worker) on first use.
fn attachment(st: &mut State, name: &str, handle: ZoneHandle) -> usize {
    if let Some(i) = st.zones.iter().position(|a| a.name == name) {
        return i;
    }
    let slot = take_slot(&handle);
    if slot.is_none() && NgxProcess::current().worker_number().is_some() {
        crate::wev_log!(
            WARN,
            "zone \"{}\": no free worker slot, push wake-ups disabled in this worker until one frees",
            name
        );
    }
    st.zones.push(Attachment {
        name: name.to_string(),
        handle,
        slot,
        pending: Default::default(),
    });
    st.zones.len() - 1
}

/// Attaches to the zone `name` stands for (see the module doc) and returns
/// its index in the process' attachments, its handle and this worker's slot.
pub fn attach_named(name: &str) -> Result<(usize, ZoneHandle, Option<usize>), AttachError> {
    match NgxProcess::current() {
        k if k.serves_requests() => {}
        // the master runs Lua only in init_by_lua*
        NgxProcess::Master => return Err(AttachError::InInit),
        _ => return Err(AttachError::NotAWorker),
    }
    let (zone, handle, _) = resolve(name)?;
    STATE
        .with(|st| {
            let i = attachment(st, &zone, handle);
            (i, st.zones[i].handle, st.zones[i].slot)
        })
        .map_err(AttachError::from)
}

/// Takes a slot of `handle`'s zone for this worker (none outside workers:
/// the master must not hold one for its whole life), push-enabled when this
/// worker listens.
fn take_slot(handle: &ZoneHandle) -> Option<usize> {
    let worker = NgxProcess::current().worker_number()?;
    let slots = handle.zone.slots();
    let pid = process::pid();
    let slot = slots.acquire(
        handle,
        pid,
        worker as i32,
        handle.generation,
        crate::ngx::wall_ms(),
        process::alive,
    )?;
    if notify::listen() {
        slots.set_token(slot, notify::token());
        slots.set_push(slot, true);
    }
    Some(slot)
}

/// Attaches to zone `name` (worker start: lifecycle, before any Lua API).
pub fn attach_zone(name: &str, handle: ZoneHandle) -> Result<(), Reentered> {
    STATE.with(|st| {
        attachment(st, name, handle);
    })
}

/// A consumer just opened.
pub struct Opened {
    pub id: u32,
    /// The zone it reads (differs from the name asked for when that was a dict).
    pub zone: String,
}

/// Opens a consumer of the zone `name` stands for, reading from now on.
///
/// `in_init`: the caller runs in `init_by_lua*`. Only a process that serves
/// requests attaches: the master's zones belong to the configuration being
/// replaced (a resize reload unmaps them), and its slots would never free.
/// `agent`: the caller is OpenResty's privileged agent (a helper process
/// that runs `init_worker_by_lua*`): it attaches without a slot (no push
/// wake-ups: its loop, when it runs one, polls every interval); its posts
/// wake the workers as any post does.
pub fn open(name: &str, in_init: bool, agent: bool) -> Result<Opened, AttachError> {
    let kind = NgxProcess::current();
    if in_init {
        return Err(AttachError::InInit);
    }
    if !(kind.serves_requests() || (agent && kind == NgxProcess::Helper)) {
        return Err(AttachError::NotAWorker);
    }
    let (zone, handle, via_dict) = resolve(name)?;
    STATE.with(|st| {
        if via_dict && !name.is_empty() && !st.noticed.iter().any(|n| n == name) {
            st.noticed.push(name.to_string());
            crate::wev_log!(
                NOTICE,
                "shm \"{}\" is a lua_shared_dict: events go to worker_events_zone \"{}\" (for a dedicated zone, replace \"lua_shared_dict {} ...;\" with \"worker_events_zone {} <size>;\")",
                name,
                zone,
                name,
                name
            );
        }
        let z = attachment(st, &zone, handle);
        let cursor = handle.zone.ring().cursor_at_head(&handle);
        let c = Consumer {
            zone: z,
            cursor,
            sema: core::ptr::null_mut(),
            woken: false,
            lost: 0,
            last_posted_us: 0,
            bridge: false,
        };
        let i = match st.consumers.iter().position(Option::is_none) {
            Some(i) => {
                st.consumers[i] = Some(c);
                i
            }
            None => {
                st.consumers.push(Some(c));
                st.consumers.len() - 1
            }
        };
        Opened {
            id: i as u32 + 1,
            zone,
        }
    })
    .map_err(AttachError::from)
}

/// Closes consumer `id` (its cursor and semaphore are forgotten).
pub fn close(id: u32) {
    let _ = STATE.with(|st| {
        if let Some(c) = st.entry(id) {
            *c = None;
        }
    });
}

/// What one read for a consumer found.
pub enum Fetched {
    Empty,
    Lost(u64),
    /// A record, in a buffer lent out: give it back with [`put_buffer`].
    Record(RecordHeader, Vec<u8>),
}

/// Reads consumer `id`'s next record (Empty when not open).
pub fn fetch(id: u32) -> Fetched {
    STATE
        .with(|st| {
            let mut buf = core::mem::take(&mut st.buf);
            let Some(c) = st.consumer(id) else {
                st.buf = buf;
                return Fetched::Empty;
            };
            let (z, bridge) = (c.zone, c.bridge);
            let mut cursor = c.cursor;
            let a = &mut st.zones[z];
            let ring = a.handle.zone.ring();
            let outcome = loop {
                match ring.read_next(&a.handle, &mut cursor, &mut buf) {
                    // Held cluster records are the bridge's alone.
                    ReadOutcome::Record(rh) if rh.hold && !bridge => continue,
                    other => break other,
                }
            };
            if let Some(c) = st.consumer(id) {
                c.cursor = cursor;
                match outcome {
                    ReadOutcome::Empty => c.woken = false,
                    ReadOutcome::Lost(n) => c.lost += n,
                    ReadOutcome::Record(rh) => c.last_posted_us = rh.posted_us,
                }
            }
            match outcome {
                ReadOutcome::Record(rh) => {
                    let a = &mut st.zones[z];
                    a.pending.note(rh.posted_us, crate::ngx::monotonic_us());
                    if a.pending.delivered >= counters::FLUSH_EVERY {
                        counters::flush(st, z);
                    }
                    Fetched::Record(rh, buf)
                }
                ReadOutcome::Lost(n) => {
                    if let Some(s) = st.zones[z].slot {
                        st.zones[z]
                            .handle
                            .zone
                            .slots()
                            .count(s, SlotCounter::Lost, n);
                    }
                    counters::flush(st, z);
                    st.buf = buf;
                    Fetched::Lost(n)
                }
                ReadOutcome::Empty => {
                    counters::flush(st, z);
                    st.buf = buf;
                    Fetched::Empty
                }
            }
        })
        .unwrap_or(Fetched::Empty)
}

/// Returns the buffer lent by [`fetch`].
pub fn put_buffer(mut buf: Vec<u8>) {
    if buf.capacity() > KEEP_BUFFER {
        buf.clear();
        buf.shrink_to(KEEP_BUFFER);
    }
    let _ = STATE.with(|st| st.buf = buf);
}

/// True if records are waiting for consumer `id` (one atomic load).
pub fn pending(id: u32) -> bool {
    STATE
        .with(|st| {
            let (c, a) = st.reader(id)?;
            let pending = a.handle.zone.ring().has_pending(&c.cursor);
            if !pending {
                // Drained: the next post must wake it again.
                c.woken = false;
            }
            Some(pending)
        })
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// Registers the semaphore consumer `id`'s loop waits on (null to
/// unregister). True when push wake-ups reach this worker.
///
/// A worker that found its zone's slots all taken (e.g. by an old
/// generation during a big reload) tries again here: the loop calls this
/// again on every wake-up while it has no push.
pub fn set_sema(id: u32, sema: *mut core::ffi::c_void) -> bool {
    STATE
        .with(|st| {
            let Some(c) = st.consumer(id) else {
                return false;
            };
            c.sema = sema;
            c.woken = false;
            let z = c.zone;
            let a = &mut st.zones[z];
            if a.slot.is_none() && !sema.is_null() {
                a.slot = take_slot(&a.handle);
            }
            a.slot.is_some()
        })
        .unwrap_or(false)
        && notify::active()
}

/// Posts `source`/`event` (nil data) to consumer `id`'s zone when this
/// worker exits (once per zone and pair).
pub fn post_at_exit(id: u32, source: &[u8], event: &[u8]) -> bool {
    STATE
        .with(|st| {
            let Some(zone) = st.consumer(id).map(|c| c.zone) else {
                return false;
            };
            let dup = st
                .exit_posts
                .iter()
                .any(|p| p.zone == zone && p.source == source && p.event == event);
            if !dup {
                st.exit_posts.push(ExitPost {
                    zone,
                    source: source.to_vec(),
                    event: event.to_vec(),
                });
            }
            true
        })
        .unwrap_or(false)
}

/// A consumer's view for `stats()`.
pub struct ConsumerStats {
    pub zone_name: String,
    pub zone: ZoneStats,
    pub cursor: u64,
    pub slot: Option<usize>,
    /// This worker gets push wake-ups for this zone.
    pub push: bool,
    pub lost: u64,
}

/// Counters of consumer `id` and its zone.
pub fn stats(id: u32) -> Option<ConsumerStats> {
    STATE
        .with(|st| {
            let (c, a) = st.reader(id)?;
            let mut zone = a.handle.zone.stats();
            // A SIGKILLed worker's slot stays taken until someone reuses it:
            // count the workers that run.
            zone.workers.retain(|o| process::alive(o.pid));
            Some(ConsumerStats {
                zone_name: a.name.clone(),
                zone,
                cursor: c.cursor.pos,
                slot: a.slot,
                push: notify::active()
                    && a.slot.is_some_and(|s| {
                        a.handle
                            .zone
                            .slots()
                            .owners()
                            .iter()
                            .any(|o| o.slot == s && o.push)
                    }),
                lost: c.lost,
            })
        })
        .ok()
        .flatten()
}

/// Test hook: takes the first attached zone's lock and never releases it.
pub fn hold_lock_forever() -> bool {
    STATE
        .with(|st| {
            st.zones
                .first()
                .map(|a| crate::zone::ZoneLock::lock(&a.handle))
                .is_some()
        })
        .unwrap_or(false)
}
