#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The body of `make check-debug` (after `make deps`): the module's tests in
# a guest kernel built with the debugging Debian's kernels lack (lockdep,
# DEBUG_ATOMIC_SLEEP, PROVE_RCU, KASAN, KFENCE, DEBUG_LIST), so that the
# guest runner's kernel-log verdict can catch locking, sleeping and memory
# bugs of the module.
#
#   scripts/check-debug.sh [--build-only] [--no-fuzz]
#
# 1. Builds, once, a small guest kernel from /usr/src/linux-source-6.12:
#    `make allnoconfig` with scripts/debug-kernel.config, `make
#    olddefconfig`, every =y/=m line of the fragment checked in the final
#    .config; then bzImage and modules, installed into the cache (outside
#    build/, so that `make clean` keeps it):
#      $DEBUG_KERNEL_CACHE/debug-kernel-<version>/{build,boot,lib/modules}
#    It is rebuilt only when the fragment, the sources or the compiler
#    change (a stamp file records them).
# 2. Builds the selftests and kvm_dirtybatch.ko against that tree.
# 3. Boots it under selftests/runner/vm-run (--kernel <image>) three times: the
#    kselftests (scripts/run-tests.sh build/tests/guest, as make check),
#    huge_batch_test then fuzz_test and fuzz_race_test (shorter than make
#    fuzz), and module_lifetime_guest.sh (loads and unloads the module).
#    Each run ends with vm-run's kernel log verdict (BUG, WARNING, lockdep,
#    KASAN, KFENCE, list corruption, RCU stall, bad taint: see
#    selftests/runner/vm-run).
# Prints one TAP stream and "N passed, N failed, N skipped"; exits non-zero
# on any failure.  Logs: build/logs/debug-*.
#
# Environment: O (build dir, default ./build), DEBUG_KERNEL_SRC (default
# /usr/src/linux-source-6.12), DEBUG_KERNEL_CACHE (default
# /var/lib/kvm-dirtybatch: not /var/cache, which virtme-ng hides under a
# tmpfs in the guest, modules included), JOBS (make -j, default nproc), GUEST_MEM
# (default 4G), GUEST_TIMEOUT (seconds per guest run, default 14400),
# TEST_TIMEOUT (per test program in the guest, default 5400), FUZZ_CALLS
# (default 100000), FUZZ_RACE_CALLS (default 20000), FUZZ_RACE_SECONDS
# (default 600), KVM_DIRTYBATCH_SEED (default: from the clock), HUGE_GIB
# (huge_batch_test's memslot sizes, default 64,256), WATCHDOG_THRESH (the
# guests' kernel.watchdog_thresh, default 60: soft lockups reported after
# 120 s instead of 20 s).
#
# Why the last two: huge_batch_test compares the module with one plain
# KVM_CLEAR_DIRTY_LOG, which holds KVM's MMU lock for the whole memslot.
# On this kernel under TCG that hold took 77 s for its default 1 TiB
# memslot (11 s for 64 GiB), and the watchdog reported soft lockups in
# KVM's own kvm_clear_dirty_log_protect() and in the vCPU spinning for
# the lock: KVM's behaviour, which the module's lock breaks avoid, not
# the module's.  The module's holds stay near 1 s on this kernel.
set -u
cd "$(dirname "$0")/.." || exit 1
top=$PWD
O=${O:-$top/build}
SRC=${DEBUG_KERNEL_SRC:-/usr/src/linux-source-6.12}
CACHE_ROOT=${DEBUG_KERNEL_CACHE:-/var/lib/kvm-dirtybatch}
JOBS=${JOBS:-$(nproc)}
GUEST_MEM=${GUEST_MEM:-4G}
GUEST_TIMEOUT=${GUEST_TIMEOUT:-14400}
TEST_TIMEOUT=${TEST_TIMEOUT:-5400}
FUZZ_CALLS=${FUZZ_CALLS:-100000}
FUZZ_RACE_CALLS=${FUZZ_RACE_CALLS:-20000}
FUZZ_RACE_SECONDS=${FUZZ_RACE_SECONDS:-600}
seed=${KVM_DIRTYBATCH_SEED:-$(( $(date +%s) % 1000000007 ))}
HUGE_GIB=${HUGE_GIB:-64,256}
WATCHDOG_THRESH=${WATCHDOG_THRESH:-60}
fragment=$top/scripts/debug-kernel.config
build_only=0 fuzz=1
while [ $# -gt 0 ]; do
	case $1 in
	--build-only) build_only=1 ;;
	--no-fuzz) fuzz=0 ;;
	-h | --help) sed -n '10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "check-debug.sh: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
logdir=$O/logs
mkdir -p "$logdir"
start=$(date +%s)

log_prefix=debug-
. "$top/scripts/test-points.sh"

finish() {
	echo "1..$n"
	progress "done"
	echo "$passed passed, $failed failed, $skipped skipped"
	[ "$failed" -eq 0 ]
	exit
}

echo "TAP version 13"

# ---------------------------------------------------------------- kernel
if [ ! -f "$SRC/Makefile" ]; then
	point fail "debug kernel: no kernel sources at $SRC (make deps unpacks linux-source-6.12)"
	finish
fi
for tool in gcc make flex bison bc; do
	command -v "$tool" >/dev/null || {
		point fail "debug kernel: $tool is not installed (make deps)"
		finish
	}
done
# objtool needs libelf; the Debian kernels' headers never did.
if [ ! -f /usr/include/libelf.h ] && [ "$(id -u)" = 0 ]; then
	progress "installing libelf-dev (objtool needs it)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
		libelf-dev >"$logdir/debug-apt.log" 2>&1
fi
[ -f /usr/include/libelf.h ] || {
	point fail "debug kernel: libelf-dev is not installed (apt-get install libelf-dev)"
	finish
}

kver=$(make -s -C "$SRC" kernelversion 2>/dev/null)
cache=$CACHE_ROOT/debug-kernel-$kver
kbuild=$cache/build
klog=$logdir/debug-kernel-build.log
mkdir -p "$kbuild" || {
	point fail "debug kernel: cannot create $kbuild (DEBUG_KERNEL_CACHE=)"
	finish
}
kmake() { nice make -C "$SRC" O="$kbuild" "$@"; }

# What the cached kernel was built from.
want_stamp=$( {
	echo "kernel $kver"
	sha256sum "$fragment" | cut -d' ' -f1
	gcc --version | head -n1
	stat -c 'sources unpacked %Y' "$SRC/Makefile"
} )

# Every CONFIG_X=y/m and CONFIG_X="..." of the fragment, as it is in .config.
config_missing() {
	local line key
	while IFS= read -r line; do
		case $line in CONFIG_*=*) ;; *) continue ;; esac
		key=${line%%=*}
		grep -qxF "$line" "$kbuild/.config" ||
			echo "$key: wanted ${line#*=}, got $(grep -E "^(# )?$key[= ]" \
				"$kbuild/.config" | sed 's/^# .* is not set$/not set/; s/^[^=]*=//')"
	done <"$fragment"
}

# Configure, build and install into the cache, with progress lines.
build_kernel() {
	local pid t0 objs
	progress "debug kernel $kver: configuring (allnoconfig + $(basename "$fragment"))"
	if ! { kmake KCONFIG_ALLCONFIG="$fragment" allnoconfig &&
	       kmake olddefconfig && kmake syncconfig; } >"$klog" 2>&1; then
		tail -n 20 "$klog" | sed 's/^/#   /'
		point fail "debug kernel: configuration failed (log: $klog)"
		return 1
	fi
	missing=$(config_missing)
	if [ -n "$missing" ]; then
		echo "$missing" | sed 's/^/#   not as asked: /'
		point fail "debug kernel: config options of $(basename "$fragment") did not stick (log: $klog)"
		return 1
	fi
	rel=$(kmake -s kernelrelease)
	point ok "debug kernel: $(grep -c '^CONFIG_.*=' "$fragment") options of $(basename "$fragment") set in .config ($rel)"
	progress "debug kernel $rel: building bzImage and modules (make -j$JOBS, log: $klog)"
	t0=$(date +%s)
	kmake -j"$JOBS" bzImage modules >>"$klog" 2>&1 &
	pid=$!
	while kill -0 "$pid" 2>/dev/null; do
		sleep 60 & wait $!
		kill -0 "$pid" 2>/dev/null || break
		objs=$(find "$kbuild" -name '*.o' -newer "$kbuild/.config" 2>/dev/null | wc -l)
		progress "debug kernel $rel: building, $objs objects so far, $(( $(date +%s) - t0 ))s"
	done
	if ! wait "$pid"; then
		grep -E 'error|Error' "$klog" | head -n 20 | sed 's/^/#   /'
		point fail "debug kernel: build failed (log: $klog)"
		return 1
	fi
	progress "debug kernel $rel: installing into $cache"
	rm -rf "$cache/lib/modules/$rel"
	if ! { kmake INSTALL_MOD_PATH="$cache" modules_install &&
	       mkdir -p "$cache/boot" &&
	       cp "$kbuild/arch/x86/boot/bzImage" "$cache/boot/vmlinuz-$rel" &&
	       cp "$kbuild/.config" "$cache/boot/config-$rel" &&
	       cp "$kbuild/System.map" "$cache/boot/System.map-$rel"; } >>"$klog" 2>&1; then
		tail -n 20 "$klog" | sed 's/^/#   /'
		point fail "debug kernel: modules_install failed (log: $klog)"
		return 1
	fi
	# modules_install's build link points into the cache: keep it.
	echo "$want_stamp" >"$cache/stamp"
	point ok "debug kernel: $rel built in $(( $(date +%s) - t0 ))s (bzImage $(( $(stat -c %s "$cache/boot/vmlinuz-$rel") / 1024 )) KiB, $(find "$cache/lib/modules/$rel" -name '*.ko' | wc -l) modules)"
}

rel=
if [ -f "$cache/stamp" ] && [ "$(cat "$cache/stamp")" = "$want_stamp" ] &&
   [ -f "$kbuild/.config" ] && rel=$(kmake -s kernelrelease 2>/dev/null) &&
   [ -f "$cache/boot/vmlinuz-$rel" ] && [ -f "$cache/lib/modules/$rel/modules.dep" ]; then
	missing=$(config_missing)
	if [ -n "$missing" ]; then
		echo "$missing" | sed 's/^/#   not as asked: /'
		point fail "debug kernel: cached .config lacks options of $(basename "$fragment")"
		finish
	fi
	point ok "debug kernel: $rel cached in $cache, $(grep -c '^CONFIG_.*=' "$fragment") options of $(basename "$fragment") set"
else
	build_kernel || finish
fi
kimg=$cache/boot/vmlinuz-$rel
[ "$build_only" = 1 ] && finish

# ---------------------------------------------------------------- module, tests
progress "building the selftests and kvm_dirtybatch.ko for $rel"
step "build: selftests (-Wall -Wextra -Werror)" make -s selftests O="$O"
mlog=$logdir/debug-module-$rel.log
rm -f "$O/module/$rel/kvm_dirtybatch.ko"
if make -s module KDIR="$kbuild" RELEASE="$rel" O="$O" >"$mlog" 2>&1; then
	if grep -E 'warning:' "$mlog" >/dev/null; then
		grep -E 'warning:' "$mlog" | head -n 20 | sed 's/^/#   /'
		point fail "build: kvm_dirtybatch.ko for $rel, W=1: warnings (log: $mlog)"
	else
		point ok "build: kvm_dirtybatch.ko for $rel, W=1, no warnings"
	fi
else
	grep -E 'warning:|error:|Error' "$mlog" | head -n 30 | sed 's/^/#   /'
	point fail "build: kvm_dirtybatch.ko for $rel (log: $mlog)"
fi
ko=$O/module/$rel/kvm_dirtybatch.ko
[ -f "$ko" ] || finish

# vm-run's kernel log patterns, to show the offending lines.
bad_re=$(sed -n "s/^BAD_RE+\{0,1\}='|\{0,1\}\(.*\)'$/\1/p" selftests/runner/vm-run | paste -sd'|')
benign_re=$(sed -n "s/^BENIGN_RE='\(.*\)'$/\1/p" selftests/runner/vm-run)

# One guest run: vm-run's status as a test point.  The guest's output is
# folded into TAP as it comes.
guest() { # name timeout command
	local name=$1 tmo=$2 cmd=$3 glog=$logdir/debug-$1.log out=$logdir/debug-$1.out rc
	fold "debug $name/" < <({
		selftests/runner/vm-run --kernel "$kimg" --module "$ko" --mem "$GUEST_MEM" \
			--log "$glog" --timeout "$tmo" -- "$cmd" 2>&1
		echo $? >"$out.rc"
	} | tee "$out")
	rc=$(cat "$out.rc")
	grep 'vm-run: verdict' "$out" | sed 's/^/# /'
	case $rc in
	0) point ok "debug $name: run completed, kernel log clean (log: $glog)" ;;
	124) point fail "debug $name: timed out after ${tmo}s (log: $glog)" ;;
	125) # the kernel log from its first bad line on (vm-run's patterns)
	     tr -d '\r' <"$glog" | grep -a -v -E "$benign_re" |
		awk -v re="$bad_re" '!/^vm-run/ && (f || $0 ~ re) { f = 1; print }' |
		head -n 60 | sed 's/^/#   dmesg: /'
	     point fail "debug $name: kernel log shows BUG/WARNING/lockdep/KASAN/KFENCE/stall or bad taint (log: $glog)" ;;
	126) point fail "debug $name: kvm-amd or kvm_dirtybatch failed to load (log: $glog)" ;;
	*) grep 'vm-run:' "$out" | sed 's/^/# /'
	   point fail "debug $name: runner exited with status $rc (log: $glog)" ;;
	esac
}

# In the guests of the tests that run huge_batch_test (see the top).
huge="echo $WATCHDOG_THRESH >/proc/sys/kernel/watchdog_thresh; export KVM_DIRTYBATCH_HUGE_GIB=$HUGE_GIB"

progress "guest $rel: kselftests (KASAN, lockdep: slow; timeout ${GUEST_TIMEOUT}s)"
guest kselftests "$GUEST_TIMEOUT" "$huge; scripts/run-tests.sh $O/tests/guest $TEST_TIMEOUT"

if [ "$fuzz" = 1 ]; then
	progress "guest $rel: huge_batch_test, then fuzz_test and fuzz_race_test (seed $seed, $FUZZ_CALLS calls," \
		"$FUZZ_RACE_CALLS racing calls or ${FUZZ_RACE_SECONDS}s)"
	env="KVM_DIRTYBATCH_SEED=$seed KVM_DIRTYBATCH_FUZZ_CALLS=$FUZZ_CALLS"
	env+=" KVM_DIRTYBATCH_FUZZ_RACE_CALLS=$FUZZ_RACE_CALLS"
	env+=" KVM_DIRTYBATCH_FUZZ_RACE_SECONDS=$FUZZ_RACE_SECONDS"
	guest fuzz "$GUEST_TIMEOUT" "$huge; for t in huge_batch_test fuzz_test fuzz_race_test; do
		echo \"# ==== begin \$t\"; $env $O/tests/guest/\$t; echo \"# ==== end \$t exit=\$?\"
	done"
	out=$logdir/debug-fuzz.out
	grep -h -E 'fuzz-summary: (deterministic|races) (seed|digest)|huge-summary:' "$out" |
		sed 's/^# /# /; s/^\([^#]\)/# \1/'
	for part in deterministic races; do
		v=$(sed -n "s/.*fuzz-summary: $part seed=.* violations=\([0-9]*\).*/\1/p" "$out" | tail -n1)
		c=$(sed -n "s/.*fuzz-summary: $part seed=.* calls=\([0-9]*\).*/\1/p" "$out" | tail -n1)
		if [ "${v:-x}" = 0 ] && [ "${c:-0}" -gt 0 ]; then
			point ok "debug fuzz: $part: $c calls, 0 invariant violations (seed $seed)"
		else
			point fail "debug fuzz: $part: ${c:-?} calls, ${v:-?} invariant violations (seed $seed)"
		fi
	done
fi

progress "guest $rel: module lifetime (unload, reload)"
guest lifetime 3600 "echo '# ==== begin module_lifetime'
	selftests/kvm_dirtybatch/module_lifetime_guest.sh $ko $O/tests/guest
	echo \"# ==== end module_lifetime exit=\$?\""

finish
