#!/usr/bin/env python3
"""`scripts/bench wake`: what waking an idle process costs on this host, per
kernel transport, without nginx: the reference under the `latency` targets.

The module wakes another worker of its generation with a write to that
worker's eventfd, and one of another generation with a datagram on an
abstract unix socket (src/runtime/notify.rs); the worker's nginx event loop
(epoll) reads either. The compare's "pipe floor" is a pipe read by a
blocking read(). This runs them all the same way: a child waits (blocking
read, or epoll_wait then a non-blocking read), the parent writes a
CLOCK_MONOTONIC stamp every --period s; the child's receive time minus the
stamp is one sample. Transports alternate within each round, the order
rotated per round.

Then the fan-out (--fanout N, 0: skip): N children wait in epoll, the parent
wakes all N every --period s, either with a write to each one's eventfd
(the module's way) or with one write to an eventfd they all watch: the
sender's time, and when the first and the last child woke (p50 over the
wake-ups).

    scripts/bench wake [--count 200] [--period 0.02] [--rounds 3] [--fanout 3]

Prints one key=value line per measurement (scenario=wake_floor,
scenario=wake_fanout), then the median (range) over the rounds. Python adds
a few µs on both sides, the same for every transport.
"""
import mmap
import argparse
import os
import select
import socket
import statistics
import time

TRANSPORTS = ("pipe", "eventfd", "unix-dgram", "unix-stream")
_names = [0]  # unix-dgram names: one per channel (a closed one may linger until collected)
WAITS = ("read", "epoll")


def pct(xs, p):
    return xs[min(len(xs) - 1, len(xs) * p // 100)]


class Channel:
    """One transport: the child's fd to wait on, the parent's send(stamp)."""

    def __init__(self, kind):
        self.kind = kind
        if kind == "pipe":
            self.rfd, self._w = os.pipe()
            self.send = lambda b: os.write(self._w, b)
        elif kind == "eventfd":
            # carries no bytes: the child reads the stamp from a second pipe
            self.rfd = os.eventfd(0)
            self._sr, self._sw = os.pipe()
            self.send = self._send_eventfd
        elif kind == "unix-dgram":
            _names[0] += 1
            name = b"\0ngx-worker-events-bench-wake/%d/%d" % (os.getpid(), _names[0])
            self._r = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._r.bind(name)
            self._s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.rfd = self._r.fileno()
            self.send = lambda b: self._s.sendto(b, name)
        elif kind == "unix-stream":
            self._r, self._s = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            self.rfd = self._r.fileno()
            self.send = self._s.send
        else:
            raise ValueError(kind)

    def _send_eventfd(self, b):
        os.write(self._sw, b)
        os.eventfd_write(self.rfd, 1)

    def recv(self):
        if self.kind == "eventfd":
            os.eventfd_read(self.rfd)
            return os.read(self._sr, 8)
        return os.read(self.rfd, 8)


def measure(kind, wait, count, period):
    ch = Channel(kind)
    rr, rw = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            out = []
            ep = None
            if wait == "epoll":
                os.set_blocking(ch.rfd, False)
                ep = select.epoll()
                ep.register(ch.rfd, select.EPOLLIN)
            while len(out) < count:
                if ep is not None:
                    ep.poll(1)
                try:
                    d = ch.recv()
                except BlockingIOError:
                    continue
                out.append((time.monotonic_ns() - int.from_bytes(d, "little")) / 1000.0)
            os.write(rw, ",".join("%.1f" % x for x in out).encode())
        finally:
            os._exit(0)
    os.close(rw)
    sends = []
    for _ in range(count):
        t0 = time.monotonic_ns()
        ch.send(t0.to_bytes(8, "little"))
        sends.append((time.monotonic_ns() - t0) / 1000.0)
        time.sleep(period)
    data = read_all(rr)
    os.close(rr)
    os.waitpid(pid, 0)
    s = sorted(float(x) for x in data.decode().split(",") if x)
    sends.sort()
    return dict(p50=pct(s, 50), p90=pct(s, 90), send=pct(sends, 50), n=len(s))


def read_all(fd):
    data = b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return data
        data += chunk


def measure_fanout(mode, n, count, period):
    """n children in epoll; the parent rings each one's eventfd (mode "each")
    or one eventfd they all watch ("shared"); the stamp is in shared memory."""
    stamp = mmap.mmap(-1, 8)
    own = [os.eventfd(0, os.EFD_NONBLOCK) for _ in range(n)]
    shared = os.eventfd(0, os.EFD_NONBLOCK)
    kids = []
    for i in range(n):
        rr, rw = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                ep = select.epoll()
                ep.register(shared if mode == "shared" else own[i], select.EPOLLIN | select.EPOLLET)
                out = []
                while len(out) < count:
                    if ep.poll(1):
                        out.append((time.monotonic_ns() - int.from_bytes(stamp[:8], "little")) / 1000.0)
                os.write(rw, ",".join("%.1f" % x for x in out).encode())
            finally:
                os._exit(0)
        os.close(rw)
        kids.append((pid, rr))
    time.sleep(0.2)
    sends = []
    for _ in range(count):
        time.sleep(period)
        t0 = time.monotonic_ns()
        stamp[:8] = t0.to_bytes(8, "little")
        for fd in ([shared] if mode == "shared" else own):
            os.eventfd_write(fd, 1)
        sends.append((time.monotonic_ns() - t0) / 1000.0)
    per_kid = []
    for pid, rr in kids:
        per_kid.append([float(x) for x in read_all(rr).decode().split(",") if x])
        os.close(rr)
        os.waitpid(pid, 0)
    rounds = [sorted(xs) for xs in zip(*per_kid)]
    first = sorted(r[0] for r in rounds)
    last = sorted(r[-1] for r in rounds)
    sends.sort()
    return dict(first=pct(first, 50), last=pct(last, 50), send=pct(sends, 50), n=len(rounds))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--period", type=float, default=0.02)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--fanout", type=int, default=3, help="children woken at once (0: skip)")
    a = ap.parse_args()
    cases = [(k, w) for k in TRANSPORTS for w in WAITS]
    res = {c: [] for c in cases}
    for rnd in range(a.rounds):
        order = cases[rnd % len(cases):] + cases[:rnd % len(cases)]
        for kind, wait in order:
            r = measure(kind, wait, a.count, a.period)
            res[(kind, wait)].append(r)
            print("scenario=wake_floor transport=%s wait=%s round=%d count=%d period=%g "
                  "p50_us=%.1f p90_us=%.1f send_p50_us=%.1f received=%d"
                  % (kind, wait, rnd + 1, a.count, a.period, r["p50"], r["p90"], r["send"], r["n"]),
                  flush=True)

    def cell(xs):
        return "%.0f (%.0f–%.0f)" % (statistics.median(xs), min(xs), max(xs))

    print("\n| transport | wait | p50 µs | p90 µs | sender's write µs |")
    print("|---|---|---|---|---|")
    for kind, wait in cases:
        rs = res[(kind, wait)]
        print("| %s | %s | %s | %s | %s |" % (kind, wait, cell([r["p50"] for r in rs]),
                                            cell([r["p90"] for r in rs]), cell([r["send"] for r in rs])))
    print("\nThe module: eventfd + epoll (same generation), unix-dgram + epoll (across a reload). "
          "The compare's pipe floor: pipe + read.")
    if a.fanout <= 0:
        return
    fan = {m: [] for m in ("each", "shared")}
    for rnd in range(a.rounds):
        for mode in (("each", "shared") if rnd % 2 == 0 else ("shared", "each")):
            r = measure_fanout(mode, a.fanout, a.count, a.period)
            fan[mode].append(r)
            print("scenario=wake_fanout mode=%s children=%d round=%d first_p50_us=%.1f last_p50_us=%.1f "
                  "send_p50_us=%.1f wakeups=%d" % (mode, a.fanout, rnd + 1, r["first"], r["last"], r["send"],
                                                   r["n"]), flush=True)
    print("\n| waking %d sleeping children | first woken p50 µs | last woken p50 µs | sender's writes µs |"
          % a.fanout)
    print("|---|---|---|---|")
    for mode, label in (("each", "a write to each one's eventfd"), ("shared", "one write to a shared eventfd")):
        rs = fan[mode]
        print("| %s | %s | %s | %s |" % (label, cell([r["first"] for r in rs]), cell([r["last"] for r in rs]),
                                       cell([r["send"] for r in rs])))


if __name__ == "__main__":
    main()
