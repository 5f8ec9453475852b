// SPDX-License-Identifier: GPL-2.0
/*
 * differential_test: KVM_DIRTYBATCH_CLEAR must do exactly what one
 * KVM_CLEAR_DIRTY_LOG per range does.
 *
 * Two VMs with identical memslot layouts (20+ slots in AS 0, sizes not
 * multiples of 64, a big slot of 8231 bitmap words, the largest slot id,
 * a slot mapped with 2 MiB pages before logging was enabled, plus slots in
 * AS 1 when the VM has it).  Each round applies the
 * same random batch (seeded: KVM_DIRTYBATCH_SEED; overlapping ranges,
 * misaligned bit patterns, tails, zero-page ranges, random strides) to VM A
 * with KVM_DIRTYBATCH_CLEAR and to VM B with KVM_CLEAR_DIRTY_LOG, and
 * checks: bitmaps of A == B == a reference model, pages_cleared == bits
 * that went 1 -> 0, VM A saw a remote TLB flush request (KVM binary stats)
 * if any bit was cleared, the ranges and bitmaps were not modified.  Every few rounds the vCPUs of both VMs write the same
 * pages (mostly clean ones, so lost write protection shows) and the
 * bitmaps and the vCPUs' page-fault counts must match again; memslots are moved / re-created / toggled the
 * same way in both.  KVM_DIRTYBATCH_DIFF_ROUNDS sets the rounds (default 40).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "util.h"

#define MIB		(1UL << 20)
#define MAX_DS		32
#define MAX_BATCH	256
#define LIST_MAX	160
/*
 * The big slot: 8231 bitmap words (2 GiB), ranges over it span many of the
 * 512-word pages through which the module reads bitmaps; 4135 words
 * (1 GiB) in a 32-bit build, whose twin VMs must fit in 4 GiB.
 */
#define BIG_WORDS	(sizeof(void *) < 8 ? 4096 : 8192)
#define BIG_PAGES	((BIG_WORDS + 37) * 64 + 100)

struct dslot {
	uint32_t slot;
	uint64_t npages;
	uint64_t gpa;
	bool logged;
	bool big;
};

FIXTURE(diff) {
	struct vm *v[2];		/* A: batch, B: plain */
	int dbfd;
	struct rng rng;
	struct dslot ds[MAX_DS];
	int nds;
	uint64_t next_gpa[2];		/* per address space */
	uint8_t *rbuf;
	uint64_t *bms[MAX_BATCH];
	uint32_t seq;
	/* totals */
	uint64_t batches, ranges, cleared, guest_runs, guest_pages, churns;
};

static uint64_t alloc_gpa(FIXTURE_DATA(diff) *self, uint32_t as, uint64_t npages)
{
	uint64_t gpa = self->next_gpa[as];

	self->next_gpa[as] += (npages * PAGE_SIZE + 2 * MIB - 1) & ~(2 * MIB - 1);
	VM_CHECK(self->next_gpa[as] < (1ULL << 30), "out of guest-physical space");
	return gpa;
}

static void add_ds(FIXTURE_DATA(diff) *self, uint32_t slot, uint64_t npages,
		   bool logged, bool big)
{
	struct dslot *d = &self->ds[self->nds++];
	int i;

	d->slot = slot;
	d->npages = npages;
	d->logged = logged;
	d->big = big;
	d->gpa = big ? (1ULL << 30) : alloc_gpa(self, slot >> 16, npages);
	for (i = 0; i < 2; i++)
		vm_add_slot(self->v[i], slot, d->gpa, npages,
			    logged ? KVM_MEM_LOG_DIRTY_PAGES : 0);
}

/*
 * Slot 22: transparent huge pages, written by the guest before dirty
 * logging is enabled, so KVM maps it with 2 MiB pages; with
 * KVM_DIRTY_LOG_INITIALLY_SET enabling logging does not split them, the
 * first clear in them does (kvm_arch_mmu_enable_log_dirty_pt_masked()).
 */
static void add_thp_slot(struct __test_metadata *_metadata, FIXTURE_DATA(diff) *self)
{
	const uint64_t npages = 4 * 512 + 64;
	uint64_t gpas[5], p2m[2] = { 0, 0 };
	struct dslot *d = &self->ds[self->nds++];
	unsigned int i;

	d->slot = 22;
	d->npages = npages;
	d->gpa = (alloc_gpa(self, 0, npages + 512) + 2 * MIB - 1) & ~(2 * MIB - 1);
	for (i = 0; i < 5; i++)
		gpas[i] = d->gpa + (i * 512 + 7) * PAGE_SIZE;
	for (i = 0; i < 2; i++) {
		struct vm *vm = self->v[i];

		vm_add_slot(vm, d->slot, d->gpa, npages, VM_SLOT_THP);
		vm->ctrl->seq = 0;
		guest_set_list(vm, gpas, 5, 1);
		vcpu_reset(vm);
		vcpu_run_to_done(vm);
		vm_read_stat(vm, false, "pages_2m", &p2m[i]);
		vm_set_slot_flags(vm, d->slot, KVM_MEM_LOG_DIRTY_PAGES);
	}
	d->logged = true;
	self->seq = 5;
	TH_LOG("huge page slot: %llu / %llu 2 MiB mappings in the batch / plain VM",
	       (unsigned long long)p2m[0], (unsigned long long)p2m[1]);
}

FIXTURE_SETUP(diff)
{
	static const uint64_t sizes[] = {
		1, 2, 63, 64, 65, 100, 127, 128, 129, 255, 256, 300, 511, 512,
		513, 1000, 4096 + 17, 777, 191,
	};
	uint32_t as1, id, max_id;
	unsigned int i;

	memset(self, 0, sizeof(*self));
	self->dbfd = db_open();
	ASSERT_LE(0, self->dbfd);
	rng_init(&self->rng, test_seed("differential"));
	self->v[0] = vm_create(true);
	self->v[1] = vm_create(true);
	vm_create_vcpu(self->v[0]);
	vm_create_vcpu(self->v[1]);
	self->next_gpa[0] = self->next_gpa[1] = 16 * MIB;
	as1 = self->v[0]->nr_as > 1 ? 1U << 16 : 0;
	max_id = self->v[0]->nr_memslots - 1;

	for (i = 0; i < ARRAY_SIZE(sizes); i++) {
		id = i < 16 ? i + 1 : (i == 16 ? 100 : i == 17 ? 1000 : max_id);
		add_ds(self, id, sizes[i], true, false);
	}
	add_ds(self, 20, BIG_PAGES, true, true);
	add_ds(self, 21, 64, false, false);	/* written, never logged */
	add_thp_slot(_metadata, self);
	if (as1) {
		add_ds(self, as1 | 1, 77, true, false);
		add_ds(self, as1 | 2, 128, true, false);
		add_ds(self, as1 | 7, 300, true, false);
	}
	self->rbuf = calloc(MAX_BATCH, 256);
	ASSERT_NE(NULL, self->rbuf);
	TH_LOG("%d memslots (%s address space 1)", self->nds, as1 ? "with" : "without");
}

FIXTURE_TEARDOWN(diff)
{
	int i;

	vm_free(self->v[0]);
	vm_free(self->v[1]);
	for (i = 0; i < MAX_BATCH; i++)
		free(self->bms[i]);
	free(self->rbuf);
	if (self->dbfd >= 0)
		close(self->dbfd);
}

static bool compare(struct __test_metadata *_metadata, FIXTURE_DATA(diff) *self,
		    const char *when)
{
	struct snap a, b;
	char msg[256];
	bool eq;

	snap_take(self->v[0], &a);
	snap_take(self->v[1], &b);
	eq = snap_equal(&a, &b, msg, sizeof(msg));
	if (!eq)
		TH_LOG("%s: batch VM differs from plain VM: %s", when, msg);
	snap_free(&a);
	snap_free(&b);
	return eq;
}

/*
 * Both vCPUs write the same pages; 3/4 of them currently clean in VM B.
 * The vCPUs must also take the same number of page faults (KVM binary
 * stats "pf_taken"): identical write protection, none missing (that would
 * also show in the bitmaps) and none extra (which would not).
 */
static void guest_round(struct __test_metadata *_metadata, FIXTURE_DATA(diff) *self)
{
	uint64_t pf[2];
	int have_pf = 0;
	uint64_t gpas[LIST_MAX], bm_words[64];
	unsigned int n = 0, tries = 0, i;
	uint32_t nr = 16 + rng_below(&self->rng, LIST_MAX - 16);

	while (n < nr && tries++ < 20 * LIST_MAX) {
		struct dslot *d = &self->ds[rng_below(&self->rng, self->nds)];
		uint64_t page, *bm;

		if (d->slot >> 16)
			continue;
		page = rng_below(&self->rng, d->npages);
		if (d->logged && rng_below(&self->rng, 4)) {
			size_t bytes = bitmap_bytes(d->npages);

			bm = bytes <= sizeof(bm_words) ? bm_words : malloc(bytes);
			vm_get_dirty_log(self->v[1], d->slot, bm);
			if (test_bit64(bm, page)) {
				for (i = 0; i < 64 && test_bit64(bm, page); i++)
					page = rng_below(&self->rng, d->npages);
			}
			if (bm != bm_words)
				free(bm);
		}
		gpas[n++] = d->gpa + page * PAGE_SIZE;
	}
	for (i = 0; i < 2; i++) {
		struct vm *vm = self->v[i];

		vm->ctrl->seq = self->seq;
		guest_set_list(vm, gpas, n, 1);
		vcpu_reset(vm);
		vcpu_run_to_done(vm);
		have_pf += !vm_read_stat(vm, true, "pf_taken", &pf[i]);
	}
	if (have_pf == 2)
		EXPECT_EQ(pf[1], pf[0])
			TH_LOG("guest run %llu: vCPU page faults: batch VM %llu, plain VM %llu",
			       (unsigned long long)self->guest_runs,
			       (unsigned long long)pf[0], (unsigned long long)pf[1]);
	self->seq += n;
	self->guest_runs++;
	self->guest_pages += n;
}

/* Same memslot change in both VMs. */
static void churn(FIXTURE_DATA(diff) *self)
{
	struct dslot *d;
	unsigned int i, op;

	do
		d = &self->ds[rng_below(&self->rng, self->nds)];
	while (d->big);
	op = rng_below(&self->rng, 3);
	switch (op) {
	case 0:		/* move */
		d->gpa = alloc_gpa(self, d->slot >> 16, d->npages);
		for (i = 0; i < 2; i++)
			vm_move_slot(self->v[i], d->slot, d->gpa);
		break;
	case 1:		/* delete, re-create with another size */
		for (i = 0; i < 2; i++)
			vm_delete_slot(self->v[i], d->slot);
		d->npages = 1 + rng_below(&self->rng, 700);
		d->gpa = alloc_gpa(self, d->slot >> 16, d->npages);
		for (i = 0; i < 2; i++)
			vm_add_slot(self->v[i], d->slot, d->gpa, d->npages,
				    d->logged ? KVM_MEM_LOG_DIRTY_PAGES : 0);
		break;
	case 2:		/* dirty logging off and on again */
		if (!d->logged)
			break;
		for (i = 0; i < 2; i++) {
			vm_set_slot_flags(self->v[i], d->slot, 0);
			vm_set_slot_flags(self->v[i], d->slot, KVM_MEM_LOG_DIRTY_PAGES);
		}
		break;
	}
	self->churns++;
}

static void fill_pattern(struct rng *rng, uint64_t *bm, uint64_t nbits)
{
	uint64_t words = (nbits + 63) / 64, i, a, b;
	unsigned int kind = rng_below(rng, 7), dens;

	memset(bm, 0, words * 8);
	switch (kind) {
	case 0:				/* all ones (also past the slot end) */
		memset(bm, 0xff, words * 8);
		break;
	case 1:				/* random density */
	case 2:
		dens = (unsigned int[]){ 1, 10, 50, 90 }[rng_below(rng, 4)];
		for (i = 0; i < nbits; i++)
			if (rng_below(rng, 100) < dens)
				set_bit64(bm, i);
		break;
	case 3:				/* window with misaligned head/tail */
	case 4:
		if (!nbits)
			break;
		a = rng_below(rng, nbits);
		b = a + 1 + rng_below(rng, nbits - a);
		for (i = a; i < b; i++)
			set_bit64(bm, i);
		break;
	case 5:				/* single bit */
		if (nbits)
			set_bit64(bm, rng_below(rng, nbits));
		break;
	case 6:				/* nothing */
		break;
	}
}

static void make_range(FIXTURE_DATA(diff) *self, struct kvm_dirtybatch_range *r,
		       int i, const struct kvm_dirtybatch_range *prev, int nprev)
{
	struct rng *rng = &self->rng;
	struct dslot *d;
	uint64_t nwords, fw, nw;

	if (nprev && !rng_below(rng, 5)) {
		/* overlap an earlier range: same window or shifted */
		*r = prev[rng_below(rng, nprev)];
		if (rng_below(rng, 2) && r->first_page >= 64 && r->num_pages &&
		    !(r->num_pages % 64))
			r->first_page -= 64;
	} else {
		do
			d = &self->ds[rng_below(rng, self->nds)];
		while (!d->logged || (d->big && rng_below(rng, 4)));
		nwords = (d->npages + 63) / 64;
		fw = rng_below(rng, nwords);
		r->slot = d->slot;
		r->first_page = fw * 64;
		switch (rng_below(rng, 8)) {
		case 0:			/* whole slot */
			r->first_page = 0;
			r->num_pages = d->npages;
			break;
		case 1:			/* to the end */
			r->num_pages = d->npages - fw * 64;
			break;
		case 2:			/* empty */
			r->num_pages = 0;
			if (!(d->npages % 64) && rng_below(rng, 2))
				r->first_page = d->npages;
			break;
		default:		/* whole words */
			nw = 1 + rng_below(rng, nwords - fw < 70 ? nwords - fw : 70);
			if (fw + nw == nwords)
				r->num_pages = d->npages - fw * 64;
			else
				r->num_pages = nw * 64;
			break;
		}
	}
	free(self->bms[i]);
	self->bms[i] = malloc(bitmap_bytes(r->num_pages) + 8);
	VM_CHECK(self->bms[i], "malloc");
	fill_pattern(rng, self->bms[i], bitmap_bytes(r->num_pages) * 8);
	r->dirty_bitmap = (uintptr_t)self->bms[i];
}

static uint64_t bm_hash(const uint64_t *bm, size_t bytes)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	size_t i;

	for (i = 0; i < bytes / 8; i++)
		h = (h ^ bm[i]) * 0x100000001b3ULL;
	return h;
}

static void batch_round(struct __test_metadata *_metadata, FIXTURE_DATA(diff) *self,
			unsigned int round)
{
	static const uint32_t strides[] = { 24, 24, 24, 32, 64, 256 };
	static uint8_t rbuf0[MAX_BATCH * 256];
	uint64_t bmsum0[MAX_BATCH], fl0 = 0, fl1 = 0;
	bool have_fl;
	struct kvm_dirtybatch_range tmp[MAX_BATCH];
	struct snap before, after, model;
	struct kvm_dirtybatch_clear c;
	uint32_t stride = strides[rng_below(&self->rng, ARRAY_SIZE(strides))];
	uint32_t n = 1 + rng_below(&self->rng, rng_below(&self->rng, 4) ? 24 : MAX_BATCH);
	uint64_t expect, cleared;
	char msg[256];
	uint32_t i;
	int r;

	memset(self->rbuf, 0, MAX_BATCH * 256);
	for (i = 0; i < n; i++) {
		make_range(self, &tmp[i], i, tmp, i);
		memcpy(self->rbuf + (size_t)i * stride, &tmp[i], sizeof(tmp[i]));
	}
	snap_take(self->v[0], &before);
	snap_dup(&before, &model);
	expect = snap_apply(&model, tmp, n, sizeof(tmp[0]));

	c = (struct kvm_dirtybatch_clear){ .vm_fd = self->v[0]->fd, .count = n,
		.range_size = stride, .ranges = (uintptr_t)self->rbuf,
		.error_index = 0xdeadbeef };
	memcpy(rbuf0, self->rbuf, (size_t)n * stride);
	for (i = 0; i < n; i++)
		bmsum0[i] = bm_hash(self->bms[i], bitmap_bytes(tmp[i].num_pages));
	have_fl = !vm_read_stat(self->v[0], false, "remote_tlb_flush_requests", &fl0);
	r = db_clear(self->dbfd, &c);
	have_fl = have_fl &&
		  !vm_read_stat(self->v[0], false, "remote_tlb_flush_requests", &fl1);
	EXPECT_EQ(0, memcmp(rbuf0, self->rbuf, (size_t)n * stride)) TH_LOG("ranges changed");
	for (i = 0; i < n; i++)
		EXPECT_EQ(bmsum0[i], bm_hash(self->bms[i], bitmap_bytes(tmp[i].num_pages)))
			TH_LOG("round %u: bitmap of range %u changed", round, i);
	ASSERT_EQ(0, r) TH_LOG("round %u: batch of %u ranges: %s, error_index %u",
			       round, n, strerror(-r), c.error_index);
	for (i = 0; i < n; i++)
		vm_clear_dirty_log(self->v[1], tmp[i].slot, tmp[i].first_page,
				   tmp[i].num_pages, self->bms[i]);
	snap_take(self->v[0], &after);
	EXPECT_EQ(n, c.error_index);
	/* KVM's native ioctl does not count what it cleared: take the bitmaps' word */
	cleared = snap_cleared(&before, &after);
	if (db_backend_has_stats()) {
		EXPECT_EQ(expect, c.pages_cleared) TH_LOG("round %u", round);
		EXPECT_EQ(cleared, c.pages_cleared) TH_LOG("round %u", round);
	}
	EXPECT_EQ(expect, cleared) TH_LOG("round %u", round);
	if (have_fl && cleared)
		EXPECT_LE(1, fl1 - fl0) TH_LOG("round %u: %llu pages cleared, no TLB flush",
					       round, (unsigned long long)cleared);
	EXPECT_TRUE(snap_equal(&model, &after, msg, sizeof(msg)))
		TH_LOG("round %u: model vs batch VM: %s", round, msg);
	snprintf(msg, sizeof(msg), "round %u after the clear (%u ranges, stride %u)",
		 round, n, stride);
	EXPECT_TRUE(compare(_metadata, self, msg));
	snap_free(&before);
	snap_free(&after);
	snap_free(&model);
	self->batches++;
	self->ranges += n;
	self->cleared += cleared;
}

TEST_F_TIMEOUT(diff, random_batches, 300)
{
	const char *env = getenv("KVM_DIRTYBATCH_DIFF_ROUNDS");
	unsigned int rounds = env ? strtoul(env, NULL, 0) : 40, round;
	uint64_t t0 = now_ns();
	char when[64];

	ASSERT_TRUE(compare(_metadata, self, "initial"));
	for (round = 0; round < rounds; round++) {
		if (round % 4 == 3) {
			guest_round(_metadata, self);
			snprintf(when, sizeof(when), "round %u after guest writes", round);
			ASSERT_TRUE(compare(_metadata, self, when));
		}
		if (round % 10 == 9) {
			churn(self);
			snprintf(when, sizeof(when), "round %u after memslot change", round);
			ASSERT_TRUE(compare(_metadata, self, when));
		}
		batch_round(_metadata, self, round);
		if (_metadata->exit_code)
			break;
	}
	/* dirty tracking after the last clear */
	guest_round(_metadata, self);
	ASSERT_TRUE(compare(_metadata, self, "final guest writes"));
	{
		uint64_t pa = 0, pb = 0;

		if (!vm_read_stat(self->v[0], true, "pf_taken", &pa) &&
		    !vm_read_stat(self->v[1], true, "pf_taken", &pb))
			ksft_print_msg("differential: vCPU page faults: batch VM %llu, plain VM %llu\n",
				       (unsigned long long)pa, (unsigned long long)pb);
	}
	ksft_print_msg("differential: %u rounds, %llu batches, %llu ranges, %llu pages cleared, "
		       "%llu guest runs writing %llu pages, %llu memslot changes, %llu ms\n",
		       round, (unsigned long long)self->batches,
		       (unsigned long long)self->ranges, (unsigned long long)self->cleared,
		       (unsigned long long)self->guest_runs,
		       (unsigned long long)self->guest_pages,
		       (unsigned long long)self->churns,
		       (unsigned long long)(now_ns() - t0) / 1000000);
}

DIRTYBATCH_TEST_MAIN(true)
