// SPDX-License-Identifier: LGPL-2.1 OR MIT
/*
 * libdirtybatch: the backends, in their order of preference.
 *
 *  1. native: a batch ioctl of KVM itself, on the VM file descriptor.  Not
 *     yet available: its probe always answers -EOPNOTSUPP, so that the
 *     place and the order exist before the kernel side does.
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

const struct dirtybatch_backend db_sys_ops = {
	.clear_log = sys_clear_log,
	.batch_clear = sys_batch_clear,
};

/* ---------------------------------------------------------------------- */
/* native                                                                 */

static int native_probe(struct dirtybatch_ctx *ctx)
{
	(void)ctx;
	return -EOPNOTSUPP;
}

static void native_release(struct dirtybatch_ctx *ctx)
{
	(void)ctx;
}

static int native_submit(struct dirtybatch_ctx *ctx, struct dirtybatch_result *r)
{
	(void)ctx;
	(void)r;
	return -EOPNOTSUPP;
}

const struct db_backend db_native_backend = {
	.name = "native",
	.mode = DIRTYBATCH_MODE_NATIVE,
	.probe = native_probe,
	.release = native_release,
	.submit = native_submit,
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
	db_size_ranges(ctx, 0, true);	/* frees, cannot fail */
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
