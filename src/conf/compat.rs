//! `worker_events_compat 1.x | 2.x;`: the lua-resty-worker-events semantics
//! `resty.worker.events` gets (`published::Compat`). Lua reads it through
//! `published::settings` when the package is loaded.

use crate::published::Compat;

/// A bad `worker_events_compat` value.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("worker_events_compat: invalid value \"{0}\", expected \"1.x\" or \"2.x\"")]
pub struct InvalidCompat(String);

/// Parses the directive's argument.
pub fn parse(value: &[u8]) -> Result<Compat, InvalidCompat> {
    match value {
        b"1.x" => Ok(Compat::V1),
        b"2.x" => Ok(Compat::V2),
        _ => Err(InvalidCompat(String::from_utf8_lossy(value).into_owned())),
    }
}

/// Handler of `worker_events_compat`.
///
/// # Safety
/// Called by nginx with the configuration being parsed, this directive's
/// arguments (NGX_CONF_TAKE1), and our http main configuration as `conf`.
#[cfg(not(test))]
pub unsafe extern "C" fn set_compat(
    cf: *mut ngx::ffi::ngx_conf_t,
    _cmd: *mut ngx::ffi::ngx_command_t,
    conf: *mut core::ffi::c_void,
) -> *mut core::ffi::c_char {
    use super::shell::{directive, Refusal};
    let body = |_: *mut ngx::ffi::ngx_conf_t,
                args: &[ngx::ffi::ngx_str_t],
                mcf: &mut super::main_conf::MainConf| {
        if mcf.compat.is_some() {
            return Err(Refusal::Duplicate);
        }
        mcf.compat = Some(parse(args[1].as_bytes()).map_err(|e| Refusal::Error(e.to_string()))?);
        Ok(())
    };
    // SAFETY: nginx's directive handler contract, as this function's.
    unsafe { directive(cf, conf, body) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compat_values() {
        assert_eq!(parse(b"1.x"), Ok(Compat::V1));
        assert_eq!(parse(b"2.x"), Ok(Compat::V2));
        assert_eq!(Compat::default(), Compat::V2);
        assert_eq!(
            parse(b"1.0").unwrap_err().to_string(),
            "worker_events_compat: invalid value \"1.0\", expected \"1.x\" or \"2.x\""
        );
    }
}
