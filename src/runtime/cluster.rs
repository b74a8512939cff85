//! The cluster bridge's native side in one worker: the lease, the outgoing
//! cursor (cluster records of the local log, handed to the Lua bridge for
//! XADD), and delivering stream entries from other nodes onto the local log
//! exactly once (see `zone::cluster`).
//!
//! The Lua bridge (`ngx_worker_events.cluster`) does the Redis I/O with
//! cosockets; everything that must agree between workers, reloads and
//! hand-overs is decided here, under the zone lock.

use core::sync::atomic::Ordering::Relaxed;

use crate::ngx::process;
use crate::published::ClusterConf;
use crate::runtime::resolve::AttachError;
use crate::runtime::state::STATE;
use crate::runtime::{post, resolve};
use crate::zone::cluster::{name_hash, Arrival, ClusterBlock, DropReason, RESET_ID};
use crate::zone::record::{Origin, RecordView};
use crate::zone::ring::Ext;
use crate::zone::{AppendError, ReadOutcome};

fn now_ms() -> u64 {
    crate::ngx::monotonic_us() / 1000
}

/// Why a bridge call failed.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("no worker_events_cluster is configured")]
    NotConfigured,
    #[error("not an open consumer")]
    NotOpen,
    #[error("{0}")]
    Attach(AttachError),
    #[error("{0}")]
    Append(AppendError),
}

/// The committed cycle's cluster configuration and the name of its zone.
pub fn config() -> Result<(ClusterConf, String), BridgeError> {
    let c = crate::published::active()
        .cluster
        .ok_or(BridgeError::NotConfigured)?;
    let (zone, _, _) = resolve::resolve(&c.zone).map_err(BridgeError::Attach)?;
    Ok((c, zone))
}

/// Runs `f` with consumer `id`'s cluster block and its zone lock.
fn with_block<R>(
    id: u32,
    f: impl FnOnce(&ClusterBlock, &crate::ngx::shm::ZoneHandle) -> R,
) -> Result<R, BridgeError> {
    let handle = STATE
        .with(|st| st.reader(id).map(|(_, a)| a.handle.clone()))
        .ok()
        .flatten()
        .ok_or(BridgeError::NotOpen)?;
    Ok(f(&handle.zone.header().cluster, &handle))
}

/// Makes consumer `id` the bridge's: it reads held records too.
pub fn mark_bridge(id: u32) -> bool {
    STATE
        .with(|st| st.consumer(id).map(|c| c.bridge = true).is_some())
        .unwrap_or(false)
}

/// Tries to take the lease; on success moves consumer `id` to where the
/// previous bridge stopped sending (or keeps its cursor when none did) and
/// returns the token.
pub fn take(id: u32) -> Result<Option<u64>, BridgeError> {
    let pid = process::pid() as u64;
    let token = with_block(id, |b, h| {
        b.take(h, pid, now_ms(), |p| process::alive(p as i32))
    })?;
    if token.is_some() {
        rewind(id)?;
    }
    Ok(token)
}

/// Renews the lease; false when it was lost.
pub fn renew(id: u32, token: u64) -> Result<bool, BridgeError> {
    with_block(id, |b, h| b.renew(h, token, now_ms()))
}

/// True while `token` is the live lease.
pub fn holds(id: u32, token: u64) -> Result<bool, BridgeError> {
    with_block(id, |b, _| b.holds(token, now_ms()))
}

/// Gives the lease up.
pub fn release(id: u32, token: u64) -> Result<(), BridgeError> {
    with_block(id, |b, h| b.release(h, token))
}

/// Puts consumer `id`'s cursor back where the last saved batch ended (after
/// a failed XADD: the batches in flight are sent again), or saves its cursor
/// when no bridge ever saved one.
pub fn rewind(id: u32) -> Result<(), BridgeError> {
    STATE
        .with(|st| {
            let (c, a) = st.reader(id)?;
            let b = &a.handle.zone.header().cluster;
            c.in_flight.clear();
            match b.saved_out() {
                Some(cur) => c.cursor = cur,
                None => {
                    b.out_pos.store(c.cursor.pos, Relaxed);
                    b.out_next_seq.store(c.cursor.next_seq, Relaxed);
                    b.out_saved.store(1, Relaxed);
                }
            }
            Some(())
        })
        .ok()
        .flatten()
        .ok_or(BridgeError::NotOpen)
}

/// A batch [`next_out`] returns ends once its records hold this many bytes
/// (so `max` large events never make one huge write).
pub const OUT_BATCH_BYTES: usize = 1 << 20;

/// Reads up to `max` cluster records after consumer `id`'s cursor (other
/// records are skipped), fewer when they reach [`OUT_BATCH_BYTES`], and
/// hands each to `each` with its ordinal, as it lies in the reader's buffer
/// (`each` must not call back into the runtime: its state is borrowed).
/// Returns how many there were, the highest ordinal seen, and how many
/// cluster events were overwritten before the bridge read them. A batch
/// with records is in flight until [`ack`] (its replies read) or
/// [`rewind`] (they failed): the bridge may take the next one before the
/// first is acknowledged.
pub fn next_out(
    id: u32,
    max: usize,
    mut each: impl FnMut(u64, &RecordView<'_>),
) -> Result<(usize, u64, u64), BridgeError> {
    STATE
        .with(|st| {
            let mut buf = core::mem::take(&mut st.buf);
            let (c, a) = st.reader(id)?;
            let ring = a.handle.zone.ring();
            let b = &a.handle.zone.header().cluster;
            // after the batches still in flight, else the acknowledged ones
            let acked = b.acked.load(Relaxed);
            let mut last = c.in_flight.back().map_or(acked, |f| f.1.max(acked));
            let (mut n, mut lost) = (0, 0);
            let mut cursor = c.cursor;
            let (mut drained, mut bytes) = (false, 0);
            while n < max {
                match ring.read_next(&a.handle, &mut cursor, &mut buf) {
                    ReadOutcome::Empty => {
                        // Drained: the next post must wake the bridge again.
                        drained = true;
                        break;
                    }
                    ReadOutcome::Lost(_) => continue,
                    ReadOutcome::Record(rh) if !rh.cluster || rh.remote => continue,
                    ReadOutcome::Record(rh) => {
                        let Some(v) = RecordView::parse(&rh, &buf) else {
                            continue;
                        };
                        let Some(ord) = v.ordinal.filter(|o| *o > last) else {
                            continue;
                        };
                        lost += ord - last - 1;
                        last = ord;
                        each(ord, &v);
                        n += 1;
                        bytes += buf.len();
                        if bytes >= OUT_BATCH_BYTES {
                            break;
                        }
                    }
                }
            }
            c.cursor = cursor;
            if n > 0 {
                c.in_flight.push_back((cursor, last));
            } else if let Some(f) = c.in_flight.back_mut() {
                // lost records only: the newest batch's ack covers them
                f.1 = f.1.max(last);
            }
            if lost > 0 {
                b.counters.lost_out.fetch_add(lost, Relaxed);
            }
            st.buf = buf;
            if drained {
                crate::runtime::notify::found_empty(st, id);
            }
            Some((n, last, lost))
        })
        .ok()
        .flatten()
        .ok_or(BridgeError::NotOpen)
}

/// Records that the oldest batch in flight reached Redis (`sent` of its
/// events; `acked`: its highest ordinal, or the lost ones' when nothing is
/// in flight): the cursor saved for a hand-over is the one after it. With
/// nothing in flight, the current cursor is saved. False when the lease was
/// lost meanwhile (the batch stays in flight until a [`rewind`]).
pub fn ack(id: u32, token: u64, acked: u64, sent: u64) -> Result<bool, BridgeError> {
    let (cur, oldest) = STATE
        .with(|st| {
            st.consumer(id).map(|c| {
                c.in_flight
                    .front()
                    .map_or((c.cursor, None), |f| (f.0, Some(f.1)))
            })
        })
        .ok()
        .flatten()
        .ok_or(BridgeError::NotOpen)?;
    let saved = with_block(id, |b, h| {
        b.counters.events_out.fetch_add(sent, Relaxed);
        b.save_out(h, token, cur, oldest.unwrap_or(acked), now_ms())
    })?;
    if saved && oldest.is_some() {
        let _ = STATE.with(|st| st.consumer(id).map(|c| c.in_flight.pop_front()));
    }
    Ok(saved)
}

/// What became of one stream entry.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// Posted on the local log; `lost` of that node's events were missed before it.
    Delivered { lost: u64 },
    /// Posted, but its ordinal was implausibly far from the last one: a new
    /// count starts (see `Arrival::Jump`).
    Jumped,
    /// Seen before (a hand-over resent it), or this node's own: skipped.
    Skipped,
    /// The lease is no longer ours: stop.
    Stale,
}

/// A stream entry from node `node` (see `zone::cluster`).
pub struct Entry<'a> {
    pub id: (u64, u64),
    pub node: &'a [u8],
    pub epoch: u64,
    pub ordinal: u64,
    pub source: &'a [u8],
    pub event: &'a [u8],
    pub unique: Option<&'a [u8]>,
    pub data: &'a [u8],
}

/// Wakes the readers of consumer `id`'s zone, here and in the other
/// workers: once after [`deliver`] delivered a run of entries (one wake-up
/// per XREAD chunk, not one per entry).
pub fn wake_readers(id: u32) {
    let found = STATE
        .with(|st| {
            let (c, a) = st.reader(id)?;
            let (z, handle, slot) = (c.zone, a.handle.clone(), a.slot);
            crate::runtime::notify::wake_local(st, z, None, false);
            Some((handle, slot))
        })
        .ok()
        .flatten();
    if let Some((handle, slot)) = found {
        crate::runtime::notify::wake_others(&handle, slot);
    }
}

/// Posts entry `e` on the local log unless it is a duplicate; in the same
/// critical section checks the lease and moves the stream id forward, so a
/// hand-over can neither lose nor repeat it. `max_gap`: see
/// `ClusterBlock::arrive_locked`. Wakes nobody: the caller calls
/// [`wake_readers`] once the run of entries it delivers is over.
pub fn deliver(
    id: u32,
    token: u64,
    e: &Entry<'_>,
    max_gap: Option<u64>,
) -> Result<Incoming, BridgeError> {
    let handle = STATE
        .with(|st| st.reader(id).map(|(_, a)| a.handle.clone()))
        .ok()
        .flatten()
        .ok_or(BridgeError::NotOpen)?;
    let b = &handle.zone.header().cluster;
    let now = now_ms();
    let hash = name_hash(e.node);
    let mut result = Incoming::Stale;
    let mut gate = || {
        if !b.holds(token, now) {
            return false;
        }
        b.advance_locked(e.id);
        match b.arrive_locked(hash, e.epoch, e.ordinal, now, max_gap) {
            Arrival::Duplicate => {
                result = Incoming::Skipped;
                false
            }
            Arrival::Jump => {
                result = Incoming::Jumped;
                true
            }
            Arrival::New { lost } => {
                result = Incoming::Delivered { lost };
                true
            }
        }
    };
    let origin = Origin {
        pid: process::pid(),
        wid: None,
        own: false,
        posted_us: crate::ngx::monotonic_us(),
        remote: true,
    };
    let ext = Ext {
        ordinal: None,
        hold: None,
        gate: Some(&mut gate),
    };
    let ring = handle.zone.ring();
    match ring.append_ext(&handle, origin, e.source, e.event, e.unique, e.data, ext) {
        Ok(_) | Err(AppendError::Refused) => {}
        Err(err) => {
            // Too large for this zone: counted lost and dropped, and the
            // id moves on.
            let _g = crate::zone::Guard::new(&handle);
            b.advance_locked(e.id);
            drop(_g);
            b.counters.lost_in.fetch_add(1, Relaxed);
            b.counters.dropped[DropReason::TooLarge as usize].fetch_add(1, Relaxed);
            return Err(BridgeError::Append(err));
        }
    }
    match result {
        Incoming::Delivered { .. } | Incoming::Jumped => {
            b.counters.events_in.fetch_add(1, Relaxed);
            match result {
                Incoming::Delivered { lost } if lost > 0 => {
                    b.counters.lost_in.fetch_add(lost, Relaxed);
                }
                Incoming::Jumped => {
                    b.counters.ordinal_jumps.fetch_add(1, Relaxed);
                }
                _ => {}
            }
        }
        Incoming::Skipped => {
            b.counters.duplicates.fetch_add(1, Relaxed);
        }
        Incoming::Stale => {}
    }
    Ok(result)
}

/// Posts a cluster `unique` event whose cluster claim this node won, as a
/// local `unique` event (one worker here runs it, once per API).
pub fn post_won(
    id: u32,
    source: &[u8],
    event: &[u8],
    unique: &[u8],
    ttl_ms: u64,
    data: &[u8],
) -> Result<(), post::PostError> {
    post::post(
        id,
        source,
        event,
        Some(unique),
        ttl_ms,
        data,
        post::PostMode::default(),
    )
    .map(|_| ())
}

/// Moves the stream id past an entry that is not delivered (this node's
/// own, or one that cannot be read). False when the lease is lost.
pub fn skip(id: u32, token: u64, stream_id: (u64, u64), own: bool) -> Result<bool, BridgeError> {
    with_block(id, |b, h| {
        let _g = crate::zone::Guard::new(h);
        if !b.holds(token, now_ms()) {
            return false;
        }
        b.advance_locked(stream_id);
        if own {
            b.counters.own_skipped.fetch_add(1, Relaxed);
        }
        true
    })
}

/// Counts `n` entries dropped for `why`.
pub fn dropped(id: u32, why: DropReason, n: u64) -> Result<(), BridgeError> {
    with_block(id, |b, _| {
        b.counters.dropped[why as usize].fetch_add(n, Relaxed);
    })
}

/// Checks the stream against its last generated id (`None`: the stream is
/// gone): when that is below the last id handled here, the stream was reset
/// (FLUSHALL, a new Redis) and reading starts again at its beginning.
/// True when it was reset.
pub fn check_reset(
    id: u32,
    token: u64,
    generated: Option<(u64, u64)>,
) -> Result<bool, BridgeError> {
    with_block(id, |b, h| {
        let _g = crate::zone::Guard::new(h);
        if !b.holds(token, now_ms()) {
            return false;
        }
        let Some(ours) = b.last_id() else {
            return false;
        };
        if ours <= RESET_ID || generated.is_some_and(|g| g >= ours) {
            return false;
        }
        b.reset_in_locked();
        true
    })
}

/// The last stream id handled (`None`: start from the stream's end).
pub fn last_id(id: u32) -> Result<Option<(u64, u64)>, BridgeError> {
    with_block(id, |b, _| b.last_id())
}

/// This zone's epoch (sent with every entry).
pub fn epoch(id: u32) -> Result<u64, BridgeError> {
    with_block(id, |b, _| b.epoch.load(Relaxed))
}

/// Whether the bridge's direction `bits` (`OUT_UP`, `IN_UP`, or both) works,
/// and how far behind the stream it is; only for the live lease `token`
/// (false otherwise: see [`ClusterBlock::set_state`]).
pub fn set_state(
    id: u32,
    token: u64,
    bits: u64,
    up: bool,
    lag_ms: Option<u64>,
) -> Result<bool, BridgeError> {
    with_block(id, |b, h| {
        b.set_state(h, token, bits, up, lag_ms, now_ms(), crate::ngx::wall_ms())
    })
}

/// Adds `n` to the counter `name` (reconnects, errors, unique_lost,
/// unique_failed); false for an unknown name.
pub fn count(id: u32, name: &str, n: u64) -> Result<bool, BridgeError> {
    with_block(id, |b, _| {
        let c = &b.counters;
        let counter = match name {
            "reconnects" => &c.reconnects,
            "errors" => &c.errors,
            "unique_won" => &c.unique_won,
            "unique_lost" => &c.unique_lost,
            "unique_failed" => &c.unique_failed,
            "restarts" => &c.restarts,
            _ => return false,
        };
        counter.fetch_add(n, Relaxed);
        true
    })
}
