#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# build.sh KERNELVER KERNEL_SOURCE_DIR: DKMS's MAKE[0] for
# kvm-dirtybatch-native (dkms.conf).  Builds kvm.ko, kvm-amd.ko and
# kvm-intel.ko with the KVM_CLEAR_DIRTY_LOG_BATCH series applied, into the
# current directory (DKMS's build directory), from the Debian linux-source
# package whose version is the kernel image's exactly, against the headers
# in KERNEL_SOURCE_DIR; then checks vermagic and the symbol versions
# against the stock kvm.ko and Module.symvers (kvm-build.sh, shared with
# make kvm-modules).
#
# build.sh --check KERNELVER: only say which source the build would use,
# or why it refuses (DKMS's PRE_BUILD: its output reaches the terminal).
#
# The source, in this order (DKMS cannot download):
#  1. /usr/src/linux-source-<series>.tar.xz, if the installed
#     linux-source-<series> package is the image's version;
#  2. $KVM_DIRTYBATCH_NATIVE_DEBS/linux-source-<series>_<version>_all.deb
#     (default /var/cache/kvm-dirtybatch/debs, where make kvm-modules caches
#     them and `apt-get download` puts one);
#  3. else it refuses.
# KVM_DIRTYBATCH_NATIVE_DEBS is for the tests (scripts/tooling-tests/dkms.sh
# points it at an empty directory to see the refusal); operators leave it
# unset.
#
# Standalone in /usr/src/kvm-dirtybatch-native-<version>/: kvm-build.sh and
# patches/<series>/ next to it; run from the source tree, it takes them
# from module/native/.
set -euo pipefail
shopt -s inherit_errexit
here=$(cd "$(dirname "$0")" && pwd)
log() { echo "kvm-dirtybatch-native: $*" >&2; }
die() { log "$*"; exit 1; }

lib=$here/kvm-build.sh patches=$here/patches
[ -f "$lib" ] || lib=$here/../kvm-build.sh patches=$here/../patches
# shellcheck source=module/native/kvm-build.sh
. "$lib"

check=
if [ "${1:-}" = --check ]; then
	check=1
	shift
fi
[ $# -ge 1 ] || die "usage: build.sh [--check] KERNELVER [KERNEL_SOURCE_DIR]"
k=$1
debs=${KVM_DIRTYBATCH_NATIVE_DEBS:-/var/cache/kvm-dirtybatch/debs}

img=$(image_version "$k")
[ -n "$img" ] || die "$k: no installed kernel image linux-image-$k: refusing"
series=$(version_series "$img")
pdir=$patches/$series
[ -f "$pdir/series" ] || die "$k: linux-image-$k $img is of series ${series:-?}, which has no KVM_CLEAR_DIRTY_LOG_BATCH series (6.1, 6.12, 7.3): refusing"
hdr=$(pkg_version "" "linux-headers-$k")
[ -z "$hdr" ] || [ "$hdr" = "$img" ] ||
	die "$k: linux-image-$k is $img but linux-headers-$k is $hdr: refusing"

# The source: "tarxz FILE" or "deb FILE".
tarxz=/usr/src/linux-source-$series.tar.xz
# Unpacked counts as installed: when apt upgrades the kernel and
# linux-source together, DKMS's rebuild for the new kernel may run before
# linux-source is configured (its files are in place once it is unpacked).
srcver=$(dpkg-query -W -f '${db:Status-Abbrev}${Version}\n' "linux-source-$series" 2>/dev/null |
	sed -n 's/^i[iU] *//p' || true)
if [ "$srcver" = "$img" ] && [ -f "$tarxz" ]; then
	how=tarxz from=$tarxz
elif from=$(cached_deb "$debs" "$series" "$img"); then
	how=deb
else
	have=${srcver:-not installed}
	die "$k: refusing: linux-image-$k is $img, and KVM's modules build only from linux-source-$series $img exactly; found linux-source-$series $have, and no $debs/linux-source-${series}_${img}_all.deb. Fetch it with: mkdir -p $debs && cd $debs && apt-get download linux-source-$series=$img"
fi
log "$k: linux-source-$series $img from $from"
[ -z "$check" ] || exit 0

[ $# -ge 2 ] || die "usage: build.sh KERNELVER KERNEL_SOURCE_DIR"
kdir=$(readlink -f "$2")
[ -f "$kdir/Module.symvers" ] || die "$k: no Module.symvers in $2 (linux-headers-$k)"
out=$PWD work=$PWD/linux
rm -rf "$work"
log "$k: extracting ${KVM_SRC_PATHS[*]}"
if [ "$how" = deb ]; then
	extract_deb "$from" "$series" "$work"
else
	extract_tarxz "$from" "$series" "$work"
fi
apply_series "$work" "$pdir"
kbuild_tweaks "$work"
kvm_make_cmd "$kdir" "$work" "$(nproc)"
log "$k: building"
"${KVM_MAKE[@]}"
strip_modules "$work" "$out"
check_modules "$k" "$kdir" "$out" "$work"
