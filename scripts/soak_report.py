"""The end of a soak run (scripts/soak.py): the workers' counters summed, slot
accounting, the error log scanned, the invariants checked, and the summary.
The resty.events part (its streams and unique keys) is in soak_events.py."""
import re

import soak_events
from soak_events import kv


def slot_accounting(acc, taken, live, killed):
    """Per zone: (stale, leaked). stats().workers counts a SIGKILLed worker's slot
    until a later worker reuses it; those are stale. A slot is explained when its
    latest holder (slot:<token> records, by order) was SIGKILLed; a worker killed
    before it recorded its slot may hold one too. The rest is leaked."""
    recs = [kv(v) for k, v in acc.items() if k.startswith("slot:")]
    recorded = {int(r["pid"]) for r in recs}
    unrecorded = sum(1 for p in killed if p not in recorded)
    out = {}
    for zone in ("ev", "slow"):
        latest = {}
        for r in recs:
            i = int(r[zone])
            if i >= 0 and (i not in latest or r["order"] > latest[i]["order"]):
                latest[i] = r
        by_kill = sum(1 for r in latest.values() if int(r["pid"]) in killed and int(r["pid"]) not in live)
        stale = taken[zone] - len(live)
        out[zone] = (stale, max(0, stale - by_kill - unrecorded))
    return out


LOG_SIGNAL = re.compile(r"worker process (\d+) exited on signal (\d+)")


def scan_log(path, killed):
    """(crashes, harness errors, other alert/crit/emerg lines, {message: count} of [error] lines)."""
    crashes, harness, alerts, errors = [], [], [], {}
    try:
        f = open(path, errors="replace")
    except OSError as e:
        return [], ["cannot read the error log: %s" % e], [], {}
    with f:
        for line in f:
            m = LOG_SIGNAL.search(line)
            if m:
                if m.group(2) != "9" or int(m.group(1)) not in killed:
                    crashes.append(line.strip())
                continue
            if "[error]" in line or "[warn]" in line:
                msg = re.sub(r"^.*?\] \d+#\d+: (\*\d+ )?", "", line.strip())
                if "soak:" in msg or "event callback failed" in msg or "lua entry thread aborted" in msg:
                    harness.append(msg)
                msg = re.sub(r"\d+", "N", msg.split(", context:")[0].split(" while ")[0])[:140]
                errors[msg] = errors.get(msg, 0) + 1
            elif re.search(r"\[(alert|crit|emerg)\]", line) and "was locked by" not in line:
                alerts.append(line.strip())
    return crashes, harness, alerts, errors


# stream -> the poster zone its events come from (soak.lua: tx:<zone>, rx:<stream>)
STREAMS = {"ev": "ev", "slow": "slow", "re": "re", "re2we": "re", "we2re": "ev"}


def summarise(acc):
    tot = {}
    for zone, txzone in STREAMS.items():
        t = dict.fromkeys(("posted", "fails", "seen", "missing", "lost", "lostrep", "bad", "dup", "late",
                           "unreported", "receivers", "posters", "foreign"), 0)
        for k, v in acc.items():
            f = kv(v)
            if k.startswith("tx:%s:" % txzone):
                t["posted"] += int(f["posted"])
                t["fails"] += int(f["fails"])
                t["posters"] += 1
            elif k.startswith("rx:%s:" % zone):
                for n in ("seen", "missing", "lost", "lostrep", "bad", "dup", "late"):
                    t[n] += int(f[n])
                t["foreign"] += int(f.get("foreign", 0))
                t["unreported"] += max(0, int(f["missing"]) - int(f["lost"]))
                t["receivers"] += 1
        tot[zone] = t
    return tot


def report(soak, acc, udict, r):
    """Prints the summary; returns the exit status (1 if an invariant broke)."""
    procs, before, after, own = r["procs"], r["before"], r["after"], r["own"]
    ev_slots, slow_slots = r["slots"]["ev"], r["slots"]["slow"]
    fd_slack, hb_stall, seconds = r["fd_slack"], r["hb_stall"], r["seconds"]
    tot = summarise(acc)
    crashes, harness, alerts, errors = scan_log(r["error_log"], soak.killed)
    slots = slot_accounting(acc, r["slots"], set(procs), soak.killed)
    ev, slow = tot["ev"], tot["slow"]
    both = {k: ev[k] + slow[k] for k in ev}
    re_checks, re_lines = soak_events.evaluate(tot, acc, udict, soak.kill_times, soak.windows, r["unique_mode"],
                                               soak.t0)
    leaked_slots = max(slots["ev"][1], slots["slow"][1])
    leaked_fds = max(0, after["worker_fds"] - before["worker_fds"] - fd_slack,
                     after["master_fds"] - before["master_fds"] - fd_slack)
    checks = [
        (both["unreported"] == 0, "lost unreported %d (events missing from a receiver's stream beyond its "
         "lost reports)" % both["unreported"]),
        (both["late"] == 0, "gaps reported late %d (a gap not reported before the event after it)" % both["late"]),
        (both["bad"] == 0, "bad payloads %d" % both["bad"]),
        (both["dup"] == 0, "duplicates %d" % both["dup"]),
        (not soak.stalls, "stalls %d: %s" % (len(soak.stalls), "; ".join("%s: %s" % x for x in soak.stalls[:3]))),
        (leaked_slots == 0, "leaked slots %d (stats().workers ev %d, slow %d for %d live workers, beyond "
         "the slots of SIGKILLed workers)" % (leaked_slots, ev_slots, slow_slots, len(procs))),
        (not any("no free worker slot" in m for m in errors), "the slot table was full"),
        (len(set(own)) == len(procs) and min(own, default=-1) >= 0,
         "live workers' slots %s (each live worker must hold its own)" % own),
        (leaked_fds == 0, "leaked fds: worker %d -> %d, master %d -> %d (slack %d)" % (
            before["worker_fds"], after["worker_fds"], before["master_fds"], after["master_fds"], fd_slack)),
        (r["master_alive"], "the master died"),
        (r["clean_quit"], "the final QUIT did not stop nginx cleanly within 15 s"),
        (not crashes, "crashed workers %d: %s" % (len(crashes), crashes[:1])),
        (not harness, "harness errors %d: %s" % (len(harness), harness[:1])),
        (not alerts, "alert/crit/emerg lines %d: %s" % (len(alerts), alerts[:1])),
        (int(acc.get("accfail", "0")) == 0, "soak_acc was full: counters missing"),
        (ev["posted"] > 0 and ev["seen"] > 0, "nothing was posted or delivered"),
        (slow["lostrep"] > 0 or slow["posted"] == 0, "the slow consumer never fell behind (no lost reports)"),
    ] + re_checks
    fails = [what for ok, what in checks if not ok]
    print("== soak summary: %g s, %s" % (seconds, soak.counts_str()))
    print("posted          %d (ev %d, slow %d) by %d poster lifetimes; failed posts %d"
          % (both["posted"], ev["posted"], slow["posted"], ev["posters"], both["fails"]))
    print("delivered       %d (ev %d, slow %d) to %d receiver lifetimes"
          % (both["seen"], ev["seen"], slow["seen"], ev["receivers"]))
    print("lost reported   %d (ev %d, slow %d) in %d lost events; missing from the streams %d"
          % (both["lost"], ev["lost"], slow["lost"], both["lostrep"], both["missing"]))
    print("lost unreported %d" % both["unreported"])
    print("late gaps       %d" % both["late"])
    print("bad payloads    %d" % both["bad"])
    print("duplicates      %d" % both["dup"])
    for line in re_lines:
        print(line)
    kinds = {}
    for what, _ in soak.blocked:
        kinds[what] = kinds.get(what, 0) + 1
    print("stalls          %d (outside SIGSTOP windows; while a worker was stopped, not counted: %d%s)"
          % (len(soak.stalls), len(soak.blocked), "".join(" %s %d" % kv_ for kv_ in sorted(kinds.items()))))
    print("heartbeats      longest gap of a running worker outside SIGSTOP windows %.1f s (stall above %g s)"
          % (soak.max_gap, hb_stall))
    lat = sorted(soak.resume_lat)
    if lat:
        print("resume          a SIGSTOPped worker's first heartbeat after SIGCONT (catching up): "
              "median %.2f s, max %.2f s (%d workers)"
              % (lat[len(lat) // 2], lat[-1], len(lat)))
    print("slots           ev %d, slow %d taken for %d live workers; of SIGKILLed workers, not reused yet: "
          "ev %d, slow %d; leaked %d" % (ev_slots, slow_slots, len(procs), slots["ev"][0], slots["slow"][0],
                                         leaked_slots))
    print("fds             worker max %d -> %d, master %d -> %d; leaked %d"
          % (before["worker_fds"], after["worker_fds"], before["master_fds"], after["master_fds"], leaked_fds))
    print("rss             worker avg %d kB -> %d kB, master %d kB -> %d kB"
          % (before["worker_rss"], after["worker_rss"], before["master_rss"], after["master_rss"]))
    print("nginx           master alive %s, final QUIT clean %s, crashed workers %d, alert lines %d" % (
        "yes" if r["master_alive"] else "NO", "yes" if r["clean_quit"] else "NO", len(crashes), len(alerts)))
    for msg, n in sorted(errors.items(), key=lambda x: -x[1])[:5]:
        print("log: %6d x %s" % (n, msg))
    for f in fails:
        print("FAIL: " + f)
    print("soak: %s" % ("PASS" if not fails else "FAIL (%d invariant(s) broken)" % len(fails)), flush=True)
    return 1 if fails else 0


