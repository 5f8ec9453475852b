/* SPDX-License-Identifier: LGPL-2.1 OR MIT */
/* The clock of the tests and benchmarks: CLOCK_MONOTONIC in nanoseconds. */
#ifndef DIRTYBATCH_TEST_CLOCK_H
#define DIRTYBATCH_TEST_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

#endif /* DIRTYBATCH_TEST_CLOCK_H */
