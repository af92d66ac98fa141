/* SPDX-License-Identifier: MIT */
/*
 * bgsnap flatten: an incremental snapshot and its chain of parents,
 * written out as one full snapshot (bgsnap_flatten), which needs no parent.
 *
 * As export does, the output is never seen half-written and nothing is
 * replaced without --force: the library writes a complete snapshot under a
 * temporary name beside OUT (its own temporary, then renamed to ours), and
 * ours is renamed to OUT with RENAME_NOREPLACE (link() where the file
 * system lacks it), or over a regular file with --force; a symbolic link,
 * a directory or any other file that is not a regular one at OUT is
 * refused either way (cli_output_*()). Into rados://POOL/NAME, the library
 * publishes the snapshot itself, whole, and refuses to replace one
 * without --force (BGSNAP_FLATTEN_NO_REPLACE).
 */
#include "cli.h"

#include <bgsnap.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_PARENTS 64

static const char flatten_usage[] =
	"usage: bgsnap flatten FILE -o OUT [--parent P]... [--force] [--json]\n"
	"                      [--quiet]\n"
	"\n"
	"Write the snapshot FILE, with the pages it leaves to its parents "
	"read\n"
	"from them, as one full snapshot OUT that needs no parent: the same\n"
	"regions, attachments and memory, a new snapshot id. Every record "
	"read\n"
	"is checked. A parent is looked for among the files given with\n"
	"--parent (matched by snapshot id), else beside its child under the\n"
	"name the child records for it, and so on up the chain. A full FILE "
	"is\n"
	"copied.\n"
	"\n"
	"OUT is created 0600 under a temporary name beside it and renamed "
	"into\n"
	"place when complete; an existing file is not replaced without "
	"--force,\n"
	"and a symbolic link, a directory, a device, a FIFO or a socket is\n"
	"refused even with it. SIGINT, SIGTERM and SIGHUP take effect once\n"
	"the copy is written: it is then removed. OUT may be "
	"rados://POOL/NAME\n"
	"(FILE and the parents too): it is written whole to a temporary file\n"
	"first, then stored, and appears under NAME only when complete.\n"
	"\n"
	"  -o, --output OUT  the full snapshot to write (required)\n"
	"  -P, --parent P    a file of the chain, in any order (repeatable)\n"
	"  -f, --force       replace OUT if it exists\n"
	"      --json        a JSON summary on stdout (keys in bgsnap(1))\n"
	"  -q, --quiet       no summary\n"
	"  -h, --help        this text\n"
	"\n"
	"Exit status: 0 success, 1 failure (OUT exists, a parent not found,\n"
	"I/O error, interrupted ...), 2 usage, 3 a file of the snapshot is\n"
	"missing, damaged or not a snapshot (a FIFO, a device: refused at\n"
	"once).\n";

static const struct option flatten_options[] = {
	{ "output", required_argument, NULL, 'o' },
	{ "parent", required_argument, NULL, 'P' },
	{ "force", no_argument, NULL, 'f' },
	{ "json", no_argument, NULL, 'j' },
	{ "quiet", no_argument, NULL, 'q' },
	CLI_OPT_HELP_ENTRY,
	{ 0 },
};

struct flatten {
	const char *file, *output;
	const char *parents[MAX_PARENTS];
	size_t nparents;
	bool force, json, quiet;
	int dirfd;		 /* OUT's directory */
	char name[NAME_MAX + 1]; /* OUT's last component */
	char tmp[PATH_MAX];	 /* our temporary, beside OUT */
	uint64_t elapsed_ns;
};

/* ---- the output ---------------------------------------------------------- */

/* Open OUT's directory and keep OUT's last component: 0, or -1 after a
 * message. */
static int open_output_dir(struct flatten *fl)
{
	return cli_output_dir(fl->output, &fl->dirfd, fl->name);
}

/* What is at OUT may not be replaced: -1 after a message. */
static int check_output(const struct flatten *fl)
{
	return cli_output_check(fl->dirfd, fl->name, fl->output, fl->force);
}

/* Pick an unused name beside OUT for the library to write to. */
static int pick_temp(struct flatten *fl)
{
	char name[NAME_MAX + 1];

	if (cli_output_temp(fl->dirfd, fl->name, "flatten", fl->output, name))
		return -1;
	snprintf(fl->tmp, sizeof(fl->tmp), "%.*s%s",
		 (int)(strlen(fl->output) - strlen(fl->name)), fl->output,
		 name);
	return 0;
}

static const char *tmp_name(const struct flatten *fl)
{
	const char *slash = strrchr(fl->tmp, '/');

	return slash ? slash + 1 : fl->tmp;
}

/* Our finished temporary to OUT; without --force never over anything. */
static int publish(const struct flatten *fl)
{
	return cli_output_publish(fl->dirfd, tmp_name(fl), fl->name, fl->output,
				  fl->force);
}

/* ---- the work ------------------------------------------------------------ */

/* The library's message, naming FILE unless it does already. */
static void flatten_failed(const struct flatten *fl, const struct bgsnap *h,
			   int ret)
{
	const char *d = bgsnap_last_error(h);

	if (!d || !*d)
		d = bgsnap_strerror(ret);
	cli_error("%s%s%s%s", strstr(d, fl->file) ? "" : fl->file,
		  strstr(d, fl->file) ? "" : ": ", d,
		  ret == BGSNAP_EPARENT ? " (give the parent with --parent)"
					: "");
}

static bool to_rados(const struct flatten *fl)
{
	return !strncmp(fl->output, "rados://", 8);
}

static int run(struct flatten *fl)
{
	/* Into RADOS the library stores it whole, once written, under the
	 * name; a file goes under our temporary name, renamed below. */
	const struct bgsnap_restore_opts o = {
		.size = sizeof(o),
		.flags = to_rados(fl) && !fl->force ? BGSNAP_FLATTEN_NO_REPLACE
						    : 0,
		.parents = fl->parents,
		.nparents = fl->nparents,
	};
	const uint64_t t0 = cli_now_ns();
	struct bgsnap *h;
	int ret = bgsnap_new(&h);

	if (ret) {
		cli_error("flatten: %s", bgsnap_strerror(ret));
		return EXIT_FAILED;
	}
	ret = bgsnap_flatten(h, fl->file, to_rados(fl) ? fl->output : fl->tmp,
			     &o);
	fl->elapsed_ns = cli_now_ns() - t0;
	if (ret)
		flatten_failed(fl, h, ret);
	bgsnap_free(h);
	if (ret)
		return cli_file_exit(ret);
	if (to_rados(fl))
		return EXIT_OK;
	if (cli_interrupted()) {
		cli_error("flatten: interrupted by %s; %s not written",
			  strsignal(cli_interrupted()), fl->output);
		ret = -EINTR;
	}
	if (!ret)
		ret = publish(fl); /* a message if it fails */
	if (!ret && fsync(fl->dirfd)) {
		ret = -errno;
		cli_error("%s: %s", fl->output, strerror(-ret));
	}
	if (ret)
		unlinkat(fl->dirfd, tmp_name(fl), 0);
	return ret ? EXIT_FAILED : EXIT_OK;
}

/* ---- the report ---------------------------------------------------------- */

/* The files of FILE's chain, as the flatten found them. */
static size_t chain_length(const struct flatten *fl)
{
	struct bgsnap_file *f, *c, *p;
	struct bgsnap_file_info in = { .size = sizeof(in) };
	size_t n = 1;

	if (bgsnap_file_open(&f, fl->file, NULL, 0))
		return 0;
	for (size_t i = 0; i < fl->nparents; i++)
		bgsnap_file_add_parent(f, fl->parents[i]);
	for (c = f, bgsnap_file_info(c, &in);
	     in.incremental && !bgsnap_file_parent(c, &p);
	     c = p, bgsnap_file_info(c, &in))
		n++;
	bgsnap_file_close(f);
	return n;
}

static int report(const struct flatten *fl)
{
	char err[BGSNAP_FILE_ERROR_MAX], a[CLI_FMT_LEN], b[CLI_FMT_LEN];
	char c[CLI_FMT_LEN];
	struct bgsnap_file_info in = { .size = sizeof(in) };
	struct bgsnap_file *f;
	const size_t n = chain_length(fl);
	struct cli_json j;

	if (bgsnap_file_open(&f, fl->output, err, sizeof(err))) {
		cli_error("%s: %s", fl->output, err);
		return EXIT_FAILED;
	}
	bgsnap_file_info(f, &in);
	bgsnap_file_close(f);
	if (!fl->json) {
		printf("flattened %s (%zu snapshot%s) into %s: %llu pages "
		       "(%s), %s stored, in %s\n",
		       fl->file, n, n == 1 ? "" : "s", fl->output,
		       (unsigned long long)in.pages,
		       cli_fmt_size(a, in.pages * 4096),
		       cli_fmt_size(b, in.file_size),
		       cli_fmt_duration(c, fl->elapsed_ns));
		return fflush(stdout) ? EXIT_FAILED : EXIT_OK;
	}
	cli_json_init(&j, stdout);
	cli_json_object_begin(&j);
	cli_json_kstr(&j, "file", fl->file);
	cli_json_kstr(&j, "output", fl->output);
	cli_json_kuint(&j, "chain_length", n);
	cli_json_kuint(&j, "file_size", in.file_size);
	cli_json_kuint(&j, "pages", in.pages);
	cli_json_kuint(&j, "pages_data", in.pages_data);
	cli_json_kuint(&j, "pages_zero", in.pages_zero);
	cli_json_kuint(&j, "data_bytes", in.data_bytes);
	cli_json_kuint(&j, "elapsed_ns", fl->elapsed_ns);
	cli_json_object_end(&j);
	return cli_json_end(&j) ? EXIT_FAILED : EXIT_OK;
}

/* ---- the command --------------------------------------------------------- */

/* The parsed command line in @fl, or an exit code (EXIT_OK after --help). */
static int parse(int argc, char **argv, struct flatten *fl)
{
	const struct cli_opt opts[] = {
		{ 'o', .str = &fl->output },
		{ 'f', .flag = &fl->force },
		{ 'j', .flag = &fl->json },
		{ 'q', .flag = &fl->quiet },
		{ 'P', .list = fl->parents, .count = &fl->nparents,
		  .cap = MAX_PARENTS, .name = "--parent" },
		{ 0 },
	};
	struct cli_getopt g = { .cmd = "flatten",
				.usage = flatten_usage,
				.shortopts = "o:P:fq",
				.longopts = flatten_options,
				.opts = opts };
	const int code = cli_parse(&g, argc, argv, 1, 1, "FILE");

	if (code >= 0)
		return code;
	fl->file = argv[optind];
	if (!fl->output) {
		cli_error("flatten: -o OUT is needed (see 'bgsnap flatten "
			  "--help')");
		return EXIT_USAGE;
	}
	if (!strcmp(fl->output, "-")) {
		cli_error("flatten: OUT must be a file (a snapshot is checked "
			  "when written, and renamed into place)");
		return EXIT_USAGE;
	}
	/* A FIFO would block the open, so it is refused now. */
	if (cli_input_check("flatten: ", fl->file, NULL))
		return EXIT_BADFILE;
	return -1;
}

int cmd_flatten(int argc, char **argv)
{
	struct flatten fl = { .dirfd = -1 };
	int code = parse(argc, argv, &fl);

	if (code >= 0)
		return code;
	if (!to_rados(&fl) &&
	    (open_output_dir(&fl) || check_output(&fl) || pick_temp(&fl)))
		code = EXIT_FAILED;
	if (code < 0) {
		cli_catch_signals();
		code = run(&fl);
	}
	if (code == EXIT_OK && (!fl.quiet || fl.json))
		code = report(&fl);
	if (fl.dirfd >= 0)
		close(fl.dirfd);
	return code;
}
