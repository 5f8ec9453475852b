/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared helpers of the kvm_dirtybatch selftests: module ioctl wrappers,
 * the seed of the PRNG (rng.h), dirty-bitmap snapshots and the test main().
 */
#ifndef KVM_DIRTYBATCH_UTIL_H
#define KVM_DIRTYBATCH_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <linux/kvm_dirtybatch.h>

#include "clock.h"
#include "rng.h"
#include "vm.h"

#define DB_DEVICE_PATH	"/dev/" KVM_DIRTYBATCH_DEVICE_NAME
#define SEED_ENV	"KVM_DIRTYBATCH_SEED"
#ifndef ARRAY_SIZE
#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))
#endif

/*
 * All ioctls on the device go through db_ioctl(): with -DDB_EMULATE the
 * tests run against a userspace emulation of the module (emul.c), which
 * tests the tests when the module is not available.
 */
#ifdef DB_EMULATE
int db_emul_ioctl(int fd, unsigned long cmd, uint64_t arg);
#define db_ioctl(fd, cmd, arg) db_emul_ioctl(fd, cmd, (uint64_t)(uintptr_t)(arg))
#else
#define db_ioctl(fd, cmd, arg) ioctl(fd, cmd, arg)
#endif

/*
 * The backend db_clear() uses, from the environment: DB_BACKEND_ENV unset
 * or "module", the module's KVM_DIRTYBATCH_CLEAR on the device fd;
 * "native", KVM's own KVM_CLEAR_DIRTY_LOG_BATCH on c->vm_fd (the patched
 * KVM modules, module/native), with the same ranges.  The native ioctl
 * reports no pages_cleared and has no statistics: db_clear() leaves
 * pages_cleared at DB_PAGES_UNKNOWN there, and tests that check counters
 * ask db_backend_has_stats() first.
 */
#define DB_BACKEND_ENV		"KVM_DIRTYBATCH_BACKEND"
#define DB_PAGES_UNKNOWN	UINT64_MAX
enum db_backend { DB_BACKEND_MODULE, DB_BACKEND_NATIVE };
enum db_backend db_backend(void);
static inline bool db_backend_has_stats(void)
{
	return db_backend() == DB_BACKEND_MODULE;
}

/*
 * The module's own interface: its struct's header fields db_clear_native()
 * does not pass to KVM (range_size, reserved0) and how it resolves vm_fd
 * to a VM (the native ioctl is made on the fd itself: whatever file has
 * that number answers it).
 */
static inline bool db_backend_is_module(void)
{
	return db_backend() == DB_BACKEND_MODULE;
}

/* the ioctl db_clear() makes, for messages */
static inline const char *db_backend_ioctl(void)
{
	return db_backend_has_stats() ? "KVM_DIRTYBATCH_CLEAR" : "KVM_CLEAR_DIRTY_LOG_BATCH";
}

/* ---- module wrappers: return 0 or -errno ---- */
int db_open(void);				/* fd or -errno */
int db_clear(int dbfd, struct kvm_dirtybatch_clear *c);
int db_get_info(int dbfd, struct kvm_dirtybatch_info *info);
int db_get_stats(int dbfd, struct kvm_dirtybatch_stats *st);
bool db_available(const char **why);

/* ---- PRNG (rng.h): the seed of a test run ---- */
uint64_t test_seed(const char *what);	/* env or time; printed */

/* ---- dirty bitmap snapshots of all dirty-logged slots of a VM ---- */
struct snap {
	int n;
	uint32_t slot[VM_MAX_SLOTS];
	uint64_t npages[VM_MAX_SLOTS];
	uint64_t *bm[VM_MAX_SLOTS];
};
void snap_take(struct vm *vm, struct snap *s);
void snap_free(struct snap *s);
void snap_dup(const struct snap *src, struct snap *dst);
/* popcount over all slots */
uint64_t snap_count(const struct snap *s);
/*
 * Compare two snapshots (same slot list); on mismatch write a description
 * of the first difference into msg and return false.
 */
bool snap_equal(const struct snap *a, const struct snap *b, char *msg,
		size_t len);
/* Bits set in a and clear in b (1 -> 0 transitions). */
uint64_t snap_cleared(const struct snap *before, const struct snap *after);
/* True if every bit of every logged slot is set (INITIALLY_SET state). */
bool snap_all_set(const struct snap *s, char *msg, size_t len);

/*
 * Reference model: apply valid ranges (KVM_CLEAR_DIRTY_LOG semantics) to
 * a snapshot; returns the number of bits that went from 1 to 0.
 */
uint64_t snap_apply(struct snap *s, const void *ranges, uint32_t count,
		    uint32_t stride);

/*
 * Test main(): unless only listing, skips the whole binary (TAP
 * "1..0 # SKIP", exit 4) when /dev/kvm (and, with need_module,
 * /dev/kvm_dirtybatch) is unavailable.
 */
void test_require(int argc, char **argv, bool need_module);

/*
 * The fixture of a test that keeps no state: the harness gives a test a
 * timeout of its own only as TEST_F_TIMEOUT(fixture, name, seconds).
 */
#define DIRTYBATCH_EMPTY_FIXTURE(f)				\
	FIXTURE(f) {						\
		int unused;					\
	};							\
	FIXTURE_SETUP(f)					\
	{							\
		self->unused = 0;				\
	}							\
	FIXTURE_TEARDOWN(f)					\
	{							\
	}

#define DIRTYBATCH_TEST_MAIN(need_module)			\
	int main(int argc, char **argv)				\
	{							\
		test_require(argc, argv, need_module);		\
		return test_harness_run(argc, argv);		\
	}

#endif
