/* SPDX-License-Identifier: MIT */
/*
 * bgsnap bench: the guest driver. A fresh 'bgsnap guest' per run, called
 * through cli/guest/guest_client.h, and what it costs during a save: its
 * memory and CPU, sampled.
 *
 * DESIGN
 * Threads: main calls the guest; the sampler (memwatch) runs only while a
 * save runs, started and joined by main, which reads its figures only
 * after the join. The full picture is in the DESIGN block of cmd_bench.c.
 */
#include "bench.h"

#include <bgsnap.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- the guest process --------------------------------------------------- */

/* Send @cmd, read its reply: 0 when it says ok, else -1 after a one-line
 * error. */
int bench_guest_call_ms(struct guest_proc *g, uint64_t ms, const char *cmd)
{
	char err[PATH_MAX + 1024];

	if (!guest_ask(&g->c, ms, cmd, err, sizeof(err)))
		return 0;
	cli_error("bench: %s", err);
	return -1;
}

int bench_guest_call(struct guest_proc *g, const char *cmd)
{
	return bench_guest_call_ms(g, CALL_MS, cmd);
}

/* The guest's threads other than its main one: its writers, listed
 * once it is ready (no save has started a thread of its own yet). */
static void list_writers(struct guest_proc *g)
{
	char path[64];
	struct dirent *e;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)g->c.pid);
	d = opendir(path);
	g->ntid = 0;
	while (d && (e = readdir(d))) {
		const int tid = atoi(e->d_name);

		if (tid > 0 && tid != g->c.pid && g->ntid < MAX_TIDS)
			g->tid[g->ntid++] = tid;
	}
	if (d)
		closedir(d);
}

int bench_guest_start(const struct bench *b, uint64_t size,
		      struct guest_proc *g)
{
	char s_size[32], s_writers[32], s_rate[32], s_seed[32];
	const char *argv[] = { "bgsnap",    "guest",
			       "--size",    s_size,
			       "--writers", s_writers,
			       "--rate",    s_rate,
			       "--kind",    b->thp ? "thp" : "4k",
			       "--pattern", bench_pattern_names[b->pattern],
			       "--seed",    s_seed,
			       NULL };
	int r;

	memset(g, 0, sizeof(*g));
	snprintf(s_size, sizeof(s_size), "%llu", (unsigned long long)size);
	snprintf(s_writers, sizeof(s_writers), "%u", b->writers);
	snprintf(s_rate, sizeof(s_rate), "%llu", (unsigned long long)b->rate);
	snprintf(s_seed, sizeof(s_seed), "%llu", (unsigned long long)b->seed);
	r = guest_spawn(&g->c, b->exe, argv, 0);
	if (r) {
		cli_error("bench: cannot start the guest: %s", strerror(-r));
		return -1;
	}
	/* The first reply comes once the memory is formatted. */
	if (bench_guest_call_ms(g, GUEST_START_MS, "info"))
		return -1;
	g->addr = (uint64_t)guest_num(g->c.reply, "addr");
	g->len = (uint64_t)guest_num(g->c.reply, "len");
	guest_str(g->c.reply, "range", g->range, sizeof(g->range));
	list_writers(g);
	return 0;
}

/* Resident memory and page tables of @pid (0: this process): cheap
 * counters, no page walk. */
static uint64_t resident_bytes(int pid)
{
	static const char *const pte[] = { "VmPTE:" };
	char path[64];
	unsigned long long size = 0, rss = 0;
	FILE *f;

	snprintf(path, sizeof(path),
		 pid ? "/proc/%d/statm" : "/proc/self/statm", pid);
	f = fopen(path, "r");
	if (f) {
		if (fscanf(f, "%llu %llu", &size, &rss) != 2)
			rss = 0;
		fclose(f);
	}
	snprintf(path, sizeof(path),
		 pid ? "/proc/%d/status" : "/proc/self/status", pid);
	return rss * (uint64_t)sysconf(_SC_PAGESIZE) +
	       cli_proc_kb(path, pte, 1);
}

/* Pages of @pid no other process maps, and its page tables: what a fork
 * child costs beyond its parent. Walks its page tables (smaps_rollup). */
static uint64_t private_bytes(int pid)
{
	static const char *const rollup[] = { "Private_Clean:",
					      "Private_Dirty:" };
	static const char *const pte[] = { "VmPTE:" };
	char path[64];
	uint64_t v;

	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", pid);
	v = cli_proc_kb(path, rollup, 2);
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	return v + cli_proc_kb(path, pte, 1);
}

/* The children of @pid's main thread (a fork child of the guest). */
static uint64_t children_bytes(int pid)
{
	char path[80], buf[512];
	uint64_t sum = 0;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", pid, pid);
	if (cli_read_small(path, buf, sizeof(buf)) < 0)
		return 0;
	for (char *save = NULL, *w = strtok_r(buf, " \n", &save); w;
	     w = strtok_r(NULL, " \n", &save))
		sum += private_bytes(atoi(w));
	return sum;
}

/* User and system ticks from a /proc stat file (@children: those of
 * waited-for children too); false if unreadable. */
static bool stat_ticks(const char *path, uint64_t *ticks, uint64_t *children)
{
	char buf[1024];
	unsigned long long ut, st;
	long long cut, cst;
	const char *p;

	if (cli_read_small(path, buf, sizeof(buf)) < 0)
		return false;
	/* Fields 14 to 17 (utime stime cutime cstime), counted after the
	 * command name, which may hold anything but ends at the last ')'. */
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 1,
			 " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u "
			 "%*u %llu %llu %lld %lld",
			 &ut, &st, &cut, &cst) != 4)
		return false;
	*ticks = ut + st;
	if (children)
		*children = (uint64_t)(cut + cst);
	return true;
}

static uint64_t task_ticks(int pid, int tid)
{
	char path[80];
	uint64_t t = 0;

	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", pid, tid);
	else
		snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
	stat_ticks(path, &t, NULL);
	return t;
}

static void cpu_snap(const struct guest_proc *g, struct cpu_snap *c)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)g->c.pid);
	stat_ticks(path, &c->total, &c->children);
	c->main = task_ticks(g->c.pid, g->c.pid);
	for (int i = 0; i < g->ntid; i++)
		c->writer[i] = task_ticks(g->c.pid, g->tid[i]);
	stat_ticks("/proc/self/stat", &c->self_total, NULL);
	c->self_main = task_ticks(0, (int)getpid());
}

/* From @a to @b: the CPU seconds of the saving threads (those that came
 * and went in the guest, its reaped children, ours but this thread and
 * the sampler), the writers, and the threads that started the save. */
static void cpu_figures(const struct cpu_snap *a, const struct cpu_snap *b,
			int nwriters, uint64_t sampler_ns, double *f)
{
	const double tick = 1.0 / (double)sysconf(_SC_CLK_TCK);
	double writers = 0;

	for (int i = 0; i < nwriters; i++)
		/* A writer that is gone reads 0; writers do not end. */
		if (b->writer[i] >= a->writer[i])
			writers += (double)(b->writer[i] - a->writer[i]);
	const double guest_rest = (double)(b->total - a->total) -
				  (double)(b->main - a->main) - writers;
	const double self_rest = (double)(b->self_total - a->self_total) -
				 (double)(b->self_main - a->self_main);

	f[F_CPU_SAVER] = fmax(0, (guest_rest + self_rest +
				  (double)(b->children - a->children)) *
						 tick -
					 (double)sampler_ns / 1e9);
	f[F_CPU_WRITERS] = writers * tick;
	f[F_CPU_MAIN] =
		(double)(b->main - a->main + b->self_main - a->self_main) *
		tick;
}

static void *memwatch_main(void *arg)
{
	struct memwatch *m = arg;
	uint64_t children = 0;
	struct timespec ts;

	while (!atomic_load(&m->stop)) {
		const uint64_t main_now =
			resident_bytes(m->guest) + resident_bytes(0);

		if (m->samples++ % CHILD_EVERY == 0)
			children = children_bytes(m->guest);
		m->last_main = main_now;
		if (main_now + children > m->peak)
			m->peak = main_now + children;
		nanosleep(&(struct timespec){ 0, SAMPLE_NS }, NULL);
	}
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	m->own_cpu_ns =
		(uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
	return NULL;
}

int bench_memwatch_start(struct memwatch *m, const struct guest_proc *g)
{
	memset(m, 0, sizeof(*m));
	m->g = g;
	m->guest = g->c.pid;
	cpu_snap(g, &m->cpu0);
	m->before = resident_bytes(m->guest) + resident_bytes(0);
	m->peak = m->last_main = m->before;
	return -pthread_create(&m->thread, NULL, memwatch_main, m);
}

/* Into @f: the peak extra bytes, and the CPU figures. @child_end: a
 * fork child's own measure at its end (its pages are gone before we can
 * sample them), or 0. */
void bench_memwatch_stop(struct memwatch *m, uint64_t child_end, double *f)
{
	struct cpu_snap cpu1 = m->cpu0;
	uint64_t peak;

	atomic_store(&m->stop, true);
	pthread_join(m->thread, NULL);
	cpu_snap(m->g, &cpu1);
	cpu_figures(&m->cpu0, &cpu1, m->g->ntid, m->own_cpu_ns, f);
	peak = m->peak;
	if (m->last_main + child_end > peak)
		peak = m->last_main + child_end;
	f[F_MEM] = peak > m->before ? (double)(peak - m->before) : 0;
}
