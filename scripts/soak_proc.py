"""Process helpers of the soak drivers (scripts/soak.py, scripts/soak_cluster.py;
scripts/bench_cluster.py uses port_free): signals, what /proc says about
nginx's processes, free ports, numeric settings from the environment."""
import os
import socket
import sys


def signal_pid(pid, sig):
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


def alive(pid):
    return signal_pid(pid, 0)


def read_pid(path):
    try:
        with open(path) as f:
            return int(f.read().strip() or 0) or None
    except (OSError, ValueError):
        return None


CLK_TCK = os.sysconf("SC_CLK_TCK")
with open("/proc/stat") as _f:
    BOOT_TIME = next(int(line.split()[1]) for line in _f if line.startswith("btime"))


def workers_of(master):
    """{pid: (state, start time as epoch s, shutting_down)} of the master's worker processes."""
    out = {}
    for d in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/stat" % d) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) != master:
                continue
            with open("/proc/%s/cmdline" % d, "rb") as f:
                cmd = f.read().decode("utf-8", "replace")
        except (OSError, IndexError):
            continue
        if "worker process" in cmd:
            out[int(d)] = (fields[0], BOOT_TIME + int(fields[19]) / CLK_TCK, "shutting down" in cmd)
    return out


def where(pid):
    """State and kernel function of a process, e.g. "S futex_wait_queue" (blocked on a lock) or "R"."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        with open("/proc/%d/stack" % pid) as f:
            frame = f.readline().split()
        return state + (" " + frame[1].split("+")[0] if state != "R" and len(frame) > 1 else "")
    except (OSError, IndexError):
        return "?"


def fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return -1


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def port_free(port):
    """True when nothing listens on 127.0.0.1:port."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def env_num(name, default, kind=float):
    """The environment variable `name` (or `default`) as a number; exits with
    a clear message when it is not one."""
    try:
        return kind(os.environ.get(name, default))
    except ValueError:
        sys.exit("error: %s=%r is not a number" % (name, os.environ.get(name)))
