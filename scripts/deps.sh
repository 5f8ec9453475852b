#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Install everything kvm-dirtybatch needs to build and test, idempotently.
# Quiet when all is present; prints one line per thing it installs.
#
# Installs: the toolchain, QEMU, busybox/cpio/xz (guest initramfs fallback),
# Debian's 6.1 kernel (linux-image-amd64 + headers), the newest 6.12
# backport kernel apt offers (+ headers), linux-source-6.1 and -6.12
# (kselftest framework, KVM selftests library, checkpatch.pl) unpacked
# under /usr/src, and virtme-ng from trixie, pinned so that nothing else
# comes from trixie; then Debian's 7.3 kernel through scripts/trixie-root.sh.
# With --qemu, also what userspace/qemu builds need (scripts/qemu-deps.sh:
# pinned deb-src entries, the QEMU 7.2/10.0/10.2 sources, trixie's meson
# unpacked privately); userspace/qemu/build.sh calls that script itself.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
log() { echo "deps: $*" >&2; }

# need_root, apt_quiet, apt_update, missing_pkgs, apt_install
. "$(dirname "${BASH_SOURCE[0]}")/apt.sh"

# gcc-multilib: the 32-bit (compat ioctl) builds of some selftests.
# rsync: the kernel's headers_install (the patched KVM's selftests);
# python3-ply, python3-git: checkpatch.pl's SPDX check of the native series.
BASE_PKGS="gcc gcc-multilib make libc6-dev pkg-config bc flex bison python3 \
qemu-system-x86 busybox-static cpio xz-utils kmod udev dkms debhelper dh-dkms \
linux-image-amd64 linux-headers-amd64 linux-source-6.1 linux-source-6.12 \
rsync python3-ply python3-git"
# shellcheck disable=SC2086
apt_install $BASE_PKGS

# The newest 6.12 backport kernel for bookworm that has matching headers.
# Looked up at install time: security updates retire old ABI versions.
have612=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' \
	'linux-image-6.12.*+deb12-amd64' 2>/dev/null |
	awk '$2 == "installed" {print $1}' | sort -V | tail -n1 || true)
if [ -z "$have612" ] || [ ! -d "/usr/src/linux-headers-${have612#linux-image-}" ]; then
	need_root linux-image-6.12
	apt_update
	img=$(apt-cache search --names-only '^linux-image-6\.12\.[0-9]+\+deb12-amd64$' |
		awk '{print $1}' | sort -V | tail -n1)
	[ -n "$img" ] || { log "apt offers no linux-image-6.12.*+deb12-amd64"; exit 1; }
	apt_install "$img" "linux-headers-${img#linux-image-}"
fi

# Unpack the kernel sources once (kselftest framework, KVM selftests lib).
for v in 6.1 6.12; do
	if [ ! -f "/usr/src/linux-source-$v/Makefile" ]; then
		need_root "unpack linux-source-$v"
		log "unpacking /usr/src/linux-source-$v.tar.xz"
		tar -C /usr/src -xf "/usr/src/linux-source-$v.tar.xz"
	fi
done

# virtme-ng: architecture-independent, only in trixie. Pin trixie to -1 so
# nothing but virtme-ng can ever come from it.
if ! command -v vng >/dev/null 2>&1; then
	need_root virtme-ng
	src=/etc/apt/sources.list.d/kvm-dirtybatch-trixie.sources
	pin=/etc/apt/preferences.d/kvm-dirtybatch-trixie
	if [ ! -f "$pin" ]; then
		cat >"$pin" <<'PIN'
# kvm-dirtybatch: only virtme-ng may come from trixie.
Package: *
Pin: release n=trixie
Pin-Priority: -1

Package: virtme-ng
Pin: release n=trixie
Pin-Priority: 500
PIN
	fi
	if [ ! -f "$src" ]; then
		cat >"$src" <<'SRC'
# kvm-dirtybatch: for virtme-ng only (see preferences.d/kvm-dirtybatch-trixie)
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
	fi
	apt_updated=
	apt_update
	# Refuse if anything other than virtme-ng would come from trixie.
	others=$(apt-get install -s -y --no-install-recommends virtme-ng 2>/dev/null |
		awk '/^Inst / && /trixie/ && $2 != "virtme-ng" {print $2}')
	if [ -n "$others" ]; then
		log "virtme-ng would pull from trixie: $others; not installing (qemu fallback)"
	else
		log "installing: virtme-ng (trixie, pinned)"
		apt_quiet install -y -qq --no-install-recommends virtme-ng ||
			log "virtme-ng install failed; guest runs use the plain qemu fallback"
	fi
fi

# ---- Debian's 7.3 kernel (trixie-backports), kept off the host: its
# headers in a trixie root made by debootstrap (from bookworm), its image
# and modules unpacked into /boot and /lib/modules.  scripts/trixie-root.sh
# does all of it, idempotently; nothing is added to the host's apt sources.
apt_install debootstrap
"$(dirname "$0")/trixie-root.sh"

# ---- the exact Debian source of every installed kernel (KVM's own
# modules with the native series build only from it: make kvm-modules, and
# the native DKMS package's test), cached in /var/cache/kvm-dirtybatch/debs.
# bookworm's linux-source-6.12 can be newer than its newest 6.12 image.
"$(dirname "$0")/kvm-modules.sh" --fetch-sources

# ---- QEMU sources and trixie's meson for userspace/qemu (--qemu only)
if [ "${1:-}" = --qemu ]; then
	"$(dirname "$0")/qemu-deps.sh" all >/dev/null
fi
exit 0
