/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kvm_dirtybatch internal interfaces: the clearing core, the KVM symbols
 * resolved at load time, and the module-wide counters.
 */
#ifndef _KVM_DIRTYBATCH_INTERNAL_H
#define _KVM_DIRTYBATCH_INTERNAL_H

#include <linux/atomic.h>
#include <linux/kvm_host.h>
#include <linux/kvm_dirtybatch.h>

/**
 * struct dirtybatch_syms - the KVM functions the module calls, linked where
 *	KVM exports them to modules and resolved through kallsyms otherwise
 * @enable_log_dirty_pt_masked: re-write-protects the pages of a mask
 * @sync_dirty_log: flushes hardware dirty-log buffers (PML) into a memslot
 * @file_is_kvm: tells whether a file is a KVM VM file
 * @flush_remote_tlbs: flushes every vCPU's TLB for the VM
 */
struct dirtybatch_syms {
	typeof(kvm_arch_mmu_enable_log_dirty_pt_masked) *enable_log_dirty_pt_masked;
	typeof(kvm_arch_sync_dirty_log) *sync_dirty_log;
	typeof(file_is_kvm) *file_is_kvm;
	typeof(kvm_flush_remote_tlbs) *flush_remote_tlbs;
};

extern struct dirtybatch_syms dirtybatch_syms;

int dirtybatch_resolve_symbols(void);
void dirtybatch_release_symbols(void);

/**
 * struct dirtybatch_counters - module-wide statistics, reported through
 *	KVM_DIRTYBATCH_GET_STATS and debugfs
 * @calls: successful KVM_DIRTYBATCH_CLEAR calls
 * @failed_calls: KVM_DIRTYBATCH_CLEAR calls that returned an error
 * @ranges: ranges applied
 * @pages_cleared: dirty bits cleared
 * @mmu_lock_holds: times the MMU lock was taken for clearing
 * @lock_breaks: times the MMU lock was dropped mid-batch
 * @tlb_flushes: remote TLB flushes issued
 * @max_hold_ns: longest single MMU-lock hold, in nanoseconds
 * @live_allocs: module allocations not yet freed
 * @dirty_log_syncs: kvm_arch_sync_dirty_log() calls
 */
struct dirtybatch_counters {
	atomic64_t calls;
	atomic64_t failed_calls;
	atomic64_t ranges;
	atomic64_t pages_cleared;
	atomic64_t mmu_lock_holds;
	atomic64_t lock_breaks;
	atomic64_t tlb_flushes;
	atomic64_t max_hold_ns;
	atomic64_t live_allocs;
	atomic64_t dirty_log_syncs;
};

extern struct dirtybatch_counters dirtybatch_counters;

void dirtybatch_read_stats(struct kvm_dirtybatch_stats *st);
long dirtybatch_clear(struct kvm_dirtybatch_clear __user *uarg);

#endif /* _KVM_DIRTYBATCH_INTERNAL_H */
