// SPDX-License-Identifier: GPL-2.0
/*
 * The cost model of a round's clear (bench.h): its terms, its fit by
 * weighted least squares on measured points, its projections (with the
 * fitted constants and with the production host's cost per call), and
 * its file format (the "model: " lines of a fit, read back with --model).
 * Used by the sweep (sweep.c) and by the report (bench_report.c);
 * measures nothing.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

const char *const model_term[4] = {
	"us per ioctl", "us per TLB flush", "us per bitmap word walked",
	"us per page cleared",
};

double model_predict(const struct cost_model *m, double ioctls, double flushes,
		     double words, double pages)
{
	const double x[4] = { ioctls, flushes, words, pages };
	double t = 0;
	int j;

	for (j = 0; j < 4; j++)
		if (m->used[j])
			t += m->k[j] * x[j];
	return t;
}

/*
 * The production projection: each clear ioctl at the production host's
 * per-call cost (which includes its TLB flush), plus, when a host model is
 * known, its per-word and per-page constants.
 */
double prod_predict(const struct cost_model *host, double ioctls, double flushes,
		    double words, double pages)
{
	double t = PROD_US_PER_CALL * ioctls;

	(void)flushes;
	if (host && host->valid) {
		if (host->used[2])
			t += host->k[2] * words;
		if (host->used[3])
			t += host->k[3] * pages;
	}
	return t;
}

void model_print(FILE *f, const struct cost_model *m)
{
	int j;

	if (!m->valid) {
		fprintf(f, "  %s: no fit (%u points)\n", m->label, m->points);
		return;
	}
	fprintf(f, "  %s, %u points:\n", m->label, m->points);
	for (j = 0; j < 4; j++) {
		if (m->used[j])
			fprintf(f, "    %c = %12.4g %s\n", 'a' + j, m->k[j], model_term[j]);
		else
			fprintf(f, "    %c = %12s %s (dropped: the fit made it negative or "
				"it is not determined by the points)\n", 'a' + j, "0", model_term[j]);
	}
	fprintf(f, "    residual: rms %.1f%%, largest %.1f%% of the measured time per round; "
		"R^2 of log(time) %.4f\n", 100 * m->rms_rel, 100 * m->max_rel, m->r2);
}

/* "model: label,a,b,c,d,used,points,rms,max,r2" lines; the first whose
 * label starts with "host". */
int model_load(const char *path, struct cost_model *m)
{
	char line[512];
	FILE *f = fopen(path, "r");

	memset(m, 0, sizeof(*m));
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		char label[96];
		unsigned int used;
		int n;

		n = sscanf(line, "model: %95[^,],%lf,%lf,%lf,%lf,%x,%u,%lf,%lf,%lf", label,
			   &m->k[0], &m->k[1], &m->k[2], &m->k[3], &used, &m->points,
			   &m->rms_rel, &m->max_rel, &m->r2);
		if (n != 10 || strncmp(label, "host", 4))
			continue;
		snprintf(m->label, sizeof(m->label), "%s", label);
		for (n = 0; n < 4; n++)
			m->used[n] = used >> n & 1;
		m->valid = true;
		break;
	}
	fclose(f);
	return m->valid ? 0 : -ENOENT;
}

/* Solve the n x n system A z = y in place, partial pivoting; -1 if singular. */
static int solve(int n, double A[4][4], double y[4], double z[4])
{
	int i, j, k, p;

	for (k = 0; k < n; k++) {
		p = k;
		for (i = k + 1; i < n; i++)
			if (fabs(A[i][k]) > fabs(A[p][k]))
				p = i;
		if (fabs(A[p][k]) < 1e-12)
			return -1;
		if (p != k) {
			for (j = 0; j < n; j++) {
				double t = A[k][j];

				A[k][j] = A[p][j];
				A[p][j] = t;
			}
			{
				double t = y[k];

				y[k] = y[p];
				y[p] = t;
			}
		}
		for (i = k + 1; i < n; i++) {
			double f = A[i][k] / A[k][k];

			for (j = k; j < n; j++)
				A[i][j] -= f * A[k][j];
			y[i] -= f * y[k];
		}
	}
	for (i = n - 1; i >= 0; i--) {
		double s = y[i];

		for (j = i + 1; j < n; j++)
			s -= A[i][j] * z[j];
		z[i] = s / A[i][i];
	}
	return 0;
}

/*
 * Weighted least squares, normal equations on scaled columns: minimise
 * sum(((x_i . k) - t_i) / t_i)^2 over the used terms; a term whose
 * constant comes out negative, or whose column is (numerically) a
 * combination of the others, is dropped and the fit redone.
 */
void model_fit(const struct obs *o, unsigned int n, struct cost_model *m)
{
	bool used[4] = { true, true, true, true };
	int round;

	m->points = n;
	m->valid = false;
	for (round = 0; round < 4; round++) {
		double A[4][4] = { { 0 } }, y[4] = { 0 }, z[4] = { 0 }, scale[4] = { 0 };
		int idx[4], nu = 0, i, j, worst = -1;
		unsigned int r;

		for (j = 0; j < 4; j++) {
			double s = 0;

			for (r = 0; r < n; r++)
				s += (o[r].x[j] / o[r].t) * (o[r].x[j] / o[r].t);
			scale[j] = sqrt(s);
			if (used[j] && scale[j] > 0)
				idx[nu++] = j;
			else
				used[j] = false;
		}
		if (!nu || n < (unsigned int)nu)
			return;
		for (r = 0; r < n; r++)
			for (i = 0; i < nu; i++) {
				double ai = o[r].x[idx[i]] / o[r].t / scale[idx[i]];

				y[i] += ai;
				for (j = 0; j < nu; j++)
					A[i][j] += ai * o[r].x[idx[j]] / o[r].t / scale[idx[j]];
			}
		if (solve(nu, A, y, z)) {
			/* dependent columns: drop the last used term and retry */
			used[idx[nu - 1]] = false;
			continue;
		}
		for (i = 0; i < nu; i++)
			if (z[i] < 0 && (worst < 0 || z[i] < z[worst]))
				worst = i;
		if (worst >= 0) {
			used[idx[worst]] = false;
			continue;
		}
		for (j = 0; j < 4; j++) {
			m->used[j] = used[j];
			m->k[j] = 0;
		}
		for (i = 0; i < nu; i++)
			m->k[idx[i]] = z[i] / scale[idx[i]];
		m->valid = true;
		break;
	}
	if (!m->valid)
		return;
	{
		double ss = 0, mx = 0, lm = 0, lss = 0, lres = 0;
		unsigned int r;

		for (r = 0; r < n; r++) {
			double p = model_predict(m, o[r].x[0], o[r].x[1], o[r].x[2], o[r].x[3]);
			double e = (p - o[r].t) / o[r].t;

			ss += e * e;
			if (fabs(e) > mx)
				mx = fabs(e);
			lm += log(o[r].t);
			lres += p > 0 ? pow(log(p) - log(o[r].t), 2) : 100;
		}
		lm /= n;
		for (r = 0; r < n; r++)
			lss += pow(log(o[r].t) - lm, 2);
		m->rms_rel = sqrt(ss / n);
		m->max_rel = mx;
		m->r2 = lss > 0 ? 1 - lres / lss : 0;
	}
}
