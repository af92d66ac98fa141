/* SPDX-License-Identifier: MIT */
/*
 * The sequential decoder behind bgs_rs_stream_* and bgs_rs_verify. From a
 * pipe it reads with read(2); to verify a file it reads the same way but
 * with large preads from offset 0, and checks everything a stream reader
 * checks: every record, then the index against the records seen, the
 * coverage of every region and the footer.
 */
#ifndef BGS_RS_STREAM_H
#define BGS_RS_STREAM_H

#include "rs_format.h"

/* The decoder's window onto the file: data in buf[head, tail). */
struct rs_window {
	uint8_t *buf;
	size_t head, tail, cap;
	size_t got; /* bytes the last read added */
};

/* Read-ahead of a file in chunks (rs_readahead.c). */
struct rs_ra;
/* Start reading @chunk bytes at @off into the buffer after the first. */
int bgs_rs_ra_new(struct rs_ra **ra, int fd, uint64_t off, size_t prefix,
		  size_t chunk);
/* Move on to the next chunk, carrying over the @len bytes (at most
 * prefix) at @left, and start reading the one after it. */
int bgs_rs_ra_next(struct rs_ra *ra, const uint8_t *left, size_t len,
		   struct rs_window *w);
/* Waits for a read in flight. */
void bgs_rs_ra_free(struct rs_ra *ra);

/* A stream over @fd read with pread(2) from offset 0 up to @size bytes.
 * Without @decode, the page records of a 1.1 store are checked as stored
 * and not decoded: their items come without data. */
int bgs_rs_stream_open_file(struct rs_stream **s, int fd, uint64_t size,
			    bool decode, struct rs_diag *diag);
/* Bytes consumed so far. */
uint64_t bgs_rs_stream_pos(const struct rs_stream *s);
const struct rs_head *bgs_rs_stream_head(const struct rs_stream *s);
/* After a clean end: the PAGES records seen, sorted by (region, first). */
const struct rs_extent *bgs_rs_stream_extents(const struct rs_stream *s,
					      size_t *n);

#endif /* BGS_RS_STREAM_H */
