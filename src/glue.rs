//! The module object, its http context, directive table and process hooks.

use core::ffi::c_void;
use core::ptr;

use ngx::core::Status;
use ngx::ffi::{
    ngx_command_t, ngx_conf_t, ngx_cycle_t, ngx_http_module_t, ngx_int_t, ngx_module_t, ngx_uint_t,
    NGX_CONF_TAKE2, NGX_HTTP_MAIN_CONF, NGX_HTTP_MAIN_CONF_OFFSET, NGX_HTTP_MODULE,
};
use ngx::http::{HttpModule, HttpModuleMainConf};
use ngx::ngx_string;

use crate::{conf, lua, util, wev_log, worker};

/// The http module.
pub struct Module;

impl HttpModule for Module {
    fn module() -> &'static ngx_module_t {
        // SAFETY: the static lives for the whole process; nginx only mutates
        // its index fields during configuration, before we read it.
        unsafe { &*ptr::addr_of!(ngx_http_worker_events_module) }
    }

    unsafe extern "C" fn preconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
        // SAFETY: nginx passes the configuration being parsed.
        util::catch_unwind_or(Status::NGX_ERROR.into(), || {
            match unsafe { lua::register_preload(cf) } {
                Ok(()) => Status::NGX_OK.into(),
                Err(()) => Status::NGX_ERROR.into(),
            }
        })
    }
}

// SAFETY: the main conf slot of this module holds a `conf::MainConf`.
unsafe impl HttpModuleMainConf for Module {
    type MainConf = conf::MainConf;
}

static mut COMMANDS: [ngx_command_t; 2] = [
    ngx_command_t {
        name: ngx_string!("worker_events_zone"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE2) as ngx_uint_t,
        set: Some(conf::set_zone),
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
    init_main_conf: None,
    create_srv_conf: None,
    merge_srv_conf: None,
    create_loc_conf: None,
    merge_loc_conf: None,
};

ngx::ngx_modules!(ngx_http_worker_events_module);

/// The module object nginx loads.
#[used]
#[no_mangle]
#[allow(non_upper_case_globals)]
pub static mut ngx_http_worker_events_module: ngx_module_t = ngx_module_t {
    ctx: ptr::addr_of!(CTX) as *mut c_void,
    // SAFETY: taking the address of a static; nginx reads the table.
    commands: unsafe { ptr::addr_of_mut!(COMMANDS[0]) },
    type_: NGX_HTTP_MODULE as ngx_uint_t,
    init_process: Some(init_process),
    exit_process: Some(exit_process),
    ..ngx_module_t::default()
};

/// Worker start. Must never fail a process, and stays quiet outside workers
/// (cache manager/loader). Attaching to zones happens lazily from Lua
/// (`configure`), because lua-nginx-module's `init_worker_by_lua` runs before
/// this hook.
extern "C" fn init_process(_cycle: *mut ngx_cycle_t) -> ngx_int_t {
    util::catch_unwind_or((), || {
        if util::is_worker() {
            wev_log!(DEBUG, "worker {} started", worker::pid());
        }
    });
    Status::NGX_OK.into()
}

/// Worker exit: post the `stopping` event and free this worker's slot.
extern "C" fn exit_process(_cycle: *mut ngx_cycle_t) {
    util::catch_unwind_or((), || {
        if util::is_worker() {
            lua::core::on_worker_exit();
        }
    });
}
