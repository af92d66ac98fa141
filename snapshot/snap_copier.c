/* SPDX-License-Identifier: MIT */
/*
 * The copier: the one thread that saves pages. (Over 1000 lines: the
 * order of its steps is the save-once argument, and it reads best in one
 * place; the workers behind it are snap_workers.c.)
 *
 * DESIGN
 * Threads: see snap_fault.c. The copier owns the saved bitmap (it alone
 * sets bits, with atomic stores the fault thread may load), the writer,
 * the staging buffer, the scan cursor, the statistics counters and,
 * after arming, every change of protection.
 *
 * Each page is saved exactly once, in this order:
 *   1. read the run out of the owner into staging (read_remote: a page
 *      unmapped under us is an error to report, not a SIGSEGV; in the
 *      owner's own process, a memcpy under the guard of snap_guard.c,
 *      and the scan does not copy at all: steps 1 and 3 are one, the
 *      writer compresses the pages where they lie, still protected);
 *   2. verify-after-copy: PAGEMAP_SCAN says every page of the run is
 *      still write-protected, so no write reached it since the snapshot
 *      instant (KSM, an anon MADV_DONTNEED or a lost bit would show here);
 *   3. hand it to the writer, which copies or compresses it into its own
 *      buffers before returning;
 *   4. only then unprotect the run (one ioctl, which wakes its writers)
 *      and mark it saved. The scan's runs wait to be unprotected in a
 *      batch of up to BGS_UNPROTECT_PAGES that follow each other: each
 *      ioctl flushes the TLB. Until then they are not marked saved, so a
 *      write to one is a fault for the copier, which unprotects the batch
 *      at once; the copier itself counts them as taken (taken()).
 * A faulted page takes steps 1, 2, 4, 3: once in staging, its content at
 * the instant is in bgsnap's own memory, and its writer need not wait for
 * the compression.
 * Faulted pages (from the ring) come first, each with its unsaved
 * neighbours (fault-around, BGS_FAULT_AROUND pages: a writer that wrote
 * one page is likely to write the next); every fault queued is released
 * before any of them is compressed, and faults queued meanwhile are
 * released between two records. The bulk scan then resumes right after
 * them and saves runs of BGS_RUN_PAGES unsaved pages, and whole huge
 * pages: it splits no PMD-mapped THP block of its own accord. A run is
 * copied in chunks and cut short when a writer faults, so a fault waits
 * for one chunk at most.
 * Before the scan, pages that are provably zero at the snapshot instant
 * (never populated, or the zero page) are stored as zero runs without
 * being touched.
 *
 * A fault never waits for the disk: while the owner runs, the copier's
 * puts are urgent, and spill into the writer's overflow when the buffers
 * are full. The scan is what waits: it takes a chunk only when the
 * writer can take it at once, and otherwise the copier sleeps on the
 * writer's completions and on its wake eventfd, which the fault thread
 * signals when it queues a fault while the copier sleeps (so there is no
 * wake-up per fault while the copier is busy).
 *
 * Shutdown: when every page is saved or an error is set, the copier stops
 * the fault thread, closes the uffd (which drops every protection left and
 * wakes every writer), then commits or aborts the store.
 */
#include "snap_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

static struct bgs_pagemap *pagemap_of(struct bgs_save *s)
{
	return s->mon ? &s->mon->pagemap : &s->pagemap;
}

static uint32_t region_index(const struct bgs_save *s,
			     const struct bgs_region *r)
{
	return (uint32_t)(r - s->h->regions);
}

static void mark_saved(struct bgs_save *s, uint64_t page, uint64_t n)
{
	for (uint64_t p = page; p < page + n; p++)
		atomic_fetch_or_explicit(&s->saved[p / 64], 1ULL << (p % 64),
					 memory_order_relaxed);
	atomic_fetch_add_explicit(&s->pages_done, n, memory_order_relaxed);
}

/* Does [first, +n) meet the scan's unprotect batch? */
static bool in_unprotect_batch(const struct bgs_save *s, uint64_t first,
			       uint64_t n)
{
	return s->unprotect_n && first < s->unprotect_first + s->unprotect_n &&
	       s->unprotect_first < first + n;
}

/* Saved, or stored and waiting in the batch: the copier never reads it
 * again. */
static bool taken(const struct bgs_save *s, uint64_t page)
{
	return bgs_page_saved(s, page) || in_unprotect_batch(s, page, 1);
}

/* Is @page the first page of a PMD-mapped THP block (seen by the scan)? */
static bool huge_start(const struct bgs_save *s, uint64_t page)
{
	return s->huge[page / 8] & (1u << (page % 8));
}

/*
 * The unit saved and unprotected together around @page. A hugetlbfs page
 * is always whole (the kernel protects nothing smaller). A PMD-mapped THP
 * block is whole for the bulk scan, which never splits one; a writer's
 * fault in it saves just its 4 KiB page, as a fork COW fault would copy
 * it: the writer waits microseconds, not a 2 MiB compression, and the
 * kernel splits the PMD (the folio stays whole).
 */
static void unit_of(const struct bgs_save *s, const struct bgs_region *r,
		    uint64_t page, bool fault, uint64_t *first, uint64_t *n)
{
	const uint64_t addr = bgs_page_addr(r, page);
	uint64_t size = r->page_size;

	if (!fault && bgs_region_is_anon(r)) {
		const uint64_t block = addr & ~(uint64_t)(BGS_THP_SIZE - 1);

		if (block >= r->base &&
		    block + BGS_THP_SIZE <= r->base + r->len &&
		    huge_start(s, r->first_page +
					  (block - r->base) / BGS_PAGE_SIZE))
			size = BGS_THP_SIZE;
	}
	*first = r->first_page +
		 ((addr & ~(size - 1)) - r->base) / BGS_PAGE_SIZE;
	*n = size / BGS_PAGE_SIZE;
	/* A THP block saved in part (after a fault) is split already: go on
	 * page by page. */
	if (bgs_region_is_anon(r) && *n > 1) {
		for (uint64_t p = *first; p < *first + *n; p++) {
			if (taken(s, p)) {
				*first = page;
				*n = 1;
				return;
			}
		}
	}
}

/*
 * Another process's memory, through /proc/PID/mem: the kernel reads it as
 * a debugger does (FOLL_FORCE), so memory its owner made PROT_NONE while
 * it holds data (a guard page a debugger once read, a region protected
 * mid-save) is saved too. Bytes read, 0 when the process is gone, or -1
 * with errno set (EIO: nothing mapped at @addr).
 */
static ssize_t read_mem(struct bgs_save *s, uint64_t addr, size_t len,
			uint8_t *dst)
{
	if (s->mem_fd < 0) {
		char path[64];

		snprintf(path, sizeof(path), "/proc/%d/mem", (int)s->pid);
		s->mem_fd = open(path, O_RDONLY | O_CLOEXEC);
		if (s->mem_fd < 0)
			return errno == ENOENT ? 0 : -1;
	}
	return pread(s->mem_fd, dst, len, (off_t)addr);
}

/*
 * Does another process map pages of the owner's mapping at @addr too
 * (for private memory: shared copy-on-write since a fork)? As smaps said
 * when the save started; true where it cannot tell.
 */
static bool shares_pages(const struct bgs_save *s, uint64_t addr)
{
	const struct bgs_target_maps *maps = &s->h->maps;
	size_t lo = 0, hi = maps->n;

	while (lo < hi) { /* smaps lists mappings in address order */
		const size_t mid = lo + (hi - lo) / 2;
		const struct bgs_target_map *m = &maps->v[mid];

		if (addr < m->start)
			hi = mid;
		else if (addr >= m->end)
			lo = mid + 1;
		else
			return m->shared_clean || m->shared_dirty;
	}
	return true;
}

/*
 * The same, faster where it may: process_vm_readv costs a fifth less
 * (copy stage 0.25-0.27 against 0.30-0.32 s/GiB), but it pins each page,
 * and pinning an anonymous page the owner shares copy-on-write with
 * another process gives the owner a private copy of it: a save of a
 * process that forked would double its memory. So it reads only mappings
 * whose pages the owner maps alone, and what it cannot read (PROT_NONE)
 * goes to /proc/PID/mem. (A fork while the save runs un-shares what the
 * save reads after it.)
 */
static ssize_t read_remote(struct bgs_save *s, const struct bgs_region *r,
			   uint64_t addr, size_t len, uint8_t *dst)
{
	if (!bgs_region_is_anon(r) || !shares_pages(s, addr)) {
		struct iovec local = { dst, len };
		struct iovec remote = { (void *)(uintptr_t)addr, len };
		const ssize_t n =
			process_vm_readv(s->pid, &local, 1, &remote, 1, 0);

		if (n > 0)
			return n;
		if (n < 0 && errno == ESRCH)
			return 0;
	}
	return read_mem(s, addr, len, dst);
}

struct copy_in_place {
	uint8_t *dst;
	const void *src;
	size_t len;
};

static void copy_in_place(void *arg)
{
	const struct copy_in_place *c = arg;

	memcpy(c->dst, c->src, c->len);
}

static int read_owner(struct bgs_save *s, const struct bgs_region *r,
		      uint64_t addr, size_t len, uint8_t *dst)
{
	size_t done = 0;

	/* In the owner's process, a memcpy, half the cost. If it faults, the
	 * kernel reads it below (PROT_NONE), or says why it cannot. */
	if (s->in_place) {
		struct copy_in_place c = { dst, (const void *)(uintptr_t)addr,
					   len };

		if (!bgs_guard_run(c.src, len, copy_in_place, &c))
			return 0;
	}
	while (done < len) {
		const ssize_t n =
			read_remote(s, r, addr + done, len - done, dst + done);

		if (n > 0) {
			done += (size_t)n;
			continue;
		}
		if (n == 0 || errno == ESRCH)
			return bgs_save_fail(s, BGSNAP_ETARGET,
					     "the target process exited");
		if (errno == EIO)
			return bgs_save_fail(s, BGSNAP_EHAZARD,
					     "region '%s': page 0x%" PRIx64
					     " is no longer mapped (unmapped "
					     "during the save)",
					     r->name, addr + done);
		return bgs_save_fail(
			s, -errno, "reading /proc/%d/mem at 0x%" PRIx64 ": %s",
			(int)s->pid, addr + done, strerror(errno));
	}
	return 0;
}

static int any_written(void *arg, uint64_t start, uint64_t end, uint64_t cats)
{
	uint64_t *first_written = arg;

	(void)end;
	(void)cats;
	*first_written = start;
	return 1;
}

/* Step 2: every page of the run still write-protected? */
static int verify_protected(struct bgs_save *s, const struct bgs_region *r,
			    uint64_t addr, size_t len)
{
	const struct bgs_scan_query q = { .anyof = PAGE_IS_WRITTEN,
					  .report = PAGE_IS_WRITTEN };
	uint64_t at = 0;
	const int ret = bgs_uffd_pagemap_scan(pagemap_of(s), addr, addr + len,
					      &q, any_written, &at);

	if (ret == 1)
		return bgs_save_fail(s, BGSNAP_EINCONSISTENT,
				     "region '%s': page 0x%" PRIx64 " lost its "
				     "write protection before it was saved "
				     "(KSM merge, MADV_DONTNEED, or a "
				     "protection bypass)",
				     r->name, at);
	if (ret < 0)
		return bgs_save_fail(s, ret, "PAGEMAP_SCAN: %s",
				     strerror(-ret));
	return 0;
}

static int unprotect(struct bgs_save *s, const struct bgs_region *r,
		     uint64_t addr, size_t len)
{
	const uint64_t t = bgs_stage_start(&s->stage_seed);
	const int ret = bgs_uffd_unprotect(&s->mon->uffd, addr, len, 0);

	bgs_stage_lap(&s->cpu_unprotect, t);
	if (ret == -ESRCH)
		return bgs_save_fail(s, BGSNAP_ETARGET,
				     "the target process exited");
	if (ret == -ENOENT)
		return bgs_save_fail(s, BGSNAP_EHAZARD,
				     "region '%s': [0x%" PRIx64 ", +%zu) is no "
				     "longer registered (unmapped during the "
				     "save)",
				     r->name, addr, len);
	if (ret < 0)
		return bgs_save_fail(s, ret, "region '%s': unprotect: %s",
				     r->name, strerror(-ret));
	return 0;
}

/* ---- the scan's unprotects, in batches ---------------------------------- */

/* Step 4 for the batch: unprotect it, then mark it saved. */
static int flush_unprotects(struct bgs_save *s)
{
	const uint64_t first = s->unprotect_first, n = s->unprotect_n;
	const struct bgs_region *r;
	int ret;

	if (!n)
		return 0;
	r = bgs_snap_region_of_page(s->h, first);
	s->unprotect_n = 0;
	ret = unprotect(s, r, bgs_page_addr(r, first), n * BGS_PAGE_SIZE);
	if (!ret)
		mark_saved(s, first, n);
	return ret;
}

/* Step 4 for a run of the scan: it joins the batch if it follows it in
 * the same region, and the batch is unprotected once full, or when the
 * next run will not. */
static int unprotect_later(struct bgs_save *s, const struct bgs_region *r,
			   uint64_t page, uint64_t n)
{
	if (s->unprotect_n && (page != s->unprotect_first + s->unprotect_n ||
			       page == r->first_page ||
			       s->unprotect_n + n > BGS_UNPROTECT_PAGES)) {
		const int ret = flush_unprotects(s);

		if (ret)
			return ret;
	}
	if (!s->unprotect_n)
		s->unprotect_first = page;
	s->unprotect_n += n;
	return s->unprotect_n >= BGS_UNPROTECT_PAGES ? flush_unprotects(s) : 0;
}

/*
 * An incremental save against a parent file (not tracked since): is page
 * @p, as read into @content, the same as in the parent? Anything the
 * parent cannot tell at once (its own parent's pages, a damaged record)
 * counts as different: the page is then stored, never lost.
 */
static bool same_as_parent(struct bgs_save *s, const struct bgs_region *r,
			   uint64_t p, const uint8_t *content)
{
	static const uint8_t zero[BGS_PAGE_SIZE];
	const uint32_t preg = s->parent_region[r - s->h->regions];
	const uint64_t rel = p - r->first_page;
	const struct rs_extent *e;
	const void *data;
	ssize_t i;

	if (preg == UINT32_MAX)
		return false;
	i = bgs_rs_find(s->parent, preg, rel);
	if (i < 0)
		return false;
	e = bgs_rs_extent(s->parent, (size_t)i);
	if (e->encoding == RS_ENC_ZERO)
		return !memcmp(content, zero, BGS_PAGE_SIZE);
	if (e->encoding == RS_ENC_PARENT ||
	    bgs_rs_decode(s->parent, (size_t)i, &data, NULL) != 0)
		return false;
	return !memcmp(content,
		       (const uint8_t *)data + (rel - e->first) * BGS_PAGE_SIZE,
		       BGS_PAGE_SIZE);
}

/* Store the run at @src, the pages the parent has as "the parent's". */
static int store_compared(struct bgs_save *s, const struct bgs_region *r,
			  uint64_t page, uint64_t n, const uint8_t *src)
{
	for (uint64_t k = 0; k < n;) {
		const bool same =
			same_as_parent(s, r, page + k, src + k * BGS_PAGE_SIZE);
		uint64_t m = 1;
		int ret;

		while (k + m < n &&
		       same_as_parent(s, r, page + k + m,
				      src + (k + m) * BGS_PAGE_SIZE) == same)
			m++;
		ret = same ? bgs_rs_put_parent(s->writer, region_index(s, r),
					       page + k - r->first_page, m)
			   : bgs_rs_put_pages(s->writer, region_index(s, r),
					      page + k - r->first_page, m,
					      src + k * BGS_PAGE_SIZE);
		if (ret < 0)
			return ret;
		if (same)
			s->pages_parent += m;
		k += m;
	}
	return 0;
}

/* For the save-once test: each page is read once. */
static void count_reads(struct bgs_save *s, uint64_t page, uint64_t n)
{
	if (s->read_count)
		for (uint64_t p = page; p < page + n; p++)
			s->read_count[p]++;
}

/* Step 1 for [page, page + n) of @r: read it out of the owner into @dst,
 * in staging. */
static int read_pages(struct bgs_save *s, const struct bgs_region *r,
		      uint64_t page, uint64_t n, uint8_t *dst)
{
	const uint64_t t = bgs_stage_start(&s->stage_seed);
	const int ret = read_owner(s, r, bgs_page_addr(r, page),
				   n * BGS_PAGE_SIZE, dst);

	bgs_stage_lap(&s->cpu_copy, t);
	if (!ret)
		count_reads(s, page, n);
	return ret;
}

/* The writer failed with @ret: why, in words. */
int bgs_save_write_failed(struct bgs_save *s, int ret)
{
	if (s->sink && bgs_rados_sink_failed(s->sink))
		return bgs_save_error(s);
	if (ret == -ETIMEDOUT && s->opts.max_stall_ms)
		return bgs_save_fail(s, ret,
				     "no write of the snapshot completed for "
				     "%u ms, the most allowed (%s)",
				     s->opts.max_stall_ms,
				     s->sink ? "the cluster does not answer"
					     : "its reader stopped reading, "
					       "or the disk hangs");
	return bgs_save_fail(s, ret, "writing the snapshot: %s",
			     bgsnap_strerror(ret));
}

/* Step 3: hand the pages at @src to the writer. */
static int store_pages(struct bgs_save *s, const struct bgs_region *r,
		       uint64_t page, uint64_t n, const uint8_t *src)
{
	const int ret =
		s->parent ? store_compared(s, r, page, n, src)
			  : bgs_rs_put_pages(s->writer, region_index(s, r),
					     page - r->first_page, n, src);

	return ret < 0 ? bgs_save_write_failed(s, ret) : 0;
}

struct store_in_place {
	struct bgs_save *s;
	const struct bgs_region *r;
	uint64_t page, n;
	int ret;
};

static void store_in_place(void *arg)
{
	struct store_in_place *a = arg;

	a->ret = store_pages(
		a->s, a->r, a->page, a->n,
		(const uint8_t *)(uintptr_t)bgs_page_addr(a->r, a->page));
}

/*
 * Steps 1 and 3 at once, in the owner's process: the writer compresses
 * the pages where they lie, still write-protected, and no copy is made
 * (step 2 checks after, as for a copy, that they stayed protected). If
 * the owner takes some away meanwhile (unmapped, made PROT_NONE), a read
 * faults and the writer is cut short between two records (it appends a
 * record only once its pages are read): *@done says how many pages it
 * stored, the rest to be read the usual way.
 */
static int store_where_they_lie(struct bgs_save *s, const struct bgs_region *r,
				uint64_t page, uint64_t n, uint64_t *done)
{
	struct store_in_place a = { s, r, page, n, 0 };
	const uint64_t records = bgs_rs_writer_records(s->writer);

	if (bgs_guard_run((const void *)(uintptr_t)bgs_page_addr(r, page),
			  n * BGS_PAGE_SIZE, store_in_place, &a) == 0)
		*done = n;
	else
		*done = bgs_rs_writer_pages_since(s->writer, records);
	count_reads(s, page, *done);
	return a.ret;
}

/* Steps 1 and 3, for the scan. */
static int copy_pages(struct bgs_save *s, const struct bgs_region *r,
		      uint64_t page, uint64_t n)
{
	uint64_t done = 0;
	int ret;

	if (s->in_place && !s->parent) {
		ret = store_where_they_lie(s, r, page, n, &done);
		if (ret || done == n)
			return ret;
	}
	ret = read_pages(s, r, page + done, n - done, s->staging);
	return ret ? ret : store_pages(s, r, page + done, n - done, s->staging);
}

/* A writer waits on these pages while tracking goes on: record them as
 * written (and writable) for the monitor, before they become so. */
static int track_and_unprotect(struct bgs_save *s, const struct bgs_region *r,
			       uint64_t page, uint64_t n,
			       const uint8_t *content)
{
	bgs_monitor_keep(s->mon, r, page, n, content);
	for (uint64_t p = page; p < page + n; p++) {
		bgs_bit_set(s->mon->written, p);
		bgs_bit_set(s->mon->unprotected, p);
	}
	return unprotect(s, r, bgs_page_addr(r, page), n * BGS_PAGE_SIZE);
}

/*
 * Steps 2 and 4 for a run whose pages are all copied out. A writer waits
 * on a faulted run: @faulted is its content, and it is unprotected now;
 * a run of the scan (@faulted NULL) joins the unprotect batch. While
 * tracking goes on after the save, pages stay protected unless a writer
 * waits on them.
 */
static int release_run(struct bgs_save *s, const struct bgs_region *r,
		       uint64_t page, uint64_t n, const uint8_t *faulted)
{
	const uint64_t addr = bgs_page_addr(r, page);
	int ret = 0;

	if (s->mon) {
		if (s->verify) {
			const uint64_t t = bgs_stage_start(&s->stage_seed);

			ret = verify_protected(s, r, addr, n * BGS_PAGE_SIZE);
			bgs_stage_lap(&s->cpu_copy, t);
		}
		if (ret)
			return ret;
		if (s->keep_tracking && faulted)
			ret = track_and_unprotect(s, r, page, n, faulted);
		else if (!s->keep_tracking && faulted)
			ret = unprotect(s, r, addr, n * BGS_PAGE_SIZE);
		else if (!s->keep_tracking)
			return unprotect_later(s, r, page, n);
	}
	if (!ret)
		mark_saved(s, page, n);
	return ret;
}

static bool faults_waiting(struct bgs_save *s)
{
	return atomic_load_explicit(&s->ring.head, memory_order_acquire) !=
	       atomic_load_explicit(&s->ring.tail, memory_order_relaxed);
}

/* ---- faulted pages first ------------------------------------------------ */

/*
 * A fault on a page saved since it was queued. While tracking goes on,
 * the page is still protected: unprotect it for the writer. Otherwise the
 * save unprotected it already, but the writer may still be asleep.
 */
static void wake_saved(struct bgs_save *s, const struct bgs_region *r,
		       uint64_t first, uint64_t n)
{
	if (s->keep_tracking)
		track_and_unprotect(s, r, first, n, NULL);
	else
		bgs_uffd_wake(&s->mon->uffd, bgs_page_addr(r, first),
			      n * BGS_PAGE_SIZE);
}

/*
 * Widen the unit [*first, +*n) of a faulted page: a single page is saved
 * with its unsaved neighbours in an aligned block of BGS_FAULT_AROUND
 * pages, the run of them that holds it. A writer that wrote here is
 * likely to write there next, and would wait on a fault of its own for
 * each. Not while tracking goes on, which would record them as written.
 */
static void fault_window(const struct bgs_save *s, const struct bgs_region *r,
			 uint64_t page, uint64_t *first, uint64_t *n)
{
	const uint64_t end = r->first_page + bgs_region_pages(r);
	/* The block's pages before and after @page, within the region. */
	const uint64_t off =
		(bgs_page_addr(r, page) / BGS_PAGE_SIZE) % BGS_FAULT_AROUND;
	const uint64_t ahead = BGS_FAULT_AROUND - off;
	const uint64_t lo =
		page -
		(off < page - r->first_page ? off : page - r->first_page);
	const uint64_t hi = end - page > ahead ? page + ahead : end;
	uint64_t a = page, b = page + 1;

	if (*n != 1 || s->keep_tracking)
		return;
	while (a > lo && !taken(s, a - 1))
		a--;
	while (b < hi && !taken(s, b))
		b++;
	*first = a;
	*n = b - a;
}

#define HELD_MAX BGS_RUN_PAGES /* faulted runs held in staging at most */

/*
 * Faulted runs read and released, waiting in staging to be stored, oldest
 * first: a ring of runs over a ring of staging pages. The oldest is stored
 * a record at a time, and its pages are free again once it is stored
 * whole, so a burst of faults that fills staging waits for one run to be
 * stored, not for all of them.
 */
struct held_runs {
	struct bgs_buffered_run run[HELD_MAX]; /* from run[head], count */
	size_t head, count;
	uint64_t done; /* pages of the oldest stored */
};

/* How many pages the writer takes in one record: a whole hugetlbfs page,
 * else a chunk, so that faults are looked at between two. */
static uint64_t record_pages(const struct bgs_region *r)
{
	return r->page_size > BGS_PAGE_SIZE ? r->page_size / BGS_PAGE_SIZE
					    : BGS_CHUNK_PAGES;
}

static void drop_oldest(struct held_runs *h)
{
	h->head = (h->head + 1) % HELD_MAX;
	h->count--;
	h->done = 0;
}

/* Store the next record of the held runs; false when none is left. */
static bool store_next(struct bgs_save *s, struct held_runs *h)
{
	const struct bgs_buffered_run *old = &h->run[h->head];
	uint64_t c;

	if (!h->count)
		return false;
	c = old->n - h->done;
	if (c > record_pages(old->r))
		c = record_pages(old->r);
	store_pages(s, old->r, old->first + h->done, c,
		    s->staging + (old->at + h->done) * BGS_PAGE_SIZE);
	h->done += c;
	if (h->done == old->n)
		drop_oldest(h);
	return true;
}

static uint64_t staging_pages(const struct bgs_save *s)
{
	return s->staging_len / BGS_PAGE_SIZE;
}

#define NO_ROOM UINT64_MAX

/* Where in staging @n more pages can be held now, or NO_ROOM. */
static uint64_t staging_room(const struct bgs_save *s,
			     const struct held_runs *h, uint64_t n)
{
	const struct bgs_buffered_run *old, *new;
	uint64_t next;

	if (!h->count)
		return n <= staging_pages(s) ? 0 : NO_ROOM;
	if (h->count == HELD_MAX)
		return NO_ROOM;
	old = &h->run[h->head];
	new = &h->run[(h->head + h->count - 1) % HELD_MAX];
	next = new->at + new->n;
	if (new->at < old->at) /* wrapped: free between the two */
		return n <= old->at - next ? next : NO_ROOM;
	if (n <= staging_pages(s) - next)
		return next;
	return n <= old->at ? 0 : NO_ROOM;
}

/*
 * Release every fault queued, as long as staging has room: the faulted
 * run is read into staging, which is bgsnap's own memory, so its content
 * at the instant is safe there, and it is released (its writer goes on)
 * at once, to be compressed and stored after. A writer's stall, from
 * when the fault thread read its fault, ends at the release.
 */
static void release_queued(struct bgs_save *s, struct held_runs *h)
{
	struct bgs_request req;

	while (!bgs_save_error(s) &&
	       staging_room(s, h, BGS_FAULT_AROUND) != NO_ROOM &&
	       bgs_ring_pop(&s->ring, &req)) {
		const struct bgs_region *r =
			bgs_snap_region_of_page(s->h, req.page);
		uint64_t first, n, at;
		uint8_t *dst;

		s->faults++;
		bgs_hist_add(&s->stall_wait, bgs_now_ns() - req.t_ns);
		unit_of(s, r, req.page, true, &first, &n);
		/* A page of the batch: its writer waits on the rest too. */
		if (in_unprotect_batch(s, first, n) && flush_unprotects(s))
			break;
		if (bgs_page_saved(s, first)) {
			wake_saved(s, r, first, n);
			bgs_hist_add(&s->stall, bgs_now_ns() - req.t_ns);
			continue;
		}
		fault_window(s, r, req.page, &first, &n);
		at = staging_room(s, h, n);
		if (at == NO_ROOM) { /* a hugetlbfs page may need it all */
			while (store_next(s, h))
				;
			at = 0;
		}
		dst = s->staging + at * BGS_PAGE_SIZE;
		if (!read_pages(s, r, first, n, dst) &&
		    !release_run(s, r, first, n, dst)) {
			h->run[(h->head + h->count++) % HELD_MAX] =
				(struct bgs_buffered_run){ r, first, n, at };
			s->pages_by_fault += n;
			s->cursor = first + n; /* the scan goes on from here */
		}
		bgs_hist_add(&s->stall, bgs_now_ns() - req.t_ns);
	}
}

/* Do the workers encode what the copier reads? Not an incremental save
 * compared page by page with its parent, which the copier does. */
static bool use_workers(const struct bgs_save *s)
{
	return s->workers && !s->parent;
}

/* Append the jobs the workers finished; @all: wait for every one. */
static void collect_jobs(struct bgs_save *s, bool all)
{
	int ret;

	if (!s->workers)
		return;
	ret = bgs_workers_collect(s->workers, all, !bgs_save_error(s));
	if (ret < 0)
		bgs_save_write_failed(s, ret);
}

/* Hand the held runs to the workers, as many as one free job takes;
 * false if none could go. */
static bool hand_over(struct bgs_save *s, struct held_runs *h)
{
	struct bgs_job *job;
	bool any = false;

	if (!use_workers(s) || !h->count)
		return false;
	job = bgs_workers_take(s->workers);
	if (!job) { /* all done or busy: the done ones free theirs */
		collect_jobs(s, false);
		job = bgs_workers_take(s->workers);
	}
	if (!job)
		return false;
	for (; h->count; drop_oldest(h)) {
		const struct bgs_buffered_run *old = &h->run[h->head];
		const uint64_t n = old->n - h->done;
		uint8_t *dst = bgs_job_room(s->workers, job, n);

		if (!dst)
			break;
		memcpy(dst, s->staging + (old->at + h->done) * BGS_PAGE_SIZE,
		       n * BGS_PAGE_SIZE);
		bgs_job_add(job, old->r, old->first + h->done, n);
		any = true;
	}
	bgs_workers_submit(s->workers, job);
	return any;
}

/* Every fault queued, and those queued meanwhile, released first, then
 * handed to the workers or stored a record at a time. */
static void serve_faults(struct bgs_save *s)
{
	struct held_runs h = { .head = 0 };

	do
		release_queued(s, &h);
	while (!bgs_save_error(s) && (hand_over(s, &h) || store_next(s, &h)));
}

/* ---- the bulk scan ------------------------------------------------------- */

static uint64_t next_unsaved(struct bgs_save *s, uint64_t from)
{
	const uint64_t total = s->h->total_pages;
	const uint64_t words = (total + 63) / 64;

	for (uint64_t pass = 0; pass < 2; pass++, from = 0) {
		for (uint64_t w = from / 64; w < words; w++) {
			uint64_t free_bits = ~atomic_load_explicit(
				&s->saved[w], memory_order_relaxed);

			if (w == from / 64)
				free_bits &= ~0ULL << (from % 64);
			if (free_bits) {
				const uint64_t p =
					w * 64 +
					(uint64_t)__builtin_ctzll(free_bits);
				if (p < total)
					return p;
			}
		}
	}
	return total;
}

/* Can the scan hand @n pages to the writer without waiting for the
 * disk, the workers' pages not collected yet included? (Stopped owners
 * have no faults to keep waiting: always.) */
static bool writer_ready(struct bgs_save *s, uint64_t n)
{
	if (s->workers)
		n += bgs_workers_inflight(s->workers);
	return s->stop_the_world || bgs_rs_writer_ready(s->writer, n);
}

/*
 * Save the next run: up to BGS_RUN_PAGES unsaved pages, or one whole huge
 * page. It is copied BGS_CHUNK_PAGES at a time, and cut short when a
 * writer faults, so a fault never waits for more than one chunk: the part
 * copied so far is released at once and the fault is served next. A
 * hugetlbfs page cannot be released in part, so it is copied whole. It is
 * cut short too when the writer cannot take the next chunk at once;
 * returns false if it could take none (the disk is behind).
 */
static bool bulk_step(struct bgs_save *s)
{
	uint64_t page = next_unsaved(s, s->cursor);
	const struct bgs_region *r;
	uint64_t end, chunk, first, n, done = 0;
	struct bgs_job *job = NULL;
	uint8_t *dst = NULL;

	/* The scan goes elsewhere (after a fault), or all that is left is in
	 * the batch: it grows no more. */
	if (s->unprotect_n && page != s->unprotect_first + s->unprotect_n) {
		if (flush_unprotects(s))
			return true;
		page = next_unsaved(s, s->cursor);
		if (page == s->h->total_pages)
			return true;
	}
	r = bgs_snap_region_of_page(s->h, page);
	end = r->first_page + r->len / BGS_PAGE_SIZE;
	chunk = r->page_size > BGS_PAGE_SIZE ? r->page_size / BGS_PAGE_SIZE
					     : BGS_CHUNK_PAGES;
	unit_of(s, r, page, false, &first, &n);
	if (n == 1) {
		while (n < BGS_RUN_PAGES && page + n < end &&
		       !taken(s, page + n) &&
		       !(bgs_region_is_anon(r) && huge_start(s, page + n)))
			n++;
	}
	/* With workers, the run is read into a job of theirs (none free: a
	 * worker's kick wakes the copier); else a chunk at a time into
	 * staging, and stored. */
	if (use_workers(s)) {
		job = bgs_workers_take(s->workers);
		if (!job)
			return false;
		dst = bgs_job_room(s->workers, job, n);
		if (!dst) { /* a unit larger than a job: the copier stores it */
			bgs_workers_submit(s->workers, job);
			job = NULL;
		}
	}
	while (done < n) {
		const uint64_t c = n - done < chunk ? n - done : chunk;
		const int ret = !writer_ready(s, c) ? 1
				: dst ? read_pages(s, r, first + done, c,
						   dst + done * BGS_PAGE_SIZE)
				      : copy_pages(s, r, first + done, c);

		if (ret)
			break; /* < 0: the save failed, and it ends below */
		done += c;
		if (!s->stop_the_world && faults_waiting(s))
			break;
	}
	if (!bgs_save_error(s) && done &&
	    release_run(s, r, first, done, NULL) == 0) {
		s->pages_by_scan += done;
		if (job)
			bgs_job_add(job, r, first, done);
	}
	/* Every path hands the job back: an empty one is free again. */
	if (job)
		bgs_workers_submit(s->workers, job);
	if (bgs_save_error(s))
		return true;
	if (!done)
		return false;
	s->cursor = first + done;
	return true;
}

/* ---- sleeping while the disk is behind ---------------------------------- */

#define COPIER_NAP_MS 10 /* a safety net: completions and faults wake it */

void bgs_copier_kick(struct bgs_save *s)
{
	static const uint64_t one = 1;

	/* Pairs with the fence in copier_sleep: the ring push before it,
	 * or the sleeping flag after it, is seen by the other side. */
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&s->copier_sleeping, memory_order_relaxed))
		(void)!write(s->wake_fd, &one, sizeof(one));
}

/* Sleep until a write completes or a fault is queued. */
static void copier_sleep(struct bgs_save *s)
{
	struct pollfd p[2] = {
		{ .fd = s->wake_fd, .events = POLLIN },
		{ .fd = bgs_rs_writer_wait_fd(s->writer), .events = POLLIN },
	};
	uint64_t v;

	atomic_store_explicit(&s->copier_sleeping, true, memory_order_relaxed);
	atomic_thread_fence(memory_order_seq_cst);
	if (!faults_waiting(s) && !(s->workers && bgs_workers_done(s->workers)))
		poll(p, p[1].fd >= 0 ? 2 : 1, COPIER_NAP_MS);
	atomic_store_explicit(&s->copier_sleeping, false, memory_order_relaxed);
	(void)!read(s->wake_fd, &v, sizeof(v));
}

/* ---- incremental: the parent's pages ------------------------------------ */

static bool changed(const struct bgs_save *s, uint64_t page)
{
	return s->changed[page / 64] & (1ULL << (page % 64));
}

/* Pages not written since the parent are the parent's: recorded as such,
 * never read. */
static void store_parent_runs(struct bgs_save *s)
{
	const struct bgsnap *h = s->h;

	for (size_t i = 0; i < h->nregions && !bgs_save_error(s); i++) {
		const struct bgs_region *r = &h->regions[i];
		const uint64_t end = r->first_page + bgs_region_pages(r);

		if (!bgs_region_protected(r))
			continue;
		for (uint64_t p = r->first_page;
		     p < end && !bgs_save_error(s);) {
			uint64_t n = 0;
			int ret;

			while (p + n < end && !changed(s, p + n) &&
			       !bgs_page_saved(s, p + n))
				n++;
			if (!n) {
				p++;
				continue;
			}
			ret = bgs_rs_put_parent(s->writer, region_index(s, r),
						p - r->first_page, n);
			if (ret < 0)
				bgs_save_write_failed(s, ret);
			/* Tracking goes on: they stay protected. Else nothing
			 * needs them protected any more. */
			else if (!s->keep_tracking)
				unprotect(s, r, bgs_page_addr(r, p),
					  n * BGS_PAGE_SIZE);
			mark_saved(s, p, n);
			s->pages_parent += n;
			p += n;
			/* A writer must not wait for the whole walk. */
			serve_faults(s);
		}
	}
}

/* ---- pages that are zero at the snapshot instant ------------------------- */

struct zero_scan {
	struct bgs_save *s;
	const struct bgs_region *r;
};

/*
 * Zero at the instant, for anonymous memory: the zero page, still
 * protected; or, with protection armed and no swap configured, a uffd-wp
 * marker (SWAPPED, not PRESENT, not WRITTEN), which is what a page never
 * populated becomes when armed with WP_UNPOPULATED. With swap present a
 * marker and a swapped-out page look alike, so those are read. Stopped
 * owners have no protection: a page neither present nor swapped is zero.
 */
static bool zero_at_instant(const struct bgs_save *s, uint64_t cats)
{
	if (s->stop_the_world)
		return (cats & PAGE_IS_PFNZERO) ||
		       !(cats & (PAGE_IS_PRESENT | PAGE_IS_SWAPPED));
	if (cats & PAGE_IS_WRITTEN)
		return false;
	if (cats & PAGE_IS_PFNZERO)
		return true;
	return !s->swap_present && (cats & PAGE_IS_SWAPPED) &&
	       !(cats & PAGE_IS_PRESENT);
}

static void store_zero_run(struct bgs_save *s, const struct bgs_region *r,
			   uint64_t page, uint64_t n)
{
	const int ret = bgs_rs_put_zero(s->writer, region_index(s, r),
					page - r->first_page, n);

	if (ret < 0) {
		bgs_save_write_failed(s, ret);
		return;
	}
	if (s->mon && !s->keep_tracking &&
	    unprotect(s, r, bgs_page_addr(r, page), n * BGS_PAGE_SIZE))
		return;
	mark_saved(s, page, n);
	s->pages_unpopulated += n;
}

static int zero_scan_cb(void *arg, uint64_t start, uint64_t end, uint64_t cats)
{
	struct zero_scan *z = arg;
	struct bgs_save *s = z->s;
	const struct bgs_region *r = z->r;
	const uint64_t first =
		r->first_page + (start - r->base) / BGS_PAGE_SIZE;
	const uint64_t last = r->first_page + (end - r->base) / BGS_PAGE_SIZE;

	if ((cats & PAGE_IS_HUGE) && bgs_region_is_anon(r)) {
		for (uint64_t a = (start + BGS_THP_SIZE - 1) &
				  ~(uint64_t)(BGS_THP_SIZE - 1);
		     a + BGS_THP_SIZE <= end; a += BGS_THP_SIZE) {
			const uint64_t p =
				r->first_page + (a - r->base) / BGS_PAGE_SIZE;
			s->huge[p / 8] |= (uint8_t)(1u << (p % 8));
		}
	}
	if (!zero_at_instant(s, cats))
		return 0;
	for (uint64_t p = first; p < last && !bgs_save_error(s);) {
		uint64_t n = 0;

		while (p + n < last && !bgs_page_saved(s, p + n))
			n++;
		if (n)
			store_zero_run(s, r, p, n);
		p += n + 1;
	}
	return bgs_save_error(s) ? 1 : 0;
}

#define ZERO_SCAN_SLICE (64ULL << 20) /* serve faults between slices */

static void skip_zero_pages(struct bgs_save *s)
{
	const uint64_t all = PAGE_IS_PRESENT | PAGE_IS_SWAPPED |
			     PAGE_IS_PFNZERO | PAGE_IS_WRITTEN | PAGE_IS_HUGE;
	const struct bgs_scan_query q = { .report = all };

	for (size_t i = 0; i < s->h->nregions && !bgs_save_error(s); i++) {
		struct zero_scan z = { s, &s->h->regions[i] };
		const struct bgs_region *r = z.r;

		/* shmem and hugetlbfs may hold data in the page cache behind
		 * an unpopulated mapping: those are always read. */
		if (!bgs_region_is_anon(r))
			continue;
		for (uint64_t a = r->base;
		     a < r->base + r->len && !bgs_save_error(s);
		     a += ZERO_SCAN_SLICE) {
			const uint64_t end =
				a + ZERO_SCAN_SLICE < r->base + r->len
					? a + ZERO_SCAN_SLICE
					: r->base + r->len;
			const int ret = bgs_uffd_pagemap_scan(
				pagemap_of(s), a, end, &q, zero_scan_cb, &z);
			if (ret < 0)
				bgs_save_fail(s, ret, "PAGEMAP_SCAN: %s",
					      strerror(-ret));
			if (!s->stop_the_world)
				serve_faults(s);
		}
	}
}

/* ---- while the owner is stopped ------------------------------------------ */

int bgs_copier_save_now(struct bgs_save *s, const struct bgs_region *r)
{
	const uint64_t end = r->first_page + bgs_region_pages(r);

	for (uint64_t p = r->first_page; p < end;) {
		const uint64_t n =
			end - p < BGS_RUN_PAGES ? end - p : BGS_RUN_PAGES;
		const int ret = copy_pages(s, r, p, n);

		if (ret)
			return ret;
		mark_saved(s, p, n);
		s->pages_by_scan += n;
		p += n;
	}
	return 0;
}

/* ---- the end ------------------------------------------------------------- */

static int write_stats_attachment(struct bgs_save *s, struct rs_writer *w)
{
	char json[512];
	const int n = snprintf(
		json, sizeof(json),
		"{\"blackout_ns\":%" PRIu64 ",\"pages_total\":%" PRIu64
		",\"pages_by_scan\":%" PRIu64 ",\"pages_by_fault\":%" PRIu64
		",\"pages_unpopulated\":%" PRIu64 ",\"faults\":%" PRIu64
		",\"stall_ns_p50\":%" PRIu64 ",\"stall_ns_p99\":%" PRIu64
		",\"stall_ns_max\":%" PRIu64 ",\"stop_the_world\":%s}",
		s->t_resume - s->t_pause, s->h->total_pages, s->pages_by_scan,
		s->pages_by_fault, s->pages_unpopulated, s->faults,
		bgs_hist_percentile(&s->stall, 50),
		bgs_hist_percentile(&s->stall, 99), s->stall.max,
		s->stop_the_world ? "true" : "false");

	return bgs_rs_put_attachment(w, "bgsnap.stats", json, (size_t)n);
}

/* Registers, mappings and the rest a core file needs (snap_core.c). */
static int write_core_attachment(struct bgs_save *s, struct rs_writer *w)
{
	uint8_t *data;
	size_t len;
	int ret = bgs_core_encode(&s->core, &s->h->maps, s->pid, &data, &len);

	if (ret)
		return bgs_save_fail(s, ret, "encoding the core notes: %s",
				     strerror(-ret));
	ret = bgs_rs_put_attachment(w, "bgsnap.core", data, len);
	free(data);
	return ret;
}

/* Take the writer away from progress readers (they hold s->lock). */
static struct rs_writer *detach_writer(struct bgs_save *s)
{
	struct rs_writer *w;

	pthread_mutex_lock(&s->lock);
	w = s->writer;
	s->writer = NULL;
	pthread_mutex_unlock(&s->lock);
	return w;
}

static void writer_final_stats(struct bgs_save *s, const struct rs_writer *w)
{
	struct rs_writer_stats ws;

	bgs_rs_writer_stats(w, &ws);
	s->final.pages_zero = ws.zero_pages;
	s->final.bytes_written = ws.stored_bytes;
	s->final.raw_bytes = ws.raw_bytes;
	s->final.peak_buffer_bytes = ws.peak_buffer_bytes;
	s->final.cpu_compress_ns = ws.compress_ns;
	s->final.cpu_checksum_ns = ws.checksum_ns;
	s->final.compression_ratio =
		ws.stored_bytes ? (double)ws.raw_bytes / (double)ws.stored_bytes
				: 0.0;
}

static int commit(struct bgs_save *s)
{
	const struct bgsnap *h = s->h;
	struct rs_writer *w = detach_writer(s);
	int ret = 0;

	for (size_t i = 0; i < h->nattachments && !ret; i++)
		ret = bgs_rs_put_attachment(w, h->attachments[i].name,
					    h->attachments[i].data,
					    h->attachments[i].len);
	if (!ret)
		ret = write_stats_attachment(s, w);
	if (!ret && s->core.nthreads)
		ret = write_core_attachment(s, w);
	/* Where a reader finds the parent: a file name beside this one. */
	if (!ret && s->parent_name[0])
		ret = bgs_rs_put_attachment(w, "bgsnap.parent", s->parent_name,
					    strlen(s->parent_name));
	writer_final_stats(s, w);
	if (ret < 0) {
		bgs_rs_writer_abort(w);
		return ret;
	}
	return bgs_rs_writer_commit(w);
}

static void stop_monitor(struct bgs_save *s)
{
	bgs_monitor_stop(s->mon);
	s->h->monitor = NULL;
	s->mon = NULL;
}

/* Stop the fault thread, drop all protection, end the store. Every path
 * out of a save that armed anything comes through here. */
void bgs_save_teardown(struct bgs_save *s)
{
	struct bgs_monitor *m = s->mon;
	int result;

	/* The fault thread lets go of the save; tracking goes on, or the
	 * monitor stops: nothing protected any more, nobody blocked. */
	if (m && s->keep_tracking && !bgs_save_error(s)) {
		bgs_monitor_command(m, BGS_CMD_DETACH, NULL);
		/* A fault queued for the copier after its last look, on a
		 * page the scan saved meanwhile: the page stays protected
		 * for tracking, so its writer sleeps until it is served.
		 * Detached, the fault thread queues no more. */
		serve_faults(s);
	}
	result = bgs_save_error(s);
	if (m && (!s->keep_tracking || result))
		stop_monitor(s);
	if (s->writer) {
		if (result) {
			struct rs_writer *w = detach_writer(s);

			writer_final_stats(s, w);
			bgs_rs_writer_abort(w);
		} else {
			result = commit(s);
			if (result)
				bgs_save_write_failed(s, result);
		}
	}
	/* A rados:// target exists once its head is written, after all
	 * of the rest. */
	if (s->sink) {
		result = bgs_rados_sink_close(s->sink, result);
		s->sink = NULL;
	}
	/* Tracking is relative to this snapshot only if it exists. */
	if (m && s->keep_tracking && !result) {
		memcpy(m->base_id, s->id, sizeof(m->base_id));
		memcpy(m->base_name, s->name, sizeof(m->base_name));
		m->have_base = true;
	} else if (s->mon) {
		stop_monitor(s);
	}
	atomic_store(&s->t_end, bgs_now_ns());
	pthread_mutex_lock(&s->lock);
	s->finished = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

/* ---- the workers -------------------------------------------------------- */

static void start_workers(struct bgs_save *s)
{
	int ret;

	if (!s->threads)
		return;
	ret = bgs_workers_start(s, s->threads, &s->workers);
	if (ret)
		bgs_save_fail(s, ret, "starting %u compression threads: %s",
			      s->threads, strerror(-ret));
}

/* Every job in the file (unless the save failed), then the threads gone. */
static void stop_workers(struct bgs_save *s)
{
	if (!s->workers)
		return;
	collect_jobs(s, true);
	s->final.cpu_workers_ns = bgs_workers_stop(s->workers);
	s->workers = NULL;
}

void *bgs_copier_main(void *arg)
{
	struct bgs_save *s = arg;
	const uint64_t total = s->h->total_pages;

	atomic_store(&s->copier_tid, (pid_t)syscall(SYS_gettid));
	if (s->h->test_hooks.copier_poke)
		*s->h->test_hooks.copier_poke = 1;
	/* From here on a writer of the owner may wait on any put: none may
	 * wait for the disk (the scan asks bgs_rs_writer_ready first). */
	bgs_rs_writer_urgent(s->writer, !s->stop_the_world);
	start_workers(s);
	if (s->incremental && !s->parent)
		store_parent_runs(s);
	skip_zero_pages(s);
	while (!bgs_save_error(s) &&
	       atomic_load_explicit(&s->pages_done, memory_order_relaxed) <
		       total) {
		bgs_save_check_beat(s);
		if (!s->stop_the_world)
			serve_faults(s);
		collect_jobs(s, false);
		if (!bgs_save_error(s) &&
		    atomic_load_explicit(&s->pages_done, memory_order_relaxed) <
			    total &&
		    !bulk_step(s))
			copier_sleep(s);
	}
	/* Every page saved: from here on no writer waits for bgsnap. */
	bgs_save_check_beat(s);
	stop_workers(s);
	if (s->stop_the_world) {
		pthread_mutex_lock(&s->lock);
		atomic_store(&s->all_copied, true);
		pthread_cond_broadcast(&s->cond);
		pthread_mutex_unlock(&s->lock);
	}
	if (s->mon)
		s->final.cpu_fault_ns =
			bgs_monitor_cpu_ns(s->mon) - s->fault_cpu0;
	bgs_save_teardown(s);
	s->final.cpu_copier_ns = bgs_thread_cpu_ns();
	return NULL;
}
