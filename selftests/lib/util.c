// SPDX-License-Identifier: GPL-2.0
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <linux/kvm_clear_dirty_log_batch.h>

#include "tap.h"
#include "util.h"

#ifndef DB_EMULATE
int db_open(void)
{
	int fd = open(DB_DEVICE_PATH, O_RDWR | O_CLOEXEC);

	return fd < 0 ? -errno : fd;
}
#endif

enum db_backend db_backend(void)
{
	const char *b = getenv(DB_BACKEND_ENV);

	if (b && !strcmp(b, "native"))
		return DB_BACKEND_NATIVE;
	if (b && *b && strcmp(b, "module")) {
		fprintf(stderr, "%s=%s: neither module nor native\n", DB_BACKEND_ENV, b);
		exit(1);
	}
	return DB_BACKEND_MODULE;
}

/*
 * The same call as KVM_CLEAR_DIRTY_LOG_BATCH: the range structures are the
 * same, so an array of sizeof(struct kvm_dirtybatch_range) strides is
 * passed as it is, any other stride copied (its extra bytes must be zero,
 * as the module requires).  Only the arguments the module checks and KVM
 * has no field for (reserved0) are checked here.
 */
static int db_clear_native(struct kvm_dirtybatch_clear *c)
{
	const size_t known = sizeof(struct kvm_dirtybatch_range);
	struct kvm_clear_dirty_log_batch b = {
		.flags = c->flags,
		.count = c->count,
		.ranges = c->ranges,
		.error_index = c->count,
	};
	struct kvm_clear_dirty_log_range *copy = NULL;
	const char *src = (const char *)(uintptr_t)c->ranges;
	uint32_t i;
	int r;

	_Static_assert(sizeof(struct kvm_dirtybatch_range) ==
		       sizeof(struct kvm_clear_dirty_log_range),
		       "the module's and KVM's ranges differ");
	if (c->reserved0)
		return -EINVAL;
	memcpy(b.reserved, c->reserved, sizeof(b.reserved));
	if (c->count && c->range_size != known) {
		if (c->range_size < known || c->range_size % 8)
			return -EINVAL;
		copy = calloc(c->count, sizeof(*copy));
		if (!copy)
			return -ENOMEM;
		for (i = 0; i < c->count; i++) {
			const char *r8 = src + (size_t)i * c->range_size;
			size_t k;

			memcpy(&copy[i], r8, known);
			for (k = known; k < c->range_size; k++) {
				if (r8[k]) {
					c->error_index = i;
					free(copy);
					return -E2BIG;
				}
			}
		}
		b.ranges = (uint64_t)(uintptr_t)copy;
	}
	r = ioctl(c->vm_fd, KVM_CLEAR_DIRTY_LOG_BATCH, &b) ? -errno : 0;
	free(copy);
	c->error_index = b.error_index;
	c->pages_cleared = DB_PAGES_UNKNOWN;
	return r;
}

int db_clear(int dbfd, struct kvm_dirtybatch_clear *c)
{
	if (db_backend() == DB_BACKEND_NATIVE)
		return db_clear_native(c);
	return db_ioctl(dbfd, KVM_DIRTYBATCH_CLEAR, c) ? -errno : 0;
}

int db_get_info(int dbfd, struct kvm_dirtybatch_info *info)
{
	return db_ioctl(dbfd, KVM_DIRTYBATCH_GET_INFO, info) ? -errno : 0;
}

int db_get_stats(int dbfd, struct kvm_dirtybatch_stats *st)
{
	return db_ioctl(dbfd, KVM_DIRTYBATCH_GET_STATS, st) ? -errno : 0;
}

bool db_available(const char **why)
{
	int fd = db_open();

	if (fd < 0) {
		if (why)
			*why = fd == -ENOENT ? DB_DEVICE_PATH " does not exist (module not loaded)"
					     : DB_DEVICE_PATH " cannot be opened";
		return false;
	}
	close(fd);
	return true;
}

uint64_t test_seed(const char *what)
{
	const char *env = getenv(SEED_ENV);
	uint64_t seed;

	if (env && *env)
		seed = strtoull(env, NULL, 0);
	else
		seed = (now_ns() ^ ((uint64_t)getpid() << 32)) & 0xffffffffffffULL;
	printf("# %s: seed %llu (reproduce with %s=%llu)\n", what,
	       (unsigned long long)seed, SEED_ENV, (unsigned long long)seed);
	fflush(stdout);
	return seed;
}

void snap_take(struct vm *vm, struct snap *s)
{
	int i;

	memset(s, 0, sizeof(*s));
	for (i = 0; i < VM_MAX_SLOTS; i++) {
		struct vm_slot *sl = &vm->slots[i];

		if (!sl->used || !(sl->flags & KVM_MEM_LOG_DIRTY_PAGES))
			continue;
		s->slot[s->n] = sl->slot;
		s->npages[s->n] = sl->npages;
		s->bm[s->n] = calloc(1, bitmap_bytes(sl->npages));
		VM_CHECK(s->bm[s->n], "calloc");
		vm_get_dirty_log(vm, sl->slot, s->bm[s->n]);
		s->n++;
	}
}

void snap_free(struct snap *s)
{
	int i;

	for (i = 0; i < s->n; i++)
		free(s->bm[i]);
	memset(s, 0, sizeof(*s));
}

void snap_dup(const struct snap *src, struct snap *dst)
{
	int i;

	*dst = *src;
	for (i = 0; i < src->n; i++) {
		dst->bm[i] = malloc(bitmap_bytes(src->npages[i]));
		VM_CHECK(dst->bm[i], "malloc");
		memcpy(dst->bm[i], src->bm[i], bitmap_bytes(src->npages[i]));
	}
}

uint64_t snap_count(const struct snap *s)
{
	uint64_t n = 0, w;
	int i;

	for (i = 0; i < s->n; i++)
		for (w = 0; w < bitmap_bytes(s->npages[i]) / 8; w++)
			n += __builtin_popcountll(s->bm[i][w]);
	return n;
}

bool snap_equal(const struct snap *a, const struct snap *b, char *msg,
		size_t len)
{
	uint64_t p;
	int i;

	if (a->n != b->n) {
		snprintf(msg, len, "slot count %d vs %d", a->n, b->n);
		return false;
	}
	for (i = 0; i < a->n; i++) {
		if (a->slot[i] != b->slot[i] || a->npages[i] != b->npages[i]) {
			snprintf(msg, len, "slot layout differs at %d", i);
			return false;
		}
		if (!memcmp(a->bm[i], b->bm[i], bitmap_bytes(a->npages[i])))
			continue;
		for (p = 0; p < a->npages[i]; p++)
			if (test_bit64(a->bm[i], p) != test_bit64(b->bm[i], p))
				break;
		snprintf(msg, len, "slot 0x%x (%llu pages): first difference at page %llu: %d vs %d",
			 a->slot[i], (unsigned long long)a->npages[i],
			 (unsigned long long)p,
			 p < a->npages[i] ? test_bit64(a->bm[i], p) : -1,
			 p < a->npages[i] ? test_bit64(b->bm[i], p) : -1);
		return false;
	}
	return true;
}

uint64_t snap_cleared(const struct snap *before, const struct snap *after)
{
	uint64_t n = 0, w;
	int i;

	for (i = 0; i < before->n && i < after->n; i++)
		for (w = 0; w < bitmap_bytes(before->npages[i]) / 8; w++)
			n += __builtin_popcountll(before->bm[i][w] &
						  ~after->bm[i][w]);
	return n;
}

bool snap_all_set(const struct snap *s, char *msg, size_t len)
{
	uint64_t p;
	int i;

	for (i = 0; i < s->n; i++)
		for (p = 0; p < s->npages[i]; p++)
			if (!test_bit64(s->bm[i], p)) {
				snprintf(msg, len, "slot 0x%x page %llu is clean",
					 s->slot[i], (unsigned long long)p);
				return false;
			}
	return true;
}

/*
 * KVM flips kernel static keys when the first VM / first vCPU without an
 * in-kernel irqchip is created and the last one destroyed
 * (preempt_notifier_inc() patches __schedule(), kvm_has_noapic_vcpu).
 * Tests create and destroy many VMs, so the kernel text would be
 * live-patched over and over, which is slow under TCG and has crashed
 * 6.12 guests there (int3 Oops in __schedule).  Hold one idle VM with one
 * vCPU for the life of the test program (its forked test children inherit
 * the fds): the keys stay enabled and the kernel text is left alone.
 */
static void keep_static_keys_enabled(void)
{
	int kvm = open("/dev/kvm", O_RDWR), vm = -1;

	if (kvm >= 0)
		vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm >= 0)
		ioctl(vm, KVM_CREATE_VCPU, 0);
	/* fds deliberately leaked: they must live until exit */
}

void test_require(int argc, char **argv, bool need_module)
{
	const char *why = NULL;
	int i;

	for (i = 1; i < argc; i++)
		if (!strcmp(argv[i], "-l") || !strcmp(argv[i], "-h"))
			return;
	if (!kvm_available(&why) || (need_module && !db_available(&why)))
		tap_skip_all(why);
	keep_static_keys_enabled();
}

uint64_t snap_apply(struct snap *s, const void *ranges, uint32_t count,
		    uint32_t stride)
{
	uint64_t cleared = 0, n, page;
	uint32_t i;
	int j;

	for (i = 0; i < count; i++) {
		const struct kvm_dirtybatch_range *r =
			(const void *)((const char *)ranges + (size_t)i * stride);
		const uint64_t *bm = (const uint64_t *)(uintptr_t)r->dirty_bitmap;

		for (j = 0; j < s->n && s->slot[j] != r->slot; j++)
			;
		VM_CHECK(j < s->n, "model: range %u names unknown slot 0x%x", i, r->slot);
		if (!(r->first_page % 64) && r->first_page <= s->npages[j] &&
		    r->num_pages <= s->npages[j] - r->first_page) {
			/* inside the memslot, word-aligned: the same, a word at a time */
			uint64_t *sw = s->bm[j] + r->first_page / 64, w;

			for (n = 0; n < r->num_pages; n += 64) {
				memcpy(&w, (const char *)bm + n / 8, 8);
				w &= sw[n / 64];
				if (r->num_pages - n < 64)
					w &= (1ULL << (r->num_pages - n)) - 1;
				sw[n / 64] &= ~w;
				cleared += __builtin_popcountll(w);
			}
			continue;
		}
		for (n = 0; n < r->num_pages; n++) {
			page = r->first_page + n;
			if (!test_bit64(bm, n) || page >= s->npages[j] ||
			    !test_bit64(s->bm[j], page))
				continue;
			clear_bit64(s->bm[j], page);
			cleared++;
		}
	}
	return cleared;
}
