#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# guest-patched-kvm.sh MODDIR TESTDIR: in a guest (selftests/runner/vm-run), replace
# Debian's KVM modules with the patched ones in MODDIR (kvm.ko, kvm-amd.ko,
# kvm-intel.ko, from scripts/kvm-modules.sh) and run the upstream KVM
# selftests in TESTDIR (built from the same patched source tree by
# scripts/native-guest-tests.sh) against them, as kselftest TAP.
#
# Tests: clear_dirty_log_batch_test (the new ioctl's ABI and errors),
# compat32_test (the same from a 32-bit process: KVM's compat ioctl),
# dirty_log_test in every log mode (clear-log-batch included),
# dirty_log_perf_test, and the other upstream tests named in $EXTRA_TESTS
# (default: a few quick ones that exercise the MMU and memslots).  Then,
# with PROJECT_TESTS (the project's guest test programs, build/tests/guest)
# and SHIM_KO (the kvm_dirtybatch.ko the tests open for its device), the
# project's own kselftests with KVM_DIRTYBATCH_BACKEND=native: their
# db_clear() goes to KVM_CLEAR_DIRTY_LOG_BATCH (differential against the
# plain ioctl, no lost dirty page under vCPU writes, memslot churn, the
# huge batch, another process's VM, the errno table of malformed ranges,
# also from a 32-bit process, and the fuzzer's short run, as make check
# runs it in the module's guests), and libdirtybatch's guest test with
# DIRTYBATCH_BACKEND=native.  vm-run scans the guest's kernel log
# afterwards.  Exit 0 all passed, 1 a test failed, 4 nothing could run.
set -u
moddir=${1:?usage: guest-patched-kvm.sh MODDIR TESTDIR}
testdir=${2:?usage: guest-patched-kvm.sh MODDIR TESTDIR}
iters=${DIRTY_LOG_ITERATIONS:-8}
extra=${EXTRA_TESTS-set_memory_region_test memslot_modification_stress_test kvm_page_table_test}

say() { echo "# $*"; }
n=0 failed=0

# shellcheck source=patched-kvm.sh
. "$(dirname "$0")/patched-kvm.sh"
use_patched_kvm "$moddir"
case $? in
0) ;;
4) echo "1..0 # SKIP Debian's KVM modules are not there to replace"; exit 4 ;;
*) echo "Bail out! the patched KVM modules in $moddir do not load"; exit 1 ;;
esac

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

# The project's programs, through the native backend (run from $PROJECT_TESTS).
project=(differential_test lost_dirty_test concurrency_test huge_batch_test
	 access_test clear_errors_test clear_errors_test_m32 fuzz_test fuzz_race_test
	 dirtybatch_kvm_guest)
if [ -n "${PROJECT_TESTS:-}" ]; then
	if [ -n "${SHIM_KO:-}" ] && ! insmod "$SHIM_KO"; then
		echo "Bail out! insmod $SHIM_KO on the patched KVM failed"
		exit 1
	fi
	for t in "${project[@]}"; do
		tests+=("$PROJECT_TESTS/$t")
		args+=("")
	done
fi

echo "1..${#tests[@]}"
for i in "${!tests[@]}"; do
	t=${tests[i]} a=${args[i]} dir=$testdir
	case $t in /*) dir=$(dirname "$t") t=$(basename "$t") ;; esac
	n=$((n + 1))
	if [ ! -x "$dir/$t" ]; then
		echo "not ok $n $t $a # no $dir/$t"
		failed=$((failed + 1))
		continue
	fi
	start=$SECONDS
	# shellcheck disable=SC2086 # the arguments are words
	out=$(KVM_DIRTYBATCH_BACKEND=native DIRTYBATCH_BACKEND=native "$dir/$t" $a 2>&1)
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

# The patched modules must unload cleanly too (the module first, if loaded).
grep -q '^kvm_dirtybatch ' /proc/modules && rmmod kvm_dirtybatch
if rmmod "${vendor/-/_}" kvm; then
	say "patched modules unloaded"
else
	say "rmmod of the patched modules failed"
	failed=$((failed + 1))
fi
say "$failed of $n failed"
[ "$failed" -eq 0 ]
