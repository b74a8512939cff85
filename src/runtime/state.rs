//! This process' attachments and consumers (the data, not the operations:
//! see `attach` and `notify`).

use core::ffi::c_void;
use std::collections::VecDeque;

use crate::ngx::lua_module::Subsystem;
use crate::ngx::shm::ZoneHandle;
use crate::runtime::cell::ProcessCell;
use crate::wire::payload::Encoder;
use crate::zone::Cursor;

/// One zone this process is attached to.
pub struct Attachment {
    /// The zone's name.
    pub name: String,
    pub handle: ZoneHandle,
    /// Our slot in the zone (workers only; None when the table was full).
    pub slot: Option<usize>,
    /// Counts not yet added to the zone (flushed once per drained batch, so
    /// the hot path touches no shared cache line per record).
    pub pending: Pending,
}

/// Deliveries counted locally, for the zone's status counters.
#[derive(Default)]
pub struct Pending {
    pub delivered: u64,
    /// Per delay bucket (`zone::layout::DELAY_BUCKETS_US`, then +Inf).
    pub delay_buckets: [u64; 13],
    pub delay_sum_us: u64,
    pub delay_count: u64,
}

impl Pending {
    /// Counts one delivery of a record posted at `posted_us` (0: unknown).
    pub fn note(&mut self, posted_us: u64, now_us: u64) {
        self.delivered += 1;
        if posted_us != 0 {
            let us = now_us.saturating_sub(posted_us);
            let i = crate::zone::layout::DELAY_BUCKETS_US
                .iter()
                .position(|&b| us <= b)
                .unwrap_or(self.delay_buckets.len() - 1);
            self.delay_buckets[i] += 1;
            self.delay_sum_us += us;
            self.delay_count += 1;
        }
    }
}

/// A Lua semaphore (`ngx.semaphore`'s `sem`) native code posts, and the
/// subsystem whose lua module made it (each posts its own kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sema {
    pub ptr: *mut c_void,
    pub subsystem: Subsystem,
}

/// One reader of one zone (one Lua API instance in this process).
pub struct Consumer {
    /// Index into `State::zones`.
    pub zone: usize,
    pub cursor: Cursor,
    /// The Lua subsystem it lives in (`ngx.config.subsystem`).
    pub subsystem: Subsystem,
    /// The semaphore its dispatch loop waits on (null: none), of `subsystem`.
    pub sema: *mut c_void,
    /// A wake-up was posted and the consumer has not drained since.
    pub woken: bool,
    /// Events it lost (overrun), since it was opened.
    pub lost: u64,
    /// When the record it fetched last was posted (monotonic µs).
    pub last_posted_us: u64,
    /// The cluster bridge's consumer: it also reads held cluster records
    /// (`unique` ones waiting for their cluster claim), which others skip.
    pub bridge: bool,
    /// The bridge's batches handed out for XADD whose replies are not read
    /// yet, oldest first: the cursor after each and its highest ordinal
    /// (see `cluster::next_out` / `cluster::ack`).
    pub in_flight: VecDeque<(Cursor, u64)>,
}

/// An event to post when the worker exits (e.g. `stopping`).
pub struct ExitPost {
    pub zone: usize,
    pub source: Vec<u8>,
    pub event: Vec<u8>,
    /// The subsystem of the API that asked (each posts its own).
    pub subsystem: Subsystem,
}

impl Consumer {
    /// Its semaphore, with the subsystem that posts it.
    pub fn sema(&self) -> Sema {
        Sema {
            ptr: self.sema,
            subsystem: self.subsystem,
        }
    }
}

/// The "now" of delivery delays, read once per batch of fetches instead of
/// once per record: again after [`DelayClock::REUSE`] records, or when
/// nginx's event loop turned (its cached millisecond moved), so a delay is
/// off by at most the handling of that many records.
#[derive(Default)]
pub struct DelayClock {
    now_us: u64,
    loop_ms: usize,
    left: u32,
}

impl DelayClock {
    /// Records one clock read serves.
    pub const REUSE: u32 = 32;

    /// Now (monotonic µs) for a delay; `loop_ms`: nginx's cached time.
    pub fn now(&mut self, loop_ms: usize, read: impl FnOnce() -> u64) -> u64 {
        if self.left == 0 || self.loop_ms != loop_ms {
            self.now_us = read();
            self.loop_ms = loop_ms;
            self.left = Self::REUSE;
        }
        self.left -= 1;
        self.now_us
    }
}

/// Everything this process holds.
#[derive(Default)]
pub struct State {
    pub zones: Vec<Attachment>,
    /// Consumer ids are indexes + 1; closed ones leave `None`.
    pub consumers: Vec<Option<Consumer>>,
    /// Record copy buffer for reads: holds the record fetched last until
    /// the next fetch (lent out while a read fills it).
    pub buf: Vec<u8>,
    /// The clock reads' cache for delivery delays (see [`DelayClock`]).
    pub delay_clock: DelayClock,
    /// The post time stamped into records posted here.
    pub stamp_clock: crate::ngx::clock::StampClock,
    /// Payload encoding buffer for posts (lent out while a value is encoded).
    pub enc: Encoder,
    pub exit_posts: Vec<ExitPost>,
    /// `lua_shared_dict` names already reported as mapped to the default zone.
    pub noticed: Vec<String>,
    /// Unique records this worker claimed, as (zone index, seq, API tag
    /// hash): every consumer of that API in this worker runs them, each once.
    pub claimed: std::collections::VecDeque<(usize, u64, u64)>,
    /// Semaphores (task loops) posted once when nginx starts shutting down;
    /// the Lua side keeps them referenced for the worker's life.
    pub shutdown_semas: Vec<Sema>,
    /// Semaphores to post on the event loop's next turn (`notify::next_turn`).
    pub next_turn_semas: Vec<Sema>,
}

impl State {
    /// The entry of `consumers` that consumer `id` occupies (open or closed).
    pub fn entry(&mut self, id: u32) -> Option<&mut Option<Consumer>> {
        self.consumers.get_mut((id as usize).checked_sub(1)?)
    }

    /// The consumer with this id.
    pub fn consumer(&mut self, id: u32) -> Option<&mut Consumer> {
        self.entry(id)?.as_mut()
    }

    /// The consumer with this id and the zone it reads.
    pub fn reader(&mut self, id: u32) -> Option<(&mut Consumer, &Attachment)> {
        let c = self
            .consumers
            .get_mut((id as usize).checked_sub(1)?)?
            .as_mut()?;
        let a = self.zones.get(c.zone)?;
        Some((c, a))
    }
}

/// This process' state.
pub static STATE: ProcessCell<State> = ProcessCell::new();
