// SPDX-License-Identifier: GPL-2.0
/*
 * limits_test: the memory one KVM_DIRTYBATCH_CLEAR call may use is bounded
 * by its limits and charged to the caller's memory cgroup.
 *
 * The calling process is moved into a fresh cgroup (v2, memory controller)
 * after every user buffer is allocated and touched, so that the cgroup's
 * memory.peak only grows by what the kernel allocates for the call.  At
 * each limit, the largest accepted call and the smallest refused one:
 *
 *   count      KVM_DIRTYBATCH_MAX_RANGES ranges of 256 bytes (the largest
 *              stride) whose bitmaps add up to exactly
 *              KVM_DIRTYBATCH_MAX_BITMAP_BYTES: accepted; charged at least
 *              the bitmap bytes, at most the documented bound
 *              (48 * count + max(count * range_size, bitmap bytes)
 *              + 8 KiB, plus slack for vmalloc page tables);
 *              one range more: -E2BIG, nothing charged;
 *   bitmaps    (24-byte stride) 8 bytes under KVM_DIRTYBATCH_MAX_BITMAP_BYTES:
 *              accepted, the bitmap buffer charged; 8 bytes over: -E2BIG,
 *              only the ranges and their copy charged;
 *   range_size 256 accepted, 264 -E2BIG.
 *
 * live_allocs is 0 after each call.  Skipped without cgroup v2 and its
 * memory controller (memory.peak: Linux 5.19+).
 *
 * over_memcg_limit: a call whose buffers do not fit under the caller's
 * memory.max must fail with the documented -ENOMEM, not wake the memcg
 * OOM killer (which would kill the caller, a VMM mid-migration, and dump
 * a stack into the kernel log): the module allocates with
 * __GFP_RETRY_MAYFAIL | __GFP_NOWARN.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "util.h"

#define MIB		(1ULL << 20)
#define CG_ROOT		"/sys/fs/cgroup"
#define STRIDE		256U
#define SLOT_PAGES	(STRIDE * 8)	/* 256 bytes of bitmap per range */

static int write_str(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY), r = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, s, strlen(s)) < 0)
		r = -errno;
	close(fd);
	return r;
}

static int64_t read_u64(const char *path)
{
	char buf[64] = "";
	int fd = open(path, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -EIO;
	buf[n] = 0;
	return strtoll(buf, NULL, 10);
}

/* MAX_RANGES + 1 ranges, each the whole slot (256 bytes of bitmap) */
static void lay_out(uint8_t *buf, uint32_t stride, uint64_t *ones)
{
	uint32_t i;

	memset(buf, 0, (size_t)(KVM_DIRTYBATCH_MAX_RANGES + 1) * STRIDE);
	for (i = 0; i <= KVM_DIRTYBATCH_MAX_RANGES; i++) {
		struct kvm_dirtybatch_range r = {
			.slot = 1, .num_pages = SLOT_PAGES,
			.dirty_bitmap = (uintptr_t)ones,
		};

		memcpy(buf + (size_t)i * stride, &r, sizeof(r));
	}
}

FIXTURE(limits) {
	int dbfd;
	struct vm *vm;
	uint8_t *ranges;		/* (MAX_RANGES + 1) ranges, see lay_out() */
	uint64_t ones[STRIDE / 8];
	char cg[128];
	int ncg;
	const char *skip;
};

FIXTURE_SETUP(limits)
{
	char path[256];

	self->dbfd = db_open();
	ASSERT_LE(0, self->dbfd);
	self->vm = vm_create(true);
	vm_add_slot(self->vm, 1, MIB, SLOT_PAGES, KVM_MEM_LOG_DIRTY_PAGES);
	memset(self->ones, 0xff, sizeof(self->ones));
	self->ranges = calloc(KVM_DIRTYBATCH_MAX_RANGES + 1, STRIDE);
	ASSERT_NE(NULL, self->ranges);
	lay_out(self->ranges, STRIDE, self->ones);

	snprintf(path, sizeof(path), CG_ROOT "/cgroup.controllers");
	if (access(path, R_OK)) {
		self->skip = "no cgroup v2 at " CG_ROOT;
		return;
	}
	/* may fail if already enabled or delegated: checked below */
	write_str(CG_ROOT "/cgroup.subtree_control", "+memory");
}

FIXTURE_TEARDOWN(limits)
{
	char path[160];

	write_str(CG_ROOT "/cgroup.procs", "0");
	for (; self->ncg > 0; self->ncg--) {
		snprintf(path, sizeof(path), "%s.%d", self->cg, self->ncg);
		rmdir(path);
	}
	free(self->ranges);
	vm_free(self->vm);
	close(self->dbfd);
}

/*
 * Move this process into a fresh cgroup; return its memory.current (or a
 * negative errno: no memory controller).
 */
static int64_t enter_cgroup(struct __test_metadata *_metadata,
			    FIXTURE_DATA(limits) *self, char *dir, size_t len)
{
	char path[192];
	int64_t cur;

	if (!self->ncg)
		snprintf(self->cg, sizeof(self->cg), CG_ROOT "/kvm_dirtybatch_limits.%d",
			 getpid());
	snprintf(dir, len, "%s.%d", self->cg, ++self->ncg);
	if (mkdir(dir, 0755))
		return -errno;
	snprintf(path, 192, "%s/memory.peak", dir);
	if (access(path, R_OK))
		return -ENOENT;
	snprintf(path, 192, "%s/cgroup.procs", dir);
	if (write_str(path, "0"))
		return -EPERM;
	snprintf(path, 192, "%s/memory.current", dir);
	cur = read_u64(path);
	(void)_metadata;
	return cur;
}

static int64_t leave_cgroup(const char *dir)
{
	char path[192];
	int64_t peak;

	snprintf(path, sizeof(path), "%s/memory.peak", dir);
	peak = read_u64(path);
	write_str(CG_ROOT "/cgroup.procs", "0");
	return peak;
}

/* One call from inside a fresh cgroup: its errno and the bytes it charged. */
static int charged_call(struct __test_metadata *_metadata, FIXTURE_DATA(limits) *self,
			uint32_t count, uint32_t stride, int64_t *charged,
			struct kvm_dirtybatch_clear *c)
{
	char dir[160];
	int64_t cur, peak;
	int r;

	*c = (struct kvm_dirtybatch_clear){ .vm_fd = self->vm->fd, .count = count,
		.range_size = stride, .ranges = (uintptr_t)self->ranges };
	cur = enter_cgroup(_metadata, self, dir, sizeof(dir));
	if (cur < 0) {
		self->skip = "cannot use a memory cgroup (memory controller, memory.peak)";
		return 0;
	}
	r = db_clear(self->dbfd, c);
	peak = leave_cgroup(dir);
	*charged = peak - cur;
	return r;
}

static void check_idle(struct __test_metadata *_metadata, int dbfd)
{
	struct kvm_dirtybatch_stats st;

	ASSERT_EQ(0, db_get_stats(dbfd, &st));
	EXPECT_EQ(0, st.live_allocs);
}

TEST_F_TIMEOUT(limits, max_ranges_and_bitmap_bytes_charged, 120)
{
	const uint32_t max = KVM_DIRTYBATCH_MAX_RANGES;
	const uint64_t bm = (uint64_t)max * (SLOT_PAGES / 8);
	/* the module's buffers: ranges (48 B each), the array copy or the bitmaps */
	const uint64_t bound = 48ULL * max + (max * (uint64_t)STRIDE > bm ? max * (uint64_t)STRIDE : bm) +
			       8192;
	const uint64_t slack = 4 * MIB;	/* vmalloc page tables, rounding */
	struct kvm_dirtybatch_clear c;
	int64_t charged;
	int r;

	ASSERT_EQ(KVM_DIRTYBATCH_MAX_BITMAP_BYTES, bm);
	if (self->skip)
		SKIP(return, "%s", self->skip);

	r = charged_call(_metadata, self, max, STRIDE, &charged, &c);
	if (self->skip)
		SKIP(return, "%s", self->skip);
	EXPECT_EQ(0, r);
	EXPECT_EQ(SLOT_PAGES, c.pages_cleared);
	ksft_print_msg("limits: %u ranges x %u B, %llu MiB of bitmaps: charged %.1f MiB (bound %.1f MiB)\n",
		       max, STRIDE, (unsigned long long)bm / MIB, charged / (double)MIB,
		       bound / (double)MIB);
	EXPECT_LE(bm, (uint64_t)charged) TH_LOG("the bitmap buffer is not charged to the caller");
	EXPECT_GE(bound + slack, (uint64_t)charged) TH_LOG("more than the documented bound");
	check_idle(_metadata, self->dbfd);

	/* one range more: refused before any allocation */
	r = charged_call(_metadata, self, max + 1, STRIDE, &charged, &c);
	EXPECT_EQ(-E2BIG, r);
	ksft_print_msg("limits: %u ranges: E2BIG, charged %.1f MiB\n", max + 1,
		       charged / (double)MIB);
	EXPECT_GT(MIB, (uint64_t)charged);
	check_idle(_metadata, self->dbfd);
}

TEST_F_TIMEOUT(limits, bitmap_bytes_at_limit, 120)
{
	const uint32_t max = KVM_DIRTYBATCH_MAX_RANGES, rs = sizeof(struct kvm_dirtybatch_range);
	struct kvm_dirtybatch_range *last;
	struct kvm_dirtybatch_clear c;
	int64_t charged;
	int r;

	if (self->skip)
		SKIP(return, "%s", self->skip);
	/* 65536 ranges of 256 bitmap bytes: the limit; the last one 8 bytes less */
	lay_out(self->ranges, rs, self->ones);
	last = (void *)(self->ranges + (size_t)(max - 1) * rs);
	last->first_page = 64;
	last->num_pages = SLOT_PAGES - 64;
	r = charged_call(_metadata, self, max, rs, &charged, &c);
	if (self->skip)
		SKIP(return, "%s", self->skip);
	EXPECT_EQ(0, r);
	ksft_print_msg("limits: bitmaps 8 bytes under the limit: accepted, charged %.1f MiB\n",
		       charged / (double)MIB);
	EXPECT_LE(KVM_DIRTYBATCH_MAX_BITMAP_BYTES - 8, charged);
	/* 8 bytes over (and past the slot: the size check comes first) */
	last->first_page = 0;
	last->num_pages = SLOT_PAGES + 1;
	r = charged_call(_metadata, self, max, rs, &charged, &c);
	EXPECT_EQ(-E2BIG, r);
	EXPECT_EQ(max, c.error_index);
	ksft_print_msg("limits: bitmaps 8 bytes over: E2BIG, charged %.1f MiB (ranges and their copy)\n",
		       charged / (double)MIB);
	/* 48 B + 24 B per range, and no bitmap buffer */
	EXPECT_GT(8 * (int64_t)MIB, charged);
	check_idle(_metadata, self->dbfd);
}

static int over_limit_child(FIXTURE_DATA(limits) *self, const char *dir)
{
	struct kvm_dirtybatch_clear c = { .vm_fd = self->vm->fd, .count = KVM_DIRTYBATCH_MAX_RANGES,
		.range_size = STRIDE, .ranges = (uintptr_t)self->ranges };
	char path[192];

	snprintf(path, sizeof(path), "%s/memory.max", dir);
	if (write_str(path, "8M"))
		return 2;
	snprintf(path, sizeof(path), "%s/memory.swap.max", dir);
	write_str(path, "0");
	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	if (write_str(path, "0"))
		return 3;
	return db_clear(self->dbfd, &c) == -ENOMEM ? 0 : 1;
}

TEST_F_TIMEOUT(limits, over_memcg_limit, 120)
{
	char dir[160];
	pid_t pid;
	int st;

	if (self->skip)
		SKIP(return, "%s", self->skip);
	if (enter_cgroup(_metadata, self, dir, sizeof(dir)) < 0)
		SKIP(return, "cannot use a memory cgroup");
	write_str(CG_ROOT "/cgroup.procs", "0");
	pid = fork();
	if (!pid)
		_exit(over_limit_child(self, dir));
	ASSERT_EQ(pid, waitpid(pid, &st, 0));
	EXPECT_TRUE(WIFEXITED(st)) TH_LOG("the caller was killed (signal %d)", WTERMSIG(st));
	if (WIFEXITED(st))
		EXPECT_EQ(0, WEXITSTATUS(st)) TH_LOG("no -ENOMEM (step %d)", WEXITSTATUS(st));
	check_idle(_metadata, self->dbfd);
}

TEST_F(limits, range_size_256_and_264)
{
	struct kvm_dirtybatch_clear c = { .vm_fd = self->vm->fd, .count = 4,
		.range_size = 256, .ranges = (uintptr_t)self->ranges };

	EXPECT_EQ(0, db_clear(self->dbfd, &c));
	c.range_size = 264;
	EXPECT_EQ(-E2BIG, db_clear(self->dbfd, &c));
	check_idle(_metadata, self->dbfd);
}

DIRTYBATCH_TEST_MAIN(true)
