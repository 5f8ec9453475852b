// SPDX-License-Identifier: GPL-2.0
/*
 * fuzz_test: random and mutated KVM_DIRTYBATCH_CLEAR calls, every one
 * checked against an oracle of the documented contract, from one thread;
 * fuzz_race_test.c is the same generator and oracle under races.
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
 * Invariant violations: an errno not possible for the input, a wrong
 * error_index or pages_cleared, a dirty bit changed by a failed call or
 * not as the model says, fields other than the out fields written,
 * counters that do not add up, live_allocs not 0 when idle.
 *
 * Environment: KVM_DIRTYBATCH_SEED, KVM_DIRTYBATCH_FUZZ_CALLS (calls,
 * default 50000).  The test ends with "fuzz-summary:" lines (scripts/fuzz.sh
 * reads them).
 *
 * With KVM_DIRTYBATCH_BACKEND=native both programs call KVM's own
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
 * report, the race test's threads); this file and fuzz_race_test.c hold
 * one test each.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "fuzz/fuzz.h"

DIRTYBATCH_EMPTY_FIXTURE(fuzz)

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

DIRTYBATCH_TEST_MAIN(true)
