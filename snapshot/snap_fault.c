/* SPDX-License-Identifier: MIT */
/*
 * The fault thread.
 *
 * DESIGN
 * Threads: the fault thread (this file) reads the uffd of a monitor; the
 * copier (snap_copier.c) saves pages; the owner's thread starts saves and
 * sends commands (snap_monitor.c, snap_save.c).
 *
 * It reads messages in batches of BGS_FAULT_BATCH, events first, and never
 * waits on another thread: while an event is queued and unread, every
 * UFFDIO_WRITEPROTECT fails with EAGAIN, so the one thread that reads
 * events must always be free to read. Its own ioctls use BGS_UFFD_NORETRY;
 * a fault it cannot finish (EAGAIN, a full ring, a command running) is
 * deferred, never dropped: a fault message is read once, and its writer
 * sleeps until someone acts on it.
 *
 * TRACK mode: a write fault sets the page's `written` and `unprotected`
 * bits, then unprotects it. SAVE mode: a fault on a page not yet saved is
 * a request for the copier; on a page saved it is tracked as above when
 * tracking goes on after the save, else just woken (it was unprotected
 * when saved).
 *
 * Events: REMOVE/UNMAP/REMAP of pages not yet saved fail a save
 * (BGSNAP_EHAZARD): the kernel completes an event when it is read, so the
 * old content cannot be rescued (kernel-uffd.md §3.2). While tracking, the
 * range is marked written and unprotected: an anonymous MADV_DONTNEED
 * drops the protection with the content.
 *
 * Why no write slips between the two phases of arming (BGS_CMD_SWITCH):
 * a page can be written without a fault only while its protection is off,
 * and protection is turned off in exactly two places, both of which set
 * the page's `unprotected` bit *before* the unprotect: here (tracking a
 * fault) and in the copier (a faulted page, when tracking goes on). The
 * bit is cleared in one place only, here, immediately *before* the page is
 * protected again. So at every instant, a page without its bit is
 * protected, or is about to be by this thread. The switch runs on this
 * thread, between two batches: every fault read before it has been acted
 * on (unprotected with its bit set, or deferred with the page still
 * protected); it then protects again every page whose bit is set, until
 * none is left — a page cannot gain a bit meanwhile except through an
 * event, which this loop also reads — and only then enters SAVE mode. At
 * that moment, the snapshot instant, every page is protected: nothing was
 * cleared that was not observed, and nothing written was left writable.
 * Faults read during the switch are deferred, and handled in SAVE mode.
 *
 * Shutdown: BGS_CMD_STOP, then the monitor closes the uffd.
 */
#include "snap_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

void bgs_unit(const struct bgs_region *r, uint64_t page, uint64_t *first,
	      uint64_t *n)
{
	const uint64_t unit = r->page_size / BGS_PAGE_SIZE;
	const uint64_t rel = page - r->first_page;

	*first = r->first_page + rel / unit * unit;
	*n = unit;
}

/* ---- deferred faults ----------------------------------------------------- */

static bool defer(struct bgs_monitor *m, uint64_t addr, uint64_t t_ns,
		  pid_t tid)
{
	if (m->ndeferred == BGS_DEFERRED_MAX)
		return false;
	m->deferred[m->ndeferred++] = (struct bgs_deferred){ addr, t_ns, tid };
	return true;
}

/* ---- events -------------------------------------------------------------- */

struct unsaved {
	struct bgs_save *s;
	const struct bgs_region *r;
	uint64_t page;
};

static int find_unsaved(void *arg, const struct bgs_region *r, uint64_t page)
{
	struct unsaved *u = arg;

	if (bgs_page_saved(u->s, page))
		return 0;
	u->r = r;
	u->page = page;
	return 1;
}

/* While tracking, a page the owner changed behind protection's back is
 * written (and may be writable: protect it again at the next instant). */
static int mark_changed(void *arg, const struct bgs_region *r, uint64_t page)
{
	struct bgs_monitor *m = arg;

	(void)r;
	bgs_bit_set(m->written, page);
	bgs_bit_set(m->unprotected, page);
	return 0;
}

static void check_hazard(struct bgs_monitor *m, uint64_t start, uint64_t end,
			 const char *what)
{
	struct unsaved u = { .s = m->save };

	bgs_snap_for_pages(m->h, start, end, mark_changed, m);
	if (atomic_load(&m->mode) != BGS_MON_SAVE ||
	    !bgs_snap_for_pages(m->h, start, end, find_unsaved, &u))
		return;
	bgs_save_fail(u.s, BGSNAP_EHAZARD,
		      "region '%s': [0x%" PRIx64 ", 0x%" PRIx64 ") was %s "
		      "during the save, before page 0x%" PRIx64 " was saved",
		      u.r->name, start, end, what,
		      u.r->base + (u.page - u.r->first_page) * BGS_PAGE_SIZE);
}

static void on_event(struct bgs_monitor *m, const struct uffd_msg *msg)
{
	switch (msg->event) {
	case UFFD_EVENT_REMOVE:
		check_hazard(m, msg->arg.remove.start, msg->arg.remove.end,
			     "discarded (MADV_DONTNEED/MADV_REMOVE/MADV_FREE)");
		break;
	case UFFD_EVENT_UNMAP:
		check_hazard(m, msg->arg.remove.start, msg->arg.remove.end,
			     "unmapped");
		break;
	case UFFD_EVENT_REMAP:
		check_hazard(m, msg->arg.remap.from,
			     msg->arg.remap.from + msg->arg.remap.len,
			     "moved by mremap");
		break;
	default:
		break;
	}
}

/* ---- faults -------------------------------------------------------------- */

/* Record the unit as written and writable, then unprotect it. */
static bool track(struct bgs_monitor *m, const struct bgs_region *r,
		  uint64_t first, uint64_t n)
{
	const uint64_t addr = bgs_page_addr(r, first);
	int ret;

	bgs_monitor_keep(m, r, first, n, NULL);
	for (uint64_t p = first; p < first + n; p++) {
		bgs_bit_set(m->written, p);
		bgs_bit_set(m->unprotected, p);
	}
	ret = bgs_uffd_unprotect(&m->uffd, addr, n * BGS_PAGE_SIZE,
				 BGS_UFFD_NORETRY);
	if (ret == -EAGAIN)
		return false;
	atomic_fetch_add_explicit(&m->faults, 1, memory_order_relaxed);
	return true;
}

/*
 * Let a writer go without saving [addr, +len): unprotect it (waking the
 * writer alone would have it fault again at once, for ever). False while
 * an event stands in the way: the fault is deferred.
 */
static bool let_go(struct bgs_monitor *m, uint64_t addr, uint64_t len)
{
	const int ret =
		bgs_uffd_unprotect(&m->uffd, addr, len, BGS_UFFD_NORETRY);

	if (ret == -EAGAIN)
		return false;
	/* A failed unprotect wakes nobody (a huge page cannot be
	 * unprotected in part): never leave the writer asleep. */
	if (ret < 0)
		bgs_uffd_wake(&m->uffd, addr, len);
	return true;
}

/* A fault in SAVE mode. */
static bool serve(struct bgs_monitor *m, const struct bgs_region *r,
		  uint64_t page, uint64_t first, uint64_t n,
		  const struct bgs_deferred *f)
{
	struct bgs_save *s = m->save;
	const struct bgs_request req = { page, f->t_ns };

	if (f->tid && f->tid == atomic_load(&s->copier_tid)) {
		bgs_save_fail(s, BGSNAP_EUNSAFE,
			      "bgsnap's copier wrote to registered memory at "
			      "0x%" PRIx64 ": a region overlaps bgsnap's own "
			      "memory",
			      f->addr);
		/* Let the copier run on to the clean-up. */
		return bgs_uffd_unprotect(&m->uffd, bgs_page_addr(r, first),
					  n * BGS_PAGE_SIZE,
					  BGS_UFFD_NORETRY) != -EAGAIN;
	}
	if (!bgs_page_saved(s, first)) {
		if (!bgs_ring_push(&s->ring, &req))
			return false;
		bgs_copier_kick(s);
		return true;
	}
	if (s->keep_tracking)
		return track(m, r, first, n);
	/* The copier saved the page after this fault was raised, and
	 * unprotected it then; the writer may still be asleep: wake it. */
	bgs_uffd_wake(&m->uffd, bgs_page_addr(r, first), n * BGS_PAGE_SIZE);
	return true;
}

/* Act on a fault; false if it must wait (then it is deferred). */
static bool on_fault(struct bgs_monitor *m, const struct bgs_deferred *f)
{
	const struct bgs_region *r = bgs_snap_region_of_addr(m->h, f->addr);
	uint64_t page, first, n;

	/* Outside every region: registered memory that mremap moved
	 * elsewhere (the REMAP event was handled; its protection moved with
	 * it). None of the snapshot's pages any more. */
	if (!r || !bgs_region_protected(r)) {
		atomic_fetch_add_explicit(&m->strays, 1, memory_order_relaxed);
		return let_go(m, f->addr & ~(uint64_t)(BGS_PAGE_SIZE - 1),
			      BGS_PAGE_SIZE);
	}
	page = r->first_page + (f->addr - r->base) / BGS_PAGE_SIZE;
	bgs_unit(r, page, &first, &n);
	switch (atomic_load_explicit(&m->mode, memory_order_relaxed)) {
	case BGS_MON_TRACK:
		return track(m, r, first, n);
	case BGS_MON_SAVE:
		return serve(m, r, page, first, n, f);
	default: /* dead */
		return let_go(m, bgs_page_addr(r, first), n * BGS_PAGE_SIZE);
	}
}

static void retry_deferred(struct bgs_monitor *m)
{
	size_t keep = 0;

	for (size_t i = 0; i < m->ndeferred; i++)
		if (!on_fault(m, &m->deferred[i]))
			m->deferred[keep++] = m->deferred[i];
	m->ndeferred = keep;
}

/*
 * Read what is queued: events handled, faults deferred (@act false) or
 * acted on. Returns the number of messages, or -errno.
 */
static int read_batch(struct bgs_monitor *m, bool act)
{
	struct uffd_msg msgs[BGS_FAULT_BATCH];
	const size_t room = BGS_DEFERRED_MAX - m->ndeferred;
	const int injected =
		atomic_exchange(&m->h->test_hooks.fault_read_error, 0);
	int n;

	if (!room) /* leave them queued: the writers wait, nothing is lost */
		return 0;
	n = injected ? injected
		     : bgs_uffd_read(&m->uffd, msgs,
				     room < BGS_FAULT_BATCH ? room
							    : BGS_FAULT_BATCH);
	if (n <= 0)
		return n;
	const uint64_t now = bgs_now_ns();
	for (int i = 0; i < n; i++)
		if (msgs[i].event != UFFD_EVENT_PAGEFAULT)
			on_event(m, &msgs[i]);
	for (int i = 0; i < n; i++) {
		const struct bgs_deferred f = {
			msgs[i].arg.pagefault.address,
			now,
			(pid_t)msgs[i].arg.pagefault.feat.ptid,
		};
		if (msgs[i].event == UFFD_EVENT_PAGEFAULT &&
		    (!act || !on_fault(m, &f)))
			defer(m, f.addr, f.t_ns, f.tid);
	}
	return n;
}

/* ---- commands ------------------------------------------------------------ */

/* Protect [first, first + n) again (their bits are cleared already),
 * reading messages while an event blocks the ioctl. */
static int reprotect_run(struct bgs_monitor *m, const struct bgs_region *r,
			 uint64_t first, uint64_t n)
{
	for (;;) {
		const int ret =
			bgs_uffd_protect(&m->uffd, bgs_page_addr(r, first),
					 n * BGS_PAGE_SIZE, BGS_UFFD_NORETRY);
		if (ret != -EAGAIN)
			return ret;
		const int got = read_batch(m, false);

		if (got < 0)
			return got;
	}
}

#define SERVE_EVERY_RUNS 32

/*
 * One pass over the unprotected pages, region by region, in runs.
 * While the owner runs (@serve), faults are served every few runs: a
 * writer must not wait for the whole pass, which grows with what was
 * written. (In the pause there is no owner to serve.) Returns the pages
 * protected, or -errno.
 */
static int64_t reprotect_pass(struct bgs_monitor *m, bool serve)
{
	const struct bgsnap *h = m->h;
	int64_t done = 0;
	unsigned runs = 0;

	for (size_t i = 0; i < h->nregions; i++) {
		const struct bgs_region *r = &h->regions[i];
		const uint64_t end = r->first_page + bgs_region_pages(r);

		if (!bgs_region_protected(r))
			continue;
		/* Clear words are skipped whole: a pass costs what was
		 * written, not what is mapped. */
		for (uint64_t p =
			     bgs_bit_next(m->unprotected, r->first_page, end);
		     p < end; p = bgs_bit_next(m->unprotected, p, end)) {
			uint64_t n = 0;
			int ret;

			while (p + n < end &&
			       bgs_bit_get(m->unprotected, p + n))
				n++;
			/* Clear first, then protect: see the DESIGN block. */
			for (uint64_t k = p; k < p + n; k++)
				atomic_fetch_and_explicit(
					&m->unprotected[k / 64],
					~(1ULL << (k % 64)),
					memory_order_acq_rel);
			ret = reprotect_run(m, r, p, n);
			if (ret)
				return ret;
			done += (int64_t)n;
			p += n;
			if (serve && ++runs % SERVE_EVERY_RUNS == 0) {
				ret = read_batch(m, true);
				if (ret < 0)
					return ret;
				retry_deferred(m);
			}
		}
	}
	return done;
}

/* The snapshot instant: nothing writable is left, then SAVE mode. */
static int64_t switch_to_save(struct bgs_monitor *m, struct bgs_save *s)
{
	int64_t total = 0, n;
	const uint64_t words = (m->h->total_pages + 63) / 64;

	do {
		n = reprotect_pass(m, false);
		total += n > 0 ? n : 0;
	} while (n > 0);
	if (n < 0)
		return n;
	/* A new instant: what was written is now relative to it, and the
	 * undo log is emptied (its pages are the written ones). */
	for (uint64_t w = 0; w < words; w++)
		s->changed[w] = atomic_exchange(&m->written[w], 0);
	bgs_monitor_undo_empty(m);
	atomic_store(&m->undo_live, m->undo_data && s->keep_tracking);
	m->save = s;
	atomic_store(&m->mode, BGS_MON_SAVE);
	return total;
}

static int64_t run_command(struct bgs_monitor *m, enum bgs_mon_cmd cmd,
			   struct bgs_save *s)
{
	/* Dead: its caller was told already (bgs_monitor_command). */
	if (atomic_load(&m->mode) == BGS_MON_DEAD)
		return bgs_first_error_get(&m->error);
	switch (cmd) {
	case BGS_CMD_ROLLED_BACK:
		bgs_monitor_undo_empty(m);
		return reprotect_pass(m, true);
	case BGS_CMD_REPROTECT:
		return reprotect_pass(m, true);
	case BGS_CMD_SWITCH:
		return switch_to_save(m, s);
	case BGS_CMD_DETACH:
		atomic_store(&m->mode, BGS_MON_TRACK);
		m->save = NULL;
		return 0;
	default:
		return 0;
	}
}

/* Run the command waiting, if any; true if it was STOP. */
static bool take_command(struct bgs_monitor *m)
{
	enum bgs_mon_cmd cmd;
	struct bgs_save *s;
	uint64_t seq, value;
	int64_t result;

	if (read(m->wake_fd, &value, sizeof(value)) < 0 && errno != EAGAIN)
		return false;
	pthread_mutex_lock(&m->lock);
	cmd = m->cmd;
	s = m->cmd_save;
	seq = m->cmd_seq;
	pthread_mutex_unlock(&m->lock);
	if (seq == m->done_seq)
		return false;
	result = run_command(m, cmd, s);
	pthread_mutex_lock(&m->lock);
	m->result = result;
	m->done_seq = seq;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	return cmd == BGS_CMD_STOP;
}

static void monitor_fail(struct bgs_monitor *m, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void monitor_fail(struct bgs_monitor *m, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	bgs_first_error_set(&m->error, err, fmt, ap);
	va_end(ap);
}

/*
 * The thread failed to poll or read the uffd: that is the save's error,
 * failed before anything is unprotected, and every command but STOP
 * returns it at once from now on. The thread goes on in DEAD mode until
 * STOP: it reads what it can (which completes events the owner waits
 * on), lets every faulting writer go, and unprotects every region, again
 * until no event stands in the way.
 */
static void die(struct bgs_monitor *m, int err, const char *what)
{
	struct bgs_save *s =
		atomic_load(&m->mode) == BGS_MON_SAVE ? m->save : NULL;

	monitor_fail(m, err, "bgsnap's fault thread failed: %s: %s", what,
		     strerror(-err));
	if (s)
		bgs_save_fail(s, err, "%s", m->error.msg);
	m->save = NULL;
	/* Under the lock a command waiter checks it under: none misses it. */
	pthread_mutex_lock(&m->lock);
	atomic_store(&m->mode, BGS_MON_DEAD);
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
}

/* DEAD mode: unprotect every region; false while an event is in the way. */
static bool release_all(struct bgs_monitor *m)
{
	const struct bgsnap *h = m->h;
	bool done = true;

	for (size_t i = 0; i < h->nregions; i++) {
		const struct bgs_region *r = &h->regions[i];

		if (bgs_region_protected(r) &&
		    bgs_uffd_unprotect(&m->uffd, r->base, r->len,
				       BGS_UFFD_NORETRY) == -EAGAIN)
			done = false;
	}
	return done;
}

void *bgs_fault_main(void *arg)
{
	struct bgs_monitor *m = arg;
	struct pollfd p[2] = {
		{ .fd = m->uffd.fd, .events = POLLIN },
		{ .fd = m->wake_fd, .events = POLLIN },
	};
	bool released = false;
	int ret;

	for (;;) {
		const int mode = atomic_load(&m->mode);
		const bool dead = mode == BGS_MON_DEAD;
		struct bgs_save *saving = mode == BGS_MON_SAVE ? m->save : NULL;
		/* With faults deferred, peek and come back soon; dead, look
		 * at what can still be read every 10 ms; saving, beat. */
		const int timeout = dead	   ? 10
				    : m->ndeferred ? 1
				    : saving	   ? bgs_save_beat_ms(saving)
						   : -1;

		if (saving)
			bgs_save_beat(saving);
		if (poll(p, 2, timeout) < 0 && errno != EINTR && !dead)
			die(m, -errno, "poll");
		if ((p[1].revents & POLLIN) && take_command(m))
			break;
		ret = read_batch(m, true);
		if (ret < 0 && !dead)
			die(m, ret, "reading the userfaultfd");
		else if (ret < 0)
			usleep(1000); /* an fd that fails at once: no spin */
		retry_deferred(m);
		if (atomic_load(&m->mode) == BGS_MON_DEAD && !released)
			released = release_all(m);
	}
	return NULL;
}
