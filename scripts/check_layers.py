#!/usr/bin/env python3
"""Checks src/ against the layer map in HACKING.md ("Layer map").

The map is the fenced block marked ```layers: one layer per line, top
first, peers on one line. A file may refer to `crate::X` only when X is its
own unit or a unit on a lower line. A unit is the first part of the file's
path under src/ (`zone/ring.rs` -> zone, `published.rs` -> published);
`lib.rs` (the crate root, declarations only) is exempt. Macros exported at
the crate root (`crate::wev_log!`) belong to the unit that defines them.

Prints every import against the map (file:line, from -> to) and exits 1
if there is one; prints the map and the count of checked imports otherwise.
"""

import argparse
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_map(path):
    text = open(path, encoding="utf-8").read()
    m = re.search(r"^```layers\n(.*?)^```", text, re.S | re.M)
    if not m:
        sys.exit("%s: no ```layers block" % path)
    layers = [line.split() for line in m.group(1).splitlines() if line.strip()]
    rank = {}
    for i, names in enumerate(layers):
        for n in names:
            if n in rank:
                sys.exit("%s: %s is in the map twice" % (path, n))
            rank[n] = len(layers) - i  # higher number = higher layer
    return layers, rank


def unit_of(rel):
    first = rel.split("/", 1)[0]
    return first[:-3] if first.endswith(".rs") else first


def code_lines(path):
    """(line number, code) with comments and string literals blanked."""
    for no, line in enumerate(open(path, encoding="utf-8"), 1):
        line = re.sub(r'"(?:\\.|[^"\\])*"', '""', line)
        line = line.split("//", 1)[0]
        yield no, line


def crate_refs(text):
    """(line, first name) of every `crate::name` and `crate::{a, b::c}`
    (groups may span lines and nest)."""
    for m in re.finditer(r"\bcrate::(\w+|\{)", text):
        line = text.count("\n", 0, m.start()) + 1
        if m.group(1) != "{":
            yield line, m.group(1)
            continue
        depth, i, start = 1, m.end(), m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        group, top, d = text[start:i - 1], [], 0
        item = ""
        for ch in group + ",":
            if ch == "{":
                d += 1
            elif ch == "}":
                d -= 1
            if ch == "," and d == 0:
                top.append(item)
                item = ""
            else:
                item += ch
        for it in top:
            name = re.match(r"\s*(\w+)", it)
            if name and name.group(1) != "self":
                yield line, name.group(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", default=os.path.join(ROOT, "src"), help="the crate's src/ (default: %(default)s)")
    ap.add_argument("--map", default=os.path.join(ROOT, "HACKING.md"), help="the file with the ```layers block (default: %(default)s)")
    args = ap.parse_args()

    layers, rank = read_map(args.map)
    files = []
    for d, _, names in os.walk(args.src):
        files += [os.path.join(d, n) for n in names if n.endswith(".rs")]

    macros = {}
    for f in files:
        rel = os.path.relpath(f, args.src)
        for _, line in code_lines(f):
            m = re.match(r"\s*macro_rules!\s*(\w+)", line)
            if m:
                macros[m.group(1)] = unit_of(rel)

    bad, checked, unknown = [], 0, set()
    for f in sorted(files):
        rel = os.path.relpath(f, args.src)
        if rel == "lib.rs":
            continue
        me = unit_of(rel)
        if me not in rank:
            unknown.add(rel)
            continue
        lines = list(code_lines(f))
        text = "\n".join(code for _, code in lines)
        for no, target in crate_refs(text):
            to = macros.get(target, target)
            if to == me:
                continue
            checked += 1
            if to not in rank:
                unknown.add("%s:%d names crate::%s" % (rel, no, target))
            elif rank[to] >= rank[me]:
                bad.append("src/%s:%d: %s -> %s (crate::%s)" % (rel, no, me, to, target))
    for u in sorted(unknown):
        print("not in the layer map: %s" % u)
    for b in bad:
        print("against the layer map: %s" % b)
    if bad or unknown:
        return 1
    print("layer map (top first): %s" % " | ".join(" ".join(l) for l in layers))
    print("%d imports between layers checked in %d files: all go down" % (checked, len(files)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
