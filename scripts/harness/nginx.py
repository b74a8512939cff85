"""One nginx controller: an nginx (daemon, master + workers) in its own
prefix, started from a rendered conf, reloaded, its workers listed and
killed, stopped with QUIT, then TERM, then KILL."""
import os
import signal
import subprocess
import time

from harness import NGINX_BIN, HarnessError, fetch, note
from harness.proc import alive, children_of, port_error, read_pid, signal_pid, tail, workers_of

TEMP_DIRS = ("client_body_temp", "proxy_temp", "fastcgi_temp", "uwsgi_temp", "scgi_temp")
START_ERRORS = ("init_worker_by_lua error",)


def stop_master(master, pid_file, quit_wait=15, label=""):
    """Stops an nginx master and its children: SIGCONT to the children (a
    SIGSTOPped worker never exits), then QUIT (waited for quit_wait s), TERM
    (5 s), KILL (to the children too, 5 s). Removes the pid file if it still
    names master. True if QUIT alone stopped it and nginx removed its pid
    file itself (a clean exit)."""
    procs = children_of(master)
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
                if read_pid(pid_file) == master:
                    os.unlink(pid_file)
                return clean
            time.sleep(0.05)
        note("%snginx %d did not stop on %s" % (label, master, signal.Signals(sig).name))
    return False


class Nginx:
    """nginx in `prefix` (conf/, logs/, the temp dirs), listening on
    127.0.0.1:port; `conf` and `error_log` default to prefix/conf/nginx.conf
    and prefix/logs/error.log; the pid file is prefix/logs/nginx.pid (the
    templates say so). `label` ("node a: ") starts its messages; `port_env`
    names the setting that moves the port, for the message when it is taken."""

    def __init__(self, prefix, port, conf=None, error_log=None, label="", port_env="the port"):
        self.prefix, self.port, self.label, self.port_env = prefix, port, label, port_env
        self.conf = conf or os.path.join(prefix, "conf", "nginx.conf")
        self.error_log = error_log or os.path.join(prefix, "logs", "error.log")
        self.pid_file = os.path.join(prefix, "logs", "nginx.pid")
        self.master = None

    # -- start ------------------------------------------------------------------
    def stop_leftover(self):
        """Stops an nginx a previous run left in this prefix."""
        old = read_pid(self.pid_file)
        if old and alive(old):
            note("%sstopping a leftover nginx (pid %d)" % (self.label, old))
            stop_master(old, self.pid_file, label=self.label)
        elif os.path.exists(self.pid_file):
            os.unlink(self.pid_file)

    def start(self, conf_text, stale=()):
        """Writes conf_text to self.conf and starts nginx with it (after
        stopping a leftover one and checking the port); `stale`: files to
        remove first, besides the error log. Returns once the master wrote
        its pid file; waiting for the workers is the driver's (wait_until)."""
        for d in ("conf", "logs") + TEMP_DIRS:
            os.makedirs(os.path.join(self.prefix, d), exist_ok=True)
        self.stop_leftover()
        err = port_error(self.port)
        if err:
            raise HarnessError("%s127.0.0.1:%d is not free (%s): set %s" % (self.label, self.port, err, self.port_env))
        with open(self.conf, "w") as f:
            f.write(conf_text)
        for path in (self.error_log,) + tuple(stale):
            if os.path.exists(path):
                os.unlink(path)
        r = subprocess.run([NGINX_BIN, "-p", self.prefix + "/", "-c", self.conf, "-e", self.error_log],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            why = (r.stdout + tail(self.error_log)).strip().splitlines()
            raise HarnessError("%snginx failed to start (%s): %s" % (self.label, self.conf, why[-1] if why else "?"))
        deadline = time.time() + 10
        while time.time() < deadline:
            self.master = read_pid(self.pid_file)
            if self.master:
                return self.master
            time.sleep(0.05)
        raise HarnessError("%snginx wrote no pid file\n%s" % (self.label, tail(self.error_log)))

    def start_error(self, markers=START_ERRORS):
        """The first error-log line that has one of markers (a worker's
        init failed), or None."""
        try:
            with open(self.error_log, errors="replace") as f:
                for line in f:
                    if any(m in line for m in markers):
                        return line.strip()
        except OSError:
            pass
        return None

    def wait_until(self, what, cond, timeout=30, every=0.1, markers=START_ERRORS, detail=None):
        """Polls cond() until it returns something true (returned), raising
        HarnessError after timeout s (with detail()'s text, if given), or at
        once when the error log has a line with one of markers."""
        deadline = time.time() + timeout
        while True:
            line = self.start_error(markers)
            if line:
                raise HarnessError(self.label + line)
            r = cond()
            if r:
                return r
            if time.time() >= deadline:
                raise HarnessError("%s%s: not after %g s%s" % (self.label, what, timeout, detail() if detail else ""))
            time.sleep(every)

    # -- while it runs ----------------------------------------------------------
    def alive(self):
        return bool(self.master) and alive(self.master)

    def workers(self, live_only=False):
        """{pid: (state, start time, shutting_down)} of its worker processes
        (live_only: not those shutting down after a reload)."""
        w = workers_of(self.master) if self.master else {}
        return {p: v for p, v in w.items() if not (live_only and v[2])}

    def reload(self):
        """HUP to the master; False if it is gone."""
        return signal_pid(self.master, signal.SIGHUP)

    def kill_worker(self, pid):
        """SIGKILL to one worker; False if it is gone."""
        return signal_pid(pid, signal.SIGKILL)

    def get(self, path, timeout=10):
        return fetch.get(self.port, path, timeout, self.label)

    def tail(self, n=20):
        return tail(self.error_log, n)

    # -- stop -------------------------------------------------------------------
    def stop(self, quit_wait=15):
        """stop_master() on its master (or the one its pid file names); True
        if QUIT alone stopped it cleanly (or nothing ran)."""
        master = self.master or read_pid(self.pid_file)
        self.master = None
        if not master:
            return True
        return stop_master(master, self.pid_file, quit_wait, self.label)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False
