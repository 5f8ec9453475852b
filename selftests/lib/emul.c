// SPDX-License-Identifier: GPL-2.0
/*
 * Userspace emulation of /dev/kvm_dirtybatch, for testing the TESTS
 * without the module (make -C selftests O=... emul: binaries built with
 * -DDB_EMULATE into $(O)/selftests-emul/, never installed as tests).
 *
 * Follows the documented check order, validates each range with a real
 * KVM_CLEAR_DIRTY_LOG on an all-zero bitmap (exact KVM checks, no effect),
 * then applies the ranges with KVM_CLEAR_DIRTY_LOG.  Like the module it
 * has no limit on the bitmaps of a call as a whole.  Statistics are
 * per-process (the tests only look at deltas) and follow the module's
 * rules: one MMU-lock hold per successful call with count > 0 and no lock
 * breaks (nothing waits for a lock here), one dirty_log_syncs per call
 * with count > 0 that passed the per-range checks (also when a bitmap
 * then faults).  Not atomic against concurrent memslot changes: good
 * enough for the single-threaded tests.
 *
 * DB_EMUL_BUG=<name> injects a known bug, to check that the tests catch it:
 *   nonatomic  apply each range right after checking it
 *   overlap    pages_cleared counts overlapping pages per range
 *   noidx      never write error_index
 *   u32align   bitmaps read in 32-bit words: 4 bytes short when
 *              num_pages % 64 is 1..32, so a fault there goes unnoticed
 *   order      bitmap faults reported before the per-range checks
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "util.h"

#define EMUL_FD_MAGIC	"/dev/null"
/*
 * Bitmaps of any size KVM accepts: num_pages is a u32 (512 MiB of bitmap),
 * a memslot at most 2^31 pages (256 MiB).  Reserved, never accounted
 * (MAP_NORESERVE); only the pages used are ever touched.
 */
#define EMUL_MAX_BITMAP		(1ULL << 29)

static struct kvm_dirtybatch_stats emul_stats;
#define STAT_ADD(f, n) __atomic_fetch_add(&emul_stats.f, (n), __ATOMIC_RELAXED)

static bool bug(const char *name)
{
	const char *b = getenv("DB_EMUL_BUG");

	return b && !strcmp(b, name);
}
static int emul_fd = -1;
static uint8_t *zero_buf;		/* read-only zeros, shared by all calls */
static uint64_t *slot_buf;		/* a memslot's dirty log */

static void *emul_map(int prot)
{
	void *p = mmap(NULL, EMUL_MAX_BITMAP, prot,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	VM_CHECK(p != MAP_FAILED, "mmap %llu bytes", (unsigned long long)EMUL_MAX_BITMAP);
	return p;
}

static int read_user(void *dst, uint64_t src, size_t n)
{
	struct iovec l = { dst, n }, r = { (void *)(uintptr_t)src, n };

	if (!n)
		return 0;
	return process_vm_readv(getpid(), &l, 1, &r, 1, 0) == (ssize_t)n ? 0 : -EFAULT;
}

static int write_user(uint64_t dst, const void *src, size_t n)
{
	struct iovec l = { (void *)src, n }, r = { (void *)(uintptr_t)dst, n };

	return process_vm_writev(getpid(), &l, 1, &r, 1, 0) == (ssize_t)n ? 0 : -EFAULT;
}

static int is_vm_fd(int fd)
{
	char path[64], link[128];
	ssize_t n;

	if (fd < 0 || fcntl(fd, F_GETFD) < 0)
		return -EBADF;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0)
		return -EBADF;
	link[n] = 0;
	return strcmp(link, "anon_inode:kvm-vm") ? -EINVAL : 0;
}

static int clear_log(int vmfd, uint32_t slot, uint64_t first, uint32_t num, void *bm)
{
	struct kvm_clear_dirty_log log = { .slot = slot, .num_pages = num,
					   .first_page = first, .dirty_bitmap = bm };

	return ioctl(vmfd, KVM_CLEAR_DIRTY_LOG, &log) ? -errno : 0;
}

/*
 * Dirty pages of a slot that some range asks to clear (the union of the
 * ranges).  The ranges are valid: every bit read lies in the memslot, so
 * KVM_GET_DIRTY_LOG wrote it.
 */
static uint64_t dirty_and_requested(int vmfd, uint32_t slot,
				    const struct kvm_dirtybatch_range *r,
				    uint8_t **bms, uint32_t count, uint64_t *buf)
{
	struct kvm_dirty_log log = { .slot = slot, .dirty_bitmap = buf };
	uint64_t n = 0, w, nw, mask, *dirty;
	uint32_t i;

	if (ioctl(vmfd, KVM_GET_DIRTY_LOG, &log))
		return 0;
	for (i = 0; i < count; i++) {
		if (r[i].slot != slot)
			continue;
		nw = ((uint64_t)r[i].num_pages + 63) / 64;
		dirty = buf + r[i].first_page / 64;
		for (w = 0; w < nw; w++) {
			memcpy(&mask, bms[i] + 8 * w, 8);
			if (w == nw - 1 && r[i].num_pages % 64)
				mask &= (1ULL << (r[i].num_pages % 64)) - 1;
			mask &= dirty[w];
			dirty[w] &= ~mask;
			n += __builtin_popcountll(mask);
		}
	}
	return n;
}

/* Bytes of a range's bitmap that are read (DB_EMUL_BUG=u32align: fewer). */
static size_t bitmap_read_bytes(uint32_t num_pages)
{
	if (bug("u32align"))
		return ((uint64_t)num_pages + 31) / 32 * 4;
	return ((uint64_t)num_pages + 63) / 64 * 8;
}

static int emul_clear(uint64_t argp)
{
	struct kvm_dirtybatch_clear c;
	struct kvm_dirtybatch_range *r = NULL;
	uint8_t *rbuf = NULL, **bms = NULL;
	uint64_t before = 0;
	uint32_t i, j, fault_idx = UINT32_MAX;
	int ret = 0, idx_ret = 0;
	bool write_idx = false;

	if (read_user(&c, argp, sizeof(c)))
		return -EFAULT;
	if (c.flags & ~KVM_DIRTYBATCH_CLEAR_FLAGS_ALL || c.reserved0 || c.reserved[0] ||
	    c.reserved[1] || c.reserved[2] || c.reserved[3])
		return -EINVAL;
	if (c.range_size < sizeof(*r))
		return -EINVAL;
	if (c.range_size > 256)
		return -E2BIG;
	if (c.range_size % 8)
		return -EINVAL;
	if (c.count > KVM_DIRTYBATCH_MAX_RANGES)
		return -E2BIG;
	ret = is_vm_fd(c.vm_fd);
	if (ret)
		return ret;
	if (!c.count) {
		c.pages_cleared = 0;
		c.error_index = 0;
		return write_user(argp, &c, sizeof(c));
	}
	rbuf = malloc((size_t)c.count * c.range_size);
	r = calloc(c.count, sizeof(*r));
	bms = calloc(c.count, sizeof(*bms));
	VM_CHECK(rbuf && r && bms, "malloc");
	if (read_user(rbuf, c.ranges, (size_t)c.count * c.range_size)) {
		ret = -EFAULT;
		goto out;
	}
	for (i = 0; i < c.count; i++) {
		uint8_t *p = rbuf + (size_t)i * c.range_size;

		memcpy(&r[i], p, sizeof(*r));
		for (j = sizeof(*r); j < c.range_size; j++)
			if (p[j]) {
				ret = -E2BIG;
				idx_ret = i;
				write_idx = true;
				goto out;
			}
	}
	/* every bitmap is read, a fault reported after the per-range checks */
	for (i = 0; i < c.count; i++) {
		size_t n = ((uint64_t)r[i].num_pages + 63) / 64 * 8;

		bms[i] = calloc(1, n + 8);
		VM_CHECK(bms[i], "calloc %zu", n + 8);
		if (fault_idx == UINT32_MAX &&
		    read_user(bms[i], r[i].dirty_bitmap, bitmap_read_bytes(r[i].num_pages)))
			fault_idx = i;
	}
	if (clear_log(c.vm_fd, UINT32_MAX, 0, 0, NULL) == -ENXIO) {
		ret = -ENXIO;
		goto out;
	}
	if (fault_idx != UINT32_MAX && bug("order")) {
		ret = -EFAULT;
		idx_ret = fault_idx;
		write_idx = true;
		goto out;
	}
	if (!zero_buf)
		zero_buf = emul_map(PROT_READ);
	for (i = 0; i < c.count; i++) {
		ret = clear_log(c.vm_fd, r[i].slot, r[i].first_page, r[i].num_pages, zero_buf);
		if (!ret && bug("nonatomic") && fault_idx == UINT32_MAX)
			clear_log(c.vm_fd, r[i].slot, r[i].first_page, r[i].num_pages, bms[i]);
		if (ret) {
			idx_ret = i;
			write_idx = true;
			goto out;
		}
	}
	/* validated: the module syncs the dirty logs once, then reads the bitmaps */
	STAT_ADD(dirty_log_syncs, 1);
	if (fault_idx != UINT32_MAX) {
		ret = -EFAULT;
		idx_ret = fault_idx;
		write_idx = true;
		goto out;
	}
	if (!slot_buf)
		slot_buf = emul_map(PROT_READ | PROT_WRITE);
	for (i = 0; i < c.count; i++) {		/* distinct slots */
		for (j = 0; j < i && r[j].slot != r[i].slot; j++)
			;
		if (j == i)
			before += dirty_and_requested(c.vm_fd, r[i].slot, r, bms, c.count,
						      slot_buf);
	}
	for (i = 0; i < c.count; i++) {
		ret = clear_log(c.vm_fd, r[i].slot, r[i].first_page, r[i].num_pages, bms[i]);
		if (ret)	/* raced with a memslot change: not atomic here */
			goto out;
	}
	/*
	 * pages_cleared = requested pages dirty before: exact without
	 * concurrent guest writes, a lower bound with them.
	 */
	c.pages_cleared = before;
	if (bug("overlap"))
		for (i = 1; i < c.count; i++)
			for (j = 0; j < i; j++)
				if (r[j].slot == r[i].slot && r[j].first_page == r[i].first_page) {
					c.pages_cleared += r[i].num_pages < 64 ? r[i].num_pages : 64;
					break;
				}
	idx_ret = c.count;
	write_idx = true;
	STAT_ADD(ranges, c.count);
	STAT_ADD(pages_cleared, c.pages_cleared);
	/* one hold, never broken: lock_breaks stays 0 */
	STAT_ADD(mmu_lock_holds, 1);
	STAT_ADD(tlb_flushes, !!c.pages_cleared);
	if (!emul_stats.max_hold_ns)
		emul_stats.max_hold_ns = 1000;
out:
	if (write_idx && !bug("noidx")) {
		c.error_index = idx_ret;
		write_user(argp, &c, sizeof(c));
	}
	for (i = 0; bms && i < c.count; i++)
		free(bms[i]);
	free(bms);
	free(rbuf);
	free(r);
	return ret;
}

int db_open(void)
{
	int fd = open(EMUL_FD_MAGIC, O_RDWR | O_CLOEXEC);

	if (fd >= 0)
		emul_fd = fd;
	return fd < 0 ? -errno : fd;
}

int db_emul_ioctl(int fd, unsigned long cmd, uint64_t arg)
{
	struct kvm_dirtybatch_info info = {
		.abi_version = KVM_DIRTYBATCH_ABI_VERSION, .size = sizeof(info),
		.features = KVM_DIRTYBATCH_FEAT_CLEAR | KVM_DIRTYBATCH_FEAT_STATS |
			    KVM_DIRTYBATCH_FEAT_ERROR_INDEX,
		.clear_flags = KVM_DIRTYBATCH_CLEAR_FLAGS_ALL,
		.max_ranges = KVM_DIRTYBATCH_MAX_RANGES, .range_size = 24,
		.max_bitmap_bytes = KVM_DIRTYBATCH_MAX_BITMAP_BYTES,
		.lock_break_words = KVM_DIRTYBATCH_LOCK_BREAK_WORDS,
	};
	int r;

	(void)fd;
	switch (cmd) {
	case KVM_DIRTYBATCH_GET_INFO:
		r = write_user(arg, &info, sizeof(info));
		break;
	case KVM_DIRTYBATCH_GET_STATS:
		r = write_user(arg, &emul_stats, sizeof(emul_stats));
		break;
	case KVM_DIRTYBATCH_CLEAR:
		r = emul_clear(arg);
		if (r)
			STAT_ADD(failed_calls, 1);
		else
			STAT_ADD(calls, 1);
		break;
	default:
		r = -ENOTTY;
	}
	if (r) {
		errno = -r;
		return -1;
	}
	return 0;
}
