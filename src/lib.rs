//! ngx-worker-events: an nginx dynamic module that gives lua-nginx-module
//! code a loss-aware event bus between worker processes.
//!
//! This file is module glue only: the `ngx_module_t`, its http context, the
//! directive table and the process hooks. Everything else lives in:
//! - `conf`: the `worker_events_zone` directive;
//! - `shm`: the zone's nginx side (init, lock, lookup);
//! - `zone`: the zone's layout and algorithms (pure);
//! - `codec`: payload serialisation (pure);
//! - `worker`: per-process attachment state;
//! - `notify`: cross-worker wake-ups;
//! - `lua`: the Lua modules and their native functions;
//! - `log`, `util`: helpers.

#![allow(clippy::missing_safety_doc)]

// Pure logic: unit-tested with `cargo test`.
pub mod codec;
pub mod conf;
pub mod zone;

// nginx- and Lua-facing code: needs the nginx binary's symbols at run time,
// so it is left out of unit-test builds (the t/ suite covers it for real).
#[cfg(not(test))]
mod glue;
#[cfg(not(test))]
pub mod log;
#[cfg(not(test))]
pub mod lua;
#[cfg(not(test))]
pub mod notify;
#[cfg(not(test))]
pub mod shm;
#[cfg(not(test))]
pub mod util;
#[cfg(not(test))]
pub mod worker;

#[cfg(not(test))]
pub use glue::ngx_http_worker_events_module;
