#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The body of `make check` (after `make deps`): build everything, run the
# host tests and the tooling tests, then the kselftests inside a guest of
# each test kernel with the freshly built module loaded, then per kernel the patched KVM modules
# (the native backend) in a guest of their own.  Prints one TAP stream and
# ends with "N passed, N failed, N skipped"; exits non-zero on any failure.
#
# Environment: O (build dir, default ./build), CHECK_KERNELS (series to
# boot, default "6.1 6.12 7.3"), GUEST_TIMEOUT (seconds per guest run).
set -u
cd "$(dirname "$0")/.."
top=$PWD
. "$top/scripts/kernels.sh"
O=${O:-$top/build}
CHECK_KERNELS=${CHECK_KERNELS:-6.1 6.12 $TRIXIE_SERIES}
GUEST_TIMEOUT=${GUEST_TIMEOUT:-1200}
logdir=$O/logs
mkdir -p "$logdir"
start=$(date +%s)

timings=
. "$top/scripts/test-points.sh"

echo "TAP version 13"
progress "building userspace and tests"
step "build: userspace library and tools (-Wall -Wextra -Werror)" make -s userspace O="$O"
step "build: selftests (-Wall -Wextra -Werror)" make -s selftests O="$O"

step "userspace: example program builds against a temporary install via pkg-config" \
	make -s -C userspace example-check O="$O"

progress "building the module for every installed kernel (W=1)"
# build_point RELEASE WHERE COMMAND...: one test point for a module build
# that must succeed with neither a warning nor an error in its log.
build_point() {
	local rel=$1 where=$2 log=$logdir/module-$1.log
	shift 2
	if "$@" >"$log" 2>&1 && ! grep -E 'warning:|error:' "$log" >/dev/null; then
		point ok "build: kvm_dirtybatch.ko for $rel$where, W=1, no warnings"
	else
		grep -E 'warning:|error:|trixie-build:' "$log" | head -n 20 | sed 's/^/#   /'
		point fail "build: kvm_dirtybatch.ko for $rel$where (log: $log)"
	fi
}
for h in /usr/src/linux-headers-*-amd64; do
	[ -f "$h/Module.symvers" ] || continue
	rel=${h#/usr/src/linux-headers-}
	build_point "$rel" "" make -s module KDIR="$h" RELEASE="$rel" O="$O"
done
# Debian's 7.x (trixie-backports): its headers need trixie's toolchain and
# are in the trixie root of scripts/trixie-root.sh, where it is built.
for rel in $(scripts/trixie-build.sh --list); do
	build_point "$rel" " in the trixie root" env O="$O" scripts/trixie-build.sh "$rel"
done

# One build with CONFIG_KVM_SMM=n (one memslot address space; from 6.8 on
# kvm_arch_nr_memslot_as_ids() is then a function, not a macro).
smm_hdr=$(ls -d /usr/src/linux-headers-6.12.*-amd64 2>/dev/null | sort -V | tail -n1)
if [ -n "$smm_hdr" ]; then
	step "build: kvm_dirtybatch.ko for ${smm_hdr#/usr/src/linux-headers-} with CONFIG_KVM_SMM=n, W=1, no warnings" \
		env O="$O" scripts/build-config-variant.sh "$smm_hdr" CONFIG_KVM_SMM
fi

checkpatch=$(ls -d /usr/src/linux-source-6.12/scripts/checkpatch.pl 2>/dev/null)
if [ -n "$checkpatch" ]; then
	step "style: checkpatch.pl --strict clean (module, UAPI header)" \
		sh -c "! $checkpatch --strict --no-tree -f module/*.c module/*.h include/uapi/linux/*.h | grep -E -A3 '^(WARNING|ERROR|CHECK)'"
	step "style: kernel-doc comments complete (module, UAPI header)" \
		sh -c "! ${checkpatch%checkpatch.pl}kernel-doc -none -Wall module/*.c module/*.h include/uapi/linux/*.h 2>&1 | grep ."
	# Each patch on stdin (given a path inside this tree checkpatch reads
	# it as a source file).  FILE_PATH_CHANGES ("does MAINTAINERS need
	# updating?") is printed for every new file; the new selftest is under
	# KVM's entry already.
	step "style: checkpatch.pl --strict clean, the native series for 7.3, 6.12 and 6.1" \
		sh -c "for p in module/native/patches/*/[0-9][0-9][0-9][1-9]-*.patch; do
			! $checkpatch --strict --no-tree --ignore FILE_PATH_CHANGES - <\$p |
				grep -E -A3 '^(WARNING|ERROR|CHECK)' || { echo \"in \$p\"; exit 1; }
		done"
fi

progress "host tests (this machine's /dev/kvm)"
fold "host/" < <(scripts/run-tests.sh "$O/tests/host")
# Tests of the project's tooling (guest runner fallback, packaging, DKMS,
# module load and lifetime), each a script in scripts/tooling-tests/.
progress "tooling tests (scripts/tooling-tests)"
fold "tooling/" < <(O="$O" scripts/run-tests.sh scripts/tooling-tests 900)

for series in $CHECK_KERNELS; do
	rel=$(newest_release "$series")
	if [ -z "$rel" ]; then
		point fail "guest $series: no installed kernel with headers (run make deps)"
		continue
	fi
	ko=$O/module/$rel/kvm_dirtybatch.ko
	if [ ! -f "$ko" ]; then
		point fail "guest $rel: module was not built"
		continue
	fi
	progress "guest $rel: booting, loading kvm-amd and kvm_dirtybatch, running kselftests"
	gstart=$(date +%s)
	glog=$logdir/guest-$rel.log
	out=$logdir/guest-$rel.out
	# fold runs in this shell (not a pipeline's subshell): it counts.
	fold "guest $series/" < <({
		selftests/runner/vm-run --kernel "$rel" --module "$ko" --log "$glog" \
			--timeout "$GUEST_TIMEOUT" -- scripts/run-tests.sh "$O/tests/guest" 2>&1
		echo $? >"$out.rc"
	} | tee "$out")
	rc=$(cat "$out.rc")
	timings+=" $rel: $(($(date +%s) - gstart))s;"
	case $rc in
	0) point ok "guest $rel: run completed, kernel log clean (log: $glog)" ;;
	124) point fail "guest $rel: timed out after ${GUEST_TIMEOUT}s (log: $glog)" ;;
	125) grep 'vm-run: verdict' "$out" | sed 's/^/# /'
	     point fail "guest $rel: kernel log shows BUG/WARNING/lockdep/stall or bad taint (log: $glog)" ;;
	126) point fail "guest $rel: kvm-amd or kvm_dirtybatch failed to load (log: $glog)" ;;
	*) grep 'vm-run:' "$out" | sed 's/^/# /'
	   point fail "guest $rel: runner exited with status $rc (log: $glog)" ;;
	esac
done

# The native backend: KVM's own KVM_CLEAR_DIRTY_LOG_BATCH, as the patched
# KVM modules of each kernel (built from its exact Debian source), tested in
# a guest of its own: upstream KVM selftests, the project's kselftests and
# the library's guest test against the native ioctl.
for series in $CHECK_KERNELS; do
	progress "native $series: patched KVM modules, upstream and project tests in a guest"
	nstart=$(date +%s)
	nout=$logdir/native-guests-$series.out
	O="$O" scripts/native-guest-tests.sh "$series" >"$nout" 2>&1
	nrc=$?
	while read -r line; do
		case $line in
		"ok "*"# SKIP"*) point skip "native $series/${line#ok [0-9]* }" ;;
		"ok "*) point ok "native $series/${line#ok [0-9]* }" ;;
		"not ok "*) point fail "native $series/${line#not ok [0-9]* }" ;;
		esac
	done < <(grep -E '^(not )?ok [0-9]+ ' "$nout")
	timings+=" native $series: $(($(date +%s) - nstart))s;"
	if [ "$nrc" -eq 0 ]; then
		point ok "native $series: patched KVM built from the exact Debian source, guest kernel log clean (log: $nout)"
	else
		grep -E 'native-guest-tests:|vm-run: verdict|Bail out' "$nout" | tail -n 8 | sed 's/^/# /'
		point fail "native $series: scripts/native-guest-tests.sh exited $nrc (log: $nout)"
	fi
done

echo "1..$n"
[ -n "$timings" ] && echo "# guest runs:${timings%;}"
progress "done"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
