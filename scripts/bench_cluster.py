#!/usr/bin/env python3
"""cluster, a scenario of scripts/bench.py: events between two nginx nodes
over Redis Streams (worker_events_cluster), next to the same events' local
delivery on the posting node.

Starts its own redis-server (a free port, a temp dir
BENCH_CLUSTER_PREFIX-redis-XXXX, no RDB, no AOF) and, for every
measurement, two fresh nginx instances with this module: node A
(BENCH_CLUSTER_PREFIX-a, 127.0.0.1:BENCH_CLUSTER_PORT) and node B
(BENCH_CLUSTER_PREFIX-b, port + 1), WORKERS workers each, one zone
(`worker_events_zone ev`) with `worker_events_cluster` on its own stream.
nginx-conf/bench/cluster.conf.tmpl, nginx-conf/bench/cluster_harness.lua.
The module's .so is copied to BENCH_CLUSTER_PREFIX-module.so first, so that
a rebuild during the run does not mix builds (IMPL_* do not apply: the
cluster is this module's own extension).
Before each measurement the driver waits until both bridges are connected
and a warm-up cluster event from A reached every worker of B. One worker of
A posts (the driver picks it, BENCH_CLUSTER_POSTER): every worker of A gets
each event locally, every worker of B through Redis.

  latency     BENCH_CLUSTER_LAT_COUNT (2000) events of 64 B (a table
              {n, z, p = 64 B, t}), one every BENCH_CLUSTER_PERIOD s (0.005),
              each carrying its CLOCK_MONOTONIC post time: receive minus post
              on B's workers (cross-node) and on A's other workers (same
              node), p50 / p99 / max
  throughput  BENCH_CLUSTER_COUNT (100000) events of 64 B, as fast as the
              poster goes: BENCH_CLUSTER_BATCH (256) posts, then
              ngx.sleep(BENCH_CLUSTER_PAUSE) (0: one yield), so that the
              event loop of the poster's worker (the bridge, when it runs
              there) gets its turn; posts/s on A, delivered/s on A's other
              workers and on B's (first to last receive, and first post to
              last receive), lost (K - received, B's cluster lost_in,
              the lost events), duplicates / out of order, Redis's and the
              workers' CPU time, and on-CPU µs per event of each node's
              bridge worker (all its work: bridge, own receiving, posting
              when poster=bridge) and of the redis-server
  cluster_redis_floor  (with latency, each round) a reference without
              nginx: 500 stamps, one every 5 ms, XADDed by this process and
              read by a child blocked in XREAD BLOCK on the same redis-server,
              i.e. what one Redis hop between two processes costs here
  cluster_redis_xadd  (with throughput, each round) a reference without
              nginx: redis-benchmark (REDIS_BENCHMARK; skipped when not
              found) on the same redis-server, BENCH_CLUSTER_XADD_REQUESTS
              (1000000, ~1.5 s here) XADDs pipelined 1024 deep like the
              bridge's batches, entries shaped like the bridge's (`XADD
              <stream> MAXLEN ~ <maxlen> * n e o s v d`, d as long as the
              64 B table's encoding, 96 B), one client (the bridge's one
              connection), then 4: requests/s, i.e. about the most one
              connection can XADD here; the throughput rows give cross-node
              delivered/s ÷ that (1 client, medians)
BENCH_CLUSTER_POSTER: "other" (the poster is not A's bridge worker),
"bridge" (the poster is A's bridge worker), or both, comma-separated
(default other,bridge). Each of BENCH_CLUSTER_REPEAT (3) rounds runs every
test once per poster placement; with more than one round the summary rows
give median (range).

Environment: WORKERS, BENCH_API (worker.events | events: publish_cluster("all", ...)),
BENCH_CLUSTER_TESTS (latency,throughput), BENCH_CLUSTER_POSTER,
BENCH_CLUSTER_REPEAT, BENCH_CLUSTER_COUNT, BENCH_CLUSTER_LAT_COUNT,
BENCH_CLUSTER_PERIOD, BENCH_CLUSTER_BATCH, BENCH_CLUSTER_PAUSE,
BENCH_CLUSTER_PORT (18994; B: +1), BENCH_CLUSTER_PREFIX (target/bench-cluster),
BENCH_CLUSTER_QUEUE (the directive's queue=; default count + 1000, so that
posting faster than the bridge sends does not fail), BENCH_CLUSTER_MAXLEN
(maxlen=; default max(100000, 2 x count)), BENCH_CLUSTER_XADD_REQUESTS
(1000000; 0: no XADD reference), REDIS_SERVER (redis-server), REDIS_BENCHMARK
(redis-benchmark, Debian's redis-tools).
"""
import contextlib
import csv
import json
import os
import re
import shutil
import socket
import subprocess
import time

from bench_lib import (
    ENV, WORKERS, BenchError, BenchNginx, api, emit, human_rate, impl_kv, kv, median, module_so, pct, per_worker,
    zone_size_str)
import bench_options
from harness import ROOT, cli, note, sha256, template
from harness.proc import proc_cpu
from harness.redis import Redis, read_reply, request

HARNESS_DIR = os.path.join(ROOT, "nginx-conf", "bench")
K = cli.values(bench_options.CLUSTER)
PREFIX = os.path.abspath(K.cluster_prefix)
PORT = K.cluster_port
COUNT = K.cluster_count
LAT_COUNT = K.cluster_lat_count
PERIOD = K.cluster_period
BATCH = K.cluster_batch
PAUSE = K.cluster_pause
REPEAT = K.cluster_repeat
TESTS = [t for t in K.cluster_tests.split(",") if t]
POSTERS = [p for p in K.cluster_poster.split(",") if p]
REDIS_SERVER = K.redis_server
REDIS_BENCHMARK = K.redis_benchmark
XADD_REQUESTS = K.cluster_xadd_requests
XADD_PIPELINE = 1024  # the bridge's BATCH (src/lua/cluster.lua): XADDs per write
XADD_CLIENTS = (1, 4)  # 1: the bridge's one connection
SIZE = 64
# ports other test setups on this host use (t/, scripts/soak, scripts/test-package)
AVOID_PORTS = {1984, 1985, 1986, 2085, 2086, 2087, 19400, 7385, 7485, 2290}
POSTER_LABELS = {"other": "poster: a worker of A without the bridge", "bridge": "poster: A's bridge worker"}


def queue_for(count):
    return int(ENV.get("BENCH_CLUSTER_QUEUE", str(min(100000000, count + 1000))))


def maxlen_for(count):
    return int(ENV.get("BENCH_CLUSTER_MAXLEN", str(max(100000, 2 * count))))


def new_redis():
    """redis-server in the foreground (a child of this driver), on a free port
    the kernel picks, in a fresh temp dir next to the node prefixes; no
    persistence."""
    return Redis(PREFIX, None, AVOID_PORTS | {PORT, PORT + 1}, options=["--save", "", "--appendonly", "no"],
                 server=REDIS_SERVER)


# ---------------------------------------------------------------------------
# the nodes
# ---------------------------------------------------------------------------
_module = [None]  # the run's copy of the module (a rebuild meanwhile does not mix builds)


def snapshot_module():
    """Copies the module's .so to BENCH_CLUSTER_PREFIX-module.so for this run; its sha256."""
    src, dst = module_so(), PREFIX + "-module.so"
    shutil.copyfile(src, dst + ".tmp")
    os.replace(dst + ".tmp", dst)
    _module[0] = dst
    return sha256(dst)[:12]


def render_conf(node, name, workers, zone, stream, redis_port, maxlen, queue):
    return template.render(
        "bench/cluster.conf.tmpl", WORKERS=workers, PREFIX=node.prefix, ERROR_LOG=node.error_log,
        MODULE=_module[0] or module_so(), LUA_PATH=HARNESS_DIR + "/?.lua;;", SIZE=zone, REDIS_PORT=redis_port,
        NODE=node.node, STREAM=stream, MAXLEN=maxlen, QUEUE=queue, API=api(), PORT=node.port)


class Node(BenchNginx):
    """One nginx node (prefix BENCH_CLUSTER_PREFIX-<node>) of one measurement."""

    def __init__(self, node, port, name, workers, zone, stream, redis, maxlen, queue):
        prefix = PREFIX + "-" + node
        super().__init__(prefix, port, conf=os.path.join(prefix, "conf", name + ".conf"),
                         error_log=os.path.join(prefix, "logs", name + ".error.log"), label="node %s: " % node,
                         port_env="BENCH_CLUSTER_PORT")
        self.node, self.name, self.workers = node, name, workers
        self.args = (zone, stream, redis.port, maxlen, queue)
        self.wpids = {}

    def start(self):
        super().start(render_conf(self, self.name, self.workers, *self.args))
        self.wait_ready(self.workers)

    def cluster(self):
        """The zone's status `cluster` object."""
        try:
            return json.loads(self.get("/bench/cluster"))
        except ValueError as e:
            raise BenchError("node %s: /bench/cluster: %s" % (self.node, e))

    def wid_of(self, pid):
        for w, p in self.wpids.items():
            if p == pid:
                return w
        return None

    def error_lines(self):
        """([error] lines, [alert]/[crit]/[emerg] lines, [warn] lines, count of
        [warn] lines of ngx.sleep(0): Debian's nginx lacks OpenResty's delayed
        events patch, so lua-nginx-module warns on every sleep(0), the
        throughput poster's yield, and makes it a 0 ms timer)"""
        errors, alerts, warns, sleep0 = [], [], [], 0
        try:
            with open(self.error_log, errors="replace") as f:
                for line in f:
                    if "[error]" in line:
                        errors.append(line.strip())
                    elif "[alert]" in line or "[crit]" in line or "[emerg]" in line:
                        alerts.append(line.strip())
                    elif "[warn]" in line:
                        if "ngx.sleep(0) called without delayed events patch" in line:
                            sleep0 += 1
                        else:
                            warns.append(line.strip())
        except OSError:
            pass
        return errors, alerts, warns, sleep0


# ---------------------------------------------------------------------------
# one measurement
# ---------------------------------------------------------------------------
def wait_until(what, cond, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = cond()
        if r:
            return r
        time.sleep(0.05)
    raise BenchError("%s: not after %g s" % (what, timeout))


def warm_up(a, b):
    """Until both bridges are connected and a cluster event from A reached
    every worker of A and B (so B's bridge reads the stream). Seconds taken."""
    t = time.time()
    wait_until("both bridges connected", lambda: all(
        n.cluster().get("connected") is True and n.cluster().get("bridge_pid") for n in (a, b)), 15)
    i = [0]

    def arrived():
        i[0] += 1
        a.get("/bench/warm?n=%d" % i[0])
        time.sleep(0.1)
        ra, rb = a.results(), b.results()
        return (all("warm:%d" % w in ra for w in a.wpids) and all("warm:%d" % w in rb for w in b.wpids))
    wait_until("a warm-up event from node A on every worker of node B", arrived, 15)
    time.sleep(0.3)  # the last warm-up events go round
    return time.time() - t


def state(res, w):
    """Final counters of worker w, or its last progress snapshot (complete?)."""
    if ("res:%d" % w) in res:
        return kv(res["res:%d" % w]), True
    if ("prog:%d" % w) in res:
        return kv(res["prog:%d" % w]), False
    return {"seen": 0, "first": 0, "last": 0, "ooo": 0, "gaps": 0, "bad": 0, "remote": 0, "lost": 0,
            "lost_cluster": 0, "lost_reports": 0, "nlat": 0}, False


def wait_done(a, b, a_recv, timeout, stall, sample=False):
    """Polls both nodes until A's poster finished and every receiver (A's
    a_recv, all of B's) flushed its counters on the "end" event, or nothing
    moved for `stall` s after the poster finished, or `timeout`. With
    `sample`, also the peaks of A's cluster.waiting and B's lag_seconds.
    Returns (results A, results B, timed out, peaks)."""
    deadline = time.time() + timeout
    last_sig, last_change = None, time.time()
    peaks = {"a_waiting": 0, "b_lag_s": 0.0}
    while True:
        ra, rb = a.results(), b.results()
        if sample:
            ca, cb = a.cluster(), b.cluster()
            peaks["a_waiting"] = max(peaks["a_waiting"], int(ca.get("waiting") or 0))
            peaks["b_lag_s"] = max(peaks["b_lag_s"], float(cb.get("lag_seconds") or 0))
        done = "poster" in ra
        if done and all("res:%d" % w in ra for w in a_recv) and all("res:%d" % w in rb for w in b.wpids):
            return ra, rb, False, peaks
        sig = tuple(sorted((k, v) for r in (ra, rb) for k, v in r.items() if k.startswith(("prog:", "res:", "poster"))))
        now = time.time()
        if sig != last_sig:
            last_sig, last_change = sig, now
        if now > deadline or (done and now - last_change > stall):
            return ra, rb, True, peaks
        time.sleep(0.2)


class Pair:
    """Nodes A and B on a fresh stream, warmed up; the poster picked."""

    def __init__(self, redis, name, zone, count, placement):
        if api() != "worker.events":
            name = api() + "-" + name
        self.redis, self.name, self.placement = redis, name, placement
        self.stream = "bench:%s:%d" % (name, os.getpid())
        maxlen, queue = maxlen_for(count), queue_for(count)
        self.stack = contextlib.ExitStack()
        self.a = Node("a", PORT, name, WORKERS, zone, self.stream, redis, maxlen, queue)
        self.b = Node("b", PORT + 1, name, WORKERS, zone, self.stream, redis, maxlen, queue)
        self.params = dict(zone=zone, maxlen=maxlen, queue=queue)

    def __enter__(self):
        try:
            self.stack.enter_context(self.a)
            self.stack.enter_context(self.b)
            self.warm_s = warm_up(self.a, self.b)
            self.a_bridge = self.a.wid_of(self.a.cluster().get("bridge_pid"))
            self.b_bridge = self.b.wid_of(self.b.cluster().get("bridge_pid"))
            if self.a_bridge is None or self.b_bridge is None:
                raise BenchError("a bridge pid is not one of the node's workers")
            others = [w for w in sorted(self.a.wpids) if w != self.a_bridge]
            if self.placement == "bridge":
                self.poster = self.a_bridge
            elif others:
                self.poster = others[0]
            else:
                raise BenchError("BENCH_CLUSTER_POSTER=other needs WORKERS >= 2")
            self.a_recv = [w for w in sorted(self.a.wpids) if w != self.poster]
            if not self.a_recv:
                raise BenchError("the cluster scenario needs WORKERS >= 2 (a same-node receiver)")
        except BaseException:
            self.stack.close()
            raise
        return self

    def start(self, query):
        self.a.get("/bench/start?wid=%d&%s" % (self.poster, query))

    def finish(self):
        """Final cluster objects and error lines of both nodes, then stops them."""
        time.sleep(0.3)
        self.ca, self.cb = self.a.cluster(), self.b.cluster()
        self.errors = {n.node: n.error_lines() for n in (self.a, self.b)}
        self.stack.close()
        try:
            self.redis.cmd("DEL", self.stream)
        except (OSError, BenchError) as e:
            note("DEL %s: %s" % (self.stream, e))

    def __exit__(self, *exc):
        self.stack.close()
        return False

    def kv(self):
        return [("poster_wid", self.poster), ("a_bridge_wid", self.a_bridge), ("b_bridge_wid", self.b_bridge),
                ("warmup_s", "%.2f" % self.warm_s)]

    def error_kv(self):
        out = []
        for n in ("a", "b"):
            errors, alerts, warns, sleep0 = self.errors[n]
            out.append(("errors_" + n, len(errors)))
            if alerts:
                out.append(("alerts_" + n, len(alerts)))
            if warns:
                out.append(("warns_" + n, len(warns)))
            if sleep0:
                out.append(("sleep0_warns_" + n, sleep0))
        return out

    def report_errors(self):
        """Notes (stderr) the first few [alert]/[error]/[warn] lines of each node."""
        for n in ("a", "b"):
            errors, alerts, warns, _ = self.errors[n]
            lines = alerts + errors + warns
            for line in lines[:5]:
                note("%s node %s: %s" % (self.name, n, line))
            if len(lines) > 5:
                note("%s node %s: ... %d more; see %s" % (self.name, n, len(lines) - 5, getattr(self, n).error_log))

    def n_errors(self):
        """[error] and [alert]/[crit]/[emerg] lines of both nodes"""
        return sum(len(e[0]) + len(e[1]) for e in self.errors.values())

    def n_warns(self):
        """[warn] lines of both nodes (but the ngx.sleep(0) ones)"""
        return sum(len(e[2]) for e in self.errors.values())


def mark(w, bridge):
    return "%d%s" % (w, "*" if w == bridge else "")


def lat_stats(samples):
    samples = sorted(samples)
    return pct(samples, 50), pct(samples, 99), samples[-1] if samples else float("nan")


def run_latency(redis, placement, rnd):
    name = "cluster-latency-%s-w%d-r%d" % (placement, WORKERS, rnd)
    note("cluster latency (round %d): %d workers per node, %s, %d × %d B every %g s"
         % (rnd, WORKERS, POSTER_LABELS[placement], LAT_COUNT, SIZE, PERIOD))
    with Pair(redis, name, "8m", LAT_COUNT, placement) as pr:
        pr.start("scenario=latency&count=%d&size=%d&period=%g" % (LAT_COUNT, SIZE, PERIOD))
        ra, rb, timed_out, _ = wait_done(pr.a, pr.b, pr.a_recv, timeout=LAT_COUNT * PERIOD * 3 + 60, stall=10)
        pr.finish()
    if "poster" not in ra:
        raise BenchError("%s: the poster never finished (%s)" % (name, ra.get("poster_err", "?")))
    p = kv(ra["poster"])
    out = {}
    for node, res, recv, bridge in (("a", ra, pr.a_recv, pr.a_bridge), ("b", rb, sorted(pr.b.wpids), pr.b_bridge)):
        per, received, remote, bad, lost = {}, {}, 0, 0, 0
        for w in recv:
            st, _ = state(res, w)
            vals = [float(x) for x in res.get("lat:%d" % w, "").split(",") if x]
            per[w] = vals
            received[w] = len(vals)
            remote += int(st.get("remote", 0))
            bad += int(st.get("bad", 0))
            lost += int(st.get("lost", 0))
        allv = [v for vals in per.values() for v in vals if v >= 0]
        p50, p99, mx = lat_stats(allv)
        out[node] = dict(p50=p50, p99=p99, max=mx, received=received, remote=remote, bad=bad, lost=lost,
                         late=sum(1 for v in allv if v > PERIOD * 1e6),
                         per={w: lat_stats(v)[0] for w, v in per.items() if v}, bridge=bridge)
    a, b = out["a"], out["b"]
    row = [("scenario", "cluster_latency"), *impl_kv(), ("workers", WORKERS), ("poster", placement),
           ("round", rnd), *pr.kv(), ("sent", LAT_COUNT), ("size", SIZE), ("period_s", PERIOD),
           ("post_fails", int(p["fails"]))]
    for node, d in (("b", b), ("a", a)):
        row += [(node + "_p50_us", "%.1f" % d["p50"]), (node + "_p99_us", "%.1f" % d["p99"]),
                (node + "_max_us", "%.1f" % d["max"]),
                (node + "_p50_us_per_worker", ",".join("%s:%.1f" % (mark(w, d["bridge"]), v)
                                                       for w, v in sorted(d["per"].items())) or "-"),
                (node + "_received", per_worker(d["received"])), (node + "_remote", d["remote"]),
                (node + "_over_period", d["late"]), (node + "_lost_reported", d["lost"]), (node + "_bad", d["bad"])]
    row += [("b_lost_in", pr.cb.get("lost_in")), ("b_duplicates", pr.cb.get("duplicates")),
            ("a_events_out", pr.ca.get("events_out")), *pr.error_kv()]
    if timed_out:
        row.append(("timeout", 1))
    emit(row)
    pr.report_errors()
    return dict(b=b, a=a, timed_out=timed_out, errors=pr.n_errors(), warns=pr.n_warns(), fails=int(p["fails"]),
                lost_in=int(pr.cb.get("lost_in") or 0), dups=int(pr.cb.get("duplicates") or 0),
                missing=sum(LAT_COUNT - n for n in b["received"].values()) + sum(
                    LAT_COUNT - n for n in a["received"].values()),
                remote_ok=b["remote"] == LAT_COUNT * WORKERS and a["remote"] == 0)


def run_throughput(redis, placement, rnd, zone_for):
    zone = zone_size_str(zone_for(COUNT, SIZE))
    name = "cluster-throughput-%s-w%d-k%d-r%d" % (placement, WORKERS, COUNT, rnd)
    note("cluster throughput (round %d): %d workers per node, %s, K=%d × %d B, batches of %d + ngx.sleep(%g), "
         "zone %s" % (rnd, WORKERS, POSTER_LABELS[placement], COUNT, SIZE, BATCH, PAUSE, zone))
    with Pair(redis, name, zone, COUNT, placement) as pr:
        pids = dict([("redis", redis.proc.pid)] + [("a%d" % w, p) for w, p in pr.a.wpids.items()]
                    + [("b%d" % w, p) for w, p in pr.b.wpids.items()])
        before = {k: proc_cpu(p)[1] for k, p in pids.items()}
        pr.start("scenario=throughput&count=%d&size=%d&batch=%d&pause=%g" % (COUNT, SIZE, BATCH, PAUSE))
        ra, rb, timed_out, peaks = wait_done(pr.a, pr.b, pr.a_recv, timeout=300, stall=10, sample=True)
        cpu = {k: (proc_cpu(p)[1] - before[k]) / 1e6 for k, p in pids.items()}
        pr.finish()
    if "poster" not in ra:
        raise BenchError("%s: the poster never finished (%s)" % (name, ra.get("poster_err", "?")))
    p = kv(ra["poster"])
    t0, t1 = p["t0"], p["t1"]
    post_rate = COUNT / ((t1 - t0) / 1e6) if t1 > t0 else float("inf")
    out, t_last = {}, t1
    for node, res, recv, bridge in (("a", ra, pr.a_recv, pr.a_bridge), ("b", rb, sorted(pr.b.wpids), pr.b_bridge)):
        d = dict(seen={}, rate={}, rate_ff={}, drain={}, lost={}, first_ms={}, ooo=0, gaps=0, bad=0, remote=0,
                 lost_rep=0, incomplete=[], bridge=bridge)
        for w in recv:
            st, complete = state(res, w)
            if not complete:
                d["incomplete"].append(w)
            n = int(st["seen"])
            d["seen"][w] = n
            d["lost"][w] = COUNT - n
            for k in ("ooo", "gaps", "bad", "remote"):
                d[k] += int(st.get(k, 0))
            d["lost_rep"] += int(st.get("lost", 0))
            if n > 0 and st["last"] > t0:
                t_last = max(t_last, st["last"])
                d["rate"][w] = n / ((st["last"] - t0) / 1e6)
                d["rate_ff"][w] = (n - 1) / ((st["last"] - st["first"]) / 1e6) if st["last"] > st["first"] else 0
                d["drain"][w] = (st["last"] - t1) / 1000.0
                d["first_ms"][w] = (st["first"] - t0) / 1000.0
            else:
                d["rate"][w] = d["rate_ff"][w] = d["drain"][w] = d["first_ms"][w] = 0
        out[node] = d
    a, b = out["a"], out["b"]
    window_s = (t_last - t0) / 1e6
    row = [("scenario", "cluster_throughput"), *impl_kv(), ("workers", WORKERS), ("poster", placement),
           ("round", rnd), *pr.kv(), ("count", COUNT), ("size", SIZE), ("batch", BATCH), ("pause", PAUSE),
           ("zone", zone), ("maxlen", pr.params["maxlen"]), ("queue", pr.params["queue"]),
           ("post_fails", int(p["fails"])), ("posts_per_s", "%.0f" % post_rate),
           ("post_ms", "%.1f" % ((t1 - t0) / 1000))]
    for node, d in (("a", a), ("b", b)):
        mk = lambda dd, fmt: ",".join(("%s:" + fmt) % (mark(w, d["bridge"]), v)  # noqa: E731
                                      for w, v in sorted(dd.items())) or "-"
        row += [(node + "_delivered_per_s", mk(d["rate"], "%.0f")),
                (node + "_delivered_first_last_per_s", mk(d["rate_ff"], "%.0f")),
                (node + "_first_after_ms", mk(d["first_ms"], "%.1f")),
                (node + "_drain_after_post_ms", mk(d["drain"], "%.1f")),
                (node + "_received", mk(d["seen"], "%d")), (node + "_lost", mk(d["lost"], "%d")),
                (node + "_lost_reported", d["lost_rep"]), (node + "_ooo", d["ooo"]), (node + "_gaps", d["gaps"]),
                (node + "_bad", d["bad"]), (node + "_remote", d["remote"])]
    row += [("a_events_out", pr.ca.get("events_out")), ("a_waiting_end", pr.ca.get("waiting")),
            ("a_waiting_peak", peaks["a_waiting"]), ("a_refused", pr.ca.get("refused")),
            ("a_lost_out", pr.ca.get("lost_out")), ("a_cluster_errors", pr.ca.get("errors")),
            ("b_events_in", pr.cb.get("events_in")), ("b_lost_in", pr.cb.get("lost_in")),
            ("b_duplicates", pr.cb.get("duplicates")), ("b_lag_peak_s", "%.3f" % peaks["b_lag_s"]),
            ("b_cluster_errors", pr.cb.get("errors")),
            ("window_ms", "%.1f" % (window_s * 1000)),
            ("cpu_ms", ",".join("%s:%.0f" % (k, v) for k, v in cpu.items()))]
    # on-CPU µs per event of K: each node's bridge worker (all of it: its
    # bridge, its own receiving, and on A with poster=bridge the posting)
    # and the redis-server
    per_event = {"a_bridge": cpu["a%d" % pr.a_bridge] * 1000 / COUNT,
                 "b_bridge": cpu["b%d" % pr.b_bridge] * 1000 / COUNT,
                 "redis": cpu["redis"] * 1000 / COUNT}
    row += [(k + "_cpu_us_per_event", "%.2f" % v) for k, v in per_event.items()]
    row += pr.error_kv()
    if timed_out:
        row.append(("timeout", "1(a:%s b:%s)" % (",".join(map(str, a["incomplete"])) or "-",
                                                   ",".join(map(str, b["incomplete"])) or "-")))
    emit(row)
    pr.report_errors()
    return dict(post_rate=post_rate, a=a, b=b, timed_out=timed_out, errors=pr.n_errors(), warns=pr.n_warns(),
                fails=int(p["fails"]),
                lost_in=int(pr.cb.get("lost_in") or 0), dups=int(pr.cb.get("duplicates") or 0),
                waiting_peak=peaks["a_waiting"], cpu=cpu, per_event=per_event, window_s=window_s)


def redis_floor(redis, rnd, count=500, period=0.005):
    """Reference, not a measurement of the module: one Redis hop on this host
    (what the bridges add at least). A child process blocks in XREAD BLOCK
    on a stream; this process XADDs its CLOCK_MONOTONIC stamp every `period`
    s; the child records receive minus stamp. (Python adds a few µs on both
    sides; TCP_NODELAY as lua-resty-redis' cosockets.)"""
    stream = "bench:floor:%d:%d" % (os.getpid(), rnd)
    note("cluster redis floor (round %d): XADD in one process -> XREAD BLOCK returns in another, %d × %g s"
         % (rnd, count, period))

    def conn():
        s = socket.create_connection(("127.0.0.1", redis.port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s, s.makefile("rb")

    def send(s, *args):
        s.sendall(request(*args))

    r, w = os.pipe()
    rr, rw = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.close(rr)
            s, f = conn()
            last, out = "$", []
            send(s, "XREAD", "BLOCK", "10000", "STREAMS", stream, last)
            os.write(w, b"r")  # blocked (the request is sent)
            for i in range(count):
                if i:
                    send(s, "XREAD", "BLOCK", "10000", "STREAMS", stream, last)
                res = read_reply(f)
                t = time.monotonic_ns()
                if not res:
                    break
                e = res[0][1][0]
                last = e[0]
                out.append((t - int(e[1][1])) / 1000.0)
            os.write(rw, ",".join("%.1f" % x for x in out).encode())
        finally:
            os._exit(0)
    os.close(w)
    os.close(rw)
    os.read(r, 1)
    os.close(r)
    time.sleep(0.2)
    s, f = conn()
    try:
        for _ in range(count):
            send(s, "XADD", stream, "*", "t", str(time.monotonic_ns()))
            read_reply(f)
            time.sleep(period)
    finally:
        s.close()
    data = b""
    while True:
        chunk = os.read(rr, 65536)
        if not chunk:
            break
        data += chunk
    os.close(rr)
    os.waitpid(pid, 0)
    redis.cmd("DEL", stream)
    samples = sorted(float(x) for x in data.decode().split(",") if x)
    if not samples:
        raise BenchError("redis floor: no samples")
    p50, p99, mx = lat_stats(samples)
    emit([("scenario", "cluster_redis_floor"), ("impl", "redis-xread"), ("round", rnd), ("sent", count),
          ("p50_us", "%.1f" % p50), ("p99_us", "%.1f" % p99), ("max_us", "%.1f" % mx), ("received", len(samples))])
    return dict(p50=p50, p99=p99, max=mx, received=len(samples), count=count, period=period)


def payload_bytes(size):
    """Bytes of the payload codec's encoding (src/wire/payload.rs) of the
    harness' table {n = i, z = size, p = size bytes}: the table's tag and
    varints (3), three 1-byte string keys (3 each), two i64 (9 each), the
    string's tag, varint length and bytes. 96 for 64."""
    varint = 1 if size < 0x80 else 2 if size < 0x4000 else 3
    return 3 + 3 * 3 + 2 * 9 + 1 + varint + size


def xadd_args(stream, maxlen):
    """One XADD shaped like the bridge's (src/wire/resp.rs Stream::xadd,
    without secret=): `MAXLEN ~ maxlen *`, then n node, e epoch (a random
    u64: 19 digits), o ordinal (up to 6 digits in a K=100000 run), s source,
    v event, d data (the harness' source and event; the data's size, as
    'x's since argv cannot carry the codec's NUL bytes)."""
    return ["XADD", stream, "MAXLEN", "~", str(maxlen), "*", "n", "a", "e", "1" * 19, "o", "100000",
            "s", "bench", "v", "tp", "d", "x" * payload_bytes(SIZE)]


def parse_benchmark_rps(out):
    """requests/s from redis-benchmark's --csv output (a header row naming
    "rps", then one row per test; 7.x) or its -q line
    ("<title>: <rps> requests per second, ..."); None when neither."""
    rows = [r for r in csv.reader(out.splitlines()) if r]
    col = None
    for r in rows:
        if "rps" in r:
            col = r.index("rps")
            continue
        try:
            return float(r[col if col is not None else 1])
        except (IndexError, ValueError):
            pass
    m = re.search(r"([0-9.]+) requests per second", out)
    return float(m.group(1)) if m else None


def redis_xadd_ceiling(redis, rnd, requests=None, clients=XADD_CLIENTS):
    """Reference, not a measurement of the module: what pipelined XADD gets
    from this redis-server on this host. redis-benchmark sends `requests`
    XADDs shaped like the bridge's (xadd_args: same fields, ~ the same bytes,
    MAXLEN ~ the throughput run's maxlen), XADD_PIPELINE (1024, the bridge's
    batch) per write, with each client count of `clients` (1: like the
    bridge's one connection), each on a stream of its own, DELeted after.
    `requests` goes up to a multiple of the pipeline (redis-benchmark sends
    whole pipelines). Past maxlen, MAXLEN ~ trims whole stream nodes, as it
    would for the bridge (not in a K=100000 run: maxlen is 2K), and keeps
    the stream's memory bounded. Returns dict(rps={clients: requests/s},
    ...), or None (with a note) when redis-benchmark is not found."""
    binary = shutil.which(REDIS_BENCHMARK)
    if not binary:
        note("cluster redis XADD reference skipped: %s not found (Debian: apt-get install redis-tools; or "
             "REDIS_BENCHMARK=/path/to/redis-benchmark)" % REDIS_BENCHMARK)
        return None
    requests = XADD_REQUESTS if requests is None else requests
    requests = -(-requests // XADD_PIPELINE) * XADD_PIPELINE
    maxlen = maxlen_for(COUNT)
    entry = xadd_args("", maxlen)[6:]
    fields, entry_bytes = len(entry) // 2, sum(len(a) for a in entry)
    note("cluster redis XADD reference (round %d): redis-benchmark, %d XADDs of %d fields (%d B) pipelined %d deep, "
         "MAXLEN ~ %d, %s client(s)" % (rnd, requests, fields, entry_bytes, XADD_PIPELINE, maxlen,
                                          "/".join(map(str, clients))))
    rps, entries, wall, cpu_us = {}, {}, {}, {}
    for c in clients:
        stream = "bench:xadd:%d:%d:c%d" % (os.getpid(), rnd, c)
        cmd = [binary, "-h", "127.0.0.1", "-p", str(redis.port), "-c", str(c), "-n", str(requests),
               "-P", str(XADD_PIPELINE), "--csv"] + xadd_args(stream, maxlen)
        t = time.monotonic()
        cpu0 = proc_cpu(redis.proc.pid)[1]
        try:
            try:
                r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, timeout=300)
            except subprocess.TimeoutExpired:
                raise BenchError("redis-benchmark -c %d: not done after 300 s" % c)
            wall[c] = time.monotonic() - t
            cpu_us[c] = (proc_cpu(redis.proc.pid)[1] - cpu0) / 1e3 / requests
            out = (r.stdout + r.stderr).strip()
            if r.returncode != 0:
                raise BenchError("redis-benchmark -c %d exited with %d: %s" % (c, r.returncode, out[-500:]))
            x = parse_benchmark_rps(r.stdout)
            if not x:
                raise BenchError("redis-benchmark -c %d: no requests/s in its output: %r" % (c, out[-500:]))
            entries[c] = int(redis.cmd("XLEN", stream) or 0)
            # MAXLEN ~ trims whole nodes only past maxlen: below it, every XADD is an entry
            if entries[c] < min(requests, maxlen):
                raise BenchError("redis-benchmark -c %d: %d XADDs sent, the stream holds %d entries (error "
                                 "replies?): %s" % (c, requests, entries[c], out[-500:]))
            rps[c] = x
        finally:
            try:
                redis.cmd("DEL", stream)
            except (OSError, BenchError) as e:
                note("DEL %s: %s" % (stream, e))
        emit([("scenario", "cluster_redis_xadd"), ("impl", "redis-benchmark"), ("round", rnd),
              ("pipeline", XADD_PIPELINE), ("clients", c), ("requests", requests), ("fields", fields),
              ("entry_bytes", entry_bytes), ("maxlen", maxlen), ("entries", entries[c]),
              ("rps", "%.0f" % rps[c]), ("redis_cpu_us_per_xadd", "%.2f" % cpu_us[c]),
              ("wall_s", "%.2f" % wall[c])])
    return dict(rps=rps, cpu_us=cpu_us, requests=requests, pipeline=XADD_PIPELINE, fields=fields,
                entry_bytes=entry_bytes, maxlen=maxlen, entries=entries)


# ---------------------------------------------------------------------------
# rows
# ---------------------------------------------------------------------------
def floor_row(add_row, rs):
    n = len(rs)
    params = "reference (no nginx): one Redis hop, XADD in one process → XREAD BLOCK returns in another, " \
             "%d × every %g ms%s" % (rs[0]["count"], rs[0]["period"] * 1000,
                                     "; median (range) of %d runs" % n if n > 1 else "")
    result = "p50 %s, p99 %s, max %s" % (rng([r["p50"] for r in rs], us), rng([r["p99"] for r in rs], us),
                                          rng([r["max"] for r in rs], us))
    add_row(("cluster_redis_floor", 2, params, result))


def xadd_row(add_row, rs):
    n = len(rs)
    r0 = rs[0]
    params = "reference (no nginx): redis-benchmark, %d XADDs like the bridge's (%d fields, %d B, MAXLEN ~ %d) " \
             "pipelined %d deep, on the same redis-server%s" % (
                 r0["requests"], r0["fields"], r0["entry_bytes"], r0["maxlen"], r0["pipeline"],
                 "; median (range) of %d runs" % n if n > 1 else "")
    result = ", ".join("%d client%s %s" % (c, "" if c == 1 else "s", rng([r["rps"][c] for r in rs], rate))
                       for c in sorted(r0["rps"]))
    add_row(("cluster_redis_xadd", 1, params, result))


def rng(vals, fmt):
    vals = sorted(vals)
    if len(vals) == 1:
        return fmt(vals[0])
    return "%s (%s–%s)" % (fmt(median(vals)), fmt(vals[0]), fmt(vals[-1]))


def us(x):
    return "%.0f µs" % x if x >= 100 else "%.1f µs" % x


def rate(x):
    """human_rate with one decimal below 100k (cross-node rates are ~10^4)"""
    if 1e3 <= x < 1e5:
        return "%.1fk/s" % (x / 1e3)
    return human_rate(x) + "/s"


def same_node(placement):
    """Who A's same-node figures are from."""
    if WORKERS == 2:
        return "A's other worker, %s" % ("the bridge" if placement == "other" else "no bridge")
    return "A's other workers%s" % (", one is the bridge" if placement == "other" else "")


def latency_row(add_row, placement, rs):
    n = len(rs)
    params = "latency, %s, %d × %d B table every %g ms%s" % (
        POSTER_LABELS[placement], LAT_COUNT, SIZE, PERIOD * 1000,
        "; median (range) of %d runs" % n if n > 1 else "")
    b = lambda k: [r["b"][k] for r in rs]  # noqa: E731
    a = lambda k: [r["a"][k] for r in rs]  # noqa: E731
    result = "cross-node (B's workers) p50 %s, p99 %s, max %s; same-node (%s) p50 %s, p99 %s" % (
        rng(b("p50"), us), rng(b("p99"), us), rng(b("max"), us), same_node(placement),
        rng(a("p50"), us), rng(a("p99"), us))
    result += "; missing %d, lost_in %d, duplicates %d, remote pid nil %s; errors %d" % (
        sum(r["missing"] for r in rs), sum(r["lost_in"] for r in rs), sum(r["dups"] for r in rs),
        "yes" if all(r["remote_ok"] for r in rs) else "NO", sum(r["errors"] for r in rs))
    if any(r["warns"] for r in rs):
        result += "; [warn] lines %d" % sum(r["warns"] for r in rs)
    if any(r["fails"] for r in rs):
        result += "; post failures %d" % sum(r["fails"] for r in rs)
    if any(r["timed_out"] for r in rs):
        result += " (TIMEOUT in %d)" % sum(1 for r in rs if r["timed_out"])
    add_row(("cluster", WORKERS, params, result))


def throughput_row(add_row, placement, rs, xadds=()):
    """xadds: the rounds' redis_xadd_ceiling results (cross-node ÷ its
    1-client requests/s, medians)."""
    n = len(rs)
    params = "throughput, %s, K=%d × %d B table, batches of %d + ngx.sleep(%g)%s" % (
        POSTER_LABELS[placement], COUNT, SIZE, BATCH, PAUSE, "; median (range) of %d runs" % n if n > 1 else "")
    slow = lambda r, node, k: min(r[node][k].values()) if r[node][k] else 0  # noqa: E731
    result = ("post %s on A; same-node (%s) %s first→last; cross-node (B, slowest worker) %s first→last, "
              "%s first post→last receive" % (
                  rng([r["post_rate"] for r in rs], rate), same_node(placement),
                  rng([slow(r, "a", "rate_ff") for r in rs], rate),
                  rng([slow(r, "b", "rate_ff") for r in rs], rate),
                  rng([slow(r, "b", "rate") for r in rs], rate)))
    lost = sum(sum(r["b"]["lost"].values()) + sum(r["a"]["lost"].values()) for r in rs)
    result += "; lost %d (B lost_in %d), duplicates %d, out of order %d; peak waiting on A %s; errors %d" % (
        lost, sum(r["lost_in"] for r in rs), sum(r["dups"] for r in rs),
        sum(r["a"]["ooo"] + r["b"]["ooo"] for r in rs),
        rng([r["waiting_peak"] for r in rs], lambda x: "%.0f" % x), sum(r["errors"] for r in rs))
    per_ev = lambda k: rng([r["per_event"][k] for r in rs], lambda x: "%.2f" % x)  # noqa: E731
    result += "; CPU per event: A's bridge worker %s µs, B's %s µs, redis-server %s µs" % (
        per_ev("a_bridge"), per_ev("b_bridge"), per_ev("redis"))
    alone = [x["cpu_us"][1] for x in xadds if x.get("cpu_us", {}).get(1)]
    if alone:
        result += " (redis-server per XADD under redis-benchmark: %s µs)" % rng(alone, lambda x: "%.2f" % x)
    ceil = [x["rps"][1] for x in xadds if x["rps"].get(1)]
    if ceil:
        cross = median([slow(r, "b", "rate_ff") for r in rs])
        result += "; cross-node ÷ redis-benchmark XADD (1 client, -P %d) %.2f (%s ÷ %s, medians)" % (
            XADD_PIPELINE, cross / median(ceil), rate(cross), rate(median(ceil)))
    if any(r["warns"] for r in rs):
        result += "; [warn] lines %d" % sum(r["warns"] for r in rs)
    if any(r["fails"] for r in rs):
        result += "; post failures %d" % sum(r["fails"] for r in rs)
    if any(r["timed_out"] for r in rs):
        result += " (TIMEOUT in %d)" % sum(1 for r in rs if r["timed_out"])
    add_row(("cluster", WORKERS, params, result))


def run(add_row, zone_for):
    """zone_for(count, size): the throughput scenario's zone size in bytes."""
    for t in TESTS:
        if t not in ("latency", "throughput"):
            raise BenchError("unknown BENCH_CLUSTER_TESTS entry %r; known: latency,throughput" % t)
    for p in POSTERS:
        if p not in POSTER_LABELS:
            raise BenchError("unknown BENCH_CLUSTER_POSTER entry %r; known: other,bridge" % p)
    if WORKERS < 2:
        raise BenchError("the cluster scenario needs WORKERS >= 2 (a same-node receiver next to the poster)")
    if not shutil.which(REDIS_SERVER):
        raise BenchError("%s not found (Debian: apt-get install redis-server)" % REDIS_SERVER)
    results = {(t, p): [] for t in TESTS for p in POSTERS}
    failed = {}
    digest = snapshot_module()
    print("# cluster: module %s sha256:%s, copied to %s for this run" % (
        os.path.relpath(module_so(), ROOT), digest, os.path.relpath(_module[0], ROOT)), flush=True)
    with new_redis() as redis:
        note("redis-server %s on 127.0.0.1:%d (pid %d, dir %s)" % (redis.version(), redis.port, redis.proc.pid,
                                                                   redis.dir))
        print("# cluster: redis-server %s on 127.0.0.1:%d (no persistence); nodes A 127.0.0.1:%d, B 127.0.0.1:%d, "
              "%d workers each; load average at start %s" % (redis.version(), redis.port, PORT, PORT + 1, WORKERS,
                                                            loadavg()), flush=True)
        floors, xadds = [], []
        xadd_on = "throughput" in TESTS and XADD_REQUESTS > 0
        for rnd in range(1, REPEAT + 1):
            if "latency" in TESTS:
                try:
                    floors.append(redis_floor(redis, rnd))
                except (BenchError, OSError) as e:
                    note("cluster redis floor (round %d) failed: %s" % (rnd, e))
            if xadd_on:
                try:
                    x = redis_xadd_ceiling(redis, rnd)
                    if x is None:
                        xadd_on = False  # no redis-benchmark (noted)
                    else:
                        xadds.append(x)
                except (BenchError, OSError) as e:
                    note("cluster redis XADD reference (round %d) failed: %s" % (rnd, e))
            for t in TESTS:
                for p in POSTERS:
                    try:
                        if t == "latency":
                            results[(t, p)].append(run_latency(redis, p, rnd))
                        else:
                            results[(t, p)].append(run_throughput(redis, p, rnd, zone_for))
                    except BenchError as e:
                        note("cluster %s (%s, round %d) failed: %s" % (t, p, rnd, e))
                        print("scenario=cluster_%s %s poster=%s round=%d failed=1" % (
                            t, " ".join("%s=%s" % kv_ for kv_ in impl_kv()), p, rnd), flush=True)
                        failed.setdefault((t, p), []).append(str(e).splitlines()[0])
        print("# cluster: load average at end %s" % loadavg(), flush=True)
    if floors:
        floor_row(add_row, floors)
    if xadds:
        xadd_row(add_row, xadds)
    for t in TESTS:
        for p in POSTERS:
            rs = results[(t, p)]
            if not rs:
                continue
            if t == "latency":
                latency_row(add_row, p, rs)
            else:
                throughput_row(add_row, p, rs, xadds)
    if failed:
        raise BenchError("; ".join("%s/%s failed in %d of %d runs: %s" % (t, p, len(f), REPEAT, f[0])
                                   for (t, p), f in failed.items()))


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])
