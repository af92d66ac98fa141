/* SPDX-License-Identifier: MIT */
#include "tu_target.h"
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fenv.h>
#include <grp.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- in the kid ---------------------------------------------------------- */

struct worker {
	struct tu_kid *k;
	int i;
};

__attribute__((format(printf, 2, 3))) static void
kid_fail(struct tu_kid_shm *shm, const char *fmt, ...)
{
	int expected = 0;
	va_list ap;

	if (!atomic_compare_exchange_strong(&shm->failed, &expected, 1))
		return;
	va_start(ap, fmt);
	vsnprintf(shm->why, sizeof(shm->why), fmt, ap);
	va_end(ap);
}

/* d lives in an XMM register across the loop; if the FPU state were lost
 * or reset under it, d would no longer equal n. */
static void busy(struct tu_kid *k, int i)
{
	struct tu_kid_shm *shm = k->shm;
	uint64_t n = 0;
	double d = 0.0;

	fesetround(FE_TOWARDZERO);
	while (!atomic_load_explicit(&shm->stop, memory_order_relaxed)) {
		d += 1.0;
		n++;
		if ((n & 0xffff) == 0) {
			if (d != (double)n)
				kid_fail(shm, "busy %d: FPU state lost (%ld)",
					 i, (long)n);
			if (fegetround() != FE_TOWARDZERO)
				kid_fail(shm,
					 "busy %d: rounding mode lost (%d)", i,
					 fegetround());
			atomic_fetch_add(&shm->count[i], 1);
		}
	}
}

static void reader(struct tu_kid *k, int i)
{
	struct tu_kid_shm *shm = k->shm;
	uint64_t msg, want = 1;

	for (;;) {
		const ssize_t r = read(k->in_feed[i], &msg, sizeof(msg));

		if (r == 0)
			return;
		if (r != sizeof(msg)) {
			kid_fail(shm, "reader %d: read returned %ld", i,
				 r < 0 ? -errno : (long)r);
			return;
		}
		if (msg != want)
			kid_fail(shm, "reader %d: message %ld out of order", i,
				 (long)msg);
		want = msg + 1;
		atomic_fetch_add(&shm->count[i], 1);
	}
}

static void sleeper(struct tu_kid *k, int i)
{
	struct tu_kid_shm *shm = k->shm;

	while (!atomic_load(&shm->stop)) {
		const struct timespec ts = { 0, 10 * 1000 * 1000 };
		const uint64_t t0 = tu_now_ns();

		if (nanosleep(&ts, NULL))
			kid_fail(shm, "sleeper %d: nanosleep: %s", i,
				 strerror(errno));
		else if (tu_now_ns() - t0 < 10 * 1000 * 1000)
			kid_fail(shm, "sleeper %d: woke early (%ld ns)", i,
				 (long)(tu_now_ns() - t0));
		atomic_fetch_add(&shm->count[i], 1);
	}
}

static void futex_waiter(struct tu_kid *k, int i)
{
	struct tu_kid_shm *shm = k->shm;

	while (!atomic_load(&shm->stop)) {
		const struct timespec ts = { 0, 10 * 1000 * 1000 };
		const uint64_t t0 = tu_now_ns();
		const long r = syscall(SYS_futex, &shm->futex_word, FUTEX_WAIT,
				       0, &ts, NULL, 0);

		if (r == 0 || errno == EAGAIN)
			kid_fail(shm, "futex %d: woken (%ld)", i, r);
		else if (errno != ETIMEDOUT)
			kid_fail(shm, "futex %d: %s", i, strerror(errno));
		else if (tu_now_ns() - t0 < 10 * 1000 * 1000)
			kid_fail(shm, "futex %d: timed out early (%ld ns)", i,
				 (long)(tu_now_ns() - t0));
		atomic_fetch_add(&shm->count[i], 1);
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct tu_kid_shm *shm = w->k->shm;

	shm->tid[w->i] = (pid_t)syscall(SYS_gettid);
	atomic_fetch_add(&shm->started, 1);
	switch (shm->role[w->i]) {
	case TU_BUSY:
		busy(w->k, w->i);
		break;
	case TU_READER:
		reader(w->k, w->i);
		break;
	case TU_SLEEPER:
		sleeper(w->k, w->i);
		break;
	case TU_FUTEX:
		futex_waiter(w->k, w->i);
		break;
	}
	return NULL;
}

static int kid_loop(struct tu_kid *k)
{
	char cmd;

	for (;;) {
		const ssize_t r = read(k->in_ctl, &cmd, 1);

		if (r < 0) {
			kid_fail(k->shm, "main: read: %s", strerror(errno));
			return 1;
		}
		if (r == 0 || cmd == 'q')
			return 0;
		if (k->cmd && k->cmd(k, cmd))
			return 1;
	}
}

static int kid_main(struct tu_kid *k)
{
	static struct worker w[TU_KID_MAX];
	pthread_t th[TU_KID_MAX];
	int i, err;

	if (k->setup && k->setup(k))
		return 2;
	/* Again: a change of credentials in setup clears it. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	for (i = 0; i < k->shm->nthreads; i++) {
		w[i] = (struct worker){ k, i };
		if (pthread_create(&th[i], NULL, worker_main, &w[i]))
			return 3;
	}
	atomic_store(&k->shm->ready, 1);
	err = kid_loop(k);
	atomic_store(&k->shm->stop, 1);
	for (i = 0; i < k->shm->nthreads; i++)
		pthread_join(th[i], NULL);
	return err || atomic_load(&k->shm->failed);
}

/* ---- in the parent ------------------------------------------------------- */

static void roles(struct tu_kid_shm *shm, int nbusy, int nread, int nsleep)
{
	int i, n = 0;

	for (i = 0; i < nbusy; i++)
		shm->role[n++] = TU_BUSY;
	for (i = 0; i < nread; i++)
		shm->role[n++] = TU_READER;
	for (i = 0; i < nsleep; i++)
		shm->role[n++] = TU_SLEEPER;
	for (i = 0; i < nsleep; i++)
		shm->role[n++] = TU_FUTEX;
	shm->nthreads = n;
}

static void make_pipes(struct tu_kid *k)
{
	int p[2], i;

	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	k->in_ctl = p[0];
	k->ctl = p[1];
	for (i = 0; i < k->shm->nthreads; i++) {
		k->feed[i] = k->in_feed[i] = -1;
		if (k->shm->role[i] != TU_READER)
			continue;
		assert_int_equal(pipe2(p, O_CLOEXEC), 0);
		k->in_feed[i] = p[0];
		k->feed[i] = p[1];
	}
}

static void close_kid_ends(struct tu_kid *k, bool parent)
{
	int i;

	close(parent ? k->in_ctl : k->ctl);
	for (i = 0; i < k->shm->nthreads; i++) {
		const int fd = parent ? k->in_feed[i] : k->feed[i];

		if (fd >= 0)
			close(fd);
	}
}

void tu_kid_start(struct tu_kid *k, int nbusy, int nread, int nsleep)
{
	const uint64_t deadline = tu_now_ns() + 5000000000ULL;

	k->shm = mmap(NULL, sizeof(*k->shm), PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(k->shm != MAP_FAILED);
	assert_true(nbusy + nread + 2 * nsleep <= TU_KID_MAX);
	roles(k->shm, nbusy, nread, nsleep);
	make_pipes(k);
	k->next_msg = 0;
	fflush(NULL);
	k->pid = fork();
	assert_true(k->pid >= 0);
	if (k->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close_kid_ends(k, false);
		_exit(kid_main(k));
	}
	close_kid_ends(k, true);
	while (!atomic_load(&k->shm->ready) ||
	       atomic_load(&k->shm->started) < k->shm->nthreads) {
		int st;

		assert_true(tu_now_ns() < deadline);
		assert_int_equal(waitpid(k->pid, &st, WNOHANG), 0);
		tu_sleep_ms(1);
	}
}

pid_t tu_kid_tid(const struct tu_kid *k, enum tu_role role, int n)
{
	int i;

	for (i = 0; i < k->shm->nthreads; i++)
		if (k->shm->role[i] == role && n-- == 0)
			return k->shm->tid[i];
	return 0;
}

bool tu_wait_syscall(pid_t pid, pid_t tid, long nr, int timeout_ms)
{
	const uint64_t deadline = tu_now_ns() + (uint64_t)timeout_ms * 1000000;
	char path[64], buf[64];

	snprintf(path, sizeof(path), "/proc/%d/task/%d/syscall", (int)pid,
		 (int)tid);
	while (tu_now_ns() < deadline) {
		const int fd = open(path, O_RDONLY | O_CLOEXEC);
		ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
		long cur;

		if (fd >= 0)
			close(fd);
		if (n > 0) {
			buf[n] = '\0';
			/* "running" or "-1 ..." outside a syscall */
			if (sscanf(buf, "%ld", &cur) == 1 && cur >= 0 &&
			    (nr < 0 || cur == nr) &&
			    tu_thread_state(pid, tid) == 'S')
				return true;
		}
		tu_sleep_ms(1);
	}
	return false;
}

void tu_kid_feed(struct tu_kid *k)
{
	const uint64_t n = ++k->next_msg;
	int i;

	for (i = 0; i < k->shm->nthreads; i++)
		if (k->feed[i] >= 0)
			assert_int_equal(write(k->feed[i], &n, sizeof(n)),
					 sizeof(n));
}

void tu_kid_send(struct tu_kid *k, char cmd)
{
	assert_int_equal(write(k->ctl, &cmd, 1), 1);
}

int tu_kid_reap(struct tu_kid *k, int timeout_ms)
{
	const uint64_t deadline = tu_now_ns() + (uint64_t)timeout_ms * 1000000;
	int st, code, i;
	pid_t r;

	while ((r = waitpid(k->pid, &st, WNOHANG)) == 0) {
		if (tu_now_ns() > deadline) {
			fprintf(stderr, "# kid %d did not finish in %d ms\n",
				(int)k->pid, timeout_ms);
			tu_kid_kill(k);
			return -1;
		}
		tu_sleep_ms(1);
	}
	if (r < 0) {
		fprintf(stderr, "# kid %d: waitpid: %s\n", (int)k->pid,
			strerror(errno));
		code = -1;
	} else if (WIFEXITED(st)) {
		code = WEXITSTATUS(st);
	} else {
		fprintf(stderr, "# kid %d killed by signal %d\n", (int)k->pid,
			WTERMSIG(st));
		code = 128 + WTERMSIG(st);
	}
	if (code > 0 && code < 128)
		fprintf(stderr, "# kid failed (%d): %s\n", code, k->shm->why);
	close(k->ctl);
	for (i = 0; i < k->shm->nthreads; i++)
		if (k->feed[i] >= 0)
			close(k->feed[i]);
	munmap(k->shm, sizeof(*k->shm));
	k->pid = 0;
	return code;
}

int tu_kid_finish(struct tu_kid *k, int timeout_ms)
{
	int i;

	tu_kid_feed(k);
	for (i = 0; i < k->shm->nthreads; i++)
		if (k->feed[i] >= 0) {
			close(k->feed[i]);
			k->feed[i] = -1;
		}
	tu_kid_send(k, 'q');
	return tu_kid_reap(k, timeout_ms);
}

void tu_kid_kill(struct tu_kid *k)
{
	if (k->pid > 0) {
		kill(k->pid, SIGKILL);
		waitpid(k->pid, NULL, 0);
		k->pid = 0;
	}
}

int tu_count_fds(pid_t pid, const char *what)
{
	char path[64], link[PATH_MAX];
	struct dirent *de;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	d = opendir(path);
	if (!d)
		return -1;
	while ((de = readdir(d))) {
		char fdpath[320];
		ssize_t len;

		if (de->d_name[0] == '.')
			continue;
		snprintf(fdpath, sizeof(fdpath), "%s/%s", path, de->d_name);
		len = readlink(fdpath, link, sizeof(link) - 1);
		if (len < 0)
			continue;
		link[len] = '\0';
		n += !what || strstr(link, what);
	}
	closedir(d);
	return n;
}

/* setuid() leaves the process non-dumpable, out of its new user's reach;
 * a program that user started is dumpable, as it is made again here. */
int tu_drop_privileges(unsigned id)
{
	if (setgroups(0, NULL) || setgid(id) || setuid(id) ||
	    prctl(PR_SET_DUMPABLE, 1))
		return -errno;
	return 0;
}

char tu_thread_state(pid_t pid, pid_t tid)
{
	char path[64], buf[512], *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", (int)pid,
		 (int)tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return '?';
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return '?';
	buf[n] = '\0';
	p = strrchr(buf, ')');
	return p && p[1] && p[2] ? p[2] : '?';
}
