/* SPDX-License-Identifier: MIT */
/*
 * Sequential decoding without the index (rs_stream.h). Data is read into
 * a window that grows only as far as data actually arrives, so a length
 * in a hostile header costs nothing until the bytes are there; every
 * length is checked against the format's bounds before it is used.
 */
#include "rs_stream.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#define RS_STREAM_BUF_PIPE (256u << 10)
#define RS_STREAM_BUF_FILE (4u << 20)
/* Read-ahead for files of at least RA_MIN: chunks of RA_CHUNK, carrying
 * over records of up to RA_PREFIX (any but a huge page over 2 MiB). */
#define RS_RA_MIN    (16u << 20)
#define RS_RA_CHUNK  (4u << 20)
#define RS_RA_PREFIX ((2u << 20) + (64u << 10))

struct rs_sattach {
	uint64_t offset;
	uint32_t stored_len;
	char *name;
};

struct rs_stream {
	int fd;
	bool positional; /* pread from rpos (verify of a file) */
	bool eof;
	bool no_decode;	  /* 1.1 page records checked as stored, not
			  * decoded (verify without RS_VERIFY_DEEP) */
	uint64_t rpos;	  /* positional: offset of the next read */
	struct rs_ra *ra; /* positional read-ahead, which owns buf; or NULL */
	uint8_t *buf;	  /* the window: unconsumed bytes are [head, tail) */
	size_t cap, head, tail, first_cap;
	uint64_t pos; /* file offset of buf[head] */
	struct rs_head h;
	struct rs_extent *seen; /* PAGES records, file order, sorted at end */
	size_t nseen, seen_cap;
	struct rs_sattach *att;
	size_t natt, att_cap;
	uint8_t *out; /* decoded lz4 pages */
	size_t out_cap;
	char name[RS_NAME_MAX + 1]; /* the last attachment's */
	int state;		    /* 1 going, 0 clean end, < 0 the error */
	struct rs_diag last;	    /* what that error said */
	int tee;		    /* every byte read is copied here; or -1 */
	uint64_t limit;		    /* bytes the stream may have; 0: any */
	/* With a limit: bytes of page records, and of the others, so far
	 * and at most (page records as the regions can hold). */
	uint64_t page_bytes, page_max, other_bytes, other_max;
};

/* ---- the window ---------------------------------------------------------- */

static int write_all(int fd, const uint8_t *p, size_t len)
{
	while (len) {
		const ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int read_more(struct rs_stream *s)
{
	const size_t room = s->cap - s->tail;
	ssize_t n;

	/* A copy (tee) stops at a signal: its caller may be asked to. */
	do
		n = s->positional ? pread(s->fd, s->buf + s->tail, room,
					  (off_t)s->rpos)
				  : read(s->fd, s->buf + s->tail, room);
	while (n < 0 && errno == EINTR && s->tee < 0);
	if (n < 0)
		return -errno;
	if (s->limit && s->rpos + (uint64_t)n > s->limit)
		return -EFBIG;
	if (n > 0 && s->tee >= 0) {
		const int ret = write_all(s->tee, s->buf + s->tail, (size_t)n);

		if (ret)
			return ret;
	}
	s->eof = n == 0;
	s->tail += (size_t)n;
	s->rpos += (uint64_t)n;
	return 0;
}

/* Make room after tail, by moving the unconsumed bytes to the start or by
 * growing the window, never beyond @need or twice the data present. */
static int make_room(struct rs_stream *s, size_t need)
{
	size_t cap;
	uint8_t *p;

	if (s->head && s->head + need > s->cap) {
		memmove(s->buf, s->buf + s->head, s->tail - s->head);
		s->tail -= s->head;
		s->head = 0;
	}
	if (s->tail < s->cap)
		return 0;
	cap = s->cap ? 2 * s->cap : s->first_cap;
	if (cap > need && need > s->first_cap)
		cap = need;
	p = realloc(s->buf, cap);
	if (!p)
		return -ENOMEM;
	s->buf = p;
	s->cap = cap;
	return 0;
}

/* The next chunk from read-ahead, the unconsumed bytes carried over. */
static int next_chunk(struct rs_stream *s)
{
	const uint8_t *left = s->buf ? s->buf + s->head : NULL; /* first */
	struct rs_window w;
	const int ret = bgs_rs_ra_next(s->ra, left, s->tail - s->head, &w);

	if (ret)
		return ret;
	s->buf = w.buf;
	s->head = w.head;
	s->tail = w.tail;
	s->cap = w.cap;
	s->rpos += w.got;
	s->eof = !w.got;
	return 0;
}

/* A record too large for read-ahead: on with plain reads from here. */
static int stop_readahead(struct rs_stream *s)
{
	const size_t len = s->tail - s->head;
	const size_t cap = len > s->first_cap ? len : s->first_cap;
	uint8_t *p = malloc(cap);

	if (!p)
		return -ENOMEM;
	if (len)
		memcpy(p, s->buf + s->head, len);
	bgs_rs_ra_free(s->ra); /* its read in flight is not used */
	s->ra = NULL;
	s->buf = p;
	s->head = 0;
	s->tail = len;
	s->cap = cap;
	return 0;
}

/* At least @need unconsumed bytes at s->buf + s->head, or RS_ETRUNCATED. */
static int fill(struct rs_stream *s, size_t need)
{
	while (s->tail - s->head < need) {
		int ret = 0;

		if (s->eof)
			return RS_ETRUNCATED;
		if (s->ra && need <= RS_RA_PREFIX) {
			ret = next_chunk(s);
		} else {
			if (s->ra)
				ret = stop_readahead(s);
			if (!ret)
				ret = make_room(s, need);
			if (!ret)
				ret = read_more(s);
		}
		if (ret)
			return ret;
	}
	return 0;
}

static void consume(struct rs_stream *s, size_t n)
{
	s->head += n;
	s->pos += n;
}

static const uint8_t *at(const struct rs_stream *s, size_t off)
{
	return s->buf + s->head + off;
}

/* The payload of the record whose header is at the current position. */
static const uint8_t *payload(const struct rs_stream *s)
{
	return at(s, s->h.rechdr_len);
}

/* Skip @n bytes (the payload of a record of unknown type) without
 * holding them, hashing them into @st. */
static int skip(struct rs_stream *s, uint64_t n, XXH3_state_t *st)
{
	for (;;) {
		const size_t avail = s->tail - s->head;
		const size_t k = n < avail ? (size_t)n : avail;
		int ret;

		XXH3_64bits_update(st, at(s, 0), k);
		consume(s, k);
		n -= k;
		if (!n)
			return 0;
		ret = fill(s, 1);
		if (ret)
			return ret;
	}
}

static int ended(struct rs_stream *s, int ret, struct rs_diag *d,
		 const char *what)
{
	if (ret == RS_ETRUNCATED)
		return bgs_rs_diag(
			d, ret, s->pos + (s->tail - s->head),
			"the store ends at offset %llu, inside %s",
			(unsigned long long)(s->pos + s->tail - s->head), what);
	if (ret == -EFBIG) /* a malformed stream, as one too long is */
		return bgs_rs_diag(d, RS_ECORRUPT, s->pos,
				   "the stream goes on past %llu bytes, the "
				   "most a snapshot of its regions can have",
				   (unsigned long long)s->limit);
	if (ret == -EINTR)
		return bgs_rs_diag(d, ret, s->pos,
				   "reading the stream: interrupted by a "
				   "signal");
	if (ret < 0 && ret > -4096)
		return bgs_rs_diag(d, ret, s->pos, "reading the store: %s",
				   strerror(-ret));
	return ret;
}

/* Read and check the record header at the current position. */
static int next_header(struct rs_stream *s, struct rs_rechdr *rh,
		       struct rs_diag *d)
{
	const int ret = fill(s, s->h.rechdr_len);

	if (ret)
		return ended(s, ret, d, "a record header");
	return bgs_rs_rec_decode(rh, at(s, 0), s->h.rechdr_len, s->pos, d);
}

/* ---- opening: file header and region table ------------------------------- */

static int read_header(struct rs_stream *s, struct rs_diag *d)
{
	int ret = fill(s, 16);

	if (ret && ret != RS_ETRUNCATED)
		return ended(s, ret, d, "the file header");
	ret = bgs_rs_header_start(at(s, 0), s->tail - s->head, &s->h.header_len,
				  d);
	if (ret)
		return ret;
	ret = fill(s, s->h.header_len);
	if (ret)
		return ended(s, ret, d, "the file header");
	ret = bgs_rs_header_decode(&s->h, at(s, 0), d);
	if (ret)
		return ret;
	consume(s, s->h.header_len);
	return 0;
}

static int read_regions(struct rs_stream *s, struct rs_diag *d)
{
	struct rs_rechdr rh;
	int ret = next_header(s, &rh, d);

	if (!ret)
		ret = bgs_rs_regions_check_hdr(&s->h, &rh, d);
	if (ret)
		return ret;
	/* Bounded: at most RS_MAX_REGIONS entries of at most 1055 bytes. */
	ret = fill(s, s->h.rechdr_len + rh.payload_len);
	if (ret)
		return ended(s, ret, d, "the region table");
	if (!bgs_rs_csum_ok(rh.data_csum,
			    bgs_rs_hash(payload(s), rh.payload_len)))
		return bgs_rs_diag(d, RS_ECHECKSUM, s->pos,
				   "region table: checksum mismatch");
	ret = bgs_rs_regions_decode(&s->h, payload(s), rh.payload_len, d);
	if (ret)
		return ret;
	consume(s, s->h.rechdr_len + rh.payload_len);
	s->h.data_start = s->pos;
	return 0;
}

/* Takes @ra, whatever the result. */
static int stream_new(struct rs_stream **sp, int fd, bool positional,
		      bool no_decode, size_t first_cap, struct rs_ra *ra,
		      struct rs_diag *d)
{
	struct rs_stream *s = calloc(1, sizeof(*s));
	int ret;

	*sp = NULL;
	if (!s) {
		bgs_rs_ra_free(ra);
		return bgs_rs_diag(d, -ENOMEM, 0, "out of memory");
	}
	s->ra = ra;
	s->fd = fd;
	s->positional = positional;
	s->first_cap = first_cap;
	s->no_decode = no_decode;
	s->state = 1;
	s->tee = -1;
	ret = read_header(s, d);
	if (!ret)
		ret = read_regions(s, d);
	if (ret) {
		bgs_rs_stream_close(s);
		return ret;
	}
	*sp = s;
	return 0;
}

int bgs_rs_stream_open(struct rs_stream **s, int fd, struct rs_diag *diag)
{
	return stream_new(s, fd, false, false, RS_STREAM_BUF_PIPE, NULL, diag);
}

/* The largest stream of the regions in @s's header: every page of a
 * saved region in a record of its own, as large as lz4 may make it; RS_STREAM_ATTACH_MAX
 * bytes of attachments and skippable records; the index of all these
 * records; the footer. */
static void stream_bound(struct rs_stream *s)
{
	const uint64_t h = s->h.rechdr_len;
	const uint64_t lz4_page = RS_PAGE + RS_PAGE / 255 + 16;
	uint64_t pages = 0;

	/* An unsaved region is recorded by name only: it holds no page. */
	for (size_t i = 0; i < s->h.nregions; i++)
		if (s->h.regions[i].kind != RS_KIND_UNSAVED)
			pages += s->h.regions[i].length / RS_PAGE;
	s->page_max = pages * (h + lz4_page);
	s->other_max = RS_MAX_ATTACHMENTS * h + RS_STREAM_ATTACH_MAX;
	s->limit = s->pos + s->page_max + s->other_max + h +
		   (pages + RS_MAX_ATTACHMENTS) * RS_INDEX_ENTRY_SIZE +
		   RS_FOOTER_SIZE;
}

/* A record beyond what a snapshot of the regions can hold: refused at its
 * header, before its payload is read. */
static int over_budget(struct rs_stream *s, const struct rs_rechdr *rh,
		       uint64_t off, struct rs_diag *d)
{
	const uint64_t len = s->h.rechdr_len + rh->payload_len;
	const bool pages = rh->type == RS_REC_PAGES;
	uint64_t *used = pages ? &s->page_bytes : &s->other_bytes;
	const uint64_t max = pages ? s->page_max : s->other_max;

	if (!s->limit || rh->type == RS_REC_INDEX)
		return 0;
	if (len <= max - *used) {
		*used += len;
		return 0;
	}
	return bgs_rs_diag(d, RS_ECORRUPT, off,
			   "record at offset %llu: %s records beyond the "
			   "%llu bytes a snapshot of its regions can hold",
			   (unsigned long long)off,
			   pages ? "page" : "attachment and other",
			   (unsigned long long)max);
}

int bgs_rs_stream_open_tee(struct rs_stream **sp, int fd, int tee,
			   struct rs_diag *diag)
{
	struct rs_stream *s = calloc(1, sizeof(*s));
	int ret;

	*sp = NULL;
	if (!s)
		return bgs_rs_diag(diag, -ENOMEM, 0, "out of memory");
	s->fd = fd;
	s->first_cap = RS_STREAM_BUF_PIPE;
	s->no_decode = true;
	s->state = 1;
	s->tee = tee;
	ret = read_header(s, diag);
	if (!ret)
		ret = read_regions(s, diag);
	if (ret) {
		bgs_rs_stream_close(s);
		return ret;
	}
	stream_bound(s);
	*sp = s;
	return 0;
}

int bgs_rs_stream_open_file(struct rs_stream **s, int fd, uint64_t size,
			    bool decode, struct rs_diag *diag)
{
	const size_t cap = size < RS_STREAM_BUF_FILE ? (size_t)size + 1
						     : RS_STREAM_BUF_FILE;
	struct rs_ra *ra = NULL;

	/* Small files are not worth a ring; without io_uring, plain reads. */
	if (size >= RS_RA_MIN &&
	    bgs_rs_ra_new(&ra, fd, 0, RS_RA_PREFIX, RS_RA_CHUNK))
		ra = NULL;
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	return stream_new(s, fd, true, !decode, cap, ra, diag);
}

void bgs_rs_stream_close(struct rs_stream *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->natt; i++)
		free(s->att[i].name);
	free(s->att);
	free(s->seen);
	free(s->out);
	if (s->ra)
		bgs_rs_ra_free(s->ra); /* it owns the window */
	else
		free(s->buf);
	free(s->h.regions);
	free(s);
}

const struct rs_info *bgs_rs_stream_info(const struct rs_stream *s)
{
	return &s->h.info;
}

size_t bgs_rs_stream_region_count(const struct rs_stream *s)
{
	return s->h.nregions;
}

const struct rs_region *bgs_rs_stream_region(const struct rs_stream *s,
					     size_t i)
{
	return i < s->h.nregions ? &s->h.regions[i] : NULL;
}

uint64_t bgs_rs_stream_pos(const struct rs_stream *s)
{
	return s->pos;
}

const struct rs_head *bgs_rs_stream_head(const struct rs_stream *s)
{
	return &s->h;
}

const struct rs_extent *bgs_rs_stream_extents(const struct rs_stream *s,
					      size_t *n)
{
	*n = s->nseen;
	return s->seen;
}

/* ---- records ------------------------------------------------------------- */

static int out_room(struct rs_stream *s, size_t len)
{
	uint8_t *p;

	if (len <= s->out_cap)
		return 0;
	p = realloc(s->out, len);
	if (!p)
		return -ENOMEM;
	s->out = p;
	s->out_cap = len;
	return 0;
}

/* The payload of page record @e checked, and decoded unless the stream
 * only checks what is stored (then *@data is NULL). */
static int pages_payload(struct rs_stream *s, const struct rs_extent *e,
			 const struct rs_rechdr *rh, const void **data,
			 struct rs_diag *d)
{
	*data = NULL;
	/* A 1.0 store has no checksum of an lz4 block as stored: only the
	 * pages it decodes to can be checked. */
	if (s->no_decode && (s->h.flags & RS_HF_STORED_SUMS))
		return bgs_rs_pages_check(&s->h, e, rh, payload(s), d);
	if (e->encoding == RS_ENC_LZ4 && out_room(s, e->npages * RS_PAGE))
		return bgs_rs_diag(d, -ENOMEM, s->pos, "out of memory");
	return bgs_rs_pages_decode(&s->h, e, rh, payload(s), s->out, data, d);
}

static int pages_item(struct rs_stream *s, const struct rs_rechdr *rh,
		      struct rs_item *item, struct rs_diag *d)
{
	struct rs_extent e;
	const void *data;
	int ret = bgs_rs_rec_extent(&s->h, rh, s->pos, &e, d);

	if (ret)
		return ret;
	ret = fill(s, s->h.rechdr_len + e.stored_len);
	if (ret)
		return ended(s, ret, d, "a page record");
	ret = pages_payload(s, &e, rh, &data, d);
	if (!ret &&
	    bgs_rs_grow(&s->seen, &s->seen_cap, s->nseen + 1, sizeof(*s->seen)))
		ret = bgs_rs_diag(d, -ENOMEM, s->pos, "out of memory");
	if (ret)
		return ret;
	s->seen[s->nseen++] = e;
	consume(s, s->h.rechdr_len + e.stored_len);
	*item = (struct rs_item){ .type = RS_ITEM_PAGES,
				  .region = e.region,
				  .encoding = e.encoding,
				  .first = e.first,
				  .npages = e.npages,
				  .data = data,
				  .len = data ? e.npages * RS_PAGE : 0 };
	return 1;
}

static int attachment_item(struct rs_stream *s, const struct rs_rechdr *rh,
			   struct rs_item *item, struct rs_diag *d)
{
	struct rs_sattach a = { .offset = s->pos };
	int ret = bgs_rs_attachment_check(rh, s->pos, d);

	if (ret)
		return ret;
	if (s->natt >= RS_MAX_ATTACHMENTS)
		return bgs_rs_diag(d, RS_ECORRUPT, s->pos,
				   "more than %u attachments",
				   RS_MAX_ATTACHMENTS);
	ret = fill(s, s->h.rechdr_len + rh->payload_len);
	if (ret)
		return ended(s, ret, d, "an attachment");
	if (!bgs_rs_csum_ok(rh->data_csum,
			    bgs_rs_hash(payload(s), rh->payload_len)))
		return bgs_rs_diag(d, RS_ECHECKSUM, s->pos,
				   "attachment at offset %llu: checksum "
				   "mismatch",
				   (unsigned long long)s->pos);
	if (!bgs_rs_name_ok((const char *)payload(s), rh->a))
		return bgs_rs_diag(d, RS_ECORRUPT, s->pos,
				   "attachment at offset %llu: bad name",
				   (unsigned long long)s->pos);
	memcpy(s->name, payload(s), rh->a);
	s->name[rh->a] = '\0';
	a.stored_len = (uint32_t)rh->payload_len;
	a.name = strdup(s->name);
	if (!a.name ||
	    bgs_rs_grow(&s->att, &s->att_cap, s->natt + 1, sizeof(*s->att))) {
		free(a.name);
		return bgs_rs_diag(d, -ENOMEM, s->pos, "out of memory");
	}
	s->att[s->natt++] = a;
	*item = (struct rs_item){ .type = RS_ITEM_ATTACHMENT,
				  .data = payload(s) + rh->a,
				  .len = rh->c,
				  .name = s->name };
	consume(s, s->h.rechdr_len + rh->payload_len);
	return 1;
}

/* ---- the end: index, coverage, footer ------------------------------------ */

static int check_att_names(struct rs_stream *s, uint64_t off, struct rs_diag *d)
{
	const char **names = malloc((s->natt ? s->natt : 1) * sizeof(*names));
	ssize_t dup;

	if (!names)
		return bgs_rs_diag(d, -ENOMEM, off, "out of memory");
	for (size_t i = 0; i < s->natt; i++)
		names[i] = s->att[i].name;
	dup = bgs_rs_name_dup(names, s->natt);
	free(names);
	if (dup == -ENOMEM)
		return bgs_rs_diag(d, -ENOMEM, off, "out of memory");
	if (dup >= 0)
		return bgs_rs_diag(d, RS_ECORRUPT, s->att[dup].offset,
				   "attachment at offset %llu: name '%s' used "
				   "twice",
				   (unsigned long long)s->att[dup].offset,
				   s->att[dup].name);
	return 0;
}

static bool same_extent(const struct rs_extent *a, const struct rs_extent *b)
{
	return a->region == b->region && a->encoding == b->encoding &&
	       a->first == b->first && a->npages == b->npages &&
	       a->offset == b->offset && a->stored_len == b->stored_len;
}

/* The index must list exactly the records seen: attachments in file
 * order, then the page records sorted. */
static int check_index(struct rs_stream *s, const uint8_t *p, uint64_t off,
		       struct rs_diag *d)
{
	const size_t n = s->natt + s->nseen;

	for (size_t i = 0; i < n; i++) {
		const uint64_t eo =
			off + s->h.rechdr_len + i * RS_INDEX_ENTRY_SIZE;
		struct rs_disk_index di;
		struct rs_extent e;
		uint8_t type;
		bool same;
		int ret;

		memcpy(&di, p + i * RS_INDEX_ENTRY_SIZE, sizeof(di));
		ret = bgs_rs_index_decode(&s->h, &di, eo, &type, &e, d);
		if (ret)
			return ret;
		if (i < s->natt)
			same = type == RS_REC_ATTACHMENT &&
			       e.offset == s->att[i].offset &&
			       e.stored_len == s->att[i].stored_len;
		else
			same = type == RS_REC_PAGES &&
			       same_extent(&e, &s->seen[i - s->natt]);
		if (!same)
			return bgs_rs_diag(d, RS_ECORRUPT, eo,
					   "index entry %zu disagrees with "
					   "the records",
					   i);
	}
	return 0;
}

static int read_index(struct rs_stream *s, const struct rs_rechdr *rh,
		      struct rs_diag *d)
{
	const uint64_t off = s->pos;
	const uint64_t n = s->natt + s->nseen;
	int ret;

	if (s->nseen)
		qsort(s->seen, s->nseen, sizeof(*s->seen), bgs_rs_extent_cmp);
	ret = bgs_rs_coverage(&s->h, s->seen, s->nseen, d);
	if (!ret)
		ret = check_att_names(s, off, d);
	if (ret)
		return ret;
	if (rh->a || rh->b || rh->encoding || rh->c != n ||
	    rh->payload_len != n * RS_INDEX_ENTRY_SIZE)
		return bgs_rs_diag(d, RS_ECORRUPT, off,
				   "index at offset %llu: %llu entries for "
				   "%llu records",
				   (unsigned long long)off,
				   (unsigned long long)rh->c,
				   (unsigned long long)n);
	ret = fill(s, s->h.rechdr_len + rh->payload_len);
	if (ret)
		return ended(s, ret, d, "the index");
	if (!bgs_rs_csum_ok(rh->data_csum,
			    bgs_rs_hash(payload(s), rh->payload_len)))
		return bgs_rs_diag(d, RS_ECHECKSUM, off,
				   "index at offset %llu: checksum mismatch",
				   (unsigned long long)off);
	ret = check_index(s, payload(s), off, d);
	if (!ret)
		consume(s, s->h.rechdr_len + rh->payload_len);
	return ret;
}

static int read_footer(struct rs_stream *s, uint64_t index_offset,
		       struct rs_diag *d)
{
	const uint64_t off = s->pos;
	struct rs_footer f;
	int ret = fill(s, RS_FOOTER_SIZE);

	if (ret)
		return ended(s, ret, d, "the footer");
	ret = bgs_rs_footer_decode(&f, at(s, 0), off, d);
	if (ret)
		return ret;
	if (f.index_offset != index_offset ||
	    f.file_size != off + RS_FOOTER_SIZE || f.nrecords != s->nseen ||
	    f.nattachments != s->natt ||
	    memcmp(f.snapshot_id, s->h.info.snapshot_id, 16))
		return bgs_rs_diag(d, RS_ECORRUPT, off,
				   "footer at offset %llu does not match "
				   "the store",
				   (unsigned long long)off);
	consume(s, RS_FOOTER_SIZE);
	/* A store ends with its footer. */
	ret = fill(s, 1);
	if (ret != RS_ETRUNCATED)
		return ret ? ended(s, ret, d, "the footer")
			   : bgs_rs_diag(d, RS_ECORRUPT, s->pos,
					 "data after the footer at offset "
					 "%llu",
					 (unsigned long long)s->pos);
	s->h.info.file_size = s->pos;
	s->h.info.nrecords = s->nseen;
	return 0;
}

/* A record of a type this reader does not know, marked skippable: in
 * 1.1 its payload is still checked as stored, as it goes by. */
static int skip_record(struct rs_stream *s, const struct rs_rechdr *rh,
		       struct rs_diag *d)
{
	const uint64_t off = s->pos;
	XXH3_state_t st;
	int ret;

	XXH3_64bits_reset(&st);
	consume(s, s->h.rechdr_len);
	ret = skip(s, rh->payload_len, &st);
	if (ret)
		return ended(s, ret, d, "a skipped record");
	if ((s->h.flags & RS_HF_STORED_SUMS) &&
	    !bgs_rs_csum_ok(rh->stored_csum, XXH3_64bits_digest(&st)))
		return bgs_rs_diag(d, RS_ECHECKSUM, off,
				   "record at offset %llu (type %u): stored "
				   "checksum mismatch",
				   (unsigned long long)off, rh->type);
	return 0;
}

static int step(struct rs_stream *s, struct rs_item *item, struct rs_diag *d)
{
	for (;;) {
		const uint64_t off = s->pos;
		struct rs_rechdr rh;
		int ret = next_header(s, &rh, d);

		if (!ret)
			ret = over_budget(s, &rh, off, d);
		if (ret)
			return ret;
		switch (rh.type) {
		case RS_REC_PAGES:
			return pages_item(s, &rh, item, d);
		case RS_REC_ATTACHMENT:
			return attachment_item(s, &rh, item, d);
		case RS_REC_INDEX:
			ret = read_index(s, &rh, d);
			return ret ? ret : read_footer(s, off, d);
		case RS_REC_REGIONS:
			return bgs_rs_diag(d, RS_ECORRUPT, off,
					   "record at offset %llu: a second "
					   "region table",
					   (unsigned long long)off);
		default:
			if (!(rh.flags & RS_RECF_SKIPPABLE))
				return bgs_rs_diag(d, RS_EVERSION, off,
						   "record at offset %llu: "
						   "type %u is not known to "
						   "this reader",
						   (unsigned long long)off,
						   rh.type);
			ret = skip_record(s, &rh, d);
			if (ret)
				return ret;
		}
	}
}

int bgs_rs_stream_next(struct rs_stream *s, struct rs_item *item,
		       struct rs_diag *diag)
{
	struct rs_diag local;
	int ret;

	if (s->state <= 0) {
		if (diag && s->state < 0)
			*diag = s->last;
		return s->state;
	}
	local.msg[0] = '\0';
	ret = step(s, item, &local);
	if (ret <= 0) {
		s->state = ret;
		s->last = local;
	}
	if (diag && ret < 0)
		*diag = local;
	return ret;
}
