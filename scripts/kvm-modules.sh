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
# downloading source packages.
set -euo pipefail
# die() in a $(...) must stop the script too.
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
top=$PWD
# shellcheck source=kernels.sh
. scripts/kernels.sh

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

# pkg_version ROOT PACKAGE: its installed version in ROOT's dpkg ("" if none).
pkg_version() {
	dpkg-query --admindir="$1/var/lib/dpkg" -W -f '${db:Status-Abbrev}${Version}\n' \
		"$2" 2>/dev/null | sed -n 's/^ii *//p' || true
}

# image_version RELEASE: the Debian version of the kernel image.  Host
# kernels are installed packages; the trixie root's 7.x image is unpacked
# on the host and named in /lib/modules/RELEASE/kvm-dirtybatch.unpacked.
image_version() {
	local v marker=/lib/modules/$1/kvm-dirtybatch.unpacked
	v=$(pkg_version "" "linux-image-$1")
	if [ -z "$v" ] && [ -f "$marker" ]; then
		v=$(sed -n "s/^Package: linux-modules-$1 Version: //p" "$marker")
	fi
	echo "$v"
}

# source_deb SERIES VERSION: the cached linux-source-SERIES_VERSION deb,
# downloaded (apt-get download) if missing; refuses any other version.
source_deb() {
	local series=$1 ver=$2 deb got
	deb=$cache/debs/linux-source-${series}_${ver}_all.deb
	deb=${deb//\~/%7e}
	[ -f "$deb" ] || deb=$cache/debs/linux-source-${series}_${ver}_all.deb
	if [ ! -f "$deb" ]; then
		[ "$(id -u)" -eq 0 ] || die "no $deb, and downloading it needs root"
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
		deb=$(ls "$cache"/debs/linux-source-"${series}"_*_all.deb |
			while read -r f; do
				[ "$(dpkg-deb -f "$f" Version)" = "$ver" ] && echo "$f"
			done | head -n1) || true
	fi
	got=$(dpkg-deb -f "$deb" Version)
	[ "$got" = "$ver" ] ||
		die "$deb is linux-source-$series $got, the kernel is $ver: refusing"
	echo "$deb"
}

# The source directories KVM's modules are built from, and the headers the
# series changes (put ahead of the headers package's).
SRC_PATHS=(arch/x86/kvm virt/kvm include/trace include/uapi/linux/kvm.h
	   arch/x86/include/asm/kvm_host.h)

# pristine_src SERIES VERSION: $cache/kvm-src/VERSION/linux, extracted once.
pristine_src() {
	local series=$1 ver=$2 dir=$cache/kvm-src/$2 deb tmp
	if [ ! -f "$dir/.complete" ]; then
		deb=$(source_deb "$series" "$ver") || exit 1
		log "extracting ${SRC_PATHS[*]} from $deb"
		rm -rf "$dir"
		tmp=$dir/tmp
		mkdir -p "$tmp"
		dpkg-deb --fsys-tarfile "$deb" |
			tar -x -C "$tmp" "./usr/src/linux-source-$series.tar.xz"
		mkdir -p "$dir/linux"
		nice xz -dc "$tmp/usr/src/linux-source-$series.tar.xz" |
			tar -x -C "$dir/linux" --strip-components=1 \
				"${SRC_PATHS[@]/#/linux-source-$series/}"
		rm -rf "$tmp"
		touch "$dir/.complete"
	fi
	echo "$dir/linux"
}

# Apply the series' kernel patches (not its Documentation or selftests).
# GIT_CEILING_DIRECTORIES: the tree may lie inside a git work tree (build/),
# whose root git apply would otherwise take paths relative to.
apply_series() {
	local dir=$1 pdir=$2 p
	[ -f "$pdir/series" ] || die "no $pdir/series"
	while read -r p; do
		case $p in ''|'#'*) continue ;; esac
		(cd "$dir" && GIT_CEILING_DIRECTORIES=${dir%/*} git apply -p1 \
			--include='virt/*' --include='arch/*' --include='include/*' \
			--exclude='*' "$pdir/$p") || die "$p does not apply to $dir"
	done <"$pdir/series"
}

# check_modules RELEASE KDIR OUT: vermagic equal to the stock kvm.ko's;
# with CONFIG_MODVERSIONS, every symbol version the modules import equal to
# the one in the headers' Module.symvers (or, for kvm-amd and kvm-intel, in
# the new kvm.ko's); without it, every undefined symbol exported there.
check_modules() {
	local rel=$1 kdir=$2 out=$3 m stock want got bad=0 crc sym n=0 what
	local syms=("$kdir/Module.symvers" "$out/build/arch/x86/kvm/Module.symvers")
	stock=$(find "/lib/modules/$rel/kernel/arch/x86/kvm" -name 'kvm.ko*' | head -n1)
	want=$(modinfo -F vermagic "$stock")
	for m in kvm kvm-amd kvm-intel; do
		got=$(modinfo -F vermagic "$out/$m.ko")
		[ "$got" = "$want" ] || { log "$m.ko: vermagic '$got', kernel '$want'"; bad=1; }
		if grep -q '^CONFIG_MODVERSIONS=y' "$kdir/.config"; then
			what="symbol versions (CRCs)"
			while read -r crc sym; do
				n=$((n + 1))
				grep -q "^$crc[[:space:]]$sym[[:space:]]" "${syms[@]}" ||
					{ log "$m.ko: $sym $crc is not in Module.symvers"; bad=1; }
			done < <(modprobe --dump-modversions "$out/$m.ko")
		else
			what="imported symbols (no CONFIG_MODVERSIONS)"
			while read -r sym; do
				n=$((n + 1))
				grep -q "^0x[0-9a-f]*[[:space:]]$sym[[:space:]]" "${syms[@]}" ||
					{ log "$m.ko: $sym is not exported by the kernel or kvm.ko"; bad=1; }
			done < <(nm -u "$out/$m.ko" | awk '{print $2}' | grep -v '^__fentry__$\|^__x86_return_thunk$\|^__x86_indirect_thunk' )
		fi
	done
	[ "$bad" -eq 0 ] || die "$rel: the modules do not match the kernel"
	log "$rel: vermagic '$want' as the stock kvm.ko; $n $what checked"
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
	series=$(echo "$ver" | sed -n 's/^\([0-9]*\.[0-9]*\)\..*/\1/p')
	pdir=$top/module/native/patches/$series
	[ -d "$pdir" ] || die "$rel: no series for $series in module/native/patches"

	out=$O/kvm-modules/$rel
	# Nothing to do if the modules exist for this very series and source.
	local stamp
	stamp=$(cd "$pdir" && sed '/^#/d; /^$/d' series | xargs cat series "$top/scripts/kvm-modules.sh" |
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
	# The Kbuild files name $(srctree) for this tree's own sources; and the
	# series' headers go first (NOSTDINC_FLAGS precedes LINUXINCLUDE).
	sed -i "s|\$(srctree)|$out/build|g" "$out/build/arch/x86/kvm/Makefile"
	sed -i "1a NOSTDINC_FLAGS := -I$out/build/arch/x86/include -I$out/build/include -I$out/build/include/uapi \$(NOSTDINC_FLAGS)" \
		"$out/build/arch/x86/kvm/Makefile"

	local make=(nice make -s -j"${KVM_MODULES_JOBS:-2}" -C "$kdir"
		    M="$out/build/arch/x86/kvm" O="$kdir"
		    CONFIG_DEBUG_INFO_BTF_MODULES= modules)
	log "$rel: building from linux-source-$series $ver${trixie:+ (trixie root)}"
	if [ -n "$trixie" ]; then
		in_trixie "${make[@]}"
	else
		"${make[@]}"
	fi
	local m
	for m in kvm kvm-amd kvm-intel; do
		# Debian's own modules carry no debug info either.
		objcopy --strip-debug "$out/build/arch/x86/kvm/$m.ko" "$out/$m.ko"
	done
	if [ -n "$trixie" ]; then
		check_modules "$rel" "$root$kdir" "$out"
	else
		check_modules "$rel" "$kdir" "$out"
	fi
	echo "$stamp" >"$out/.stamp"
	echo "  KVM     $out/{kvm,kvm-amd,kvm-intel}.ko"
}

[ $# -gt 0 ] || set -- $(all_releases)
[ $# -gt 0 ] || die "no kernel headers installed (run make deps)"
for rel; do
	build_release "$rel"
done
