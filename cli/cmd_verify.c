/* SPDX-License-Identifier: MIT */
/* bgsnap verify: check every byte of a snapshot file. */
#include "cli.h"

#include <bgsnap.h>
#include <errno.h>
#include <string.h>
#include <time.h>

static const char verify_usage[] =
	"usage: bgsnap verify FILE [--json] [--quiet]\n"
	"\n"
	"Check the snapshot FILE completely: header, region table, index and\n"
	"footer, the checksums of every record's header and data (pages and\n"
	"attachments), and that every page of every saved region is stored\n"
	"exactly once. A damaged file is reported in one line that names the\n"
	"place, e.g. \"record at offset 8192 (region 'ram', pages 64..127):\n"
	"data checksum mismatch\".\n"
	"\n"
	"  --json       one JSON object on stdout (keys in bgsnap(1))\n"
	"  -q, --quiet  no progress bar; nothing on stdout for a good file\n"
	"  -h, --help   this text\n"
	"\n"
	"Exit status: 0 the file is perfect, 2 usage, 3 the file is missing,\n"
	"damaged or not a snapshot, 1 it could not be read (I/O error, no\n"
	"permission, no memory).\n";

static const struct option verify_options[] = {
	{ "json", no_argument, NULL, 'j' },
	{ "quiet", no_argument, NULL, 'q' },
	CLI_OPT_HELP_ENTRY,
	{ 0 },
};

struct verify {
	const char *path;
	bool json, quiet;
	int err;		 /* 0 or the first problem */
	char msg[BGSNAP_FILE_ERROR_MAX];
	bool opened;
	struct bgsnap_file_info info;
	uint64_t elapsed_ns;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void on_progress(void *arg, uint64_t done, uint64_t total)
{
	struct cli_progress *p = arg;

	cli_progress_total(p, total);
	cli_progress_update(p, done);
}

static void check(struct verify *v)
{
	struct cli_progress bar;
	struct bgsnap_file *f;
	const uint64_t t0 = now_ns();

	v->err = bgsnap_file_open(&f, v->path, v->msg, sizeof(v->msg));
	if (v->err)
		return;
	v->opened = true;
	bgsnap_file_info(f, &v->info);
	cli_progress_start(&bar, "verify", v->info.file_size, v->quiet);
	v->err = bgsnap_file_verify(f, on_progress, &bar);
	cli_progress_end(&bar);
	if (v->err)
		snprintf(v->msg, sizeof(v->msg), "%s",
			 bgsnap_file_last_error(f));
	bgsnap_file_close(f);
	v->elapsed_ns = now_ns() - t0;
}

static void json_error(struct cli_json *j, const struct verify *v)
{
	cli_json_key(j, "error");
	if (!v->err) {
		cli_json_null(j);
		return;
	}
	cli_json_object_begin(j);
	cli_json_kint(j, "code", v->err);
	cli_json_kstr(j, "name", bgsnap_strerror(v->err));
	cli_json_kstr(j, "message", v->msg);
	cli_json_object_end(j);
}

/* Figures of the file, null when it could not be opened: the keys are
 * there either way. */
static void json_figure(struct cli_json *j, const struct verify *v,
			const char *key, uint64_t value)
{
	cli_json_key(j, key);
	if (v->opened)
		cli_json_uint(j, value);
	else
		cli_json_null(j);
}

static int print_json(const struct verify *v)
{
	struct cli_json j;

	cli_json_init(&j, stdout);
	cli_json_object_begin(&j);
	cli_json_kstr(&j, "file", v->path);
	cli_json_kbool(&j, "ok", !v->err);
	json_error(&j, v);
	json_figure(&j, v, "file_size", v->info.file_size);
	json_figure(&j, v, "regions", v->info.regions);
	json_figure(&j, v, "records", v->info.records);
	json_figure(&j, v, "attachments", v->info.attachments);
	json_figure(&j, v, "pages", v->info.pages);
	cli_json_kuint(&j, "elapsed_ns", v->elapsed_ns);
	cli_json_object_end(&j);
	return cli_json_end(&j);
}

static void print_ok(const struct verify *v)
{
	char a[CLI_FMT_LEN], b[CLI_FMT_LEN], c[CLI_FMT_LEN];

	printf("%s: ok: %zu region%s, %llu pages (%s) in %llu records, %zu "
	       "attachment%s; %s checked in %s\n", v->path, v->info.regions,
	       v->info.regions == 1 ? "" : "s",
	       (unsigned long long)v->info.pages,
	       cli_fmt_size(a, v->info.pages * 4096),
	       (unsigned long long)v->info.records, v->info.attachments,
	       v->info.attachments == 1 ? "" : "s",
	       cli_fmt_size(b, v->info.file_size),
	       cli_fmt_duration(c, v->elapsed_ns));
}

int cmd_verify(int argc, char **argv)
{
	struct cli_getopt g = { .cmd = "verify", .usage = verify_usage,
				.shortopts = "q", .longopts = verify_options };
	struct verify v = { 0 };
	int c;

	while ((c = cli_getopt(&g, argc, argv)) != CLI_OPT_END) {
		if (c == 'j')
			v.json = true;
		else if (c == 'q')
			v.quiet = true;
		else
			return c == CLI_OPT_HELP ? EXIT_OK : EXIT_USAGE;
	}
	if (cli_operands(&g, argc, argv, 1, 1, "FILE") < 0)
		return EXIT_USAGE;
	v.path = argv[optind];
	check(&v);
	if (v.err)
		cli_error("%s: %s", v.path, v.msg);
	if (v.json && print_json(&v)) {
		cli_error("writing to stdout: %s", strerror(EIO));
		return EXIT_FAILED;
	}
	if (!v.err && !v.json && !v.quiet)
		print_ok(&v);
	return v.err ? cli_file_exit(v.err) : EXIT_OK;
}
