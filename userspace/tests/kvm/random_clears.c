// SPDX-License-Identifier: LGPL-2.1 OR MIT
/*
 * Random batches of all three kinds (pages, guest-physical ranges across
 * memslots, bitmaps at any bit offset), no vCPU: after every submit the
 * dirty log equals the model, and the submit's counts are exact.
 */
#include "kvm_tests.h"

/* Random batches, no vCPU: dirty log equals the model after each submit. */
bool test_random_clears(bool module, int rounds, char *why, size_t wl)
{
	struct tvm t;
	struct dirtybatch_ctx *ctx;
	struct dirtybatch_result res = { .sz = sizeof(res) };
	uint64_t total_req = 0, total_ioctls = 0, total_ranges = 0;
	bool ok = false;

	tvm_create(&t);
	if (tvm_open_ctx(&t, module, &ctx, why, wl))
		goto out_vm;
	if (tvm_compare(&t, why, wl))
		goto out;
	for (int r = 0; r < rounds; r++) {
		uint64_t req, dreq;
		int64_t got;
		int nadd = 1 + (int)rng_below(&kt_rng, r % 10 == 0 ? 60 : 8);

		for (int a = 0; a < nadd; a++)
			if (tvm_random_add(&t, &ctx, 1)) {
				snprintf(why, wl, "add failed in round %d", r);
				goto out;
			}
		tvm_req_counts(&t, &req, &dreq);
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
		if ((uint64_t)got != (module && kt_batch_mode == DIRTYBATCH_MODE_MODULE ? dreq : req) ||
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
		tvm_apply_req(&t, 1);
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
