//! Configuration: the module's directives, each file a directive and its
//! handler, the directive table ([`commands`]) and the end of `http {}`
//! ([`init_main_conf`]), which publishes the settings (`published`) and
//! checks every zone a directive names.
//!
//! | directive | file |
//! |---|---|
//! | `worker_events_zone <name> <size>;` (and the implicit zone) | `zone.rs` |
//! | `worker_events_compat 1.x \| 2.x;` | `compat.rs` |
//! | `worker_events_status [zone];` | `status.rs` |
//! | `worker_events_cluster redis://... [options];` | `cluster.rs` |
//!
//! `shell` is the frame every handler runs in; `refs` checks zone names at
//! the end of `http {}` (zones may be declared after the directive that
//! names them).

pub mod cluster;
pub mod compat;
pub mod main_conf;
pub mod refs;
#[cfg(not(test))]
mod shell;
#[cfg(not(test))]
mod status;
pub mod zone;

#[cfg(not(test))]
pub use edges::{commands, init_main_conf};
pub use main_conf::MainConf;

/// The nginx callbacks (left out of unit-test builds: they need nginx's symbols).
#[cfg(not(test))]
mod edges {
    use core::ffi::{c_char, c_void};
    use core::ptr;

    use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
    use ngx::ffi::{
        ngx_command_t, ngx_conf_t, NGX_CONF_1MORE, NGX_CONF_NOARGS, NGX_CONF_TAKE1, NGX_CONF_TAKE2,
        NGX_HTTP_LOC_CONF, NGX_HTTP_LOC_CONF_OFFSET, NGX_HTTP_MAIN_CONF, NGX_HTTP_MAIN_CONF_OFFSET,
    };
    use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf};
    use ngx::ngx_string;

    use super::refs;
    use super::shell::emerg_at;
    use super::zone::{implicit_name, DEFAULT_ZONE_SIZE};
    use super::MainConf;
    use crate::ngx::shm;
    use crate::status::StatusConf;

    /// The directive table of module `M` (ours: its main configuration is
    /// a [`MainConf`], its location configuration a [`StatusConf`]).
    pub const fn commands<M>() -> [ngx_command_t; 5]
    where
        M: HttpModuleLocationConf<LocationConf = StatusConf>
            + HttpModuleMainConf<MainConf = MainConf>,
    {
        const fn main(
            name: ngx::ffi::ngx_str_t,
            args: u32,
            set: unsafe extern "C" fn(
                *mut ngx_conf_t,
                *mut ngx_command_t,
                *mut c_void,
            ) -> *mut c_char,
        ) -> ngx_command_t {
            ngx_command_t {
                name,
                type_: (NGX_HTTP_MAIN_CONF | args) as ngx::ffi::ngx_uint_t,
                set: Some(set),
                conf: NGX_HTTP_MAIN_CONF_OFFSET,
                offset: 0,
                post: ptr::null_mut(),
            }
        }
        [
            main(
                ngx_string!("worker_events_zone"),
                NGX_CONF_TAKE2,
                super::zone::set_zone,
            ),
            main(
                ngx_string!("worker_events_compat"),
                NGX_CONF_TAKE1,
                super::compat::set_compat,
            ),
            ngx_command_t {
                name: ngx_string!("worker_events_status"),
                type_: (NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS | NGX_CONF_TAKE1)
                    as ngx::ffi::ngx_uint_t,
                set: Some(super::status::set_status::<M>),
                conf: NGX_HTTP_LOC_CONF_OFFSET,
                offset: 0,
                post: ptr::null_mut(),
            },
            main(
                ngx_string!("worker_events_cluster"),
                NGX_CONF_1MORE,
                super::cluster::set_cluster,
            ),
            ngx_command_t::empty(),
        ]
    }

    /// `init_main_conf`: at the end of `http {}`, publishes the settings to
    /// `init_by_lua*`, declares the implicit zone when no
    /// `worker_events_zone` was declared, and checks the zones directives
    /// name.
    ///
    /// # Safety
    /// Called by nginx with the configuration being parsed and our main conf.
    pub unsafe extern "C" fn init_main_conf(cf: *mut ngx_conf_t, conf: *mut c_void) -> *mut c_char {
        crate::ngx::catch_unwind_or(NGX_CONF_ERROR, || {
            // SAFETY: `conf` is our main conf.
            let mcf = unsafe { &mut *(conf as *mut MainConf) };
            crate::published::publish_parsed(mcf.settings());
            if mcf.zones.is_empty() {
                // SAFETY: `cf` is the configuration being parsed.
                if let Some(name) = implicit_name(|n| unsafe { shm::declared(cf, n) }) {
                    // SAFETY: as above.
                    if unsafe { shm::declare(cf, &name, DEFAULT_ZONE_SIZE) }.is_err() {
                        return NGX_CONF_ERROR;
                    }
                    mcf.implicit = Some(name);
                }
            }
            let ours: Vec<String> = mcf
                .zones
                .iter()
                .map(|z| z.name.clone())
                .chain(mcf.implicit.clone())
                .collect();
            let mut ok = true;
            for r in &mcf.zone_refs {
                // SAFETY: `cf` is the configuration being parsed.
                if let Err(e) = refs::check(r, &ours, |n| unsafe { shm::declared(cf, n) }) {
                    // SAFETY: as above.
                    unsafe { emerg_at(cf, r, &e.to_string()) };
                    ok = false;
                }
            }
            if ok {
                NGX_CONF_OK
            } else {
                NGX_CONF_ERROR
            }
        })
    }
}
