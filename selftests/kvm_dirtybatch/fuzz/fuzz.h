/* SPDX-License-Identifier: GPL-2.0 */
/*
 * fuzz.h: the fuzzer of KVM_DIRTYBATCH_CLEAR (and of KVM's
 * KVM_CLEAR_DIRTY_LOG_BATCH), the library of fuzz_test.c and
 * fuzz_race_test.c; what they check is described there.
 *
 *	model.c		the VMs and memslots as the fuzzer knows them
 *	memmap.c	what the kernel can read and write of this process
 *	oracle.c	the expected outcome of a call
 *	generator.c	valid calls laid out in memory
 *	mutate.c	the mutations of a call, gen_call()
 *	check.c		one call issued and checked (run_call()), counters
 *	world.c		the VMs, fds and buffers; memslot changes, guest writes
 *	report.c	the fuzz-summary: lines
 *	race.c		the race test's threads
 *
 * Built with -DDB_EMULATE like the test (the emulation build).
 */
#ifndef KVM_DIRTYBATCH_FUZZ_H
#define KVM_DIRTYBATCH_FUZZ_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <linux/kvm_clear_dirty_log_batch.h>

#include "kselftest.h"
#include "util.h"

#define MIB		(1UL << 20)
#define KIB		(1UL << 10)
#define RSIZE		((uint32_t)sizeof(struct kvm_dirtybatch_range))
#define MAX_RANGES	KVM_DIRTYBATCH_MAX_RANGES
/* the bitmap limit of a call in earlier versions: no limit now */
#define OLD_BM_LIMIT	(16 * MIB)
#define SENT64		0x5a5a5a5a5a5a5a5aULL
#define SENT32		0xa5a5a5a5U

/* buffers */
#define ONES_BYTES	(256 * KIB)		/* all ones, read-only */
#define RAND_BYTES	(2 * MIB)		/* random densities, read-only */
#define RBUF_BYTES	(1 * MIB + 64 * KIB)	/* per thread ranges buffer */
#define GEN_MAX		4096			/* ranges of a normal call */
#define ZERO_BYTES	(16 * MIB + 4096)	/* never written: zero pages */

/* memslots */
#define BIG_ID		21
#define BIG_PAGES	(1ULL << 20)		/* 128 KiB of bitmap */
#define W_ID		7			/* written by the vCPU in races */
#define CHURN_LO	8
#define CHURN_HI	15			/* AS0 churn ids 8..15 */
#define CHURN_AS1_HI	11			/* AS1 churn ids 8..11 */
#define MAX_MSLOTS	48

/* results: bit per outcome */
enum {
	RS_OK, RS_EFAULT, RS_EINVAL, RS_E2BIG, RS_EBADF, RS_ENXIO, RS_ENOENT, RS_ENOMEM,
	RS_OTHER, RS_NR
};
extern const char *const r_name[RS_NR];
#define B(r)	(1U << (r))

static inline int r_of(int err)
{
	switch (err) {
	case 0: return RS_OK;
	case EFAULT: return RS_EFAULT;
	case EINVAL: return RS_EINVAL;
	case E2BIG: return RS_E2BIG;
	case EBADF: return RS_EBADF;
	case ENXIO: return RS_ENXIO;
	case ENOENT: return RS_ENOENT;
	case ENOMEM: return RS_ENOMEM;
	default: return RS_OTHER;
	}
}

/* input classes (the first mutation decides), for the report */
enum {
	C_VALID, C_FLAGS, C_RESERVED, C_RSIZE, C_EXTRA, C_COUNT, C_HUGE_COUNT,
	C_FD, C_ARG_PTR, C_RANGES_PTR, C_SLOT_AS, C_SLOT_ID, C_FIRST, C_NUM,
	C_BM_PTR, C_BM_HALF, C_BM_HUGE, C_RANDOM, C_CHAOS, C_FLAP, C_UFFD, C_NR
};
extern const char *const c_name[C_NR];

/* how well the content of a memslot's dirty bitmap is known */
enum { EX_EXACT, EX_WEAK, EX_RACY };

struct mslot {
	uint32_t slot;		/* as_id << 16 | id */
	bool present, logged, churn;
	int exact;
	uint64_t npages, gpa;
	unsigned int gen;
	uint64_t *bm;		/* model bitmap, present && logged */
};

struct mvm {
	const char *name;
	struct vm *vm;
	bool ring, manual;
	bool racy;		/* churn slots changed by another thread */
	int n;
	struct mslot s[MAX_MSLOTS];
};

/* vm_fd kinds */
enum { FD_VM, FD_RING, FD_NOTVM, FD_CLOSED, FD_RACY };

struct region {
	uintptr_t start, end;
};

/*
 * What the calls did, as the module must count it.  holds: successful
 * calls with count > 0 (each takes the MMU lock once, plus once per break);
 * words: their bitmap words (at most one break each); breaks: as the
 * module counted them (not predicted); syncs: calls with count > 0 that
 * passed the per-range checks.
 */
struct stats {
	uint64_t calls, ok, failed, pages, ranges, holds, words, breaks, flushes, syncs;
	uint64_t hist[C_NR][RS_NR];
	uint64_t ns[C_NR];		/* time in the ioctl */
	uint64_t violations;
};

/* one call as generated */
struct call {
	struct kvm_dirtybatch_clear c;	/* the struct as generated */
	void *argp;			/* what the ioctl gets */
	int cls;
	int fdkind;
	struct mvm *vm;			/* target model VM (FD_VM / FD_RING) */
	bool touches_flap;
	char what[160];			/* mutations, for the log */
};

/* expected outcome */
struct expect {
	unsigned int allowed;		/* B(RS_*) */
	bool exact;
	int r;				/* RS_* when exact */
	int64_t idx;			/* exact error_index, or -1 */
	bool out_written;		/* pages_cleared/error_index written */
	bool may_apply;
	uint64_t words;			/* bitmap words of the call */
	uint64_t count;
};

struct fctx {
	const char *name;
	struct rng rng;
	bool chaos;
	uint8_t *rbuf;			/* RBUF_BYTES, PROT_NONE page after */
	uint8_t *argpg;			/* one page, PROT_NONE page after */
	uint8_t *ropg;			/* read-only copy of the argument */
	struct kvm_dirtybatch_range *gen;	/* GEN_MAX + 1 */
	struct region reg[4];
	int nreg;
	int flap_state;			/* the flap page readable (1) or not (0) */
	struct stats st;
	uint64_t digest;
	uint64_t last_pages;
	uint32_t last_idx;
	uint64_t wb0[8], wb1[8], wreq[8];	/* W_ID: 512 pages */
	uint64_t ns_gen, ns_ioctl, ns_check, ns_ops;	/* where the time goes */
	uint64_t *tmpbm;		/* BIG_PAGES bits */
	unsigned int logged_violations;
};

/* the world every thread calls on (world.c) */
struct fuzz_world {
	int dbfd;
	int nr_as, nr_memslots;
	struct mvm S, O, N, R;		/* R: dirty ring (may be absent) */
	bool have_ring;
	int devnull, pipefd[2], evfd, closed_fd;
	uint8_t *ro;			/* ONES + RAND, PROT_NONE page after */
	uint8_t *zero;			/* ZERO_BYTES read-only, never touched */
	uint8_t *big24, *big32;		/* MAX_RANGES + 1 valid ranges */
	struct region reg[8];
	int nreg;
	uint8_t *flap;			/* race test: flips READ/NONE */
	volatile int stop;
	pthread_mutex_t log_lock, s_lock;
	uint64_t slot_ops, vm_recreates, fd_closes, flips;
	uint64_t uffd_stalls[8];
	uint64_t uffd_waited;		/* memslot changes that waited for a call */
};
extern struct fuzz_world g;

static inline uint64_t env_u64(const char *name, uint64_t def)
{
	const char *v = getenv(name);

	return v && *v ? strtoull(v, NULL, 0) : def;
}

static inline size_t page_up(size_t len)
{
	return (len + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
}

/* ---------------------------------------------------------- generator */

enum { RP_NORMAL, RP_UNALIGNED, RP_STRADDLE, RP_BAD, RP_GUARD, RP_ZERO,
       RP_BIG24, RP_BIG32, RP_FLAP };
enum { AP_NORMAL, AP_BAD, AP_GUARD, AP_STRADDLE, AP_RO, AP_FLAP };

struct genp {
	struct mvm *vm;
	uint32_t n;		/* ranges in x->gen */
	uint32_t count;		/* count written in the struct */
	uint32_t stride;	/* layout stride */
	uint32_t rsize;		/* range_size written in the struct */
	int rplace;
	uint64_t rbad;
	uint32_t straddle_at;
	int aplace;
	uint64_t abad;
	uint32_t astraddle;	/* bytes of the struct inside the guard */
	int extra_at;		/* -1: none */
	uint32_t extra_off;
	int random_at;		/* -1: none */
	int fd;
	int fdkind;
	uint32_t flags, reserved0;
	uint64_t reserved[4];
};

static inline uint64_t rnd(struct fctx *x, uint64_t n) { return rng_below(&x->rng, n); }
static inline bool one_in(struct fctx *x, uint64_t n) { return !rng_below(&x->rng, n); }

static inline uint8_t *ones(void) { return g.ro; }
static inline uint8_t *rand_area(void) { return g.ro + ONES_BYTES; }
static inline uint8_t *ro_guard(void) { return g.ro + ONES_BYTES + RAND_BYTES; }

/* rbuf's last byte before its PROT_NONE page */
static inline uint8_t *rbuf_end(struct fctx *x) { return x->rbuf + RBUF_BYTES; }

/* ---------------------------------------------------------- mutations */

enum { FDC_S, FDC_O, FDC_N, FDC_R, FDC_KVM, FDC_VCPU, FDC_DB, FDC_NULL,
       FDC_PIPE, FDC_EVENT, FDC_CLOSED, FDC_NEG, FDC_INTMIN, FDC_INTMAX,
       FDC_NR };

/* ----------------------------------------------------------- checking */

#define VIOL(x, cl, fmt, ...) violation(x, cl, __LINE__, fmt, ##__VA_ARGS__)

void violation(struct fctx *x, const struct call *cl, int line,
	       const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* ---------------------------------------------------------- race test */

#define NR_CHAOS	2
#define NR_CVM		2
#define FLAP_RANGES	16

enum { UA_NONE, UA_FD, UA_DELETE, UA_LOGOFF, UA_MOVE, UA_SHRINK, UA_NR };
extern const char *const ua_name[UA_NR];
enum { US_ARG, US_RANGES, US_BITMAP, US_NR };

struct race_ctx {
	struct vm *c[NR_CVM];
	int cfd[NR_CVM];
	struct fctx *model, *chaos[NR_CHAOS], *uffd;
	bool uffd_skipped;
	uint64_t seed;
};
extern struct race_ctx rc;

/* model.c */
struct mslot *ms_find(struct mvm *v, uint32_t slot);
uint64_t gpa_home(uint32_t slot, unsigned int gen);
void ms_set_bits(struct mslot *m);
struct mslot *mvm_add(struct mvm *v, uint32_t slot, uint64_t npages,
		      bool logged, bool churn, bool present);
void mvm_init(struct mvm *v, const char *name, bool manual, bool ring);
void model_apply(struct fctx *x, const struct call *cl, uint64_t *lo, uint64_t *hi);

/* memmap.c */
extern uint8_t flap_shadow[PAGE_SIZE];
bool readable(struct fctx *x, uint64_t addr, uint64_t len);
bool writable(struct fctx *x, uint64_t addr, uint64_t len);
bool touches_flap(uint64_t addr, uint64_t len);
const void *peek(uint64_t addr);
void get_range(const struct kvm_dirtybatch_clear *c, uint32_t i,
	       struct kvm_dirtybatch_range *r);

/* oracle.c */
void oracle(struct fctx *x, const struct call *cl, struct expect *e);

/* generator.c */
uint64_t gen_bitmap(struct fctx *x, uint32_t num);
void gen_valid(struct fctx *x, struct genp *p, struct mvm *v);
void emit(struct fctx *x, struct genp *p, struct call *cl);

/* mutate.c */
void set_fd(struct fctx *x, struct genp *p, int fdc);
void mutate(struct fctx *x, struct genp *p, struct call *cl, int kind);
int pick_mutation(struct fctx *x);
void gen_call(struct fctx *x, struct call *cl);

/* check.c */
void verify_all(struct fctx *x);
void count_stats(struct fctx *x, const struct call *cl, int r,
		 const struct expect *e, uint64_t pages, uint32_t idx);
int run_call(struct fctx *x, struct call *cl);
void check_counters(struct fctx *x, struct kvm_dirtybatch_stats *prev,
		    const struct stats *before, const struct call *cl);

/* world.c */
void slot_op(struct fctx *x, struct mvm *v, struct rng *rng, bool model);
void refill(struct fctx *x, bool locked);
void vcpu_burst(struct fctx *x);
struct fctx *ctx_new(const char *name, uint64_t seed, bool chaos);
void world_up(uint64_t seed);
void world_down(void);

/* report.c */
void stats_add(struct stats *to, const struct stats *s);
void report(const char *test, const struct stats *s, uint64_t seed, double secs);
void report_module(const char *test, int dbfd);

/* race.c */
void *chaos_thread(void *arg);
void *slot_churn_thread(void *arg);
struct vm *make_cvm(struct rng *rng, bool vcpu);
void *vm_churn_thread(void *arg);
void *flap_thread(void *arg);
void flap_setup(void);
void *uffd_thread(void *arg);

#endif
