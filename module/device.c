// SPDX-License-Identifier: GPL-2.0
/*
 * kvm_dirtybatch: the /dev/kvm_dirtybatch misc device, its ioctls, the
 * module-wide counters (also in debugfs) and module init/exit.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/debugfs.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/seq_file.h>
#include <linux/uaccess.h>

#include "kvm_dirtybatch.h"

struct dirtybatch_counters dirtybatch_counters;

static struct dentry *dirtybatch_debugfs;

/**
 * dirtybatch_read_stats() - snapshot the module-wide counters
 * @st: filled in; reserved fields zeroed
 */
void dirtybatch_read_stats(struct kvm_dirtybatch_stats *st)
{
	struct dirtybatch_counters *c = &dirtybatch_counters;

	memset(st, 0, sizeof(*st));
	st->calls = atomic64_read(&c->calls);
	st->failed_calls = atomic64_read(&c->failed_calls);
	st->ranges = atomic64_read(&c->ranges);
	st->pages_cleared = atomic64_read(&c->pages_cleared);
	st->mmu_lock_holds = atomic64_read(&c->mmu_lock_holds);
	st->lock_breaks = atomic64_read(&c->lock_breaks);
	st->tlb_flushes = atomic64_read(&c->tlb_flushes);
	st->max_hold_ns = atomic64_read(&c->max_hold_ns);
	st->live_allocs = atomic64_read(&c->live_allocs);
	st->dirty_log_syncs = atomic64_read(&c->dirty_log_syncs);
}

static long dirtybatch_get_info(struct kvm_dirtybatch_info __user *uinfo)
{
	struct kvm_dirtybatch_info info = {
		.abi_version = KVM_DIRTYBATCH_ABI_VERSION,
		.size = sizeof(info),
		.features = KVM_DIRTYBATCH_FEAT_CLEAR | KVM_DIRTYBATCH_FEAT_STATS |
			    KVM_DIRTYBATCH_FEAT_ERROR_INDEX,
		.clear_flags = KVM_DIRTYBATCH_CLEAR_FLAGS_ALL,
		.max_ranges = KVM_DIRTYBATCH_MAX_RANGES,
		.range_size = sizeof(struct kvm_dirtybatch_range),
		.max_bitmap_bytes = KVM_DIRTYBATCH_MAX_BITMAP_BYTES,
		.lock_break_words = KVM_DIRTYBATCH_LOCK_BREAK_WORDS,
	};

	return copy_to_user(uinfo, &info, sizeof(info)) ? -EFAULT : 0;
}

static long dirtybatch_get_stats(struct kvm_dirtybatch_stats __user *ustats)
{
	struct kvm_dirtybatch_stats st;

	dirtybatch_read_stats(&st);
	return copy_to_user(ustats, &st, sizeof(st)) ? -EFAULT : 0;
}

static long dirtybatch_ioctl(struct file *filp, unsigned int cmd,
			     unsigned long arg)
{
	void __user *argp = (void __user *)arg;

	switch (cmd) {
	case KVM_DIRTYBATCH_GET_INFO:
		return dirtybatch_get_info(argp);
	case KVM_DIRTYBATCH_CLEAR:
		return dirtybatch_clear(argp);
	case KVM_DIRTYBATCH_GET_STATS:
		return dirtybatch_get_stats(argp);
	default:
		return -ENOTTY;
	}
}

static const struct file_operations dirtybatch_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = dirtybatch_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

/* Same mode as /dev/kvm; module/60-kvm-dirtybatch.rules sets the kvm group. */
static struct miscdevice dirtybatch_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = KVM_DIRTYBATCH_DEVICE_NAME,
	.fops = &dirtybatch_fops,
	.mode = 0660,
};

static int dirtybatch_stats_show(struct seq_file *m, void *unused)
{
	struct kvm_dirtybatch_stats st;

	dirtybatch_read_stats(&st);
	seq_printf(m, "calls %llu\n", st.calls);
	seq_printf(m, "failed_calls %llu\n", st.failed_calls);
	seq_printf(m, "ranges %llu\n", st.ranges);
	seq_printf(m, "pages_cleared %llu\n", st.pages_cleared);
	seq_printf(m, "mmu_lock_holds %llu\n", st.mmu_lock_holds);
	seq_printf(m, "lock_breaks %llu\n", st.lock_breaks);
	seq_printf(m, "tlb_flushes %llu\n", st.tlb_flushes);
	seq_printf(m, "max_hold_ns %llu\n", st.max_hold_ns);
	seq_printf(m, "live_allocs %llu\n", st.live_allocs);
	seq_printf(m, "dirty_log_syncs %llu\n", st.dirty_log_syncs);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(dirtybatch_stats);

static int __init dirtybatch_init(void)
{
	int ret;

	ret = dirtybatch_resolve_symbols();
	if (ret)
		return ret;

	ret = misc_register(&dirtybatch_misc);
	if (ret) {
		pr_err("cannot register /dev/%s: %d\n", KVM_DIRTYBATCH_DEVICE_NAME, ret);
		dirtybatch_release_symbols();
		return ret;
	}

	/* Optional: failure only means no debugfs view of the counters. */
	dirtybatch_debugfs = debugfs_create_dir(KBUILD_MODNAME, NULL);
	debugfs_create_file("stats", 0400, dirtybatch_debugfs, NULL,
			    &dirtybatch_stats_fops);
	return 0;
}

static void __exit dirtybatch_exit(void)
{
	debugfs_remove_recursive(dirtybatch_debugfs);
	misc_deregister(&dirtybatch_misc);
	dirtybatch_release_symbols();
}

module_init(dirtybatch_init);
module_exit(dirtybatch_exit);

MODULE_DESCRIPTION("Batched KVM_CLEAR_DIRTY_LOG for live migration");
MODULE_AUTHOR("kvm-dirtybatch developers");
MODULE_LICENSE("GPL");
MODULE_VERSION(KVM_DIRTYBATCH_VERSION);
