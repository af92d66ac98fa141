/* SPDX-License-Identifier: MIT */
/*
 * Urgent puts never wait for the disk: with a consumer that takes nothing,
 * pages put urgently past the buffer budget land in the overflow, the
 * writer says it is not ready for the scan, and once the consumer reads,
 * the stream holds every page in order, exactly once. Past the overflow's
 * limit, urgent puts wait like any other and lose nothing.
 */
#include "rs_testutil.h"
#include "testutil.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PG    RS_PAGE
#define PAGES 4096u /* 16 MiB of incompressible pages: 4x the arena */

static uint8_t *src;
static struct rs_region region;

struct drain {
	int fd;
	int delay_ms;	 /* after go */
	_Atomic bool go; /* the consumer may start */
	uint8_t *buf;
	size_t len, cap;
};

static void *drain_main(void *arg)
{
	struct drain *d = arg;
	ssize_t n;

	while (!atomic_load(&d->go))
		tu_sleep_ms(1);
	tu_sleep_ms(d->delay_ms);
	for (;;) {
		if (d->cap - d->len < (1u << 20)) {
			d->cap = d->cap ? 2 * d->cap : 8u << 20;
			d->buf = realloc(d->buf, d->cap);
			assert_non_null(d->buf);
		}
		n = read(d->fd, d->buf + d->len, d->cap - d->len);
		if (n <= 0)
			break;
		d->len += (size_t)n;
	}
	return NULL;
}

static int setup(void **state)
{
	(void)state;
	src = malloc((size_t)PAGES * PG);
	rt_fill(src, PAGES, RT_RANDOM, 7);
	strcpy(region.name, "ram");
	region.length = (uint64_t)PAGES * PG;
	region.page_size = PG;
	region.kind = RS_KIND_ANON;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	free(src);
	return 0;
}

/* Every page of the stream in @d equals the source, each seen once. */
static void check_stream(const struct drain *d)
{
	const int fd = rt_memfd(d->buf, d->len);
	uint8_t *seen = calloc(PAGES, 1);
	struct rs_stream *st;
	struct rs_item it;
	int ret;

	assert_int_equal(bgs_rs_stream_open(&st, fd, NULL), 0);
	while ((ret = bgs_rs_stream_next(st, &it, NULL)) == 1) {
		if (it.type != RS_ITEM_PAGES)
			continue;
		assert_non_null(it.data);
		assert_memory_equal(it.data, src + it.first * PG,
				    it.npages * PG);
		for (uint64_t p = it.first; p < it.first + it.npages; p++)
			seen[p]++;
	}
	assert_int_equal(ret, 0);
	for (size_t p = 0; p < PAGES; p++)
		assert_int_equal(seen[p], 1);
	bgs_rs_stream_close(st);
	close(fd);
	free(seen);
}

struct run {
	struct rs_writer *w;
	struct drain d;
	pthread_t t;
	int pipe[2];
};

/* A writer into a pipe whose consumer starts when told (@go), @delay_ms
 * after that. */
static void run_open(struct run *r, uint64_t overflow_pages, bool go,
		     int delay_ms)
{
	const struct rs_writer_opts o = {
		.regions = &region,
		.nregions = 1,
		.buffer_budget = 1, /* the least: two of the largest records */
		.overflow_pages = overflow_pages,
	};

	memset(r, 0, sizeof(*r));
	r->d.delay_ms = delay_ms;
	atomic_init(&r->d.go, go);
	assert_int_equal(pipe2(r->pipe, O_CLOEXEC), 0);
	r->d.fd = r->pipe[0];
	assert_int_equal(bgs_rs_writer_open_fd(&r->w, r->pipe[1], &o), 0);
	assert_int_equal(pthread_create(&r->t, NULL, drain_main, &r->d), 0);
}

/* Every page, one at a time in a shuffled order (faults come in any
 * order), urgently. */
static void put_all_urgent(struct rs_writer *w)
{
	uint32_t *order = malloc(PAGES * sizeof(*order));
	uint64_t rng = 3;

	for (uint32_t i = 0; i < PAGES; i++)
		order[i] = i;
	for (uint32_t i = PAGES - 1; i > 0; i--) {
		const uint32_t j = (uint32_t)(rt_rand(&rng) % (i + 1));
		const uint32_t x = order[i];

		order[i] = order[j];
		order[j] = x;
	}
	bgs_rs_writer_urgent(w, true);
	for (uint32_t i = 0; i < PAGES; i++)
		assert_int_equal(bgs_rs_put_pages(w, 0, order[i], 1,
						  src + (size_t)order[i] * PG),
				 0);
	bgs_rs_writer_urgent(w, false);
	free(order);
}

/* Commit while the consumer reads, then check what it read. */
static void run_close(struct run *r)
{
	atomic_store(&r->d.go, true);
	assert_int_equal(bgs_rs_writer_commit(r->w), 0);
	close(r->pipe[1]);
	pthread_join(r->t, NULL);
	close(r->pipe[0]);
	check_stream(&r->d);
	free(r->d.buf);
}

static void test_urgent_puts_never_wait(void **state)
{
	struct rs_writer_stats ws;
	struct run r;

	(void)state;
	run_open(&r, PAGES, false, 0);
	/* The consumer reads nothing until the puts are done: a put that
	 * waited for it would wait for ever; the alarm ends the test. */
	alarm(20);
	put_all_urgent(r.w);
	alarm(0);
	bgs_rs_writer_stats(r.w, &ws);
	assert_true(ws.peak_overflow_bytes > ((uint64_t)PAGES * PG) / 2);
	/* The scan would wait: not ready. */
	assert_false(bgs_rs_writer_ready(r.w, 8));
	run_close(&r);
}

static void test_overflow_limit_waits(void **state)
{
	const uint64_t limit = 64;
	struct rs_writer_stats ws;
	struct run r;

	(void)state;
	/* The consumer starts 300 ms in: the puts past the limit wait for
	 * it, and nothing is lost. */
	run_open(&r, limit, true, 300);
	put_all_urgent(r.w);
	bgs_rs_writer_stats(r.w, &ws);
	assert_true(ws.peak_overflow_bytes > 0);
	assert_true(ws.peak_overflow_bytes <= limit * (PG + 64));
	run_close(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_urgent_puts_never_wait),
		cmocka_unit_test(test_overflow_limit_waits),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
