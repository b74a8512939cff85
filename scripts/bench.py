#!/usr/bin/env python3
"""Benchmark driver for resty.worker.events and resty.events implementations
(run via scripts/bench).

Starts a fresh nginx (prefix BENCH_PREFIX, default target/bench-prefix) for
every measurement, drives the Lua harness in nginx-conf/bench/lua/ over HTTP
on 127.0.0.1:BENCH_PORT, prints one `scenario=<name> impl=<impl> api=<api>
key=value ...` line per measurement and a markdown table at the end (with
BENCH_API=both: a column per API).

Environment: WORKERS, BENCH_PORT, BENCH_PREFIX, BENCH_API (worker.events |
events | both), IMPL_NAME, IMPL_LUA_PATH, IMPL_EXTRA_MODULES, IMPL_HTTP_CONFIG
(%SIZE% = zone size), IMPL_SHM, IMPL_NO_DEFAULT_MODULE, NGINX_BIN,
BENCH_WRK_SECONDS, BENCH_IDLE_SECONDS, BENCH_PAYLOAD, BENCH_STATUS_LOCATION,
BENCH_STATUS_* (the status_load scenario: scripts/bench_status.py), BENCH_CLUSTER_*
(the cluster scenario: scripts/bench_cluster.py). See BENCHMARKS.md.
"""
import contextlib
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import bench_options
from harness import cli

SCENARIO_NAMES = ["latency", "throughput", "burst", "idle", "poll_overhead", "fanout", "unique", "status_load",
                  "cluster"]


def parse_args(argv):
    """The scenarios named on the command line; the options go to the
    environment, where bench_lib, bench_status and bench_cluster read them."""
    ap = cli.parser("scripts/bench", __doc__, [], epilog=(
        "Every option's default is its environment variable's value. Also: NGINX_BIN, NGINX_MODULES_DIR. "
        "`scripts/bench compare --help`: the comparison with lua-resty-worker-events and lua-resty-events."))
    ap.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                    help="%s (default: all but the last two)" % " ".join(SCENARIO_NAMES))
    for title, knobs in (("bench", bench_options.BENCH), ("status_load", bench_options.STATUS),
                         ("cluster", bench_options.CLUSTER)):
        cli.add_knobs(ap, knobs, title)
    ns = ap.parse_args(argv)
    for knobs in (bench_options.BENCH, bench_options.STATUS, bench_options.CLUSTER):
        cli.values(knobs, ns)
    return ns.scenarios


if __name__ == "__main__":
    WANTED = parse_args(sys.argv[1:])  # before bench_lib reads the environment

from bench_lib import (
    ALL_SCENARIOS, API_LABELS, APIS, BENCH_API, ENV, IDLE_SECONDS, IMPL_EXTRA_MODULES, IMPL_HTTP_CONFIG,
    IMPL_LUA_PATH, IMPL_NAME, IMPL_NO_DEFAULT_MODULE, IMPL_SHM, MAX_ZONE, MB, PAYLOAD, PORT, WORKERS, WRK_SECONDS, BenchError, Nginx, api, api_label, emit, human_rate, impl_kv, kv,
    median, pct, per_worker, set_api, start_poster, wait_scenario, worker_state, wrk,
    zone_size_str)
from harness import MODULE_SO, NGINX_BIN, ROOT, note, sha256, source_tree
from harness.proc import proc_cpu


# ---------------------------------------------------------------------------
# scenarios
# ---------------------------------------------------------------------------
ROWS = []  # (scenario, workers, params, result, api label) for the markdown tables


def add_row(row):
    """row: (scenario, workers, params, result) of the API being measured."""
    ROWS.append(tuple(row) + (api_label(),))


def run_latency(scenario, workers, interval, extra=(), count=200, period=0.02):
    name = "%s-w%d-i%s" % (scenario, workers, interval)
    note("%s: %d workers, interval=%s, %d posts every %g s" % (scenario, workers, interval, count, period))
    with Nginx(name, workers, "8m", interval) as ng:
        poster = start_poster(ng, "scenario=latency&count=%d&period=%g" % (count, period))
        receivers = [w for w in range(workers) if w != poster]
        res, timed_out = wait_scenario(ng, receivers, timeout=count * period * 3 + 30, stall=10)
        errors, alerts = ng.error_lines()
    samples, received, lost, bad = [], {}, {}, 0
    for w in receivers:
        st, _ = worker_state(res, w)
        vals = [float(x) for x in res.get("lat:%d" % w, "").split(",") if x]
        received[w] = len(vals)
        lost[w] = st.get("lost", 0)
        bad += int(st.get("bad", 0))
        samples += [v for v in vals if v >= 0]
    samples.sort()
    p50, p99, mx = pct(samples, 50), pct(samples, 99), (samples[-1] if samples else float("nan"))
    row = [("scenario", scenario)] + list(extra) + [
        *impl_kv(), ("workers", workers), ("interval", interval), ("sent", count),
        ("p50_us", "%.1f" % p50), ("p99_us", "%.1f" % p99), ("max_us", "%.1f" % mx),
        ("received", per_worker(received)), ("lost_reported", per_worker(lost)),
        ("bad", bad), ("errors", errors)]
    if alerts:
        row.append(("alerts", alerts))
    if timed_out:
        row.append(("timeout", 1))
    emit(row)
    params = "interval=%s, %d posts / %g ms" % (interval, count, period * 1000)
    if extra:
        params = "latency, " + params
    result = "p50 %.1f µs, p99 %.1f µs, max %.1f µs; received %s of %d" % (
        p50, p99, mx, "/".join(str(received[w]) for w in sorted(received)), count)
    if timed_out:
        result += " (TIMEOUT)"
    add_row((scenario, workers, params, result))
    return dict(p50=p50, p99=p99, received=received, lost=lost, bad=bad, errors=errors, timed_out=timed_out)


def throughput_zone(count, size):
    # record = 32 B header + names + encoded {n=, z=, p=<size B>} + padding:
    # size + ~60 B; leave headroom for the zone's own bookkeeping. The log is
    # five sixths of the zone (a sixth is the claims table, README `unique`).
    need = int(count * (size + 128) * 1.1 * 6 / 5) + MB
    if need > MAX_ZONE:
        return MAX_ZONE, True
    return need, False


def fill_log(ng, workers, zone):
    """Wraps the zone's log before a measurement: posts `zone` bytes of 4 KB
    events ("fill", which the receivers only count), then "fillend", and
    waits until every worker has had "fillend", so that every measured post
    evicts (as in a log that has run for a while)."""
    body = ng.get("/bench/fill?bytes=%d" % zone)
    m = re.search(r"filled=(\d+)", body)
    if not m:
        raise BenchError("unexpected /bench/fill answer: %r" % body)
    n, deadline = int(m.group(1)), time.time() + 60
    while True:
        res = ng.results()
        if all(("filled:%d" % w) in res for w in range(workers)):
            return n
        if time.time() > deadline:
            raise BenchError("the fill of %d events did not reach every worker in 60 s" % n)
        time.sleep(0.1)


def run_throughput(scenario, workers, count, size, zone=None, extra=(), load=None, tag="", interval=1, fill=False):
    """load: None, or a function(ng) -> context manager that runs next to the
    poster (status_load's probe); its .kv(t0_us, t_last_us, poster, count) adds keys to the line.
    fill: wrap the log first (fill_log), so that every measured post evicts."""
    loss_expected = False
    if zone is None:
        zone, loss_expected = throughput_zone(count, size)
    zstr = zone_size_str(zone)
    name = "%s-w%d-k%d-s%d%s" % (scenario, workers, count, size, tag)
    note("%s: %d workers, K=%d, %d B payloads, zone %s%s" % (
        scenario, workers, count, size, zstr, " (too small for K*size: loss expected)" if loss_expected else ""))
    t_start = time.time()
    with Nginx(name, workers, zstr, interval) as ng:
        filled = fill_log(ng, workers, zone) if fill else 0
        with load(ng) if load else contextlib.nullcontext() as side:
            poster = start_poster(ng, "scenario=throughput&count=%d&size=%d&payload=%s" % (count, size, PAYLOAD))
            receivers = [w for w in range(workers) if w != poster]
            res, timed_out = wait_scenario(ng, list(range(workers)), timeout=240, stall=10)
        errors, alerts = ng.error_lines()
    wall = time.time() - t_start
    if "poster" not in res:
        raise BenchError("%s: the poster never finished" % name)
    p = kv(res["poster"])
    t0, t1 = p["t0"], p["t1"]
    post_rate = count / ((t1 - t0) / 1e6) if t1 > t0 else float("inf")
    seen, rate, rate_ff, lost, lost_rep, reports, drain, incomplete = {}, {}, {}, {}, {}, {}, {}, []
    pst, pcomplete = worker_state(res, poster)
    if not pcomplete:
        incomplete.append(poster)
    ooo = bad = 0
    for w in receivers:
        st, complete = worker_state(res, w)
        if not complete:
            incomplete.append(w)
        n = int(st["seen"])
        seen[w] = n
        lost[w] = count - n
        lost_rep[w] = int(st["lost"])
        reports[w] = int(st.get("lost_reports", 0))
        ooo += int(st.get("ooo", 0))
        bad += int(st.get("bad", 0))
        if n > 0 and st["last"] > t0:
            rate[w] = n / ((st["last"] - t0) / 1e6)
            rate_ff[w] = (n - 1) / ((st["last"] - st["first"]) / 1e6) if st["last"] > st["first"] else 0
            drain[w] = (st["last"] - t1) / 1000.0
        else:
            rate[w] = rate_ff[w] = drain[w] = 0
    row = [("scenario", scenario)] + list(extra) + [
        *impl_kv(), ("workers", workers), ("count", count), ("size", size), ("payload", PAYLOAD),
        ("zone", zstr), ("filled", filled),
        ("loss_expected", 1 if loss_expected else 0),
        ("post_fails", int(p["fails"])), ("posts_per_s", "%.0f" % post_rate),
        ("post_ms", "%.1f" % ((t1 - t0) / 1000)),
        ("delivered_per_s", per_worker(rate, "%.0f")),
        ("delivered_first_last_per_s", per_worker(rate_ff, "%.0f")),
        ("drain_after_post_ms", per_worker(drain, "%.1f")),
        ("received", per_worker(seen)), ("lost", per_worker(lost)),
        ("lost_reported", per_worker(lost_rep))] + (
        # resty.events has no `lost` event to count, only the consumer's counter
        [("lost_events", per_worker(reports))] if api() == "worker.events" else []) + [
        ("poster_wid", poster), ("poster_received", int(pst["seen"])),
        ("poster_lost_reported", int(pst["lost"])),
        ("ooo", ooo), ("bad", bad), ("errors", errors)]
    if alerts:
        row.append(("alerts", alerts))
    if timed_out:
        row.append(("timeout", "1(workers:%s)" % ",".join(map(str, incomplete))))
    side_kv = []
    if side is not None:  # the events' window: first post to the last receive
        side_kv = side.kv(t0, max([t1] + [worker_state(res, w)[0].get("last", 0) for w in receivers]), poster, count)
        row += side_kv
    row.append(("wall_s", "%.1f" % wall))
    emit(row)
    return dict(post_rate=post_rate, rate=rate, seen=seen, lost=lost, lost_rep=lost_rep, errors=errors,
                alerts=alerts, zone=zstr, loss_expected=loss_expected, timed_out=timed_out, ooo=ooo, bad=bad,
                fails=int(p["fails"]), side=dict(side_kv))


def rate_summary(rate):
    vals = list(rate.values())
    if not vals:
        return "-"
    if len(vals) == 1:
        return human_rate(vals[0]) + "/s"
    return "min %s/s, max %s/s" % (human_rate(min(vals)), human_rate(max(vals)))


def scenario_throughput(scenario="throughput", workers=None, cases=None, extra=()):
    workers = workers or WORKERS
    cases = cases or [(k, s) for s in (64, 1024, 65536) for k in (10000, 100000)]
    for count, size in cases:
        r = run_throughput(scenario, workers, count, size, extra=extra)
        params = "K=%d, %s %s payload, zone %s%s" % (
            count, "%d B" % size if size < 1024 else "%d KB" % (size // 1024), PAYLOAD, r["zone"],
            " (too small: loss expected)" if r["loss_expected"] else "")
        if extra:
            params = "throughput, " + params
        result = "post %s/s; delivered %s; lost %d (reported %d); errors %d" % (
            human_rate(r["post_rate"]), rate_summary(r["rate"]), sum(r["lost"].values()),
            sum(r["lost_rep"].values()), r["errors"])
        if r["fails"]:
            result += "; post failures %d" % r["fails"]
        if r["ooo"] or r["bad"]:
            result += "; out-of-order %d, bad payloads %d" % (r["ooo"], r["bad"])
        if r["alerts"]:
            result += "; alert/crit lines %d" % r["alerts"]
        if r["timed_out"]:
            result += " (TIMEOUT)"
        add_row((scenario, workers, params, result))


def latency_floor(count=200, period=0.02):
    """Reference, not a measurement of any implementation: how long this
    machine takes to wake an idle process, i.e. the floor under `latency`.
    A child blocks on a pipe; the parent writes a CLOCK_MONOTONIC stamp every
    `period` s. (Python adds a few µs on both sides.)"""
    note("latency floor: OS pipe wake-up between two idle processes, %d × %g s" % (count, period))
    r, w = os.pipe()
    rr, rw = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(w)
            out = []
            for _ in range(count):
                d = os.read(r, 8)
                out.append((time.monotonic_ns() - int.from_bytes(d, "little")) / 1000.0)
            os.write(rw, (",".join("%.1f" % x for x in out)).encode())
        finally:
            os._exit(0)
    os.close(r)
    os.close(rw)
    for _ in range(count):
        os.write(w, time.monotonic_ns().to_bytes(8, "little"))
        time.sleep(period)
    os.close(w)
    data = b""
    while True:
        chunk = os.read(rr, 65536)
        if not chunk:
            break
        data += chunk
    os.close(rr)
    os.waitpid(pid, 0)
    samples = sorted(float(x) for x in data.decode().split(",") if x)
    p50, p99, mx = pct(samples, 50), pct(samples, 99), samples[-1]
    emit([("scenario", "latency_floor"), ("impl", "os-pipe"), ("sent", count),
          ("p50_us", "%.1f" % p50), ("p99_us", "%.1f" % p99), ("max_us", "%.1f" % mx),
          ("received", len(samples))])
    add_row(("latency_floor", 2, "reference (no nginx): pipe wake-up of an idle process, %d posts / %g ms"
                 % (count, period * 1000), "p50 %.1f µs, p99 %.1f µs, max %.1f µs" % (p50, p99, mx)))
    return dict(p50=p50, p99=p99)


def scenario_latency():
    latency_floor()
    # resty.events has no interval option: its safety-net loop runs every 1 s
    for interval in (1, 0.001) if api() == "worker.events" else (1,):
        run_latency("latency", WORKERS, interval)


def scenario_burst():
    count, size = 20000, 1024
    r = run_throughput("burst", WORKERS, count, size, zone=MB)
    match = all(r["lost_rep"][w] == r["lost"][w] for w in r["lost"])
    emit([("scenario", "burst_check"), *impl_kv(), ("workers", WORKERS),
          ("reported_equals_posted_minus_seen", "yes" if match else "no"),
          ("posted_minus_seen", per_worker(r["lost"])), ("reported", per_worker(r["lost_rep"]))])
    result = "posted − seen %s; reported lost %s → %s; errors %d" % (
        "/".join(str(r["lost"][w]) for w in sorted(r["lost"])),
        "/".join(str(r["lost_rep"][w]) for w in sorted(r["lost_rep"])),
        "match" if match else "MISMATCH", r["errors"])
    if r["alerts"]:
        result += "; alert/crit lines %d" % r["alerts"]
    if r["timed_out"]:
        result += " (TIMEOUT)"
    add_row(("burst", WORKERS, "K=%d, 1 KB %s payload, zone 1m" % (count, PAYLOAD), result))



def scenario_idle():
    secs = IDLE_SECONDS
    note("idle: %d workers, interval=1, %g s without events" % (WORKERS, secs))
    with Nginx("idle-w%d" % WORKERS, WORKERS, "8m", 1) as ng:
        time.sleep(2)  # settle; no HTTP requests from here on
        before = {w: proc_cpu(p) for w, p in ng.wpids.items()}
        time.sleep(secs)
        after = {w: proc_cpu(p) for w, p in ng.wpids.items()}
        errors, alerts = ng.error_lines()
    cpu = {w: after[w][0] - before[w][0] for w in before}
    oncpu = {w: (after[w][1] - before[w][1]) / 1e6 for w in before}
    wakeups = {w: (after[w][2] - before[w][2]) / secs for w in before}
    emit([("scenario", "idle"), *impl_kv(), ("workers", WORKERS), ("interval", 1), ("seconds", secs),
          ("cpu_ms", per_worker(cpu, "%.0f")), ("oncpu_ms", per_worker(oncpu, "%.3f")),
          ("wakeups_per_s", per_worker(wakeups, "%.1f")), ("errors", errors)])
    add_row(("idle", WORKERS, "interval=1, %g s" % secs,
                 "CPU (utime+stime) %s ms; on-CPU %s ms; wakeups %s /s per worker" % (
                     "/".join("%.0f" % cpu[w] for w in sorted(cpu)),
                     "/".join("%.2f" % oncpu[w] for w in sorted(oncpu)),
                     "/".join("%.1f" % wakeups[w] for w in sorted(wakeups)))))


# poll_overhead: 4 runs of each location, ceil(WRK_SECONDS/2) s each (wrk takes
# whole seconds; ~WRK_SECONDS x 2 per location in all), interleaved ABBAABBA so that slow drifts and the host's
# multi-second noise bursts hit both sides alike; req/s are the medians.
ORDER = ("bare", "poll", "poll", "bare", "bare", "poll", "poll", "bare")


def scenario_poll_overhead():
    if not shutil.which("wrk"):
        emit([("scenario", "poll_overhead"), *impl_kv(), ("skipped", "wrk-not-installed")])
        add_row(("poll_overhead", WORKERS, "-", "skipped: wrk not installed"))
        return
    secs = 2 * max(1, math.ceil(WRK_SECONDS / 2))
    note("poll_overhead: %d workers, wrk -c 32 -t 2, %g s per run, order %s" % (WORKERS, secs / 2, "/".join(ORDER)))
    with Nginx("poll-overhead-w%d" % WORKERS, WORKERS, "8m", 1) as ng:
        wrk("/bench/bare", 1)  # warm-up (discarded)
        wrk("/bench/poll", 1)
        ng.get("/bench/pollcost?n=100000")
        runs = {"bare": [], "poll": []}
        cpu_ns = {"bare": 0, "poll": 0}
        nreq = {"bare": 0, "poll": 0}
        bad = 0
        for which in ORDER:
            before = sum(proc_cpu(p)[1] for p in ng.wpids.values())
            rps, b, n = wrk("/bench/" + which, secs / 2)
            cpu_ns[which] += sum(proc_cpu(p)[1] for p in ng.wpids.values()) - before
            nreq[which] += n
            runs[which].append(rps)
            bad += b
        # in-process cost of one poll() of the API with nothing pending (JIT-warm loop)
        body = ng.get("/bench/pollcost?n=1000000")
        m = re.search(r"ns_per_call=([\d.]+)", body)
        call_ns = float(m.group(1)) if m else float("nan")
        m = re.search(r"ns_per_call_nojit=([\d.]+)", body)
        call_ns_i = float(m.group(1)) if m else float("nan")
        errors, alerts = ng.error_lines()
    bare = median(runs["bare"])
    poll = median(runs["poll"])
    diff = (poll - bare) / bare * 100.0
    # nginx worker on-CPU time per request (schedstat): steadier than req/s on a shared host
    cpr = {k: (cpu_ns[k] / nreq[k] / 1000.0 if nreq[k] and cpu_ns[k] > 0 else float("nan")) for k in cpu_ns}
    cpu_diff = (cpr["poll"] - cpr["bare"]) / cpr["bare"] * 100.0
    call_pct = call_ns / 1000.0 / cpr["bare"] * 100.0
    call_pct_i = call_ns_i / 1000.0 / cpr["bare"] * 100.0
    emit([("scenario", "poll_overhead"), *impl_kv(), ("workers", WORKERS), ("seconds_per_run", secs / 2),
          ("bare_rps", "%.0f" % bare), ("poll_rps", "%.0f" % poll), ("diff_pct", "%+.2f" % diff),
          ("bare_runs", ",".join("%.0f" % x for x in runs["bare"])),
          ("poll_runs", ",".join("%.0f" % x for x in runs["poll"])),
          ("bare_cpu_us_per_req", "%.3f" % cpr["bare"]), ("poll_cpu_us_per_req", "%.3f" % cpr["poll"]),
          ("cpu_per_req_diff_pct", "%+.2f" % cpu_diff),
          ("poll_call_ns", "%.1f" % call_ns), ("poll_call_ns_nojit", "%.1f" % call_ns_i),
          ("poll_call_pct_of_bare_req", "%.2f-%.2f" % (call_pct, call_pct_i)),
          ("http_errors", bad), ("errors", errors)])
    add_row(("poll_overhead", WORKERS, "wrk -c 32 -t 2, 4 × %g s each (ABBAABBA, medians)" % (secs / 2),
                 "bare %.0f req/s, poll %.0f req/s: %+.2f %%; worker CPU/request %.2f vs %.2f µs: %+.2f %%; "
                 "one idle poll() %.0f–%.0f ns (compiled loop / loop with JIT off) = %.2f–%.2f %% of a bare request"
                 % (bare, poll, diff, cpr["bare"], cpr["poll"], cpu_diff, call_ns, call_ns_i, call_pct, call_pct_i)))


def scenario_fanout():
    for w in (4, 8):
        run_latency("fanout", w, 1, extra=[("test", "latency")])
        scenario_throughput("fanout", workers=w, cases=[(100000, 64)], extra=[("test", "throughput")])


def unique_zone(count, size):
    """The throughput zone for `count` events, or larger if its claims table
    (10 922 live keys per MB of zone, README `unique`) holds fewer than twice
    `count` keys."""
    ring, _ = throughput_zone(count, size)
    return min(MAX_ZONE, max(ring, int(2 * count * MB / 10922)))


def run_unique(workers, count, size):
    """`count` events, each to its own unique key ("k1", "k2", ...): each must run
    exactly once in one of the workers. Rate: from the first post until the last
    key ran anywhere."""
    zstr = zone_size_str(unique_zone(count, size))
    name = "unique-w%d-k%d-s%d" % (workers, count, size)
    note("unique: %d workers, K=%d distinct keys, %d B table payloads, zone %s" % (workers, count, size, zstr))
    t_start = time.time()
    with Nginx(name, workers, zstr, 1) as ng:
        poster = start_poster(ng, "scenario=unique&count=%d&size=%d" % (count, size))
        res, timed_out = wait_scenario(ng, list(range(workers)), timeout=240, stall=10)
        errors, alerts = ng.error_lines()
    wall = time.time() - t_start
    if "poster" not in res:
        raise BenchError("%s: the poster never finished" % name)
    p = kv(res["poster"])
    t0, t1 = p["t0"], p["t1"]
    post_rate = count / ((t1 - t0) / 1e6) if t1 > t0 else float("inf")
    handled, lost_rep, runs = {}, {}, [0] * count
    last, bad, malformed = 0, 0, 0
    for w in range(workers):
        st, _ = worker_state(res, w)
        handled[w] = int(st["seen"])
        lost_rep[w] = int(st["lost"])
        bad += int(st.get("bad", 0))
        if handled[w]:
            last = max(last, st["last"])
        keys = res.get("keys:%d" % w, "")
        if keys and len(keys) != count:
            malformed += 1
            continue
        for i, c in enumerate(keys):
            runs[i] += int(c)
    once = runs.count(1)
    missing = runs.count(0)
    more = count - once - missing
    rate = sum(handled.values()) / ((last - t0) / 1e6) if last > t0 else 0
    row = [("scenario", "unique"), *impl_kv(), ("workers", workers), ("count", count), ("size", size),
           ("zone", zstr), ("post_fails", int(p["fails"])), ("posts_per_s", "%.0f" % post_rate),
           ("post_ms", "%.1f" % ((t1 - t0) / 1000)), ("handled_per_s", "%.0f" % rate),
           ("handled", per_worker(handled)), ("keys_once", once), ("keys_missing", missing),
           ("keys_more_than_once", more), ("claims_capacity", int(p.get("claims_capacity", -1))),
           ("claims_refused", int(p.get("claims_refused", -1))), ("lost_reported", per_worker(lost_rep)),
           ("poster_wid", poster),
           ("bad", bad), ("errors", errors)]
    if malformed:
        row.append(("malformed_key_maps", malformed))
    if alerts:
        row.append(("alerts", alerts))
    if timed_out:
        row.append(("timeout", 1))
    row.append(("wall_s", "%.1f" % wall))
    emit(row)
    result = "post %s/s; handled %s/s (%s per worker); each key ran exactly once: %s (%d of %d" % (
        human_rate(post_rate), human_rate(rate), "/".join(str(handled[w]) for w in sorted(handled)),
        "yes" if once == count and not malformed else "NO", once, count)
    if missing or more:
        result += "; %d never, %d more than once" % (missing, more)
    result += "); errors %d" % errors
    if p["fails"]:
        result += "; post failures %d" % p["fails"]
    if alerts:
        result += "; alert/crit lines %d" % alerts
    if timed_out:
        result += " (TIMEOUT)"
    add_row(("unique", workers, "K=%d distinct keys, %d B table payload, zone %s" % (count, size, zstr), result))


def scenario_unique():
    for count in (10000, 100000):
        run_unique(WORKERS, count, 64)


def scenario_status_load():
    import bench_status  # scripts/bench_status.py: the scraper and the summary
    bench_status.run(run_throughput, add_row, lambda k, size: throughput_zone(k, size)[0])


def scenario_cluster():
    import bench_cluster  # scripts/bench_cluster.py: redis-server, nodes A and B, the summary
    bench_cluster.run(add_row, lambda k, size: throughput_zone(k, size)[0])


SCENARIOS = {
    "latency": scenario_latency,
    "throughput": scenario_throughput,
    "burst": scenario_burst,
    "idle": scenario_idle,
    "poll_overhead": scenario_poll_overhead,
    "fanout": scenario_fanout,
    "unique": scenario_unique,
    "status_load": scenario_status_load,
    "cluster": scenario_cluster,
}


# rows of reference measurements (no implementation): their impl column
REFERENCE_IMPLS = {"latency_floor": "os-pipe", "cluster_redis_floor": "redis-xread", "cluster_redis_xadd": "redis-benchmark"}


def print_table():
    print()
    if len(APIS) == 1:
        print("| scenario | impl | api | workers | parameters | result |")
        print("| --- | --- | --- | --- | --- | --- |")
        for scenario, workers, params, result, label in ROWS:
            impl, label = (REFERENCE_IMPLS[scenario], "-") if scenario in REFERENCE_IMPLS else (IMPL_NAME, label)
            print("| %s | %s | %s | %d | %s | %s |" % (scenario, impl, label, workers, params, result))
        return
    # BENCH_API=both: one row per measurement, one column per API
    labels = [API_LABELS[a] for a in APIS]
    cells, order = {}, []
    for scenario, workers, params, result, label in ROWS:
        key = (scenario, workers, params)
        if key not in cells:
            cells[key] = {}
            order.append(key)
        cells[key][label] = result
    print("| scenario | workers | parameters | %s |" % " | ".join("%s (%s)" % (lb, IMPL_NAME) for lb in labels))
    print("| --- | --- | --- |%s" % (" --- |" * len(labels)))
    for key in order:
        scenario, workers, params = key
        if scenario == "latency_floor":
            scenario = "latency_floor (os-pipe, measured in each pass)"
        print("| %s | %d | %s | %s |" % (scenario, workers, params,
                                         " | ".join(cells[key].get(lb, "—") for lb in labels)))


def print_header(wanted):
    """`# ` lines: what was measured, so a pasted result says which build it was."""
    nginx_v = subprocess.run([NGINX_BIN, "-v"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True).stdout.strip()
    git = source_tree()
    print("# bench: scenarios=%s impl=%s api=%s workers=%d payload=%s port=%d (%s)" % (
        ",".join(wanted), IMPL_NAME, ",".join(API_LABELS[a] for a in APIS), WORKERS, PAYLOAD, PORT, nginx_v))
    if not IMPL_NO_DEFAULT_MODULE:
        digest = sha256(MODULE_SO)[:12]
        print("# module: %s sha256:%s built %s; source tree %s" % (
            os.path.relpath(MODULE_SO, ROOT), digest,
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(os.path.getmtime(MODULE_SO))), git))
    if IMPL_LUA_PATH or IMPL_EXTRA_MODULES or "IMPL_HTTP_CONFIG" in ENV:
        print("# impl: lua_path=%s extra_modules=%s http_config=%r shm=%s" % (
            IMPL_LUA_PATH or "-", ",".join(IMPL_EXTRA_MODULES) or "-", IMPL_HTTP_CONFIG, IMPL_SHM))
    sys.stdout.flush()


def on_term(signum, frame):
    raise SystemExit(128 + signum)


def main(argv):
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    wanted = argv or ALL_SCENARIOS
    for s in wanted:
        if s not in SCENARIOS:
            print("unknown scenario %r; known: %s" % (s, " ".join(SCENARIOS)), file=sys.stderr)
            return 2
    if any(a not in API_LABELS for a in APIS):
        print("unknown BENCH_API %r; known: %s both" % (BENCH_API, " ".join(API_LABELS)), file=sys.stderr)
        return 2
    if not IMPL_NO_DEFAULT_MODULE and not os.path.exists(MODULE_SO):
        print("missing %s (scripts/bench builds it)" % MODULE_SO, file=sys.stderr)
        return 2
    started = time.time()
    status = 0
    print_header(wanted)
    try:
        # BENCH_API=both: each scenario with one API, then the other, so both
        # sides of a comparison run minutes apart, not a whole run apart
        for s in wanted:
            for a in APIS:
                set_api(a)
                try:
                    SCENARIOS[s]()
                except BenchError as e:
                    status = 1
                    print("scenario=%s impl=%s api=%s failed=1" % (s, IMPL_NAME, api_label()), flush=True)
                    note("%s (%s) failed: %s" % (s, api_label(), e))
                    add_row((s, WORKERS, "-", "FAILED: %s" % str(e).splitlines()[0]))
    except (KeyboardInterrupt, SystemExit) as e:
        status = 130 if isinstance(e, KeyboardInterrupt) else (e.code or 1)
        note("interrupted: stopping nginx; results so far follow")
    finally:
        if Nginx.current:
            Nginx.current.stop()
    print_table()
    print()
    print("total run time: %.0f s" % (time.time() - started))
    return status


if __name__ == "__main__":
    try:
        sys.exit(main(WANTED))
    except KeyboardInterrupt:
        if Nginx.current:
            Nginx.current.stop()
        sys.exit(130)
