/* SPDX-License-Identifier: MIT */
/*
 * The writer's arena and write queue (rs_wqueue.h). Every write is reaped:
 * a negative result is -errno and sticks, a short write is resubmitted for
 * the rest (the way liburing's examples/io_uring-cp.c does), and the arena
 * is never unmapped while the kernel may still read from it.
 */
#include "rs_wqueue.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The user data of a cancel request: no slot has it. */
#define RS_WQ_CANCEL_TAG   UINT64_MAX
#define RS_WQ_CANCEL_TRIES 50 /* 100 ms each */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

#define RS_WQ_CHUNK_MAX (1u << 20)
#define RS_WQ_DIO_ALIGN 4096u
#define RS_WQ_UNSTORED	INT_MIN /* a ticket's result before its write ends */

static void set_err(struct rs_wq *q, int err)
{
	if (!q->err)
		q->err = err;
}

/* ---- the arena: one shared-memory buffer mapped twice -------------------- */

static int map_arena(struct rs_wq *q)
{
	const int fd = memfd_create("bgsnap-store-buffers", MFD_CLOEXEC);
	uint8_t *base;
	int ret = 0;

	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)q->size)) {
		ret = -errno;
		goto out_close_fd;
	}
	base = mmap(NULL, 2 * q->size, PROT_NONE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (base == MAP_FAILED) {
		ret = -errno;
		goto out_close_fd;
	}
	if (mmap(base, q->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
		 fd, 0) == MAP_FAILED ||
	    mmap(base + q->size, q->size, PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED) {
		ret = -errno;
		munmap(base, 2 * q->size);
		goto out_close_fd;
	}
	q->arena = base;
out_close_fd:
	close(fd); /* the mappings keep the memory */
	return ret;
}

static int setup_ring(struct rs_wq *q, const cpu_set_t *cpus)
{
	int ret = io_uring_queue_init(RS_WQ_DEPTH, &q->ring,
				      IORING_SETUP_COOP_TASKRUN);

	/* COOP_TASKRUN (5.19) only saves interrupts: do without it. */
	if (ret == -EINVAL)
		ret = io_uring_queue_init(RS_WQ_DEPTH, &q->ring, 0);
	if (!ret && cpus) {
		ret = io_uring_register_iowq_aff(&q->ring, sizeof(*cpus), cpus);
		if (ret)
			io_uring_queue_exit(&q->ring);
	}
	return ret;
}

/* Direct I/O if the writer opened @fd with it, aligned as it needs. */
static void setup_direct(struct rs_wq *q)
{
	const int fl = fcntl(q->fd, F_GETFL);

	q->align = RS_WQ_DIO_ALIGN;
	q->direct = !q->stream && fl >= 0 && (fl & O_DIRECT);
#ifdef STATX_DIOALIGN
	struct statx stx;

	if (q->direct &&
	    !statx(q->fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) &&
	    (stx.stx_mask & STATX_DIOALIGN)) {
		const size_t a =
			stx.stx_dio_offset_align > stx.stx_dio_mem_align
				? stx.stx_dio_offset_align
				: stx.stx_dio_mem_align;

		/* 0: no direct I/O on this file after all */
		q->direct = a && a <= q->chunk && !(q->chunk % a);
		q->align = a > q->align ? a : q->align;
	}
#endif
}

/* Write buffered from now on (the tail, or a filesystem refusing). */
static void drop_direct(struct rs_wq *q)
{
	const int fl = fcntl(q->fd, F_GETFL);

	q->direct = false;
	if (fl < 0 || fcntl(q->fd, F_SETFL, fl & ~O_DIRECT))
		set_err(q, -errno);
}

/*
 * Address space for the overflow: segments of the arena's size, so that
 * any reservation fits one. A record never crosses a segment's end, so
 * each may leave up to a record's size unused; the writer's records are
 * at most half the arena (rs_writer.c, arena_size), so a segment closed
 * holds more than half of one, and twice the segments @limit needs, and
 * one, always hold it. Reserved inaccessible, which the kernel counts
 * nowhere, and made writable a segment at a time as first used
 * (overflow_room); a page is touched only as used.
 */
static int map_overflow(struct rs_wq *q, size_t limit)
{
	const size_t nseg = 2 * (limit / q->size + !!(limit % q->size)) + 1;
	void *p;

	if (!limit)
		return 0;
	if (nseg > SIZE_MAX / q->size)
		return -ENOMEM;
	p = mmap(NULL, nseg * q->size, PROT_NONE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	q->over = p;
	q->over_nseg = nseg;
	q->over_limit = limit;
	q->over_seg = calloc(nseg, sizeof(*q->over_seg));
	q->over_free = calloc(nseg, sizeof(*q->over_free));
	if (!q->over_seg || !q->over_free)
		return -ENOMEM; /* bgs_rs_wq_free frees what there is */
	/* Segment 0 on top: the first used, and the next in address order
	 * after it, while none is used again. */
	for (size_t i = 0; i < nseg; i++)
		q->over_free[i] = nseg - 1 - i;
	q->over_nfree = nseg;
	return 0;
}

/* What every queue has: the arena of @budget, the overflow. */
static int init_arena(struct rs_wq *q, size_t budget, size_t over_limit)
{
	const size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	int ret;

	q->size = (budget + pg - 1) / pg * pg;
	q->chunk =
		q->size / 16 < RS_WQ_CHUNK_MAX ? q->size / 16 : RS_WQ_CHUNK_MAX;
	q->chunk -= q->chunk % RS_WQ_DIO_ALIGN;
	q->max_write = 4 * q->chunk;
	ret = map_arena(q);
	return ret ? ret : map_overflow(q, over_limit);
}

int bgs_rs_wq_init(struct rs_wq *q, int fd, bool stream, size_t budget,
		   size_t over_limit, bool sync_io, const cpu_set_t *cpus)
{
	int ret;

	memset(q, 0, sizeof(*q));
	q->fd = fd;
	q->stream = stream;
	q->depth = stream ? 1 : RS_WQ_DEPTH;
	ret = init_arena(q, budget, over_limit);
	if (ret)
		return ret;
	setup_direct(q);
	/* Kernels or sandboxes without io_uring still get a store. */
	q->uring = !sync_io && !setup_ring(q, cpus);
	return 0;
}

int bgs_rs_wq_init_sink(struct rs_wq *q, const struct rs_wq_sink *sink,
			size_t budget, size_t over_limit)
{
	int ret;

	memset(q, 0, sizeof(*q));
	q->fd = -1;
	q->depth = RS_WQ_DEPTH;
	q->sink = *sink;
	q->sink_fd = -1; /* none yet, for bgs_rs_wq_free */
	pthread_mutex_init(&q->sink_lock, NULL);
	ret = init_arena(q, budget, over_limit);
	if (ret)
		return ret;
	q->sink_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (q->sink_fd < 0)
		return -errno;
	for (unsigned i = 0; i < RS_WQ_DEPTH; i++)
		q->ticket[i] = (struct rs_wq_ticket){ .q = q };
	return 0;
}

/* ---- writes -------------------------------------------------------------- */

static uint8_t *at(const struct rs_wq *q, uint64_t pos)
{
	return q->arena + (pos - q->base) % q->size;
}

static struct rs_wslot *slot_at(struct rs_wq *q, unsigned i)
{
	return &q->slot[i % RS_WQ_DEPTH];
}

/* The end of what the arena holds: the overflow comes after it. */
static uint64_t arena_end(const struct rs_wq *q)
{
	return q->fill - q->over_len;
}

static size_t arena_room(const struct rs_wq *q)
{
	return q->size - (size_t)(arena_end(q) - q->done);
}

/* The @k-th segment of the overflow in use, the oldest first. */
static struct rs_over_seg *over_seg(const struct rs_wq *q, size_t k)
{
	return &q->over_seg[(q->over_first + k) % q->over_nseg];
}

static uint8_t *over_at(const struct rs_wq *q, const struct rs_over_seg *g,
			size_t off)
{
	return q->over + g->idx * q->size + off;
}

/* Move what the arena has room for out of the overflow, oldest first,
 * a write's worth at most: the producer may be serving a fault. A
 * segment drained goes back on top of the free ones. */
static void migrate(struct rs_wq *q)
{
	size_t left = q->max_write;

	while (q->over_used && left && arena_room(q)) {
		struct rs_over_seg *g = over_seg(q, 0);
		size_t n = g->hi - g->lo;

		if (n > arena_room(q))
			n = arena_room(q);
		if (n > left)
			n = left;
		memcpy(at(q, arena_end(q)), over_at(q, g, g->lo), n);
		g->lo += n;
		q->over_len -= n;
		left -= n;
		if (g->lo == g->hi) {
			q->over_free[q->over_nfree++] = g->idx;
			q->over_first = (q->over_first + 1) % q->over_nseg;
			q->over_used--;
		}
	}
}

/*
 * Nothing in flight: move what is pending back to the arena's start, so
 * that the arena keeps using the memory it wrote before rather than going
 * round all of it (the first write of a page costs up to a hundred times
 * its copy on some virtual machines: rs_wqueue.h). Up to a chunk, which
 * costs microseconds to copy. Nobody holds a pointer into the arena here
 * (reserve computes its own after).
 *
 * Where the pending bytes run past the ring's end, their source is the
 * second mapping, which aliases the destination without overlapping it in
 * address, so neither memcpy nor memmove may copy them in one go: a few
 * go through a bounce buffer, more wait for the next time.
 */
static void move_to_start(struct rs_wq *q)
{
	const size_t n = arena_end(q) - q->sub;
	const size_t from = (size_t)(at(q, q->sub) - q->arena);

	if (!from)
		return;
	if (n <= RS_WQ_DIO_ALIGN) {
		uint8_t pending[RS_WQ_DIO_ALIGN];

		memcpy(pending, q->arena + from, n);
		memcpy(q->arena, pending, n);
	} else if (n <= q->chunk && from + n <= q->size) {
		memmove(q->arena, q->arena + from, n);
	} else {
		return;
	}
	q->base = q->sub;
}

static void retire(struct rs_wq *q)
{
	while (q->inflight && slot_at(q, q->head)->complete) {
		q->head = (q->head + 1) % RS_WQ_DEPTH;
		q->inflight--;
	}
	q->done = q->inflight ? slot_at(q, q->head)->start : q->sub;
	if (!q->inflight)
		move_to_start(q);
	migrate(q);
}

/* Account @res for slot @i; true if the rest must be written again. */
static bool on_result(struct rs_wq *q, unsigned i, long res)
{
	struct rs_wslot *s = slot_at(q, i);

	if (q->cancelling) {
		s->complete = true;
		return false;
	}
	if (res == -EINTR)
		return true;
	if (res == -EINVAL && q->direct) {
		/* Direct I/O refused (alignment, filesystem): go buffered. */
		drop_direct(q);
		return !q->err;
	}
	if (res == -EAGAIN) {
		/* An O_NONBLOCK descriptor: wait until it takes more. */
		struct pollfd p = { .fd = q->fd, .events = POLLOUT };

		poll(&p, 1, -1);
		return true;
	}
	if (res <= 0) {
		/* A write that takes nothing would loop for ever. */
		set_err(q, res ? (int)res : -EIO);
		s->complete = true;
		return false;
	}
	s->done += (size_t)res;
	s->complete = s->done == s->end - s->start;
	if (!s->complete && q->direct && s->done % q->align)
		drop_direct(q); /* the rest is not aligned any more */
	return !s->complete;
}

static void prep_write(struct rs_wq *q, unsigned i)
{
	const struct rs_wslot *s = slot_at(q, i);
	const uint64_t pos = s->start + s->done;
	struct io_uring_sqe *sqe = io_uring_get_sqe(&q->ring);

	/* Never NULL: one entry per slot and the ring has depth entries. */
	slot_at(q, i)->queued = true;
	io_uring_prep_write(sqe, q->fd, at(q, pos), (unsigned)(s->end - pos),
			    q->stream ? -1ull : pos);
	io_uring_sqe_set_data(sqe, (void *)(uintptr_t)i);
}

static void write_sync(struct rs_wq *q, unsigned i)
{
	const struct rs_wslot *s = slot_at(q, i);
	long res;

	do {
		const uint64_t pos = s->start + s->done;
		const void *p = at(q, pos);
		const size_t len = s->end - pos;

		res = q->stream ? write(q->fd, p, len)
				: pwrite(q->fd, p, len, (off_t)pos);
		if (res < 0)
			res = -errno;
	} while (on_result(q, i, res));
}

/* ---- writes to a sink ----------------------------------------------------- */

static struct rs_wq_ticket *ticket_at(struct rs_wq *q, unsigned i)
{
	return &q->ticket[i % RS_WQ_DEPTH];
}

static void sink_put(struct rs_wq *q, unsigned i)
{
	struct rs_wslot *s = slot_at(q, i);
	struct rs_wq_ticket *t = ticket_at(q, i);
	int ret;

	atomic_store_explicit(&t->res, RS_WQ_UNSTORED, memory_order_relaxed);
	ret = q->sink.put(q->sink.ctx, at(q, s->start), s->end - s->start,
			  s->start, bgs_rs_wq_stored, t);
	if (ret) {
		/* Never started (the last slot taken): as if never queued,
		 * since nothing will ever tell it. */
		set_err(q, ret);
		q->sub = s->start;
		q->inflight--;
	}
}

void bgs_rs_wq_stored(void *ticket, int res)
{
	static const uint64_t one = 1;
	struct rs_wq_ticket *t = ticket;
	struct rs_wq *q = t->q;

	/* Once the result is seen, the queue may be freed: the lock makes
	 * its freeing wait until this thread is done with it. */
	pthread_mutex_lock(&q->sink_lock);
	atomic_store_explicit(&t->res, res, memory_order_release);
	(void)!write(q->sink_fd, &one, sizeof(one));
	pthread_mutex_unlock(&q->sink_lock);
}

/* Account the sink's writes whose end is seen; true if any. */
static bool take_results(struct rs_wq *q)
{
	bool any = false;

	for (unsigned k = 0; k < q->inflight; k++) {
		const unsigned i = q->head + k;
		struct rs_wslot *s = slot_at(q, i);
		const int res = atomic_load_explicit(&ticket_at(q, i)->res,
						     memory_order_acquire);

		if (s->complete || res == RS_WQ_UNSTORED)
			continue;
		any = true;
		q->progress_ns = now_ns();
		if (res < 0)
			set_err(q, res);
		s->done = s->end - s->start;
		s->complete = true;
	}
	return any;
}

/*
 * Account the sink's writes that ended; true if any did. The eventfd is
 * cleared, and looked at again, under the lock a result is told under:
 * so it stays readable exactly while a result is there unseen, and the
 * copier, who sleeps on it, is never woken for nothing, nor left asleep.
 */
static bool sink_results(struct rs_wq *q)
{
	uint64_t v;

	if (!take_results(q))
		return false;
	pthread_mutex_lock(&q->sink_lock);
	(void)!read(q->sink_fd, &v, sizeof(v));
	take_results(q);
	pthread_mutex_unlock(&q->sink_lock);
	retire(q);
	return true;
}

/* Wait for the sink until @end_ns (0: for ever); false once it is over. */
static bool sink_wait(struct rs_wq *q, uint64_t end_ns)
{
	struct pollfd p = { .fd = q->sink_fd, .events = POLLIN };
	const uint64_t now = now_ns();
	int ms = -1;

	if (end_ns) {
		if (now >= end_ns)
			return false;
		ms = (int)((end_ns - now + 999999) / 1000000);
	}
	(void)poll(&p, 1, ms);
	return true;
}

/* reap() for a sink. A sink's writes cannot be cancelled: one that got no
 * answer for max_stall_ns fails the store, and is still waited for when
 * the queue is freed (an object store's operation timeout ends it). */
static void sink_reap(struct rs_wq *q, bool wait)
{
	while (!sink_results(q) && wait && q->inflight) {
		const uint64_t end = q->max_stall_ns && !q->err
					     ? q->progress_ns + q->max_stall_ns
					     : 0;

		if (!sink_wait(q, end)) {
			set_err(q, -ETIMEDOUT);
			return;
		}
	}
}

/* Every write of the sink ended: none of its threads uses the queue. */
static void sink_drain(struct rs_wq *q)
{
	while (q->inflight) {
		sink_results(q);
		if (q->inflight)
			sink_wait(q, 0);
	}
	pthread_mutex_lock(&q->sink_lock);
	pthread_mutex_unlock(&q->sink_lock);
}

/* ---- writes to a file descriptor ------------------------------------------ */

static void submit(struct rs_wq *q)
{
	int ret;

	do
		ret = io_uring_submit(&q->ring);
	while (ret == -EINTR || ret == -EAGAIN);
	for (unsigned i = 0; i < q->inflight; i++) {
		struct rs_wslot *s = slot_at(q, q->head + i);

		/* If the kernel took none, no completion will come for them. */
		if (ret < 0 && s->queued)
			s->complete = true;
		s->queued = false;
	}
	if (ret < 0)
		set_err(q, ret);
}

/* Bytes the next write may carry: whole blocks when direct, at least a
 * chunk unless @force, at most max_write. */
static uint64_t next_write(const struct rs_wq *q, bool force)
{
	uint64_t n = arena_end(q) - q->sub;

	if (q->sink.put) {
		/* To the end of the piece, once it is all there. */
		const uint64_t to_end = q->sink.piece - q->sub % q->sink.piece;

		return n >= to_end ? to_end : force ? n : 0;
	}

	if (q->direct)
		n -= n % q->align;
	if (!force && n < q->chunk)
		return 0;
	return n < q->max_write ? n : q->max_write;
}

/* Waiting for room: write what is pending even if it is short of a
 * chunk? A sink's writes are operations that cost the same whole or cut
 * short: only if nothing else is in flight to free room. */
static bool must_force(const struct rs_wq *q)
{
	return !q->sink.put || !q->inflight;
}

/* Start writes for pending bytes: all there are if @force (but for an
 * unaligned tail when direct), else whole chunks, as slots allow. */
static void submit_pending(struct rs_wq *q, bool force)
{
	unsigned started = 0;

	while (q->inflight < q->depth && !q->err) {
		const uint64_t n = next_write(q, force);
		const unsigned i = q->head + q->inflight;
		struct rs_wslot *s = slot_at(q, i);

		if (!n)
			break;
		*s = (struct rs_wslot){ .start = q->sub, .end = q->sub + n };
		q->sub = s->end;
		if (!q->inflight)
			q->progress_ns = now_ns();
		q->inflight++;
		if (q->uring) {
			prep_write(q, i);
			started++;
		} else if (q->sink.put) {
			sink_put(q, i);
		} else {
			write_sync(q, i);
			retire(q);
		}
	}
	if (started)
		submit(q);
}

/* Handle every completion queued. */
static void handle_cqes(struct rs_wq *q)
{
	struct io_uring_cqe *cqe;
	unsigned head, seen = 0, again = 0;

	io_uring_for_each_cqe(&q->ring, head, cqe)
	{
		const uint64_t tag = io_uring_cqe_get_data64(cqe);

		seen++;
		if (tag == RS_WQ_CANCEL_TAG)
			continue;
		q->progress_ns = now_ns();
		if (on_result(q, (unsigned)tag, cqe->res)) {
			prep_write(q, (unsigned)tag);
			again++;
		}
	}
	io_uring_cq_advance(&q->ring, seen);
	if (again)
		submit(q);
	retire(q);
}

/* Cancel every write in flight and wait for them to end, a few seconds
 * at most: a write that stays (a kernel that cannot interrupt it) leaves
 * its memory to the kernel (stuck) rather than freed under it. */
static void cancel_inflight(struct rs_wq *q)
{
	q->cancelling = true;
	for (int i = 0; q->inflight && i < RS_WQ_CANCEL_TRIES; i++) {
		struct __kernel_timespec ts = { .tv_nsec = 100000000 };
		struct io_uring_sqe *sqe = io_uring_get_sqe(&q->ring);
		struct io_uring_cqe *cqe;

		if (sqe) {
			io_uring_prep_cancel_fd(sqe, q->fd,
						IORING_ASYNC_CANCEL_ALL);
			io_uring_sqe_set_data64(sqe, RS_WQ_CANCEL_TAG);
			io_uring_submit(&q->ring);
		}
		if (!io_uring_wait_cqe_timeout(&q->ring, &cqe, &ts))
			handle_cqes(q);
	}
	q->stuck = q->inflight > 0;
}

/* Nothing completed for max_stall_ns with writes in flight: the reader
 * of a pipe stopped reading, or the disk hangs. */
static void stalled(struct rs_wq *q)
{
	set_err(q, -ETIMEDOUT);
	if (q->uring)
		cancel_inflight(q);
}

static bool stall_over(const struct rs_wq *q)
{
	return q->max_stall_ns && q->inflight && !q->cancelling &&
	       now_ns() - q->progress_ns >= q->max_stall_ns;
}

/* Wait for a completion, until max_stall_ns after the last (-ETIME). */
static int wait_cqe(struct rs_wq *q, struct io_uring_cqe **cqe)
{
	int ret;

	if (!q->max_stall_ns || q->cancelling)
		return io_uring_wait_cqe(&q->ring, cqe);
	do {
		const uint64_t end = q->progress_ns + q->max_stall_ns;
		const uint64_t now = now_ns();
		struct __kernel_timespec ts;

		if (now >= end)
			return -ETIME;
		ts.tv_sec = (long long)((end - now) / 1000000000ULL);
		ts.tv_nsec = (long long)((end - now) % 1000000000ULL);
		ret = io_uring_wait_cqe_timeout(&q->ring, cqe, &ts);
	} while (ret == -ETIME);
	return ret;
}

/* Handle every completion there is; with @wait, at least one. */
static void reap(struct rs_wq *q, bool wait)
{
	struct io_uring_cqe *cqe;
	int ret;

	if (q->sink.put) {
		sink_reap(q, wait);
		return;
	}
	if (!q->uring || !q->inflight)
		return;
	do
		ret = wait ? wait_cqe(q, &cqe)
			   : io_uring_peek_cqe(&q->ring, &cqe);
	while (ret == -EINTR);
	if (ret == -EAGAIN)
		return;
	if (ret == -ETIME) {
		stalled(q);
		return;
	}
	if (ret < 0) {
		/* The ring itself failed: nothing more will complete. */
		set_err(q, ret);
		for (unsigned i = 0; i < q->inflight; i++)
			slot_at(q, q->head + i)->complete = true;
		retire(q);
		return;
	}
	handle_cqes(q);
}

/* ---- the producer's side ------------------------------------------------- */

/* Room for @need more bytes at the overflow's end: in its last segment,
 * or else in the free one on top. NULL past the overflow's limit, or if
 * the kernel will not give a new segment memory (it then waits for the
 * store like any other). */
static uint8_t *overflow_room(struct rs_wq *q, size_t need)
{
	struct rs_over_seg *g =
		q->over_used ? over_seg(q, q->over_used - 1) : NULL;
	size_t idx;

	if (q->over_len + need > q->over_limit)
		return NULL;
	if (!g || g->hi + need > q->size) {
		if (!q->over_nfree) /* never: see map_overflow */
			return NULL;
		/* Those never used come off the stack in address order. */
		idx = q->over_free[q->over_nfree - 1];
		if (idx == q->over_writable) {
			if (mprotect(q->over + idx * q->size, q->size,
				     PROT_READ | PROT_WRITE))
				return NULL;
			q->over_writable++;
		}
		q->over_nfree--;
		g = over_seg(q, q->over_used++);
		*g = (struct rs_over_seg){ .idx = idx };
	}
	return over_at(q, g, g->hi);
}

int bgs_rs_wq_reserve(struct rs_wq *q, size_t need, bool urgent, uint8_t **p)
{
	if (q->err)
		return q->err;
	if (need > q->size)
		return -EINVAL;
	migrate(q);
	q->to_over = false;
	if (urgent && (q->over_len || arena_room(q) < need)) {
		*p = overflow_room(q, need);
		if (*p) {
			q->to_over = true;
			return 0;
		}
	}
	while (q->over_len || arena_room(q) < need) {
		submit_pending(q, must_force(q));
		reap(q, true);
		migrate(q);
		if (q->err)
			return q->err;
	}
	*p = at(q, q->fill);
	return 0;
}

static void stat_max(_Atomic uint64_t *v, uint64_t x)
{
	if (x > atomic_load_explicit(v, memory_order_relaxed))
		atomic_store_explicit(v, x, memory_order_relaxed);
}

void bgs_rs_wq_produce(struct rs_wq *q, size_t len)
{
	if (q->to_over) {
		over_seg(q, q->over_used - 1)->hi += len;
		q->over_len += len;
		stat_max(&q->peak_over, q->over_len);
		q->to_over = false;
	}
	q->fill += len;
	atomic_store_explicit(&q->stored, q->fill, memory_order_relaxed);
	stat_max(&q->peak, q->fill - q->done);
	if (next_write(q, false)) {
		reap(q, false);
		submit_pending(q, false);
	}
}

int bgs_rs_wq_append(struct rs_wq *q, const void *data, size_t len)
{
	const uint8_t *src = data;

	while (len) {
		const size_t n = len < q->max_write ? len : q->max_write;
		uint8_t *dst;
		const int ret = bgs_rs_wq_reserve(q, n, false, &dst);

		if (ret)
			return ret;
		memcpy(dst, src, n);
		bgs_rs_wq_produce(q, n);
		src += n;
		len -= n;
	}
	return q->err;
}

void bgs_rs_wq_kick(struct rs_wq *q)
{
	reap(q, false);
	/* A sink has no reader waiting for the bytes: a piece cut short
	 * would only cost it one more operation. */
	submit_pending(q, !q->sink.put);
}

bool bgs_rs_wq_ready(struct rs_wq *q, size_t need)
{
	if (q->err)
		return true; /* the reservation reports it */
	reap(q, false);
	if (stall_over(q)) {
		stalled(q);
		return true;
	}
	migrate(q);
	if (!q->over_len && arena_room(q) >= need)
		return true;
	submit_pending(q, must_force(q));
	return false;
}

int bgs_rs_wq_wait_fd(const struct rs_wq *q)
{
	return q->uring ? q->ring.ring_fd : q->sink.put ? q->sink_fd : -1;
}

int bgs_rs_wq_flush(struct rs_wq *q)
{
	for (;;) {
		migrate(q);
		submit_pending(q, true);
		if (!q->inflight && (q->sub == q->fill || q->err))
			return q->err;
		if (!q->inflight)
			drop_direct(q); /* only an unaligned tail is left */
		else
			reap(q, true);
	}
}

/* No write reads the overflow: its bytes go out from the arena. */
static void free_overflow(struct rs_wq *q)
{
	if (q->over)
		munmap(q->over, q->over_nseg * q->size);
	free(q->over_seg);
	free(q->over_free);
	q->over = NULL;
	q->over_seg = NULL;
	q->over_free = NULL;
}

void bgs_rs_wq_free(struct rs_wq *q)
{
	if (!q->arena) {
		free_overflow(q);
		return;
	}
	/* Only an abandoned store has writes in flight here (a commit
	 * waited for all): what they would write is not wanted, and a
	 * reader that stopped reading would keep them for ever. */
	if (q->uring && q->inflight)
		cancel_inflight(q);
	if (q->sink.put) {
		sink_drain(q);
		if (q->sink_fd >= 0)
			close(q->sink_fd);
		pthread_mutex_destroy(&q->sink_lock);
	}
	free_overflow(q); /* after the writes' ends, which migrate */
	if (q->stuck) {
		/* The kernel may still read the arena: leave it mapped. */
		io_uring_queue_exit(&q->ring);
		q->arena = NULL;
		return;
	}
	if (q->uring)
		io_uring_queue_exit(&q->ring);
	munmap(q->arena, 2 * q->size);
	q->arena = NULL;
}
