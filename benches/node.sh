#!/bin/sh
# Benchmark: `khotfix-node check` (the node agent alone, `--profile node`,
# dynamic and static glibc) and `khotfix node check` (the toolchain, release
# build) against seed 000's bash check script (benches/seed-check.sh, adapted
# only to read a fake root) and the generated POSIX script (`khotfix node
# script`, run with dash), on the same fake roots. Goal (issue 15):
# khotfix-node check >= 20x faster (wall) than the seed script, <= 2 MiB
# peak RSS. /bin/true in the same run is the floor (process start alone).
#
# Usage: benches/node.sh            (needs hyperfine, /usr/bin/time, bash, dash)
#        NO_BUILD=1 benches/node.sh (use the binaries already built)
# Prints hyperfine tables, the speed-up per case, peak RSS and binary sizes.
set -eu
cd "$(dirname "$0")/.."
TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
if [ -z "${NO_BUILD:-}" ]; then
  cargo build --release --quiet
  cargo build --profile node --bin khotfix-node --quiet
  RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --profile node --bin khotfix-node --target x86_64-unknown-linux-gnu --quiet
fi
BIN=$TARGET_DIR/release/khotfix
NODE=$TARGET_DIR/node/khotfix-node
NODE_STATIC=$TARGET_DIR/x86_64-unknown-linux-gnu/node/khotfix-node
RECIPE=$PWD/recipes/bpf-lru-leak-22519882.toml
SEED=$PWD/benches/seed-check.sh
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$BIN" node script "$RECIPE" -o "$WORK/generated.sh"

# fake_root DIR RELEASE [module]
fake_root() {
  mkdir -p "$1/proc/sys/kernel" "$1/sys/fs/bpf/tc/globals"
  : > "$1/sys/fs/bpf/tc/globals/cilium_ct4_global"
  printf '%s\n' "$2" > "$1/proc/sys/kernel/osrelease"
  printf 'ext4 1003520 1 - Live 0x0\nip_vs 192512 0 - Live 0x0\n' > "$1/proc/modules"
  if [ "${3:-}" = loaded ]; then
    printf 'kpatch_22519882 16384 1 - Live 0x0 (OEK)\n' >> "$1/proc/modules"
  fi
}
fake_root "$WORK/needs" 5.10.134-18.al8.x86_64
fake_root "$WORK/fixed" 5.10.134-18.al8.x86_64 loaded
fake_root "$WORK/outside" 5.10.134-19.2.al8.x86_64

for case in needs fixed outside; do
  R=$WORK/$case
  echo "== case: $case ($(cat "$R/proc/sys/kernel/osrelease"))"
  echo "   node check: $("$NODE" check --recipe "$RECIPE" --root "$R" || true)"
  hyperfine -N -i --warmup 20 --runs "${RUNS:-300}" --export-json "$WORK/$case.json" \
    -n "khotfix-node check" "$NODE check --recipe $RECIPE --root $R" \
    -n "khotfix-node check (static)" "$NODE_STATIC check --recipe $RECIPE --root $R" \
    -n "khotfix node check" "$BIN node check --recipe $RECIPE --root $R" \
    -n "seed bash script" "env KHOTFIX_ROOT=$R bash $SEED" \
    -n "generated sh script (dash)" "env KHOTFIX_ROOT=$R dash $WORK/generated.sh" \
    -n "floor: /bin/true" "/bin/true"
  python3 - "$WORK/$case.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
s, g = r["seed bash script"]["mean"], r["generated sh script (dash)"]["mean"]
t = r["floor: /bin/true"]["mean"]
cpu = lambda n: r[n]["user"] + r[n]["system"]
print(f"   mean wall: seed script {s*1e3:.3f} ms, generated script {g*1e3:.3f} ms, floor (/bin/true) {t*1e3:.3f} ms: best possible ratio now {s/t:.1f}x")
for n in ["khotfix-node check", "khotfix-node check (static)", "khotfix node check"]:
    k = r[n]["mean"]
    print(f"   {n}: {k*1e3:.3f} ms (median {r[n]['median']*1e3:.3f}), {s/k:.1f}x the seed script's wall (goal >= 20x); CPU {cpu(n)*1e3:.2f} ms")
PY
done

rss() { /usr/bin/time -f '%M' "$@" 2>&1 >/dev/null | tail -n 1; }
R=$WORK/needs
echo "== peak RSS (KiB, /usr/bin/time -f %M), case needs"
echo "   khotfix-node check:          $(rss "$NODE" check --recipe "$RECIPE" --root "$R") KiB (goal <= 2048)"
echo "   khotfix-node check (static): $(rss "$NODE_STATIC" check --recipe "$RECIPE" --root "$R") KiB (goal <= 2048)"
echo "   khotfix node check:          $(rss "$BIN" node check --recipe "$RECIPE" --root "$R") KiB"
echo "   /bin/true:                   $(rss /bin/true) KiB"
echo "   seed bash script:   $(env KHOTFIX_ROOT="$R" /usr/bin/time -f '%M' bash "$SEED" 2>&1 >/dev/null | tail -n 1) KiB (bash process only)"
echo "== binary size (bytes)"
echo "   khotfix-node:          $(stat -c %s "$NODE")"
echo "   khotfix-node (static): $(stat -c %s "$NODE_STATIC")"
echo "   khotfix:               $(stat -c %s "$BIN")"
