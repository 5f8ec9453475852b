#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# The module's lifetime, in a guest of its own per built kernel (the test
# unloads the module): rmmod refused while a device fd is open, live_allocs
# 0 and rmmod working once every fd is closed, load/use/unload cycles.  TAP
# from selftests/kvm_dirtybatch/module_lifetime.sh, descriptions prefixed
# with the kernel; exit 4 (skip) without a built module or the test programs.
cd "$(dirname "$0")/../.." || exit 1
O=${O:-$PWD/build}
rc=4
mkdir -p "$O/logs"
[ -x "$O/tests/guest/fuzz_test" ] || {
	echo "1..0 # SKIP the guest test programs are not built"
	exit 4
}
# (kernels of /boot only: not build-config-variant.sh's <rel>-no-KVM_SMM)
for d in "$O"/module/*/; do
	d=${d%/} rel=$(basename "$d")
	[ -f "$d/kvm_dirtybatch.ko" ] && [ -e "/boot/vmlinuz-$rel" ] || continue
	selftests/vm-run --kernel "$rel" --module "$d/kvm_dirtybatch.ko" \
		--timeout 300 --log "$O/logs/module-lifetime-$rel.log" -- \
		selftests/kvm_dirtybatch/module_lifetime.sh "$d/kvm_dirtybatch.ko" \
		"$O/tests/guest" 2>&1 | sed -E "s/^((not )?ok [0-9]+) - /\1 - $rel: /"
	r=${PIPESTATUS[0]}
	if [ "$r" -ne 0 ] && [ "$r" -ne 4 ]; then
		echo "not ok - $rel: module_lifetime.sh exited with status $r"
		rc=1
	elif [ "$rc" -ne 1 ] && [ "$r" -eq 0 ]; then
		rc=0
	fi
done
[ "$rc" -eq 4 ] && echo "1..0 # SKIP no kernel with a built module"
exit $rc
