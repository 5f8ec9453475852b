// SPDX-License-Identifier: GPL-2.0
/*
 * The sweep: how a round's clear cost grows with the work, per strategy,
 * along three axes, each from one base pattern, one bench_run() per point:
 *
 *   runs     clear requests per round, 16 .. 4096, at 2 GiB of RAM
 *   memory   pages of the RAM memslot, 1 GiB .. 1 TiB (sparse: the memslot
 *            is MAP_NORESERVE and only the dirtied pages are touched; the
 *            largest ends at 1 TiB, the guests' 40-bit physical limit, so
 *            it is 1023 GiB), 256 runs
 *   slots    dirty-logged memslots, 4 .. 256, 256 runs
 *
 * plus the default pattern itself.  The dirty rate stays at the base's
 * (512 pages per round).  Before a point is run, each strategy's time is
 * projected from the points measured so far (the cost model below, fitted
 * on them, or, before it can be, the strategy's previous point scaled by
 * its ioctls); a strategy whose projected time at the point exceeds a
 * tenth of the sweep's budget, or what is left of it, is skipped there,
 * with a "skipped" row saying so.
 *
 * Output: one "sweep: " CSV line per strategy and point (scripts/bench.sh
 * collects them into build/bench/sweep.csv).  --fit then fits the cost
 * model
 *
 *   time per round = a x ioctls + b x TLB flushes
 *                    + c x bitmap words walked + d x pages cleared
 *
 * by least squares, separately per environment (the guest, the host's own
 * KVM), weighted by 1/time (every point counts by its relative error, the
 * axes span four decades), printing the constants and the residuals, and
 * projects the default pattern's times with the host's constants and with
 * the production host's per-call cost.  A constant the fit makes negative
 * is dropped (set to 0, the fit redone without it) and said so.  The
 * model itself is cost_model.c.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "clock.h"

#define GIB_PAGES	(262144ULL)
#define MAX_ROWS	512

static const char csv_header[] =
	"kind,env,axis,x,slots,ram_slots,ram_slot_mib,total_mib,runs,dirty,strategy,rounds,"
	"median_us,p99_us,ioctls,mmu_lock_holds,tlb_flushes,vcpu_kicks,words_walked,"
	"words_exact,pages_cleared,lost_pages,model_us,note";

/* ------------------------------------------------------------------ */
/* The sweep                                                          */

struct point {
	const char *axis;
	double x;			/* the axis value */
	struct bench_cfg cfg;
};

struct sweep {
	struct obs obs[MAX_ROWS];
	unsigned int nobs;
	/* each strategy's last measured point: time and expected counts */
	double last_t[NSTRAT];
	struct bench_expect last_e[NSTRAT];
	struct cost_model model;
	unsigned int rounds_per_point;	/* warm-up + measured */
	double budget_s, t0, cap_s;
	unsigned int skipped;
};

static double project(const struct sweep *w, enum strat s, const struct bench_expect *e)
{
	/* flushes: about one per ioctl that clears something (batched: one) */
	double fl = e->ioctls < e->pages ? e->ioctls : e->pages;

	if (w->model.valid && w->nobs >= 8)
		return model_predict(&w->model, e->ioctls, fl, e->words, e->pages);
	if (w->last_t[s] > 0 && w->last_e[s].ioctls)
		return w->last_t[s] * e->ioctls / w->last_e[s].ioctls;
	return 0;
}

static bool admit(void *arg, enum strat s, const struct bench_expect *e, char *why, size_t len)
{
	const struct sweep *w = arg;
	double t = project(w, s, e) / 1e6 * w->rounds_per_point;
	double left = w->budget_s - (now_ns() / 1e9 - w->t0);

	if (t > w->cap_s || t > left) {
		snprintf(why, len, "projected %.0f s for %u rounds: over the %s (%.0f s)", t,
			 w->rounds_per_point, t > w->cap_s ? "per-point cap" : "budget left",
			 t > w->cap_s ? w->cap_s : left);
		return false;
	}
	return true;
}

/* A note for a CSV field: commas become semicolons (in place). */
static const char *csv_safe(char *s)
{
	char *p;

	for (p = s; *p; p++)
		if (*p == ',' || *p == '\n')
			*p = ';';
	return s;
}

static void emit(const struct point *p, struct bench_result *r, enum strat s)
{
	struct strat_result *S = &r->s[s];
	const struct bench_cfg *c = &r->cfg;

	printf("sweep: %s,%s,%s,%g,%u,%u,%.0f,%.0f,%u,%u,%s,",
	       S->run ? "measured" : "skipped", r->label, p->axis, p->x, r->nslots,
	       c->ram_slots, r->ram_slot_pages * 4096.0 / (1 << 20),
	       r->total_pages * 4096.0 / (1 << 20), r->nruns, r->ntp, strat_name[s]);
	if (S->run)
		printf("%u,%.1f,%.1f,%.1f,%.1f,%.1f,%.1f,%.0f,%d,%.1f,%llu,,\n", S->n,
		       S->median_us, S->p99_us, S->ioctls, S->holds, S->flushes, S->kicks,
		       S->words, S->words_exact, S->pages, (unsigned long long)S->lost);
	else
		printf("0,,,,,,,,,,,,%s\n", csv_safe(S->skipped));
	fflush(stdout);
}

int sweep_main(const struct bench_cfg *base, const char *label, unsigned int budget_s,
	       const char *model_out)
{
	static const unsigned int runs_x[] = { 16, 64, 256, 1024, 4096 };
	static const unsigned int gib_x[] = { 1, 8, 64, 512, 1024 };
	static const unsigned int slots_x[] = { 4, 16, 64, 256 };
	struct point pts[32];
	struct sweep *w = calloc(1, sizeof(*w));
	unsigned int np = 0, i, lost = 0, failed = 0;
	char err[256];
	int k;

	if (!w)
		return 1;
	pts[np++] = (struct point){ "default", base->runs, *base };
	for (i = 0; i < sizeof(runs_x) / sizeof(runs_x[0]); i++) {
		struct point p = { "runs", runs_x[i], *base };

		p.cfg.runs = runs_x[i];
		p.cfg.mem_mib = 2048;
		pts[np++] = p;
	}
	for (i = 0; i < sizeof(slots_x) / sizeof(slots_x[0]); i++) {
		struct point p = { "slots", slots_x[i], *base };

		p.cfg.slots = slots_x[i];
		if (p.cfg.ram_slots > p.cfg.slots)
			p.cfg.ram_slots = p.cfg.slots;
		pts[np++] = p;
	}
	for (i = 0; i < sizeof(gib_x) / sizeof(gib_x[0]); i++) {
		struct point p = { "memory", gib_x[i], *base };

		p.cfg.ram_slots = 1;
		p.cfg.ram_slot_pages = gib_x[i] * GIB_PAGES;
		pts[np++] = p;
	}

	w->rounds_per_point = base->warmup + base->rounds;
	w->budget_s = budget_s;
	w->cap_s = budget_s / 10.0;
	w->t0 = now_ns() / 1e9;
	say("sweep: %u points (default pattern; runs 16..4096 at 2 GiB; memslots 4..256; "
	    "RAM memslot 1 GiB..1 TiB), %u warm-up + %u measured rounds per strategy, "
	    "budget %u s, at most %.0f s per strategy and point", np, base->warmup,
	    base->rounds, budget_s, w->cap_s);
	printf("sweep-header: %s\n", csv_header);
	for (i = 0; i < np; i++) {
		struct point *p = &pts[i];
		struct bench_result *r = calloc(1, sizeof(*r));
		int rc;

		if (!r)
			return 1;
		p->cfg.quiet = true;
		rc = bench_run(&p->cfg, label, admit, w, r, err, sizeof(err));
		if (rc == 2) {
			say("sweep: %s %g: does not fit: %s", p->axis, p->x, err);
			printf("sweep: skipped,%s,%s,%g,%u,%u,,,%u,%u,all,0,,,,,,,,,,,,%s\n",
			       label, p->axis, p->x, p->cfg.slots, p->cfg.ram_slots,
			       p->cfg.runs, p->cfg.dirty, csv_safe(err));
			free(r);
			continue;
		}
		if (rc) {
			free(r);
			free(w);
			return rc;
		}
		{
			char line[600];
			size_t off = 0;

			for (k = 0; k < NSTRAT; k++) {
				const struct strat_result *S = &r->s[k];
				char t[32];

				if (!p->cfg.strat[k])
					continue;
				if (S->run)
					fmt_us(t, sizeof(t), S->median_us);
				off += snprintf(line + off, sizeof(line) - off, "%s%s %s",
						off ? ", " : "", strat_name[k],
						S->run ? t : "skipped");
			}
			say("sweep %2u/%u: %-7s %-5g (%u memslots, %llu MiB per RAM memslot, %u runs):"
			    " %s [%.0f s]", i + 1, np, p->axis, p->x, r->nslots,
			    (unsigned long long)(r->ram_slot_pages / 256), r->nruns, line,
			    r->seconds);
		}
		for (k = 0; k < NSTRAT; k++) {
			const struct strat_result *S = &r->s[k];

			if (!p->cfg.strat[k])
				continue;
			if (S->skipped[0] && k != S_NATIVE) {
				say("sweep: %s %g: %s skipped: %s", p->axis, p->x, strat_name[k],
				    S->skipped);
				w->skipped++;
			}
			emit(p, r, k);
			lost += S->lost;
			if (S->run && S->median_us > 0 && w->nobs < MAX_ROWS) {
				struct obs *o = &w->obs[w->nobs++];
				struct bench_expect e = { S->ioctls, S->words, S->pages };

				o->x[0] = S->ioctls;
				o->x[1] = S->flushes;
				o->x[2] = S->words;
				o->x[3] = S->pages;
				o->t = S->median_us;
				w->last_t[k] = S->median_us;
				w->last_e[k] = e;
			}
		}
		failed += r->xcheck_bad;
		if (w->nobs >= 8) {
			snprintf(w->model.label, sizeof(w->model.label), "%s", label);
			model_fit(w->obs, w->nobs, &w->model);
		}
		free(r);
	}
	say("sweep: done in %.0f s, %u strategy points skipped", now_ns() / 1e9 - w->t0,
	    w->skipped);
	printf("\nCost model fitted on this sweep (time per round = a x ioctls + b x TLB flushes"
	       " + c x words walked + d x pages cleared):\n");
	snprintf(w->model.label, sizeof(w->model.label), "%s", label);
	model_fit(w->obs, w->nobs, &w->model);
	model_print(stdout, &w->model);
	if (model_out && w->model.valid) {
		FILE *f = fopen(model_out, "w");

		if (f) {
			fprintf(f, "model: %s,%.6g,%.6g,%.6g,%.6g,%x,%u,%.4f,%.4f,%.4f\n",
				label, w->model.k[0], w->model.k[1], w->model.k[2], w->model.k[3],
				w->model.used[0] | w->model.used[1] << 1 | w->model.used[2] << 2 |
				w->model.used[3] << 3, w->model.points, w->model.rms_rel,
				w->model.max_rel, w->model.r2);
			fclose(f);
		}
	}
	free(w);
	if (lost)
		return EXIT_LOST;
	return base->check_counters && failed ? EXIT_COUNTERS : 0;
}

/* ------------------------------------------------------------------ */
/* --fit: the model per environment from sweep.csv, and projections   */

struct crow {
	char kind[24], env[96], axis[16], strategy[16];
	double v[24];		/* the numeric columns, by index */
	char line[512];
};

/* column indexes in csv_header */
enum { C_X = 3, C_RUNS = 8, C_MEDIAN = 12, C_IOCTLS = 14, C_FLUSHES = 16, C_KICKS = 17,
       C_WORDS = 18,
       C_PAGES = 20, C_MODEL = 22 };

static int split(char *s, char **f, int max)
{
	int n = 0;

	while (n < max) {
		f[n++] = s;
		s = strchr(s, ',');
		if (!s)
			break;
		*s++ = 0;
	}
	return n;
}

/*
 * The measured rows of @env as observations of the cost model, with
 * column @flush_col (flushes, or vCPU kicks) as its second term; at most
 * MAX_ROWS, their number returned.
 */
static unsigned int observations(const struct crow *rows, unsigned int nrows, const char *env,
				 int flush_col, struct obs *obs)
{
	unsigned int i, n = 0;

	for (i = 0; i < nrows && n < MAX_ROWS; i++) {
		const struct crow *r = &rows[i];

		if (strcmp(r->env, env) || strcmp(r->kind, "measured") || !(r->v[C_MEDIAN] > 0))
			continue;
		obs[n].x[0] = r->v[C_IOCTLS];
		obs[n].x[1] = r->v[flush_col];
		obs[n].x[2] = r->v[C_WORDS];
		obs[n].x[3] = r->v[C_PAGES];
		obs[n].t = r->v[C_MEDIAN];
		n++;
	}
	return n;
}

int fit_main(const char *in, const char *out)
{
	static struct crow rows[MAX_ROWS * 2];
	char line[512], envs[8][96];
	struct cost_model models[8], *host = NULL;
	unsigned int nrows = 0, nenv = 0, i, e;
	FILE *f = fopen(in, "r"), *o;

	if (!f) {
		perror(in);
		return 1;
	}
	while (fgets(line, sizeof(line), f) && nrows < MAX_ROWS * 2) {
		struct crow *r = &rows[nrows];
		char buf[512], *fl[24];
		int n, j;

		if (!strncmp(line, "kind,", 5))
			continue;
		line[strcspn(line, "\n")] = 0;
		snprintf(r->line, sizeof(r->line), "%s", line);
		snprintf(buf, sizeof(buf), "%s", line);
		n = split(buf, fl, 24);
		if (n < 23)
			continue;
		snprintf(r->kind, sizeof(r->kind), "%s", fl[0]);
		snprintf(r->env, sizeof(r->env), "%s", fl[1]);
		snprintf(r->axis, sizeof(r->axis), "%s", fl[2]);
		snprintf(r->strategy, sizeof(r->strategy), "%s", fl[10]);
		for (j = 0; j < n && j < 24; j++)
			r->v[j] = *fl[j] ? atof(fl[j]) : NAN;
		if (strcmp(r->kind, "measured") && strcmp(r->kind, "skipped"))
			continue;
		for (e = 0; e < nenv && strcmp(envs[e], r->env); e++)
			;
		if (e == nenv && nenv < 8)
			snprintf(envs[nenv++], sizeof(envs[0]), "%s", r->env);
		nrows++;
	}
	fclose(f);

	printf("Cost model: time per round = a x ioctls + b x TLB flushes + c x bitmap words walked"
	       " + d x pages cleared,\nleast squares weighted by 1/time, per environment:\n");
	for (e = 0; e < nenv; e++) {
		static struct obs obs[MAX_ROWS];
		unsigned int n = observations(rows, nrows, envs[e], C_FLUSHES, obs);

		memset(&models[e], 0, sizeof(models[e]));
		snprintf(models[e].label, sizeof(models[e].label), "%.95s", envs[e]);
		model_fit(obs, n, &models[e]);
		model_print(stdout, &models[e]);
		if (models[e].valid)
			printf("model: %s,%.6g,%.6g,%.6g,%.6g,%x,%u,%.4f,%.4f,%.4f\n", envs[e],
			       models[e].k[0], models[e].k[1], models[e].k[2], models[e].k[3],
			       models[e].used[0] | models[e].used[1] << 1 | models[e].used[2] << 2 |
			       models[e].used[3] << 3, models[e].points, models[e].rms_rel,
			       models[e].max_rel, models[e].r2);
		if (!host && !strncmp(envs[e], "host", 4) && models[e].valid)
			host = &models[e];
		/*
		 * The same fit with vCPU kicks (remote_tlb_flush: the flushes
		 * that had to get a vCPU out of guest mode) in place of the
		 * flushes: under TCG a flush costs milliseconds only when it
		 * waits for an emulated vCPU, so the kicks may explain the
		 * times better.  Printed for comparison; not used to project.
		 */
		{
			struct cost_model v = { .valid = false };

			observations(rows, nrows, envs[e], C_KICKS, obs);
			snprintf(v.label, sizeof(v.label), "%.40s (kicks)", envs[e]);
			model_fit(obs, n, &v);
			if (v.valid)
				printf("    variant: b = %.4g us per vCPU kick%s; a = %.4g, c = %.4g, "
				       "d = %.4g; residual rms %.1f%%, largest %.1f%%\n", v.k[1],
				       v.used[1] ? "" : " (dropped)", v.k[0], v.k[2], v.k[3],
				       100 * v.rms_rel, 100 * v.max_rel);
		}
	}

	o = fopen(out, "w");
	if (!o) {
		perror(out);
		return 1;
	}
	fprintf(o, "%s\n", csv_header);
	for (i = 0; i < nrows; i++) {
		const struct crow *r = &rows[i];
		char buf[512], *fl[24];
		int n, j;

		for (e = 0; e < nenv && strcmp(envs[e], r->env); e++)
			;
		snprintf(buf, sizeof(buf), "%s", r->line);
		n = split(buf, fl, 24);
		for (j = 0; j < n; j++) {
			if (j == C_MODEL && !strcmp(r->kind, "measured") && e < nenv &&
			    models[e].valid)
				fprintf(o, "%s%.1f", j ? "," : "",
					model_predict(&models[e], r->v[C_IOCTLS], r->v[C_FLUSHES],
						      r->v[C_WORDS], r->v[C_PAGES]));
			else
				fprintf(o, "%s%s", j ? "," : "", fl[j]);
		}
		fprintf(o, "\n");
	}

	/* the default pattern: measured beside projected */
	printf("\nDefault pattern, per strategy: MEASURED medians, then PROJECTIONS (not measured)\n"
	       "from each run's counts: with the host's fitted constants (%s), and at the\n"
	       "production host's %.1f us per clear ioctl (960 calls, 49 ms; plus the host's\n"
	       "per-word and per-page constants):\n", host ? host->label : "no host fit",
	       PROD_US_PER_CALL);
	printf("  %-9s %-34s %12s %8s %8s %9s %8s | %13s %13s\n", "strategy", "measured in",
	       "median", "ioctls", "flushes", "words", "pages", "PROJ host", "PROJ prod");
	for (i = 0; i < nrows; i++) {
		const struct crow *r = &rows[i];
		double ph, pp;
		char a[32], b[32], c[32];

		if (strcmp(r->kind, "measured") || strcmp(r->axis, "default"))
			continue;
		ph = host ? model_predict(host, r->v[C_IOCTLS], r->v[C_FLUSHES], r->v[C_WORDS],
					  r->v[C_PAGES]) : NAN;
		pp = prod_predict(host, r->v[C_IOCTLS], r->v[C_FLUSHES], r->v[C_WORDS],
				  r->v[C_PAGES]);
		fmt_us(a, sizeof(a), r->v[C_MEDIAN]);
		fmt_us(b, sizeof(b), ph);
		fmt_us(c, sizeof(c), pp);
		printf("  %-9s %-34.34s %12s %8.0f %8.0f %9.0f %8.0f | %13s %13s\n", r->strategy,
		       r->env, a, r->v[C_IOCTLS], r->v[C_FLUSHES], r->v[C_WORDS], r->v[C_PAGES],
		       host ? b : "-", c);
		if (host)
			fprintf(o, "projected-host,%s,default,%g,%.0f,%.0f,%.0f,%.0f,%.0f,%.0f,%s,0,"
				",,%.1f,,%.1f,,%.0f,,%.1f,,%.1f,projection with the constants of %s\n",
				r->env, r->v[C_X], r->v[4], r->v[5], r->v[6], r->v[7], r->v[C_RUNS],
				r->v[9], r->strategy, r->v[C_IOCTLS], r->v[C_FLUSHES], r->v[C_WORDS],
				r->v[C_PAGES], ph, host->label);
		fprintf(o, "projected-prod,%s,default,%g,%.0f,%.0f,%.0f,%.0f,%.0f,%.0f,%s,0,"
			",,%.1f,,%.1f,,%.0f,,%.1f,,%.1f,projection at %.1f us per clear ioctl%s\n",
			r->env, r->v[C_X], r->v[4], r->v[5], r->v[6], r->v[7], r->v[C_RUNS], r->v[9],
			r->strategy, r->v[C_IOCTLS], r->v[C_FLUSHES], r->v[C_WORDS], r->v[C_PAGES],
			pp, PROD_US_PER_CALL, host ? " + host per-word/per-page constants" : "");
	}
	printf("  (the production mail: 61 ms of misaligned clears per sync before QEMU's fix,"
	       " about 1 ms after)\n");
	if (fclose(o)) {
		perror(out);
		return 1;
	}
	return 0;
}
