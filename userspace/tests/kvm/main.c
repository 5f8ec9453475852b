// SPDX-License-Identifier: LGPL-2.1 OR MIT
/*
 * libdirtybatch against real KVM.
 *
 * Built twice:
 *  - DB_KVM_HOST: tests/host/dirtybatch_kvm, the fallback path
 *    (KVM_CLEAR_DIRTY_LOG) on the build host; SKIPs (exit 4) without
 *    /dev/kvm.
 *  - DB_KVM_GUEST: tests/guest/dirtybatch_kvm_guest, run inside a guest
 *    with the kvm_dirtybatch module loaded: the module path, the fallback
 *    path on the same kernel, and module vs fallback equivalence; SKIPs
 *    (exit 4) without /dev/kvm_dirtybatch or /dev/kvm.
 *
 * Every VM uses KVM_DIRTY_LOG_INITIALLY_SET, so all pages start dirty and
 * the dirty log after a series of clears is known exactly: a per-page
 * model is compared with KVM_GET_DIRTY_LOG after every submit.  With a
 * vCPU writing sequence numbers into pages meanwhile: every round, a page
 * KVM reported dirty that no clear has named since must still be dirty
 * (guest writes only set bits), slots the guest does not write must match
 * the model exactly, and at the end a page holding a sequence number
 * stored after its last clear must be dirty: no dirty page may be lost.
 * The model is its own on purpose, page by page from what the test asked
 * the library to clear, not selftests/lib's snap_apply() on the ranges:
 * those ranges are the library's output under test.  Nothing is mocked.  The VM is the shared test library's helper
 * (selftests/lib/vm.[ch], guest_code.S).
 *
 * DIRTYBATCH_TEST_SEED overrides the random seed.
 *
 * The parts, tied by kvm_tests.h: test_vm.c, the test VM, its model and
 * the random batches; a file a feature, random_clears.c, memslot_changes.c
 * (the error path, a re-created memslot), vcpu_writes.c and equivalence.c
 * (module vs. fallback); main.c, the order they run in and the TAP plan.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <stdarg.h>
#include <linux/kvm_dirtybatch.h>
#include <time.h>
#include <unistd.h>

#include "kvm_tests.h"

#ifndef DB_KVM_HOST
static const char *batch_name = "module";	/* kt_batch_mode's, in the descriptions */
#endif

static bool have_kvm(char *why, size_t wl)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		snprintf(why, wl, "/dev/kvm: %s", strerror(errno));
		return false;
	}
	close(fd);
	return true;
}

/* One TAP point: body run by kt_run_case(), described by fmt..., then why it failed. */
__attribute__((format(printf, 4, 5)))
static void test_point(bool module, int rounds, bool (*body)(struct kt_case *c),
		       const char *fmt, ...)
{
	char desc[200], why[300] = "";
	bool ok = kt_run_case(module, rounds, body, why, sizeof(why));
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(desc, sizeof(desc), fmt, ap);
	va_end(ap);
	tap_ok(ok, "%s %s", desc, why);
}

int main(void)
{
	char why[300] = "";
	const char *e = getenv("DIRTYBATCH_TEST_SEED");
	uint64_t seed = e ? strtoull(e, NULL, 0) : (uint64_t)time(NULL);
	bool kvm;

	rng_init(&kt_rng, seed);
#ifdef DB_KVM_HOST
	tap_plan(6);
	tap_diag("seed %#" PRIx64 " (DIRTYBATCH_TEST_SEED)", seed);
	kvm = have_kvm(why, sizeof(why));
	if (!kvm) {
		tap_skip(why, "fallback: random clears match KVM_GET_DIRTY_LOG");
		tap_skip(why, "fallback: KVM error reported, remainder stays queued");
		tap_skip(why, "fallback: vCPU writing meanwhile, no dirty page lost");
		tap_skip(why, "fallback: second vCPU run");
		tap_skip(why, "detection without the module");
		tap_skip(why, "fallback: re-created memslot");
		return tap_exit_code();
	}
	test_point(false, 300, test_random_clears,
		   "fallback: random clears match KVM_GET_DIRTY_LOG");
	test_point(false, 0, test_error_path,
		   "fallback: KVM error reported, remainder stays queued");
	test_point(false, 150, test_vcpu, "fallback: vCPU writing meanwhile, no dirty page lost");
	test_point(false, 60, test_vcpu, "fallback: second vCPU run, other seed");
	{
		struct dirtybatch_ctx *ctx;
		struct dirtybatch_info info = { .sz = sizeof(info) };
		bool ok = !dirtybatch_open(0, NULL, &ctx) && !dirtybatch_get_info(ctx, &info);
		bool dev = access("/dev/" KVM_DIRTYBATCH_DEVICE_NAME, F_OK) == 0;

		/* without the module, detection must land in fallback */
		ok &= dev || (info.mode == DIRTYBATCH_MODE_FALLBACK &&
			      info.fallback_reason == -ENOENT);
		tap_diag("detection: mode %u, fallback reason %d, module %s", info.mode,
			 info.fallback_reason, dev ? "present" : "absent");
		tap_ok(ok, "detection without the module: fallback, reason -ENOENT");
		dirtybatch_close(ctx);
	}
	test_point(false, 0, test_recreated_memslot,
		   "fallback: a re-created memslot keeps its dirty bits, queued clears dropped");
#else
	tap_plan(9);
	tap_diag("seed %#" PRIx64 " (DIRTYBATCH_TEST_SEED)", seed);
	e = getenv("DIRTYBATCH_BACKEND");
	if (e && !strcmp(e, "native")) {
		kt_batch_mode = DIRTYBATCH_MODE_NATIVE;
		batch_name = "native";
		tap_diag("batch backend: native (DIRTYBATCH_BACKEND): the module tests run "
			 "against KVM_CLEAR_DIRTY_LOG_BATCH");
	}
	kvm = have_kvm(why, sizeof(why));
	if (kvm && access("/dev/" KVM_DIRTYBATCH_DEVICE_NAME, F_OK)) {
		snprintf(why, sizeof(why), "/dev/%s absent", KVM_DIRTYBATCH_DEVICE_NAME);
		kvm = false;
	}
	if (!kvm) {
		tap_skip(why, "module detected");
		tap_skip(why, "module: random clears match KVM_GET_DIRTY_LOG");
		tap_skip(why, "module: error path");
		tap_skip(why, "module: vCPU writing meanwhile, no dirty page lost");
		tap_skip(why, "fallback: random clears match KVM_GET_DIRTY_LOG");
		tap_skip(why, "fallback: vCPU writing meanwhile, no dirty page lost");
		tap_skip(why, "module and fallback leave identical dirty state");
		tap_skip(why, "module: re-created memslot");
		tap_skip(why, "module through the caller's descriptor");
		return tap_exit_code();
	}
	{
		/* native is confirmed only on a VM descriptor */
		struct vm *vm = vm_create(true);
		struct dirtybatch_ctx *ctx;
		struct dirtybatch_info info = { .sz = sizeof(info) };
		bool ok = !dirtybatch_open(vm->fd, NULL, &ctx) && !dirtybatch_get_info(ctx, &info);

		tap_diag("module: abi %u features %#" PRIx64 " max_ranges %u max_bitmap_bytes %u, "
			 "fallback reason %d", info.module_abi_version, info.module_features,
			 info.module_max_ranges, info.module_max_bitmap_bytes, info.fallback_reason);
		tap_diag("native: abi %u max_ranges %u, reason %d", info.native_abi_version,
			 info.native_max_ranges, info.native_reason);
		tap_ok(ok && info.mode == (uint32_t)kt_batch_mode &&
		       (info.flags & (kt_batch_mode == DIRTYBATCH_MODE_MODULE ?
				      DIRTYBATCH_INFO_MODULE_PRESENT :
				      DIRTYBATCH_INFO_NATIVE_PRESENT)),
		       "%s detected (mode %u, reason %d)", batch_name, info.mode,
		       info.fallback_reason);
		if (ok)
			dirtybatch_close(ctx);
		vm_free(vm);
	}
	test_point(true, 300, test_random_clears,
		   "%s: random clears match KVM_GET_DIRTY_LOG, pages_cleared as reported",
		   batch_name);
	test_point(true, 0, test_error_path,
		   "%s: KVM error reported, nothing applied, remainder queued", batch_name);
	test_point(true, 150, test_vcpu,
		   "%s: vCPU writing meanwhile, no dirty page lost", batch_name);
	test_point(false, 150, test_random_clears,
		   "fallback: random clears match KVM_GET_DIRTY_LOG");
	test_point(false, 100, test_vcpu, "fallback: vCPU writing meanwhile, no dirty page lost");
	test_point(true, 300, test_equivalence,
		   "%s and fallback leave identical dirty state for identical input", batch_name);
	test_point(true, 0, test_recreated_memslot,
		   "%s: a re-created memslot keeps its dirty bits, queued clears dropped",
		   batch_name);
	if (kt_batch_mode != DIRTYBATCH_MODE_MODULE) {
		tap_skip("the batch backend is native", "module through the caller's descriptor");
	} else {
		/* a sandboxed VMM: the device opened before, passed as a descriptor */
		int fd = open("/dev/" KVM_DIRTYBATCH_DEVICE_NAME, O_RDWR | O_CLOEXEC);
		struct dirtybatch_opts o = { .sz = sizeof(o), .flags = DIRTYBATCH_OPEN_DEVICE_FD,
					     .device_fd = fd };
		struct dirtybatch_ctx *ctx = NULL;
		bool ok = fd >= 0 && !dirtybatch_open(0, &o, &ctx) &&
			  dirtybatch_mode(ctx) == DIRTYBATCH_MODE_MODULE;

		dirtybatch_close(ctx);
		ok &= fd >= 0 && fcntl(fd, F_GETFD) >= 0;	/* still the caller's */
		if (fd >= 0)
			close(fd);
		tap_ok(ok, "module through the caller's descriptor (DIRTYBATCH_OPEN_DEVICE_FD)");
	}
#endif
	return tap_exit_code();
}
