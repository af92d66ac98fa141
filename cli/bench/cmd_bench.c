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
 * The parts are in files of their own (bench.h lists them).
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

static const char bench_usage[] =
	"usage: bgsnap bench [--size SIZE | --sizes LIST] [--kind 4k|thp]\n"
	"                    [--writers N] [--pattern random|sequential|hot]\n"
	"                    [--rate max|OPS] [--methods LIST] [--repeat N]\n"
	"                    [--incr-gap DUR] [--incr-dirty PCT] [--dir DIR]\n"
	"                    [--buffer SIZE] [--compress lz4|none] [--seed N]\n"
	"                    [--threads N] [--cpus LIST]\n"
	"                    [--json] [--quiet]\n"
	"\n"
	"Snapshot a built-in guest (SIZE of memory, writer threads moving "
	"money\n"
	"between accounts one per page) while it runs, by each method, each "
	"on\n"
	"a fresh guest with the same content and the same store settings, and\n"
	"measure the floors the methods work within, all in this run. Prints "
	"a\n"
	"table per size, the targets of issues 7, 8 and 12 with their ratios,\n"
	"and "
	"with several sizes how each figure grows; --json writes one "
	"document.\n"
	"\n"
	"methods (default: all, in this order):\n"
	"  uffd         bgsnap inside the guest, two-phase arming (the "
	"default)\n"
	"  uffd-1phase  the same with BGSNAP_SAVE_ONE_PHASE: all protection\n"
	"               armed inside the pause\n"
	"  uffd-pid     'bgsnap save --pid' from outside (this process, the\n"
	"               library's target API), the guest's memory only\n"
	"  fork         the guest forks; the child saves the memory stop-the-\n"
	"               world through the same store writer; the writers run "
	"on\n"
	"  stw          the writers paused for the whole copy\n"
	"  uffd-incr    the second of two snapshots --incr-gap apart (the "
	"first\n"
	"               with BGSNAP_SAVE_KEEP_TRACKING, taken with the "
	"writers\n"
	"               held; the second BGSNAP_SAVE_INCREMENTAL, under them)\n"
	"  rollback     bgsnap_rollback() once the writers have written 1% of\n"
	"               the pages since a tracked snapshot (taken with them "
	"held),\n"
	"               from its undo log; the writers held around it\n"
	"\n"
	"figures (medians over the repeats):\n"
	"  blackout   the longest time any writer was kept from running by "
	"the\n"
	"             snapshot start, seen by the writers, the same way for\n"
	"             every method: of each transfer that overlapped the "
	"start\n"
	"             window, the time from when it was due (its rate's\n"
	"             schedule, or the end of the writer's last transfer; the\n"
	"             window's opening if later) to its end. The window runs\n"
	"             from the call that starts the save "
	"(bgsnap_save_start(),\n"
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
	"             included), as a share of their rate in the second "
	"before\n"
	"  p50 p99 max  transfer latency during the save\n"
	"  memory     peak extra memory: the highest, over the save, of the\n"
	"             resident memory plus page tables of the guest and of "
	"the\n"
	"             saving process (this one, for uffd-pid), plus a fork\n"
	"             child's pages not shared with the guest and its page\n"
	"             tables, less the same just before; sampled every 20 ms\n"
	"             (/proc/PID/statm and status; a child's smaps_rollup "
	"every\n"
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
	"  write-protect  one UFFDIO_WRITEPROTECT over the populated region, "
	"on\n"
	"                 a userfaultfd of its own, no writer (median of 3)\n"
	"  fault          a write to a protected page, a handler thread reads\n"
	"                 the fault and unprotects the page (2 MiB for thp),\n"
	"                 the write completes: p50 and p99 of 2000; and its\n"
	"                 p50 with both threads pinned to one CPU, and to two\n"
	"  lz4            LZ4_compress_fast on one thread over the content in\n"
	"                 2 MiB chunks (the store's record size), GiB of "
	"input\n"
	"                 per second of that thread's CPU time\n"
	"  disk           sequential O_DIRECT writes of 1 MiB, then fsync, as\n"
	"                 many bytes as the memory, into --dir (buffered "
	"writes\n"
	"                 plus fsync where O_DIRECT is refused; the table "
	"says)\n"
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
	"      --incr-dirty PCT end that gap early once PCT percent of the "
	"pages\n"
	"                       were written (default 0: the gap alone)\n"
	"  -d, --dir DIR        where the files go (default $TMPDIR or /tmp)\n"
	"  -b, --buffer SIZE    bgsnap's write buffers (default 64M)\n"
	"  -c, --compress lz4|none  page compression (default lz4)\n"
	"  -t, --threads N      bgsnap's compression threads (default 0: the\n"
	"                       copier compresses)\n"
	"      --cpus LIST      run bgsnap's threads only on these CPUs "
	"(2-3,6)\n"
	"      --seed N         the guest's content and writers (default 1)\n"
	"      --json           one JSON document on standard output\n"
	"  -q, --quiet          no progress lines on standard error\n"
	"  -h, --help           this help\n"
	"\n"
	"Take measurements on a quiet machine: the load average is reported.\n"
	"exit status: 0 every run succeeded (targets missed or not), 1 a run\n"
	"failed, 2 usage error, 4 this system cannot snapshot ('bgsnap "
	"caps').\n";

const char *const bench_method_names[NMETHODS] = {
	"uffd", "uffd-1phase", "uffd-pid", "fork",
	"stw",	"uffd-incr",   "rollback",
};

/* JSON keys, stable; in this order. */
const char *const bench_fig_keys[NFIG] = {
	"blackout_ms",
	"pause_ms",
	"arm_ms",
	"reprotected_pages",
	"elapsed_s",
	"throughput_gib_s",
	"writers_before_ops_s",
	"writers_during_ops_s",
	"writers_ratio",
	"lat_p50_us",
	"lat_p99_us",
	"lat_max_us",
	"extra_memory_bytes",
	"file_bytes",
	"faults",
	"stall_p99_us",
	"peak_buffer_bytes",
	"pages_written",
	"parent_elapsed_s",
	"parent_file_bytes",
	"rollback_ms",
	"rollback_pages",
	"noise_ms",
	"start_window_ms",
	"worst_due_ms",
	"pause_at_ms",
	"cpu_saver_s",
	"cpu_writers_s",
	"cpu_main_s",
	"cpu_copy_s",
	"cpu_compress_s",
	"cpu_checksum_s",
	"cpu_unprotect_s",
	"cpu_copier_s",
	"cpu_fault_thread_s",
	"cpu_workers_s",
	"load_avg_1m",
};

const char *const bench_pattern_names[] = { "random", "sequential", "hot" };

void bench_progress(const struct bench *b, const char *fmt, ...)
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

void bench_load_avg(double l[3])
{
	FILE *f = fopen("/proc/loadavg", "r");

	l[0] = l[1] = l[2] = NAN;
	if (f) {
		if (fscanf(f, "%lf %lf %lf", &l[0], &l[1], &l[2]) != 3)
			l[0] = l[1] = l[2] = NAN;
		fclose(f);
	}
}

/* ---- options ------------------------------------------------------------- */

enum {
	OPT_SIZES = 256,
	OPT_INCR_GAP,
	OPT_INCR_DIRTY,
	OPT_SEED,
	OPT_JSON,
	OPT_CPUS,
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
	{ "threads", required_argument, NULL, 't' },
	{ "cpus", required_argument, NULL, OPT_CPUS },
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

static bool parse_sizes(struct cli_getopt *o, const char *arg, struct bench *b)
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

		while (m < NMETHODS && strcmp(w, bench_method_names[m]))
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
			if (!strcmp(optarg, bench_pattern_names[i])) {
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
		{ 't', .uint = &b->threads, .max = BGSNAP_MAX_THREADS },
		{ OPT_CPUS, .str = &b->cpus },
		{ OPT_SEED, .uint = &b->seed, .max = UINT64_MAX },
		{ OPT_JSON, .flag = &b->json },
		{ 'q', .flag = &b->quiet },
		{ 0 },
	};
	struct cli_getopt o = { .cmd = "bench",
				.usage = bench_usage,
				.shortopts = "s:k:w:P:r:m:n:d:b:c:t:q",
				.longopts = bench_options,
				.opts = opts,
				.take = take_option,
				.ctx = b };
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

/* ---- setup and the run --------------------------------------------------- */

bool bench_ready(void)
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
	const ssize_t n =
		readlink("/proc/self/exe", b->exe, sizeof(b->exe) - 1);

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

	bench_measure_floors(b, s->size, &s->fl);
	for (int m = 0; m < NMETHODS && !cli_interrupted(); m++) {
		if (!(b->methods & (1u << m)))
			continue;
		for (unsigned i = 0; i < b->repeat && !cli_interrupted(); i++) {
			struct run *r = &s->runs[m][i];
			const uint64_t t0 = cli_now_ns();

			bench_progress(b, "%s %s, run %u of %u",
				       cli_fmt_size(sz, s->size),
				       bench_method_names[m], i + 1, b->repeat);
			if (bench_run_method(b, s->size, (enum method)m, r)) {
				b->failures++;
				continue;
			}
			bench_progress(
				b,
				"  %s: blackout %.3f ms, elapsed %.2f s, "
				"%.1f s in all",
				bench_method_names[m], r->f[F_BLACKOUT],
				r->f[F_ELAPSED],
				(double)(cli_now_ns() - t0) / 1e9);
		}
	}
	bench_median_runs(b, s);
}

static void report_text(const struct bench *b)
{
	struct targets ts = { .n = 0 };

	printf("bgsnap bench %s: load average %.2f %.2f %.2f at the start, "
	       "%.2f %.2f %.2f at the end; %.0f s\n",
	       bgsnap_version_string(), b->load_start[0], b->load_start[1],
	       b->load_start[2], b->load_end[0], b->load_end[1], b->load_end[2],
	       (double)(cli_now_ns() - b->start_ns) / 1e9);
	for (int i = 0; i < b->nsizes; i++)
		bench_print_size(b, &b->res[i]);
	bench_print_growth(b);
	bench_targets_sweep(b, &ts);
	bench_print_targets(&ts,
			    "\ntargets across sizes (issue 8: 4 GiB against "
			    "1 GiB):");
}

/* "bgsnap bench ARGS" (argv[0] is "bench"), cut to fit. */
static void command_line(struct bench *b, int argc, char **argv)
{
	size_t len = (size_t)snprintf(b->command, sizeof(b->command), "bgsnap");

	for (int i = 0; i < argc && len < sizeof(b->command); i++)
		len += (size_t)snprintf(b->command + len,
					sizeof(b->command) - len, " %s",
					argv[i]);
}

int cmd_bench(int argc, char **argv)
{
	struct bench b = {
		.sizes = { 1ull << 30 },
		.nsizes = 1,
		.writers = 2,
		.methods = (1u << NMETHODS) - 1,
		.repeat = 1,
		.incr_gap_ns = 10000000000ULL,
		.buffer = 64u << 20,
		.seed = 1,
	};
	int r = parse_args(argc, argv, &b);

	if (r >= 0)
		return r;
	if (!bench_ready())
		return EXIT_NOCAP;
	command_line(&b, argc, argv);
	cli_catch_signals();
	signal(SIGPIPE, SIG_IGN);
	b.start_ns = cli_now_ns();
	bench_load_avg(b.load_start);
	if (setup(&b)) {
		if (b.dir[0])
			rmdir(b.dir);
		return EXIT_FAILED;
	}
	for (int i = 0; i < b.nsizes && !cli_interrupted(); i++) {
		b.res[i].size = b.sizes[i];
		run_size(&b, &b.res[i]);
	}
	bench_load_avg(b.load_end);
	rmdir(b.dir);
	if (cli_interrupted()) {
		cli_error("bench: interrupted by %s; the guests and the files "
			  "are gone",
			  strsignal(cli_interrupted()));
		free(b.res);
		return EXIT_FAILED;
	}
	r = b.json ? bench_report_json(&b) : (report_text(&b), 0);
	free(b.res);
	if (r)
		return EXIT_FAILED;
	return b.failures ? EXIT_FAILED : EXIT_OK;
}
