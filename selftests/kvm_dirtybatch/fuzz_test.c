// SPDX-License-Identifier: GPL-2.0
/*
 * fuzz_test: random and mutated KVM_DIRTYBATCH_CLEAR calls, every one
 * checked against an oracle of the documented contract.
 *
 * fuzz.deterministic  (single thread, seeded, reproducible): valid calls
 *	and calls with one to three mutations (flags, reserved fields,
 *	range_size, count up to and past KVM_DIRTYBATCH_MAX_RANGES, vm_fd,
 *	argument / ranges / bitmap pointers that are NULL, unmapped,
 *	PROT_NONE, read-only, kernel or non-canonical addresses or cross into
 *	a PROT_NONE page, slot ids and address spaces, first_page/num_pages
 *	at and past every bound, num_pages with bitmaps of 16 MiB and more,
 *	calls whose bitmaps total more than 16 MiB: no limit of the call as
 *	a whole, KVM's errno for each range), on four VMs (manual-protect
 *	with a vCPU, another manual-protect VM, a VM without manual protect,
 *	a dirty-ring VM).  Memslot changes and guest write bursts are
 *	interleaved from the same thread, so the expected result of every
 *	call is exact: errno, error_index, pages_cleared, the dirty bitmaps
 *	(KVM_GET_DIRTY_LOG, compared with a model) and the module counters
 *	(GET_STATS after every call: calls, failures, ranges, pages, TLB
 *	flushes, dirty_log_syncs, live_allocs, and MMU-lock holds == the
 *	successful calls with count > 0 + lock breaks, at most one break per
 *	bitmap word: breaks are by contention, so their number is not
 *	predicted).  A digest of all results (errno, pages_cleared,
 *	error_index; nothing that depends on lock breaks or timing) is
 *	printed: the same seed gives the same digest on every kernel (unless
 *	a pointer with random bytes happens to hit a mapping in one run and
 *	not in another: address space randomization).
 *
 * fuzz.races  (threads): the same generator on the stable memslots (still
 *	exact), while other threads add, move and delete memslots and toggle
 *	dirty logging, close and re-create VMs (one with a running vCPU whose
 *	VM fd is closed), a vCPU writes into a logged memslot, a page used as
 *	ranges array / bitmap flips between PROT_READ and PROT_NONE, chaos
 *	threads call on all of that (the result must be one of the errnos
 *	possible for the input), and a userfaultfd stalls calls inside
 *	copy_from_user (argument, ranges array or a bitmap) while the VM fd
 *	is replaced, the named memslot deleted / moved / shrunk or its dirty
 *	logging turned off: the result after the stall is exact again (a
 *	bitmap is read after the ranges were validated, under
 *	kvm->slots_lock: a memslot change then waits for the call).
 *	At the end: counters consistent with what every thread saw,
 *	live_allocs 0, exact memslots equal to the model.
 *
 * Invariant violations: an errno not possible for the input, a wrong
 * error_index or pages_cleared, a dirty bit changed by a failed call or
 * not as the model says, fields other than the out fields written,
 * counters that do not add up, live_allocs not 0 when idle.
 *
 * Environment: KVM_DIRTYBATCH_SEED, KVM_DIRTYBATCH_FUZZ_CALLS (calls of
 * the deterministic test, default 50000), KVM_DIRTYBATCH_FUZZ_RACE_CALLS
 * (calls of the race test, default 20000) and
 * KVM_DIRTYBATCH_FUZZ_RACE_SECONDS (its time limit, default 6).
 * Each test ends with "fuzz-summary:" lines (scripts/fuzz.sh reads them).
 *
 * With KVM_DIRTYBATCH_BACKEND=native both tests call KVM's own
 * KVM_CLEAR_DIRTY_LOG_BATCH (db_clear()) with the same generator and
 * oracle: errno, error_index (KVM reports -ENXIO as the first range's),
 * nothing applied on failure, the bitmaps as the model says, the ranges
 * array, bitmaps and userfaultfd stalls read by KVM itself.  Not
 * generated there, being the module's own interface: range_size and the
 * stride's extra bytes, reserved0, the argument pointer (the module's
 * struct; db_clear() reads it in userspace) and vm_fd numbers that are no
 * live VM fd (the native ioctl goes to whatever file has the number).
 * Not checked there: pages_cleared and the module's counters, which KVM's
 * ioctl does not have (db_backend_has_stats()).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>
#include <linux/kvm_clear_dirty_log_batch.h>
#include <linux/userfaultfd.h>

#include "kselftest_harness.h"
#include "util.h"

#define MIB		(1UL << 20)
#define KIB		(1UL << 10)
#define RSIZE		((uint32_t)sizeof(struct kvm_dirtybatch_range))
#define MAX_RANGES	KVM_DIRTYBATCH_MAX_RANGES
/* the bitmap limit of a call in earlier versions: no limit now */
#define OLD_BM_LIMIT	(16 * MIB)
#define SENT64		0x5a5a5a5a5a5a5a5aULL
#define SENT32		0xa5a5a5a5U

/* buffers */
#define ONES_BYTES	(256 * KIB)		/* all ones, read-only */
#define RAND_BYTES	(2 * MIB)		/* random densities, read-only */
#define RBUF_BYTES	(1 * MIB + 64 * KIB)	/* per thread ranges buffer */
#define GEN_MAX		4096			/* ranges of a normal call */
#define ZERO_BYTES	(16 * MIB + 4096)	/* never written: zero pages */

/* memslots */
#define BIG_ID		21
#define BIG_PAGES	(1ULL << 20)		/* 128 KiB of bitmap */
#define W_ID		7			/* written by the vCPU in races */
#define CHURN_LO	8
#define CHURN_HI	15			/* AS0 churn ids 8..15 */
#define CHURN_AS1_HI	11			/* AS1 churn ids 8..11 */
#define MAX_MSLOTS	48

/* results: bit per outcome */
enum {
	RS_OK, RS_EFAULT, RS_EINVAL, RS_E2BIG, RS_EBADF, RS_ENXIO, RS_ENOENT, RS_ENOMEM,
	RS_OTHER, RS_NR
};
static const char *const r_name[RS_NR] = {
	"0", "EFAULT", "EINVAL", "E2BIG", "EBADF", "ENXIO", "ENOENT", "ENOMEM", "other"
};
#define B(r)	(1U << (r))

static int r_of(int err)
{
	switch (err) {
	case 0: return RS_OK;
	case EFAULT: return RS_EFAULT;
	case EINVAL: return RS_EINVAL;
	case E2BIG: return RS_E2BIG;
	case EBADF: return RS_EBADF;
	case ENXIO: return RS_ENXIO;
	case ENOENT: return RS_ENOENT;
	case ENOMEM: return RS_ENOMEM;
	default: return RS_OTHER;
	}
}


/* input classes (the first mutation decides), for the report */
enum {
	C_VALID, C_FLAGS, C_RESERVED, C_RSIZE, C_EXTRA, C_COUNT, C_HUGE_COUNT,
	C_FD, C_ARG_PTR, C_RANGES_PTR, C_SLOT_AS, C_SLOT_ID, C_FIRST, C_NUM,
	C_BM_PTR, C_BM_HALF, C_BM_HUGE, C_RANDOM, C_CHAOS, C_FLAP, C_UFFD, C_NR
};
static const char *const c_name[C_NR] = {
	"valid", "flags", "reserved", "range_size", "extra_bytes", "count",
	"huge_count", "vm_fd", "arg_pointer", "ranges_pointer", "slot_as_id",
	"slot_id", "first_page", "num_pages", "bitmap_pointer",
	"bitmap_halfway", "huge_bitmaps", "random_bytes", "chaos", "flap_page",
	"uffd_stall"
};

/* how well the content of a memslot's dirty bitmap is known */
enum { EX_EXACT, EX_WEAK, EX_RACY };

struct mslot {
	uint32_t slot;		/* as_id << 16 | id */
	bool present, logged, churn;
	int exact;
	uint64_t npages, gpa;
	unsigned int gen;
	uint64_t *bm;		/* model bitmap, present && logged */
};

struct mvm {
	const char *name;
	struct vm *vm;
	bool ring, manual;
	bool racy;		/* churn slots changed by another thread */
	int n;
	struct mslot s[MAX_MSLOTS];
};

/* vm_fd kinds */
enum { FD_VM, FD_RING, FD_NOTVM, FD_CLOSED, FD_RACY };

struct region {
	uintptr_t start, end;
};

/*
 * What the calls did, as the module must count it.  holds: successful
 * calls with count > 0 (each takes the MMU lock once, plus once per break);
 * words: their bitmap words (at most one break each); breaks: as the
 * module counted them (not predicted); syncs: calls with count > 0 that
 * passed the per-range checks.
 */
struct stats {
	uint64_t calls, ok, failed, pages, ranges, holds, words, breaks, flushes, syncs;
	uint64_t hist[C_NR][RS_NR];
	uint64_t ns[C_NR];		/* time in the ioctl */
	uint64_t violations;
};

/* one call as generated */
struct call {
	struct kvm_dirtybatch_clear c;	/* the struct as generated */
	void *argp;			/* what the ioctl gets */
	int cls;
	int fdkind;
	struct mvm *vm;			/* target model VM (FD_VM / FD_RING) */
	bool touches_flap;
	char what[160];			/* mutations, for the log */
};

/* expected outcome */
struct expect {
	unsigned int allowed;		/* B(RS_*) */
	bool exact;
	int r;				/* RS_* when exact */
	int64_t idx;			/* exact error_index, or -1 */
	bool out_written;		/* pages_cleared/error_index written */
	bool may_apply;
	uint64_t words;			/* bitmap words of the call */
	uint64_t count;
};

struct fctx {
	const char *name;
	struct rng rng;
	bool chaos;
	uint8_t *rbuf;			/* RBUF_BYTES, PROT_NONE page after */
	uint8_t *argpg;			/* one page, PROT_NONE page after */
	uint8_t *ropg;			/* read-only copy of the argument */
	struct kvm_dirtybatch_range *gen;	/* GEN_MAX + 1 */
	struct region reg[4];
	int nreg;
	int flap_state;			/* the flap page readable (1) or not (0) */
	struct stats st;
	uint64_t digest;
	uint64_t last_pages;
	uint32_t last_idx;
	uint64_t wb0[8], wb1[8], wreq[8];	/* W_ID: 512 pages */
	uint64_t ns_gen, ns_ioctl, ns_check, ns_ops;	/* where the time goes */
	uint64_t *tmpbm;		/* BIG_PAGES bits */
	unsigned int logged_violations;
};

static struct {
	int dbfd;
	int nr_as, nr_memslots;
	struct mvm S, O, N, R;		/* R: dirty ring (may be absent) */
	bool have_ring;
	int devnull, pipefd[2], evfd, closed_fd;
	uint8_t *ro;			/* ONES + RAND, PROT_NONE page after */
	uint8_t *zero;			/* ZERO_BYTES read-only, never touched */
	uint8_t *big24, *big32;		/* MAX_RANGES + 1 valid ranges */
	struct region reg[8];
	int nreg;
	uint8_t *flap;			/* race test: flips READ/NONE */
	volatile int stop;
	pthread_mutex_t log_lock, s_lock;
	uint64_t slot_ops, vm_recreates, fd_closes, flips;
	uint64_t uffd_stalls[8];
	uint64_t uffd_waited;		/* memslot changes that waited for a call */
} g;

static uint64_t env_u64(const char *name, uint64_t def)
{
	const char *v = getenv(name);

	return v && *v ? strtoull(v, NULL, 0) : def;
}

static size_t page_up(size_t len)
{
	return (len + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
}

/* len bytes (rounded up to pages), followed by a PROT_NONE page */
static void *map_guarded(size_t len, int prot)
{
	uint8_t *p;

	len = page_up(len);
	p = mmap(NULL, len + PAGE_SIZE, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	VM_CHECK(p != MAP_FAILED, "mmap %zu", len);
	VM_CHECK(!mprotect(p + len, PAGE_SIZE, PROT_NONE), "mprotect guard");
	if (prot != (PROT_READ | PROT_WRITE))
		VM_CHECK(!mprotect(p, len, prot), "mprotect");
	return p;
}

/* ---------------------------------------------------------------- model */

static struct mslot *ms_find(struct mvm *v, uint32_t slot)
{
	int i;

	for (i = 0; i < v->n; i++)
		if (v->s[i].slot == slot)
			return &v->s[i];
	return NULL;
}

static uint64_t gpa_home(uint32_t slot, unsigned int gen)
{
	uint32_t id = (uint16_t)slot;

	if (id == BIG_ID)
		return 1ULL << 36;
	/* two homes per id, 8 MiB apart, so that moves never overlap */
	return (16 + 16 * (uint64_t)id + 8 * (gen & 1)) * MIB;
}

static void ms_set_bits(struct mslot *m)
{
	free(m->bm);
	m->bm = NULL;
	if (!m->present || !m->logged)
		return;
	m->bm = calloc(1, bitmap_bytes(m->npages));
	VM_CHECK(m->bm, "calloc");
	/* KVM_DIRTY_LOG_INITIALLY_SET */
	memset(m->bm, 0xff, m->npages / 64 * 8);
	for (uint64_t p = m->npages & ~63ULL; p < m->npages; p++)
		set_bit64(m->bm, p);
}

static struct mslot *mvm_add(struct mvm *v, uint32_t slot, uint64_t npages,
			     bool logged, bool churn, bool present)
{
	struct mslot *m = &v->s[v->n++];

	VM_CHECK(v->n <= MAX_MSLOTS, "too many model slots");
	*m = (struct mslot){ .slot = slot, .present = present, .logged = logged,
			     .churn = churn, .npages = npages,
			     .gpa = gpa_home(slot, 0) };
	if (present && slot != SYS_SLOT) {
		vm_add_slot(v->vm, slot, m->gpa, npages,
			    logged ? KVM_MEM_LOG_DIRTY_PAGES : 0);
	}
	if (!v->manual && m->present && m->logged) {
		m->bm = calloc(1, bitmap_bytes(npages));
		VM_CHECK(m->bm, "calloc");
	} else {
		ms_set_bits(m);
	}
	return m;
}

static void mvm_init(struct mvm *v, const char *name, bool manual, bool ring)
{
	memset(v, 0, sizeof(*v));
	v->name = name;
	v->manual = manual;
	v->ring = ring;
	if (ring) {
		v->vm = vm_create_dirty_ring(65536);
		if (!v->vm)
			return;
	} else {
		v->vm = vm_create(manual);
	}
	/* the helper's system slot: present, not logged */
	mvm_add(v, SYS_SLOT, SYS_PAGES, false, false, true);
}

/* ---------------------------------------------------------- memory map */

static bool in_regions(const struct region *reg, int n, uintptr_t a, uintptr_t *end)
{
	int i;

	for (i = 0; i < n; i++)
		if (a >= reg[i].start && a < reg[i].end) {
			*end = reg[i].end;
			return true;
		}
	return false;
}

/*
 * Is the page of addr mapped readable?  For addresses outside the
 * buffers the fuzzer made (a pointer with random bytes can land in any
 * mapping of the process): ask the kernel, as the module's copy will.
 */
static bool probe_page(uint64_t addr)
{
	static __thread uint8_t byte;
	struct iovec l = { &byte, 1 }, r = { (void *)(uintptr_t)addr, 1 };

	if (addr < 65536 || addr >= 0x00007ffffffff000ULL)
		return false;
	return process_vm_readv(getpid(), &l, 1, &r, 1, 0) == 1;
}

/* Could the kernel read [addr, addr + len) of this process? */
static bool readable(struct fctx *x, uint64_t addr, uint64_t len)
{
	uint64_t a = addr, stop;
	uintptr_t end;

	if (!len)
		return true;
	if (addr + len < addr || addr + len > 0x00007ffffffff000ULL)
		return false;
	stop = addr + len;
	while (a < stop) {
		if (g.flap && a >= (uintptr_t)g.flap && a < (uintptr_t)g.flap + PAGE_SIZE) {
			if (x->flap_state != 1)
				return false;
			end = (uintptr_t)g.flap + PAGE_SIZE;
		} else if (!in_regions(g.reg, g.nreg, a, &end) &&
			   !in_regions(x->reg, x->nreg, a, &end)) {
			if (!probe_page(a))
				return false;
			end = (a | (PAGE_SIZE - 1)) + 1;
		}
		a = end;
	}
	return true;
}

/* Only the argument page is ever writable for the kernel. */
static bool writable(struct fctx *x, uint64_t addr, uint64_t len)
{
	uintptr_t pg = (uintptr_t)x->argpg;

	return addr >= pg && addr <= pg + PAGE_SIZE - len;
}

static bool touches_flap(uint64_t addr, uint64_t len)
{
	uintptr_t f = (uintptr_t)g.flap;

	return g.flap && len && addr < f + PAGE_SIZE && addr + len > f;
}

/* The flap page has a fixed content: read it through this copy. */
static uint8_t flap_shadow[PAGE_SIZE];

static const void *peek(uint64_t addr)
{
	uintptr_t f = (uintptr_t)g.flap;

	if (g.flap && addr >= f && addr < f + PAGE_SIZE)
		return flap_shadow + (addr - f);
	return (const void *)(uintptr_t)addr;
}

static void get_range(const struct kvm_dirtybatch_clear *c, uint32_t i,
		      struct kvm_dirtybatch_range *r)
{
	memcpy(r, peek(c->ranges + (uint64_t)i * c->range_size), sizeof(*r));
}

/* --------------------------------------------------------------- oracle */

static unsigned int range_outcomes(struct mvm *v, bool racyvm,
				   const struct kvm_dirtybatch_range *r,
				   struct mslot **msp)
{
	uint32_t as = r->slot >> 16, id = (uint16_t)r->slot;
	struct mslot *m;

	*msp = NULL;
	if (as >= (uint32_t)g.nr_as || id >= (uint32_t)g.nr_memslots)
		return B(RS_EINVAL);
	if (r->first_page & 63)
		return B(RS_EINVAL);
	if (racyvm)
		return B(RS_OK) | B(RS_ENOENT) | B(RS_EINVAL);
	m = ms_find(v, r->slot);
	if (m && m->churn && v->racy)
		return B(RS_OK) | B(RS_ENOENT) | B(RS_EINVAL);
	if (!m || !m->present || !m->logged)
		return B(RS_ENOENT);
	if (r->first_page > m->npages || r->num_pages > m->npages - r->first_page ||
	    (r->num_pages < m->npages - r->first_page && (r->num_pages & 63)))
		return B(RS_EINVAL);
	*msp = m;
	return B(RS_OK);
}

static void fin(struct expect *e, int r, int64_t idx)
{
	e->allowed |= B(r);
	if (e->exact) {
		e->r = r;
		e->idx = idx;
	}
}

#define FIN(r, i) do { fin(e, r, i); return; } while (0)

/*
 * The documented checks of KVM_DIRTYBATCH_CLEAR, in their order, on the
 * memory as the kernel will see it.
 */
static void oracle1(struct fctx *x, const struct call *cl, struct expect *e)
{
	const struct kvm_dirtybatch_clear *c = cl->argp;
	uint64_t nbytes;
	bool racyvm = cl->fdkind == FD_RACY;
	struct kvm_dirtybatch_range r;
	struct mslot *m;
	unsigned int p;
	uint32_t i, k;

	memset(e, 0, sizeof(*e));
	e->exact = true;
	e->idx = -1;
	if (!readable(x, (uintptr_t)cl->argp, sizeof(*c)))
		FIN(RS_EFAULT, -1);
	c = peek((uintptr_t)cl->argp);
	if (!db_backend_is_module() && c->flags == KVM_CLEAR_DIRTY_LOG_BATCH_QUERY &&
	    !c->reserved[0] && !c->reserved[1] && !c->reserved[2] && !c->reserved[3]) {
		/* KVM's query: count and ranges 0, or -EINVAL */
		if (c->count || c->ranges)
			FIN(RS_EINVAL, -1);
		e->out_written = true;
		e->may_apply = true;
		FIN(RS_OK, 0);
	}
	if (c->flags || c->reserved0 || c->reserved[0] || c->reserved[1] ||
	    c->reserved[2] || c->reserved[3])
		FIN(RS_EINVAL, -1);
	if (c->range_size < RSIZE)
		FIN(RS_EINVAL, -1);
	if (c->range_size > 256)
		FIN(RS_E2BIG, -1);
	if (c->range_size % 8)
		FIN(RS_EINVAL, -1);
	if (c->count > MAX_RANGES)
		FIN(RS_E2BIG, -1);
	switch (cl->fdkind) {
	case FD_CLOSED:
		FIN(RS_EBADF, -1);
	case FD_NOTVM:
		FIN(RS_EINVAL, -1);
	case FD_RACY:
		/* closed, reused by any file, or some VM */
		e->allowed |= B(RS_EBADF) | B(RS_EINVAL);
		e->exact = false;
		break;
	}
	/*
	 * The module probes the out fields here, after the vm_fd checks (the
	 * table in Documentation/kvm_dirtybatch.rst lists "out fields cannot
	 * be written" with the first -EFAULT): a read-only argument with a
	 * bad vm_fd gets -EBADF/-EINVAL.  The oracle follows the module.
	 */
	if (!writable(x, (uintptr_t)cl->argp + offsetof(struct kvm_dirtybatch_clear, pages_cleared), 12))
		FIN(RS_EFAULT, -1);
	e->out_written = true;
	e->count = c->count;
	if (!c->count) {
		e->may_apply = true;
		FIN(RS_OK, 0);
	}
	/*
	 * The call's memory, allocated before the ranges are read: 32 bytes
	 * per range and one page, whatever the bitmaps' size.
	 */
	if ((uint64_t)c->count * 32 + PAGE_SIZE > MIB)
		e->allowed |= B(RS_ENOMEM);
	/* a fault anywhere in the array before nonzero extra bytes */
	nbytes = (uint64_t)c->count * c->range_size;
	if (!readable(x, c->ranges, nbytes))
		FIN(RS_EFAULT, c->count);
	for (i = 0; i < c->count; i++) {
		const uint8_t *rp = peek(c->ranges + (uint64_t)i * c->range_size);

		for (k = RSIZE; k < c->range_size; k++)
			if (rp[k])
				FIN(RS_E2BIG, i);
		get_range(c, i, &r);
		e->words += ((uint64_t)r.num_pages + 63) / 64;
	}
	/* KVM's ioctl finds the dirty ring checking the first range */
	if (cl->fdkind == FD_RING)
		FIN(RS_ENXIO, db_backend_is_module() ? c->count : 0);
	for (i = 0; i < c->count; i++) {
		get_range(c, i, &r);
		p = range_outcomes(cl->vm, racyvm, &r, &m);
		if (p & ~B(RS_OK)) {
			e->allowed |= p & ~B(RS_OK);
			if (!(p & B(RS_OK))) {
				if (e->exact)
					fin(e, __builtin_ctz(p), i);
				return;
			}
			e->exact = false;
		}
	}
	for (i = 0; i < c->count; i++) {
		get_range(c, i, &r);
		if (!readable(x, r.dirty_bitmap, bitmap_bytes(r.num_pages)))
			FIN(RS_EFAULT, i);
	}
	e->may_apply = true;
	fin(e, RS_OK, c->count);
}

static void oracle(struct fctx *x, const struct call *cl, struct expect *e)
{
	struct expect e1;

	if (!cl->touches_flap) {
		x->flap_state = 1;
		oracle1(x, cl, e);
		return;
	}
	/* the page may be readable or not when the kernel reads it */
	x->flap_state = 0;
	oracle1(x, cl, e);
	x->flap_state = 1;
	oracle1(x, cl, &e1);
	if (!e->exact || !e1.exact || e->r != e1.r || e->idx != e1.idx)
		e->exact = false;
	e->allowed |= e1.allowed;
	e->out_written |= e1.out_written;
	e->may_apply |= e1.may_apply;
	e->words = e1.words;
	e->count = e1.count;
}

/* ------------------------------------------------------------ generator */

static const uint64_t bad_ptrs[] = {
	0, 8, 0x1000, 0xfff8,			/* NULL page */
	0xffff888000000000ULL,			/* direct map */
	0xffffffff81000000ULL,			/* kernel text */
	0xffffffffff600000ULL,			/* vsyscall page */
	0xfffffe0000000000ULL,			/* cpu entry area */
	0x8000000000000000ULL,			/* non-canonical */
	0x0000800000000000ULL,			/* first non-user address */
	0x00007ffffffff000ULL - 8,		/* crosses TASK_SIZE_MAX */
	~0ULL - 7, ~0ULL,			/* wraps */
};

enum { RP_NORMAL, RP_UNALIGNED, RP_STRADDLE, RP_BAD, RP_GUARD, RP_ZERO,
       RP_BIG24, RP_BIG32, RP_FLAP };
enum { AP_NORMAL, AP_BAD, AP_GUARD, AP_STRADDLE, AP_RO, AP_FLAP };

struct genp {
	struct mvm *vm;
	uint32_t n;		/* ranges in x->gen */
	uint32_t count;		/* count written in the struct */
	uint32_t stride;	/* layout stride */
	uint32_t rsize;		/* range_size written in the struct */
	int rplace;
	uint64_t rbad;
	uint32_t straddle_at;
	int aplace;
	uint64_t abad;
	uint32_t astraddle;	/* bytes of the struct inside the guard */
	int extra_at;		/* -1: none */
	uint32_t extra_off;
	int random_at;		/* -1: none */
	int fd;
	int fdkind;
	uint32_t flags, reserved0;
	uint64_t reserved[4];
};

static uint64_t rnd(struct fctx *x, uint64_t n) { return rng_below(&x->rng, n); }
static bool one_in(struct fctx *x, uint64_t n) { return !rng_below(&x->rng, n); }

static uint8_t *ones(void) { return g.ro; }
static uint8_t *rand_area(void) { return g.ro + ONES_BYTES; }
static uint8_t *ro_guard(void) { return g.ro + ONES_BYTES + RAND_BYTES; }

/* A readable bitmap of @bytes bytes. */
static uint64_t gen_bitmap(struct fctx *x, uint32_t num)
{
	uint64_t bytes = bitmap_bytes(num), off;

	if (!num && one_in(x, 3))
		return 0;
	switch (rnd(x, 10)) {
	case 0: case 1: case 2:
		if (bytes <= ONES_BYTES)
			return (uintptr_t)ones() + (one_in(x, 2) ? 0 : 8 * rnd(x, (ONES_BYTES - bytes) / 8 + 1));
		break;
	case 3:
		return (uintptr_t)g.zero + 8 * rnd(x, (ZERO_BYTES - PAGE_SIZE - bytes) / 8 + 1);
	default:
		break;
	}
	off = rnd(x, RAND_BYTES - bytes + 1);
	if (!one_in(x, 5))
		off &= ~7ULL;
	return (uintptr_t)rand_area() + off;
}

static struct mslot *pick_logged(struct fctx *x, struct mvm *v)
{
	struct mslot *c[MAX_MSLOTS];
	int i, n = 0;

	for (i = 0; i < v->n; i++) {
		struct mslot *m = &v->s[i];

		if (m->churn && v->racy) {
			if (!x->chaos && one_in(x, 4))
				c[n++] = m;	/* unknown now: plausible range */
			continue;
		}
		if (x->chaos)
			continue;
		/* the big slot costs 16384 words and a 128 KiB dirty log read */
		if (m->present && m->logged && ((uint16_t)m->slot != BIG_ID || one_in(x, 12)))
			c[n++] = m;
	}
	return n ? c[rnd(x, n)] : NULL;
}

static void gen_range_in(struct fctx *x, struct mslot *m, uint64_t npages,
			 struct kvm_dirtybatch_range *r)
{
	uint64_t k, first, rem, num;

	switch (rnd(x, 6)) {
	case 0: k = 0; break;
	case 1: k = npages / 64; break;
	default: k = rnd(x, npages / 64 + 1); break;
	}
	first = 64 * k;
	rem = npages - first;
	switch (rnd(x, 10)) {
	case 0: num = 0; break;
	case 1: case 2: case 3: case 4: num = rem; break;
	case 5: num = rem < 64 ? rem : 64; break;
	default: num = 64 * rnd(x, rem / 64 + 1); break;
	}
	r->slot = m ? m->slot : 0;
	r->first_page = first;
	r->num_pages = num;
	r->dirty_bitmap = gen_bitmap(x, num);
}

/* A valid range of VM @v (or a plausible one on a churned slot). */
static void gen_range(struct fctx *x, struct mvm *v, struct kvm_dirtybatch_range *r)
{
	struct mslot *m = pick_logged(x, v);

	if (!m || x->chaos) {
		/* churn ids, sizes unknown */
		uint32_t id = CHURN_LO + rnd(x, CHURN_HI - CHURN_LO + 1);
		struct mslot tmp = { .slot = id };

		if (g.nr_as > 1 && one_in(x, 4))
			tmp.slot = 1U << 16 | (CHURN_LO + rnd(x, CHURN_AS1_HI - CHURN_LO + 1));
		gen_range_in(x, &tmp, 64 + rnd(x, 600), r);
		return;
	}
	if (m->churn && v->racy) {
		gen_range_in(x, m, 1 + rnd(x, 600), r);
		return;
	}
	gen_range_in(x, m, m->npages, r);
}

static uint32_t gen_count(struct fctx *x)
{
	switch (rnd(x, 20)) {
	case 0: case 1: case 2: case 3: case 4: case 5: return 1;
	case 6: case 7: case 8: case 9: case 10: case 11: case 12: case 13: return 2 + rnd(x, 7);
	case 14: case 15: case 16: case 17: return 9 + rnd(x, 56);
	case 18: return one_in(x, 4) ? 65 + rnd(x, 960) : 2 + rnd(x, 30);
	default: return one_in(x, 25) ? 1025 + rnd(x, GEN_MAX - 1024) : 2 + rnd(x, 30);
	}
}

static void gen_valid(struct fctx *x, struct genp *p, struct mvm *v)
{
	uint32_t i;

	memset(p, 0, sizeof(*p));
	p->vm = v;
	p->n = p->count = gen_count(x);
	p->stride = p->rsize = db_backend_is_module() && one_in(x, 4) ?
				8 * (4 + rnd(x, 29)) : RSIZE;
	p->rplace = one_in(x, 10) ? RP_UNALIGNED : RP_NORMAL;
	p->aplace = AP_NORMAL;
	p->extra_at = p->random_at = -1;
	p->fd = v->vm->fd;
	p->fdkind = v->ring ? FD_RING : FD_VM;
	for (i = 0; i < p->n; i++) {
		if (i && one_in(x, 6)) {
			/* overlap an earlier range, with another bitmap */
			x->gen[i] = x->gen[rnd(x, i)];
			x->gen[i].dirty_bitmap = gen_bitmap(x, x->gen[i].num_pages);
			continue;
		}
		gen_range(x, v, &x->gen[i]);
	}
}

/* rbuf's last byte before its PROT_NONE page */
static uint8_t *rbuf_end(struct fctx *x) { return x->rbuf + RBUF_BYTES; }

/* Write the ranges and the struct where the plan says; fill cl. */
static void emit(struct fctx *x, struct genp *p, struct call *cl)
{
	struct kvm_dirtybatch_clear *c = &cl->c;
	uint8_t *base = NULL, *a;
	uint64_t need;
	uint32_t i;

	memset(c, 0, sizeof(*c));
	switch (p->rplace) {
	case RP_NORMAL:
		base = x->rbuf;
		break;
	case RP_UNALIGNED:
		base = x->rbuf + 1 + rnd(x, 15);
		break;
	case RP_STRADDLE:
		/* range straddle_at crosses into the PROT_NONE page */
		base = rbuf_end(x) - (uint64_t)p->straddle_at * p->stride -
		       (1 + rnd(x, p->stride - 1));
		break;
	case RP_BAD:
		c->ranges = p->rbad;
		break;
	case RP_GUARD:
		c->ranges = (uintptr_t)rbuf_end(x);
		break;
	case RP_ZERO:
		c->ranges = (uintptr_t)g.zero;
		break;
	case RP_BIG24:
		c->ranges = (uintptr_t)g.big24;
		break;
	case RP_BIG32:
		c->ranges = (uintptr_t)g.big32;
		break;
	case RP_FLAP:
		c->ranges = (uintptr_t)g.flap;
		cl->touches_flap = true;
		break;
	}
	if (base) {
		c->ranges = (uintptr_t)base;
		/* zero what a larger count would read next (deterministic) */
		need = (uint64_t)(p->count > p->n ? p->count : p->n) * p->stride;
		if (need > (uint64_t)(rbuf_end(x) - base))
			need = rbuf_end(x) - base;
		memset(base, 0, need);
		for (i = 0; i < p->n; i++) {
			uint8_t *d = base + (uint64_t)i * p->stride;
			uint64_t room = rbuf_end(x) - d;

			if (d >= rbuf_end(x))
				break;
			memcpy(d, &x->gen[i], room < RSIZE ? room : RSIZE);
		}
		if (p->extra_at >= 0 && (uint32_t)p->extra_at < p->n) {
			a = base + (uint64_t)p->extra_at * p->stride + p->extra_off;
			if (a < rbuf_end(x))
				*a = 1 + rnd(x, 255);
		}
		if (p->random_at >= 0 && (uint32_t)p->random_at < p->n) {
			a = base + (uint64_t)p->random_at * p->stride;
			for (i = 0; i < RSIZE && a + i < rbuf_end(x); i++)
				if (one_in(x, 3))
					a[i] = rng_next(&x->rng);
		}
	}
	for (i = 0; i < p->n; i++)
		if (touches_flap(x->gen[i].dirty_bitmap, bitmap_bytes(x->gen[i].num_pages)))
			cl->touches_flap = true;

	c->vm_fd = p->fd;
	c->flags = p->flags;
	c->reserved0 = p->reserved0;
	memcpy(c->reserved, p->reserved, sizeof(c->reserved));
	c->count = p->count;
	c->range_size = p->rsize;
	c->pages_cleared = SENT64;
	c->error_index = SENT32;
	cl->fdkind = p->fdkind;
	cl->vm = p->vm;

	switch (p->aplace) {
	case AP_NORMAL:
		cl->argp = x->argpg + 8 * rnd(x, (PAGE_SIZE - sizeof(*c)) / 8 + 1);
		break;
	case AP_BAD:
		cl->argp = (void *)(uintptr_t)p->abad;
		return;
	case AP_GUARD:
		cl->argp = x->argpg + PAGE_SIZE;
		return;
	case AP_STRADDLE:
		cl->argp = x->argpg + PAGE_SIZE - sizeof(*c) + p->astraddle;
		memcpy(cl->argp, c, sizeof(*c) - p->astraddle);
		return;
	case AP_RO:
		cl->argp = x->ropg;
		VM_CHECK(!mprotect(x->ropg, PAGE_SIZE, PROT_READ | PROT_WRITE), "mprotect");
		memcpy(x->ropg, c, sizeof(*c));
		VM_CHECK(!mprotect(x->ropg, PAGE_SIZE, PROT_READ), "mprotect");
		return;
	case AP_FLAP:
		cl->argp = g.flap + PAGE_SIZE - sizeof(*c);
		cl->touches_flap = true;
		memcpy(c, flap_shadow + PAGE_SIZE - sizeof(*c), sizeof(*c));
		cl->fdkind = FD_VM;
		cl->vm = &g.S;
		return;
	}
	memcpy(cl->argp, c, sizeof(*c));
}

/* ------------------------------------------------------------ mutations */

enum { FDC_S, FDC_O, FDC_N, FDC_R, FDC_KVM, FDC_VCPU, FDC_DB, FDC_NULL,
       FDC_PIPE, FDC_EVENT, FDC_CLOSED, FDC_NEG, FDC_INTMIN, FDC_INTMAX,
       FDC_NR };

static void set_fd(struct fctx *x, struct genp *p, int fdc)
{
	struct mvm *v = NULL;

	switch (fdc) {
	case FDC_S: v = &g.S; break;
	case FDC_O: v = &g.O; break;
	case FDC_N: v = &g.N; break;
	case FDC_R: v = g.have_ring ? &g.R : &g.O; break;
	case FDC_KVM: p->fd = g.S.vm->kvm_fd; p->fdkind = FD_NOTVM; return;
	case FDC_VCPU: p->fd = g.S.vm->vcpu->fd; p->fdkind = FD_NOTVM; return;
	case FDC_DB: p->fd = g.dbfd; p->fdkind = FD_NOTVM; return;
	case FDC_NULL: p->fd = g.devnull; p->fdkind = FD_NOTVM; return;
	case FDC_PIPE: p->fd = g.pipefd[rnd(x, 2)]; p->fdkind = FD_NOTVM; return;
	case FDC_EVENT: p->fd = g.evfd; p->fdkind = FD_NOTVM; return;
	case FDC_CLOSED: p->fd = g.closed_fd + rnd(x, 16); p->fdkind = FD_CLOSED; return;
	case FDC_NEG: p->fd = -1 - (int)rnd(x, 3); p->fdkind = FD_CLOSED; return;
	case FDC_INTMIN: p->fd = INT_MIN; p->fdkind = FD_CLOSED; return;
	default: p->fd = INT_MAX; p->fdkind = FD_CLOSED; return;
	}
	p->vm = v;
	p->fd = v->vm->fd;
	p->fdkind = v->ring ? FD_RING : FD_VM;
}

static uint64_t bad_ptr(struct fctx *x)
{
	return bad_ptrs[rnd(x, ARRAY_SIZE(bad_ptrs))];
}

static struct mslot *slot_of(struct mvm *v, uint32_t slot)
{
	return v ? ms_find(v, slot) : NULL;
}

static void mutate(struct fctx *x, struct genp *p, struct call *cl, int kind)
{
	struct kvm_dirtybatch_range *r = &x->gen[rnd(x, p->n)];
	uint32_t i = r - x->gen;
	struct mslot *m = slot_of(p->vm, r->slot);
	uint64_t npages = m && !(m->churn && p->vm->racy) && m->present ?
			  m->npages : 64 + rnd(x, 600);
	uint64_t rem, bytes;
	char *w = cl->what + strlen(cl->what);
	size_t room = sizeof(cl->what) - (w - cl->what);

	switch (kind) {
	case C_FLAGS:
	case C_RESERVED: {
		uint64_t v = one_in(x, 2) ? 1ULL << rnd(x, 64) : rng_next(&x->rng);
		int f = kind == C_FLAGS ? 0 : 1 + rnd(x, 5);

		if (f == 1 && !db_backend_is_module())
			f = 2 + rnd(x, 4);	/* KVM's struct has no reserved0 */
		if (!v)
			v = 1;
		if (!f)
			p->flags = (uint32_t)v ? (uint32_t)v : 1U << 31;
		else if (f == 1)
			p->reserved0 = (uint32_t)v ? (uint32_t)v : 1;
		else
			p->reserved[f - 2] = v;
		snprintf(w, room, "%s ", f ? "reserved" : "flags");
		break;
	}
	case C_RSIZE: {
		static const uint32_t v[] = { 0, 8, 16, 23, 25, 31, 32, 33, 40, 248,
					      252, 255, 256, 257, 260, 264, 512, 4096,
					      UINT32_MAX, 0x80000018 };
		uint32_t s = one_in(x, 6) ? (uint32_t)rng_next(&x->rng) : v[rnd(x, ARRAY_SIZE(v))];

		p->rsize = s;
		if (s >= RSIZE && s <= 256 && !(s % 8) && one_in(x, 2))
			p->stride = s;	/* laid out with it: valid */
		snprintf(w, room, "range_size=%u ", s);
		break;
	}
	case C_EXTRA:
		if (p->stride == RSIZE)
			p->stride = p->rsize = 8 * (4 + rnd(x, 29));
		p->extra_at = i;
		p->extra_off = RSIZE + rnd(x, p->stride - RSIZE);
		snprintf(w, room, "extra[%u]@%u ", i, p->extra_off);
		break;
	case C_COUNT: {
		uint32_t v[] = { 0, p->n - 1, p->n + 1, p->n + 2, 2 * p->n,
				 MAX_RANGES + 1, UINT32_MAX, 1U << 31,
				 (uint32_t)rng_next(&x->rng) };

		p->count = v[rnd(x, ARRAY_SIZE(v))];
		if (one_in(x, 30))	/* reads up to 16 MiB: kept rare */
			p->count = MAX_RANGES - rnd(x, 2);
		snprintf(w, room, "count=%u(of %u) ", p->count, p->n);
		break;
	}
	case C_HUGE_COUNT: {
		uint32_t v[] = { MAX_RANGES - 1, MAX_RANGES, MAX_RANGES, MAX_RANGES + 1 };

		p->count = v[rnd(x, ARRAY_SIZE(v))];
		p->n = 0;
		if (!db_backend_is_module() || one_in(x, 2)) {
			p->rplace = RP_BIG24;
			p->stride = p->rsize = RSIZE;
		} else {
			p->rplace = RP_BIG32;
			p->stride = p->rsize = 32;
		}
		if (one_in(x, 8)) {
			/* all-zero ranges, up to 16 MiB of them */
			p->rplace = RP_ZERO;
			p->rsize = db_backend_is_module() ? 8 * (3 + rnd(x, 30)) : RSIZE;
		}
		snprintf(w, room, "huge count=%u stride %u ", p->count, p->rsize);
		break;
	}
	case C_FD: {
		/* native: the ioctl is the fd's, VM fds only */
		int f = rnd(x, db_backend_is_module() ? FDC_NR : FDC_R + 1);

		set_fd(x, p, f);
		snprintf(w, room, "fd=%d(class %d) ", p->fd, f);
		break;
	}
	case C_ARG_PTR:
		switch (rnd(x, 4)) {
		case 0:
			p->aplace = AP_BAD;
			p->abad = bad_ptr(x);
			break;
		case 1:
			p->aplace = AP_GUARD;
			break;
		case 2:
			p->aplace = AP_STRADDLE;
			p->astraddle = 1 + rnd(x, sizeof(struct kvm_dirtybatch_clear) - 1);
			break;
		default:
#ifndef DB_EMULATE	/* the emulation ignores a failed write-back */
			p->aplace = AP_RO;
#endif
			break;
		}
		snprintf(w, room, "arg place %d ", p->aplace);
		break;
	case C_RANGES_PTR:
		switch (rnd(x, 4)) {
		case 0:
			p->rplace = RP_BAD;
			p->rbad = bad_ptr(x);
			break;
		case 1:
			p->rplace = RP_GUARD;
			break;
		case 2:
			p->rplace = RP_ZERO;
			break;
		default:
			p->rplace = RP_STRADDLE;
			p->straddle_at = rnd(x, p->n);
			break;
		}
		snprintf(w, room, "ranges place %d ", p->rplace);
		break;
	case C_SLOT_AS: {
		uint32_t as[] = { 1, (uint32_t)g.nr_as, (uint32_t)g.nr_as + 1, 0xff, 0xffff,
				  (uint32_t)rnd(x, 0x10000) };

		r->slot = as[rnd(x, ARRAY_SIZE(as))] << 16 | (uint16_t)r->slot;
		snprintf(w, room, "slot[%u]=0x%x ", i, r->slot);
		break;
	}
	case C_SLOT_ID: {
		uint32_t id[] = { 0, 20, 22, 30, BIG_ID, W_ID, 1, 2, 9,
				  (uint32_t)g.nr_memslots - 1, (uint32_t)g.nr_memslots,
				  (uint32_t)g.nr_memslots + 1, 509, 510, 512,
				  0x7fff, 0x8000, 0xffff, (uint32_t)rnd(x, 0x10000) };

		r->slot = (r->slot & 0xffff0000) | id[rnd(x, ARRAY_SIZE(id))];
		snprintf(w, room, "slot[%u]=0x%x ", i, r->slot);
		break;
	}
	case C_FIRST: {
		uint64_t up = (npages + 63) & ~63ULL;
		uint64_t v[] = { npages, up, up + 64, npages & ~63ULL, 1, 63, 32,
				 1ULL << 63, -64ULL, -1ULL, 1ULL << 32,
				 (1ULL << 32) | r->first_page, rng_next(&x->rng),
				 rng_next(&x->rng) & ~63ULL };

		r->first_page = v[rnd(x, ARRAY_SIZE(v))];
		if (one_in(x, 2))
			r->num_pages = one_in(x, 2) ? 0 : 64;
		r->dirty_bitmap = gen_bitmap(x, r->num_pages);
		snprintf(w, room, "first[%u]=%llu num %u ", i,
			 (unsigned long long)r->first_page, r->num_pages);
		break;
	}
	case C_NUM: {
		rem = r->first_page <= npages ? npages - r->first_page : 0;
		uint64_t v[] = { 0, rem, rem + 1, rem - 1, rem + 64, rem + 63,
				 64 * (rem / 64) + 1, 63, 65, 64,
				 UINT32_MAX, 0xffffffc1, 0x80000000,
				 rng_next(&x->rng) & 0xffff };

		r->num_pages = (uint32_t)v[rnd(x, ARRAY_SIZE(v))];
		if (one_in(x, 40))	/* a 16 MiB bitmap, KVM's errno: kept rare */
			r->num_pages = OLD_BM_LIMIT * 8 - 63 * rnd(x, 2);
		bytes = bitmap_bytes(r->num_pages);
		if (bytes <= RAND_BYTES)
			r->dirty_bitmap = gen_bitmap(x, r->num_pages);
		else if (one_in(x, 4))
			r->dirty_bitmap = (uintptr_t)g.zero;	/* 16 MiB readable */
		snprintf(w, room, "num[%u]=%u ", i, r->num_pages);
		break;
	}
	case C_BM_PTR:
		switch (rnd(x, 4)) {
		case 0: case 1:
			r->dirty_bitmap = bad_ptr(x);
			break;
		case 2:
			r->dirty_bitmap = (uintptr_t)ro_guard() + 8 * rnd(x, 16);
			break;
		default:
			r->dirty_bitmap = (uintptr_t)rbuf_end(x);
			break;
		}
		snprintf(w, room, "bitmap[%u]=0x%llx ", i, (unsigned long long)r->dirty_bitmap);
		break;
	case C_BM_HALF:
		bytes = bitmap_bytes(r->num_pages);
		if (!bytes) {
			r->num_pages = 64 * (1 + rnd(x, 4));
			bytes = bitmap_bytes(r->num_pages);
		}
		/* the first 1..bytes-1 bytes readable, the rest PROT_NONE */
		r->dirty_bitmap = (uintptr_t)ro_guard() - 1 - rnd(x, bytes > 1 ? bytes - 1 : 1);
		snprintf(w, room, "bitmap[%u] halfway (%llu bytes) ", i, (unsigned long long)bytes);
		break;
	case C_BM_HUGE: {
		/*
		 * 128 whole ranges of the big slot (16 MiB of bitmaps, the
		 * former limit of a call) and 0 to 2 more: accepted, the union
		 * of the ranges applied; or the last one's bitmap faults
		 * after all of them were read: nothing applied.
		 */
		uint32_t n = OLD_BM_LIMIT / (BIG_PAGES / 8), k, extra = rnd(x, 4);

		p->vm = &g.S;
		p->fd = g.S.vm->fd;
		p->fdkind = FD_VM;
		p->n = p->count = n + (extra ? 1 : 0);
		p->stride = p->rsize = RSIZE;
		for (k = 0; k < n; k++)
			x->gen[k] = (struct kvm_dirtybatch_range){ .slot = BIG_ID,
				.num_pages = BIG_PAGES,
				.dirty_bitmap = one_in(x, 2) ? (uintptr_t)ones() :
					(uintptr_t)rand_area() + 8 * rnd(x, (RAND_BYTES - BIG_PAGES / 8) / 8) };
		if (extra)	/* 8 or more bytes over */
			x->gen[n] = (struct kvm_dirtybatch_range){ .slot = 3,
				.num_pages = extra == 1 ? 1 : 64 * (1 + rnd(x, 64)),
				.dirty_bitmap = (uintptr_t)ones() };
		if (extra == 3)
			x->gen[n] = (struct kvm_dirtybatch_range){ .slot = BIG_ID,
				.num_pages = BIG_PAGES, .dirty_bitmap = bad_ptr(x) };
		snprintf(w, room, "bitmaps over 16 MiB (%s) ",
			 extra == 3 ? "the last faults" : extra ? "over" : "exactly");
		break;
	}
	case C_RANDOM:
		p->random_at = i;
		snprintf(w, room, "random bytes[%u] ", i);
		break;
	}
}

/* ------------------------------------------------------------- checking */

#define VIOL(x, cl, fmt, ...) violation(x, cl, __LINE__, fmt, ##__VA_ARGS__)

static void describe(struct fctx *x, const struct call *cl)
{
	const struct kvm_dirtybatch_clear *c = &cl->c;
	struct kvm_dirtybatch_range r;
	uint32_t i;

	ksft_print_msg("   call: class %s [%s] fd %d (kind %d%s%s) flags 0x%x res0 0x%x count %u range_size %u ranges 0x%llx arg %p\n",
		       c_name[cl->cls], cl->what, c->vm_fd, cl->fdkind,
		       cl->vm ? " " : "", cl->vm ? cl->vm->name : "", c->flags,
		       c->reserved0, c->count, c->range_size,
		       (unsigned long long)c->ranges, cl->argp);
	if (c->range_size < RSIZE || c->range_size > 256 || c->count > MAX_RANGES)
		return;
	for (i = 0; i < c->count && i < 6; i++) {
		x->flap_state = 1;
		if (!readable(x, c->ranges + (uint64_t)i * c->range_size, c->range_size))
			break;
		get_range(c, i, &r);
		ksft_print_msg("   range %u: slot 0x%x first %llu num %u bitmap 0x%llx\n", i,
			       r.slot, (unsigned long long)r.first_page, r.num_pages,
			       (unsigned long long)r.dirty_bitmap);
	}
}

static void violation(struct fctx *x, const struct call *cl, int line,
		      const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void violation(struct fctx *x, const struct call *cl, int line,
		      const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	x->st.violations++;
	if (x->logged_violations >= 12)
		return;
	x->logged_violations++;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&g.log_lock);
	ksft_print_msg("VIOLATION [%s, call %llu, line %d]: %s\n", x->name,
		       (unsigned long long)x->st.calls, line, buf);
	if (cl)
		describe(x, cl);
	fflush(stdout);
	pthread_mutex_unlock(&g.log_lock);
}

static uint64_t popcount_bm(uint64_t addr, uint32_t num)
{
	uint64_t n = 0, w, word;

	for (w = 0; w < bitmap_bytes(num) / 8; w++) {
		memcpy(&word, peek(addr + 8 * w), 8);
		n += __builtin_popcountll(word);
	}
	return n;
}

/* Apply a successful call to the model; bounds of pages_cleared. */
static void model_apply(struct fctx *x, const struct call *cl, uint64_t *lo, uint64_t *hi)
{
	const struct kvm_dirtybatch_clear *c = peek((uintptr_t)cl->argp);
	struct kvm_dirtybatch_range r;
	struct mslot *m;
	uint64_t w, mask, base;
	uint32_t i;

	*lo = *hi = 0;
	for (i = 0; i < c->count; i++) {
		get_range(c, i, &r);
		m = cl->fdkind == FD_VM && !x->chaos ? ms_find(cl->vm, r.slot) : NULL;
		if (!m || (m->churn && cl->vm->racy) || m->exact != EX_EXACT ||
		    !m->present || !m->logged) {
			*hi += popcount_bm(r.dirty_bitmap, r.num_pages);
			continue;
		}
		base = r.first_page / 64;
		for (w = 0; w < bitmap_bytes(r.num_pages) / 8; w++) {
			memcpy(&mask, peek(r.dirty_bitmap + 8 * w), 8);
			mask &= m->bm[base + w];
			m->bm[base + w] &= ~mask;
			*lo += __builtin_popcountll(mask);
		}
	}
	*hi += *lo;
}

/* Compare the exact model of one slot with KVM_GET_DIRTY_LOG. */
static bool verify_slot(struct fctx *x, const struct call *cl, struct mvm *v,
			struct mslot *m)
{
	int r;

	if ((m->churn && v->racy) || m->exact != EX_EXACT || !v->manual || v->ring ||
	    !m->present || !m->logged)
		return true;
	memset(x->tmpbm, 0, bitmap_bytes(m->npages));
	r = vm_get_dirty_log_try(v->vm, m->slot, x->tmpbm);
	if (r) {
		VIOL(x, cl, "KVM_GET_DIRTY_LOG %s slot 0x%x: %s", v->name, m->slot, strerror(-r));
		return false;
	}
	if (!memcmp(x->tmpbm, m->bm, bitmap_bytes(m->npages)))
		return true;
	for (uint64_t p = 0; p < m->npages; p++)
		if (test_bit64(x->tmpbm, p) != test_bit64(m->bm, p)) {
			VIOL(x, cl, "%s slot 0x%x (%llu pages): page %llu is %s in KVM, %s in the model",
			     v->name, m->slot, (unsigned long long)m->npages,
			     (unsigned long long)p, test_bit64(x->tmpbm, p) ? "dirty" : "clean",
			     test_bit64(m->bm, p) ? "dirty" : "clean");
			break;
		}
	memcpy(m->bm, x->tmpbm, bitmap_bytes(m->npages));
	return false;
}

static void verify_vm(struct fctx *x, struct mvm *v)
{
	int i;

	if (!v->vm)
		return;
	for (i = 0; i < v->n; i++)
		verify_slot(x, NULL, v, &v->s[i]);
}

static void verify_all(struct fctx *x)
{
	verify_vm(x, &g.S);
	verify_vm(x, &g.O);
	verify_vm(x, &g.N);
}

/* The exact slots a call names (those that exist), verified after it. */
static void verify_named(struct fctx *x, const struct call *cl)
{
	const struct kvm_dirtybatch_clear *c;
	struct kvm_dirtybatch_range r;
	struct mslot *seen[16];
	int nseen = 0, j;
	uint32_t i;

	if (cl->fdkind != FD_VM || !readable(x, (uintptr_t)cl->argp, sizeof(*c)))
		return;
	c = peek((uintptr_t)cl->argp);
	if (c->range_size < RSIZE || c->range_size > 256 || !c->count ||
	    c->count > MAX_RANGES ||
	    !readable(x, c->ranges, (uint64_t)c->count * c->range_size)) {
		return;
	}
	for (i = 0; i < c->count; i++) {
		struct mslot *m;

		get_range(c, i, &r);
		m = ms_find(cl->vm, r.slot);
		if (!m)
			continue;
		for (j = 0; j < nseen && seen[j] != m; j++)
			;
		if (j < nseen)
			continue;
		if (nseen == 16) {
			verify_vm(x, cl->vm);
			return;
		}
		seen[nseen++] = m;
	}
	for (j = 0; j < nseen; j++)
		verify_slot(x, cl, cl->vm, seen[j]);
}

/*
 * Count a call as the module must.  @idx: the error_index it wrote
 * (UINT32_MAX if it cannot be read).  It synced the dirty logs if it got
 * past the per-range checks (count > 0): it succeeded, or a bitmap
 * faulted (-EFAULT with error_index < count; a fault on the argument or
 * the ranges array leaves error_index unwritten or at count).  With the
 * result and error_index checked against the oracle, that is exact.
 */
static void count_stats(struct fctx *x, const struct call *cl, int r,
			const struct expect *e, uint64_t pages, uint32_t idx)
{
	x->st.calls++;
	x->st.hist[cl->cls][r]++;
	if (e->count && (r == RS_OK || (r == RS_EFAULT && idx < e->count)))
		x->st.syncs++;
	if (r != RS_OK) {
		x->st.failed++;
		return;
	}
	x->st.ok++;
	x->st.pages += pages;
	x->st.ranges += e->count;
	if (e->count) {
		x->st.holds++;
		x->st.words += e->words;
	}
	if (pages)
		x->st.flushes++;
}

/*
 * The slot the vCPU writes during the race test: its bits are only known
 * to go 0 -> 1 by themselves, so a 1 -> 0 change must be requested.
 */
static struct mslot *weak_named(struct fctx *x, const struct call *cl)
{
	const struct kvm_dirtybatch_clear *c;
	struct kvm_dirtybatch_range r;
	struct mslot *m;
	uint64_t w, word;
	bool named = false;
	uint32_t i;

	if (x->chaos || cl->fdkind != FD_VM || cl->vm != &g.S)
		return NULL;
	m = ms_find(&g.S, W_ID);
	if (!m || m->exact != EX_WEAK || !readable(x, (uintptr_t)cl->argp, sizeof(*c)))
		return NULL;
	c = peek((uintptr_t)cl->argp);
	if (c->range_size < RSIZE || c->range_size > 256 || !c->count ||
	    c->count > MAX_RANGES || !readable(x, c->ranges, (uint64_t)c->count * c->range_size))
		return NULL;
	memset(x->wreq, 0, sizeof(x->wreq));
	for (i = 0; i < c->count; i++) {
		get_range(c, i, &r);
		if (r.slot != W_ID)
			continue;
		named = true;
		if (r.first_page & 63 || r.first_page >= 512 ||
		    !readable(x, r.dirty_bitmap, bitmap_bytes(r.num_pages)))
			continue;
		for (w = 0; w < bitmap_bytes(r.num_pages) / 8 && r.first_page / 64 + w < 8; w++) {
			memcpy(&word, peek(r.dirty_bitmap + 8 * w), 8);
			x->wreq[r.first_page / 64 + w] |= word;
		}
	}
	if (!named)
		return NULL;
	if (vm_get_dirty_log_try(g.S.vm, W_ID, x->wb0))
		return NULL;
	return m;
}

static void weak_check(struct fctx *x, const struct call *cl, int r)
{
	int w;

	if (vm_get_dirty_log_try(g.S.vm, W_ID, x->wb1)) {
		VIOL(x, cl, "KVM_GET_DIRTY_LOG of the written slot failed");
		return;
	}
	for (w = 0; w < 8; w++) {
		uint64_t lost = x->wb0[w] & ~x->wb1[w];

		if (r != RS_OK && lost)
			VIOL(x, cl, "failed call: written slot page %d went clean",
			     w * 64 + __builtin_ctzll(lost));
		else if (lost & ~x->wreq[w])
			VIOL(x, cl, "written slot page %d went clean without being named",
			     w * 64 + __builtin_ctzll(lost & ~x->wreq[w]));
	}
}

/*
 * Issue one generated call and check everything that can be checked.
 * Returns the R_* result.
 */
static int run_call(struct fctx *x, struct call *cl)
{
	struct kvm_dirtybatch_clear after;
	uintptr_t a = (uintptr_t)cl->argp, pg = (uintptr_t)x->argpg;
	bool normal = a >= pg && a <= pg + PAGE_SIZE - sizeof(after);
	uint64_t lo = 0, hi = 0, pages = 0;
	uint64_t t0 = now_ns(), t1;
	struct mslot *weak;
	struct expect e;
	int ret, r;

	oracle(x, cl, &e);
	weak = weak_named(x, cl);
	t1 = now_ns();
	if (db_backend_is_module())
		ret = db_ioctl(g.dbfd, KVM_DIRTYBATCH_CLEAR, cl->argp) ? errno : 0;
	else
		ret = -db_clear(g.dbfd, cl->argp);	/* the argument is in argpg */
	x->ns_ioctl += now_ns() - t1;
	x->st.ns[cl->cls] += now_ns() - t1;
	x->ns_check += t1 - t0;
	t0 = now_ns();
	r = r_of(ret);
	if (weak)
		weak_check(x, cl, r);
	if (normal)
		memcpy(&after, cl->argp, sizeof(after));

	if (!(e.allowed & B(r))) {
		char exp[128] = "";
		int k;

		for (k = 0; k < RS_NR; k++)
			if (e.allowed & B(k))
				snprintf(exp + strlen(exp), sizeof(exp) - strlen(exp), " %s", r_name[k]);
		VIOL(x, cl, "got %s (error_index %u), possible:%s", r == RS_OTHER ?
		     strerror(ret) : r_name[r], normal ? after.error_index : 0, exp);
	} else if (e.exact && r != e.r && r != RS_ENOMEM) {
		VIOL(x, cl, "got %s, expected %s", r_name[r], r_name[e.r]);
	}

	if (normal) {
		struct kvm_dirtybatch_clear a = after;

		a.pages_cleared = cl->c.pages_cleared;
		a.error_index = cl->c.error_index;
		if (memcmp(&a, &cl->c, sizeof(a)))
			VIOL(x, cl, "fields other than pages_cleared/error_index changed");
		/* db_clear() writes both for KVM's ioctl, which has no pages_cleared */
		if (db_backend_has_stats() && !e.out_written &&
		    (after.pages_cleared != SENT64 || after.error_index != SENT32))
			VIOL(x, cl, "out fields written on an early error: pages_cleared 0x%llx error_index %u",
			     (unsigned long long)after.pages_cleared, after.error_index);
		if (db_backend_has_stats() && r != RS_OK && after.pages_cleared != SENT64 &&
		    after.pages_cleared)
			VIOL(x, cl, "failed call reports pages_cleared %llu",
			     (unsigned long long)after.pages_cleared);
		if (r == RS_OK && after.error_index != cl->c.count)
			VIOL(x, cl, "error_index %u after success, count %u", after.error_index,
			     cl->c.count);
		if (r != RS_OK && r == e.r && e.exact && e.idx >= 0 && after.error_index != SENT32 &&
		    after.error_index != (uint32_t)e.idx)
			VIOL(x, cl, "error_index %u, expected %lld", after.error_index,
			     (long long)e.idx);
		if (r != RS_OK && after.error_index != SENT32 && after.error_index > cl->c.count)
			VIOL(x, cl, "error_index %u > count %u", after.error_index, cl->c.count);
		if (r != RS_OK && e.exact && e.idx >= 0 && e.idx < (int64_t)cl->c.count &&
		    r == e.r && after.error_index == SENT32)
			VIOL(x, cl, "error_index not written for a range error");
		pages = db_backend_has_stats() ? after.pages_cleared : 0;
		x->last_pages = pages;
		x->last_idx = after.error_index;
	} else {
		x->last_pages = x->last_idx = 0;
	}

	if (r == RS_OK && (e.allowed & B(RS_OK))) {
		model_apply(x, cl, &lo, &hi);
		if (normal && db_backend_has_stats() && (pages < lo || pages > hi))
			VIOL(x, cl, "pages_cleared %llu, model says %llu..%llu",
			     (unsigned long long)pages, (unsigned long long)lo,
			     (unsigned long long)hi);
		/* KVM's ioctl does not count: the model's, the bitmaps are verified */
		if (!normal || !db_backend_has_stats()) {
			pages = lo == hi ? lo : 0;
			if (normal)
				x->last_pages = pages;
		}
	}
	count_stats(x, cl, r, &e, pages, normal ? after.error_index : UINT32_MAX);
	if (!x->chaos) {
		if (r == RS_OK && !(e.allowed & B(RS_OK)) && cl->fdkind == FD_VM)
			verify_vm(x, cl->vm);	/* resync after an impossible success */
		else
			verify_named(x, cl);
	}
	x->ns_check += now_ns() - t0;
	return r;
}

/*
 * The module counters moved exactly as this (only) thread's calls say; the
 * lock breaks, not predictable, as many as the MMU-lock holds beyond one
 * per call that took the lock, at most one per bitmap word of those calls.
 */
static void check_counters(struct fctx *x, struct kvm_dirtybatch_stats *prev,
			   const struct stats *before, const struct call *cl)
{
	struct kvm_dirtybatch_stats now;
	struct stats *s = &x->st;
	uint64_t breaks;

	if (db_get_stats(g.dbfd, &now)) {
		VIOL(x, cl, "GET_STATS failed");
		return;
	}
	breaks = now.lock_breaks - prev->lock_breaks;
#define CK(f, v) do {							\
	if (now.f - prev->f != (v))					\
		VIOL(x, cl, "counter " #f " moved by %llu, expected %llu",	\
		     (unsigned long long)(now.f - prev->f),		\
		     (unsigned long long)(v));				\
} while (0)
	CK(calls, s->ok - before->ok);
	CK(failed_calls, s->failed - before->failed);
	CK(ranges, s->ranges - before->ranges);
	CK(pages_cleared, s->pages - before->pages);
	CK(mmu_lock_holds, s->holds - before->holds + breaks);
	CK(tlb_flushes, s->flushes - before->flushes);
	CK(dirty_log_syncs, s->syncs - before->syncs);
#undef CK
	if (breaks > s->words - before->words)
		VIOL(x, cl, "lock_breaks moved by %llu, more than the %llu bitmap words of the call",
		     (unsigned long long)breaks, (unsigned long long)(s->words - before->words));
	s->breaks += breaks;
	if (now.live_allocs)
		VIOL(x, cl, "live_allocs %llu with no call in flight",
		     (unsigned long long)now.live_allocs);
	if (now.max_hold_ns < prev->max_hold_ns)
		VIOL(x, cl, "max_hold_ns went down");
	*prev = now;
}

/* -------------------------------------------------------------- calls */

static const struct { int kind, weight; } mut_w[] = {
	{ C_FLAGS, 3 }, { C_RESERVED, 3 }, { C_RSIZE, 6 }, { C_EXTRA, 5 },
	{ C_COUNT, 6 }, { C_FD, 8 }, { C_ARG_PTR, 5 }, { C_RANGES_PTR, 6 },
	{ C_SLOT_AS, 6 }, { C_SLOT_ID, 8 }, { C_FIRST, 10 }, { C_NUM, 10 },
	{ C_BM_PTR, 8 }, { C_BM_HALF, 6 }, { C_RANDOM, 5 },
};

/* The module's own interface: not generated for KVM's native ioctl. */
static bool module_only_kind(int kind)
{
	return kind == C_RSIZE || kind == C_EXTRA || kind == C_ARG_PTR;
}

static int pick_mutation(struct fctx *x)
{
	int total = 0, k, v;

	for (k = 0; k < (int)ARRAY_SIZE(mut_w); k++)
		total += mut_w[k].weight;
	do {
		v = rnd(x, total);
		for (k = 0; v >= mut_w[k].weight; k++)
			v -= mut_w[k].weight;
	} while (!db_backend_is_module() && module_only_kind(mut_w[k].kind));
	return mut_w[k].kind;
}

static void gen_call(struct fctx *x, struct call *cl)
{
	unsigned int u = rnd(x, 100), k, nm;
	struct mvm *v;
	struct genp p;

	memset(cl, 0, sizeof(*cl));
	v = u < 55 ? &g.S : u < 80 ? &g.O : u < 92 ? &g.N : g.have_ring ? &g.R : &g.S;
	gen_valid(x, &p, v);
	cl->cls = C_VALID;
	if (one_in(x, 2500)) {
		cl->cls = C_HUGE_COUNT;
		mutate(x, &p, cl, C_HUGE_COUNT);
	} else if (one_in(x, 5000)) {
		cl->cls = C_BM_HUGE;
		mutate(x, &p, cl, C_BM_HUGE);
	} else if (rnd(x, 100) < 60) {
		nm = one_in(x, 4) ? 2 + rnd(x, 2) : 1;
		for (k = 0; k < nm; k++) {
			int kind = pick_mutation(x);

			if (!k)
				cl->cls = kind;
			mutate(x, &p, cl, kind);
		}
	}
	emit(x, &p, cl);
}

/* ------------------------------------------------- deterministic changes */

/* serializes the helper's memslot table of S between threads */
static void s_lock(void) { pthread_mutex_lock(&g.s_lock); }
static void s_unlock(void) { pthread_mutex_unlock(&g.s_lock); }

/* add / delete / move / toggle logging of a churn slot of S (one thread) */
static void slot_op(struct fctx *x, struct mvm *v, struct rng *rng, bool model)
{
	uint32_t id = CHURN_LO + rng_below(rng, CHURN_HI - CHURN_LO + 1), slot = id;
	struct mslot *m;
	uint32_t flags;
	int r = 0;

	if (g.nr_as > 1 && !rng_below(rng, 4))
		slot = 1U << 16 | (CHURN_LO + rng_below(rng, CHURN_AS1_HI - CHURN_LO + 1));
	m = ms_find(v, slot);
	VM_CHECK(m, "churn slot 0x%x not in the model", slot);
	if (!model)
		s_lock();
	if (!m->present) {
		m->npages = 1 + rng_below(rng, 600);
		m->logged = rng_below(rng, 4);
		m->gen++;
		m->gpa = gpa_home(slot, m->gen);
		r = vm_add_slot_try(v->vm, slot, m->gpa, m->npages,
				    m->logged ? KVM_MEM_LOG_DIRTY_PAGES : 0, NULL);
		m->present = !r;
	} else {
		switch (rng_below(rng, 3)) {
		case 0:
			r = vm_delete_slot_try(v->vm, slot);
			m->present = !!r;
			break;
		case 1:
			m->gen++;
			m->gpa = gpa_home(slot, m->gen);
			r = vm_move_slot_try(v->vm, slot, m->gpa);	/* keeps the bitmap */
			if (model && m->logged && !r) {
				/* moved: the bitmap stays, nothing to do */
			}
			goto out;
		default:
			flags = m->logged ? 0 : KVM_MEM_LOG_DIRTY_PAGES;
			r = vm_set_slot_flags_try(v->vm, slot, flags);
			if (!r)
				m->logged = !m->logged;
			break;
		}
	}
	if (model)
		ms_set_bits(m);
out:
	if (!model)
		s_unlock();
	__atomic_fetch_add(&g.slot_ops, 1, __ATOMIC_RELAXED);
	if (r && model)
		VIOL(x, NULL, "memslot change of 0x%x failed: %s", slot, strerror(-r));
}

/* Dirty logging off and on again: every bit of the slot set again. */
static void refill(struct fctx *x, bool locked)
{
	struct mvm *v = one_in(x, 3) ? &g.O : &g.S;
	struct mslot *m;
	int r, tries;

	for (tries = 0; tries < 8; tries++) {
		m = &v->s[rnd(x, v->n)];
		if (m->present && m->logged && m->exact == EX_EXACT && !m->churn &&
		    (m->slot != BIG_ID || one_in(x, 8)))
			break;
	}
	if (tries == 8)
		return;
	if (locked)
		s_lock();
	r = vm_set_slot_flags_try(v->vm, m->slot, 0);
	if (!r)
		r = vm_set_slot_flags_try(v->vm, m->slot, KVM_MEM_LOG_DIRTY_PAGES);
	if (locked)
		s_unlock();
	if (r)
		VIOL(x, NULL, "toggling dirty logging of %s slot 0x%x: %s", v->name, m->slot,
		     strerror(-r));
	ms_set_bits(m);
}

/* The vCPU of S writes a few pages and stops: their dirty bits get set. */
static void vcpu_burst(struct fctx *x)
{
	uint64_t gpas[256];
	struct mslot *m, *ms[256];
	uint64_t pg[256];
	uint32_t n = 1 + rnd(x, 256), i, tries;

	for (i = 0; i < n; i++) {
		for (tries = 0; tries < 16; tries++) {
			m = &g.S.s[rnd(x, g.S.n)];
			if (m->present && !(m->slot >> 16) && m->slot != SYS_SLOT &&
			    m->gpa < (1ULL << 32))
				break;
		}
		if (tries == 16) {
			n = i;
			break;
		}
		ms[i] = m;
		pg[i] = rnd(x, m->npages);
		gpas[i] = m->gpa + pg[i] * PAGE_SIZE;
	}
	if (!n)
		return;
	guest_set_list(g.S.vm, gpas, n, 1);
	vcpu_reset(g.S.vm);
	vcpu_run_to_done(g.S.vm);
	for (i = 0; i < n; i++)
		if (ms[i]->logged && ms[i]->bm)
			set_bit64(ms[i]->bm, pg[i]);
}

/* ----------------------------------------------------------------- world */

static void add_region(struct region *reg, int *n, void *p, size_t len)
{
	reg[*n].start = (uintptr_t)p;
	reg[*n].end = (uintptr_t)p + len;
	(*n)++;
}

static struct fctx *ctx_new(const char *name,
			    uint64_t seed, bool chaos)
{
	struct fctx *x = calloc(1, sizeof(*x));

	VM_CHECK(x, "calloc");
	x->name = name;
	x->chaos = chaos;
	rng_init(&x->rng, seed);
	x->rbuf = map_guarded(RBUF_BYTES, PROT_READ | PROT_WRITE);
	x->argpg = map_guarded(PAGE_SIZE, PROT_READ | PROT_WRITE);
	x->ropg = map_guarded(PAGE_SIZE, PROT_READ);
	x->gen = calloc(GEN_MAX + 256, sizeof(*x->gen));
	x->tmpbm = calloc(1, BIG_PAGES / 8);
	VM_CHECK(x->gen && x->tmpbm, "calloc");
	add_region(x->reg, &x->nreg, x->rbuf, RBUF_BYTES);
	add_region(x->reg, &x->nreg, x->argpg, PAGE_SIZE);
	add_region(x->reg, &x->nreg, x->ropg, PAGE_SIZE);
	x->digest = 0xcbf29ce484222325ULL;
	return x;
}

static void fill_big(uint8_t *buf, uint32_t stride)
{
	static const uint32_t ids[] = { 1, 2, 3, 4, 5, 6 };
	uint32_t i;

	for (i = 0; i <= MAX_RANGES; i++) {
		struct mslot *m = ms_find(&g.S, ids[i % 6]);
		struct kvm_dirtybatch_range r = {
			.slot = m->slot, .num_pages = m->npages,
			.dirty_bitmap = (uintptr_t)ones() + 8 * (i % 64),
		};

		memcpy(buf + (uint64_t)i * stride, &r, sizeof(r));
	}
}

static void world_up(uint64_t seed)
{
	static const struct { uint32_t id; uint64_t npages; bool logged; } s_slots[] = {
		{ 1, 1, true }, { 2, 63, true }, { 3, 64, true }, { 4, 65, true },
		{ 5, 130, true }, { 6, 1000, true }, { W_ID, 512, true },
		{ 20, 64, false }, { BIG_ID, BIG_PAGES, true },
	}, o_slots[] = {
		{ 1, 2, true }, { 2, 200, true }, { 3, 64, true }, { 4, 129, true },
		{ 5, 1, true }, { 6, 700, true }, { 9, 64, true }, { 20, 64, false },
	}, n_slots[] = { { 1, 64, true }, { 2, 100, true }, { 3, 3, true } };
	struct rng rng;
	uint8_t *rnd_area;
	uint64_t i, j;
	int fd;

	memset(&g, 0, sizeof(g));
	pthread_mutex_init(&g.log_lock, NULL);
	pthread_mutex_init(&g.s_lock, NULL);
	rng_init(&rng, seed ^ 0x5bd1e995);
	g.dbfd = db_open();
	VM_CHECK(g.dbfd >= 0, "open " DB_DEVICE_PATH);

	mvm_init(&g.S, "S", true, false);
	g.nr_as = g.S.vm->nr_as;
	g.nr_memslots = g.S.vm->nr_memslots;
	for (i = 0; i < ARRAY_SIZE(s_slots); i++)
		mvm_add(&g.S, s_slots[i].id, s_slots[i].npages, s_slots[i].logged, false, true);
	for (i = CHURN_LO; i <= CHURN_HI; i++)
		mvm_add(&g.S, i, 64 + 64 * (i % 3), true, true, i < 11);
	if (g.nr_as > 1) {
		mvm_add(&g.S, 1U << 16 | 1, 77, true, false, true);
		mvm_add(&g.S, 1U << 16 | 2, 128, true, false, true);
		mvm_add(&g.S, 1U << 16 | 3, 64, false, false, true);
		for (i = CHURN_LO; i <= CHURN_AS1_HI; i++)
			mvm_add(&g.S, 1U << 16 | i, 64, true, true, false);
	}
	vm_create_vcpu(g.S.vm);

	mvm_init(&g.O, "O", true, false);
	for (i = 0; i < ARRAY_SIZE(o_slots); i++)
		mvm_add(&g.O, o_slots[i].id, o_slots[i].npages, o_slots[i].logged, false, true);
	if (g.nr_as > 1)
		mvm_add(&g.O, 1U << 16 | 1, 64, true, false, true);

	mvm_init(&g.N, "N", false, false);
	for (i = 0; i < ARRAY_SIZE(n_slots); i++)
		mvm_add(&g.N, n_slots[i].id, n_slots[i].npages, n_slots[i].logged, false, true);

	mvm_init(&g.R, "R", true, true);
	g.have_ring = g.R.vm != NULL;
	if (g.have_ring)
		mvm_add(&g.R, 1, 64, true, false, true);

	g.devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	VM_CHECK(g.devnull >= 0 && !pipe2(g.pipefd, O_CLOEXEC), "open");
	g.evfd = eventfd(0, EFD_CLOEXEC);
	VM_CHECK(g.evfd >= 0, "eventfd");
	/* 16 numbers that are no open file, and that nothing will open */
	for (g.closed_fd = 900; ; g.closed_fd += 16) {
		for (fd = g.closed_fd; fd < g.closed_fd + 16 && fcntl(fd, F_GETFD) < 0; fd++)
			;
		if (fd == g.closed_fd + 16)
			break;
	}

	/* ones, then 64 KiB blocks of various densities; read-only */
	g.ro = map_guarded(ONES_BYTES + RAND_BYTES, PROT_READ | PROT_WRITE);
	memset(g.ro, 0xff, ONES_BYTES);
	rnd_area = g.ro + ONES_BYTES;
	for (i = 0; i < RAND_BYTES / 8; i++) {
		uint64_t blk = i / 8192, w = rng_next(&rng), v;

		switch (blk % 8) {
		case 0: v = 0; break;
		case 1: v = w & rng_next(&rng) & rng_next(&rng) & rng_next(&rng); break;
		case 2: v = w; break;
		case 3: v = w | rng_next(&rng) | rng_next(&rng); break;
		case 4: v = ~0ULL; break;
		case 5: v = 0xaaaaaaaaaaaaaaaaULL >> (i & 1); break;
		case 6: v = (i & 1) ? ~0ULL : 0; break;
		default: v = 1ULL << (w & 63); break;
		}
		memcpy(rnd_area + 8 * i, &v, 8);
	}
	VM_CHECK(!mprotect(g.ro, ONES_BYTES + RAND_BYTES, PROT_READ), "mprotect");
	add_region(g.reg, &g.nreg, g.ro, ONES_BYTES + RAND_BYTES);

	g.zero = map_guarded(ZERO_BYTES, PROT_READ);
	add_region(g.reg, &g.nreg, g.zero, ZERO_BYTES);

	j = (uint64_t)(MAX_RANGES + 1) * 32;
	g.big24 = map_guarded((MAX_RANGES + 1) * RSIZE, PROT_READ | PROT_WRITE);
	g.big32 = map_guarded(j, PROT_READ | PROT_WRITE);
	fill_big(g.big24, RSIZE);
	fill_big(g.big32, 32);
	add_region(g.reg, &g.nreg, g.big24, page_up((MAX_RANGES + 1) * RSIZE));
	add_region(g.reg, &g.nreg, g.big32, page_up(j));
}

static void world_down(void)
{
	vm_free(g.S.vm);
	vm_free(g.O.vm);
	vm_free(g.N.vm);
	vm_free(g.R.vm);
	close(g.devnull);
	close(g.pipefd[0]);
	close(g.pipefd[1]);
	close(g.evfd);
	close(g.dbfd);
}

/* -------------------------------------------------------------- report */

static void stats_add(struct stats *to, const struct stats *s)
{
	int c, r;

	to->calls += s->calls;
	to->ok += s->ok;
	to->failed += s->failed;
	to->pages += s->pages;
	to->ranges += s->ranges;
	to->holds += s->holds;
	to->words += s->words;
	to->breaks += s->breaks;
	to->flushes += s->flushes;
	to->syncs += s->syncs;
	to->violations += s->violations;
	for (c = 0; c < C_NR; c++) {
		to->ns[c] += s->ns[c];
		for (r = 0; r < RS_NR; r++)
			to->hist[c][r] += s->hist[c][r];
	}
}

static void report(const char *test, const struct stats *s, uint64_t seed, double secs)
{
	char line[512];
	uint64_t tot[RS_NR] = { 0 };
	int c, r;

	for (c = 0; c < C_NR; c++) {
		uint64_t n = 0;

		for (r = 0; r < RS_NR; r++) {
			n += s->hist[c][r];
			tot[r] += s->hist[c][r];
		}
		if (!n)
			continue;
		snprintf(line, sizeof(line), "fuzz-summary: %s class %s: %llu calls:", test,
			 c_name[c], (unsigned long long)n);
		for (r = 0; r < RS_NR; r++)
			if (s->hist[c][r])
				snprintf(line + strlen(line), sizeof(line) - strlen(line), " %s=%llu",
					 r_name[r], (unsigned long long)s->hist[c][r]);
		ksft_print_msg("%s (%.0f us/call)\n", line, s->ns[c] / 1e3 / n);
	}
	snprintf(line, sizeof(line), "fuzz-summary: %s errnos:", test);
	for (r = 0; r < RS_NR; r++)
		snprintf(line + strlen(line), sizeof(line) - strlen(line), " %s=%llu", r_name[r],
			 (unsigned long long)tot[r]);
	ksft_print_msg("%s\n", line);
	ksft_print_msg("fuzz-summary: %s seed=%llu calls=%llu ok=%llu failed=%llu pages_cleared=%llu lock_breaks=%llu dirty_log_syncs=%llu seconds=%.1f violations=%llu\n",
		       test, (unsigned long long)seed, (unsigned long long)s->calls,
		       (unsigned long long)s->ok, (unsigned long long)s->failed,
		       (unsigned long long)s->pages, (unsigned long long)s->breaks,
		       (unsigned long long)s->syncs, secs, (unsigned long long)s->violations);
	fflush(stdout);
}

static void report_module(const char *test, int dbfd)
{
	struct kvm_dirtybatch_stats st;

	if (db_get_stats(dbfd, &st))
		return;
	ksft_print_msg("fuzz-summary: %s module calls=%llu failed_calls=%llu pages_cleared=%llu mmu_lock_holds=%llu lock_breaks=%llu tlb_flushes=%llu max_hold_ns=%llu live_allocs=%llu dirty_log_syncs=%llu\n",
		       test, (unsigned long long)st.calls, (unsigned long long)st.failed_calls,
		       (unsigned long long)st.pages_cleared, (unsigned long long)st.mmu_lock_holds,
		       (unsigned long long)st.lock_breaks, (unsigned long long)st.tlb_flushes,
		       (unsigned long long)st.max_hold_ns, (unsigned long long)st.live_allocs,
		       (unsigned long long)st.dirty_log_syncs);
}

/* ------------------------------------------------ the deterministic test */

FIXTURE(fuzz) {
	int unused;
};

FIXTURE_SETUP(fuzz)
{
	self->unused = 0;
}

FIXTURE_TEARDOWN(fuzz)
{
}

static uint64_t fnv(uint64_t h, uint64_t v)
{
	int i;

	for (i = 0; i < 8; i++) {
		h ^= (v >> (8 * i)) & 0xff;
		h *= 0x100000001b3ULL;
	}
	return h;
}

TEST_F_TIMEOUT(fuzz, deterministic, 86400)
{
	uint64_t n = env_u64("KVM_DIRTYBATCH_FUZZ_CALLS", 50000), seed, t0, done = 0;
	struct kvm_dirtybatch_stats prev;
	struct stats before;
	struct fctx *x;
	struct call cl;
	int r;

	seed = test_seed("fuzz");
	t0 = now_ns();
	world_up(seed);
	x = ctx_new("deterministic", seed, false);
	ASSERT_EQ(0, db_get_stats(g.dbfd, &prev));
	EXPECT_EQ(0, prev.live_allocs);
	before = x->st;
	verify_all(x);

	while (done < n) {
		unsigned int u = rnd(x, 1000);
		uint64_t t1 = now_ns();

		if (u < 6) {
			slot_op(x, &g.S, &x->rng, true);
		} else if (u < 9) {
			vcpu_burst(x);
		} else if (u < 17) {
			refill(x, false);
		} else {
			gen_call(x, &cl);
			x->ns_gen += now_ns() - t1;
			r = run_call(x, &cl);
			t1 = now_ns();
			x->digest = fnv(x->digest, r);
			x->digest = fnv(x->digest, x->last_pages);
			x->digest = fnv(x->digest, x->last_idx);
			if (db_backend_has_stats())
				check_counters(x, &prev, &before, &cl);
			before = x->st;
			if (++done % 1024 == 0)
				verify_all(x);
			if (done % 100000 == 0) {
				ksft_print_msg("fuzz: %llu calls, %llu violations, %.0f s\n",
					       (unsigned long long)done,
					       (unsigned long long)x->st.violations,
					       (now_ns() - t0) / 1e9);
				fflush(stdout);
			}
		}
		x->ns_ops += now_ns() - t1;
	}
	verify_all(x);
	world_down();
	ASSERT_EQ(0, db_get_stats((g.dbfd = db_open()), &prev));
	if (prev.live_allocs)
		VIOL(x, NULL, "live_allocs %llu after the run", (unsigned long long)prev.live_allocs);
	report("deterministic", &x->st, seed, (now_ns() - t0) / 1e9);
	ksft_print_msg("fuzz-summary: deterministic digest=0x%016llx (same seed, same digest)\n",
		       (unsigned long long)x->digest);
	ksft_print_msg("fuzz-summary: deterministic time: generate %.1f s, ioctl %.1f s, oracle+checks %.1f s, counters+memslot changes+guest writes %.1f s\n",
		       x->ns_gen / 1e9, x->ns_ioctl / 1e9, x->ns_check / 1e9, x->ns_ops / 1e9);
	if (db_backend_has_stats())
		report_module("deterministic", g.dbfd);
	close(g.dbfd);
	EXPECT_EQ(0, x->st.violations);
	EXPECT_LE(n, x->st.calls);
}

/* --------------------------------------------------------- the race test */

#define NR_CHAOS	2
#define NR_CVM		2
#define FLAP_RANGES	16

enum { UA_NONE, UA_FD, UA_DELETE, UA_LOGOFF, UA_MOVE, UA_SHRINK, UA_NR };
static const char *const ua_name[UA_NR] = {
	"nothing", "vm_fd_replaced", "slot_deleted", "logging_off", "slot_moved",
	"slot_shrunk"
};
enum { US_ARG, US_RANGES, US_BITMAP, US_NR };

static struct {
	struct vm *c[NR_CVM];
	int cfd[NR_CVM];
	struct fctx *model, *chaos[NR_CHAOS], *uffd;
	bool uffd_skipped;
	uint64_t seed;
} rc;

static void gen_chaos(struct fctx *x, struct call *cl)
{
	unsigned int u = rnd(x, 100), k, nm;
	struct genp p;

	memset(cl, 0, sizeof(*cl));
	gen_valid(x, &p, &g.S);		/* x->chaos: ranges on churn ids */
	cl->cls = C_CHAOS;
	if (!db_backend_is_module()) {
		/* S only: a stale fd number reaches whatever file has it now */
	} else if (u < 45) {
		p.fd = __atomic_load_n(&rc.cfd[rnd(x, NR_CVM)], __ATOMIC_ACQUIRE);
		p.fdkind = FD_RACY;
		p.vm = NULL;
	} else if (u < 85) {
		/* S: only its churned memslots */
	} else if (u < 92) {
		set_fd(x, &p, FDC_CLOSED);
	} else {
		set_fd(x, &p, FDC_KVM + rnd(x, FDC_EVENT - FDC_KVM + 1));
	}
	if (one_in(x, 4)) {
		cl->cls = C_FLAP;
		/* not the module's struct for KVM's ioctl: db_clear() reads it */
		switch (rnd(x, db_backend_is_module() ? 3 : 2)) {
		case 0:
			p.rplace = RP_FLAP;
			p.n = 0;
			p.count = 1 + rnd(x, FLAP_RANGES);
			p.stride = p.rsize = RSIZE;
			break;
		case 1:
			x->gen[rnd(x, p.n)].dirty_bitmap = (uintptr_t)g.flap + 2048 + 8 * rnd(x, 64);
			break;
		default:
#ifndef DB_EMULATE	/* the emulation ignores a failed write-back */
			p.aplace = AP_FLAP;
#endif
			break;
		}
	} else if (one_in(x, 2)) {
		nm = 1 + rnd(x, 2);
		for (k = 0; k < nm; k++) {
			int kind;

			/* never a memslot id the model thread checks exactly */
			do {
				kind = pick_mutation(x);
			} while (kind == C_FD || kind == C_SLOT_ID || kind == C_RANDOM);
			if (!k)
				cl->cls = kind;
			mutate(x, &p, cl, kind);
		}
	}
	emit(x, &p, cl);
}

/*
 * A chaos call must not be able to clear a memslot whose bits another
 * thread checks exactly (S's stable slots, the userfaultfd VMs' slots 1
 * and 2): a range read with a wrong stride, for one, can name any id.
 * Only churn ids, the system slot and impossible ids are let through.
 */
static bool chaos_harmless(struct fctx *x, const struct call *cl)
{
	const struct kvm_dirtybatch_clear *c;
	struct kvm_dirtybatch_range r;
	uint32_t i, as, id;

	x->flap_state = 1;
	if (!readable(x, (uintptr_t)cl->argp, sizeof(*c)))
		return true;
	c = peek((uintptr_t)cl->argp);
	if (c->range_size < RSIZE || c->range_size > 256 || c->count > MAX_RANGES ||
	    !readable(x, c->ranges, (uint64_t)c->count * c->range_size))
		return true;
	for (i = 0; i < c->count; i++) {
		get_range(c, i, &r);
		as = r.slot >> 16;
		id = (uint16_t)r.slot;
		if (as >= (uint32_t)g.nr_as || id >= (uint32_t)g.nr_memslots || !id ||
		    (r.first_page & 63))
			continue;
		if (id < CHURN_LO || id > CHURN_HI)
			return false;
	}
	return true;
}

static void *chaos_thread(void *arg)
{
	struct fctx *x = arg;
	struct call cl;

	while (!__atomic_load_n(&g.stop, __ATOMIC_ACQUIRE)) {
		gen_chaos(x, &cl);
		if (chaos_harmless(x, &cl))
			run_call(x, &cl);
	}
	return NULL;
}

static void *slot_churn_thread(void *arg)
{
	struct rng rng;

	rng_init(&rng, (uintptr_t)arg);
	while (!__atomic_load_n(&g.stop, __ATOMIC_ACQUIRE)) {
		slot_op(NULL, &g.S, &rng, false);
		if (!rng_below(&rng, 4))
			usleep(rng_below(&rng, 300));
	}
	return NULL;
}

static struct vm *make_cvm(struct rng *rng, bool vcpu)
{
	struct vm *vm = vm_create(true);
	uint64_t gpas[64], np;
	uint32_t n = 0, id;

	for (id = CHURN_LO; id <= CHURN_HI; id++) {
		if (!rng_below(rng, 4))
			continue;
		np = 1 + rng_below(rng, 600);
		vm_add_slot(vm, id, gpa_home(id, 0), np,
			    rng_below(rng, 4) ? KVM_MEM_LOG_DIRTY_PAGES : 0);
		gpas[n++] = gpa_home(id, 0) + rng_below(rng, np) * PAGE_SIZE;
	}
	for (id = CHURN_LO; g.nr_as > 1 && id <= CHURN_AS1_HI; id++)
		if (rng_below(rng, 2))
			vm_add_slot(vm, 1U << 16 | id, gpa_home(id, 0), 64 + rng_below(rng, 200),
				    KVM_MEM_LOG_DIRTY_PAGES);
	if (vcpu && n) {
		vm_create_vcpu(vm);
		guest_set_list(vm, gpas, n, 0);
		vcpu_start(vm);
	}
	return vm;
}

/* VM 0: memslot churn and re-creation; VM 1: a vCPU, its fd closed */
static void *vm_churn_thread(void *arg)
{
	struct rng rng;
	struct vm *old;

	rng_init(&rng, (uintptr_t)arg);
	while (!__atomic_load_n(&g.stop, __ATOMIC_ACQUIRE)) {
		if (!rng_below(&rng, 12)) {
			old = rc.c[0];
			rc.c[0] = make_cvm(&rng, false);
			__atomic_store_n(&rc.cfd[0], rc.c[0]->fd, __ATOMIC_RELEASE);
			vm_free(old);
			__atomic_fetch_add(&g.vm_recreates, 1, __ATOMIC_RELAXED);
		} else {
			uint32_t id = CHURN_LO + rng_below(&rng, CHURN_HI - CHURN_LO + 1);
			struct vm_slot *s = vm_find_slot(rc.c[0], id);

			if (!s)
				vm_add_slot_try(rc.c[0], id, gpa_home(id, rng_below(&rng, 2)),
						1 + rng_below(&rng, 600),
						rng_below(&rng, 4) ? KVM_MEM_LOG_DIRTY_PAGES : 0, NULL);
			else if (rng_below(&rng, 3) == 0)
				vm_delete_slot_try(rc.c[0], id);
			else if (rng_below(&rng, 2))
				vm_move_slot_try(rc.c[0], id, s->gpa == gpa_home(id, 0) ?
						 gpa_home(id, 1) : gpa_home(id, 0));
			else
				vm_set_slot_flags_try(rc.c[0], id, s->flags ^ KVM_MEM_LOG_DIRTY_PAGES);
			__atomic_fetch_add(&g.slot_ops, 1, __ATOMIC_RELAXED);
		}
		if (!rng_below(&rng, 40)) {
			/* the VM lives on through its vCPU; the fd number is stale */
			vm_close_fd(rc.c[1]);
			__atomic_fetch_add(&g.fd_closes, 1, __ATOMIC_RELAXED);
			usleep(1000 + rng_below(&rng, 3000));
			vm_free(rc.c[1]);
			rc.c[1] = make_cvm(&rng, true);
			__atomic_store_n(&rc.cfd[1], rc.c[1]->fd, __ATOMIC_RELEASE);
			__atomic_fetch_add(&g.vm_recreates, 1, __ATOMIC_RELAXED);
		}
		if (!rng_below(&rng, 4))
			usleep(rng_below(&rng, 500));
	}
	return NULL;
}

static void *flap_thread(void *arg)
{
	struct rng rng;

	rng_init(&rng, (uintptr_t)arg);
	while (!__atomic_load_n(&g.stop, __ATOMIC_ACQUIRE)) {
		mprotect(g.flap, PAGE_SIZE, PROT_NONE);
		usleep(rng_below(&rng, 200));
		mprotect(g.flap, PAGE_SIZE, PROT_READ);
		usleep(rng_below(&rng, 200));
		__atomic_fetch_add(&g.flips, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

static void flap_setup(void)
{
	struct kvm_dirtybatch_range *r = (void *)flap_shadow;
	struct kvm_dirtybatch_clear *c = (void *)(flap_shadow + PAGE_SIZE - sizeof(*c));
	struct rng rng;
	uint32_t i;

	rng_init(&rng, 77);
	memset(flap_shadow, 0, sizeof(flap_shadow));
	memset(flap_shadow + 2048, 0xff, 1024);
	g.flap = mmap(NULL, PAGE_SIZE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	VM_CHECK(g.flap != MAP_FAILED, "mmap");
	for (i = 0; i < FLAP_RANGES; i++)
		r[i] = (struct kvm_dirtybatch_range){
			.slot = CHURN_LO + rng_below(&rng, CHURN_HI - CHURN_LO + 1),
			.first_page = 64 * rng_below(&rng, 3),
			.num_pages = 64 * rng_below(&rng, 4),
			.dirty_bitmap = (uintptr_t)g.flap + 2048 + 8 * i,
		};
	*c = (struct kvm_dirtybatch_clear){ .vm_fd = g.S.vm->fd, .count = FLAP_RANGES,
		.range_size = RSIZE, .ranges = (uintptr_t)g.flap };
	memcpy(g.flap, flap_shadow, PAGE_SIZE);
	VM_CHECK(!mprotect(g.flap, PAGE_SIZE, PROT_READ), "mprotect");
}

struct ucall {
	void *argp;
	int ret;
};

static void *ucall_fn(void *a)
{
	struct ucall *u = a;

	if (db_backend_is_module())
		u->ret = db_ioctl(g.dbfd, KVM_DIRTYBATCH_CLEAR, u->argp) ? errno : 0;
	else
		u->ret = -db_clear(g.dbfd, u->argp);
	return NULL;
}

/* a memslot change of uffd_round() */
struct uact {
	struct vm *vm;
	int act, tgt;
	volatile int done;
};

static void uffd_act(struct uact *a)
{
	switch (a->act) {
	case UA_FD:
		VM_CHECK(dup2(g.devnull, a->vm->fd) == a->vm->fd, "dup2");
		break;
	case UA_DELETE:
		vm_delete_slot(a->vm, a->tgt + 1);
		break;
	case UA_LOGOFF:
		vm_set_slot_flags(a->vm, a->tgt + 1, 0);
		break;
	case UA_MOVE:
		vm_move_slot(a->vm, a->tgt + 1, (40 + 8 * a->tgt) * MIB);
		break;
	case UA_SHRINK:
		vm_delete_slot(a->vm, a->tgt + 1);
		vm_add_slot(a->vm, a->tgt + 1, (16 + 8 * a->tgt) * MIB, 10, KVM_MEM_LOG_DIRTY_PAGES);
		break;
	}
	__atomic_store_n(&a->done, 1, __ATOMIC_RELEASE);
}

static void *uact_fn(void *a)
{
	uffd_act(a);
	return NULL;
}

/*
 * A call stalls on a userfaultfd page inside copy_from_user (the argument,
 * the ranges array or a bitmap); meanwhile the VM fd is replaced or the
 * memslot named changes; then the page arrives.  The result is exact.
 * The argument and the ranges are read before the ranges are validated,
 * so a memslot change during the stall decides the result; a bitmap is
 * read after, under kvm->slots_lock, so a memslot change then must wait
 * for the call (made from another thread: it completes after the call,
 * which succeeds).
 */
static void uffd_round(struct fctx *x, int ufd, uint8_t *u, uint8_t *src)
{
	int where = rnd(x, US_NR), act = rnd(x, UA_NR), tgt = rnd(x, 2), res;
	/* the module's struct: db_clear() reads it for KVM's ioctl, not KVM */
	if (where == US_ARG && !db_backend_is_module())
		where = US_RANGES;
	uint64_t b[2][2] = { { rng_next(&x->rng), rng_next(&x->rng) }, { rng_next(&x->rng), 0 } };
	static const uint64_t np[2] = { 128, 64 };
	struct kvm_dirtybatch_range rr[2];
	struct kvm_dirtybatch_clear cb, *c;
	struct uffdio_copy copy;
	struct uffd_msg msg;
	struct pollfd pfd = { .fd = ufd, .events = POLLIN };
	struct expect e = { .count = 2, .words = 3 };
	struct call cl = { .cls = C_UFFD };
	uint64_t want = 0, bm[2][2];
	struct ucall uc;
	struct uact ua;
	pthread_t th, ath;
	bool held;
	struct vm *X;
	int i, j;

	X = vm_create(true);
	vm_add_slot(X, 1, 16 * MIB, np[0], KVM_MEM_LOG_DIRTY_PAGES);
	vm_add_slot(X, 2, 24 * MIB, np[1], KVM_MEM_LOG_DIRTY_PAGES);
	rr[0] = (struct kvm_dirtybatch_range){ .slot = 1, .num_pages = np[0],
					       .dirty_bitmap = (uintptr_t)b[0] };
	rr[1] = (struct kvm_dirtybatch_range){ .slot = 2, .num_pages = np[1],
					       .dirty_bitmap = (uintptr_t)b[1] };
	cb = (struct kvm_dirtybatch_clear){ .vm_fd = X->fd, .count = 2, .range_size = RSIZE,
		.ranges = (uintptr_t)rr, .pages_cleared = SENT64, .error_index = SENT32 };
	memset(src, 0, PAGE_SIZE);
	uc.argp = &cb;
	switch (where) {
	case US_ARG:
		memcpy(src, &cb, sizeof(cb));
		uc.argp = u;
		break;
	case US_RANGES:
		memcpy(src, rr, sizeof(rr));
		cb.ranges = (uintptr_t)u;
		break;
	default:
		memcpy(src, b[tgt], sizeof(b[tgt]));
		rr[tgt].dirty_bitmap = (uintptr_t)u;
		break;
	}
	cl.c = cb;
	snprintf(cl.what, sizeof(cl.what), "uffd stall in %s, %s of slot %d",
		 where == US_ARG ? "argument" : where == US_RANGES ? "ranges" : "bitmap",
		 ua_name[act], tgt + 1);
	VM_CHECK(!pthread_create(&th, NULL, ucall_fn, &uc), "pthread_create");
	res = poll(&pfd, 1, 30000);
	if (res != 1 || read(ufd, &msg, sizeof(msg)) != sizeof(msg) ||
	    msg.event != UFFD_EVENT_PAGEFAULT) {
		VIOL(x, &cl, "the call did not fault on the userfaultfd page (poll %d)", res);
		copy = (struct uffdio_copy){ .dst = (uintptr_t)u, .src = (uintptr_t)src,
					     .len = PAGE_SIZE };
		ioctl(ufd, UFFDIO_COPY, &copy);
		pthread_join(th, NULL);
		vm_free(X);
		__atomic_store_n(&g.stop, 1, __ATOMIC_RELEASE);
		return;
	}
	/* the call sleeps in copy_from_user now */
	ua = (struct uact){ .vm = X, .act = act, .tgt = tgt };
	held = where == US_BITMAP && act != UA_NONE && act != UA_FD;
	if (held) {
		VM_CHECK(!pthread_create(&ath, NULL, uact_fn, &ua), "pthread_create");
		usleep(20000);
		if (__atomic_load_n(&ua.done, __ATOMIC_ACQUIRE))
			VIOL(x, &cl, "the memslot changed while the call read a bitmap of a validated range");
	} else {
		uffd_act(&ua);
	}
	copy = (struct uffdio_copy){ .dst = (uintptr_t)u, .src = (uintptr_t)src, .len = PAGE_SIZE };
	if (ioctl(ufd, UFFDIO_COPY, &copy))
		VIOL(x, &cl, "UFFDIO_COPY: %s", strerror(errno));
	pthread_join(th, NULL);
	if (held)
		pthread_join(ath, NULL);

	e.exact = true;
	e.out_written = true;
	if (act == UA_FD && where == US_ARG) {
		e.r = RS_EINVAL;		/* vm_fd is /dev/null by the time it is read */
		e.idx = -1;
		e.out_written = false;
	} else if (held) {
		e.r = RS_OK;		/* the memslot changed after the call */
		e.idx = 2;
		for (i = 0; i < 2; i++)
			want += __builtin_popcountll(b[i][0]) + (i ? 0 : __builtin_popcountll(b[i][1]));
	} else if (act == UA_DELETE || act == UA_LOGOFF) {
		e.r = RS_ENOENT;
		e.idx = tgt;
	} else if (act == UA_SHRINK) {
		e.r = RS_EINVAL;
		e.idx = tgt;
	} else {
		e.r = RS_OK;
		e.idx = 2;
		for (i = 0; i < 2; i++)
			want += __builtin_popcountll(b[i][0]) + (i ? 0 : __builtin_popcountll(b[i][1]));
	}
	c = uc.argp;
	res = r_of(uc.ret);
	if (res != e.r)
		VIOL(x, &cl, "got %s, expected %s", r_name[res], r_name[e.r]);
	else if (res == RS_OK && db_backend_has_stats() && c->pages_cleared != want)
		VIOL(x, &cl, "pages_cleared %llu, expected %llu",
		     (unsigned long long)c->pages_cleared, (unsigned long long)want);
	else if (e.out_written && c->error_index != (uint32_t)e.idx)
		VIOL(x, &cl, "error_index %u, expected %lld", c->error_index, (long long)e.idx);
	if (res == RS_OK && act != UA_FD) {
		for (i = 0; i < 2; i++) {
			if (held && i == tgt && act != UA_MOVE)
				continue;	/* gone, not logged or new since */
			memset(bm[i], 0, sizeof(bm[i]));
			vm_get_dirty_log(X, i + 1, bm[i]);
			for (j = 0; j < (int)(np[i] / 64); j++)
				if (bm[i][j] != ~b[i][j])
					VIOL(x, &cl, "slot %d word %d: 0x%llx in KVM, expected 0x%llx",
					     i + 1, j, (unsigned long long)bm[i][j],
					     (unsigned long long)~b[i][j]);
		}
	}
	count_stats(x, &cl, res, &e, res != RS_OK ? 0 : db_backend_has_stats() ?
		    c->pages_cleared : want, c->error_index);
	__atomic_fetch_add(&g.uffd_stalls[act], 1, __ATOMIC_RELAXED);
	if (held)
		__atomic_fetch_add(&g.uffd_waited, 1, __ATOMIC_RELAXED);
	vm_free(X);
	madvise(u, PAGE_SIZE, MADV_DONTNEED);	/* missing again */
}

static void *uffd_thread(void *arg)
{
	struct fctx *x = arg;
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg;
	uint8_t *u, *src;
	int ufd;

#ifdef DB_EMULATE
	/* the emulation reads user memory with process_vm_readv() */
	rc.uffd_skipped = true;
	return NULL;
#endif
	ufd = syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (ufd < 0 || ioctl(ufd, UFFDIO_API, &api)) {
		rc.uffd_skipped = true;
		return NULL;
	}
	u = mmap(NULL, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	src = aligned_alloc(PAGE_SIZE, PAGE_SIZE);
	VM_CHECK(u != MAP_FAILED && src, "mmap");
	reg = (struct uffdio_register){ .range = { .start = (uintptr_t)u, .len = PAGE_SIZE },
					.mode = UFFDIO_REGISTER_MODE_MISSING };
	if (ioctl(ufd, UFFDIO_REGISTER, &reg)) {
		rc.uffd_skipped = true;
		close(ufd);
		return NULL;
	}
	while (!__atomic_load_n(&g.stop, __ATOMIC_ACQUIRE))
		uffd_round(x, ufd, u, src);
	close(ufd);
	munmap(u, PAGE_SIZE);
	free(src);
	return NULL;
}

TEST_F_TIMEOUT(fuzz, races, 86400)
{
	uint64_t n = env_u64("KVM_DIRTYBATCH_FUZZ_RACE_CALLS", 20000);
	uint64_t secs = env_u64("KVM_DIRTYBATCH_FUZZ_RACE_SECONDS", 6);
	uint64_t seed, t0, deadline, seq0, seq1;
	pthread_t chaos[NR_CHAOS], slot_th, vm_th, flap_th, uffd_th;
	struct kvm_dirtybatch_stats s0, s1;
	struct stats tot = { 0 };
	uint64_t gpas[512];
	struct mslot *w;
	struct fctx *x;
	struct call cl;
	struct rng rng;
	char buf[256];
	int i;

#ifdef DB_EMULATE
	/* emul.c applies range by range: a racing memslot change splits a call */
	SKIP(return, "the emulation of the module is not atomic");
#endif
	seed = test_seed("fuzz races");
	t0 = now_ns();
	world_up(seed);
	rng_init(&rng, seed * 7 + 3);
	x = rc.model = ctx_new("races/model", seed, false);
	ASSERT_EQ(0, db_get_stats(g.dbfd, &s0));
	EXPECT_EQ(0, s0.live_allocs);
	flap_setup();

	/* S: churned memslots, and the vCPU writing into W_ID */
	g.S.racy = true;
	w = ms_find(&g.S, W_ID);
	w->exact = EX_WEAK;
	for (i = 0; i < 512; i++)
		gpas[i] = w->gpa + (uint64_t)i * PAGE_SIZE;
	guest_set_list(g.S.vm, gpas, 512, 0);
	seq0 = g.S.vm->ctrl->seq;
	vcpu_start(g.S.vm);

	for (i = 0; i < NR_CVM; i++) {
		rc.c[i] = make_cvm(&rng, i == 1);
		rc.cfd[i] = rc.c[i]->fd;
	}
	for (i = 0; i < NR_CHAOS; i++) {
		rc.chaos[i] = ctx_new(i ? "races/chaos1" : "races/chaos0",
				      seed * 131 + i + 1, true);
		ASSERT_EQ(0, pthread_create(&chaos[i], NULL, chaos_thread, rc.chaos[i]));
	}
	rc.uffd = ctx_new("races/uffd", seed * 17 + 5, false);
	ASSERT_EQ(0, pthread_create(&slot_th, NULL, slot_churn_thread, (void *)(uintptr_t)(seed + 11)));
	ASSERT_EQ(0, pthread_create(&vm_th, NULL, vm_churn_thread, (void *)(uintptr_t)(seed + 13)));
	ASSERT_EQ(0, pthread_create(&flap_th, NULL, flap_thread, (void *)(uintptr_t)(seed + 17)));
	ASSERT_EQ(0, pthread_create(&uffd_th, NULL, uffd_thread, rc.uffd));

	deadline = t0 + secs * 1000000000ULL;
	while (!__atomic_load_n(&g.stop, __ATOMIC_ACQUIRE)) {
		uint64_t all = x->st.calls;

		for (i = 0; i < NR_CHAOS; i++)
			all += __atomic_load_n(&rc.chaos[i]->st.calls, __ATOMIC_RELAXED);
		if (all >= n || now_ns() > deadline)
			break;
		if (one_in(x, 150)) {
			refill(x, true);
			continue;
		}
		gen_call(x, &cl);
		run_call(x, &cl);
		if (x->st.calls % 1024 == 0)
			verify_all(x);
	}
	__atomic_store_n(&g.stop, 1, __ATOMIC_RELEASE);
	for (i = 0; i < NR_CHAOS; i++)
		pthread_join(chaos[i], NULL);
	pthread_join(slot_th, NULL);
	pthread_join(vm_th, NULL);
	pthread_join(flap_th, NULL);
	pthread_join(uffd_th, NULL);
	seq1 = g.S.vm->ctrl->seq;
	vcpu_stop(g.S.vm);
	verify_all(x);

	stats_add(&tot, &x->st);
	for (i = 0; i < NR_CHAOS; i++)
		stats_add(&tot, &rc.chaos[i]->st);
	stats_add(&tot, &rc.uffd->st);

	/* every call of every thread is in the module counters, once */
	ASSERT_EQ(0, db_get_stats(g.dbfd, &s1));
	/* (the module's counters: KVM's ioctl has none) */
#define CK(f, v) do {								\
	if (db_backend_has_stats() && s1.f - s0.f != (v)) {			\
		VIOL(x, NULL, "counter " #f " moved by %llu, the threads saw %llu",	\
		     (unsigned long long)(s1.f - s0.f), (unsigned long long)(v));	\
		tot.violations++;						\
	}									\
} while (0)
	CK(calls, tot.ok);
	CK(failed_calls, tot.failed);
	CK(ranges, tot.ranges);
	CK(pages_cleared, tot.pages);
	tot.breaks = s1.lock_breaks - s0.lock_breaks;	/* by contention: not predicted */
	CK(mmu_lock_holds, tot.holds + tot.breaks);
	CK(tlb_flushes, tot.flushes);
	CK(dirty_log_syncs, tot.syncs);
#undef CK
	if (db_backend_has_stats() && tot.breaks > tot.words) {
		VIOL(x, NULL, "lock_breaks moved by %llu, more than the %llu bitmap words of the calls",
		     (unsigned long long)tot.breaks, (unsigned long long)tot.words);
		tot.violations++;
	}
	if (s1.live_allocs) {
		VIOL(x, NULL, "live_allocs %llu with no call in flight",
		     (unsigned long long)s1.live_allocs);
		tot.violations++;
	}
	for (i = 0; i < NR_CVM; i++)
		vm_free(rc.c[i]);
	world_down();
	g.dbfd = db_open();
	ASSERT_LE(0, g.dbfd);
	ASSERT_EQ(0, db_get_stats(g.dbfd, &s1));
	if (s1.live_allocs) {
		VIOL(x, NULL, "live_allocs %llu after every VM and fd is closed",
		     (unsigned long long)s1.live_allocs);
		tot.violations++;
	}

	report("races", &tot, seed, (now_ns() - t0) / 1e9);
	snprintf(buf, sizeof(buf), "uffd stalls:");
	for (i = 0; i < UA_NR; i++)
		snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), " %s=%llu", ua_name[i],
			 (unsigned long long)g.uffd_stalls[i]);
	snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf),
		 " (%llu in a bitmap read: the memslot change waited)",
		 (unsigned long long)g.uffd_waited);
	ksft_print_msg("fuzz-summary: races model=%llu chaos=%llu+%llu uffd=%llu memslot_ops=%llu vm_recreates=%llu vm_fd_closes=%llu mprotect_flips=%llu guest_writes=%llu %s%s\n",
		       (unsigned long long)x->st.calls,
		       (unsigned long long)rc.chaos[0]->st.calls,
		       (unsigned long long)rc.chaos[1]->st.calls,
		       (unsigned long long)rc.uffd->st.calls,
		       (unsigned long long)g.slot_ops, (unsigned long long)g.vm_recreates,
		       (unsigned long long)g.fd_closes, (unsigned long long)g.flips,
		       (unsigned long long)(uint32_t)(seq1 - seq0), buf,
		       rc.uffd_skipped ? " (userfaultfd unavailable)" : "");
	if (db_backend_has_stats())
		report_module("races", g.dbfd);
	close(g.dbfd);
	EXPECT_EQ(0, tot.violations);
	EXPECT_LT(0, tot.ok);
}

DIRTYBATCH_TEST_MAIN(true)
