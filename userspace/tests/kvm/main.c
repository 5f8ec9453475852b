// SPDX-License-Identifier: LGPL-2.1 OR MIT
/*
 * libdirtybatch against real KVM.
 *
 * Built twice:
 *  - DB_KVM_HOST: tests/host/dirtybatch_kvm, the fallback path
 *    (KVM_CLEAR_DIRTY_LOG) on the build host; SKIPs (exit 4) without
 *    /dev/kvm.
 *  - DB_KVM_GUEST: tests/guest/dirtybatch_kvm_guest, run inside a guest
 *    with the kvm_dirtybatch module loaded: the module path, the fallback
 *    path on the same kernel, and module vs fallback equivalence; SKIPs
 *    (exit 4) without /dev/kvm_dirtybatch or /dev/kvm.
 *
 * Every VM uses KVM_DIRTY_LOG_INITIALLY_SET, so all pages start dirty and
 * the dirty log after a series of clears is known exactly: a per-page
 * model is compared with KVM_GET_DIRTY_LOG after every submit.  With a
 * vCPU writing sequence numbers into pages meanwhile: every round, a page
 * KVM reported dirty that no clear has named since must still be dirty
 * (guest writes only set bits), slots the guest does not write must match
 * the model exactly, and at the end a page holding a sequence number
 * stored after its last clear must be dirty: no dirty page may be lost.
 * Nothing is mocked.  The VM is the shared test library's helper
 * (selftests/lib/vm.[ch], guest_code.S).
 *
 * DIRTYBATCH_TEST_SEED overrides the random seed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <linux/kvm_dirtybatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dirtybatch.h"
#include "rng.h"
#include "tap.h"
#include "vm.h"

static struct rng rng;		/* seeded in main() */

#define BASE_GPA	0x100000ULL	/* 1 MiB */
#define MAX_TSLOTS	8

/* ------------------------------------------------------------------ */
/* Test VM: adjacent slots (odd sizes), one behind a gap, one in as 1. */

struct tslot {
	uint32_t slot;			/* as_id << 16 | id */
	uint64_t gpa, npages;
	uint8_t *hva;
	uint64_t generation;		/* bumped when created again */
};

struct tvm {
	struct vm *vm;
	struct tslot s[MAX_TSLOTS];
	int n;
	uint8_t *dirty[MAX_TSLOTS];	/* expected KVM dirty bit per page */
	uint8_t *req[MAX_TSLOTS];	/* requested in the current batch */
	uint32_t *last_clear[MAX_TSLOTS];
	uint64_t guest_pages;		/* contiguous region written by the vCPU */
};

static const uint64_t slot_pages[] = { 1000, 777, 64, 5, 4109 };
#define NR_ADJ	(sizeof(slot_pages) / sizeof(slot_pages[0]))

static void tvm_add(struct tvm *t, uint32_t slot, uint64_t gpa, uint64_t npages)
{
	struct tslot *s = &t->s[t->n++];

	s->slot = slot;
	s->gpa = gpa;
	s->npages = npages;
	s->hva = vm_add_slot(t->vm, slot, gpa, npages, KVM_MEM_LOG_DIRTY_PAGES);
}

/* The helper's calls end the process (a failed test) on KVM errors. */
static void tvm_create(struct tvm *t)
{
	uint64_t gpa = BASE_GPA;

	memset(t, 0, sizeof(*t));
	t->vm = vm_create(true);
	for (unsigned int i = 0; i < NR_ADJ; i++) {
		tvm_add(t, 1 + i, gpa, slot_pages[i]);
		gpa += slot_pages[i] * PAGE_SIZE;
	}
	t->guest_pages = (gpa - BASE_GPA) / PAGE_SIZE;
	tvm_add(t, 6, gpa + 16 * PAGE_SIZE, 300);
	if (t->vm->nr_as > 1)
		tvm_add(t, DIRTYBATCH_SLOT(1, 7), BASE_GPA, 200);
	for (int i = 0; i < t->n; i++) {
		t->dirty[i] = malloc(t->s[i].npages);
		t->req[i] = calloc(t->s[i].npages, 1);
		t->last_clear[i] = calloc(t->s[i].npages, sizeof(uint32_t));
		if (!t->dirty[i] || !t->req[i] || !t->last_clear[i])
			abort();
		memset(t->dirty[i], 1, t->s[i].npages);	/* INITIALLY_SET */
	}
}

/* Delete a memslot in KVM and from the model. */
static void tvm_delete(struct tvm *t, uint32_t slot)
{
	for (int i = 0; i < t->n; i++) {
		if (t->s[i].slot != slot)
			continue;
		vm_delete_slot(t->vm, slot);
		free(t->dirty[i]);
		free(t->req[i]);
		free(t->last_clear[i]);
		t->n--;
		memmove(&t->s[i], &t->s[i + 1], (t->n - i) * sizeof(t->s[0]));
		memmove(&t->dirty[i], &t->dirty[i + 1], (t->n - i) * sizeof(t->dirty[0]));
		memmove(&t->req[i], &t->req[i + 1], (t->n - i) * sizeof(t->req[0]));
		memmove(&t->last_clear[i], &t->last_clear[i + 1],
			(t->n - i) * sizeof(t->last_clear[0]));
		t->dirty[t->n] = NULL;
		t->req[t->n] = NULL;
		t->last_clear[t->n] = NULL;
		return;
	}
}

static void tvm_destroy(struct tvm *t)
{
	for (int i = 0; i < MAX_TSLOTS; i++) {
		free(t->dirty[i]);
		free(t->req[i]);
		free(t->last_clear[i]);
	}
	vm_free(t->vm);
}

static int tvm_layout(struct tvm *t, struct dirtybatch_ctx *ctx)
{
	struct dirtybatch_memslot d[MAX_TSLOTS];

	for (int i = 0; i < t->n; i++)
		d[i] = (struct dirtybatch_memslot){ .sz = sizeof(struct dirtybatch_memslot),
			.slot = t->s[i].slot, .guest_phys_addr = t->s[i].gpa,
			.npages = t->s[i].npages,
			.userspace_addr = (uint64_t)(uintptr_t)t->s[i].hva,
			.generation = t->s[i].generation };
	return dirtybatch_set_layout(ctx, d, (unsigned int)t->n);
}

/* KVM_GET_DIRTY_LOG of every slot vs. the model; 0 or mismatches. */
static uint64_t tvm_compare(struct tvm *t, char *why, size_t wl)
{
	uint64_t bad = 0;
	static uint64_t bm[(8192 + 63) / 64];

	for (int i = 0; i < t->n; i++) {
		struct tslot *s = &t->s[i];

		if (s->npages > 8192) {
			snprintf(why, wl, "slot %#x too big for the bitmap", s->slot);
			return 1;
		}
		vm_get_dirty_log(t->vm, s->slot, bm);
		for (uint64_t p = 0; p < s->npages; p++) {
			int k = (int)(bm[p / 64] >> (p % 64) & 1);

			if (k != t->dirty[i][p]) {
				if (!bad++)
					snprintf(why, wl, "slot %#x page %" PRIu64 ": KVM %d, model %d",
						 s->slot, p, k, t->dirty[i][p]);
			}
		}
	}
	return bad;
}

/* ------------------------------------------------------------------ */
/* Random batches, applied identically to one or more contexts.       */

static void mark_req(struct tvm *t, int si, uint64_t first, uint64_t n)
{
	for (uint64_t p = first; p < first + n; p++)
		t->req[si][p] = 1;
}

/* Queue one random valid run (any of the three kinds) on every context. */
static int random_add(struct tvm *t, struct dirtybatch_ctx **ctx, int nctx)
{
	int si = (int)rng_below(&rng, (uint64_t)t->n), r = 0;
	struct tslot *s = &t->s[si];
	uint64_t first = rng_below(&rng, s->npages), n;

	switch (rng_below(&rng, 4)) {
	case 0:
		n = 1 + rng_below(&rng, rng_below(&rng, 2) ? 5 : 200);
		break;
	case 1:
		first &= ~63ULL;
		n = 64 * (1 + rng_below(&rng, 3));
		break;
	default:
		n = 1 + rng_below(&rng, s->npages - first);
		if (n > 300)
			n = 1 + rng_below(&rng, 300);
		break;
	}
	if (first + n > s->npages)
		n = s->npages - first;

	switch (rng_below(&rng, 3)) {
	case 0:	/* slot-relative pages */
		for (int c = 0; c < nctx; c++)
			r |= dirtybatch_add_pages(ctx[c], s->slot, first, n);
		mark_req(t, si, first, n);
		break;
	case 1: {	/* guest-physical, possibly running on into the next slots */
		uint32_t as = DIRTYBATCH_SLOT_AS_ID(s->slot);
		uint64_t gpa = s->gpa + first * PAGE_SIZE, len = n * PAGE_SIZE, cur, left;

		if (as == 0 && s->slot <= NR_ADJ && rng_below(&rng, 2)) {
			/* extend across the boundary within the adjacent region */
			uint64_t end = BASE_GPA + t->guest_pages * PAGE_SIZE;
			uint64_t max = (end - gpa) / PAGE_SIZE;

			len = (1 + rng_below(&rng, max < 400 ? max : 400)) * PAGE_SIZE;
		}
		for (int c = 0; c < nctx; c++)
			r |= dirtybatch_add_gpa(ctx[c], as, gpa, len);
		for (cur = gpa, left = len / PAGE_SIZE; left; left--, cur += PAGE_SIZE)
			for (int i = 0; i < t->n; i++) {
				struct tslot *x = &t->s[i];

				if (DIRTYBATCH_SLOT_AS_ID(x->slot) == as && cur >= x->gpa &&
				    cur < x->gpa + x->npages * PAGE_SIZE)
					t->req[i][(cur - x->gpa) / PAGE_SIZE] = 1;
			}
		break;
	}
	default: {	/* bitmap with an arbitrary bit offset */
		uint64_t off = rng_below(&rng, 130), words = (off + n + 63) / 64;
		uint64_t *bm = calloc(words, 8), dens = rng_below(&rng, 3);

		for (uint64_t w = 0; w < words; w++)
			bm[w] = dens == 0 ? ~0ULL : dens == 1 ? rng_next(&rng) : rng_next(&rng) & rng_next(&rng) & rng_next(&rng);
		for (int c = 0; c < nctx; c++)
			r |= dirtybatch_add_bitmap(ctx[c], s->slot, first, n, bm, off);
		for (uint64_t i = 0; i < n; i++)
			if (bm[(off + i) / 64] >> ((off + i) % 64) & 1)
				t->req[si][first + i] = 1;
		free(bm);
		break;
	}
	}
	return r;
}

/* Pages requested in the model batch, and how many of them are dirty. */
static void req_counts(struct tvm *t, uint64_t *req, uint64_t *dirty_req)
{
	*req = *dirty_req = 0;
	for (int i = 0; i < t->n; i++)
		for (uint64_t p = 0; p < t->s[i].npages; p++)
			if (t->req[i][p]) {
				(*req)++;
				*dirty_req += t->dirty[i][p];
			}
}

static void apply_req(struct tvm *t, uint32_t stamp)
{
	for (int i = 0; i < t->n; i++) {
		for (uint64_t p = 0; p < t->s[i].npages; p++) {
			if (t->req[i][p]) {
				t->dirty[i][p] = 0;
				t->last_clear[i][p] = stamp;
			}
		}
		memset(t->req[i], 0, t->s[i].npages);
	}
}

/* ------------------------------------------------------------------ */
/* Tests.                                                             */

/*
 * The batch backend the "module" tests expect: the shim, or with
 * DIRTYBATCH_BACKEND=native (a guest with the patched KVM modules) KVM's
 * own KVM_CLEAR_DIRTY_LOG_BATCH, which does not count the bits it clears.
 */
static int batch_mode = DIRTYBATCH_MODE_MODULE;
#ifndef DB_KVM_HOST
static const char *bn = "module";	/* its name in the test descriptions */
#endif

static int open_ctx(struct tvm *t, bool module, struct dirtybatch_ctx **ctx,
		    char *why, size_t wl)
{
	struct dirtybatch_opts o = { .sz = sizeof(o),
		.flags = module ? 0 : DIRTYBATCH_OPEN_FALLBACK };
	int r = dirtybatch_open(t->vm->fd, &o, ctx);

	if (r) {
		snprintf(why, wl, "dirtybatch_open: %s", strerror(-r));
		return r;
	}
	if (dirtybatch_mode(*ctx) != (module ? batch_mode : DIRTYBATCH_MODE_FALLBACK)) {
		struct dirtybatch_info info = { .sz = sizeof(info) };

		dirtybatch_get_info(*ctx, &info);
		snprintf(why, wl, "mode %d, fallback reason %d", dirtybatch_mode(*ctx),
			 info.fallback_reason);
		dirtybatch_close(*ctx);
		return -EPROTO;
	}
	r = tvm_layout(t, *ctx);
	if (r) {
		snprintf(why, wl, "set_layout: %s", strerror(-r));
		dirtybatch_close(*ctx);
	}
	return r;
}

/* Random batches, no vCPU: dirty log equals the model after each submit. */
static bool test_random_clears(bool module, int rounds, char *why, size_t wl)
{
	struct tvm t;
	struct dirtybatch_ctx *ctx;
	struct dirtybatch_result res = { .sz = sizeof(res) };
	uint64_t total_req = 0, total_ioctls = 0, total_ranges = 0;
	bool ok = false;

	tvm_create(&t);
	if (open_ctx(&t, module, &ctx, why, wl))
		goto out_vm;
	if (tvm_compare(&t, why, wl))
		goto out;
	for (int r = 0; r < rounds; r++) {
		uint64_t req, dreq;
		int64_t got;
		int nadd = 1 + (int)rng_below(&rng, r % 10 == 0 ? 60 : 8);

		for (int a = 0; a < nadd; a++)
			if (random_add(&t, &ctx, 1)) {
				snprintf(why, wl, "add failed in round %d", r);
				goto out;
			}
		req_counts(&t, &req, &dreq);
		if (dirtybatch_pending(ctx) != req) {
			snprintf(why, wl, "pending %" PRIu64 ", model %" PRIu64,
				 dirtybatch_pending(ctx), req);
			goto out;
		}
		got = dirtybatch_submit(ctx, &res);
		if (got < 0) {
			snprintf(why, wl, "submit: %s (slot %#x page %" PRIu64 ")",
				 strerror((int)-got), res.error_slot, res.error_first_page);
			goto out;
		}
		/* module: exact count of dirty bits cleared; else requested */
		if ((uint64_t)got != (module && batch_mode == DIRTYBATCH_MODE_MODULE ? dreq : req) ||
		    res.pages_requested != req) {
			snprintf(why, wl, "round %d: submit returned %" PRId64 " (requested %" PRIu64
				 ", dirty %" PRIu64 ")", r, got, req, dreq);
			goto out;
		}
		if (module && res.ioctls != (req ? 1u : 0u)) {
			snprintf(why, wl, "module path used %" PRIu64 " ioctls", res.ioctls);
			goto out;
		}
		total_req += req;
		total_ioctls += res.ioctls;
		total_ranges += res.ranges;
		apply_req(&t, 1);
		if (tvm_compare(&t, why, wl)) {
			char w2[200];

			snprintf(w2, sizeof(w2), "round %d: %s", r, why);
			snprintf(why, wl, "%s", w2);
			goto out;
		}
	}
	tap_diag("%s: %d rounds, %" PRIu64 " pages requested, %" PRIu64 " ranges in %" PRIu64 " ioctls",
		 module ? "module" : "fallback", rounds, total_req, total_ranges, total_ioctls);
	ok = true;
out:
	dirtybatch_close(ctx);
out_vm:
	tvm_destroy(&t);
	return ok;
}

/* KVM rejects a range of a deleted memslot: error reported, rest queued. */
static bool test_error_path(bool module, char *why, size_t wl)
{
	struct tvm t;
	struct dirtybatch_ctx *ctx;
	struct dirtybatch_result res = { .sz = sizeof(res) };
	int64_t got;
	bool ok = false;

	tvm_create(&t);
	if (open_ctx(&t, module, &ctx, why, wl))
		goto out_vm;
	/* queue in slot 1 (first), slot 6 (deleted in KVM only), slot 2 */
	if (dirtybatch_add_pages(ctx, 1, 0, 10) || dirtybatch_add_pages(ctx, 6, 64, 70) ||
	    dirtybatch_add_pages(ctx, 2, 100, 1)) {
		snprintf(why, wl, "add failed");
		goto out;
	}
	tvm_delete(&t, 6);
	got = dirtybatch_submit(ctx, &res);
	if (got != -ENOENT || res.error != -ENOENT || res.error_slot != 6 ||
	    res.error_first_page != 64) {
		snprintf(why, wl, "submit returned %" PRId64 ", error slot %#x page %" PRIu64,
			 got, res.error_slot, res.error_first_page);
		goto out;
	}
	/* fallback applied slot 1 first; the module applies nothing */
	if (module ? (res.ranges || res.pages_pending != 81) :
		     (res.ranges != 1 || res.pages_pending != 71)) {
		snprintf(why, wl, "%" PRIu64 " ranges applied, %" PRIu64 " pending",
			 res.ranges, res.pages_pending);
		goto out;
	}
	if (dirtybatch_slot_remove(ctx, 6) || dirtybatch_pending(ctx) != (module ? 11u : 1u)) {
		snprintf(why, wl, "slot_remove: pending %" PRIu64, dirtybatch_pending(ctx));
		goto out;
	}
	got = dirtybatch_submit(ctx, &res);
	if (got != (module ? 11 : 1)) {
		snprintf(why, wl, "resubmit returned %" PRId64, got);
		goto out;
	}
	/* model: slot 1 pages 0..9 and slot 2 page 100 clean, nothing else */
	for (int i = 0; i < t.n; i++) {
		if (t.s[i].slot == 1)
			memset(t.dirty[i], 0, 10);
		if (t.s[i].slot == 2)
			t.dirty[i][100] = 0;
	}
	if (tvm_compare(&t, why, wl))
		goto out;
	ok = true;
out:
	dirtybatch_close(ctx);
out_vm:
	tvm_destroy(&t);
	return ok;
}

/*
 * A memslot deleted and created again with the same geometry: what was
 * queued for the old one must not be cleared on the new one, whose pages
 * KVM_DIRTY_LOG_INITIALLY_SET reports all dirty and nobody fetched yet.
 */
static bool test_recreated_memslot(bool module, char *why, size_t wl)
{
	struct tvm t;
	struct dirtybatch_ctx *ctx;
	struct dirtybatch_memslot m;
	struct tslot old;
	int64_t got;
	bool ok = false;
	int i;

	tvm_create(&t);
	if (open_ctx(&t, module, &ctx, why, wl))
		goto out_vm;
	for (i = 0; i < t.n && t.s[i].slot != 6; i++)
		;
	old = t.s[i];
	if (dirtybatch_add_pages(ctx, 1, 0, 10) || dirtybatch_add_pages(ctx, 6, 0, 100)) {
		snprintf(why, wl, "add failed");
		goto out;
	}
	/* the VMM re-creates memslot 6 and tells the library */
	tvm_delete(&t, 6);
	tvm_add(&t, 6, old.gpa, old.npages);
	i = t.n - 1;
	t.s[i].generation = old.generation + 1;
	t.dirty[i] = malloc(t.s[i].npages);
	t.req[i] = calloc(t.s[i].npages, 1);
	t.last_clear[i] = calloc(t.s[i].npages, sizeof(uint32_t));
	if (!t.dirty[i] || !t.req[i] || !t.last_clear[i])
		abort();
	memset(t.dirty[i], 1, t.s[i].npages);	/* INITIALLY_SET, never fetched */
	m = (struct dirtybatch_memslot){ .sz = sizeof(m), .slot = 6, .guest_phys_addr = old.gpa,
		.npages = old.npages, .userspace_addr = (uint64_t)(uintptr_t)t.s[i].hva,
		.generation = t.s[i].generation };
	if (dirtybatch_slot_update(ctx, &m) || dirtybatch_pending(ctx) != 10) {
		snprintf(why, wl, "slot_update: pending %" PRIu64 ", want 10",
			 dirtybatch_pending(ctx));
		goto out;
	}
	got = dirtybatch_submit(ctx, NULL);
	if (got != 10) {
		snprintf(why, wl, "submit returned %" PRId64, got);
		goto out;
	}
	memset(t.dirty[0], 0, 10);	/* slot 1 pages 0..9 */
	if (tvm_compare(&t, why, wl))
		goto out;
	ok = true;
out:
	dirtybatch_close(ctx);
out_vm:
	tvm_destroy(&t);
	return ok;
}

static void sleep_us(long us)
{
	struct timespec ts = { .tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000 };

	nanosleep(&ts, NULL);
}

/* The newest sequence number the guest stored in a page (0: none). */
static uint32_t page_seq(const uint8_t *page)
{
	uint32_t best = 0;

	for (int k = 0; k < 512; k++) {
		uint32_t v = *(const volatile uint32_t *)(page + k * 8);

		if (v > best)
			best = v;
	}
	return best;
}

/*
 * A vCPU stores sequence numbers into random pages while batches built
 * from the dirty log (and random extra runs) are cleared.  After each
 * submit, the guest's sequence number s is read: every store numbered
 * above s + 1 comes after the clear (the guest publishes s after its
 * store s, and a clear ends with a TLB flush that makes every store before
 * it visible), so at the end a page holding a number above its last
 * clear's s + 1 must be dirty.
 */
static bool test_vcpu(bool module, int rounds, char *why, size_t wl)
{
	struct tvm t;
	struct dirtybatch_ctx *ctx;
	struct dirtybatch_result res = { .sz = sizeof(res) };
	static uint64_t bm[(8192 + 63) / 64 + 4];
	static uint64_t list[4096];
	uint64_t lost = 0, redirtied = 0, cleared_total = 0;
	uint32_t seq0;
	bool ok = false;

	tvm_create(&t);
	if (open_ctx(&t, module, &ctx, why, wl))
		goto out_vm;
	/*
	 * Every page counts as written before any clear (INITIALLY_SET made
	 * it dirty): until a clear names it, it must stay dirty.
	 */
	for (int i = 0; i < t.n; i++)
		for (uint64_t p = 0; p < t.s[i].npages; p++)
			*(uint32_t *)(t.s[i].hva + p * PAGE_SIZE) = 1;
	for (unsigned int k = 0; k < sizeof(list) / sizeof(list[0]); k++)
		list[k] = BASE_GPA + rng_below(&rng, t.guest_pages) * PAGE_SIZE;
	vm_create_vcpu(t.vm);
	guest_set_list(t.vm, list, sizeof(list) / sizeof(list[0]), 0);
	t.vm->ctrl->seq = 1;	/* the guest's first store is number 2 */
	vcpu_start(t.vm);
	for (int i = 0; i < 2000 && t.vm->ctrl->seq == 1; i++)
		sleep_us(1000);
	if (t.vm->ctrl->seq == 1) {
		snprintf(why, wl, "guest does not run");
		goto out;
	}
	/*
	 * Slow the guest down to roughly 20k stores/s so that a round leaves
	 * most pages clean: if every page were rewritten all the time, a page
	 * wrongly cleared would be re-dirtied before the final check.
	 */
	for (int i = 0; i < 30; i++) {
		uint32_t w = t.vm->ctrl->seq;

		sleep_us(20000);
		if ((t.vm->ctrl->seq - w) * 50 <= 40000)
			break;
		t.vm->ctrl->delay = t.vm->ctrl->delay ? t.vm->ctrl->delay * 2 : 64;
	}
	seq0 = t.vm->ctrl->seq;
	for (int round = 1; round <= rounds; round++) {
		int64_t got;

		sleep_us(200 + (long)rng_below(&rng, 3000));
		/* clear (most of) what the log says is dirty, via bitmaps */
		for (int i = 0; i < t.n; i++) {
			struct tslot *s = &t.s[i];
			uint64_t off = rng_below(&rng, 64), nw = (s->npages + 63) / 64;

			vm_get_dirty_log(t.vm, s->slot, bm);
			/*
			 * Guest writes only set bits: a page KVM reported dirty
			 * and no clear named since must still be dirty; slots the
			 * guest does not write must match the model exactly.
			 */
			for (uint64_t p = 0; p < s->npages; p++) {
				bool k = bm[p / 64] >> (p % 64) & 1;
				bool guest = DIRTYBATCH_SLOT_AS_ID(s->slot) == 0 &&
					     s->slot <= NR_ADJ;

				if ((t.dirty[i][p] && !k) || (!guest && k != t.dirty[i][p])) {
					if (!lost++)
						snprintf(why, wl, "round %d: slot %#x page %" PRIu64
							 " model %d KVM %d", round, s->slot, p,
							 t.dirty[i][p], k);
				}
				t.dirty[i][p] = k;
			}
			if (rng_below(&rng, 4) == 0)
				continue;	/* leave this slot dirty this round */
			/*
			 * Clear a random half of the dirty pages: the others must
			 * stay dirty, so a page cleared without being asked for
			 * shows up as lost at the end.
			 */
			for (uint64_t w = 0; w < nw; w++)
				bm[w] &= rng_next(&rng);
			/* shift the bitmap by off bits to use an arbitrary offset */
			if (off) {
				bm[nw] = 0;
				for (uint64_t w = nw; w > 0; w--)
					bm[w] = bm[w] << off | bm[w - 1] >> (64 - off);
				bm[0] <<= off;
			}
			if (dirtybatch_add_bitmap(ctx, s->slot, 0, s->npages, bm, off)) {
				snprintf(why, wl, "add_bitmap failed");
				goto out;
			}
			for (uint64_t p = 0; p < s->npages; p++)
				if (bm[(p + off) / 64] >> ((p + off) % 64) & 1)
					t.req[i][p] = 1;
		}
		/* plus random runs, dirty or not */
		for (int a = (int)rng_below(&rng, 4); a > 0; a--)
			random_add(&t, &ctx, 1);
		got = dirtybatch_submit(ctx, &res);
		if (got < 0) {
			snprintf(why, wl, "submit: %s", strerror((int)-got));
			goto out;
		}
		cleared_total += (uint64_t)got;
		/* read after the clear returned: see above */
		apply_req(&t, __atomic_load_n(&t.vm->ctrl->seq, __ATOMIC_ACQUIRE) + 1);
	}
	/* let the guest write behind the last clear for a while */
	{
		uint32_t w = t.vm->ctrl->seq;

		for (int i = 0; i < 5000 && t.vm->ctrl->seq - w < 2000; i++)
			sleep_us(1000);
	}
	vcpu_stop(t.vm);
	for (int i = 0; i < t.n; i++) {
		struct tslot *s = &t.s[i];

		vm_get_dirty_log(t.vm, s->slot, bm);
		for (uint64_t p = 0; p < s->npages; p++) {
			uint32_t seq = page_seq(s->hva + p * PAGE_SIZE);
			bool dirty = bm[p / 64] >> (p % 64) & 1;

			if (seq > t.last_clear[i][p]) {
				if (seq > 1)
					redirtied++;
				if (!dirty && !lost++)
					snprintf(why, wl, "slot %#x page %" PRIu64
						 " written (store %u) after its last clear (%u) but clean",
						 s->slot, p, seq, t.last_clear[i][p]);
			}
		}
	}
	tap_diag("%s vCPU: delay %u, %d rounds, %u guest stores, %" PRIu64 " pages cleared, %" PRIu64
		 " pages written after their last clear, %" PRIu64 " lost",
		 module ? "module" : "fallback", t.vm->ctrl->delay, rounds,
		 t.vm->ctrl->seq - seq0, cleared_total, redirtied, lost);
	if (!lost && !redirtied)
		snprintf(why, wl, "no page was re-dirtied after a clear: test too weak");
	ok = !lost && redirtied;
out:
	dirtybatch_close(ctx);
out_vm:
	tvm_destroy(&t);
	return ok;
}

#ifdef DB_KVM_GUEST
/* Identical input through the module and the fallback: identical state. */
static bool test_equivalence(int rounds, char *why, size_t wl)
{
	struct tvm a, b;
	struct dirtybatch_ctx *ctx[2] = { NULL, NULL };
	uint64_t bma[(8192 + 63) / 64], bmb[(8192 + 63) / 64];
	bool ok = false;

	tvm_create(&a);
	tvm_create(&b);
	if (open_ctx(&a, true, &ctx[0], why, wl) || open_ctx(&b, false, &ctx[1], why, wl))
		goto out;
	for (int r = 0; r < rounds; r++) {
		int64_t ga, gb;
		uint64_t req, dreq;

		for (int k = 1 + (int)rng_below(&rng, 20); k > 0; k--)
			if (random_add(&a, ctx, 2)) {
				snprintf(why, wl, "add failed");
				goto out;
			}
		req_counts(&a, &req, &dreq);
		ga = dirtybatch_submit(ctx[0], NULL);
		gb = dirtybatch_submit(ctx[1], NULL);
		/* only the module counts what it cleared */
		if (ga != (int64_t)(batch_mode == DIRTYBATCH_MODE_MODULE ? dreq : req) ||
		    gb != (int64_t)req) {
			snprintf(why, wl, "round %d: batch %" PRId64 " (dirty %" PRIu64
				 "), fallback %" PRId64 " (requested %" PRIu64 ")",
				 r, ga, dreq, gb, req);
			goto out;
		}
		apply_req(&a, 1);
		for (int i = 0; i < a.n; i++) {
			vm_get_dirty_log(a.vm, a.s[i].slot, bma);
			vm_get_dirty_log(b.vm, b.s[i].slot, bmb);
			if (memcmp(bma, bmb, (a.s[i].npages + 63) / 64 * 8)) {
				snprintf(why, wl, "round %d: slot %#x differs", r, a.s[i].slot);
				goto out;
			}
		}
		if (tvm_compare(&a, why, wl))
			goto out;
	}
	ok = true;
out:
	dirtybatch_close(ctx[0]);
	dirtybatch_close(ctx[1]);
	tvm_destroy(&a);
	tvm_destroy(&b);
	return ok;
}
#endif

/* ------------------------------------------------------------------ */

static bool have_kvm(char *why, size_t wl)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		snprintf(why, wl, "/dev/kvm: %s", strerror(errno));
		return false;
	}
	close(fd);
	return true;
}

int main(void)
{
	char why[300] = "";
	const char *e = getenv("DIRTYBATCH_TEST_SEED");
	uint64_t seed = e ? strtoull(e, NULL, 0) : (uint64_t)time(NULL);
	bool kvm;

	rng_init(&rng, seed);
#ifdef DB_KVM_HOST
	tap_plan(6);
	tap_diag("seed %#" PRIx64 " (DIRTYBATCH_TEST_SEED)", seed);
	kvm = have_kvm(why, sizeof(why));
	if (!kvm) {
		tap_skip(why, "fallback: random clears match KVM_GET_DIRTY_LOG");
		tap_skip(why, "fallback: KVM error reported, remainder stays queued");
		tap_skip(why, "fallback: vCPU writing meanwhile, no dirty page lost");
		tap_skip(why, "fallback: second vCPU run");
		tap_skip(why, "detection without the module");
		tap_skip(why, "fallback: re-created memslot");
		return tap_exit_code();
	}
	tap_ok(test_random_clears(false, 300, why, sizeof(why)),
	       "fallback: random clears match KVM_GET_DIRTY_LOG %s", why);
	why[0] = 0;
	tap_ok(test_error_path(false, why, sizeof(why)),
	       "fallback: KVM error reported, remainder stays queued %s", why);
	why[0] = 0;
	tap_ok(test_vcpu(false, 150, why, sizeof(why)),
	       "fallback: vCPU writing meanwhile, no dirty page lost %s", why);
	why[0] = 0;
	tap_ok(test_vcpu(false, 60, why, sizeof(why)),
	       "fallback: second vCPU run, other seed %s", why);
	{
		struct dirtybatch_ctx *ctx;
		struct dirtybatch_info info = { .sz = sizeof(info) };
		bool ok = !dirtybatch_open(0, NULL, &ctx) && !dirtybatch_get_info(ctx, &info);
		bool dev = access("/dev/" KVM_DIRTYBATCH_DEVICE_NAME, F_OK) == 0;

		/* without the module, detection must land in fallback */
		ok &= dev || (info.mode == DIRTYBATCH_MODE_FALLBACK &&
			      info.fallback_reason == -ENOENT);
		tap_diag("detection: mode %u, fallback reason %d, module %s", info.mode,
			 info.fallback_reason, dev ? "present" : "absent");
		tap_ok(ok, "detection without the module: fallback, reason -ENOENT");
		dirtybatch_close(ctx);
	}
	why[0] = 0;
	tap_ok(test_recreated_memslot(false, why, sizeof(why)),
	       "fallback: a re-created memslot keeps its dirty bits, queued clears dropped %s",
	       why);
#else
	tap_plan(9);
	tap_diag("seed %#" PRIx64 " (DIRTYBATCH_TEST_SEED)", seed);
	e = getenv("DIRTYBATCH_BACKEND");
	if (e && !strcmp(e, "native")) {
		batch_mode = DIRTYBATCH_MODE_NATIVE;
		bn = "native";
		tap_diag("batch backend: native (DIRTYBATCH_BACKEND): the module tests run "
			 "against KVM_CLEAR_DIRTY_LOG_BATCH");
	}
	kvm = have_kvm(why, sizeof(why));
	if (kvm && access("/dev/" KVM_DIRTYBATCH_DEVICE_NAME, F_OK)) {
		snprintf(why, sizeof(why), "/dev/%s absent", KVM_DIRTYBATCH_DEVICE_NAME);
		kvm = false;
	}
	if (!kvm) {
		tap_skip(why, "module detected");
		tap_skip(why, "module: random clears match KVM_GET_DIRTY_LOG");
		tap_skip(why, "module: error path");
		tap_skip(why, "module: vCPU writing meanwhile, no dirty page lost");
		tap_skip(why, "fallback: random clears match KVM_GET_DIRTY_LOG");
		tap_skip(why, "fallback: vCPU writing meanwhile, no dirty page lost");
		tap_skip(why, "module and fallback leave identical dirty state");
		tap_skip(why, "module: re-created memslot");
		tap_skip(why, "module through the caller's descriptor");
		return tap_exit_code();
	}
	{
		/* native is confirmed only on a VM descriptor */
		struct vm *vm = vm_create(true);
		struct dirtybatch_ctx *ctx;
		struct dirtybatch_info info = { .sz = sizeof(info) };
		bool ok = !dirtybatch_open(vm->fd, NULL, &ctx) && !dirtybatch_get_info(ctx, &info);

		tap_diag("module: abi %u features %#" PRIx64 " max_ranges %u max_bitmap_bytes %u, "
			 "fallback reason %d", info.module_abi_version, info.module_features,
			 info.module_max_ranges, info.module_max_bitmap_bytes, info.fallback_reason);
		tap_diag("native: abi %u max_ranges %u, reason %d", info.native_abi_version,
			 info.native_max_ranges, info.native_reason);
		tap_ok(ok && info.mode == (uint32_t)batch_mode &&
		       (info.flags & (batch_mode == DIRTYBATCH_MODE_MODULE ?
				      DIRTYBATCH_INFO_MODULE_PRESENT :
				      DIRTYBATCH_INFO_NATIVE_PRESENT)),
		       "%s detected (mode %u, reason %d)", bn, info.mode, info.fallback_reason);
		if (ok)
			dirtybatch_close(ctx);
		vm_free(vm);
	}
	why[0] = 0;
	tap_ok(test_random_clears(true, 300, why, sizeof(why)),
	       "%s: random clears match KVM_GET_DIRTY_LOG, pages_cleared as reported %s", bn, why);
	why[0] = 0;
	tap_ok(test_error_path(true, why, sizeof(why)),
	       "%s: KVM error reported, nothing applied, remainder queued %s", bn, why);
	why[0] = 0;
	tap_ok(test_vcpu(true, 150, why, sizeof(why)),
	       "%s: vCPU writing meanwhile, no dirty page lost %s", bn, why);
	why[0] = 0;
	tap_ok(test_random_clears(false, 150, why, sizeof(why)),
	       "fallback: random clears match KVM_GET_DIRTY_LOG %s", why);
	why[0] = 0;
	tap_ok(test_vcpu(false, 100, why, sizeof(why)),
	       "fallback: vCPU writing meanwhile, no dirty page lost %s", why);
	why[0] = 0;
	tap_ok(test_equivalence(300, why, sizeof(why)),
	       "%s and fallback leave identical dirty state for identical input %s", bn, why);
	why[0] = 0;
	tap_ok(test_recreated_memslot(true, why, sizeof(why)),
	       "%s: a re-created memslot keeps its dirty bits, queued clears dropped %s",
	       bn, why);
	if (batch_mode != DIRTYBATCH_MODE_MODULE) {
		tap_skip("the batch backend is native", "module through the caller's descriptor");
	} else {
		/* a sandboxed VMM: the device opened before, passed as a descriptor */
		int fd = open("/dev/" KVM_DIRTYBATCH_DEVICE_NAME, O_RDWR | O_CLOEXEC);
		struct dirtybatch_opts o = { .sz = sizeof(o), .flags = DIRTYBATCH_OPEN_DEVICE_FD,
					     .device_fd = fd };
		struct dirtybatch_ctx *ctx = NULL;
		bool ok = fd >= 0 && !dirtybatch_open(0, &o, &ctx) &&
			  dirtybatch_mode(ctx) == DIRTYBATCH_MODE_MODULE;

		dirtybatch_close(ctx);
		ok &= fd >= 0 && fcntl(fd, F_GETFD) >= 0;	/* still the caller's */
		if (fd >= 0)
			close(fd);
		tap_ok(ok, "module through the caller's descriptor (DIRTYBATCH_OPEN_DEVICE_FD)");
	}
#endif
	return tap_exit_code();
}
