// SPDX-License-Identifier: LGPL-2.1 OR MIT
/*
 * libdirtybatch: queueing pages (dirtybatch_add_*), pending, discard.
 *
 * Every add is validated in full before it changes anything, so a failed
 * add leaves the batch as it was.  The calls QEMU makes by the million
 * (1..64 pages of the memslot of the previous call) take a short path
 * that is one inline function for add_pages and add_bitmap alike
 * (queue_words_short()).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "summary.h"

/*
 * The short add paths take page numbers and bit offsets up to
 * DB_FAST_LIMIT and non-NULL bitmaps below DB_FAST_PTR_LIMIT: then first +
 * npages cannot overflow and the caller's words (at most DB_FAST_LIMIT / 8
 * + 16 bytes from the bitmap's start) cannot wrap, so one comparison each
 * replaces the exact checks.  Anything else (on 64-bit never a real
 * caller's values) takes the exact path.
 */
#define DB_FAST_LIMIT		((uint64_t)(UINTPTR_MAX >> 4))
#define DB_FAST_PTR_LIMIT	(UINTPTR_MAX - (UINTPTR_MAX >> 4))

/*
 * OR @lo into word @w0 of @s and @hi into word @w1, which is w0 or w0 + 1
 * (@hi is 0 when w1 == w0).  The path of QEMU's smallest clear chunks and
 * of single pages: inline, small frame.  @full (a constant at every call)
 * says that every page of the run is queued (add_pages, add_gpa): then
 * @lo is not 0, @hi is not 0 if w1 != w0, and the tests for empty words
 * fold away.
 */
static inline __attribute__((always_inline)) void
queue_words_short(struct dirtybatch_ctx *ctx, struct db_slot *s, uint64_t w0,
		  uint64_t w1, uint64_t lo, uint64_t hi, bool full)
{
	uint64_t *bits;
	uint8_t *m1, *m2, *m3;

	if (full) {
		/* stores only, no load to wait for; few registers */
		s->bits[w0] |= lo;
		word_mark(s, w0);
		if (w1 != w0) {
			s->bits[w1] |= hi;
			word_mark(s, w1);
		}
		slot_mark(ctx, s, w0, w1);
		return;
	}
	/* the pointers first: a byte store may alias them */
	bits = s->bits;
	m1 = s->mark;
	m2 = s->mark2;
	m3 = s->mark3;
	if (lo) {
		bits[w0] |= lo;
		/* small adds are bound by stores: consecutive chunks share
		 * this word, which the previous one marked */
		if (!m1[w0])
			mark3(m1, m2, m3, w0);
	}
	if (hi) {
		bits[w1] |= hi;
		mark3(m1, m2, m3, w1);
	}
	/* the window may be wider than the non-zero words, never narrower */
	if (lo | hi)
		slot_mark(ctx, s, w0, w1);
}

/*
 * OR @v, @n (1..64) right-aligned bits, into pages [first, first + n) of
 * @s; @full: @v is all ones.
 */
static inline __attribute__((always_inline)) void
queue_bits_short(struct dirtybatch_ctx *ctx, struct db_slot *s, uint64_t first,
		 uint64_t n, uint64_t v, bool full)
{
	unsigned int sh = first & 63;
	uint64_t w0 = first >> 6, w1 = (first + n - 1) >> 6;

	/* v >> (64 - sh) without a branch, and 0 for sh == 0; it is 0 too
	 * when the bits fit in w0 */
	queue_words_short(ctx, s, w0, w1, v << sh, (v >> 1) >> (63 - sh), full);
}

/* queue_run() for n > 64: whole words between a head and a tail. */
static __attribute__((noinline)) void
queue_run_long(struct dirtybatch_ctx *ctx, struct db_slot *s, uint64_t first,
	       uint64_t n)
{
	uint64_t last = first + n - 1;
	uint64_t w0 = first >> 6, w1 = last >> 6, w;
	uint64_t *bits = s->bits;

	bits[w0] |= ~0ULL << (first & 63);
	for (w = w0 + 1; w < w1; w++)
		bits[w] = ~0ULL;
	bits[w1] |= ~0ULL >> (63 - (last & 63));
	word_mark_range(s, w0, w1 + 1);
	slot_mark(ctx, s, w0, w1);
}

/* Queue pages [first, first + n) of @s; the caller validated the range. */
static inline void queue_run(struct dirtybatch_ctx *ctx, struct db_slot *s,
			     uint64_t first, uint64_t n)
{
	if (n <= 64)
		queue_bits_short(ctx, s, first, n, ~0ULL >> (64 - n), true);
	else
		queue_run_long(ctx, s, first, n);
}

/* queue_bitmap() for n <= 64. */
static inline __attribute__((always_inline)) void
queue_bitmap_short(struct dirtybatch_ctx *ctx, struct db_slot *s, uint64_t first,
		   uint64_t n, const uint64_t *src, uint64_t off)
{
	if (!((off ^ first) & 63)) {
		/* the caller's words line up with the slot's, as QEMU's
		 * per-slot dirty_bmap does: masks, no shifts */
		const uint64_t *sp = src + (off >> 6);
		uint64_t last = first + n - 1, w0 = first >> 6, w1 = last >> 6;
		uint64_t lm = ~0ULL << (first & 63), hm = ~0ULL >> (63 - (last & 63));

		if (w0 == w1)
			queue_words_short(ctx, s, w0, w1, sp[0] & lm & hm, 0, false);
		else
			queue_words_short(ctx, s, w0, w1, sp[0] & lm, sp[1] & hm, false);
		return;
	}
	queue_bits_short(ctx, s, first, n, get_bits(src, off, (unsigned int)n), false);
}

/*
 * Queue page first + i of @s for every i < n whose bit off + i of @src is
 * set, n > 64 (queue_bitmap_short() takes the others), so the pages span
 * two words or more.  The caller validated the ranges.
 */
static __attribute__((noinline)) void
queue_bitmap(struct dirtybatch_ctx *ctx, struct db_slot *s, uint64_t first,
	     uint64_t n, const uint64_t *src, uint64_t off)
{
	uint64_t last = first + n - 1;
	uint64_t w0 = first >> 6, w1 = last >> 6, w, m;
	uint64_t lo_w = NO_WORD, hi_w = 0;
	uint64_t *bits = s->bits;
	uint8_t *mark = s->mark;
	/* source bit of page p is p + delta (mod 2^64) */
	uint64_t delta = off - first, sb;
	const uint64_t *sp;
	unsigned int sh;

#define DB_OR_WORD(w, m) do {						\
		if (m) {						\
			bits[w] |= (m);					\
			mark[w] = 1;					\
			if (lo_w == NO_WORD)				\
				lo_w = (w);				\
			hi_w = (w);					\
		}							\
	} while (0)

	/* head: pages first .. 64 * w0 + 63 */
	m = get_bits(src, first + delta, 64 - (unsigned int)(first & 63));
	m <<= first & 63;
	DB_OR_WORD(w0, m);

	/* body: whole words, source bits fully inside the caller's */
	sb = ((w0 + 1) << 6) + delta;
	sh = sb & 63;
	sp = src + (sb >> 6);
	if (sh == 0) {
		for (w = w0 + 1; w < w1; w++) {
			m = *sp++;
			DB_OR_WORD(w, m);
		}
	} else {
		uint64_t cur = *sp;

		for (w = w0 + 1; w < w1; w++) {
			uint64_t nxt = *++sp;

			m = (cur >> sh) | (nxt << (64 - sh));
			cur = nxt;
			DB_OR_WORD(w, m);
		}
	}

	/* tail: pages 64 * w1 .. last */
	m = get_bits(src, (w1 << 6) + delta, (unsigned int)(last & 63) + 1);
	DB_OR_WORD(w1, m);
#undef DB_OR_WORD
	if (lo_w != NO_WORD) {
		/* the upper levels of the groups the marks went to */
		for (w = lo_w >> 6; w <= hi_w >> 6; w++)
			s->mark2[w] |= any64(mark + (w << 6));
		for (w = lo_w >> 12; w <= hi_w >> 12; w++)
			s->mark3[w] |= any64(s->mark2 + (w << 6));
		slot_mark(ctx, s, lo_w, hi_w);
	}
}

/*
 * The memslot a checked add goes to, once its arguments passed: -ENOENT
 * if the context has no memslot @slot, -ERANGE if the pages end past it.
 */
static int checked_slot(struct dirtybatch_ctx *ctx, uint32_t slot, uint64_t first_page,
			uint64_t npages, struct db_slot **sp)
{
	struct db_slot *s = db_lookup_slot(ctx, slot);

	if (!s)
		return -ENOENT;
	if (first_page + npages > s->npages)
		return -ERANGE;
	*sp = s;
	return 0;
}

/* dirtybatch_add_pages() with every check, errors included. */
static __attribute__((noinline)) int add_pages_checked(struct dirtybatch_ctx *ctx,
							uint32_t slot, uint64_t first_page,
							uint64_t npages)
{
	struct db_slot *s;
	int err;

	if (!ctx)
		return -EINVAL;
	if (!npages)
		return -ENODATA;
	if (first_page > UINT64_MAX - npages)
		return -EOVERFLOW;
	err = checked_slot(ctx, slot, first_page, npages, &s);
	if (!err)
		queue_run(ctx, s, first_page, npages);
	return err;
}

DIRTYBATCH_API int dirtybatch_add_pages(struct dirtybatch_ctx *ctx,
					uint32_t slot, uint64_t first_page,
					uint64_t npages)
{
	struct db_slot *s = ctx ? ctx->last : NULL;

	/* 1..64 pages of the previous call's slot, inside it: the short way */
	if (s && s->slot == slot && npages - 1 < 64 &&
	    first_page <= DB_FAST_LIMIT && first_page + npages <= s->npages) {
		queue_bits_short(ctx, s, first_page, npages, ~0ULL >> (64 - npages), true);
		return 0;
	}
	return add_pages_checked(ctx, slot, first_page, npages);
}

/* dirtybatch_add_bitmap() with every check, errors included. */
static __attribute__((noinline)) int add_bitmap_checked(struct dirtybatch_ctx *ctx,
							 uint32_t slot, uint64_t first_page,
							 uint64_t npages,
							 const uint64_t *bitmap,
							 uint64_t bit_offset)
{
	struct db_slot *s;
	int err;

	if (!ctx || !bitmap)
		return -EINVAL;
	if (!npages)
		return -ENODATA;
	if (first_page > UINT64_MAX - npages || bit_offset > UINT64_MAX - npages)
		return -EOVERFLOW;
	/* the caller's bitmap must not wrap around the address space */
	if ((bit_offset + npages - 1) / 64 >
	    (UINTPTR_MAX - (uintptr_t)bitmap) / sizeof(uint64_t))
		return -EOVERFLOW;
	err = checked_slot(ctx, slot, first_page, npages, &s);
	if (err)
		return err;
	if (npages <= 64)
		queue_bitmap_short(ctx, s, first_page, npages, bitmap, bit_offset);
	else
		queue_bitmap(ctx, s, first_page, npages, bitmap, bit_offset);
	return 0;
}

DIRTYBATCH_API int dirtybatch_add_bitmap(struct dirtybatch_ctx *ctx,
					 uint32_t slot, uint64_t first_page,
					 uint64_t npages,
					 const uint64_t *bitmap,
					 uint64_t bit_offset)
{
	struct db_slot *s;

	/*
	 * QEMU clears in chunks as small as 64 pages, one call each: a chunk
	 * of the previous call's slot that passes every check the short way
	 * (1..64 pages, inside the slot, the caller's bits neither overflowing
	 * nor wrapping) is queued here, without the full checks' frame.
	 */
	s = ctx ? ctx->last : NULL;
	if (s && s->slot == slot && npages - 1 < 64 &&
	    (first_page | bit_offset) <= DB_FAST_LIMIT &&
	    (uintptr_t)bitmap - 1 < (uintptr_t)DB_FAST_PTR_LIMIT &&
	    first_page + npages <= s->npages) {
		queue_bitmap_short(ctx, s, first_page, npages, bitmap, bit_offset);
		return 0;
	}
	return add_bitmap_checked(ctx, slot, first_page, npages, bitmap, bit_offset);
}

DIRTYBATCH_API int dirtybatch_add_gpa(struct dirtybatch_ctx *ctx,
				      uint32_t as_id, uint64_t gpa,
				      uint64_t len)
{
	uint64_t last, cur;
	int64_t i0, i;

	if (!ctx)
		return -EINVAL;
	if (!len)
		return -ENODATA;
	if ((gpa | len) & (ctx->page_size - 1))
		return -EINVAL;
	if (gpa > UINT64_MAX - (len - 1))
		return -EOVERFLOW;
	last = gpa + (len - 1);

	/* Validate: every byte must be in a known slot of this address space. */
	i0 = db_find_gpa(ctx, as_id, gpa);
	if (i0 < 0)
		return -ENOENT;
	for (i = i0; ctx->by_gpa[i]->gpa_last < last; i++) {
		const struct db_slot *s = ctx->by_gpa[i], *n;

		if ((uint32_t)i + 1 >= ctx->nslots)
			return -ENOENT;
		n = ctx->by_gpa[i + 1];
		if (DIRTYBATCH_SLOT_AS_ID(n->slot) != as_id ||
		    n->gpa != s->gpa_last + 1)
			return -ENOENT;
	}

	/* Apply, slot by slot. */
	cur = gpa;
	for (int64_t j = i0; j <= i; j++) {
		struct db_slot *s = ctx->by_gpa[j];
		uint64_t end = last < s->gpa_last ? last : s->gpa_last;
		uint64_t first = (cur - s->gpa) >> ctx->page_shift;
		uint64_t n = ((end - cur) >> ctx->page_shift) + 1;

		queue_run(ctx, s, first, n);
		cur = end + 1;
	}
	return 0;
}

DIRTYBATCH_API uint64_t dirtybatch_pending(const struct dirtybatch_ctx *ctx)
{
	return ctx ? db_ctx_count(ctx) : 0;
}

DIRTYBATCH_API bool dirtybatch_has_pending(const struct dirtybatch_ctx *ctx)
{
	/* a slot is listed from its first queued page until it is empty */
	return ctx && ctx->ndirty;
}

DIRTYBATCH_API uint64_t dirtybatch_discard(struct dirtybatch_ctx *ctx)
{
	uint64_t n = 0;
	uint32_t i;

	if (!ctx)
		return 0;
	for (i = 0; i < ctx->ndirty; i++)
		n += slot_discard(ctx->dirty[i]);
	db_compact_dirty(ctx);
	ctx->stats.pages_discarded += n;
	return n;
}

DIRTYBATCH_API int64_t dirtybatch_slot_discard(struct dirtybatch_ctx *ctx,
					       uint32_t slot)
{
	struct db_slot *s = ctx ? db_find_slot(ctx, slot) : NULL;
	uint64_t n;

	if (!s)
		return ctx ? -ENOENT : -EINVAL;
	n = slot_discard(s);
	db_unlist(ctx, s);
	ctx->stats.pages_discarded += n;
	return (int64_t)n;
}

/* Drop slots with nothing queued from the dirty list. */
void db_compact_dirty(struct dirtybatch_ctx *ctx)
{
	uint32_t i, j = 0;

	for (i = 0; i < ctx->ndirty; i++) {
		struct db_slot *s = ctx->dirty[i];

		if (s->wmin != NO_WORD && s->wmin <= s->wmax &&
		    sum_next_set(s, s->wmin, s->wmax + 1) <= s->wmax) {
			ctx->dirty[j++] = s;
		} else {
			slot_reset_window(s);
			s->listed = false;
		}
	}
	ctx->ndirty = j;
}

/* Everything applied: every listed slot is empty now. */
void db_reset_dirty(struct dirtybatch_ctx *ctx)
{
	for (uint32_t i = 0; i < ctx->ndirty; i++) {
		slot_reset_window(ctx->dirty[i]);
		ctx->dirty[i]->listed = false;
	}
	ctx->ndirty = 0;
}

uint64_t db_ctx_count(const struct dirtybatch_ctx *ctx)
{
	uint64_t n = 0;

	for (uint32_t i = 0; i < ctx->ndirty; i++)
		n += slot_count(ctx->dirty[i]);
	return n;
}

/* Take @s off the dirty list (it has nothing queued, or is going away). */
void db_unlist(struct dirtybatch_ctx *ctx, struct db_slot *s)
{
	uint32_t i;

	if (!s->listed)
		return;
	for (i = 0; i < ctx->ndirty && ctx->dirty[i] != s; i++)
		;
	if (i < ctx->ndirty)
		memmove(&ctx->dirty[i], &ctx->dirty[i + 1],
			(ctx->ndirty - i - 1) * sizeof(*ctx->dirty));
	ctx->ndirty--;
	s->listed = false;
	slot_reset_window(s);
}
