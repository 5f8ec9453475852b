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
#
# dkms.sh native (what dkms-native.sh runs): the same for
# kvm-dirtybatch-native, KVM's own modules with the series
# (module/native/dkms/), through make dkms-native-install/-remove:
# updates/dkms holds kvm, kvm-amd and kvm-intel with the stock kvm.ko's
# vermagic, and modinfo -k resolves kvm there instead of kernel/; a guest's
# modprobe loads them (the series' kvm_vm_ioctl_clear_dirty_log_batch in
# /proc/kallsyms, /sys/module/kvm/srcversion the DKMS kvm.ko's); after
# removal modinfo resolves Debian's kernel/ modules again; and a kernel whose
# exact linux-source is absent (KVM_DIRTYBATCH_NATIVE_DEBS pointed at an
# empty directory) is refused with the apt-get command that fetches it.
# While installed, any guest this host boots would load them: the
# builds come first (they do not touch /lib/modules), the install window
# is the checks and one guest per kernel.
#
# Nothing is loaded on this host.  Idempotent: a run that died halfway is
# cleaned up by the next one (its state is in $state).  Runs of both
# packages are serialized with one lock.  Refuses to touch a package
# installed outside this test.
#
# Environment: O (build dir, for the guest logs), DKMS_GUEST=0 to skip the
# guest part.  Root only (exit 4 = skip otherwise).  TAP; exit 0/1/4.
set -u
cd "$(dirname "$0")/../.." || exit 1
top=$PWD
O=${O:-$top/build}
lock=/run/lock/kvm-dirtybatch-dkms-test.lock
case ${1:-shim} in
shim)
	pkg=kvm-dirtybatch target=dkms conf=dkms.conf
	mods=(kvm_dirtybatch) ko_path='*' stock_what="no kvm_dirtybatch" force=''
	state=/var/tmp/kvm-dirtybatch-dkms-test ;;
native)
	pkg=kvm-dirtybatch-native target=dkms-native conf=module/native/dkms/dkms.conf
	mods=(kvm kvm-amd kvm-intel) ko_path='/lib/modules/*/updates/*'
	stock_what="Debian's kvm, kvm_amd, kvm_intel (kernel/) again"
	# What lets dkms install put them ahead of the kernel's (Makefile).
	force=/usr/share/dkms/modules_to_force_install/$pkg
	state=/var/tmp/kvm-dirtybatch-native-dkms-test ;;
*) echo "usage: dkms.sh [shim|native]" >&2 && exit 1 ;;
esac

n=0 failed=0
ok() { n=$((n + 1)) && echo "ok $n - $*"; }
not_ok() { n=$((n + 1)) failed=1 && echo "not ok $n - $*"; }
finish() { echo "1..$n" && exit "$failed"; }
skip_all() { echo "ok 1 - $target # SKIP $*" && echo "1..1" && exit 4; }
show() { sed 's/^/#   /' "$@" | tail -n 40; }

echo "TAP version 13"
[ "$(id -u)" -eq 0 ] || skip_all "needs root (writes /usr/src, /var/lib/dkms, /lib/modules)"
if ! command -v dkms >/dev/null; then
	not_ok "dkms is installed (apt-get install dkms; make deps)"
	finish
fi
conf_version() { sed -n 's/^PACKAGE_VERSION="\([^"]*\)"$/\1/p' "$1"; }
version=$(conf_version "$conf")
[ -n "$version" ] || { not_ok "$conf has a PACKAGE_VERSION" && finish; }
[ "$version" = "$(conf_version dkms.conf)" ] ||
	{ not_ok "$conf's PACKAGE_VERSION $version is dkms.conf's" && finish; }

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
for k in /lib/modules/*/; do
	k=${k%/} k=${k##*/}
	case " ${kernels[*]} " in *" $k "*) continue ;; esac
	[ -d "/lib/modules/$k/kernel" ] || continue
	ok "$k # SKIP no linux-headers-$k on this host (a 7.x kernel's are in the trixie root only): DKMS builds against /lib/modules/$k/build"
done

dkms_versions() {
	dkms status "$pkg" 2>/dev/null |
		sed -n "s|^$pkg/\\([^,:]*\\).*|\\1|p" | sort -u
}
# The package's modules in /lib/modules (for native: not Debian's, in kernel/).
ours_kos() {
	local m names=()
	for m in "${mods[@]}"; do
		names+=(${names[0]+-o} -name "$m.ko*")
	done
	find /lib/modules -path "$ko_path" \( "${names[@]}" \) "$@" 2>/dev/null
}
ours_installed() {
	[ -n "$(dkms_versions)" ] || [ -e "/var/lib/dkms/$pkg" ] ||
		compgen -G "/usr/src/$pkg-[0-9]*" >/dev/null ||
		{ [ -n "$force" ] && [ -e "$force" ]; } ||
		[ -n "$(ours_kos -print -quit)" ]
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
		dkms remove "$pkg/$v" --all >>"$state/cleanup.log" 2>&1
	done
	rm -rf "/var/lib/dkms/$pkg" "/usr/src/$pkg"-[0-9]*
	if [ -n "$force" ] && [ -e "$force" ]; then
		rm -f "$force"
		rmdir -p --ignore-fail-on-non-empty "${force%/*}"
	fi
	# A .ko DKMS failed to take back (should not happen): remove, depmod.
	while read -r f; do
		echo "left by dkms: $f"
		rm -f "$f"
		k=${f#/lib/modules/} k=${k%%/*}
		depmod -a "$k"
		rc=1
	done < <(ours_kos)
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
	dkms status "$pkg" | sed 's/^/# /'
	skip_all "$pkg is installed through DKMS on this host: not touching it"
fi

if ! { mkdir -p "$state" && snapshot "$state/snap.tmp" && mv "$state/snap.tmp" "$state/snap"; }; then
	not_ok "snapshot of /lib/modules in $state"
	finish
fi
trap 'cleanup >/dev/null 2>&1; rm -rf "$state"; exit 130' INT TERM HUP
# A key of our own: dkms would otherwise create /var/lib/dkms/mok.key.
export mok_signing_key=$state/mok.key mok_certificate=$state/mok.pub

log=$state/$target-install.log
if make -s "$target-install" DKMS_KERNELS="${kernels[*]}" >"$log" 2>&1; then
	ok "make $target-install DKMS_KERNELS=\"${kernels[*]}\" (dkms add, build, install)"
else
	show "$log"
	not_ok "make $target-install DKMS_KERNELS=\"${kernels[*]}\" (dkms add, build, install)"
fi

# The files dkms add must find in /usr/src: "path-there path-in-the-tree".
expected_sources() {
	local f s p
	if [ "$pkg" = kvm-dirtybatch ]; then
		for f in dkms.conf Kbuild module/Kbuild module/*.[ch] include/uapi/linux/kvm_dirtybatch.h; do
			echo "$f $f"
		done
		return
	fi
	echo "dkms.conf $conf"
	echo "build.sh module/native/dkms/build.sh"
	echo "kvm-build.sh module/native/kvm-build.sh"
	for s in module/native/patches/*/series; do
		for p in series $(sed '/^#/d; /^$/d' "$s"); do
			f=${s%/series}/$p
			echo "${f#module/native/} $f"
		done
	done
}

# dkms add: the sources are the package's, and only them.
src=/usr/src/$pkg-$version
bad=
[ "$(readlink -f "/var/lib/dkms/$pkg/$version/source")" = "$src" ] || bad+=" source-link"
expected_sources >"$state/sources"
while read -r f; do
	t=$(awk -v f="$f" '$1 == f {print $2}' "$state/sources")
	if [ -z "$t" ]; then
		bad+=" $f(extra)"
	else
		cmp -s "$src/$f" "$t" || bad+=" $f(differs)"
	fi
done < <(cd "$src" 2>/dev/null && find . -type f -printf '%P\n')
while read -r f t; do
	[ -f "$src/$f" ] || bad+=" $f(missing)"
done <"$state/sources"
if [ -n "$force" ] && [ "$(cat "$force" 2>/dev/null)" != "${pkg}_version-override" ]; then
	bad+=" $force(not '${pkg}_version-override')"
fi
if [ -z "$bad" ]; then
	ok "dkms add: $src holds the package's sources and dkms.conf, nothing else${force:+; $force lets it override the kernel modules}"
else
	not_ok "dkms add: $src holds the package's sources and dkms.conf, nothing else:$bad"
fi

for k in "${kernels[@]}"; do
	st=$(dkms status "$pkg/$version" -k "$k" 2>/dev/null)
	mlog=/var/lib/dkms/$pkg/$version/$k/x86_64/log/make.log
	if [ -f "$mlog" ] && ! grep -E 'warning:|error:' "$mlog" >"$state/warn"; then
		ok "dkms build for $k: no warning"
	else
		show "$state/warn"
		not_ok "dkms build for $k: no warning ($mlog)"
	fi
	# Each module in updates/dkms, with the stock kvm.ko's vermagic, and
	# the one modprobe resolves (depmod: updates/ before kernel/).
	stock=$(find "/lib/modules/$k/kernel/arch/x86/kvm" -name 'kvm.ko*' | head -n1)
	want=$(modinfo -F vermagic "$stock" 2>/dev/null)
	bad='' found=''
	for m in "${mods[@]}"; do
		ko=$(find "/lib/modules/$k/updates/dkms" -name "$m.ko*" 2>/dev/null | head -n1)
		vm=$(modinfo -F vermagic "$ko" 2>/dev/null)
		dep=$(modinfo -k "$k" -F filename "${m//-/_}" 2>/dev/null)
		found+=" ${ko#/lib/modules/"$k"/}"
		[ -n "$ko" ] && [ "$vm" = "$want" ] && [ "$dep" = "$ko" ] ||
			bad+=" $m: module '${ko:-none}', vermagic '$vm', modinfo -k finds '$dep';"
	done
	if [[ $st == *": installed"* ]] && [ -n "$want" ] && [ -z "$bad" ]; then
		ok "dkms install for $k:$found, vermagic '$want' as the stock kvm.ko's, found first by modprobe (depmod)"
	else
		not_ok "dkms install for $k: status '$st', stock vermagic '$want';$bad"
	fi
done

# In a guest of each kernel (shim): the module as DKMS installed it, the
# udev rule, the modules-load.d example.  vng's udevd runs with --resolve-names=never
# (no groups): restart it as a host runs it.
# shellcheck disable=SC2016 # expanded in the guest
shim_guest='
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
# Native: vm-run's own modprobe kvm_amd (or kvm_intel) loaded the DKMS
# KVM: each module resolves to updates/dkms, and kvm carries the series'
# ioctl handler.
# shellcheck disable=SC2016 # expanded in the guest
native_guest='
set -u
fail() { echo "guest: $*"; exit 1; }
for m in kvm kvm_amd kvm_intel; do
	f=$(modinfo -F filename $m)
	case $f in /lib/modules/$(uname -r)/updates/dkms/*) ;; *) fail "$m is $f" ;; esac
done
[ -d /sys/module/kvm ] || fail "kvm is not loaded"
v=$(ls -d /sys/module/kvm_amd /sys/module/kvm_intel 2>/dev/null)
[ -n "$v" ] || fail "neither kvm_amd nor kvm_intel is loaded"
grep -qw kvm_vm_ioctl_clear_dirty_log_batch /proc/kallsyms ||
	fail "the loaded kvm has no kvm_vm_ioctl_clear_dirty_log_batch (stock KVM)"
echo "guest: ok, kvm and ${v##*/} from updates/dkms, with the batch ioctl"
'
if [ "$pkg" = kvm-dirtybatch ]; then
	guest_cmd=$shim_guest
	guest_ok="modprobe finds the DKMS module; /dev/kvm_dirtybatch root:kvm 0660 like /dev/kvm; modules-load.d loads it"
else
	guest_cmd=$native_guest
	guest_ok="modprobe loaded the DKMS kvm and kvm_amd/kvm_intel (updates/dkms), with kvm_vm_ioctl_clear_dirty_log_batch"
fi
if [ "${DKMS_GUEST:-1}" = 0 ]; then
	ok "guest: $guest_ok # SKIP DKMS_GUEST=0"
else
	mkdir -p "$O/logs"
	for k in "${kernels[@]}"; do
		glog=$O/logs/$target-guest-$k.log
		if selftests/runner/vm-run --kernel "$k" --log "$glog" --timeout 300 -- "$guest_cmd" \
			>"$state/guest.out" 2>&1; then
			ok "guest $k: $guest_ok"
		else
			grep -E '^(guest|vm-run)' "$state/guest.out" | show
			not_ok "guest $k: $guest_ok (log: $glog)"
		fi
	done
fi

log=$state/$target-remove.log
if make -s "$target-remove" >"$log" 2>&1; then
	ok "make $target-remove (dkms remove --all, sources deleted)"
else
	show "$log"
	not_ok "make $target-remove (dkms remove --all, sources deleted)"
fi
# Left over: the DKMS tree, sources, modules; modprobe resolving a module
# anywhere but Debian's kernel/ (native: it must resolve there again).
left=$( {
	[ -e "/var/lib/dkms/$pkg" ] && echo "/var/lib/dkms/$pkg"
	compgen -G "/usr/src/$pkg-[0-9]*"
	[ -n "$force" ] && [ -e "$force" ] && echo "$force"
	ours_kos
	for k in "${kernels[@]}"; do
		for m in "${mods[@]}"; do
			f=$(modinfo -k "$k" -F filename "${m//-/_}" 2>/dev/null)
			case $f in
			"/lib/modules/$k/kernel/"*) ;;
			"") [ "$pkg" = kvm-dirtybatch ] || echo "$k:$m(not found)" ;;
			*) echo "$k:$m($f)" ;;
			esac
		done
	done
	dkms_versions
} | tr '\n' ' ')
if [ -z "$left" ]; then
	ok "after dkms remove: no DKMS tree, no sources, no ${mods[*]} in updates; modprobe finds $stock_what"
else
	not_ok "after dkms remove, left: $left"
fi

# Native: a kernel whose exact linux-source is neither installed nor in
# the .deb directory (here: an empty one) is refused, with the command that
# fetches it, and nothing is installed.
refusal() {
	local k img series have rk='' log=$state/refusal.log dir=$state/no-debs
	for k in "${kernels[@]}"; do
		img=$(image_version "$k") series=$(version_series "$img")
		have=$(pkg_version "" "linux-source-$series")
		[ "$have" = "$img" ] || { rk=$k && break; }
	done
	if [ -z "$rk" ]; then
		ok "refusal # SKIP every kernel's linux-source-<series> is installed at its exact version"
		return
	fi
	k=$rk
	mkdir -p "$dir"
	KVM_DIRTYBATCH_NATIVE_DEBS=$dir make -s dkms-native-install DKMS_KERNELS="$k" >"$log" 2>&1
	local rc=$? want="refusing: linux-image-$k is $img" cmd="apt-get download linux-source-$series=$img"
	grep -F -e "$want" -e "Bad return status" -e "make.log" "$log" | show
	if [ "$rc" -ne 0 ] && grep -qF "$want" "$log" && grep -qF "$cmd" "$log" &&
		[ -z "$(ours_kos -print -quit)" ]; then
		ok "$k, linux-source-$series ${have:-none} installed, no .deb: dkms build refuses, naming $img and '$cmd'; nothing installed"
	else
		show "$log"
		not_ok "$k without its exact linux-source: refused with the apt-get command (make rc $rc)"
	fi
	if make -s dkms-native-remove >"$log" 2>&1 && ! ours_installed; then
		ok "make dkms-native-remove after the refusal leaves nothing"
	else
		show "$log"
		not_ok "make dkms-native-remove after the refusal leaves nothing"
	fi
}
if [ "$pkg" = kvm-dirtybatch-native ]; then
	# shellcheck source=module/native/kvm-build.sh
	. module/native/kvm-build.sh
	refusal
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
