#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# QEMU migration benchmark (make bench BENCH_ARGS=--qemu): build the
# patched QEMU 7.2 (build.sh, incremental), then, in ONE guest boot (TCG,
# nested kvm-amd, kvm_dirtybatch.ko loaded), live-migrate the payload VM
# once per mode with migrate-test.py:
#   off       patched QEMU, QEMU_DIRTYBATCH=off (upstream 7.2 code path)
#   fallback  patched QEMU, libdirtybatch without the module
#   module    patched QEMU, libdirtybatch with /dev/kvm_dirtybatch
#   debian    Debian's /usr/bin/qemu-system-x86_64 (stock 7.2 binary)
# and print the comparison table (bitmap sync time per round, clear ioctls
# per round, total migration time, downtime).  Output also goes to
# $O/bench/qemu.txt.
#
#   userspace/qemu/bench.sh [--kernel K] [--timeout S] [--host-only]
#                           [--no-build] [-- migrate-test.py options]
# --host-only: no guest, this machine's /dev/kvm (no module: off, fallback,
# debian).  Exit: migrate-test.py's (0 pass, 1 fail, 4 skipped), or
# vm-run's (124 timeout, 126/127 guest trouble).
set -u
cd "$(dirname "$0")/../.."
top=$PWD
O=${O:-$top/build}
kernel=6.12 timeout=900 host=0 build=1
while [ $# -gt 0 ]; do
	case $1 in
	--kernel) kernel=$2; shift ;;
	--timeout) timeout=$2; shift ;;
	--host-only) host=1 ;;
	--no-build) build=0 ;;
	--) shift; break ;;
	-h|--help) sed -n '3,22p' "$0"; exit 0 ;;
	*) echo "qemu bench: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done
mkdir -p "$O/bench"
if [ "$build" = 1 ]; then
	userspace/qemu/build.sh 7.2 || exit 1
fi
QEMU_BUILD=${QEMU_BUILD:-${QEMU_CACHE:-/var/cache/kvm-dirtybatch/qemu}/build}
qemu=$QEMU_BUILD/7.2/build/qemu-system-x86_64
[ -x "$qemu" ] || { echo "qemu bench: no $qemu (run userspace/qemu/build.sh)" >&2; exit 1; }
args=(--qemu "$qemu" --timeout 400)
if [ "$host" = 1 ]; then
	python3 userspace/qemu/migrate-test.py "${args[@]}" \
		--mode off --mode fallback --mode debian "$@" | tee "$O/bench/qemu.txt"
	exit "${PIPESTATUS[0]}"
fi
rel=$(ls -d "$O"/module/"$kernel"* 2>/dev/null | sort -V | tail -1)
ko=$rel/kvm_dirtybatch.ko
[ -e "$ko" ] || { echo "qemu bench: no module for $kernel under $O/module (make modules-all)" >&2; exit 1; }
selftests/vm-run --kernel "$kernel" --module "$ko" --mem 2G --timeout "$timeout" -- \
	python3 userspace/qemu/migrate-test.py "${args[@]}" \
	--mode off --mode fallback --mode module --mode debian "$@" |
	tee "$O/bench/qemu.txt"
exit "${PIPESTATUS[0]}"
