/* SPDX-License-Identifier: MIT */
/*
 * Starting, waiting for and ending a save; the pause -> arm -> resume
 * sequence. The threads it starts are described in snap_fault.c and
 * snap_copier.c.
 *
 * Order of a save start, and why:
 *   1. allocate everything the save's threads will ever write (mmap'd
 *      arenas, stacks included) and open the store, then check that no
 *      region overlaps any of it and that every region is still mapped as
 *      registered: bgsnap's threads must never write protected memory;
 *   2. start the monitor (snap_monitor.c): uffd, regions registered, the
 *      fault thread reading events — unless tracking runs already;
 *   3. two-phase arming (the default): protect everything while the owner
 *      runs, the fault thread merely tracking the pages written meanwhile;
 *      re-protect those, a few passes while the owner runs, to shrink
 *      them;
 *   4. pause the owner; the fault thread protects what is still written
 *      and switches to saving (the snapshot instant); resume. The
 *      blackout is step 4 alone, and it grows with what was written
 *      since step 3, not with memory size. (BGSNAP_SAVE_ONE_PHASE arms
 *      everything inside the pause instead.)
 *   5. start the copier. From here on the copier ends the save.
 * Any failure before 5 undoes what was done, in reverse.
 */
#include "snap_internal.h"
#include "rs_wqueue.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

_Static_assert((int)RS_EBADMAGIC == (int)BGSNAP_EBADMAGIC &&
		       (int)RS_ECORRUPT == (int)BGSNAP_ECORRUPT,
	       "ramstore and public error codes are the same numbers");
_Static_assert((int)RS_KIND_ANON == (int)BGSNAP_KIND_ANON &&
		       (int)RS_KIND_HUGETLB == (int)BGSNAP_KIND_HUGETLB,
	       "ramstore and public memory kinds are the same numbers");

int bgs_save_fail(struct bgs_save *s, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	bgs_first_error_set(&s->error, err, fmt, ap);
	va_end(ap);
	return err;
}

/*
 * --max-stall bounds as well how long bgsnap itself may not run (its
 * process stopped by SIGSTOP or a debugger) while the owner's writers that
 * fault wait for it. Only a thread that does nothing but wait, a slice at
 * a time, can tell: it beats on every turn, and a beat older than the
 * limit is time it was not let run. The copier cannot tell by itself: its
 * waits for the output are long by right, and a stop can fall inside one.
 * The fault thread beats while the owner runs; in a stop-the-world save,
 * the thread that started it, while it waits for the copier. Whichever
 * runs first after the stop sees it: the beater on its next turn, the
 * copier before it goes on (and before it calls the save done).
 */
int bgs_save_beat_ms(const struct bgs_save *s)
{
	const unsigned slice = s->opts.max_stall_ms / 4;

	if (!s->opts.max_stall_ms)
		return -1;
	return slice < 1 ? 1 : slice > 250 ? 250 : (int)slice;
}

static void check_beat(struct bgs_save *s, uint64_t now)
{
	const uint64_t limit = (uint64_t)s->opts.max_stall_ms * 1000000;
	const uint64_t last = atomic_load(&s->beat_ns);

	if (!last || now < last || now - last < limit)
		return;
	bgs_save_fail(s, -ETIMEDOUT,
		      "bgsnap did not run for %llu ms, more than the %u ms "
		      "allowed (was it stopped?)",
		      (unsigned long long)((now - last) / 1000000),
		      s->opts.max_stall_ms);
	bgs_copier_kick(s);
}

/* Without a limit there is nothing to beat for: not even the clock is
 * read (the fault thread and the copier call these on every turn). */
void bgs_save_beat(struct bgs_save *s)
{
	uint64_t now;

	if (!s->opts.max_stall_ms)
		return;
	now = bgs_now_ns();
	check_beat(s, now);
	atomic_store(&s->beat_ns, now);
}

void bgs_save_check_beat(struct bgs_save *s)
{
	if (s->opts.max_stall_ms)
		check_beat(s, bgs_now_ns());
}

/* ---- the arena ----------------------------------------------------------- */

static size_t align_up(size_t v, size_t a)
{
	return (v + a - 1) & ~(a - 1);
}

static size_t staging_size(const struct bgsnap *h)
{
	size_t len = BGS_RUN_PAGES * BGS_PAGE_SIZE;

	for (size_t i = 0; i < h->nregions; i++) {
		const struct bgs_region *r = &h->regions[i];
		const size_t unit = r->kind == BGSNAP_KIND_ANON_THP
					    ? BGS_THP_SIZE
					    : r->page_size;
		if (unit > len)
			len = unit;
	}
	return len;
}

static struct bgs_save *save_new(struct bgsnap *h)
{
	const uint64_t pages = h->total_pages;
	const size_t pg = BGS_PAGE_SIZE;
	const size_t bits = align_up((pages + 63) / 64 * 8, 64);
	const size_t saved_at = align_up(sizeof(struct bgs_save), 64);
	const size_t changed_at = saved_at + bits;
	const size_t huge_at = changed_at + bits;
	const size_t count_at = huge_at + align_up((pages + 7) / 8, 64);
	const size_t ring_at =
		count_at + align_up(h->test_hooks.read_count ? pages : 0, 64);
	const size_t staging_at = align_up(
		ring_at + BGS_RING_SLOTS * sizeof(struct bgs_request), pg);
	const size_t stacks_at = staging_at + staging_size(h);
	const size_t len = stacks_at + BGS_STACK_SIZE;
	uint8_t *a = mmap(NULL, len, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct bgs_save *s;
	pthread_condattr_t attr;

	if (a == MAP_FAILED)
		return NULL;
	s = (struct bgs_save *)a;
	s->h = h;
	s->arena = a;
	s->arena_len = len;
	s->saved = (_Atomic uint64_t *)(a + saved_at);
	s->changed = (uint64_t *)(a + changed_at);
	s->huge = a + huge_at;
	s->read_count = h->test_hooks.read_count ? a + count_at : NULL;
	s->ring.slot = (struct bgs_request *)(a + ring_at);
	s->staging = a + staging_at;
	s->staging_len = staging_size(h);
	s->copier_stack = a + stacks_at;
	s->pagemap.fd = -1;
	s->parent_fd = -1;
	s->mem_fd = -1;
	s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->wake_fd < 0) {
		munmap(a, len);
		return NULL;
	}
	pthread_mutex_init(&s->lock, NULL);
	/* Timed waits (wait_beat) on the clock the beat is measured by. */
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cond, &attr);
	pthread_condattr_destroy(&attr);
	return s;
}

static void close_parent(struct bgs_save *s)
{
	if (s->parent)
		bgs_rs_close(s->parent);
	if (s->parent_fd >= 0)
		close(s->parent_fd);
	free(s->parent_region);
	s->parent = NULL;
	s->parent_fd = -1;
	s->parent_region = NULL;
}

static void save_free(struct bgs_save *s)
{
	bgs_target_core_free(&s->core);
	close_parent(s);
	bgs_uffd_pagemap_close(&s->pagemap);
	if (s->mem_fd >= 0)
		close(s->mem_fd);
	if (s->in_place)
		bgs_guard_release();
	close(s->wake_fd);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
	munmap(s->arena, s->arena_len);
}

/* ---- checks before anything is armed ------------------------------------- */

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

static int check_own_memory(struct bgs_save *s)
{
	struct bgsnap *h = s->h;

	for (size_t i = 0; i < h->nregions; i++) {
		const struct bgs_region *r = &h->regions[i];

		if (overlaps(r->base, r->len, (uint64_t)(uintptr_t)s->arena,
			     s->arena_len)) {
			bgs_snap_set_error(h,
					   "region '%s' overlaps bgsnap's own "
					   "memory (was it unmapped after it "
					   "was added?)",
					   r->name);
			return BGSNAP_EUNSAFE;
		}
	}
	return 0;
}

/* ---- threads ------------------------------------------------------------- */

/* ---- the writer --------------------------------------------------------- */

static int open_writer(struct bgs_save *s, const char *path, int fd)
{
	const struct bgsnap *h = s->h;
	const struct bgsnap_save_opts *o = &s->opts;
	struct rs_region *table = calloc(h->nregions, sizeof(*table));
	struct rs_writer_opts wo = {
		.compression = o->compression == BGSNAP_COMPRESS_NONE
				       ? RS_COMP_NONE
				       : RS_COMP_LZ4,
		.parent_id = { 0 },
		.lz4_acceleration = o->lz4_acceleration,
		.buffer_budget = o->buffer_budget,
		/* A page a writer waits on never waits for the disk: at
		 * worst every page is faulted while the disk is behind,
		 * the most a fork() would copy too. */
		.overflow_pages = h->total_pages,
		.max_stall_ns = (uint64_t)o->max_stall_ms * 1000000,
		.regions = table,
		.nregions = h->nregions,
		.cpus = bgs_save_cpus(s),
		.no_replace = s->opts.flags & BGSNAP_SAVE_NO_REPLACE,
	};
	int r;

	if (!table)
		return -ENOMEM;
	memcpy(wo.snapshot_id, s->id, sizeof(wo.snapshot_id));
	if (s->incremental)
		memcpy(wo.parent_id, s->parent_id, sizeof(wo.parent_id));
	for (size_t i = 0; i < h->nregions; i++) {
		const struct bgs_region *g = &h->regions[i];

		snprintf(table[i].name, sizeof(table[i].name), "%s", g->name);
		table[i].base = g->base;
		table[i].length = g->len;
		table[i].page_size = g->page_size;
		table[i].kind = (uint16_t)g->kind;
		table[i].prot = g->prot;
	}
	if (bgs_rs_is_rados(path)) {
		struct rs_wq_sink sink;

		r = bgs_rados_sink_open(s, path, &s->sink, &sink);
		if (r) {
			free(table);
			return r;
		}
		r = bgs_rs_writer_open_sink(&s->writer, &sink, &wo);
		path = NULL;
	} else {
		r = path ? bgs_rs_writer_open_path(&s->writer, path, &wo)
			 : bgs_rs_writer_open_fd(&s->writer, fd, &wo);
	}
	free(table);
	if (r < 0 && s->sink) {
		bgs_rados_sink_close(s->sink, r);
		s->sink = NULL;
	}
	if (r < 0) {
		s->writer = NULL;
		bgs_snap_set_error(s->h, "cannot create the snapshot%s%s: %s",
				   path ? " " : "", path ? path : "",
				   bgsnap_strerror(r));
	}
	return r;
}

/* ---- arming -------------------------------------------------------------- */

static bool swap_configured(void)
{
	FILE *f = fopen("/proc/swaps", "re");
	char line[256];
	int lines = 0;

	if (!f)
		return true; /* cannot tell: assume the worst */
	while (fgets(line, sizeof(line), f))
		lines++;
	fclose(f);
	return lines > 1; /* a header, then one line per swap area */
}

static int target_error(struct bgsnap *h, int r)
{
	if (r < 0)
		bgs_snap_set_error(h, "%s", h->target->msg);
	return r;
}

/* Another process is stopped with ptrace, and its mappings proved
 * unchanged since they were read; this one pauses by its callback. */
static int pause_owner(struct bgs_save *s)
{
	struct bgs_target *t = s->h->target;
	int r = 0;

	s->t_pause = bgs_now_ns();
	if (t && !bgs_target_frozen(t)) {
		r = target_error(s->h, bgs_target_freeze(t));
		if (!r && bgs_target_maps_changed(t, &s->h->maps)) {
			bgs_target_thaw(t);
			bgs_snap_set_error(s->h,
					   "the mappings of process %d "
					   "changed while bgsnap stopped it; "
					   "try again",
					   t->pid);
			r = -EAGAIN;
		}
		return r;
	}
	if (!t && s->opts.pause)
		r = s->opts.pause(s->opts.arg);
	if (r < 0)
		bgs_snap_set_error(s->h, "the pause callback failed: %s",
				   bgsnap_strerror(r));
	return r < 0 ? r : 0;
}

static void resume_owner(struct bgs_save *s)
{
	if (s->h->target)
		bgs_target_thaw(s->h->target);
	else if (s->opts.resume)
		s->opts.resume(s->opts.arg);
	s->t_resume = bgs_now_ns();
	if (s->t_resume - s->t_pause > s->blackout_ns)
		s->blackout_ns = s->t_resume - s->t_pause;
}

/* Private file mappings of another process cannot be protected: they are
 * copied whole while it is stopped. */
static int copy_stopped_regions(struct bgs_save *s)
{
	for (size_t i = 0; i < s->h->nregions; i++) {
		const struct bgs_region *g = &s->h->regions[i];
		int r;

		if (g->kind != BGSNAP_KIND_FILE_PRIVATE)
			continue;
		r = bgs_copier_save_now(s, g);
		if (r) {
			bgs_snap_set_error(s->h, "%s", s->error.msg);
			return r;
		}
	}
	return 0;
}

/*
 * Start a monitor (step 2). Another process must be stopped for its uffd
 * to be made inside it; with two-phase arming it runs again at once.
 */
static int start_monitor(struct bgs_save *s, bool two_phase)
{
	struct bgsnap *h = s->h;
	int r = h->target
			? target_error(h, bgs_target_inject_prepare(h->target))
			: 0;

	if (!r && h->target)
		r = pause_owner(s);
	if (!r && h->target && two_phase)
		r = target_error(h, bgs_target_core_early(h->target, &s->core));
	if (!r)
		r = bgs_monitor_start(h, bgs_save_cpus(s), &h->monitor);
	if (h->target && (r || two_phase))
		resume_owner(s);
	return r;
}

/* Steps 3: everything protected while the owner runs, then passes over
 * what it wrote meanwhile, while there is much. */
#define CONVERGE_PASSES 4
#define CONVERGED_PAGES 256

/* A command that protects pages again failed with @n: say why. */
static int reprotect_failed(struct bgs_save *s, int64_t n)
{
	const char *why = bgs_monitor_failure(s->mon);

	if (why) {
		bgs_snap_set_error(s->h, "%s", why);
	} else if (n == -ENOENT) {
		/* Part of a range is no longer the registered mapping. */
		bgs_snap_set_error(
			s->h, "protecting the written pages again: a "
			      "region's mapping changed or vanished during "
			      "the save (unmapped or moved by munmap, "
			      "mremap or mmap)");
		return BGSNAP_EHAZARD;
	} else {
		bgs_snap_set_error(s->h,
				   "protecting the written pages again: %s",
				   strerror((int)-n));
	}
	return (int)n;
}

static int arm_while_running(struct bgs_save *s, bool fresh)
{
	const uint64_t t0 = bgs_now_ns();
	int64_t n = fresh ? bgs_monitor_protect_all(s->mon) : 0;

	if (n < 0)
		return (int)n; /* it said why */
	for (int pass = 0; pass < CONVERGE_PASSES && n >= 0; pass++) {
		n = bgs_monitor_command(s->mon, BGS_CMD_REPROTECT, NULL);
		if (n >= 0 && n <= CONVERGED_PAGES)
			break;
	}
	s->arm_ns = bgs_now_ns() - t0;
	return n < 0 ? reprotect_failed(s, n) : 0;
}

static int start_protected(struct bgs_save *s)
{
	struct bgsnap *h = s->h;
	const bool fresh = !h->monitor;
	const bool two_phase =
		!fresh || !(s->opts.flags & BGSNAP_SAVE_ONE_PHASE);
	int64_t n;
	int r = fresh ? start_monitor(s, two_phase) : 0;

	s->mon = h->monitor;
	if (s->mon)
		s->fault_cpu0 = bgs_monitor_cpu_ns(s->mon);
	if (!r && s->keep_tracking && s->opts.undo_budget)
		r = bgs_monitor_undo(s->mon, s->opts.undo_budget);
	if (!r && two_phase)
		r = arm_while_running(s, fresh);
	if (!r && (!h->target || !bgs_target_frozen(h->target)))
		r = pause_owner(s);
	if (r)
		return r;
	if (!two_phase)
		r = bgs_monitor_protect_all(s->mon);
	n = r ? r : bgs_monitor_command(s->mon, BGS_CMD_SWITCH, s);
	if (!r && n < 0)
		r = reprotect_failed(s, n);
	s->reprotected = n > 0 ? (uint64_t)n : 0;
	if (!r && h->target)
		r = copy_stopped_regions(s);
	if (!r && h->target)
		r = target_error(h,
				 bgs_target_core_threads(h->target, &s->core));
	resume_owner(s);
	if (!r)
		r = bgs_thread_start(&s->copier_thread, s->copier_stack,
				     bgs_save_cpus(s), bgs_copier_main, s);
	s->copier_started = !r;
	return r;
}

/* Stop the world: the owner stays paused until every page is out of its
 * memory; only then is it resumed. No userfaultfd is involved. */
/* Wait on s->cond (s->lock held) for a beat at most. */
static void wait_beat(struct bgs_save *s)
{
	const int ms = bgs_save_beat_ms(s);
	struct timespec at;

	if (ms < 0) {
		pthread_cond_wait(&s->cond, &s->lock);
		return;
	}
	clock_gettime(CLOCK_MONOTONIC, &at);
	at.tv_nsec += (long)ms * 1000000;
	at.tv_sec += at.tv_nsec / 1000000000;
	at.tv_nsec %= 1000000000;
	pthread_cond_timedwait(&s->cond, &s->lock, &at);
}

static int start_stopped(struct bgs_save *s)
{
	int r = bgs_uffd_pagemap_open(&s->pagemap,
				      s->pid == getpid() ? 0 : s->pid);

	if (!r)
		r = pause_owner(s);
	if (r)
		return r;
	if (s->h->target)
		r = target_error(
			s->h, bgs_target_core_threads(s->h->target, &s->core));
	if (r) {
		resume_owner(s);
		return r;
	}
	r = bgs_thread_start(&s->copier_thread, s->copier_stack,
			     bgs_save_cpus(s), bgs_copier_main, s);
	s->copier_started = !r;
	if (!r) {
		pthread_mutex_lock(&s->lock);
		while (!atomic_load(&s->all_copied) && !s->finished) {
			bgs_save_beat(s);
			wait_beat(s);
		}
		pthread_mutex_unlock(&s->lock);
	}
	resume_owner(s);
	return r;
}

static int revalidate_regions(struct bgsnap *h)
{
	/* Region facts are re-read: a region unmapped or replaced since
	 * bgsnap_add_region must not be registered blindly. */
	for (size_t i = 0; i < h->nregions; i++) {
		int r = bgs_snap_check_region(h, &h->regions[i]);

		if (r < 0)
			return r;
	}
	return 0;
}

/*
 * Make the regions current. While tracking, they must be the very ones
 * tracked: another process whose mappings changed ends the tracking (and
 * an incremental save then has no parent).
 */
static int current_regions(struct bgsnap *h, unsigned flags)
{
	/* Tracked regions are watched by the monitor itself (events). */
	if (!h->target)
		return h->monitor ? 0 : revalidate_regions(h);
	if (h->monitor && bgs_target_maps_changed(h->target, &h->maps) != 0) {
		bgs_monitor_stop(h->monitor);
		h->monitor = NULL;
	}
	if (!h->monitor)
		return bgs_snap_target_current(h);
	(void)flags;
	return 0;
}

/* A parent file to compare with: open it, number its regions by ours. */
static int open_parent(struct bgs_save *s, const char *path)
{
	struct bgsnap *h = s->h;
	struct rs_diag diag = { 0 };
	const char *slash = strrchr(path, '/');
	struct stat st;
	int r;

	if (bgs_rs_is_rados(path)) {
		char msg[256];

		/* Fetched whole: it is compared page by page. */
		r = bgs_snap_rados_fetch(path, msg, sizeof(msg));
		if (r < 0) {
			bgs_snap_set_error(h, "parent %s: %s", path, msg);
			return r;
		}
		s->parent_fd = r;
	} else {
		/* A FIFO put there must not block the open. */
		s->parent_fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
		if (s->parent_fd < 0) {
			bgs_snap_set_error(h, "parent %s: %s", path,
					   strerror(errno));
			return -errno;
		}
		if (fstat(s->parent_fd, &st) || !S_ISREG(st.st_mode) ||
		    fcntl(s->parent_fd, F_SETFL, 0)) {
			bgs_snap_set_error(h, "parent %s: not a regular file",
					   path);
			return -ESPIPE;
		}
	}
	r = bgs_rs_open(&s->parent, s->parent_fd, &diag);
	if (r) {
		bgs_snap_set_error(h, "parent %s: %s", path, diag.msg);
		return r;
	}
	s->parent_region = malloc(h->nregions * sizeof(*s->parent_region));
	if (!s->parent_region)
		return -ENOMEM;
	for (size_t i = 0; i < h->nregions; i++) {
		s->parent_region[i] = UINT32_MAX;
		for (size_t j = 0; j < bgs_rs_region_count(s->parent); j++)
			if (!strcmp(h->regions[i].name,
				    bgs_rs_region(s->parent, j)->name))
				s->parent_region[i] = (uint32_t)j;
	}
	memcpy(s->parent_id, bgs_rs_info(s->parent)->snapshot_id, 16);
	snprintf(s->parent_name, sizeof(s->parent_name), "%s",
		 slash ? slash + 1 : path);
	return 0;
}

/* This snapshot's id, and its parent's when incremental. */
static int snapshot_ids(struct bgs_save *s)
{
	struct bgs_monitor *m = s->h->monitor;
	int r;

	if (getrandom(s->id, sizeof(s->id), 0) != sizeof(s->id))
		return -errno;
	if (!s->incremental)
		return 0;
	if (s->opts.parent) {
		r = open_parent(s, s->opts.parent);
		/* Tracked since that very snapshot: no need to compare. */
		if (!r && m && m->have_base && !s->stop_the_world &&
		    !memcmp(m->base_id, s->parent_id, 16))
			close_parent(s);
		else
			return r;
	}
	if (!m || !m->have_base || s->stop_the_world) {
		bgs_snap_set_error(s->h, "an incremental save needs tracking "
					 "since a snapshot (save it with "
					 "BGSNAP_SAVE_KEEP_TRACKING)");
		return BGSNAP_EPARENT;
	}
	memcpy(s->parent_id, m->base_id, sizeof(s->parent_id));
	memcpy(s->parent_name, m->base_name, sizeof(s->parent_name));
	return 0;
}

/* A save of another process fails in whichever step first notices that it
 * exited (a read, PAGEMAP_SCAN, the injection, a freeze): one cause, said
 * one way. The exit may still be under way when that step fails. */
#define EXIT_GRACE_MS 500

static int blame_exit(struct bgsnap *h, int r)
{
	if (!r || r == -ECANCELED || r == -EAGAIN || !h->target ||
	    !bgs_target_exited(h->target, EXIT_GRACE_MS))
		return r;
	bgs_snap_set_error(h, "process %d exited", h->target->pid);
	return BGSNAP_ETARGET;
}

static int save_start(struct bgsnap *h, const char *path, int fd,
		      const struct bgsnap_save_opts *opts)
{
	struct bgsnap_save_opts o;
	const uint64_t t_start = bgs_now_ns();
	struct bgs_save *s;
	cpu_set_t cpus;
	int r;

	r = bgs_struct_in(&o, sizeof(o), opts);
	if (r)
		return r;
	r = bgs_snap_begin(h);
	if (r)
		return r;
	if (o.threads > BGSNAP_MAX_THREADS) {
		bgs_snap_set_error(h, "%u compression threads: at most %d",
				   o.threads, BGSNAP_MAX_THREADS);
		return -EINVAL;
	}
	if (o.cpus && bgs_parse_cpus(o.cpus, &cpus)) {
		bgs_snap_set_error(h, "'%s' is not a CPU list (like 0-3,8)",
				   o.cpus);
		return -EINVAL;
	}
	/* The regions as they are now: everything below is sized on them. */
	r = current_regions(h, o.flags);
	if (r)
		return r;
	s = save_new(h);
	if (!s)
		return -ENOMEM;
	s->opts = o;
	s->pid = h->target ? h->target->pid : getpid();
	s->in_place = !h->target && bgs_guard_hold() == 0;
	s->stop_the_world = s->opts.flags & BGSNAP_SAVE_STOP_THE_WORLD;
	s->verify = !(s->opts.flags & BGSNAP_SAVE_NO_VERIFY);
	s->threads = s->opts.threads;
	s->pinned = s->opts.cpus != NULL;
	s->cpus = cpus;
	s->swap_present = swap_configured();
	s->keep_tracking = (s->opts.flags & BGSNAP_SAVE_KEEP_TRACKING) &&
			   !s->stop_the_world;
	s->incremental = s->opts.flags & BGSNAP_SAVE_INCREMENTAL;
	atomic_store(&s->t_start, t_start);

	if (path) {
		const char *slash = strrchr(path, '/');

		snprintf(s->name, sizeof(s->name), "%s",
			 slash ? slash + 1 : path);
	}
	r = snapshot_ids(s);
	/* What does not change with the threads is read while it runs. */
	if (!r && h->target)
		r = target_error(h, bgs_target_core_prepare(h->target, &h->maps,
							    &s->core));
	if (!r)
		r = open_writer(s, path, fd);
	if (!r && !h->target)
		r = check_own_memory(s);
	if (!r)
		r = s->stop_the_world ? start_stopped(s) : start_protected(s);
	r = blame_exit(h, r);
	if (r) {
		bgs_save_fail(s, r, "%s", h->errmsg);
		if (s->copier_started)
			pthread_join(s->copier_thread, NULL);
		else
			bgs_save_teardown(s);
		save_free(s);
		return r;
	}
	h->save = s;
	pthread_mutex_lock(&h->live_lock);
	atomic_store(&h->live, s);
	pthread_mutex_unlock(&h->live_lock);
	return 0;
}

BGSNAP_API int bgsnap_save_start(struct bgsnap *h, const char *path,
				 const struct bgsnap_save_opts *opts)
{
	if (!path || !*path)
		return -EINVAL;
	return save_start(h, path, -1, opts);
}

BGSNAP_API int bgsnap_save_start_fd(struct bgsnap *h, int fd,
				    const struct bgsnap_save_opts *opts)
{
	if (fd < 0)
		return -EBADF;
	return save_start(h, NULL, fd, opts);
}

/* ---- the end ------------------------------------------------------------- */

static void final_stats(const struct bgs_save *s, struct bgsnap_stats *st)
{
	*st = (struct bgsnap_stats){
		.blackout_ns = s->blackout_ns,
		.arm_ns = s->arm_ns,
		.reprotected_pages = s->reprotected,
		.pages_parent = s->pages_parent,
		.elapsed_ns = atomic_load(&s->t_end) - atomic_load(&s->t_start),
		.pages_total = s->h->total_pages,
		.pages_by_scan = s->pages_by_scan,
		.pages_by_fault = s->pages_by_fault,
		.pages_unpopulated = s->pages_unpopulated,
		.faults = s->faults,
		.stall_ns_p50 = bgs_hist_percentile(&s->stall, 50),
		.stall_ns_p99 = bgs_hist_percentile(&s->stall, 99),
		.stall_ns_max = s->stall.max,
	};
	st->pages_zero = s->final.pages_zero;
	st->bytes_written = s->final.bytes_written;
	st->raw_bytes = s->final.raw_bytes;
	st->peak_buffer_bytes = s->final.peak_buffer_bytes;
	st->compression_ratio = s->final.compression_ratio;
	st->cpu_copy_ns = s->cpu_copy;
	st->cpu_compress_ns = s->final.cpu_compress_ns;
	st->cpu_checksum_ns = s->final.cpu_checksum_ns;
	st->cpu_unprotect_ns = s->cpu_unprotect;
	st->cpu_copier_ns = s->final.cpu_copier_ns;
	st->cpu_fault_ns = s->final.cpu_fault_ns;
	st->cpu_workers_ns = s->final.cpu_workers_ns;
	st->stall_wait_ns_p50 = bgs_hist_percentile(&s->stall_wait, 50);
	st->stall_wait_ns_p99 = bgs_hist_percentile(&s->stall_wait, 99);
}

int bgs_save_wait(struct bgsnap *h)
{
	struct bgs_save *s = h->save;
	int r;

	pthread_join(s->copier_thread, NULL);
	pthread_mutex_lock(&h->live_lock);
	atomic_store(&h->live, NULL);
	pthread_mutex_unlock(&h->live_lock);
	r = bgs_save_error(s);
	final_stats(s, &h->stats);
	if (r)
		bgs_snap_set_error(h, "%s", s->error.msg);
	r = blame_exit(h, r);
	if (h->test_hooks.read_count && s->read_count)
		memcpy(h->test_hooks.read_count, s->read_count, h->total_pages);
	save_free(s);
	h->save = NULL;
	bgsnap_attach_clear(h);
	return r;
}

BGSNAP_API int bgsnap_save(struct bgsnap *h, const char *path,
			   const struct bgsnap_save_opts *opts)
{
	const int r = bgsnap_save_start(h, path, opts);

	return r < 0 ? r : bgsnap_wait(h);
}

BGSNAP_API void bgsnap_cancel(struct bgsnap *h)
{
	struct bgs_save *s;

	pthread_mutex_lock(&h->live_lock);
	s = atomic_load(&h->live);
	if (s)
		bgs_save_fail(s, -ECANCELED, "cancelled");
	pthread_mutex_unlock(&h->live_lock);
}
