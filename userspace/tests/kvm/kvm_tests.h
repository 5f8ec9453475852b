// SPDX-License-Identifier: LGPL-2.1 OR MIT
/*
 * What the parts of the real-KVM tests share: the test VM (struct tvm, its
 * memslots in KVM beside a per-page model of their dirty log), the random
 * batches queued on it and the test case around a test (struct kt_case),
 * in test_vm.c; the tests, a file a feature; main.c runs them in a fixed
 * order, which keeps the TAP numbers as they were.
 *
 * tap.h counts TAP points in static variables, a count per translation
 * unit, so only main.c calls tap_ok() and tap_skip(): a test returns its
 * verdict and says in c->why what failed.  tap_diag() keeps no count: use
 * it anywhere.
 */
#ifndef DIRTYBATCH_KVM_TESTS_H
#define DIRTYBATCH_KVM_TESTS_H

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dirtybatch.h"
#include "rng.h"
#include "tap.h"
#include "vm.h"

/* The tests' random numbers, seeded in main() (DIRTYBATCH_TEST_SEED). */
extern struct rng kt_rng;

/*
 * The batch backend the "module" tests expect: the shim, or with
 * DIRTYBATCH_BACKEND=native (a guest with the patched KVM modules) KVM's
 * own KVM_CLEAR_DIRTY_LOG_BATCH, which does not count the bits it clears.
 */
extern int kt_batch_mode;

#define BASE_GPA	0x100000ULL	/* 1 MiB */
#define MAX_TSLOTS	8

/* ------------------------------------------------------------------ */
/* Test VM: adjacent slots (odd sizes), one behind a gap, one in as 1. */

struct tslot {
	uint32_t slot;			/* as_id << 16 | id */
	uint64_t gpa, npages;
	uint8_t *hva;
	uint64_t generation;		/* bumped when created again */
};

struct tvm {
	struct vm *vm;
	struct tslot s[MAX_TSLOTS];
	int n;
	uint8_t *dirty[MAX_TSLOTS];	/* expected KVM dirty bit per page */
	uint8_t *req[MAX_TSLOTS];	/* requested in the current batch */
	uint32_t *last_clear[MAX_TSLOTS];
	uint64_t guest_pages;		/* contiguous region written by the vCPU */
};

/* The adjacent slots from BASE_GPA in address space 0: tvm.guest_pages. */
bool tslot_in_guest_region(const struct tslot *s);

/* A memslot in KVM and in the model: all dirty (INITIALLY_SET), none requested. */
void tvm_add(struct tvm *t, uint32_t slot, uint64_t gpa, uint64_t npages);
/* Delete a memslot in KVM and from the model. */
void tvm_delete(struct tvm *t, uint32_t slot);
/* KVM_GET_DIRTY_LOG of every slot vs. the model; 0 or mismatches. */
uint64_t tvm_compare(struct tvm *t, char *why, size_t wl);

/* Random batches, applied identically to one or more contexts. */
/* Queue one random valid run (any of the three kinds) on every context. */
int tvm_random_add(struct tvm *t, struct dirtybatch_ctx **ctx, int nctx);
/* Pages requested in the model batch, and how many of them are dirty. */
void tvm_req_counts(struct tvm *t, uint64_t *req, uint64_t *dirty_req);
/* The model batch done: its pages clean, cleared at stamp; none requested. */
void tvm_apply_req(struct tvm *t, uint32_t stamp);

/* ------------------------------------------------------------------ */
/* A test case: a fresh test VM with a context open on it.            */

struct kt_case {
	bool module;		/* the batch backend (kt_batch_mode), else the fallback */
	int rounds;		/* for the tests that run rounds */
	char *why;		/* what failed, wl bytes */
	size_t wl;
	struct kt_case *outer;	/* the case this one runs inside, or NULL */
	struct tvm t;
	struct dirtybatch_ctx *ctx;	/* open on t.vm, t's layout set */
};

/*
 * Create the test VM, open a context on it, run body, close both: body's
 * verdict, or false (why says why) if the context did not open.  KVM
 * errors in the VM helper end the process (a failed test).
 */
bool kt_run_case(bool module, int rounds, bool (*body)(struct kt_case *c),
		 char *why, size_t wl);
/* The same for a second VM inside outer, with outer's rounds and why. */
bool kt_run_nested_case(struct kt_case *outer, bool module, bool (*body)(struct kt_case *c));

/* The case failed: fmt... in c->why; false. */
__attribute__((format(printf, 2, 3)))
bool kt_fail(struct kt_case *c, const char *fmt, ...);

/* ------------------------------------------------------------------ */
/* The tests, run by kt_run_case(): true if passed, else c->why says why. */

/* random_clears.c: random batches, no vCPU, the model after each submit */
bool test_random_clears(struct kt_case *c);

/* memslot_changes.c: a memslot deleted, or re-created, under queued clears */
bool test_error_path(struct kt_case *c);
bool test_recreated_memslot(struct kt_case *c);

/* vcpu_writes.c: a vCPU writing meanwhile, no dirty page lost */
bool test_vcpu(struct kt_case *c);

/* equivalence.c: c->module's context vs. the fallback's (guest build only) */
bool test_equivalence(struct kt_case *c);

#endif
