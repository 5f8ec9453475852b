/* SPDX-License-Identifier: LGPL-2.1 OR MIT */
/*
 * libdirtybatch internals shared with the unit tests and the
 * microbenchmark.  Nothing here is exported from libdirtybatch.so: the
 * symbols have hidden visibility and are not in libdirtybatch.map.  The
 * tests link the library objects statically to reach them.
 */
#ifndef DIRTYBATCH_INTERNAL_H
#define DIRTYBATCH_INTERNAL_H

#include <linux/kvm.h>
#include <linux/kvm_dirtybatch.h>
#include <linux/kvm_clear_dirty_log_batch.h>

#include "dirtybatch.h"

/*
 * Without the module, runs of queued words at most this many zero words
 * apart in a memslot go in one KVM_CLEAR_DIRTY_LOG.  A zero word costs KVM
 * 8 bytes of copy_from_user() and one test; a call costs a syscall,
 * slots_lock, the MMU lock and, when it clears anything, a TLB flush.
 * 512 words are one page of bitmap (32768 pages, 128 MiB of guest memory).
 */
#define DB_FALLBACK_GAP_WORDS	512

/*
 * With the module, runs at most this many zero words apart go in one range
 * (within the module's bitmap limit per range).  A range costs the module
 * its own copy_from_user() of the bitmap, a memslot lookup and a loop; a
 * zero word 8 bytes of that copy and one test.
 */
#define DB_MODULE_GAP_WORDS	16

/*
 * Where the library sends its requests.  The default backend is the real
 * ioctls; tests substitute recorders that check every request against
 * KVM's rules.  The callbacks return 0 or a negative errno.  batch_clear
 * must fill c->pages_cleared on success and c->error_index as the module
 * does.  native_probe confirms KVM_CLEAR_DIRTY_LOG_BATCH for @vm_fd (see
 * backend.c) and gives its largest batch; native_clear issues it and
 * fills b->error_index as KVM does.  A backend without native_probe has
 * no native ioctl.
 */
struct dirtybatch_backend {
	int (*clear_log)(void *priv, int vm_fd, struct kvm_clear_dirty_log *log);
	int (*batch_clear)(void *priv, int dev_fd, struct kvm_dirtybatch_clear *c);
	int (*native_probe)(void *priv, int vm_fd, uint32_t *max_ranges);
	int (*native_clear)(void *priv, int vm_fd, struct kvm_clear_dirty_log_batch *b);
};

/*
 * Replace the backend of @ctx.  If @module_info is not NULL the context
 * behaves as if the module had been detected with that GET_INFO answer
 * (and switches to module mode unless fallback is forced); this is how
 * the unit tests exercise the module path without a kernel.  The native
 * backend is probed again through @be (unusable if it has no
 * native_probe).
 */
int dirtybatch__set_backend(struct dirtybatch_ctx *ctx,
			    const struct dirtybatch_backend *be, void *priv,
			    const struct kvm_dirtybatch_info *module_info);

/* Set the gaps of @ctx (DB_FALLBACK_GAP_WORDS, DB_MODULE_GAP_WORDS by default). */
int dirtybatch__set_gaps(struct dirtybatch_ctx *ctx, uint64_t fallback_words,
			 uint64_t module_words);

#endif /* DIRTYBATCH_INTERNAL_H */
