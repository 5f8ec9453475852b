/* SPDX-License-Identifier: LGPL-2.1 OR MIT */
/*
 * The seeded PRNG (splitmix64) of the kselftests, the library's tests and
 * the benchmarks.  Header only: a test that needs nothing else of the test
 * library includes just this.
 */
#ifndef DIRTYBATCH_TEST_RNG_H
#define DIRTYBATCH_TEST_RNG_H

#include <stdint.h>

struct rng { uint64_t s; };

static inline void rng_init(struct rng *r, uint64_t seed)
{
	r->s = seed;
}

static inline uint64_t rng_next(struct rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Uniform-ish in [0, n); 0 for n == 0. */
static inline uint64_t rng_below(struct rng *r, uint64_t n)
{
	return n ? rng_next(r) % n : 0;
}

#endif /* DIRTYBATCH_TEST_RNG_H */
