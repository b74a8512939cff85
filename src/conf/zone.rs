//! `worker_events_zone <name> <size>;` and the implicit default zone.
//!
//! A declared zone is registered with nginx tagged as ours (so a
//! `lua_shared_dict` of the same name is refused by nginx itself). When an
//! `http {}` block declares none, the module declares one itself at the end
//! of the block (`conf::init_main_conf`), [`DEFAULT_ZONE_NAME`] of
//! [`DEFAULT_ZONE_SIZE`] bytes, so that `load_module` is the only change an
//! existing nginx.conf needs (`runtime::resolve` maps `lua_shared_dict`
//! names to it). Zone memory is not touched here: see `ngx::shm`.

pub use super::main_conf::ZoneConf;

/// Smallest accepted zone size.
pub const MIN_ZONE_SIZE: usize = 128 * 1024;
/// Name of the implicit zone (a suffix is added if another module took it).
pub const DEFAULT_ZONE_NAME: &str = "worker_events";
/// Size of the implicit zone.
pub const DEFAULT_ZONE_SIZE: usize = 8 * 1024 * 1024;

/// A bad `worker_events_zone` line.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ZoneConfError {
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
) -> Result<ZoneConf, ZoneConfError> {
    let name = match core::str::from_utf8(name) {
        Ok(n) if !n.is_empty() => n.to_string(),
        _ => return Err(ZoneConfError::InvalidName),
    };
    let Some(size) = size else {
        return Err(ZoneConfError::InvalidSize(name));
    };
    if size < MIN_ZONE_SIZE {
        return Err(ZoneConfError::TooSmall { name, size });
    }
    if existing.iter().any(|z| z.name == name) {
        return Err(ZoneConfError::Duplicate(name));
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

/// Handler of `worker_events_zone`.
///
/// # Safety
/// Called by nginx with the configuration being parsed, this directive's
/// arguments (NGX_CONF_TAKE2), and our http main configuration as `conf`.
#[cfg(not(test))]
pub unsafe extern "C" fn set_zone(
    cf: *mut ngx::ffi::ngx_conf_t,
    _cmd: *mut ngx::ffi::ngx_command_t,
    conf: *mut core::ffi::c_void,
) -> *mut core::ffi::c_char {
    use super::shell::{directive, Refusal};
    let body = |cf: *mut ngx::ffi::ngx_conf_t,
                args: &[ngx::ffi::ngx_str_t],
                mcf: &mut super::main_conf::MainConf| {
        let mut size_arg = args[2];
        // SAFETY: `size_arg` is a copy of a valid ngx_str_t owned by the
        // conf pool; ngx_parse_size only reads it.
        let parsed = unsafe { ngx::ffi::ngx_parse_size(&mut size_arg) };
        let zone = check_zone(&mcf.zones, args[1].as_bytes(), usize::try_from(parsed).ok())
            .map_err(|e| Refusal::Error(e.to_string()))?;
        // SAFETY: `cf` is the configuration being parsed.
        unsafe { crate::ngx::shm::declare(cf, &zone.name, zone.size) }
            .map_err(|_| Refusal::Logged)?;
        mcf.zones.push(zone);
        Ok(())
    };
    // SAFETY: nginx's directive handler contract, as this function's.
    unsafe { directive(cf, conf, body) }
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
            Err(ZoneConfError::InvalidName)
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
