/* SPDX-License-Identifier: LGPL-2.1 OR MIT */
/*
 * libdirtybatch: batched clearing of a KVM VM's dirty log.
 *
 * A context is bound to one VM file descriptor.  The VMM describes its
 * memslots, queues the pages whose dirty bits it wants cleared (as
 * guest-physical byte ranges, slot-relative page runs or bits of its own
 * bitmap), and submits.  With the kvm_dirtybatch kernel module
 * (/dev/kvm_dirtybatch) a submit is one KVM_DIRTYBATCH_CLEAR ioctl for the
 * whole batch (more only where the module's limits require); without it
 * (fallback mode) it is one KVM_CLEAR_DIRTY_LOG ioctl per run of non-zero
 * 64-page bitmap words per memslot, runs at most 512 zero words apart
 * sharing one call.  Either way the kernel is asked to clear exactly the
 * queued pages, never one more.
 *
 * Conventions (see libdirtybatch(3)):
 *  - every function that can fail returns a negative errno value and
 *    leaves errno alone;
 *  - a failed add leaves the batch unchanged;
 *  - pages are KVM dirty-log pages (the host page size, 4096 on x86 unless
 *    dirtybatch_opts.page_size says otherwise);
 *  - a context is not thread-safe: serialize all calls on one context.
 *    Distinct contexts share nothing and may be used concurrently, also on
 *    the same VM.  The library has no global state.
 */
#ifndef DIRTYBATCH_H
#define DIRTYBATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef DIRTYBATCH_API
#define DIRTYBATCH_API __attribute__((visibility("default")))
#endif

#define DIRTYBATCH_VERSION_MAJOR	1
#define DIRTYBATCH_VERSION_MINOR	0

/* Opaque context. */
struct dirtybatch_ctx;

/* KVM's encoding of a memslot: address space in bits 16-31, id in 0-15. */
#define DIRTYBATCH_SLOT(as_id, id) \
	((uint32_t)(((uint32_t)(as_id) << 16) | ((uint32_t)(id) & 0xffffu)))
#define DIRTYBATCH_SLOT_AS_ID(slot)	((uint32_t)(slot) >> 16)
#define DIRTYBATCH_SLOT_ID(slot)	((uint32_t)(slot) & 0xffffu)

/* Largest memslot KVM accepts, in pages (KVM_MEM_MAX_NR_PAGES). */
#define DIRTYBATCH_MAX_SLOT_PAGES	((UINT64_C(1) << 31) - 1)

/* dirtybatch_opts.flags */
#define DIRTYBATCH_OPEN_FALLBACK	(1u << 0) /* never use the module */

/**
 * struct dirtybatch_opts - options of dirtybatch_open(), all optional
 * @sz: sizeof(struct dirtybatch_opts) as the caller knows it
 * @flags: DIRTYBATCH_OPEN_*
 * @page_size: dirty-log page size in bytes, a power of two; 0 means
 *	sysconf(_SC_PAGESIZE), which is KVM's dirty-log granularity
 * @device_path: module device; NULL means "/dev/kvm_dirtybatch"
 */
struct dirtybatch_opts {
	size_t sz;
	uint32_t flags;
	uint32_t page_size;
	const char *device_path;
};

/**
 * struct dirtybatch_memslot - one memslot as the VMM registered it with KVM
 * @slot: DIRTYBATCH_SLOT(address space, slot id), the value of
 *	kvm_userspace_memory_region.slot
 * @flags: zero
 * @guest_phys_addr: guest-physical base, page aligned
 * @npages: size in pages, 1 .. DIRTYBATCH_MAX_SLOT_PAGES
 */
struct dirtybatch_memslot {
	uint32_t slot;
	uint32_t flags;
	uint64_t guest_phys_addr;
	uint64_t npages;
};

enum dirtybatch_mode {
	DIRTYBATCH_MODE_FALLBACK = 0,	/* plain KVM_CLEAR_DIRTY_LOG */
	DIRTYBATCH_MODE_MODULE = 1,	/* KVM_DIRTYBATCH_CLEAR */
};

/* dirtybatch_info.flags */
#define DIRTYBATCH_INFO_MODULE_PRESENT	(1u << 0) /* module detected, usable */

/**
 * struct dirtybatch_info - what dirtybatch_get_info() reports
 * @mode: enum dirtybatch_mode in use
 * @flags: DIRTYBATCH_INFO_*
 * @fallback_reason: 0 in module mode; otherwise why: -ENOENT (no device),
 *	-EACCES/-EPERM (cannot open it), -ENOTTY (GET_INFO not answered),
 *	-EPROTO (incompatible ABI version), -EOPNOTSUPP (no CLEAR feature),
 *	-ECANCELED (fallback forced by the caller), other -errno from open
 * @page_size: page size in bytes used for guest-physical ranges
 * @nr_slots: memslots in the layout
 * @module_abi_version: ABI version of the module, 0 if not detected
 * @module_features: its KVM_DIRTYBATCH_FEAT_* bits
 * @module_max_ranges: ranges per KVM_DIRTYBATCH_CLEAR call
 * @module_max_bitmap_bytes: bitmap bytes per KVM_DIRTYBATCH_CLEAR call
 */
struct dirtybatch_info {
	uint32_t mode;
	uint32_t flags;
	int32_t fallback_reason;
	uint32_t page_size;
	uint32_t nr_slots;
	uint32_t module_abi_version;
	uint64_t module_features;
	uint32_t module_max_ranges;
	uint32_t module_max_bitmap_bytes;
	uint64_t reserved[4];
};

/* dirtybatch_result.flags */
#define DIRTYBATCH_RESULT_CLEARED_EXACT	(1u << 0) /* pages_cleared is exact */

/**
 * struct dirtybatch_result - what one dirtybatch_submit() did
 * @flags: DIRTYBATCH_RESULT_*
 * @error: 0, or the -errno of the call that failed
 * @ioctls: ioctls issued (including a failed one)
 * @ranges: ranges the kernel applied
 * @slots: distinct memslots touched by the applied ranges
 * @pages_requested: pages of the applied ranges (bits set), each page once
 * @pages_cleared: dirty bits the kernel reports it cleared; exact only
 *	with DIRTYBATCH_RESULT_CLEARED_EXACT (module mode), otherwise equal
 *	to @pages_requested because KVM_CLEAR_DIRTY_LOG does not tell
 * @pages_pending: pages still queued after the call (0 on success)
 * @error_slot: on error, memslot of the failing range if known, else ~0
 * @error_first_page: on error, first page of that range, else ~0
 */
struct dirtybatch_result {
	uint32_t flags;
	int32_t error;
	uint64_t ioctls;
	uint64_t ranges;
	uint64_t slots;
	uint64_t pages_requested;
	uint64_t pages_cleared;
	uint64_t pages_pending;
	uint32_t error_slot;
	uint32_t reserved0;
	uint64_t error_first_page;
	uint64_t reserved[4];
};

/**
 * struct dirtybatch_stats - counters since dirtybatch_open()
 * @submits: dirtybatch_submit() calls
 * @failed_submits: of those, calls that returned an error
 * @ioctls: ioctls issued (module and fallback)
 * @module_ioctls: of those, KVM_DIRTYBATCH_CLEAR calls
 * @ranges: ranges the kernel applied
 * @pages_requested: pages of the applied ranges
 * @pages_cleared_exact: dirty bits cleared, as reported by the module
 * @pages_cleared_unknown: pages requested by fallback calls, for which
 *	the kernel does not say how many were dirty
 * @pages_discarded: queued pages dropped by dirtybatch_discard() or by a
 *	layout change
 */
struct dirtybatch_stats {
	uint64_t submits;
	uint64_t failed_submits;
	uint64_t ioctls;
	uint64_t module_ioctls;
	uint64_t ranges;
	uint64_t pages_requested;
	uint64_t pages_cleared_exact;
	uint64_t pages_cleared_unknown;
	uint64_t pages_discarded;
	uint64_t reserved[7];
};

/* Context. */
DIRTYBATCH_API int dirtybatch_open(int vm_fd,
				   const struct dirtybatch_opts *opts,
				   struct dirtybatch_ctx **ctxp);
DIRTYBATCH_API void dirtybatch_close(struct dirtybatch_ctx *ctx);
DIRTYBATCH_API int dirtybatch_mode(const struct dirtybatch_ctx *ctx);
DIRTYBATCH_API int dirtybatch_set_fallback(struct dirtybatch_ctx *ctx,
					   bool force);
DIRTYBATCH_API int dirtybatch_get_info(const struct dirtybatch_ctx *ctx,
				       struct dirtybatch_info *info);

/* Memslot layout. */
DIRTYBATCH_API int dirtybatch_set_layout(struct dirtybatch_ctx *ctx,
					 const struct dirtybatch_memslot *slots,
					 unsigned int nr_slots);
DIRTYBATCH_API int dirtybatch_slot_update(struct dirtybatch_ctx *ctx,
					  const struct dirtybatch_memslot *slot);
DIRTYBATCH_API int dirtybatch_slot_remove(struct dirtybatch_ctx *ctx,
					  uint32_t slot);

/* Queueing pages. */
DIRTYBATCH_API int dirtybatch_add_gpa(struct dirtybatch_ctx *ctx,
				      uint32_t as_id, uint64_t gpa,
				      uint64_t len);
DIRTYBATCH_API int dirtybatch_add_pages(struct dirtybatch_ctx *ctx,
					uint32_t slot, uint64_t first_page,
					uint64_t npages);
DIRTYBATCH_API int dirtybatch_add_bitmap(struct dirtybatch_ctx *ctx,
					 uint32_t slot, uint64_t first_page,
					 uint64_t npages,
					 const uint64_t *bitmap,
					 uint64_t bit_offset);
DIRTYBATCH_API uint64_t dirtybatch_pending(const struct dirtybatch_ctx *ctx);
DIRTYBATCH_API uint64_t dirtybatch_discard(struct dirtybatch_ctx *ctx);

/* Submitting. */
DIRTYBATCH_API int64_t dirtybatch_submit(struct dirtybatch_ctx *ctx,
					 struct dirtybatch_result *res);
DIRTYBATCH_API int dirtybatch_get_stats(const struct dirtybatch_ctx *ctx,
					struct dirtybatch_stats *stats);

#ifdef __cplusplus
}
#endif

#endif /* DIRTYBATCH_H */
