// SPDX-License-Identifier: GPL-2.0
/*
 * fuzz/mutate.c: the mutations of a generated call, and the call the
 * fuzzer makes: a valid one (generator.c) with none, one or more of them
 * (gen_call()).
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "fuzz.h"

static const uint64_t bad_ptrs[] = {
	0, 8, 0x1000, 0xfff8,			/* NULL page */
	0xffff888000000000ULL,			/* direct map */
	0xffffffff81000000ULL,			/* kernel text */
	0xffffffffff600000ULL,			/* vsyscall page */
	0xfffffe0000000000ULL,			/* cpu entry area */
	0x8000000000000000ULL,			/* non-canonical */
	0x0000800000000000ULL,			/* first non-user address */
	0x00007ffffffff000ULL - 8,		/* crosses TASK_SIZE_MAX */
	~0ULL - 7, ~0ULL,			/* wraps */
};

void set_fd(struct fctx *x, struct genp *p, int fdc)
{
	struct mvm *v = NULL;

	switch (fdc) {
	case FDC_S: v = &g.S; break;
	case FDC_O: v = &g.O; break;
	case FDC_N: v = &g.N; break;
	case FDC_R: v = g.have_ring ? &g.R : &g.O; break;
	case FDC_KVM: p->fd = g.S.vm->kvm_fd; p->fdkind = FD_NOTVM; return;
	case FDC_VCPU: p->fd = g.S.vm->vcpu->fd; p->fdkind = FD_NOTVM; return;
	case FDC_DB: p->fd = g.dbfd; p->fdkind = FD_NOTVM; return;
	case FDC_NULL: p->fd = g.devnull; p->fdkind = FD_NOTVM; return;
	case FDC_PIPE: p->fd = g.pipefd[rnd(x, 2)]; p->fdkind = FD_NOTVM; return;
	case FDC_EVENT: p->fd = g.evfd; p->fdkind = FD_NOTVM; return;
	case FDC_CLOSED: p->fd = g.closed_fd + rnd(x, 16); p->fdkind = FD_CLOSED; return;
	case FDC_NEG: p->fd = -1 - (int)rnd(x, 3); p->fdkind = FD_CLOSED; return;
	case FDC_INTMIN: p->fd = INT_MIN; p->fdkind = FD_CLOSED; return;
	default: p->fd = INT_MAX; p->fdkind = FD_CLOSED; return;
	}
	p->vm = v;
	p->fd = v->vm->fd;
	p->fdkind = v->ring ? FD_RING : FD_VM;
}

static uint64_t bad_ptr(struct fctx *x)
{
	return bad_ptrs[rnd(x, ARRAY_SIZE(bad_ptrs))];
}

static struct mslot *slot_of(struct mvm *v, uint32_t slot)
{
	return v ? ms_find(v, slot) : NULL;
}

void mutate(struct fctx *x, struct genp *p, struct call *cl, int kind)
{
	struct kvm_dirtybatch_range *r = &x->gen[rnd(x, p->n)];
	uint32_t i = r - x->gen;
	struct mslot *m = slot_of(p->vm, r->slot);
	uint64_t npages = m && !(m->churn && p->vm->racy) && m->present ?
			  m->npages : 64 + rnd(x, 600);
	uint64_t rem, bytes;
	char *w = cl->what + strlen(cl->what);
	size_t room = sizeof(cl->what) - (w - cl->what);

	switch (kind) {
	case C_FLAGS:
	case C_RESERVED: {
		uint64_t v = one_in(x, 2) ? 1ULL << rnd(x, 64) : rng_next(&x->rng);
		int f = kind == C_FLAGS ? 0 : 1 + rnd(x, 5);

		if (f == 1 && !db_backend_is_module())
			f = 2 + rnd(x, 4);	/* KVM's struct has no reserved0 */
		if (!v)
			v = 1;
		if (!f)
			p->flags = (uint32_t)v ? (uint32_t)v : 1U << 31;
		else if (f == 1)
			p->reserved0 = (uint32_t)v ? (uint32_t)v : 1;
		else
			p->reserved[f - 2] = v;
		snprintf(w, room, "%s ", f ? "reserved" : "flags");
		break;
	}
	case C_RSIZE: {
		static const uint32_t v[] = { 0, 8, 16, 23, 25, 31, 32, 33, 40, 248,
					      252, 255, 256, 257, 260, 264, 512, 4096,
					      UINT32_MAX, 0x80000018 };
		uint32_t s = one_in(x, 6) ? (uint32_t)rng_next(&x->rng) : v[rnd(x, ARRAY_SIZE(v))];

		p->rsize = s;
		if (s >= RSIZE && s <= 256 && !(s % 8) && one_in(x, 2))
			p->stride = s;	/* laid out with it: valid */
		snprintf(w, room, "range_size=%u ", s);
		break;
	}
	case C_EXTRA:
		if (p->stride == RSIZE)
			p->stride = p->rsize = 8 * (4 + rnd(x, 29));
		p->extra_at = i;
		p->extra_off = RSIZE + rnd(x, p->stride - RSIZE);
		snprintf(w, room, "extra[%u]@%u ", i, p->extra_off);
		break;
	case C_COUNT: {
		uint32_t v[] = { 0, p->n - 1, p->n + 1, p->n + 2, 2 * p->n,
				 MAX_RANGES + 1, UINT32_MAX, 1U << 31,
				 (uint32_t)rng_next(&x->rng) };

		p->count = v[rnd(x, ARRAY_SIZE(v))];
		if (one_in(x, 30))	/* reads up to 16 MiB: kept rare */
			p->count = MAX_RANGES - rnd(x, 2);
		snprintf(w, room, "count=%u(of %u) ", p->count, p->n);
		break;
	}
	case C_HUGE_COUNT: {
		uint32_t v[] = { MAX_RANGES - 1, MAX_RANGES, MAX_RANGES, MAX_RANGES + 1 };

		p->count = v[rnd(x, ARRAY_SIZE(v))];
		p->n = 0;
		if (!db_backend_is_module() || one_in(x, 2)) {
			p->rplace = RP_BIG24;
			p->stride = p->rsize = RSIZE;
		} else {
			p->rplace = RP_BIG32;
			p->stride = p->rsize = 32;
		}
		if (one_in(x, 8)) {
			/* all-zero ranges, up to 16 MiB of them */
			p->rplace = RP_ZERO;
			p->rsize = db_backend_is_module() ? 8 * (3 + rnd(x, 30)) : RSIZE;
		}
		snprintf(w, room, "huge count=%u stride %u ", p->count, p->rsize);
		break;
	}
	case C_FD: {
		/* native: the ioctl is the fd's, VM fds only */
		int f = rnd(x, db_backend_is_module() ? FDC_NR : FDC_R + 1);

		set_fd(x, p, f);
		snprintf(w, room, "fd=%d(class %d) ", p->fd, f);
		break;
	}
	case C_ARG_PTR:
		switch (rnd(x, 4)) {
		case 0:
			p->aplace = AP_BAD;
			p->abad = bad_ptr(x);
			break;
		case 1:
			p->aplace = AP_GUARD;
			break;
		case 2:
			p->aplace = AP_STRADDLE;
			p->astraddle = 1 + rnd(x, sizeof(struct kvm_dirtybatch_clear) - 1);
			break;
		default:
#ifndef DB_EMULATE	/* the emulation ignores a failed write-back */
			p->aplace = AP_RO;
#endif
			break;
		}
		snprintf(w, room, "arg place %d ", p->aplace);
		break;
	case C_RANGES_PTR:
		switch (rnd(x, 4)) {
		case 0:
			p->rplace = RP_BAD;
			p->rbad = bad_ptr(x);
			break;
		case 1:
			p->rplace = RP_GUARD;
			break;
		case 2:
			p->rplace = RP_ZERO;
			break;
		default:
			p->rplace = RP_STRADDLE;
			p->straddle_at = rnd(x, p->n);
			break;
		}
		snprintf(w, room, "ranges place %d ", p->rplace);
		break;
	case C_SLOT_AS: {
		uint32_t as[] = { 1, (uint32_t)g.nr_as, (uint32_t)g.nr_as + 1, 0xff, 0xffff,
				  (uint32_t)rnd(x, 0x10000) };

		r->slot = as[rnd(x, ARRAY_SIZE(as))] << 16 | (uint16_t)r->slot;
		snprintf(w, room, "slot[%u]=0x%x ", i, r->slot);
		break;
	}
	case C_SLOT_ID: {
		uint32_t id[] = { 0, 20, 22, 30, BIG_ID, W_ID, 1, 2, 9,
				  (uint32_t)g.nr_memslots - 1, (uint32_t)g.nr_memslots,
				  (uint32_t)g.nr_memslots + 1, 509, 510, 512,
				  0x7fff, 0x8000, 0xffff, (uint32_t)rnd(x, 0x10000) };

		r->slot = (r->slot & 0xffff0000) | id[rnd(x, ARRAY_SIZE(id))];
		snprintf(w, room, "slot[%u]=0x%x ", i, r->slot);
		break;
	}
	case C_FIRST: {
		uint64_t up = (npages + 63) & ~63ULL;
		uint64_t v[] = { npages, up, up + 64, npages & ~63ULL, 1, 63, 32,
				 1ULL << 63, -64ULL, -1ULL, 1ULL << 32,
				 (1ULL << 32) | r->first_page, rng_next(&x->rng),
				 rng_next(&x->rng) & ~63ULL };

		r->first_page = v[rnd(x, ARRAY_SIZE(v))];
		if (one_in(x, 2))
			r->num_pages = one_in(x, 2) ? 0 : 64;
		r->dirty_bitmap = gen_bitmap(x, r->num_pages);
		snprintf(w, room, "first[%u]=%llu num %u ", i,
			 (unsigned long long)r->first_page, r->num_pages);
		break;
	}
	case C_NUM: {
		rem = r->first_page <= npages ? npages - r->first_page : 0;
		uint64_t v[] = { 0, rem, rem + 1, rem - 1, rem + 64, rem + 63,
				 64 * (rem / 64) + 1, 63, 65, 64,
				 UINT32_MAX, 0xffffffc1, 0x80000000,
				 rng_next(&x->rng) & 0xffff };

		r->num_pages = (uint32_t)v[rnd(x, ARRAY_SIZE(v))];
		if (one_in(x, 40))	/* a 16 MiB bitmap, KVM's errno: kept rare */
			r->num_pages = OLD_BM_LIMIT * 8 - 63 * rnd(x, 2);
		bytes = bitmap_bytes(r->num_pages);
		if (bytes <= RAND_BYTES)
			r->dirty_bitmap = gen_bitmap(x, r->num_pages);
		else if (one_in(x, 4))
			r->dirty_bitmap = (uintptr_t)g.zero;	/* 16 MiB readable */
		snprintf(w, room, "num[%u]=%u ", i, r->num_pages);
		break;
	}
	case C_BM_PTR:
		switch (rnd(x, 4)) {
		case 0: case 1:
			r->dirty_bitmap = bad_ptr(x);
			break;
		case 2:
			r->dirty_bitmap = (uintptr_t)ro_guard() + 8 * rnd(x, 16);
			break;
		default:
			r->dirty_bitmap = (uintptr_t)rbuf_end(x);
			break;
		}
		snprintf(w, room, "bitmap[%u]=0x%llx ", i, (unsigned long long)r->dirty_bitmap);
		break;
	case C_BM_HALF:
		bytes = bitmap_bytes(r->num_pages);
		if (!bytes) {
			r->num_pages = 64 * (1 + rnd(x, 4));
			bytes = bitmap_bytes(r->num_pages);
		}
		/* the first 1..bytes-1 bytes readable, the rest PROT_NONE */
		r->dirty_bitmap = (uintptr_t)ro_guard() - 1 - rnd(x, bytes > 1 ? bytes - 1 : 1);
		snprintf(w, room, "bitmap[%u] halfway (%llu bytes) ", i, (unsigned long long)bytes);
		break;
	case C_BM_HUGE: {
		/*
		 * 128 whole ranges of the big slot (16 MiB of bitmaps, the
		 * former limit of a call) and 0 to 2 more: accepted, the union
		 * of the ranges applied; or the last one's bitmap faults
		 * after all of them were read: nothing applied.
		 */
		uint32_t n = OLD_BM_LIMIT / (BIG_PAGES / 8), k, extra = rnd(x, 4);

		p->vm = &g.S;
		p->fd = g.S.vm->fd;
		p->fdkind = FD_VM;
		p->n = p->count = n + (extra ? 1 : 0);
		p->stride = p->rsize = RSIZE;
		for (k = 0; k < n; k++)
			x->gen[k] = (struct kvm_dirtybatch_range){ .slot = BIG_ID,
				.num_pages = BIG_PAGES,
				.dirty_bitmap = one_in(x, 2) ? (uintptr_t)ones() :
					(uintptr_t)rand_area() + 8 * rnd(x, (RAND_BYTES - BIG_PAGES / 8) / 8) };
		if (extra)	/* 8 or more bytes over */
			x->gen[n] = (struct kvm_dirtybatch_range){ .slot = 3,
				.num_pages = extra == 1 ? 1 : 64 * (1 + rnd(x, 64)),
				.dirty_bitmap = (uintptr_t)ones() };
		if (extra == 3)
			x->gen[n] = (struct kvm_dirtybatch_range){ .slot = BIG_ID,
				.num_pages = BIG_PAGES, .dirty_bitmap = bad_ptr(x) };
		snprintf(w, room, "bitmaps over 16 MiB (%s) ",
			 extra == 3 ? "the last faults" : extra ? "over" : "exactly");
		break;
	}
	case C_RANDOM:
		p->random_at = i;
		snprintf(w, room, "random bytes[%u] ", i);
		break;
	}
}

/* -------------------------------------------------------------- calls */

static const struct { int kind, weight; } mut_w[] = {
	{ C_FLAGS, 3 }, { C_RESERVED, 3 }, { C_RSIZE, 6 }, { C_EXTRA, 5 },
	{ C_COUNT, 6 }, { C_FD, 8 }, { C_ARG_PTR, 5 }, { C_RANGES_PTR, 6 },
	{ C_SLOT_AS, 6 }, { C_SLOT_ID, 8 }, { C_FIRST, 10 }, { C_NUM, 10 },
	{ C_BM_PTR, 8 }, { C_BM_HALF, 6 }, { C_RANDOM, 5 },
};

/* The module's own interface: not generated for KVM's native ioctl. */
static bool module_only_kind(int kind)
{
	return kind == C_RSIZE || kind == C_EXTRA || kind == C_ARG_PTR;
}

int pick_mutation(struct fctx *x)
{
	int total = 0, k, v;

	for (k = 0; k < (int)ARRAY_SIZE(mut_w); k++)
		total += mut_w[k].weight;
	do {
		v = rnd(x, total);
		for (k = 0; v >= mut_w[k].weight; k++)
			v -= mut_w[k].weight;
	} while (!db_backend_is_module() && module_only_kind(mut_w[k].kind));
	return mut_w[k].kind;
}

void gen_call(struct fctx *x, struct call *cl)
{
	unsigned int u = rnd(x, 100), k, nm;
	struct mvm *v;
	struct genp p;

	memset(cl, 0, sizeof(*cl));
	v = u < 55 ? &g.S : u < 80 ? &g.O : u < 92 ? &g.N : g.have_ring ? &g.R : &g.S;
	gen_valid(x, &p, v);
	cl->cls = C_VALID;
	if (one_in(x, 2500)) {
		cl->cls = C_HUGE_COUNT;
		mutate(x, &p, cl, C_HUGE_COUNT);
	} else if (one_in(x, 5000)) {
		cl->cls = C_BM_HUGE;
		mutate(x, &p, cl, C_BM_HUGE);
	} else if (rnd(x, 100) < 60) {
		nm = one_in(x, 4) ? 2 + rnd(x, 2) : 1;
		for (k = 0; k < nm; k++) {
			int kind = pick_mutation(x);

			if (!k)
				cl->cls = kind;
			mutate(x, &p, cl, kind);
		}
	}
	emit(x, &p, cl);
}
