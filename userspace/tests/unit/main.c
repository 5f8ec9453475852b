// SPDX-License-Identifier: LGPL-2.1 OR MIT
/*
 * libdirtybatch unit tests, no KVM needed: the directed tests, then the
 * randomized model-based cases, all on the fake kernel (fake_kernel.h).
 *
 * Environment: DIRTYBATCH_TEST_SEED (default fixed), DIRTYBATCH_TEST_CASES
 * (default 100000 randomized cases).
 */
#include <stdarg.h>
#include <stdlib.h>

#include "tap.h"
#include "unit.h"

int unit_ok(int pass, const char *fmt, ...)
{
	char msg[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return tap_ok(pass, "%s", msg);
}

int main(void)
{
	const char *e;
	uint64_t seed = 0x5eed2024ULL, cases = 100000;
	int plan = 27;

#ifdef DB_WRAP_MALLOC
	plan += 2;
#endif
	e = getenv("DIRTYBATCH_TEST_SEED");
	if (e)
		seed = strtoull(e, NULL, 0);
	e = getenv("DIRTYBATCH_TEST_CASES");
	if (e)
		cases = strtoull(e, NULL, 0);

	tap_plan(plan);
	test_open_detection();
	test_layout_errors();
	test_tail_rule();
	test_fallback_gap();
	test_merge();
	test_gpa_split();
	test_module_limits();
	test_error_path();
	test_layout_changes();
	test_empty_submit();
	test_bitmap_offsets();
	test_big_slot();
	test_sparse_big_slot();
#ifdef DB_WRAP_MALLOC
	test_no_alloc();
#endif
	test_memslot_identity();
	test_memslot_sizes();
	test_out_sizes();
	test_device_fd();
	test_backend_choice();
	test_demotion();
	test_native();
	test_has_pending();
	test_slot_discard_version();
#ifdef DB_WRAP_MALLOC
	test_layout_scaling();
#endif
	test_randomized(seed, cases);
	return tap_exit_code();
}
