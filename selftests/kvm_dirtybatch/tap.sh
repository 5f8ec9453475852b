# SPDX-License-Identifier: GPL-2.0
# TAP helpers for the selftests' shell scripts (sourced, not run):
# ok/not_ok DESCRIPTION print a numbered test point; check DESCRIPTION
# COMMAND... prints one from COMMAND's status.  $n counts the points,
# $failed the failures.
n=0 failed=0

ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $*"; }
check() { # description command...
	local d=$1
	shift
	if "$@"; then ok "$d"; else not_ok "$d"; fi
}
