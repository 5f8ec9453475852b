#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# The module refuses to load, with one clear message and nothing left
# behind, when a KVM internal it resolves at load time is missing or lives
# outside KVM: selftests/kvm_dirtybatch/refused_load_guest.sh in a guest of its
# own (no module loaded) per built kernel, with the test-only hide_symbol.ko
# making kallsyms_lookup_name() lie.  TAP, descriptions prefixed with the
# kernel; exit 4 (skip) without a built module.
cd "$(dirname "$0")/../.." || exit 1
O=${O:-$PWD/build}
. scripts/guest-each-kernel.sh
mkdir -p "$O/logs"
refused_load() { # dir release
	selftests/runner/vm-run --kernel "$2" --timeout 300 \
		--log "$O/logs/refused-load-$2.log" -- \
		selftests/kvm_dirtybatch/refused_load_guest.sh "$1/kvm_dirtybatch.ko" \
		"$1/hide_symbol.ko"
}
each_kernel_guest refused_load hide_symbol.ko
