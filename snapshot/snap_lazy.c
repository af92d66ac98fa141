/* SPDX-License-Identifier: MIT */
/*
 * The lazy (postcopy-style) restore.
 *
 * DESIGN
 * Threads: the fault thread (lazy_fault_main) reads the uffd and serves
 * missing-page faults; the fill thread (lazy_fill_main) places every
 * record in order; the owner runs meanwhile. Both decode with decoders of
 * their own from the shared reader (read-only), and both place pages with
 * UFFDIO_COPY/ZEROPAGE, which never overwrite a page already there
 * (EEXIST is skipped): whoever comes second leaves the page alone, so a
 * page the owner wrote after it was placed is never overwritten.
 *
 * The fault thread reads events too and so never waits: it fills with
 * BGS_UFFD_NORETRY, and a fault that meets EAGAIN (an event queued) is
 * kept and retried after the next read. The fill retries EAGAIN itself,
 * with the events lock free (below).
 * It places records in chunks that double (up to 16 MiB) while no fault
 * comes and fall back to 32 KiB after one, yielding the CPU to the fault
 * thread.
 *
 * Owner events: a range the owner discards (MADV_DONTNEED/REMOVE) or
 * unmaps is marked and from then on gets zero pages, not snapshot data;
 * a range moved by mremap cannot be followed: the restore reports it and a
 * fault at an address bgsnap does not know is poisoned.
 *
 * The kernel completes an event when it is read, not when it is handled:
 * madvise zaps the range as soon as the message is read. Were the fill to
 * look at the marks, then the fault thread to read a discard and the
 * owner's madvise to zap, and only then the fill to place the record, the
 * owner would find snapshot data where it had just discarded its memory.
 * So the fill looks at the marks and places pages with the lazy restore's
 * events lock held, and the fault thread holds it to read the uffd and
 * mark: the fill then places either before the event is read (and the zap
 * that follows removes what it placed; a placement meets EAGAIN while the
 * event is queued) or after the marks are made. The fill holds the lock for
 * at most BGS_FILL_LOCKED_PAGES at a time, which bounds what a fault waits.
 *
 * A record that fails its checks when needed is never served: its missing
 * pages are poisoned (SIGBUS on access) and the restore reports the error.
 *
 * Shutdown: the fill, at its end, stops the fault thread, unregisters the
 * regions (waking anyone left) and closes the uffd.
 */
#include "snap_restore.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

/* What the fill places with the events lock held at most: 256 KiB, a few
 * tens of microseconds that a fault may wait for. */
#define BGS_FILL_LOCKED_PAGES 64u

/* One placing thread's tools. */
struct placer {
	struct bgs_restore *r;
	struct rs_decoder *dec;
	uint8_t *buf;
	size_t buf_len;
	uint8_t *tmp;	/* a parent's record, for PARENT pages */
	bool fill;	/* the fill thread (else the fault thread) */
	unsigned flags; /* BGS_UFFD_* */
};

static bool discarded(struct bgs_restore *r, uint64_t page)
{
	return atomic_load_explicit(&r->discarded[page / 64],
				    memory_order_acquire) &
	       (1ULL << (page % 64));
}

static void count_placed(struct placer *p, int64_t bytes, bool zero)
{
	const uint64_t pages = (uint64_t)bytes / BGS_PAGE_SIZE;

	atomic_fetch_add(p->fill ? &p->r->pages_by_fill : &p->r->pages_by_fault,
			 pages);
	atomic_fetch_add(&p->r->pages_done, pages);
	if (zero)
		atomic_fetch_add(&p->r->pages_zero, pages);
}

/* Zero pages: the shared zero page, except on hugetlbfs, which has none. */
static int64_t place_zero(struct placer *p, const struct bgs_region *g,
			  uint64_t addr, uint64_t len)
{
	int64_t done = 0;

	if (g->kind != BGSNAP_KIND_HUGETLB)
		return bgs_uffd_zeropage(&p->r->uffd, addr, len, g->page_size,
					 p->flags);
	for (uint64_t off = 0; off < len; off += g->page_size) {
		const int64_t n =
			bgs_uffd_copy(&p->r->uffd, addr + off, p->r->zero,
				      g->page_size, g->page_size, p->flags);
		if (n < 0)
			return n;
		done += n;
	}
	return done;
}

/* Pages that could not be placed (ENOMEM, a spent EAGAIN budget) are
 * poisoned, as those of a damaged record are: an access raises SIGBUS,
 * never finds zeroes once the restore has let go (its error says why),
 * and a faulting thread is woken, not left to fault again. */
static void poison_missing(struct placer *p, const struct bgs_region *g,
			   uint64_t addr, uint64_t len)
{
	const int64_t n =
		bgs_uffd_poison(&p->r->uffd, addr, len, g->page_size, 0);

	if (n > 0)
		atomic_fetch_add(&p->r->pages_poisoned,
				 (uint64_t)n / BGS_PAGE_SIZE);
}

/*
 * Place pages [first, first + n) of @g from @data (NULL: zeroes), except
 * that discarded pages get zeroes. Returns 0, -EAGAIN (NORETRY), or an
 * error. Pages gone with their mapping are skipped.
 */
static int place(struct placer *p, const struct bgs_region *g, uint64_t first,
		 uint64_t n, const uint8_t *data)
{
	const uint64_t unit = g->page_size / BGS_PAGE_SIZE;
	/* The fill's bound: 64 pages, or one huge page when that is more. */
	const uint64_t most = !p->fill ? UINT64_MAX
			      : BGS_FILL_LOCKED_PAGES > unit
				      ? BGS_FILL_LOCKED_PAGES / unit * unit
				      : unit;
	uint64_t eagain_since = 0;

	for (uint64_t i = 0; i < n;) {
		bool drop;
		uint64_t k = unit;
		int64_t placed;

		if (p->fill)
			pthread_mutex_lock(&p->r->events);
		drop = discarded(p->r, g->first_page + first + i);
		while (i + k < n && k < most &&
		       discarded(p->r, g->first_page + first + i + k) == drop)
			k += unit;
		if (p->fill)
			bgs_test_delay_us(p->r->h->test_hooks.fill_delay_us);
		const uint64_t addr = g->base + (first + i) * BGS_PAGE_SIZE;
		if (p->fill && atomic_load(&p->r->h->test_hooks.place_error))
			placed = atomic_exchange(
				&p->r->h->test_hooks.place_error, 0);
		else if (data && !drop)
			placed = bgs_uffd_copy(
				&p->r->uffd, addr, data + i * BGS_PAGE_SIZE,
				k * BGS_PAGE_SIZE, g->page_size, p->flags);
		else
			placed = place_zero(p, g, addr, k * BGS_PAGE_SIZE);
		if (p->fill)
			pthread_mutex_unlock(&p->r->events);
		if (placed == -EAGAIN && p->fill) {
			/* An event is queued: the fault thread reads it once
			 * the lock is free; then look at the marks again. */
			if (!eagain_since)
				eagain_since = bgs_now_ns();
			if (bgs_now_ns() - eagain_since <
			    BGS_UFFD_EAGAIN_BUDGET_NS) {
				sched_yield();
				continue;
			}
		}
		eagain_since = 0;
		if (placed == -ENOENT || placed == -EFAULT) {
			if (!drop)
				return bgs_restore_fail(
					p->r, BGSNAP_EHAZARD,
					"region '%s': page 0x%" PRIx64 " went "
					"away during the restore",
					g->name, addr);
			placed = 0; /* unmapped by the owner: fine */
		}
		if (placed == -EAGAIN && !p->fill)
			return -EAGAIN;
		if (placed < 0) {
			poison_missing(p, g, addr, (n - i) * BGS_PAGE_SIZE);
			return bgs_restore_fail(
				p->r, (int)placed,
				"region '%s': placing pages: %s "
				"(those not placed are poisoned)",
				g->name, strerror((int)-placed));
		}
		count_placed(p, placed, !data || drop);
		i += k;
	}
	return 0;
}

/* A damaged record is never served: poison what of it is missing. */
static void poison(struct placer *p, const struct bgs_region *g,
		   const struct rs_extent *e, int err, const char *why)
{
	const int64_t n =
		bgs_uffd_poison(&p->r->uffd, g->base + e->first * BGS_PAGE_SIZE,
				e->npages * BGS_PAGE_SIZE, g->page_size, 0);

	if (n > 0)
		atomic_fetch_add(&p->r->pages_poisoned,
				 (uint64_t)n / BGS_PAGE_SIZE);
	atomic_fetch_add(&p->r->pages_done, e->npages);
	bgs_restore_fail(p->r, err, "%s (its pages are poisoned)", why);
}

/* Decode record @i into p->buf + @at; returns its encoding or -1 when the
 * record was damaged (then poisoned). */
static int decode(struct placer *p, size_t i, size_t at)
{
	const struct rs_extent *e = bgs_rs_extent(p->r->reader, i);
	const struct bgs_region *g = p->r->dest[e->region];
	struct rs_diag diag = { 0 };
	int ret = bgs_rs_decode_to(p->r->reader, p->dec, i, p->buf + at, &diag);

	if (ret == RS_ENC_PARENT) {
		ret = bgs_restore_from_chain(p->r, p->dec, p->tmp, 0, e->region,
					     e->first, e->npages, p->buf + at);
		if (ret)
			snprintf(diag.msg, sizeof(diag.msg), "%.250s",
				 p->r->error.msg);
		ret = ret ? ret : RS_ENC_RAW;
	}
	if (ret < 0) {
		poison(p, g, e, ret, diag.msg);
		atomic_store(&p->r->placed[i], 1);
		return -1;
	}
	atomic_fetch_add(&p->r->bytes_read, e->stored_len);
	return ret;
}

/* Place record @i whole (the fault thread's unit). */
static int place_record(struct placer *p, size_t i)
{
	const struct rs_extent *e = bgs_rs_extent(p->r->reader, i);
	const struct bgs_region *g = p->r->dest[e->region];
	int enc, ret;

	if (atomic_load(&p->r->placed[i]))
		return bgs_uffd_wake(&p->r->uffd,
				     g->base + e->first * BGS_PAGE_SIZE,
				     e->npages * BGS_PAGE_SIZE);
	enc = decode(p, i, 0);
	if (enc < 0)
		return 0;
	ret = place(p, g, e->first, e->npages,
		    enc == RS_ENC_ZERO ? NULL : p->buf);
	if (!ret)
		atomic_store(&p->r->placed[i], 1);
	return ret;
}

/* ---- the fault thread ---------------------------------------------------- */

#define PENDING_MAX 64

struct fault_state {
	struct placer p;
	uint64_t pending[PENDING_MAX]; /* faults that met EAGAIN */
	uint64_t pending_t[PENDING_MAX];
	size_t npending;
};

static int discard_page(void *arg, const struct bgs_region *g, uint64_t page)
{
	struct bgs_restore *r = arg;

	(void)g;
	atomic_fetch_or_explicit(&r->discarded[page / 64], 1ULL << (page % 64),
				 memory_order_release);
	return 0;
}

static void mark_discarded(struct bgs_restore *r, uint64_t start, uint64_t end)
{
	bgs_snap_for_pages(r->h, start, end, discard_page, r);
}

static void on_event(struct bgs_restore *r, const struct uffd_msg *m)
{
	if (m->event == UFFD_EVENT_REMOVE || m->event == UFFD_EVENT_UNMAP) {
		mark_discarded(r, m->arg.remove.start, m->arg.remove.end);
	} else if (m->event == UFFD_EVENT_REMAP) {
		mark_discarded(r, m->arg.remap.from,
			       m->arg.remap.from + m->arg.remap.len);
		bgs_restore_fail(r, BGSNAP_EHAZARD,
				 "[0x%llx, +%llu) was moved "
				 "by mremap during the restore",
				 (unsigned long long)m->arg.remap.from,
				 (unsigned long long)m->arg.remap.len);
	}
}

/* Serve one fault; false if it must be retried (EAGAIN). */
static bool serve(struct fault_state *f, uint64_t addr, uint64_t t_ns)
{
	struct bgs_restore *r = f->p.r;
	const struct bgs_region *g = bgs_snap_region_of_addr(r->h, addr);
	ssize_t i;
	int ret;

	if (!g) { /* moved away from where bgsnap knows it: never guess */
		bgs_uffd_poison(&r->uffd, addr & ~(uint64_t)(BGS_PAGE_SIZE - 1),
				BGS_PAGE_SIZE, BGS_PAGE_SIZE, BGS_UFFD_NORETRY);
		return true;
	}
	const uint64_t page = (addr - g->base) / BGS_PAGE_SIZE;
	i = bgs_rs_find(r->reader, r->snap_region[g - r->h->regions], page);
	if (i < 0 || discarded(r, g->first_page + page)) {
		const uint64_t unit = g->page_size / BGS_PAGE_SIZE;
		ret = place(&f->p, g, page & ~(unit - 1), unit, NULL);
	} else {
		ret = place_record(&f->p, (size_t)i);
	}
	if (ret == -EAGAIN)
		return false;
	r->faults++;
	bgs_hist_add(&r->latency, bgs_now_ns() - t_ns);
	atomic_fetch_add(&r->faults_seen, 1);
	return true;
}

static void retry_pending(struct fault_state *f)
{
	size_t keep = 0;

	for (size_t k = 0; k < f->npending; k++) {
		if (!serve(f, f->pending[k], f->pending_t[k])) {
			f->pending[keep] = f->pending[k];
			f->pending_t[keep++] = f->pending_t[k];
		}
	}
	f->npending = keep;
}

static void *lazy_fault_main(void *arg)
{
	struct fault_state *f = arg;
	struct bgs_restore *r = f->p.r;
	struct uffd_msg msgs[BGS_FAULT_BATCH];
	struct pollfd pfd[2] = {
		{ .fd = r->uffd.fd, .events = POLLIN },
		{ .fd = r->stop_fd, .events = POLLIN },
	};

	for (;;) {
		/* With faults waiting for an event to be read, only peek. */
		if (poll(pfd, 2, f->npending ? 1 : -1) < 0 && errno != EINTR)
			break;
		if (pfd[1].revents)
			break;
		pthread_mutex_lock(&r->events);
		const int n = bgs_uffd_read(&r->uffd, msgs, BGS_FAULT_BATCH);
		const uint64_t now = bgs_now_ns();

		for (int k = 0; k < n; k++)
			if (msgs[k].event != UFFD_EVENT_PAGEFAULT)
				on_event(r, &msgs[k]);
		pthread_mutex_unlock(&r->events);
		if (n < 0)
			break;
		retry_pending(f);
		for (int k = 0; k < n; k++) {
			const uint64_t addr = msgs[k].arg.pagefault.address;

			if (msgs[k].event != UFFD_EVENT_PAGEFAULT ||
			    serve(f, addr, now))
				continue;
			/* Full: the fill will place the page and wake it. */
			if (f->npending < PENDING_MAX) {
				f->pending[f->npending] = addr;
				f->pending_t[f->npending++] = now;
			}
		}
	}
	return NULL;
}

/* ---- the fill ------------------------------------------------------------ */

/*
 * From record @i on, decode consecutive records of one region, with
 * consecutive pages and data (not zero), into the buffer: up to @chunk
 * pages. Returns how many records were taken (at least one).
 */
static size_t fill_chunk(struct placer *p, size_t i, uint64_t chunk)
{
	struct bgs_restore *r = p->r;
	const size_t n = bgs_rs_extent_count(r->reader);
	const struct rs_extent *first = bgs_rs_extent(r->reader, i);
	const struct bgs_region *g = r->dest[first->region];
	uint64_t pages = 0;
	size_t k = i;

	for (; k < n; k++) {
		const struct rs_extent *e = bgs_rs_extent(r->reader, k);
		int enc;

		if (k > i &&
		    (e->region != first->region ||
		     e->first != first->first + pages ||
		     e->encoding == RS_ENC_ZERO || pages + e->npages > chunk ||
		     atomic_load(&r->placed[k])))
			break;
		enc = decode(p, k, pages * BGS_PAGE_SIZE);
		if (enc < 0) {
			k++;
			break;
		}
		if (enc == RS_ENC_ZERO) { /* a zero record travels alone */
			place(p, g, e->first, e->npages, NULL);
			atomic_store(&r->placed[k], 1);
			return 1;
		}
		pages += e->npages;
	}
	if (pages)
		place(p, g, first->first, pages, p->buf);
	for (size_t m = i; m < k; m++)
		atomic_store(&r->placed[m], 1);
	return k - i;
}

static void lazy_teardown(struct bgs_restore *r)
{
	if (r->fault_started) {
		const uint64_t one = 1;

		/* Adding 1 to a fresh eventfd cannot fail. */
		(void)!write(r->stop_fd, &one, sizeof(one));
		pthread_join(r->fault_thread, NULL);
		r->fault_started = false;
	}
	for (size_t k = 0; r->uffd.fd >= 0 && k < r->h->nregions; k++)
		bgs_uffd_unregister(&r->uffd, r->h->regions[k].base,
				    r->h->regions[k].len);
	bgs_uffd_close(&r->uffd);
}

static void *lazy_fill_main(void *arg)
{
	struct placer *p = arg;
	struct bgs_restore *r = p->r;
	const size_t n = bgs_rs_extent_count(r->reader);
	uint64_t chunk = BGS_FILL_MIN_PAGES, seen = 0;

	for (size_t i = 0; i < n;) {
		const uint64_t now = atomic_load(&r->faults_seen);

		if (atomic_load(&r->placed[i])) {
			i++;
			continue;
		}
		i += fill_chunk(p, i, chunk);
		if (now != seen) { /* a fault came: small steps, let it run */
			chunk = BGS_FILL_MIN_PAGES;
			seen = now;
			sched_yield();
		} else if (chunk < BGS_FILL_MAX_PAGES) {
			chunk *= 2;
		}
	}
	lazy_teardown(r);
	return NULL;
}

/* ---- start and join ------------------------------------------------------ */

struct lazy {
	struct fault_state fault;
	struct placer fill;
};

static int placer_init(struct placer *p, struct bgs_restore *r, bool fill)
{
	p->r = r;
	p->fill = fill;
	p->flags = BGS_UFFD_NORETRY; /* the fill retries with the lock free */
	p->buf_len =
		(fill ? BGS_FILL_MAX_PAGES * BGS_PAGE_SIZE : 0) + r->max_record;
	p->buf = mmap(NULL, p->buf_len + r->max_record, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p->buf == MAP_FAILED) {
		p->buf = NULL;
		return -ENOMEM;
	}
	p->tmp = p->buf + p->buf_len;
	return bgs_rs_decoder_new(&p->dec);
}

static void placer_fini(struct placer *p)
{
	if (p->buf)
		munmap(p->buf, p->buf_len + p->r->max_record);
	bgs_rs_decoder_free(p->dec);
}

static void lazy_free(struct bgs_restore *r)
{
	struct lazy *l = r->lazy;

	if (r->events_init)
		pthread_mutex_destroy(&r->events);
	r->events_init = false;
	if (l) {
		placer_fini(&l->fault.p);
		placer_fini(&l->fill);
		free(l);
	}
	free((void *)(uintptr_t)r->placed);
	free((void *)(uintptr_t)r->discarded);
	free(r->zero);
	if (r->stop_fd >= 0)
		close(r->stop_fd);
	r->lazy = NULL;
}

static int lazy_alloc(struct bgs_restore *r)
{
	const size_t n = bgs_rs_extent_count(r->reader);
	size_t huge = BGS_PAGE_SIZE;
	int ret;

	for (size_t k = 0; k < r->h->nregions; k++)
		if (r->h->regions[k].page_size > huge)
			huge = r->h->regions[k].page_size;
	r->lazy = calloc(1, sizeof(struct lazy));
	r->placed = calloc(n ? n : 1, 1);
	r->discarded = calloc((r->h->total_pages + 63) / 64, 8);
	r->zero = calloc(1, huge);
	r->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (!r->lazy || !r->placed || !r->discarded || !r->zero ||
	    r->stop_fd < 0)
		return -ENOMEM;
	r->events_init = !pthread_mutex_init(&r->events, NULL);
	ret = placer_init(&r->lazy->fault.p, r, false);
	return ret ? ret : placer_init(&r->lazy->fill, r, true);
}

static uint64_t needed_features(const struct bgsnap *h)
{
	uint64_t need = UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_REMOVE |
			UFFD_FEATURE_EVENT_UNMAP;

	for (size_t k = 0; k < h->nregions; k++) {
		if (h->regions[k].kind == BGSNAP_KIND_SHMEM)
			need |= UFFD_FEATURE_MISSING_SHMEM;
		if (h->regions[k].kind == BGSNAP_KIND_HUGETLB)
			need |= UFFD_FEATURE_MISSING_HUGETLBFS;
	}
	return need;
}

/* Empty the regions (so that every page faults) and register them. */
static int arm(struct bgs_restore *r)
{
	struct bgsnap *h = r->h;
	int ret = bgs_uffd_open(&r->uffd, BGS_UFFD_FEATURES_MISSING,
				needed_features(h));

	if (ret) {
		bgs_snap_set_error(h, "userfaultfd: %s (see 'bgsnap caps')",
				   strerror(-ret));
		return ret;
	}
	for (size_t k = 0; k < h->nregions && !ret; k++) {
		const struct bgs_region *g = &h->regions[k];

		bgs_restore_zero(g, g->base, g->len);
		ret = bgs_uffd_register(&r->uffd, g->base, g->len,
					UFFDIO_REGISTER_MODE_MISSING, NULL);
		if (ret)
			bgs_snap_set_error(h,
					   "region '%s': cannot register it "
					   "for missing pages: %s",
					   g->name, strerror(-ret));
	}
	return ret;
}

int bgs_lazy_start(struct bgs_restore *r)
{
	int ret = bgs_restore_attachments(r);

	if (!ret)
		ret = lazy_alloc(r);
	if (!ret)
		ret = arm(r);
	if (!ret) {
		ret = bgs_thread_start(&r->fault_thread, NULL, NULL,
				       lazy_fault_main, &r->lazy->fault);
		r->fault_started = !ret;
	}
	if (!ret) {
		ret = bgs_thread_start(&r->fill_thread, NULL, NULL,
				       lazy_fill_main, &r->lazy->fill);
		r->fill_started = !ret;
	}
	if (ret) {
		lazy_teardown(r);
		lazy_free(r);
	}
	return ret;
}

void bgs_lazy_join(struct bgs_restore *r)
{
	pthread_join(r->fill_thread, NULL);
	lazy_free(r);
}
