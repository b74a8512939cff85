#!/usr/bin/env python3
"""Shared parts of scripts/bench.py: settings from the environment, nginx
control (one fresh nginx per measurement), the harness's result format, and
process/CPU helpers. See scripts/bench.py and BENCHMARKS.md.
"""
import json
import math
import os
import re
import subprocess
import time

import bench_options
from harness import MODULE_SO, ROOT, HarnessError as BenchError, cli, nginx, template
from harness.fetch import tsv

ENV = os.environ
K = cli.values(bench_options.BENCH)  # the environment (bench.py put its options there)

PORT = K.port
WORKERS = K.workers
PREFIX = os.path.abspath(K.prefix)
IMPL_NAME = K.impl_name
IMPL_LUA_PATH = K.impl_lua_path
IMPL_EXTRA_MODULES = K.impl_extra_modules.split()
IMPL_HTTP_CONFIG = K.impl_http_config
IMPL_SHM = K.impl_shm
IMPL_NO_DEFAULT_MODULE = ENV.get("IMPL_NO_DEFAULT_MODULE", "0") not in ("", "0")
HARNESS_LUA = os.path.join(ROOT, "nginx-conf", "bench", "lua")
WRK_SECONDS = K.wrk_seconds
IDLE_SECONDS = K.idle_seconds
# throughput/burst payload: "table" = {n=<seq>, z=<size>, p=<size-byte string>} (default),
# "string" = a plain size-byte string (no sequence check; isolates the codec's table cost)
PAYLOAD = K.payload
# the Lua API the harness drives: "worker.events" (resty.worker.events, the default),
# "events" (resty.events), or "both" (each scenario with one, then the other)
BENCH_API = K.api
API_LABELS = {"worker.events": "resty.worker.events", "events": "resty.events"}
APIS = list(API_LABELS) if BENCH_API == "both" else [BENCH_API]
EVENTS_SOCK = os.path.join(PREFIX, "logs", "events.sock")  # resty.events' `listening`

MB = 1024 * 1024
MAX_ZONE = 256 * MB
ALL_SCENARIOS = ["latency", "throughput", "burst", "idle", "poll_overhead", "fanout", "unique"]
# the status location (`worker_events_status`): "auto" = when a loaded module has the directive
STATUS_LOCATION = K.status_location
STATUS_PATH = "/status"

_api = [APIS[0]]
_module = [MODULE_SO]
_harness_opts = [""]
_zone_factor = [1]


def set_zone_factor(f):
    """Multiplies the zone size given to IMPL_HTTP_CONFIG's %SIZE% (an
    implementation whose format needs more room than this module's, e.g.
    lua-resty-worker-events' JSON entries in a lua_shared_dict)."""
    _zone_factor[0] = f


def set_impl(name, lua_path="", extra_modules=(), http_config="worker_events_zone ev %SIZE%;", shm="ev",
             no_default_module=False):
    """The implementation under test from here on (scripts/bench_compare.py
    switches between this module and the anchors); the IMPL_* settings."""
    global IMPL_NAME, IMPL_LUA_PATH, IMPL_EXTRA_MODULES, IMPL_HTTP_CONFIG, IMPL_SHM, IMPL_NO_DEFAULT_MODULE
    IMPL_NAME, IMPL_LUA_PATH, IMPL_EXTRA_MODULES = name, lua_path, list(extra_modules)
    IMPL_HTTP_CONFIG, IMPL_SHM, IMPL_NO_DEFAULT_MODULE = http_config, shm, no_default_module


def set_harness_opts(lua):
    """Extra fields of the harness's init_worker options table (Lua text,
    e.g. "contend = true,") for the nginx started from here on."""
    _harness_opts[0] = lua


def set_api(name):
    _api[0] = name


def api():
    """The API of the measurements from here on (one of APIS)."""
    return _api[0]


def api_label():
    return API_LABELS[api()]


def set_module(path):
    """This module's .so for the nginx started from here on (status_load's
    baseline build); None = build/ngx_http_worker_events_module.so."""
    _module[0] = path or MODULE_SO


def module_so():
    return _module[0]


_has_status = {}


def module_has_status(path):
    """True when the .so at `path` knows the `worker_events_status` directive."""
    if path not in _has_status:
        try:
            with open(path, "rb") as f:
                _has_status[path] = b"worker_events_status" in f.read()
        except OSError:
            _has_status[path] = False
    return _has_status[path]


def status_enabled():
    """Whether the nginx rendered from here on gets the status location."""
    if STATUS_LOCATION in ("0", "1"):
        return STATUS_LOCATION == "1"
    mods = ([] if IMPL_NO_DEFAULT_MODULE else [module_so()]) + IMPL_EXTRA_MODULES
    return any(module_has_status(m) for m in mods)


def impl_kv():
    """The implementation and the API, as the first keys of a result line."""
    return [("impl", IMPL_NAME), ("api", api_label())]


# ---------------------------------------------------------------------------
# nginx control
# ---------------------------------------------------------------------------
def zone_size_str(nbytes):
    mb = max(1, math.ceil(nbytes / MB))
    return "%dm" % mb


def render_conf(name, workers, zone_size, interval):
    modules = []
    if not IMPL_NO_DEFAULT_MODULE:
        modules.append(module_so())
    modules += IMPL_EXTRA_MODULES
    lua_path = []
    if IMPL_LUA_PATH:
        p = IMPL_LUA_PATH.rstrip("/")
        lua_path += [p + "/?.lua", p + "/?/init.lua", p + "/lib/?.lua", p + "/lib/?/init.lua"]
    lua_path += [HARNESS_LUA + "/?.lua"]
    broker = ""
    if api() == "events":
        # the broker location of lua-resty-events' synopsis (its workers connect
        # here); the module answers a stray client and delivers through the zone
        broker = ("server {\n        listen unix:%s;\n        location / { content_by_lua_block "
                  "{ require(\"bench_harness\").broker() } }\n    }" % EVENTS_SOCK)
    status = ""
    if status_enabled():
        # answered in native code from the zone alone (no Lua); the zone is the one under test
        status = "location = %s { worker_events_status%s; }" % (STATUS_PATH, " " + IMPL_SHM if IMPL_SHM else "")
    return template.render(
        "bench/nginx.conf.tmpl", STATUS_LOCATION=status, WORKERS=workers, PREFIX=PREFIX,
        ERROR_LOG=os.path.join(PREFIX, "logs", name + ".error.log"),
        LOAD_MODULES="\n".join("load_module %s;" % m for m in modules), LUA_PATH=";".join(lua_path) + ";;",
        IMPL_HTTP_CONFIG=IMPL_HTTP_CONFIG.replace("%SIZE%", scaled_zone(zone_size)), IMPL_SHM=IMPL_SHM,
        INTERVAL=repr(interval), PORT=PORT, API=api(), EVENTS_SOCK=EVENTS_SOCK, EVENTS_BROKER=broker,
        HARNESS_OPTS=_harness_opts[0] + jit_profile_opts())


def jit_profile_opts():
    """BENCH_JIT_PROFILE=MODE:PREFIX as harness options (Lua text)."""
    if not K.jit_profile:
        return ""
    mode, _, prefix = K.jit_profile.partition(":")
    return "jit_profile = %s, jit_profile_mode = %s," % (
        json.dumps(os.path.abspath(prefix or "jitp")), json.dumps(mode or "v"))


def scaled_zone(zone_size):
    m = re.fullmatch(r"(\d+)m", zone_size)
    if _zone_factor[0] == 1 or not m:
        return zone_size
    return "%dm" % math.ceil(int(m.group(1)) * _zone_factor[0])


class BenchNginx(nginx.Nginx):
    """An nginx running the bench's Lua harness (nginx-conf/bench): its
    workers say they are ready, and what they measured, at /bench/results.
    `with` starts it (start() takes no arguments) and stops it."""

    def __enter__(self):
        self.start()
        return self

    def results(self):
        return tsv(self.get("/bench/results"))

    def wait_ready(self, workers, settle=0.0):
        """Until `workers` workers said "ready" (self.wpids: {wid: pid}), 30 s at most."""
        last = [{}]

        def ready():
            try:
                res = last[0] = self.results()
            except BenchError:
                return None
            fails = {k: v for k, v in res.items() if k.startswith("fail:")}
            if fails:
                raise BenchError("%sstart failed in a worker: %r" % (self.label, fails))
            wpids = {int(k[6:]): int(v) for k, v in res.items() if k.startswith("ready:")}
            return wpids if len(wpids) == workers else None
        self.wpids = self.wait_until("workers ready", ready, 30,
                                     detail=lambda: " (%r)\n%s" % (last[0], self.tail()))
        time.sleep(settle)


class Nginx(BenchNginx):
    current = None  # the running instance, for cleanup

    def __init__(self, name, workers, zone_size, interval):
        if api() != "worker.events":
            name = api() + "-" + name
        if IMPL_NAME != "ngx-worker-events":
            name = IMPL_NAME + "-" + name
        super().__init__(PREFIX, PORT, conf=os.path.join(PREFIX, "conf", name + ".conf"),
                         error_log=os.path.join(PREFIX, "logs", name + ".error.log"), port_env="BENCH_PORT")
        self.name = name
        self.workers = workers
        self.zone_size = zone_size
        self.interval = interval
        self.wpids = {}

    def start(self):
        Nginx.current = self
        super().start(render_conf(self.name, self.workers, self.zone_size, self.interval), stale=(EVENTS_SOCK,))
        self.wait_ready(self.workers, settle=0.5)  # let the "started" events of every worker go round

    def error_lines(self):
        errors = alerts = 0
        try:
            with open(self.error_log, errors="replace") as f:
                for line in f:
                    if "[error]" in line:
                        errors += 1
                    elif "[alert]" in line or "[crit]" in line or "[emerg]" in line:
                        alerts += 1
        except OSError:
            pass
        return errors, alerts

    def stop(self):
        if Nginx.current is self:
            Nginx.current = None
        return super().stop()


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
def kv(s):
    out = {}
    for part in s.split():
        if "=" in part:
            k, v = part.split("=", 1)
            out[k] = float(v)
    return out


def pct(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    i = max(0, math.ceil(p / 100.0 * len(sorted_vals)) - 1)
    return sorted_vals[i]


def per_worker(d, fmt="%d"):
    return ",".join(("%d:" + fmt) % (w, d[w]) for w in sorted(d)) or "-"


def human_rate(x):
    if x >= 1e6:
        return "%.2fM" % (x / 1e6)
    if x >= 1e3:
        return "%.0fk" % (x / 1e3)
    return "%.0f" % x


def emit(row):
    """row: ordered list of (key, value); printed as one key=value line."""
    print(" ".join("%s=%s" % (k, v) for k, v in row), flush=True)


def wait_scenario(ng, receivers, timeout, stall):
    """Polls the results until the poster finished and every receiver flushed
    its counters (on the "end" event), or nothing moved for `stall` seconds
    after the poster finished, or `timeout`. Returns (results, timed_out)."""
    deadline = time.time() + timeout
    last_sig, last_change = None, time.time()
    res = {}
    while True:
        try:
            res = ng.results()
        except BenchError:
            # the worker that took the request is busy (an implementation
            # that handles a whole backlog without yielding): ask again
            if time.time() > deadline:
                raise
            continue
        poster_done = "poster" in res
        if poster_done and all(("res:%d" % w) in res for w in receivers):
            return res, False
        sig = tuple(sorted((k, v) for k, v in res.items() if k.startswith(("prog:", "res:", "poster"))))
        now = time.time()
        if sig != last_sig:
            last_sig, last_change = sig, now
        if now > deadline or (poster_done and now - last_change > stall):
            return res, True
        time.sleep(0.2)


def worker_state(res, w):
    """Final counters of worker w, or its last progress snapshot."""
    if ("res:%d" % w) in res:
        return kv(res["res:%d" % w]), True
    if ("prog:%d" % w) in res:
        return kv(res["prog:%d" % w]), False
    return {"seen": 0, "lost": 0, "lost_reports": 0, "first": 0, "last": 0, "ooo": 0, "bad": 0}, False


def start_poster(ng, query):
    body = ng.get("/bench/start?" + query)
    m = re.search(r"poster=(\d+)", body)
    if not m:
        raise BenchError("unexpected /bench/start answer: %r" % body)
    return int(m.group(1))


def wrk(path, seconds):
    url = "http://127.0.0.1:%d%s" % (PORT, path)
    r = subprocess.run(["wrk", "-c", "32", "-t", "2", "-d", "%gs" % seconds, url],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    m = re.search(r"Requests/sec:\s+([\d.]+)", r.stdout)
    if r.returncode != 0 or not m:
        raise BenchError("wrk failed:\n" + r.stdout)
    bad = 0
    m2 = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", r.stdout)
    if m2:
        bad += int(m2.group(1))
    m3 = re.search(r"Socket errors:.*", r.stdout)
    if m3:
        bad += sum(int(x) for x in re.findall(r"\d+", m3.group(0)))
    m4 = re.search(r"(\d+) requests in", r.stdout)
    return float(m.group(1)), bad, int(m4.group(1)) if m4 else 0


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2.0
