#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# DKMS as a KVM host operator uses it (Documentation/install.md), on
# this machine, for every installed kernel with headers:
#   make dkms-install   copies the module's sources to /usr/src, dkms add,
#                       build and install: checked in the DKMS tree, the build
#                       log, /lib/modules/<k>/updates/dkms (vermagic, depmod);
#   in a guest of each kernel (selftests/runner/vm-run; the guest sees this host's
#   /lib/modules): modprobe kvm_dirtybatch finds the DKMS module, the udev
#   rule gives /dev/kvm_dirtybatch /dev/kvm's owner, group and mode, and the
#   modules-load.d example loads it;
#   make dkms-remove    leaves nothing: no DKMS tree, no sources, no .ko, and
#                       /lib/modules/<k> as it was (depmod's files compared
#                       with a snapshot taken before, their times restored).
# Nothing is loaded on this host.  Idempotent: a run that died halfway is
# cleaned up by the next one (its state is in $state).  Runs are serialized
# with a lock.  Refuses to touch a kvm-dirtybatch installed outside this test.
#
# Environment: O (build dir, for the guest logs), DKMS_GUEST=0 to skip the
# guest part.  Root only (exit 4 = skip otherwise).  TAP; exit 0/1/4.
set -u
cd "$(dirname "$0")/../.." || exit 1
top=$PWD
O=${O:-$top/build}
state=/var/tmp/kvm-dirtybatch-dkms-test
lock=/run/lock/kvm-dirtybatch-dkms-test.lock

n=0 failed=0
ok() { n=$((n + 1)) && echo "ok $n - $*"; }
not_ok() { n=$((n + 1)) failed=1 && echo "not ok $n - $*"; }
finish() { echo "1..$n" && exit "$failed"; }
skip_all() { echo "ok 1 - dkms # SKIP $*" && echo "1..1" && exit 4; }
show() { sed 's/^/#   /' "$@" | tail -n 40; }

echo "TAP version 13"
[ "$(id -u)" -eq 0 ] || skip_all "needs root (writes /usr/src, /var/lib/dkms, /lib/modules)"
if ! command -v dkms >/dev/null; then
	not_ok "dkms is installed (apt-get install dkms; make deps)"
	finish
fi
version=$(sed -n 's/^PACKAGE_VERSION="\([^"]*\)"$/\1/p' dkms.conf)
[ -n "$version" ] || { not_ok "dkms.conf has a PACKAGE_VERSION" && finish; }

# dkms install would modprobe every modalias on this host if configured so.
unset modprobe_on_install
mpi=$(for f in /etc/dkms/framework.conf /etc/dkms/framework.conf.d/*.conf; do
	# shellcheck disable=SC1090 # dkms sources them the same way
	[ -e "$f" ] && . "$f" >/dev/null 2>&1
done; echo "${modprobe_on_install:-}")
[ -z "$mpi" ] || skip_all "modprobe_on_install is set in /etc/dkms: dkms install would load modules here"

exec 9>"$lock"
flock -w 600 9 || { not_ok "another dkms test run holds $lock" && finish; }

# The kernels: every installed one with headers (as make check builds for).
kernels=()
for h in /usr/src/linux-headers-*-amd64; do
	[ -f "$h/Module.symvers" ] || continue
	k=${h#/usr/src/linux-headers-}
	[ -d "/lib/modules/$k" ] && [ -e "/lib/modules/$k/build" ] && kernels+=("$k")
done
[ ${#kernels[@]} -gt 0 ] || { not_ok "installed kernels with headers (make deps)" && finish; }

dkms_versions() {
	dkms status kvm-dirtybatch 2>/dev/null |
		sed -n 's|^kvm-dirtybatch/\([^,:]*\).*|\1|p' | sort -u
}
ours_installed() {
	[ -n "$(dkms_versions)" ] || [ -e /var/lib/dkms/kvm-dirtybatch ] ||
		compgen -G '/usr/src/kvm-dirtybatch-*' >/dev/null ||
		[ -n "$(find /lib/modules -name 'kvm_dirtybatch.ko*' -print -quit 2>/dev/null)" ]
}

# What a finished run must leave of /lib/modules/<k>: the entries outside
# kernel/ (where DKMS never writes) with their types and modes, depmod's
# files (copied, with their times) and the directory's time.
snapshot() { # dir
	local k d
	mkdir -p "$1"
	for k in /lib/modules/*/; do
		k=${k%/}
		d=$1/${k##*/}
		mkdir -p "$d/files"
		(cd "$k" && find . -mindepth 1 -path ./kernel -prune -o -printf '%y %m %P\n') |
			sort >"$d/list"
		cp -p "$k"/modules.* "$d/files/" 2>/dev/null
		touch -r "$k" "$d/time"
	done
}

# Undo everything a run (this one or an interrupted one) did.  Prints what
# differs from the snapshot; returns 1 if anything does.
cleanup() {
	local v k d f rc=0
	for v in $(dkms_versions); do
		dkms remove "kvm-dirtybatch/$v" --all >>"$state/cleanup.log" 2>&1
	done
	rm -rf /var/lib/dkms/kvm-dirtybatch /usr/src/kvm-dirtybatch-*
	# A .ko DKMS failed to take back (should not happen): remove, depmod.
	while read -r f; do
		echo "left by dkms: $f"
		rm -f "$f"
		k=${f#/lib/modules/} k=${k%%/*}
		depmod -a "$k"
		rc=1
	done < <(find /lib/modules -name 'kvm_dirtybatch.ko*' 2>/dev/null)
	[ -d "$state/snap" ] || return "$rc"
	for d in "$state"/snap/*/; do
		d=${d%/} k=/lib/modules/${d##*/}
		[ -d "$k" ] || continue
		# Directories DKMS created (updates/dkms) and left empty, deepest
		# first: the parent is empty only once its child is gone.
		for _ in 1 2 3; do
			find "$k" -mindepth 1 -path "$k/kernel" -prune -o -type d -empty -printf '%P\n' |
				while read -r f; do
					awk -v p="$f" '$1 == "d" && $3 == p {found = 1} END {exit !found}' \
						"$d/list" || rmdir "$k/$f"
				done
		done
		if ! diff <(cd "$k" && find . -mindepth 1 -path ./kernel -prune -o -printf '%y %m %P\n' | sort) \
			"$d/list" >"$state/diff"; then
			echo "$k differs from before the test (> before, < after):"
			cat "$state/diff"
			rc=1
			continue
		fi
		for f in "$d"/files/*; do
			[ -e "$f" ] || continue
			if cmp -s "$f" "$k/${f##*/}"; then
				touch -r "$f" "$k/${f##*/}"
			else
				echo "$k/${f##*/} differs from before the test"
				rc=1
			fi
		done
		touch -r "$d/time" "$k"
	done
	return "$rc"
}

if [ -d "$state" ]; then
	if cleanup >"$state/out" 2>&1; then
		ok "an interrupted run's leftovers (from $state) are cleaned up"
	else
		show "$state/out"
		not_ok "an interrupted run's leftovers (from $state) are cleaned up"
	fi
	rm -rf "$state"
elif ours_installed; then
	dkms status kvm-dirtybatch | sed 's/^/# /'
	skip_all "kvm-dirtybatch is installed through DKMS on this host: not touching it"
fi

if ! { mkdir -p "$state" && snapshot "$state/snap.tmp" && mv "$state/snap.tmp" "$state/snap"; }; then
	not_ok "snapshot of /lib/modules in $state"
	finish
fi
trap 'cleanup >/dev/null 2>&1; rm -rf "$state"; exit 130' INT TERM HUP
# A key of our own: dkms would otherwise create /var/lib/dkms/mok.key.
export mok_signing_key=$state/mok.key mok_certificate=$state/mok.pub

log=$state/dkms-install.log
if make -s dkms-install DKMS_KERNELS="${kernels[*]}" >"$log" 2>&1; then
	ok "make dkms-install DKMS_KERNELS=\"${kernels[*]}\" (dkms add, build, install)"
else
	show "$log"
	not_ok "make dkms-install DKMS_KERNELS=\"${kernels[*]}\" (dkms add, build, install)"
fi

# dkms add: the sources are the module's, and only them.
src=/usr/src/kvm-dirtybatch-$version
bad=
[ "$(readlink -f "/var/lib/dkms/kvm-dirtybatch/$version/source")" = "$src" ] || bad+=" source-link"
while read -r f; do
	case $f in
	dkms.conf | Kbuild | module/Kbuild | module/*.[ch] | include/uapi/linux/kvm_dirtybatch.h)
		cmp -s "$src/$f" "$f" || bad+=" $f(differs)" ;;
	*) bad+=" $f(extra)" ;;
	esac
done < <(cd "$src" 2>/dev/null && find . -type f -printf '%P\n')
for f in dkms.conf Kbuild module/Kbuild module/*.[ch] include/uapi/linux/kvm_dirtybatch.h; do
	[ -f "$src/$f" ] || bad+=" $f(missing)"
done
if [ -z "$bad" ]; then
	ok "dkms add: $src holds the module's sources and dkms.conf, nothing else"
else
	not_ok "dkms add: $src holds the module's sources and dkms.conf, nothing else:$bad"
fi

for k in "${kernels[@]}"; do
	st=$(dkms status "kvm-dirtybatch/$version" -k "$k" 2>/dev/null)
	mlog=/var/lib/dkms/kvm-dirtybatch/$version/$k/x86_64/log/make.log
	if [ -f "$mlog" ] && ! grep -E 'warning:|error:' "$mlog" >"$state/warn"; then
		ok "dkms build for $k: no warning"
	else
		show "$state/warn"
		not_ok "dkms build for $k: no warning ($mlog)"
	fi
	ko=$(find "/lib/modules/$k/updates/dkms" -name 'kvm_dirtybatch.ko*' 2>/dev/null | head -n1)
	vm=$(modinfo -F vermagic "$ko" 2>/dev/null | awk '{print $1}')
	dep=$(modinfo -k "$k" -F filename kvm_dirtybatch 2>/dev/null)
	if [[ $st == *": installed"* ]] && [ -n "$ko" ] && [ "$vm" = "$k" ] && [ "$dep" = "$ko" ]; then
		ok "dkms install for $k: ${ko#/lib/modules/"$k"/}, vermagic $vm, found by modprobe (depmod)"
	else
		not_ok "dkms install for $k: status '$st', module '${ko:-none}', vermagic '$vm', modinfo -k finds '$dep'"
	fi
done

# In a guest of each kernel: the module as DKMS installed it, the udev rule,
# the modules-load.d example.  vng's udevd runs with --resolve-names=never
# (no groups): restart it as a host runs it.
# shellcheck disable=SC2016 # expanded in the guest
guest_cmd='
set -u
fail() { echo "guest: $*"; exit 1; }
modprobe kvm_dirtybatch || fail "modprobe kvm_dirtybatch failed"
f=$(modinfo -F filename kvm_dirtybatch)
case $f in /lib/modules/$(uname -r)/updates/dkms/kvm_dirtybatch.ko*) ;; *) fail "modprobe used $f" ;; esac
[ -c /dev/kvm_dirtybatch ] || fail "no /dev/kvm_dirtybatch"
mkdir -p /run/udev/rules.d && cp module/60-kvm-dirtybatch.rules /run/udev/rules.d/ || fail "cp rule"
udevadm control --exit 2>/dev/null
/lib/systemd/systemd-udevd --daemon || fail "systemd-udevd"
udevadm trigger --action=add --settle /sys/class/misc/kvm /sys/class/misc/kvm_dirtybatch
a=$(stat -c "%U:%G %a" /dev/kvm) b=$(stat -c "%U:%G %a" /dev/kvm_dirtybatch)
echo "guest: /dev/kvm $a, /dev/kvm_dirtybatch $b"
[ "$a" = "$b" ] && [ "$a" = "root:kvm 660" ] || fail "udev: owner/group/mode differ from /dev/kvm"
rmmod kvm_dirtybatch || fail "rmmod"
/lib/systemd/systemd-modules-load "$PWD/module/modules-load.d/kvm_dirtybatch.conf" ||
	fail "systemd-modules-load"
[ -d /sys/module/kvm_dirtybatch ] || fail "modules-load.d example did not load it"
echo "guest: ok"
'
if [ "${DKMS_GUEST:-1}" = 0 ]; then
	ok "guest: modprobe of the DKMS module, udev rule, modules-load.d # SKIP DKMS_GUEST=0"
else
	mkdir -p "$O/logs"
	for k in "${kernels[@]}"; do
		glog=$O/logs/dkms-guest-$k.log
		if selftests/runner/vm-run --kernel "$k" --log "$glog" --timeout 300 -- "$guest_cmd" \
			>"$state/guest.out" 2>&1; then
			ok "guest $k: modprobe finds the DKMS module; /dev/kvm_dirtybatch root:kvm 0660 like /dev/kvm; modules-load.d loads it"
		else
			grep -E '^(guest|vm-run)' "$state/guest.out" | show
			not_ok "guest $k: DKMS module, udev rule, modules-load.d (log: $glog)"
		fi
	done
fi

log=$state/dkms-remove.log
if make -s dkms-remove >"$log" 2>&1; then
	ok "make dkms-remove (dkms remove --all, sources deleted)"
else
	show "$log"
	not_ok "make dkms-remove (dkms remove --all, sources deleted)"
fi
left=$( {
	[ -e /var/lib/dkms/kvm-dirtybatch ] && echo /var/lib/dkms/kvm-dirtybatch
	compgen -G '/usr/src/kvm-dirtybatch-*'
	find /lib/modules -name 'kvm_dirtybatch.ko*' 2>/dev/null
	for k in "${kernels[@]}"; do
		modinfo -k "$k" -F filename kvm_dirtybatch 2>/dev/null
	done
	dkms_versions
} | tr '\n' ' ')
if [ -z "$left" ]; then
	ok "after dkms remove: no DKMS tree, no sources, no kvm_dirtybatch.ko, unknown to modprobe"
else
	not_ok "after dkms remove, left: $left"
fi

trap - INT TERM HUP
if cleanup >"$state/out" 2>&1; then
	ok "/lib/modules is as before the test (entries, depmod files, times)"
	rm -rf "$state"
else
	show "$state/out"
	not_ok "/lib/modules is as before the test (state kept in $state)"
	# Keep the snapshot for the next run only if something is left to undo.
	ours_installed || rm -rf "$state"
fi
finish
