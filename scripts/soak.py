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
import sys
import threading
import time

import soak_report
from harness import MODULE_SO, HarnessError as SoakError, cli, note, source_tree, template
from harness.fetch import tsv
from harness.nginx import Nginx
from harness.proc import alive, fd_count, rss_kb, signal_pid, where, workers_of
from soak_events import kv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = os.environ
LUA_DIR = os.path.join(ROOT, "nginx-conf", "soak", "lua")

# option, environment variable (the default), default, help
KNOBS = [
    ("--seconds", "SOAK_SECONDS", 20.0, "how long the chaos runs, s"),
    ("--port", "SOAK_PORT", 19400, "nginx listens on 127.0.0.1:PORT"),
    ("--prefix", "SOAK_PREFIX", os.path.join(ROOT, "target", "soak-prefix"), "nginx's prefix"),
    ("--workers", "SOAK_WORKERS", 4, "worker processes"),
    ("--kill-every", "SOAK_KILL_EVERY", 0.5, "s between SIGKILLs of a random worker (0 = none)"),
    ("--hup-every", "SOAK_HUP_EVERY", 0.3, "s between HUPs (0 = none)"),
    ("--stop-every", "SOAK_STOP_EVERY", 4.0, "s between SIGSTOP windows (0 = none)"),
    ("--stop-seconds", "SOAK_STOP_SECONDS", 2.0, "length of one SIGSTOP window, s"),
    ("--stall-seconds", "SOAK_STALL_SECONDS", 2.0, "a request answered later than this is a stall"),
    ("--hb-stall-seconds", "SOAK_HB_STALL_SECONDS", 5.0, "a worker without heartbeat / progress this long is a stall"),
    ("--fd-slack", "SOAK_FD_SLACK", 4, "fds a process may gain over the run"),
    ("--seed", "SOAK_SEED", int(time.time()), "the chaos's random seed (default: now)"),
    ("--compat", "SOAK_COMPAT", "2.x", "lua-resty-worker-events semantics of the main zone's API: 2.x, or 1.x "
     "(posts handle the poster's events before they return)"),
    ("--zone", "SOAK_ZONE", "32m", "the main zone's size"),
    ("--slow-zone", "SOAK_SLOW_ZONE", "256k", "the slow consumer's zone's size"),
    ("--batch", "SOAK_BATCH", 20, "posts between two sleeps"),
    ("--pause", "SOAK_PAUSE", 0.001, "that sleep, s"),
    ("--slow-every", "SOAK_SLOW_EVERY", 2, "every n-th post also to the slow zone"),
    ("--slow-poll", "SOAK_SLOW_POLL", 0.2, "the slow consumer polls this often, s"),
    ("--flush", "SOAK_FLUSH", 0.2, "workers write their counters to the dict this often, s"),
    ("--re-every", "SOAK_RE_EVERY", 2, "every n-th post also as a resty.events broadcast (0 = none)"),
    ("--unique", "SOAK_UNIQUE", 1, "unique keys published per batch"),
    ("--unique-timeout", "SOAK_UNIQUE_TIMEOUT", "", "their unique_timeout, s (default 5; 30 with --compat 1.x)"),
    ("--unique-dict", "SOAK_UNIQUE_DICT", "64m", "the dict that counts them"),
    ("--re-stats-every", "SOAK_RE_STATS_EVERY", 8, "resty.events' stats().lost is read every n-th event"),
    ("--unique-strict", "SOAK_UNIQUE_STRICT", False, "unique keys must have run in resty.events callbacks "
     "(default: at most once per API, at least once in one)"),
    ("--we-timeout", "SOAK_WE_TIMEOUT", 2.0, "resty.worker.events' configure timeout (its unique claims' life), s"),
    ("--inject", "SOAK_INJECT", "", "self-test of the checks: gap, dup, bad, ugap, udup (the soak must FAIL)"),
]
OPT = cli.parse("scripts/soak", __doc__, KNOBS, epilog="Every option's default is its environment "
                "variable's value. Also: NGINX_BIN, NGINX_MODULES_DIR.")
PREFIX = os.path.abspath(OPT.prefix)
PORT = OPT.port
SECONDS = OPT.seconds
WORKERS = OPT.workers
KILL_EVERY = OPT.kill_every      # s between SIGKILLs (0 = none)
HUP_EVERY = OPT.hup_every        # s between HUPs (0 = none)
STOP_EVERY = OPT.stop_every      # s between SIGSTOP windows (0 = none)
STOP_SECONDS = OPT.stop_seconds  # length of one SIGSTOP window
STALL = OPT.stall_seconds        # a request answered later than this = stall
HB_STALL = OPT.hb_stall_seconds  # a worker without heartbeat / progress this long = stall
FD_SLACK = OPT.fd_slack
SEED = OPT.seed
NGINX_PARAMS = {
    "ZONE": OPT.zone,
    # lua-resty-worker-events semantics of the main zone's API (1.x: posts
    # handle the poster's events before they return)
    "COMPAT": "1.x" if OPT.compat == "1.x" else "2.x",
    "SLOW_ZONE": OPT.slow_zone,
    "BATCH": str(OPT.batch),             # posts between two sleeps
    "PAUSE": repr(OPT.pause),            # that sleep, s
    "SLOW_EVERY": str(OPT.slow_every),   # every n-th post also to "slow"
    "SLOW_POLL": repr(OPT.slow_poll),    # the slow consumer polls this often
    "FLUSH": repr(OPT.flush),            # counters to the dict this often
    # resty.events on the main zone: every n-th post also as its broadcast (0 = none),
    # unique keys published per batch, their unique_timeout, the dict that counts them
    "RE_EVERY": str(OPT.re_every),
    "UNIQUE": str(OPT.unique),
    # (a consumer that reads a key later than that after its claim runs it again: under
    # 1.x the resty.events consumers fall seconds behind the synchronous posters, hence 30)
    "UNIQUE_TIMEOUT": repr(cli.env_num("SOAK_UNIQUE_TIMEOUT", "30" if OPT.compat == "1.x" else "5")),
    "UNIQUE_DICT": OPT.unique_dict,
    # resty.events has no lost event: its consumer's stats().lost is read every n-th
    # event (and at gaps, and where it vouches for unique keys; soak_re.lua)
    "RE_STATS_EVERY": str(max(1, OPT.re_stats_every)),
    # self-test of the checks: every 97th post skips a sequence number (gap),
    # repeats one (dup) or carries a wrong CRC (bad); every 5th unique key is
    # never published (ugap) or published under a second key (udup); the soak
    # must then fail
    "INJECT": '"%s"' % re.sub(r"[^a-z]", "", OPT.inject),
}
# unique keys run at most once per API (each API claims under its own tag).
# "perapi" (default): no key runs twice in one API's handlers, and a key some
# consumer read without loss ran in at least one API; "api"
# (SOAK_UNIQUE_STRICT=1): it must have run in resty.events callbacks (see
# RELIABILITY.md "Soak" for what that check still reports under chaos)
UNIQUE_MODE = "api" if OPT.unique_strict else "perapi"
# resty.worker.events' configure timeout (its unique claims' life): its
# default, 2 s, shorter than unique_timeout (a reader's shorter claim no
# longer cuts the poster's window: t/025 TEST 3)
NGINX_PARAMS["WE_TIMEOUT"] = repr(OPT.we_timeout)
LINGER = 10.0  # a worker "is shutting down" for longer than this (while not stopped) = stall
GRACE = 1.0    # after SIGCONT, the stopped worker's lock holders may still be catching up
NGINX = Nginx(PREFIX, PORT, conf=os.path.join(PREFIX, "conf", "soak.conf"),
              error_log=os.path.join(PREFIX, "logs", "soak.error.log"), port_env="SOAK_PORT")


# --- nginx ---
def render_conf():
    return template.render("soak/nginx.conf.tmpl", WORKERS=WORKERS, PREFIX=PREFIX, ERROR_LOG=NGINX.error_log,
                           MODULE_SO=MODULE_SO, LUA_PATH=LUA_DIR + "/?.lua;;", PORT=PORT, **NGINX_PARAMS)


def get(path, timeout=5.0):
    return NGINX.get(path, timeout)


def dump(dict_name):
    return tsv(get("/dump?dict=" + dict_name, timeout=10))


def start_nginx():
    # one soak per prefix: a second one would stop the first one's nginx (scripts/soak locks too)
    os.makedirs(PREFIX, exist_ok=True)
    global LOCK
    LOCK = open(os.path.join(PREFIX, "soak.lock"), "w")
    try:
        locked = ENV.get("SOAK_LOCKED")  # the prefix scripts/soak locked
        if not (locked and os.path.abspath(locked) == PREFIX):
            fcntl.flock(LOCK, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise SoakError("another soak runs in %s: wait for it, or set SOAK_PREFIX and SOAK_PORT" % PREFIX)
    return NGINX.start(render_conf())


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
                    if NGINX.kill_worker(pid):
                        self.killed.add(pid)
                        self.kill_times.append((time.time(), pid))
                        self.counts["kills"] += 1
            if HUP_EVERY > 0 and now >= nxt["hup"]:
                nxt["hup"] = now + self.jitter(HUP_EVERY)
                if NGINX.reload():
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


def wait_ready(master):
    def ready():
        procs = workers_of(master)
        try:
            hbs = dump("soak_hb")
        except SoakError:
            hbs = {}
        return len(procs) == WORKERS and all(("hb:%d" % p) in hbs for p in procs) and procs
    return NGINX.wait_until("workers ready", ready, 30, markers=("init_worker_by_lua error", "soak: configure failed"))


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
    git = source_tree()
    print("# soak: %g s, %d workers, kill every %g s, HUP every %g s, SIGSTOP %g s every %g s, "
          "zones ev %s / slow %s, compat %s, resty.events: 1 post in %s, %s unique key(s) a batch "
          "(unique check: %s, resty.worker.events timeout %s s), seed %d, source tree %s"
          % (SECONDS, WORKERS, KILL_EVERY, HUP_EVERY, STOP_SECONDS, STOP_EVERY,
             NGINX_PARAMS["ZONE"], NGINX_PARAMS["SLOW_ZONE"], NGINX_PARAMS["COMPAT"],
             NGINX_PARAMS["RE_EVERY"], NGINX_PARAMS["UNIQUE"], UNIQUE_MODE, NGINX_PARAMS["WE_TIMEOUT"],
             SEED, git), flush=True)
    master = start_nginx()
    error_log = NGINX.error_log
    try:
        procs = wait_ready(master)
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
        clean_quit = NGINX.stop()
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
