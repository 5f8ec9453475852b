// SPDX-License-Identifier: LGPL-2.1 OR MIT
/*
 * The fake kernel and the per-page model of the unit tests (fake_kernel.h).
 *
 * The library is linked statically from its objects so that the internal
 * backend hook can replace the ioctls by a fake kernel that applies every
 * request with exactly KVM_CLEAR_DIRTY_LOG's rules (and the module's
 * all-or-nothing batch rule) and records it.  Everything the library does
 * is checked against a naive per-page reference model: which pages get
 * cleared, word alignment, the tail rule at slot ends that are not a
 * multiple of 64 pages, splits at slot boundaries, maximal runs, module
 * limits, error codes and what stays queued after a failed submit.
 */
#include "fake_kernel.h"

struct rng case_rng;
struct coverage coverage;

/* Allocation counting (only in the build linked with --wrap=malloc). */

#ifdef DB_WRAP_MALLOC
void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
unsigned long allocs;
uint64_t alloc_bytes;
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

/* Fake kernel. */

__attribute__((format(printf, 2, 3)))
void fail(struct unit_case *t, const char *fmt, ...)
{
	va_list ap;

	if (t->bad++)
		return;
	va_start(ap, fmt);
	vsnprintf(t->why, sizeof(t->why), fmt, ap);
	va_end(ap);
}

struct model_slot *model_find_slot(struct unit_case *t, uint32_t slot)
{
	for (int i = 0; i < t->n; i++)
		if (t->s[i].slot == slot)
			return &t->s[i];
	return NULL;
}

static void record_range(struct unit_case *t, uint32_t slot, uint64_t first, uint32_t num,
			 bool applied)
{
	if (t->nrec == t->caprec) {
		t->caprec = t->caprec ? 2 * t->caprec : 256;
		t->recs = realloc(t->recs, t->caprec * sizeof(*t->recs));
		if (!t->recs)
			abort();
	}
	t->recs[t->nrec++] = (struct sent_range){ slot, num, first, applied };
}

/*
 * Check one range as KVM would, plus what the library promises: its first
 * and last words are non-zero, and no more than @gap zero words in a row
 * lie between.
 */
static int fk_check_range(struct unit_case *t, uint32_t slot, uint64_t first, uint32_t num,
			  const uint64_t *bm, uint64_t gap)
{
	struct model_slot *m = model_find_slot(t, slot);
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

/*
 * The reference model of KVM_CLEAR_DIRTY_LOG here is its own on purpose,
 * not selftests/lib's snap_apply(): that one lives in util.c beside the VM
 * helper (and /dev/kvm), which these tests must not need, and works on
 * bitmaps; this one works page by page on the model and also checks what
 * only the library promises (every page cleared was queued, none twice).
 */
static uint64_t fk_apply_range(struct unit_case *t, uint32_t slot, uint64_t first,
			       uint32_t num, const uint64_t *bm)
{
	struct model_slot *m = model_find_slot(t, slot);
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
	struct unit_case *t = priv;
	int64_t k;
	int err;

	if (vm_fd != FAKE_VM_FD)
		fail(t, "wrong vm fd %d", vm_fd);
	if (t->module_cfg && !t->forced)
		fail(t, "KVM_CLEAR_DIRTY_LOG in module mode");
	k = t->calls++;
	err = fk_check_range(t, log->slot, log->first_page, log->num_pages, log->dirty_bitmap,
			     t->gap);
	if (err)
		return err;
	if (k == t->fail_at) {
		t->failed = true;
		t->fail_has_range = true;
		t->fail_rec = (struct sent_range){ log->slot, log->num_pages, log->first_page, false };
		record_range(t, log->slot, log->first_page, log->num_pages, false);
		return t->fail_err;
	}
	fk_apply_range(t, log->slot, log->first_page, log->num_pages, log->dirty_bitmap);
	record_range(t, log->slot, log->first_page, log->num_pages, true);
	return 0;
}

static int fk_batch_clear(void *priv, int dev_fd, struct kvm_dirtybatch_clear *c)
{
	struct unit_case *t = priv;
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
		err = fk_check_range(t, r->slot, r->first_page, r->num_pages,
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
	t->chunks[t->nchunk++] = (struct batch_call){ c->count, bytes, first_bytes };
	k = t->calls++;
	if (k == t->fail_at) {
		t->failed = true;
		c->error_index = t->fail_pick % (c->count + 1);
		t->fail_has_range = c->error_index < c->count;
		for (i = 0; i < c->count; i++) {
			const struct kvm_dirtybatch_range *r = (const void *)
				((const unsigned char *)(uintptr_t)c->ranges +
				 (size_t)i * c->range_size);

			record_range(t, r->slot, r->first_page, r->num_pages, false);
			if (i == c->error_index)
				t->fail_rec = t->recs[t->nrec - 1];
		}
		return t->fail_err;
	}
	for (i = 0; i < c->count; i++) {
		const struct kvm_dirtybatch_range *r = (const void *)
			((const unsigned char *)(uintptr_t)c->ranges +
			 (size_t)i * c->range_size);

		cleared += fk_apply_range(t, r->slot, r->first_page, r->num_pages,
					  (const uint64_t *)(uintptr_t)r->dirty_bitmap);
		record_range(t, r->slot, r->first_page, r->num_pages, true);
	}
	c->pages_cleared = cleared;
	c->error_index = c->count;
	t->kcleared += cleared;
	return 0;
}

const struct dirtybatch_backend fk_backend = {
	.clear_log = fk_clear_log,
	.batch_clear = fk_batch_clear,
};

/* Model. */

void model_slot_init(struct model_slot *m, uint32_t slot, uint64_t gpa,
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
		m->kd[p] = kd_mode == 0 ? 1 : kd_mode == 1 ? 0 : (rng_next(&case_rng) & 1);
}

void model_slot_free(struct model_slot *m)
{
	free(m->q);
	free(m->kd);
	free(m->clr);
	memset(m, 0, sizeof(*m));
}

void model_queue(struct unit_case *t, struct model_slot *m, uint64_t p)
{
	if (!m->q[p]) {
		m->q[p] = 1;
		t->queued++;
	}
}

/* Install a layout in the model (already validated). */
void model_install(struct unit_case *t, const struct dirtybatch_memslot *d, int n)
{
	struct model_slot ns[MAXS];
	bool kept[MAXS] = { false };
	uint64_t discarded = 0;

	memset(ns, 0, sizeof(ns));
	for (int i = 0; i < n; i++) {
		struct model_slot *old = model_find_slot(t, d[i].slot);

		if (old && old->gpa == d[i].guest_phys_addr && old->npages == d[i].npages) {
			ns[i] = *old;
			kept[old - t->s] = true;
		} else {
			model_slot_init(&ns[i], d[i].slot, d[i].guest_phys_addr,
					d[i].npages, (int)rng_below(&case_rng, 3));
		}
	}
	for (int i = 0; i < t->n; i++) {
		if (kept[i])
			continue;
		for (uint64_t p = 0; p < t->s[i].npages; p++)
			discarded += t->s[i].q[p];
		model_slot_free(&t->s[i]);
	}
	t->queued -= discarded;
	t->est.pages_discarded += discarded;
	memcpy(t->s, ns, sizeof(ns));
	t->n = n;
}

/* Expected ranges for the current model state. */

int range_cmp(const void *a, const void *b)
{
	const struct sent_range *x = a, *y = b;

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
size_t expected_ranges(const struct unit_case *t, uint64_t maxw, uint64_t gap,
		       struct sent_range **out)
{
	size_t n = 0, cap = 64;
	struct sent_range *r = malloc(cap * sizeof(*r));

	for (int i = 0; i < t->n; i++) {
		const struct model_slot *m = &t->s[i];
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
				r[n++] = (struct sent_range){ m->slot,
					(uint32_t)(pe == nw ? m->npages - ps * 64 : (pe - ps) * 64),
					ps * 64, false };
			}
		}
		free(nz);
	}
	*out = r;
	return n;
}

/* Submit, checked. */

bool module_mode(const struct unit_case *t)
{
	return t->module_cfg && !t->forced;
}

void check_pending(struct unit_case *t, const char *what)
{
	uint64_t p = dirtybatch_pending(t->ctx);

	if (p != t->queued)
		fail(t, "%s: pending %" PRIu64 ", model %" PRIu64, what, p, t->queued);
}

void submit_checked(struct unit_case *t, bool inject)
{
	struct dirtybatch_result res = { .sz = sizeof(res) };
	struct sent_range *exp;
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
		qsort(exp, nexp, sizeof(*exp), range_cmp);
	t->nrec = 0;
	t->nchunk = 0;
	t->calls = 0;
	t->failed = false;
	t->fail_has_range = false;
	t->applied_pages = 0;
	t->fail_at = -1;
	if (inject && nexp) {
		static const int errs[] = { -EINVAL, -ENOENT, -EFAULT, -ENOMEM };

		t->fail_at = (int64_t)rng_below(&case_rng, module ? 3 : nexp);
		t->fail_err = errs[rng_below(&case_rng, 4)];
		t->fail_pick = (uint32_t)rng_next(&case_rng);
	}

	ret = dirtybatch_submit(t->ctx, &res);
	applied_pages = t->applied_pages;
	coverage.submits++;
	coverage.module_submits += module;
	coverage.injected += t->failed;
	coverage.ranges += t->nrec;
	coverage.pages += applied_pages;
	for (i = 0; i < t->nrec; i++)
		coverage.tails += (t->recs[i].num & 63) != 0;

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
		qsort(t->recs, t->nrec, sizeof(*t->recs), range_cmp);
	for (i = 0; i < t->nrec; i++) {
		struct sent_range key = t->recs[i];

		key.applied = false;
		if (!nexp || !bsearch(&key, exp, nexp, sizeof(*exp), range_cmp))
			fail(t, "unexpected range slot %#x first %" PRIu64 " num %u",
			     key.slot, key.first, key.num);
		if (i && !range_cmp(&t->recs[i - 1], &t->recs[i]))
			fail(t, "range sent twice");
	}

	/* Module: split into calls only where a limit forced it. */
	if (module) {
		for (i = 0; i + 1 < t->nchunk; i++) {
			const struct batch_call *a = &t->chunks[i], *b = &t->chunks[i + 1];

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
			struct model_slot *m = &t->s[s];

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
			struct model_slot *m = &t->s[s];

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

/* Random draws (the randomized cases and the sparse big-slot test). */

uint64_t rnd_len(uint64_t max)
{
	switch (rng_below(&case_rng, 6)) {
	case 0:
		return 1 + rng_below(&case_rng, max < 3 ? max : 3);
	case 1:
		return 1 + rng_below(&case_rng, max < 70 ? max : 70);
	case 2:
		return max;
	case 3: {
		uint64_t l = 64 * (1 + rng_below(&case_rng, 4));

		return l < max ? l : max;
	}
	default:
		return 1 + rng_below(&case_rng, max);
	}
}

uint64_t rnd_page(uint64_t npages)
{
	switch (rng_below(&case_rng, 5)) {
	case 0:
		return 0;
	case 1: {
		uint64_t p = rng_below(&case_rng, npages) & ~63ULL;

		return p;
	}
	case 2:
		return npages - 1 - rng_below(&case_rng, npages < 3 ? npages : 3);
	default:
		return rng_below(&case_rng, npages);
	}
}

/* Cases of the directed tests. */

/* A context with a fake kernel and the given layout. */
struct unit_case *unit_case_new(bool module, uint32_t max_ranges, uint32_t max_bytes,
				const struct dirtybatch_memslot *d, int n)
{
	struct unit_case *t = calloc(1, sizeof(*t));
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

/* A fallback case with two 1000-page memslots: 1 at gpa 0, 2 at 1 GiB. */
struct unit_case *unit_case_two_slots(void)
{
	struct dirtybatch_memslot d[] = { MS(.slot = 1, .npages = 1000),
		MS(.slot = 2, .guest_phys_addr = 1 << 30, .npages = 1000) };

	return unit_case_new(false, 0, 0, d, 2);
}

void unit_case_free(struct unit_case *t)
{
	for (int i = 0; i < t->n; i++)
		model_slot_free(&t->s[i]);
	free(t->recs);
	free(t->chunks);
	dirtybatch_close(t->ctx);
}

void unit_case_delete(struct unit_case *t)
{
	unit_case_free(t);
	free(t);
}

/* Library add + model, for the directed tests. */
int queue_pages(struct unit_case *t, uint32_t slot, uint64_t first, uint64_t n)
{
	int r = dirtybatch_add_pages(t->ctx, slot, first, n);
	struct model_slot *m = model_find_slot(t, slot);

	if (!r)
		for (uint64_t p = first; p < first + n; p++)
			model_queue(t, m, p);
	return r;
}

int queue_gpa(struct unit_case *t, uint32_t as, uint64_t gpa, uint64_t len)
{
	int r = dirtybatch_add_gpa(t->ctx, as, gpa, len);

	if (!r) {
		for (uint64_t a = gpa; a - gpa < len; a += t->ps) {
			for (int s = 0; s < t->n; s++) {
				struct model_slot *m = &t->s[s];

				if ((m->slot >> 16) == as && a >= m->gpa &&
				    a - m->gpa < m->npages * t->ps)
					model_queue(t, m, (a - m->gpa) / t->ps);
			}
		}
	}
	return r;
}

int queue_bitmap(struct unit_case *t, uint32_t slot, uint64_t first, uint64_t n,
		 const uint64_t *bm, uint64_t off)
{
	int r = dirtybatch_add_bitmap(t->ctx, slot, first, n, bm, off);
	struct model_slot *m = model_find_slot(t, slot);

	if (!r)
		for (uint64_t i = 0; i < n; i++)
			if (bm[(off + i) / 64] >> ((off + i) % 64) & 1)
				model_queue(t, m, first + i);
	return r;
}

void reset_round(struct unit_case *t)
{
	t->nrec = 0;
	t->nchunk = 0;
	for (int s = 0; s < t->n; s++) {
		memset(t->s[s].q, 0, t->s[s].npages);
		memset(t->s[s].clr, 0, t->s[s].npages);
	}
	t->queued = 0;
}

bool sent_ranges_equal(struct unit_case *t, const struct sent_range *e, size_t n)
{
	if (t->nrec != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (t->recs[i].slot != e[i].slot || t->recs[i].first != e[i].first ||
		    t->recs[i].num != e[i].num)
			return false;
	return true;
}
