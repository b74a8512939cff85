//! Where things live inside a zone's region, and attaching to it.
//!
//! ```text
//! | Header | slots[slots_cap] | claims[claims_cap] | log ring[ring_cap] |
//! ```
//! All offsets are multiples of 64 (one cache line). The header records the
//! computed layout, so a process attaching to an existing zone (a worker, or
//! a new cycle reusing the zone across a reload) never recomputes it.

use core::sync::atomic::{AtomicU64, Ordering};

use super::claims::Claim;
use super::slots::Slot;

/// Identifies an initialised region ("ngxwev" + layout version 1).
pub const MAGIC: u64 = 0x6e67_7877_6576_0001;
/// Smallest region we accept; see `conf::MIN_ZONE_SIZE` for the directive's limit.
pub const MIN_REGION: usize = 32 * 1024;
/// Number of worker slots (processes that can be attached at once, across
/// old and new generations during a reload).
pub const SLOTS: usize = 128;
/// Largest record as a fraction of the ring: `ring_cap / MAX_RECORD_DIVISOR`.
pub const MAX_RECORD_DIVISOR: u64 = 4;

const ALIGN: usize = 64;

/// The zone header. Mutable fields are atomics; the rest is written once.
#[repr(C, align(64))]
pub struct Header {
    pub magic: u64,
    pub region_len: u64,
    pub ring_off: u64,
    pub ring_cap: u64,
    pub claims_off: u64,
    pub claims_cap: u64,
    pub slots_off: u64,
    pub slots_cap: u64,
    /// One past the last committed record (log position). Written under the
    /// lock with Release, read lock-free with Acquire.
    pub head: AtomicU64,
    /// The seq the next record gets.
    pub head_seq: AtomicU64,
    /// Position of the oldest intact record.
    pub tail: AtomicU64,
    /// Records appended since the zone was created.
    pub posted: AtomicU64,
    /// Records evicted from the log to make room since the zone was created.
    pub evicted: AtomicU64,
    /// Bumped each time a process attaches; lets slots tell generations apart.
    pub attaches: AtomicU64,
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

fn align_up(n: usize) -> usize {
    (n + ALIGN - 1) & !(ALIGN - 1)
}

/// The computed layout for a region of `len` bytes, or `None` if too small.
pub fn plan(len: usize) -> Option<(usize, usize, usize, usize, usize)> {
    if len < MIN_REGION {
        return None;
    }
    let slots_off = align_up(core::mem::size_of::<Header>());
    let slots_len = SLOTS * core::mem::size_of::<Slot>();
    let claims_off = align_up(slots_off + slots_len);
    // Claims: 1/32 of the region, between 64 and 8192 entries.
    let claims_cap = (len / 32 / core::mem::size_of::<Claim>()).clamp(64, 8192);
    let ring_off = align_up(claims_off + claims_cap * core::mem::size_of::<Claim>());
    if ring_off + 4096 > len {
        return None;
    }
    let ring_cap = (len - ring_off) & !7;
    Some((slots_off, claims_off, claims_cap, ring_off, ring_cap))
}

impl Zone {
    /// Lays out a fresh region and zeroes its header, slots and claims.
    ///
    /// # Safety
    /// `base` must point to `len` writable bytes, 64-byte aligned, that no
    /// other process uses yet, and that outlive every copy of the returned view.
    pub unsafe fn init(base: *mut u8, len: usize) -> Option<Zone> {
        let (slots_off, claims_off, claims_cap, ring_off, ring_cap) = plan(len)?;
        debug_assert_eq!(base as usize % ALIGN, 0);
        // SAFETY: the caller guarantees `len` writable bytes; ring_off <= len.
        unsafe { core::ptr::write_bytes(base, 0, ring_off) };
        // SAFETY: zeroed memory is a valid Header (integers and atomics).
        let h = unsafe { &mut *(base as *mut Header) };
        h.region_len = len as u64;
        h.ring_off = ring_off as u64;
        h.ring_cap = ring_cap as u64;
        h.claims_off = claims_off as u64;
        h.claims_cap = claims_cap as u64;
        h.slots_off = slots_off as u64;
        h.slots_cap = SLOTS as u64;
        h.head_seq.store(1, Ordering::Relaxed);
        h.magic = MAGIC;
        Some(Zone { base })
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

    /// Capacity of the log in bytes.
    pub fn ring_cap(&self) -> u64 {
        self.header().ring_cap
    }

    /// The largest record the log accepts, in bytes (header included).
    pub fn max_record(&self) -> u64 {
        (self.ring_cap() / MAX_RECORD_DIVISOR) & !7
    }

    pub(crate) fn ring_ptr(&self) -> *mut u8 {
        // SAFETY: ring_off < region_len, checked by `plan`.
        unsafe { self.base.add(self.header().ring_off as usize) }
    }

    pub(crate) fn claims(&self) -> &[Claim] {
        let h = self.header();
        // SAFETY: the claims array lies inside the region and is made of
        // atomics, so shared references to it are sound across processes.
        unsafe {
            core::slice::from_raw_parts(
                self.base.add(h.claims_off as usize) as *const Claim,
                h.claims_cap as usize,
            )
        }
    }

    pub(crate) fn slots(&self) -> &[Slot] {
        let h = self.header();
        // SAFETY: as for `claims`.
        unsafe {
            core::slice::from_raw_parts(
                self.base.add(h.slots_off as usize) as *const Slot,
                h.slots_cap as usize,
            )
        }
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
        assert!(plan(1024).is_none());
        assert!(plan(MIN_REGION).is_some());
    }

    #[test]
    fn plan_is_aligned_and_fits() {
        for len in [MIN_REGION, 100_000, 1 << 20, 64 << 20] {
            let (s, c, cc, r, rc) = plan(len).unwrap();
            assert_eq!(s % 64, 0);
            assert_eq!(c % 64, 0);
            assert_eq!(r % 64, 0);
            assert!(c >= s + SLOTS * core::mem::size_of::<Slot>());
            assert!(r >= c + cc * core::mem::size_of::<Claim>());
            assert!(r + rc <= len);
            assert_eq!(rc % 8, 0);
        }
    }

    #[test]
    fn attach_sees_init() {
        let z = testing::zone(1 << 20);
        // SAFETY: same region.
        let z2 = unsafe { Zone::attach(z.base()) }.unwrap();
        assert_eq!(z2.ring_cap(), z.ring_cap());
        assert_eq!(z2.header().head_seq.load(Ordering::Relaxed), 1);
    }
}
