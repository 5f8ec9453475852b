#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# build-config-variant.sh HEADERS OPTION: build the module against a copy
# of the installed kernel headers HEADERS (/usr/src/linux-headers-<rel>)
# with the Kconfig OPTION (e.g. CONFIG_KVM_SMM) turned off in the copy's
# autoconf.h and auto.conf, W=1, and fail on any warning.  A config
# fragment over the headers: enough for options that only change what the
# headers declare, as CONFIG_KVM_SMM does (kvm_arch_nr_memslot_as_ids(),
# KVM_MAX_NR_ADDRESS_SPACES).  Used by scripts/check.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
hdr=${1:?usage: build-config-variant.sh HEADERS OPTION}
opt=${2:?usage: build-config-variant.sh HEADERS OPTION}
O=${O:-$PWD/build}
rel=${hdr#/usr/src/linux-headers-}
name=$rel-no-${opt#CONFIG_}
work=$O/config-variant/$name

grep -q "^$opt=y" "$hdr/include/config/auto.conf" ||
	{ echo "$hdr: $opt is not =y, nothing to turn off"; exit 1; }
rm -rf "$work"
mkdir -p "$work"
cp -a "$hdr/." "$work/"
# the headers' links (scripts, tools) are relative to /usr/src
for l in "$hdr"/*; do
	[ -L "$l" ] && ln -sfn "$(readlink -f "$l")" "$work/${l##*/}"
done
sed -i "/^#define $opt 1\$/d" "$work/include/generated/autoconf.h"
sed -i "/^$opt=y\$/d" "$work/include/config/auto.conf"
sed -i "s/^$opt=y\$/# $opt is not set/" "$work/.config"
log=$work/build.log
make -s module KDIR="$work" RELEASE="$name" O="$O" >"$log" 2>&1 || { cat "$log"; exit 1; }
if grep -E 'warning:|error:' "$log"; then
	exit 1
fi
echo "built $O/module/$name/kvm_dirtybatch.ko with $opt off"
