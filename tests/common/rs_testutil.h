/* SPDX-License-Identifier: MIT */
/*
 * Helpers for the store's tests, fuzz corpus and benchmark: page contents
 * of each kind, files in memory, and a small trusted parser of valid
 * stores so tests can edit one field, fix the checksums and rebuild.
 */
#ifndef BGS_RS_TESTUTIL_H
#define BGS_RS_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ramstore.h"
#include "rs_format.h"

enum rt_content {
	RT_ZERO,      /* all zero */
	RT_RANDOM,    /* incompressible */
	RT_STRUCT,    /* low-entropy structured data */
	RT_TEXT,      /* words and numbers */
	RT_REALISTIC, /* ~30% zero, ~20% random, structs and text */
};

/* Fill @npages 4 KiB pages; the same seed gives the same bytes. */
void rt_fill(void *p, size_t npages, enum rt_content c, uint64_t seed);
/* tu_rand under the name other tests already use. */
uint64_t rt_rand(uint64_t *state);

/* A fresh private directory under $TMPDIR or /tmp; rt_rmdir empties and
 * removes it. The returned string is static per call site's buffer. */
void rt_mkdtemp(char *dir, size_t len);
void rt_rmdir(const char *dir);
/* Entries in @dir other than . and .. */
int rt_count_entries(const char *dir);

/* A memfd holding @len bytes at offset 0, positioned at 0. */
int rt_memfd(const void *buf, size_t len);
/* The whole content of @fd (from offset 0); caller frees. */
uint8_t *rt_slurp(int fd, size_t *len);

/*
 * Write a store into a memfd with @o, calling @fill to add its content
 * (returns 0 or the error); the file bytes are returned (caller frees).
 */
uint8_t *rt_make_store(const struct rs_writer_opts *o,
		       int (*fill)(struct rs_writer *w, void *arg), void *arg,
		       size_t *len);

/* ---- a trusted parser for editing valid stores --------------------------- */

struct rt_rec {
	uint64_t off;	    /* where it starts */
	struct rs_rechdr h; /* decoded header */
	size_t len;	    /* header + payload */
};

struct rt_layout {
	uint32_t header_len;
	uint32_t rechdr_len; /* 56 (1.1) or 48 (1.0) */
	struct rt_rec *recs; /* every record: regions, data..., index */
	size_t n;
	uint64_t footer_off;
};

/* The record header size of the store @buf (its header's flags). */
uint32_t rt_rechdr_len(const uint8_t *buf);
/* Parse a valid store (asserts on anything unexpected). */
void rt_parse(const uint8_t *buf, size_t len, struct rt_layout *l);
void rt_layout_free(struct rt_layout *l);

/* Recompute checksums after an edit (@buf is the whole store, whose
 * header says the record header size). */
void rt_fix_header(uint8_t *buf);
void rt_fix_rechdr(uint8_t *buf, uint64_t off);
/* Recompute a record's data checksum (decoding lz4), its stored checksum
 * (1.1) and its header's. */
void rt_fix_data(uint8_t *buf, uint64_t off);
void rt_fix_footer(uint8_t *buf, size_t len);

struct rt_blob {
	const uint8_t *p; /* a record: header + payload */
	size_t len;
};

/* The record @r of @buf as a blob. */
struct rt_blob rt_blob_of(const uint8_t *buf, const struct rt_rec *r);

/*
 * A store with the header and region table of @buf followed by @recs in
 * the order given, then a fresh index (PAGES and ATTACHMENT records) and
 * footer. Reorders, drops, duplicates or inserts records. Caller frees.
 */
uint8_t *rt_rebuild(const uint8_t *buf, const struct rt_layout *l,
		    const struct rt_blob *recs, size_t n, size_t *len);

#endif /* BGS_RS_TESTUTIL_H */
