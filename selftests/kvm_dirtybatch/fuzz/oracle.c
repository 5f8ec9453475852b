// SPDX-License-Identifier: GPL-2.0
/*
 * fuzz/oracle.c: the expected outcome of a call, from the documented
 * contract of KVM_DIRTYBATCH_CLEAR (and of KVM_CLEAR_DIRTY_LOG_BATCH).
 */
#include <stddef.h>
#include <string.h>

#include "fuzz.h"

static unsigned int range_outcomes(struct mvm *v, bool racyvm,
				   const struct kvm_dirtybatch_range *r,
				   struct mslot **msp)
{
	uint32_t as = r->slot >> 16, id = (uint16_t)r->slot;
	struct mslot *m;

	*msp = NULL;
	if (as >= (uint32_t)g.nr_as || id >= (uint32_t)g.nr_memslots)
		return B(RS_EINVAL);
	if (r->first_page & 63)
		return B(RS_EINVAL);
	if (racyvm)
		return B(RS_OK) | B(RS_ENOENT) | B(RS_EINVAL);
	m = ms_find(v, r->slot);
	if (m && m->churn && v->racy)
		return B(RS_OK) | B(RS_ENOENT) | B(RS_EINVAL);
	if (!m || !m->present || !m->logged)
		return B(RS_ENOENT);
	if (r->first_page > m->npages || r->num_pages > m->npages - r->first_page ||
	    (r->num_pages < m->npages - r->first_page && (r->num_pages & 63)))
		return B(RS_EINVAL);
	*msp = m;
	return B(RS_OK);
}

static void fin(struct expect *e, int r, int64_t idx)
{
	e->allowed |= B(r);
	if (e->exact) {
		e->r = r;
		e->idx = idx;
	}
}

#define FIN(r, i) do { fin(e, r, i); return; } while (0)

/*
 * The documented checks of KVM_DIRTYBATCH_CLEAR, in their order, on the
 * memory as the kernel will see it.
 */
static void oracle1(struct fctx *x, const struct call *cl, struct expect *e)
{
	const struct kvm_dirtybatch_clear *c = cl->argp;
	uint64_t nbytes;
	bool racyvm = cl->fdkind == FD_RACY;
	struct kvm_dirtybatch_range r;
	struct mslot *m;
	unsigned int p;
	uint32_t i, k;

	memset(e, 0, sizeof(*e));
	e->exact = true;
	e->idx = -1;
	if (!readable(x, (uintptr_t)cl->argp, sizeof(*c)))
		FIN(RS_EFAULT, -1);
	c = peek((uintptr_t)cl->argp);
	if (!db_backend_is_module() && c->flags == KVM_CLEAR_DIRTY_LOG_BATCH_QUERY &&
	    !c->reserved[0] && !c->reserved[1] && !c->reserved[2] && !c->reserved[3]) {
		/* KVM's query: count and ranges 0, or -EINVAL */
		if (c->count || c->ranges)
			FIN(RS_EINVAL, -1);
		e->out_written = true;
		e->may_apply = true;
		FIN(RS_OK, 0);
	}
	if (c->flags || c->reserved0 || c->reserved[0] || c->reserved[1] ||
	    c->reserved[2] || c->reserved[3])
		FIN(RS_EINVAL, -1);
	if (c->range_size < RSIZE)
		FIN(RS_EINVAL, -1);
	if (c->range_size > 256)
		FIN(RS_E2BIG, -1);
	if (c->range_size % 8)
		FIN(RS_EINVAL, -1);
	if (c->count > MAX_RANGES)
		FIN(RS_E2BIG, -1);
	switch (cl->fdkind) {
	case FD_CLOSED:
		FIN(RS_EBADF, -1);
	case FD_NOTVM:
		FIN(RS_EINVAL, -1);
	case FD_RACY:
		/* closed, reused by any file, or some VM */
		e->allowed |= B(RS_EBADF) | B(RS_EINVAL);
		e->exact = false;
		break;
	}
	/*
	 * The module probes the out fields here, after the vm_fd checks (the
	 * table in Documentation/kvm_dirtybatch.rst lists "out fields cannot
	 * be written" with the first -EFAULT): a read-only argument with a
	 * bad vm_fd gets -EBADF/-EINVAL.  The oracle follows the module.
	 */
	if (!writable(x, (uintptr_t)cl->argp + offsetof(struct kvm_dirtybatch_clear, pages_cleared), 12))
		FIN(RS_EFAULT, -1);
	e->out_written = true;
	e->count = c->count;
	if (!c->count) {
		e->may_apply = true;
		FIN(RS_OK, 0);
	}
	/*
	 * The call's memory, allocated before the ranges are read: 32 bytes
	 * per range and one page, whatever the bitmaps' size.
	 */
	if ((uint64_t)c->count * 32 + PAGE_SIZE > MIB)
		e->allowed |= B(RS_ENOMEM);
	/* a fault anywhere in the array before nonzero extra bytes */
	nbytes = (uint64_t)c->count * c->range_size;
	if (!readable(x, c->ranges, nbytes))
		FIN(RS_EFAULT, c->count);
	for (i = 0; i < c->count; i++) {
		const uint8_t *rp = peek(c->ranges + (uint64_t)i * c->range_size);

		for (k = RSIZE; k < c->range_size; k++)
			if (rp[k])
				FIN(RS_E2BIG, i);
		get_range(c, i, &r);
		e->words += ((uint64_t)r.num_pages + 63) / 64;
	}
	/* KVM's ioctl finds the dirty ring checking the first range */
	if (cl->fdkind == FD_RING)
		FIN(RS_ENXIO, db_backend_is_module() ? c->count : 0);
	for (i = 0; i < c->count; i++) {
		get_range(c, i, &r);
		p = range_outcomes(cl->vm, racyvm, &r, &m);
		if (p & ~B(RS_OK)) {
			e->allowed |= p & ~B(RS_OK);
			if (!(p & B(RS_OK))) {
				if (e->exact)
					fin(e, __builtin_ctz(p), i);
				return;
			}
			e->exact = false;
		}
	}
	for (i = 0; i < c->count; i++) {
		get_range(c, i, &r);
		if (!readable(x, r.dirty_bitmap, bitmap_bytes(r.num_pages)))
			FIN(RS_EFAULT, i);
	}
	e->may_apply = true;
	fin(e, RS_OK, c->count);
}

void oracle(struct fctx *x, const struct call *cl, struct expect *e)
{
	struct expect e1;

	if (!cl->touches_flap) {
		x->flap_state = 1;
		oracle1(x, cl, e);
		return;
	}
	/* the page may be readable or not when the kernel reads it */
	x->flap_state = 0;
	oracle1(x, cl, e);
	x->flap_state = 1;
	oracle1(x, cl, &e1);
	if (!e->exact || !e1.exact || e->r != e1.r || e->idx != e1.idx)
		e->exact = false;
	e->allowed |= e1.allowed;
	e->out_written |= e1.out_written;
	e->may_apply |= e1.may_apply;
	e->words = e1.words;
	e->count = e1.count;
}
