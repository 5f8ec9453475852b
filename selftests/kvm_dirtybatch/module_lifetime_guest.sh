#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# module_lifetime_guest.sh KO TESTS_DIR: the module's lifetime, in a guest where
# KO is loaded (selftests/runner/vm-run --module KO -- module_lifetime_guest.sh KO DIR).
# Not a test of the common guest run (it unloads the module): run by
# scripts/tooling-tests/module-lifetime.sh and scripts/fuzz.sh.
#
#  - rmmod is refused (EBUSY) while a device fd is open: in this shell, in a
#    background process, in a running fuzzer (tried again and again while
#    it runs); the module reference count says why;
#  - kvm.ko lists kvm_dirtybatch among its users;
#  - once every fd is closed, live_allocs is 0 and rmmod succeeds: the
#    device node and /sys/module/kvm_dirtybatch are gone;
#  - loading it again gives fresh counters; three more load / use / unload
#    cycles; the module is left loaded.
# Prints TAP; exits 0 (pass) or 1.
set -u
ko=${1:?usage: module_lifetime_guest.sh KO TESTS_DIR}
tests=${2:?usage: module_lifetime_guest.sh KO TESTS_DIR}
dev=/dev/kvm_dirtybatch
stats=/sys/kernel/debug/kvm_dirtybatch/stats
# shellcheck source=tap.sh
. "$(dirname "$0")/tap.sh"
loaded() { [ -d /sys/module/kvm_dirtybatch ]; }
refcnt() { cat /sys/module/kvm_dirtybatch/refcnt 2>/dev/null; }
stat_of() { awk -v f="$1" '$1 == f { print $2 }' "$stats"; }
rmmod_refused() { # rmmod must fail with "in use"
	local out
	out=$(rmmod kvm_dirtybatch 2>&1) && return 1
	loaded && [ -c "$dev" ] && echo "$out" | grep -qi "in use"
}
device_node_appears() {
	local i
	for i in $(seq 50); do
		[ -c "$dev" ] && return 0
		sleep 0.1
	done
	return 1
}

t0=$(date +%s)
elapsed() { echo "# [$(( $(date +%s) - t0 ))s] $*"; }
echo "TAP version 13"
mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug
check "module loaded, $dev present" loaded
check "$dev is a char device" test -c "$dev"

# 1. this shell holds the device open
exec 3<>"$dev"
check "refcnt is 1 with one fd open (is $(refcnt))" test "$(refcnt)" = 1
check "rmmod refused while this shell holds $dev" rmmod_refused
exec 3>&-
check "refcnt is 0 once it is closed (is $(refcnt))" test "$(refcnt)" = 0

# 2. another process holds it
sleep 600 3<>"$dev" &
holder=$!
sleep 0.5
check "rmmod refused while process $holder holds $dev" rmmod_refused
kill "$holder"
wait "$holder" 2>/dev/null

# 3. a fuzzer with VMs, vCPUs and calls in flight, holding the device
#    open (also as fd 3, from its start to its exit); rmmod tried throughout
KVM_DIRTYBATCH_SEED=7 KVM_DIRTYBATCH_FUZZ_RACE_SECONDS=4 KVM_DIRTYBATCH_FUZZ_RACE_CALLS=100000000 \
	nice -n 10 "$tests/fuzz_race_test" >/tmp/lifetime-fuzz.out 2>&1 3<>"$dev" &
fuzzer=$!
tries=0 refused=0 at_exit=0 bad=0
running() { ! grep -q '^State:.*Z' "/proc/$fuzzer/status" 2>/dev/null && test -d "/proc/$fuzzer"; }
while running; do
	tries=$((tries + 1))
	if rmmod_refused; then
		refused=$((refused + 1))
	elif running; then
		bad=$((bad + 1))	# unloaded under a running holder
	else
		at_exit=$((at_exit + 1))	# the fuzzer had just exited
	fi
	loaded || insmod "$ko"
	sleep 0.05
done
wait "$fuzzer"
rc=$?
grep -E 'fuzz-summary: races (seed|module)' /tmp/lifetime-fuzz.out | sed 's/^/# /'
check "fuzzer passed while rmmod was tried $tries times" test "$rc" = 0
check "rmmod refused while the fuzzer ran ($refused of $tries; $at_exit as it exited)" \
	test "$tries" -gt 0 -a "$bad" = 0 -a "$refused" -gt 0

elapsed "fuzzer done"
# 4. kvm.ko cannot go away under the module
check "kvm.ko lists kvm_dirtybatch as a user" \
	sh -c "grep -E '^kvm ' /proc/modules | grep -q kvm_dirtybatch"

# 5. all closed: counters back to zero, unload works
check "refcnt 0 with every fd closed" test "$(refcnt)" = 0
check "live_allocs is 0 before unload (is $(stat_of live_allocs))" test "$(stat_of live_allocs)" = 0
check "rmmod succeeds" rmmod kvm_dirtybatch
check "module gone from /sys/module" sh -c '! test -d /sys/module/kvm_dirtybatch'
check "$dev gone" sh -c "! test -e $dev"

# 6. load again: fresh counters
check "insmod again" insmod "$ko"
check "$dev back" device_node_appears
check "counters start from zero (calls $(stat_of calls), live_allocs $(stat_of live_allocs))" \
	test "$(stat_of calls)" = 0 -a "$(stat_of live_allocs)" = 0

elapsed "reloaded"
# 7. more cycles with work in between
for i in 1 2 3; do
	KVM_DIRTYBATCH_SEED=$i KVM_DIRTYBATCH_FUZZ_CALLS=200 \
		"$tests/fuzz_test" >/tmp/lifetime-cycle.out 2>&1
	r=$?
	la=$(stat_of live_allocs)
	if [ "$r" = 0 ] && [ "$la" = 0 ] && rmmod kvm_dirtybatch && ! test -e "$dev" &&
	   insmod "$ko" && device_node_appears; then
		ok "cycle $i: 200 fuzzed calls, live_allocs 0, unload, load"
	else
		not_ok "cycle $i: fuzzer exit $r, live_allocs $la"
		tail -n 20 /tmp/lifetime-cycle.out | sed 's/^/# /'
	fi
done
check "left loaded" loaded

echo "1..$n"
echo "# $((n - failed)) passed, $failed failed"
[ "$failed" = 0 ]
