// SPDX-License-Identifier: LGPL-2.1 OR MIT
/*
 * The batch backend and the fallback on identical input leave identical
 * dirty state (guest build only: the host has no module).
 */
#include "kvm_tests.h"

#ifdef DB_KVM_GUEST

/*
 * Identical input through the module and the fallback: identical state.
 * c is the fallback's case, run inside the module's (c->outer); the
 * module's model stands for both.
 */
static bool same_dirty_state(struct kt_case *c)
{
	struct tvm *a = &c->outer->t, *b = &c->t;
	struct dirtybatch_ctx *ctx[2] = { c->outer->ctx, c->ctx };
	uint64_t bma[(8192 + 63) / 64], bmb[(8192 + 63) / 64];

	for (int r = 0; r < c->rounds; r++) {
		int64_t ga, gb;
		uint64_t req, dreq;

		for (int k = 1 + (int)rng_below(&kt_rng, 20); k > 0; k--)
			if (tvm_random_add(a, ctx, 2))
				return kt_fail(c, "add failed");
		tvm_req_counts(a, &req, &dreq);
		ga = dirtybatch_submit(ctx[0], NULL);
		gb = dirtybatch_submit(ctx[1], NULL);
		/* only the module counts what it cleared */
		if (ga != (int64_t)(kt_batch_mode == DIRTYBATCH_MODE_MODULE ? dreq : req) ||
		    gb != (int64_t)req)
			return kt_fail(c, "round %d: batch %" PRId64 " (dirty %" PRIu64
				       "), fallback %" PRId64 " (requested %" PRIu64 ")",
				       r, ga, dreq, gb, req);
		tvm_apply_req(a, 1);
		for (int i = 0; i < a->n; i++) {
			vm_get_dirty_log(a->vm, a->s[i].slot, bma);
			vm_get_dirty_log(b->vm, b->s[i].slot, bmb);
			if (memcmp(bma, bmb, (a->s[i].npages + 63) / 64 * 8))
				return kt_fail(c, "round %d: slot %#x differs", r, a->s[i].slot);
		}
		if (tvm_compare(a, c->why, c->wl))
			return false;
	}
	return true;
}

bool test_equivalence(struct kt_case *c)
{
	return kt_run_nested_case(c, false, same_dirty_state);
}

#endif
