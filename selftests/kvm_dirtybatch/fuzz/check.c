// SPDX-License-Identifier: GPL-2.0
/*
 * fuzz/check.c: one call issued and checked against the oracle and the
 * model: result, out fields, dirty bitmaps, module counters.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "fuzz.h"

static void describe(struct fctx *x, const struct call *cl)
{
	const struct kvm_dirtybatch_clear *c = &cl->c;
	struct kvm_dirtybatch_range r;
	uint32_t i;

	ksft_print_msg("   call: class %s [%s] fd %d (kind %d%s%s) flags 0x%x res0 0x%x count %u range_size %u ranges 0x%llx arg %p\n",
		       c_name[cl->cls], cl->what, c->vm_fd, cl->fdkind,
		       cl->vm ? " " : "", cl->vm ? cl->vm->name : "", c->flags,
		       c->reserved0, c->count, c->range_size,
		       (unsigned long long)c->ranges, cl->argp);
	if (c->range_size < RSIZE || c->range_size > 256 || c->count > MAX_RANGES)
		return;
	for (i = 0; i < c->count && i < 6; i++) {
		x->flap_state = 1;
		if (!readable(x, c->ranges + (uint64_t)i * c->range_size, c->range_size))
			break;
		get_range(c, i, &r);
		ksft_print_msg("   range %u: slot 0x%x first %llu num %u bitmap 0x%llx\n", i,
			       r.slot, (unsigned long long)r.first_page, r.num_pages,
			       (unsigned long long)r.dirty_bitmap);
	}
}

void violation(struct fctx *x, const struct call *cl, int line,
		      const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	x->st.violations++;
	if (x->logged_violations >= 12)
		return;
	x->logged_violations++;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&g.log_lock);
	ksft_print_msg("VIOLATION [%s, call %llu, line %d]: %s\n", x->name,
		       (unsigned long long)x->st.calls, line, buf);
	if (cl)
		describe(x, cl);
	fflush(stdout);
	pthread_mutex_unlock(&g.log_lock);
}

/* Compare the exact model of one slot with KVM_GET_DIRTY_LOG. */
static bool verify_slot(struct fctx *x, const struct call *cl, struct mvm *v,
			struct mslot *m)
{
	int r;

	if ((m->churn && v->racy) || m->exact != EX_EXACT || !v->manual || v->ring ||
	    !m->present || !m->logged)
		return true;
	memset(x->tmpbm, 0, bitmap_bytes(m->npages));
	r = vm_get_dirty_log_try(v->vm, m->slot, x->tmpbm);
	if (r) {
		VIOL(x, cl, "KVM_GET_DIRTY_LOG %s slot 0x%x: %s", v->name, m->slot, strerror(-r));
		return false;
	}
	if (!memcmp(x->tmpbm, m->bm, bitmap_bytes(m->npages)))
		return true;
	for (uint64_t p = 0; p < m->npages; p++)
		if (test_bit64(x->tmpbm, p) != test_bit64(m->bm, p)) {
			VIOL(x, cl, "%s slot 0x%x (%llu pages): page %llu is %s in KVM, %s in the model",
			     v->name, m->slot, (unsigned long long)m->npages,
			     (unsigned long long)p, test_bit64(x->tmpbm, p) ? "dirty" : "clean",
			     test_bit64(m->bm, p) ? "dirty" : "clean");
			break;
		}
	memcpy(m->bm, x->tmpbm, bitmap_bytes(m->npages));
	return false;
}

static void verify_vm(struct fctx *x, struct mvm *v)
{
	int i;

	if (!v->vm)
		return;
	for (i = 0; i < v->n; i++)
		verify_slot(x, NULL, v, &v->s[i]);
}

void verify_all(struct fctx *x)
{
	verify_vm(x, &g.S);
	verify_vm(x, &g.O);
	verify_vm(x, &g.N);
}

/* The exact slots a call names (those that exist), verified after it. */
static void verify_named(struct fctx *x, const struct call *cl)
{
	const struct kvm_dirtybatch_clear *c;
	struct kvm_dirtybatch_range r;
	struct mslot *seen[16];
	int nseen = 0, j;
	uint32_t i;

	if (cl->fdkind != FD_VM || !readable(x, (uintptr_t)cl->argp, sizeof(*c)))
		return;
	c = peek((uintptr_t)cl->argp);
	if (c->range_size < RSIZE || c->range_size > 256 || !c->count ||
	    c->count > MAX_RANGES ||
	    !readable(x, c->ranges, (uint64_t)c->count * c->range_size)) {
		return;
	}
	for (i = 0; i < c->count; i++) {
		struct mslot *m;

		get_range(c, i, &r);
		m = ms_find(cl->vm, r.slot);
		if (!m)
			continue;
		for (j = 0; j < nseen && seen[j] != m; j++)
			;
		if (j < nseen)
			continue;
		if (nseen == 16) {
			verify_vm(x, cl->vm);
			return;
		}
		seen[nseen++] = m;
	}
	for (j = 0; j < nseen; j++)
		verify_slot(x, cl, cl->vm, seen[j]);
}

/*
 * Count a call as the module must.  @idx: the error_index it wrote
 * (UINT32_MAX if it cannot be read).  It synced the dirty logs if it got
 * past the per-range checks (count > 0): it succeeded, or a bitmap
 * faulted (-EFAULT with error_index < count; a fault on the argument or
 * the ranges array leaves error_index unwritten or at count).  With the
 * result and error_index checked against the oracle, that is exact.
 */
void count_stats(struct fctx *x, const struct call *cl, int r,
		 const struct expect *e, uint64_t pages, uint32_t idx)
{
	x->st.calls++;
	x->st.hist[cl->cls][r]++;
	if (e->count && (r == RS_OK || (r == RS_EFAULT && idx < e->count)))
		x->st.syncs++;
	if (r != RS_OK) {
		x->st.failed++;
		return;
	}
	x->st.ok++;
	x->st.pages += pages;
	x->st.ranges += e->count;
	if (e->count) {
		x->st.holds++;
		x->st.words += e->words;
	}
	if (pages)
		x->st.flushes++;
}

/*
 * The slot the vCPU writes during the race test: its bits are only known
 * to go 0 -> 1 by themselves, so a 1 -> 0 change must be requested.
 */
static struct mslot *weak_named(struct fctx *x, const struct call *cl)
{
	const struct kvm_dirtybatch_clear *c;
	struct kvm_dirtybatch_range r;
	struct mslot *m;
	uint64_t w, word;
	bool named = false;
	uint32_t i;

	if (x->chaos || cl->fdkind != FD_VM || cl->vm != &g.S)
		return NULL;
	m = ms_find(&g.S, W_ID);
	if (!m || m->exact != EX_WEAK || !readable(x, (uintptr_t)cl->argp, sizeof(*c)))
		return NULL;
	c = peek((uintptr_t)cl->argp);
	if (c->range_size < RSIZE || c->range_size > 256 || !c->count ||
	    c->count > MAX_RANGES || !readable(x, c->ranges, (uint64_t)c->count * c->range_size))
		return NULL;
	memset(x->wreq, 0, sizeof(x->wreq));
	for (i = 0; i < c->count; i++) {
		get_range(c, i, &r);
		if (r.slot != W_ID)
			continue;
		named = true;
		if (r.first_page & 63 || r.first_page >= 512 ||
		    !readable(x, r.dirty_bitmap, bitmap_bytes(r.num_pages)))
			continue;
		for (w = 0; w < bitmap_bytes(r.num_pages) / 8 && r.first_page / 64 + w < 8; w++) {
			memcpy(&word, peek(r.dirty_bitmap + 8 * w), 8);
			x->wreq[r.first_page / 64 + w] |= word;
		}
	}
	if (!named)
		return NULL;
	if (vm_get_dirty_log_try(g.S.vm, W_ID, x->wb0))
		return NULL;
	return m;
}

static void weak_check(struct fctx *x, const struct call *cl, int r)
{
	int w;

	if (vm_get_dirty_log_try(g.S.vm, W_ID, x->wb1)) {
		VIOL(x, cl, "KVM_GET_DIRTY_LOG of the written slot failed");
		return;
	}
	for (w = 0; w < 8; w++) {
		uint64_t lost = x->wb0[w] & ~x->wb1[w];

		if (r != RS_OK && lost)
			VIOL(x, cl, "failed call: written slot page %d went clean",
			     w * 64 + __builtin_ctzll(lost));
		else if (lost & ~x->wreq[w])
			VIOL(x, cl, "written slot page %d went clean without being named",
			     w * 64 + __builtin_ctzll(lost & ~x->wreq[w]));
	}
}

/*
 * Issue one generated call and check everything that can be checked.
 * Returns the R_* result.
 */
int run_call(struct fctx *x, struct call *cl)
{
	struct kvm_dirtybatch_clear after;
	uintptr_t a = (uintptr_t)cl->argp, pg = (uintptr_t)x->argpg;
	bool normal = a >= pg && a <= pg + PAGE_SIZE - sizeof(after);
	uint64_t lo = 0, hi = 0, pages = 0;
	uint64_t t0 = now_ns(), t1;
	struct mslot *weak;
	struct expect e;
	int ret, r;

	oracle(x, cl, &e);
	weak = weak_named(x, cl);
	t1 = now_ns();
	if (db_backend_is_module())
		ret = db_ioctl(g.dbfd, KVM_DIRTYBATCH_CLEAR, cl->argp) ? errno : 0;
	else
		ret = -db_clear(g.dbfd, cl->argp);	/* the argument is in argpg */
	x->ns_ioctl += now_ns() - t1;
	x->st.ns[cl->cls] += now_ns() - t1;
	x->ns_check += t1 - t0;
	t0 = now_ns();
	r = r_of(ret);
	if (weak)
		weak_check(x, cl, r);
	if (normal)
		memcpy(&after, cl->argp, sizeof(after));

	if (!(e.allowed & B(r))) {
		char exp[128] = "";
		int k;

		for (k = 0; k < RS_NR; k++)
			if (e.allowed & B(k))
				snprintf(exp + strlen(exp), sizeof(exp) - strlen(exp), " %s", r_name[k]);
		VIOL(x, cl, "got %s (error_index %u), possible:%s", r == RS_OTHER ?
		     strerror(ret) : r_name[r], normal ? after.error_index : 0, exp);
	} else if (e.exact && r != e.r && r != RS_ENOMEM) {
		VIOL(x, cl, "got %s, expected %s", r_name[r], r_name[e.r]);
	}

	if (normal) {
		struct kvm_dirtybatch_clear a = after;

		a.pages_cleared = cl->c.pages_cleared;
		a.error_index = cl->c.error_index;
		if (memcmp(&a, &cl->c, sizeof(a)))
			VIOL(x, cl, "fields other than pages_cleared/error_index changed");
		/* db_clear() writes both for KVM's ioctl, which has no pages_cleared */
		if (db_backend_has_stats() && !e.out_written &&
		    (after.pages_cleared != SENT64 || after.error_index != SENT32))
			VIOL(x, cl, "out fields written on an early error: pages_cleared 0x%llx error_index %u",
			     (unsigned long long)after.pages_cleared, after.error_index);
		if (db_backend_has_stats() && r != RS_OK && after.pages_cleared != SENT64 &&
		    after.pages_cleared)
			VIOL(x, cl, "failed call reports pages_cleared %llu",
			     (unsigned long long)after.pages_cleared);
		if (r == RS_OK && after.error_index != cl->c.count)
			VIOL(x, cl, "error_index %u after success, count %u", after.error_index,
			     cl->c.count);
		if (r != RS_OK && r == e.r && e.exact && e.idx >= 0 && after.error_index != SENT32 &&
		    after.error_index != (uint32_t)e.idx)
			VIOL(x, cl, "error_index %u, expected %lld", after.error_index,
			     (long long)e.idx);
		if (r != RS_OK && after.error_index != SENT32 && after.error_index > cl->c.count)
			VIOL(x, cl, "error_index %u > count %u", after.error_index, cl->c.count);
		if (r != RS_OK && e.exact && e.idx >= 0 && e.idx < (int64_t)cl->c.count &&
		    r == e.r && after.error_index == SENT32)
			VIOL(x, cl, "error_index not written for a range error");
		pages = db_backend_has_stats() ? after.pages_cleared : 0;
		x->last_pages = pages;
		x->last_idx = after.error_index;
	} else {
		x->last_pages = x->last_idx = 0;
	}

	if (r == RS_OK && (e.allowed & B(RS_OK))) {
		model_apply(x, cl, &lo, &hi);
		if (normal && db_backend_has_stats() && (pages < lo || pages > hi))
			VIOL(x, cl, "pages_cleared %llu, model says %llu..%llu",
			     (unsigned long long)pages, (unsigned long long)lo,
			     (unsigned long long)hi);
		/* KVM's ioctl does not count: the model's, the bitmaps are verified */
		if (!normal || !db_backend_has_stats()) {
			pages = lo == hi ? lo : 0;
			if (normal)
				x->last_pages = pages;
		}
	}
	count_stats(x, cl, r, &e, pages, normal ? after.error_index : UINT32_MAX);
	if (!x->chaos) {
		if (r == RS_OK && !(e.allowed & B(RS_OK)) && cl->fdkind == FD_VM)
			verify_vm(x, cl->vm);	/* resync after an impossible success */
		else
			verify_named(x, cl);
	}
	x->ns_check += now_ns() - t0;
	return r;
}

/*
 * The module counters moved exactly as this (only) thread's calls say; the
 * lock breaks, not predictable, as many as the MMU-lock holds beyond one
 * per call that took the lock, at most one per bitmap word of those calls.
 */
void check_counters(struct fctx *x, struct kvm_dirtybatch_stats *prev,
		    const struct stats *before, const struct call *cl)
{
	struct kvm_dirtybatch_stats now;
	struct stats *s = &x->st;
	uint64_t breaks;

	if (db_get_stats(g.dbfd, &now)) {
		VIOL(x, cl, "GET_STATS failed");
		return;
	}
	breaks = now.lock_breaks - prev->lock_breaks;
#define CK(f, v) do {							\
	if (now.f - prev->f != (v))					\
		VIOL(x, cl, "counter " #f " moved by %llu, expected %llu",	\
		     (unsigned long long)(now.f - prev->f),		\
		     (unsigned long long)(v));				\
} while (0)
	CK(calls, s->ok - before->ok);
	CK(failed_calls, s->failed - before->failed);
	CK(ranges, s->ranges - before->ranges);
	CK(pages_cleared, s->pages - before->pages);
	CK(mmu_lock_holds, s->holds - before->holds + breaks);
	CK(tlb_flushes, s->flushes - before->flushes);
	CK(dirty_log_syncs, s->syncs - before->syncs);
#undef CK
	if (breaks > s->words - before->words)
		VIOL(x, cl, "lock_breaks moved by %llu, more than the %llu bitmap words of the call",
		     (unsigned long long)breaks, (unsigned long long)(s->words - before->words));
	s->breaks += breaks;
	if (now.live_allocs)
		VIOL(x, cl, "live_allocs %llu with no call in flight",
		     (unsigned long long)now.live_allocs);
	if (now.max_hold_ns < prev->max_hold_ns)
		VIOL(x, cl, "max_hold_ns went down");
	*prev = now;
}
