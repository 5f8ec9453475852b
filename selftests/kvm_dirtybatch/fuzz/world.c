// SPDX-License-Identifier: GPL-2.0
/*
 * fuzz/world.c: the VMs, memslots, fds and buffers the calls are made on,
 * and the memslot changes and guest writes made between calls.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"

struct fuzz_world g;

/* len bytes (rounded up to pages), followed by a PROT_NONE page */
static void *map_guarded(size_t len, int prot)
{
	uint8_t *p;

	len = page_up(len);
	p = mmap(NULL, len + PAGE_SIZE, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	VM_CHECK(p != MAP_FAILED, "mmap %zu", len);
	VM_CHECK(!mprotect(p + len, PAGE_SIZE, PROT_NONE), "mprotect guard");
	if (prot != (PROT_READ | PROT_WRITE))
		VM_CHECK(!mprotect(p, len, prot), "mprotect");
	return p;
}

/* ------------------------------------------------- deterministic changes */

/* serializes the helper's memslot table of S between threads */
static void s_lock(void) { pthread_mutex_lock(&g.s_lock); }
static void s_unlock(void) { pthread_mutex_unlock(&g.s_lock); }

/* add / delete / move / toggle logging of a churn slot of S (one thread) */
void slot_op(struct fctx *x, struct mvm *v, struct rng *rng, bool model)
{
	uint32_t id = CHURN_LO + rng_below(rng, CHURN_HI - CHURN_LO + 1), slot = id;
	struct mslot *m;
	uint32_t flags;
	int r = 0;

	if (g.nr_as > 1 && !rng_below(rng, 4))
		slot = 1U << 16 | (CHURN_LO + rng_below(rng, CHURN_AS1_HI - CHURN_LO + 1));
	m = ms_find(v, slot);
	VM_CHECK(m, "churn slot 0x%x not in the model", slot);
	if (!model)
		s_lock();
	if (!m->present) {
		m->npages = 1 + rng_below(rng, 600);
		m->logged = rng_below(rng, 4);
		m->gen++;
		m->gpa = gpa_home(slot, m->gen);
		r = vm_add_slot_try(v->vm, slot, m->gpa, m->npages,
				    m->logged ? KVM_MEM_LOG_DIRTY_PAGES : 0, NULL);
		m->present = !r;
	} else {
		switch (rng_below(rng, 3)) {
		case 0:
			r = vm_delete_slot_try(v->vm, slot);
			m->present = !!r;
			break;
		case 1:
			m->gen++;
			m->gpa = gpa_home(slot, m->gen);
			r = vm_move_slot_try(v->vm, slot, m->gpa);	/* keeps the bitmap */
			if (model && m->logged && !r) {
				/* moved: the bitmap stays, nothing to do */
			}
			goto out;
		default:
			flags = m->logged ? 0 : KVM_MEM_LOG_DIRTY_PAGES;
			r = vm_set_slot_flags_try(v->vm, slot, flags);
			if (!r)
				m->logged = !m->logged;
			break;
		}
	}
	if (model)
		ms_set_bits(m);
out:
	if (!model)
		s_unlock();
	__atomic_fetch_add(&g.slot_ops, 1, __ATOMIC_RELAXED);
	if (r && model)
		VIOL(x, NULL, "memslot change of 0x%x failed: %s", slot, strerror(-r));
}

/* Dirty logging off and on again: every bit of the slot set again. */
void refill(struct fctx *x, bool locked)
{
	struct mvm *v = one_in(x, 3) ? &g.O : &g.S;
	struct mslot *m;
	int r, tries;

	for (tries = 0; tries < 8; tries++) {
		m = &v->s[rnd(x, v->n)];
		if (m->present && m->logged && m->exact == EX_EXACT && !m->churn &&
		    (m->slot != BIG_ID || one_in(x, 8)))
			break;
	}
	if (tries == 8)
		return;
	if (locked)
		s_lock();
	r = vm_set_slot_flags_try(v->vm, m->slot, 0);
	if (!r)
		r = vm_set_slot_flags_try(v->vm, m->slot, KVM_MEM_LOG_DIRTY_PAGES);
	if (locked)
		s_unlock();
	if (r)
		VIOL(x, NULL, "toggling dirty logging of %s slot 0x%x: %s", v->name, m->slot,
		     strerror(-r));
	ms_set_bits(m);
}

/* The vCPU of S writes a few pages and stops: their dirty bits get set. */
void vcpu_burst(struct fctx *x)
{
	uint64_t gpas[256];
	struct mslot *m, *ms[256];
	uint64_t pg[256];
	uint32_t n = 1 + rnd(x, 256), i, tries;

	for (i = 0; i < n; i++) {
		for (tries = 0; tries < 16; tries++) {
			m = &g.S.s[rnd(x, g.S.n)];
			if (m->present && !(m->slot >> 16) && m->slot != SYS_SLOT &&
			    m->gpa < (1ULL << 32))
				break;
		}
		if (tries == 16) {
			n = i;
			break;
		}
		ms[i] = m;
		pg[i] = rnd(x, m->npages);
		gpas[i] = m->gpa + pg[i] * PAGE_SIZE;
	}
	if (!n)
		return;
	guest_set_list(g.S.vm, gpas, n, 1);
	vcpu_reset(g.S.vm);
	vcpu_run_to_done(g.S.vm);
	for (i = 0; i < n; i++)
		if (ms[i]->logged && ms[i]->bm)
			set_bit64(ms[i]->bm, pg[i]);
}
/* ----------------------------------------------------------------- world */

static void add_region(struct region *reg, int *n, void *p, size_t len)
{
	reg[*n].start = (uintptr_t)p;
	reg[*n].end = (uintptr_t)p + len;
	(*n)++;
}

struct fctx *ctx_new(const char *name, uint64_t seed, bool chaos)
{
	struct fctx *x = calloc(1, sizeof(*x));

	VM_CHECK(x, "calloc");
	x->name = name;
	x->chaos = chaos;
	rng_init(&x->rng, seed);
	x->rbuf = map_guarded(RBUF_BYTES, PROT_READ | PROT_WRITE);
	x->argpg = map_guarded(PAGE_SIZE, PROT_READ | PROT_WRITE);
	x->ropg = map_guarded(PAGE_SIZE, PROT_READ);
	x->gen = calloc(GEN_MAX + 256, sizeof(*x->gen));
	x->tmpbm = calloc(1, BIG_PAGES / 8);
	VM_CHECK(x->gen && x->tmpbm, "calloc");
	add_region(x->reg, &x->nreg, x->rbuf, RBUF_BYTES);
	add_region(x->reg, &x->nreg, x->argpg, PAGE_SIZE);
	add_region(x->reg, &x->nreg, x->ropg, PAGE_SIZE);
	x->digest = 0xcbf29ce484222325ULL;
	return x;
}

static void fill_big(uint8_t *buf, uint32_t stride)
{
	static const uint32_t ids[] = { 1, 2, 3, 4, 5, 6 };
	uint32_t i;

	for (i = 0; i <= MAX_RANGES; i++) {
		struct mslot *m = ms_find(&g.S, ids[i % 6]);
		struct kvm_dirtybatch_range r = {
			.slot = m->slot, .num_pages = m->npages,
			.dirty_bitmap = (uintptr_t)ones() + 8 * (i % 64),
		};

		memcpy(buf + (uint64_t)i * stride, &r, sizeof(r));
	}
}

void world_up(uint64_t seed)
{
	static const struct { uint32_t id; uint64_t npages; bool logged; } s_slots[] = {
		{ 1, 1, true }, { 2, 63, true }, { 3, 64, true }, { 4, 65, true },
		{ 5, 130, true }, { 6, 1000, true }, { W_ID, 512, true },
		{ 20, 64, false }, { BIG_ID, BIG_PAGES, true },
	}, o_slots[] = {
		{ 1, 2, true }, { 2, 200, true }, { 3, 64, true }, { 4, 129, true },
		{ 5, 1, true }, { 6, 700, true }, { 9, 64, true }, { 20, 64, false },
	}, n_slots[] = { { 1, 64, true }, { 2, 100, true }, { 3, 3, true } };
	struct rng rng;
	uint8_t *rnd_area;
	uint64_t i, j;
	int fd;

	memset(&g, 0, sizeof(g));
	pthread_mutex_init(&g.log_lock, NULL);
	pthread_mutex_init(&g.s_lock, NULL);
	rng_init(&rng, seed ^ 0x5bd1e995);
	g.dbfd = db_open();
	VM_CHECK(g.dbfd >= 0, "open " DB_DEVICE_PATH);

	mvm_init(&g.S, "S", true, false);
	g.nr_as = g.S.vm->nr_as;
	g.nr_memslots = g.S.vm->nr_memslots;
	for (i = 0; i < ARRAY_SIZE(s_slots); i++)
		mvm_add(&g.S, s_slots[i].id, s_slots[i].npages, s_slots[i].logged, false, true);
	for (i = CHURN_LO; i <= CHURN_HI; i++)
		mvm_add(&g.S, i, 64 + 64 * (i % 3), true, true, i < 11);
	if (g.nr_as > 1) {
		mvm_add(&g.S, 1U << 16 | 1, 77, true, false, true);
		mvm_add(&g.S, 1U << 16 | 2, 128, true, false, true);
		mvm_add(&g.S, 1U << 16 | 3, 64, false, false, true);
		for (i = CHURN_LO; i <= CHURN_AS1_HI; i++)
			mvm_add(&g.S, 1U << 16 | i, 64, true, true, false);
	}
	vm_create_vcpu(g.S.vm);

	mvm_init(&g.O, "O", true, false);
	for (i = 0; i < ARRAY_SIZE(o_slots); i++)
		mvm_add(&g.O, o_slots[i].id, o_slots[i].npages, o_slots[i].logged, false, true);
	if (g.nr_as > 1)
		mvm_add(&g.O, 1U << 16 | 1, 64, true, false, true);

	mvm_init(&g.N, "N", false, false);
	for (i = 0; i < ARRAY_SIZE(n_slots); i++)
		mvm_add(&g.N, n_slots[i].id, n_slots[i].npages, n_slots[i].logged, false, true);

	mvm_init(&g.R, "R", true, true);
	g.have_ring = g.R.vm != NULL;
	if (g.have_ring)
		mvm_add(&g.R, 1, 64, true, false, true);

	g.devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	VM_CHECK(g.devnull >= 0 && !pipe2(g.pipefd, O_CLOEXEC), "open");
	g.evfd = eventfd(0, EFD_CLOEXEC);
	VM_CHECK(g.evfd >= 0, "eventfd");
	/* 16 numbers that are no open file, and that nothing will open */
	for (g.closed_fd = 900; ; g.closed_fd += 16) {
		for (fd = g.closed_fd; fd < g.closed_fd + 16 && fcntl(fd, F_GETFD) < 0; fd++)
			;
		if (fd == g.closed_fd + 16)
			break;
	}

	/* ones, then 64 KiB blocks of various densities; read-only */
	g.ro = map_guarded(ONES_BYTES + RAND_BYTES, PROT_READ | PROT_WRITE);
	memset(g.ro, 0xff, ONES_BYTES);
	rnd_area = g.ro + ONES_BYTES;
	for (i = 0; i < RAND_BYTES / 8; i++) {
		uint64_t blk = i / 8192, w = rng_next(&rng), v;

		switch (blk % 8) {
		case 0: v = 0; break;
		case 1: v = w & rng_next(&rng) & rng_next(&rng) & rng_next(&rng); break;
		case 2: v = w; break;
		case 3: v = w | rng_next(&rng) | rng_next(&rng); break;
		case 4: v = ~0ULL; break;
		case 5: v = 0xaaaaaaaaaaaaaaaaULL >> (i & 1); break;
		case 6: v = (i & 1) ? ~0ULL : 0; break;
		default: v = 1ULL << (w & 63); break;
		}
		memcpy(rnd_area + 8 * i, &v, 8);
	}
	VM_CHECK(!mprotect(g.ro, ONES_BYTES + RAND_BYTES, PROT_READ), "mprotect");
	add_region(g.reg, &g.nreg, g.ro, ONES_BYTES + RAND_BYTES);

	g.zero = map_guarded(ZERO_BYTES, PROT_READ);
	add_region(g.reg, &g.nreg, g.zero, ZERO_BYTES);

	j = (uint64_t)(MAX_RANGES + 1) * 32;
	g.big24 = map_guarded((MAX_RANGES + 1) * RSIZE, PROT_READ | PROT_WRITE);
	g.big32 = map_guarded(j, PROT_READ | PROT_WRITE);
	fill_big(g.big24, RSIZE);
	fill_big(g.big32, 32);
	add_region(g.reg, &g.nreg, g.big24, page_up((MAX_RANGES + 1) * RSIZE));
	add_region(g.reg, &g.nreg, g.big32, page_up(j));
}

void world_down(void)
{
	vm_free(g.S.vm);
	vm_free(g.O.vm);
	vm_free(g.N.vm);
	vm_free(g.R.vm);
	close(g.devnull);
	close(g.pipefd[0]);
	close(g.pipefd[1]);
	close(g.evfd);
	close(g.dbfd);
}
