//! Where things live inside a zone's region, and attaching to it.
//!
//! ```text
//! | Header | slots[slots_cap] | tasks[tasks_cap] | claims[claims_cap] | log ring[ring_cap] |
//! ```
//! All offsets are multiples of 64 (one cache line). The header records the
//! computed [`Layout`], so a process attaching to an existing zone (a worker,
//! or a new cycle reusing the zone across a reload) never recomputes it.

use core::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

use super::claims::{Claim, Claims};
use super::cluster::ClusterBlock;
use super::ring::{Ring, RingHeader};
use super::slots::{Slot, Slots};
use super::tasks::{TaskEntry, Tasks, TASKS};

/// Identifies an initialised region ("ngxwev" + layout version 8).
pub const MAGIC: u64 = 0x6e67_7877_6576_0008;
/// Smallest region we accept; see `conf::MIN_ZONE_SIZE` for the directive's limit.
pub const MIN_REGION: usize = 64 * 1024;
/// Number of worker slots (processes that can be attached at once, across
/// old and new generations during a reload).
pub const SLOTS: usize = 128;

const ALIGN: usize = 64;
/// Region bytes per claims entry.
pub const CLAIM_EVERY: usize = 96;

/// Offsets and capacities inside a region (bytes, or entries for `*_cap`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub region_len: u64,
    pub slots_off: u64,
    pub slots_cap: u64,
    pub tasks_off: u64,
    pub tasks_cap: u64,
    pub claims_off: u64,
    pub claims_cap: u64,
    pub ring_off: u64,
    pub ring_cap: u64,
}

fn align_up(n: usize) -> usize {
    (n + ALIGN - 1) & !(ALIGN - 1)
}

impl Layout {
    /// The layout for a region of `len` bytes, or `None` if it is too small.
    pub fn plan(len: usize) -> Option<Layout> {
        if len < MIN_REGION {
            return None;
        }
        let slots_off = align_up(core::mem::size_of::<Header>());
        let tasks_off = align_up(slots_off + SLOTS * core::mem::size_of::<Slot>());
        let claims_off = align_up(tasks_off + TASKS * core::mem::size_of::<TaskEntry>());
        // Claims: one 16-byte entry per 96 bytes of region (a sixth of it),
        // at least 64: more live claims than a lua_shared_dict of the same
        // size holds (8095 per MB for the Lua library's keys).
        let claims_cap = (len / CLAIM_EVERY).max(64);
        let ring_off = align_up(claims_off + claims_cap * core::mem::size_of::<Claim>());
        if ring_off + 4096 > len {
            return None;
        }
        Some(Layout {
            region_len: len as u64,
            slots_off: slots_off as u64,
            slots_cap: SLOTS as u64,
            tasks_off: tasks_off as u64,
            tasks_cap: TASKS as u64,
            claims_off: claims_off as u64,
            claims_cap: claims_cap as u64,
            ring_off: ring_off as u64,
            ring_cap: ((len - ring_off) & !7) as u64,
        })
    }
}

/// The zone header. Mutable fields are atomics; the rest is written once.
#[repr(C, align(64))]
pub struct Header {
    pub magic: u64,
    pub layout: Layout,
    /// Slots at or above this index never had push on: a post scans only
    /// the slots below it. Raised when a slot turns push on, never lowered;
    /// next to the layout because every post reads both and almost nothing
    /// writes this line.
    pub push_below: AtomicU32,
    /// On a cache line of its own (see [`RingHeader`]).
    pub ring: RingHeader,
    /// Bumped by the master each time a configuration cycle (start or
    /// reload) adopts the zone: workers record it in their slots.
    pub generation: AtomicU64,
    /// Posts refused because the claims table had no room for their key.
    pub claims_refused: AtomicU64,
    /// Lifecycle: the newest generation whose first managed worker started
    /// (its "master start" ran), and when (wall clock ms).
    pub managed_generation: AtomicU64,
    pub managed_generation_ms: AtomicU64,
    /// Lifecycle: the newest generation whose configuration cycle nginx
    /// committed (`init_module`, in the master): its workers are being
    /// spawned, so older generations have a next one before any of its
    /// workers runs the manager (a reload that failed never gets here).
    pub committed_generation: AtomicU64,
    /// Push wake-ups sent by posters.
    pub wakeups_sent: AtomicU64,
    /// Lifecycle: workers reported crashed, and reported unresponsive.
    pub crashes: AtomicU64,
    pub unresponsive: AtomicU64,
    /// Delivery delay (post to fetch) histogram: counts per
    /// [`DELAY_BUCKETS_US`] upper bound (the last one: +Inf), sum and count.
    pub delay_buckets: [AtomicU64; DELAY_BUCKETS_US.len() + 1],
    pub delay_sum_us: AtomicU64,
    pub delay_count: AtomicU64,
    /// The cluster bridge (lease, stream position, other nodes, counters).
    pub cluster: ClusterBlock,
}

/// Upper bounds (µs) of the delivery delay histogram's buckets.
pub const DELAY_BUCKETS_US: [u64; 12] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];

impl Header {
    /// Adds delivery delays counted elsewhere: per bucket, sum, count.
    pub fn add_delays(&self, buckets: &[u64], sum_us: u64, count: u64) {
        for (b, n) in self.delay_buckets.iter().zip(buckets) {
            if *n != 0 {
                b.fetch_add(*n, Ordering::Relaxed);
            }
        }
        self.delay_sum_us.fetch_add(sum_us, Ordering::Relaxed);
        self.delay_count.fetch_add(count, Ordering::Relaxed);
    }
}

/// A number that differs between zones created at different times (or
/// places): the cluster epoch.
fn fresh_epoch(base: *mut u8) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mixed = nanos ^ (base as u64).rotate_left(32) ^ u64::from(std::process::id()) << 48;
    super::cluster::name_hash(&mixed.to_le_bytes())
}

/// A view of one zone's region. Cheap to copy; valid as long as the mapping.
#[derive(Clone, Copy, Debug)]
pub struct Zone {
    base: *mut u8,
}

// SAFETY: all shared mutable state behind `base` is accessed through atomics
// or under the zone lock; the pointer itself is never mutated.
unsafe impl Send for Zone {}
// SAFETY: as above.
unsafe impl Sync for Zone {}

impl Zone {
    /// Lays out a fresh region and zeroes its header, slots and claims.
    ///
    /// # Safety
    /// `base` must point to `len` writable bytes, 64-byte aligned, that no
    /// other process uses yet, and that outlive every copy of the returned view.
    pub unsafe fn init(base: *mut u8, len: usize) -> Option<Zone> {
        let layout = Layout::plan(len)?;
        debug_assert_eq!(base as usize % ALIGN, 0);
        // SAFETY: the caller guarantees `len` writable bytes; ring_off <= len.
        unsafe { core::ptr::write_bytes(base, 0, layout.ring_off as usize) };
        // SAFETY:
        // - zeroed memory is a valid Header (integers and atomics);
        // - nobody else sees the region yet, so a unique reference is sound.
        let h = unsafe { &mut *(base as *mut Header) };
        h.layout = layout;
        h.magic = MAGIC;
        let zone = Zone { base };
        zone.ring().reset();
        zone.header().cluster.init(fresh_epoch(base));
        Some(zone)
    }

    /// Attaches to a region laid out by [`Zone::init`], in this or another process.
    ///
    /// # Safety
    /// `base` must be the start of such a region, mapped for as long as the view is used.
    pub unsafe fn attach(base: *mut u8) -> Option<Zone> {
        // SAFETY: the caller guarantees the region starts with a Header.
        let magic = unsafe { (*(base as *const Header)).magic };
        (magic == MAGIC).then_some(Zone { base })
    }

    /// The region's start (for identity checks).
    pub fn base(&self) -> *mut u8 {
        self.base
    }

    /// The header.
    pub fn header(&self) -> &Header {
        // SAFETY: `base` points at an initialised Header for the view's lifetime.
        unsafe { &*(self.base as *const Header) }
    }

    /// The layout recorded at init.
    pub fn layout(&self) -> Layout {
        self.header().layout
    }

    /// Starts a new generation (a configuration cycle adopted the zone); returns it.
    pub fn begin_generation(&self) -> u64 {
        self.header().generation.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The current generation.
    pub fn generation(&self) -> u64 {
        self.header().generation.load(Ordering::Acquire)
    }

    /// The event log.
    pub fn ring(&self) -> Ring<'_> {
        let l = self.layout();
        // SAFETY:
        // - `plan` put [ring_off, ring_off + ring_cap) inside the region, and
        //   ring_cap is a non-zero multiple of 8;
        // - every process reaches those bytes only through this view.
        unsafe {
            Ring::new(
                &self.header().ring,
                self.base.add(l.ring_off as usize),
                l.ring_cap,
            )
        }
    }

    /// The claims table.
    pub fn claims(&self) -> Claims<'_> {
        let l = self.layout();
        // SAFETY: the claims array lies inside the region (see `plan`) and is
        // made of atomics, so shared references to it are sound across processes.
        Claims(unsafe {
            core::slice::from_raw_parts(
                self.base.add(l.claims_off as usize) as *const Claim,
                l.claims_cap as usize,
            )
        })
    }

    /// The interval task counters.
    pub fn tasks(&self) -> Tasks<'_> {
        let l = self.layout();
        // SAFETY: as for `claims`.
        Tasks(unsafe {
            core::slice::from_raw_parts(
                self.base.add(l.tasks_off as usize) as *const TaskEntry,
                l.tasks_cap as usize,
            )
        })
    }

    /// The worker slots.
    pub fn slots(&self) -> Slots<'_> {
        let l = self.layout();
        // SAFETY: as for `claims`.
        Slots(unsafe {
            core::slice::from_raw_parts(
                self.base.add(l.slots_off as usize) as *const Slot,
                l.slots_cap as usize,
            )
        })
    }

    /// Turns push wake-ups on for slot `idx` (its socket name is set).
    pub fn push_on(&self, idx: usize) {
        let below = u32::try_from(idx + 1).unwrap_or(u32::MAX);
        // Raised before the flag: a poster that sees the flag scans this far.
        self.header().push_below.fetch_max(below, Ordering::SeqCst);
        self.slots().set_push(idx, true);
    }

    /// After a post: calls `wake(slot, pid)` for every push-enabled slot
    /// except `except` whose wake flag this call set (see
    /// [`Slots::to_wake`]).
    pub fn to_wake(&self, except: Option<usize>, wake: impl FnMut(usize, i32)) {
        // Pairs with the fence in `Slots::take_wake`: either this post sees
        // the reader's cleared flag, or the reader's drain sees this post's
        // record (the record was committed before this call).
        fence(Ordering::SeqCst);
        let below = self.header().push_below.load(Ordering::Acquire) as usize;
        self.slots().to_wake(except, below, wake);
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::Zone;

    /// A heap region standing in for shared memory.
    pub(crate) fn zone(len: usize) -> Zone {
        let layout = std::alloc::Layout::from_size_align(len, 64).unwrap();
        // SAFETY: non-zero size; leaked on purpose for the test's duration.
        let p = unsafe { std::alloc::alloc(layout) };
        // SAFETY: fresh allocation of `len` bytes, 64-aligned.
        unsafe { Zone::init(p, len) }.expect("region large enough")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_rejects_small_regions() {
        assert!(Layout::plan(1024).is_none());
        assert!(Layout::plan(MIN_REGION).is_some());
    }

    #[test]
    fn plan_is_aligned_and_fits() {
        for len in [MIN_REGION, 100_000, 1 << 20, 64 << 20] {
            let l = Layout::plan(len).unwrap();
            assert_eq!(l.slots_off % 64, 0);
            assert_eq!(l.claims_off % 64, 0);
            assert_eq!(l.ring_off % 64, 0);
            assert!(l.claims_off >= l.slots_off + (SLOTS * core::mem::size_of::<Slot>()) as u64);
            assert!(
                l.ring_off >= l.claims_off + l.claims_cap * core::mem::size_of::<Claim>() as u64
            );
            assert!(l.ring_off + l.ring_cap <= len as u64);
            assert_eq!(l.ring_cap % 8, 0);
        }
    }

    #[test]
    fn the_log_counters_have_a_line_of_their_own() {
        let ring = core::mem::offset_of!(Header, ring);
        let next = ring + core::mem::size_of::<RingHeader>();
        assert_eq!(ring % 64, 0);
        assert!(core::mem::offset_of!(Header, push_below) < ring);
        assert!(core::mem::offset_of!(Header, generation) >= next);
        assert_eq!(next % 64, 0);
    }

    #[test]
    fn a_post_scans_only_slots_that_had_push() {
        let z = testing::zone(1 << 20);
        let l = crate::zone::lock::TestLock::default();
        let slots = z.slots();
        let a = slots.acquire(&l, 1, 0, 1, 0, |_| true).unwrap();
        let b = slots.acquire(&l, 2, 1, 1, 0, |_| true).unwrap();
        let mut woken = Vec::new();
        z.to_wake(Some(a), |_, p| woken.push(p));
        assert!(woken.is_empty(), "no slot has push yet");
        z.push_on(b);
        z.push_on(a);
        assert_eq!(
            z.header().push_below.load(Ordering::Relaxed) as usize,
            a.max(b) + 1
        );
        z.to_wake(Some(a), |_, p| woken.push(p));
        assert_eq!(woken, vec![2]);
        // A slot at or above the mark is not scanned, whatever its flag.
        z.header().push_below.store(b as u32, Ordering::Relaxed);
        assert!(slots.take_wake(b));
        z.to_wake(Some(a), |_, p| woken.push(p));
        assert_eq!(woken, vec![2]);
    }

    #[test]
    fn a_1m_zone_carries_a_500k_record() {
        // What nginx's slab pool leaves of a 1m zone for our region.
        let region = (1 << 20) - 3 * 4096;
        let l = Layout::plan(region).unwrap();
        let z = testing::zone(region);
        assert_eq!(z.layout(), l);
        assert!(
            z.ring().max_record() > 500 * 1024 + 64,
            "{}",
            z.ring().max_record()
        );
    }

    #[test]
    fn attach_sees_init_and_generations_count() {
        let z = testing::zone(1 << 20);
        // SAFETY: same region.
        let z2 = unsafe { Zone::attach(z.base()) }.unwrap();
        assert_eq!(z2.ring().cap(), z.ring().cap());
        assert_eq!(z2.ring().header().head_seq.load(Ordering::Relaxed), 1);
        assert_eq!(z.begin_generation(), 1);
        assert_eq!(z2.begin_generation(), 2);
        assert_eq!(z.generation(), 2);
    }
}
