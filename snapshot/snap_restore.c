/* SPDX-License-Identifier: MIT */
/*
 * Restore: opening and matching a snapshot, handing back attachments, and
 * the eager restore. (Over 1000 lines because the eager restore's passes,
 * its io_uring reads and its fresh-memory path share one set of state and
 * one error path; the lazy restore, which shares less, is snap_lazy.c.)
 *
 * DESIGN (eager)
 * Two passes over the store, each by `threads` decoding threads (the
 * calling thread is one of them) that take records from a shared atomic
 * counter: records are independent, so decoding parallelizes perfectly.
 *   pass 1  decode every record into a private buffer: every checksum is
 *           proved before anything is written (open already proved header,
 *           footer, region table, index and the coverage of every page);
 *   pass 2  decode every record straight into its region; zero runs
 *           release their pages instead (MADV_DONTNEED/MADV_REMOVE).
 * The owner's pause callback brackets pass 2 only. Fresh memory (private
 * anonymous, no page present or swapped out: the new guest RAM a VMM
 * restores into) takes one pass that checks and writes at once, the owner
 * paused throughout: should a record prove damaged, dropping the regions'
 * pages puts them back exactly as they were, empty. A stream (pipe) is
 * first spooled to an unnamed temporary file, checked as it arrives and
 * bounded by what its regions can hold, then restored the same way:
 * memory stays a few buffers whatever the snapshot's size.
 */
#include "snap_restore.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_THREADS 8

int bgs_restore_fail(struct bgs_restore *r, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	bgs_first_error_set(&r->error, err, fmt, ap);
	va_end(ap);
	return err;
}

void bgs_restore_zero(const struct bgs_region *g, uint64_t addr, uint64_t len)
{
	void *p = (void *)(uintptr_t)addr;

	/* Shared memory keeps its pages in a file: punch them out of it
	 * (MADV_REMOVE). Private memory, hugetlbfs included, just drops them;
	 * MADV_REMOVE refuses private mappings. */
	if (!bgs_region_is_anon(g) && madvise(p, len, MADV_REMOVE) == 0)
		return;
	if (madvise(p, len, MADV_DONTNEED))
		memset(p, 0, len);
}

/* ---- opening ------------------------------------------------------------- */

/*
 * Copy a stream to an unnamed file, so it can be verified, then read. The
 * stream is checked as it arrives (header, region table, each record's
 * header and stored checksum, the index, the footer): garbage is refused
 * at its first bytes, and the copy never grows beyond what a snapshot of
 * the regions its header declares can hold. A signal caught meanwhile
 * (an interrupted read) ends it with -EINTR.
 */
static int spool(struct bgs_restore *r, int in, int *out)
{
	const char *dir = r->opts.spool_dir;
	struct rs_stream *st = NULL;
	struct rs_diag diag = { 0 };
	struct rs_item item;
	int fd, ret;

	if (!dir)
		dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0) {
		ret = -errno;
		bgs_snap_set_error(r->h, "spooling the stream into %s: %s", dir,
				   strerror(-ret));
		return ret;
	}
	ret = bgs_rs_stream_open_tee(&st, in, fd, &diag);
	while (!ret && (ret = bgs_rs_stream_next(st, &item, &diag)) == 1)
		ret = 0;
	bgs_rs_stream_close(st);
	if (ret) {
		bgs_snap_set_error(r->h, "the stream: %s",
				   diag.msg[0] ? diag.msg : strerror(-ret));
		close(fd);
		return ret;
	}
	*out = fd;
	return 0;
}

static bool kinds_match(enum bgsnap_kind a, uint16_t b)
{
	const bool anon_a = a == BGSNAP_KIND_ANON || a == BGSNAP_KIND_ANON_THP;
	const bool anon_b = b == RS_KIND_ANON || b == RS_KIND_ANON_THP;

	return anon_a ? anon_b : (uint16_t)a == b;
}

static const struct bgs_region *find_region(const struct bgsnap *h,
					    const char *name)
{
	for (size_t i = 0; i < h->nregions; i++)
		if (!strcmp(h->regions[i].name, name))
			return &h->regions[i];
	return NULL;
}

/* Every saved region of the snapshot has its registered twin, and every
 * registered region is in the snapshot. */
/*
 * Another process: would the filters of bgsnap_target_pid() leave the
 * snapshot's region @s out, were it still mapped? Its label is its name
 * without the "@start" that bgsnap added. A region left out is no concern
 * of this restore, even when it is gone (a thread's stack, since exited).
 */
static bool filtered_out(const struct bgsnap *h, const struct rs_region *s)
{
	char name[sizeof(s->name)], label[sizeof(s->name)], *at;
	struct bgs_target_map m = {
		.start = s->base,
		.end = s->base + s->length,
		.name = name,
		.label = label,
	};
	struct bgs_target_maps one = { .v = &m, .n = 1 };

	if (!h->ninclude && !h->nexclude)
		return false;
	snprintf(name, sizeof(name), "%s", s->name);
	snprintf(label, sizeof(label), "%s", s->name);
	at = strrchr(label, '@');
	if (at)
		*at = '\0';
	return !bgs_target_maps_filter(
		       &one, (const char *const *)h->include, h->ninclude,
		       (const char *const *)h->exclude, h->nexclude) &&
	       m.excluded;
}

static int match_regions(struct bgs_restore *r)
{
	struct bgsnap *h = r->h;
	const size_t n = bgs_rs_region_count(r->reader);
	size_t matched = 0;

	for (size_t i = 0; i < n; i++) {
		const struct rs_region *s = bgs_rs_region(r->reader, i);
		const struct bgs_region *g;

		if (s->kind == RS_KIND_UNSAVED)
			continue;
		g = find_region(h, s->name);
		/* Another process's mapping left out by a filter: not ours
		 * to write, whether it is still there or not. */
		if (g && h->target && g->kind == BGSNAP_KIND_UNSAVED)
			continue;
		if (!g && h->target && filtered_out(h, s))
			continue;
		if (!g) {
			bgs_snap_set_error(h,
					   "the snapshot's region '%s' is not "
					   "registered",
					   s->name);
			return BGSNAP_EMISMATCH;
		}
		if (g->len != s->length || g->page_size != s->page_size ||
		    !kinds_match(g->kind, s->kind)) {
			bgs_snap_set_error(
				h,
				"region '%s': the snapshot has %" PRIu64
				" bytes of kind %u in %u-byte pages, "
				"the registered region %" PRIu64
				" bytes of kind %u in %u-byte pages",
				s->name, s->length, s->kind, s->page_size,
				g->len, (unsigned)g->kind, g->page_size);
			return BGSNAP_EMISMATCH;
		}
		r->dest[i] = g;
		r->snap_region[g - h->regions] = (uint32_t)i;
		matched++;
	}
	/* In another process, mappings made since the snapshot are left
	 * alone; in this one the regions are exactly the snapshot's. */
	if (!h->target && matched != h->nregions) {
		for (size_t k = 0; k < h->nregions; k++)
			if (r->snap_region[k] == UINT32_MAX) {
				bgs_snap_set_error(h,
						   "region '%s' is not in the "
						   "snapshot",
						   h->regions[k].name);
				break;
			}
		return BGSNAP_EMISMATCH;
	}
	/* ... but a restore that would write nothing is a mistake (the
	 * snapshot of another process, a filter that misses). */
	if (h->target && !matched) {
		bgs_snap_set_error(h,
				   "no region of the snapshot is a mapping "
				   "of process %d that the filters select",
				   h->target->pid);
		return BGSNAP_EMISMATCH;
	}
	return 0;
}

static int open_regular(const char *path);

static int open_store(struct bgs_restore *r, const char *path, int fd)
{
	struct rs_diag diag = { 0 };
	struct stat st;
	int ret;

	if (bgs_rs_is_rados(path) && (r->opts.flags & BGSNAP_RESTORE_LAZY)) {
		char msg[512];

		/* Read in place: a fault fetches its record only. */
		ret = bgs_snap_rados_in_open(path, &r->rados, &r->reader, msg,
					     sizeof(msg));
		if (ret)
			bgs_snap_set_error(r->h, "%s: %s", path, msg);
		return ret;
	} else if (bgs_rs_is_rados(path)) {
		char msg[512];

		ret = bgs_snap_rados_fetch(path, msg, sizeof(msg));
		if (ret < 0) {
			bgs_snap_set_error(r->h, "%s: %s", path, msg);
			return ret;
		}
		r->fd = ret;
		r->own_fd = true;
	} else if (path) {
		/* A FIFO put there must not block the open. */
		ret = open_regular(path);
		if (ret < 0) {
			bgs_snap_set_error(r->h, "%s: %s", path,
					   ret == -ESPIPE
						   ? "not a regular "
						     "file (a pipe or a device)"
						   : strerror(-ret));
			return ret;
		}
		r->fd = ret;
		r->own_fd = true;
	} else if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
		r->fd = fd;
	} else {
		if (r->opts.flags & BGSNAP_RESTORE_LAZY) {
			bgs_snap_set_error(r->h, "a lazy restore needs a file, "
						 "not a stream");
			return -ESPIPE;
		}
		ret = spool(r, fd, &r->fd);
		r->own_fd = !ret;
		if (ret)
			return ret;
	}
	ret = bgs_rs_open(&r->reader, r->fd, &diag);
	if (ret)
		bgs_snap_set_error(r->h, "%s%s%s", path ? path : "",
				   path ? ": " : "", diag.msg);
	return ret;
}

static bool has_parent(const struct rs_info *info)
{
	for (size_t i = 0; i < sizeof(info->parent_id); i++)
		if (info->parent_id[i])
			return true;
	return false;
}

/* ---- the chain of an incremental snapshot ---------------------------- */

static void id_hex(const uint8_t id[16], char out[33])
{
	for (int i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", id[i]);
}

/* Open @path read-only, a regular file only (a FIFO must not block). */
static int open_regular(const char *path)
{
	struct stat st;
	const int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	int err = 0;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st))
		err = -errno;
	else if (!S_ISREG(st.st_mode))
		err = S_ISDIR(st.st_mode) ? -EISDIR : -ESPIPE;
	else if (fcntl(fd, F_SETFL, 0))
		err = -errno;
	if (err)
		close(fd);
	return err ? err : fd;
}

/* A message into @diag (a long one is cut short). */
static void diag_set(struct rs_diag *diag, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void diag_set(struct rs_diag *diag, int code, const char *fmt, ...)
{
	va_list ap;

	diag->code = code;
	va_start(ap, fmt);
	vsnprintf(diag->msg, sizeof(diag->msg), fmt, ap);
	va_end(ap);
}

/* @diag's message, prefixed with the file it is about. */
static void name_diag(struct rs_diag *diag, const char *path)
{
	char msg[sizeof(diag->msg)];

	memcpy(msg, diag->msg, sizeof(msg));
	diag_set(diag, diag->code, "%s: %s", path, msg);
}

/*
 * Open @path if it is the snapshot @id: 0 (@p filled); 1 if it is not
 * there or is another snapshot (@why says which); or the error that keeps
 * a file there from being read as a snapshot (@diag names it).
 */
static int try_parent(const char *path, const uint8_t id[16],
		      struct bgs_found_parent *p, struct rs_diag *diag,
		      char *why, size_t whylen)
{
	const bool rados = bgs_rs_is_rados(path);
	char hex[33], msg[256];
	/* A parent in RADOS is fetched whole, as its child is. */
	const int fd = rados ? bgs_snap_rados_fetch(path, msg, sizeof(msg))
			     : open_regular(path);
	int ret;

	if (fd < 0) {
		snprintf(why, whylen, "%s",
			 fd == -ENOENT ? "is not there"
			 : rados       ? msg
				       : strerror(-fd));
		return 1;
	}
	ret = bgs_rs_open(&p->reader, fd, diag);
	if (!ret && memcmp(bgs_rs_info(p->reader)->snapshot_id, id, 16)) {
		id_hex(bgs_rs_info(p->reader)->snapshot_id, hex);
		snprintf(why, whylen, "is snapshot %s, another one", hex);
		bgs_rs_close(p->reader);
		ret = 1;
	}
	if (ret < 0)
		name_diag(diag, path);
	if (ret) {
		p->reader = NULL;
		close(fd);
		return ret;
	}
	p->fd = fd;
	snprintf(p->path, sizeof(p->path), "%s", path);
	return 0;
}

/* The file name @child records for its parent (attachment bgsnap.parent):
 * 0, or -1 when it records none, or none that is a bare file name. */
static int recorded_name(struct rs_reader *child, char *name, size_t len)
{
	for (size_t i = 0; i < bgs_rs_attachment_count(child); i++) {
		const char *n;
		size_t size;

		if (bgs_rs_attachment_info(child, i, &n, &size) ||
		    strcmp(n, "bgsnap.parent") || !size || size >= len ||
		    bgs_rs_attachment_read(child, i, name, NULL))
			continue;
		name[size] = '\0';
		/* A bare file name only: never wander. */
		return strchr(name, '/') || strlen(name) != size ||
				       !strcmp(name, ".") || !strcmp(name, "..")
			       ? -1
			       : 0;
	}
	return -1;
}

int bgs_restore_find_parent(struct rs_reader *child, const char *child_path,
			    const char *const *cands, size_t ncands,
			    struct bgs_found_parent *p, struct rs_diag *diag)
{
	const uint8_t *id = bgs_rs_info(child)->parent_id;
	const char *slash = child_path ? strrchr(child_path, '/') : NULL;
	char name[256], why[320] = "", beside[sizeof(p->path)], hex[33];
	char given[64] = "";
	int ret = 1;

	p->fd = -1;
	p->reader = NULL;
	p->path[0] = '\0';
	for (size_t k = 0; k < ncands && ret > 0; k++)
		ret = try_parent(cands[k], id, p, diag, why, sizeof(why));
	if (ret <= 0)
		return ret;
	id_hex(id, hex);
	if (ncands)
		snprintf(given, sizeof(given),
			 "; nor is it among the %zu "
			 "file(s) given",
			 ncands);
	if (recorded_name(child, name, sizeof(name))) {
		diag_set(diag, BGSNAP_EPARENT,
			 "the parent snapshot %s is "
			 "missing: the snapshot names no file for it%s",
			 hex, given);
		return 1;
	}
	snprintf(beside, sizeof(beside), "%.*s%s",
		 slash ? (int)(slash - child_path + 1) : 0,
		 slash ? child_path : "", name);
	ret = try_parent(beside, id, p, diag, why, sizeof(why));
	if (ret <= 0)
		return ret;
	diag_set(diag, BGSNAP_EPARENT,
		 "the parent snapshot %s is missing: "
		 "%s, the file named for it, %s%s",
		 hex, beside, why, given);
	return 1;
}

static int map_chain_regions(struct bgs_restore *r, struct bgs_parent *p)
{
	const size_t n = bgs_rs_region_count(r->reader);

	p->region = malloc((n ? n : 1) * sizeof(*p->region));
	if (!p->region)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		p->region[i] = UINT32_MAX;
		for (size_t j = 0; j < bgs_rs_region_count(p->reader); j++)
			if (!strcmp(bgs_rs_region(r->reader, i)->name,
				    bgs_rs_region(p->reader, j)->name))
				p->region[i] = (uint32_t)j;
	}
	return 0;
}

/* Find each ancestor by its id: among opts.parents, else beside. */
static int open_chain(struct bgs_restore *r, const char *path)
{
	struct rs_reader *cur = r->reader;
	char cur_path[sizeof(((struct bgs_found_parent *)0)->path)];

	snprintf(cur_path, sizeof(cur_path), "%s", path ? path : "");
	while (has_parent(bgs_rs_info(cur))) {
		struct bgs_parent *p = &r->chain[r->nchain];
		struct bgs_found_parent found;
		struct rs_diag diag = { 0 };
		int ret;

		if (r->nchain == BGS_MAX_CHAIN) {
			bgs_snap_set_error(r->h,
					   "the chain of parents is "
					   "longer than %d",
					   BGS_MAX_CHAIN);
			return BGSNAP_EPARENT;
		}
		ret = bgs_restore_find_parent(cur, cur_path, r->opts.parents,
					      r->opts.nparents, &found, &diag);
		if (ret) {
			bgs_snap_set_error(r->h, "%s", diag.msg);
			return ret > 0 ? BGSNAP_EPARENT : ret;
		}
		p->fd = found.fd;
		p->reader = found.reader;
		r->nchain++;
		ret = map_chain_regions(r, p);
		if (ret)
			return ret;
		cur = p->reader;
		memcpy(cur_path, found.path, sizeof(cur_path));
	}
	return 0;
}

int bgs_restore_from_chain(struct bgs_restore *r, struct rs_decoder *dec,
			   uint8_t *tmp, size_t level, uint32_t region,
			   uint64_t first, uint64_t n, uint8_t *dst)
{
	const struct bgs_parent *p = &r->chain[level];
	const uint32_t preg =
		level < r->nchain ? p->region[region] : UINT32_MAX;
	struct rs_diag diag = { 0 };

	if (preg == UINT32_MAX)
		return bgs_restore_fail(r, BGSNAP_EPARENT,
					"region '%s': pages "
					"%" PRIu64 "..%" PRIu64
					" are in no parent",
					bgs_rs_region(r->reader, region)->name,
					first, first + n - 1);
	for (uint64_t page = first; page < first + n;) {
		const ssize_t i = bgs_rs_find(p->reader, preg, page);
		const struct rs_extent *e =
			i < 0 ? NULL : bgs_rs_extent(p->reader, (size_t)i);
		uint64_t take;
		int ret;

		if (!e)
			return bgs_restore_fail(r, BGSNAP_EPARENT,
						"the parent "
						"lacks page %" PRIu64,
						page);
		take = e->first + e->npages - page;
		if (take > first + n - page)
			take = first + n - page;
		ret = bgs_rs_decode_to(p->reader, dec, (size_t)i, tmp, &diag);
		if (ret < 0)
			return bgs_restore_fail(r, ret, "parent: %s", diag.msg);
		uint8_t *out = dst + (page - first) * BGS_PAGE_SIZE;
		if (ret == RS_ENC_PARENT)
			ret = bgs_restore_from_chain(r, dec, tmp, level + 1,
						     region, page, take, out);
		else if (ret == RS_ENC_ZERO)
			memset(out, 0, take * BGS_PAGE_SIZE), ret = 0;
		else
			memcpy(out, tmp + (page - e->first) * BGS_PAGE_SIZE,
			       take * BGS_PAGE_SIZE),
				ret = 0;
		if (ret)
			return ret;
		atomic_fetch_add(&r->bytes_read, e->stored_len);
		page += take;
	}
	return 0;
}

static void grow_max_record(struct bgs_restore *r, const struct rs_reader *f)
{
	for (size_t i = 0; i < bgs_rs_extent_count(f); i++) {
		const size_t len = bgs_rs_extent(f, i)->npages * BGS_PAGE_SIZE;

		if (len > r->max_record)
			r->max_record = len;
	}
}

int bgs_restore_open(struct bgs_restore *r, const char *path, int fd)
{
	int ret = open_store(r, path, fd);

	if (!ret)
		ret = open_chain(r, path);
	if (ret)
		return ret;
	grow_max_record(r, r->reader);
	for (size_t k = 0; k < r->nchain; k++)
		grow_max_record(r, r->chain[k].reader);
	return 0;
}

static int prepare(struct bgs_restore *r, const char *path, int fd)
{
	int ret = r->h->target ? bgs_snap_target_current(r->h) : 0;
	size_t n;

	if (!ret)
		ret = bgs_restore_open(r, path, fd);
	if (ret)
		return ret;
	n = bgs_rs_region_count(r->reader);
	r->dest = calloc(n ? n : 1, sizeof(*r->dest));
	r->snap_region = malloc(r->h->nregions * sizeof(*r->snap_region));
	if (!r->dest || !r->snap_region)
		return -ENOMEM;
	memset(r->snap_region, 0xff, r->h->nregions * sizeof(*r->snap_region));
	return match_regions(r);
}

int bgs_restore_each_attachment(struct bgs_restore *r, bgs_attachment_fn *fn,
				void *arg)
{
	struct rs_diag diag = { 0 };

	for (size_t i = 0; i < bgs_rs_attachment_count(r->reader); i++) {
		const char *name;
		size_t len;
		void *data;
		int ret = bgs_rs_attachment_info(r->reader, i, &name, &len);

		if (ret)
			return ret;
		data = malloc(len ? len : 1);
		if (!data)
			return -ENOMEM;
		ret = bgs_rs_attachment_read(r->reader, i, data, &diag);
		atomic_fetch_add(&r->bytes_read, len);
		if (ret)
			bgs_snap_set_error(r->h, "%s", diag.msg);
		else
			ret = fn(arg, name, data, len);
		free(data);
		if (ret)
			return ret;
	}
	return 0;
}

/* The owner's attachments go to its callback; bgsnap's own stay here. */
static int hand_back(void *arg, const char *name, const void *data, size_t len)
{
	const struct bgs_restore *r = arg;

	if (!r->opts.attachment || !strncmp(name, "bgsnap.", 7))
		return 0;
	return r->opts.attachment(r->opts.arg, name, data, len);
}

int bgs_restore_attachments(struct bgs_restore *r)
{
	return bgs_restore_each_attachment(r, hand_back, r);
}

void bgs_restore_free(struct bgs_restore *r)
{
	for (size_t k = 0; k < r->nchain; k++) {
		bgs_rs_close(r->chain[k].reader);
		close(r->chain[k].fd);
		free(r->chain[k].region);
	}
	if (r->reader)
		bgs_rs_close(r->reader);
	bgs_snap_rados_in_close(r->rados); /* after its reader */
	if (r->own_fd)
		close(r->fd);
	free(r->order);
	free(r->dest);
	free(r->snap_region);
	free(r);
}

/* ---- the two passes ------------------------------------------------------ */

/* What a pass does with each record. */
enum pass_kind {
	PASS_CHECK, /* decode it aside: every checksum proved */
	PASS_APPLY, /* write it into its region */
	PASS_BOTH,  /* fresh memory: write in place, check the rest */
};

struct pass {
	struct bgs_restore *r;
	enum pass_kind kind;
	_Atomic size_t next; /* the next position in r->order to claim */
};

/* The pages of [addr, addr + len) that hold something: they need zeroes. */
struct zero_ctx {
	struct bgs_restore *r;
	const uint8_t *zero;
	int ret;
};

static int zero_target_range(void *arg, uint64_t start, uint64_t end,
			     uint64_t cats)
{
	struct zero_ctx *z = arg;

	(void)cats;
	for (uint64_t a = start; a < end && !z->ret;) {
		const uint64_t n =
			end - a < z->r->max_record ? end - a : z->r->max_record;
		z->ret = bgs_target_write(z->r->h->target, a, z->zero, n);
		a += n;
	}
	return z->ret;
}

/* Zero a run of another process's memory, writing only where a page is
 * populated: never-touched pages stay so. */
static int zero_target(struct bgs_restore *r, uint64_t addr, uint64_t len,
		       uint8_t *scratch)
{
	const struct bgs_scan_query q = {
		.anyof = PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
		.exclude = PAGE_IS_PFNZERO,
		.report = PAGE_IS_PRESENT,
	};
	struct zero_ctx z = { r, scratch, 0 };
	struct bgs_pagemap pm;
	int ret = bgs_uffd_pagemap_open(&pm, r->h->target->pid);

	memset(scratch, 0, r->max_record);
	if (!ret)
		ret = bgs_uffd_pagemap_scan(&pm, addr, addr + len, &q,
					    zero_target_range, &z);
	bgs_uffd_pagemap_close(&pm);
	return ret < 0 ? ret : z.ret;
}

/* Dry run: how many pages of [addr, +len) differ from @want (NULL: 0s)? */
static int count_changed(struct bgs_restore *r, uint64_t addr, uint64_t len,
			 const uint8_t *want, uint8_t *have)
{
	int ret = 0;

	if (r->h->target)
		ret = bgs_target_read(r->h->target, addr, have, len);
	else
		memcpy(have, (const void *)(uintptr_t)addr, len);
	for (uint64_t off = 0; off < len && !ret; off += BGS_PAGE_SIZE) {
		static const uint8_t zero[BGS_PAGE_SIZE];

		if (memcmp(have + off, want ? want + off : zero, BGS_PAGE_SIZE))
			atomic_fetch_add(&r->pages_changed, 1);
	}
	return ret;
}

/* Pass 2 for one record: put it in place (or count what would change). */
static int apply_record(struct bgs_restore *r, const struct bgs_region *g,
			int enc, uint64_t addr, uint64_t len, uint8_t *scratch,
			uint8_t *spare)
{
	const bool zero = enc == RS_ENC_ZERO;

	if (r->opts.flags & BGSNAP_RESTORE_DRY_RUN)
		return count_changed(r, addr, len, zero ? NULL : scratch,
				     spare);
	if (!r->h->target) {
		if (zero)
			bgs_restore_zero(g, addr, len);
		return 0; /* decoded in place already */
	}
	return zero ? zero_target(r, addr, len, scratch)
		    : bgs_target_write(r->h->target, addr, scratch, len);
}

/*
 * One record: checked (decoded into @scratch), applied, or both. In this
 * process and for real, applying decodes straight into the region.
 */
static int one_record(struct bgs_restore *r, enum pass_kind kind,
		      struct rs_decoder *dec, uint8_t *scratch, uint8_t *spare,
		      size_t i, const uint8_t *rec)
{
	void *dst;
	const struct rs_extent *e = bgs_rs_extent(r->reader, i);
	const struct bgs_region *g = r->dest[e->region];
	const uint64_t addr = g ? g->base + e->first * BGS_PAGE_SIZE : 0;
	const uint64_t len = e->npages * BGS_PAGE_SIZE;
	const bool apply = kind != PASS_CHECK && g;
	const bool in_place = apply && !r->h->target &&
			      !(r->opts.flags & BGSNAP_RESTORE_DRY_RUN);
	struct rs_diag diag = { 0 };
	int ret;

	/* Checking covers every record, also of a region this restore leaves
	 * alone (not registered, or filtered out): a damaged file is refused
	 * whole. */
	if (!g && kind == PASS_APPLY)
		return 0;
	/* @rec: the record was read with its neighbours; else read it now. */
	dst = in_place ? (void *)(uintptr_t)addr : scratch;
	ret = rec ? bgs_rs_decode_from(r->reader, i, rec, dst, &diag)
		  : bgs_rs_decode_to(r->reader, dec, i, dst, &diag);
	if (ret < 0)
		return bgs_restore_fail(r, ret, "%s", diag.msg);
	atomic_fetch_add(&r->bytes_read, e->stored_len);
	if (!g)
		return 0;
	if (ret == RS_ENC_PARENT) {
		/* The parent's pages, wherever up the chain they are. */
		ret = bgs_restore_from_chain(
			r, dec, in_place ? scratch : spare, 0, e->region,
			e->first, e->npages,
			in_place ? (uint8_t *)(uintptr_t)addr : scratch);
		if (ret)
			return ret;
		ret = RS_ENC_RAW;
	}
	if (!apply)
		return 0;
	ret = apply_record(r, g, ret, addr, len, scratch, spare);
	if (ret)
		return bgs_restore_fail(
			r, ret,
			"region '%s': writing pages "
			"%" PRIu64 "..%" PRIu64 ": %s",
			g->name, e->first, e->first + e->npages - 1,
			r->h->target ? r->h->target->msg : strerror(-ret));
	atomic_fetch_add(&r->pages_done, e->npages);
	if (e->encoding == RS_ENC_ZERO)
		atomic_fetch_add(&r->pages_zero, e->npages);
	return 0;
}

/*
 * Records are read as they lie in the file (the index is in page order,
 * the file in the order pages were saved), a span of neighbours at a time
 * with one io_uring read, the next span read while this one is decoded.
 * A span that is long (an attachment between) or whose read fails is
 * read record by record, which names any error exactly.
 */
#define SPAN_RECORDS 64
#define SPAN_MAX     (4u << 20)
#define SPAN_ROUND   (1u << 20)

struct span {
	size_t a, b;  /* positions in the file order */
	uint64_t off; /* the file offset of buf[0] */
	uint32_t len; /* bytes read; 0: record by record */
	bool pending; /* its read is in flight */
	uint8_t *buf;
	size_t cap;
};

struct order_key {
	uint64_t off;
	size_t i;
};

static int key_cmp(const void *a, const void *b)
{
	const struct order_key *x = a, *y = b;

	return x->off < y->off ? -1 : x->off > y->off;
}

static size_t *file_order(const struct bgs_restore *r)
{
	const size_t n = bgs_rs_extent_count(r->reader);
	struct order_key *k = malloc((n ? n : 1) * sizeof(*k));
	size_t *order = malloc((n ? n : 1) * sizeof(*order));

	if (!k || !order) {
		free(k);
		free(order);
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
		k[i] = (struct order_key){ bgs_rs_extent(r->reader, i)->offset,
					   i };
	qsort(k, n, sizeof(*k), key_cmp);
	for (size_t i = 0; i < n; i++)
		order[i] = k[i].i;
	free(k);
	return order;
}

/* Claim the next span and start its read; false when none is left. */
static bool span_claim(struct pass *p, struct io_uring *ring, struct span *s)
{
	const struct rs_reader *rd = p->r->reader;
	const size_t n = bgs_rs_extent_count(rd);
	const struct rs_extent *first, *last;
	struct io_uring_sqe *sqe;
	uint64_t end;

	s->a = atomic_fetch_add(&p->next, SPAN_RECORDS);
	if (s->a >= n)
		return false;
	s->b = s->a + SPAN_RECORDS < n ? s->a + SPAN_RECORDS : n;
	first = bgs_rs_extent(rd, p->r->order[s->a]);
	last = bgs_rs_extent(rd, p->r->order[s->b - 1]);
	end = last->offset + bgs_rs_rechdr_len(rd) + last->stored_len;
	s->off = first->offset;
	s->len = 0;
	if (!ring || end - s->off > SPAN_MAX)
		return true;
	if (s->cap < end - s->off) {
		free(s->buf);
		s->cap = (end - s->off + SPAN_ROUND - 1) / SPAN_ROUND *
			 SPAN_ROUND;
		s->buf = malloc(s->cap);
		if (!s->buf) {
			s->cap = 0;
			return true;
		}
	}
	sqe = io_uring_get_sqe(ring); /* never NULL: two spans, two entries */
	s->len = (uint32_t)(end - s->off);
	io_uring_prep_read(sqe, p->r->fd, s->buf, s->len, s->off);
	io_uring_sqe_set_data(sqe, s);
	s->pending = io_uring_submit(ring) == 1;
	if (!s->pending)
		s->len = 0;
	return true;
}

/* Wait until @s's read is done; completions may come in any order. */
static void span_wait(struct io_uring *ring, struct span *s)
{
	while (s->pending) {
		struct io_uring_cqe *cqe;
		struct span *t;
		const int ret = io_uring_wait_cqe(ring, &cqe);

		if (ret == -EINTR)
			continue; /* the read is still in flight */
		if (ret < 0) {
			/* The ring failed: the read may still land, so its
			 * buffer is never reused nor freed (a leak, not a
			 * corruption); the span is read record by record. */
			s->pending = false;
			s->len = 0;
			s->buf = NULL;
			s->cap = 0;
			return;
		}
		t = io_uring_cqe_get_data(cqe);
		t->pending = false;
		if (cqe->res != (int)t->len)
			t->len = 0; /* short or failed: record by record */
		io_uring_cqe_seen(ring, cqe);
	}
}

static void span_decode(struct pass *p, const struct span *s,
			struct rs_decoder *dec, uint8_t *scratch,
			uint8_t *spare)
{
	struct bgs_restore *r = p->r;

	for (size_t k = s->a; k < s->b && !bgs_first_error_get(&r->error);
	     k++) {
		const size_t i = r->order[k];
		const struct rs_extent *e = bgs_rs_extent(r->reader, i);
		const uint64_t at = e->offset - s->off;
		/* Records of a hostile index may overlap: one that does not
		 * end inside the span is read on its own. */
		const bool inside =
			at + bgs_rs_rechdr_len(r->reader) + e->stored_len <=
			s->len;

		one_record(r, p->kind, dec, scratch, spare, i,
			   inside ? s->buf + at : NULL);
	}
}

static void *pass_worker(void *arg)
{
	struct pass *p = arg;
	struct bgs_restore *r = p->r;
	const size_t len = r->max_record ? r->max_record : 1;
	struct rs_decoder *dec = NULL;
	uint8_t *scratch = malloc(len), *spare = malloc(len);
	struct span sp[2] = { 0 };
	struct io_uring ring;
	const bool uring = io_uring_queue_init(2, &ring, 0) == 0;
	struct io_uring *rp = uring ? &ring : NULL;
	bool more;
	int cur = 0;

	if (bgs_rs_decoder_new(&dec) || !scratch || !spare) {
		bgs_restore_fail(r, -ENOMEM, "out of memory");
		goto out_free;
	}
	more = span_claim(p, rp, &sp[cur]);
	while (more && !bgs_first_error_get(&r->error)) {
		const bool next = span_claim(p, rp, &sp[!cur]);

		span_wait(rp, &sp[cur]);
		span_decode(p, &sp[cur], dec, scratch, spare);
		cur = !cur;
		more = next;
	}
	/* A read may still be in flight into a buffer about to be freed. */
	span_wait(rp, &sp[0]);
	span_wait(rp, &sp[1]);
out_free:
	if (uring)
		io_uring_queue_exit(&ring);
	free(sp[0].buf);
	free(sp[1].buf);
	free(spare);
	free(scratch);
	bgs_rs_decoder_free(dec);
	return NULL;
}

static unsigned thread_count(const struct bgs_restore *r, enum pass_kind kind)
{
	const bool apply = kind != PASS_CHECK;
	long n = r->opts.threads ? (long)r->opts.threads
				 : sysconf(_SC_NPROCESSORS_ONLN);

	/* Another process's memory is written by one thread: its access
	 * handle is not shared. */
	if (apply && r->h->target)
		n = 1;
	return n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : (unsigned)n;
}

static int run_pass(struct bgs_restore *r, enum pass_kind kind)
{
	struct pass p = { .r = r, .kind = kind };
	pthread_t t[MAX_THREADS];
	const unsigned n = thread_count(r, kind);
	unsigned started = 0;

	if (!r->order)
		r->order = file_order(r); /* once: both passes use it */
	if (!r->order)
		return bgs_restore_fail(r, -ENOMEM, "out of memory");
	while (started + 1 < n &&
	       pthread_create(&t[started], NULL, pass_worker, &p) == 0)
		started++;
	pass_worker(&p); /* the calling thread is one of them */
	for (unsigned i = 0; i < started; i++)
		pthread_join(t[i], NULL);
	return bgs_first_error_get(&r->error);
}

/* Another process is stopped, and its mappings proved unchanged since
 * they were matched; this one is paused by its callback. */
static int pause_owner(struct bgs_restore *r)
{
	struct bgs_target *t = r->h->target;
	int ret;

	if (!t) {
		ret = r->opts.pause ? r->opts.pause(r->opts.arg) : 0;
		if (ret < 0)
			bgs_snap_set_error(r->h,
					   "the pause callback failed: %s",
					   bgsnap_strerror(ret));
		return ret < 0 ? ret : 0;
	}
	ret = bgs_target_freeze(t);
	if (ret) {
		bgs_snap_set_error(r->h, "%s", t->msg);
		return ret;
	}
	ret = bgs_target_maps_changed(t, &r->h->maps);
	if (ret) {
		bgs_target_thaw(t);
		bgs_snap_set_error(r->h,
				   "the mappings of process %d changed; "
				   "nothing was written, try again",
				   t->pid);
		return ret < 0 ? ret : -EAGAIN;
	}
	/* The caller's hooks bracket the writes into the process too (the
	 * command holds its signals back there). */
	ret = r->opts.pause ? r->opts.pause(r->opts.arg) : 0;
	if (ret < 0) {
		bgs_target_thaw(t);
		bgs_snap_set_error(r->h, "the pause callback failed: %s",
				   bgsnap_strerror(ret));
		return ret;
	}
	return 0;
}

static void resume_owner(struct bgs_restore *r)
{
	if (r->h->target)
		bgs_target_thaw(r->h->target);
	if (r->opts.resume)
		r->opts.resume(r->opts.arg);
}

static int page_found(void *arg, uint64_t start, uint64_t end, uint64_t cats)
{
	(void)arg, (void)start, (void)end, (void)cats;
	return 1;
}

/* Every region written is private anonymous memory in this process with
 * no page present or swapped out: nothing in it to lose. */
static bool fresh(const struct bgs_restore *r)
{
	const struct bgs_scan_query q = {
		.anyof = PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
	};
	struct bgs_pagemap pm;
	bool empty = true;

	if (r->h->target || (r->opts.flags & BGSNAP_RESTORE_DRY_RUN) ||
	    bgs_uffd_pagemap_open(&pm, 0))
		return false;
	for (size_t k = 0; k < bgs_rs_region_count(r->reader) && empty; k++) {
		const struct bgs_region *g = r->dest[k];

		if (g)
			empty = bgs_region_is_anon(g) &&
				bgs_uffd_pagemap_scan(&pm, g->base,
						      g->base + g->len, &q,
						      page_found, NULL) == 0;
	}
	bgs_uffd_pagemap_close(&pm);
	return empty;
}

/* A damaged record met in fresh memory: empty it again, as it was. */
static void empty_again(const struct bgs_restore *r)
{
	for (size_t k = 0; k < bgs_rs_region_count(r->reader); k++)
		if (r->dest[k])
			bgs_restore_zero(r->dest[k], r->dest[k]->base,
					 r->dest[k]->len);
}

/* Fresh memory, proved so with the owner paused: one pass. */
static int eager_fresh(struct bgs_restore *r, bool *done)
{
	int ret = pause_owner(r);

	*done = ret || fresh(r);
	if (!*done) {
		resume_owner(r); /* written meanwhile: two passes */
		return 0;
	}
	if (ret)
		return ret;
	ret = bgs_restore_attachments(r);
	if (!ret)
		ret = run_pass(r, PASS_BOTH);
	if (ret)
		empty_again(r);
	resume_owner(r);
	return ret;
}

static int eager(struct bgs_restore *r)
{
	bool done = false;
	int ret;

	/* A first look without pausing: an owner rarely touches the memory
	 * it is about to restore into, and so is rarely paused twice. */
	if (fresh(r)) {
		ret = eager_fresh(r, &done);
		if (done)
			return ret;
	}
	ret = run_pass(r, PASS_CHECK);
	if (!ret)
		ret = bgs_restore_attachments(r);
	if (ret)
		return ret;
	if (r->opts.flags & BGSNAP_RESTORE_DRY_RUN)
		return run_pass(r, PASS_APPLY);
	ret = pause_owner(r);
	if (ret)
		return ret;
	ret = run_pass(r, PASS_APPLY);
	resume_owner(r);
	return ret;
}

/* ---- the public calls ---------------------------------------------------- */

static void restore_stats(struct bgs_restore *r, struct bgsnap_stats *st)
{
	*st = (struct bgsnap_stats){
		.elapsed_ns = atomic_load(&r->t_end) - r->t_start,
		.resume_ns = r->t_resume - r->t_start,
		.pages_total = r->h->total_pages,
		.pages_by_fault = atomic_load(&r->pages_by_fault),
		.pages_by_fill = atomic_load(&r->pages_by_fill),
		.pages_zero = atomic_load(&r->pages_zero),
		.pages_poisoned = atomic_load(&r->pages_poisoned),
		.bytes_read = atomic_load(&r->bytes_read),
		.pages_changed = atomic_load(&r->pages_changed),
		.faults = r->faults,
		.stall_ns_p50 = bgs_hist_percentile(&r->latency, 50),
		.stall_ns_p99 = bgs_hist_percentile(&r->latency, 99),
		.stall_ns_max = r->latency.max,
	};
}

static int finish(struct bgsnap *h, struct bgs_restore *r, int ret)
{
	if (!ret)
		ret = bgs_first_error_get(&r->error);
	if (ret && bgs_first_error_get(&r->error))
		bgs_snap_set_error(h, "%s", r->error.msg);
	atomic_store(&r->t_end, bgs_now_ns());
	restore_stats(r, &h->stats);
	bgs_restore_free(r);
	return ret;
}

static int restore_start(struct bgsnap *h, const char *path, int fd,
			 const struct bgsnap_restore_opts *opts)
{
	struct bgsnap_restore_opts o;
	struct bgs_restore *r;
	int ret;

	ret = bgs_struct_in(&o, sizeof(o), opts);
	if (ret)
		return ret;
	ret = bgs_snap_begin(h);
	if (ret)
		return ret;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->h = h;
	r->opts = o;
	r->t_start = bgs_now_ns();
	r->fd = -1;
	r->uffd.fd = -1;
	r->stop_fd = -1;
	ret = prepare(r, path, fd);
	if (!ret && (r->opts.flags & BGSNAP_RESTORE_LAZY) && h->target) {
		bgs_snap_set_error(h, "a lazy restore into another process is "
				      "not supported");
		ret = -ENOTSUP;
	}
	if (ret || !(r->opts.flags & BGSNAP_RESTORE_LAZY)) {
		if (!ret)
			ret = eager(r);
		r->t_resume = bgs_now_ns();
		ret = finish(h, r, ret);
		/* Synchronous: done already; bgsnap_wait() reports it. */
		h->result_pending = !ret;
		h->result = ret;
		return ret;
	}
	ret = bgs_lazy_start(r);
	r->t_resume = bgs_now_ns();
	if (ret)
		return finish(h, r, ret);
	h->restore = r;
	pthread_mutex_lock(&h->live_lock);
	atomic_store(&h->live_restore, r);
	pthread_mutex_unlock(&h->live_lock);
	return 0;
}

int bgs_restore_wait(struct bgsnap *h)
{
	struct bgs_restore *r = h->restore;

	bgs_lazy_join(r);
	pthread_mutex_lock(&h->live_lock);
	atomic_store(&h->live_restore, NULL);
	pthread_mutex_unlock(&h->live_lock);
	h->restore = NULL;
	return finish(h, r, 0);
}

void bgs_restore_progress(struct bgs_restore *r, struct bgsnap_progress *p)
{
	p->running = 1;
	p->pages_total = r->h->total_pages;
	p->pages_done = atomic_load(&r->pages_done);
	p->bytes_written = 0;
	p->elapsed_ns = bgs_now_ns() - r->t_start;
}

BGSNAP_API int bgsnap_restore_start(struct bgsnap *h, const char *path,
				    const struct bgsnap_restore_opts *opts)
{
	if (!path || !*path)
		return -EINVAL;
	return restore_start(h, path, -1, opts);
}

BGSNAP_API int bgsnap_restore_start_fd(struct bgsnap *h, int fd,
				       const struct bgsnap_restore_opts *opts)
{
	if (fd < 0)
		return -EBADF;
	return restore_start(h, NULL, fd, opts);
}

BGSNAP_API int bgsnap_restore(struct bgsnap *h, const char *path,
			      const struct bgsnap_restore_opts *opts)
{
	const int ret = bgsnap_restore_start(h, path, opts);

	return ret < 0 ? ret : bgsnap_wait(h);
}
