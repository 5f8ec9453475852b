/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * kvm_dirtybatch: clear many ranges of a KVM VM's dirty log in one call.
 *
 * The device /dev/kvm_dirtybatch applies a list of KVM_CLEAR_DIRTY_LOG
 * requests (possibly for many memslots) under one kvm->slots_lock hold,
 * one MMU-lock hold (dropped whenever another task waits for it) and one TLB
 * flush.  Each range has exactly the semantics of KVM_CLEAR_DIRTY_LOG.
 * See Documentation/kvm_dirtybatch.rst.
 */
#ifndef _UAPI_LINUX_KVM_DIRTYBATCH_H
#define _UAPI_LINUX_KVM_DIRTYBATCH_H

#include <linux/ioctl.h>
#include <linux/types.h>

/* Bumped on incompatible changes only; additions are feature bits. */
#define KVM_DIRTYBATCH_ABI_VERSION	1

#define KVM_DIRTYBATCH_DEVICE_NAME	"kvm_dirtybatch"

/* Features reported in kvm_dirtybatch_info.features. */
#define KVM_DIRTYBATCH_FEAT_CLEAR	(1ULL << 0)	/* KVM_DIRTYBATCH_CLEAR */
#define KVM_DIRTYBATCH_FEAT_STATS	(1ULL << 1)	/* KVM_DIRTYBATCH_GET_STATS */
#define KVM_DIRTYBATCH_FEAT_ERROR_INDEX	(1ULL << 2)	/* clear.error_index */

/* Flags accepted in kvm_dirtybatch_clear.flags: none yet. */
#define KVM_DIRTYBATCH_CLEAR_FLAGS_ALL	0U

/* Limits of one KVM_DIRTYBATCH_CLEAR call (also reported by GET_INFO). */
#define KVM_DIRTYBATCH_MAX_RANGES	65536U

/*
 * The bitmaps of one call are not limited in total: each range has only
 * the limits KVM_CLEAR_DIRTY_LOG has (it lies within its memslot), and the
 * module copies bitmaps in bounded chunks.  GET_INFO reports this value in
 * max_bitmap_bytes, which callers of ABI 1 use to size their batches.
 */
#define KVM_DIRTYBATCH_MAX_BITMAP_BYTES	0xffffffffU

/*
 * The MMU lock is dropped (with a chance to reschedule) as soon as another
 * task waits for it or a reschedule is due, checked before every 64-page
 * bitmap word: a vCPU faulting during a huge batch waits for at most one
 * word's work.  GET_INFO reports this bound in lock_break_words.
 */
#define KVM_DIRTYBATCH_LOCK_BREAK_WORDS	1U

/**
 * struct kvm_dirtybatch_info - what the module supports
 * @abi_version: KVM_DIRTYBATCH_ABI_VERSION of the running module
 * @size: sizeof(struct kvm_dirtybatch_info) as known to the module
 * @features: KVM_DIRTYBATCH_FEAT_* bits
 * @clear_flags: flags accepted by KVM_DIRTYBATCH_CLEAR
 * @max_ranges: largest kvm_dirtybatch_clear.count accepted
 * @range_size: sizeof(struct kvm_dirtybatch_range) as known to the module;
 *	larger strides are accepted if the extra bytes are zero
 * @max_bitmap_bytes: largest total bitmap size of one call;
 *	KVM_DIRTYBATCH_MAX_BITMAP_BYTES (no limit of the call as a whole)
 * @lock_break_words: bitmap words processed at most while another task
 *	waits for the MMU lock (KVM_DIRTYBATCH_LOCK_BREAK_WORDS)
 * @reserved0: zero
 * @reserved: zero
 */
struct kvm_dirtybatch_info {
	__u32 abi_version;
	__u32 size;
	__u64 features;
	__u32 clear_flags;
	__u32 max_ranges;
	__u32 range_size;
	__u32 max_bitmap_bytes;
	__u32 lock_break_words;
	__u32 reserved0;
	__u64 reserved[4];
};

/**
 * struct kvm_dirtybatch_range - one KVM_CLEAR_DIRTY_LOG request
 * @slot: memslot, as in KVM_CLEAR_DIRTY_LOG: address space << 16 | slot id
 * @num_pages: number of pages; a multiple of 64 unless the range ends at
 *	the end of the memslot
 * @first_page: first page, relative to the memslot; a multiple of 64
 * @dirty_bitmap: user pointer to ALIGN(num_pages, 64) / 8 bytes; bit n
 *	set means "clear the dirty bit of page first_page + n"
 */
struct kvm_dirtybatch_range {
	__u32 slot;
	__u32 num_pages;
	__u64 first_page;
	__u64 dirty_bitmap;
};

/**
 * struct kvm_dirtybatch_clear - argument of KVM_DIRTYBATCH_CLEAR
 * @vm_fd: file descriptor of the VM (from KVM_CREATE_VM)
 * @flags: zero (KVM_DIRTYBATCH_CLEAR_FLAGS_ALL)
 * @count: number of ranges, at most KVM_DIRTYBATCH_MAX_RANGES
 * @range_size: stride of the array, >= sizeof(struct kvm_dirtybatch_range)
 * @ranges: user pointer to @count ranges, @range_size bytes apart
 * @pages_cleared: out: dirty bits this call cleared (each page once)
 * @error_index: out: on -EINVAL/-ENOENT/-EFAULT caused by one range, its
 *	index; otherwise @count.  Written on success and on those errors.
 * @reserved0: zero
 * @reserved: zero
 */
struct kvm_dirtybatch_clear {
	__s32 vm_fd;
	__u32 flags;
	__u32 count;
	__u32 range_size;
	__u64 ranges;
	__u64 pages_cleared;
	__u32 error_index;
	__u32 reserved0;
	__u64 reserved[4];
};

/**
 * struct kvm_dirtybatch_stats - module-wide counters since load
 * @calls: successful KVM_DIRTYBATCH_CLEAR calls
 * @failed_calls: KVM_DIRTYBATCH_CLEAR calls that returned an error
 * @ranges: ranges applied
 * @pages_cleared: dirty bits cleared
 * @mmu_lock_holds: times the MMU lock was taken for clearing
 * @lock_breaks: times the MMU lock was dropped mid-batch to bound latency
 * @tlb_flushes: remote TLB flushes issued
 * @max_hold_ns: longest single MMU-lock hold, in nanoseconds
 * @live_allocs: module allocations not yet freed (0 when idle)
 * @dirty_log_syncs: kvm_arch_sync_dirty_log() calls (on x86 one per
 *	validated call, whatever the number of memslots)
 * @reserved: zero
 */
struct kvm_dirtybatch_stats {
	__u64 calls;
	__u64 failed_calls;
	__u64 ranges;
	__u64 pages_cleared;
	__u64 mmu_lock_holds;
	__u64 lock_breaks;
	__u64 tlb_flushes;
	__u64 max_hold_ns;
	__u64 live_allocs;
	__u64 dirty_log_syncs;
	__u64 reserved[6];
};

#define KVM_DIRTYBATCH_IO		0xDC

#define KVM_DIRTYBATCH_GET_INFO	\
	_IOR(KVM_DIRTYBATCH_IO, 0x00, struct kvm_dirtybatch_info)
#define KVM_DIRTYBATCH_CLEAR	\
	_IOWR(KVM_DIRTYBATCH_IO, 0x01, struct kvm_dirtybatch_clear)
#define KVM_DIRTYBATCH_GET_STATS	\
	_IOR(KVM_DIRTYBATCH_IO, 0x02, struct kvm_dirtybatch_stats)

#endif /* _UAPI_LINUX_KVM_DIRTYBATCH_H */
