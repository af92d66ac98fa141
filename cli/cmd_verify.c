/* SPDX-License-Identifier: MIT */
/* bgsnap verify: check every byte of a snapshot file, and of its chain. */
#include "cli.h"

#include <bgsnap.h>
#include <errno.h>
#include <string.h>
#include <time.h>

#define MAX_PARENTS 64

static const char verify_usage[] =
	"usage: bgsnap verify FILE [--parent P]... [--chain|--no-chain]\n"
	"                          [--deep] [--json] [--quiet]\n"
	"\n"
	"Check the snapshot FILE completely: header, region table, index and\n"
	"footer, the checksums of every record's header and data (pages and\n"
	"attachments), and that every page of every saved region is stored\n"
	"exactly once. A damaged file is reported in one line that names the\n"
	"place, e.g. \"record at offset 8192 (region 'ram', pages 64..127):\n"
	"data checksum mismatch\".\n"
	"\n"
	"A file of format 1.1 or later carries a checksum of every byte as\n"
	"stored, so any changed byte is found without decompressing\n"
	"anything; --deep decompresses every page too and checks the pages'\n"
	"own checksums, as a restore does. A file of format 1.0 has checksums\n"
	"of its pages only, so its pages are always decompressed (a changed\n"
	"compressed byte that still gives the same pages goes unnoticed\n"
	"there).\n"
	"\n"
	"An incremental snapshot is only whole with its parents, so by "
	"default\n"
	"its chain is checked too: every parent up to a full snapshot, each\n"
	"completely, and that they fit (each parent has the id its child "
	"names,\n"
	"and the regions its child leaves to it). A parent is looked for "
	"among\n"
	"the files given with --parent (matched by snapshot id), else beside\n"
	"its child under the name the child records for it.\n"
	"\n"
	"  -P, --parent P  a file of the chain, in any order (repeatable)\n"
	"  -c, --chain     check the chain (the default)\n"
	"      --no-chain  check FILE alone, not its parents\n"
	"      --deep      decompress and check every page too\n"
	"      --json      one JSON object on stdout (keys in bgsnap(1))\n"
	"  -q, --quiet     no progress bar; nothing on stdout for a good file\n"
	"  -h, --help      this text\n"
	"\n"
	"Exit status: 0 the file (and its chain) is perfect, 2 usage, 3 a "
	"file\n"
	"is missing, damaged or not a snapshot, 1 a parent was not found or "
	"does\n"
	"not fit, or a file could not be read (I/O error, no permission, no\n"
	"memory).\n";

enum {
	OPT_NO_CHAIN = 256,
	OPT_DEEP,
};

static const struct option verify_options[] = {
	{ "parent", required_argument, NULL, 'P' },
	{ "chain", no_argument, NULL, 'c' },
	{ "no-chain", no_argument, NULL, OPT_NO_CHAIN },
	{ "deep", no_argument, NULL, OPT_DEEP },
	{ "json", no_argument, NULL, 'j' },
	{ "quiet", no_argument, NULL, 'q' },
	CLI_OPT_HELP_ENTRY,
	{ 0 },
};

struct verify {
	const char *path;
	const char *parents[MAX_PARENTS];
	size_t nparents;
	bool json, quiet, no_chain, deep;
	int err; /* 0 or the first problem */
	char msg[BGSNAP_FILE_ERROR_MAX];
	bool opened;
	struct bgsnap_file *f; /* open until the report is written */
	struct bgsnap_file_info info;
	uint64_t elapsed_ns;
};

static void on_progress(void *arg, uint64_t done, uint64_t total)
{
	struct cli_progress *p = arg;

	cli_progress_total(p, total);
	cli_progress_update(p, done);
}

static bool chained(const struct verify *v)
{
	return v->info.incremental && !v->no_chain;
}

static void check(struct verify *v)
{
	const int how = v->deep ? BGSNAP_VERIFY_DEEP : BGSNAP_VERIFY_STORED;
	struct cli_progress bar;
	const uint64_t t0 = cli_now_ns();

	v->err = bgsnap_file_open(&v->f, v->path, v->msg, sizeof(v->msg));
	if (v->err)
		return;
	v->opened = true;
	v->info.size = sizeof(v->info);
	bgsnap_file_info(v->f, &v->info);
	for (size_t i = 0; i < v->nparents && !v->err; i++)
		v->err = bgsnap_file_add_parent(v->f, v->parents[i]);
	if (!v->err)
		v->err = bgsnap_file_set_verify(v->f, how);
	cli_progress_start(&bar, "verify", v->info.file_size, v->quiet);
	if (!v->err)
		v->err = chained(v)
				 ? bgsnap_file_verify_chain(v->f, on_progress,
							    &bar)
				 : bgsnap_file_verify(v->f, on_progress, &bar);
	cli_progress_end(&bar);
	if (v->err)
		snprintf(v->msg, sizeof(v->msg), "%s",
			 bgsnap_file_last_error(v->f));
	v->elapsed_ns = cli_now_ns() - t0;
}

/* The ancestors of FILE found so far, parent first (NULL-terminated). */
static struct bgsnap_file *ancestor(const struct verify *v, size_t level)
{
	struct bgsnap_file *f = v->f, *p;

	for (size_t k = 0; k < level && f; k++) {
		struct bgsnap_file_info in = { .size = sizeof(in) };

		bgsnap_file_info(f, &in);
		/* The check opened the chain already: this only finds a
		 * parent in it, it never searches the disk. */
		if (!in.incremental || bgsnap_file_parent(f, &p))
			return NULL;
		f = p;
	}
	return f;
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

static void hex_id(char out[33], const uint8_t id[16])
{
	for (int i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", id[i]);
}

/* "chain", for an incremental FILE only (a full one's keys are those of
 * before): the files checked, FILE first; null with --no-chain. */
static void json_chain(struct cli_json *j, const struct verify *v)
{
	struct bgsnap_file *f;

	if (!v->opened || !v->info.incremental)
		return;
	cli_json_key(j, "chain");
	if (!chained(v)) {
		cli_json_null(j);
		return;
	}
	cli_json_array_begin(j);
	for (size_t k = 0; (f = ancestor(v, k)); k++) {
		struct bgsnap_file_info in = { .size = sizeof(in) };
		char id[33];

		bgsnap_file_info(f, &in);
		hex_id(id, in.snapshot_id);
		cli_json_object_begin(j);
		cli_json_kstr(j, "file", bgsnap_file_path(f));
		cli_json_kstr(j, "snapshot_id", id);
		cli_json_kbool(j, "incremental", in.incremental);
		cli_json_kuint(j, "file_size", in.file_size);
		cli_json_object_end(j);
	}
	cli_json_array_end(j);
}

/* "format_version" of FILE, "1.1", null when it could not be opened. */
static void json_format(struct cli_json *j, const struct verify *v)
{
	char s[16];

	snprintf(s, sizeof(s), "%u.%u", v->info.version_major,
		 v->info.version_minor);
	cli_json_kstr(j, "format_version", v->opened ? s : NULL);
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
	json_format(&j, v);
	cli_json_kbool(&j, "deep", v->deep);
	json_chain(&j, v);
	cli_json_kuint(&j, "elapsed_ns", v->elapsed_ns);
	cli_json_object_end(&j);
	return cli_json_end(&j);
}

static void print_ok(const struct verify *v)
{
	char a[CLI_FMT_LEN], b[CLI_FMT_LEN], c[CLI_FMT_LEN];
	uint64_t checked = 0;
	size_t files = 0;
	struct bgsnap_file *f;

	for (; (f = ancestor(v, files)) && (files == 0 || chained(v));
	     files++) {
		struct bgsnap_file_info in = { .size = sizeof(in) };

		bgsnap_file_info(f, &in);
		checked += in.file_size;
	}
	printf("%s: ok: %zu region%s, %llu pages (%s) in %llu records, %zu "
	       "attachment%s; ",
	       v->path, v->info.regions, v->info.regions == 1 ? "" : "s",
	       (unsigned long long)v->info.pages,
	       cli_fmt_size(a, v->info.pages * 4096),
	       (unsigned long long)v->info.records, v->info.attachments,
	       v->info.attachments == 1 ? "" : "s");
	if (files > 1)
		printf("with its %zu parent%s, ", files - 1,
		       files == 2 ? "" : "s");
	printf("%s checked in %s\n", cli_fmt_size(b, checked),
	       cli_fmt_duration(c, v->elapsed_ns));
	for (size_t k = 1; k < files; k++)
		printf("  parent %zu: %s: ok\n", k,
		       bgsnap_file_path(ancestor(v, k)));
	if (v->info.incremental && v->no_chain)
		printf("  (incremental: its parents were not checked)\n");
}

static void report_error(const struct verify *v)
{
	if (v->err == BGSNAP_EPARENT)
		cli_error("%s: %s (give the parent with --parent)", v->path,
			  v->msg);
	else
		cli_error("%s: %s", v->path, v->msg);
}

/* --chain undoes --no-chain: it sets a flag false, which the table
 * cannot do. */
static bool take_option(struct cli_getopt *g, int c, void *ctx)
{
	struct verify *v = ctx;

	(void)g;
	if (c != 'c')
		return false;
	v->no_chain = false;
	return true;
}

/* The parsed command line in @v, or an exit code (EXIT_OK after --help). */
static int parse(int argc, char **argv, struct verify *v)
{
	const struct cli_opt opts[] = {
		{ 'j', .flag = &v->json },
		{ 'q', .flag = &v->quiet },
		{ OPT_NO_CHAIN, .flag = &v->no_chain },
		{ OPT_DEEP, .flag = &v->deep },
		{ 'P', .list = v->parents, .count = &v->nparents,
		  .cap = MAX_PARENTS, .name = "--parent" },
		{ 0 },
	};
	struct cli_getopt g = { .cmd = "verify",
				.usage = verify_usage,
				.shortopts = "P:cq",
				.longopts = verify_options,
				.opts = opts,
				.take = take_option,
				.ctx = v };
	const int code = cli_parse(&g, argc, argv, 1, 1, "FILE");

	if (code >= 0)
		return code;
	v->path = argv[optind];
	return -1;
}

int cmd_verify(int argc, char **argv)
{
	struct verify v = { 0 };
	int code = parse(argc, argv, &v);

	if (code >= 0)
		return code;
	check(&v);
	if (v.err)
		report_error(&v);
	if (v.json && print_json(&v)) {
		cli_error("writing to stdout: %s", strerror(EIO));
		bgsnap_file_close(v.f);
		return EXIT_FAILED;
	}
	if (!v.err && !v.json && !v.quiet)
		print_ok(&v);
	bgsnap_file_close(v.f);
	return v.err ? cli_file_exit(v.err) : EXIT_OK;
}
