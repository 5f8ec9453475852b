#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# QEMU migration benchmark (make bench BENCH_ARGS=--qemu): build the
# QEMU trees (build.sh, incremental: 7.2, 10.0, 10.2 and 10.2 without the
# upstream fix), then, in ONE guest boot (TCG, nested kvm-amd,
# kvm_dirtybatch.ko loaded), live-migrate the payload VM with
# migrate-test.py, the modes interleaved and repeated (--repeat, default 3):
#   10.2-nofix:off  10.2 as Debian ships it (before e8a6d158dbfa)
#   10.2:off        10.2 with the upstream fix: the baseline that matters
#   10.2:fallback   + libdirtybatch without the module
#   10.2:module     + libdirtybatch with the kvm_dirtybatch shim
#   10.2:native     + libdirtybatch with KVM's own KVM_CLEAR_DIRTY_LOG_BATCH
#                   (the guest runs KVM's modules rebuilt with the native
#                   series, scripts/kvm-modules.sh, the shim on top)
#   10.0:off, 10.0:fallback, 10.0:module   trixie's 10.0 (no fix)
#   7.2:off, 7.2:fallback, 7.2:module      bookworm's 7.2 (no fix)
# (TREE:off is the patched binary with QEMU_DIRTYBATCH=off, i.e.
# upstream's code path.)  Prints the per-mode summary and the
# judged differences; output also goes to $O/bench/qemu.txt.
#
#   userspace/qemu/bench.sh [--kernel K] [--timeout S] [--repeat N]
#                           [--host-only] [--no-build]
#                           [-- migrate-test.py options]
# migrate-test.py options after -- replace the mode list when they hold
# a --mode.  --host-only: no guest, this machine's /dev/kvm (no module,
# no SMM here: --smm off, the off and fallback modes).  Exit:
# migrate-test.py's (0 pass, 1 fail, 4 skipped), or vm-run's (124
# timeout, 126/127 guest trouble).
set -u
cd "$(dirname "$0")/../.." || exit 2
top=$PWD
O=${O:-$top/build}
kernel=6.12 timeout=3600 host=0 build=1 repeat=3
while [ $# -gt 0 ]; do
	case $1 in
	--kernel) kernel=$2; shift ;;
	--timeout) timeout=$2; shift ;;
	--repeat) repeat=$2; shift ;;
	--host-only) host=1 ;;
	--no-build) build=0 ;;
	--) shift; break ;;
	-h|--help) sed -n '3,28p' "$0"; exit 0 ;;
	*) echo "qemu bench: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done
mkdir -p "$O/bench"
QEMU_BUILD=${QEMU_BUILD:-${QEMU_CACHE:-/var/cache/kvm-dirtybatch/qemu}/build}
if [ "$build" = 1 ]; then
	for v in 7.2 10.0 10.2 "10.2 --without-fix"; do
		# shellcheck disable=SC2086
		userspace/qemu/build.sh $v || exit 1
	done
fi
modes=()
for t in 10.2-nofix:off 10.2:off 10.2:fallback 10.2:module 10.2:native \
	 10.0:off 10.0:fallback 10.0:module 7.2:off 7.2:fallback 7.2:module; do
	if [ "$host" = 1 ]; then
		case $t in *:module | *:native) continue ;; esac
	fi
	modes+=(--mode "$t")
done
case " $* " in *" --mode "*) modes=() ;; esac
args=(--timeout 400 --repeat "$repeat" "${modes[@]}")
{
	echo "# qemu bench: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo '+dirty'), host $(uname -r)"
} | tee "$O/bench/qemu.txt"
if [ "$host" = 1 ]; then
	python3 userspace/qemu/migrate-test.py "${args[@]}" --smm off "$@" |
		tee -a "$O/bench/qemu.txt"
	exit "${PIPESTATUS[0]}"
fi
# The guest sees /var through an overlay without the QEMU trees: copy
# the binaries (and one libdirtybatch, built from the same source for all
# trees; RUNPATH yields to LD_LIBRARY_PATH) to $O/bench/qemu-bin.
QB=$QEMU_BUILD
bin=$O/bench/qemu-bin
rm -rf "$bin"
for t in 7.2 10.0 10.2 10.2-nofix; do
	[ -x "$QB/$t/build/qemu-system-x86_64" ] || continue
	mkdir -p "$bin/$t/build"
	cp -p "$QB/$t/build/qemu-system-x86_64" "$bin/$t/build/"
	[ -d "$bin/lib" ] || cp -a "$QB/$t/dirtybatch/lib" "$bin/lib"
done
args+=(--qemu-build "$bin")
# a kernel of /boot (not build-config-variant.sh's <release>-no-KVM_SMM)
rel=$(for d in "$O"/module/"$kernel"*; do
	[ -e "/boot/vmlinuz-$(basename "$d")" ] && echo "$d"
done | sort -V | tail -1)
ko=$rel/kvm_dirtybatch.ko
[ -e "$ko" ] || { echo "qemu bench: no module for $kernel under $O/module (make modules-all)" >&2; exit 1; }
# KVM's modules with the native series under the shim, for 10.2:native
kvmdir=$O/kvm-modules/$(basename "$rel")
O="$O" scripts/kvm-modules.sh "$(basename "$rel")" >"$O/bench/qemu-kvm-modules.log" 2>&1 ||
	echo "# patched KVM modules not built (log: $O/bench/qemu-kvm-modules.log): 10.2:native is skipped"
if [ -f "$kvmdir/kvm.ko" ]; then
	modarg=() guest=(selftests/native/with-patched-kvm.sh "$kvmdir" "$ko")
else
	modarg=(--module "$ko") guest=()
fi
selftests/runner/vm-run --kernel "$kernel" "${modarg[@]}" --mem 2G --timeout "$timeout" -- \
	"${guest[@]}" env LD_LIBRARY_PATH="$bin/lib" \
	sh -c 'echo "# guest kernel $(uname -r)"; exec python3 "$@"' sh \
	userspace/qemu/migrate-test.py "${args[@]}" "$@" |
	tee -a "$O/bench/qemu.txt"
exit "${PIPESTATUS[0]}"
