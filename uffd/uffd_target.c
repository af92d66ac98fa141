/* SPDX-License-Identifier: MIT */
/*
 * Target lifetime, freeze and thaw, and why ptrace is refused.
 *
 * Freezing uses PTRACE_SEIZE + PTRACE_INTERRUPT, never PTRACE_ATTACH: SEIZE
 * sends no SIGSTOP, so a group stop the target was in stays its own, and the
 * stop we cause is PTRACE_EVENT_STOP, which ends harmlessly if bgsnap dies
 * (the kernel detaches a dead tracer's tracees and they simply continue).
 * PTRACE_O_TRACECLONE auto-attaches threads created by a seized thread, so
 * the only threads that can escape a pass over /proc/PID/task are ones made
 * by threads not yet seized; the next pass finds them. When a pass finds
 * none and every known thread is stopped, no thread can run.
 * PTRACE_O_TRACESYSGOOD makes syscall-stops report SIGTRAP|0x80, which is
 * not a valid signal: if bgsnap dies in one, nothing is delivered (a plain
 * SIGTRAP would be, and would kill the target) — see uffd_target_inject.c.
 */
#include "uffd_target.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SEIZE_OPTS		(PTRACE_O_TRACECLONE | PTRACE_O_TRACESYSGOOD)
#define DEFAULT_STOP_TIMEOUT_MS 2000
/* Bounds a thaw that waits for killed threads to finish exiting. */
#define REAP_TIMEOUT_MS	   1000
#define CAP_SYS_PTRACE_BIT 19

uint64_t bgs_target_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

int bgs_target_fail(struct bgs_target *t, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(t->msg, sizeof(t->msg), fmt, ap);
	va_end(ap);
	return err;
}

int bgs_target_slurp(const char *path, char **text, size_t *len)
{
	size_t cap = 16384, n = 0;
	char *buf = malloc(cap), *bigger;
	int fd, err = 0;

	if (!buf)
		return -ENOMEM;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		goto out_free;
	}
	for (;;) {
		ssize_t r;

		if (cap - n < 4096) {
			bigger = realloc(buf, cap * 2);
			if (!bigger) {
				err = -ENOMEM;
				goto out_close;
			}
			buf = bigger;
			cap *= 2;
		}
		r = read(fd, buf + n, cap - n - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			err = -errno;
			goto out_close;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	buf[n] = '\0';
	close(fd);
	*text = buf;
	if (len)
		*len = n;
	return 0;
out_close:
	close(fd);
out_free:
	free(buf);
	return err;
}

/* ---- /proc/PID/status ---------------------------------------------------- */

struct pstatus {
	char name[32];
	char state;
	pid_t ppid, tracer;
	unsigned threads;
	uid_t uid[3];
	uint64_t capeff;
};

static void status_line(struct pstatus *ps, const char *line)
{
	unsigned long long cap;
	unsigned u[3];

	if (sscanf(line, "Name:\t%31[^\n]", ps->name) == 1)
		return;
	if (sscanf(line, "State:\t%c", &ps->state) == 1)
		return;
	if (sscanf(line, "PPid:\t%d", &ps->ppid) == 1)
		return;
	if (sscanf(line, "TracerPid:\t%d", &ps->tracer) == 1)
		return;
	if (sscanf(line, "Threads:\t%u", &ps->threads) == 1)
		return;
	if (sscanf(line, "CapEff:\t%llx", &cap) == 1) {
		ps->capeff = cap;
		return;
	}
	if (sscanf(line, "Uid:\t%u\t%u\t%u", &u[0], &u[1], &u[2]) == 3) {
		ps->uid[0] = u[0];
		ps->uid[1] = u[1];
		ps->uid[2] = u[2];
	}
}

/* @pid may be a thread id: /proc/TID/status works for threads too. */
static int read_status(pid_t pid, struct pstatus *ps)
{
	char path[64], *text, *line, *save = NULL;
	int err;

	memset(ps, 0, sizeof(*ps));
	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	else
		snprintf(path, sizeof(path), "/proc/self/status");
	err = bgs_target_slurp(path, &text, NULL);
	if (err)
		return err;
	for (line = strtok_r(text, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save))
		status_line(ps, line);
	free(text);
	return 0;
}

static bool state_dead(char state)
{
	return state == 'Z' || state == 'X' || state == 'x';
}

/* ---- why ptrace is refused ----------------------------------------------- */

static int read_yama(void)
{
	FILE *f = fopen("/proc/sys/kernel/yama/ptrace_scope", "re");
	int v = -1;

	if (f) {
		if (fscanf(f, "%d", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

static bool descends_from_us(pid_t pid)
{
	const pid_t me = getpid();
	struct pstatus ps;
	int hops;

	for (hops = 0; hops < 64 && pid > 1; hops++) {
		if (read_status(pid, &ps))
			return false;
		if (ps.ppid == me)
			return true;
		pid = ps.ppid;
	}
	return false;
}

static void read_comm(pid_t pid, char *buf, size_t len)
{
	char path[64];
	ssize_t n;
	int fd;

	buf[0] = '\0';
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n <= 0)
		n = 0;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
}

void bgs_target_gather_facts(pid_t pid, struct bgs_target_facts *f)
{
	struct pstatus ps, me;

	memset(f, 0, sizeof(*f));
	f->pid = pid;
	f->my_uid = getuid();
	f->yama = read_yama();
	if (!read_status(0, &me))
		f->cap_ptrace = me.capeff & (1ULL << CAP_SYS_PTRACE_BIT);
	if (read_status(pid, &ps))
		return;
	memcpy(f->comm, ps.name, sizeof(f->comm));
	f->state = ps.state;
	f->tracer = ps.tracer;
	memcpy(f->uid, ps.uid, sizeof(f->uid));
	if (f->tracer)
		read_comm(f->tracer, f->tracer_comm, sizeof(f->tracer_comm));
	f->descendant = descends_from_us(pid);
}

static bool other_user(const struct bgs_target_facts *f)
{
	return f->uid[0] != f->my_uid || f->uid[1] != f->my_uid ||
	       f->uid[2] != f->my_uid;
}

/* The checks in the order the kernel makes them (ptrace_attach: exit
 * state, already traced; then __ptrace_may_access: uids, dumpable, LSMs
 * such as Yama), so the first that fails is the cause. */
void bgs_target_explain_eperm(const struct bgs_target_facts *f, char *buf,
			      size_t len)
{
	const int pid = (int)f->pid;

	if (state_dead(f->state))
		snprintf(buf, len, "process %d (%s) is exiting (state %c)", pid,
			 f->comm, f->state);
	else if (f->tracer && !strcmp(f->tracer_comm, "bgsnap"))
		snprintf(buf, len,
			 "another save or restore of process %d (%s) runs: "
			 "bgsnap pid %d has it stopped; try again when it "
			 "is done",
			 pid, f->comm, (int)f->tracer);
	else if (f->tracer)
		snprintf(buf, len,
			 "process %d (%s) is already traced by pid "
			 "%d (%s); detach that tracer first",
			 pid, f->comm, (int)f->tracer, f->tracer_comm);
	else if (other_user(f) && !f->cap_ptrace)
		snprintf(buf, len,
			 "process %d (%s) belongs to uid %u and "
			 "bgsnap runs as uid %u without CAP_SYS_PTRACE",
			 pid, f->comm, (unsigned)f->uid[1],
			 (unsigned)f->my_uid);
	else if (f->yama == 3)
		snprintf(buf, len,
			 "ptrace is disabled on this system "
			 "(kernel.yama.ptrace_scope=3)");
	else if (f->yama == 2 && !f->cap_ptrace)
		snprintf(buf, len,
			 "kernel.yama.ptrace_scope=2 allows ptrace "
			 "only with CAP_SYS_PTRACE (run bgsnap as root)");
	else if (f->yama == 1 && !f->cap_ptrace && !f->descendant)
		snprintf(buf, len,
			 "kernel.yama.ptrace_scope=1 allows ptrace "
			 "of descendants only: process %d is not a child of "
			 "bgsnap (run as root, or set ptrace_scope to 0)",
			 pid);
	else if (!f->cap_ptrace)
		snprintf(buf, len,
			 "ptrace of process %d (%s) not permitted: "
			 "it is not dumpable (setuid or PR_SET_DUMPABLE=0) or "
			 "a security module refuses",
			 pid, f->comm);
	else
		snprintf(buf, len,
			 "ptrace of process %d (%s) not permitted "
			 "by a security module (SELinux, AppArmor?)",
			 pid, f->comm);
}

bool bgs_target_has_uffd(pid_t pid)
{
	char path[64], link[64];
	struct dirent *de;
	bool found = false;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	dir = opendir(path);
	while (dir && !found && (de = readdir(dir))) {
		const ssize_t n = readlinkat(dirfd(dir), de->d_name, link,
					     sizeof(link) - 1);

		if (n > 0) {
			link[n] = '\0';
			found = !strcmp(link, "anon_inode:[userfaultfd]");
		}
	}
	if (dir)
		closedir(dir);
	return found;
}

/* @tracer: another tracer seen on @tid while bgsnap tried (0: none),
 * the cause when it has let go since. */
static int explain(struct bgs_target *t, pid_t tid, pid_t tracer)
{
	struct bgs_target_facts f;

	bgs_target_gather_facts(tid, &f);
	f.pid = t->pid;
	if (!f.tracer && tracer) {
		f.tracer = tracer;
		read_comm(tracer, f.tracer_comm, sizeof(f.tracer_comm));
	}
	bgs_target_explain_eperm(&f, t->msg, sizeof(t->msg));
	return -EPERM;
}

/* ---- open / close -------------------------------------------------------- */

int bgs_target_open(struct bgs_target *t, pid_t pid)
{
	struct pstatus ps;
	int err;

	memset(t, 0, sizeof(*t));
	t->pid = pid;
	t->memfd[0] = t->memfd[1] = t->pidfd = -1;
	if (pid == getpid())
		return bgs_target_fail(t, -EINVAL,
				       "process %d is bgsnap "
				       "itself",
				       (int)pid);
	t->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (t->pidfd < 0) {
		err = -errno;
		if (err == -ESRCH || err == -EINVAL)
			return bgs_target_fail(t, -ESRCH,
					       "process %d: no such process",
					       (int)pid);
		return bgs_target_fail(t, err, "pidfd_open(%d): %s", (int)pid,
				       strerror(-err));
	}
	err = read_status(pid, &ps);
	if (err == 0 && state_dead(ps.state))
		err = bgs_target_fail(t, -ESRCH,
				      "process %d (%s) has exited "
				      "(state %c: a zombie not yet reaped by "
				      "its parent)",
				      (int)pid, ps.name, ps.state);
	else if (err)
		err = bgs_target_fail(t, -ESRCH, "process %d: no such process",
				      (int)pid);
	if (err)
		goto out_close_pidfd;
	return 0;
out_close_pidfd:
	close(t->pidfd);
	t->pidfd = -1;
	return err;
}

void bgs_target_close(struct bgs_target *t)
{
	if (!t->pid)
		return; /* zeroed, or closed already */
	if (t->nthreads)
		bgs_target_thaw(t);
	if (t->pidfd >= 0)
		close(t->pidfd);
	for (int i = 0; i < 2; i++)
		if (t->memfd[i] >= 0)
			close(t->memfd[i]);
	free(t->threads);
	free(t->xbuf);
	t->threads = NULL;
	t->xbuf = NULL;
	t->nthreads = t->cap = 0;
	t->pidfd = t->memfd[0] = t->memfd[1] = -1;
	t->pid = 0;
}

/* ---- the thread list ----------------------------------------------------- */

static struct bgs_target_thread *find_thread(struct bgs_target *t, pid_t tid)
{
	size_t i;

	for (i = 0; i < t->nthreads; i++)
		if (t->threads[i].tid == tid)
			return &t->threads[i];
	return NULL;
}

/* Room for one more thread, made before it is seized: a thread seized but
 * not listed could never be detached. */
static int reserve_thread(struct bgs_target *t)
{
	struct bgs_target_thread *v;
	size_t cap;

	if (t->nthreads < t->cap)
		return 0;
	cap = t->cap ? t->cap * 2 : 16;
	v = realloc(t->threads, cap * sizeof(*v));
	if (!v)
		return bgs_target_fail(t, -ENOMEM, "out of memory");
	t->threads = v;
	t->cap = cap;
	return 0;
}

static void add_thread(struct bgs_target *t, pid_t tid, bool other_process)
{
	t->threads[t->nthreads++] =
		(struct bgs_target_thread){ .tid = tid,
					    .other_process = other_process };
}

static void drop_thread(struct bgs_target *t, size_t i)
{
	t->threads[i] = t->threads[--t->nthreads];
}

/* ---- seizing ------------------------------------------------------------- */

/*
 * What one pass over /proc/PID/task found. The listing alone may miss
 * threads: a thread released while it is read ends it early (the kernel's
 * walk cannot step on from a thread no longer alive). The count of the
 * process's threads does not: once every thread listed is stopped and a
 * pass finds nothing new, that count must be those listed plus the
 * zombies seen. Any other thread, live or still exiting, means another
 * pass.
 */
struct pass {
	unsigned added;	  /* threads seized */
	unsigned zombies; /* threads that exited, not yet reaped */
	pid_t tracer;	  /* another tracer seen on the thread tried */
};

/* A seize refused with EPERM: a thread being released, a zombie (a group
 * leader that exited stays one until the whole group has), one already
 * ours (auto-attached by TRACECLONE before we saw its clone event), one
 * that another tracer let go of since (2: seize again), or a real
 * refusal. 0 skip, 1 ours, <0 refusal. */
static int seize_refused(struct bgs_target *t, pid_t tid, struct pass *p,
			 bool last_try)
{
	struct pstatus ps;

	if (read_status(tid, &ps))
		return 0; /* gone meanwhile */
	if (ps.state == 'Z')
		p->zombies++;
	if (state_dead(ps.state))
		return 0;
	if (ps.tracer == t->tracer)
		return 1;
	if (ps.tracer)
		p->tracer = ps.tracer;
	/* Untraced now: the refusal was most likely another tracer (a
	 * concurrent save between two of its stops), not a security
	 * module. */
	if (!ps.tracer && !last_try)
		return 2;
	return explain(t, tid, p->tracer);
}

#define SEIZE_TRIES 6

static int seize_try(struct bgs_target *t, pid_t tid, struct pass *p)
{
	int r = 2;

	p->tracer = 0;
	for (int i = 1; r == 2; i++) {
		if (ptrace(PTRACE_SEIZE, tid, NULL, (void *)(long)SEIZE_OPTS) ==
		    0) {
			/* Fails only if the thread is gone; its wait says
			 * so. */
			ptrace(PTRACE_INTERRUPT, tid, NULL, NULL);
			return 3;
		}
		if (errno != EPERM)
			return -errno;
		r = seize_refused(t, tid, p, i == SEIZE_TRIES);
		if (r == 2)
			usleep(1000u << i);
	}
	return r;
}

static int seize_one(struct bgs_target *t, pid_t tid, struct pass *p)
{
	int r;

	if (find_thread(t, tid))
		return 0;
	if ((r = reserve_thread(t)))
		return r;
	/* 3 seized, 1 ours, 0 skip, -EPERM explained, else an errno. */
	r = seize_try(t, tid, p);
	if (r == -ESRCH)
		return 0;
	if (r < 0 && r != -EPERM)
		return bgs_target_fail(t, r, "PTRACE_SEIZE of thread %d: %s",
				       (int)tid, strerror(-r));
	if (r <= 0)
		return r;
	if (r == 1) /* ours already, but maybe never asked to stop */
		ptrace(PTRACE_INTERRUPT, tid, NULL, NULL);
	p->added++;
	add_thread(t, tid, false);
	return 0;
}

static int seize_pass(struct bgs_target *t, struct pass *p)
{
	char path[64];
	struct dirent *de;
	DIR *dir;
	int err = 0;

	*p = (struct pass){ 0 };
	snprintf(path, sizeof(path), "/proc/%d/task", (int)t->pid);
	dir = opendir(path);
	if (!dir)
		return bgs_target_fail(t, -ESRCH, "process %d: no such process",
				       (int)t->pid);
	while (!err && (de = readdir(dir)))
		if (isdigit((unsigned char)de->d_name[0]))
			err = seize_one(t, (pid_t)atoi(de->d_name), p);
	closedir(dir);
	return err;
}

/* Every thread of the process is listed or a zombie (see struct pass).
 * A process gone counts as complete: the caller finds out it exited. */
static bool pass_complete(const struct bgs_target *t, const struct pass *p)
{
	unsigned held = 0;
	struct pstatus ps;

	for (size_t i = 0; i < t->nthreads; i++)
		held += !t->threads[i].other_process;
	return read_status(t->pid, &ps) || ps.threads == held + p->zombies;
}

/* ---- waiting for stops --------------------------------------------------- */

/* Spin briefly (a stop takes microseconds), then sleep a little longer each
 * time. */
static void backoff(unsigned *round)
{
	struct timespec ts = { 0, 0 };

	if (*round < 50) {
		sched_yield();
	} else {
		ts.tv_nsec = *round < 100 ? 20000 : 200000;
		nanosleep(&ts, NULL);
	}
	(*round)++;
}

int bgs_target_wait(pid_t tid, int *status, unsigned timeout_ms)
{
	const uint64_t deadline =
		bgs_target_now_ns() + (uint64_t)timeout_ms * 1000000;
	unsigned round = 0;

	for (;;) {
		const pid_t r = waitpid(tid, status, __WALL | WNOHANG);

		if (r == tid)
			return 1;
		if (r < 0 && errno != EINTR)
			return -errno;
		if (bgs_target_now_ns() > deadline)
			return 0;
		backoff(&round);
	}
}

/* A child made by clone() without CLONE_THREAD is attached all the same
 * (and, sharing the memory with CLONE_VM, is best stopped too), but it is
 * a process of its own: not a thread the process counts. */
static bool in_process(const struct bgs_target *t, pid_t tid)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/task/%d", (int)t->pid, (int)tid);
	return access(path, F_OK) == 0;
}

/* Let a thread go on from a trap that is not the stop we asked for. Any
 * trap clears a pending interrupt (ptrace_stop()), so ask again first: it
 * stops before it runs user code. */
static void continue_to_stop(pid_t tid)
{
	ptrace(PTRACE_INTERRUPT, tid, NULL, NULL);
	ptrace(PTRACE_CONT, tid, NULL, NULL);
}

/* A seized thread made a thread; its child is already attached (by
 * TRACECLONE) and will report its own stop. Without memory to list it now,
 * the next pass over /proc/PID/task finds it (seize_refused: ours). */
static void on_clone(struct bgs_target *t, pid_t tid)
{
	unsigned long child = 0;

	ptrace(PTRACE_GETEVENTMSG, tid, NULL, &child);
	if (child && !find_thread(t, (pid_t)child) && !reserve_thread(t))
		add_thread(t, (pid_t)child, !in_process(t, (pid_t)child));
	continue_to_stop(tid);
}

/* One report of thread @i. Returns 1 if the thread left the list. */
static int on_report(struct bgs_target *t, size_t i, int st)
{
	struct bgs_target_thread *th = &t->threads[i];
	const int event = st >> 16, sig = WSTOPSIG(st);

	if (!WIFSTOPPED(st)) {
		drop_thread(t, i);
		return 1;
	}
	if (event == PTRACE_EVENT_STOP) {
		th->stop =
			sig == SIGTRAP ? BGS_TSTOP_INTERRUPT : BGS_TSTOP_GROUP;
	} else if (event == PTRACE_EVENT_CLONE) {
		on_clone(t, th->tid);
	} else if (event == 0 && sig != (SIGTRAP | 0x80)) {
		th->stop = BGS_TSTOP_SIGNAL;
		th->sig = sig;
	} else {
		continue_to_stop(th->tid);
	}
	return 0;
}

static int stop_timeout(struct bgs_target *t, pid_t tid)
{
	struct pstatus ps;

	if (read_status(tid, &ps))
		ps.state = '?';
	return bgs_target_fail(t, -ETIMEDOUT,
			       "thread %d of process %d did "
			       "not stop within %u ms (state %c: "
			       "uninterruptible sleep?)",
			       (int)tid, (int)t->pid, t->stop_timeout_ms,
			       ps.state);
}

/* Reap one pending report of thread *@i, if any; *@i moves past it.
 * Returns 1 while the thread is still to stop. */
static int poll_one(struct bgs_target *t, size_t *i)
{
	const pid_t tid = t->threads[*i].tid;
	int st;
	pid_t r;

	if (t->threads[*i].stop != BGS_TSTOP_NONE) {
		(*i)++;
		return 0;
	}
	r = waitpid(tid, &st, __WALL | WNOHANG);
	if (r < 0 && errno == ECHILD) {
		drop_thread(t, *i);
		return 0;
	}
	if (r == tid && on_report(t, *i, st))
		return 0; /* slot *i now holds another thread */
	/* on_report may have grown (moved) the array: index again. */
	return t->threads[(*i)++].stop == BGS_TSTOP_NONE;
}

static pid_t first_unstopped(const struct bgs_target *t)
{
	size_t i;

	for (i = 0; i < t->nthreads; i++)
		if (t->threads[i].stop == BGS_TSTOP_NONE)
			return t->threads[i].tid;
	return 0;
}

static int wait_all_stopped(struct bgs_target *t)
{
	const uint64_t deadline =
		bgs_target_now_ns() + (uint64_t)t->stop_timeout_ms * 1000000;
	unsigned round = 0;

	for (;;) {
		unsigned pending = 0;
		size_t i;

		for (i = 0; i < t->nthreads;)
			pending += (unsigned)poll_one(t, &i);
		if (!pending)
			return 0;
		if (bgs_target_now_ns() > deadline)
			return stop_timeout(t, first_unstopped(t));
		backoff(&round);
	}
}

/* ---- freeze / thaw ------------------------------------------------------- */

/* Threads killed while stopped exit instead of being detached. Their tracer
 * must reap them: until then the process cannot be reaped by its parent.
 * A leader reports only after every other thread is reaped, so all are
 * polled together; but when we are its parent, reaping it would take the
 * exit status that the code which started it is waiting for. */
static void reap_killed(struct bgs_target *t)
{
	const uint64_t deadline =
		bgs_target_now_ns() + (uint64_t)REAP_TIMEOUT_MS * 1000000;
	struct bgs_target_thread *leader = find_thread(t, t->pid);
	unsigned round = 0;
	struct pstatus ps;

	if (leader && !read_status(t->pid, &ps) && ps.ppid == getpid())
		drop_thread(t, (size_t)(leader - t->threads));
	while (t->nthreads && bgs_target_now_ns() < deadline) {
		for (size_t i = 0; i < t->nthreads;) {
			int st;
			const pid_t r = waitpid(t->threads[i].tid, &st,
						__WALL | WNOHANG);

			if ((r > 0 && !WIFSTOPPED(st)) ||
			    (r < 0 && errno == ECHILD))
				drop_thread(t, i);
			else
				i++;
		}
		if (t->nthreads)
			backoff(&round);
	}
}

static int detach_all(struct bgs_target *t)
{
	size_t i, killed = 0;
	int err = 0;

	for (i = 0; i < t->nthreads; i++) {
		const struct bgs_target_thread th = t->threads[i];
		const long sig = th.stop == BGS_TSTOP_SIGNAL ? th.sig : 0;

		if (th.stop == BGS_TSTOP_NONE)
			continue; /* detached when bgsnap exits */
		if (!ptrace(PTRACE_DETACH, th.tid, NULL, (void *)sig))
			continue;
		if (errno == ESRCH)
			t->threads[killed++] = th;
		else if (!err)
			err = bgs_target_fail(t, -errno,
					      "PTRACE_DETACH of "
					      "thread %d: %s",
					      (int)th.tid, strerror(errno));
	}
	t->nthreads = killed;
	reap_killed(t);
	t->nthreads = 0;
	t->tracer = 0;
	return err;
}

/* Error path of a freeze: threads we seized must stop before they can be
 * detached; give them a moment, keeping the first error's message. */
static void release(struct bgs_target *t)
{
	char msg[sizeof(t->msg)];
	const unsigned timeout = t->stop_timeout_ms;

	memcpy(msg, t->msg, sizeof(msg));
	t->stop_timeout_ms = 200;
	wait_all_stopped(t);
	detach_all(t);
	t->stop_timeout_ms = timeout;
	memcpy(t->msg, msg, sizeof(msg));
}

int bgs_target_freeze(struct bgs_target *t)
{
	const uint64_t start = bgs_target_now_ns();
	unsigned round = 0;
	struct pass pass;
	int err;

	if (t->nthreads)
		return bgs_target_fail(t, -EBUSY,
				       "process %d is already "
				       "frozen",
				       (int)t->pid);
	if (!t->stop_timeout_ms)
		t->stop_timeout_ms = DEFAULT_STOP_TIMEOUT_MS;
	t->msg[0] = '\0';
	t->tracer = (pid_t)syscall(SYS_gettid);
	for (;;) {
		err = seize_pass(t, &pass);
		if (!err && pass.added)
			err = wait_all_stopped(t);
		if (err || (!pass.added && pass_complete(t, &pass)))
			break;
		if (bgs_target_now_ns() - start >
		    (uint64_t)t->stop_timeout_ms * 1000000) {
			err = bgs_target_fail(t, -ETIMEDOUT,
					      "the threads of process %d kept "
					      "changing for %u ms",
					      (int)t->pid, t->stop_timeout_ms);
			break;
		}
		if (!pass.added)
			backoff(&round); /* a thread is being released */
	}
	/* Seizing went by pid number; the pidfd says whether that is still
	 * the process opened, not a newcomer that reused its pid. */
	if (!err && (!t->nthreads ||
		     syscall(SYS_pidfd_send_signal, t->pidfd, 0, NULL, 0)))
		err = bgs_target_fail(t, -ESRCH,
				      "process %d exited while "
				      "being frozen",
				      (int)t->pid);
	if (err)
		goto out_release;
	t->freeze_ns = bgs_target_now_ns() - start;
	bgs_target_at(t, BGS_TSTAGE_FROZEN);
	return 0;
out_release:
	release(t);
	return err;
}

int bgs_target_thaw(struct bgs_target *t)
{
	const uint64_t start = bgs_target_now_ns();
	int err;

	if (t->tracer && t->tracer != (pid_t)syscall(SYS_gettid))
		return bgs_target_fail(t, -EINVAL,
				       "thaw must come from the "
				       "thread that froze process %d",
				       (int)t->pid);
	err = detach_all(t);
	t->thaw_ns = bgs_target_now_ns() - start;
	bgs_target_at(t, BGS_TSTAGE_THAWED);
	return err;
}

bool bgs_target_frozen(const struct bgs_target *t)
{
	return t->nthreads > 0;
}

bool bgs_target_exited(const struct bgs_target *t, unsigned timeout_ms)
{
	struct pollfd p = { .fd = t->pidfd, .events = POLLIN };

	return t->pidfd >= 0 && poll(&p, 1, (int)timeout_ms) == 1;
}

size_t bgs_target_tids(const struct bgs_target *t, pid_t *tids, size_t max)
{
	size_t i;

	for (i = 0; i < t->nthreads && i < max; i++)
		tids[i] = t->threads[i].tid;
	return t->nthreads;
}
