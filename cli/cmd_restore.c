/* SPDX-License-Identifier: MIT */
/*
 * bgsnap restore FILE --pid PID: put a snapshot back into a running
 * process, all or nothing.
 *
 * The library verifies the whole file before anything else, stops the
 * process, proves its mappings unchanged since they were matched to the
 * snapshot's regions, writes the pages back and lets it run. Once the
 * writes have begun, stopping half-way would leave the process with memory
 * from two instants: SIGINT, SIGTERM and SIGHUP are held back while the
 * process is written (the library's pause and resume hooks), and only
 * then. Before, while the snapshot is read and checked (a stream on
 * standard input may take long), they cancel the restore: nothing is
 * written.
 */
#include "cli.h"

#include <bgsnap.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#define PAGE	  4096u
#define MAX_SPECS 64
#define TRIES	  3

static const char restore_usage[] =
	"usage: bgsnap restore FILE|- --pid PID [options]\n"
	"\n"
	"Write the memory saved in FILE ('-': standard input, a pipe) back "
	"into\n"
	"running process PID, all or nothing: the whole file is verified "
	"first;\n"
	"then the process is stopped, every region of the snapshot must still\n"
	"exist in it (same start, size and kind; regions are matched by name,\n"
	"which holds the start address), its pages are written and it "
	"resumes.\n"
	"Anything wrong - a damaged file, a region gone or resized - is\n"
	"reported before a byte is written. Mappings made since the snapshot\n"
	"are left alone.\n"
	"\n"
	"Memory is put back under the process's running code: restoring its\n"
	"stacks, heap or libraries' data while its threads run is only\n"
	"meaningful when the process is quiescent (idle, or parked by itself,\n"
	"as a database between transactions). Limit the restore to the data\n"
	"regions the process expects to have rolled back, with --include, "
	"e.g.\n"
	"the address range of one mapping:\n"
	"  bgsnap restore snap.bgs --pid 4242 --include "
	"7f3a00000000-7f3a20000000\n"
	"\n"
	"options:\n"
	"  -p, --pid PID         the process to restore into (required)\n"
	"  -n, --dry-run         verify and compare, write nothing: print the\n"
	"                        regions that would be written and how many\n"
	"                        pages would change (the process is not\n"
	"                        stopped: a running one keeps changing)\n"
	"  -i, --include SPEC    only mappings matching SPEC (repeatable)\n"
	"  -x, --exclude SPEC    leave out mappings matching SPEC "
	"(repeatable)\n"
	"                        SPEC: a glob on the mapping's name or path, "
	"or\n"
	"                        a hex address range 'A-B', as for 'save'\n"
	"      --json            report as one JSON object (stable keys)\n"
	"  -q, --quiet           no report\n"
	"  -h, --help            this help\n"
	"\n"
	"SIGINT, SIGTERM and SIGHUP cancel a restore while FILE is read and\n"
	"checked (nothing is written); they are held back while the process\n"
	"is written, which cannot be left half done. '-' is checked as it\n"
	"arrives: what is not a snapshot is refused at its first bytes, and\n"
	"the copy kept in $TMPDIR never grows beyond what a snapshot of the\n"
	"regions it declares can hold.\n"
	"\n"
	"exit status: 0 restored (or the dry run found no problem); 1 the\n"
	"restore failed (no such process, permission denied, a region is gone "
	"or\n"
	"differs); 2 usage error; 3 FILE is missing, damaged or not a\n"
	"snapshot (a FIFO, a device, a directory: refused at once; '-'\n"
	"reads a pipe).\n";

enum {
	OPT_JSON = 256,
};

static const struct option restore_options[] = {
	{ "pid", required_argument, NULL, 'p' },
	{ "dry-run", no_argument, NULL, 'n' },
	{ "include", required_argument, NULL, 'i' },
	{ "exclude", required_argument, NULL, 'x' },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "quiet", no_argument, NULL, 'q' },
	CLI_OPT_HELP_ENTRY,
	{ NULL, 0, NULL, 0 },
};

struct restore_args {
	const char *file;
	struct bgsnap_file *snap; /* FILE opened to name what was written;
				   * NULL for a stream */
	int pid;
	bool dry_run, json, quiet;
	const char *include[MAX_SPECS];
	size_t ninclude;
	const char *exclude[MAX_SPECS];
	size_t nexclude;
};

/* ---- the restore --------------------------------------------------------- */

static const char *detail(const struct bgsnap *h, int err)
{
	const char *d = bgsnap_last_error(h);

	return d && *d ? d : bgsnap_strerror(err);
}

static int attach(struct bgsnap *h, const struct restore_args *a)
{
	const struct bgsnap_target_opts topts = {
		.size = sizeof(topts),
		.include = a->include,
		.ninclude = a->ninclude,
		.exclude = a->exclude,
		.nexclude = a->nexclude,
	};
	const int r = bgsnap_target_pid(h, a->pid, &topts);

	if (r) {
		char pfx[32];

		cli_error(
			"restore: %s%s",
			cli_pid_prefix(pfx, sizeof(pfx), a->pid, detail(h, r)),
			detail(h, r));
		return r;
	}
	if (!cli_selected(h)) {
		cli_error_no_mapping("restore", a->pid,
				     a->ninclude || a->nexclude);
		return a->ninclude || a->nexclude ? -EINVAL : -ENODATA;
	}
	return 0;
}

/* FILE opened for the report, if it can be: the restore itself reports
 * any problem with it. */
static void open_snapshot(struct restore_args *a)
{
	if (strcmp(a->file, "-"))
		bgsnap_file_open(&a->snap, a->file, NULL, 0);
}

/* SIGINT, SIGTERM and SIGHUP are held back only while the process is
 * written: reading and checking the snapshot (a stream on standard
 * input may take long) can be interrupted. */
static int hold_signals(void *arg)
{
	if (sigprocmask(SIG_BLOCK, cli_stop_signals(), arg))
		return -errno;
	/* One caught while the snapshot was checked: write nothing (and
	 * no resume follows a failed pause). */
	if (cli_interrupted()) {
		sigprocmask(SIG_SETMASK, arg, NULL);
		return -ECANCELED;
	}
	return 0;
}

static void release_signals(void *arg)
{
	sigprocmask(SIG_SETMASK, arg, NULL);
}

static int run(struct bgsnap *h, const struct restore_args *a)
{
	sigset_t old;
	const struct bgsnap_restore_opts o = {
		.size = sizeof(o),
		.flags = a->dry_run ? BGSNAP_RESTORE_DRY_RUN : 0,
		.pause = hold_signals,
		.resume = release_signals,
		.arg = &old,
	};
	int r;

	/* Mappings that changed between reading them and stopping the
	 * process make the library say "try again" (nothing written): a few
	 * tries, from a file (standard input cannot be read twice). */
	for (int tries = 1;; tries++) {
		r = strcmp(a->file, "-")
			    ? bgsnap_restore_start(h, a->file, &o)
			    : bgsnap_restore_start_fd(h, STDIN_FILENO, &o);
		if (!r)
			r = bgsnap_wait(h);
		if (r != -EAGAIN || !strcmp(a->file, "-") || tries == TRIES)
			break;
	}
	return r;
}

static int exit_code_for(int err)
{
	if (err == BGSNAP_EMISMATCH || err == BGSNAP_ETARGET || err == -ESRCH ||
	    err == -EPERM || err == -EAGAIN || err == -EINTR ||
	    err == -ECANCELED)
		return EXIT_FAILED;
	return cli_file_exit(err);
}

/* One line for a failed restore. A failure found before anything was
 * written (a damaged file, a layout that does not match) says that
 * nothing was written. */
static void report_failure(const struct bgsnap *h, const struct restore_args *a,
			   int r)
{
	const bool before = cli_file_exit(r) == EXIT_BADFILE ||
			    r == BGSNAP_EMISMATCH || r == BGSNAP_EPARENT ||
			    r == -EAGAIN;
	const char *d = detail(h, r);
	/* The library's message names the file when it is about it. */
	const bool named = strstr(d, a->file) != NULL;

	if ((r == -EINTR || r == -ECANCELED) && cli_interrupted()) {
		cli_error("restore: %s: cancelled by %s while it was read; "
			  "nothing was written",
			  a->file, strsignal(cli_interrupted()));
		return;
	}

	cli_error("restore: %s%s%s%s", named ? "" : a->file, named ? "" : ": ",
		  d, before ? "; nothing was written" : "");
}

/* ---- the report ---------------------------------------------------------- */

/* Is a region of the process written? Not when left out by a filter, or
 * when the snapshot does not have it (mapped since: left alone). */
static bool written(const struct restore_args *a,
		    const struct bgsnap_region_info *ri)
{
	struct bgsnap_file_region fr = { .size = sizeof(fr) };
	int i;

	if (ri->kind == BGSNAP_KIND_UNSAVED)
		return false;
	if (!a->snap)
		return true;
	i = bgsnap_file_find_region(a->snap, ri->name);
	return i >= 0 && !bgsnap_file_region(a->snap, (size_t)i, &fr) &&
	       fr.kind != BGSNAP_KIND_UNSAVED;
}

static void report_regions(const struct bgsnap *h, const struct restore_args *a)
{
	char b[CLI_FMT_LEN];

	for (size_t i = 0; i < bgsnap_region_count(h); i++) {
		struct bgsnap_region_info ri = { .size = sizeof(ri) };

		if (bgsnap_region(h, i, &ri) || !written(a, &ri))
			continue;
		printf("  %-6s %-44s %10s\n", a->dry_run ? "would" : "wrote",
		       ri.name, cli_fmt_size(b, ri.len));
	}
}

static void report_text(const struct bgsnap *h, const struct restore_args *a,
			const struct bgsnap_stats *st)
{
	char b1[CLI_FMT_LEN], b2[CLI_FMT_LEN];

	if (a->dry_run)
		printf("dry run: %s checks out against process %d; nothing was "
		       "written\n",
		       a->file, a->pid);
	else
		printf("restored %s into process %d\n", a->file, a->pid);
	report_regions(h, a);
	if (a->dry_run)
		printf("  %llu of %llu pages would change (%s)\n",
		       (unsigned long long)st->pages_changed,
		       (unsigned long long)st->pages_total,
		       cli_fmt_size(b1, st->pages_changed * PAGE));
	printf("  done in %s, %s read: the whole file is checked before "
	       "anything is written\n",
	       cli_fmt_duration(b2, st->elapsed_ns),
	       cli_fmt_size(b1, st->bytes_read));
}

static void report_json(const struct bgsnap *h, const struct restore_args *a,
			const struct bgsnap_stats *st)
{
	struct cli_json j;

	cli_json_init(&j, stdout);
	cli_json_object_begin(&j);
	cli_json_kstr(&j, "file", a->file);
	cli_json_kint(&j, "pid", a->pid);
	cli_json_kbool(&j, "dry_run", a->dry_run);
	cli_json_key(&j, "regions");
	cli_json_array_begin(&j);
	for (size_t i = 0; i < bgsnap_region_count(h); i++) {
		struct bgsnap_region_info ri = { .size = sizeof(ri) };

		if (bgsnap_region(h, i, &ri) || !written(a, &ri))
			continue;
		cli_json_object_begin(&j);
		cli_json_kstr(&j, "name", ri.name);
		cli_json_kuint(&j, "address", (uintptr_t)ri.addr);
		cli_json_kuint(&j, "length", ri.len);
		cli_json_object_end(&j);
	}
	cli_json_array_end(&j);
	cli_json_kuint(&j, "pages_total", st->pages_total);
	if (a->dry_run)
		cli_json_kuint(&j, "pages_changed", st->pages_changed);
	cli_json_kuint(&j, "pages_zero", st->pages_zero);
	cli_json_kuint(&j, "bytes_read", st->bytes_read);
	cli_json_kdouble(&j, "elapsed_s", (double)st->elapsed_ns / 1e9);
	cli_json_object_end(&j);
	cli_json_end(&j);
}

/* ---- options ------------------------------------------------------------- */

/* The parsed command line, or an exit code (EXIT_OK after --help). */
static int parse_args(int argc, char **argv, struct restore_args *a)
{
	const struct cli_opt opts[] = {
		{ 'p', .pid = &a->pid },
		{ 'n', .flag = &a->dry_run },
		{ OPT_JSON, .flag = &a->json },
		{ 'q', .flag = &a->quiet },
		{ 'i', .list = a->include, .count = &a->ninclude,
		  .cap = MAX_SPECS },
		{ 'x', .list = a->exclude, .count = &a->nexclude,
		  .cap = MAX_SPECS },
		{ 0 },
	};
	struct cli_getopt g = { .cmd = "restore",
				.usage = restore_usage,
				.shortopts = "p:ni:x:q",
				.longopts = restore_options,
				.opts = opts };
	const int code = cli_parse(&g, argc, argv, 1, 1, "FILE");

	if (code >= 0)
		return code;
	a->file = argv[optind];
	if (!a->pid) {
		cli_error("restore: --pid PID is required (see 'bgsnap restore "
			  "--help')");
		return EXIT_USAGE;
	}
	if (!strcmp(a->file, "-") && isatty(STDIN_FILENO)) {
		cli_error("restore: standard input is a terminal, not a "
			  "snapshot");
		return EXIT_USAGE;
	}
	/* A FIFO would block the open while signals are held back, so it is
	 * refused here, before that. */
	if (strcmp(a->file, "-") &&
	    cli_input_check("restore: ", a->file,
			    "nothing was written (a pipe is read as "
			    "'restore -')"))
		return EXIT_BADFILE;
	return -1;
}

int cmd_restore(int argc, char **argv)
{
	struct restore_args a = { 0 };
	struct bgsnap_stats st = { .size = sizeof(st) };
	struct bgsnap *h;
	int r = parse_args(argc, argv, &a);

	if (r >= 0)
		return r;
	if (cli_target_check("restore", a.pid))
		return EXIT_FAILED;
	cli_catch_signals();
	r = bgsnap_new(&h);
	if (r) {
		cli_error("restore: %s", bgsnap_strerror(r));
		return EXIT_FAILED;
	}
	r = attach(h, &a);
	if (r) {
		r = r == -EINVAL ? EXIT_USAGE : EXIT_FAILED;
		goto out_free;
	}
	r = run(h, &a);
	if (!r)
		open_snapshot(&a);
	if (r) {
		report_failure(h, &a, r);
		r = exit_code_for(r);
		goto out_free;
	}
	bgsnap_stats(h, &st);
	if (a.json)
		report_json(h, &a, &st);
	else if (!a.quiet)
		report_text(h, &a, &st);
	r = fflush(stdout) ? EXIT_FAILED : EXIT_OK;
out_free:
	bgsnap_file_close(a.snap);
	bgsnap_free(h);
	return r;
}
