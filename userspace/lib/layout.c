// SPDX-License-Identifier: LGPL-2.1 OR MIT
/*
 * libdirtybatch: the memslot table (set_layout, slot_update, slot_remove).
 *
 * Two sorted arrays of the same entries, by slot number and by
 * (address space, guest-physical base); both binary searched.  A
 * memslot's identity is its number, base, size, userspace_addr and the
 * caller's generation: an update that changes any of them replaces the
 * entry and drops what was queued for the old memslot, because those bits
 * were fetched from a memslot that no longer exists (with
 * KVM_DIRTY_LOG_INITIALLY_SET, clearing them on the new one would clear
 * bits nobody fetched).
 *
 * One slot_update or slot_remove costs a binary search, a memmove of the
 * pointer arrays (O(n)) and, for a new entry, its own buffers: it never
 * rebuilds the table.  set_layout does (O(n log n)).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "summary.h"

/* Smallest struct dirtybatch_memslot accepted: up to npages. */
#define DB_MEMSLOT_SZ_MIN	db_offsetofend(struct dirtybatch_memslot, npages)

/* ---------------------------------------------------------------------- */
/* Lookups.                                                               */

__attribute__((noinline)) struct db_slot *db_find_slot(struct dirtybatch_ctx *ctx,
						       uint32_t slot)
{
	uint32_t lo = 0, hi = ctx->nslots;

	if (ctx->last && ctx->last->slot == slot)
		return ctx->last;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		struct db_slot *s = ctx->by_id[mid];

		if (s->slot == slot) {
			ctx->last = s;
			return s;
		}
		if (s->slot < slot)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* First index of by_id whose slot number is >= @slot. */
static uint32_t id_lower_bound(const struct dirtybatch_ctx *ctx, uint32_t slot)
{
	uint32_t lo = 0, hi = ctx->nslots;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (ctx->by_id[mid]->slot < slot)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* (as_id, gpa) ordering key comparison: a < b ? */
static inline bool gpa_key_less(uint32_t as_a, uint64_t gpa_a,
				uint32_t as_b, uint64_t gpa_b)
{
	return as_a != as_b ? as_a < as_b : gpa_a < gpa_b;
}

/* First index of by_gpa whose key is >= (as_id, gpa). */
static uint32_t gpa_lower_bound(const struct dirtybatch_ctx *ctx, uint32_t as_id,
				uint64_t gpa)
{
	uint32_t lo = 0, hi = ctx->nslots;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		const struct db_slot *s = ctx->by_gpa[mid];

		if (gpa_key_less(DIRTYBATCH_SLOT_AS_ID(s->slot), s->gpa, as_id, gpa))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Index into by_gpa of the slot of @as_id containing @gpa, or -1. */
int64_t db_find_gpa(const struct dirtybatch_ctx *ctx, uint32_t as_id, uint64_t gpa)
{
	uint32_t lo = 0, hi = ctx->nslots;
	const struct db_slot *s;

	/* first slot whose key is > (as_id, gpa) */
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		s = ctx->by_gpa[mid];
		if (gpa_key_less(as_id, gpa, DIRTYBATCH_SLOT_AS_ID(s->slot), s->gpa))
			hi = mid;
		else
			lo = mid + 1;
	}
	if (!lo)
		return -1;
	s = ctx->by_gpa[lo - 1];
	if (DIRTYBATCH_SLOT_AS_ID(s->slot) != as_id || gpa > s->gpa_last)
		return -1;
	return lo - 1;
}

/* ---------------------------------------------------------------------- */
/* Entries and the range array.                                           */

/* Worst-case number of ranges a submit can need for @s. */
static uint64_t slot_worst_ranges(const struct dirtybatch_ctx *ctx,
				  const struct db_slot *s)
{
	/* alternating words give nwords/2 runs, plus limit splits */
	return (s->nwords + 1) / 2 + s->nwords / ctx->max_piece_words + 1;
}

/* The module's limits changed (it was detected): recount. */
void db_recount_worst(struct dirtybatch_ctx *ctx)
{
	ctx->worst_ranges = 0;
	for (uint32_t i = 0; i < ctx->nslots; i++) {
		struct db_slot *s = ctx->by_id[i];

		s->worst_ranges = slot_worst_ranges(ctx, s);
		ctx->worst_ranges += s->worst_ranges;
	}
}

/*
 * Room in the range array for a layout whose submits need at most @worst
 * ranges (capped by the batch backends' max_ranges); none without a batch
 * backend (native or the module).
 * With @exact the array gets that size, else it only grows, to twice its
 * size at least, so that adding memslots one by one stays linear.  On
 * failure nothing changes.
 */
int db_size_ranges(struct dirtybatch_ctx *ctx, uint64_t worst, bool exact)
{
	unsigned char *ranges = NULL;
	struct db_slot **owner = NULL;
	uint32_t max = db_batch_max_ranges(ctx);
	uint64_t want = 0;

	if (max && worst)
		want = min_u64(worst, max);
	if (want == ctx->range_cap || (!exact && want < ctx->range_cap))
		return 0;
	if (!exact && want)
		want = min_u64(max,
			       want > 2 * (uint64_t)ctx->range_cap ? want :
			       2 * (uint64_t)ctx->range_cap);
	if (want) {
		ranges = calloc(want, ctx->stride);
		owner = calloc(want, sizeof(*owner));
		if (!ranges || !owner) {
			free(ranges);
			free(owner);
			return -ENOMEM;
		}
	}
	free(ctx->ranges);
	free(ctx->range_slot);
	ctx->ranges = ranges;
	ctx->range_slot = owner;
	ctx->range_cap = (uint32_t)want;
	return 0;
}

void db_free_slot(struct db_slot *s)
{
	if (!s)
		return;
	free(s->bits);
	free(s->mark);
	free(s->mark2);
	free(s->mark3);
	free(s);
}

/*
 * The caller's memslot @p of @sz bytes into @d, zero-extended; 0, -EINVAL
 * (too small) or -E2BIG (a tail the library does not know is not zero).
 */
static int read_desc(const void *p, size_t sz, struct dirtybatch_memslot *d)
{
	int err = db_in_valid(p, sz, DB_MEMSLOT_SZ_MIN, sizeof(*d));

	if (err)
		return err;
	memset(d, 0, sizeof(*d));
	memcpy(d, p, sz < sizeof(*d) ? sz : sizeof(*d));
	d->sz = sizeof(*d);
	return 0;
}

static int check_desc(const struct dirtybatch_ctx *ctx,
		      const struct dirtybatch_memslot *d)
{
	uint64_t bytes;

	if (d->flags)
		return -EINVAL;
	if (!d->npages || d->npages > DIRTYBATCH_MAX_SLOT_PAGES)
		return -EINVAL;
	if (d->guest_phys_addr & (ctx->page_size - 1))
		return -EINVAL;
	bytes = d->npages << ctx->page_shift;	/* < 2^61 */
	if (d->guest_phys_addr > UINT64_MAX - (bytes - 1))
		return -EOVERFLOW;
	return 0;
}

static bool same_memslot(const struct db_slot *s, const struct dirtybatch_memslot *d)
{
	return s->slot == d->slot && s->gpa == d->guest_phys_addr &&
	       s->npages == d->npages && s->uaddr == d->userspace_addr &&
	       s->generation == d->generation;
}

static struct db_slot *alloc_slot(const struct dirtybatch_ctx *ctx,
				  const struct dirtybatch_memslot *d)
{
	struct db_slot *s = aligned_alloc(_Alignof(struct db_slot), sizeof(*s));

	if (!s)
		return NULL;
	memset(s, 0, sizeof(*s));
	s->slot = d->slot;
	s->gpa = d->guest_phys_addr;
	s->npages = d->npages;
	s->uaddr = d->userspace_addr;
	s->generation = d->generation;
	s->gpa_last = d->guest_phys_addr + ((d->npages << ctx->page_shift) - 1);
	s->nwords = (d->npages + 63) >> 6;
	s->ngrp = (s->nwords + 63) >> 6;
	s->nsup = (s->ngrp + 63) >> 6;
	s->bits = calloc(s->nwords, sizeof(uint64_t));
	/* whole groups, so that any64() and sum_word() stay inside */
	s->mark = calloc(s->ngrp, 64);
	s->mark2 = calloc(s->nsup, 64);
	s->mark3 = calloc((s->nsup + 7) & ~7ULL, 1);
	s->worst_ranges = slot_worst_ranges(ctx, s);
	slot_reset_window(s);
	if (!s->bits || !s->mark || !s->mark2 || !s->mark3) {
		db_free_slot(s);
		return NULL;
	}
	return s;
}

/* ---------------------------------------------------------------------- */
/* Whole layouts.                                                         */

static int cmp_desc_id(const void *a, const void *b)
{
	const struct dirtybatch_memslot *x = a, *y = b;

	return x->slot < y->slot ? -1 : x->slot > y->slot;
}

static int cmp_slot_gpa(const void *a, const void *b)
{
	const struct db_slot *x = *(struct db_slot *const *)a;
	const struct db_slot *y = *(struct db_slot *const *)b;
	uint32_t ax = DIRTYBATCH_SLOT_AS_ID(x->slot), ay = DIRTYBATCH_SLOT_AS_ID(y->slot);

	if (ax != ay)
		return ax < ay ? -1 : 1;
	return x->gpa < y->gpa ? -1 : x->gpa > y->gpa;
}

/*
 * Install @n memslots (any order), @stride bytes apart from @desc, as the
 * layout.  Entries that are the same memslot as before keep their queued
 * pages; the queued pages of the others are discarded.  All or nothing.
 */
static int install_layout(struct dirtybatch_ctx *ctx, const unsigned char *desc,
			  size_t stride, uint32_t n)
{
	struct dirtybatch_memslot *d = NULL;
	struct db_slot **by_id = NULL, **by_gpa = NULL, **dirty = NULL;
	bool *reused = NULL;
	uint64_t discarded = 0, worst = 0;
	uint32_t i, j;
	int err;

	err = -ENOMEM;
	if (n) {
		d = malloc(n * sizeof(*d));
		by_id = calloc(n, sizeof(*by_id));
		by_gpa = calloc(n, sizeof(*by_gpa));
		dirty = calloc(n, sizeof(*dirty));
		if (!d || !by_id || !by_gpa || !dirty)
			goto fail;
		for (i = 0; i < n; i++) {
			const void *p = desc + (size_t)i * stride;
			size_t sz;

			/* every element says the same size */
			memcpy(&sz, p, sizeof(sz));
			err = -EINVAL;
			if (sz != stride)
				goto fail;
			err = read_desc(p, stride, &d[i]);
			if (!err)
				err = check_desc(ctx, &d[i]);
			if (err)
				goto fail;
		}
		qsort(d, n, sizeof(*d), cmp_desc_id);
		for (i = 1; i < n; i++) {
			if (d[i].slot == d[i - 1].slot) {
				err = -EEXIST;
				goto fail;
			}
		}
	}
	err = -ENOMEM;
	if (ctx->nslots) {
		reused = calloc(ctx->nslots, sizeof(*reused));
		if (!reused)
			goto fail;
	}
	/* Reuse unchanged slots (both lists sorted by number), allocate new. */
	for (i = 0, j = 0; i < n; i++) {
		while (j < ctx->nslots && ctx->by_id[j]->slot < d[i].slot)
			j++;
		if (j < ctx->nslots && same_memslot(ctx->by_id[j], &d[i])) {
			by_id[i] = ctx->by_id[j];
			reused[j] = true;
		} else {
			by_id[i] = alloc_slot(ctx, &d[i]);
			if (!by_id[i])
				goto fail;
		}
		worst += by_id[i]->worst_ranges;
	}
	if (n) {
		memcpy(by_gpa, by_id, n * sizeof(*by_gpa));
		qsort(by_gpa, n, sizeof(*by_gpa), cmp_slot_gpa);
		for (i = 1; i < n; i++) {
			const struct db_slot *a = by_gpa[i - 1], *b = by_gpa[i];

			if (DIRTYBATCH_SLOT_AS_ID(a->slot) ==
			    DIRTYBATCH_SLOT_AS_ID(b->slot) && a->gpa_last >= b->gpa) {
				err = -EEXIST;
				goto fail;
			}
		}
	}
	err = db_size_ranges(ctx, worst, true);
	if (err)
		goto fail;

	/* Commit. */
	for (j = 0; j < ctx->nslots; j++) {
		if (!reused[j]) {
			discarded += slot_count(ctx->by_id[j]);
			db_free_slot(ctx->by_id[j]);
		}
	}
	ctx->stats.pages_discarded += discarded;
	free(ctx->by_id);
	free(ctx->by_gpa);
	free(ctx->dirty);
	ctx->by_id = by_id;
	ctx->by_gpa = by_gpa;
	ctx->dirty = dirty;
	ctx->nslots = n;
	ctx->slot_cap = n;
	ctx->worst_ranges = worst;
	ctx->last = NULL;
	ctx->ndirty = 0;
	for (i = 0; i < n; i++) {
		by_id[i]->listed = by_id[i]->wmin != NO_WORD;
		if (by_id[i]->listed)
			dirty[ctx->ndirty++] = by_id[i];
	}
	free(reused);
	free(d);
	return 0;

fail:
	if (by_id) {
		for (i = 0; i < n; i++) {
			bool old = false;

			if (!by_id[i])
				continue;
			for (j = 0; j < ctx->nslots && !old; j++)
				old = ctx->by_id[j] == by_id[i];
			if (!old)
				db_free_slot(by_id[i]);
		}
	}
	free(reused);
	free(by_id);
	free(by_gpa);
	free(dirty);
	free(d);
	return err;
}

DIRTYBATCH_API int dirtybatch_set_layout(struct dirtybatch_ctx *ctx,
					 const struct dirtybatch_memslot *slots,
					 unsigned int nr_slots)
{
	int saved_errno = errno;
	size_t stride = 0;
	int err;

	if (!ctx || (nr_slots && !slots))
		return -EINVAL;
	if (nr_slots > INT32_MAX / 2)
		return -E2BIG;
	if (nr_slots) {
		/* the caller's elements are slots->sz bytes apart */
		stride = slots->sz;
		if (stride < DB_MEMSLOT_SZ_MIN || stride > 4096 ||
		    stride % _Alignof(struct dirtybatch_memslot))
			return -EINVAL;
	}
	err = install_layout(ctx, (const unsigned char *)slots, stride, nr_slots);
	errno = saved_errno;
	return err;
}

/* ---------------------------------------------------------------------- */
/* One memslot at a time.                                                 */

/* Make room for one more entry in by_id, by_gpa and dirty. */
static int grow_table(struct dirtybatch_ctx *ctx)
{
	uint32_t cap = ctx->slot_cap ? 2 * ctx->slot_cap : 8;
	struct db_slot **p;

	if (ctx->nslots < ctx->slot_cap)
		return 0;
	p = realloc(ctx->by_id, cap * sizeof(*p));
	if (!p)
		return -ENOMEM;
	ctx->by_id = p;
	p = realloc(ctx->by_gpa, cap * sizeof(*p));
	if (!p)
		return -ENOMEM;
	ctx->by_gpa = p;
	p = realloc(ctx->dirty, cap * sizeof(*p));
	if (!p)
		return -ENOMEM;
	ctx->dirty = p;
	ctx->slot_cap = cap;
	return 0;
}

static void array_insert(struct db_slot **a, uint32_t n, uint32_t i, struct db_slot *s)
{
	memmove(&a[i + 1], &a[i], (n - i) * sizeof(*a));
	a[i] = s;
}

static void array_delete(struct db_slot **a, uint32_t n, uint32_t i)
{
	memmove(&a[i], &a[i + 1], (n - i - 1) * sizeof(*a));
}

/* Index of @s in by_gpa (its key is unique). */
static uint32_t gpa_index(const struct dirtybatch_ctx *ctx, const struct db_slot *s)
{
	return gpa_lower_bound(ctx, DIRTYBATCH_SLOT_AS_ID(s->slot), s->gpa);
}

/*
 * Would memslot @d overlap an entry other than @old?  by_gpa holds no
 * overlaps, so only the neighbours of @d's place can.
 */
static bool overlaps(const struct dirtybatch_ctx *ctx, const struct dirtybatch_memslot *d,
		     const struct db_slot *old)
{
	uint32_t as_id = DIRTYBATCH_SLOT_AS_ID(d->slot);
	uint64_t last = d->guest_phys_addr + ((d->npages << ctx->page_shift) - 1);
	uint32_t g = gpa_lower_bound(ctx, as_id, d->guest_phys_addr);
	uint32_t p = g, q = g;
	const struct db_slot *s;

	if (p && ctx->by_gpa[p - 1] == old)
		p--;
	if (p) {
		s = ctx->by_gpa[p - 1];
		if (DIRTYBATCH_SLOT_AS_ID(s->slot) == as_id && s->gpa_last >= d->guest_phys_addr)
			return true;
	}
	if (q < ctx->nslots && ctx->by_gpa[q] == old)
		q++;
	if (q < ctx->nslots) {
		s = ctx->by_gpa[q];
		if (DIRTYBATCH_SLOT_AS_ID(s->slot) == as_id && s->gpa <= last)
			return true;
	}
	return false;
}

/* Take @s out of the table (by_id index @i) and the dirty list. */
static uint64_t unlink_slot(struct dirtybatch_ctx *ctx, struct db_slot *s, uint32_t i)
{
	uint64_t n = slot_count(s);

	db_unlist(ctx, s);
	array_delete(ctx->by_id, ctx->nslots, i);
	array_delete(ctx->by_gpa, ctx->nslots, gpa_index(ctx, s));
	ctx->nslots--;
	ctx->worst_ranges -= s->worst_ranges;
	ctx->last = NULL;
	ctx->stats.pages_discarded += n;
	return n;
}

DIRTYBATCH_API int dirtybatch_slot_update(struct dirtybatch_ctx *ctx,
					  const struct dirtybatch_memslot *slot)
{
	int saved_errno = errno;
	struct dirtybatch_memslot d;
	struct db_slot *old = NULL, *s;
	uint64_t worst;
	uint32_t i;
	int err;

	if (!ctx || !slot)
		return -EINVAL;
	err = read_desc(slot, slot->sz, &d);
	if (!err)
		err = check_desc(ctx, &d);
	if (err)
		return err;
	i = id_lower_bound(ctx, d.slot);
	if (i < ctx->nslots && ctx->by_id[i]->slot == d.slot)
		old = ctx->by_id[i];
	if (old && same_memslot(old, &d))
		return 0;
	if (!old && ctx->nslots >= INT32_MAX / 2)
		return -E2BIG;
	if (overlaps(ctx, &d, old))
		return -EEXIST;

	err = -ENOMEM;
	s = alloc_slot(ctx, &d);
	if (!s)
		goto out;
	worst = ctx->worst_ranges - (old ? old->worst_ranges : 0) + s->worst_ranges;
	err = old ? 0 : grow_table(ctx);
	if (!err)
		err = db_size_ranges(ctx, worst, false);
	if (err) {
		db_free_slot(s);
		goto out;
	}

	/* Commit: nothing fails from here on. */
	if (old) {
		unlink_slot(ctx, old, i);
		db_free_slot(old);
	}
	array_insert(ctx->by_id, ctx->nslots, i, s);
	array_insert(ctx->by_gpa, ctx->nslots, gpa_index(ctx, s), s);
	ctx->nslots++;
	ctx->worst_ranges += s->worst_ranges;
out:
	errno = saved_errno;
	return err;
}

DIRTYBATCH_API int dirtybatch_slot_remove(struct dirtybatch_ctx *ctx,
					  uint32_t slot)
{
	struct db_slot *s;
	uint32_t i;

	if (!ctx)
		return -EINVAL;
	i = id_lower_bound(ctx, slot);
	if (i >= ctx->nslots || ctx->by_id[i]->slot != slot)
		return -ENOENT;
	s = ctx->by_id[i];
	unlink_slot(ctx, s, i);
	db_free_slot(s);
	return 0;
}
