// SPDX-License-Identifier: LGPL-2.1 OR MIT
/*
 * Submit results and errors: a failed submit's progress and what stays
 * queued, the sizes of info, result and stats, has_pending.
 */
#include "fake_kernel.h"
#include "unit.h"

void test_error_path(void)
{
	struct dirtybatch_memslot d[] = {
		{ .sz = sizeof(struct dirtybatch_memslot), .slot = 1, .guest_phys_addr = 0, .npages = 64 * 4 * DB_FALLBACK_GAP_WORDS },
		{ .sz = sizeof(struct dirtybatch_memslot), .slot = 2, .guest_phys_addr = 1ULL << 34, .npages = 1000 },
	};
	/* three pages in words too far apart to share a call */
	const uint64_t far = 64 * (DB_FALLBACK_GAP_WORDS + 2);
	struct unit_case *t = unit_case_new(false, 0, 0, d, 2);
	struct dirtybatch_result res = { .sz = sizeof(res) };
	int64_t r;
	bool ok1, ok2;

	queue_pages(t, 1, 0, 1);
	queue_pages(t, 1, far, 1);
	queue_pages(t, 1, 2 * far, 1);
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
	unit_ok(ok1 && ok2 && !t->bad, "failed fallback submit reports progress and keeps the rest queued");
	unit_case_delete(t);
}

/* info, result and stats are written up to the caller's sz, no further. */
void test_out_sizes(void)
{
	struct dirtybatch_memslot d[] = { MS(.slot = 1, .npages = 100) };
	struct unit_case *t = unit_case_new(false, 0, 0, d, 1);
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
	unit_ok(ok, "info, result, stats: written up to sz, unknown tail zeroed, sz 0 -EINVAL");
	unit_case_delete(t);
}

/* dirtybatch_has_pending() follows every way pages come and go. */
void test_has_pending(void)
{
	struct unit_case *t = unit_case_two_slots();
	uint64_t zero[2] = { 0, 0 };
	bool ok = true;

	ok &= !dirtybatch_has_pending(t->ctx) && !dirtybatch_has_pending(NULL);
	ok &= dirtybatch_add_bitmap(t->ctx, 1, 0, 100, zero, 0) == 0;
	ok &= !dirtybatch_has_pending(t->ctx);		/* no bit set */
	ok &= queue_pages(t, 1, 5, 1) == 0 && dirtybatch_has_pending(t->ctx);
	ok &= dirtybatch_submit(t->ctx, NULL) == 1 && !dirtybatch_has_pending(t->ctx);
	ok &= queue_pages(t, 2, 999, 1) == 0 && dirtybatch_has_pending(t->ctx);
	t->fail_at = t->calls;
	t->fail_err = -EFAULT;
	ok &= dirtybatch_submit(t->ctx, NULL) == -EFAULT && dirtybatch_has_pending(t->ctx);
	t->fail_at = -1;
	ok &= dirtybatch_discard(t->ctx) == 1 && !dirtybatch_has_pending(t->ctx);
	ok &= queue_pages(t, 2, 0, 1) == 0 && dirtybatch_slot_remove(t->ctx, 2) == 0 &&
	      !dirtybatch_has_pending(t->ctx);
	unit_ok(ok, "has_pending: after adds, empty adds, submits, failures, discards, removals");
	unit_case_delete(t);
}
