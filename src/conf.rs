//! Configuration: the `worker_events_zone <name> <size>;` directive, and the
//! implicit default zone.
//!
//! A declared zone is registered with nginx tagged as ours (so a
//! `lua_shared_dict` of the same name is refused by nginx itself). When an
//! `http {}` block declares none, the module declares one itself at the end
//! of the block, [`DEFAULT_ZONE_NAME`] of [`DEFAULT_ZONE_SIZE`] bytes, so
//! that `load_module` is the only change an existing nginx.conf needs
//! (`runtime::attach` maps `lua_shared_dict` names to it). Zone memory is
//! not touched here: see `ngx::shm`.

#[cfg(not(test))]
pub use handlers::{init_main_conf, set_zone};

/// Smallest accepted zone size.
pub const MIN_ZONE_SIZE: usize = 128 * 1024;
/// Name of the implicit zone (a suffix is added if another module took it).
pub const DEFAULT_ZONE_NAME: &str = "worker_events";
/// Size of the implicit zone.
pub const DEFAULT_ZONE_SIZE: usize = 8 * 1024 * 1024;

/// One declared zone.
#[derive(Debug, PartialEq, Eq)]
pub struct ZoneConf {
    pub name: String,
    pub size: usize,
}

/// The module's http main configuration.
#[derive(Debug, Default)]
pub struct MainConf {
    pub zones: Vec<ZoneConf>,
    /// The implicit zone's name, when the module declared it.
    pub implicit: Option<String>,
}

/// A bad `worker_events_zone` line.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfError {
    #[error("invalid zone name")]
    InvalidName,
    #[error("invalid zone size for \"{0}\"")]
    InvalidSize(String),
    #[error("zone \"{name}\" is too small: {size} bytes, at least {}k are needed", MIN_ZONE_SIZE / 1024)]
    TooSmall { name: String, size: usize },
    #[error("duplicate worker_events_zone \"{0}\"")]
    Duplicate(String),
}

/// Validates a zone declaration against the ones before it (pure).
pub fn check_zone(
    existing: &[ZoneConf],
    name: &[u8],
    size: Option<usize>,
) -> Result<ZoneConf, ConfError> {
    let name = match core::str::from_utf8(name) {
        Ok(n) if !n.is_empty() => n.to_string(),
        _ => return Err(ConfError::InvalidName),
    };
    let Some(size) = size else {
        return Err(ConfError::InvalidSize(name));
    };
    if size < MIN_ZONE_SIZE {
        return Err(ConfError::TooSmall { name, size });
    }
    if existing.iter().any(|z| z.name == name) {
        return Err(ConfError::Duplicate(name));
    }
    Ok(ZoneConf { name, size })
}

/// The implicit zone's name: the default one, or with the first suffix
/// `taken` does not refuse.
pub fn implicit_name(taken: impl Fn(&str) -> bool) -> Option<String> {
    core::iter::once(DEFAULT_ZONE_NAME.to_string())
        .chain((1..100).map(|i| format!("{DEFAULT_ZONE_NAME}_{i}")))
        .find(|n| !taken(n))
}

/// The nginx callbacks (left out of unit-test builds: they need nginx's symbols).
#[cfg(not(test))]
mod handlers {
    use core::ffi::{c_char, c_void};

    use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
    use ngx::ffi::{ngx_command_t, ngx_conf_t, ngx_parse_size, ngx_str_t, NGX_LOG_EMERG};
    use ngx::ngx_conf_log_error;

    use crate::conf::{check_zone, implicit_name, MainConf, DEFAULT_ZONE_SIZE};
    use crate::ngx::shm;

    /// Handler of `worker_events_zone`.
    ///
    /// # Safety
    /// Called by nginx with the configuration being parsed, this directive's
    /// arguments, and our http main configuration as `conf`.
    pub unsafe extern "C" fn set_zone(
        cf: *mut ngx_conf_t,
        _cmd: *mut ngx_command_t,
        conf: *mut c_void,
    ) -> *mut c_char {
        crate::ngx::catch_unwind_or(NGX_CONF_ERROR, || {
            // SAFETY: nginx calls directive handlers with a valid `cf` whose `args`
            // holds exactly 3 strings (NGX_CONF_TAKE2), and `conf` is our main conf.
            let (args, mcf) =
                unsafe { ((*(*cf).args).as_slice_mut(), &mut *(conf as *mut MainConf)) };
            let name: ngx_str_t = args[1];
            // SAFETY: args[2] is a valid ngx_str_t owned by the conf pool.
            let parsed = unsafe { ngx_parse_size(&mut args[2]) };
            let zone = match check_zone(&mcf.zones, name.as_bytes(), usize::try_from(parsed).ok()) {
                Ok(z) => z,
                Err(e) => {
                    ngx_conf_log_error!(NGX_LOG_EMERG, cf, "{}{}", crate::ngx::log::PREFIX, e);
                    return NGX_CONF_ERROR;
                }
            };
            // SAFETY: `cf` is the configuration being parsed.
            if unsafe { shm::declare(cf, &zone.name, zone.size) }.is_err() {
                return NGX_CONF_ERROR;
            }
            mcf.zones.push(zone);
            NGX_CONF_OK
        })
    }

    /// `init_main_conf`: at the end of `http {}`, declares the implicit zone
    /// when no `worker_events_zone` was declared.
    ///
    /// # Safety
    /// Called by nginx with the configuration being parsed and our main conf.
    pub unsafe extern "C" fn init_main_conf(cf: *mut ngx_conf_t, conf: *mut c_void) -> *mut c_char {
        crate::ngx::catch_unwind_or(NGX_CONF_ERROR, || {
            // SAFETY: `conf` is our main conf.
            let mcf = unsafe { &mut *(conf as *mut MainConf) };
            if !mcf.zones.is_empty() {
                return NGX_CONF_OK;
            }
            // SAFETY: `cf` is the configuration being parsed.
            let Some(name) = implicit_name(|n| unsafe { shm::declared(cf, n) }) else {
                return NGX_CONF_OK;
            };
            // SAFETY: as above.
            if unsafe { shm::declare(cf, &name, DEFAULT_ZONE_SIZE) }.is_err() {
                return NGX_CONF_ERROR;
            }
            mcf.implicit = Some(name);
            NGX_CONF_OK
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_good_zone() {
        assert_eq!(
            check_zone(&[], b"ev", Some(1 << 20)),
            Ok(ZoneConf {
                name: "ev".into(),
                size: 1 << 20
            })
        );
    }

    #[test]
    fn refuses_bad_declarations() {
        assert_eq!(
            check_zone(&[], b"ev", None).unwrap_err().to_string(),
            "invalid zone size for \"ev\""
        );
        assert_eq!(
            check_zone(&[], b"ev", Some(4096)).unwrap_err().to_string(),
            "zone \"ev\" is too small: 4096 bytes, at least 128k are needed"
        );
        let z = [ZoneConf {
            name: "ev".into(),
            size: 1 << 20,
        }];
        assert_eq!(
            check_zone(&z, b"ev", Some(1 << 20))
                .unwrap_err()
                .to_string(),
            "duplicate worker_events_zone \"ev\""
        );
        assert_eq!(
            check_zone(&[], b"", Some(1 << 20)),
            Err(ConfError::InvalidName)
        );
    }

    #[test]
    fn implicit_name_avoids_taken_names() {
        assert_eq!(implicit_name(|_| false).as_deref(), Some("worker_events"));
        assert_eq!(
            implicit_name(|n| n == "worker_events" || n == "worker_events_1").as_deref(),
            Some("worker_events_2")
        );
        assert_eq!(implicit_name(|_| true), None);
    }
}
