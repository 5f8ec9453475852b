// SPDX-License-Identifier: LGPL-2.1 OR MIT
/*
 * libdirtybatch: batched clearing of a KVM VM's dirty log.
 *
 * Data structures (all sized when the memslot layout is set, so that
 * queueing and submitting allocate nothing):
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
 *  - a list of the memslots that have queued pages.
 *
 * Queueing only ORs bits in: it does not count pages, so that an add costs
 * a few instructions per word.  Counts are made where they are needed:
 * submit counts the pages it applies while zeroing their words, and
 * dirtybatch_pending() counts the queued words when asked.
 *  - the range array of KVM_DIRTYBATCH_CLEAR, preallocated for the worst
 *    case of the layout (capped by the module's max_ranges).
 *
 * A submit turns each maximal run of non-zero words into one range: first
 * page 64 * first word, length 64 * words, or up to the slot end if the run
 * reaches the last word (KVM's tail rule), except that runs a few zero
 * words apart share one range (DB_MODULE_GAP_WORDS, DB_FALLBACK_GAP_WORDS;
 * see next_run()).  The words are zeroed only after the kernel accepted
 * the range, so on error the batch keeps exactly what was not applied.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "dirtybatch_internal.h"

#define DB_DEVICE_PATH	"/dev/" KVM_DIRTYBATCH_DEVICE_NAME
#define NO_WORD		UINT64_MAX

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

struct db_slot {
	uint32_t slot;		/* as_id << 16 | id */
	bool listed;		/* on ctx->dirty[] */
	uint64_t gpa;		/* first byte */
	uint64_t gpa_last;	/* last byte (inclusive, so the top of the
				 * address space is representable) */
	uint64_t npages;
	uint64_t nwords;	/* DIV_ROUND_UP(npages, 64) */
	uint64_t ngrp;		/* DIV_ROUND_UP(nwords, 64): groups of words */
	uint64_t nsup;		/* DIV_ROUND_UP(ngrp, 64): groups of groups */
	uint64_t *bits;		/* nwords */
	uint8_t *mark;		/* 64 * ngrp: mark[w] <=> bits[w] != 0 */
	uint8_t *mark2;		/* 64 * nsup: mark2[g] <=> a mark in group g */
	uint8_t *mark3;		/* nsup rounded up to 8: mark3[j] <=> a mark2
				 * in [64j, 64j + 64) */
	uint64_t wmin, wmax;	/* non-zero words lie in [wmin, wmax]; wmin
				 * is NO_WORD (and wmax 0) when the slot has
				 * nothing queued */
	uint64_t touched;	/* submit generation that applied a range */
};

struct dirtybatch_ctx {
	int vm_fd;
	int dev_fd;		/* /dev/kvm_dirtybatch, -1 if not open */
	uint32_t page_size;
	unsigned int page_shift;
	int mode;
	uint64_t fallback_gap;		/* DB_FALLBACK_GAP_WORDS; tests vary it */
	uint64_t module_gap;		/* DB_MODULE_GAP_WORDS; tests vary it */
	bool force_fallback;
	bool module_ok;		/* module usable */
	int32_t detect_err;	/* why not, if !module_ok */
	struct kvm_dirtybatch_info minfo;
	char *device_path;

	/* Layout. */
	struct db_slot **by_id;		/* sorted by slot number */
	struct db_slot **by_gpa;	/* sorted by (as_id, gpa) */
	uint32_t nslots;
	struct db_slot *last;		/* lookup cache */
	struct db_slot **dirty;		/* slots that may have queued pages */
	uint32_t ndirty;

	/* Module submit buffers. */
	unsigned char *ranges;		/* range_cap entries, stride bytes apart */
	struct db_slot **range_slot;	/* owner of each entry */
	uint32_t range_cap;
	uint32_t stride;
	uint64_t max_piece_words;	/* longest range, in words */
	uint64_t max_bytes;		/* bitmap bytes per call */

	uint64_t gen;			/* submit generation */
	struct dirtybatch_stats stats;

	const struct dirtybatch_backend *be;
	void *be_priv;
};

/* ---------------------------------------------------------------------- */
/* Backend: the real ioctls.                                              */

static int sys_clear_log(void *priv, int vm_fd, struct kvm_clear_dirty_log *log)
{
	(void)priv;
	for (;;) {
		if (ioctl(vm_fd, KVM_CLEAR_DIRTY_LOG, log) == 0)
			return 0;
		if (errno != EINTR)
			return -errno;
	}
}

static int sys_batch_clear(void *priv, int dev_fd, struct kvm_dirtybatch_clear *c)
{
	(void)priv;
	for (;;) {
		if (ioctl(dev_fd, KVM_DIRTYBATCH_CLEAR, c) == 0)
			return 0;
		/* The module applies nothing on error: retrying is safe. */
		if (errno != EINTR)
			return -errno;
	}
}

static const struct dirtybatch_backend sys_backend = {
	.clear_log = sys_clear_log,
	.batch_clear = sys_batch_clear,
};

/* ---------------------------------------------------------------------- */
/* Bit helpers (word at a time).                                          */

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
/* Queue bookkeeping.                                                     */

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
static void word_mark_range(struct db_slot *s, uint64_t b, uint64_t e)
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
static uint64_t next_byte(const uint8_t *a, uint64_t from, uint64_t lim)
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
static void word_unmark_range(struct db_slot *s, uint64_t b, uint64_t e)
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
static uint64_t sum_next_set(const struct db_slot *s, uint64_t from, uint64_t lim)
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

/*
 * OR @lo into word @w0 of @s and @hi into word @w1, which is w0 or w0 + 1
 * (@hi is 0 when w1 == w0).  The path of QEMU's smallest clear chunks and
 * of single pages: inline, small frame.
 */
static inline __attribute__((always_inline)) void
queue_words_short(struct dirtybatch_ctx *ctx, struct db_slot *s, uint64_t w0,
		  uint64_t w1, uint64_t lo, uint64_t hi)
{
	/* the pointers first: a byte store may alias them */
	uint64_t *bits = s->bits;
	uint8_t *m1 = s->mark, *m2 = s->mark2, *m3 = s->mark3;

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

/* OR @v, @n (1..64) right-aligned bits, into pages [first, first + n) of @s. */
static inline __attribute__((always_inline)) void
queue_bits_short(struct dirtybatch_ctx *ctx, struct db_slot *s, uint64_t first,
		 uint64_t n, uint64_t v)
{
	unsigned int sh = first & 63;
	uint64_t w0 = first >> 6, w1 = (first + n - 1) >> 6;

	queue_words_short(ctx, s, w0, w1, v << sh, w1 != w0 ? v >> (64 - sh) : 0);
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
		queue_bits_short(ctx, s, first, n, ~0ULL >> (64 - n));
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
			queue_words_short(ctx, s, w0, w1, sp[0] & lm & hm, 0);
		else
			queue_words_short(ctx, s, w0, w1, sp[0] & lm, sp[1] & hm);
		return;
	}
	queue_bits_short(ctx, s, first, n, get_bits(src, off, (unsigned int)n));
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
 * Zero words [ws, we) of @s after the kernel applied them; returns the
 * pages they held.  Ranges are applied in ascending order per slot, so
 * nothing is left queued below @we.  The count is most of a submit's own
 * work: with @hw it uses the POPCNT instruction (see unqueue_words()).
 */
static inline __attribute__((always_inline)) uint64_t
unqueue_words_body(struct db_slot *s, uint64_t ws, uint64_t we, bool hw)
{
	uint64_t cnt = 0, w;
	uint64_t *bits = s->bits;

	/* no test for zero words: short runs make it a coin toss */
	for (w = ws; w < we; w++)
		cnt += hw ? (unsigned int)__builtin_popcountll(bits[w]) : pop64(bits[w]);
	memset(bits + ws, 0, (we - ws) * sizeof(*bits));
	word_unmark_range(s, ws, we);
	if (ws <= s->wmin)
		s->wmin = we;
	return cnt;
}

#if defined(__x86_64__) && !defined(__POPCNT__)
/* Set by every dirtybatch_open(), to the same value: relaxed atomics, so
 * that contexts opened in parallel threads do not race. */
static bool have_popcnt;

static __attribute__((target("popcnt"))) uint64_t
unqueue_words_popcnt(struct db_slot *s, uint64_t ws, uint64_t we)
{
	return unqueue_words_body(s, ws, we, true);
}

static void detect_cpu(void)
{
	__builtin_cpu_init();
	__atomic_store_n(&have_popcnt, !!__builtin_cpu_supports("popcnt"), __ATOMIC_RELAXED);
}

static uint64_t unqueue_words(struct db_slot *s, uint64_t ws, uint64_t we)
{
	if (__atomic_load_n(&have_popcnt, __ATOMIC_RELAXED))
		return unqueue_words_popcnt(s, ws, we);
	return unqueue_words_body(s, ws, we, false);
}
#else
static void detect_cpu(void)
{
}

static uint64_t unqueue_words(struct db_slot *s, uint64_t ws, uint64_t we)
{
#ifdef __POPCNT__
	return unqueue_words_body(s, ws, we, true);
#else
	return unqueue_words_body(s, ws, we, false);
#endif
}
#endif

/* Pages queued in @s: the words of the marked groups of its window. */
static uint64_t slot_count(const struct db_slot *s)
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
static uint64_t slot_discard(struct db_slot *s)
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

/* Drop slots with nothing queued from the dirty list. */
static void compact_dirty(struct dirtybatch_ctx *ctx)
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
static void reset_dirty(struct dirtybatch_ctx *ctx)
{
	for (uint32_t i = 0; i < ctx->ndirty; i++) {
		slot_reset_window(ctx->dirty[i]);
		ctx->dirty[i]->listed = false;
	}
	ctx->ndirty = 0;
}

static uint64_t ctx_count(const struct dirtybatch_ctx *ctx)
{
	uint64_t n = 0;

	for (uint32_t i = 0; i < ctx->ndirty; i++)
		n += slot_count(ctx->dirty[i]);
	return n;
}

/* ---------------------------------------------------------------------- */
/* Lookups.                                                               */

static __attribute__((noinline)) struct db_slot *find_slot(struct dirtybatch_ctx *ctx,
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

/* find_slot(), with its cache check inline: callers add runs one by one. */
static inline struct db_slot *lookup_slot(struct dirtybatch_ctx *ctx, uint32_t slot)
{
	struct db_slot *s = ctx->last;

	return s && s->slot == slot ? s : find_slot(ctx, slot);
}

/* (as_id, gpa) ordering key comparison: a < b ? */
static inline bool gpa_key_less(uint32_t as_a, uint64_t gpa_a,
				uint32_t as_b, uint64_t gpa_b)
{
	return as_a != as_b ? as_a < as_b : gpa_a < gpa_b;
}

/* Index into by_gpa of the slot of @as_id containing @gpa, or -1. */
static int64_t find_gpa(const struct dirtybatch_ctx *ctx, uint32_t as_id,
			uint64_t gpa)
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
/* Public: queueing.                                                      */

/* dirtybatch_add_pages() with every check, errors included. */
static __attribute__((noinline)) int add_pages_checked(struct dirtybatch_ctx *ctx,
							uint32_t slot, uint64_t first_page,
							uint64_t npages)
{
	struct db_slot *s;

	if (!ctx)
		return -EINVAL;
	if (!npages)
		return -ENODATA;
	if (first_page > UINT64_MAX - npages)
		return -EOVERFLOW;
	s = lookup_slot(ctx, slot);
	if (!s)
		return -ENOENT;
	if (first_page + npages > s->npages)
		return -ERANGE;
	queue_run(ctx, s, first_page, npages);
	return 0;
}

DIRTYBATCH_API int dirtybatch_add_pages(struct dirtybatch_ctx *ctx,
					uint32_t slot, uint64_t first_page,
					uint64_t npages)
{
	struct db_slot *s = ctx ? ctx->last : NULL;

	/* 1..64 pages of the previous call's slot, inside it: the short way */
	if (s && s->slot == slot && npages - 1 < 64 &&
	    first_page <= DB_FAST_LIMIT && first_page + npages <= s->npages) {
		uint64_t w0 = first_page >> 6, w1 = (first_page + npages - 1) >> 6;
		uint64_t v = ~0ULL >> (64 - npages);
		unsigned int sh = first_page & 63;

		/* every bit is set: no test for empty words */
		s->bits[w0] |= v << sh;
		word_mark(s, w0);
		if (w1 != w0) {
			s->bits[w1] |= v >> (64 - sh);
			word_mark(s, w1);
		}
		slot_mark(ctx, s, w0, w1);
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
	s = lookup_slot(ctx, slot);
	if (!s)
		return -ENOENT;
	if (first_page + npages > s->npages)
		return -ERANGE;
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
	i0 = find_gpa(ctx, as_id, gpa);
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
	return ctx ? ctx_count(ctx) : 0;
}

DIRTYBATCH_API uint64_t dirtybatch_discard(struct dirtybatch_ctx *ctx)
{
	uint64_t n = 0;
	uint32_t i;

	if (!ctx)
		return 0;
	for (i = 0; i < ctx->ndirty; i++)
		n += slot_discard(ctx->dirty[i]);
	compact_dirty(ctx);
	ctx->stats.pages_discarded += n;
	return n;
}

/* ---------------------------------------------------------------------- */
/* Public: submit.                                                        */

static void note_applied(struct dirtybatch_ctx *ctx, struct db_slot *s,
			 struct dirtybatch_result *r, uint64_t pages)
{
	r->ranges++;
	r->pages_requested += pages;
	if (s->touched != ctx->gen) {
		s->touched = ctx->gen;
		r->slots++;
	}
}

/*
 * Does @x, a group's non-zero mask (sum_word()), hold a run of more than
 * @gap zero bits between two of its set bits?  The AND of gap + 1 shifted
 * copies of its zero bits, made by doubling: a few instructions for any
 * gap below 63.
 */
static inline bool inner_gap(uint64_t x, uint64_t gap)
{
	unsigned int lo = (unsigned int)__builtin_ctzll(x);
	unsigned int hi = 63 - (unsigned int)__builtin_clzll(x);
	uint64_t z, len, step;

	if (gap >= (uint64_t)(hi - lo))
		return false;
	/* zero bits strictly between the lowest and the highest set bit */
	z = ~x & (~0ULL << lo) & (~0ULL >> (63 - hi));
	for (len = 1; len < gap + 1 && z; len += step) {
		step = len < gap + 1 - len ? len : gap + 1 - len;
		z &= z >> step;
	}
	return z != 0;
}

/*
 * The next range of words of @s to send, from word *@w on: [*@ws, *@we),
 * a maximal run of non-zero words, extended over gaps of at most @gap zero
 * words to the runs that follow as long as it stays within @maxlen words
 * (a run of non-zero words alone may be longer: the caller cuts it into
 * pieces, none of which then starts or ends with a zero word).  Advances
 * *@w past it; false when nothing is queued from *@w on.  Walks the
 * summary a group (64 words) at a time where a whole group joins the range
 * (no gap in it longer than @gap, the range still within @maxlen), else a
 * run of set bits at a time, so that many short runs with short gaps cost
 * a few instructions per 64 words.
 */
static bool next_run(const struct db_slot *s, uint64_t *w, uint64_t gap,
		     uint64_t maxlen, uint64_t *ws, uint64_t *we)
{
	uint64_t lim, a, last, i, x;

	if (*w == NO_WORD)
		return false;
	lim = s->wmax + 1;
	a = sum_next_set(s, *w, lim);
	if (a >= lim)
		return false;
	/* last: the last non-zero word of the range so far */
	last = a;
	i = a >> 6;
	x = sum_word(s, i) & (~0ULL << (a & 63));
	for (;;) {
		if (x) {
			uint64_t b = (i << 6) + (uint64_t)__builtin_ctzll(x);
			uint64_t h = (i << 6) + 63 - (uint64_t)__builtin_clzll(x);

			/* the whole group joins the range */
			if ((b <= last + 1 || b - last - 1 <= gap) &&
			    h - a < maxlen && !inner_gap(x, gap)) {
				last = h;
				x = 0;
			}
		}
		while (x) {
			unsigned int t = (unsigned int)__builtin_ctzll(x);
			uint64_t b = (i << 6) + t, y = x >> t;
			unsigned int ones = ~y ? (unsigned int)__builtin_ctzll(~y) : 64 - t;

			if (b > last + 1 && (b - last - 1 > gap || b - a >= maxlen))
				goto out;
			last = b + ones - 1;
			x = t + ones < 64 ? x & (~0ULL << (t + ones)) : 0;
		}
		if (++i << 6 >= lim || (i << 6) > last + 1 + gap)
			break;
		x = sum_word(s, i);
	}
out:
	*ws = a;
	*we = last + 1;
	*w = last + 1;
	return true;
}

static int submit_fallback(struct dirtybatch_ctx *ctx, struct dirtybatch_result *r)
{
	uint32_t i;

	for (i = 0; i < ctx->ndirty; i++) {
		struct db_slot *s = ctx->dirty[i];
		uint64_t w = s->wmin, ws, we;

		while (next_run(s, &w, ctx->fallback_gap, UINT64_MAX, &ws, &we)) {
			struct kvm_clear_dirty_log log;
			int err;

			memset(&log, 0, sizeof(log));
			log.slot = s->slot;
			log.first_page = ws << 6;
			log.num_pages = (uint32_t)(we == s->nwords ?
				s->npages - (ws << 6) : (we - ws) << 6);
			log.dirty_bitmap = &s->bits[ws];
			r->ioctls++;
			ctx->stats.ioctls++;
			err = ctx->be->clear_log(ctx->be_priv, ctx->vm_fd, &log);
			if (err) {
				r->error_slot = s->slot;
				r->error_first_page = log.first_page;
				return err;
			}
			note_applied(ctx, s, r, unqueue_words(s, ws, we));
		}
	}
	return 0;
}

static inline struct kvm_dirtybatch_range *range_at(struct dirtybatch_ctx *ctx,
						    uint32_t i)
{
	return (struct kvm_dirtybatch_range *)(void *)
		(ctx->ranges + (size_t)i * ctx->stride);
}

/* Issue one KVM_DIRTYBATCH_CLEAR for the first @n ranges of the array. */
static int module_flush(struct dirtybatch_ctx *ctx, uint32_t n,
			struct dirtybatch_result *r)
{
	struct kvm_dirtybatch_clear c;
	uint32_t i;
	int err;

	memset(&c, 0, sizeof(c));
	c.vm_fd = ctx->vm_fd;
	c.flags = 0;
	c.count = n;
	c.range_size = ctx->stride;
	c.ranges = (uint64_t)(uintptr_t)ctx->ranges;
	c.error_index = n;
	r->ioctls++;
	ctx->stats.ioctls++;
	ctx->stats.module_ioctls++;
	err = ctx->be->batch_clear(ctx->be_priv, ctx->dev_fd, &c);
	if (err) {
		if (c.error_index < n) {
			r->error_slot = range_at(ctx, c.error_index)->slot;
			r->error_first_page = range_at(ctx, c.error_index)->first_page;
		}
		return err;
	}
	r->pages_cleared += c.pages_cleared;
	for (i = 0; i < n; i++) {
		struct kvm_dirtybatch_range *rg = range_at(ctx, i);
		struct db_slot *s = ctx->range_slot[i];
		uint64_t ws = rg->first_page >> 6;
		uint64_t we = ws + (((uint64_t)rg->num_pages + 63) >> 6);

		note_applied(ctx, s, r, unqueue_words(s, ws, we));
	}
	return 0;
}

static int submit_module(struct dirtybatch_ctx *ctx, struct dirtybatch_result *r)
{
	uint32_t i, n = 0;
	uint64_t bytes = 0;
	int err;

	for (i = 0; i < ctx->ndirty; i++) {
		struct db_slot *s = ctx->dirty[i];
		uint64_t w = s->wmin, ws, we;

		while (next_run(s, &w, ctx->module_gap, ctx->max_piece_words, &ws, &we)) {
			/* pieces only where the module's bitmap limit needs */
			while (ws < we) {
				uint64_t pe = we - ws > ctx->max_piece_words ?
					ws + ctx->max_piece_words : we;
				uint64_t pbytes = (pe - ws) * 8;
				struct kvm_dirtybatch_range *rg;

				if (n == ctx->range_cap ||
				    bytes + pbytes > ctx->max_bytes) {
					err = module_flush(ctx, n, r);
					if (err)
						return err;
					n = 0;
					bytes = 0;
				}
				rg = range_at(ctx, n);
				rg->slot = s->slot;
				rg->first_page = ws << 6;
				rg->num_pages = (uint32_t)(pe == s->nwords ?
					s->npages - (ws << 6) : (pe - ws) << 6);
				rg->dirty_bitmap = (uint64_t)(uintptr_t)&s->bits[ws];
				ctx->range_slot[n++] = s;
				bytes += pbytes;
				ws = pe;
			}
		}
	}
	return n ? module_flush(ctx, n, r) : 0;
}

DIRTYBATCH_API int64_t dirtybatch_submit(struct dirtybatch_ctx *ctx,
					 struct dirtybatch_result *res)
{
	struct dirtybatch_result r;
	int saved_errno = errno;
	bool module;
	int err = 0;

	if (!ctx)
		return -EINVAL;
	memset(&r, 0, sizeof(r));
	r.error_slot = UINT32_MAX;
	r.error_first_page = UINT64_MAX;
	module = ctx->mode == DIRTYBATCH_MODE_MODULE;
	ctx->gen++;
	ctx->stats.submits++;
	if (ctx->ndirty) {
		err = module ? submit_module(ctx, &r) : submit_fallback(ctx, &r);
		if (err) {
			compact_dirty(ctx);
			r.pages_pending = ctx_count(ctx);
		} else {
			reset_dirty(ctx);
		}
	}
	if (module) {
		r.flags |= DIRTYBATCH_RESULT_CLEARED_EXACT;
		ctx->stats.pages_cleared_exact += r.pages_cleared;
	} else {
		r.pages_cleared = r.pages_requested;
		ctx->stats.pages_cleared_unknown += r.pages_requested;
	}
	r.error = err;
	ctx->stats.ranges += r.ranges;
	ctx->stats.pages_requested += r.pages_requested;
	if (err)
		ctx->stats.failed_submits++;
	if (res)
		*res = r;
	errno = saved_errno;
	if (err)
		return err;
	return (int64_t)r.pages_cleared;
}

DIRTYBATCH_API int dirtybatch_get_stats(const struct dirtybatch_ctx *ctx,
					struct dirtybatch_stats *stats)
{
	if (!ctx || !stats)
		return -EINVAL;
	*stats = ctx->stats;
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Module detection and submit buffers.                                   */

/* Worst-case number of ranges a submit can need for the current layout. */
static uint64_t worst_case_ranges(const struct dirtybatch_ctx *ctx,
				  struct db_slot *const *slots, uint32_t nslots)
{
	uint64_t total = 0;
	uint32_t i;

	(void)ctx;
	for (i = 0; i < nslots; i++) {
		const struct db_slot *s = slots[i];

		/* alternating words give nwords/2 runs, plus limit splits */
		total += (s->nwords + 1) / 2 + s->nwords / ctx->max_piece_words + 1;
	}
	return total;
}

/*
 * Allocate the range array for @slots (the layout about to be installed).
 * On success the old buffers are replaced; on failure nothing changes.
 */
static int size_ranges(struct dirtybatch_ctx *ctx, struct db_slot *const *slots,
		       uint32_t nslots)
{
	unsigned char *ranges = NULL;
	struct db_slot **owner = NULL;
	uint64_t want = 0;

	if (ctx->module_ok && nslots) {
		want = worst_case_ranges(ctx, slots, nslots);
		if (want > ctx->minfo.max_ranges)
			want = ctx->minfo.max_ranges;
	}
	if (want == ctx->range_cap)
		return 0;
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

static void update_mode(struct dirtybatch_ctx *ctx)
{
	ctx->mode = ctx->module_ok && !ctx->force_fallback ?
		DIRTYBATCH_MODE_MODULE : DIRTYBATCH_MODE_FALLBACK;
}

/* Adopt a GET_INFO answer; returns 0 or why the module is unusable. */
static int adopt_info(struct dirtybatch_ctx *ctx,
		      const struct kvm_dirtybatch_info *info)
{
	uint64_t stride;

	if (info->abi_version != KVM_DIRTYBATCH_ABI_VERSION)
		return -EPROTO;
	if (!(info->features & KVM_DIRTYBATCH_FEAT_CLEAR))
		return -EOPNOTSUPP;
	if (!info->max_ranges || info->max_bitmap_bytes < 8)
		return -EPROTO;
	stride = sizeof(struct kvm_dirtybatch_range);
	/* A newer module with a larger range accepts zeroed extra bytes. */
	if (info->range_size > stride)
		stride = (info->range_size + 7) & ~7ULL;
	if (stride > 4096)
		return -EPROTO;
	ctx->minfo = *info;
	ctx->stride = (uint32_t)stride;
	ctx->max_bytes = info->max_bitmap_bytes;
	ctx->max_piece_words = info->max_bitmap_bytes / 8;
	/* num_pages is 32 bits; slots are < 2^31 pages, so this never binds */
	if (ctx->max_piece_words > (UINT32_MAX >> 6))
		ctx->max_piece_words = UINT32_MAX >> 6;
	return 0;
}

static void detect_module(struct dirtybatch_ctx *ctx)
{
	struct kvm_dirtybatch_info info;
	int fd, err;

	fd = open(ctx->device_path ? ctx->device_path : DB_DEVICE_PATH,
		  O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		ctx->detect_err = -errno;
		return;
	}
	memset(&info, 0, sizeof(info));
	if (ioctl(fd, KVM_DIRTYBATCH_GET_INFO, &info) < 0) {
		ctx->detect_err = -errno;
		close(fd);
		return;
	}
	err = adopt_info(ctx, &info);
	if (err) {
		ctx->detect_err = err;
		close(fd);
		return;
	}
	ctx->dev_fd = fd;
	ctx->module_ok = true;
	ctx->detect_err = 0;
}

/* ---------------------------------------------------------------------- */
/* Public: context.                                                       */

DIRTYBATCH_API int dirtybatch_open(int vm_fd, const struct dirtybatch_opts *opts,
				   struct dirtybatch_ctx **ctxp)
{
	struct dirtybatch_opts o;
	struct dirtybatch_ctx *ctx;
	int saved_errno = errno;
	long ps;

	if (!ctxp)
		return -EINVAL;
	*ctxp = NULL;
	if (vm_fd < 0)
		return -EBADF;
	memset(&o, 0, sizeof(o));
	if (opts) {
		size_t sz = opts->sz;

		if (sz < offsetof(struct dirtybatch_opts, flags) + sizeof(o.flags))
			return -EINVAL;
		if (sz > sizeof(o)) {
			const unsigned char *p = (const unsigned char *)opts;

			for (size_t k = sizeof(o); k < sz; k++)
				if (p[k])
					return -E2BIG;
			sz = sizeof(o);
		}
		memcpy(&o, opts, sz);
	}
	if (o.flags & ~DIRTYBATCH_OPEN_FALLBACK)
		return -EINVAL;
	ps = o.page_size;
	if (!ps) {
		ps = sysconf(_SC_PAGESIZE);
		if (ps <= 0)
			ps = 4096;
	}
	if (ps < 512 || ps > (1L << 30) || (ps & (ps - 1)))
		return -EINVAL;

	detect_cpu();
	ctx = calloc(1, sizeof(*ctx));
	if (!ctx) {
		errno = saved_errno;
		return -ENOMEM;
	}
	ctx->vm_fd = vm_fd;
	ctx->dev_fd = -1;
	ctx->fallback_gap = DB_FALLBACK_GAP_WORDS;
	ctx->module_gap = DB_MODULE_GAP_WORDS;
	ctx->page_size = (uint32_t)ps;
	ctx->page_shift = (unsigned int)__builtin_ctzl((unsigned long)ps);
	ctx->be = &sys_backend;
	ctx->max_piece_words = 1;
	if (o.device_path) {
		ctx->device_path = strdup(o.device_path);
		if (!ctx->device_path) {
			free(ctx);
			errno = saved_errno;
			return -ENOMEM;
		}
	}
	if (o.flags & DIRTYBATCH_OPEN_FALLBACK) {
		ctx->force_fallback = true;
		ctx->detect_err = -ECANCELED;
	} else {
		detect_module(ctx);
	}
	update_mode(ctx);
	*ctxp = ctx;
	errno = saved_errno;
	return 0;
}

static void free_slot(struct db_slot *s)
{
	if (!s)
		return;
	free(s->bits);
	free(s->mark);
	free(s->mark2);
	free(s->mark3);
	free(s);
}

DIRTYBATCH_API void dirtybatch_close(struct dirtybatch_ctx *ctx)
{
	int saved_errno = errno;
	uint32_t i;

	if (!ctx)
		return;
	for (i = 0; i < ctx->nslots; i++)
		free_slot(ctx->by_id[i]);
	free(ctx->by_id);
	free(ctx->by_gpa);
	free(ctx->dirty);
	free(ctx->ranges);
	free(ctx->range_slot);
	free(ctx->device_path);
	if (ctx->dev_fd >= 0)
		close(ctx->dev_fd);
	free(ctx);
	errno = saved_errno;
}

DIRTYBATCH_API int dirtybatch_mode(const struct dirtybatch_ctx *ctx)
{
	return ctx ? ctx->mode : -EINVAL;
}

DIRTYBATCH_API int dirtybatch_set_fallback(struct dirtybatch_ctx *ctx, bool force)
{
	int saved_errno = errno;
	int err;

	if (!ctx)
		return -EINVAL;
	ctx->force_fallback = force;
	if (!force && !ctx->module_ok) {
		/* never tried, or not found then: the module may be loaded now */
		detect_module(ctx);
		if (ctx->module_ok) {
			err = size_ranges(ctx, ctx->by_id, ctx->nslots);
			if (err) {
				/* usable later, once memory allows */
				close(ctx->dev_fd);
				ctx->dev_fd = -1;
				ctx->module_ok = false;
				ctx->detect_err = err;
			}
		}
	}
	update_mode(ctx);
	errno = saved_errno;
	return ctx->mode;
}

DIRTYBATCH_API int dirtybatch_get_info(const struct dirtybatch_ctx *ctx,
				       struct dirtybatch_info *info)
{
	if (!ctx || !info)
		return -EINVAL;
	memset(info, 0, sizeof(*info));
	info->mode = (uint32_t)ctx->mode;
	if (ctx->module_ok) {
		info->flags |= DIRTYBATCH_INFO_MODULE_PRESENT;
		info->module_abi_version = ctx->minfo.abi_version;
		info->module_features = ctx->minfo.features;
		info->module_max_ranges = ctx->minfo.max_ranges;
		info->module_max_bitmap_bytes = ctx->minfo.max_bitmap_bytes;
	}
	info->fallback_reason = ctx->mode == DIRTYBATCH_MODE_MODULE ? 0 :
		(ctx->force_fallback ? -ECANCELED : ctx->detect_err);
	info->page_size = ctx->page_size;
	info->nr_slots = ctx->nslots;
	return 0;
}

int dirtybatch__set_backend(struct dirtybatch_ctx *ctx,
			    const struct dirtybatch_backend *be, void *priv,
			    const struct kvm_dirtybatch_info *module_info)
{
	int err;

	if (!ctx)
		return -EINVAL;
	ctx->be = be ? be : &sys_backend;
	ctx->be_priv = priv;
	if (module_info) {
		err = adopt_info(ctx, module_info);
		if (err)
			return err;
		ctx->module_ok = true;
		ctx->detect_err = 0;
		/* the stride may have changed: reallocate */
		free(ctx->ranges);
		free(ctx->range_slot);
		ctx->ranges = NULL;
		ctx->range_slot = NULL;
		ctx->range_cap = 0;
		err = size_ranges(ctx, ctx->by_id, ctx->nslots);
		if (err)
			return err;
		update_mode(ctx);
	}
	return 0;
}

int dirtybatch__set_gaps(struct dirtybatch_ctx *ctx, uint64_t fallback_words,
			 uint64_t module_words)
{
	if (!ctx)
		return -EINVAL;
	ctx->fallback_gap = fallback_words;
	ctx->module_gap = module_words;
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Public: layout.                                                        */

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

static struct db_slot *alloc_slot(const struct dirtybatch_ctx *ctx,
				  const struct dirtybatch_memslot *d)
{
	struct db_slot *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->slot = d->slot;
	s->gpa = d->guest_phys_addr;
	s->npages = d->npages;
	s->gpa_last = d->guest_phys_addr + ((d->npages << ctx->page_shift) - 1);
	s->nwords = (d->npages + 63) >> 6;
	s->ngrp = (s->nwords + 63) >> 6;
	s->nsup = (s->ngrp + 63) >> 6;
	s->bits = calloc(s->nwords, sizeof(uint64_t));
	/* whole groups, so that any64() and sum_word() stay inside */
	s->mark = calloc(s->ngrp, 64);
	s->mark2 = calloc(s->nsup, 64);
	s->mark3 = calloc((s->nsup + 7) & ~7ULL, 1);
	slot_reset_window(s);
	if (!s->bits || !s->mark || !s->mark2 || !s->mark3) {
		free_slot(s);
		return NULL;
	}
	return s;
}

/*
 * Install @desc (@n entries, any order) as the layout.  Slots whose
 * number, base and size are unchanged keep their queued pages; the queued
 * pages of the others are discarded.  All or nothing.
 */
static int install_layout(struct dirtybatch_ctx *ctx,
			  const struct dirtybatch_memslot *desc, uint32_t n)
{
	struct dirtybatch_memslot *d = NULL;
	struct db_slot **by_id = NULL, **by_gpa = NULL, **dirty = NULL;
	bool *reused = NULL;
	uint64_t discarded = 0;
	uint32_t i, j;
	int err;

	for (i = 0; i < n; i++) {
		err = check_desc(ctx, &desc[i]);
		if (err)
			return err;
	}
	err = -ENOMEM;
	if (n) {
		d = malloc(n * sizeof(*d));
		by_id = calloc(n, sizeof(*by_id));
		by_gpa = calloc(n, sizeof(*by_gpa));
		dirty = calloc(n, sizeof(*dirty));
		if (!d || !by_id || !by_gpa || !dirty)
			goto fail;
		memcpy(d, desc, n * sizeof(*d));
		qsort(d, n, sizeof(*d), cmp_desc_id);
		for (i = 1; i < n; i++) {
			if (d[i].slot == d[i - 1].slot) {
				err = -EEXIST;
				goto fail;
			}
		}
	}
	if (ctx->nslots) {
		reused = calloc(ctx->nslots, sizeof(*reused));
		if (!reused)
			goto fail;
	}
	/* Reuse unchanged slots (both lists sorted by number), allocate new. */
	for (i = 0, j = 0; i < n; i++) {
		while (j < ctx->nslots && ctx->by_id[j]->slot < d[i].slot)
			j++;
		if (j < ctx->nslots && ctx->by_id[j]->slot == d[i].slot &&
		    ctx->by_id[j]->gpa == d[i].guest_phys_addr &&
		    ctx->by_id[j]->npages == d[i].npages) {
			by_id[i] = ctx->by_id[j];
			reused[j] = true;
			continue;
		}
		by_id[i] = alloc_slot(ctx, &d[i]);
		if (!by_id[i])
			goto fail;
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
	err = size_ranges(ctx, by_id, n);
	if (err)
		goto fail;

	/* Commit. */
	for (j = 0; j < ctx->nslots; j++) {
		if (!reused[j]) {
			discarded += slot_count(ctx->by_id[j]);
			free_slot(ctx->by_id[j]);
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
				free_slot(by_id[i]);
		}
	}
	free(reused);
	free(by_id);
	free(by_gpa);
	free(dirty);
	free(d);
	return err;
}

/* The current layout as descriptors, with room for one more. */
static struct dirtybatch_memslot *current_desc(const struct dirtybatch_ctx *ctx)
{
	struct dirtybatch_memslot *d = calloc(ctx->nslots + 1, sizeof(*d));
	uint32_t i;

	if (!d)
		return NULL;
	for (i = 0; i < ctx->nslots; i++) {
		const struct db_slot *s = ctx->by_id[i];

		d[i].slot = s->slot;
		d[i].guest_phys_addr = s->gpa;
		d[i].npages = s->npages;
	}
	return d;
}

DIRTYBATCH_API int dirtybatch_set_layout(struct dirtybatch_ctx *ctx,
					 const struct dirtybatch_memslot *slots,
					 unsigned int nr_slots)
{
	int saved_errno = errno;
	int err;

	if (!ctx || (nr_slots && !slots))
		return -EINVAL;
	if (nr_slots > INT32_MAX / 2)
		return -E2BIG;
	err = install_layout(ctx, slots, nr_slots);
	errno = saved_errno;
	return err;
}

DIRTYBATCH_API int dirtybatch_slot_update(struct dirtybatch_ctx *ctx,
					  const struct dirtybatch_memslot *slot)
{
	int saved_errno = errno;
	struct dirtybatch_memslot *d;
	uint32_t i, n;
	int err;

	if (!ctx || !slot)
		return -EINVAL;
	if (ctx->nslots >= INT32_MAX / 2)
		return -E2BIG;
	d = current_desc(ctx);
	if (!d) {
		errno = saved_errno;
		return -ENOMEM;
	}
	n = ctx->nslots;
	for (i = 0; i < n && d[i].slot != slot->slot; i++)
		;
	d[i] = *slot;
	if (i == n)
		n++;
	err = install_layout(ctx, d, n);
	free(d);
	errno = saved_errno;
	return err;
}

DIRTYBATCH_API int dirtybatch_slot_remove(struct dirtybatch_ctx *ctx,
					  uint32_t slot)
{
	int saved_errno = errno;
	struct dirtybatch_memslot *d;
	uint32_t i;
	int err;

	if (!ctx)
		return -EINVAL;
	if (!find_slot(ctx, slot))
		return -ENOENT;
	d = current_desc(ctx);
	if (!d) {
		errno = saved_errno;
		return -ENOMEM;
	}
	for (i = 0; d[i].slot != slot; i++)
		;
	d[i] = d[ctx->nslots - 1];
	err = install_layout(ctx, d, ctx->nslots - 1);
	free(d);
	errno = saved_errno;
	return err;
}
