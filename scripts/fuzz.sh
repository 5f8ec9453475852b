#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The body of `make fuzz` (after `make deps`): the long fuzzing run of
# KVM_DIRTYBATCH_CLEAR on every test kernel, then the huge-batch comparison
# and the module lifetime checks, each kernel in fresh guests.
#
#   scripts/fuzz.sh [--calls N] [--race-calls N] [--race-seconds S]
#                   [--seed S] [--kernels "6.1 6.12 7.3"] [--parallel]
#
# Per kernel, one guest runs build/tests/guest/huge_batch_test (64 GiB and
# 1 TiB memslots; first, so
# that the module-wide longest MMU-lock hold is its own), fuzz_test (N
# deterministic calls, default 800000) and fuzz_race_test (at least
# --race-calls calls, default 200000, or --race-seconds, default 1800);
# another guest runs selftests/kvm_dirtybatch/module_lifetime_guest.sh (it
# unloads the module).  Prints, per kernel: calls made, errnos seen per
# input class, races exercised, invariant violations (must be 0), the
# huge-batch figures and the guest kernel log verdict.  Exits non-zero if
# anything failed.  Logs: build/logs/fuzz-<release>.{out,log},
# build/logs/lifetime-<release>.{out,log}.  Every kernel uses the same
# seed: the deterministic part then gives the same digest on all of them.
# --kernels defaults to CHECK_KERNELS, else "6.1 6.12 7.3".
# Environment: O (build dir, default ./build).
set -u
cd "$(dirname "$0")/.." || exit 1
top=$PWD
O=${O:-$top/build}
calls=800000 race_calls=200000 race_secs=1800 seed= kernels= parallel=0

usage() { sed -n '5,10p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
	case $1 in
	--calls) calls=$2; shift 2 ;;
	--race-calls) race_calls=$2; shift 2 ;;
	--race-seconds) race_secs=$2; shift 2 ;;
	--seed) seed=$2; shift 2 ;;
	--kernels) kernels=$2; shift 2 ;;
	--parallel) parallel=1; shift ;;
	-h | --help) usage ;;
	*) echo "fuzz.sh: unknown argument $1" >&2; usage ;;
	esac
done
[ -n "$seed" ] || seed=$(( $(date +%s) % 1000000007 ))
logdir=$O/logs
mkdir -p "$logdir"
start=$(date +%s)

# shellcheck source=kernels.sh
. "$top/scripts/kernels.sh"
kernels=${kernels:-${CHECK_KERNELS:-6.1 6.12 $TRIXIE_SERIES}}
has_module() { [ -f "$O/module/$1/kvm_dirtybatch.ko" ]; }

echo "fuzz: building the module for every kernel and the tests"
make -s modules-all O="$O" >"$logdir/fuzz-build.log" 2>&1 &&
	make -s selftests O="$O" >>"$logdir/fuzz-build.log" 2>&1 || {
	tail -n 30 "$logdir/fuzz-build.log"
	echo "fuzz: build failed (log: $logdir/fuzz-build.log)"
	exit 1
}

# Deterministic calls at about 1.5 k/s under TCG, races slower: a generous
# guest timeout.
timeout=$(( calls / 200 + race_secs + race_calls / 50 + 900 ))

run_kernel() { # release
	local rel=$1 ko=$O/module/$1/kvm_dirtybatch.ko
	local env="KVM_DIRTYBATCH_SEED=$seed KVM_DIRTYBATCH_FUZZ_CALLS=$calls"
	env+=" KVM_DIRTYBATCH_FUZZ_RACE_CALLS=$race_calls KVM_DIRTYBATCH_FUZZ_RACE_SECONDS=$race_secs"
	selftests/runner/vm-run --kernel "$rel" --module "$ko" --timeout "$timeout" \
		--log "$logdir/fuzz-$rel.log" -- \
		"KVM_DIRTYBATCH_HUGE_GIB=64,1024 $O/tests/guest/huge_batch_test; r=\$?; for t in fuzz_test fuzz_race_test; do $env $O/tests/guest/\$t || r=1; done; exit \$r" \
		>"$logdir/fuzz-$rel.out" 2>&1
	echo $? >"$logdir/fuzz-$rel.out.rc"
	selftests/runner/vm-run --kernel "$rel" --module "$ko" --timeout 900 \
		--log "$logdir/lifetime-$rel.log" -- \
		selftests/kvm_dirtybatch/module_lifetime_guest.sh "$ko" "$O/tests/guest" \
		>"$logdir/lifetime-$rel.out" 2>&1
	echo $? >"$logdir/lifetime-$rel.out.rc"
}

rels=
for series in $kernels; do
	rel=$(newest_release "$series" has_module)
	if [ -z "$rel" ]; then
		echo "fuzz: no installed $series kernel with a built module (make deps; make modules-all)"
		exit 1
	fi
	rels+=" $rel"
done

echo "fuzz: seed $seed; per kernel $calls deterministic calls + at least $race_calls" \
	"racing calls (or ${race_secs}s); kernels:$rels"
pids=
for rel in $rels; do
	echo "fuzz: [$(( $(date +%s) - start ))s] guest $rel: fuzzing (log: $logdir/fuzz-$rel.log)"
	if [ "$parallel" = 1 ]; then
		run_kernel "$rel" &
		pids+=" $!"
	else
		run_kernel "$rel"
	fi
done
for p in $pids; do wait "$p"; done

# ---- report ----
fail=0
sum() { # file test -> the value of key=N on its "fuzz-summary: <test> seed=" line
	sed -n "s/.*fuzz-summary: $2 seed=.* $3=\([0-9.]*\).*/\1/p" "$1" | tail -n1
}
digests=
for rel in $rels; do
	out=$logdir/fuzz-$rel.out
	rc=$(cat "$out.rc" 2>/dev/null || echo '?')
	lrc=$(cat "$logdir/lifetime-$rel.out.rc" 2>/dev/null || echo '?')
	echo
	echo "==== $rel"
	dcalls=$(sum "$out" deterministic calls)
	rcalls=$(sum "$out" races calls)
	dviol=$(sum "$out" deterministic violations)
	rviol=$(sum "$out" races violations)
	echo "calls made: ${dcalls:-0} deterministic + ${rcalls:-0} racing = $(( ${dcalls:-0} + ${rcalls:-0} ))"
	echo "invariant violations: ${dviol:-?} deterministic, ${rviol:-?} racing"
	grep -h 'fuzz-summary: deterministic digest' "$out" | sed 's/^# fuzz-summary: /  /'
	digests+=" $(sed -n 's/.*deterministic digest=\(0x[0-9a-f]*\).*/\1/p' "$out")"
	echo "errnos seen:"
	grep -h -E 'fuzz-summary: (deterministic|races) errnos' "$out" | sed 's/^# fuzz-summary: /  /'
	echo "errnos per input class (deterministic + racing):"
	grep -h -E 'fuzz-summary: (deterministic|races) class' "$out" | sed 's/^# fuzz-summary: /  /'
	echo "races exercised:"
	grep -h -E 'fuzz-summary: races model=' "$out" | sed 's/^# fuzz-summary: races /  /'
	echo "module counters at the end:"
	grep -h -E 'fuzz-summary: races module' "$out" | sed 's/^# fuzz-summary: races module /  /'
	echo "huge batch:"
	grep -h 'huge-summary:' "$out" | sed 's/^# huge-summary: /  /'
	echo "module lifetime: $(grep -c '^ok ' "$logdir/lifetime-$rel.out") passed," \
		"$(grep -c '^not ok ' "$logdir/lifetime-$rel.out") failed"
	grep '^not ok ' "$logdir/lifetime-$rel.out" | sed 's/^/  /'
	echo "guest kernel log: fuzz/huge $(grep 'vm-run: verdict' "$out" | sed 's/.*verdict: //')," \
		"lifetime $(grep 'vm-run: verdict' "$logdir/lifetime-$rel.out" | sed 's/.*verdict: //')"
	grep -E '^not ok|VIOLATION' "$out" | head -n 20 | sed 's/^/  /'
	if [ "$rc" != 0 ] || [ "$lrc" != 0 ] || [ "${dviol:-1}" != 0 ] || [ "${rviol:-1}" != 0 ] ||
	   [ $(( ${dcalls:-0} + ${rcalls:-0} )) -lt $(( calls + race_calls < 1000000 ? calls + race_calls : 1000000 )) ]; then
		echo "RESULT $rel: FAILED (fuzz/huge guest exit $rc, lifetime guest exit $lrc)"
		fail=1
	else
		echo "RESULT $rel: ok"
	fi
done
echo
set -- $digests
if [ $# -gt 1 ]; then
	if [ "$(printf '%s\n' "$@" | sort -u | wc -l)" = 1 ]; then
		echo "deterministic digests equal on every kernel ($1): same results for the same calls"
	else
		echo "deterministic digests differ between kernels:$digests"
	fi
fi
echo "fuzz: done in $(( $(date +%s) - start ))s, seed $seed: $([ "$fail" = 0 ] && echo PASS || echo FAIL)"
exit "$fail"
