#!/bin/bash
# Developer helper: regenerate one patch of a series from the working
# tree $QEMU_BUILD/<tree>/src against the pristine copies in
# $QEMU_BUILD/<tree>/orig (see build.sh).
#   mkpatch.sh <tree> <version>/NNNN-name.patch file...
# <tree> is 7.2, 10.0, 10.2 or 10.2-nofix.  Only correct for the last
# patch of a series that touches the files (the diff is against the
# pristine source).  The description (everything before the first
# "--- a/" line) is kept.
set -euo pipefail
QEMU_BUILD=${QEMU_BUILD:-${QEMU_CACHE:-/var/cache/kvm-dirtybatch/qemu}/build}
T=$QEMU_BUILD/$1; shift
out=$1; shift
desc=
[ -e "$out" ] && desc=$(awk '/^(--- a\/|--- \/dev\/null|diff )/ {exit} {print}' "$out")
{
	printf '%s\n' "$desc"
	for f in "$@"; do
		if [ -e "$T/orig/$f" ]; then a=$T/orig/$f; al=a/$f; else a=/dev/null; al=/dev/null; fi
		echo "diff -u $al b/$f"
		diff -u --label "$al" --label "b/$f" "$a" "$T/src/$f" || true
	done
} > "$out.tmp"
mv "$out.tmp" "$out"
echo "$out: $(grep -c '^[-+][^-+]' "$out") changed lines"
