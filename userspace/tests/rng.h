/* SPDX-License-Identifier: LGPL-2.1 OR MIT */
/* Seeded splitmix64 PRNG shared by the libdirtybatch tests. */
#ifndef DIRTYBATCH_TEST_RNG_H
#define DIRTYBATCH_TEST_RNG_H

#include <stdint.h>

static uint64_t rng_state;

static inline uint64_t rnd(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Uniform-ish in [0, n); 0 for n == 0. */
static inline uint64_t rndn(uint64_t n)
{
	return n ? rnd() % n : 0;
}

#endif /* DIRTYBATCH_TEST_RNG_H */
