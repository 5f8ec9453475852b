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
 *
 * The fuzzer is a library beside this file: fuzz/fuzz.h lists its parts
 * (model, memory map, oracle, generator, mutations, checks, world,
 * report, the race test's threads); this file holds the two tests.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "fuzz/fuzz.h"

/* ------------------------------------------------ the deterministic test */

DIRTYBATCH_NO_FIXTURE(fuzz)

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
