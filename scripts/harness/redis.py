"""One redis-server controller: a child of the driver (its own session) on
127.0.0.1, with a fresh temp dir (its log, and its data when persistent)
next to the driver's prefix, restartable, stopped with TERM or KILL."""
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from harness import HarnessError
from harness.proc import free_port, tail


class Redis:
    """redis-server for the run of a driver whose prefix is `prefix`: its dir
    is prefix-redis-XXXX (made now), its port the first free one from `port`
    on (None: one the kernel picks), none of `avoid`. `options`: more
    redis-server arguments (persistence). Its pid goes to `pid_file`
    (default dir/redis.pid) for the shell wrapper's safety net."""

    def __init__(self, prefix, port=None, avoid=(), options=(), pid_file=None, server="redis-server"):
        self.port = free_port(port, avoid)
        if self.port is None:
            raise HarnessError("no free port for redis-server" + (
                " in %d..%d" % (port, port + 49) if port is not None else ""))
        parent = os.path.dirname(prefix)
        os.makedirs(parent, exist_ok=True)
        self.dir = tempfile.mkdtemp(prefix=os.path.basename(prefix) + "-redis-", dir=parent)
        self.log = os.path.join(self.dir, "redis.log")
        self.pid_file = pid_file or os.path.join(self.dir, "redis.pid")
        self.options, self.server = list(options), server
        self.proc = None
        self.starts = 0

    def start(self):
        """Starts it and waits (10 s at most) until it answers PING."""
        self.proc = subprocess.Popen(
            [self.server, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
             "--daemonize", "no", "--logfile", self.log] + self.options,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        self.starts += 1
        with open(self.pid_file, "w") as f:
            f.write("%d\n" % self.proc.pid)
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise HarnessError("redis-server exited with %s (log %s):\n%s" % (
                    self.proc.returncode, self.log, tail(self.log)))
            if self.ping():
                return self
            time.sleep(0.02)
        raise HarnessError("redis-server on port %d did not answer PING within 10 s" % self.port)

    def up(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, how="term"):
        """SIGTERM (how="term") or SIGKILL ("kill"), waited for; a KILL after
        10 s."""
        if not self.up():
            return
        self.proc.send_signal(signal.SIGKILL if how == "kill" else signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def remove(self):
        """Its dir (data, log) goes."""
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        self.remove()
        return False

    # -- talking to it ----------------------------------------------------------
    def ping(self, timeout=0.2):
        try:
            return self.cmd("PING", timeout=timeout) == "PONG"
        except (OSError, HarnessError):
            return False

    def cmd(self, *args, timeout=5):
        """One command over RESP; the reply (str, int, list, or None); an
        error reply raises HarnessError."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            s.sendall(request(*args))
            return read_reply(s.makefile("rb"))

    def cli(self, *args):
        """redis-cli's output for one command (an error reply is its text)."""
        r = subprocess.run(["redis-cli", "-p", str(self.port)] + list(args), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=10)
        return r.stdout.strip()

    def version(self):
        m = re.search(r"redis_version:(\S+)", self.cmd("INFO", "server") or "")
        return m.group(1) if m else "?"


def request(*args):
    """One command in RESP, bytes."""
    return ("*%d\r\n" % len(args) + "".join("$%d\r\n%s\r\n" % (len(str(a).encode()), a) for a in args)).encode()


def read_reply(f):
    """One reply from the file f (a socket's makefile("rb"))."""
    line = f.readline().rstrip(b"\r\n")
    if not line:
        raise OSError("redis closed the connection")
    t, rest = line[:1], line[1:].decode()
    if t == b"+":
        return rest
    if t == b"-":
        raise HarnessError("redis: " + rest)
    if t == b":":
        return int(rest)
    if t == b"$":
        n = int(rest)
        if n < 0:
            return None
        return f.read(n + 2)[:-2].decode("utf-8", "replace")
    if t == b"*":
        n = int(rest)
        return None if n < 0 else [read_reply(f) for _ in range(n)]
    raise OSError("unexpected redis reply %r" % line)
