// SPDX-License-Identifier: GPL-2.0
/*
 * limits_test: the memory one KVM_DIRTYBATCH_CLEAR call may use is bounded
 * by its limits and charged to the caller's memory cgroup.
 *
 * The calling process is moved into a fresh cgroup (v2, memory controller)
 * after every user buffer is allocated and touched, so that the cgroup's
 * memory.peak only grows by what the kernel allocates for the call: the
 * documented 32 bytes per range and one page, whatever the bitmaps' size.
 *
 *   max_ranges   KVM_DIRTYBATCH_MAX_RANGES ranges of 256 bytes (the
 *                largest stride), 16 MiB of bitmaps: accepted, charged at
 *                least the ranges, at most the bound (plus slack for
 *                vmalloc page tables), less than the bitmaps;
 *                one range more: -E2BIG, nothing charged;
 *   big_bitmaps  64 ranges each naming a whole 16 GiB memslot, 32 MiB of
 *                bitmaps (twice the limit the module once had): accepted,
 *                each page cleared once, under 1 MiB charged;
 *   range_size   256 accepted, 264 -E2BIG.
 *
 * live_allocs is 0 after each call.  Skipped without cgroup v2 and its
 * memory controller (memory.peak: Linux 5.19+).
 *
 * over_memcg_limit: a call whose buffers do not fit under the caller's
 * memory.max (1 MiB: less than 65536 ranges need) must fail with the
 * documented -ENOMEM, not wake the memcg
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

/* The module's memory for a call of @count ranges (clear.c, do_clear()). */
static uint64_t call_bound(uint32_t count)
{
	return 32ULL * count + getpagesize();
}

TEST_F_TIMEOUT(limits, max_ranges_charged, 120)
{
	const uint32_t max = KVM_DIRTYBATCH_MAX_RANGES;
	const uint64_t bm = (uint64_t)max * (SLOT_PAGES / 8);
	const uint64_t slack = 1 * MIB;	/* vmalloc page tables, rounding */
	struct kvm_dirtybatch_clear c;
	int64_t charged;
	int r;

	if (self->skip)
		SKIP(return, "%s", self->skip);

	r = charged_call(_metadata, self, max, STRIDE, &charged, &c);
	if (self->skip)
		SKIP(return, "%s", self->skip);
	EXPECT_EQ(0, r);
	EXPECT_EQ(SLOT_PAGES, c.pages_cleared);
	ksft_print_msg("limits: %u ranges x %u B, %llu MiB of bitmaps: charged %.2f MiB (bound %.2f MiB)\n",
		       max, STRIDE, (unsigned long long)bm / MIB, charged / (double)MIB,
		       call_bound(max) / (double)MIB);
	EXPECT_LE(32ULL * max, (uint64_t)charged) TH_LOG("the ranges are not charged to the caller");
	EXPECT_GE(call_bound(max) + slack, (uint64_t)charged) TH_LOG("more than the documented bound");
	EXPECT_GT(bm, (uint64_t)charged) TH_LOG("kernel memory grows with the bitmaps");
	check_idle(_metadata, self->dbfd);

	/* one range more: refused before any allocation */
	r = charged_call(_metadata, self, max + 1, STRIDE, &charged, &c);
	EXPECT_EQ(-E2BIG, r);
	ksft_print_msg("limits: %u ranges: E2BIG, charged %.2f MiB\n", max + 1,
		       charged / (double)MIB);
	EXPECT_GT(MIB, (uint64_t)charged);
	check_idle(_metadata, self->dbfd);
}

#define BIG_SLOT_PAGES	(1ULL << 22)	/* 16 GiB, 512 KiB of bitmap */
#define BIG_RANGES	64

TEST_F_TIMEOUT(limits, big_bitmaps, 300)
{
	const size_t bytes = BIG_SLOT_PAGES / 8;
	struct kvm_dirtybatch_range *r;
	struct kvm_dirtybatch_clear c;
	uint64_t *ones;
	int64_t charged;
	unsigned int i;
	int ret;

	if (self->skip)
		SKIP(return, "%s", self->skip);
	if (sizeof(void *) < 8)
		SKIP(return, "a 16 GiB memslot needs a 64-bit process");
	ones = malloc(bytes);
	ASSERT_NE(NULL, ones);
	memset(ones, 0xff, bytes);
	vm_add_slot(self->vm, 2, 1ULL << 34, BIG_SLOT_PAGES, KVM_MEM_LOG_DIRTY_PAGES);
	r = (struct kvm_dirtybatch_range *)self->ranges;
	for (i = 0; i < BIG_RANGES; i++)
		r[i] = (struct kvm_dirtybatch_range){ .slot = 2,
			.num_pages = BIG_SLOT_PAGES, .dirty_bitmap = (uintptr_t)ones };
	ret = charged_call(_metadata, self, BIG_RANGES, sizeof(*r), &charged, &c);
	if (self->skip)
		SKIP(return, "%s", self->skip);
	EXPECT_EQ(0, ret);
	EXPECT_EQ(BIG_SLOT_PAGES, c.pages_cleared);	/* each page once */
	ksft_print_msg("limits: %u ranges, %llu MiB of bitmaps: accepted, charged %.2f MiB\n",
		       BIG_RANGES, (unsigned long long)(BIG_RANGES * bytes / MIB), charged / (double)MIB);
	EXPECT_GT(MIB, (uint64_t)charged);
	check_idle(_metadata, self->dbfd);
	lay_out(self->ranges, STRIDE, self->ones);
	free(ones);
}

/*
 * In a child, which must create its own VM: KVM's VM ioctls, and so the
 * module, refuse a VM created by another process.
 */
static int over_limit_child(FIXTURE_DATA(limits) *self, const char *dir)
{
	struct vm *vm = vm_create(true);
	struct kvm_dirtybatch_clear c = { .vm_fd = vm->fd, .count = KVM_DIRTYBATCH_MAX_RANGES,
		.range_size = STRIDE, .ranges = (uintptr_t)self->ranges };
	char path[192];
	int r;

	vm_add_slot(vm, 1, MIB, SLOT_PAGES, KVM_MEM_LOG_DIRTY_PAGES);

	snprintf(path, sizeof(path), "%s/memory.max", dir);
	if (write_str(path, "1M"))
		return 2;
	snprintf(path, sizeof(path), "%s/memory.swap.max", dir);
	write_str(path, "0");
	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	if (write_str(path, "0"))
		return 3;
	r = db_clear(self->dbfd, &c);
	if (r != -ENOMEM)
		ksft_print_msg("limits: over memory.max: %s\n", strerror(-r));
	return r == -ENOMEM ? 0 : 1;
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
