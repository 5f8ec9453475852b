// SPDX-License-Identifier: GPL-2.0
/*
 * fuzz/report.c: the fuzz-summary: lines (scripts/fuzz.sh reads them).
 */
#include <stdio.h>
#include <string.h>

#include "fuzz.h"

const char *const r_name[RS_NR] = {
	"0", "EFAULT", "EINVAL", "E2BIG", "EBADF", "ENXIO", "ENOENT", "ENOMEM", "other"
};

const char *const c_name[C_NR] = {
	"valid", "flags", "reserved", "range_size", "extra_bytes", "count",
	"huge_count", "vm_fd", "arg_pointer", "ranges_pointer", "slot_as_id",
	"slot_id", "first_page", "num_pages", "bitmap_pointer",
	"bitmap_halfway", "huge_bitmaps", "random_bytes", "chaos", "flap_page",
	"uffd_stall"
};

void stats_add(struct stats *to, const struct stats *s)
{
	int c, r;

	to->calls += s->calls;
	to->ok += s->ok;
	to->failed += s->failed;
	to->pages += s->pages;
	to->ranges += s->ranges;
	to->holds += s->holds;
	to->words += s->words;
	to->breaks += s->breaks;
	to->flushes += s->flushes;
	to->syncs += s->syncs;
	to->violations += s->violations;
	for (c = 0; c < C_NR; c++) {
		to->ns[c] += s->ns[c];
		for (r = 0; r < RS_NR; r++)
			to->hist[c][r] += s->hist[c][r];
	}
}

void report(const char *test, const struct stats *s, uint64_t seed, double secs)
{
	char line[512];
	uint64_t tot[RS_NR] = { 0 };
	int c, r;

	for (c = 0; c < C_NR; c++) {
		uint64_t n = 0;

		for (r = 0; r < RS_NR; r++) {
			n += s->hist[c][r];
			tot[r] += s->hist[c][r];
		}
		if (!n)
			continue;
		snprintf(line, sizeof(line), "fuzz-summary: %s class %s: %llu calls:", test,
			 c_name[c], (unsigned long long)n);
		for (r = 0; r < RS_NR; r++)
			if (s->hist[c][r])
				snprintf(line + strlen(line), sizeof(line) - strlen(line), " %s=%llu",
					 r_name[r], (unsigned long long)s->hist[c][r]);
		ksft_print_msg("%s (%.0f us/call)\n", line, s->ns[c] / 1e3 / n);
	}
	snprintf(line, sizeof(line), "fuzz-summary: %s errnos:", test);
	for (r = 0; r < RS_NR; r++)
		snprintf(line + strlen(line), sizeof(line) - strlen(line), " %s=%llu", r_name[r],
			 (unsigned long long)tot[r]);
	ksft_print_msg("%s\n", line);
	ksft_print_msg("fuzz-summary: %s seed=%llu calls=%llu ok=%llu failed=%llu pages_cleared=%llu lock_breaks=%llu dirty_log_syncs=%llu seconds=%.1f violations=%llu\n",
		       test, (unsigned long long)seed, (unsigned long long)s->calls,
		       (unsigned long long)s->ok, (unsigned long long)s->failed,
		       (unsigned long long)s->pages, (unsigned long long)s->breaks,
		       (unsigned long long)s->syncs, secs, (unsigned long long)s->violations);
	fflush(stdout);
}

void report_module(const char *test, int dbfd)
{
	struct kvm_dirtybatch_stats st;

	if (db_get_stats(dbfd, &st))
		return;
	ksft_print_msg("fuzz-summary: %s module calls=%llu failed_calls=%llu pages_cleared=%llu mmu_lock_holds=%llu lock_breaks=%llu tlb_flushes=%llu max_hold_ns=%llu live_allocs=%llu dirty_log_syncs=%llu\n",
		       test, (unsigned long long)st.calls, (unsigned long long)st.failed_calls,
		       (unsigned long long)st.pages_cleared, (unsigned long long)st.mmu_lock_holds,
		       (unsigned long long)st.lock_breaks, (unsigned long long)st.tlb_flushes,
		       (unsigned long long)st.max_hold_ns, (unsigned long long)st.live_allocs,
		       (unsigned long long)st.dirty_log_syncs);
}
