# SPDX-License-Identifier: GPL-2.0
# Sourced by scripts/check.sh, scripts/bench.sh and scripts/fuzz.sh: which
# installed kernel a series name means.

# has_headers RELEASE: its linux-headers package is installed.
has_headers() { [ -d "/usr/src/linux-headers-$1" ]; }

# newest_release SERIES|RELEASE [TEST]: the newest installed release of
# SERIES (6.1, 6.12) for which the command TEST RELEASE succeeds (default
# has_headers), or RELEASE itself if it passes TEST; "" if none.
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
