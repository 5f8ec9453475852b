/* SPDX-License-Identifier: LGPL-2.1 OR MIT */
/*
 * Minimal KVM helpers for the libdirtybatch real-KVM tests: a VM with
 * manual dirty-log protection and KVM_DIRTY_LOG_INITIALLY_SET, memslots
 * with dirty logging, and one vCPU in 32-bit flat protected mode running
 * guest_code.S.  Self-contained on purpose (no kselftest library).
 */
#ifndef DIRTYBATCH_KVM_VM_H
#define DIRTYBATCH_KVM_VM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define VM_PAGE		4096ULL
#define VM_MAX_SLOTS	16

/* Control page layout (see guest_code.S). */
struct guest_ctl {
	volatile uint32_t gen, stop, ack, writes, delay, sweep;
};

#define GUEST_CODE_GPA	0x1000ULL
#define GUEST_CTL_GPA	0x2000ULL
#define GUEST_TSS_GPA	0x3000ULL
#define GUEST_SYS_PAGES	16	/* slot 0: code, control page, TSS */

struct vm_slot {
	uint32_t slot;		/* as_id << 16 | id */
	uint64_t gpa, npages;
	void *hva;
	bool logging;
};

struct vm {
	int kvm_fd, vm_fd, vcpu_fd;
	int nr_as;		/* address spaces (KVM_CAP_MULTI_ADDRESS_SPACE) */
	struct vm_slot sys;
	struct vm_slot s[VM_MAX_SLOTS];
	int n;
	struct kvm_run *run;
	size_t run_size;
	struct guest_ctl *ctl;
	pthread_t thread;
	bool running;
	int exit_reason;	/* of the last KVM_RUN, set by the thread */
	int run_err;
	char err[256];
};

/* 0, or -errno with vm->err set.  -ENODEV: no /dev/kvm. */
int vm_create(struct vm *vm);
int vm_add_slot(struct vm *vm, uint32_t slot, uint64_t gpa, uint64_t npages);
int vm_delete_slot(struct vm *vm, uint32_t slot);
/* KVM_GET_DIRTY_LOG into @bm (ALIGN(npages, 64) / 8 bytes). */
int vm_get_dirty_log(struct vm *vm, uint32_t slot, uint64_t *bm);
/* vCPU writing stamps into [gpa, gpa + npages pages). */
int vm_start_vcpu(struct vm *vm, uint64_t gpa, uint64_t npages, uint32_t seed,
		  uint32_t delay);
/* vCPU that writes every page of [gpa, gpa + npages pages) once per
 * vm_sweep() (the first byte of each page), and idles in between. */
int vm_start_sweeper(struct vm *vm, uint64_t gpa, uint64_t npages);
/* One sweep: returns when the vCPU wrote every page; -ETIMEDOUT after
 * @timeout_ms. */
int vm_sweep(struct vm *vm, unsigned int timeout_ms);
int vm_stop_vcpu(struct vm *vm);
void vm_destroy(struct vm *vm);
struct vm_slot *vm_find(struct vm *vm, uint32_t slot);
/* A VM statistic of KVM_GET_STATS_FD by name: 0, -ENOENT, or -errno. */
int vm_stat(struct vm *vm, const char *name, uint64_t *val);

#endif
