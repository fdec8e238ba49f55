#!/bin/sh
# Build-stage benchmark: the sample livepatch module (tests/data/kbuild-recipe)
# for Debian's current ABI, three ways, with hyperfine:
#   peer:    `make -C /usr/src/linux-headers-<abi> M=<copy> modules` on the host
#   khotfix: `khotfix build --no-cache` (debian12 builder container)
#   cached:  `khotfix build` with the result in the build cache
# and prints khotfix/peer and cached/peer ratios. Needs linux-headers-<abi>
# installed on the host, the debian12 builder (khotfix builder build debian12)
# and the container env (KHOTFIX_CONTAINER_*; see README).
# Usage: benches/build.sh [runs]   (KHOTFIX=path/to/khotfix to pick a binary)
set -eu
cd "$(dirname "$0")/.."
runs="${1:-5}"
khotfix="${KHOTFIX:-target/release/khotfix}"
[ -x "$khotfix" ] || cargo build --release --bin khotfix
abi="$(apt-cache depends linux-image-amd64 | sed -n 's/.*Depends: linux-image-//p' | head -n1)"
[ -d "/usr/src/linux-headers-$abi" ] || { echo "linux-headers-$abi is not installed" >&2; exit 2; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export KHOTFIX_CACHE_DIR="$work/cache"
recipe=tests/data/kbuild-recipe/recipe.toml
"$khotfix" build --out "$work/out" "$recipe" >/dev/null   # warm: headers, cache entry
hyperfine --warmup 1 --runs "$runs" --export-json "$work/h.json" \
  -n peer "rm -rf $work/src && cp -r tests/data/kbuild-recipe/livepatch-sample $work/src && make -s -C /usr/src/linux-headers-$abi M=$work/src -j2 modules >/dev/null 2>&1" \
  -n khotfix "$khotfix build --no-cache --out $work/out $recipe >/dev/null" \
  -n cached "$khotfix build --out $work/out $recipe >/dev/null"
python3 - "$work/h.json" <<'PY'
import json, sys
r = {x["command"]: x["mean"] for x in json.load(open(sys.argv[1]))["results"]}
print(f"peer {r['peer']:.2f}s  khotfix {r['khotfix']:.2f}s  cached {r['cached']:.2f}s")
print(f"khotfix/peer = {r['khotfix']/r['peer']:.2f}   cached/peer = {r['cached']/r['peer']:.2f}")
PY
