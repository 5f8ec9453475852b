// SPDX-License-Identifier: LGPL-2.1 OR MIT
/*
 * libdirtybatch unit tests, no KVM needed.
 *
 * The library is linked statically from its objects so that the internal
 * backend hook can replace the ioctls by a fake kernel that applies every
 * request with exactly KVM_CLEAR_DIRTY_LOG's rules (and the module's
 * all-or-nothing batch rule) and records it.  Everything the library does
 * is checked against a naive per-page reference model: which pages get
 * cleared, word alignment, the tail rule at slot ends that are not a
 * multiple of 64 pages, splits at slot boundaries, maximal runs, module
 * limits, error codes and what stays queued after a failed submit.
 *
 * Environment: DIRTYBATCH_TEST_SEED (default fixed), DIRTYBATCH_TEST_CASES
 * (default 100000 randomized cases).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#include "dirtybatch_internal.h"
#include "rng.h"
#include "tap.h"

static struct rng rng;		/* seeded by each case: run_case() */

#define FAKE_VM_FD	1000
#define db_test_offsetofend(type, member) \
	(offsetof(type, member) + sizeof(((type *)0)->member))
#define MAXS		12

/* ------------------------------------------------------------------ */
/* Allocation counting (only in the build linked with --wrap=malloc).  */

#ifdef DB_WRAP_MALLOC
void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
static unsigned long allocs;
static uint64_t alloc_bytes;
void *__wrap_malloc(size_t n)
{
	allocs++;
	alloc_bytes += n;
	return __real_malloc(n);
}
void *__wrap_calloc(size_t n, size_t m)
{
	allocs++;
	alloc_bytes += (uint64_t)n * m;
	return __real_calloc(n, m);
}
void *__wrap_realloc(void *p, size_t n)
{
	allocs++;
	alloc_bytes += n;
	return __real_realloc(p, n);
}
#endif

/* ------------------------------------------------------------------ */
/* Random numbers.                                                    */

/* What the randomized cases exercised. */
static struct {
	uint64_t add_ok[3], add_err[3], errs[8];
	uint64_t submits, module_submits, injected, ranges, pages, tails;
	uint64_t layout_ok, layout_err, toggles, discards;
} cov;

static void cov_err(int type, int r)
{
	static const int codes[] = { 0, -EINVAL, -ENODATA, -EOVERFLOW, -ENOENT, -ERANGE, -EEXIST };

	if (!r) {
		cov.add_ok[type]++;
		return;
	}
	cov.add_err[type]++;
	for (int i = 1; i < 7; i++)
		if (codes[i] == r)
			cov.errs[i]++;
}

/* ------------------------------------------------------------------ */
/* Model and fake kernel.                                             */

struct mslot {
	uint32_t slot;
	uint64_t gpa, npages;
	uint8_t *q;	/* queued (model) */
	uint8_t *kd;	/* kernel dirty bit (fake kernel) */
	uint8_t *clr;	/* requested during the current submit */
};

struct rec {
	uint32_t slot;
	uint32_t num;
	uint64_t first;
	bool applied;
};

struct chunk {
	uint32_t count;
	uint64_t bytes, first_bytes;
};

struct tc {
	struct dirtybatch_ctx *ctx;
	unsigned int shift;
	uint64_t ps;
	struct mslot s[MAXS];
	int n;
	uint64_t queued;

	bool module_cfg, forced;
	struct kvm_dirtybatch_info info;
	uint64_t maxw;
	uint64_t gap;		/* fallback: zero words a call may bridge */
	uint64_t mgap;		/* module: zero words a range may bridge */
	uint32_t stride;

	/* fake kernel */
	int64_t fail_at;
	int fail_err;
	uint32_t fail_pick;
	int64_t calls;
	bool failed;
	bool fail_has_range;
	struct rec fail_rec;
	struct rec *recs;
	size_t nrec, caprec;
	struct chunk *chunks;
	size_t nchunk, capchunk;
	uint64_t kcleared;
	uint64_t applied_pages;

	/* expected cumulative stats */
	struct dirtybatch_stats est;

	int bad;
	char why[512];
};

__attribute__((format(printf, 2, 3)))
static void fail(struct tc *t, const char *fmt, ...)
{
	va_list ap;

	if (t->bad++)
		return;
	va_start(ap, fmt);
	vsnprintf(t->why, sizeof(t->why), fmt, ap);
	va_end(ap);
}

static struct mslot *mfind(struct tc *t, uint32_t slot)
{
	for (int i = 0; i < t->n; i++)
		if (t->s[i].slot == slot)
			return &t->s[i];
	return NULL;
}

static void rec_add(struct tc *t, uint32_t slot, uint64_t first, uint32_t num,
		    bool applied)
{
	if (t->nrec == t->caprec) {
		t->caprec = t->caprec ? 2 * t->caprec : 256;
		t->recs = realloc(t->recs, t->caprec * sizeof(*t->recs));
		if (!t->recs)
			abort();
	}
	t->recs[t->nrec++] = (struct rec){ slot, num, first, applied };
}

/*
 * Check one range as KVM would, plus what the library promises: its first
 * and last words are non-zero, and no more than @gap zero words in a row
 * lie between.
 */
static int fk_check(struct tc *t, uint32_t slot, uint64_t first, uint32_t num,
		    const uint64_t *bm, uint64_t gap)
{
	struct mslot *m = mfind(t, slot);
	uint64_t nw, w, zeros = 0;

	if (!m) {
		fail(t, "range for unknown slot %#x", slot);
		return -ENOENT;
	}
	if (first & 63) {
		fail(t, "first_page %" PRIu64 " not a multiple of 64", first);
		return -EINVAL;
	}
	if (first > m->npages || num > m->npages - first ||
	    (num < m->npages - first && (num & 63))) {
		fail(t, "KVM would reject slot %#x first %" PRIu64 " num %u (npages %" PRIu64 ")",
		     slot, first, num, m->npages);
		return -EINVAL;
	}
	if (!num) {
		fail(t, "empty range");
		return -EINVAL;
	}
	nw = (num + 63ULL) / 64;
	if (!bm[0] || !bm[nw - 1])
		fail(t, "range slot %#x first %" PRIu64 " starts or ends with a zero word",
		     slot, first);
	for (w = 0; w < nw; w++) {
		zeros = bm[w] ? 0 : zeros + 1;
		if (zeros > gap)
			fail(t, "%" PRIu64 " zero words inside range slot %#x first %" PRIu64
			     " (gap %" PRIu64 ")", zeros, slot, first, gap);
	}
	if ((num & 63) && (bm[nw - 1] >> (num & 63)))
		fail(t, "bits set beyond the slot end");
	return 0;
}

static uint64_t fk_apply(struct tc *t, uint32_t slot, uint64_t first,
			 uint32_t num, const uint64_t *bm)
{
	struct mslot *m = mfind(t, slot);
	uint64_t cleared = 0;

	for (uint64_t i = 0; i < num; i++) {
		uint64_t p = first + i;

		if (!(bm[i / 64] >> (i % 64) & 1))
			continue;
		if (!m->q[p])
			fail(t, "slot %#x page %" PRIu64 " cleared but not queued", slot, p);
		if (m->clr[p])
			fail(t, "slot %#x page %" PRIu64 " requested twice", slot, p);
		m->clr[p] = 1;
		t->applied_pages++;
		if (m->kd[p]) {
			m->kd[p] = 0;
			cleared++;
		}
	}
	return cleared;
}

static int fk_clear_log(void *priv, int vm_fd, struct kvm_clear_dirty_log *log)
{
	struct tc *t = priv;
	int64_t k;
	int err;

	if (vm_fd != FAKE_VM_FD)
		fail(t, "wrong vm fd %d", vm_fd);
	if (t->module_cfg && !t->forced)
		fail(t, "KVM_CLEAR_DIRTY_LOG in module mode");
	k = t->calls++;
	err = fk_check(t, log->slot, log->first_page, log->num_pages, log->dirty_bitmap,
		       t->gap);
	if (err)
		return err;
	if (k == t->fail_at) {
		t->failed = true;
		t->fail_has_range = true;
		t->fail_rec = (struct rec){ log->slot, log->num_pages, log->first_page, false };
		rec_add(t, log->slot, log->first_page, log->num_pages, false);
		return t->fail_err;
	}
	fk_apply(t, log->slot, log->first_page, log->num_pages, log->dirty_bitmap);
	rec_add(t, log->slot, log->first_page, log->num_pages, true);
	return 0;
}

static int fk_batch(void *priv, int dev_fd, struct kvm_dirtybatch_clear *c)
{
	struct tc *t = priv;
	uint64_t bytes = 0, first_bytes = 0, cleared = 0;
	int64_t k;
	uint32_t i;

	(void)dev_fd;
	if (!t->module_cfg || t->forced)
		fail(t, "KVM_DIRTYBATCH_CLEAR in fallback mode");
	if (c->vm_fd != FAKE_VM_FD || c->flags || c->reserved0 ||
	    c->reserved[0] || c->reserved[1] || c->reserved[2] || c->reserved[3])
		fail(t, "bad clear header");
	if (c->range_size != t->stride)
		fail(t, "stride %u, expected %u", c->range_size, t->stride);
	if (!c->count || c->count > t->info.max_ranges) {
		fail(t, "count %u (max %u)", c->count, t->info.max_ranges);
		return -E2BIG;
	}
	for (i = 0; i < c->count; i++) {
		const unsigned char *p = (const unsigned char *)(uintptr_t)c->ranges +
			(size_t)i * c->range_size;
		const struct kvm_dirtybatch_range *r = (const void *)p;
		uint64_t b = ((r->num_pages + 63ULL) / 64) * 8;
		int err;

		for (uint32_t x = sizeof(*r); x < c->range_size; x++)
			if (p[x])
				fail(t, "non-zero stride padding");
		if (!i)
			first_bytes = b;
		bytes += b;
		err = fk_check(t, r->slot, r->first_page, r->num_pages,
			       (const uint64_t *)(uintptr_t)r->dirty_bitmap, t->mgap);
		if (err) {
			c->error_index = i;
			return err;
		}
	}
	if (bytes > t->info.max_bitmap_bytes) {
		fail(t, "bitmap bytes %" PRIu64 " > %u", bytes, t->info.max_bitmap_bytes);
		c->error_index = c->count;
		return -E2BIG;
	}
	if (t->nchunk == t->capchunk) {
		t->capchunk = t->capchunk ? 2 * t->capchunk : 64;
		t->chunks = realloc(t->chunks, t->capchunk * sizeof(*t->chunks));
		if (!t->chunks)
			abort();
	}
	t->chunks[t->nchunk++] = (struct chunk){ c->count, bytes, first_bytes };
	k = t->calls++;
	if (k == t->fail_at) {
		t->failed = true;
		c->error_index = t->fail_pick % (c->count + 1);
		t->fail_has_range = c->error_index < c->count;
		for (i = 0; i < c->count; i++) {
			const struct kvm_dirtybatch_range *r = (const void *)
				((const unsigned char *)(uintptr_t)c->ranges +
				 (size_t)i * c->range_size);

			rec_add(t, r->slot, r->first_page, r->num_pages, false);
			if (i == c->error_index)
				t->fail_rec = t->recs[t->nrec - 1];
		}
		return t->fail_err;
	}
	for (i = 0; i < c->count; i++) {
		const struct kvm_dirtybatch_range *r = (const void *)
			((const unsigned char *)(uintptr_t)c->ranges +
			 (size_t)i * c->range_size);

		cleared += fk_apply(t, r->slot, r->first_page, r->num_pages,
				    (const uint64_t *)(uintptr_t)r->dirty_bitmap);
		rec_add(t, r->slot, r->first_page, r->num_pages, true);
	}
	c->pages_cleared = cleared;
	c->error_index = c->count;
	t->kcleared += cleared;
	return 0;
}

static const struct dirtybatch_backend fk_backend = {
	.clear_log = fk_clear_log,
	.batch_clear = fk_batch,
};

/* ------------------------------------------------------------------ */
/* Model helpers.                                                     */

static void mslot_init(struct mslot *m, uint32_t slot, uint64_t gpa,
		       uint64_t npages, int kd_mode)
{
	m->slot = slot;
	m->gpa = gpa;
	m->npages = npages;
	m->q = calloc(npages, 1);
	m->kd = malloc(npages);
	m->clr = calloc(npages, 1);
	if (!m->q || !m->kd || !m->clr)
		abort();
	for (uint64_t p = 0; p < npages; p++)
		m->kd[p] = kd_mode == 0 ? 1 : kd_mode == 1 ? 0 : (rng_next(&rng) & 1);
}

static void mslot_free(struct mslot *m)
{
	free(m->q);
	free(m->kd);
	free(m->clr);
	memset(m, 0, sizeof(*m));
}

static void model_queue(struct tc *t, struct mslot *m, uint64_t p)
{
	if (!m->q[p]) {
		m->q[p] = 1;
		t->queued++;
	}
}

/* Same rules as the library, written naively. */
static int model_check_layout(const struct tc *t,
			      const struct dirtybatch_memslot *d, int n)
{
	for (int i = 0; i < n; i++) {
		uint64_t bytes;

		if (d[i].flags || !d[i].npages || d[i].npages > DIRTYBATCH_MAX_SLOT_PAGES ||
		    d[i].guest_phys_addr % t->ps)
			return -EINVAL;
		bytes = d[i].npages * t->ps;
		if (d[i].guest_phys_addr + (bytes - 1) < d[i].guest_phys_addr)
			return -EOVERFLOW;
	}
	for (int i = 0; i < n; i++) {
		for (int j = i + 1; j < n; j++) {
			uint64_t ai = d[i].guest_phys_addr,
				 li = ai + d[i].npages * t->ps - 1,
				 aj = d[j].guest_phys_addr,
				 lj = aj + d[j].npages * t->ps - 1;

			if (d[i].slot == d[j].slot)
				return -EEXIST;
			if ((d[i].slot >> 16) == (d[j].slot >> 16) &&
			    ai <= lj && aj <= li)
				return -EEXIST;
		}
	}
	return 0;
}

/* Install a layout in the model (already validated). */
static void model_install(struct tc *t, const struct dirtybatch_memslot *d, int n)
{
	struct mslot ns[MAXS];
	bool kept[MAXS] = { false };
	uint64_t discarded = 0;

	memset(ns, 0, sizeof(ns));
	for (int i = 0; i < n; i++) {
		struct mslot *old = mfind(t, d[i].slot);

		if (old && old->gpa == d[i].guest_phys_addr && old->npages == d[i].npages) {
			ns[i] = *old;
			kept[old - t->s] = true;
		} else {
			mslot_init(&ns[i], d[i].slot, d[i].guest_phys_addr,
				   d[i].npages, (int)rng_below(&rng, 3));
		}
	}
	for (int i = 0; i < t->n; i++) {
		if (kept[i])
			continue;
		for (uint64_t p = 0; p < t->s[i].npages; p++)
			discarded += t->s[i].q[p];
		mslot_free(&t->s[i]);
	}
	t->queued -= discarded;
	t->est.pages_discarded += discarded;
	memcpy(t->s, ns, sizeof(ns));
	t->n = n;
}

static int layout_desc(const struct tc *t, struct dirtybatch_memslot *d)
{
	for (int i = 0; i < t->n; i++)
		d[i] = (struct dirtybatch_memslot){ .sz = sizeof(struct dirtybatch_memslot), .slot = t->s[i].slot,
			.guest_phys_addr = t->s[i].gpa, .npages = t->s[i].npages };
	return t->n;
}

/* ------------------------------------------------------------------ */
/* Expected ranges for the current model state.                       */

static int rec_cmp(const void *a, const void *b)
{
	const struct rec *x = a, *y = b;

	if (x->slot != y->slot)
		return x->slot < y->slot ? -1 : 1;
	if (x->first != y->first)
		return x->first < y->first ? -1 : 1;
	return x->num < y->num ? -1 : x->num > y->num;
}

/*
 * Maximal runs of non-zero words, joined over gaps of at most @gap zero
 * words while the run stays within @maxw words, split into pieces of at
 * most @maxw words.
 */
static size_t expected_ranges(const struct tc *t, uint64_t maxw, uint64_t gap,
			      struct rec **out)
{
	size_t n = 0, cap = 64;
	struct rec *r = malloc(cap * sizeof(*r));

	for (int i = 0; i < t->n; i++) {
		const struct mslot *m = &t->s[i];
		uint64_t nw = (m->npages + 63) / 64, w = 0, ws, we, x;
		bool *nz = calloc(nw + 1, sizeof(*nz));

		for (uint64_t p = 0; p < m->npages; p++)
			nz[p / 64] |= m->q[p];
		while (w < nw) {
			if (!nz[w]) {
				w++;
				continue;
			}
			ws = w;
			we = w + 1;	/* one past the last non-zero word so far */
			for (x = we; x < nw; x++) {
				if (!nz[x])
					continue;
				if (x > we && (x - we > gap || x + 1 - ws > maxw))
					break;
				we = x + 1;
			}
			w = we;
			for (uint64_t ps = ws; ps < we; ps += maxw) {
				uint64_t pe = ps + maxw < we ? ps + maxw : we;

				if (n == cap) {
					cap *= 2;
					r = realloc(r, cap * sizeof(*r));
				}
				r[n++] = (struct rec){ m->slot,
					(uint32_t)(pe == nw ? m->npages - ps * 64 : (pe - ps) * 64),
					ps * 64, false };
			}
		}
		free(nz);
	}
	*out = r;
	return n;
}

/* ------------------------------------------------------------------ */
/* Submit, checked.                                                   */

static bool module_mode(const struct tc *t)
{
	return t->module_cfg && !t->forced;
}

static void check_pending(struct tc *t, const char *what)
{
	uint64_t p = dirtybatch_pending(t->ctx);

	if (p != t->queued)
		fail(t, "%s: pending %" PRIu64 ", model %" PRIu64, what, p, t->queued);
}

static void do_submit(struct tc *t, bool inject)
{
	struct dirtybatch_result res = { .sz = sizeof(res) };
	struct rec *exp;
	size_t nexp, i, napplied = 0;
	bool module = module_mode(t);
	uint64_t maxw = module ? t->maxw : UINT64_MAX / 2;
	uint64_t req_pages = t->queued, kc0 = t->kcleared, applied_pages;
	int64_t ret;

	if (t->bad)
		return;
	for (int s = 0; s < t->n; s++)
		memset(t->s[s].clr, 0, t->s[s].npages);
	nexp = expected_ranges(t, maxw, module ? t->mgap : t->gap, &exp);
	if (nexp)
		qsort(exp, nexp, sizeof(*exp), rec_cmp);
	t->nrec = 0;
	t->nchunk = 0;
	t->calls = 0;
	t->failed = false;
	t->fail_has_range = false;
	t->applied_pages = 0;
	t->fail_at = -1;
	if (inject && nexp) {
		static const int errs[] = { -EINVAL, -ENOENT, -EFAULT, -ENOMEM };

		t->fail_at = (int64_t)rng_below(&rng, module ? 3 : nexp);
		t->fail_err = errs[rng_below(&rng, 4)];
		t->fail_pick = (uint32_t)rng_next(&rng);
	}

	ret = dirtybatch_submit(t->ctx, &res);
	applied_pages = t->applied_pages;
	cov.submits++;
	cov.module_submits += module;
	cov.injected += t->failed;
	cov.ranges += t->nrec;
	cov.pages += applied_pages;
	for (i = 0; i < t->nrec; i++)
		cov.tails += (t->recs[i].num & 63) != 0;

	t->est.submits++;
	t->est.ioctls += (uint64_t)t->calls;
	if (module)
		t->est.module_ioctls += (uint64_t)t->calls;
	for (i = 0; i < t->nrec; i++)
		napplied += t->recs[i].applied;
	t->est.ranges += napplied;
	t->est.pages_requested += applied_pages;
	if (module)
		t->est.pages_cleared_exact += t->kcleared - kc0;
	else
		t->est.pages_cleared_unknown += applied_pages;

	if (res.ioctls != (uint64_t)t->calls)
		fail(t, "res.ioctls %" PRIu64 " calls %" PRId64, res.ioctls, t->calls);
	if (res.ranges != napplied)
		fail(t, "res.ranges %" PRIu64 " applied %zu", res.ranges, napplied);
	if (res.pages_requested != applied_pages)
		fail(t, "res.pages_requested %" PRIu64 " applied %" PRIu64,
		     res.pages_requested, applied_pages);
	if (module != !!(res.flags & DIRTYBATCH_RESULT_CLEARED_EXACT))
		fail(t, "CLEARED_EXACT flag wrong");
	if (res.pages_cleared != (module ? t->kcleared - kc0 : applied_pages))
		fail(t, "res.pages_cleared %" PRIu64, res.pages_cleared);

	/* distinct slots of applied ranges */
	{
		uint64_t slots = 0;

		for (int s = 0; s < t->n; s++) {
			bool any = false;

			for (i = 0; i < t->nrec; i++)
				any |= t->recs[i].applied && t->recs[i].slot == t->s[s].slot;
			slots += any;
		}
		if (res.slots != slots)
			fail(t, "res.slots %" PRIu64 " expected %" PRIu64, res.slots, slots);
	}

	/* Every range the library built must be one of the expected pieces. */
	if (t->nrec)
		qsort(t->recs, t->nrec, sizeof(*t->recs), rec_cmp);
	for (i = 0; i < t->nrec; i++) {
		struct rec key = t->recs[i];

		key.applied = false;
		if (!nexp || !bsearch(&key, exp, nexp, sizeof(*exp), rec_cmp))
			fail(t, "unexpected range slot %#x first %" PRIu64 " num %u",
			     key.slot, key.first, key.num);
		if (i && !rec_cmp(&t->recs[i - 1], &t->recs[i]))
			fail(t, "range sent twice");
	}

	/* Module: split into calls only where a limit forced it. */
	if (module) {
		for (i = 0; i + 1 < t->nchunk; i++) {
			const struct chunk *a = &t->chunks[i], *b = &t->chunks[i + 1];

			if (a->count < t->info.max_ranges &&
			    a->bytes + b->first_bytes <= t->info.max_bitmap_bytes)
				fail(t, "call %zu split without need (%u ranges, %" PRIu64 " bytes)",
				     i, a->count, a->bytes);
		}
	}

	if (!t->failed) {
		if (ret < 0)
			fail(t, "submit failed %" PRId64, ret);
		else if ((uint64_t)ret != (module ? t->kcleared - kc0 : req_pages))
			fail(t, "submit returned %" PRId64, ret);
		if (t->nrec != nexp)
			fail(t, "%zu ranges, expected %zu", t->nrec, nexp);
		if (!module && (uint64_t)t->calls != nexp)
			fail(t, "fallback: %" PRId64 " ioctls for %zu runs", t->calls, nexp);
		if (applied_pages != req_pages)
			fail(t, "cleared %" PRIu64 " pages, queued %" PRIu64, applied_pages, req_pages);
		if (res.error || res.pages_pending)
			fail(t, "result error %d pending %" PRIu64, res.error, res.pages_pending);
		for (int s = 0; s < t->n; s++) {
			struct mslot *m = &t->s[s];

			for (uint64_t p = 0; p < m->npages; p++)
				if (m->q[p] != m->clr[p])
					fail(t, "slot %#x page %" PRIu64 " queued %d cleared %d",
					     m->slot, p, m->q[p], m->clr[p]);
			memset(m->q, 0, m->npages);
		}
		t->queued = 0;
	} else {
		t->est.failed_submits++;
		if (ret != t->fail_err || res.error != t->fail_err)
			fail(t, "submit returned %" PRId64 "/%d, injected %d", ret, res.error, t->fail_err);
		if (t->fail_has_range) {
			if (res.error_slot != t->fail_rec.slot ||
			    res.error_first_page != t->fail_rec.first)
				fail(t, "error at %#x/%" PRIu64 ", reported %#x/%" PRIu64,
				     t->fail_rec.slot, t->fail_rec.first,
				     res.error_slot, res.error_first_page);
		} else if (res.error_slot != UINT32_MAX || res.error_first_page != UINT64_MAX) {
			fail(t, "error position reported for a non-range error");
		}
		/* what was applied is gone, the rest stays queued */
		for (int s = 0; s < t->n; s++) {
			struct mslot *m = &t->s[s];

			for (uint64_t p = 0; p < m->npages; p++) {
				if (m->clr[p]) {
					m->q[p] = 0;
					t->queued--;
				}
			}
		}
		if (res.pages_pending != t->queued)
			fail(t, "res.pages_pending %" PRIu64 " model %" PRIu64,
			     res.pages_pending, t->queued);
	}
	free(exp);
	check_pending(t, "after submit");
}

/* ------------------------------------------------------------------ */
/* Random operations.                                                 */

static uint64_t rnd_len(uint64_t max)
{
	switch (rng_below(&rng, 6)) {
	case 0:
		return 1 + rng_below(&rng, max < 3 ? max : 3);
	case 1:
		return 1 + rng_below(&rng, max < 70 ? max : 70);
	case 2:
		return max;
	case 3: {
		uint64_t l = 64 * (1 + rng_below(&rng, 4));

		return l < max ? l : max;
	}
	default:
		return 1 + rng_below(&rng, max);
	}
}

static uint64_t rnd_page(uint64_t npages)
{
	switch (rng_below(&rng, 5)) {
	case 0:
		return 0;
	case 1: {
		uint64_t p = rng_below(&rng, npages) & ~63ULL;

		return p;
	}
	case 2:
		return npages - 1 - rng_below(&rng, npages < 3 ? npages : 3);
	default:
		return rng_below(&rng, npages);
	}
}

static uint32_t rnd_unknown_slot(struct tc *t)
{
	uint32_t s;

	do
		s = DIRTYBATCH_SLOT(rng_below(&rng, 3), rng_below(&rng, 50));
	while (mfind(t, s));
	return s;
}

/* first/n for a slot, sometimes invalid. */
static void rnd_run(struct mslot *m, uint64_t *first, uint64_t *n)
{
	uint64_t f, l;

	switch (rng_below(&rng, 16)) {
	case 0:
		*first = rng_below(&rng, m->npages);
		*n = 0;
		return;
	case 1:
		*first = UINT64_MAX - rng_below(&rng, 5);
		*n = 1 + rng_below(&rng, 10);
		return;
	case 2:
		f = rnd_page(m->npages);
		*first = f;
		*n = m->npages - f + 1 + rng_below(&rng, 3);
		return;
	case 3:
		*first = m->npages + rng_below(&rng, 100);
		*n = 1 + rng_below(&rng, 5);
		return;
	default:
		f = rnd_page(m->npages);
		l = rnd_len(m->npages - f);
		*first = f;
		*n = l;
		return;
	}
}

static void op_add_pages(struct tc *t)
{
	struct mslot *m = t->n && rng_below(&rng, 12) ? &t->s[rng_below(&rng, t->n)] : NULL;
	uint32_t slot = m ? m->slot : rnd_unknown_slot(t);
	uint64_t first, n;
	int exp, got;

	if (m) {
		rnd_run(m, &first, &n);
	} else {
		first = rng_below(&rng, 100);
		n = 1 + rng_below(&rng, 100);
	}
	if (!n)
		exp = -ENODATA;
	else if (first > UINT64_MAX - n)
		exp = -EOVERFLOW;
	else if (!m)
		exp = -ENOENT;
	else if (first + n > m->npages)
		exp = -ERANGE;
	else
		exp = 0;
	errno = 4242;
	got = dirtybatch_add_pages(t->ctx, slot, first, n);
	if (errno != 4242)
		fail(t, "add_pages touched errno");
	if (got != exp)
		fail(t, "add_pages(%#x, %" PRIu64 ", %" PRIu64 ") = %d, expected %d",
		     slot, first, n, got, exp);
	if (!exp && !got)
		for (uint64_t p = first; p < first + n; p++)
			model_queue(t, m, p);
	cov_err(0, got);
	check_pending(t, "add_pages");
}

static void op_add_bitmap(struct tc *t)
{
	struct mslot *m = t->n && rng_below(&rng, 12) ? &t->s[rng_below(&rng, t->n)] : NULL;
	uint32_t slot = m ? m->slot : rnd_unknown_slot(t);
	uint64_t first, n, off, words, *bm = NULL, dummy = ~0ULL;
	const uint64_t *arg;
	int exp, got, dens;

	if (m) {
		rnd_run(m, &first, &n);
	} else {
		first = rng_below(&rng, 100);
		n = 1 + rng_below(&rng, 100);
	}
	off = rng_below(&rng, 4) ? rng_below(&rng, 300) : rng_below(&rng, 64);
	if (!rng_below(&rng, 40)) {
		off = UINT64_MAX - rng_below(&rng, 4);
		n = 5 + rng_below(&rng, 10);
	}
	arg = &dummy;
	if (!rng_below(&rng, 40))
		arg = NULL;
	if (!arg)
		exp = -EINVAL;
	else if (!n)
		exp = -ENODATA;
	else if (first > UINT64_MAX - n || off > UINT64_MAX - n ||
		 (off + n - 1) / 64 > (UINTPTR_MAX - (uintptr_t)arg) / 8)
		exp = -EOVERFLOW;
	else if (!m)
		exp = -ENOENT;
	else if (first + n > m->npages)
		exp = -ERANGE;
	else
		exp = 0;
	if (!exp) {
		/* exactly the words the library may read, garbage around */
		words = (off + n + 63) / 64;
		bm = malloc(words * 8);
		if (!bm)
			abort();
		dens = (int)rng_below(&rng, 5);
		for (uint64_t w = 0; w < words; w++) {
			uint64_t x = rng_next(&rng);

			switch (dens) {
			case 0: x = 0; break;
			case 1: x = ~0ULL; break;
			case 2: x &= rng_next(&rng) & rng_next(&rng) & rng_next(&rng); break;
			case 3: x = rng_below(&rng, 3) ? 0 : x; break;
			default: break;
			}
			bm[w] = x;
		}
		arg = bm;
	}
	errno = 4242;
	got = dirtybatch_add_bitmap(t->ctx, slot, first, n, arg, off);
	if (errno != 4242)
		fail(t, "add_bitmap touched errno");
	if (got != exp)
		fail(t, "add_bitmap(%#x, %" PRIu64 ", %" PRIu64 ", off %" PRIu64 ") = %d, expected %d",
		     slot, first, n, off, got, exp);
	if (!exp && !got)
		for (uint64_t i = 0; i < n; i++)
			if (bm[(off + i) / 64] >> ((off + i) % 64) & 1)
				model_queue(t, m, first + i);
	free(bm);
	cov_err(2, got);
	check_pending(t, "add_bitmap");
}

static void op_add_gpa(struct tc *t)
{
	uint32_t as;
	uint64_t gpa, len, last, np;
	int exp, got;
	struct mslot *pages_slot[1];

	(void)pages_slot;
	if (t->n && rng_below(&rng, 10)) {
		struct mslot *m = &t->s[rng_below(&rng, t->n)];
		uint64_t f = rnd_page(m->npages);

		as = m->slot >> 16;
		gpa = m->gpa + f * t->ps;
		/* often run past the slot end into the neighbour */
		np = rng_below(&rng, 3) ? rnd_len(m->npages - f) : rnd_len(m->npages - f) + rng_below(&rng, 3 * 64 + 1);
		len = np * t->ps;
		if (rng_below(&rng, 10) == 0)
			len += 1 + rng_below(&rng, t->ps - 1);	/* misaligned length */
		if (rng_below(&rng, 10) == 0)
			gpa += 1 + rng_below(&rng, t->ps - 1);	/* misaligned start */
		if (rng_below(&rng, 20) == 0)
			len = 0;
		if (rng_below(&rng, 30) == 0)
			gpa -= t->ps * (1 + rng_below(&rng, 2));	/* maybe starts in a gap */
	} else {
		as = (uint32_t)rng_below(&rng, 3);
		gpa = rng_next(&rng) & ~(t->ps - 1);
		len = (1 + rng_below(&rng, 1000)) * t->ps;
		if (rng_below(&rng, 3) == 0) {
			gpa = (UINT64_MAX & ~(t->ps - 1)) - rng_below(&rng, 3) * t->ps;
			len = (1 + rng_below(&rng, 4)) * t->ps;
		}
	}
	if (!len)
		exp = -ENODATA;
	else if ((gpa | len) & (t->ps - 1))
		exp = -EINVAL;
	else if (gpa + (len - 1) < gpa)
		exp = -EOVERFLOW;
	else {
		exp = 0;
		last = gpa + (len - 1);
		np = len / t->ps;
		for (uint64_t i = 0; i < np; i++) {
			uint64_t a = gpa + i * t->ps;
			bool found = false;

			for (int s = 0; s < t->n && !found; s++) {
				struct mslot *m = &t->s[s];

				found = (m->slot >> 16) == as && a >= m->gpa &&
					a - m->gpa < m->npages * t->ps;
			}
			if (!found) {
				exp = -ENOENT;
				break;
			}
		}
		(void)last;
	}
	errno = 4242;
	got = dirtybatch_add_gpa(t->ctx, as, gpa, len);
	if (errno != 4242)
		fail(t, "add_gpa touched errno");
	if (got != exp)
		fail(t, "add_gpa(%u, %#" PRIx64 ", %#" PRIx64 ") = %d, expected %d",
		     as, gpa, len, got, exp);
	if (!exp && !got) {
		np = len / t->ps;
		for (uint64_t i = 0; i < np; i++) {
			uint64_t a = gpa + i * t->ps;

			for (int s = 0; s < t->n; s++) {
				struct mslot *m = &t->s[s];

				if ((m->slot >> 16) == as && a >= m->gpa &&
				    a - m->gpa < m->npages * t->ps)
					model_queue(t, m, (a - m->gpa) / t->ps);
			}
		}
	}
	cov_err(1, got);
	check_pending(t, "add_gpa");
}

static uint64_t rnd_npages(void)
{
	switch (rng_below(&rng, 10)) {
	case 0: case 1: case 2: case 3:
		return 1 + rng_below(&rng, 130);
	case 4: case 5: {
		uint64_t k = 64 * (1 + rng_below(&rng, 6));

		return rng_below(&rng, 2) ? k : k + rng_below(&rng, 5) - 2 + (k < 3 ? 3 : 0);
	}
	case 6: case 7:
		return 1 + rng_below(&rng, 700);
	case 8:
		return 1 + rng_below(&rng, 2500);
	default:
		return rng_below(&rng, 2) ? 1 : 64;
	}
}

/* A random valid layout of n slots. */
static int rnd_layout(struct tc *t, struct dirtybatch_memslot *d, int n)
{
	uint64_t cursor[2];
	int k = 0;

	cursor[0] = rng_below(&rng, 4) * (rng_below(&rng, 2) ? 256 : 1) * t->ps;
	cursor[1] = rng_below(&rng, 1000) * t->ps;
	for (int i = 0; i < n; i++) {
		uint32_t as = rng_below(&rng, 5) == 0, slot;
		uint64_t np = rnd_npages(), gpa;
		bool dup;

		do {
			slot = DIRTYBATCH_SLOT(as, rng_below(&rng, 40));
			dup = false;
			for (int j = 0; j < k; j++)
				dup |= d[j].slot == slot;
		} while (dup);
		if (i == n - 1 && !as && rng_below(&rng, 15) == 0) {
			gpa = 0 - np * t->ps;	/* ends at the top of the address space */
		} else {
			if (rng_below(&rng, 2))
				cursor[as] += rng_below(&rng, 4) * t->ps;
			gpa = cursor[as];
			cursor[as] += np * t->ps;
		}
		d[k++] = (struct dirtybatch_memslot){ .sz = sizeof(struct dirtybatch_memslot), .slot = slot,
			.guest_phys_addr = gpa, .npages = np };
	}
	/* shuffle */
	for (int i = k - 1; i > 0; i--) {
		int j = (int)rng_below(&rng, (uint64_t)i + 1);
		struct dirtybatch_memslot x = d[i];

		d[i] = d[j];
		d[j] = x;
	}
	return k;
}

static void op_layout(struct tc *t)
{
	struct dirtybatch_memslot d[MAXS + 1];
	int n = 0, exp, got, kind = (int)rng_below(&rng, 4);

	if (kind == 0) {
		/* remove */
		uint32_t slot = t->n && rng_below(&rng, 5) ? t->s[rng_below(&rng, t->n)].slot : rnd_unknown_slot(t);

		exp = mfind(t, slot) ? 0 : -ENOENT;
		errno = 4242;
		got = dirtybatch_slot_remove(t->ctx, slot);
		if (errno != 4242)
			fail(t, "slot_remove touched errno");
		if (got != exp)
			fail(t, "slot_remove(%#x) = %d, expected %d", slot, got, exp);
		if (!exp && !got) {
			n = 0;
			for (int i = 0; i < t->n; i++)
				if (t->s[i].slot != slot)
					d[n++] = (struct dirtybatch_memslot){ .sz = sizeof(struct dirtybatch_memslot), .slot = t->s[i].slot,
						.guest_phys_addr = t->s[i].gpa, .npages = t->s[i].npages };
			model_install(t, d, n);
		}
	} else if (kind == 1 && t->n < MAXS) {
		/* update: same, resized, moved, new, or invalid */
		struct dirtybatch_memslot u;
		int i;

		n = layout_desc(t, d);
		if (n && rng_below(&rng, 4)) {
			struct mslot *m = &t->s[rng_below(&rng, t->n)];

			u = (struct dirtybatch_memslot){ .sz = sizeof(struct dirtybatch_memslot), .slot = m->slot,
				.guest_phys_addr = m->gpa, .npages = m->npages };
			switch (rng_below(&rng, 4)) {
			case 0: break;
			case 1: u.npages = rnd_npages(); break;
			case 2: u.guest_phys_addr += (rng_below(&rng, 5) - 2) * t->ps * 64; break;
			default: break;
			}
		} else {
			u = (struct dirtybatch_memslot){ .sz = sizeof(struct dirtybatch_memslot), .slot = rnd_unknown_slot(t),
				.guest_phys_addr = rng_below(&rng, 5000) * t->ps, .npages = rnd_npages() };
		}
		switch (rng_below(&rng, 12)) {
		case 0: u.flags = 1; break;
		case 1: u.npages = 0; break;
		case 2: u.guest_phys_addr |= 1 + rng_below(&rng, t->ps - 1); break;
		case 3: u.guest_phys_addr = 0 - (u.npages - 1) * t->ps; break;
		case 4: u.npages = DIRTYBATCH_MAX_SLOT_PAGES + 1; break;
		default: break;
		}
		for (i = 0; i < n && d[i].slot != u.slot; i++)
			;
		d[i] = u;
		if (i == n)
			n++;
		exp = model_check_layout(t, d, n);
		errno = 4242;
		got = dirtybatch_slot_update(t->ctx, &u);
		if (errno != 4242)
			fail(t, "slot_update touched errno");
		if (got != exp)
			fail(t, "slot_update(%#x, %#" PRIx64 ", %" PRIu64 ", %u) = %d, expected %d",
			     u.slot, u.guest_phys_addr, u.npages, u.flags, got, exp);
		if (!exp && !got)
			model_install(t, d, n);
	} else {
		/* whole new layout, keeping some slots */
		int keep = t->n ? (int)rng_below(&rng, (uint64_t)t->n + 1) : 0;

		n = rnd_layout(t, d, 1 + (int)rng_below(&rng, MAXS - 1));
		for (int i = 0; i < keep && i < n; i++) {
			struct mslot *m = &t->s[rng_below(&rng, t->n)];

			d[i] = (struct dirtybatch_memslot){ .sz = sizeof(struct dirtybatch_memslot), .slot = m->slot,
				.guest_phys_addr = m->gpa, .npages = m->npages };
		}
		if (rng_below(&rng, 6) == 0 && n > 1)
			d[n - 1].slot = d[0].slot;	/* duplicate */
		exp = model_check_layout(t, d, n);
		errno = 4242;
		got = dirtybatch_set_layout(t->ctx, d, (unsigned int)n);
		if (errno != 4242)
			fail(t, "set_layout touched errno");
		if (got != exp)
			fail(t, "set_layout(%d slots) = %d, expected %d", n, got, exp);
		if (!exp && !got)
			model_install(t, d, n);
	}
	if (got)
		cov.layout_err++;
	else
		cov.layout_ok++;
	check_pending(t, "layout");
}

static void op_discard(struct tc *t)
{
	uint64_t got = dirtybatch_discard(t->ctx);

	cov.discards++;
	if (got != t->queued)
		fail(t, "discard returned %" PRIu64 ", model %" PRIu64, got, t->queued);
	t->est.pages_discarded += t->queued;
	for (int s = 0; s < t->n; s++)
		memset(t->s[s].q, 0, t->s[s].npages);
	t->queued = 0;
	check_pending(t, "discard");
}

static void op_toggle(struct tc *t)
{
	int m;

	cov.toggles++;
	t->forced = !t->forced;
	m = dirtybatch_set_fallback(t->ctx, t->forced);
	if (m != (module_mode(t) ? DIRTYBATCH_MODE_MODULE : DIRTYBATCH_MODE_FALLBACK))
		fail(t, "set_fallback(%d) returned mode %d", t->forced, m);
	if (dirtybatch_mode(t->ctx) != m)
		fail(t, "dirtybatch_mode disagrees");
}

static void tc_free(struct tc *t)
{
	for (int i = 0; i < t->n; i++)
		mslot_free(&t->s[i]);
	free(t->recs);
	free(t->chunks);
	dirtybatch_close(t->ctx);
}

static bool run_case(uint64_t seed, char *why, size_t whylen)
{
	struct tc t;
	struct dirtybatch_opts o = { .sz = sizeof(o), .flags = DIRTYBATCH_OPEN_FALLBACK };
	struct dirtybatch_memslot d[MAXS];
	struct dirtybatch_stats st = { .sz = sizeof(st) };
	static const unsigned int shifts[] = { 12, 12, 12, 12, 12, 9, 16, 21 };
	int n, nops, err;

	memset(&t, 0, sizeof(t));
	t.est.sz = sizeof(t.est);
	rng_init(&rng, seed);
	t.shift = shifts[rng_below(&rng, 8)];
	t.ps = 1ULL << t.shift;
	o.page_size = (uint32_t)t.ps;
	err = dirtybatch_open(FAKE_VM_FD, &o, &t.ctx);
	if (err) {
		snprintf(why, whylen, "open: %d", err);
		return false;
	}
	t.forced = true;
	{
		static const uint64_t gaps[] = { 0, 1, 2, 3, 7, 64, DB_FALLBACK_GAP_WORDS };
		static const uint64_t mgaps[] = { 0, 1, 2, 5, DB_MODULE_GAP_WORDS };

		t.gap = gaps[rng_below(&rng, sizeof(gaps) / sizeof(gaps[0]))];
		t.mgap = mgaps[rng_below(&rng, sizeof(mgaps) / sizeof(mgaps[0]))];
		dirtybatch__set_gaps(t.ctx, t.gap, t.mgap);
	}
	t.module_cfg = rng_below(&rng, 2);
	if (t.module_cfg) {
		t.info = (struct kvm_dirtybatch_info){
			.abi_version = KVM_DIRTYBATCH_ABI_VERSION,
			.size = sizeof(struct kvm_dirtybatch_info),
			.features = KVM_DIRTYBATCH_FEAT_CLEAR | KVM_DIRTYBATCH_FEAT_ERROR_INDEX,
			.max_ranges = rng_below(&rng, 3) ? KVM_DIRTYBATCH_MAX_RANGES : 1 + (uint32_t)rng_below(&rng, 4),
			.range_size = rng_below(&rng, 4) ? 24 : 24 + 4 * (uint32_t)rng_below(&rng, 5),
			.max_bitmap_bytes = rng_below(&rng, 3) ? KVM_DIRTYBATCH_MAX_BITMAP_BYTES :
				8 * (1 + (uint32_t)rng_below(&rng, 6)) + (uint32_t)rng_below(&rng, 8),
			.lock_break_words = KVM_DIRTYBATCH_LOCK_BREAK_WORDS,
		};
		t.stride = (t.info.range_size + 7) & ~7U;
		if (t.stride < 24)
			t.stride = 24;
		t.maxw = t.info.max_bitmap_bytes / 8;
	}
	err = dirtybatch__set_backend(t.ctx, &fk_backend, &t,
				      t.module_cfg ? &t.info : NULL);
	if (err)
		fail(&t, "set_backend: %d", err);
	if (t.module_cfg && rng_below(&rng, 4))
		op_toggle(&t);	/* usually start in module mode */

	n = rnd_layout(&t, d, 1 + (int)rng_below(&rng, 5));
	err = dirtybatch_set_layout(t.ctx, d, (unsigned int)n);
	if (err)
		fail(&t, "set_layout: %d", err);
	else
		model_install(&t, d, n);

	nops = 1 + (int)rng_below(&rng, 24);
	for (int i = 0; i < nops && !t.bad; i++) {
		uint64_t r = rng_below(&rng, 100);

		if (r < 30)
			op_add_pages(&t);
		else if (r < 50)
			op_add_gpa(&t);
		else if (r < 72)
			op_add_bitmap(&t);
		else if (r < 84)
			do_submit(&t, rng_below(&rng, 3) == 0);
		else if (r < 87)
			op_discard(&t);
		else if (r < 95)
			op_layout(&t);
		else if (t.module_cfg)
			op_toggle(&t);
	}
	do_submit(&t, false);
	if (dirtybatch_get_stats(t.ctx, &st))
		fail(&t, "get_stats failed");
	else if (memcmp(&st, &t.est, sizeof(st)))
		fail(&t, "stats differ: submits %" PRIu64 "/%" PRIu64 " failed %" PRIu64 "/%" PRIu64
		     " ioctls %" PRIu64 "/%" PRIu64 " mod %" PRIu64 "/%" PRIu64
		     " ranges %" PRIu64 "/%" PRIu64 " req %" PRIu64 "/%" PRIu64
		     " exact %" PRIu64 "/%" PRIu64 " unk %" PRIu64 "/%" PRIu64
		     " disc %" PRIu64 "/%" PRIu64,
		     st.submits, t.est.submits, st.failed_submits, t.est.failed_submits,
		     st.ioctls, t.est.ioctls, st.module_ioctls, t.est.module_ioctls,
		     st.ranges, t.est.ranges, st.pages_requested, t.est.pages_requested,
		     st.pages_cleared_exact, t.est.pages_cleared_exact,
		     st.pages_cleared_unknown, t.est.pages_cleared_unknown,
		     st.pages_discarded, t.est.pages_discarded);
	if (t.bad)
		snprintf(why, whylen, "%s", t.why);
	tc_free(&t);
	return !t.bad;
}

/* ------------------------------------------------------------------ */
/* Directed tests.                                                    */

/* A context with a fake kernel and the given layout. */
static struct tc *tc_new(bool module, uint32_t max_ranges, uint32_t max_bytes,
			 const struct dirtybatch_memslot *d, int n)
{
	struct tc *t = calloc(1, sizeof(*t));
	struct dirtybatch_opts o = { .sz = sizeof(o), .flags = DIRTYBATCH_OPEN_FALLBACK,
				     .page_size = 4096 };

	t->shift = 12;
	t->ps = 4096;
	t->fail_at = -1;
	t->gap = DB_FALLBACK_GAP_WORDS;
	t->mgap = DB_MODULE_GAP_WORDS;
	if (dirtybatch_open(FAKE_VM_FD, &o, &t->ctx))
		abort();
	t->forced = true;
	t->module_cfg = module;
	if (module) {
		t->info = (struct kvm_dirtybatch_info){
			.abi_version = 1, .size = sizeof(t->info),
			.features = KVM_DIRTYBATCH_FEAT_CLEAR,
			.max_ranges = max_ranges, .range_size = 24,
			.max_bitmap_bytes = max_bytes,
		};
		t->stride = 24;
		t->maxw = max_bytes / 8;
	}
	if (dirtybatch__set_backend(t->ctx, &fk_backend, t, module ? &t->info : NULL))
		abort();
	if (module) {
		t->forced = false;
		dirtybatch_set_fallback(t->ctx, false);
	}
	if (dirtybatch_set_layout(t->ctx, d, (unsigned int)n))
		abort();
	model_install(t, d, n);
	for (int i = 0; i < t->n; i++)
		memset(t->s[i].kd, 1, t->s[i].npages);
	return t;
}

static void tc_del(struct tc *t)
{
	tc_free(t);
	free(t);
}

/* Library add + model, for the directed tests. */
static int qp(struct tc *t, uint32_t slot, uint64_t first, uint64_t n)
{
	int r = dirtybatch_add_pages(t->ctx, slot, first, n);
	struct mslot *m = mfind(t, slot);

	if (!r)
		for (uint64_t p = first; p < first + n; p++)
			model_queue(t, m, p);
	return r;
}

static int qg(struct tc *t, uint32_t as, uint64_t gpa, uint64_t len)
{
	int r = dirtybatch_add_gpa(t->ctx, as, gpa, len);

	if (!r) {
		for (uint64_t a = gpa; a - gpa < len; a += t->ps) {
			for (int s = 0; s < t->n; s++) {
				struct mslot *m = &t->s[s];

				if ((m->slot >> 16) == as && a >= m->gpa &&
				    a - m->gpa < m->npages * t->ps)
					model_queue(t, m, (a - m->gpa) / t->ps);
			}
		}
	}
	return r;
}

static int qb(struct tc *t, uint32_t slot, uint64_t first, uint64_t n,
	      const uint64_t *bm, uint64_t off)
{
	int r = dirtybatch_add_bitmap(t->ctx, slot, first, n, bm, off);
	struct mslot *m = mfind(t, slot);

	if (!r)
		for (uint64_t i = 0; i < n; i++)
			if (bm[(off + i) / 64] >> ((off + i) % 64) & 1)
				model_queue(t, m, first + i);
	return r;
}

static void reset_round(struct tc *t)
{
	t->nrec = 0;
	t->nchunk = 0;
	for (int s = 0; s < t->n; s++) {
		memset(t->s[s].q, 0, t->s[s].npages);
		memset(t->s[s].clr, 0, t->s[s].npages);
	}
	t->queued = 0;
}

static bool recs_equal(struct tc *t, const struct rec *e, size_t n)
{
	if (t->nrec != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (t->recs[i].slot != e[i].slot || t->recs[i].first != e[i].first ||
		    t->recs[i].num != e[i].num)
			return false;
	return true;
}

static void test_tail_rule(void)
{
	struct dirtybatch_memslot d[] = {
		{ .sz = sizeof(struct dirtybatch_memslot), .slot = 1, .guest_phys_addr = 0, .npages = 100 },
		{ .sz = sizeof(struct dirtybatch_memslot), .slot = 2, .guest_phys_addr = 100 * 4096, .npages = 128 },
		{ .sz = sizeof(struct dirtybatch_memslot), .slot = 3, .guest_phys_addr = 0x100000000ULL, .npages = 200 },
	};
	struct tc *t = tc_new(false, 0, 0, d, 3);
	const struct rec e[] = {
		{ 1, 36, 64, 0 },	/* page 99: tail range to slot end */
		{ 2, 64, 64, 0 },	/* page 127 of 128: a full word */
		/* pages 0, 64..127 (words 0-1) and 199 (tail of word 3):
		 * one call across the zero word 2, to the slot end */
		{ 3, 200, 0, 0 },
	};

	qp(t, 1, 99, 1);
	qp(t, 2, 127, 1);
	qp(t, 3, 0, 1);
	qg(t, 0, 0x100000000ULL + 64 * 4096, 64 * 4096);
	qp(t, 3, 199, 1);
	do_submit(t, false);
	tap_ok(!t->bad && recs_equal(t, e, 3),
	       "tail rule, word alignment and maximal runs (fallback) %s", t->why);
	tc_del(t);
}

static void test_fallback_gap(void)
{
	const uint64_t g = DB_FALLBACK_GAP_WORDS;
	struct dirtybatch_memslot d[] = {
		{ .sz = sizeof(struct dirtybatch_memslot), .slot = 4, .guest_phys_addr = 0, .npages = 64 * (3 * g + 10) },
	};
	struct tc *t = tc_new(false, 0, 0, d, 1);
	struct dirtybatch_result res = { .sz = sizeof(res) };
	/* words 0 and g + 1 (g zero words apart): one call; word 2g + 3
	 * (g + 1 zero words after): a second one */
	const struct rec e[] = {
		{ 4, (uint32_t)(64 * (g + 2)), 0, 0 },
		{ 4, 64, 64 * (2 * g + 3), 0 },
	};

	qp(t, 4, 5, 1);
	qp(t, 4, 64 * (g + 1) + 63, 1);
	qp(t, 4, 64 * (2 * g + 3), 1);
	t->calls = 0;
	t->nrec = 0;
	dirtybatch_submit(t->ctx, &res);
	qsort(t->recs, t->nrec, sizeof(*t->recs), rec_cmp);
	tap_ok(!t->bad && res.ioctls == 2 && res.pages_requested == 3 && recs_equal(t, e, 2),
	       "fallback joins runs %" PRIu64 " zero words apart, not %" PRIu64 " %s",
	       g, g + 1, t->why);
	tc_del(t);
}

static void test_merge(void)
{
	struct dirtybatch_memslot d[] = {
		{ .sz = sizeof(struct dirtybatch_memslot), .slot = 5, .guest_phys_addr = 0x10000, .npages = 1000 },
	};
	struct tc *t = tc_new(false, 0, 0, d, 1);
	struct dirtybatch_result res = { .sz = sizeof(res) };
	int64_t r;

	qp(t, 5, 0, 10);
	qp(t, 5, 0, 10);
	qp(t, 5, 5, 16);
	qg(t, 0, 0x10000 + 21 * 4096, 4096);
	r = dirtybatch_submit(t->ctx, &res);
	tap_ok(r == 22 && !t->bad && res.ioctls == 1 && res.ranges == 1 && t->nrec == 1 &&
	       t->recs[0].first == 0 && t->recs[0].num == 64 &&
	       res.pages_requested == 22 && !(res.flags & DIRTYBATCH_RESULT_CLEARED_EXACT),
	       "duplicates and overlaps merge into one range, 22 pages");
	tc_del(t);
}

static void test_gpa_split(void)
{
	/* three adjacent slots, one in another address space at the same gpa */
	struct dirtybatch_memslot d[] = {
		{ .sz = sizeof(struct dirtybatch_memslot), .slot = 0, .guest_phys_addr = 0, .npages = 70 },
		{ .sz = sizeof(struct dirtybatch_memslot), .slot = 1, .guest_phys_addr = 70 * 4096, .npages = 10 },
		{ .sz = sizeof(struct dirtybatch_memslot), .slot = 2, .guest_phys_addr = 80 * 4096, .npages = 300 },
		{ .sz = sizeof(struct dirtybatch_memslot), .slot = DIRTYBATCH_SLOT(1, 0), .guest_phys_addr = 0, .npages = 500 },
	};
	struct tc *t = tc_new(true, 65536, 1 << 20, d, 4);
	const struct rec e[] = {
		{ 0, 6, 64, 0 },	/* pages 65..69 */
		{ 1, 10, 0, 0 },	/* all of it */
		{ 2, 64, 0, 0 },	/* pages 0..19 */
	};
	int r1, r2, r3;

	r1 = qg(t, 0, 65 * 4096, 35 * 4096);
	r2 = qg(t, 0, 0, 381 * 4096);	/* one past the end */
	r3 = qg(t, 2, 0, 4096);		/* no such space */
	dirtybatch_submit(t->ctx, NULL);
	qsort(t->recs, t->nrec, sizeof(*t->recs), rec_cmp);
	tap_ok(!r1 && r2 == -ENOENT && r3 == -ENOENT && !t->bad && recs_equal(t, e, 3) &&
	       t->nchunk == 1,
	       "gpa range split at slot boundaries, one batched call %s", t->why);
	tc_del(t);
}

static void test_module_limits(void)
{
	struct dirtybatch_memslot d[] = {
		{ .sz = sizeof(struct dirtybatch_memslot), .slot = 9, .guest_phys_addr = 0, .npages = 64 * 20 + 7 },
	};
	struct tc *t = tc_new(true, 3, 24, d, 1);	/* 3 ranges, 3 words */
	struct dirtybatch_result res = { .sz = sizeof(res) };
	int64_t r;

	/* one run of 10 words + the tail word, then 4 single-word runs */
	qp(t, 9, 0, 64 * 10);
	qp(t, 9, 64 * 20, 7);
	for (int w = 12; w < 20; w += 2)
		qp(t, 9, 64 * (uint64_t)w + 3, 1);
	r = dirtybatch_submit(t->ctx, &res);
	/*
	 * pieces: 3,3,3,1 words (the run: longer than a piece, so nothing
	 * joins it); words 12-14 and 16-18 (singles one zero word apart,
	 * joined up to the 3-word limit); 20 (tail) = 7 ranges.  Calls: the
	 * 24-byte limit takes one 3-word piece each, and 9 alone since 12-14
	 * does not fit beside it: 7.
	 */
	tap_ok(r == 640 + 7 + 4 && res.ranges == 7 && res.ioctls == 7 && !t->bad &&
	       (res.flags & DIRTYBATCH_RESULT_CLEARED_EXACT),
	       "module limits split only where needed, gaps joined within them "
	       "(7 ranges, 7 calls) %s", t->why);
	tc_del(t);
}

static void test_error_path(void)
{
	struct dirtybatch_memslot d[] = {
		{ .sz = sizeof(struct dirtybatch_memslot), .slot = 1, .guest_phys_addr = 0, .npages = 64 * 4 * DB_FALLBACK_GAP_WORDS },
		{ .sz = sizeof(struct dirtybatch_memslot), .slot = 2, .guest_phys_addr = 1ULL << 34, .npages = 1000 },
	};
	/* three pages in words too far apart to share a call */
	const uint64_t far = 64 * (DB_FALLBACK_GAP_WORDS + 2);
	struct tc *t = tc_new(false, 0, 0, d, 2);
	struct dirtybatch_result res = { .sz = sizeof(res) };
	int64_t r;
	bool ok1, ok2;

	qp(t, 1, 0, 1);
	qp(t, 1, far, 1);
	qp(t, 1, 2 * far, 1);
	t->fail_at = 1;
	t->fail_err = -EFAULT;
	t->calls = 0;
	t->nrec = 0;
	errno = 77;
	r = dirtybatch_submit(t->ctx, &res);
	ok1 = r == -EFAULT && errno == 77 && res.error == -EFAULT && res.ioctls == 2 &&
	      res.ranges == 1 && res.pages_requested == 1 && res.error_slot == 1 &&
	      res.error_first_page == far && res.pages_pending == 2 &&
	      dirtybatch_pending(t->ctx) == 2;
	t->fail_at = -1;
	t->calls = 0;
	t->nrec = 0;
	r = dirtybatch_submit(t->ctx, &res);
	ok2 = r == 2 && res.ranges == 2 && t->nrec == 2 && t->recs[0].first == far &&
	      dirtybatch_pending(t->ctx) == 0;
	tap_ok(ok1 && ok2 && !t->bad, "failed fallback submit reports progress and keeps the rest queued");
	tc_del(t);
}

static void test_layout_changes(void)
{
	struct dirtybatch_memslot d[] = {
		{ .sz = sizeof(struct dirtybatch_memslot), .slot = 1, .guest_phys_addr = 0, .npages = 100 },
		{ .sz = sizeof(struct dirtybatch_memslot), .slot = 2, .guest_phys_addr = 100 * 4096, .npages = 100 },
	};
	struct dirtybatch_memslot bad[] = {
		{ .sz = sizeof(struct dirtybatch_memslot), .slot = 1, .guest_phys_addr = 0, .npages = 100 },
		{ .sz = sizeof(struct dirtybatch_memslot), .slot = 3, .guest_phys_addr = 50 * 4096, .npages = 100 },
	};
	struct tc *t = tc_new(false, 0, 0, d, 2);
	struct dirtybatch_memslot u = { .sz = sizeof(u), .slot = 2, .guest_phys_addr = 100 * 4096, .npages = 200 };
	struct dirtybatch_stats st = { .sz = sizeof(st) };
	bool ok = true;

	dirtybatch_add_pages(t->ctx, 1, 0, 10);
	dirtybatch_add_pages(t->ctx, 2, 0, 20);
	ok &= dirtybatch_set_layout(t->ctx, bad, 2) == -EEXIST;
	ok &= dirtybatch_pending(t->ctx) == 30;
	ok &= dirtybatch_slot_update(t->ctx, &d[1]) == 0;	/* unchanged: kept */
	ok &= dirtybatch_pending(t->ctx) == 30;
	ok &= dirtybatch_slot_update(t->ctx, &u) == 0;		/* resized: dropped */
	ok &= dirtybatch_pending(t->ctx) == 10;
	ok &= dirtybatch_add_pages(t->ctx, 2, 150, 50) == 0;
	ok &= dirtybatch_slot_remove(t->ctx, 1) == 0;
	ok &= dirtybatch_pending(t->ctx) == 50;
	ok &= dirtybatch_slot_remove(t->ctx, 1) == -ENOENT;
	ok &= dirtybatch_add_pages(t->ctx, 1, 0, 1) == -ENOENT;
	dirtybatch_get_stats(t->ctx, &st);
	ok &= st.pages_discarded == 30;
	ok &= dirtybatch_discard(t->ctx) == 50 && dirtybatch_pending(t->ctx) == 0;
	tap_ok(ok, "layout changes keep unchanged slots' pages, drop the others");
	tc_del(t);
}

static void test_layout_errors(void)
{
	struct dirtybatch_ctx *ctx;
	struct dirtybatch_opts o = { .sz = sizeof(o), .flags = DIRTYBATCH_OPEN_FALLBACK,
				     .page_size = 4096 };
	struct dirtybatch_memslot d;
	bool ok = true;

	dirtybatch_open(FAKE_VM_FD, &o, &ctx);
	d = (struct dirtybatch_memslot){ .sz = sizeof(struct dirtybatch_memslot), .slot = 1, .guest_phys_addr = 4096, .npages = 0 };
	ok &= dirtybatch_slot_update(ctx, &d) == -EINVAL;
	d.npages = DIRTYBATCH_MAX_SLOT_PAGES + 1;
	ok &= dirtybatch_slot_update(ctx, &d) == -EINVAL;
	d.npages = 1;
	d.guest_phys_addr = 4095;
	ok &= dirtybatch_slot_update(ctx, &d) == -EINVAL;
	d.guest_phys_addr = UINT64_MAX & ~4095ULL;
	d.npages = 2;
	ok &= dirtybatch_slot_update(ctx, &d) == -EOVERFLOW;
	d.npages = 1;
	ok &= dirtybatch_slot_update(ctx, &d) == 0;	/* last page of the space */
	ok &= dirtybatch_add_gpa(ctx, 0, UINT64_MAX & ~4095ULL, 4096) == 0;
	ok &= dirtybatch_add_gpa(ctx, 0, UINT64_MAX & ~4095ULL, 8192) == -EOVERFLOW;
	d.flags = 1;
	ok &= dirtybatch_slot_update(ctx, &d) == -EINVAL;
	ok &= dirtybatch_set_layout(ctx, NULL, 1) == -EINVAL;
	ok &= dirtybatch_set_layout(ctx, NULL, 0) == 0 && dirtybatch_pending(ctx) == 0;
	ok &= dirtybatch_add_pages(ctx, 1, 0, 1) == -ENOENT;
	tap_ok(ok, "layout validation: -EINVAL, -EOVERFLOW, top of the address space");
	dirtybatch_close(ctx);
}

static void test_open_detection(void)
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
	tap_ok(ok, "absent device: fallback mode, reason -ENOENT, errno kept");

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
	tap_ok(ok, "device that does not answer GET_INFO: fallback, reason -ENOTTY");

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
	tap_ok(ok, "forced fallback, ABI and feature checks, switching modes");

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
	tap_ok(ok, "argument checks of open and NULL contexts");
}

static void test_empty_submit(void)
{
	struct dirtybatch_memslot d[] = { { .sz = sizeof(struct dirtybatch_memslot), .slot = 1, .npages = 10 } };
	struct tc *t = tc_new(true, 16, 4096, d, 1);
	struct dirtybatch_result res = { .sz = sizeof(res) };
	int64_t r = dirtybatch_submit(t->ctx, &res);

	tap_ok(r == 0 && res.ioctls == 0 && t->calls == 0,
	       "empty batch: no ioctl, 0 pages");
	tc_del(t);
}

static void test_bitmap_offsets(void)
{
	/* QEMU style: slot bitmap, clear [start, start + size) with bit offset */
	struct dirtybatch_memslot d[] = { { .sz = sizeof(struct dirtybatch_memslot), .slot = 4, .guest_phys_addr = 0, .npages = 1000 } };
	struct tc *t = tc_new(false, 0, 0, d, 1);
	uint64_t bmap[16];
	bool ok = true;

	for (int i = 0; i < 16; i++)
		bmap[i] = 0xa5a5a5a5a5a5a5a5ULL ^ (uint64_t)i;
	for (uint64_t off = 0; off < 130 && ok; off++) {
		for (uint64_t first = 0; first < 130 && ok; first += 7) {
			uint64_t n = 1000 - first < 800 ? 1000 - first : 800 - off % 64;

			if (off + n > 1024)
				n = 1024 - off;
			ok &= qb(t, 4, first, n, bmap, off) == 0;
			do_submit(t, false);
			ok &= !t->bad;
		}
	}
	/*
	 * Huge bit offsets into a bitmap pointer moved back to match: the
	 * words read are bmap's.  On 32-bit these take the exact path (the
	 * short one stops at 2^28 - 1), on 64-bit the short one.  Not qb():
	 * its model would read through the moved pointer.
	 */
	for (uint64_t sub = 0; sub < 130 && ok; sub += 13) {
		uint64_t back = (uintptr_t)bmap / 8 / 2;	/* words */
		const uint64_t *arg = (const uint64_t *)((uintptr_t)bmap - (uintptr_t)back * 8);
		uint64_t off = back * 64 + sub, first = 3 * sub, n = 1 + sub % 70;

		ok &= dirtybatch_add_bitmap(t->ctx, 4, first, n, arg, off) == 0;
		for (uint64_t i = 0; i < n; i++)
			if (bmap[(sub + i) / 64] >> ((sub + i) % 64) & 1)
				model_queue(t, &t->s[0], first + i);
		do_submit(t, false);
		ok &= !t->bad;
	}
	tap_ok(ok, "bitmap with every bit offset 0..129, and huge ones %s", t->why);
	tc_del(t);
}

static void test_big_slot(void)
{
	/* 2^22 pages: long runs cross summary words; word-level checks */
	struct dirtybatch_memslot d[] = {
		{ .sz = sizeof(struct dirtybatch_memslot), .slot = 7, .guest_phys_addr = 1ULL << 32, .npages = (1 << 22) - 3 },
	};
	struct tc *t = tc_new(true, 65536, 16 << 20, d, 1);
	struct dirtybatch_result res = { .sz = sizeof(res) };
	uint64_t np = d[0].npages;
	int64_t r;
	bool ok = true;

	ok &= qp(t, 7, 5, np - 5) == 0;
	r = dirtybatch_submit(t->ctx, &res);
	ok &= r == (int64_t)(np - 5) && res.ranges == 1 && t->nrec == 1 &&
	      t->recs[0].first == 0 && t->recs[0].num == np;
	t->nrec = 0;
	for (int s = 0; s < t->n; s++) {
		memset(t->s[s].kd, 1, t->s[s].npages);
		memset(t->s[s].q, 0, t->s[s].npages);
		memset(t->s[s].clr, 0, t->s[s].npages);
	}
	ok &= qp(t, 7, 4096 * 10 + 1, 4096 * 3) == 0;
	ok &= qp(t, 7, 4096 * 300, 64) == 0;
	ok &= qp(t, 7, np - 1, 1) == 0;
	r = dirtybatch_submit(t->ctx, &res);
	ok &= r == 4096 * 3 + 64 + 1 && res.ranges == 3 && t->nrec == 3;
	tap_ok(ok && !t->bad, "4M-page slot, runs across summary groups %s", t->why);
	tc_del(t);
}

/*
 * A few short runs far apart in a 2^22-page slot (65536 words: 1024
 * groups of 64, 16 groups of 4096), both modes, random gaps, failures
 * injected: submits find the runs through the summary's upper levels, and
 * the ranges are exactly the model's.
 */
static void test_sparse_big_slot(void)
{
	struct dirtybatch_memslot d[] = {
		{ .sz = sizeof(struct dirtybatch_memslot), .slot = 9, .guest_phys_addr = 1ULL << 32, .npages = (1 << 22) - 3 },
		{ .sz = sizeof(struct dirtybatch_memslot), .slot = 10, .guest_phys_addr = 1ULL << 44, .npages = 1 << 18 },
	};
	for (int module = 0; module < 2; module++) {
		struct tc *t = tc_new(module, 65536, 16 << 20, d, 2);
		uint64_t subs = 0;

		for (int round = 0; round < 40 && !t->bad; round++) {
			int nruns = 1 + (int)rng_below(&rng, 8);

			t->gap = rng_below(&rng, 2) ? DB_FALLBACK_GAP_WORDS : rng_below(&rng, 70);
			t->mgap = rng_below(&rng, 2) ? DB_MODULE_GAP_WORDS : rng_below(&rng, 20);
			dirtybatch__set_gaps(t->ctx, t->gap, t->mgap);
			for (int k = 0; k < nruns; k++) {
				const struct dirtybatch_memslot *m = &d[rng_below(&rng, 4) == 0];
				uint64_t first = rnd_page(m->npages);

				if (qp(t, m->slot, first,
				       rnd_len(m->npages - first < 300 ? m->npages - first : 300)))
					fail(t, "add refused");
			}
			do_submit(t, rng_below(&rng, 4) == 0);
			subs++;
		}
		tap_ok(!t->bad, "sparse runs in a 4M-page slot, %s mode: %" PRIu64
		       " submits match the model %s", module ? "module" : "fallback",
		       subs, t->why);
		tc_del(t);
	}
}

#ifdef DB_WRAP_MALLOC
static void test_no_alloc(void)
{
	static uint64_t bm[64];
	struct dirtybatch_memslot d[] = {
		{ .sz = sizeof(struct dirtybatch_memslot), .slot = 1, .guest_phys_addr = 0, .npages = 4000 },
		{ .sz = sizeof(struct dirtybatch_memslot), .slot = 2, .guest_phys_addr = 4000 * 4096, .npages = 777 },
	};
	unsigned long before;
	bool ok = true;

	for (int mod = 0; mod < 2; mod++) {
		struct tc *t = tc_new(mod, mod ? 4 : 0, mod ? 64 : 0, d, 2);
		struct dirtybatch_result res = { .sz = sizeof(res) };

		for (int i = 0; i < 64; i++)
			bm[i] = rng_next(&rng);
		/* warm up the fake kernel's own buffers */
		qg(t, 0, 0, 4777 * 4096);
		dirtybatch_submit(t->ctx, &res);
		reset_round(t);
		before = allocs;
		for (int i = 0; i < 1000; i++) {
			qp(t, 1, (uint64_t)i, 3);
			qg(t, 0, (3990 + (uint64_t)(i % 7)) * 4096, 20 * 4096);
			qb(t, 2, (uint64_t)(i % 100), 600, bm, (uint64_t)i % 64);
			ok &= dirtybatch_submit(t->ctx, &res) >= 0 && !res.pages_pending;
			reset_round(t);
		}
		if (allocs != before)
			tap_diag("%s: %lu allocations", mod ? "module" : "fallback", allocs - before);
		ok &= allocs == before && !t->bad;
		tc_del(t);
	}
	tap_ok(ok, "steady-state add and submit allocate nothing (fallback and module)");
}
#endif

/* ------------------------------------------------------------------ */
/* The API's contract: identity, sizes, descriptors, demotion, ...    */

#define MS(...) ((struct dirtybatch_memslot){ .sz = sizeof(struct dirtybatch_memslot), \
	__VA_ARGS__ })

/*
 * A memslot deleted and created again with the same geometry is another
 * memslot: what was queued for the old one (bits fetched from it) must
 * not be cleared on the new one.
 */
static void test_memslot_identity(void)
{
	struct dirtybatch_memslot d[] = {
		MS(.slot = 1, .guest_phys_addr = 0, .npages = 100, .userspace_addr = 0x7f0000000000),
		MS(.slot = 2, .guest_phys_addr = 100 * 4096, .npages = 100, .userspace_addr = 0x7f1000000000),
	};
	struct tc *t = tc_new(false, 0, 0, d, 2);
	struct dirtybatch_stats st = { .sz = sizeof(st) };
	struct dirtybatch_memslot u = d[0];
	bool ok = true;

	/* set_layout: same geometry, other backing */
	ok &= dirtybatch_add_pages(t->ctx, 1, 0, 10) == 0;
	ok &= dirtybatch_add_pages(t->ctx, 2, 0, 5) == 0;
	d[0].userspace_addr += 1 << 20;
	ok &= dirtybatch_set_layout(t->ctx, d, 2) == 0;
	ok &= dirtybatch_pending(t->ctx) == 5;
	/* slot_update: same geometry and backing, new generation */
	u = d[1];
	u.generation = 1;
	ok &= dirtybatch_slot_update(t->ctx, &u) == 0;
	ok &= dirtybatch_pending(t->ctx) == 0 && !dirtybatch_has_pending(t->ctx);
	/* the same memslot again: kept */
	ok &= dirtybatch_add_pages(t->ctx, 2, 0, 7) == 0;
	ok &= dirtybatch_slot_update(t->ctx, &u) == 0;
	ok &= dirtybatch_set_layout(t->ctx, (struct dirtybatch_memslot[]){ d[0], u }, 2) == 0;
	ok &= dirtybatch_pending(t->ctx) == 7;
	t->calls = 0;
	ok &= dirtybatch_submit(t->ctx, NULL) == 7 && t->calls == 1;
	dirtybatch_get_stats(t->ctx, &st);
	ok &= st.pages_discarded == 15;
	tap_ok(ok, "a memslot re-created with the same geometry (other userspace_addr "
	       "or generation) drops what was queued for the old one");
	tc_del(t);
}

/* struct dirtybatch_memslot: older, smaller and larger ones. */
static void test_memslot_sizes(void)
{
	struct { struct dirtybatch_memslot m; uint64_t extra; } big = {
		.m = MS(.slot = 3, .guest_phys_addr = 1 << 30, .npages = 64) };
	struct dirtybatch_memslot m = MS(.slot = 3, .guest_phys_addr = 1 << 30, .npages = 64);
	struct dirtybatch_ctx *ctx;
	struct dirtybatch_opts o = { .sz = sizeof(o), .flags = DIRTYBATCH_OPEN_FALLBACK,
				     .page_size = 4096 };
	unsigned char old[2][offsetof(struct dirtybatch_memslot, userspace_addr)];
	bool ok = true;

	dirtybatch_open(FAKE_VM_FD, &o, &ctx);
	big.m.sz = sizeof(big);
	big.extra = 1;
	ok &= dirtybatch_slot_update(ctx, &big.m) == -E2BIG;
	big.extra = 0;
	ok &= dirtybatch_slot_update(ctx, &big.m) == 0;
	m.sz = offsetof(struct dirtybatch_memslot, npages);
	ok &= dirtybatch_slot_update(ctx, &m) == -EINVAL;
	m.sz = 0;
	ok &= dirtybatch_slot_update(ctx, &m) == -EINVAL;
	/* an older caller's array: elements sz bytes apart */
	for (int i = 0; i < 2; i++) {
		struct dirtybatch_memslot e = MS(.slot = 10 + (uint32_t)i,
			.guest_phys_addr = (uint64_t)i << 20, .npages = 8);

		e.sz = sizeof(old[i]);
		memcpy(old[i], &e, sizeof(old[i]));
	}
	ok &= dirtybatch_set_layout(ctx, (const void *)old, 2) == 0;
	ok &= dirtybatch_add_pages(ctx, 11, 7, 1) == 0 && dirtybatch_pending(ctx) == 1;
	/* elements must agree on their size */
	{
		struct dirtybatch_memslot two[2] = {
			MS(.slot = 1, .npages = 1), MS(.slot = 2, .guest_phys_addr = 4096, .npages = 1) };

		two[1].sz = 8;
		ok &= dirtybatch_set_layout(ctx, two, 2) == -EINVAL;
		ok &= dirtybatch_pending(ctx) == 1;
	}
	tap_ok(ok, "memslot sz: older accepted, larger with a zero tail, else -EINVAL/-E2BIG");
	dirtybatch_close(ctx);
}

/* info, result and stats are written up to the caller's sz, no further. */
static void test_out_sizes(void)
{
	struct dirtybatch_memslot d[] = { MS(.slot = 1, .npages = 100) };
	struct tc *t = tc_new(false, 0, 0, d, 1);
	struct { struct dirtybatch_info i; unsigned char tail[16]; } bi;
	struct { struct dirtybatch_result r; unsigned char tail[16]; } br;
	struct dirtybatch_stats st;
	unsigned char raw[sizeof(struct dirtybatch_info)];
	bool ok = true;

	memset(&bi, 0xaa, sizeof(bi));
	bi.i.sz = sizeof(bi);
	ok &= dirtybatch_get_info(t->ctx, &bi.i) == 0;
	ok &= bi.i.sz == sizeof(bi) && bi.i.page_size == 4096 && bi.i.nr_slots == 1;
	for (size_t k = 0; k < sizeof(bi.tail); k++)
		ok &= bi.tail[k] == 0;	/* unknown to the library: zeroed */
	/* an older caller that knows only up to mode */
	memset(raw, 0xaa, sizeof(raw));
	((struct dirtybatch_info *)(void *)raw)->sz = db_test_offsetofend(struct dirtybatch_info, mode);
	ok &= dirtybatch_get_info(t->ctx, (void *)raw) == 0;
	for (size_t k = db_test_offsetofend(struct dirtybatch_info, mode); k < sizeof(raw); k++)
		ok &= raw[k] == 0xaa;
	((struct dirtybatch_info *)(void *)raw)->sz = 0;
	ok &= dirtybatch_get_info(t->ctx, (void *)raw) == -EINVAL;

	ok &= dirtybatch_add_pages(t->ctx, 1, 0, 3) == 0;
	memset(&br, 0xaa, sizeof(br));
	br.r.sz = 0;
	ok &= dirtybatch_submit(t->ctx, &br.r) == -EINVAL && dirtybatch_pending(t->ctx) == 3;
	br.r.sz = sizeof(br);
	ok &= dirtybatch_submit(t->ctx, &br.r) == 3 && br.r.pages_requested == 3 &&
	      br.r.sz == sizeof(br) && br.r.mode == DIRTYBATCH_MODE_FALLBACK;
	for (size_t k = 0; k < sizeof(br.tail); k++)
		ok &= br.tail[k] == 0;
	memset(&st, 0xaa, sizeof(st));
	st.sz = 0;
	ok &= dirtybatch_get_stats(t->ctx, &st) == -EINVAL;
	st.sz = sizeof(st);
	ok &= dirtybatch_get_stats(t->ctx, &st) == 0 && st.sz == sizeof(st) && st.submits == 1;
	tap_ok(ok, "info, result, stats: written up to sz, unknown tail zeroed, sz 0 -EINVAL");
	tc_del(t);
}

/* A sandboxed VMM passes the module's device already open. */
static void test_device_fd(void)
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
	tap_ok(ok, "opts.device_fd: used instead of a path, never closed; -EBADF, -EINVAL");
}

/* Backend order, forcing through opts and DIRTYBATCH_BACKEND. */
static void test_backend_choice(void)
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
	tap_ok(ok, "backends: native, shim, fallback in order; forced by opts or "
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

static const struct dirtybatch_backend gone_be = {
	.clear_log = gone_clear_log,
	.batch_clear = gone_batch,
};

static void test_demotion(void)
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
		dirtybatch__set_backend(ctx, &gone_be, &g, &mi);
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
	tap_ok(ok, "a batch ioctl failing -ENOTTY/-EOPNOTSUPP falls back for that batch "
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

static int nf_probe(void *priv, int vm_fd, uint32_t *max_ranges)
{
	struct native_fake *f = priv;

	f->bad |= vm_fd != FAKE_VM_FD;
	if (f->probe_err)
		return f->probe_err;
	*max_ranges = f->max_ranges;
	return 0;
}

static int nf_clear(void *priv, int vm_fd, struct kvm_clear_dirty_log_batch *b)
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

static const struct dirtybatch_backend native_be = {
	.clear_log = gone_clear_log,
	.native_probe = nf_probe,
	.native_clear = nf_clear,
};

/* Open a context over @f with one 6400-page memslot and 5 far runs of 3 pages. */
static struct dirtybatch_ctx *native_ctx(struct native_fake *f)
{
	struct dirtybatch_memslot d[] = { MS(.slot = 1, .npages = 64 * 100) };
	struct dirtybatch_opts o = { .sz = sizeof(o), .flags = DIRTYBATCH_OPEN_FALLBACK };
	struct dirtybatch_ctx *ctx;

	if (dirtybatch_open(FAKE_VM_FD, &o, &ctx))
		abort();
	dirtybatch__set_backend(ctx, &native_be, f, NULL);
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
static void test_native(void)
{
	struct dirtybatch_result res = { .sz = sizeof(res) };
	struct dirtybatch_stats st = { .sz = sizeof(st) };
	struct dirtybatch_info info = { .sz = sizeof(info) };
	struct dirtybatch_ctx *ctx;
	struct native_fake f;
	bool ok = true;

	/* not confirmed (another ABI version): never called */
	f = (struct native_fake){ .probe_err = -EPROTO, .max_ranges = 2, .ok_calls = 99 };
	ctx = native_ctx(&f);
	dirtybatch_get_info(ctx, &info);
	ok &= dirtybatch_mode(ctx) == DIRTYBATCH_MODE_FALLBACK &&
	      info.native_reason == -EPROTO && !(info.flags & DIRTYBATCH_INFO_NATIVE_PRESENT);
	ok &= dirtybatch_submit(ctx, &res) == 15 && f.calls == 0 && f.g.log_pages == 15;
	dirtybatch_close(ctx);

	/* confirmed: 5 ranges in calls of at most 2 */
	f = (struct native_fake){ .max_ranges = 2, .ok_calls = 99 };
	ctx = native_ctx(&f);
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
	ctx = native_ctx(&f);
	ok &= dirtybatch_submit(ctx, &res) == -ENOENT && res.error_slot == 1 &&
	      res.error_first_page == 64 * 20 && res.pages_pending == 15 &&
	      dirtybatch_mode(ctx) == DIRTYBATCH_MODE_NATIVE;
	dirtybatch_close(ctx);

	/* the second call not understood: the rest the plain way, for good */
	f = (struct native_fake){ .max_ranges = 2, .ok_calls = 1, .err = -ENOTTY,
				  .err_index = 2 };
	ctx = native_ctx(&f);
	ok &= dirtybatch_submit(ctx, &res) == 15 && f.pages == 6 && f.g.log_pages == 9 &&
	      (res.flags & DIRTYBATCH_RESULT_DEMOTED) && res.mode == DIRTYBATCH_MODE_FALLBACK;
	dirtybatch_get_info(ctx, &info);
	ok &= (info.flags & DIRTYBATCH_INFO_DEMOTED) && info.native_reason == -ENOTTY &&
	      !(info.flags & DIRTYBATCH_INFO_NATIVE_PRESENT);
	ok &= !f.bad;
	dirtybatch_close(ctx);
	tap_ok(ok, "native: used only once confirmed, batches within its largest "
	       "batch, names the failing range, demotes on -ENOTTY");
}

/* dirtybatch_has_pending() follows every way pages come and go. */
static void test_has_pending(void)
{
	struct dirtybatch_memslot d[] = { MS(.slot = 1, .npages = 1000),
		MS(.slot = 2, .guest_phys_addr = 1 << 30, .npages = 1000) };
	struct tc *t = tc_new(false, 0, 0, d, 2);
	uint64_t zero[2] = { 0, 0 };
	bool ok = true;

	ok &= !dirtybatch_has_pending(t->ctx) && !dirtybatch_has_pending(NULL);
	ok &= dirtybatch_add_bitmap(t->ctx, 1, 0, 100, zero, 0) == 0;
	ok &= !dirtybatch_has_pending(t->ctx);		/* no bit set */
	ok &= qp(t, 1, 5, 1) == 0 && dirtybatch_has_pending(t->ctx);
	ok &= dirtybatch_submit(t->ctx, NULL) == 1 && !dirtybatch_has_pending(t->ctx);
	ok &= qp(t, 2, 999, 1) == 0 && dirtybatch_has_pending(t->ctx);
	t->fail_at = t->calls;
	t->fail_err = -EFAULT;
	ok &= dirtybatch_submit(t->ctx, NULL) == -EFAULT && dirtybatch_has_pending(t->ctx);
	t->fail_at = -1;
	ok &= dirtybatch_discard(t->ctx) == 1 && !dirtybatch_has_pending(t->ctx);
	ok &= qp(t, 2, 0, 1) == 0 && dirtybatch_slot_remove(t->ctx, 2) == 0 &&
	      !dirtybatch_has_pending(t->ctx);
	tap_ok(ok, "has_pending: after adds, empty adds, submits, failures, discards, removals");
	tc_del(t);
}

static void test_slot_discard_version(void)
{
	struct dirtybatch_memslot d[] = { MS(.slot = 1, .npages = 1000),
		MS(.slot = 2, .guest_phys_addr = 1 << 30, .npages = 1000) };
	struct tc *t = tc_new(false, 0, 0, d, 2);
	struct dirtybatch_stats st = { .sz = sizeof(st) };
	bool ok = true;

	ok &= dirtybatch_version() == DIRTYBATCH_VERSION_CODE &&
	      dirtybatch_version() >> 16 == 1 && (dirtybatch_version() >> 8 & 0xff) >= 1;
	dirtybatch_add_pages(t->ctx, 1, 0, 10);
	dirtybatch_add_pages(t->ctx, 2, 500, 20);
	ok &= dirtybatch_slot_discard(t->ctx, 2) == 20;
	ok &= dirtybatch_slot_discard(t->ctx, 2) == 0;
	ok &= dirtybatch_slot_discard(t->ctx, 3) == -ENOENT;
	ok &= dirtybatch_slot_discard(NULL, 1) == -EINVAL;
	ok &= dirtybatch_pending(t->ctx) == 10;
	t->nrec = 0;
	ok &= dirtybatch_submit(t->ctx, NULL) == 10 && t->nrec == 1 && t->recs[0].slot == 1;
	dirtybatch_get_stats(t->ctx, &st);
	ok &= st.pages_discarded == 20;
	ok &= dirtybatch_slot_discard(t->ctx, 1) == 0 && !dirtybatch_has_pending(t->ctx);
	tap_ok(ok, "dirtybatch_version(), dirtybatch_slot_discard()");
	tc_del(t);
}

#ifdef DB_WRAP_MALLOC
/*
 * One memslot update with 512 memslots costs no more memory traffic than
 * with 1: no table rebuild.  Replacing updates of the same memslot
 * allocate the new entry's buffers only.
 */
static uint64_t update_bytes(struct dirtybatch_ctx *ctx, unsigned int n, uint64_t *ns)
{
	struct dirtybatch_memslot m;
	struct timespec t0, t1;
	uint64_t before;

	for (unsigned int i = 0; i < n; i++) {
		m = MS(.slot = i, .guest_phys_addr = (uint64_t)i << 30, .npages = 256);
		if (dirtybatch_slot_update(ctx, &m))
			return UINT64_MAX;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	before = alloc_bytes;
	for (unsigned int g = 1; g <= 8; g++) {
		for (unsigned int i = 0; i < n; i++) {
			m = MS(.slot = i, .guest_phys_addr = (uint64_t)i << 30, .npages = 256,
			       .generation = g);
			if (dirtybatch_slot_update(ctx, &m))
				return UINT64_MAX;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	*ns = (uint64_t)((t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec)) /
		(8 * n);
	return (alloc_bytes - before) / (8 * n);
}

static void test_layout_scaling(void)
{
	struct dirtybatch_opts o = { .sz = sizeof(o), .flags = DIRTYBATCH_OPEN_FALLBACK,
				     .page_size = 4096 };
	uint64_t b1, b512, ns1, ns512;
	struct dirtybatch_ctx *ctx;

	dirtybatch_open(FAKE_VM_FD, &o, &ctx);
	b1 = update_bytes(ctx, 1, &ns1);
	dirtybatch_close(ctx);
	dirtybatch_open(FAKE_VM_FD, &o, &ctx);
	b512 = update_bytes(ctx, 512, &ns512);
	dirtybatch_close(ctx);
	tap_diag("slot_update replacing a memslot: %" PRIu64 " bytes allocated with 1 memslot, %"
		 PRIu64 " with 512 (%" PRIu64 " / %" PRIu64 " ns, for information)",
		 b1, b512, ns1, ns512);
	tap_ok(b1 != UINT64_MAX && b512 == b1,
	       "a memslot update allocates as much with 512 memslots as with 1 (no rebuild)");
}
#endif

int main(void)
{
	const char *e;
	uint64_t seed = 0x5eed2024ULL, cases = 100000, failures = 0, i;
	char why[512];
	int plan = 27;

#ifdef DB_WRAP_MALLOC
	plan += 2;
#endif
	e = getenv("DIRTYBATCH_TEST_SEED");
	if (e)
		seed = strtoull(e, NULL, 0);
	e = getenv("DIRTYBATCH_TEST_CASES");
	if (e)
		cases = strtoull(e, NULL, 0);

	tap_plan(plan);
	test_open_detection();
	test_layout_errors();
	test_tail_rule();
	test_fallback_gap();
	test_merge();
	test_gpa_split();
	test_module_limits();
	test_error_path();
	test_layout_changes();
	test_empty_submit();
	test_bitmap_offsets();
	test_big_slot();
	test_sparse_big_slot();
#ifdef DB_WRAP_MALLOC
	test_no_alloc();
#endif
	test_memslot_identity();
	test_memslot_sizes();
	test_out_sizes();
	test_device_fd();
	test_backend_choice();
	test_demotion();
	test_native();
	test_has_pending();
	test_slot_discard_version();
#ifdef DB_WRAP_MALLOC
	test_layout_scaling();
#endif

	tap_diag("randomized: seed %#" PRIx64 ", %" PRIu64 " cases", seed, cases);
	for (i = 0; i < cases; i++) {
		uint64_t cs = seed * 0x100000001b3ULL + i;

		if (!run_case(cs, why, sizeof(why))) {
			if (failures++ < 5)
				tap_diag("case %" PRIu64 " (seed %#" PRIx64 "): %s", i, cs, why);
		}
	}
	tap_diag("adds ok pages/gpa/bitmap %" PRIu64 "/%" PRIu64 "/%" PRIu64
		 ", rejected %" PRIu64 "/%" PRIu64 "/%" PRIu64,
		 cov.add_ok[0], cov.add_ok[1], cov.add_ok[2],
		 cov.add_err[0], cov.add_err[1], cov.add_err[2]);
	tap_diag("rejections: EINVAL %" PRIu64 " ENODATA %" PRIu64 " EOVERFLOW %" PRIu64
		 " ENOENT %" PRIu64 " ERANGE %" PRIu64,
		 cov.errs[1], cov.errs[2], cov.errs[3], cov.errs[4], cov.errs[5]);
	tap_diag("submits %" PRIu64 " (module %" PRIu64 ", injected failures %" PRIu64
		 "), ranges %" PRIu64 " (tail ranges %" PRIu64 "), pages %" PRIu64,
		 cov.submits, cov.module_submits, cov.injected, cov.ranges, cov.tails, cov.pages);
	tap_diag("layout changes %" PRIu64 " ok, %" PRIu64 " rejected; mode toggles %" PRIu64
		 "; discards %" PRIu64,
		 cov.layout_ok, cov.layout_err, cov.toggles, cov.discards);
	tap_ok(!failures, "%" PRIu64 " randomized cases match the per-page model (%" PRIu64 " failed)",
	       cases, failures);
	return tap_exit_code();
}
