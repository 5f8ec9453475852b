// SPDX-License-Identifier: GPL-2.0
/*
 * fuzz_race_test: fuzz_test's random and mutated calls and its oracle
 * (fuzz/), with other threads changing what the calls name meanwhile.
 *
 * fuzz.races  (threads): fuzz_test.c's generator on the stable memslots
 *	(still exact), while other threads add, move and delete memslots and toggle
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
 * Invariant violations are those of fuzz_test.c; so is what is generated
 * and checked with KVM_DIRTYBATCH_BACKEND=native.
 *
 * Environment: KVM_DIRTYBATCH_SEED, KVM_DIRTYBATCH_FUZZ_RACE_CALLS (calls
 * of all threads, default 20000) and KVM_DIRTYBATCH_FUZZ_RACE_SECONDS (the
 * time limit, default 6).  The test ends with "fuzz-summary: races" lines
 * (scripts/fuzz.sh reads them).
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "fuzz/fuzz.h"

DIRTYBATCH_EMPTY_FIXTURE(fuzz)

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
