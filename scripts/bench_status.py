#!/usr/bin/env python3
"""status_load, a scenario of scripts/bench.py: event throughput (K x 64 B
table events, one poster, as `throughput`) with and without the status
endpoint (`worker_events_status`) being scraped from outside by wrk, and,
with BENCH_STATUS_BASELINE_SO, the same throughput with another build of the
module (e.g. main's, before the hot-path counters), interleaved.

Variants (BENCH_STATUS_VARIANTS, comma-separated; default all four):
  none   no scraper (the status location is in the config, unused)
  c1     wrk, 1 connection, full speed
  c2     wrk, 2 connections, full speed
  10rps  wrk, 1 connection, 100 ms pause before each request (~10 scrapes/s)
Every scraper requests /status?format=prometheus and /status (JSON) in turn.
Plus `baseline` (no scraper, the BENCH_STATUS_BASELINE_SO module) when set.

Each of BENCH_STATUS_REPEAT (3) rounds runs every variant once, the order
rotated by one per round, each in a fresh nginx; a scraper starts 1 s before
the poster and stops (SIGINT) once every worker has its counters. Each run
also reports the nginx workers' on-CPU ns per event (schedstat, the scrapes
served meanwhile included) and which worker served wrk's connections. The
summary rows give medians and ranges over the rounds, and with a baseline
the per-round ratios against it. A module without worker_events_status
(IMPL_* pointing at main's .so) runs only the variants without a scraper. Before the rounds,
status_cost: each format alone, wrk -c 1 for 2 s on an idle nginx, gives
scrapes/s, nginx worker on-CPU time per scrape and the body size.

Environment: BENCH_STATUS_VARIANTS, BENCH_STATUS_REPEAT, BENCH_STATUS_COUNT
(100000), BENCH_STATUS_BASELINE_SO, BENCH_STATUS_BASELINE_NAME (baseline),
BENCH_STATUS_COST_ZONES (zone sizes for status_cost, comma-separated; default
the throughput zone, e.g. 26m).
"""
import hashlib
import os
import re
import signal
import subprocess
import time

from bench_lib import (
    PORT, STATUS_PATH, WORKERS, BenchError, Nginx, emit, human_rate, impl_kv, median, set_module,
    status_enabled, zone_size_str)
import bench_options
from harness import ROOT, cli, note
from harness.proc import proc_cpu

SCRAPE_LUA = os.path.join(ROOT, "nginx-conf", "bench", "status_scrape.lua")
PROM = STATUS_PATH + "?format=prometheus"
PATHS = (PROM, STATUS_PATH)
# name -> (connections, pause before each request in ms); None = no scraper
VARIANTS = {"none": None, "c1": (1, 0), "c2": (2, 0), "10rps": (1, 100)}
LABELS = {"none": "no scraper", "c1": "scraped: wrk -c 1, full speed", "c2": "scraped: wrk -c 2, full speed",
          "10rps": "scraped: wrk -c 1, 100 ms between requests (~10/s)"}
WARMUP_S = 1.0


def _tcp_table():
    """{inode: (local port, remote port)} of the established IPv4 TCP sockets."""
    out = {}
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            a = line.split()
            if a[3] == "01":  # ESTABLISHED
                out[int(a[9])] = (int(a[1].rsplit(":", 1)[1], 16), int(a[2].rsplit(":", 1)[1], 16))
    return out


def _socket_inodes(pid):
    inodes = set()
    d = "/proc/%d/fd" % pid
    for fd in os.listdir(d):
        try:
            link = os.readlink(os.path.join(d, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(int(link[8:-1]))
    return inodes


def conn_workers(wrk_pid, wpids):
    """{worker id: connections of wrk it serves}, from /proc/net/tcp and the fds."""
    try:
        tcp = _tcp_table()
        ports = {tcp[i][0] for i in _socket_inodes(wrk_pid) if i in tcp and tcp[i][1] == PORT}
        out = {}
        for w, pid in wpids.items():
            out[w] = sum(1 for i in _socket_inodes(pid) if i in tcp and tcp[i][0] == PORT and tcp[i][1] in ports)
        return out
    except OSError:
        return {}


class Scraper:
    """wrk -t 1 -c conns with nginx-conf/bench/status_scrape.lua, from
    __enter__ (plus WARMUP_S) until __exit__ (SIGINT: wrk prints its summary)."""

    def __init__(self, conns, delay_ms, paths=PATHS, warmup=WARMUP_S, ng=None):
        self.conns, self.delay_ms, self.paths, self.warmup = conns, delay_ms, paths, warmup
        self.ng = ng
        self.proc = None
        self.out = ""
        self.on = {}

    def __enter__(self):
        env = dict(os.environ, SCRAPE_PATHS=",".join(self.paths), SCRAPE_DELAY_MS=str(self.delay_ms))
        self.proc = subprocess.Popen(
            ["wrk", "-t", "1", "-c", str(self.conns), "-d", "600s", "-s", SCRAPE_LUA,
             "http://127.0.0.1:%d%s" % (PORT, self.paths[0])],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.t_start = time.time()
        time.sleep(self.warmup)
        if self.proc.poll() is not None:
            raise BenchError("wrk exited at once:\n" + self.proc.stdout.read())
        if self.ng:  # which worker serves which connection (nginx has no say: the first to accept)
            self.on = conn_workers(self.proc.pid, self.ng.wpids)
        return self

    def __exit__(self, *exc):
        self.wall = time.time() - self.t_start
        try:
            self.cpu_ns = proc_cpu(self.proc.pid)[1]
        except OSError:
            self.cpu_ns = -1
        self.proc.send_signal(signal.SIGINT)
        try:
            self.out, _ = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.out, _ = self.proc.communicate()
        return False

    def parsed(self):
        out = self.out
        m = re.search(r"Requests/sec:\s+([\d.]+)", out)
        t = re.search(r"scrape_total n=(\d+) non200=(\d+) bytes=(\S*)", out)
        if not m or not t:
            raise BenchError("wrk (status scraper) printed no summary:\n" + out[-2000:])
        errs = 0
        se = re.search(r"Socket errors:.*", out)
        if se:
            errs = sum(int(x) for x in re.findall(r"\d+", se.group(0)))
        hist = {}
        for line in re.findall(r"^scrape_ms (.*)$", out, re.M):
            for part in line.split(","):
                if ":" in part:
                    ms, n = part.split(":")
                    hist[int(ms)] = hist.get(int(ms), 0) + int(n)
        return dict(rps=float(m.group(1)), n=int(t.group(1)), non200=int(t.group(2)), bytes=t.group(3),
                    errors=errs, hist=hist)

    def kv(self, t0_us, t_last_us, poster):
        """key=value pairs for the throughput line: overall rate, the
        responses inside [first post, last receive], and how many of wrk's
        connections the poster / the receivers served."""
        p = self.parsed()
        on_poster = self.on.get(poster, 0)
        on_recv = sum(n for w, n in self.on.items() if w != poster)
        lo, hi = int(t0_us // 1000), int(t_last_us // 1000)
        inside = sum(n for ms, n in p["hist"].items() if lo <= ms <= hi)
        window = max(t_last_us - t0_us, 1) / 1e6
        return [("scrape_conns", self.conns), ("scrape_delay_ms", self.delay_ms),
                ("scrape_conns_on", "poster:%d,receivers:%d" % (on_poster, on_recv)),
                ("scrapes", p["n"]), ("scrapes_per_s", "%.0f" % p["rps"]),
                ("events_window_ms", "%.1f" % (window * 1000)), ("scrapes_in_window", inside),
                ("scrapes_per_s_in_window", "%.0f" % (inside / window)),
                ("scrape_non200", p["non200"]), ("scrape_socket_errors", p["errors"]),
                ("scrape_body_bytes", p["bytes"]), ("wrk_cpu_ms", "%.0f" % (self.cpu_ns / 1e6)),
                ("wrk_wall_s", "%.1f" % self.wall)]


class Probe:
    """Runs next to the poster in run_throughput: the scraper, if any (its
    warm-up first), and the nginx workers' on-CPU time (schedstat) from just
    before the first post until every worker has its counters."""

    def __init__(self, ng, scraper=None):
        self.ng, self.scraper = ng, scraper

    def cpu(self):
        return {w: proc_cpu(p)[1] for w, p in self.ng.wpids.items()}

    def __enter__(self):
        if self.scraper:
            self.scraper.__enter__()
        self.before = self.cpu()
        return self

    def __exit__(self, *exc):
        self.after = self.cpu()
        if self.scraper:
            self.scraper.__exit__(*exc)
        return False

    def kv(self, t0_us, t_last_us, poster, count):
        """CPU per event of the poster's worker (its posts and its own
        deliveries) and of the receivers (mean), then the scraper's keys."""
        d = {w: self.after[w] - self.before[w] for w in self.before}
        recv = [d[w] for w in d if w != poster]
        out = [("poster_cpu_ns_per_event", "%.0f" % (d.get(poster, 0) / count)),
               ("receiver_cpu_ns_per_event", "%.0f" % (sum(recv) / len(recv) / count if recv else 0))]
        return out + (self.scraper.kv(t0_us, t_last_us, poster) if self.scraper else [])


def status_cost(add_row, zones):
    """Each format alone at full speed (wrk -c 1, 2 s) on an idle nginx with
    a zone of each size in `zones`: scrapes/s and nginx worker on-CPU µs per
    scrape (schedstat, both workers: one serves the connection)."""
    for zone in zones:
        note("status_cost: zone %s, wrk -c 1, 2 s per format, no events" % zone)
        with Nginx("status-cost-w%d-%s" % (WORKERS, zone), WORKERS, zone, 1) as ng:
            ng.get(PROM)
            for path in PATHS:
                before = sum(proc_cpu(p)[1] for p in ng.wpids.values())
                with Scraper(1, 0, paths=(path,), warmup=2.0) as s:
                    pass
                cpu_ns = sum(proc_cpu(p)[1] for p in ng.wpids.values()) - before
                r = s.parsed()
                per = cpu_ns / r["n"] / 1000.0 if r["n"] else float("nan")
                size = r["bytes"].rsplit(":", 1)[-1]
                emit([("scenario", "status_cost"), *impl_kv(), ("workers", WORKERS), ("zone", zone),
                      ("path", path), ("scrapes", r["n"]), ("scrapes_per_s", "%.0f" % r["rps"]),
                      ("worker_cpu_us_per_scrape", "%.1f" % per), ("wrk_cpu_ms", "%.0f" % (s.cpu_ns / 1e6)),
                      ("body_bytes", size), ("non200", r["non200"]), ("socket_errors", r["errors"])])
                add_row(("status_cost", WORKERS, "GET %s, zone %s, wrk -c 1, 2 s, no events" % (path, zone),
                         "%.0f scrapes/s; nginx worker CPU %.1f µs per scrape; body %s B; non-200 %d"
                         % (r["rps"], per, size, r["non200"])))
            errors, _ = ng.error_lines()
            if errors:
                note("status_cost: %d [error] lines in %s" % (errors, ng.error_log))


def _delivered(r):
    """The slowest receiver's delivered/s of one run."""
    return min(r["rate"].values()) if r["rate"] else 0


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def rng(vals, fmt, sep="–"):
    vals = sorted(vals)
    return "%s (%s%s%s)" % (fmt(median(vals)), fmt(vals[0]), sep, fmt(vals[-1]))


def run(run_throughput, add_row, zone_for):
    """zone_for(count, size): the throughput scenario's zone size in bytes."""
    k = cli.values(bench_options.STATUS)
    count = k.status_count
    zone = zone_size_str(zone_for(count, 64))
    repeat = k.status_repeat
    wanted = [v for v in k.status_variants.split(",") if v]
    for v in wanted:
        if v not in VARIANTS:
            raise BenchError("unknown BENCH_STATUS_VARIANTS entry %r; known: %s" % (v, ",".join(VARIANTS)))
    base_so = k.status_baseline_so
    base_name = k.status_baseline_name
    if base_so:
        with open(base_so, "rb") as f:
            print("# baseline %s: %s sha256:%s" % (base_name, base_so, hashlib.sha256(f.read()).hexdigest()[:12]),
                  flush=True)
        wanted = ["baseline"] + wanted
    has_status = status_enabled()
    if not has_status and any(VARIANTS.get(v) for v in wanted):
        note("status_load: the module has no worker_events_status: only the variants without a scraper run")
        add_row(("status_load", WORKERS, "scraped variants", "skipped: no worker_events_status in the module"))
        wanted = [v for v in wanted if not VARIANTS.get(v)]
    if has_status:
        status_cost(add_row, [z for z in (k.status_cost_zones or zone).split(",") if z])
    results = {v: [] for v in wanted}
    print("# status_load: load average at start %s" % loadavg(), flush=True)
    for rnd in range(repeat):
        k = rnd % len(wanted)
        for v in wanted[k:] + wanted[:k]:
            spec = VARIANTS.get(v)
            load = lambda ng, spec=spec: Probe(ng, Scraper(*spec, ng=ng) if spec else None)
            extra = [("variant", v), ("round", rnd + 1)]
            if v == "baseline":
                extra.append(("module", base_name))
                set_module(base_so)
            try:
                r = run_throughput("status_load", WORKERS, count, 64, extra=extra, load=load, tag="-" + v)
            finally:
                set_module(None)
            results[v].append(r)
    print("# status_load: load average at end %s" % loadavg(), flush=True)
    for v in wanted:
        rs = results[v]
        delivered = [_delivered(r) for r in rs]
        posts = [r["post_rate"] for r in rs]
        lost = sum(sum(r["lost"].values()) for r in rs)
        errors = sum(r["errors"] for r in rs)
        label = ("no scraper, module %s (%s)" % (base_name, os.path.basename(base_so)) if v == "baseline"
                 else LABELS[v])
        pcpu = [float(r["side"]["poster_cpu_ns_per_event"]) for r in rs]
        rcpu = [float(r["side"]["receiver_cpu_ns_per_event"]) for r in rs]
        ns = lambda x: "%.0f" % x  # noqa: E731
        result = "delivered %s/s; post %s/s; worker CPU per event: poster %s ns, receiver %s ns; lost %d; errors %d" % (
            rng(delivered, human_rate), rng(posts, human_rate), rng(pcpu, ns), rng(rcpu, ns), lost, errors)
        if VARIANTS.get(v):
            result += "; scrapes/s %s, in the events' window %s; non-200 %d" % (
                rng([float(r["side"]["scrapes_per_s"]) for r in rs], ns),
                rng([float(r["side"]["scrapes_per_s_in_window"]) for r in rs], ns),
                sum(int(r["side"]["scrape_non200"]) for r in rs))
            result += "; a connection on the poster's worker in %d of %d runs" % (
                sum(1 for r in rs if not r["side"]["scrape_conns_on"].startswith("poster:0,")), len(rs))
        if "baseline" in results and v != "baseline":
            # paired by round (the two ran seconds apart): slow drifts of the host cancel
            base = results["baseline"]
            dr = [d / _delivered(b) for d, b in zip(delivered, base) if _delivered(b)]
            cr = [(float(r["side"]["poster_cpu_ns_per_event"]) + float(r["side"]["receiver_cpu_ns_per_event"]))
                  / (float(b["side"]["poster_cpu_ns_per_event"]) + float(b["side"]["receiver_cpu_ns_per_event"]))
                  for r, b in zip(rs, base)]
            pct = lambda x: "%+.0f %%" % ((x - 1) * 100)  # noqa: E731
            result += "; vs %s in the same round: delivered/s %s, CPU per event (poster + receiver) %s" % (
                base_name, rng(dr, pct, " to "), rng(cr, pct, " to "))
        if any(r["timed_out"] for r in rs):
            result += " (TIMEOUT in %d)" % sum(1 for r in rs if r["timed_out"])
        emit([("scenario", "status_load_summary"), *impl_kv(), ("variant", v), ("runs", len(rs)),
              ("delivered_per_s_median", "%.0f" % median(delivered)),
              ("delivered_per_s_min", "%.0f" % min(delivered)), ("delivered_per_s_max", "%.0f" % max(delivered)),
              ("posts_per_s_median", "%.0f" % median(posts)),
              ("poster_cpu_ns_per_event_median", "%.0f" % median(pcpu)),
              ("receiver_cpu_ns_per_event_median", "%.0f" % median(rcpu)), ("lost", lost), ("errors", errors)])
        add_row(("status_load", WORKERS, "K=%d, 64 B table payload, %s; median (range) of %d runs"
                 % (count, label, len(rs)), result))
