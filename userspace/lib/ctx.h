/* SPDX-License-Identifier: LGPL-2.1 OR MIT */
/*
 * libdirtybatch: the context, the memslot table entry and the functions
 * the source files share.  Internal: hidden visibility, never installed.
 *
 * Source files (the library is split by concern, as liburing's src/ is):
 *   setup.c    contexts: open, close, options, mode, info, version
 *   backend.c  the backends in their order of preference (native KVM
 *              ioctl, kvm_dirtybatch module, plain KVM_CLEAR_DIRTY_LOG),
 *              module detection, the real ioctls
 *   layout.c   the memslot table: set_layout, slot_update, slot_remove
 *   queue.c    the add calls, pending, discard
 *   submit.c   ranges out of the summary, per backend; stats
 *   summary.h  the per-memslot bitmap and its three-level summary, as
 *              static inline functions: the add paths must stay inlined
 */
#ifndef DB_CTX_H
#define DB_CTX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dirtybatch_internal.h"

#define DB_DEVICE_PATH	"/dev/" KVM_DIRTYBATCH_DEVICE_NAME
#define NO_WORD		UINT64_MAX

/*
 * One memslot.  Its identity is (slot, gpa, npages, userspace_addr,
 * generation): an update that changes any of them replaces the entry
 * and drops what was queued for the old one.
 */
struct db_slot {
	/* The add paths' cache line: one 64-byte line (alloc_slot()). */
	uint32_t slot;		/* as_id << 16 | id */
	bool listed;		/* on ctx->dirty[] */
	uint64_t npages;
	uint64_t *bits;		/* nwords */
	uint8_t *mark;		/* 64 * ngrp: mark[w] <=> bits[w] != 0 */
	uint8_t *mark2;		/* 64 * nsup: mark2[g] <=> a mark in group g */
	uint8_t *mark3;		/* nsup rounded up to 8: mark3[j] <=> a mark2
				 * in [64j, 64j + 64) */
	uint64_t wmin, wmax;	/* non-zero words lie in [wmin, wmax]; wmin
				 * is NO_WORD (and wmax 0) when the slot has
				 * nothing queued */

	uint64_t gpa;		/* first byte */
	uint64_t gpa_last;	/* last byte (inclusive, so the top of the
				 * address space is representable) */
	uint64_t nwords;	/* DIV_ROUND_UP(npages, 64) */
	uint64_t ngrp;		/* DIV_ROUND_UP(nwords, 64): groups of words */
	uint64_t nsup;		/* DIV_ROUND_UP(ngrp, 64): groups of groups */
	uint64_t uaddr;		/* userspace_addr, identity only */
	uint64_t generation;	/* the caller's, identity only */
	uint64_t worst_ranges;	/* its share of ctx->worst_ranges */
	uint64_t touched;	/* submit generation that applied a range */
} __attribute__((aligned(64)));

struct dirtybatch_ctx;

/*
 * A backend: how a submit reaches the kernel.  ctx->order[] lists the
 * ones a context may use, most preferred first; the first usable one not
 * excluded by a forced fallback is in use.
 */
struct db_backend {
	const char *name;
	int mode;		/* enum dirtybatch_mode */
	/* 0 if usable with @ctx, else why not (-errno); may open devices */
	int (*probe)(struct dirtybatch_ctx *ctx);
	/* forget what probe() set up */
	void (*release)(struct dirtybatch_ctx *ctx);
	/* submit the queue; 0 or the -errno of the call that failed */
	int (*submit)(struct dirtybatch_ctx *ctx, struct dirtybatch_result *r);
};

extern const struct db_backend db_native_backend;
extern const struct db_backend db_shim_backend;
extern const struct db_backend db_fallback_backend;
extern const struct dirtybatch_backend db_sys_ops;

#define DB_NR_MODES	3	/* enum dirtybatch_mode values */

struct dirtybatch_ctx {
	int vm_fd;
	int dev_fd;		/* /dev/kvm_dirtybatch, -1 if not open */
	bool dev_fd_owned;	/* opened here (closed here), not the caller's */
	int caller_dev_fd;	/* opts.device_fd, or -1 */
	uint32_t page_size;
	unsigned int page_shift;
	int mode;
	uint64_t fallback_gap;		/* DB_FALLBACK_GAP_WORDS; tests vary it */
	uint64_t module_gap;		/* DB_MODULE_GAP_WORDS; tests vary it */
	bool force_fallback;		/* dirtybatch_set_fallback() */
	uint32_t forced_backend;	/* DIRTYBATCH_BACKEND_*, AUTO if none */
	int32_t demoted;		/* -errno that demoted the context, or 0 */

	/* Backends, most preferred first, and what their probes said. */
	const struct db_backend *order[DB_NR_MODES];
	unsigned int nr_order;
	const struct db_backend *cur;	/* in use: ctx->mode is cur->mode */
	bool usable[DB_NR_MODES];	/* by mode */
	bool probed[DB_NR_MODES];
	int32_t probe_err[DB_NR_MODES];	/* 0 if usable, -ECANCELED if never probed */

	struct kvm_dirtybatch_info minfo;
	char *device_path;

	/* Layout. */
	struct db_slot **by_id;		/* sorted by slot number */
	struct db_slot **by_gpa;	/* sorted by (as_id, gpa) */
	uint32_t nslots;
	uint32_t slot_cap;		/* room in by_id, by_gpa and dirty */
	struct db_slot *last;		/* lookup cache */
	struct db_slot **dirty;		/* slots that may have queued pages */
	uint32_t ndirty;
	uint64_t worst_ranges;		/* ranges a submit may need, at most */

	/* KVM_CLEAR_DIRTY_LOG_BATCH, when native is usable. */
	uint32_t native_max_ranges;
	uint32_t native_abi_version;

	/* Batch submit buffers, shared by native and the module. */
	unsigned char *ranges;		/* range_cap entries, stride bytes apart */
	struct db_slot **range_slot;	/* owner of each entry */
	uint32_t range_cap;
	uint32_t stride;
	uint64_t max_piece_words;	/* longest range, in words */
	uint64_t max_bytes;		/* bitmap bytes per call */

	uint64_t gen;			/* submit generation */
	struct dirtybatch_stats stats;

	const struct dirtybatch_backend *be;
	void *be_priv;
};

/* backend.c */
void db_select(struct dirtybatch_ctx *ctx);
int db_probe(struct dirtybatch_ctx *ctx, const struct db_backend *b);
void db_release_all(struct dirtybatch_ctx *ctx);
int db_adopt_info(struct dirtybatch_ctx *ctx, const struct kvm_dirtybatch_info *info);
uint32_t db_batch_max_ranges(const struct dirtybatch_ctx *ctx);
int db_demote(struct dirtybatch_ctx *ctx, int err);

/* layout.c */
struct db_slot *db_find_slot(struct dirtybatch_ctx *ctx, uint32_t slot);
int64_t db_find_gpa(const struct dirtybatch_ctx *ctx, uint32_t as_id, uint64_t gpa);
int db_size_ranges(struct dirtybatch_ctx *ctx, uint64_t worst, bool exact);
void db_recount_worst(struct dirtybatch_ctx *ctx);
void db_free_slot(struct db_slot *s);

/* submit.c */
int db_submit_fallback(struct dirtybatch_ctx *ctx, struct dirtybatch_result *r);
int db_submit_module(struct dirtybatch_ctx *ctx, struct dirtybatch_result *r);
int db_submit_native(struct dirtybatch_ctx *ctx, struct dirtybatch_result *r);

/* queue.c */
uint64_t db_ctx_count(const struct dirtybatch_ctx *ctx);
void db_compact_dirty(struct dirtybatch_ctx *ctx);
void db_reset_dirty(struct dirtybatch_ctx *ctx);
void db_unlist(struct dirtybatch_ctx *ctx, struct db_slot *s);

/*
 * Sized structures across the API (libbpf's OPTS_VALID): an input is
 * valid if it is at least @min bytes and every byte past what the
 * library knows (@known) is zero.  Returns 0, -EINVAL or -E2BIG.
 */
int db_in_valid(const void *p, size_t sz, size_t min, size_t known);

/* Copy @known bytes of the library's @src to the caller's @dst of @sz
 * bytes (its sz kept), zeroing any tail the library does not know. */
void db_out_copy(void *dst, size_t sz, const void *src, size_t known);

#define db_offsetofend(type, member) \
	(offsetof(type, member) + sizeof(((type *)0)->member))

/* find_slot(), with its cache check inline: callers add runs one by one. */
static inline struct db_slot *db_lookup_slot(struct dirtybatch_ctx *ctx, uint32_t slot)
{
	struct db_slot *s = ctx->last;

	return s && s->slot == slot ? s : db_find_slot(ctx, slot);
}

#endif /* DB_CTX_H */
