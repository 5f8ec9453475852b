// SPDX-License-Identifier: LGPL-2.1 OR MIT
/*
 * Allocations: none in steady state, and a memslot update costs the same
 * with 512 memslots as with 1 (only in the build linked with --wrap=malloc).
 */

#include "clock.h"
#include "fake_kernel.h"
#include "unit.h"

#ifdef DB_WRAP_MALLOC

void test_no_alloc(void)
{
	static uint64_t bm[64];
	struct dirtybatch_memslot d[] = {
		{ .sz = sizeof(struct dirtybatch_memslot), .slot = 1, .guest_phys_addr = 0, .npages = 4000 },
		{ .sz = sizeof(struct dirtybatch_memslot), .slot = 2, .guest_phys_addr = 4000 * 4096, .npages = 777 },
	};
	unsigned long before;
	bool ok = true;

	for (int mod = 0; mod < 2; mod++) {
		struct unit_case *t = unit_case_new(mod, mod ? 4 : 0, mod ? 64 : 0, d, 2);
		struct dirtybatch_result res = { .sz = sizeof(res) };

		for (int i = 0; i < 64; i++)
			bm[i] = rng_next(&case_rng);
		/* warm up the fake kernel's own buffers */
		queue_gpa(t, 0, 0, 4777 * 4096);
		dirtybatch_submit(t->ctx, &res);
		reset_round(t);
		before = allocs;
		for (int i = 0; i < 1000; i++) {
			queue_pages(t, 1, (uint64_t)i, 3);
			queue_gpa(t, 0, (3990 + (uint64_t)(i % 7)) * 4096, 20 * 4096);
			queue_bitmap(t, 2, (uint64_t)(i % 100), 600, bm, (uint64_t)i % 64);
			ok &= dirtybatch_submit(t->ctx, &res) >= 0 && !res.pages_pending;
			reset_round(t);
		}
		if (allocs != before)
			tap_diag("%s: %lu allocations", mod ? "module" : "fallback", allocs - before);
		ok &= allocs == before && !t->bad;
		unit_case_delete(t);
	}
	unit_ok(ok, "steady-state add and submit allocate nothing (fallback and module)");
}

/*
 * One memslot update with 512 memslots costs no more memory traffic than
 * with 1: no table rebuild.  Replacing updates of the same memslot
 * allocate the new entry's buffers only.
 */
static uint64_t update_bytes(struct dirtybatch_ctx *ctx, unsigned int n, uint64_t *ns)
{
	struct dirtybatch_memslot m;
	uint64_t before, t0;

	for (unsigned int i = 0; i < n; i++) {
		m = MS(.slot = i, .guest_phys_addr = (uint64_t)i << 30, .npages = 256);
		if (dirtybatch_slot_update(ctx, &m))
			return UINT64_MAX;
	}
	t0 = now_ns();
	before = alloc_bytes;
	for (unsigned int g = 1; g <= 8; g++) {
		for (unsigned int i = 0; i < n; i++) {
			m = MS(.slot = i, .guest_phys_addr = (uint64_t)i << 30, .npages = 256,
			       .generation = g);
			if (dirtybatch_slot_update(ctx, &m))
				return UINT64_MAX;
		}
	}
	*ns = (now_ns() - t0) / (8 * n);
	return (alloc_bytes - before) / (8 * n);
}

void test_layout_scaling(void)
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
	unit_ok(b1 != UINT64_MAX && b512 == b1,
		"a memslot update allocates as much with 512 memslots as with 1 (no rebuild)");
}

#endif
