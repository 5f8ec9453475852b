// SPDX-License-Identifier: LGPL-2.1 OR MIT
/*
 * Opening and backends: module detection, opts.device_fd, the choice of
 * native, shim or fallback, and demotion when a batch ioctl goes away.
 */
#include <fcntl.h>
#include <unistd.h>

#include "fake_kernel.h"
#include "unit.h"

void test_open_detection(void)
{
	struct dirtybatch_ctx *ctx = NULL;
	struct dirtybatch_opts o = { .sz = sizeof(o), .device_path = "/nonexistent/kvm_dirtybatch" };
	struct dirtybatch_info info = { .sz = sizeof(info) };
	bool ok = true;
	int r;

	errno = 99;
	r = dirtybatch_open(FAKE_VM_FD, &o, &ctx);
	ok &= !r && errno == 99;
	ok &= dirtybatch_mode(ctx) == DIRTYBATCH_MODE_FALLBACK;
	dirtybatch_get_info(ctx, &info);
	ok &= info.fallback_reason == -ENOENT && !(info.flags & DIRTYBATCH_INFO_MODULE_PRESENT) &&
	      info.page_size == (uint32_t)sysconf(_SC_PAGESIZE);
	ok &= dirtybatch_set_fallback(ctx, false) == DIRTYBATCH_MODE_FALLBACK;
	dirtybatch_get_info(ctx, &info);
	ok &= info.fallback_reason == -ENOENT;	/* looked again, still absent */
	dirtybatch_close(ctx);
	unit_ok(ok, "absent device: fallback mode, reason -ENOENT, errno kept");

	ok = true;
	o.device_path = "/dev/null";	/* GET_INFO is not answered */
	ok &= !dirtybatch_open(FAKE_VM_FD, &o, &ctx);
	dirtybatch_get_info(ctx, &info);
	ok &= info.mode == DIRTYBATCH_MODE_FALLBACK && info.fallback_reason == -ENOTTY;
	dirtybatch_close(ctx);
	o.flags = DIRTYBATCH_OPEN_FALLBACK;	/* detect later, on request */
	ok &= !dirtybatch_open(FAKE_VM_FD, &o, &ctx);
	dirtybatch_get_info(ctx, &info);
	ok &= info.fallback_reason == -ECANCELED;
	ok &= dirtybatch_set_fallback(ctx, false) == DIRTYBATCH_MODE_FALLBACK;
	dirtybatch_get_info(ctx, &info);
	ok &= info.fallback_reason == -ENOTTY;
	dirtybatch_close(ctx);
	o.flags = 0;
	unit_ok(ok, "device that does not answer GET_INFO: fallback, reason -ENOTTY");

	ok = true;
	o.flags = DIRTYBATCH_OPEN_FALLBACK;
	o.device_path = NULL;
	ok &= !dirtybatch_open(FAKE_VM_FD, &o, &ctx);
	dirtybatch_get_info(ctx, &info);
	ok &= info.mode == DIRTYBATCH_MODE_FALLBACK && info.fallback_reason == -ECANCELED;
	{
		struct kvm_dirtybatch_info mi = { .abi_version = 2,
			.features = KVM_DIRTYBATCH_FEAT_CLEAR, .max_ranges = 1,
			.range_size = 24, .max_bitmap_bytes = 8 };

		ok &= dirtybatch__set_backend(ctx, NULL, NULL, &mi) == -EPROTO;
		mi.abi_version = 1;
		mi.features = 0;
		ok &= dirtybatch__set_backend(ctx, NULL, NULL, &mi) == -EOPNOTSUPP;
		mi.features = KVM_DIRTYBATCH_FEAT_CLEAR;
		ok &= dirtybatch__set_backend(ctx, NULL, NULL, &mi) == 0;
		ok &= dirtybatch_mode(ctx) == DIRTYBATCH_MODE_FALLBACK;	/* still forced */
		ok &= dirtybatch_set_fallback(ctx, false) == DIRTYBATCH_MODE_MODULE;
		dirtybatch_get_info(ctx, &info);
		ok &= info.fallback_reason == 0 && (info.flags & DIRTYBATCH_INFO_MODULE_PRESENT) &&
		      info.module_abi_version == 1;
		ok &= dirtybatch_set_fallback(ctx, true) == DIRTYBATCH_MODE_FALLBACK;
		dirtybatch_get_info(ctx, &info);
		ok &= info.fallback_reason == -ECANCELED && (info.flags & DIRTYBATCH_INFO_MODULE_PRESENT);
	}
	dirtybatch_close(ctx);
	unit_ok(ok, "forced fallback, ABI and feature checks, switching modes");

	ok = true;
	ok &= dirtybatch_open(-1, NULL, &ctx) == -EBADF && ctx == NULL;
	ok &= dirtybatch_open(FAKE_VM_FD, NULL, NULL) == -EINVAL;
	o = (struct dirtybatch_opts){ .sz = sizeof(o), .page_size = 3000 };
	ok &= dirtybatch_open(FAKE_VM_FD, &o, &ctx) == -EINVAL;
	o = (struct dirtybatch_opts){ .sz = sizeof(o), .flags = 0x80 };
	ok &= dirtybatch_open(FAKE_VM_FD, &o, &ctx) == -EINVAL;
	{
		struct { struct dirtybatch_opts o; uint64_t extra; } big = {
			.o = { .sz = sizeof(big), .flags = DIRTYBATCH_OPEN_FALLBACK }, .extra = 1 };

		ok &= dirtybatch_open(FAKE_VM_FD, &big.o, &ctx) == -E2BIG;
		big.extra = 0;
		ok &= dirtybatch_open(FAKE_VM_FD, &big.o, &ctx) == 0;
		dirtybatch_close(ctx);
	}
	ok &= dirtybatch_mode(NULL) == -EINVAL && dirtybatch_submit(NULL, NULL) == -EINVAL &&
	      dirtybatch_add_pages(NULL, 0, 0, 1) == -EINVAL && dirtybatch_pending(NULL) == 0;
	dirtybatch_close(NULL);
	unit_ok(ok, "argument checks of open and NULL contexts");
}

/* A sandboxed VMM passes the module's device already open. */
void test_device_fd(void)
{
	struct dirtybatch_opts o = { .sz = sizeof(o), .flags = DIRTYBATCH_OPEN_DEVICE_FD };
	struct dirtybatch_info info = { .sz = sizeof(info) };
	struct dirtybatch_ctx *ctx = NULL;
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	bool ok = fd >= 0;

	/* /dev/null does not answer GET_INFO; the default path is absent */
	o.device_fd = fd;
	ok &= dirtybatch_open(FAKE_VM_FD, &o, &ctx) == 0;
	dirtybatch_get_info(ctx, &info);
	ok &= info.mode == DIRTYBATCH_MODE_FALLBACK && info.fallback_reason == -ENOTTY;
	dirtybatch_close(ctx);
	ok &= fcntl(fd, F_GETFD) >= 0;	/* the caller's: not closed */
	o.device_fd = -1;
	ok &= dirtybatch_open(FAKE_VM_FD, &o, &ctx) == -EBADF && !ctx;
	o.device_fd = fd;
	o.device_path = "/dev/null";
	ok &= dirtybatch_open(FAKE_VM_FD, &o, &ctx) == -EINVAL;
	close(fd);
	unit_ok(ok, "opts.device_fd: used instead of a path, never closed; -EBADF, -EINVAL");
}

/* Backend order, forcing through opts and DIRTYBATCH_BACKEND. */
void test_backend_choice(void)
{
	struct dirtybatch_opts o = { .sz = sizeof(o), .device_path = "/nonexistent/kvm_dirtybatch" };
	struct dirtybatch_info info = { .sz = sizeof(info) };
	struct dirtybatch_ctx *ctx = NULL;
	bool ok = true;

	unsetenv("DIRTYBATCH_BACKEND");
	ok &= dirtybatch_open(FAKE_VM_FD, &o, &ctx) == 0;
	dirtybatch_get_info(ctx, &info);
	ok &= info.mode == DIRTYBATCH_MODE_FALLBACK && info.fallback_reason == -ENOENT &&
	      info.native_reason == -EBADF && info.backend == DIRTYBATCH_BACKEND_AUTO;
	dirtybatch_close(ctx);
	o.backend = DIRTYBATCH_BACKEND_NATIVE;
	ok &= dirtybatch_open(FAKE_VM_FD, &o, &ctx) == -EBADF && !ctx;
	o.backend = DIRTYBATCH_BACKEND_SHIM;
	ok &= dirtybatch_open(FAKE_VM_FD, &o, &ctx) == -ENOENT;
	o.backend = DIRTYBATCH_BACKEND_FALLBACK + 1;
	ok &= dirtybatch_open(FAKE_VM_FD, &o, &ctx) == -EINVAL;
	o.backend = DIRTYBATCH_BACKEND_FALLBACK;
	ok &= dirtybatch_open(FAKE_VM_FD, &o, &ctx) == 0;
	dirtybatch_get_info(ctx, &info);
	ok &= info.fallback_reason == -ECANCELED && info.native_reason == -ECANCELED &&
	      info.backend == DIRTYBATCH_BACKEND_FALLBACK;
	ok &= dirtybatch_set_fallback(ctx, false) == DIRTYBATCH_MODE_FALLBACK;
	dirtybatch_close(ctx);

	o.backend = DIRTYBATCH_BACKEND_AUTO;
	setenv("DIRTYBATCH_BACKEND", "fallback", 1);
	ok &= dirtybatch_open(FAKE_VM_FD, &o, &ctx) == 0;
	dirtybatch_get_info(ctx, &info);
	ok &= info.backend == DIRTYBATCH_BACKEND_FALLBACK && info.fallback_reason == -ECANCELED;
	dirtybatch_close(ctx);
	setenv("DIRTYBATCH_BACKEND", "native", 1);
	ok &= dirtybatch_open(FAKE_VM_FD, &o, &ctx) == -EBADF;
	o.backend = DIRTYBATCH_BACKEND_FALLBACK;	/* the caller's choice wins */
	ok &= dirtybatch_open(FAKE_VM_FD, &o, &ctx) == 0;
	dirtybatch_close(ctx);
	o.backend = DIRTYBATCH_BACKEND_AUTO;
	setenv("DIRTYBATCH_BACKEND", "bogus", 1);
	ok &= dirtybatch_open(FAKE_VM_FD, &o, &ctx) == -EINVAL;
	unsetenv("DIRTYBATCH_BACKEND");
	unit_ok(ok, "backends: native, shim, fallback in order; forced by opts or "
		"DIRTYBATCH_BACKEND; native never confirmed on a descriptor that is no VM");
}

/* A kernel whose batch ioctl went away after @ok_calls calls. */
struct gone {
	int err;
	int ok_calls, batch_calls, log_calls;
	uint64_t batch_pages, log_pages;
};

static uint64_t count_bits(const uint64_t *bm, uint64_t n)
{
	uint64_t c = 0;

	for (uint64_t i = 0; i < n; i++)
		c += bm[i / 64] >> (i % 64) & 1;
	return c;
}

static int gone_clear_log(void *priv, int vm_fd, struct kvm_clear_dirty_log *log)
{
	struct gone *g = priv;

	(void)vm_fd;
	g->log_calls++;
	g->log_pages += count_bits(log->dirty_bitmap, log->num_pages);
	return 0;
}

static int gone_batch(void *priv, int dev_fd, struct kvm_dirtybatch_clear *c)
{
	struct gone *g = priv;

	(void)dev_fd;
	if (g->batch_calls++ >= g->ok_calls) {
		c->error_index = c->count;
		return g->err;
	}
	c->pages_cleared = 0;
	for (uint32_t i = 0; i < c->count; i++) {
		const struct kvm_dirtybatch_range *r = (const void *)
			((const unsigned char *)(uintptr_t)c->ranges + (size_t)i * c->range_size);

		c->pages_cleared += count_bits((const uint64_t *)(uintptr_t)r->dirty_bitmap,
					       r->num_pages);
	}
	g->batch_pages += c->pages_cleared;
	c->error_index = c->count;
	return 0;
}

static const struct dirtybatch_backend gone_backend = {
	.clear_log = gone_clear_log,
	.batch_clear = gone_batch,
};

void test_demotion(void)
{
	static const int errs[] = { -ENOTTY, -EOPNOTSUPP, -EFAULT };
	struct dirtybatch_memslot d[] = { MS(.slot = 1, .npages = 64 * 100) };
	struct kvm_dirtybatch_info mi = { .abi_version = 1, .size = sizeof(mi),
		.features = KVM_DIRTYBATCH_FEAT_CLEAR, .max_ranges = 2,
		.range_size = 24, .max_bitmap_bytes = 1 << 20 };
	bool ok = true;

	for (int e = 0; e < 3; e++) {
		struct dirtybatch_opts o = { .sz = sizeof(o), .flags = DIRTYBATCH_OPEN_FALLBACK };
		struct dirtybatch_result res = { .sz = sizeof(res) };
		struct dirtybatch_info info = { .sz = sizeof(info) };
		struct gone g = { .err = errs[e], .ok_calls = 1 };
		struct dirtybatch_ctx *ctx;
		int64_t r;

		dirtybatch_open(FAKE_VM_FD, &o, &ctx);
		dirtybatch__set_backend(ctx, &gone_backend, &g, &mi);
		dirtybatch_set_fallback(ctx, false);
		ok &= dirtybatch_mode(ctx) == DIRTYBATCH_MODE_MODULE;
		dirtybatch_set_layout(ctx, d, 1);
		/* 5 ranges far apart: 3 calls of at most 2; the second fails */
		for (uint64_t k = 0; k < 5; k++)
			dirtybatch_add_pages(ctx, 1, k * 64 * 20, 3);
		r = dirtybatch_submit(ctx, &res);
		dirtybatch_get_info(ctx, &info);
		if (errs[e] == -EFAULT) {
			/* a real error: reported, the rest kept, no demotion */
			ok &= r == -EFAULT && res.pages_pending == 9 &&
			      dirtybatch_mode(ctx) == DIRTYBATCH_MODE_MODULE &&
			      !(info.flags & DIRTYBATCH_INFO_DEMOTED);
		} else {
			ok &= r == 15 && g.batch_pages == 6 && g.log_pages == 9 &&
			      (res.flags & DIRTYBATCH_RESULT_DEMOTED) &&
			      !(res.flags & DIRTYBATCH_RESULT_CLEARED_EXACT) &&
			      res.mode == DIRTYBATCH_MODE_FALLBACK && res.error == 0 &&
			      !dirtybatch_has_pending(ctx);
			ok &= dirtybatch_mode(ctx) == DIRTYBATCH_MODE_FALLBACK &&
			      (info.flags & DIRTYBATCH_INFO_DEMOTED) &&
			      !(info.flags & DIRTYBATCH_INFO_MODULE_PRESENT) &&
			      info.fallback_reason == errs[e];
			/* for the rest of the context's life */
			ok &= dirtybatch_set_fallback(ctx, false) == DIRTYBATCH_MODE_FALLBACK;
			dirtybatch_add_pages(ctx, 1, 0, 1);
			ok &= dirtybatch_submit(ctx, &res) == 1 && g.batch_calls == 2 &&
			      g.log_pages == 10;
		}
		dirtybatch_close(ctx);
	}
	unit_ok(ok, "a batch ioctl failing -ENOTTY/-EOPNOTSUPP falls back for that batch "
		"and for good; other errors are reported");
}

/* A fake KVM with KVM_CLEAR_DIRTY_LOG_BATCH; plain calls counted in g. */
struct native_fake {
	struct gone g;			/* first: gone_clear_log() takes it */
	int probe_err;
	uint32_t max_ranges;
	int err, err_index, ok_calls;	/* calls past ok_calls fail with err */
	int calls;
	uint64_t pages;
	uint32_t first_slot;		/* of the last call's first range */
	bool bad;
};

static int native_fake_probe(void *priv, int vm_fd, uint32_t *max_ranges)
{
	struct native_fake *f = priv;

	f->bad |= vm_fd != FAKE_VM_FD;
	if (f->probe_err)
		return f->probe_err;
	*max_ranges = f->max_ranges;
	return 0;
}

static int native_fake_clear(void *priv, int vm_fd, struct kvm_clear_dirty_log_batch *b)
{
	const struct kvm_clear_dirty_log_range *r = (const void *)(uintptr_t)b->ranges;
	struct native_fake *f = priv;

	f->bad |= vm_fd != FAKE_VM_FD || b->flags || !b->count ||
		  b->count > f->max_ranges || b->reserved[0] || b->reserved[1] ||
		  b->reserved[2] || b->reserved[3];
	if (f->calls++ >= f->ok_calls) {
		b->error_index = (uint32_t)f->err_index;
		return f->err;
	}
	for (uint32_t i = 0; i < b->count; i++)
		f->pages += count_bits((const uint64_t *)(uintptr_t)r[i].dirty_bitmap,
				       r[i].num_pages);
	b->error_index = b->count;
	return 0;
}

static const struct dirtybatch_backend native_backend = {
	.clear_log = gone_clear_log,
	.native_probe = native_fake_probe,
	.native_clear = native_fake_clear,
};

/* Open a context over @f with one 6400-page memslot and 5 far runs of 3 pages. */
static struct dirtybatch_ctx *native_fake_ctx(struct native_fake *f)
{
	struct dirtybatch_memslot d[] = { MS(.slot = 1, .npages = 64 * 100) };
	struct dirtybatch_opts o = { .sz = sizeof(o), .flags = DIRTYBATCH_OPEN_FALLBACK };
	struct dirtybatch_ctx *ctx;

	if (dirtybatch_open(FAKE_VM_FD, &o, &ctx))
		abort();
	dirtybatch__set_backend(ctx, &native_backend, f, NULL);
	dirtybatch_set_fallback(ctx, false);
	dirtybatch_set_layout(ctx, d, 1);
	for (uint64_t k = 0; k < 5; k++)
		dirtybatch_add_pages(ctx, 1, k * 64 * 20, 3);
	return ctx;
}

/*
 * The native backend: chosen when confirmed, batches within its largest
 * batch, reports the failing range, demotes to the plain ioctl when the
 * kernel no longer knows the call, and is never used unconfirmed.
 */
void test_native(void)
{
	struct dirtybatch_result res = { .sz = sizeof(res) };
	struct dirtybatch_stats st = { .sz = sizeof(st) };
	struct dirtybatch_info info = { .sz = sizeof(info) };
	struct dirtybatch_ctx *ctx;
	struct native_fake f;
	bool ok = true;

	/* not confirmed (another ABI version): never called */
	f = (struct native_fake){ .probe_err = -EPROTO, .max_ranges = 2, .ok_calls = 99 };
	ctx = native_fake_ctx(&f);
	dirtybatch_get_info(ctx, &info);
	ok &= dirtybatch_mode(ctx) == DIRTYBATCH_MODE_FALLBACK &&
	      info.native_reason == -EPROTO && !(info.flags & DIRTYBATCH_INFO_NATIVE_PRESENT);
	ok &= dirtybatch_submit(ctx, &res) == 15 && f.calls == 0 && f.g.log_pages == 15;
	dirtybatch_close(ctx);

	/* confirmed: 5 ranges in calls of at most 2 */
	f = (struct native_fake){ .max_ranges = 2, .ok_calls = 99 };
	ctx = native_fake_ctx(&f);
	dirtybatch_get_info(ctx, &info);
	ok &= dirtybatch_mode(ctx) == DIRTYBATCH_MODE_NATIVE && info.native_reason == 0 &&
	      (info.flags & DIRTYBATCH_INFO_NATIVE_PRESENT) && info.native_max_ranges == 2 &&
	      info.native_abi_version == KVM_CLEAR_DIRTY_LOG_BATCH_ABI_VERSION;
	ok &= dirtybatch_submit(ctx, &res) == 15 && f.calls == 3 && f.pages == 15 &&
	      f.g.log_calls == 0 && res.ioctls == 3 && res.ranges == 5 &&
	      res.mode == DIRTYBATCH_MODE_NATIVE &&
	      !(res.flags & DIRTYBATCH_RESULT_CLEARED_EXACT);
	dirtybatch_get_stats(ctx, &st);
	ok &= st.native_ioctls == 3 && st.module_ioctls == 0 && st.ioctls == 3;
	dirtybatch_close(ctx);

	/* a range KVM refuses: named, nothing of that call unqueued */
	f = (struct native_fake){ .max_ranges = 2, .ok_calls = 0, .err = -ENOENT,
				  .err_index = 1 };
	ctx = native_fake_ctx(&f);
	ok &= dirtybatch_submit(ctx, &res) == -ENOENT && res.error_slot == 1 &&
	      res.error_first_page == 64 * 20 && res.pages_pending == 15 &&
	      dirtybatch_mode(ctx) == DIRTYBATCH_MODE_NATIVE;
	dirtybatch_close(ctx);

	/* the second call not understood: the rest the plain way, for good */
	f = (struct native_fake){ .max_ranges = 2, .ok_calls = 1, .err = -ENOTTY,
				  .err_index = 2 };
	ctx = native_fake_ctx(&f);
	ok &= dirtybatch_submit(ctx, &res) == 15 && f.pages == 6 && f.g.log_pages == 9 &&
	      (res.flags & DIRTYBATCH_RESULT_DEMOTED) && res.mode == DIRTYBATCH_MODE_FALLBACK;
	dirtybatch_get_info(ctx, &info);
	ok &= (info.flags & DIRTYBATCH_INFO_DEMOTED) && info.native_reason == -ENOTTY &&
	      !(info.flags & DIRTYBATCH_INFO_NATIVE_PRESENT);
	ok &= !f.bad;
	dirtybatch_close(ctx);
	unit_ok(ok, "native: used only once confirmed, batches within its largest "
		"batch, names the failing range, demotes on -ENOTTY");
}
