// SPDX-License-Identifier: LGPL-2.1 OR MIT
/*
 * Memslot layout: validation, changes that keep or drop queued pages,
 * memslot identity and descriptor sizes, discarding one memslot.
 */
#include "fake_kernel.h"
#include "unit.h"

void test_layout_changes(void)
{
	struct dirtybatch_memslot d[] = {
		{ .sz = sizeof(struct dirtybatch_memslot), .slot = 1, .guest_phys_addr = 0, .npages = 100 },
		{ .sz = sizeof(struct dirtybatch_memslot), .slot = 2, .guest_phys_addr = 100 * 4096, .npages = 100 },
	};
	struct dirtybatch_memslot bad[] = {
		{ .sz = sizeof(struct dirtybatch_memslot), .slot = 1, .guest_phys_addr = 0, .npages = 100 },
		{ .sz = sizeof(struct dirtybatch_memslot), .slot = 3, .guest_phys_addr = 50 * 4096, .npages = 100 },
	};
	struct unit_case *t = unit_case_new(false, 0, 0, d, 2);
	struct dirtybatch_memslot u = { .sz = sizeof(u), .slot = 2, .guest_phys_addr = 100 * 4096, .npages = 200 };
	struct dirtybatch_stats st = { .sz = sizeof(st) };
	bool ok = true;

	dirtybatch_add_pages(t->ctx, 1, 0, 10);
	dirtybatch_add_pages(t->ctx, 2, 0, 20);
	ok &= dirtybatch_set_layout(t->ctx, bad, 2) == -EEXIST;
	ok &= dirtybatch_pending(t->ctx) == 30;
	ok &= dirtybatch_slot_update(t->ctx, &d[1]) == 0;	/* unchanged: kept */
	ok &= dirtybatch_pending(t->ctx) == 30;
	ok &= dirtybatch_slot_update(t->ctx, &u) == 0;		/* resized: dropped */
	ok &= dirtybatch_pending(t->ctx) == 10;
	ok &= dirtybatch_add_pages(t->ctx, 2, 150, 50) == 0;
	ok &= dirtybatch_slot_remove(t->ctx, 1) == 0;
	ok &= dirtybatch_pending(t->ctx) == 50;
	ok &= dirtybatch_slot_remove(t->ctx, 1) == -ENOENT;
	ok &= dirtybatch_add_pages(t->ctx, 1, 0, 1) == -ENOENT;
	dirtybatch_get_stats(t->ctx, &st);
	ok &= st.pages_discarded == 30;
	ok &= dirtybatch_discard(t->ctx) == 50 && dirtybatch_pending(t->ctx) == 0;
	unit_ok(ok, "layout changes keep unchanged slots' pages, drop the others");
	unit_case_delete(t);
}

void test_layout_errors(void)
{
	struct dirtybatch_ctx *ctx;
	struct dirtybatch_opts o = { .sz = sizeof(o), .flags = DIRTYBATCH_OPEN_FALLBACK,
				     .page_size = 4096 };
	struct dirtybatch_memslot d;
	bool ok = true;

	dirtybatch_open(FAKE_VM_FD, &o, &ctx);
	d = (struct dirtybatch_memslot){ .sz = sizeof(struct dirtybatch_memslot), .slot = 1, .guest_phys_addr = 4096, .npages = 0 };
	ok &= dirtybatch_slot_update(ctx, &d) == -EINVAL;
	d.npages = DIRTYBATCH_MAX_SLOT_PAGES + 1;
	ok &= dirtybatch_slot_update(ctx, &d) == -EINVAL;
	d.npages = 1;
	d.guest_phys_addr = 4095;
	ok &= dirtybatch_slot_update(ctx, &d) == -EINVAL;
	d.guest_phys_addr = UINT64_MAX & ~4095ULL;
	d.npages = 2;
	ok &= dirtybatch_slot_update(ctx, &d) == -EOVERFLOW;
	d.npages = 1;
	ok &= dirtybatch_slot_update(ctx, &d) == 0;	/* last page of the space */
	ok &= dirtybatch_add_gpa(ctx, 0, UINT64_MAX & ~4095ULL, 4096) == 0;
	ok &= dirtybatch_add_gpa(ctx, 0, UINT64_MAX & ~4095ULL, 8192) == -EOVERFLOW;
	d.flags = 1;
	ok &= dirtybatch_slot_update(ctx, &d) == -EINVAL;
	ok &= dirtybatch_set_layout(ctx, NULL, 1) == -EINVAL;
	ok &= dirtybatch_set_layout(ctx, NULL, 0) == 0 && dirtybatch_pending(ctx) == 0;
	ok &= dirtybatch_add_pages(ctx, 1, 0, 1) == -ENOENT;
	unit_ok(ok, "layout validation: -EINVAL, -EOVERFLOW, top of the address space");
	dirtybatch_close(ctx);
}

/*
 * A memslot deleted and created again with the same geometry is another
 * memslot: what was queued for the old one (bits fetched from it) must
 * not be cleared on the new one.
 */
void test_memslot_identity(void)
{
	struct dirtybatch_memslot d[] = {
		MS(.slot = 1, .guest_phys_addr = 0, .npages = 100, .userspace_addr = 0x7f0000000000),
		MS(.slot = 2, .guest_phys_addr = 100 * 4096, .npages = 100, .userspace_addr = 0x7f1000000000),
	};
	struct unit_case *t = unit_case_new(false, 0, 0, d, 2);
	struct dirtybatch_stats st = { .sz = sizeof(st) };
	struct dirtybatch_memslot u = d[0];
	bool ok = true;

	/* set_layout: same geometry, other backing */
	ok &= dirtybatch_add_pages(t->ctx, 1, 0, 10) == 0;
	ok &= dirtybatch_add_pages(t->ctx, 2, 0, 5) == 0;
	d[0].userspace_addr += 1 << 20;
	ok &= dirtybatch_set_layout(t->ctx, d, 2) == 0;
	ok &= dirtybatch_pending(t->ctx) == 5;
	/* slot_update: same geometry and backing, new generation */
	u = d[1];
	u.generation = 1;
	ok &= dirtybatch_slot_update(t->ctx, &u) == 0;
	ok &= dirtybatch_pending(t->ctx) == 0 && !dirtybatch_has_pending(t->ctx);
	/* the same memslot again: kept */
	ok &= dirtybatch_add_pages(t->ctx, 2, 0, 7) == 0;
	ok &= dirtybatch_slot_update(t->ctx, &u) == 0;
	ok &= dirtybatch_set_layout(t->ctx, (struct dirtybatch_memslot[]){ d[0], u }, 2) == 0;
	ok &= dirtybatch_pending(t->ctx) == 7;
	t->calls = 0;
	ok &= dirtybatch_submit(t->ctx, NULL) == 7 && t->calls == 1;
	dirtybatch_get_stats(t->ctx, &st);
	ok &= st.pages_discarded == 15;
	unit_ok(ok, "a memslot re-created with the same geometry (other userspace_addr "
		"or generation) drops what was queued for the old one");
	unit_case_delete(t);
}

/* struct dirtybatch_memslot: older, smaller and larger ones. */
void test_memslot_sizes(void)
{
	struct { struct dirtybatch_memslot m; uint64_t extra; } big = {
		.m = MS(.slot = 3, .guest_phys_addr = 1 << 30, .npages = 64) };
	struct dirtybatch_memslot m = MS(.slot = 3, .guest_phys_addr = 1 << 30, .npages = 64);
	struct dirtybatch_ctx *ctx;
	struct dirtybatch_opts o = { .sz = sizeof(o), .flags = DIRTYBATCH_OPEN_FALLBACK,
				     .page_size = 4096 };
	unsigned char old[2][offsetof(struct dirtybatch_memslot, userspace_addr)];
	bool ok = true;

	dirtybatch_open(FAKE_VM_FD, &o, &ctx);
	big.m.sz = sizeof(big);
	big.extra = 1;
	ok &= dirtybatch_slot_update(ctx, &big.m) == -E2BIG;
	big.extra = 0;
	ok &= dirtybatch_slot_update(ctx, &big.m) == 0;
	m.sz = offsetof(struct dirtybatch_memslot, npages);
	ok &= dirtybatch_slot_update(ctx, &m) == -EINVAL;
	m.sz = 0;
	ok &= dirtybatch_slot_update(ctx, &m) == -EINVAL;
	/* an older caller's array: elements sz bytes apart */
	for (int i = 0; i < 2; i++) {
		struct dirtybatch_memslot e = MS(.slot = 10 + (uint32_t)i,
			.guest_phys_addr = (uint64_t)i << 20, .npages = 8);

		e.sz = sizeof(old[i]);
		memcpy(old[i], &e, sizeof(old[i]));
	}
	ok &= dirtybatch_set_layout(ctx, (const void *)old, 2) == 0;
	ok &= dirtybatch_add_pages(ctx, 11, 7, 1) == 0 && dirtybatch_pending(ctx) == 1;
	/* elements must agree on their size */
	{
		struct dirtybatch_memslot two[2] = {
			MS(.slot = 1, .npages = 1), MS(.slot = 2, .guest_phys_addr = 4096, .npages = 1) };

		two[1].sz = 8;
		ok &= dirtybatch_set_layout(ctx, two, 2) == -EINVAL;
		ok &= dirtybatch_pending(ctx) == 1;
	}
	unit_ok(ok, "memslot sz: older accepted, larger with a zero tail, else -EINVAL/-E2BIG");
	dirtybatch_close(ctx);
}

void test_slot_discard_version(void)
{
	struct unit_case *t = unit_case_two_slots();
	struct dirtybatch_stats st = { .sz = sizeof(st) };
	bool ok = true;

	ok &= dirtybatch_version() == DIRTYBATCH_VERSION_CODE &&
	      dirtybatch_version() >> 16 == 1 && (dirtybatch_version() >> 8 & 0xff) >= 1;
	dirtybatch_add_pages(t->ctx, 1, 0, 10);
	dirtybatch_add_pages(t->ctx, 2, 500, 20);
	ok &= dirtybatch_slot_discard(t->ctx, 2) == 20;
	ok &= dirtybatch_slot_discard(t->ctx, 2) == 0;
	ok &= dirtybatch_slot_discard(t->ctx, 3) == -ENOENT;
	ok &= dirtybatch_slot_discard(NULL, 1) == -EINVAL;
	ok &= dirtybatch_pending(t->ctx) == 10;
	t->nrec = 0;
	ok &= dirtybatch_submit(t->ctx, NULL) == 10 && t->nrec == 1 && t->recs[0].slot == 1;
	dirtybatch_get_stats(t->ctx, &st);
	ok &= st.pages_discarded == 20;
	ok &= dirtybatch_slot_discard(t->ctx, 1) == 0 && !dirtybatch_has_pending(t->ctx);
	unit_ok(ok, "dirtybatch_version(), dirtybatch_slot_discard()");
	unit_case_delete(t);
}
