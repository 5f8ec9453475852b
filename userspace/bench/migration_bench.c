// SPDX-License-Identifier: GPL-2.0
/*
 * dirtybatch_migration_bench, the measurement: QEMU's migration bitmap
 * sync, one way per strategy, on one VM (bench_run()).
 *
 * A VM (selftests/lib/vm.[ch], the flat 32-bit guest loop of
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
 *        fallback  libdirtybatch without the module (its own context,
 *                  DIRTYBATCH_OPEN_FALLBACK)
 *        native    libdirtybatch forced to KVM's own KVM_CLEAR_DIRTY_LOG_BATCH
 *                  (patched KVM); skipped, with the library's reason,
 *                  where native_backend_available() says no
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
 * module's tlb_flushes counter, see cross_check()), vCPU kicks (KVM's
 * remote_tlb_flush: the flushes that had to kick a vCPU), bitmap words
 * the kernel walks, pages cleared, and the vCPUs' page writes per second
 * over a window of the same length for every strategy that starts with
 * the clear (and, for information, over the clear alone).
 *
 * All of a run's state is in struct bench; bench_run() builds it, measures
 * and frees it, and hands back a struct bench_result, which bench_report.c
 * prints and sweep.c collects.  No timed assertions.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
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

#include "bench.h"
#include "clock.h"
#include "dirtybatch.h"
#include "rng.h"
#include "vm.h"

#define MIB		(1ULL << 20)
#define CTRL_SLOT	1		/* control pages of vCPUs 1.., not logged */
#define CTRL_GPA	0x100000ULL
#define CTRL_STRIDE	32		/* pages per extra vCPU: ctrl + list */
#define FIRST_ID	10		/* first dirty-logged memslot id */
#define RAM_GPA		0x1000000ULL	/* 16 MiB */
#define GPA_LIMIT	0xf0000000ULL	/* below the TSS and 4 GiB */
#define GPA_MAX		(1ULL << 40)	/* the guests' 40 physical address bits */
#define MAX_LOGGED	(VM_MAX_SLOTS - 2)
/* the library's fallback joins runs at most this many zero words apart */
#define FALLBACK_GAP_WORDS 512

const char *const strat_name[NSTRAT] = {
	"per-page", "merged", "batched", "floor", "fallback", "native",
};

const char *const vstat_names[NVSTAT] = {
	"exits", "pf_taken", "pf_fast", "pf_fixed", "pf_spurious", "tlb_flush",
	"irq_exits", "halt_exits", "signal_exits", "directed_yield_attempted",
};

/*
 * KVM's own KVM_CLEAR_DIRTY_LOG_BATCH (a kernel with module/native/patches
 * or the patched KVM modules): available if libdirtybatch confirms it on a
 * VM of its own, the way it does for a VMM.  A run that asks for "native"
 * without it skips it with the library's reason.
 */
bool native_backend_available(const char **why)
{
	struct dirtybatch_opts o = { .sz = sizeof(o), .backend = DIRTYBATCH_BACKEND_NATIVE };
	static char reason[96];
	struct dirtybatch_ctx *ctx;
	int kvm, vm, e;

	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) {
		*why = "no /dev/kvm";
		return false;
	}
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	close(kvm);
	if (vm < 0) {
		*why = "KVM_CREATE_VM failed";
		return false;
	}
	e = dirtybatch_open(vm, &o, &ctx);
	if (!e)
		dirtybatch_close(ctx);
	close(vm);
	if (e) {
		snprintf(reason, sizeof(reason), "no native KVM_CLEAR_DIRTY_LOG_BATCH (%s)",
			 strerror(-e));
		*why = reason;
	}
	return !e;
}

/* ------------------------------------------------------------------ */
/* Small helpers                                                      */

static uint64_t t_start;
static bool quiet;

/* Progress and informational lines, flushed at once (the guest runner
 * forwards our stdout as it comes). */
void say(const char *fmt, ...)
{
	va_list ap;

	if (!t_start)
		t_start = now_ns();
	printf("[%5.1fs] ", (now_ns() - t_start) / 1e9);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

#define note(...) do { if (!quiet) say(__VA_ARGS__); } while (0)

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
/* State                                                              */

struct bslot {
	uint32_t id;
	bool ram;
	uint64_t gpa, npages, nwords;
	uint64_t hot;		/* runs lie in pages 0..hot-1 */
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

struct counters {
	uint64_t kvm_flush_req, kvm_flush, exits, pf;
	uint64_t vstat[NVSTAT];
	struct kvm_dirtybatch_stats mod;
};

/* A strategy's sums over the measured rounds. */
struct sstats {
	unsigned int n;
	uint64_t *ns;		/* clear time per round */
	double *wgps;		/* guest pages/s over each round's window */
	uint64_t ioctls, holds, breaks, flushes, kicks, mod_flushes, pages, words;
	uint64_t stores, clear_ns, lost, short_waits, exits, pf, vstat[NVSTAT];
	uint64_t win_ns, win_stores, over_window;
	bool exact;
};

struct bench {
	struct bench_cfg cfg;
	struct bench_result *res;
	struct rng rs;			/* layout random state */
	struct vm *vm;
	struct bslot *slots;
	unsigned int nslots;
	struct run *runs;
	unsigned int nruns;
	struct tpage *tp;
	unsigned int ntp;
	struct bvcpu vcpus[MAX_VCPUS];
	struct dirtybatch_ctx *ctx;	/* batched: the module */
	struct dirtybatch_ctx *fbctx;	/* fallback */
	struct dirtybatch_ctx *natctx;	/* native */
	int dbfd;
	/*
	 * KVM's VM statistic remote_tlb_flush_requests is incremented on
	 * entry to kvm_flush_remote_tlbs() (virt/kvm/kvm_main.c, 6.1 and
	 * 6.12), the function the module calls once per clear: it counts
	 * every flush.  remote_tlb_flush counts the flushes that had to kick
	 * a vCPU out of guest mode (the kicks), and is the flush count only
	 * on kernels without the other (before 5.15), where it is never
	 * cross-checked.  A statistic that could be read once and then
	 * cannot is an error: the counters must not be mixed within a run.
	 */
	bool have_flush_req, have_flush, counters_read;
	bool enabled[NSTRAT];
	int order[NSTRAT], norder;
	struct sstats st[NSTRAT];
	/* words walked per round, as far as known from the layout */
	uint64_t merged_words, floor_words;
	/*
	 * The guest's dirtying throughput is measured over a window of the
	 * same length for every strategy, starting when the clear starts:
	 * window_ns, set from the warm-up (the longest clear + send, plus a
	 * quarter) unless --window-ms gives it.  A clear is a fixed amount of
	 * work for the vCPUs (one write-protection fault per page cleared,
	 * whatever the strategy), so a rate over the clear alone would charge
	 * a short clear with the same faults over less time; over equal
	 * windows, the strategy that costs the guest more shows a lower rate.
	 * The migration thread stays busy for the whole window (as QEMU's is,
	 * sending pages), so that a strategy that ends early does not hand
	 * the vCPUs extra CPU time.
	 */
	uint64_t window_ns, busy_max_ns;
	uint64_t checked_pages;
	unsigned int fb_word_mismatch;
};

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

/* ------------------------------------------------------------------ */
/* Layout                                                             */

static int place_slot(struct bench *b, struct bslot *s, uint64_t *gpa, char *err, size_t len)
{
	const struct bench_cfg *o = &b->cfg;

	*gpa = (*gpa + 2 * MIB - 1) & ~(2 * MIB - 1);
	if (s->ram && o->ram_slot_pages) {
		/* RAM at 1 GiB alignment, ending at most at GPA_MAX */
		uint64_t max;

		*gpa = (*gpa + 1023 * MIB) & ~(1024 * MIB - 1);
		max = *gpa < GPA_MAX ? (GPA_MAX - *gpa) / PAGE_SIZE : 0;
		if (s->npages > max)
			s->npages = max & ~511ULL;
		s->hot = *gpa < GPA_LIMIT ? (GPA_LIMIT - *gpa) / PAGE_SIZE : 0;
		if (s->hot > s->npages)
			s->hot = s->npages;
		if (!s->npages || s->hot < 1024) {
			snprintf(err, len, "RAM memslot %u at 0x%llx: no room below 4 GiB for its runs",
				 s->id, (unsigned long long)*gpa);
			return -1;
		}
	} else {
		s->hot = s->npages;
	}
	s->gpa = *gpa;
	*gpa += s->npages * PAGE_SIZE;
	if (!o->ram_slot_pages && *gpa > GPA_LIMIT) {
		snprintf(err, len, "layout does not fit below 0x%llx: use less --mem or fewer --slots",
			 GPA_LIMIT);
		return -1;
	}
	if (o->ram_slot_pages && !s->ram && *gpa > GPA_LIMIT) {
		snprintf(err, len, "small memslots do not fit below 0x%llx", GPA_LIMIT);
		return -1;
	}
	return 0;
}

static int build_layout(struct bench *b, char *err, size_t errlen)
{
	const struct bench_cfg *o = &b->cfg;
	uint64_t ram_pages = (uint64_t)o->mem_mib * MIB / PAGE_SIZE, gpa = RAM_GPA;
	unsigned int i, k;

	b->nslots = o->slots;
	b->slots = zalloc(sizeof(*b->slots) * b->nslots);
	for (i = 0; i < b->nslots; i++) {
		struct bslot *s = &b->slots[i];

		s->id = FIRST_ID + i;
		s->ram = i < o->ram_slots;
		if (s->ram && o->ram_slot_pages) {
			s->npages = o->ram_slot_pages;
		} else if (s->ram) {
			/* the first RAM slot holds half, the others share the rest */
			uint64_t n = i == 0 ? ram_pages / 2 :
				     ram_pages / 2 / (o->ram_slots - 1);

			if (o->ram_slots == 1)
				n = ram_pages;
			s->npages = n > 512 ? n & ~511ULL : n;
		} else {
			s->npages = small_size(i - o->ram_slots);
		}
	}
	/* Default: RAM first, then the small memslots.  With ram_slot_pages,
	 * the small ones first, so that the RAM memslots can be huge. */
	if (o->ram_slot_pages) {
		for (i = o->ram_slots; i < b->nslots; i++)
			if (place_slot(b, &b->slots[i], &gpa, err, errlen))
				return -1;
		for (i = 0; i < o->ram_slots; i++)
			if (place_slot(b, &b->slots[i], &gpa, err, errlen))
				return -1;
	} else {
		for (i = 0; i < b->nslots; i++)
			if (place_slot(b, &b->slots[i], &gpa, err, errlen))
				return -1;
	}
	for (i = 0; i < b->nslots; i++) {
		struct bslot *s = &b->slots[i];

		s->nwords = (s->npages + 63) / 64;
		s->log = zalloc(s->nwords * 8);
		s->runmask = zalloc(s->nwords * 8);
		s->scratch = zalloc(s->nwords * 8);
		b->res->total_pages += s->npages;
		if (s->ram && s->npages > b->res->ram_slot_pages)
			b->res->ram_slot_pages = s->npages;
	}

	/* Runs: one per small slot, the rest spread over RAM by size. */
	b->runs = zalloc(sizeof(*b->runs) * o->runs);
	{
		unsigned int small = b->nslots - o->ram_slots, left;
		uint64_t total_ram = 0;

		for (i = o->ram_slots; i < b->nslots && i - o->ram_slots < o->runs; i++)
			b->slots[i].nruns = 1;
		left = o->runs > small ? o->runs - small : 0;
		for (i = 0; i < o->ram_slots; i++)
			total_ram += b->slots[i].hot;
		for (i = 0; i < o->ram_slots && left; i++) {
			uint64_t n = i + 1 == o->ram_slots ? left :
				     (uint64_t)(o->runs - small) * b->slots[i].hot / total_ram;

			if (n > left)
				n = left;
			if (n > b->slots[i].hot / 128)
				n = b->slots[i].hot / 128;
			b->slots[i].nruns = n;
			left -= n;
		}
		if (left) {
			snprintf(err, errlen, "%u runs do not fit: use more --mem or fewer --runs",
				 o->runs);
			return -1;
		}
	}
	for (i = 0; i < b->nslots; i++) {
		struct bslot *s = &b->slots[i];
		uint64_t seg = s->nruns ? s->hot / s->nruns : 0;

		for (k = 0; k < s->nruns; k++) {
			uint64_t a = k * seg, e = k + 1 == s->nruns ? s->hot : a + seg;
			uint64_t len = e - a, head, start, tail, p;
			struct run *r = &b->runs[b->nruns++];

			/* misaligned start within the first 64 pages (or quarter) */
			head = 1 + rng_below(&b->rs, len / 4 < 63 ? (len / 4 ? len / 4 : 1) : 63);
			start = a + head;
			if (start % 64 == 0)
				start++;
			tail = rng_below(&b->rs, len / 8 + 1);
			if (start + tail >= e)
				tail = 0;
			if (start >= e) {
				snprintf(err, errlen, "slot of %llu pages too small for a run",
					 (unsigned long long)s->npages);
				return -1;
			}
			r->s = i;
			r->start = start;
			r->len = e - tail - start;
			for (p = r->start; p < r->start + r->len; p++)
				set_bit64(s->runmask, p);
			b->merged_words += (r->start + r->len - 1) / 64 - r->start / 64 + 1;
		}
		if (s->nruns)
			b->floor_words += s->nwords;
	}
	return 0;
}

/* The pages the vCPUs write: cfg.dirty of them, spread evenly over runs. */
static void build_pages(struct bench *b)
{
	unsigned int i, j, k;

	b->tp = zalloc(sizeof(*b->tp) * b->cfg.dirty);
	for (i = 0; i < b->nruns; i++) {
		struct run *r = &b->runs[i];
		struct bslot *s = &b->slots[r->s];
		uint64_t want = b->cfg.dirty / b->nruns + (i < b->cfg.dirty % b->nruns);

		if (want > r->len)
			want = r->len;
		for (j = 0; j < want; j++) {
			uint64_t p;

			do
				p = r->start + rng_below(&b->rs, r->len);
			while (test_bit64(s->scratch, p));
			set_bit64(s->scratch, p);
			b->tp[b->ntp++] = (struct tpage){ .s = r->s, .page = p, .last = -1 };
		}
	}
	for (i = 0; i < b->ntp; i++)
		clear_bit64(b->slots[b->tp[i].s].scratch, b->tp[i].page);
	/* shuffle, so each vCPU's list jumps around like real dirtying */
	for (i = b->ntp; i > 1; i--) {
		struct tpage t;

		k = rng_below(&b->rs, i);
		t = b->tp[i - 1];
		b->tp[i - 1] = b->tp[k];
		b->tp[k] = t;
	}
}

static void map_pages(struct bench *b)
{
	unsigned int i;

	for (i = 0; i < b->ntp; i++) {
		struct tpage *t = &b->tp[i];

		t->hva = b->slots[t->s].hva + t->page * PAGE_SIZE;
		t->sent = aligned_alloc(64, PAGE_SIZE);
		if (!t->sent)
			fail("out of memory");
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

static void setup_vcpus(struct bench *b)
{
	const unsigned int nv = b->cfg.vcpus;
	struct kvm_sregs s0, s;
	struct kvm_regs regs;
	uint8_t *ctrl_hva = NULL;
	unsigned int i, n, per;

	vm_create_vcpu(b->vm);
	b->vcpus[0].ctrl = b->vm->ctrl;
	b->vcpus[0].list = b->vm->list;
	b->vcpus[0].fd = -1;
	if (nv > 1)
		ctrl_hva = vm_add_slot(b->vm, CTRL_SLOT, CTRL_GPA,
				       (uint64_t)CTRL_STRIDE * (nv - 1), 0);
	if (ioctl(b->vm->vcpu->fd, KVM_GET_SREGS, &s0))
		fail("KVM_GET_SREGS: %s", strerror(errno));
	for (i = 1; i < nv; i++) {
		struct bvcpu *v = &b->vcpus[i];
		uint64_t gpa = CTRL_GPA + (uint64_t)(i - 1) * CTRL_STRIDE * PAGE_SIZE;
		int sz;

		v->ctrl = (struct guest_ctrl *)(ctrl_hva + (gpa - CTRL_GPA));
		v->list = (uint32_t *)((uint8_t *)v->ctrl + PAGE_SIZE);
		v->ctrl->list_gpa = gpa + PAGE_SIZE;
		v->fd = ioctl(b->vm->fd, KVM_CREATE_VCPU, i);
		if (v->fd < 0)
			fail("KVM_CREATE_VCPU %u: %s", i, strerror(errno));
		sz = ioctl(b->vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
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
	per = (b->ntp + nv - 1) / nv;
	if (per > SYS_LIST_MAX)
		fail("--dirty %u: at most %lu pages per vCPU", b->cfg.dirty,
		     (unsigned long)SYS_LIST_MAX);
	for (i = 0; i < nv; i++) {
		struct bvcpu *v = &b->vcpus[i];

		for (n = 0; i + n * nv < b->ntp; n++) {
			struct tpage *t = &b->tp[i + n * nv];

			v->list[n] = (uint32_t)(b->slots[t->s].gpa + t->page * PAGE_SIZE);
		}
		v->ctrl->nr = n;
		v->ctrl->passes = 0;
		v->ctrl->done = 0;
		v->ctrl->seq = 0;
		v->ctrl->stop = 0;
	}
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

static void start_vcpus(struct bench *b)
{
	unsigned int i;

	vcpu_start(b->vm);
	for (i = 1; i < b->cfg.vcpus; i++)
		if (pthread_create(&b->vcpus[i].thread, NULL, extra_vcpu_thread, &b->vcpus[i]))
			fail("pthread_create");
}

static void stop_vcpus(struct bench *b)
{
	unsigned int i;

	for (i = 1; i < b->cfg.vcpus; i++)
		__atomic_store_n(&b->vcpus[i].ctrl->stop, 1, __ATOMIC_SEQ_CST);
	vcpu_stop(b->vm);
	for (i = 1; i < b->cfg.vcpus; i++)
		pthread_join(b->vcpus[i].thread, NULL);
}

static void pause_all(struct bench *b)
{
	uint64_t t0 = now_ns();
	unsigned int i, spins = 0;

	for (i = 0; i < b->cfg.vcpus; i++) {
		struct guest_ctrl *c = b->vcpus[i].ctrl;

		__atomic_store_n(&c->pause_gen, c->pause_gen | 1, __ATOMIC_SEQ_CST);
	}
	for (i = 0; i < b->cfg.vcpus; i++) {
		struct guest_ctrl *c = b->vcpus[i].ctrl;

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

static void resume_all(struct bench *b)
{
	unsigned int i;

	for (i = 0; i < b->cfg.vcpus; i++) {
		struct guest_ctrl *c = b->vcpus[i].ctrl;

		__atomic_store_n(&c->pause_gen, c->pause_gen + 1, __ATOMIC_SEQ_CST);
	}
}

static uint64_t stores(struct bench *b)	/* since the last mark_stores() */
{
	uint64_t n = 0;
	unsigned int i;

	for (i = 0; i < b->cfg.vcpus; i++)
		n += (uint32_t)(__atomic_load_n(&b->vcpus[i].ctrl->seq, __ATOMIC_RELAXED) -
				b->vcpus[i].seq0);
	return n;
}

static void mark_stores(struct bench *b)
{
	unsigned int i;

	for (i = 0; i < b->cfg.vcpus; i++) {
		struct bvcpu *v = &b->vcpus[i];

		v->seq0 = __atomic_load_n(&v->ctrl->seq, __ATOMIC_RELAXED);
		v->done0 = __atomic_load_n(&v->ctrl->done, __ATOMIC_RELAXED);
	}
}

/*
 * Wait until every vCPU has completed a whole pass over its pages that
 * started after the mark: then every page it writes is dirty again.
 * Returns false after PASS_TIMEOUT_S, a watchdog for a stuck vCPU, not a
 * speed limit: under TCG, on a loaded machine, the first pass over a fresh
 * 64 GiB memslot once took more than 20 s.
 */
static bool wait_full_pass(struct bench *b)
{
	uint64_t t0 = now_ns();
	unsigned int i, spins = 0;

	for (i = 0; i < b->cfg.vcpus; i++) {
		struct bvcpu *v = &b->vcpus[i];

		while ((uint32_t)(__atomic_load_n(&v->ctrl->done, __ATOMIC_RELAXED) -
				  v->done0) < 2) {
			if (now_ns() - t0 > PASS_TIMEOUT_S * 1000000000ULL)
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
static void wait_running(struct bench *b)
{
	uint64_t t0 = now_ns();
	unsigned int i;

	mark_stores(b);
	for (i = 0; i < b->cfg.vcpus; i++) {
		struct bvcpu *v = &b->vcpus[i];

		while ((uint32_t)(__atomic_load_n(&v->ctrl->seq, __ATOMIC_RELAXED) -
				  v->seq0) < v->ctrl->nr + 64 &&
		       now_ns() - t0 < 5000000000ULL)
			sched_yield();
	}
}

/* ------------------------------------------------------------------ */
/* Counters                                                           */

static void read_flush_stat(struct bench *b, const char *name, bool *have, uint64_t *val)
{
	int r;

	if (!*have)
		return;
	r = vm_read_stat(b->vm, false, name, val);
	if (r && b->counters_read)
		fail("reading KVM's %s statistic: %s", name, strerror(-r));
	if (r)
		*have = false;
}

static void read_counters(struct bench *b, struct counters *c)
{
	memset(c, 0, sizeof(*c));
	read_flush_stat(b, "remote_tlb_flush_requests", &b->have_flush_req, &c->kvm_flush_req);
	read_flush_stat(b, "remote_tlb_flush", &b->have_flush, &c->kvm_flush);
	b->counters_read = true;
	/* vCPU 0's exits and page faults (KVM's binary stats) */
	if (vm_read_stat(b->vm, true, "exits", &c->exits))
		c->exits = 0;
	if (vm_read_stat(b->vm, true, "pf_taken", &c->pf))
		c->pf = 0;
	if (b->cfg.verbose) {
		unsigned int i;

		for (i = 0; i < NVSTAT; i++)
			if (vm_read_stat(b->vm, true, vstat_names[i], &c->vstat[i]))
				c->vstat[i] = 0;
	}
	if (b->dbfd >= 0 && ioctl(b->dbfd, KVM_DIRTYBATCH_GET_STATS, &c->mod))
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
static void cross_check(struct bench *b, const struct counters *c0, const struct counters *c1,
			uint64_t ioctls, uint64_t pages)
{
	struct bench_result *R = b->res;
	uint64_t kvm = c1->kvm_flush_req - c0->kvm_flush_req;
	uint64_t mod = c1->mod.tlb_flushes - c0->mod.tlb_flushes;
	uint64_t calls = c1->mod.calls - c0->mod.calls;
	uint64_t mpages = c1->mod.pages_cleared - c0->mod.pages_cleared;
	char why[200] = "";

	R->xcheck_rounds++;
	R->xcheck_kvm += kvm;
	R->xcheck_mod += mod;
	R->xcheck_kick += c1->kvm_flush - c0->kvm_flush;
	if (!b->have_flush_req)
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
	if (!R->xcheck_bad++)
		snprintf(R->xcheck_first, sizeof(R->xcheck_first), "batched clear %u: %s",
			 R->xcheck_rounds, why);
	say("COUNTERS DISAGREE: batched clear %u: %s", R->xcheck_rounds, why);
}

/* ------------------------------------------------------------------ */
/* The strategies.  Each clears exactly the bits of the dirty log that */
/* lie in runs; returns the ioctls issued, adds the pages requested.   */

static void clear_one(struct bench *b, uint32_t id, uint64_t first, uint64_t num,
		      const void *bm)
{
	int r = vm_clear_dirty_log_try(b->vm, id, first, num, bm);

	if (r)
		fail("KVM_CLEAR_DIRTY_LOG slot %u first %llu num %llu: %s", id,
		     (unsigned long long)first, (unsigned long long)num, strerror(-r));
}

/* Bits of run r in word w (absolute word index in the slot). */
static uint64_t run_word_mask(const struct run *r, uint64_t w)
{
	uint64_t lo = w * 64, hi = lo + 64, end = r->start + r->len;
	uint64_t a = r->start > lo ? r->start : lo, e = end < hi ? end : hi;

	return a >= e ? 0 : bits(a - lo, e - lo);
}

static uint64_t do_perpage(struct bench *b, uint64_t *pages)
{
	uint64_t n = 0;
	unsigned int i;

	for (i = 0; i < b->nruns; i++) {
		const struct run *r = &b->runs[i];
		const struct bslot *s = &b->slots[r->s];
		uint64_t w, w0 = r->start / 64, w1 = (r->start + r->len - 1) / 64;

		for (w = w0; w <= w1; w++) {
			uint64_t m = s->log[w] & run_word_mask(r, w);

			while (m) {
				unsigned int bit = __builtin_ctzll(m);
				uint64_t one = 1ULL << bit, first = w * 64;
				uint64_t num = s->npages - first < 64 ? s->npages - first : 64;

				m &= m - 1;
				clear_one(b, s->id, first, num, &one);
				n++;
				(*pages)++;
			}
		}
	}
	return n;
}

static uint64_t do_merged(struct bench *b, uint64_t *pages)
{
	uint64_t n = 0;
	unsigned int i;

	for (i = 0; i < b->nruns; i++) {
		const struct run *r = &b->runs[i];
		struct bslot *s = &b->slots[r->s];
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
		clear_one(b, s->id, first, num, s->scratch);
		n++;
	}
	return n;
}

static uint64_t do_floor(struct bench *b, uint64_t *pages)
{
	uint64_t n = 0, w;
	unsigned int i;

	for (i = 0; i < b->nslots; i++) {
		struct bslot *s = &b->slots[i];

		if (!s->nruns)
			continue;
		for (w = 0; w < s->nwords; w++) {
			s->scratch[w] = s->log[w] & s->runmask[w];
			*pages += __builtin_popcountll(s->scratch[w]);
		}
		clear_one(b, s->id, 0, s->npages, s->scratch);
		n++;
	}
	return n;
}

static uint64_t do_library(struct bench *b, struct dirtybatch_ctx *ctx, uint64_t *pages,
			   bool *exact)
{
	struct dirtybatch_result res = { .sz = sizeof(res) };
	unsigned int i;
	int64_t r;

	for (i = 0; i < b->nruns; i++) {
		const struct run *rn = &b->runs[i];
		const struct bslot *s = &b->slots[rn->s];
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

/*
 * The bitmap words the kernel walks for the library's fallback, from this
 * round's log, as its documentation describes the calls (one per group of
 * non-zero words of a memslot at most FALLBACK_GAP_WORDS zero words
 * apart); the number of groups must be the library's ioctls, or the words
 * are marked estimated.  Batched: the words of the runs, as for merged
 * (the module walks the ranges the library hands it).
 */
static uint64_t fallback_words(struct bench *b, uint64_t *groups)
{
	uint64_t words = 0, w, last, first;
	unsigned int i;
	bool open;

	*groups = 0;
	for (i = 0; i < b->nslots; i++) {
		struct bslot *s = &b->slots[i];
		const uint64_t top = s->hot / 64 + 1 < s->nwords ? s->hot / 64 + 1 : s->nwords;

		if (!s->nruns)
			continue;
		open = false;
		first = last = 0;
		for (w = 0; w < top; w++) {
			if (!(s->log[w] & s->runmask[w]))
				continue;
			if (open && w - last - 1 <= FALLBACK_GAP_WORDS) {
				last = w;
				continue;
			}
			if (open)
				words += last - first + 1;
			open = true;
			first = last = w;
			(*groups)++;
		}
		if (open)
			words += last - first + 1;
	}
	return words;
}

/* ------------------------------------------------------------------ */
/* One round                                                          */

/* Steps 1 and 3 around the timed clear; see the top of the file. */
static void round_once(struct bench *b, enum strat sx, bool record)
{
	struct sstats *S = &b->st[sx];
	struct counters c0, c1;
	uint64_t t0, t1, t2, ioctls = 0, pages = 0, lost = 0, n_st, n_win, words = 0;
	bool exact = false, ok;
	unsigned int i;

	pause_all(b);
	for (i = 0; i < b->nslots; i++)
		vm_get_dirty_log(b->vm, b->slots[i].id, b->slots[i].log);
	for (i = 0; i < b->ntp; i++) {
		struct tpage *t = &b->tp[i];

		if (!memcmp(t->hva, t->sent, PAGE_SIZE))
			continue;
		b->checked_pages++;
		if (test_bit64(b->slots[t->s].log, t->page))
			continue;
		if (lost < 5)
			say("LOST: slot %u page %llu changed but is clean (last cleared by %s)",
			    b->slots[t->s].id, (unsigned long long)t->page,
			    t->last >= 0 ? strat_name[t->last] : "-");
		lost++;
		b->st[t->last >= 0 ? t->last : (int)sx].lost++;
	}
	resume_all(b);
	wait_running(b);

	read_counters(b, &c0);
	mark_stores(b);
	t0 = now_ns();
	switch (sx) {
	case S_PERPAGE: ioctls = do_perpage(b, &pages); break;
	case S_MERGED: ioctls = do_merged(b, &pages); break;
	case S_FLOOR: ioctls = do_floor(b, &pages); break;
	case S_BATCHED: ioctls = do_library(b, b->ctx, &pages, &exact); break;
	case S_FALLBACK: ioctls = do_library(b, b->fbctx, &pages, &exact); break;
	case S_NATIVE: ioctls = do_library(b, b->natctx, &pages, &exact); break;
	default: fail("strategy %d cannot run", (int)sx);
	}
	t1 = now_ns();
	n_st = stores(b);
	read_counters(b, &c1);
	if (sx == S_BATCHED)
		cross_check(b, &c0, &c1, ioctls, pages);
	switch (sx) {
	case S_PERPAGE: words = ioctls; break;
	case S_FLOOR: words = b->floor_words; break;
	case S_FALLBACK: {
		uint64_t groups;

		words = fallback_words(b, &groups);
		if (groups != ioctls)
			b->fb_word_mismatch++;
		break;
	}
	default: words = b->merged_words; break;
	}

	/* "send": the pages whose bits were just cleared */
	for (i = 0; i < b->ntp; i++) {
		struct tpage *t = &b->tp[i];

		if (test_bit64(b->slots[t->s].log, t->page)) {
			memcpy(t->sent, t->hva, PAGE_SIZE);
			t->last = sx;
		}
	}
	/* the rest of the throughput window, busy (see window_ns) */
	t2 = now_ns();
	if (t2 - t0 > b->busy_max_ns)
		b->busy_max_ns = t2 - t0;
	while (t2 - t0 < b->window_ns) {
		__builtin_ia32_pause();
		t2 = now_ns();
	}
	n_win = stores(b);
	mark_stores(b);
	ok = wait_full_pass(b);

	if (!record)
		return;
	S->wgps[S->n] = t2 > t0 ? n_win * 1e9 / (double)(t2 - t0) : 0;
	S->ns[S->n++] = t1 - t0;
	S->clear_ns += t1 - t0;
	S->win_ns += t2 - t0;
	S->win_stores += n_win;
	S->over_window += b->window_ns && t2 - t0 > b->window_ns + b->window_ns / 20;
	S->ioctls += ioctls;
	S->pages += pages;
	S->words += words;
	S->exact = exact;
	S->stores += n_st;
	S->exits += c1.exits - c0.exits;
	S->pf += c1.pf - c0.pf;
	for (i = 0; i < NVSTAT; i++)
		S->vstat[i] += c1.vstat[i] - c0.vstat[i];
	S->flushes += b->have_flush_req ? c1.kvm_flush_req - c0.kvm_flush_req :
					  c1.kvm_flush - c0.kvm_flush;
	S->kicks += b->have_flush ? c1.kvm_flush - c0.kvm_flush : 0;
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
/* Summary of the rounds                                               */

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

static void summarize(struct bench *b)
{
	struct bench_result *R = b->res;
	int i, k;

	R->ref = b->enabled[S_BATCHED] ? S_BATCHED : b->enabled[S_FALLBACK] ? S_FALLBACK :
		 b->enabled[S_FLOOR] ? S_FLOOR : b->norder ? b->order[0] : S_FLOOR;
	for (i = 0; i < b->norder; i++) {
		struct sstats *S = &b->st[b->order[i]];
		struct strat_result *o = &R->s[b->order[i]];
		double n = S->n ? S->n : 1;

		o->run = S->n > 0;
		o->n = S->n;
		if (S->n) {
			qsort(S->ns, S->n, sizeof(*S->ns), cmp_u64);
			o->median_us = S->n % 2 ? S->ns[S->n / 2] / 1000.0 :
				       (S->ns[S->n / 2 - 1] + S->ns[S->n / 2]) / 2000.0;
			o->p99_us = pct(S->ns, S->n, 99);
		}
		o->gps = S->win_ns ? S->win_stores * 1e9 / S->win_ns : 0;
		o->gps_clear = S->clear_ns ? S->stores * 1e9 / S->clear_ns : 0;
		o->ioctls = S->ioctls / n;
		o->holds = S->holds / n;
		o->breaks = S->breaks / n;
		o->flushes = S->flushes / n;
		o->kicks = S->kicks / n;
		o->mod_flushes = S->mod_flushes / n;
		o->pages = S->pages / n;
		o->words = S->words / n;
		o->words_exact = b->order[i] == S_PERPAGE || b->order[i] == S_MERGED ||
				 b->order[i] == S_FLOOR ||
				 (b->order[i] == S_FALLBACK && !b->fb_word_mismatch);
		o->exits = S->exits / n;
		o->pf = S->pf / n;
		for (k = 0; k < NVSTAT; k++)
			o->vstat[k] = S->vstat[k] / n;
		o->lost = S->lost;
		o->over_window = S->over_window;
		o->short_waits = S->short_waits;
		o->exact = S->exact;
		o->var_of_mean_gps = var_of_mean(S);
		R->lost += S->lost;
	}
	for (i = 0; i < b->norder; i++) {
		struct strat_result *o = &R->s[b->order[i]];

		o->ratio = R->s[R->ref].median_us > 0 ? o->median_us / R->s[R->ref].median_us : 0;
	}
	memcpy(R->order, b->order, sizeof(R->order));
	R->norder = b->norder;
	R->nslots = b->nslots;
	R->nruns = b->nruns;
	R->ntp = b->ntp;
	R->window_ns = b->window_ns;
	R->checked_pages = b->checked_pages;
	R->flush_stat = b->have_flush_req ? "remote_tlb_flush_requests" :
			b->have_flush ? "remote_tlb_flush" : "(unavailable)";
	if (b->fb_word_mismatch)
		snprintf(R->fallback_words_note, sizeof(R->fallback_words_note),
			 "fallback: in %u rounds the library's ioctls were not the groups of words "
			 "computed here: its words walked are an estimate", b->fb_word_mismatch);
}

static void free_bench(struct bench *b)
{
	unsigned int i;

	if (b->ctx)
		dirtybatch_close(b->ctx);
	if (b->fbctx)
		dirtybatch_close(b->fbctx);
	if (b->natctx)
		dirtybatch_close(b->natctx);
	for (i = 1; i < b->cfg.vcpus && b->vm; i++) {
		if (b->vcpus[i].run)
			munmap(b->vcpus[i].run, b->vcpus[i].run_size);
		if (b->vcpus[i].fd > 0)
			close(b->vcpus[i].fd);
	}
	if (b->vm)
		vm_free(b->vm);
	if (b->dbfd >= 0)
		close(b->dbfd);
	for (i = 0; b->slots && i < b->nslots; i++) {
		free(b->slots[i].log);
		free(b->slots[i].runmask);
		free(b->slots[i].scratch);
	}
	free(b->slots);
	for (i = 0; b->tp && i < b->ntp; i++)
		free(b->tp[i].sent);
	free(b->tp);
	free(b->runs);
	for (i = 0; i < NSTRAT; i++) {
		free(b->st[i].ns);
		free(b->st[i].wgps);
	}
	free(b);
}

static void expect(const struct bench *b, enum strat s, struct bench_expect *e)
{
	unsigned int i, with_runs = 0;

	for (i = 0; i < b->nslots; i++)
		with_runs += !!b->slots[i].nruns;
	e->pages = b->ntp;
	switch (s) {
	case S_PERPAGE: e->ioctls = b->ntp; e->words = b->ntp; break;
	case S_MERGED: e->ioctls = b->nruns; e->words = b->merged_words; break;
	case S_FLOOR: e->ioctls = with_runs; e->words = b->floor_words; break;
	case S_FALLBACK: e->ioctls = with_runs; e->words = b->merged_words; break;
	default: e->ioctls = 1; e->words = b->merged_words; break;
	}
}

/* ------------------------------------------------------------------ */
/* A run                                                              */

int bench_run(const struct bench_cfg *cfg, const char *label, bench_admit_fn admit,
	      void *admit_arg, struct bench_result *res, char *err, size_t errlen)
{
	struct bench *b = zalloc(sizeof(*b));
	struct dirtybatch_memslot *ml;
	const struct bench_cfg *o;
	const char *why = NULL;
	uint64_t t_setup, t_last, t_begin = now_ns();
	unsigned int i, c, k, total_rounds, done_rounds = 0;
	int e;

	memset(res, 0, sizeof(*res));
	b->cfg = *cfg;
	o = &b->cfg;
	b->res = res;
	rng_init(&b->rs, o->seed);
	b->dbfd = -1;
	b->have_flush_req = b->have_flush = true;
	quiet = o->quiet;
	res->cfg = *cfg;
	if (label) {
		snprintf(res->label, sizeof(res->label), "%s", label);
	} else {
		struct utsname u;

		uname(&u);
		snprintf(res->label, sizeof(res->label), "%s", u.release);
	}
	if (!t_start)
		t_start = now_ns();

	if (o->slots > MAX_LOGGED || o->ram_slots > o->slots || o->vcpus > MAX_VCPUS) {
		snprintf(err, errlen, "--slots %u, --ram-slots %u, --vcpus %u: at most %u, --slots, %u",
			 o->slots, o->ram_slots, o->vcpus, MAX_LOGGED, MAX_VCPUS);
		free_bench(b);
		return 2;
	}
	if (build_layout(b, err, errlen)) {
		free_bench(b);
		return 2;
	}
	build_pages(b);
	res->nslots = b->nslots;
	res->nruns = b->nruns;
	res->ntp = b->ntp;

	/* which strategies: asked for, available, admitted */
	for (k = 0; k < NSTRAT; k++) {
		struct bench_expect ex;

		if (!o->strat[k])
			continue;
		if (k == S_NATIVE && !native_backend_available(&why)) {
			snprintf(res->s[k].skipped, sizeof(res->s[k].skipped), "%s", why);
			continue;
		}
		expect(b, k, &ex);
		if (admit && !admit(admit_arg, k, &ex, res->s[k].skipped,
				    sizeof(res->s[k].skipped)))
			continue;
		b->enabled[k] = true;
		b->order[b->norder++] = k;
	}
	if (!kvm_available(&why)) {
		printf("migration_bench: SKIP: %s\n", why);
		free_bench(b);
		return EXIT_SKIP;
	}
	if (b->enabled[S_BATCHED]) {
		b->dbfd = open("/dev/" KVM_DIRTYBATCH_DEVICE_NAME, O_RDWR | O_CLOEXEC);
		if (b->dbfd < 0) {
			printf("migration_bench: SKIP: /dev/%s: %s (load the module, or use --host)\n",
			       KVM_DIRTYBATCH_DEVICE_NAME, strerror(errno));
			free_bench(b);
			return EXIT_SKIP;
		}
	}
	if (!b->norder) {
		free_bench(b);
		return 0;
	}

	b->vm = vm_create(true);
	ml = zalloc(sizeof(*ml) * b->nslots);
	for (i = 0; i < b->nslots; i++) {
		struct bslot *s = &b->slots[i];

		s->hva = vm_add_slot(b->vm, s->id, s->gpa, s->npages, KVM_MEM_LOG_DIRTY_PAGES);
		ml[i] = (struct dirtybatch_memslot){ .sz = sizeof(struct dirtybatch_memslot),
			.slot = s->id, .userspace_addr = (uint64_t)(uintptr_t)s->hva,
			.generation = 1,
			.guest_phys_addr = s->gpa, .npages = s->npages };
		res->slots_with_runs += !!s->nruns;
	}
	map_pages(b);
	setup_vcpus(b);
	for (i = 0; i < b->nruns; i++) {
		res->total_run_pages += b->runs[i].len;
		res->misaligned += b->runs[i].start % 64 != 0;
	}
	/* one context per library strategy, each forced to its backend */
	for (k = 0; k < 3; k++) {
		static const struct {
			enum strat s;
			uint32_t backend;
			int mode;
		} lib[] = {
			{ S_BATCHED, DIRTYBATCH_BACKEND_SHIM, DIRTYBATCH_MODE_MODULE },
			{ S_FALLBACK, DIRTYBATCH_BACKEND_FALLBACK, DIRTYBATCH_MODE_FALLBACK },
			{ S_NATIVE, DIRTYBATCH_BACKEND_NATIVE, DIRTYBATCH_MODE_NATIVE },
		};
		struct dirtybatch_ctx **cp = k == 0 ? &b->ctx : k == 1 ? &b->fbctx : &b->natctx;
		struct dirtybatch_opts dopts = { .sz = sizeof(dopts), .backend = lib[k].backend };

		if (!b->enabled[lib[k].s])
			continue;
		e = dirtybatch_open(b->vm->fd, &dopts, cp);
		if (e)
			fail("dirtybatch_open (%s): %s", strat_name[lib[k].s], strerror(-e));
		e = dirtybatch_set_layout(*cp, ml, b->nslots);
		if (e)
			fail("dirtybatch_set_layout: %s", strerror(-e));
		if (dirtybatch_mode(*cp) != lib[k].mode)
			fail("libdirtybatch did not pick the %s backend", strat_name[lib[k].s]);
	}
	free(ml);

	note("VM: %u vCPUs; %u dirty-logged memslots: %u RAM (%s %llu MiB) + %u small "
	     "(sizes not multiples of 64 pages)", o->vcpus, b->nslots, o->ram_slots,
	     o->ram_slot_pages ? "each" : "in all",
	     (unsigned long long)(o->ram_slot_pages ? res->ram_slot_pages * PAGE_SIZE / MIB :
				  o->mem_mib),
	     b->nslots - o->ram_slots);
	note("clear requests: %u runs/round over %u memslots, %llu pages, %llu runs "
	     "start off a 64-page boundary", b->nruns, res->slots_with_runs,
	     (unsigned long long)res->total_run_pages, (unsigned long long)res->misaligned);
	note("dirty rate: the vCPUs write %u pages in a loop; each round clears them all",
	     b->ntp);
	note("method: strategies take turns on the same VM, round-robin, order rotated "
	     "every cycle; before each sync every vCPU completes a full pass, so every "
	     "round sees the same %u dirty pages", b->ntp);
	for (k = 0; k < (unsigned int)b->norder; k++) {
		b->st[b->order[k]].ns = zalloc(sizeof(uint64_t) * o->rounds);
		b->st[b->order[k]].wgps = zalloc(sizeof(double) * o->rounds);
	}

	/*
	 * Open KVM's stats fds now: KVM_GET_STATS_FD on a vCPU waits for its
	 * mutex, which KVM_RUN holds while the guest loops.
	 */
	{
		struct counters cn;

		read_counters(b, &cn);
	}
	/* first sync: everything is dirty (INITIALLY_SET); clear all runs */
	start_vcpus(b);
	mark_stores(b);
	if (!wait_full_pass(b))
		fail("the vCPUs made no progress in %u s", PASS_TIMEOUT_S);
	pause_all(b);
	for (i = 0; i < b->nslots; i++)
		vm_get_dirty_log(b->vm, b->slots[i].id, b->slots[i].log);
	{
		uint64_t pages = 0;

		do_floor(b, &pages);
	}
	for (i = 0; i < b->ntp; i++)
		memcpy(b->tp[i].sent, b->tp[i].hva, PAGE_SIZE);
	resume_all(b);
	mark_stores(b);
	wait_full_pass(b);
	t_setup = now_ns();
	note("setup done; %u warm-up + %u measured rounds per strategy, strategies: %s%s%s%s",
	     o->warmup, o->rounds, strat_name[b->order[0]],
	     b->norder > 1 ? ", " : "", b->norder > 1 ? strat_name[b->order[1]] : "",
	     b->norder > 2 ? ", ..." : "");

	for (c = 0; c < o->warmup; c++)
		for (k = 0; k < (unsigned int)b->norder; k++)
			round_once(b, b->order[(c + k) % b->norder], false);
	if (o->window_ms) {
		b->window_ns = o->window_ms * 1000000ULL;
	} else if (b->busy_max_ns) {
		b->window_ns = (b->busy_max_ns + b->busy_max_ns / 4 + 999999) / 1000000 * 1000000;
		res->window_from_warmup = true;
	}
	note("guest throughput window: %.0f ms from the start of each clear%s",
	     b->window_ns / 1e6, o->window_ms ? " (--window-ms)" : b->busy_max_ns ?
	     " (the warm-up's slowest clear + send, plus a quarter)" :
	     ": none, each round's own clear + send (--warmup 0)");
	total_rounds = o->rounds * b->norder;
	res->rounds = o->rounds;
	t_last = now_ns();
	for (c = 0; c < o->rounds; c++) {
		uint64_t tc = now_ns();

		for (k = 0; k < (unsigned int)b->norder; k++) {
			round_once(b, b->order[(c + k) % b->norder], true);
			done_rounds++;
		}
		tc = now_ns() - tc;
		if (o->budget && c + 1 < o->rounds &&
		    now_ns() - t_setup + tc > o->budget * 1000000000ULL) {
			note("time budget of %u s reached: stopping after %u rounds per strategy",
			     o->budget, c + 1);
			res->budget_hit = c + 1;
			res->rounds = c + 1;
			break;
		}
		if (!quiet && (now_ns() - t_last > 10000000000ULL || c + 1 == o->rounds)) {
			char line[512];
			size_t off = 0;

			for (k = 0; k < (unsigned int)b->norder; k++) {
				struct sstats *S = &b->st[b->order[k]];

				off += snprintf(line + off, sizeof(line) - off, "%s%s %.0f us",
						k ? ", " : "", strat_name[b->order[k]],
						S->clear_ns / 1000.0 / (S->n ? S->n : 1));
			}
			say("round %u/%u (%.0f s): mean clear %s", done_rounds, total_rounds,
			    (now_ns() - t_setup) / 1e9, line);
			t_last = now_ns();
		}
	}
	stop_vcpus(b);
	/* final check with the vCPUs stopped */
	for (i = 0; i < b->nslots; i++)
		vm_get_dirty_log(b->vm, b->slots[i].id, b->slots[i].log);
	for (i = 0; i < b->ntp; i++) {
		struct tpage *t = &b->tp[i];

		if (memcmp(t->hva, t->sent, PAGE_SIZE) &&
		    !test_bit64(b->slots[t->s].log, t->page)) {
			say("LOST at the end: slot %u page %llu", b->slots[t->s].id,
			    (unsigned long long)t->page);
			b->st[t->last >= 0 ? t->last : b->order[0]].lost++;
		}
	}
	note("done: %llu changed pages checked against the dirty log",
	     (unsigned long long)b->checked_pages);
	summarize(b);
	res->seconds = (now_ns() - t_begin) / 1e9;
	free_bench(b);
	return 0;
}
