/* SPDX-License-Identifier: LGPL-2.1 OR MIT */
/*
 * libdirtybatch: a memslot's queue and its summary.  Internal.
 *
 *  - per memslot, a bitmap with one bit per page in 64-page words laid out
 *    exactly as KVM_CLEAR_DIRTY_LOG wants them (word w = pages 64w..64w+63,
 *    bit b = page 64w+b).  Bits past the end of the slot are never set.
 *    Ranges handed to the kernel point straight into it: no copy.
 *  - per memslot, a summary: byte w is 1 if and only if word w is non-zero,
 *    byte g of a second level if and only if group g (words 64g..64g+63)
 *    has a marked word, byte j of a third if and only if groups 64j..64j+63
 *    have a marked one; and a word window [wmin, wmax] that contains every
 *    non-zero word.  A submit visits only the words that matter: two pages
 *    at the two ends of a 2^31-page memslot cost it 8192 third-level bytes,
 *    not the 2^25 words between them.  Bytes, not bits, so that marking a
 *    word is three plain stores: a bit would need a read-modify-write of a
 *    word that the previous add also wrote, and the chain of such updates
 *    set the pace of small adds.  Submit reads a group's 64 bytes as one
 *    64-bit mask (sum_word()).
 *  - per context, the list of the memslots that have queued pages: it is
 *    empty if and only if nothing is queued (dirtybatch_has_pending()).
 *
 * Queueing only ORs bits in: it does not count pages, so that an add costs
 * a few instructions per word.  Counts are made where they are needed:
 * submit counts the pages it applies while zeroing their words, and
 * dirtybatch_pending() counts the queued words when asked.
 *
 * Everything here is static inline: the add paths (a few ns per call)
 * must not pay a call for any of it.
 */
#ifndef DB_SUMMARY_H
#define DB_SUMMARY_H

#include <string.h>

#include "ctx.h"

/*
 * The larger helpers: plain static, not inline, so that the compiler
 * decides as it would in one file; unused in some of the files that
 * include this header.
 */
#define DB_SUMMARY_FN	static __attribute__((unused))

/*
 * Population count.  Without -mpopcnt, __builtin_popcountll() is a libgcc
 * call per word; this inline SWAR version is several times faster there.
 */
static inline unsigned int pop64(uint64_t x)
{
#ifdef __POPCNT__
	return (unsigned int)__builtin_popcountll(x);
#else
	x = x - ((x >> 1) & 0x5555555555555555ULL);
	x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
	x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0fULL;
	return (unsigned int)((x * 0x0101010101010101ULL) >> 56);
#endif
}

/* Mask of bits lo..hi (inclusive) of a word, 0 <= lo <= hi <= 63. */
static inline uint64_t bits_mask(unsigned int lo, unsigned int hi)
{
	return (~0ULL << lo) & (~0ULL >> (63 - hi));
}

/*
 * @cnt (1..64) bits of @src starting at bit @sb, right-aligned.  Reads only
 * the words that hold those bits.
 */
static inline uint64_t get_bits(const uint64_t *src, uint64_t sb, unsigned int cnt)
{
	uint64_t i = sb >> 6;
	unsigned int sh = sb & 63;
	uint64_t v = src[i] >> sh;

	if (sh + cnt > 64)
		v |= src[i + 1] << (64 - sh);
	if (cnt < 64)
		v &= (1ULL << cnt) - 1;
	return v;
}

/* ---------------------------------------------------------------------- */
/* The summary.                                                           */

/*
 * Words [w0, w1] of @s hold queued pages now.  A slot off the dirty list
 * has nothing queued (wmin NO_WORD), so only a new lowest word can find
 * it unlisted.
 */
static inline void slot_mark(struct dirtybatch_ctx *ctx, struct db_slot *s,
			     uint64_t w0, uint64_t w1)
{
	if (w0 < s->wmin) {
		s->wmin = w0;
		if (!s->listed) {
			s->listed = true;
			ctx->dirty[ctx->ndirty++] = s;
		}
	}
	if (w1 > s->wmax)
		s->wmax = w1;
}

static inline void slot_reset_window(struct db_slot *s)
{
	s->wmin = NO_WORD;
	s->wmax = 0;
}

/* Word @w is non-zero: mark it in @m1, @m2, @m3 (a slot's three levels). */
static inline __attribute__((always_inline)) void
mark3(uint8_t *m1, uint8_t *m2, uint8_t *m3, uint64_t w)
{
	m1[w] = 1;
	m2[w >> 6] = 1;
	m3[w >> 12] = 1;
}

/* Word @w of @s is non-zero: mark it at every level. */
static inline void word_mark(struct db_slot *s, uint64_t w)
{
	mark3(s->mark, s->mark2, s->mark3, w);
}

/* Words [b, e) of @s are non-zero, e > b. */
DB_SUMMARY_FN void word_mark_range(struct db_slot *s, uint64_t b, uint64_t e)
{
	uint64_t gb = b >> 6, ge = (e - 1) >> 6;

	memset(s->mark + b, 1, e - b);
	memset(s->mark2 + gb, 1, ge - gb + 1);
	memset(s->mark3 + (gb >> 6), 1, (ge >> 6) - (gb >> 6) + 1);
}

static inline uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static inline uint64_t load64(const uint8_t *p)
{
	uint64_t x;

	memcpy(&x, p, sizeof(x));
	return x;
}

/* Is any of the 64 bytes at @p (8-byte aligned) non-zero? */
static inline bool any64(const uint8_t *p)
{
	return (load64(p) | load64(p + 8) | load64(p + 16) | load64(p + 24) |
		load64(p + 32) | load64(p + 40) | load64(p + 48) | load64(p + 56)) != 0;
}

/* Group @g of @s as a mask: bit k set <=> word 64g + k is non-zero. */
static inline uint64_t sum_word(const struct db_slot *s, uint64_t g)
{
	const uint8_t *p = s->mark + (g << 6);
	uint64_t r = 0;

	if (!s->mark2[g])
		return 0;
	/* eight 0/1 bytes to eight bits: the multiply gathers byte k's bit
	 * at bit 56 + k, with no carries */
	for (unsigned int k = 0; k < 8; k++)
		r |= ((load64(p + 8 * k) * 0x0102040810204080ULL) >> 56) << (8 * k);
	return r;
}

/* First index in [from, lim) whose byte in @a is non-zero, or @lim. */
DB_SUMMARY_FN uint64_t next_byte(const uint8_t *a, uint64_t from, uint64_t lim)
{
	while (from < lim && (from & 7)) {
		if (a[from])
			return from;
		from++;
	}
	for (; from < lim; from += 8) {
		uint64_t x = load64(a + from);

		if (x) {
			from += (uint64_t)__builtin_ctzll(x) >> 3;
			return from < lim ? from : lim;
		}
	}
	return lim;
}

/* Words [b, e) of @s are zero now, e > b: unmark them. */
DB_SUMMARY_FN void word_unmark_range(struct db_slot *s, uint64_t b, uint64_t e)
{
	uint64_t gb = b >> 6, ge = (e - 1) >> 6, jb = gb >> 6, je = ge >> 6;

	memset(s->mark + b, 0, e - b);
	/* groups strictly inside are empty now; the two ends may not be */
	if (ge > gb + 1)
		memset(s->mark2 + gb + 1, 0, ge - gb - 1);
	s->mark2[gb] = any64(s->mark + (gb << 6));
	s->mark2[ge] = any64(s->mark + (ge << 6));
	if (je > jb + 1)
		memset(s->mark3 + jb + 1, 0, je - jb - 1);
	s->mark3[jb] = any64(s->mark2 + (jb << 6));
	s->mark3[je] = any64(s->mark2 + (je << 6));
}

/*
 * First word of @s at or after @from, below @lim, that the summary marks,
 * or @lim.  Empty groups are skipped through the upper levels.
 */
DB_SUMMARY_FN uint64_t sum_next_set(const struct db_slot *s, uint64_t from, uint64_t lim)
{
	uint64_t g, x, glim = (lim + 63) >> 6, end, j;

	if (from >= lim)
		return lim;
	g = from >> 6;
	x = sum_word(s, g) & (~0ULL << (from & 63));
	if (!x) {
		/* the rest of this third-level group, then the next marked one */
		end = min_u64(((g >> 6) + 1) << 6, glim);
		g = next_byte(s->mark2, g + 1, end);
		if (g >= glim)
			return lim;
		if (g == end) {
			j = next_byte(s->mark3, end >> 6, (glim + 63) >> 6);
			if (j << 6 >= glim)
				return lim;
			g = next_byte(s->mark2, j << 6, min_u64((j + 1) << 6, glim));
			if (g >= glim)
				return lim;
		}
		x = sum_word(s, g);
	}
	from = (g << 6) + (uint64_t)__builtin_ctzll(x);
	return from < lim ? from : lim;
}

/* Pages queued in @s: the words of the marked groups of its window. */
DB_SUMMARY_FN uint64_t slot_count(const struct db_slot *s)
{
	uint64_t n = 0, lim, w, e;

	if (s->wmin == NO_WORD)
		return 0;
	lim = s->wmax + 1;
	for (w = s->wmin; (w = sum_next_set(s, w, lim)) < lim; w = e) {
		e = ((w >> 6) + 1) << 6;	/* the rest of its group */
		if (e > lim)
			e = lim;
		for (uint64_t i = w; i < e; i++)
			n += pop64(s->bits[i]);
	}
	return n;
}

/* Drop every queued page of @s; returns how many. */
DB_SUMMARY_FN uint64_t slot_discard(struct db_slot *s)
{
	uint64_t n = slot_count(s);

	if (s->wmin != NO_WORD && s->wmin <= s->wmax) {
		memset(&s->bits[s->wmin], 0,
		       (s->wmax - s->wmin + 1) * sizeof(uint64_t));
		word_unmark_range(s, s->wmin, s->wmax + 1);
	}
	slot_reset_window(s);
	return n;
}

#endif /* DB_SUMMARY_H */
