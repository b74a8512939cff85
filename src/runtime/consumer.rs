//! Consumers: one reader of one zone in one worker (one Lua API
//! instance): open, read, pending, wake-up semaphore, exit posts, stats,
//! close. Posting is `runtime::post`.

use crate::ngx::lua_module::Subsystem;
use crate::ngx::process::{self, NgxProcess};
use crate::runtime::attach::{attachment, take_slot};
use crate::runtime::counters;
use crate::runtime::notify;
use crate::runtime::post::KEEP_BUFFER;
use crate::runtime::resolve::{resolve, AttachError};
use crate::runtime::state::{Consumer, ExitPost, STATE};
use crate::zone::record::RecordHeader;
use crate::zone::slots::SlotCounter;
use crate::zone::{ReadOutcome, ZoneStats};

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
/// `subsystem`: the Lua subsystem it lives in (its semaphore's kind).
pub fn open(
    name: &str,
    in_init: bool,
    agent: bool,
    subsystem: Subsystem,
) -> Result<Opened, AttachError> {
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
        let z = attachment(st, &zone, handle.clone());
        let cursor = handle.zone.ring().cursor_at_head(&handle);
        let c = Consumer {
            zone: z,
            cursor,
            subsystem,
            sema: core::ptr::null_mut(),
            woken: false,
            lost: 0,
            last_posted_us: 0,
            bridge: false,
            in_flight: Default::default(),
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
            if let Some(z) = c.take().map(|c| c.zone) {
                // It may have been the last one awake in this worker.
                notify::drained(st, z);
            }
        }
    });
}

/// What one read for a consumer found.
pub enum Fetched<'a> {
    Empty,
    Lost(u64),
    /// A record: its bytes, in this process' read buffer.
    Record(RecordHeader, &'a [u8]),
}

/// Reads consumer `id`'s next record (Empty when not open) and hands it to
/// `f`, which must not reach the per-process state (it is borrowed). The
/// record's bytes stay where they are after `f` returns, until the next
/// fetch by any consumer of this process: pointers taken from them stay
/// good until then.
pub fn fetch<R>(id: u32, mut f: impl FnMut(Fetched<'_>) -> R) -> R {
    STATE
        .with(|st| {
            let mut buf = core::mem::take(&mut st.buf);
            // One large record must not pin its size for the process' life
            // (shrunk here, not when given back: until this next fetch, the
            // last record's bytes are still being read where they are).
            if buf.capacity() > KEEP_BUFFER {
                buf = Vec::new();
            }
            let Some(c) = st.consumer(id) else {
                st.buf = buf;
                return f(Fetched::Empty);
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
                    ReadOutcome::Empty => notify::found_empty(st, id),
                    ReadOutcome::Lost(n) => c.lost += n,
                    ReadOutcome::Record(rh) => c.last_posted_us = rh.posted_us,
                }
            }
            match outcome {
                ReadOutcome::Record(rh) => {
                    // SAFETY: reading nginx's cached time, a process global.
                    let loop_ms = unsafe { ngx::ffi::ngx_current_msec };
                    let now = st.delay_clock.now(loop_ms, crate::ngx::monotonic_us);
                    let a = &mut st.zones[z];
                    a.pending.note(rh.posted_us, now);
                    if a.pending.delivered >= counters::FLUSH_EVERY {
                        counters::flush(st, z);
                    }
                    let r = f(Fetched::Record(rh, &buf));
                    // The vector moves back, its bytes do not.
                    st.buf = buf;
                    r
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
                    f(Fetched::Lost(n))
                }
                ReadOutcome::Empty => {
                    counters::flush(st, z);
                    st.buf = buf;
                    f(Fetched::Empty)
                }
            }
        })
        .unwrap_or_else(|_| f(Fetched::Empty))
}

/// True if records are waiting for consumer `id` (one atomic load).
pub fn pending(id: u32) -> bool {
    STATE
        .with(|st| {
            let (c, a) = st.reader(id)?;
            let pending = a.handle.zone.ring().has_pending(&c.cursor);
            // Drained after a wake-up: the next post must wake it again.
            if !pending {
                notify::found_empty(st, id);
            }
            Some(pending)
        })
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// Registers the semaphore consumer `id`'s loop waits on (null to
/// unregister; of the consumer's subsystem). True when push wake-ups reach
/// this worker and its subsystem's semaphores can be posted.
///
/// A worker that found its zone's slots all taken (e.g. by an old
/// generation during a big reload) tries again here: the loop calls this
/// again on every wake-up while it has no push.
pub fn set_sema(id: u32, sema: *mut core::ffi::c_void) -> bool {
    STATE
        .with(|st| {
            let c = st.consumer(id)?;
            c.sema = sema;
            c.woken = false;
            let (z, subsystem) = (c.zone, c.subsystem);
            // It may have been the last one awake in this worker.
            notify::drained(st, z);
            let a = &mut st.zones[z];
            if a.slot.is_none() && !sema.is_null() {
                a.slot = take_slot(&a.handle);
            }
            a.slot.is_some().then_some(subsystem)
        })
        .ok()
        .flatten()
        .is_some_and(|subsystem| notify::active() && notify::can_post(subsystem))
}

/// Posts `source`/`event` (nil data) to consumer `id`'s zone when this
/// worker exits (once per zone, pair and subsystem: each subsystem's API
/// posts its own, as the library does in each Lua VM).
pub fn post_at_exit(id: u32, source: &[u8], event: &[u8]) -> bool {
    STATE
        .with(|st| {
            let Some((zone, subsystem)) = st.consumer(id).map(|c| (c.zone, c.subsystem)) else {
                return false;
            };
            let dup = st.exit_posts.iter().any(|p| {
                p.zone == zone && p.source == source && p.event == event && p.subsystem == subsystem
            });
            if !dup {
                st.exit_posts.push(ExitPost {
                    zone,
                    source: source.to_vec(),
                    event: event.to_vec(),
                    subsystem,
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
