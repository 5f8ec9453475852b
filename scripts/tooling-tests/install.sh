#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# `make install` / `make uninstall` as a packager or an operator runs them,
# into a temporary DESTDIR, for PREFIX=/usr and the default /usr/local:
#   - the installed files are exactly the expected ones (manifest: names,
#     modes, symlinks), copies of the tree's, with no DESTDIR leaked into them;
#   - userspace/examples/*.c and a UAPI user build against the install through
#     pkg-config (PKG_CONFIG_SYSROOT_DIR), shared and static, and run;
#   - `make uninstall` leaves only directories;
#   - debian/ builds (dpkg-buildpackage -b, in a copy of the tree) packages
#     holding the right files, at dkms.conf's version;
#   - the work tree is unchanged (git status), everything built in /tmp.
# Needs no root.  TAP; exit 0 pass, 1 fail.
set -u
cd "$(dirname "$0")/../.." || exit 1
top=$PWD
tmp=$(mktemp -d /tmp/kvm-dirtybatch-install.XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT
obj=$tmp/build
CC=${CC:-cc}

n=0 failed=0
ok() { n=$((n + 1)) && echo "ok $n - $*"; }
not_ok() { n=$((n + 1)) failed=1 && echo "not ok $n - $*"; }
# Run a command quietly; show its output only if it fails.
run() { # log command...
	local log=$1
	shift
	"$@" >"$log" 2>&1 && return 0
	sed 's/^/#   /' "$log" | tail -n 30
	return 1
}

gitst() {
	git -c safe.directory="$top" status --porcelain --untracked-files=all 2>/dev/null
}
in_git=0 git_before=
if git -c safe.directory="$top" rev-parse --git-dir >/dev/null 2>&1; then
	in_git=1 git_before=$(gitst)
fi

echo "TAP version 13"

# The library's version and soname major, as the .pc file states them.
lib_version() { # pkgconfig-dir
	PKG_CONFIG_LIBDIR=$1 PKG_CONFIG_PATH='' pkg-config --modversion dirtybatch
}

# What `make install PREFIX=$1` must write: "type mode path [target]".
manifest() { # prefix udev-rules-dir libversion
	local p=$1 udev=$2 v=$3 m
	echo "f 644 $p/include/dirtybatch.h"
	echo "f 644 $p/include/linux/kvm_dirtybatch.h"
	echo "f 644 $p/lib/libdirtybatch.a"
	echo "l 777 $p/lib/libdirtybatch.so libdirtybatch.so.${v%%.*}"
	echo "l 777 $p/lib/libdirtybatch.so.${v%%.*} libdirtybatch.so.$v"
	echo "f 755 $p/lib/libdirtybatch.so.$v"
	echo "f 644 $p/lib/pkgconfig/dirtybatch.pc"
	for m in userspace/man/*.3; do
		echo "f 644 $p/share/man/man3/${m##*/}"
	done
	echo "f 644 $p/share/doc/kvm-dirtybatch/examples/modules-load.d/kvm_dirtybatch.conf"
	echo "f 644 $udev/60-kvm-dirtybatch.rules"
}

# Installed file -> the tree's file it must be a copy of (the man pages:
# with the library's version for @VERSION@, made into $3).
sources() { # prefix udev-rules-dir man-dir
	local p=$1 m
	echo "$p/include/dirtybatch.h userspace/lib/dirtybatch.h"
	echo "$p/include/linux/kvm_dirtybatch.h include/uapi/linux/kvm_dirtybatch.h"
	for m in userspace/man/*.3; do
		echo "$p/share/man/man3/${m##*/} $3/${m##*/}"
	done
	echo "$p/share/doc/kvm-dirtybatch/examples/modules-load.d/kvm_dirtybatch.conf" \
		"module/modules-load.d/kvm_dirtybatch.conf"
	echo "$2/60-kvm-dirtybatch.rules module/60-kvm-dirtybatch.rules"
}

one_prefix() { # prefix (empty: the Makefile's default) expected-prefix expected-udev-dir
	local arg=$1 p=$2 udev=$3 dest=$tmp/dest-${2//\//_} what v f src bad ex bin
	local -a pfx=()
	[ -n "$arg" ] && pfx=(PREFIX="$arg")
	what="PREFIX=${arg:-<default>}"
	mkdir -p "$dest"

	if ! run "$tmp/install.log" make -s install DESTDIR="$dest" "${pfx[@]}" O="$obj"; then
		not_ok "$what: make install DESTDIR=... succeeds"
		return
	fi
	ok "$what: make install DESTDIR=... succeeds"

	local pcdir=$dest$p/lib/pkgconfig
	v=$(lib_version "$pcdir" 2>/dev/null)
	manifest "$p" "$udev" "${v:-?}" | sort >"$tmp/expected"
	(cd "$dest" && find . -mindepth 1 ! -type d -printf '%y %m /%P %l\n') |
		sed 's/ $//' | sort >"$tmp/got"
	if [ -n "$v" ] && diff -u "$tmp/expected" "$tmp/got" >"$tmp/diff"; then
		ok "$what: installed files match the manifest ($(wc -l <"$tmp/got") files, udev rule in $udev)"
	else
		sed 's/^/#   /' "$tmp/diff"
		not_ok "$what: installed files match the manifest (- expected, + installed)"
	fi

	bad=
	mkdir -p "$tmp/man"
	for f in userspace/man/*.3; do
		sed "s/@VERSION@/$v/g" "$f" >"$tmp/man/${f##*/}"
	done
	while read -r f src; do
		cmp -s "$dest$f" "$src" || bad+=" $f"
	done < <(sources "$p" "$udev" "$tmp/man")
	[ -L "$dest$p/lib/libdirtybatch.so" ] &&
		[ "$(readelf -d "$dest$p/lib/libdirtybatch.so" 2>/dev/null |
			sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')" = "libdirtybatch.so.${v%%.*}" ] ||
		bad+=" soname"
	# The .pc file must name the final paths, not the staging tree.
	grep -rIl -- "$dest" "$dest" >"$tmp/leak" 2>/dev/null && bad+=" $(tr '\n' ' ' <"$tmp/leak")"
	grep -qx "prefix=$p" "$pcdir/dirtybatch.pc" 2>/dev/null || bad+=" dirtybatch.pc:prefix"
	if [ -z "$bad" ]; then
		ok "$what: installed files are the tree's, soname right, no DESTDIR in them"
	else
		not_ok "$what: installed files are the tree's, soname right, no DESTDIR in them:$bad"
	fi

	# Build against the staged install only, as against a real one.
	local -x PKG_CONFIG_SYSROOT_DIR=$dest PKG_CONFIG_LIBDIR=$pcdir PKG_CONFIG_PATH=
	local -x PKG_CONFIG_ALLOW_SYSTEM_CFLAGS=1 PKG_CONFIG_ALLOW_SYSTEM_LIBS=1
	local cflags libs slibs
	cflags=$(pkg-config --cflags dirtybatch) && libs=$(pkg-config --libs dirtybatch) &&
		slibs=$(pkg-config --libs --static dirtybatch)
	echo "# pkg-config --cflags --libs dirtybatch: $(echo "$cflags $libs" | sed "s|$dest|\$DESTDIR|g")"
	# A UAPI user: the kernel interface header comes from the install.
	cat >"$tmp/uapi_user.c" <<-'EOF'
		#include <dirtybatch.h>
		#include <linux/kvm_dirtybatch.h>
		#include <stdio.h>
		int main(void)
		{
			printf("KVM_DIRTYBATCH_ABI_VERSION %d\n", KVM_DIRTYBATCH_ABI_VERSION);
			dirtybatch_close(NULL);
			return 0;
		}
	EOF
	for ex in userspace/examples/*.c "$tmp/uapi_user.c"; do
		bin=$tmp/$(basename "$ex" .c)
		bad=
		# shellcheck disable=SC2086 # pkg-config flags are word lists
		run "$tmp/cc.log" $CC -std=gnu11 -Wall -Wextra -Werror $cflags -MD -MF "$bin.d" \
			-o "$bin" "$ex" $libs -Wl,-rpath,"$dest$p/lib" || bad+=" build"
		grep -q "$dest$p/include/dirtybatch.h" "$bin.d" 2>/dev/null || bad+=" dirtybatch.h-not-the-installed-one"
		case $ex in
		*uapi_user.c)
			grep -q "$dest$p/include/linux/kvm_dirtybatch.h" "$bin.d" 2>/dev/null ||
				bad+=" uapi-header-not-the-installed-one" ;;
		esac
		ldd "$bin" 2>/dev/null | grep -q "=> $dest$p/lib/libdirtybatch.so.${v%%.*} " ||
			bad+=" not-linked-to-the-installed-library"
		run "$tmp/run.log" "$bin" || bad+=" run"
		# shellcheck disable=SC2086
		run "$tmp/cc.log" $CC -std=gnu11 -Wall -Wextra -Werror $cflags -static \
			-o "$bin.static" "$ex" $slibs || bad+=" static-build"
		run "$tmp/run.log" "$bin.static" || bad+=" static-run"
		if [ -z "$bad" ]; then
			ok "$what: $(basename "$ex") builds with pkg-config, shared and static, and runs"
		else
			not_ok "$what: $(basename "$ex") builds with pkg-config and runs:$bad"
		fi
	done

	if ! run "$tmp/uninstall.log" make -s uninstall DESTDIR="$dest" "${pfx[@]}" O="$obj"; then
		not_ok "$what: make uninstall DESTDIR=... succeeds"
		return
	fi
	(cd "$dest" && find . -mindepth 1 ! -type d -printf '/%P\n') >"$tmp/left"
	[ -e "$dest$p/share/doc/kvm-dirtybatch" ] && echo "$p/share/doc/kvm-dirtybatch/" >>"$tmp/left"
	if [ ! -s "$tmp/left" ]; then
		ok "$what: make uninstall leaves only directories"
	else
		sed 's/^/#   left: /' "$tmp/left"
		not_ok "$what: make uninstall leaves only directories"
	fi
}

# debian/: dpkg-buildpackage -b in a copy of the tree (it writes next to
# the tree and into debian/), then what each package holds.
debian_packages() {
	local src=$tmp/deb/kvm-dirtybatch v dv lv p f bad='' d ma sv arch
	v=$(sed -n 's/^PACKAGE_VERSION="\([^"]*\)"$/\1/p' dkms.conf)
	dv=$(dpkg-parsechangelog -l debian/changelog -S Version 2>/dev/null)
	if [ "${dv%%-*}" = "$v" ]; then
		ok "debian/changelog's version $dv is dkms.conf's $v"
	else
		not_ok "debian/changelog's version '$dv' is dkms.conf's '$v'"
	fi
	# the library's version (its soname and .pc) is the package's
	lv=$(for p in MAJOR MINOR PATCH; do
		sed -n "s/^#define DIRTYBATCH_VERSION_${p}[[:space:]]*\([0-9]*\)$/\1/p" \
			userspace/lib/dirtybatch.h
	done | paste -sd.)
	if [ "$lv" = "$v" ]; then
		ok "libdirtybatch's version $lv (dirtybatch.h) is dkms.conf's $v"
	else
		not_ok "libdirtybatch's version '$lv' (dirtybatch.h) is dkms.conf's '$v'"
	fi
	if ! command -v dpkg-buildpackage >/dev/null || ! command -v dh_dkms >/dev/null ||
		! dpkg-checkbuilddeps debian/control >/dev/null 2>&1; then
		ok "Debian packages build # SKIP no dpkg-dev, debhelper or dh-dkms (make deps)"
		return
	fi
	mkdir -p "$src"
	git -c safe.directory="$top" ls-files -z --cached --others --exclude-standard |
		while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
		tar --null -T - -cf - | tar -C "$src" -xf -
	if ! run "$tmp/deb.log" sh -c "cd '$src' && dpkg-buildpackage -us -uc -b"; then
		not_ok "dpkg-buildpackage -us -uc -b builds the Debian packages"
		return
	fi
	ok "dpkg-buildpackage -us -uc -b builds the Debian packages"
	arch=$(dpkg --print-architecture)
	for d in kvm-dirtybatch-dkms_"$v"_all kvm-dirtybatch-native-dkms_"$v"_all \
		libdirtybatch1_"$v"_"$arch" libdirtybatch-dev_"$v"_"$arch"; do
		dpkg-deb -c "$tmp/deb/$d.deb" 2>/dev/null | awk '{print $6}' | sed 's|^\./|/|' \
			>"$tmp/$d.list" || bad+=" $d.deb"
	done
	ma=/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null)
	sv=/usr/src/kvm-dirtybatch-$v
	for f in "$sv/dkms.conf" "$sv/Kbuild" "$sv/module/Kbuild" "$sv/module/device.c" \
		"$sv/include/uapi/linux/kvm_dirtybatch.h" /lib/udev/rules.d/60-kvm-dirtybatch.rules \
		/usr/share/doc/kvm-dirtybatch-dkms/examples/modules-load.d/kvm_dirtybatch.conf; do
		grep -qxF "$f" "$tmp/kvm-dirtybatch-dkms_${v}_all.list" || bad+=" dkms:$f"
	done
	for f in "$ma/libdirtybatch.so.1" "$ma/libdirtybatch.so.$(lib_version "$src/debian/tmp$ma/pkgconfig")"; do
		grep -qxF "$f" "$tmp/libdirtybatch1_${v}_${arch}.list" || bad+=" lib:$f"
	done
	for f in /usr/include/dirtybatch.h /usr/include/linux/kvm_dirtybatch.h "$ma/libdirtybatch.so" \
		"$ma/libdirtybatch.a" "$ma/pkgconfig/dirtybatch.pc" /usr/share/man/man3/libdirtybatch.3.gz; do
		grep -qxF "$f" "$tmp/libdirtybatch-dev_${v}_${arch}.list" || bad+=" dev:$f"
	done
	grep -q '^/usr/src' "$tmp/libdirtybatch1_${v}_${arch}.list" "$tmp/libdirtybatch-dev_${v}_${arch}.list" &&
		bad+=" dkms-sources-in-a-library-package"
	dpkg-deb -f "$tmp/deb/kvm-dirtybatch-dkms_${v}_all.deb" Depends | grep -q dkms || bad+=" dkms:Depends"
	# The patched KVM's package: its dkms.conf, build script, the shared
	# build steps and every series, in its own /usr/src directory.
	nv=/usr/src/kvm-dirtybatch-native-$v
	for f in "$nv/dkms.conf" "$nv/build.sh" "$nv/kvm-build.sh" \
		/usr/share/dkms/modules_to_force_install/kvm-dirtybatch-native $(
		for p in module/native/patches/*/series; do
			sed '/^#/d; /^$/d' "$p" | sed "s|^|${p%/series}/|"
			echo "$p"
		done | sed "s|^module/native/|$nv/|"); do
		grep -qxF "$f" "$tmp/kvm-dirtybatch-native-dkms_${v}_all.list" || bad+=" native:$f"
	done
	dpkg-deb -c "$tmp/deb/kvm-dirtybatch-native-dkms_${v}_all.deb" |
		grep -q "^-rwxr-xr-x .* \.$nv/build.sh$" || bad+=" native:build.sh-not-executable"
	dpkg-deb -f "$tmp/deb/kvm-dirtybatch-native-dkms_${v}_all.deb" Depends | grep -q dkms ||
		bad+=" native:Depends"
	grep -q "^$nv" "$tmp/kvm-dirtybatch-dkms_${v}_all.list" && bad+=" native-sources-in-kvm-dirtybatch-dkms"
	grep -q "^$sv" "$tmp/kvm-dirtybatch-native-dkms_${v}_all.list" && bad+=" module-sources-in-native-dkms"
	if [ -z "$bad" ]; then
		ok "kvm-dirtybatch-dkms (sources, dkms.conf, udev rule), kvm-dirtybatch-native-dkms (dkms.conf, build.sh, kvm-build.sh, the series, its modules_to_force_install entry), libdirtybatch1, libdirtybatch-dev hold their files"
	else
		not_ok "the Debian packages hold their files:$bad"
	fi
}

udevdir=$(pkg-config --variable=udevdir udev 2>/dev/null)
one_prefix /usr /usr "${udevdir:-/lib/udev}/rules.d"
one_prefix "" /usr/local /etc/udev/rules.d
if [ -d debian ]; then
	debian_packages
fi

if [ "$in_git" = 0 ]; then
	ok "work tree unchanged # SKIP not a git checkout"
elif [ "$(gitst)" = "$git_before" ]; then
	ok "work tree unchanged by install/build/uninstall (git status)"
else
	diff <(echo "$git_before") <(gitst) | sed 's/^/#   /'
	not_ok "work tree unchanged by install/build/uninstall (git status)"
fi

echo "1..$n"
exit "$failed"
