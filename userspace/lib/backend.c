// SPDX-License-Identifier: LGPL-2.1 OR MIT
/*
 * libdirtybatch: the backends, in their order of preference.
 *
 *  1. native: KVM_CLEAR_DIRTY_LOG_BATCH, KVM's own batch ioctl on the VM
 *     file descriptor (a kernel with module/native/patches applied, or
 *     the patched KVM modules of `make kvm-modules`).  Its numbers are
 *     not upstream's yet, so it is used only once confirmed positively
 *     (sys_native_probe()).
 *  2. shim: the kvm_dirtybatch module, KVM_DIRTYBATCH_CLEAR on its device
 *     (/dev/kvm_dirtybatch, or a descriptor the caller opened).
 *  3. fallback: plain KVM_CLEAR_DIRTY_LOG, always usable.
 *
 * A context probes the ones it may use at open (all of them, or the one
 * forced by dirtybatch_opts.backend or DIRTYBATCH_BACKEND) and uses the
 * first usable one.  A batch call that the kernel does not understand
 * (-ENOTTY, -EOPNOTSUPP: module unloaded, or replaced by one without the
 * feature) demotes the context for good (db_demote()).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "summary.h"

/* ---------------------------------------------------------------------- */
/* The real ioctls.                                                       */

static int sys_clear_log(void *priv, int vm_fd, struct kvm_clear_dirty_log *log)
{
	(void)priv;
	for (;;) {
		if (ioctl(vm_fd, KVM_CLEAR_DIRTY_LOG, log) == 0)
			return 0;
		if (errno != EINTR)
			return -errno;
	}
}

static int sys_batch_clear(void *priv, int dev_fd, struct kvm_dirtybatch_clear *c)
{
	(void)priv;
	for (;;) {
		if (ioctl(dev_fd, KVM_DIRTYBATCH_CLEAR, c) == 0)
			return 0;
		/* The module applies nothing on error: retrying is safe. */
		if (errno != EINTR)
			return -errno;
	}
}

/* -ENOTTY, -EINVAL: a kernel without the ioctl or the capability. */
static int not_native(int err)
{
	return err == -ENOTTY || err == -EINVAL ? -EOPNOTSUPP : err;
}

/*
 * Confirm KVM_CLEAR_DIRTY_LOG_BATCH (Documentation/kvm_dirtybatch.rst,
 * "Native backend"): the capability must report a largest batch, and the
 * ioctl with KVM_CLEAR_DIRTY_LOG_BATCH_QUERY must answer our magic and ABI
 * version.  The query goes to a VM created for it, without memslots or
 * vCPUs, never to the caller's: on a kernel that gave these numbers to
 * something else the ioctl must not touch a running guest.
 */
static int sys_native_probe(void *priv, int vm_fd, uint32_t *max_ranges)
{
	struct kvm_clear_dirty_log_batch q;
	int cap, kvm, vm, err = 0;

	(void)priv;
	cap = ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_CLEAR_DIRTY_LOG_BATCH);
	if (cap < 0)
		return not_native(-errno);
	if (cap == 0)
		return -EOPNOTSUPP;
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		return -errno;
	do {
		vm = ioctl(kvm, KVM_CREATE_VM, 0);
	} while (vm < 0 && errno == EINTR);
	if (vm < 0)
		err = -errno;
	close(kvm);
	if (err)
		return err;
	memset(&q, 0, sizeof(q));
	q.flags = KVM_CLEAR_DIRTY_LOG_BATCH_QUERY;
	if (ioctl(vm, KVM_CLEAR_DIRTY_LOG_BATCH, &q) < 0)
		err = not_native(-errno);
	else if (q.magic != KVM_CLEAR_DIRTY_LOG_BATCH_MAGIC)
		err = -EOPNOTSUPP;	/* someone else's ioctl */
	else if (q.abi_version != KVM_CLEAR_DIRTY_LOG_BATCH_ABI_VERSION)
		err = -EPROTO;
	close(vm);
	if (!err)
		*max_ranges = (uint32_t)cap;
	return err;
}

static int sys_native_clear(void *priv, int vm_fd, struct kvm_clear_dirty_log_batch *b)
{
	(void)priv;
	for (;;) {
		if (ioctl(vm_fd, KVM_CLEAR_DIRTY_LOG_BATCH, b) == 0)
			return 0;
		/* KVM applies nothing on error: retrying is safe. */
		if (errno != EINTR)
			return -errno;
	}
}

const struct dirtybatch_backend db_sys_ops = {
	.clear_log = sys_clear_log,
	.batch_clear = sys_batch_clear,
	.native_probe = sys_native_probe,
	.native_clear = sys_native_clear,
};

/* The same array serves both batch ioctls: their ranges are one layout. */
_Static_assert(sizeof(struct kvm_clear_dirty_log_range) ==
	       sizeof(struct kvm_dirtybatch_range) &&
	       offsetof(struct kvm_clear_dirty_log_range, dirty_bitmap) ==
	       offsetof(struct kvm_dirtybatch_range, dirty_bitmap) &&
	       offsetof(struct kvm_clear_dirty_log_range, first_page) ==
	       offsetof(struct kvm_dirtybatch_range, first_page),
	       "native and module ranges differ");

/* Ranges per batch call: the smallest limit of the usable batch backends. */
uint32_t db_batch_max_ranges(const struct dirtybatch_ctx *ctx)
{
	uint32_t max = 0;

	if (ctx->usable[DIRTYBATCH_MODE_NATIVE])
		max = ctx->native_max_ranges;
	if (ctx->usable[DIRTYBATCH_MODE_MODULE] &&
	    (!max || ctx->minfo.max_ranges < max))
		max = ctx->minfo.max_ranges;
	return max;
}

/* ---------------------------------------------------------------------- */
/* native                                                                 */

static void native_release(struct dirtybatch_ctx *ctx)
{
	ctx->usable[DIRTYBATCH_MODE_NATIVE] = false;
	ctx->native_max_ranges = 0;
	ctx->native_abi_version = 0;
	db_size_ranges(ctx, ctx->worst_ranges, true);	/* shrinks: cannot fail */
}

static int native_probe(struct dirtybatch_ctx *ctx)
{
	const size_t stride = sizeof(struct kvm_clear_dirty_log_range);
	uint32_t max = 0;
	int err;

	if (!ctx->be->native_probe || !ctx->be->native_clear)
		return -EOPNOTSUPP;
	/* a module that wants wider ranges cannot share the array */
	if (ctx->usable[DIRTYBATCH_MODE_MODULE] && ctx->stride != stride)
		return -EPROTO;
	err = ctx->be->native_probe(ctx->be_priv, ctx->vm_fd, &max);
	if (err)
		return err;
	if (!max)
		return -EPROTO;
	ctx->stride = (uint32_t)stride;
	ctx->native_max_ranges = max;
	ctx->native_abi_version = KVM_CLEAR_DIRTY_LOG_BATCH_ABI_VERSION;
	if (!ctx->usable[DIRTYBATCH_MODE_MODULE]) {
		/* KVM's own limits: num_pages is 32 bits, no bitmap cap */
		ctx->max_piece_words = UINT32_MAX >> 6;
		ctx->max_bytes = UINT64_MAX;
	}
	ctx->usable[DIRTYBATCH_MODE_NATIVE] = true;
	db_recount_worst(ctx);
	err = db_size_ranges(ctx, ctx->worst_ranges, true);
	if (err)
		native_release(ctx);
	return err;
}

const struct db_backend db_native_backend = {
	.name = "native",
	.mode = DIRTYBATCH_MODE_NATIVE,
	.probe = native_probe,
	.release = native_release,
	.submit = db_submit_native,
};

/* ---------------------------------------------------------------------- */
/* shim: the kvm_dirtybatch module                                        */

/* Adopt a GET_INFO answer; returns 0 or why the module is unusable. */
int db_adopt_info(struct dirtybatch_ctx *ctx, const struct kvm_dirtybatch_info *info)
{
	uint64_t stride;

	if (info->abi_version != KVM_DIRTYBATCH_ABI_VERSION)
		return -EPROTO;
	if (!(info->features & KVM_DIRTYBATCH_FEAT_CLEAR))
		return -EOPNOTSUPP;
	if (!info->max_ranges || info->max_bitmap_bytes < 8)
		return -EPROTO;
	stride = sizeof(struct kvm_dirtybatch_range);
	/* A newer module with a larger range accepts zeroed extra bytes. */
	if (info->range_size > stride)
		stride = (info->range_size + 7) & ~7ULL;
	if (stride > 4096)
		return -EPROTO;
	/* native ranges are exactly 24 bytes, and the array is shared */
	if (ctx->usable[DIRTYBATCH_MODE_NATIVE] && stride != ctx->stride)
		return -EPROTO;
	ctx->minfo = *info;
	ctx->stride = (uint32_t)stride;
	ctx->max_bytes = info->max_bitmap_bytes;
	ctx->max_piece_words = info->max_bitmap_bytes / 8;
	/* num_pages is 32 bits; slots are < 2^31 pages, so this never binds */
	if (ctx->max_piece_words > (UINT32_MAX >> 6))
		ctx->max_piece_words = UINT32_MAX >> 6;
	return 0;
}

static void shim_release(struct dirtybatch_ctx *ctx)
{
	if (ctx->dev_fd >= 0 && ctx->dev_fd_owned)
		close(ctx->dev_fd);
	ctx->dev_fd = -1;
	ctx->dev_fd_owned = false;
	ctx->usable[DIRTYBATCH_MODE_MODULE] = false;
	db_size_ranges(ctx, ctx->worst_ranges, true);	/* shrinks: cannot fail */
}

static int shim_probe(struct dirtybatch_ctx *ctx)
{
	struct kvm_dirtybatch_info info;
	bool owned = ctx->caller_dev_fd < 0;
	int fd, err;

	if (owned) {
		fd = open(ctx->device_path ? ctx->device_path : DB_DEVICE_PATH,
			  O_RDWR | O_CLOEXEC);
		if (fd < 0)
			return -errno;
	} else {
		fd = ctx->caller_dev_fd;
	}
	memset(&info, 0, sizeof(info));
	if (ioctl(fd, KVM_DIRTYBATCH_GET_INFO, &info) < 0)
		err = -errno;
	else
		err = db_adopt_info(ctx, &info);
	if (err) {
		if (owned)
			close(fd);
		return err;
	}
	ctx->dev_fd = fd;
	ctx->dev_fd_owned = owned;
	ctx->usable[DIRTYBATCH_MODE_MODULE] = true;
	db_recount_worst(ctx);
	err = db_size_ranges(ctx, ctx->worst_ranges, true);
	if (err)
		shim_release(ctx);	/* usable later, once memory allows */
	return err;
}

const struct db_backend db_shim_backend = {
	.name = "shim",
	.mode = DIRTYBATCH_MODE_MODULE,
	.probe = shim_probe,
	.release = shim_release,
	.submit = db_submit_module,
};

/* ---------------------------------------------------------------------- */
/* fallback                                                               */

static int fallback_probe(struct dirtybatch_ctx *ctx)
{
	(void)ctx;
	return 0;
}

static void fallback_release(struct dirtybatch_ctx *ctx)
{
	(void)ctx;
}

const struct db_backend db_fallback_backend = {
	.name = "fallback",
	.mode = DIRTYBATCH_MODE_FALLBACK,
	.probe = fallback_probe,
	.release = fallback_release,
	.submit = db_submit_fallback,
};

/* ---------------------------------------------------------------------- */
/* Selection.                                                             */

/* Probe @b for @ctx and note the answer; 0 if usable. */
int db_probe(struct dirtybatch_ctx *ctx, const struct db_backend *b)
{
	int err = b->probe(ctx);

	ctx->probed[b->mode] = true;
	ctx->probe_err[b->mode] = err;
	ctx->usable[b->mode] = !err;
	return err;
}

/* Use the first usable backend of ctx->order (fallback if forced). */
void db_select(struct dirtybatch_ctx *ctx)
{
	ctx->cur = &db_fallback_backend;
	for (unsigned int i = 0; i < ctx->nr_order; i++) {
		const struct db_backend *b = ctx->order[i];

		if (ctx->force_fallback && b->mode != DIRTYBATCH_MODE_FALLBACK)
			continue;
		if (ctx->usable[b->mode]) {
			ctx->cur = b;
			break;
		}
	}
	ctx->mode = ctx->cur->mode;
}

/*
 * The backend in use answered @err to a batch call it should know: it
 * applied nothing.  Never use it again on this context; what is queued
 * stays queued for the next one in the order (in the end, fallback).
 */
int db_demote(struct dirtybatch_ctx *ctx, int err)
{
	const struct db_backend *b = ctx->cur;

	b->release(ctx);
	ctx->usable[b->mode] = false;
	ctx->probe_err[b->mode] = err;
	ctx->demoted = err;
	db_select(ctx);
	return ctx->mode;
}

void db_release_all(struct dirtybatch_ctx *ctx)
{
	for (unsigned int i = 0; i < ctx->nr_order; i++)
		ctx->order[i]->release(ctx);
}
