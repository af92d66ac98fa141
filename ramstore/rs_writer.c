/* SPDX-License-Identifier: MIT */
/*
 * The store writer: turns runs of pages into records (zero runs found per
 * 4 KiB page before compressing, lz4 into the arena, raw when lz4 does not
 * shrink a run), keeps the index in memory and writes it with the footer
 * at commit. The file itself is made durable the way redis' rdb.c does:
 * temporary name beside the target, every write reaped, fsync, rename,
 * fsync of the directory. The first error sticks and removes the
 * temporary file at once.
 *
 * The encoder (records made on another thread, appended here later) lives
 * here too: it shares the record code with put_pages, and that sharing,
 * not size, decides the file. Hence just over 1000 lines.
 *
 * put_pages is on the copier's path, often for a single page that a
 * writer waits on: it does no system call unless a chunk of output is
 * ready to go, and no allocation except a doubling of the index.
 */
#include "rs_format.h"
#include "rs_wqueue.h"

#include <errno.h>
#include <fcntl.h>
#include <lz4.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#define RS_DEFAULT_BUDGET (64u << 20)
#define RS_TMP_TRIES	  100

struct rs_wattach {
	uint64_t offset;
	uint32_t stored_len;
	char *name;
};

/* How data records are made, and the CPU time it took (ns, plain: one
 * thread uses a coder at a time). */
struct rs_coder {
	enum rs_compression comp;
	int accel;
	LZ4_stream_t *lz4; /* state for LZ4_compress_fast_extState */
	uint64_t compress_ns, checksum_ns; /* sampled: bgs_stage_start() */
	uint32_t stage_seed;
};

/* One record of an encoded run. */
struct rs_encoded {
	uint32_t region;
	uint64_t first, n; /* pages, from the region's start */
	uint8_t encoding;  /* RS_ENC_ZERO, RAW or LZ4 */
	uint32_t stored_len;
	size_t at; /* the payload's place in the encoder's buffer */
	uint64_t sum, stored;
};

struct rs_encoder {
	const struct rs_writer *w; /* its region table and settings */
	struct rs_coder coder;
	uint8_t *buf; /* payloads, max_pages pages at most */
	struct rs_encoded *rec;
	uint64_t max_pages;
	size_t nrec;
	size_t used;	 /* bytes of buf */
	uint64_t npages; /* pages held, and of those zero */
	uint64_t zero_pages;
};

struct rs_writer {
	struct rs_wq q;
	struct rs_head head; /* what the file header and region table say */
	struct rs_coder coder;
	struct rs_extent *ext; /* PAGES records, in file order until commit */
	size_t next, ext_cap;
	struct rs_wattach *att;
	size_t natt, att_cap;
	int fd;
	int dirfd;     /* path mode: the directory; -1 in fd mode */
	char *tmpname; /* path mode: the temporary name, NULL once gone */
	char *name;    /* path mode: the final name in dirfd */
	int err;       /* the first error; sticks */
	bool urgent;   /* the put under way may go to the overflow */
	bool no_replace;
	/* Written by the writer's thread, read by any (stats): relaxed. */
	_Atomic uint64_t pages, zero_pages, raw_bytes, records;
	_Atomic uint64_t compress_ns, checksum_ns;
};

/* Remove the temporary file (path mode); the descriptor stays open. */
static void discard(struct rs_writer *w)
{
	if (w->tmpname) {
		unlinkat(w->dirfd, w->tmpname, 0);
		free(w->tmpname);
		w->tmpname = NULL;
	}
}

static int fail(struct rs_writer *w, int err)
{
	if (!w->err) {
		w->err = err;
		/* Give the space back now (ENOSPC): nothing can be saved. */
		discard(w);
	}
	return w->err;
}

/* ---- setting up ---------------------------------------------------------- */

static void fill_random(uint8_t *p, size_t n)
{
	static _Atomic uint64_t counter;
	struct timespec ts;
	uint64_t seed[3];

	if (getrandom(p, n, GRND_NONBLOCK) == (ssize_t)n)
		return;
	/* No entropy yet (early boot): unique is what matters here. */
	clock_gettime(CLOCK_REALTIME, &ts);
	seed[0] = (uint64_t)ts.tv_sec << 32 ^ (uint64_t)ts.tv_nsec;
	seed[1] = (uint64_t)getpid();
	seed[2] = atomic_fetch_add(&counter, 1);
	for (size_t i = 0; i < n; i += 8) {
		const uint64_t v = XXH3_64bits_withSeed(seed, sizeof(seed), i);

		memcpy(p + i, &v, n - i < 8 ? n - i : 8);
	}
}

static bool id_is_zero(const uint8_t id[16])
{
	static const uint8_t zero[16];

	return !memcmp(id, zero, 16);
}

static void fill_info(struct rs_head *h, const struct rs_writer_opts *o)
{
	struct rs_info *i = &h->info;
	struct timespec ts;
	struct utsname u;

	i->version_major = RS_VERSION_MAJOR;
	i->version_minor = o->format_1_0 ? 0 : RS_VERSION_MINOR;
	i->page_size = RS_PAGE;
	memcpy(i->snapshot_id, o->snapshot_id, 16);
	if (id_is_zero(i->snapshot_id))
		fill_random(i->snapshot_id, 16);
	memcpy(i->parent_id, o->parent_id, 16);
	h->flags = id_is_zero(i->parent_id) ? 0 : RS_HF_INCREMENTAL;
	if (!o->format_1_0)
		h->flags |= RS_HF_STORED_SUMS;
	h->rechdr_len = o->format_1_0 ? RS_RECHDR_V10 : RS_RECHDR_V11;
	clock_gettime(CLOCK_REALTIME, &ts);
	i->created_ns =
		(uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	if (!uname(&u)) {
		snprintf(i->host, sizeof(i->host), "%.64s", u.nodename);
		snprintf(i->kernel, sizeof(i->kernel), "%.64s", u.release);
	}
	h->header_len = RS_HEADER_SIZE;
}

static int check_opts(const struct rs_writer_opts *o)
{
	ssize_t dup;

	if (!o ||
	    (o->compression != RS_COMP_LZ4 && o->compression != RS_COMP_NONE) ||
	    o->nregions > RS_MAX_REGIONS || (o->nregions && !o->regions))
		return -EINVAL;
	for (size_t i = 0; i < o->nregions; i++)
		if (bgs_rs_region_problem(&o->regions[i]))
			return -EINVAL;
	dup = bgs_rs_region_dup(o->regions, o->nregions);
	if (dup == -ENOMEM)
		return -ENOMEM;
	return dup >= 0 ? -EINVAL : 0;
}

static int coder_init(struct rs_coder *c, enum rs_compression comp, int accel)
{
	c->comp = comp;
	c->accel = accel < 1 ? 1 : accel;
	c->lz4 = comp == RS_COMP_LZ4 ? LZ4_createStream() : NULL;
	return comp == RS_COMP_LZ4 && !c->lz4 ? -ENOMEM : 0;
}

static int writer_new(struct rs_writer **wp, const struct rs_writer_opts *o)
{
	const int ret = check_opts(o);
	struct rs_writer *w;

	if (ret)
		return ret;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->fd = w->dirfd = -1;
	w->head.nregions = o->nregions;
	w->head.regions =
		calloc(o->nregions ? o->nregions : 1, sizeof(*w->head.regions));
	*wp = w;
	if (!w->head.regions ||
	    coder_init(&w->coder, o->compression, o->lz4_acceleration))
		return -ENOMEM;
	if (o->nregions)
		memcpy(w->head.regions, o->regions,
		       o->nregions * sizeof(*w->head.regions));
	fill_info(&w->head, o);
	return 0;
}

static void writer_free(struct rs_writer *w)
{
	bgs_rs_wq_free(&w->q);
	discard(w);
	if (w->dirfd >= 0) { /* path mode: both are ours */
		if (w->fd >= 0)
			close(w->fd);
		close(w->dirfd);
	}
	for (size_t i = 0; i < w->natt; i++)
		free(w->att[i].name);
	free(w->att);
	free(w->ext);
	free(w->name);
	free(w->head.regions);
	LZ4_freeStream(w->coder.lz4);
	free(w);
}

/* Room for two of the largest records: one filling, one being written. */
static size_t arena_size(const struct rs_writer *w, size_t budget)
{
	uint64_t max = RS_RECORD_MAX_PAGES;

	for (size_t i = 0; i < w->head.nregions; i++) {
		const uint64_t m = bgs_rs_region_max_pages(&w->head.regions[i]);

		max = m > max ? m : max;
	}
	max = 2 * (max * RS_PAGE + w->head.rechdr_len);
	if (!budget)
		budget = RS_DEFAULT_BUDGET;
	return budget > max ? budget : max;
}

/* A record header in the store's format. Where the data checksum is of
 * the payload (all but lz4 pages), the stored checksum is the same hash. */
static void put_rechdr(const struct rs_writer *w, void *dst,
		       const struct rs_rechdr *h)
{
	bgs_rs_rec_encode(dst, h, w->head.rechdr_len);
}

/* The file header and the region table, first of all. */
static int write_head(struct rs_writer *w)
{
	const size_t len =
		bgs_rs_regions_size(w->head.regions, w->head.nregions);
	struct rs_disk_header dh;
	uint8_t rec[RS_RECHDR_MAX];
	uint8_t *table = malloc(len ? len : 1);
	uint64_t sum;
	int ret;

	if (!table)
		return -ENOMEM;
	bgs_rs_regions_encode(table, w->head.regions, w->head.nregions);
	bgs_rs_header_encode(&dh, &w->head);
	sum = bgs_rs_hash(table, len);
	put_rechdr(w, rec,
		   &(struct rs_rechdr){
			   .type = RS_REC_REGIONS,
			   .a = (uint32_t)w->head.nregions,
			   .payload_len = len,
			   .data_csum = sum,
			   .stored_csum = sum,
		   });
	ret = bgs_rs_wq_append(&w->q, &dh, sizeof(dh));
	if (!ret)
		ret = bgs_rs_wq_append(&w->q, rec, w->head.rechdr_len);
	if (!ret)
		ret = bgs_rs_wq_append(&w->q, table, len);
	free(table);
	/* A reader at the other end of a pipe learns the regions now. */
	bgs_rs_wq_kick(&w->q);
	return ret ? ret : w->q.err;
}

/* Start the queue, onto w->fd or else @sink, and write the head. */
static int writer_start(struct rs_writer *w, bool stream,
			const struct rs_wq_sink *sink,
			const struct rs_writer_opts *o)
{
	const size_t over = o->overflow_pages * (w->head.rechdr_len + RS_PAGE);
	size_t budget = arena_size(w, o->buffer_budget);
	int ret;

	/* Room for whole pieces in flight and one filling: a sink's write
	 * cut short costs it a whole operation. */
	if (sink && budget < 4 * sink->piece)
		budget = 4 * sink->piece;
	ret = sink ? bgs_rs_wq_init_sink(&w->q, sink, budget, over)
		   : bgs_rs_wq_init(&w->q, w->fd, stream, budget, over,
				    o->sync_io, o->cpus);

	w->q.max_stall_ns = o->max_stall_ns;
	w->no_replace = o->no_replace;
	return ret ? ret : write_head(w);
}

/* A writer with no name to publish: onto @fd (a stream), or into @sink
 * if not NULL. */
static int open_unnamed(struct rs_writer **wp, int fd,
			const struct rs_wq_sink *sink,
			const struct rs_writer_opts *o)
{
	struct rs_writer *w = NULL;
	int ret = writer_new(&w, o);

	*wp = NULL;
	if (!ret && !sink && fd < 0)
		ret = -EBADF;
	if (!ret) {
		w->fd = fd;
		ret = writer_start(w, !sink, sink, o);
	}
	if (ret) {
		if (w)
			writer_free(w);
		return ret;
	}
	*wp = w;
	return 0;
}

int bgs_rs_writer_open_fd(struct rs_writer **wp, int fd,
			  const struct rs_writer_opts *o)
{
	return open_unnamed(wp, fd, NULL, o);
}

int bgs_rs_writer_open_sink(struct rs_writer **wp,
			    const struct rs_wq_sink *sink,
			    const struct rs_writer_opts *o)
{
	return open_unnamed(wp, -1, sink, o);
}

/* Split @path into a directory descriptor and the last component. */
static int open_dir(struct rs_writer *w, const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir;

	if (slash)
		dir = slash == path ? strdup("/")
				    : strndup(path, (size_t)(slash - path));
	else
		dir = strdup(".");
	w->name = strdup(slash ? slash + 1 : path);
	if (!dir || !w->name) {
		free(dir);
		return -ENOMEM;
	}
	w->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(dir);
	if (w->dirfd < 0)
		return -errno;
	return *w->name ? 0 : -EISDIR;
}

/* Refuse what is at the final name unless a file may replace it. */
static int check_target(const struct rs_writer *w)
{
	struct stat st;

	if (fstatat(w->dirfd, w->name, &st, AT_SYMLINK_NOFOLLOW))
		return errno == ENOENT ? 0 : -errno;
	if (S_ISLNK(st.st_mode))
		return -ELOOP;
	return S_ISDIR(st.st_mode) ? -EISDIR : 0;
}

static int create_temp(struct rs_writer *w)
{
	char name[256];
	uint8_t rnd[6];

	for (int i = 0; i < RS_TMP_TRIES; i++) {
		fill_random(rnd, sizeof(rnd));
		snprintf(name, sizeof(name),
			 ".%.200s.%02x%02x%02x%02x%02x%02x.tmp", w->name,
			 rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
		/* 0600: it holds process memory. */
		w->fd = openat(w->dirfd, name,
			       O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
				       O_CLOEXEC,
			       0600);
		if (w->fd >= 0) {
			/* Straight to the device where the filesystem can
			 * (rs_wqueue.h); set here, not at open, because some
			 * refuse O_DIRECT only after creating the file. */
			const int fl = fcntl(w->fd, F_GETFL);

			if (fl >= 0)
				fcntl(w->fd, F_SETFL, fl | O_DIRECT);
			w->tmpname = strdup(name);
			return w->tmpname ? 0 : -ENOMEM;
		}
		if (errno != EEXIST)
			return -errno;
	}
	return -EEXIST;
}

int bgs_rs_writer_open_path(struct rs_writer **wp, const char *path,
			    const struct rs_writer_opts *o)
{
	struct rs_writer *w = NULL;
	int ret = writer_new(&w, o);

	*wp = NULL;
	if (!ret)
		ret = path ? open_dir(w, path) : -EINVAL;
	if (!ret)
		ret = check_target(w);
	if (!ret)
		ret = create_temp(w);
	if (!ret)
		ret = writer_start(w, false, NULL, o);
	if (ret) {
		if (w)
			writer_free(w);
		return ret;
	}
	*wp = w;
	return 0;
}

/* ---- records ------------------------------------------------------------- */

static int add_extent(struct rs_writer *w, const struct rs_extent *e)
{
	if (w->next == w->ext_cap &&
	    bgs_rs_grow(&w->ext, &w->ext_cap, w->next + 1, sizeof(*w->ext)))
		return -ENOMEM;
	w->ext[w->next++] = *e;
	bgs_rs_stat_add(&w->records, 1);
	return 0;
}

/* Check a run handed in: in a region that stores pages, inside it, and
 * whole huge pages. */
static int check_run(struct rs_writer *w, uint32_t region, uint64_t first,
		     uint64_t npages)
{
	const struct rs_region *r;
	uint64_t pages, unit;

	if (w->err)
		return w->err;
	if (region >= w->head.nregions)
		return fail(w, -EINVAL);
	r = &w->head.regions[region];
	pages = bgs_rs_region_pages(r);
	unit = bgs_rs_region_unit(r);
	if (r->kind == RS_KIND_UNSAVED || first % unit || npages % unit)
		return fail(w, -EINVAL);
	if (first > pages || npages > pages - first)
		return fail(w, RS_ERANGE);
	return 0;
}

/* A record without payload: ZERO or PARENT. */
static int emit_empty(struct rs_writer *w, uint32_t region, uint64_t first,
		      uint64_t n, uint8_t enc)
{
	const struct rs_extent e = {
		.region = region,
		.encoding = enc,
		.first = first,
		.npages = n,
		.offset = bgs_rs_wq_pos(&w->q),
	};
	const uint32_t hl = w->head.rechdr_len;
	uint8_t *p;
	int ret = bgs_rs_wq_reserve(&w->q, hl, w->urgent, &p);

	if (ret)
		return ret;
	put_rechdr(w, p,
		   &(struct rs_rechdr){ .type = RS_REC_PAGES,
					.encoding = enc,
					.a = region,
					.b = (uint32_t)n,
					.c = first,
					.stored_csum = RS_EMPTY_SUM });
	bgs_rs_wq_produce(&w->q, hl);
	return add_extent(w, &e);
}

/*
 * Make the payload of @rec (its pages at @src) at @dst, room for them all:
 * lz4 when it shrinks them, else a copy; and both checksums.
 */
static void encode_data(struct rs_coder *c, const uint8_t *src, uint8_t *dst,
			struct rs_encoded *rec)
{
	const size_t raw = rec->n * RS_PAGE;
	uint64_t t = bgs_stage_start(&c->stage_seed);

	rec->encoding = RS_ENC_RAW;
	rec->stored_len = (uint32_t)raw;
	if (c->comp == RS_COMP_LZ4) {
		/* What LZ4_compress_fast does, without its 16 KiB of stack;
		 * a bound of raw - 1 gives up as soon as it cannot shrink. */
		const int n = LZ4_compress_fast_extState(
			c->lz4, (const char *)src, (char *)dst, (int)raw,
			(int)raw - 1, c->accel);

		t = bgs_stage_lap(&c->compress_ns, t);
		if (n > 0) {
			rec->encoding = RS_ENC_LZ4;
			rec->stored_len = (uint32_t)n;
		}
	}
	/* Both sums after lz4, which brought the pages into the cache (they
	 * may be the owner's own memory, read nowhere else): the block just
	 * made is there too. */
	rec->sum = bgs_rs_hash(src, raw);
	rec->stored = rec->encoding == RS_ENC_RAW
			      ? rec->sum
			      : bgs_rs_hash(dst, rec->stored_len);
	bgs_stage_lap(&c->checksum_ns, t);
	if (rec->encoding == RS_ENC_RAW)
		memcpy(dst, src, raw);
}

/* The coder's CPU time into the writer's statistics. */
static void count_coder(struct rs_writer *w, struct rs_coder *c)
{
	bgs_rs_stat_add(&w->compress_ns, c->compress_ns);
	bgs_rs_stat_add(&w->checksum_ns, c->checksum_ns);
	c->compress_ns = c->checksum_ns = 0;
}

/* Append the record @rec of region @region, whose payload is at @payload
 * (or already in place in the arena: NULL). */
static int append_data(struct rs_writer *w, uint32_t region,
		       const struct rs_encoded *rec, uint8_t *p,
		       const uint8_t *payload)
{
	const uint32_t hl = w->head.rechdr_len;
	const struct rs_extent e = {
		.region = region,
		.encoding = rec->encoding,
		.first = rec->first,
		.npages = rec->n,
		.offset = bgs_rs_wq_pos(&w->q),
		.stored_len = rec->stored_len,
	};

	if (payload)
		memcpy(p + hl, payload, rec->stored_len);
	put_rechdr(w, p,
		   &(struct rs_rechdr){ .type = RS_REC_PAGES,
					.encoding = rec->encoding,
					.a = region,
					.b = (uint32_t)rec->n,
					.c = rec->first,
					.payload_len = rec->stored_len,
					.data_csum = rec->sum,
					.stored_csum = rec->stored });
	bgs_rs_wq_produce(&w->q, hl + rec->stored_len);
	bgs_rs_stat_add(&w->raw_bytes, rec->n * RS_PAGE);
	return add_extent(w, &e);
}

/* Compress (or copy) @n pages at @src into the arena as one record. */
static int emit_data(struct rs_writer *w, uint32_t region, uint64_t first,
		     uint64_t n, const uint8_t *src)
{
	const uint32_t hl = w->head.rechdr_len;
	struct rs_encoded rec = { .first = first, .n = n };
	uint8_t *p;
	int ret = bgs_rs_wq_reserve(&w->q, hl + n * RS_PAGE, w->urgent, &p);

	if (ret)
		return ret;
	encode_data(&w->coder, src, p + hl, &rec);
	count_coder(w, &w->coder);
	return append_data(w, region, &rec, p, NULL);
}

/* Pages [0, *n) at @p that are all zero, or all not, in units of @unit
 * pages (a huge page is zero only if all of it is), at most @max. */
static bool classify(const uint8_t *p, uint64_t *n, uint64_t unit, uint64_t max)
{
	bool zero = true;
	uint64_t i = 0;

	while (i < *n && i < max) {
		bool z = true;

		for (uint64_t k = 0; k < unit && z; k++)
			z = bgs_rs_page_is_zero(p + (i + k) * RS_PAGE);
		if (i && z != zero)
			break;
		zero = z;
		i += unit;
	}
	*n = i;
	return zero;
}

int bgs_rs_put_pages(struct rs_writer *w, uint32_t region, uint64_t first,
		     uint64_t npages, const void *src)
{
	const uint8_t *p = src;
	int ret = check_run(w, region, first, npages);
	uint64_t unit, max, zero = 0;

	if (ret)
		return ret;
	unit = bgs_rs_region_unit(&w->head.regions[region]);
	max = bgs_rs_region_max_pages(&w->head.regions[region]);
	for (uint64_t done = 0, n; done < npages; done += n) {
		const uint8_t *at = p + done * RS_PAGE;
		bool z;

		n = npages - done;
		z = classify(at, &n, unit, max);
		if (z) {
			ret = emit_empty(w, region, first + done, n,
					 RS_ENC_ZERO);
			zero += n;
		} else {
			ret = emit_data(w, region, first + done, n, at);
		}
		if (ret)
			return fail(w, ret);
	}
	bgs_rs_stat_add(&w->pages, npages);
	bgs_rs_stat_add(&w->zero_pages, zero);
	return 0;
}

/* ---- encoding apart from writing ---------------------------------------- */

int bgs_rs_encoder_new(struct rs_encoder **ep, const struct rs_writer *w,
		       uint64_t max_pages)
{
	struct rs_encoder *e = calloc(1, sizeof(*e));

	*ep = e;
	if (!e)
		return -ENOMEM;
	e->w = w;
	e->max_pages = max_pages;
	e->buf = malloc(max_pages * RS_PAGE);
	e->rec = calloc(max_pages ? max_pages : 1, sizeof(*e->rec));
	if (!e->buf || !e->rec ||
	    coder_init(&e->coder, w->coder.comp, w->coder.accel)) {
		bgs_rs_encoder_free(e);
		*ep = NULL;
		return -ENOMEM;
	}
	return 0;
}

void bgs_rs_encoder_free(struct rs_encoder *e)
{
	if (!e)
		return;
	LZ4_freeStream(e->coder.lz4);
	free(e->buf);
	free(e->rec);
	free(e);
}

int bgs_rs_encode(struct rs_encoder *e, uint32_t region, uint64_t first,
		  uint64_t npages, const void *src)
{
	const struct rs_region *r;
	uint64_t unit, max;

	if (region >= e->w->head.nregions || npages > e->max_pages - e->npages)
		return -EINVAL;
	r = &e->w->head.regions[region];
	if (first > bgs_rs_region_pages(r) ||
	    npages > bgs_rs_region_pages(r) - first)
		return RS_ERANGE;
	unit = bgs_rs_region_unit(r);
	max = bgs_rs_region_max_pages(r);
	for (uint64_t done = 0, n; done < npages; done += n) {
		const uint8_t *p = (const uint8_t *)src + done * RS_PAGE;
		struct rs_encoded *rec = &e->rec[e->nrec++];
		bool zero;

		n = npages - done;
		zero = classify(p, &n, unit, max);
		*rec = (struct rs_encoded){ .region = region,
					    .first = first + done,
					    .n = n,
					    .encoding = RS_ENC_ZERO,
					    .at = e->used };
		if (zero) {
			e->zero_pages += n;
			continue;
		}
		encode_data(&e->coder, p, e->buf + e->used, rec);
		e->used += rec->stored_len;
	}
	e->npages += npages;
	return 0;
}

int bgs_rs_put_encoded(struct rs_writer *w, struct rs_encoder *e)
{
	const uint32_t hl = w->head.rechdr_len;
	int ret = 0;

	for (size_t i = 0; i < e->nrec && !ret; i++) {
		const struct rs_encoded *rec = &e->rec[i];
		uint8_t *p;

		ret = check_run(w, rec->region, rec->first, rec->n);
		if (ret)
			break;
		if (rec->encoding == RS_ENC_ZERO) {
			ret = emit_empty(w, rec->region, rec->first, rec->n,
					 RS_ENC_ZERO);
			continue;
		}
		ret = bgs_rs_wq_reserve(&w->q, hl + rec->stored_len, w->urgent,
					&p);
		if (!ret)
			ret = append_data(w, rec->region, rec, p,
					  e->buf + rec->at);
	}
	if (ret)
		return fail(w, ret);
	count_coder(w, &e->coder);
	bgs_rs_stat_add(&w->pages, e->npages);
	bgs_rs_stat_add(&w->zero_pages, e->zero_pages);
	bgs_rs_encoder_clear(e);
	return 0;
}

void bgs_rs_encoder_clear(struct rs_encoder *e)
{
	e->nrec = e->used = 0;
	e->npages = e->zero_pages = 0;
}

void bgs_rs_writer_urgent(struct rs_writer *w, bool urgent)
{
	w->urgent = urgent;
}

bool bgs_rs_writer_ready(struct rs_writer *w, uint64_t npages)
{
	/* The most a run can take: a record per page, none compressed. */
	return bgs_rs_wq_ready(&w->q, npages * (w->head.rechdr_len + RS_PAGE));
}

int bgs_rs_writer_wait_fd(const struct rs_writer *w)
{
	return bgs_rs_wq_wait_fd(&w->q);
}

static int put_empty(struct rs_writer *w, uint32_t region, uint64_t first,
		     uint64_t npages, uint8_t enc)
{
	int ret = check_run(w, region, first, npages);
	uint64_t max;

	if (ret)
		return ret;
	max = bgs_rs_region_max_pages(&w->head.regions[region]);
	for (uint64_t done = 0, n; done < npages; done += n) {
		n = npages - done < max ? npages - done : max;
		ret = emit_empty(w, region, first + done, n, enc);
		if (ret)
			return fail(w, ret);
	}
	bgs_rs_stat_add(&w->pages, npages);
	if (enc == RS_ENC_ZERO)
		bgs_rs_stat_add(&w->zero_pages, npages);
	return 0;
}

int bgs_rs_put_zero(struct rs_writer *w, uint32_t region, uint64_t first,
		    uint64_t npages)
{
	return put_empty(w, region, first, npages, RS_ENC_ZERO);
}

int bgs_rs_put_parent(struct rs_writer *w, uint32_t region, uint64_t first,
		      uint64_t npages)
{
	if (!w->err && !(w->head.flags & RS_HF_INCREMENTAL))
		return fail(w, -EINVAL);
	return put_empty(w, region, first, npages, RS_ENC_PARENT);
}

/* ---- attachments --------------------------------------------------------- */

static int check_attachment(const struct rs_writer *w, const char *name,
			    const void *data, size_t len)
{
	const size_t n = name ? strnlen(name, RS_NAME_MAX + 1) : 0;

	if (!bgs_rs_name_ok(name, n) || len > RS_ATTACHMENT_MAX ||
	    (len && !data))
		return -EINVAL;
	if (w->natt >= RS_MAX_ATTACHMENTS)
		return -ENOSPC;
	for (size_t i = 0; i < w->natt; i++)
		if (!strcmp(w->att[i].name, name))
			return -EEXIST;
	return 0;
}

static uint64_t attachment_sum(const char *name, const void *data, size_t len)
{
	XXH3_state_t st;

	XXH3_64bits_reset(&st);
	XXH3_64bits_update(&st, name, strlen(name));
	XXH3_64bits_update(&st, data, len);
	return XXH3_64bits_digest(&st);
}

int bgs_rs_put_attachment(struct rs_writer *w, const char *name,
			  const void *data, size_t len)
{
	uint8_t rec[RS_RECHDR_MAX];
	struct rs_wattach a;
	uint64_t sum;
	size_t nlen;
	int ret;

	if (w->err)
		return w->err;
	ret = check_attachment(w, name, data, len);
	if (!ret)
		ret = bgs_rs_grow(&w->att, &w->att_cap, w->natt + 1,
				  sizeof(*w->att));
	if (ret)
		return fail(w, ret);
	nlen = strlen(name);
	a = (struct rs_wattach){ .offset = bgs_rs_wq_pos(&w->q),
				 .stored_len = (uint32_t)(nlen + len),
				 .name = strdup(name) };
	if (!a.name)
		return fail(w, -ENOMEM);
	w->att[w->natt++] = a;
	sum = attachment_sum(name, data, len);
	put_rechdr(w, rec,
		   &(struct rs_rechdr){
			   .type = RS_REC_ATTACHMENT,
			   .a = (uint32_t)nlen,
			   .c = len,
			   .payload_len = nlen + len,
			   .data_csum = sum,
			   .stored_csum = sum,
		   });
	ret = bgs_rs_wq_append(&w->q, rec, w->head.rechdr_len);
	if (!ret)
		ret = bgs_rs_wq_append(&w->q, name, nlen);
	if (!ret)
		ret = bgs_rs_wq_append(&w->q, data, len);
	return ret ? fail(w, ret) : 0;
}

/* ---- commit -------------------------------------------------------------- */

/* Index entries are encoded a chunk at a time, twice (once for the
 * checksum the header carries, once to write them): no second copy of a
 * large index in memory. */
#define INDEX_CHUNK 1024u

static void encode_index(const struct rs_writer *w, size_t from, size_t n,
			 struct rs_disk_index *ix)
{
	for (size_t i = from; i < from + n; i++) {
		if (i < w->natt)
			bgs_rs_index_encode(
				&ix[i - from], RS_REC_ATTACHMENT,
				&(struct rs_extent){
					.offset = w->att[i].offset,
					.stored_len = w->att[i].stored_len,
				});
		else
			bgs_rs_index_encode(&ix[i - from], RS_REC_PAGES,
					    &w->ext[i - w->natt]);
	}
}

static int write_index(struct rs_writer *w)
{
	const size_t n = w->natt + w->next;
	struct rs_disk_index ix[INDEX_CHUNK];
	uint8_t rec[RS_RECHDR_MAX];
	XXH3_state_t st;
	uint64_t sum;
	int ret;

	XXH3_64bits_reset(&st);
	for (size_t i = 0; i < n; i += INDEX_CHUNK) {
		const size_t k = n - i < INDEX_CHUNK ? n - i : INDEX_CHUNK;

		encode_index(w, i, k, ix);
		XXH3_64bits_update(&st, ix, k * sizeof(*ix));
	}
	sum = XXH3_64bits_digest(&st);
	put_rechdr(w, rec,
		   &(struct rs_rechdr){
			   .type = RS_REC_INDEX,
			   .c = n,
			   .payload_len = n * sizeof(*ix),
			   .data_csum = sum,
			   .stored_csum = sum,
		   });
	ret = bgs_rs_wq_append(&w->q, rec, w->head.rechdr_len);
	for (size_t i = 0; i < n && !ret; i += INDEX_CHUNK) {
		const size_t k = n - i < INDEX_CHUNK ? n - i : INDEX_CHUNK;

		encode_index(w, i, k, ix);
		ret = bgs_rs_wq_append(&w->q, ix, k * sizeof(*ix));
	}
	return ret;
}

static int write_footer(struct rs_writer *w, uint64_t index_offset)
{
	struct rs_footer f = {
		.index_offset = index_offset,
		.file_size = bgs_rs_wq_pos(&w->q) + RS_FOOTER_SIZE,
		.nrecords = w->next,
		.nattachments = w->natt,
	};
	struct rs_disk_footer d;

	memcpy(f.snapshot_id, w->head.info.snapshot_id, 16);
	bgs_rs_footer_encode(&d, &f);
	return bgs_rs_wq_append(&w->q, &d, sizeof(d));
}

static int sync_file(const struct rs_writer *w)
{
	struct stat st;

	if (w->fd < 0) /* a sink: stored is stored */
		return 0;
	if (fstat(w->fd, &st))
		return -errno;
	/* A pipe or socket has nothing to sync. */
	if (S_ISREG(st.st_mode) && fsync(w->fd))
		return -errno;
	return 0;
}

/* Put the file under its final name, durably. */
static int publish(struct rs_writer *w)
{
	if (renameat2(w->dirfd, w->tmpname, w->dirfd, w->name,
		      w->no_replace ? RENAME_NOREPLACE : 0))
		return -errno;
	free(w->tmpname);
	w->tmpname = NULL;
	return fsync(w->dirfd) ? -errno : 0;
}

static int finish(struct rs_writer *w)
{
	const uint64_t index_offset = bgs_rs_wq_pos(&w->q);
	int ret;

	if (w->next)
		qsort(w->ext, w->next, sizeof(*w->ext), bgs_rs_extent_cmp);
	ret = bgs_rs_coverage(&w->head, w->ext, w->next, NULL);
	if (!ret)
		ret = write_index(w);
	if (!ret)
		ret = write_footer(w, index_offset);
	if (!ret)
		ret = bgs_rs_wq_flush(&w->q);
	if (!ret)
		ret = sync_file(w);
	if (!ret && w->dirfd >= 0)
		ret = publish(w);
	return ret;
}

int bgs_rs_writer_commit(struct rs_writer *w)
{
	int ret = w->err;

	if (!ret)
		ret = finish(w);
	if (ret)
		fail(w, ret);
	writer_free(w);
	return ret;
}

void bgs_rs_writer_abort(struct rs_writer *w)
{
	if (w)
		writer_free(w);
}

uint64_t bgs_rs_writer_records(const struct rs_writer *w)
{
	return w->next;
}

uint64_t bgs_rs_writer_pages_since(const struct rs_writer *w, uint64_t since)
{
	uint64_t pages = 0;

	for (size_t i = since; i < w->next; i++)
		pages += w->ext[i].npages;
	return pages;
}

void bgs_rs_writer_stats(const struct rs_writer *w, struct rs_writer_stats *s)
{
	const memory_order o = memory_order_relaxed;

	s->pages = atomic_load_explicit(&w->pages, o);
	s->zero_pages = atomic_load_explicit(&w->zero_pages, o);
	s->raw_bytes = atomic_load_explicit(&w->raw_bytes, o);
	s->stored_bytes = atomic_load_explicit(&w->q.stored, o);
	s->records = atomic_load_explicit(&w->records, o);
	s->peak_buffer_bytes = atomic_load_explicit(&w->q.peak, o);
	s->peak_overflow_bytes = atomic_load_explicit(&w->q.peak_over, o);
	s->compress_ns = atomic_load_explicit(&w->compress_ns, o);
	s->checksum_ns = atomic_load_explicit(&w->checksum_ns, o);
}

int bgs_rs_measure_lz4(const void *src, size_t len, int accel, uint64_t *ns,
		       uint64_t *stored)
{
	const size_t block = RS_RECORD_MAX_PAGES * RS_PAGE;
	LZ4_stream_t *lz4 = LZ4_createStream();
	char *dst = malloc(block);
	struct timespec t0, t1;

	*ns = *stored = 0;
	if (!lz4 || !dst) {
		LZ4_freeStream(lz4);
		free(dst);
		return -ENOMEM;
	}
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
	for (size_t off = 0; off < len; off += block) {
		const int raw = (int)(len - off < block ? len - off : block);
		const int c = LZ4_compress_fast_extState(
			lz4, (const char *)src + off, dst, raw, raw - 1,
			accel < 1 ? 1 : accel);

		*stored += (uint64_t)(c > 0 ? c : raw);
	}
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
	*ns = (uint64_t)(t1.tv_sec - t0.tv_sec) * 1000000000u +
	      (uint64_t)t1.tv_nsec - (uint64_t)t0.tv_nsec;
	LZ4_freeStream(lz4);
	free(dst);
	return 0;
}
