"""The scripts' harness (stdlib only): what scripts/soak.py,
scripts/soak_cluster.py and scripts/bench*.py share.

  harness.proc      processes: signals, pid files, /proc (workers, fds, RSS,
                    CPU), free ports, a file's tail
  harness.nginx     one nginx controller: start a prefix with a rendered conf,
                    reload (HUP), kill a worker, stop (QUIT, TERM, KILL)
  harness.redis     one redis-server controller (a child with a temp dir)
  harness.fetch     GET on 127.0.0.1, tab-separated answers
  harness.template  nginx.conf templates (nginx-conf/*/*.tmpl, %NAME%)
  harness.cli       command-line options with environment-variable defaults
  python3 -m harness  the shell wrappers' safety net (stop what a run left)

The drivers run as `python3 scripts/X.py`, so scripts/ is on sys.path.
Environment: NGINX_BIN (/usr/sbin/nginx), NGINX_MODULES_DIR
(/usr/lib/nginx/modules).
"""
import hashlib
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NGINX_BIN = os.environ.get("NGINX_BIN", "/usr/sbin/nginx")
MODULES_DIR = os.environ.get("NGINX_MODULES_DIR", "/usr/lib/nginx/modules")
MODULE_SO = os.path.join(ROOT, "build", "ngx_http_worker_events_module.so")
CONF_DIR = os.path.join(ROOT, "nginx-conf")


class HarnessError(Exception):
    """A run cannot go on (nginx or redis-server would not start, a request
    failed, ...); the drivers print it as their FAIL line."""


def note(msg):
    """A progress line on stderr (`==> msg`)."""
    print("==> " + msg, file=sys.stderr, flush=True)


def source_tree():
    """`git describe --always --dirty` of the checkout, or "?"."""
    return subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True).stdout.strip() or "?"


def sha256(path):
    """The file's sha256, hex."""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()
