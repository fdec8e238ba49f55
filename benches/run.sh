#!/bin/sh
# Benchmarks of `khotfix run` on the debian12 target of the ipvs recipe
# (kbuild path): recipe → fetch → build (podman) → sign → package → verify
# (including the qemu boot) → publish.
#
#   1. Wall time of the whole pipeline into a fresh output directory.
#      The download and build caches are those of the machine (as a team
#      re-running after a recipe edit would have); BENCH_COLD=1 uses an
#      empty cache directory instead (downloads and compiles everything).
#   2. A no-op re-run of the finished pipeline (hyperfine; goal <= 2 s),
#      against a real peer doing its own no-op on the same output:
#      `createrepo_c --update` of a copy of the published repository.
#
# Usage: benches/run.sh            (from the repository root)
# Needs: cargo, hyperfine, createrepo_c, podman (see .ci/packages.txt).
set -eu
cd "$(dirname "$0")/.."

recipe=recipes/ipvs-estimation-timer.toml
work=$(mktemp -d "${TMPDIR:-/tmp}/khotfix-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

cargo build --release --quiet
bin=$PWD/target/release/khotfix

if [ "${BENCH_COLD:-0}" = 1 ]; then
    KHOTFIX_CACHE_DIR=$work/cache
    export KHOTFIX_CACHE_DIR
fi

# Keys are generated once, outside the timing (4096-bit RSA).
"$bin" keys generate "$work/keys" >/dev/null

out=$work/out
run() {
    "$bin" run "$recipe" --target debian12 --from-repos --keys "$work/keys" --out "$out" "$@"
}

echo "== 1. recipe to published package (debian12, kbuild path)"
start=$(date +%s.%N)
run --report "$work/report.md"
end=$(date +%s.%N)
full=$(echo "$end - $start" | bc)
echo "wall: ${full} s"
sed -n '1,12p' "$work/report.md"

echo
echo "== 2. no-op re-run of the finished pipeline (goal <= 2 s)"
# The peer works on a dereferenced copy (publish swaps repodata by symlink;
# createrepo_c cannot update that in place): it rewrites repomd.xml, which would (rightly)
# make khotfix publish again.
cp -rL "$out/repo" "$work/peer-repo"
hyperfine --warmup 1 --runs 10 --export-json "$work/noop.json" \
    -n "khotfix run (no-op)" "$bin run $recipe --target debian12 --from-repos --keys $work/keys --out $out" \
    -n "createrepo_c --update (peer)" "createrepo_c --update --quiet $work/peer-repo"
noop=$(python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['results']; print('%.3f %.3f' % (r[0]['mean'], r[1]['mean']))" "$work/noop.json")
k=${noop% *}
peer=${noop#* }
echo "no-op re-run: ${k} s mean (goal <= 2 s); createrepo_c --update: ${peer} s; ratio $(echo "scale=2; $k / $peer" | bc)"
