//! The C functions lua-nginx-module and stream-lua-nginx-module export,
//! found with `dlsym`.
//!
//! Looking them up at run time (instead of linking against them) makes the
//! `load_module` order irrelevant, turns a missing lua module into a clean
//! `[emerg]` instead of a dlopen failure, and leaves the stream subsystem
//! alone on an nginx without stream-lua (Debian's).

use core::ffi::{c_char, c_int, c_void, CStr};

use ngx::ffi::{ngx_conf_t, ngx_int_t};

/// A `lua_CFunction`.
pub type LuaCFunction = unsafe extern "C-unwind" fn(*mut mlua::ffi::lua_State) -> c_int;
/// `ngx_{http,stream}_lua_add_package_preload(cf, name, loader)`.
pub type AddPreload =
    unsafe extern "C" fn(*mut ngx_conf_t, *const c_char, LuaCFunction) -> ngx_int_t;
/// `ngx_{http,stream}_lua_ffi_sema_post(sem, n)`.
pub type SemaPost = unsafe extern "C" fn(*mut c_void, c_int) -> c_int;

/// The nginx subsystem a Lua VM runs in (`ngx.config.subsystem`): each has
/// its own lua module, Lua states and semaphore type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Subsystem {
    #[default]
    Http,
    Stream,
}

impl Subsystem {
    /// Stream when `stream` (what Lua passes: `ngx.config.subsystem ==
    /// "stream"`), else http.
    pub fn from_stream(stream: bool) -> Self {
        if stream {
            Subsystem::Stream
        } else {
            Subsystem::Http
        }
    }

    /// `ngx.config.subsystem`'s name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Subsystem::Http => "http",
            Subsystem::Stream => "stream",
        }
    }
}

fn symbol(name: &CStr) -> *mut c_void {
    // SAFETY: dlsym with RTLD_DEFAULT searches the global scope, where nginx
    // put the lua modules (modules are dlopened RTLD_GLOBAL; OpenResty's are
    // in the binary, linked with -Wl,-E).
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) }
}

/// `ngx_{http,stream}_lua_add_package_preload`, if that lua module is loaded.
pub fn add_package_preload(subsystem: Subsystem) -> Option<AddPreload> {
    let sym = symbol(match subsystem {
        Subsystem::Http => c"ngx_http_lua_add_package_preload",
        Subsystem::Stream => c"ngx_stream_lua_add_package_preload",
    });
    // SAFETY: lua-nginx-module >= 0.10 and stream-lua-nginx-module >= 0.0.7
    // export it with this signature.
    (!sym.is_null()).then(|| unsafe { core::mem::transmute::<*mut c_void, AddPreload>(sym) })
}

/// `ngx_{http,stream}_lua_ffi_sema_post(sem, n)` (what `ngx.semaphore:post`
/// calls in that subsystem).
pub fn sema_post(subsystem: Subsystem) -> Option<SemaPost> {
    let sym = symbol(match subsystem {
        Subsystem::Http => c"ngx_http_lua_ffi_sema_post",
        Subsystem::Stream => c"ngx_stream_lua_ffi_sema_post",
    });
    // SAFETY: lua-nginx-module 0.10.x and stream-lua-nginx-module 0.0.x
    // export it with this signature.
    (!sym.is_null()).then(|| unsafe { core::mem::transmute::<*mut c_void, SemaPost>(sym) })
}
