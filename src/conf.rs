//! Configuration: the `worker_events_zone <name> <size>;` and
//! `worker_events_compat 1.x | 2.x;` directives, and the implicit default
//! zone.
//!
//! A declared zone is registered with nginx tagged as ours (so a
//! `lua_shared_dict` of the same name is refused by nginx itself). When an
//! `http {}` block declares none, the module declares one itself at the end
//! of the block, [`DEFAULT_ZONE_NAME`] of [`DEFAULT_ZONE_SIZE`] bytes, so
//! that `load_module` is the only change an existing nginx.conf needs
//! (`runtime::attach` maps `lua_shared_dict` names to it). Zone memory is
//! not touched here: see `ngx::shm`.
//!
//! `worker_events_compat` picks the lua-resty-worker-events semantics that
//! `resty.worker.events` gets (see [`Compat`]). Lua reads it when the
//! package is loaded, which happens in two kinds of process: the master
//! running `init_by_lua*` while a configuration is being parsed (it gets the
//! value of that configuration, [`publish_parsed`]) and the processes forked
//! from a committed cycle (they get that cycle's value, [`activate`], so a
//! worker respawned after a failed reload keeps the running configuration's).

use core::sync::atomic::{AtomicU8, Ordering};

#[cfg(not(test))]
pub use handlers::{init_main_conf, set_cluster, set_compat, set_status, set_zone};

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

/// Which lua-resty-worker-events semantics `resty.worker.events` has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum Compat {
    /// 1.0.0: `post` and `post_local` poll before they return.
    V1 = 1,
    /// 2.x (the default): every event is handled asynchronously.
    #[default]
    V2 = 2,
}

impl Compat {
    /// Parses the directive's argument.
    pub fn parse(value: &[u8]) -> Result<Compat, ConfError> {
        match value {
            b"1.x" => Ok(Compat::V1),
            b"2.x" => Ok(Compat::V2),
            _ => Err(ConfError::InvalidCompat(
                String::from_utf8_lossy(value).into_owned(),
            )),
        }
    }

    /// The directive's spelling, also what Lua sees.
    pub fn as_str(self) -> &'static str {
        match self {
            Compat::V1 => "1.x",
            Compat::V2 => "2.x",
        }
    }

    fn from_u8(v: u8) -> Compat {
        if v == Compat::V1 as u8 {
            Compat::V1
        } else {
            Compat::V2
        }
    }
}

/// The value of the configuration parsed last (read by `init_by_lua*`).
static PARSED: AtomicU8 = AtomicU8::new(Compat::V2 as u8);
/// The value of the committed cycle (read by the processes it forks).
static ACTIVE: AtomicU8 = AtomicU8::new(Compat::V2 as u8);

/// Records the value of the `http {}` block just parsed.
pub fn publish_parsed(c: Compat) {
    PARSED.store(c as u8, Ordering::Relaxed);
}

/// Records the value of the cycle nginx committed (from `init_module`).
pub fn activate(c: Compat) {
    ACTIVE.store(c as u8, Ordering::Relaxed);
}

/// The semantics for Lua code loaded now: the committed cycle's when
/// `committed` (a process forked from it), else the configuration being
/// parsed (the master in `init_by_lua*`).
pub fn compat(committed: bool) -> Compat {
    let cell = if committed { &ACTIVE } else { &PARSED };
    Compat::from_u8(cell.load(Ordering::Relaxed))
}

/// The module's http main configuration.
#[derive(Debug, Default)]
pub struct MainConf {
    pub zones: Vec<ZoneConf>,
    /// The implicit zone's name, when the module declared it.
    pub implicit: Option<String>,
    /// `worker_events_compat`, when set.
    pub compat: Option<Compat>,
    /// `worker_events_cluster`, when set.
    pub cluster: Option<crate::cluster_conf::ClusterConf>,
    /// Zones named by directives, checked at the end of `http {}`.
    pub zone_refs: Vec<crate::conf_refs::ZoneRef>,
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
    #[error("worker_events_compat: invalid value \"{0}\", expected \"1.x\" or \"2.x\"")]
    InvalidCompat(String),
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

    use crate::cluster_conf::ClusterConf;
    use crate::conf::{
        check_zone, implicit_name, publish_parsed, Compat, MainConf, DEFAULT_ZONE_SIZE,
    };
    use crate::conf_refs::{self, ZoneRef};
    use crate::ngx::shm;

    /// Where `cf` is in the configuration: the file and line of the
    /// directive being parsed (copied: an included file's name does not
    /// outlive its parse).
    ///
    /// # Safety
    /// `cf` is the configuration being parsed, inside a directive handler.
    unsafe fn here(cf: *mut ngx_conf_t, directive: &'static str, name: String) -> ZoneRef {
        // SAFETY: per the contract, `conf_file` is the file being parsed.
        let (file, line) = unsafe {
            let f = (*cf).conf_file;
            if f.is_null() {
                (String::new(), 0)
            } else {
                ((*f).file.name.to_string(), (*f).line)
            }
        };
        ZoneRef {
            directive,
            name,
            file,
            line,
        }
    }

    /// Logs `msg` at `emerg` as nginx words a directive's error, at the
    /// directive's place rather than where parsing is now.
    ///
    /// # Safety
    /// `cf` is the configuration being parsed.
    unsafe fn emerg_at(cf: *mut ngx_conf_t, at: &ZoneRef, msg: &str) {
        let line = format!(
            "{}{msg} in {}:{}",
            crate::ngx::log::PREFIX,
            at.file,
            at.line
        );
        // SAFETY: `cf->log` is the configuration's log; the format takes a
        // length and a pointer to `line`, which outlives the call.
        unsafe {
            ngx::ffi::ngx_log_error_core(
                NGX_LOG_EMERG as ngx::ffi::ngx_uint_t,
                (*cf).log,
                0,
                c"%*s".as_ptr(),
                line.len(),
                line.as_ptr(),
            );
        }
    }

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

    /// Handler of `worker_events_compat`.
    ///
    /// # Safety
    /// Called by nginx with the configuration being parsed, this directive's
    /// arguments, and our http main configuration as `conf`.
    pub unsafe extern "C" fn set_compat(
        cf: *mut ngx_conf_t,
        _cmd: *mut ngx_command_t,
        conf: *mut c_void,
    ) -> *mut c_char {
        crate::ngx::catch_unwind_or(NGX_CONF_ERROR, || {
            // SAFETY: nginx calls directive handlers with a valid `cf` whose `args`
            // holds exactly 2 strings (NGX_CONF_TAKE1), and `conf` is our main conf.
            let (args, mcf): (&[ngx_str_t], &mut MainConf) =
                unsafe { ((*(*cf).args).as_slice(), &mut *(conf as *mut MainConf)) };
            if mcf.compat.is_some() {
                // nginx words it: "worker_events_compat" directive is duplicate
                return c"is duplicate".as_ptr().cast_mut();
            }
            match Compat::parse(args[1].as_bytes()) {
                Ok(c) => {
                    mcf.compat = Some(c);
                    NGX_CONF_OK
                }
                Err(e) => {
                    ngx_conf_log_error!(NGX_LOG_EMERG, cf, "{}{}", crate::ngx::log::PREFIX, e);
                    NGX_CONF_ERROR
                }
            }
        })
    }

    /// Handler of `worker_events_status [zone];`: makes this location the
    /// status endpoint of `zone` (the default zone when left out).
    ///
    /// # Safety
    /// Called by nginx with the configuration being parsed (a location),
    /// this directive's arguments, and our location configuration as `conf`.
    pub unsafe extern "C" fn set_status(
        cf: *mut ngx_conf_t,
        _cmd: *mut ngx_command_t,
        conf: *mut c_void,
    ) -> *mut c_char {
        use ngx::ffi::{
            ngx_http_conf_ctx_t, ngx_http_core_loc_conf_t, ngx_http_core_module,
            ngx_http_max_module,
        };
        crate::ngx::catch_unwind_or(NGX_CONF_ERROR, || {
            // SAFETY: (whole closure) nginx calls directive handlers with a
            // valid `cf` (a location's: its ctx is an ngx_http_conf_ctx_t with
            // loc_conf for every http module) and our location conf as `conf`.
            unsafe {
                let args: &[ngx_str_t] = (*(*cf).args).as_slice();
                let sc = &mut *(conf as *mut crate::status::StatusConf);
                if sc.zone.is_some() {
                    return c"is duplicate".as_ptr().cast_mut();
                }
                let zone = args
                    .get(1)
                    .map(|a| String::from_utf8_lossy(a.as_bytes()).into_owned())
                    .unwrap_or_default();
                sc.zone = Some(zone.clone());
                let ctx = (*cf).ctx as *mut ngx_http_conf_ctx_t;
                // our index: the slot that holds `conf`
                if let Some(i) = (0..ngx_http_max_module).find(|&i| *(*ctx).loc_conf.add(i) == conf)
                {
                    crate::status::set_ctx_index(i);
                    // the same index holds our main conf: the zone is checked
                    // at the end of http {}
                    let mcf = *(*ctx).main_conf.add(i) as *mut MainConf;
                    if let Some(mcf) = mcf.as_mut() {
                        mcf.zone_refs.push(here(cf, "worker_events_status", zone));
                    }
                }
                let clcf = *(*ctx).loc_conf.add(ngx_http_core_module.ctx_index)
                    as *mut ngx_http_core_loc_conf_t;
                (*clcf).handler = Some(crate::status::handler);
                NGX_CONF_OK
            }
        })
    }

    fn hostname() -> String {
        let mut buf = [0u8; 256];
        // SAFETY: gethostname writes at most `len` bytes into the buffer.
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        match rc {
            0 if end > 0 => String::from_utf8_lossy(&buf[..end]).into_owned(),
            _ => "localhost".to_string(),
        }
    }

    /// Handler of `worker_events_cluster` (see `crate::cluster_conf`).
    ///
    /// # Safety
    /// Called by nginx with the configuration being parsed, this directive's
    /// arguments, and our http main configuration as `conf`.
    pub unsafe extern "C" fn set_cluster(
        cf: *mut ngx_conf_t,
        _cmd: *mut ngx_command_t,
        conf: *mut c_void,
    ) -> *mut c_char {
        crate::ngx::catch_unwind_or(NGX_CONF_ERROR, || {
            // SAFETY: nginx calls directive handlers with a valid `cf` whose
            // `args` holds at least 2 strings (NGX_CONF_1MORE), and `conf`
            // is our main conf.
            let (args, mcf): (&[ngx_str_t], &mut MainConf) =
                unsafe { ((*(*cf).args).as_slice(), &mut *(conf as *mut MainConf)) };
            if mcf.cluster.is_some() {
                return c"is duplicate".as_ptr().cast_mut();
            }
            let owned: Vec<String> = args[1..]
                .iter()
                .map(|a| String::from_utf8_lossy(a.as_bytes()).into_owned())
                .collect();
            let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
            match ClusterConf::parse(&refs, &hostname()) {
                Ok(c) => {
                    // SAFETY: inside this directive's handler.
                    let at = unsafe { here(cf, "worker_events_cluster", c.zone.clone()) };
                    mcf.zone_refs.push(at);
                    mcf.cluster = Some(c);
                    NGX_CONF_OK
                }
                Err(e) => {
                    ngx_conf_log_error!(NGX_LOG_EMERG, cf, "{}{}", crate::ngx::log::PREFIX, e);
                    NGX_CONF_ERROR
                }
            }
        })
    }

    /// `init_main_conf`: at the end of `http {}`, publishes the compat value
    /// to `init_by_lua*` and declares the implicit zone when no
    /// `worker_events_zone` was declared.
    ///
    /// # Safety
    /// Called by nginx with the configuration being parsed and our main conf.
    pub unsafe extern "C" fn init_main_conf(cf: *mut ngx_conf_t, conf: *mut c_void) -> *mut c_char {
        crate::ngx::catch_unwind_or(NGX_CONF_ERROR, || {
            // SAFETY: `conf` is our main conf.
            let mcf = unsafe { &mut *(conf as *mut MainConf) };
            publish_parsed(mcf.compat.unwrap_or_default());
            crate::cluster_conf::publish_parsed(mcf.cluster.clone());
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
                if let Err(e) = conf_refs::check(r, &ours, |n| unsafe { shm::declared(cf, n) }) {
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
    fn compat_values() {
        assert_eq!(Compat::parse(b"1.x"), Ok(Compat::V1));
        assert_eq!(Compat::parse(b"2.x"), Ok(Compat::V2));
        assert_eq!(Compat::default(), Compat::V2);
        assert_eq!(
            Compat::parse(b"1.0").unwrap_err().to_string(),
            "worker_events_compat: invalid value \"1.0\", expected \"1.x\" or \"2.x\""
        );
        assert_eq!(Compat::V1.as_str(), "1.x");
        assert_eq!(Compat::from_u8(Compat::V1 as u8), Compat::V1);
        assert_eq!(Compat::from_u8(0), Compat::V2);
    }

    #[test]
    fn parsed_and_committed_values_are_separate() {
        publish_parsed(Compat::V1);
        assert_eq!(compat(false), Compat::V1);
        assert_eq!(compat(true), Compat::V2);
        activate(Compat::V1);
        publish_parsed(Compat::V2); // a reload that fails later
        assert_eq!(compat(true), Compat::V1);
        assert_eq!(compat(false), Compat::V2);
        activate(Compat::V2);
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
