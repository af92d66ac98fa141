/* SPDX-License-Identifier: MIT */
/*
 * The write queue delivers every byte appended, once and in order, through
 * the wraps of its ring and the moves of what is pending back to the
 * ring's start whenever it goes idle. A small ring and a consumer that
 * reads in fits and starts make both happen often; records
 * of any size (a footer is a few dozen bytes, a page record 4 KiB) end
 * anywhere in the ring, also across its end. Bursts of urgent records,
 * as in a storm of faults, go through the overflow and back; an overflow
 * that stays full writes into memory it wrote before, not into new.
 *
 * Into a sink (an object store), writes come in order and never cross the
 * end of a piece, however the ring and the pieces compare in size; each
 * is told stored from another thread, late; a write that fails fails the
 * queue, and freeing it waits for every write still out.
 */
#include "rs_wqueue.h"
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define RING	   (64u << 10) /* the budget: the ring wraps every 64 KiB */
#define RING_LARGE (1u << 20)  /* its chunks: 64 KiB, not a page */
#define TOTAL	   (48u << 20) /* bytes appended */
#define RECORD_MAX 6000u

/* The byte at stream position @pos: a position-keyed pattern, so that a
 * byte out of place, lost or doubled is seen where it happens. */
static uint8_t byte_at(uint64_t pos)
{
	uint64_t x = pos / 8 * 0x9e3779b97f4a7c15ULL;

	x ^= x >> 29;
	return (uint8_t)(x >> (8 * (pos % 8)));
}

struct consumer {
	int fd;
	unsigned pause_in; /* pause after one read in this many */
	uint64_t got;	   /* bytes read */
	uint64_t bad_at;   /* the first wrong byte's position, or UINT64_MAX */
};

/* Read the pipe in sizes from 1 byte to 64 KiB, pausing now and then, so
 * that writes are sometimes in flight and sometimes not when the producer
 * appends; check each byte as it comes. */
static void *consume(void *arg)
{
	static uint8_t buf[64 << 10];
	struct consumer *c = arg;
	uint64_t rng = 11;
	ssize_t n;

	c->bad_at = UINT64_MAX;
	for (;;) {
		const size_t want = 1 + (size_t)(tu_rand(&rng) % sizeof(buf));

		n = read(c->fd, buf, want);
		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n && c->bad_at == UINT64_MAX; i++)
			if (buf[i] != byte_at(c->got + (uint64_t)i))
				c->bad_at = c->got + (uint64_t)i;
		c->got += (uint64_t)n;
		if (tu_rand(&rng) % c->pause_in == 0)
			usleep(200);
	}
	return NULL;
}

/* One record of @len bytes, reserved urgently (into the overflow when
 * the ring is full) or not, filled in place as the writer does. */
static void put_record(struct rs_wq *q, size_t len, bool urgent)
{
	uint8_t *p;

	assert_int_equal(bgs_rs_wq_reserve(q, len, urgent, &p), 0);
	for (size_t i = 0; i < len; i++)
		p[i] = byte_at(bgs_rs_wq_pos(q) + i);
	bgs_rs_wq_produce(q, len);
}

#define BURST 2048 /* urgent records in a row: a storm of faults */

/* Append TOTAL bytes as records of random sizes, kicking now and then (as
 * the copier does at the end of a run), and flush. Where @burst_in, one
 * record in that many is instead a burst of BURST urgent ones. */
static void produce(struct rs_wq *q, unsigned burst_in)
{
	uint64_t rng = 5;

	while (bgs_rs_wq_pos(q) < TOTAL) {
		const bool burst = burst_in && tu_rand(&rng) % burst_in == 0;

		for (unsigned k = 0;
		     k < (burst ? BURST : 1) && bgs_rs_wq_pos(q) < TOTAL; k++) {
			size_t len = 1 + (size_t)(tu_rand(&rng) % RECORD_MAX);

			if (len > TOTAL - bgs_rs_wq_pos(q))
				len = (size_t)(TOTAL - bgs_rs_wq_pos(q));
			put_record(q, len, burst);
		}
		if (tu_rand(&rng) % 8 == 0)
			bgs_rs_wq_kick(q);
	}
	assert_int_equal(bgs_rs_wq_flush(q), 0);
}

/* Into a pipe, through a ring of @ring bytes, with @over_limit bytes of
 * overflow, urgent bursts one in @burst_in records, the consumer pausing
 * after one read in @pause_in. */
static void stream_in_order(size_t ring, size_t over_limit, unsigned burst_in,
			    unsigned pause_in)
{
	struct consumer c = { .pause_in = pause_in };
	struct rs_wq q;
	pthread_t t;
	int p[2];

	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	c.fd = p[0];
	assert_int_equal(pthread_create(&t, NULL, consume, &c), 0);
	assert_int_equal(
		bgs_rs_wq_init(&q, p[1], true, ring, over_limit, false, NULL),
		0);
	if (!q.uring)
		fprintf(stderr, "# no io_uring: write(2) in the producer\n");
	produce(&q, burst_in);
	if (over_limit) {
		/* Through many of its segments (a ring's size each). */
		fprintf(stderr, "# overflow peak %llu bytes\n",
			(unsigned long long)atomic_load(&q.peak_over));
		assert_true(atomic_load(&q.peak_over) > (2u << 20));
	}
	bgs_rs_wq_free(&q);
	close(p[1]);
	pthread_join(t, NULL);
	close(p[0]);
	if (c.bad_at != UINT64_MAX)
		fail_msg("byte %llu of the stream is wrong",
			 (unsigned long long)c.bad_at);
	assert_int_equal(c.got, TOTAL);
}

static void test_stream_in_order(void **state)
{
	(void)state;
	stream_in_order(RING, 0, 0, 64);
}

/* Urgent records spill into the overflow while the consumer lags, and
 * move back into the ring as it reads: in order all the same. */
static void test_stream_through_overflow(void **state)
{
	(void)state;
	stream_in_order(RING, 6u << 20, 512, 4);
}

/* The same into a file, several writes in flight at their offsets, into a
 * ring of @ring bytes. */
static void file_in_order(size_t ring)
{
	const int fd = memfd_create("wq", MFD_CLOEXEC);
	uint8_t *back;
	struct rs_wq q;
	struct stat st;

	assert_true(fd >= 0);
	assert_int_equal(bgs_rs_wq_init(&q, fd, false, ring, 0, false, NULL),
			 0);
	produce(&q, 0);
	bgs_rs_wq_free(&q);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_size, TOTAL);
	back = malloc(TOTAL);
	assert_non_null(back);
	assert_int_equal(pread(fd, back, TOTAL, 0), TOTAL);
	for (uint64_t i = 0; i < TOTAL; i++)
		if (back[i] != byte_at(i))
			fail_msg("byte %llu of the file is wrong",
				 (unsigned long long)i);
	free(back);
	close(fd);
}

static void test_file_in_order(void **state)
{
	(void)state;
	file_in_order(RING);
}

/* What is pending when no write is out moves back to the ring's start:
 * up to a chunk, here 64 KiB, not a page (hundreds of moves). */
static void test_file_in_order_large_ring(void **state)
{
	(void)state;
	file_in_order(RING_LARGE);
}

static long minor_faults(void)
{
	struct rusage ru;

	assert_int_equal(getrusage(RUSAGE_THREAD, &ru), 0);
	return ru.ru_minflt;
}

#define HELD   (1u << 20)  /* what the overflow holds all along */
#define PASSED (32u << 20) /* what goes through it meanwhile */

/*
 * A consumer as fast as the producer, but behind by HELD: urgent records
 * go through an overflow that never drains. Its memory is written again
 * and again, not new memory each time: PASSED bytes through it touch
 * about HELD of memory, not PASSED (a page touched for the first time
 * costs a page fault, up to a hundred times a page's copy on some virtual
 * machines). Every byte still comes out in order.
 */
static void test_overflow_reused(void **state)
{
	static uint8_t buf[64 << 10];
	uint64_t got = 0, rng = 3;
	struct rs_wq q;
	long faults;
	int p[2];

	(void)state;
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
	assert_int_equal(
		bgs_rs_wq_init(&q, p[1], true, RING, 4 * HELD, false, NULL), 0);
	if (!q.uring) {
		/* write(2) would wait for a reader: this test has none. */
		bgs_rs_wq_free(&q);
		close(p[1]);
		close(p[0]);
		tu_skip_missing("io_uring");
		return;
	}
	memset(buf, 0, sizeof(buf)); /* its own faults before the count */
	while (q.over_len < HELD)
		put_record(&q, 1 + (size_t)(tu_rand(&rng) % RECORD_MAX), true);
	faults = minor_faults();
	while (bgs_rs_wq_pos(&q) < PASSED) {
		const ssize_t n = read(p[0], buf, sizeof(buf));

		if (n < 0) {
			assert_int_equal(errno, EAGAIN);
			bgs_rs_wq_kick(&q);
			usleep(50);
			continue;
		}
		for (ssize_t i = 0; i < n; i++)
			if (buf[i] != byte_at(got + (uint64_t)i))
				fail_msg("byte %llu of the stream is wrong",
					 (unsigned long long)(got +
							      (uint64_t)i));
		got += (uint64_t)n;
		/* As much in again as came out, so that it holds HELD. */
		while (bgs_rs_wq_pos(&q) < got + RING + HELD)
			put_record(&q, 1 + (size_t)(tu_rand(&rng) % RECORD_MAX),
				   true);
	}
	faults = minor_faults() - faults;
	fprintf(stderr,
		"# %u MiB through an overflow of %llu KiB: %ld faults\n",
		PASSED >> 20, (unsigned long long)q.over_len >> 10, faults);
	assert_true(q.over_len >= HELD / 2);
	/* HELD is 256 pages; PASSED in new memory would be 8192 (the former
	 * overflow took 5697 here). A quarter of that leaves room for other
	 * faults, such as AddressSanitizer's fake stack frames (800 where
	 * its detect_stack_use_after_return is on). */
	assert_true(faults < 2048);
	bgs_rs_wq_free(&q);
	close(p[1]);
	close(p[0]);
}

/* ---- a sink ------------------------------------------------------------- */

#define SINK_OUT 64u /* writes a sink may hold at once (more than a queue's) */

/* A sink that keeps what it is given, and a thread that tells each write
 * stored (or failed: the @fail_at'th) after a random little while. */
struct sink {
	size_t piece;
	unsigned fail_at;   /* 1-based; 0: none fails */
	unsigned refuse_at; /* this put fails at once (not told) */
	uint8_t *got;	    /* TOTAL bytes, as stored */
	uint64_t next;	    /* the position the next put must have */
	unsigned puts;
	bool crossed, out_of_order;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct write_out {
		void (*stored)(void *ticket, int res);
		void *ticket;
		int res;
	} out[SINK_OUT];
	unsigned head, n; /* under lock */
	unsigned told;	  /* writes told, or being told: under lock */
	bool stop;
	pthread_t teller;
};

static int sink_put(void *ctx, const void *buf, size_t len, uint64_t pos,
		    void (*stored)(void *ticket, int res), void *ticket)
{
	struct sink *k = ctx;
	struct write_out *o;

	if (k->puts + 1 == k->refuse_at) {
		k->refuse_at = 0;
		return -ENOSPC;
	}
	k->out_of_order |= pos != k->next;
	k->crossed |= pos / k->piece != (pos + len - 1) / k->piece;
	if (pos + len <= TOTAL)
		memcpy(k->got + pos, buf, len);
	k->next = pos + len;
	k->puts++;
	pthread_mutex_lock(&k->lock);
	assert_true(k->n < SINK_OUT);
	o = &k->out[(k->head + k->n++) % SINK_OUT];
	o->stored = stored;
	o->ticket = ticket;
	o->res = k->puts == k->fail_at ? -EIO : 0;
	pthread_cond_signal(&k->wake);
	pthread_mutex_unlock(&k->lock);
	return 0;
}

static void *sink_teller(void *arg)
{
	struct sink *k = arg;
	uint64_t rng = 3;

	pthread_mutex_lock(&k->lock);
	while (!k->stop || k->n) {
		if (!k->n) {
			pthread_cond_wait(&k->wake, &k->lock);
			continue;
		}
		const unsigned i = k->head;

		pthread_mutex_unlock(&k->lock);
		usleep((useconds_t)(tu_rand(&rng) % 300));
		pthread_mutex_lock(&k->lock);
		k->told++; /* before: once told, the queue may be gone */
		pthread_mutex_unlock(&k->lock);
		k->out[i].stored(k->out[i].ticket, k->out[i].res);
		pthread_mutex_lock(&k->lock);
		k->head = (k->head + 1) % SINK_OUT;
		k->n--;
	}
	pthread_mutex_unlock(&k->lock);
	return NULL;
}

static void sink_start(struct sink *k, size_t piece, unsigned fail_at)
{
	*k = (struct sink){ .piece = piece, .fail_at = fail_at };
	k->refuse_at = UINT_MAX;
	k->got = calloc(1, TOTAL);
	assert_non_null(k->got);
	pthread_mutex_init(&k->lock, NULL);
	pthread_cond_init(&k->wake, NULL);
	assert_int_equal(pthread_create(&k->teller, NULL, sink_teller, k), 0);
}

static void sink_stop(struct sink *k)
{
	pthread_mutex_lock(&k->lock);
	k->stop = true;
	pthread_cond_signal(&k->wake);
	pthread_mutex_unlock(&k->lock);
	pthread_join(k->teller, NULL);
	free(k->got);
}

/* A queue onto @k's sink, a @ring of budget and @over_limit of overflow. */
static void queue_into(struct rs_wq *q, struct sink *k, size_t ring,
		       size_t over_limit)
{
	const struct rs_wq_sink sink = {
		.put = sink_put,
		.ctx = k,
		.piece = k->piece,
	};

	assert_int_equal(bgs_rs_wq_init_sink(q, &sink, ring, over_limit), 0);
}

/* Page-sized records until the queue fails (TOTAL bytes at most): the
 * error, or 0. */
static int produce_until_error(struct rs_wq *q)
{
	int ret = 0;

	while (!ret && bgs_rs_wq_pos(q) < TOTAL) {
		uint8_t *p;

		ret = bgs_rs_wq_reserve(q, 4096, false, &p);
		if (!ret)
			bgs_rs_wq_produce(q, 4096);
	}
	return ret;
}

static void sink_in_order(size_t ring, size_t piece)
{
	struct sink k;
	struct rs_wq q;

	sink_start(&k, piece, 0);
	queue_into(&q, &k, ring, 6u << 20);
	assert_true(bgs_rs_wq_wait_fd(&q) >= 0);
	produce(&q, 512);
	bgs_rs_wq_free(&q);
	fprintf(stderr, "# pieces of %zu KiB: %u writes\n", piece >> 10,
		k.puts);
	assert_false(k.out_of_order);
	assert_false(k.crossed);
	assert_int_equal(k.next, TOTAL);
	for (uint64_t i = 0; i < TOTAL; i++)
		if (k.got[i] != byte_at(i))
			fail_msg("byte %llu stored is wrong",
				 (unsigned long long)i);
	/* Whole pieces where the ring holds several: few writes. */
	if (piece < ring / 2)
		assert_true(k.puts <= TOTAL / piece + TOTAL / piece / 4);
	sink_stop(&k);
}

/* Pieces smaller than the ring: written whole, as they fill. */
static void test_sink_small_pieces(void **state)
{
	(void)state;
	sink_in_order(RING, 16u << 10);
}

/* Pieces larger than the ring (a small budget, 4 MiB data objects): each
 * written in parts, none across its end. */
static void test_sink_large_pieces(void **state)
{
	(void)state;
	sink_in_order(RING, 256u << 10);
}

/* A write that fails fails what comes after it; freeing the queue (not
 * flushed, as when a save is abandoned) waits until the sink has told it
 * of every write it holds. */
static void test_sink_failure(void **state)
{
	struct sink k;
	struct rs_wq q;

	(void)state;
	sink_start(&k, 16u << 10, 20);
	queue_into(&q, &k, RING, 0);
	assert_int_equal(produce_until_error(&q), -EIO);
	/* No flush: freed as an abandoned store is, writes still out. */
	bgs_rs_wq_free(&q);
	pthread_mutex_lock(&k.lock);
	assert_int_equal(k.told, k.puts);
	pthread_mutex_unlock(&k.lock);
	sink_stop(&k);
}

/* A put refused at once, with nothing else out (the first) or with
 * writes out (a later one): the queue fails with it, and neither a
 * flush nor freeing it waits for a write that never started. */
static void sink_refused(unsigned refuse_at)
{
	struct sink k;
	struct rs_wq q;

	sink_start(&k, 16u << 10, 0);
	k.refuse_at = refuse_at;
	queue_into(&q, &k, RING, 0);
	assert_int_equal(produce_until_error(&q), -ENOSPC);
	assert_int_equal(bgs_rs_wq_flush(&q), -ENOSPC);
	bgs_rs_wq_free(&q);
	assert_int_equal(k.puts, refuse_at - 1);
	pthread_mutex_lock(&k.lock);
	assert_int_equal(k.told, k.puts);
	pthread_mutex_unlock(&k.lock);
	sink_stop(&k);
}

static void test_sink_refused_first(void **state)
{
	(void)state;
	sink_refused(1);
}

static void test_sink_refused_later(void **state)
{
	(void)state;
	sink_refused(30);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stream_in_order),
		cmocka_unit_test(test_stream_through_overflow),
		cmocka_unit_test(test_file_in_order),
		cmocka_unit_test(test_file_in_order_large_ring),
		cmocka_unit_test(test_overflow_reused),
		cmocka_unit_test(test_sink_small_pieces),
		cmocka_unit_test(test_sink_large_pieces),
		cmocka_unit_test(test_sink_failure),
		cmocka_unit_test(test_sink_refused_first),
		cmocka_unit_test(test_sink_refused_later),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
