// SPDX-License-Identifier: GPL-2.0
/*
 * huge_batch_test: clearing a huge memslot in one range, with
 * KVM_DIRTYBATCH_CLEAR and, for comparison, with one plain
 * KVM_CLEAR_DIRTY_LOG, with and without a vCPU faulting meanwhile.
 *
 * Cases: a 64 GiB and a 1 TiB memslot, each cleared while the vCPU faults
 * and idle, by the module and then by KVM_CLEAR_DIRTY_LOG; the smaller
 * memslot and the faulting case first, the order in which the module's
 * longest hold is expected to grow, so that each module clear is likely to
 * raise the module-wide maximum and report its own.  Each clear gets a
 * fresh VM whose memslot starts at guest-physical 0 (the guests'
 * CPUs have 40 physical address bits: a 1 TiB memslot fits nowhere else)
 * and holds the payload and its control page in place of the helper's
 * system slot.  The memslot is MAP_NORESERVE and dirty-logged with
 * KVM_DIRTY_LOG_INITIALLY_SET: every page is dirty without a byte of guest
 * memory touched.  Guest memory needed: KVM allocates two bitmaps of
 * npages / 8 bytes (2 x 32 MiB for 1 TiB), the test a bitmap argument and
 * a dirty-log copy as large and 16 MiB of samples, and the vCPU touches at
 * most MAX_TOUCH pages (384 MiB): about 530 MiB for 1 TiB, in a 2 GiB guest.
 *
 * The vCPU writes one never-touched page per KVM_RUN (a payload of its
 * own: write, then an I/O exit), so every KVM_RUN is one NPT fault, which
 * takes the MMU lock for read; the host thread times each KVM_RUN.
 *
 * Checked per module clear: no error; every page cleared exactly once
 * (pages_cleared == npages); MMU-lock holds == lock breaks + 1, at most one
 * break per bitmap word; one dirty_log_syncs; with the vCPU faulting,
 * breaks > 0 (a vCPU waiting for the MMU lock makes the module drop it).
 * Per plain clear: no error, no module counter moved.  After either: the
 * pages the guest wrote before the clear are clean, those written after it
 * dirty, and no other page is dirty but the control page.  No timing is
 * asserted (TCG): the fault latencies during the clear (p50/p99/max), the
 * longest module hold and the plain call's duration (one hold, the whole
 * range) are printed as "huge-summary:" lines (scripts/fuzz.sh collects
 * them); under TCG the absolute times are inflated: compare the columns.
 *
 * max_hold_ns is a module-wide maximum since load, not resettable: a clear
 * that raised it reports its own longest hold, one that did not "<= " the
 * maximum so far (the maximum before the clear is printed too).
 *
 * Run time in a TCG guest: a few seconds for 64 GiB, about 30 s with
 * 1 TiB (make fuzz); the plain 1 TiB clear with the vCPU faulting holds
 * the MMU lock for 4 to 10 s while the vCPU spins for it (KVM's own
 * behaviour: what the module's lock breaks avoid), too close to the
 * soft-lockup watchdog for make check, hence the default.
 *
 * KVM_DIRTYBATCH_HUGE_GIB: memslot sizes in GiB, comma-separated (default
 * "64"; each from 4, the fresh pages at 1..4 GiB, to 1024).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "util.h"

#define GIB		(1ULL << 30)
#define HUGE_SLOT	1
#define FRESH_GPA	GIB			/* fresh pages: 1 GiB .. 4 GiB */
#define MAX_TOUCH	98304U			/* pages the vCPU writes at most */
#define MAX_SAMPLES	(1U << 20)
#define PACE_PORT	0x11
#define MAX_SIZES	4
#ifdef DB_EMULATE
#define EMULATED	true		/* the emulation never breaks the lock */
#else
#define EMULATED	false
#endif

/* control words of the payload, in the control page */
#define HC_STOP		0x100
#define HC_BASE		0x104
#define HC_NR		0x108
#define HC_IDX		0x10c

/*
 * Guest payload (32-bit, flat, no paging; %esi = control page): write the
 * next never-touched page, then exit to the host through PACE_PORT, so that
 * each KVM_RUN is one page fault.
 */
asm(".pushsection .rodata.huge_guest, \"a\"\n"
    ".globl huge_guest_start\n"
    "huge_guest_start:\n"
    ".code32\n"
    "1:	cmpl	$0, 0x100(%esi)\n"
    "	jne	3f\n"
    "	movl	0x10c(%esi), %ecx\n"
    "	cmpl	0x108(%esi), %ecx\n"
    "	jae	3f\n"
    "	movl	%ecx, %edi\n"
    "	shll	$12, %edi\n"
    "	addl	0x104(%esi), %edi\n"
    "	movl	%ecx, (%edi)\n"
    "	incl	%ecx\n"
    "	movl	%ecx, 0x10c(%esi)\n"
    "	movb	$1, %al\n"
    "	outb	%al, $0x11\n"
    "	jmp	1b\n"
    "3:	movb	$1, %al\n"
    "	outb	%al, $0x10\n"
    "	hlt\n"
    "	jmp	3b\n"
    ".code64\n"
    ".globl huge_guest_end\n"
    "huge_guest_end:\n"
    ".popsection\n");
extern const unsigned char huge_guest_start[], huge_guest_end[];

struct sample {
	uint64_t t, d;			/* start of KVM_RUN, its duration (ns) */
};

/* one clear */
struct run {
	int err;
	uint64_t clear_ns, pages_cleared;
	uint64_t holds, breaks, syncs, hold_before, hold_after;
	uint64_t during, base_p99, p50, p99, max, written;
	uint64_t dirty_after;
};

struct hctx {
	struct vm *vm;
	struct sample *s;
	volatile uint32_t n;
	uint64_t pace_ns;
	int failed;
};

static volatile uint32_t *ctrl32(struct vm *vm, unsigned int off)
{
	return (volatile uint32_t *)((uint8_t *)vm->ctrl + off);
}

static void *vcpu_fn(void *arg)
{
	struct hctx *h = arg;
	struct kvm_run *run = h->vm->vcpu->run;
	struct timespec pace = { 0, (long)h->pace_ns };
	uint64_t t0, t1;

	for (;;) {
		t0 = now_ns();
		if (ioctl(h->vm->vcpu->fd, KVM_RUN, 0)) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			h->failed = errno;
			return NULL;
		}
		t1 = now_ns();
		if (run->exit_reason != KVM_EXIT_IO) {
			h->failed = 1000 + run->exit_reason;
			return NULL;
		}
		if (run->io.port == GUEST_EXIT_PORT)
			return NULL;
		if (run->io.port != PACE_PORT) {
			h->failed = 2000 + run->io.port;
			return NULL;
		}
		if (h->n < MAX_SAMPLES) {
			h->s[h->n] = (struct sample){ t0, t1 - t0 };
			__atomic_store_n(&h->n, h->n + 1, __ATOMIC_RELEASE);
		}
		if (h->pace_ns)
			nanosleep(&pace, NULL);
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* percentile p (0..100) of v[0..n), sorted in place */
static uint64_t pct(uint64_t *v, uint64_t n, double p)
{
	uint64_t i;

	if (!n)
		return 0;
	qsort(v, n, sizeof(*v), cmp_u64);
	i = (uint64_t)(p / 100.0 * n);
	return v[i >= n ? n - 1 : i];
}

static void wait_samples(struct hctx *h, uint32_t n, uint64_t max_ns)
{
	uint64_t t0 = now_ns();

	while (__atomic_load_n(&h->n, __ATOMIC_ACQUIRE) < n && now_ns() - t0 < max_ns &&
	       !h->failed)
		usleep(10000);
}

/*
 * A VM whose only memslot, @npages dirty-logged pages at guest-physical 0,
 * also holds the payload and the control page (the helper's pointers are
 * moved there), and one vCPU.
 */
static struct vm *huge_vm(uint64_t npages)
{
	struct vm *vm = vm_create(true);
	uint8_t *hva;

	vm_delete_slot(vm, SYS_SLOT);
	hva = vm_add_slot(vm, HUGE_SLOT, 0, npages, KVM_MEM_LOG_DIRTY_PAGES);
	vm->ctrl = (struct guest_ctrl *)(hva + SYS_CTRL_GPA);
	vm->list = (uint32_t *)(hva + SYS_LIST_GPA);
	memcpy(hva + SYS_CODE_GPA, huge_guest_start, huge_guest_end - huge_guest_start);
	/* one 4 KiB page per fault on the host side too */
	madvise(hva + FRESH_GPA, (size_t)MAX_TOUCH * PAGE_SIZE, MADV_NOHUGEPAGE);
	vm_create_vcpu(vm);
	return vm;
}

struct bufs {
	uint64_t *ones, *bm;
	struct sample *s;
};

static void run_one(struct __test_metadata *_metadata, uint64_t npages, bool faulting,
		    bool batched, int dbfd, const struct bufs *b, struct run *m)
{
	const uint64_t fresh0 = FRESH_GPA / PAGE_SIZE, ctrl_gfn = SYS_CTRL_GPA / PAGE_SIZE;
	struct kvm_dirtybatch_stats s0, s1;
	struct kvm_dirtybatch_range r;
	struct kvm_dirtybatch_clear c;
	uint64_t *v, ts, te, i, nb = 0, nd = 0, w, dirty_fresh = 0;
	struct hctx h = { 0 };
	bool ctrl_dirty, d;
	pthread_t th;

	memset(m, 0, sizeof(*m));
	h.vm = huge_vm(npages);
	h.s = b->s;
	h.pace_ns = 100000;
	*ctrl32(h.vm, HC_STOP) = 0;
	*ctrl32(h.vm, HC_BASE) = FRESH_GPA;
	*ctrl32(h.vm, HC_NR) = MAX_TOUCH;
	*ctrl32(h.vm, HC_IDX) = 0;
	if (faulting) {
		ASSERT_EQ(0, pthread_create(&th, NULL, vcpu_fn, &h));
		wait_samples(&h, 300, 5000000000ULL);		/* baseline */
	}

	ASSERT_EQ(0, db_get_stats(dbfd, &s0));
	ts = now_ns();
	if (batched) {
		r = (struct kvm_dirtybatch_range){ .slot = HUGE_SLOT, .num_pages = npages,
						   .dirty_bitmap = (uintptr_t)b->ones };
		c = (struct kvm_dirtybatch_clear){ .vm_fd = h.vm->fd, .count = 1,
			.range_size = sizeof(r), .ranges = (uintptr_t)&r };
		m->err = db_clear(dbfd, &c);
		m->pages_cleared = c.pages_cleared;
	} else {
		m->err = vm_clear_dirty_log_try(h.vm, HUGE_SLOT, 0, npages, b->ones);
	}
	te = now_ns();
	ASSERT_EQ(0, db_get_stats(dbfd, &s1));
	m->clear_ns = te - ts;
	m->holds = s1.mmu_lock_holds - s0.mmu_lock_holds;
	m->breaks = s1.lock_breaks - s0.lock_breaks;
	m->syncs = s1.dirty_log_syncs - s0.dirty_log_syncs;
	m->hold_before = s0.max_hold_ns;
	m->hold_after = s1.max_hold_ns;

	if (faulting) {
		/* some faults after the clear, then stop the guest */
		i = __atomic_load_n(&h.n, __ATOMIC_ACQUIRE);
		wait_samples(&h, i + 100, 3000000000ULL);
		*ctrl32(h.vm, HC_STOP) = 1;
		pthread_join(th, NULL);
		ASSERT_EQ(0, h.failed) TH_LOG("vCPU loop failed: %d", h.failed);
	}
	m->written = *ctrl32(h.vm, HC_IDX);
	ASSERT_EQ(h.n, m->written) TH_LOG("pages written vs KVM_RUNs timed");

	/* the faults that overlap the clear, and those before it */
	v = calloc(h.n + 1, sizeof(*v));
	ASSERT_NE(NULL, v);
	for (i = 0; i < h.n; i++)
		if (h.s[i].t < te && h.s[i].t + h.s[i].d > ts)
			v[nd++] = h.s[i].d;
	m->during = nd;
	m->max = pct(v, nd, 100);
	m->p99 = pct(v, nd, 99);
	m->p50 = pct(v, nd, 50);
	for (i = 0; i < h.n; i++)
		if (h.s[i].t + h.s[i].d <= ts)
			v[nb++] = h.s[i].d;
	m->base_p99 = pct(v, nb, 99);
	free(v);

	/*
	 * Page i of the fresh ones is written by KVM_RUN i: written before
	 * the clear, it was cleared and never written again; written after,
	 * it is dirty.  Besides, only the control page may be dirty (the
	 * guest writes its page index there).
	 */
	vm_get_dirty_log(h.vm, HUGE_SLOT, b->bm);
	for (w = 0; w < npages / 64; w++)
		m->dirty_after += __builtin_popcountll(b->bm[w]);
	ctrl_dirty = test_bit64(b->bm, ctrl_gfn);
	for (i = 0; i < h.n; i++) {
		d = test_bit64(b->bm, fresh0 + i);
		dirty_fresh += d;
		if (h.s[i].t + h.s[i].d <= ts) {
			EXPECT_FALSE(d) TH_LOG("page %llu written before the clear is dirty after it",
					       (unsigned long long)i);
		} else if (h.s[i].t > te) {
			EXPECT_TRUE(d) TH_LOG("page %llu written after the clear is clean",
					      (unsigned long long)i);
		}
	}
	EXPECT_EQ(dirty_fresh + ctrl_dirty, m->dirty_after)
		TH_LOG("dirty pages the guest never wrote: %llu dirty, %llu of them written",
		       (unsigned long long)m->dirty_after, (unsigned long long)dirty_fresh);
	if (!faulting)
		EXPECT_EQ(0, m->dirty_after);
	vm_free(h.vm);
}

static void print_run(uint64_t gib, bool faulting, bool batched, const struct run *m)
{
	char hold[192], faults[192];

	if (batched && !db_backend_has_stats())
		snprintf(hold, sizeof(hold), "no lock counters (KVM's own ioctl)");
	else if (batched)
		snprintf(hold, sizeof(hold), "MMU-lock holds %llu, breaks %llu, longest %s%.3f ms (module max before %.3f ms), syncs %llu",
			 (unsigned long long)m->holds, (unsigned long long)m->breaks,
			 m->hold_after > m->hold_before ? "" : "<= ", m->hold_after / 1e6,
			 m->hold_before / 1e6, (unsigned long long)m->syncs);
	else
		snprintf(hold, sizeof(hold), "one MMU-lock hold of the whole range");
	if (faulting)
		snprintf(faults, sizeof(faults), "vCPU faults during it %llu: p50 %.3f ms, p99 %.3f ms, max %.3f ms (before it p99 %.3f ms)",
			 (unsigned long long)m->during, m->p50 / 1e6, m->p99 / 1e6,
			 m->max / 1e6, m->base_p99 / 1e6);
	else
		snprintf(faults, sizeof(faults), "no vCPU running");
	ksft_print_msg("huge-summary: %4llu GiB, %s, %s: clear %.3f s; %s; %s\n",
		       (unsigned long long)gib, faulting ? "vCPU faulting" : "idle",
		       batched ? db_backend_ioctl() : "KVM_CLEAR_DIRTY_LOG",
		       m->clear_ns / 1e9, hold, faults);
	fflush(stdout);
}

static void check_run(struct __test_metadata *_metadata, uint64_t gib, bool faulting,
		      bool batched, const struct run *m)
{
	const uint64_t npages = gib * GIB / PAGE_SIZE;

	EXPECT_EQ(0, m->err) TH_LOG("%llu GiB, %s: %s", (unsigned long long)gib,
				    batched ? db_backend_ioctl() : "KVM_CLEAR_DIRTY_LOG",
				    strerror(-m->err));
	if (!batched) {
		/* the module is not involved */
		EXPECT_EQ(0, m->holds);
		EXPECT_EQ(0, m->breaks);
		EXPECT_EQ(0, m->syncs);
		return;
	}
	/* KVM's native ioctl has no counters: its hold is not observable here */
	if (!db_backend_has_stats())
		return;
	/* every page was dirty (INITIALLY_SET): each cleared exactly once */
	EXPECT_EQ(npages, m->pages_cleared);
	EXPECT_EQ(m->breaks + 1, m->holds);
	EXPECT_GE(npages / 64, m->breaks) TH_LOG("more breaks than bitmap words");
	EXPECT_EQ(1, m->syncs);
	if (faulting && !EMULATED)
		EXPECT_LT(0, m->breaks)
			TH_LOG("%llu GiB: no lock break while the vCPU faulted (%llu faults during the clear)",
			       (unsigned long long)gib, (unsigned long long)m->during);
}

DIRTYBATCH_EMPTY_FIXTURE(huge)

TEST_F_TIMEOUT(huge, batch_vs_plain, 1800)
{
	const char *env = getenv("KVM_DIRTYBATCH_HUGE_GIB");
	uint64_t gib[MAX_SIZES], maxpages = 0, t0 = now_ns();
	struct run res[MAX_SIZES][2][2];	/* size, idle/faulting, plain/batched */
	const char *p = env && *env ? env : "64";
	struct bufs b;
	int n = 0, k, f, bt, dbfd;
	char *end;

	while (*p && n < MAX_SIZES) {
		gib[n] = strtoull(p, &end, 0);
		ASSERT_TRUE(end != p && gib[n] >= 4 && gib[n] <= 1024)
			TH_LOG("KVM_DIRTYBATCH_HUGE_GIB=%s: sizes from 4 to 1024", env);
		if (gib[n] * GIB / PAGE_SIZE > maxpages)
			maxpages = gib[n] * GIB / PAGE_SIZE;
		n++;
		p = *end == ',' ? end + 1 : end;
	}
	ASSERT_LT(0, n);
	dbfd = db_open();
	ASSERT_LE(0, dbfd);
	b.ones = malloc(maxpages / 8);
	b.bm = malloc(maxpages / 8);
	b.s = calloc(MAX_SAMPLES, sizeof(*b.s));
	ASSERT_TRUE(b.ones && b.bm && b.s);
	memset(b.ones, 0xff, maxpages / 8);

	/* per size: faulting, then idle; the module, then plain */
	for (k = 0; k < n; k++) {
		for (f = 1; f >= 0; f--) {
			for (bt = 1; bt >= 0; bt--) {
				run_one(_metadata, gib[k] * GIB / PAGE_SIZE, f, bt, dbfd, &b,
					&res[k][f][bt]);
				print_run(gib[k], f, bt, &res[k][f][bt]);
				check_run(_metadata, gib[k], f, bt, &res[k][f][bt]);
			}
		}
	}

	ksft_print_msg("huge-summary: size | vCPU | %s: longest hold, holds, breaks, fault p99 | KVM_CLEAR_DIRTY_LOG: duration (one hold), fault p99\n",
		       db_backend_ioctl());
	for (k = 0; k < n; k++)
		for (f = 1; f >= 0; f--) {
			const struct run *bm = &res[k][f][1], *pl = &res[k][f][0];
			char p99b[32] = "-", p99p[32] = "-", holds[80] = "n/a, n/a, n/a";

			if (f) {
				snprintf(p99b, sizeof(p99b), "%.3f ms", bm->p99 / 1e6);
				snprintf(p99p, sizeof(p99p), "%.3f ms", pl->p99 / 1e6);
			}
			if (db_backend_has_stats())
				snprintf(holds, sizeof(holds), "%s%.3f ms, %llu, %llu",
					 bm->hold_after > bm->hold_before ? "" : "<= ",
					 bm->hold_after / 1e6, (unsigned long long)bm->holds,
					 (unsigned long long)bm->breaks);
			ksft_print_msg("huge-summary: %4llu GiB | %-8s | %s, %s | %.3f ms, %s\n",
				       (unsigned long long)gib[k], f ? "faulting" : "idle",
				       holds, p99b, pl->clear_ns / 1e6, p99p);
		}
	ksft_print_msg("huge-summary: %d clears in %.1f s\n", 4 * n, (now_ns() - t0) / 1e9);
	free(b.ones);
	free(b.bm);
	free(b.s);
	close(dbfd);
}

DIRTYBATCH_TEST_MAIN(true)
