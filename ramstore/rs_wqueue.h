/* SPDX-License-Identifier: MIT */
/*
 * The writer's buffer pool and write queue: one arena of a fixed byte
 * budget that records are appended to, written out in large writes with
 * io_uring (or write(2) when io_uring is unavailable). The arena is a
 * ring mapped twice back to back, so any run of bytes in it is contiguous
 * in memory even where the ring wraps. Bytes are freed in order as their
 * writes complete; a full arena makes the producer wait (back-pressure).
 *
 * Except an urgent producer (a page a writer of the owner waits on): it
 * never waits for the disk. What does not fit the arena goes to the
 * overflow, address space reserved up front and touched only as used, in
 * segments of the arena's size; its bytes move into the arena, in order,
 * as writes free room. While the overflow holds anything, every new byte
 * goes after it, urgent or not, so the file stays in position order.
 * A segment drained is used again before any other: memory written before
 * costs a copy, memory touched for the first time a page fault per page
 * too, which costs up to a hundred times as much on some virtual machines.
 *
 * Positions are logical byte counts since the start of the store, which
 * is also the file offset of each byte: [done, sub) is being written,
 * [sub, fill) waits to be submitted, everything else is free. Whenever
 * no write is in flight, what is pending (up to a chunk) moves back to
 * the start of the arena, so a disk that keeps up keeps the arena small
 * and cache-hot, and most of its pages are never touched at all.
 *
 * On a file opened with O_DIRECT, writes go straight from the arena to the
 * device, so neither this thread nor a kernel worker copies them into the
 * page cache (buffered io_uring writes cost more CPU than lz4 itself).
 * Direct writes are whole aligned blocks; the unaligned tail at the end,
 * or anything the filesystem refuses, is written buffered.
 *
 * Or the bytes go to a sink instead of a file descriptor (an object
 * store): straight from the arena, no pipe and no copy in between, in
 * writes that end where its pieces (data objects) end.
 */
#ifndef BGS_RS_WQUEUE_H
#define BGS_RS_WQUEUE_H

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Add to a statistic that only the writer's thread changes and any thread
 * reads: a relaxed load and store, no locked instruction, and each figure
 * is always whole. */
static inline void bgs_rs_stat_add(_Atomic uint64_t *v, uint64_t n)
{
	const uint64_t old = atomic_load_explicit(v, memory_order_relaxed);

	atomic_store_explicit(v, old + n, memory_order_relaxed);
}

#define RS_WQ_DEPTH 8 /* writes in flight to a file; a stream has one */

/*
 * A store that is not a file descriptor. It is given the bytes in order,
 * each write at its position, none across a multiple of @piece, and says
 * when each is stored.
 */
struct rs_wq_sink {
	/* Start storing the @len bytes at @buf as those at @pos. @buf stays
	 * as it is until @stored(@ticket, 0 or -errno) is called, once, from
	 * any thread. Returns 0, or -errno and @stored is not called. */
	int (*put)(void *ctx, const void *buf, size_t len, uint64_t pos,
		   void (*stored)(void *ticket, int res), void *ticket);
	void *ctx;
	size_t piece;
};

/* What a sink's write came to: set by bgs_rs_wq_stored(). */
struct rs_wq_ticket {
	struct rs_wq *q;
	_Atomic int res; /* RS_WQ_UNSTORED until then */
};

/* Bytes [lo, hi) of the overflow's segment number idx. */
struct rs_over_seg {
	size_t idx, lo, hi;
};

struct rs_wslot {
	uint64_t start, end; /* the bytes this write carries */
	size_t done;	     /* of which the kernel took so far */
	bool queued;	     /* prepared, io_uring_submit not yet called */
	bool complete;
};

struct rs_wq {
	int fd;
	bool stream;	/* no offsets: at the fd's position, one at a time */
	bool uring;	/* false: write(2)/pwrite(2) in the caller */
	bool direct;	/* the fd has O_DIRECT: aligned writes only */
	size_t align;	/* of offsets and lengths when direct */
	unsigned depth; /* slots in use at most */
	struct io_uring ring;
	uint8_t *arena; /* 2 * size bytes of address space, one buffer */
	size_t size;
	uint64_t base;	  /* the position at arena offset 0 (modulo size) */
	size_t chunk;	  /* pending bytes worth a write */
	size_t max_write; /* the largest single write */
	uint64_t fill, sub, done;
	/* The overflow: bytes [fill - over_len, fill), in the segments of
	 * over_seg, oldest first; the arena holds [done, fill - over_len). */
	uint8_t *over; /* over_nseg segments of size bytes */
	size_t over_limit, over_len;
	size_t over_nseg;
	size_t over_writable; /* segments [0, over_writable) may be written */
	struct rs_over_seg *over_seg; /* a ring: over_used from over_first */
	size_t over_first, over_used;
	size_t *over_free; /* a stack of over_nfree: the last drained on top */
	size_t over_nfree;
	bool to_over; /* the last reservation is in the overflow */
	struct rs_wslot slot[RS_WQ_DEPTH]; /* a ring, oldest at head */
	/* A sink instead of fd: each slot's ticket, and an eventfd that
	 * every stored write bumps (under sink_lock, so that the queue is
	 * never freed under a thread still telling it). */
	struct rs_wq_sink sink;
	struct rs_wq_ticket ticket[RS_WQ_DEPTH];
	int sink_fd;
	pthread_mutex_t sink_lock;
	unsigned head, inflight;
	int err; /* the first error; sticks */
	/* No completion for max_stall_ns while writes are in flight (0: no
	 * limit) is -ETIMEDOUT: the writes in flight are cancelled. */
	uint64_t max_stall_ns;
	uint64_t progress_ns; /* the last completion, or the first write */
	bool cancelling;      /* completions end their slot, nothing more */
	bool stuck;	      /* writes the kernel would not give back */
	/* Written by the writer's thread, read by any (stats): relaxed. */
	_Atomic uint64_t stored; /* fill, for other threads */
	_Atomic uint64_t peak;
	_Atomic uint64_t peak_over; /* high-water mark of the overflow */
};

/* @budget is rounded up to whole pages. @stream: @fd may be a pipe.
 * @over_limit: the most bytes urgent reservations may hold beyond the
 * budget (0: none; they wait like any other). */
int bgs_rs_wq_init(struct rs_wq *q, int fd, bool stream, size_t budget,
		   size_t over_limit, bool sync_io, const cpu_set_t *cpus);
/* The same, writing to @sink. */
int bgs_rs_wq_init_sink(struct rs_wq *q, const struct rs_wq_sink *sink,
			size_t budget, size_t over_limit);
/* A sink's write ended (its @stored callback). Any thread. */
void bgs_rs_wq_stored(void *ticket, int res);
/* Cancel the writes in flight and wait for them (errors ignored; a sink's
 * cannot be cancelled: they are waited for), then free everything. */
void bgs_rs_wq_free(struct rs_wq *q);
/* Contiguous room for @need bytes (at most the arena size) at *@p,
 * waiting for writes to complete if the arena is full, unless @urgent
 * and the overflow has room. */
int bgs_rs_wq_reserve(struct rs_wq *q, size_t need, bool urgent, uint8_t **p);
/* The first @len reserved bytes are filled: queue them for writing. */
void bgs_rs_wq_produce(struct rs_wq *q, size_t len);
/* Copy @len bytes in, as much at a time as fits. */
int bgs_rs_wq_append(struct rs_wq *q, const void *data, size_t len);
/* Submit what is pending without waiting (a sink: whole pieces). */
void bgs_rs_wq_kick(struct rs_wq *q);
/* Would a reservation of @need bytes be served now, without waiting?
 * Reaps what completed and submits what is pending, never waits. */
bool bgs_rs_wq_ready(struct rs_wq *q, size_t need);
/* A descriptor that polls readable when a write completes, or -1 when
 * writes are synchronous (nothing to wait for). Only the queue reads it,
 * when it reaps. */
int bgs_rs_wq_wait_fd(const struct rs_wq *q);
/* Submit everything and wait until all of it is written. */
int bgs_rs_wq_flush(struct rs_wq *q);

/* The file offset the next appended byte gets. */
static inline uint64_t bgs_rs_wq_pos(const struct rs_wq *q)
{
	return q->fill;
}

#endif /* BGS_RS_WQUEUE_H */
