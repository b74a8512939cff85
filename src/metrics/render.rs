//! The status snapshot rendered as JSON and as the Prometheus text format
//! (0.0.4), pure: a [`ZoneStats`] plus what only the caller knows (liveness
//! of pids, live claims, the clocks) in, bytes out. The zone's metrics are
//! declared once, in the tables below (one per scope: the zone, a worker,
//! the delay histogram, a task), and both renderers walk them. Names are
//! documented in README "Status endpoint" and kept stable.

use serde_json::Value;

use super::prom::label;
use super::table::{self, counter, gauge, histo, Metric, Val, JSON_ONLY};
use crate::zone::layout::DELAY_BUCKETS_US;
use crate::zone::slots::{SlotCounters, SlotOwner, SlotState};
use crate::zone::stats::ZoneStats;
use crate::zone::tasks::TaskStats;

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

fn secs_us(us: u64) -> f64 {
    us as f64 / 1e6
}

/// The getter of a zone-wide metric, a worker's, a task's.
type ZoneGet = fn(&View) -> Val;
type WorkerGet = fn(&WorkerRow) -> Val;
type TaskGet = fn(&TaskStats) -> Val;

/// The zone-wide metrics.
static ZONE: &[Metric<ZoneGet>] = &[
    Metric {
        json: &["zone"],
        prom: JSON_ONLY,
        get: |v| v.zone.into(),
    },
    Metric {
        json: &["events", "posted"],
        prom: counter("events_posted_total", "Events posted to the zone."),
        get: |v| v.stats.posted.into(),
    },
    Metric {
        json: &["events", "bytes_posted"],
        prom: counter(
            "events_posted_bytes_total",
            "Bytes of the records posted (headers and padding included).",
        ),
        get: |v| v.stats.bytes_posted.into(),
    },
    Metric {
        json: &["events", "evicted"],
        prom: counter(
            "events_evicted_total",
            "Events overwritten in the log to make room.",
        ),
        get: |v| v.stats.evicted.into(),
    },
    Metric {
        json: &["events", "next_seq"],
        prom: JSON_ONLY,
        get: |v| v.stats.next_seq.into(),
    },
    Metric {
        json: &["log", "size_bytes"],
        prom: gauge("log_size_bytes", "Capacity of the zone's event log."),
        get: |v| v.stats.log_size.into(),
    },
    Metric {
        json: &["log", "used_bytes"],
        prom: gauge("log_used_bytes", "Bytes of the log holding events."),
        get: |v| v.stats.head.saturating_sub(v.stats.tail).into(),
    },
    Metric {
        json: &["log", "max_record_bytes"],
        prom: gauge(
            "max_record_bytes",
            "Largest event the log accepts (record bytes).",
        ),
        get: |v| v.stats.max_record.into(),
    },
    Metric {
        json: &["wakeups_sent"],
        prom: counter(
            "wakeups_sent_total",
            "Push wake-ups posters sent to other workers.",
        ),
        get: |v| v.stats.wakeups_sent.into(),
    },
    Metric {
        json: &["claims", "capacity"],
        prom: gauge(
            "claims_capacity",
            "Live unique keys the claims table holds at most.",
        ),
        get: |v| v.stats.claims_capacity.into(),
    },
    Metric {
        json: &["claims", "live"],
        prom: gauge("claims_live", "Live unique keys and task windows."),
        get: |v| v.claims_live.into(),
    },
    Metric {
        json: &["claims", "refused"],
        prom: counter(
            "claims_refused_total",
            "Posts refused: no room for their unique key.",
        ),
        get: |v| v.stats.claims_refused.into(),
    },
    Metric {
        json: &["lifecycle", "generation"],
        prom: gauge(
            "generation",
            "Configuration cycles (start and reloads) that adopted the zone.",
        ),
        get: |v| v.stats.generation.into(),
    },
    Metric {
        json: &["lifecycle", "reloads"],
        prom: counter("reloads_total", "Reloads that adopted the zone."),
        get: |v| v.stats.generation.saturating_sub(1).into(),
    },
    Metric {
        json: &["lifecycle", "started_generation"],
        prom: JSON_ONLY,
        get: |v| v.stats.managed_generation.into(),
    },
    Metric {
        json: &["lifecycle", "started_generation_at"],
        prom: JSON_ONLY,
        get: |v| secs_ms(v.stats.managed_generation_ms).into(),
    },
    Metric {
        json: &["lifecycle", "crashes"],
        prom: counter(
            "worker_crashes_total",
            "Workers reported crashed (died without exiting).",
        ),
        get: |v| v.stats.crashes.into(),
    },
    Metric {
        json: &["lifecycle", "unresponsive_reports"],
        prom: counter(
            "worker_unresponsive_reports_total",
            "Reports of a worker whose heartbeat was overdue.",
        ),
        get: |v| v.stats.unresponsive.into(),
    },
    Metric {
        json: &["lifecycle", "unresponsive_now"],
        prom: gauge(
            "workers_unresponsive",
            "Workers whose heartbeat is overdue now.",
        ),
        get: |v| unresponsive_now(v.stats).into(),
    },
];

fn unresponsive_now(s: &ZoneStats) -> u64 {
    s.workers
        .iter()
        .filter(|o| o.state == SlotState::Unresponsive)
        .count() as u64
}

/// The delivery delay histogram (after the workers in the text format).
static DELAY: &[Metric<ZoneGet>] = &[Metric {
    json: &["delivery_delay_seconds"],
    prom: histo(
        "delivery_delay_seconds",
        "Time from post to delivery to a consumer.",
    ),
    get: |v| delay(v.stats),
}];

fn delay(s: &ZoneStats) -> Val {
    let mut cumulative = 0;
    let le = s
        .delay_buckets
        .iter()
        .enumerate()
        .map(|(i, n)| {
            cumulative += n;
            (DELAY_BUCKETS_US.get(i).map(|us| secs_us(*us)), cumulative)
        })
        .collect();
    Val::H(table::Buckets {
        le,
        sum: secs_us(s.delay_sum_us),
        count: s.delay_count,
    })
}

/// One worker slot and what the view knows of it.
pub struct WorkerRow<'a> {
    pub owner: &'a SlotOwner,
    pub counters: &'a SlotCounters,
    pub alive: bool,
    /// Its slowest consumer's distance to the head (none before it read).
    pub behind_events: Option<u64>,
    pub behind_bytes: Option<u64>,
    /// Seconds since its heartbeat (managed workers only).
    pub heartbeat_age: Option<f64>,
}

fn worker_rows<'a>(v: &View<'a>) -> Vec<WorkerRow<'a>> {
    let s = v.stats;
    s.workers
        .iter()
        .zip(&s.worker_counters)
        .enumerate()
        .map(|(i, (o, c))| {
            let read = c.read_seq != 0 || c.read_pos != 0;
            WorkerRow {
                owner: o,
                counters: c,
                alive: v.alive.get(i).copied().unwrap_or(false),
                behind_events: read.then(|| s.next_seq.saturating_sub(c.read_seq)),
                behind_bytes: read.then(|| s.head.saturating_sub(c.read_pos)),
                heartbeat_age: o
                    .managed()
                    .then(|| secs_ms(v.now_mono_ms.saturating_sub(o.beat_ms))),
            }
        })
        .collect()
}

/// The per-worker metrics; pid, worker and generation are labels in the text format.
static WORKER: &[Metric<WorkerGet>] = &[
    Metric {
        json: &["pid"],
        prom: JSON_ONLY,
        get: |w| w.owner.pid.into(),
    },
    Metric {
        json: &["worker"],
        prom: JSON_ONLY,
        get: |w| w.owner.worker.into(),
    },
    Metric {
        json: &["generation"],
        prom: JSON_ONLY,
        get: |w| w.owner.generation.into(),
    },
    Metric {
        json: &["alive"],
        prom: gauge("worker_up", "1 while the slot's process is alive."),
        get: |w| w.alive.into(),
    },
    Metric {
        json: &["state"],
        prom: JSON_ONLY,
        get: |w| w.owner.state.as_str().into(),
    },
    Metric {
        json: &["push"],
        prom: JSON_ONLY,
        get: |w| w.owner.push.into(),
    },
    Metric {
        json: &["started"],
        prom: JSON_ONLY,
        get: |w| secs_ms(w.owner.started_ms).into(),
    },
    Metric {
        json: &["delivered"],
        prom: counter(
            "worker_delivered_total",
            "Events handed to the worker's consumers (one per consumer and event).",
        ),
        get: |w| w.counters.delivered.into(),
    },
    Metric {
        json: &["lost"],
        prom: counter(
            "worker_lost_total",
            "Events the worker's consumers lost (overwritten before they read them).",
        ),
        get: |w| w.counters.lost.into(),
    },
    Metric {
        json: &["wakeups_received"],
        prom: counter(
            "worker_wakeups_received_total",
            "Push wake-ups the worker received.",
        ),
        get: |w| w.counters.wakeups.into(),
    },
    Metric {
        json: &["handler_errors"],
        prom: counter(
            "worker_handler_errors_total",
            "Event handlers that raised in the worker.",
        ),
        get: |w| w.counters.handler_errors.into(),
    },
    Metric {
        json: &["behind_events"],
        prom: gauge(
            "worker_behind_events",
            "Events posted that the worker's slowest consumer has not read.",
        ),
        get: |w| Val::opt(w.behind_events),
    },
    Metric {
        json: &["behind_bytes"],
        prom: gauge(
            "worker_behind_bytes",
            "Log bytes the worker's slowest consumer has not read.",
        ),
        get: |w| Val::opt(w.behind_bytes),
    },
    Metric {
        json: &["heartbeat_age_seconds"],
        prom: gauge(
            "worker_heartbeat_age_seconds",
            "Seconds since the worker's last lifecycle heartbeat.",
        ),
        get: |w| Val::opt(w.heartbeat_age),
    },
];

fn task_name(t: &TaskStats) -> String {
    String::from_utf8_lossy(&t.name).into_owned()
}

/// The per-task metrics; the identifier is the `task` label in the text format.
static TASK: &[Metric<TaskGet>] = &[
    Metric {
        json: &["identifier"],
        prom: JSON_ONLY,
        get: |t| task_name(t).into(),
    },
    Metric {
        json: &["runs"],
        prom: counter("task_runs_total", "Runs of the interval task."),
        get: |t| t.runs.into(),
    },
    Metric {
        json: &["failures"],
        prom: counter("task_failures_total", "Runs of the task that raised."),
        get: |t| t.failures.into(),
    },
    Metric {
        json: &["retries"],
        prom: counter(
            "task_retries_total",
            "Windows run again: their worker died mid-run.",
        ),
        get: |t| t.retries.into(),
    },
    Metric {
        json: &["overlaps"],
        prom: counter(
            "task_overlaps_total",
            "Windows skipped: the previous run was still going.",
        ),
        get: |t| t.overlaps.into(),
    },
    Metric {
        json: &["skipped"],
        prom: counter(
            "task_skipped_total",
            "Windows skipped: no room in the claims table.",
        ),
        get: |t| t.skipped.into(),
    },
    Metric {
        json: &["last_duration_seconds"],
        prom: gauge(
            "task_last_duration_seconds",
            "Duration of the task's last run.",
        ),
        get: |t| secs_us(t.last_duration_us).into(),
    },
    Metric {
        json: &["last_run"],
        prom: JSON_ONLY,
        get: |t| secs_ms(t.last_ms).into(),
    },
    Metric {
        json: &["last_pid"],
        prom: JSON_ONLY,
        get: |t| t.last_pid.into(),
    },
];

/// The JSON document.
pub fn json(v: &View) -> Value {
    let s = v.stats;
    let mut doc = table::json_object(ZONE, v);
    doc.extend(table::json_object(DELAY, v));
    doc.insert("workers".into(), table::json_array(WORKER, &worker_rows(v)));
    doc.insert("tasks".into(), table::json_array(TASK, &s.tasks));
    doc.insert(
        "cluster".into(),
        super::cluster::json(&s.cluster, v.cluster),
    );
    Value::Object(doc)
}

/// The Prometheus text exposition (version 0.0.4).
pub fn prometheus(v: &View) -> String {
    let s = v.stats;
    let z = format!("zone=\"{}\"", label(v.zone));
    let mut out = String::new();
    table::prometheus(&mut out, ZONE, &[(z.clone(), v)]);
    let rows = worker_rows(v);
    let workers: Vec<(String, &WorkerRow)> = rows
        .iter()
        .map(|w| {
            let o = w.owner;
            let l = format!(
                "{z},pid=\"{}\",worker=\"{}\",generation=\"{}\"",
                o.pid, o.worker, o.generation
            );
            (l, w)
        })
        .collect();
    table::prometheus(&mut out, WORKER, &workers);
    table::prometheus(&mut out, DELAY, &[(z.clone(), v)]);
    let tasks: Vec<(String, &TaskStats)> = s
        .tasks
        .iter()
        .map(|t| (format!("{z},task=\"{}\"", label(&task_name(t))), t))
        .collect();
    table::prometheus(&mut out, TASK, &tasks);
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
    fn the_tables_are_sound() {
        use table::{assert_sound, outline};
        let mut zone = outline(ZONE);
        zone.extend(outline(DELAY));
        // the rows' arrays and the cluster's object, inserted by `json`
        zone.extend([&["workers"][..], &["tasks"], &["cluster"]].map(|p| (p, None)));
        let scopes = [
            zone,
            outline(WORKER),
            outline(TASK),
            outline(super::super::cluster::CLUSTER),
        ];
        assert_sound(&scopes);
    }

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
