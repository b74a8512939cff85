//! The status document, pure: a zone's counters (`zone::ZoneStats`) plus
//! what only the caller knows in, JSON and the Prometheus text format out.
//! `render` has the zone's metrics, `cluster` the bridge's, `prom` the text
//! format's pieces. The status endpoint (`status/`) and Lua's `stats()`
//! (`lua/`) both render through here.

pub mod cluster;
pub mod prom;
pub mod render;

#[cfg(test)]
mod golden;
