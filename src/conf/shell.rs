//! The shell every directive handler runs in: no panic crosses into nginx,
//! the arguments as a slice, and a refusal worded as nginx words it
//! (`"x" directive is duplicate`, or our own `[emerg]` line).

use core::ffi::{c_char, c_void};

use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ffi::{ngx_conf_t, ngx_str_t, NGX_LOG_EMERG};
use ngx::ngx_conf_log_error;

use super::refs::ZoneRef;

/// Why a directive is refused.
pub enum Refusal {
    /// Given twice where once is allowed: nginx says
    /// `"<directive>" directive is duplicate`.
    Duplicate,
    /// Our message, logged at `emerg` with the module's prefix.
    Error(String),
    /// Already logged (by nginx or by us).
    Logged,
}

/// Runs a directive handler's `body` with the configuration being parsed,
/// the directive's arguments (`args[0]` is its name) and the module
/// configuration nginx passed as `conf`, and turns its verdict into what
/// nginx expects of a directive handler.
///
/// # Safety
/// nginx's directive handler contract: `cf` is the configuration being
/// parsed, inside this directive's handler, and `conf` is this module's
/// configuration of type `T` for the directive's context (its
/// `NGX_HTTP_*_CONF_OFFSET`).
pub unsafe fn directive<T>(
    cf: *mut ngx_conf_t,
    conf: *mut c_void,
    body: impl FnOnce(*mut ngx_conf_t, &[ngx_str_t], &mut T) -> Result<(), Refusal>,
) -> *mut c_char {
    crate::ngx::catch_unwind_or(NGX_CONF_ERROR, || {
        // SAFETY: per the contract, `cf->args` holds the directive's
        // arguments (at least as many as its NGX_CONF_* type allows) and
        // `conf` points at a live `T` in the configuration's pool.
        let (args, c) = unsafe { ((*(*cf).args).as_slice(), &mut *(conf as *mut T)) };
        match body(cf, args, c) {
            Ok(()) => NGX_CONF_OK,
            Err(Refusal::Duplicate) => c"is duplicate".as_ptr().cast_mut(),
            Err(Refusal::Error(msg)) => {
                ngx_conf_log_error!(NGX_LOG_EMERG, cf, "{}{}", crate::ngx::log::PREFIX, msg);
                NGX_CONF_ERROR
            }
            Err(Refusal::Logged) => NGX_CONF_ERROR,
        }
    })
}

/// An argument as a string (invalid UTF-8 replaced: every name we take is
/// ASCII, and a mangled one is refused by its checks).
pub fn arg(a: &ngx_str_t) -> String {
    String::from_utf8_lossy(a.as_bytes()).into_owned()
}

/// Where `cf` is in the configuration: the file and line of the
/// directive being parsed (copied: an included file's name does not
/// outlive its parse).
///
/// # Safety
/// `cf` is the configuration being parsed, inside a directive handler.
pub unsafe fn here(cf: *mut ngx_conf_t, directive: &'static str, name: String) -> ZoneRef {
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
pub unsafe fn emerg_at(cf: *mut ngx_conf_t, at: &ZoneRef, msg: &str) {
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
