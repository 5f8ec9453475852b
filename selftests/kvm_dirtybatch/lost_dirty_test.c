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
 *
 * The "plain" variant needs only /dev/kvm (host test of the VM helper);
 * the "batch" variant needs /dev/kvm_dirtybatch and is skipped without it.
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

static const struct { uint32_t id; uint64_t npages; } layout[] = {
	{ 1, 300 }, { 2, 64 }, { 3, 1 }, { 4, 130 }, { 40, 257 }, { 7, 129 },
};
#define NSLOTS ARRAY_SIZE(layout)

FIXTURE(lost) {
	struct vm *vm;
	int dbfd;
	uint8_t *sent[NSLOTS];
	uint64_t *bm[NSLOTS];		/* dirty log read at the pause */
	uint64_t *sel[NSLOTS];		/* pages chosen for clearing */
	uint64_t *clr[NSLOTS];		/* bitmaps handed to the clear */
	struct kvm_dirtybatch_range *ranges;
	struct rng rng;
};

FIXTURE_VARIANT(lost) {
	bool batch;
};

FIXTURE_VARIANT_ADD(lost, plain) { .batch = false };
FIXTURE_VARIANT_ADD(lost, batch) { .batch = true };

static uint64_t slot_gpa(unsigned int i)
{
	return MIB * (2 + 2 * i);
}

FIXTURE_SETUP(lost)
{
	uint64_t gpas[LIST_LEN];
	const char *why = NULL;
	unsigned int i, total = 0;

	self->dbfd = -1;
	self->vm = NULL;
	if (variant->batch && !db_available(&why))
		SKIP(return, "%s", why);
	if (variant->batch) {
		self->dbfd = db_open();
		ASSERT_LE(0, self->dbfd);
	}
	rng_init(&self->rng, test_seed("lost_dirty"));
	self->vm = vm_create(true);
	for (i = 0; i < NSLOTS; i++) {
		size_t bytes = bitmap_bytes(layout[i].npages) + 64;

		vm_add_slot(self->vm, layout[i].id, slot_gpa(i), layout[i].npages,
			    KVM_MEM_LOG_DIRTY_PAGES);
		self->sent[i] = calloc(layout[i].npages, PAGE_SIZE);
		self->bm[i] = calloc(1, bytes);
		self->sel[i] = calloc(1, bytes);
		self->clr[i] = calloc(1, bytes);
		ASSERT_TRUE(self->sent[i] && self->bm[i] && self->sel[i] && self->clr[i]);
		total += layout[i].npages;
	}
	self->ranges = calloc(MAX_RANGES, sizeof(*self->ranges));
	ASSERT_NE(NULL, self->ranges);

	/* Page list: 3/4 of the stores go to a hot set of 32 pages. */
	for (i = 0; i < LIST_LEN; i++) {
		uint64_t n = rng_below(&self->rng, 4) ? rng_below(&self->rng, 32) * 17 % total
						      : rng_below(&self->rng, total);
		unsigned int s = 0;

		while (n >= layout[s].npages)
			n -= layout[s++].npages;
		gpas[i] = slot_gpa(s) + n * PAGE_SIZE;
	}
	vm_create_vcpu(self->vm);
	self->vm->ctrl->seq = 0;
	guest_set_list(self->vm, gpas, LIST_LEN, 0);
}

FIXTURE_TEARDOWN(lost)
{
	unsigned int i;

	vm_free(self->vm);
	for (i = 0; i < NSLOTS; i++) {
		free(self->sent[i]);
		free(self->bm[i]);
		free(self->sel[i]);
		free(self->clr[i]);
	}
	free(self->ranges);
	if (self->dbfd >= 0)
		close(self->dbfd);
}

/* Check every page against the dirty log; returns the number of lost pages. */
static unsigned int check_pages(struct __test_metadata *_metadata,
				FIXTURE_DATA(lost) *self, uint64_t *checked)
{
	unsigned int i, lost = 0;
	uint64_t p;

	for (i = 0; i < NSLOTS; i++) {
		struct vm_slot *s = vm_find_slot(self->vm, layout[i].id);

		vm_get_dirty_log(self->vm, layout[i].id, self->bm[i]);
		for (p = 0; p < layout[i].npages; p++) {
			uint8_t *live = (uint8_t *)s->hva + p * PAGE_SIZE;

			if (!memcmp(live, self->sent[i] + p * PAGE_SIZE, PAGE_SIZE))
				continue;
			(*checked)++;
			if (test_bit64(self->bm[i], p))
				continue;
			if (lost++ < 10)
				TH_LOG("LOST: slot %u page %llu changed but is clean",
				       layout[i].id, (unsigned long long)p);
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
	unsigned int lost = 0, i;
	struct vm *vm = self->vm;

	budget_ns = (env ? strtoull(env, NULL, 0) : 3) * 1000000000ULL;
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
		for (i = 0; i < NSLOTS; i++) {
			uint64_t npages = layout[i].npages, p, w, nw = (npages + 63) / 64;

			memset(self->sel[i], 0, bitmap_bytes(npages));
			for (p = 0; p < npages; p++) {
				bool d = test_bit64(self->bm[i], p);

				if (rng_below(&self->rng, 100) < (d ? 60 : 3)) {
					set_bit64(self->sel[i], p);
					maxc++;
					must += d;
				}
			}
			memcpy(self->clr[i], self->sel[i], bitmap_bytes(npages));
			/* cut the slot into windows of 1..4 words */
			for (w = 0; w < nw;) {
				uint64_t len = 1 + rng_below(&self->rng, 4);
				struct kvm_dirtybatch_range *r;

				if (w + len > nw)
					len = nw - w;
				r = &self->ranges[nr++];
				r->slot = layout[i].id;
				r->first_page = w * 64;
				r->num_pages = w + len == nw ? npages - w * 64 : len * 64;
				r->dirty_bitmap = (uintptr_t)&self->clr[i][w];
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
			ASSERT_LE(must, c.pages_cleared);
			ASSERT_GE(maxc, c.pages_cleared);
			cleared += c.pages_cleared;
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
		for (i = 0; i < NSLOTS; i++) {
			struct vm_slot *s = vm_find_slot(vm, layout[i].id);
			uint64_t p;

			for (p = 0; p < layout[i].npages; p++)
				if (test_bit64(self->sel[i], p))
					memcpy(self->sent[i] + p * PAGE_SIZE,
					       (uint8_t *)s->hva + p * PAGE_SIZE, PAGE_SIZE);
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
			       variant->batch ? "batch" : "plain", buf,
			       (unsigned long long)t_pause / 1000000,
			       (unsigned long long)t_check / 1000000,
			       (unsigned long long)t_clear / 1000000,
			       (unsigned long long)t_wait / 1000000,
			       (unsigned long long)(now_ns() - t0) / 1000000);
	}
	ksft_print_msg("lost_dirty(%s): %llu iterations, %u guest stores, %llu changed pages checked, "
		       "%llu pages requested, %llu%s dirty bits cleared, %llu clear calls (max %llu us), %u lost\n",
		       variant->batch ? "batch" : "plain", (unsigned long long)iters,
		       vm->ctrl->seq, (unsigned long long)checked,
		       (unsigned long long)requested, (unsigned long long)cleared,
		       variant->batch ? "" : "+", (unsigned long long)calls,
		       (unsigned long long)max_call_ns / 1000, lost);
	ASSERT_EQ(0, lost);
	ASSERT_LT(0, checked);
	ASSERT_LT(0, cleared);
}

DIRTYBATCH_TEST_MAIN(false)
