// SPDX-License-Identifier: LGPL-2.1 OR MIT
/*
 * Random batches of all three kinds (pages, guest-physical ranges across
 * memslots, bitmaps at any bit offset), no vCPU: after every submit the
 * dirty log equals the model, and the submit's counts are exact.
 */
#include "kvm_tests.h"

/* Random batches, no vCPU: dirty log equals the model after each submit. */
bool test_random_clears(struct kt_case *c)
{
	struct dirtybatch_ctx *ctx = c->ctx;
	struct dirtybatch_result res = { .sz = sizeof(res) };
	uint64_t total_req = 0, total_ioctls = 0, total_ranges = 0;
	/* module: exact count of dirty bits cleared; else requested */
	bool counts_cleared = c->module && kt_batch_mode == DIRTYBATCH_MODE_MODULE;

	if (tvm_compare(&c->t, c->why, c->wl))
		return false;
	for (int r = 0; r < c->rounds; r++) {
		uint64_t req, dreq;
		int64_t got;
		int nadd = 1 + (int)rng_below(&kt_rng, r % 10 == 0 ? 60 : 8);

		for (int a = 0; a < nadd; a++)
			if (tvm_random_add(&c->t, &ctx, 1))
				return kt_fail(c, "add failed in round %d", r);
		tvm_req_counts(&c->t, &req, &dreq);
		if (dirtybatch_pending(ctx) != req)
			return kt_fail(c, "pending %" PRIu64 ", model %" PRIu64,
				       dirtybatch_pending(ctx), req);
		got = dirtybatch_submit(ctx, &res);
		if (got < 0)
			return kt_fail(c, "submit: %s (slot %#x page %" PRIu64 ")",
				       strerror((int)-got), res.error_slot, res.error_first_page);
		if ((uint64_t)got != (counts_cleared ? dreq : req) || res.pages_requested != req)
			return kt_fail(c, "round %d: submit returned %" PRId64 " (requested %" PRIu64
				       ", dirty %" PRIu64 ")", r, got, req, dreq);
		if (c->module && res.ioctls != (req ? 1u : 0u))
			return kt_fail(c, "module path used %" PRIu64 " ioctls", res.ioctls);
		total_req += req;
		total_ioctls += res.ioctls;
		total_ranges += res.ranges;
		tvm_apply_req(&c->t, 1);
		if (tvm_compare(&c->t, c->why, c->wl)) {
			char w2[200];

			snprintf(w2, sizeof(w2), "round %d: %s", r, c->why);
			return kt_fail(c, "%s", w2);
		}
	}
	tap_diag("%s: %d rounds, %" PRIu64 " pages requested, %" PRIu64 " ranges in %" PRIu64 " ioctls",
		 c->module ? "module" : "fallback", c->rounds, total_req, total_ranges,
		 total_ioctls);
	return true;
}
