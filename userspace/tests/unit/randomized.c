// SPDX-License-Identifier: LGPL-2.1 OR MIT
/*
 * The randomized model-based test: each case opens a context on the fake
 * kernel with a random page size, gaps, module limits and layout, runs up
 * to 24 random operations (adds of pages, gpa ranges and bitmaps, submits
 * with injected failures, discards, layout changes, mode toggles), and
 * checks every step against the per-page model (fake_kernel.h).
 */
#include "fake_kernel.h"
#include "unit.h"

static void count_add_result(int type, int r)
{
	static const int codes[] = { 0, -EINVAL, -ENODATA, -EOVERFLOW, -ENOENT, -ERANGE, -EEXIST };

	if (!r) {
		coverage.add_ok[type]++;
		return;
	}
	coverage.add_err[type]++;
	for (int i = 1; i < 7; i++)
		if (codes[i] == r)
			coverage.errs[i]++;
}

/* Same rules as the library, written naively. */
static int model_check_layout(const struct unit_case *t,
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

static int layout_desc(const struct unit_case *t, struct dirtybatch_memslot *d)
{
	for (int i = 0; i < t->n; i++)
		d[i] = (struct dirtybatch_memslot){ .sz = sizeof(struct dirtybatch_memslot), .slot = t->s[i].slot,
			.guest_phys_addr = t->s[i].gpa, .npages = t->s[i].npages };
	return t->n;
}

static uint32_t rnd_unknown_slot(struct unit_case *t)
{
	uint32_t s;

	do
		s = DIRTYBATCH_SLOT(rng_below(&case_rng, 3), rng_below(&case_rng, 50));
	while (model_find_slot(t, s));
	return s;
}

/* first/n for a slot, sometimes invalid. */
static void rnd_run(struct model_slot *m, uint64_t *first, uint64_t *n)
{
	uint64_t f, l;

	switch (rng_below(&case_rng, 16)) {
	case 0:
		*first = rng_below(&case_rng, m->npages);
		*n = 0;
		return;
	case 1:
		*first = UINT64_MAX - rng_below(&case_rng, 5);
		*n = 1 + rng_below(&case_rng, 10);
		return;
	case 2:
		f = rnd_page(m->npages);
		*first = f;
		*n = m->npages - f + 1 + rng_below(&case_rng, 3);
		return;
	case 3:
		*first = m->npages + rng_below(&case_rng, 100);
		*n = 1 + rng_below(&case_rng, 5);
		return;
	default:
		f = rnd_page(m->npages);
		l = rnd_len(m->npages - f);
		*first = f;
		*n = l;
		return;
	}
}

/*
 * The target of a random add: a memslot of the model, or (NULL, *slot one
 * the library does not know) none, and pages [*first, *first + *n) there.
 */
static struct model_slot *rnd_target(struct unit_case *t, uint32_t *slot, uint64_t *first,
				     uint64_t *n)
{
	struct model_slot *m = t->n && rng_below(&case_rng, 12) ? &t->s[rng_below(&case_rng, t->n)] : NULL;

	*slot = m ? m->slot : rnd_unknown_slot(t);
	if (m) {
		rnd_run(m, first, n);
	} else {
		*first = rng_below(&case_rng, 100);
		*n = 1 + rng_below(&case_rng, 100);
	}
	return m;
}

/* An add's error once its arguments passed: no such memslot, or past its end. */
static int expect_in_slot(const struct model_slot *m, uint64_t first, uint64_t n)
{
	if (!m)
		return -ENOENT;
	return first + n > m->npages ? -ERANGE : 0;
}

static void op_add_pages(struct unit_case *t)
{
	uint32_t slot;
	uint64_t first, n;
	struct model_slot *m = rnd_target(t, &slot, &first, &n);
	int exp, got;

	if (!n)
		exp = -ENODATA;
	else if (first > UINT64_MAX - n)
		exp = -EOVERFLOW;
	else
		exp = expect_in_slot(m, first, n);
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
	count_add_result(0, got);
	check_pending(t, "add_pages");
}

static void op_add_bitmap(struct unit_case *t)
{
	uint32_t slot;
	uint64_t first, n, off, words, *bm = NULL, dummy = ~0ULL;
	struct model_slot *m = rnd_target(t, &slot, &first, &n);
	const uint64_t *arg;
	int exp, got, dens;

	off = rng_below(&case_rng, 4) ? rng_below(&case_rng, 300) : rng_below(&case_rng, 64);
	if (!rng_below(&case_rng, 40)) {
		off = UINT64_MAX - rng_below(&case_rng, 4);
		n = 5 + rng_below(&case_rng, 10);
	}
	arg = &dummy;
	if (!rng_below(&case_rng, 40))
		arg = NULL;
	if (!arg)
		exp = -EINVAL;
	else if (!n)
		exp = -ENODATA;
	else if (first > UINT64_MAX - n || off > UINT64_MAX - n ||
		 (off + n - 1) / 64 > (UINTPTR_MAX - (uintptr_t)arg) / 8)
		exp = -EOVERFLOW;
	else
		exp = expect_in_slot(m, first, n);
	if (!exp) {
		/* exactly the words the library may read, garbage around */
		words = (off + n + 63) / 64;
		bm = malloc(words * 8);
		if (!bm)
			abort();
		dens = (int)rng_below(&case_rng, 5);
		for (uint64_t w = 0; w < words; w++) {
			uint64_t x = rng_next(&case_rng);

			switch (dens) {
			case 0: x = 0; break;
			case 1: x = ~0ULL; break;
			case 2: x &= rng_next(&case_rng) & rng_next(&case_rng) & rng_next(&case_rng); break;
			case 3: x = rng_below(&case_rng, 3) ? 0 : x; break;
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
	count_add_result(2, got);
	check_pending(t, "add_bitmap");
}

static void op_add_gpa(struct unit_case *t)
{
	uint32_t as;
	uint64_t gpa, len, last, np;
	int exp, got;
	struct model_slot *pages_slot[1];

	(void)pages_slot;
	if (t->n && rng_below(&case_rng, 10)) {
		struct model_slot *m = &t->s[rng_below(&case_rng, t->n)];
		uint64_t f = rnd_page(m->npages);

		as = m->slot >> 16;
		gpa = m->gpa + f * t->ps;
		/* often run past the slot end into the neighbour */
		np = rng_below(&case_rng, 3) ? rnd_len(m->npages - f) : rnd_len(m->npages - f) + rng_below(&case_rng, 3 * 64 + 1);
		len = np * t->ps;
		if (rng_below(&case_rng, 10) == 0)
			len += 1 + rng_below(&case_rng, t->ps - 1);	/* misaligned length */
		if (rng_below(&case_rng, 10) == 0)
			gpa += 1 + rng_below(&case_rng, t->ps - 1);	/* misaligned start */
		if (rng_below(&case_rng, 20) == 0)
			len = 0;
		if (rng_below(&case_rng, 30) == 0)
			gpa -= t->ps * (1 + rng_below(&case_rng, 2));	/* maybe starts in a gap */
	} else {
		as = (uint32_t)rng_below(&case_rng, 3);
		gpa = rng_next(&case_rng) & ~(t->ps - 1);
		len = (1 + rng_below(&case_rng, 1000)) * t->ps;
		if (rng_below(&case_rng, 3) == 0) {
			gpa = (UINT64_MAX & ~(t->ps - 1)) - rng_below(&case_rng, 3) * t->ps;
			len = (1 + rng_below(&case_rng, 4)) * t->ps;
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
				struct model_slot *m = &t->s[s];

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
				struct model_slot *m = &t->s[s];

				if ((m->slot >> 16) == as && a >= m->gpa &&
				    a - m->gpa < m->npages * t->ps)
					model_queue(t, m, (a - m->gpa) / t->ps);
			}
		}
	}
	count_add_result(1, got);
	check_pending(t, "add_gpa");
}

static uint64_t rnd_npages(void)
{
	switch (rng_below(&case_rng, 10)) {
	case 0: case 1: case 2: case 3:
		return 1 + rng_below(&case_rng, 130);
	case 4: case 5: {
		uint64_t k = 64 * (1 + rng_below(&case_rng, 6));

		return rng_below(&case_rng, 2) ? k : k + rng_below(&case_rng, 5) - 2 + (k < 3 ? 3 : 0);
	}
	case 6: case 7:
		return 1 + rng_below(&case_rng, 700);
	case 8:
		return 1 + rng_below(&case_rng, 2500);
	default:
		return rng_below(&case_rng, 2) ? 1 : 64;
	}
}

/* A random valid layout of n slots. */
static int rnd_layout(struct unit_case *t, struct dirtybatch_memslot *d, int n)
{
	uint64_t cursor[2];
	int k = 0;

	cursor[0] = rng_below(&case_rng, 4) * (rng_below(&case_rng, 2) ? 256 : 1) * t->ps;
	cursor[1] = rng_below(&case_rng, 1000) * t->ps;
	for (int i = 0; i < n; i++) {
		uint32_t as = rng_below(&case_rng, 5) == 0, slot;
		uint64_t np = rnd_npages(), gpa;
		bool dup;

		do {
			slot = DIRTYBATCH_SLOT(as, rng_below(&case_rng, 40));
			dup = false;
			for (int j = 0; j < k; j++)
				dup |= d[j].slot == slot;
		} while (dup);
		if (i == n - 1 && !as && rng_below(&case_rng, 15) == 0) {
			gpa = 0 - np * t->ps;	/* ends at the top of the address space */
		} else {
			if (rng_below(&case_rng, 2))
				cursor[as] += rng_below(&case_rng, 4) * t->ps;
			gpa = cursor[as];
			cursor[as] += np * t->ps;
		}
		d[k++] = (struct dirtybatch_memslot){ .sz = sizeof(struct dirtybatch_memslot), .slot = slot,
			.guest_phys_addr = gpa, .npages = np };
	}
	/* shuffle */
	for (int i = k - 1; i > 0; i--) {
		int j = (int)rng_below(&case_rng, (uint64_t)i + 1);
		struct dirtybatch_memslot x = d[i];

		d[i] = d[j];
		d[j] = x;
	}
	return k;
}

static void op_layout(struct unit_case *t)
{
	struct dirtybatch_memslot d[MAXS + 1];
	int n = 0, exp, got, kind = (int)rng_below(&case_rng, 4);

	if (kind == 0) {
		/* remove */
		uint32_t slot = t->n && rng_below(&case_rng, 5) ? t->s[rng_below(&case_rng, t->n)].slot : rnd_unknown_slot(t);

		exp = model_find_slot(t, slot) ? 0 : -ENOENT;
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
		if (n && rng_below(&case_rng, 4)) {
			struct model_slot *m = &t->s[rng_below(&case_rng, t->n)];

			u = (struct dirtybatch_memslot){ .sz = sizeof(struct dirtybatch_memslot), .slot = m->slot,
				.guest_phys_addr = m->gpa, .npages = m->npages };
			switch (rng_below(&case_rng, 4)) {
			case 0: break;
			case 1: u.npages = rnd_npages(); break;
			case 2: u.guest_phys_addr += (rng_below(&case_rng, 5) - 2) * t->ps * 64; break;
			default: break;
			}
		} else {
			u = (struct dirtybatch_memslot){ .sz = sizeof(struct dirtybatch_memslot), .slot = rnd_unknown_slot(t),
				.guest_phys_addr = rng_below(&case_rng, 5000) * t->ps, .npages = rnd_npages() };
		}
		switch (rng_below(&case_rng, 12)) {
		case 0: u.flags = 1; break;
		case 1: u.npages = 0; break;
		case 2: u.guest_phys_addr |= 1 + rng_below(&case_rng, t->ps - 1); break;
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
		int keep = t->n ? (int)rng_below(&case_rng, (uint64_t)t->n + 1) : 0;

		n = rnd_layout(t, d, 1 + (int)rng_below(&case_rng, MAXS - 1));
		for (int i = 0; i < keep && i < n; i++) {
			struct model_slot *m = &t->s[rng_below(&case_rng, t->n)];

			d[i] = (struct dirtybatch_memslot){ .sz = sizeof(struct dirtybatch_memslot), .slot = m->slot,
				.guest_phys_addr = m->gpa, .npages = m->npages };
		}
		if (rng_below(&case_rng, 6) == 0 && n > 1)
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
		coverage.layout_err++;
	else
		coverage.layout_ok++;
	check_pending(t, "layout");
}

static void op_discard(struct unit_case *t)
{
	uint64_t got = dirtybatch_discard(t->ctx);

	coverage.discards++;
	if (got != t->queued)
		fail(t, "discard returned %" PRIu64 ", model %" PRIu64, got, t->queued);
	t->est.pages_discarded += t->queued;
	for (int s = 0; s < t->n; s++)
		memset(t->s[s].q, 0, t->s[s].npages);
	t->queued = 0;
	check_pending(t, "discard");
}

static void op_toggle(struct unit_case *t)
{
	int m;

	coverage.toggles++;
	t->forced = !t->forced;
	m = dirtybatch_set_fallback(t->ctx, t->forced);
	if (m != (module_mode(t) ? DIRTYBATCH_MODE_MODULE : DIRTYBATCH_MODE_FALLBACK))
		fail(t, "set_fallback(%d) returned mode %d", t->forced, m);
	if (dirtybatch_mode(t->ctx) != m)
		fail(t, "dirtybatch_mode disagrees");
}

static bool run_case(uint64_t seed, char *why, size_t whylen)
{
	struct unit_case t;
	struct dirtybatch_opts o = { .sz = sizeof(o), .flags = DIRTYBATCH_OPEN_FALLBACK };
	struct dirtybatch_memslot d[MAXS];
	struct dirtybatch_stats st = { .sz = sizeof(st) };
	static const unsigned int shifts[] = { 12, 12, 12, 12, 12, 9, 16, 21 };
	int n, nops, err;

	memset(&t, 0, sizeof(t));
	t.est.sz = sizeof(t.est);
	rng_init(&case_rng, seed);
	t.shift = shifts[rng_below(&case_rng, 8)];
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

		t.gap = gaps[rng_below(&case_rng, sizeof(gaps) / sizeof(gaps[0]))];
		t.mgap = mgaps[rng_below(&case_rng, sizeof(mgaps) / sizeof(mgaps[0]))];
		dirtybatch__set_gaps(t.ctx, t.gap, t.mgap);
	}
	t.module_cfg = rng_below(&case_rng, 2);
	if (t.module_cfg) {
		t.info = (struct kvm_dirtybatch_info){
			.abi_version = KVM_DIRTYBATCH_ABI_VERSION,
			.size = sizeof(struct kvm_dirtybatch_info),
			.features = KVM_DIRTYBATCH_FEAT_CLEAR | KVM_DIRTYBATCH_FEAT_ERROR_INDEX,
			.max_ranges = rng_below(&case_rng, 3) ? KVM_DIRTYBATCH_MAX_RANGES : 1 + (uint32_t)rng_below(&case_rng, 4),
			.range_size = rng_below(&case_rng, 4) ? 24 : 24 + 4 * (uint32_t)rng_below(&case_rng, 5),
			.max_bitmap_bytes = rng_below(&case_rng, 3) ? KVM_DIRTYBATCH_MAX_BITMAP_BYTES :
				8 * (1 + (uint32_t)rng_below(&case_rng, 6)) + (uint32_t)rng_below(&case_rng, 8),
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
	if (t.module_cfg && rng_below(&case_rng, 4))
		op_toggle(&t);	/* usually start in module mode */

	n = rnd_layout(&t, d, 1 + (int)rng_below(&case_rng, 5));
	err = dirtybatch_set_layout(t.ctx, d, (unsigned int)n);
	if (err)
		fail(&t, "set_layout: %d", err);
	else
		model_install(&t, d, n);

	nops = 1 + (int)rng_below(&case_rng, 24);
	for (int i = 0; i < nops && !t.bad; i++) {
		uint64_t r = rng_below(&case_rng, 100);

		if (r < 30)
			op_add_pages(&t);
		else if (r < 50)
			op_add_gpa(&t);
		else if (r < 72)
			op_add_bitmap(&t);
		else if (r < 84)
			submit_checked(&t, rng_below(&case_rng, 3) == 0);
		else if (r < 87)
			op_discard(&t);
		else if (r < 95)
			op_layout(&t);
		else if (t.module_cfg)
			op_toggle(&t);
	}
	submit_checked(&t, false);
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
	unit_case_free(&t);
	return !t.bad;
}

/* @cases cases from @seed: diagnostics of what they covered, one TAP point. */
void test_randomized(uint64_t seed, uint64_t cases)
{
	uint64_t failures = 0, i;
	char why[512];

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
		 coverage.add_ok[0], coverage.add_ok[1], coverage.add_ok[2],
		 coverage.add_err[0], coverage.add_err[1], coverage.add_err[2]);
	tap_diag("rejections: EINVAL %" PRIu64 " ENODATA %" PRIu64 " EOVERFLOW %" PRIu64
		 " ENOENT %" PRIu64 " ERANGE %" PRIu64,
		 coverage.errs[1], coverage.errs[2], coverage.errs[3], coverage.errs[4],
		 coverage.errs[5]);
	tap_diag("submits %" PRIu64 " (module %" PRIu64 ", injected failures %" PRIu64
		 "), ranges %" PRIu64 " (tail ranges %" PRIu64 "), pages %" PRIu64,
		 coverage.submits, coverage.module_submits, coverage.injected,
		 coverage.ranges, coverage.tails, coverage.pages);
	tap_diag("layout changes %" PRIu64 " ok, %" PRIu64 " rejected; mode toggles %" PRIu64
		 "; discards %" PRIu64,
		 coverage.layout_ok, coverage.layout_err, coverage.toggles, coverage.discards);
	unit_ok(!failures, "%" PRIu64 " randomized cases match the per-page model (%" PRIu64 " failed)",
	       cases, failures);
}
