//! Posting: encoding buffers, the post modes (dedup, own, cluster) and
//! appending one record to a consumer's zone, then waking its readers.

use crate::ngx::process::{self, NgxProcess};
use crate::runtime::cell::Reentered;
use crate::runtime::notify;
use crate::runtime::state::STATE;
use crate::wire::payload::Encoder;
use crate::zone::claims::Reserved;
use crate::zone::record::Origin;
use crate::zone::ring::Ext;
use crate::zone::AppendError;

/// Why a post failed.
#[derive(Debug)]
pub enum PostError {
    NotOpen,
    Append(AppendError),
    /// The claims table has no room for this `unique` key.
    ClaimsFull {
        capacity: usize,
    },
    /// Too many cluster events wait for Redis (see [`ClusterPost::queue`]).
    ClusterQueueFull {
        waiting: u64,
    },
    /// A cluster post to a zone that is not the cluster's.
    NotClusterZone {
        cluster: String,
        zone: String,
    },
    Reentered,
}

impl core::fmt::Display for PostError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PostError::NotOpen => f.write_str("events not configured, call configure() first"),
            PostError::Append(e) => e.fmt(f),
            PostError::ClaimsFull { capacity } => write!(
                f,
                "no room for this unique key: the zone holds {capacity} live unique keys at most (make the zone larger or the timeout shorter)"
            ),
            PostError::ClusterQueueFull { waiting } => write!(
                f,
                "cluster queue full: {waiting} cluster events wait for redis"
            ),
            PostError::NotClusterZone { cluster, zone } => write!(
                f,
                "cluster events go through zone \"{cluster}\", not \"{zone}\""
            ),
            PostError::Reentered => Reentered.fmt(f),
        }
    }
}

/// Lends the encoding buffer out (cleared); give it back with [`put_encoder`].
pub fn take_encoder() -> Result<Encoder, Reentered> {
    STATE.with(|st| {
        let mut e = core::mem::take(&mut st.enc);
        e.clear();
        e
    })
}

/// Buffers lent out for one event keep at most this much memory between
/// events (one large event must not pin its size for the process' life).
pub const KEEP_BUFFER: usize = 1024 * 1024;

/// Returns the buffer lent by [`take_encoder`].
pub fn put_encoder(mut enc: Encoder) {
    enc.shrink(KEEP_BUFFER);
    let _ = STATE.with(|st| st.enc = enc);
}

/// The largest record consumer `id`'s zone takes (None when not open).
pub fn max_record(id: u32) -> Option<u64> {
    STATE
        .with(|st| {
            st.reader(id)
                .map(|(_, a)| a.handle.zone.ring().max_record())
        })
        .ok()
        .flatten()
}

/// How a post is made.
#[derive(Clone, Copy, Debug, Default)]
pub struct PostMode<'a> {
    /// Drop the event when its `unique` key is already live (resty.events:
    /// a key is published once per `unique_timeout`).
    pub dedup: bool,
    /// An API's own event (see [`Origin::own`]).
    pub own: bool,
    /// A cluster event (see [`ClusterPost`]).
    pub cluster: Option<ClusterPost<'a>>,
}

/// How a cluster event is posted.
#[derive(Clone, Copy, Debug)]
pub struct ClusterPost<'a> {
    /// The zone named by `worker_events_cluster`.
    pub zone: &'a str,
    /// At most this many cluster events may wait for Redis in the zone.
    pub queue: u64,
    /// A cluster `unique` event: not delivered here; the bridge takes its
    /// cluster claim first (for this long, ms).
    pub hold: Option<u64>,
}

/// What a post did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Posted {
    /// Appended as this seq.
    Seq(u64),
    /// Not appended: its `unique` key is live ([`PostMode::dedup`]).
    Duplicate,
}

/// This process as the poster of a record, posting now.
pub fn origin(own: bool) -> Origin {
    origin_at(own, crate::ngx::monotonic_us())
}

/// This process as the poster of a record posted at `posted_us`.
fn origin_at(own: bool, posted_us: u64) -> Origin {
    let wid = NgxProcess::current()
        .worker_number()
        .map_or(-1, |n| i32::try_from(n).unwrap_or(-1));
    Origin {
        pid: process::pid(),
        wid: Some(wid),
        own,
        posted_us,
        remote: false,
    }
}

/// Appends one record to consumer `id`'s zone and wakes its readers.
pub fn post(
    id: u32,
    source: &[u8],
    event: &[u8],
    unique: Option<&[u8]>,
    unique_ttl_ms: u64,
    data: &[u8],
    mode: PostMode<'_>,
) -> Result<Posted, PostError> {
    let posted = STATE.with(|st| {
        let posted_us = st.stamp_clock.now_us();
        let (c, a) = st.reader(id).ok_or(PostError::NotOpen)?;
        let z = c.zone;
        let cluster = &a.handle.zone.header().cluster;
        if let Some(cp) = mode.cluster {
            if cp.zone != a.name {
                return Err(PostError::NotClusterZone {
                    cluster: cp.zone.to_string(),
                    zone: a.name.clone(),
                });
            }
            let waiting = cluster.waiting();
            if waiting >= cp.queue {
                cluster
                    .counters
                    .refused
                    .fetch_add(1, core::sync::atomic::Ordering::Relaxed);
                return Err(PostError::ClusterQueueFull { waiting });
            }
        }
        let held = mode.cluster.and_then(|cp| cp.hold);
        if let (Some(key), None) = (unique, held) {
            // Reserve the key first: a live claim is never taken over, so a
            // post that finds no room fails instead of running twice later.
            let claims = a.handle.zone.claims();
            let now_ms = crate::ngx::monotonic_us() / 1000;
            match claims.reserve(&a.handle, key, now_ms, unique_ttl_ms) {
                Ok(Reserved::Live) if mode.dedup => return Ok(None),
                Ok(_) => {}
                Err(_) => {
                    let refused = &a.handle.zone.header().claims_refused;
                    refused.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
                    return Err(PostError::ClaimsFull {
                        capacity: claims.len(),
                    });
                }
            }
        }
        let ext = Ext {
            ordinal: mode.cluster.map(|_| &cluster.ordinal),
            hold: held,
            gate: None,
        };
        let seq = a
            .handle
            .zone
            .ring()
            .append_ext(
                &a.handle,
                origin_at(mode.own, posted_us),
                source,
                event,
                unique,
                data,
                ext,
            )
            .map_err(PostError::Append)?;
        let (handle, slot) = (a.handle.clone(), a.slot);
        notify::wake_local(st, z, Some(id as usize - 1), false);
        Ok(Some((seq, handle, slot)))
    });
    match posted.map_err(|_| PostError::Reentered)?? {
        None => Ok(Posted::Duplicate),
        Some((seq, handle, slot)) => {
            notify::wake_others(&handle, slot);
            Ok(Posted::Seq(seq))
        }
    }
}
