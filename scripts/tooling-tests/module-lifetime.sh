#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# The module's lifetime, in a guest of its own per built kernel (the test
# unloads the module): rmmod refused while a device fd is open, live_allocs
# 0 and rmmod working once every fd is closed, load/use/unload cycles.  TAP
# from selftests/kvm_dirtybatch/module_lifetime_guest.sh, descriptions prefixed
# with the kernel; exit 4 (skip) without a built module or the test programs.
cd "$(dirname "$0")/../.." || exit 1
O=${O:-$PWD/build}
. scripts/guest-each-kernel.sh
mkdir -p "$O/logs"
[ -x "$O/tests/guest/fuzz_test" ] && [ -x "$O/tests/guest/fuzz_race_test" ] || {
	echo "1..0 # SKIP the guest test programs are not built"
	exit 4
}
lifetime() { # dir release
	selftests/runner/vm-run --kernel "$2" --module "$1/kvm_dirtybatch.ko" \
		--timeout 300 --log "$O/logs/module-lifetime-$2.log" -- \
		selftests/kvm_dirtybatch/module_lifetime_guest.sh "$1/kvm_dirtybatch.ko" \
		"$O/tests/guest"
}
each_kernel_guest lifetime
