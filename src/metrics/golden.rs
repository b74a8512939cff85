//! Golden tests of the status document: a hand-filled [`ZoneStats`]
//! (workers in every state, a managed one with a heartbeat, tasks, a
//! cluster block with drops, delay buckets, labels that need escaping)
//! rendered as pretty JSON and as Prometheus text, compared byte for byte
//! with `testdata/`. The texts are the renderers' output before the metric
//! table; a change to them is a change of the endpoint's output.

use super::cluster::ClusterInfo;
use super::render::{json, prometheus, View};
use crate::zone::cluster::{ClusterStats, DROPS};
use crate::zone::slots::{SlotCounters, SlotOwner, SlotState};
use crate::zone::stats::ZoneStats;
use crate::zone::tasks::TaskStats;

fn owner(slot: usize, pid: i32, worker: i32, state: SlotState, beat_ms: u64) -> SlotOwner {
    SlotOwner {
        slot,
        pid,
        worker,
        generation: 3,
        push: slot.is_multiple_of(2),
        state,
        beat_ms,
        started_ms: 1_700_000_000_123 + slot as u64,
    }
}

fn counters(n: u64, read_pos: u64, read_seq: u64) -> SlotCounters {
    SlotCounters {
        delivered: 10 * n,
        lost: n,
        wakeups: 100 + n,
        handler_errors: n / 2,
        read_pos,
        read_seq,
    }
}

fn task(name: &[u8], n: u64, last_duration_us: u64) -> TaskStats {
    TaskStats {
        name: name.to_vec(),
        runs: 20 + n,
        failures: n,
        retries: n + 1,
        overlaps: n + 2,
        skipped: n + 3,
        last_duration_us,
        last_ms: 1_700_000_100_000 + n,
        last_pid: 4000 + n as i32,
    }
}

fn cluster() -> ClusterStats {
    ClusterStats {
        lease_pid: 4242,
        leases: 3,
        connected: true,
        connected_ms: 1_700_000_050_500,
        lag_ms: 1_250,
        waiting: 4,
        posted: 77,
        events_out: 73,
        events_in: 51,
        own_skipped: 73,
        duplicates: 2,
        lost_in: 5,
        lost_out: 1,
        refused: 6,
        reconnects: 7,
        errors: 8,
        unique_won: 9,
        unique_lost: 10,
        unique_failed: 11,
        last_id: Some((1_700_000_060_000, 4)),
        nodes_heard: 2,
        restarts: 1,
        stream_resets: 1,
        ordinal_jumps: 12,
        dropped: core::array::from_fn(|i| i as u64 * 3),
    }
}

fn stats() -> ZoneStats {
    assert_eq!(DROPS, 7);
    ZoneStats {
        head: 9_000,
        tail: 1_000,
        next_seq: 501,
        posted: 500,
        // above 2^53: exact in JSON, rounded as a Prometheus sample
        evicted: (1 << 53) + 1,
        log_size: 65_536,
        max_record: 16_384,
        generation: 3,
        workers: vec![
            // managed, running, read up to a point
            owner(0, 1001, 0, SlotState::Running, 40_000),
            // not managed, exiting, never read
            owner(1, 1002, 1, SlotState::Exiting, 0),
            // managed, overdue, read everything
            owner(2, 1003, 2, SlotState::Unresponsive, 10_500),
            // only a read seq; beyond `alive` (taken as dead)
            owner(3, 1004, 3, SlotState::Unresponsive, 0),
        ],
        claims_capacity: 1024,
        claims_refused: 4,
        bytes_posted: 123_456,
        wakeups_sent: 33,
        worker_counters: vec![
            counters(1, 8_000, 480),
            counters(2, 0, 0),
            counters(3, 9_000, 501),
            counters(5, 0, 7),
        ],
        managed_generation: 3,
        managed_generation_ms: 1_700_000_000_999,
        crashes: 2,
        unresponsive: 5,
        delay_buckets: vec![1, 2, 3, 0, 5, 0, 0, 8, 0, 0, 0, 1, 4],
        delay_sum_us: 1_234_567,
        delay_count: 24,
        tasks: vec![
            task(b"refresh", 0, 1_500),
            task(b"a\"b\\c\nd \xff", 3, 2_000_000),
        ],
        cluster: cluster(),
    }
}

fn view<'a>(s: &'a ZoneStats, cluster: Option<ClusterInfo<'a>>) -> View<'a> {
    View {
        zone: "ev\"z\\",
        stats: s,
        alive: &[true, false, true],
        claims_live: 17,
        now_mono_ms: 42_250,
        cluster,
    }
}

const INFO: ClusterInfo<'static> = ClusterInfo {
    node: "node\"1\\\n",
    stream: "we:stream",
};

#[test]
fn json_is_unchanged() {
    let s = stats();
    let got = serde_json::to_string_pretty(&json(&view(&s, Some(INFO)))).unwrap();
    assert_eq!(got, include_str!("testdata/status.json"));
}

#[test]
fn prometheus_is_unchanged() {
    let s = stats();
    let got = prometheus(&view(&s, Some(INFO)));
    assert_eq!(got, include_str!("testdata/status.prom"));
}

#[test]
fn without_cluster_json_is_unchanged() {
    let s = stats();
    let got = serde_json::to_string_pretty(&json(&view(&s, None))).unwrap();
    assert_eq!(got, include_str!("testdata/no_cluster.json"));
}

#[test]
fn without_cluster_prometheus_is_unchanged() {
    let s = stats();
    let got = prometheus(&view(&s, None));
    assert_eq!(got, include_str!("testdata/no_cluster.prom"));
}

/// No workers, no tasks, no delays, a cluster bridge that never ran.
#[test]
fn an_empty_zone_is_unchanged() {
    let s = ZoneStats {
        workers: vec![],
        worker_counters: vec![],
        tasks: vec![],
        delay_buckets: vec![0; 13],
        // a bridge never seen: no pid, no connection, no stream id
        cluster: ClusterStats::default(),
        ..stats()
    };
    let v = View {
        alive: &[],
        ..view(&s, Some(INFO))
    };
    let got = serde_json::to_string_pretty(&json(&v)).unwrap();
    assert_eq!(got, include_str!("testdata/empty.json"));
    assert_eq!(prometheus(&v), include_str!("testdata/empty.prom"));
}
