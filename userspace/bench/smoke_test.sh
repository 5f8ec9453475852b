#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1 OR MIT
#
# Smoke test of the two benchmarks, for make check (installed as
# tests/host/bench_smoke and tests/guest/bench_smoke): each runs end to end
# on a tiny pattern and must exit 0, which the migration benchmark only does
# when no dirty page was lost and (--check-counters) when, for every
# batched clear, KVM's TLB flush count (the VM's remote_tlb_flush_requests
# statistic) is the module's tlb_flushes and the module's calls and pages
# cleared are the library's.  Prints TAP; measures nothing (make bench
# does): the times of such short runs mean nothing, the counts do.
#
# With /dev/kvm_dirtybatch (a guest with the module) the migration
# benchmark runs every strategy, batched included; without it, --host.
# Exit: 0 pass, 1 fail, 4 skip (no /dev/kvm).
set -u
bench=$(cd "$(dirname "$0")/../../bench" 2>/dev/null && pwd) || bench=
mig=$bench/dirtybatch_migration_bench
micro=$bench/dirtybatch_microbench

echo "TAP version 13"
echo "1..2"
if [ ! -c /dev/kvm ]; then
	echo "ok 1 - migration benchmark smoke run # SKIP no /dev/kvm"
	echo "ok 2 - microbenchmark smoke run # SKIP no /dev/kvm"
	exit 4
fi
fails=0

# $1 test number, $2 description, $3... command
run() {
	local n=$1 what=$2 out rc
	shift 2
	out=$("$@" 2>&1)
	rc=$?
	echo "$out" | sed 's/^/# /'
	if [ "$rc" -eq 0 ]; then
		echo "ok $n - $what"
	else
		case $rc in
		3) rc="$rc: a dirty page was lost" ;;
		5) rc="$rc: KVM's statistics and the module's counters disagree" ;;
		esac
		echo "not ok $n - $what (exit $rc)"
		fails=$((fails + 1))
	fi
}

mode=(--host)
[ -c /dev/kvm_dirtybatch ] && mode=()
what="migration benchmark smoke run${mode:+ (host, fallback)}: all strategies, no page lost"
[ ${#mode[@]} -eq 0 ] && what+=", KVM's TLB flush count is the module's"
run 1 "$what" \
	"$mig" "${mode[@]}" --mem 64 --ram-slots 2 --slots 8 --runs 48 --dirty 96 \
	--warmup 1 --rounds 2 --window-ms 1 --check-counters
run 2 "microbenchmark smoke run: library only, first round, steady state" \
	env DIRTYBATCH_BENCH_MS=5 DIRTYBATCH_BENCH_STEADY_SHIFT=10 "$micro"
[ "$fails" -eq 0 ]
