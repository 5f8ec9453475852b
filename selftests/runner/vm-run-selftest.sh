#!/usr/bin/env bash
# shellcheck disable=SC2016 # $out/$log in check strings expand at eval time
# SPDX-License-Identifier: GPL-2.0
#
# vm-run-selftest.sh [--backend vng|qemu] [--kernel K]: check selftests/runner/vm-run
# itself (exit status propagation, dmesg verdict, timeout, KVM and module
# setup) on one backend and kernel.  Prints TAP; exits 0 when all pass.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
vmrun=$here/vm-run
args=()
kernel=6.12
backend=${VM_RUN_BACKEND:-vng}
while [ $# -gt 0 ]; do
	case $1 in
	--backend | --kernel)
		[ $# -ge 2 ] || { echo "usage: $0 [--backend B] [--kernel K]" >&2 && exit 2; }
		[ "$1" = --kernel ] && kernel=$2
		[ "$1" = --backend ] && backend=$2
		args+=("$1" "$2")
		shift 2
		;;
	--backend=* | --kernel=*)
		[ "${1%%=*}" = --kernel ] && kernel=${1#*=}
		[ "${1%%=*}" = --backend ] && backend=${1#*=}
		args+=("$1")
		shift
		;;
	*) echo "usage: $0 [--backend B] [--kernel K]" >&2 && exit 2 ;;
	esac
done

# The release vm-run will pick (for in-tree test modules).
rel=$kernel
if [ ! -e "/boot/vmlinuz-$rel" ]; then
	rel=$(for f in /boot/vmlinuz-"$kernel".*; do
		[ -e "$f" ] && echo "${f#/boot/vmlinuz-}"
	done | sort -V | tail -n1)
fi

tmp=$(mktemp -d /tmp/vm-run-selftest.XXXXXX) || exit 2
trap 'rm -rf "$tmp"' EXIT
n=0 failed=0
out=$tmp/out log=$tmp/log

# run EXPECTED_STATUS DESCRIPTION [vm-run args...] -- COMMAND: runs vm-run,
# output in $out, log in $log; sets $st; ok if the status is EXPECTED_STATUS
# and the extra check in $check (a shell string, may be empty) passes.
check=
run() {
	local want=$1 desc=$2
	shift 2
	n=$((n + 1))
	: >"$log"
	"$vmrun" "${args[@]}" --log "$log" "$@" >"$out" 2>&1
	st=$?
	if [ "$st" = "$want" ] && { [ -z "$check" ] || eval "$check"; }; then
		echo "ok $n - $desc"
	else
		failed=$((failed + 1))
		echo "not ok $n - $desc (exit $st, want $want)"
		sed 's/^/# /' "$out" | tail -n 30
	fi
	check=
}

echo "TAP version 13"
echo "1..9"
echo "# vm-run ${args[*]} (release $rel)"

check='grep -qx hello-from-guest "$out" && grep -qx "vm-run: verdict: clean" "$out" &&
	grep -q hello-from-guest "$log" && grep -q "Linux version $rel" "$log"'
run 3 "exit status propagates (exit 3 -> 3), output shown and logged" \
	-- 'echo hello-from-guest; exit 3'

check='grep -q "^vm-run: verdict: BAD: .*WARNING: vm-run-selftest" "$out"'
run 125 "WARNING in dmesg after a passing command -> BAD, 125" \
	-- "echo 'WARNING: vm-run-selftest' >/dev/kmsg"

check='grep -q "^vm-run: verdict: BAD: .*Call Trace:" "$out"'
run 7 "failing command keeps its status (7) with a BAD verdict" \
	-- "echo 'Call Trace:' >/dev/kmsg; exit 7"

check='grep -q "^vm-run: timeout" "$out"'
run 124 "timeout kills the guest -> 124" --timeout 20 -- sleep 1000

dummy=$(modinfo -k "$rel" -n dummy 2>/dev/null)
check='grep -q "^vm-run: verdict: clean" "$out"'
run 0 "/dev/kvm and kvm_amd/kvm_intel present, --module insmod'ed first" \
	--module "$dummy" -- 'test -c /dev/kvm && grep -Eq "^kvm_(amd|intel) " /proc/modules &&
		grep -q "^dummy " /proc/modules'

# nfsv4 needs nfs and sunrpc: a plain insmod must fail.
nfsv4=$(modinfo -k "$rel" -n nfsv4 2>/dev/null)
check='grep -q "insmod .* failed" "$out"'
run 126 "--module that fails to insmod -> 126" --module "$nfsv4" -- true

run 126 "--module that does not exist -> 126 (no boot)" \
	--module "$tmp/nonexistent.ko" -- true

run 127 "unknown kernel -> 127 (no boot)" --kernel 0.0-nonexistent -- true

# A kernel that panics while booting (no modules: no 9p root) is booted a
# second time, then given up on.  Kernel image paths are vng-only.
if [ "$backend" = qemu ]; then
	n=$((n + 1))
	echo "ok $n - a guest dying while booting is booted once more, then 127 # SKIP vng only"
else
	mkdir -p "$tmp/nomod/boot" "$tmp/nomod/lib/modules/$rel" &&
		cp "/boot/vmlinuz-$rel" "$tmp/nomod/boot/vmlinuz"
	check='grep -q "^vm-run: booting again (attempt 2 of 2)" "$out" &&
		[ "$(grep -c "Kernel panic" "$log")" -ge 2 ]'
	run 127 "a guest dying while booting is booted once more, then 127" \
		--kernel "$tmp/nomod/boot/vmlinuz" --timeout 120 -- true
fi

echo "# $((n - failed)) passed, $failed failed"
[ "$failed" = 0 ]
