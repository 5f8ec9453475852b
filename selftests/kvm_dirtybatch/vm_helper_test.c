// SPDX-License-Identifier: GPL-2.0
/*
 * vm_helper_test: validates the test VM helper and the plain KVM
 * dirty-log semantics the kvm_dirtybatch tests rely on.  Needs only
 * /dev/kvm (runs on the host and in the guests, module or not).
 *
 * - memslots in AS 0 and AS 1 (SMM) with INITIALLY_SET bitmaps,
 *   delete / re-add / move / logging toggles
 * - KVM_CLEAR_DIRTY_LOG errno semantics (the contract the module copies)
 * - a flat 32-bit vCPU writing a page list: content and dirty tracking
 * - the pause / ack / stop protocol of the guest loop
 * - KVM_CLEAR_DIRTY_LOG on a dirty-ring VM -> ENXIO
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "kselftest_harness.h"
#include "util.h"

#define MIB (1UL << 20)
#define GPA_DATA (1 * MIB)

FIXTURE(vm) {
	struct vm *vm;
	uint32_t as1;		/* 1 << 16 if AS 1 exists, else 0 */
};

FIXTURE_SETUP(vm)
{
	self->vm = vm_create(true);
	self->as1 = self->vm->nr_as > 1 ? 1U << 16 : 0;
	/* slot 1: 100 pages (not a multiple of 64), slot 2: 64, slot 3: 65 unlogged */
	vm_add_slot(self->vm, 1, GPA_DATA, 100, KVM_MEM_LOG_DIRTY_PAGES);
	vm_add_slot(self->vm, 2, GPA_DATA + MIB, 64, KVM_MEM_LOG_DIRTY_PAGES);
	vm_add_slot(self->vm, 3, GPA_DATA + 2 * MIB, 65, 0);
	if (self->as1)
		vm_add_slot(self->vm, self->as1 | 1, GPA_DATA + 3 * MIB, 77,
			    KVM_MEM_LOG_DIRTY_PAGES);
}

FIXTURE_TEARDOWN(vm)
{
	vm_free(self->vm);
}

TEST_F(vm, slots_and_initially_set)
{
	struct vm *vm = self->vm;
	uint64_t bm[64];
	char msg[256];
	struct snap s;

	TH_LOG("address spaces: %d, memslots: %d", vm->nr_as, vm->nr_memslots);
	snap_take(vm, &s);
	ASSERT_EQ(self->as1 ? 3 : 2, s.n);
	ASSERT_TRUE(snap_all_set(&s, msg, sizeof(msg))) TH_LOG("%s", msg);
	ASSERT_EQ(100 + 64 + (self->as1 ? 77 : 0), snap_count(&s));
	snap_free(&s);

	/* bits beyond the end of the slot are zero */
	memset(bm, 0xaa, sizeof(bm));
	vm_get_dirty_log(vm, 1, bm);
	EXPECT_EQ(~0ULL, bm[0]);
	EXPECT_EQ((1ULL << 36) - 1, bm[1]);

	EXPECT_EQ(-ENOENT, vm_get_dirty_log_try(vm, 3, bm));	/* unlogged */
	EXPECT_EQ(-ENOENT, vm_get_dirty_log_try(vm, 9, bm));	/* absent */
	EXPECT_EQ(-EINVAL, vm_get_dirty_log_try(vm, vm->nr_memslots, bm));
	EXPECT_EQ(-EINVAL, vm_get_dirty_log_try(vm, vm->nr_as << 16 | 1, bm));

	/* clear, then delete + re-add: a fresh all-ones bitmap */
	memset(bm, 0xff, sizeof(bm));
	vm_clear_dirty_log(vm, 2, 0, 64, bm);
	vm_get_dirty_log(vm, 2, bm);
	EXPECT_EQ(0, bm[0]);
	vm_delete_slot(vm, 2);
	EXPECT_EQ(-ENOENT, vm_get_dirty_log_try(vm, 2, bm));
	vm_add_slot(vm, 2, GPA_DATA + MIB, 64, KVM_MEM_LOG_DIRTY_PAGES);
	vm_get_dirty_log(vm, 2, bm);
	EXPECT_EQ(~0ULL, bm[0]);

	/* toggling logging off drops the bitmap, on again sets all ones */
	memset(bm, 0xff, sizeof(bm));
	vm_clear_dirty_log(vm, 2, 0, 64, bm);
	vm_set_slot_flags(vm, 2, 0);
	EXPECT_EQ(-ENOENT, vm_get_dirty_log_try(vm, 2, bm));
	vm_set_slot_flags(vm, 2, KVM_MEM_LOG_DIRTY_PAGES);
	vm_get_dirty_log(vm, 2, bm);
	EXPECT_EQ(~0ULL, bm[0]);

	/* move keeps the slot usable */
	vm_move_slot(vm, 1, GPA_DATA + 8 * MIB);
	vm_get_dirty_log(vm, 1, bm);
	EXPECT_EQ((1ULL << 36) - 1, bm[1]);
	if (self->as1) {
		vm_move_slot(vm, self->as1 | 1, GPA_DATA + 9 * MIB);
		vm_get_dirty_log(vm, self->as1 | 1, bm);
		EXPECT_EQ((1ULL << 13) - 1, bm[1]);
	}
}

/* The KVM_CLEAR_DIRTY_LOG contract that KVM_DIRTYBATCH_CLEAR reproduces. */
TEST_F(vm, plain_clear_semantics)
{
	struct vm *vm = self->vm;
	uint64_t bm[64], pat[2];
	void *hole;

	memset(bm, 0xff, sizeof(bm));
	EXPECT_EQ(-EINVAL, vm_clear_dirty_log_try(vm, vm->nr_memslots, 0, 64, bm));
	EXPECT_EQ(-EINVAL, vm_clear_dirty_log_try(vm, 0xffff, 0, 64, bm));
	EXPECT_EQ(-EINVAL, vm_clear_dirty_log_try(vm, vm->nr_as << 16 | 1, 0, 64, bm));
	EXPECT_EQ(-EINVAL, vm_clear_dirty_log_try(vm, 0xffff0001, 0, 64, bm));
	EXPECT_EQ(-EINVAL, vm_clear_dirty_log_try(vm, 1, 1, 63, bm));
	EXPECT_EQ(-EINVAL, vm_clear_dirty_log_try(vm, 1, 32, 64, bm));
	EXPECT_EQ(-ENOENT, vm_clear_dirty_log_try(vm, 3, 0, 64, bm));
	EXPECT_EQ(-ENOENT, vm_clear_dirty_log_try(vm, 9, 0, 64, bm));
	EXPECT_EQ(-ENOENT, vm_clear_dirty_log_try(vm, vm->nr_memslots - 1, 0, 64, bm));
	EXPECT_EQ(-EINVAL, vm_clear_dirty_log_try(vm, 1, 128, 0, bm));
	EXPECT_EQ(-EINVAL, vm_clear_dirty_log_try(vm, 1, 0, 101, bm));
	EXPECT_EQ(-EINVAL, vm_clear_dirty_log_try(vm, 1, 64, 37, bm));
	EXPECT_EQ(-EINVAL, vm_clear_dirty_log_try(vm, 1, 0, 63, bm));
	EXPECT_EQ(-EINVAL, vm_clear_dirty_log_try(vm, 1, -64ULL, 128, bm));
	EXPECT_EQ(-EINVAL, vm_clear_dirty_log_try(vm, 1, 1ULL << 63, 64, bm));
	hole = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, hole);
	munmap(hole, 4096);
	EXPECT_EQ(-EFAULT, vm_clear_dirty_log_try(vm, 1, 0, 64, hole));
	/* nothing above changed anything */
	vm_get_dirty_log(vm, 1, bm);
	EXPECT_EQ(~0ULL, bm[0]);
	EXPECT_EQ((1ULL << 36) - 1, bm[1]);

	/* valid edge cases */
	EXPECT_EQ(0, vm_clear_dirty_log_try(vm, 1, 0, 0, bm));
	EXPECT_EQ(0, vm_clear_dirty_log_try(vm, 1, 64, 0, bm));
	EXPECT_EQ(0, vm_clear_dirty_log_try(vm, 2, 64, 0, bm)); /* first == npages */
	EXPECT_EQ(-EINVAL, vm_clear_dirty_log_try(vm, 2, 128, 0, bm));
	/* tail range ending at the slot end, bits past the end ignored */
	pat[0] = 0xf0f0f0f0f0f0f0f0ULL;
	pat[1] = ~0ULL;
	EXPECT_EQ(0, vm_clear_dirty_log_try(vm, 1, 64, 36, pat));
	EXPECT_EQ(0, vm_clear_dirty_log_try(vm, 1, 0, 64, &pat[0]));
	vm_get_dirty_log(vm, 1, bm);
	EXPECT_EQ(~pat[0], bm[0]);
	EXPECT_EQ(((1ULL << 36) - 1) & ~pat[0], bm[1]);
	if (self->as1) {
		pat[0] = 1;
		pat[1] = 1ULL << 12;		/* page 76, the last one */
		EXPECT_EQ(0, vm_clear_dirty_log_try(vm, self->as1 | 1, 0, 77, pat));
		vm_get_dirty_log(vm, self->as1 | 1, bm);
		EXPECT_EQ(~1ULL, bm[0]);
		EXPECT_EQ((1ULL << 12) - 1, bm[1]);
	}
}

static void clear_all(struct vm *vm)
{
	static uint64_t ones[1024];
	int i;

	memset(ones, 0xff, sizeof(ones));
	for (i = 0; i < VM_MAX_SLOTS; i++) {
		struct vm_slot *s = &vm->slots[i];

		if (s->used && (s->flags & KVM_MEM_LOG_DIRTY_PAGES))
			vm_clear_dirty_log(vm, s->slot, 0, s->npages, ones);
	}
}

TEST_F(vm, vcpu_writes_are_tracked)
{
	struct vm *vm = self->vm;
	uint64_t gpas[6] = {
		GPA_DATA, GPA_DATA + 5 * PAGE_SIZE, GPA_DATA + 99 * PAGE_SIZE,
		GPA_DATA + MIB + 63 * PAGE_SIZE, GPA_DATA + 2 * MIB,
		GPA_DATA + 5 * PAGE_SIZE,
	};
	uint64_t bm[64];
	uint32_t seq0 = 1000, i;
	struct snap s;

	vm_create_vcpu(vm);
	clear_all(vm);
	snap_take(vm, &s);
	ASSERT_EQ(0, snap_count(&s));
	snap_free(&s);

	vm->ctrl->seq = seq0;
	guest_set_list(vm, gpas, 6, 2);
	vcpu_run_to_done(vm);
	ASSERT_EQ(seq0 + 12, vm->ctrl->seq);
	ASSERT_EQ(2, vm->ctrl->done);
	for (i = 0; i < 12; i++) {
		uint32_t seq = seq0 + 1 + i;
		uint32_t *p = vm_gpa_to_hva(vm, gpas[i % 6]);

		/* page 5 appears twice per pass; later stores win only at the same offset */
		ASSERT_NE(NULL, p);
		EXPECT_EQ(seq, p[(seq & 511) * 2]);
	}
	vm_get_dirty_log(vm, 1, bm);
	EXPECT_EQ(1ULL | 1ULL << 5, bm[0]);
	EXPECT_EQ(1ULL << 35, bm[1]);
	vm_get_dirty_log(vm, 2, bm);
	EXPECT_EQ(1ULL << 63, bm[0]);
	if (self->as1) {	/* SMM memory is not touched by a non-SMM vCPU */
		vm_get_dirty_log(vm, self->as1 | 1, bm);
		EXPECT_EQ(0, bm[0]);
		EXPECT_EQ(0, bm[1]);
	}

	/* clear one page again, write it again: dirty again, others stay */
	bm[0] = 1;
	vm_clear_dirty_log(vm, 1, 0, 64, bm);
	vm_get_dirty_log(vm, 1, bm);
	EXPECT_EQ(1ULL << 5, bm[0]);
	guest_set_list(vm, gpas, 1, 1);
	vcpu_reset(vm);
	vcpu_run_to_done(vm);
	vm_get_dirty_log(vm, 1, bm);
	EXPECT_EQ(1ULL | 1ULL << 5, bm[0]);

	/* a moved slot is written at its new address */
	clear_all(vm);
	vm_move_slot(vm, 2, GPA_DATA + 16 * MIB);
	gpas[0] = GPA_DATA + 16 * MIB + 7 * PAGE_SIZE;
	guest_set_list(vm, gpas, 1, 1);
	vcpu_reset(vm);
	vcpu_run_to_done(vm);
	vm_get_dirty_log(vm, 2, bm);
	EXPECT_EQ(1ULL << 7, bm[0]);
}

/* The payload with paging on (long mode): same writes, same dirty bits. */
TEST_F(vm, vcpu_writes_are_tracked_with_paging)
{
	struct vm *vm = self->vm;
	const uint64_t gpas[3] = {
		GPA_DATA + 3 * PAGE_SIZE, GPA_DATA + 70 * PAGE_SIZE,
		GPA_DATA + MIB + 9 * PAGE_SIZE,
	};
	struct kvm_sregs sregs;
	uint64_t bm[64];

	vm_create_vcpu(vm);
	vm_enable_paging(vm, 5, GPA_DATA + 32 * MIB);
	clear_all(vm);
	vm->ctrl->seq = 0;
	guest_set_list(vm, gpas, 3, 1);
	vcpu_run_to_done(vm);
	ASSERT_EQ(3, vm->ctrl->seq);
	ASSERT_EQ(0, ioctl(vm->vcpu->fd, KVM_GET_SREGS, &sregs));
	EXPECT_EQ(0x400, sregs.efer & 0x400);		/* LMA */
	EXPECT_EQ(0x80000000, sregs.cr0 & 0x80000000);	/* PG */
	vm_get_dirty_log(vm, 1, bm);
	EXPECT_EQ(1ULL << 3, bm[0]);
	EXPECT_EQ(1ULL << 6, bm[1]);
	vm_get_dirty_log(vm, 2, bm);
	EXPECT_EQ(1ULL << 9, bm[0]);

	/* cleared (write-protected again), written again: dirty again */
	clear_all(vm);
	guest_set_list(vm, gpas + 1, 1, 1);
	vcpu_reset(vm);
	vcpu_run_to_done(vm);
	vm_get_dirty_log(vm, 1, bm);
	EXPECT_EQ(0, bm[0]);
	EXPECT_EQ(1ULL << 6, bm[1]);
}

TEST_F(vm, pause_protocol)
{
	struct vm *vm = self->vm;
	uint64_t gpas[64];
	uint32_t i, seq, seq2;

	for (i = 0; i < 64; i++)
		gpas[i] = GPA_DATA + (i % 100) * PAGE_SIZE;
	vm_create_vcpu(vm);
	vm->ctrl->seq = 0;
	guest_set_list(vm, gpas, 64, 0);
	vcpu_start(vm);
	for (i = 0; i < 20; i++) {
		ASSERT_EQ(0, guest_pause(vm, 20000));
		seq = vm->ctrl->seq;
		usleep(1000);
		seq2 = vm->ctrl->seq;
		ASSERT_EQ(seq, seq2);
		guest_resume(vm);
		usleep(500);
	}
	/* stop while paused also works */
	ASSERT_EQ(0, guest_pause(vm, 20000));
	vcpu_stop(vm);
	TH_LOG("guest wrote %u pages, %u passes", vm->ctrl->seq, vm->ctrl->done);
	ASSERT_GT(vm->ctrl->seq, 0);
}

TEST(dirty_ring_vm_clear_is_enxio)
{
	struct vm *vm = vm_create_dirty_ring(65536);
	uint64_t bm[2] = { ~0ULL, ~0ULL };

	if (!vm)
		SKIP(return, "dirty ring not supported (errno %d)", errno);
	vm_add_slot(vm, 1, GPA_DATA, 64, KVM_MEM_LOG_DIRTY_PAGES);
	EXPECT_EQ(-ENXIO, vm_clear_dirty_log_try(vm, 1, 0, 64, bm));
	EXPECT_EQ(-ENXIO, vm_get_dirty_log_try(vm, 1, bm));
	vm_free(vm);
}

DIRTYBATCH_TEST_MAIN(false)
