// SPDX-License-Identifier: LGPL-2.1 OR MIT
/* Minimal KVM helpers, see kvm_vm.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "kvm_vm.h"

extern const unsigned char dirtybatch_guest_code_start[];
extern const unsigned char dirtybatch_guest_code_end[];

static int vm_fail(struct vm *vm, const char *what)
{
	int e = errno;

	snprintf(vm->err, sizeof(vm->err), "%s: %s", what, strerror(e));
	return -e;
}

static int set_region(struct vm *vm, struct vm_slot *s, uint64_t size)
{
	struct kvm_userspace_memory_region r = {
		.slot = s->slot,
		.flags = s->logging ? KVM_MEM_LOG_DIRTY_PAGES : 0,
		.guest_phys_addr = s->gpa,
		.memory_size = size,
		.userspace_addr = (uint64_t)(uintptr_t)s->hva,
	};

	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r))
		return vm_fail(vm, "KVM_SET_USER_MEMORY_REGION");
	return 0;
}

int vm_create(struct vm *vm)
{
	struct kvm_enable_cap cap = { .cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 };
	int r;

	memset(vm, 0, sizeof(*vm));
	vm->vcpu_fd = -1;
	vm->vm_fd = -1;
	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		vm_fail(vm, "/dev/kvm");
		return errno == ENOENT ? -ENODEV : -errno;
	}
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0)
		return vm_fail(vm, "KVM_CREATE_VM");
	r = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
	if (r <= 0 || !(r & KVM_DIRTY_LOG_INITIALLY_SET)) {
		snprintf(vm->err, sizeof(vm->err), "no KVM_DIRTY_LOG_INITIALLY_SET (%d)", r);
		return -EOPNOTSUPP;
	}
	cap.args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET;
	if (ioctl(vm->vm_fd, KVM_ENABLE_CAP, &cap))
		return vm_fail(vm, "KVM_ENABLE_CAP(MANUAL_DIRTY_LOG_PROTECT2)");
	r = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MULTI_ADDRESS_SPACE);
	vm->nr_as = r > 0 ? r : 1;
	/* needed by VMX without unrestricted guest; harmless otherwise */
	ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, 0xfffbd000UL);

	/* slot 0: guest code, control page, TSS; not dirty-logged */
	vm->sys.slot = 0;
	vm->sys.gpa = 0;
	vm->sys.npages = GUEST_SYS_PAGES;
	vm->sys.hva = mmap(NULL, GUEST_SYS_PAGES * VM_PAGE, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (vm->sys.hva == MAP_FAILED)
		return vm_fail(vm, "mmap");
	r = set_region(vm, &vm->sys, GUEST_SYS_PAGES * VM_PAGE);
	if (r)
		return r;
	memcpy((char *)vm->sys.hva + GUEST_CODE_GPA, dirtybatch_guest_code_start,
	       (size_t)(dirtybatch_guest_code_end - dirtybatch_guest_code_start));
	vm->ctl = (struct guest_ctl *)((char *)vm->sys.hva + GUEST_CTL_GPA);
	return 0;
}

int vm_add_slot(struct vm *vm, uint32_t slot, uint64_t gpa, uint64_t npages)
{
	struct vm_slot *s;
	int r;

	if (vm->n == VM_MAX_SLOTS)
		return -ENOSPC;
	s = &vm->s[vm->n];
	s->slot = slot;
	s->gpa = gpa;
	s->npages = npages;
	s->logging = true;
	s->hva = mmap(NULL, npages * VM_PAGE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (s->hva == MAP_FAILED)
		return vm_fail(vm, "mmap");
	r = set_region(vm, s, npages * VM_PAGE);
	if (r) {
		munmap(s->hva, npages * VM_PAGE);
		return r;
	}
	vm->n++;
	return 0;
}

struct vm_slot *vm_find(struct vm *vm, uint32_t slot)
{
	for (int i = 0; i < vm->n; i++)
		if (vm->s[i].slot == slot)
			return &vm->s[i];
	return NULL;
}

int vm_delete_slot(struct vm *vm, uint32_t slot)
{
	struct vm_slot *s = vm_find(vm, slot);
	int r;

	if (!s)
		return -ENOENT;
	r = set_region(vm, s, 0);
	if (r)
		return r;
	munmap(s->hva, s->npages * VM_PAGE);
	*s = vm->s[--vm->n];
	return 0;
}

int vm_get_dirty_log(struct vm *vm, uint32_t slot, uint64_t *bm)
{
	struct kvm_dirty_log log = { .slot = slot, .dirty_bitmap = bm };

	if (ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &log))
		return vm_fail(vm, "KVM_GET_DIRTY_LOG");
	return 0;
}

static void set_seg(struct kvm_segment *sg, uint16_t sel, uint8_t type, bool code)
{
	memset(sg, 0, sizeof(*sg));
	sg->base = 0;
	sg->limit = 0xffffffff;
	sg->selector = sel;
	sg->type = type;
	sg->present = 1;
	sg->dpl = 0;
	sg->db = 1;
	sg->s = 1;
	sg->l = 0;
	sg->g = 1;
	(void)code;
}

static void *vcpu_thread(void *arg)
{
	struct vm *vm = arg;

	for (;;) {
		if (ioctl(vm->vcpu_fd, KVM_RUN, 0)) {
			if (errno == EINTR)
				continue;
			vm->run_err = -errno;
			break;
		}
		vm->exit_reason = (int)vm->run->exit_reason;
		if (vm->run->exit_reason == KVM_EXIT_HLT && vm->ctl->stop)
			break;
		if (vm->run->exit_reason == KVM_EXIT_HLT)
			continue;
		if (vm->run->exit_reason == KVM_EXIT_INTR)
			continue;
		break;	/* anything else is a failure */
	}
	return NULL;
}

static int start_vcpu(struct vm *vm, uint64_t gpa, uint64_t npages, uint32_t seed,
		      uint32_t delay, bool sweep)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	int sz, r;

	vm->vcpu_fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, 0);
	if (vm->vcpu_fd < 0)
		return vm_fail(vm, "KVM_CREATE_VCPU");
	sz = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (sz <= 0)
		return vm_fail(vm, "KVM_GET_VCPU_MMAP_SIZE");
	vm->run_size = (size_t)sz;
	vm->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		       vm->vcpu_fd, 0);
	if (vm->run == MAP_FAILED)
		return vm_fail(vm, "mmap kvm_run");

	if (ioctl(vm->vcpu_fd, KVM_GET_SREGS, &sregs))
		return vm_fail(vm, "KVM_GET_SREGS");
	set_seg(&sregs.cs, 0x08, 0xb, true);	/* code, execute/read, accessed */
	set_seg(&sregs.ds, 0x10, 0x3, false);	/* data, read/write, accessed */
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	memset(&sregs.tr, 0, sizeof(sregs.tr));
	sregs.tr.base = GUEST_TSS_GPA;
	sregs.tr.limit = 0x67;
	sregs.tr.selector = 0x18;
	sregs.tr.type = 0xb;			/* busy 32-bit TSS */
	sregs.tr.present = 1;
	memset(&sregs.ldt, 0, sizeof(sregs.ldt));
	sregs.ldt.type = 0x2;
	sregs.ldt.unusable = 1;
	sregs.gdt.base = 0;
	sregs.gdt.limit = 0x1f;
	sregs.idt.base = 0;
	sregs.idt.limit = 0;
	sregs.cr0 = 0x11;			/* PE, ET; no paging */
	sregs.cr4 = 0;
	sregs.efer = 0;
	if (ioctl(vm->vcpu_fd, KVM_SET_SREGS, &sregs))
		return vm_fail(vm, "KVM_SET_SREGS");

	memset(&regs, 0, sizeof(regs));
	regs.rflags = 0x2;
	regs.rip = GUEST_CODE_GPA;
	regs.rsi = gpa;
	regs.rbx = npages;
	regs.rdi = GUEST_CTL_GPA;
	regs.rbp = seed;
	if (ioctl(vm->vcpu_fd, KVM_SET_REGS, &regs))
		return vm_fail(vm, "KVM_SET_REGS");

	vm->ctl->stop = 0;
	vm->ctl->delay = delay;
	vm->ctl->sweep = sweep;
	vm->ctl->gen = 0;
	vm->ctl->ack = 0;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	r = pthread_create(&vm->thread, NULL, vcpu_thread, vm);
	if (r) {
		errno = r;
		return vm_fail(vm, "pthread_create");
	}
	vm->running = true;
	return 0;
}

int vm_start_vcpu(struct vm *vm, uint64_t gpa, uint64_t npages, uint32_t seed,
		  uint32_t delay)
{
	return start_vcpu(vm, gpa, npages, seed, delay, false);
}

int vm_start_sweeper(struct vm *vm, uint64_t gpa, uint64_t npages)
{
	return start_vcpu(vm, gpa, npages, 0, 0, true);
}

int vm_sweep(struct vm *vm, unsigned int timeout_ms)
{
	uint32_t gen = vm->ctl->gen + 1;
	struct timespec t0, t;

	__atomic_store_n(&vm->ctl->gen, gen, __ATOMIC_SEQ_CST);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (__atomic_load_n(&vm->ctl->ack, __ATOMIC_ACQUIRE) != gen) {
		if (!vm->running || vm->run_err) {
			snprintf(vm->err, sizeof(vm->err), "vCPU stopped during a sweep");
			return -EIO;
		}
		clock_gettime(CLOCK_MONOTONIC, &t);
		if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 >
		    (long)timeout_ms) {
			snprintf(vm->err, sizeof(vm->err), "sweep took over %u ms", timeout_ms);
			return -ETIMEDOUT;
		}
		usleep(100);
	}
	return 0;
}

int vm_stop_vcpu(struct vm *vm)
{
	if (!vm->running)
		return 0;
	vm->ctl->stop = 1;
	pthread_join(vm->thread, NULL);
	vm->running = false;
	if (vm->run_err) {
		snprintf(vm->err, sizeof(vm->err), "KVM_RUN: %s", strerror(-vm->run_err));
		return vm->run_err;
	}
	if (vm->exit_reason != KVM_EXIT_HLT) {
		snprintf(vm->err, sizeof(vm->err), "vCPU exit reason %d", vm->exit_reason);
		return -EIO;
	}
	return 0;
}

int vm_stat(struct vm *vm, const char *name, uint64_t *val)
{
	struct kvm_stats_header h;
	size_t dsz;
	char *descs = NULL;
	int fd, r = -ENOENT;

	fd = ioctl(vm->vm_fd, KVM_GET_STATS_FD, NULL);
	if (fd < 0)
		return -errno;
	if (pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h)) {
		r = -EIO;
		goto out;
	}
	dsz = sizeof(struct kvm_stats_desc) + h.name_size;
	descs = malloc(dsz * h.num_desc);
	if (!descs) {
		r = -ENOMEM;
		goto out;
	}
	if (pread(fd, descs, dsz * h.num_desc, h.desc_offset) != (ssize_t)(dsz * h.num_desc)) {
		r = -EIO;
		goto out;
	}
	for (uint32_t i = 0; i < h.num_desc; i++) {
		const struct kvm_stats_desc *d = (const void *)(descs + i * dsz);

		if (strcmp(d->name, name))
			continue;
		r = pread(fd, val, sizeof(*val), h.data_offset + d->offset) ==
		    (ssize_t)sizeof(*val) ? 0 : -EIO;
		break;
	}
out:
	free(descs);
	close(fd);
	return r;
}

void vm_destroy(struct vm *vm)
{
	if (vm->running) {
		vm->ctl->stop = 1;
		pthread_join(vm->thread, NULL);
	}
	for (int i = 0; i < vm->n; i++)
		munmap(vm->s[i].hva, vm->s[i].npages * VM_PAGE);
	if (vm->sys.hva && vm->sys.hva != MAP_FAILED)
		munmap(vm->sys.hva, GUEST_SYS_PAGES * VM_PAGE);
	if (vm->run && vm->run != MAP_FAILED)
		munmap(vm->run, vm->run_size);
	if (vm->vcpu_fd >= 0)
		close(vm->vcpu_fd);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	memset(vm, 0, sizeof(*vm));
}
