/* SPDX-License-Identifier: MIT */
/*
 * bgsnap core: an ELF core file of a running process, as it was at one
 * instant, while it runs on. It is a 'save --pid' into a snapshot nobody
 * sees (an unnamed file beside the core, or --snapshot's), then that
 * snapshot written as a core by the library (bgsnap_file_write_core()),
 * exactly as 'bgsnap export FILE --core' writes one later: the two give
 * the same bytes for the same snapshot.
 *
 * The core is written as every output (cli.h "output files"): 0600, under
 * a temporary name, renamed into place when complete, never through a
 * symbolic link, nothing replaced without --force.
 */
#include "cli.h"

#include <bgsnap.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char core_usage[] =
	"usage: bgsnap core --pid PID -o CORE [--filter BITS]\n"
	"                   [--snapshot FILE] [--force] [--quiet] [--json]\n"
	"\n"
	"Write an ELF core file of the running process PID as it was at one\n"
	"instant, as the kernel would have written it then, while the\n"
	"process runs on: it is stopped only for the instant bgsnap arms\n"
	"write protection (the blackout, about a millisecond), not for the\n"
	"whole dump as by gcore. gdb, readelf and eu-stack read the core\n"
	"as any other: every thread's registers (NT_PRSTATUS, NT_FPREGSET,\n"
	"NT_X86_XSTATE, NT_SIGINFO for a thread stopped by a signal),\n"
	"NT_PRPSINFO, NT_AUXV, NT_FILE, and one PT_LOAD per mapping.\n"
	"\n"
	"Which memory is written follows the coredump_filter bits (core(5)):\n"
	"by default the process's own /proc/PID/coredump_filter, usually\n"
	"0x33 (private and shared anonymous memory, ELF headers, private\n"
	"huge pages). The memory of file mappings that 'save --pid' does\n"
	"not save (text, shared files) is not in the core even if the\n"
	"filter asks for it; the summary counts such mappings.\n"
	"\n"
	"The core is created 0600 under a temporary name and renamed into\n"
	"place when complete; an existing file is not replaced without\n"
	"--force, and a symbolic link or any file that is not a regular one\n"
	"is refused even with it.\n"
	"\n"
	"  -p, --pid PID        the process\n"
	"  -o, --output CORE    the core file\n"
	"      --filter BITS    coredump_filter bits instead of the "
	"process's\n"
	"                       (0x33; 0x for hex, as /proc takes them)\n"
	"  -s, --snapshot FILE  also keep the snapshot the core is made from\n"
	"                       ('bgsnap export FILE --core' makes the same\n"
	"                       core from it again)\n"
	"  -f, --force          replace existing output files\n"
	"  -q, --quiet          no progress bar, no summary\n"
	"      --json           a JSON summary on stdout (keys in bgsnap(1))\n"
	"  -h, --help           this text\n"
	"\n"
	"Exit status: 0 success, 1 failure (the process exited during the\n"
	"save, output exists, I/O error ...; no core is written), 2 usage,\n"
	"4 the system lacks a capability bgsnap needs.\n";

enum { OPT_FILTER = 256, OPT_JSON };

static const struct option core_options[] = {
	{ "pid", required_argument, NULL, 'p' },
	{ "output", required_argument, NULL, 'o' },
	{ "filter", required_argument, NULL, OPT_FILTER },
	{ "snapshot", required_argument, NULL, 's' },
	{ "force", no_argument, NULL, 'f' },
	{ "quiet", no_argument, NULL, 'q' },
	{ "json", no_argument, NULL, OPT_JSON },
	CLI_OPT_HELP_ENTRY,
	{ 0 },
};

struct opts {
	int pid;
	const char *output, *snapshot;
	int64_t filter;
	bool force, quiet, json;
};

/* Where the snapshot goes: an unnamed file, or --snapshot's temporary. */
struct snap_out {
	int fd, dirfd;
	char name[NAME_MAX + 1], tmp[NAME_MAX + 1];
	bool named;
};

/* ---- shared with export --core ------------------------------------------- */

bool cli_arg_filter(const struct cli_getopt *g, const char *arg,
		    int64_t *filter)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(arg, &end, 0);
	if (errno || end == arg || *end || arg[0] == '-' || v > UINT32_MAX) {
		cli_error("%s: %s: '%s' is not a coredump_filter (a whole "
			  "number, 0x33 for instance)",
			  g->cmd, g->optname, arg);
		return false;
	}
	*filter = (int64_t)v;
	return true;
}

static void show_progress(void *arg, uint64_t done, uint64_t total)
{
	struct cli_progress *bar = arg;

	cli_progress_total(bar, total);
	cli_progress_update(bar, done);
}

static int create_temp(int dirfd, const char *name, const char *what, char *tmp)
{
	int fd;

	if (cli_output_temp(dirfd, name, "core", what, tmp))
		return -1;
	fd = openat(dirfd, tmp,
		    O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd >= 0 && fchmod(fd, 0600)) {
		close(fd);
		unlinkat(dirfd, tmp, 0);
		fd = -1;
	}
	if (fd < 0)
		cli_error("%s: cannot create a temporary file beside it: %s",
			  what, strerror(errno));
	return fd;
}

/* Write, sync and close @fd; the core's message on failure. */
static int write_synced(struct bgsnap_file *f, int fd, const char *out,
			const struct bgsnap_core_opts *co,
			struct bgsnap_core_info *info)
{
	int r = bgsnap_file_write_core(f, fd, co, info);

	if (r) {
		cli_error("%s: %s", out, bgsnap_file_last_error(f));
		close(fd);
		return r;
	}
	r = fsync(fd) ? -errno : 0;
	if (close(fd) && !r)
		r = -errno;
	if (r)
		cli_error("%s: %s", out, strerror(-r));
	return r;
}

int cli_core_write(struct bgsnap_file *f, const char *out, int64_t filter,
		   bool force, bool quiet, struct bgsnap_core_info *info)
{
	char name[NAME_MAX + 1], tmp[NAME_MAX + 1];
	struct cli_progress bar;
	const struct bgsnap_core_opts co = { .size = sizeof(co),
					     .filter = filter,
					     .progress = show_progress,
					     .arg = &bar };
	int dirfd, fd, r;

	if (cli_output_dir(out, &dirfd, name))
		return EXIT_FAILED;
	r = cli_output_check(dirfd, name, out, force) ? -1 : 0;
	fd = r ? -1 : create_temp(dirfd, name, out, tmp);
	if (fd < 0) {
		close(dirfd);
		return EXIT_FAILED;
	}
	cli_progress_start(&bar, "core", 0, quiet);
	r = write_synced(f, fd, out, &co, info);
	cli_progress_end(&bar);
	if (!r)
		r = cli_output_publish(dirfd, tmp, name, out, force);
	if (r)
		unlinkat(dirfd, tmp, 0);
	else if (fsync(dirfd))
		r = -errno;
	close(dirfd);
	if (r == -ENOENT || r == BGSNAP_ECORRUPT)
		return r == -ENOENT ? EXIT_FAILED : EXIT_BADFILE;
	return r ? EXIT_FAILED : EXIT_OK;
}

void cli_json_core_info(struct cli_json *j, const struct bgsnap_core_info *in)
{
	cli_json_kuint(j, "filter", in->filter);
	cli_json_kuint(j, "threads", in->threads);
	cli_json_kuint(j, "segments", in->segments);
	cli_json_kuint(j, "segments_unsaved", in->segments_unsaved);
	cli_json_kuint(j, "core_bytes", in->file_size);
	cli_json_kuint(j, "memory_bytes", in->data_bytes);
}

/* ---- the snapshot -------------------------------------------------------- */

/* An unnamed file beside the core (O_TMPFILE), else a named one removed
 * at once: the snapshot goes away with its descriptor. */
static int open_unnamed(struct snap_out *s, const char *out)
{
	if (cli_output_dir(out, &s->dirfd, s->name))
		return -1;
	s->fd = openat(s->dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (s->fd >= 0)
		return 0;
	s->fd = create_temp(s->dirfd, s->name, out, s->tmp);
	if (s->fd >= 0)
		unlinkat(s->dirfd, s->tmp, 0);
	return s->fd < 0 ? -1 : 0;
}

static int open_snapshot(struct snap_out *s, const struct opts *o)
{
	if (!o->snapshot)
		return open_unnamed(s, o->output);
	s->named = true;
	if (cli_output_dir(o->snapshot, &s->dirfd, s->name) ||
	    cli_output_check(s->dirfd, s->name, o->snapshot, o->force))
		return -1;
	s->fd = create_temp(s->dirfd, s->name, o->snapshot, s->tmp);
	return s->fd < 0 ? -1 : 0;
}

/* --snapshot: synced and renamed into place, once the core is. */
static int keep_snapshot(struct snap_out *s, const struct opts *o)
{
	if (fsync(s->fd)) {
		cli_error("%s: %s", o->snapshot, strerror(errno));
		return -1;
	}
	if (cli_output_publish(s->dirfd, s->tmp, s->name, o->snapshot,
			       o->force))
		return -1;
	s->named = false; /* nothing left to remove */
	return fsync(s->dirfd) ? -1 : 0;
}

static void close_snapshot(struct snap_out *s)
{
	if (s->named)
		unlinkat(s->dirfd, s->tmp, 0);
	if (s->fd >= 0)
		close(s->fd);
	if (s->dirfd >= 0)
		close(s->dirfd);
}

/* ---- the report ---------------------------------------------------------- */

static void report_text(const struct opts *o, const struct bgsnap_stats *st,
			const struct bgsnap_core_info *in, uint64_t ns)
{
	char a[CLI_FMT_LEN], b[CLI_FMT_LEN], c[CLI_FMT_LEN], d[CLI_FMT_LEN],
		e[CLI_FMT_LEN];

	printf("core of process %d -> %s: %zu threads, %zu segments, %s "
	       "(%s of memory)\n",
	       o->pid, o->output, in->threads, in->segments,
	       cli_fmt_size(a, in->file_size), cli_fmt_size(b, in->data_bytes));
	printf("pause %s, longest writer stall %s, %s in all\n",
	       cli_fmt_duration(c, st->blackout_ns),
	       cli_fmt_duration(d, st->stall_ns_max), cli_fmt_duration(e, ns));
	if (in->segments_unsaved)
		printf("%zu mappings the filter 0x%x asks for are not in the "
		       "snapshot (file mappings: their files hold them)\n",
		       in->segments_unsaved, in->filter);
}

static int report_json(const struct opts *o, const struct bgsnap_stats *st,
		       const struct bgsnap_core_info *in, uint64_t ns)
{
	struct cli_json j;

	cli_json_init(&j, stdout);
	cli_json_object_begin(&j);
	cli_json_kint(&j, "pid", o->pid);
	cli_json_kstr(&j, "output", o->output);
	cli_json_kstr(&j, "snapshot", o->snapshot);
	cli_json_core_info(&j, in);
	cli_json_kuint(&j, "blackout_ns", st->blackout_ns);
	cli_json_kuint(&j, "stall_ns_max", st->stall_ns_max);
	cli_json_kuint(&j, "elapsed_ns", ns);
	cli_json_object_end(&j);
	return cli_json_end(&j);
}

/* ---- the command --------------------------------------------------------- */

static int make_core(const struct opts *o, struct snap_out *s,
		     struct bgsnap_stats *st, struct bgsnap_core_info *in)
{
	const struct bgsnap_save_opts so = { .size = sizeof(so) };
	const struct cli_save_req req = {
		.pid = o->pid,
		.fd = s->fd,
		.opts = &so,
		.quiet = o->quiet,
		.cmd = "core",
		.what = "core",
	};
	struct cli_save_result res = { .stats = st };
	char path[64], err[BGSNAP_FILE_ERROR_MAX];
	struct bgsnap_file *f;
	int code = cli_save_pid(&req, &res);

	if (code)
		return code;
	/* The snapshot has no name (or not yet its own): read it through
	 * its descriptor. */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", s->fd);
	if (bgsnap_file_open(&f, path, err, sizeof(err))) {
		cli_error("core: the snapshot just written: %s", err);
		return EXIT_FAILED;
	}
	code = cli_core_write(f, o->output, o->filter, o->force, o->quiet, in);
	bgsnap_file_close(f);
	return code;
}

static bool take_option(struct cli_getopt *g, int c, void *ctx)
{
	struct opts *o = ctx;

	if (c == OPT_FILTER)
		return cli_arg_filter(g, optarg, &o->filter);
	return false;
}

/* -1, or an exit code: EXIT_OK after --help, EXIT_USAGE after an error. */
static int parse(int argc, char **argv, struct opts *o)
{
	const struct cli_opt opts[] = {
		{ 'p', .pid = &o->pid },
		{ 'o', .str = &o->output },
		{ 's', .str = &o->snapshot },
		{ 'f', .flag = &o->force },
		{ 'q', .flag = &o->quiet },
		{ OPT_JSON, .flag = &o->json },
		{ 0 },
	};
	struct cli_getopt g = { .cmd = "core",
				.usage = core_usage,
				.shortopts = "p:o:s:fq",
				.longopts = core_options,
				.opts = opts,
				.take = take_option,
				.ctx = o };
	const int code = cli_parse(&g, argc, argv, 0, 0, "");

	if (code >= 0)
		return code;
	if (!o->pid || !o->output) {
		cli_error("core: --pid PID and -o CORE are needed (see "
			  "'bgsnap core --help')");
		return EXIT_USAGE;
	}
	return -1;
}

int cmd_core(int argc, char **argv)
{
	struct opts o = { .filter = -1 };
	struct snap_out s = { .fd = -1, .dirfd = -1 };
	struct bgsnap_stats st = { .size = sizeof(st) };
	struct bgsnap_core_info in = { .size = sizeof(in) };
	const uint64_t t0 = cli_now_ns();
	int code = parse(argc, argv, &o);
	int out_dir;
	char name[NAME_MAX + 1];

	if (code >= 0)
		return code;
	/* Refuse an output that cannot be written before stopping anyone. */
	if (cli_output_dir(o.output, &out_dir, name))
		return EXIT_FAILED;
	code = cli_output_check(out_dir, name, o.output, o.force) ? EXIT_FAILED
								  : EXIT_OK;
	close(out_dir);
	if (!code)
		code = open_snapshot(&s, &o) ? EXIT_FAILED : EXIT_OK;
	if (!code)
		code = make_core(&o, &s, &st, &in);
	if (!code && o.snapshot && keep_snapshot(&s, &o))
		code = EXIT_FAILED;
	close_snapshot(&s);
	if (code)
		return code;
	if (o.json)
		return report_json(&o, &st, &in, cli_now_ns() - t0)
			       ? EXIT_FAILED
			       : EXIT_OK;
	if (!o.quiet)
		report_text(&o, &st, &in, cli_now_ns() - t0);
	return EXIT_OK;
}
