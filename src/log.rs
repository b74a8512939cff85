//! One set of log helpers, one prefix: every line this module writes to the
//! nginx error log starts with `worker-events: `.
//!
//! Messages never contain event payloads (they may hold secrets): only
//! sources, event names, sizes, counts and pids.

use core::fmt;

use ngx::ffi::{ngx_cycle, ngx_log_t, ngx_uint_t};

/// The prefix of every line.
pub const PREFIX: &str = "worker-events: ";

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

/// Writes `args` at `level` to `log` (or the cycle log when null).
pub fn write(level: u32, log: *mut ngx_log_t, args: fmt::Arguments) {
    let log = if log.is_null() { cycle_log() } else { log };
    if log.is_null() {
        return;
    }
    // SAFETY: `log` is a live nginx log object (cycle or connection log).
    // (`error_log ... debug` sets all debug bits, so this also covers DEBUG.)
    if unsafe { (*log).log_level } < level as ngx_uint_t {
        return;
    }
    let msg = format!("{PREFIX}{args}");
    // SAFETY: `log` is valid; the format string takes a length and a pointer
    // to `msg`, which outlives the call.
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

/// `wev_log!(ERR, "...", args)` writes to the cycle log with the prefix.
#[macro_export]
macro_rules! wev_log {
    ($level:ident, $($arg:tt)+) => {
        $crate::log::write(
            $crate::log::level!($level),
            core::ptr::null_mut(),
            format_args!($($arg)+),
        )
    };
}

/// Maps a short level name to nginx's constant.
#[macro_export]
#[doc(hidden)]
macro_rules! __wev_level {
    (EMERG) => {
        $crate::log::NGX_LOG_EMERG
    };
    (ALERT) => {
        $crate::log::NGX_LOG_ALERT
    };
    (ERR) => {
        $crate::log::NGX_LOG_ERR
    };
    (WARN) => {
        $crate::log::NGX_LOG_WARN
    };
    (NOTICE) => {
        $crate::log::NGX_LOG_NOTICE
    };
    (INFO) => {
        $crate::log::NGX_LOG_INFO
    };
    (DEBUG) => {
        $crate::log::NGX_LOG_DEBUG
    };
}
pub use crate::__wev_level as level;
