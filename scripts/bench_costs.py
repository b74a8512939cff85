#!/usr/bin/env python3
"""`scripts/bench costs`: the module's per-event CPU inside one worker, with
no other process on the path, so that builds can be told apart by a few
percent on a host whose multi-worker figures move by 30 % between rounds.

One nginx worker (nginx-conf/bench/costs.conf.tmpl) posts --count 64 B
tables through resty.worker.events, then drains them with poll() (interval
0: no loop, no wake-up), --passes times over; its own CPU time (os.clock)
per event for each. Pass 1 compiles (the JIT); the zone holds about three
passes, so passes 2 and 3 write a fresh log (pages the process has not
touched yet) and passes 5 on a log that has wrapped (every post evicts):
the median of each, and the quickest wrapped pass (`post_best`,
`recv_best`: on this host a noisy second can slow a whole pass; the
quickest pass is the one it left alone). Then the receive path's parts
alone, in the same worker: encode
and decode of the payload, decode over five kinds of payload in turn
(keys that vary, an array, a nested table, 7 keys, the {n, z, p} table: a
decoder tuned to one kind shows here), the table the decoder builds ({n,
z, p} with keys from the bytes), and the source and event strings.

    scripts/bench costs [--count 100000] [--passes 10] [--rounds 5] [--so A.so --so B.so ...]

Each --so (default: build/'s module) gets a fresh nginx per round, builds
alternating and the order rotated per round. Prints one key=value line per
measurement, then per build the median (range) over rounds and, with more
than one build, same-round ratios against the first (> 1 = the first build
costs less). Port and prefix: BENCH_PORT (+ 7), BENCH_PREFIX/costs.
"""
import argparse
import os
import statistics

from harness import MODULE_SO, ROOT, nginx, template

PORT = int(os.environ.get("BENCH_PORT", "18990")) + 7
PREFIX = os.path.join(os.environ.get("BENCH_PREFIX", os.path.join(ROOT, "target", "bench-prefix")), "costs")
RECORD_BYTES = 150  # one event of the scenario in the log, about
ROWS = ("post_fresh", "recv_fresh", "post_wrapped", "recv_wrapped", "post_best", "recv_best", "encode", "decode", "decode_mixed", "table",
        "names")


def measure(so, count, passes):
    """One fresh nginx with `so`: {row: ns per event}."""
    zone_mb = max(2, count * RECORD_BYTES * 3 // (1024 * 1024))
    ng = nginx.Nginx(PREFIX, PORT, label="costs: ", port_env="BENCH_PORT")
    conf = template.render("bench/costs.conf.tmpl", PREFIX=PREFIX, PORT=PORT, MODULE=so, ZONE="%dm" % zone_mb,
                           ERROR_LOG=ng.error_log,
                           LUA_PATH=os.path.join(ROOT, "nginx-conf", "bench", "lua", "?.lua") + ";;")
    ng.start(conf)
    try:
        ng.wait_until("the worker", lambda: ng.workers(live_only=True), 10)
        text = ng.get("/costs?count=%d&passes=%d" % (count, passes), timeout=300)
    finally:
        ng.stop()
    if text.startswith("error="):  # a post failed (its text may have spaces)
        raise SystemExit("costs: %s" % text.strip())
    lines = [dict(p.split("=", 1) for p in line.split()) for line in text.splitlines() if "=" in line]
    runs = [kv for kv in lines if "pass" in kv]
    short = [kv for kv in runs if int(kv["received"]) != count]
    if short:
        raise SystemExit("costs: a pass received %s of %d" % (short[0]["received"], count))
    # passes 2 and 3 write fresh pages with the JIT warm (pass 1 compiles);
    # the zone holds about 3 passes, so from pass 5 on every post evicts
    fresh, wrapped = runs[1:3], runs[4:]

    def ns(rs, k):
        return statistics.median(float(kv[k]) for kv in rs)
    out = {"post_fresh": ns(fresh, "post_ns"), "recv_fresh": ns(fresh, "recv_ns"),
           "post_wrapped": ns(wrapped, "post_ns"), "recv_wrapped": ns(wrapped, "recv_ns"),
           # the quickest wrapped pass: a pass the host's noise left alone
           "post_best": min(float(kv["post_ns"]) for kv in wrapped),
           "recv_best": min(float(kv["recv_ns"]) for kv in wrapped)}
    out.update({kv["part"]: float(kv["ns"]) for kv in lines if "part" in kv})
    return out


def cell(xs):
    return "%.1f (%.1f–%.1f)" % (statistics.median(xs), min(xs), max(xs))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=100000)
    ap.add_argument("--passes", type=int, default=10, help="at least 5 (fresh: passes 2-3, wrapped: 5 on)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--so", action="append", help="a build of the module (repeat to compare)")
    a = ap.parse_args()
    builds = [os.path.abspath(s) for s in (a.so or [MODULE_SO])]
    res = {b: [] for b in builds}
    for rnd in range(a.rounds):
        for so in builds[rnd % len(builds):] + builds[:rnd % len(builds)]:
            r = measure(so, a.count, max(5, a.passes))
            res[so].append(r)
            print("scenario=costs so=%s round=%d count=%d %s" % (
                so, rnd + 1, a.count, " ".join("%s_ns=%.1f" % (k, r[k]) for k in ROWS if k in r)), flush=True)
    names = [os.path.basename(b) if builds.count(b) == 1 else b for b in builds]
    print("\nCPU ns per event, one worker, median (range) of %d rounds:\n" % a.rounds)
    print("| | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(builds))
    for row in ROWS:
        print("| %s | %s |" % (row, " | ".join(cell([r[row] for r in res[b]]) for b in builds)))
    if len(builds) < 2:
        return
    print("\nSame-round ratios, other build ÷ %s (> 1 = %s costs less):\n" % (names[0], names[0]))
    print("| | " + " | ".join(names[1:]) + " |")
    print("|---|" + "---|" * (len(builds) - 1))
    for row in ROWS:
        cells = []
        for b in builds[1:]:
            xs = [o[row] / f[row] for f, o in zip(res[builds[0]], res[b])]
            cells.append("%.2f× (%.2f–%.2f)" % (statistics.median(xs), min(xs), max(xs)))
        print("| %s | %s |" % (row, " | ".join(cells)))


if __name__ == "__main__":
    main()
