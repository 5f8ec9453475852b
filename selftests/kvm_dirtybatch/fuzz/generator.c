// SPDX-License-Identifier: GPL-2.0
/*
 * fuzz/generator.c: valid calls, laid out in memory (emit()); mutate.c
 * changes them.
 */
#include <string.h>
#include <sys/mman.h>

#include "fuzz.h"

/* A readable bitmap of @bytes bytes. */
uint64_t gen_bitmap(struct fctx *x, uint32_t num)
{
	uint64_t bytes = bitmap_bytes(num), off;

	if (!num && one_in(x, 3))
		return 0;
	switch (rnd(x, 10)) {
	case 0: case 1: case 2:
		if (bytes <= ONES_BYTES)
			return (uintptr_t)ones() + (one_in(x, 2) ? 0 : 8 * rnd(x, (ONES_BYTES - bytes) / 8 + 1));
		break;
	case 3:
		return (uintptr_t)g.zero + 8 * rnd(x, (ZERO_BYTES - PAGE_SIZE - bytes) / 8 + 1);
	default:
		break;
	}
	off = rnd(x, RAND_BYTES - bytes + 1);
	if (!one_in(x, 5))
		off &= ~7ULL;
	return (uintptr_t)rand_area() + off;
}

static struct mslot *pick_logged(struct fctx *x, struct mvm *v)
{
	struct mslot *c[MAX_MSLOTS];
	int i, n = 0;

	for (i = 0; i < v->n; i++) {
		struct mslot *m = &v->s[i];

		if (m->churn && v->racy) {
			if (!x->chaos && one_in(x, 4))
				c[n++] = m;	/* unknown now: plausible range */
			continue;
		}
		if (x->chaos)
			continue;
		/* the big slot costs 16384 words and a 128 KiB dirty log read */
		if (m->present && m->logged && ((uint16_t)m->slot != BIG_ID || one_in(x, 12)))
			c[n++] = m;
	}
	return n ? c[rnd(x, n)] : NULL;
}

static void gen_range_in(struct fctx *x, struct mslot *m, uint64_t npages,
			 struct kvm_dirtybatch_range *r)
{
	uint64_t k, first, rem, num;

	switch (rnd(x, 6)) {
	case 0: k = 0; break;
	case 1: k = npages / 64; break;
	default: k = rnd(x, npages / 64 + 1); break;
	}
	first = 64 * k;
	rem = npages - first;
	switch (rnd(x, 10)) {
	case 0: num = 0; break;
	case 1: case 2: case 3: case 4: num = rem; break;
	case 5: num = rem < 64 ? rem : 64; break;
	default: num = 64 * rnd(x, rem / 64 + 1); break;
	}
	r->slot = m ? m->slot : 0;
	r->first_page = first;
	r->num_pages = num;
	r->dirty_bitmap = gen_bitmap(x, num);
}

/* A valid range of VM @v (or a plausible one on a churned slot). */
static void gen_range(struct fctx *x, struct mvm *v, struct kvm_dirtybatch_range *r)
{
	struct mslot *m = pick_logged(x, v);

	if (!m || x->chaos) {
		/* churn ids, sizes unknown */
		uint32_t id = CHURN_LO + rnd(x, CHURN_HI - CHURN_LO + 1);
		struct mslot tmp = { .slot = id };

		if (g.nr_as > 1 && one_in(x, 4))
			tmp.slot = 1U << 16 | (CHURN_LO + rnd(x, CHURN_AS1_HI - CHURN_LO + 1));
		gen_range_in(x, &tmp, 64 + rnd(x, 600), r);
		return;
	}
	if (m->churn && v->racy) {
		gen_range_in(x, m, 1 + rnd(x, 600), r);
		return;
	}
	gen_range_in(x, m, m->npages, r);
}

static uint32_t gen_count(struct fctx *x)
{
	switch (rnd(x, 20)) {
	case 0: case 1: case 2: case 3: case 4: case 5: return 1;
	case 6: case 7: case 8: case 9: case 10: case 11: case 12: case 13: return 2 + rnd(x, 7);
	case 14: case 15: case 16: case 17: return 9 + rnd(x, 56);
	case 18: return one_in(x, 4) ? 65 + rnd(x, 960) : 2 + rnd(x, 30);
	default: return one_in(x, 25) ? 1025 + rnd(x, GEN_MAX - 1024) : 2 + rnd(x, 30);
	}
}

void gen_valid(struct fctx *x, struct genp *p, struct mvm *v)
{
	uint32_t i;

	memset(p, 0, sizeof(*p));
	p->vm = v;
	p->n = p->count = gen_count(x);
	p->stride = p->rsize = db_backend_is_module() && one_in(x, 4) ?
				8 * (4 + rnd(x, 29)) : RSIZE;
	p->rplace = one_in(x, 10) ? RP_UNALIGNED : RP_NORMAL;
	p->aplace = AP_NORMAL;
	p->extra_at = p->random_at = -1;
	p->fd = v->vm->fd;
	p->fdkind = v->ring ? FD_RING : FD_VM;
	for (i = 0; i < p->n; i++) {
		if (i && one_in(x, 6)) {
			/* overlap an earlier range, with another bitmap */
			x->gen[i] = x->gen[rnd(x, i)];
			x->gen[i].dirty_bitmap = gen_bitmap(x, x->gen[i].num_pages);
			continue;
		}
		gen_range(x, v, &x->gen[i]);
	}
}

/* Write the ranges and the struct where the plan says; fill cl. */
void emit(struct fctx *x, struct genp *p, struct call *cl)
{
	struct kvm_dirtybatch_clear *c = &cl->c;
	uint8_t *base = NULL, *a;
	uint64_t need;
	uint32_t i;

	memset(c, 0, sizeof(*c));
	switch (p->rplace) {
	case RP_NORMAL:
		base = x->rbuf;
		break;
	case RP_UNALIGNED:
		base = x->rbuf + 1 + rnd(x, 15);
		break;
	case RP_STRADDLE:
		/* range straddle_at crosses into the PROT_NONE page */
		base = rbuf_end(x) - (uint64_t)p->straddle_at * p->stride -
		       (1 + rnd(x, p->stride - 1));
		break;
	case RP_BAD:
		c->ranges = p->rbad;
		break;
	case RP_GUARD: c->ranges = (uintptr_t)rbuf_end(x); break;
	case RP_ZERO: c->ranges = (uintptr_t)g.zero; break;
	case RP_BIG24: c->ranges = (uintptr_t)g.big24; break;
	case RP_BIG32: c->ranges = (uintptr_t)g.big32; break;
	case RP_FLAP:
		c->ranges = (uintptr_t)g.flap;
		cl->touches_flap = true;
		break;
	}
	if (base) {
		c->ranges = (uintptr_t)base;
		/* zero what a larger count would read next (deterministic) */
		need = (uint64_t)(p->count > p->n ? p->count : p->n) * p->stride;
		if (need > (uint64_t)(rbuf_end(x) - base))
			need = rbuf_end(x) - base;
		memset(base, 0, need);
		for (i = 0; i < p->n; i++) {
			uint8_t *d = base + (uint64_t)i * p->stride;
			uint64_t room = rbuf_end(x) - d;

			if (d >= rbuf_end(x))
				break;
			memcpy(d, &x->gen[i], room < RSIZE ? room : RSIZE);
		}
		if (p->extra_at >= 0 && (uint32_t)p->extra_at < p->n) {
			a = base + (uint64_t)p->extra_at * p->stride + p->extra_off;
			if (a < rbuf_end(x))
				*a = 1 + rnd(x, 255);
		}
		if (p->random_at >= 0 && (uint32_t)p->random_at < p->n) {
			a = base + (uint64_t)p->random_at * p->stride;
			for (i = 0; i < RSIZE && a + i < rbuf_end(x); i++)
				if (one_in(x, 3))
					a[i] = rng_next(&x->rng);
		}
	}
	for (i = 0; i < p->n; i++)
		if (touches_flap(x->gen[i].dirty_bitmap, bitmap_bytes(x->gen[i].num_pages)))
			cl->touches_flap = true;

	c->vm_fd = p->fd;
	c->flags = p->flags;
	c->reserved0 = p->reserved0;
	memcpy(c->reserved, p->reserved, sizeof(c->reserved));
	c->count = p->count;
	c->range_size = p->rsize;
	c->pages_cleared = SENT64;
	c->error_index = SENT32;
	cl->fdkind = p->fdkind;
	cl->vm = p->vm;

	switch (p->aplace) {
	case AP_NORMAL:
		cl->argp = x->argpg + 8 * rnd(x, (PAGE_SIZE - sizeof(*c)) / 8 + 1);
		break;
	case AP_BAD:
		cl->argp = (void *)(uintptr_t)p->abad;
		return;
	case AP_GUARD:
		cl->argp = x->argpg + PAGE_SIZE;
		return;
	case AP_STRADDLE:
		cl->argp = x->argpg + PAGE_SIZE - sizeof(*c) + p->astraddle;
		memcpy(cl->argp, c, sizeof(*c) - p->astraddle);
		return;
	case AP_RO:
		cl->argp = x->ropg;
		VM_CHECK(!mprotect(x->ropg, PAGE_SIZE, PROT_READ | PROT_WRITE), "mprotect");
		memcpy(x->ropg, c, sizeof(*c));
		VM_CHECK(!mprotect(x->ropg, PAGE_SIZE, PROT_READ), "mprotect");
		return;
	case AP_FLAP:
		cl->argp = g.flap + PAGE_SIZE - sizeof(*c);
		cl->touches_flap = true;
		memcpy(c, flap_shadow + PAGE_SIZE - sizeof(*c), sizeof(*c));
		cl->fdkind = FD_VM;
		cl->vm = &g.S;
		return;
	}
	memcpy(cl->argp, c, sizeof(*c));
}
