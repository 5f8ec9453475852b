// SPDX-License-Identifier: GPL-2.0
/*
 * fuzz/race.c: the race test's threads: chaos calls, memslot and VM
 * churn, the flapping page and the userfaultfd stalls.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/userfaultfd.h>

#include "fuzz.h"

struct race_ctx rc;

const char *const ua_name[UA_NR] = {
	"nothing", "vm_fd_replaced", "slot_deleted", "logging_off", "slot_moved",
	"slot_shrunk"
};

static void gen_chaos(struct fctx *x, struct call *cl)
{
	unsigned int u = rnd(x, 100), k, nm;
	struct genp p;

	memset(cl, 0, sizeof(*cl));
	gen_valid(x, &p, &g.S);		/* x->chaos: ranges on churn ids */
	cl->cls = C_CHAOS;
	if (!db_backend_is_module()) {
		/* S only: a stale fd number reaches whatever file has it now */
	} else if (u < 45) {
		p.fd = __atomic_load_n(&rc.cfd[rnd(x, NR_CVM)], __ATOMIC_ACQUIRE);
		p.fdkind = FD_RACY;
		p.vm = NULL;
	} else if (u < 85) {
		/* S: only its churned memslots */
	} else if (u < 92) {
		set_fd(x, &p, FDC_CLOSED);
	} else {
		set_fd(x, &p, FDC_KVM + rnd(x, FDC_EVENT - FDC_KVM + 1));
	}
	if (one_in(x, 4)) {
		cl->cls = C_FLAP;
		/* not the module's struct for KVM's ioctl: db_clear() reads it */
		switch (rnd(x, db_backend_is_module() ? 3 : 2)) {
		case 0:
			p.rplace = RP_FLAP;
			p.n = 0;
			p.count = 1 + rnd(x, FLAP_RANGES);
			p.stride = p.rsize = RSIZE;
			break;
		case 1:
			x->gen[rnd(x, p.n)].dirty_bitmap = (uintptr_t)g.flap + 2048 + 8 * rnd(x, 64);
			break;
		default:
#ifndef DB_EMULATE	/* the emulation ignores a failed write-back */
			p.aplace = AP_FLAP;
#endif
			break;
		}
	} else if (one_in(x, 2)) {
		nm = 1 + rnd(x, 2);
		for (k = 0; k < nm; k++) {
			int kind;

			/* never a memslot id the model thread checks exactly */
			do {
				kind = pick_mutation(x);
			} while (kind == C_FD || kind == C_SLOT_ID || kind == C_RANDOM);
			if (!k)
				cl->cls = kind;
			mutate(x, &p, cl, kind);
		}
	}
	emit(x, &p, cl);
}

/*
 * A chaos call must not be able to clear a memslot whose bits another
 * thread checks exactly (S's stable slots, the userfaultfd VMs' slots 1
 * and 2): a range read with a wrong stride, for one, can name any id.
 * Only churn ids, the system slot and impossible ids are let through.
 */
static bool chaos_harmless(struct fctx *x, const struct call *cl)
{
	const struct kvm_dirtybatch_clear *c;
	struct kvm_dirtybatch_range r;
	uint32_t i, as, id;

	x->flap_state = 1;
	if (!readable(x, (uintptr_t)cl->argp, sizeof(*c)))
		return true;
	c = peek((uintptr_t)cl->argp);
	if (c->range_size < RSIZE || c->range_size > 256 || c->count > MAX_RANGES ||
	    !readable(x, c->ranges, (uint64_t)c->count * c->range_size))
		return true;
	for (i = 0; i < c->count; i++) {
		get_range(c, i, &r);
		as = r.slot >> 16;
		id = (uint16_t)r.slot;
		if (as >= (uint32_t)g.nr_as || id >= (uint32_t)g.nr_memslots || !id ||
		    (r.first_page & 63))
			continue;
		if (id < CHURN_LO || id > CHURN_HI)
			return false;
	}
	return true;
}

void *chaos_thread(void *arg)
{
	struct fctx *x = arg;
	struct call cl;

	while (!__atomic_load_n(&g.stop, __ATOMIC_ACQUIRE)) {
		gen_chaos(x, &cl);
		if (chaos_harmless(x, &cl))
			run_call(x, &cl);
	}
	return NULL;
}

void *slot_churn_thread(void *arg)
{
	struct rng rng;

	rng_init(&rng, (uintptr_t)arg);
	while (!__atomic_load_n(&g.stop, __ATOMIC_ACQUIRE)) {
		slot_op(NULL, &g.S, &rng, false);
		if (!rng_below(&rng, 4))
			usleep(rng_below(&rng, 300));
	}
	return NULL;
}

struct vm *make_cvm(struct rng *rng, bool vcpu)
{
	struct vm *vm = vm_create(true);
	uint64_t gpas[64], np;
	uint32_t n = 0, id;

	for (id = CHURN_LO; id <= CHURN_HI; id++) {
		if (!rng_below(rng, 4))
			continue;
		np = 1 + rng_below(rng, 600);
		vm_add_slot(vm, id, gpa_home(id, 0), np,
			    rng_below(rng, 4) ? KVM_MEM_LOG_DIRTY_PAGES : 0);
		gpas[n++] = gpa_home(id, 0) + rng_below(rng, np) * PAGE_SIZE;
	}
	for (id = CHURN_LO; g.nr_as > 1 && id <= CHURN_AS1_HI; id++)
		if (rng_below(rng, 2))
			vm_add_slot(vm, 1U << 16 | id, gpa_home(id, 0), 64 + rng_below(rng, 200),
				    KVM_MEM_LOG_DIRTY_PAGES);
	if (vcpu && n) {
		vm_create_vcpu(vm);
		guest_set_list(vm, gpas, n, 0);
		vcpu_start(vm);
	}
	return vm;
}

/* VM 0: memslot churn and re-creation; VM 1: a vCPU, its fd closed */
void *vm_churn_thread(void *arg)
{
	struct rng rng;
	struct vm *old;

	rng_init(&rng, (uintptr_t)arg);
	while (!__atomic_load_n(&g.stop, __ATOMIC_ACQUIRE)) {
		if (!rng_below(&rng, 12)) {
			old = rc.c[0];
			rc.c[0] = make_cvm(&rng, false);
			__atomic_store_n(&rc.cfd[0], rc.c[0]->fd, __ATOMIC_RELEASE);
			vm_free(old);
			__atomic_fetch_add(&g.vm_recreates, 1, __ATOMIC_RELAXED);
		} else {
			uint32_t id = CHURN_LO + rng_below(&rng, CHURN_HI - CHURN_LO + 1);
			struct vm_slot *s = vm_find_slot(rc.c[0], id);

			if (!s)
				vm_add_slot_try(rc.c[0], id, gpa_home(id, rng_below(&rng, 2)),
						1 + rng_below(&rng, 600),
						rng_below(&rng, 4) ? KVM_MEM_LOG_DIRTY_PAGES : 0, NULL);
			else if (rng_below(&rng, 3) == 0)
				vm_delete_slot_try(rc.c[0], id);
			else if (rng_below(&rng, 2))
				vm_move_slot_try(rc.c[0], id, s->gpa == gpa_home(id, 0) ?
						 gpa_home(id, 1) : gpa_home(id, 0));
			else
				vm_set_slot_flags_try(rc.c[0], id, s->flags ^ KVM_MEM_LOG_DIRTY_PAGES);
			__atomic_fetch_add(&g.slot_ops, 1, __ATOMIC_RELAXED);
		}
		if (!rng_below(&rng, 40)) {
			/* the VM lives on through its vCPU; the fd number is stale */
			vm_close_fd(rc.c[1]);
			__atomic_fetch_add(&g.fd_closes, 1, __ATOMIC_RELAXED);
			usleep(1000 + rng_below(&rng, 3000));
			vm_free(rc.c[1]);
			rc.c[1] = make_cvm(&rng, true);
			__atomic_store_n(&rc.cfd[1], rc.c[1]->fd, __ATOMIC_RELEASE);
			__atomic_fetch_add(&g.vm_recreates, 1, __ATOMIC_RELAXED);
		}
		if (!rng_below(&rng, 4))
			usleep(rng_below(&rng, 500));
	}
	return NULL;
}

void *flap_thread(void *arg)
{
	struct rng rng;

	rng_init(&rng, (uintptr_t)arg);
	while (!__atomic_load_n(&g.stop, __ATOMIC_ACQUIRE)) {
		mprotect(g.flap, PAGE_SIZE, PROT_NONE);
		usleep(rng_below(&rng, 200));
		mprotect(g.flap, PAGE_SIZE, PROT_READ);
		usleep(rng_below(&rng, 200));
		__atomic_fetch_add(&g.flips, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

void flap_setup(void)
{
	struct kvm_dirtybatch_range *r = (void *)flap_shadow;
	struct kvm_dirtybatch_clear *c = (void *)(flap_shadow + PAGE_SIZE - sizeof(*c));
	struct rng rng;
	uint32_t i;

	rng_init(&rng, 77);
	memset(flap_shadow, 0, sizeof(flap_shadow));
	memset(flap_shadow + 2048, 0xff, 1024);
	g.flap = mmap(NULL, PAGE_SIZE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	VM_CHECK(g.flap != MAP_FAILED, "mmap");
	for (i = 0; i < FLAP_RANGES; i++)
		r[i] = (struct kvm_dirtybatch_range){
			.slot = CHURN_LO + rng_below(&rng, CHURN_HI - CHURN_LO + 1),
			.first_page = 64 * rng_below(&rng, 3),
			.num_pages = 64 * rng_below(&rng, 4),
			.dirty_bitmap = (uintptr_t)g.flap + 2048 + 8 * i,
		};
	*c = (struct kvm_dirtybatch_clear){ .vm_fd = g.S.vm->fd, .count = FLAP_RANGES,
		.range_size = RSIZE, .ranges = (uintptr_t)g.flap };
	memcpy(g.flap, flap_shadow, PAGE_SIZE);
	VM_CHECK(!mprotect(g.flap, PAGE_SIZE, PROT_READ), "mprotect");
}

struct ucall {
	void *argp;
	int ret;
};

static void *ucall_fn(void *a)
{
	struct ucall *u = a;

	if (db_backend_is_module())
		u->ret = db_ioctl(g.dbfd, KVM_DIRTYBATCH_CLEAR, u->argp) ? errno : 0;
	else
		u->ret = -db_clear(g.dbfd, u->argp);
	return NULL;
}

/* a memslot change of uffd_round() */
struct uact {
	struct vm *vm;
	int act, tgt;
	volatile int done;
};

static void uffd_act(struct uact *a)
{
	switch (a->act) {
	case UA_FD:
		VM_CHECK(dup2(g.devnull, a->vm->fd) == a->vm->fd, "dup2");
		break;
	case UA_DELETE:
		vm_delete_slot(a->vm, a->tgt + 1);
		break;
	case UA_LOGOFF:
		vm_set_slot_flags(a->vm, a->tgt + 1, 0);
		break;
	case UA_MOVE:
		vm_move_slot(a->vm, a->tgt + 1, (40 + 8 * a->tgt) * MIB);
		break;
	case UA_SHRINK:
		vm_delete_slot(a->vm, a->tgt + 1);
		vm_add_slot(a->vm, a->tgt + 1, (16 + 8 * a->tgt) * MIB, 10, KVM_MEM_LOG_DIRTY_PAGES);
		break;
	}
	__atomic_store_n(&a->done, 1, __ATOMIC_RELEASE);
}

static void *uact_fn(void *a)
{
	uffd_act(a);
	return NULL;
}

/*
 * A call stalls on a userfaultfd page inside copy_from_user (the argument,
 * the ranges array or a bitmap); meanwhile the VM fd is replaced or the
 * memslot named changes; then the page arrives.  The result is exact.
 * The argument and the ranges are read before the ranges are validated,
 * so a memslot change during the stall decides the result; a bitmap is
 * read after, under kvm->slots_lock, so a memslot change then must wait
 * for the call (made from another thread: it completes after the call,
 * which succeeds).
 */
static void uffd_round(struct fctx *x, int ufd, uint8_t *u, uint8_t *src)
{
	int where = rnd(x, US_NR), act = rnd(x, UA_NR), tgt = rnd(x, 2), res;
	/* the module's struct: db_clear() reads it for KVM's ioctl, not KVM */
	if (where == US_ARG && !db_backend_is_module())
		where = US_RANGES;
	uint64_t b[2][2] = { { rng_next(&x->rng), rng_next(&x->rng) }, { rng_next(&x->rng), 0 } };
	static const uint64_t np[2] = { 128, 64 };
	struct kvm_dirtybatch_range rr[2];
	struct kvm_dirtybatch_clear cb, *c;
	struct uffdio_copy copy;
	struct uffd_msg msg;
	struct pollfd pfd = { .fd = ufd, .events = POLLIN };
	struct expect e = { .count = 2, .words = 3 };
	struct call cl = { .cls = C_UFFD };
	uint64_t want = 0, bm[2][2];
	struct ucall uc;
	struct uact ua;
	pthread_t th, ath;
	bool held;
	struct vm *X;
	int i, j;

	X = vm_create(true);
	vm_add_slot(X, 1, 16 * MIB, np[0], KVM_MEM_LOG_DIRTY_PAGES);
	vm_add_slot(X, 2, 24 * MIB, np[1], KVM_MEM_LOG_DIRTY_PAGES);
	rr[0] = (struct kvm_dirtybatch_range){ .slot = 1, .num_pages = np[0],
					       .dirty_bitmap = (uintptr_t)b[0] };
	rr[1] = (struct kvm_dirtybatch_range){ .slot = 2, .num_pages = np[1],
					       .dirty_bitmap = (uintptr_t)b[1] };
	cb = (struct kvm_dirtybatch_clear){ .vm_fd = X->fd, .count = 2, .range_size = RSIZE,
		.ranges = (uintptr_t)rr, .pages_cleared = SENT64, .error_index = SENT32 };
	memset(src, 0, PAGE_SIZE);
	uc.argp = &cb;
	switch (where) {
	case US_ARG:
		memcpy(src, &cb, sizeof(cb));
		uc.argp = u;
		break;
	case US_RANGES:
		memcpy(src, rr, sizeof(rr));
		cb.ranges = (uintptr_t)u;
		break;
	default:
		memcpy(src, b[tgt], sizeof(b[tgt]));
		rr[tgt].dirty_bitmap = (uintptr_t)u;
		break;
	}
	cl.c = cb;
	snprintf(cl.what, sizeof(cl.what), "uffd stall in %s, %s of slot %d",
		 where == US_ARG ? "argument" : where == US_RANGES ? "ranges" : "bitmap",
		 ua_name[act], tgt + 1);
	VM_CHECK(!pthread_create(&th, NULL, ucall_fn, &uc), "pthread_create");
	res = poll(&pfd, 1, 30000);
	if (res != 1 || read(ufd, &msg, sizeof(msg)) != sizeof(msg) ||
	    msg.event != UFFD_EVENT_PAGEFAULT) {
		VIOL(x, &cl, "the call did not fault on the userfaultfd page (poll %d)", res);
		copy = (struct uffdio_copy){ .dst = (uintptr_t)u, .src = (uintptr_t)src,
					     .len = PAGE_SIZE };
		ioctl(ufd, UFFDIO_COPY, &copy);
		pthread_join(th, NULL);
		vm_free(X);
		__atomic_store_n(&g.stop, 1, __ATOMIC_RELEASE);
		return;
	}
	/* the call sleeps in copy_from_user now */
	ua = (struct uact){ .vm = X, .act = act, .tgt = tgt };
	held = where == US_BITMAP && act != UA_NONE && act != UA_FD;
	if (held) {
		VM_CHECK(!pthread_create(&ath, NULL, uact_fn, &ua), "pthread_create");
		usleep(20000);
		if (__atomic_load_n(&ua.done, __ATOMIC_ACQUIRE))
			VIOL(x, &cl, "the memslot changed while the call read a bitmap of a validated range");
	} else {
		uffd_act(&ua);
	}
	copy = (struct uffdio_copy){ .dst = (uintptr_t)u, .src = (uintptr_t)src, .len = PAGE_SIZE };
	if (ioctl(ufd, UFFDIO_COPY, &copy))
		VIOL(x, &cl, "UFFDIO_COPY: %s", strerror(errno));
	pthread_join(th, NULL);
	if (held)
		pthread_join(ath, NULL);

	e.exact = true;
	e.out_written = true;
	if (act == UA_FD && where == US_ARG) {
		e.r = RS_EINVAL;		/* vm_fd is /dev/null by the time it is read */
		e.idx = -1;
		e.out_written = false;
	} else if (held) {
		e.r = RS_OK;		/* the memslot changed after the call */
		e.idx = 2;
		for (i = 0; i < 2; i++)
			want += __builtin_popcountll(b[i][0]) + (i ? 0 : __builtin_popcountll(b[i][1]));
	} else if (act == UA_DELETE || act == UA_LOGOFF) {
		e.r = RS_ENOENT;
		e.idx = tgt;
	} else if (act == UA_SHRINK) {
		e.r = RS_EINVAL;
		e.idx = tgt;
	} else {
		e.r = RS_OK;
		e.idx = 2;
		for (i = 0; i < 2; i++)
			want += __builtin_popcountll(b[i][0]) + (i ? 0 : __builtin_popcountll(b[i][1]));
	}
	c = uc.argp;
	res = r_of(uc.ret);
	if (res != e.r)
		VIOL(x, &cl, "got %s, expected %s", r_name[res], r_name[e.r]);
	else if (res == RS_OK && db_backend_has_stats() && c->pages_cleared != want)
		VIOL(x, &cl, "pages_cleared %llu, expected %llu",
		     (unsigned long long)c->pages_cleared, (unsigned long long)want);
	else if (e.out_written && c->error_index != (uint32_t)e.idx)
		VIOL(x, &cl, "error_index %u, expected %lld", c->error_index, (long long)e.idx);
	if (res == RS_OK && act != UA_FD) {
		for (i = 0; i < 2; i++) {
			if (held && i == tgt && act != UA_MOVE)
				continue;	/* gone, not logged or new since */
			memset(bm[i], 0, sizeof(bm[i]));
			vm_get_dirty_log(X, i + 1, bm[i]);
			for (j = 0; j < (int)(np[i] / 64); j++)
				if (bm[i][j] != ~b[i][j])
					VIOL(x, &cl, "slot %d word %d: 0x%llx in KVM, expected 0x%llx",
					     i + 1, j, (unsigned long long)bm[i][j],
					     (unsigned long long)~b[i][j]);
		}
	}
	count_stats(x, &cl, res, &e, res != RS_OK ? 0 : db_backend_has_stats() ?
		    c->pages_cleared : want, c->error_index);
	__atomic_fetch_add(&g.uffd_stalls[act], 1, __ATOMIC_RELAXED);
	if (held)
		__atomic_fetch_add(&g.uffd_waited, 1, __ATOMIC_RELAXED);
	vm_free(X);
	madvise(u, PAGE_SIZE, MADV_DONTNEED);	/* missing again */
}

void *uffd_thread(void *arg)
{
	struct fctx *x = arg;
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg;
	uint8_t *u, *src;
	int ufd;

#ifdef DB_EMULATE
	/* the emulation reads user memory with process_vm_readv() */
	rc.uffd_skipped = true;
	return NULL;
#endif
	ufd = syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (ufd < 0 || ioctl(ufd, UFFDIO_API, &api)) {
		rc.uffd_skipped = true;
		return NULL;
	}
	u = mmap(NULL, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	src = aligned_alloc(PAGE_SIZE, PAGE_SIZE);
	VM_CHECK(u != MAP_FAILED && src, "mmap");
	reg = (struct uffdio_register){ .range = { .start = (uintptr_t)u, .len = PAGE_SIZE },
					.mode = UFFDIO_REGISTER_MODE_MISSING };
	if (ioctl(ufd, UFFDIO_REGISTER, &reg)) {
		rc.uffd_skipped = true;
		close(ufd);
		return NULL;
	}
	while (!__atomic_load_n(&g.stop, __ATOMIC_ACQUIRE))
		uffd_round(x, ufd, u, src);
	close(ufd);
	munmap(u, PAGE_SIZE);
	free(src);
	return NULL;
}
