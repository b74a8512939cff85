#!/usr/bin/env python3
"""`scripts/bench wake`: what waking an idle process costs on this host, per
kernel transport, without nginx: the reference under the `latency` targets.

The module wakes another worker with one datagram on an abstract unix socket
(src/runtime/notify.rs) that the worker's nginx event loop (epoll) reads; the
compare's "pipe floor" is a pipe read by a blocking read(). This runs both,
and the transports in between, the same way: a child waits (blocking read, or
epoll_wait then a non-blocking read), the parent writes a CLOCK_MONOTONIC
stamp every --period s; the child's receive time minus the stamp is one
sample. Transports alternate within each round, the order rotated per round.

    scripts/bench wake [--count 200] [--period 0.02] [--rounds 3]

Prints one key=value line per measurement (scenario=wake_floor), then the
median (range) over the rounds of p50, p90 and the sender's write time.
Python adds a few µs on both sides, the same for every transport.
"""
import argparse
import os
import select
import socket
import statistics
import time

TRANSPORTS = ("pipe", "eventfd", "unix-dgram", "unix-stream")
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
            name = b"\0ngx-worker-events-bench-wake/%d" % os.getpid()
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
    data = b""
    while True:
        chunk = os.read(rr, 65536)
        if not chunk:
            break
        data += chunk
    os.close(rr)
    os.waitpid(pid, 0)
    s = sorted(float(x) for x in data.decode().split(",") if x)
    sends.sort()
    return dict(p50=pct(s, 50), p90=pct(s, 90), send=pct(sends, 50), n=len(s))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--period", type=float, default=0.02)
    ap.add_argument("--rounds", type=int, default=3)
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
    print("\nThe module: unix-dgram + epoll. The compare's pipe floor: pipe + read.")


if __name__ == "__main__":
    main()
