#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# trixie-root.sh: Debian's 7.x kernel (trixie-backports) for building and
# testing the module on this bookworm machine, without trixie on the host.
# Idempotent; quiet when everything is in place.  Run by scripts/deps.sh.
#
# Its headers need trixie's toolchain (gcc-14-for-host, a linux-kbuild built
# against glibc 2.38+), which bookworm does not have and must not get, so:
#
#  1. A trixie root made by debootstrap (variant minbase) in $TRIXIE_ROOT
#     (default /var/cache/kvm-dirtybatch/trixie-root, see kernels.sh), with
#     the trixie and trixie-backports sources inside it only, and pinned so
#     that nothing but the kernel's packages comes from trixie-backports.
#     In it, only what the module's build needs: make, binutils, kmod and
#     linux-headers-<release>, which brings gcc-14-for-host and
#     linux-kbuild-<version>.  scripts/trixie-build.sh builds in it.
#  2. The guest kernel: linux-binary-, linux-modules- and linux-base-
#     <release> (what linux-image-<release> depends on, less the initramfs
#     tool) downloaded inside the root and unpacked on the host with
#     dpkg-deb -x, not installed: /boot/vmlinuz-, config- and System.map-
#     <release>, /lib/modules/<release> (depmod run), where selftests/runner/vm-run
#     and vng find kernels.  No initramfs: vng makes its own.  The host's
#     package database, apt sources and libc are untouched.  A marker,
#     /lib/modules/<release>/kvm-dirtybatch.unpacked, names the packages;
#     to remove it all: rm -rf /lib/modules/<release> /boot/*-<release>
#     $TRIXIE_ROOT.  (update-grub, if this machine runs it, would list this
#     kernel, and without an initramfs it cannot boot the host: do not pick
#     it at the boot menu.)
#
# The release: the newest $TRIXIE_SERIES.* (kernels.sh: 7.3) whose headers
# and image trixie-backports both has, looked up only when none is there
# yet, as deps.sh picks the newest 6.12.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=kernels.sh
. scripts/kernels.sh

export DEBIAN_FRONTEND=noninteractive LC_ALL=C
root=$TRIXIE_ROOT
series=$TRIXIE_SERIES
mirror=${TRIXIE_MIRROR:-http://deb.debian.org/debian}
log() { echo "trixie-root: $*" >&2; }
die() { log "$*"; exit 1; }

# Run a command quietly; show its output only when it fails.
quiet() {
	local out rc
	out=$("$@" 2>&1) && return 0
	rc=$?
	printf '%s\n' "$out" | tail -n 40 >&2
	log "failed ($rc): $*"
	return "$rc"
}

# A command inside the root, in a mount namespace of its own: its /proc
# mount never shows outside and goes away with it.
in_root() {
	unshare --mount --propagation private -- sh -c \
		'mount -t proc proc "$0/proc" && exec chroot "$0" "$@"' "$root" "$@"
}

# Nothing may be mounted under a directory about to be removed.
safe_rm() {
	if findmnt -rn -o TARGET | grep -q "^$1\(/\|$\)"; then
		die "something is mounted under $1: not removing it"
	fi
	rm -rf "$1"
}

# The release prepared in the root: newest $series.* headers installed there.
root_release() {
	local h best=
	for h in "$root"/usr/src/linux-headers-"$series".*-amd64; do
		[ -f "$h/Module.symvers" ] || continue
		best=$(printf '%s\n%s\n' "$best" "${h##*/linux-headers-}" | sed '/^$/d' |
			sort -V | tail -n1)
	done
	echo "$best"
}

guest_ready() { # release
	[ -f "/lib/modules/$1/kvm-dirtybatch.unpacked" ] && [ -r "/boot/vmlinuz-$1" ]
}

rel=
[ -f "$root/etc/debian_version" ] && rel=$(root_release)
if [ -n "$rel" ] && guest_ready "$rel"; then
	exit 0
fi
[ "$(id -u)" -eq 0 ] || die "the $series kernel is not prepared and this is not root: rerun as root"
command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install debootstrap"
command -v unshare >/dev/null && command -v findmnt >/dev/null ||
	die "unshare/findmnt (util-linux) missing"

# ---- 1. the root
if [ ! -f "$root/etc/debian_version" ]; then
	new=$root.new
	safe_rm "$new"
	mkdir -p "$(dirname "$root")"
	log "debootstrap trixie (minbase) into $root (about 2 minutes)"
	# debootstrap's own /proc and /sys mounts stay in this namespace
	quiet unshare --mount --propagation private -- \
		debootstrap --variant=minbase --components=main trixie "$new" "$mirror"
	rm -f "$new/etc/apt/sources.list"
	cat >"$new/etc/apt/sources.list.d/debian.sources" <<EOF
# kvm-dirtybatch (scripts/trixie-root.sh): this root's only sources.
Types: deb
URIs: $mirror
Suites: trixie trixie-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
	cat >"$new/etc/apt/preferences.d/kvm-dirtybatch" <<'EOF'
# kvm-dirtybatch: only the kernel's own packages come from trixie-backports.
Package: *
Pin: release n=trixie-backports
Pin-Priority: -1

Package: linux-*-7.*
Pin: release n=trixie-backports
Pin-Priority: 500
EOF
	mv "$new" "$root"
fi

# ---- the headers (and with them the compiler) of the newest $series.*
rel=$(root_release)
if [ -z "$rel" ]; then
	log "apt-get update (in the trixie root)"
	quiet in_root apt-get update -qq
	rel=$(in_root apt-cache search --names-only "^linux-headers-${series//./\\.}\.[0-9]+\+deb13-amd64\$" |
		awk '{print $1}' | sed 's/^linux-headers-//' | sort -V |
		while read -r r; do
			in_root apt-cache show "linux-image-$r" >/dev/null 2>&1 && echo "$r"
		done | tail -n1)
	[ -n "$rel" ] || die "trixie-backports offers no linux-headers-$series.*+deb13-amd64 with its image"
	log "installing in the trixie root: linux-headers-$rel make binutils kmod"
	quiet in_root apt-get install -y -qq --no-install-recommends \
		"linux-headers-$rel" make binutils kmod
	in_root apt-get clean
	[ "$(root_release)" = "$rel" ] || die "linux-headers-$rel did not install in $root"
fi

# ---- 2. the guest kernel, unpacked on the host
if ! guest_ready "$rel"; then
	for f in "/lib/modules/$rel" "/boot/vmlinuz-$rel"; do
		! dpkg -S "$f" >/dev/null 2>&1 ||
			die "a host package owns $f: not touching it"
	done
	dl=$root/var/tmp/kvm-dirtybatch-dl
	safe_rm "$dl"
	mkdir -p "$dl"
	in_root chown _apt /var/tmp/kvm-dirtybatch-dl
	pkgs="linux-binary-$rel linux-modules-$rel linux-base-$rel"
	log "downloading the guest kernel (in the trixie root): $pkgs"
	# shellcheck disable=SC2086
	if ! in_root sh -c 'cd /var/tmp/kvm-dirtybatch-dl && apt-get download -q "$@"' sh $pkgs \
		>/dev/null 2>&1; then
		quiet in_root apt-get update -qq
		# shellcheck disable=SC2086
		quiet in_root sh -c 'cd /var/tmp/kvm-dirtybatch-dl && apt-get download -q "$@"' sh $pkgs
	fi
	stage=$dl/unpacked
	for p in $pkgs; do
		deb=$(ls "$dl/${p}_"*.deb)
		dpkg-deb -x "$deb" "$stage"
	done
	m=$stage/usr/lib/modules/$rel
	[ -f "$m/vmlinuz" ] && [ -f "$m/config" ] && [ -f "$m/System.map" ] &&
		[ -d "$m/kernel" ] || die "unexpected layout of the $rel packages"
	log "unpacking the guest kernel: /boot/vmlinuz-$rel, /lib/modules/$rel"
	safe_rm "/lib/modules/$rel"
	rm -f "/boot/vmlinuz-$rel" "/boot/config-$rel" "/boot/System.map-$rel"
	for f in config System.map; do
		install -m 0644 "$m/$f" "/boot/$f-$rel"
		rm "$m/$f"
	done
	mv "$m/vmlinuz" "$dl/vmlinuz"
	mkdir -p /lib/modules
	mv "$m" "/lib/modules/$rel"
	quiet depmod -a -F "/boot/System.map-$rel" "$rel"
	# the image last: a kernel vm-run can find is complete
	install -m 0644 "$dl/vmlinuz" "/boot/vmlinuz-$rel"
	for p in $pkgs; do
		dpkg-deb -f "$(ls "$dl/${p}_"*.deb)" Package Version | paste -sd ' '
	done >"/lib/modules/$rel/kvm-dirtybatch.unpacked"
	safe_rm "$dl"
fi
guest_ready "$rel" || die "the $rel guest kernel is not complete"
exit 0
