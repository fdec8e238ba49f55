#!/bin/sh
# kpatch-build benchmark on Debian's current 6.1 ABI (real kpatch-build in the
# debian12 builder), three measurements in one run:
#
#   first:  `khotfix run --target debian12-kpatch` of the recipe (hotfix
#           30001) with a cold cache except downloads: no kernel tree, no
#           ccache, no build cache (wall of the whole run, and its build stage)
#   second: a second, different patch for the same kernel (hotfix 30002,
#           benches/data/ip_vs_read_estimator-truncate.patch), right after:
#           the kernel tree and its original objects are reused
#   host:   the same build by hand: kpatch-build (the pinned release plus
#           khotfix's carried patch, built on the host) on a tree laid out the
#           same way, with the same arguments, no container
#
# and prints second/first (goal <= 0.40) and khotfix build stage / host
# (container overhead, goal <= 1.10). With RUNS=N each case runs N times and
# medians are used (each run is minutes on 2 cores).
# Needs: the .ci/packages.txt tools, the container env (.ci/env), the kpatch
# release tarball ($KHOTFIX_KPATCH_SOURCE or a download), ~12 GB of disk.
# Usage: benches/kpatch.sh   (KHOTFIX=path/to/khotfix, RUNS=1, WORK=dir)
set -eu
cd "$(dirname "$0")/.."
repo=$(pwd)
runs="${RUNS:-1}"
khotfix="${KHOTFIX:-target/release/khotfix}"
[ -x "$khotfix" ] || cargo build --release --bin khotfix
khotfix=$(cd "$(dirname "$khotfix")" && pwd)/$(basename "$khotfix")
work="${WORK:-$(mktemp -d)}"
mkdir -p "$work"
export KHOTFIX_CACHE_DIR="$work/cache"
log() { echo "kpatch.sh: $(date -u +%H:%M:%S) $*" >&2; }

# The second hotfix: the recipe's debian12-kpatch target with another id and patch.
mkdir -p "$work/second/patches"
cp benches/data/ip_vs_read_estimator-truncate.patch "$work/second/patches/"
python3 - "$repo/recipes/ipvs-estimation-timer.toml" "$work/second/recipe.toml" <<'PY'
import re, sys
src = open(sys.argv[1]).read()
head = src[: src.index("[[target]]")]
head = head.replace("id = 30001", "id = 30002").replace('name = "ipvs-estimation-timer"', 'name = "ipvs-read-estimator-bench"')
target = '''[[target]]
name = "debian12-kpatch"
distro = "debian12"
backend = "kpatch"
select = "newest"
ranges = [{ from = "6.1.0-1", to = "6.1.0-9999" }]
patches = ["patches/ip_vs_read_estimator-truncate.patch"]
'''
open(sys.argv[2], "w").write(head + target)
PY

seconds() { python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); j=r["jobs"][0]; assert j["status"]=="passed", j; print(j["seconds"], next(s["seconds"] for s in j["stages"] if s["stage"]=="build"))' "$1"; }

cold() {
	rm -rf "$KHOTFIX_CACHE_DIR/kernel-trees" "$KHOTFIX_CACHE_DIR/build" "$KHOTFIX_CACHE_DIR/work"
}

# Downloads (and the builder image) first, outside any timing.
log "warming downloads and the builder image"
"$khotfix" run recipes/ipvs-estimation-timer.toml --target debian12-kpatch --from-repos \
	--out "$work/warm" --json >"$work/warm.json" 2>"$work/warm.log" || { cat "$work/warm.log" >&2; exit 1; }

i=0
while [ "$i" -lt "$runs" ]; do
	i=$((i + 1))
	cold
	log "first job, run $i"
	rm -rf "$work/out1" "$work/out2"
	"$khotfix" run recipes/ipvs-estimation-timer.toml --target debian12-kpatch --from-repos \
		--out "$work/out1" --json >"$work/first.json" 2>"$work/first.log"
	seconds "$work/first.json" >>"$work/first.txt"
	log "second patch, run $i"
	"$khotfix" run "$work/second/recipe.toml" --from-repos --out "$work/out2" --json \
		>"$work/second.json" 2>"$work/second.log"
	seconds "$work/second.json" >>"$work/second.txt"
done

# The host peer: kpatch-build built from the same tarball with the same
# carried patch, on a tree laid out as khotfix's prepare stage does.
abi=$(apt-cache depends linux-image-amd64 | sed -n 's/.*Depends: linux-image-//p' | head -n1)
tree_src=$(ls -d "$KHOTFIX_CACHE_DIR"/kernel-trees/"$abi"-*/ | head -n1)
vmlinux=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1]))["jobs"][0]; print(next(s for s in j["stages"] if s["stage"]=="fetch")["artifacts"]["vmlinux"])' "$work/first.json" 2>/dev/null ||
	find "$KHOTFIX_CACHE_DIR/unpacked" -name "vmlinux-$abi" | head -n1)
source_deb=$(find "$KHOTFIX_CACHE_DIR/objects" -name 'linux-source-6.1_*.deb' | head -n1)
src_tarball="${KHOTFIX_KPATCH_SOURCE:-$KHOTFIX_CACHE_DIR/kpatch/kpatch-0.9.11.tar.gz}"
if [ ! -x "$work/kpatch/kpatch-build/kpatch-build" ]; then
	log "building kpatch-build on the host"
	rm -rf "$work/kpatch" && mkdir -p "$work/kpatch"
	tar -xzf "$src_tarball" -C "$work/kpatch" --strip-components=1
	for p in containers/kpatch-patches/*.patch; do patch -s -d "$work/kpatch" -p1 <"$p"; done
	make -s -C "$work/kpatch/kpatch-build" -j2 >/dev/null
fi
i=0
while [ "$i" -lt "$runs" ]; do
	i=$((i + 1))
	log "host kpatch-build, run $i (fresh copy of a pristine tree)"
	rm -rf "$work/host-tree" "$work/host-cache" "$work/host-out"
	mkdir -p "$work/host-tree" "$work/host-cache" "$work/host-out"
	# Laid out by hand as the prepare stage does (README, "kpatch on Debian").
	dpkg-deb --fsys-tarfile "$source_deb" | tar -xO --wildcards './usr/src/linux-source-*.tar.xz' |
		tar -xJ -C "$work/host-tree" --strip-components=1
	sed -i '/^filechk_kernel.release = /{N;s/.*/filechk_kernel.release = echo "'"$abi"'"/}' "$work/host-tree/Makefile"
	cp "$tree_src/config" "$work/host-tree/.config"
	cp "$tree_src/src/Module.symvers" "$work/host-tree/Module.symvers"
	cp "$tree_src/src/Module.symvers" "$work/host-tree/vmlinux.symvers"
	t0=$(date +%s.%N)
	CACHEDIR="$work/host-cache" "$work/kpatch/kpatch-build/kpatch-build" -s "$work/host-tree" \
		-c "$tree_src/config" -v "$vmlinux" -n kpatch-30001 -t net/netfilter/ipvs/ip_vs.ko \
		-o "$work/host-out" -j "$(nproc)" \
		patches/ipvs-estimation-timer/debian12-kpatch/0001-ipvs-estimation_timer-skip-est_list-walk.patch \
		>"$work/host.log" 2>&1 || { tail -20 "$work/host.log" >&2; exit 1; }
	t1=$(date +%s.%N)
	python3 -c "print($t1 - $t0)" >>"$work/host.txt"
done

python3 - "$work" <<'PY'
import statistics, sys
w = sys.argv[1]
def col(name, i):
    return statistics.median(float(l.split()[i]) for l in open(f"{w}/{name}.txt"))
first, first_build = col("first", 0), col("first", 1)
second, second_build = col("second", 0), col("second", 1)
host = col("host", 0)
print(f"first job (cold tree and caches; downloads, image warm):     {first:.1f} s (build stage {first_build:.1f} s)")
print(f"second patch, same kernel:                                 {second:.1f} s (build stage {second_build:.1f} s)")
print(f"host kpatch-build, same build by hand:                     {host:.1f} s")
print(f"second/first = {second/first:.2f} (goal <= 0.40)")
print(f"khotfix build stage/host kpatch-build = {first_build/host:.2f} (goal <= 1.10)")
PY
