#!/bin/bash
# Benchmark: which kernels of a fleet's list does hotfix 22519882 cover?
#
#   khotfix plan (one process: parse the recipe, rpm version rules)
#   vs the seed check script's own logic (tests 000: regex + version_ge /
#   version_le, two `sort -V` pipelines per kernel), over the same list.
#
# Both must select the same number of kernels (the list has no lifsea8 or
# x.y.z releases, where the seed's regex is wrong). Prints hyperfine's ratio.
# Usage: benches/plan.sh [N kernels, default 2000]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-2000}
cargo build --release -q
bin=$PWD/target/release/khotfix
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# 5.10.<sub>-<rel>.<upd>.al8.x86_64, distinct, about 1 in 60 with sub=134.
awk -v n="$n" 'BEGIN { for (i = 0; i < n; i++) {
    sub_ = 100 + int(i / 400) % 60; r = 10 + int(i / 10) % 40; u = i % 10;
    if (sub_ == 100) sub_ = 134;
    printf "5.10.%d-%d.%d.al8.x86_64\n", sub_, r, u } }' > "$tmp/kernels.txt"

cat > "$tmp/seed.sh" <<'SEED'
#!/bin/bash
# The seed script's range logic, unchanged, applied to every line of $1.
set -euo pipefail
MIN_VERSION="5.10.134-15"
MAX_VERSION="5.10.134-19.1"
version_ge() {
    [[ "$1" == "$(printf '%s\n' "$1" "$2" | sort -V | tail -n1)" ]]
}
version_le() {
    [[ "$1" == "$(printf '%s\n' "$1" "$2" | sort -V | head -n1)" ]]
}
while read -r KERNEL_RELEASE; do
    [[ $KERNEL_RELEASE =~ 5\.10\.134-[0-9]+(\.[0-9]+)? ]] || continue
    KERNEL_VERSION="${BASH_REMATCH[0]}"
    [[ $KERNEL_RELEASE == *"al8"* ]] || continue
    version_ge "$KERNEL_VERSION" "$MIN_VERSION" || continue
    version_le "$KERNEL_VERSION" "$MAX_VERSION" || continue
    echo "$KERNEL_RELEASE"
done < "$1"
SEED
chmod +x "$tmp/seed.sh"

recipe=recipes/bpf-lru-leak-22519882.toml
ours=$("$bin" plan "$recipe" --kernels "$tmp/kernels.txt" --json | grep -c '"kernel": ')
theirs=$("$tmp/seed.sh" "$tmp/kernels.txt" | wc -l)
echo "kernels: $n; selected by khotfix: $ours; by the seed script: $theirs"
if [ "$ours" != "$theirs" ]; then
    echo "benches/plan.sh: the two disagree; not timing" >&2
    exit 1
fi
hyperfine --warmup 1 --runs "${RUNS:-5}" -N \
    --command-name "khotfix plan" "$bin plan $recipe --kernels $tmp/kernels.txt --json" \
    --command-name "seed script (sort -V)" "$tmp/seed.sh $tmp/kernels.txt"
