/* SPDX-License-Identifier: MIT */
/*
 * The random-access reader: open checks header, footer, region table and
 * index before anything else (the file is hostile until proven not), then
 * any record can be decoded by its index entry, with a small cache of
 * decoded records because lazy restore faults neighbouring pages. verify
 * re-reads the whole file sequentially through the stream decoder.
 */
#include "rs_stream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#define RS_CACHE_SLOTS	 8
#define RS_PROGRESS_STEP (64u << 20)

struct rs_rattach {
	char *name;
	uint64_t offset; /* of the record header */
	uint64_t len;	 /* data bytes */
	uint32_t name_len;
	uint64_t csum;
};

struct rs_cslot {
	bool valid;
	size_t idx;	  /* the extent it holds */
	uint64_t used;	  /* LRU clock */
	int ret;	  /* what decode returned for it */
	const void *data; /* into buf, the zero buffer, or NULL */
	uint8_t *buf;
	size_t cap;
};

struct rs_reader {
	int fd;		      /* -1 when reading from src */
	struct rs_source src; /* bgs_rs_open_source's, else read NULL */
	struct rs_head h;
	struct rs_footer f;
	struct rs_extent *ext; /* sorted by (region, first) */
	size_t next;
	struct rs_rattach *att;
	size_t natt;
	uint64_t index_csum;
	struct rs_cslot cache[RS_CACHE_SLOTS];
	uint64_t clock;
	uint8_t *rbuf; /* a record as read, for lz4 */
	size_t rcap;
	void *zero; /* zeroes for the largest ZERO record (mmap) */
	size_t zero_len;
};

/* ---- reading ------------------------------------------------------------- */

/* @len bytes at @off, or RS_ETRUNCATED if the file ends first. */
static int pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;

	while (len) {
		const ssize_t n = pread(fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (!n)
			return RS_ETRUNCATED;
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

static int io_diag(struct rs_diag *d, int ret, uint64_t off, const char *what)
{
	if (ret == RS_ETRUNCATED)
		return bgs_rs_diag(d, ret, off,
				   "%s at offset %llu: the file ends inside it",
				   what, (unsigned long long)off);
	if (ret == RS_ECHECKSUM) /* only a source's (rs_rados.c) */
		return bgs_rs_diag(d, ret, off,
				   "%s at offset %llu: the data object holding "
				   "it is damaged (checksum mismatch)",
				   what, (unsigned long long)off);
	return bgs_rs_diag(d, ret, off, "%s at offset %llu: %s", what,
			   (unsigned long long)off, strerror(-ret));
}

static int read_at(const struct rs_reader *r, void *buf, size_t len,
		   uint64_t off, const char *what, struct rs_diag *d)
{
	const int ret = r->src.read ? r->src.read(r->src.ctx, buf, len, off)
				    : pread_full(r->fd, buf, len, off);

	return ret ? io_diag(d, ret, off, what) : 0;
}

static int read_rechdr(const struct rs_reader *r, uint64_t off,
		       struct rs_rechdr *rh, struct rs_diag *d)
{
	const uint32_t hl = r->h.rechdr_len;
	uint8_t b[RS_RECHDR_MAX];
	const int ret = read_at(r, b, hl, off, "record", d);

	return ret ? ret : bgs_rs_rec_decode(rh, b, hl, off, d);
}

/* A payload read whole into a fresh buffer (caller frees *@p). */
static int read_payload(const struct rs_reader *r, uint64_t off, size_t len,
			uint64_t csum, const char *what, uint8_t **p,
			struct rs_diag *d)
{
	int ret;

	*p = malloc(len ? len : 1);
	if (!*p)
		return bgs_rs_diag(d, -ENOMEM, off, "out of memory");
	ret = read_at(r, *p, len, off, what, d);
	if (!ret && !bgs_rs_csum_ok(csum, bgs_rs_hash(*p, len)))
		ret = bgs_rs_diag(d, RS_ECHECKSUM, off,
				  "%s at offset %llu: checksum mismatch", what,
				  (unsigned long long)off);
	return ret;
}

/* ---- open: header, footer, regions --------------------------------------- */

static int open_header(struct rs_reader *r, uint64_t size, struct rs_diag *d)
{
	uint8_t b[RS_HEADER_MAX];
	const size_t n = size < sizeof(b) ? (size_t)size : sizeof(b);
	int ret = read_at(r, b, n, 0, "file header", d);

	if (!ret)
		ret = bgs_rs_header_start(b, n, &r->h.header_len, d);
	if (ret)
		return ret;
	if (n < r->h.header_len)
		return bgs_rs_diag(d, RS_ETRUNCATED, 0,
				   "file header: the store ends after %zu "
				   "bytes",
				   n);
	return bgs_rs_header_decode(&r->h, b, d);
}

static int open_footer(struct rs_reader *r, uint64_t size, struct rs_diag *d)
{
	const uint64_t off = size - RS_FOOTER_SIZE;
	uint8_t b[RS_FOOTER_SIZE];
	int ret;

	if (size < r->h.header_len + r->h.rechdr_len + RS_FOOTER_SIZE)
		return bgs_rs_diag(d, RS_ETRUNCATED, size,
				   "the store ends after %llu bytes",
				   (unsigned long long)size);
	ret = read_at(r, b, sizeof(b), off, "footer", d);
	if (ret)
		return ret;
	if (memcmp(b, bgs_rs_footer_magic, sizeof(bgs_rs_footer_magic)))
		return bgs_rs_diag(d, RS_ETRUNCATED, off,
				   "no footer at the end of the file: the "
				   "store is incomplete");
	ret = bgs_rs_footer_decode(&r->f, b, off, d);
	if (ret)
		return ret;
	if (r->f.file_size != size)
		return bgs_rs_diag(
			d, r->f.file_size > size ? RS_ETRUNCATED : RS_ECORRUPT,
			off,
			"footer: the store is %llu bytes, the "
			"file %llu",
			(unsigned long long)r->f.file_size,
			(unsigned long long)size);
	if (memcmp(r->f.snapshot_id, r->h.info.snapshot_id, 16))
		return bgs_rs_diag(d, RS_ECORRUPT, off,
				   "footer: snapshot id differs from the "
				   "header's");
	return 0;
}

static int open_regions(struct rs_reader *r, uint64_t size, struct rs_diag *d)
{
	const uint64_t off = r->h.header_len, hl = r->h.rechdr_len;
	struct rs_rechdr rh;
	uint8_t *p;
	int ret = read_rechdr(r, off, &rh, d);

	if (!ret)
		ret = bgs_rs_regions_check_hdr(&r->h, &rh, d);
	if (ret)
		return ret;
	if (rh.payload_len > size - off - hl - RS_FOOTER_SIZE)
		return bgs_rs_diag(d, RS_ECORRUPT, off,
				   "region table: %llu bytes do not fit",
				   (unsigned long long)rh.payload_len);
	ret = read_payload(r, off + hl, rh.payload_len, rh.data_csum,
			   "region table", &p, d);
	if (!ret)
		ret = bgs_rs_regions_decode(&r->h, p, rh.payload_len, d);
	free(p);
	r->h.data_start = off + hl + rh.payload_len;
	return ret;
}

/* ---- open: the index ----------------------------------------------------- */

static int index_bounds(const struct rs_reader *r, const struct rs_rechdr *rh,
			struct rs_diag *d)
{
	const uint64_t off = r->f.index_offset, hl = r->h.rechdr_len;
	/* Every record takes at least a header's worth of the data area. */
	const uint64_t room = (off - r->h.data_start) / hl;
	const uint64_t nrec = r->f.nrecords, natt = r->f.nattachments;

	if (nrec > room || natt > room - nrec || natt > RS_MAX_ATTACHMENTS)
		return bgs_rs_diag(
			d, RS_ECORRUPT, r->f.file_size - RS_FOOTER_SIZE,
			"footer: %llu records and %llu attachments "
			"do not fit",
			(unsigned long long)nrec, (unsigned long long)natt);
	if (rh->type != RS_REC_INDEX || rh->a || rh->b || rh->encoding ||
	    rh->c != nrec + natt ||
	    rh->payload_len != rh->c * RS_INDEX_ENTRY_SIZE ||
	    off + hl + rh->payload_len != r->f.file_size - RS_FOOTER_SIZE)
		return bgs_rs_diag(d, RS_ECORRUPT, off,
				   "index at offset %llu: bad header",
				   (unsigned long long)off);
	return 0;
}

static int entry_bounds(const struct rs_reader *r, const struct rs_extent *e,
			uint64_t eo, struct rs_diag *d)
{
	const uint64_t end = r->f.index_offset - r->h.rechdr_len;

	if (e->offset < r->h.data_start || e->offset > end ||
	    e->stored_len > end - e->offset)
		return bgs_rs_diag(d, RS_ECORRUPT, eo,
				   "index entry at offset %llu: record at "
				   "%llu is outside the data area",
				   (unsigned long long)eo,
				   (unsigned long long)e->offset);
	return 0;
}

static int add_attachment(struct rs_reader *r, const struct rs_extent *e,
			  struct rs_diag *d)
{
	struct rs_rattach *a = &r->att[r->natt];
	struct rs_rechdr rh;
	int ret = read_rechdr(r, e->offset, &rh, d);

	if (!ret &&
	    (rh.type != RS_REC_ATTACHMENT || rh.payload_len != e->stored_len))
		ret = bgs_rs_diag(d, RS_ECORRUPT, e->offset,
				  "attachment at offset %llu: the index "
				  "disagrees",
				  (unsigned long long)e->offset);
	if (!ret)
		ret = bgs_rs_attachment_check(&rh, e->offset, d);
	if (ret)
		return ret;
	a->name = calloc(1, rh.a + 1);
	if (!a->name)
		return bgs_rs_diag(d, -ENOMEM, e->offset, "out of memory");
	r->natt++;
	a->offset = e->offset;
	a->len = rh.c;
	a->name_len = rh.a;
	a->csum = rh.data_csum;
	ret = read_at(r, a->name, rh.a, e->offset + r->h.rechdr_len,
		      "attachment", d);
	if (!ret && !bgs_rs_name_ok(a->name, rh.a))
		ret = bgs_rs_diag(d, RS_ECORRUPT, e->offset,
				  "attachment at offset %llu: bad name",
				  (unsigned long long)e->offset);
	return ret;
}

static int check_names(const struct rs_reader *r, struct rs_diag *d)
{
	const char **names = malloc((r->natt ? r->natt : 1) * sizeof(*names));
	ssize_t dup;

	if (!names)
		return bgs_rs_diag(d, -ENOMEM, 0, "out of memory");
	for (size_t i = 0; i < r->natt; i++)
		names[i] = r->att[i].name;
	dup = bgs_rs_name_dup(names, r->natt);
	free(names);
	if (dup == -ENOMEM)
		return bgs_rs_diag(d, -ENOMEM, 0, "out of memory");
	if (dup >= 0)
		return bgs_rs_diag(d, RS_ECORRUPT, r->att[dup].offset,
				   "attachment name '%s' used twice",
				   r->att[dup].name);
	return 0;
}

/* Each index entry, checked on its own and against its neighbours. */
static int parse_index(struct rs_reader *r, const uint8_t *p, struct rs_diag *d)
{
	const uint64_t base = r->f.index_offset + r->h.rechdr_len;
	const size_t na = (size_t)r->f.nattachments;
	const size_t n = na + (size_t)r->f.nrecords;

	for (size_t i = 0; i < n; i++) {
		const uint64_t eo = base + i * RS_INDEX_ENTRY_SIZE;
		struct rs_disk_index di;
		struct rs_extent e;
		uint8_t type;
		int ret;

		memcpy(&di, p + i * RS_INDEX_ENTRY_SIZE, sizeof(di));
		ret = bgs_rs_index_decode(&r->h, &di, eo, &type, &e, d);
		if (!ret && type != (i < na ? RS_REC_ATTACHMENT : RS_REC_PAGES))
			ret = bgs_rs_diag(d, RS_ECORRUPT, eo,
					  "index entry %zu: wrong type %u", i,
					  type);
		if (!ret)
			ret = entry_bounds(r, &e, eo, d);
		if (!ret && i < na)
			ret = add_attachment(r, &e, d);
		if (!ret && i >= na && r->next &&
		    bgs_rs_extent_cmp(&r->ext[r->next - 1], &e) > 0)
			ret = bgs_rs_diag(d, RS_ECORRUPT, eo,
					  "index entry %zu: out of order", i);
		if (ret)
			return ret;
		if (i >= na)
			r->ext[r->next++] = e;
	}
	r->h.info.nrecords = r->next;
	return check_names(r, d);
}

static int open_index(struct rs_reader *r, struct rs_diag *d)
{
	const uint64_t off = r->f.index_offset;
	struct rs_rechdr rh;
	uint8_t *p = NULL;
	int ret;

	if (off < r->h.data_start ||
	    off > r->f.file_size - RS_FOOTER_SIZE - r->h.rechdr_len)
		return bgs_rs_diag(d, RS_ECORRUPT, off,
				   "footer: index offset %llu is outside the "
				   "store",
				   (unsigned long long)off);
	ret = read_rechdr(r, off, &rh, d);
	if (!ret)
		ret = index_bounds(r, &rh, d);
	if (ret)
		return ret;
	r->index_csum = rh.data_csum;
	r->ext = calloc(r->f.nrecords + 1, sizeof(*r->ext));
	r->att = calloc(r->f.nattachments + 1, sizeof(*r->att));
	if (!r->ext || !r->att)
		return bgs_rs_diag(d, -ENOMEM, off, "out of memory");
	ret = read_payload(r, off + r->h.rechdr_len, rh.payload_len,
			   rh.data_csum, "index", &p, d);
	if (!ret)
		ret = parse_index(r, p, d);
	free(p);
	return ret ? ret : bgs_rs_coverage(&r->h, r->ext, r->next, d);
}

static int open_all(struct rs_reader *r, struct rs_diag *d)
{
	uint64_t size = r->src.size;
	struct stat st;
	int ret;

	if (!r->src.read) {
		if (fstat(r->fd, &st))
			return bgs_rs_diag(d, -errno, 0, "fstat: %s",
					   strerror(errno));
		if (!S_ISREG(st.st_mode))
			return bgs_rs_diag(d, -ESPIPE, 0,
					   "not a regular file: use the "
					   "stream reader");
		size = (uint64_t)st.st_size;
	}
	ret = open_header(r, size, d);
	if (!ret)
		ret = open_footer(r, size, d);
	if (!ret)
		ret = open_regions(r, size, d);
	if (!ret)
		ret = open_index(r, d);
	r->h.info.file_size = size;
	return ret;
}

int bgs_rs_open(struct rs_reader **rp, int fd, struct rs_diag *diag)
{
	struct rs_reader *r = calloc(1, sizeof(*r));
	int ret;

	*rp = NULL;
	if (!r)
		return bgs_rs_diag(diag, -ENOMEM, 0, "out of memory");
	r->fd = fd;
	ret = open_all(r, diag);
	if (ret) {
		bgs_rs_close(r);
		return ret;
	}
	*rp = r;
	return 0;
}

int bgs_rs_open_source(struct rs_reader **rp, const struct rs_source *src,
		       struct rs_diag *diag)
{
	struct rs_reader *r = calloc(1, sizeof(*r));
	int ret;

	*rp = NULL;
	if (!r)
		return bgs_rs_diag(diag, -ENOMEM, 0, "out of memory");
	r->fd = -1;
	r->src = *src;
	ret = open_all(r, diag);
	if (ret) {
		bgs_rs_close(r);
		return ret;
	}
	*rp = r;
	return 0;
}

void bgs_rs_close(struct rs_reader *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < RS_CACHE_SLOTS; i++)
		free(r->cache[i].buf);
	for (size_t i = 0; i < r->natt; i++)
		free(r->att[i].name);
	free(r->att);
	free(r->ext);
	free(r->rbuf);
	if (r->zero)
		munmap(r->zero, r->zero_len);
	free(r->h.regions);
	free(r);
}

/* ---- what the store holds ------------------------------------------------ */

const struct rs_info *bgs_rs_info(const struct rs_reader *r)
{
	return &r->h.info;
}

size_t bgs_rs_region_count(const struct rs_reader *r)
{
	return r->h.nregions;
}

const struct rs_region *bgs_rs_region(const struct rs_reader *r, size_t i)
{
	return i < r->h.nregions ? &r->h.regions[i] : NULL;
}

size_t bgs_rs_attachment_count(const struct rs_reader *r)
{
	return r->natt;
}

int bgs_rs_attachment_info(const struct rs_reader *r, size_t i,
			   const char **name, size_t *len)
{
	if (i >= r->natt)
		return -EINVAL;
	*name = r->att[i].name;
	*len = (size_t)r->att[i].len;
	return 0;
}

int bgs_rs_attachment_read(struct rs_reader *r, size_t i, void *buf,
			   struct rs_diag *diag)
{
	const struct rs_rattach *a;
	XXH3_state_t st;
	int ret;

	if (i >= r->natt)
		return bgs_rs_diag(diag, -EINVAL, 0, "no attachment %zu", i);
	a = &r->att[i];
	ret = read_at(r, buf, a->len, a->offset + r->h.rechdr_len + a->name_len,
		      "attachment", diag);
	if (ret)
		return ret;
	XXH3_64bits_reset(&st);
	XXH3_64bits_update(&st, a->name, a->name_len);
	XXH3_64bits_update(&st, buf, a->len);
	if (!bgs_rs_csum_ok(a->csum, XXH3_64bits_digest(&st)))
		return bgs_rs_diag(diag, RS_ECHECKSUM, a->offset,
				   "attachment '%s' at offset %llu: checksum "
				   "mismatch",
				   a->name, (unsigned long long)a->offset);
	return 0;
}

size_t bgs_rs_extent_count(const struct rs_reader *r)
{
	return r->next;
}

const struct rs_extent *bgs_rs_extent(const struct rs_reader *r, size_t i)
{
	return i < r->next ? &r->ext[i] : NULL;
}

ssize_t bgs_rs_find(const struct rs_reader *r, uint32_t region, uint64_t page)
{
	const struct rs_extent key = { .region = region, .first = page };
	size_t lo = 0, hi = r->next;

	/* The last extent starting at or before the page. */
	while (lo < hi) {
		const size_t mid = lo + (hi - lo) / 2;

		if (bgs_rs_extent_cmp(&r->ext[mid], &key) <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (!lo || r->ext[lo - 1].region != region ||
	    page - r->ext[lo - 1].first >= r->ext[lo - 1].npages)
		return -1;
	return (ssize_t)(lo - 1);
}

/* ---- decoding ------------------------------------------------------------ */

static int grow_buf(uint8_t **p, size_t *cap, size_t len)
{
	uint8_t *q;

	if (len <= *cap)
		return 0;
	q = realloc(*p, len);
	if (!q)
		return -ENOMEM;
	*p = q;
	*cap = len;
	return 0;
}

static struct rs_cslot *cache_victim(struct rs_reader *r)
{
	struct rs_cslot *v = &r->cache[0];

	for (size_t i = 0; i < RS_CACHE_SLOTS; i++) {
		if (!r->cache[i].valid)
			return &r->cache[i];
		if (r->cache[i].used < v->used)
			v = &r->cache[i];
	}
	return v;
}

/* Header and payload of @e in one system call, as a rule. */
static int read_rec(const struct rs_reader *r, const struct rs_extent *e,
		    uint8_t *hb, uint8_t *dst, struct rs_diag *d)
{
	const uint32_t hl = r->h.rechdr_len;
	struct iovec iov[2] = { { hb, hl }, { dst, e->stored_len } };
	const ssize_t n =
		r->src.read ? -1 : preadv(r->fd, iov, 2, (off_t)e->offset);
	int ret;

	if (n == (ssize_t)(hl + e->stored_len))
		return 0;
	/* Short or interrupted: again the long way, which says why. */
	ret = read_at(r, hb, hl, e->offset, "record", d);
	return ret ? ret
		   : read_at(r, dst, e->stored_len, e->offset + hl, "record",
			     d);
}

/* @hb must be the header of the record the index says @e is; decoded
 * into *@rh for its checksums. */
static int check_rechdr(const struct rs_reader *r, const struct rs_extent *e,
			const uint8_t *hb, struct rs_rechdr *rh,
			struct rs_diag *d)
{
	struct rs_extent got;
	int ret = bgs_rs_rec_decode(rh, hb, r->h.rechdr_len, e->offset, d);

	if (!ret && rh->type != RS_REC_PAGES)
		ret = bgs_rs_diag_rec(d, RS_ECORRUPT, &r->h, e,
				      "a record of type %u is there", rh->type);
	if (!ret)
		ret = bgs_rs_rec_extent(&r->h, rh, e->offset, &got, d);
	if (!ret && (got.region != e->region || got.first != e->first ||
		     got.npages != e->npages || got.encoding != e->encoding ||
		     got.stored_len != e->stored_len))
		ret = bgs_rs_diag_rec(d, RS_ECORRUPT, &r->h, e,
				      "the index and the record disagree");
	return ret;
}

/* Read record @e's header and its payload into @dst (stored_len bytes),
 * the header checked against the index entry and decoded into *@rh. Only
 * reads @r, so threads may call it at once. */
static int read_checked(const struct rs_reader *r, const struct rs_extent *e,
			uint8_t *dst, struct rs_rechdr *rh, struct rs_diag *d)
{
	uint8_t hb[RS_RECHDR_MAX];
	const int ret = read_rec(r, e, hb, dst, d);

	return ret ? ret : check_rechdr(r, e, hb, rh, d);
}

/* Read record @e into the slot (raw) or rbuf (lz4). *@payload points at
 * the payload read. */
static int read_record(struct rs_reader *r, const struct rs_extent *e,
		       struct rs_cslot *c, struct rs_rechdr *rh,
		       const uint8_t **payload, struct rs_diag *d)
{
	const bool raw = e->encoding == RS_ENC_RAW;

	if (grow_buf(raw ? &c->buf : &r->rbuf, raw ? &c->cap : &r->rcap,
		     e->stored_len))
		return bgs_rs_diag(d, -ENOMEM, e->offset, "out of memory");
	*payload = raw ? c->buf : r->rbuf;
	return read_checked(r, e, raw ? c->buf : r->rbuf, rh, d);
}

static int zeroes(struct rs_reader *r, const void **data)
{
	/* Sized once, for the largest ZERO record, so that earlier results
	 * pointing here stay valid; read-only anonymous memory, so even a
	 * 1 GiB huge page of zeroes costs no memory. */
	if (!r->zero) {
		void *p;

		for (size_t i = 0; i < r->next; i++)
			if (r->ext[i].encoding == RS_ENC_ZERO &&
			    r->ext[i].npages * RS_PAGE > r->zero_len)
				r->zero_len = r->ext[i].npages * RS_PAGE;
		p = mmap(NULL, r->zero_len, PROT_READ,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (p == MAP_FAILED)
			return -ENOMEM;
		r->zero = p;
	}
	*data = r->zero;
	return 0;
}

static int decode_into(struct rs_reader *r, size_t i, struct rs_cslot *c,
		       struct rs_diag *d)
{
	const struct rs_extent *e = &r->ext[i];
	const size_t raw = e->npages * RS_PAGE;
	const uint8_t *payload = NULL;
	struct rs_rechdr rh = { 0 };
	int ret = read_record(r, e, c, &rh, &payload, d);

	if (ret)
		return ret;
	if (e->encoding == RS_ENC_LZ4 && grow_buf(&c->buf, &c->cap, raw))
		return bgs_rs_diag(d, -ENOMEM, e->offset, "out of memory");
	ret = bgs_rs_pages_decode(&r->h, e, &rh, payload, c->buf, &c->data, d);
	if (ret)
		return ret;
	c->ret = e->encoding == RS_ENC_PARENT;
	if (e->encoding == RS_ENC_ZERO && zeroes(r, &c->data))
		return bgs_rs_diag(d, -ENOMEM, e->offset, "out of memory");
	c->idx = i;
	c->valid = true;
	return 0;
}

int bgs_rs_decode(struct rs_reader *r, size_t i, const void **data,
		  struct rs_diag *diag)
{
	struct rs_cslot *c;
	int ret;

	*data = NULL;
	if (i >= r->next)
		return bgs_rs_diag(diag, -EINVAL, 0, "no extent %zu", i);
	for (size_t k = 0; k < RS_CACHE_SLOTS; k++) {
		c = &r->cache[k];
		if (c->valid && c->idx == i) {
			c->used = ++r->clock;
			*data = c->data;
			return c->ret;
		}
	}
	c = cache_victim(r);
	c->valid = false;
	ret = decode_into(r, i, c, diag);
	if (ret)
		return ret;
	c->used = ++r->clock;
	*data = c->data;
	return c->ret;
}

/* ---- decoding by several threads ----------------------------------------- */

struct rs_decoder {
	uint8_t *buf; /* an lz4 payload as read */
	size_t cap;
};

int bgs_rs_decoder_new(struct rs_decoder **dec)
{
	*dec = calloc(1, sizeof(**dec));
	return *dec ? 0 : -ENOMEM;
}

void bgs_rs_decoder_free(struct rs_decoder *dec)
{
	if (dec)
		free(dec->buf);
	free(dec);
}

/* Extent @i, if its record has a payload to decode. Else NULL, and *@ret
 * is an error or the encoding of a ZERO or PARENT extent, whose record is
 * not even read (the index, checked at open, says all there is). */
static const struct rs_extent *payload_extent(const struct rs_reader *r,
					      size_t i, int *ret,
					      struct rs_diag *diag)
{
	const struct rs_extent *e;

	if (i >= r->next) {
		*ret = bgs_rs_diag(diag, -EINVAL, 0, "no extent %zu", i);
		return NULL;
	}
	e = &r->ext[i];
	*ret = e->encoding; /* the result for ZERO (which is 0) and PARENT */
	return e->encoding == RS_ENC_ZERO || e->encoding == RS_ENC_PARENT ? NULL
									  : e;
}

int bgs_rs_decode_to(const struct rs_reader *r, struct rs_decoder *dec,
		     size_t i, void *dst, struct rs_diag *diag)
{
	const void *data;
	struct rs_rechdr rh = { 0 };
	uint8_t *payload;
	int ret;
	const struct rs_extent *e = payload_extent(r, i, &ret, diag);

	if (!e)
		return ret;
	/* RAW lands in @dst directly; LZ4 is read aside and decoded there. */
	if (e->encoding == RS_ENC_LZ4 &&
	    grow_buf(&dec->buf, &dec->cap, e->stored_len))
		return bgs_rs_diag(diag, -ENOMEM, e->offset, "out of memory");
	payload = e->encoding == RS_ENC_RAW ? dst : dec->buf;
	ret = read_checked(r, e, payload, &rh, diag);
	if (!ret)
		ret = bgs_rs_pages_decode(&r->h, e, &rh, payload, dst, &data,
					  diag);
	return ret ? ret : e->encoding;
}

int bgs_rs_decode_from(const struct rs_reader *r, size_t i, const void *rec,
		       void *dst, struct rs_diag *diag)
{
	const uint8_t *hb = rec;
	const void *data;
	struct rs_rechdr rh = { 0 };
	int ret;
	const struct rs_extent *e = payload_extent(r, i, &ret, diag);

	if (!e)
		return ret;
	ret = check_rechdr(r, e, hb, &rh, diag);
	if (!ret)
		ret = bgs_rs_pages_decode(&r->h, e, &rh, hb + r->h.rechdr_len,
					  dst, &data, diag);
	if (ret)
		return ret;
	if (data != dst) /* RAW: checked where it was read */
		memcpy(dst, data, e->npages * RS_PAGE);
	return e->encoding;
}

uint32_t bgs_rs_rechdr_len(const struct rs_reader *r)
{
	return r->h.rechdr_len;
}

/* ---- verify -------------------------------------------------------------- */

/* The stream checked the file as it is now; it must be what was opened. */
static int same_as_opened(const struct rs_reader *r, const struct rs_stream *s,
			  struct rs_diag *d)
{
	const struct rs_head *h = bgs_rs_stream_head(s);
	size_t n;
	const struct rs_extent *e = bgs_rs_stream_extents(s, &n);
	bool same = h->header_csum == r->h.header_csum && n == r->next;

	for (size_t i = 0; i < n && same; i++)
		same = !bgs_rs_extent_cmp(&e[i], &r->ext[i]) &&
		       e[i].offset == r->ext[i].offset &&
		       e[i].npages == r->ext[i].npages &&
		       e[i].encoding == r->ext[i].encoding &&
		       e[i].stored_len == r->ext[i].stored_len;
	if (!same)
		return bgs_rs_diag(d, RS_ECORRUPT, 0,
				   "the store changed since it was opened");
	return 0;
}

int bgs_rs_verify(struct rs_reader *r, unsigned flags, struct rs_diag *diag,
		  void (*progress)(void *arg, uint64_t done, uint64_t total),
		  void *arg)
{
	const uint64_t total = r->h.info.file_size;
	uint64_t last = 0;
	struct rs_stream *s;
	struct rs_item item;
	int ret;

	if (r->src.read) /* a whole file is verified: fetch it first */
		return bgs_rs_diag(diag, -ENOTSUP, 0,
				   "verify reads a file, not a source");
	ret = bgs_rs_stream_open_file(&s, r->fd, total, flags & RS_VERIFY_DEEP,
				      diag);
	if (ret)
		return ret;
	while ((ret = bgs_rs_stream_next(s, &item, diag)) == 1) {
		const uint64_t pos = bgs_rs_stream_pos(s);

		if (progress && pos - last >= RS_PROGRESS_STEP) {
			progress(arg, pos, total);
			last = pos;
		}
	}
	if (!ret)
		ret = same_as_opened(r, s, diag);
	if (!ret && progress)
		progress(arg, total, total);
	bgs_rs_stream_close(s);
	return ret;
}
