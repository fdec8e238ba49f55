#!/bin/sh
# Download benchmark: khotfix (streamed sha256 verification, cache commit) vs
# curl, 1 GiB over loopback from the same python3 http.server, alternating
# runs. Prints each run's wall time and the ratio of medians.
#
#   benches/fetch.sh            # 5 runs each, 1 GiB
#   RUNS=3 SIZE_MB=256 benches/fetch.sh
set -eu

RUNS=${RUNS:-5}
SIZE_MB=${SIZE_MB:-1024}
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/target/release/khotfix"

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    (cd "$root" && cargo build --release --quiet)
fi
for tool in curl python3 sha256sum; do
    command -v "$tool" >/dev/null || { echo "fetch.sh: $tool is required" >&2; exit 2; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/khotfix-bench.XXXXXX")
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

mkdir -p "$work/www"
echo "fetch.sh: writing a ${SIZE_MB} MiB random file" >&2
head -c "$((SIZE_MB * 1024 * 1024))" /dev/urandom > "$work/www/blob.bin"
sum=$(sha256sum "$work/www/blob.bin" | cut -d' ' -f1)
size=$(stat -c %s "$work/www/blob.bin")

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 --directory "$work/www" "$port" >/dev/null 2>&1 &
server_pid=$!
url="http://127.0.0.1:$port/blob.bin"
i=0
until curl -sf -o /dev/null -r 0-0 "$url"; do
    i=$((i + 1)); [ "$i" -lt 100 ] || { echo "fetch.sh: server did not start" >&2; exit 2; }
    sleep 0.1
done

now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc -l; }

run_curl() {
    rm -f "$work/curl.out"
    t0=$(now)
    curl -sf -o "$work/curl.out" "$url"
    t1=$(now)
    elapsed "$t0" "$t1"
}
run_curl_verify() {
    rm -f "$work/curl.out"
    t0=$(now)
    curl -sf -o "$work/curl.out" "$url"
    echo "$sum  $work/curl.out" | sha256sum -c --quiet -
    t1=$(now)
    elapsed "$t0" "$t1"
}
run_khotfix() {
    rm -rf "$work/cache"
    t0=$(now)
    "$bin" download "$url" --checksum "sha256:$sum" --size "$size" --cache-dir "$work/cache" --quiet >/dev/null
    t1=$(now)
    elapsed "$t0" "$t1"
}

median() { sort -n | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

: > "$work/t.curl"; : > "$work/t.curlv"; : > "$work/t.khotfix"
run_curl >/dev/null; run_khotfix >/dev/null   # warm the page cache and the server
n=1
while [ "$n" -le "$RUNS" ]; do
    c=$(run_curl); k=$(run_khotfix); v=$(run_curl_verify)
    printf 'run %d: curl %.3fs  khotfix %.3fs  curl+sha256sum %.3fs\n' "$n" "$c" "$k" "$v"
    echo "$c" >> "$work/t.curl"; echo "$k" >> "$work/t.khotfix"; echo "$v" >> "$work/t.curlv"
    n=$((n + 1))
done
mc=$(median < "$work/t.curl"); mk=$(median < "$work/t.khotfix"); mv=$(median < "$work/t.curlv")
printf 'median: curl %.3fs  khotfix %.3fs  curl+sha256sum %.3fs  (%d MiB, %d runs each)\n' "$mc" "$mk" "$mv" "$SIZE_MB" "$RUNS"
printf 'ratio khotfix/curl: %.3f   khotfix/(curl+sha256sum): %.3f\n' "$(echo "$mk / $mc" | bc -l)" "$(echo "$mk / $mv" | bc -l)"
