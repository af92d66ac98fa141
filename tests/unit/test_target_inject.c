/* SPDX-License-Identifier: MIT */
/*
 * Syscall injection and the uffd made inside a target, against the real
 * kernel: every thread kind (busy FP, blocked in read(), in nanosleep, in
 * FUTEX_WAIT) runs an injected call and carries on unharmed; a uffd is made
 * in a root and in a non-root target (which must take the /dev/userfaultfd
 * path), fetched, and used to serve user and kernel write faults; and a
 * monitor SIGKILLed at every stage of freeze/inject/protect leaves a target
 * that finishes with all its checks intact.
 */
#include "testutil.h"
#include "tu_target.h"
#include "uffd_target.h"
#include "thief_code.h"
#include "tu_thief.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define PG	     4096UL
#define REGION_PAGES 16
#define PATTERN(i)   ((char)(0x40 + (i)))
#define UFFD_LINK    "[userfaultfd]"

/* ---- a kid with a data region and commands that write into it ----------- */

static int kid_pipe[2]; /* the parent writes, the kid's read() lands in RAM */

static int region_setup(struct tu_kid *k)
{
	char *p = mmap(NULL, REGION_PAGES * PG, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	size_t i;

	if (p == MAP_FAILED)
		return 1;
	for (i = 0; i < REGION_PAGES; i++)
		memset(p + i * PG, PATTERN(i), PG);
	k->shm->addr[0] = (uintptr_t)p;
	return k->arg ? tu_drop_privileges(65534) : 0;
}

/* 'w': a user write into page 3. 'r': read() from a pipe into page 5, a
 * kernel write, which would fail with EFAULT on a user-mode-only uffd. */
static int region_cmd(struct tu_kid *k, char cmd)
{
	char *p = (char *)(uintptr_t)k->shm->addr[0];
	ssize_t n;

	if (cmd == 'w') {
		p[3 * PG + 1] = 'W';
	} else if (cmd == 'r') {
		n = read(kid_pipe[0], p + 5 * PG, 8);
		if (n != 8) {
			snprintf(k->shm->why, sizeof(k->shm->why),
				 "kernel write: read returned %ld (%s)",
				 (long)n, n < 0 ? strerror(errno) : "short");
			return 1;
		}
	}
	k->shm->arg[1]++;
	return 0;
}

static void region_kid(struct tu_kid *k, bool nonroot, int nbusy, int nread,
		       int nsleep)
{
	memset(k, 0, sizeof(*k));
	k->setup = region_setup;
	k->cmd = region_cmd;
	k->arg = nonroot ? k : NULL;
	tu_kid_start(k, nbusy, nread, nsleep);
}

static bool wait_done(const struct tu_kid *k, uint64_t n, int timeout_ms)
{
	int i;

	for (i = 0; i < timeout_ms && k->shm->arg[1] < n; i++)
		tu_sleep_ms(1);
	return k->shm->arg[1] >= n;
}

/* ---- injected calls in every kind of thread ------------------------------ */

static void inject_everywhere(struct bgs_target *t, const struct tu_kid *k)
{
	const uint64_t none[6] = { 0 };
	int64_t ret = 0;
	int i;

	for (i = 0; i < k->shm->nthreads; i++) {
		const pid_t tid = k->shm->tid[i];

		assert_int_equal(
			bgs_target_syscall(t, tid, SYS_gettid, none, &ret), 0);
		assert_int_equal(ret, tid);
	}
	/* The main thread, blocked in read() on the command pipe. */
	assert_int_equal(bgs_target_syscall(t, k->pid, SYS_getpid, none, &ret),
			 0);
	assert_int_equal(ret, k->pid);
}

static void test_syscall_in_each_thread(void **state)
{
	struct tu_kid k = { 0 };
	struct bgs_target t;
	int round;

	(void)state;
	tu_kid_start(&k, 2, 2, 2);
	assert_true(tu_wait_syscall(k.pid, tu_kid_tid(&k, TU_READER, 1),
				    SYS_read, 2000));
	assert_true(tu_wait_syscall(k.pid, tu_kid_tid(&k, TU_SLEEPER, 1), -1,
				    2000));
	assert_int_equal(bgs_target_open(&t, k.pid), 0);
	for (round = 0; round < 3; round++) {
		assert_int_equal(bgs_target_freeze(&t), 0);
		inject_everywhere(&t, &k);
		assert_int_equal(bgs_target_thaw(&t), 0);
		tu_kid_feed(&k);
		tu_sleep_ms(25);
	}
	bgs_target_close(&t);
	/* Readers got every message whole, sleepers never woke early or with
	 * EINTR, busy threads kept their FPU state and rounding mode. */
	assert_int_equal(tu_kid_finish(&k, 5000), 0);
}

static void test_syscall_refusals(void **state)
{
	struct tu_kid k = { 0 };
	struct bgs_target t;
	const uint64_t none[6] = { 0 };
	int64_t ret;

	(void)state;
	tu_kid_start(&k, 1, 1, 0);
	assert_int_equal(bgs_target_open(&t, k.pid), 0);
	assert_int_equal(bgs_target_syscall(&t, 0, SYS_getpid, none, &ret),
			 -EINVAL); /* not frozen */
	assert_int_equal(bgs_target_freeze(&t), 0);
	assert_int_equal(bgs_target_syscall(&t, 1, SYS_getpid, none, &ret),
			 -EBUSY); /* not one of its threads */
	assert_non_null(strstr(t.msg, "cannot run injected calls"));
	assert_int_equal(bgs_target_thaw(&t), 0);
	bgs_target_close(&t);
	assert_int_equal(tu_kid_finish(&k, 5000), 0);
}

/* ---- the uffd ------------------------------------------------------------ */

/* Inject, adopt, register and protect the kid's region. */
static void arm(struct bgs_target *t, const struct tu_kid *k,
		struct bgs_uffd *u, struct bgs_target_uffd *tu)
{
	const uint64_t addr = k->shm->addr[0];
	const int fds = tu_count_fds(k->pid, NULL);

	assert_int_equal(bgs_target_freeze(t), 0);
	assert_int_equal(bgs_target_inject_uffd(t, 0, tu), 0);
	/* Every descriptor injected is closed again. */
	assert_int_equal(tu_count_fds(k->pid, NULL), fds);
	assert_int_equal(tu_count_fds(k->pid, UFFD_LINK), 0);
	assert_int_equal(bgs_uffd_adopt(u, tu->fd, BGS_UFFD_FEATURES_WP,
					UFFD_FEATURE_PAGEFAULT_FLAG_WP),
			 0);
	assert_int_equal(bgs_uffd_register(u, addr, REGION_PAGES * PG,
					   UFFDIO_REGISTER_MODE_WP, NULL),
			 0);
	assert_int_equal(bgs_uffd_protect(u, addr, REGION_PAGES * PG, 0), 0);
	assert_int_equal(bgs_target_thaw(t), 0);
}

/* The kid's write to @page must fault, stay blocked while the old content
 * is read, and land after unprotect. */
static void serve_fault(struct bgs_target *t, const struct tu_kid *k,
			const struct bgs_uffd *u, int page, char cmd)
{
	const uint64_t addr = k->shm->addr[0] + (uint64_t)page * PG;
	const uint64_t done = k->shm->arg[1];
	struct uffd_msg msg;
	char old[PG];

	assert_int_equal(write(k->ctl, &cmd, 1), 1);
	assert_int_equal(tu_wait_msg(u, &msg, 5000), 1);
	assert_true(bgs_uffd_msg_is_wp(&msg));
	assert_int_equal(msg.arg.pagefault.address & ~(PG - 1), addr);
	tu_sleep_ms(10);
	assert_int_equal(k->shm->arg[1], done);
	assert_int_equal(bgs_target_read(t, addr, old, PG), 0);
	assert_int_equal(old[0], PATTERN(page));
	assert_int_equal(old[PG - 1], PATTERN(page));
	assert_int_equal(bgs_uffd_unprotect(u, addr, PG, 0), 0);
	assert_true(wait_done(k, done + 1, 5000));
}

static void uffd_round_trip(bool nonroot)
{
	struct bgs_target_uffd tu;
	struct bgs_target t;
	struct bgs_uffd u;
	struct tu_kid k;
	char page[16];

	assert_int_equal(pipe(kid_pipe), 0);
	region_kid(&k, nonroot, 1, 1, 1);
	assert_int_equal(bgs_target_open(&t, k.pid), 0);
	arm(&t, &k, &u, &tu);
	assert_int_equal(tu.via_dev, nonroot);
	fprintf(stderr, "# %s target: uffd %s, inject %.0f us\n",
		nonroot ? "uid 65534" : "root",
		tu.via_dev ? "via /dev/userfaultfd" : "via userfaultfd(2)",
		t.inject_ns / 1e3);
	serve_fault(&t, &k, &u, 3, 'w');
	assert_int_equal(write(kid_pipe[1], "kernelwr", 8), 8);
	serve_fault(&t, &k, &u, 5, 'r');
	assert_int_equal(bgs_target_read(&t, k.shm->addr[0] + 5 * PG, page, 8),
			 0);
	assert_memory_equal(page, "kernelwr", 8);
	bgs_uffd_close(&u);
	bgs_target_close(&t);
	assert_int_equal(tu_kid_finish(&k, 5000), 0);
	close(kid_pipe[0]);
	close(kid_pipe[1]);
}

static void test_uffd_root_target(void **state)
{
	(void)state;
	uffd_round_trip(false);
}

static void test_uffd_nonroot_target(void **state)
{
	(void)state;
	tu_need_root("a uid-65534 target, /dev/userfaultfd");
	uffd_round_trip(true);
}

/* ---- before Linux 6.9: no helper thread --------------------------------- */

/* In the target's own table, as before PIDFD_THREAD: a root target makes
 * its uffd and keeps no descriptor; root refuses to pass /dev/userfaultfd
 * to a uid-65534 target, saying why. */
static void test_uffd_without_helper(void **state)
{
	struct bgs_target_uffd tu;
	struct bgs_target t;
	struct tu_kid k;
	int fds, nonroot;

	(void)state;
	tu_need_root("a uid-65534 target");
	for (nonroot = 0; nonroot < 2; nonroot++) {
		region_kid(&k, nonroot, 1, 1, 1);
		fds = tu_count_fds(k.pid, NULL);
		assert_int_equal(bgs_target_open(&t, k.pid), 0);
		t.no_helper = true;
		assert_int_equal(bgs_target_freeze(&t), 0);
		if (!nonroot) {
			assert_int_equal(bgs_target_inject_uffd(&t, 0, &tu), 0);
			assert_false(tu.via_dev);
			close(tu.fd);
		} else {
			assert_int_equal(bgs_target_inject_uffd(&t, 0, &tu),
					 -EPERM);
			assert_non_null(strstr(t.msg, "needs Linux 6.9"));
		}
		assert_int_equal(tu_count_fds(k.pid, NULL), fds);
		bgs_target_close(&t);
		assert_int_equal(tu_kid_finish(&k, 5000), 0);
	}
}

/* ---- another process of the target's user tries to take it -------------- */

#define THEFT_SAVES 100
#define THEFT_FDS   32

/* What the thief took, by kind, shared with the test. */
struct thief_shm {
	atomic_int stop;
	atomic_ulong passes;
	atomic_ulong taken[TU_FD_KINDS];
};

static void thief_main(pid_t pid, struct thief_shm *sh)
{
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) || tu_drop_privileges(65534))
		_exit(2);
	while (!atomic_load(&sh->stop)) {
		unsigned long taken[TU_FD_KINDS] = { 0 };

		tu_thief_pass(pid, THEFT_FDS, taken);
		for (int k = 0; k < TU_FD_KINDS; k++)
			atomic_fetch_add(&sh->taken[k], taken[k]);
		atomic_fetch_add(&sh->passes, 1);
	}
	_exit(0);
}

/* Freeze, make the uffd, thaw; 0 or the failure, said in @why. */
static int one_save(pid_t pid, char *why, size_t len)
{
	struct bgs_target_uffd tu;
	struct bgs_target t;
	int err;

	if ((err = bgs_target_open(&t, pid)))
		return err;
	err = bgs_target_freeze(&t);
	if (!err && !(err = bgs_target_inject_uffd(&t, 0, &tu))) {
		close(tu.fd);
		err = tu.via_dev ? 0 : -EPROTO;
	}
	if (err)
		snprintf(why, len, "%s", t.msg);
	bgs_target_close(&t);
	return err;
}

/*
 * Root hands a uid-65534 target the /dev/userfaultfd descriptor it may not
 * open itself. A second uid-65534 process loops pidfd_getfd over every
 * descriptor of every thread of the target meanwhile (and reads any socket
 * it gets): it must never hold that descriptor or the uffd made with it.
 * It must take the target's ordinary descriptors, or it proves nothing.
 */
static void test_thief_takes_nothing(void **state)
{
	struct thief_shm *sh;
	struct tu_kid k;
	char why[BGS_TARGET_MSG_LEN] = "";
	pid_t thief;
	int i, st, failed = 0;

	(void)state;
	tu_need_root("a uid-65534 target and thief, /dev/userfaultfd");
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
		  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(sh != MAP_FAILED);
	memset(sh, 0, sizeof(*sh));
	region_kid(&k, true, 1, 1, 1);
	fflush(NULL);
	thief = fork();
	if (thief == 0)
		thief_main(k.pid, sh);
	while (!atomic_load(&sh->passes))
		tu_sleep_ms(1);
	for (i = 0; i < THEFT_SAVES; i++)
		if (one_save(k.pid, why, sizeof(why))) {
			fprintf(stderr, "# save %d: %s\n", i, why);
			failed++;
		}
	atomic_store(&sh->stop, 1);
	assert_int_equal(waitpid(thief, &st, 0), thief);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	fprintf(stderr,
		"# %d saves (%d failed), %lu passes of the thief: it took %lu "
		"ordinary descriptors, %lu uffds, %lu /dev/userfaultfd\n",
		THEFT_SAVES, failed, atomic_load(&sh->passes),
		atomic_load(&sh->taken[TU_FD_PLAIN]),
		atomic_load(&sh->taken[TU_FD_UFFD]),
		atomic_load(&sh->taken[TU_FD_DEV]));
	assert_true(atomic_load(&sh->taken[TU_FD_PLAIN]) > 0);
	assert_int_equal(atomic_load(&sh->taken[TU_FD_UFFD]), 0);
	assert_int_equal(atomic_load(&sh->taken[TU_FD_DEV]), 0);
	assert_int_equal(failed, 0);
	assert_int_equal(tu_kid_finish(&k, 5000), 0);
	munmap(sh, sizeof(*sh));
}

/* ---- the monitor dies ---------------------------------------------------- */

struct monitor {
	int report;  /* write end: the stage it died at, or 'D' for done */
	int kill_at; /* die at this hook call (1-based); 0 never */
	int kill_in; /* or at the first call in this stage + 1; 0 never */
	int calls;
	pid_t tid; /* inject in this thread; 0 the best */
};

static void monitor_hook(void *arg, enum bgs_target_stage stage)
{
	struct monitor *m = arg;
	const char c = (char)stage;

	if (++m->calls != m->kill_at && (int)stage + 1 != m->kill_in)
		return;
	if (write(m->report, &c, 1) != 1)
		_exit(3);
	raise(SIGKILL);
}

/* In the monitor child: the whole arming sequence, then wait to be killed.
 * Exit 2 on an unexpected failure. */
static void monitor_main(struct monitor *m, const struct tu_kid *k)
{
	struct bgs_target_uffd tu;
	struct bgs_target t;
	struct bgs_uffd u;
	const uint64_t addr = k->shm->addr[0];
	const char done = 'D';

	if (bgs_target_open(&t, k->pid))
		_exit(2);
	t.hook = monitor_hook;
	t.hook_arg = m;
	if (bgs_target_freeze(&t) || bgs_target_inject_uffd(&t, m->tid, &tu) ||
	    bgs_uffd_adopt(&u, tu.fd, BGS_UFFD_FEATURES_WP,
			   UFFD_FEATURE_PAGEFAULT_FLAG_WP) ||
	    bgs_uffd_register(&u, addr, REGION_PAGES * PG,
			      UFFDIO_REGISTER_MODE_WP, NULL) ||
	    bgs_uffd_protect(&u, addr, REGION_PAGES * PG, 0) ||
	    bgs_target_thaw(&t)) {
		fprintf(stderr, "# monitor: %s\n", t.msg);
		_exit(2);
	}
	if (write(m->report, &done, 1) != 1)
		_exit(2);
	pause();
	_exit(0);
}

static int count_threads(pid_t pid)
{
	char path[64];
	struct dirent *de;
	int n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	if (!(d = opendir(path)))
		return -1;
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

/* The owner of /proc/PID/status: the process's user while it is
 * dumpable, root while it is not (the /proc/PID directory itself keeps
 * its first owner). */
static unsigned proc_owner(pid_t pid)
{
	char path[64];
	struct stat st;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	return stat(path, &st) ? ~0U : st.st_uid;
}

/* After the monitor's death the kid must be back to the descriptors and
 * threads it had, dumpable as it was (status owned by @uid), holding no
 * uffd: a helper thread left behind cleans up and exits on its own at
 * once (waited for up to 2 s). */
static bool kid_as_before(pid_t pid, int fds, int threads, unsigned uid)
{
	int i;

	for (i = 0; i < 2000; i++) {
		if (tu_count_fds(pid, NULL) == fds &&
		    count_threads(pid) == threads && proc_owner(pid) == uid)
			return tu_count_fds(pid, UFFD_LINK) == 0;
		tu_sleep_ms(1);
	}
	fprintf(stderr,
		"# kid has %d descriptors (%d before), %d threads (%d "
		"before), status owned by %u (%u before)\n",
		tu_count_fds(pid, NULL), fds, count_threads(pid), threads,
		proc_owner(pid), uid);
	return false;
}

/* One trial: returns the stage the monitor died at, or -1 if it got
 * through everything (and was then killed while the kid was blocked). */
static int trial(bool nonroot, enum tu_role role, int kill_at)
{
	struct monitor m = { .kill_at = kill_at };
	struct tu_kid k;
	int p[2], st, stage, fds, threads;
	char c;
	pid_t mon;

	region_kid(&k, nonroot, 1, 1, 1);
	fds = tu_count_fds(k.pid, NULL);
	threads = count_threads(k.pid);
	m.tid = role == TU_READER ? 0 : tu_kid_tid(&k, role, 0);
	assert_true(tu_wait_syscall(k.pid, k.pid, SYS_read, 2000));
	assert_int_equal(pipe(p), 0);
	m.report = p[1];
	fflush(NULL);
	mon = fork();
	if (mon == 0)
		monitor_main(&m, &k);
	assert_int_equal(read(p[0], &c, 1), 1);
	stage = c == 'D' ? -1 : c;
	if (stage < 0) {
		/* Armed and thawed: the kid's write blocks until the
		 * monitor dies and takes the only uffd reference along. */
		tu_kid_send(&k, 'w');
		tu_sleep_ms(20);
		assert_int_equal(k.shm->arg[1], 0);
		kill(mon, SIGKILL);
	}
	assert_int_equal(waitpid(mon, &st, 0), mon);
	assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	assert_true(kid_as_before(k.pid, fds, threads, nonroot ? 65534 : 0));
	tu_kid_send(&k, 'w');
	assert_true(wait_done(&k, 1, 3000));
	assert_int_equal(tu_kid_finish(&k, 5000), 0);
	close(p[0]);
	close(p[1]);
	return stage;
}

/* bgsnap killed again and again at the instant the target holds the new
 * uffd (and, on the /dev/userfaultfd path, that descriptor and a socket
 * pair), the same target each time: it must never keep one of them. */
static void test_monitor_killed_holding_uffd(void **state)
{
	struct monitor m = { .kill_in = BGS_TSTAGE_UFFD_MADE + 1 };
	struct tu_kid k;
	int p[2], st, fds, threads, i;
	char c;
	pid_t mon;

	(void)state;
	tu_need_root("a uid-65534 target, /dev/userfaultfd");
	region_kid(&k, true, 1, 1, 1);
	fds = tu_count_fds(k.pid, NULL);
	threads = count_threads(k.pid);
	assert_int_equal(pipe(p), 0);
	m.report = p[1];
	for (i = 0; i < 20; i++) {
		fflush(NULL);
		mon = fork();
		if (mon == 0)
			monitor_main(&m, &k);
		assert_int_equal(read(p[0], &c, 1), 1);
		assert_int_equal(c, BGS_TSTAGE_UFFD_MADE);
		assert_int_equal(waitpid(mon, &st, 0), mon);
		assert_true(kid_as_before(k.pid, fds, threads, 65534));
	}
	fprintf(stderr,
		"# killed %d times holding a new uffd: the target kept its "
		"%d descriptors and %d threads\n",
		i, fds, threads);
	tu_kid_send(&k, 'w');
	assert_true(wait_done(&k, 1, 3000));
	assert_int_equal(tu_kid_finish(&k, 5000), 0);
	close(p[0]);
	close(p[1]);
}

static const char *role_name(enum tu_role role)
{
	switch (role) {
	case TU_BUSY:
		return "busy";
	case TU_FUTEX:
		return "timed-futex";
	default:
		return "blocked";
	}
}

static void kill_series(bool nonroot, enum tu_role role)
{
	int kill_at, stage, last = -2;

	for (kill_at = 1; kill_at < 100; kill_at++) {
		stage = trial(nonroot, role, kill_at);
		if (stage < 0)
			break;
		last = stage;
	}
	assert_true(kill_at > 1 && kill_at < 100);
	assert_int_equal(last, BGS_TSTAGE_THAWED);
	fprintf(stderr,
		"# %s target, %s thread: killed at %d points, then "
		"while blocked on a protected page: the target finished "
		"every time\n",
		nonroot ? "uid 65534" : "root", role_name(role), kill_at - 1);
}

static void test_monitor_killed_at_each_stage(void **state)
{
	(void)state;
	kill_series(false, TU_READER);
}

/* The busy thread runs user code: its FPU state goes through the frame. */
static void test_monitor_killed_busy_thread(void **state)
{
	(void)state;
	kill_series(false, TU_BUSY);
}

/* A timed wait: on the frame path it is re-issued, never EINTR. */
static void test_monitor_killed_futex_thread(void **state)
{
	(void)state;
	kill_series(false, TU_FUTEX);
}

static void test_monitor_killed_nonroot(void **state)
{
	(void)state;
	tu_need_root("a uid-65534 target, /dev/userfaultfd");
	kill_series(true, TU_READER);
}

/* ---- signals across freeze and injection --------------------------------- */

#define STORM 3000

static atomic_ulong *storm_sent, *storm_handled;
static _Atomic pid_t *storm_sink_tid;

static void on_storm(int sig)
{
	(void)sig;
	atomic_fetch_add(storm_handled, 1);
}

static void *storm_sink(void *arg)
{
	(void)arg;
	atomic_store(storm_sink_tid, (pid_t)syscall(SYS_gettid));
	for (;;)
		pause();
	return NULL;
}

/* Queued real-time signals: none may be lost or doubled. */
static void *storm_source(void *arg)
{
	const pid_t pid = getpid();
	pid_t sink;

	(void)arg;
	while (!(sink = atomic_load(storm_sink_tid)))
		usleep(100);
	while (atomic_load(storm_sent) < STORM) {
		if (syscall(SYS_tgkill, pid, sink, SIGRTMIN) == 0)
			atomic_fetch_add(storm_sent, 1);
		usleep(50);
	}
	return NULL;
}

static int storm_setup(struct tu_kid *k)
{
	struct sigaction sa = { .sa_handler = on_storm };
	pthread_t th;

	storm_sent = (atomic_ulong *)&k->shm->arg[2];
	storm_handled = (atomic_ulong *)&k->shm->arg[3];
	storm_sink_tid = (_Atomic pid_t *)&k->shm->arg[4];
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGRTMIN, &sa, NULL) ||
	    pthread_create(&th, NULL, storm_sink, NULL) ||
	    pthread_create(&th, NULL, storm_source, NULL))
		return 1;
	return 0;
}

static int signal_stops(const struct bgs_target *t)
{
	int n = 0;
	size_t i;

	for (i = 0; i < t->nthreads; i++)
		n += t->threads[i].stop == BGS_TSTOP_SIGNAL;
	return n;
}

static void test_signals_across_freeze_and_injection(void **state)
{
	struct tu_kid k = { .setup = storm_setup };
	const uint64_t none[6] = { 0 };
	struct bgs_target t;
	int round, in_signal_stop = 0, injected = 0, i;
	pid_t sink;
	int64_t ret;

	(void)state;
	tu_kid_start(&k, 0, 0, 0);
	while (!(sink = (pid_t)k.shm->arg[4]))
		tu_sleep_ms(1);
	assert_int_equal(bgs_target_open(&t, k.pid), 0);
	for (round = 0; k.shm->arg[2] < STORM; round++) {
		int r;

		assert_int_equal(bgs_target_freeze(&t), 0);
		in_signal_stop += signal_stops(&t);
		r = bgs_target_syscall(&t, round & 1 ? sink : 0, SYS_getpid,
				       none, &ret);
		/* The sink may sit in a signal-delivery-stop: not usable. */
		assert_true(r == 0 || (r == -EBUSY && (round & 1)));
		injected += r == 0;
		assert_int_equal(bgs_target_thaw(&t), 0);
		tu_sleep_ms(1);
	}
	for (i = 0; i < 5000 && k.shm->arg[3] != STORM; i++)
		tu_sleep_ms(1);
	fprintf(stderr,
		"# %d freezes, %d injections, %d signal-delivery "
		"stops: %llu of %d signals handled\n",
		round, injected, in_signal_stop,
		(unsigned long long)k.shm->arg[3], STORM);
	assert_int_equal(k.shm->arg[3], STORM);
	bgs_target_close(&t);
	assert_int_equal(tu_kid_finish(&k, 5000), 0);
}

/* ---- cost ---------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
	const uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void test_timing_ten_threads(void **state)
{
	enum { ROUNDS = 21 };
	uint64_t fr[ROUNDS], in[ROUNDS], th[ROUNDS];
	struct bgs_target_uffd tu;
	struct bgs_target t;
	struct tu_kid k = { 0 };
	int r;

	(void)state;
	tu_kid_start(&k, 4, 3, 1); /* + a futex waiter + main: 10 */
	assert_int_equal(bgs_target_open(&t, k.pid), 0);
	assert_int_equal(bgs_target_inject_prepare(&t), 0);
	for (r = 0; r < ROUNDS; r++) {
		assert_int_equal(bgs_target_freeze(&t), 0);
		assert_int_equal(bgs_target_inject_uffd(&t, 0, &tu), 0);
		close(tu.fd);
		assert_int_equal(bgs_target_thaw(&t), 0);
		fr[r] = t.freeze_ns;
		in[r] = t.inject_ns;
		th[r] = t.thaw_ns;
		tu_sleep_ms(2);
	}
	qsort(fr, ROUNDS, sizeof(fr[0]), cmp_u64);
	qsort(in, ROUNDS, sizeof(in[0]), cmp_u64);
	qsort(th, ROUNDS, sizeof(th[0]), cmp_u64);
	fprintf(stderr,
		"# 10 threads (4 busy), median of %d: freeze %.0f us, "
		"inject uffd %.0f us, thaw %.0f us (max %.0f / %.0f / %.0f)\n",
		ROUNDS, fr[ROUNDS / 2] / 1e3, in[ROUNDS / 2] / 1e3,
		th[ROUNDS / 2] / 1e3, fr[ROUNDS - 1] / 1e3,
		in[ROUNDS - 1] / 1e3, th[ROUNDS - 1] / 1e3);
	bgs_target_close(&t);
	assert_int_equal(tu_kid_finish(&k, 5000), 0);
}

/* ---- the helper runs no code of the target's user ---------------------- */

struct rewrite {
	struct bgs_target *t;
	int mem; /* the target's /proc/PID/mem, opened while it was dumpable */
	bool done;
};

/* The /dev/userfaultfd descriptor in any thread of @pid, or -1. */
static int dev_uffd_fd(pid_t pid)
{
	char path[300], link[64];
	struct dirent *task, *fd;
	DIR *tasks, *fds;
	int found = -1;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	tasks = opendir(path);
	while (tasks && found < 0 && (task = readdir(tasks))) {
		snprintf(path, sizeof(path), "/proc/%d/task/%s/fd", (int)pid,
			 task->d_name);
		fds = task->d_name[0] != '.' ? opendir(path) : NULL;
		while (fds && found < 0 && (fd = readdir(fds))) {
			char at[600];
			ssize_t n;

			snprintf(at, sizeof(at), "%s/%s", path, fd->d_name);
			n = readlink(at, link, sizeof(link) - 1);
			if (n > 0 &&
			    (link[n] = 0, !strcmp(link, "/dev/userfaultfd")))
				found = atoi(fd->d_name);
		}
		if (fds)
			closedir(fds);
	}
	if (tasks)
		closedir(tasks);
	return found;
}

/* Once bgsnap holds the uffd, the target's user rewrites the code the
 * helper thread will run on its way out: a thief that sends the
 * /dev/userfaultfd descriptor the helper still holds. */
static void rewrite_hook(void *arg, enum bgs_target_stage stage)
{
	struct rewrite *rw = arg;
	unsigned char code[sizeof(thief_code)];
	const int fd = dev_uffd_fd(rw->t->pid);

	if (stage != BGS_TSTAGE_UFFD_TAKEN || rw->done || fd < 0)
		return;
	rw->done = true;
	memcpy(code, thief_code, sizeof(code));
	memcpy(code + THIEF_FD_AT, &fd, sizeof(fd));
	if (pwrite(rw->mem, code, sizeof(code), (off_t)rw->t->gadget_syscall) !=
	    (ssize_t)sizeof(code))
		fprintf(stderr, "# pwrite: %s\n", strerror(errno));
}

/*
 * Root makes a uffd in a uid-65534 process through /dev/userfaultfd, while
 * a process of that user that opened /proc/PID/mem before the save
 * rewrites the helper's exit path with code that would send the
 * descriptor away: nothing may arrive. (Before the helper's every system
 * call was made exit, the thief received /dev/userfaultfd.)
 */
static void test_helper_runs_no_foreign_code(void **state)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct rewrite rw = { 0 };
	struct bgs_target_uffd u;
	struct bgs_target t;
	struct tu_kid k;
	char path[64];
	int s, got = -1;

	(void)state;
	tu_need_root("a uid-65534 target saved by root");
	s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	memcpy(a.sun_path, "\0bgsQ", 5);
	assert_int_equal(bind(s, (struct sockaddr *)&a, 7), 0);
	region_kid(&k, true, 1, 1, 1);
	snprintf(path, sizeof(path), "/proc/%d/mem", (int)k.pid);
	rw.mem = open(path, O_RDWR | O_CLOEXEC);
	assert_true(rw.mem >= 0);
	rw.t = &t;
	assert_int_equal(bgs_target_open(&t, k.pid), 0);
	t.hook = rewrite_hook;
	t.hook_arg = &rw;
	assert_int_equal(bgs_target_freeze(&t), 0);
	if (bgs_target_inject_uffd(&t, 0, &u) == 0)
		close(u.fd);
	fprintf(stderr, "# rewritten: %s, via /dev/userfaultfd: %d\n",
		rw.done ? "yes" : "no", u.via_dev);
	for (int i = 0; i < 100 && got < 0; i++) {
		got = tu_fd_receive(s);
		if (got < 0)
			tu_sleep_ms(5);
	}
	bgs_target_close(&t);
	close(rw.mem);
	close(s);
	kill(k.pid, SIGKILL);
	waitpid(k.pid, NULL, 0);
	assert_true(rw.done);	   /* the thief was in place */
	assert_int_equal(got, -1); /* nothing arrived */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_syscall_in_each_thread),
		cmocka_unit_test(test_syscall_refusals),
		cmocka_unit_test(test_uffd_root_target),
		cmocka_unit_test(test_uffd_nonroot_target),
		cmocka_unit_test(test_thief_takes_nothing),
		cmocka_unit_test(test_uffd_without_helper),
		cmocka_unit_test(test_monitor_killed_at_each_stage),
		cmocka_unit_test(test_monitor_killed_busy_thread),
		cmocka_unit_test(test_monitor_killed_futex_thread),
		cmocka_unit_test(test_monitor_killed_nonroot),
		cmocka_unit_test(test_monitor_killed_holding_uffd),
		cmocka_unit_test(test_signals_across_freeze_and_injection),
		cmocka_unit_test(test_timing_ten_threads),
		cmocka_unit_test(test_helper_runs_no_foreign_code),
	};

#if !defined(__x86_64__)
	fprintf(stderr, "# SKIP: syscall injection is x86_64 only\n");
	return 77;
#endif
	return cmocka_run_group_tests(tests, NULL, NULL);
}
