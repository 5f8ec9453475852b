#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# refused_load_guest.sh KO HIDE_KO: kvm_dirtybatch refuses to load, with one
# clear message and nothing left behind, when a KVM internal it resolves
# at load time is missing or lives in another module than KVM.  Run in a
# guest of its own without the module loaded:
#   selftests/runner/vm-run -- selftests/kvm_dirtybatch/refused_load_guest.sh KO HIDE_KO
# HIDE_KO is the test-only hide_symbol.ko (built next to KO by make module):
# while it is loaded, kallsyms_lookup_name() returns 0 for one symbol
# (mode=missing) or the address of a function of hide_symbol (mode=foreign).
#
# First the module loads once: its kernel log has exactly one line, saying
# which KVM functions were linked (exported to it) and which were resolved
# through kallsyms; each of the four is in exactly one list.
# For every symbol resolved through kallsyms, and both modes:
#  - insmod fails with ENOENT;
#  - the kernel log has exactly the module's message for that symbol;
#  - no /sys/module/kvm_dirtybatch, no /dev/kvm_dirtybatch, no debugfs dir;
#  - kvm has no new holder.
# Then, with hide_symbol gone, the module loads and its device answers.
# Prints TAP; exits 0 (pass), 1 (fail) or 4 (skip: no KVM in this guest).
set -u
ko=${1:?usage: refused_load_guest.sh KO HIDE_KO}
hide=${2:?usage: refused_load_guest.sh KO HIDE_KO}
dev=/dev/kvm_dirtybatch
all_syms="kvm_arch_mmu_enable_log_dirty_pt_masked kvm_arch_sync_dirty_log file_is_kvm kvm_flush_remote_tlbs"
# shellcheck source=tap.sh
. "$(dirname "$0")/tap.sh"
loaded() { [ -d "/sys/module/$1" ]; }
kvm_holders() { ls /sys/module/kvm/holders 2>/dev/null | sort | tr '\n' ' '; }

echo "TAP version 13"
if ! modprobe kvm_amd 2>/dev/null && ! modprobe kvm_intel 2>/dev/null; then
	echo "1..0 # SKIP no KVM in this guest"
	exit 4
fi
mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug
if loaded kvm_dirtybatch; then
	echo "1..0 # SKIP kvm_dirtybatch is loaded: run this in a guest without it"
	exit 4
fi
holders0=$(kvm_holders)

# How each function is found: "loaded: linked: A B; kallsyms: C D".  The
# kernel's own notices of this first out-of-tree, unsigned load ("loading
# out-of-tree module taints kernel", "module verification failed") are not
# the module's.
dmesg -C
insmod "$ko"
load_rc=$?
log=$(dmesg | grep 'kvm_dirtybatch:' |
	grep -v -e 'taints kernel\.$' -e 'module verification failed: ')
rmmod kvm_dirtybatch 2>/dev/null
line=$(echo "$log" | sed -n 's/.*kvm_dirtybatch: loaded: linked:\(.*\); kallsyms:\(.*\)$/\1;\2/p')
linked=${line%;*}
syms=${line#*;}
[ "$linked" = " none" ] && linked=
[ "$syms" = " none" ] && syms=
nsyms=$(echo $syms | wc -w)
echo "1..$((8 * nsyms + 5))"
echo "# linked:${linked:- none}; kallsyms:${syms:- none}"
check "the module loads and logs one line saying how each KVM function was found" \
	eval '[ $load_rc -eq 0 ] && [ -n "$line" ] && [ "$(echo "$log" | wc -l)" = 1 ]'
[ -n "$line" ] || echo "# log: $log"
each_once() {
	local s
	for s in $all_syms; do
		[ "$(echo $linked $syms | tr ' ' '\n' | grep -cx "$s")" = 1 ] || return 1
	done
}
check "each of the four functions is linked or resolved, once" each_once

for sym in $syms; do
	for mode in missing foreign; do
		if [ "$mode" = missing ]; then
			want="kvm_dirtybatch: cannot load: KVM symbol $sym not found"
		else
			want="kvm_dirtybatch: cannot load: $sym is in module hide_symbol, expected kvm"
		fi
		if ! insmod "$hide" name="$sym" mode="$mode"; then
			for i in 1 2 3 4; do not_ok "$sym $mode: hide_symbol did not load"; done
			continue
		fi
		dmesg -C
		out=$(insmod "$ko" 2>&1)
		rc=$?
		log=$(dmesg | grep 'kvm_dirtybatch:')
		# ENOENT: kmod's insmod words it "Unknown symbol in module"
		check "$sym $mode: insmod fails with ENOENT" \
			eval '[ $rc -ne 0 ] && echo "$out" | grep -Eq "Unknown symbol in module|No such file or directory"'
		[ $rc -ne 0 ] || echo "# insmod: $out"
		check "$sym $mode: the kernel log says why, once" \
			eval '[ "$(echo "$log" | grep -cF "$want")" = 1 ] && [ "$(echo "$log" | wc -l)" = 1 ]'
		[ "$(echo "$log" | grep -cF "$want")" = 1 ] || echo "# log: $log"
		check "$sym $mode: nothing left: module, device, debugfs" \
			eval '! loaded kvm_dirtybatch && [ ! -e $dev ] && [ ! -e /sys/kernel/debug/kvm_dirtybatch ]'
		check "$sym $mode: kvm holders unchanged" eval '[ "$(kvm_holders)" = "$holders0" ]'
		rmmod hide_symbol
	done
done

# hide_symbol unloaded: the module loads and works
dmesg -C
check "with every symbol visible again, insmod succeeds" insmod "$ko"
for i in $(seq 50); do [ -c "$dev" ] && break; sleep 0.1; done
check "$dev is there" test -c "$dev"
check "and the module unloads" rmmod kvm_dirtybatch
exit $((failed > 0))
