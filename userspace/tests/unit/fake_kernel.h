// SPDX-License-Identifier: LGPL-2.1 OR MIT
/*
 * The unit tests' shared fixture: a fake kernel behind the library's
 * backend hook, the naive per-page model it is checked against, and a
 * test case (struct unit_case) that holds both with a library context.
 *
 * fake_kernel.c implements it; the test files beside it use it; main.c
 * runs them in a fixed order (unit.h).
 */
#ifndef DIRTYBATCH_UNIT_FAKE_KERNEL_H
#define DIRTYBATCH_UNIT_FAKE_KERNEL_H

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dirtybatch_internal.h"
#include "rng.h"
#include "tap.h"

/* Tests report through unit_ok() (unit.h): tap_ok() counts per file. */
#pragma GCC poison tap_ok

#define FAKE_VM_FD	1000
#define db_test_offsetofend(type, member) \
	(offsetof(type, member) + sizeof(((type *)0)->member))
#define MAXS		12	/* memslots of a unit_case */
#define MS(...) ((struct dirtybatch_memslot){ .sz = sizeof(struct dirtybatch_memslot), \
	__VA_ARGS__ })

/* Seeded by each randomized case (run_case()); the directed tests go on from there. */
extern struct rng case_rng;

#ifdef DB_WRAP_MALLOC
/* Allocations so far (the build linked with --wrap=malloc,calloc,realloc). */
extern unsigned long allocs;
extern uint64_t alloc_bytes;
#endif

/* What the randomized cases exercised (test_randomized() prints it). */
struct coverage {
	uint64_t add_ok[3], add_err[3], errs[8];
	uint64_t submits, module_submits, injected, ranges, pages, tails;
	uint64_t layout_ok, layout_err, toggles, discards;
};
extern struct coverage coverage;

/* One memslot, in the model (what is queued) and the fake kernel (dirty bits). */
struct model_slot {
	uint32_t slot;
	uint64_t gpa, npages;
	uint8_t *q;	/* queued (model) */
	uint8_t *kd;	/* kernel dirty bit (fake kernel) */
	uint8_t *clr;	/* requested during the current submit */
};

/* A range the library sent to the fake kernel. */
struct sent_range {
	uint32_t slot;
	uint32_t num;
	uint64_t first;
	bool applied;
};

/* One KVM_DIRTYBATCH_CLEAR call: its ranges and bitmap bytes. */
struct batch_call {
	uint32_t count;
	uint64_t bytes, first_bytes;
};

/*
 * A test case: a library context on the fake kernel, the model of its
 * memslots, the fake kernel's settings and records, and the expected
 * stats.  @bad counts failed checks, @why says the first.
 */
struct unit_case {
	struct dirtybatch_ctx *ctx;
	unsigned int shift;
	uint64_t ps;
	struct model_slot s[MAXS];
	int n;
	uint64_t queued;

	bool module_cfg, forced;
	struct kvm_dirtybatch_info info;
	uint64_t maxw;
	uint64_t gap;		/* fallback: zero words a call may bridge */
	uint64_t mgap;		/* module: zero words a range may bridge */
	uint32_t stride;

	/* fake kernel */
	int64_t fail_at;
	int fail_err;
	uint32_t fail_pick;
	int64_t calls;
	bool failed;
	bool fail_has_range;
	struct sent_range fail_rec;
	struct sent_range *recs;
	size_t nrec, caprec;
	struct batch_call *chunks;
	size_t nchunk, capchunk;
	uint64_t kcleared;
	uint64_t applied_pages;

	/* expected cumulative stats */
	struct dirtybatch_stats est;

	int bad;
	char why[512];
};

__attribute__((format(printf, 2, 3)))
void fail(struct unit_case *t, const char *fmt, ...);
struct model_slot *model_find_slot(struct unit_case *t, uint32_t slot);

/* The fake kernel: KVM_CLEAR_DIRTY_LOG and KVM_DIRTYBATCH_CLEAR, checked and recorded. */
extern const struct dirtybatch_backend fk_backend;

/* The model. */
void model_slot_init(struct model_slot *m, uint32_t slot, uint64_t gpa,
		     uint64_t npages, int kd_mode);
void model_slot_free(struct model_slot *m);
void model_queue(struct unit_case *t, struct model_slot *m, uint64_t p);
void model_install(struct unit_case *t, const struct dirtybatch_memslot *d, int n);
int range_cmp(const void *a, const void *b);
size_t expected_ranges(const struct unit_case *t, uint64_t maxw, uint64_t gap,
		       struct sent_range **out);

/* Submit, checked against the model; pending count, checked. */
bool module_mode(const struct unit_case *t);
void check_pending(struct unit_case *t, const char *what);
void submit_checked(struct unit_case *t, bool inject);

/* Random lengths (1..max) and pages (< npages), edge values favoured. */
uint64_t rnd_len(uint64_t max);
uint64_t rnd_page(uint64_t npages);

/* A case for the directed tests: a context on the fake kernel with layout @d. */
struct unit_case *unit_case_new(bool module, uint32_t max_ranges, uint32_t max_bytes,
				const struct dirtybatch_memslot *d, int n);
struct unit_case *unit_case_two_slots(void);
void unit_case_free(struct unit_case *t);
void unit_case_delete(struct unit_case *t);

/* Library add + the same in the model; the library's return value. */
int queue_pages(struct unit_case *t, uint32_t slot, uint64_t first, uint64_t n);
int queue_gpa(struct unit_case *t, uint32_t as, uint64_t gpa, uint64_t len);
int queue_bitmap(struct unit_case *t, uint32_t slot, uint64_t first, uint64_t n,
		 const uint64_t *bm, uint64_t off);
/* Forget the ranges sent and what is queued in the model. */
void reset_round(struct unit_case *t);
/* The ranges sent are exactly @e, in order. */
bool sent_ranges_equal(struct unit_case *t, const struct sent_range *e, size_t n);

#endif
