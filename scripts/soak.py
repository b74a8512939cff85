#!/usr/bin/env python3
"""Chaos soak driver (run via scripts/soak; see README.md "Soak" and RELIABILITY.md).

Starts nginx (prefix SOAK_PREFIX, 127.0.0.1:SOAK_PORT) with SOAK_WORKERS
workers that all post CRC-checked events at full speed and check every event
they receive (nginx-conf/soak/lua/soak.lua). For SOAK_SECONDS it SIGKILLs a
random worker, HUPs the master, and SIGSTOPs a worker for a few seconds, while
it checks that requests are answered and that every worker makes progress.
Then it quiesces, sums the workers' counters, checks slots, fds and the final
QUIT, prints one summary and exits 1 if an invariant broke.
"""
import fcntl
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import soak_report
from soak_events import kv
from soak_proc import alive, env_num, fd_count, read_pid, rss_kb, signal_pid, where, workers_of

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = os.environ


NGINX_BIN = ENV.get("NGINX_BIN", "/usr/sbin/nginx")
MODULES_DIR = ENV.get("NGINX_MODULES_DIR", "/usr/lib/nginx/modules")
MODULE_SO = os.path.join(ROOT, "build", "ngx_http_worker_events_module.so")
TEMPLATE = os.path.join(ROOT, "nginx-conf", "soak", "nginx.conf.tmpl")
LUA_DIR = os.path.join(ROOT, "nginx-conf", "soak", "lua")
PREFIX = os.path.abspath(ENV.get("SOAK_PREFIX", os.path.join(ROOT, "target", "soak-prefix")))
PORT = env_num("SOAK_PORT", "19400", int)
SECONDS = env_num("SOAK_SECONDS", "20")
WORKERS = env_num("SOAK_WORKERS", "4", int)
KILL_EVERY = env_num("SOAK_KILL_EVERY", "0.5")    # s between SIGKILLs (0 = none)
HUP_EVERY = env_num("SOAK_HUP_EVERY", "0.3")      # s between HUPs (0 = none)
STOP_EVERY = env_num("SOAK_STOP_EVERY", "4")      # s between SIGSTOP windows (0 = none)
STOP_SECONDS = env_num("SOAK_STOP_SECONDS", "2")  # length of one SIGSTOP window
STALL = env_num("SOAK_STALL_SECONDS", "2")        # a request answered later than this = stall
HB_STALL = env_num("SOAK_HB_STALL_SECONDS", "5")  # a worker without heartbeat / progress this long = stall
FD_SLACK = env_num("SOAK_FD_SLACK", "4", int)
SEED = env_num("SOAK_SEED", str(int(time.time())), int)
NGINX_PARAMS = {
    "ZONE": ENV.get("SOAK_ZONE", "32m"),
    # lua-resty-worker-events semantics of the main zone's API (1.x: posts
    # handle the poster's events before they return)
    "COMPAT": "1.x" if ENV.get("SOAK_COMPAT") == "1.x" else "2.x",
    "SLOW_ZONE": ENV.get("SOAK_SLOW_ZONE", "256k"),
    "BATCH": str(env_num("SOAK_BATCH", "20", int)),        # posts between two sleeps
    "PAUSE": repr(env_num("SOAK_PAUSE", "0.001")),         # that sleep, s
    "SLOW_EVERY": str(env_num("SOAK_SLOW_EVERY", "2", int)),  # every n-th post also to "slow"
    "SLOW_POLL": repr(env_num("SOAK_SLOW_POLL", "0.2")),   # the slow consumer polls this often
    "FLUSH": repr(env_num("SOAK_FLUSH", "0.2")),           # counters to the dict this often
    # resty.events on the main zone: every n-th post also as its broadcast (0 = none),
    # unique keys published per batch, their unique_timeout, the dict that counts them
    "RE_EVERY": str(env_num("SOAK_RE_EVERY", "2", int)),
    "UNIQUE": str(env_num("SOAK_UNIQUE", "1", int)),
    # (a consumer that reads a key later than that after its claim runs it again: under
    # 1.x the resty.events consumers fall seconds behind the synchronous posters, hence 30)
    "UNIQUE_TIMEOUT": repr(env_num("SOAK_UNIQUE_TIMEOUT", "30" if ENV.get("SOAK_COMPAT") == "1.x" else "5")),
    "UNIQUE_DICT": ENV.get("SOAK_UNIQUE_DICT", "64m"),
    # resty.events has no lost event: its consumer's stats().lost is read every n-th
    # event (and at gaps, and where it vouches for unique keys; soak_re.lua)
    "RE_STATS_EVERY": str(max(1, env_num("SOAK_RE_STATS_EVERY", "8", int))),
    # self-test of the checks: every 97th post skips a sequence number (gap),
    # repeats one (dup) or carries a wrong CRC (bad); every 5th unique key is
    # never published (ugap) or published under a second key (udup); the soak
    # must then fail
    "INJECT": '"%s"' % re.sub(r"[^a-z]", "", ENV.get("SOAK_INJECT", "")),
}
# unique keys run at most once per API (each API claims under its own tag).
# "perapi" (default): no key runs twice in one API's handlers, and a key some
# consumer read without loss ran in at least one API; "api"
# (SOAK_UNIQUE_STRICT=1): it must have run in resty.events callbacks (see
# RELIABILITY.md "Soak" for what that check still reports under chaos)
UNIQUE_MODE = "api" if ENV.get("SOAK_UNIQUE_STRICT") == "1" else "perapi"
# resty.worker.events' configure timeout (its unique claims' life): its
# default, 2 s, shorter than unique_timeout (a reader's shorter claim no
# longer cuts the poster's window: t/025 TEST 3)
NGINX_PARAMS["WE_TIMEOUT"] = repr(env_num("SOAK_WE_TIMEOUT", "2"))
LINGER = 10.0  # a worker "is shutting down" for longer than this (while not stopped) = stall
GRACE = 1.0    # after SIGCONT, the stopped worker's lock holders may still be catching up


class SoakError(Exception):
    pass


def note(msg):
    print("==> " + msg, file=sys.stderr, flush=True)


# --- nginx ---
def render_conf(error_log):
    with open(TEMPLATE) as f:
        tmpl = f.read()
    subst = dict(NGINX_PARAMS)
    subst.update({
        "WORKERS": str(WORKERS), "PREFIX": PREFIX, "ERROR_LOG": error_log,
        "USER": "user root;" if os.geteuid() == 0 else "",
        "MODULES_DIR": MODULES_DIR, "MODULE_SO": MODULE_SO,
        "LUA_PATH": LUA_DIR + "/?.lua;;", "PORT": str(PORT),
    })
    return re.sub(r"%([A-Z_]+)%", lambda m: subst.get(m.group(1), m.group(0)), tmpl)


def get(path, timeout=5.0):
    url = "http://127.0.0.1:%d%s" % (PORT, path)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise SoakError("GET %s: %s" % (path, e))


def dump(dict_name):
    out = {}
    for line in get("/dump?dict=" + dict_name, timeout=10).splitlines():
        if "\t" in line:
            k, v = line.split("\t", 1)
            out[k] = v
    return out


def stop_nginx(master, pid_file, quit_wait=15):
    """QUIT, then TERM, then KILL; True if QUIT alone stopped it cleanly."""
    procs = list(workers_of(master))
    for w in procs:
        signal_pid(w, signal.SIGCONT)
    for sig, wait in ((signal.SIGQUIT, quit_wait), (signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        signal_pid(master, sig)
        if sig == signal.SIGKILL:
            for w in procs:
                signal_pid(w, signal.SIGKILL)
        deadline = time.time() + wait
        while time.time() < deadline:
            if not alive(master) and not any(alive(w) for w in procs):
                clean = sig == signal.SIGQUIT and not os.path.exists(pid_file)
                if os.path.exists(pid_file) and read_pid(pid_file) == master:
                    os.unlink(pid_file)
                return clean
            time.sleep(0.05)
        note("nginx %d did not stop on %s" % (master, signal.Signals(sig).name))
    return False


def start_nginx():
    for d in ("conf", "logs", "client_body_temp", "proxy_temp", "fastcgi_temp", "uwsgi_temp", "scgi_temp"):
        os.makedirs(os.path.join(PREFIX, d), exist_ok=True)
    # one soak per prefix: a second one would stop the first one's nginx (scripts/soak locks too)
    global LOCK
    LOCK = open(os.path.join(PREFIX, "soak.lock"), "w")
    try:
        if ENV.get("SOAK_LOCKED") != "1":
            fcntl.flock(LOCK, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise SoakError("another soak runs in %s: wait for it, or set SOAK_PREFIX and SOAK_PORT" % PREFIX)
    pid_file = os.path.join(PREFIX, "logs", "nginx.pid")
    old = read_pid(pid_file)
    if old and alive(old):
        note("stopping a leftover soak nginx (pid %d)" % old)
        stop_nginx(old, pid_file)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", PORT))
    except OSError as e:
        raise SoakError("127.0.0.1:%d is not free (%s): set SOAK_PORT" % (PORT, e))
    finally:
        s.close()
    conf = os.path.join(PREFIX, "conf", "soak.conf")
    error_log = os.path.join(PREFIX, "logs", "soak.error.log")
    with open(conf, "w") as f:
        f.write(render_conf(error_log))
    if os.path.exists(error_log):
        os.unlink(error_log)
    r = subprocess.run([NGINX_BIN, "-p", PREFIX + "/", "-c", conf, "-e", error_log],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise SoakError("nginx failed to start (%s): %s" % (conf, r.stdout.strip()))
    for _ in range(200):
        master = read_pid(pid_file)
        if master:
            return master, pid_file, error_log
        time.sleep(0.05)
    raise SoakError("nginx wrote no pid file")


# --- the run ---
class Soak:
    def __init__(self, master):
        self.master = master
        self.rng = random.Random(SEED)
        self.counts = {"kills": 0, "hups": 0, "stops": 0, "pings": 0}
        self.killed = set()
        self.kill_times = []       # (when, pid) of each SIGKILL sent (epoch s)
        self.stopped = None        # (pid, until) of the worker stopped now
        self.windows = []          # (start, end) of every SIGSTOP window; end None while open
        self.stalls = []           # (what, detail): invariant
        self.blocked = []          # stalls that overlapped a SIGSTOP window: reported only
        self.stalled_pids = set()  # counted once each
        self.excused_keys = set()
        self.progress = {}         # pid -> (seen, time it last changed)
        self.shutting = {}         # pid -> since when it is shutting down (and not stopped)
        self.resumed = {}          # pid -> when it got SIGCONT, until its next heartbeat
        self.resume_lat = []       # SIGCONT -> the worker's next heartbeat, s
        self.max_gap = 0.0         # longest heartbeat gap seen (running workers, outside SIGSTOP windows)
        self.done = threading.Event()

    # -- stall bookkeeping ---------------------------------------------------
    def excused(self, start, now, limit=HB_STALL):
        """A stall that began while a worker was stopped (which may hold a lock the others
        wait for) and is seen no later than limit + GRACE after its SIGCONT."""
        return any(start >= s - STALL and (e is None or now <= e + limit + GRACE) for s, e in self.windows)

    def stall(self, start, what, detail, key=None):
        """Records a stall; True if it counts (False: excused, checked again later)."""
        now = time.time()
        rec = (what, "%s (at t=%.1f s)" % (detail, now - self.t0))
        if self.excused(start, now, STALL if what == "request" else HB_STALL):
            if key not in self.excused_keys:
                self.excused_keys.add(key)
                self.blocked.append(rec)
                note("stall during a SIGSTOP window (not counted unless it lasts): %s: %s" % rec)
            return False
        self.stalls.append(rec)
        note("STALL: %s: %s" % rec)
        return True

    # -- requests keep being served (a thread) ---------------------------------
    def pinger(self):
        while not self.done.is_set():
            start = time.time()
            ok = False
            for _ in range(2):  # the first one may have reached a worker just killed or stopped
                try:
                    get("/ping", timeout=STALL)
                    ok = True
                    break
                except SoakError:
                    if self.done.is_set():
                        return
            self.counts["pings"] += 1
            if not ok:
                self.stall(start, "request", "GET /ping unanswered twice within %g s" % STALL, start)
            self.done.wait(0.25)

    # -- every worker makes progress ----------------------------------------
    def check_progress(self, procs):
        now = time.time()
        try:
            hbs = {int(k[3:]): kv(v) for k, v in dump("soak_hb").items() if k.startswith("hb:")}
        except SoakError:
            return  # the pinger counts unanswered requests
        for pid, t_cont in list(self.resumed.items()):
            hb = hbs.get(pid)
            if hb and hb["t"] > t_cont:
                self.resume_lat.append(hb["t"] - t_cont)
            elif pid in procs and now - t_cont < 30:
                continue
            del self.resumed[pid]
        for pid, (state, started, shutting) in procs.items():
            if shutting:
                since = self.shutting.setdefault(pid, now)
                if state == "T":
                    self.shutting[pid] = now
                elif now - since > LINGER and pid not in self.stalled_pids:
                    if self.stall(since, "shutdown", "worker %d: shutting down for %.0f s (in %s)"
                                     % (pid, now - since, where(pid)), pid):
                        self.stalled_pids.add(pid)
                continue
            # a stopped worker, or one resumed and still catching up (measured as resume_lat)
            if state == "T" or pid in self.resumed or pid in self.stalled_pids:
                continue
            hb = hbs.get(pid)
            if hb is None:
                if now - started > HB_STALL and self.stall(started, "heartbeat", "worker %d: no heartbeat %.1f s after its start (in %s)"
                              % (pid, now - started, where(pid)), pid):
                    self.stalled_pids.add(pid)
                continue
            if not self.excused(hb["t"], now):
                self.max_gap = max(self.max_gap, now - hb["t"])
            if now - hb["t"] > HB_STALL:
                if self.stall(hb["t"], "heartbeat", "worker %d: last heartbeat %.1f s ago (in %s)"
                              % (pid, now - hb["t"], where(pid)), pid):
                    self.stalled_pids.add(pid)
                continue
            seen, since = self.progress.get(pid, (None, now))
            if seen != hb["seen"]:
                self.progress[pid] = (hb["seen"], now)
            elif hb.get("posting") == 1 and now - since > HB_STALL:
                if self.stall(since, "progress", "worker %d: received nothing for %.1f s (in %s; seen %d, "
                              "resty.events streams %d)" % (pid, now - since, where(pid), hb["seen"],
                                                            hb.get("reseen", -1)), pid):
                    self.stalled_pids.add(pid)

    # -- chaos ------------------------------------------------------------------
    def jitter(self, every):
        return every * self.rng.uniform(0.5, 1.5)

    def run(self):
        self.t0 = time.time()
        end = self.t0 + SECONDS
        nxt = {"kill": self.t0 + self.jitter(KILL_EVERY), "hup": self.t0 + self.jitter(HUP_EVERY),
               "stop": self.t0 + self.jitter(STOP_EVERY), "check": self.t0 + 0.5, "report": self.t0 + 10}
        pinger = threading.Thread(target=self.pinger, daemon=True)
        pinger.start()
        while True:
            now = time.time()
            if not alive(self.master):
                raise SoakError("the nginx master %d died" % self.master)
            if now >= end:
                break
            procs = workers_of(self.master)
            if KILL_EVERY > 0 and now >= nxt["kill"]:
                nxt["kill"] = now + self.jitter(KILL_EVERY)
                if procs:
                    pid = self.rng.choice(sorted(procs))
                    if signal_pid(pid, signal.SIGKILL):
                        self.killed.add(pid)
                        self.kill_times.append((time.time(), pid))
                        self.counts["kills"] += 1
            if HUP_EVERY > 0 and now >= nxt["hup"]:
                nxt["hup"] = now + self.jitter(HUP_EVERY)
                if signal_pid(self.master, signal.SIGHUP):
                    self.counts["hups"] += 1
            if self.stopped and now >= self.stopped[1]:
                signal_pid(self.stopped[0], signal.SIGCONT)
                self.resumed[self.stopped[0]] = now
                self.windows[-1] = (self.windows[-1][0], now)
                self.stopped = None
                nxt["stop"] = now + self.jitter(STOP_EVERY)
            if STOP_EVERY > 0 and not self.stopped and now >= nxt["stop"]:
                cands = sorted(p for p, (st, _, sd) in procs.items() if not sd and st != "T")
                if cands:
                    pid = self.rng.choice(cands)
                    if signal_pid(pid, signal.SIGSTOP):
                        self.stopped = (pid, now + STOP_SECONDS * self.rng.uniform(0.75, 1.25))
                        self.windows.append((now, None))
                        self.counts["stops"] += 1
            if now >= nxt["check"]:
                nxt["check"] = now + 0.5
                self.check_progress(procs)
            if now >= nxt["report"]:
                nxt["report"] = now + 30
                note("t=%.0f s: %s, stalls %d" % (now - self.t0, self.counts_str(), len(self.stalls)))
            time.sleep(0.02)
        if self.stopped:
            signal_pid(self.stopped[0], signal.SIGCONT)
            self.windows[-1] = (self.windows[-1][0], time.time())
            self.stopped = None
        self.done.set()
        pinger.join(timeout=2 * STALL + 1)

    def counts_str(self):
        return "kills %(kills)d, HUPs %(hups)d, SIGSTOPs %(stops)d, requests %(pings)d" % self.counts

    # -- after the chaos ----------------------------------------------------
    def quiesce(self):
        """Stops posting, lets receivers drain and old workers exit; returns the live workers."""
        get("/set?k=stop")
        deadline = time.time() + 20
        while time.time() < deadline:
            procs = workers_of(self.master)
            if len(procs) == WORKERS and not any(sd for _, _, sd in procs.values()):
                break
            time.sleep(0.1)
        else:
            self.stalls.append(("shutdown", "after the run: %d worker processes (%d shutting down) 20 s later"
                                % (len(procs), sum(1 for v in procs.values() if v[2]))))
        # receivers drain and flush: wait until no heartbeat's "seen" moves for a second
        last, stable_since = None, time.time()
        deadline = time.time() + 10
        while time.time() < deadline and time.time() - stable_since < 1.0:
            try:
                hbs = dump("soak_hb")
            except SoakError:
                hbs = {}
            live = workers_of(self.master)
            sig = sorted((k, kv(v).get("seen"), kv(v).get("reseen")) for k, v in hbs.items() if k[3:].isdigit() and int(k[3:]) in live)
            if sig != last:
                last, stable_since = sig, time.time()
            time.sleep(0.2)
        time.sleep(2 * float(NGINX_PARAMS["FLUSH"]))
        return workers_of(self.master)


def measure(master, procs):
    return {"master_fds": fd_count(master), "master_rss": rss_kb(master),
            "worker_fds": max((fd_count(p) for p in procs), default=-1),
            "worker_rss": sum(rss_kb(p) for p in procs) // max(1, len(procs))}


def wait_ready(master, error_log):
    deadline = time.time() + 30
    while time.time() < deadline:
        procs = workers_of(master)
        try:
            hbs = dump("soak_hb")
        except SoakError:
            hbs = {}
        if len(procs) == WORKERS and all(("hb:%d" % p) in hbs for p in procs):
            return procs
        with open(error_log, errors="replace") as f:
            for line in f:
                if "init_worker_by_lua error" in line or "soak: configure failed" in line:
                    raise SoakError(line.strip())
        time.sleep(0.1)
    raise SoakError("workers not ready after 30 s")


def slots_taken(procs):
    """(ev, slow): stats().workers of both zones, waiting up to 1 s for them to match the live workers."""
    ev = slow = -1
    deadline = time.time() + 1
    while time.time() < deadline:
        s = kv(get("/stats"))
        ev, slow = int(s["ev_workers"]), int(s["slow_workers"])
        if ev == len(procs) and slow == len(procs):
            break
        time.sleep(0.2)
    return ev, slow


def main():
    signal.signal(signal.SIGTERM, lambda s, f: sys.exit(128 + s))
    if not os.path.exists(MODULE_SO):
        print("missing %s (scripts/soak builds it)" % MODULE_SO, file=sys.stderr)
        return 2
    git = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True).stdout.strip() or "?"
    print("# soak: %g s, %d workers, kill every %g s, HUP every %g s, SIGSTOP %g s every %g s, "
          "zones ev %s / slow %s, compat %s, resty.events: 1 post in %s, %s unique key(s) a batch "
          "(unique check: %s, resty.worker.events timeout %s s), seed %d, source tree %s"
          % (SECONDS, WORKERS, KILL_EVERY, HUP_EVERY, STOP_SECONDS, STOP_EVERY,
             NGINX_PARAMS["ZONE"], NGINX_PARAMS["SLOW_ZONE"], NGINX_PARAMS["COMPAT"],
             NGINX_PARAMS["RE_EVERY"], NGINX_PARAMS["UNIQUE"], UNIQUE_MODE, NGINX_PARAMS["WE_TIMEOUT"],
             SEED, git), flush=True)
    master, pid_file, error_log = start_nginx()
    try:
        procs = wait_ready(master, error_log)
        before = measure(master, procs)
        soak = Soak(master)
        get("/set?k=go")
        note("soaking for %g s (nginx %d, 127.0.0.1:%d, log %s)" % (SECONDS, master, PORT, error_log))
        soak.run()
        note("quiescing: posters stop, receivers drain, old workers exit")
        procs = soak.quiesce()
        after = measure(master, procs)
        ev_slots, slow_slots = slots_taken(procs)
        hbs = {k: kv(v) for k, v in dump("soak_hb").items()}
        own = sorted(int(hbs["hb:%d" % p]["slot"]) for p in procs if ("hb:%d" % p) in hbs)
        acc = dump("soak_acc")
        udict = dump("soak_u")
        for name, d in (("soak_acc", acc), ("soak_u", udict)):  # for a look after the run
            with open(os.path.join(PREFIX, "logs", name + ".tsv"), "w") as f:
                f.writelines("%s\t%s\n" % kv_ for kv_ in sorted(d.items()))
        master_alive = alive(master)
    finally:
        note("stopping nginx (QUIT)")
        clean_quit = stop_nginx(master, pid_file)
    return soak_report.report(soak, acc, udict, dict(
        procs=procs, before=before, after=after, slots={"ev": ev_slots, "slow": slow_slots}, own=own,
        master_alive=master_alive, clean_quit=clean_quit, error_log=error_log,
        seconds=SECONDS, fd_slack=FD_SLACK, hb_stall=HB_STALL, unique_mode=UNIQUE_MODE))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SoakError as e:
        print("soak: FAIL: %s" % e, file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
