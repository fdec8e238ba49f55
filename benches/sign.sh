#!/bin/sh
# Module signing and packaging throughput against real peers, measured in the
# same run with hyperfine:
#   * `khotfix sign`   vs the kernel's scripts/sign-file (same key, cert, module)
#   * `khotfix package` (build + xz + two OpenPGP signatures)
#     vs `rpmbuild -bb` of an equivalent spec (xz, unsigned) + `rpmsign --addsign --rpmv3`
#     when gpg is usable, else rpmbuild alone (reported).
# Usage: benches/sign.sh            (builds the release binary first)
set -eu
cd "$(dirname "$0")/.."
cargo build --release --quiet
KH=$PWD/target/release/khotfix
SIGN_FILE=/usr/lib/linux-kbuild-6.1/scripts/sign-file
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT

abi=$(apt-cache depends linux-image-amd64 | sed -n 's/.*Depends: linux-image-\(.*-amd64\)$/\1/p' | head -n1)
# A real, largish module from the installed kernel, with its signature stripped by us.
src=$(find "/lib/modules/$abi/kernel" -name '*.ko' -size +400k | head -n1)
[ -n "$src" ] || { echo "no module found under /lib/modules/$abi" >&2; exit 1; }
openssl req -new -nodes -utf8 -sha256 -days 36500 -batch -x509 -subj /CN=bench \
    -newkey rsa:4096 -keyout "$W/key.pem" -out "$W/cert.pem" 2>/dev/null
"$KH" keys generate --bits 4096 "$W/keys" >/dev/null
cp "$src" "$W/in.ko"
echo "module: $src ($(stat -c %s "$src") bytes), RSA 4096, sha256"

hyperfine -N --warmup 3 --runs 30 --export-markdown "$W/sign.md" \
    -n sign-file "$SIGN_FILE sha256 $W/key.pem $W/cert.pem $W/in.ko $W/a.ko" \
    -n 'khotfix sign' "$KH sign --key $W/key.pem --cert $W/cert.pem -o $W/b.ko $W/in.ko"
cat "$W/sign.md"

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
hyperfine -N --warmup 2 --runs 15 --export-markdown "$W/pkg.md" \
    -n 'rpmbuild -bb (xz, unsigned)' "rpmbuild -bb --quiet --define '_topdir $W/rb' --define '_sourcedir $W/rb/SOURCES' --define '_binary_payload w9.xzdio' --define '__os_install_post %{nil}' --define 'debug_package %{nil}' $W/rb/hotfix.spec" \
    -n 'khotfix package (xz, 2 signatures)' "$KH package $recipe --kernel 5.10.134-18.al8.x86_64 --build-dir $W/build --out-dir $W/rpms --pgp-key $W/keys/package-signing.secret.asc"
cat "$W/pkg.md"
