// SPDX-License-Identifier: LGPL-2.1 OR MIT
/*
 * The unit tests, one TAP point each unless said (main.c runs them in
 * this order).  Each file beside this one holds one feature's tests.
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

/* backends.c */
void test_open_detection(void);		/* 4 points */
/* layout.c */
void test_layout_errors(void);
/* ranges.c */
void test_tail_rule(void);
void test_fallback_gap(void);
void test_merge(void);
void test_gpa_split(void);
void test_module_limits(void);
/* submit.c */
void test_error_path(void);
/* layout.c */
void test_layout_changes(void);
/* ranges.c */
void test_empty_submit(void);
/* big_slots.c */
void test_bitmap_offsets(void);
void test_big_slot(void);
void test_sparse_big_slot(void);	/* 2 points */
/* allocations.c (DB_WRAP_MALLOC only) */
void test_no_alloc(void);
/* layout.c */
void test_memslot_identity(void);
void test_memslot_sizes(void);
/* submit.c */
void test_out_sizes(void);
/* backends.c */
void test_device_fd(void);
void test_backend_choice(void);
void test_demotion(void);
void test_native(void);
/* submit.c */
void test_has_pending(void);
/* layout.c */
void test_slot_discard_version(void);
/* allocations.c (DB_WRAP_MALLOC only) */
void test_layout_scaling(void);
/* randomized.c */
void test_randomized(uint64_t seed, uint64_t cases);

#endif
