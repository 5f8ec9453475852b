#!/bin/bash
# Developer helper: regenerate one patch of the series from the working
# tree build/qemu-src against the pristine copies in build/qemu-orig.
#   mkpatch.sh patches/NNNN-name.patch file...
# The description (everything before the first "--- a/" line) is kept.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
B=${BUILD_DIR:-$(cd "$HERE/../.." && pwd)/build}
out=$1; shift
desc=
[ -e "$out" ] && desc=$(awk '/^(--- a\/|--- \/dev\/null|diff )/ {exit} {print}' "$out")
{
	printf '%s\n' "$desc"
	for f in "$@"; do
		if [ -e "$B/qemu-orig/$f" ]; then a=$B/qemu-orig/$f; al=a/$f; else a=/dev/null; al=/dev/null; fi
		echo "diff -u $al b/$f"
		diff -u --label "$al" --label "b/$f" "$a" "$B/qemu-src/$f" || true
	done
} > "$out.tmp"
mv "$out.tmp" "$out"
echo "$out: $(grep -c '^[-+][^-+]' "$out") changed lines"
