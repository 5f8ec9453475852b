#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The body of `make bench` (after `make deps`): the migration-sync
# benchmark (userspace/bench/migration_bench.c) in a guest with the module
# loaded, or on this machine's /dev/kvm without it (--host-only), plus the
# library's translation microbenchmark on the host.  Writes
# $O/bench/summary.csv and summary.svg and says where they are.  --sweep:
# the sweep over runs, memslot size and memslots on the host's /dev/kvm and
# in the guest, the cost model fitted per environment, and the projections:
# $O/bench/sweep.csv, sweep-*.svg, sweep-fit.txt, model.txt.
#
# Exit status: 0, also when a target is missed; 1 if a dirty page was lost
# or a run could not be done; 2 on a usage error.
#
# Environment: O (build dir, default ./build).
set -u
cd "$(dirname "$0")/.." || exit 1
top=$PWD
O=${O:-$top/build}
out=$O/bench
logdir=$O/logs
bin=$out/dirtybatch_migration_bench
start=$(date +%s)
. "$top/scripts/kernels.sh"

usage() {
	cat <<'EOF'
usage: make bench [BENCH_ARGS="OPTIONS"]     (or scripts/bench.sh OPTIONS)

Boots a guest kernel under QEMU (TCG, nested kvm-amd), loads the freshly
built kvm_dirtybatch.ko and runs the migration-sync benchmark in it: a VM's
vCPUs dirty memory while the host gets the dirty log of every memslot and
clears it, round after round, with each strategy in turn on the same VM:
  per-page  one KVM_CLEAR_DIRTY_LOG per dirty page (QEMU before e8a6d158dbfa)
  merged    one KVM_CLEAR_DIRTY_LOG per clear request (QEMU after it)
  batched   libdirtybatch + the module: one KVM_DIRTYBATCH_CLEAR per round
  floor     one KVM_CLEAR_DIRTY_LOG per memslot with the same bits
  native    libdirtybatch + KVM's own KVM_CLEAR_DIRTY_LOG_BATCH: the guest
            runs KVM's modules rebuilt with module/native/patches (make
            kvm-modules, built first) under the module
Then runs the library microbenchmark on the host.

  --kernel K       guest kernel: 6.12 (default), 6.1, 7.3, or a full release
  --all-kernels    the 6.12, 6.1 and 7.3 guests, one after the other
                   (--both-kernels: the same)
  --host-only      no guest, no module: per-page, merged, floor and
                   libdirtybatch's fallback on this machine's /dev/kvm
  --no-microbench  skip the library microbenchmark
  --no-native      Debian's KVM in the guest, no native strategy
  --sweep          instead of the default pattern: the sweep (runs 16..4096,
                   RAM memslot 1 GiB..1 TiB, memslots 4..256; every strategy)
                   on this machine's /dev/kvm, then in the guest (not with
                   --host-only); fits the cost model per environment and
                   projects the default pattern (about 14 minutes)
  --sweep-budget S the guest sweep's budget in seconds (default 600; the
                   host's: 240); points projected over it are skipped
  --timeout S      guest timeout in seconds (default 600)
  --qemu [-- ARGS] instead: QEMU live migration in one 6.12 guest:
                   10.2 before and with the upstream fix, 10.2+fix, 10.0
                   and 7.2 with libdirtybatch's fallback and with the
                   module, interleaved (userspace/qemu/bench.sh; builds
                   the four QEMU trees first, ~3 min each the first time)
  -h, --help       this text

Options for the benchmark itself (defaults in brackets):
  --vcpus N [2]  --mem MIB [512]  --ram-slots N [3]  --slots N [24]
  --runs N [256]  --dirty PAGES [512]  --rounds N [15]  --warmup N [1]
  --seed N [1]  --budget SECONDS [150 unless --rounds is given]
  --window-ms N [the warm-up's slowest clear + send, plus a quarter]:
                 guest throughput window, the same for every strategy
  (--host-only: --rounds 100 unless given)
  --strategies LIST  --verbose (see build/bench/dirtybatch_migration_bench --help)

Results: a table per run, build/bench/summary.csv (+ summary.svg), the full
output in build/bench/run-<kernel>.txt, guest logs in build/logs/.
--sweep: build/bench/sweep.csv, one chart per axis and environment
(build/bench/sweep-<env>-<axis>.svg), the fit in build/bench/sweep-fit.txt,
its host constants in build/bench/model.txt (the default run's host_us
projection uses them when the file is there).
Exit: 0 (also when a target is missed), 1 if a dirty page was lost or a
run failed, 2 on a usage error.
EOF
}

progress() { echo "bench: [$(($(date +%s) - start))s] $*"; }
die() { echo "bench: $*" >&2; exit 1; }

kernels=() host_only=0 native=1 micro=1 timeout=600 vcpus=2 rounds_given=0 budget_given=0
sweep=0 sweep_budget=600 timeout_given=0
pass=()
while [ $# -gt 0 ]; do
	case $1 in
	-h | --help) usage; exit 0 ;;
	--kernel) [ $# -ge 2 ] || { usage >&2; exit 2; }; kernels+=("$2"); shift 2 ;;
	--kernel=*) kernels+=("${1#*=}"); shift ;;
	--all-kernels | --both-kernels) kernels=(6.12 6.1 "$TRIXIE_SERIES"); shift ;;
	--host-only) host_only=1; shift ;;
	--qemu) shift; exec "$top/userspace/qemu/bench.sh" "$@" ;;
	--no-microbench) micro=0; shift ;;
	--no-native) native=0; shift ;;
	--sweep) sweep=1; micro=0; shift ;;
	--sweep-budget) sweep_budget=${2-}; shift 2 || { usage >&2; exit 2; } ;;
	--sweep-budget=*) sweep_budget=${1#*=}; shift ;;
	--timeout) timeout=${2-}; timeout_given=1; shift 2 || { usage >&2; exit 2; } ;;
	--timeout=*) timeout=${1#*=}; timeout_given=1; shift ;;
	--vcpus | --mem | --ram-slots | --slots | --runs | --dirty | --rounds | \
	--warmup | --seed | --budget | --strategies | --window-ms)
		[ $# -ge 2 ] || { echo "bench: $1 needs a value" >&2; exit 2; }
		case $1 in
		--vcpus) vcpus=$2 ;;
		--rounds) rounds_given=1 ;;
		--budget) budget_given=1 ;;
		esac
		pass+=("$1" "$2")
		shift 2
		;;
	--vcpus=* | --mem=* | --ram-slots=* | --slots=* | --runs=* | --dirty=* | \
	--rounds=* | --warmup=* | --seed=* | --budget=* | --strategies=* | --window-ms=*)
		case $1 in
		--vcpus=*) vcpus=${1#*=} ;;
		--rounds=*) rounds_given=1 ;;
		--budget=*) budget_given=1 ;;
		esac
		pass+=("$1")
		shift
		;;
	--verbose) pass+=("$1"); shift ;;
	*) echo "bench: unknown option '$1'" >&2; usage >&2; exit 2 ;;
	esac
done
[ ${#kernels[@]} -gt 0 ] || kernels=(6.12)
[[ $vcpus =~ ^[1-9][0-9]*$ ]] || { echo "bench: bad --vcpus '$vcpus'" >&2; exit 2; }
[[ $timeout =~ ^[1-9][0-9]*$ ]] || { echo "bench: bad --timeout '$timeout'" >&2; exit 2; }
[[ $sweep_budget =~ ^[1-9][0-9]*$ ]] || { echo "bench: bad --sweep-budget '$sweep_budget'" >&2; exit 2; }
# the guest sweep's budget, its setup and the boot
[ "$sweep" = 1 ] && [ "$timeout_given" = 0 ] && timeout=$((sweep_budget + 300))
# Keep a default run under 5 minutes on a busy machine: the benchmark stops
# starting new rounds after this many seconds of measuring.
# On the host a round takes milliseconds: take more of them.
if [ "$sweep" = 1 ]; then
	: # the sweep picks its own rounds (bench --help)
elif [ "$rounds_given" = 0 ] && [ "$host_only" = 1 ]; then
	pass+=(--rounds 100)
elif [ "$rounds_given" = 0 ] && [ "$budget_given" = 0 ]; then
	pass+=(--budget 150)
fi

mkdir -p "$out" "$logdir" || exit 1
rm -f "$out/summary.csv" "$out/summary.svg"
progress "building libdirtybatch and the benchmarks"
make -s userspace O="$O" >"$logdir/bench-build.log" 2>&1 ||
	{ tail -n 30 "$logdir/bench-build.log"; die "build failed (log: $logdir/bench-build.log)"; }

rels=()
if [ "$host_only" = 0 ]; then
	for k in "${kernels[@]}"; do
		rel=$(newest_release "$k")
		[ -n "$rel" ] || die "no installed kernel $k with headers (run make deps)"
		progress "building kvm_dirtybatch.ko for $rel"
		build_module "$rel" >"$logdir/bench-module-$rel.log" 2>&1 ||
			{ tail -n 30 "$logdir/bench-module-$rel.log"; die "module build failed for $rel"; }
		# KVM's own modules with the native series, for the native strategy
		if [ "$native" = 1 ]; then
			progress "building KVM's modules with KVM_CLEAR_DIRTY_LOG_BATCH for $rel (make kvm-modules)"
			O="$O" scripts/kvm-modules.sh "$rel" >"$logdir/bench-kvm-modules-$rel.log" 2>&1 ||
				progress "patched KVM modules for $rel not built (log: $logdir/bench-kvm-modules-$rel.log): native is skipped there"
		fi
		rels+=("$rel")
	done
fi

if [ "$micro" = 1 ]; then
	progress "library translation microbenchmark (host, userspace/bench/microbench.c)"
	DIRTYBATCH_BENCH_MS=${DIRTYBATCH_BENCH_MS:-100} "$out/dirtybatch_microbench" \
		>"$out/microbench.txt" 2>&1
	sed 's/^/  /' "$out/microbench.txt"
fi

failed=0 lost=0 runs=()
# Show the benchmark's output as it comes, without its csv: lines.
# shellcheck disable=SC2317 # called by run_shown, as its filter
show() { grep --line-buffered -v '^csv: ' | sed -u 's/^/  /'; }

# Run "$@" in the background into FILE, showing FILE through FILTER as it
# grows; returns the command's status.  FILE exists before tail opens it.
run_shown() { # file filter cmd...
	local file=$1 filter=$2 pid
	shift 2
	: >"$file"
	"$@" >"$file" 2>&1 &
	pid=$!
	tail --pid=$pid -n +1 -f "$file" | $filter
	wait $pid
}

# The guest of kernel $1 runs its KVM and the module in one of two ways:
# the patched KVM (KVM_CLEAR_DIRTY_LOG_BATCH) with the module loaded over
# it by selftests/native/with-patched-kvm.sh when --native found its
# modules, else Debian's kvm-amd with vm-run loading the module.  Sets
# guest=() (the command's prefix) and modarg=() (vm-run's options), and
# says which with progress "$2".
guest_kvm() { # rel what
	local rel=$1 what=$2 kvmdir=$O/kvm-modules/$1 ko=$O/module/$1/kvm_dirtybatch.ko
	if [ "$native" = 1 ] && [ -f "$kvmdir/kvm.ko" ]; then
		progress "guest $rel: booting (TCG, $((vcpus + 1)) CPUs), KVM with KVM_CLEAR_DIRTY_LOG_BATCH and kvm_dirtybatch, $what"
		guest=(selftests/native/with-patched-kvm.sh "$kvmdir" "$ko")
		modarg=()
	else
		progress "guest $rel: booting (TCG, $((vcpus + 1)) CPUs), loading kvm-amd and kvm_dirtybatch, $what"
		guest=()
		modarg=(--module "$ko")
	fi
}

check_run() { # name rc file
	local name=$1 rc=$2 file=$3
	case $rc in
	0) ;;
	3) lost=1; echo "bench: $name: DIRTY PAGES WERE LOST" ;;
	*) failed=1; echo "bench: $name: run failed (exit $rc)" ;;
	esac
	grep -q '^csv: ' "$file" && runs+=("$file")
}

if [ "$sweep" = 1 ]; then
	raw=$out/sweep-raw.csv
	rm -f "$out"/sweep*.csv "$out"/sweep-*.svg "$out/sweep-fit.txt"
	# shellcheck disable=SC2317 # called by run_shown, as its filter
	showsweep() { grep --line-buffered -v -e '^sweep: ' -e '^sweep-header: ' | sed -u 's/^/  /'; }
	progress "sweep on this machine's /dev/kvm ($(uname -r)), no module, budget 240 s"
	file=$out/sweep-host-$(uname -r).txt
	run_shown "$file" showsweep nice "$bin" --host --sweep --sweep-budget 240 \
		--label "host $(uname -r)" "${pass[@]}"
	rc=$?
	case $rc in 0) ;; 3) lost=1 ;; *) failed=1; echo "bench: host sweep failed (exit $rc)" ;; esac
	files=("$file")
	for rel in "${rels[@]}"; do
		file=$out/sweep-$rel.txt
		guest_kvm "$rel" "the sweep (budget $sweep_budget s)"
		run_shown "$file" showsweep nice selftests/runner/vm-run --kernel "$rel" \
			"${modarg[@]}" --cpus $((vcpus + 1)) \
			--timeout "$timeout" --log "$logdir/bench-sweep-guest-$rel.log" -- \
			"${guest[@]}" "$bin" --sweep --sweep-budget "$sweep_budget" --label "$rel" \
			"${pass[@]}"
		rc=$?
		case $rc in 0) ;; 3) lost=1 ;; *) failed=1; echo "bench: guest $rel sweep failed (exit $rc)"
			grep 'vm-run:' "$file" | sed 's/^/  /' ;; esac
		files+=("$file")
	done
	{
		sed -n 's/^sweep-header: //p' "${files[0]}" | head -n 1
		cat "${files[@]}" | sed -n 's/^sweep: //p'
	} | tr -d '\r' >"$raw"
	if [ "$(wc -l <"$raw")" -gt 1 ]; then
		"$bin" --fit "$raw" "$out/sweep.csv" >"$out/sweep-fit.txt" || failed=1
		grep '^model: ' "$out/sweep-fit.txt" >"$out/model.txt"
		"$bin" --sweep-svg "$out/sweep.csv" "$out" || failed=1
		awk -F, '$1 == "measured" && $22 > 0 { bad = 1 } END { exit bad }' "$out/sweep.csv" || lost=1
		echo
		grep -v '^model: ' "$out/sweep-fit.txt" | sed 's/^/  /'
		echo
		echo "bench: sweep:  $out/sweep.csv"
		echo "bench: charts: $(cd "$out" && ls sweep-*.svg | tr '\n' ' ')"
		echo "bench: fit:    $out/sweep-fit.txt"
	else
		failed=1
	fi
	progress "done"
	[ "$lost" = 1 ] && { echo "bench: FAIL: dirty pages were lost"; exit 1; }
	[ "$failed" = 0 ] || exit 1
	exit 0
fi

# the host's cost model from the last sweep, for the table's host_us column
[ -s "$out/model.txt" ] && pass+=(--model "$out/model.txt")

if [ "$host_only" = 1 ]; then
	progress "host-only: per-page, merged, floor and libdirtybatch's fallback on this machine's /dev/kvm ($(uname -r))"
	file=$out/run-host-$(uname -r).txt
	run_shown "$file" show "$bin" --host --label "host $(uname -r)" "${pass[@]}"
	check_run "host" $? "$file"
fi

for rel in "${rels[@]}"; do
	file=$out/run-$rel.txt
	# with --native: batched and native side by side on the patched KVM
	guest_kvm "$rel" "running the benchmark"
	run_shown "$file" show selftests/runner/vm-run --kernel "$rel" "${modarg[@]}" \
		--cpus $((vcpus + 1)) --timeout "$timeout" --log "$logdir/bench-guest-$rel.log" -- \
		"${guest[@]}" "$bin" --label "$rel" "${pass[@]}"
	rc=$?
	check_run "guest $rel" "$rc" "$file"
	[ "$rc" = 0 ] || [ "$rc" = 3 ] || grep 'vm-run:' "$file" | sed 's/^/  /'
done

if [ ${#runs[@]} -gt 0 ]; then
	csv=$out/summary.csv
	{
		echo "strategy,kernel,vcpus,rounds,pages_per_round,median_us,p99_us,ioctls_per_round,mmu_lock_holds_per_round,tlb_flushes_per_round,guest_pages_per_s,lost_pages,projected_prod_us,projected_host_us"
		cat "${runs[@]}" | sed -n 's/^csv: //p'
	} >"$csv"
	"$bin" --svg "$csv" "$out/summary.svg" || failed=1
	# a lost page counts even if the run's own status was lost on the way
	awk -F, 'NR > 1 && $12 > 0 { bad = 1 } END { exit bad }' "$csv" || lost=1
	echo
	echo "bench: results"
	for f in "${runs[@]}"; do
		sed -n '/^Results (/,/^csv: /p' "$f" | grep -v '^csv: ' | sed 's/^/  /'
		echo
	done
	echo "bench: table:  $csv"
	echo "bench: chart:  $out/summary.svg"
	echo "bench: output: ${runs[*]}"
	[ "$micro" = 1 ] && echo "bench: microbenchmark: $out/microbench.txt"
fi
progress "done"
if [ "$lost" = 1 ]; then
	echo "bench: FAIL: dirty pages were lost"
	exit 1
fi
[ "$failed" = 0 ] || exit 1
exit 0
