// SPDX-License-Identifier: MIT
/*
 * libdirtybatch example: what a VMM's dirty-log clearing looks like.
 *
 * Creates a small VM with manual dirty-log protection (all pages start
 * dirty with KVM_DIRTY_LOG_INITIALLY_SET), then does one migration
 * iteration the way QEMU does: fetch the dirty log, clear the dirty pages
 * (in chunks, as QEMU's kvm_log_clear_one_slot() would), copy them.  With
 * the kvm_dirtybatch module the clears of all memslots go to the kernel in
 * one ioctl; without it, libdirtybatch falls back to merged
 * KVM_CLEAR_DIRTY_LOG calls.
 *
 * Build: cc clear_dirty.c $(pkg-config --cflags --libs dirtybatch)
 * Exits 0 without doing anything when /dev/kvm is missing.
 */
#include <dirtybatch.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define PSIZE		4096ULL
#define NSLOTS		2

struct memslot {
	uint32_t slot;		/* as KVM_SET_USER_MEMORY_REGION got it */
	uint64_t gpa, npages;
	void *hva;
	uint64_t *dirty_bmap;	/* like QEMU's KVMSlot.dirty_bmap */
};

static int die(const char *what)
{
	fprintf(stderr, "clear_dirty: %s: %s\n", what, strerror(errno));
	return 1;
}

int main(void)
{
	struct memslot ms[NSLOTS] = {
		{ .slot = 1, .gpa = 0x100000, .npages = 1000 },
		{ .slot = 2, .gpa = 0x100000 + 1000 * PSIZE, .npages = 300 },
	};
	struct kvm_enable_cap cap = { .cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 };
	struct dirtybatch_memslot layout[NSLOTS];
	struct dirtybatch_ctx *db;
	struct dirtybatch_result res = { .sz = sizeof(res) };
	struct dirtybatch_info info = { .sz = sizeof(info) };
	int kvm, vm, err, i;
	int64_t n;

	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) {
		printf("clear_dirty: no /dev/kvm (%s), nothing to show\n", strerror(errno));
		return 0;
	}
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		return die("KVM_CREATE_VM");
	cap.args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET;
	if (ioctl(vm, KVM_ENABLE_CAP, &cap))
		return die("KVM_ENABLE_CAP");

	/* 1. Memslots with dirty logging, and the same layout for the library. */
	for (i = 0; i < NSLOTS; i++) {
		struct kvm_userspace_memory_region r = {
			.slot = ms[i].slot, .flags = KVM_MEM_LOG_DIRTY_PAGES,
			.guest_phys_addr = ms[i].gpa, .memory_size = ms[i].npages * PSIZE,
		};

		ms[i].hva = mmap(NULL, ms[i].npages * PSIZE, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		ms[i].dirty_bmap = calloc((ms[i].npages + 63) / 64, 8);
		if (ms[i].hva == MAP_FAILED || !ms[i].dirty_bmap)
			return die("memory");
		r.userspace_addr = (uint64_t)(uintptr_t)ms[i].hva;
		if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r))
			return die("KVM_SET_USER_MEMORY_REGION");
		layout[i] = (struct dirtybatch_memslot){
			.sz = sizeof(struct dirtybatch_memslot),
			.slot = DIRTYBATCH_SLOT(0, ms[i].slot),
			.guest_phys_addr = ms[i].gpa, .npages = ms[i].npages,
		};
	}

	/* 2. One context per VM (per thread that clears). */
	err = dirtybatch_open(vm, NULL, &db);
	if (err)
		return fprintf(stderr, "dirtybatch_open: %s\n", strerror(-err)), 1;
	err = dirtybatch_set_layout(db, layout, NSLOTS);
	if (err)
		return fprintf(stderr, "dirtybatch_set_layout: %s\n", strerror(-err)), 1;
	dirtybatch_get_info(db, &info);
	printf("clear_dirty: %s mode%s\n",
	       info.mode == DIRTYBATCH_MODE_MODULE ? "module" : "fallback",
	       info.fallback_reason == -ENOENT ? " (module not loaded)" : "");

	/* 3. Sync: fetch the dirty log (manual protect: this clears nothing). */
	for (i = 0; i < NSLOTS; i++) {
		struct kvm_dirty_log log = { .slot = ms[i].slot,
					     .dirty_bitmap = ms[i].dirty_bmap };

		if (ioctl(vm, KVM_GET_DIRTY_LOG, &log))
			return die("KVM_GET_DIRTY_LOG");
	}

	/*
	 * 4. Clear before sending.  QEMU clears in chunks of (start, size)
	 * bytes within a memslot and only the pages its dirty_bmap has; queue
	 * each chunk, then submit them all at once.  Chunks need no 64-page
	 * alignment and may overlap.
	 */
	for (i = 0; i < NSLOTS; i++) {
		uint64_t chunk = 96 * PSIZE, start;

		for (start = 0; start < ms[i].npages * PSIZE; start += chunk) {
			uint64_t size = ms[i].npages * PSIZE - start < chunk ?
					ms[i].npages * PSIZE - start : chunk;

			err = dirtybatch_add_bitmap(db, DIRTYBATCH_SLOT(0, ms[i].slot),
						    start / PSIZE, size / PSIZE,
						    ms[i].dirty_bmap, start / PSIZE);
			if (err)
				return fprintf(stderr, "dirtybatch_add_bitmap: %s\n",
					       strerror(-err)), 1;
		}
	}
	n = dirtybatch_submit(db, &res);
	if (n < 0) {
		/* res says how far it got; the rest is still queued */
		fprintf(stderr, "dirtybatch_submit: %s (slot %#x, page %" PRIu64
			", %" PRIu64 " pages still queued)\n", strerror((int)-n),
			res.error_slot, res.error_first_page, res.pages_pending);
		dirtybatch_discard(db);
		return 1;
	}
	printf("clear_dirty: %" PRId64 " pages %s in %" PRIu64 " ioctl(s), %"
	       PRIu64 " ranges over %" PRIu64 " memslots\n", n,
	       (res.flags & DIRTYBATCH_RESULT_CLEARED_EXACT) ? "cleared" : "requested",
	       res.ioctls, res.ranges, res.slots);

	/* 5. ... now copy the pages the bitmaps name to the destination. */

	/* The log is clean now: nothing dirty until the guest writes again. */
	for (i = 0; i < NSLOTS; i++) {
		struct kvm_dirty_log log = { .slot = ms[i].slot,
					     .dirty_bitmap = ms[i].dirty_bmap };
		uint64_t w, left = 0;

		if (ioctl(vm, KVM_GET_DIRTY_LOG, &log))
			return die("KVM_GET_DIRTY_LOG");
		for (w = 0; w < (ms[i].npages + 63) / 64; w++)
			left += (uint64_t)__builtin_popcountll(ms[i].dirty_bmap[w]);
		if (left) {
			fprintf(stderr, "clear_dirty: slot %u still has %" PRIu64 " dirty pages\n",
				ms[i].slot, left);
			return 1;
		}
	}
	printf("clear_dirty: dirty log clean\n");
	dirtybatch_close(db);
	close(vm);
	close(kvm);
	return 0;
}
