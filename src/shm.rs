//! nginx side of the shared zone: the init callback that carves the region
//! out of the slab pool, the lock (the slab pool mutex), and finding a zone
//! by name in the running cycle.
//!
//! The slab pool mutex is the only lock used on zone memory: when a worker
//! dies holding it, the nginx master force-unlocks it, so a crash mid-post
//! cannot wedge the other workers (see `zone::ring` for why the log stays
//! consistent). Layout and algorithms live in `zone`, not here.

use core::ffi::c_void;
use core::ptr;

use ngx::ffi::{
    ngx_cycle, ngx_int_t, ngx_list_part_t, ngx_pagesize, ngx_shm_zone_t, ngx_shmtx_lock,
    ngx_shmtx_unlock, ngx_slab_alloc, ngx_slab_pool_t,
};

use crate::zone::{Zone, ZoneLock};

/// A zone attached in this process: the layout view plus its lock.
#[derive(Clone, Copy, Debug)]
pub struct ZoneHandle {
    pub zone: Zone,
    pool: *mut ngx_slab_pool_t,
}

impl ZoneLock for ZoneHandle {
    fn lock(&self) {
        // SAFETY: `pool` is the slab pool at the start of a mapped zone, and its
        // mutex was created by nginx (ngx_init_zone_pool).
        unsafe { ngx_shmtx_lock(ptr::addr_of_mut!((*self.pool).mutex)) }
    }
    fn unlock(&self) {
        // SAFETY: as for `lock`; only called by the holder (see `zone::Guard`).
        unsafe { ngx_shmtx_unlock(ptr::addr_of_mut!((*self.pool).mutex)) }
    }
}

/// `shm_zone->init`: lay out a fresh zone, or adopt the previous cycle's one
/// (same name, size and tag across a reload: nginx passes its old `data`).
pub unsafe extern "C" fn zone_init(shm_zone: *mut ngx_shm_zone_t, data: *mut c_void) -> ngx_int_t {
    crate::util::catch_unwind_or(ngx::ffi::NGX_ERROR as ngx_int_t, || {
        // SAFETY: nginx calls this with the zone being initialised; for a
        // slab zone `shm.addr` starts with an initialised ngx_slab_pool_t.
        let zone = unsafe { &mut *shm_zone };
        let pool = zone.shm.addr as *mut ngx_slab_pool_t;
        if !data.is_null() {
            zone.data = data;
            return ngx::ffi::NGX_OK as ngx_int_t;
        }
        // SAFETY: the pool header is valid (see above); reading counters only.
        let (pfree, pagesize) = unsafe { ((*pool).pfree, ngx_pagesize) };
        let len = (pfree.saturating_sub(1)) * pagesize;
        // SAFETY: a fresh pool; ngx_slab_alloc locks it itself.
        let base = unsafe { ngx_slab_alloc(pool, len) } as *mut u8;
        // SAFETY: `base` has `len` bytes (page-aligned) that nobody else uses.
        let Some(_) = (if base.is_null() {
            None
        } else {
            unsafe { Zone::init(base, len) }
        }) else {
            crate::wev_log!(
                EMERG,
                "zone \"{}\" of {} bytes is too small",
                zone.shm.name,
                zone.shm.size
            );
            return ngx::ffi::NGX_ERROR as ngx_int_t;
        };
        // SAFETY: the pool header is ours to annotate.
        unsafe { (*pool).data = base.cast() };
        zone.data = base.cast();
        ngx::ffi::NGX_OK as ngx_int_t
    })
}

/// What a name refers to in the running cycle.
pub enum Lookup {
    /// One of our zones.
    Ours(ZoneHandle),
    /// A shared zone that belongs to another module (e.g. a `lua_shared_dict`).
    Foreign,
    /// No shared zone of that name.
    Missing,
}

/// Finds a shared zone by name in the current cycle.
pub fn lookup(name: &[u8]) -> Lookup {
    // SAFETY: `ngx_cycle` is valid in any process running Lua code; the
    // shared_memory list is immutable once the cycle is running.
    unsafe {
        let cycle = ngx_cycle;
        if cycle.is_null() {
            return Lookup::Missing;
        }
        let mut part: *const ngx_list_part_t = &(*cycle).shared_memory.part;
        let tag = ptr::addr_of!(crate::glue::ngx_http_worker_events_module) as *mut c_void;
        while !part.is_null() {
            let elts = (*part).elts as *const ngx_shm_zone_t;
            for i in 0..(*part).nelts {
                let z = &*elts.add(i);
                if z.shm.name.as_bytes() != name {
                    continue;
                }
                if z.tag != tag {
                    return Lookup::Foreign;
                }
                let pool = z.shm.addr as *mut ngx_slab_pool_t;
                let Some(zone) = (!z.data.is_null())
                    .then(|| Zone::attach(z.data as *mut u8))
                    .flatten()
                else {
                    return Lookup::Missing;
                };
                return Lookup::Ours(ZoneHandle { zone, pool });
            }
            part = (*part).next;
        }
        Lookup::Missing
    }
}
