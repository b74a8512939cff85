//! The `worker_events_zone <name> <size>;` directive.
//!
//! Parses and validates the arguments, registers the shared zone with nginx
//! (tagged with this module, so a `lua_shared_dict` of the same name is
//! refused by nginx itself) and keeps the list of declared zones in the http
//! main configuration. It does not touch zone memory: see `shm`.

/// Smallest accepted zone size.
pub const MIN_ZONE_SIZE: usize = 128 * 1024;

/// One declared zone.
#[derive(Debug)]
pub struct ZoneConf {
    pub name: String,
    pub size: usize,
}

/// The module's http main configuration.
#[derive(Debug, Default)]
pub struct MainConf {
    pub zones: Vec<ZoneConf>,
}

/// Validates a zone declaration against the ones before it (pure).
pub fn check_zone(
    existing: &[ZoneConf],
    name: &[u8],
    size: Option<usize>,
) -> Result<(String, usize), String> {
    let name = match core::str::from_utf8(name) {
        Ok(n) if !n.is_empty() => n.to_string(),
        _ => return Err("invalid zone name".to_string()),
    };
    let Some(size) = size else {
        return Err(format!("invalid zone size for \"{name}\""));
    };
    if size < MIN_ZONE_SIZE {
        return Err(format!(
            "zone \"{name}\" is too small: {size} bytes, at least {}k are needed",
            MIN_ZONE_SIZE / 1024
        ));
    }
    if existing.iter().any(|z| z.name == name) {
        return Err(format!("duplicate worker_events_zone \"{name}\""));
    }
    Ok((name, size))
}

/// Handler of `worker_events_zone`.
#[cfg(not(test))]
pub unsafe extern "C" fn set_zone(
    cf: *mut ngx::ffi::ngx_conf_t,
    _cmd: *mut ngx::ffi::ngx_command_t,
    conf: *mut core::ffi::c_void,
) -> *mut core::ffi::c_char {
    use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
    use ngx::ffi::{ngx_parse_size, ngx_shared_memory_add, ngx_str_t, NGX_LOG_EMERG};
    use ngx::ngx_conf_log_error;

    crate::util::catch_unwind_or(NGX_CONF_ERROR, || {
        // SAFETY: nginx calls directive handlers with a valid `cf` whose `args`
        // holds exactly 3 strings (NGX_CONF_TAKE2), and `conf` is our main conf.
        let (cf_ref, mcf) = unsafe { (&mut *cf, &mut *(conf as *mut MainConf)) };
        // SAFETY: see above.
        let args = unsafe { (*cf_ref.args).as_slice_mut() };
        let mut name: ngx_str_t = args[1];
        // SAFETY: args[2] is a valid ngx_str_t owned by the conf pool.
        let parsed = unsafe { ngx_parse_size(&mut args[2]) };
        let size = usize::try_from(parsed).ok();
        let (zname, size) = match check_zone(&mcf.zones, name.as_bytes(), size) {
            Ok(v) => v,
            Err(msg) => {
                ngx_conf_log_error!(NGX_LOG_EMERG, cf, "{}{}", crate::log::PREFIX, msg);
                return NGX_CONF_ERROR;
            }
        };
        // SAFETY: valid cf and name; the tag is our module's static address.
        let shm_zone = unsafe {
            ngx_shared_memory_add(
                cf,
                &mut name,
                size,
                core::ptr::addr_of_mut!(crate::glue::ngx_http_worker_events_module).cast(),
            )
        };
        if shm_zone.is_null() {
            return NGX_CONF_ERROR;
        }
        // SAFETY: nginx returned a valid zone owned by the cycle.
        unsafe {
            (*shm_zone).init = Some(crate::shm::zone_init);
            (*shm_zone).noreuse = 0;
        }
        mcf.zones.push(ZoneConf { name: zname, size });
        NGX_CONF_OK
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_good_zone() {
        assert_eq!(
            check_zone(&[], b"ev", Some(1 << 20)),
            Ok(("ev".into(), 1 << 20))
        );
    }

    #[test]
    fn refuses_bad_declarations() {
        assert!(check_zone(&[], b"ev", None)
            .unwrap_err()
            .contains("invalid zone size"));
        assert!(check_zone(&[], b"ev", Some(4096))
            .unwrap_err()
            .contains("too small"));
        let z = [ZoneConf {
            name: "ev".into(),
            size: 1 << 20,
        }];
        assert_eq!(
            check_zone(&z, b"ev", Some(1 << 20)).unwrap_err(),
            "duplicate worker_events_zone \"ev\""
        );
        assert!(check_zone(&[], b"", Some(1 << 20)).is_err());
    }
}
