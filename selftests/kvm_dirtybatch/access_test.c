// SPDX-License-Identifier: GPL-2.0
/*
 * access_test: who may use /dev/kvm_dirtybatch, and on which VM.
 *
 * device_mode     the node is a char device owned by root, mode 0660, like
 *                 /dev/kvm;
 * udev_rule       with module/60-kvm-dirtybatch.rules installed (into
 *                 /run/udev/rules.d) and the "add" event of both nodes
 *                 processed by udev, they have the same owner, group, mode
 *                 and uaccess tag (SKIP without udevadm or when the rule
 *                 file is not found from the cwd);
 * non_root        as nobody (uid/gid 65534) without the device's group,
 *                 opening either node fails with EACCES; in the group,
 *                 both open, and nobody creates a VM and clears its dirty
 *                 log through the module;
 * vm_fd_holder    a process can clear only the VMs whose fd it holds:
 *                 another non-root process with the device open cannot
 *                 name a VM of someone else (fd number not open: EBADF;
 *                 its own file at that number: EINVAL; reopening
 *                 /proc/<pid>/fd/<n> or pidfd_getfd() is refused or does
 *                 not give the VM), nor can a root process without the
 *                 fd, and the owner's dirty bits are intact;
 * vm_creator_mm   holding the fd is not enough, as for every VM ioctl of
 *                 KVM: a forked child that inherited the VM fd, a process
 *                 that received it over SCM_RIGHTS, and root taking it
 *                 with pidfd_getfd() all get EIO from KVM_CLEAR_DIRTY_LOG
 *                 and from the batch alike, and nothing is cleared.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "util.h"

#define NOBODY		65534
#define RULE_SRC	"module/60-kvm-dirtybatch.rules"
#define RULE_DST_DIR	"/run/udev/rules.d"
#define RULE_DST	RULE_DST_DIR "/60-kvm-dirtybatch.rules"
#define MIB		(1UL << 20)

#ifndef __NR_pidfd_open
#define __NR_pidfd_open 434
#endif
#ifndef __NR_pidfd_getfd
#define __NR_pidfd_getfd 438
#endif

/* "uaccess" in the device's udev tags (after udev processed it)? */
static int has_uaccess(const char *node)
{
	char cmd[128], line[512];
	int found = 0;
	FILE *f;

	snprintf(cmd, sizeof(cmd), "udevadm info --query=property --name=%s 2>/dev/null", node);
	f = popen(cmd, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "TAGS=", 5) && strstr(line, ":uaccess:"))
			found = 1;
	pclose(f);
	return found;
}

static int run(const char *cmd)
{
	int r = system(cmd);

	return r == -1 ? -1 : WEXITSTATUS(r);
}

/* Drop to nobody, with supplementary group gid (or none if gid < 0). */
static int become_nobody(int gid)
{
	gid_t g = gid;

	if (setgroups(gid >= 0 ? 1 : 0, &g) || setgid(NOBODY) || setuid(NOBODY))
		return -errno;
	return getuid() == NOBODY && geteuid() == NOBODY ? 0 : -EPERM;
}

/* Run fn in a child; its exit status (0 = pass) */
static int in_child(int (*fn)(void *), void *arg)
{
	int st;
	pid_t p = fork();

	if (!p)
		_exit(fn(arg));
	if (p < 0 || waitpid(p, &st, 0) != p)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

TEST(device_mode)
{
	struct stat k, d;

	ASSERT_EQ(0, stat("/dev/kvm", &k));
	ASSERT_EQ(0, stat(DB_DEVICE_PATH, &d));
	EXPECT_TRUE(S_ISCHR(d.st_mode));
	EXPECT_EQ(0, d.st_uid);
	EXPECT_EQ(0660, d.st_mode & 07777);
	ksft_print_msg("/dev/kvm %o uid %u gid %u; " DB_DEVICE_PATH " %o uid %u gid %u\n",
		       k.st_mode & 07777, k.st_uid, k.st_gid, d.st_mode & 07777, d.st_uid,
		       d.st_gid);
	/* /dev/kvm: 0660 with udev (Debian), the kernel's 0600 without */
	if ((k.st_mode & 07777) == 0660)
		EXPECT_EQ(k.st_mode & 07777, d.st_mode & 07777);
	EXPECT_EQ(0, d.st_mode & 07007) TH_LOG("world access or special bits");
}

TEST(udev_rule)
{
	struct stat k, d;

	if (access(RULE_SRC, R_OK))
		SKIP(return, RULE_SRC " not found from the current directory");
	if (run("udevadm --version >/dev/null 2>&1"))
		SKIP(return, "no udevadm");
	ASSERT_EQ(0, run("mkdir -p " RULE_DST_DIR " && cp " RULE_SRC " " RULE_DST));
	run("udevadm control --reload >/dev/null 2>&1");
	/*
	 * Process the "add" event of both nodes with the installed rules.
	 * udevadm test applies node permissions; --resolve-names=early
	 * because a running udevd may not resolve group names (virtme-ng
	 * starts it with --resolve-names=never).
	 */
	ASSERT_EQ(0, run("udevadm test --resolve-names=early --action=add "
			 "/sys/class/misc/kvm_dirtybatch >/dev/null 2>&1"));
	ASSERT_EQ(0, run("udevadm test --resolve-names=early --action=add "
			 "/sys/class/misc/kvm >/dev/null 2>&1"));
	ASSERT_EQ(0, stat("/dev/kvm", &k));
	ASSERT_EQ(0, stat(DB_DEVICE_PATH, &d));
	ksft_print_msg("after udev: /dev/kvm %o gid %u; " DB_DEVICE_PATH " %o gid %u\n",
		       k.st_mode & 07777, k.st_gid, d.st_mode & 07777, d.st_gid);
	EXPECT_NE(0, d.st_gid) TH_LOG("the rule did not set a group");
	EXPECT_EQ(k.st_uid, d.st_uid);
	EXPECT_EQ(k.st_gid, d.st_gid);
	EXPECT_EQ(k.st_mode & 07777, d.st_mode & 07777);
	EXPECT_EQ(0660, d.st_mode & 07777);
	/* seat access (logind ACLs) as for /dev/kvm */
	EXPECT_EQ(has_uaccess("/dev/kvm"), has_uaccess(DB_DEVICE_PATH));
	ksft_print_msg("uaccess tag: /dev/kvm %d, " DB_DEVICE_PATH " %d\n",
		       has_uaccess("/dev/kvm"), has_uaccess(DB_DEVICE_PATH));
}

static int open_err(const char *path)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return errno;
	close(fd);
	return 0;
}

static int nobody_no_group(void *arg)
{
	struct stat k;

	(void)arg;
	if (stat("/dev/kvm", &k))
		return 9;
	if (become_nobody(-1))
		return 10;
	if (!(k.st_mode & 06) && open_err("/dev/kvm") != EACCES)
		return 11;
	if (open_err(DB_DEVICE_PATH) != EACCES)
		return 12;
	return 0;
}

static int nobody_in_group(void *arg)
{
	struct kvm_dirtybatch_range r = { .slot = 1, .num_pages = 64 };
	struct kvm_dirtybatch_clear c;
	uint64_t ones = ~0ULL, bm = ~0ULL;
	struct vm *vm;
	int dbfd;

	if (become_nobody(*(int *)arg))
		return 20;
	if (open_err("/dev/kvm"))
		return 21;
	dbfd = db_open();
	if (dbfd < 0)
		return 22;
	vm = vm_create(true);
	vm_add_slot(vm, 1, MIB, 64, KVM_MEM_LOG_DIRTY_PAGES);
	r.dirty_bitmap = (uintptr_t)&ones;
	c = (struct kvm_dirtybatch_clear){ .vm_fd = vm->fd, .count = 1,
		.range_size = sizeof(r), .ranges = (uintptr_t)&r };
	if (db_clear(dbfd, &c) || (db_backend_has_stats() && c.pages_cleared != 64))
		return 23;
	vm_get_dirty_log(vm, 1, &bm);
	if (bm)
		return 24;
	vm_free(vm);
	close(dbfd);
	return 0;
}

TEST(non_root)
{
	struct stat d;
	int gid, r;

	ASSERT_EQ(0, stat(DB_DEVICE_PATH, &d));
	gid = d.st_gid;
	r = in_child(nobody_no_group, NULL);
	EXPECT_EQ(0, r) TH_LOG("nobody without the group: step %d", r);
	r = in_child(nobody_in_group, &gid);
	EXPECT_EQ(0, r) TH_LOG("nobody in group %d: step %d", gid, r);
}

/* ---- only the holder of a VM fd can clear that VM ---- */

struct owner {
	int vmfd;
	pid_t pid;
	int gid;
	bool root;		/* the intruder stays root */
};

static int intruder(void *arg)
{
	struct owner *o = arg;
	struct kvm_dirtybatch_range r = { .slot = 1, .num_pages = 64 };
	struct kvm_dirtybatch_clear c;
	uint64_t ones = ~0ULL;
	char path[64];
	int dbfd, fd, pidfd, e;

	if (!o->root && become_nobody(o->gid))
		return 30;
	dbfd = db_open();
	if (dbfd < 0)
		return 31;
	/* the fd is inherited by fork: close it, as in a stranger */
	close(o->vmfd);
	r.dirty_bitmap = (uintptr_t)&ones;
	c = (struct kvm_dirtybatch_clear){ .vm_fd = o->vmfd, .count = 1,
		.range_size = sizeof(r), .ranges = (uintptr_t)&r };
	/*
	 * How the module resolves vm_fd.  KVM's native ioctl is called on the
	 * fd itself: whatever file has that number answers it, which is the
	 * VFS's business, not KVM's.
	 */
	if (!db_backend_has_stats())
		goto getfd;
	/* the owner's fd number is no fd here */
	if (db_clear(dbfd, &c) != -EBADF)
		return 32;
	/* our own file at that number */
	fd = open("/dev/null", O_RDWR);
	if (fd < 0 || (fd != o->vmfd && dup2(fd, o->vmfd) != o->vmfd))
		return 33;
	if (db_clear(dbfd, &c) != -EINVAL)
		return 34;
	close(o->vmfd);
	/* reopening the owner's fd through /proc */
	snprintf(path, sizeof(path), "/proc/%d/fd/%d", o->pid, o->vmfd);
	fd = open(path, O_RDWR);
	e = errno;
	if (fd >= 0) {
		c.vm_fd = fd;
		e = -db_clear(dbfd, &c);
		ksft_print_msg("intruder: %s opened; clearing through it: %s\n", path,
			       strerror(e));
		if (e != EINVAL)
			return 35;	/* a reopened anon inode is not the VM */
		close(fd);
	} else {
		ksft_print_msg("intruder: open %s: %s\n", path, strerror(e));
		if (e != EACCES && e != EPERM && e != ENXIO)
			return 36;
	}
getfd:
	/*
	 * Taking it with pidfd_getfd() needs ptrace rights over the owner;
	 * root has them, and vm_creator_mm checks what it gets then.
	 */
	pidfd = o->root ? -1 : syscall(__NR_pidfd_open, o->pid, 0);
	if (pidfd >= 0) {
		fd = syscall(__NR_pidfd_getfd, pidfd, o->vmfd, 0);
		ksft_print_msg("intruder: pidfd_getfd: %s\n", fd >= 0 ? "got the fd" :
			       strerror(errno));
		if (fd >= 0)
			return 37;
		close(pidfd);
	}
	close(dbfd);
	return 0;
}

TEST(vm_fd_holder)
{
	struct kvm_dirtybatch_range r = { .slot = 1, .num_pages = 64 };
	struct kvm_dirtybatch_clear c;
	uint64_t bm = 0, ones = ~0ULL;
	struct owner o;
	struct stat d;
	struct vm *vm;
	int dbfd, res;

	ASSERT_EQ(0, stat(DB_DEVICE_PATH, &d));
	vm = vm_create(true);
	vm_add_slot(vm, 1, MIB, 64, KVM_MEM_LOG_DIRTY_PAGES);
	o = (struct owner){ .vmfd = vm->fd, .pid = getpid(), .gid = d.st_gid };
	res = in_child(intruder, &o);
	EXPECT_EQ(0, res) TH_LOG("non-root intruder failed at step %d", res);
	o.root = true;
	res = in_child(intruder, &o);
	EXPECT_EQ(0, res) TH_LOG("root intruder failed at step %d", res);
	/* nothing happened to the owner's VM */
	vm_get_dirty_log(vm, 1, &bm);
	EXPECT_EQ(~0ULL, bm);
	/* and the owner itself can clear it */
	dbfd = db_open();
	ASSERT_LE(0, dbfd);
	r.dirty_bitmap = (uintptr_t)&ones;
	c = (struct kvm_dirtybatch_clear){ .vm_fd = vm->fd, .count = 1,
		.range_size = sizeof(r), .ranges = (uintptr_t)&r };
	EXPECT_EQ(0, db_clear(dbfd, &c));
	if (db_backend_has_stats())
		EXPECT_EQ(64, c.pages_cleared);
	vm_get_dirty_log(vm, 1, &bm);
	EXPECT_EQ(0, bm);
	close(dbfd);
	vm_free(vm);
}

/* ---- only the process that created the VM, as for KVM's VM ioctls ---- */

struct foreign {
	int vmfd;	/* the creator's VM fd (inherited by the child) */
	pid_t pid;	/* the creator */
	int sock;	/* the child's end of a socketpair, or -1 */
	bool getfd;	/* take the fd with pidfd_getfd() */
};

static int recv_fd(int sock)
{
	char cbuf[CMSG_SPACE(sizeof(int))], byte;
	struct iovec iov = { &byte, 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
			    .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm;
	int fd;

	if (recvmsg(sock, &m, 0) != 1)
		return -1;
	cm = CMSG_FIRSTHDR(&m);
	if (!cm || cm->cmsg_type != SCM_RIGHTS)
		return -1;
	memcpy(&fd, CMSG_DATA(cm), sizeof(fd));
	return fd;
}

static int send_fd(int sock, int fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 }, byte = 0;
	struct iovec iov = { &byte, 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
			    .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&m);

	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(fd));
	return sendmsg(sock, &m, 0) == 1 ? 0 : -1;
}

/* In a process other than the creator: both ioctls must fail with EIO. */
static int foreign_holder(void *arg)
{
	struct foreign *f = arg;
	struct kvm_dirtybatch_range r = { .slot = 1, .num_pages = 64 };
	struct kvm_clear_dirty_log log = { .slot = 1, .num_pages = 64 };
	struct kvm_dirtybatch_clear c;
	uint64_t ones = ~0ULL;
	int dbfd, vmfd = f->vmfd, pidfd;

	if (f->sock >= 0 || f->getfd)
		close(f->vmfd);		/* hold only what was passed */
	if (f->sock >= 0)
		vmfd = recv_fd(f->sock);
	if (f->getfd) {
		pidfd = syscall(__NR_pidfd_open, f->pid, 0);
		vmfd = pidfd < 0 ? -1 : syscall(__NR_pidfd_getfd, pidfd, f->vmfd, 0);
	}
	if (vmfd < 0)
		return 50;
	dbfd = db_open();
	if (dbfd < 0)
		return 51;
	r.dirty_bitmap = (uintptr_t)&ones;
	log.dirty_bitmap = &ones;
	c = (struct kvm_dirtybatch_clear){ .vm_fd = vmfd, .count = 1,
		.range_size = sizeof(r), .ranges = (uintptr_t)&r };
	if (ioctl(vmfd, KVM_CLEAR_DIRTY_LOG, &log) != -1 || errno != EIO)
		return 52;
	if (db_clear(dbfd, &c) != -EIO)
		return 53;
	/* an empty batch is refused too: the gate comes before the ranges */
	c.count = 0;
	if (db_clear(dbfd, &c) != -EIO)
		return 54;
	close(dbfd);
	return 0;
}

TEST(vm_creator_mm)
{
	struct kvm_dirtybatch_stats st0, st1;
	uint64_t bm = 0;
	struct foreign f;
	struct vm *vm;
	int sv[2], dbfd, res;

	vm = vm_create(true);
	vm_add_slot(vm, 1, MIB, 64, KVM_MEM_LOG_DIRTY_PAGES);
	dbfd = db_open();
	ASSERT_LE(0, dbfd);
	ASSERT_EQ(0, db_get_stats(dbfd, &st0));

	f = (struct foreign){ .vmfd = vm->fd, .pid = getpid(), .sock = -1 };
	res = in_child(foreign_holder, &f);
	EXPECT_EQ(0, res) TH_LOG("forked child: step %d", res);

	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
	ASSERT_EQ(0, send_fd(sv[0], vm->fd));
	f.sock = sv[1];
	res = in_child(foreign_holder, &f);
	EXPECT_EQ(0, res) TH_LOG("SCM_RIGHTS receiver: step %d", res);
	close(sv[0]);
	close(sv[1]);

	f.sock = -1;
	f.getfd = true;
	res = in_child(foreign_holder, &f);
	EXPECT_EQ(0, res) TH_LOG("root with pidfd_getfd(): step %d", res);

	/* nothing was cleared; three refused batches per child */
	vm_get_dirty_log(vm, 1, &bm);
	EXPECT_EQ(~0ULL, bm);
	ASSERT_EQ(0, db_get_stats(dbfd, &st1));
	if (db_backend_has_stats()) {
		EXPECT_EQ(st0.pages_cleared, st1.pages_cleared);
		EXPECT_EQ(st0.calls, st1.calls);
		EXPECT_EQ(st0.failed_calls + 6, st1.failed_calls);
	}
	close(dbfd);
	vm_free(vm);
}

DIRTYBATCH_TEST_MAIN(true)
