// SPDX-License-Identifier: GPL-2.0
/*
 * Minimal KVM VM helper of the shared test library.  See vm.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "vm.h"

#define KSFT_FAIL_CODE 1

void vm_die(const char *fmt, ...)
{
	va_list ap;
	int e = errno;

	fflush(stdout);
	fprintf(stderr, "# FATAL: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (errno %d: %s)\n", e, strerror(e));
	fflush(stderr);
	exit(KSFT_FAIL_CODE);
}

int kvm_available(const char **why)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		if (why)
			*why = errno == ENOENT ? "/dev/kvm does not exist" :
						 "/dev/kvm cannot be opened";
		return 0;
	}
	if (ioctl(fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		if (why)
			*why = "unexpected KVM API version";
		close(fd);
		return 0;
	}
	close(fd);
	return 1;
}

int kvm_check_cap(int fd, long cap)
{
	int r = ioctl(fd, KVM_CHECK_EXTENSION, cap);

	return r < 0 ? 0 : r;
}

static struct vm *vm_alloc(void)
{
	struct vm *vm = calloc(1, sizeof(*vm));

	VM_CHECK(vm, "calloc");
	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	VM_CHECK(vm->kvm_fd >= 0, "open /dev/kvm");
	vm->stats_fd = -1;
	vm->fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	VM_CHECK(vm->fd >= 0, "KVM_CREATE_VM");
	vm->nr_as = kvm_check_cap(vm->fd, KVM_CAP_MULTI_ADDRESS_SPACE);
	if (vm->nr_as < 1)
		vm->nr_as = 1;
	vm->nr_memslots = kvm_check_cap(vm->fd, KVM_CAP_NR_MEMSLOTS);
	VM_CHECK(vm->nr_memslots > 0, "KVM_CAP_NR_MEMSLOTS");
	/* Needed on VMX without unrestricted guest; harmless elsewhere. */
	ioctl(vm->fd, KVM_SET_TSS_ADDR, 0xfffbd000UL);
	return vm;
}

static void vm_setup_sys(struct vm *vm)
{
	size_t code_len = guest_code_end - guest_code_start;
	uint8_t *sys;

	VM_CHECK(code_len <= SYS_CTRL_GPA - SYS_CODE_GPA, "guest code too big");
	sys = vm_add_slot(vm, SYS_SLOT, SYS_GPA, SYS_PAGES, 0);
	memcpy(sys + SYS_CODE_GPA, guest_code_start, code_len);
	vm->ctrl = (struct guest_ctrl *)(sys + SYS_CTRL_GPA);
	vm->list = (uint32_t *)(sys + SYS_LIST_GPA);
	vm->ctrl->list_gpa = SYS_LIST_GPA;
}

struct vm *vm_create(bool manual_protect)
{
	struct vm *vm = vm_alloc();

	if (manual_protect) {
		struct kvm_enable_cap cap = {
			.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
			.args = { MANUAL_PROTECT_FLAGS },
		};
		int have = kvm_check_cap(vm->fd, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);

		VM_CHECK((have & MANUAL_PROTECT_FLAGS) == MANUAL_PROTECT_FLAGS,
			 "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 = %d", have);
		VM_CHECK(!ioctl(vm->fd, KVM_ENABLE_CAP, &cap),
			 "enable KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2");
		vm->manual_protect = true;
	}
	vm_setup_sys(vm);
	return vm;
}

struct vm *vm_create_dirty_ring(uint32_t ring_bytes)
{
	struct vm *vm = vm_alloc();
	struct kvm_enable_cap cap = {
		.cap = KVM_CAP_DIRTY_LOG_RING,
		.args = { ring_bytes },
	};
	int max = kvm_check_cap(vm->fd, KVM_CAP_DIRTY_LOG_RING);

	if (max <= 0 || (uint32_t)max < ring_bytes ||
	    ioctl(vm->fd, KVM_ENABLE_CAP, &cap)) {
		int e = max <= 0 ? EOPNOTSUPP : errno;

		vm_free(vm);
		errno = e;
		return NULL;
	}
	vm_setup_sys(vm);
	return vm;
}

void vm_close_fd(struct vm *vm)
{
	if (vm->fd >= 0)
		close(vm->fd);
	vm->fd = -1;
}

void vm_free(struct vm *vm)
{
	int i;

	if (!vm)
		return;
	if (vm->vcpu) {
		if (vm->vcpu->thread_running)
			vcpu_stop(vm);
		munmap(vm->vcpu->run, vm->vcpu->run_size);
		if (vm->vcpu->stats_fd >= 0)
			close(vm->vcpu->stats_fd);
		close(vm->vcpu->fd);
		free(vm->vcpu);
	}
	vm_close_fd(vm);
	if (vm->stats_fd >= 0)
		close(vm->stats_fd);
	for (i = 0; i < VM_MAX_SLOTS; i++)
		if (vm->slots[i].used && vm->slots[i].hva)
			munmap(vm->slots[i].hva, vm->slots[i].map_size);
	close(vm->kvm_fd);
	free(vm);
}

int vm_set_region_try(struct vm *vm, uint32_t slot, uint32_t flags,
		      uint64_t gpa, uint64_t size, void *hva)
{
	struct kvm_userspace_memory_region r = {
		.slot = slot,
		.flags = flags,
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = (uint64_t)(uintptr_t)hva,
	};

	return ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &r) ? -errno : 0;
}

struct vm_slot *vm_find_slot(struct vm *vm, uint32_t slot)
{
	int i;

	for (i = 0; i < VM_MAX_SLOTS; i++)
		if (vm->slots[i].used && vm->slots[i].slot == slot)
			return &vm->slots[i];
	return NULL;
}

int vm_add_slot_try(struct vm *vm, uint32_t slot, uint64_t gpa,
		    uint64_t npages, uint32_t flags, void **hvap)
{
	struct vm_slot *s = NULL;
	size_t size = npages * PAGE_SIZE;
	void *hva;
	int i, r;

	if (vm_find_slot(vm, slot))
		return -EEXIST;
	for (i = 0; i < VM_MAX_SLOTS; i++)
		if (!vm->slots[i].used) {
			s = &vm->slots[i];
			break;
		}
	VM_CHECK(s, "too many slots in helper");
	if (flags & VM_SLOT_THP) {
		/* 2 MiB aligned, transparent huge pages requested */
		const size_t huge = 2UL << 20;
		uint8_t *p = mmap(NULL, size + huge, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		size_t head;

		VM_CHECK(p != MAP_FAILED, "mmap %zu bytes", size + huge);
		head = (huge - ((uintptr_t)p & (huge - 1))) & (huge - 1);
		if (head)
			munmap(p, head);
		munmap(p + head + size, huge - head);
		hva = p + head;
		madvise(hva, size, MADV_HUGEPAGE);	/* best effort */
		flags &= ~VM_SLOT_THP;
	} else {
		hva = mmap(NULL, size, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		VM_CHECK(hva != MAP_FAILED, "mmap %zu bytes", size);
	}
	r = vm_set_region_try(vm, slot, flags, gpa, size, hva);
	if (r) {
		munmap(hva, size);
		return r;
	}
	*s = (struct vm_slot){ .used = true, .slot = slot, .flags = flags,
			       .gpa = gpa, .npages = npages, .hva = hva,
			       .map_size = size };
	if (hvap)
		*hvap = hva;
	return 0;
}

void *vm_add_slot(struct vm *vm, uint32_t slot, uint64_t gpa, uint64_t npages,
		  uint32_t flags)
{
	void *hva = NULL;
	int r = vm_add_slot_try(vm, slot, gpa, npages, flags, &hva);

	errno = -r;
	VM_CHECK(!r, "add slot 0x%x gpa 0x%llx npages %llu flags 0x%x", slot,
		 (unsigned long long)gpa, (unsigned long long)npages, flags);
	return hva;
}

int vm_delete_slot_try(struct vm *vm, uint32_t slot)
{
	struct vm_slot *s = vm_find_slot(vm, slot);
	int r;

	if (!s)
		return -ENOENT;
	r = vm_set_region_try(vm, slot, 0, s->gpa, 0, s->hva);
	if (r)
		return r;
	munmap(s->hva, s->map_size);
	memset(s, 0, sizeof(*s));
	return 0;
}

void vm_delete_slot(struct vm *vm, uint32_t slot)
{
	int r = vm_delete_slot_try(vm, slot);

	errno = -r;
	VM_CHECK(!r, "delete slot 0x%x", slot);
}

/* Memslot @s again at @gpa with @flags: same size, same memory. */
static int vm_update_slot_try(struct vm *vm, struct vm_slot *s, uint64_t gpa, uint32_t flags)
{
	int r = vm_set_region_try(vm, s->slot, flags, gpa, s->npages * PAGE_SIZE, s->hva);

	if (!r) {
		s->gpa = gpa;
		s->flags = flags;
	}
	return r;
}

int vm_move_slot_try(struct vm *vm, uint32_t slot, uint64_t new_gpa)
{
	struct vm_slot *s = vm_find_slot(vm, slot);

	return s ? vm_update_slot_try(vm, s, new_gpa, s->flags) : -ENOENT;
}

void vm_move_slot(struct vm *vm, uint32_t slot, uint64_t new_gpa)
{
	int r = vm_move_slot_try(vm, slot, new_gpa);

	errno = -r;
	VM_CHECK(!r, "move slot 0x%x to 0x%llx", slot,
		 (unsigned long long)new_gpa);
}

int vm_set_slot_flags_try(struct vm *vm, uint32_t slot, uint32_t flags)
{
	struct vm_slot *s = vm_find_slot(vm, slot);

	return s ? vm_update_slot_try(vm, s, s->gpa, flags) : -ENOENT;
}

void vm_set_slot_flags(struct vm *vm, uint32_t slot, uint32_t flags)
{
	int r = vm_set_slot_flags_try(vm, slot, flags);

	errno = -r;
	VM_CHECK(!r, "set flags 0x%x on slot 0x%x", flags, slot);
}

void *vm_gpa_to_hva(struct vm *vm, uint64_t gpa)
{
	int i;

	for (i = 0; i < VM_MAX_SLOTS; i++) {
		struct vm_slot *s = &vm->slots[i];

		if (s->used && !(s->slot >> 16) && gpa >= s->gpa &&
		    gpa < s->gpa + s->npages * PAGE_SIZE)
			return (char *)s->hva + (gpa - s->gpa);
	}
	return NULL;
}

int vm_get_dirty_log_try(struct vm *vm, uint32_t slot, uint64_t *bm)
{
	struct kvm_dirty_log log = { .slot = slot, .dirty_bitmap = bm };

	return ioctl(vm->fd, KVM_GET_DIRTY_LOG, &log) ? -errno : 0;
}

void vm_get_dirty_log(struct vm *vm, uint32_t slot, uint64_t *bm)
{
	int r = vm_get_dirty_log_try(vm, slot, bm);

	errno = -r;
	VM_CHECK(!r, "KVM_GET_DIRTY_LOG slot 0x%x", slot);
}

int vm_clear_dirty_log_try(struct vm *vm, uint32_t slot, uint64_t first_page,
			   uint32_t num_pages, const void *bm)
{
	struct kvm_clear_dirty_log log = {
		.slot = slot,
		.num_pages = num_pages,
		.first_page = first_page,
		.dirty_bitmap = (void *)bm,
	};

	return ioctl(vm->fd, KVM_CLEAR_DIRTY_LOG, &log) ? -errno : 0;
}

void vm_clear_dirty_log(struct vm *vm, uint32_t slot, uint64_t first_page,
			uint32_t num_pages, const void *bm)
{
	int r = vm_clear_dirty_log_try(vm, slot, first_page, num_pages, bm);

	errno = -r;
	VM_CHECK(!r, "KVM_CLEAR_DIRTY_LOG slot 0x%x first %llu num %u", slot,
		 (unsigned long long)first_page, num_pages);
}

static void set_flat_seg(struct kvm_segment *s, uint16_t sel, uint8_t type)
{
	*s = (struct kvm_segment){
		.base = 0, .limit = 0xffffffff, .selector = sel, .type = type,
		.present = 1, .dpl = 0, .db = 1, .s = 1, .l = 0, .g = 1,
	};
}

void vcpu_reset(struct vm *vm)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	int fd = vm->vcpu->fd;

	VM_CHECK(!ioctl(fd, KVM_GET_SREGS, &sregs), "KVM_GET_SREGS");
	set_flat_seg(&sregs.cs, 0x08, 0xb);	/* execute/read, accessed */
	set_flat_seg(&sregs.ds, 0x10, 0x3);	/* read/write, accessed */
	sregs.es = sregs.ss = sregs.fs = sregs.gs = sregs.ds;
	if (vm->pt_gpa) {
		/* long mode; CS.L = 0: the 32-bit payload runs unchanged */
		sregs.cr0 = 0x80000011;		/* PG | PE | ET */
		sregs.cr3 = vm->pt_gpa;
		sregs.cr4 = 0x20;		/* PAE */
		sregs.efer = 0x500;		/* LME | LMA */
	} else {
		sregs.cr0 = 0x11;		/* PE | ET, no paging */
		sregs.cr4 = 0;
		sregs.efer = 0;
	}
	VM_CHECK(!ioctl(fd, KVM_SET_SREGS, &sregs), "KVM_SET_SREGS");

	memset(&regs, 0, sizeof(regs));
	regs.rip = SYS_CODE_GPA;
	regs.rflags = 0x2;
	regs.rsi = SYS_CTRL_GPA;
	regs.rsp = SYS_CTRL_GPA;		/* unused */
	VM_CHECK(!ioctl(fd, KVM_SET_REGS, &regs), "KVM_SET_REGS");
}

void vm_enable_paging(struct vm *vm, uint32_t slot, uint64_t gpa)
{
	struct {
		struct kvm_cpuid2 hdr;
		struct kvm_cpuid_entry2 e[256];
	} cpuid = { .hdr.nent = 256 };
	uint64_t *pml4, *pdpt, *pd;
	int i, j;

	VM_CHECK(vm->vcpu, "vm_enable_paging() before vm_create_vcpu()");
	VM_CHECK(!ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, &cpuid),
		 "KVM_GET_SUPPORTED_CPUID");
	VM_CHECK(!ioctl(vm->vcpu->fd, KVM_SET_CPUID2, &cpuid), "KVM_SET_CPUID2");

	/* PML4, PDPT, 4 page directories of 2 MiB pages: 0-4 GiB */
	pml4 = vm_add_slot(vm, slot, gpa, VM_PT_PAGES, 0);
	pdpt = pml4 + 512;
	pml4[0] = (gpa + PAGE_SIZE) | 3;			/* P | RW */
	for (i = 0; i < 4; i++) {
		pd = pml4 + 512 * (2 + i);
		pdpt[i] = (gpa + PAGE_SIZE * (2 + i)) | 3;
		for (j = 0; j < 512; j++)
			pd[j] = ((uint64_t)i << 30 | (uint64_t)j << 21) | 0x83; /* P | RW | PS */
	}
	vm->pt_gpa = gpa;
	vcpu_reset(vm);
}

struct vcpu *vm_create_vcpu(struct vm *vm)
{
	struct vcpu *v = calloc(1, sizeof(*v));
	int sz;

	VM_CHECK(v, "calloc");
	VM_CHECK(!vm->vcpu, "one vCPU per VM");
	v->stats_fd = -1;
	v->fd = ioctl(vm->fd, KVM_CREATE_VCPU, 0);
	VM_CHECK(v->fd >= 0, "KVM_CREATE_VCPU");
	sz = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	VM_CHECK(sz > 0, "KVM_GET_VCPU_MMAP_SIZE");
	v->run_size = sz;
	v->run = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	VM_CHECK(v->run != MAP_FAILED, "mmap kvm_run");
	vm->vcpu = v;
	vcpu_reset(vm);
	return v;
}

static void vcpu_dump(struct vm *vm)
{
	struct kvm_regs regs;

	if (!ioctl(vm->vcpu->fd, KVM_GET_REGS, &regs))
		fprintf(stderr, "# vcpu: rip 0x%llx rax 0x%llx rbx 0x%llx "
			"rcx 0x%llx rdx 0x%llx rsi 0x%llx rdi 0x%llx\n",
			regs.rip, regs.rax, regs.rbx, regs.rcx, regs.rdx,
			regs.rsi, regs.rdi);
}

void vcpu_run_to_done(struct vm *vm)
{
	struct vcpu *v = vm->vcpu;
	struct kvm_run *run = v->run;

	for (;;) {
		if (ioctl(v->fd, KVM_RUN, 0)) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			vm_die("KVM_RUN");
		}
		v->exits++;
		switch (run->exit_reason) {
		case KVM_EXIT_IO:
			if (run->io.port == GUEST_EXIT_PORT &&
			    run->io.direction == KVM_EXIT_IO_OUT)
				return;
			break;
		case KVM_EXIT_INTR:
			continue;
		case KVM_EXIT_MMIO:
			vcpu_dump(vm);
			vm_die("guest MMIO exit at gpa 0x%llx (no memslot?)",
			       (unsigned long long)run->mmio.phys_addr);
		default:
			break;
		}
		vcpu_dump(vm);
		vm_die("unexpected exit reason %u (io port 0x%x)",
		       run->exit_reason, run->io.port);
	}
}

void guest_set_list(struct vm *vm, const uint64_t *gpas, uint32_t nr,
		    uint32_t passes)
{
	uint32_t i;

	VM_CHECK(nr <= SYS_LIST_MAX, "page list too long (%u)", nr);
	for (i = 0; i < nr; i++) {
		VM_CHECK(gpas[i] < (1ULL << 32) && !(gpas[i] & (PAGE_SIZE - 1)),
			 "bad page gpa 0x%llx", (unsigned long long)gpas[i]);
		vm->list[i] = (uint32_t)gpas[i];
	}
	vm->ctrl->nr = nr;
	vm->ctrl->passes = passes;
	vm->ctrl->done = 0;
	vm->ctrl->stop = 0;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

int guest_pause(struct vm *vm, unsigned int timeout_ms)
{
	struct guest_ctrl *c = vm->ctrl;
	uint32_t gen = __atomic_load_n(&c->pause_gen, __ATOMIC_RELAXED) | 1;
	uint64_t spins = 0, t0;

	VM_CHECK(!(c->pause_gen & 1), "already paused");
	__atomic_store_n(&c->pause_gen, gen, __ATOMIC_SEQ_CST);
	t0 = now_ns();
	while (__atomic_load_n(&c->pause_ack, __ATOMIC_ACQUIRE) != gen) {
		if (++spins < 200) {
			sched_yield();
			continue;
		}
		usleep(50);
		if ((now_ns() - t0) / 1000000 > timeout_ms)
			return -ETIMEDOUT;
	}
	return 0;
}

void guest_resume(struct vm *vm)
{
	struct guest_ctrl *c = vm->ctrl;

	VM_CHECK(c->pause_gen & 1, "not paused");
	__atomic_store_n(&c->pause_gen, c->pause_gen + 1, __ATOMIC_SEQ_CST);
}

static void *vcpu_thread(void *arg)
{
	vcpu_run_to_done(arg);
	return NULL;
}

void vcpu_start(struct vm *vm)
{
	VM_CHECK(vm->vcpu && !vm->vcpu->thread_running, "vcpu_start");
	vcpu_reset(vm);
	VM_CHECK(!pthread_create(&vm->vcpu->thread, NULL, vcpu_thread, vm),
		 "pthread_create");
	vm->vcpu->thread_running = true;
}

void vcpu_join(struct vm *vm)
{
	if (!vm->vcpu || !vm->vcpu->thread_running)
		return;
	pthread_join(vm->vcpu->thread, NULL);
	vm->vcpu->thread_running = false;
}

void vcpu_stop(struct vm *vm)
{
	__atomic_store_n(&vm->ctrl->stop, 1, __ATOMIC_SEQ_CST);
	vcpu_join(vm);
}

int vm_read_stat(struct vm *vm, bool vcpu, const char *name, uint64_t *val)
{
	int *fdp = vcpu ? &vm->vcpu->stats_fd : &vm->stats_fd;
	struct kvm_stats_header h;
	struct kvm_stats_desc *d;
	size_t dsz;
	char *descs;
	uint32_t i;
	int r = -ENOENT;

	if (*fdp < 0) {
		*fdp = ioctl(vcpu ? vm->vcpu->fd : vm->fd, KVM_GET_STATS_FD, NULL);
		if (*fdp < 0)
			return -errno;
	}
	if (pread(*fdp, &h, sizeof(h), 0) != sizeof(h))
		return -EIO;
	dsz = sizeof(*d) + h.name_size;
	descs = malloc(dsz * h.num_desc);
	if (!descs)
		return -ENOMEM;
	if (pread(*fdp, descs, dsz * h.num_desc, h.desc_offset) != (ssize_t)(dsz * h.num_desc)) {
		free(descs);
		return -EIO;
	}
	for (i = 0; i < h.num_desc; i++) {
		d = (struct kvm_stats_desc *)(descs + i * dsz);
		if (strcmp(d->name, name))
			continue;
		r = pread(*fdp, val, sizeof(*val), h.data_offset + d->offset) == sizeof(*val) ?
		    0 : -EIO;
		break;
	}
	free(descs);
	return r;
}
