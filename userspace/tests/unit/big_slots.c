// SPDX-License-Identifier: LGPL-2.1 OR MIT
/*
 * Big and sparse memslots, and bitmaps at every bit offset.
 */
#include "fake_kernel.h"
#include "unit.h"

void test_bitmap_offsets(void)
{
	/* QEMU style: slot bitmap, clear [start, start + size) with bit offset */
	struct dirtybatch_memslot d[] = { { .sz = sizeof(struct dirtybatch_memslot), .slot = 4, .guest_phys_addr = 0, .npages = 1000 } };
	struct unit_case *t = unit_case_new(false, 0, 0, d, 1);
	uint64_t bmap[16];
	bool ok = true;

	for (int i = 0; i < 16; i++)
		bmap[i] = 0xa5a5a5a5a5a5a5a5ULL ^ (uint64_t)i;
	for (uint64_t off = 0; off < 130 && ok; off++) {
		for (uint64_t first = 0; first < 130 && ok; first += 7) {
			uint64_t n = 1000 - first < 800 ? 1000 - first : 800 - off % 64;

			if (off + n > 1024)
				n = 1024 - off;
			ok &= queue_bitmap(t, 4, first, n, bmap, off) == 0;
			submit_checked(t, false);
			ok &= !t->bad;
		}
	}
	/*
	 * Huge bit offsets into a bitmap pointer moved back to match: the
	 * words read are bmap's.  On 32-bit these take the exact path (the
	 * short one stops at 2^28 - 1), on 64-bit the short one.  Not queue_bitmap():
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
		submit_checked(t, false);
		ok &= !t->bad;
	}
	unit_ok(ok, "bitmap with every bit offset 0..129, and huge ones %s", t->why);
	unit_case_delete(t);
}

void test_big_slot(void)
{
	/* 2^22 pages: long runs cross summary words; word-level checks */
	struct dirtybatch_memslot d[] = {
		{ .sz = sizeof(struct dirtybatch_memslot), .slot = 7, .guest_phys_addr = 1ULL << 32, .npages = (1 << 22) - 3 },
	};
	struct unit_case *t = unit_case_new(true, 65536, 16 << 20, d, 1);
	struct dirtybatch_result res = { .sz = sizeof(res) };
	uint64_t np = d[0].npages;
	int64_t r;
	bool ok = true;

	ok &= queue_pages(t, 7, 5, np - 5) == 0;
	r = dirtybatch_submit(t->ctx, &res);
	ok &= r == (int64_t)(np - 5) && res.ranges == 1 && t->nrec == 1 &&
	      t->recs[0].first == 0 && t->recs[0].num == np;
	t->nrec = 0;
	for (int s = 0; s < t->n; s++) {
		memset(t->s[s].kd, 1, t->s[s].npages);
		memset(t->s[s].q, 0, t->s[s].npages);
		memset(t->s[s].clr, 0, t->s[s].npages);
	}
	ok &= queue_pages(t, 7, 4096 * 10 + 1, 4096 * 3) == 0;
	ok &= queue_pages(t, 7, 4096 * 300, 64) == 0;
	ok &= queue_pages(t, 7, np - 1, 1) == 0;
	r = dirtybatch_submit(t->ctx, &res);
	ok &= r == 4096 * 3 + 64 + 1 && res.ranges == 3 && t->nrec == 3;
	unit_ok(ok && !t->bad, "4M-page slot, runs across summary groups %s", t->why);
	unit_case_delete(t);
}

/*
 * A few short runs far apart in a 2^22-page slot (65536 words: 1024
 * groups of 64, 16 groups of 4096), both modes, random gaps, failures
 * injected: submits find the runs through the summary's upper levels, and
 * the ranges are exactly the model's.
 */
void test_sparse_big_slot(void)
{
	struct dirtybatch_memslot d[] = {
		{ .sz = sizeof(struct dirtybatch_memslot), .slot = 9, .guest_phys_addr = 1ULL << 32, .npages = (1 << 22) - 3 },
		{ .sz = sizeof(struct dirtybatch_memslot), .slot = 10, .guest_phys_addr = 1ULL << 44, .npages = 1 << 18 },
	};
	for (int module = 0; module < 2; module++) {
		struct unit_case *t = unit_case_new(module, 65536, 16 << 20, d, 2);
		uint64_t subs = 0;

		for (int round = 0; round < 40 && !t->bad; round++) {
			int nruns = 1 + (int)rng_below(&case_rng, 8);

			t->gap = rng_below(&case_rng, 2) ? DB_FALLBACK_GAP_WORDS : rng_below(&case_rng, 70);
			t->mgap = rng_below(&case_rng, 2) ? DB_MODULE_GAP_WORDS : rng_below(&case_rng, 20);
			dirtybatch__set_gaps(t->ctx, t->gap, t->mgap);
			for (int k = 0; k < nruns; k++) {
				const struct dirtybatch_memslot *m = &d[rng_below(&case_rng, 4) == 0];
				uint64_t first = rnd_page(m->npages);

				if (queue_pages(t, m->slot, first,
						rnd_len(m->npages - first < 300 ? m->npages - first : 300)))
					fail(t, "add refused");
			}
			submit_checked(t, rng_below(&case_rng, 4) == 0);
			subs++;
		}
		unit_ok(!t->bad, "sparse runs in a 4M-page slot, %s mode: %" PRIu64
			" submits match the model %s", module ? "module" : "fallback",
			subs, t->why);
		unit_case_delete(t);
	}
}
