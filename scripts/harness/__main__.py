"""The shell wrappers' safety net: stops what a run left behind (the drivers
stop their nginx and redis-server themselves; this catches the rest, e.g.
after a SIGKILL of the driver). Run as `harness ...` from scripts/lib.sh:

  python3 -m harness stop-nginx LABEL PIDFILE...
      each nginx master a pid file names, if it runs: SIGCONT to its
      children, then QUIT, TERM, KILL (harness.nginx.stop_master)
  python3 -m harness stop-redis PIDFILE...
  python3 -m harness stop-redis --dirs DIR...
      the redis-server a pid file names (DIR/redis.pid with --dirs), if it
      is one: TERM, then KILL after 5 s; the pid file goes (with --dirs,
      the whole DIR)
"""
import os
import shutil
import signal
import sys
import time

from harness import note
from harness.nginx import stop_master
from harness.proc import alive, read_pid, signal_pid


def stop_nginx(label, pid_files):
    for pid_file in pid_files:
        pid = read_pid(pid_file)
        if pid and alive(pid):
            note("stopping %s %d" % (label, pid))
            stop_master(pid, pid_file)


def stop_redis(pid_file):
    pid = read_pid(pid_file)
    try:
        with open("/proc/%d/comm" % pid) as f:
            ours = f.read().strip() == "redis-server"
    except (OSError, TypeError):
        ours = False
    if ours:
        note("stopping redis-server %d" % pid)
        signal_pid(pid, signal.SIGTERM)
        deadline = time.time() + 5
        while alive(pid) and time.time() < deadline:
            time.sleep(0.1)
        if alive(pid):
            signal_pid(pid, signal.SIGKILL)
    if os.path.exists(pid_file):
        os.unlink(pid_file)


def main(argv):
    if len(argv) >= 2 and argv[0] == "stop-nginx":
        stop_nginx(argv[1], argv[2:])
    elif argv[:2] == ["stop-redis", "--dirs"]:
        for d in filter(os.path.isdir, argv[2:]):
            stop_redis(os.path.join(d, "redis.pid"))
            shutil.rmtree(d, ignore_errors=True)
    elif argv[:1] == ["stop-redis"]:
        for pid_file in argv[1:]:
            stop_redis(pid_file)
    else:
        print(__doc__, file=sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
