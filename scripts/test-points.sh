# SPDX-License-Identifier: GPL-2.0
#
# Sourced by scripts/check.sh and scripts/check-debug.sh: the TAP test
# points they print, with their counters.  The caller sets logdir (where
# step() writes each command's log), start (date +%s at the beginning)
# and, optionally, log_prefix (prepended to each log file's name).

n=0 passed=0 failed=0 skipped=0
log_prefix=${log_prefix:-}

point() { # kind description
	n=$((n + 1))
	case $1 in
	ok) passed=$((passed + 1)); echo "ok $n - $2" ;;
	skip) skipped=$((skipped + 1)); echo "ok $n - $2" ;;
	*) failed=$((failed + 1)); echo "not ok $n - $2" ;;
	esac
}

progress() { echo "# [$(($(date +%s) - start))s] $*"; }

# Run a command quietly as one test point; its output goes to a log file
# and is shown only on failure.
step() { # description command...
	local desc=$1 log
	shift
	log=$logdir/$log_prefix$(echo "$desc" | tr -c 'A-Za-z0-9.+-' _).log
	if "$@" >"$log" 2>&1; then
		point ok "$desc"
	else
		sed 's/^/#   /' "$log" | tail -n 40
		point fail "$desc (log: $log)"
	fi
}

# Fold framed test output (scripts/run-tests.sh) read on stdin into points.
fold() { # prefix
	local tag kind desc
	while IFS=$'\t' read -r tag kind desc; do
		if [ "$tag" = RESULT ]; then
			point "$kind" "$desc"
		else
			echo "#   ${tag#    }"
		fi
	done < <(awk -v prefix="$1" -f "$top/scripts/tap-fold.awk")
}
