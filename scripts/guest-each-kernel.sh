# SPDX-License-Identifier: GPL-2.0
#
# Sourced by the host tests that run one guest per built kernel
# (scripts/tooling-tests/refused-load.sh, module-lifetime.sh).
#
# each_kernel_guest FUNC [FILE...]: for every $O/module/<release>/ that has
# kvm_dirtybatch.ko and the FILEs, and whose kernel is in /boot (not
# build-config-variant.sh's build-only variants), runs FUNC DIR RELEASE,
# which boots the guest and prints TAP; its descriptions are prefixed with
# the release.  Returns 0 if every run passed, 1 if one failed, 4 (skip,
# with a TAP plan saying so) if there was no such kernel.
each_kernel_guest() {
	local func=$1 d rel f r rc=4
	shift
	for d in "$O"/module/*/; do
		d=${d%/} rel=$(basename "$d")
		[ -e "/boot/vmlinuz-$rel" ] || continue
		for f in kvm_dirtybatch.ko "$@"; do
			[ -f "$d/$f" ] || continue 2
		done
		"$func" "$d" "$rel" 2>&1 | sed -E "s/^((not )?ok [0-9]+) - /\1 - $rel: /"
		r=${PIPESTATUS[0]}
		if [ "$r" -ne 0 ] && [ "$r" -ne 4 ]; then
			echo "not ok - $rel: $func exited with status $r"
			rc=1
		elif [ "$rc" -ne 1 ] && [ "$r" -eq 0 ]; then
			rc=0
		fi
	done
	[ "$rc" -eq 4 ] && echo "1..0 # SKIP no kernel with a built module${*:+ and $*}"
	return "$rc"
}
