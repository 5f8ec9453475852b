// SPDX-License-Identifier: LGPL-2.1 OR MIT
/*
 * The test VM: five adjacent memslots of odd sizes from BASE_GPA (the
 * region the vCPU writes), one behind a gap, one in address space 1 where
 * KVM has it, each with a per-page model of its dirty log (all dirty to
 * start with: KVM_DIRTY_LOG_INITIALLY_SET); random batches queued on one
 * or more contexts and marked in the model; a test case, the VM with a
 * context open on it, around a test's body.
 */
#include <stdarg.h>

#include "kvm_tests.h"

struct rng kt_rng;		/* seeded in main() */
int kt_batch_mode = DIRTYBATCH_MODE_MODULE;

static const uint64_t slot_pages[] = { 1000, 777, 64, 5, 4109 };
#define NR_ADJ	(sizeof(slot_pages) / sizeof(slot_pages[0]))

bool tslot_in_guest_region(const struct tslot *s)
{
	return DIRTYBATCH_SLOT_AS_ID(s->slot) == 0 && s->slot <= NR_ADJ;
}

/* A memslot in KVM and in the model: all dirty (INITIALLY_SET), none requested. */
void tvm_add(struct tvm *t, uint32_t slot, uint64_t gpa, uint64_t npages)
{
	int i = t->n++;
	struct tslot *s = &t->s[i];

	s->slot = slot;
	s->gpa = gpa;
	s->npages = npages;
	s->hva = vm_add_slot(t->vm, slot, gpa, npages, KVM_MEM_LOG_DIRTY_PAGES);
	t->dirty[i] = malloc(npages);
	t->req[i] = calloc(npages, 1);
	t->last_clear[i] = calloc(npages, sizeof(uint32_t));
	if (!t->dirty[i] || !t->req[i] || !t->last_clear[i])
		abort();
	memset(t->dirty[i], 1, npages);
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
}

/* Delete a memslot in KVM and from the model. */
void tvm_delete(struct tvm *t, uint32_t slot)
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
uint64_t tvm_compare(struct tvm *t, char *why, size_t wl)
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
int tvm_random_add(struct tvm *t, struct dirtybatch_ctx **ctx, int nctx)
{
	int si = (int)rng_below(&kt_rng, (uint64_t)t->n), r = 0;
	struct tslot *s = &t->s[si];
	uint64_t first = rng_below(&kt_rng, s->npages), n;

	switch (rng_below(&kt_rng, 4)) {
	case 0:
		n = 1 + rng_below(&kt_rng, rng_below(&kt_rng, 2) ? 5 : 200);
		break;
	case 1:
		first &= ~63ULL;
		n = 64 * (1 + rng_below(&kt_rng, 3));
		break;
	default:
		n = 1 + rng_below(&kt_rng, s->npages - first);
		if (n > 300)
			n = 1 + rng_below(&kt_rng, 300);
		break;
	}
	if (first + n > s->npages)
		n = s->npages - first;

	switch (rng_below(&kt_rng, 3)) {
	case 0:	/* slot-relative pages */
		for (int c = 0; c < nctx; c++)
			r |= dirtybatch_add_pages(ctx[c], s->slot, first, n);
		mark_req(t, si, first, n);
		break;
	case 1: {	/* guest-physical, possibly running on into the next slots */
		uint32_t as = DIRTYBATCH_SLOT_AS_ID(s->slot);
		uint64_t gpa = s->gpa + first * PAGE_SIZE, len = n * PAGE_SIZE, cur, left;

		if (tslot_in_guest_region(s) && rng_below(&kt_rng, 2)) {
			/* extend across the boundary within the adjacent region */
			uint64_t end = BASE_GPA + t->guest_pages * PAGE_SIZE;
			uint64_t max = (end - gpa) / PAGE_SIZE;

			len = (1 + rng_below(&kt_rng, max < 400 ? max : 400)) * PAGE_SIZE;
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
		uint64_t off = rng_below(&kt_rng, 130), words = (off + n + 63) / 64;
		uint64_t *bm = calloc(words, 8), dens = rng_below(&kt_rng, 3);

		for (uint64_t w = 0; w < words; w++)
			bm[w] = dens == 0 ? ~0ULL : dens == 1 ? rng_next(&kt_rng) :
				rng_next(&kt_rng) & rng_next(&kt_rng) & rng_next(&kt_rng);
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
void tvm_req_counts(struct tvm *t, uint64_t *req, uint64_t *dirty_req)
{
	*req = *dirty_req = 0;
	for (int i = 0; i < t->n; i++)
		for (uint64_t p = 0; p < t->s[i].npages; p++)
			if (t->req[i][p]) {
				(*req)++;
				*dirty_req += t->dirty[i][p];
			}
}

/* The model batch done: its pages clean, cleared at stamp; none requested. */
void tvm_apply_req(struct tvm *t, uint32_t stamp)
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

/*
 * A context on the test VM, module (kt_batch_mode) or fallback, its
 * layout set: 0, or an error (why says which) and nothing left to close.
 */
static int tvm_open_ctx(struct tvm *t, bool module, struct dirtybatch_ctx **ctx,
			char *why, size_t wl)
{
	struct dirtybatch_opts o = { .sz = sizeof(o),
		.flags = module ? 0 : DIRTYBATCH_OPEN_FALLBACK };
	int r = dirtybatch_open(t->vm->fd, &o, ctx);

	if (r) {
		snprintf(why, wl, "dirtybatch_open: %s", strerror(-r));
		return r;
	}
	if (dirtybatch_mode(*ctx) != (module ? kt_batch_mode : DIRTYBATCH_MODE_FALLBACK)) {
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

/* ------------------------------------------------------------------ */
/* A test case: a fresh test VM with a context open on it.            */

static bool run_case(struct kt_case *c, bool (*body)(struct kt_case *c))
{
	bool ok = false;

	tvm_create(&c->t);
	if (!tvm_open_ctx(&c->t, c->module, &c->ctx, c->why, c->wl)) {
		ok = body(c);
		dirtybatch_close(c->ctx);
	}
	tvm_destroy(&c->t);
	return ok;
}

bool kt_run_case(bool module, int rounds, bool (*body)(struct kt_case *c),
		 char *why, size_t wl)
{
	struct kt_case c = { .module = module, .rounds = rounds, .why = why, .wl = wl };

	return run_case(&c, body);
}

bool kt_run_nested_case(struct kt_case *outer, bool module, bool (*body)(struct kt_case *c))
{
	struct kt_case c = { .module = module, .rounds = outer->rounds, .why = outer->why,
			     .wl = outer->wl, .outer = outer };

	return run_case(&c, body);
}

bool kt_fail(struct kt_case *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->why, c->wl, fmt, ap);
	va_end(ap);
	return false;
}
