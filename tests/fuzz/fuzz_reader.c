/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for both store readers: the input is a store. It is
 * opened from a memfd (open, every query, decode, find, attachments,
 * verify as stored and deep) and decoded as a stream from a pipe (or the
 * memfd, when it does not fit a pipe). Only crashes and sanitizer reports
 * count; errors are the expected outcome for almost every input.
 *
 * The fuzzing build (BGS_RS_FUZZING) accepts any checksum, so mutations
 * reach the checks behind them; the replay driver (fuzz_replay.c) runs the
 * same code against the normal build.
 */
#include "ramstore.h"

#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MAX_DECODES 64
#define MAX_ATTACH  (4u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int load(const uint8_t *data, size_t size)
{
	static int fd = -1;

	if (fd < 0)
		fd = memfd_create("fuzz_reader", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, 0) ||
	    pwrite(fd, data, size, 0) != (ssize_t)size ||
	    lseek(fd, 0, SEEK_SET))
		abort();
	return fd;
}

static void attachments(struct rs_reader *r)
{
	for (size_t i = 0; i < bgs_rs_attachment_count(r); i++) {
		const char *name;
		size_t len;
		void *buf;

		if (bgs_rs_attachment_info(r, i, &name, &len) ||
		    strlen(name) > RS_NAME_MAX || len > MAX_ATTACH)
			continue;
		buf = malloc(len ? len : 1);
		if (buf)
			bgs_rs_attachment_read(r, i, buf, NULL);
		free(buf);
	}
}

static void random_access(struct rs_reader *r)
{
	const size_t n = bgs_rs_extent_count(r);
	struct rs_diag d;
	const void *p;

	for (size_t i = 0; i < n && i < MAX_DECODES; i++) {
		const struct rs_extent *e = bgs_rs_extent(r, i);

		if (bgs_rs_decode(r, i, &p, &d) == 0 && p && e->npages)
			/* touch what decode says is there */
			(void)*(volatile const uint8_t *)((const uint8_t *)p +
							  e->npages * 4096 - 1);
		bgs_rs_find(r, e->region, e->first + e->npages - 1);
		bgs_rs_find(r, e->region, e->first + e->npages);
	}
	if (n) /* the cache, and a neighbour again */
		bgs_rs_decode(r, 0, &p, &d);
}

/* Straight into a buffer, for extents small enough to be worth it. */
static void decode_to(const struct rs_reader *r)
{
	static uint8_t buf[512 * 4096];
	struct rs_decoder *dec;
	struct rs_diag d;

	if (bgs_rs_decoder_new(&dec))
		return;
	for (size_t i = 0; i < bgs_rs_extent_count(r) && i < MAX_DECODES; i++)
		if (bgs_rs_extent(r, i)->npages <= 512)
			bgs_rs_decode_to(r, dec, i, buf, &d);
	bgs_rs_decoder_free(dec);
}

static void open_file(int fd)
{
	struct rs_reader *r;
	struct rs_diag d;

	if (bgs_rs_open(&r, fd, &d))
		return;
	(void)bgs_rs_info(r)->host;
	for (size_t i = 0; i <= bgs_rs_region_count(r); i++)
		(void)bgs_rs_region(r, i);
	attachments(r);
	random_access(r);
	decode_to(r);
	bgs_rs_verify(r, 0, &d, NULL, NULL); /* 1.1: as stored */
	bgs_rs_verify(r, RS_VERIFY_DEEP, &d, NULL, NULL);
	bgs_rs_close(r);
}

static void stream(int fd)
{
	struct rs_stream *s;
	struct rs_item it;
	struct rs_diag d;

	if (bgs_rs_stream_open(&s, fd, &d))
		return;
	for (size_t i = 0; i < bgs_rs_stream_region_count(s); i++)
		(void)bgs_rs_stream_region(s, i)->name[0];
	while (bgs_rs_stream_next(s, &it, &d) == 1)
		if (it.data && it.len)
			(void)((const volatile uint8_t *)it.data)[it.len - 1];
	bgs_rs_stream_close(s);
}

/* A pipe holding the whole input, its write end closed; -1 if it does
 * not fit (non-blocking: a pipe may be smaller than asked for). */
static int pipe_of(const uint8_t *data, size_t size)
{
	int fds[2];
	bool fits;

	if (pipe2(fds, O_CLOEXEC | O_NONBLOCK))
		return -1;
	fits = size <= 65536 || fcntl(fds[1], F_SETPIPE_SZ, (int)size) >= 0;
	fits = fits && (!size || write(fds[1], data, size) == (ssize_t)size);
	close(fds[1]);
	if (fits)
		return fds[0];
	close(fds[0]);
	return -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const int fd = load(data, size);
	const int p = pipe_of(data, size);

	open_file(fd);
	if (p >= 0) {
		stream(p);
		close(p);
	} else {
		lseek(fd, 0, SEEK_SET);
		stream(fd);
	}
	return 0;
}
