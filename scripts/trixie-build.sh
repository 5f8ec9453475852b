#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# trixie-build.sh RELEASE: `make module` for a kernel whose headers are in
# the trixie root (scripts/trixie-root.sh; Debian's 7.x from
# trixie-backports), run inside that root with trixie's toolchain: writes
# $O/module/RELEASE/kvm_dirtybatch.ko and hide_symbol.ko like `make module`
# does for the host's kernels (O: build directory, default ./build).
# The tree (and O, if outside it) is bind-mounted at the same path in a
# mount namespace of its own, so nothing stays mounted.  Needs root.
#
# trixie-build.sh --list: the releases whose headers the root has.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
# shellcheck source=kernels.sh
. scripts/kernels.sh
root=$TRIXIE_ROOT

if [ "${1:-}" = --list ]; then
	for h in "$root"/usr/src/linux-headers-*-amd64; do
		[ -f "$h/Module.symvers" ] && echo "${h##*/linux-headers-}"
	done
	exit 0
fi
rel=${1:?usage: trixie-build.sh RELEASE | --list}
O=${O:-$top/build}
mkdir -p "$O"
O=$(cd "$O" && pwd)
kdir=/usr/src/linux-headers-$rel
[ -f "$root$kdir/Module.symvers" ] ||
	{ echo "trixie-build: no $kdir in $root (run make deps)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] ||
	{ echo "trixie-build: building for $rel in the trixie root needs root" >&2; exit 1; }

# Mount points inside the root: the tree, and O when it is elsewhere.
binds=("$top")
case $O/ in "$top"/*) ;; *) binds+=("$O") ;; esac
for d in "${binds[@]}"; do
	mkdir -p "$root$d"
done
# $O's module/<rel> is written by root inside the root, as make module
# run as root would write it.
exec unshare --mount --propagation private -- bash -c '
	set -e
	root=$1 top=$2 rel=$3 O=$4
	shift 4
	for d in "$@"; do
		mount --bind "$d" "$root$d"
	done
	mount -t proc proc "$root/proc"
	exec chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
		HOME=/root LC_ALL=C.UTF-8 \
		make -s -C "$top" module KDIR=/usr/src/linux-headers-"$rel" \
		RELEASE="$rel" O="$O"
' trixie-build "$root" "$top" "$rel" "$O" "${binds[@]}"
