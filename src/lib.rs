//! ngx-worker-events: an nginx dynamic module that gives lua-nginx-module
//! code a loss-aware event bus between worker processes, and the Lua APIs
//! of lua-resty-worker-events on top of it.
//!
//! This file only declares the folders. Their layers, each importing only
//! the ones below it, are drawn once in HACKING.md ("Layer map") and checked
//! by `scripts/check-layers` (run by `scripts/test`).

// Pure: unit-tested with `cargo test`.
pub mod metrics;
pub mod published;
pub mod wire;
pub mod zone;

// The directives (parsers are pure; their nginx handlers are left out of
// unit-test builds).
pub mod conf;

// The status endpoint's query checks (pure) and handler.
pub mod status;

// The Lua layer: `lua::value` is unit-tested on a bare LuaJIT state; the
// rest needs the nginx binary's symbols at run time.
pub mod lua;

// nginx- and process-facing code, left out of unit-test builds (the t/
// suite covers it against the real nginx).
#[cfg(not(test))]
pub mod ngx;
#[cfg(not(test))]
pub mod runtime;

// The module object nginx loads.
#[cfg(not(test))]
mod module;
#[cfg(not(test))]
pub use module::{ngx_http_worker_events_module, ngx_stream_worker_events_module};

#[cfg(test)]
mod testing;

// `ngx/clock.rs` needs no nginx symbol: its tests run here.
#[cfg(test)]
#[path = "ngx/clock.rs"]
pub mod ngx_clock;
