# SPDX-License-Identifier: GPL-2.0
# Sourced by scripts/check.sh, scripts/bench.sh and scripts/fuzz.sh: which
# installed kernel a series name means.

# Debian's 7.x kernel (trixie-backports) is built for in a trixie root
# (scripts/trixie-root.sh, scripts/trixie-build.sh): its headers are there,
# its image and modules in /boot and /lib/modules like the others'.
TRIXIE_ROOT=${TRIXIE_ROOT:-/var/cache/kvm-dirtybatch/trixie-root}
TRIXIE_SERIES=${TRIXIE_SERIES:-7.3}

# has_headers RELEASE: its linux-headers package is installed, on the host
# or in the trixie root.
has_headers() {
	[ -d "/usr/src/linux-headers-$1" ] ||
		[ -f "$TRIXIE_ROOT/usr/src/linux-headers-$1/Module.symvers" ]
}

# newest_release SERIES|RELEASE [TEST]: the newest installed release of
# SERIES (6.1, 6.12, 7.3) for which the command TEST RELEASE succeeds
# (default has_headers), or RELEASE itself if it passes TEST; "" if none.
newest_release() {
	local test=${2:-has_headers} k r best=
	case $1 in *-amd64) "$test" "$1" && echo "$1"; return ;; esac
	for k in /boot/vmlinuz-"$1".*; do
		r=${k#/boot/vmlinuz-}
		case $r in "$1".*-amd64) ;; *) continue ;; esac
		"$test" "$r" || continue
		best=$(printf '%s\n%s\n' "$best" "$r" | sed '/^$/d' | sort -V | tail -n1)
	done
	echo "$best"
}

# build_module RELEASE: build/module/RELEASE/{kvm_dirtybatch,hide_symbol}.ko
# (make module) with the host's headers, or in the trixie root.  O: the
# build directory.
build_module() {
	if [ -d "/usr/src/linux-headers-$1" ]; then
		make -s module KDIR="/usr/src/linux-headers-$1" RELEASE="$1" O="$O"
	else
		O="$O" "$(dirname "${BASH_SOURCE[0]}")/trixie-build.sh" "$1"
	fi
}
