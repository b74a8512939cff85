#!/usr/bin/env python3
"""A scripted bad Redis for the cluster tests (t/602): a proxy in front of the
test's real redis-server that forwards every command and its reply, except
the first command named by --on, which gets one scripted bad reply instead:

  line   '+' then endless bytes, no CRLF (until the client closes)
  bulk   '$999999999999' then endless bytes
  badlen '$1e300' (a length that is not a number), then nothing
  shapes the first reply to --on (XREAD) that carries entries is forwarded
         with five malformed entries put before the real ones: not an
         array, an id that is not one, three parts, an odd field list, a
         null value ("injected": 5)
  hold   not a bad reply: from the first --on command, the replies to the
         commands that follow each other within --hold-seconds are held,
         then sent in one write (so one read ends one pipeline's replies
         and carries the next one's), and forwarding goes on ("held": how
         many replies went in that write, "bursts": in how many bursts of
         commands they came)

A flood stops when the client closes, after --max-bytes or --max-seconds.
What happened is written to --state as JSON: {"fired": bool, "sent": bytes
of the bad reply sent, "closed": the client closed it}. Commands are handled
one at a time per connection (pipelines included); python3 stdlib only.

  fake_redis.py --port P --upstream 6379 --on XREAD --fault line --state f.json
"""
import argparse
import json
import os
import select
import socket
import threading
import time

LOCK = threading.Lock()
STATE = {"fired": False, "sent": 0, "closed": False}


def save(path):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(STATE, f)
    os.replace(tmp, path)


def read_value(f, raw):
    """Reads one RESP value from file `f`, appending its bytes to `raw`."""
    line = f.readline()
    if not line:
        raise EOFError
    raw += line
    kind, body = line[:1], line[1:-2]
    if kind == b"$":
        n = int(body)
        if n >= 0:
            raw += f.read(n + 2)
    elif kind == b"*":
        for _ in range(max(int(body), 0)):
            read_value(f, raw)
    return raw


# entries no real Redis sends (for --fault shapes), each refused for its shape
BAD_ENTRIES = [
    b":5\r\n",
    b"*2\r\n$3\r\nbad\r\n*0\r\n",
    b"*3\r\n$3\r\n0-1\r\n*0\r\n$0\r\n\r\n",
    b"*2\r\n$3\r\n0-2\r\n*1\r\n$1\r\nn\r\n",
    b"*2\r\n$3\r\n0-3\r\n*2\r\n$1\r\nn\r\n$-1\r\n",
]


def skip(buf, i):
    """Where the RESP value at `i` of `buf` ends."""
    end = buf.index(b"\r\n", i)
    kind, n, j = buf[i:i + 1], int(buf[i + 1:end]), end + 2
    if kind == b"$" and n >= 0:
        return j + n + 2
    if kind == b"*":
        for _ in range(max(n, 0)):
            j = skip(buf, j)
    return j


def with_bad_entries(reply):
    """An XREAD reply (one stream) with BAD_ENTRIES before its entries, or
    None when it carries no entries (a null reply, an error)."""
    if not reply.startswith(b"*1\r\n*2\r\n"):
        return None
    j = skip(reply, 8)
    end = reply.index(b"\r\n", j)
    n = int(reply[j + 1:end])
    if n <= 0:
        return None
    return reply[:j] + b"*%d\r\n" % (n + len(BAD_ENTRIES)) + b"".join(BAD_ENTRIES) + reply[end + 2:]


def command_name(raw):
    # *N\r\n$len\r\nNAME\r\n...
    parts = raw.split(b"\r\n")
    return parts[2].upper() if len(parts) > 2 else b""


def flood(client, head, opts):
    sent = 0
    chunk = b"x" * 65536
    deadline = time.time() + opts.max_seconds
    try:
        client.sendall(head)
        sent += len(head)
        while sent < opts.max_bytes and time.time() < deadline:
            client.sendall(chunk)
            sent += len(chunk)
    except OSError:
        STATE["closed"] = True
    return sent


def fire(client, opts):
    with LOCK:
        STATE["fired"] = True
        save(opts.state)
    if opts.fault == "line":
        sent = flood(client, b"+", opts)
    elif opts.fault == "bulk":
        sent = flood(client, b"$999999999999\r\n", opts)
    else:
        client.sendall(b"$1e300\r\n")
        sent = 8
        client.settimeout(opts.max_seconds)
        try:
            while client.recv(65536):
                pass
            STATE["closed"] = True
        except OSError:
            STATE["closed"] = True
    with LOCK:
        STATE["sent"] = sent
        save(opts.state)


def readable(client, cf, secs):
    """True when a command's bytes are buffered in `cf` or arrive on
    `client` within `secs` (never a timeout on the file: it would break it)."""
    client.setblocking(False)
    try:
        if cf.peek(1):
            return True
    except BlockingIOError:
        pass
    finally:
        client.setblocking(True)
    return bool(select.select([client], [], [], secs)[0])


def hold(client, cf, up, uf, cmd, opts):
    """--fault hold: see the module doc."""
    held, n, bursts = bytearray(), 0, 1
    while True:
        up.sendall(cmd)
        held += read_value(uf, bytearray())
        n += 1
        if not readable(client, cf, 0):
            if not readable(client, cf, opts.hold_seconds):
                break
            bursts += 1
        cmd = read_value(cf, bytearray())
    client.sendall(held)
    with LOCK:
        STATE["held"], STATE["bursts"] = n, bursts
        save(opts.state)


def serve(client, opts):
    try:
        up = socket.create_connection(("127.0.0.1", opts.upstream))
    except OSError:
        client.close()
        return
    cf, uf = client.makefile("rb"), up.makefile("rb")
    try:
        while True:
            cmd = read_value(cf, bytearray())
            with LOCK:
                hit = not STATE["fired"] and command_name(cmd) == opts.on.encode()
            if hit and opts.fault == "shapes":
                up.sendall(cmd)
                reply = read_value(uf, bytearray())
                bad = with_bad_entries(bytes(reply))
                if bad is not None:
                    with LOCK:
                        STATE["fired"], STATE["injected"] = True, len(BAD_ENTRIES)
                        save(opts.state)
                client.sendall(bad if bad is not None else reply)
                continue
            if hit and opts.fault == "hold":
                with LOCK:
                    STATE["fired"] = True
                hold(client, cf, up, uf, cmd, opts)
                continue
            if hit:
                fire(client, opts)
                return
            up.sendall(cmd)
            client.sendall(read_value(uf, bytearray()))
    except (EOFError, OSError, ValueError):
        pass
    finally:
        for s in (client, up):
            try:
                s.close()
            except OSError:
                pass


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", type=int, required=True)
    p.add_argument("--on", default="XREAD")
    p.add_argument("--fault", choices=["line", "bulk", "badlen", "hold", "shapes"], default="line")
    p.add_argument("--state", required=True)
    p.add_argument("--max-bytes", type=int, default=300 * 1024 * 1024)
    p.add_argument("--max-seconds", type=float, default=20)
    p.add_argument("--hold-seconds", type=float, default=0.3)
    p.add_argument("--lifetime", type=float, default=120)
    opts = p.parse_args()
    save(opts.state)
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", opts.port))
    srv.listen(64)
    srv.settimeout(1)
    end = time.time() + opts.lifetime
    while time.time() < end:
        try:
            c, _ = srv.accept()
        except socket.timeout:
            continue
        threading.Thread(target=serve, args=(c, opts), daemon=True).start()


if __name__ == "__main__":
    main()
