// SPDX-License-Identifier: GPL-2.0
/*
 * The clearing core: KVM_DIRTYBATCH_CLEAR applies a list of
 * KVM_CLEAR_DIRTY_LOG requests with one kvm->slots_lock hold, one MMU-lock
 * hold (dropped whenever another task waits for it or a reschedule is due)
 * and one TLB flush.  Each range behaves as kvm_clear_dirty_log_protect()
 * in virt/kvm/kvm_main.c; the whole call is validated and every user
 * bitmap read before any dirty bit changes.
 *
 * Like KVM, the module stages the user bitmaps in the memslot's second
 * dirty bitmap (kvm_second_dirty_bitmap(), KVM's own scratch space for
 * GET/CLEAR_DIRTY_LOG, only ever used under kvm->slots_lock), but at the
 * position of each range, so that ranges naming the same page merge: the
 * call applies, word by word, the union of its ranges.  No allocation grows
 * with the bitmaps; a user bitmap is read through one page-sized buffer.
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
 * @memslot: the memslot @slot names, set under kvm->slots_lock
 */
struct dirtybatch_range {
	u32 slot;
	u32 num_pages;
	u64 first_page;
	u64 ubitmap;
	struct kvm_memory_slot *memslot;
};

/**
 * struct dirtybatch_call - the state of one KVM_DIRTYBATCH_CLEAR call
 * @kvm: the VM, referenced for the call
 * @ranges: @count validated ranges
 * @count: number of ranges
 * @buf: DIRTYBATCH_BUF_SIZE bytes through which user memory is read
 * @pages_cleared: dirty bits cleared so far
 * @error_index: range that caused the error, or @count
 */
struct dirtybatch_call {
	struct kvm *kvm;
	struct dirtybatch_range *ranges;
	u32 count;
	void *buf;
	u64 pages_cleared;
	u32 error_index;
};

/* The bounce buffer: a multiple of DIRTYBATCH_MAX_RANGE_SIZE and of 8. */
#define DIRTYBATCH_BUF_SIZE		PAGE_SIZE

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

static u64 range_words(const struct dirtybatch_range *r)
{
	return DIV_ROUND_UP((u64)r->num_pages, BITS_PER_LONG);
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
 * Copy the ranges array in, DIRTYBATCH_BUF_SIZE bytes at a time; a stride
 * larger than the known struct is accepted when the extra bytes are zero
 * (as copy_struct_from_user() does).  A fault anywhere in the array takes
 * precedence over nonzero extra bytes, as if the array were copied whole.
 */
static int copy_ranges(struct dirtybatch_call *call,
		       const struct kvm_dirtybatch_clear *arg)
{
	const void __user *uranges = u64_to_user_ptr(arg->ranges);
	const size_t known = sizeof(struct kvm_dirtybatch_range);
	const u32 per_buf = DIRTYBATCH_BUF_SIZE / arg->range_size;
	struct kvm_dirtybatch_range *r;
	u32 i, n, k, extra_index = U32_MAX;

	for (i = 0; i < arg->count; i += n) {
		n = min(per_buf, arg->count - i);
		if (copy_from_user(call->buf, uranges + (size_t)i * arg->range_size,
				   (size_t)n * arg->range_size))
			return -EFAULT;
		for (k = 0; k < n; k++) {
			r = call->buf + (size_t)k * arg->range_size;
			if (arg->range_size > known && extra_index == U32_MAX &&
			    memchr_inv((void *)r + known, 0, arg->range_size - known))
				extra_index = i + k;
			call->ranges[i + k].slot = r->slot;
			call->ranges[i + k].num_pages = r->num_pages;
			call->ranges[i + k].first_page = r->first_page;
			call->ranges[i + k].ubitmap = r->dirty_bitmap;
		}
	}
	if (extra_index != U32_MAX) {
		call->error_index = extra_index;
		return -E2BIG;
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
 * Flush hardware dirty-log buffers (PML) into the dirty bitmaps, as KVM
 * does once per KVM_CLEAR_DIRTY_LOG call.  x86's kvm_arch_sync_dirty_log()
 * ignores the memslot (it kicks every vCPU: always on 6.1, with PML from
 * 6.3 on), so one call covers every memslot of the batch.
 */
static void sync_dirty_logs(struct dirtybatch_call *call)
{
	u32 i;

	for (i = 0; i < call->count; i++) {
		dirtybatch_syms.sync_dirty_log(call->kvm, call->ranges[i].memslot);
		atomic64_inc(&dirtybatch_counters.dirty_log_syncs);
		if (IS_ENABLED(CONFIG_X86))
			break;
	}
}

/*
 * Read every range's user bitmap into its memslot's second dirty bitmap,
 * at the range's position, OR-ing ranges that share a word.  Nothing but
 * KVM's scratch space changes, so a fault leaves the dirty log untouched.
 */
static int stage_bitmaps(struct dirtybatch_call *call)
{
	const u64 buf_words = DIRTYBATCH_BUF_SIZE / sizeof(long);
	unsigned long *staged, *src = call->buf;
	struct dirtybatch_range *r;
	u64 w, n, k, nwords;
	u32 i;

	for (i = 0; i < call->count; i++) {
		r = &call->ranges[i];
		staged = kvm_second_dirty_bitmap(r->memslot) +
			 r->first_page / BITS_PER_LONG;
		memset(staged, 0, range_words(r) * sizeof(long));
	}

	for (i = 0; i < call->count; i++) {
		r = &call->ranges[i];
		staged = kvm_second_dirty_bitmap(r->memslot) +
			 r->first_page / BITS_PER_LONG;
		nwords = range_words(r);
		for (w = 0; w < nwords; w += n) {
			n = min(buf_words, nwords - w);
			if (copy_from_user(src, u64_to_user_ptr(r->ubitmap) +
					   w * sizeof(long), n * sizeof(long))) {
				call->error_index = i;
				return -EFAULT;
			}
			for (k = 0; k < n; k++)
				staged[w + k] |= src[k];
			cond_resched();
		}
	}
	return 0;
}

/*
 * Whether to drop the MMU lock now: another task waits for it, or this
 * one should give up the CPU.  rwlock_needbreak() is not used because it
 * answers "no" on the voluntary-preemption kernels distributions ship.
 */
static bool mmu_lock_needbreak(struct kvm *kvm)
{
	if (need_resched())
		return true;
#ifdef KVM_HAVE_MMU_RWLOCK
	return rwlock_is_contended(&kvm->mmu_lock);
#else
	return spin_is_contended(&kvm->mmu_lock);
#endif
}

/*
 * Clear the dirty bits and write-protect the pages again, under the MMU
 * lock, word by word of the staged union.  Before each word the lock is
 * dropped if someone waits for it, so a vCPU faulting meanwhile waits for
 * one word's work at most.  The single TLB flush follows in the caller,
 * still under kvm->slots_lock and before the ioctl returns: until then a
 * vCPU may still write through a stale TLB entry, and such a write is in
 * the page when userspace reads it after the call.
 *
 * Return: true if any dirty bit was cleared (a TLB flush is needed).
 */
static bool apply_ranges(struct dirtybatch_call *call)
{
	struct kvm *kvm = call->kvm;
	unsigned long mask, *dirty, *staged;
	u64 start, w, nwords, offset;
	bool flush = false;
	u32 i;

	dirtybatch_mmu_lock(kvm);
	atomic64_inc(&dirtybatch_counters.mmu_lock_holds);
	start = ktime_get_ns();

	for (i = 0; i < call->count; i++) {
		struct dirtybatch_range *r = &call->ranges[i];

		dirty = r->memslot->dirty_bitmap;
		staged = kvm_second_dirty_bitmap(r->memslot);
		nwords = range_words(r);
		for (w = r->first_page / BITS_PER_LONG, offset = r->first_page;
		     nwords; w++, nwords--, offset += BITS_PER_LONG) {
			if (mmu_lock_needbreak(kvm)) {
				update_max_hold(ktime_get_ns() - start);
				dirtybatch_mmu_unlock(kvm);
				atomic64_inc(&dirtybatch_counters.lock_breaks);
				cond_resched();
				dirtybatch_mmu_lock(kvm);
				atomic64_inc(&dirtybatch_counters.mmu_lock_holds);
				start = ktime_get_ns();
			}
			/* A word named by several ranges is applied once. */
			mask = staged[w];
			if (!mask)
				continue;
			staged[w] = 0;
			/*
			 * As in KVM: only bits that were set are cleared and
			 * re-protected; bits past the memslot end never are.
			 */
			mask &= atomic_long_fetch_andnot(mask, (atomic_long_t *)&dirty[w]);
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

/* Validate, sync, stage, apply and flush, all under kvm->slots_lock. */
static int clear_locked(struct dirtybatch_call *call)
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

	sync_dirty_logs(call);
	ret = stage_bitmaps(call);
	if (ret)
		return ret;

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

/*
 * The call's kernel memory: sizeof(struct dirtybatch_range) (32 bytes) per
 * range and one DIRTYBATCH_BUF_SIZE buffer, whatever the bitmaps' size.
 */
static int do_clear(struct dirtybatch_call *call,
		    const struct kvm_dirtybatch_clear *arg)
{
	int ret;

	call->ranges = dirtybatch_alloc(sizeof(*call->ranges) * arg->count);
	if (!call->ranges)
		return -ENOMEM;
	call->buf = dirtybatch_alloc(DIRTYBATCH_BUF_SIZE);
	if (!call->buf)
		return -ENOMEM;

	ret = copy_ranges(call, arg);
	if (ret)
		return ret;

	mutex_lock(&call->kvm->slots_lock);
	ret = clear_locked(call);
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
	if (!dirtybatch_vm_usable(call.kvm)) {
		fput(file);
		ret = -EIO;
		goto out_count;
	}
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

	dirtybatch_free(call.buf);
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
