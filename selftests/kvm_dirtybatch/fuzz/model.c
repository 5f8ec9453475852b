// SPDX-License-Identifier: GPL-2.0
/*
 * fuzz/model.c: the fuzzer's model of the VMs and their memslots (what is
 * known of each dirty bitmap), and a successful call applied to it.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

struct mslot *ms_find(struct mvm *v, uint32_t slot)
{
	int i;

	for (i = 0; i < v->n; i++)
		if (v->s[i].slot == slot)
			return &v->s[i];
	return NULL;
}

uint64_t gpa_home(uint32_t slot, unsigned int gen)
{
	uint32_t id = (uint16_t)slot;

	if (id == BIG_ID)
		return 1ULL << 36;
	/* two homes per id, 8 MiB apart, so that moves never overlap */
	return (16 + 16 * (uint64_t)id + 8 * (gen & 1)) * MIB;
}

void ms_set_bits(struct mslot *m)
{
	free(m->bm);
	m->bm = NULL;
	if (!m->present || !m->logged)
		return;
	m->bm = calloc(1, bitmap_bytes(m->npages));
	VM_CHECK(m->bm, "calloc");
	/* KVM_DIRTY_LOG_INITIALLY_SET */
	memset(m->bm, 0xff, m->npages / 64 * 8);
	for (uint64_t p = m->npages & ~63ULL; p < m->npages; p++)
		set_bit64(m->bm, p);
}

struct mslot *mvm_add(struct mvm *v, uint32_t slot, uint64_t npages,
		      bool logged, bool churn, bool present)
{
	struct mslot *m = &v->s[v->n++];

	VM_CHECK(v->n <= MAX_MSLOTS, "too many model slots");
	*m = (struct mslot){ .slot = slot, .present = present, .logged = logged,
			     .churn = churn, .npages = npages,
			     .gpa = gpa_home(slot, 0) };
	if (present && slot != SYS_SLOT) {
		vm_add_slot(v->vm, slot, m->gpa, npages,
			    logged ? KVM_MEM_LOG_DIRTY_PAGES : 0);
	}
	if (!v->manual && m->present && m->logged) {
		m->bm = calloc(1, bitmap_bytes(npages));
		VM_CHECK(m->bm, "calloc");
	} else {
		ms_set_bits(m);
	}
	return m;
}

void mvm_init(struct mvm *v, const char *name, bool manual, bool ring)
{
	memset(v, 0, sizeof(*v));
	v->name = name;
	v->manual = manual;
	v->ring = ring;
	if (ring) {
		v->vm = vm_create_dirty_ring(65536);
		if (!v->vm)
			return;
	} else {
		v->vm = vm_create(manual);
	}
	/* the helper's system slot: present, not logged */
	mvm_add(v, SYS_SLOT, SYS_PAGES, false, false, true);
}

static uint64_t popcount_bm(uint64_t addr, uint32_t num)
{
	uint64_t n = 0, w, word;

	for (w = 0; w < bitmap_bytes(num) / 8; w++) {
		memcpy(&word, peek(addr + 8 * w), 8);
		n += __builtin_popcountll(word);
	}
	return n;
}

/*
 * Apply a successful call to the model; bounds of pages_cleared.
 *
 * What a range does to the bits of a memslot is the shared reference
 * model of KVM_CLEAR_DIRTY_LOG, snap_apply() (lib/util.c), here on a
 * snapshot of one memslot over the model's own bitmap.  The fuzzer adds
 * what snapshots do not have: which memslots' bits are known exactly
 * (those churned by another thread, written by the racing vCPU, absent
 * or not logged only bound pages_cleared from above), and the caller's
 * memory as the kernel read it (the flap page through its fixed copy).
 */
void model_apply(struct fctx *x, const struct call *cl, uint64_t *lo, uint64_t *hi)
{
	const struct kvm_dirtybatch_clear *c = peek((uintptr_t)cl->argp);
	struct kvm_dirtybatch_range r;
	struct mslot *m;
	struct snap one;
	uint64_t w, bytes;
	uint32_t i;

	*lo = *hi = 0;
	for (i = 0; i < c->count; i++) {
		get_range(c, i, &r);
		m = cl->fdkind == FD_VM && !x->chaos ? ms_find(cl->vm, r.slot) : NULL;
		if (!m || (m->churn && cl->vm->racy) || m->exact != EX_EXACT ||
		    !m->present || !m->logged) {
			*hi += popcount_bm(r.dirty_bitmap, r.num_pages);
			continue;
		}
		bytes = bitmap_bytes(r.num_pages);
		if (touches_flap(r.dirty_bitmap, bytes)) {
			/* at most a memslot's bitmap: BIG_PAGES bits */
			for (w = 0; w < bytes / 8; w++)
				memcpy(&x->tmpbm[w], peek(r.dirty_bitmap + 8 * w), 8);
			r.dirty_bitmap = (uintptr_t)x->tmpbm;
		}
		one.n = 1;
		one.slot[0] = m->slot;
		one.npages[0] = m->npages;
		one.bm[0] = m->bm;
		*lo += snap_apply(&one, &r, 1, sizeof(r));
	}
	*hi += *lo;
}
