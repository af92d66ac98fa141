/* SPDX-License-Identifier: MIT */
/*
 * bgsnap export: the raw bytes of a region, as they were at the snapshot,
 * into a file of their own (sparse: zero pages are holes). The pages of an
 * incremental snapshot stored in its parent are read from the parent, up
 * the chain (the file API finds it); they are data like any other.
 *
 * Output files are never seen half-written: each is written under a
 * temporary name beside the final one (0600, O_EXCL | O_NOFOLLOW), synced,
 * then renamed into place, without replacing anything unless --force
 * (RENAME_NOREPLACE; cli_output_publish()). A symbolic link, a directory
 * or any other file that is not a regular one where the output goes is
 * refused, --force or not. Region names become file names with every
 * byte outside [A-Za-z0-9._+-] replaced, so no name can leave the output
 * directory.
 */
#include "cli.h"

#include <bgsnap.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAGE	    4096u
#define CHUNK	    (4u << 20) /* bytes decoded and written at a time */
#define NAME_ROOM   200	       /* bytes of a derived file name */
#define MAX_PARENTS 64

static const char export_usage[] =
	"usage: bgsnap export FILE --region NAME -o OUT [--parent P]...\n"
	"                         [--force] [--quiet] [--json]\n"
	"       bgsnap export FILE --all -o DIR [--parent P]... [--force]\n"
	"                         [--quiet] [--json]\n"
	"       bgsnap export FILE --core -o CORE [--filter BITS]\n"
	"                         [--parent P]... [--force] [--quiet] "
	"[--json]\n"
	"\n"
	"Write the memory of a region of the snapshot FILE, byte for byte as\n"
	"it was at the snapshot, to OUT (a sparse file: zero pages are\n"
	"holes), or with --all every saved region to a file of its own in\n"
	"DIR (created if missing), named after the region: bytes other than\n"
	"letters, digits and ._+- become '_', a leading '.' too, and '.raw'\n"
	"is appended ('ram' -> DIR/ram.raw). '-o -' writes one region to\n"
	"stdout (not to a terminal). With --core, the snapshot of a process\n"
	"saved with 'save --pid' becomes the ELF core file the kernel would\n"
	"have written at its instant (see 'bgsnap core --help'), the same\n"
	"bytes as 'bgsnap core' writes.\n"
	"\n"
	"An incremental snapshot's pages stored in its parent are read from "
	"it,\n"
	"and so on up the chain: a parent is looked for among the files given\n"
	"with --parent (matched by snapshot id), else beside its child under\n"
	"the name the child records for it. The whole chain is found before\n"
	"anything is written.\n"
	"\n"
	"Files are created 0600 under a temporary name and renamed into\n"
	"place when complete; an existing file is not replaced without\n"
	"--force, and a symbolic link, a directory, a device, a FIFO or a\n"
	"socket where a file goes is refused even with it.\n"
	"\n"
	"  -r, --region NAME  the region to export (see 'bgsnap info FILE')\n"
	"  -a, --all          every saved region, one file each, into DIR\n"
	"  -c, --core         an ELF core file of the process\n"
	"      --filter BITS  with --core: coredump_filter bits instead of\n"
	"                     the process's (0x33; 0x for hex)\n"
	"  -o, --output PATH  the output file (--region) or directory (--all)\n"
	"  -P, --parent P     a file of the chain, in any order (repeatable)\n"
	"  -f, --force        replace existing output files\n"
	"  -q, --quiet        no progress bar, no summary\n"
	"      --json         a JSON summary on stdout (keys in bgsnap(1))\n"
	"  -h, --help         this text\n"
	"\n"
	"Exit status: 0 success, 1 failure (output exists, a parent not "
	"found,\n"
	"I/O error ...), 2 usage (also: no such region), 3 a file of the\n"
	"snapshot is missing, damaged or not a snapshot.\n";

static const struct option export_options[] = {
	{ "region", required_argument, NULL, 'r' },
	{ "all", no_argument, NULL, 'a' },
	{ "core", no_argument, NULL, 'c' },
	{ "filter", required_argument, NULL, 'F' },
	{ "output", required_argument, NULL, 'o' },
	{ "parent", required_argument, NULL, 'P' },
	{ "force", no_argument, NULL, 'f' },
	{ "quiet", no_argument, NULL, 'q' },
	{ "json", no_argument, NULL, 'j' },
	CLI_OPT_HELP_ENTRY,
	{ 0 },
};

struct opts {
	const char *file, *region, *output;
	const char *parents[MAX_PARENTS];
	size_t nparents;
	int64_t filter;
	bool all, core, force, quiet, json;
};

/* Where one region is written, and how far it got. */
struct target {
	size_t region;
	struct bgsnap_file_region r;
	char name[NAME_MAX + 1]; /* in the output directory */
	char shown[PATH_MAX];	 /* the path, for messages */
	uint64_t bytes_written;
	bool skipped; /* unsaved: nothing to write */
};

struct job {
	const struct opts *o;
	struct bgsnap_file *f;
	int dirfd;
	struct target *t;
	size_t nt;
	struct cli_progress bar;
	uint64_t done; /* bytes of regions processed */
	uint8_t *buf;  /* CHUNK bytes */
};

static const uint8_t zero_page[PAGE];

/* ---- names --------------------------------------------------------------- */

static bool safe_byte(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '+' ||
	       c == '-';
}

/* @region as a file name: safe bytes kept, the rest '_', never hidden,
 * never "." or "..", ".raw" appended; "~N" (its index) when taken. */
static void derive_name(const struct job *j, size_t k, char *out)
{
	const char *n = j->t[k].r.name;
	char base[NAME_ROOM + 1];
	size_t i;

	for (i = 0; n[i] && i < NAME_ROOM; i++)
		base[i] = safe_byte((unsigned char)n[i]) ? n[i] : '_';
	base[i] = '\0';
	if (base[0] == '.')
		base[0] = '_';
	snprintf(out, NAME_MAX + 1, "%s.raw", base);
	for (size_t m = 0; m < k; m++)
		if (!strcmp(j->t[m].name, out)) {
			snprintf(out, NAME_MAX + 1, "%s~%zu.raw", base,
				 j->t[k].region);
			return;
		}
}

/* ---- writing ------------------------------------------------------------- */

static int write_all(int fd, const uint8_t *p, size_t n, off_t off, bool seq)
{
	while (n) {
		const ssize_t w = seq ? write(fd, p, n) : pwrite(fd, p, n, off);

		if (w < 0 && errno == EINTR && !cli_interrupted())
			continue;
		if (w < 0)
			return -errno;
		p += w;
		off += w;
		n -= (size_t)w;
	}
	return 0;
}

/* The non-zero pages of @n bytes at @p, written at @off: zero pages stay
 * holes (the file was sized first). */
static int write_sparse(struct target *t, int fd, const uint8_t *p, size_t n,
			uint64_t off)
{
	size_t i = 0;

	while (i < n) {
		size_t end;
		int ret;

		while (i < n && !memcmp(p + i, zero_page, PAGE))
			i += PAGE;
		for (end = i; end < n && memcmp(p + end, zero_page, PAGE);)
			end += PAGE;
		if (end == i)
			break;
		ret = write_all(fd, p + i, end - i, (off_t)(off + i), false);
		if (ret)
			return ret;
		t->bytes_written += end - i;
		i = end;
	}
	return 0;
}

static int read_failed(struct job *j, const struct target *t, int ret)
{
	if (ret == BGSNAP_EPARENT)
		cli_error("%s: region '%s': %s (give the parent with "
			  "--parent)",
			  j->o->file, t->r.name, bgsnap_file_last_error(j->f));
	else
		cli_error("%s: %s", j->o->file, bgsnap_file_last_error(j->f));
	return ret;
}

/* A run of data pages, decoded a chunk at a time. */
static int copy_data(struct job *j, struct target *t, int fd, uint64_t off,
		     uint64_t len, bool seq)
{
	while (len) {
		const size_t n = len < CHUNK ? (size_t)len : CHUNK;
		int ret = bgsnap_file_read(j->f, t->region, off, j->buf, n);

		if (ret)
			return read_failed(j, t, ret);
		if (seq) {
			ret = write_all(fd, j->buf, n, 0, true);
			t->bytes_written += ret ? 0 : n;
		} else {
			ret = write_sparse(t, fd, j->buf, n, off);
		}
		if (ret) {
			cli_error("%s: %s", t->shown, strerror(-ret));
			return ret;
		}
		off += n;
		len -= n;
		cli_progress_update(&j->bar, j->done + off);
		if (cli_interrupted())
			return -EINTR;
	}
	return 0;
}

/* Zero pages written out, for a stream (a pipe has no holes). */
static int copy_zeroes(struct job *j, struct target *t, int fd, uint64_t len)
{
	memset(j->buf, 0, CHUNK);
	while (len) {
		const size_t n = len < CHUNK ? (size_t)len : CHUNK;
		const int ret = write_all(fd, j->buf, n, 0, true);

		if (ret) {
			cli_error("%s: %s", t->shown, strerror(-ret));
			return ret;
		}
		t->bytes_written += n;
		len -= n;
	}
	return 0;
}

/* Region @t into @fd run by run; @seq for a stream. */
static int copy_region(struct job *j, struct target *t, int fd, bool seq)
{
	uint64_t off = 0, len;
	int kind, ret = 0;

	while (!ret && off < t->r.len) {
		kind = bgsnap_file_map(j->f, t->region, off, &len);
		if (kind == BGSNAP_PAGES_DATA || kind == BGSNAP_PAGES_PARENT)
			ret = copy_data(j, t, fd, off, len, seq);
		else if (kind == BGSNAP_PAGES_ZERO)
			ret = seq ? copy_zeroes(j, t, fd, len) : 0;
		else
			ret = read_failed(j, t, kind < 0 ? kind : -ENODATA);
		off += len;
		cli_progress_update(&j->bar, j->done + off);
		if (!ret && cli_interrupted())
			ret = -EINTR;
	}
	if (ret == -EINTR)
		cli_error("%s: interrupted", t->shown);
	j->done += t->r.len;
	return ret;
}

/* ---- files --------------------------------------------------------------- */

/* What is at @t's final name may not be replaced: -1 after a message. */
static int check_target(const struct job *j, const struct target *t)
{
	return cli_output_check(j->dirfd, t->name, t->shown, j->o->force);
}

static int create_temp(const struct job *j, const struct target *t, char *tmp,
		       size_t len)
{
	for (unsigned attempt = 0; attempt < 100; attempt++) {
		int fd;

		snprintf(tmp, len, ".%.*s.%d.%u.tmp", NAME_ROOM, t->name,
			 (int)getpid(), attempt);
		fd = openat(j->dirfd, tmp,
			    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
				    O_CLOEXEC,
			    0600);
		if (fd >= 0) {
			/* Exactly 0600 whatever the umask: it is memory. */
			if (fchmod(fd, 0600) == 0)
				return fd;
			close(fd);
			unlinkat(j->dirfd, tmp, 0);
			return -errno;
		}
		if (errno != EEXIST)
			return -errno;
	}
	return -EEXIST;
}

static int finish_file(const struct job *j, const struct target *t, int fd,
		       const char *tmp)
{
	int ret = fsync(fd) ? -errno : 0;

	if (close(fd) && !ret)
		ret = -errno;
	if (ret) {
		cli_error("%s: %s", t->shown, strerror(-ret));
		return ret;
	}
	/* Without --force, never replace an existing file, and do it
	 * atomically. */
	return cli_output_publish(j->dirfd, tmp, t->name, t->shown,
				  j->o->force);
}

static int export_file(struct job *j, struct target *t)
{
	char tmp[NAME_MAX + 64];
	const int fd = create_temp(j, t, tmp, sizeof(tmp));
	int ret;

	if (fd < 0) {
		cli_error("%s: cannot create a temporary file beside it: %s",
			  t->shown, strerror(-fd));
		return fd;
	}
	ret = ftruncate(fd, (off_t)t->r.len) ? -errno : 0;
	if (ret)
		cli_error("%s: %s", t->shown, strerror(-ret));
	if (!ret)
		ret = copy_region(j, t, fd, false);
	if (ret) {
		close(fd);
		goto out_unlink_temp;
	}
	ret = finish_file(j, t, fd, tmp);
	if (!ret)
		return 0;
out_unlink_temp:
	unlinkat(j->dirfd, tmp, 0);
	return ret;
}

/* ---- the outputs --------------------------------------------------------- */

/* The directory of @path (opened) and its last component into @t. */
static int split_output(struct job *j, struct target *t, const char *path)
{
	snprintf(t->shown, sizeof(t->shown), "%s", path);
	return cli_output_dir(path, &j->dirfd, t->name);
}

/* The directory for --all: created 0700 if missing, never a symlink. */
static int open_out_dir(struct job *j, const char *dir)
{
	struct stat st;

	if (mkdir(dir, 0700) && errno != EEXIST) {
		cli_error("%s: %s", dir, strerror(errno));
		return -1;
	}
	/* O_NOFOLLOW makes the open safe; lstat makes the message clear
	 * (O_DIRECTORY on a link says "not a directory"). */
	if (!lstat(dir, &st) && S_ISLNK(st.st_mode)) {
		cli_error("%s: is a symbolic link: refused", dir);
		return -1;
	}
	j->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (j->dirfd < 0)
		cli_error("%s: %s", dir, strerror(errno));
	return j->dirfd < 0 ? -1 : 0;
}

static int plan_one(struct job *j)
{
	const int i = bgsnap_file_find_region(j->f, j->o->region);
	struct target *t = &j->t[0];

	if (i < 0) {
		cli_error("%s: no region named '%s' (see 'bgsnap info %s')",
			  j->o->file, j->o->region, j->o->file);
		return EXIT_USAGE;
	}
	j->nt = 1;
	t->region = (size_t)i;
	t->r.size = sizeof(t->r);
	t->r.size = sizeof(t->r);
	bgsnap_file_region(j->f, t->region, &t->r);
	if (t->r.kind == BGSNAP_KIND_UNSAVED) {
		cli_error("%s: region '%s' was not saved (recorded by name "
			  "only): nothing to export",
			  j->o->file, t->r.name);
		return EXIT_FAILED;
	}
	if (!strcmp(j->o->output, "-")) {
		snprintf(t->shown, sizeof(t->shown), "stdout");
		return EXIT_OK;
	}
	if (split_output(j, t, j->o->output) || check_target(j, t))
		return EXIT_FAILED;
	return EXIT_OK;
}

static int plan_all(struct job *j, size_t n)
{
	if (open_out_dir(j, j->o->output))
		return EXIT_FAILED;
	j->nt = n;
	for (size_t k = 0; k < n; k++) {
		struct target *t = &j->t[k];

		t->region = k;
		t->r.size = sizeof(t->r);
		t->r.size = sizeof(t->r);
		bgsnap_file_region(j->f, k, &t->r);
		t->skipped = t->r.kind == BGSNAP_KIND_UNSAVED;
		derive_name(j, k, t->name);
		snprintf(t->shown, sizeof(t->shown), "%s/%s", j->o->output,
			 t->name);
	}
	/* Refuse before writing anything, rather than half-way through. */
	for (size_t k = 0; k < n; k++)
		if (!j->t[k].skipped && check_target(j, &j->t[k]))
			return EXIT_FAILED;
	return EXIT_OK;
}

/* ---- reporting ----------------------------------------------------------- */

static void print_text(const struct job *j)
{
	char a[CLI_FMT_LEN], b[CLI_FMT_LEN];

	for (size_t k = 0; k < j->nt; k++) {
		const struct target *t = &j->t[k];

		if (t->skipped) {
			printf("region '%s': not saved, skipped\n", t->r.name);
			continue;
		}
		printf("region '%s' -> %s: %s, %s of data written\n", t->r.name,
		       t->shown, cli_fmt_size(a, t->r.len),
		       cli_fmt_size(b, t->bytes_written));
	}
}

static int print_json(const struct job *j)
{
	struct cli_json js;

	cli_json_init(&js, stdout);
	cli_json_object_begin(&js);
	cli_json_kstr(&js, "file", j->o->file);
	cli_json_key(&js, "regions");
	cli_json_array_begin(&js);
	for (size_t k = 0; k < j->nt; k++) {
		const struct target *t = &j->t[k];

		cli_json_object_begin(&js);
		cli_json_kstr(&js, "name", t->r.name);
		cli_json_kstr(&js, "output", t->skipped ? NULL : t->shown);
		cli_json_kuint(&js, "length", t->r.len);
		cli_json_kuint(&js, "bytes_written", t->bytes_written);
		cli_json_kbool(&js, "skipped", t->skipped);
		cli_json_object_end(&js);
	}
	cli_json_array_end(&js);
	cli_json_object_end(&js);
	return cli_json_end(&js);
}

/* ---- the command --------------------------------------------------------- */

static int run_exports(struct job *j)
{
	uint64_t total = 0;
	int ret = 0;

	for (size_t k = 0; k < j->nt; k++)
		total += j->t[k].skipped ? 0 : j->t[k].r.len;
	cli_progress_start(&j->bar, "export", total, j->o->quiet);
	for (size_t k = 0; k < j->nt && !ret; k++) {
		if (j->t[k].skipped)
			continue;
		if (!strcmp(j->o->output, "-"))
			ret = copy_region(j, &j->t[k], STDOUT_FILENO, true);
		else
			ret = export_file(j, &j->t[k]);
	}
	if (!ret && j->dirfd >= 0 && fsync(j->dirfd)) /* the renames */
		ret = -errno;
	cli_progress_end(&j->bar);
	return ret;
}

/* The snapshot is damaged (as opposed to a failure on the output side). */
static bool is_damage(int err)
{
	return err <= BGSNAP_EBADMAGIC && err >= BGSNAP_ECORRUPT;
}

/* Every ancestor of an incremental snapshot, found (and opened) before
 * anything is written: 0, or an exit code after a message. */
static int find_chain(struct job *j)
{
	struct bgsnap_file *f = j->f, *p;
	struct bgsnap_file_info in = { .size = sizeof(in) };
	int ret = 0;

	for (size_t i = 0; i < j->o->nparents && !ret; i++)
		ret = bgsnap_file_add_parent(f, j->o->parents[i]);
	for (bgsnap_file_info(f, &in); !ret && in.incremental;
	     bgsnap_file_info(f, &in)) {
		ret = bgsnap_file_parent(f, &p);
		if (ret)
			break;
		f = p;
	}
	if (!ret)
		return EXIT_OK;
	/* The message is about f (FILE, or the ancestor named first). */
	cli_error("%s: %s%s%s%s", j->o->file,
		  f == j->f ? "" : bgsnap_file_path(f), f == j->f ? "" : ": ",
		  bgsnap_file_last_error(f),
		  ret == BGSNAP_EPARENT ? " (give the parent with --parent)"
					: "");
	return is_damage(ret) ? EXIT_BADFILE : EXIT_FAILED;
}

/* --core: the whole chain is found already. */
static int export_core(struct job *j)
{
	struct bgsnap_core_info in = { .size = sizeof(in) };
	struct cli_json js;
	const int code = cli_core_write(j->f, j->o->output, j->o->filter,
					j->o->force, j->o->quiet, &in);

	if (code)
		return code;
	if (j->o->json) {
		cli_json_init(&js, stdout);
		cli_json_object_begin(&js);
		cli_json_kstr(&js, "file", j->o->file);
		cli_json_kstr(&js, "output", j->o->output);
		cli_json_core_info(&js, &in);
		cli_json_object_end(&js);
		return cli_json_end(&js) ? EXIT_FAILED : EXIT_OK;
	}
	if (!j->o->quiet)
		printf("core -> %s: %zu threads, %zu segments, %" PRIu64
		       " bytes\n",
		       j->o->output, in.threads, in.segments, in.file_size);
	return EXIT_OK;
}

static int export(struct job *j)
{
	struct bgsnap_file_info in = { .size = sizeof(in) };
	int code, ret;

	bgsnap_file_info(j->f, &in);
	j->t = calloc(in.regions ? in.regions : 1, sizeof(*j->t));
	j->buf = malloc(CHUNK);
	if (!j->t || !j->buf) {
		cli_error("out of memory");
		return EXIT_FAILED;
	}
	code = find_chain(j);
	if (!code && j->o->core)
		return export_core(j);
	if (!code)
		code = j->o->all ? plan_all(j, in.regions) : plan_one(j);
	if (code)
		return code;
	ret = run_exports(j);
	if (ret)
		return is_damage(ret) ? EXIT_BADFILE : EXIT_FAILED;
	if (j->o->json)
		return print_json(j) ? EXIT_FAILED : EXIT_OK;
	if (!j->o->quiet && strcmp(j->o->output, "-"))
		print_text(j);
	return EXIT_OK;
}

static int check_opts(const struct opts *o)
{
	const bool to_stdout = o->output && !strcmp(o->output, "-");

	if (!o->all + !o->region + !o->core != 2)
		cli_error("export: give one of --region NAME, --all and --core "
			  "(see 'bgsnap export --help')");
	else if (o->filter >= 0 && !o->core)
		cli_error("export: --filter goes with --core");
	else if (!o->output)
		cli_error("export: -o OUT is needed (see 'bgsnap export "
			  "--help')");
	else if (to_stdout && (o->all || o->core || o->json))
		cli_error("export: '-o -' writes one region's bytes to stdout: "
			  "not with --all, --core or --json");
	else if (to_stdout && isatty(STDOUT_FILENO))
		cli_error("export: stdout is a terminal: refusing to write "
			  "raw memory there");
	else
		return 0;
	return -1;
}

static bool take_option(struct cli_getopt *g, int c, void *ctx)
{
	struct opts *o = ctx;

	return c == 'F' && cli_arg_filter(g, optarg, &o->filter);
}

/* -1, or an exit code: EXIT_OK after --help, EXIT_USAGE after an error. */
static int parse(int argc, char **argv, struct opts *o)
{
	const struct cli_opt opts[] = {
		{ 'r', .str = &o->region },
		{ 'a', .flag = &o->all },
		{ 'c', .flag = &o->core },
		{ 'o', .str = &o->output },
		{ 'P', .list = o->parents, .count = &o->nparents,
		  .cap = MAX_PARENTS, .name = "--parent" },
		{ 'f', .flag = &o->force },
		{ 'q', .flag = &o->quiet },
		{ 'j', .flag = &o->json },
		{ 0 },
	};
	struct cli_getopt g = { .cmd = "export",
				.usage = export_usage,
				.shortopts = "r:aco:P:fq",
				.longopts = export_options,
				.opts = opts,
				.take = take_option,
				.ctx = o };
	const int code = cli_parse(&g, argc, argv, 1, 1, "FILE");

	if (code >= 0)
		return code;
	if (check_opts(o))
		return EXIT_USAGE;
	o->file = argv[optind];
	return -1;
}

int cmd_export(int argc, char **argv)
{
	char err[BGSNAP_FILE_ERROR_MAX];
	struct opts o = { .filter = -1 };
	struct job j = { .o = &o, .dirfd = -1 };
	int ret = parse(argc, argv, &o);
	int code;

	if (ret >= 0)
		return ret;
	ret = bgsnap_file_open(&j.f, o.file, err, sizeof(err));
	if (ret) {
		cli_error("%s: %s", o.file, err);
		return cli_file_exit(ret);
	}
	cli_catch_signals();
	code = export(&j);
	if (j.dirfd >= 0)
		close(j.dirfd);
	free(j.buf);
	free(j.t);
	bgsnap_file_close(j.f);
	return code;
}
