/* SPDX-License-Identifier: MIT */
/*
 * The engine's private structures: a handle's regions and attachments, and
 * the state of one running save (struct bgs_save), shared by the thread
 * that starts it, the fault thread (snap_fault.c) and the copier
 * (snap_copier.c). Which thread owns each field is said on the field.
 */
#ifndef BGS_SNAP_INTERNAL_H
#define BGS_SNAP_INTERNAL_H

#include "bgsnap.h"
#include "ramstore.h"
#include "uffd.h"
#include "uffd_target.h"

#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <unistd.h>

#define BGS_PAGE_SIZE  4096u
#define BGS_PAGE_SHIFT 12
#define BGS_THP_SIZE   (2u << 20)
#define BGS_THP_PAGES  (BGS_THP_SIZE / BGS_PAGE_SIZE)
#define BGS_RUN_PAGES  64u /* a bulk step: 256 KiB */
/* The scan's runs unprotected in one ioctl, at most: 2 MiB. Each ioctl
 * flushes the TLB, which on a virtual machine may cost more than the
 * change of its pages (tests/bench/bench_unprotect.c, here: 1 GiB costs
 * 0.31-0.38 s in 256 KiB ioctls, 0.17-0.19 in 2 MiB ones, 0.11-0.18 in
 * one). */
#define BGS_UNPROTECT_PAGES 512u
/* Pages copied between two looks at the ring, a fault's longest wait,
 * and the scan's record: 128 KiB, twice lz4's window. Records of 32 KiB
 * made the file a fifth larger (288 against 233 MiB for the bench's
 * 1 GiB) and the save slower; the stall did not grow measurably. */
#define BGS_CHUNK_PAGES	 32u
#define BGS_FAULT_BATCH	 64u   /* uffd messages per read */
#define BGS_FAULT_AROUND 16u   /* pages saved with a faulted one, at most */
#define BGS_RING_SLOTS	 8192u /* faulted pages waiting for the copier */
#define BGS_STACK_SIZE	 (1u << 20)

struct bgs_region {
	char *name;
	uint64_t base; /* address in the owner's process */
	uint64_t len;
	uint32_t page_size; /* 4096, or the hugetlbfs page size */
	enum bgsnap_kind kind;
	uint16_t prot;
	uint64_t first_page; /* its first page in the handle's page space */
	const char *why;     /* another process's mapping: static text */
};

/* Pages of @r in the handle's page space: none for a region recorded by
 * name only. */
static inline uint64_t bgs_region_pages(const struct bgs_region *r)
{
	return r->kind == BGSNAP_KIND_UNSAVED ? 0 : r->len / 4096;
}

/* The address of page @page (in the handle's page space) of @r. */
static inline uint64_t bgs_page_addr(const struct bgs_region *r, uint64_t page)
{
	return r->base + (page - r->first_page) * BGS_PAGE_SIZE;
}

/* Regions that are write-protected during a save. */
static inline bool bgs_region_protected(const struct bgs_region *r)
{
	return r->kind >= BGSNAP_KIND_ANON && r->kind <= BGSNAP_KIND_HUGETLB;
}

struct bgs_attachment {
	char *name;
	void *data;
	size_t len;
};

/* Log-linear histogram of nanosecond latencies: 8 sub-buckets per power
 * of two, so a percentile is exact to 12.5%. One owner thread. */
struct bgs_hist {
	uint64_t count;
	uint64_t max;
	uint64_t bucket[64 * 8];
};
void bgs_hist_add(struct bgs_hist *h, uint64_t ns);
uint64_t bgs_hist_percentile(const struct bgs_hist *h, double p);

/* A page a writer faulted on, from the fault thread to the copier. */
struct bgs_request {
	uint64_t page; /* in the handle's page space */
	uint64_t t_ns; /* when the fault thread read the fault */
};

/* Single-producer (fault thread) single-consumer (copier) ring. */
struct bgs_ring {
	struct bgs_request *slot;
	_Atomic uint32_t head; /* written by the producer only */
	_Atomic uint32_t tail; /* written by the consumer only */
};
bool bgs_ring_push(struct bgs_ring *r, const struct bgs_request *req);
bool bgs_ring_pop(struct bgs_ring *r, struct bgs_request *req);

/* The first error of an operation wins; its winner writes the message,
 * then publishes the code (release), so whoever sees the code sees it. */
struct bgs_first_error {
	_Atomic int code;
	_Atomic bool claimed;
	char msg[384];
};
int bgs_first_error_set(struct bgs_first_error *e, int code, const char *fmt,
			va_list ap) __attribute__((format(printf, 3, 0)));
static inline int bgs_first_error_get(struct bgs_first_error *e)
{
	return atomic_load_explicit(&e->code, memory_order_acquire);
}

/*
 * The monitor: the uffd over all regions and the fault thread that reads
 * it (snap_fault.c). It lives for one save, or, while tracking, from
 * bgsnap_track_start / a save with BGSNAP_SAVE_KEEP_TRACKING until tracking
 * stops (snap_monitor.c). Its fault thread is in one of two modes:
 *   TRACK  a write fault only records the page (written, unprotected) and
 *          unprotects it at once: nothing is saved;
 *   SAVE   a write fault on a page not yet saved becomes a request for the
 *          copier of the save being served.
 * Other threads talk to the fault thread by commands (bgs_monitor_command),
 * which it runs between two batches of messages.
 */
enum bgs_mon_mode {
	BGS_MON_TRACK = 0,
	BGS_MON_SAVE = 1,
	BGS_MON_DEAD = 2, /* it failed: it lets every writer go, saves
			   * nothing, runs no command but STOP */
};

enum bgs_mon_cmd {
	BGS_CMD_NONE = 0,
	BGS_CMD_REPROTECT,   /* protect every unprotected page again: TRACK */
	BGS_CMD_ROLLED_BACK, /* every written page is as at the instant:
			      * empty the undo log, then REPROTECT */
	BGS_CMD_SWITCH,	     /* the same until none is left, then SAVE */
	BGS_CMD_DETACH,	     /* back to TRACK: the save is over */
	BGS_CMD_STOP,	     /* the fault thread exits */
};

/* A fault waiting to be handled again (EAGAIN, a full ring, a command). */
struct bgs_deferred {
	uint64_t addr;
	uint64_t t_ns;
	pid_t tid;
};

#define BGS_DEFERRED_MAX 4096u

struct bgs_monitor {
	struct bgsnap *h;	    /* regions read-only while it lives */
	pid_t pid;		    /* whose memory */
	struct bgs_uffd uffd;	    /* fd read-only after start */
	struct bgs_pagemap pagemap; /* stateless ioctls: any thread */
	bool keep_tracking;	    /* owner thread, between saves */

	/* One mmap'd arena: bitmaps, deferred faults, the thread's stack. */
	void *arena;
	size_t arena_len;
	/* Bit per page. unprotected: the page is writable while tracked;
	 * set (before the unprotect) by whoever unprotects a tracked page:
	 * the fault thread, or the copier serving a fault while tracking
	 * goes on; cleared only by the fault thread, just before it protects
	 * the page again. written: changed since the last snapshot instant;
	 * set with unprotected; cleared by the fault thread at the instant. */
	_Atomic uint64_t *unprotected;
	_Atomic uint64_t *written;
	struct bgs_deferred *deferred; /* fault thread */
	size_t ndeferred;
	void *stack;

	pthread_t thread;
	bool started;
	int wake_fd;	       /* eventfd: a command is waiting */
	_Atomic int mode;      /* enum bgs_mon_mode: fault thread */
	struct bgs_save *save; /* SAVE mode: set/cleared by commands */

	/* Commands: lock guards cmd, cmd_save, cmd_seq, done_seq, result.
	 * A waiter also looks at mode under it: once it is DEAD (set under
	 * the lock), commands return the error at once. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum bgs_mon_cmd cmd;
	struct bgs_save *cmd_save;
	uint64_t cmd_seq, done_seq;
	int64_t result;

	/* The undo log (rollback): the content each page had at the last
	 * snapshot instant, kept when it is first written after it. A slot
	 * is taken (atomically) and filled by the thread that unprotects the
	 * page; undo_slot[page] (slot + 1, or 0) is published after the
	 * copy. The fault thread empties the log at the next instant, and
	 * after a rollback that put every written page back: the log then
	 * holds nothing a page still needs, and its whole budget is free for
	 * the pages written next. */
	uint8_t *undo_data; /* undo_slots pages, mmap'd */
	size_t undo_slots;
	_Atomic uint32_t *undo_slot; /* per page */
	uint64_t *undo_page;	     /* per slot: the page it holds */
	_Atomic size_t undo_used;
	_Atomic bool undo_live; /* set at an instant that keeps it */

	struct bgs_first_error error; /* why the fault thread stopped */
	uint8_t base_id[16];	      /* the last snapshot tracked from */
	char base_name[256];	      /* its file name, "" if unknown */
	bool have_base;		      /* owner thread */
	_Atomic uint64_t faults;      /* tracked faults */
	_Atomic uint64_t strays;      /* faults outside every region */
};

struct bgs_save {
	struct bgsnap *h;	      /* regions: read-only during a save */
	struct bgs_monitor *mon;      /* NULL for stop-the-world */
	struct bgsnap_save_opts opts; /* read-only */
	pid_t pid;		      /* whose memory: read-only */
	bool stop_the_world;	      /* read-only */
	bool verify;		      /* read-only */
	bool swap_present;	      /* read-only: see snap_copier.c */
	bool keep_tracking;	      /* read-only: pages stay protected */
	bool incremental;	      /* read-only: unchanged pages are the
					 * parent's */
	/* Another process: what its core file needs (snap_core.c); filled
	 * before the pause and, for its registers, while it is stopped. */
	struct bgs_target_core core;
	uint8_t id[16];		  /* this snapshot's id */
	uint8_t parent_id[16];	  /* incremental: the parent's */
	char name[256];		  /* the file's name (no directory) */
	char parent_name[256];	  /* incremental: the parent's, or "" */
	struct rs_reader *parent; /* a parent file compared page by page
					 * (not tracked since): the copier's */
	int parent_fd;
	uint32_t *parent_region; /* per region: the parent's number */

	struct bgs_pagemap pagemap;  /* stop-the-world only */
	struct rs_writer *writer;    /* the copier's (the starter opens it) */
	struct bgs_rados_sink *sink; /* where the writer's bytes go, for a
				      * rados:// target, or NULL */

	/* One mmap'd arena holds everything below that is not a scalar, so
	 * one range check proves bgsnap's threads never touch registered
	 * memory (their stacks are in it too). */
	void *arena;
	size_t arena_len;
	_Atomic uint64_t *saved; /* bit per page: set by the copier
					 * when saved; read by the fault
					 * thread */
	uint64_t *changed;	 /* incremental: bit per page written
					 * since the parent; set at the
					 * instant by the fault thread, then
					 * the copier's */
	uint8_t *huge;		 /* bit per page: start of a PMD-mapped
					 * THP block. Copier. */
	uint8_t *staging;	 /* copier: pages read from the owner */
	size_t staging_len;
	uint8_t *read_count; /* copier: reads per page (tests) */
	struct bgs_ring ring;
	struct bgs_hist stall;	    /* copier */
	struct bgs_hist stall_wait; /* copier: of a stall, until it looked */
	void *copier_stack;

	pthread_t copier_thread;
	bool copier_started;	  /* starter */
	_Atomic pid_t copier_tid; /* for self-fault detection */
	int mem_fd;    /* copier: /proc/PID/mem, opened on first need, or -1 */
	bool in_place; /* the owner is this process: its memory is read
			* where it lies, under the guard (snap_guard.c) */
	/* The copier sleeps only when it has no fault to serve and the
	 * disk is behind; a fault queued then wakes it (bgs_copier_kick). */
	int wake_fd;		      /* eventfd: any thread */
	_Atomic bool copier_sleeping; /* set by the copier; seq_cst */

	struct bgs_first_error error; /* any thread */
	_Atomic uint64_t beat_ns; /* bgs_save_beat: the one thread that beats */
	_Atomic bool all_copied;  /* stop-the-world: owner may resume */
	pthread_mutex_t lock;	  /* with cond: all_copied, finished */
	pthread_cond_t cond;
	bool finished; /* copier done: lock */

	/* Progress and statistics: written by the copier, read anywhere. */
	_Atomic uint64_t pages_done;
	_Atomic uint64_t t_start, t_end;
	uint64_t t_pause, t_resume; /* starter */
	uint64_t blackout_ns;	    /* starter: the longest stop */
	uint64_t arm_ns;	    /* starter: protecting before the pause */
	uint64_t reprotected;	    /* starter: pages protected in the pause */
	uint64_t pages_by_scan, pages_by_fault, pages_unpopulated; /* copier */
	uint64_t pages_parent;					   /* copier */
	uint64_t faults;					   /* copier */
	uint64_t cursor; /* copier: where the scan resumes */
	/* Copier: pages the scan stored, in one run of one region, still
	 * protected and not yet marked saved: they are unprotected together
	 * (BGS_UNPROTECT_PAGES at most), then marked. */
	uint64_t unprotect_first, unprotect_n;
	uint64_t cpu_copy, cpu_unprotect; /* copier: its CPU ns in them, */
	uint32_t stage_seed;		  /* sampled (bgs_stage_start) */
	unsigned threads;		  /* compression workers asked for */
	bool pinned;			  /* opts.cpus given: */
	cpu_set_t cpus;			  /* ... where bgsnap's threads run */
	struct bgs_workers *workers;	  /* copier: while they run */
	uint64_t fault_cpu0;		  /* the fault thread's at the start */
	struct bgsnap_stats final;	  /* copier, at the end */
};

/*
 * Fault injection for tests, a handle's own (tests set them through
 * struct bgsnap; the library never does):
 * @read_count  when set, the copier counts reads of each page there
 *              (total_pages bytes) — the save-once check;
 * @copier_poke when set, the copier writes one byte there as it starts,
 *              as a bug writing registered memory would;
 * @fault_read_error  when set, the fault thread's next read fails with it
 *              (and the hook is cleared), as a broken uffd would.
 * @place_error  when set, a lazy restore's fill fails its next placing
 *              with it, as UFFDIO_COPY would without memory.
 * @fill_delay_us  when set, a lazy restore's fill sleeps this long between
 *              looking at the discard marks and placing pages, widening
 *              the window an owner's discard must not slip into.
 */
struct bgs_snap_test_hooks {
	uint8_t *read_count;
	volatile char *copier_poke;
	_Atomic int fault_read_error; /* a -errno the fault thread's next
				       * read of the uffd fails with */
	unsigned fill_delay_us;
	_Atomic int place_error; /* a -errno the fill's next placing fails
				  * with (then the hook is cleared) */
};

/* Sleep @us microseconds if a test hook asks for it (0: return at once). */
static inline void bgs_test_delay_us(unsigned us)
{
	if (us)
		usleep(us);
}

struct bgsnap {
	struct bgs_region *regions;  /* sorted by address */
	struct bgs_target *target;   /* another process, or NULL */
	struct bgs_target_maps maps; /* its mappings as last read */
	uint64_t maps_read_ns;	     /* when that read began */
	char **include, **exclude;   /* its mapping filters */
	size_t ninclude, nexclude;
	size_t nregions;
	uint64_t total_pages;
	struct bgs_attachment *attachments;
	size_t nattachments;
	struct bgs_save *save;	     /* the running or unwaited save */
	struct bgs_monitor *monitor; /* while tracking (or saving) */
	struct bgs_restore *restore; /* the running or unwaited lazy restore */
	struct bgsnap_stats stats;   /* of the last finished operation */
	bool result_pending;	     /* a synchronous operation ended ... */
	int result;		     /* ... with this, for bgsnap_wait() */
	_Atomic(struct bgs_save *) live; /* for progress/cancel: any thread */
	_Atomic(struct bgs_restore *) live_restore; /* for progress */
	pthread_mutex_t live_lock; /* guards the live ones against free */
	struct bgs_snap_test_hooks test_hooks;
	char errmsg[512];
};

static inline bool bgs_region_is_anon(const struct bgs_region *r)
{
	return r->kind == BGSNAP_KIND_ANON || r->kind == BGSNAP_KIND_ANON_THP;
}

/* snap_session.c */
/* Ready for an operation: none running, some region. Clears the last
 * error. -EBUSY or -ENOENT with the message set. */
int bgs_snap_begin(struct bgsnap *h);
/* Call @fn for every page of the protected regions inside [start, end);
 * a non-zero return stops the walk and is returned. */
typedef int (*bgs_page_fn)(void *arg, const struct bgs_region *r,
			   uint64_t page);
int bgs_snap_for_pages(const struct bgsnap *h, uint64_t start, uint64_t end,
		       bgs_page_fn fn, void *arg);
/* Re-read the target's mappings and rebuild the regions from them. */
/* Who holds a mapping another userfaultfd has registered, in words. */
const char *bgs_snap_uffd_holder(const struct bgsnap *h);
int bgs_snap_target_refresh(struct bgsnap *h);
/*
 * The same, unless they were read less than BGS_MAPS_FRESH_NS ago and
 * /proc/PID/maps shows the same ranges and permissions: smaps walks page
 * tables (50-90 ms for 4 GiB), and `save --pid` lists the regions just
 * before it saves them. What smaps adds to maps (VmFlags such as dd, the
 * THP line, the Rss of a guard) is then as old as that read, no older
 * than a read made at the save would be by the time the target stops.
 */
int bgs_snap_target_current(struct bgsnap *h);
#define BGS_MAPS_FRESH_NS (250ull * 1000 * 1000)
/* Check that @g is still mapped as it was when added (its kind may move
 * between ANON and ANON_THP); whether the kernel will write-protect it is
 * left to the registration that follows. */
int bgs_snap_check_region(struct bgsnap *h, struct bgs_region *g);
void bgs_snap_set_error(struct bgsnap *h, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
const struct bgs_region *bgs_snap_region_of_page(const struct bgsnap *h,
						 uint64_t page);
const struct bgs_region *bgs_snap_region_of_addr(const struct bgsnap *h,
						 uint64_t addr);

/* snap_file.c: record a failure on a file handle, for
 * bgsnap_file_last_error(); returns @code. */
int bgs_file_fail(struct bgsnap_file *f, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* snap_core.c: the attachment "bgsnap.core" of a save of another process,
 * from what was read of it (registers at the instant, mappings). */
int bgs_core_encode(const struct bgs_target_core *c,
		    const struct bgs_target_maps *m, pid_t pid, uint8_t **out,
		    size_t *len);

/* snap_util.c */
uint64_t bgs_now_ns(void);
/* Copy a public struct in from the caller (@dst has @dsize bytes; a NULL
 * @src gives the defaults): 0,
 * -EINVAL (size below a size_t), -E2BIG (a newer caller's field this
 * library lacks is set). */
int bgs_struct_in(void *dst, size_t dsize, const void *src);
/* Copy a public struct out (@src has @ssize bytes) into the caller's,
 * whose size field says how much it holds: 0, or -EINVAL. */
int bgs_struct_out(void *dst, const void *src, size_t ssize);

/* snap_rados.c: rados://POOL/NAME targets. */
struct bgs_rados_sink;
/* Can rados:// targets be used here? If not, @why says why. */
bool bgs_snap_rados_available(char *why, size_t len);
/* The snapshot @target fetched into an unnamed temporary file: its fd,
 * or an error with @msg set (one line, without the target). */
int bgs_snap_rados_fetch(const char *target, char *msg, size_t len);
/* An unnamed temporary file to write a snapshot into, or -errno. */
int bgs_snap_rados_tmpfile(void);
/* Store the snapshot file @fd (read from its start) as @target, replacing
 * what is there unless @exclusive (-EEXIST). On error @msg says why. */
int bgs_snap_rados_store(const char *target, int fd, bool exclusive, char *msg,
			 size_t len);
/* A reader of @target that reads in place (rs_rados.h's source), and
 * what it reads through, closed after the reader. */
struct rs_rados;
int bgs_snap_rados_in_open(const char *target, struct rs_rados **r,
			   struct rs_reader **reader, char *msg, size_t len);
void bgs_snap_rados_in_close(struct rs_rados *r);
/* The save's store goes to @target: @sink is what the writer writes to.
 * On error the handle's message is set. */
struct rs_wq_sink;
int bgs_rados_sink_open(struct bgs_save *s, const char *target,
			struct bgs_rados_sink **out, struct rs_wq_sink *sink);
/* If the cluster is why the writer failed, fail the save saying so and
 * return the error; else 0. */
int bgs_rados_sink_failed(struct bgs_rados_sink *k);
/* The writer is done (committed if @result is 0): publish, or remove what
 * was stored. Frees @k; returns the save's result. */
int bgs_rados_sink_close(struct bgs_rados_sink *k, int result);

/* snap_save.c */
/* Wait for the save under way (bgsnap_wait). */
int bgs_save_wait(struct bgsnap *h);
/* The writer failed with @ret: the save's error, with why in words. */
int bgs_save_write_failed(struct bgs_save *s, int ret);
/* Record @err as the save's error if it is the first; returns @err. */
int bgs_save_fail(struct bgs_save *s, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* A turn of a thread that only waits, at most bgs_save_beat_ms() at a
 * time: fails the save if bgsnap did not run for max_stall_ms. */
void bgs_save_beat(struct bgs_save *s);
/* The same failure, seen from another thread: the last beat too old. */
void bgs_save_check_beat(struct bgs_save *s);
/* The longest such a thread may wait at once (-1: no limit is set). */
int bgs_save_beat_ms(const struct bgs_save *s);
static inline int bgs_save_error(struct bgs_save *s)
{
	return bgs_first_error_get(&s->error);
}
static inline bool bgs_page_saved(const struct bgs_save *s, uint64_t page)
{
	return atomic_load_explicit(&s->saved[page / 64],
				    memory_order_relaxed) &
	       (1ULL << (page % 64));
}

/* snap_copier.c: save all of @r now, unprotected (the owner is stopped) */
int bgs_copier_save_now(struct bgs_save *s, const struct bgs_region *r);

/* snap_copier.c: stop the fault thread, drop protection, end the store */
void bgs_save_teardown(struct bgs_save *s);

/* snap_copier.c: a fault was queued; wake the copier if it sleeps. */
void bgs_copier_kick(struct bgs_save *s);

/*
 * snap_guard.c: read the owner's memory in place (its DESIGN block).
 * bgs_guard_run() calls @fn(@arg), which reads [@at, +@len), and returns
 * 0, or -EFAULT if a read there faulted (unmapped, PROT_NONE, truncated):
 * @fn was cut short where it was. -EAGAIN: too many threads guarded at
 * once, @fn was not called. Only between bgs_guard_hold() and
 * bgs_guard_release() (counted, process-wide: they install and remove a
 * SIGSEGV and SIGBUS handler that chains to the one before).
 */
int bgs_guard_hold(void);
void bgs_guard_release(void);
int bgs_guard_run(const void *at, size_t len, void (*fn)(void *arg), void *arg);

/*
 * snap_util.c: start a bgsnap thread with every signal blocked: an
 * owner's signal handler must never run on it (it could write protected
 * memory and deadlock). @stack: BGS_STACK_SIZE bytes, or NULL for a default
 * one. @cpus: the CPUs it may run on, or NULL (those of its creator).
 */
int bgs_thread_start(pthread_t *t, void *stack, const cpu_set_t *cpus,
		     void *(*fn)(void *), void *arg);
/* A CPU list ("0-3,8"), as taskset -c takes it, into @set; -EINVAL. */
int bgs_parse_cpus(const char *list, cpu_set_t *set);

/* snap_restore.c / snap_lazy.c */
void bgs_restore_progress(struct bgs_restore *r, struct bgsnap_progress *p);
int bgs_restore_wait(struct bgsnap *h);

/* snap_monitor.c */
/* Create a monitor for @h's protected regions in TRACK mode, nothing
 * protected yet: uffd opened (in another process: injected; it must be
 * frozen), regions registered, fault thread running. */
int bgs_monitor_start(struct bgsnap *h, const cpu_set_t *cpus,
		      struct bgs_monitor **out);
/* Write-protect every region (while the owner runs, or in the pause). */
int bgs_monitor_protect_all(struct bgs_monitor *m);
/* Run @cmd on the fault thread and wait for it; its result. */
int64_t bgs_monitor_command(struct bgs_monitor *m, enum bgs_mon_cmd cmd,
			    struct bgs_save *save);
/* Why the fault thread stopped, or NULL while it runs. */
const char *bgs_monitor_failure(struct bgs_monitor *m);
/* Stop the fault thread, close the uffd (every page unprotected, every
 * waiter woken), free. NULL is fine. */
void bgs_monitor_stop(struct bgs_monitor *m);
/* The fault thread's CPU time so far (read from its clock: it keeps no
 * count of its own). */
uint64_t bgs_monitor_cpu_ns(const struct bgs_monitor *m);
/* Give the monitor an undo log of @bytes (once; later calls keep it). */
int bgs_monitor_undo(struct bgs_monitor *m, size_t bytes);
/* Empty the undo log. The fault thread, at an instant or after a rollback,
 * while no page is being kept. */
void bgs_monitor_undo_empty(struct bgs_monitor *m);
/* Keep the content of pages [page, page + n) in the undo log, from @src
 * (NULL: read it from the owner) unless kept already or the log is full.
 * Call before the pages become writable. */
void bgs_monitor_keep(struct bgs_monitor *m, const struct bgs_region *r,
		      uint64_t page, uint64_t n, const uint8_t *src);
static inline void bgs_bit_set(_Atomic uint64_t *map, uint64_t bit)
{
	atomic_fetch_or_explicit(&map[bit / 64], 1ULL << (bit % 64),
				 memory_order_release);
}
static inline bool bgs_bit_get(_Atomic uint64_t *map, uint64_t bit)
{
	return atomic_load_explicit(&map[bit / 64], memory_order_acquire) &
	       (1ULL << (bit % 64));
}
/* The first set bit in [bit, end), or end; clear words skipped whole. */
static inline uint64_t bgs_bit_next(_Atomic uint64_t *map, uint64_t bit,
				    uint64_t end)
{
	while (bit < end) {
		const uint64_t word =
			atomic_load_explicit(&map[bit / 64],
					     memory_order_acquire) >>
			(bit % 64);

		if (word) {
			bit += (uint64_t)__builtin_ctzll(word);
			return bit < end ? bit : end;
		}
		bit = (bit / 64 + 1) * 64;
	}
	return end;
}

/* snap_fault.c / snap_copier.c: thread bodies */
void *bgs_fault_main(void *arg);
void *bgs_copier_main(void *arg);

/* Where a save's threads may run (bgsnap_save_opts.cpus), or NULL. */
static inline const cpu_set_t *bgs_save_cpus(const struct bgs_save *s)
{
	return s->pinned ? &s->cpus : NULL;
}

/* A run of pages read out of the owner into a buffer of bgsnap's own. */
struct bgs_buffered_run {
	const struct bgs_region *r;
	uint64_t first, n;
	uint64_t at; /* its first page's place in the buffer, in pages */
};

/* snap_workers.c: compression behind the copier (its DESIGN block). The
 * copier's calls; start and stop from the copier thread. */
struct bgs_workers;
int bgs_workers_start(struct bgs_save *s, unsigned nthreads,
		      struct bgs_workers **w);
/* Join the workers (every job collected first) and free; their CPU time.
 * NULL is fine. */
uint64_t bgs_workers_stop(struct bgs_workers *w);
/* Pages handed over but not collected yet. */
uint64_t bgs_workers_inflight(const struct bgs_workers *w);
/* A free job for the copier to fill, or NULL when none is free. */
struct bgs_job *bgs_workers_take(struct bgs_workers *w);
/* Where the next run of @n pages goes in @j, or NULL when it is full. */
uint8_t *bgs_job_room(const struct bgs_workers *w, const struct bgs_job *j,
		      uint64_t n);
/* The run [first, +n) of @r is now at bgs_job_room()'s place in @j. */
void bgs_job_add(struct bgs_job *j, const struct bgs_region *r, uint64_t first,
		 uint64_t n);
/* Hand @j to the workers (an empty one is simply free again). */
void bgs_workers_submit(struct bgs_workers *w, struct bgs_job *j);
/* Append every finished job to the writer (@append false: drop them, the
 * save failed); @all: wait for every job handed over. The first error. */
int bgs_workers_collect(struct bgs_workers *w, bool all, bool append);
/* Is a job done, waiting to be collected? */
bool bgs_workers_done(struct bgs_workers *w);
/* snap_fault.c: the unit of protection around @page (a hugetlbfs page,
 * else the page) */
void bgs_unit(const struct bgs_region *r, uint64_t page, uint64_t *first,
	      uint64_t *n);

#endif /* BGS_SNAP_INTERNAL_H */
