#!/bin/sh
# Build-stage benchmark: the sample livepatch module (tests/data/kbuild-recipe)
# for Debian's current ABI, three ways, with hyperfine:
#   peer:    `make -C /usr/src/linux-headers-<abi> M=<copy> modules` on the host
#   khotfix: `khotfix build --no-cache` (debian12 builder container)
#   cached:  `khotfix build` with the result in the build cache
#   cached-memo-miss: the same with build::memo emptied first, i.e. after an
#            `apt-get update` or an image rebuild (apt-cache depends and the
#            engine are asked again, as every run did before the memo)
# and prints median times and the khotfix/peer and cached/peer ratios (goals:
# <= 1.2x; cached <= 0.3 s), with /bin/true as the process-start floor. Needs linux-headers-<abi>
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
  -n cached "$khotfix build --out $work/out $recipe >/dev/null" \
  -n cached-memo-miss "rm -rf $work/cache/memo && $khotfix build --out $work/out $recipe >/dev/null" \
  -n floor /bin/true
python3 benches/tools/ratio.py "$work/h.json" khotfix peer cached peer cached-memo-miss peer
