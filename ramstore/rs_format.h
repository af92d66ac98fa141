/* SPDX-License-Identifier: MIT */
/*
 * The on-disk format of a bgsnap store, version 1.1, and 1.0, which is
 * still read (spec: FORMAT.md), and the checks shared by the writer, the
 * random-access reader and the stream reader. Everything on disk is
 * little-endian; the structs below are the layout, made of byte arrays so
 * they have no padding and no alignment, and every field is read and
 * written through the rs_get/rs_put helpers.
 *
 *   offset 0
 *   +-----------------------------+
 *   | file header (header_len B)  |  magic, version, ids, host ... checksum
 *   +-----------------------------+
 *   | REGIONS record              |  record header + region table
 *   +-----------------------------+
 *   | PAGES / ATTACHMENT records  |  record header + payload each, any
 *   | (and skippable unknown ones)|  order; unknown skippable types too
 *   +-----------------------------+  <- footer.index_offset
 *   | INDEX record                |  record header + 32 B per entry
 *   +-----------------------------+
 *   | footer (64 B)               |  magic, index offset, file size ...
 *   +-----------------------------+  <- footer.file_size
 *
 *   record header, 1.1 (56 B; a, b, c mean different things per type),
 *   in every file with RS_HF_STORED_SUMS (every file written as 1.1):
 *   0      4    5   6     8   12  16    24       32     40      48    56
 *   +------+----+---+-----+---+---+-----+--------+------+-------+-----+
 *   |"BGSr"|type|enc|flags| a | b |  c  |payload_|data_ |stored_|hdr_ |
 *   |      |    |   |     |   |   |     |len     |csum  |csum   |csum |
 *   +------+----+---+-----+---+---+-----+--------+------+-------+-----+
 *   stored_csum: XXH3-64 of the payload as stored (an lz4 block as is)
 *
 *   record header, 1.0 (48 B): the same without stored_csum
 *   0      4    5   6     8   12  16    24       32     40    48
 *   +------+----+---+-----+---+---+-----+--------+------+-----+
 *   |"BGSr"|type|enc|flags| a | b |  c  |payload_|data_ |hdr_ |
 *   |      |    |   |     |   |   |     |len     |csum  |csum |
 *   +------+----+---+-----+---+---+-----+--------+------+-----+
 */
#ifndef BGS_RS_FORMAT_H
#define BGS_RS_FORMAT_H

#include "ramstore.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define RS_PAGE		     4096u
#define RS_PAGE_SHIFT	     12
#define RS_VERSION_MAJOR     1
#define RS_VERSION_MINOR     2	   /* what the writer writes */
#define RS_HEADER_SIZE	     256u  /* header_len written by 1.0 and 1.1 */
#define RS_HEADER_MAX	     4096u /* largest header_len a reader accepts */
#define RS_RECHDR_V10	     48u   /* a record header, 1.0 */
#define RS_RECHDR_V11	     56u   /* with stored_csum (RS_HF_STORED_SUMS) */
#define RS_RECHDR_MAX	     RS_RECHDR_V11
#define RS_FOOTER_SIZE	     64u
#define RS_REGION_ENTRY_SIZE 32u
#define RS_INDEX_ENTRY_SIZE  32u
#define RS_HUGE_PAGE_MAX     (1u << 30)
#define RS_REGION_LEN_MAX    (1ull << 57)
#define RS_MAX_ATTACHMENTS   65536u
#define RS_REC_MAGIC	     0x72534742u /* "BGSr" */

/* The largest record a region may hold, in 4 KiB pages. */
#define RS_HUGE_RECORD_MAX_PAGES (RS_HUGE_PAGE_MAX / RS_PAGE)

extern const uint8_t bgs_rs_file_magic[8];   /* "\x89" "BGSNAP\n" */
extern const uint8_t bgs_rs_footer_magic[8]; /* "\x89" "BGSEND\n" */

enum rs_rectype {
	RS_REC_REGIONS = 1,
	RS_REC_PAGES = 2,
	RS_REC_ATTACHMENT = 3,
	RS_REC_INDEX = 4,
};

#define RS_RECF_SKIPPABLE                                                      \
	0x0001u /* a reader that does not know the type
				   * may skip the record */

/* Header flags: bits 0..15 must be understood, bits 16..31 may be ignored. */
#define RS_HF_INCOMPAT_MASK 0x0000ffffu
#define RS_HF_STORED_SUMS                                                      \
	0x00000001u		      /* 1.1: record headers are 56 B and
					 * carry stored_csum */
#define RS_HF_INCREMENTAL 0x00010000u /* set iff parent_id is not zero */
#define RS_HF_KNOWN	  (RS_HF_STORED_SUMS | RS_HF_INCREMENTAL)

/* XXH3-64 of no bytes: the stored checksum of a record without payload. */
#define RS_EMPTY_SUM 0x2d06800538d394c2ull

/* ---- little-endian fields ------------------------------------------------ */

typedef struct {
	uint8_t b[2];
} rs_le16;
typedef struct {
	uint8_t b[4];
} rs_le32;
typedef struct {
	uint8_t b[8];
} rs_le64;

static inline uint16_t rs_get16(const rs_le16 *p)
{
	return (uint16_t)(p->b[0] | p->b[1] << 8);
}

static inline uint32_t rs_get32(const rs_le32 *p)
{
	return (uint32_t)p->b[0] | (uint32_t)p->b[1] << 8 |
	       (uint32_t)p->b[2] << 16 | (uint32_t)p->b[3] << 24;
}

static inline uint64_t rs_get64(const rs_le64 *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p->b[i];
	return v;
}

static inline void rs_put16(rs_le16 *p, uint16_t v)
{
	p->b[0] = (uint8_t)v;
	p->b[1] = (uint8_t)(v >> 8);
}

static inline void rs_put32(rs_le32 *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p->b[i] = (uint8_t)(v >> (8 * i));
}

static inline void rs_put64(rs_le64 *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p->b[i] = (uint8_t)(v >> (8 * i));
}

/* ---- the on-disk structures ---------------------------------------------- */

struct rs_disk_header {
	uint8_t magic[8];
	rs_le16 version_major;
	rs_le16 version_minor;
	rs_le32 header_len; /* bytes, checksum included; 8-aligned */
	rs_le32 page_size;  /* the page unit of the file: 4096 */
	rs_le32 flags;	    /* RS_HF_* */
	rs_le32 nregions;
	rs_le32 reserved0;
	uint8_t snapshot_id[16];
	uint8_t parent_id[16];
	rs_le64 created_ns;
	char host[64];	 /* NUL-padded, not always NUL-terminated */
	char kernel[64]; /* the same */
	uint8_t reserved[48];
	rs_le64 checksum; /* XXH3-64 of bytes [0, header_len - 8) */
};
_Static_assert(sizeof(struct rs_disk_header) == RS_HEADER_SIZE, "header");
_Static_assert(offsetof(struct rs_disk_header, checksum) == 248, "header");

/* A record header of 1.1 (a file with RS_HF_STORED_SUMS). */
struct rs_disk_rec {
	rs_le32 magic; /* RS_REC_MAGIC */
	uint8_t type;  /* enum rs_rectype */
	uint8_t encoding;
	rs_le16 flags;
	rs_le32 a; /* PAGES: region; ATTACHMENT: name_len; REGIONS: count */
	rs_le32 b; /* PAGES: npages */
	rs_le64 c; /* PAGES: first page; ATTACHMENT: data_len; INDEX: count */
	rs_le64 payload_len;
	rs_le64 data_csum;   /* XXH3-64 of the raw bytes (see FORMAT.md) */
	rs_le64 stored_csum; /* XXH3-64 of the payload as stored */
	rs_le64 hdr_csum;    /* XXH3-64 of bytes [0, 48) */
};
_Static_assert(sizeof(struct rs_disk_rec) == RS_RECHDR_V11, "record");
_Static_assert(offsetof(struct rs_disk_rec, data_csum) == 32, "record");
_Static_assert(offsetof(struct rs_disk_rec, stored_csum) == 40, "record");
_Static_assert(offsetof(struct rs_disk_rec, hdr_csum) == 48, "record");

/* A record header of 1.0: the same fields but stored_csum. */
struct rs_disk_rec10 {
	rs_le32 magic;
	uint8_t type;
	uint8_t encoding;
	rs_le16 flags;
	rs_le32 a;
	rs_le32 b;
	rs_le64 c;
	rs_le64 payload_len;
	rs_le64 data_csum;
	rs_le64 hdr_csum; /* XXH3-64 of bytes [0, 40) */
};
_Static_assert(sizeof(struct rs_disk_rec10) == RS_RECHDR_V10, "record 1.0");
_Static_assert(offsetof(struct rs_disk_rec10, hdr_csum) == 40, "record 1.0");

struct rs_disk_region {
	rs_le64 base;
	rs_le64 length;
	rs_le32 page_size;
	rs_le16 kind;
	rs_le16 prot;
	rs_le16 name_len; /* the name follows this entry */
	uint8_t reserved[6];
};
_Static_assert(sizeof(struct rs_disk_region) == RS_REGION_ENTRY_SIZE, "rgn");

struct rs_disk_index {
	rs_le64 offset; /* of the record header */
	rs_le64 first;
	rs_le32 npages;
	rs_le32 stored_len; /* the record's payload_len */
	rs_le32 region;
	uint8_t type; /* RS_REC_PAGES or RS_REC_ATTACHMENT */
	uint8_t encoding;
	uint8_t reserved[2];
};
_Static_assert(sizeof(struct rs_disk_index) == RS_INDEX_ENTRY_SIZE, "index");

struct rs_disk_footer {
	uint8_t magic[8];
	rs_le64 index_offset;
	rs_le64 file_size;
	rs_le64 nrecords; /* PAGES records */
	rs_le64 nattachments;
	uint8_t snapshot_id[16];
	rs_le64 checksum; /* XXH3-64 of bytes [0, 56) */
};
_Static_assert(sizeof(struct rs_disk_footer) == RS_FOOTER_SIZE, "footer");

/* ---- decoded forms ------------------------------------------------------- */

/* A record header, fields as on disk (see struct rs_disk_rec); a 1.0
 * header has no stored_csum (0 here). */
struct rs_rechdr {
	uint8_t type, encoding;
	uint16_t flags;
	uint32_t a, b;
	uint64_t c;
	uint64_t payload_len;
	uint64_t data_csum;
	uint64_t stored_csum;
};

/* What every reader knows once header and region table are checked; the
 * writer builds the same from its options. */
struct rs_head {
	struct rs_info info;
	struct rs_region *regions;
	size_t nregions;
	uint32_t header_len;
	uint32_t rechdr_len; /* RS_RECHDR_V11 with RS_HF_STORED_SUMS, else
			      * RS_RECHDR_V10 */
	uint32_t flags;
	uint64_t header_csum;
	uint64_t data_start; /* the first byte after the region table */
};

struct rs_footer {
	uint64_t index_offset, file_size, nrecords, nattachments;
	uint8_t snapshot_id[16];
};

/* ---- shared checks and codecs (rs_format.c) ------------------------------ */

uint64_t bgs_rs_hash(const void *p, size_t len);
/* bgs_rs_hash of bytes that come in pieces: new, add..., end (which
 * starts it over for the next bytes). NULL: out of memory. */
struct rs_hashing;
struct rs_hashing *bgs_rs_hashing_new(void);
void bgs_rs_hashing_add(struct rs_hashing *h, const void *p, size_t len);
uint64_t bgs_rs_hashing_end(struct rs_hashing *h);
void bgs_rs_hashing_free(struct rs_hashing *h);
/* A checksum comparison. The fuzzing build accepts any value so that a
 * fuzzer reaches the checks behind it; nothing may rely on it for safety. */
static inline bool bgs_rs_csum_ok(uint64_t stored, uint64_t computed)
{
#ifdef BGS_RS_FUZZING
	(void)stored;
	(void)computed;
	return true;
#else
	return stored == computed;
#endif
}

int bgs_rs_diag(struct rs_diag *d, int code, uint64_t off, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* The same, prefixed "record at offset X (region 'n', pages a..b): ". */
int bgs_rs_diag_rec(struct rs_diag *d, int code, const struct rs_head *h,
		    const struct rs_extent *e, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

bool bgs_rs_name_ok(const char *name, size_t len);
/* NULL if @r may stand in a store, else what is wrong with it. */
const char *bgs_rs_region_problem(const struct rs_region *r);
/* The index of a name that appears twice among @n, -1 if none, or
 * -ENOMEM. */
ssize_t bgs_rs_name_dup(const char **names, size_t n);
ssize_t bgs_rs_region_dup(const struct rs_region *r, size_t n);
uint64_t bgs_rs_region_pages(const struct rs_region *r);
/* 4 KiB pages per huge page (1 unless hugetlb), most pages per record. */
uint64_t bgs_rs_region_unit(const struct rs_region *r);
uint64_t bgs_rs_region_max_pages(const struct rs_region *r);

void bgs_rs_header_encode(struct rs_disk_header *d, const struct rs_head *h);
/* Check the first @avail bytes: magic, major version, header_len. */
int bgs_rs_header_start(const void *buf, size_t avail, uint32_t *header_len,
			struct rs_diag *diag);
/* Decode a whole header of h->header_len bytes into @h (regions apart). */
int bgs_rs_header_decode(struct rs_head *h, const void *buf,
			 struct rs_diag *diag);

/* A record header of @len bytes (RS_RECHDR_V10 or _V11) at @dst. */
void bgs_rs_rec_encode(void *dst, const struct rs_rechdr *h, uint32_t len);
/*
 * Decode the @len-byte record header at @src: its magic and header
 * checksum (RS_ECORRUPT / RS_ECHECKSUM with a diag), and in 1.1 that its
 * stored checksum agrees with what the header alone says of the payload
 * (RS_ECORRUPT): the hash of nothing for ZERO and PARENT pages, the data
 * checksum where that is of the payload too (RAW pages, REGIONS,
 * ATTACHMENT, INDEX). Only an LZ4 or unknown payload needs hashing again.
 */
int bgs_rs_rec_decode(struct rs_rechdr *h, const void *src, uint32_t len,
		      uint64_t off, struct rs_diag *diag);

/* The region table: encoded size, encoding, and the checked decoding. */
size_t bgs_rs_regions_size(const struct rs_region *r, size_t n);
void bgs_rs_regions_encode(uint8_t *dst, const struct rs_region *r, size_t n);
int bgs_rs_regions_check_hdr(const struct rs_head *h,
			     const struct rs_rechdr *rh, struct rs_diag *diag);
int bgs_rs_regions_decode(struct rs_head *h, const uint8_t *p, size_t len,
			  struct rs_diag *diag);

/* The PAGES record or index entry @e against the region table. */
int bgs_rs_extent_check(const struct rs_head *h, const struct rs_extent *e,
			struct rs_diag *diag);
/* A record header as an extent (ECORRUPT if its lengths do not fit). */
int bgs_rs_rec_extent(const struct rs_head *h, const struct rs_rechdr *rh,
		      uint64_t off, struct rs_extent *e, struct rs_diag *diag);
/*
 * Decode the payload of PAGES record @e (header @rh) into @out (npages *
 * 4 KiB) and check it: in 1.1 the stored checksum first, then the data
 * checksum of the pages. *@data is @payload for RAW, @out for LZ4, NULL
 * for ZERO and PARENT.
 */
int bgs_rs_pages_decode(const struct rs_head *h, const struct rs_extent *e,
			const struct rs_rechdr *rh, const uint8_t *payload,
			uint8_t *out, const void **data, struct rs_diag *diag);
/* 1.1 only: check the payload of PAGES record @e as stored, without
 * decoding it (a RAW payload's data checksum is of the same bytes). */
int bgs_rs_pages_check(const struct rs_head *h, const struct rs_extent *e,
		       const struct rs_rechdr *rh, const uint8_t *payload,
		       struct rs_diag *diag);

/* Attachment records: header and name. */
int bgs_rs_attachment_check(const struct rs_rechdr *rh, uint64_t off,
			    struct rs_diag *diag);

void bgs_rs_index_encode(struct rs_disk_index *d, uint8_t type,
			 const struct rs_extent *e);
/* Decode and check one entry; *@type is RS_REC_PAGES or _ATTACHMENT. */
int bgs_rs_index_decode(const struct rs_head *h, const struct rs_disk_index *d,
			uint64_t off, uint8_t *type, struct rs_extent *e,
			struct rs_diag *diag);
int bgs_rs_extent_cmp(const void *a, const void *b); /* (region, first) */
/* @e sorted: every page of every saved region covered exactly once. */
int bgs_rs_coverage(const struct rs_head *h, const struct rs_extent *e,
		    size_t n, struct rs_diag *diag);

void bgs_rs_footer_encode(struct rs_disk_footer *d, const struct rs_footer *f);
int bgs_rs_footer_decode(struct rs_footer *f, const void *src, uint64_t off,
			 struct rs_diag *diag);

/* ---- small memory helpers ------------------------------------------------ */

/* Grow *@p (of *@cap elements of @size) to hold at least @need. */
int bgs_rs_grow(void *p, size_t *cap, size_t need, size_t size);
/* True if the 4 KiB at @p are all zero. */
bool bgs_rs_page_is_zero(const void *p);

#endif /* BGS_RS_FORMAT_H */
