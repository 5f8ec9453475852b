// SPDX-License-Identifier: LGPL-2.1 OR MIT
/*
 * Memslots that change under queued clears: one deleted in KVM behind the
 * library's back (the error path), one deleted and created again.
 */
#include "kvm_tests.h"

/* KVM rejects a range of a deleted memslot: error reported, rest queued. */
bool test_error_path(struct kt_case *c)
{
	struct dirtybatch_ctx *ctx = c->ctx;
	struct dirtybatch_result res = { .sz = sizeof(res) };
	int64_t got;

	/* queue in slot 1 (first), slot 6 (deleted in KVM only), slot 2 */
	if (dirtybatch_add_pages(ctx, 1, 0, 10) || dirtybatch_add_pages(ctx, 6, 64, 70) ||
	    dirtybatch_add_pages(ctx, 2, 100, 1))
		return kt_fail(c, "add failed");
	tvm_delete(&c->t, 6);
	got = dirtybatch_submit(ctx, &res);
	if (got != -ENOENT || res.error != -ENOENT || res.error_slot != 6 ||
	    res.error_first_page != 64)
		return kt_fail(c, "submit returned %" PRId64 ", error slot %#x page %" PRIu64,
			       got, res.error_slot, res.error_first_page);
	/* fallback applied slot 1 first; the module applies nothing */
	if (c->module ? (res.ranges || res.pages_pending != 81) :
			(res.ranges != 1 || res.pages_pending != 71))
		return kt_fail(c, "%" PRIu64 " ranges applied, %" PRIu64 " pending",
			       res.ranges, res.pages_pending);
	if (dirtybatch_slot_remove(ctx, 6) || dirtybatch_pending(ctx) != (c->module ? 11u : 1u))
		return kt_fail(c, "slot_remove: pending %" PRIu64, dirtybatch_pending(ctx));
	got = dirtybatch_submit(ctx, &res);
	if (got != (c->module ? 11 : 1))
		return kt_fail(c, "resubmit returned %" PRId64, got);
	/* model: slot 1 pages 0..9 and slot 2 page 100 clean, nothing else */
	for (int i = 0; i < c->t.n; i++) {
		if (c->t.s[i].slot == 1)
			memset(c->t.dirty[i], 0, 10);
		if (c->t.s[i].slot == 2)
			c->t.dirty[i][100] = 0;
	}
	return !tvm_compare(&c->t, c->why, c->wl);
}

/*
 * A memslot deleted and created again with the same geometry: what was
 * queued for the old one must not be cleared on the new one, whose pages
 * KVM_DIRTY_LOG_INITIALLY_SET reports all dirty and nobody fetched yet.
 */
bool test_recreated_memslot(struct kt_case *c)
{
	struct tvm *t = &c->t;
	struct dirtybatch_ctx *ctx = c->ctx;
	struct dirtybatch_memslot m;
	struct tslot old;
	int64_t got;
	int i;

	for (i = 0; i < t->n && t->s[i].slot != 6; i++)
		;
	old = t->s[i];
	if (dirtybatch_add_pages(ctx, 1, 0, 10) || dirtybatch_add_pages(ctx, 6, 0, 100))
		return kt_fail(c, "add failed");
	/* the VMM re-creates memslot 6 and tells the library */
	tvm_delete(t, 6);
	tvm_add(t, 6, old.gpa, old.npages);	/* all dirty: INITIALLY_SET, never fetched */
	i = t->n - 1;
	t->s[i].generation = old.generation + 1;
	m = (struct dirtybatch_memslot){ .sz = sizeof(m), .slot = 6, .guest_phys_addr = old.gpa,
		.npages = old.npages, .userspace_addr = (uint64_t)(uintptr_t)t->s[i].hva,
		.generation = t->s[i].generation };
	if (dirtybatch_slot_update(ctx, &m) || dirtybatch_pending(ctx) != 10)
		return kt_fail(c, "slot_update: pending %" PRIu64 ", want 10",
			       dirtybatch_pending(ctx));
	got = dirtybatch_submit(ctx, NULL);
	if (got != 10)
		return kt_fail(c, "submit returned %" PRId64, got);
	memset(t->dirty[0], 0, 10);	/* slot 1 pages 0..9 */
	return !tvm_compare(t, c->why, c->wl);
}
