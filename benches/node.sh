#!/bin/sh
# Benchmark: `khotfix node check` (release build) against seed 000's bash
# check script (benches/seed-check.sh, adapted only to read a fake root) and
# the generated POSIX script (`khotfix node script`, run with dash), on the
# same fake roots. Goal: node check >= 20x faster (wall) than the seed script
# and <= 4 MiB peak RSS.
#
# Usage: benches/node.sh            (needs hyperfine, /usr/bin/time, bash, dash)
# Prints hyperfine tables, the speed-up per case, and peak RSS.
set -eu
cd "$(dirname "$0")/.."
cargo build --release --quiet
BIN=$PWD/target/release/khotfix
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
  echo "   node check: $("$BIN" node check --recipe "$RECIPE" --root "$R" || true)"
  hyperfine -N -i --warmup 20 --runs "${RUNS:-300}" --export-json "$WORK/$case.json" \
    -n "khotfix node check" "$BIN node check --recipe $RECIPE --root $R" \
    -n "seed bash script" "env KHOTFIX_ROOT=$R bash $SEED" \
    -n "generated sh script (dash)" "env KHOTFIX_ROOT=$R dash $WORK/generated.sh" \
    -n "floor: /bin/true" "/bin/true"
  python3 - "$WORK/$case.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
k, s, g = r["khotfix node check"]["mean"], r["seed bash script"]["mean"], r["generated sh script (dash)"]["mean"]
print(f"   mean wall: node check {k*1e3:.3f} ms, seed script {s*1e3:.3f} ms, generated script {g*1e3:.3f} ms")
print(f"   speed-up of node check over the seed script: {s/k:.1f}x wall (goal >= 20x)")
t = r["floor: /bin/true"]["mean"]
print(f"   floor (/bin/true, process start alone): {t*1e3:.3f} ms; best possible ratio on this machine now: {s/t:.1f}x")
cpu = lambda n: r[n]["user"] + r[n]["system"]
print(f"   CPU (user+sys): node check {cpu('khotfix node check')*1e3:.2f} ms, seed {cpu('seed bash script')*1e3:.2f} ms: {cpu('seed bash script')/cpu('khotfix node check'):.1f}x")
PY
done

rss() { /usr/bin/time -f '%M' "$@" 2>&1 >/dev/null | tail -n 1; }
R=$WORK/needs
echo "== peak RSS (KiB, /usr/bin/time -f %M), case needs"
echo "   khotfix node check: $(rss "$BIN" node check --recipe "$RECIPE" --root "$R") KiB (goal <= 4096)"
echo "   seed bash script:   $(env KHOTFIX_ROOT="$R" /usr/bin/time -f '%M' bash "$SEED" 2>&1 >/dev/null | tail -n 1) KiB (bash process only)"
