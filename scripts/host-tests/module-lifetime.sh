#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# The module's lifetime, in a 6.12 guest of its own (the test unloads the
# module): rmmod refused while a device fd is open, live_allocs 0 and rmmod
# working once every fd is closed, load/use/unload cycles.  TAP from
# selftests/kvm_dirtybatch/module_lifetime.sh; exit 4 (skip) without the
# module or the test programs built.
cd "$(dirname "$0")/../.." || exit 1
O=${O:-$PWD/build}
# (a kernel of /boot: not build-config-variant.sh's <rel>-no-KVM_SMM)
rel=$(for k in "$O"/module/6.12.*/kvm_dirtybatch.ko; do
	r=$(basename "$(dirname "$k")")
	[ -f "$k" ] && [ -e "/boot/vmlinuz-$r" ] && echo "$r"
done | sort -V | tail -n1)
if [ -z "$rel" ] || [ ! -x "$O/tests/guest/fuzz_test" ] || [ ! -e "/boot/vmlinuz-$rel" ]; then
	echo "1..0 # SKIP no 6.12 kernel with a built module and tests"
	exit 4
fi
mkdir -p "$O/logs"
exec selftests/vm-run --kernel "$rel" --module "$O/module/$rel/kvm_dirtybatch.ko" \
	--timeout 300 --log "$O/logs/module-lifetime-$rel.log" -- \
	selftests/kvm_dirtybatch/module_lifetime.sh "$O/module/$rel/kvm_dirtybatch.ko" \
	"$O/tests/guest"
