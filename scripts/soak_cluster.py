#!/usr/bin/env python3
"""Cluster chaos soak (run via scripts/soak-cluster; README.md "Soak").

Starts its own redis-server (a free port from SOAK_CLUSTER_REDIS_PORT, a temp
dir under target/, AOF with fsync always, so a restart keeps every entry it
acknowledged) and two nginx nodes, A and B (SOAK_CLUSTER_WORKERS workers each,
prefixes target/soak-cluster-a and -b, ports SOAK_CLUSTER_PORT and +1), whose
zones share one stream (worker_events_cluster ... maxlen=1000000). Posters in
both nodes post sequence-numbered cluster events (nginx-conf/soak/cluster_soak.lua)
while it SIGKILLs random workers and the nodes' bridge workers, HUPs either
node, restarts redis-server and SIGSTOPs a node's workers for under a second.
Then it quiesces, reads what every worker lifetime recorded, checks the
invariants below, prints one summary and exits 1 if one broke.

The invariants (printed in the header too):
  order   every receiving worker got each poster's seqs strictly increasing:
          no duplicate, nothing out of order (per worker, per poster stream);
  gaps    a receiving worker P must have got every seq of poster stream S in
          its window, or had it reported lost: the window starts at the first
          seq of S posted after P attached (batch time > P's attach time, both
          ngx.now() after ngx.update_time()) or at the first seq P got, if
          earlier; it ends at the last seq of S posted when P lives at the end
          (after the drain), else at the last seq of S P got. Missing seqs,
          less posts that returned nil, err, must not exceed the losses
          reported to P (`lost` events: cluster ones of S's node, plus local
          ones). The bridge posts a cluster gap's lost event right after the
          gap's next event, so a dead worker's record may end between the
          two: only the gap right before the last event it got from that
          node is excused, and only for seqs no worker of its node got (the
          node check below takes those);
  node    per receiving node and other sending node: the seqs some worker's
          window required and no worker of the node got must not exceed the
          node's lost_in (the zone's count of cluster gaps);
  loss    with maxlen=1000000 and an 8m zone nothing should be lost: any
          reported loss (lost events, lost_in/lost_out, refused posts) fails
          unless SOAK_CLUSTER_ALLOW_LOSS=1;
  end     both bridges connected, waiting 0, no worker exited on a signal we
          did not send or with a non-zero code, no [alert]/[crit]/[emerg]
          line but the ones our SIGKILLs explain, no harness error.
"""
import bisect
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

from harness import MODULE_SO, HarnessError as SoakError, cli, note, sha256, source_tree, template
from harness.fetch import tsv
from harness.nginx import Nginx
from harness.proc import signal_pid
from harness.redis import Redis

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LUA_DIR = os.path.join(ROOT, "nginx-conf", "soak")

# option, environment variable (the default), default, help
KNOBS = [
    ("--seconds", "SOAK_SECONDS", 20.0, "how long the chaos runs, s"),
    ("--workers", "SOAK_CLUSTER_WORKERS", 4, "worker processes per node"),
    ("--port", "SOAK_CLUSTER_PORT", 19520, "node A listens on 127.0.0.1:PORT, node B on PORT + 1"),
    ("--redis-port", "SOAK_CLUSTER_REDIS_PORT", 19530, "redis-server's port: the first free one from here"),
    ("--prefix", "SOAK_CLUSTER_PREFIX", os.path.join(ROOT, "target", "soak-cluster"),
     "the nodes' prefixes are PREFIX-a and PREFIX-b, redis-server's dir PREFIX-redis-XXXX"),
    ("--zone", "SOAK_CLUSTER_ZONE", "8m", "the zone's size"),
    ("--maxlen", "SOAK_CLUSTER_MAXLEN", 1000000, "the stream's maxlen="),
    ("--queue", "SOAK_CLUSTER_QUEUE", "", "the directive's queue= (\"\": the module's default, 10000)"),
    ("--rate", "SOAK_CLUSTER_RATE", 1000.0, "cluster posts/s per node"),
    ("--posters", "SOAK_CLUSTER_POSTERS", 2, "posting workers per node"),
    ("--kill-every", "SOAK_CLUSTER_KILL_EVERY", 1.2, "s between SIGKILLs of a random worker (0 = none)"),
    ("--bridge-every", "SOAK_CLUSTER_BRIDGE_EVERY", 2.5, "s between SIGKILLs of a bridge worker (0 = none)"),
    ("--hup-every", "SOAK_CLUSTER_HUP_EVERY", 3.0, "s between HUPs of either node (0 = none)"),
    ("--redis-every", "SOAK_CLUSTER_REDIS_EVERY", 6.0, "s between redis-server restarts (0 = none)"),
    ("--redis-down-min", "SOAK_CLUSTER_REDIS_DOWN_MIN", 0.5, "redis-server is down at least this long, s"),
    ("--redis-down-max", "SOAK_CLUSTER_REDIS_DOWN_MAX", 2.0, "and at most this long, s"),
    ("--redis-stop", "SOAK_CLUSTER_REDIS_STOP", "term", "how redis-server stops: term, kill or mix"),
    ("--redis-prefill", "SOAK_CLUSTER_REDIS_PREFILL", 0, "keys (DEBUG POPULATE, then BGREWRITEAOF) that make "
     "every restart load for a while (~1 s per 1000000): Redis answers -LOADING meanwhile"),
    ("--stop-every", "SOAK_CLUSTER_STOP_EVERY", 4.0, "s between SIGSTOPs of a node's workers (0 = none)"),
    ("--stop-min", "SOAK_CLUSTER_STOP_MIN", 0.2, "a node's workers stay stopped at least this long, s"),
    ("--stop-max", "SOAK_CLUSTER_STOP_MAX", 0.9, "and at most this long, s"),
    ("--inject", "SOAK_CLUSTER_INJECT", "", "self-test: gap, dup or ooo (the soak must FAIL)"),
    ("--allow-loss", "SOAK_CLUSTER_ALLOW_LOSS", False, "a reported loss does not fail the soak"),
    ("--drain-seconds", "SOAK_CLUSTER_DRAIN_SECONDS", 60.0, "the longest wait for the end state, s"),
    ("--seed", "SOAK_SEED", int(time.time()), "the chaos's random seed (default: now)"),
    ("--faults", "SOAK_CLUSTER_FAULTS", 0, "1: fault mode, forged and malformed stream entries, "
     "dropped and counted by both nodes"),
    ("--fault-every", "SOAK_CLUSTER_FAULT_EVERY", 0.5, "s between injected entries (fault mode)"),
]
OPT = cli.parse("scripts/soak-cluster", __doc__, KNOBS, epilog="Every option's default is its environment "
                "variable's value. Also: NGINX_BIN, NGINX_MODULES_DIR.")
PREFIX = os.path.abspath(OPT.prefix)
SECONDS = OPT.seconds
WORKERS = OPT.workers
PORT = OPT.port                  # node A; B: PORT + 1
REDIS_PORT = OPT.redis_port      # the first free one from here
ZONE = OPT.zone
MAXLEN = OPT.maxlen
QUEUE = OPT.queue                # "" = the module's default (10000)
RATE = OPT.rate                  # cluster posts/s per node
POSTERS = OPT.posters            # posting workers per node
KILL_EVERY = OPT.kill_every      # s between SIGKILLs of a random worker (0 = none)
BRIDGE_EVERY = OPT.bridge_every  # s between SIGKILLs of a bridge worker
HUP_EVERY = OPT.hup_every        # s between HUPs of either node
REDIS_EVERY = OPT.redis_every    # s between redis-server restarts
REDIS_DOWN = (OPT.redis_down_min, OPT.redis_down_max)
REDIS_STOP = OPT.redis_stop      # term | kill | mix: how redis-server stops
# keys (DEBUG POPULATE, then BGREWRITEAOF) that make every restart load for a while
# (~1 s per 1000000 on a small host): Redis answers -LOADING meanwhile
REDIS_PREFILL = OPT.redis_prefill
STOP_EVERY = OPT.stop_every      # s between SIGSTOPs of a node's workers
STOP_SECONDS = (OPT.stop_min, OPT.stop_max)
INJECT = re.sub(r"[^a-z]", "", OPT.inject)  # self-test: gap | dup | ooo (must FAIL)
ALLOW_LOSS = OPT.allow_loss
DRAIN = OPT.drain_seconds        # the longest wait for the end state
SEED = OPT.seed
# fault mode (issue 21): forged and malformed stream entries added to the stream
# while the chaos runs (missing and unknown fields, an undecodable payload, a bad
# ordinal, a poisoned ordinal of a real node); each node must drop and count the
# malformed ones and lose nothing real. Off by default.
FAULTS = OPT.faults
FAULT_EVERY = OPT.fault_every    # s between injected entries
NODES = ("a", "b")
# ports other setups on this host use (t/, scripts/soak, bench, test-package, valgrind)
AVOID = set(range(1984, 1991)) | set(range(2085, 2091)) | {2290, 7385, 7485} \
    | set(range(18990, 19011)) | set(range(19400, 19411)) | set(range(19500, 19504))


# --- redis-server ---------------------------------------------------------
def new_redis():
    """AOF with fsync always: a restart keeps every entry it acknowledged."""
    return Redis(PREFIX, REDIS_PORT, AVOID, pid_file=PREFIX + ".redis.pid",  # for scripts/soak-cluster's safety net
                 options=["--save", "", "--appendonly", "yes", "--appendfsync", "always"]
                 + (["--enable-debug-command", "local"] if REDIS_PREFILL else []))


def prefill(redis, n):
    out = redis.cli("DEBUG", "POPULATE", str(n), "soak:fill", "64")
    if out != "OK":
        raise SoakError("redis DEBUG POPULATE: %s" % out)
    redis.cli("BGREWRITEAOF")
    deadline = time.time() + 120
    while time.time() < deadline:
        info = redis.cli("INFO", "persistence")
        if "aof_rewrite_in_progress:0" in info and "aof_rewrite_scheduled:0" in info:
            return
        time.sleep(0.1)
    raise SoakError("redis BGREWRITEAOF did not finish in 120 s")


# --- the nginx nodes -----------------------------------------------------
class Node(Nginx):
    def __init__(self, name, port, redis_port, module):
        super().__init__("%s-%s" % (PREFIX, name), port, label="node %s: " % name, port_env="SOAK_CLUSTER_PORT")
        self.name = name
        self.redis_port, self.module = redis_port, module
        self.killed = set()     # pids we SIGKILLed
        self.hups = 0

    def start(self):
        return super().start(template.render(
            "soak/cluster.conf.tmpl", NODE=self.name, WORKERS=WORKERS, PREFIX=self.prefix,
            ERROR_LOG=self.error_log, MODULE_SO=self.module, LUA_PATH=LUA_DIR + "/?.lua;;", ZONE=ZONE,
            REDIS_PORT=self.redis_port, MAXLEN=MAXLEN, QUEUE=(" queue=%s" % QUEUE) if QUEUE else "",
            POSTERS=POSTERS, RATE=repr(RATE), PORT=self.port, INJECT=INJECT))

    def get(self, path, timeout=3.0):
        return super().get(path, timeout)

    def status(self, timeout=3.0):
        c = json.loads(self.get("/status", timeout)).get("cluster")
        if not isinstance(c, dict):
            raise SoakError("node %s: stats().status.cluster is %r" % (self.name, c))
        return c

    def dump(self, dict_name):
        return tsv(self.get("/dump?dict=" + dict_name, timeout=30))


# --- the run ---------------------------------------------------------------
class Chaos:
    def __init__(self, nodes, redis):
        self.nodes, self.redis = nodes, redis
        self.rng = random.Random(SEED)
        self.c = {"kills": 0, "bridge_kills": 0, "hups": 0, "redis_restarts": 0, "stops": 0}
        if FAULTS:
            self.c.update({"forged_malformed": 0, "forged_poisoned": 0})
        self.redis_down_until = None
        self.stopped = None  # (node, pids, until)
        self.bridge_gone = []  # (node, old bridge pid, when killed): hand-over times measured
        self.handovers = []    # s from a bridge SIGKILL to a new bridge_pid on that node

    def jitter(self, every):
        return every * self.rng.uniform(0.5, 1.5)

    def kill(self, node, pid, bridge=False):
        if node.kill_worker(pid):
            node.killed.add(pid)
            self.c["bridge_kills" if bridge else "kills"] += 1
            return True
        return False

    def run(self):
        self.t0 = time.time()
        end = self.t0 + SECONDS
        nxt = {k: self.t0 + self.jitter(v) for k, v in (("kill", KILL_EVERY), ("bridge", BRIDGE_EVERY),
                                                         ("hup", HUP_EVERY), ("redis", REDIS_EVERY),
                                                         ("stop", STOP_EVERY),
                                                         ("fault", FAULT_EVERY if FAULTS else 0)) if v > 0}
        nxt["report"] = self.t0 + 10
        while True:
            now = time.time()
            for n in self.nodes:
                if not n.alive():
                    raise SoakError("node %s: the nginx master %d died" % (n.name, n.master))
            if now >= end:
                break
            if "kill" in nxt and now >= nxt["kill"]:
                nxt["kill"] = now + self.jitter(KILL_EVERY)
                n = self.rng.choice(self.nodes)
                procs = sorted(n.workers(live_only=True))
                if procs:
                    self.kill(n, self.rng.choice(procs))
            if "bridge" in nxt and now >= nxt["bridge"]:
                nxt["bridge"] = now + self.jitter(BRIDGE_EVERY)
                n = self.rng.choice(self.nodes)
                if not (self.stopped and self.stopped[0] is n):
                    try:
                        pid = n.status(timeout=1.0).get("bridge_pid")
                    except SoakError:
                        pid = None
                    if pid and pid in n.workers() and self.kill(n, pid, bridge=True):
                        self.bridge_gone.append((n, pid, time.time()))
            if "hup" in nxt and now >= nxt["hup"]:
                nxt["hup"] = now + self.jitter(HUP_EVERY)
                n = self.rng.choice(self.nodes)
                if n.reload():
                    n.hups += 1
                    self.c["hups"] += 1
            if "redis" in nxt:
                if self.redis_down_until is None and now >= nxt["redis"]:
                    how = REDIS_STOP if REDIS_STOP != "mix" else self.rng.choice(("term", "kill"))
                    self.redis.stop(how)
                    self.redis_down_until = time.time() + self.rng.uniform(*REDIS_DOWN)
                elif self.redis_down_until is not None and now >= self.redis_down_until:
                    self.redis.start()
                    self.redis_down_until = None
                    self.c["redis_restarts"] += 1
                    nxt["redis"] = time.time() + self.jitter(REDIS_EVERY)
            if self.stopped and now >= self.stopped[2]:
                for p in self.stopped[1]:
                    signal_pid(p, signal.SIGCONT)
                self.stopped = None
                nxt["stop"] = now + self.jitter(STOP_EVERY)
            if "stop" in nxt and not self.stopped and now >= nxt["stop"]:
                n = self.rng.choice(self.nodes)
                pids = sorted(n.workers())
                for p in pids:
                    signal_pid(p, signal.SIGSTOP)
                self.stopped = (n, pids, now + self.rng.uniform(*STOP_SECONDS))
                self.c["stops"] += 1
            if "fault" in nxt and now >= nxt["fault"]:
                nxt["fault"] = now + self.jitter(FAULT_EVERY)
                if self.redis_down_until is None:
                    self.inject()
            self.watch_handover()
            if now >= nxt["report"]:
                nxt["report"] = now + 30
                note("t=%.0f s: %s" % (now - self.t0, self.counts_str()))
            time.sleep(0.02)
        self.resume()

    def inject(self):
        """Adds one forged or malformed entry to the stream (fault mode)."""
        # a real node's epoch, from the newest entry
        last = subprocess.run(["redis-cli", "-p", str(self.redis.port), "XREVRANGE", "soak", "+", "-",
                               "COUNT", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=10).stdout.decode("utf-8", "replace").strip().split("\n")
        f = dict(zip(last[1::2], last[2::2])) if len(last) > 2 else {}
        epoch, node = f.get("e", "1"), f.get("n", "a")
        good = "\x02"  # the codec's `true`
        kinds = [
            ["n", "z", "e", epoch, "s", "soak", "v", "forged", "d", good],                      # no o
            ["n", "z", "e", epoch, "o", "1", "s", "soak", "v", "forged", "d", good, "zz", "1"],  # unknown field
            ["n", "z", "e", epoch, "o", "1", "s", "soak", "v", "forged", "d", "garbage"],        # bad d
            ["n", "z", "e", epoch, "o", "x", "s", "soak", "v", "forged", "d", good],             # bad o
        ]
        if self.rng.random() < 0.25 and f:
            fields = ["n", node, "e", epoch, "o", str(self.rng.randrange(10 ** 11, 10 ** 12)),
                      "s", "soak", "v", "forged", "d", good]
            self.c["forged_poisoned"] += 1
        else:
            fields = self.rng.choice(kinds)
            self.c["forged_malformed"] += 1
        self.redis.cli("XADD", "soak", "*", *fields)

    def watch_handover(self):
        """Measures how long a killed bridge takes to be replaced (reported, not checked:
        redis may be down, or the node stopped, meanwhile)."""
        if time.time() < getattr(self, "next_watch", 0):
            return
        self.next_watch = time.time() + 0.1
        for item in list(self.bridge_gone):
            n, old, t = item
            if time.time() - t > 10:
                self.bridge_gone.remove(item)
                continue
            if self.stopped and self.stopped[0] is n:
                continue
            try:
                pid = n.status(timeout=0.5).get("bridge_pid")
            except SoakError:
                continue
            if pid and pid != old:
                self.handovers.append(time.time() - t)
                self.bridge_gone.remove(item)

    def resume(self):
        if self.stopped:
            for p in self.stopped[1]:
                signal_pid(p, signal.SIGCONT)
            self.stopped = None
        if not self.redis.up():
            self.redis.start()
            self.redis_down_until = None
            self.c["redis_restarts"] += 1

    def counts_str(self):
        return ("SIGKILLs %d (+ %d of bridge workers), HUPs %d (a %d, b %d), redis restarts %d, "
                "SIGSTOPs of a node %d" % (self.c["kills"], self.c["bridge_kills"], self.c["hups"],
                                          self.nodes[0].hups, self.nodes[1].hups, self.c["redis_restarts"],
                                          self.c["stops"])
                + (", forged entries %d malformed + %d poisoned ordinals" % (
                    self.c["forged_malformed"], self.c["forged_poisoned"]) if FAULTS else ""))


def records(node):
    out = {}
    for k, v in node.dump("soak_rx").items():
        if k.startswith("r:"):
            try:
                out[int(k[2:])] = json.loads(v)
            except ValueError:
                raise SoakError("node %s: bad receiver record %s: %.200s" % (node.name, k, v))
    return out


def seen_total(recs, pids):
    return sum(b - a + 1 for p in pids if p in recs for s in recs[p]["streams"].values() for a, b in runs_of(s))


def wait_ready(nodes):
    deadline = time.time() + 30
    last = "?"
    while time.time() < deadline:
        ok = True
        for n in nodes:
            procs = n.workers(live_only=True)
            try:
                recs = records(n)
                st = n.status()
            except SoakError as e:
                last = str(e)
                ok = False
                continue
            if len(procs) != WORKERS or not all(p in recs for p in procs):
                last = "node %s: %d workers, %d attached" % (n.name, len(procs), sum(p in recs for p in procs))
                ok = False
            elif not st.get("connected") or not st.get("bridge_pid"):
                last = "node %s: bridge not connected (%s)" % (n.name, json.dumps(st))
                ok = False
            elif not st.get("last_id"):
                # a node receives what is appended after its bridge joined
                # the stream: posting earlier would miss events by design
                last = "node %s: bridge has not joined the stream yet" % n.name
                ok = False
        for n in nodes:
            line = n.start_error(("init_worker_by_lua error", "cluster soak: configure failed"))
            if line:
                raise SoakError(n.label + line)
        if ok:
            return
        time.sleep(0.1)
    raise SoakError("not ready after 30 s: %s" % last)


def quiesce(nodes):
    """Stops the posters and waits until both bridges are connected with nothing
    waiting, every node has its workers (none shutting down), and the counters and
    what the live workers got stop moving for 1.5 s. Returns (status per node, problems)."""
    for n in nodes:
        for _ in range(20):
            try:
                n.get("/ctl?k=stop")
                break
            except SoakError:
                time.sleep(0.25)
        else:
            raise SoakError("node %s: /ctl?k=stop unanswered" % n.name)
    deadline = time.time() + DRAIN
    last_sig, stable_since, why = None, time.time(), "?"
    st = {}
    while time.time() < deadline:
        try:
            st = {n.name: n.status() for n in nodes}
            sig = []
            ready = True
            for n in nodes:
                procs = n.workers()
                s = st[n.name]
                if len(procs) != WORKERS or any(v[2] for v in procs.values()):
                    ready, why = False, "node %s: %d workers (%d shutting down)" % (
                        n.name, len(procs), sum(1 for v in procs.values() if v[2]))
                elif not s.get("connected") or s.get("waiting") != 0 or not s.get("bridge_pid"):
                    ready, why = False, "node %s: connected %s, waiting %s, bridge_pid %s" % (
                        n.name, s.get("connected"), s.get("waiting"), s.get("bridge_pid"))
                sig.append((s.get("events_in"), s.get("events_out"), s.get("events_posted"),
                            seen_total(records(n), procs), tuple(sorted(procs))))
        except SoakError as e:
            ready, why, sig = False, str(e), None
        if sig != last_sig or not ready:
            last_sig, stable_since = sig, time.time()
        elif time.time() - stable_since >= 1.5:
            time.sleep(0.3)  # the records' 0.1 s flush
            return {n.name: n.status() for n in nodes}, []
        time.sleep(0.2)
    return st, ["after %g s of drain: %s" % (DRAIN, why)]


# --- checks ----------------------------------------------------------------
def runs_of(s):
    r = s["runs"]
    return [(r[i], r[i + 1]) for i in range(0, len(r), 2)]


def subtract(lo, hi, runs):
    """[lo, hi] minus the (sorted, disjoint) runs, as intervals."""
    out, cur = [], lo
    for a, b in runs:
        if b < cur:
            continue
        if a > hi:
            break
        if a > cur:
            out.append((cur, min(a - 1, hi)))
        cur = max(cur, b + 1)
        if cur > hi:
            break
    if cur <= hi:
        out.append((cur, hi))
    return out


def union(intervals):
    out = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def count_minus(intervals, fails):
    """Seqs in the intervals that are not failed posts."""
    n = sum(b - a + 1 for a, b in intervals)
    return n - sum(1 for f in fails if any(a <= f <= b for a, b in intervals))


def posters_of(node_name, tx):
    """{poster pid: {"hw", "batches": [(first, n, t)], "fails": {seq}}} of one node."""
    out = {}
    for k, v in tx.items():
        parts = k.split(":")
        if parts[0] == "hw":
            out.setdefault(int(parts[1]), {"hw": 0, "batches": [], "fails": set()})["hw"] = int(float(v))
        elif parts[0] == "b":
            n, t = v.split()
            out.setdefault(int(parts[1]), {"hw": 0, "batches": [], "fails": set()})["batches"].append(
                (int(parts[2]), int(n), float(t)))
        elif parts[0] == "f":
            out.setdefault(int(parts[1]), {"hw": 0, "batches": [], "fails": set()})["fails"].add(int(parts[2]))
    for p in out.values():
        p["batches"].sort()
        p["firsts"] = [b[0] for b in p["batches"]]
        p["times"] = [b[2] for b in p["batches"]]
    return out


def first_after(poster, t):
    """The first seq of a batch stamped after time t (None: none)."""
    i = bisect.bisect_right(poster["times"], t)
    return poster["firsts"][i] if i < len(poster["firsts"]) else None


def analyse(nodes, tx, rx, live, status):
    names = [n.name for n in nodes]
    posters = {N: posters_of(N, tx[N]) for N in names}
    # the last seq each stream posted: its high-water mark, or a later one someone got
    top = {}
    for R in names:
        for rec in rx[R].values():
            for key, s in rec["streams"].items():
                top[key] = max(top.get(key, 0), s["runs"][-1])
    for N in names:
        for q, p in posters[N].items():
            key = "%s:%d" % (N, q)
            p["max"] = max(p["hw"], top.get(key, 0))
    unknown = [k for k in top if k.split(":")[0] not in posters
               or int(k.split(":")[1]) not in posters[k.split(":")[0]]]
    res = {"unknown_streams": unknown, "nodes": {}}
    for R in names:
        node = {"workers": len(rx[R]), "survivors": 0, "dup": 0, "ooo": 0, "bad": 0, "badpid": 0,
                "lost_events": 0, "lost_local": 0, "excused": 0, "from": {}}
        for N in names:
            node["from"][N] = {"delivered": 0, "required": 0, "missing": 0, "reported": 0, "unreported": 0,
                               "node_missing": 0, "blind": 0, "worst": []}
        required_by = {}   # (N, q) -> [intervals some worker of R required]
        seen_by = {}       # (N, q) -> [runs some worker of R got]
        worker_missing = []  # (pid, N, q, missing intervals, unreported count, dead)
        for pid, rec in rx[R].items():
            survivor = pid in live[R]
            node["survivors"] += survivor
            for k in ("bad", "badpid", "lost_events", "lost_local"):
                node[k] += int(rec.get(k, 0))
            lost_cluster = rec.get("lost_cluster") or {}
            for N in names:
                f = node["from"][N]
                missing_n, gaps = 0, []
                for q, p in posters[N].items():
                    key = "%s:%d" % (N, q)
                    s = rec["streams"].get(key)
                    runs = runs_of(s) if s else []
                    if s:
                        node["dup"] += s["dup"]
                        node["ooo"] += s["ooo"]
                        f["delivered"] += sum(b - a + 1 for a, b in runs)
                        seen_by.setdefault((N, q), []).extend(runs)
                    lo = first_after(p, rec["t_attach"])
                    if runs:
                        lo = runs[0][0] if lo is None else min(lo, runs[0][0])
                    hi = p["max"] if survivor else (runs[-1][1] if runs else None)
                    if lo is None or hi is None or lo > hi:
                        continue
                    required_by.setdefault((N, q), []).append((lo, hi))
                    f["required"] += count_minus([(lo, hi)], p["fails"])
                    miss = subtract(lo, hi, runs)
                    m = count_minus(miss, p["fails"])
                    if m:
                        missing_n += m
                        gaps.append((q, miss, p["fails"]))
                reported = int(lost_cluster.get(N, 0)) + int(rec.get("lost_local", 0))
                f["missing"] += missing_n
                f["reported"] += min(missing_n, reported)
                unrep = max(0, missing_n - reported)
                if unrep:
                    worker_missing.append((pid, N, gaps, unrep, not survivor, (rec.get("last_from") or {}).get(N)))
        # node level: required by some worker of R, got by none
        for (N, q), req in required_by.items():
            p = posters[N][q]
            got = union(seen_by.get((N, q), []))
            miss = []
            for a, b in union(req):
                miss += subtract(a, b, got)
            node["from"][N]["node_missing"] += count_minus(miss, p["fails"])
        for N in names:
            for q, p in posters[N].items():
                if p["max"] == 0:
                    continue
                covered = union(required_by.get((N, q), []) + seen_by.get((N, q), []))
                node["from"][N]["blind"] += count_minus(subtract(1, p["max"], covered), p["fails"])
        # per worker: unreported, less (for a dead worker and another node) the gap right
        # before the last event it got from that node, if no worker of R got those seqs:
        # the bridge posts a cluster gap's lost event right after that event (no event of
        # that node between them), so the worker may have died before it
        for pid, N, gaps, unrep, dead, last in worker_missing:
            f = node["from"][N]
            if dead and N != R and last:
                key, seq = last
                q = int(key.split(":")[1])
                for gq, miss, fails in gaps:
                    tail = [(a, b) for a, b in miss if gq == q and b == seq - 1]
                    if tail:
                        got = union(seen_by.get((N, q), []))
                        ex = min(unrep, count_minus(subtract(tail[0][0], tail[0][1], got), fails))
                        node["excused"] += ex
                        unrep -= ex
            if unrep:
                f["unreported"] += unrep
                f["worst"].append("worker %d (%s) %d unreported, missing %s" % (
                    pid, "dead" if dead else "live at the end", unrep, "; ".join(
                        "%s:%d seqs %s" % (N, q, ",".join("%d-%d" % ab if ab[0] != ab[1] else str(ab[0])
                                                          for ab in miss[:4]))
                        for q, miss, _ in gaps[:3])))
        st = status.get(R, {})
        node["lost_in"] = int(st.get("lost_in") or 0)
        node["lost_out"] = int(st.get("lost_out") or 0)
        node["refused"] = int(st.get("refused") or 0)
        for N in names:
            f = node["from"][N]
            allowed = node["lost_in"]
            # (this node's own events: the per-worker check covers them; a seq every
            # worker missed was either reported to each of them or counted there)
            f["node_unreported"] = max(0, f["node_missing"] - allowed) if N != R else 0
        res["nodes"][R] = node
    res["posts"] = {N: sum(p["max"] for p in posters[N].values()) for N in names}
    res["fails"] = {N: sum(len(p["fails"]) for p in posters[N].values()) for N in names}
    res["posters"] = {N: sum(1 for p in posters[N].values() if p["max"] > 0) for N in names}
    return res


LOG_EXIT = re.compile(r"worker process (\d+) exited (on signal (\d+)|with code (\d+))")
LOG_LOCKED = re.compile(r"was locked by (\d+)")


def scan_log(node):
    """(crash lines, other alert/crit/emerg lines, harness error lines, {error message: n},
    SIGKILLed pids seen exiting on signal 9, bridge lease takes logged, SIGKILLed pids that
    had exited with code 0 already)."""
    crashes, alerts, harness, errors, exits, takes = [], [], [], {}, set(), 0
    raced = set()
    try:
        f = open(node.error_log, errors="replace")
    except OSError as e:
        return [], [], ["cannot read %s: %s" % (node.error_log, e)], {}, set(), 0, set()
    with f:
        for line in f:
            m = LOG_EXIT.search(line)
            if m:
                pid = int(m.group(1))
                if m.group(3) is not None:
                    if m.group(3) == "9" and pid in node.killed:
                        exits.add(pid)
                    else:
                        crashes.append(line.strip())
                elif m.group(4) != "0":
                    crashes.append(line.strip())
                elif pid in node.killed:
                    raced.add(pid)  # it exited by itself (a HUP) before our SIGKILL landed
                continue
            if "holds the bridge of node" in line:
                takes += 1
            if re.search(r"\[(alert|crit|emerg)\]", line):
                m = LOG_LOCKED.search(line)
                if not (m and int(m.group(1)) in node.killed):
                    alerts.append(line.strip())
                continue
            if "[error]" in line or "[warn]" in line:
                msg = re.sub(r"^.*?\] \d+#\d+: (\*\d+ )?", "", line.strip())
                if "cluster soak:" in msg or "event callback failed" in msg or "lua entry thread aborted" in msg \
                        or "runtime error" in msg:
                    harness.append(msg)
                msg = re.sub(r"^\[lua\] \S+:\d+: (\w+\(\): )?(ngx_worker_events: )?", "", msg)
                msg = re.sub(r"\d+", "N", msg.split(", context:")[0].split(" while ")[0])[:150]
                errors[msg] = errors.get(msg, 0) + 1
    return crashes, alerts, harness, errors, exits, takes, raced


def report(nodes, chaos, a, status, problems, logs, accfail, redis):
    names = [n.name for n in nodes]
    fails = []

    def check(ok, what):
        if not ok:
            fails.append(what)

    dup = sum(a["nodes"][R]["dup"] for R in names)
    ooo = sum(a["nodes"][R]["ooo"] for R in names)
    unrep = sum(a["nodes"][R]["from"][N]["unreported"] for R in names for N in names)
    node_unrep = sum(a["nodes"][R]["from"][N]["node_unreported"] for R in names for N in names)
    lost_events = sum(a["nodes"][R]["lost_events"] for R in names)
    zone_lost = sum(a["nodes"][R]["lost_in"] + a["nodes"][R]["lost_out"] for R in names)
    refused = sum(a["nodes"][R]["refused"] for R in names)
    post_fails = sum(a["fails"].values())
    local_lost = sum(a["nodes"][R]["lost_local"] for R in names)
    print("== cluster soak summary: %g s, %s" % (SECONDS, chaos.counts_str()))
    print("posts           %s; returned nil, err: %s" % (
        ", ".join("%s %d (%d poster lifetimes)" % (N, a["posts"][N], a["posters"][N]) for N in names),
        ", ".join("%s %d" % (N, a["fails"][N]) for N in names)))
    for R in names:
        r = a["nodes"][R]
        print("on node %s       %d worker lifetimes (%d live at the end): %s" % (
            R, r["workers"], r["survivors"], "; ".join(
                "from %s delivered %d, required %d, missing %d (reported %d, unreported %d), "
                "node-wide missing %d, not required %d" % (
                    N, f["delivered"], f["required"], f["missing"], f["reported"], f["unreported"],
                    f["node_missing"], f["blind"]) for N, f in sorted(r["from"].items()))))
    print("duplicates      %d (a seq a worker got twice); out of order %d" % (dup, ooo))
    dropped = {R: {k: v for k, v in (status.get(R, {}).get("dropped") or {}).items() if v}
               for R in names}
    print("dropped entries %s; ordinal jumps %s; stream resets %s; bridge thread restarts %s" % (
        "; ".join("%s %s" % (R, dropped[R] or "none") for R in names),
        ", ".join("%s %s" % (R, status.get(R, {}).get("ordinal_jumps")) for R in names),
        ", ".join("%s %s" % (R, status.get(R, {}).get("stream_resets")) for R in names),
        ", ".join("%s %s" % (R, status.get(R, {}).get("restarts")) for R in names)))
    if FAULTS:
        malformed = chaos.c.get("forged_malformed", 0)
        for R in names:
            got = sum(v for k, v in dropped[R].items() if k != "duplicate")
            # entries added while a node's bridge was down may be trimmed before it reads them
            check(malformed == 0 or got > 0,
                  "fault mode: node %s dropped none of the %d malformed entries" % (R, malformed))
    print("unreported gaps %d (per worker; %d more excused: a dead worker's gap right before its last event of "
          "that node, no worker of its node got); node-wide %d" % (
              unrep, sum(a["nodes"][R]["excused"] for R in names), node_unrep))
    for R in names:
        for N in names:
            f = a["nodes"][R]["from"][N]
            if N != R:
                print("                node %s from %s: node-wide missing %d + not required %d = %d; zone lost_in %d"
                      % (R, N, f["node_missing"], f["blind"], f["node_missing"] + f["blind"],
                         a["nodes"][R]["lost_in"]))
    print("reported lost   lost events %d (local counts %d, cluster %s); zone lost_in %s, lost_out %s; "
          "refused %d; posts that failed %d" % (
              lost_events, local_lost, ", ".join("%s %d" % (R, a["nodes"][R]["lost_events"]) for R in names),
              ", ".join("%s %d" % (R, a["nodes"][R]["lost_in"]) for R in names),
              ", ".join("%s %d" % (R, a["nodes"][R]["lost_out"]) for R in names), refused, post_fails))
    for R in names:
        s = status.get(R, {})
        print("bridge %s        connected %s, pid %s, takeovers %s, out %s, in %s, waiting %s, duplicates dropped "
              "%s, reconnects %s, errors %s, own skipped %s" % (
                  R, s.get("connected"), s.get("bridge_pid"), s.get("bridge_takeovers"), s.get("events_out"),
                  s.get("events_in"), s.get("waiting"), s.get("duplicates"), s.get("reconnects"),
                  s.get("errors"), s.get("own_skipped")))
    h = sorted(chaos.handovers)
    if h:
        print("hand-over       a killed bridge's replacement in the status: median %.2f s, max %.2f s (%d)"
              % (h[len(h) // 2], h[-1], len(h)))
    for n in nodes:
        crashes, alerts, harness, errors, exits, takes, raced = logs[n.name]
        print("nginx %s         SIGKILLed %d, exited on signal 9 %d (%d had exited by themselves); crashes %d; "
              "alert lines %d; harness errors %d; bridge takes logged %d" % (
                  n.name, len(n.killed), len(exits), len(raced), len(crashes), len(alerts), len(harness), takes))
        for msg, k in sorted(errors.items(), key=lambda x: -x[1])[:6]:
            print("log %s: %6d x %s" % (n.name, k, msg))
    print("redis           port %d, started %d times (%s stop), dir %s" % (
        redis.port, redis.starts, REDIS_STOP, redis.dir))

    check(dup == 0, "duplicates %d" % dup)
    check(ooo == 0, "out of order %d" % ooo)
    for R in names:
        r = a["nodes"][R]
        for N in names:
            f = r["from"][N]
            check(f["unreported"] == 0, "node %s from %s: unreported gaps %d in %d worker(s), e.g. %s" % (
                R, N, f["unreported"], len(f["worst"]), " | ".join(f["worst"][:2])))
            check(f["node_unreported"] == 0, "node %s from %s: %d seqs no worker got, beyond lost_in %d" % (
                R, N, f["node_unreported"], r["lost_in"]))
            check(f["delivered"] > 0, "node %s got nothing from %s" % (R, N))
        check(r["bad"] == 0, "node %s: bad payloads %d" % (R, r["bad"]))
        check(r["badpid"] == 0, "node %s: events with the wrong pid %d (nil is for other nodes' events)"
              % (R, r["badpid"]))
        s = status.get(R, {})
        check(s.get("connected") is True, "node %s: bridge not connected at the end" % R)
        check(s.get("waiting") == 0, "node %s: waiting %s at the end" % (R, s.get("waiting")))
    check(not a["unknown_streams"], "events of unknown poster streams: %s" % a["unknown_streams"][:5])
    lost_any = lost_events + zone_lost + refused + post_fails
    check(ALLOW_LOSS or lost_any == 0, "loss reported (%d lost events, zone lost_in+lost_out %d, refused %d, "
          "failed posts %d) where maxlen=%d and a %s zone should lose nothing (SOAK_CLUSTER_ALLOW_LOSS=1 allows it)"
          % (lost_events, zone_lost, refused, post_fails, MAXLEN, ZONE))
    for n in nodes:
        crashes, alerts, harness, errors, exits, takes, raced = logs[n.name]
        check(not crashes, "node %s: crashed workers %d: %s" % (n.name, len(crashes), crashes[:2]))
        check(not alerts, "node %s: alert/crit/emerg lines %d: %s" % (n.name, len(alerts), alerts[:2]))
        check(not harness, "node %s: harness errors %d: %s" % (n.name, len(harness), harness[:2]))
        check(exits | raced == n.killed, "node %s: SIGKILLed %d workers, %d exited on signal 9, %d by themselves "
              "(no exit line: %s)" % (n.name, len(n.killed), len(exits), len(raced), sorted(n.killed - exits - raced)[:5]))
    for R, k in accfail.items():
        check(k == 0, "node %s: bookkeeping dict writes failed %d" % (R, k))
    for p in problems:
        fails.append(p)
    for f in fails:
        print("FAIL: " + f)
    print("soak-cluster: %s" % ("PASS" if not fails else "FAIL (%d invariant(s) broken)" % len(fails)), flush=True)
    return 1 if fails else 0


def header(module_sha):
    git = source_tree()
    print("# soak-cluster: %g s; nodes a, b x %d workers, zone %s, maxlen %d, queue %s; %g cluster posts/s per "
          "node by %d workers; chaos: SIGKILL a worker every %g s, a bridge every %g s, HUP a node every %g s, "
          "restart redis every %g s (down %g-%g s, %s%s), SIGSTOP a node's workers every %g s (%g-%g s); "
          "seed %d; tree %s; module sha256 %s%s" % (
              SECONDS, WORKERS, ZONE, MAXLEN, QUEUE or "default", RATE, POSTERS, KILL_EVERY, BRIDGE_EVERY,
              HUP_EVERY, REDIS_EVERY, REDIS_DOWN[0], REDIS_DOWN[1], REDIS_STOP,
              ", %d keys preloaded" % REDIS_PREFILL if REDIS_PREFILL else "", STOP_EVERY, STOP_SECONDS[0],
              STOP_SECONDS[1], SEED, git, module_sha[:12],
              "; INJECTING %s (must FAIL)" % INJECT if INJECT else ""))
    print("# checked per receiving worker lifetime and poster stream (node:pid, seqs 1, 2, ...): seqs strictly "
          "increasing (no duplicate, no reordering); every seq in the worker's window (from the first seq posted "
          "after it attached, or the first it got if earlier, to the last posted if it lives at the end, else to "
          "the last it got) got or reported lost to it (lost events: cluster ones of that node, plus local ones), "
          "posts that returned nil, err aside; per node, seqs some window required and no worker got <= the "
          "zone's lost_in; no loss at all expected; bridges connected, waiting 0, no crash or alert.", flush=True)


def main():
    signal.signal(signal.SIGTERM, lambda s, f: sys.exit(128 + s))
    if not os.path.exists(MODULE_SO):
        print("missing %s (scripts/soak-cluster builds it)" % MODULE_SO, file=sys.stderr)
        return 2
    if shutil.which("redis-server") is None:
        print("redis-server not found (apt-get install redis-server)", file=sys.stderr)
        return 2
    redis = new_redis()
    # a copy of the module for this run: a rebuild meanwhile must not change the
    # .so that HUP reloads load
    module = os.path.join(redis.dir, "ngx_http_worker_events_module.so")
    shutil.copyfile(MODULE_SO, module)
    header(sha256(module))
    nodes = [Node(name, PORT + i, redis.port, module) for i, name in enumerate(NODES)]
    chaos = None
    rc = 1
    try:
        redis.start()
        if REDIS_PREFILL:
            prefill(redis, REDIS_PREFILL)
        for n in nodes:
            n.start()
        wait_ready(nodes)
        for n in nodes:
            n.get("/ctl?k=go")
        chaos = Chaos(nodes, redis)
        note("soaking for %g s (a: nginx %d :%d, b: nginx %d :%d, redis :%d %s)" % (
            SECONDS, nodes[0].master, nodes[0].port, nodes[1].master, nodes[1].port, redis.port, redis.dir))
        chaos.run()
        note("quiescing: posters stop, redis up, bridges drain")
        status, problems = quiesce(nodes)
        live = {n.name: set(n.workers(live_only=True)) for n in nodes}
        tx = {n.name: n.dump("soak_tx") for n in nodes}
        rx_raw = {n.name: n.dump("soak_rx") for n in nodes}
        accfail = {R: int(rx_raw[R].get("accfail", 0)) for R in rx_raw}
        rx = {n.name: records(n) for n in nodes}
        for n in nodes:  # for a look after the run
            for name, d in (("soak_tx", tx[n.name]), ("soak_rx", rx_raw[n.name])):
                with open(os.path.join(n.prefix, "logs", name + ".tsv"), "w") as f:
                    f.writelines("%s\t%s\n" % kv for kv in sorted(d.items()))
        for n in nodes:
            if not n.alive():
                problems.append("node %s: the master died" % n.name)
        note("stopping nginx (QUIT) and redis")
        for n in nodes:
            if not n.stop():
                problems.append("node %s: the final QUIT did not stop nginx cleanly within 15 s" % n.name)
        logs = {n.name: scan_log(n) for n in nodes}
        a = analyse(nodes, tx, rx, live, status)
        rc = report(nodes, chaos, a, status, problems, logs, accfail, redis)
    finally:
        if chaos and chaos.stopped:
            for p in chaos.stopped[1]:
                signal_pid(p, signal.SIGCONT)
        for n in nodes:
            if n.master:
                n.stop()
        redis.stop("term")
        if rc == 0:
            redis.remove()
        else:
            note("kept %s (redis AOF and log), %s-a/logs and %s-b/logs" % (redis.dir, PREFIX, PREFIX))
    return rc


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SoakError as e:
        print("soak-cluster: FAIL: %s" % e, file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
