/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * KVM_CLEAR_DIRTY_LOG_BATCH: the native KVM ioctl of the series in
 * module/native/patches/, for userspace built against stock kernel
 * headers.  These are the series' additions to <linux/kvm.h>, to the
 * byte; when <linux/kvm.h> has them (a kernel with the series, or
 * upstream once it is merged), this header adds nothing.
 *
 * The ioctl and capability numbers are outside the ranges upstream
 * allocates from, but a stock kernel may still one day give them to
 * something else: never use the ioctl before confirming it as described
 * in Documentation/kvm_dirtybatch.rst ("Native backend"):
 *
 *  1. KVM_CHECK_EXTENSION(KVM_CAP_CLEAR_DIRTY_LOG_BATCH) > 0 (the largest
 *     batch), on /dev/kvm or the VM;
 *  2. on a VM created for the probe only (no memslots, no vCPUs), the
 *     ioctl with flags == KVM_CLEAR_DIRTY_LOG_BATCH_QUERY and everything
 *     else zero returns 0 with magic == KVM_CLEAR_DIRTY_LOG_BATCH_MAGIC
 *     and abi_version == KVM_CLEAR_DIRTY_LOG_BATCH_ABI_VERSION.
 */
#ifndef _UAPI_LINUX_KVM_CLEAR_DIRTY_LOG_BATCH_H
#define _UAPI_LINUX_KVM_CLEAR_DIRTY_LOG_BATCH_H

#include <linux/ioctl.h>
#include <linux/kvm.h>
#include <linux/types.h>

#ifndef KVM_CLEAR_DIRTY_LOG_BATCH

/* for KVM_CLEAR_DIRTY_LOG_BATCH */
struct kvm_clear_dirty_log_range {
	__u32 slot;
	__u32 num_pages;
	__u64 first_page;
	__u64 dirty_bitmap; /* user pointer, one bit per page */
};

#define KVM_CLEAR_DIRTY_LOG_BATCH_QUERY		(1U << 0)
#define KVM_CLEAR_DIRTY_LOG_BATCH_MAGIC		0x4b564d434c524241ULL
#define KVM_CLEAR_DIRTY_LOG_BATCH_ABI_VERSION	1

struct kvm_clear_dirty_log_batch {
	__u32 flags;
	__u32 count;
	__u64 ranges; /* user pointer to count struct kvm_clear_dirty_log_range */
	__u32 error_index;	/* out */
	__u32 abi_version;	/* out, KVM_CLEAR_DIRTY_LOG_BATCH_QUERY */
	__u64 magic;		/* out, KVM_CLEAR_DIRTY_LOG_BATCH_QUERY */
	__u64 reserved[4];
};

/* Out of the sequence until upstream assigns a number. */
#define KVM_CAP_CLEAR_DIRTY_LOG_BATCH 1000

/* Available with KVM_CAP_CLEAR_DIRTY_LOG_BATCH; out of the sequence. */
#define KVM_CLEAR_DIRTY_LOG_BATCH _IOWR(KVMIO, 0xfd, struct kvm_clear_dirty_log_batch)

#endif /* KVM_CLEAR_DIRTY_LOG_BATCH */

#endif /* _UAPI_LINUX_KVM_CLEAR_DIRTY_LOG_BATCH_H */
