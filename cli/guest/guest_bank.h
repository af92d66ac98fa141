/* SPDX-License-Identifier: MIT */
/*
 * The bank: the built-in guest workload, and the consistency oracle.
 *
 * Writer threads move amounts between accounts spread one per page over
 * the whole memory, each logging its in-flight transfer in a journal in the
 * same memory. Any point-in-time image of the memory balances: the sum of
 * the accounts plus the money in flight (read from the journal) is the
 * constant total. An image whose pages were captured at different times
 * almost never does — which is what the demo, the tests and the benchmark
 * use to prove a snapshot consistent (DESIGN.md, oracle 2).
 *
 * Used by the demo/bench guest and by the tests; it knows nothing of
 * bgsnap.
 */
#ifndef BGS_GUEST_BANK_H
#define BGS_GUEST_BANK_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BANK_MAX_WRITERS 64
/* Op latency histogram: exact below 8 ns, then 8 buckets per power of two
 * (within 12.5%) up to 2^48 ns. */
#define BANK_LAT_BUCKETS 368
/* Records of the start window's running maximum kept per writer. */
#define BANK_WIN_STEPS 64

enum bank_pattern {
	BANK_RANDOM = 0,     /* uniform over all accounts */
	BANK_SEQUENTIAL = 1, /* a moving window, page after page */
	BANK_HOT = 2,	     /* 90% of transfers within 10% of the memory */
};

/* Per-writer figures, owned by that writer (read racily for reports). */
struct bank_writer {
	pthread_t thread;
	struct bank *bank;
	unsigned id;
	uint64_t rng;
	_Atomic uint64_t ops;
	_Atomic uint64_t max_stop_ns; /* longest time parked by a pause */
	_Atomic bool parked;	      /* in the park handler */
	_Atomic uint64_t lat_max_ns;
	/* Longest time from when the writer meant to start a transfer (its
	 * rate's schedule, or the end of the last one) to its end: a pause,
	 * a ptrace stop, a fault blocked on a snapshot, preemption. */
	_Atomic uint64_t max_delay_ns;
	_Atomic uint64_t lat_bucket[BANK_LAT_BUCKETS]; /* op latency */
	/* The start window (bank_window_open): the longest delay of a
	 * transfer that overlapped it, and when the last transfer ended. */
	_Atomic uint64_t win_max_ns;
	_Atomic uint64_t last_end_ns;
	/* Each time win_max_ns grew: the due time of that transfer and the
	 * new maximum. Due times only grow, so the longest delay of the
	 * transfers due by any instant C is the last step due by C: the
	 * window may be closed at an instant already past. */
	uint64_t win_step_due[BANK_WIN_STEPS];
	uint64_t win_step_max[BANK_WIN_STEPS];
	_Atomic unsigned win_steps;
};

struct bank {
	uint8_t *mem;
	size_t len;
	uint32_t naccounts;
	unsigned nwriters;
	enum bank_pattern pattern;
	uint64_t rate; /* transfers/s, all writers; 0: max */
	_Atomic bool stop;
	_Atomic bool paused; /* writers park where they are */
	_Atomic unsigned parked;
	/* 1: writers park between transfers, asleep on it (a futex word) */
	_Atomic uint32_t hold;
	_Atomic unsigned held;
	struct bank_writer writer[BANK_MAX_WRITERS];
	/* Set by the controlling thread, read by the writers: the window
	 * of bank_window_open (0: none) and its close (UINT64_MAX: open). */
	_Atomic uint64_t win_open_ns, win_close_ns;
	/* bank_window_max's: when the longest-delayed transfer was due. */
	uint64_t win_worst_due_ns;
};

/* Lay out and fill @len bytes at @mem (>= 4 pages, page-aligned) with
 * accounts holding a known total. Contents are realistic: compressible
 * payload with some zero pages. */
int bank_format(void *mem, size_t len, uint64_t seed);

/* Start @nwriters threads on formatted memory. */
int bank_start(struct bank *b, void *mem, size_t len, unsigned nwriters,
	       enum bank_pattern pattern, uint64_t rate, uint64_t seed);
/* Stop and join the writers. */
void bank_stop(struct bank *b);

/*
 * Park every writer at an arbitrary instruction (a signal whose handler
 * spins), as a VMM stops vCPUs: the memory is then an arbitrary
 * point-in-time state, possibly mid-transfer. Returns when all are parked.
 * bank_resume() lets them go.
 */
void bank_pause(struct bank *b);
void bank_resume(struct bank *b);

/* Park every writer between transfers (no lock held, nothing in flight),
 * for restoring memory under them; bank_release() lets them go. */
void bank_hold(struct bank *b);
void bank_release(struct bank *b);

/*
 * Check an image of the whole memory: 0 if it balances, else -1 with a
 * one-line reason in @why. Does not modify @image.
 */
int bank_check(const void *image, size_t len, char *why, size_t whylen);

/* After memory was restored from a snapshot: complete the transfers the
 * journal shows in flight and release every lock, as a database replays
 * its log. Writers must be held (bank_hold). */
void bank_recover(void *mem, size_t len);

/* Figures summed over writers since bank_start or the last reset. */
struct bank_figures {
	uint64_t ops;
	uint64_t ops_min; /* of the writer that did the fewest */
	uint64_t lat_p50_ns, lat_p99_ns, lat_max_ns;
	uint64_t max_stop_ns;  /* longest park by bank_pause */
	uint64_t max_delay_ns; /* longest writer delay, any cause */
};
void bank_figures(struct bank *b, struct bank_figures *f);
void bank_figures_reset(struct bank *b);

/*
 * A window around an event that may stop the writers (a snapshot start):
 * bank_window_max() is the longest delay — from when a writer meant to
 * start a transfer (its rate's schedule, or the end of its last one) to
 * that transfer's end, counted from the open at the earliest — of every
 * transfer due by the close that ended after the open: the longest time
 * any writer was kept from running by whatever happened in the window,
 * seen from the writers' side, whether it was a pause, a ptrace stop, a
 * blocked fault or a lost CPU. A delay's part before the open (a writer
 * already preempted, or in a fault) is not the event's. It waits
 * (up to @timeout_ns) until every writer has ended a transfer after the
 * close, so a writer still stopped is counted; *@complete says whether
 * all did. One window at a time, opened and closed by one thread.
 */
void bank_window_open(struct bank *b);
void bank_window_close(struct bank *b);
/* Close it at @ns (CLOCK_MONOTONIC, any process's clock), which may be
 * past: what another process measured (the end of a ptrace stop). */
void bank_window_close_at(struct bank *b, uint64_t ns);
uint64_t bank_window_max(struct bank *b, uint64_t timeout_ns, bool *complete);

#endif
