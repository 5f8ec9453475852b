// SPDX-License-Identifier: GPL-2.0
/*
 * The report of one migration-bench run: the table, the targets (ratios
 * of the measured medians), the projections of the cost model beside them,
 * and the "csv: " lines scripts/bench.sh collects.  Measures nothing.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"

/* Which of 1e6, 1e3 and 1 divides @v for people: 0, 1 or 2. */
static const double scale_div[] = { 1e6, 1e3, 1 };

static int scale_of(double v)
{
	return v >= 1e6 ? 0 : v >= 1e3 ? 1 : 2;
}

/* A duration in microseconds, for people. */
void fmt_us(char *buf, size_t len, double us)
{
	static const char *const unit[] = { "s", "ms", "us" };
	int i = scale_of(us);

	snprintf(buf, len, "%.3g %s", us / scale_div[i], unit[i]);
}

/* A rate (writes per second), for people. */
void fmt_rate(char *buf, size_t len, double v)
{
	static const char *const unit[] = { "M", "k", "" };
	static const int prec[] = { 2, 1, 0 };
	int i = scale_of(v);

	snprintf(buf, len, "%.*f%s", prec[i], v / scale_div[i], unit[i]);
}

static double proj_prod(const struct strat_result *S, const struct cost_model *host)
{
	return prod_predict(host, S->ioctls, S->flushes, S->words, S->pages);
}

uint64_t report(const struct bench_result *r, const struct cost_model *host)
{
	const struct bench_cfg *o = &r->cfg;
	const char *ref = strat_name[r->ref];
	bool hv = host && host->valid;
	uint64_t lost = 0;
	int i;

	printf("\nResults (%s, %u vCPUs, %u memslots, %u runs/round, %u rounds per strategy):\n",
	       r->label, o->vcpus, r->nslots, r->nruns, r->rounds);
	printf("%-9s %11s %11s %9s %8s %8s %7s %8s %8s %11s %5s | %11s%s\n",
	       "strategy", "median_us", "p99_us", "vs_", "ioctls", "mmu_lock", "lock",
	       "tlb", "pages", "guest", "lost", "PROJECTED", hv ? "   PROJECTED" : "");
	printf("%-9s %11s %11s %9s %8s %8s %7s %8s %8s %11s %5s | %11s%s\n",
	       "", "/round", "/round", ref, "/round", "holds/rd", "brk/rd",
	       "flush/rd", "clr/rd", "pages/s", "pages", "prod_us", hv ? "     host_us" : "");
	for (i = 0; i < r->norder; i++) {
		const struct strat_result *S = &r->s[r->order[i]];
		char g[32];

		fmt_rate(g, sizeof(g), S->gps);
		printf("%-9s %11.1f %11.1f %8.2fx %8.1f %8.1f %7.1f %8.1f %8.1f %11s %5llu | %11.1f",
		       strat_name[r->order[i]], S->median_us, S->p99_us, S->ratio,
		       S->ioctls, S->holds, S->breaks, S->flushes, S->pages, g,
		       (unsigned long long)S->lost, proj_prod(S, host));
		if (hv)
			printf(" %11.1f", model_predict(host, S->ioctls, S->flushes, S->words,
							S->pages));
		printf("\n");
		lost += S->lost;
	}
	for (i = 0; i < NSTRAT; i++)
		if (r->s[i].skipped[0])
			printf("  %s: skipped: %s\n", strat_name[i], r->s[i].skipped);
	printf("  PROJECTED, not measured: prod_us = %.1f us per clear ioctl (the production host\n"
	       "    of QEMU's fix: 960 calls, 49 ms)%s;", PROD_US_PER_CALL,
	       hv ? " + the host's per-word and per-page constants" : "");
	if (hv)
		printf(" host_us = the cost model fitted on %s\n", host->label);
	else
		printf(" no host cost model (make bench BENCH_ARGS=\"--sweep --host-only\" fits one)\n");
	if (r->s[S_BATCHED].run) {
		const struct strat_result *B = &r->s[S_BATCHED];

		printf("  batched cross-check: module counted %.1f TLB flushes/round; "
		       "pages cleared are the module's exact count\n", B->mod_flushes);
		printf("  batched counters, all %u clears: KVM %llu TLB flush requests (%llu of them kicked a vCPU),"
		       " module %llu TLB flushes: %s%s\n",
		       r->xcheck_rounds, (unsigned long long)r->xcheck_kvm,
		       (unsigned long long)r->xcheck_kick, (unsigned long long)r->xcheck_mod,
		       r->xcheck_bad ? "DISAGREE, first: " : "agree",
		       r->xcheck_bad ? r->xcheck_first : "");
	}
	printf("  MMU-lock holds: one per KVM_CLEAR_DIRTY_LOG (KVM takes it for every call),"
	       " the module's counter for batched; TLB flushes: KVM's %s statistic\n",
	       r->flush_stat);
	printf("  vCPU 0 during the clears, per round:");
	for (i = 0; i < r->norder; i++) {
		const struct strat_result *S = &r->s[r->order[i]];

		printf("%s %s %.0f exits, %.0f page faults", i ? ";" : "",
		       strat_name[r->order[i]], S->exits, S->pf);
	}
	printf("\n");
	if (r->window_ns)
		printf("  guest pages/s: the vCPUs' page writes per second over %.0f ms from the start\n"
		       "    of each clear, the same window for every strategy (it holds the slowest\n"
		       "    clear; the migration thread stays busy to its end); over the clear alone:",
		       r->window_ns / 1e6);
	else
		printf("  guest pages/s: the vCPUs' page writes per second over each round's own clear\n"
		       "    + send (--warmup 0: no common window); over the clear alone:");
	for (i = 0; i < r->norder; i++) {
		char g[32];

		fmt_rate(g, sizeof(g), r->s[r->order[i]].gps_clear);
		printf("%s %s %s", i ? "," : "", strat_name[r->order[i]], g);
	}
	printf("\n");
	for (i = 0; i < r->norder; i++)
		if (r->s[r->order[i]].over_window)
			printf("  note: %s: %llu rounds took longer than the window; their window was "
			       "the round's own clear + send\n", strat_name[r->order[i]],
			       (unsigned long long)r->s[r->order[i]].over_window);
	if (o->verbose) {
		unsigned int v;

		printf("  vCPU 0 statistics during the clears, per round:\n  %-26s", "");
		for (i = 0; i < r->norder; i++)
			printf(" %10s", strat_name[r->order[i]]);
		printf("\n");
		for (v = 0; v < NVSTAT; v++) {
			printf("  %-26s", vstat_names[v]);
			for (i = 0; i < r->norder; i++)
				printf(" %10.1f", r->s[r->order[i]].vstat[v]);
			printf("\n");
		}
	}
	for (i = 0; i < r->norder; i++)
		if (r->s[r->order[i]].short_waits)
			printf("  note: %s: %llu rounds where a vCPU did not finish a pass in %u s\n",
			       strat_name[r->order[i]],
			       (unsigned long long)r->s[r->order[i]].short_waits, PASS_TIMEOUT_S);

	/* targets: ratios of the measured medians, never the projections */
	if (r->s[S_BATCHED].run) {
		const struct strat_result *B = &r->s[S_BATCHED];
		const struct strat_result *P = &r->s[S_PERPAGE], *M = &r->s[S_MERGED];
		const struct strat_result *F = &r->s[S_FLOOR];

		printf("\nTargets (ratios of medians from this run):\n");
		if (P->run)
			printf("  batched >= 50x faster than per-page:   %7.1fx  %s\n",
			       P->ratio, P->ratio >= 50 ? "PASS" : "MISS");
		if (M->run)
			printf("  batched >= 3x faster than merged:      %7.1fx  %s\n",
			       M->ratio, M->ratio >= 3 ? "PASS" : "MISS");
		if (F->run)
			printf("  batched within 1.2x of floor:          %7.2fx  %s\n",
			       1 / F->ratio, 1 / F->ratio <= 1.2 ? "PASS" : "MISS");
		if (M->run) {
			double noise = 2 * sqrt(B->var_of_mean_gps + M->var_of_mean_gps);
			char a[32], b[32];

			/*
			 * "Not lower": higher, or lower by less than twice the
			 * standard error of the difference of the per-round
			 * means (a tie: the rounds vary more than that).
			 */
			fmt_rate(a, sizeof(a), B->gps);
			fmt_rate(b, sizeof(b), M->gps);
			printf("  guest pages/s during batched >= merged: %s vs %s (%+.1f%%, noise +-%.1f%%)  %s\n",
			       a, b, M->gps > 0 ? 100 * (B->gps / M->gps - 1) : 0,
			       M->gps > 0 ? 100 * noise / M->gps : 0,
			       B->gps >= M->gps ? "PASS" :
			       M->gps - B->gps <= noise ? "PASS (tie)" : "MISS");
		}
		printf("  KVM's and the module's counters agree: %u of %u clears  %s\n",
		       r->xcheck_rounds - r->xcheck_bad, r->xcheck_rounds,
		       r->xcheck_bad ? "MISS" : "PASS");
	}
	printf("  lost_pages 0 everywhere:                %s\n", lost ? "MISS" : "PASS");

	/* machine-readable, picked up by scripts/bench.sh */
	for (i = 0; i < r->norder; i++) {
		const struct strat_result *S = &r->s[r->order[i]];

		printf("csv: %s,%s,%u,%u,%.1f,%.1f,%.1f,%.1f,%.1f,%.1f,%.0f,%llu,%.1f,",
		       strat_name[r->order[i]], r->label, o->vcpus, S->n, S->pages,
		       S->median_us, S->p99_us, S->ioctls, S->holds, S->flushes, S->gps,
		       (unsigned long long)S->lost, proj_prod(S, host));
		if (hv)
			printf("%.1f", model_predict(host, S->ioctls, S->flushes, S->words, S->pages));
		printf("\n");
	}
	fflush(stdout);
	return lost;
}
