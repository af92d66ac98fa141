/* SPDX-License-Identifier: MIT */
/*
 * Snapshot files, read from the public API: a thin layer over ramstore's
 * random-access reader. Open validates header, footer, region table and
 * index (ramstore does); this file adds the per-region figures (summed
 * from the index once, at open), page runs for sparse export, and reads of
 * any byte range, decoded straight into the caller's buffer when a whole
 * record fits. No threads.
 */
#include "bgsnap.h"
#include "ramstore.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAGE		4096u
#define STATS_NAME	"bgsnap.stats"

_Static_assert(sizeof(((struct rs_diag *)0)->msg) <= BGSNAP_FILE_ERROR_MAX,
	       "a store's message fits the public buffer");
_Static_assert((int)RS_KIND_FILE_PRIVATE == (int)BGSNAP_KIND_FILE_PRIVATE &&
		       (int)RS_KIND_UNSAVED == (int)BGSNAP_KIND_UNSAVED,
	       "stored kinds are the public ones: bgsnap_kind_name() knows "
	       "them all");

struct bgsnap_file {
	int fd;
	struct rs_reader *r;
	struct rs_decoder *dec;	/* for decoding straight into a buffer */
	struct bgsnap_file_info info;
	struct bgsnap_file_region *regions; /* figures summed at open */
	char *stats;		/* bgsnap.stats, loaded on first ask */
	struct rs_diag diag;	/* the last error */
};

/* Record a failure that ramstore did not describe; returns @code. */
static int fail(struct bgsnap_file *f, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct bgsnap_file *f, int code, const char *fmt, ...)
{
	va_list ap;

	f->diag.code = code;
	f->diag.offset = 0;
	va_start(ap, fmt);
	vsnprintf(f->diag.msg, sizeof(f->diag.msg), fmt, ap);
	va_end(ap);
	return code;
}

/* ---- open ---------------------------------------------------------------- */

/* Open @path as a regular file; a FIFO must not block the open. */
static int open_regular(struct bgsnap_file *f, const char *path)
{
	struct stat st;

	f->fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (f->fd < 0)
		return fail(f, -errno, "cannot open: %s", strerror(errno));
	if (fstat(f->fd, &st))
		return fail(f, -errno, "fstat: %s", strerror(errno));
	if (S_ISDIR(st.st_mode))
		return fail(f, -EISDIR, "is a directory, not a snapshot");
	if (!S_ISREG(st.st_mode))
		return fail(f, -ESPIPE,
			    "not a regular file (a pipe or a device)");
	if (!st.st_size)
		return fail(f, BGSNAP_ETRUNCATED,
			    "the file is empty: not a snapshot");
	if (fcntl(f->fd, F_SETFL, 0))
		return fail(f, -errno, "fcntl: %s", strerror(errno));
	return 0;
}

static void count_extent(struct bgsnap_file_region *g,
			 const struct rs_extent *e)
{
	g->records++;
	switch (e->encoding) {
	case RS_ENC_ZERO:
		g->pages_zero += e->npages;
		break;
	case RS_ENC_PARENT:
		g->pages_parent += e->npages;
		break;
	default:
		g->pages_data += e->npages;
		g->data_bytes += e->stored_len;
	}
}

static void describe_region(struct bgsnap_file_region *g,
			    const struct rs_region *rg)
{
	g->name = rg->name;
	g->addr = rg->base;
	g->len = rg->length;
	g->page_size = rg->page_size;
	g->kind = rg->kind;
	g->prot = rg->prot;
	g->pages = rg->kind == RS_KIND_UNSAVED ? 0 : rg->length / PAGE;
}

static double ratio(uint64_t pages, uint64_t bytes)
{
	return bytes ? (double)pages * PAGE / (double)bytes : 0.0;
}

static void add_totals(struct bgsnap_file_info *in,
		       const struct bgsnap_file_region *g)
{
	in->pages += g->pages;
	in->pages_data += g->pages_data;
	in->pages_zero += g->pages_zero;
	in->pages_parent += g->pages_parent;
	in->data_bytes += g->data_bytes;
}

/* The per-region figures and their totals, from the index. */
static int sum_regions(struct bgsnap_file *f)
{
	const size_t n = bgs_rs_region_count(f->r);
	struct bgsnap_file_info *in = &f->info;

	f->regions = calloc(n ? n : 1, sizeof(*f->regions));
	if (!f->regions)
		return fail(f, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++)
		describe_region(&f->regions[i], bgs_rs_region(f->r, i));
	for (size_t i = 0; i < bgs_rs_extent_count(f->r); i++) {
		const struct rs_extent *e = bgs_rs_extent(f->r, i);

		count_extent(&f->regions[e->region], e);
	}
	for (size_t i = 0; i < n; i++)
		add_totals(in, &f->regions[i]);
	in->regions = n;
	in->compression_ratio = ratio(in->pages_data, in->data_bytes);
	return 0;
}

static void describe_file(struct bgsnap_file *f)
{
	const struct rs_info *ri = bgs_rs_info(f->r);
	struct bgsnap_file_info *in = &f->info;

	in->version_major = ri->version_major;
	in->version_minor = ri->version_minor;
	memcpy(in->snapshot_id, ri->snapshot_id, sizeof(in->snapshot_id));
	memcpy(in->parent_id, ri->parent_id, sizeof(in->parent_id));
	for (size_t i = 0; i < sizeof(in->parent_id); i++)
		in->incremental |= in->parent_id[i] != 0;
	in->created_ns = ri->created_ns;
	memcpy(in->host, ri->host, sizeof(in->host));
	memcpy(in->kernel, ri->kernel, sizeof(in->kernel));
	in->file_size = ri->file_size;
	in->records = bgs_rs_extent_count(f->r);
	in->attachments = bgs_rs_attachment_count(f->r);
}

static int open_file(struct bgsnap_file *f, const char *path)
{
	int ret = open_regular(f, path);

	if (!ret)
		ret = bgs_rs_open(&f->r, f->fd, &f->diag);
	if (!ret && bgs_rs_decoder_new(&f->dec))
		ret = fail(f, -ENOMEM, "out of memory");
	if (ret)
		return ret;
	describe_file(f);
	return sum_regions(f);
}

BGSNAP_API int bgsnap_file_open(struct bgsnap_file **out, const char *path,
				char *err, size_t errlen)
{
	struct bgsnap_file *f = calloc(1, sizeof(*f));
	int ret;

	*out = NULL;
	if (!f) {
		if (err && errlen)
			snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	f->fd = -1;
	ret = open_file(f, path);
	if (ret) {
		if (err && errlen)
			snprintf(err, errlen, "%s", f->diag.msg);
		bgsnap_file_close(f);
		return ret;
	}
	*out = f;
	return 0;
}

BGSNAP_API void bgsnap_file_close(struct bgsnap_file *f)
{
	if (!f)
		return;
	bgs_rs_decoder_free(f->dec);
	bgs_rs_close(f->r);
	if (f->fd >= 0)
		close(f->fd);
	free(f->regions);
	free(f->stats);
	free(f);
}

BGSNAP_API const char *bgsnap_file_last_error(const struct bgsnap_file *f)
{
	return f->diag.msg;
}

/* ---- what it holds ------------------------------------------------------- */

BGSNAP_API int bgsnap_file_info(const struct bgsnap_file *f,
				struct bgsnap_file_info *info)
{
	*info = f->info;
	return 0;
}

BGSNAP_API int bgsnap_file_region(const struct bgsnap_file *f, size_t i,
				  struct bgsnap_file_region *r)
{
	if (i >= f->info.regions)
		return -ERANGE;
	*r = f->regions[i];
	return 0;
}

BGSNAP_API int bgsnap_file_find_region(const struct bgsnap_file *f,
				       const char *name)
{
	for (size_t i = 0; i < f->info.regions; i++)
		if (!strcmp(f->regions[i].name, name))
			return (int)i;
	return -ENOENT;
}

BGSNAP_API const char *bgsnap_kind_name(int kind)
{
	static const char *const names[] = {
		[RS_KIND_ANON] = "anon",
		[RS_KIND_ANON_THP] = "anon_thp",
		[RS_KIND_SHMEM] = "shmem",
		[RS_KIND_HUGETLB] = "hugetlb",
		[RS_KIND_FILE_PRIVATE] = "file_private",
		[RS_KIND_UNSAVED] = "unsaved",
	};

	if (kind == 0)
		return "auto";
	if (kind < 0 || kind >= (int)(sizeof(names) / sizeof(names[0])))
		return "unknown";
	return names[kind];
}

/* ---- attachments --------------------------------------------------------- */

BGSNAP_API int bgsnap_file_attachment(const struct bgsnap_file *f, size_t i,
				      const char **name, size_t *len)
{
	if (i >= f->info.attachments)
		return -ERANGE;
	return bgs_rs_attachment_info(f->r, i, name, len);
}

BGSNAP_API int bgsnap_file_find_attachment(const struct bgsnap_file *f,
					   const char *name)
{
	for (size_t i = 0; i < f->info.attachments; i++) {
		const char *n;
		size_t len;

		if (!bgs_rs_attachment_info(f->r, i, &n, &len) &&
		    !strcmp(n, name))
			return (int)i;
	}
	return -ENOENT;
}

BGSNAP_API int bgsnap_file_attachment_read(struct bgsnap_file *f, size_t i,
					   void *buf, size_t len)
{
	const char *name;
	size_t size;

	if (bgsnap_file_attachment(f, i, &name, &size))
		return fail(f, -ERANGE, "no attachment %zu", i);
	if (len < size)
		return fail(f, -ENOBUFS,
			    "attachment '%s' is %zu bytes, the buffer %zu",
			    name, size, len);
	return bgs_rs_attachment_read(f->r, i, buf, &f->diag);
}

static int load_stats(struct bgsnap_file *f, size_t i, size_t len)
{
	char *text = malloc(len + 1);
	int ret;

	if (!text)
		return fail(f, -ENOMEM, "out of memory");
	ret = bgsnap_file_attachment_read(f, i, text, len);
	if (!ret && memchr(text, '\0', len))
		ret = fail(f, BGSNAP_ECORRUPT,
			   "attachment '" STATS_NAME "': not text");
	if (ret) {
		free(text);
		return ret;
	}
	text[len] = '\0';
	f->stats = text;
	return 0;
}

BGSNAP_API int bgsnap_file_stats_json(struct bgsnap_file *f,
				      const char **json)
{
	const int i = bgsnap_file_find_attachment(f, STATS_NAME);
	const char *name;
	size_t len;
	int ret;

	*json = NULL;
	if (i < 0)
		return fail(f, -ENOENT, "no statistics: saved without "
			    "attachment '" STATS_NAME "'");
	if (!f->stats) {
		bgs_rs_attachment_info(f->r, (size_t)i, &name, &len);
		ret = load_stats(f, (size_t)i, len);
		if (ret)
			return ret;
	}
	*json = f->stats;
	return 0;
}

/* ---- verify -------------------------------------------------------------- */

BGSNAP_API int bgsnap_file_verify(struct bgsnap_file *f,
				  void (*progress)(void *arg, uint64_t done,
						   uint64_t total),
				  void *arg)
{
	return bgs_rs_verify(f->r, &f->diag, progress, arg);
}

/* ---- page runs and reads ------------------------------------------------- */

static int page_class(uint8_t encoding)
{
	switch (encoding) {
	case RS_ENC_ZERO:
		return BGSNAP_PAGES_ZERO;
	case RS_ENC_PARENT:
		return BGSNAP_PAGES_PARENT;
	default:
		return BGSNAP_PAGES_DATA;
	}
}

/* The extent holding byte @offset of saved region @region, with the
 * error for a region whose index does not cover it (open forbids that). */
static ssize_t find_extent(struct bgsnap_file *f, size_t region,
			   uint64_t offset)
{
	const ssize_t i = bgs_rs_find(f->r, (uint32_t)region, offset / PAGE);

	if (i < 0)
		fail(f, BGSNAP_EMISSING, "region '%s': no record holds byte "
		     "%llu", f->regions[region].name,
		     (unsigned long long)offset);
	return i;
}

static int check_range(struct bgsnap_file *f, size_t region,
		       uint64_t offset, uint64_t len)
{
	if (region >= f->info.regions)
		return fail(f, -ERANGE, "no region %zu", region);
	if (offset > f->regions[region].len ||
	    len > f->regions[region].len - offset)
		return fail(f, -ERANGE, "region '%s': bytes %llu..+%llu are "
			    "outside its %llu bytes", f->regions[region].name,
			    (unsigned long long)offset, (unsigned long long)len,
			    (unsigned long long)f->regions[region].len);
	return 0;
}

BGSNAP_API int bgsnap_file_map(struct bgsnap_file *f, size_t region,
			       uint64_t offset, uint64_t *len)
{
	const struct rs_extent *e;
	ssize_t i;
	int class;

	if (check_range(f, region, offset, 1))
		return -ERANGE;
	if (f->regions[region].kind == RS_KIND_UNSAVED) {
		*len = f->regions[region].len - offset;
		return BGSNAP_PAGES_NONE;
	}
	i = find_extent(f, region, offset);
	if (i < 0)
		return BGSNAP_EMISSING;
	e = bgs_rs_extent(f->r, (size_t)i);
	class = page_class(e->encoding);
	/* Coverage is exact, so the next extents of the region follow on. */
	while ((e = bgs_rs_extent(f->r, (size_t)i + 1)) &&
	       e->region == region && page_class(e->encoding) == class)
		i++;
	e = bgs_rs_extent(f->r, (size_t)i);
	*len = (e->first + e->npages) * PAGE - offset;
	return class;
}

/* Bytes [@off, @off + @n) of extent @i into @dst: decoded in place when
 * the whole record is wanted, else through the reader's cache. */
static int read_extent(struct bgsnap_file *f, size_t i, uint64_t off,
		       void *dst, size_t n)
{
	const struct rs_extent *e = bgs_rs_extent(f->r, i);
	const void *data;
	int ret;

	switch (e->encoding) {
	case RS_ENC_ZERO:
		memset(dst, 0, n);
		return 0;
	case RS_ENC_PARENT:
		return fail(f, BGSNAP_EPARENT, "region '%s', pages "
			    "%llu..%llu: stored in the parent snapshot",
			    f->regions[e->region].name,
			    (unsigned long long)e->first,
			    (unsigned long long)(e->first + e->npages - 1));
	}
	if (!off && n == e->npages * PAGE) {
		ret = bgs_rs_decode_to(f->r, f->dec, i, dst, &f->diag);
		return ret < 0 ? ret : 0;
	}
	ret = bgs_rs_decode(f->r, i, &data, &f->diag);
	if (ret < 0)
		return ret;
	memcpy(dst, (const uint8_t *)data + off, n);
	return 0;
}

BGSNAP_API int bgsnap_file_read(struct bgsnap_file *f, size_t region,
				uint64_t offset, void *buf, size_t len)
{
	uint8_t *dst = buf;
	int ret = check_range(f, region, offset, len);

	if (!ret && f->regions[region].kind == RS_KIND_UNSAVED)
		ret = fail(f, -ENODATA, "region '%s' was not saved (recorded "
			   "by name only)", f->regions[region].name);
	while (!ret && len) {
		const ssize_t i = find_extent(f, region, offset);
		const struct rs_extent *e;
		uint64_t off;
		size_t n;

		if (i < 0)
			return BGSNAP_EMISSING;
		e = bgs_rs_extent(f->r, (size_t)i);
		off = offset - e->first * PAGE;
		n = e->npages * PAGE - off < len ? e->npages * PAGE - off : len;
		ret = read_extent(f, (size_t)i, off, dst, n);
		dst += n;
		offset += n;
		len -= n;
	}
	return ret;
}
