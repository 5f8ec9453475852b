// SPDX-License-Identifier: GPL-2.0
/*
 * KVM_CLEAR_DIRTY_LOG_BATCH from a 32-bit process (built with -m32): KVM's
 * compat ioctl path.  The query, a batch that clears a memslot's dirty
 * log, and a failing range's errno and index, as from a 64-bit process.
 * TAP from the shared test library's producer (selftests/lib/tap.h);
 * exit 0 pass, 1 fail, 4 skip.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/kvm.h>
#include <linux/kvm_clear_dirty_log_batch.h>

#include "tap.h"

#define PAGES	128

static int batch(int vm, struct kvm_clear_dirty_log_batch *b)
{
	return ioctl(vm, KVM_CLEAR_DIRTY_LOG_BATCH, b) ? -errno : 0;
}

int main(void)
{
	static uint64_t ones[PAGES / 64], zeros[PAGES / 64], log[PAGES / 64];
	struct kvm_enable_cap cap = {
		.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
		.args = { KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE |
			  KVM_DIRTY_LOG_INITIALLY_SET },
	};
	struct kvm_userspace_memory_region region = {
		.slot = 0,
		.flags = KVM_MEM_LOG_DIRTY_PAGES,
		.memory_size = PAGES * 4096,
	};
	struct kvm_clear_dirty_log_range r[2] = {
		{ .slot = 0, .num_pages = PAGES, .first_page = 0,
		  .dirty_bitmap = (uintptr_t)ones },
		{ .slot = 0, .num_pages = 64, .first_page = 64,
		  .dirty_bitmap = (uintptr_t)zeros },
	};
	struct kvm_clear_dirty_log_batch b = {
		.flags = KVM_CLEAR_DIRTY_LOG_BATCH_QUERY,
	};
	struct kvm_dirty_log get = { .slot = 0, .dirty_bitmap = log };
	int kvm, vm, i, dirty = 0;
	void *mem;

	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0 || ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_CLEAR_DIRTY_LOG_BATCH) <= 0)
		tap_skip_all("no KVM_CAP_CLEAR_DIRTY_LOG_BATCH");
	tap_plan(5);
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	tap_ok(vm >= 0 && !batch(vm, &b) &&
	       b.magic == KVM_CLEAR_DIRTY_LOG_BATCH_MAGIC &&
	       b.abi_version == KVM_CLEAR_DIRTY_LOG_BATCH_ABI_VERSION,
	       "compat: query returns the magic and ABI version");

	mem = mmap(NULL, PAGES * 4096, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	region.userspace_addr = (uintptr_t)mem;
	tap_ok(mem != MAP_FAILED && !ioctl(vm, KVM_ENABLE_CAP, &cap) &&
	       !ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region),
	       "compat: a dirty-logged memslot, initially all dirty");

	memset(ones, 0xff, sizeof(ones));
	b = (struct kvm_clear_dirty_log_batch) {
		.count = 2, .ranges = (uintptr_t)r,
	};
	tap_ok(!batch(vm, &b) && b.error_index == 2,
	       "compat: a batch of two overlapping ranges succeeds");

	ioctl(vm, KVM_GET_DIRTY_LOG, &get);
	for (i = 0; i < PAGES / 64; i++)
		dirty += __builtin_popcountll(log[i]);
	tap_ok(!dirty, "compat: the batch cleared every dirty bit");

	r[1].slot = 5;
	b = (struct kvm_clear_dirty_log_batch) {
		.count = 2, .ranges = (uintptr_t)r,
	};
	tap_ok(batch(vm, &b) == -ENOENT && b.error_index == 1,
	       "compat: a range naming no memslot is ENOENT at index 1");
	return tap_exit_code();
}
