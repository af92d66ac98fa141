/* SPDX-License-Identifier: MIT */
/*
 * The monitor's life: creating the uffd over the protected regions (in
 * another process, injected there), protecting them, talking to the fault
 * thread, stopping. The fault thread itself and the argument for the
 * two-phase switch are in snap_fault.c.
 */
#include "snap_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static size_t align_up(size_t v, size_t a)
{
	return (v + a - 1) & ~(a - 1);
}

static uint64_t needed_features(const struct bgsnap *h)
{
	uint64_t need = UFFD_FEATURE_PAGEFAULT_FLAG_WP |
			UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_REMOVE |
			UFFD_FEATURE_EVENT_UNMAP;

	for (size_t i = 0; i < h->nregions; i++)
		if (h->regions[i].kind == BGSNAP_KIND_SHMEM ||
		    h->regions[i].kind == BGSNAP_KIND_HUGETLB)
			need |= UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
	/* Another process's never-touched pages cannot be read-populated
	 * from here before they are protected. */
	if (h->target)
		need |= UFFD_FEATURE_WP_UNPOPULATED;
	return need;
}

static int uffd_error(struct bgsnap *h, int r)
{
	if (r < 0)
		bgs_snap_set_error(h, "userfaultfd: %s (see 'bgsnap caps')",
				   r == -ENOTSUP
					   ? "this kernel lacks a feature "
					     "these regions need"
					   : strerror(-r));
	return r;
}

/* Our own uffd, or one made inside the (frozen) target and taken. */
static int open_uffd(struct bgs_monitor *m)
{
	struct bgsnap *h = m->h;
	struct bgs_target_uffd tu;
	int r;

	if (!h->target)
		return uffd_error(h,
				  bgs_uffd_open(&m->uffd, BGS_UFFD_FEATURES_WP,
						needed_features(h)));
	r = bgs_target_inject_uffd(h->target, 0, &tu);
	if (r) {
		bgs_snap_set_error(h, "%s", h->target->msg);
		return r;
	}
	return uffd_error(h,
			  bgs_uffd_adopt(&m->uffd, tu.fd, BGS_UFFD_FEATURES_WP,
					 needed_features(h)));
}

static int register_regions(struct bgs_monitor *m)
{
	struct bgsnap *h = m->h;

	for (size_t i = 0; i < h->nregions; i++) {
		const struct bgs_region *g = &h->regions[i];
		int r;

		if (!bgs_region_protected(g))
			continue;
		r = bgs_uffd_register(&m->uffd, g->base, g->len,
				      UFFDIO_REGISTER_MODE_WP, NULL);
		if (r < 0) {
			bgs_snap_set_error(
				h, "region '%s': cannot register it: %s",
				g->name,
				r == -EBUSY    ? bgs_snap_uffd_holder(h)
				: r == -EINVAL ? "the kernel refuses to "
						 "write-protect its memory"
					       : strerror(-r));
			return r == -EBUSY || r == -EINVAL ? BGSNAP_EUNSAFE : r;
		}
	}
	return 0;
}

static struct bgs_monitor *monitor_new(struct bgsnap *h)
{
	const uint64_t words = (h->total_pages + 63) / 64;
	const size_t bits_len = align_up(words * 8, 64);
	const size_t deferred_at =
		align_up(sizeof(struct bgs_monitor), 64) + 2 * bits_len;
	const size_t stack_at = align_up(
		deferred_at + BGS_DEFERRED_MAX * sizeof(struct bgs_deferred),
		4096);
	const size_t len = stack_at + BGS_STACK_SIZE;
	uint8_t *a = mmap(NULL, len, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct bgs_monitor *m;

	if (a == MAP_FAILED)
		return NULL;
	m = (struct bgs_monitor *)a;
	m->h = h;
	m->arena = a;
	m->arena_len = len;
	m->unprotected = (_Atomic uint64_t *)(a + align_up(sizeof(*m), 64));
	m->written =
		(_Atomic uint64_t *)(a + align_up(sizeof(*m), 64) + bits_len);
	m->deferred = (struct bgs_deferred *)(a + deferred_at);
	m->stack = a + stack_at;
	m->pid = h->target ? h->target->pid : getpid();
	m->uffd.fd = -1;
	m->pagemap.fd = -1;
	m->wake_fd = -1;
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->cond, NULL);
	return m;
}

int bgs_monitor_start(struct bgsnap *h, const cpu_set_t *cpus,
		      struct bgs_monitor **out)
{
	struct bgs_monitor *m = monitor_new(h);
	int r;

	*out = NULL;
	if (!m)
		return -ENOMEM;
	r = bgs_uffd_pagemap_open(&m->pagemap, h->target ? m->pid : 0);
	if (!r)
		r = open_uffd(m);
	if (!r)
		r = register_regions(m);
	if (!r) {
		m->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		r = m->wake_fd < 0 ? -errno : 0;
	}
	if (!r)
		r = bgs_thread_start(&m->thread, m->stack, cpus, bgs_fault_main,
				     m);
	m->started = !r;
	if (r) {
		bgs_monitor_stop(m);
		return r;
	}
	*out = m;
	return 0;
}

/* Without WP_UNPOPULATED, never-touched anonymous pages would stay
 * writable: map the zero page into them first (QEMU's approach before
 * Linux 6.4). */
static int populate(struct bgs_monitor *m, const struct bgs_region *g)
{
	if (!bgs_region_is_anon(g) ||
	    (m->uffd.features & UFFD_FEATURE_WP_UNPOPULATED))
		return 0;
	return madvise((void *)(uintptr_t)g->base, g->len, MADV_POPULATE_READ)
		       ? -errno
		       : 0;
}

#define BGS_SLICE (16ull << 20)

/*
 * Where the slice of @g that starts at @at ends. Protecting or releasing
 * a region holds the owner's mmap lock for as long as the kernel walks
 * its page tables (80-90 ms for 4 GiB here), and the owner's mmap, munmap
 * and brk wait for all of it; done a slice at a time, they go in between
 * two slices. Slices end on absolute multiples of their size, which cuts
 * no huge page (a range ending inside a PMD-mapped THP would split it).
 */
static uint64_t slice_end(const struct bgs_region *g, uint64_t at)
{
	const uint64_t slice =
		g->page_size > BGS_SLICE ? g->page_size : BGS_SLICE;
	const uint64_t next = (at / slice + 1) * slice;

	return next < g->base + g->len ? next : g->base + g->len;
}

static int protect_in_slices(struct bgs_monitor *m, const struct bgs_region *g)
{
	int r = 0;

	for (uint64_t at = g->base, next; at < g->base + g->len && !r;
	     at = next) {
		next = slice_end(g, at);
		r = bgs_uffd_protect(&m->uffd, at, next - at, 0);
	}
	return r;
}

int bgs_monitor_protect_all(struct bgs_monitor *m)
{
	struct bgsnap *h = m->h;
	int r = 0;

	for (size_t i = 0; i < h->nregions && !r; i++) {
		const struct bgs_region *g = &h->regions[i];

		if (!bgs_region_protected(g))
			continue;
		r = populate(m, g);
		if (!r)
			r = protect_in_slices(m, g);
		/* ENOENT: part of the range is no longer the registered
		 * mapping (unmapped, moved, or mapped anew). */
		if (r == -ENOENT) {
			bgs_snap_set_error(
				h,
				"region '%s': its mapping changed or "
				"vanished during the save (unmapped "
				"or moved by munmap, mremap or mmap)",
				g->name);
			r = BGSNAP_EHAZARD;
		} else if (r < 0) {
			bgs_snap_set_error(h, "region '%s': write-protect: %s",
					   g->name, strerror(-r));
		}
	}
	return r;
}

int64_t bgs_monitor_command(struct bgs_monitor *m, enum bgs_mon_cmd cmd,
			    struct bgs_save *save)
{
	const uint64_t one = 1;
	uint64_t seq;
	int64_t result;

	pthread_mutex_lock(&m->lock);
	m->cmd = cmd;
	m->cmd_save = save;
	seq = ++m->cmd_seq;
	pthread_mutex_unlock(&m->lock);
	/* Adding 1 to an eventfd fails only when it would overflow. */
	(void)!write(m->wake_fd, &one, sizeof(one));
	pthread_mutex_lock(&m->lock);
	while (m->done_seq < seq && atomic_load(&m->mode) != BGS_MON_DEAD)
		pthread_cond_wait(&m->cond, &m->lock);
	result = m->done_seq < seq ? bgs_first_error_get(&m->error) : m->result;
	pthread_mutex_unlock(&m->lock);
	return result;
}

const char *bgs_monitor_failure(struct bgs_monitor *m)
{
	return bgs_first_error_get(&m->error) ? m->error.msg : NULL;
}

/*
 * Unregister every region a slice at a time (see slice_end()) before the
 * uffd is closed: closing it unregisters them all at once, clearing the
 * protection bits of every page table entry on the way with the owner's
 * mmap lock held for writing throughout (75 ms for 4 GiB here). Each
 * slice is woken after: a writer asleep on a page still protected (while
 * tracking) would otherwise sleep until the close. An error (the owner
 * exited) leaves the rest to the close.
 */
static void unregister_in_slices(struct bgs_monitor *m)
{
	const struct bgsnap *h = m->h;

	for (size_t i = 0; i < h->nregions; i++) {
		const struct bgs_region *g = &h->regions[i];

		if (!bgs_region_protected(g))
			continue;
		for (uint64_t at = g->base, next; at < g->base + g->len;
		     at = next) {
			next = slice_end(g, at);
			if (bgs_uffd_unregister(&m->uffd, at, next - at))
				return;
			(void)bgs_uffd_wake(&m->uffd, at, next - at);
		}
	}
}

void bgs_monitor_stop(struct bgs_monitor *m)
{
	if (!m)
		return;
	if (m->started) {
		bgs_monitor_command(m, BGS_CMD_STOP, NULL);
		pthread_join(m->thread, NULL);
	}
	if (m->uffd.fd >= 0)
		unregister_in_slices(m);
	bgs_uffd_close(&m->uffd); /* nothing protected, nobody asleep */
	if (m->undo_data) {
		munmap(m->undo_data, m->undo_slots * BGS_PAGE_SIZE);
		munmap((void *)(uintptr_t)m->undo_slot,
		       m->h->total_pages * sizeof(*m->undo_slot));
		munmap(m->undo_page, m->undo_slots * sizeof(*m->undo_page));
	}
	bgs_uffd_pagemap_close(&m->pagemap);
	if (m->wake_fd >= 0)
		close(m->wake_fd);
	pthread_mutex_destroy(&m->lock);
	pthread_cond_destroy(&m->cond);
	munmap(m->arena, m->arena_len);
}

uint64_t bgs_monitor_cpu_ns(const struct bgs_monitor *m)
{
	struct timespec ts;
	clockid_t clock;

	if (!m->started || pthread_getcpuclockid(m->thread, &clock) ||
	    clock_gettime(clock, &ts))
		return 0;
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- the undo log -------------------------------------------------------- */

static void *map_anon(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

int bgs_monitor_undo(struct bgs_monitor *m, size_t bytes)
{
	const size_t slots = bytes / BGS_PAGE_SIZE;
	const size_t index_len = m->h->total_pages * sizeof(*m->undo_slot);
	void *data, *index, *pages;

	if (m->undo_data || !slots)
		return 0;
	data = map_anon(slots * BGS_PAGE_SIZE);
	index = map_anon(index_len);
	pages = map_anon(slots * sizeof(*m->undo_page));
	if (!data || !index || !pages) {
		if (data)
			munmap(data, slots * BGS_PAGE_SIZE);
		if (index)
			munmap(index, index_len);
		if (pages)
			munmap(pages, slots * sizeof(*m->undo_page));
		return -ENOMEM;
	}
	m->undo_slot = index;
	m->undo_page = pages;
	m->undo_slots = slots;
	/* Published last: the threads test undo_data. The command that
	 * starts the next save orders this before their first use. */
	m->undo_data = data;
	return 0;
}

void bgs_monitor_undo_empty(struct bgs_monitor *m)
{
	const size_t used = atomic_exchange(&m->undo_used, 0);

	for (size_t k = 0; m->undo_data && k < used && k < m->undo_slots; k++)
		atomic_store(&m->undo_slot[m->undo_page[k]], 0);
}

void bgs_monitor_keep(struct bgs_monitor *m, const struct bgs_region *r,
		      uint64_t page, uint64_t n, const uint8_t *src)
{
	if (!atomic_load(&m->undo_live))
		return;
	for (uint64_t i = 0; i < n; i++) {
		const uint64_t p = page + i;
		size_t slot;
		uint8_t *dst;

		if (atomic_load_explicit(&m->undo_slot[p],
					 memory_order_acquire))
			continue;
		slot = atomic_fetch_add(&m->undo_used, 1);
		if (slot >= m->undo_slots)
			return; /* full: rollback reads the file for the rest */
		m->undo_page[slot] = p;
		dst = m->undo_data + slot * BGS_PAGE_SIZE;
		if (src) {
			memcpy(dst, src + i * BGS_PAGE_SIZE, BGS_PAGE_SIZE);
		} else {
			struct iovec local = { dst, BGS_PAGE_SIZE };
			struct iovec remote = {
				(void *)(uintptr_t)(r->base +
						    (p - r->first_page) *
							    BGS_PAGE_SIZE),
				BGS_PAGE_SIZE,
			};
			if (process_vm_readv(m->pid, &local, 1, &remote, 1,
					     0) != BGS_PAGE_SIZE)
				continue;
		}
		atomic_store_explicit(&m->undo_slot[p], (uint32_t)slot + 1,
				      memory_order_release);
	}
}
