//! The `cluster` part of the status document and its Prometheus families
//! (README "Cluster events"): the bridge's lease and connection, events
//! in and out, losses, duplicates, reconnects and lag.

use core::fmt::Write;

use serde_json::{json, Value};

use crate::zone::cluster::{ClusterStats, DropReason};

/// What the zone's counters do not know: the configured node and stream.
#[derive(Clone, Copy, Debug)]
pub struct ClusterInfo<'a> {
    pub node: &'a str,
    pub stream: &'a str,
}

/// The JSON object (`null` when no `worker_events_cluster` names the zone).
pub fn json(c: &ClusterStats, info: Option<ClusterInfo<'_>>) -> Value {
    let Some(info) = info else {
        return Value::Null;
    };
    let mut dropped = serde_json::Map::new();
    for why in DropReason::ALL {
        dropped.insert(why.name().into(), c.dropped[why as usize].into());
    }
    dropped.insert("duplicate".into(), c.duplicates.into());
    json!({
        "node": info.node,
        "stream": info.stream,
        "bridge_pid": (c.lease_pid != 0).then_some(c.lease_pid),
        "bridge_takeovers": c.leases,
        "connected": c.connected,
        "connected_since": (c.connected_ms != 0).then(|| c.connected_ms as f64 / 1000.0),
        "last_id": c.last_id.map(|(ms, seq)| format!("{ms}-{seq}")),
        "lag_seconds": c.lag_ms as f64 / 1000.0,
        "events_posted": c.posted,
        "events_out": c.events_out,
        "events_in": c.events_in,
        "waiting": c.waiting,
        "own_skipped": c.own_skipped,
        "duplicates": c.duplicates,
        "lost_in": c.lost_in,
        "lost_out": c.lost_out,
        "refused": c.refused,
        "reconnects": c.reconnects,
        "errors": c.errors,
        "unique_won": c.unique_won,
        "unique_lost": c.unique_lost,
        "unique_failed": c.unique_failed,
        "nodes_heard": c.nodes_heard,
        "restarts": c.restarts,
        "stream_resets": c.stream_resets,
        "ordinal_jumps": c.ordinal_jumps,
        "dropped": dropped,
    })
}

/// Appends the cluster families (nothing without a cluster); `labels` is
/// the zone label, `family` the caller's HELP/TYPE writer.
pub fn prometheus(out: &mut String, labels: &str, c: &ClusterStats, info: Option<ClusterInfo<'_>>) {
    use super::prom::family;
    let Some(info) = info else {
        return;
    };
    let mut l = String::from(labels);
    let _ = write!(l, ",node=\"{}\"", super::prom::label(info.node));
    for (name, kind, help, v) in [
        (
            "cluster_connected",
            "gauge",
            "1 while the node's bridge is connected to Redis.",
            u64::from(c.connected),
        ),
        (
            "cluster_events_out_total",
            "counter",
            "Cluster events this node appended to the stream.",
            c.events_out,
        ),
        (
            "cluster_events_in_total",
            "counter",
            "Other nodes' events this node delivered.",
            c.events_in,
        ),
        (
            "cluster_events_waiting",
            "gauge",
            "Cluster events posted here and not yet in the stream.",
            c.waiting,
        ),
        (
            "cluster_lost_in_total",
            "counter",
            "Other nodes' events this node never got (gaps in their ordinals).",
            c.lost_in,
        ),
        (
            "cluster_lost_out_total",
            "counter",
            "Cluster events overwritten in the zone before they reached Redis.",
            c.lost_out,
        ),
        (
            "cluster_duplicates_total",
            "counter",
            "Stream entries seen again after a bridge hand-over (dropped).",
            c.duplicates,
        ),
        (
            "cluster_refused_total",
            "counter",
            "Cluster posts refused: the queue for Redis was full.",
            c.refused,
        ),
        (
            "cluster_reconnects_total",
            "counter",
            "Connections to Redis made again after a failure.",
            c.reconnects,
        ),
        (
            "cluster_errors_total",
            "counter",
            "Failed Redis operations.",
            c.errors,
        ),
        (
            "cluster_takeovers_total",
            "counter",
            "Times a worker took the bridge lease.",
            c.leases,
        ),
        (
            "cluster_unique_won_total",
            "counter",
            "Cluster unique events this node won and ran.",
            c.unique_won,
        ),
        (
            "cluster_unique_lost_total",
            "counter",
            "Cluster unique events another node had claimed.",
            c.unique_lost,
        ),
        (
            "cluster_restarts_total",
            "counter",
            "Bridge threads restarted after they died.",
            c.restarts,
        ),
        (
            "cluster_stream_resets_total",
            "counter",
            "Times the stream was found reset (its last id went back) and read again from its start.",
            c.stream_resets,
        ),
        (
            "cluster_ordinal_jumps_total",
            "counter",
            "Implausible ordinal jumps taken as a new count, not as loss.",
            c.ordinal_jumps,
        ),
    ] {
        family(out, name, kind, help, &[(l.clone(), v as f64)]);
    }
    let mut dropped: Vec<(String, f64)> = DropReason::ALL
        .iter()
        .map(|w| {
            (
                format!("{l},reason=\"{}\"", w.name()),
                c.dropped[*w as usize] as f64,
            )
        })
        .collect();
    dropped.push((format!("{l},reason=\"duplicate\""), c.duplicates as f64));
    family(
        out,
        "cluster_dropped_total",
        "counter",
        "Stream entries the bridge dropped, by reason.",
        &dropped,
    );
    family(
        out,
        "cluster_lag_seconds",
        "gauge",
        "How far the newest stream entry read is behind now, while catching up.",
        &[(l, c.lag_ms as f64 / 1000.0)],
    );
}
