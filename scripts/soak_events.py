"""The resty.events part of a soak report (scripts/soak_report.py): its own
broadcasts (stream re), the cross-API streams (re2we: resty.events broadcasts
to resty.worker.events handlers; we2re: the other way), and unique keys.
What the workers record is described in nginx-conf/soak/lua/soak_re.lua."""
import bisect

# a SIGKILL sent this close to a key's window may have hit its claimer between
# the claim and the soak's count of the run (s); so may one sent before the end
# of a SIGSTOP window that overlaps it (the stopped worker may hold the lock of
# the dict the count goes to: the claimer then waits for it)
KILL_MARGIN = 0.05


def kv(s):
    out = {}
    for part in s.split():
        if "=" in part:
            k, v = part.split("=", 1)
            try:
                out[k] = float(v)
            except ValueError:
                out[k] = v
    return out


def split_key(rest):
    """"<token>:<n>" -> (token, n), or None."""
    tok, _, n = rest.rpartition(":")
    return (tok, int(n)) if tok and n.isdigit() else None


def consumer_lost(acc):
    """resty.events consumers' stats().lost, once per receiver lifetime (streams re and
    we2re read the same consumer: the larger of the two last values they saw)."""
    per = {}
    for k, v in acc.items():
        for stream in ("re", "we2re"):
            if k.startswith("rx:%s:" % stream):
                tok = k[len("rx:%s:" % stream):]
                per[tok] = max(per.get(tok, 0), int(kv(v)["lost"]))
    return sum(per.values())


def unique(u, kill_times, windows, mode):
    """Counts over every unique key (see soak_re.lua). mode "api": a key read
    without loss must run exactly once in resty.events callbacks; "zone": exactly
    once in the handlers of either API."""
    published, failed, runs = {}, set(), {"re": {}, "we": {}}
    vouch = {}  # token -> [(lo, hi, t0, t1)]
    out = dict.fromkeys(("keys", "fails", "once", "by_re", "by_we", "both", "twice", "never",
                         "vouched", "vouched_never", "excused", "unknown"), 0)
    out["never_list"] = []  # (token, n, t0, t1, (nearest SIGKILL - t1, its pid)) of vouched keys never run
    for k, v in u.items():
        head, _, rest = k.partition(":")
        if head == "ut":
            f = kv(v)
            published[rest] = int(f["keys"])
            out["fails"] += int(f["fails"])
        elif head == "uf":
            key = split_key(rest)
            if key:
                failed.add(key)
        elif head in ("re", "we") and rest not in ("re", "we"):
            key = split_key(rest)
            if key:
                runs[head][key] = int(v)
        elif head == "uv":
            for part in v.split(";"):
                f = part.split()
                if len(f) == 5:
                    vouch.setdefault(f[0], []).append((int(f[1]), int(f[2]), float(f[3]), float(f[4])))
    for api in ("re", "we"):
        out["rep_" + api] = int(u.get("rep:" + api, 0))
        out["bad_" + api] = int(u.get("bad:" + api, 0))
    killed = sorted(kill_times)
    kills = [t for t, _ in killed]

    def kill_in(lo, hi):
        hi = max([hi] + [e for s, e in windows if s <= hi and e >= lo])  # all closed after the run
        i = bisect.bisect_left(kills, lo - KILL_MARGIN)
        return i < len(kills) and kills[i] <= hi + KILL_MARGIN

    for tok, n_keys in published.items():
        out["keys"] += n_keys
        for n in range(1, n_keys + 1):
            key = (tok, n)
            r_re, r_we = runs["re"].get(key, 0), runs["we"].get(key, 0)
            if max(r_re, r_we) > 1 or (mode == "zone" and r_re + r_we > 1):
                out["twice"] += 1
            elif r_re + r_we == 0:
                out["never"] += 0 if key in failed else 1
            elif r_re and r_we:
                out["both"] += 1
            else:
                out["once"] += 1
                out["by_re" if r_re else "by_we"] += 1
    out["unknown"] = sum(1 for api in runs for key in runs[api]
                         if key[0] not in published or key[1] > published[key[0]])
    # keys read without loss by some consumer: they must have run
    for tok, ivs in vouch.items():
        cover = {}  # n -> (latest t0, earliest t1) over the intervals holding it
        for lo, hi, t0, t1 in ivs:
            for n in range(lo, hi + 1):
                a, b = cover.get(n, (t0, t1))
                cover[n] = (max(a, t0), min(b, t1))
        for n, (t0, t1) in cover.items():
            key = (tok, n)
            if key in failed:
                continue
            out["vouched"] += 1
            r_re, r_we = runs["re"].get(key, 0), runs["we"].get(key, 0)
            ran = r_re if mode == "api" else r_re + r_we
            if ran == 0:
                out["vouched_never"] += 1
                if kill_in(t0, t1):
                    out["excused"] += 1
                near = min(((k - t1, pid) for k, pid in killed), key=lambda x: abs(x[0]), default=None)
                out["never_list"].append((tok, n, t0, t1, near))
    return out


def stream_line(name, what, t, lost_what):
    return ("  %-6s %s: delivered %d to %d receiver lifetimes; missing %d, lost reported %d (%s); "
            "unreported %d, late %d, bad %d, dup %d"
            % (name, what, t["seen"], t["receivers"], t["missing"], t["lost"], lost_what,
               t["unreported"], t["late"], t["bad"], t["dup"]))


def evaluate(tot, acc, u, kill_times, windows, mode, t_start):
    """(checks, summary lines) of the resty.events part."""
    re_, re2we, we2re = tot["re"], tot["re2we"], tot["we2re"]
    q = unique(u, kill_times, windows, mode)
    streams = (("re", re_), ("re2we", re2we), ("we2re", we2re))
    unexcused = q["vouched_never"] - q["excused"]
    once_in = "resty.events callbacks" if mode == "api" else "either API's handlers"
    checks = []
    for name, t in streams:
        checks += [
            (t["unreported"] == 0, "%s: lost unreported %d (missing beyond the lost the API reported)"
             % (name, t["unreported"])),
            (t["late"] == 0, "%s: gaps reported late %d" % (name, t["late"])),
            (t["bad"] == 0, "%s: bad payloads %d" % (name, t["bad"])),
            (t["dup"] == 0, "%s: duplicates %d" % (name, t["dup"])),
            (t["seen"] > 0 or t["posted"] == 0, "%s: nothing delivered (%d posted)" % (name, t["posted"])),
        ]
    checks += [
        (re_["foreign"] == 0, "resty.events callbacks got %d events of other sources (resty.worker.events' "
         "own, a lost event)" % re_["foreign"]),
        (q["twice"] == 0, "unique keys run more than once: %d" % q["twice"]),
        (q["rep_re"] + q["rep_we"] == 0, "repeats of a live unique key ran: %d (must be dropped at publish)"
         % (q["rep_re"] + q["rep_we"])),
        (q["bad_re"] + q["bad_we"] == 0, "bad unique payloads %d" % (q["bad_re"] + q["bad_we"])),
        (unexcused == 0, "unique keys read without loss that never ran in %s: %d (%d more near a SIGKILL)"
         % (once_in, unexcused, q["excused"])),
        (q["fails"] == 0, "failed unique publishes %d" % q["fails"]),
        (q["keys"] == 0 or re_["posted"] == 0 or q["vouched"] > 0,
         "no unique key was read without loss (nothing checked)"),
    ]
    lines = [
        "resty.events    published %d broadcasts (\"all\") by %d poster lifetimes, failed %d; %d unique keys, "
        "failed %d" % (re_["posted"], re_["posters"], re_["fails"], q["keys"], q["fails"]),
        stream_line("re", "its own broadcasts to resty.events callbacks", re_, "stats().lost"),
        stream_line("re2we", "them to resty.worker.events handlers", re2we, "lost events"),
        stream_line("we2re", "resty.worker.events posts to resty.events callbacks", we2re, "stats().lost"),
        "  lost by resty.events consumers (stats().lost, once per lifetime) %d; events of other sources "
        "in its callbacks %d" % (consumer_lost(acc), re_["foreign"]),
        "unique keys     %d: ran once %d (by resty.events %d, by resty.worker.events handlers %d), in both APIs "
        "%d, more than once%s %d, never %d" % (
            q["keys"], q["once"], q["by_re"], q["by_we"], q["both"],
            " in an API" if mode == "api" else "", q["twice"], q["never"]),
        "                read without loss %d: never ran in %s %d (a SIGKILL near it: %d); repeats run %d; "
        "bad %d; runs of keys published after their poster's last record %d" % (
            q["vouched"], once_in, q["vouched_never"], q["excused"], q["rep_re"] + q["rep_we"],
            q["bad_re"] + q["bad_we"], q["unknown"]),
    ]
    for tok, n, t0, t1, near in sorted(q["never_list"], key=lambda x: x[2])[:5]:
        lines.append("                never ran: key %s:%d, published after t=%.2f s, read by t=%.2f s; nearest "
                     "SIGKILL %s" % (tok, n, t0 - t_start, t1 - t_start,
                                     "none" if near is None else "%+.2f s from the read (pid %d)" % near))
    return checks, lines
