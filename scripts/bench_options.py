"""The knobs of scripts/bench (harness.cli: option, environment variable,
default, help), read by bench_lib.py, bench_status.py and bench_cluster.py
and offered as options by bench.py (`scripts/bench --help`). Data only: bench.py
parses its command line before those modules read the environment."""
import os

from harness import ROOT

BENCH = [
    ("--workers", "WORKERS", 2, "worker processes"),
    ("--port", "BENCH_PORT", 18990, "nginx listens on 127.0.0.1:PORT"),
    ("--prefix", "BENCH_PREFIX", os.path.join(ROOT, "target", "bench-prefix"), "nginx's prefix"),
    ("--api", "BENCH_API", "worker.events", "the Lua API the scenarios drive: worker.events, events or both"),
    ("--wrk-seconds", "BENCH_WRK_SECONDS", 5.0, "poll_overhead's wrk runs, s"),
    ("--idle-seconds", "BENCH_IDLE_SECONDS", 10.0, "idle's measurement, s"),
    ("--payload", "BENCH_PAYLOAD", "table", "throughput/burst payload: table ({n, z, p}) or string"),
    ("--status-location", "BENCH_STATUS_LOCATION", "auto", "the /status location: auto (when the module "
     "has worker_events_status), 0 or 1"),
    ("--impl-name", "IMPL_NAME", "ngx-worker-events", "the implementation's name in the results"),
    ("--impl-lua-path", "IMPL_LUA_PATH", "", "its Lua library dir (lua_package_path)"),
    ("--impl-extra-modules", "IMPL_EXTRA_MODULES", "", "more .so files to load_module, space-separated"),
    ("--impl-http-config", "IMPL_HTTP_CONFIG", "worker_events_zone ev %SIZE%;", "its http{} lines (%SIZE% = "
     "the zone size)"),
    ("--impl-shm", "IMPL_SHM", "ev", "its shm (resty.events' `shm`)"),
    ("--impl-no-default-module", "IMPL_NO_DEFAULT_MODULE", False, "do not load this module's build"),
    ("--jit-profile", "BENCH_JIT_PROFILE", "", "MODE:PREFIX: LuaJIT's profiler (jit.p, e.g. mode v: VM states, "
     "Fl: functions and lines) in every worker from its start until it has every event of the run; "
     "PREFIX-<wid>.txt per worker, overwritten by each nginx the run starts"),
]

STATUS = [
    ("--status-count", "BENCH_STATUS_COUNT", 100000, "status_load: events per run"),
    ("--status-repeat", "BENCH_STATUS_REPEAT", 3, "status_load: rounds"),
    ("--status-variants", "BENCH_STATUS_VARIANTS", "none,c1,c2,10rps", "status_load: variants, comma-separated"),
    ("--status-baseline-so", "BENCH_STATUS_BASELINE_SO", "", "status_load: another build, run as `baseline`"),
    ("--status-baseline-name", "BENCH_STATUS_BASELINE_NAME", "baseline", "status_load: its label"),
    ("--status-cost-zones", "BENCH_STATUS_COST_ZONES", "", "status_cost: zone sizes, comma-separated "
     "(default: the throughput zone)"),
]

CLUSTER = [
    ("--cluster-prefix", "BENCH_CLUSTER_PREFIX", os.path.join(ROOT, "target", "bench-cluster"),
     "cluster: nodes' prefixes PREFIX-a, PREFIX-b; redis-server's dir PREFIX-redis-XXXX"),
    ("--cluster-port", "BENCH_CLUSTER_PORT", 18994, "cluster: node A's port (B: + 1)"),
    ("--cluster-count", "BENCH_CLUSTER_COUNT", 100000, "cluster throughput: events"),
    ("--cluster-lat-count", "BENCH_CLUSTER_LAT_COUNT", 2000, "cluster latency: events"),
    ("--cluster-period", "BENCH_CLUSTER_PERIOD", 0.005, "cluster latency: s between two posts"),
    ("--cluster-batch", "BENCH_CLUSTER_BATCH", 256, "cluster throughput: posts between two yields"),
    ("--cluster-pause", "BENCH_CLUSTER_PAUSE", 0.0, "cluster throughput: that yield's ngx.sleep, s"),
    ("--cluster-repeat", "BENCH_CLUSTER_REPEAT", 3, "cluster: rounds"),
    ("--cluster-tests", "BENCH_CLUSTER_TESTS", "latency,throughput", "cluster: tests, comma-separated"),
    ("--cluster-poster", "BENCH_CLUSTER_POSTER", "other,bridge", "cluster: poster placements, comma-separated"),
    ("--cluster-queue", "BENCH_CLUSTER_QUEUE", "", "cluster: the directive's queue= (default count + 1000)"),
    ("--cluster-maxlen", "BENCH_CLUSTER_MAXLEN", "", "cluster: maxlen= (default max(100000, 2 x count))"),
    ("--cluster-xadd-requests", "BENCH_CLUSTER_XADD_REQUESTS", 1000000, "cluster: redis-benchmark's pipelined "
     "XADDs per client count in the XADD reference (0: no reference)"),
    ("--redis-server", "REDIS_SERVER", "redis-server", "cluster: the redis-server binary"),
    ("--redis-benchmark", "REDIS_BENCHMARK", "redis-benchmark", "cluster: the redis-benchmark binary (the XADD "
     "reference; skipped when not found)"),
]
