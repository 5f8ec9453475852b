// SPDX-License-Identifier: GPL-2.0
/*
 * order_test: the order of events inside one KVM_DIRTYBATCH_CLEAR call,
 * seen through kprobe events in tracefs.
 *
 * A missing TLB flush shows in the counters; a flush issued too early
 * (before the last write-protect) or too late (after kvm->slots_lock is
 * dropped, or after the out fields are written) does not.  This test
 * records, in a tracefs instance of its own, for the one thread that
 * makes the calls (pinned to one CPU, so that the CPU's ring buffer holds
 * its events in program order):
 *
 *   wp      kvm_arch_mmu_enable_log_dirty_pt_masked(kvm, memslot, offset, mask)
 *   flush   kvm_flush_remote_tlbs(kvm), which the module calls on 6.1 and
 *           6.12 (KVM's memslot/range variants too when present, for
 *           KVM's own KVM_CLEAR_DIRTY_LOG)
 *   lock    mutex_lock*(lock), unlock: mutex_unlock(lock)
 *   ioret   the return of __x64_sys_ioctl (a kretprobe)
 *
 * and, with every event, the pages_cleared field of the call's argument as
 * it is in user memory at that moment (a "+u" fetch of its address).
 * Which mutex is kvm->slots_lock is learnt from KVM itself: the one mutex
 * held across the write-protects of a KVM_CLEAR_DIRTY_LOG on the same VM
 * (kvm_vm_ioctl_clear_dirty_log() takes slots_lock and nothing else).
 *
 * For calls clearing pages in four memslots: every write-protect comes
 * after the one slots_lock acquisition and before the flush; there is
 * exactly one flush (also by KVM's remote_tlb_flush_requests statistic and
 * the module's tlb_flushes counter); it comes before slots_lock is released
 * and before the ioctl returns; at the flush pages_cleared does not hold
 * the call's result yet, at the return it does.  A call that clears
 * nothing write-protects nothing and issues no flush.  (put_user() goes
 * through __put_user_8/__put_user_4, which cannot be kprobed, hence the
 * user-memory fetch; error_index holds the same value before and after,
 * so only pages_cleared shows when the out fields are written.)
 *
 * The probes, their filters and the instance are removed on every exit
 * path: a guardian process in a session of its own (a harness timeout
 * kills the test's process group) removes them once the test process is
 * gone, however it ended; teardown waits for it and checks that nothing
 * is left.  Skips (exit 4) without tracefs or kprobe events.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "tap.h"
#include "util.h"

#define NSLOTS		4
#define GROUP		"dborder"
#define MAX_PROBES	24
#define MAX_EVENTS	4096
#define SENTINEL	0x5eed5eed5eedULL

static const uint32_t slot_ids[NSLOTS] = { 1, 2, 3, 4 };
static const uint64_t slot_pages[NSLOTS] = { 320, 200, 512, 130 };
#define SLOT_GPA(i)	((uint64_t)((i) + 1) << 22)

enum ev_kind { EV_WP, EV_FLUSH, EV_FLUSHV, EV_LOCK, EV_UNLOCK, EV_IORET };

/*
 * The probes.  Each also fetches pages_cleared from user memory (pc=).
 * The mutex_lock variants are probed where they exist: a lockdep kernel
 * has no mutex_lock at all (it is a macro for mutex_lock_nested), and
 * slots_lock may be taken through any of them.  At least one must exist.
 */
static const struct probe_spec {
	const char *name;	/* event name prefix */
	char type;		/* 'p' or 'r' */
	const char *sym;
	const char *args;
	enum ev_kind kind;
	bool optional;		/* only if the symbol exists */
} probe_specs[] = {
	{ "wp", 'p', "kvm_arch_mmu_enable_log_dirty_pt_masked",
	  "kvm=%di:x64 slot=%si:x64 off=%dx:u64 mask=%cx:x64", EV_WP, false },
	{ "flush", 'p', "kvm_flush_remote_tlbs", "kvm=%di:x64", EV_FLUSH, false },
	{ "flms", 'p', "kvm_flush_remote_tlbs_memslot", "kvm=%di:x64", EV_FLUSHV, true },
	{ "flrange", 'p', "kvm_flush_remote_tlbs_range", "kvm=%di:x64", EV_FLUSHV, true },
	{ "flarch", 'p', "kvm_arch_flush_remote_tlbs_memslot", "kvm=%di:x64", EV_FLUSHV, true },
	{ "lock", 'p', "mutex_lock", "lock=%di:x64", EV_LOCK, true },
	{ "lockn", 'p', "mutex_lock_nested", "lock=%di:x64", EV_LOCK, true },
	{ "lockk", 'p', "mutex_lock_killable", "lock=%di:x64", EV_LOCK, true },
	{ "locki", 'p', "mutex_lock_interruptible", "lock=%di:x64", EV_LOCK, true },
	{ "unlock", 'p', "mutex_unlock", "lock=%di:x64", EV_UNLOCK, false },
	{ "ioret", 'r', "__x64_sys_ioctl", "ret=$retval:s64", EV_IORET, false },
};

struct ev {
	enum ev_kind kind;
	const char *sym;
	uint64_t kvm, slot, off, mask, lock, pc;
	int64_t ret;
};

struct tracer {
	char fs[64];		/* tracefs mount point */
	char inst[160];		/* our instance */
	int id;			/* pid: suffix of the event and instance names */
	int cpu;
	int nprobes;
	char name[MAX_PROBES][40];
	enum ev_kind kind[MAX_PROBES];
	const char *sym[MAX_PROBES];
	int marker_fd;
	int guard_fd;		/* write end of the guardian's pipe */
	pid_t guard;
	struct ev ev[MAX_EVENTS];
	int nev;
};

/* ---- tracefs files ---- */

static int write_str(const char *path, const char *s, bool append)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC | (append ? O_APPEND : O_TRUNC));
	ssize_t n;
	int e;

	if (fd < 0)
		return -errno;
	n = write(fd, s, strlen(s));
	e = errno;
	close(fd);
	if (n < 0)
		return -e;
	return n == (ssize_t)strlen(s) ? 0 : -EIO;
}

/* Whole file into a NUL-terminated malloc'ed buffer, or NULL. */
static char *read_all(const char *path)
{
	size_t len = 0, cap = 65536;
	char *buf = malloc(cap);
	ssize_t n;
	int fd;

	if (!buf)
		return NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		free(buf);
		return NULL;
	}
	for (;;) {
		if (cap - len < 4096) {
			char *nb = realloc(buf, cap * 2);

			if (!nb)
				break;
			buf = nb;
			cap *= 2;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += n;
	}
	close(fd);
	buf[len] = 0;
	return buf;
}

static bool file_exists(const char *path)
{
	return access(path, F_OK) == 0;
}

/*
 * Find (or mount) tracefs with kprobe events into fs.  Returns NULL, or
 * why tracing cannot be used.
 */
static const char *tracefs_find(char *fs, size_t len)
{
	static const char *const dirs[] = { "/sys/kernel/tracing", "/sys/kernel/debug/tracing" };
	char p[128];
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(dirs); i++) {
		snprintf(p, sizeof(p), "%s/trace", dirs[i]);
		if (!file_exists(p) && i == 0)
			mount("nodev", dirs[i], "tracefs", 0, NULL);
		if (!file_exists(p))
			continue;
		snprintf(fs, len, "%s", dirs[i]);
		snprintf(p, sizeof(p), "%s/kprobe_events", dirs[i]);
		if (!file_exists(p))
			return "no kprobe_events in tracefs (CONFIG_KPROBE_EVENTS=n)";
		if (access(p, W_OK))
			return "kprobe_events not writable (needs root)";
		snprintf(p, sizeof(p), "%s/instances", dirs[i]);
		if (!file_exists(p))
			return "no tracefs instances";
		return NULL;
	}
	return "tracefs not available";
}

static bool ksym_exists(const char *name)
{
	char line[512], sym[256], type;
	unsigned long long addr;
	bool found = false;
	FILE *f = fopen("/proc/kallsyms", "re");

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		if (sscanf(line, "%llx %c %255s", &addr, &type, sym) == 3 &&
		    (type == 't' || type == 'T') && !strcmp(sym, name))
			found = true;
	fclose(f);
	return found;
}

/*
 * If line of kprobe_events defines an event of GROUP, its "GROUP/name"
 * into ev and the test process id its name ends with; else 0.
 */
static int probe_line_id(const char *line, char *ev, size_t len)
{
	const char *p = strstr(line, ":" GROUP "/"), *end, *us;
	size_t n;

	if (!p)
		return 0;
	p++;
	end = strchr(p, ' ');
	n = end ? (size_t)(end - p) : strlen(p);
	if (n >= len)
		return 0;
	memcpy(ev, p, n);
	ev[n] = 0;
	us = strrchr(ev, '_');
	return us ? atoi(us + 1) : 0;
}

/*
 * Remove the instance and the probes of test process id (all test
 * processes gone with id < 0): the instance first (that disables its
 * events), then every GROUP/<name>_<id> line of kprobe_events.  Returns
 * the number of things that could not be removed.
 */
static int trace_cleanup(const char *fs, int id)
{
	char path[192], ev[128], cmd[160], *buf, *line, *save = NULL;
	int left = 0, n;

	if (id > 0) {
		snprintf(path, sizeof(path), "%s/instances/" GROUP "_%d", fs, id);
		if (rmdir(path) && errno != ENOENT)
			left++;
	}
	snprintf(path, sizeof(path), "%s/kprobe_events", fs);
	buf = read_all(path);
	if (!buf)
		return left + 1;
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		n = probe_line_id(line, ev, sizeof(ev));
		if (n <= 0)
			continue;
		if (id < 0) {
			/* a stale probe: its process is gone */
			snprintf(cmd, sizeof(cmd), "/proc/%d", n);
			if (file_exists(cmd))
				continue;
			snprintf(cmd, sizeof(cmd), "%s/instances/" GROUP "_%d", fs, n);
			rmdir(cmd);
		} else if (n != id) {
			continue;
		}
		snprintf(cmd, sizeof(cmd), "-:%s\n", ev);
		if (write_str(path, cmd, true))
			left++;
	}
	free(buf);
	return left;
}

/* Does anything of test process id remain in tracefs? */
static bool trace_leftovers(const char *fs, int id)
{
	char path[192], ev[128], *buf, *line, *save = NULL;
	bool left = false;

	snprintf(path, sizeof(path), "%s/instances/" GROUP "_%d", fs, id);
	if (file_exists(path))
		return true;
	snprintf(path, sizeof(path), "%s/kprobe_events", fs);
	buf = read_all(path);
	if (!buf)
		return true;
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		if (probe_line_id(line, ev, sizeof(ev)) == id)
			left = true;
	free(buf);
	return left;
}

/*
 * The guardian: a process in a session of its own that waits until every
 * write end of its pipe is closed (the test process ended, however), then
 * removes the test's instance and probes.
 */
static pid_t start_guardian(const char *fs, int id, int *wfd)
{
	int p[2];
	pid_t pid;
	char c;
	int n;

	if (pipe(p))
		return -1;
	pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid == 0) {
		setsid();
		signal(SIGINT, SIG_IGN);
		signal(SIGTERM, SIG_IGN);
		signal(SIGHUP, SIG_IGN);
		signal(SIGPIPE, SIG_IGN);
		signal(SIGALRM, SIG_IGN);
		alarm(0);
		close(p[1]);
		if (p[0] != 3) {
			dup2(p[0], 3);
			close(p[0]);
		}
		/*
		 * No VM, vCPU or device fd kept alive by this process, and
		 * no output pipe held open after the test has ended.
		 */
		n = open("/dev/null", O_RDWR);
		if (n >= 0) {
			dup2(n, 0);
			dup2(n, 1);
			dup2(n, 2);
		}
		syscall(SYS_close_range, 4U, ~0U, 0U);
		for (;;) {
			ssize_t r = read(3, &c, 1);

			if (!r || (r < 0 && errno != EINTR))
				break;
		}
		/*
		 * The test's other files (an open trace, trace_marker) may be
		 * released after the pipe: until then the instance is busy.
		 */
		for (n = 0; n < 100 && trace_cleanup(fs, id); n++)
			usleep(100 * 1000);
		_exit(n < 100 ? 0 : 1);
	}
	close(p[0]);
	*wfd = p[1];
	return pid;
}

/* ---- probes ---- */

/*
 * Recording on or off.  Off outside the traced sections: reading the
 * trace takes mutexes in this thread, which would record events while the
 * buffer is read, without end.
 */
static void trace_on(struct tracer *t, bool on)
{
	char path[200];

	snprintf(path, sizeof(path), "%s/tracing_on", t->inst);
	write_str(path, on ? "1\n" : "0\n", false);
}

static int trace_setup(struct tracer *t, uintptr_t pc_addr, char *err, size_t errlen)
{
	char path[256], def[512], filt[64], fetch[64];
	unsigned int i;
	int r, nlock = 0;

	t->id = getpid();
	snprintf(t->inst, sizeof(t->inst), "%s/instances/" GROUP "_%d", t->fs, t->id);
	if (mkdir(t->inst, 0700)) {
		snprintf(err, errlen, "mkdir %s: %s", t->inst, strerror(errno));
		return -1;
	}
	trace_on(t, false);
	snprintf(fetch, sizeof(fetch), " pc=+u0(\\0x%lx):u64", (unsigned long)pc_addr);
	snprintf(path, sizeof(path), "%s/kprobe_events", t->fs);
	for (i = 0; i < ARRAY_SIZE(probe_specs); i++) {
		const struct probe_spec *ps = &probe_specs[i];

		if (ps->optional && !ksym_exists(ps->sym))
			continue;
		snprintf(t->name[t->nprobes], sizeof(t->name[0]), "%s_%d", ps->name, t->id);
		snprintf(def, sizeof(def), "%c%s:" GROUP "/%s %s %s%s\n", ps->type,
			 ps->type == 'r' ? "64" : "", t->name[t->nprobes], ps->sym,
			 ps->args, fetch);
		r = write_str(path, def, true);
		if (r) {
			char ep[128], *log;

			snprintf(ep, sizeof(ep), "%s/error_log", t->fs);
			log = read_all(ep);
			snprintf(err, errlen, "cannot add probe '%.*s': %s; error_log: %.300s",
				 (int)strlen(def) - 1, def, strerror(-r),
				 log ? log : "(none)");
			free(log);
			return -1;
		}
		t->kind[t->nprobes] = ps->kind;
		t->sym[t->nprobes] = ps->sym;
		t->nprobes++;
		nlock += ps->kind == EV_LOCK;
	}
	if (!nlock) {
		snprintf(err, errlen, "no mutex_lock variant in /proc/kallsyms to probe");
		return -1;
	}
	/* our thread only (a TID: common_pid is the task's pid) */
	snprintf(filt, sizeof(filt), "common_pid == %d\n", (int)syscall(SYS_gettid));
	for (i = 0; i < (unsigned int)t->nprobes; i++) {
		snprintf(path, sizeof(path), "%s/events/" GROUP "/%s/filter", t->inst, t->name[i]);
		r = write_str(path, filt, false);
		if (!r) {
			snprintf(path, sizeof(path), "%s/events/" GROUP "/%s/enable",
				 t->inst, t->name[i]);
			r = write_str(path, "1\n", false);
		}
		if (r) {
			snprintf(err, errlen, "%s: %s", path, strerror(-r));
			return -1;
		}
	}
	/* and the cheaper early check of the instance's pid list */
	snprintf(path, sizeof(path), "%s/set_event_pid", t->inst);
	snprintf(filt, sizeof(filt), "%d\n", (int)syscall(SYS_gettid));
	r = write_str(path, filt, false);
	if (r) {
		snprintf(err, errlen, "%s: %s", path, strerror(-r));
		return -1;
	}
	snprintf(path, sizeof(path), "%s/trace_marker", t->inst);
	t->marker_fd = open(path, O_WRONLY | O_CLOEXEC);
	if (t->marker_fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

static void trace_mark(struct tracer *t, const char *s)
{
	ssize_t n = write(t->marker_fd, s, strlen(s));

	(void)n;
}

/* Empty the buffer and mark the start of the traced section. */
static void trace_begin(struct tracer *t)
{
	char path[200];

	snprintf(path, sizeof(path), "%s/trace", t->inst);
	write_str(path, "", false);
	trace_on(t, true);
	trace_mark(t, "BEGIN");
}

static uint64_t field(const char *line, const char *key)
{
	const char *p = strstr(line, key);

	return p ? strtoull(p + strlen(key), NULL, 0) : 0;
}

/*
 * Mark the end and read this CPU's buffer: the events between the
 * markers into t->ev.  Returns NULL or what went wrong.
 */
static const char *trace_end(struct tracer *t)
{
	static char why[128];
	char path[200], *buf, *line, *save = NULL;
	bool in = false, ended = false;
	int i;

	trace_mark(t, "END");
	trace_on(t, false);
	t->nev = 0;
	snprintf(path, sizeof(path), "%s/per_cpu/cpu%d/trace", t->inst, t->cpu);
	buf = read_all(path);
	if (!buf)
		return "cannot read the trace";
	for (line = strtok_r(buf, "\n", &save); line && !ended;
	     line = strtok_r(NULL, "\n", &save)) {
		char *p = strstr(line, "] "), *name, *colon;
		struct ev *e;

		/* "<comm>-<pid> [cpu] <flags> <time>: <event>: <fields>" */
		if (p)
			p = strstr(p, ": ");
		if (line[0] == '#' || !p)
			continue;
		name = p + 2;
		colon = strchr(name, ':');
		if (!colon)
			continue;
		*colon = 0;
		if (!strcmp(name, "tracing_mark_write")) {
			char *m = colon + 1;

			while (*m == ' ')
				m++;
			if (!strncmp(m, "BEGIN", 5)) {
				in = true;
				t->nev = 0;
			} else if (in && !strncmp(m, "END", 3)) {
				ended = true;
			}
			continue;
		}
		if (!in)
			continue;
		for (i = 0; i < t->nprobes && strcmp(name, t->name[i]); i++)
			;
		if (i == t->nprobes)
			continue;
		if (t->nev == MAX_EVENTS) {
			free(buf);
			return "too many events";
		}
		*colon = ':';
		e = &t->ev[t->nev++];
		memset(e, 0, sizeof(*e));
		e->kind = t->kind[i];
		e->sym = t->sym[i];
		e->kvm = field(colon, " kvm=");
		e->slot = field(colon, " slot=");
		e->off = field(colon, " off=");
		e->mask = field(colon, " mask=");
		e->lock = field(colon, " lock=");
		e->pc = field(colon, " pc=");
		e->ret = (int64_t)field(colon, " ret=");
	}
	free(buf);
	if (!in || !ended) {
		snprintf(why, sizeof(why), "markers not found in the trace (BEGIN %d, END %d)",
			 in, ended);
		return why;
	}
	return NULL;
}

/* Probes that missed hits (kprobe_profile), which would make a trace incomplete. */
static int probes_missed(struct tracer *t, char *msg, size_t len)
{
	char path[128], *buf, *line, *save = NULL;
	int missed = 0, i;

	snprintf(path, sizeof(path), "%s/kprobe_profile", t->fs);
	buf = read_all(path);
	if (!buf)
		return 0;
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char name[128];
		unsigned long long hits, miss;

		if (sscanf(line, " %127s %llu %llu", name, &hits, &miss) != 3 || !miss)
			continue;
		for (i = 0; i < t->nprobes; i++) {
			const char *n = strchr(name, '/') ? strchr(name, '/') + 1 : name;

			/* a kretprobe misses returns of other tasks' ioctls too */
			if (!strcmp(n, t->name[i]) && t->kind[i] != EV_IORET) {
				snprintf(msg, len, "probe %.60s missed %llu hits", n, miss);
				missed++;
			}
		}
	}
	free(buf);
	return missed;
}

/* The sequence in short, for failure messages: L U W F R (lock, unlock, ...). */
static const char *ev_summary(const struct tracer *t, uint64_t slots_lock)
{
	static char s[1024];
	size_t n = 0;
	int i;

	for (i = 0; i < t->nev && n < sizeof(s) - 24; i++) {
		const struct ev *e = &t->ev[i];
		const char *c = "?";

		switch (e->kind) {
		case EV_WP:
			c = "W";
			break;
		case EV_FLUSH:
			c = "F";
			break;
		case EV_FLUSHV:
			c = "f";
			break;
		case EV_LOCK:
			c = e->lock == slots_lock ? "L(slots)" : "l";
			break;
		case EV_UNLOCK:
			c = e->lock == slots_lock ? "U(slots)" : "u";
			break;
		case EV_IORET:
			c = "R";
			break;
		}
		n += snprintf(s + n, sizeof(s) - n, "%s%s", i ? " " : "", c);
	}
	if (i < t->nev)
		snprintf(s + n, sizeof(s) - n, " ...");
	return s;
}

/* ---- the fixture ---- */

FIXTURE(order) {
	int dbfd;
	struct vm *vm;
	struct tracer *t;
	struct kvm_dirtybatch_clear *arg;	/* in a locked page, address probed */
	uint64_t *bm[NSLOTS];
	uint64_t *zero_bm[NSLOTS];
	uint64_t gpas[1024];
	uint32_t ngpas;
	uint64_t slots_lock;
	bool traced;
};

/* One vCPU pass over pages of every memslot: all of them dirty again. */
static void dirty_pages(FIXTURE_DATA(order) *self)
{
	guest_set_list(self->vm, self->gpas, self->ngpas, 1);
	vcpu_reset(self->vm);
	vcpu_run_to_done(self->vm);
}

/*
 * Whether KVM's own KVM_CLEAR_DIRTY_LOG holds exactly one mutex across its
 * write-protects (kvm->slots_lock); sets self->slots_lock.  With strict,
 * also checks KVM's ordering, as the module's is checked below.
 */
static void kvm_reference(struct __test_metadata *_metadata,
			  FIXTURE_DATA(order) *self, bool strict)
{
	struct tracer *t = self->t;
	uint64_t held[16], A = 0, fl0 = 0, fl1 = 0;
	int nheld = 0, i, j, first_wp = -1, last_wp = -1, nlockA = 0, nunlockA = 0;
	int lockA = -1, unlockA = -1, flush = -1;
	const char *why;
	char msg[128];

	dirty_pages(self);
	ASSERT_EQ(0, vm_read_stat(self->vm, false, "remote_tlb_flush_requests", &fl0));
	trace_begin(t);
	vm_clear_dirty_log(self->vm, slot_ids[0], 0, slot_pages[0], self->bm[0]);
	why = trace_end(t);
	ASSERT_FALSE(why) TH_LOG("%s", why);
	ASSERT_EQ(0, vm_read_stat(self->vm, false, "remote_tlb_flush_requests", &fl1));
	ASSERT_EQ(0, probes_missed(t, msg, sizeof(msg))) TH_LOG("%s", msg);

	for (i = 0; i < t->nev; i++) {
		struct ev *e = &t->ev[i];

		if (e->kind == EV_LOCK && nheld < (int)ARRAY_SIZE(held)) {
			held[nheld++] = e->lock;
		} else if (e->kind == EV_UNLOCK) {
			for (j = nheld - 1; j >= 0 && held[j] != e->lock; j--)
				;
			if (j >= 0)
				held[j] = held[--nheld];
		} else if (e->kind == EV_WP) {
			if (first_wp < 0) {
				first_wp = i;
				ASSERT_EQ(1, nheld)
					TH_LOG("KVM_CLEAR_DIRTY_LOG: %d mutexes held at its first write-protect, expected slots_lock alone: %s",
					       nheld, ev_summary(t, 0));
				A = held[0];
			}
			ASSERT_TRUE(nheld == 1 && held[0] == A)
				TH_LOG("KVM_CLEAR_DIRTY_LOG: slots_lock not held at write-protect %d: %s",
				       i, ev_summary(t, A));
			last_wp = i;
		}
	}
	ASSERT_LE(0, first_wp) TH_LOG("KVM_CLEAR_DIRTY_LOG write-protected nothing: %s",
				      ev_summary(t, 0));
	self->slots_lock = A;
	if (!strict)
		return;
	for (i = 0; i < t->nev; i++) {
		struct ev *e = &t->ev[i];

		if (e->kind == EV_LOCK && e->lock == A && !nlockA++)
			lockA = i;
		if (e->kind == EV_UNLOCK && e->lock == A && !nunlockA++)
			unlockA = i;
		if ((e->kind == EV_FLUSH || e->kind == EV_FLUSHV) && flush < 0)
			flush = i;
	}
	ksft_print_msg("KVM_CLEAR_DIRTY_LOG: %s (slots_lock %#llx, kvm %#llx)\n",
		       ev_summary(t, A), (unsigned long long)A,
		       (unsigned long long)t->ev[first_wp].kvm);
	EXPECT_EQ(1, nlockA);
	EXPECT_EQ(1, nunlockA);
	EXPECT_LT(lockA, first_wp);
	EXPECT_LT(last_wp, unlockA);
	/*
	 * KVM flushes through its memslot variant, which ends in
	 * kvm_flush_remote_tlbs() (6.12 inlines the variant): either event.
	 */
	EXPECT_LE(0, flush) TH_LOG("no flush seen for KVM's own clear: %s", ev_summary(t, A));
	EXPECT_LT(last_wp, flush);
	EXPECT_LT(flush, unlockA);
	EXPECT_LE(1, fl1 - fl0);
}

FIXTURE_SETUP(order)
{
	static struct tracer tracer;
	const char *why;
	char err[512];
	uint32_t i;
	uint64_t p;
	void *page;
	cpu_set_t set;

	self->t = &tracer;
	memset(self->t, 0, sizeof(*self->t));
	self->t->guard = -1;
	self->t->guard_fd = -1;
	self->t->marker_fd = -1;
	why = tracefs_find(self->t->fs, sizeof(self->t->fs));
	if (why)
		SKIP(return, "%s", why);

	self->dbfd = db_open();
	ASSERT_LE(0, self->dbfd) TH_LOG("open " DB_DEVICE_PATH ": %d", self->dbfd);
	self->vm = vm_create(true);
	for (i = 0; i < NSLOTS; i++) {
		vm_add_slot(self->vm, slot_ids[i], SLOT_GPA(i), slot_pages[i],
			    KVM_MEM_LOG_DIRTY_PAGES);
		self->bm[i] = malloc(bitmap_bytes(slot_pages[i]));
		self->zero_bm[i] = calloc(1, bitmap_bytes(slot_pages[i]));
		ASSERT_TRUE(self->bm[i] && self->zero_bm[i]);
		memset(self->bm[i], 0xff, bitmap_bytes(slot_pages[i]));
		/* every 5th page: several 64-page words per memslot */
		for (p = i; p < slot_pages[i]; p += 5)
			self->gpas[self->ngpas++] = SLOT_GPA(i) + p * PAGE_SIZE;
	}
	vm_create_vcpu(self->vm);

	page = mmap(NULL, PAGE_SIZE, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	ASSERT_NE(MAP_FAILED, page);
	mlock(page, PAGE_SIZE);
	self->arg = page;

	/* one CPU: its ring buffer then holds this thread's events in order */
	self->t->cpu = sched_getcpu();
	ASSERT_LE(0, self->t->cpu);
	CPU_ZERO(&set);
	CPU_SET(self->t->cpu, &set);
	ASSERT_EQ(0, sched_setaffinity(0, sizeof(set), &set));

	trace_cleanup(self->t->fs, -1);
	self->t->guard = start_guardian(self->t->fs, getpid(), &self->t->guard_fd);
	ASSERT_LT(0, self->t->guard) TH_LOG("fork: %s", strerror(errno));
	self->traced = true;
	ASSERT_EQ(0, trace_setup(self->t,
				 (uintptr_t)&self->arg->pages_cleared, err, sizeof(err)))
		TH_LOG("%s", err);
	kvm_reference(_metadata, self, false);
}

FIXTURE_TEARDOWN(order)
{
	int status = -1;

	if (!self->traced)
		return;
	/* the guardian removes everything once the last write end is closed */
	if (self->t->marker_fd >= 0)
		close(self->t->marker_fd);
	close(self->t->guard_fd);
	EXPECT_EQ(self->t->guard, waitpid(self->t->guard, &status, 0));
	EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
		TH_LOG("the guardian could not remove the probes (status %#x)", status);
	EXPECT_FALSE(trace_leftovers(self->t->fs, getpid()))
		TH_LOG("kprobe events or the tracefs instance of pid %d are left", getpid());
}

struct counts {
	uint64_t kvm_flush_req;
	struct kvm_dirtybatch_stats mod;
};

static void read_counts(struct __test_metadata *_metadata,
			FIXTURE_DATA(order) *self, struct counts *c)
{
	ASSERT_EQ(0, vm_read_stat(self->vm, false, "remote_tlb_flush_requests",
				  &c->kvm_flush_req));
	ASSERT_EQ(0, db_get_stats(self->dbfd, &c->mod));
}

/* Build the batch: ranges over all memslots, not in memslot order. */
static uint32_t build_ranges(FIXTURE_DATA(order) *self, struct kvm_dirtybatch_range *r,
			     bool zero)
{
	static const int order[] = { 2, 0, 3, 1 };
	uint32_t n = 0, k;

	for (k = 0; k < NSLOTS; k++) {
		int i = order[k];
		uint64_t *bm = zero ? self->zero_bm[i] : self->bm[i];

		if (slot_pages[i] > 256) {
			/* two ranges, the second at a 64-page boundary */
			r[n++] = (struct kvm_dirtybatch_range){ .slot = slot_ids[i],
				.first_page = 0, .num_pages = 256,
				.dirty_bitmap = (uintptr_t)bm };
			r[n++] = (struct kvm_dirtybatch_range){ .slot = slot_ids[i],
				.first_page = 256, .num_pages = slot_pages[i] - 256,
				.dirty_bitmap = (uintptr_t)(bm + 4) };
		} else {
			r[n++] = (struct kvm_dirtybatch_range){ .slot = slot_ids[i],
				.first_page = 0, .num_pages = slot_pages[i],
				.dirty_bitmap = (uintptr_t)bm };
		}
	}
	return n;
}

/*
 * One traced KVM_DIRTYBATCH_CLEAR of the batch; returns pages_cleared
 * and leaves the events in self->t.  expect: pages it must clear.
 */
static void traced_clear(struct __test_metadata *_metadata, FIXTURE_DATA(order) *self,
			 bool zero, uint32_t count, uint64_t *expect,
			 struct counts *before, struct counts *after)
{
	struct kvm_dirtybatch_range r[2 * NSLOTS];
	struct snap s;
	uint32_t n = build_ranges(self, r, zero);
	const char *why;
	char msg[128];
	int ret;

	if (count < n)
		n = count;
	snap_take(self->vm, &s);
	*expect = snap_apply(&s, r, n, sizeof(r[0]));
	snap_free(&s);
	memset(self->arg, 0, sizeof(*self->arg));
	self->arg->vm_fd = self->vm->fd;
	self->arg->count = n;
	self->arg->range_size = sizeof(r[0]);
	self->arg->ranges = (uintptr_t)r;
	self->arg->pages_cleared = SENTINEL;
	self->arg->error_index = 0xdeadbeef;

	read_counts(_metadata, self, before);
	trace_begin(self->t);
	ret = db_clear(self->dbfd, self->arg);
	why = trace_end(self->t);
	read_counts(_metadata, self, after);
	ASSERT_EQ(0, ret) TH_LOG("KVM_DIRTYBATCH_CLEAR: %s", strerror(-ret));
	ASSERT_FALSE(why) TH_LOG("%s", why);
	ASSERT_EQ(0, probes_missed(self->t, msg, sizeof(msg))) TH_LOG("%s", msg);
	ASSERT_EQ(*expect, self->arg->pages_cleared);
	ASSERT_EQ(n, self->arg->error_index);
}

/* The ordering contract for a call that cleared pages in several memslots. */
static void check_clearing_call(struct __test_metadata *_metadata,
				FIXTURE_DATA(order) *self, uint64_t cleared,
				const struct counts *b, const struct counts *a)
{
	struct tracer *t = self->t;
	uint64_t A = self->slots_lock, slots[64], kvm = 0, wp_pages = 0;
	int i, j, nslots = 0, nwp = 0, first_wp = -1, last_wp = -1;
	int nlock = 0, nunlock = 0, lockA = -1, unlockA = -1, nret = 0, ret = -1;
	int nflush = 0, flush = -1, prev_flush = -2;
	bool run_has_F = false;
	const char *seq = ev_summary(t, A);

	ksft_print_msg("KVM_DIRTYBATCH_CLEAR (%llu pages): %s\n",
		       (unsigned long long)cleared, seq);
	for (i = 0; i < t->nev; i++) {
		struct ev *e = &t->ev[i];

		switch (e->kind) {
		case EV_WP:
			if (first_wp < 0)
				first_wp = i;
			last_wp = i;
			nwp++;
			wp_pages += __builtin_popcountll(e->mask);
			if (!kvm)
				kvm = e->kvm;
			EXPECT_EQ(kvm, e->kvm);
			for (j = 0; j < nslots && slots[j] != e->slot; j++)
				;
			if (j == nslots && nslots < (int)ARRAY_SIZE(slots))
				slots[nslots++] = e->slot;
			break;
		case EV_FLUSH:
		case EV_FLUSHV:
			/*
			 * A memslot/range variant calling kvm_flush_remote_tlbs()
			 * is one flush: consecutive flush events are one, unless
			 * the run already had a kvm_flush_remote_tlbs().
			 */
			if (prev_flush != i - 1 || (e->kind == EV_FLUSH && run_has_F)) {
				nflush++;
				run_has_F = false;
				if (flush < 0)
					flush = i;
			}
			run_has_F |= e->kind == EV_FLUSH;
			prev_flush = i;
			EXPECT_EQ(kvm, e->kvm) TH_LOG("flush of another VM");
			EXPECT_NE(cleared, e->pc)
				TH_LOG("pages_cleared (%llu) already in user memory at the flush: %s",
				       (unsigned long long)cleared, seq);
			break;
		case EV_LOCK:
			if (e->lock == A && !nlock++)
				lockA = i;
			break;
		case EV_UNLOCK:
			if (e->lock == A && !nunlock++)
				unlockA = i;
			break;
		case EV_IORET:
			nret++;
			ret = i;
			EXPECT_EQ(cleared, e->pc)
				TH_LOG("pages_cleared not written when the ioctl returns");
			break;
		}
	}
	ASSERT_LT(0, cleared);
	if (flush >= 0 && ret >= 0)
		ksft_print_msg("pages_cleared in user memory: %#llx before the call, %llu at the flush, %llu at the return\n",
			       SENTINEL, (unsigned long long)t->ev[flush].pc,
			       (unsigned long long)t->ev[ret].pc);
	/* what was write-protected */
	EXPECT_LT(0, nwp) TH_LOG("no write-protect seen: %s", seq);
	EXPECT_EQ(cleared, wp_pages) TH_LOG("write-protect masks cover %llu pages",
					    (unsigned long long)wp_pages);
	EXPECT_EQ(NSLOTS, nslots) TH_LOG("write-protects in %d memslots", nslots);
	/* one slots_lock hold around all of it */
	EXPECT_EQ(1, nlock) TH_LOG("slots_lock taken %d times: %s", nlock, seq);
	EXPECT_EQ(1, nunlock) TH_LOG("slots_lock released %d times: %s", nunlock, seq);
	EXPECT_EQ(1, nret) TH_LOG("%d ioctl returns", nret);
	EXPECT_LT(lockA, first_wp) TH_LOG("write-protect before slots_lock is taken: %s", seq);
	/* exactly one flush, after the last write-protect */
	EXPECT_EQ(1, nflush) TH_LOG("%d TLB flushes in one call: %s", nflush, seq);
	ASSERT_LE(0, flush) TH_LOG("no TLB flush: %s", seq);
	EXPECT_LT(last_wp, flush) TH_LOG("TLB flush before the last write-protect: %s", seq);
	/* ... before slots_lock is dropped and the ioctl returns */
	EXPECT_LT(flush, unlockA) TH_LOG("TLB flush after slots_lock is released: %s", seq);
	EXPECT_LT(flush, ret) TH_LOG("TLB flush after the ioctl returned: %s", seq);
	EXPECT_LT(unlockA, ret);
	/* the counters agree: KVM's statistic and the module's */
	EXPECT_EQ(1, a->kvm_flush_req - b->kvm_flush_req)
		TH_LOG("KVM counted %llu remote TLB flush requests",
		       (unsigned long long)(a->kvm_flush_req - b->kvm_flush_req));
	EXPECT_EQ(1, a->mod.tlb_flushes - b->mod.tlb_flushes);
	EXPECT_EQ(cleared, a->mod.pages_cleared - b->mod.pages_cleared);
}

/* KVM's own KVM_CLEAR_DIRTY_LOG, seen by the same probes: the method works. */
TEST_F_TIMEOUT(order, kvm_reference, 120)
{
	kvm_reference(_metadata, self, true);
}

/* Pages cleared in four memslots, three calls: the order, each time. */
TEST_F_TIMEOUT(order, batch_several_memslots, 120)
{
	struct counts b, a;
	uint64_t expect;
	int round;

	for (round = 0; round < 3; round++) {
		dirty_pages(self);
		traced_clear(_metadata, self, false, 2 * NSLOTS, &expect, &b, &a);
		ASSERT_LT(self->ngpas / 2, expect);
		check_clearing_call(_metadata, self, expect, &b, &a);
		if (_metadata->exit_code)
			return;
	}
}

/* A call that clears nothing write-protects nothing and flushes nothing. */
static void check_nothing(struct __test_metadata *_metadata, FIXTURE_DATA(order) *self,
			  const char *what, const struct counts *b, const struct counts *a)
{
	struct tracer *t = self->t;
	int i, nret = 0;

	ksft_print_msg("%s: %s\n", what, ev_summary(t, self->slots_lock));
	EXPECT_EQ(0, self->arg->pages_cleared) TH_LOG("%s", what);
	for (i = 0; i < t->nev; i++) {
		EXPECT_NE(EV_WP, t->ev[i].kind) TH_LOG("%s: write-protect", what);
		EXPECT_NE(EV_FLUSH, t->ev[i].kind) TH_LOG("%s: TLB flush", what);
		EXPECT_NE(EV_FLUSHV, t->ev[i].kind) TH_LOG("%s: TLB flush (%s)", what,
							  t->ev[i].sym);
		nret += t->ev[i].kind == EV_IORET;
	}
	EXPECT_EQ(1, nret) TH_LOG("%s: %d ioctl returns", what, nret);
	EXPECT_EQ(0, a->kvm_flush_req - b->kvm_flush_req) TH_LOG("%s", what);
	EXPECT_EQ(0, a->mod.tlb_flushes - b->mod.tlb_flushes) TH_LOG("%s", what);
}

TEST_F_TIMEOUT(order, nothing_cleared_no_flush, 120)
{
	struct counts b, a;
	uint64_t expect;

	/* every page dirty, but the bitmaps name none */
	dirty_pages(self);
	traced_clear(_metadata, self, true, 2 * NSLOTS, &expect, &b, &a);
	ASSERT_EQ(0, expect);
	check_nothing(_metadata, self, "zero bitmaps over dirty pages", &b, &a);

	/* the same batch twice: the second finds nothing dirty */
	traced_clear(_metadata, self, false, 2 * NSLOTS, &expect, &b, &a);
	ASSERT_LT(0, expect);
	traced_clear(_metadata, self, false, 2 * NSLOTS, &expect, &b, &a);
	ASSERT_EQ(0, expect);
	check_nothing(_metadata, self, "pages already clean", &b, &a);

	/* no range at all */
	traced_clear(_metadata, self, false, 0, &expect, &b, &a);
	check_nothing(_metadata, self, "count 0", &b, &a);
}

int main(int argc, char **argv)
{
	char fs[64];
	const char *why;
	int i;

	test_require(argc, argv, true);
	for (i = 1; i < argc; i++)
		if (!strcmp(argv[i], "-l") || !strcmp(argv[i], "-h"))
			return test_harness_run(argc, argv);
	why = tracefs_find(fs, sizeof(fs));
	if (why)
		tap_skip_all(why);
	i = test_harness_run(argc, argv);
	/*
	 * A test killed by the harness (timeout) leaves the removal to its
	 * guardian, which may still be at it: remove whatever is left of
	 * test processes that are gone before returning.
	 */
	trace_cleanup(fs, -1);
	return i;
}
