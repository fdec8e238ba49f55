#!/usr/bin/env python3
"""Print median wall times and ratios from a hyperfine --export-json file.

usage: ratio.py H.json [SUBJECT PEER]...   (command names given with -n)
With no pairs, every command is compared with the last one. A command named
`floor` (e.g. /bin/true) is printed as the process-start floor.
"""
import json
import sys

res = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
names = list(res)
pairs = list(zip(sys.argv[2::2], sys.argv[3::2])) or [(n, names[-1]) for n in names[:-1]]
for n in names:
    r = res[n]
    print("  %-28s median %9.4f s  (min %.4f, max %.4f, %d runs)"
          % (n, r["median"], r["min"], r["max"], len(r["times"])))
for a, b in pairs:
    if a == "floor" or b == "floor":
        continue
    print("ratio %s / %s = %.2fx (medians)" % (a, b, res[a]["median"] / res[b]["median"]))
