// SPDX-License-Identifier: LGPL-2.1 OR MIT
/*
 * The unit tests' entry points, a file a feature, one TAP point each
 * unless said; main.c runs them in a fixed order, which keeps the TAP
 * numbers of the tests as they were.
 */
#ifndef DIRTYBATCH_UNIT_H
#define DIRTYBATCH_UNIT_H

#include <stdint.h>

/*
 * The TAP points of the one program the files here make: tap.h counts
 * them in static variables, a count per translation unit, so only main.c
 * calls tap_ok() and every test reports through unit_ok() (same output;
 * fake_kernel.h poisons tap_ok).  tap_diag() keeps no count: use it
 * anywhere.
 */
__attribute__((format(printf, 2, 3)))
int unit_ok(int pass, const char *fmt, ...);

/* ranges.c: how queued pages become ranges */
void test_tail_rule(void);
void test_fallback_gap(void);
void test_merge(void);
void test_gpa_split(void);
void test_module_limits(void);
void test_empty_submit(void);

/* submit.c: submit results and errors */
void test_error_path(void);
void test_out_sizes(void);
void test_has_pending(void);

/* layout.c: memslots */
void test_layout_errors(void);
void test_layout_changes(void);
void test_memslot_identity(void);
void test_memslot_sizes(void);
void test_slot_discard_version(void);

/* backends.c: opening, backends, demotion */
void test_open_detection(void);		/* 4 points */
void test_device_fd(void);
void test_backend_choice(void);
void test_demotion(void);
void test_native(void);

/* big_slots.c: big and sparse memslots, bitmap offsets */
void test_bitmap_offsets(void);
void test_big_slot(void);
void test_sparse_big_slot(void);	/* 2 points */

/* allocations.c: only in the build linked with --wrap=malloc (DB_WRAP_MALLOC) */
void test_no_alloc(void);
void test_layout_scaling(void);

/* randomized.c: the randomized model-based cases */
void test_randomized(uint64_t seed, uint64_t cases);

#endif
