//! nginx side of the shared zones: declaring one, the init callback that
//! carves the region out of the slab pool, the lock (the slab pool mutex),
//! and finding zones by name in the running cycle.
//!
//! The slab pool mutex is the only lock used on zone memory: when a worker
//! dies holding it, the nginx master force-unlocks it, so a crash mid-post
//! cannot wedge the other workers (see `zone::ring` for why the log stays
//! consistent). Layout and algorithms live in `zone`, not here.

use core::ffi::c_void;
use core::ptr;

use ngx::ffi::{
    ngx_conf_t, ngx_cycle, ngx_cycle_t, ngx_int_t, ngx_list_part_t, ngx_pagesize,
    ngx_shared_memory_add, ngx_shm_zone_t, ngx_slab_alloc, ngx_slab_pool_t, ngx_str_t, NGX_ERROR,
    NGX_OK,
};

use crate::zone::{Zone, ZoneLock};
use ngx::core::slab::LockedSlabPool;
use ngx::core::SlabPool;

/// The tag of our shared zones. Any unique address does: nginx refuses a
/// second declaration of a name under another tag (a `lua_shared_dict` of
/// the same name, say) with "is already declared for a different use".
static TAG: u8 = 0;

fn tag() -> *mut c_void {
    ptr::addr_of!(TAG) as *mut c_void
}

/// A zone attached in this process: the layout view plus its lock.
#[derive(Clone, Debug)]
pub struct ZoneHandle {
    pub zone: Zone,
    pool: SlabPool,
    /// The generation this process' configuration cycle began in the zone
    /// (not the zone's newest: a reload that failed after adopting the zone
    /// began one that no worker belongs to).
    pub generation: u64,
}

/// The generation each cycle's zone entry began (`zone_init` runs in the
/// master; workers inherit the table): (`ngx_shm_zone_t` address, generation).
static GENERATIONS: std::sync::Mutex<Vec<(usize, u64)>> = std::sync::Mutex::new(Vec::new());

/// Entries kept (old cycles' entries are never looked up again).
const GENERATIONS_KEPT: usize = 64;

fn record_generation(shm_zone: *const ngx_shm_zone_t, generation: u64) {
    if let Ok(mut g) = GENERATIONS.lock() {
        g.retain(|&(z, _)| z != shm_zone as usize);
        g.push((shm_zone as usize, generation));
        let excess = g.len().saturating_sub(GENERATIONS_KEPT);
        g.drain(..excess);
    }
}

fn generation_of(shm_zone: *const ngx_shm_zone_t) -> Option<u64> {
    let g = GENERATIONS.lock().ok()?;
    g.iter()
        .rev()
        .find(|&&(z, _)| z == shm_zone as usize)
        .map(|&(_, n)| n)
}

impl ZoneLock for ZoneHandle {
    type Held<'a> = LockedSlabPool;
    /// The slab pool mutex (the master force-unlocks it when a worker dies
    /// holding it), released when the returned value is dropped.
    fn lock(&self) -> LockedSlabPool {
        self.pool.lock()
    }
}

/// Why a zone could not be declared.
#[derive(Debug)]
pub enum DeclareError {
    /// nginx refused it (it logged why, e.g. a name used for a different use).
    Refused,
}

/// Declares one of our zones in the configuration being parsed.
///
/// # Safety
/// `cf` must be the configuration being parsed (a directive handler or an
/// http module configuration callback).
pub unsafe fn declare(cf: *mut ngx_conf_t, name: &str, size: usize) -> Result<(), DeclareError> {
    // The name must outlive the cycle: copy it into the configuration pool.
    // SAFETY: `cf` is valid, so is its pool.
    let data = unsafe { ngx::ffi::ngx_pnalloc((*cf).pool, name.len()) } as *mut u8;
    if data.is_null() {
        return Err(DeclareError::Refused);
    }
    // SAFETY: `data` has `name.len()` bytes.
    unsafe { ptr::copy_nonoverlapping(name.as_ptr(), data, name.len()) };
    let mut s = ngx_str_t {
        len: name.len(),
        data,
    };
    // SAFETY: valid cf and name; the tag is a static address.
    let shm_zone = unsafe { ngx_shared_memory_add(cf, &mut s, size, tag()) };
    if shm_zone.is_null() {
        return Err(DeclareError::Refused);
    }
    // SAFETY: nginx returned a valid zone owned by the cycle.
    unsafe {
        (*shm_zone).init = Some(zone_init);
        (*shm_zone).noreuse = 0;
    }
    Ok(())
}

/// True if the configuration being parsed already has a shared zone `name`
/// (of any module).
///
/// # Safety
/// `cf` must be the configuration being parsed.
pub unsafe fn declared(cf: *mut ngx_conf_t, name: &str) -> bool {
    // SAFETY: the cycle under construction is valid while `cf` is.
    let found = unsafe { zones_of((*cf).cycle) }
        .into_iter()
        // SAFETY: elements of the cycle's list, valid while it is.
        .any(|z| unsafe { (*z).shm.name.as_bytes() } == name.as_bytes());
    found
}

/// `shm_zone->init`, in the master at every configuration cycle: lays out a
/// fresh zone, or adopts the previous cycle's one (same name, size and tag
/// across a reload: nginx passes its old `data`). Either way a new
/// generation begins.
unsafe extern "C" fn zone_init(shm_zone: *mut ngx_shm_zone_t, data: *mut c_void) -> ngx_int_t {
    crate::ngx::catch_unwind_or(NGX_ERROR as ngx_int_t, || {
        // SAFETY: nginx calls this with the zone being initialised; for a
        // slab zone `shm.addr` starts with an initialised ngx_slab_pool_t.
        let zone = unsafe { &mut *shm_zone };
        let pool = zone.shm.addr as *mut ngx_slab_pool_t;
        if !data.is_null() {
            zone.data = data;
            // SAFETY: `data` is the region our init laid out in an earlier cycle.
            if let Some(z) = unsafe { Zone::attach(data.cast()) } {
                record_generation(shm_zone, z.begin_generation());
            }
            return NGX_OK as ngx_int_t;
        }
        // SAFETY: the pool header is valid (see above); reading counters only.
        let (pfree, pagesize) = unsafe { ((*pool).pfree, ngx_pagesize) };
        let len = (pfree.saturating_sub(1)) * pagesize;
        // SAFETY: a fresh pool; ngx_slab_alloc locks it itself.
        let base = unsafe { ngx_slab_alloc(pool, len) } as *mut u8;
        let fresh = if base.is_null() {
            None
        } else {
            // SAFETY: `base` has `len` bytes (page-aligned) that nobody else uses.
            unsafe { Zone::init(base, len) }
        };
        let Some(z) = fresh else {
            crate::wev_log!(
                EMERG,
                "zone \"{}\" of {} bytes is too small",
                zone.shm.name,
                zone.shm.size
            );
            return NGX_ERROR as ngx_int_t;
        };
        record_generation(shm_zone, z.begin_generation());
        // SAFETY: the pool header is ours to annotate.
        unsafe { (*pool).data = base.cast() };
        zone.data = base.cast();
        NGX_OK as ngx_int_t
    })
}

/// Every shared zone of `cycle`.
///
/// # Safety
/// `cycle` must be null or a valid cycle whose shared memory list is not
/// modified while the returned pointers are used.
unsafe fn zones_of(cycle: *mut ngx_cycle_t) -> Vec<*const ngx_shm_zone_t> {
    let mut out = Vec::new();
    if cycle.is_null() {
        return out;
    }
    // SAFETY: per the contract, a valid list of ngx_shm_zone_t parts.
    unsafe {
        let mut part: *const ngx_list_part_t = &(*cycle).shared_memory.part;
        while !part.is_null() {
            let elts = (*part).elts as *const ngx_shm_zone_t;
            for i in 0..(*part).nelts {
                out.push(elts.add(i));
            }
            part = (*part).next;
        }
    }
    out
}

/// What a name refers to in the running cycle.
pub enum Lookup {
    /// One of our zones.
    Ours(ZoneHandle),
    /// A shared zone that belongs to another module (e.g. a `lua_shared_dict`).
    Foreign,
    /// No shared zone of that name (or ours, not initialised).
    Missing,
}

/// Our zone behind an nginx zone entry, if it is ours and initialised.
///
/// # Safety
/// `z` is an element of the running cycle's shared memory list.
unsafe fn handle_of(z: *const ngx_shm_zone_t) -> Option<ZoneHandle> {
    // SAFETY: per the contract.
    let z = unsafe { &*z };
    if z.tag != tag() || z.data.is_null() {
        return None;
    }
    // SAFETY: our zones' `data` is the region `zone_init` laid out.
    let zone = unsafe { Zone::attach(z.data.cast()) }?;
    // SAFETY: an initialised zone of the running cycle (see the contract):
    // mapped for the whole life of this process' cycle.
    let pool = unsafe { SlabPool::from_shm_zone(z) }?;
    Some(ZoneHandle {
        zone,
        pool,
        generation: generation_of(z).unwrap_or_else(|| zone.generation()),
    })
}

/// `init_module`: nginx committed `cycle` and spawns its workers next.
/// Marks each of our zones' generation of this cycle as committed.
///
/// # Safety
/// `cycle` must be null or the committed cycle nginx passes to `init_module`.
pub unsafe fn commit(cycle: *mut ngx_cycle_t) {
    // SAFETY: per the contract; the list is complete once the cycle is committed.
    for z in unsafe { zones_of(cycle) } {
        // SAFETY: an element of the cycle's list.
        if let Some(h) = unsafe { handle_of(z) } {
            h.zone
                .header()
                .committed_generation
                .fetch_max(h.generation, core::sync::atomic::Ordering::AcqRel);
        }
    }
}

/// Finds a shared zone by name in the running cycle.
pub fn lookup(name: &[u8]) -> Lookup {
    // SAFETY: `ngx_cycle` is valid in any process running Lua code; the
    // shared_memory list is immutable once the cycle is running.
    for z in unsafe { zones_of(ngx_cycle) } {
        // SAFETY: an element of the running cycle's list.
        if unsafe { (*z).shm.name.as_bytes() } != name {
            continue;
        }
        // SAFETY: as above.
        return match unsafe { ((*z).tag == tag(), handle_of(z)) } {
            (true, Some(h)) => Lookup::Ours(h),
            (true, None) => Lookup::Missing,
            (false, _) => Lookup::Foreign,
        };
    }
    Lookup::Missing
}

/// Names and handles of all our zones in the running cycle, in declaration order.
pub fn ours() -> Vec<(String, ZoneHandle)> {
    // SAFETY: as in `lookup`.
    unsafe { zones_of(ngx_cycle) }
        .into_iter()
        .filter_map(|z| {
            // SAFETY: elements of the running cycle's list.
            let h = unsafe { handle_of(z) }?;
            // SAFETY: as above.
            let name = unsafe { (*z).shm.name.to_string() };
            Some((name, h))
        })
        .collect()
}
