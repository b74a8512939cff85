//! ngx-worker-events: an nginx dynamic module that gives lua-nginx-module
//! code a loss-aware event bus between worker processes, and the Lua APIs
//! of lua-resty-worker-events on top of it.
//!
//! This file is the module object only: the `ngx_module_t`, its http
//! context, the directive table and the process hooks. Layers, each
//! importing only the ones below it:
//! - `lua`: the Lua surface (preloaded packages, native functions, FFI exports);
//! - `runtime`: per-process state (attachments, consumers, push, lifecycle);
//! - `zone` (pure: layout and algorithms over the shared bytes), `codec`
//!   (pure: payload format), `ngx` (thin nginx edges);
//! - `conf`: the directives, next to their handlers;
//! - `status`: the status endpoint (rendering is pure; the handler reads the zone).

// Pure logic: unit-tested with `cargo test`.
pub mod cluster_conf;
pub mod cluster_sign;
pub mod codec;
pub mod conf;
pub mod conf_refs;
pub mod resp;
pub mod resp_reader;
pub mod status;
pub mod zone;

// The Lua layer: `lua::value` is unit-tested on a bare LuaJIT state; the
// rest needs the nginx binary's symbols at run time.
pub mod lua;

// nginx- and process-facing code, left out of unit-test builds (the t/
// suite covers it against the real nginx).
#[cfg(not(test))]
pub mod ngx;
#[cfg(not(test))]
pub mod runtime;

#[cfg(not(test))]
pub use module::ngx_http_worker_events_module;

#[cfg(not(test))]
mod module {
    use core::ffi::c_void;
    use core::ptr;

    use ::ngx::core::Status;
    use ::ngx::ffi::{
        ngx_command_t, ngx_conf_t, ngx_cycle_t, ngx_http_module_t, ngx_int_t, ngx_module_t,
        ngx_uint_t, NGX_CONF_1MORE, NGX_CONF_NOARGS, NGX_CONF_TAKE1, NGX_CONF_TAKE2,
        NGX_HTTP_LOC_CONF, NGX_HTTP_LOC_CONF_OFFSET, NGX_HTTP_MAIN_CONF, NGX_HTTP_MAIN_CONF_OFFSET,
        NGX_HTTP_MODULE,
    };
    use ::ngx::http::{HttpModule, HttpModuleLocationConf, HttpModuleMainConf};
    use ::ngx::ngx_string;

    use crate::ngx::catch_unwind_or;
    use crate::runtime::lifecycle;
    use crate::{conf, lua};

    /// The http module.
    pub struct Module;

    impl HttpModule for Module {
        fn module() -> &'static ngx_module_t {
            // SAFETY: the static lives for the whole process; nginx only
            // mutates its index fields during configuration, before we read it.
            unsafe { &*ptr::addr_of!(ngx_http_worker_events_module) }
        }

        /// Registers the Lua packages (from preconfiguration, so they are
        /// available in `init_by_lua*` too, and in every VM after a reload).
        unsafe extern "C" fn preconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
            catch_unwind_or(Status::NGX_ERROR.into(), || {
                // SAFETY: nginx passes the configuration being parsed.
                match unsafe { lua::register_preload(cf) } {
                    Ok(()) => Status::NGX_OK.into(),
                    Err(_) => Status::NGX_ERROR.into(),
                }
            })
        }
    }

    // SAFETY: the main conf slot of this module holds a `conf::MainConf`.
    unsafe impl HttpModuleMainConf for Module {
        type MainConf = conf::MainConf;
    }

    // SAFETY: the location conf slot of this module holds a `status::StatusConf`.
    unsafe impl HttpModuleLocationConf for Module {
        type LocationConf = crate::status::StatusConf;
    }

    static mut COMMANDS: [ngx_command_t; 5] = [
        ngx_command_t {
            name: ngx_string!("worker_events_zone"),
            type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE2) as ngx_uint_t,
            set: Some(conf::set_zone),
            conf: NGX_HTTP_MAIN_CONF_OFFSET,
            offset: 0,
            post: ptr::null_mut(),
        },
        ngx_command_t {
            name: ngx_string!("worker_events_compat"),
            type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1) as ngx_uint_t,
            set: Some(conf::set_compat),
            conf: NGX_HTTP_MAIN_CONF_OFFSET,
            offset: 0,
            post: ptr::null_mut(),
        },
        ngx_command_t {
            name: ngx_string!("worker_events_status"),
            type_: (NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS | NGX_CONF_TAKE1) as ngx_uint_t,
            set: Some(conf::set_status),
            conf: NGX_HTTP_LOC_CONF_OFFSET,
            offset: 0,
            post: ptr::null_mut(),
        },
        ngx_command_t {
            name: ngx_string!("worker_events_cluster"),
            type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_1MORE) as ngx_uint_t,
            set: Some(conf::set_cluster),
            conf: NGX_HTTP_MAIN_CONF_OFFSET,
            offset: 0,
            post: ptr::null_mut(),
        },
        ngx_command_t::empty(),
    ];

    static CTX: ngx_http_module_t = ngx_http_module_t {
        preconfiguration: Some(Module::preconfiguration),
        postconfiguration: None,
        create_main_conf: Some(Module::create_main_conf),
        init_main_conf: Some(conf::init_main_conf),
        create_srv_conf: None,
        merge_srv_conf: None,
        create_loc_conf: Some(Module::create_loc_conf),
        merge_loc_conf: None,
    };

    ::ngx::ngx_modules!(ngx_http_worker_events_module);

    /// The module object nginx loads.
    #[used]
    #[no_mangle]
    #[allow(non_upper_case_globals)]
    pub static mut ngx_http_worker_events_module: ngx_module_t = ngx_module_t {
        ctx: ptr::addr_of!(CTX) as *mut c_void,
        // SAFETY: taking the address of a static; nginx reads the table.
        commands: unsafe { ptr::addr_of_mut!(COMMANDS[0]) },
        type_: NGX_HTTP_MODULE as ngx_uint_t,
        init_module: Some(init_module),
        init_process: Some(init_process),
        exit_process: Some(exit_process),
        ..ngx_module_t::default()
    };

    /// The cycle is committed (also under `nginx -t`): the processes it forks
    /// get its `worker_events_compat`.
    extern "C" fn init_module(cycle: *mut ngx_cycle_t) -> ngx_int_t {
        catch_unwind_or((), || {
            // SAFETY: nginx passes the committed cycle; its http main conf, if
            // any, holds our `MainConf` in this module's slot.
            let mcf = unsafe { cycle.as_ref() }.and_then(Module::main_conf);
            conf::activate(mcf.and_then(|c| c.compat).unwrap_or_default());
            crate::cluster_conf::activate();
            // SAFETY: the committed cycle (see above).
            unsafe { crate::ngx::shm::commit(cycle) };
        });
        Status::NGX_OK.into()
    }

    /// Worker start: never fails a process; quiet outside workers (cache
    /// manager/loader).
    extern "C" fn init_process(_cycle: *mut ngx_cycle_t) -> ngx_int_t {
        catch_unwind_or((), lifecycle::on_worker_start);
        Status::NGX_OK.into()
    }

    /// Worker exit.
    extern "C" fn exit_process(_cycle: *mut ngx_cycle_t) {
        catch_unwind_or((), lifecycle::on_worker_exit);
    }
}

#[cfg(test)]
mod props;
