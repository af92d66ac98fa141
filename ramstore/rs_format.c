/* SPDX-License-Identifier: MIT */
/*
 * Encoding and checking of every on-disk structure (FORMAT.md). The
 * writer, the random-access reader and the stream reader all go through
 * these, so a file one accepts the others accept too. Checks never trust
 * a length before comparing it with what is actually there.
 */
#include "rs_format.h"

#include <errno.h>
#include <lz4.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define XXH_INLINE_ALL
#include <xxhash.h>

const uint8_t bgs_rs_file_magic[8] = {
	0x89, 'B', 'G', 'S', 'N', 'A', 'P', '\n'
};
const uint8_t bgs_rs_footer_magic[8] = { 0x89, 'B', 'G', 'S',
					 'E',  'N', 'D', '\n' };

/* libxxhash's dispatching XXH3 picks AVX2 or AVX-512 at run time: a
 * third faster than the SSE2 code inlined here is (measured on 32 KiB
 * records), and the same hash. Declared here, as xxh_x86dispatch.h
 * does, since that header cannot be included beside XXH_INLINE_ALL. */
unsigned long long XXH3_64bits_dispatch(const void *input, size_t len);
XXH_errorcode XXH3_64bits_update_dispatch(XXH3_state_t *state,
					  const void *input, size_t len);

uint64_t bgs_rs_hash(const void *p, size_t len)
{
	return XXH3_64bits_dispatch(p, len);
}

/* The same hash as bgs_rs_hash: XXH3's streaming form gives the one-shot
 * answer for the same bytes, however they are cut. */
struct rs_hashing {
	XXH3_state_t st;
};

struct rs_hashing *bgs_rs_hashing_new(void)
{
	struct rs_hashing *h = aligned_alloc(64, sizeof(*h));

	if (h)
		XXH3_64bits_reset(&h->st);
	return h;
}

void bgs_rs_hashing_add(struct rs_hashing *h, const void *p, size_t len)
{
	XXH3_64bits_update_dispatch(&h->st, p, len);
}

uint64_t bgs_rs_hashing_end(struct rs_hashing *h)
{
	const uint64_t sum = XXH3_64bits_digest(&h->st);

	XXH3_64bits_reset(&h->st);
	return sum;
}

void bgs_rs_hashing_free(struct rs_hashing *h)
{
	free(h);
}

/* ---- diagnostics --------------------------------------------------------- */

__attribute__((format(printf, 5, 0))) static int
vdiag(struct rs_diag *d, int code, uint64_t off, size_t at, const char *fmt,
      va_list ap)
{
	if (!d)
		return code;
	d->code = code;
	d->offset = off;
	if (at < sizeof(d->msg))
		vsnprintf(d->msg + at, sizeof(d->msg) - at, fmt, ap);
	return code;
}

uint64_t bgs_stage_clock_ns(void)
{
	static _Atomic uint64_t cost = UINT64_MAX;
	uint64_t c = atomic_load_explicit(&cost, memory_order_relaxed);

	if (c == UINT64_MAX) { /* the least of a few: what the clock adds */
		for (int i = 0; i < 16; i++) {
			const uint64_t t0 = bgs_thread_cpu_ns();
			const uint64_t d = bgs_thread_cpu_ns() - t0;

			c = d < c ? d : c;
		}
		atomic_store_explicit(&cost, c, memory_order_relaxed);
	}
	return c;
}

int bgs_rs_diag(struct rs_diag *d, int code, uint64_t off, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vdiag(d, code, off, 0, fmt, ap);
	va_end(ap);
	return code;
}

int bgs_rs_diag_rec(struct rs_diag *d, int code, const struct rs_head *h,
		    const struct rs_extent *e, const char *fmt, ...)
{
	const uint64_t last = e->first + e->npages - 1;
	va_list ap;
	int n;

	if (!d)
		return code;
	if (e->region < h->nregions)
		n = snprintf(d->msg, sizeof(d->msg),
			     "record at offset %llu (region '%s', pages "
			     "%llu..%llu): ",
			     (unsigned long long)e->offset,
			     h->regions[e->region].name,
			     (unsigned long long)e->first,
			     (unsigned long long)last);
	else
		n = snprintf(d->msg, sizeof(d->msg),
			     "record at offset %llu (region #%u): ",
			     (unsigned long long)e->offset, e->region);
	va_start(ap, fmt);
	vdiag(d, code, e->offset, n < 0 ? 0 : (size_t)n, fmt, ap);
	va_end(ap);
	return code;
}

/* ---- regions ------------------------------------------------------------- */

bool bgs_rs_name_ok(const char *name, size_t len)
{
	if (len < 1 || len > RS_NAME_MAX)
		return false;
	/* Names end up in messages and on terminals: no control bytes. */
	for (size_t i = 0; i < len; i++) {
		const unsigned char c = (unsigned char)name[i];

		if (c < 0x20 || c == 0x7f)
			return false;
	}
	return true;
}

static bool is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

const char *bgs_rs_region_problem(const struct rs_region *r)
{
	const size_t len = strnlen(r->name, sizeof(r->name));
	const uint64_t ps = r->page_size;

	if (len > RS_NAME_MAX)
		return "name is not NUL-terminated";
	if (!bgs_rs_name_ok(r->name, len))
		return "name is empty or holds control characters";
	if (r->kind < RS_KIND_ANON || r->kind > RS_KIND_UNSAVED)
		return "unknown memory kind";
	if (r->kind == RS_KIND_HUGETLB) {
		if (!is_pow2(ps) || ps < RS_PAGE || ps > RS_HUGE_PAGE_MAX)
			return "bad huge page size";
	} else if (ps != RS_PAGE) {
		return "page size is not 4096";
	}
	if (r->base % ps || r->length % ps)
		return "base or length not a multiple of the page size";
	if (r->length > RS_REGION_LEN_MAX || r->base + r->length < r->base)
		return "too long";
	return NULL;
}

static int name_cmp(const void *a, const void *b)
{
	const char *const *x = a, *const *y = b;

	return strcmp(*x, *y);
}

ssize_t bgs_rs_name_dup(const char **names, size_t n)
{
	const char **v;
	ssize_t dup = -1;

	if (n < 2)
		return -1;
	v = malloc(n * sizeof(*v));
	if (!v)
		return -ENOMEM;
	memcpy(v, names, n * sizeof(*v));
	qsort(v, n, sizeof(*v), name_cmp);
	for (size_t i = 1; i < n && dup < 0; i++)
		if (!strcmp(v[i - 1], v[i]))
			dup = (ssize_t)i;
	if (dup >= 0) {
		const char *hit = v[dup];

		/* The position in @names, not in the sorted copy. */
		for (dup = 0; names[dup] != hit; dup++)
			;
	}
	free(v);
	return dup;
}

ssize_t bgs_rs_region_dup(const struct rs_region *r, size_t n)
{
	const char **names = malloc((n ? n : 1) * sizeof(*names));
	ssize_t dup;

	if (!names)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		names[i] = r[i].name;
	dup = bgs_rs_name_dup(names, n);
	free(names);
	return dup;
}

uint64_t bgs_rs_region_pages(const struct rs_region *r)
{
	return r->length >> RS_PAGE_SHIFT;
}

uint64_t bgs_rs_region_unit(const struct rs_region *r)
{
	return r->page_size >> RS_PAGE_SHIFT;
}

uint64_t bgs_rs_region_max_pages(const struct rs_region *r)
{
	const uint64_t unit = bgs_rs_region_unit(r);

	return unit > RS_RECORD_MAX_PAGES ? unit : RS_RECORD_MAX_PAGES;
}

/* ---- file header --------------------------------------------------------- */

void bgs_rs_header_encode(struct rs_disk_header *d, const struct rs_head *h)
{
	const struct rs_info *i = &h->info;

	memset(d, 0, sizeof(*d));
	memcpy(d->magic, bgs_rs_file_magic, sizeof(d->magic));
	rs_put16(&d->version_major, RS_VERSION_MAJOR);
	rs_put16(&d->version_minor, i->version_minor);
	rs_put32(&d->header_len, RS_HEADER_SIZE);
	rs_put32(&d->page_size, RS_PAGE);
	rs_put32(&d->flags, h->flags);
	rs_put32(&d->nregions, (uint32_t)h->nregions);
	memcpy(d->snapshot_id, i->snapshot_id, 16);
	memcpy(d->parent_id, i->parent_id, 16);
	rs_put64(&d->created_ns, i->created_ns);
	/* NUL-padded; all 64 bytes may be text. */
	memcpy(d->host, i->host, strnlen(i->host, sizeof(d->host)));
	memcpy(d->kernel, i->kernel, strnlen(i->kernel, sizeof(d->kernel)));
	rs_put64(&d->checksum,
		 bgs_rs_hash(d, offsetof(struct rs_disk_header, checksum)));
}

int bgs_rs_header_start(const void *buf, size_t avail, uint32_t *header_len,
			struct rs_diag *diag)
{
	const struct rs_disk_header *d = buf;
	const size_t m = avail < 8 ? avail : 8;
	unsigned major, minor;

	if (memcmp(d->magic, bgs_rs_file_magic, m))
		return bgs_rs_diag(diag, RS_EBADMAGIC, 0,
				   "not a bgsnap store (bad magic)");
	if (avail < 16)
		return bgs_rs_diag(diag, RS_ETRUNCATED, 0,
				   "file header: the store ends after %zu "
				   "bytes",
				   avail);
	major = rs_get16(&d->version_major);
	minor = rs_get16(&d->version_minor);
	if (major != RS_VERSION_MAJOR)
		return bgs_rs_diag(diag, RS_EVERSION, 8,
				   "file header: format version %u.%u, this "
				   "reader reads %u.x",
				   major, minor, RS_VERSION_MAJOR);
	*header_len = rs_get32(&d->header_len);
	if (*header_len < RS_HEADER_SIZE || *header_len > RS_HEADER_MAX ||
	    *header_len % 8)
		return bgs_rs_diag(diag, RS_ECORRUPT, 12,
				   "file header: bad header length %u",
				   *header_len);
	return 0;
}

static void copy_text(char *dst, const char *src, size_t n)
{
	for (size_t i = 0; i < n && src[i]; i++) {
		const unsigned char c = (unsigned char)src[i];

		dst[i] = c < 0x20 || c >= 0x7f ? '?' : (char)c;
	}
	dst[n] = '\0';
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

int bgs_rs_header_decode(struct rs_head *h, const void *buf,
			 struct rs_diag *diag)
{
	const struct rs_disk_header *d = buf;
	const size_t sum_at = h->header_len - 8;
	rs_le64 stored;
	struct rs_info *i = &h->info;
	uint32_t unknown;

	memcpy(&stored, (const uint8_t *)buf + sum_at, 8);
	h->header_csum = bgs_rs_hash(buf, sum_at);
	if (!bgs_rs_csum_ok(rs_get64(&stored), h->header_csum))
		return bgs_rs_diag(diag, RS_ECHECKSUM, sum_at,
				   "file header: checksum mismatch");
	h->flags = rs_get32(&d->flags);
	unknown = h->flags & RS_HF_INCOMPAT_MASK & ~RS_HF_KNOWN;
	if (unknown)
		return bgs_rs_diag(diag, RS_EVERSION, 20,
				   "file header: needs features %#x this "
				   "reader does not have",
				   unknown);
	if (rs_get32(&d->page_size) != RS_PAGE)
		return bgs_rs_diag(diag, RS_ECORRUPT, 16,
				   "file header: page size %u is not 4096",
				   rs_get32(&d->page_size));
	h->nregions = rs_get32(&d->nregions);
	if (h->nregions > RS_MAX_REGIONS)
		return bgs_rs_diag(diag, RS_ECORRUPT, 24,
				   "file header: %zu regions (at most %u)",
				   h->nregions, RS_MAX_REGIONS);
	if (!(h->flags & RS_HF_INCREMENTAL) != all_zero(d->parent_id, 16))
		return bgs_rs_diag(diag, RS_ECORRUPT, 20,
				   "file header: the incremental flag and the "
				   "parent id disagree");
	h->rechdr_len =
		h->flags & RS_HF_STORED_SUMS ? RS_RECHDR_V11 : RS_RECHDR_V10;
	i->version_major = rs_get16(&d->version_major);
	i->version_minor = rs_get16(&d->version_minor);
	i->page_size = RS_PAGE;
	memcpy(i->snapshot_id, d->snapshot_id, 16);
	memcpy(i->parent_id, d->parent_id, 16);
	i->created_ns = rs_get64(&d->created_ns);
	copy_text(i->host, d->host, sizeof(d->host));
	copy_text(i->kernel, d->kernel, sizeof(d->kernel));
	return 0;
}

/* ---- record headers ------------------------------------------------------ */

void bgs_rs_rec_encode(void *dst, const struct rs_rechdr *h, uint32_t len)
{
	struct rs_disk_rec d;
	rs_le64 sum;

	rs_put32(&d.magic, RS_REC_MAGIC);
	d.type = h->type;
	d.encoding = h->encoding;
	rs_put16(&d.flags, h->flags);
	rs_put32(&d.a, h->a);
	rs_put32(&d.b, h->b);
	rs_put64(&d.c, h->c);
	rs_put64(&d.payload_len, h->payload_len);
	rs_put64(&d.data_csum, h->data_csum);
	rs_put64(&d.stored_csum, h->stored_csum);
	/* The header checksum comes last: at 48 in 1.1, at 40 in 1.0, which
	 * has no stored_csum. */
	rs_put64(&sum, bgs_rs_hash(&d, len - 8));
	memcpy(dst, &d, len - 8);
	memcpy((uint8_t *)dst + len - 8, &sum, 8);
}

/* Does @h's stored checksum agree with what the rest of the header says
 * of the payload? It is the data checksum where that is of the same
 * bytes, and the hash of nothing where there is no payload; so only an
 * lz4 block, or the payload of an unknown type, is hashed to check it. */
static bool stored_sum_ok(const struct rs_rechdr *h)
{
	switch (h->type) {
	case RS_REC_PAGES:
		if (h->encoding == RS_ENC_ZERO || h->encoding == RS_ENC_PARENT)
			return bgs_rs_csum_ok(h->stored_csum, RS_EMPTY_SUM);
		if (h->encoding == RS_ENC_RAW)
			return bgs_rs_csum_ok(h->stored_csum, h->data_csum);
		return true; /* LZ4: the pages' checksum is of other bytes */
	case RS_REC_REGIONS:
	case RS_REC_ATTACHMENT:
	case RS_REC_INDEX:
		return bgs_rs_csum_ok(h->stored_csum, h->data_csum);
	default:
		return true; /* a type from the future */
	}
}

int bgs_rs_rec_decode(struct rs_rechdr *h, const void *src, uint32_t len,
		      uint64_t off, struct rs_diag *diag)
{
	const uint8_t *p = src;
	struct rs_disk_rec d;
	rs_le64 sum;

	memcpy(&d, src, len);
	memcpy(&sum, p + len - 8, 8);
	if (rs_get32(&d.magic) != RS_REC_MAGIC)
		return bgs_rs_diag(diag, RS_ECORRUPT, off,
				   "record at offset %llu: no record header "
				   "there",
				   (unsigned long long)off);
	if (!bgs_rs_csum_ok(rs_get64(&sum), bgs_rs_hash(p, len - 8)))
		return bgs_rs_diag(diag, RS_ECHECKSUM, off,
				   "record at offset %llu: header checksum "
				   "mismatch",
				   (unsigned long long)off);
	h->type = d.type;
	h->encoding = d.encoding;
	h->flags = rs_get16(&d.flags);
	h->a = rs_get32(&d.a);
	h->b = rs_get32(&d.b);
	h->c = rs_get64(&d.c);
	h->payload_len = rs_get64(&d.payload_len);
	h->data_csum = rs_get64(&d.data_csum);
	h->stored_csum = len == RS_RECHDR_V11 ? rs_get64(&d.stored_csum) : 0;
	if (len == RS_RECHDR_V11 && !stored_sum_ok(h))
		return bgs_rs_diag(diag, RS_ECORRUPT, off,
				   "record at offset %llu: the stored "
				   "checksum contradicts the header",
				   (unsigned long long)off);
	return 0;
}

/* ---- region table -------------------------------------------------------- */

size_t bgs_rs_regions_size(const struct rs_region *r, size_t n)
{
	size_t len = 0;

	for (size_t i = 0; i < n; i++)
		len += RS_REGION_ENTRY_SIZE + strlen(r[i].name);
	return len;
}

void bgs_rs_regions_encode(uint8_t *dst, const struct rs_region *r, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct rs_disk_region d = { 0 };
		const size_t len = strlen(r[i].name);

		rs_put64(&d.base, r[i].base);
		rs_put64(&d.length, r[i].length);
		rs_put32(&d.page_size, r[i].page_size);
		rs_put16(&d.kind, r[i].kind);
		rs_put16(&d.prot, r[i].prot);
		rs_put16(&d.name_len, (uint16_t)len);
		memcpy(dst, &d, sizeof(d));
		memcpy(dst + sizeof(d), r[i].name, len);
		dst += sizeof(d) + len;
	}
}

int bgs_rs_regions_check_hdr(const struct rs_head *h,
			     const struct rs_rechdr *rh, struct rs_diag *diag)
{
	const uint64_t n = h->nregions, off = h->header_len;

	if (rh->type != RS_REC_REGIONS)
		return bgs_rs_diag(diag, RS_ECORRUPT, off,
				   "record at offset %llu: a record of type "
				   "%u where the region table belongs",
				   (unsigned long long)off, rh->type);
	if (rh->a != n || rh->b || rh->c || rh->encoding ||
	    rh->payload_len < n * (RS_REGION_ENTRY_SIZE + 1) ||
	    rh->payload_len > n * (RS_REGION_ENTRY_SIZE + RS_NAME_MAX))
		return bgs_rs_diag(diag, RS_ECORRUPT, off,
				   "region table: bad header (%u regions, "
				   "%llu bytes; the file header says %zu)",
				   rh->a, (unsigned long long)rh->payload_len,
				   h->nregions);
	return 0;
}

static int region_decode(struct rs_region *r, const uint8_t *p, size_t left,
			 size_t *used)
{
	struct rs_disk_region d;
	size_t len;

	if (left < sizeof(d))
		return -1;
	memcpy(&d, p, sizeof(d));
	len = rs_get16(&d.name_len);
	if (!all_zero(d.reserved, sizeof(d.reserved)) || len > RS_NAME_MAX ||
	    len > left - sizeof(d))
		return -1;
	memcpy(r->name, p + sizeof(d), len);
	r->name[len] = '\0';
	r->base = rs_get64(&d.base);
	r->length = rs_get64(&d.length);
	r->page_size = rs_get32(&d.page_size);
	r->kind = rs_get16(&d.kind);
	r->prot = rs_get16(&d.prot);
	*used = sizeof(d) + len;
	return 0;
}

int bgs_rs_regions_decode(struct rs_head *h, const uint8_t *p, size_t len,
			  struct rs_diag *diag)
{
	const uint64_t off = h->header_len + h->rechdr_len;
	size_t pos = 0, used;
	const char *why;
	ssize_t dup;

	h->regions = calloc(h->nregions ? h->nregions : 1, sizeof(*h->regions));
	if (!h->regions)
		return bgs_rs_diag(diag, -ENOMEM, off, "out of memory");
	for (size_t i = 0; i < h->nregions; i++, pos += used) {
		if (region_decode(&h->regions[i], p + pos, len - pos, &used))
			return bgs_rs_diag(diag, RS_ECORRUPT, off + pos,
					   "region table: entry %zu is "
					   "malformed",
					   i);
		why = bgs_rs_region_problem(&h->regions[i]);
		if (why)
			return bgs_rs_diag(diag, RS_ECORRUPT, off + pos,
					   "region table: region %zu ('%s'): "
					   "%s",
					   i, h->regions[i].name, why);
	}
	if (pos != len)
		return bgs_rs_diag(diag, RS_ECORRUPT, off + pos,
				   "region table: %zu bytes left over",
				   len - pos);
	dup = bgs_rs_region_dup(h->regions, h->nregions);
	if (dup == -ENOMEM)
		return bgs_rs_diag(diag, -ENOMEM, off, "out of memory");
	if (dup >= 0)
		return bgs_rs_diag(diag, RS_ECORRUPT, off,
				   "region table: name '%s' used twice",
				   h->regions[dup].name);
	return 0;
}

/* ---- page records -------------------------------------------------------- */

static int stored_len_check(const struct rs_head *h, const struct rs_extent *e,
			    struct rs_diag *diag)
{
	const uint64_t raw = e->npages * RS_PAGE;
	bool ok;

	switch (e->encoding) {
	case RS_ENC_ZERO:
	case RS_ENC_PARENT:
		ok = e->stored_len == 0;
		break;
	case RS_ENC_RAW:
		ok = e->stored_len == raw;
		break;
	default:
		/* An lz4 block expands less than 255 times: a short payload
		 * cannot claim a large record (and its allocation). */
		ok = e->stored_len && e->stored_len <= LZ4_COMPRESSBOUND(raw) &&
		     raw <= 255ull * e->stored_len;
		break;
	}
	if (!ok)
		return bgs_rs_diag_rec(diag, RS_ECORRUPT, h, e,
				       "%u payload bytes for encoding %u",
				       e->stored_len, e->encoding);
	return 0;
}

int bgs_rs_extent_check(const struct rs_head *h, const struct rs_extent *e,
			struct rs_diag *diag)
{
	const struct rs_region *r;
	uint64_t unit, pages;

	if (e->region >= h->nregions)
		return bgs_rs_diag_rec(diag, RS_ECORRUPT, h, e,
				       "no such region");
	r = &h->regions[e->region];
	if (r->kind == RS_KIND_UNSAVED)
		return bgs_rs_diag_rec(diag, RS_ERANGE, h, e,
				       "the region stores no pages");
	if (e->encoding > RS_ENC_PARENT)
		return bgs_rs_diag_rec(diag, RS_ECORRUPT, h, e,
				       "unknown encoding %u", e->encoding);
	if (e->encoding == RS_ENC_PARENT && !(h->flags & RS_HF_INCREMENTAL))
		return bgs_rs_diag_rec(diag, RS_ECORRUPT, h, e,
				       "a parent reference in a full snapshot");
	unit = bgs_rs_region_unit(r);
	if (!e->npages || e->npages > bgs_rs_region_max_pages(r) ||
	    e->first % unit || e->npages % unit)
		return bgs_rs_diag_rec(diag, RS_ECORRUPT, h, e,
				       "bad page count or a split huge page");
	pages = bgs_rs_region_pages(r);
	if (e->first > pages || e->npages > pages - e->first)
		return bgs_rs_diag_rec(diag, RS_ERANGE, h, e,
				       "outside the region (%llu pages)",
				       (unsigned long long)pages);
	return stored_len_check(h, e, diag);
}

int bgs_rs_rec_extent(const struct rs_head *h, const struct rs_rechdr *rh,
		      uint64_t off, struct rs_extent *e, struct rs_diag *diag)
{
	*e = (struct rs_extent){
		.region = rh->a,
		.encoding = rh->encoding,
		.first = rh->c,
		.npages = rh->b,
		.offset = off,
		.stored_len = (uint32_t)rh->payload_len,
	};
	if (rh->payload_len > UINT32_MAX)
		return bgs_rs_diag_rec(diag, RS_ECORRUPT, h, e,
				       "payload of %llu bytes",
				       (unsigned long long)rh->payload_len);
	if ((rh->encoding == RS_ENC_ZERO || rh->encoding == RS_ENC_PARENT) &&
	    rh->data_csum)
		return bgs_rs_diag_rec(diag, RS_ECORRUPT, h, e,
				       "a data checksum without data");
	return bgs_rs_extent_check(h, e, diag);
}

/* 1.1: the checksum of an lz4 payload as stored (a RAW payload's is its
 * data checksum, ZERO and PARENT have none: the header says all). */
static int stored_check(const struct rs_head *h, const struct rs_extent *e,
			const struct rs_rechdr *rh, const uint8_t *payload,
			struct rs_diag *diag)
{
	if (!(h->flags & RS_HF_STORED_SUMS) || e->encoding != RS_ENC_LZ4)
		return 0;
	if (!bgs_rs_csum_ok(rh->stored_csum,
			    bgs_rs_hash(payload, e->stored_len)))
		return bgs_rs_diag_rec(diag, RS_ECHECKSUM, h, e,
				       "stored checksum mismatch");
	return 0;
}

int bgs_rs_pages_decode(const struct rs_head *h, const struct rs_extent *e,
			const struct rs_rechdr *rh, const uint8_t *payload,
			uint8_t *out, const void **data, struct rs_diag *diag)
{
	const size_t raw = e->npages * RS_PAGE;
	const uint8_t *p = payload;
	int ret;

	*data = NULL;
	if (e->encoding == RS_ENC_ZERO || e->encoding == RS_ENC_PARENT)
		return 0;
	ret = stored_check(h, e, rh, payload, diag);
	if (ret)
		return ret;
	if (e->encoding == RS_ENC_LZ4) {
		const int n =
			LZ4_decompress_safe((const char *)payload, (char *)out,
					    (int)e->stored_len, (int)raw);

		if (n < 0 || (size_t)n != raw)
			return bgs_rs_diag_rec(diag, RS_ECORRUPT, h, e,
					       "lz4 data does not decode to "
					       "%zu bytes",
					       raw);
		p = out;
	}
	if (!bgs_rs_csum_ok(rh->data_csum, bgs_rs_hash(p, raw)))
		return bgs_rs_diag_rec(diag, RS_ECHECKSUM, h, e,
				       "data checksum mismatch");
	*data = p;
	return 0;
}

int bgs_rs_pages_check(const struct rs_head *h, const struct rs_extent *e,
		       const struct rs_rechdr *rh, const uint8_t *payload,
		       struct rs_diag *diag)
{
	if (e->encoding != RS_ENC_RAW)
		return stored_check(h, e, rh, payload, diag);
	if (!bgs_rs_csum_ok(rh->data_csum, bgs_rs_hash(payload, e->stored_len)))
		return bgs_rs_diag_rec(diag, RS_ECHECKSUM, h, e,
				       "data checksum mismatch");
	return 0;
}

int bgs_rs_attachment_check(const struct rs_rechdr *rh, uint64_t off,
			    struct rs_diag *diag)
{
	if (rh->a < 1 || rh->a > RS_NAME_MAX || rh->c > RS_ATTACHMENT_MAX ||
	    rh->payload_len != rh->a + rh->c || rh->b || rh->encoding)
		return bgs_rs_diag(diag, RS_ECORRUPT, off,
				   "attachment at offset %llu: bad header "
				   "(name %u bytes, data %llu bytes)",
				   (unsigned long long)off, rh->a,
				   (unsigned long long)rh->c);
	return 0;
}

/* ---- index --------------------------------------------------------------- */

void bgs_rs_index_encode(struct rs_disk_index *d, uint8_t type,
			 const struct rs_extent *e)
{
	memset(d, 0, sizeof(*d));
	rs_put64(&d->offset, e->offset);
	rs_put64(&d->first, e->first);
	rs_put32(&d->npages, (uint32_t)e->npages);
	rs_put32(&d->stored_len, e->stored_len);
	rs_put32(&d->region, e->region);
	d->type = type;
	d->encoding = e->encoding;
}

int bgs_rs_index_decode(const struct rs_head *h, const struct rs_disk_index *d,
			uint64_t off, uint8_t *type, struct rs_extent *e,
			struct rs_diag *diag)
{
	*type = d->type;
	*e = (struct rs_extent){
		.region = rs_get32(&d->region),
		.encoding = d->encoding,
		.first = rs_get64(&d->first),
		.npages = rs_get32(&d->npages),
		.offset = rs_get64(&d->offset),
		.stored_len = rs_get32(&d->stored_len),
	};
	if (!all_zero(d->reserved, sizeof(d->reserved)))
		return bgs_rs_diag(diag, RS_ECORRUPT, off,
				   "index entry at offset %llu: reserved "
				   "bytes set",
				   (unsigned long long)off);
	if (d->type == RS_REC_PAGES)
		return bgs_rs_extent_check(h, e, diag);
	if (d->type == RS_REC_ATTACHMENT && !e->region && !e->encoding &&
	    !e->first && !e->npages && e->stored_len >= 1 &&
	    e->stored_len <= RS_NAME_MAX + RS_ATTACHMENT_MAX)
		return 0;
	return bgs_rs_diag(diag, RS_ECORRUPT, off,
			   "index entry at offset %llu: malformed (type %u)",
			   (unsigned long long)off, d->type);
}

int bgs_rs_extent_cmp(const void *a, const void *b)
{
	const struct rs_extent *x = a, *y = b;

	if (x->region != y->region)
		return x->region < y->region ? -1 : 1;
	if (x->first != y->first)
		return x->first < y->first ? -1 : 1;
	return 0;
}

static int missing(struct rs_diag *d, const struct rs_head *h, uint32_t r,
		   uint64_t from, uint64_t to, uint64_t off)
{
	return bgs_rs_diag(d, RS_EMISSING, off,
			   "region '%s': pages %llu..%llu are not stored",
			   h->regions[r].name, (unsigned long long)from,
			   (unsigned long long)to - 1);
}

int bgs_rs_coverage(const struct rs_head *h, const struct rs_extent *e,
		    size_t n, struct rs_diag *diag)
{
	size_t i = 0;

	for (uint32_t r = 0; r < h->nregions; r++) {
		const uint64_t pages = bgs_rs_region_pages(&h->regions[r]);
		uint64_t next = 0;

		for (; i < n && e[i].region == r; i++) {
			if (e[i].first > next)
				return missing(diag, h, r, next, e[i].first,
					       e[i].offset);
			if (e[i].first < next)
				return bgs_rs_diag_rec(diag, RS_EOVERLAP, h,
						       &e[i],
						       "pages stored "
						       "twice");
			next = e[i].first + e[i].npages;
		}
		if (h->regions[r].kind != RS_KIND_UNSAVED && next < pages)
			return missing(diag, h, r, next, pages, 0);
	}
	if (i < n)
		return bgs_rs_diag_rec(diag, RS_ECORRUPT, h, &e[i],
				       "records out of order");
	return 0;
}

/* ---- footer -------------------------------------------------------------- */

void bgs_rs_footer_encode(struct rs_disk_footer *d, const struct rs_footer *f)
{
	memset(d, 0, sizeof(*d));
	memcpy(d->magic, bgs_rs_footer_magic, sizeof(d->magic));
	rs_put64(&d->index_offset, f->index_offset);
	rs_put64(&d->file_size, f->file_size);
	rs_put64(&d->nrecords, f->nrecords);
	rs_put64(&d->nattachments, f->nattachments);
	memcpy(d->snapshot_id, f->snapshot_id, 16);
	rs_put64(&d->checksum,
		 bgs_rs_hash(d, offsetof(struct rs_disk_footer, checksum)));
}

int bgs_rs_footer_decode(struct rs_footer *f, const void *src, uint64_t off,
			 struct rs_diag *diag)
{
	struct rs_disk_footer d;

	memcpy(&d, src, sizeof(d));
	if (memcmp(d.magic, bgs_rs_footer_magic, sizeof(d.magic)))
		return bgs_rs_diag(diag, RS_ECORRUPT, off,
				   "no footer at offset %llu",
				   (unsigned long long)off);
	if (!bgs_rs_csum_ok(
		    rs_get64(&d.checksum),
		    bgs_rs_hash(&d, offsetof(struct rs_disk_footer, checksum))))
		return bgs_rs_diag(diag, RS_ECHECKSUM, off,
				   "footer at offset %llu: checksum mismatch",
				   (unsigned long long)off);
	f->index_offset = rs_get64(&d.index_offset);
	f->file_size = rs_get64(&d.file_size);
	f->nrecords = rs_get64(&d.nrecords);
	f->nattachments = rs_get64(&d.nattachments);
	memcpy(f->snapshot_id, d.snapshot_id, 16);
	return 0;
}

/* ---- memory -------------------------------------------------------------- */

int bgs_rs_grow(void *p, size_t *cap, size_t need, size_t size)
{
	void **pp = p;
	size_t n = *cap ? *cap : 16;
	void *q;

	if (need <= *cap)
		return 0;
	while (n < need) {
		if (n > SIZE_MAX / 2 / size)
			return -ENOMEM;
		n *= 2;
	}
	q = realloc(*pp, n * size);
	if (!q)
		return -ENOMEM;
	*pp = q;
	*cap = n;
	return 0;
}

bool bgs_rs_page_is_zero(const void *p)
{
	const unsigned char *c = p;

	/* 256 bytes per step: a non-zero page usually fails in the first;
	 * a zero page is read at memory speed (SSE2 is x86-64's baseline). */
	for (size_t off = 0; off < RS_PAGE; off += 256) {
#ifdef __SSE2__
		const __m128i *v = (const __m128i *)(c + off);
		__m128i acc = _mm_setzero_si128();

		for (size_t i = 0; i < 16; i++)
			acc = _mm_or_si128(acc, _mm_loadu_si128(v + i));
		acc = _mm_cmpeq_epi8(acc, _mm_setzero_si128());
		if (_mm_movemask_epi8(acc) != 0xffff)
			return false;
#else
		uint64_t acc = 0;

		for (size_t i = 0; i < 256; i += 8) {
			uint64_t v;

			memcpy(&v, c + off + i, 8);
			acc |= v;
		}
		if (acc)
			return false;
#endif
	}
	return true;
}
