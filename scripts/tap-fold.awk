# SPDX-License-Identifier: GPL-2.0
#
# Fold the framed output of scripts/run-tests.sh into TAP test points.
# Input: the framed stream (console noise outside frames is ignored).
# Output: lines "RESULT<TAB>ok|fail|skip<TAB>description", plus every line of
# the programs' output indented by four spaces, for the log.
# Variables: prefix (e.g. "guest 6.12/").
function emit(kind, desc) { printf "RESULT\t%s\t%s\n", kind, desc }
{ sub(/\r$/, "") }
/^# ==== begin / { name = $4; inside = 1; results = 0; failed = 0; next }
/^# ==== end / {
	rc = $0; sub(/.*exit=/, "", rc); rc += 0
	if (rc == 124 || rc == 137)
		emit("fail", prefix name ": timed out")
	else if (rc != 0 && rc != 4 && !failed)
		emit("fail", prefix name ": exited with status " rc)
	else if (!results)
		emit(rc == 4 ? "skip" : "ok", prefix name (rc == 4 ? " # SKIP" : ""))
	inside = 0; next
}
!inside { next }
{ print "    " $0 }
/^(not )?ok [0-9]+/ {
	results++
	line = $0
	kind = "ok"
	if (line ~ /^not ok/) kind = "fail"
	sub(/^(not )?ok [0-9]+ *-? */, "", line)
	if (toupper(line) ~ /# *SKIP/) kind = "skip"
	if (kind == "fail") failed = 1
	emit(kind, prefix name ": " line)
}
END { if (inside) emit("fail", prefix name ": output ended early (crash or guest failure)") }
