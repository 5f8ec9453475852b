// SPDX-License-Identifier: GPL-2.0
/*
 * dirtybatch_migration_bench: QEMU's migration bitmap sync, four ways.
 *
 * A VM (selftests/kvm_dirtybatch/vm.[ch], the flat 32-bit guest loop of
 * guest_code.S) has a QEMU-like memory map: guest RAM over a few large
 * memslots and many small ones (ROM, flash, device memory) whose sizes are
 * not multiples of 64 pages.  Its vCPUs keep writing a fixed set of pages.
 * The host plays QEMU's migration thread, round after round:
 *
 *   1. pause the vCPUs (only so that the check below reads stable pages),
 *      KVM_GET_DIRTY_LOG of every memslot, check that every page whose
 *      content changed since it was last "sent" is dirty (no lost page),
 *      resume the vCPUs;
 *   2. clear the dirty bits of the clear requests ("runs": slot-relative
 *      page ranges whose starts are not 64-page aligned), timed, with one
 *      strategy, while the vCPUs keep writing:
 *        per-page  one KVM_CLEAR_DIRTY_LOG per dirty page (QEMU before its
 *                  commit e8a6d158dbfa, for ranges not 64-page aligned)
 *        merged    one KVM_CLEAR_DIRTY_LOG per run (QEMU after it)
 *        batched   libdirtybatch with /dev/kvm_dirtybatch: all runs of all
 *                  memslots in one KVM_DIRTYBATCH_CLEAR
 *        floor     one KVM_CLEAR_DIRTY_LOG per memslot, with the same bits
 *                  (KVM's own best case)
 *        fallback  libdirtybatch without the module (merged ioctls)
 *   3. "send" the cleared pages (copy them), stay busy to the end of the
 *      throughput window (see window_ns), then let every vCPU complete a
 *      full pass over its pages, so the next sync sees all of them dirty.
 *
 * The strategies take turns on the same VM, round-robin in an order that
 * rotates every cycle, and every round clears the same set of dirty pages.
 * Counted per round: ioctls (here), MMU-lock holds (one per
 * KVM_CLEAR_DIRTY_LOG, which takes the lock unconditionally; the module's
 * counters for batched), lock breaks (module), TLB flushes (KVM's
 * remote_tlb_flush_requests statistic; for batched it must equal the
 * module's tlb_flushes counter, see cross_check()), pages cleared, and the
 * vCPUs' page writes per second over
 * a window of the same length for every strategy that starts with the
 * clear (and, for information, over the clear alone).  No timed
 * assertions: the exit status is 3 if a page was lost, with
 * --check-counters 5 if KVM's statistics and the module's counters
 * disagree, 0 otherwise (also when a target is missed).
 *
 * --svg CSV OUT renders the bar chart of a summary CSV and exits.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <linux/kvm_dirtybatch.h>

#include "dirtybatch.h"
#include "vm.h"

#define MIB		(1ULL << 20)
#define CTRL_SLOT	1		/* control pages of vCPUs 1.., not logged */
#define CTRL_GPA	0x100000ULL
#define CTRL_STRIDE	32		/* pages per extra vCPU: ctrl + list */
#define FIRST_ID	10		/* first dirty-logged memslot id */
#define RAM_GPA		0x1000000ULL	/* 16 MiB */
#define GPA_LIMIT	0xf0000000ULL	/* below the TSS and 4 GiB */
#define MAX_LOGGED	(VM_MAX_SLOTS - 2)
#define MAX_VCPUS	16
#define EXIT_LOST	3
#define EXIT_SKIP	4
#define EXIT_COUNTERS	5

enum strat { S_PERPAGE, S_MERGED, S_BATCHED, S_FLOOR, S_FALLBACK, NSTRAT };
static const char *const strat_name[NSTRAT] = {
	"per-page", "merged", "batched", "floor", "fallback",
};

struct opts {
	unsigned int vcpus, mem_mib, ram_slots, slots, runs, rounds, dirty;
	unsigned int warmup, budget, window_ms;
	uint64_t seed;
	bool host, check_counters;
	const char *strategies, *label;
} opt = {
	.vcpus = 2, .mem_mib = 512, .ram_slots = 3, .slots = 24, .runs = 256,
	.rounds = 15, .dirty = 512, .warmup = 1, .seed = 1,
};

/* ------------------------------------------------------------------ */
/* Small helpers                                                      */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static uint64_t t_start;

/* Progress and informational lines, flushed at once (the guest runner
 * forwards our stdout as it comes). */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;

	printf("[%5.1fs] ", (now_ns() - t_start) / 1e9);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static __attribute__((noreturn, format(printf, 1, 2))) void fail(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "migration_bench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static uint64_t rs;

static uint64_t rnd(void)
{
	uint64_t z = (rs += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

static void *zalloc(size_t n)
{
	void *p = calloc(1, n ? n : 1);

	if (!p)
		fail("out of memory (%zu bytes)", n);
	return p;
}

/* Mask of bits lo..hi-1 of a 64-bit word, 0 <= lo < hi <= 64. */
static uint64_t bits(unsigned int lo, unsigned int hi)
{
	uint64_t m = hi >= 64 ? ~0ULL : (1ULL << hi) - 1;

	return m & ~((1ULL << lo) - 1);
}

/* ------------------------------------------------------------------ */
/* Layout                                                             */

struct bslot {
	uint32_t id;
	bool ram;
	uint64_t gpa, npages, nwords;
	uint8_t *hva;
	uint64_t *log;		/* KVM_GET_DIRTY_LOG of this round */
	uint64_t *runmask;	/* pages covered by runs */
	uint64_t *scratch;	/* bitmaps built for the ioctls */
	unsigned int nruns;
};

struct run {
	unsigned int s;		/* index into slots[] */
	uint64_t start, len;
};

struct tpage {			/* a page the vCPUs write */
	unsigned int s;
	uint64_t page;
	uint8_t *hva, *sent;
	int last;		/* strategy that cleared it last, -1 none */
};

struct bvcpu {
	int fd;
	struct kvm_run *run;
	size_t run_size;
	struct guest_ctrl *ctrl;
	uint32_t *list;
	pthread_t thread;
	uint32_t seq0, done0;
};

static struct vm *vm;
static struct bslot slots[MAX_LOGGED];
static unsigned int nslots;
static struct run *runs;
static unsigned int nruns;
static struct tpage *tp;
static unsigned int ntp;
static struct bvcpu vcpus[MAX_VCPUS];
static struct dirtybatch_ctx *ctx;
static int dbfd = -1;

/* Sizes (pages) of the small memslots: ROMs, flash, VGA, device memory;
 * none a multiple of 64.  480 pages = the 1,966,080-byte flash region of
 * the production case. */
static const uint32_t small_sizes[] = {
	480, 129, 4095, 257, 33, 100, 1000, 2047, 65, 191, 769, 3001, 47, 513,
	160, 1531, 97, 2500, 385, 1025, 31, 700, 1999, 450, 127, 900, 333,
	1500, 210, 59,
};

static uint64_t small_size(unsigned int k)
{
	const unsigned int n = sizeof(small_sizes) / sizeof(small_sizes[0]);
	uint64_t sz = small_sizes[k % n] + 7 * (k / n);

	return sz % 64 ? sz : sz + 1;
}

static void build_layout(void)
{
	uint64_t ram_pages = (uint64_t)opt.mem_mib * MIB / PAGE_SIZE, gpa = RAM_GPA;
	unsigned int i, k;

	nslots = opt.slots;
	for (i = 0; i < nslots; i++) {
		struct bslot *s = &slots[i];

		s->id = FIRST_ID + i;
		s->ram = i < opt.ram_slots;
		if (s->ram) {
			/* the first RAM slot holds half, the others share the rest */
			uint64_t n = i == 0 ? ram_pages / 2 :
				     ram_pages / 2 / (opt.ram_slots - 1);

			if (opt.ram_slots == 1)
				n = ram_pages;
			s->npages = n > 512 ? n & ~511ULL : n;
		} else {
			s->npages = small_size(i - opt.ram_slots);
		}
		gpa = (gpa + 2 * MIB - 1) & ~(2 * MIB - 1);
		s->gpa = gpa;
		gpa += s->npages * PAGE_SIZE;
		if (gpa > GPA_LIMIT)
			fail("layout does not fit below 0x%llx: use less --mem or fewer --slots",
			     GPA_LIMIT);
		s->nwords = (s->npages + 63) / 64;
		s->log = zalloc(s->nwords * 8);
		s->runmask = zalloc(s->nwords * 8);
		s->scratch = zalloc(s->nwords * 8);
	}

	/* Runs: one per small slot, the rest spread over RAM by size. */
	runs = zalloc(sizeof(*runs) * opt.runs);
	{
		unsigned int small = nslots - opt.ram_slots, left;
		uint64_t total_ram = 0;

		for (i = opt.ram_slots; i < nslots && i - opt.ram_slots < opt.runs; i++)
			slots[i].nruns = 1;
		left = opt.runs > small ? opt.runs - small : 0;
		for (i = 0; i < opt.ram_slots; i++)
			total_ram += slots[i].npages;
		for (i = 0; i < opt.ram_slots && left; i++) {
			uint64_t n = i + 1 == opt.ram_slots ? left :
				     (uint64_t)(opt.runs - small) * slots[i].npages / total_ram;

			if (n > left)
				n = left;
			if (n > slots[i].npages / 128)
				n = slots[i].npages / 128;
			slots[i].nruns = n;
			left -= n;
		}
		if (left)
			fail("%u runs do not fit: use more --mem or fewer --runs", opt.runs);
	}
	for (i = 0; i < nslots; i++) {
		struct bslot *s = &slots[i];
		uint64_t seg = s->nruns ? s->npages / s->nruns : 0;

		for (k = 0; k < s->nruns; k++) {
			uint64_t a = k * seg, b = k + 1 == s->nruns ? s->npages : a + seg;
			uint64_t len = b - a, head, start, tail, p;
			struct run *r = &runs[nruns++];

			/* misaligned start within the first 64 pages (or quarter) */
			head = 1 + below(len / 4 < 63 ? (len / 4 ? len / 4 : 1) : 63);
			start = a + head;
			if (start % 64 == 0)
				start++;
			tail = below(len / 8 + 1);
			if (start + tail >= b)
				tail = 0;
			if (start >= b)
				fail("slot of %llu pages too small for a run",
				     (unsigned long long)s->npages);
			r->s = i;
			r->start = start;
			r->len = b - tail - start;
			for (p = r->start; p < r->start + r->len; p++)
				set_bit64(s->runmask, p);
		}
	}
}

/* The pages the vCPUs write: opt.dirty of them, spread evenly over runs. */
static void build_pages(void)
{
	unsigned int i, j, k;

	tp = zalloc(sizeof(*tp) * opt.dirty);
	for (i = 0; i < nruns; i++) {
		struct run *r = &runs[i];
		struct bslot *s = &slots[r->s];
		uint64_t want = opt.dirty / nruns + (i < opt.dirty % nruns);

		if (want > r->len)
			want = r->len;
		for (j = 0; j < want; j++) {
			uint64_t p;

			do
				p = r->start + below(r->len);
			while (test_bit64(s->scratch, p));
			set_bit64(s->scratch, p);
			tp[ntp++] = (struct tpage){ .s = r->s, .page = p, .last = -1,
				.hva = s->hva + p * PAGE_SIZE };
		}
	}
	for (i = 0; i < nslots; i++)
		memset(slots[i].scratch, 0, slots[i].nwords * 8);
	for (i = 0; i < ntp; i++) {
		tp[i].sent = aligned_alloc(64, PAGE_SIZE);
		if (!tp[i].sent)
			fail("out of memory");
	}
	/* shuffle, so each vCPU's list jumps around like real dirtying */
	for (i = ntp; i > 1; i--) {
		struct tpage t;

		k = below(i);
		t = tp[i - 1];
		tp[i - 1] = tp[k];
		tp[k] = t;
	}
}

/* ------------------------------------------------------------------ */
/* vCPUs: vCPU 0 is the helper's own; the others run the same guest    */
/* code with their control page in CTRL_SLOT.                          */

static void *extra_vcpu_thread(void *arg)
{
	struct bvcpu *v = arg;

	for (;;) {
		if (ioctl(v->fd, KVM_RUN, 0)) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			fail("KVM_RUN: %s", strerror(errno));
		}
		if (v->run->exit_reason == KVM_EXIT_INTR)
			continue;
		if (v->run->exit_reason == KVM_EXIT_IO &&
		    v->run->io.port == GUEST_EXIT_PORT &&
		    v->run->io.direction == KVM_EXIT_IO_OUT)
			return NULL;
		fail("extra vCPU: unexpected exit %u", v->run->exit_reason);
	}
}

static void setup_vcpus(void)
{
	struct kvm_sregs s0, s;
	struct kvm_regs regs;
	uint8_t *ctrl_hva = NULL;
	unsigned int i, n, per;

	vm_create_vcpu(vm);
	vcpus[0].ctrl = vm->ctrl;
	vcpus[0].list = vm->list;
	if (opt.vcpus > 1)
		ctrl_hva = vm_add_slot(vm, CTRL_SLOT, CTRL_GPA,
				       (uint64_t)CTRL_STRIDE * (opt.vcpus - 1), 0);
	if (ioctl(vm->vcpu->fd, KVM_GET_SREGS, &s0))
		fail("KVM_GET_SREGS: %s", strerror(errno));
	for (i = 1; i < opt.vcpus; i++) {
		struct bvcpu *v = &vcpus[i];
		uint64_t gpa = CTRL_GPA + (uint64_t)(i - 1) * CTRL_STRIDE * PAGE_SIZE;
		int sz;

		v->ctrl = (struct guest_ctrl *)(ctrl_hva + (gpa - CTRL_GPA));
		v->list = (uint32_t *)((uint8_t *)v->ctrl + PAGE_SIZE);
		v->ctrl->list_gpa = gpa + PAGE_SIZE;
		v->fd = ioctl(vm->fd, KVM_CREATE_VCPU, i);
		if (v->fd < 0)
			fail("KVM_CREATE_VCPU %u: %s", i, strerror(errno));
		sz = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
		v->run_size = sz;
		v->run = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
		if (v->run == MAP_FAILED)
			fail("mmap kvm_run: %s", strerror(errno));
		/* vCPU 0's flat protected mode, this vCPU's own APIC state */
		if (ioctl(v->fd, KVM_GET_SREGS, &s))
			fail("KVM_GET_SREGS: %s", strerror(errno));
		s.cs = s0.cs; s.ds = s0.ds; s.es = s0.es; s.ss = s0.ss;
		s.fs = s0.fs; s.gs = s0.gs;
		s.cr0 = s0.cr0; s.cr4 = s0.cr4; s.efer = s0.efer;
		if (ioctl(v->fd, KVM_SET_SREGS, &s))
			fail("KVM_SET_SREGS: %s", strerror(errno));
		memset(&regs, 0, sizeof(regs));
		regs.rip = SYS_CODE_GPA;
		regs.rflags = 0x2;
		regs.rsi = gpa;
		if (ioctl(v->fd, KVM_SET_REGS, &regs))
			fail("KVM_SET_REGS: %s", strerror(errno));
	}
	/* deal the pages to the vCPUs */
	per = (ntp + opt.vcpus - 1) / opt.vcpus;
	if (per > SYS_LIST_MAX)
		fail("--dirty %u: at most %lu pages per vCPU", opt.dirty,
		     (unsigned long)SYS_LIST_MAX);
	for (i = 0; i < opt.vcpus; i++) {
		struct bvcpu *v = &vcpus[i];

		for (n = 0; i + n * opt.vcpus < ntp; n++) {
			struct tpage *t = &tp[i + n * opt.vcpus];

			v->list[n] = (uint32_t)(slots[t->s].gpa + t->page * PAGE_SIZE);
		}
		v->ctrl->nr = n;
		v->ctrl->passes = 0;
		v->ctrl->done = 0;
		v->ctrl->seq = 0;
		v->ctrl->stop = 0;
	}
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

static void start_vcpus(void)
{
	unsigned int i;

	vcpu_start(vm);
	for (i = 1; i < opt.vcpus; i++)
		if (pthread_create(&vcpus[i].thread, NULL, extra_vcpu_thread, &vcpus[i]))
			fail("pthread_create");
}

static void stop_vcpus(void)
{
	unsigned int i;

	for (i = 1; i < opt.vcpus; i++)
		__atomic_store_n(&vcpus[i].ctrl->stop, 1, __ATOMIC_SEQ_CST);
	vcpu_stop(vm);
	for (i = 1; i < opt.vcpus; i++)
		pthread_join(vcpus[i].thread, NULL);
}

static void pause_all(void)
{
	uint64_t t0 = now_ns();
	unsigned int i, spins = 0;

	for (i = 0; i < opt.vcpus; i++) {
		struct guest_ctrl *c = vcpus[i].ctrl;

		__atomic_store_n(&c->pause_gen, c->pause_gen | 1, __ATOMIC_SEQ_CST);
	}
	for (i = 0; i < opt.vcpus; i++) {
		struct guest_ctrl *c = vcpus[i].ctrl;

		while (__atomic_load_n(&c->pause_ack, __ATOMIC_ACQUIRE) != c->pause_gen) {
			if (++spins > 100)
				usleep(20);
			else
				sched_yield();
			if (now_ns() - t0 > 60 * 1000000000ULL)
				fail("vCPU %u did not acknowledge the pause", i);
		}
	}
}

static void resume_all(void)
{
	unsigned int i;

	for (i = 0; i < opt.vcpus; i++) {
		struct guest_ctrl *c = vcpus[i].ctrl;

		__atomic_store_n(&c->pause_gen, c->pause_gen + 1, __ATOMIC_SEQ_CST);
	}
}

static uint64_t stores(void)	/* since the last mark_stores() */
{
	uint64_t n = 0;
	unsigned int i;

	for (i = 0; i < opt.vcpus; i++)
		n += (uint32_t)(__atomic_load_n(&vcpus[i].ctrl->seq, __ATOMIC_RELAXED) -
				vcpus[i].seq0);
	return n;
}

static void mark_stores(void)
{
	unsigned int i;

	for (i = 0; i < opt.vcpus; i++) {
		vcpus[i].seq0 = __atomic_load_n(&vcpus[i].ctrl->seq, __ATOMIC_RELAXED);
		vcpus[i].done0 = __atomic_load_n(&vcpus[i].ctrl->done, __ATOMIC_RELAXED);
	}
}

/*
 * Wait until every vCPU has completed a whole pass over its pages that
 * started after the mark: then every page it writes is dirty again.
 * Returns false on timeout.
 */
static bool wait_full_pass(void)
{
	uint64_t t0 = now_ns();
	unsigned int i, spins = 0;

	for (i = 0; i < opt.vcpus; i++) {
		while ((uint32_t)(__atomic_load_n(&vcpus[i].ctrl->done, __ATOMIC_RELAXED) -
				  vcpus[i].done0) < 2) {
			if (now_ns() - t0 > 20 * 1000000000ULL)
				return false;
			if (++spins > 100)
				usleep(50);
			else
				sched_yield();
		}
	}
	return true;
}

/*
 * After a resume, wait until every vCPU is back in its store loop (a pass
 * worth of stores), so that each clear phase starts with the vCPUs running
 * at full speed, however short the phase is.
 */
static void wait_running(void)
{
	uint64_t t0 = now_ns();
	unsigned int i;

	mark_stores();
	for (i = 0; i < opt.vcpus; i++)
		while ((uint32_t)(__atomic_load_n(&vcpus[i].ctrl->seq, __ATOMIC_RELAXED) -
				  vcpus[i].seq0) < vcpus[i].ctrl->nr + 64 &&
		       now_ns() - t0 < 5000000000ULL)
			sched_yield();
}

/* ------------------------------------------------------------------ */
/* Counters                                                           */

/* vCPU 0 statistics shown per strategy with --verbose */
static const char *const vstat_names[] = {
	"exits", "pf_taken", "pf_fast", "pf_fixed", "pf_spurious", "tlb_flush",
	"irq_exits", "halt_exits", "signal_exits", "directed_yield_attempted",
};
#define NVSTAT (sizeof(vstat_names) / sizeof(vstat_names[0]))
static bool verbose;

struct counters {
	uint64_t kvm_flush_req, kvm_flush, exits, pf;
	uint64_t vstat[NVSTAT];
	struct kvm_dirtybatch_stats mod;
};

/*
 * KVM's VM statistic remote_tlb_flush_requests is incremented on entry to
 * kvm_flush_remote_tlbs() (virt/kvm/kvm_main.c, 6.1 and 6.12), the
 * function the module calls once per clear: it counts every flush.
 * remote_tlb_flush is only the fallback for kernels without it (before
 * 5.15): it counts the flushes that had to kick a vCPU out of guest mode,
 * often none, so it is no count of flushes and is never cross-checked.
 * A statistic that could be read once and then cannot is an error: the
 * two counters must not be mixed within a run.
 */
static bool have_flush_req = true, have_flush = true, counters_read;

static void read_flush_stat(const char *name, bool *have, uint64_t *val)
{
	int r;

	if (!*have)
		return;
	r = vm_read_stat(vm, false, name, val);
	if (r && counters_read)
		fail("reading KVM's %s statistic: %s", name, strerror(-r));
	if (r)
		*have = false;
}

static void read_counters(struct counters *c)
{
	memset(c, 0, sizeof(*c));
	read_flush_stat("remote_tlb_flush_requests", &have_flush_req, &c->kvm_flush_req);
	read_flush_stat("remote_tlb_flush", &have_flush, &c->kvm_flush);
	counters_read = true;
	/* vCPU 0's exits and page faults (KVM's binary stats) */
	if (vm_read_stat(vm, true, "exits", &c->exits))
		c->exits = 0;
	if (vm_read_stat(vm, true, "pf_taken", &c->pf))
		c->pf = 0;
	if (verbose) {
		unsigned int i;

		for (i = 0; i < NVSTAT; i++)
			if (vm_read_stat(vm, true, vstat_names[i], &c->vstat[i]))
				c->vstat[i] = 0;
	}
	if (dbfd >= 0 && ioctl(dbfd, KVM_DIRTYBATCH_GET_STATS, &c->mod))
		fail("KVM_DIRTYBATCH_GET_STATS: %s", strerror(errno));
}

/*
 * Every batched clear (warm-up rounds included), KVM's and the module's
 * counters over the same interval: the TLB flushes KVM counted
 * (remote_tlb_flush_requests) must be the ones the module says it issued
 * (tlb_flushes), and the module's calls and pages cleared must be the
 * library's ioctls and pages.  Nothing else flushes this VM's TLBs during
 * a clear (the per-page, merged and floor rounds show exactly one KVM
 * flush per ioctl), so the counts are equal, not merely close.
 */
static unsigned int xcheck_rounds, xcheck_bad;
static uint64_t xcheck_kvm, xcheck_mod, xcheck_kick;
static char xcheck_first[256];

static void cross_check(const struct counters *c0, const struct counters *c1,
			uint64_t ioctls, uint64_t pages)
{
	uint64_t kvm = c1->kvm_flush_req - c0->kvm_flush_req;
	uint64_t mod = c1->mod.tlb_flushes - c0->mod.tlb_flushes;
	uint64_t calls = c1->mod.calls - c0->mod.calls;
	uint64_t mpages = c1->mod.pages_cleared - c0->mod.pages_cleared;
	char why[200] = "";

	xcheck_rounds++;
	xcheck_kvm += kvm;
	xcheck_mod += mod;
	xcheck_kick += c1->kvm_flush - c0->kvm_flush;
	if (!have_flush_req)
		snprintf(why, sizeof(why), "KVM has no remote_tlb_flush_requests statistic");
	else if (kvm != mod)
		snprintf(why, sizeof(why), "KVM counted %llu TLB flush requests, the module %llu TLB flushes",
			 (unsigned long long)kvm, (unsigned long long)mod);
	else if (calls != ioctls)
		snprintf(why, sizeof(why), "the module counted %llu calls for the library's %llu ioctls",
			 (unsigned long long)calls, (unsigned long long)ioctls);
	else if (mpages != pages)
		snprintf(why, sizeof(why), "the module counted %llu pages cleared, the library %llu",
			 (unsigned long long)mpages, (unsigned long long)pages);
	if (!why[0])
		return;
	if (!xcheck_bad++)
		snprintf(xcheck_first, sizeof(xcheck_first), "batched clear %u: %s",
			 xcheck_rounds, why);
	say("COUNTERS DISAGREE: batched clear %u: %s", xcheck_rounds, why);
}

struct sstats {
	unsigned int n;
	uint64_t *ns;		/* clear time per round */
	double *wgps;		/* guest pages/s over each round's window */
	uint64_t ioctls, holds, breaks, flushes, mod_flushes, pages, stores;
	uint64_t clear_ns, lost, short_waits, exits, pf, vstat[NVSTAT];
	uint64_t win_ns, win_stores, over_window;
	bool exact;		/* pages are the module's exact count */
	double median_us, p99_us, ratio, gps, gps_clear;
};

static struct sstats st[NSTRAT];

/* Variance of the mean of a strategy's per-round guest pages/s. */
static double var_of_mean(const struct sstats *S)
{
	double m = 0, v = 0;
	unsigned int i;

	if (S->n < 2)
		return 0;
	for (i = 0; i < S->n; i++)
		m += S->wgps[i];
	m /= S->n;
	for (i = 0; i < S->n; i++)
		v += (S->wgps[i] - m) * (S->wgps[i] - m);
	return v / (S->n - 1) / S->n;
}
static bool enabled[NSTRAT];
static int order[NSTRAT], norder;

/*
 * The guest's dirtying throughput is measured over a window of the same
 * length for every strategy, starting when the clear starts: window_ns,
 * set from the warm-up (the longest clear + send, plus a quarter) unless
 * --window-ms gives it.  A clear is a fixed amount of work for the vCPUs
 * (one write-protection fault per page cleared, whatever the strategy),
 * so a rate over the clear alone would charge a short clear with the same
 * faults over less time; over equal windows, the strategy that costs the
 * guest more shows a lower rate.  The migration thread stays busy for
 * the whole window (as QEMU's is, sending pages), so that a strategy that
 * ends early does not hand the vCPUs extra CPU time.
 */
static uint64_t window_ns, busy_max_ns;

/* ------------------------------------------------------------------ */
/* The strategies.  Each clears exactly the bits of the dirty log that */
/* lie in runs; returns the ioctls issued, adds the pages requested.   */

static void clear_one(uint32_t id, uint64_t first, uint64_t num, const void *bm)
{
	int r = vm_clear_dirty_log_try(vm, id, first, num, bm);

	if (r)
		fail("KVM_CLEAR_DIRTY_LOG slot %u first %llu num %llu: %s", id,
		     (unsigned long long)first, (unsigned long long)num, strerror(-r));
}

/* Bits of run r in word w (absolute word index in the slot). */
static uint64_t run_word_mask(const struct run *r, uint64_t w)
{
	uint64_t lo = w * 64, hi = lo + 64, end = r->start + r->len;
	uint64_t a = r->start > lo ? r->start : lo, b = end < hi ? end : hi;

	return a >= b ? 0 : bits(a - lo, b - lo);
}

static uint64_t do_perpage(uint64_t *pages)
{
	uint64_t n = 0;
	unsigned int i;

	for (i = 0; i < nruns; i++) {
		const struct run *r = &runs[i];
		const struct bslot *s = &slots[r->s];
		uint64_t w, w0 = r->start / 64, w1 = (r->start + r->len - 1) / 64;

		for (w = w0; w <= w1; w++) {
			uint64_t m = s->log[w] & run_word_mask(r, w);

			while (m) {
				unsigned int b = __builtin_ctzll(m);
				uint64_t one = 1ULL << b, first = w * 64;
				uint64_t num = s->npages - first < 64 ? s->npages - first : 64;

				m &= m - 1;
				clear_one(s->id, first, num, &one);
				n++;
				(*pages)++;
			}
		}
	}
	return n;
}

static uint64_t do_merged(uint64_t *pages)
{
	uint64_t n = 0;
	unsigned int i;

	for (i = 0; i < nruns; i++) {
		const struct run *r = &runs[i];
		struct bslot *s = &slots[r->s];
		uint64_t w, w0 = r->start / 64, w1 = (r->start + r->len - 1) / 64;
		uint64_t first = w0 * 64, num = (w1 + 1) * 64 - first;

		/* as kvm_log_clear_one_slot(): start rounded down to 64
		 * pages, size up to 64 pages or to the memslot end */
		if (first + num > s->npages)
			num = s->npages - first;
		for (w = w0; w <= w1; w++) {
			s->scratch[w - w0] = s->log[w] & run_word_mask(r, w);
			*pages += __builtin_popcountll(s->scratch[w - w0]);
		}
		clear_one(s->id, first, num, s->scratch);
		n++;
	}
	return n;
}

static uint64_t do_floor(uint64_t *pages)
{
	uint64_t n = 0, w;
	unsigned int i;

	for (i = 0; i < nslots; i++) {
		struct bslot *s = &slots[i];

		if (!s->nruns)
			continue;
		for (w = 0; w < s->nwords; w++) {
			s->scratch[w] = s->log[w] & s->runmask[w];
			*pages += __builtin_popcountll(s->scratch[w]);
		}
		clear_one(s->id, 0, s->npages, s->scratch);
		n++;
	}
	return n;
}

static uint64_t do_library(uint64_t *pages, bool *exact)
{
	struct dirtybatch_result res = { .sz = sizeof(res) };
	unsigned int i;
	int64_t r;

	for (i = 0; i < nruns; i++) {
		const struct run *rn = &runs[i];
		const struct bslot *s = &slots[rn->s];
		int e = dirtybatch_add_bitmap(ctx, s->id, rn->start, rn->len,
					      s->log, rn->start);

		if (e)
			fail("dirtybatch_add_bitmap: %s", strerror(-e));
	}
	r = dirtybatch_submit(ctx, &res);
	if (r < 0)
		fail("dirtybatch_submit: %s", strerror((int)-r));
	*pages += res.pages_cleared;
	*exact = res.flags & DIRTYBATCH_RESULT_CLEARED_EXACT;
	return res.ioctls;
}

/* ------------------------------------------------------------------ */
/* One round                                                          */

static uint64_t checked_pages;

/* Steps 1 and 3 around the timed clear; see the top of the file. */
static void round_once(enum strat sx, bool record)
{
	struct sstats *S = &st[sx];
	struct counters c0, c1;
	uint64_t t0, t1, t2, ioctls = 0, pages = 0, lost = 0, n_st, n_win;
	bool exact = false, ok;
	unsigned int i;

	pause_all();
	for (i = 0; i < nslots; i++)
		vm_get_dirty_log(vm, slots[i].id, slots[i].log);
	for (i = 0; i < ntp; i++) {
		struct tpage *t = &tp[i];

		if (!memcmp(t->hva, t->sent, PAGE_SIZE))
			continue;
		checked_pages++;
		if (test_bit64(slots[t->s].log, t->page))
			continue;
		if (lost < 5)
			say("LOST: slot %u page %llu changed but is clean (last cleared by %s)",
			    slots[t->s].id, (unsigned long long)t->page,
			    t->last >= 0 ? strat_name[t->last] : "-");
		lost++;
		st[t->last >= 0 ? t->last : (int)sx].lost++;
	}
	resume_all();
	wait_running();

	read_counters(&c0);
	mark_stores();
	t0 = now_ns();
	switch (sx) {
	case S_PERPAGE: ioctls = do_perpage(&pages); break;
	case S_MERGED: ioctls = do_merged(&pages); break;
	case S_FLOOR: ioctls = do_floor(&pages); break;
	default: ioctls = do_library(&pages, &exact); break;
	}
	t1 = now_ns();
	n_st = stores();
	read_counters(&c1);
	if (sx == S_BATCHED)
		cross_check(&c0, &c1, ioctls, pages);

	/* "send": the pages whose bits were just cleared */
	for (i = 0; i < ntp; i++) {
		struct tpage *t = &tp[i];

		if (test_bit64(slots[t->s].log, t->page)) {
			memcpy(t->sent, t->hva, PAGE_SIZE);
			t->last = sx;
		}
	}
	/* the rest of the throughput window, busy (see window_ns) */
	t2 = now_ns();
	if (t2 - t0 > busy_max_ns)
		busy_max_ns = t2 - t0;
	while (t2 - t0 < window_ns) {
		__builtin_ia32_pause();
		t2 = now_ns();
	}
	n_win = stores();
	mark_stores();
	ok = wait_full_pass();

	if (!record)
		return;
	S->wgps[S->n] = t2 > t0 ? n_win * 1e9 / (double)(t2 - t0) : 0;
	S->ns[S->n++] = t1 - t0;
	S->clear_ns += t1 - t0;
	S->win_ns += t2 - t0;
	S->win_stores += n_win;
	S->over_window += window_ns && t2 - t0 > window_ns + window_ns / 20;
	S->ioctls += ioctls;
	S->pages += pages;
	S->exact = exact;
	S->stores += n_st;
	S->exits += c1.exits - c0.exits;
	S->pf += c1.pf - c0.pf;
	for (i = 0; i < NVSTAT; i++)
		S->vstat[i] += c1.vstat[i] - c0.vstat[i];
	S->flushes += have_flush_req ? c1.kvm_flush_req - c0.kvm_flush_req :
				       c1.kvm_flush - c0.kvm_flush;
	if (sx == S_BATCHED) {
		S->holds += c1.mod.mmu_lock_holds - c0.mod.mmu_lock_holds;
		S->breaks += c1.mod.lock_breaks - c0.mod.lock_breaks;
		S->mod_flushes += c1.mod.tlb_flushes - c0.mod.tlb_flushes;
	} else {
		S->holds += ioctls;	/* KVM takes the MMU lock per call */
	}
	S->short_waits += !ok;
}

/* ------------------------------------------------------------------ */
/* Results                                                            */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static double pct(const uint64_t *sorted, unsigned int n, double p)
{
	/* nearest rank */
	unsigned int k = (unsigned int)ceil(p / 100.0 * n);

	if (k < 1)
		k = 1;
	return sorted[k - 1] / 1000.0;
}

static const char *kernel_label(void)
{
	static struct utsname u;

	if (opt.label)
		return opt.label;
	uname(&u);
	return u.release;
}

static int ref_strat(void)
{
	if (enabled[S_BATCHED])
		return S_BATCHED;
	if (enabled[S_FALLBACK])
		return S_FALLBACK;
	return S_FLOOR;
}

static void fmt_rate(char *buf, size_t len, double v)
{
	if (v >= 1e6)
		snprintf(buf, len, "%.2fM", v / 1e6);
	else if (v >= 1e3)
		snprintf(buf, len, "%.1fk", v / 1e3);
	else
		snprintf(buf, len, "%.0f", v);
}

static uint64_t report(void)
{
	int ref = ref_strat(), i;
	uint64_t lost = 0;
	const char *k = kernel_label();

	for (i = 0; i < norder; i++) {
		struct sstats *S = &st[order[i]];

		qsort(S->ns, S->n, sizeof(*S->ns), cmp_u64);
		S->median_us = S->n % 2 ? S->ns[S->n / 2] / 1000.0 :
			       (S->ns[S->n / 2 - 1] + S->ns[S->n / 2]) / 2000.0;
		S->p99_us = pct(S->ns, S->n, 99);
		S->gps = S->win_ns ? S->win_stores * 1e9 / S->win_ns : 0;
		S->gps_clear = S->clear_ns ? S->stores * 1e9 / S->clear_ns : 0;
	}
	for (i = 0; i < norder; i++) {
		struct sstats *S = &st[order[i]];

		S->ratio = st[ref].median_us > 0 ? S->median_us / st[ref].median_us : 0;
	}

	printf("\nResults (%s, %u vCPUs, %u memslots, %u runs/round, %u rounds per strategy):\n",
	       k, opt.vcpus, nslots, nruns, opt.rounds);
	printf("%-9s %11s %11s %9s %8s %8s %7s %8s %8s %11s %5s\n",
	       "strategy", "median_us", "p99_us", "vs_" , "ioctls", "mmu_lock", "lock",
	       "tlb", "pages", "guest", "lost");
	printf("%-9s %11s %11s %9s %8s %8s %7s %8s %8s %11s %5s\n",
	       "", "/round", "/round", strat_name[ref], "/round", "holds/rd", "brk/rd",
	       "flush/rd", "clr/rd", "pages/s", "pages");
	for (i = 0; i < norder; i++) {
		struct sstats *S = &st[order[i]];
		double n = S->n ? S->n : 1;
		char g[32];

		fmt_rate(g, sizeof(g), S->gps);
		printf("%-9s %11.1f %11.1f %8.2fx %8.1f %8.1f %7.1f %8.1f %8.1f %11s %5llu\n",
		       strat_name[order[i]], S->median_us, S->p99_us, S->ratio,
		       S->ioctls / n, S->holds / n, S->breaks / n, S->flushes / n,
		       S->pages / n, g, (unsigned long long)S->lost);
		lost += S->lost;
	}
	if (enabled[S_BATCHED]) {
		printf("  batched cross-check: module counted %.1f TLB flushes/round; "
		       "pages cleared are the module's exact count\n",
		       st[S_BATCHED].mod_flushes / (double)(st[S_BATCHED].n ? st[S_BATCHED].n : 1));
		printf("  batched counters, all %u clears: KVM %llu TLB flush requests (%llu of them kicked a vCPU),"
		       " module %llu TLB flushes: %s%s\n",
		       xcheck_rounds, (unsigned long long)xcheck_kvm,
		       (unsigned long long)xcheck_kick, (unsigned long long)xcheck_mod,
		       xcheck_bad ? "DISAGREE, first: " : "agree", xcheck_bad ? xcheck_first : "");
	}
	printf("  MMU-lock holds: one per KVM_CLEAR_DIRTY_LOG (KVM takes it for every call),"
	       " the module's counter for batched; TLB flushes: KVM's %s statistic\n",
	       have_flush_req ? "remote_tlb_flush_requests" : have_flush ? "remote_tlb_flush" :
	       "(unavailable)");
	printf("  vCPU 0 during the clears, per round:");
	for (i = 0; i < norder; i++) {
		struct sstats *S = &st[order[i]];
		double n = S->n ? S->n : 1;

		printf("%s %s %.0f exits, %.0f page faults", i ? ";" : "",
		       strat_name[order[i]], S->exits / n, S->pf / n);
	}
	printf("\n");
	if (window_ns)
		printf("  guest pages/s: the vCPUs' page writes per second over %.0f ms from the start\n"
		       "    of each clear, the same window for every strategy (it holds the slowest\n"
		       "    clear; the migration thread stays busy to its end); over the clear alone:",
		       window_ns / 1e6);
	else
		printf("  guest pages/s: the vCPUs' page writes per second over each round's own clear\n"
		       "    + send (--warmup 0: no common window); over the clear alone:");
	for (i = 0; i < norder; i++) {
		char g[32];

		fmt_rate(g, sizeof(g), st[order[i]].gps_clear);
		printf("%s %s %s", i ? "," : "", strat_name[order[i]], g);
	}
	printf("\n");
	for (i = 0; i < norder; i++)
		if (st[order[i]].over_window)
			printf("  note: %s: %llu rounds took longer than the window; their window was "
			       "the round's own clear + send\n", strat_name[order[i]],
			       (unsigned long long)st[order[i]].over_window);
	if (verbose) {
		unsigned int v;

		printf("  vCPU 0 statistics during the clears, per round:\n  %-26s", "");
		for (i = 0; i < norder; i++)
			printf(" %10s", strat_name[order[i]]);
		printf("\n");
		for (v = 0; v < NVSTAT; v++) {
			printf("  %-26s", vstat_names[v]);
			for (i = 0; i < norder; i++)
				printf(" %10.1f", st[order[i]].vstat[v] /
				       (double)(st[order[i]].n ? st[order[i]].n : 1));
			printf("\n");
		}
	}
	for (i = 0; i < norder; i++)
		if (st[order[i]].short_waits)
			printf("  note: %s: %llu rounds where a vCPU did not finish a pass in 20 s\n",
			       strat_name[order[i]], (unsigned long long)st[order[i]].short_waits);

	/* targets */
	if (enabled[S_BATCHED]) {
		struct sstats *B = &st[S_BATCHED];

		printf("\nTargets (ratios of medians from this run):\n");
		if (enabled[S_PERPAGE])
			printf("  batched >= 50x faster than per-page:   %7.1fx  %s\n",
			       st[S_PERPAGE].ratio, st[S_PERPAGE].ratio >= 50 ? "PASS" : "MISS");
		if (enabled[S_MERGED])
			printf("  batched >= 3x faster than merged:      %7.1fx  %s\n",
			       st[S_MERGED].ratio, st[S_MERGED].ratio >= 3 ? "PASS" : "MISS");
		if (enabled[S_FLOOR])
			printf("  batched within 1.2x of floor:          %7.2fx  %s\n",
			       1 / st[S_FLOOR].ratio, 1 / st[S_FLOOR].ratio <= 1.2 ? "PASS" : "MISS");
		if (enabled[S_MERGED]) {
			const struct sstats *M = &st[S_MERGED];
			double noise = 2 * sqrt(var_of_mean(B) + var_of_mean(M));
			char a[32], b[32];

			/*
			 * "Not lower": higher, or lower by less than twice the
			 * standard error of the difference of the per-round
			 * means (a tie: the rounds vary more than that).
			 */
			fmt_rate(a, sizeof(a), B->gps);
			fmt_rate(b, sizeof(b), M->gps);
			printf("  guest pages/s during batched >= merged: %s vs %s (%+.1f%%, noise +-%.1f%%)  %s\n",
			       a, b, M->gps > 0 ? 100 * (B->gps / M->gps - 1) : 0,
			       M->gps > 0 ? 100 * noise / M->gps : 0,
			       B->gps >= M->gps ? "PASS" :
			       M->gps - B->gps <= noise ? "PASS (tie)" : "MISS");
		}
	}
	if (enabled[S_BATCHED])
		printf("  KVM's and the module's counters agree: %u of %u clears  %s\n",
		       xcheck_rounds - xcheck_bad, xcheck_rounds, xcheck_bad ? "MISS" : "PASS");
	printf("  lost_pages 0 everywhere:                %s\n", lost ? "MISS" : "PASS");

	/* machine-readable, picked up by scripts/bench.sh */
	for (i = 0; i < norder; i++) {
		struct sstats *S = &st[order[i]];
		double n = S->n ? S->n : 1;

		printf("csv: %s,%s,%u,%u,%.1f,%.1f,%.1f,%.1f,%.1f,%.1f,%.0f,%llu\n",
		       strat_name[order[i]], k, opt.vcpus, S->n, S->pages / n,
		       S->median_us, S->p99_us, S->ioctls / n, S->holds / n,
		       S->flushes / n, S->gps, (unsigned long long)S->lost);
	}
	fflush(stdout);
	return lost;
}

/* ------------------------------------------------------------------ */
/* SVG chart of a summary CSV                                          */

struct row {
	char strategy[32], kernel[96];
	double median, p99;
};

static void xml_puts(FILE *f, const char *s)
{
	for (; *s; s++)
		if (*s == '<')
			fputs("&lt;", f);
		else if (*s == '&')
			fputs("&amp;", f);
		else
			fputc(*s, f);
}

/* A duration in microseconds, for people. */
static void fmt_us(char *buf, size_t len, double us)
{
	if (us >= 1e6)
		snprintf(buf, len, "%.3g s", us / 1e6);
	else if (us >= 1e3)
		snprintf(buf, len, "%.3g ms", us / 1e3);
	else
		snprintf(buf, len, "%.3g us", us);
}

/* Median of the group's batched row, else its fallback row, else 0. */
static double group_ref(const struct row *rows, int n, const char *kernel)
{
	double fb = 0;
	int i;

	for (i = 0; i < n; i++) {
		if (strcmp(rows[i].kernel, kernel))
			continue;
		if (!strcmp(rows[i].strategy, "batched"))
			return rows[i].median;
		if (!strcmp(rows[i].strategy, "fallback"))
			fb = rows[i].median;
	}
	return fb;
}

static int render_svg(const char *in, const char *out)
{
	static const char *const colors[] = {
		"#d62728", "#ff7f0e", "#2ca02c", "#1f77b4", "#9467bd", "#8c564b",
	};
	struct row rows[64];
	char line[512], groups[8][96];
	int nrows = 0, ngroups = 0, i, g;
	double lo = 1e300, hi = 0, x0 = 150, w = 560, y;
	FILE *f = fopen(in, "r"), *o;

	if (!f) {
		perror(in);
		return 1;
	}
	while (fgets(line, sizeof(line), f) && nrows < 64) {
		struct row *r = &rows[nrows];
		char *tok[12], *p = line, *sv;
		int n = 0;

		if (!strncmp(line, "strategy,", 9))
			continue;
		while (n < 12 && (tok[n] = strtok_r(n ? NULL : p, ",\n", &sv)))
			n++;
		if (n < 12)
			continue;
		snprintf(r->strategy, sizeof(r->strategy), "%s", tok[0]);
		snprintf(r->kernel, sizeof(r->kernel), "%s", tok[1]);
		r->median = atof(tok[5]);
		r->p99 = atof(tok[6]);
		if (r->median <= 0)
			continue;
		for (g = 0; g < ngroups && strcmp(groups[g], r->kernel); g++)
			;
		if (g == ngroups && ngroups < 8)
			snprintf(groups[ngroups++], sizeof(groups[0]), "%s", r->kernel);
		lo = fmin(lo, r->median);
		hi = fmax(hi, fmax(r->median, r->p99));
		nrows++;
	}
	fclose(f);
	if (!nrows) {
		fprintf(stderr, "%s: no rows\n", in);
		return 1;
	}
	lo = pow(10, floor(log10(lo)));
	hi = pow(10, ceil(log10(hi)));
	if (hi <= lo)
		hi = lo * 10;
	o = fopen(out, "w");
	if (!o) {
		perror(out);
		return 1;
	}
#define XPOS(v) (x0 + w * (log10(v) - log10(lo)) / (log10(hi) - log10(lo)))
	{
		double height = 70 + nrows * 22 + ngroups * 30 + 40;
		double d;

		fprintf(o, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" "
			"height=\"%.0f\" font-family=\"sans-serif\" font-size=\"12\">\n",
			x0 + w + 170, height);
		fprintf(o, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
		fprintf(o, "<text x=\"10\" y=\"22\" font-size=\"15\" font-weight=\"bold\">"
			"Dirty-log clear time per migration sync round</text>\n");
		fprintf(o, "<text x=\"10\" y=\"38\" fill=\"#555\">median, p99 whisker, "
			"log scale; (Nx) = time / batched (host: / libdirtybatch fallback)</text>\n");
		for (d = lo; d <= hi * 1.0001; d *= 10) {
			double x = XPOS(d);

			fprintf(o, "<line x1=\"%.1f\" y1=\"46\" x2=\"%.1f\" y2=\"%.0f\" "
				"stroke=\"#ddd\"/>\n", x, x, height - 30);
			char lbl[32];

			fmt_us(lbl, sizeof(lbl), d);
			fprintf(o, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%s</text>\n",
				x, height - 14, lbl);
		}
		y = 56;
		for (g = 0; g < ngroups; g++) {
			double ref = group_ref(rows, nrows, groups[g]);

			fprintf(o, "<text x=\"10\" y=\"%.0f\" font-weight=\"bold\">", y + 12);
			xml_puts(o, groups[g]);
			fprintf(o, "</text>\n");
			y += 22;
			for (i = 0; i < nrows; i++) {
				struct row *r = &rows[i];
				int c = 0;
				unsigned int k;

				if (strcmp(r->kernel, groups[g]))
					continue;
				for (k = 0; k < NSTRAT; k++)
					if (!strcmp(strat_name[k], r->strategy))
						c = k;
				fprintf(o, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">", x0 - 8, y + 12);
				xml_puts(o, r->strategy);
				fprintf(o, "</text>\n<rect x=\"%.1f\" y=\"%.0f\" width=\"%.1f\" "
					"height=\"16\" fill=\"%s\"/>\n", x0, y,
					fmax(XPOS(r->median) - x0, 1), colors[c % 6]);
				fprintf(o, "<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" "
					"stroke=\"black\"/>\n", XPOS(r->median), y + 8,
					XPOS(fmax(r->p99, r->median)), y + 8);
				fprintf(o, "<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" "
					"stroke=\"black\"/>\n", XPOS(fmax(r->p99, r->median)), y + 3,
					XPOS(fmax(r->p99, r->median)), y + 13);
				{
					char lbl[64], v[32];

					fmt_us(v, sizeof(v), r->median);
					if (ref > 0 && r->median != ref)
						snprintf(lbl, sizeof(lbl), "%s (%.3gx)", v,
							 r->median / ref);
					else
						snprintf(lbl, sizeof(lbl), "%s", v);
					fprintf(o, "<text x=\"%.1f\" y=\"%.0f\">%s</text>\n",
						XPOS(fmax(r->p99, r->median)) + 6, y + 12, lbl);
				}
				y += 22;
			}
			y += 8;
		}
		fprintf(o, "</svg>\n");
	}
#undef XPOS
	if (fclose(o)) {
		perror(out);
		return 1;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* main                                                               */

static void usage(FILE *f)
{
	fprintf(f,
"usage: dirtybatch_migration_bench [options]\n"
"       dirtybatch_migration_bench --svg SUMMARY.csv OUT.svg\n"
"\n"
"A VM's vCPUs dirty memory while the host syncs the dirty log and clears it\n"
"round after round, with each strategy in turn on the same VM.\n"
"\n"
"  --vcpus N        vCPUs writing memory (default %u, at most %u)\n"
"  --mem MIB        guest RAM, over the large memslots (default %u)\n"
"  --ram-slots N    large (RAM) memslots (default %u)\n"
"  --slots N        dirty-logged memslots in all, the others small ones\n"
"                   with sizes not multiples of 64 pages (default %u, at most %u)\n"
"  --runs N         clear requests per round, starts not 64-page aligned\n"
"                   (default %u)\n"
"  --dirty N        dirty rate: pages the vCPUs dirty between two syncs,\n"
"                   spread over the runs (default %u)\n"
"  --rounds N       measured rounds per strategy (default %u)\n"
"  --warmup N       unmeasured rounds per strategy first (default %u)\n"
"  --budget S       measure for at most about S seconds: no new cycle of\n"
"                   rounds once the last one says it would end later\n"
"                   (0 = no limit, the default)\n"
"  --strategies L   comma-separated subset of per-page,merged,batched,floor,\n"
"                   fallback (default: the first four; with --host: per-page,\n"
"                   merged,floor,fallback)\n"
"  --host           no module: libdirtybatch's fallback instead of batched\n"
"  --label S        kernel label for the CSV (default: uname -r)\n"
"  --seed N         layout seed (default 1)\n"
"  --window-ms N    the guest throughput window from the start of each clear,\n"
"                   the same for every strategy (default: the warm-up's\n"
"                   slowest clear + send, plus a quarter)\n"
"  --verbose        more KVM statistics of vCPU 0 per strategy\n"
"  --check-counters exit 5 if, for a batched clear, KVM's TLB flush count\n"
"                   (remote_tlb_flush_requests) is not the module's, or the\n"
"                   module's calls or pages are not the library's (make\n"
"                   check's smoke run; always reported)\n"
"\n"
"Prints progress, a table, target PASS/MISS lines and 'csv: ' lines.\n"
"Exit: 0, 3 if a dirty page was lost, 5 with --check-counters if the\n"
"counters disagree, 4 if KVM (or the module) is missing, 1 on error,\n"
"2 on usage error.\n",
		opt.vcpus, MAX_VCPUS, opt.mem_mib, opt.ram_slots, opt.slots, MAX_LOGGED,
		opt.runs, opt.dirty, opt.rounds, opt.warmup);
}

static unsigned int num_arg(const char *name, const char *v, unsigned int min,
			    unsigned int max)
{
	char *end;
	unsigned long n;

	errno = 0;
	n = strtoul(v, &end, 0);
	if (errno || *end || !*v || n < min || n > max) {
		fprintf(stderr, "migration_bench: --%s: want %u..%u, got '%s'\n", name,
			min, max, v);
		exit(2);
	}
	return n;
}

static void parse(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "vcpus", 1, NULL, 'v' }, { "mem", 1, NULL, 'm' },
		{ "ram-slots", 1, NULL, 'R' }, { "slots", 1, NULL, 's' },
		{ "runs", 1, NULL, 'n' }, { "dirty", 1, NULL, 'd' },
		{ "rounds", 1, NULL, 'r' }, { "warmup", 1, NULL, 'w' },
		{ "strategies", 1, NULL, 'S' }, { "host", 0, NULL, 'H' },
		{ "label", 1, NULL, 'l' }, { "seed", 1, NULL, 'x' },
		{ "budget", 1, NULL, 'b' }, { "verbose", 0, NULL, 'V' },
		{ "window-ms", 1, NULL, 'W' }, { "check-counters", 0, NULL, 'C' },
		{ "help", 0, NULL, 'h' }, { "svg", 0, NULL, 'G' }, { 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'v': opt.vcpus = num_arg("vcpus", optarg, 1, MAX_VCPUS); break;
		case 'm': opt.mem_mib = num_arg("mem", optarg, 16, 3072); break;
		case 'R': opt.ram_slots = num_arg("ram-slots", optarg, 1, MAX_LOGGED); break;
		case 's': opt.slots = num_arg("slots", optarg, 1, MAX_LOGGED); break;
		case 'n': opt.runs = num_arg("runs", optarg, 1, 1000000); break;
		case 'd': opt.dirty = num_arg("dirty", optarg, 1, 1000000); break;
		case 'r': opt.rounds = num_arg("rounds", optarg, 1, 100000); break;
		case 'w': opt.warmup = num_arg("warmup", optarg, 0, 1000); break;
		case 'S': opt.strategies = optarg; break;
		case 'H': opt.host = true; break;
		case 'l': opt.label = optarg; break;
		case 'V': verbose = true; break;
		case 'C': opt.check_counters = true; break;
		case 'b': opt.budget = num_arg("budget", optarg, 0, 86400); break;
		case 'W': opt.window_ms = num_arg("window-ms", optarg, 1, 600000); break;
		case 'x': opt.seed = num_arg("seed", optarg, 0, UINT_MAX); break;
		case 'G':
			if (argc - optind != 2) {
				usage(stderr);
				exit(2);
			}
			exit(render_svg(argv[optind], argv[optind + 1]));
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(2);
		}
	}
	if (optind != argc) {
		usage(stderr);
		exit(2);
	}
	if (opt.ram_slots > opt.slots) {
		fprintf(stderr, "migration_bench: --ram-slots %u > --slots %u\n",
			opt.ram_slots, opt.slots);
		exit(2);
	}
}

static void parse_strategies(void)
{
	char buf[256], *p, *sv;
	unsigned int k;

	snprintf(buf, sizeof(buf), "%s", opt.strategies ? opt.strategies :
		 opt.host ? "per-page,merged,floor,fallback" :
			    "per-page,merged,batched,floor");
	for (p = strtok_r(buf, ",", &sv); p; p = strtok_r(NULL, ",", &sv)) {
		for (k = 0; k < NSTRAT && strcmp(p, strat_name[k]); k++)
			;
		if (k == NSTRAT) {
			fprintf(stderr, "migration_bench: unknown strategy '%s'\n", p);
			exit(2);
		}
		if (!enabled[k])
			order[norder++] = k;
		enabled[k] = true;
	}
}

int main(int argc, char **argv)
{
	struct dirtybatch_memslot ml[MAX_LOGGED];
	struct dirtybatch_opts dopts = { .sz = sizeof(dopts) };
	const char *why = NULL;
	uint64_t lost, total_run_pages = 0, misaligned = 0, t_setup, t_last;
	unsigned int i, c, k, total_rounds, done_rounds = 0, slots_with_runs = 0;
	unsigned int budget_hit = 0;
	int e;

	t_start = now_ns();
	setvbuf(stdout, NULL, _IOLBF, 0);
	parse(argc, argv);
	parse_strategies();
	rs = opt.seed;

	if (!kvm_available(&why)) {
		printf("migration_bench: SKIP: %s\n", why);
		return EXIT_SKIP;
	}
	if (enabled[S_BATCHED]) {
		dbfd = open("/dev/" KVM_DIRTYBATCH_DEVICE_NAME, O_RDWR | O_CLOEXEC);
		if (dbfd < 0) {
			printf("migration_bench: SKIP: /dev/%s: %s (load the module, or use --host)\n",
			       KVM_DIRTYBATCH_DEVICE_NAME, strerror(errno));
			return EXIT_SKIP;
		}
	}

	vm = vm_create(true);
	build_layout();
	for (i = 0; i < nslots; i++) {
		struct bslot *s = &slots[i];

		s->hva = vm_add_slot(vm, s->id, s->gpa, s->npages, KVM_MEM_LOG_DIRTY_PAGES);
		ml[i] = (struct dirtybatch_memslot){ .sz = sizeof(struct dirtybatch_memslot), .slot = s->id,
			.guest_phys_addr = s->gpa, .npages = s->npages };
		slots_with_runs += !!s->nruns;
	}
	build_pages();
	setup_vcpus();
	for (i = 0; i < nruns; i++) {
		total_run_pages += runs[i].len;
		misaligned += runs[i].start % 64 != 0;
	}

	if (enabled[S_BATCHED] || enabled[S_FALLBACK]) {
		if (enabled[S_BATCHED] && enabled[S_FALLBACK])
			fail("batched and fallback need two contexts: pick one");
		dopts.flags = enabled[S_FALLBACK] ? DIRTYBATCH_OPEN_FALLBACK : 0;
		e = dirtybatch_open(vm->fd, &dopts, &ctx);
		if (e)
			fail("dirtybatch_open: %s", strerror(-e));
		e = dirtybatch_set_layout(ctx, ml, nslots);
		if (e)
			fail("dirtybatch_set_layout: %s", strerror(-e));
		if (enabled[S_BATCHED] && dirtybatch_mode(ctx) != DIRTYBATCH_MODE_MODULE)
			fail("libdirtybatch did not pick the module");
	}

	say("VM: %u vCPUs; %u dirty-logged memslots: %u RAM (%u MiB) + %u small "
	    "(sizes not multiples of 64 pages)", opt.vcpus, nslots, opt.ram_slots,
	    opt.mem_mib, nslots - opt.ram_slots);
	say("clear requests: %u runs/round over %u memslots, %llu pages, %llu runs "
	    "start off a 64-page boundary", nruns, slots_with_runs,
	    (unsigned long long)total_run_pages, (unsigned long long)misaligned);
	say("dirty rate: the vCPUs write %u pages in a loop; each round clears them all",
	    ntp);
	say("method: strategies take turns on the same VM, round-robin, order rotated "
	    "every cycle; before each sync every vCPU completes a full pass, so every "
	    "round sees the same %u dirty pages", ntp);
	for (k = 0; k < (unsigned int)norder; k++) {
		st[order[k]].ns = zalloc(sizeof(uint64_t) * opt.rounds);
		st[order[k]].wgps = zalloc(sizeof(double) * opt.rounds);
	}

	/*
	 * Open KVM's stats fds now: KVM_GET_STATS_FD on a vCPU waits for its
	 * mutex, which KVM_RUN holds while the guest loops.
	 */
	{
		struct counters cn;

		read_counters(&cn);
	}
	/* first sync: everything is dirty (INITIALLY_SET); clear all runs */
	start_vcpus();
	mark_stores();
	if (!wait_full_pass())
		fail("the vCPUs made no progress in 20 s");
	pause_all();
	for (i = 0; i < nslots; i++)
		vm_get_dirty_log(vm, slots[i].id, slots[i].log);
	{
		uint64_t pages = 0;

		do_floor(&pages);
	}
	for (i = 0; i < ntp; i++)
		memcpy(tp[i].sent, tp[i].hva, PAGE_SIZE);
	resume_all();
	mark_stores();
	wait_full_pass();
	t_setup = now_ns();
	say("setup done; %u warm-up + %u measured rounds per strategy, strategies: %s%s%s%s%s",
	    opt.warmup, opt.rounds, strat_name[order[0]],
	    norder > 1 ? ", " : "", norder > 1 ? strat_name[order[1]] : "",
	    norder > 2 ? ", ..." : "", "");

	for (c = 0; c < opt.warmup; c++)
		for (k = 0; k < (unsigned int)norder; k++)
			round_once(order[(c + k) % norder], false);
	if (opt.window_ms)
		window_ns = opt.window_ms * 1000000ULL;
	else if (busy_max_ns)
		window_ns = (busy_max_ns + busy_max_ns / 4 + 999999) / 1000000 * 1000000;
	say("guest throughput window: %.0f ms from the start of each clear%s", window_ns / 1e6,
	    opt.window_ms ? " (--window-ms)" : busy_max_ns ? " (the warm-up's slowest clear + send, "
	    "plus a quarter)" : ": none, each round's own clear + send (--warmup 0)");
	total_rounds = opt.rounds * norder;
	t_last = now_ns();
	for (c = 0; c < opt.rounds; c++) {
		uint64_t tc = now_ns();

		for (k = 0; k < (unsigned int)norder; k++) {
			round_once(order[(c + k) % norder], true);
			done_rounds++;
		}
		tc = now_ns() - tc;
		if (opt.budget && c + 1 < opt.rounds &&
		    now_ns() - t_setup + tc > opt.budget * 1000000000ULL) {
			say("time budget of %u s reached: stopping after %u rounds per strategy",
			    opt.budget, c + 1);
			budget_hit = c + 1;
			break;
		}
		if (now_ns() - t_last > 10000000000ULL || c + 1 == opt.rounds) {
			char line[512];
			size_t off = 0;

			for (k = 0; k < (unsigned int)norder; k++) {
				struct sstats *S = &st[order[k]];

				off += snprintf(line + off, sizeof(line) - off, "%s%s %.0f us",
						k ? ", " : "", strat_name[order[k]],
						S->clear_ns / 1000.0 / (S->n ? S->n : 1));
			}
			say("round %u/%u (%.0f s): mean clear %s", done_rounds, total_rounds,
			    (now_ns() - t_setup) / 1e9, line);
			t_last = now_ns();
		}
	}
	stop_vcpus();
	/* final check with the vCPUs stopped */
	for (i = 0; i < nslots; i++)
		vm_get_dirty_log(vm, slots[i].id, slots[i].log);
	for (i = 0; i < ntp; i++) {
		struct tpage *t = &tp[i];

		if (memcmp(t->hva, t->sent, PAGE_SIZE) &&
		    !test_bit64(slots[t->s].log, t->page)) {
			say("LOST at the end: slot %u page %llu", slots[t->s].id,
			    (unsigned long long)t->page);
			st[t->last >= 0 ? t->last : order[0]].lost++;
		}
	}
	if (budget_hit)
		opt.rounds = budget_hit;
	say("done: %llu changed pages checked against the dirty log", (unsigned long long)checked_pages);

	lost = report();
	if (ctx)
		dirtybatch_close(ctx);
	vm_free(vm);
	if (lost)
		return EXIT_LOST;
	return opt.check_counters && xcheck_bad ? EXIT_COUNTERS : 0;
}
