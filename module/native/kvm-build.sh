# SPDX-License-Identifier: GPL-2.0
# shellcheck shell=bash
#
# kvm-build.sh: the steps that turn a Debian linux-source package into KVM's
# own modules (kvm.ko, kvm-amd.ko, kvm-intel.ko) with the
# KVM_CLEAR_DIRTY_LOG_BATCH series applied, built out of tree against the
# kernel's headers package.  Sourced by scripts/kvm-modules.sh (make
# kvm-modules) and by the DKMS package's build script (module/native/dkms/,
# where this file is copied next to it); the caller defines log MESSAGE and
# die MESSAGE (die exits).  Needs bash, dpkg, xz, git (git apply), kmod.

# The source directories KVM's modules are built from, and the headers the
# series changes (put ahead of the headers package's).
KVM_SRC_PATHS=(arch/x86/kvm virt/kvm include/trace include/uapi/linux/kvm.h
	       arch/x86/include/asm/kvm_host.h)

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

# version_series VERSION: the kernel series (6.1, 6.12, 7.3) of a Debian
# kernel package version.
version_series() {
	echo "$1" | sed -n 's/^\([0-9]*\.[0-9]*\)\..*/\1/p'
}

# cached_deb DIR SERIES VERSION: DIR's linux-source-SERIES_VERSION_all.deb
# (apt-get download spells ~ as %7e), if it is there and is that version.
cached_deb() {
	local dir=$1 series=$2 ver=$3 f
	for f in "$dir/linux-source-${series}_${ver//\~/%7e}_all.deb" \
		 "$dir/linux-source-${series}_${ver}_all.deb"; do
		[ -f "$f" ] && [ "$(dpkg-deb -f "$f" Version 2>/dev/null)" = "$ver" ] &&
			{ echo "$f"; return 0; }
	done
	return 1
}

# extract_tarxz TARXZ SERIES DIR: KVM_SRC_PATHS out of linux-source's
# tarball, into DIR (created).
extract_tarxz() {
	mkdir -p "$3"
	nice xz -dc "$1" |
		tar -x -C "$3" --strip-components=1 \
			"${KVM_SRC_PATHS[@]/#/linux-source-$2/}"
}

# extract_deb DEB SERIES DIR: the same out of a linux-source .deb.
extract_deb() {
	local tmp=$3.deb-tmp
	rm -rf "$tmp"
	mkdir -p "$tmp"
	dpkg-deb --fsys-tarfile "$1" |
		tar -x -C "$tmp" "./usr/src/linux-source-$2.tar.xz"
	extract_tarxz "$tmp/usr/src/linux-source-$2.tar.xz" "$2" "$3"
	rm -rf "$tmp"
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

# series_files PDIR: the series file and the patches it names.
series_files() {
	(cd "$1" && sed '/^#/d; /^$/d' series | xargs cat series)
}

# kbuild_tweaks DIR: the Kbuild files name $(srctree) for this tree's own
# sources; and the series' headers go first (NOSTDINC_FLAGS precedes
# LINUXINCLUDE).
kbuild_tweaks() {
	local dir=$1
	sed -i "s|\$(srctree)|$dir|g" "$dir/arch/x86/kvm/Makefile"
	sed -i "1a NOSTDINC_FLAGS := -I$dir/arch/x86/include -I$dir/include -I$dir/include/uapi \$(NOSTDINC_FLAGS)" \
		"$dir/arch/x86/kvm/Makefile"
}

# kvm_make_cmd KDIR DIR JOBS: sets KVM_MAKE to the make command that builds
# DIR's arch/x86/kvm against the headers in KDIR (no BTF: headers packages
# ship no vmlinux).
# shellcheck disable=SC2034 # used by the caller
kvm_make_cmd() {
	KVM_MAKE=(nice make -s -j"$3" -C "$1" M="$2/arch/x86/kvm" O="$1"
		  CONFIG_DEBUG_INFO_BTF_MODULES= modules)
}

# strip_modules DIR OUT: DIR's built modules into OUT, without debug info
# (Debian's own modules carry none either).
strip_modules() {
	local m
	for m in kvm kvm-amd kvm-intel; do
		objcopy --strip-debug "$1/arch/x86/kvm/$m.ko" "$2/$m.ko"
	done
}

# check_modules RELEASE KDIR OUT BUILD: vermagic equal to the stock kvm.ko's;
# with CONFIG_MODVERSIONS, every symbol version the modules import equal to
# the one in the headers' Module.symvers (or, for kvm-amd and kvm-intel, in
# the new kvm.ko's, BUILD/arch/x86/kvm/Module.symvers); without it, every
# undefined symbol exported there.
check_modules() {
	local rel=$1 kdir=$2 out=$3 m stock want got bad=0 crc sym n=0 what
	local syms=("$kdir/Module.symvers" "$4/arch/x86/kvm/Module.symvers")
	stock=$(find "/lib/modules/$rel/kernel/arch/x86/kvm" -name 'kvm.ko*' | head -n1)
	[ -n "$stock" ] || die "$rel: no stock kvm.ko in /lib/modules/$rel/kernel"
	want=$(modinfo -F vermagic "$stock")
	for m in kvm kvm-amd kvm-intel; do
		got=$(modinfo -F vermagic "$out/$m.ko")
		[ "$got" = "$want" ] || { log "$m.ko: vermagic '$got', kernel '$want'"; bad=1; }
		if grep -q '^CONFIG_MODVERSIONS=y' "$kdir/.config"; then
			what="symbol versions (CRCs)"
			while read -r crc sym; do
				n=$((n + 1))
				grep -q "^${crc}[[:space:]]${sym}[[:space:]]" "${syms[@]}" ||
					{ log "$m.ko: $sym $crc is not in Module.symvers"; bad=1; }
			done < <(modprobe --dump-modversions "$out/$m.ko")
		else
			what="imported symbols (no CONFIG_MODVERSIONS)"
			while read -r sym; do
				n=$((n + 1))
				grep -q "^0x[0-9a-f]*[[:space:]]${sym}[[:space:]]" "${syms[@]}" ||
					{ log "$m.ko: $sym is not exported by the kernel or kvm.ko"; bad=1; }
			done < <(nm -u "$out/$m.ko" | awk '{print $2}' | grep -v '^__fentry__$\|^__x86_return_thunk$\|^__x86_indirect_thunk' )
		fi
	done
	[ "$bad" -eq 0 ] || die "$rel: the modules do not match the kernel"
	log "$rel: vermagic '$want' as the stock kvm.ko; $n $what checked"
}
