# SPDX-License-Identifier: GPL-2.0
#
# Sourced in a guest (selftests/runner/vm-run) by guest-patched-kvm.sh and
# with-patched-kvm.sh.  use_patched_kvm MODDIR: replace Debian's kvm and
# the vendor module vm-run loaded by the patched ones in MODDIR (kvm.ko,
# kvm-amd.ko, kvm-intel.ko from scripts/kvm-modules.sh).  Sets vendor
# (kvm-amd or kvm-intel) and stock (Debian's kvm.ko).  Returns 0, 4 when
# Debian's KVM is not there to replace (skip), 1 when the patched modules
# do not load.
use_patched_kvm() {
	local moddir=$1
	if grep -q '^kvm_amd ' /proc/modules; then
		vendor=kvm-amd
	elif grep -q '^kvm_intel ' /proc/modules; then
		vendor=kvm-intel
	else
		echo "# no kvm_amd or kvm_intel loaded"
		return 4
	fi
	stock=$(modinfo -F filename kvm)
	if ! rmmod "${vendor/-/_}" kvm; then
		echo "# cannot unload Debian's KVM modules"
		return 4
	fi
	if ! insmod "$moddir/kvm.ko" || ! insmod "$moddir/$vendor.ko"; then
		echo "# insmod of the patched $moddir/kvm.ko, $vendor.ko failed"
		return 1
	fi
	for _ in $(seq 50); do
		[ -c /dev/kvm ] && break
		sleep 0.1
	done
	echo "# kernel $(uname -r); replaced $stock by $moddir/kvm.ko and $vendor.ko"
	echo "# patched kvm.ko vermagic: $(modinfo -F vermagic "$moddir/kvm.ko")"
}
