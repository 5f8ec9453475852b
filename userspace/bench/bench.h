/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The migration-sync benchmark's parts:
 *   migration_bench.c  the measurement: one VM, one pattern, every strategy
 *                      (bench_run()), its state in struct bench
 *   bench_report.c     the table, the targets and the csv: lines of a run,
 *                      the cost model's projections
 *   sweep.c            the sweep over runs, memory per memslot and memslots,
 *                      and --fit over its CSV
 *   cost_model.c       the cost model: its least-squares fit, projections,
 *                      "model: " lines
 *   svg.c              the charts
 *   bench_main.c       options and main()
 */
#ifndef DIRTYBATCH_BENCH_H
#define DIRTYBATCH_BENCH_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define EXIT_LOST	3
#define EXIT_SKIP	4
#define EXIT_COUNTERS	5
#define MAX_VCPUS	16
#define PASS_TIMEOUT_S	60U	/* wait_full_pass(): a watchdog, not a limit */

enum strat { S_PERPAGE, S_MERGED, S_BATCHED, S_FLOOR, S_FALLBACK, S_NATIVE, NSTRAT };
extern const char *const strat_name[NSTRAT];

/* vCPU 0 statistics shown per strategy with --verbose */
#define NVSTAT 10
extern const char *const vstat_names[NVSTAT];

/* What one bench_run() measures: the pattern and how. */
struct bench_cfg {
	unsigned int vcpus, mem_mib, ram_slots, slots, runs, rounds, dirty;
	unsigned int warmup, budget, window_ms;
	/*
	 * Pages of each RAM memslot, 0: mem_mib spread as in the default
	 * pattern.  Set (the sweep's memory axis), the small memslots come
	 * first and the RAM memslots after them, ending at most at 1 TiB (the
	 * guests' 40 physical address bits); their runs, and so the dirtied
	 * pages, lie below 4 GiB, where the 32-bit guest writes.
	 */
	uint64_t ram_slot_pages;
	uint64_t seed;
	bool host, check_counters, verbose, quiet;
	bool strat[NSTRAT];		/* strategies to run */
};

/* Counts a strategy's round will have, known from the layout alone. */
struct bench_expect {
	uint64_t ioctls, words, pages;
};

/*
 * Called once the layout is built, before the VM runs, for each enabled
 * strategy; returning false drops it from this run (with @why set).
 */
typedef bool (*bench_admit_fn)(void *arg, enum strat s,
			       const struct bench_expect *e, char *why, size_t len);

struct strat_result {
	bool run;			/* measured in this run */
	char skipped[160];		/* why not, if it was asked for */
	unsigned int n;			/* measured rounds */
	double median_us, p99_us, ratio;
	/* per round */
	double ioctls, holds, breaks, flushes, kicks, mod_flushes, pages, words;
	double exits, pf, vstat[NVSTAT];
	bool words_exact;		/* words known, not estimated */
	double gps, gps_clear;		/* guest pages/s: window, clear alone */
	uint64_t lost, over_window, short_waits;
	bool exact;			/* pages are the module's exact count */
	double var_of_mean_gps;
};

struct bench_result {
	char label[96];
	struct bench_cfg cfg;
	unsigned int nslots, nruns, slots_with_runs, ntp, rounds;
	uint64_t total_run_pages, misaligned, checked_pages;
	uint64_t ram_slot_pages;	/* of the largest RAM memslot */
	uint64_t total_pages;		/* of all dirty-logged memslots */
	uint64_t window_ns;
	bool window_from_warmup;
	const char *flush_stat;		/* KVM statistic the flushes are */
	unsigned int budget_hit;
	/* batched: KVM's and the module's counters, every clear */
	unsigned int xcheck_rounds, xcheck_bad;
	uint64_t xcheck_kvm, xcheck_mod, xcheck_kick;
	char xcheck_first[256];
	char fallback_words_note[160];
	int order[NSTRAT], norder, ref;
	struct strat_result s[NSTRAT];
	uint64_t lost;
	double seconds;
};

/* migration_bench.c */
void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* 0, EXIT_SKIP (no KVM or module; @res->s[].skipped says), or 2 if the
 * pattern does not fit (message in @err); fails the process on errors. */
int bench_run(const struct bench_cfg *cfg, const char *label, bench_admit_fn admit,
	      void *admit_arg, struct bench_result *res, char *err, size_t errlen);
bool native_backend_available(const char **why);

/*
 * cost_model.c.  The cost model: time per round = a x ioctls + b x TLB flushes
 * + c x bitmap words walked + d x pages write-protected (cleared).
 */
struct cost_model {
	char label[96];
	double k[4];			/* a, b, c, d in microseconds */
	bool used[4];			/* false: dropped (negative fit) */
	unsigned int points;
	double rms_rel, max_rel, r2;	/* residuals, relative to the time */
	bool valid;
};
extern const char *const model_term[4];

/*
 * The production host of QEMU's fix (64 vCPUs): OVMF's flash alone cost
 * 960 KVM_CLEAR_DIRTY_LOG calls and 49 ms in one sync, about 51 us per
 * call with its TLB flush (the mail of QEMU commit e8a6d158dbfa).
 */
#define PROD_US_PER_CALL	(49000.0 / 960.0)

double model_predict(const struct cost_model *m, double ioctls, double flushes,
		     double words, double pages);
double prod_predict(const struct cost_model *host, double ioctls, double flushes,
		    double words, double pages);
int model_load(const char *path, struct cost_model *m);
void model_print(FILE *f, const struct cost_model *m);

/* One measured point: the model's four terms and the round's time (us). */
struct obs {
	double x[4], t;
};

/* @m fitted on @n points; m->valid false if they do not determine it. */
void model_fit(const struct obs *o, unsigned int n, struct cost_model *m);

/* bench_report.c */
uint64_t report(const struct bench_result *r, const struct cost_model *host);
void fmt_us(char *buf, size_t len, double us);
void fmt_rate(char *buf, size_t len, double v);

/* sweep.c */
int sweep_main(const struct bench_cfg *base, const char *label, unsigned int budget_s,
	       const char *model_out);
int fit_main(const char *csv, const char *env);

/* svg.c */
int render_svg(const char *in, const char *out);
int render_sweep_svg(const char *csv, const char *outdir);

#endif
