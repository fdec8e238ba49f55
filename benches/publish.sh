#!/bin/sh
# Benchmark `khotfix publish` against createrepo_c on the same packages.
#
#   benches/publish.sh            (env: FULL=2000 BIG=10000 RUNS=5 WORK=dir
#                                  ONLY=full|add to run one case)
#
# 1. Full index of $FULL generated RPMs: khotfix (cold: no cache, no old
#    metadata) vs createrepo_c (default options, i.e. with sqlite databases,
#    and with --no-database), alternating runs, median wall time.
# 2. Adding one package to a $BIG-package repository: `khotfix publish --sign
#    --repo R one.rpm` (copy in + index + sign + atomic swap) vs copying the
#    package in and `createrepo_c --update`, alternating runs, median.
# 3. The gzip data files' sizes after the additions, khotfix's against
#    createrepo_c's (same packages; goal: no larger).
# Prints the ratios khotfix/createrepo_c (goals: full <= 0.2, add-one <= 0.05).
set -eu

FULL=${FULL:-2000}
BIG=${BIG:-10000}
RUNS=${RUNS:-5}
ONLY=${ONLY:-}
case "$ONLY" in ''|full|add) ;; *) echo "publish.sh: ONLY must be full or add" >&2; exit 2 ;; esac
here=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-$(mktemp -d /tmp/khotfix-bench.XXXXXX)}
mkdir -p "$WORK"

for tool in createrepo_c gpg python3; do
    command -v "$tool" >/dev/null || { echo "publish.sh: $tool is required" >&2; exit 2; }
done

echo "building (release) ..." >&2
(cd "$here" && cargo build --quiet --release --bin khotfix --example gen_rpms)
khotfix=$here/target/release/khotfix
gen=$here/target/release/examples/gen_rpms

# A throwaway signing key (unprotected) in a private GnuPG home.
export GNUPGHOME="$WORK/gnupg"
if [ ! -f "$WORK/key.asc" ]; then
    mkdir -p "$GNUPGHOME" && chmod 700 "$GNUPGHOME"
    gpg --batch --quiet --passphrase '' --quick-gen-key 'khotfix bench <bench@khotfix.invalid>' rsa3072 sign never
    gpg --batch --armor --export-secret-keys >"$WORK/key.asc"
fi
export KHOTFIX_GPG_KEY="$WORK/key.asc"

if [ ! -d "$WORK/pool" ] || [ "$(find "$WORK/pool" -name '*.rpm' | wc -l)" -lt "$BIG" ]; then
    echo "generating $BIG RPMs ..." >&2
    start=$(date +%s)
    "$gen" "$WORK/pool" "$BIG" p
    echo "  took $(( $(date +%s) - start )) s" >&2
fi
rm -rf "$WORK/extra"
"$gen" "$WORK/extra" "$RUNS" "x$(date +%s)" >/dev/null

now() { date +%s.%N; }
# median of the numbers on stdin
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

# ---- 1. full index -------------------------------------------------------
k=0; c=1; cn=1; ak=0; ac=1; big_k=0; big_c=0
if [ "$ONLY" != add ]; then
full=$WORK/full
rm -rf "$full" && mkdir -p "$full/Packages"
find "$WORK/pool" -name '*.rpm' | sort | head -n "$FULL" | while read -r f; do ln "$f" "$full/Packages/"; done
: >"$WORK/t_k" ; : >"$WORK/t_c" ; : >"$WORK/t_cn"
i=0
while [ "$i" -lt "$RUNS" ]; do
    rm -rf "$full/repodata" "$full"/.repodata* "$full/.khotfix-cache" "$full/.khotfix.lock"
    t0=$(now); createrepo_c -q "$full"; t1=$(now)
    echo "$t1 - $t0" | bc -l >>"$WORK/t_c"
    rm -rf "$full/repodata" "$full"/.repodata*
    t0=$(now); "$khotfix" publish --repo "$full" >/dev/null; t1=$(now)
    echo "$t1 - $t0" | bc -l >>"$WORK/t_k"
    rm -rf "$full/repodata" "$full"/.repodata* "$full/.khotfix-cache"
    t0=$(now); createrepo_c -q --no-database "$full"; t1=$(now)
    echo "$t1 - $t0" | bc -l >>"$WORK/t_cn"
    i=$((i + 1))
done
k=$(median <"$WORK/t_k"); c=$(median <"$WORK/t_c"); cn=$(median <"$WORK/t_cn")
"$khotfix" repo verify "$full" >/dev/null 2>&1 || true
fi

if [ "$ONLY" != full ]; then

# ---- 2. add one package to a BIG repository ------------------------------
ours=$WORK/big-khotfix
theirs=$WORK/big-createrepo
rm -rf "$ours" "$theirs"
mkdir -p "$ours/Packages" "$theirs/Packages"
find "$WORK/pool" -name '*.rpm' | sort | head -n "$BIG" | while read -r f; do
    ln "$f" "$ours/Packages/"
    ln "$f" "$theirs/Packages/"
done
echo "initial index of $BIG packages ..." >&2
t0=$(now); "$khotfix" publish --repo "$ours" >/dev/null; t1=$(now)
big_k=$(echo "$t1 - $t0" | bc -l)
t0=$(now); createrepo_c -q "$theirs"; t1=$(now)
big_c=$(echo "$t1 - $t0" | bc -l)
: >"$WORK/a_k" ; : >"$WORK/a_c"
for f in "$WORK"/extra/*.rpm; do
    t0=$(now); cp "$f" "$theirs/Packages/"; createrepo_c -q --update "$theirs"; t1=$(now)
    echo "$t1 - $t0" | bc -l >>"$WORK/a_c"
    t0=$(now); "$khotfix" publish --sign --repo "$ours" "$f" >/dev/null; t1=$(now)
    echo "$t1 - $t0" | bc -l >>"$WORK/a_k"
done
ak=$(median <"$WORK/a_k"); ac=$(median <"$WORK/a_c")
fi

printf '\nkhotfix publish benchmark (%s runs each, median wall seconds, %s cores)\n' "$RUNS" "$(nproc)"
if [ "$ONLY" != add ]; then
printf '  full index of %s RPMs:  khotfix %.3f   createrepo_c %.3f   ratio %.2fx\n' "$FULL" "$k" "$c" "$(echo "$k / $c" | bc -l)"
printf '                          createrepo_c --no-database %.3f   ratio %.2fx\n' "$cn" "$(echo "$k / $cn" | bc -l)"
fi
if [ "$ONLY" != full ]; then
printf '  initial index of %s:   khotfix %.3f   createrepo_c %.3f\n' "$BIG" "$big_k" "$big_c"
printf '  add one to %s RPMs:    khotfix %.3f   createrepo_c --update %.3f   ratio %.3fx\n' "$BIG" "$ak" "$ac" "$(echo "$ak / $ac" | bc -l)"
fi
if [ "$ONLY" != full ]; then
for kind in primary filelists other; do
    ks=$(stat -c %s "$ours"/repodata/*-"$kind".xml.gz)
    cs=$(stat -c %s "$theirs"/repodata/*-"$kind".xml.gz)
    printf '  %-9s .xml.gz:   khotfix %s B   createrepo_c %s B   ratio %.4f\n' "$kind" "$ks" "$cs" "$(echo "$ks / $cs" | bc -l)"
done
fi
printf '  goals: full <= 0.2x, add-one <= 0.05x, gzip no larger; work dir %s (reused if WORK is set)\n' "$WORK"
