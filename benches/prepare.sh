#!/bin/sh
# Prepare-stage benchmark: khotfix's safe RPM unpacker against the usual
# peer, `rpm2cpio X | cpio -idm` (no path checks), on two packages built
# here with rpmbuild:
#   - a kernel-like source RPM (one big tarball + 100 small sources),
#   - a kernel-devel-like binary RPM (the ~10k-file linux-headers tree).
# and the fail-fast patch check against `patch -p1 --dry-run` on the same
# ~10k-file tree with a patch touching 50 files.
# Prints median wall times and the khotfix/peer ratio of each (with
# /bin/true as the process-start floor for the patch check).
# Run: sh benches/prepare.sh   (RUNS=5, EXAMPLES=dir; needs rpmbuild,
#      hyperfine, cpio, python3)
set -eu
ratio() { python3 "$RATIO" "$@"; }
cd "$(dirname "$0")/.."
RATIO=$PWD/benches/tools/ratio.py
RUNS=${RUNS:-5}
# EXAMPLES=dir measures unpack_rpm/apply_check binaries kept from another build.
if [ -z "${EXAMPLES:-}" ]; then
    cargo build --release --example unpack_rpm --example apply_check >/dev/null
    EXAMPLES=$PWD/target/release/examples
fi
BIN=$EXAMPLES/unpack_rpm
CHECK=$EXAMPLES/apply_check
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
for HDRS in /usr/src/linux-headers-*-common; do break; done

mkdir -p "$W/top/SOURCES" "$W/top/SPECS"
tar -C "$(dirname "$HDRS")" -cJf "$W/top/SOURCES/linux-6.1.tar.xz" "$(basename "$HDRS")"
i=0; extra=""
while [ $i -lt 100 ]; do
    head -c 20000 /dev/urandom | base64 > "$W/top/SOURCES/config-$i"
    extra="${extra}Source$((i + 10)): config-$i
"
    i=$((i + 1))
done
cat > "$W/top/SPECS/kernel.spec" <<SPEC
Name: kernel
Version: 6.1
Release: 1
Summary: bench
License: GPLv2
Source0: linux-6.1.tar.xz
$extra
%description
bench
%prep
%files
SPEC
cat > "$W/top/SPECS/devel.spec" <<SPEC
Name: kernel-devel
Version: 6.1
Release: 1
Summary: bench
License: GPLv2
%description
bench
%install
mkdir -p %{buildroot}/usr/src/kernels
cp -a $HDRS %{buildroot}/usr/src/kernels/6.1
%files
/usr/src/kernels/6.1
SPEC
RB="rpmbuild --define '_topdir $W/top' --define '_source_payload w6.xzdio' --define '_binary_payload w6.xzdio' --define '__os_install_post %{nil}' --define '_build_id_links none' --define 'debug_package %{nil}'"
eval "$RB -bs $W/top/SPECS/kernel.spec" >/dev/null
eval "$RB -bb $W/top/SPECS/devel.spec" >/dev/null 2>&1
for SRPM in "$W"/top/SRPMS/*.src.rpm; do break; done
for DEVEL in "$W"/top/RPMS/*/kernel-devel-*.rpm; do break; done
ls -l "$SRPM" "$DEVEL"

for PKG in "$SRPM" "$DEVEL"; do
    echo "== $(basename "$PKG")"
    hyperfine --warmup 1 --runs "$RUNS" --export-json "$W/h.json" \
        --prepare "rm -rf $W/a $W/b; mkdir $W/b" \
        -n khotfix "$BIN $PKG $W/a" \
        -n rpm2cpio-cpio "cd $W/b && rpm2cpio $PKG | cpio -idm --quiet"
    ratio "$W/h.json" khotfix rpm2cpio-cpio
done

echo "== patch check (50 files) on $(basename "$HDRS")"
cp -a "$HDRS" "$W/tree"
cp -a "$HDRS" "$W/tree2"
find "$W/tree2/include/linux" -name '*.h' | sort | head -n 50 | while read -r f; do
    printf '/* khotfix bench */\n' >> "$f"
done
(cd "$W" && diff -ruN --no-dereference tree tree2 > "$W/bench.patch") || true
hyperfine -N --warmup 2 --runs "$((RUNS * 4))" --export-json "$W/h.json" \
    -n khotfix-check "$CHECK $W/tree $W/bench.patch" \
    -n patch-dry-run "patch -p1 --dry-run --batch --forward -s -d $W/tree -i $W/bench.patch" \
    -n floor /bin/true
ratio "$W/h.json" khotfix-check patch-dry-run
