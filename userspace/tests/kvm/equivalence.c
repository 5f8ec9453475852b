// SPDX-License-Identifier: LGPL-2.1 OR MIT
/*
 * The batch backend and the fallback on identical input leave identical
 * dirty state (guest build only: the host has no module).
 */
#include "kvm_tests.h"

#ifdef DB_KVM_GUEST

/* Identical input through the module and the fallback: identical state. */
bool test_equivalence(int rounds, char *why, size_t wl)
{
	struct tvm a, b;
	struct dirtybatch_ctx *ctx[2] = { NULL, NULL };
	uint64_t bma[(8192 + 63) / 64], bmb[(8192 + 63) / 64];
	bool ok = false;

	tvm_create(&a);
	tvm_create(&b);
	if (tvm_open_ctx(&a, true, &ctx[0], why, wl) || tvm_open_ctx(&b, false, &ctx[1], why, wl))
		goto out;
	for (int r = 0; r < rounds; r++) {
		int64_t ga, gb;
		uint64_t req, dreq;

		for (int k = 1 + (int)rng_below(&kt_rng, 20); k > 0; k--)
			if (tvm_random_add(&a, ctx, 2)) {
				snprintf(why, wl, "add failed");
				goto out;
			}
		tvm_req_counts(&a, &req, &dreq);
		ga = dirtybatch_submit(ctx[0], NULL);
		gb = dirtybatch_submit(ctx[1], NULL);
		/* only the module counts what it cleared */
		if (ga != (int64_t)(kt_batch_mode == DIRTYBATCH_MODE_MODULE ? dreq : req) ||
		    gb != (int64_t)req) {
			snprintf(why, wl, "round %d: batch %" PRId64 " (dirty %" PRIu64
				 "), fallback %" PRId64 " (requested %" PRIu64 ")",
				 r, ga, dreq, gb, req);
			goto out;
		}
		tvm_apply_req(&a, 1);
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
