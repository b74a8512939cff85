"""Processes: signals, pid files, what /proc says about them, free ports."""
import os
import socket

CLK_TCK = os.sysconf("SC_CLK_TCK")
with open("/proc/stat") as _f:
    BOOT_TIME = next(int(line.split()[1]) for line in _f if line.startswith("btime"))


def signal_pid(pid, sig):
    """Sends sig; False if there is no such process."""
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def read_pid(path):
    """The pid in a pid file, or None (no file, empty, not a number)."""
    try:
        with open(path) as f:
            return int(f.read().strip() or 0) or None
    except (OSError, ValueError):
        return None


def _stat(pid):
    """The fields of /proc/pid/stat after the command name (state first)."""
    with open("/proc/%s/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()


def children_of(ppid):
    """The pids of ppid's child processes."""
    out = []
    for d in filter(str.isdigit, os.listdir("/proc")):
        try:
            if int(_stat(d)[1]) == ppid:
                out.append(int(d))
        except (OSError, IndexError):
            continue
    return out


def workers_of(master):
    """{pid: (state, start time as epoch s, shutting_down)} of an nginx master's worker processes."""
    out = {}
    for d in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = _stat(d)
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
        state = _stat(pid)[0]
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


def proc_cpu(pid):
    """(utime+stime in ms, on-CPU ns summed over threads, run count)"""
    fields = _stat(pid)
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    cpu_ms = ticks * 1000.0 / CLK_TCK
    ns = runs = 0
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                a = f.read().split()
            ns += int(a[0])
            runs += int(a[2])
    except OSError:
        ns = runs = -1
    return cpu_ms, ns, runs


def port_error(port):
    """None when nothing listens on 127.0.0.1:port, else why it cannot be bound."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        return None
    except OSError as e:
        return e
    finally:
        s.close()


def port_free(port):
    """True when nothing listens on 127.0.0.1:port."""
    return port_error(port) is None


def free_port(start=None, avoid=(), tries=50):
    """A free port on 127.0.0.1, none of `avoid`: the first from `start` on
    (`tries` of them), or, with start None, one the kernel picks. None if none."""
    if start is not None:
        return next((p for p in range(start, start + tries) if p not in avoid and port_free(p)), None)
    for _ in range(tries):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if port not in avoid:
            return port
    return None


def tail(path, n=20):
    """The last n lines of a file ("" if it cannot be read)."""
    try:
        with open(path, errors="replace") as f:
            lines = f.readlines()
        return "".join(lines[-n:])
    except OSError:
        return ""
