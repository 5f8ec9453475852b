// SPDX-License-Identifier: GPL-2.0
/*
 * clear_errors_test: the errno contract of KVM_DIRTYBATCH_CLEAR.
 *
 * Every "neg.*" case starts from a valid 4-range batch over a VM whose
 * dirty bitmaps are all ones (KVM_DIRTY_LOG_INITIALLY_SET), changes ONE
 * field (or, for "neg.order_*", two fields to check the order of the
 * checks), calls KVM_DIRTYBATCH_CLEAR and checks:
 *   - the errno (and error_index: the range for range errors; unchanged or
 *     count for the others),
 *   - that nothing at all was applied (KVM_GET_DIRTY_LOG still all ones),
 *   - that GET_STATS counted one failed call and no successful one,
 *   - that the call wrote nothing but pages_cleared / error_index (not
 *     the other fields, the ranges or the bitmaps).
 * The "neg.ok_*" cases are valid edge cases: they must succeed, with the
 * bitmaps and pages_cleared equal to a reference model.
 * "big.*" checks the KVM_DIRTYBATCH_MAX_RANGES limit and that bitmaps have
 * no limit KVM lacks: a whole 1 TiB memslot in one range, against one
 * KVM_CLEAR_DIRTY_LOG on an identical VM.
 *
 * With KVM_DIRTYBATCH_BACKEND=native the same cases go to KVM's own
 * KVM_CLEAR_DIRTY_LOG_BATCH (db_clear()): the errno and error_index of
 * each malformed range, nothing applied, -EIO from another process, the
 * bitmaps as the model says; the module's own header fields, vm_fd
 * resolution and counters are skipped there (NEG_MODULE, has_stats).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "util.h"

#define RSIZE		((uint32_t)sizeof(struct kvm_dirtybatch_range))
#define NR_BASE		4
#define RBUF_RANGES	8
#define MIB		(1UL << 20)
#define SENTINEL	0xdeadbeefU

enum {
	IDX_ANY = -1,		/* not checked (the struct itself is unreadable) */
	IDX_NONRANGE = -2,	/* not range specific: unchanged or == count */
	IDX_COUNT = -3,		/* success: == count */
};

struct ctx {
	struct __test_metadata *_metadata;
	struct vm *vm;
	struct vm *other;
	int dbfd;
	struct kvm_dirtybatch_clear c;
	void *arg;		/* ioctl argument, &c unless changed */
	uint8_t *rbuf;		/* RBUF_RANGES * 256 bytes */
	uint64_t *ones;		/* PAGE_SIZE of 0xff */
	uint64_t *pattern;	/* PAGE_SIZE of a fixed bit pattern */
	char *edge;		/* mapped page directly followed by hole */
	char *hole;		/* unmapped page */
	int fds[4];
	int nfds;
	uint32_t as1;		/* 1 << 16 if address space 1 exists */
	bool other_process;	/* the call is made by a child process */
	const char *skip;
};

/* base batch, all valid; slot 4 exists without dirty logging */
static const struct { uint32_t id; uint64_t npages; uint32_t flags; } slots[] = {
	{ 1, 256, KVM_MEM_LOG_DIRTY_PAGES },
	{ 2, 100, KVM_MEM_LOG_DIRTY_PAGES },
	{ 3, 64, KVM_MEM_LOG_DIRTY_PAGES },
	{ 4, 64, 0 },
	{ 5, 130, KVM_MEM_LOG_DIRTY_PAGES },
};

static const struct kvm_dirtybatch_range base[NR_BASE] = {
	{ .slot = 1, .first_page = 0, .num_pages = 256 },
	{ .slot = 2, .first_page = 0, .num_pages = 100 },
	{ .slot = 3, .first_page = 0, .num_pages = 64 },
	{ .slot = 5, .first_page = 64, .num_pages = 66 },
};

static struct kvm_dirtybatch_range *R(struct ctx *x, unsigned int i)
{
	return (struct kvm_dirtybatch_range *)(x->rbuf + (size_t)i * x->c.range_size);
}

/* Lay the base ranges out again with another stride (extra bytes zero). */
static void set_stride(struct ctx *x, uint32_t stride)
{
	unsigned int i;

	memset(x->rbuf, 0, RBUF_RANGES * 256);
	x->c.range_size = stride;
	for (i = 0; i < NR_BASE; i++) {
		*R(x, i) = base[i];
		R(x, i)->dirty_bitmap = (uintptr_t)x->ones;
	}
}

/* ---- step 1: the struct ---- */
static void m_struct_unmapped(struct ctx *x) { x->arg = x->hole; }
static void m_struct_null(struct ctx *x) { x->arg = NULL; }
static void m_struct_partial(struct ctx *x)
{
	/* last 8 bytes of the struct in the unmapped page */
	x->arg = x->hole - sizeof(x->c) + 8;
	memcpy(x->arg, &x->c, sizeof(x->c) - 8);
}

/* ---- step 2: flags / reserved ---- */
static void m_flags_bit0(struct ctx *x) { x->c.flags = 1; }
static void m_flags_bit31(struct ctx *x) { x->c.flags = 1U << 31; }
static void m_reserved0(struct ctx *x) { x->c.reserved0 = 1; }
static void m_reserved_0(struct ctx *x) { x->c.reserved[0] = 1; }
static void m_reserved_1(struct ctx *x) { x->c.reserved[1] = 1ULL << 40; }
static void m_reserved_2(struct ctx *x) { x->c.reserved[2] = 0x80; }
static void m_reserved_3(struct ctx *x) { x->c.reserved[3] = 1ULL << 63; }

/* ---- step 3: range_size ---- */
static void m_rsize_0(struct ctx *x) { x->c.range_size = 0; }
static void m_rsize_16(struct ctx *x) { x->c.range_size = 16; }
static void m_rsize_23(struct ctx *x) { x->c.range_size = RSIZE - 1; }
static void m_rsize_25(struct ctx *x) { x->c.range_size = RSIZE + 1; }
static void m_rsize_28(struct ctx *x) { x->c.range_size = 28; }
static void m_rsize_252(struct ctx *x) { x->c.range_size = 252; }
static void m_rsize_257(struct ctx *x) { x->c.range_size = 257; }
static void m_rsize_264(struct ctx *x) { x->c.range_size = 264; }
static void m_rsize_4096(struct ctx *x) { x->c.range_size = 4096; }
static void m_rsize_max(struct ctx *x) { x->c.range_size = UINT32_MAX; }

/* ---- step 4: count ---- */
static void m_count_max1(struct ctx *x) { x->c.count = KVM_DIRTYBATCH_MAX_RANGES + 1; }
static void m_count_u32max(struct ctx *x) { x->c.count = UINT32_MAX; }

/* ---- step 5: vm_fd ---- */
static int closed_fd(void)
{
	int fd = open("/dev/null", O_RDONLY);

	close(fd);
	return fd;
}

static int keep_fd(struct ctx *x, int fd)
{
	x->fds[x->nfds++] = fd;
	return fd;
}

static void m_fd_minus1(struct ctx *x) { x->c.vm_fd = -1; }
static void m_fd_negative(struct ctx *x) { x->c.vm_fd = INT_MIN; }
static void m_fd_intmax(struct ctx *x) { x->c.vm_fd = INT_MAX; }
static void m_fd_closed(struct ctx *x) { x->c.vm_fd = closed_fd(); }
static void m_fd_closed_vm(struct ctx *x)
{
	x->other = vm_create(true);
	x->c.vm_fd = x->other->fd;
	vm_close_fd(x->other);		/* VM destroyed, number free */
}

static void m_fd_closed_vm_alive(struct ctx *x)
{
	/* the vCPU fd keeps the VM alive, but vm_fd is no open fd */
	x->other = vm_create(true);
	vm_add_slot(x->other, 1, MIB, 256, KVM_MEM_LOG_DIRTY_PAGES);
	vm_create_vcpu(x->other);
	x->c.vm_fd = x->other->fd;
	vm_close_fd(x->other);
}

static void m_fd_devnull(struct ctx *x) { x->c.vm_fd = keep_fd(x, open("/dev/null", O_RDWR)); }
static void m_fd_kvm(struct ctx *x) { x->c.vm_fd = x->vm->kvm_fd; }
static void m_fd_vcpu(struct ctx *x) { x->c.vm_fd = vm_create_vcpu(x->vm)->fd; }
static void m_fd_self(struct ctx *x) { x->c.vm_fd = x->dbfd; }
/* KVM's gate on every VM ioctl: the VM's process only */
static void m_other_process(struct ctx *x)
{
	x->other_process = true;
#ifdef DB_EMULATE
	x->skip = "the emulation's state is the calling process's";
#endif
}

static void m_fd_stdin(struct ctx *x)
{
	int p[2];

	if (pipe(p))
		return;
	keep_fd(x, p[0]);
	x->c.vm_fd = keep_fd(x, p[1]);
}

/* ---- step 6: count == 0 (success) ---- */
static void m_ok_count0(struct ctx *x) { x->c.count = 0; x->c.ranges = 0; }
static void m_ok_count0_hole(struct ctx *x) { x->c.count = 0; x->c.ranges = (uintptr_t)x->hole; }

/* ---- step 7: the ranges array ---- */
static void m_ranges_unmapped(struct ctx *x) { x->c.ranges = (uintptr_t)x->hole; }
static void m_ranges_null(struct ctx *x) { x->c.ranges = 0; }
static void m_ranges_kernel(struct ctx *x) { x->c.ranges = 0xffff888000000000ULL; }
static void m_ranges_partial(struct ctx *x)
{
	/* ranges 0, 1 and 8 bytes of range 2 mapped, the rest unmapped */
	char *p = x->hole - 2 * RSIZE - 8;

	memcpy(p, x->rbuf, 2 * RSIZE + 8);
	x->c.ranges = (uintptr_t)p;
}

static void m_extra_nonzero(struct ctx *x)
{
	set_stride(x, 32);
	((uint8_t *)R(x, 2))[RSIZE] = 1;
}

static void m_extra_nonzero_last(struct ctx *x)
{
	set_stride(x, 256);
	((uint8_t *)R(x, 3))[255] = 0x80;
}

static void m_ok_rsize_32(struct ctx *x) { set_stride(x, 32); }
static void m_ok_rsize_256(struct ctx *x) { set_stride(x, 256); }

/* ---- huge num_pages: KVM's errno, never a size limit of the call ---- */
static void m_num_u32max(struct ctx *x) { R(x, 1)->num_pages = UINT32_MAX; }
static void m_num_align_wrap(struct ctx *x) { R(x, 1)->num_pages = 0xffffffc1U; }
static void m_num_huge_two(struct ctx *x)
{
	/* 1 GiB of bitmap named in all, each range over its slot */
	R(x, 1)->num_pages = 1U << 31;
	R(x, 2)->num_pages = 1U << 31;
}
static void m_num_huge_no_slot(struct ctx *x) { R(x, 1)->num_pages = UINT32_MAX; R(x, 1)->slot = 9; }

/* ---- steps 9 + 12: faulting bitmaps ---- */
static void m_bm_unmapped_mid(struct ctx *x) { R(x, 2)->dirty_bitmap = (uintptr_t)x->hole; }
static void m_bm_unmapped_first(struct ctx *x) { R(x, 0)->dirty_bitmap = (uintptr_t)x->hole; }
static void m_bm_unmapped_last(struct ctx *x) { R(x, 3)->dirty_bitmap = (uintptr_t)x->hole; }
static void m_bm_null(struct ctx *x) { R(x, 1)->dirty_bitmap = 0; }
static void m_bm_kernel(struct ctx *x) { R(x, 2)->dirty_bitmap = 0xffff888000000000ULL; }
static void m_bm_noncanonical(struct ctx *x) { R(x, 2)->dirty_bitmap = 0x8000000000000000ULL; }
static void m_bm_partial(struct ctx *x)
{
	/* slot 1's 256 pages need 32 bytes: the last 8 are unmapped */
	memset(x->hole - 24, 0xff, 24);
	R(x, 0)->dirty_bitmap = (uintptr_t)(x->hole - 24);
}

/* ---- step 10: dirty ring ---- */
static void m_ring(struct ctx *x)
{
	x->other = vm_create_dirty_ring(65536);
	if (!x->other) {
		x->skip = "dirty ring not supported";
		return;
	}
	vm_add_slot(x->other, 1, MIB, 256, KVM_MEM_LOG_DIRTY_PAGES);
	x->c.vm_fd = x->other->fd;
	x->c.count = 1;
}

/* ---- step 11: per-range checks, broken range 2 (or as named) ---- */
static void m_as_nr(struct ctx *x) { R(x, 2)->slot = (uint32_t)x->vm->nr_as << 16 | 3; }
static void m_as_ffff(struct ctx *x) { R(x, 2)->slot = 0xffff0003; }
static void m_id_nr(struct ctx *x) { R(x, 2)->slot = x->vm->nr_memslots; }
static void m_id_ffff(struct ctx *x) { R(x, 2)->slot = 0xffff; }
static void m_first_1(struct ctx *x) { R(x, 2)->first_page = 1; R(x, 2)->num_pages = 63; }
static void m_first_32(struct ctx *x) { R(x, 2)->first_page = 32; R(x, 2)->num_pages = 32; }
static void m_first_beyond(struct ctx *x) { R(x, 2)->first_page = 128; R(x, 2)->num_pages = 0; }
static void m_first_2p63(struct ctx *x) { R(x, 2)->first_page = 1ULL << 63; }
static void m_first_wrap(struct ctx *x) { R(x, 2)->first_page = -64ULL; R(x, 2)->num_pages = 128; }
static void m_first_wrap2(struct ctx *x) { R(x, 3)->first_page = -64ULL; R(x, 3)->num_pages = 130; }
static void m_num_too_big(struct ctx *x) { R(x, 2)->num_pages = 65; }
static void m_num_too_big_tail(struct ctx *x) { R(x, 3)->num_pages = 67; }
static void m_num_unaligned_mid(struct ctx *x) { R(x, 0)->num_pages = 100; }
static void m_num_unaligned_mid2(struct ctx *x) { R(x, 3)->first_page = 0; R(x, 3)->num_pages = 66; }
static void m_num_short_tail(struct ctx *x) { R(x, 1)->first_page = 64; R(x, 1)->num_pages = 35; }
static void m_no_slot(struct ctx *x) { R(x, 2)->slot = 9; }
static void m_no_slot_max_id(struct ctx *x) { R(x, 2)->slot = x->vm->nr_memslots - 1; }
static void m_unlogged(struct ctx *x) { R(x, 2)->slot = 4; }
static void m_sys_slot(struct ctx *x) { R(x, 2)->slot = SYS_SLOT; R(x, 2)->num_pages = SYS_PAGES; }
static void m_deleted(struct ctx *x) { vm_delete_slot(x->vm, 3); }
static void m_logging_off(struct ctx *x) { vm_set_slot_flags(x->vm, 3, 0); }
static void m_as1_no_slot(struct ctx *x)
{
	if (!x->as1)
		x->skip = "no address space 1";
	R(x, 2)->slot = x->as1 | 3;
}

static void m_as1_unlogged(struct ctx *x)
{
	if (!x->as1) {
		x->skip = "no address space 1";
		return;
	}
	vm_add_slot(x->vm, x->as1 | 3, 16 * MIB, 64, 0);
	R(x, 2)->slot = x->as1 | 3;
}

static void m_bad_first(struct ctx *x) { R(x, 0)->slot = 9; }
static void m_bad_last(struct ctx *x) { R(x, 3)->first_page = 63; }
static void m_two_bad(struct ctx *x) { R(x, 1)->slot = 9; R(x, 3)->first_page = 32; }

/* ---- ordering (two invalid fields) ---- */
static void o_flags_rsize(struct ctx *x) { x->c.flags = 2; x->c.range_size = 264; }
static void o_reserved_fd(struct ctx *x) { x->c.reserved[1] = 1; x->c.vm_fd = -1; }
static void o_rsize_count(struct ctx *x) { x->c.range_size = 0; x->c.count = UINT32_MAX; }
static void o_rsize_fd(struct ctx *x) { x->c.range_size = 25; x->c.vm_fd = -1; }
static void o_count_fd(struct ctx *x) { x->c.count = KVM_DIRTYBATCH_MAX_RANGES + 1; x->c.vm_fd = -1; }
static void o_fd_count0(struct ctx *x) { x->c.count = 0; x->c.vm_fd = -1; }
static void o_fdtype_count0(struct ctx *x) { x->c.count = 0; x->c.vm_fd = x->vm->kvm_fd; }
static void o_fd_ranges(struct ctx *x) { x->c.vm_fd = x->vm->kvm_fd; x->c.ranges = (uintptr_t)x->hole; }
static void o_extra_bmsize(struct ctx *x)
{
	set_stride(x, 32);
	R(x, 0)->num_pages = UINT32_MAX;
	((uint8_t *)R(x, 1))[RSIZE + 7] = 1;
}

static void o_rfault_bmsize(struct ctx *x)
{
	R(x, 0)->num_pages = UINT32_MAX;
	m_ranges_partial(x);
}

static void o_huge_bmfault(struct ctx *x) { R(x, 0)->num_pages = UINT32_MAX; R(x, 1)->dirty_bitmap = (uintptr_t)x->hole; }
static void o_bmfault_huge(struct ctx *x) { R(x, 0)->dirty_bitmap = (uintptr_t)x->hole; R(x, 3)->num_pages = UINT32_MAX; }
static void o_bmfault_enoent(struct ctx *x) { R(x, 1)->dirty_bitmap = (uintptr_t)x->hole; R(x, 2)->slot = 9; }
static void o_bmfault_einval_same(struct ctx *x) { R(x, 1)->dirty_bitmap = (uintptr_t)x->hole; R(x, 1)->first_page = 1; }
static void o_bmfault_first(struct ctx *x) { R(x, 1)->dirty_bitmap = (uintptr_t)x->hole; R(x, 3)->dirty_bitmap = 0; }
static void o_ring_bmfault(struct ctx *x) { m_ring(x); R(x, 0)->dirty_bitmap = (uintptr_t)x->hole; }
static void o_ring_slot(struct ctx *x) { m_ring(x); x->c.count = NR_BASE; R(x, 0)->slot = 0xffff; }

/* ---- valid edge cases ---- */
static void m_ok_base(struct ctx *x) { (void)x; }
static void m_ok_num0_null(struct ctx *x) { R(x, 2)->num_pages = 0; R(x, 2)->dirty_bitmap = 0; }
static void m_ok_first_eq_npages(struct ctx *x) { R(x, 2)->first_page = 64; R(x, 2)->num_pages = 0; }
static void m_ok_overlap(struct ctx *x)
{
	*R(x, 4) = *R(x, 0);
	*R(x, 5) = *R(x, 3);
	R(x, 5)->dirty_bitmap = (uintptr_t)x->pattern;
	x->c.count = 6;
}

static void m_ok_pattern(struct ctx *x)
{
	unsigned int i;

	for (i = 0; i < NR_BASE; i++)
		R(x, i)->dirty_bitmap = (uintptr_t)(x->pattern + i);
}

static void m_ok_split(struct ctx *x)
{
	unsigned int i;

	for (i = 0; i < 4; i++) {
		*R(x, i) = (struct kvm_dirtybatch_range){ .slot = 1, .first_page = 64 * (3 - i),
			.num_pages = 64, .dirty_bitmap = (uintptr_t)(x->pattern + i) };
	}
}

static void m_ok_as1(struct ctx *x)
{
	if (!x->as1) {
		x->skip = "no address space 1";
		return;
	}
	R(x, 3)->slot = x->as1 | 1;
	R(x, 3)->first_page = 0;
	R(x, 3)->num_pages = 77;
}

FIXTURE(neg) {
	struct ctx x;
};

FIXTURE_VARIANT(neg) {
	void (*mutate)(struct ctx *x);
	int err;		/* positive errno, 0 = success */
	int idx;		/* error_index, or IDX_* */
	bool module_only;
};

#define NEG(name, fn, e, i) \
	FIXTURE_VARIANT_ADD(neg, name) { .mutate = fn, .err = e, .idx = i }
/*
 * The module's own interface, skipped with KVM's native ioctl: its struct
 * (read from the ioctl's argument pointer), the header fields KVM's struct
 * does not have (range_size and the stride's extra bytes, reserved0) and
 * how vm_fd is resolved (the native ioctl is made on the fd itself, and
 * whatever file has that number answers it).  The native header's own
 * negative cases are clear_dirty_log_batch_test's (patch 0005).
 */
#define NEG_MODULE(name, fn, e, i) \
	FIXTURE_VARIANT_ADD(neg, name) { .mutate = fn, .err = e, .idx = i, .module_only = true }

NEG_MODULE(struct_unmapped, m_struct_unmapped, EFAULT, IDX_ANY);
NEG_MODULE(struct_null, m_struct_null, EFAULT, IDX_ANY);
NEG_MODULE(struct_partial, m_struct_partial, EFAULT, IDX_ANY);
NEG(flags_bit0, m_flags_bit0, EINVAL, IDX_NONRANGE);
NEG(flags_bit31, m_flags_bit31, EINVAL, IDX_NONRANGE);
NEG_MODULE(reserved0, m_reserved0, EINVAL, IDX_NONRANGE);
NEG(reserved_0, m_reserved_0, EINVAL, IDX_NONRANGE);
NEG(reserved_1, m_reserved_1, EINVAL, IDX_NONRANGE);
NEG(reserved_2, m_reserved_2, EINVAL, IDX_NONRANGE);
NEG(reserved_3, m_reserved_3, EINVAL, IDX_NONRANGE);
NEG_MODULE(range_size_0, m_rsize_0, EINVAL, IDX_NONRANGE);
NEG_MODULE(range_size_16, m_rsize_16, EINVAL, IDX_NONRANGE);
NEG_MODULE(range_size_23, m_rsize_23, EINVAL, IDX_NONRANGE);
NEG_MODULE(range_size_25, m_rsize_25, EINVAL, IDX_NONRANGE);
NEG_MODULE(range_size_28, m_rsize_28, EINVAL, IDX_NONRANGE);
NEG_MODULE(range_size_252, m_rsize_252, EINVAL, IDX_NONRANGE);
NEG_MODULE(range_size_257, m_rsize_257, E2BIG, IDX_NONRANGE);
NEG_MODULE(range_size_264, m_rsize_264, E2BIG, IDX_NONRANGE);
NEG_MODULE(range_size_4096, m_rsize_4096, E2BIG, IDX_NONRANGE);
NEG_MODULE(range_size_u32max, m_rsize_max, E2BIG, IDX_NONRANGE);
NEG(count_max_plus_1, m_count_max1, E2BIG, IDX_NONRANGE);
NEG(count_u32max, m_count_u32max, E2BIG, IDX_NONRANGE);
NEG_MODULE(vm_fd_minus1, m_fd_minus1, EBADF, IDX_NONRANGE);
NEG_MODULE(vm_fd_int_min, m_fd_negative, EBADF, IDX_NONRANGE);
NEG_MODULE(vm_fd_int_max, m_fd_intmax, EBADF, IDX_NONRANGE);
NEG_MODULE(vm_fd_closed, m_fd_closed, EBADF, IDX_NONRANGE);
NEG_MODULE(vm_fd_closed_vm, m_fd_closed_vm, EBADF, IDX_NONRANGE);
NEG_MODULE(vm_fd_closed_vm_vcpu_alive, m_fd_closed_vm_alive, EBADF, IDX_NONRANGE);
NEG_MODULE(vm_fd_dev_null, m_fd_devnull, EINVAL, IDX_NONRANGE);
NEG_MODULE(vm_fd_dev_kvm, m_fd_kvm, EINVAL, IDX_NONRANGE);
NEG_MODULE(vm_fd_vcpu, m_fd_vcpu, EINVAL, IDX_NONRANGE);
NEG_MODULE(vm_fd_dirtybatch, m_fd_self, EINVAL, IDX_NONRANGE);
NEG_MODULE(vm_fd_pipe, m_fd_stdin, EINVAL, IDX_NONRANGE);
NEG(vm_of_another_process, m_other_process, EIO, IDX_NONRANGE);
NEG(ranges_unmapped, m_ranges_unmapped, EFAULT, IDX_NONRANGE);
NEG(ranges_null, m_ranges_null, EFAULT, IDX_NONRANGE);
NEG(ranges_kernel_address, m_ranges_kernel, EFAULT, IDX_NONRANGE);
NEG(ranges_partially_mapped, m_ranges_partial, EFAULT, IDX_ANY);
NEG_MODULE(range_extra_bytes_nonzero, m_extra_nonzero, E2BIG, 2);
NEG_MODULE(range_extra_last_byte_nonzero, m_extra_nonzero_last, E2BIG, 3);
NEG(num_pages_u32max, m_num_u32max, EINVAL, 1);
NEG(num_pages_align_wraps, m_num_align_wrap, EINVAL, 1);
NEG(num_pages_huge_in_two_ranges, m_num_huge_two, EINVAL, 1);
NEG(num_pages_huge_no_such_slot, m_num_huge_no_slot, ENOENT, 1);
NEG(bitmap_unmapped_middle, m_bm_unmapped_mid, EFAULT, 2);
NEG(bitmap_unmapped_first, m_bm_unmapped_first, EFAULT, 0);
NEG(bitmap_unmapped_last, m_bm_unmapped_last, EFAULT, 3);
NEG(bitmap_null, m_bm_null, EFAULT, 1);
NEG(bitmap_kernel_address, m_bm_kernel, EFAULT, 2);
NEG(bitmap_noncanonical, m_bm_noncanonical, EFAULT, 2);
NEG(bitmap_partially_mapped, m_bm_partial, EFAULT, 0);
NEG(dirty_ring_vm, m_ring, ENXIO, IDX_NONRANGE);
NEG(as_id_nr_as, m_as_nr, EINVAL, 2);
NEG(as_id_ffff, m_as_ffff, EINVAL, 2);
NEG(slot_id_nr_memslots, m_id_nr, EINVAL, 2);
NEG(slot_id_ffff, m_id_ffff, EINVAL, 2);
NEG(first_page_1, m_first_1, EINVAL, 2);
NEG(first_page_32, m_first_32, EINVAL, 2);
NEG(first_page_beyond_slot, m_first_beyond, EINVAL, 2);
NEG(first_page_2pow63, m_first_2p63, EINVAL, 2);
NEG(first_page_wraps, m_first_wrap, EINVAL, 2);
NEG(first_page_wraps_tail, m_first_wrap2, EINVAL, 3);
NEG(num_pages_too_big, m_num_too_big, EINVAL, 2);
NEG(num_pages_too_big_tail, m_num_too_big_tail, EINVAL, 3);
NEG(num_pages_unaligned_mid, m_num_unaligned_mid, EINVAL, 0);
NEG(num_pages_unaligned_mid2, m_num_unaligned_mid2, EINVAL, 3);
NEG(num_pages_short_of_tail, m_num_short_tail, EINVAL, 1);
NEG(no_such_slot, m_no_slot, ENOENT, 2);
NEG(no_such_slot_max_id, m_no_slot_max_id, ENOENT, 2);
NEG(slot_not_logged, m_unlogged, ENOENT, 2);
NEG(sys_slot_not_logged, m_sys_slot, ENOENT, 2);
NEG(slot_deleted, m_deleted, ENOENT, 2);
NEG(slot_logging_disabled, m_logging_off, ENOENT, 2);
NEG(as1_no_such_slot, m_as1_no_slot, ENOENT, 2);
NEG(as1_slot_not_logged, m_as1_unlogged, ENOENT, 2);
NEG(error_in_first_range, m_bad_first, ENOENT, 0);
NEG(error_in_last_range, m_bad_last, EINVAL, 3);
NEG(first_of_two_errors, m_two_bad, ENOENT, 1);
NEG_MODULE(order_flags_before_range_size, o_flags_rsize, EINVAL, IDX_NONRANGE);
NEG_MODULE(order_reserved_before_fd, o_reserved_fd, EINVAL, IDX_NONRANGE);
NEG_MODULE(order_range_size_before_count, o_rsize_count, EINVAL, IDX_NONRANGE);
NEG_MODULE(order_range_size_before_fd, o_rsize_fd, EINVAL, IDX_NONRANGE);
NEG_MODULE(order_count_before_fd, o_count_fd, E2BIG, IDX_NONRANGE);
NEG_MODULE(order_fd_before_count0, o_fd_count0, EBADF, IDX_NONRANGE);
NEG_MODULE(order_fd_type_before_count0, o_fdtype_count0, EINVAL, IDX_NONRANGE);
NEG_MODULE(order_fd_before_ranges, o_fd_ranges, EINVAL, IDX_NONRANGE);
NEG_MODULE(order_extra_bytes_before_range_checks, o_extra_bmsize, E2BIG, 1);
NEG(order_ranges_fault_before_range_checks, o_rfault_bmsize, EFAULT, IDX_ANY);
NEG(order_huge_range_before_bitmap_fault, o_huge_bmfault, EINVAL, 0);
NEG(order_huge_range_after_bitmap_fault, o_bmfault_huge, EINVAL, 3);
NEG(order_slot_checks_before_bitmap_fault, o_bmfault_enoent, ENOENT, 2);
NEG(order_slot_check_before_fault_same_range, o_bmfault_einval_same, EINVAL, 1);
NEG(order_first_bitmap_fault_reported, o_bmfault_first, EFAULT, 1);
NEG(order_ring_before_bitmap_fault, o_ring_bmfault, ENXIO, IDX_NONRANGE);
NEG(order_ring_before_slot_checks, o_ring_slot, ENXIO, IDX_NONRANGE);
NEG(ok_base, m_ok_base, 0, IDX_COUNT);
NEG(ok_count0_null_ranges, m_ok_count0, 0, IDX_COUNT);
NEG(ok_count0_unmapped_ranges, m_ok_count0_hole, 0, IDX_COUNT);
NEG(ok_range_size_32, m_ok_rsize_32, 0, IDX_COUNT);
NEG(ok_range_size_256, m_ok_rsize_256, 0, IDX_COUNT);
NEG(ok_num_pages0_null_bitmap, m_ok_num0_null, 0, IDX_COUNT);
NEG(ok_first_page_eq_npages, m_ok_first_eq_npages, 0, IDX_COUNT);
NEG(ok_overlapping_ranges, m_ok_overlap, 0, IDX_COUNT);
NEG(ok_bit_patterns, m_ok_pattern, 0, IDX_COUNT);
NEG(ok_split_reversed, m_ok_split, 0, IDX_COUNT);
NEG(ok_as1, m_ok_as1, 0, IDX_COUNT);

static char *make_hole(void)
{
	/* three pages, the middle one unmapped: nothing else fits in there */
	char *p = mmap(NULL, 3 * PAGE_SIZE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	munmap(p + PAGE_SIZE, PAGE_SIZE);
	return p + PAGE_SIZE;
}

FIXTURE_SETUP(neg)
{
	struct ctx *x = &self->x;
	unsigned int i;

	memset(x, 0, sizeof(*x));
	x->_metadata = _metadata;
	x->dbfd = db_open();
	ASSERT_LE(0, x->dbfd);
	x->vm = vm_create(true);
	x->as1 = x->vm->nr_as > 1 ? 1U << 16 : 0;
	for (i = 0; i < ARRAY_SIZE(slots); i++)
		vm_add_slot(x->vm, slots[i].id, MIB * (1 + i), slots[i].npages,
			    slots[i].flags);
	if (x->as1)
		vm_add_slot(x->vm, x->as1 | 1, 8 * MIB, 77, KVM_MEM_LOG_DIRTY_PAGES);
	x->rbuf = calloc(RBUF_RANGES, 256);
	x->ones = malloc(PAGE_SIZE);
	x->pattern = malloc(PAGE_SIZE);
	ASSERT_TRUE(x->rbuf && x->ones && x->pattern);
	memset(x->ones, 0xff, PAGE_SIZE);
	for (i = 0; i < PAGE_SIZE / 8; i++)	/* misaligned heads and tails */
		x->pattern[i] = (0x00ff0ff00f0ff0f0ULL << (i % 13)) ^ (i * 0x9e3779b97f4a7c15ULL);
	x->hole = make_hole();
	ASSERT_NE(NULL, x->hole);
	x->edge = x->hole - PAGE_SIZE;
	set_stride(x, RSIZE);
	x->c = (struct kvm_dirtybatch_clear){
		.vm_fd = x->vm->fd, .count = NR_BASE, .range_size = RSIZE,
		.ranges = (uintptr_t)x->rbuf, .pages_cleared = SENTINEL,
		.error_index = SENTINEL,
	};
	x->arg = &x->c;
}

FIXTURE_TEARDOWN(neg)
{
	struct ctx *x = &self->x;

	while (x->nfds)
		close(x->fds[--x->nfds]);
	vm_free(x->other);
	vm_free(x->vm);
	if (x->dbfd >= 0)
		close(x->dbfd);
}

static int clear_call(struct ctx *x)
{
	if (db_backend_is_module())
		return db_ioctl(x->dbfd, KVM_DIRTYBATCH_CLEAR, x->arg) ? errno : 0;
	return -db_clear(x->dbfd, &x->c);
}

/* The same call from a child process; its result and struct come back. */
static int clear_call_child(struct ctx *x)
{
	struct { int r; struct kvm_dirtybatch_clear c; } *sh;
	int status, r = ECHILD;
	pid_t pid;

	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		return errno;
	pid = fork();
	if (!pid) {
		sh->r = clear_call(x);
		sh->c = x->c;
		_exit(0);
	}
	if (pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
	    !WEXITSTATUS(status)) {
		r = sh->r;
		x->c = sh->c;
	}
	munmap(sh, sizeof(*sh));
	return r;
}

TEST_F(neg, clear)
{
	struct ctx *x = &self->x;
	static uint8_t rbuf0[RBUF_RANGES * 256], ones0[PAGE_SIZE], pattern0[PAGE_SIZE];
	struct kvm_dirtybatch_stats s0, s1;
	struct kvm_dirtybatch_clear *c, c0;
	struct snap before, after, model;
	uint64_t expect_cleared = 0;
	char msg[256];
	int r, idx = variant->idx;

	if (variant->module_only && !db_backend_is_module())
		SKIP(return, "the module's own interface");
	/* KVM's ioctl reports ENXIO as the first range's (kvm_dirtybatch.rst) */
	if (variant->err == ENXIO && !db_backend_is_module())
		idx = 0;
	variant->mutate(x);
	if (x->skip)
		SKIP(return, "%s", x->skip);
	snap_take(x->vm, &before);
	ASSERT_TRUE(snap_all_set(&before, msg, sizeof(msg))) TH_LOG("%s", msg);
	snap_dup(&before, &model);
	if (!variant->err && x->c.count)
		expect_cleared = snap_apply(&model, (void *)(uintptr_t)x->c.ranges,
					    x->c.count, x->c.range_size);

	c0 = x->c;
	memcpy(rbuf0, x->rbuf, sizeof(rbuf0));
	memcpy(ones0, x->ones, PAGE_SIZE);
	memcpy(pattern0, x->pattern, PAGE_SIZE);
	ASSERT_EQ(0, db_get_stats(x->dbfd, &s0));
	r = x->other_process ? clear_call_child(x) : clear_call(x);
	ASSERT_EQ(0, db_get_stats(x->dbfd, &s1));
	snap_take(x->vm, &after);

	EXPECT_EQ(variant->err, r) TH_LOG("expected %s, got %s (error_index %u)",
					  strerror(variant->err), strerror(r), x->c.error_index);
	c = x->arg == &x->c ? &x->c : NULL;
	if (c && idx >= 0)
		EXPECT_EQ((uint32_t)idx, c->error_index);
	if (c && idx == IDX_NONRANGE && c->error_index != SENTINEL)
		EXPECT_EQ(c->count, c->error_index) TH_LOG("error_index of a non-range error");
	if (c && idx == IDX_COUNT)
		EXPECT_EQ(c->count, c->error_index);

	/* only pages_cleared and error_index may be written */
	c0.pages_cleared = x->c.pages_cleared;
	c0.error_index = x->c.error_index;
	EXPECT_EQ(0, memcmp(&c0, &x->c, sizeof(c0))) TH_LOG("other struct fields changed");
	EXPECT_EQ(0, memcmp(rbuf0, x->rbuf, sizeof(rbuf0))) TH_LOG("ranges array changed");
	EXPECT_EQ(0, memcmp(ones0, x->ones, PAGE_SIZE)) TH_LOG("a bitmap changed");
	EXPECT_EQ(0, memcmp(pattern0, x->pattern, PAGE_SIZE)) TH_LOG("a bitmap changed");

	/* the module's counters and pages_cleared: KVM's ioctl has neither */
	if (variant->err && db_backend_has_stats()) {
		EXPECT_EQ(s0.calls, s1.calls);
		EXPECT_EQ(s0.failed_calls + 1, s1.failed_calls);
		EXPECT_EQ(s0.pages_cleared, s1.pages_cleared);
		EXPECT_EQ(s0.ranges, s1.ranges);
	} else if (db_backend_has_stats()) {
		EXPECT_EQ(s0.calls + 1, s1.calls);
		EXPECT_EQ(s0.failed_calls, s1.failed_calls);
		EXPECT_EQ(s0.ranges + x->c.count, s1.ranges);
		EXPECT_EQ(expect_cleared, x->c.pages_cleared);
		EXPECT_EQ(s0.pages_cleared + expect_cleared, s1.pages_cleared);
	}
	if (variant->err) {
		EXPECT_TRUE(snap_equal(&before, &after, msg, sizeof(msg)))
			TH_LOG("failed call changed dirty bits: %s", msg);
		EXPECT_TRUE(snap_all_set(&after, msg, sizeof(msg))) TH_LOG("%s", msg);
	} else {
		EXPECT_EQ(expect_cleared, snap_cleared(&before, &after));
		EXPECT_TRUE(snap_equal(&model, &after, msg, sizeof(msg)))
			TH_LOG("model vs kernel: %s", msg);
	}
	snap_free(&before);
	snap_free(&after);
	snap_free(&model);
}

/* ---- the limits, at and beyond ---- */

FIXTURE(big) {
	int dbfd;
	struct vm *vm;
};

FIXTURE_SETUP(big)
{
	self->dbfd = db_open();
	ASSERT_LE(0, self->dbfd);
	self->vm = vm_create(true);
}

FIXTURE_TEARDOWN(big)
{
	vm_free(self->vm);
	close(self->dbfd);
}

TEST_F_TIMEOUT(big, max_ranges, 90)
{
	const uint32_t max = KVM_DIRTYBATCH_MAX_RANGES;
	struct kvm_dirtybatch_range *r = calloc(max + 1, RSIZE);
	struct kvm_dirtybatch_clear c;
	uint64_t ones[2] = { ~0ULL, ~0ULL };
	struct snap s;
	char msg[128];
	uint32_t i;

	ASSERT_NE(NULL, r);
	vm_add_slot(self->vm, 1, MIB, 128, KVM_MEM_LOG_DIRTY_PAGES);
	for (i = 0; i <= max; i++)
		r[i] = (struct kvm_dirtybatch_range){ .slot = 1, .first_page = 64 * (i & 1),
			.num_pages = 64, .dirty_bitmap = (uintptr_t)ones };
	c = (struct kvm_dirtybatch_clear){ .vm_fd = self->vm->fd, .count = max + 1,
		.range_size = RSIZE, .ranges = (uintptr_t)r };
	EXPECT_EQ(-E2BIG, db_clear(self->dbfd, &c));
	snap_take(self->vm, &s);
	EXPECT_TRUE(snap_all_set(&s, msg, sizeof(msg))) TH_LOG("%s", msg);
	snap_free(&s);

	/* the last of the max ranges is invalid: -EINVAL at index max - 1 */
	c.count = max;
	r[max - 1].first_page = 1;
	EXPECT_EQ(-EINVAL, db_clear(self->dbfd, &c));
	EXPECT_EQ(max - 1, c.error_index);
	snap_take(self->vm, &s);
	EXPECT_TRUE(snap_all_set(&s, msg, sizeof(msg))) TH_LOG("%s", msg);
	snap_free(&s);

	r[max - 1].first_page = 64;
	EXPECT_EQ(0, db_clear(self->dbfd, &c));
	if (db_backend_has_stats())
		EXPECT_EQ(128, c.pages_cleared);	/* each page once */
	EXPECT_EQ(max, c.error_index);
	snap_take(self->vm, &s);
	EXPECT_EQ(0, snap_count(&s));
	snap_free(&s);
	free(r);
}

/*
 * A memslot of 1 TiB (2^28 pages, the whole guest physical space of a
 * 40-bit MAXPHYADDR, hence at GPA 0 without the helper's system slot) with
 * KVM_DIRTY_LOG_INITIALLY_SET, cleared in one range of 32 MiB of bitmap:
 * the module and one KVM_CLEAR_DIRTY_LOG on an identical VM give the same
 * errno for each malformed variant, leave both logs untouched then, and
 * leave the same bitmap after the valid clear.
 */
#define TIB_PAGES	(1ULL << 28)

static struct vm *tib_vm(void)
{
	struct vm *vm = vm_create(true);

	vm_delete_slot(vm, SYS_SLOT);
	vm_add_slot(vm, 1, 0, TIB_PAGES, KVM_MEM_LOG_DIRTY_PAGES);
	return vm;
}

struct tib_case {
	const char *what;
	uint32_t slot;
	uint64_t first_page;
	uint32_t num_pages;
	bool fault;		/* the bitmap's last page is unmapped */
	int err;
};

TEST_F_TIMEOUT(big, whole_slot_1tib, 900)
{
	static const struct tib_case cases[] = {
		{ "first_page 1", 1, 1, TIB_PAGES - 64, false, EINVAL },
		{ "past the end", 1, 64, TIB_PAGES, false, EINVAL },
		{ "short of the end, unaligned", 1, 0, TIB_PAGES - 1, false, EINVAL },
		{ "num_pages 2^32 - 1", 1, 0, UINT32_MAX, false, EINVAL },
		{ "no such slot", 2, 0, TIB_PAGES, false, ENOENT },
		{ "bitmap runs into a hole", 1, 0, TIB_PAGES, true, EFAULT },
		{ "whole slot", 1, 0, TIB_PAGES, false, 0 },
	};
	const size_t bytes = TIB_PAGES / 8, page = getpagesize();
	struct kvm_dirtybatch_range r;
	struct kvm_dirtybatch_clear c;
	struct snap a, b;
	uint64_t *bm, set = 0, w;
	struct vm *twin;
	char msg[128];
	uint8_t *map;
	unsigned int i;
	int err;

	if (sizeof(void *) < 8)
		SKIP(return, "a 1 TiB memslot needs a 64-bit process");
	vm_free(self->vm);
	self->vm = tib_vm();
	twin = tib_vm();
	/* the bitmap, then an unmapped page */
	map = mmap(NULL, bytes + page, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, map);
	ASSERT_EQ(0, munmap(map + bytes, page));
	bm = (uint64_t *)map;
	for (w = 0; w < bytes / 8; w++) {
		bm[w] = (w * 0x9e3779b97f4a7c15ULL) ^ (w << 29);
		set += __builtin_popcountll(bm[w]);
	}

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		const struct tib_case *t = &cases[i];
		const void *p = t->fault ? map + page : map;

		r = (struct kvm_dirtybatch_range){ .slot = t->slot,
			.first_page = t->first_page, .num_pages = t->num_pages,
			.dirty_bitmap = (uintptr_t)p };
		c = (struct kvm_dirtybatch_clear){ .vm_fd = self->vm->fd, .count = 1,
			.range_size = RSIZE, .ranges = (uintptr_t)&r };
		err = -db_clear(self->dbfd, &c);
		EXPECT_EQ(t->err, err) TH_LOG("%s: %s %s", t->what, db_backend_ioctl(),
					      strerror(err));
		err = -vm_clear_dirty_log_try(twin, t->slot, t->first_page, t->num_pages, p);
		EXPECT_EQ(t->err, err) TH_LOG("%s: KVM_CLEAR_DIRTY_LOG %s", t->what,
					      strerror(err));
		if (db_backend_has_stats())
			EXPECT_EQ(t->err ? 0 : set, c.pages_cleared) TH_LOG("%s", t->what);
		/* each error is caused by the one range */
		EXPECT_EQ(t->err ? 0 : 1, c.error_index) TH_LOG("%s: error_index", t->what);
		snap_take(self->vm, &a);
		snap_take(twin, &b);
		if (t->err) {
			EXPECT_TRUE(snap_all_set(&a, msg, sizeof(msg)))
				TH_LOG("%s: module: %s", t->what, msg);
			EXPECT_TRUE(snap_all_set(&b, msg, sizeof(msg)))
				TH_LOG("%s: KVM: %s", t->what, msg);
		} else {
			EXPECT_EQ(TIB_PAGES - set, snap_count(&a));
			EXPECT_TRUE(snap_equal(&a, &b, msg, sizeof(msg)))
				TH_LOG("module vs KVM_CLEAR_DIRTY_LOG: %s", msg);
		}
		snap_free(&a);
		snap_free(&b);
	}
	ksft_print_msg("1 TiB memslot: %llu of %llu pages cleared in one range, as KVM_CLEAR_DIRTY_LOG\n",
		       (unsigned long long)set, (unsigned long long)TIB_PAGES);
	munmap(map, bytes);
	vm_free(twin);
}

DIRTYBATCH_TEST_MAIN(true)
