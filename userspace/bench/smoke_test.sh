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
# Test 3 feeds the cost model's least-squares fit (--fit) rows made from
# known constants and checks it finds them, and draws their charts.
#
# With /dev/kvm_dirtybatch (a guest with the module) the migration
# benchmark runs every strategy, batched included; without it, --host.
# Exit: 0 pass, 1 fail, 4 skip (no /dev/kvm).
set -u
bench=$(cd "$(dirname "$0")/../../bench" 2>/dev/null && pwd) || bench=
mig=$bench/dirtybatch_migration_bench
micro=$bench/dirtybatch_microbench

echo "TAP version 13"
echo "1..3"
if [ ! -c /dev/kvm ]; then
	echo "ok 1 - migration benchmark smoke run # SKIP no /dev/kvm"
	echo "ok 2 - microbenchmark smoke run # SKIP no /dev/kvm"
	echo "ok 3 - cost model fit of a synthetic sweep # SKIP no /dev/kvm"
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

# A sweep whose times are exactly 2 x ioctls + 5 x flushes + 0.01 x words
# + 0.5 x pages (us): the fit must give back those constants.
fit_check() {
	local tmp rc=0
	tmp=$(mktemp -d) || return 1
	awk 'BEGIN {
		print "kind,env,axis,x,slots,ram_slots,ram_slot_mib,total_mib,runs,dirty,strategy,rounds,median_us,p99_us,ioctls,mmu_lock_holds,tlb_flushes,vcpu_kicks,words_walked,words_exact,pages_cleared,lost_pages,model_us,note"
		for (i = 1; i <= 12; i++) {
			io = i * 7; fl = (i % 3) ? io : io * 2; w = i * i * 100 + 13; p = 100 + (i * 37) % 90
			t = 2 * io + 5 * fl + 0.01 * w + 0.5 * p
			printf "measured,host synthetic,runs,%d,24,3,128,512,%d,%d,merged,3,%.4f,%.4f,%d,%d,%d,0,%d,1,%d,0,,\n", i, i, p, t, t, io, io, fl, w, p
		}
	}' >"$tmp/raw.csv"
	"$mig" --fit "$tmp/raw.csv" "$tmp/sweep.csv" >"$tmp/fit.txt" || rc=1
	sed 's/^/# /' "$tmp/fit.txt"
	awk -F, '/^model: host synthetic,/ { found = 1
		if (($2 - 2) ^ 2 > 1e-6 || ($3 - 5) ^ 2 > 1e-6 || ($4 - 0.01) ^ 2 > 1e-10 ||
		    ($5 - 0.5) ^ 2 > 1e-6 || $6 != "f") bad = 1 }
		END { exit !found || bad }' "$tmp/fit.txt" || rc=1
	grep -Eq '^measured,host synthetic,runs,1,.*,[0-9.]+,$' "$tmp/sweep.csv" || rc=1
	"$mig" --sweep-svg "$tmp/sweep.csv" "$tmp" || rc=1
	[ -s "$tmp/sweep-host_synthetic-runs.svg" ] || rc=1
	rm -rf "$tmp"
	return $rc
}
if fit_check; then
	echo "ok 3 - cost model fit of a synthetic sweep: the constants come back"
else
	echo "not ok 3 - cost model fit of a synthetic sweep: the constants come back"
	fails=$((fails + 1))
fi
[ "$fails" -eq 0 ]
