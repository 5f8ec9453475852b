// SPDX-License-Identifier: GPL-2.0
/*
 * The migration bench's charts, from its CSV files (measures nothing):
 * render_svg(), the bar chart of build/bench/summary.csv, and
 * render_sweep_svg(), one log-log chart per axis and environment of
 * build/bench/sweep.csv, one line per strategy.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

/* [*lo, *hi] widened to whole decades, one at the least. */
static void decades(double *lo, double *hi)
{
	*lo = pow(10, floor(log10(*lo)));
	*hi = pow(10, ceil(log10(*hi)));
	if (*hi <= *lo)
		*hi = *lo * 10;
}

/* @path opened for a chart of @width x @height on white; NULL (said) on error. */
static FILE *svg_open(const char *path, double width, double height, int font_size)
{
	FILE *o = fopen(path, "w");

	if (!o) {
		perror(path);
		return NULL;
	}
	fprintf(o, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
		"font-family=\"sans-serif\" font-size=\"%d\">\n", width, height, font_size);
	fprintf(o, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
	return o;
}

/* ------------------------------------------------------------------ */
/* The bar chart of a summary CSV (make bench)                        */

struct row {
	char strategy[32], kernel[96];
	double median, p99;
};

static void xml_puts(FILE *f, const char *s)
{
	for (; *s; s++)
		if (*s == '<')
			fputs("&lt;", f);
		else if (*s == '&')
			fputs("&amp;", f);
		else
			fputc(*s, f);
}

/* Median of the group's batched row, else its fallback row, else 0. */
static double group_ref(const struct row *rows, int n, const char *kernel)
{
	double fb = 0;
	int i;

	for (i = 0; i < n; i++) {
		if (strcmp(rows[i].kernel, kernel))
			continue;
		if (!strcmp(rows[i].strategy, "batched"))
			return rows[i].median;
		if (!strcmp(rows[i].strategy, "fallback"))
			fb = rows[i].median;
	}
	return fb;
}

int render_svg(const char *in, const char *out)
{
	static const char *const colors[] = {
		"#d62728", "#ff7f0e", "#2ca02c", "#1f77b4", "#9467bd", "#8c564b",
	};
	struct row rows[64];
	char line[512], groups[8][96];
	int nrows = 0, ngroups = 0, i, g;
	double lo = 1e300, hi = 0, x0 = 150, w = 560, y;
	FILE *f = fopen(in, "r"), *o;

	if (!f) {
		perror(in);
		return 1;
	}
	while (fgets(line, sizeof(line), f) && nrows < 64) {
		struct row *r = &rows[nrows];
		char *tok[12], *p = line, *sv;
		int n = 0;

		if (!strncmp(line, "strategy,", 9))
			continue;
		while (n < 12 && (tok[n] = strtok_r(n ? NULL : p, ",\n", &sv)))
			n++;
		if (n < 12)
			continue;
		snprintf(r->strategy, sizeof(r->strategy), "%s", tok[0]);
		snprintf(r->kernel, sizeof(r->kernel), "%s", tok[1]);
		r->median = atof(tok[5]);
		r->p99 = atof(tok[6]);
		if (r->median <= 0)
			continue;
		for (g = 0; g < ngroups && strcmp(groups[g], r->kernel); g++)
			;
		if (g == ngroups && ngroups < 8)
			snprintf(groups[ngroups++], sizeof(groups[0]), "%s", r->kernel);
		lo = fmin(lo, r->median);
		hi = fmax(hi, fmax(r->median, r->p99));
		nrows++;
	}
	fclose(f);
	if (!nrows) {
		fprintf(stderr, "%s: no rows\n", in);
		return 1;
	}
	decades(&lo, &hi);
#define XPOS(v) (x0 + w * (log10(v) - log10(lo)) / (log10(hi) - log10(lo)))
	{
		double height = 70 + nrows * 22 + ngroups * 30 + 40;
		double d;

		o = svg_open(out, x0 + w + 170, height, 12);
		if (!o)
			return 1;
		fprintf(o, "<text x=\"10\" y=\"22\" font-size=\"15\" font-weight=\"bold\">"
			"Dirty-log clear time per migration sync round</text>\n");
		fprintf(o, "<text x=\"10\" y=\"38\" fill=\"#555\">median, p99 whisker, "
			"log scale; (Nx) = time / batched (host: / libdirtybatch fallback)</text>\n");
		for (d = lo; d <= hi * 1.0001; d *= 10) {
			double x = XPOS(d);

			fprintf(o, "<line x1=\"%.1f\" y1=\"46\" x2=\"%.1f\" y2=\"%.0f\" "
				"stroke=\"#ddd\"/>\n", x, x, height - 30);
			char lbl[32];

			fmt_us(lbl, sizeof(lbl), d);
			fprintf(o, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%s</text>\n",
				x, height - 14, lbl);
		}
		y = 56;
		for (g = 0; g < ngroups; g++) {
			double ref = group_ref(rows, nrows, groups[g]);

			fprintf(o, "<text x=\"10\" y=\"%.0f\" font-weight=\"bold\">", y + 12);
			xml_puts(o, groups[g]);
			fprintf(o, "</text>\n");
			y += 22;
			for (i = 0; i < nrows; i++) {
				struct row *r = &rows[i];
				int c = 0;
				unsigned int k;

				if (strcmp(r->kernel, groups[g]))
					continue;
				for (k = 0; k < NSTRAT; k++)
					if (!strcmp(strat_name[k], r->strategy))
						c = k;
				fprintf(o, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">", x0 - 8, y + 12);
				xml_puts(o, r->strategy);
				fprintf(o, "</text>\n<rect x=\"%.1f\" y=\"%.0f\" width=\"%.1f\" "
					"height=\"16\" fill=\"%s\"/>\n", x0, y,
					fmax(XPOS(r->median) - x0, 1), colors[c % 6]);
				fprintf(o, "<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" "
					"stroke=\"black\"/>\n", XPOS(r->median), y + 8,
					XPOS(fmax(r->p99, r->median)), y + 8);
				fprintf(o, "<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" "
					"stroke=\"black\"/>\n", XPOS(fmax(r->p99, r->median)), y + 3,
					XPOS(fmax(r->p99, r->median)), y + 13);
				{
					char lbl[64], v[32];

					fmt_us(v, sizeof(v), r->median);
					if (ref > 0 && r->median != ref)
						snprintf(lbl, sizeof(lbl), "%s (%.3gx)", v,
							 r->median / ref);
					else
						snprintf(lbl, sizeof(lbl), "%s", v);
					fprintf(o, "<text x=\"%.1f\" y=\"%.0f\">%s</text>\n",
						XPOS(fmax(r->p99, r->median)) + 6, y + 12, lbl);
				}
				y += 22;
			}
			y += 8;
		}
		fprintf(o, "</svg>\n");
	}
#undef XPOS
	if (fclose(o)) {
		perror(out);
		return 1;
	}
	return 0;
}


/* ------------------------------------------------------------------ */
/* The sweep's log-log charts                                         */

struct spt {
	char env[96], axis[16];
	int strat;
	double x, t;
	bool skipped;
};

static const char *const line_colors[NSTRAT] = {
	"#d62728", "#ff7f0e", "#2ca02c", "#1f77b4", "#9467bd", "#8c564b",
};

static const char *axis_title(const char *axis)
{
	if (!strcmp(axis, "runs"))
		return "clear requests (runs) per round";
	if (!strcmp(axis, "memory"))
		return "size of the RAM memslot (GiB)";
	if (!strcmp(axis, "slots"))
		return "dirty-logged memslots";
	return axis;
}

static void fmt_x(char *buf, size_t len, double v)
{
	snprintf(buf, len, "%g", v);
}

static int sweep_chart(const struct spt *p, int n, const char *env, const char *axis,
		       const char *path)
{
	const double x0 = 90, y0 = 60, w = 620, h = 380;
	double xlo = 1e300, xhi = 0, tlo = 1e300, thi = 0, d;
	int i, s, nskip = 0;
	FILE *o;

	for (i = 0; i < n; i++) {
		if (strcmp(p[i].env, env) || strcmp(p[i].axis, axis))
			continue;
		xlo = fmin(xlo, p[i].x);
		xhi = fmax(xhi, p[i].x);
		if (!p[i].skipped) {
			tlo = fmin(tlo, p[i].t);
			thi = fmax(thi, p[i].t);
		}
	}
	if (thi <= 0)
		return 0;
	decades(&tlo, &thi);
	if (xhi <= xlo)
		xhi = xlo * 2;
	o = svg_open(path, x0 + w + 190, y0 + h + 90, 13);
	if (!o)
		return 1;
#define SX(v) (x0 + w * (log(v) - log(xlo)) / (log(xhi) - log(xlo)))
#define SY(v) (y0 + h - h * (log10(v) - log10(tlo)) / (log10(thi) - log10(tlo)))
	fprintf(o, "<text x=\"10\" y=\"22\" font-size=\"16\" font-weight=\"bold\">"
		"Clear time per migration sync round against the %s</text>\n", axis_title(axis));
	fprintf(o, "<text x=\"10\" y=\"42\" fill=\"#444\">");
	xml_puts(o, env);
	fprintf(o, ": median per round, measured; log-log</text>\n");
	for (d = tlo; d <= thi * 1.0001; d *= 10) {
		char lbl[32];

		fmt_us(lbl, sizeof(lbl), d);
		fprintf(o, "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n",
			x0, SY(d), x0 + w, SY(d));
		fprintf(o, "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
			x0 - 6, SY(d) + 4, lbl);
	}
	{
		double seen[32];
		int ns = 0, j;

		for (i = 0; i < n; i++) {
			char lbl[32];

			if (strcmp(p[i].env, env) || strcmp(p[i].axis, axis))
				continue;
			for (j = 0; j < ns && seen[j] != p[i].x; j++)
				;
			if (j < ns || ns == 32)
				continue;
			seen[ns++] = p[i].x;
			fmt_x(lbl, sizeof(lbl), p[i].x);
			fprintf(o, "<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" "
				"stroke=\"#eee\"/>\n", SX(p[i].x), y0, SX(p[i].x), y0 + h);
			fprintf(o, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%s</text>\n",
				SX(p[i].x), y0 + h + 18, lbl);
		}
	}
	fprintf(o, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" "
		"stroke=\"#888\"/>\n", x0, y0, w, h);
	fprintf(o, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">%s</text>\n",
		x0 + w / 2, y0 + h + 40, axis_title(axis));
	fprintf(o, "<text x=\"16\" y=\"%.0f\" transform=\"rotate(-90 16 %.0f)\" "
		"text-anchor=\"middle\">clear time per round (median)</text>\n",
		y0 + h / 2, y0 + h / 2);
	for (s = 0; s < NSTRAT; s++) {
		bool any = false, started = false;

		for (i = 0; i < n; i++)
			if (p[i].strat == s && !p[i].skipped && !strcmp(p[i].env, env) &&
			    !strcmp(p[i].axis, axis))
				any = true;
		if (!any)
			continue;
		fprintf(o, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"",
			line_colors[s]);
		for (i = 0; i < n; i++)
			if (p[i].strat == s && !p[i].skipped && !strcmp(p[i].env, env) &&
			    !strcmp(p[i].axis, axis)) {
				fprintf(o, "%s%.1f,%.1f", started ? " " : "", SX(p[i].x), SY(p[i].t));
				started = true;
			}
		fprintf(o, "\"/>\n");
		for (i = 0; i < n; i++)
			if (p[i].strat == s && !p[i].skipped && !strcmp(p[i].env, env) &&
			    !strcmp(p[i].axis, axis))
				fprintf(o, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"/>\n",
					SX(p[i].x), SY(p[i].t), line_colors[s]);
		fprintf(o, "<line x1=\"%.0f\" y1=\"%d\" x2=\"%.0f\" y2=\"%d\" stroke=\"%s\" "
			"stroke-width=\"3\"/><text x=\"%.0f\" y=\"%d\">%s</text>\n",
			x0 + w + 16, (int)y0 + 10 + 22 * s, x0 + w + 40, (int)y0 + 10 + 22 * s,
			line_colors[s], x0 + w + 46, (int)y0 + 14 + 22 * s, strat_name[s]);
	}
	for (i = 0; i < n; i++)
		if (p[i].skipped && !strcmp(p[i].env, env) && !strcmp(p[i].axis, axis) &&
		    p[i].strat >= 0) {
			char lbl[32];

			fmt_x(lbl, sizeof(lbl), p[i].x);
			fprintf(o, "<text x=\"10\" y=\"%.0f\" fill=\"#a00\">skipped (projected over the "
				"budget): %s at %s</text>\n", y0 + h + 62 + 16 * nskip++,
				strat_name[p[i].strat], lbl);
		}
#undef SX
#undef SY
	fprintf(o, "</svg>\n");
	return fclose(o) ? 1 : 0;
}

int render_sweep_svg(const char *csv, const char *outdir)
{
	static struct spt pts[1024];
	char line[512], envs[8][96];
	int n = 0, nenv = 0, e, a, rc = 0;
	static const char *const axes[] = { "runs", "memory", "slots" };
	FILE *f = fopen(csv, "r");

	if (!f) {
		perror(csv);
		return 1;
	}
	while (fgets(line, sizeof(line), f) && n < 1024) {
		char *fl[24], *q = line;
		int k = 0, s;

		while (k < 24) {
			fl[k++] = q;
			q = strchr(q, ',');
			if (!q)
				break;
			*q++ = 0;
		}
		if (k < 13 || (strcmp(fl[0], "measured") && strcmp(fl[0], "skipped")))
			continue;
		for (s = 0; s < NSTRAT && strcmp(strat_name[s], fl[10]); s++)
			;
		snprintf(pts[n].env, sizeof(pts[n].env), "%s", fl[1]);
		snprintf(pts[n].axis, sizeof(pts[n].axis), "%s", fl[2]);
		pts[n].x = atof(fl[3]);
		pts[n].strat = s < NSTRAT ? s : -1;
		pts[n].skipped = strcmp(fl[0], "measured") != 0;
		pts[n].t = pts[n].skipped ? 0 : atof(fl[12]);
		if (!pts[n].skipped && !(pts[n].t > 0))
			continue;
		if (!strcmp(fl[10], "native") && pts[n].skipped)
			continue;	/* not built: not a budget skip */
		for (e = 0; e < nenv && strcmp(envs[e], pts[n].env); e++)
			;
		if (e == nenv && nenv < 8)
			snprintf(envs[nenv++], sizeof(envs[0]), "%s", pts[n].env);
		n++;
	}
	fclose(f);
	for (e = 0; e < nenv; e++)
		for (a = 0; a < 3; a++) {
			char path[512], slug[96];
			int i;

			snprintf(slug, sizeof(slug), "%.95s", envs[e]);
			for (i = 0; slug[i]; i++)
				if (!((slug[i] >= 'a' && slug[i] <= 'z') || (slug[i] >= '0' && slug[i] <= '9') ||
				      slug[i] == '.' || slug[i] == '-' || slug[i] == '+'))
					slug[i] = '_';
			snprintf(path, sizeof(path), "%s/sweep-%s-%s.svg", outdir, slug, axes[a]);
			rc |= sweep_chart(pts, n, envs[e], axes[a], path);
		}
	return rc;
}
