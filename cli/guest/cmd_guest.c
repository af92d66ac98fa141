/* SPDX-License-Identifier: MIT */
/*
 * bgsnap guest: the built-in workload, a process to snapshot. Hidden from
 * 'bgsnap --help'; the demo, the tests and the benchmark start it.
 *
 * It maps its memory (4 KiB pages, THP or a memfd), formats a bank in it
 * (guest_bank.h: accounts one per page, a journal; any point-in-time image
 * balances) and runs writer threads on it. It is driven through stdin and
 * stdout, and can be saved from outside ('bgsnap save --pid') or save
 * itself with the embedded API, three ways, for comparison.
 *
 * The file is over 1000 lines because of its protocol: one function per
 * command, and the save commands (three ways in this process, a fork
 * child, saves from outside, tracking and rollback) are more than half of
 * it. The bank it drives is in guest_bank.c, the client in
 * guest_client.c.
 *
 * DESIGN
 * Threads:
 *   main     reads one command per line from stdin and writes exactly one
 *            JSON reply line per command on stdout (flushed), running each
 *            command to its end before reading the next: replies come in
 *            order. It owns the mapping, the bank's control (pause, hold)
 *            and the bgsnap handle of an embedded save.
 *   writers  guest_bank.c's, moving money in the memory; their figures are
 *            read racily (relaxed atomics) for 'stats'.
 *   sampler  only while 'save' runs: reads the Pss of the guest (and of
 *            the fork child) every SAMPLE_NS; started and joined by main,
 *            which reads its result after the join.
 *   bgsnap's fault and copier threads, inside an embedded save.
 * Shutdown: 'quit' or the end of stdin (whoever drove the guest is gone)
 * stops and joins the writers and exits 0.
 *
 * PROTOCOL
 * Request: a line "COMMAND [ARG ...]", words separated by blanks.
 * Reply: one line, a JSON object whose first key is "ok". When false,
 * "error" is a one-line reason and nothing else is promised. Sizes are in
 * bytes and times in ns unless a key says otherwise (*_ms, *_s, *_us).
 *
 *   info      pid, addr, end, range ("A-B" in hex, for --include), len,
 *             kind ("4k"|"thp"|"memfd"), writers, pattern, rate, seed
 *   stats     the writers since the last reset (or the start): elapsed_ns,
 *             ops, ops_min (of the writer that did the fewest: 0 means
 *             one made no progress), ops_per_s, lat_p50_ns, lat_p99_ns, lat_max_ns (one
 *             transfer), stop_max_ns (the longest time a writer wanted to
 *             run and could not: pause, ptrace stop, blocked fault,
 *             preemption), park_max_ns (the longest park by a pause
 *             callback), held
 *   reset     zero the writer figures
 *   hold      park the writers between transfers (nothing in flight, no
 *             lock held): before restoring memory under them
 *   release   let them go
 *   recover   after a restore, writers held: complete the transfers the
 *             journal shows in flight, release every lock
 *   check     pause the writers wherever they are (unless held), check that
 *             the books balance, resume: ok, check_ns; ok false with the
 *             reason when they do not
 *   dump FILE write the memory to FILE, writers paused (unless held):
 *             ok, bytes
 *   save FILE [uffd|stw|fork] [buffer=SIZE] [compress=lz4|none]
 *             [accel=N] [threads=N] [cpus=LIST] [noverify] [one-phase]
 *             [keep] [incremental] [undo=SIZE] [nomem]
 *             save the memory (one region, "guest") with the embedded API:
 *               uffd  bgsnap in this process, pause/resume callbacks park
 *                     the writers for the blackout only (default);
 *               stw   the same, writers parked for the whole copy;
 *               fork  fork() a child that saves the inherited memory
 *                     stop-the-world (it has no writers) while the writers
 *                     here run on; the reply comes when the child exits.
 *             Resets the writer figures at its start. Reply: method, file,
 *             the keys of 'bgsnap save --json' (blackout_ms ... for fork:
 *             the child's save, and blackout_ms is the time fork() took),
 *             fork_ms and child_pid for fork, "writers" {the keys of
 *             'stats' but held: elapsed_ns, ops, ops_min, ops_per_s,
 *             lat_p50_ns, lat_p99_ns, lat_max_ns, stop_max_ns,
 *             park_max_ns} during the save, and "memory" {before_bytes,
 *             peak_bytes, extra_peak_bytes}: the Pss of the guest (plus
 *             the child) before and at its highest during the save.
 *             More words (uffd only, but one-phase and nomem):
 *               one-phase    BGSNAP_SAVE_ONE_PHASE: arm in the pause;
 *               keep         BGSNAP_SAVE_KEEP_TRACKING: the handle stays,
 *                            tracking writes, for the next save, 'written'
 *                            and 'rollback';
 *               incremental  BGSNAP_SAVE_INCREMENTAL, on that handle (a
 *                            save without 'keep' then ends tracking);
 *               undo=SIZE    with keep: the undo budget for 'rollback';
 *               nomem        no "memory" (its Pss walk costs ~14 ms of CPU
 *                            per GiB every 20 ms: whoever measures memory
 *                            from outside asks for this);
 *               held         allowed while the writers are held: a
 *                            snapshot of quiet memory (a base from which
 *                            to measure what the writers change).
 *             The reply also has "wall_ns" (the request to the committed
 *             file, fork included), arm_ms, reprotected_pages,
 *             pages_parent, "start" {window_ns, stop_max_ns, complete,
 *             worst_due_ns, pause_at_ns (when the worst-stopped
 *             transfer was due and the pause began, after the open)}:
 *             the longest a writer was kept from running by the start
 *             (bank_window_max over the window from the call that starts
 *             it, bgsnap_save_start() or fork(), to the writers' release:
 *             the resume callback, or fork()'s return in the parent; for
 *             stw that is the whole save), and for fork
 *             "child_private_bytes" (the child's pages not shared with
 *             the guest, and its page tables, at the end of its save).
 *   window open|close [NS]|get
 *             the start window (guest_bank.h) for a save made from
 *             outside, closed now or at NS (CLOCK_MONOTONIC, e.g. when
 *             the saver's start returned): get replies window_ns,
 *             stop_max_ns, complete
 *   written   while tracking ('save ... keep'): pages (written since the
 *             last snapshot), pages_total
 *   rollback [dirty=PCT] [timeout=DUR] [file]
 *             while tracking: wait until PCT percent of the pages (0 to
 *             100, decimals allowed; default 0) were written or DUR
 *             passed (default 30s), hold the writers, bgsnap_rollback()
 *             to the last 'keep' snapshot from its undo log (and with
 *             'file', for pages not in it, from its file), recover,
 *             release. Reply: written_pages (when held),
 *             pages_total, rolled_back_pages, rollback_ns (the call
 *             alone), hold_ns, recover_ns, wait_ns
 *   untrack   stop tracking (a no-op when not tracking)
 *   quit      reply, then exit 0
 */
#include "cli.h"
#include "guest_bank.h"

#include <bgsnap.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE	    4096u
#define HUGE_2M	    (2u << 20)
#define MAX_WORDS   16
#define SAMPLE_NS   20000000L
#define REGION_NAME "guest"
/* How long 'save' and 'window get' wait for every writer to run again
 * after the start window (a writer still stopped counts). */
#define WINDOW_WAIT_NS 2000000000ULL

#ifndef PR_SET_VMA
#define PR_SET_VMA	     0x53564d41
#define PR_SET_VMA_ANON_NAME 0
#endif

static const char guest_usage[] =
	"usage: bgsnap guest [--size SIZE] [--kind 4k|thp|memfd] [--writers "
	"N]\n"
	"                    [--pattern random|sequential|hot] [--rate OPS]\n"
	"                    [--seed N]\n"
	"\n"
	"The built-in workload: maps SIZE of memory (default 512M), formats a\n"
	"bank in it and runs N writer threads (default 2) moving money "
	"between\n"
	"accounts, at OPS transfers a second in all (0, the default: as fast "
	"as\n"
	"they can). Driven by one command per line on standard input, each\n"
	"answered by one JSON line on standard output: info, stats, reset,\n"
	"hold, release, recover, check, dump FILE, save FILE [uffd|stw|fork]\n"
	"[buffer=SIZE] [compress=lz4|none] [accel=N] [threads=N] [cpus=LIST]\n"
	"[noverify] [one-phase] [keep] [incremental] [undo=SIZE] [nomem]\n"
	"[held], window open|close [NS]|get, written, rollback [dirty=PCT]\n"
	"[timeout=DUR] [file], untrack, quit. See the DESIGN block of\n"
	"cli/guest/cmd_guest.c.\n"
	"A target for 'bgsnap save --pid'.\n";

enum guest_kind { KIND_4K, KIND_THP, KIND_MEMFD };

static const char *const kind_names[] = { "4k", "thp", "memfd" };
static const char *const pattern_names[] = { "random", "sequential", "hot" };

struct guest {
	uint8_t *mem;
	size_t len;
	uint8_t *map; /* what to munmap: THP aligns inside it */
	size_t map_len;
	enum guest_kind kind;
	unsigned writers;
	enum bank_pattern pattern;
	uint64_t rate;
	uint64_t seed;
	uint64_t reset_ns;
	bool held;
	bool quit;
	struct bank bank;
	/* Tracking between saves ('save ... keep'): the handle, and the
	 * file of its last snapshot (for 'rollback'). */
	struct bgsnap *track;
	char track_file[4096];
	uint64_t pause_ns; /* the last pause callback's start */
};

/* ---- memory -------------------------------------------------------------- */

static int map_memfd(struct guest *g)
{
	const int fd = memfd_create("bgsnap-guest", MFD_CLOEXEC);
	int r = 0;

	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)g->len))
		r = -errno;
	if (!r) {
		g->map = mmap(NULL, g->len, PROT_READ | PROT_WRITE, MAP_SHARED,
			      fd, 0);
		if (g->map == MAP_FAILED)
			r = -errno;
	}
	close(fd);
	g->map_len = g->len;
	g->mem = g->map;
	return r;
}

/* Private anonymous memory; THP needs 2 MiB alignment, which mmap does not
 * promise: map more and use an aligned part. */
static int map_anon(struct guest *g)
{
	const size_t extra = g->kind == KIND_THP ? HUGE_2M : 0;
	uintptr_t start;

	g->map_len = g->len + extra;
	g->map = mmap(NULL, g->map_len, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (g->map == MAP_FAILED)
		return -errno;
	start = (uintptr_t)g->map;
	if (extra)
		start = (start + extra - 1) & ~(uintptr_t)(extra - 1);
	g->mem = (uint8_t *)start;
	/* Page size as asked whatever the system's THP default; a name of
	 * its own keeps it one mapping, never merged with a neighbour. */
	madvise(g->mem, g->len,
		g->kind == KIND_THP ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, (unsigned long)g->mem, g->len,
	      (unsigned long)"bgsnap-guest");
	return 0;
}

static int map_memory(struct guest *g)
{
	const int r = g->kind == KIND_MEMFD ? map_memfd(g) : map_anon(g);

	if (r)
		cli_error("guest: cannot map %zu bytes: %s", g->len,
			  strerror(-r));
	return r;
}

/* ---- replies ------------------------------------------------------------- */

/* A reply under construction: the command writes its keys after "ok". */
struct reply {
	char *buf;
	size_t len;
	FILE *f;
	struct cli_json j;
	char error[512];
};

static int fail(struct reply *rp, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int fail(struct reply *rp, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(rp->error, sizeof(rp->error), fmt, ap);
	va_end(ap);
	return -1;
}

static int reply_begin(struct reply *rp)
{
	memset(rp, 0, sizeof(*rp));
	rp->f = open_memstream(&rp->buf, &rp->len);
	if (!rp->f)
		return -ENOMEM;
	cli_json_init(&rp->j, rp->f);
	cli_json_object_begin(&rp->j);
	cli_json_kbool(&rp->j, "ok", true);
	return 0;
}

/* Send the reply (or, after a failure, just the error) on stdout. */
static void reply_send(struct reply *rp, int ret)
{
	struct cli_json j;

	cli_json_object_end(&rp->j);
	fclose(rp->f);
	if (!ret) {
		fputs(rp->buf, stdout);
		fputc('\n', stdout);
		fflush(stdout);
	} else {
		cli_json_init(&j, stdout);
		cli_json_object_begin(&j);
		cli_json_kbool(&j, "ok", false);
		cli_json_kstr(&j, "error", rp->error);
		cli_json_object_end(&j);
		cli_json_end(&j);
	}
	free(rp->buf);
}

/* ---- the writers' figures ------------------------------------------------ */

static void json_writers(struct cli_json *j, struct guest *g)
{
	struct bank_figures f;
	const uint64_t elapsed = cli_now_ns() - g->reset_ns;

	bank_figures(&g->bank, &f);
	cli_json_kuint(j, "elapsed_ns", elapsed);
	cli_json_kuint(j, "ops", f.ops);
	cli_json_kuint(j, "ops_min", f.ops_min);
	cli_json_kdouble(j, "ops_per_s",
			 elapsed ? (double)f.ops * 1e9 / (double)elapsed : 0);
	cli_json_kuint(j, "lat_p50_ns", f.lat_p50_ns);
	cli_json_kuint(j, "lat_p99_ns", f.lat_p99_ns);
	cli_json_kuint(j, "lat_max_ns", f.lat_max_ns);
	cli_json_kuint(j, "stop_max_ns",
		       f.max_delay_ns > f.max_stop_ns ? f.max_delay_ns
						      : f.max_stop_ns);
	cli_json_kuint(j, "park_max_ns", f.max_stop_ns);
}

static void reset_figures(struct guest *g)
{
	bank_figures_reset(&g->bank);
	g->reset_ns = cli_now_ns();
}

/* ---- simple commands ----------------------------------------------------- */

static int do_info(struct guest *g, int argc, char **argv, struct reply *rp)
{
	char range[64];

	(void)argc;
	(void)argv;
	snprintf(range, sizeof(range), "%lx-%lx", (unsigned long)g->mem,
		 (unsigned long)(g->mem + g->len));
	cli_json_kint(&rp->j, "pid", getpid());
	cli_json_kuint(&rp->j, "addr", (uintptr_t)g->mem);
	cli_json_kuint(&rp->j, "end", (uintptr_t)(g->mem + g->len));
	cli_json_kstr(&rp->j, "range", range);
	cli_json_kuint(&rp->j, "len", g->len);
	cli_json_kstr(&rp->j, "kind", kind_names[g->kind]);
	cli_json_kuint(&rp->j, "writers", g->writers);
	cli_json_kstr(&rp->j, "pattern", pattern_names[g->pattern]);
	cli_json_kuint(&rp->j, "rate", g->rate);
	cli_json_kuint(&rp->j, "seed", g->seed);
	return 0;
}

static int do_stats(struct guest *g, int argc, char **argv, struct reply *rp)
{
	(void)argc;
	(void)argv;
	json_writers(&rp->j, g);
	cli_json_kbool(&rp->j, "held", g->held);
	return 0;
}

static int do_reset(struct guest *g, int argc, char **argv, struct reply *rp)
{
	(void)argc;
	(void)argv;
	(void)rp;
	reset_figures(g);
	return 0;
}

static int do_hold(struct guest *g, int argc, char **argv, struct reply *rp)
{
	const uint64_t t0 = cli_now_ns();

	(void)argc;
	(void)argv;
	if (!g->held)
		bank_hold(&g->bank);
	g->held = true;
	cli_json_kuint(&rp->j, "hold_ns", cli_now_ns() - t0);
	return 0;
}

static int do_release(struct guest *g, int argc, char **argv, struct reply *rp)
{
	(void)argc;
	(void)argv;
	(void)rp;
	if (g->held)
		bank_release(&g->bank);
	g->held = false;
	return 0;
}

static int do_recover(struct guest *g, int argc, char **argv, struct reply *rp)
{
	(void)argc;
	(void)argv;
	if (!g->held)
		return fail(rp, "recover: the writers must be held first "
				"('hold')");
	bank_recover(g->mem, g->len);
	return 0;
}

/* Writers stopped for a look at the memory: parked where they are, unless
 * already held between transfers. */
static void quiesce(struct guest *g)
{
	if (!g->held)
		bank_pause(&g->bank);
}

static void unquiesce(struct guest *g)
{
	if (!g->held)
		bank_resume(&g->bank);
}

static int do_check(struct guest *g, int argc, char **argv, struct reply *rp)
{
	char why[256];
	const uint64_t t0 = cli_now_ns();
	int r;

	(void)argc;
	(void)argv;
	/* Checked in place: with every writer parked the memory is one
	 * instant's image, as a copy taken now would be. */
	quiesce(g);
	r = bank_check(g->mem, g->len, why, sizeof(why));
	unquiesce(g);
	if (r)
		return fail(rp, "check: %s", why);
	cli_json_kuint(&rp->j, "check_ns", cli_now_ns() - t0);
	return 0;
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
	while (len) {
		const ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int do_dump(struct guest *g, int argc, char **argv, struct reply *rp)
{
	int fd, r;

	if (argc != 2)
		return fail(rp, "usage: dump FILE");
	fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return fail(rp, "dump: %s: %s", argv[1], strerror(errno));
	quiesce(g);
	r = write_all(fd, g->mem, g->len);
	unquiesce(g);
	if (close(fd) && !r)
		r = -errno;
	if (r)
		return fail(rp, "dump: %s: %s", argv[1], strerror(-r));
	cli_json_kuint(&rp->j, "bytes", g->len);
	return 0;
}

static int do_quit(struct guest *g, int argc, char **argv, struct reply *rp)
{
	(void)argc;
	(void)argv;
	(void)rp;
	g->quit = true;
	return 0;
}

/* ---- memory use during a save -------------------------------------------- */

struct sampler {
	pthread_t thread;
	_Atomic bool stop;
	_Atomic int child; /* a fork child's pid, also measured; 0: none */
	uint64_t before;   /* main: set before the start */
	uint64_t peak;	   /* sampler thread; main reads it after the join */
	bool off;	   /* 'nomem': no thread, no reading */
};

/* The Pss of process @pid (0: this one), bytes; 0 if unreadable. */
static uint64_t pss_of(int pid)
{
	static const char *const pss[] = { "Pss:" };
	char path[64];

	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", pid);
	else
		snprintf(path, sizeof(path), "/proc/self/smaps_rollup");
	return cli_proc_kb(path, pss, 1);
}

static void sample(struct sampler *s)
{
	const int child = atomic_load(&s->child);
	const uint64_t v = pss_of(0) + (child ? pss_of(child) : 0);

	if (v > s->peak)
		s->peak = v;
}

static void *sampler_main(void *arg)
{
	struct sampler *s = arg;
	const struct timespec tick = { 0, SAMPLE_NS };

	while (!atomic_load(&s->stop)) {
		sample(s);
		nanosleep(&tick, NULL);
	}
	sample(s);
	return NULL;
}

static int sampler_start(struct sampler *s)
{
	memset(s, 0, sizeof(*s));
	s->before = pss_of(0);
	s->peak = s->before;
	return -pthread_create(&s->thread, NULL, sampler_main, s);
}

/* This process's pages that no other process maps, and its page tables:
 * what a fork child costs beyond its parent. */
static uint64_t own_private_bytes(void)
{
	static const char *const rollup[] = { "Private_Clean:",
					      "Private_Dirty:" };
	static const char *const status[] = { "VmPTE:" };

	return cli_proc_kb("/proc/self/smaps_rollup", rollup, 2) +
	       cli_proc_kb("/proc/self/status", status, 1);
}

static void sampler_stop(struct sampler *s, struct cli_json *j)
{
	atomic_store(&s->stop, true);
	pthread_join(s->thread, NULL);
	cli_json_key(j, "memory");
	cli_json_object_begin(j);
	cli_json_kuint(j, "before_bytes", s->before);
	cli_json_kuint(j, "peak_bytes", s->peak);
	cli_json_kuint(j, "extra_peak_bytes",
		       s->peak > s->before ? s->peak - s->before : 0);
	cli_json_object_end(j);
}

/* ---- save ---------------------------------------------------------------- */

enum method { METHOD_UFFD, METHOD_STW, METHOD_FORK };

static const char *const method_names[] = { "uffd", "stw", "fork" };

struct save_cmd {
	const char *file;
	enum method method;
	struct bgsnap_save_opts opts;
	bool nomem;
	bool held; /* allowed with the writers held */
};

#define TRACK_FLAGS (BGSNAP_SAVE_KEEP_TRACKING | BGSNAP_SAVE_INCREMENTAL)

static int pause_writers(void *arg)
{
	struct guest *g = arg;

	g->pause_ns = cli_now_ns();
	bank_pause(&g->bank);
	return 0;
}

/* The resume callback: the save's start ends when the writers are let
 * go, so the start window closes here. */
static void resume_writers(void *arg)
{
	bank_window_close(&((struct guest *)arg)->bank);
	bank_resume(&((struct guest *)arg)->bank);
}

static int parse_save_word(const char *w, struct save_cmd *c, struct reply *rp)
{
	uint64_t v;

	for (int m = METHOD_UFFD; m <= METHOD_FORK; m++)
		if (!strcmp(w, method_names[m])) {
			c->method = (enum method)m;
			return 0;
		}
	if (!strncmp(w, "buffer=", 7) && !cli_parse_size(w + 7, &v))
		c->opts.buffer_budget = (size_t)v;
	else if (!strcmp(w, "compress=lz4"))
		c->opts.compression = BGSNAP_COMPRESS_LZ4;
	else if (!strcmp(w, "compress=none"))
		c->opts.compression = BGSNAP_COMPRESS_NONE;
	else if (!strncmp(w, "accel=", 6) && !cli_parse_uint(w + 6, &v) &&
		 v >= 1 && v <= 65537)
		c->opts.lz4_acceleration = (int)v;
	else if (!strncmp(w, "threads=", 8) && !cli_parse_uint(w + 8, &v) &&
		 v <= BGSNAP_MAX_THREADS)
		c->opts.threads = (unsigned)v;
	else if (!strncmp(w, "cpus=", 5) && w[5])
		c->opts.cpus = w + 5;
	else if (!strcmp(w, "noverify"))
		c->opts.flags |= BGSNAP_SAVE_NO_VERIFY;
	else if (!strcmp(w, "one-phase"))
		c->opts.flags |= BGSNAP_SAVE_ONE_PHASE;
	else if (!strcmp(w, "keep"))
		c->opts.flags |= BGSNAP_SAVE_KEEP_TRACKING;
	else if (!strcmp(w, "incremental"))
		c->opts.flags |= BGSNAP_SAVE_INCREMENTAL;
	else if (!strncmp(w, "undo=", 5) && !cli_parse_size(w + 5, &v))
		c->opts.undo_budget = (size_t)v;
	else if (!strcmp(w, "nomem"))
		c->nomem = true;
	else if (!strcmp(w, "held"))
		c->held = true;
	else
		return fail(rp, "save: unknown or bad option '%s'", w);
	return 0;
}

static int parse_save(int argc, char **argv, struct save_cmd *c,
		      struct reply *rp)
{
	memset(c, 0, sizeof(*c));
	c->opts.size = sizeof(c->opts);
	if (argc < 2)
		return fail(rp,
			    "usage: save FILE [uffd|stw|fork] [buffer=SIZE] "
			    "[compress=lz4|none] [accel=N] [noverify]");
	c->file = argv[1];
	for (int i = 2; i < argc; i++)
		if (parse_save_word(argv[i], c, rp))
			return -1;
	if (c->method != METHOD_UFFD &&
	    (c->opts.flags & (TRACK_FLAGS | BGSNAP_SAVE_ONE_PHASE)))
		return fail(rp, "save: one-phase, keep and incremental are for "
				"uffd");
	return 0;
}

/* What a save yields; a fork child sends it back through its pipe. */
struct child_result {
	int ret;
	struct bgsnap_stats st;
	char err[400];
	uint64_t done_ns;	/* the file committed (CLOCK_MONOTONIC) */
	uint64_t private_bytes; /* a fork child's own, at the end */
};

/* A handle on the memory: the tracking one ('keep'), or a new one. */
static int memory_handle(struct guest *g, bool child, struct bgsnap **h)
{
	int r;

	if (g->track && !child) {
		*h = g->track;
		return 0;
	}
	r = bgsnap_new(h);
	if (!r) {
		r = bgsnap_add_region(*h, REGION_NAME, g->mem, g->len);
		if (r)
			bgsnap_free(*h);
	}
	return r;
}

/* After a save on @h: kept for tracking ('keep' and success), or freed
 * (a save without 'keep' has ended tracking). */
static void memory_handle_done(struct guest *g, struct bgsnap *h,
			       const struct save_cmd *c,
			       const struct bgsnap_save_opts *o, int r)
{
	if (!r && (o->flags & BGSNAP_SAVE_KEEP_TRACKING)) {
		g->track = h;
		snprintf(g->track_file, sizeof(g->track_file), "%s", c->file);
		return;
	}
	if (h == g->track)
		g->track = NULL;
	bgsnap_free(h);
}

/*
 * One save of the memory with the embedded API, into @res; its err
 * names the cause on failure. The start window closes in the resume
 * callback (in a fork @child there are no writers: the parent closed it
 * when fork() returned).
 */
static int save_memory(struct guest *g, const struct save_cmd *c,
		       const struct bgsnap_save_opts *o,
		       struct child_result *res, bool child)
{
	struct bgsnap *h;
	int r = memory_handle(g, child, &h);

	if (r) {
		snprintf(res->err, sizeof(res->err), "%s", bgsnap_strerror(r));
		return r;
	}
	/* The start window opens here, after the handle exists: a real owner
	 * makes its handle once, long before it saves. */
	if (!child)
		bank_window_open(&g->bank);
	r = bgsnap_save_start(h, c->file, o);
	if (!r)
		r = bgsnap_wait(h);
	res->done_ns = cli_now_ns();
	if (r) {
		snprintf(res->err, sizeof(res->err), "%s",
			 *bgsnap_last_error(h) ? bgsnap_last_error(h)
					       : bgsnap_strerror(r));
	} else {
		res->st.size = sizeof(res->st);
		bgsnap_stats(h, &res->st);
	}
	/* Measure the child's memory now, before the handle's buffers are
	 * freed. */
	if (!r && child)
		res->private_bytes = own_private_bytes();
	memory_handle_done(g, h, c, o, r);
	return r;
}

static int read_all(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		const ssize_t n = read(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n ? -errno : -EPIPE;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* In the child: one thread (fork copies only the caller), no writers; the
 * memory is quiescent by nature, so a stop-the-world save needs no pause. */
static void __attribute__((noreturn))
fork_child(struct guest *g, const struct save_cmd *c, int out)
{
	struct bgsnap_save_opts o = c->opts;
	struct child_result res = { 0 };

	o.flags |= BGSNAP_SAVE_STOP_THE_WORLD;
	res.ret = save_memory(g, c, &o, &res, true);
	write_all(out, (const uint8_t *)&res, sizeof(res));
	_exit(res.ret ? 1 : 0);
}

static int save_fork(struct guest *g, const struct save_cmd *c,
		     struct sampler *s, struct child_result *res,
		     uint64_t *fork_ns, int *child)
{
	int p[2], status, r;
	uint64_t t0;

	if (pipe2(p, O_CLOEXEC))
		return -errno;
	bank_window_open(&g->bank);
	t0 = cli_now_ns();
	*child = fork();
	if (*child == 0)
		fork_child(g, c, p[1]);
	*fork_ns = cli_now_ns() - t0;
	bank_window_close(&g->bank);
	close(p[1]);
	if (*child < 0) {
		close(p[0]);
		return -errno;
	}
	atomic_store(&s->child, *child);
	r = read_all(p[0], res, sizeof(*res));
	close(p[0]);
	/* Take one more sample while the child still exists. */
	if (!s->off)
		sample(s);
	atomic_store(&s->child, 0);
	while (waitpid(*child, &status, 0) < 0 && errno == EINTR)
		;
	if (r)
		snprintf(res->err, sizeof(res->err), "the save child died (%s)",
			 WIFSIGNALED(status) ? strsignal(WTERMSIG(status))
					     : "no result");
	return r ? r : res->ret;
}

static int run_save(struct guest *g, const struct save_cmd *c,
		    struct sampler *s, struct reply *rp)
{
	struct bgsnap_save_opts o = c->opts;
	struct child_result res = { 0 };
	const uint64_t t0 = cli_now_ns();
	uint64_t fork_ns = 0;
	int child = 0, r;

	if (c->method == METHOD_FORK) {
		r = save_fork(g, c, s, &res, &fork_ns, &child);
		/* The parent's writers stood still while fork() copied
		 * their page tables: that is this method's blackout. */
		res.st.blackout_ns = fork_ns;
	} else {
		o.pause = pause_writers;
		o.resume = resume_writers;
		o.arg = g;
		if (c->method == METHOD_STW)
			o.flags |= BGSNAP_SAVE_STOP_THE_WORLD;
		r = save_memory(g, c, &o, &res, false);
	}
	if (r)
		return fail(rp, "save: %s", res.err);
	cli_json_kstr(&rp->j, "method", method_names[c->method]);
	cli_json_kstr(&rp->j, "file", c->file);
	cli_json_save_stats(&rp->j, &res.st);
	if (c->method == METHOD_FORK) {
		cli_json_kdouble(&rp->j, "fork_ms", (double)fork_ns / 1e6);
		cli_json_kint(&rp->j, "child_pid", child);
		cli_json_kuint(&rp->j, "child_private_bytes",
			       res.private_bytes);
	}
	cli_json_kuint(&rp->j, "wall_ns", res.done_ns - t0);
	cli_json_kdouble(&rp->j, "arm_ms", (double)res.st.arm_ns / 1e6);
	cli_json_kuint(&rp->j, "reprotected_pages", res.st.reprotected_pages);
	cli_json_kuint(&rp->j, "pages_parent", res.st.pages_parent);
	return 0;
}

/* The start window's figure as "start" {window_ns, stop_max_ns,
 * complete}, after waiting up to @wait_ns for every writer to run again;
 * the window ends. */
static void json_window(struct cli_json *j, struct guest *g, uint64_t wait_ns)
{
	const uint64_t open = atomic_load(&g->bank.win_open_ns);
	const uint64_t close = atomic_load(&g->bank.win_close_ns);
	bool complete;
	const uint64_t max = bank_window_max(&g->bank, wait_ns, &complete);

	cli_json_key(j, "start");
	cli_json_object_begin(j);
	cli_json_kuint(
		j, "window_ns",
		open && close > open && close != UINT64_MAX ? close - open : 0);
	cli_json_kuint(j, "stop_max_ns", max);
	cli_json_kbool(j, "complete", complete);
	/* Where in the window: the worst transfer was due, the pause began
	 * (0: not in this window), ns after the open. */
	cli_json_kint(j, "worst_due_ns",
		      max ? (int64_t)(g->bank.win_worst_due_ns - open) : 0);
	cli_json_kuint(j, "pause_at_ns",
		       g->pause_ns > open ? g->pause_ns - open : 0);
	cli_json_object_end(j);
}

static int do_save(struct guest *g, int argc, char **argv, struct reply *rp)
{
	struct save_cmd c;
	struct sampler s;
	int r;

	if (parse_save(argc, argv, &c, rp))
		return -1;
	if (g->held && !c.held)
		return fail(rp, "save: the writers are held; 'release' first");
	if (g->track && c.method != METHOD_UFFD)
		return fail(rp, "save: tracking; 'untrack' first");
	if ((c.opts.flags & BGSNAP_SAVE_INCREMENTAL) && !g->track)
		return fail(rp, "save: incremental: not tracking (save with "
				"'keep' first)");
	memset(&s, 0, sizeof(s));
	s.off = c.nomem;
	r = s.off ? 0 : sampler_start(&s);
	if (r)
		return fail(rp, "save: %s", strerror(-r));
	reset_figures(g);
	r = run_save(g, &c, &s, rp);
	json_window(&rp->j, g, r ? 0 : WINDOW_WAIT_NS);
	if (r) {
		if (!s.off) {
			atomic_store(&s.stop, true);
			pthread_join(s.thread, NULL);
		}
		return r;
	}
	cli_json_key(&rp->j, "writers");
	cli_json_object_begin(&rp->j);
	json_writers(&rp->j, g);
	cli_json_object_end(&rp->j);
	if (!s.off)
		sampler_stop(&s, &rp->j);
	return 0;
}

/* ---- a save from outside, tracking, rollback ------------------------ */

static int do_window(struct guest *g, int argc, char **argv, struct reply *rp)
{
	uint64_t ns;

	if (argc == 2 && !strcmp(argv[1], "open"))
		bank_window_open(&g->bank);
	else if (argc == 2 && !strcmp(argv[1], "close"))
		bank_window_close(&g->bank);
	else if (argc == 3 && !strcmp(argv[1], "close") &&
		 !cli_parse_uint(argv[2], &ns) && ns)
		bank_window_close_at(&g->bank, ns);
	else if (argc == 2 && !strcmp(argv[1], "get"))
		json_window(&rp->j, g, WINDOW_WAIT_NS);
	else
		return fail(rp, "usage: window open|close [NS]|get");
	return 0;
}

static int do_written(struct guest *g, int argc, char **argv, struct reply *rp)
{
	uint64_t pages;

	(void)argc;
	(void)argv;
	if (!g->track || bgsnap_track_written(g->track, &pages))
		return fail(rp, "written: not tracking (save with 'keep' "
				"first)");
	cli_json_kuint(&rp->j, "pages", pages);
	cli_json_kuint(&rp->j, "pages_total", g->len / PAGE);
	return 0;
}

struct rollback_cmd {
	double dirty_pct;
	uint64_t timeout_ns;
	bool file; /* pages not in the undo log from the snapshot's file */
};

static int parse_rollback(int argc, char **argv, struct rollback_cmd *c,
			  struct reply *rp)
{
	c->dirty_pct = 0;
	c->timeout_ns = 30000000000ULL;
	c->file = false;
	for (int i = 1; i < argc; i++) {
		char *end;

		if (!strcmp(argv[i], "file")) {
			c->file = true;
		} else if (!strncmp(argv[i], "dirty=", 6)) {
			c->dirty_pct = strtod(argv[i] + 6, &end);
			if (*end || end == argv[i] + 6 ||
			    !(c->dirty_pct >= 0) || c->dirty_pct > 100)
				return fail(rp, "rollback: bad '%s'", argv[i]);
		} else if (strncmp(argv[i], "timeout=", 8) ||
			   cli_parse_duration(argv[i] + 8, &c->timeout_ns)) {
			return fail(rp, "usage: rollback [dirty=PCT] "
					"[timeout=DUR] [file]");
		}
	}
	return 0;
}

/* Until @pct percent of the pages were written since the snapshot, or
 * @timeout_ns passed: the pages written then. */
static uint64_t wait_written(struct guest *g, double pct, uint64_t timeout_ns)
{
	const uint64_t want = (uint64_t)((double)(g->len / PAGE) * pct / 100);
	const uint64_t end = cli_now_ns() + timeout_ns;
	uint64_t pages = 0;

	while (!bgsnap_track_written(g->track, &pages) && pages < want &&
	       cli_now_ns() < end)
		nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
	return pages;
}

static int do_rollback(struct guest *g, int argc, char **argv, struct reply *rp)
{
	struct bgsnap_rollback_opts ro = { .size = sizeof(ro) };
	const bool was_held = g->held;
	struct rollback_cmd c;
	struct bgsnap_stats st = { .size = sizeof(st) };
	uint64_t t0, t1, t2, t3, written = 0;
	int r;

	if (parse_rollback(argc, argv, &c, rp))
		return -1;
	if (!g->track)
		return fail(rp, "rollback: not tracking (save with 'keep' "
				"first)");
	if (c.file)
		ro.path = g->track_file;
	t0 = cli_now_ns();
	wait_written(g, c.dirty_pct, c.timeout_ns);
	/* Held between transfers: the memory goes back to an instant that
	 * may be mid-transfer, which 'recover' then completes. */
	t1 = cli_now_ns();
	if (!was_held)
		bank_hold(&g->bank);
	bgsnap_track_written(g->track, &written);
	t2 = cli_now_ns();
	r = bgsnap_rollback(g->track, &ro);
	t3 = cli_now_ns();
	if (!r)
		bgsnap_stats(g->track, &st);
	bank_recover(g->mem, g->len);
	if (!was_held)
		bank_release(&g->bank);
	if (r)
		return fail(rp, "rollback: %s",
			    *bgsnap_last_error(g->track)
				    ? bgsnap_last_error(g->track)
				    : bgsnap_strerror(r));
	cli_json_kuint(&rp->j, "written_pages", written);
	cli_json_kuint(&rp->j, "pages_total", g->len / PAGE);
	cli_json_kuint(&rp->j, "rolled_back_pages", st.pages_changed);
	cli_json_kuint(&rp->j, "rollback_ns", t3 - t2);
	cli_json_kuint(&rp->j, "hold_ns", t2 - t1);
	cli_json_kuint(&rp->j, "recover_ns", cli_now_ns() - t3);
	cli_json_kuint(&rp->j, "wait_ns", t1 - t0);
	return 0;
}

static void untrack(struct guest *g)
{
	bgsnap_free(g->track); /* stops tracking: nothing left protected */
	g->track = NULL;
}

static int do_untrack(struct guest *g, int argc, char **argv, struct reply *rp)
{
	(void)argc;
	(void)argv;
	(void)rp;
	untrack(g);
	return 0;
}

/* ---- the command loop ---------------------------------------------------- */

struct command {
	const char *name;
	int (*run)(struct guest *g, int argc, char **argv, struct reply *rp);
};

static const struct command commands[] = {
	{ "info", do_info },	     { "stats", do_stats },
	{ "reset", do_reset },	     { "hold", do_hold },
	{ "release", do_release },   { "recover", do_recover },
	{ "check", do_check },	     { "dump", do_dump },
	{ "save", do_save },	     { "quit", do_quit },
	{ "window", do_window },     { "written", do_written },
	{ "rollback", do_rollback }, { "untrack", do_untrack },
};

static int split(char *line, char **argv)
{
	int argc = 0;

	for (char *save = NULL, *w = strtok_r(line, " \t\r\n", &save);
	     w && argc < MAX_WORDS; w = strtok_r(NULL, " \t\r\n", &save))
		argv[argc++] = w;
	return argc;
}

static void dispatch(struct guest *g, char *line)
{
	char *argv[MAX_WORDS];
	const int argc = split(line, argv);
	struct reply rp;
	int r;

	if (!argc)
		return; /* blank lines are not commands */
	if (reply_begin(&rp)) {
		puts("{\"ok\":false,\"error\":\"out of memory\"}");
		fflush(stdout);
		return;
	}
	r = fail(&rp, "unknown command '%s'", argv[0]);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[0], commands[i].name))
			r = commands[i].run(g, argc, argv, &rp);
	reply_send(&rp, r);
}

static void serve(struct guest *g)
{
	char *line = NULL;
	size_t cap = 0;

	while (!g->quit && getline(&line, &cap, stdin) >= 0)
		dispatch(g, line);
	free(line);
}

/* ---- options ------------------------------------------------------------- */

static const struct option guest_options[] = {
	{ "size", required_argument, NULL, 's' },
	{ "kind", required_argument, NULL, 'k' },
	{ "writers", required_argument, NULL, 'w' },
	{ "pattern", required_argument, NULL, 'P' },
	{ "rate", required_argument, NULL, 'r' },
	{ "seed", required_argument, NULL, 'S' },
	CLI_OPT_HELP_ENTRY,
	{ NULL, 0, NULL, 0 },
};

/* The index of @arg in @names, or -1 after a usage error. */
static int pick_name(struct cli_getopt *o, const char *arg,
		     const char *const *names, int n)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(arg, names[i]))
			return i;
	cli_error("guest: %s: '%s' is not one of the choices (see 'bgsnap "
		  "guest --help')",
		  o->optname, arg);
	return -1;
}

/* The options the table cannot store: true, or false after a usage
 * error. */
static bool take_option(struct cli_getopt *o, int c, void *ctx)
{
	struct guest *g = ctx;
	uint64_t v;
	int i;

	switch (c) {
	case 's':
		if (!cli_arg_size(o, optarg, &v))
			return false;
		g->len = (size_t)v;
		return true;
	case 'k':
		i = pick_name(o, optarg, kind_names, 3);
		g->kind = (enum guest_kind)i;
		return i >= 0;
	case 'w':
		if (!cli_arg_uint(o, optarg, 1, BANK_MAX_WRITERS, &v))
			return false;
		g->writers = (unsigned)v;
		return true;
	case 'P':
		i = pick_name(o, optarg, pattern_names, 3);
		g->pattern = (enum bank_pattern)i;
		return i >= 0;
	}
	return false;
}

/* Parsed options, or an exit code (EXIT_OK after --help). */
static int parse_args(int argc, char **argv, struct guest *g)
{
	const struct cli_opt opts[] = {
		{ 'r', .uint = &g->rate, .max = UINT32_MAX },
		{ 'S', .uint = &g->seed, .max = UINT64_MAX },
		{ 0 },
	};
	struct cli_getopt o = { .cmd = "guest",
				.usage = guest_usage,
				.shortopts = "s:k:w:P:r:S:",
				.longopts = guest_options,
				.opts = opts,
				.take = take_option,
				.ctx = g };
	const int code = cli_parse(&o, argc, argv, 0, 0, "");

	if (code >= 0)
		return code;
	if (g->len < 1u << 20) {
		cli_error("guest: --size: at least 1M");
		return EXIT_USAGE;
	}
	return -1;
}

static size_t round_size(const struct guest *g)
{
	const size_t unit = g->kind == KIND_THP ? HUGE_2M : PAGE;

	return (g->len + unit - 1) / unit * unit;
}

/* Not on the main thread's stack: a struct bank is some 200 KiB, and a
 * stack pointer that deep sits at the bottom of the stack mapping, where
 * 'bgsnap save --pid' finds no room for the frame of an injected call. */
static struct guest the_guest = { .len = 512u << 20, .writers = 2, .seed = 1 };

int cmd_guest(int argc, char **argv)
{
	struct guest *g = &the_guest;
	int r = parse_args(argc, argv, g);

	if (r >= 0)
		return r;
	g->len = round_size(g);
	if (map_memory(g))
		return EXIT_FAILED;
	bank_format(g->mem, g->len, g->seed);
	r = bank_start(&g->bank, g->mem, g->len, g->writers, g->pattern,
		       g->rate, g->seed);
	if (r) {
		cli_error("guest: cannot start the writers: %s", strerror(-r));
		munmap(g->map, g->map_len);
		return EXIT_FAILED;
	}
	g->reset_ns = cli_now_ns();
	serve(g);
	untrack(g);
	bank_stop(&g->bank);
	munmap(g->map, g->map_len);
	return EXIT_OK;
}
