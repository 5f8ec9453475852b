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
 * queued pages, never one more.  Backends are tried in a fixed order:
 * native (KVM_CLEAR_DIRTY_LOG_BATCH, a batch ioctl of KVM itself), the module
 * ("shim"), then fallback; dirtybatch_opts.backend or the environment
 * variable DIRTYBATCH_BACKEND forces one.
 *
 * Conventions (see libdirtybatch(3)):
 *  - every function that can fail returns a negative errno value and
 *    leaves errno alone;
 *  - a failed add leaves the batch unchanged;
 *  - pages are KVM dirty-log pages (the host page size, 4096 on x86 unless
 *    dirtybatch_opts.page_size says otherwise);
 *  - a context is not thread-safe: serialize all calls on one context.
 *    Distinct contexts share nothing and may be used concurrently, also on
 *    the same VM.  The library has no global state;
 *  - every structure that crosses the API starts with a size_t sz, set by
 *    the caller to the sizeof() it was compiled with (libbpf style): the
 *    library accepts older, smaller structures, and larger ones whose tail
 *    past what it knows is zero; it writes no output byte past sz and
 *    zeroes output bytes it does not know.
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

/* The library's version: this is the one place it is defined. */
#define DIRTYBATCH_VERSION_MAJOR	1
#define DIRTYBATCH_VERSION_MINOR	1
#define DIRTYBATCH_VERSION_PATCH	0
#define DIRTYBATCH_VERSION_NUMBER(major, minor, patch) \
	((uint32_t)(((major) << 16) | ((minor) << 8) | (patch)))
#define DIRTYBATCH_VERSION_CODE \
	DIRTYBATCH_VERSION_NUMBER(DIRTYBATCH_VERSION_MAJOR, \
				  DIRTYBATCH_VERSION_MINOR, DIRTYBATCH_VERSION_PATCH)

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
#define DIRTYBATCH_OPEN_FALLBACK	(1u << 0) /* start in fallback mode */
#define DIRTYBATCH_OPEN_DEVICE_FD	(1u << 1) /* device_fd is valid */

/* dirtybatch_opts.backend: which backends a context may use */
enum dirtybatch_backend_kind {
	DIRTYBATCH_BACKEND_AUTO = 0,	/* native, then shim, then fallback */
	DIRTYBATCH_BACKEND_NATIVE = 1,	/* only native */
	DIRTYBATCH_BACKEND_SHIM = 2,	/* only the kvm_dirtybatch module */
	DIRTYBATCH_BACKEND_FALLBACK = 3,	/* only KVM_CLEAR_DIRTY_LOG */
};

/**
 * struct dirtybatch_opts - options of dirtybatch_open(), all optional
 * @sz: sizeof(struct dirtybatch_opts) as the caller knows it
 * @flags: DIRTYBATCH_OPEN_*
 * @page_size: dirty-log page size in bytes, a power of two; 0 means
 *	sysconf(_SC_PAGESIZE), which is KVM's dirty-log granularity
 * @device_path: module device; NULL means "/dev/kvm_dirtybatch"
 * @device_fd: with DIRTYBATCH_OPEN_DEVICE_FD, the module device, already
 *	open (for sandboxed VMMs that cannot open it); not duplicated, not
 *	closed, must stay open while the context lives
 * @backend: enum dirtybatch_backend_kind; AUTO (0) defers to the
 *	environment variable DIRTYBATCH_BACKEND (auto, native, shim, module,
 *	fallback) if set.  A forced backend other than fallback that cannot
 *	be used fails dirtybatch_open() with the reason.
 */
struct dirtybatch_opts {
	size_t sz;
	uint32_t flags;
	uint32_t page_size;
	const char *device_path;
	int32_t device_fd;
	uint32_t backend;
};

/**
 * struct dirtybatch_memslot - one memslot as the VMM registered it with KVM
 * @sz: sizeof(struct dirtybatch_memslot) as the caller knows it (at least
 *	up to @npages)
 * @slot: DIRTYBATCH_SLOT(address space, slot id), the value of
 *	kvm_userspace_memory_region.slot
 * @flags: zero
 * @guest_phys_addr: guest-physical base, page aligned
 * @npages: size in pages, 1 .. DIRTYBATCH_MAX_SLOT_PAGES
 * @userspace_addr: kvm_userspace_memory_region.userspace_addr
 * @generation: any value the caller changes whenever it creates the
 *	memslot anew (a counter of KVM_SET_USER_MEMORY_REGION calls will do)
 *
 * All fields but @flags are the memslot's identity: an entry whose number
 * is known but whose identity differs is another memslot, and what was
 * queued for the old one is discarded.
 */
struct dirtybatch_memslot {
	size_t sz;
	uint32_t slot;
	uint32_t flags;
	uint64_t guest_phys_addr;
	uint64_t npages;
	uint64_t userspace_addr;
	uint64_t generation;
};

enum dirtybatch_mode {
	DIRTYBATCH_MODE_FALLBACK = 0,	/* plain KVM_CLEAR_DIRTY_LOG */
	DIRTYBATCH_MODE_MODULE = 1,	/* KVM_DIRTYBATCH_CLEAR (the shim) */
	DIRTYBATCH_MODE_NATIVE = 2,	/* KVM_CLEAR_DIRTY_LOG_BATCH, KVM's
					 * own batch ioctl */
};

/* dirtybatch_info.flags */
#define DIRTYBATCH_INFO_MODULE_PRESENT	(1u << 0) /* module detected, usable */
#define DIRTYBATCH_INFO_NATIVE_PRESENT	(1u << 1) /* native detected, usable */
#define DIRTYBATCH_INFO_DEMOTED		(1u << 2) /* a batch call was not
						   * understood: fallback for
						   * good */

/**
 * struct dirtybatch_info - what dirtybatch_get_info() reports
 * @sz: set by the caller: sizeof(struct dirtybatch_info)
 * @mode: enum dirtybatch_mode in use
 * @flags: DIRTYBATCH_INFO_*
 * @fallback_reason: 0 in module mode; otherwise why: -ENOENT (no device),
 *	-EACCES/-EPERM (cannot open it), -ENOTTY (GET_INFO not answered),
 *	-EPROTO (incompatible ABI version), -EOPNOTSUPP (no CLEAR feature),
 *	-ECANCELED (fallback forced by the caller), other -errno from open;
 *	with DIRTYBATCH_INFO_DEMOTED the error of the batch call
 * @page_size: page size in bytes used for guest-physical ranges
 * @nr_slots: memslots in the layout
 * @module_abi_version: ABI version of the module, 0 if not detected
 * @module_features: its KVM_DIRTYBATCH_FEAT_* bits
 * @module_max_ranges: ranges per KVM_DIRTYBATCH_CLEAR call
 * @module_max_bitmap_bytes: bitmap bytes per KVM_DIRTYBATCH_CLEAR call
 * @native_reason: 0 in native mode, else why not (-EOPNOTSUPP: KVM has
 *	no KVM_CLEAR_DIRTY_LOG_BATCH, or not ours; -EPROTO: another ABI
 *	version; -ENOENT/-EACCES: /dev/kvm, needed to confirm it, cannot be
 *	opened; -ECANCELED: not tried; with DIRTYBATCH_INFO_DEMOTED the
 *	error of the batch call)
 * @backend: enum dirtybatch_backend_kind forced at open, AUTO if none
 * @native_abi_version: KVM_CLEAR_DIRTY_LOG_BATCH's ABI version, 0 if not
 *	detected
 * @native_max_ranges: ranges per KVM_CLEAR_DIRTY_LOG_BATCH call, 0 if not
 *	detected
 */
struct dirtybatch_info {
	size_t sz;
	uint32_t mode;
	uint32_t flags;
	int32_t fallback_reason;
	uint32_t page_size;
	uint32_t nr_slots;
	uint32_t module_abi_version;
	uint64_t module_features;
	uint32_t module_max_ranges;
	uint32_t module_max_bitmap_bytes;
	int32_t native_reason;
	uint32_t backend;
	uint32_t native_abi_version;
	uint32_t native_max_ranges;
};

/* dirtybatch_result.flags */
#define DIRTYBATCH_RESULT_CLEARED_EXACT	(1u << 0) /* pages_cleared is exact */
#define DIRTYBATCH_RESULT_DEMOTED	(1u << 1) /* this submit fell back */

/**
 * struct dirtybatch_result - what one dirtybatch_submit() did
 * @sz: set by the caller: sizeof(struct dirtybatch_result)
 * @flags: DIRTYBATCH_RESULT_*
 * @error: 0, or the -errno of the call that failed
 * @ioctls: ioctls issued (including a failed one)
 * @ranges: ranges the kernel applied
 * @slots: distinct memslots touched by the applied ranges
 * @pages_requested: pages of the applied ranges (bits set), each page once
 * @pages_cleared: dirty bits the kernel reports it cleared; exact only
 *	with DIRTYBATCH_RESULT_CLEARED_EXACT (module mode), otherwise
 *	counting the pages requested by KVM_CLEAR_DIRTY_LOG or
 *	KVM_CLEAR_DIRTY_LOG_BATCH, which do not tell
 * @pages_pending: pages still queued after the call (0 on success)
 * @error_slot: on error, memslot of the failing range if known, else ~0
 * @mode: enum dirtybatch_mode at the end of the call
 * @error_first_page: on error, first page of that range, else ~0
 */
struct dirtybatch_result {
	size_t sz;
	uint32_t flags;
	int32_t error;
	uint64_t ioctls;
	uint64_t ranges;
	uint64_t slots;
	uint64_t pages_requested;
	uint64_t pages_cleared;
	uint64_t pages_pending;
	uint32_t error_slot;
	uint32_t mode;
	uint64_t error_first_page;
};

/**
 * struct dirtybatch_stats - counters since dirtybatch_open()
 * @sz: set by the caller: sizeof(struct dirtybatch_stats)
 * @submits: dirtybatch_submit() calls
 * @failed_submits: of those, calls that returned an error
 * @ioctls: ioctls issued (native, module and fallback)
 * @module_ioctls: of those, KVM_DIRTYBATCH_CLEAR calls
 * @ranges: ranges the kernel applied
 * @pages_requested: pages of the applied ranges
 * @pages_cleared_exact: dirty bits cleared, as reported by the module
 * @pages_cleared_unknown: pages requested by fallback calls, for which
 *	the kernel does not say how many were dirty
 * @pages_discarded: queued pages dropped by dirtybatch_discard(),
 *	dirtybatch_slot_discard() or by a layout change
 * @native_ioctls: of @ioctls, KVM_CLEAR_DIRTY_LOG_BATCH calls
 */
struct dirtybatch_stats {
	size_t sz;
	uint64_t submits;
	uint64_t failed_submits;
	uint64_t ioctls;
	uint64_t module_ioctls;
	uint64_t ranges;
	uint64_t pages_requested;
	uint64_t pages_cleared_exact;
	uint64_t pages_cleared_unknown;
	uint64_t pages_discarded;
	uint64_t native_ioctls;
};

/* Version of the library running (DIRTYBATCH_VERSION_CODE it was built with). */
DIRTYBATCH_API uint32_t dirtybatch_version(void);

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
DIRTYBATCH_API bool dirtybatch_has_pending(const struct dirtybatch_ctx *ctx);
DIRTYBATCH_API uint64_t dirtybatch_discard(struct dirtybatch_ctx *ctx);
DIRTYBATCH_API int64_t dirtybatch_slot_discard(struct dirtybatch_ctx *ctx,
					       uint32_t slot);

/* Submitting. */
DIRTYBATCH_API int64_t dirtybatch_submit(struct dirtybatch_ctx *ctx,
					 struct dirtybatch_result *res);
DIRTYBATCH_API int dirtybatch_get_stats(const struct dirtybatch_ctx *ctx,
					struct dirtybatch_stats *stats);

#ifdef __cplusplus
}
#endif

#endif /* DIRTYBATCH_H */
