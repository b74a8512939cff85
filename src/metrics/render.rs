//! The status snapshot rendered as JSON and as the Prometheus text format
//! (0.0.4), pure: a [`ZoneStats`] plus what only the caller knows (liveness
//! of pids, live claims, the clocks) in, bytes out. Names are documented in
//! README "Status endpoint" and kept stable.

use core::fmt::Write;

use serde_json::{json, Value};

use super::prom::{family, label};
use crate::zone::layout::DELAY_BUCKETS_US;
use crate::zone::slots::SlotState;
use crate::zone::stats::ZoneStats;

/// What the renderer needs besides the zone's counters.
pub struct View<'a> {
    pub zone: &'a str,
    pub stats: &'a ZoneStats,
    /// Per `stats.workers`: the pid is alive.
    pub alive: &'a [bool],
    pub claims_live: u64,
    pub now_mono_ms: u64,
    /// The cluster's node and stream, when `worker_events_cluster` names the zone.
    pub cluster: Option<super::cluster::ClusterInfo<'a>>,
}

fn secs_ms(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

struct Worker {
    alive: bool,
    behind_events: Option<u64>,
    behind_bytes: Option<u64>,
    heartbeat_age: Option<f64>,
}

fn worker_facts(v: &View, i: usize) -> Worker {
    let s = v.stats;
    let (o, c) = (&s.workers[i], &s.worker_counters[i]);
    let read = c.read_seq != 0 || c.read_pos != 0;
    Worker {
        alive: v.alive.get(i).copied().unwrap_or(false),
        behind_events: read.then(|| s.next_seq.saturating_sub(c.read_seq)),
        behind_bytes: read.then(|| s.head.saturating_sub(c.read_pos)),
        heartbeat_age: o
            .managed()
            .then(|| secs_ms(v.now_mono_ms.saturating_sub(o.beat_ms))),
    }
}

fn unresponsive_now(s: &ZoneStats) -> usize {
    s.workers
        .iter()
        .filter(|o| o.state == SlotState::Unresponsive)
        .count()
}

/// The JSON document.
pub fn json(v: &View) -> Value {
    let s = v.stats;
    let mut cumulative = 0;
    let buckets: Vec<Value> = s
        .delay_buckets
        .iter()
        .enumerate()
        .map(|(i, n)| {
            cumulative += n;
            let le = DELAY_BUCKETS_US
                .get(i)
                .map_or(json!("+Inf"), |us| json!(*us as f64 / 1e6));
            json!({ "le": le, "count": cumulative })
        })
        .collect();
    let workers: Vec<Value> = (0..s.workers.len())
        .map(|i| {
            let (o, c, f) = (&s.workers[i], &s.worker_counters[i], worker_facts(v, i));
            json!({
                "pid": o.pid,
                "worker": o.worker,
                "generation": o.generation,
                "alive": f.alive,
                "state": o.state.as_str(),
                "push": o.push,
                "started": secs_ms(o.started_ms),
                "heartbeat_age_seconds": f.heartbeat_age,
                "delivered": c.delivered,
                "lost": c.lost,
                "wakeups_received": c.wakeups,
                "handler_errors": c.handler_errors,
                "behind_events": f.behind_events,
                "behind_bytes": f.behind_bytes,
            })
        })
        .collect();
    let tasks: Vec<Value> = s
        .tasks
        .iter()
        .map(|t| {
            json!({
                "identifier": String::from_utf8_lossy(&t.name),
                "runs": t.runs,
                "failures": t.failures,
                "retries": t.retries,
                "overlaps": t.overlaps,
                "skipped": t.skipped,
                "last_duration_seconds": t.last_duration_us as f64 / 1e6,
                "last_run": secs_ms(t.last_ms),
                "last_pid": t.last_pid,
            })
        })
        .collect();
    json!({
        "zone": v.zone,
        "events": {
            "posted": s.posted,
            "bytes_posted": s.bytes_posted,
            "evicted": s.evicted,
            "next_seq": s.next_seq,
        },
        "log": {
            "size_bytes": s.log_size,
            "used_bytes": s.head.saturating_sub(s.tail),
            "max_record_bytes": s.max_record,
        },
        "wakeups_sent": s.wakeups_sent,
        "claims": {
            "capacity": s.claims_capacity,
            "live": v.claims_live,
            "refused": s.claims_refused,
        },
        "delivery_delay_seconds": {
            "buckets": buckets,
            "sum": s.delay_sum_us as f64 / 1e6,
            "count": s.delay_count,
        },
        "workers": workers,
        "lifecycle": {
            "generation": s.generation,
            "reloads": s.generation.saturating_sub(1),
            "started_generation": s.managed_generation,
            "started_generation_at": secs_ms(s.managed_generation_ms),
            "crashes": s.crashes,
            "unresponsive_reports": s.unresponsive,
            "unresponsive_now": unresponsive_now(s),
        },
        "tasks": tasks,
        "cluster": super::cluster::json(&s.cluster, v.cluster),
    })
}

/// The Prometheus text exposition (version 0.0.4).
pub fn prometheus(v: &View) -> String {
    let s = v.stats;
    let z = format!("zone=\"{}\"", label(v.zone));
    let one = |x: u64| vec![(z.clone(), x as f64)];
    let mut out = String::new();
    for (name, kind, help, x) in [
        (
            "events_posted_total",
            "counter",
            "Events posted to the zone.",
            s.posted,
        ),
        (
            "events_posted_bytes_total",
            "counter",
            "Bytes of the records posted (headers and padding included).",
            s.bytes_posted,
        ),
        (
            "events_evicted_total",
            "counter",
            "Events overwritten in the log to make room.",
            s.evicted,
        ),
        (
            "log_size_bytes",
            "gauge",
            "Capacity of the zone's event log.",
            s.log_size,
        ),
        (
            "log_used_bytes",
            "gauge",
            "Bytes of the log holding events.",
            s.head.saturating_sub(s.tail),
        ),
        (
            "max_record_bytes",
            "gauge",
            "Largest event the log accepts (record bytes).",
            s.max_record,
        ),
        (
            "wakeups_sent_total",
            "counter",
            "Push wake-ups posters sent to other workers.",
            s.wakeups_sent,
        ),
        (
            "claims_capacity",
            "gauge",
            "Live unique keys the claims table holds at most.",
            s.claims_capacity,
        ),
        (
            "claims_live",
            "gauge",
            "Live unique keys and task windows.",
            v.claims_live,
        ),
        (
            "claims_refused_total",
            "counter",
            "Posts refused: no room for their unique key.",
            s.claims_refused,
        ),
        (
            "generation",
            "gauge",
            "Configuration cycles (start and reloads) that adopted the zone.",
            s.generation,
        ),
        (
            "reloads_total",
            "counter",
            "Reloads that adopted the zone.",
            s.generation.saturating_sub(1),
        ),
        (
            "worker_crashes_total",
            "counter",
            "Workers reported crashed (died without exiting).",
            s.crashes,
        ),
        (
            "worker_unresponsive_reports_total",
            "counter",
            "Reports of a worker whose heartbeat was overdue.",
            s.unresponsive,
        ),
        (
            "workers_unresponsive",
            "gauge",
            "Workers whose heartbeat is overdue now.",
            unresponsive_now(s) as u64,
        ),
    ] {
        family(&mut out, name, kind, help, &one(x));
    }

    let wl: Vec<String> = s
        .workers
        .iter()
        .map(|o| {
            format!(
                "{z},pid=\"{}\",worker=\"{}\",generation=\"{}\"",
                o.pid, o.worker, o.generation
            )
        })
        .collect();
    let per_worker = |f: &dyn Fn(usize) -> Option<f64>| -> Vec<(String, f64)> {
        (0..s.workers.len())
            .filter_map(|i| f(i).map(|x| (wl[i].clone(), x)))
            .collect()
    };
    let c = &s.worker_counters;
    family(
        &mut out,
        "worker_up",
        "gauge",
        "1 while the slot's process is alive.",
        &per_worker(&|i| Some(worker_facts(v, i).alive as u8 as f64)),
    );
    family(
        &mut out,
        "worker_delivered_total",
        "counter",
        "Events handed to the worker's consumers (one per consumer and event).",
        &per_worker(&|i| Some(c[i].delivered as f64)),
    );
    family(
        &mut out,
        "worker_lost_total",
        "counter",
        "Events the worker's consumers lost (overwritten before they read them).",
        &per_worker(&|i| Some(c[i].lost as f64)),
    );
    family(
        &mut out,
        "worker_wakeups_received_total",
        "counter",
        "Push wake-ups the worker received.",
        &per_worker(&|i| Some(c[i].wakeups as f64)),
    );
    family(
        &mut out,
        "worker_handler_errors_total",
        "counter",
        "Event handlers that raised in the worker.",
        &per_worker(&|i| Some(c[i].handler_errors as f64)),
    );
    family(
        &mut out,
        "worker_behind_events",
        "gauge",
        "Events posted that the worker's slowest consumer has not read.",
        &per_worker(&|i| worker_facts(v, i).behind_events.map(|x| x as f64)),
    );
    family(
        &mut out,
        "worker_behind_bytes",
        "gauge",
        "Log bytes the worker's slowest consumer has not read.",
        &per_worker(&|i| worker_facts(v, i).behind_bytes.map(|x| x as f64)),
    );
    family(
        &mut out,
        "worker_heartbeat_age_seconds",
        "gauge",
        "Seconds since the worker's last lifecycle heartbeat.",
        &per_worker(&|i| worker_facts(v, i).heartbeat_age),
    );

    let _ = writeln!(
        out,
        "# HELP ngx_worker_events_delivery_delay_seconds Time from post to delivery to a consumer."
    );
    let _ = writeln!(
        out,
        "# TYPE ngx_worker_events_delivery_delay_seconds histogram"
    );
    let mut cumulative = 0;
    for (i, n) in s.delay_buckets.iter().enumerate() {
        cumulative += n;
        let le = DELAY_BUCKETS_US
            .get(i)
            .map_or("+Inf".to_string(), |us| format!("{}", *us as f64 / 1e6));
        let _ = writeln!(
            out,
            "ngx_worker_events_delivery_delay_seconds_bucket{{{z},le=\"{le}\"}} {cumulative}"
        );
    }
    let _ = writeln!(
        out,
        "ngx_worker_events_delivery_delay_seconds_sum{{{z}}} {}",
        s.delay_sum_us as f64 / 1e6
    );
    let _ = writeln!(
        out,
        "ngx_worker_events_delivery_delay_seconds_count{{{z}}} {}",
        s.delay_count
    );

    let tl: Vec<String> = s
        .tasks
        .iter()
        .map(|t| format!("{z},task=\"{}\"", label(&String::from_utf8_lossy(&t.name))))
        .collect();
    let per_task = |f: &dyn Fn(usize) -> f64| -> Vec<(String, f64)> {
        (0..s.tasks.len()).map(|i| (tl[i].clone(), f(i))).collect()
    };
    let t = &s.tasks;
    family(
        &mut out,
        "task_runs_total",
        "counter",
        "Runs of the interval task.",
        &per_task(&|i| t[i].runs as f64),
    );
    family(
        &mut out,
        "task_failures_total",
        "counter",
        "Runs of the task that raised.",
        &per_task(&|i| t[i].failures as f64),
    );
    family(
        &mut out,
        "task_retries_total",
        "counter",
        "Windows run again: their worker died mid-run.",
        &per_task(&|i| t[i].retries as f64),
    );
    family(
        &mut out,
        "task_overlaps_total",
        "counter",
        "Windows skipped: the previous run was still going.",
        &per_task(&|i| t[i].overlaps as f64),
    );
    family(
        &mut out,
        "task_skipped_total",
        "counter",
        "Windows skipped: no room in the claims table.",
        &per_task(&|i| t[i].skipped as f64),
    );
    family(
        &mut out,
        "task_last_duration_seconds",
        "gauge",
        "Duration of the task's last run.",
        &per_task(&|i| t[i].last_duration_us as f64 / 1e6),
    );
    super::cluster::prometheus(&mut out, &z, &s.cluster, v.cluster);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zone::layout::testing::zone;
    use crate::zone::lock::TestLock;
    use crate::zone::tasks::TaskEvent;

    #[test]
    fn renders_counters_and_escapes_labels() {
        let z = zone(256 * 1024);
        let l = TestLock::default();
        z.ring().append(&l, 5, b"s", b"e", None, b"x").unwrap();
        let a = z.slots().acquire(&l, 5, 2, 1, 1000, |_| true).unwrap();
        z.slots().beat(a, 500);
        z.tasks().record(&l, b"a\"b", TaskEvent::Retried);
        z.tasks().record(&l, b"a\"b", TaskEvent::Skipped);
        let stats = z.stats();
        let v = View {
            zone: "ev",
            stats: &stats,
            alive: &[true],
            claims_live: 3,
            now_mono_ms: 1500,
            cluster: Some(crate::metrics::cluster::ClusterInfo {
                node: "n\"1",
                stream: "s",
            }),
        };
        let j = json(&v);
        assert_eq!(j["events"]["posted"], 1);
        assert_eq!(j["workers"][0]["worker"], 2);
        assert_eq!(j["workers"][0]["heartbeat_age_seconds"], 1.0);
        assert_eq!(j["workers"][0]["behind_events"], Value::Null);
        assert_eq!(j["tasks"][0]["identifier"], "a\"b");
        assert_eq!(j["tasks"][0]["skipped"], 1);
        assert_eq!(j["delivery_delay_seconds"]["buckets"][12]["le"], "+Inf");
        let p = prometheus(&v);
        assert!(p.contains("ngx_worker_events_events_posted_total{zone=\"ev\"} 1\n"));
        assert!(p.contains("ngx_worker_events_task_retries_total{zone=\"ev\",task=\"a\\\"b\"} 1\n"));
        assert!(p.contains("ngx_worker_events_task_skipped_total{zone=\"ev\",task=\"a\\\"b\"} 1\n"));
        assert!(p.contains(
            "ngx_worker_events_delivery_delay_seconds_bucket{zone=\"ev\",le=\"+Inf\"} 0\n"
        ));
        assert!(p.contains("# TYPE ngx_worker_events_worker_up gauge\n"));
        assert_eq!(j["cluster"]["node"], "n\"1");
        assert_eq!(j["cluster"]["connected"], false);
        assert!(p.contains(
            "ngx_worker_events_cluster_events_in_total{zone=\"ev\",node=\"n\\\"1\"} 0\n"
        ));
    }
}
