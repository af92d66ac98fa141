/* SPDX-License-Identifier: MIT */
/*
 * bgsnap save --pid: snapshot a running process while it runs.
 *
 * The process is stopped (ptrace) only to arm write protection; its pages
 * are then saved in the background by the library, which must end clean
 * whatever happens: nothing protected, no writer blocked, no file under
 * the final name. This file adds the command's side of that promise: a
 * signal (SIGINT, SIGTERM, SIGHUP) cancels the save through
 * bgsnap_cancel() and waits for it, instead of killing the command in the
 * middle. Signals are held back while the library has the process stopped
 * (the blackout is never cut short), and acted on right after.
 *
 * FILE is never replaced when it must not be, as export and flatten
 * (cli_output_*()): what is at FILE is checked before the save starts;
 * the library writes a complete snapshot under a temporary name beside
 * it (its own temporary, then renamed to ours); and ours is renamed to
 * FILE with RENAME_NOREPLACE without --force, so that nothing that
 * appeared there meanwhile is replaced either. A snapshot of this save's
 * own chain (--parent and its ancestors, compared by device and inode) is
 * never replaced, --force or not.
 */
#include "cli.h"

#include <bgsnap.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PAGE		 4096u
#define MAX_SPECS	 64
#define POLL_INTERVAL_NS 20000000L /* how often progress and signals are seen */
#define START_TRIES	 3

static const char save_usage[] =
	"usage: bgsnap save --pid PID -o FILE|- [options]\n"
	"\n"
	"Snapshot the memory of running process PID into FILE while it keeps\n"
	"running. The process is stopped only while write protection is armed\n"
	"(the blackout, reported); every page is then saved once, in the\n"
	"background, and a write to a page not yet saved waits only for that\n"
	"page. Private anonymous memory (heap, stacks, anonymous mmaps),\n"
	"memfd/shmem and hugetlbfs are saved this way; private file mappings\n"
	"with pages of their own (.data, relro) are copied while the process "
	"is\n"
	"stopped; read-only file mappings and special mappings are recorded "
	"by\n"
	"name only. bgsnap needs the permission a debugger needs (ptrace).\n"
	"\n"
	"FILE is created 0600 under a temporary name and renamed when "
	"complete;\n"
	"an existing FILE is not replaced without --force, and a symbolic "
	"link,\n"
	"a directory, a device, a FIFO or a socket never is, nor a snapshot "
	"of\n"
	"this save's own chain (--parent and its ancestors). '-' writes the\n"
	"snapshot to standard output (a pipe or a file, never a terminal), "
	"and\n"
	"the report then goes to standard error.\n"
	"\n"
	"options:\n"
	"  -p, --pid PID          the process to save (required)\n"
	"  -o, --output FILE|-    where to write the snapshot (required)\n"
	"  -f, --force            replace FILE if it exists (a regular file)\n"
	"  -i, --include SPEC     save only mappings matching SPEC "
	"(repeatable)\n"
	"  -x, --exclude SPEC     leave out mappings matching SPEC "
	"(repeatable)\n"
	"                         SPEC: a glob on the mapping's name or path\n"
	"                         ('[heap]*', '/memfd:ram*', 'anon@7f00*') or "
	"a\n"
	"                         hex address range 'A-B'; left-out mappings "
	"are\n"
	"                         recorded by name only\n"
	"  -b, --buffer SIZE      memory for write buffers (default 64M)\n"
	"  -c, --compress lz4|none  page compression (default lz4)\n"
	"      --lz4-accel N      lz4 acceleration, 1 (default) to 65537: "
	"faster,\n"
	"                         larger\n"
	"  -t, --threads N        compress on N threads behind the copier, 0 "
	"to 64\n"
	"                         (default 0: the copier compresses)\n"
	"      --cpus LIST        run bgsnap's threads only on these CPUs, a "
	"list\n"
	"                         like 2-3,6 (as taskset -c takes it): off "
	"those\n"
	"                         the process's own threads are pinned to\n"
	"      --no-verify        skip the check that each page was still\n"
	"                         write-protected when it was saved\n"
	"      --stop-the-world   keep the process stopped for the whole copy\n"
	"                         (no userfaultfd; a baseline)\n"
	"      --parent PARENT    an incremental snapshot: store only the "
	"pages\n"
	"                         that differ from the snapshot PARENT "
	"(compared\n"
	"                         page by page), the others as \"in the "
	"parent\";\n"
	"                         readers look for PARENT beside FILE by its\n"
	"                         name, or are given it (--parent)\n"
	"      --max-stall SECONDS  abandon the save when it makes no "
	"progress\n"
	"                         for this long (a unit may follow: 500ms, "
	"2m):\n"
	"                         no write of the snapshot completes (the "
	"reader\n"
	"                         of -o - stopped reading, a disk hangs), or\n"
	"                         bgsnap was stopped; the process is released\n"
	"                         at once and nothing is left under FILE\n"
	"      --json             report as one JSON object (stable keys)\n"
	"  -q, --quiet            no progress bar, no report (but --json's)\n"
	"  -h, --help             this help\n"
	"\n"
	"SIGINT, SIGTERM or SIGHUP cancel the save: the process runs on\n"
	"unharmed and no file is left under FILE. If bgsnap itself is killed\n"
	"(even with SIGKILL) the process runs on as well. SIGTSTP, SIGTTIN\n"
	"and SIGTTOU (Ctrl-Z) are ignored during a save. SIGSTOP cannot be:\n"
	"while bgsnap is stopped, a thread of the process that writes a page\n"
	"not yet saved waits until bgsnap is continued (with --max-stall, the\n"
	"save then ends at once).\n"
	"\n"
	"exit status: 0 saved; 1 the save failed (FILE exists, the process "
	"went\n"
	"away, a mapping cannot be saved safely, permission denied, disk "
	"full,\n"
	"cancelled);\n"
	"2 usage error; 4 this system lacks a capability (see 'bgsnap "
	"caps').\n";

enum {
	OPT_LZ4_ACCEL = 256,
	OPT_NO_VERIFY,
	OPT_STW,
	OPT_JSON,
	OPT_PARENT,
	OPT_CPUS,
	OPT_MAX_STALL,
};

static const struct option save_options[] = {
	{ "pid", required_argument, NULL, 'p' },
	{ "output", required_argument, NULL, 'o' },
	{ "force", no_argument, NULL, 'f' },
	{ "include", required_argument, NULL, 'i' },
	{ "exclude", required_argument, NULL, 'x' },
	{ "buffer", required_argument, NULL, 'b' },
	{ "compress", required_argument, NULL, 'c' },
	{ "lz4-accel", required_argument, NULL, OPT_LZ4_ACCEL },
	{ "threads", required_argument, NULL, 't' },
	{ "cpus", required_argument, NULL, OPT_CPUS },
	{ "no-verify", no_argument, NULL, OPT_NO_VERIFY },
	{ "stop-the-world", no_argument, NULL, OPT_STW },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "parent", required_argument, NULL, OPT_PARENT },
	{ "max-stall", required_argument, NULL, OPT_MAX_STALL },
	{ "quiet", no_argument, NULL, 'q' },
	CLI_OPT_HELP_ENTRY,
	{ NULL, 0, NULL, 0 },
};

struct save_args {
	struct cli_save_req req;
	struct bgsnap_save_opts opts;
	const char *include[MAX_SPECS];
	const char *exclude[MAX_SPECS];
	const char *output;
	bool json, force;
	int dirfd;		    /* FILE's directory; -1 for '-' */
	char name[NAME_MAX + 1];    /* FILE's last component */
	char tmpname[NAME_MAX + 1]; /* ours beside it: the library's FILE */
	char tmp[PATH_MAX];	    /* the same as a path */
};

/* ---- the save ------------------------------------------------------------ */

static const char *detail(const struct bgsnap *h, int err)
{
	const char *d = bgsnap_last_error(h);

	return d && *d ? d : bgsnap_strerror(err);
}

static const char *cmd_of(const struct cli_save_req *req)
{
	return req->cmd ? req->cmd : "save";
}

static void count_regions(const struct bgsnap *h, struct cli_save_result *res)
{
	const size_t n = bgsnap_region_count(h);

	for (size_t i = 0; i < n; i++) {
		struct bgsnap_region_info ri = { .size = sizeof(ri) };

		if (bgsnap_region(h, i, &ri))
			continue;
		if (ri.kind == BGSNAP_KIND_UNSAVED) {
			res->regions_skipped++;
			continue;
		}
		if (ri.kind == BGSNAP_KIND_FILE_PRIVATE)
			res->regions_copied++;
		else
			res->regions_saved++;
		res->bytes_saved += ri.len;
	}
}

/* A filter that leaves nothing to save is a mistake (usage), not a
 * snapshot; without one, the process has nothing to save. 0, or the
 * exit code after a message. */
static int check_selection(const struct bgsnap *h,
			   const struct cli_save_req *req)
{
	const bool filtered = req->ninclude || req->nexclude;
	struct cli_save_result none = { 0 };

	count_regions(h, &none);
	if (none.regions_saved || none.regions_copied)
		return 0;
	cli_error_no_mapping(cmd_of(req), req->pid, filtered);
	return filtered ? EXIT_USAGE : EXIT_FAILED;
}

/* A save that started failed with @r: one line, and the exit code. */
static int report_failure(const struct bgsnap *h,
			  const struct cli_save_req *req, int r)
{
	const char *cmd = cmd_of(req),
		   *what = req->what ? req->what : "snapshot";
	const int pid = req->pid;
	char why[256];
	const int code = cli_save_failure(pid, r, true, why, sizeof(why));
	const char *msg = *why ? why : detail(h, r);
	char pfx[32];

	if (r == -ECANCELED && cli_interrupted())
		cli_error("%s: cancelled by %s; process %d runs on, no "
			  "%s was written",
			  cmd, strsignal(cli_interrupted()), pid, what);
	else if (r == BGSNAP_ETARGET)
		cli_error("%s: process %d exited during the save; no "
			  "%s was written",
			  cmd, pid, what);
	else if (r == -ESRCH)
		cli_error("%s: process %d went away during the save (%s); no "
			  "%s was written",
			  cmd, pid, detail(h, r), what);
	else
		cli_error("%s: %s%s; no %s was written%s", cmd,
			  cli_pid_prefix(pfx, sizeof(pfx), pid, msg), msg, what,
			  code == EXIT_NOCAP ? " (see 'bgsnap caps')" : "");
	return code;
}

/* Attach to the process and start the save, signals held back: the
 * library has the process stopped in there. EXIT_OK, or the exit code
 * after a message. */
static int start(struct bgsnap *h, const struct cli_save_req *req)
{
	const struct bgsnap_target_opts topts = {
		.size = sizeof(topts),
		.include = req->include,
		.ninclude = req->ninclude,
		.exclude = req->exclude,
		.nexclude = req->nexclude,
	};
	char why[256];
	sigset_t old;
	int r, code;

	sigprocmask(SIG_BLOCK, cli_stop_signals(), &old);
	r = bgsnap_target_pid(h, req->pid, &topts);
	if (r) {
		/* Not attached: a refusal here comes from ptrace, not from a
		 * missing capability. */
		const char *msg;
		char pfx[32];

		code = cli_save_failure(req->pid, r, false, why, sizeof(why));
		msg = *why ? why : detail(h, r);
		cli_error("%s: %s%s", cmd_of(req),
			  cli_pid_prefix(pfx, sizeof(pfx), req->pid, msg), msg);
		goto out_unblock;
	}
	code = check_selection(h, req);
	if (code)
		goto out_unblock;
	/* The process may map or unmap memory between bgsnap reading its
	 * mappings and stopping it: the library then says "try again", and
	 * a few tries are made here. Not with a pipe, which may have had the
	 * snapshot's first bytes already. */
	for (int tries = 1;; tries++) {
		r = req->path ? bgsnap_save_start(h, req->path, req->opts)
			      : bgsnap_save_start_fd(h, req->fd, req->opts);
		if (r != -EAGAIN || !req->path || tries == START_TRIES ||
		    cli_interrupted())
			break;
	}
	code = r ? report_failure(h, req, r) : EXIT_OK;
out_unblock:
	sigprocmask(SIG_SETMASK, &old, NULL);
	return code;
}

/* Show progress until the save ends; a signal cancels it. */
static void watch(struct bgsnap *h, bool quiet)
{
	const struct timespec tick = { 0, POLL_INTERVAL_NS };
	struct cli_progress bar;
	struct bgsnap_progress p = { .size = sizeof(p) };
	bool cancelled = false;

	bgsnap_progress(h, &p);
	cli_progress_start(&bar, "save", p.pages_total * PAGE, quiet);
	while (p.running) {
		if (cli_interrupted() && !cancelled) {
			bgsnap_cancel(h);
			cancelled = true;
		}
		cli_progress_update(&bar, p.pages_done * PAGE);
		nanosleep(&tick, NULL);
		bgsnap_progress(h, &p);
	}
	cli_progress_end(&bar);
}

int cli_save_pid(const struct cli_save_req *req, struct cli_save_result *res)
{
	struct bgsnap *h;
	int r, code;

	memset(res, 0, offsetof(struct cli_save_result, stats));
	if (cli_target_check(cmd_of(req), req->pid))
		return EXIT_FAILED;
	cli_catch_signals();
	r = bgsnap_new(&h);
	if (r) {
		cli_error("%s: %s", cmd_of(req), bgsnap_strerror(r));
		return EXIT_FAILED;
	}
	code = start(h, req);
	if (code)
		goto out_free;
	watch(h, req->quiet);
	r = bgsnap_wait(h);
	if (r) {
		code = report_failure(h, req, r);
		goto out_free;
	}
	count_regions(h, res);
	if (res->stats) {
		res->stats->size = sizeof(*res->stats);
		bgsnap_stats(h, res->stats);
	}
out_free:
	bgsnap_free(h);
	return code;
}

/* ---- the report ---------------------------------------------------------- */

static double rate(uint64_t bytes, uint64_t ns)
{
	return ns ? (double)bytes * 1e9 / (double)ns : 0.0;
}

void cli_json_save_stats(struct cli_json *j, const struct bgsnap_stats *st)
{
	cli_json_kdouble(j, "blackout_ms", (double)st->blackout_ns / 1e6);
	cli_json_kdouble(j, "elapsed_s", (double)st->elapsed_ns / 1e9);
	cli_json_kdouble(j, "throughput_bytes_per_s",
			 rate(st->pages_total * PAGE, st->elapsed_ns));
	cli_json_kuint(j, "pages_total", st->pages_total);
	cli_json_kuint(j, "pages_by_scan", st->pages_by_scan);
	cli_json_kuint(j, "pages_by_fault", st->pages_by_fault);
	cli_json_kuint(j, "pages_zero", st->pages_zero);
	cli_json_kuint(j, "pages_unpopulated", st->pages_unpopulated);
	cli_json_kuint(j, "bytes_written", st->bytes_written);
	cli_json_kuint(j, "raw_bytes", st->raw_bytes);
	cli_json_kdouble(j, "compression_ratio", st->compression_ratio);
	cli_json_kuint(j, "faults", st->faults);
	cli_json_kdouble(j, "stall_us_p50", (double)st->stall_ns_p50 / 1e3);
	cli_json_kdouble(j, "stall_us_p99", (double)st->stall_ns_p99 / 1e3);
	cli_json_kdouble(j, "stall_us_max", (double)st->stall_ns_max / 1e3);
	cli_json_kdouble(j, "stall_wait_us_p50",
			 (double)st->stall_wait_ns_p50 / 1e3);
	cli_json_kdouble(j, "stall_wait_us_p99",
			 (double)st->stall_wait_ns_p99 / 1e3);
	cli_json_kuint(j, "peak_buffer_bytes", st->peak_buffer_bytes);
	cli_json_kdouble(j, "cpu_copy_s", (double)st->cpu_copy_ns / 1e9);
	cli_json_kdouble(j, "cpu_compress_s",
			 (double)st->cpu_compress_ns / 1e9);
	cli_json_kdouble(j, "cpu_checksum_s",
			 (double)st->cpu_checksum_ns / 1e9);
	cli_json_kdouble(j, "cpu_unprotect_s",
			 (double)st->cpu_unprotect_ns / 1e9);
	cli_json_kdouble(j, "cpu_copier_s", (double)st->cpu_copier_ns / 1e9);
	cli_json_kdouble(j, "cpu_fault_thread_s",
			 (double)st->cpu_fault_ns / 1e9);
	cli_json_kdouble(j, "cpu_workers_s", (double)st->cpu_workers_ns / 1e9);
}

static void report_json(FILE *f, const struct save_args *a,
			const struct cli_save_result *res)
{
	struct cli_json j;

	cli_json_init(&j, f);
	cli_json_object_begin(&j);
	cli_json_kstr(&j, "file", a->output);
	cli_json_kint(&j, "pid", a->req.pid);
	cli_json_key(&j, "regions");
	cli_json_object_begin(&j);
	cli_json_kuint(&j, "saved", res->regions_saved);
	cli_json_kuint(&j, "copied", res->regions_copied);
	cli_json_kuint(&j, "skipped", res->regions_skipped);
	cli_json_object_end(&j);
	cli_json_save_stats(&j, res->stats);
	if (a->opts.parent) {
		cli_json_kstr(&j, "parent", a->opts.parent);
		cli_json_kuint(&j, "pages_parent", res->stats->pages_parent);
	}
	cli_json_object_end(&j);
	cli_json_end(&j);
}

static void report_text(FILE *f, const struct save_args *a,
			const struct cli_save_result *res)
{
	const struct bgsnap_stats *st = res->stats;
	char b1[CLI_FMT_LEN], b2[CLI_FMT_LEN], b3[CLI_FMT_LEN];

	fprintf(f, "saved process %d to %s\n", a->req.pid,
		strcmp(a->output, "-") ? a->output : "standard output");
	fprintf(f,
		"  regions   %zu saved in the background, %zu copied while "
		"stopped, %zu recorded by name only\n",
		res->regions_saved, res->regions_copied, res->regions_skipped);
	fprintf(f,
		"  memory    %s in %llu pages: %llu saved first because a "
		"writer faulted, %llu zero\n",
		cli_fmt_size(b1, st->pages_total * PAGE),
		(unsigned long long)st->pages_total,
		(unsigned long long)st->pages_by_fault,
		(unsigned long long)st->pages_zero);
	fprintf(f, "  blackout  %s (the process was stopped only for this)\n",
		cli_fmt_duration(b1, st->blackout_ns));
	fprintf(f, "  elapsed   %s, %s\n", cli_fmt_duration(b1, st->elapsed_ns),
		cli_fmt_rate(b2, rate(st->pages_total * PAGE, st->elapsed_ns)));
	fprintf(f, "  file      %s, compression %.2fx\n",
		cli_fmt_size(b1, st->bytes_written), st->compression_ratio);
	if (a->opts.parent)
		fprintf(f,
			"  parent    %s: %llu pages the same, stored as in "
			"it\n",
			a->opts.parent, (unsigned long long)st->pages_parent);
	fprintf(f,
		"  stalls    %llu write faults waited p50 %s, p99 %s, max %s\n",
		(unsigned long long)st->faults,
		cli_fmt_duration(b1, st->stall_ns_p50),
		cli_fmt_duration(b2, st->stall_ns_p99),
		cli_fmt_duration(b3, st->stall_ns_max));
	if (st->faults)
		fprintf(f,
			"            of which for the copier to take them: p50 "
			"%s, p99 %s\n",
			cli_fmt_duration(b1, st->stall_wait_ns_p50),
			cli_fmt_duration(b2, st->stall_wait_ns_p99));
	fprintf(f, "  buffers   peak %s\n",
		cli_fmt_size(b1, st->peak_buffer_bytes));
}

/* ---- options ------------------------------------------------------------- */

static bool parse_compression(struct cli_getopt *g, const char *arg,
			      enum bgsnap_compression *c)
{
	if (!strcmp(arg, "lz4"))
		*c = BGSNAP_COMPRESS_LZ4;
	else if (!strcmp(arg, "none"))
		*c = BGSNAP_COMPRESS_NONE;
	else {
		cli_error("%s: %s: '%s' is not lz4 or none (see 'bgsnap %s "
			  "--help')",
			  g->cmd, g->optname, arg, g->cmd);
		return false;
	}
	return true;
}

/* The options the table cannot store: true, or false after a usage
 * error. */
static bool take_option(struct cli_getopt *g, int c, void *ctx)
{
	struct save_args *a = ctx;
	uint64_t v;

	switch (c) {
	case 'b':
		if (!cli_arg_size(g, optarg, &v))
			return false;
		a->opts.buffer_budget = (size_t)v;
		return true;
	case 'c':
		return parse_compression(g, optarg, &a->opts.compression);
	case OPT_LZ4_ACCEL:
		if (!cli_arg_uint(g, optarg, 1, 65537, &v))
			return false;
		a->opts.lz4_acceleration = (int)v;
		return true;
	case 't':
		if (!cli_arg_uint(g, optarg, 0, BGSNAP_MAX_THREADS, &v))
			return false;
		a->opts.threads = (unsigned)v;
		return true;
	case OPT_NO_VERIFY:
		a->opts.flags |= BGSNAP_SAVE_NO_VERIFY;
		return true;
	case OPT_STW:
		a->opts.flags |= BGSNAP_SAVE_STOP_THE_WORLD;
		return true;
	case OPT_PARENT:
		a->opts.flags |= BGSNAP_SAVE_INCREMENTAL;
		a->opts.parent = optarg;
		return true;
	case OPT_CPUS:
		a->opts.cpus = optarg;
		return true;
	case OPT_MAX_STALL:
		if (!cli_arg_duration(g, optarg, &v))
			return false;
		if (v < 1000000 || v / 1000000 > UINT32_MAX) {
			cli_error("save: --max-stall: '%s' is not between 1 ms "
				  "and 49 days",
				  optarg);
			return false;
		}
		a->opts.max_stall_ms = (unsigned)(v / 1000000);
		return true;
	}
	return false;
}

/* The parsed command line, or an exit code (EXIT_OK after --help). */
static int parse_args(int argc, char **argv, struct save_args *a)
{
	const struct cli_opt opts[] = {
		{ 'p', .pid = &a->req.pid },
		{ 'o', .str = &a->output },
		{ 'f', .flag = &a->force },
		{ 'i', .list = a->include, .count = &a->req.ninclude,
		  .cap = MAX_SPECS },
		{ 'x', .list = a->exclude, .count = &a->req.nexclude,
		  .cap = MAX_SPECS },
		{ OPT_JSON, .flag = &a->json },
		{ 'q', .flag = &a->req.quiet },
		{ 0 },
	};
	struct cli_getopt g = { .cmd = "save",
				.usage = save_usage,
				.shortopts = "p:o:fi:x:b:c:t:q",
				.longopts = save_options,
				.opts = opts,
				.take = take_option,
				.ctx = a };
	const int code = cli_parse(&g, argc, argv, 0, 0, "");

	if (code >= 0)
		return code;
	if (!a->req.pid || !a->output) {
		cli_error("save: %s is required (see 'bgsnap save --help')",
			  a->req.pid ? "-o FILE" : "--pid PID");
		return EXIT_USAGE;
	}
	return -1;
}

/* ---- the output ---------------------------------------------------------- */

/* Is the file @st the same as the one at @path? */
static bool same_file(const char *path, const struct stat *st)
{
	struct stat o;

	return !stat(path, &o) && o.st_dev == st->st_dev &&
	       o.st_ino == st->st_ino;
}

/*
 * Where the file @st, or else the rados:// snapshot @name, is in the
 * chain of --parent: 1 it is the parent, 2 the parent's parent ..., 0 none
 * of them as far as the chain can be found (the save itself reports a
 * parent that cannot be had).
 */
static size_t chain_level(const char *parent, const struct stat *st,
			  const char *name)
{
	struct bgsnap_file *f, *c, *p;
	struct bgsnap_file_info in = { .size = sizeof(in) };
	size_t level = 0;

	if (bgsnap_file_open(&f, parent, NULL, 0))
		return 0;
	for (c = f, level = 1;; c = p, level++) {
		if (st ? same_file(bgsnap_file_path(c), st)
		       : !strcmp(bgsnap_file_path(c), name))
			break;
		bgsnap_file_info(c, &in);
		if (!in.incremental || bgsnap_file_parent(c, &p)) {
			level = 0;
			break;
		}
	}
	bgsnap_file_close(f);
	return level;
}

/* A snapshot that this save's chain needs is at the output (@st, what
 * is there; NULL for a rados:// output): true after a message. */
static bool needed_by_chain(const struct save_args *a, const struct stat *st)
{
	const size_t level =
		a->opts.parent && (!st || S_ISREG(st->st_mode))
			? chain_level(a->opts.parent, st, a->output)
			: 0;
	const char *what =
		strcmp(a->output, "-") ? a->output : "standard output";

	if (level == 1)
		cli_error("%s: is this save's parent (--parent %s): a save "
			  "never replaces a snapshot of its own chain",
			  what, a->opts.parent);
	else if (level)
		cli_error("%s: is an ancestor of this save's parent (level "
			  "%zu of the chain of --parent %s): a save never "
			  "replaces a snapshot of its own chain",
			  what, level - 1, a->opts.parent);
	return level;
}

static int open_stdout(struct save_args *a)
{
	struct stat st;

	if (isatty(STDOUT_FILENO)) {
		cli_error("save: refusing to write a snapshot to a terminal; "
			  "redirect standard output or use -o FILE");
		return EXIT_USAGE;
	}
	/* With '>> parent.bgs' the save would write into its own parent. */
	if (!fstat(STDOUT_FILENO, &st) && needed_by_chain(a, &st))
		return EXIT_FAILED;
	a->req.fd = STDOUT_FILENO;
	return -1;
}

/* Where the snapshot goes, checked before anything is saved: -1, or an
 * exit code after a message. */
static int open_output(struct save_args *a)
{
	struct stat st;

	/* A FIFO as --parent would block the open, so it is refused now. */
	if (a->opts.parent &&
	    cli_input_check("save: --parent ", a->opts.parent, NULL))
		return EXIT_FAILED;
	if (!strcmp(a->output, "-"))
		return open_stdout(a);
	if (!strncmp(a->output, "rados://", 8)) {
		/* The library publishes it, whole, only once it is done. */
		if (!a->force)
			a->opts.flags |= BGSNAP_SAVE_NO_REPLACE;
		else if (needed_by_chain(a, NULL))
			return EXIT_FAILED;
		a->req.path = a->output;
		return -1;
	}
	if (cli_output_dir(a->output, &a->dirfd, a->name))
		return EXIT_FAILED;
	if (!fstatat(a->dirfd, a->name, &st, AT_SYMLINK_NOFOLLOW) &&
	    needed_by_chain(a, &st))
		return EXIT_FAILED;
	if (cli_output_check(a->dirfd, a->name, a->output, a->force) ||
	    cli_output_temp(a->dirfd, a->name, "save", a->output, a->tmpname))
		return EXIT_FAILED;
	/* Checked here so that the message names FILE: the library would
	 * name our temporary file instead. */
	if (faccessat(a->dirfd, ".", W_OK, AT_EACCESS)) {
		cli_error("%s: cannot be written in its directory: %s",
			  a->output, strerror(errno));
		return EXIT_FAILED;
	}
	snprintf(a->tmp, sizeof(a->tmp), "%.*s%s",
		 (int)(strlen(a->output) - strlen(a->name)), a->output,
		 a->tmpname);
	a->req.path = a->tmp;
	return -1;
}

/* The complete snapshot, under our temporary name, to FILE: an exit
 * code, after one line if it is not EXIT_OK (the temporary removed when
 * it could not be put in place). */
static int publish(const struct save_args *a)
{
	struct stat st;
	int r = 0;

	/* With --force the output is replaced; what is there is checked
	 * again just before. */
	if (a->force && !fstatat(a->dirfd, a->name, &st, AT_SYMLINK_NOFOLLOW) &&
	    needed_by_chain(a, &st))
		r = -EEXIST;
	if (!r)
		r = cli_output_publish(a->dirfd, a->tmpname, a->name, a->output,
				       a->force);
	if (r) {
		unlinkat(a->dirfd, a->tmpname, 0);
		return EXIT_FAILED;
	}
	if (fsync(a->dirfd)) {
		cli_error("%s: in place, but syncing its directory: %s",
			  a->output, strerror(errno));
		return EXIT_FAILED;
	}
	return EXIT_OK;
}

int cmd_save(int argc, char **argv)
{
	struct save_args a = { .dirfd = -1, .opts.size = sizeof(a.opts) };
	struct bgsnap_stats st = { .size = sizeof(st) };
	struct cli_save_result res = { .stats = &st };
	FILE *out;
	int r;

	a.req.include = a.include;
	a.req.exclude = a.exclude;
	a.req.opts = &a.opts;
	r = parse_args(argc, argv, &a);
	if (r >= 0)
		return r;
	r = open_output(&a);
	if (r >= 0)
		goto out_close;
	/* A reader of '-o -' that goes away is an error, not a death. */
	signal(SIGPIPE, SIG_IGN);
	r = cli_save_pid(&a.req, &res);
	if (!r && a.req.path && a.dirfd >= 0)
		r = publish(&a);
	if (r || (a.req.quiet && !a.json))
		goto out_close;
	out = a.req.path ? stdout : stderr;
	if (a.json)
		report_json(out, &a, &res);
	else
		report_text(out, &a, &res);
	r = fflush(out) ? EXIT_FAILED : EXIT_OK;
out_close:
	if (a.dirfd >= 0)
		close(a.dirfd);
	return r;
}
