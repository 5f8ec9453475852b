// SPDX-License-Identifier: GPL-2.0
/*
 * The clearing core: KVM_DIRTYBATCH_CLEAR applies a list of
 * KVM_CLEAR_DIRTY_LOG requests with one kvm->slots_lock hold, one MMU-lock
 * hold (broken every KVM_DIRTYBATCH_LOCK_BREAK_WORDS bitmap words) and one
 * TLB flush.  Each range behaves exactly as kvm_clear_dirty_log_protect()
 * in virt/kvm/kvm_main.c; the whole call is validated and every user
 * bitmap copied before any dirty bit changes.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bitmap.h>
#include <linux/file.h>
#include <linux/ktime.h>
#include <linux/mm.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "compat.h"
#include "kvm_dirtybatch.h"

/* Largest accepted kvm_dirtybatch_clear.range_size. */
#define DIRTYBATCH_MAX_RANGE_SIZE	256U

/**
 * struct dirtybatch_range - one range, copied in and validated
 * @slot: as in struct kvm_dirtybatch_range
 * @num_pages: as in struct kvm_dirtybatch_range
 * @first_page: as in struct kvm_dirtybatch_range
 * @ubitmap: user pointer to the range's bitmap
 * @bitmap: the range's bitmap, copied into the call's bitmap buffer
 * @memslot: the memslot @slot names, set under kvm->slots_lock
 */
struct dirtybatch_range {
	u32 slot;
	u32 num_pages;
	u64 first_page;
	u64 ubitmap;
	unsigned long *bitmap;
	struct kvm_memory_slot *memslot;
};

/**
 * struct dirtybatch_call - the state of one KVM_DIRTYBATCH_CLEAR call
 * @kvm: the VM, referenced for the call
 * @ranges: @count validated ranges
 * @count: number of ranges
 * @bitmaps: every range's bitmap, back to back
 * @synced: memslots already passed to kvm_arch_sync_dirty_log()
 * @pages_cleared: dirty bits cleared so far
 * @error_index: range that caused the error, or @count
 */
struct dirtybatch_call {
	struct kvm *kvm;
	struct dirtybatch_range *ranges;
	u32 count;
	unsigned long *bitmaps;
	unsigned long *synced;
	u64 pages_cleared;
	u32 error_index;
};

/*
 * Per-call buffers are charged to the caller's memory cgroup.  A call that
 * does not fit fails with -ENOMEM rather than invoking the (memcg) OOM
 * killer, which would kill the VMM in the middle of a migration.
 */
static void *dirtybatch_alloc(size_t size)
{
	void *p = kvzalloc(size, GFP_KERNEL_ACCOUNT | __GFP_RETRY_MAYFAIL |
			   __GFP_NOWARN);

	if (p)
		atomic64_inc(&dirtybatch_counters.live_allocs);
	return p;
}

static void dirtybatch_free(void *p)
{
	if (p) {
		kvfree(p);
		atomic64_dec(&dirtybatch_counters.live_allocs);
	}
}

static size_t range_bitmap_bytes(u32 num_pages)
{
	return ALIGN((size_t)num_pages, BITS_PER_LONG) / 8;
}

static void update_max_hold(u64 ns)
{
	s64 old = atomic64_read(&dirtybatch_counters.max_hold_ns);

	while ((u64)old < ns) {
		if (atomic64_try_cmpxchg(&dirtybatch_counters.max_hold_ns, &old, ns))
			break;
	}
}

/*
 * Copy the ranges array; a stride larger than the known struct is accepted
 * when the extra bytes are zero (as copy_struct_from_user() does).
 */
static int copy_ranges(struct dirtybatch_call *call,
		       const struct kvm_dirtybatch_clear *arg, size_t *total_bytes)
{
	const void __user *uranges = u64_to_user_ptr(arg->ranges);
	const size_t known = sizeof(struct kvm_dirtybatch_range);
	struct kvm_dirtybatch_range *r;
	size_t bytes = 0;
	void *buf;
	u32 i;
	int ret = 0;

	buf = dirtybatch_alloc((size_t)arg->count * arg->range_size);
	if (!buf)
		return -ENOMEM;
	if (copy_from_user(buf, uranges, (size_t)arg->count * arg->range_size)) {
		ret = -EFAULT;
		goto out;
	}
	for (i = 0; i < arg->count; i++) {
		r = buf + (size_t)i * arg->range_size;
		if (arg->range_size > known &&
		    memchr_inv((void *)r + known, 0, arg->range_size - known)) {
			call->error_index = i;
			ret = -E2BIG;
			goto out;
		}
		call->ranges[i].slot = r->slot;
		call->ranges[i].num_pages = r->num_pages;
		call->ranges[i].first_page = r->first_page;
		call->ranges[i].ubitmap = r->dirty_bitmap;
		bytes += range_bitmap_bytes(r->num_pages);
	}
	*total_bytes = bytes;
out:
	dirtybatch_free(buf);
	return ret;
}

/*
 * Copy every user bitmap into one buffer before any lock is taken.  A fault
 * is remembered in *fault_index and reported only after validation, so a
 * range that KVM_CLEAR_DIRTY_LOG would reject reports the same errno here.
 */
static int copy_bitmaps(struct dirtybatch_call *call, size_t total_bytes,
			u32 *fault_index)
{
	struct dirtybatch_range *r;
	unsigned long *dst;
	size_t n;
	u32 i;

	call->bitmaps = dirtybatch_alloc(max_t(size_t, total_bytes, sizeof(long)));
	if (!call->bitmaps)
		return -ENOMEM;

	*fault_index = U32_MAX;
	dst = call->bitmaps;
	for (i = 0; i < call->count; i++) {
		r = &call->ranges[i];
		n = range_bitmap_bytes(r->num_pages);
		r->bitmap = dst;
		dst += n / sizeof(long);
		if (*fault_index == U32_MAX && n &&
		    copy_from_user(r->bitmap, u64_to_user_ptr(r->ubitmap), n))
			*fault_index = i;
	}
	return 0;
}

/*
 * The checks of kvm_clear_dirty_log_protect(), in the same order and with
 * the same errnos, for range @i.  Called with kvm->slots_lock held.
 */
static int validate_range(struct dirtybatch_call *call, u32 i)
{
	struct dirtybatch_range *r = &call->ranges[i];
	struct kvm_memory_slot *memslot;
	int as_id = r->slot >> 16;
	int id = (u16)r->slot;

	if (as_id >= dirtybatch_nr_as_ids(call->kvm) || id >= KVM_USER_MEM_SLOTS)
		return -EINVAL;
	if (r->first_page & 63)
		return -EINVAL;

	memslot = id_to_memslot(__kvm_memslots(call->kvm, as_id), id);
	if (!memslot || !memslot->dirty_bitmap)
		return -ENOENT;

	if (r->first_page > memslot->npages ||
	    r->num_pages > memslot->npages - r->first_page ||
	    (r->num_pages < memslot->npages - r->first_page && (r->num_pages & 63)))
		return -EINVAL;

	r->memslot = memslot;
	return 0;
}

/*
 * Flush hardware dirty-log buffers once per memslot touched (KVM does it
 * once per KVM_CLEAR_DIRTY_LOG call).
 */
static void sync_memslots(struct dirtybatch_call *call)
{
	struct dirtybatch_range *r;
	unsigned long bit;
	u32 i;

	for (i = 0; i < call->count; i++) {
		r = &call->ranges[i];
		bit = (unsigned long)(r->slot >> 16) * KVM_MEM_SLOTS_NUM + (u16)r->slot;
		if (!r->num_pages || __test_and_set_bit(bit, call->synced))
			continue;
		dirtybatch_syms.sync_dirty_log(call->kvm, r->memslot);
	}
}

/*
 * Clear the dirty bits and write-protect the pages again, under the MMU
 * lock, dropping it every KVM_DIRTYBATCH_LOCK_BREAK_WORDS words so that a
 * vCPU faulting meanwhile waits for bounded work.  The single TLB flush
 * follows in the caller, still under kvm->slots_lock and before the ioctl
 * returns: until then a vCPU may still write through a stale TLB entry, and
 * such a write is in the page when userspace reads it after the call.
 *
 * Return: true if any dirty bit was cleared (a TLB flush is needed).
 */
static bool apply_ranges(struct dirtybatch_call *call)
{
	struct kvm *kvm = call->kvm;
	unsigned long mask, *dirty, *src;
	u32 i, work = 0;
	u64 start, now, offset, w, nwords;
	bool flush = false;

	dirtybatch_mmu_lock(kvm);
	atomic64_inc(&dirtybatch_counters.mmu_lock_holds);
	start = ktime_get_ns();

	for (i = 0; i < call->count; i++) {
		struct dirtybatch_range *r = &call->ranges[i];

		dirty = r->memslot->dirty_bitmap;
		src = r->bitmap;
		nwords = DIV_ROUND_UP((u64)r->num_pages, BITS_PER_LONG);
		for (w = 0, offset = r->first_page; w < nwords;
		     w++, offset += BITS_PER_LONG) {
			if (++work > KVM_DIRTYBATCH_LOCK_BREAK_WORDS) {
				now = ktime_get_ns();
				update_max_hold(now - start);
				dirtybatch_mmu_unlock(kvm);
				atomic64_inc(&dirtybatch_counters.lock_breaks);
				cond_resched();
				dirtybatch_mmu_lock(kvm);
				atomic64_inc(&dirtybatch_counters.mmu_lock_holds);
				start = ktime_get_ns();
				work = 1;
			}
			mask = src[w];
			if (!mask)
				continue;
			/*
			 * As in KVM: only bits that were set are cleared and
			 * re-protected; bits past the memslot end never are.
			 */
			mask &= atomic_long_fetch_andnot(mask,
					(atomic_long_t *)&dirty[offset / BITS_PER_LONG]);
			if (mask) {
				flush = true;
				call->pages_cleared += hweight_long(mask);
				dirtybatch_syms.enable_log_dirty_pt_masked(kvm, r->memslot,
									   offset, mask);
			}
		}
	}

	update_max_hold(ktime_get_ns() - start);
	dirtybatch_mmu_unlock(kvm);
	return flush;
}

/* Validate, sync, apply and flush, all under kvm->slots_lock. */
static int clear_locked(struct dirtybatch_call *call, u32 fault_index)
{
	struct kvm *kvm = call->kvm;
	int ret;
	u32 i;

	lockdep_assert_held(&kvm->slots_lock);

	if (!dirtybatch_use_dirty_bitmap(kvm))
		return -ENXIO;

	for (i = 0; i < call->count; i++) {
		ret = validate_range(call, i);
		if (ret) {
			call->error_index = i;
			return ret;
		}
	}
	if (fault_index != U32_MAX) {
		call->error_index = fault_index;
		return -EFAULT;
	}

	sync_memslots(call);
	if (apply_ranges(call)) {
		dirtybatch_syms.flush_remote_tlbs(kvm);
		atomic64_inc(&dirtybatch_counters.tlb_flushes);
	}
	return 0;
}

/* The checks on the argument itself, in the documented order. */
static int check_arg(const struct kvm_dirtybatch_clear *arg)
{
	size_t i;

	if (arg->flags & ~KVM_DIRTYBATCH_CLEAR_FLAGS_ALL || arg->reserved0)
		return -EINVAL;
	for (i = 0; i < ARRAY_SIZE(arg->reserved); i++)
		if (arg->reserved[i])
			return -EINVAL;
	if (arg->range_size < sizeof(struct kvm_dirtybatch_range))
		return -EINVAL;
	if (arg->range_size > DIRTYBATCH_MAX_RANGE_SIZE)
		return -E2BIG;
	if (arg->range_size % 8)
		return -EINVAL;
	if (arg->count > KVM_DIRTYBATCH_MAX_RANGES)
		return -E2BIG;
	return 0;
}

/*
 * Write the out fields back.  Also done before any change, so that an
 * unwritable argument fails with -EFAULT and nothing applied.
 */
static int put_result(struct kvm_dirtybatch_clear __user *uarg,
		      const struct dirtybatch_call *call)
{
	if (put_user(call->pages_cleared, &uarg->pages_cleared) ||
	    put_user(call->error_index, &uarg->error_index))
		return -EFAULT;
	return 0;
}

static int do_clear(struct dirtybatch_call *call,
		    const struct kvm_dirtybatch_clear *arg)
{
	size_t total_bytes = 0;
	u32 fault_index;
	int ret;

	call->ranges = dirtybatch_alloc(sizeof(*call->ranges) * arg->count);
	if (!call->ranges)
		return -ENOMEM;

	ret = copy_ranges(call, arg, &total_bytes);
	if (ret)
		return ret;
	if (total_bytes > KVM_DIRTYBATCH_MAX_BITMAP_BYTES)
		return -E2BIG;

	ret = copy_bitmaps(call, total_bytes, &fault_index);
	if (ret)
		return ret;

	call->synced = dirtybatch_alloc(BITS_TO_LONGS(2 * KVM_MEM_SLOTS_NUM) *
					sizeof(long));
	if (!call->synced)
		return -ENOMEM;

	mutex_lock(&call->kvm->slots_lock);
	ret = clear_locked(call, fault_index);
	mutex_unlock(&call->kvm->slots_lock);
	return ret;
}

/**
 * dirtybatch_clear() - the KVM_DIRTYBATCH_CLEAR ioctl
 * @uarg: user pointer to struct kvm_dirtybatch_clear
 *
 * Return: 0, or a negative errno with no dirty bit changed; see
 * Documentation/kvm_dirtybatch.rst for the errno of each check.
 */
long dirtybatch_clear(struct kvm_dirtybatch_clear __user *uarg)
{
	struct dirtybatch_call call = {};
	struct kvm_dirtybatch_clear arg;
	struct file *file;
	long ret;

	if (copy_from_user(&arg, uarg, sizeof(arg))) {
		ret = -EFAULT;
		goto out_count;
	}
	ret = check_arg(&arg);
	if (ret)
		goto out_count;

	file = fget(arg.vm_fd);
	if (!file) {
		ret = -EBADF;
		goto out_count;
	}
	if (!dirtybatch_syms.file_is_kvm(file)) {
		fput(file);
		ret = -EINVAL;
		goto out_count;
	}
	call.kvm = file->private_data;
	kvm_get_kvm(call.kvm);
	fput(file);

	call.count = arg.count;
	call.error_index = arg.count;
	ret = put_result(uarg, &call);
	if (!ret && arg.count) {
		ret = do_clear(&call, &arg);
		/* Probed writable above; a racing munmap is the caller's. */
		put_result(uarg, &call);
	}

	dirtybatch_free(call.synced);
	dirtybatch_free(call.bitmaps);
	dirtybatch_free(call.ranges);
	kvm_put_kvm(call.kvm);

	if (!ret) {
		atomic64_inc(&dirtybatch_counters.calls);
		atomic64_add(arg.count, &dirtybatch_counters.ranges);
		atomic64_add(call.pages_cleared, &dirtybatch_counters.pages_cleared);
	}
out_count:
	if (ret)
		atomic64_inc(&dirtybatch_counters.failed_calls);
	return ret;
}
