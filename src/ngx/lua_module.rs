//! The C functions lua-nginx-module exports, found with `dlsym`.
//!
//! Looking them up at run time (instead of linking against them) makes the
//! `load_module` order irrelevant and turns a missing lua module into a
//! clean `[emerg]` instead of a dlopen failure.

use core::ffi::{c_char, c_int, c_void, CStr};

use ngx::ffi::{ngx_conf_t, ngx_int_t};

/// A `lua_CFunction`.
pub type LuaCFunction = unsafe extern "C-unwind" fn(*mut mlua::ffi::lua_State) -> c_int;
type AddPreload = unsafe extern "C" fn(*mut ngx_conf_t, *const c_char, LuaCFunction) -> ngx_int_t;
type SemaPost = unsafe extern "C" fn(*mut c_void, c_int) -> c_int;

fn symbol(name: &CStr) -> *mut c_void {
    // SAFETY: dlsym with RTLD_DEFAULT searches the global scope, where nginx
    // put lua-nginx-module (modules are dlopened RTLD_GLOBAL).
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) }
}

/// `ngx_http_lua_add_package_preload`, if lua-nginx-module is loaded.
pub fn add_package_preload() -> Option<AddPreload> {
    let sym = symbol(c"ngx_http_lua_add_package_preload");
    // SAFETY: lua-nginx-module >= 0.10 exports it with this signature.
    (!sym.is_null()).then(|| unsafe { core::mem::transmute::<*mut c_void, AddPreload>(sym) })
}

/// `ngx_http_lua_ffi_sema_post(sem, n)` (what `ngx.semaphore:post` calls).
pub fn sema_post() -> Option<SemaPost> {
    let sym = symbol(c"ngx_http_lua_ffi_sema_post");
    // SAFETY: lua-nginx-module 0.10.x exports it with this signature.
    (!sym.is_null()).then(|| unsafe { core::mem::transmute::<*mut c_void, SemaPost>(sym) })
}
