//! The Lua surface: the packages we preload into lua-nginx-module (and into
//! stream-lua-nginx-module, when nginx has it: the same packages, on the
//! same zones, for `stream {}` Lua), and the native functions they stand on.
//!
//! | package | file | what |
//! |---|---|---|
//! | `ngx_worker_events.bus` | `bus.lua` | the shared core every API stands on: a consumer, its dispatch loop, local events, lost events, unique claims |
//! | `ngx_worker_events.payload` | `payload.lua` | the payload codec over LuaJIT FFI (`crate::wire::payload`'s format; the native encoder and decoder have the last word) |
//! | `resty.worker.events` | `worker_events.lua` | lua-resty-worker-events 2.x (and 1.x): handler tree, argument checks, its events and messages |
//! | `resty.events` | `events.lua` | lua-resty-events 0.3.x: options, targets, subscriptions by id, its messages |
//! | `resty.events.compat` | `events_compat.lua` | lua-resty-events' worker-events shim, over one `resty.events` instance |
//! | `resty.worker.manager` | `manager.lua` | lua-resty-worker-manager: lifecycle callbacks and counts, crashed/hung workers |
//! | `ngx_tasks` | `tasks.lua` | ngx_tasks: interval tasks on every worker or one per node, windows claimed in the zone |
//! | `ngx_worker_events.cluster` | `cluster.lua` | the Redis Streams bridge: lease, XADD of cluster events, XREAD of other nodes', cluster claims |
//! | `ngx_worker_events.cluster_link` | `cluster_link.lua` | the bridge's Redis side: connecting, replies read natively, failures logged once per outage, backoff |
//!
//! Native side: `native/` (the table each package gets, one file per
//! package it serves: `bus` the FFI post and fetch, and the native `post` and `decode` on the raw C API,
//! `manager`, `tasks`, `cluster`, `cluster_feed` and `cluster_replies`), `exports` (every `extern "C"` function for LuaJIT FFI, and the one
//! `cdef` that declares them), `value` (Lua values <-> `crate::wire::payload`).

#[cfg(not(test))]
pub mod exports;
#[cfg(not(test))]
pub mod native;
pub mod value;
#[cfg(test)]
mod value_tests;

#[cfg(not(test))]
pub use preload::{register_preload, PreloadError};

#[cfg(not(test))]
mod preload {
    use core::ffi::{c_int, CStr};

    use mlua::Lua;
    use ngx::ffi::{ngx_conf_t, ngx_int_t, NGX_LOG_EMERG, NGX_OK};
    use ngx::ngx_conf_log_error;

    use crate::ngx::lua_module::{self, AddPreload, LuaCFunction, Subsystem};

    /// The packages: (name, chunk name, embedded source).
    const PACKAGES: [(&CStr, &str, &str); 9] = [
        (
            c"ngx_worker_events.bus",
            "=ngx_worker_events.bus",
            include_str!("bus.lua"),
        ),
        (
            c"ngx_worker_events.payload",
            "=ngx_worker_events.payload",
            include_str!("payload.lua"),
        ),
        (
            c"resty.worker.events",
            "=resty.worker.events",
            include_str!("worker_events.lua"),
        ),
        (c"resty.events", "=resty.events", include_str!("events.lua")),
        (
            c"resty.events.compat",
            "=resty.events.compat",
            include_str!("events_compat.lua"),
        ),
        (
            c"resty.worker.manager",
            "=resty.worker.manager",
            include_str!("manager.lua"),
        ),
        (c"ngx_tasks", "=ngx_tasks", include_str!("tasks.lua")),
        (
            c"ngx_worker_events.cluster",
            "=ngx_worker_events.cluster",
            include_str!("cluster.lua"),
        ),
        (
            c"ngx_worker_events.cluster_link",
            "=ngx_worker_events.cluster_link",
            include_str!("cluster_link.lua"),
        ),
    ];

    /// Why the packages could not be registered.
    #[derive(Debug, thiserror::Error)]
    pub enum PreloadError {
        #[error("ngx_http_lua_module is not loaded; load ndk_http_module.so and ngx_http_lua_module.so with load_module")]
        NoLuaModule,
        #[error("adding the package preload failed for {0}")]
        Refused(&'static str),
    }

    /// Registers our packages with `subsystem`'s lua module: http's
    /// lua-nginx-module must be there; stream-lua is optional (an nginx
    /// without it, e.g. Debian's, gets nothing for `stream {}`, silently).
    ///
    /// # Safety
    /// `cf` must be the configuration being parsed (from that subsystem's
    /// preconfiguration: `cf->ctx` is its configuration context).
    pub unsafe fn register_preload(
        cf: *mut ngx_conf_t,
        subsystem: Subsystem,
    ) -> Result<(), PreloadError> {
        let Some(add) = lua_module::add_package_preload(subsystem) else {
            return match subsystem {
                Subsystem::Stream => Ok(()),
                Subsystem::Http => {
                    let e = PreloadError::NoLuaModule;
                    ngx_conf_log_error!(NGX_LOG_EMERG, cf, "{}{}", crate::ngx::log::PREFIX, e);
                    Err(e)
                }
            };
        };
        let result = add_all(cf, add);
        if let Err(e) = &result {
            ngx_conf_log_error!(NGX_LOG_EMERG, cf, "{}{}", crate::ngx::log::PREFIX, e);
        }
        result
    }

    fn add_all(cf: *mut ngx_conf_t, add: AddPreload) -> Result<(), PreloadError> {
        let loaders: [LuaCFunction; PACKAGES.len()] = [
            open::<0>, open::<1>, open::<2>, open::<3>, open::<4>, open::<5>, open::<6>, open::<7>,
            open::<8>,
        ];
        for ((name, chunk, _), loader) in PACKAGES.iter().zip(loaders) {
            // SAFETY: `cf` is the configuration being parsed; the name is static.
            if unsafe { add(cf, name.as_ptr(), loader) } != NGX_OK as ngx_int_t {
                return Err(PreloadError::Refused(chunk));
            }
        }
        Ok(())
    }

    /// `package.preload[PACKAGES[I].0]`: runs the embedded chunk with the
    /// native table as its argument.
    unsafe extern "C-unwind" fn open<const I: usize>(state: *mut mlua::ffi::lua_State) -> c_int {
        let (_, chunk, src) = PACKAGES[I];
        // SAFETY: lua-nginx-module calls preload loaders with a valid state;
        // entrypoint1 converts Rust errors and panics into Lua errors.
        unsafe {
            Lua::entrypoint1(state, move |lua| {
                let native = crate::lua::native::create(lua)?;
                lua.load(src).set_name(chunk).call::<mlua::Value>(native)
            })
        }
    }
}
