// SPDX-License-Identifier: GPL-2.0
/*
 * lost_dirty_test: no dirty page may be lost while clearing concurrently
 * with guest writes.
 *
 * The vCPU keeps storing unique, increasing sequence numbers into pages of
 * several dirty-logged memslots.  The host loops:
 *   1. pause the guest (ack through the control page),
 *   2. KVM_GET_DIRTY_LOG of every slot,
 *   3. every page whose content differs from the host's "sent" copy must be
 *      dirty in the bitmap (otherwise a write was lost),
 *   4. resume the guest,
 *   5. clear a random subset of the pages (mostly dirty ones) while the
 *      guest writes, with KVM_DIRTYBATCH_CLEAR (one call, overlapping
 *      ranges) or plain KVM_CLEAR_DIRTY_LOG (one call per range),
 *   6. after the clear returned, copy each cleared page to "sent".
 * A batch's pages_cleared lies between the requested pages dirty at the
 * pause and the requested pages: a page named by two ranges counts once,
 * even when the guest re-dirties it during the call (the module applies
 * the union of the ranges, word by word).
 *
 * The "plain" variant needs only /dev/kvm (host test of the VM helper);
 * the "batch" variants need /dev/kvm_dirtybatch and are skipped without
 * it.  "batch_lock_breaks" adds a 2 GiB slot, cleared in one range while
 * the guest faults on it, so that the MMU lock is dropped for the faulting
 * vCPU in the middle of calls; the guest writes BIG_TRACKED pages of it,
 * and its other pages are checked exactly against a model at every pause
 * (dirty from KVM_DIRTY_LOG_INITIALLY_SET until a call clears them).
 * KVM_DIRTYBATCH_LOST_SECONDS sets the time budget per variant (default 3).
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "util.h"

#define MIB		(1UL << 20)
#define LIST_LEN	4096
#define MAX_RANGES	4096
#define MAX_SLOTS	8
#define BIG_ID		50
/* 2 GiB and an odd tail: 8192 words per clear */
#define BIG_PAGES	(8192 * 64 + 17)
#define BIG_TRACKED	256

static const struct { uint32_t id; uint64_t npages; } layout[] = {
	{ 1, 300 }, { 2, 64 }, { 3, 1 }, { 4, 130 }, { 40, 257 }, { 7, 129 },
};

/*
 * A slot and the pages of it the guest writes and the host checks: all of
 * them, except in the big slot (lock_breaks variant), where BIG_TRACKED
 * pages spread over the whole slot, so that clearing it in one range
 * crosses MMU-lock breaks while the guest writes.
 */
struct lslot {
	uint32_t id;
	uint64_t npages;
	uint64_t gpa;
	uint8_t *hva;
	uint64_t *track;	/* tracked page numbers, ascending */
	uint64_t ntrack;
	uint8_t *sent;		/* ntrack pages: content the host "sent" */
	uint64_t *bm;		/* dirty log read at the pause */
	uint64_t *sel;		/* pages chosen for clearing (bitmap) */
	uint64_t *tracked;	/* bitmap of @track (big slot only) */
	uint64_t *model;	/* untracked pages' dirty bits (big slot only) */
};

FIXTURE(lost) {
	struct vm *vm;
	int dbfd;
	struct lslot sl[MAX_SLOTS];
	unsigned int nsl;
	struct kvm_dirtybatch_range *ranges;
	struct rng rng;
};

FIXTURE_VARIANT(lost) {
	bool batch;
	bool big;
};

FIXTURE_VARIANT_ADD(lost, plain) { .batch = false };
FIXTURE_VARIANT_ADD(lost, batch) { .batch = true };
FIXTURE_VARIANT_ADD(lost, batch_lock_breaks) { .batch = true, .big = true };

static void add_lslot(FIXTURE_DATA(lost) *self, uint32_t id, uint64_t npages,
		      uint64_t gpa, uint64_t ntrack)
{
	struct lslot *l = &self->sl[self->nsl++];
	uint64_t i;

	l->id = id;
	l->npages = npages;
	l->gpa = gpa;
	l->hva = vm_add_slot(self->vm, id, gpa, npages, KVM_MEM_LOG_DIRTY_PAGES);
	l->ntrack = ntrack;
	l->track = calloc(ntrack, sizeof(*l->track));
	l->sent = calloc(ntrack, PAGE_SIZE);
	l->bm = calloc(1, bitmap_bytes(npages) + 64);
	l->sel = calloc(1, bitmap_bytes(npages) + 64);
	VM_CHECK(l->track && l->sent && l->bm && l->sel, "calloc");
	for (i = 0; i < ntrack; i++)	/* all pages, or spread incl. the last */
		l->track[i] = ntrack == npages ? i : i * (npages - 1) / (ntrack - 1);
	if (ntrack == npages)
		return;
	/* INITIALLY_SET: every untracked page starts dirty */
	l->tracked = calloc(1, bitmap_bytes(npages));
	l->model = calloc(1, bitmap_bytes(npages));
	VM_CHECK(l->tracked && l->model, "calloc");
	for (i = 0; i < ntrack; i++)
		set_bit64(l->tracked, l->track[i]);
	for (i = 0; i < npages; i++)
		if (!test_bit64(l->tracked, i))
			set_bit64(l->model, i);
}

FIXTURE_SETUP(lost)
{
	uint64_t gpas[LIST_LEN], total = 0;
	const char *why = NULL;
	unsigned int i;

	self->dbfd = -1;
	self->vm = NULL;
	self->nsl = 0;
	self->ranges = NULL;
	if (variant->batch && !db_available(&why))
		SKIP(return, "%s", why);
	if (variant->batch) {
		self->dbfd = db_open();
		ASSERT_LE(0, self->dbfd);
	}
	rng_init(&self->rng, test_seed("lost_dirty"));
	self->vm = vm_create(true);
	for (i = 0; i < ARRAY_SIZE(layout); i++)
		add_lslot(self, layout[i].id, layout[i].npages, MIB * (2 + 2 * i),
			  layout[i].npages);
	if (variant->big)
		add_lslot(self, BIG_ID, BIG_PAGES, 1ULL << 30, BIG_TRACKED);
	for (i = 0; i < self->nsl; i++)
		total += self->sl[i].ntrack;
	self->ranges = calloc(MAX_RANGES, sizeof(*self->ranges));
	ASSERT_NE(NULL, self->ranges);

	/* Page list: 3/4 of the stores go to a hot set of 32 pages. */
	for (i = 0; i < LIST_LEN; i++) {
		uint64_t n = rng_below(&self->rng, 4) ? rng_below(&self->rng, 32) * 17 % total
						      : rng_below(&self->rng, total);
		unsigned int s = 0;

		while (n >= self->sl[s].ntrack)
			n -= self->sl[s++].ntrack;
		gpas[i] = self->sl[s].gpa + self->sl[s].track[n] * PAGE_SIZE;
	}
	vm_create_vcpu(self->vm);
	self->vm->ctrl->seq = 0;
	guest_set_list(self->vm, gpas, LIST_LEN, 0);
}

FIXTURE_TEARDOWN(lost)
{
	unsigned int i;

	vm_free(self->vm);
	for (i = 0; i < self->nsl; i++) {
		free(self->sl[i].track);
		free(self->sl[i].sent);
		free(self->sl[i].bm);
		free(self->sl[i].sel);
		free(self->sl[i].tracked);
		free(self->sl[i].model);
	}
	free(self->ranges);
	if (self->dbfd >= 0)
		close(self->dbfd);
}

/* Check every tracked page against the dirty log; returns the lost ones. */
static unsigned int check_pages(struct __test_metadata *_metadata,
				FIXTURE_DATA(lost) *self, uint64_t *checked)
{
	unsigned int i, lost = 0;
	uint64_t t, p;

	for (i = 0; i < self->nsl; i++) {
		struct lslot *l = &self->sl[i];

		vm_get_dirty_log(self->vm, l->id, l->bm);
		/* pages the guest never writes: exactly the model */
		for (p = 0; l->model && p < (l->npages + 63) / 64; p++) {
			uint64_t got = l->bm[p] & ~l->tracked[p];

			if (got == l->model[p])
				continue;
			if (lost++ < 10)
				TH_LOG("MODEL: slot %u pages %llu..+63 untracked dirty bits %#llx, model %#llx",
				       l->id, (unsigned long long)p * 64,
				       (unsigned long long)got, (unsigned long long)l->model[p]);
		}
		for (t = 0; t < l->ntrack; t++) {
			p = l->track[t];
			if (!memcmp(l->hva + p * PAGE_SIZE, l->sent + t * PAGE_SIZE, PAGE_SIZE))
				continue;
			(*checked)++;
			if (test_bit64(l->bm, p))
				continue;
			if (lost++ < 10)
				TH_LOG("LOST: slot %u page %llu changed but is clean",
				       l->id, (unsigned long long)p);
		}
	}
	return lost;
}

static void wait_for_stores(struct vm *vm, uint32_t seq0, uint32_t n)
{
	uint64_t t0 = now_ns();
	unsigned int spins = 0;

	while ((uint32_t)(__atomic_load_n(&vm->ctrl->seq, __ATOMIC_RELAXED) - seq0) < n &&
	       now_ns() - t0 < 200 * 1000000ULL) {
		if (++spins < 100)
			sched_yield();
		else
			usleep(20);
	}
}

TEST_F_TIMEOUT(lost, no_lost_dirty_pages, 120)
{
	uint64_t budget_ns, t0, iters = 0, checked = 0, requested = 0;
	uint64_t cleared = 0, calls = 0, max_call_ns = 0, t_pause = 0, t_clear = 0, t_wait = 0, t_check = 0;
	const char *env = getenv("KVM_DIRTYBATCH_LOST_SECONDS");
	struct kvm_dirtybatch_stats st0 = { 0 }, st1;
	const char *name = variant->big ? "batch, lock breaks" : variant->batch ? "batch" : "plain";
	unsigned int lost = 0, i;
	struct vm *vm = self->vm;

	budget_ns = (env ? strtoull(env, NULL, 0) : 3) * 1000000000ULL;
	if (variant->batch)
		ASSERT_EQ(0, db_get_stats(self->dbfd, &st0));
	vcpu_start(vm);
	t0 = now_ns();
	while ((now_ns() - t0 < budget_ns || iters < 5) && iters < 100000) {
		uint64_t must = 0, maxc = 0, c0;
		unsigned int nr = 0;
		uint32_t seq0;

		c0 = now_ns();
		ASSERT_EQ(0, guest_pause(vm, 30000)) TH_LOG("guest did not ack the pause");
		t_pause += now_ns() - c0;
		c0 = now_ns();
		lost += check_pages(_metadata, self, &checked);
		t_check += now_ns() - c0;
		seq0 = vm->ctrl->seq;
		guest_resume(vm);
		ASSERT_EQ(0, lost) TH_LOG("after %llu iterations", (unsigned long long)iters);

		/* choose: 60% of the dirty pages, 3% of the clean ones */
		for (i = 0; i < self->nsl; i++) {
			struct lslot *l = &self->sl[i];
			uint64_t npages = l->npages, t, w, nw = (npages + 63) / 64;

			memset(l->sel, 0, bitmap_bytes(npages));
			for (t = 0; t < l->ntrack; t++) {
				bool d = test_bit64(l->bm, l->track[t]);

				if (rng_below(&self->rng, 100) < (d ? 60 : 3)) {
					set_bit64(l->sel, l->track[t]);
					maxc++;
					must += d;
				}
			}
			/*
			 * Untracked pages of the big slot: a random quarter of
			 * the words, random bits; exact, as the guest never
			 * writes them.
			 */
			for (w = 0; l->model && w < nw; w++) {
				uint64_t m;

				if (rng_below(&self->rng, 4))
					continue;
				m = rng_next(&self->rng) & ~l->tracked[w];
				if (w == nw - 1 && npages % 64)
					m &= (1ULL << (npages % 64)) - 1;
				l->sel[w] |= m;
				must += __builtin_popcountll(m & l->model[w]);
				maxc += __builtin_popcountll(m & l->model[w]);
				l->model[w] &= ~m;
			}
			/* cut the slot into windows of 1..4 words, the big one: whole */
			for (w = 0; w < nw;) {
				uint64_t len = l->ntrack < npages ? nw : 1 + rng_below(&self->rng, 4);
				struct kvm_dirtybatch_range *r;

				if (w + len > nw)
					len = nw - w;
				r = &self->ranges[nr++];
				r->slot = l->id;
				r->first_page = w * 64;
				r->num_pages = w + len == nw ? npages - w * 64 : len * 64;
				r->dirty_bitmap = (uintptr_t)&l->sel[w];
				/* sometimes the same window again (overlap) */
				if (variant->batch && !rng_below(&self->rng, 8))
					self->ranges[nr++] = *r;
				w += len;
			}
		}
		requested += maxc;
		c0 = now_ns();
		if (variant->batch) {
			struct kvm_dirtybatch_clear c = {
				.vm_fd = vm->fd, .count = nr,
				.range_size = sizeof(struct kvm_dirtybatch_range),
				.ranges = (uintptr_t)self->ranges,
			};

			ASSERT_EQ(0, db_clear(self->dbfd, &c));
			ASSERT_EQ(nr, c.error_index);
			/* KVM's native ioctl does not count what it cleared */
			if (db_backend_has_stats()) {
				ASSERT_LE(must, c.pages_cleared);
				ASSERT_GE(maxc, c.pages_cleared);
				cleared += c.pages_cleared;
			} else {
				cleared += must;	/* at least */
			}
			calls++;
		} else {
			for (i = 0; i < nr; i++) {
				struct kvm_dirtybatch_range *r = &self->ranges[i];

				vm_clear_dirty_log(vm, r->slot, r->first_page, r->num_pages,
						   (void *)(uintptr_t)r->dirty_bitmap);
				calls++;
			}
			cleared += must;	/* at least */
		}
		c0 = now_ns() - c0;
		t_clear += c0;
		if (c0 > max_call_ns)
			max_call_ns = c0;
		/* only now snapshot what the host "sent" */
		for (i = 0; i < self->nsl; i++) {
			struct lslot *l = &self->sl[i];
			uint64_t t;

			for (t = 0; t < l->ntrack; t++)
				if (test_bit64(l->sel, l->track[t]))
					memcpy(l->sent + t * PAGE_SIZE,
					       l->hva + l->track[t] * PAGE_SIZE, PAGE_SIZE);
		}
		/* let the guest make some progress before the next pause */
		c0 = now_ns();
		wait_for_stores(vm, seq0, 1 + rng_below(&self->rng, 64));
		t_wait += now_ns() - c0;
		iters++;
	}
	/* final check with the guest stopped */
	vcpu_stop(vm);
	lost += check_pages(_metadata, self, &checked);
	{
		static const char * const names[] = { "pf_taken", "pf_fixed", "pf_fast", "exits" };
		char buf[256];
		size_t off = 0;
		unsigned int k;
		uint64_t v;

		for (k = 0; k < ARRAY_SIZE(names); k++)
			if (!vm_read_stat(vm, true, names[k], &v))
				off += snprintf(buf + off, sizeof(buf) - off, " %s %llu",
						names[k], (unsigned long long)v);
		buf[off] = 0;
		ksft_print_msg("lost_dirty(%s): vCPU:%s; host ms: pause %llu, check %llu, clear %llu, wait %llu, total %llu\n",
			       name, buf,
			       (unsigned long long)t_pause / 1000000,
			       (unsigned long long)t_check / 1000000,
			       (unsigned long long)t_clear / 1000000,
			       (unsigned long long)t_wait / 1000000,
			       (unsigned long long)(now_ns() - t0) / 1000000);
	}
	ksft_print_msg("lost_dirty(%s): %llu iterations, %u guest stores, %llu changed pages checked, "
		       "%llu pages requested, %llu%s dirty bits cleared, %llu clear calls (max %llu us), %u lost\n",
		       name, (unsigned long long)iters,
		       vm->ctrl->seq, (unsigned long long)checked,
		       (unsigned long long)requested, (unsigned long long)cleared,
		       variant->batch && db_backend_has_stats() ? "" : "+",
		       (unsigned long long)calls,
		       (unsigned long long)max_call_ns / 1000, lost);
	ASSERT_EQ(0, lost);
	ASSERT_LT(0, checked);
	if (variant->batch && db_backend_has_stats()) {
		/* one hold per call, plus one per break */
		ASSERT_EQ(0, db_get_stats(self->dbfd, &st1));
		ksft_print_msg("lost_dirty(%s): %llu calls, %llu MMU-lock holds, %llu breaks\n",
			       name, (unsigned long long)calls,
			       (unsigned long long)(st1.mmu_lock_holds - st0.mmu_lock_holds),
			       (unsigned long long)(st1.lock_breaks - st0.lock_breaks));
		EXPECT_EQ(calls + st1.lock_breaks - st0.lock_breaks,
			  st1.mmu_lock_holds - st0.mmu_lock_holds);
	}
	ASSERT_LT(0, cleared);
}

DIRTYBATCH_TEST_MAIN(false)
