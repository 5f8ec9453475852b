// SPDX-License-Identifier: GPL-2.0
/*
 * concurrency_test: KVM_DIRTYBATCH_CLEAR racing with memslot changes and
 * with VM fds being closed and re-created.
 *
 * Mutator threads delete / add / move memslots and toggle dirty logging,
 * and close + re-create their VM (so the published fd number goes stale,
 * gets reused by /dev/kvm or another VM, ...).  One VM has a vCPU writing
 * continuously; its VM fd is closed half-way (the vCPU keeps the VM
 * alive).  Clear threads call KVM_DIRTYBATCH_CLEAR in a loop on a shared
 * device fd with random ranges (valid and invalid, small and big).
 * Every call must return 0, -EBADF, -EINVAL or -ENOENT; no call may hang
 * (watchdog); afterwards, with all VMs and device fds closed, live_allocs
 * must be 0 and the call counters must match what the threads saw.
 *
 * With KVM_DIRTYBATCH_BACKEND=native the batch is an ioctl on the VM fd
 * itself, and a stale fd number is whatever file now has it (a running
 * vCPU's fd would block the call on vcpu->mutex): there the clear threads
 * hold the holder's fd_lock for reading, so that a published fd is a live
 * VM fd or -1.  Memslot changes still race with every native clear.
 * KVM_DIRTYBATCH_CONC_SECONDS sets the duration (default 4).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "util.h"

#define MIB		(1UL << 20)
#define NR_HOLDERS	3		/* the last one runs a vCPU */
#define NR_CLEARERS	3
#define NR_IDS		10		/* slot ids 0..9 used in ranges */
#define BIG_ID		9
#define BIG_PAGES	(1U << 16)
#define MAX_RANGES	16

struct holder {
	struct vm *vm;
	int fd_pub;			/* published vm fd number (may be stale) */
	pthread_rwlock_t fd_lock;	/* native backend: fd_pub stays live */
	bool vcpu;
	uint64_t recreates, slot_ops, slot_errs;
};

struct clearer {
	pthread_t th;
	unsigned int id;
	uint64_t seed;
	volatile uint64_t progress;
	uint64_t ok, ebadf, einval, enoent, other, pages, max_ns;
	int bad_errno;
	struct kvm_dirtybatch_range bad_range[MAX_RANGES];
	unsigned int bad_count;
	int bad_fd;
};

static struct {
	int dbfd;
	volatile int stop;
	uint64_t deadline;
	struct holder h[NR_HOLDERS];
	struct clearer c[NR_CLEARERS];
	pthread_t mut[NR_HOLDERS];
	uint64_t mut_seed[NR_HOLDERS];
	uint64_t *ones;
} g;

static uint64_t slot_gpa(uint32_t id, unsigned int gen)
{
	/* two GPA homes per id so that moves never overlap other slots */
	return id == BIG_ID ? (1ULL << 30) : (16 + 8 * id + 4 * (gen & 1)) * MIB;
}

static struct vm *make_vm(struct holder *h)
{
	struct vm *vm = vm_create(true);
	uint32_t id;

	for (id = 1; id <= 4; id++)
		vm_add_slot(vm, id, slot_gpa(id, 0), 64 * id + 3, KVM_MEM_LOG_DIRTY_PAGES);
	vm_add_slot(vm, BIG_ID, slot_gpa(BIG_ID, 0), BIG_PAGES, KVM_MEM_LOG_DIRTY_PAGES);
	if (h->vcpu) {
		uint64_t gpas[256];
		unsigned int i;

		for (i = 0; i < 256; i++)
			gpas[i] = slot_gpa(1 + i % 4, 0) + (i * 7 % 67) * PAGE_SIZE;
		vm_create_vcpu(vm);
		vm->ctrl->seq = 0;
		guest_set_list(vm, gpas, 256, 0);
		vcpu_start(vm);
	}
	return vm;
}

/* the native backend's ioctl goes to whatever file has the fd number */
static bool fd_must_be_live(void)
{
	return !db_backend_has_stats();
}

static void *mutator(void *arg)
{
	struct holder *h = arg;
	unsigned int idx = h - g.h;
	struct rng rng;
	bool closed = false;

	rng_init(&rng, g.mut_seed[idx]);
	while (!g.stop) {
		uint32_t id = 5 + rng_below(&rng, 4);	/* 5..8: churned slots */
		struct vm_slot *s;
		int r = 0;

		if (h->vcpu) {
			/* close the VM fd half-way; the vCPU keeps the VM alive */
			if (!closed && now_ns() > g.deadline - 2000000000ULL) {
				if (fd_must_be_live()) {
					pthread_rwlock_wrlock(&h->fd_lock);
					__atomic_store_n(&h->fd_pub, -1, __ATOMIC_RELEASE);
				}
				vm_close_fd(h->vm);
				if (fd_must_be_live())
					pthread_rwlock_unlock(&h->fd_lock);
				closed = true;
			}
			if (closed) {
				usleep(1000);
				continue;
			}
		} else if (!rng_below(&rng, 64)) {
			if (fd_must_be_live())
				pthread_rwlock_wrlock(&h->fd_lock);
			vm_free(h->vm);
			h->vm = make_vm(h);
			__atomic_store_n(&h->fd_pub, h->vm->fd, __ATOMIC_RELEASE);
			if (fd_must_be_live())
				pthread_rwlock_unlock(&h->fd_lock);
			h->recreates++;
			continue;
		}
		s = vm_find_slot(h->vm, id);
		if (!s) {
			r = vm_add_slot_try(h->vm, id, slot_gpa(id, rng_below(&rng, 2)),
					    1 + rng_below(&rng, 600),
					    rng_below(&rng, 4) ? KVM_MEM_LOG_DIRTY_PAGES : 0,
					    NULL);
		} else {
			switch (rng_below(&rng, 3)) {
			case 0:
				r = vm_delete_slot_try(h->vm, id);
				break;
			case 1:
				r = vm_move_slot_try(h->vm, id, s->gpa == slot_gpa(id, 0) ?
						     slot_gpa(id, 1) : slot_gpa(id, 0));
				break;
			case 2:
				r = vm_set_slot_flags_try(h->vm, id,
							  s->flags ^ KVM_MEM_LOG_DIRTY_PAGES);
				break;
			}
		}
		h->slot_ops++;
		if (r)
			h->slot_errs++;
		if (!rng_below(&rng, 8))
			sched_yield();
	}
	return NULL;
}

static void *clearer(void *arg)
{
	struct clearer *c = arg;
	struct kvm_dirtybatch_range r[MAX_RANGES];
	struct rng rng;

	rng_init(&rng, c->seed);
	while (!g.stop) {
		struct holder *h = &g.h[rng_below(&rng, NR_HOLDERS)];
		struct kvm_dirtybatch_clear cl;
		unsigned int n = 1 + rng_below(&rng, MAX_RANGES), i;
		uint64_t t0, dt;
		int ret;

		bool valid = rng_below(&rng, 2);

		for (i = 0; i < n; i++) {
			uint32_t id = rng_below(&rng, NR_IDS);

			r[i].slot = id;
			r[i].dirty_bitmap = (uintptr_t)g.ones;
			if (valid) {
				/* valid for the stable slots 1..4 (64 * id + 3 pages) */
				uint64_t npages, words;

				id = 1 + rng_below(&rng, 4);
				npages = 64 * id + 3;
				words = rng_below(&rng, id + 1);
				r[i].slot = id;
				r[i].first_page = 64 * words;
				r[i].num_pages = rng_below(&rng, 2) ? npages - 64 * words
					: 64 * rng_below(&rng, id - words + 1);
				continue;
			}
			if (id == BIG_ID && rng_below(&rng, 2)) {
				r[i].first_page = 0;
				r[i].num_pages = BIG_PAGES;
				continue;
			}
			r[i].first_page = 64 * rng_below(&rng, 10);
			switch (rng_below(&rng, 4)) {
			case 0:
				r[i].num_pages = 0;
				break;
			case 1:
				r[i].num_pages = 64;
				break;
			case 2:
				r[i].num_pages = 64 * (1 + rng_below(&rng, 10));
				break;
			default:
				r[i].num_pages = 1 + rng_below(&rng, 700);
				break;
			}
		}
		cl = (struct kvm_dirtybatch_clear){
			.vm_fd = __atomic_load_n(&h->fd_pub, __ATOMIC_ACQUIRE),
			.count = n, .range_size = sizeof(r[0]), .ranges = (uintptr_t)r,
		};
		t0 = now_ns();
		if (fd_must_be_live()) {
			pthread_rwlock_rdlock(&h->fd_lock);
			cl.vm_fd = __atomic_load_n(&h->fd_pub, __ATOMIC_ACQUIRE);
		}
		ret = db_clear(g.dbfd, &cl);
		if (fd_must_be_live())
			pthread_rwlock_unlock(&h->fd_lock);
		dt = now_ns() - t0;
		if (dt > c->max_ns)
			c->max_ns = dt;
		switch (ret) {
		case 0:
			c->ok++;
			if (db_backend_has_stats())
				c->pages += cl.pages_cleared;
			break;
		case -EBADF:
			c->ebadf++;
			break;
		case -EINVAL:
			c->einval++;
			break;
		case -ENOENT:
			c->enoent++;
			break;
		default:
			if (!c->other++) {
				c->bad_errno = -ret;
				c->bad_count = n;
				c->bad_fd = cl.vm_fd;
				memcpy(c->bad_range, r, sizeof(r));
			}
			break;
		}
		__atomic_store_n(&c->progress, c->progress + 1, __ATOMIC_RELEASE);
	}
	return NULL;
}

DIRTYBATCH_EMPTY_FIXTURE(conc)

TEST_F_TIMEOUT(conc, clear_vs_memslot_and_vm_churn, 120)
{
	const char *env = getenv("KVM_DIRTYBATCH_CONC_SECONDS");
	uint64_t secs = env ? strtoull(env, NULL, 0) : 4, seed;
	uint64_t last[NR_CLEARERS] = { 0 }, stuck_since[NR_CLEARERS] = { 0 };
	uint64_t calls = 0, errors = 0, ok = 0, pages = 0;
	struct kvm_dirtybatch_stats s0, s1;
	unsigned int i;
	int fd;

	memset(&g, 0, sizeof(g));
	seed = test_seed("concurrency");
	g.ones = malloc(bitmap_bytes(BIG_PAGES));
	ASSERT_NE(NULL, g.ones);
	memset(g.ones, 0xff, bitmap_bytes(BIG_PAGES));
	g.dbfd = db_open();
	ASSERT_LE(0, g.dbfd);
	ASSERT_EQ(0, db_get_stats(g.dbfd, &s0));

	g.deadline = now_ns() + secs * 1000000000ULL;
	for (i = 0; i < NR_HOLDERS; i++) {
		g.h[i].vcpu = i == NR_HOLDERS - 1;
		g.h[i].vm = make_vm(&g.h[i]);
		g.h[i].fd_pub = g.h[i].vm->fd;
		ASSERT_EQ(0, pthread_rwlock_init(&g.h[i].fd_lock, NULL));
		g.mut_seed[i] = seed * 31 + i;
		ASSERT_EQ(0, pthread_create(&g.mut[i], NULL, mutator, &g.h[i]));
	}
	for (i = 0; i < NR_CLEARERS; i++) {
		g.c[i].id = i;
		g.c[i].seed = seed * 131 + 7 * i + 1;
		ASSERT_EQ(0, pthread_create(&g.c[i].th, NULL, clearer, &g.c[i]));
	}

	/* watchdog: every clear thread must keep completing calls */
	while (now_ns() < g.deadline) {
		usleep(100000);
		for (i = 0; i < NR_CLEARERS; i++) {
			uint64_t p = __atomic_load_n(&g.c[i].progress, __ATOMIC_ACQUIRE);

			if (p != last[i]) {
				last[i] = p;
				stuck_since[i] = now_ns();
			} else if (stuck_since[i] && now_ns() - stuck_since[i] > 20000000000ULL) {
				ksft_print_msg("clear thread %u made no progress for 20 s: hang\n", i);
				fflush(stdout);
				_exit(KSFT_FAIL);	/* a thread is stuck in the kernel */
			} else if (!stuck_since[i]) {
				stuck_since[i] = now_ns();
			}
		}
	}
	g.stop = 1;
	for (i = 0; i < NR_CLEARERS; i++)
		pthread_join(g.c[i].th, NULL);
	for (i = 0; i < NR_HOLDERS; i++)
		pthread_join(g.mut[i], NULL);

	for (i = 0; i < NR_CLEARERS; i++) {
		struct clearer *c = &g.c[i];

		ksft_print_msg("clear thread %u: %llu calls: ok %llu (%llu pages) EBADF %llu EINVAL %llu "
			       "ENOENT %llu other %llu, max %llu us\n", i,
			       (unsigned long long)c->progress, (unsigned long long)c->ok,
			       (unsigned long long)c->pages, (unsigned long long)c->ebadf,
			       (unsigned long long)c->einval, (unsigned long long)c->enoent,
			       (unsigned long long)c->other, (unsigned long long)c->max_ns / 1000);
		EXPECT_EQ(0, c->other) {
			unsigned int j;

			TH_LOG("thread %u: unexpected %s (vm_fd %d) for:", i,
			       strerror(c->bad_errno), c->bad_fd);
			for (j = 0; j < c->bad_count; j++)
				TH_LOG("  range %u: slot 0x%x first %llu num %u", j,
				       c->bad_range[j].slot,
				       (unsigned long long)c->bad_range[j].first_page,
				       c->bad_range[j].num_pages);
		}
		calls += c->progress;
		ok += c->ok;
		pages += c->pages;
		errors += c->ebadf + c->einval + c->enoent + c->other;
	}
	for (i = 0; i < NR_HOLDERS; i++)
		ksft_print_msg("holder %u: %llu VM re-creations, %llu memslot ops (%llu failed)%s\n",
			       i, (unsigned long long)g.h[i].recreates,
			       (unsigned long long)g.h[i].slot_ops,
			       (unsigned long long)g.h[i].slot_errs,
			       g.h[i].vcpu ? ", vCPU running, VM fd closed half-way" : "");
	EXPECT_LT(0, ok);
	EXPECT_LT(0, errors);

	for (i = 0; i < NR_HOLDERS; i++) {
		vm_free(g.h[i].vm);
		pthread_rwlock_destroy(&g.h[i].fd_lock);
	}
	close(g.dbfd);
	fd = db_open();
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, db_get_stats(fd, &s1));
	close(fd);
	EXPECT_EQ(0, s1.live_allocs);
	/* the module's counters count its calls only, not KVM's native ones */
	if (db_backend_has_stats()) {
		EXPECT_EQ(ok, s1.calls - s0.calls);
		EXPECT_EQ(errors, s1.failed_calls - s0.failed_calls);
		EXPECT_EQ(pages, s1.pages_cleared - s0.pages_cleared);
	}
	ksft_print_msg("module stats: +%llu calls, +%llu failed, +%llu pages, +%llu lock breaks, "
		       "max hold %llu us, live_allocs %llu\n",
		       (unsigned long long)(s1.calls - s0.calls),
		       (unsigned long long)(s1.failed_calls - s0.failed_calls),
		       (unsigned long long)(s1.pages_cleared - s0.pages_cleared),
		       (unsigned long long)(s1.lock_breaks - s0.lock_breaks),
		       (unsigned long long)s1.max_hold_ns / 1000,
		       (unsigned long long)s1.live_allocs);
	free(g.ones);
}

DIRTYBATCH_TEST_MAIN(true)
