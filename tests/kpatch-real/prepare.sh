#!/bin/sh
# Prepare the inputs of the opt-in test tests/kpatch_real.rs, outside the
# repository:
#
#   1. a small Debian 6.1 kernel tree from Debian's linux-source-6.1 package
#      (tinyconfig + what livepatch, kpatch-build, IPVS and a busybox
#      initramfs boot under qemu need), built: bzImage, vmlinux, modules,
#      and the kernel as built kept in TREE/khotfix-pristine/ (vmlinux,
#      config, bzImage, and lib/modules/RELEASE with modules.dep for the
#      qemu check), because kpatch-build rebuilds the tree's own;
#   2. the real kpatch-build, built from a dynup/kpatch checkout given as an
#      argument (a source directory or a bare git directory such as the one
#      the library `fetch` tool returns); nothing of it enters the repository.
#
# Usage: prepare.sh KPATCH_CHECKOUT WORKDIR
# Env:   JOBS (make -j, default: nproc), NICE (default 10)
# Prints the two lines to export for `cargo test --test kpatch_real`.
set -eu

die() {
	echo "prepare.sh: $*" >&2
	exit 1
}

[ $# -eq 2 ] || die "usage: prepare.sh KPATCH_CHECKOUT WORKDIR"
KPATCH_IN=$1
WORK=$2
JOBS=${JOBS:-$(nproc)}
NICE=${NICE:-10}
case $JOBS in '' | *[!0-9]*) die "JOBS must be a number, got '$JOBS'" ;; esac
case $NICE in '' | *[!0-9]*) die "NICE must be a number, got '$NICE'" ;; esac

mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
REPO=$(cd "$(dirname "$0")/../.." && pwd)
case "$WORK/" in
"$REPO"/*) die "WORKDIR $WORK is inside the repository $REPO; choose a directory outside it" ;;
esac

log() {
	echo "prepare.sh: $(date -u +%H:%M:%S) $*" >&2
}

# --- kpatch-build --------------------------------------------------------------
KSRC=$WORK/kpatch
if [ ! -x "$KSRC/kpatch-build/create-diff-object" ]; then
	rm -rf "$KSRC"
	mkdir -p "$KSRC"
	if [ -d "$KPATCH_IN/kpatch-build" ]; then
		cp -a "$KPATCH_IN/." "$KSRC/"
	elif git --git-dir="$KPATCH_IN" rev-parse --verify -q HEAD >/dev/null; then
		git --git-dir="$KPATCH_IN" archive HEAD | tar -x -C "$KSRC"
		git --git-dir="$KPATCH_IN" log -1 --format='%H %s' >"$KSRC/KHOTFIX-COMMIT"
	else
		die "$KPATCH_IN is neither a kpatch source tree nor a git directory"
	fi
	[ -f "$KSRC/kpatch-build/kpatch-build" ] || die "$KPATCH_IN has no kpatch-build/kpatch-build"
	log "building kpatch-build in $KSRC"
	nice -n "$NICE" make -C "$KSRC/kpatch-build" -j"$JOBS" >"$WORK/kpatch-make.log" 2>&1 ||
		die "building kpatch-build failed; see $WORK/kpatch-make.log"
fi
KPATCH_BUILD=$KSRC/kpatch-build/kpatch-build

# --- kernel source ------------------------------------------------------------
TREE=$WORK/linux-source-6.1
if [ ! -f "$TREE/Makefile" ]; then
	TARBALL=/usr/src/linux-source-6.1.tar.xz
	if [ ! -f "$TARBALL" ]; then
		log "downloading linux-source-6.1 (apt-get download)"
		(cd "$WORK" && apt-get download linux-source-6.1) || die "apt-get download linux-source-6.1 failed"
		DEB=$(ls "$WORK"/linux-source-6.1_*.deb)
		rm -rf "$WORK/deb"
		dpkg-deb -x "$DEB" "$WORK/deb"
		TARBALL=$WORK/deb/usr/src/linux-source-6.1.tar.xz
		[ -f "$TARBALL" ] || die "$DEB has no usr/src/linux-source-6.1.tar.xz"
	fi
	log "unpacking $TARBALL"
	tar -xJf "$TARBALL" -C "$WORK"
	rm -rf "$WORK/deb" "$WORK"/linux-source-6.1_*.deb
	[ -f "$TREE/Makefile" ] || die "$TARBALL did not unpack to $TREE"
fi

# --- configuration --------------------------------------------------------------
# Built-in: what livepatch and kpatch-build need (ftrace with regs, kallsyms,
# DWARF, ORC, BUG: kpatch-build reads struct bug_entry's size from vmlinux),
# what IPVS needs, and what a busybox initramfs on a qemu serial console needs.
ENABLE="64BIT DEVTMPFS DEVTMPFS_MOUNT BLK_DEV_INITRD RD_GZIP PRINTK EARLY_PRINTK
TTY SERIAL_8250 SERIAL_8250_CONSOLE PROC_FS SYSFS BINFMT_ELF BINFMT_SCRIPT
MODULES MODULE_UNLOAD NET INET NETFILTER NETFILTER_ADVANCED LIVEPATCH FTRACE
FUNCTION_TRACER DYNAMIC_FTRACE KALLSYMS KALLSYMS_ALL DEBUG_KERNEL DEBUG_INFO
DEBUG_INFO_DWARF4 UNWINDER_ORC BUG MULTIUSER FUTEX EPOLL SHMEM TMPFS MAGIC_SYSRQ"
DISABLE="DEBUG_INFO_NONE DEBUG_INFO_REDUCED DEBUG_INFO_SPLIT DEBUG_INFO_BTF
MODULE_SIG TRIM_UNUSED_KSYMS UNWINDER_FRAME_POINTER UNWINDER_GUESS"
REQUIRED="LIVEPATCH DEBUG_INFO KALLSYMS_ALL UNWINDER_ORC DYNAMIC_FTRACE BUG
MODULES SERIAL_8250_CONSOLE BLK_DEV_INITRD RD_GZIP DEVTMPFS PROC_FS SYSFS
BINFMT_ELF 64BIT"

config_missing() {
	m=
	for o in $REQUIRED; do
		grep -qx "CONFIG_$o=y" .config 2>/dev/null || m="$m $o"
	done
	grep -qx "CONFIG_IP_VS=m" .config 2>/dev/null || m="$m IP_VS(=m)"
	echo "$m"
}

cd "$TREE"
if [ -n "$(config_missing)" ]; then
	log "configuring (tinyconfig + livepatch/kpatch/IPVS/qemu options)"
	[ -f .config ] || make ARCH=x86_64 tinyconfig >/dev/null
	for o in $ENABLE; do
		./scripts/config --enable "$o"
	done
	./scripts/config --module IP_VS
	for o in $DISABLE; do
		./scripts/config --disable "$o"
	done
	make ARCH=x86_64 olddefconfig >/dev/null
	missing=$(config_missing)
	if [ -n "$missing" ]; then
		mv .config .config.rejected
		die "olddefconfig dropped:$missing (see $TREE/.config.rejected)"
	fi
fi

# --- build ----------------------------------------------------------------------
# make decides what is stale (nothing, on a second run of an unchanged tree;
# everything, after kpatch-build rebuilt the tree with its own flags).
KREL=$(make -s kernelrelease)
log "building $KREL: bzImage vmlinux modules (make -j$JOBS, nice $NICE)"
nice -n "$NICE" make -j"$JOBS" bzImage vmlinux modules >"$WORK/kernel-make.log" 2>&1 ||
	die "kernel build failed; see $WORK/kernel-make.log"

# kpatch-build rebuilds vmlinux in the tree with its own flags; keep the
# kernel as built (what qemu boots and what -v and -c must describe) aside,
# the way khotfix's prepare stage hands vmlinux and config to the builder.
PRISTINE=$TREE/khotfix-pristine
if [ ! -f "$PRISTINE/vmlinux" ] || [ -n "$(find vmlinux -newer "$PRISTINE/vmlinux")" ]; then
	log "saving the kernel as built in $PRISTINE"
	rm -rf "$PRISTINE" "$PRISTINE.tmp"
	mkdir -p "$PRISTINE.tmp"
	cp vmlinux "$PRISTINE.tmp/vmlinux"
	cp .config "$PRISTINE.tmp/config"
	cp arch/x86/boot/bzImage "$PRISTINE.tmp/bzImage"
	make -s INSTALL_MOD_PATH="$PRISTINE.tmp" DEPMOD=/sbin/depmod modules_install >/dev/null ||
		die "modules_install failed"
	mv "$PRISTINE.tmp" "$PRISTINE"
fi
log "done: tree $TREE ($KREL), kpatch-build $KPATCH_BUILD"
echo "export KHOTFIX_REAL_KPATCH_BUILD=$KPATCH_BUILD"
echo "export KHOTFIX_REAL_KPATCH_TREE=$TREE"
