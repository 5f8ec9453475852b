# SPDX-License-Identifier: GPL-2.0
#
# apt helpers of scripts/deps.sh and scripts/qemu-deps.sh, sourced (bash).
# The caller defines log(); nothing here runs when sourced.

need_root() {
	if [ "$(id -u)" -ne 0 ]; then
		log "missing packages ($*) and not root: install them or rerun as root"
		exit 1
	fi
}

# Run apt-get quietly; show its output only when it fails.
apt_quiet() {
	local out rc
	out=$(apt-get "$@" 2>&1) && return 0
	rc=$?
	printf '%s\n' "$out" >&2
	log "apt-get $* failed ($rc)"
	return "$rc"
}

apt_updated=
apt_update() {
	[ -n "$apt_updated" ] && return 0
	log "apt-get update"
	apt_quiet update -qq
	apt_updated=1
}

# Print those of "$@" that are not installed.
missing_pkgs() {
	local p
	for p in "$@"; do
		dpkg-query -W -f='${db:Status-Status}\n' "$p" 2>/dev/null |
			grep -qx installed || echo "$p"
	done
}

apt_install() {
	local miss
	miss=$(missing_pkgs "$@")
	[ -z "$miss" ] && return 0
	# shellcheck disable=SC2086
	need_root $miss
	apt_update
	log "installing:" $miss
	# shellcheck disable=SC2086
	apt_quiet install -y -qq --no-install-recommends $miss
}
