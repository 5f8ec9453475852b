// SPDX-License-Identifier: LGPL-2.1 OR MIT
/*
 * libdirtybatch: submitting, per backend.
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
#include <stdlib.h>
#include <string.h>

#include "summary.h"

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
static __attribute__((target("popcnt"))) uint64_t
unqueue_words_popcnt(struct db_slot *s, uint64_t ws, uint64_t we)
{
	return unqueue_words_body(s, ws, we, true);
}

/*
 * The CPU's features as libgcc's constructor found them before main():
 * read-only here, nothing of the library's own to initialise or race on.
 */
static uint64_t unqueue_words(struct db_slot *s, uint64_t ws, uint64_t we)
{
	if (__builtin_cpu_supports("popcnt"))
		return unqueue_words_popcnt(s, ws, we);
	return unqueue_words_body(s, ws, we, false);
}
#else
static uint64_t unqueue_words(struct db_slot *s, uint64_t ws, uint64_t we)
{
#ifdef __POPCNT__
	return unqueue_words_body(s, ws, we, true);
#else
	return unqueue_words_body(s, ws, we, false);
#endif
}
#endif

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

/* One ioctl more in @r and the context's statistics (and in @kind, its backend's). */
static void count_ioctl(struct dirtybatch_ctx *ctx, struct dirtybatch_result *r, uint64_t *kind)
{
	r->ioctls++;
	ctx->stats.ioctls++;
	if (kind)
		(*kind)++;
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

int db_submit_fallback(struct dirtybatch_ctx *ctx, struct dirtybatch_result *r)
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
			count_ioctl(ctx, r, NULL);
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

/* The first @n ranges of the array were applied: unqueue their words. */
static void ranges_applied(struct dirtybatch_ctx *ctx, uint32_t n,
			   struct dirtybatch_result *r)
{
	for (uint32_t i = 0; i < n; i++) {
		struct kvm_dirtybatch_range *rg = range_at(ctx, i);
		struct db_slot *s = ctx->range_slot[i];
		uint64_t ws = rg->first_page >> 6;
		uint64_t we = ws + (((uint64_t)rg->num_pages + 63) >> 6);

		note_applied(ctx, s, r, unqueue_words(s, ws, we));
	}
}

/*
 * One batch ioctl over the first @n ranges of the array returned @err:
 * if it failed, note the range @error_index names (if it is one of @n) as
 * the failing one (nothing was applied), else unqueue them all.
 */
static int batch_done(struct dirtybatch_ctx *ctx, int err, uint32_t error_index, uint32_t n,
		      struct dirtybatch_result *r)
{
	if (err) {
		if (error_index < n) {
			r->error_slot = range_at(ctx, error_index)->slot;
			r->error_first_page = range_at(ctx, error_index)->first_page;
		}
		return err;
	}
	ranges_applied(ctx, n, r);
	return 0;
}

/* Issue one KVM_DIRTYBATCH_CLEAR for the first @n ranges of the array. */
static int module_flush(struct dirtybatch_ctx *ctx, uint32_t n,
			struct dirtybatch_result *r)
{
	struct kvm_dirtybatch_clear c;
	int err;

	memset(&c, 0, sizeof(c));
	c.vm_fd = ctx->vm_fd;
	c.flags = 0;
	c.count = n;
	c.range_size = ctx->stride;
	c.ranges = (uint64_t)(uintptr_t)ctx->ranges;
	c.error_index = n;
	count_ioctl(ctx, r, &ctx->stats.module_ioctls);
	err = ctx->be->batch_clear(ctx->be_priv, ctx->dev_fd, &c);
	if (!err)
		r->pages_cleared += c.pages_cleared;
	return batch_done(ctx, err, c.error_index, n, r);
}

/* Issue one KVM_CLEAR_DIRTY_LOG_BATCH for the first @n ranges of the array. */
static int native_flush(struct dirtybatch_ctx *ctx, uint32_t n,
			struct dirtybatch_result *r)
{
	struct kvm_clear_dirty_log_batch b;
	int err;

	memset(&b, 0, sizeof(b));
	b.count = n;
	b.ranges = (uint64_t)(uintptr_t)ctx->ranges;
	b.error_index = n;
	count_ioctl(ctx, r, &ctx->stats.native_ioctls);
	err = ctx->be->native_clear(ctx->be_priv, ctx->vm_fd, &b);
	return batch_done(ctx, err, b.error_index, n, r);
}

typedef int (*flush_fn)(struct dirtybatch_ctx *ctx, uint32_t n,
			struct dirtybatch_result *r);

/*
 * Submit the queue as batches of ranges, each range a run of queued words
 * at most module_gap zero words apart, within the limits of every usable
 * batch backend (so that a demoted context can hand the array on).
 */
static int submit_ranges(struct dirtybatch_ctx *ctx, struct dirtybatch_result *r,
			 flush_fn flush)
{
	uint32_t i, n = 0, cap = ctx->range_cap;
	uint32_t max = db_batch_max_ranges(ctx);
	uint64_t bytes = 0;
	int err;

	if (max < cap)
		cap = max;
	if (!cap)
		return -ENOMEM;	/* no array: db_size_ranges() failed */

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

				if (n == cap || bytes + pbytes > ctx->max_bytes) {
					err = flush(ctx, n, r);
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
	return n ? flush(ctx, n, r) : 0;
}

int db_submit_module(struct dirtybatch_ctx *ctx, struct dirtybatch_result *r)
{
	return submit_ranges(ctx, r, module_flush);
}

int db_submit_native(struct dirtybatch_ctx *ctx, struct dirtybatch_result *r)
{
	return submit_ranges(ctx, r, native_flush);
}

/* -ENOTTY, -EOPNOTSUPP: the call was not understood, nothing applied. */
static bool backend_gone(int err)
{
	return err == -ENOTTY || err == -EOPNOTSUPP;
}

DIRTYBATCH_API int64_t dirtybatch_submit(struct dirtybatch_ctx *ctx,
					 struct dirtybatch_result *res)
{
	struct dirtybatch_result r;
	int saved_errno = errno;
	uint64_t exact_req = 0;
	bool exact;
	int err = 0;

	if (!ctx)
		return -EINVAL;
	if (res && res->sz < db_offsetofend(struct dirtybatch_result, sz))
		return -EINVAL;
	memset(&r, 0, sizeof(r));
	r.sz = sizeof(r);
	r.error_slot = UINT32_MAX;
	r.error_first_page = UINT64_MAX;
	ctx->gen++;
	ctx->stats.submits++;
	/* only the module says how many bits it cleared */
	exact = ctx->cur->mode == DIRTYBATCH_MODE_MODULE;
	if (ctx->ndirty) {
		for (;;) {
			const struct db_backend *b = ctx->cur;
			uint64_t req0 = r.pages_requested;

			err = b->submit(ctx, &r);
			if (b->mode == DIRTYBATCH_MODE_MODULE)
				exact_req += r.pages_requested - req0;
			/*
			 * A batch ioctl that is not understood (the module was
			 * unloaded, or replaced by one without the feature)
			 * applied nothing: the rest goes the plain way, now and
			 * for the rest of the context's life.
			 */
			if (!err || b->mode == DIRTYBATCH_MODE_FALLBACK ||
			    !backend_gone(err))
				break;
			db_demote(ctx, err);
			r.flags |= DIRTYBATCH_RESULT_DEMOTED;
			r.error_slot = UINT32_MAX;
			r.error_first_page = UINT64_MAX;
		}
		if (err) {
			db_compact_dirty(ctx);
			r.pages_pending = db_ctx_count(ctx);
		} else {
			db_reset_dirty(ctx);
		}
	}
	if (exact && exact_req == r.pages_requested) {
		/* every applied range went through a backend that counts */
		r.flags |= DIRTYBATCH_RESULT_CLEARED_EXACT;
		ctx->stats.pages_cleared_exact += r.pages_cleared;
	} else {
		/* the plain ioctl does not say: count what was asked */
		ctx->stats.pages_cleared_exact += r.pages_cleared;
		ctx->stats.pages_cleared_unknown += r.pages_requested - exact_req;
		r.pages_cleared += r.pages_requested - exact_req;
	}
	r.mode = (uint32_t)ctx->mode;
	r.error = err;
	ctx->stats.ranges += r.ranges;
	ctx->stats.pages_requested += r.pages_requested;
	if (err)
		ctx->stats.failed_submits++;
	if (res)
		db_out_copy(res, res->sz, &r, sizeof(r));
	errno = saved_errno;
	if (err)
		return err;
	return (int64_t)r.pages_cleared;
}

DIRTYBATCH_API int dirtybatch_get_stats(const struct dirtybatch_ctx *ctx,
					struct dirtybatch_stats *stats)
{
	struct dirtybatch_stats st;

	if (!ctx || !stats || stats->sz < db_offsetofend(struct dirtybatch_stats, sz))
		return -EINVAL;
	st = ctx->stats;
	st.sz = sizeof(st);
	db_out_copy(stats, stats->sz, &st, sizeof(st));
	return 0;
}
