#!/bin/sh
# Preflight benchmark: `khotfix preflight` on one hunk of N added lines
# (N = 20k, 40k, 100k; issue 16 measured 2.2 s, 10 s and 55 s before the
# reading became linear) against GNU `patch --dry-run -p1` on the same diff
# and a tree it applies to. Prints each mean and the ratio.
# Run: sh benches/preflight.sh   (needs hyperfine, GNU patch, python3)
# SIZES="20000 40000" limits the cases.
set -eu
cd "$(dirname "$0")/.."
cargo build --release --bin khotfix >/dev/null
BIN=$PWD/target/release/khotfix
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/tree/net"
printf 'static void f(void)\n{\n}\n' > "$W/tree/net/x.c"
for N in ${SIZES:-20000 40000 100000}; do
    python3 - "$N" "$W/hunk-$N.patch" <<'PY'
import sys
n, out = int(sys.argv[1]), sys.argv[2]
with open(out, "w") as f:
    f.write("--- a/net/x.c\n+++ b/net/x.c\n@@ -1,3 +1,%d @@\n static void f(void)\n {\n" % (n + 3))
    f.writelines("+\tif (g%d())\n" % i if i % 2 == 0 else "+\t\th%d();\n" % i for i in range(n))
    f.write(" }\n")
PY
    hyperfine -N --warmup 1 --runs 5 --export-json "$W/r.json" \
        -n "preflight $N" "$BIN preflight --patch $W/hunk-$N.patch" \
        -n "patch --dry-run $N" "patch --dry-run -s -p1 -d $W/tree -i $W/hunk-$N.patch" >/dev/null
    python3 - "$W/r.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
for x in r:
    print("%-24s mean %8.4f s  (min %.4f, max %.4f)" % (x["command"], x["mean"], x["min"], x["max"]))
print("ratio %s / %s = %.2f" % (r[0]["command"], r[1]["command"], r[0]["mean"] / r[1]["mean"]))
PY
done
