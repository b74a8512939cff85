#!/usr/bin/env python3
"""`scripts/bench compare`: this module and the libraries it replaces (the
"anchors": lua-resty-worker-events 2.0.1 at interval 0.001 s and at its
default 1 s, lua-resty-events 0.3.1 with its broker and C helper) through the
same scenarios, in the same run, implementations alternating within every
round (the order rotated by one per round), at each worker count.

Scenarios (one fresh nginx per measurement, scripts/bench_lib.py):
  floor       the pipe wake-up between two idle processes (no nginx), once a round
  latency     one worker posts {t=, n=} every --lat-period s, --lat-count times
              (bench.py run_latency): p50, p99 over all receivers
  throughput  --count x 64 B tables back to back (bench.py run_throughput):
              delivered/s of the slowest receiver, lost, post failures
  throughput_full  (only when named) the same after the log has wrapped
              (bench.py fill_log: every measured post evicts, as in a log
              that has run for a while)
  burst       --burst-count x 1 KB into a 1 MB zone: lost and reported lost
  contend     every worker posts --count x 64 B strings at the same instant:
              time from the first post until every worker has all W x count,
              aggregate deliveries/s
  idle        --idle-seconds without events: on-CPU ms and wake-ups/s per worker
Worker counts: --workers (2,4: the 4-worker rows are the fan-out). In
throughput and contend the workers' on-CPU time (/proc/<pid>/task/*/schedstat,
from just before the first post until every worker has flushed its counters)
gives the CPU per event: posting worker's CPU / events posted, receiving
workers' CPU / events they received (contend: all workers' CPU / all
deliveries). The module also runs through resty.events (latency, throughput,
contend) for the target on that API. lua-resty-worker-events gets a
lua_shared_dict 3x the module's zone (its JSON entries need it), except in
burst (1 MB for every implementation).

Prints the bench's key=value line per measurement, then per worker count a
table of medians (range) per implementation, the same-round ratios (median,
range; > 1 = the module is better) and the issue-24 targets as PASS/MISS lines.
Anchors come from scripts/bench-anchors (--anchors DIR, env BENCH_ANCHORS_DIR,
default ../shared/anchors); a missing anchor is skipped with a line saying so.
Port/prefix: BENCH_PORT, BENCH_PREFIX as scripts/bench. See BENCHMARKS.md.
"""
import argparse
import os
import subprocess
import sys
import time

import bench
import bench_lib as L
from bench_lib import (MB, BenchError, Nginx, emit, human_rate, kv, median, per_worker, wait_scenario, worker_state,
                       zone_size_str)
from harness import ROOT, note
from harness.proc import proc_cpu

ENV = os.environ
ALL = ["latency", "throughput", "burst", "contend", "idle"]
NAMED = ["throughput_full"]  # run only when --scenarios names them
TARGETS_DOC = "issue 24, same-run ratios"


# ---------------------------------------------------------------------------
# implementations
# ---------------------------------------------------------------------------
def implementations(anchors, baseline=""):
    """[(key, label, api, interval, set_impl kwargs, scenarios)]; anchors: name -> [dir, helper .so];
    baseline: another build of this module (a .so), measured like an anchor."""
    mod = dict(name="ngx-worker-events")
    out = [("module", "module", "worker.events", 1, mod, ALL + NAMED),
           ("module-ev", "module (resty.events)", "events", 1, mod, ["latency", "throughput", "contend"])]
    if baseline:
        out.append(("baseline", "baseline (%s)" % os.path.basename(baseline), "worker.events", 1,
                    dict(name="baseline", extra_modules=[os.path.abspath(baseline)], no_default_module=True),
                    ["latency", "throughput", "contend"] + NAMED))
    lrwe = anchors.get("lua-resty-worker-events")
    if lrwe:
        # its JSON entries (~230 B a 64 B event with key and node) overfill the module's
        # zone size: then add() retries (shm_retries 999) and evicts, tens of s of CPU
        kw = dict(lua_path=lrwe[0], http_config="lua_shared_dict ev %SIZE%;", no_default_module=True)
        out.append(("lrwe-1ms", "lua-resty-worker-events 2.0.1 interval=0.001", "worker.events", 0.001,
                    dict(kw, name="lrwe-1ms"), ALL + NAMED))
        out.append(("lrwe-1s", "lua-resty-worker-events 2.0.1 interval=1", "worker.events", 1,
                    dict(kw, name="lrwe-1s"), ALL))
    lre = anchors.get("lua-resty-events")
    if lre:
        out.append(("lre", "lua-resty-events 0.3.1", "events", 1,
                    dict(name="lre", lua_path=os.path.join(lre[0], "lualib"), extra_modules=[lre[1]],
                         http_config="", shm="", no_default_module=True), ALL))
    return out


def find_anchors(directory):
    cmd = [os.path.join(ROOT, "scripts", "bench-anchors")] + ([directory] if directory else [])
    r = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    found = {}
    for line in r.stdout.splitlines():
        print("# " + line, flush=True)
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "anchor" and parts[2] != "skipped:":
            found[parts[1]] = parts[2:]
    return found


# ---------------------------------------------------------------------------
# measurements (each returns a dict of numbers)
# ---------------------------------------------------------------------------
class CpuProbe:
    """On-CPU ns of every worker between __enter__ and __exit__ (run_throughput's `load`)."""

    def __init__(self, ng):
        self.ng, self.delta = ng, {}

    @staticmethod
    def _ns(pid):
        ms, ns, _ = proc_cpu(pid)
        return ns if ns >= 0 else ms * 1e6

    def __enter__(self):
        self.before = {w: self._ns(p) for w, p in self.ng.wpids.items()}
        return self

    def __exit__(self, *exc):
        self.delta = {w: self._ns(p) - self.before[w] for w, p in self.ng.wpids.items()}
        return False

    def kv(self, *_):
        return [("worker_oncpu_ms", per_worker({w: d / 1e6 for w, d in self.delta.items()}, "%.1f"))]


def probe_factory():
    probes = []

    def make(ng):
        probes.append(CpuProbe(ng))
        return probes[-1]
    return make, probes


def m_latency(a, w, interval):
    r = bench.run_latency("latency", w, interval, count=a.lat_count, period=a.lat_period)
    return dict(p50=r["p50"], p99=r["p99"], lost=a.lat_count * len(r["received"]) - sum(r["received"].values()))


def m_throughput(a, w, interval, scenario="throughput", fill=False):
    make, probes = probe_factory()
    r = bench.run_throughput(scenario, w, a.count, 64, load=make, interval=interval, fill=fill)
    cpu = probes[-1].delta
    poster = [x for x in cpu if x not in r["seen"]]
    got = sum(r["seen"].values())
    return dict(rate=min(r["rate"].values() or [0]), lost=sum(r["lost"].values()), fails=r["fails"],
                cpu_post=sum(cpu[x] for x in poster) / a.count,
                cpu_recv=sum(cpu[x] for x in r["seen"]) / got if got else float("nan"))


def m_burst(a, w, interval):
    r = bench.run_throughput("burst", w, a.burst_count, 1024, zone=MB, interval=interval)
    return dict(lost=sum(r["lost"].values()), reported=sum(r["lost_rep"].values()))


def m_contend(a, w, interval):
    K, size = a.count, 64
    zstr = zone_size_str(bench.throughput_zone(w * K, size)[0])
    note("contend: %d workers each post %d x %d B strings at once, zone %s" % (w, K, size, zstr))
    L.set_harness_opts("contend = true,")
    try:
        with Nginx("contend-w%d-k%d" % (w, K), w, zstr, interval) as ng:
            with CpuProbe(ng) as probe:
                ng.get("/bench/start?scenario=contend&count=%d&size=%d" % (K, size))
                res, timed_out = wait_scenario(ng, list(range(w)), timeout=300, stall=10)
            errors, alerts = ng.error_lines()
    finally:
        L.set_harness_opts("")
    posts = {x: kv(res["cpost:%d" % x]) for x in range(w) if ("cpost:%d" % x) in res}
    if not posts:
        raise BenchError("contend: no worker posted")
    t0 = min(p["t0"] for p in posts.values())
    states = {x: worker_state(res, x)[0] for x in range(w)}
    seen = {x: int(st["seen"]) for x, st in states.items()}
    last = max([st["last"] for st in states.values()] + [t0])
    total, fails = sum(seen.values()), int(sum(p["fails"] for p in posts.values()))
    secs = (last - t0) / 1e6
    rate = total / secs if secs > 0 else 0.0
    cpu = sum(probe.delta.values())
    row = [("scenario", "contend"), *L.impl_kv(), ("workers", w), ("count_per_worker", K), ("size", size),
           ("zone", zstr), ("posters", len(posts)), ("post_fails", fails), ("all_have_all_s", "%.3f" % secs),
           ("deliveries_per_s", "%.0f" % rate), ("received", per_worker(seen)),
           ("lost", w * w * K - total), ("worker_oncpu_ms", per_worker({x: d / 1e6 for x, d in probe.delta.items()},
                                                                      "%.1f")),
           ("cpu_ns_per_delivery", "%.0f" % (cpu / total if total else float("nan"))), ("errors", errors)]
    if alerts:
        row.append(("alerts", alerts))
    if timed_out:
        row.append(("timeout", 1))
    emit(row)
    return dict(secs=secs, rate=rate, lost=w * w * K - total, fails=fails,
                cpu_all=cpu / total if total else float("nan"))


def m_idle(a, w, interval):
    note("idle: %d workers, interval=%s, %g s without events" % (w, interval, a.idle_seconds))
    with Nginx("idle-w%d-i%s" % (w, interval), w, "8m", interval) as ng:
        time.sleep(2)
        before = {x: proc_cpu(p) for x, p in ng.wpids.items()}
        time.sleep(a.idle_seconds)
        after = {x: proc_cpu(p) for x, p in ng.wpids.items()}
    oncpu = sum(after[x][1] - before[x][1] for x in before) / 1e6 / w
    wake = sum(after[x][2] - before[x][2] for x in before) / a.idle_seconds / w
    emit([("scenario", "idle"), *L.impl_kv(), ("workers", w), ("interval", interval),
          ("seconds", a.idle_seconds), ("oncpu_ms_per_worker", "%.2f" % oncpu), ("wakeups_per_s", "%.1f" % wake)])
    return dict(oncpu=oncpu, wake=wake)


def m_throughput_full(a, w, interval):
    return m_throughput(a, w, interval, "throughput_full", fill=True)


MEASURE = {"latency": m_latency, "throughput": m_throughput, "burst": m_burst, "contend": m_contend,
           "idle": m_idle, "throughput_full": m_throughput_full}


# ---------------------------------------------------------------------------
# summary
# ---------------------------------------------------------------------------
# (scenario, metric, label, format, higher is better)
METRICS = [
    ("latency", "p50", "latency p50 µs", "%.0f", False),
    ("latency", "p99", "latency p99 µs", "%.0f", False),
    ("throughput", "rate", "delivered/s per receiver, %(count)s × 64 B tables", "h", True),
    ("throughput", "lost", "  lost (of %(count)s per receiver)", "%d", False),
    ("throughput", "fails", "  post failures", "%d", False),
    ("throughput", "cpu_post", "  CPU ns per event, posting worker", "%.0f", False),
    ("throughput", "cpu_recv", "  CPU ns per event, receiving workers", "%.0f", False),
    ("throughput_full", "rate", "the same in a log that has wrapped (every post evicts)", "h", True),
    ("throughput_full", "lost", "  lost (of %(count)s per receiver)", "%d", False),
    ("throughput_full", "cpu_post", "  CPU ns per event, posting worker", "%.0f", False),
    ("throughput_full", "cpu_recv", "  CPU ns per event, receiving workers", "%.0f", False),
    ("burst", "lost", "burst %(burst_count)s × 1 KB, zone 1m: lost", "%d", False),
    ("burst", "reported", "  reported lost", "%d", None),
    ("contend", "secs", "contend, every worker %(count)s × 64 B: s until all have all", "%.3f", False),
    ("contend", "rate", "  deliveries/s, all workers", "h", True),
    ("contend", "lost", "  lost", "%d", False),
    ("contend", "fails", "  post failures", "%d", False),
    ("contend", "cpu_all", "  CPU ns per delivery, all workers", "%.0f", False),
    ("idle", "oncpu", "idle: on-CPU ms per worker in %(idle_seconds)g s", "%.2f", False),
    ("idle", "wake", "  wake-ups/s per worker", "%.1f", False),
]


def fmt(v, f):
    if v is None or v != v:
        return "–"
    return human_rate(v) if f == "h" else f % v


def cell(vals, f):
    vals = [v for v in vals if v is not None and v == v]
    if not vals:
        return "–"
    if len(vals) == 1:
        return fmt(vals[0], f)
    return "%s (%s–%s)" % (fmt(median(vals), f), fmt(min(vals), f), fmt(max(vals), f))


def ratios(R, w, scen, metric, a, b, higher):
    """Per-round ratio a vs b (> 1: a better)."""
    out = []
    for rnd, va in R.get((w, scen, a), {}).items():
        vb = R.get((w, scen, b), {}).get(rnd)
        if vb is None or metric not in va or metric not in vb:
            continue
        x, y = va[metric], vb[metric]
        if higher and y > 0:
            out.append(x / y)
        elif not higher and x > 0:
            out.append(y / x)
    return out


def summary(R, floor, impls, args):
    p = dict(count=args.count, burst_count=args.burst_count, idle_seconds=args.idle_seconds)
    keys = [i[0] for i in impls]
    labels = {i[0]: i[1] for i in impls}
    verdicts = []
    for w in args.workers:
        print("\n### %d workers (median, range over %d rounds)\n" % (w, args.rounds))
        print("| | %s |" % " | ".join(labels[k] for k in keys))
        print("|---|%s" % ("---|" * len(keys)))
        fl = floor.get(w, [])
        if fl:
            print("| pipe wake-up floor p50 / p99 µs | %s / %s |%s" % (
                cell([x["p50"] for x in fl], "%.0f"), cell([x["p99"] for x in fl], "%.0f"),
                " |" * (len(keys) - 1)))
        for scen, metric, label, f, _ in METRICS:
            cells = [cell([v.get(metric) for v in R.get((w, scen, k), {}).values()], f) for k in keys]
            if all(c == "–" for c in cells):
                continue
            print("| %s | %s |" % (label % p, " | ".join(cells)))
        anchors = [k for k in keys if not k.startswith("module")]
        print("\nSame-round ratios, module vs each anchor (> 1 = the module is better):\n")
        print("| | %s |" % " | ".join("vs " + labels[k] for k in anchors))
        print("|---|%s" % ("---|" * len(anchors)))
        for mod in ("module", "module-ev"):
            for scen, metric, label, f, higher in METRICS:
                if higher is None or metric in ("lost", "fails", "reported") or scen == "idle":
                    continue
                cells = [cell(ratios(R, w, scen, metric, mod, k, higher), "%.2f×") for k in anchors]
                if all(c == "–" for c in cells):
                    continue
                print("| %s%s | %s |" % ("" if mod == "module" else "resty.events: ", label.strip() % p,
                                          " | ".join(cells)))
        verdicts += targets(R, floor, w, args)
    print("\nTargets (%s):\n" % TARGETS_DOC)
    for v in verdicts:
        print(v)


def floor_ratio(R, floor, w):
    out = []
    fr = {f["round"]: f["p50"] for f in floor.get(w, [])}
    for rnd, v in R.get((w, "latency", "module"), {}).items():
        if rnd in fr and fr[rnd] > 0:
            out.append(v["p50"] / fr[rnd])
    return out


def check(name, vals, want, higher=True, extra=""):
    if not vals:
        return "SKIP %s: not measured%s" % (name, extra)
    m = median(vals)
    ok = m >= want if higher else m <= want
    return "%s %s: %.2f× (range %.2f–%.2f, %d rounds), target %s %g×%s" % (
        "PASS" if ok else "MISS", name, m, min(vals), max(vals), len(vals), "≥" if higher else "≤", want, extra)


def zero_loss(R, w, scen, impl):
    vals = list(R.get((w, scen, impl), {}).values())
    lost = [v["lost"] for v in vals]
    if not vals:
        return False, ""
    if any(lost):
        return False, "; module lost %s" % ",".join(map(str, lost))
    return True, "; module lost 0"


def targets(R, floor, w, args):
    out = []
    for metric in ("p50", "p99"):
        out.append(check("%dw latency %s ≥ 3× better than lua-resty-events" % (w, metric),
                         ratios(R, w, "latency", metric, "module", "lre", False), 3))
    out.append(check("%dw latency p50 within 1.5× of the pipe floor (module p50 / floor p50)" % w,
                     floor_ratio(R, floor, w), 1.5, higher=False))
    for mod, api in (("module", "resty.worker.events"), ("module-ev", "resty.events")):
        ok, why = zero_loss(R, w, "throughput", mod)
        line = check("%dw delivered/s per receiver (%s) ≥ 10× lua-resty-worker-events@0.001, 0 lost" % (w, api),
                     ratios(R, w, "throughput", "rate", mod, "lrwe-1ms", True), 10, extra=why)
        if not ok and line.startswith("PASS"):
            line = "MISS" + line[4:]
        out.append(line)
    out.append(check("%dw every worker posting: aggregate deliveries/s ≥ 10× lua-resty-worker-events@0.001" % w,
                     ratios(R, w, "contend", "rate", "module", "lrwe-1ms", True), 10))
    # CPU per delivered event cut in half: against --baseline, which issue
    # 24 means to be the tree it was filed at (17ee229)
    for scen, log in (("throughput", "fresh log"), ("throughput_full", "wrapped log")):
        for metric, who in (("cpu_post", "posting worker"), ("cpu_recv", "receiving workers")):
            out.append(check("%dw CPU per event, %s, %s, ≥ 2× less than --baseline" % (w, who, log),
                             ratios(R, w, scen, metric, "module", "baseline", False), 2))
    return out


# ---------------------------------------------------------------------------
def parse(argv):
    e = ENV.get
    ap = argparse.ArgumentParser(prog="scripts/bench compare", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--anchors", default=e("BENCH_ANCHORS_DIR", ""), help="anchors dir (../shared/anchors)")
    ap.add_argument("--rounds", type=int, default=int(e("BENCH_COMPARE_ROUNDS", "3")))
    ap.add_argument("--workers", default=e("BENCH_COMPARE_WORKERS", "2,4"), help="worker counts (2,4)")
    ap.add_argument("--scenarios", default=e("BENCH_COMPARE_SCENARIOS", ",".join(ALL)), help=",".join(ALL + NAMED))
    ap.add_argument("--impls", default=e("BENCH_COMPARE_IMPLS", ""),
                    help="subset of module,module-ev,baseline,lrwe-1ms,lrwe-1s,lre (all)")
    ap.add_argument("--baseline", default=e("BENCH_COMPARE_BASELINE", ""),
                    help="another build of this module (.so) to measure beside it, as an anchor "
                         "(latency, throughput, contend): the same-round ratios then say what a change did")
    ap.add_argument("--count", type=int, default=int(e("BENCH_COMPARE_COUNT", "100000")),
                    help="throughput and contend events per poster (100000)")
    ap.add_argument("--burst-count", type=int, default=int(e("BENCH_COMPARE_BURST_COUNT", "20000")))
    ap.add_argument("--lat-count", type=int, default=int(e("BENCH_COMPARE_LAT_COUNT", "200")))
    ap.add_argument("--lat-period", type=float, default=float(e("BENCH_COMPARE_LAT_PERIOD", "0.02")))
    ap.add_argument("--idle-seconds", type=float, default=float(e("BENCH_COMPARE_IDLE_SECONDS", "5")))
    a = ap.parse_args(argv)
    a.workers = [int(x) for x in a.workers.split(",") if x]
    a.scenarios = [s for s in a.scenarios.split(",") if s]
    bad = [s for s in a.scenarios if s not in MEASURE]
    if bad:
        ap.error("unknown scenario(s) %s" % ",".join(bad))
    return a


def main(argv):
    a = parse(argv)
    started = time.time()
    anchors = find_anchors(a.anchors)
    if a.baseline and not os.path.isfile(a.baseline):
        raise SystemExit("scripts/bench compare: --baseline %s: no such file" % a.baseline)
    impls = implementations(anchors, a.baseline)
    if a.impls:
        asked = [x for x in a.impls.split(",") if x]
        known = [i[0] for i in implementations({"lua-resty-worker-events": ("", ""),
                                                 "lua-resty-events": ("", "")}, "baseline")]
        unknown = [x for x in asked if x not in known]
        if unknown:
            raise SystemExit("scripts/bench compare: unknown implementation(s) %s; known: %s"
                             % (",".join(unknown), ",".join(known)))
        impls = [i for i in impls if i[0] in asked]
    print("# compare: workers=%s rounds=%d scenarios=%s impls=%s count=%d; load average at start %s" % (
        ",".join(map(str, a.workers)), a.rounds, ",".join(a.scenarios), ",".join(i[0] for i in impls), a.count,
        " ".join(open("/proc/loadavg").read().split()[:3])), flush=True)
    bench.print_header(["compare"])
    R, floor, status = {}, {}, 0
    try:
        for rnd in range(a.rounds):
            for w in a.workers:
                if "latency" in a.scenarios:
                    f = bench.latency_floor(a.lat_count, a.lat_period)
                    floor.setdefault(w, []).append(dict(f, round=rnd))
                for scen in a.scenarios:
                    order = impls[rnd % len(impls):] + impls[:rnd % len(impls)]
                    for key, label, api, interval, kw, scens in order:
                        if scen not in scens:
                            continue
                        L.set_impl(**kw)
                        L.set_api(api)
                        # lua-resty-worker-events gets 3x the zone except in burst (1 MB for all)
                        L.set_zone_factor(3 if key.startswith("lrwe") and scen != "burst" else 1)
                        try:
                            R.setdefault((w, scen, key), {})[rnd] = MEASURE[scen](a, w, interval)
                        except BenchError as e:
                            status = 1
                            note("round %d %s %s %dw failed: %s" % (rnd + 1, scen, key, w, e))
                            print("scenario=%s impl=%s workers=%d failed=1" % (scen, key, w), flush=True)
            note("round %d of %d done, %.0f s; load average %s" % (
                rnd + 1, a.rounds, time.time() - started, " ".join(open("/proc/loadavg").read().split()[:3])))
    except KeyboardInterrupt:
        status = 130
        note("interrupted: results so far follow")
    finally:
        if Nginx.current:
            Nginx.current.stop()
    summary(R, floor, impls, a)
    print("\nload average at the end %s; total run time %.0f s" % (
        " ".join(open("/proc/loadavg").read().split()[:3]), time.time() - started))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
