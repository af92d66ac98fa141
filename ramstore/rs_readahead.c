/* SPDX-License-Identifier: MIT */
/*
 * Read-ahead for verifying a file: two buffers, one being decoded while
 * io_uring fills the other with the next chunk of the file. The read is
 * queued with IOSQE_ASYNC so a kernel worker copies it out of the page
 * cache (or waits for the disk) on another CPU instead of this thread:
 * the copy alone is a tenth of verify's time.
 *
 * Each buffer has a prefix area in front of its chunk: when the decoder
 * moves on, the bytes it has not consumed yet (part of a record, at most
 * the prefix) are copied just before the new chunk so a record is always
 * contiguous.
 */
#include "rs_stream.h"

#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct rs_ra {
	struct io_uring ring;
	int fd;
	uint8_t *buf[2];
	int cur;      /* the buffer being decoded; the other is read into */
	bool busy;    /* a read into the other buffer is in flight */
	uint64_t off; /* where that read reads */
	size_t prefix, chunk;
};

static void start_read(struct rs_ra *ra)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&ra->ring);

	/* Never NULL: at most one read is ever in flight. */
	io_uring_prep_read(sqe, ra->fd, ra->buf[!ra->cur] + ra->prefix,
			   (unsigned)ra->chunk, ra->off);
	sqe->flags |= IOSQE_ASYNC;
	ra->busy = io_uring_submit(&ra->ring) == 1;
}

/* The result of the read in flight: bytes read or -errno. */
static long finish_read(struct rs_ra *ra)
{
	struct io_uring_cqe *cqe;
	long res;
	int ret;

	if (!ra->busy) /* the submission failed: read now */
		return -EAGAIN;
	do
		ret = io_uring_wait_cqe(&ra->ring, &cqe);
	while (ret == -EINTR);
	if (ret < 0)
		return ret;
	res = cqe->res;
	io_uring_cqe_seen(&ra->ring, cqe);
	ra->busy = false;
	return res;
}

int bgs_rs_ra_new(struct rs_ra **rap, int fd, uint64_t off, size_t prefix,
		  size_t chunk)
{
	struct rs_ra *ra = calloc(1, sizeof(*ra));
	int ret;

	*rap = NULL;
	if (!ra)
		return -ENOMEM;
	ra->buf[0] = malloc(prefix + chunk);
	ra->buf[1] = malloc(prefix + chunk);
	ret = ra->buf[0] && ra->buf[1] ? 0 : -ENOMEM;
	if (!ret)
		ret = io_uring_queue_init(2, &ra->ring, 0);
	if (ret) {
		free(ra->buf[0]);
		free(ra->buf[1]);
		free(ra);
		return ret;
	}
	ra->fd = fd;
	ra->off = off;
	ra->prefix = prefix;
	ra->chunk = chunk;
	start_read(ra);
	*rap = ra;
	return 0;
}

int bgs_rs_ra_next(struct rs_ra *ra, const uint8_t *left, size_t len,
		   struct rs_window *w)
{
	long res = finish_read(ra);
	uint8_t *next = ra->buf[!ra->cur];

	if (res == -EAGAIN || res == -EINTR) { /* read here instead */
		const ssize_t n = pread(ra->fd, next + ra->prefix, ra->chunk,
					(off_t)ra->off);

		res = n < 0 ? -errno : n;
	}
	if (res < 0)
		return (int)res;
	if (len > ra->prefix)
		return -EINVAL;
	if (len)
		memmove(next + ra->prefix - len, left, len);
	ra->cur = !ra->cur;
	ra->off += (uint64_t)res;
	*w = (struct rs_window){ .buf = next,
				 .head = ra->prefix - len,
				 .tail = ra->prefix + (size_t)res,
				 .cap = ra->prefix + ra->chunk,
				 .got = (size_t)res };
	if (res)
		start_read(ra);
	return 0;
}

void bgs_rs_ra_free(struct rs_ra *ra)
{
	if (!ra)
		return;
	/* The kernel may still be writing into the other buffer. */
	if (ra->busy)
		finish_read(ra);
	io_uring_queue_exit(&ra->ring);
	free(ra->buf[0]);
	free(ra->buf[1]);
	free(ra);
}
