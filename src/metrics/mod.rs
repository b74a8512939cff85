//! The status document, pure: a zone's counters (`zone::ZoneStats`) plus
//! what only the caller knows in, JSON and the Prometheus text format out.
//! Every metric is declared once, in a table of its scope (`render`: the
//! zone, a worker, the delay histogram, a task; `cluster`: the bridge),
//! with its JSON place, its Prometheus family and one getter; `table` has
//! the walks that render a table both ways, `prom` the text format's pieces. The status endpoint (`status/`) and Lua's `stats()`
//! (`lua/`) both render through here.

pub mod cluster;
pub mod prom;
pub mod render;
pub mod table;

#[cfg(test)]
mod golden;
