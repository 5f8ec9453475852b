// SPDX-License-Identifier: GPL-2.0
/*
 * info_test: KVM_DIRTYBATCH_GET_INFO, KVM_DIRTYBATCH_GET_STATS, feature
 * bits, unknown ioctls (-ENOTTY), and that the statistics count what the
 * CLEAR calls did (calls, failures, ranges, pages, MMU-lock holds, lock
 * breaks, TLB flushes, live allocations).
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

FIXTURE(dev) {
	int fd;
};

FIXTURE_SETUP(dev)
{
	self->fd = db_open();
	ASSERT_LE(0, self->fd) TH_LOG("open " DB_DEV_PATH ": %d", self->fd);
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
	EXPECT_EQ(KVM_DIRTYBATCH_MAX_BITMAP_BYTES, info.max_bitmap_bytes);
	EXPECT_EQ(KVM_DIRTYBATCH_LOCK_BREAK_WORDS, info.lock_break_words);
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
	for (i = 0; i < 7; i++)
		EXPECT_EQ(0, st.reserved[i]);
	EXPECT_EQ(0, st.live_allocs);
	EXPECT_LE(st.lock_breaks, st.mmu_lock_holds);
	ksft_print_msg("stats: calls %llu failed %llu ranges %llu pages %llu holds %llu breaks %llu flushes %llu max_hold %llu ns live %llu\n",
		       (unsigned long long)st.calls, (unsigned long long)st.failed_calls,
		       (unsigned long long)st.ranges, (unsigned long long)st.pages_cleared,
		       (unsigned long long)st.mmu_lock_holds, (unsigned long long)st.lock_breaks,
		       (unsigned long long)st.tlb_flushes, (unsigned long long)st.max_hold_ns,
		       (unsigned long long)st.live_allocs);
}

#define D(f) ((long long)(b.f - a.f))

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

	/* success: 264 bits cleared */
	ASSERT_EQ(0, db_get_stats(self->fd, &a));
	ASSERT_EQ(0, db_clear(self->fd, &c));
	ASSERT_EQ(0, db_get_stats(self->fd, &b));
	EXPECT_EQ(264, c.pages_cleared);
	EXPECT_EQ(3, c.error_index);
	EXPECT_EQ(1, D(calls));
	EXPECT_EQ(0, D(failed_calls));
	EXPECT_EQ(3, D(ranges));
	EXPECT_EQ(264, D(pages_cleared));
	EXPECT_EQ(1, D(mmu_lock_holds));
	EXPECT_EQ(0, D(lock_breaks));
	EXPECT_EQ(1, D(tlb_flushes));
	EXPECT_LE(a.max_hold_ns, b.max_hold_ns);
	EXPECT_LT(0, b.max_hold_ns);
	EXPECT_EQ(0, b.live_allocs);

	/* success, but nothing left to clear: at most one flush */
	a = b;
	ASSERT_EQ(0, db_clear(self->fd, &c));
	ASSERT_EQ(0, db_get_stats(self->fd, &b));
	EXPECT_EQ(0, c.pages_cleared);
	EXPECT_EQ(1, D(calls));
	EXPECT_EQ(3, D(ranges));
	EXPECT_EQ(0, D(pages_cleared));
	EXPECT_GE(1, D(tlb_flushes));
	EXPECT_GE(1, D(mmu_lock_holds));

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
	EXPECT_EQ(0, b.live_allocs);

	/* count == 0 is a successful call */
	a = b;
	c.count = 0;
	ASSERT_EQ(0, db_clear(self->fd, &c));
	ASSERT_EQ(0, db_get_stats(self->fd, &b));
	EXPECT_EQ(1, D(calls));
	EXPECT_EQ(0, D(failed_calls));
	EXPECT_EQ(0, D(ranges));
	EXPECT_EQ(0, D(tlb_flushes));
	vm_free(vm);

	ASSERT_EQ(0, db_get_stats(self->fd, &b));
	EXPECT_EQ(0, b.live_allocs);
}

/*
 * Lock breaks (W = KVM_DIRTYBATCH_LOCK_BREAK_WORDS): 2W + 1 words in one
 * range -> 2 breaks, 3 holds; 1.5W + 0.625W words in two ranges -> 2
 * breaks (the budget spans ranges, else it would be 1); one TLB flush.
 */
TEST_F_TIMEOUT(dev, stats_lock_breaks, 90)
{
	const uint64_t lbw = KVM_DIRTYBATCH_LOCK_BREAK_WORDS;
	uint64_t npages1 = (2 * lbw + 1) * 64, npages2 = (lbw + lbw / 2) * 64;
	uint64_t npages3 = (lbw / 2 + lbw / 8) * 64;
	struct kvm_dirtybatch_stats a, b;
	struct kvm_dirtybatch_range r[2];
	struct kvm_dirtybatch_clear c;
	size_t bytes = bitmap_bytes(npages2);
	uint64_t *ones;
	struct snap s;
	struct vm *vm;

	if (sizeof(void *) < 8)
		SKIP(return, "needs 4.3 GiB of guest memory mappings: more than a 32-bit process has");
	vm = vm_create(true);
	ones = malloc(bytes > bitmap_bytes(npages1) ? bytes : bitmap_bytes(npages1));
	ASSERT_NE(NULL, ones);
	memset(ones, 0xff, bytes > bitmap_bytes(npages1) ? bytes : bitmap_bytes(npages1));
	vm_add_slot(vm, 1, 1ULL << 32, npages1, KVM_MEM_LOG_DIRTY_PAGES);
	vm_add_slot(vm, 2, 1ULL << 33, npages2, KVM_MEM_LOG_DIRTY_PAGES);
	vm_add_slot(vm, 3, 3ULL << 32, npages3, KVM_MEM_LOG_DIRTY_PAGES);

	r[0] = (struct kvm_dirtybatch_range){ .slot = 1, .num_pages = npages1,
					      .dirty_bitmap = (uintptr_t)ones };
	c = (struct kvm_dirtybatch_clear){ .vm_fd = vm->fd, .count = 1,
					   .range_size = RSIZE, .ranges = (uintptr_t)r };
	ASSERT_EQ(0, db_get_stats(self->fd, &a));
	ASSERT_EQ(0, db_clear(self->fd, &c));
	ASSERT_EQ(0, db_get_stats(self->fd, &b));
	EXPECT_EQ(npages1, c.pages_cleared);
	EXPECT_EQ(2, D(lock_breaks));
	EXPECT_EQ(3, D(mmu_lock_holds));
	EXPECT_EQ(1, D(tlb_flushes));
	TH_LOG("2W+1 words: breaks %lld holds %lld flushes %lld max_hold %llu ns",
	       D(lock_breaks), D(mmu_lock_holds), D(tlb_flushes),
	       (unsigned long long)b.max_hold_ns);

	r[0] = (struct kvm_dirtybatch_range){ .slot = 2, .num_pages = npages2,
					      .dirty_bitmap = (uintptr_t)ones };
	r[1] = (struct kvm_dirtybatch_range){ .slot = 3, .num_pages = npages3,
					      .dirty_bitmap = (uintptr_t)ones };
	c.count = 2;
	a = b;
	ASSERT_EQ(0, db_clear(self->fd, &c));
	ASSERT_EQ(0, db_get_stats(self->fd, &b));
	EXPECT_EQ(npages2 + npages3, c.pages_cleared);
	EXPECT_EQ(2, D(lock_breaks));
	EXPECT_EQ(3, D(mmu_lock_holds));
	EXPECT_EQ(1, D(tlb_flushes));
	TH_LOG("1.5W+0.625W words: breaks %lld holds %lld flushes %lld",
	       D(lock_breaks), D(mmu_lock_holds), D(tlb_flushes));

	snap_take(vm, &s);
	EXPECT_EQ(0, snap_count(&s));
	snap_free(&s);
	vm_free(vm);
	free(ones);
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
