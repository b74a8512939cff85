//! The `cluster` part of the status document and its Prometheus families
//! (README "Cluster events"): the bridge's lease and connection, events
//! in and out, losses, duplicates, reconnects and lag, declared once in
//! [`CLUSTER`].

use serde_json::Value;

use super::prom::label;
use super::table::{self, counter, gauge, Metric, Val, JSON_ONLY};
use crate::zone::cluster::{ClusterStats, DropReason};

/// What the zone's counters do not know: the configured node and stream.
#[derive(Clone, Copy, Debug)]
pub struct ClusterInfo<'a> {
    pub node: &'a str,
    pub stream: &'a str,
}

/// The cluster's one row: the counters and the configuration.
pub struct Bridge<'a> {
    pub c: &'a ClusterStats,
    pub info: ClusterInfo<'a>,
}

/// The getter of a cluster metric.
type BridgeGet = fn(&Bridge) -> Val;

/// The cluster metrics; the node is the `node` label in the text format.
pub(super) static CLUSTER: &[Metric<BridgeGet>] = &[
    Metric { json: &["node"], prom: JSON_ONLY, get: |b| b.info.node.into() },
    Metric { json: &["stream"], prom: JSON_ONLY, get: |b| b.info.stream.into() },
    Metric {
        json: &["bridge_pid"],
        prom: JSON_ONLY,
        get: |b| Val::opt((b.c.lease_pid != 0).then_some(b.c.lease_pid)),
    },
    Metric {
        json: &["connected_since"],
        prom: JSON_ONLY,
        get: |b| Val::opt((b.c.connected_ms != 0).then(|| b.c.connected_ms as f64 / 1000.0)),
    },
    Metric {
        json: &["last_id"],
        prom: JSON_ONLY,
        get: |b| Val::opt(b.c.last_id.map(|(ms, seq)| format!("{ms}-{seq}"))),
    },
    Metric { json: &["events_posted"], prom: JSON_ONLY, get: |b| b.c.posted.into() },
    Metric { json: &["own_skipped"], prom: JSON_ONLY, get: |b| b.c.own_skipped.into() },
    Metric { json: &["unique_failed"], prom: JSON_ONLY, get: |b| b.c.unique_failed.into() },
    Metric { json: &["nodes_heard"], prom: JSON_ONLY, get: |b| b.c.nodes_heard.into() },
    Metric {
        json: &["connected"],
        prom: gauge("cluster_connected", "1 while the node's bridge is connected to Redis."),
        get: |b| b.c.connected.into(),
    },
    Metric {
        json: &["events_out"],
        prom: counter(
            "cluster_events_out_total",
            "Cluster events this node appended to the stream.",
        ),
        get: |b| b.c.events_out.into(),
    },
    Metric {
        json: &["events_in"],
        prom: counter("cluster_events_in_total", "Other nodes' events this node delivered."),
        get: |b| b.c.events_in.into(),
    },
    Metric {
        json: &["waiting"],
        prom: gauge(
            "cluster_events_waiting",
            "Cluster events posted here and not yet in the stream.",
        ),
        get: |b| b.c.waiting.into(),
    },
    Metric {
        json: &["lost_in"],
        prom: counter(
            "cluster_lost_in_total",
            "Other nodes' events this node never got (gaps in their ordinals).",
        ),
        get: |b| b.c.lost_in.into(),
    },
    Metric {
        json: &["lost_out"],
        prom: counter(
            "cluster_lost_out_total",
            "Cluster events overwritten in the zone before they reached Redis.",
        ),
        get: |b| b.c.lost_out.into(),
    },
    Metric {
        json: &["duplicates"],
        prom: counter(
            "cluster_duplicates_total",
            "Stream entries seen again after a bridge hand-over (dropped).",
        ),
        get: |b| b.c.duplicates.into(),
    },
    Metric {
        json: &["refused"],
        prom: counter(
            "cluster_refused_total",
            "Cluster posts refused: the queue for Redis was full.",
        ),
        get: |b| b.c.refused.into(),
    },
    Metric {
        json: &["reconnects"],
        prom: counter(
            "cluster_reconnects_total",
            "Connections to Redis made again after a failure.",
        ),
        get: |b| b.c.reconnects.into(),
    },
    Metric {
        json: &["errors"],
        prom: counter("cluster_errors_total", "Failed Redis operations."),
        get: |b| b.c.errors.into(),
    },
    Metric {
        json: &["bridge_takeovers"],
        prom: counter("cluster_takeovers_total", "Times a worker took the bridge lease."),
        get: |b| b.c.leases.into(),
    },
    Metric {
        json: &["unique_won"],
        prom: counter(
            "cluster_unique_won_total",
            "Cluster unique events this node won and ran.",
        ),
        get: |b| b.c.unique_won.into(),
    },
    Metric {
        json: &["unique_lost"],
        prom: counter(
            "cluster_unique_lost_total",
            "Cluster unique events another node had claimed.",
        ),
        get: |b| b.c.unique_lost.into(),
    },
    Metric {
        json: &["restarts"],
        prom: counter("cluster_restarts_total", "Bridge threads restarted after they died."),
        get: |b| b.c.restarts.into(),
    },
    Metric {
        json: &["stream_resets"],
        prom: counter(
            "cluster_stream_resets_total",
            "Times the stream was found reset (its last id went back) and read again from its start.",
        ),
        get: |b| b.c.stream_resets.into(),
    },
    Metric {
        json: &["ordinal_jumps"],
        prom: counter(
            "cluster_ordinal_jumps_total",
            "Implausible ordinal jumps taken as a new count, not as loss.",
        ),
        get: |b| b.c.ordinal_jumps.into(),
    },
    Metric {
        json: &["dropped"],
        prom: counter("cluster_dropped_total", "Stream entries the bridge dropped, by reason."),
        get: |b| dropped(b.c),
    },
    Metric {
        json: &["lag_seconds"],
        prom: gauge(
            "cluster_lag_seconds",
            "How far the newest stream entry read is behind now, while catching up.",
        ),
        get: |b| (b.c.lag_ms as f64 / 1000.0).into(),
    },
];

/// Entries dropped by reason, `duplicate` (counted on its own) last.
fn dropped(c: &ClusterStats) -> Val {
    let mut by: Vec<(&'static str, u64)> = DropReason::ALL
        .iter()
        .map(|w| (w.name(), c.dropped[*w as usize]))
        .collect();
    by.push(("duplicate", c.duplicates));
    Val::By("reason", by)
}

/// The JSON object (`null` when no `worker_events_cluster` names the zone).
pub fn json(c: &ClusterStats, info: Option<ClusterInfo<'_>>) -> Value {
    info.map_or(Value::Null, |info| {
        Value::Object(table::json_object(CLUSTER, &Bridge { c, info }))
    })
}

/// Appends the cluster families (nothing without a cluster); `labels` is
/// the zone label.
pub fn prometheus(out: &mut String, labels: &str, c: &ClusterStats, info: Option<ClusterInfo<'_>>) {
    let Some(info) = info else {
        return;
    };
    let l = format!("{labels},node=\"{}\"", label(info.node));
    table::prometheus(out, CLUSTER, &[(l, &Bridge { c, info })]);
}
