#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# kvm-modules.sh [RELEASE...]: KVM's own modules (kvm.ko, kvm-amd.ko,
# kvm-intel.ko) with the KVM_CLEAR_DIRTY_LOG_BATCH series
# (module/native/patches/<series>/) applied, built out of tree for a stock
# Debian kernel, as kvm-kmod did:
#
#  - the source is Debian's linux-source-<series> package whose version is
#    the kernel image's (and its headers'), exactly; any other version is
#    refused, since KVM's objects are only compatible with the kernel they
#    come from;
#  - only arch/x86/kvm and virt/kvm are built, against the kernel's own
#    headers package, so vermagic and the symbol versions (modversions) are
#    the stock modules'; both are checked after the build;
#  - the series' header changes (new defines only, no structure changes)
#    are put ahead of the headers package's on the include path.
#
# Output: $O/kvm-modules/<release>/{kvm,kvm-amd,kvm-intel}.ko (O: build
# directory, default ./build).  Cached under $KVM_MODULES_CACHE (default
# /var/cache/kvm-dirtybatch): debs/ the source packages, kvm-src/<version>/
# the few source directories taken out of them.  Releases: default, every
# installed Debian kernel (host headers and the trixie root's, see
# scripts/trixie-root.sh); Debian's 7.x is built inside the trixie root
# with trixie's toolchain.  Needs root for the 7.x builds and for
# downloading source packages.  kvm-modules.sh --fetch-sources [RELEASE...]
# only downloads the source packages.
# shellcheck source-path=SCRIPTDIR/..
set -euo pipefail
# die() in a $(...) must stop the script too.
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
top=$PWD
. scripts/kernels.sh
. module/native/kvm-build.sh

cache=${KVM_MODULES_CACHE:-/var/cache/kvm-dirtybatch}
O=${O:-$top/build}
mkdir -p "$O"
O=$(cd "$O" && pwd)
root=$TRIXIE_ROOT
log() { echo "kvm-modules: $*" >&2; }
die() { log "$*"; exit 1; }

# in_trixie CMD...: CMD in the trixie root, with $top, $O and $cache
# bind-mounted at the same paths, in a mount namespace of its own.
in_trixie() {
	local d binds=("$top" "$cache/kvm-src")
	case $O/ in "$top"/*) ;; *) binds+=("$O") ;; esac
	for d in "${binds[@]}"; do
		mkdir -p "$root$d"
	done
	# shellcheck disable=SC2016 # expanded by the inner bash
	unshare --mount --propagation private -- bash -c '
		set -e
		root=$1 n=$2
		shift 2
		for d in "${@:1:$n}"; do mount --bind "$d" "$root$d"; done
		shift "$n"
		mount -t proc proc "$root/proc"
		exec chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
			HOME=/root LC_ALL=C.UTF-8 "$@"
	' kvm-modules "$root" "${#binds[@]}" "${binds[@]}" "$@"
}

# The releases: host headers packages, then the trixie root's.
all_releases() {
	local h
	for h in /usr/src/linux-headers-*-amd64/Module.symvers \
		 "$root"/usr/src/linux-headers-*-amd64/Module.symvers; do
		[ -f "$h" ] || continue
		h=${h%/Module.symvers}
		echo "${h##*/linux-headers-}"
	done
}

# source_deb SERIES VERSION: the cached linux-source-SERIES_VERSION deb,
# downloaded (apt-get download) if missing; refuses any other version.
source_deb() {
	local series=$1 ver=$2 deb
	if ! deb=$(cached_deb "$cache/debs" "$series" "$ver"); then
		[ "$(id -u)" -eq 0 ] || die "no linux-source-${series}_${ver}_all.deb in $cache/debs, and downloading it needs root"
		mkdir -p "$cache/debs"
		log "downloading linux-source-$series=$ver"
		if [ "${series%%.*}" -ge 7 ]; then
			mkdir -p "$root/tmp/kvm-modules-dl"
			in_trixie sh -c "cd /tmp/kvm-modules-dl &&
				apt-get -q -o APT::Sandbox::User=root download linux-source-$series=$ver" >&2 ||
				die "apt-get download linux-source-$series=$ver failed (trixie root)"
			mv "$root"/tmp/kvm-modules-dl/*.deb "$cache/debs/"
			rmdir "$root/tmp/kvm-modules-dl"
		else
			(cd "$cache/debs" && apt-get -q -o APT::Sandbox::User=root download "linux-source-$series=$ver") >&2 ||
				die "apt-get download linux-source-$series=$ver failed"
		fi
		deb=$(cached_deb "$cache/debs" "$series" "$ver") ||
			die "apt-get download gave no linux-source-$series $ver in $cache/debs: refusing"
	fi
	echo "$deb"
}

# pristine_src SERIES VERSION: $cache/kvm-src/VERSION/linux, extracted once.
pristine_src() {
	local series=$1 ver=$2 dir=$cache/kvm-src/$2 deb
	if [ ! -f "$dir/.complete" ]; then
		deb=$(source_deb "$series" "$ver") || exit 1
		log "extracting ${KVM_SRC_PATHS[*]} from $deb"
		rm -rf "$dir"
		extract_deb "$deb" "$series" "$dir/linux"
		touch "$dir/.complete"
	fi
	echo "$dir/linux"
}

build_release() {
	local rel=$1 kdir ver series pdir src out trixie=
	if [ -f "/usr/src/linux-headers-$rel/Module.symvers" ]; then
		kdir=/usr/src/linux-headers-$rel
		ver=$(pkg_version "" "linux-headers-$rel")
	elif [ -f "$root/usr/src/linux-headers-$rel/Module.symvers" ]; then
		kdir=/usr/src/linux-headers-$rel
		ver=$(pkg_version "$root" "linux-headers-$rel")
		trixie=1
		[ "$(id -u)" -eq 0 ] || die "$rel: building in the trixie root needs root"
	else
		die "$rel: no linux-headers-$rel (run make deps)"
	fi
	local img
	img=$(image_version "$rel")
	[ -n "$img" ] || die "$rel: no installed kernel image linux-image-$rel"
	[ "$img" = "$ver" ] ||
		die "$rel: image $img and headers $ver differ: refusing"
	series=$(version_series "$ver")
	pdir=$top/module/native/patches/$series
	[ -d "$pdir" ] || die "$rel: no series for $series in module/native/patches"

	out=$O/kvm-modules/$rel
	# Nothing to do if the modules exist for this very series and source.
	local stamp
	stamp=$({ series_files "$pdir"; cat "$top/scripts/kvm-modules.sh" "$top/module/native/kvm-build.sh"; } |
		sha256sum | cut -c1-16)-$ver
	if [ "$(cat "$out/.stamp" 2>/dev/null)" = "$stamp" ] &&
	   [ -f "$out/kvm.ko" ] && [ -f "$out/kvm-amd.ko" ] && [ -f "$out/kvm-intel.ko" ]; then
		echo "  KVM     $out/{kvm,kvm-amd,kvm-intel}.ko (up to date)"
		return 0
	fi
	rm -f "$out/.stamp"
	src=$(pristine_src "$series" "$ver") || exit 1
	rm -rf "$out/build"
	mkdir -p "$out"
	cp -a "$src" "$out/build"
	apply_series "$out/build" "$pdir"
	kbuild_tweaks "$out/build"
	kvm_make_cmd "$kdir" "$out/build" "${KVM_MODULES_JOBS:-2}"
	log "$rel: building from linux-source-$series $ver${trixie:+ (trixie root)}"
	if [ -n "$trixie" ]; then
		in_trixie "${KVM_MAKE[@]}"
	else
		"${KVM_MAKE[@]}"
	fi
	strip_modules "$out/build" "$out"
	check_modules "$rel" "${trixie:+$root}$kdir" "$out" "$out/build"
	echo "$stamp" >"$out/.stamp"
	echo "  KVM     $out/{kvm,kvm-amd,kvm-intel}.ko"
}

# --fetch-sources: only download (into the cache) the exact source package
# of each release, for make deps: the native DKMS package's test builds from
# it before make check's native part would have fetched it.
fetch=
if [ "${1:-}" = --fetch-sources ]; then
	fetch=1
	shift
fi
# shellcheck disable=SC2046 # release names have no spaces
[ $# -gt 0 ] || set -- $(all_releases)
[ $# -gt 0 ] || die "no kernel headers installed (run make deps)"
for rel; do
	if [ -n "$fetch" ]; then
		ver=$(image_version "$rel")
		[ -n "$ver" ] || die "$rel: no installed kernel image linux-image-$rel"
		source_deb "$(version_series "$ver")" "$ver" >/dev/null
	else
		build_release "$rel"
	fi
done
