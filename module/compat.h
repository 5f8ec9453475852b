/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Differences between the KVM internals of the supported kernels
 * (Debian's 6.1 and 6.12 LTS), kept in one place.
 */
#ifndef _KVM_DIRTYBATCH_COMPAT_H
#define _KVM_DIRTYBATCH_COMPAT_H

#include <linux/kvm_host.h>

/* Number of memslot address spaces of @kvm (2 on x86: normal and SMM). */
static inline int dirtybatch_nr_as_ids(struct kvm *kvm)
{
#ifdef kvm_arch_nr_memslot_as_ids	/* x86, 6.8+ */
	return kvm_arch_nr_memslot_as_ids(kvm);
#else
	return KVM_ADDRESS_SPACE_NUM;
#endif
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
