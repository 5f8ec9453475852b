/* SPDX-License-Identifier: LGPL-2.1 OR MIT */
/* Minimal TAP 13 producer for the tests that do not use the kselftest harness. */
#ifndef DIRTYBATCH_TAP_H
#define DIRTYBATCH_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static int tap_n, tap_failed, tap_skipped, tap_planned;

static inline void tap_plan(int n)
{
	tap_planned = n;
	printf("TAP version 13\n1..%d\n", n);
	fflush(stdout);
}

__attribute__((format(printf, 1, 2)))
static inline void tap_diag(const char *fmt, ...)
{
	va_list ap;

	fputs("# ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
}

__attribute__((format(printf, 2, 3)))
static inline int tap_ok(int pass, const char *fmt, ...)
{
	va_list ap;

	tap_n++;
	if (!pass)
		tap_failed++;
	printf("%sok %d - ", pass ? "" : "not ", tap_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
	return pass;
}

__attribute__((format(printf, 2, 3)))
static inline void tap_skip(const char *reason, const char *fmt, ...)
{
	va_list ap;

	tap_n++;
	tap_skipped++;
	printf("ok %d - ", tap_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf(" # SKIP %s\n", reason);
	fflush(stdout);
}

/* The whole program skipped, before any test: a plan of none, exit 4. */
__attribute__((noreturn))
static inline void tap_skip_all(const char *reason)
{
	printf("TAP version 13\n1..0 # SKIP %s\n", reason);
	fflush(stdout);
	exit(4);
}

/* 1 if anything failed, 4 if everything was skipped, else 0. */
static inline int tap_exit_code(void)
{
	if (tap_failed || tap_n != tap_planned) {
		if (tap_n != tap_planned)
			tap_diag("planned %d tests, ran %d", tap_planned, tap_n);
		return 1;
	}
	if (tap_n && tap_skipped == tap_n)
		return 4;
	return 0;
}

#endif /* DIRTYBATCH_TAP_H */
