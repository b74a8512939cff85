//! The module object nginx loads: the `ngx_module_t`, its http context, the
//! directive table (`conf::commands`) and the process hooks. The top of the
//! layers: it wires the others together and holds no logic of its own.

use core::ffi::c_void;
use core::ptr;

use ::ngx::core::Status;
use ::ngx::ffi::{
    ngx_command_t, ngx_conf_t, ngx_cycle_t, ngx_http_module_t, ngx_int_t, ngx_module_t, ngx_uint_t,
    NGX_HTTP_MODULE,
};
use ::ngx::http::{HttpModule, HttpModuleLocationConf, HttpModuleMainConf};

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

// SAFETY: the main conf slot of this module holds a `conf::MainConf`
// (created by `create_main_conf` below).
unsafe impl HttpModuleMainConf for Module {
    type MainConf = conf::MainConf;
}

// SAFETY: the location conf slot of this module holds a
// `status::StatusConf` (created by `create_loc_conf` below).
unsafe impl HttpModuleLocationConf for Module {
    type LocationConf = crate::status::StatusConf;
}

static mut COMMANDS: [ngx_command_t; 5] = conf::commands::<Module>();

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
/// get its settings (defaults when it has no `http {}` block).
extern "C" fn init_module(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    catch_unwind_or((), || {
        // SAFETY: nginx passes the committed cycle; its http main conf, if
        // any, holds our `MainConf` in this module's slot.
        let mcf = unsafe { cycle.as_ref() }.and_then(Module::main_conf);
        crate::published::commit(mcf.map(conf::MainConf::settings).unwrap_or_default());
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
