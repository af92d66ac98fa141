/* SPDX-License-Identifier: MIT */
/*
 * The fault thread.
 *
 * DESIGN
 * Threads: the fault thread (this file) reads the uffd; the copier
 * (snap_copier.c) saves pages and changes protection; the thread that
 * started the save arms protection in the owner's pause.
 *
 * The fault thread reads messages in batches of BGS_FAULT_BATCH and never
 * waits on the copier: while an event is queued and unread, every
 * UFFDIO_WRITEPROTECT fails with EAGAIN, so the one thread that reads
 * events must always be free to read. It owns nothing but its stack;
 * it produces into the request ring (single producer) and reads the saved
 * bitmap (atomic loads) to judge events:
 *   - a write fault becomes a request for the copier (the ring is never
 *     waited on: when full the request is dropped and counted, and the
 *     writer is freed when the scan reaches its page — later, not never);
 *   - REMOVE (MADV_DONTNEED/REMOVE/FREE), UNMAP, REMAP of pages not yet
 *     saved, once protection is armed, fail the save (BGSNAP_EHAZARD):
 *     the kernel completes the event when it is read, so the old content
 *     cannot be rescued reliably (kernel-uffd.md §3.2). Saved pages are
 *     already safe in the store.
 *   - a fault by the copier itself means registered memory overlaps
 *     bgsnap's own (it would deadlock): the save fails and that page is
 *     unprotected here so the copier can run on to the clean-up.
 *
 * Shutdown: the copier writes stop_fd and joins this thread before it
 * closes the uffd.
 */
#include "snap_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <string.h>

/* The first region overlapping [start, end) that has an unsaved page. */
static const struct bgs_region *unsaved_in(struct bgs_save *s, uint64_t start,
					   uint64_t end, uint64_t *at)
{
	const struct bgsnap *h = s->h;

	for (size_t i = 0; i < h->nregions; i++) {
		const struct bgs_region *r = &h->regions[i];
		const uint64_t lo = start > r->base ? start : r->base;
		const uint64_t hi = end < r->base + r->len ? end : r->base + r->len;

		for (uint64_t a = lo & ~(uint64_t)(BGS_PAGE_SIZE - 1); a < hi;
		     a += BGS_PAGE_SIZE) {
			if (!bgs_page_saved(s, r->first_page +
						       (a - r->base) / BGS_PAGE_SIZE)) {
				*at = a;
				return r;
			}
		}
	}
	return NULL;
}

static void check_hazard(struct bgs_save *s, uint64_t start, uint64_t end,
			 const char *what)
{
	const struct bgs_region *r;
	uint64_t at;

	if (!atomic_load_explicit(&s->armed, memory_order_acquire))
		return; /* before the snapshot instant: the owner's business */
	r = unsaved_in(s, start, end, &at);
	if (r)
		bgs_save_fail(s, BGSNAP_EHAZARD,
			      "region '%s': [0x%" PRIx64 ", 0x%" PRIx64
			      ") was %s during the save, before page 0x%" PRIx64
			      " was saved",
			      r->name, start, end, what, at);
}

static void on_event(struct bgs_save *s, const struct uffd_msg *m)
{
	switch (m->event) {
	case UFFD_EVENT_REMOVE:
		check_hazard(s, m->arg.remove.start, m->arg.remove.end,
			     "discarded (MADV_DONTNEED/MADV_REMOVE/MADV_FREE)");
		break;
	case UFFD_EVENT_UNMAP:
		check_hazard(s, m->arg.remove.start, m->arg.remove.end,
			     "unmapped");
		break;
	case UFFD_EVENT_REMAP:
		check_hazard(s, m->arg.remap.from,
			     m->arg.remap.from + m->arg.remap.len,
			     "moved by mremap");
		break;
	default:
		break;
	}
}

static void on_fault(struct bgs_save *s, const struct uffd_msg *m,
		     uint64_t now)
{
	const uint64_t addr = m->arg.pagefault.address;
	const struct bgs_region *r = bgs_snap_region_of_addr(s->h, addr);
	const pid_t tid = (pid_t)m->arg.pagefault.feat.ptid;
	struct bgs_request req;

	if (tid && tid == atomic_load(&s->copier_tid)) {
		bgs_save_fail(s, BGSNAP_EUNSAFE,
			      "bgsnap's copier wrote to registered memory at "
			      "0x%" PRIx64 ": a region overlaps bgsnap's own "
			      "memory", addr);
		bgs_uffd_unprotect(&s->uffd, addr & ~(uint64_t)(BGS_PAGE_SIZE - 1),
				   r ? r->page_size : BGS_PAGE_SIZE, true);
		return;
	}
	if (!r) /* not ours: cannot happen, but never leave a writer asleep */
		return (void)bgs_uffd_wake(&s->uffd, addr, BGS_PAGE_SIZE);
	req.page = r->first_page + (addr - r->base) / BGS_PAGE_SIZE;
	req.t_ns = now;
	if (!bgs_ring_push(&s->ring, &req))
		atomic_fetch_add_explicit(&s->faults_dropped, 1,
					  memory_order_relaxed);
}

void *bgs_fault_main(void *arg)
{
	struct bgs_save *s = arg;
	struct uffd_msg msgs[BGS_FAULT_BATCH];
	struct pollfd p[2] = {
		{ .fd = s->uffd.fd, .events = POLLIN },
		{ .fd = s->stop_fd, .events = POLLIN },
	};

	for (;;) {
		int n;

		if (poll(p, 2, -1) < 0 && errno != EINTR) {
			bgs_save_fail(s, -errno, "fault thread: poll: %s",
				      strerror(errno));
			break;
		}
		if (p[1].revents)
			break;
		n = bgs_uffd_read(&s->uffd, msgs, BGS_FAULT_BATCH);
		if (n < 0) {
			bgs_save_fail(s, n, "fault thread: read: %s",
				      strerror(-n));
			break;
		}
		const uint64_t now = bgs_now_ns();
		for (int i = 0; i < n; i++) /* events first */
			if (msgs[i].event != UFFD_EVENT_PAGEFAULT)
				on_event(s, &msgs[i]);
		for (int i = 0; i < n; i++)
			if (msgs[i].event == UFFD_EVENT_PAGEFAULT)
				on_fault(s, &msgs[i], now);
	}
	return NULL;
}
