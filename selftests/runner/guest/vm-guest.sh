#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-guest.sh SHARE: the inside-guest half of selftests/runner/vm-run, run as root in
# the guest (either backend) with the host's root filesystem mounted as /.
#
# SHARE is a directory shared read-write with the host.  The host puts there:
#   cwd     directory to run the command in
#   cmd     the command, a shell string run with sh -c
#   module  (optional) path of a .ko to insmod after kvm_amd/kvm_intel
# and this script leaves there, as it goes:
#   started  (empty) the guest booted and this script runs
#   setup    0, or 126 when KVM / module setup failed
#   rc       the command's exit status
#   tainted  /proc/sys/kernel/tainted after the command
#   dmesg    the kernel log after the command
# Everything printed here (and by the command, stderr merged into stdout)
# goes to the host runner's stdout.

share=${1:?usage: vm-guest.sh SHARE}
exec </dev/null 2>&1
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
: >"$share/started"

say() { echo "vm-run(guest): $*"; }

setup_fail() {
	say "$*"
	dmesg | tail -n 20 | sed 's/^/vm-run(guest): dmesg: /'
	cat /proc/sys/kernel/tainted >"$share/tainted" 2>/dev/null
	dmesg >"$share/dmesg" 2>/dev/null
	echo 126 >"$share/setup"
	exit 126
}

# KVM: the vendor module first, the other one as a fallback.
case $(awk '/^vendor_id/ {print $3; exit}' /proc/cpuinfo) in
AuthenticAMD | HygonGenuine) kvm_mods="kvm_amd kvm_intel" ;;
*) kvm_mods="kvm_intel kvm_amd" ;;
esac
kvm_mod=
for m in $kvm_mods; do
	if modprobe "$m" 2>"$share/modprobe.err"; then
		kvm_mod=$m
		break
	fi
done
[ -n "$kvm_mod" ] ||
	setup_fail "modprobe kvm_amd/kvm_intel failed: $(cat "$share/modprobe.err")"
for _ in $(seq 50); do
	[ -c /dev/kvm ] && break
	sleep 0.1
done
[ -c /dev/kvm ] || setup_fail "/dev/kvm missing after modprobe $kvm_mod"

if [ -s "$share/module" ]; then
	module=$(cat "$share/module")
	if ! out=$(insmod "$module" 2>&1); then
		setup_fail "insmod $module failed: $out"
	fi
	say "loaded $kvm_mod and $(basename "$module")"
fi
cwd=$(cat "$share/cwd")
cd "$cwd" || setup_fail "cannot cd to $cwd"
echo 0 >"$share/setup"

sh -c "$(cat "$share/cmd")"
rc=$?
echo "$rc" >"$share/rc"
cat /proc/sys/kernel/tainted >"$share/tainted"
dmesg >"$share/dmesg"
sync
exit "$rc"
