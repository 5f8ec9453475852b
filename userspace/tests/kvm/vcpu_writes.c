// SPDX-License-Identifier: LGPL-2.1 OR MIT
/*
 * A vCPU writing sequence numbers into pages while batches are cleared:
 * no dirty page may be lost.
 */
#include <time.h>

#include "kvm_tests.h"

static void sleep_us(long us)
{
	struct timespec ts = { .tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000 };

	nanosleep(&ts, NULL);
}

/* The newest sequence number the guest stored in a page (0: none). */
static uint32_t page_seq(const uint8_t *page)
{
	uint32_t best = 0;

	for (int k = 0; k < 512; k++) {
		uint32_t v = *(const volatile uint32_t *)(page + k * 8);

		if (v > best)
			best = v;
	}
	return best;
}

/*
 * A vCPU stores sequence numbers into random pages while batches built
 * from the dirty log (and random extra runs) are cleared.  After each
 * submit, the guest's sequence number s is read: every store numbered
 * above s + 1 comes after the clear (the guest publishes s after its
 * store s, and a clear ends with a TLB flush that makes every store before
 * it visible), so at the end a page holding a number above its last
 * clear's s + 1 must be dirty.
 */
bool test_vcpu(struct kt_case *c)
{
	struct tvm *t = &c->t;
	struct dirtybatch_ctx *ctx = c->ctx;
	struct dirtybatch_result res = { .sz = sizeof(res) };
	static uint64_t bm[(8192 + 63) / 64 + 4];
	static uint64_t list[4096];
	uint64_t lost = 0, redirtied = 0, cleared_total = 0;
	uint32_t seq0;

	/*
	 * Every page counts as written before any clear (INITIALLY_SET made
	 * it dirty): until a clear names it, it must stay dirty.
	 */
	for (int i = 0; i < t->n; i++)
		for (uint64_t p = 0; p < t->s[i].npages; p++)
			*(uint32_t *)(t->s[i].hva + p * PAGE_SIZE) = 1;
	for (unsigned int k = 0; k < sizeof(list) / sizeof(list[0]); k++)
		list[k] = BASE_GPA + rng_below(&kt_rng, t->guest_pages) * PAGE_SIZE;
	vm_create_vcpu(t->vm);
	guest_set_list(t->vm, list, sizeof(list) / sizeof(list[0]), 0);
	t->vm->ctrl->seq = 1;	/* the guest's first store is number 2 */
	vcpu_start(t->vm);
	for (int i = 0; i < 2000 && t->vm->ctrl->seq == 1; i++)
		sleep_us(1000);
	if (t->vm->ctrl->seq == 1)
		return kt_fail(c, "guest does not run");
	/*
	 * Slow the guest down to roughly 20k stores/s so that a round leaves
	 * most pages clean: if every page were rewritten all the time, a page
	 * wrongly cleared would be re-dirtied before the final check.
	 */
	for (int i = 0; i < 30; i++) {
		uint32_t w = t->vm->ctrl->seq;

		sleep_us(20000);
		if ((t->vm->ctrl->seq - w) * 50 <= 40000)
			break;
		t->vm->ctrl->delay = t->vm->ctrl->delay ? t->vm->ctrl->delay * 2 : 64;
	}
	seq0 = t->vm->ctrl->seq;
	for (int round = 1; round <= c->rounds; round++) {
		int64_t got;

		sleep_us(200 + (long)rng_below(&kt_rng, 3000));
		/* clear (most of) what the log says is dirty, via bitmaps */
		for (int i = 0; i < t->n; i++) {
			struct tslot *s = &t->s[i];
			uint64_t off = rng_below(&kt_rng, 64), nw = (s->npages + 63) / 64;
			bool guest = tslot_in_guest_region(s);

			vm_get_dirty_log(t->vm, s->slot, bm);
			/*
			 * Guest writes only set bits: a page KVM reported dirty
			 * and no clear named since must still be dirty; slots the
			 * guest does not write must match the model exactly.
			 */
			for (uint64_t p = 0; p < s->npages; p++) {
				bool k = bm[p / 64] >> (p % 64) & 1;

				if ((t->dirty[i][p] && !k) || (!guest && k != t->dirty[i][p])) {
					if (!lost++)
						snprintf(c->why, c->wl, "round %d: slot %#x page %"
							 PRIu64 " model %d KVM %d", round, s->slot,
							 p, t->dirty[i][p], k);
				}
				t->dirty[i][p] = k;
			}
			if (rng_below(&kt_rng, 4) == 0)
				continue;	/* leave this slot dirty this round */
			/*
			 * Clear a random half of the dirty pages: the others must
			 * stay dirty, so a page cleared without being asked for
			 * shows up as lost at the end.
			 */
			for (uint64_t w = 0; w < nw; w++)
				bm[w] &= rng_next(&kt_rng);
			/* shift the bitmap by off bits to use an arbitrary offset */
			if (off) {
				bm[nw] = 0;
				for (uint64_t w = nw; w > 0; w--)
					bm[w] = bm[w] << off | bm[w - 1] >> (64 - off);
				bm[0] <<= off;
			}
			if (dirtybatch_add_bitmap(ctx, s->slot, 0, s->npages, bm, off))
				return kt_fail(c, "add_bitmap failed");
			for (uint64_t p = 0; p < s->npages; p++)
				if (bm[(p + off) / 64] >> ((p + off) % 64) & 1)
					t->req[i][p] = 1;
		}
		/* plus random runs, dirty or not */
		for (int a = (int)rng_below(&kt_rng, 4); a > 0; a--)
			tvm_random_add(t, &ctx, 1);
		got = dirtybatch_submit(ctx, &res);
		if (got < 0)
			return kt_fail(c, "submit: %s", strerror((int)-got));
		cleared_total += (uint64_t)got;
		/* read after the clear returned: see above */
		tvm_apply_req(t, __atomic_load_n(&t->vm->ctrl->seq, __ATOMIC_ACQUIRE) + 1);
	}
	/* let the guest write behind the last clear for a while */
	{
		uint32_t w = t->vm->ctrl->seq;

		for (int i = 0; i < 5000 && t->vm->ctrl->seq - w < 2000; i++)
			sleep_us(1000);
	}
	vcpu_stop(t->vm);
	for (int i = 0; i < t->n; i++) {
		struct tslot *s = &t->s[i];

		vm_get_dirty_log(t->vm, s->slot, bm);
		for (uint64_t p = 0; p < s->npages; p++) {
			uint32_t seq = page_seq(s->hva + p * PAGE_SIZE);
			bool dirty = bm[p / 64] >> (p % 64) & 1;

			if (seq > t->last_clear[i][p]) {
				if (seq > 1)
					redirtied++;
				if (!dirty && !lost++)
					snprintf(c->why, c->wl, "slot %#x page %" PRIu64
						 " written (store %u) after its last clear (%u) but clean",
						 s->slot, p, seq, t->last_clear[i][p]);
			}
		}
	}
	tap_diag("%s vCPU: delay %u, %d rounds, %u guest stores, %" PRIu64 " pages cleared, %" PRIu64
		 " pages written after their last clear, %" PRIu64 " lost",
		 c->module ? "module" : "fallback", t->vm->ctrl->delay, c->rounds,
		 t->vm->ctrl->seq - seq0, cleared_total, redirtied, lost);
	if (!lost && !redirtied)
		return kt_fail(c, "no page was re-dirtied after a clear: test too weak");
	return !lost;
}
