#!/usr/bin/env python3
"""Architecture figures of a source tree (issue 13): string-named stage
artifacts, external-tool calls outside util::proc, functions with more than
six parameters, and the size of run/wire.rs.

Usage: python3 benches/tools/architecture_metrics.py ROOT
"""
import re, sys, os, glob
root = sys.argv[1]
src = [p for p in glob.glob(f"{root}/src/**/*.rs", recursive=True)]
def read(p): return open(p, encoding="utf-8").read()
# string artifact names: .artifact("..."), cx.artifact(Kind, "..."), find_artifact, artifact::CONST uses
art = 0
for p in src:
    s = read(p)
    art += len(re.findall(r'\.artifact\(\s*(?:StageKind::\w+,\s*)?"', s))
    art += len(re.findall(r'find_artifact\(\s*"', s))
    art += len(re.findall(r'artifact::[A-Z_]+', s))
    art += len(re.findall(r'artifacts\.get\("', s))
cmd = 0
for p in src:
    if p.endswith("util/proc.rs"): continue
    s = read(p)
    cmd += len(re.findall(r'Command::new\(|duct::cmd|\bcmd!\(', s))
# functions with > 6 parameters (self excluded)
many = []
for p in src:
    s = read(p)
    for m in re.finditer(r'\bfn\s+(\w+)\s*(<[^>{]*>)?\s*\(', s):
        i = m.end(); depth = 1; j = i
        while depth and j < len(s):
            c = s[j]
            if c in "(<[": depth += 1 if c == "(" else 0
            if c == "(": pass
            if c == ")": depth -= 1
            j += 1
        params = s[i:j-1]
        # split on top-level commas
        d = 0; parts = []; cur = ""
        for c in params:
            if c in "(<[{": d += 1
            if c in ")>]}": d -= 1
            if c == "," and d == 0: parts.append(cur); cur = ""
            else: cur += c
        parts.append(cur)
        parts = [x for x in parts if x.strip() and not re.match(r'\s*&?\s*(mut\s+)?(\'\w+\s+)?(mut\s+)?self\b', x.strip())]
        if len(parts) > 6: many.append(f"{os.path.relpath(p, root)}:{m.group(1)}({len(parts)})")
wire = len(read(f"{root}/src/run/wire.rs").splitlines())
print(f"string artifact names: {art}")
print(f"Command::new/duct outside util::proc: {cmd}")
print(f"fns with >6 params: {len(many)} {many}")
print(f"run/wire.rs lines: {wire}")
