//! The module's own lines in the nginx error log, all behind one prefix.
//!
//! The prefix is `ngx_worker_events: `, deliberately not the
//! `worker-events: ` of lua-resty-worker-events: code and tests that grep
//! the library's lines must see only the lines the library itself prints
//! (those are written by the Lua API files, with the library's prefix).
//!
//! Messages never contain event payloads (they may hold secrets): only
//! sources, event names, sizes, counts, zone names and pids.

use core::fmt;

use ngx::ffi::{ngx_cycle, ngx_log_t, ngx_uint_t};

/// The prefix of every line the module writes itself.
pub const PREFIX: &str = "ngx_worker_events: ";

pub use ngx::ffi::{
    NGX_LOG_ALERT, NGX_LOG_DEBUG, NGX_LOG_EMERG, NGX_LOG_ERR, NGX_LOG_INFO, NGX_LOG_NOTICE,
    NGX_LOG_WARN,
};

/// The current cycle's log, if any.
pub fn cycle_log() -> *mut ngx_log_t {
    // SAFETY: `ngx_cycle` is set by nginx before any module code runs and is
    // only read here (single-threaded event loop).
    unsafe {
        let c = ngx_cycle;
        if c.is_null() {
            core::ptr::null_mut()
        } else {
            (*c).log
        }
    }
}

/// True if a line at `level` would be written to the cycle log.
pub fn enabled(level: u32) -> bool {
    let log = cycle_log();
    // SAFETY: a live nginx log object when not null.
    !log.is_null() && unsafe { (*log).log_level } >= level as ngx_uint_t
}

/// Writes `args` at `level` to the cycle log, behind [`PREFIX`].
pub fn write(level: u32, args: fmt::Arguments) {
    let log = cycle_log();
    if !enabled(level) {
        return;
    }
    let msg = format!("{PREFIX}{args}");
    // SAFETY: `log` is the live cycle log (checked by `enabled`); the format
    // string takes a length and a pointer to `msg`, which outlives the call.
    unsafe {
        ngx::ffi::ngx_log_error_core(
            level as ngx_uint_t,
            log,
            0,
            c"%*s".as_ptr(),
            msg.len(),
            msg.as_ptr(),
        );
    }
}

/// `wev_log!(ERR, "...", args)` writes to the cycle log behind the prefix.
#[macro_export]
macro_rules! wev_log {
    ($level:ident, $($arg:tt)+) => {
        $crate::ngx::log::write($crate::ngx::log::level!($level), format_args!($($arg)+))
    };
}

/// Maps a short level name to nginx's constant.
#[macro_export]
#[doc(hidden)]
macro_rules! __wev_level {
    (EMERG) => {
        $crate::ngx::log::NGX_LOG_EMERG
    };
    (ALERT) => {
        $crate::ngx::log::NGX_LOG_ALERT
    };
    (ERR) => {
        $crate::ngx::log::NGX_LOG_ERR
    };
    (WARN) => {
        $crate::ngx::log::NGX_LOG_WARN
    };
    (NOTICE) => {
        $crate::ngx::log::NGX_LOG_NOTICE
    };
    (INFO) => {
        $crate::ngx::log::NGX_LOG_INFO
    };
    (DEBUG) => {
        $crate::ngx::log::NGX_LOG_DEBUG
    };
}
pub use crate::__wev_level as level;
