//! The module objects nginx loads: the http `ngx_module_t`, its context, the
//! directive table (`conf::commands`) and the process hooks; and a second,
//! stream module whose only job is to register the Lua packages with
//! stream-lua-nginx-module (the same .so carries both). The top of the
//! layers: it wires the others together and holds no logic of its own.

use core::ffi::{c_char, c_void};
use core::ptr;

use ::ngx::core::Status;
use ::ngx::ffi::{
    ngx_command_t, ngx_conf_t, ngx_cycle_t, ngx_http_module_t, ngx_int_t, ngx_module_t, ngx_uint_t,
    NGX_HTTP_MODULE,
};
use ::ngx::http::{HttpModule, HttpModuleLocationConf, HttpModuleMainConf};

use crate::ngx::catch_unwind_or;
use crate::ngx::lua_module::Subsystem;
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
            match unsafe { lua::register_preload(cf, Subsystem::Http) } {
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

// What `ngx::ngx_modules!` writes, for two modules (its counting macro
// takes one): the tables nginx's `load_module` reads from the .so.
/// The modules of this .so, in order.
#[no_mangle]
#[allow(non_upper_case_globals)]
pub static mut ngx_modules: [*const ngx_module_t; 3] = [
    ptr::addr_of!(ngx_http_worker_events_module),
    ptr::addr_of!(ngx_stream_worker_events_module),
    ptr::null(),
];

/// Their names (nginx refuses a second module of the same name).
#[no_mangle]
#[allow(non_upper_case_globals)]
pub static mut ngx_module_names: [*const c_char; 3] = [
    c"ngx_http_worker_events_module".as_ptr(),
    c"ngx_stream_worker_events_module".as_ptr(),
    ptr::null(),
];

/// No ordering constraint.
#[no_mangle]
#[allow(non_upper_case_globals)]
pub static mut ngx_module_order: [*const c_char; 1] = [ptr::null()];

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
        // SAFETY: the committed cycle (see above).
        unsafe { crate::ngx::eventfd::commit(cycle) };
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

/// `NGX_STREAM_MODULE` ("STRM"): not in the bindings of an nginx configured
/// without stream (the module type is a constant of nginx's ABI).
const NGX_STREAM_MODULE: ngx_uint_t = 0x4d52_5453;

/// `ngx_stream_module_t` (src/stream/ngx_stream.h, the same from nginx 1.11
/// to 1.27), declared here for the same reason.
#[repr(C)]
pub struct StreamModuleCtx {
    preconfiguration: Option<unsafe extern "C" fn(*mut ngx_conf_t) -> ngx_int_t>,
    postconfiguration: Option<unsafe extern "C" fn(*mut ngx_conf_t) -> ngx_int_t>,
    create_main_conf: Option<unsafe extern "C" fn(*mut ngx_conf_t) -> *mut c_void>,
    init_main_conf: Option<unsafe extern "C" fn(*mut ngx_conf_t, *mut c_void) -> *mut c_char>,
    create_srv_conf: Option<unsafe extern "C" fn(*mut ngx_conf_t) -> *mut c_void>,
    merge_srv_conf:
        Option<unsafe extern "C" fn(*mut ngx_conf_t, *mut c_void, *mut c_void) -> *mut c_char>,
}

/// The stream module's preconfiguration (runs once per `stream {}` block):
/// registers the Lua packages with stream-lua-nginx-module when nginx has
/// it; does nothing otherwise (Debian's nginx: stream without Lua).
unsafe extern "C" fn stream_preconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
    catch_unwind_or(Status::NGX_ERROR.into(), || {
        // SAFETY: nginx passes the stream configuration being parsed.
        match unsafe { lua::register_preload(cf, Subsystem::Stream) } {
            Ok(()) => Status::NGX_OK.into(),
            Err(_) => Status::NGX_ERROR.into(),
        }
    })
}

static STREAM_CTX: StreamModuleCtx = StreamModuleCtx {
    preconfiguration: Some(stream_preconfiguration),
    postconfiguration: None,
    create_main_conf: None,
    init_main_conf: None,
    create_srv_conf: None,
    merge_srv_conf: None,
};

/// The stream module object: no directives, no process hooks (the http
/// module's run once per process for both subsystems). On an nginx without
/// stream nothing ever looks at a module of this type.
#[used]
#[no_mangle]
#[allow(non_upper_case_globals)]
pub static mut ngx_stream_worker_events_module: ngx_module_t = ngx_module_t {
    ctx: ptr::addr_of!(STREAM_CTX) as *mut c_void,
    type_: NGX_STREAM_MODULE,
    ..ngx_module_t::default()
};
