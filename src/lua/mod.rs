//! The Lua surface: registering our Lua modules with lua-nginx-module, and
//! the native functions they stand on.
//!
//! - `resty.worker.events` (file `worker_events.lua`, embedded in the .so):
//!   the lua-resty-worker-events 2.x API, written in Lua over `core`.
//! - `core` (`core.rs`): native functions (attach, claim, stats, ...);
//! - `hot` (`hot.rs`): the per-event ones, `post` and `fetch`, on the raw C API.
//! - `value` (`value.rs`): Lua values <-> `crate::codec`.
//! - `ffi` (`ffi.rs`): `extern "C"` hot paths called through LuaJIT FFI.
//!
//! lua-nginx-module is found at configuration time with `dlsym`, so the
//! `load_module` order does not matter and a missing lua module gives a clean
//! `[emerg]` instead of a dlopen failure.

pub mod core;
pub mod ffi;
pub mod hot;
pub mod value;

use ::core::ffi::{c_char, c_int, c_void, CStr};

use mlua::Lua;
use ngx::ffi::{ngx_conf_t, ngx_int_t, NGX_LOG_EMERG};
use ngx::ngx_conf_log_error;

type LuaCFunction = unsafe extern "C-unwind" fn(*mut mlua::ffi::lua_State) -> c_int;
type AddPreload = unsafe extern "C" fn(*mut ngx_conf_t, *const c_char, LuaCFunction) -> ngx_int_t;

/// The Lua source of `resty.worker.events`.
const WORKER_EVENTS_LUA: &str = include_str!("worker_events.lua");

pub(crate) fn lookup_symbol(name: &CStr) -> *mut c_void {
    // SAFETY: dlsym with RTLD_DEFAULT searches the global scope, where nginx
    // put lua-nginx-module (modules are dlopened RTLD_GLOBAL).
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) }
}

/// Registers our packages with lua-nginx-module (from preconfiguration, so
/// they are available in `init_by_lua*` too, and in every VM after a reload).
///
/// # Safety
/// `cf` must be the configuration being parsed (from preconfiguration).
#[allow(clippy::result_unit_err)]
pub unsafe fn register_preload(cf: *mut ngx_conf_t) -> Result<(), ()> {
    let sym = lookup_symbol(c"ngx_http_lua_add_package_preload");
    if sym.is_null() {
        ngx_conf_log_error!(
            NGX_LOG_EMERG,
            cf,
            "{}ngx_http_lua_module is not loaded; load ndk_http_module.so and ngx_http_lua_module.so with load_module",
            crate::log::PREFIX
        );
        return Err(());
    }
    // SAFETY: the symbol has this signature in lua-nginx-module >= 0.10.
    let add: AddPreload = unsafe { ::core::mem::transmute::<*mut c_void, AddPreload>(sym) };
    // SAFETY: valid cf; the package name is a static C string.
    let rc = unsafe { add(cf, c"resty.worker.events".as_ptr(), open_worker_events) };
    if rc != ngx::ffi::NGX_OK as ngx_int_t {
        return Err(());
    }
    Ok(())
}

/// `package.preload["resty.worker.events"]`.
unsafe extern "C-unwind" fn open_worker_events(state: *mut mlua::ffi::lua_State) -> c_int {
    // SAFETY: lua-nginx-module calls preload loaders with a valid state;
    // entrypoint1 converts Rust errors and panics into Lua errors.
    unsafe {
        Lua::entrypoint1(state, |lua| {
            load_module(lua, "=resty.worker.events", WORKER_EVENTS_LUA)
        })
    }
}

fn load_module(lua: &Lua, name: &str, src: &str) -> mlua::Result<mlua::Value> {
    let core = self::core::create(lua)?;
    lua.load(src).set_name(name).call(core)
}
