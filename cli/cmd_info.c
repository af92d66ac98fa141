/* SPDX-License-Identifier: MIT */
/* bgsnap info: what a snapshot file holds, and how its save went. */
#include "cli.h"

#include <bgsnap.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static const char info_usage[] =
	"usage: bgsnap info FILE [--json] [--chain] [--parent P]...\n"
	"\n"
	"Describe the snapshot FILE: format, id, parent (incremental: its id\n"
	"and the file found for it), when and where it was saved, its regions\n"
	"(address, length, page size, memory kind, protection, pages stored "
	"as\n"
	"data, zero or parent, bytes stored, compression), its attachments,\n"
	"and the statistics of the save. The file's structure (header, region\n"
	"table, index) is checked; use 'bgsnap verify' to check every page.\n"
	"\n"
	"A parent is looked for among the files given with --parent (matched\n"
	"by snapshot id), else beside its child under the name the child\n"
	"records for it. A parent not found, or damaged, is shown as such: "
	"FILE\n"
	"is still described.\n"
	"\n"
	"  -c, --chain     the whole chain too: FILE, its parent, and so on up "
	"to\n"
	"                  a full snapshot, one line each (with --json: the "
	"keys\n"
	"                  parent_file, parent_error and chain)\n"
	"  -P, --parent P  a file of the chain, in any order (repeatable)\n"
	"      --json      one JSON object on stdout (keys in bgsnap(1))\n"
	"  -h, --help      this text\n"
	"\n"
	"Exit status: 0 success (without --chain, also when a parent cannot\n"
	"be had), 2 usage, 3 the file is missing, damaged or not a snapshot.\n"
	"With --chain, a chain that breaks off is listed up to the ancestor\n"
	"that cannot be had, with why, and the exit status says that it is\n"
	"incomplete: 1 the ancestor was not found, 3 it is damaged or not a\n"
	"snapshot.\n";

#define MAX_PARENTS 64

static const struct option info_options[] = {
	{ "json", no_argument, NULL, 'j' },
	{ "chain", no_argument, NULL, 'c' },
	{ "parent", required_argument, NULL, 'P' },
	CLI_OPT_HELP_ENTRY,
	{ 0 },
};

struct info_opts {
	const char *path;
	const char *parents[MAX_PARENTS];
	size_t nparents;
	bool json, chain;
};

/* ---- the save's statistics: a flat JSON object --------------------------- */

#define STATS_MAX 64

struct stat_value {
	char key[64];
	enum { SV_UINT, SV_NUMBER, SV_BOOL, SV_STRING, SV_NULL } type;
	uint64_t u;
	double d;
	char s[128];
};

struct stats {
	size_t n;
	struct stat_value v[STATS_MAX];
};

static const char *skip_ws(const char *p)
{
	return p + strspn(p, " \t\r\n");
}

/* A string without escapes (bgsnap writes none) into @out. */
static const char *parse_string(const char *p, char *out, size_t len)
{
	const char *end;

	if (*p != '"')
		return NULL;
	end = strpbrk(p + 1, "\"\\");
	if (!end || *end != '"' || (size_t)(end - p - 1) >= len)
		return NULL;
	memcpy(out, p + 1, (size_t)(end - p - 1));
	out[end - p - 1] = '\0';
	for (const char *c = out; *c; c++)
		if ((unsigned char)*c < 0x20)
			return NULL;
	return end + 1;
}

/* A JSON number: whole and non-negative ones are kept exact. */
static const char *parse_number(const char *p, struct stat_value *v)
{
	const size_t n = strspn(p, "0123456789+-.eE");
	char tok[64], *end;

	if (!n || n >= sizeof(tok))
		return NULL;
	memcpy(tok, p, n);
	tok[n] = '\0';
	errno = 0;
	if (strspn(tok, "0123456789") == n) {
		v->type = SV_UINT;
		v->u = strtoull(tok, &end, 10);
	} else {
		v->type = SV_NUMBER;
		v->d = strtod(tok, &end);
	}
	return *end || errno ? NULL : p + n;
}

static const char *parse_value(const char *p, struct stat_value *v)
{
	static const struct {
		const char *word;
		int type;
		bool b;
	} words[] = { { "true", SV_BOOL, true },
		      { "false", SV_BOOL, false },
		      { "null", SV_NULL, false } };

	if (*p == '"') {
		v->type = SV_STRING;
		return parse_string(p, v->s, sizeof(v->s));
	}
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (!strncmp(p, words[i].word, strlen(words[i].word))) {
			v->type = words[i].type;
			v->u = words[i].b;
			return p + strlen(words[i].word);
		}
	return parse_number(p, v);
}

static const struct stat_value *stat_get(const struct stats *st,
					 const char *key)
{
	for (size_t i = 0; i < st->n; i++)
		if (!strcmp(st->v[i].key, key))
			return &st->v[i];
	return NULL;
}

/* 0, or -1 if @text is not a flat object of at most STATS_MAX members
 * (it comes from the file: the checksum does not make it well-formed). */
static int parse_stats(const char *text, struct stats *st)
{
	const char *p = skip_ws(text);

	st->n = 0;
	if (*p++ != '{')
		return -1;
	p = skip_ws(p);
	while (*p != '}') {
		struct stat_value *v = &st->v[st->n];

		if (st->n == STATS_MAX || (st->n && *p++ != ','))
			return -1;
		p = parse_string(skip_ws(p), v->key, sizeof(v->key));
		if (!p || *(p = skip_ws(p)) != ':' || stat_get(st, v->key))
			return -1;
		p = parse_value(skip_ws(p + 1), v);
		if (!p)
			return -1;
		p = skip_ws(p);
		st->n++;
	}
	return *skip_ws(p + 1) ? -1 : 0;
}

static uint64_t stat_u(const struct stats *st, const char *key)
{
	const struct stat_value *v = stat_get(st, key);

	return v && (v->type == SV_UINT || v->type == SV_BOOL) ? v->u : 0;
}

/*
 * The statistics, parsed: 1 when there are some, 0 when the file has
 * none, or the exit code after a message when they cannot be read.
 */
static int load_stats(struct bgsnap_file *f, const char *path, struct stats *st)
{
	const char *json;
	const int ret = bgsnap_file_stats_json(f, &json);

	if (ret == -ENOENT)
		return 0;
	if (ret) {
		cli_error("%s: %s", path, bgsnap_file_last_error(f));
		return -cli_file_exit(ret);
	}
	if (parse_stats(json, st)) {
		cli_error("%s: attachment 'bgsnap.stats' is not a flat JSON "
			  "object",
			  path);
		return -EXIT_BADFILE;
	}
	return 1;
}

/* ---- shared formatting --------------------------------------------------- */

static void hex_id(char out[33], const uint8_t id[16])
{
	for (int i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", id[i]);
}

static void prot_string(char out[4], int prot)
{
	out[0] = prot & PROT_READ ? 'r' : '-';
	out[1] = prot & PROT_WRITE ? 'w' : '-';
	out[2] = prot & PROT_EXEC ? 'x' : '-';
	out[3] = '\0';
}

/* @ns since the epoch as local time ("2025-06-01 14:02:03 +0200") or, for
 * JSON, UTC in ISO 8601 ("2025-06-01T12:02:03Z"). */
static void fmt_time(char *out, size_t len, uint64_t ns, bool utc)
{
	const time_t t = (time_t)(ns / 1000000000ull);
	struct tm tm;

	if (!(utc ? gmtime_r(&t, &tm) : localtime_r(&t, &tm)) ||
	    !strftime(out, len,
		      utc ? "%Y-%m-%dT%H:%M:%SZ" : "%Y-%m-%d %H:%M:%S %z", &tm))
		snprintf(out, len, "?");
}

/* ---- the chain ----------------------------------------------------------- */

/*
 * The parent of @f as far as it can be found: 1 and *@p when found; 0
 * (*@p NULL) when @f is a full snapshot; when it cannot be had, the
 * error (BGSNAP_EPARENT: not found; BGSNAP_E* damage ...; *@p NULL), the
 * reason in bgsnap_file_last_error(@f).
 */
static int parent_of(struct bgsnap_file *f, struct bgsnap_file **p)
{
	struct bgsnap_file_info in = { .size = sizeof(in) };
	int ret;

	*p = NULL;
	bgsnap_file_info(f, &in);
	if (!in.incremental)
		return 0;
	ret = bgsnap_file_parent(f, p);
	return ret ? ret : 1;
}

/* ---- text ---------------------------------------------------------------- */

/* A page size as "4K", "2M" or "1G", short because the column is
 * narrow. */
static void page_size_short(char *out, uint64_t ps)
{
	static const char units[] = "KMG";
	unsigned u = 0;

	ps >>= 10;
	while (u < 2 && ps >= 1024 && !(ps % 1024)) {
		ps >>= 10;
		u++;
	}
	snprintf(out, CLI_FMT_LEN, "%llu%c", (unsigned long long)ps, units[u]);
}

/* An ancestor that cannot be had (@err from parent_of()), in a word. */
static const char *why_not(int err)
{
	return err == BGSNAP_EPARENT ? "not found" : "unreadable";
}

static void text_parent(struct bgsnap_file *f,
			const struct bgsnap_file_info *in)
{
	struct bgsnap_file *p;
	char id[33];
	int found;

	hex_id(id, in->parent_id);
	if (!in->incremental)
		printf("parent      none (a full snapshot)\n");
	else if ((found = parent_of(f, &p)) > 0)
		printf("parent      %s (incremental), file %s\n", id,
		       bgsnap_file_path(p));
	else
		printf("parent      %s (incremental), file %s: %s\n", id,
		       why_not(found), bgsnap_file_last_error(f));
}

static void text_header(struct bgsnap_file *f, const char *path,
			const struct bgsnap_file_info *in)
{
	char id[33], t[64], a[CLI_FMT_LEN], b[CLI_FMT_LEN];

	hex_id(id, in->snapshot_id);
	printf("file        %s (%s)\n", path, cli_fmt_size(a, in->file_size));
	printf("snapshot    %s, format %u.%u\n", id, in->version_major,
	       in->version_minor);
	text_parent(f, in);
	fmt_time(t, sizeof(t), in->created_ns, false);
	printf("created     %s on %s, kernel %s\n", t, in->host, in->kernel);
	printf("pages       %llu (%s): %llu data, %llu zero, %llu parent\n",
	       (unsigned long long)in->pages, cli_fmt_size(a, in->pages * 4096),
	       (unsigned long long)in->pages_data,
	       (unsigned long long)in->pages_zero,
	       (unsigned long long)in->pages_parent);
	printf("stored      %s for %s of data pages (%.2fx), %llu records\n",
	       cli_fmt_size(a, in->data_bytes),
	       cli_fmt_size(b, in->pages_data * 4096), in->compression_ratio,
	       (unsigned long long)in->records);
}

static int name_width(struct bgsnap_file *f, size_t n)
{
	int w = 4;

	for (size_t i = 0; i < n; i++) {
		struct bgsnap_file_region r = { .size = sizeof(r) };

		bgsnap_file_region(f, i, &r);
		if ((int)strlen(r.name) > w)
			w = (int)strlen(r.name);
	}
	return w > 40 ? 40 : w;
}

static void text_region(const struct bgsnap_file_region *r, int w, bool parent)
{
	char len[CLI_FMT_LEN], ps[CLI_FMT_LEN], st[CLI_FMT_LEN], prot[4];

	prot_string(prot, r->prot);
	page_size_short(ps, r->page_size);
	printf("  %-*s 0x%012llx %9s %4s %-12s %4s %7llu %7llu", w, r->name,
	       (unsigned long long)r->addr, cli_fmt_size(len, r->len), ps,
	       bgsnap_kind_name(r->kind), prot,
	       (unsigned long long)r->pages_data,
	       (unsigned long long)r->pages_zero);
	if (parent)
		printf(" %7llu", (unsigned long long)r->pages_parent);
	printf(" %9s %6.2fx\n", cli_fmt_size(st, r->data_bytes),
	       r->data_bytes
		       ? (double)r->pages_data * 4096 / (double)r->data_bytes
		       : 0.0);
}

static void text_regions(struct bgsnap_file *f,
			 const struct bgsnap_file_info *in)
{
	const int w = name_width(f, in->regions);

	printf("\nregions (%zu)\n  %-*s %-14s %9s %4s %-12s %4s %7s %7s%s "
	       "%9s %7s\n",
	       in->regions, w, "NAME", "ADDRESS", "LENGTH", "PAGE", "KIND",
	       "PROT", "DATA", "ZERO", in->incremental ? "  PARENT" : "",
	       "STORED", "RATIO");
	for (size_t i = 0; i < in->regions; i++) {
		struct bgsnap_file_region r = { .size = sizeof(r) };

		bgsnap_file_region(f, i, &r);
		text_region(&r, w, in->incremental);
	}
}

/* One line per file of the chain, FILE first, up to a full snapshot or
 * the first ancestor that cannot be had, which gets a line saying why:
 * 0 when the chain is whole, else why it is not (as parent_of()). */
static int text_chain(struct bgsnap_file *f)
{
	char id[33], sz[CLI_FMT_LEN];
	struct bgsnap_file_info in = { .size = sizeof(in) };
	struct bgsnap_file *p;
	size_t level = 0;
	int found;

	printf("\nchain\n  %-5s %-32s %8s %8s %8s %9s  %s\n", "LEVEL",
	       "SNAPSHOT", "DATA", "ZERO", "PARENT", "SIZE", "FILE");
	for (;; f = p, level++) {
		bgsnap_file_info(f, &in);
		hex_id(id, in.snapshot_id);
		printf("  %-5zu %-32s %8llu %8llu %8llu %9s  %s%s\n", level, id,
		       (unsigned long long)in.pages_data,
		       (unsigned long long)in.pages_zero,
		       (unsigned long long)in.pages_parent,
		       cli_fmt_size(sz, in.file_size), bgsnap_file_path(f),
		       in.incremental ? "" : " (full)");
		found = parent_of(f, &p);
		if (found <= 0)
			break;
	}
	if (!found)
		return 0;
	hex_id(id, in.parent_id);
	printf("  %-5zu %-32s %s: %s\n", level + 1, id, why_not(found),
	       bgsnap_file_last_error(f));
	return found;
}

static void text_attachments(struct bgsnap_file *f, size_t n)
{
	printf("\nattachments (%zu)\n", n);
	for (size_t i = 0; i < n; i++) {
		const char *name;
		size_t len;
		char sz[CLI_FMT_LEN];

		bgsnap_file_attachment(f, i, &name, &len);
		printf("  %-24s %s\n", name, cli_fmt_size(sz, len));
	}
}

static void text_stats(const struct stats *st)
{
	char a[CLI_FMT_LEN], b[CLI_FMT_LEN], c[CLI_FMT_LEN];

	printf("\nsave statistics\n");
	printf("  blackout      %s\n",
	       cli_fmt_duration(a, stat_u(st, "blackout_ns")));
	printf("  pages         %llu: %llu by scan, %llu by fault, %llu "
	       "never populated\n",
	       (unsigned long long)stat_u(st, "pages_total"),
	       (unsigned long long)stat_u(st, "pages_by_scan"),
	       (unsigned long long)stat_u(st, "pages_by_fault"),
	       (unsigned long long)stat_u(st, "pages_unpopulated"));
	printf("  faults        %llu\n",
	       (unsigned long long)stat_u(st, "faults"));
	if (stat_u(st, "faults"))
		printf("  writer stall  p50 %s, p99 %s, max %s\n",
		       cli_fmt_duration(a, stat_u(st, "stall_ns_p50")),
		       cli_fmt_duration(b, stat_u(st, "stall_ns_p99")),
		       cli_fmt_duration(c, stat_u(st, "stall_ns_max")));
	else
		printf("  writer stall  none (no writer faulted)\n");
	printf("  mode          %s\n",
	       stat_u(st, "stop_the_world")
		       ? "stop the world (owner paused for the whole copy)"
		       : "background (userfaultfd write protection)");
}

/* ---- JSON ---------------------------------------------------------------- */

/* parent_file (null: full, or not found) and parent_error (null unless
 * an incremental snapshot's parent cannot be had). */
static void json_parent(struct cli_json *j, struct bgsnap_file *f)
{
	struct bgsnap_file *p;
	const int found = parent_of(f, &p);

	cli_json_kstr(j, "parent_file", found > 0 ? bgsnap_file_path(p) : NULL);
	cli_json_kstr(j, "parent_error",
		      found < 0 ? bgsnap_file_last_error(f) : NULL);
}

static void json_header(struct cli_json *j, struct bgsnap_file *f,
			const struct info_opts *o,
			const struct bgsnap_file_info *in)
{
	const char *path = o->path;
	char id[33], t[64], v[16];

	cli_json_kstr(j, "file", path);
	snprintf(v, sizeof(v), "%u.%u", in->version_major, in->version_minor);
	cli_json_kstr(j, "format_version", v);
	hex_id(id, in->snapshot_id);
	cli_json_kstr(j, "snapshot_id", id);
	hex_id(id, in->parent_id);
	cli_json_kstr(j, "parent_id", in->incremental ? id : NULL);
	/* Only with --chain: without it the keys stay what they were
	 * before --chain existed. */
	if (o->chain)
		json_parent(j, f);
	cli_json_kbool(j, "incremental", in->incremental);
	fmt_time(t, sizeof(t), in->created_ns, true);
	cli_json_kstr(j, "created", t);
	cli_json_kuint(j, "created_ns", in->created_ns);
	cli_json_kstr(j, "host", in->host);
	cli_json_kstr(j, "kernel", in->kernel);
	cli_json_kuint(j, "file_size", in->file_size);
	cli_json_kuint(j, "records", in->records);
	cli_json_kuint(j, "pages", in->pages);
	cli_json_kuint(j, "pages_data", in->pages_data);
	cli_json_kuint(j, "pages_zero", in->pages_zero);
	cli_json_kuint(j, "pages_parent", in->pages_parent);
	cli_json_kuint(j, "data_bytes", in->data_bytes);
	cli_json_kdouble(j, "compression_ratio", in->compression_ratio);
}

static void json_region(struct cli_json *j, const struct bgsnap_file_region *r)
{
	char prot[4];

	prot_string(prot, r->prot);
	cli_json_object_begin(j);
	cli_json_kstr(j, "name", r->name);
	cli_json_kuint(j, "address", r->addr);
	cli_json_kuint(j, "length", r->len);
	cli_json_kuint(j, "page_size", r->page_size);
	cli_json_kstr(j, "kind", bgsnap_kind_name(r->kind));
	cli_json_kstr(j, "prot", prot);
	cli_json_kuint(j, "pages", r->pages);
	cli_json_kuint(j, "pages_data", r->pages_data);
	cli_json_kuint(j, "pages_zero", r->pages_zero);
	cli_json_kuint(j, "pages_parent", r->pages_parent);
	cli_json_kuint(j, "data_bytes", r->data_bytes);
	cli_json_kuint(j, "records", r->records);
	cli_json_kdouble(j, "compression_ratio",
			 r->data_bytes ? (double)r->pages_data * 4096 /
						 (double)r->data_bytes
				       : 0.0);
	cli_json_object_end(j);
}

static void json_lists(struct cli_json *j, struct bgsnap_file *f,
		       const struct bgsnap_file_info *in)
{
	cli_json_key(j, "regions");
	cli_json_array_begin(j);
	for (size_t i = 0; i < in->regions; i++) {
		struct bgsnap_file_region r = { .size = sizeof(r) };

		bgsnap_file_region(f, i, &r);
		json_region(j, &r);
	}
	cli_json_array_end(j);
	cli_json_key(j, "attachments");
	cli_json_array_begin(j);
	for (size_t i = 0; i < in->attachments; i++) {
		const char *name;
		size_t len;

		bgsnap_file_attachment(f, i, &name, &len);
		cli_json_object_begin(j);
		cli_json_kstr(j, "name", name);
		cli_json_kuint(j, "size", len);
		cli_json_object_end(j);
	}
	cli_json_array_end(j);
}

static void json_link(struct cli_json *j, struct bgsnap_file *f)
{
	struct bgsnap_file_info in = { .size = sizeof(in) };
	char id[33];

	bgsnap_file_info(f, &in);
	cli_json_object_begin(j);
	cli_json_kstr(j, "file", bgsnap_file_path(f));
	hex_id(id, in.snapshot_id);
	cli_json_kstr(j, "snapshot_id", id);
	hex_id(id, in.parent_id);
	cli_json_kstr(j, "parent_id", in.incremental ? id : NULL);
	cli_json_kuint(j, "file_size", in.file_size);
	cli_json_kuint(j, "pages_data", in.pages_data);
	cli_json_kuint(j, "pages_zero", in.pages_zero);
	cli_json_kuint(j, "pages_parent", in.pages_parent);
	cli_json_kuint(j, "data_bytes", in.data_bytes);
	cli_json_kstr(j, "error", NULL);
	cli_json_object_end(j);
}

/* "chain": FILE and its ancestors, up to a full snapshot, or ending with
 * the one that cannot be had ({file: null, snapshot_id, error}): 0 when
 * the chain is whole, else why it is not (as parent_of()). */
static int json_chain(struct cli_json *j, struct bgsnap_file *f)
{
	struct bgsnap_file_info in = { .size = sizeof(in) };
	struct bgsnap_file *p;
	int found;
	char id[33];

	cli_json_key(j, "chain");
	cli_json_array_begin(j);
	for (;; f = p) {
		json_link(j, f);
		found = parent_of(f, &p);
		if (found <= 0)
			break;
	}
	if (found < 0) {
		bgsnap_file_info(f, &in);
		hex_id(id, in.parent_id);
		cli_json_object_begin(j);
		cli_json_kstr(j, "file", NULL);
		cli_json_kstr(j, "snapshot_id", id);
		cli_json_kstr(j, "error", bgsnap_file_last_error(f));
		cli_json_object_end(j);
	}
	cli_json_array_end(j);
	return found < 0 ? found : 0;
}

/* The statistics as stored, re-encoded (so the output is valid JSON
 * whatever the file holds), or null. */
static void json_stats(struct cli_json *j, const struct stats *st)
{
	cli_json_key(j, "stats");
	if (!st) {
		cli_json_null(j);
		return;
	}
	cli_json_object_begin(j);
	for (size_t i = 0; i < st->n; i++) {
		const struct stat_value *v = &st->v[i];

		cli_json_key(j, v->key);
		if (v->type == SV_UINT)
			cli_json_uint(j, v->u);
		else if (v->type == SV_NUMBER)
			cli_json_double(j, v->d);
		else if (v->type == SV_BOOL)
			cli_json_bool(j, v->u);
		else if (v->type == SV_STRING)
			cli_json_str(j, v->s);
		else
			cli_json_null(j);
	}
	cli_json_object_end(j);
}

/* 0, or -EIO when stdout failed; *@chain_err the chain's problem, if
 * any (as parent_of()). */
static int print_json(struct bgsnap_file *f, const struct info_opts *o,
		      const struct bgsnap_file_info *in, const struct stats *st,
		      int *chain_err)
{
	struct cli_json j;

	cli_json_init(&j, stdout);
	cli_json_object_begin(&j);
	json_header(&j, f, o, in);
	json_lists(&j, f, in);
	json_stats(&j, st);
	if (o->chain)
		*chain_err = json_chain(&j, f);
	cli_json_object_end(&j);
	return cli_json_end(&j);
}

static int print_text(struct bgsnap_file *f, const struct info_opts *o,
		      const struct bgsnap_file_info *in, const struct stats *st,
		      int *chain_err)
{
	text_header(f, o->path, in);
	if (o->chain)
		*chain_err = text_chain(f);
	text_regions(f, in);
	text_attachments(f, in->attachments);
	if (st)
		text_stats(st);
	return fflush(stdout) || ferror(stdout) ? -EIO : 0;
}

static int show(const struct info_opts *o)
{
	const char *path = o->path;
	char err[BGSNAP_FILE_ERROR_MAX];
	struct bgsnap_file_info in = { .size = sizeof(in) };
	struct bgsnap_file *f;
	struct stats *st = calloc(1, sizeof(*st));
	int ret = st ? bgsnap_file_open(&f, path, err, sizeof(err)) : -ENOMEM;
	int have, code, chain_err = 0;

	if (ret) {
		cli_error("%s: %s", path, st ? err : strerror(ENOMEM));
		free(st);
		return cli_file_exit(ret);
	}
	bgsnap_file_info(f, &in);
	for (size_t i = 0; i < o->nparents && !ret; i++)
		ret = bgsnap_file_add_parent(f, o->parents[i]);
	if (ret)
		cli_error("%s: %s", path, bgsnap_file_last_error(f));
	have = ret ? -EXIT_FAILED : load_stats(f, path, st);
	code = have < 0 ? -have : EXIT_OK;
	ret = o->json ? print_json(f, o, &in, have > 0 ? st : NULL, &chain_err)
		      : print_text(f, o, &in, have > 0 ? st : NULL, &chain_err);
	if (ret) {
		cli_error("writing to stdout: %s", strerror(-ret));
		code = EXIT_FAILED;
	}
	/* --chain asked for the chain: one that breaks off is a failure
	 * (1: an ancestor not found; 3: one damaged), listed up to there. */
	if (chain_err && code == EXIT_OK)
		code = cli_file_exit(chain_err);
	bgsnap_file_close(f);
	free(st);
	return code;
}

int cmd_info(int argc, char **argv)
{
	struct info_opts o = { 0 };
	const struct cli_opt opts[] = {
		{ 'j', .flag = &o.json },
		{ 'c', .flag = &o.chain },
		{ 'P', .list = o.parents, .count = &o.nparents,
		  .cap = MAX_PARENTS, .name = "--parent" },
		{ 0 },
	};
	struct cli_getopt g = { .cmd = "info",
				.usage = info_usage,
				.shortopts = "cP:",
				.longopts = info_options,
				.opts = opts };
	const int code = cli_parse(&g, argc, argv, 1, 1, "FILE");

	if (code >= 0)
		return code;
	o.path = argv[optind];
	return show(&o);
}
