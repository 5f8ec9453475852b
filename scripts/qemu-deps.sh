#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# What the QEMU builds of userspace/qemu need, idempotently (called by
# scripts/deps.sh --qemu and by userspace/qemu/build.sh):
#
#  - pinned deb-src entries for bookworm, trixie and sid; preferences
#    keep sid (and trixie, already pinned by deps.sh for virtme-ng) at
#    priority -1, so no binary package is ever taken from them;
#  - the QEMU sources of the exact versions below, fetched with
#    `apt-get source --download-only` into $QEMU_CACHE/<version>/ (one
#    directory per series; never fetched twice);
#  - meson >= 1.5 for 10.x: trixie's meson (1.7, architecture all) is
#    downloaded with `apt-get download` and unpacked with dpkg-deb -x into
#    $QEMU_CACHE/meson-<version>/; it runs from there with PYTHONPATH
#    (see meson-run below).  Bookworm's meson 1.0 stays the system one
#    and builds 7.2.  Trixie's meson declares "python3:any (>= 3.7~),
#    ninja-build (>= 1.6), python3-setuptools"; bookworm has python3
#    3.11.2, ninja 1.11.1 and python3-setuptools 66.1 (installed here),
#    and the unpacked meson is run once with /usr/bin/python3 to check.
#
#   scripts/qemu-deps.sh [7.2|10.0|10.2|meson|all]...   (default: all)
#   scripts/qemu-deps.sh --print 7.2|10.0|10.2    (no fetching)
#
# Prints the source directory of each version asked for as
# "qemu <series> <dir-with-dsc>", and "meson <path-to-wrapper>".
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
QEMU_CACHE=${QEMU_CACHE:-/var/cache/kvm-dirtybatch/qemu}
log() { echo "qemu-deps: $*" >&2; }

# series -> Debian source version, and the suite serving it
declare -A VER=(
	[7.2]="1:7.2+dfsg-7+deb12u18"
	[10.0]="1:10.0.13+ds-0+deb13u1"
	[10.2]="1:10.2.2+ds-1"
)
declare -A SUITE=([7.2]=bookworm [10.0]=trixie [10.2]=sid)
MESON_VER=1.7.0-1

SRCLIST=/etc/apt/sources.list.d/kvm-dirtybatch-qemu-src.sources
OLDSRC=/etc/apt/sources.list.d/kvm-dirtybatch-bookworm-src.sources
PIN=/etc/apt/preferences.d/kvm-dirtybatch-sid

# apt_quiet (and the rest of deps.sh's apt helpers)
. "$(dirname "${BASH_SOURCE[0]}")/apt.sh"

setup_apt() {
	local changed=0
	if [ ! -f "$PIN" ]; then
		cat >"$PIN" <<'PINEOF'
# kvm-dirtybatch: sid is there for QEMU's source only (deb-src in
# sources.list.d/kvm-dirtybatch-qemu-src.sources); no binary from it.
Package: *
Pin: release n=sid
Pin-Priority: -1
PINEOF
		changed=1
	fi
	if [ ! -f "$SRCLIST" ]; then
		cat >"$SRCLIST" <<'SRCEOF'
# kvm-dirtybatch: QEMU sources for userspace/qemu (apt-get source of
# exact versions, scripts/qemu-deps.sh).  Source entries only; sid and
# trixie are pinned to -1 in /etc/apt/preferences.d/kvm-dirtybatch-*.
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm trixie sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRCEOF
		# this file supersedes the old bookworm-only one of build.sh
		rm -f "$OLDSRC"
		changed=1
	fi
	# (no grep -q on a pipe: with pipefail its early exit fails the pipe)
	if [ "$changed" = 1 ] || ! apt-cache showsrc qemu 2>/dev/null |
	     grep -cxF "Version: ${VER[10.2]}" >/dev/null; then
		log "apt-get update (deb-src bookworm trixie sid)"
		apt_quiet update -qq
	fi
}

# Source of one series into $QEMU_CACHE/<series>/.
fetch_src() {
	local s=$1 v=${VER[$1]} d=$QEMU_CACHE/$1 up
	up=${v#*:}
	if [ ! -f "$d/qemu_$up.dsc" ]; then
		setup_apt
		mkdir -p "$d"
		log "apt-get source qemu=$v (${SUITE[$s]})"
		(cd "$d" && apt_quiet source --download-only -qq "qemu=$v")
		[ -f "$d/qemu_$up.dsc" ] || { log "no qemu_$up.dsc after apt-get source"; exit 1; }
	fi
	echo "qemu $s $d/qemu_$up.dsc"
}

# Trixie's meson, private.
fetch_meson() {
	local d=$QEMU_CACHE/meson-$MESON_VER w
	w=$d/meson-run
	if [ ! -x "$w" ]; then
		dpkg-query -W -f='${db:Status-Status}' python3-setuptools 2>/dev/null |
			grep -x installed >/dev/null ||
			apt_quiet install -y -qq --no-install-recommends python3-setuptools
		mkdir -p "$d"
		if ! ls "$d"/meson_*.deb >/dev/null 2>&1; then
			(cd "$d" && apt_quiet download "meson=$MESON_VER")
		fi
		rm -rf "$d/root"
		dpkg-deb -x "$d"/meson_*.deb "$d/root"
		py=$(ls -d "$d"/root/usr/lib/python3/dist-packages)
		cat >"$w.tmp" <<WEOF
#!/bin/sh
# trixie's meson $MESON_VER, unpacked privately (scripts/qemu-deps.sh)
PYTHONPATH=$py\${PYTHONPATH:+:\$PYTHONPATH} exec /usr/bin/python3 $d/root/usr/bin/meson "\$@"
WEOF
		chmod +x "$w.tmp"
		# its Python requirement (Depends: python3 >= 3.7): does it run?
		"$w.tmp" --version >/dev/null ||
			{ log "trixie's meson does not run with $(python3 --version)"; exit 1; }
		mv "$w.tmp" "$w"
		log "meson $("$w" --version) unpacked into $d (python $(/usr/bin/python3 -V 2>&1 | cut -d' ' -f2))"
	fi
	echo "meson $w"
}

[ $# -gt 0 ] || set -- all
if [ "$1" = --print ]; then
	up=${VER[$2]#*:}
	echo "qemu $2 $QEMU_CACHE/$2/qemu_$up.dsc"
	exit 0
fi
for a in "$@"; do
	case $a in
	7.2|10.0|10.2) fetch_src "$a" ;;
	meson) fetch_meson ;;
	all) for s in 7.2 10.0 10.2; do fetch_src $s; done; fetch_meson ;;
	*) log "unknown argument $a"; exit 2 ;;
	esac
done
