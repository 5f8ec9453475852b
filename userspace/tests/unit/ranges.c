// SPDX-License-Identifier: LGPL-2.1 OR MIT
/*
 * How queued pages become ranges: word alignment, the tail rule, maximal
 * runs joined over gaps, merges, splits at slot boundaries and at the
 * module's limits, the empty batch.
 */
#include "fake_kernel.h"
#include "unit.h"

void test_tail_rule(void)
{
	struct dirtybatch_memslot d[] = {
		{ .sz = sizeof(struct dirtybatch_memslot), .slot = 1, .guest_phys_addr = 0, .npages = 100 },
		{ .sz = sizeof(struct dirtybatch_memslot), .slot = 2, .guest_phys_addr = 100 * 4096, .npages = 128 },
		{ .sz = sizeof(struct dirtybatch_memslot), .slot = 3, .guest_phys_addr = 0x100000000ULL, .npages = 200 },
	};
	struct unit_case *t = unit_case_new(false, 0, 0, d, 3);
	const struct sent_range e[] = {
		{ 1, 36, 64, 0 },	/* page 99: tail range to slot end */
		{ 2, 64, 64, 0 },	/* page 127 of 128: a full word */
		/* pages 0, 64..127 (words 0-1) and 199 (tail of word 3):
		 * one call across the zero word 2, to the slot end */
		{ 3, 200, 0, 0 },
	};

	queue_pages(t, 1, 99, 1);
	queue_pages(t, 2, 127, 1);
	queue_pages(t, 3, 0, 1);
	queue_gpa(t, 0, 0x100000000ULL + 64 * 4096, 64 * 4096);
	queue_pages(t, 3, 199, 1);
	submit_checked(t, false);
	unit_ok(!t->bad && sent_ranges_equal(t, e, 3),
		"tail rule, word alignment and maximal runs (fallback) %s", t->why);
	unit_case_delete(t);
}

void test_fallback_gap(void)
{
	const uint64_t g = DB_FALLBACK_GAP_WORDS;
	struct dirtybatch_memslot d[] = {
		{ .sz = sizeof(struct dirtybatch_memslot), .slot = 4, .guest_phys_addr = 0, .npages = 64 * (3 * g + 10) },
	};
	struct unit_case *t = unit_case_new(false, 0, 0, d, 1);
	struct dirtybatch_result res = { .sz = sizeof(res) };
	/* words 0 and g + 1 (g zero words apart): one call; word 2g + 3
	 * (g + 1 zero words after): a second one */
	const struct sent_range e[] = {
		{ 4, (uint32_t)(64 * (g + 2)), 0, 0 },
		{ 4, 64, 64 * (2 * g + 3), 0 },
	};

	queue_pages(t, 4, 5, 1);
	queue_pages(t, 4, 64 * (g + 1) + 63, 1);
	queue_pages(t, 4, 64 * (2 * g + 3), 1);
	t->calls = 0;
	t->nrec = 0;
	dirtybatch_submit(t->ctx, &res);
	qsort(t->recs, t->nrec, sizeof(*t->recs), range_cmp);
	unit_ok(!t->bad && res.ioctls == 2 && res.pages_requested == 3 && sent_ranges_equal(t, e, 2),
		"fallback joins runs %" PRIu64 " zero words apart, not %" PRIu64 " %s",
		g, g + 1, t->why);
	unit_case_delete(t);
}

void test_merge(void)
{
	struct dirtybatch_memslot d[] = {
		{ .sz = sizeof(struct dirtybatch_memslot), .slot = 5, .guest_phys_addr = 0x10000, .npages = 1000 },
	};
	struct unit_case *t = unit_case_new(false, 0, 0, d, 1);
	struct dirtybatch_result res = { .sz = sizeof(res) };
	int64_t r;

	queue_pages(t, 5, 0, 10);
	queue_pages(t, 5, 0, 10);
	queue_pages(t, 5, 5, 16);
	queue_gpa(t, 0, 0x10000 + 21 * 4096, 4096);
	r = dirtybatch_submit(t->ctx, &res);
	unit_ok(r == 22 && !t->bad && res.ioctls == 1 && res.ranges == 1 && t->nrec == 1 &&
		t->recs[0].first == 0 && t->recs[0].num == 64 &&
		res.pages_requested == 22 && !(res.flags & DIRTYBATCH_RESULT_CLEARED_EXACT),
		"duplicates and overlaps merge into one range, 22 pages");
	unit_case_delete(t);
}

void test_gpa_split(void)
{
	/* three adjacent slots, one in another address space at the same gpa */
	struct dirtybatch_memslot d[] = {
		{ .sz = sizeof(struct dirtybatch_memslot), .slot = 0, .guest_phys_addr = 0, .npages = 70 },
		{ .sz = sizeof(struct dirtybatch_memslot), .slot = 1, .guest_phys_addr = 70 * 4096, .npages = 10 },
		{ .sz = sizeof(struct dirtybatch_memslot), .slot = 2, .guest_phys_addr = 80 * 4096, .npages = 300 },
		{ .sz = sizeof(struct dirtybatch_memslot), .slot = DIRTYBATCH_SLOT(1, 0), .guest_phys_addr = 0, .npages = 500 },
	};
	struct unit_case *t = unit_case_new(true, 65536, 1 << 20, d, 4);
	const struct sent_range e[] = {
		{ 0, 6, 64, 0 },	/* pages 65..69 */
		{ 1, 10, 0, 0 },	/* all of it */
		{ 2, 64, 0, 0 },	/* pages 0..19 */
	};
	int r1, r2, r3;

	r1 = queue_gpa(t, 0, 65 * 4096, 35 * 4096);
	r2 = queue_gpa(t, 0, 0, 381 * 4096);	/* one past the end */
	r3 = queue_gpa(t, 2, 0, 4096);		/* no such space */
	dirtybatch_submit(t->ctx, NULL);
	qsort(t->recs, t->nrec, sizeof(*t->recs), range_cmp);
	unit_ok(!r1 && r2 == -ENOENT && r3 == -ENOENT && !t->bad && sent_ranges_equal(t, e, 3) &&
		t->nchunk == 1,
		"gpa range split at slot boundaries, one batched call %s", t->why);
	unit_case_delete(t);
}

void test_module_limits(void)
{
	struct dirtybatch_memslot d[] = {
		{ .sz = sizeof(struct dirtybatch_memslot), .slot = 9, .guest_phys_addr = 0, .npages = 64 * 20 + 7 },
	};
	struct unit_case *t = unit_case_new(true, 3, 24, d, 1);	/* 3 ranges, 3 words */
	struct dirtybatch_result res = { .sz = sizeof(res) };
	int64_t r;

	/* one run of 10 words + the tail word, then 4 single-word runs */
	queue_pages(t, 9, 0, 64 * 10);
	queue_pages(t, 9, 64 * 20, 7);
	for (int w = 12; w < 20; w += 2)
		queue_pages(t, 9, 64 * (uint64_t)w + 3, 1);
	r = dirtybatch_submit(t->ctx, &res);
	/*
	 * pieces: 3,3,3,1 words (the run: longer than a piece, so nothing
	 * joins it); words 12-14 and 16-18 (singles one zero word apart,
	 * joined up to the 3-word limit); 20 (tail) = 7 ranges.  Calls: the
	 * 24-byte limit takes one 3-word piece each, and 9 alone since 12-14
	 * does not fit beside it: 7.
	 */
	unit_ok(r == 640 + 7 + 4 && res.ranges == 7 && res.ioctls == 7 && !t->bad &&
		(res.flags & DIRTYBATCH_RESULT_CLEARED_EXACT),
		"module limits split only where needed, gaps joined within them "
		"(7 ranges, 7 calls) %s", t->why);
	unit_case_delete(t);
}

void test_empty_submit(void)
{
	struct dirtybatch_memslot d[] = { { .sz = sizeof(struct dirtybatch_memslot), .slot = 1, .npages = 10 } };
	struct unit_case *t = unit_case_new(true, 16, 4096, d, 1);
	struct dirtybatch_result res = { .sz = sizeof(res) };
	int64_t r = dirtybatch_submit(t->ctx, &res);

	unit_ok(r == 0 && res.ioctls == 0 && t->calls == 0,
		"empty batch: no ioctl, 0 pages");
	unit_case_delete(t);
}
