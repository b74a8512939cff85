"""GET on 127.0.0.1 and the tab-separated answers of the harness's Lua
locations."""
import urllib.error
import urllib.request

from harness import HarnessError


def get(port, path, timeout=10, label=""):
    """The body of GET http://127.0.0.1:port/path; HarnessError (prefixed
    with label) on an HTTP error status, a timeout or a refused connection."""
    url = "http://127.0.0.1:%d%s" % (port, path)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        raise HarnessError("%sGET %s: HTTP %d: %s" % (label, path, e.code, e.read().decode("utf-8", "replace")))
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise HarnessError("%sGET %s: %s" % (label, path, e))


def tsv(text):
    """{key: value} of the `key<TAB>value` lines of an answer."""
    out = {}
    for line in text.splitlines():
        if "\t" in line:
            k, v = line.split("\t", 1)
            out[k] = v
    return out
