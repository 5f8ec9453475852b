#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# native-guest-tests.sh [RELEASE|SERIES...]: prove the patched KVM modules
# in guests.  Per kernel (default: 6.1 6.12 7.3, the newest installed of
# each): build the modules (scripts/kvm-modules.sh), build the upstream KVM
# selftests from the same Debian source with the same series applied, then
# boot the kernel (selftests/runner/vm-run), replace Debian's kvm/kvm-amd there by
# the patched ones and run the tests (selftests/native/guest-patched-kvm.sh).
#
# The selftests are built once per Debian version, cached under
# $KVM_MODULES_CACHE/kvm-selftests/<version>/ (default /var/cache/
# kvm-dirtybatch): the whole source tree, the series applied, its UAPI
# headers installed, the test programs in bin/.  Environment:
# DIRTY_LOG_ITERATIONS (dirty_log_test -i, default 8), EXTRA_TESTS (more
# upstream tests, see guest-patched-kvm.sh), VM_TIMEOUT (default 1200 s).
# Exit: 0 every kernel passed, 1 otherwise.  Needs root.
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
log() { echo "native-guest-tests: $*" >&2; }
die() { log "$*"; exit 1; }

TESTS=(clear_dirty_log_batch_test dirty_log_test dirty_log_perf_test
       set_memory_region_test memslot_modification_stress_test
       kvm_page_table_test)

# headers_version RELEASE: the Debian version of its headers (host or root).
headers_version() {
	local admin=
	[ -d "/usr/src/linux-headers-$1" ] || admin=$TRIXIE_ROOT
	dpkg-query --admindir="$admin/var/lib/dpkg" -W -f '${Version}' \
		"linux-headers-$1" 2>/dev/null || true
}

# selftests RELEASE: build (once) and print the directory of the programs.
selftests() {
	local rel=$1 ver series deb dir src p
	ver=$(headers_version "$rel")
	[ -n "$ver" ] || die "$rel: no headers package"
	series=${ver%%.*}.$(echo "$ver" | cut -d. -f2)
	dir=$cache/kvm-selftests/$ver
	# Rebuilt when the series changes: .complete holds the series' hash.
	local stamp
	stamp=$(cd "$top/module/native/patches/$series" && sed '/^#/d; /^$/d' series |
		xargs cat series | sha256sum | cut -c1-16)
	if [ "$(cat "$dir/.complete" 2>/dev/null)" != "$stamp" ]; then
		deb=$(ls "$cache"/debs/linux-source-"$series"_*_all.deb 2>/dev/null |
			while read -r f; do
				[ "$(dpkg-deb -f "$f" Version)" = "$ver" ] && echo "$f"
			done | head -n1) || true
		[ -n "$deb" ] || die "$rel: no linux-source-$series $ver in $cache/debs (run scripts/kvm-modules.sh $rel)"
		log "$rel: unpacking linux-source-$series $ver for the selftests"
		rm -rf "$dir"
		mkdir -p "$dir/linux" "$dir/bin"
		dpkg-deb --fsys-tarfile "$deb" |
			tar -xO "./usr/src/linux-source-$series.tar.xz" |
			nice xz -dc | tar -x -C "$dir/linux" --strip-components=1
		src=$dir/linux
		while read -r p; do
			case $p in ''|'#'*) continue ;; esac
			(cd "$src" && GIT_CEILING_DIRECTORIES=$dir git apply -p1 \
				"$top/module/native/patches/$series/$p") ||
				die "$p does not apply to linux-source-$series $ver"
		done <"$top/module/native/patches/$series/series"
		nice make -s -C "$src" headers_install >&2
		# Debian's 6.1 dirty_log_test uses TEST_ASSERT_EQ, which its
		# test_util.h does not define yet (a stable backport).
		local extra=
		grep -q 'define TEST_ASSERT_EQ' "$src/tools/testing/selftests/kvm/include/test_util.h" ||
			extra='-D"TEST_ASSERT_EQ(a,b)=TEST_ASSERT((a) == (b), #a \" == \" #b)"'
		nice make -s -j2 -C "$src/tools/testing/selftests/kvm" \
			OUTPUT="$dir/obj" EXTRA_CFLAGS="$extra" \
			"${TESTS[@]/#/$dir/obj/}" >&2
		for p in "${TESTS[@]}"; do
			cp "$dir/obj/$p" "$dir/bin/"
		done
		cp -a "$src/usr/include" "$dir/include"
		rm -rf "$src" "$dir/obj"
		echo "$stamp" >"$dir/.complete"
	fi
	echo "$dir/bin"
}

# uapi_layout RELEASE INCLUDE: the project's kvm_clear_dirty_log_batch.h
# (on stock headers) and the patched kernel's headers (INCLUDE) must give
# the same numbers and layout (selftests/native/uapi_layout.c).
uapi_layout() {
	local d=$O/native-selftests/uapi-$1
	mkdir -p "$d/linux"
	cp include/uapi/linux/kvm_clear_dirty_log_batch.h "$d/linux/"
	cc -Wall -Wextra -Werror -Iinclude/uapi -o "$d/project" \
		selftests/native/uapi_layout.c
	cc -Wall -Wextra -Werror -I"$2" -I"$d" -o "$d/kernel" \
		selftests/native/uapi_layout.c
	"$d/project" >"$d/project.txt"
	"$d/kernel" >"$d/kernel.txt"
	diff -u "$d/project.txt" "$d/kernel.txt" >&2 ||
		die "$1: include/uapi/linux/kvm_clear_dirty_log_batch.h differs from the series"
	log "$1: kvm_clear_dirty_log_batch.h matches the series' <linux/kvm.h>"
}

[ "$(id -u)" -eq 0 ] || die "needs root (source packages, the trixie root, guests)"
[ $# -gt 0 ] || set -- 6.1 6.12 7.3
mkdir -p "$O/logs"
fail=0
for k; do
	rel=$(newest_release "$k")
	[ -n "$rel" ] || { log "$k: no such kernel installed, skipped"; continue; }
	t0=$SECONDS
	scripts/kvm-modules.sh "$rel" >&2
	t1=$SECONDS
	cached=$(selftests "$rel") || exit 1
	# vng guests see a tmpfs on /var/cache: the programs go to $O.
	bin=$O/native-selftests/$rel
	rm -rf "$bin" && mkdir -p "$bin" && cp -a "$cached"/. "$bin"/
	uapi_layout "$rel" "$cached/../include"
	# KVM's compat ioctl path: the same calls from a 32-bit process.
	cc -m32 -Wall -Wextra -Werror -Iinclude/uapi -Iselftests/lib -o "$bin/compat32_test" \
		selftests/native/compat32_test.c ||
		log "$rel: no 32-bit toolchain (gcc-multilib): compat32_test not built"
	# the project's kselftests against the native ioctl, where built
	project=
	[ -f "$O/module/$rel/kvm_dirtybatch.ko" ] && [ -x "$O/tests/guest/differential_test" ] &&
		project=$O/module/$rel/kvm_dirtybatch.ko
	[ -n "$project" ] || log "$rel: no built module and guest tests: the project's tests not run"
	t2=$SECONDS
	log "$rel: modules $((t1 - t0))s, selftests $((t2 - t1))s"
	if selftests/runner/vm-run --kernel "$rel" --timeout "${VM_TIMEOUT:-1200}" \
		--log "$O/logs/native-$rel.log" -- \
		env DIRTY_LOG_ITERATIONS="${DIRTY_LOG_ITERATIONS:-8}" \
		${project:+PROJECT_TESTS="$O/tests/guest" SHIM_KO="$project"} \
		${EXTRA_TESTS+EXTRA_TESTS="$EXTRA_TESTS"} \
		bash "$top/selftests/native/guest-patched-kvm.sh" \
		"$O/kvm-modules/$rel" "$bin"; then
		log "$rel: PASS (guest $((SECONDS - t2))s)"
	else
		log "$rel: FAIL (guest $((SECONDS - t2))s, log $O/logs/native-$rel.log)"
		fail=1
	fi
done
exit "$fail"
