#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# guest-upstream.sh MODDIR TESTDIR: in a guest (selftests/vm-run), replace
# Debian's KVM modules with the patched ones in MODDIR (kvm.ko, kvm-amd.ko,
# kvm-intel.ko, from scripts/kvm-modules.sh) and run the upstream KVM
# selftests in TESTDIR (built from the same patched source tree by
# scripts/native-guest-tests.sh) against them, as kselftest TAP.
#
# Tests: clear_dirty_log_batch_test (the new ioctl's ABI and errors),
# compat32_test (the same from a 32-bit process: KVM's compat ioctl),
# dirty_log_test in every log mode (clear-log-batch included),
# dirty_log_perf_test, and the other upstream tests named in $EXTRA_TESTS
# (default: a few quick ones that exercise the MMU and memslots).  vm-run
# scans the guest's kernel log afterwards.  Exit 0 all passed, 1 a test
# failed, 4 nothing could run (skip).
set -u
moddir=${1:?usage: guest-upstream.sh MODDIR TESTDIR}
testdir=${2:?usage: guest-upstream.sh MODDIR TESTDIR}
iters=${DIRTY_LOG_ITERATIONS:-8}
extra=${EXTRA_TESTS-set_memory_region_test memslot_modification_stress_test kvm_page_table_test}

say() { echo "# $*"; }
n=0 failed=0

# The vendor module vm-run loaded decides which patched one replaces it.
if grep -q '^kvm_amd ' /proc/modules; then
	vendor=kvm-amd
elif grep -q '^kvm_intel ' /proc/modules; then
	vendor=kvm-intel
else
	echo "1..0 # SKIP no kvm_amd or kvm_intel loaded"
	exit 4
fi
stock=$(modinfo -F filename kvm)
if ! rmmod "${vendor/-/_}" kvm; then
	echo "1..0 # SKIP cannot unload Debian's KVM modules"
	exit 4
fi
if ! insmod "$moddir/kvm.ko" || ! insmod "$moddir/$vendor.ko"; then
	echo "Bail out! insmod of the patched $moddir/kvm.ko, $vendor.ko failed"
	exit 1
fi
for _ in $(seq 50); do
	[ -c /dev/kvm ] && break
	sleep 0.1
done
say "kernel $(uname -r); replaced $stock by $moddir/kvm.ko and $vendor.ko"
say "patched kvm.ko vermagic: $(modinfo -F vermagic "$moddir/kvm.ko")"

tests=("clear_dirty_log_batch_test" "compat32_test")
args=("" "")
for m in dirty-log clear-log dirty-ring clear-log-batch; do
	tests+=("dirty_log_test")
	args+=("-M $m -i $iters")
done
tests+=("dirty_log_perf_test" "dirty_log_perf_test")
args+=("-b 64M -v 1 -i 3" "-b 16M -v 2 -i 3 -x 4")
for t in $extra; do
	tests+=("$t")
	args+=("")
done

echo "1..${#tests[@]}"
for i in "${!tests[@]}"; do
	t=${tests[i]} a=${args[i]}
	n=$((n + 1))
	if [ ! -x "$testdir/$t" ]; then
		echo "not ok $n $t $a # no $testdir/$t"
		failed=$((failed + 1))
		continue
	fi
	start=$SECONDS
	# shellcheck disable=SC2086 # the arguments are words
	out=$("$testdir/$t" $a 2>&1)
	rc=$?
	secs=$((SECONDS - start))
	printf '%s\n' "$out" | sed 's/^/#   /'
	case $rc in
	0) echo "ok $n $t $a # ${secs}s" ;;
	4) echo "ok $n $t $a # SKIP ${secs}s" ;;
	*)
		echo "not ok $n $t $a # exit $rc, ${secs}s"
		failed=$((failed + 1))
		;;
	esac
done

# The patched modules must unload cleanly too.
if rmmod "${vendor/-/_}" kvm; then
	say "patched modules unloaded"
else
	say "rmmod of the patched modules failed"
	failed=$((failed + 1))
fi
say "$failed of $n failed"
[ "$failed" -eq 0 ]
