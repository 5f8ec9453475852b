#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1 OR MIT
#
# libdirtybatch ABI checks (TAP): the shared library exports exactly the
# functions the header declares with DIRTYBATCH_API, the version script
# lists exactly those, every one has a man page, the soname is right, and
# nothing but dirtybatch_* is exported, every export has a version of the
# map, and the library has no writable state of its own (no .data, .bss
# or TLS objects: contexts share nothing).  Generated into tests/host by the
# Makefile with the paths filled in.
src='@SRC@'
libdir='@LIBDIR@'
so="$libdir/@SOFILE@"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "TAP version 13"
echo "1..8"
n=0 fail=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
notok() { n=$((n + 1)); fail=1; echo "not ok $n - $1"; }
check() { if eval "$2"; then ok "$1"; else notok "$1"; fi; }

for tool in nm readelf objdump; do
	if ! command -v $tool >/dev/null 2>&1; then
		i=0
		while [ $i -lt 8 ]; do
			n=$((n + 1)); i=$((i + 1))
			echo "ok $n - abi check # SKIP $tool not installed"
		done
		exit 4
	fi
done

# functions declared DIRTYBATCH_API in the public header
sed -n 's/^DIRTYBATCH_API[^(]*[ *]\(dirtybatch_[a-z_]*\)(.*/\1/p' "$src/lib/dirtybatch.h" |
	sort >"$tmp/header"
# global names in the version script
sed -n 's/^[[:space:]]*\(dirtybatch_[a-z_]*\);.*/\1/p' "$src/lib/libdirtybatch.map" |
	sort >"$tmp/map"
# defined dynamic symbols of the library (functions and objects)
nm -D --defined-only "$so" | awk '$2 ~ /[TDBRVW]/ {print $3}' |
	sed 's/@.*//' | grep -v '^LIBDIRTYBATCH_' | sort >"$tmp/exported"

check "header declares public functions ($(wc -l <"$tmp/header"))" '[ -s "$tmp/header" ]'
check "exports == header declarations" 'cmp -s "$tmp/header" "$tmp/exported" || { diff "$tmp/header" "$tmp/exported" | sed "s/^/# /"; false; }'
check "version script == header declarations" 'cmp -s "$tmp/header" "$tmp/map" || { diff "$tmp/header" "$tmp/map" | sed "s/^/# /"; false; }'
check "every export has the dirtybatch_ prefix" '! grep -qv "^dirtybatch_" "$tmp/exported"'
missing=
for f in $(cat "$tmp/header"); do
	[ -f "$src/man/$f.3" ] || missing="$missing $f"
done
check "one man page per public function${missing:+ (missing:$missing)}" '[ -z "$missing" ]'
check "soname libdirtybatch.so.1" 'readelf -d "$so" | grep -q "SONAME.*\[libdirtybatch.so.1\]"'
# every export is versioned with one of the map's LIBDIRTYBATCH_1.x nodes
sed -n 's/^\(LIBDIRTYBATCH_1\.[0-9]*\) {.*/\1/p' "$src/lib/libdirtybatch.map" >"$tmp/nodes"
nm -D --defined-only "$so" | awk '$3 ~ /^dirtybatch_/ {print $3}' |
	sed -n 's/^dirtybatch_[a-z_]*@@\(LIBDIRTYBATCH_.*\)$/\1/p' | sort -u >"$tmp/used"
check "symbols versioned LIBDIRTYBATCH_1.x ($(tr '\n' ' ' <"$tmp/used"))" '[ "$(nm -D --defined-only "$so" | grep -c "^[0-9a-f]* T dirtybatch_.*@@LIBDIRTYBATCH_1\.")" -eq "$(wc -l <"$tmp/header")" ] && [ -z "$(comm -23 "$tmp/used" "$(sort "$tmp/nodes" >"$tmp/nodes.s"; echo "$tmp/nodes.s")")" ]'
# writable objects of the library's own (read-only tables are fine)
objdump -t "$libdir/libdirtybatch.a" |
	awk '$3 == "O" && $4 ~ /^\.(data|bss|tdata|tbss)/ && $4 !~ /^\.data\.rel\.ro/ {print $NF}' >"$tmp/state"
check "no writable global state" '[ ! -s "$tmp/state" ] || { sed "s/^/# writable: /" "$tmp/state"; false; }'
exit $fail
