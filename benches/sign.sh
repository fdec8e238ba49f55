#!/bin/sh
# Module signing and packaging throughput against real peers, measured in the
# same run with hyperfine (medians; the ratio lines are what the goals use):
#   * `khotfix sign`   vs the kernel's scripts/sign-file (same key, cert,
#     module), RSA-4096 and RSA-2048, with `/bin/true` as the process-start
#     floor; the outputs are compared byte for byte.
#   * `khotfix package` (build + xz + two OpenPGP signatures)
#     vs `rpmbuild -bb` of an equivalent spec (xz, unsigned).
# Usage: benches/sign.sh [runs]   (ONLY=sign skips packaging; builds the
#        release binary first)
set -eu
cd "$(dirname "$0")/.."
runs="${1:-30}"
cargo build --release --quiet --bin khotfix
KH=$PWD/target/release/khotfix
RATIO=$PWD/benches/tools/ratio.py
for SIGN_FILE in /usr/lib/linux-kbuild-*/scripts/sign-file; do :; done
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT

# A real, largish module from an installed kernel, with its distro signature
# cut off (sign-file appends to a signed module; khotfix replaces).
src=$(find /lib/modules/*/kernel -name '*.ko' -size +400k | head -n1)
[ -n "$src" ] || { echo "no module found under /lib/modules" >&2; exit 1; }
python3 - "$src" "$W/in.ko" <<'PY'
import sys
m = open(sys.argv[1], "rb").read()
magic = b"~Module signature appended~\n"
if m.endswith(magic):
    end = len(m) - len(magic) - 12
    m = m[: end - int.from_bytes(m[end + 8 : end + 12], "big")]
open(sys.argv[2], "wb").write(m)
PY
echo "module: $src ($(stat -c %s "$src") bytes), sha256; $(nproc) cores"
for bits in 4096 2048; do
    openssl req -new -nodes -utf8 -sha256 -days 36500 -batch -x509 -subj /CN=bench \
        -newkey "rsa:$bits" -keyout "$W/key$bits.pem" -out "$W/cert$bits.pem" 2>/dev/null
    echo "== RSA-$bits"
    hyperfine -N --warmup 3 --runs "$runs" --export-json "$W/sign.json" \
        -n sign-file "$SIGN_FILE sha256 $W/key$bits.pem $W/cert$bits.pem $W/in.ko $W/a.ko" \
        -n 'khotfix sign' "$KH sign --key $W/key$bits.pem --cert $W/cert$bits.pem -o $W/b.ko $W/in.ko" \
        -n floor /bin/true >/dev/null
    python3 "$RATIO" "$W/sign.json" 'khotfix sign' sign-file
    if cmp -s "$W/a.ko" "$W/b.ko"; then echo "  outputs byte-identical"; else echo "  OUTPUTS DIFFER"; exit 1; fi
done
[ "${ONLY:-}" = sign ] && exit 0
"$KH" keys generate --bits 4096 "$W/keys" >/dev/null

# Packaging.
mkdir -p "$W/build/22519882-alinux3-5.10.134-18.al8.x86_64"
"$KH" sign --key "$W/keys/module-signing.key.pem" --cert "$W/keys/module-signing.crt.pem" \
    -o "$W/build/22519882-alinux3-5.10.134-18.al8.x86_64/kpatch-22519882.ko" "$W/in.ko" >/dev/null
recipe=$PWD/tests/data/sign/recipes/hotfix.toml
mkdir -p "$W/rb/SOURCES"
cp "$W/build/22519882-alinux3-5.10.134-18.al8.x86_64/kpatch-22519882.ko" "$W/rb/SOURCES/"
cat >"$W/rb/hotfix.spec" <<'SPEC'
Name: kernel-hotfix-22519882-5.10.134-18
Version: 1.0
Release: 20250804154834.al8
Summary: bench
License: GPL-2.0-only
BuildArch: x86_64
Requires: kpatch >= 0.8
Source0: kpatch-22519882.ko
%description
bench
%install
mkdir -p %{buildroot}/var/khotfix/5.10.134-18.al8.x86_64/22519882
install -m 0644 %{SOURCE0} %{buildroot}/var/khotfix/5.10.134-18.al8.x86_64/22519882/
for f in patch description changeinfo; do echo x > %{buildroot}/var/khotfix/5.10.134-18.al8.x86_64/22519882/$f; done
%pre
exit 0
%post
exit 0
%files
/var/khotfix/5.10.134-18.al8.x86_64/22519882
SPEC
export SOURCE_DATE_EPOCH=1754322514
hyperfine -N --warmup 2 --runs 15 --export-json "$W/pkg.json" \
    -n 'rpmbuild -bb (xz, unsigned)' "rpmbuild -bb --quiet --define '_topdir $W/rb' --define '_sourcedir $W/rb/SOURCES' --define '_binary_payload w9.xzdio' --define '__os_install_post %{nil}' --define 'debug_package %{nil}' $W/rb/hotfix.spec" \
    -n 'khotfix package (xz, 2 signatures)' "$KH package $recipe --kernel 5.10.134-18.al8.x86_64 --build-dir $W/build --out-dir $W/rpms --pgp-key $W/keys/package-signing.secret.asc"
python3 "$RATIO" "$W/pkg.json" 'khotfix package (xz, 2 signatures)' 'rpmbuild -bb (xz, unsigned)'
