/* SPDX-License-Identifier: MIT */
/*
 * bgsnap bench: bgsnap side by side with fork() and stop-the-world on one
 * workload, every figure and its floor measured in the same run (the
 * benchmark of record).
 *
 * For each size: the floors (a standalone userfaultfd on a region like
 * the guest's, with the guest's content: protect it whole, the fault
 * round trip; lz4 alone on that content; a plain O_DIRECT write of as
 * many bytes to --dir), then every method, each run on a fresh 'bgsnap
 * guest' (same seed, so the same content; same store settings; files in
 * --dir, deleted after each run). A run: start the guest, let its
 * writers warm up, measure them alone for a second, then save while
 * they run. Medians over --repeat runs; a table, the performance targets
 * checked with ratios from this run, and with several sizes how
 * each figure grows.
 *
 * DESIGN
 * Threads:
 *   main     everything but what follows: the guests (one command per
 *            line, one reply line each, in order: cmd_guest.c), the
 *            floors, the save of uffd-pid (the library's fault and copier
 *            threads then run in this process), the report.
 *   sampler  only while a save runs: every SAMPLE_NS adds up the resident
 *            memory and page tables of the guest and of this process, and
 *            every CHILD_EVERY samples the private pages and page tables
 *            of the guest's children (a fork child); started and joined
 *            by main, which reads its result only after the join.
 *   handler  only during the fault round-trip floor: reads the floor's
 *            userfaultfd and unprotects each faulted page; main writes,
 *            then stops and joins it.
 * Cleanup: a guest dies with us (PR_SET_PDEATHSIG, and the end of its
 * stdin); on every path it gets 'quit' or SIGKILL and its files are
 * removed. SIGINT, SIGTERM and SIGHUP end the run after the current step.
 */
#include "cli.h"
#include "guest_bank.h"
#include "guest_client.h"

#include <bgsnap.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/userfaultfd.h>
#include <lz4.h>
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

#define PAGE		4096u
#define HUGE_2M		(2u << 20)
#define GIB		(1024.0 * 1024.0 * 1024.0)
#define MAX_SIZES	8
#define MAX_REPEAT	15
#define MAX_TIDS	(BANK_MAX_WRITERS + 8)
#define SAMPLE_NS	20000000L /* memory sampling interval */
/* A child's smaps walk costs ~14 ms of CPU per GiB: once a second, as a
 * safety net; a fork child measures itself at its end, its peak. */
#define CHILD_EVERY	50
#define WARMUP_MS	500	  /* the writers run before they are measured */
#define BEFORE_MS	1000	  /* and are measured alone this long */
#define GUEST_START_MS	600000	  /* formatting 4 GiB on a busy machine */
#define CALL_MS		60000
#define SAVE_MS		1800000
#define WP_REPEAT	3
#define FAULTS		2000
#define LZ4_CHUNK	(512u * PAGE) /* a store record's most pages */
#define DISK_BLOCK	(1u << 20)
#define ROLLBACK_PCT	1.0
#define MEM_SLACK	(16u << 20) /* the target: buffer budget + 16 MiB */

int cmd_bench(int argc, char **argv); /* main.c's table */

static const char bench_usage[] =
	"usage: bgsnap bench [--size SIZE | --sizes LIST] [--kind 4k|thp]\n"
	"                    [--writers N] [--pattern random|sequential|hot]\n"
	"                    [--rate max|OPS] [--methods LIST] [--repeat N]\n"
	"                    [--incr-gap DUR] [--incr-dirty PCT] [--dir DIR]\n"
	"                    [--buffer SIZE] [--compress lz4|none] [--seed N]\n"
	"                    [--json] [--quiet]\n"
	"\n"
	"Snapshot a built-in guest (SIZE of memory, writer threads moving money\n"
	"between accounts one per page) while it runs, by each method, each on\n"
	"a fresh guest with the same content and the same store settings, and\n"
	"measure the floors the methods work within, all in this run. Prints a\n"
	"table per size, the targets of issues 7 and 8 with their ratios, and\n"
	"with several sizes how each figure grows; --json writes one document.\n"
	"\n"
	"methods (default: all, in this order):\n"
	"  uffd         bgsnap inside the guest, two-phase arming (the default)\n"
	"  uffd-1phase  the same with BGSNAP_SAVE_ONE_PHASE: all protection\n"
	"               armed inside the pause\n"
	"  uffd-pid     'bgsnap save --pid' from outside (this process, the\n"
	"               library's target API), the guest's memory only\n"
	"  fork         the guest forks; the child saves the memory stop-the-\n"
	"               world through the same store writer; the writers run on\n"
	"  stw          the writers paused for the whole copy\n"
	"  uffd-incr    the second of two snapshots --incr-gap apart (the first\n"
	"               with BGSNAP_SAVE_KEEP_TRACKING, taken with the writers\n"
	"               held; the second BGSNAP_SAVE_INCREMENTAL, under them)\n"
	"  rollback     bgsnap_rollback() once the writers have written 1% of\n"
	"               the pages since a tracked snapshot (taken with them held),\n"
	"               from its undo log; the writers held around it\n"
	"\n"
	"figures (medians over the repeats):\n"
	"  blackout   the longest time any writer was kept from running by the\n"
	"             snapshot start, seen by the writers, the same way for\n"
	"             every method: of each transfer that overlapped the start\n"
	"             window, the time from when it was due (its rate's\n"
	"             schedule, or the end of the writer's last transfer; the\n"
	"             window's opening if later) to its end. The window runs\n"
	"             from the call that starts the save (bgsnap_save_start(),\n"
	"             fork()) to the instant the writers are let go: the\n"
	"             resume callback (uffd, uffd-1phase, uffd-incr; for stw\n"
	"             after the whole copy), fork()'s return in the parent,\n"
	"             the return of bgsnap_save_start() after the thaw\n"
	"             (uffd-pid). Pauses, ptrace stops, faults blocked by the\n"
	"             start and a CPU lost to the arming all count.\n"
	"  pause      the method's own stop: bgsnap's pause to resume, the\n"
	"             ptrace stop (uffd-pid), fork()'s duration\n"
	"  elapsed    from the request to the snapshot file committed\n"
	"  GiB/s      the guest's memory over elapsed\n"
	"  writers    their transfers a second during the save (the start\n"
	"             included), as a share of their rate in the second before\n"
	"  p50 p99 max  transfer latency during the save\n"
	"  memory     peak extra memory: the highest, over the save, of the\n"
	"             resident memory plus page tables of the guest and of the\n"
	"             saving process (this one, for uffd-pid), plus a fork\n"
	"             child's pages not shared with the guest and its page\n"
	"             tables, less the same just before; sampled every 20 ms\n"
	"             (/proc/PID/statm and status; a child's smaps_rollup every\n"
	"             second, and once more by itself at its end)\n"
	"  file       the snapshot file's size\n"
	"  and below: arm (protecting while the writers run, two-phase),\n"
	"  reprotected (pages protected again inside the pause), faults and\n"
	"  stall p99 (write faults bgsnap served, how long a writer waited),\n"
	"  buffers (bgsnap's peak write buffers), cpu: the cores used on\n"
	"  average over elapsed by the saving threads (sv: bgsnap's, or the\n"
	"  fork child), the writers (wr) and the thread that starts the save\n"
	"  (main: it arms); start: the window's length, when in it the pause\n"
	"  began and the worst-stopped transfer was due (a worst stop due\n"
	"  before the pause happened while protection was armed), and the\n"
	"  noise: the longest delay of a writer in its second alone, no save\n"
	"  running (what the machine's load does to the writers); uffd-incr:\n"
	"  the pages it stored (written since its parent), its time and size\n"
	"  against the parent's\n"
	"floors (same size, page kind and content):\n"
	"  write-protect  one UFFDIO_WRITEPROTECT over the populated region, on\n"
	"                 a userfaultfd of its own, no writer (median of 3)\n"
	"  fault          a write to a protected page, a handler thread reads\n"
	"                 the fault and unprotects the page (2 MiB for thp),\n"
	"                 the write completes: p50 and p99 of 2000\n"
	"  lz4            LZ4_compress_fast on one thread over the content in\n"
	"                 2 MiB chunks (the store's record size), GiB/s of input\n"
	"  disk           sequential O_DIRECT writes of 1 MiB, then fsync, as\n"
	"                 many bytes as the memory, into --dir (buffered writes\n"
	"                 plus fsync where O_DIRECT is refused; the table says)\n"
	"\n"
	"options:\n"
	"  -s, --size SIZE      guest memory (default 1G)\n"
	"      --sizes LIST     several sizes, e.g. 1G,4G: a sweep\n"
	"  -k, --kind 4k|thp    page kind (default 4k)\n"
	"  -w, --writers N      writer threads (default 2)\n"
	"  -P, --pattern P      random (default), sequential, or hot (90% of\n"
	"                       writes to 10% of the memory)\n"
	"  -r, --rate max|OPS   transfers a second, all writers (default max)\n"
	"  -m, --methods LIST   comma-separated, from the list above\n"
	"  -n, --repeat N       runs of each method (default 1), medians\n"
	"      --incr-gap DUR   between the two snapshots of uffd-incr\n"
	"                       (default 10s)\n"
	"      --incr-dirty PCT end that gap early once PCT percent of the pages\n"
	"                       were written (default 0: the gap alone)\n"
	"  -d, --dir DIR        where the files go (default $TMPDIR or /tmp)\n"
	"  -b, --buffer SIZE    bgsnap's write buffers (default 64M)\n"
	"  -c, --compress lz4|none  page compression (default lz4)\n"
	"      --seed N         the guest's content and writers (default 1)\n"
	"      --json           one JSON document on standard output\n"
	"  -q, --quiet          no progress lines on standard error\n"
	"  -h, --help           this help\n"
	"\n"
	"Take measurements on a quiet machine: the load average is reported.\n"
	"exit status: 0 every run succeeded (targets missed or not), 1 a run\n"
	"failed, 2 usage error, 4 this system cannot snapshot ('bgsnap caps').\n";

/* ---- methods and figures ------------------------------------------------ */

enum method {
	M_UFFD,
	M_UFFD_1PHASE,
	M_UFFD_PID,
	M_FORK,
	M_STW,
	M_UFFD_INCR,
	M_ROLLBACK,
	NMETHODS
};

static const char *const method_names[NMETHODS] = {
	"uffd", "uffd-1phase", "uffd-pid", "fork", "stw", "uffd-incr",
	"rollback",
};

/* Every figure a run yields; NAN where it does not apply. */
enum fig {
	F_BLACKOUT,	/* ms, seen by the writers */
	F_PAUSE,	/* ms, the method's own stop */
	F_ARM,		/* ms, arming while the owner runs */
	F_REPROT,	/* pages protected again inside the pause */
	F_ELAPSED,	/* s */
	F_GIBS,		/* GiB of memory a second */
	F_WBEFORE,	/* writer transfers/s alone */
	F_WDURING,	/* the same during the save */
	F_WRATIO,	/* during / before */
	F_P50,		/* us */
	F_P99,
	F_MAX,
	F_MEM,		/* bytes */
	F_FILE,		/* bytes */
	F_FAULTS,
	F_STALL99,	/* us */
	F_BUFFER,	/* bytes */
	F_WRITTEN,	/* pages stored (incr) or written (rollback) */
	F_PARENT_ELAPSED, /* s, uffd-incr's first snapshot */
	F_PARENT_FILE,	/* bytes */
	F_ROLLBACK,	/* ms */
	F_ROLLED,	/* pages put back */
	F_NOISE,	/* ms: the longest writer delay in the second alone */
	F_WINDOW,	/* ms: the start window */
	F_WORST_AT,	/* ms into it: the worst-stopped transfer was due */
	F_PAUSE_AT,	/* ms into it: the pause began */
	F_CPU_SAVER,	/* CPU s: bgsnap's threads, a fork child */
	F_CPU_WRITERS,	/* CPU s: the guest's writers */
	F_CPU_MAIN,	/* CPU s: the thread that starts the save (arming) */
	F_LOAD,		/* 1-minute load average at the run's start */
	NFIG
};

/* JSON keys, stable; in this order. */
static const char *const fig_keys[NFIG] = {
	"blackout_ms", "pause_ms", "arm_ms", "reprotected_pages", "elapsed_s",
	"throughput_gib_s", "writers_before_ops_s", "writers_during_ops_s",
	"writers_ratio", "lat_p50_us", "lat_p99_us", "lat_max_us",
	"extra_memory_bytes", "file_bytes", "faults", "stall_p99_us",
	"peak_buffer_bytes", "pages_written", "parent_elapsed_s",
	"parent_file_bytes", "rollback_ms", "rollback_pages", "noise_ms",
	"start_window_ms",
	"worst_due_ms", "pause_at_ms", "cpu_saver_s",
	"cpu_writers_s", "cpu_main_s", "load_avg_1m",
};

struct run {
	double f[NFIG];
	bool ok;
};

struct floors {
	double wp_ms;
	double fault_p50_us, fault_p99_us;
	double lz4_gibs, lz4_ratio;
	double disk_gibs;
	bool disk_direct;
	bool ok;
};

struct size_result {
	uint64_t size;
	struct floors fl;
	struct run runs[NMETHODS][MAX_REPEAT];
	struct run med[NMETHODS];
};

struct bench {
	uint64_t sizes[MAX_SIZES];
	int nsizes;
	bool thp;
	unsigned writers;
	int pattern;
	uint64_t rate;
	unsigned methods; /* bit per enum method */
	unsigned repeat;
	uint64_t incr_gap_ns;
	double incr_dirty;
	const char *parent_dir;
	uint64_t buffer;
	bool no_compress;
	uint64_t seed;
	bool json, quiet;
	char dir[PATH_MAX - 64]; /* ours, inside parent_dir */
	char exe[PATH_MAX];
	char command[1024]; /* as given, for --json */
	int failures;
	uint64_t start_ns;
	double load_start[3], load_end[3];
	struct size_result *res; /* one per size */
};

static const char *const pattern_names[] = { "random", "sequential", "hot" };

/* Sleep @ms unless interrupted; false when a signal came. */
static bool pause_ms(uint64_t ms)
{
	const uint64_t end = cli_now_ns() + ms * 1000000;

	while (!cli_interrupted() && cli_now_ns() < end)
		nanosleep(&(struct timespec){ 0, 5000000 }, NULL);
	return !cli_interrupted();
}

static void progress(const struct bench *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void progress(const struct bench *b, const char *fmt, ...)
{
	va_list ap;

	if (b->quiet)
		return;
	fprintf(stderr, "bench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void load_avg(double l[3])
{
	FILE *f = fopen("/proc/loadavg", "r");

	l[0] = l[1] = l[2] = NAN;
	if (f) {
		if (fscanf(f, "%lf %lf %lf", &l[0], &l[1], &l[2]) != 3)
			l[0] = l[1] = l[2] = NAN;
		fclose(f);
	}
}

/* ---- the guest process ---------------------------------------------------- */

/* A started guest (guest_client.h) and what its 'info' said. */
struct guest_proc {
	struct guest_client c;
	uint64_t addr, len;
	char range[64];
	int tid[MAX_TIDS]; /* its writers: its threads but main, at start */
	int ntid;
};

/* Send @cmd, read its reply: 0 when it says ok, else -1 after a one-line
 * error. */
static int guest_call_ms(struct guest_proc *g, uint64_t ms, const char *cmd)
{
	char err[PATH_MAX + 1024];

	if (!guest_ask(&g->c, ms, cmd, err, sizeof(err)))
		return 0;
	cli_error("bench: %s", err);
	return -1;
}

static int guest_call(struct guest_proc *g, const char *cmd)
{
	return guest_call_ms(g, CALL_MS, cmd);
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

static int guest_start(const struct bench *b, uint64_t size,
		       struct guest_proc *g)
{
	char s_size[32], s_writers[32], s_rate[32], s_seed[32];
	const char *argv[] = { "bgsnap", "guest", "--size", s_size,
			       "--writers", s_writers, "--rate", s_rate,
			       "--kind", b->thp ? "thp" : "4k", "--pattern",
			       pattern_names[b->pattern], "--seed", s_seed,
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
	if (guest_call_ms(g, GUEST_START_MS, "info"))
		return -1;
	g->addr = (uint64_t)guest_num(g->c.reply, "addr");
	g->len = (uint64_t)guest_num(g->c.reply, "len");
	guest_str(g->c.reply, "range", g->range, sizeof(g->range));
	list_writers(g);
	return 0;
}

/* ---- memory during a save ----------------------------------------------- */

/* CPU clock ticks of the processes and threads involved in a save. */
struct cpu_snap {
	uint64_t total, children; /* the guest, and its waited-for children */
	uint64_t main;		  /* its main thread (it arms an embedded save) */
	uint64_t writer[MAX_TIDS]; /* its writers (guest_proc.tid) */
	uint64_t self_total, self_main; /* this process (uffd-pid saves) */
};

struct memwatch {
	pthread_t thread;
	_Atomic bool stop;
	const struct guest_proc *g;
	int guest;
	uint64_t before; /* main, before the start */
	struct cpu_snap cpu0;
	/* The sampler's, read by main after the join: */
	uint64_t peak;
	uint64_t last_main; /* the guest's and ours at the last sample */
	unsigned samples;
	uint64_t own_cpu_ns; /* the sampler thread's CPU time */
};

/* Resident memory and page tables of @pid (0: this process): cheap
 * counters, no page walk. */
static uint64_t resident_bytes(int pid)
{
	static const char *const pte[] = { "VmPTE:" };
	char path[64];
	unsigned long long size = 0, rss = 0;
	FILE *f;

	snprintf(path, sizeof(path), pid ? "/proc/%d/statm" : "/proc/self/statm",
		 pid);
	f = fopen(path, "r");
	if (f) {
		if (fscanf(f, "%llu %llu", &size, &rss) != 2)
			rss = 0;
		fclose(f);
	}
	snprintf(path, sizeof(path), pid ? "/proc/%d/status" : "/proc/self/status",
		 pid);
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
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", pid, pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
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
	const int fd = open(path, O_RDONLY | O_CLOEXEC);
	const char *p;
	ssize_t n;

	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	/* Fields 14 to 17 (utime stime cutime cstime), counted after the
	 * command name, which may hold anything but ends at the last ')'. */
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u "
			 "%*u %llu %llu %lld %lld", &ut, &st, &cut, &cst) != 4)
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
				  (double)(b->children - a->children)) * tick -
				 (double)sampler_ns / 1e9);
	f[F_CPU_WRITERS] = writers * tick;
	f[F_CPU_MAIN] = (double)(b->main - a->main + b->self_main -
				 a->self_main) * tick;
}

static void *memwatch_main(void *arg)
{
	struct memwatch *m = arg;
	uint64_t children = 0;
	struct timespec ts;

	while (!atomic_load(&m->stop)) {
		const uint64_t main_now = resident_bytes(m->guest) +
					  resident_bytes(0);

		if (m->samples++ % CHILD_EVERY == 0)
			children = children_bytes(m->guest);
		m->last_main = main_now;
		if (main_now + children > m->peak)
			m->peak = main_now + children;
		nanosleep(&(struct timespec){ 0, SAMPLE_NS }, NULL);
	}
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	m->own_cpu_ns = (uint64_t)ts.tv_sec * 1000000000ULL +
			(uint64_t)ts.tv_nsec;
	return NULL;
}

static int memwatch_start(struct memwatch *m, const struct guest_proc *g)
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
static void memwatch_stop(struct memwatch *m, uint64_t child_end, double *f)
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

/* ---- floors ---------------------------------------------------------------- */

static int dcmp(const void *a, const void *b)
{
	const double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	int k = 0;

	for (int i = 0; i < n; i++)
		if (!isnan(v[i]))
			v[k++] = v[i];
	if (!k)
		return NAN;
	qsort(v, (size_t)k, sizeof(*v), dcmp);
	return k % 2 ? v[k / 2] : (v[k / 2 - 1] + v[k / 2]) / 2;
}

struct region {
	uint8_t *map, *mem;
	size_t map_len, len;
	int uffd;
};

/* Like the guest's memory: private anonymous, 4 KiB or THP, with the
 * guest's content (the same seed). */
static int region_map(const struct bench *b, uint64_t size, struct region *r)
{
	const size_t extra = b->thp ? HUGE_2M : 0;
	uintptr_t start;

	memset(r, 0, sizeof(*r));
	r->uffd = -1;
	r->len = b->thp ? (size + HUGE_2M - 1) / HUGE_2M * HUGE_2M :
			  (size + PAGE - 1) / PAGE * PAGE;
	r->map_len = r->len + extra;
	r->map = mmap(NULL, r->map_len, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (r->map == MAP_FAILED) {
		cli_error("bench: floors: cannot map %zu bytes: %s", r->len,
			  strerror(errno));
		return -1;
	}
	start = (uintptr_t)r->map;
	if (extra)
		start = (start + extra - 1) & ~(uintptr_t)(extra - 1);
	r->mem = (uint8_t *)start;
	madvise(r->mem, r->len, b->thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	bank_format(r->mem, r->len, b->seed);
	return 0;
}

static void region_unmap(struct region *r)
{
	if (r->uffd >= 0)
		close(r->uffd);
	if (r->map && r->map != MAP_FAILED)
		munmap(r->map, r->map_len);
}

static double floor_lz4(const struct region *r, double *ratio)
{
	const int bound = LZ4_compressBound((int)LZ4_CHUNK);
	char *dst = malloc((size_t)bound);
	uint64_t out = 0, t0;
	double s;

	if (!dst)
		return NAN;
	t0 = cli_now_ns();
	for (size_t off = 0; off + LZ4_CHUNK <= r->len; off += LZ4_CHUNK)
		out += (uint64_t)LZ4_compress_fast(
			(const char *)r->mem + off, dst, (int)LZ4_CHUNK, bound,
			1);
	s = (double)(cli_now_ns() - t0) / 1e9;
	free(dst);
	*ratio = out ? (double)(r->len / LZ4_CHUNK * LZ4_CHUNK) / (double)out :
		       NAN;
	return (double)r->len / GIB / s;
}

/* Remove @path and wait until the filesystem is done with it: on ext4
 * with "discard" the freed blocks are discarded at the next commit, which
 * would otherwise stall the next measurement. */
static void settle(const char *dir, const char *path)
{
	const int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (path)
		unlink(path);
	if (fd >= 0) {
		syncfs(fd);
		close(fd);
	}
}

static double floor_disk(const struct bench *b, const struct region *r,
			 bool *direct)
{
	char path[PATH_MAX];
	uint64_t t0;
	int fd, err = 0;

	snprintf(path, sizeof(path), "%s/disk-floor", b->dir);
	settle(b->dir, NULL);
	t0 = cli_now_ns();
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_DIRECT,
		  0600);
	*direct = fd >= 0;
	if (fd < 0 && errno == EINVAL)
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		cli_error("bench: floors: %s: %s", path, strerror(errno));
		return NAN;
	}
	for (size_t off = 0; off < r->len && !err; off += DISK_BLOCK) {
		const size_t n = r->len - off < DISK_BLOCK ? r->len - off :
							     DISK_BLOCK;
		const ssize_t w = write(fd, r->mem + off, n);

		if (w != (ssize_t)n)
			err = w < 0 ? errno : EIO;
	}
	if (!err && fsync(fd))
		err = errno;
	close(fd);
	t0 = cli_now_ns() - t0;
	settle(b->dir, path);
	if (err) {
		cli_error("bench: floors: writing %s: %s", path, strerror(err));
		return NAN;
	}
	return (double)r->len / GIB / ((double)t0 / 1e9);
}

static int uffd_wp(int uffd, void *addr, size_t len, bool on)
{
	struct uffdio_writeprotect wp = {
		.range = { .start = (uintptr_t)addr, .len = len },
		.mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};

	return ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) ? -errno : 0;
}

/* A userfaultfd of our own over the region, registered for write
 * protection. Raw syscalls: this is a measuring tool, not the library. */
static int floor_uffd(struct region *r)
{
	struct uffdio_api api = { .api = UFFD_API,
				  .features = UFFD_FEATURE_PAGEFAULT_FLAG_WP };
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)r->mem, .len = r->len },
		.mode = UFFDIO_REGISTER_MODE_WP,
	};

	r->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (r->uffd < 0 || ioctl(r->uffd, UFFDIO_API, &api) ||
	    ioctl(r->uffd, UFFDIO_REGISTER, &reg)) {
		cli_error("bench: floors: userfaultfd: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static double floor_wp(struct region *r)
{
	double t[WP_REPEAT];

	for (int i = 0; i < WP_REPEAT; i++) {
		const uint64_t t0 = cli_now_ns();

		if (uffd_wp(r->uffd, r->mem, r->len, true))
			return NAN;
		t[i] = (double)(cli_now_ns() - t0) / 1e6;
		if (uffd_wp(r->uffd, r->mem, r->len, false))
			return NAN;
	}
	return median(t, WP_REPEAT);
}

struct handler {
	pthread_t thread;
	struct region *r;
	size_t unit; /* what one fault unprotects */
	_Atomic bool stop;
};

static void *handler_main(void *arg)
{
	struct handler *h = arg;
	struct pollfd p = { .fd = h->r->uffd, .events = POLLIN };

	while (!atomic_load(&h->stop)) {
		struct uffd_msg msg;

		if (poll(&p, 1, 10) <= 0)
			continue;
		if (read(h->r->uffd, &msg, sizeof(msg)) != sizeof(msg) ||
		    msg.event != UFFD_EVENT_PAGEFAULT)
			continue;
		uffd_wp(h->r->uffd,
			(void *)(uintptr_t)(msg.arg.pagefault.address &
					    ~(uint64_t)(h->unit - 1)),
			h->unit, false);
	}
	return NULL;
}

/* Writes to protected pages, each served by the handler thread. */
static int floor_faults(struct region *r, bool thp, double *p50, double *p99)
{
	struct handler h = { .r = r, .unit = thp ? HUGE_2M : PAGE };
	const size_t units = r->len / h.unit;
	const size_t n = units < FAULTS ? units : FAULTS;
	double *lat = calloc(n, sizeof(*lat));
	int ret;

	if (!lat || uffd_wp(r->uffd, r->mem, r->len, true)) {
		free(lat);
		return -1;
	}
	ret = -pthread_create(&h.thread, NULL, handler_main, &h);
	for (size_t i = 0; !ret && i < n; i++) {
		/* Spread over the region; the value written is the one there:
		 * the content stays the guest's. */
		_Atomic uint64_t *p = (_Atomic uint64_t *)(
			r->mem + (i * (units / n)) * h.unit + 64);
		const uint64_t v = atomic_load_explicit(p,
							memory_order_relaxed);
		const uint64_t t0 = cli_now_ns();

		atomic_store_explicit(p, v, memory_order_relaxed);
		lat[i] = (double)(cli_now_ns() - t0) / 1e3;
	}
	if (!ret) {
		atomic_store(&h.stop, true);
		pthread_join(h.thread, NULL);
		qsort(lat, n, sizeof(*lat), dcmp);
		*p50 = lat[n / 2];
		*p99 = lat[n * 99 / 100];
	}
	uffd_wp(r->uffd, r->mem, r->len, false);
	free(lat);
	return ret;
}

static void measure_floors(struct bench *b, uint64_t size, struct floors *fl)
{
	char s[CLI_FMT_LEN];
	struct region r;

	memset(fl, 0, sizeof(*fl));
	fl->wp_ms = fl->fault_p50_us = fl->fault_p99_us = NAN;
	fl->lz4_gibs = fl->lz4_ratio = fl->disk_gibs = NAN;
	progress(b, "%s: floors (formatting the content)",
		 cli_fmt_size(s, size));
	if (region_map(b, size, &r))
		return;
	fl->lz4_gibs = floor_lz4(&r, &fl->lz4_ratio);
	fl->disk_gibs = floor_disk(b, &r, &fl->disk_direct);
	if (!floor_uffd(&r)) {
		fl->wp_ms = floor_wp(&r);
		if (floor_faults(&r, b->thp, &fl->fault_p50_us,
				 &fl->fault_p99_us))
			cli_warn("bench: floors: the fault round trip failed");
	}
	region_unmap(&r);
	fl->ok = !isnan(fl->wp_ms) && !isnan(fl->lz4_gibs) &&
		 !isnan(fl->disk_gibs);
	progress(b, "%s: floors: write-protect %.2f ms, fault p50 %.1f us, "
		 "lz4 %.2f GiB/s, disk %.2f GiB/s", s, fl->wp_ms,
		 fl->fault_p50_us, fl->lz4_gibs, fl->disk_gibs);
}

/* ---- one run of a method ----------------------------------------------- */

struct ctx {
	struct bench *b;
	uint64_t size;
	struct guest_proc g;
	char file[PATH_MAX], parent[PATH_MAX];
	struct run *out;
};

static void run_init(struct run *r)
{
	for (int i = 0; i < NFIG; i++)
		r->f[i] = NAN;
	r->ok = false;
}

/* The store settings every method shares, as guest save words. */
static void save_words(const struct bench *b, char *buf, size_t n)
{
	snprintf(buf, n, "buffer=%llu compress=%s nomem",
		 (unsigned long long)b->buffer, b->no_compress ? "none" : "lz4");
}

/* The start window of a guest reply. */
static void take_window(struct ctx *c, const char *reply)
{
	double *f = c->out->f;
	const double pause_at = guest_num_in(reply, "start", "pause_at_ns");

	f[F_BLACKOUT] = guest_num_in(reply, "start", "stop_max_ns") / 1e6;
	f[F_WINDOW] = guest_num_in(reply, "start", "window_ns") / 1e6;
	f[F_WORST_AT] = guest_num_in(reply, "start", "worst_due_ns") / 1e6;
	f[F_PAUSE_AT] = pause_at > 0 ? pause_at / 1e6 : NAN;
}

/* The figures of a guest 'save' reply. */
static void take_save(struct ctx *c, const char *reply)
{
	double *f = c->out->f;
	const double wall = guest_num(reply, "wall_ns") / 1e9;

	take_window(c, reply);
	f[F_PAUSE] = guest_num(reply, "blackout_ms");
	f[F_ARM] = guest_num(reply, "arm_ms");
	f[F_REPROT] = guest_num(reply, "reprotected_pages");
	f[F_ELAPSED] = wall;
	f[F_GIBS] = (double)c->size / GIB / wall;
	f[F_WDURING] = guest_num_in(reply, "writers", "ops_per_s");
	f[F_P50] = guest_num_in(reply, "writers", "lat_p50_ns") / 1e3;
	f[F_P99] = guest_num_in(reply, "writers", "lat_p99_ns") / 1e3;
	f[F_MAX] = guest_num_in(reply, "writers", "lat_max_ns") / 1e3;
	f[F_FILE] = guest_num(reply, "bytes_written");
	f[F_FAULTS] = guest_num(reply, "faults");
	f[F_STALL99] = guest_num(reply, "stall_us_p99");
	f[F_BUFFER] = guest_num(reply, "peak_buffer_bytes");
}

/* uffd, uffd-1phase, fork, stw: the guest saves itself. */
static int run_embedded(struct ctx *c, enum method m)
{
	static const char *const how[NMETHODS] = {
		[M_UFFD] = "uffd", [M_UFFD_1PHASE] = "uffd one-phase",
		[M_FORK] = "fork", [M_STW] = "stw",
	};
	char cmd[PATH_MAX + 256], words[128];
	struct memwatch mw;
	double child;
	int r;

	save_words(c->b, words, sizeof(words));
	snprintf(cmd, sizeof(cmd), "save %s %s %s", c->file, how[m], words);
	r = memwatch_start(&mw, &c->g);
	if (r) {
		cli_error("bench: %s", strerror(-r));
		return -1;
	}
	r = guest_call_ms(&c->g, SAVE_MS, cmd);
	child = r ? 0 : guest_num(c->g.c.reply, "child_private_bytes");
	memwatch_stop(&mw, isnan(child) ? 0 : (uint64_t)child, c->out->f);
	if (r)
		return -1;
	take_save(c, c->g.c.reply);
	if (m == M_FORK)
		c->out->f[F_PAUSE] = guest_num(c->g.c.reply, "fork_ms");
	return 0;
}

static const sigset_t *stop_signals(void)
{
	static sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	return &set;
}

/* The guest's memory, from outside, as 'bgsnap save --pid --include
 * RANGE' does; the start window closed at the start's return. */
static int pid_start(struct ctx *c, struct bgsnap *h, uint64_t *started)
{
	const char *include[] = { c->g.range };
	const struct bgsnap_target_opts topts = { .include = include,
						  .ninclude = 1 };
	const struct bgsnap_save_opts opts = {
		.buffer_budget = c->b->buffer,
		.compression = c->b->no_compress ? BGSNAP_COMPRESS_NONE :
						   BGSNAP_COMPRESS_LZ4,
	};
	sigset_t old;
	int r;

	/* Signals are held back: the library may have the guest stopped
	 * while it attaches. */
	sigprocmask(SIG_BLOCK, stop_signals(), &old);
	r = bgsnap_target_pid(h, c->g.c.pid, &topts);
	/* The start window opens at the start call, as for the others. */
	if (!r)
		r = guest_call(&c->g, "window open") ? -EIO : 0;
	if (!r)
		r = bgsnap_save_start(h, c->file, &opts);
	*started = cli_now_ns();
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (r)
		cli_error("bench: uffd-pid: process %d: %s", (int)c->g.c.pid,
			  *bgsnap_last_error(h) ? bgsnap_last_error(h) :
						  bgsnap_strerror(r));
	return r;
}

static int pid_save(struct ctx *c, struct bgsnap *h, struct bgsnap_stats *st,
		    uint64_t *t0, uint64_t *done)
{
	char cmd[64];
	uint64_t started;
	int r;

	if (guest_call(&c->g, "reset"))
		return -1;
	*t0 = cli_now_ns();
	if (pid_start(c, h, &started))
		return -1;
	snprintf(cmd, sizeof(cmd), "window close %llu",
		 (unsigned long long)started);
	r = guest_call(&c->g, cmd);
	if (!r) {
		r = guest_call(&c->g, "window get");
		take_window(c, c->g.c.reply);
	}
	if (r)
		bgsnap_cancel(h);
	r = bgsnap_wait(h) || r ? -1 : 0;
	*done = cli_now_ns();
	if (r)
		cli_error("bench: uffd-pid: %s", *bgsnap_last_error(h) ?
			  bgsnap_last_error(h) : "the save failed");
	else
		bgsnap_stats(h, st);
	return r;
}

static int run_pid(struct ctx *c)
{
	double *f = c->out->f;
	struct bgsnap_stats st;
	struct memwatch mw;
	struct bgsnap *h;
	uint64_t t0 = 0, done = 0;
	int r = bgsnap_new(&h);

	if (r) {
		cli_error("bench: %s", bgsnap_strerror(r));
		return -1;
	}
	r = memwatch_start(&mw, &c->g);
	if (!r) {
		r = pid_save(c, h, &st, &t0, &done);
		if (!r)
			r = guest_call(&c->g, "stats");
		memwatch_stop(&mw, 0, f);
	}
	bgsnap_free(h);
	if (r)
		return -1;
	f[F_PAUSE] = (double)st.blackout_ns / 1e6;
	f[F_ARM] = (double)st.arm_ns / 1e6;
	f[F_REPROT] = (double)st.reprotected_pages;
	f[F_ELAPSED] = (double)(done - t0) / 1e9;
	f[F_GIBS] = (double)c->size / GIB / f[F_ELAPSED];
	f[F_WDURING] = guest_num(c->g.c.reply, "ops_per_s");
	f[F_P50] = guest_num(c->g.c.reply, "lat_p50_ns") / 1e3;
	f[F_P99] = guest_num(c->g.c.reply, "lat_p99_ns") / 1e3;
	f[F_MAX] = guest_num(c->g.c.reply, "lat_max_ns") / 1e3;
	f[F_FILE] = (double)st.bytes_written;
	f[F_FAULTS] = (double)st.faults;
	f[F_STALL99] = (double)st.stall_ns_p99 / 1e3;
	f[F_BUFFER] = (double)st.peak_buffer_bytes;
	return 0;
}

/* A tracked snapshot of quiet memory (writers held): a base from which
 * what the writers change is measured. */
static int tracked_base(struct ctx *c, const char *extra)
{
	char cmd[PATH_MAX + 256], words[128];

	save_words(c->b, words, sizeof(words));
	snprintf(cmd, sizeof(cmd), "save %s uffd keep held %s %s", c->parent,
		 words, extra);
	if (guest_call(&c->g, "hold"))
		return -1;
	if (guest_call_ms(&c->g, SAVE_MS, cmd)) {
		guest_call(&c->g, "release");
		return -1;
	}
	c->out->f[F_PARENT_ELAPSED] = guest_num(c->g.c.reply, "wall_ns") / 1e9;
	c->out->f[F_PARENT_FILE] = guest_num(c->g.c.reply, "bytes_written");
	return guest_call(&c->g, "release");
}

/* The gap: --incr-gap, or until --incr-dirty percent were written. */
static int incr_gap(struct ctx *c)
{
	const uint64_t end = cli_now_ns() + c->b->incr_gap_ns;
	const double want = (double)c->size / PAGE * c->b->incr_dirty / 100;

	while (cli_now_ns() < end) {
		if (cli_interrupted())
			return -1;
		if (c->b->incr_dirty > 0) {
			if (guest_call(&c->g, "written"))
				return -1;
			if (guest_num(c->g.c.reply, "pages") >= want)
				return 0;
		}
		nanosleep(&(struct timespec){ 0, 5000000 }, NULL);
	}
	return 0;
}

static int run_incr(struct ctx *c)
{
	char cmd[PATH_MAX + 256], words[128];
	struct memwatch mw;
	int r;

	if (tracked_base(c, "") || incr_gap(c))
		return -1;
	save_words(c->b, words, sizeof(words));
	/* Tracking goes on, as in a chain ('bgsnap watch'). */
	snprintf(cmd, sizeof(cmd), "save %s uffd incremental keep %s", c->file,
		 words);
	r = memwatch_start(&mw, &c->g);
	if (r) {
		cli_error("bench: %s", strerror(-r));
		return -1;
	}
	r = guest_call_ms(&c->g, SAVE_MS, cmd);
	memwatch_stop(&mw, 0, c->out->f);
	if (r)
		return -1;
	take_save(c, c->g.c.reply);
	c->out->f[F_WRITTEN] = guest_num(c->g.c.reply, "pages_total") -
			       guest_num(c->g.c.reply, "pages_parent");
	return 0;
}

static int run_rollback(struct ctx *c)
{
	char undo[64], cmd[64];
	/* Room for the content of what is written before the hold. */
	const uint64_t budget = c->size / 25 > (16u << 20) ? c->size / 25 :
							     16u << 20;

	snprintf(undo, sizeof(undo), "undo=%llu", (unsigned long long)budget);
	snprintf(cmd, sizeof(cmd), "rollback dirty=%g timeout=60s",
		 ROLLBACK_PCT);
	if (tracked_base(c, undo) || guest_call(&c->g, cmd))
		return -1;
	c->out->f[F_ROLLBACK] = guest_num(c->g.c.reply, "rollback_ns") / 1e6;
	c->out->f[F_ROLLED] = guest_num(c->g.c.reply, "rolled_back_pages");
	c->out->f[F_WRITTEN] = guest_num(c->g.c.reply, "written_pages");
	return guest_call(&c->g, "untrack");
}

/* The writers alone, warmed up: transfers a second. */
static int writers_alone(struct ctx *c)
{
	if (!pause_ms(WARMUP_MS) || guest_call(&c->g, "reset") ||
	    !pause_ms(BEFORE_MS) || guest_call(&c->g, "stats"))
		return -1;
	c->out->f[F_WBEFORE] = guest_num(c->g.c.reply, "ops_per_s");
	c->out->f[F_NOISE] = guest_num(c->g.c.reply, "stop_max_ns") / 1e6;
	return 0;
}

static int run_method(struct bench *b, uint64_t size, enum method m,
		      struct run *out)
{
	struct ctx c = { .b = b, .size = size, .out = out };
	double load[3];
	uint64_t t0 = cli_now_ns();
	int r;

	run_init(out);
	load_avg(load);
	out->f[F_LOAD] = load[0];
	snprintf(c.file, sizeof(c.file), "%s/%s.bgs", b->dir, method_names[m]);
	snprintf(c.parent, sizeof(c.parent), "%s/%s-parent.bgs", b->dir,
		 method_names[m]);
	r = guest_start(b, size, &c.g);
	if (!r)
		r = writers_alone(&c);
	if (!r) {
		progress(b, "  %s: guest ready in %.1f s, %.2f M transfers/s",
			 method_names[m], (double)(cli_now_ns() - t0) / 1e9,
			 out->f[F_WBEFORE] / 1e6);
		switch (m) {
		case M_UFFD_PID:
			r = run_pid(&c);
			break;
		case M_UFFD_INCR:
			r = run_incr(&c);
			break;
		case M_ROLLBACK:
			r = run_rollback(&c);
			break;
		default:
			r = run_embedded(&c, m);
		}
	}
	guest_end(&c.g.c, 2000);
	unlink(c.parent);
	settle(b->dir, c.file);
	if (r)
		return -1;
	out->f[F_WRATIO] = out->f[F_WDURING] / out->f[F_WBEFORE];
	out->ok = true;
	return 0;
}

/* ---- the report --------------------------------------------------------------- */

static void median_runs(const struct bench *b, struct size_result *s)
{
	for (int m = 0; m < NMETHODS; m++) {
		struct run *med = &s->med[m];

		run_init(med);
		for (unsigned i = 0; i < b->repeat; i++)
			med->ok |= s->runs[m][i].ok;
		for (int k = 0; k < NFIG; k++) {
			double v[MAX_REPEAT];

			for (unsigned i = 0; i < b->repeat; i++)
				v[i] = s->runs[m][i].ok ? s->runs[m][i].f[k] :
							  NAN;
			med->f[k] = median(v, (int)b->repeat);
		}
	}
}

static bool ran(const struct bench *b, const struct size_result *s, int m)
{
	return (b->methods & (1u << m)) && s->med[m].ok;
}

/* Formatting that shows "-" for a figure that does not apply. */
static const char *fmt_ms(char *buf, double ms)
{
	if (isnan(ms))
		return "-";
	if (ms < 0) {
		char pos[CLI_FMT_LEN];

		snprintf(buf, CLI_FMT_LEN, "-%s",
			 cli_fmt_duration(pos, (uint64_t)(-ms * 1e6 + 0.5)));
		return buf;
	}
	return cli_fmt_duration(buf, (uint64_t)(ms * 1e6 + 0.5));
}

static const char *fmt_us(char *buf, double us)
{
	return fmt_ms(buf, us / 1e3);
}

static const char *fmt_bytes(char *buf, double v)
{
	if (isnan(v))
		return "-";
	return cli_fmt_size(buf, (uint64_t)v);
}

/* @v with @decimals, and @suffix ("%" ...). */
static const char *fmt_num(char *buf, double v, int decimals,
			   const char *suffix)
{
	if (isnan(v) || isinf(v))
		return "-";
	snprintf(buf, CLI_FMT_LEN, "%.*f%s", decimals, v, suffix);
	return buf;
}

static void print_header(const struct bench *b, uint64_t size)
{
	char s[CLI_FMT_LEN], buf[CLI_FMT_LEN], rate[32];

	snprintf(rate, sizeof(rate), b->rate ? "%llu/s" : "max rate",
		 (unsigned long long)b->rate);
	printf("\n%s guest, %s pages, %u writers, %s writes at %s; %s, %s "
	       "buffers; %u run%s each\n", cli_fmt_size(s, size),
	       b->thp ? "THP" : "4 KiB", b->writers,
	       pattern_names[b->pattern], rate,
	       b->no_compress ? "uncompressed" : "lz4",
	       cli_fmt_size(buf, b->buffer), b->repeat,
	       b->repeat > 1 ? "s" : "");
}

static void print_main_table(const struct bench *b,
			     const struct size_result *s)
{
	char c[10][CLI_FMT_LEN];

	printf("%-12s %9s %9s %6s %8s %9s %9s %9s %10s %10s\n", "method",
	       "blackout", "elapsed", "GiB/s", "writers", "p50", "p99", "max",
	       "memory", "file");
	for (int m = 0; m < NMETHODS; m++) {
		const double *f = s->med[m].f;

		if (!(b->methods & (1u << m)))
			continue;
		if (!s->med[m].ok) {
			printf("%-12s (failed)\n", method_names[m]);
			continue;
		}
		if (m == M_ROLLBACK)
			continue;
		printf("%-12s %9s %9s %6s %8s %9s %9s %9s %10s %10s\n",
		       method_names[m], fmt_ms(c[0], f[F_BLACKOUT]),
		       fmt_ms(c[1], f[F_ELAPSED] * 1e3),
		       fmt_num(c[2], f[F_GIBS], 2, ""),
		       fmt_num(c[3], f[F_WRATIO] * 100, 0, "%"),
		       fmt_us(c[4], f[F_P50]), fmt_us(c[5], f[F_P99]),
		       fmt_us(c[6], f[F_MAX]), fmt_bytes(c[7], f[F_MEM]),
		       fmt_bytes(c[8], f[F_FILE]));
	}
}

static void print_engine_table(const struct bench *b,
			       const struct size_result *s)
{
	char c[9][CLI_FMT_LEN];

	printf("%-12s %9s %9s %11s %8s %9s %9s %6s %6s %6s\n", "", "pause",
	       "arm", "reprotected", "faults", "stall p99", "buffers", "cpu:sv",
	       "wr", "main");
	for (int m = 0; m < NMETHODS; m++) {
		const double *f = s->med[m].f;

		if (!ran(b, s, m) || m == M_ROLLBACK)
			continue;
		printf("%-12s %9s %9s %11s %8s %9s %9s %6s %6s %6s\n",
		       method_names[m], fmt_ms(c[0], f[F_PAUSE]),
		       fmt_ms(c[1], f[F_ARM] > 0 ? f[F_ARM] : NAN),
		       fmt_num(c[2], f[F_REPROT], 0, ""),
		       fmt_num(c[3], f[F_FAULTS], 0, ""),
		       fmt_us(c[4], f[F_STALL99] > 0 ? f[F_STALL99] : NAN),
		       fmt_bytes(c[5], f[F_BUFFER]),
		       fmt_num(c[6], f[F_CPU_SAVER] / f[F_ELAPSED], 2, ""),
		       fmt_num(c[7], f[F_CPU_WRITERS] / f[F_ELAPSED], 2, ""),
		       fmt_num(c[8], f[F_CPU_MAIN] / f[F_ELAPSED], 2, ""));
	}
}

/* Where in the start window the worst stop fell. */
static void print_window_table(const struct bench *b,
			       const struct size_result *s)
{
	char c[6][CLI_FMT_LEN];

	printf("%-12s %9s %9s %9s %9s %9s %9s\n", "start", "window",
	       "pause at", "worst at", "blackout", "pause", "noise");
	for (int m = 0; m < NMETHODS; m++) {
		const double *f = s->med[m].f;

		if (!ran(b, s, m) || m == M_ROLLBACK)
			continue;
		printf("%-12s %9s %9s %9s %9s %9s %9s\n", method_names[m],
		       fmt_ms(c[0], f[F_WINDOW]), fmt_ms(c[1], f[F_PAUSE_AT]),
		       fmt_ms(c[2], f[F_WORST_AT]),
		       fmt_ms(c[3], f[F_BLACKOUT]), fmt_ms(c[4], f[F_PAUSE]),
		       fmt_ms(c[5], f[F_NOISE]));
	}
}

static void print_specials(const struct bench *b, const struct size_result *s)
{
	const double pages = (double)s->size / PAGE;
	char c[4][CLI_FMT_LEN];

	if (ran(b, s, M_UFFD_INCR)) {
		const double *f = s->med[M_UFFD_INCR].f;

		printf("uffd-incr: stored %.0f pages (%.2f%%) written since its "
		       "parent; %s (%.1f%% of the parent's %s), %s (%.1f%% of "
		       "%s)\n", f[F_WRITTEN], f[F_WRITTEN] / pages * 100,
		       fmt_ms(c[0], f[F_ELAPSED] * 1e3),
		       f[F_ELAPSED] / f[F_PARENT_ELAPSED] * 100,
		       fmt_ms(c[1], f[F_PARENT_ELAPSED] * 1e3),
		       fmt_bytes(c[2], f[F_FILE]),
		       f[F_FILE] / f[F_PARENT_FILE] * 100,
		       fmt_bytes(c[3], f[F_PARENT_FILE]));
	}
	if (ran(b, s, M_ROLLBACK)) {
		const double *f = s->med[M_ROLLBACK].f;

		printf("rollback:  %s to put back %.0f pages (%.2f%%) from the "
		       "undo log, writers held\n", fmt_ms(c[0], f[F_ROLLBACK]),
		       f[F_ROLLED], f[F_ROLLED] / pages * 100);
	}
}

static void print_floors(const struct bench *b, const struct size_result *s)
{
	const struct floors *fl = &s->fl;

	(void)b;
	printf("floors:    write-protect %.2f ms (%.1f ms/GiB); fault round "
	       "trip p50 %.1f us, p99 %.1f us\n", fl->wp_ms,
	       fl->wp_ms / ((double)s->size / GIB), fl->fault_p50_us,
	       fl->fault_p99_us);
	printf("           lz4 %.2f GiB/s (ratio %.2f, one thread); disk %.2f "
	       "GiB/s (%s 1 MiB writes + fsync)\n", fl->lz4_gibs,
	       fl->lz4_ratio, fl->disk_gibs,
	       fl->disk_direct ? "O_DIRECT" : "buffered");
}

/* ---- targets --------------------------------------------------------------- */

/* A performance target, checked on this run's figures. */
struct target {
	const char *id;	  /* stable, for --json */
	const char *text; /* short, for the table */
	const char *unit;
	double value, limit;
	double ratio; /* value over what it is compared with (a floor,
		       * fork's figure, uffd's, the limit) */
	int ok;	      /* 1 met, 0 missed, -1 not measured or not a limit */
	char note[96];
};

#define MAX_TARGETS 24

struct targets {
	struct target t[MAX_TARGETS];
	int n;
};

static struct target *target_add(struct targets *ts, const char *id,
				  const char *text, const char *unit)
{
	struct target *t = &ts->t[ts->n++];

	memset(t, 0, sizeof(*t));
	t->id = id;
	t->text = text;
	t->unit = unit;
	t->value = t->limit = t->ratio = NAN;
	t->ok = -1;
	return t;
}

/* What differs from a target's conditions (4 GiB, 2 writers, random
 * writes at @want_rate, 4 KiB pages if @want_4k), into @note. */
static void conditions(const struct bench *b, uint64_t size, uint64_t want_rate,
		       bool want_4k, struct target *t)
{
	const char *what[5];
	size_t len = 0;
	int n = 0;

	if (size != 4ull << 30)
		what[n++] = "size";
	if (b->writers != 2)
		what[n++] = "writers";
	if (b->pattern != BANK_RANDOM)
		what[n++] = "pattern";
	if (b->rate != want_rate)
		what[n++] = "rate";
	if (want_4k && b->thp)
		what[n++] = "page kind";
	for (int i = 0; i < n && len < sizeof(t->note); i++)
		len += (size_t)snprintf(t->note + len, sizeof(t->note) - len,
					"%s%s", i ? ", " : "conditions differ: ",
					what[i]);
}

static void check(struct target *t, double v, double limit, double basis,
		  bool at_most)
{
	t->value = v;
	t->limit = limit;
	t->ratio = v / basis;
	if (!isnan(v) && !isnan(limit))
		t->ok = at_most ? v <= limit : v >= limit;
}

static double fig(const struct bench *b, const struct size_result *s, int m,
		  enum fig k)
{
	return ran(b, s, m) ? s->med[m].f[k] : NAN;
}

static void targets_blackout(const struct bench *b, const struct size_result *s,
			     struct targets *ts)
{
	const double wp = s->fl.wp_ms;
	struct target *t;

	t = target_add(ts, "i7-blackout-wp", "uffd blackout <= 1.2x write-"
		       "protect", "ms");
	check(t, fig(b, s, M_UFFD, F_BLACKOUT), 1.2 * wp, wp, true);
	conditions(b, s->size, 0, false, t);
	t = target_add(ts, "i7-blackout-wp-1phase", "uffd-1phase blackout <= "
		       "1.2x write-protect", "ms");
	check(t, fig(b, s, M_UFFD_1PHASE, F_BLACKOUT), 1.2 * wp, wp, true);
	conditions(b, s->size, 0, false, t);
	if (b->thp) {
		t = target_add(ts, "i7-blackout-thp", "uffd blackout (THP) < "
			       "1 ms", "ms");
		check(t, fig(b, s, M_UFFD, F_BLACKOUT), 1, 1, true);
		conditions(b, s->size, 0, false, t);
	}
	t = target_add(ts, "i8-blackout", "uffd blackout < 2 ms", "ms");
	check(t, fig(b, s, M_UFFD, F_BLACKOUT), 2, 2, true);
	conditions(b, s->size, 50000, true, t);
	t = target_add(ts, "i8-blackout-fork", "fork blackout / uffd's >= 25",
		       "x");
	check(t, fig(b, s, M_FORK, F_BLACKOUT) / fig(b, s, M_UFFD, F_BLACKOUT),
	      25, 25, false);
	conditions(b, s->size, 50000, true, t);
}

static void targets_issue7(const struct bench *b, const struct size_result *s,
			   struct targets *ts)
{
	const double floor = fmin(s->fl.lz4_gibs, s->fl.disk_gibs);
	const double mem_limit = (double)(b->buffer + MEM_SLACK) / (1 << 20);
	struct target *t;

	t = target_add(ts, "i7-memory", "uffd extra memory <= buffers + 16 MiB",
		       "MiB");
	check(t, fig(b, s, M_UFFD, F_MEM) / (1 << 20), mem_limit, mem_limit,
	      true);
	t = target_add(ts, "i7-memory-fork", "fork extra memory / the guest's",
		       "x");
	t->value = fig(b, s, M_FORK, F_MEM) / (double)s->size;
	snprintf(t->note, sizeof(t->note), "information: grows with what the "
		 "writers touch");
	t = target_add(ts, "i7-throughput", "uffd >= 90% of min(lz4, disk)",
		       "GiB/s");
	check(t, fig(b, s, M_UFFD, F_GIBS), 0.9 * floor, floor, false);
	conditions(b, s->size, 0, false, t);
	t = target_add(ts, "i7-writers", "uffd writers during the save >= "
		       "fork's", "share");
	check(t, fig(b, s, M_UFFD, F_WRATIO), fig(b, s, M_FORK, F_WRATIO),
	      fig(b, s, M_FORK, F_WRATIO), false);
	conditions(b, s->size, 0, false, t);
	t = target_add(ts, "i7-p99", "uffd writer p99 <= 3x fork's", "us");
	check(t, fig(b, s, M_UFFD, F_P99), 3 * fig(b, s, M_FORK, F_P99),
	      fig(b, s, M_FORK, F_P99), true);
	conditions(b, s->size, 0, false, t);
	t = target_add(ts, "i7-pid-elapsed", "uffd-pid elapsed <= 1.25x "
		       "uffd's", "s");
	check(t, fig(b, s, M_UFFD_PID, F_ELAPSED),
	      1.25 * fig(b, s, M_UFFD, F_ELAPSED),
	      fig(b, s, M_UFFD, F_ELAPSED), true);
	conditions(b, s->size, 0, false, t);
}

static void targets_issue8(const struct bench *b, const struct size_result *s,
			   struct targets *ts)
{
	const double pages = (double)s->size / PAGE;
	const double written = fig(b, s, M_UFFD_INCR, F_WRITTEN) / pages;
	struct target *t;

	t = target_add(ts, "i8-incr-elapsed", "uffd-incr elapsed < 5% of its "
		       "parent's", "share");
	check(t, fig(b, s, M_UFFD_INCR, F_ELAPSED) /
			 fig(b, s, M_UFFD_INCR, F_PARENT_ELAPSED),
	      0.05, 0.05, true);
	if (!isnan(written))
		snprintf(t->note, sizeof(t->note), "%.2f%% of the pages "
			 "written, the target's: 1%%", written * 100);
	t = target_add(ts, "i8-incr-size", "uffd-incr file < 5% of its "
		       "parent's", "share");
	check(t, fig(b, s, M_UFFD_INCR, F_FILE) /
			 fig(b, s, M_UFFD_INCR, F_PARENT_FILE),
	      0.05, 0.05, true);
	if (!isnan(written))
		snprintf(t->note, sizeof(t->note), "%.2f%% of the pages "
			 "written, the target's: 1%%", written * 100);
	t = target_add(ts, "i8-rollback", "rollback of 1% of the pages < 20 ms",
		       "ms");
	check(t, fig(b, s, M_ROLLBACK, F_ROLLBACK), 20, 20, true);
	if (s->size != 4ull << 30)
		snprintf(t->note, sizeof(t->note), "conditions differ: size");
}

/* Across the sweep: the largest size's blackout against the smallest's. */
static void targets_sweep(const struct bench *b, struct targets *ts)
{
	const struct size_result *lo = &b->res[0], *hi = &b->res[0];
	struct target *t;

	for (int i = 1; i < b->nsizes; i++) {
		lo = b->res[i].size < lo->size ? &b->res[i] : lo;
		hi = b->res[i].size > hi->size ? &b->res[i] : hi;
	}
	if (lo == hi)
		return;
	t = target_add(ts, "i8-blackout-growth", "uffd blackout, largest size / "
		       "smallest <= 1.5", "x");
	check(t, fig(b, hi, M_UFFD, F_BLACKOUT) / fig(b, lo, M_UFFD, F_BLACKOUT),
	      1.5, 1, true);
	if (lo->size != 1ull << 30 || hi->size != 4ull << 30)
		snprintf(t->note, sizeof(t->note), "conditions differ: sizes "
			 "(the target's: 1 and 4 GiB)");
}

static void print_targets(const struct targets *ts, const char *title)
{
	static const char *const verdict[] = { "  - ", "MISS", " ok " };

	if (!ts->n)
		return;
	printf("%s\n", title);
	for (int i = 0; i < ts->n; i++) {
		const struct target *t = &ts->t[i];
		char v[24], l[24], r[16] = "";

		if (isnan(t->value))
			snprintf(v, sizeof(v), "-");
		else
			snprintf(v, sizeof(v), "%.3g %s", t->value, t->unit);
		if (isnan(t->limit))
			l[0] = '\0';
		else
			snprintf(l, sizeof(l), "%.3g %s", t->limit, t->unit);
		if (!isnan(t->ratio) && !isnan(t->limit))
			snprintf(r, sizeof(r), "x%.3g", t->ratio);
		printf("  %s %-43s %11s %s %-11s %-7s%s%s\n", verdict[t->ok + 1],
		       t->text, v, l[0] ? "vs" : "  ", l, r,
		       t->note[0] ? " " : "", t->note);
	}
}

static void size_targets(const struct bench *b, const struct size_result *s,
			 struct targets *ts)
{
	ts->n = 0;
	targets_blackout(b, s, ts);
	targets_issue7(b, s, ts);
	targets_issue8(b, s, ts);
}

static void print_size(const struct bench *b, const struct size_result *s)
{
	struct targets ts;

	print_header(b, s->size);
	print_main_table(b, s);
	print_engine_table(b, s);
	print_window_table(b, s);
	print_specials(b, s);
	print_floors(b, s);
	size_targets(b, s, &ts);
	print_targets(&ts, "targets (i7: 4 GiB, 2 writers, random writes at "
		      "max rate; i8: the same at 50000 writes/s, 4 KiB pages; "
		      "x: the ratio):");
	fflush(stdout);
}

/* With several sizes: how each figure grows from the smallest. */
static void print_growth(const struct bench *b)
{
	static const struct {
		enum fig k;
		const char *name;
	} figs[] = {
		{ F_BLACKOUT, "blackout" }, { F_PAUSE, "pause" },
		{ F_ELAPSED, "elapsed" },   { F_MEM, "memory" },
		{ F_FILE, "file" },
	};
	char c[CLI_FMT_LEN];

	if (b->nsizes < 2)
		return;
	printf("\ngrowth with size:");
	for (int i = 0; i < b->nsizes; i++)
		printf("%s%s", i ? " -> " : " ", cli_fmt_size(c, b->res[i].size));
	printf("  (x: last over first)\n");
	for (int m = 0; m < NMETHODS; m++) {
		if (!(b->methods & (1u << m)) || m == M_ROLLBACK)
			continue;
		printf("%-12s", method_names[m]);
		for (size_t k = 0; k < sizeof(figs) / sizeof(figs[0]); k++) {
			const double first = b->res[0].med[m].f[figs[k].k];
			const double last =
				b->res[b->nsizes - 1].med[m].f[figs[k].k];

			printf("  %s x%s", figs[k].name,
			       fmt_num(c, last / first, 2, ""));
		}
		putchar('\n');
	}
	if (b->methods & (1u << M_ROLLBACK)) {
		const double first = b->res[0].med[M_ROLLBACK].f[F_ROLLBACK];
		const double last =
			b->res[b->nsizes - 1].med[M_ROLLBACK].f[F_ROLLBACK];

		printf("%-12s  rollback x%s\n", "rollback",
		       fmt_num(c, last / first, 2, ""));
	}
}

/* ---- JSON ----------------------------------------------------------------- */

static void json_kdouble_or_null(struct cli_json *j, const char *key, double v)
{
	cli_json_key(j, key);
	if (isnan(v))
		cli_json_null(j);
	else
		cli_json_double(j, v);
}

static void json_figs(struct cli_json *j, const double *f)
{
	for (int k = 0; k < NFIG; k++)
		json_kdouble_or_null(j, fig_keys[k], f[k]);
}

static void json_targets(struct cli_json *j, const struct targets *ts)
{
	cli_json_array_begin(j);
	for (int i = 0; i < ts->n; i++) {
		const struct target *t = &ts->t[i];

		cli_json_object_begin(j);
		cli_json_kstr(j, "id", t->id);
		cli_json_kstr(j, "text", t->text);
		cli_json_kstr(j, "unit", t->unit);
		json_kdouble_or_null(j, "value", t->value);
		json_kdouble_or_null(j, "limit", t->limit);
		json_kdouble_or_null(j, "ratio", t->ratio);
		cli_json_key(j, "met");
		if (t->ok < 0)
			cli_json_null(j);
		else
			cli_json_bool(j, t->ok);
		cli_json_kstr(j, "note", t->note);
		cli_json_object_end(j);
	}
	cli_json_array_end(j);
}

static void json_floors(struct cli_json *j, const struct floors *fl)
{
	cli_json_key(j, "floors");
	cli_json_object_begin(j);
	json_kdouble_or_null(j, "write_protect_ms", fl->wp_ms);
	json_kdouble_or_null(j, "fault_p50_us", fl->fault_p50_us);
	json_kdouble_or_null(j, "fault_p99_us", fl->fault_p99_us);
	json_kdouble_or_null(j, "lz4_gib_s", fl->lz4_gibs);
	json_kdouble_or_null(j, "lz4_ratio", fl->lz4_ratio);
	json_kdouble_or_null(j, "disk_gib_s", fl->disk_gibs);
	cli_json_kstr(j, "disk_mode", fl->disk_direct ? "O_DIRECT" :
							"buffered+fsync");
	cli_json_object_end(j);
}

static void json_size(struct cli_json *j, const struct bench *b,
		      const struct size_result *s)
{
	struct targets ts;

	cli_json_object_begin(j);
	cli_json_kuint(j, "size_bytes", s->size);
	json_floors(j, &s->fl);
	cli_json_key(j, "methods");
	cli_json_object_begin(j);
	for (int m = 0; m < NMETHODS; m++) {
		if (!(b->methods & (1u << m)))
			continue;
		cli_json_key(j, method_names[m]);
		cli_json_object_begin(j);
		cli_json_kbool(j, "ok", s->med[m].ok);
		json_figs(j, s->med[m].f);
		cli_json_key(j, "runs");
		cli_json_array_begin(j);
		for (unsigned i = 0; i < b->repeat; i++) {
			cli_json_object_begin(j);
			cli_json_kbool(j, "ok", s->runs[m][i].ok);
			json_figs(j, s->runs[m][i].f);
			cli_json_object_end(j);
		}
		cli_json_array_end(j);
		cli_json_object_end(j);
	}
	cli_json_object_end(j);
	size_targets(b, s, &ts);
	cli_json_key(j, "targets");
	json_targets(j, &ts);
	cli_json_object_end(j);
}

static void json_settings(struct cli_json *j, const struct bench *b)
{
	cli_json_key(j, "settings");
	cli_json_object_begin(j);
	cli_json_kstr(j, "kind", b->thp ? "thp" : "4k");
	cli_json_kuint(j, "writers", b->writers);
	cli_json_kstr(j, "pattern", pattern_names[b->pattern]);
	cli_json_kuint(j, "rate", b->rate);
	cli_json_kuint(j, "repeat", b->repeat);
	cli_json_kdouble(j, "incr_gap_s", (double)b->incr_gap_ns / 1e9);
	cli_json_kdouble(j, "incr_dirty_pct", b->incr_dirty);
	cli_json_kuint(j, "buffer_bytes", b->buffer);
	cli_json_kstr(j, "compression", b->no_compress ? "none" : "lz4");
	cli_json_kuint(j, "seed", b->seed);
	cli_json_kstr(j, "dir", b->parent_dir);
	cli_json_object_end(j);
}

static void json_load(struct cli_json *j, const char *key, const double *l)
{
	cli_json_key(j, key);
	cli_json_array_begin(j);
	for (int i = 0; i < 3; i++)
		if (isnan(l[i]))
			cli_json_null(j);
		else
			cli_json_double(j, l[i]);
	cli_json_array_end(j);
}

static int report_json(const struct bench *b)
{
	struct targets ts = { .n = 0 };
	struct cli_json j;

	cli_json_init(&j, stdout);
	cli_json_object_begin(&j);
	cli_json_kstr(&j, "version", bgsnap_version_string());
	cli_json_kstr(&j, "command", b->command);
	json_settings(&j, b);
	json_load(&j, "load_avg_start", b->load_start);
	json_load(&j, "load_avg_end", b->load_end);
	cli_json_kdouble(&j, "runtime_s",
			 (double)(cli_now_ns() - b->start_ns) / 1e9);
	cli_json_key(&j, "sizes");
	cli_json_array_begin(&j);
	for (int i = 0; i < b->nsizes; i++)
		json_size(&j, b, &b->res[i]);
	cli_json_array_end(&j);
	targets_sweep(b, &ts);
	cli_json_key(&j, "targets");
	json_targets(&j, &ts);
	cli_json_object_end(&j);
	return cli_json_end(&j);
}

/* ---- options ------------------------------------------------------------------ */

enum {
	OPT_SIZES = 256,
	OPT_INCR_GAP,
	OPT_INCR_DIRTY,
	OPT_SEED,
	OPT_JSON,
};

static const struct option bench_options[] = {
	{ "size", required_argument, NULL, 's' },
	{ "sizes", required_argument, NULL, OPT_SIZES },
	{ "kind", required_argument, NULL, 'k' },
	{ "writers", required_argument, NULL, 'w' },
	{ "pattern", required_argument, NULL, 'P' },
	{ "rate", required_argument, NULL, 'r' },
	{ "methods", required_argument, NULL, 'm' },
	{ "repeat", required_argument, NULL, 'n' },
	{ "incr-gap", required_argument, NULL, OPT_INCR_GAP },
	{ "incr-dirty", required_argument, NULL, OPT_INCR_DIRTY },
	{ "dir", required_argument, NULL, 'd' },
	{ "buffer", required_argument, NULL, 'b' },
	{ "compress", required_argument, NULL, 'c' },
	{ "seed", required_argument, NULL, OPT_SEED },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "quiet", no_argument, NULL, 'q' },
	CLI_OPT_HELP_ENTRY,
	{ NULL, 0, NULL, 0 },
};

static bool bad_arg(const struct cli_getopt *o, const char *arg,
		    const char *what)
{
	cli_error("bench: %s: '%s' is not %s (see 'bgsnap bench --help')",
		  o->optname, arg, what);
	return false;
}

static bool parse_sizes(struct cli_getopt *o, const char *arg,
			struct bench *b)
{
	char buf[256], *save = NULL;

	if (strlen(arg) >= sizeof(buf))
		return bad_arg(o, arg, "a list of sizes");
	snprintf(buf, sizeof(buf), "%s", arg);
	b->nsizes = 0;
	for (char *w = strtok_r(buf, ",", &save); w;
	     w = strtok_r(NULL, ",", &save)) {
		if (b->nsizes == MAX_SIZES)
			return bad_arg(o, arg, "at most 8 sizes");
		if (!cli_arg_size(o, w, &b->sizes[b->nsizes]))
			return false;
		b->nsizes++;
	}
	return b->nsizes ? true : bad_arg(o, arg, "a list of sizes");
}

static bool parse_methods(struct cli_getopt *o, const char *arg,
			  struct bench *b)
{
	char buf[256], *save = NULL;

	if (strlen(arg) >= sizeof(buf))
		return bad_arg(o, arg, "a list of methods");
	snprintf(buf, sizeof(buf), "%s", arg);
	b->methods = 0;
	for (char *w = strtok_r(buf, ",", &save); w;
	     w = strtok_r(NULL, ",", &save)) {
		int m = 0;

		while (m < NMETHODS && strcmp(w, method_names[m]))
			m++;
		if (m == NMETHODS)
			return bad_arg(o, w, "a method");
		b->methods |= 1u << m;
	}
	return b->methods ? true : bad_arg(o, arg, "a list of methods");
}

static bool parse_pct(struct cli_getopt *o, const char *arg, double *pct)
{
	char *end;

	*pct = strtod(arg, &end);
	if (end == arg || (*end && strcmp(end, "%")) || !(*pct >= 0) ||
	    *pct > 100)
		return bad_arg(o, arg, "a percentage (0 to 100)");
	return true;
}

/* The options the table cannot store: true, or false after a usage
 * error. */
static bool take_option(struct cli_getopt *o, int c, void *ctx)
{
	struct bench *b = ctx;
	uint64_t v;

	switch (c) {
	case 's':
		b->nsizes = 1;
		return cli_arg_size(o, optarg, &b->sizes[0]);
	case OPT_SIZES:
		return parse_sizes(o, optarg, b);
	case 'k':
		if (strcmp(optarg, "4k") && strcmp(optarg, "thp"))
			return bad_arg(o, optarg, "4k or thp");
		b->thp = !strcmp(optarg, "thp");
		return true;
	case 'w':
		if (!cli_arg_uint(o, optarg, 1, BANK_MAX_WRITERS, &v))
			return false;
		b->writers = (unsigned)v;
		return true;
	case 'P':
		for (int i = 0; i < 3; i++)
			if (!strcmp(optarg, pattern_names[i])) {
				b->pattern = i;
				return true;
			}
		return bad_arg(o, optarg, "random, sequential or hot");
	case 'r':
		if (!strcmp(optarg, "max")) {
			b->rate = 0;
			return true;
		}
		return cli_arg_uint(o, optarg, 1, UINT32_MAX, &b->rate);
	case 'm':
		return parse_methods(o, optarg, b);
	case 'n':
		if (!cli_arg_uint(o, optarg, 1, MAX_REPEAT, &v))
			return false;
		b->repeat = (unsigned)v;
		return true;
	case OPT_INCR_DIRTY:
		return parse_pct(o, optarg, &b->incr_dirty);
	case 'c':
		if (strcmp(optarg, "lz4") && strcmp(optarg, "none"))
			return bad_arg(o, optarg, "lz4 or none");
		b->no_compress = !strcmp(optarg, "none");
		return true;
	}
	return false;
}

/* Parsed options, or an exit code (EXIT_OK after --help). */
static int parse_args(int argc, char **argv, struct bench *b)
{
	const struct cli_opt opts[] = {
		{ OPT_INCR_GAP, .duration = &b->incr_gap_ns },
		{ 'd', .str = &b->parent_dir },
		{ 'b', .size = &b->buffer },
		{ OPT_SEED, .uint = &b->seed, .max = UINT64_MAX },
		{ OPT_JSON, .flag = &b->json },
		{ 'q', .flag = &b->quiet },
		{ 0 },
	};
	struct cli_getopt o = { .cmd = "bench", .usage = bench_usage,
				.shortopts = "s:k:w:P:r:m:n:d:b:c:q",
				.longopts = bench_options, .opts = opts,
				.take = take_option, .ctx = b };
	const int code = cli_parse(&o, argc, argv, 0, 0, "");

	if (code >= 0)
		return code;
	for (int i = 0; i < b->nsizes; i++)
		if (b->sizes[i] < 16u << 20) {
			cli_error("bench: sizes of at least 16M, please");
			return EXIT_USAGE;
		}
	return -1;
}

/* ---- setup and the run ---------------------------------------------------------- */

static bool ready(void)
{
	struct bgsnap_capability caps[BGSNAP_MAX_CAPABILITIES];
	const int n = bgsnap_probe(caps, BGSNAP_MAX_CAPABILITIES);

	for (int i = 0; i < n; i++)
		if (caps[i].required && !caps[i].ok) {
			cli_error("bench: %s: %s (see 'bgsnap caps')",
				  caps[i].name, caps[i].detail);
			return false;
		}
	return n >= 0;
}

static int setup(struct bench *b)
{
	const ssize_t n = readlink("/proc/self/exe", b->exe,
				   sizeof(b->exe) - 1);

	if (n < 0) {
		cli_error("bench: /proc/self/exe: %s", strerror(errno));
		return -1;
	}
	b->exe[n] = '\0';
	if (!b->parent_dir)
		b->parent_dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	snprintf(b->dir, sizeof(b->dir), "%s/bgsnap-bench.XXXXXX",
		 b->parent_dir);
	if (!mkdtemp(b->dir)) {
		cli_error("bench: cannot make a directory in %s: %s",
			  b->parent_dir, strerror(errno));
		b->dir[0] = '\0';
		return -1;
	}
	b->res = calloc((size_t)b->nsizes, sizeof(*b->res));
	if (!b->res) {
		cli_error("bench: out of memory");
		return -1;
	}
	return 0;
}

static void run_size(struct bench *b, struct size_result *s)
{
	char sz[CLI_FMT_LEN];

	measure_floors(b, s->size, &s->fl);
	for (int m = 0; m < NMETHODS && !cli_interrupted(); m++) {
		if (!(b->methods & (1u << m)))
			continue;
		for (unsigned i = 0; i < b->repeat && !cli_interrupted(); i++) {
			struct run *r = &s->runs[m][i];
			const uint64_t t0 = cli_now_ns();

			progress(b, "%s %s, run %u of %u",
				 cli_fmt_size(sz, s->size), method_names[m],
				 i + 1, b->repeat);
			if (run_method(b, s->size, (enum method)m, r)) {
				b->failures++;
				continue;
			}
			progress(b, "  %s: blackout %.3f ms, elapsed %.2f s, "
				 "%.1f s in all", method_names[m],
				 r->f[F_BLACKOUT], r->f[F_ELAPSED],
				 (double)(cli_now_ns() - t0) / 1e9);
		}
	}
	median_runs(b, s);
}

static void report_text(const struct bench *b)
{
	struct targets ts = { .n = 0 };

	printf("bgsnap bench %s: load average %.2f %.2f %.2f at the start, "
	       "%.2f %.2f %.2f at the end; %.0f s\n", bgsnap_version_string(),
	       b->load_start[0], b->load_start[1], b->load_start[2],
	       b->load_end[0], b->load_end[1], b->load_end[2],
	       (double)(cli_now_ns() - b->start_ns) / 1e9);
	for (int i = 0; i < b->nsizes; i++)
		print_size(b, &b->res[i]);
	print_growth(b);
	targets_sweep(b, &ts);
	print_targets(&ts, "\ntargets across sizes (issue 8: 4 GiB against "
		      "1 GiB):");
}

/* "bgsnap bench ARGS" (argv[0] is "bench"), cut to fit. */
static void command_line(struct bench *b, int argc, char **argv)
{
	size_t len = (size_t)snprintf(b->command, sizeof(b->command), "bgsnap");

	for (int i = 0; i < argc && len < sizeof(b->command); i++)
		len += (size_t)snprintf(b->command + len,
					sizeof(b->command) - len, " %s", argv[i]);
}

int cmd_bench(int argc, char **argv)
{
	struct bench b = {
		.sizes = { 1ull << 30 }, .nsizes = 1, .writers = 2,
		.methods = (1u << NMETHODS) - 1, .repeat = 1,
		.incr_gap_ns = 10000000000ULL, .buffer = 64u << 20, .seed = 1,
	};
	int r = parse_args(argc, argv, &b);

	if (r >= 0)
		return r;
	if (!ready())
		return EXIT_NOCAP;
	command_line(&b, argc, argv);
	cli_catch_signals();
	signal(SIGPIPE, SIG_IGN);
	b.start_ns = cli_now_ns();
	load_avg(b.load_start);
	if (setup(&b)) {
		if (b.dir[0])
			rmdir(b.dir);
		return EXIT_FAILED;
	}
	for (int i = 0; i < b.nsizes && !cli_interrupted(); i++) {
		b.res[i].size = b.sizes[i];
		run_size(&b, &b.res[i]);
	}
	load_avg(b.load_end);
	rmdir(b.dir);
	if (cli_interrupted()) {
		cli_error("bench: interrupted by %s; the guests and the files "
			  "are gone", strsignal(cli_interrupted()));
		free(b.res);
		return EXIT_FAILED;
	}
	r = b.json ? report_json(&b) : (report_text(&b), 0);
	free(b.res);
	if (r)
		return EXIT_FAILED;
	return b.failures ? EXIT_FAILED : EXIT_OK;
}
