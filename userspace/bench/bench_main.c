// SPDX-License-Identifier: GPL-2.0
/*
 * dirtybatch_migration_bench: options and main().  One run of the default
 * (or a given) pattern: bench_run() (migration_bench.c), then report()
 * (bench_report.c).  --sweep runs the sweep (sweep.c); --fit, --svg and
 * --sweep-svg work on CSV files and measure nothing.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "vm.h"

/* the helper's memslots but the system and the control slot */
#define MAX_LOGGED_SLOTS (VM_MAX_SLOTS - 2)

static struct bench_cfg cfg = {
	.vcpus = 2, .mem_mib = 512, .ram_slots = 3, .slots = 24, .runs = 256,
	.rounds = 15, .dirty = 512, .warmup = 1, .seed = 1,
};
static const char *strategies, *label, *model_path, *model_out;
static bool sweep, rounds_given, window_given;
static unsigned int sweep_budget;

static void usage(FILE *f)
{
	fprintf(f,
"usage: dirtybatch_migration_bench [options]\n"
"       dirtybatch_migration_bench --sweep [options]\n"
"       dirtybatch_migration_bench --fit SWEEP-RAW.csv SWEEP.csv\n"
"       dirtybatch_migration_bench --svg SUMMARY.csv OUT.svg\n"
"       dirtybatch_migration_bench --sweep-svg SWEEP.csv OUTDIR\n"
"\n"
"A VM's vCPUs dirty memory while the host syncs the dirty log and clears it\n"
"round after round, with each strategy in turn on the same VM.\n"
"\n"
"  --vcpus N        vCPUs writing memory (default %u, at most %u)\n"
"  --mem MIB        guest RAM, over the large memslots (default %u)\n"
"  --ram-slots N    large (RAM) memslots (default %u)\n"
"  --slots N        dirty-logged memslots in all, the others small ones\n"
"                   with sizes not multiples of 64 pages (default %u, at most %u)\n"
"  --runs N         clear requests per round, starts not 64-page aligned\n"
"                   (default %u)\n"
"  --dirty N        dirty rate: pages the vCPUs dirty between two syncs,\n"
"                   spread over the runs (default %u)\n"
"  --rounds N       measured rounds per strategy (default %u; --sweep: 3,\n"
"                   with --host 11)\n"
"  --warmup N       unmeasured rounds per strategy first (default %u)\n"
"  --budget S       measure for at most about S seconds: no new cycle of\n"
"                   rounds once the last one says it would end later\n"
"                   (0 = no limit, the default)\n"
"  --strategies L   comma-separated subset of per-page,merged,batched,floor,\n"
"                   fallback,native (default: the first four and native;\n"
"                   with --host: per-page,merged,floor,fallback,native;\n"
"                   --sweep: all, batched only with the module; native is\n"
"                   skipped, with the reason, without a patched KVM)\n"
"  --host           no module: libdirtybatch's fallback instead of batched\n"
"  --label S        kernel label for the CSV (default: uname -r)\n"
"  --seed N         layout seed (default 1)\n"
"  --window-ms N    the guest throughput window from the start of each clear,\n"
"                   the same for every strategy (default: the warm-up's\n"
"                   slowest clear + send, plus a quarter; --sweep: 1)\n"
"  --model FILE     'model: ' lines of a host sweep: the table's host_us\n"
"                   projection, and the per-word and per-page terms of its\n"
"                   prod_us projection\n"
"  --verbose        more KVM statistics of vCPU 0 per strategy\n"
"  --check-counters exit 5 if, for a batched clear, KVM's TLB flush count\n"
"                   (remote_tlb_flush_requests) is not the module's, or the\n"
"                   module's calls or pages are not the library's (make\n"
"                   check's smoke run; always reported)\n"
"  --sweep          the sweep over runs, memslot size and memslots (sweep.c);\n"
"                   prints 'sweep: ' CSV lines and the cost model it fits\n"
"  --sweep-budget S the sweep's time budget (default 600, with --host 240):\n"
"                   a strategy whose projected time at a point is over a\n"
"                   tenth of it, or over what is left, is skipped there\n"
"  --model-out FILE write the sweep's fitted model ('model: ' line)\n"
"\n"
"Prints progress, a table, target PASS/MISS lines and 'csv: ' lines.\n"
"Exit: 0, 3 if a dirty page was lost, 5 with --check-counters if the\n"
"counters disagree, 4 if KVM (or the module) is missing, 1 on error,\n"
"2 on usage error.\n",
		cfg.vcpus, MAX_VCPUS, cfg.mem_mib, cfg.ram_slots, cfg.slots, MAX_LOGGED_SLOTS,
		cfg.runs, cfg.dirty, cfg.rounds, cfg.warmup);
}

static unsigned int num_arg(const char *name, const char *v, unsigned int min,
			    unsigned int max)
{
	char *end;
	unsigned long n;

	errno = 0;
	n = strtoul(v, &end, 0);
	if (errno || *end || !*v || n < min || n > max) {
		fprintf(stderr, "migration_bench: --%s: want %u..%u, got '%s'\n", name,
			min, max, v);
		exit(2);
	}
	return n;
}

static void need_two(int argc, char **argv)
{
	(void)argv;
	if (argc - optind != 2) {
		usage(stderr);
		exit(2);
	}
}

static void parse(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "vcpus", 1, NULL, 'v' }, { "mem", 1, NULL, 'm' },
		{ "ram-slots", 1, NULL, 'R' }, { "slots", 1, NULL, 's' },
		{ "runs", 1, NULL, 'n' }, { "dirty", 1, NULL, 'd' },
		{ "rounds", 1, NULL, 'r' }, { "warmup", 1, NULL, 'w' },
		{ "strategies", 1, NULL, 'S' }, { "host", 0, NULL, 'H' },
		{ "label", 1, NULL, 'l' }, { "seed", 1, NULL, 'x' },
		{ "budget", 1, NULL, 'b' }, { "verbose", 0, NULL, 'V' },
		{ "window-ms", 1, NULL, 'W' }, { "check-counters", 0, NULL, 'C' },
		{ "help", 0, NULL, 'h' }, { "svg", 0, NULL, 'G' },
		{ "sweep", 0, NULL, 'P' }, { "sweep-budget", 1, NULL, 'B' },
		{ "model", 1, NULL, 'M' }, { "model-out", 1, NULL, 'O' },
		{ "fit", 0, NULL, 'F' }, { "sweep-svg", 0, NULL, 'Q' }, { 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'v': cfg.vcpus = num_arg("vcpus", optarg, 1, MAX_VCPUS); break;
		case 'm': cfg.mem_mib = num_arg("mem", optarg, 16, 3072); break;
		case 'R': cfg.ram_slots = num_arg("ram-slots", optarg, 1, MAX_LOGGED_SLOTS); break;
		case 's': cfg.slots = num_arg("slots", optarg, 1, MAX_LOGGED_SLOTS); break;
		case 'n': cfg.runs = num_arg("runs", optarg, 1, 1000000); break;
		case 'd': cfg.dirty = num_arg("dirty", optarg, 1, 1000000); break;
		case 'r': cfg.rounds = num_arg("rounds", optarg, 1, 100000); rounds_given = true; break;
		case 'w': cfg.warmup = num_arg("warmup", optarg, 0, 1000); break;
		case 'S': strategies = optarg; break;
		case 'H': cfg.host = true; break;
		case 'l': label = optarg; break;
		case 'V': cfg.verbose = true; break;
		case 'C': cfg.check_counters = true; break;
		case 'b': cfg.budget = num_arg("budget", optarg, 0, 86400); break;
		case 'W':
			cfg.window_ms = num_arg("window-ms", optarg, 1, 600000);
			window_given = true;
			break;
		case 'x': cfg.seed = num_arg("seed", optarg, 0, UINT_MAX); break;
		case 'P': sweep = true; break;
		case 'B': sweep_budget = num_arg("sweep-budget", optarg, 10, 86400); break;
		case 'M': model_path = optarg; break;
		case 'O': model_out = optarg; break;
		case 'G':
			need_two(argc, argv);
			exit(render_svg(argv[optind], argv[optind + 1]));
		case 'F':
			need_two(argc, argv);
			exit(fit_main(argv[optind], argv[optind + 1]));
		case 'Q':
			need_two(argc, argv);
			exit(render_sweep_svg(argv[optind], argv[optind + 1]));
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(2);
		}
	}
	if (optind != argc) {
		usage(stderr);
		exit(2);
	}
	if (cfg.ram_slots > cfg.slots) {
		fprintf(stderr, "migration_bench: --ram-slots %u > --slots %u\n",
			cfg.ram_slots, cfg.slots);
		exit(2);
	}
}

static void parse_strategies(void)
{
	char buf[256], *p, *sv;
	unsigned int k;

	snprintf(buf, sizeof(buf), "%s", strategies ? strategies :
		 sweep ? (cfg.host ? "per-page,merged,floor,fallback,native" :
				     "per-page,merged,batched,floor,fallback,native") :
		 cfg.host ? "per-page,merged,floor,fallback,native" :
			    "per-page,merged,batched,floor,native");
	for (p = strtok_r(buf, ",", &sv); p; p = strtok_r(NULL, ",", &sv)) {
		for (k = 0; k < NSTRAT && strcmp(p, strat_name[k]); k++)
			;
		if (k == NSTRAT) {
			fprintf(stderr, "migration_bench: unknown strategy '%s'\n", p);
			exit(2);
		}
		cfg.strat[k] = true;
	}
}

int main(int argc, char **argv)
{
	struct bench_result *res;
	struct cost_model host = { .valid = false };
	char err[256];
	uint64_t lost;
	int rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	parse(argc, argv);
	parse_strategies();
	if (model_path && model_load(model_path, &host))
		say("no host model in %s: the table projects the production per-call cost only",
		    model_path);

	if (sweep) {
		if (!rounds_given)
			cfg.rounds = cfg.host ? 11 : 3;
		if (!window_given)
			cfg.window_ms = 1;
		return sweep_main(&cfg, label, sweep_budget ? sweep_budget : cfg.host ? 240 : 600,
				  model_out);
	}

	res = calloc(1, sizeof(*res));
	if (!res)
		return 1;
	rc = bench_run(&cfg, label, NULL, NULL, res, err, sizeof(err));
	if (rc == 2) {
		fprintf(stderr, "migration_bench: %s\n", err);
		return 1;
	}
	if (rc)
		return rc;
	lost = report(res, &host);
	rc = lost ? EXIT_LOST : cfg.check_counters && res->xcheck_bad ? EXIT_COUNTERS : 0;
	free(res);
	return rc;
}
