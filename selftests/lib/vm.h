/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Minimal KVM VM helper of the shared test library, for the kselftests,
 * the library's real-KVM tests and the benchmarks (no dependency on the
 * KVM selftests library).  Only uses ioctls available on Linux 6.1:
 * KVM_SET_USER_MEMORY_REGION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
 * KVM_GET_DIRTY_LOG, KVM_CLEAR_DIRTY_LOG.
 *
 * Functions named *_try() return 0 or -errno; the others abort the calling
 * process (exit KSFT_FAIL, which fails the current harness test) on error.
 */
#ifndef KVM_DIRTYBATCH_VM_H
#define KVM_DIRTYBATCH_VM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <linux/kvm.h>

#include "guest.h"

#define PAGE_SIZE		4096UL
#define VM_MAX_SLOTS		272	/* slots tracked per VM by this helper */

/* Guest-physical layout of the system slot (slot id 0, AS 0, no logging). */
#define SYS_SLOT		0
#define SYS_GPA			0x0UL
#define SYS_PAGES		32
#define SYS_CODE_GPA		0x1000UL
#define SYS_CTRL_GPA		0x2000UL
#define SYS_LIST_GPA		0x4000UL
#define SYS_LIST_MAX		((SYS_PAGES * PAGE_SIZE - SYS_LIST_GPA) / 4)

#define MANUAL_PROTECT_FLAGS \
	(KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET)

/* Helpers around bitmaps of ALIGN(npages, 64) bits. */
static inline size_t bitmap_bytes(uint64_t npages)
{
	return ((npages + 63) / 64) * 8;
}

static inline bool test_bit64(const uint64_t *bm, uint64_t n)
{
	return (bm[n / 64] >> (n % 64)) & 1;
}

static inline void set_bit64(uint64_t *bm, uint64_t n)
{
	bm[n / 64] |= 1ULL << (n % 64);
}

static inline void clear_bit64(uint64_t *bm, uint64_t n)
{
	bm[n / 64] &= ~(1ULL << (n % 64));
}

struct vm_slot {
	bool used;
	uint32_t slot;		/* as_id << 16 | id */
	uint32_t flags;		/* KVM_MEM_* */
	uint64_t gpa;
	uint64_t npages;
	void *hva;
	size_t map_size;
};

struct vcpu {
	int fd;
	struct kvm_run *run;
	size_t run_size;
	unsigned long exits;
	pthread_t thread;
	bool thread_running;
	int stats_fd;
};

struct vm {
	int kvm_fd;
	int fd;
	int nr_as;		/* KVM_CAP_MULTI_ADDRESS_SPACE (>= 1) */
	int nr_memslots;	/* KVM_CAP_NR_MEMSLOTS (max id + 1) */
	bool manual_protect;
	struct vm_slot slots[VM_MAX_SLOTS];
	struct vcpu *vcpu;
	struct guest_ctrl *ctrl;	/* HVA of the control page */
	uint32_t *list;			/* HVA of the page list */
	int stats_fd;
	uint64_t pt_gpa;		/* page tables, 0 without paging */
};

/* Exit the process with KSFT_FAIL after printing a TAP comment. */
void vm_die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

#define VM_CHECK(cond, fmt, ...) do {					\
	if (!(cond))							\
		vm_die("%s:%d: %s: " fmt, __FILE__, __LINE__, #cond,	\
		       ##__VA_ARGS__);					\
} while (0)

/* 1 if /dev/kvm can be opened, else 0 (reason in *why). */
int kvm_available(const char **why);
int kvm_check_cap(int fd, long cap);

/*
 * Create a VM.  With manual_protect, enables KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2
 * with KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET
 * (needs to be supported).  dirty_ring_bytes > 0 enables the dirty ring
 * instead (returns NULL with errno set if unsupported).  Always sets up the
 * system slot (slot 0) with the guest code.
 */
struct vm *vm_create(bool manual_protect);
struct vm *vm_create_dirty_ring(uint32_t ring_bytes);
void vm_free(struct vm *vm);		/* closes everything, unmaps memory */
/* Close only the VM fd (the VM lives on while vcpu fds exist). */
void vm_close_fd(struct vm *vm);

/* Raw KVM_SET_USER_MEMORY_REGION. */
int vm_set_region_try(struct vm *vm, uint32_t slot, uint32_t flags,
		      uint64_t gpa, uint64_t size, void *hva);

/*
 * Add a slot backed by fresh anonymous memory (MAP_NORESERVE, so big slots
 * cost nothing until touched).  Returns the HVA.  With VM_SLOT_THP in
 * flags (not passed to KVM) the memory is 2 MiB aligned and madvised for
 * transparent huge pages, so KVM can map it with 2 MiB pages.
 */
#define VM_SLOT_THP		(1U << 31)
void *vm_add_slot(struct vm *vm, uint32_t slot, uint64_t gpa, uint64_t npages,
		  uint32_t flags);
int vm_add_slot_try(struct vm *vm, uint32_t slot, uint64_t gpa,
		    uint64_t npages, uint32_t flags, void **hva);
/* Delete a slot (memory size 0) and unmap its memory. */
void vm_delete_slot(struct vm *vm, uint32_t slot);
int vm_delete_slot_try(struct vm *vm, uint32_t slot);
/* Move a slot to another GPA (KVM_MR_MOVE). */
void vm_move_slot(struct vm *vm, uint32_t slot, uint64_t new_gpa);
int vm_move_slot_try(struct vm *vm, uint32_t slot, uint64_t new_gpa);
/* Change KVM_MEM_* flags of a slot (e.g. toggle KVM_MEM_LOG_DIRTY_PAGES). */
void vm_set_slot_flags(struct vm *vm, uint32_t slot, uint32_t flags);
int vm_set_slot_flags_try(struct vm *vm, uint32_t slot, uint32_t flags);

struct vm_slot *vm_find_slot(struct vm *vm, uint32_t slot);
/* HVA of a guest-physical page (AS 0), or NULL. */
void *vm_gpa_to_hva(struct vm *vm, uint64_t gpa);

/* KVM_GET_DIRTY_LOG into bm (bitmap_bytes(npages) bytes). */
int vm_get_dirty_log_try(struct vm *vm, uint32_t slot, uint64_t *bm);
void vm_get_dirty_log(struct vm *vm, uint32_t slot, uint64_t *bm);
/* KVM_CLEAR_DIRTY_LOG. */
int vm_clear_dirty_log_try(struct vm *vm, uint32_t slot, uint64_t first_page,
			   uint32_t num_pages, const void *bm);
void vm_clear_dirty_log(struct vm *vm, uint32_t slot, uint64_t first_page,
			uint32_t num_pages, const void *bm);

/* vCPU 0 in flat 32-bit protected mode, ready to run the guest payload. */
struct vcpu *vm_create_vcpu(struct vm *vm);
/* Reset registers to the payload entry (start a fresh run). */
void vcpu_reset(struct vm *vm);
/*
 * Run the payload with paging on, as real guests run: long mode, the
 * payload in 32-bit compatibility mode, guest-physical 0-4 GiB identity
 * mapped with 2 MiB pages by tables in a new memslot @slot at @gpa
 * (VM_PT_PAGES pages).  Sets the vCPU's CPUID to what KVM supports (long
 * mode needs it).  Call after vm_create_vcpu(); vcpu_reset() keeps the mode.
 */
#define VM_PT_PAGES		6
void vm_enable_paging(struct vm *vm, uint32_t slot, uint64_t gpa);
/*
 * KVM_RUN until the guest signals completion on GUEST_EXIT_PORT; returns 0,
 * or dies on any unexpected exit.  EINTR restarts transparently.
 */
void vcpu_run_to_done(struct vm *vm);

/*
 * Read one statistic of the VM (vcpu == false) or its vCPU through
 * KVM_GET_STATS_FD (e.g. "pf_taken", "pf_fixed", "exits").  Returns 0, or
 * -ENOENT / -errno; the fd is opened once and cached.
 */
int vm_read_stat(struct vm *vm, bool vcpu, const char *name, uint64_t *val);

/* Set the page list (GPAs) and passes (0 = until stopped) for the guest. */
void guest_set_list(struct vm *vm, const uint64_t *gpas, uint32_t nr,
		    uint32_t passes);

/*
 * Pause protocol: request a pause and wait until the guest acknowledges it
 * (then all its earlier stores are visible and it spins without storing).
 * Returns 0, or -ETIMEDOUT.
 */
int guest_pause(struct vm *vm, unsigned int timeout_ms);
void guest_resume(struct vm *vm);

/* Run the vCPU in a background thread (until the guest is done). */
void vcpu_start(struct vm *vm);
/* Set the stop flag (resuming a paused guest) and join the thread. */
void vcpu_stop(struct vm *vm);
/* Join the thread without setting the stop flag (guest ends by itself). */
void vcpu_join(struct vm *vm);

#endif
