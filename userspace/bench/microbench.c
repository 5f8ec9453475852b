// SPDX-License-Identifier: LGPL-2.1 OR MIT
/*
 * libdirtybatch microbenchmark.
 *
 * Part 1, library only: the kernel calls are replaced by a backend that
 * returns at once (the internal test hook), so the numbers are the
 * library's own work: translating runs to slot words, coalescing, building
 * the ranges, and zeroing the words after the "kernel" accepted them.
 * Printed per workload and per mode: pages/s, ns per add call (run), ns per
 * range built.
 *
 * Part 1 ends with the memslot table: slot_update (new memslots, then
 * replacing each one with a new generation), slot_remove and set_layout
 * with 8, 64 and 512 memslots of 128 MiB (virtio-mem's block size), per
 * call, best of 3, the new memslots' bitmaps included.
 *
 * Part 2, first round, against KVM (when /dev/kvm works): the same batches
 * cleared for real, with the dirty bits set again between iterations
 * (dirty logging toggled off and on, KVM_DIRTY_LOG_INITIALLY_SET), to put
 * the library's share next to the kernel's clear time for the same batch.
 * No vCPU runs, so KVM only clears bits: a migration's first round over
 * memory the guest never touched.
 *
 * Part 3, steady state: as part 2, but a vCPU writes every page of both
 * memslots before each clear (one pass of the kselftests' VM helper's
 * guest over a list of all their pages, paging on as in a real guest), so
 * KVM also write-protects every page it clears, as in the rounds that
 * decide whether a migration converges.  Smaller memslots (the guest
 * writes below 4 GiB, and every pass costs a write fault per page),
 * workloads scaled to fit.
 *
 * Module mode is used when /dev/kvm_dirtybatch is there, fallback
 * otherwise.
 *
 * Times are the best of many repetitions of the same batch (robust to
 * preemption on a busy machine).  No assertions: it prints numbers.
 * DIRTYBATCH_BENCH_MS sets the time per measurement (default 300 ms),
 * DIRTYBATCH_BENCH_PARTS which parts run (digits, default "123"),
 * DIRTYBATCH_BENCH_STEADY_SHIFT the size of part 3's memslots (2^N pages,
 * 10 <= N <= 18, default 18).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "dirtybatch_internal.h"
#include "rng.h"
#include "vm.h"

#define PS	4096ULL

static double bench_ms = 300;

/* The largest library shares seen in parts 2 and 3, for the summary. */
struct worst {
	double share;		/* of every workload */
	const char *name;
	double big_share;	/* of those whose add calls queue > 64 pages */
	const char *big_name;
};

static struct worst worst_first, worst_steady;

static void note_share(struct worst *w, const char *name, bool small_calls,
		       double lib, double kern)
{
	double share = kern > 0 ? 100.0 * lib / kern : 100.0;

	if (!w->name || share > w->share) {
		w->share = share;
		w->name = name;
	}
	if (!small_calls && (!w->big_name || share > w->big_share)) {
		w->big_share = share;
		w->big_name = name;
	}
}

static struct rng rng = { 0x1234567 };

/* ------------------------------------------------------------------ */
/* Null backend.                                                      */

static int null_clear_log(void *priv, int vm_fd, struct kvm_clear_dirty_log *log)
{
	(void)priv;
	(void)vm_fd;
	(void)log;
	return 0;
}

static int null_batch(void *priv, int dev_fd, struct kvm_dirtybatch_clear *c)
{
	(void)priv;
	(void)dev_fd;
	c->pages_cleared = 0;
	c->error_index = c->count;
	return 0;
}

static const struct dirtybatch_backend null_be = {
	.clear_log = null_clear_log,
	.batch_clear = null_batch,
};

static const struct kvm_dirtybatch_info module_info = {
	.abi_version = KVM_DIRTYBATCH_ABI_VERSION,
	.size = sizeof(struct kvm_dirtybatch_info),
	.features = KVM_DIRTYBATCH_FEAT_CLEAR,
	.max_ranges = KVM_DIRTYBATCH_MAX_RANGES,
	.range_size = sizeof(struct kvm_dirtybatch_range),
	.max_bitmap_bytes = KVM_DIRTYBATCH_MAX_BITMAP_BYTES,
	.lock_break_words = KVM_DIRTYBATCH_LOCK_BREAK_WORDS,
};

/* ------------------------------------------------------------------ */
/* Workloads: queue one batch.                                        */

/*
 * Layout: two adjacent slots, A and B (13 pages more).  Parts 1 and 2:
 * 2^24 pages (64 GiB) each, from 4 GiB.  Part 3: 2^18 pages (1 GiB) each
 * by default, from 1 GiB, where the tests' guest can write them; the
 * workloads are scaled to fit.  (Smaller memslots make KVM's steady-state
 * clears several times cheaper per word here than 1 GiB ones do.)
 */
#define SLOT_A		DIRTYBATCH_SLOT(0, 1)
#define SLOT_B		DIRTYBATCH_SLOT(0, 2)

struct geom {
	uint64_t base, a_pages, b_pages;
};

static const struct geom big = { 1ULL << 32, 1ULL << 24, (1ULL << 24) + 13 };
static struct geom small = { 1ULL << 30, 1ULL << 18, (1ULL << 18) + 13 };
static struct geom g = big;
#define A_PAGES		(g.a_pages)
#define B_PAGES		(g.b_pages)
#define BASE		(g.base)

struct work {
	const char *name;
	/* queue one batch; returns the number of add calls */
	uint64_t (*queue)(struct dirtybatch_ctx *ctx, uint64_t *bm, uint64_t npages);
	uint64_t npages;	/* scale */
	bool small_calls;	/* add calls of at most 64 pages */
};

/* The workload's scale in the current layout. */
static uint64_t wn(const struct work *w)
{
	return w->npages < g.a_pages ? w->npages : g.a_pages;
}

static uint64_t w_long_pages(struct dirtybatch_ctx *ctx, uint64_t *bm, uint64_t n)
{
	(void)bm;
	/* 16 runs of n/16 pages, unaligned ends */
	for (uint64_t i = 0; i < 16; i++)
		dirtybatch_add_pages(ctx, SLOT_A, 3 + i * (n / 16), n / 16 - 5);
	return 16;
}

static uint64_t w_long_gpa(struct dirtybatch_ctx *ctx, uint64_t *bm, uint64_t n)
{
	(void)bm;
	/* one range crossing from slot A into slot B */
	dirtybatch_add_gpa(ctx, 0, BASE + (A_PAGES - n / 2) * PS, n * PS);
	return 1;
}

static uint64_t w_bitmap_aligned(struct dirtybatch_ctx *ctx, uint64_t *bm, uint64_t n)
{
	dirtybatch_add_bitmap(ctx, SLOT_A, 0, n, bm, 0);
	return 1;
}

static uint64_t w_bitmap_offset(struct dirtybatch_ctx *ctx, uint64_t *bm, uint64_t n)
{
	/* QEMU's per-slot bitmap at an unaligned bit offset */
	dirtybatch_add_bitmap(ctx, SLOT_B, 7, n, bm, 13);
	return 1;
}

static uint64_t w_qemu_chunks(struct dirtybatch_ctx *ctx, uint64_t *bm, uint64_t n)
{
	/* 256 KiB chunks (64 pages) at unaligned starts, from the bitmap */
	uint64_t calls = 0;

	for (uint64_t p = 5; p + 64 <= n; p += 64, calls++)
		dirtybatch_add_bitmap(ctx, SLOT_A, p, 64, bm, p);
	return calls;
}

static uint64_t w_short_runs(struct dirtybatch_ctx *ctx, uint64_t *bm, uint64_t n)
{
	/* 1..16-page runs, every ~100 pages */
	uint64_t calls = 0;

	(void)bm;
	for (uint64_t p = 0; p + 16 < n; p += 100, calls++)
		dirtybatch_add_pages(ctx, SLOT_A, p, 1 + (p % 16));
	return calls;
}

static uint64_t w_sparse(struct dirtybatch_ctx *ctx, uint64_t *bm, uint64_t n)
{
	/* one page in every other 64-page word: one range per page */
	uint64_t calls = 0;

	(void)bm;
	for (uint64_t p = 17; p < n; p += 128, calls++)
		dirtybatch_add_pages(ctx, SLOT_A, p, 1);
	return calls;
}

static uint64_t w_two_ends(struct dirtybatch_ctx *ctx, uint64_t *bm, uint64_t n)
{
	/* a tiny batch whose pages are a whole slot apart */
	(void)bm;
	dirtybatch_add_pages(ctx, SLOT_A, 3, 1);
	dirtybatch_add_pages(ctx, SLOT_A, n - 2, 1);
	return 2;
}

static const struct work works[] = {
	{ "long runs, add_pages (16 x 1M pages)", w_long_pages, 1 << 24, false },
	{ "long run, add_gpa across 2 slots (16M pages)", w_long_gpa, 1 << 24, false },
	{ "bitmap, word-aligned (16M bits, 50% set)", w_bitmap_aligned, 1 << 24, false },
	{ "bitmap, bit offset 13 (16M bits, 50% set)", w_bitmap_offset, 1 << 24, false },
	{ "QEMU chunks, 64 pages via bitmap (1M pages)", w_qemu_chunks, 1 << 20, true },
	{ "short runs 1-16 pages (1M pages span)", w_short_runs, 1 << 20, true },
	{ "sparse: 1 page per 128 (1M pages span)", w_sparse, 1 << 20, true },
	{ "2 pages, 16M pages apart (tiny batch)", w_two_ends, 1 << 24, true },
};

static struct dirtybatch_ctx *bench_ctx(int vm_fd, bool module, bool null)
{
	struct dirtybatch_opts o = { .sz = sizeof(o), .page_size = PS,
				     .flags = module ? 0 : DIRTYBATCH_OPEN_FALLBACK };
	struct dirtybatch_memslot d[2] = {
		{ .sz = sizeof(struct dirtybatch_memslot), .slot = SLOT_A, .guest_phys_addr = BASE, .npages = A_PAGES },
		{ .sz = sizeof(struct dirtybatch_memslot), .slot = SLOT_B, .guest_phys_addr = BASE + A_PAGES * PS, .npages = B_PAGES },
	};
	struct dirtybatch_ctx *ctx;

	if (dirtybatch_open(vm_fd, &o, &ctx))
		return NULL;
	if (null) {
		dirtybatch__set_backend(ctx, &null_be, NULL, module ? &module_info : NULL);
		if (module)
			dirtybatch_set_fallback(ctx, false);
	}
	if (dirtybatch_set_layout(ctx, d, 2)) {
		dirtybatch_close(ctx);
		return NULL;
	}
	return ctx;
}

struct meas {
	double ns;		/* per batch, total */
	double add_ns, submit_ns;
	uint64_t pages, calls, ranges, ioctls;
};

static void measure(struct dirtybatch_ctx *ctx, const struct work *w, uint64_t *bm,
		    struct meas *m)
{
	struct dirtybatch_result res = { .sz = sizeof(res) };
	double t0, t1, t2, spent = 0;

	/* warm up (faults in the bitmaps) */
	w->queue(ctx, bm, wn(w));
	dirtybatch_submit(ctx, &res);
	memset(m, 0, sizeof(*m));
	m->ns = 1e300;
	do {
		uint64_t calls;

		t0 = now_ns();
		calls = w->queue(ctx, bm, wn(w));
		t1 = now_ns();
		dirtybatch_submit(ctx, &res);
		t2 = now_ns();
		spent += t2 - t0;
		if (t2 - t0 < m->ns) {
			m->ns = t2 - t0;
			m->add_ns = t1 - t0;
			m->submit_ns = t2 - t1;
		}
		m->pages = res.pages_requested;
		m->ranges = res.ranges;
		m->ioctls = res.ioctls;
		m->calls = calls;
	} while (spent < bench_ms * 1e6);
}

/* Best of 3: @what (0 new, 1 replace, 2 remove, 3 set_layout) for @n memslots. */
static double layout_time(unsigned int n, int what)
{
	struct dirtybatch_opts o = { .sz = sizeof(o), .page_size = PS,
				     .flags = DIRTYBATCH_OPEN_FALLBACK };
	struct dirtybatch_memslot *d = calloc(n, sizeof(*d));
	double best = 1e300;

	if (!d)
		exit(1);
	for (int rep = 0; rep < 3; rep++) {
		struct dirtybatch_ctx *ctx;
		double t0 = 0, t1 = 0;

		if (dirtybatch_open(0, &o, &ctx))
			exit(1);
		for (unsigned int i = 0; i < n; i++)
			d[i] = (struct dirtybatch_memslot){ .sz = sizeof(d[i]),
				.slot = i, .guest_phys_addr = (1ULL << 32) + ((uint64_t)i << 27),
				.npages = (1 << 27) / PS, .userspace_addr = (uint64_t)i << 40 };
		if (what == 3) {
			t0 = now_ns();
			dirtybatch_set_layout(ctx, d, n);
			t1 = now_ns();
		} else {
			t0 = now_ns();
			for (unsigned int i = 0; i < n; i++)
				dirtybatch_slot_update(ctx, &d[i]);
			t1 = now_ns();
		}
		if (what == 1) {
			t0 = now_ns();
			for (unsigned int i = 0; i < n; i++) {
				d[i].generation++;
				dirtybatch_slot_update(ctx, &d[i]);
			}
			t1 = now_ns();
		} else if (what == 2) {
			t0 = now_ns();
			for (unsigned int i = 0; i < n; i++)
				dirtybatch_slot_remove(ctx, i);
			t1 = now_ns();
		}
		dirtybatch_close(ctx);
		if (t1 - t0 < best)
			best = t1 - t0;
	}
	free(d);
	return what == 3 ? best : best / n;
}

static void layout_table(void)
{
	static const unsigned int ns[] = { 8, 64, 512 };

	printf("\n== memslot table (128 MiB memslots; their bitmaps' allocation included)\n");
	printf("%-10s %18s %18s %18s %16s\n", "memslots", "ns/slot_update new",
	       "ns/update replace", "ns/slot_remove", "ns/set_layout");
	for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++)
		printf("%-10u %18.0f %18.0f %18.0f %16.0f\n", ns[i], layout_time(ns[i], 0),
		       layout_time(ns[i], 1), layout_time(ns[i], 2), layout_time(ns[i], 3));
}

static void part1(uint64_t *bm)
{
	printf("== library only (kernel calls replaced by a no-op backend)\n");
	printf("%-46s %-8s %10s %10s %9s %9s %9s\n", "workload", "mode", "pages",
	       "Gpages/s", "ns/run", "ns/range", "ranges");
	for (size_t i = 0; i < sizeof(works) / sizeof(works[0]); i++) {
		for (int mod = 1; mod >= 0; mod--) {
			struct dirtybatch_ctx *ctx = bench_ctx(0, mod, true);
			struct meas m;

			if (!ctx) {
				fprintf(stderr, "context setup failed\n");
				exit(1);
			}
			measure(ctx, &works[i], bm, &m);
			printf("%-46s %-8s %10" PRIu64 " %10.2f %9.1f %9.1f %9" PRIu64 "\n",
			       works[i].name, mod ? "module" : "fallback", m.pages,
			       (double)m.pages / m.ns, m.ns / (double)m.calls,
			       m.ranges ? m.submit_ns / (double)m.ranges : 0.0, m.ranges);
			dirtybatch_close(ctx);
		}
	}
}

/* ------------------------------------------------------------------ */
/* Part 2: against KVM.                                               */

/*
 * One table row per workload: the library's own time (null backend), the
 * kernel's (a real submit of the same batch, best of several, minus the
 * library's), the share.  @redirty makes the queued pages dirty again
 * before each real submit, untimed; it returns 0 or a negative errno.
 */
static void share_table(int vm_fd, bool module, uint64_t *bm,
			int (*redirty)(void *arg), void *arg, struct worst *worst,
			unsigned int min_iters, unsigned int max_iters)
{
	printf("%-46s %10s %12s %12s %8s %8s\n", "workload", "pages", "lib ns",
	       "kernel ns", "share", "ioctls");
	for (size_t i = 0; i < sizeof(works) / sizeof(works[0]); i++) {
		struct dirtybatch_ctx *lib = bench_ctx(vm_fd, module, true);
		struct dirtybatch_ctx *real = bench_ctx(vm_fd, module, false);
		struct dirtybatch_result res = { .sz = sizeof(res) };
		struct meas m;
		double t_real = 0, best = 1e300, t0, t, start = now_ns();
		uint64_t iters = 0, ioctls = 0;
		int err;

		if (!lib || !real || (module && dirtybatch_mode(real) != DIRTYBATCH_MODE_MODULE)) {
			printf("%-46s context setup failed\n", works[i].name);
			goto next;
		}
		measure(lib, &works[i], bm, &m);
		do {
			err = redirty(arg);
			if (err) {
				printf("%-46s making the pages dirty again: %s\n", works[i].name,
				       strerror(-err));
				break;
			}
			t0 = now_ns();
			works[i].queue(real, bm, wn(&works[i]));
			if (dirtybatch_submit(real, &res) < 0) {
				printf("%-46s submit failed: %s\n", works[i].name,
				       strerror(-res.error));
				break;
			}
			t = now_ns() - t0;
			t_real += t;
			if (t < best)
				best = t;
			ioctls += res.ioctls;
			iters++;
		} while (iters < min_iters ||
			 (iters < max_iters && t_real < bench_ms * 1e6 &&
			  now_ns() - start < 10 * bench_ms * 1e6));
		if (iters) {
			double kern = best - m.ns;

			note_share(worst, works[i].name, works[i].small_calls, m.ns, kern);
			printf("%-46s %10" PRIu64 " %12.0f %12.0f %7.2f%% %8" PRIu64 "\n",
			       works[i].name, m.pages, m.ns, kern,
			       kern > 0 ? 100.0 * m.ns / kern : 0.0, ioctls / iters);
		}
next:
		dirtybatch_close(lib);
		dirtybatch_close(real);
	}
}

/* Part 2: all bits dirty again (INITIALLY_SET) by toggling dirty logging. */
static int toggle_logging(void *arg)
{
	struct vm *vm = arg;

	vm_set_slot_flags(vm, SLOT_A, 0);
	vm_set_slot_flags(vm, SLOT_B, 0);
	vm_set_slot_flags(vm, SLOT_A, KVM_MEM_LOG_DIRTY_PAGES);
	vm_set_slot_flags(vm, SLOT_B, KVM_MEM_LOG_DIRTY_PAGES);
	return 0;
}

/* The VM of parts 2 and 3 (the helper ends the process on KVM errors). */
static struct vm *bench_vm(void)
{
	struct vm *vm = vm_create(true);

	vm_add_slot(vm, SLOT_A, BASE, A_PAGES, KVM_MEM_LOG_DIRTY_PAGES);
	vm_add_slot(vm, SLOT_B, BASE + A_PAGES * PS, B_PAGES, KVM_MEM_LOG_DIRTY_PAGES);
	return vm;
}

static void part2(uint64_t *bm)
{
	bool module = access("/dev/" KVM_DIRTYBATCH_DEVICE_NAME, F_OK) == 0;
	const char *why = NULL;
	struct vm *vm;

	printf("\n== first round (%s path): library share of the clear, against KVM\n"
	       "   kernel ns = real submit (best) - library-only time; no vCPU ever ran,\n"
	       "   so KVM only clears bits (no SPTE to write-protect), as in the first\n"
	       "   round of a migration for memory the guest never touched\n",
	       module ? "module" : "fallback");
	if (!kvm_available(&why)) {
		printf("skipped: %s\n", why);
		return;
	}
	vm = bench_vm();
	share_table(vm->fd, module, bm, toggle_logging, vm, &worst_first, 1, 200);
	vm_free(vm);
}

/* ------------------------------------------------------------------ */
/* Part 3: steady state, every page written by a vCPU before the clear. */

/* Part 3: the vCPU writes every page again (and KVM maps it writable). */
static int sweep_once(void *arg)
{
	struct vm *vm = arg;

	/* one more pass over the list, then the guest exits to us */
	vm->ctrl->passes = vm->ctrl->done + 1;
	vcpu_reset(vm);
	vcpu_run_to_done(vm);
	return 0;
}

#define LIST_SLOT	3
#define LIST_GPA	(16ULL << 20)
#define PT_SLOT		4
#define PT_GPA		(32ULL << 20)

static void part3(uint64_t *bm)
{
	bool module = access("/dev/" KVM_DIRTYBATCH_DEVICE_NAME, F_OK) == 0;
	uint64_t npages, p4k = 0, p2m = 0;
	const char *why = NULL;
	uint32_t *list;
	struct vm *vm;

	g = small;
	npages = A_PAGES + B_PAGES;
	printf("\n== steady state (%s path): every page written by a vCPU since the last\n"
	       "   clear, as in a migration's later rounds, so KVM write-protects what it\n"
	       "   clears; memslots of %" PRIu64 " pages, workloads scaled to fit\n",
	       module ? "module" : "fallback", small.a_pages);
	if (!kvm_available(&why)) {
		printf("skipped: %s\n", why);
		g = big;
		return;
	}
	vm = bench_vm();
	/* the guest's page list: every page of both slots, in order */
	list = vm_add_slot(vm, LIST_SLOT, LIST_GPA, (npages * 4 + PS - 1) / PS, 0);
	for (uint64_t p = 0; p < npages; p++)
		list[p] = (uint32_t)(BASE + p * PS);
	vm_create_vcpu(vm);
	vm_enable_paging(vm, PT_SLOT, PT_GPA);
	vm->ctrl->list_gpa = (uint32_t)LIST_GPA;
	vm->ctrl->nr = (uint32_t)npages;
	sweep_once(vm);		/* maps every page */

	/* KVM's count of mapped 4K and 2M pages (x86), for information:
	 * some KVMs (PVM) map the guest's pages but leave these at 0 */
	if (!vm_read_stat(vm, false, "pages_4k", &p4k) &&
	    !vm_read_stat(vm, false, "pages_2m", &p2m))
		printf("   KVM reports %" PRIu64 " 4K and %" PRIu64 " 2M pages mapped "
		       "after the first pass over %" PRIu64 " pages\n", p4k, p2m, npages);
	share_table(vm->fd, module, bm, sweep_once, vm, &worst_steady, 3, 20);
	vm_free(vm);
	g = big;
}

static void summary(const char *round, const struct worst *w)
{
	if (!w->name)
		return;
	printf("  %-13s %5.2f%%  %-44s %s\n", round, w->share, w->name,
	       w->share < 5.0 ? "met" : "over");
	if (w->share >= 5.0 && w->big_name)
		printf("  %-13s %5.2f%%  %-44s %s\n", "  >64-page", w->big_share,
		       w->big_name, w->big_share < 5.0 ? "met" : "over");
}

int main(void)
{
	const char *s = getenv("DIRTYBATCH_BENCH_MS");
	uint64_t words = (1ULL << 24) / 64 + 2;
	uint64_t *bm = malloc(words * 8);

	if (s)
		bench_ms = atof(s);
	/* part 3's memslot size, for small guests: 2^10 .. 2^18 pages */
	s = getenv("DIRTYBATCH_BENCH_STEADY_SHIFT");
	if (s && atoi(s) >= 10 && atoi(s) <= 18) {
		small.a_pages = 1ULL << atoi(s);
		small.b_pages = small.a_pages + 13;
	}
	if (!bm)
		return 1;
	for (uint64_t i = 0; i < words; i++)
		bm[i] = rng_next(&rng);	/* ~50% of bits set */
	printf("libdirtybatch microbenchmark: pages/s and ns per run (add call) of the\n"
	       "library's own work; 'share' = library time / kernel time, same batch.\n\n");
	s = getenv("DIRTYBATCH_BENCH_PARTS");
	if (!s)
		s = "123";
	if (strchr(s, '1')) {
		part1(bm);
		layout_table();
	}
	if (strchr(s, '2'))
		part2(bm);
	if (strchr(s, '3'))
		part3(bm);
	printf("\nlibrary share of the kernel's clear time, largest (target < 5%%):\n");
	summary("steady state", &worst_steady);
	summary("first round", &worst_first);
	free(bm);
	return 0;
}
