// SPDX-License-Identifier: LGPL-2.1 OR MIT
/*
 * libdirtybatch: contexts (open, close, options, mode, info, version).
 *
 * The library keeps no state of its own outside the contexts: nothing is
 * written that two contexts share.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "summary.h"

/* Smallest struct dirtybatch_opts accepted: up to flags. */
#define DB_OPTS_SZ_MIN	db_offsetofend(struct dirtybatch_opts, flags)

int db_in_valid(const void *p, size_t sz, size_t min, size_t known)
{
	const unsigned char *b = p;

	if (sz < min)
		return -EINVAL;
	for (size_t k = known; k < sz; k++)
		if (b[k])
			return -E2BIG;
	return 0;
}

void db_out_copy(void *dst, size_t sz, const void *src, size_t known)
{
	size_t n = sz < known ? sz : known;

	/* the caller's sz stays: it is the first member of every structure */
	memcpy((unsigned char *)dst + sizeof(size_t),
	       (const unsigned char *)src + sizeof(size_t), n - sizeof(size_t));
	if (sz > known)
		memset((unsigned char *)dst + known, 0, sz - known);
}

DIRTYBATCH_API uint32_t dirtybatch_version(void)
{
	return DIRTYBATCH_VERSION_CODE;
}

/* DIRTYBATCH_BACKEND=auto|native|shim|module|fallback; -EINVAL otherwise. */
static int backend_from_env(uint32_t *kind)
{
	static const struct {
		const char *name;
		uint32_t kind;
	} names[] = {
		{ "auto", DIRTYBATCH_BACKEND_AUTO },
		{ "native", DIRTYBATCH_BACKEND_NATIVE },
		{ "shim", DIRTYBATCH_BACKEND_SHIM },
		{ "module", DIRTYBATCH_BACKEND_SHIM },
		{ "fallback", DIRTYBATCH_BACKEND_FALLBACK },
	};
	const char *e = secure_getenv("DIRTYBATCH_BACKEND");

	if (!e || !*e)
		return 0;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!strcmp(e, names[i].name)) {
			*kind = names[i].kind;
			return 0;
		}
	}
	return -EINVAL;
}

/* ctx->order for a forced backend kind (AUTO: all, best first). */
static void set_order(struct dirtybatch_ctx *ctx, uint32_t kind)
{
	unsigned int n = 0;

	if (kind == DIRTYBATCH_BACKEND_AUTO || kind == DIRTYBATCH_BACKEND_NATIVE)
		ctx->order[n++] = &db_native_backend;
	if (kind == DIRTYBATCH_BACKEND_AUTO || kind == DIRTYBATCH_BACKEND_SHIM)
		ctx->order[n++] = &db_shim_backend;
	/* last resort of every order: a demoted context ends here */
	ctx->order[n++] = &db_fallback_backend;
	ctx->nr_order = n;
}

/* Probe every backend of the order not yet usable (not a demoted one). */
static void probe_all(struct dirtybatch_ctx *ctx)
{
	for (unsigned int i = 0; i < ctx->nr_order; i++) {
		const struct db_backend *b = ctx->order[i];

		if (!ctx->usable[b->mode] && !(ctx->demoted && ctx->probed[b->mode]))
			db_probe(ctx, b);
	}
}

DIRTYBATCH_API int dirtybatch_open(int vm_fd, const struct dirtybatch_opts *opts,
				   struct dirtybatch_ctx **ctxp)
{
	struct dirtybatch_opts o;
	struct dirtybatch_ctx *ctx;
	int saved_errno = errno;
	uint32_t kind;
	long ps;
	int err;

	if (!ctxp)
		return -EINVAL;
	*ctxp = NULL;
	if (vm_fd < 0)
		return -EBADF;
	memset(&o, 0, sizeof(o));
	if (opts) {
		err = db_in_valid(opts, opts->sz, DB_OPTS_SZ_MIN, sizeof(o));
		if (err)
			return err;
		memcpy(&o, opts, opts->sz < sizeof(o) ? opts->sz : sizeof(o));
	}
	if (o.flags & ~(DIRTYBATCH_OPEN_FALLBACK | DIRTYBATCH_OPEN_DEVICE_FD))
		return -EINVAL;
	if ((o.flags & DIRTYBATCH_OPEN_DEVICE_FD) && (o.device_fd < 0 || o.device_path))
		return o.device_fd < 0 ? -EBADF : -EINVAL;
	if (o.backend > DIRTYBATCH_BACKEND_FALLBACK)
		return -EINVAL;
	kind = o.backend;
	if (kind == DIRTYBATCH_BACKEND_AUTO) {
		err = backend_from_env(&kind);
		if (err)
			return err;
	}
	ps = o.page_size;
	if (!ps) {
		ps = sysconf(_SC_PAGESIZE);
		if (ps <= 0)
			ps = 4096;
	}
	if (ps < 512 || ps > (1L << 30) || (ps & (ps - 1)))
		return -EINVAL;

	ctx = calloc(1, sizeof(*ctx));
	if (!ctx) {
		errno = saved_errno;
		return -ENOMEM;
	}
	ctx->vm_fd = vm_fd;
	ctx->dev_fd = -1;
	ctx->caller_dev_fd = (o.flags & DIRTYBATCH_OPEN_DEVICE_FD) ? o.device_fd : -1;
	ctx->fallback_gap = DB_FALLBACK_GAP_WORDS;
	ctx->module_gap = DB_MODULE_GAP_WORDS;
	ctx->page_size = (uint32_t)ps;
	ctx->page_shift = (unsigned int)__builtin_ctzl((unsigned long)ps);
	ctx->be = &db_sys_ops;
	ctx->max_piece_words = 1;
	ctx->stats.sz = sizeof(ctx->stats);
	ctx->forced_backend = kind;
	for (int m = 0; m < DB_NR_MODES; m++)
		ctx->probe_err[m] = -ECANCELED;
	set_order(ctx, kind);
	db_probe(ctx, &db_fallback_backend);
	if (o.device_path) {
		ctx->device_path = strdup(o.device_path);
		if (!ctx->device_path) {
			free(ctx);
			errno = saved_errno;
			return -ENOMEM;
		}
	}
	if (o.flags & DIRTYBATCH_OPEN_FALLBACK)
		ctx->force_fallback = true;	/* probe later, on request */
	else
		probe_all(ctx);
	db_select(ctx);
	/* a forced backend that does not work is the caller's error */
	if (!ctx->force_fallback && kind != DIRTYBATCH_BACKEND_AUTO &&
	    ctx->cur != ctx->order[0]) {
		err = ctx->probe_err[ctx->order[0]->mode];
		dirtybatch_close(ctx);
		errno = saved_errno;
		return err;
	}
	*ctxp = ctx;
	errno = saved_errno;
	return 0;
}

DIRTYBATCH_API void dirtybatch_close(struct dirtybatch_ctx *ctx)
{
	int saved_errno = errno;
	uint32_t i;

	if (!ctx)
		return;
	db_release_all(ctx);
	for (i = 0; i < ctx->nslots; i++)
		db_free_slot(ctx->by_id[i]);
	free(ctx->by_id);
	free(ctx->by_gpa);
	free(ctx->dirty);
	free(ctx->ranges);
	free(ctx->range_slot);
	free(ctx->device_path);
	free(ctx);
	errno = saved_errno;
}

DIRTYBATCH_API int dirtybatch_mode(const struct dirtybatch_ctx *ctx)
{
	return ctx ? ctx->mode : -EINVAL;
}

DIRTYBATCH_API int dirtybatch_set_fallback(struct dirtybatch_ctx *ctx, bool force)
{
	int saved_errno = errno;

	if (!ctx)
		return -EINVAL;
	ctx->force_fallback = force;
	/* never tried, or not found then: a backend may be there now */
	if (!force)
		probe_all(ctx);
	db_select(ctx);
	errno = saved_errno;
	return ctx->mode;
}

DIRTYBATCH_API int dirtybatch_get_info(const struct dirtybatch_ctx *ctx,
				       struct dirtybatch_info *info)
{
	struct dirtybatch_info i;

	if (!ctx || !info || info->sz < db_offsetofend(struct dirtybatch_info, sz))
		return -EINVAL;
	memset(&i, 0, sizeof(i));
	i.sz = sizeof(i);
	i.mode = (uint32_t)ctx->mode;
	if (ctx->usable[DIRTYBATCH_MODE_MODULE]) {
		i.flags |= DIRTYBATCH_INFO_MODULE_PRESENT;
		i.module_abi_version = ctx->minfo.abi_version;
		i.module_features = ctx->minfo.features;
		i.module_max_ranges = ctx->minfo.max_ranges;
		i.module_max_bitmap_bytes = ctx->minfo.max_bitmap_bytes;
	}
	if (ctx->usable[DIRTYBATCH_MODE_NATIVE]) {
		i.flags |= DIRTYBATCH_INFO_NATIVE_PRESENT;
		i.native_abi_version = ctx->native_abi_version;
		i.native_max_ranges = ctx->native_max_ranges;
	}
	if (ctx->demoted)
		i.flags |= DIRTYBATCH_INFO_DEMOTED;
	if (ctx->mode != DIRTYBATCH_MODE_FALLBACK)
		i.fallback_reason = 0;
	else if (ctx->force_fallback || ctx->forced_backend == DIRTYBATCH_BACKEND_FALLBACK)
		i.fallback_reason = -ECANCELED;
	else if (ctx->forced_backend == DIRTYBATCH_BACKEND_NATIVE)
		i.fallback_reason = ctx->probe_err[DIRTYBATCH_MODE_NATIVE];
	else
		i.fallback_reason = ctx->probe_err[DIRTYBATCH_MODE_MODULE];
	i.native_reason = ctx->mode == DIRTYBATCH_MODE_NATIVE ? 0 :
		ctx->probe_err[DIRTYBATCH_MODE_NATIVE];
	i.backend = ctx->forced_backend;
	i.page_size = ctx->page_size;
	i.nr_slots = ctx->nslots;
	db_out_copy(info, info->sz, &i, sizeof(i));
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Test hooks (dirtybatch_internal.h).                                    */

int dirtybatch__set_backend(struct dirtybatch_ctx *ctx,
			    const struct dirtybatch_backend *be, void *priv,
			    const struct kvm_dirtybatch_info *module_info)
{
	int err;

	if (!ctx)
		return -EINVAL;
	ctx->be = be ? be : &db_sys_ops;
	ctx->be_priv = priv;
	if (module_info) {
		err = db_adopt_info(ctx, module_info);
		if (err)
			return err;
		ctx->usable[DIRTYBATCH_MODE_MODULE] = true;
		ctx->probed[DIRTYBATCH_MODE_MODULE] = true;
		ctx->probe_err[DIRTYBATCH_MODE_MODULE] = 0;
		/* the stride may have changed: reallocate */
		free(ctx->ranges);
		free(ctx->range_slot);
		ctx->ranges = NULL;
		ctx->range_slot = NULL;
		ctx->range_cap = 0;
		db_recount_worst(ctx);
		err = db_size_ranges(ctx, ctx->worst_ranges, true);
		if (err)
			return err;
	}
	/* native goes through @be too: ask it again */
	db_native_backend.release(ctx);
	for (unsigned int n = 0; n < ctx->nr_order; n++)
		if (ctx->order[n] == &db_native_backend)
			db_probe(ctx, &db_native_backend);
	db_select(ctx);
	return 0;
}

int dirtybatch__set_gaps(struct dirtybatch_ctx *ctx, uint64_t fallback_words,
			 uint64_t module_words)
{
	if (!ctx)
		return -EINVAL;
	ctx->fallback_gap = fallback_words;
	ctx->module_gap = module_words;
	return 0;
}
