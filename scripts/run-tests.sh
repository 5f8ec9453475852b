#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Run every executable test program in DIR (sorted), each under a timeout,
# framing its TAP output so that scripts/check.sh can fold it into one
# stream:
#   # ==== begin NAME
#   ...program output...
#   # ==== end NAME exit=RC
# Used on the host and, unchanged, inside the test guests.
set -u
dir=${1:?usage: run-tests.sh DIR [TIMEOUT_SECS]}
limit=${2:-${TEST_TIMEOUT:-300}}

[ -d "$dir" ] || { echo "# no test directory $dir"; exit 0; }
for t in "$dir"/*; do
	[ -f "$t" ] && [ -x "$t" ] || continue
	name=$(basename "$t")
	echo "# ==== begin $name"
	timeout --kill-after=10 "$limit" "$t" 2>&1
	rc=$?
	[ "$rc" -eq 124 ] && echo "# $name: timed out after ${limit}s"
	echo "# ==== end $name exit=$rc"
done
exit 0
