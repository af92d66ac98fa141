/* SPDX-License-Identifier: MIT */
/*
 * Snapshot files, read from the public API: a thin layer over ramstore's
 * random-access reader. Open validates header, footer, region table and
 * index (ramstore does); this file adds the per-region figures (summed
 * from the index once, at open), page runs for sparse export, and reads of
 * any byte range, decoded straight into the caller's buffer when a whole
 * record fits. No threads.
 *
 * Chains: an incremental snapshot's parent is found as a restore finds it
 * (bgs_restore_find_parent, the one rule), opened on first need as a file
 * handle of its own, owned by its child; reads of PARENT pages go to it by
 * region name, and it follows its own parent the same way. The files
 * offered with bgsnap_file_add_parent() belong to the handle the caller
 * opened (the root), shared by every ancestor.
 */
#include "bgsnap.h"
#include "ramstore.h"
#include "snap_restore.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAGE	   4096u
#define STATS_NAME "bgsnap.stats"

_Static_assert(sizeof(((struct rs_diag *)0)->msg) <= BGSNAP_FILE_ERROR_MAX,
	       "a store's message fits the public buffer");
_Static_assert((int)RS_KIND_FILE_PRIVATE == (int)BGSNAP_KIND_FILE_PRIVATE &&
		       (int)RS_KIND_UNSAVED == (int)BGSNAP_KIND_UNSAVED,
	       "stored kinds are the public ones: bgsnap_kind_name() knows "
	       "them all");

struct bgsnap_file {
	int fd;
	struct rs_reader *r;
	struct rs_decoder *dec; /* for decoding straight into a buffer */
	struct bgsnap_file_info info;
	struct bgsnap_file_region *regions; /* figures summed at open */
	char *stats;	     /* bgsnap.stats, loaded on first ask */
	char *path;	     /* as opened, or where it was found */
	struct rs_diag diag; /* the last error */
	bool diag_named;     /* diag names its file already (a parent's) */
	/* Chains. */
	struct bgsnap_file *root;   /* the handle the caller opened */
	struct bgsnap_file *parent; /* owned; NULL until first needed */
	unsigned depth;		    /* 0 for the root, 1 its parent ... */
	char **cands;		    /* root only: bgsnap_file_add_parent */
	size_t ncands;
	int verify; /* root only: bgsnap_file_set_verify */
};

/* Record a failure that ramstore did not describe; returns @code. */
static int fail(struct bgsnap_file *f, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int vfail(struct bgsnap_file *f, int code, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

static int vfail(struct bgsnap_file *f, int code, const char *fmt, va_list ap)
{
	f->diag.code = code;
	f->diag.offset = 0;
	f->diag_named = false;
	vsnprintf(f->diag.msg, sizeof(f->diag.msg), fmt, ap);
	return code;
}

static int fail(struct bgsnap_file *f, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail(f, code, fmt, ap);
	va_end(ap);
	return code;
}

int bgs_file_fail(struct bgsnap_file *f, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail(f, code, fmt, ap);
	va_end(ap);
	return code;
}

/* ---- open ---------------------------------------------------------------- */

/* Open @path as a regular file; a FIFO must not block the open. */
static int open_regular(struct bgsnap_file *f, const char *path)
{
	struct stat st;

	if (bgs_rs_is_rados(path)) {
		char msg[sizeof(f->diag.msg)];

		f->fd = bgs_snap_rados_fetch(path, msg, sizeof(msg));
		return f->fd < 0 ? fail(f, f->fd, "%s", msg) : 0;
	}
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

/* The rest of opening, once f->r reads the file at @path. */
static int describe(struct bgsnap_file *f, const char *path)
{
	f->path = strdup(path);
	if (!f->path || bgs_rs_decoder_new(&f->dec))
		return fail(f, -ENOMEM, "out of memory");
	describe_file(f);
	return sum_regions(f);
}

static int open_file(struct bgsnap_file *f, const char *path)
{
	int ret = open_regular(f, path);

	if (!ret)
		ret = bgs_rs_open(&f->r, f->fd, &f->diag);
	return ret ? ret : describe(f, path);
}

static struct bgsnap_file *new_handle(struct bgsnap_file *root)
{
	struct bgsnap_file *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	f->fd = -1;
	f->root = root ? root : f;
	return f;
}

BGSNAP_API int bgsnap_file_open(struct bgsnap_file **out, const char *path,
				char *err, size_t errlen)
{
	struct bgsnap_file *f = new_handle(NULL);
	int ret;

	*out = NULL;
	if (!f) {
		if (err && errlen)
			snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
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
	bgsnap_file_close(f->parent);
	bgs_rs_decoder_free(f->dec);
	bgs_rs_close(f->r);
	if (f->fd >= 0)
		close(f->fd);
	for (size_t i = 0; i < f->ncands; i++)
		free(f->cands[i]);
	free(f->cands);
	free(f->path);
	free(f->regions);
	free(f->stats);
	free(f);
}

BGSNAP_API const char *bgsnap_file_path(const struct bgsnap_file *f)
{
	return f->path;
}

BGSNAP_API const char *bgsnap_file_last_error(const struct bgsnap_file *f)
{
	return f->diag.msg;
}

/* ---- what it holds ------------------------------------------------------- */

BGSNAP_API int bgsnap_file_info(const struct bgsnap_file *f,
				struct bgsnap_file_info *info)
{
	return bgs_struct_out(info, &f->info, sizeof(f->info));
}

BGSNAP_API int bgsnap_file_region(const struct bgsnap_file *f, size_t i,
				  struct bgsnap_file_region *r)
{
	if (i >= f->info.regions)
		return -ERANGE;
	return bgs_struct_out(r, &f->regions[i], sizeof(*r));
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

BGSNAP_API int bgsnap_file_stats_json(struct bgsnap_file *f, const char **json)
{
	const int i = bgsnap_file_find_attachment(f, STATS_NAME);
	const char *name;
	size_t len;
	int ret;

	*json = NULL;
	if (i < 0)
		return fail(f, -ENOENT,
			    "no statistics: saved without "
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

/* ---- chains -------------------------------------------------------------- */

BGSNAP_API int bgsnap_file_add_parent(struct bgsnap_file *f, const char *path)
{
	struct bgsnap_file *root = f->root;
	char **cands, *copy;

	if (!path || !*path)
		return fail(f, -EINVAL, "a parent needs a file name");
	copy = strdup(path);
	cands = realloc(root->cands, (root->ncands + 1) * sizeof(*cands));
	if (!copy || !cands) {
		free(copy);
		if (cands)
			root->cands = cands;
		return fail(f, -ENOMEM, "out of memory");
	}
	cands[root->ncands++] = copy;
	root->cands = cands;
	return 0;
}

/* Open the parent of @f, found the one way a restore finds it. */
static int open_parent(struct bgsnap_file *f)
{
	const struct bgsnap_file *root = f->root;
	struct bgs_found_parent found;
	struct bgsnap_file *p;
	int ret;

	if (f->depth + 1 >= BGS_MAX_CHAIN)
		return fail(f, BGSNAP_EPARENT,
			    "the chain of parents is longer "
			    "than %d",
			    BGS_MAX_CHAIN);
	p = new_handle(f->root);
	if (!p)
		return fail(f, -ENOMEM, "out of memory");
	ret = bgs_restore_find_parent(f->r, f->path,
				      (const char *const *)root->cands,
				      root->ncands, &found, &p->diag);
	if (ret) {
		fail(f, ret > 0 ? BGSNAP_EPARENT : ret, "%s", p->diag.msg);
		bgsnap_file_close(p);
		return f->diag.code;
	}
	p->fd = found.fd;
	p->r = found.reader;
	p->depth = f->depth + 1;
	ret = describe(p, found.path);
	if (ret) {
		fail(f, ret, "%s: %s", found.path, p->diag.msg);
		bgsnap_file_close(p);
		return ret;
	}
	f->parent = p;
	return 0;
}

BGSNAP_API int bgsnap_file_parent(struct bgsnap_file *f,
				  struct bgsnap_file **parent)
{
	int ret = 0;

	*parent = NULL;
	if (!f->info.incremental)
		return fail(f, -ENOENT, "a full snapshot has no parent");
	if (!f->parent)
		ret = open_parent(f);
	*parent = f->parent;
	return ret;
}

/* The index in @p of the region PARENT extent @e of @f sends its pages to,
 * which must have saved them up to byte @end; or the error, said. */
static int parent_region(struct bgsnap_file *f, const struct bgsnap_file *p,
			 const struct rs_extent *e, uint64_t end)
{
	const char *name = f->regions[e->region].name;
	const int k = bgsnap_file_find_region(p, name);

	if (k < 0 || p->regions[k].kind == RS_KIND_UNSAVED ||
	    end > p->regions[k].len)
		return fail(f, BGSNAP_EPARENT,
			    "region '%s', pages %llu..%llu: stored in the "
			    "parent, which has not saved them (%s)",
			    name, (unsigned long long)e->first,
			    (unsigned long long)(e->first + e->npages - 1),
			    p->path);
	return k;
}

/* Every page @f leaves to @p lies in a saved region of the same name. */
static int check_link(struct bgsnap_file *f, const struct bgsnap_file *p)
{
	if (memcmp(f->info.parent_id, p->info.snapshot_id, 16))
		return fail(f, BGSNAP_EPARENT,
			    "%s is not its parent: another "
			    "snapshot id",
			    p->path);
	for (size_t i = 0; i < bgs_rs_extent_count(f->r); i++) {
		const struct rs_extent *e = bgs_rs_extent(f->r, i);
		int k;

		if (e->encoding != RS_ENC_PARENT)
			continue;
		k = parent_region(f, p, e, (e->first + e->npages) * PAGE);
		if (k < 0)
			return k;
	}
	return 0;
}

struct chain_progress {
	void (*progress)(void *arg, uint64_t done, uint64_t total);
	void *arg;
	uint64_t before, total; /* bytes of the files checked before */
};

static void chain_progress(void *arg, uint64_t done, uint64_t total)
{
	const struct chain_progress *c = arg;

	(void)total;
	c->progress(c->arg, c->before + done, c->total);
}

/* Find every ancestor of @f and check the links: the total bytes. */
static int open_chain(struct bgsnap_file *f, uint64_t *total)
{
	*total = 0;
	for (struct bgsnap_file *c = f, *p; c; c = p) {
		int ret = c->info.incremental ? bgsnap_file_parent(c, &p) : 0;

		if (!c->info.incremental)
			p = NULL;
		if (!ret && p)
			ret = check_link(c, p);
		if (ret) {
			if (c != f)
				fail(f, ret, "%s: %s", c->path, c->diag.msg);
			return ret;
		}
		*total += c->info.file_size;
	}
	return 0;
}

BGSNAP_API int bgsnap_file_verify_chain(
	struct bgsnap_file *f,
	void (*progress)(void *arg, uint64_t done, uint64_t total), void *arg)
{
	struct chain_progress cp = { progress, arg, 0, 0 };
	int ret = open_chain(f, &cp.total);

	for (struct bgsnap_file *c = f; c && !ret; c = c->parent) {
		ret = bgsnap_file_verify(c, progress ? chain_progress : NULL,
					 &cp);
		if (ret && c != f)
			fail(f, ret, "%s: %s", c->path, c->diag.msg);
		cp.before += c->info.file_size;
	}
	return ret;
}

/* ---- verify -------------------------------------------------------------- */

BGSNAP_API int bgsnap_file_set_verify(struct bgsnap_file *f, int how)
{
	if (how != BGSNAP_VERIFY_STORED && how != BGSNAP_VERIFY_DEEP)
		return -EINVAL;
	f->root->verify = how;
	return 0;
}

BGSNAP_API int bgsnap_file_verify(struct bgsnap_file *f,
				  void (*progress)(void *arg, uint64_t done,
						   uint64_t total),
				  void *arg)
{
	const unsigned flags =
		f->root->verify == BGSNAP_VERIFY_DEEP ? RS_VERIFY_DEEP : 0;

	return bgs_rs_verify(f->r, flags, &f->diag, progress, arg);
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
		fail(f, BGSNAP_EMISSING,
		     "region '%s': no record holds byte "
		     "%llu",
		     f->regions[region].name, (unsigned long long)offset);
	return i;
}

static int check_range(struct bgsnap_file *f, size_t region, uint64_t offset,
		       uint64_t len)
{
	if (region >= f->info.regions)
		return fail(f, -ERANGE, "no region %zu", region);
	if (offset > f->regions[region].len ||
	    len > f->regions[region].len - offset)
		return fail(f, -ERANGE,
			    "region '%s': bytes %llu..+%llu are "
			    "outside its %llu bytes",
			    f->regions[region].name, (unsigned long long)offset,
			    (unsigned long long)len,
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

/* Bytes [@off, @off + @n) of PARENT extent @e, from the parent's region
 * of the same name (which may send them on to its own parent). */
static int read_parent(struct bgsnap_file *f, const struct rs_extent *e,
		       uint64_t off, void *dst, size_t n)
{
	const char *name = f->regions[e->region].name;
	const uint64_t at = e->first * PAGE + off;
	struct bgsnap_file *p;
	int k, ret;

	if (!f->info.incremental)
		return fail(f, BGSNAP_EPARENT,
			    "region '%s', pages %llu..%llu: "
			    "stored in a parent, but the snapshot has none",
			    name, (unsigned long long)e->first,
			    (unsigned long long)(e->first + e->npages - 1));
	ret = bgsnap_file_parent(f, &p);
	if (ret)
		return ret;
	k = parent_region(f, p, e, at + n);
	if (k < 0)
		return k;
	ret = bgsnap_file_read(p, (size_t)k, at, dst, n);
	if (ret && p->diag_named)
		fail(f, ret, "%s", p->diag.msg);
	else if (ret)
		fail(f, ret, "%s: %s", p->path, p->diag.msg);
	f->diag_named = ret != 0;
	return ret;
}

/* Bytes [@off, @off + @n) of extent @i into @dst: decoded in place when
 * the whole record is wanted, else through the reader's cache. */
static int read_extent(struct bgsnap_file *f, size_t i, uint64_t off, void *dst,
		       size_t n)
{
	const struct rs_extent *e = bgs_rs_extent(f->r, i);
	const void *data;
	int ret;

	switch (e->encoding) {
	case RS_ENC_ZERO:
		memset(dst, 0, n);
		return 0;
	case RS_ENC_PARENT:
		return read_parent(f, e, off, dst, n);
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
		ret = fail(f, -ENODATA,
			   "region '%s' was not saved (recorded "
			   "by name only)",
			   f->regions[region].name);
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
