/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Differences between the KVM internals of the supported kernels
 * (Debian's 6.1 and 6.12 LTS), kept in one place.
 */
#ifndef _KVM_DIRTYBATCH_COMPAT_H
#define _KVM_DIRTYBATCH_COMPAT_H

#include <linux/kvm_host.h>

/*
 * Memslot address spaces: KVM_MAX_NR_ADDRESS_SPACES and
 * kvm_arch_nr_memslot_as_ids() from 6.8 on (on x86 2 with CONFIG_KVM_SMM,
 * else 1, where kvm_arch_nr_memslot_as_ids() is an inline function rather
 * than a macro), KVM_ADDRESS_SPACE_NUM before.
 */
#ifdef KVM_MAX_NR_ADDRESS_SPACES
static inline int dirtybatch_nr_as_ids(struct kvm *kvm)
{
	return kvm_arch_nr_memslot_as_ids(kvm);
}
#else
static inline int dirtybatch_nr_as_ids(struct kvm *kvm)
{
	return KVM_ADDRESS_SPACE_NUM;
}
#endif

/*
 * The gate of kvm_vm_ioctl(): only the process that created the VM may use
 * it, and never once it is dead (virt/kvm/kvm_main.c).
 */
static inline bool dirtybatch_vm_usable(struct kvm *kvm)
{
#ifdef DIRTYBATCH_HAVE_VM_DEAD
	if (READ_ONCE(kvm->vm_dead))
		return false;
#endif
	return kvm->mm == current->mm;
}

/*
 * Whether @kvm tracks dirty pages in memslot bitmaps; false when the dirty
 * ring is used alone.  Mirrors kvm_use_dirty_bitmap() (not exported).
 */
static inline bool dirtybatch_use_dirty_bitmap(struct kvm *kvm)
{
	lockdep_assert_held(&kvm->slots_lock);
#ifdef DIRTYBATCH_HAVE_DIRTY_RING_WITH_BITMAP	/* 6.3+, see Kbuild */
	return !kvm->dirty_ring_size || kvm->dirty_ring_with_bitmap;
#else
	return !kvm->dirty_ring_size;
#endif
}

/* KVM_MMU_LOCK() lives in virt/kvm/kvm_mm.h, which is not installed. */
#ifdef KVM_HAVE_MMU_RWLOCK
#define dirtybatch_mmu_lock(kvm)	write_lock(&(kvm)->mmu_lock)
#define dirtybatch_mmu_unlock(kvm)	write_unlock(&(kvm)->mmu_lock)
#else
#define dirtybatch_mmu_lock(kvm)	spin_lock(&(kvm)->mmu_lock)
#define dirtybatch_mmu_unlock(kvm)	spin_unlock(&(kvm)->mmu_lock)
#endif

#endif /* _KVM_DIRTYBATCH_COMPAT_H */
