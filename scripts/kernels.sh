# SPDX-License-Identifier: GPL-2.0
# Sourced by scripts/check.sh and scripts/bench.sh: which installed kernel
# a series name means.

# newest_release SERIES|RELEASE: the newest installed release of SERIES
# (6.1, 6.12) that has headers, or RELEASE itself if installed; "" if none.
newest_release() {
	local k r best=
	case $1 in *-amd64) [ -d "/usr/src/linux-headers-$1" ] && echo "$1"; return ;; esac
	for k in /boot/vmlinuz-"$1".*; do
		r=${k#/boot/vmlinuz-}
		case $r in "$1".*-amd64) ;; *) continue ;; esac
		[ -d "/usr/src/linux-headers-$r" ] || continue
		best=$(printf '%s\n%s\n' "$best" "$r" | sed '/^$/d' | sort -V | tail -n1)
	done
	echo "$best"
}
