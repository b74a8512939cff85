//! `worker_events_status [zone];`: makes a location the status endpoint of
//! a zone (`status/`), checked at the end of `http {}` like every zone a
//! directive names (`conf::refs`).

use ngx::ffi::{ngx_command_t, ngx_conf_t};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule};

use super::main_conf::MainConf;
use super::shell::here;
use super::shell::{arg, directive, Refusal};
use crate::status::StatusConf;

/// Handler of `worker_events_status`, for module `M` (whose location and
/// main configurations are ours).
///
/// # Safety
/// Called by nginx with the configuration being parsed (a location), this
/// directive's arguments (NGX_CONF_NOARGS | NGX_CONF_TAKE1), and our
/// location configuration as `conf`.
pub unsafe extern "C" fn set_status<M>(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut core::ffi::c_void,
) -> *mut core::ffi::c_char
where
    M: HttpModuleLocationConf<LocationConf = StatusConf> + HttpModuleMainConf<MainConf = MainConf>,
{
    let body =
        |cf: *mut ngx::ffi::ngx_conf_t, args: &[ngx::ffi::ngx_str_t], sc: &mut StatusConf| {
            if sc.zone.is_some() {
                return Err(Refusal::Duplicate);
            }
            let zone = args.get(1).map(arg).unwrap_or_default();
            sc.zone = Some(zone.clone());
            // SAFETY: `cf` is a location's configuration being parsed: its
            // ctx holds every http module's configurations.
            let cfr = unsafe { &*cf };
            if let Some(mcf) = M::main_conf_mut(cfr) {
                // SAFETY: inside this directive's handler.
                mcf.zone_refs
                    .push(unsafe { here(cf, "worker_events_status", zone) });
            }
            let clcf = NgxHttpCoreModule::location_conf_mut(cfr).ok_or(Refusal::Logged)?;
            clcf.handler = Some(crate::status::handler::<M>);
            Ok(())
        };
    // SAFETY: nginx's directive handler contract, as this function's.
    unsafe { directive(cf, conf, body) }
}
