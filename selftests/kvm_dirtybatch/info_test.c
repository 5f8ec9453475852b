// SPDX-License-Identifier: GPL-2.0
/*
 * info_test: KVM_DIRTYBATCH_GET_INFO, KVM_DIRTYBATCH_GET_STATS, feature
 * bits, unknown ioctls (-ENOTTY), and that the statistics count what the
 * CLEAR calls did (calls, failures, ranges, pages, MMU-lock holds, lock
 * breaks, TLB flushes, dirty-log syncs, live allocations).
 *
 * Lock breaks are by contention (someone waits for the MMU lock, or a
 * reschedule is due), so their number is not predictable; what holds
 * exactly is that a successful call with count > 0 takes the MMU lock
 * 1 + lock_breaks times, at most one break per 64-page bitmap word, and
 * that other calls take it not at all.  stats_lock_breaks checks that and
 * that a vCPU faulting during a big clear makes it break.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "util.h"

#define GPA_DATA	(1UL << 20)
#define RSIZE		sizeof(struct kvm_dirtybatch_range)
#define GIB		(1ULL << 30)

FIXTURE(dev) {
	int fd;
};

FIXTURE_SETUP(dev)
{
	self->fd = db_open();
	ASSERT_LE(0, self->fd) TH_LOG("open " DB_DEVICE_PATH ": %d", self->fd);
}

FIXTURE_TEARDOWN(dev)
{
	close(self->fd);
}

TEST_F(dev, get_info)
{
	struct kvm_dirtybatch_info info;
	uint64_t feats = KVM_DIRTYBATCH_FEAT_CLEAR | KVM_DIRTYBATCH_FEAT_STATS |
			 KVM_DIRTYBATCH_FEAT_ERROR_INDEX;
	int i;

	memset(&info, 0xa5, sizeof(info));
	ASSERT_EQ(0, db_get_info(self->fd, &info));
	EXPECT_EQ(KVM_DIRTYBATCH_ABI_VERSION, info.abi_version);
	EXPECT_EQ(sizeof(info), info.size);
	EXPECT_EQ(feats, info.features & feats);
	EXPECT_EQ(KVM_DIRTYBATCH_CLEAR_FLAGS_ALL, info.clear_flags);
	EXPECT_EQ(KVM_DIRTYBATCH_MAX_RANGES, info.max_ranges);
	EXPECT_EQ(RSIZE, info.range_size);
	/* no limit on a call's bitmaps as a whole */
	EXPECT_EQ(KVM_DIRTYBATCH_MAX_BITMAP_BYTES, info.max_bitmap_bytes);
	EXPECT_EQ(0xffffffffU, info.max_bitmap_bytes);
	/* a waiter for the MMU lock waits for one word's work at most */
	EXPECT_EQ(KVM_DIRTYBATCH_LOCK_BREAK_WORDS, info.lock_break_words);
	EXPECT_EQ(1, info.lock_break_words);
	EXPECT_EQ(0, info.reserved0);
	for (i = 0; i < 4; i++)
		EXPECT_EQ(0, info.reserved[i]);
	ksft_print_msg("abi %u features 0x%llx max_ranges %u max_bitmap_bytes %u lock_break_words %u\n",
		       info.abi_version, (unsigned long long)info.features,
		       info.max_ranges, info.max_bitmap_bytes, info.lock_break_words);
}

static void *unmapped_page(void)
{
	void *p = mmap(NULL, 3 * PAGE_SIZE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	munmap((char *)p + PAGE_SIZE, PAGE_SIZE);
	return (char *)p + PAGE_SIZE;
}

TEST_F(dev, get_info_stats_efault)
{
	char *hole = unmapped_page();

	ASSERT_NE(NULL, hole);
	EXPECT_EQ(-1, db_ioctl(self->fd, KVM_DIRTYBATCH_GET_INFO, hole));
	EXPECT_EQ(EFAULT, errno);
	EXPECT_EQ(-1, db_ioctl(self->fd, KVM_DIRTYBATCH_GET_STATS, hole));
	EXPECT_EQ(EFAULT, errno);
	EXPECT_EQ(-1, db_ioctl(self->fd, KVM_DIRTYBATCH_GET_INFO, NULL));
	EXPECT_EQ(EFAULT, errno);
	/* output straddling into the unmapped page */
	EXPECT_EQ(-1, db_ioctl(self->fd, KVM_DIRTYBATCH_GET_STATS, hole - 8));
	EXPECT_EQ(EFAULT, errno);
}

TEST_F(dev, unknown_ioctl_enotty)
{
	static const struct { unsigned long cmd; const char *name; } cmds[] = {
		{ _IO(KVM_DIRTYBATCH_IO, 0x03), "_IO(0xDC, 3)" },
		{ _IOWR(KVM_DIRTYBATCH_IO, 0x03, struct kvm_dirtybatch_clear), "_IOWR(0xDC, 3, clear)" },
		{ _IO(KVM_DIRTYBATCH_IO, 0xff), "_IO(0xDC, 0xff)" },
		{ _IO(KVM_DIRTYBATCH_IO, 0x00), "GET_INFO without size/dir" },
		{ _IOR(KVM_DIRTYBATCH_IO, 0x00, __u32), "GET_INFO with wrong size" },
		{ _IOW(KVM_DIRTYBATCH_IO, 0x01, struct kvm_dirtybatch_clear), "CLEAR with wrong direction" },
		{ _IOWR(KVM_DIRTYBATCH_IO, 0x01, struct kvm_dirtybatch_range), "CLEAR with wrong size" },
		{ _IOR(KVM_DIRTYBATCH_IO, 0x02, struct kvm_dirtybatch_info), "GET_STATS with wrong size" },
		{ _IOR(0xDD, 0x00, struct kvm_dirtybatch_info), "GET_INFO with wrong type" },
		{ KVM_GET_API_VERSION, "KVM_GET_API_VERSION" },
		{ KVM_CREATE_VM, "KVM_CREATE_VM" },
		{ KVM_CLEAR_DIRTY_LOG, "KVM_CLEAR_DIRTY_LOG" },
		{ 0, "0" },
	};
	char buf[512];
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(cmds); i++) {
		memset(buf, 0, sizeof(buf));
		errno = 0;
		EXPECT_EQ(-1, db_ioctl(self->fd, cmds[i].cmd, buf)) TH_LOG("%s", cmds[i].name);
		EXPECT_EQ(ENOTTY, errno) TH_LOG("%s: errno %d", cmds[i].name, errno);
	}
}

TEST_F(dev, stats_reserved_and_idle)
{
	struct kvm_dirtybatch_stats st;
	int i;

	memset(&st, 0xa5, sizeof(st));
	ASSERT_EQ(0, db_get_stats(self->fd, &st));
	EXPECT_EQ(6, ARRAY_SIZE(st.reserved));
	for (i = 0; i < (int)ARRAY_SIZE(st.reserved); i++)
		EXPECT_EQ(0, st.reserved[i]);
	EXPECT_EQ(0, st.live_allocs);
	/*
	 * Since load, with no call in flight: the holds less the breaks are
	 * the successful calls with count > 0, each of which synced the
	 * dirty logs once; a sync is done by a call only.
	 */
	EXPECT_LE(st.lock_breaks, st.mmu_lock_holds);
	EXPECT_LE(st.mmu_lock_holds - st.lock_breaks, st.calls);
	EXPECT_LE(st.mmu_lock_holds - st.lock_breaks, st.dirty_log_syncs);
	EXPECT_LE(st.dirty_log_syncs, st.calls + st.failed_calls);
	EXPECT_LE(st.tlb_flushes, st.mmu_lock_holds - st.lock_breaks);
	ksft_print_msg("stats: calls %llu failed %llu ranges %llu pages %llu holds %llu breaks %llu flushes %llu max_hold %llu ns live %llu syncs %llu\n",
		       (unsigned long long)st.calls, (unsigned long long)st.failed_calls,
		       (unsigned long long)st.ranges, (unsigned long long)st.pages_cleared,
		       (unsigned long long)st.mmu_lock_holds, (unsigned long long)st.lock_breaks,
		       (unsigned long long)st.tlb_flushes, (unsigned long long)st.max_hold_ns,
		       (unsigned long long)st.live_allocs,
		       (unsigned long long)st.dirty_log_syncs);
}

#define D(f) ((long long)(b.f - a.f))

/*
 * A successful call with count > 0 over @words bitmap words: the MMU lock
 * taken once plus once per break, at most one break before each word.
 */
#define EXPECT_HOLDS(words) do {					\
	EXPECT_EQ(1 + D(lock_breaks), D(mmu_lock_holds));		\
	EXPECT_GE((long long)(words), D(lock_breaks));			\
} while (0)

/* A call that takes the MMU lock not at all. */
#define EXPECT_NO_HOLD() do {						\
	EXPECT_EQ(0, D(mmu_lock_holds));				\
	EXPECT_EQ(0, D(lock_breaks));					\
} while (0)

/* Successful and failed calls are counted. */
TEST_F(dev, stats_count_calls)
{
	struct kvm_dirtybatch_stats a, b;
	struct kvm_dirtybatch_range r[3];
	uint64_t ones[8];
	struct kvm_dirtybatch_clear c;
	struct vm *vm = vm_create(true);

	memset(ones, 0xff, sizeof(ones));
	vm_add_slot(vm, 1, GPA_DATA, 200, KVM_MEM_LOG_DIRTY_PAGES);
	vm_add_slot(vm, 2, 2 * GPA_DATA, 64, KVM_MEM_LOG_DIRTY_PAGES);
	r[0] = (struct kvm_dirtybatch_range){ .slot = 1, .first_page = 0, .num_pages = 128,
					      .dirty_bitmap = (uintptr_t)ones };
	r[1] = (struct kvm_dirtybatch_range){ .slot = 1, .first_page = 128, .num_pages = 72,
					      .dirty_bitmap = (uintptr_t)ones };
	r[2] = (struct kvm_dirtybatch_range){ .slot = 2, .first_page = 0, .num_pages = 64,
					      .dirty_bitmap = (uintptr_t)ones };
	c = (struct kvm_dirtybatch_clear){ .vm_fd = vm->fd, .count = 3,
					   .range_size = RSIZE, .ranges = (uintptr_t)r };

	/* success: 264 bits cleared, 5 bitmap words, 2 memslots */
	ASSERT_EQ(0, db_get_stats(self->fd, &a));
	ASSERT_EQ(0, db_clear(self->fd, &c));
	ASSERT_EQ(0, db_get_stats(self->fd, &b));
	EXPECT_EQ(264, c.pages_cleared);
	EXPECT_EQ(3, c.error_index);
	EXPECT_EQ(1, D(calls));
	EXPECT_EQ(0, D(failed_calls));
	EXPECT_EQ(3, D(ranges));
	EXPECT_EQ(264, D(pages_cleared));
	EXPECT_HOLDS(5);
	EXPECT_EQ(1, D(tlb_flushes));
	EXPECT_EQ(1, D(dirty_log_syncs));
	EXPECT_LE(a.max_hold_ns, b.max_hold_ns);
	EXPECT_LT(0, b.max_hold_ns);
	EXPECT_EQ(0, b.live_allocs);

	/* success, but nothing left to clear: no flush, still one hold and sync */
	a = b;
	ASSERT_EQ(0, db_clear(self->fd, &c));
	ASSERT_EQ(0, db_get_stats(self->fd, &b));
	EXPECT_EQ(0, c.pages_cleared);
	EXPECT_EQ(1, D(calls));
	EXPECT_EQ(3, D(ranges));
	EXPECT_EQ(0, D(pages_cleared));
	EXPECT_EQ(0, D(tlb_flushes));
	EXPECT_HOLDS(5);
	EXPECT_EQ(1, D(dirty_log_syncs));

	/* failures of several kinds count as failed calls only */
	a = b;
	c.flags = 1;
	EXPECT_EQ(-EINVAL, db_clear(self->fd, &c));
	c.flags = 0;
	r[1].slot = 7;
	EXPECT_EQ(-ENOENT, db_clear(self->fd, &c));
	EXPECT_EQ(1, c.error_index);
	r[1].slot = 1;
	EXPECT_EQ(-1, db_ioctl(self->fd, KVM_DIRTYBATCH_CLEAR, NULL));
	EXPECT_EQ(EFAULT, errno);
	ASSERT_EQ(0, db_get_stats(self->fd, &b));
	EXPECT_EQ(0, D(calls));
	EXPECT_EQ(3, D(failed_calls));
	EXPECT_EQ(0, D(ranges));
	EXPECT_EQ(0, D(pages_cleared));
	EXPECT_EQ(0, D(tlb_flushes));
	EXPECT_NO_HOLD();
	EXPECT_EQ(0, D(dirty_log_syncs));
	EXPECT_EQ(0, b.live_allocs);

	/* count == 0 is a successful call that touches nothing */
	a = b;
	c.count = 0;
	ASSERT_EQ(0, db_clear(self->fd, &c));
	ASSERT_EQ(0, db_get_stats(self->fd, &b));
	EXPECT_EQ(1, D(calls));
	EXPECT_EQ(0, D(failed_calls));
	EXPECT_EQ(0, D(ranges));
	EXPECT_EQ(0, D(tlb_flushes));
	EXPECT_NO_HOLD();
	EXPECT_EQ(0, D(dirty_log_syncs));
	vm_free(vm);

	ASSERT_EQ(0, db_get_stats(self->fd, &b));
	EXPECT_EQ(0, b.live_allocs);
}

/*
 * dirty_log_syncs: one kvm_arch_sync_dirty_log() per call with count > 0
 * that passed the per-range checks, whatever the number of memslots (x86
 * ignores the memslot); counted before the bitmaps are read, so also for
 * a call that then fails with -EFAULT on a bitmap; not for a call that
 * fails earlier.
 */
TEST_F(dev, stats_dirty_log_syncs)
{
	struct kvm_dirtybatch_stats a, b;
	struct kvm_dirtybatch_range r[5];
	struct kvm_dirtybatch_clear c;
	struct snap s0, s1;
	uint64_t ones[4];
	char msg[256];
	char *hole = unmapped_page();
	struct vm *vm = vm_create(true), *ring;

	ASSERT_NE(NULL, hole);
	memset(ones, 0xff, sizeof(ones));
	vm_add_slot(vm, 1, GPA_DATA, 128, KVM_MEM_LOG_DIRTY_PAGES);
	vm_add_slot(vm, 2, 2 * GPA_DATA, 100, KVM_MEM_LOG_DIRTY_PAGES);
	vm_add_slot(vm, 3, 3 * GPA_DATA, 64, KVM_MEM_LOG_DIRTY_PAGES);
	/* three memslots, one named twice, a range of no pages */
	r[0] = (struct kvm_dirtybatch_range){ .slot = 1, .num_pages = 64,
					      .dirty_bitmap = (uintptr_t)ones };
	r[1] = (struct kvm_dirtybatch_range){ .slot = 2, .num_pages = 100,
					      .dirty_bitmap = (uintptr_t)ones };
	r[2] = (struct kvm_dirtybatch_range){ .slot = 3, .num_pages = 64,
					      .dirty_bitmap = (uintptr_t)ones };
	r[3] = (struct kvm_dirtybatch_range){ .slot = 1, .first_page = 64, .num_pages = 64,
					      .dirty_bitmap = (uintptr_t)ones };
	r[4] = (struct kvm_dirtybatch_range){ .slot = 2, .first_page = 64, .num_pages = 0,
					      .dirty_bitmap = (uintptr_t)ones };
	c = (struct kvm_dirtybatch_clear){ .vm_fd = vm->fd, .count = 5,
					   .range_size = RSIZE, .ranges = (uintptr_t)r };

	ASSERT_EQ(0, db_get_stats(self->fd, &a));
	ASSERT_EQ(0, db_clear(self->fd, &c));
	ASSERT_EQ(0, db_get_stats(self->fd, &b));
	EXPECT_EQ(128 + 100 + 64, c.pages_cleared);
	EXPECT_EQ(1, D(dirty_log_syncs)) TH_LOG("3 memslots: one sync per call");
	EXPECT_HOLDS(1 + 2 + 1 + 1);

	/* -EINVAL in the per-range checks (range 3 unaligned): no sync */
	a = b;
	r[3].first_page = 65;
	EXPECT_EQ(-EINVAL, db_clear(self->fd, &c));
	EXPECT_EQ(3, c.error_index);
	r[3].first_page = 64;
	/* -ENOENT (range 4 names no memslot): no sync */
	r[4].slot = 9;
	EXPECT_EQ(-ENOENT, db_clear(self->fd, &c));
	EXPECT_EQ(4, c.error_index);
	r[4].slot = 2;
	/* -EINVAL before any range is read (bad flags): no sync */
	c.flags = 2;
	EXPECT_EQ(-EINVAL, db_clear(self->fd, &c));
	c.flags = 0;
	ASSERT_EQ(0, db_get_stats(self->fd, &b));
	EXPECT_EQ(3, D(failed_calls));
	EXPECT_EQ(0, D(dirty_log_syncs));
	EXPECT_NO_HOLD();

	/* -ENXIO (a dirty-ring VM) comes before the per-range checks: no sync */
	ring = vm_create_dirty_ring(65536);
	if (ring) {
		vm_add_slot(ring, 1, GPA_DATA, 128, KVM_MEM_LOG_DIRTY_PAGES);
		a = b;
		c.vm_fd = ring->fd;
		c.count = 1;
		EXPECT_EQ(-ENXIO, db_clear(self->fd, &c));
		c.vm_fd = vm->fd;
		c.count = 5;
		ASSERT_EQ(0, db_get_stats(self->fd, &b));
		EXPECT_EQ(1, D(failed_calls));
		EXPECT_EQ(0, D(dirty_log_syncs));
		EXPECT_NO_HOLD();
		vm_free(ring);
	} else {
		TH_LOG("no dirty ring (%s): -ENXIO not checked", strerror(errno));
	}

	/*
	 * -EFAULT on the bitmap of range 2, the ranges valid, slot 1 dirty
	 * again: synced, nothing cleared, no MMU-lock hold.
	 */
	vm_set_slot_flags(vm, 1, 0);
	vm_set_slot_flags(vm, 1, KVM_MEM_LOG_DIRTY_PAGES);
	snap_take(vm, &s0);
	r[2].dirty_bitmap = (uintptr_t)hole;
	a = b;
	EXPECT_EQ(-EFAULT, db_clear(self->fd, &c));
	EXPECT_EQ(2, c.error_index);
	ASSERT_EQ(0, db_get_stats(self->fd, &b));
	snap_take(vm, &s1);
	EXPECT_TRUE(snap_equal(&s0, &s1, msg, sizeof(msg))) TH_LOG("failed call changed bits: %s", msg);
	EXPECT_EQ(128, snap_count(&s1));
	EXPECT_EQ(1, D(failed_calls));
	EXPECT_EQ(0, D(pages_cleared));
	EXPECT_EQ(1, D(dirty_log_syncs)) TH_LOG("validated, then a bitmap faulted");
	EXPECT_NO_HOLD();
	EXPECT_EQ(0, b.live_allocs);
	snap_free(&s0);
	snap_free(&s1);
	vm_free(vm);
}

/*
 * Lock breaks.  The clearing memslot: 16 GiB (2^22 pages, 65536 words;
 * 1 GiB in a 32-bit build, whose address space must hold it).
 *
 * Idle: cleared whole, then with a second memslot in one call: the MMU
 * lock is taken 1 + breaks times, at most one break per word (a
 * reschedule may be due, so breaks == 0 is not asserted), every page
 * cleared once, one TLB flush, one sync.
 *
 * Contended: the vCPU writes FAULT_PAGES never-touched pages of another
 * memslot, each write an NPT fault that takes the MMU lock for read,
 * while the clearing memslot, all dirty again, is cleared whole: a vCPU
 * waiting for the lock makes the module drop it, so breaks > 0.  A clear
 * that overlapped no fault proves nothing: up to LB_TRIES clears.
 */
#define LB_PAGES	(sizeof(void *) < 8 ? (1ULL << 18) : (1ULL << 22))
#define LB_PAGES2	(LB_PAGES / 4 + 37)
#define FAULT_SLOT	4
#define FAULT_GPA	(16ULL << 20)
#define FAULT_PAGES	SYS_LIST_MAX		/* 112 MiB, below 4 GiB */
#ifdef DB_EMULATE
#define LB_TRIES	1		/* the emulation never breaks the lock */
#else
#define LB_TRIES	8
#endif

static void fresh_fault_slot(struct vm *vm)
{
	void *hva;

	if (vm_find_slot(vm, FAULT_SLOT))
		vm_delete_slot(vm, FAULT_SLOT);
	/* logged: KVM maps it with 4 KiB pages, one fault per page */
	hva = vm_add_slot(vm, FAULT_SLOT, FAULT_GPA, FAULT_PAGES, KVM_MEM_LOG_DIRTY_PAGES);
	madvise(hva, FAULT_PAGES * PAGE_SIZE, MADV_NOHUGEPAGE);
}

TEST_F_TIMEOUT(dev, stats_lock_breaks, 300)
{
	const uint64_t words1 = LB_PAGES / 64, words2 = (LB_PAGES2 + 63) / 64;
	struct kvm_dirtybatch_stats a, b;
	struct kvm_dirtybatch_range r[2];
	struct kvm_dirtybatch_clear c;
	uint64_t *ones, *gpas, i, seq0, seq1, seq2, t0;
	int tries, broken = 0;
	struct snap s;
	struct vm *vm;

	vm = vm_create(true);
	ones = malloc(bitmap_bytes(LB_PAGES));
	gpas = calloc(FAULT_PAGES, sizeof(*gpas));
	ASSERT_TRUE(ones && gpas);
	memset(ones, 0xff, bitmap_bytes(LB_PAGES));
	vm_add_slot(vm, 1, 4 * GIB, LB_PAGES, KVM_MEM_LOG_DIRTY_PAGES);
	vm_add_slot(vm, 2, 32 * GIB, LB_PAGES2, KVM_MEM_LOG_DIRTY_PAGES);
	vm_create_vcpu(vm);

	/* idle: one range */
	r[0] = (struct kvm_dirtybatch_range){ .slot = 1, .num_pages = LB_PAGES,
					      .dirty_bitmap = (uintptr_t)ones };
	c = (struct kvm_dirtybatch_clear){ .vm_fd = vm->fd, .count = 1,
					   .range_size = RSIZE, .ranges = (uintptr_t)r };
	ASSERT_EQ(0, db_get_stats(self->fd, &a));
	ASSERT_EQ(0, db_clear(self->fd, &c));
	ASSERT_EQ(0, db_get_stats(self->fd, &b));
	EXPECT_EQ(LB_PAGES, c.pages_cleared);
	EXPECT_HOLDS(words1);
	EXPECT_EQ(1, D(tlb_flushes));
	EXPECT_EQ(1, D(dirty_log_syncs));
	TH_LOG("idle, %llu words: breaks %lld holds %lld max_hold %llu ns",
	       (unsigned long long)words1, D(lock_breaks), D(mmu_lock_holds),
	       (unsigned long long)b.max_hold_ns);

	/* idle: two ranges, the second memslot's and the first (clean now) */
	r[1] = r[0];
	r[0] = (struct kvm_dirtybatch_range){ .slot = 2, .num_pages = LB_PAGES2,
					      .dirty_bitmap = (uintptr_t)ones };
	c.count = 2;
	a = b;
	ASSERT_EQ(0, db_clear(self->fd, &c));
	ASSERT_EQ(0, db_get_stats(self->fd, &b));
	EXPECT_EQ(LB_PAGES2, c.pages_cleared);
	EXPECT_HOLDS(words1 + words2);
	EXPECT_EQ(1, D(tlb_flushes));
	EXPECT_EQ(1, D(dirty_log_syncs));
	TH_LOG("idle, %llu words in 2 ranges: breaks %lld holds %lld",
	       (unsigned long long)(words1 + words2), D(lock_breaks), D(mmu_lock_holds));
	snap_take(vm, &s);
	EXPECT_EQ(0, snap_count(&s));
	snap_free(&s);

	/* contended: the vCPU faults while slot 1, dirty again, is cleared */
	for (i = 0; i < FAULT_PAGES; i++)
		gpas[i] = FAULT_GPA + i * PAGE_SIZE;
	r[0] = r[1];
	c.count = 1;
	for (tries = 0; tries < LB_TRIES && !broken && !_metadata->exit_code; tries++) {
		vm_set_slot_flags(vm, 1, 0);
		vm_set_slot_flags(vm, 1, KVM_MEM_LOG_DIRTY_PAGES);
		fresh_fault_slot(vm);
		vm->ctrl->seq = 0;
		guest_set_list(vm, gpas, FAULT_PAGES, 1);
		vcpu_start(vm);
		/* the vCPU is faulting: a few pages written */
		t0 = now_ns();
		while (vm->ctrl->seq < 64 && now_ns() - t0 < 60000000000ULL)
			usleep(1000);
		seq0 = vm->ctrl->seq;
		ASSERT_LE(64, seq0) TH_LOG("the vCPU wrote %llu pages in 60 s",
					   (unsigned long long)seq0);
		ASSERT_EQ(0, db_get_stats(self->fd, &a));
		seq1 = vm->ctrl->seq;
		ASSERT_EQ(0, db_clear(self->fd, &c));
		seq2 = vm->ctrl->seq;
		ASSERT_EQ(0, db_get_stats(self->fd, &b));
		vcpu_stop(vm);
		EXPECT_EQ(LB_PAGES, c.pages_cleared);
		EXPECT_HOLDS(words1);
		EXPECT_EQ(1, D(tlb_flushes));
		EXPECT_EQ(1, D(dirty_log_syncs));
		TH_LOG("vCPU faulting, try %d: %llu faults during the clear (%s), breaks %lld holds %lld",
		       tries + 1, (unsigned long long)(seq2 - seq1),
		       seq2 < FAULT_PAGES ? "still faulting after it" : "the vCPU ran out of pages",
		       D(lock_breaks), D(mmu_lock_holds));
		broken = D(lock_breaks) > 0;
	}
#ifndef DB_EMULATE	/* the emulation never breaks the lock */
	EXPECT_TRUE(broken) TH_LOG("no lock break in %d clears of %llu words while the vCPU faulted",
				   tries, (unsigned long long)words1);
#endif
	vm_free(vm);
	free(ones);
	free(gpas);
	ASSERT_EQ(0, db_get_stats(self->fd, &b));
	EXPECT_EQ(0, b.live_allocs);
}

/* Several opens of the device are independent; stats are module-wide. */
TEST_F(dev, multiple_opens)
{
	struct kvm_dirtybatch_stats a, b;
	int fd2 = db_open();

	ASSERT_LE(0, fd2);
	ASSERT_EQ(0, db_get_stats(self->fd, &a));
	EXPECT_EQ(-1, db_ioctl(fd2, KVM_DIRTYBATCH_CLEAR, NULL));
	ASSERT_EQ(0, db_get_stats(self->fd, &b));
	EXPECT_EQ(1, D(failed_calls));
	close(fd2);
}

DIRTYBATCH_TEST_MAIN(true)
