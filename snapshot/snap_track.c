/* SPDX-License-Identifier: MIT */
/*
 * Tracking between snapshots, and rollback to the last one.
 *
 * A rollback writes back only the pages written since the snapshot — the
 * monitor's `written` bits — from the undo log (their content at the
 * instant, kept by whoever unprotected them) or from the snapshot file,
 * with the owner paused; then the fault thread protects them again
 * (BGS_CMD_REPROTECT), so tracking goes on from the same snapshot.
 */
#include "snap_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

BGSNAP_API int bgsnap_track_start(struct bgsnap *h)
{
	int r;

	r = bgs_snap_begin(h);
	if (r)
		return r;
	if (h->monitor) {
		bgs_snap_set_error(h, "already tracking");
		return -EBUSY;
	}
	if (h->target) {
		r = bgs_snap_target_current(h);
		if (!r)
			r = bgs_target_inject_prepare(h->target);
		if (!r)
			r = bgs_target_freeze(h->target);
		if (r) {
			bgs_snap_set_error(h, "%s", h->target->msg);
			return r;
		}
	}
	r = bgs_monitor_start(h, NULL, &h->monitor);
	if (h->target)
		bgs_target_thaw(h->target);
	if (!r)
		r = bgs_monitor_protect_all(h->monitor);
	if (r)
		bgsnap_track_stop(h);
	return r;
}

BGSNAP_API void bgsnap_track_stop(struct bgsnap *h)
{
	if (h->save || h->restore)
		return;
	bgs_monitor_stop(h->monitor);
	h->monitor = NULL;
}

BGSNAP_API int bgsnap_track_written(const struct bgsnap *h, uint64_t *pages)
{
	const struct bgs_monitor *m = h->monitor;
	uint64_t n = 0;

	if (!m)
		return -ENOENT;
	for (uint64_t w = 0; w < (h->total_pages + 63) / 64; w++)
		n += (uint64_t)__builtin_popcountll(
			atomic_load(&m->written[w]));
	*pages = n;
	return 0;
}

/* ---- rollback ------------------------------------------------------------ */

struct rollback {
	struct bgsnap *h;
	struct bgs_monitor *m;
	const char *path;	  /* the snapshot's file, if given ... */
	struct rs_reader *reader; /* ... opened when a page is not in memory */
	int fd;
	int open_error;
	uint64_t pages;
};

static int open_snapshot(struct rollback *rb);

/* Page @p's content at the snapshot instant, from memory or the file. */
static const uint8_t *content_of(struct rollback *rb,
				 const struct bgs_region *r, uint64_t p)
{
	struct bgs_monitor *m = rb->m;
	const uint32_t slot = m->undo_slot ? atomic_load(&m->undo_slot[p]) : 0;
	struct rs_diag diag = { 0 };
	const void *data;
	ssize_t i;

	if (slot)
		return m->undo_data + (size_t)(slot - 1) * BGS_PAGE_SIZE;
	if (!rb->reader && rb->path && !rb->open_error)
		rb->open_error = open_snapshot(rb);
	if (!rb->reader)
		return NULL;
	i = bgs_rs_find(rb->reader, (uint32_t)(r - rb->h->regions),
			p - r->first_page);
	if (i < 0 || bgs_rs_decode(rb->reader, (size_t)i, &data, &diag) != 0)
		return NULL;
	return (const uint8_t *)data +
	       (p - r->first_page -
		bgs_rs_extent(rb->reader, (size_t)i)->first) *
		       BGS_PAGE_SIZE;
}

static int write_back(struct rollback *rb, const struct bgs_region *r,
		      uint64_t p)
{
	const uint8_t *src = content_of(rb, r, p);
	const uint64_t addr = r->base + (p - r->first_page) * BGS_PAGE_SIZE;

	if (!src && rb->open_error)
		return rb->open_error; /* the message says why */
	if (!src) {
		bgs_snap_set_error(rb->h,
				   "region '%s': page 0x%" PRIx64 " was "
				   "not kept in memory%s",
				   r->name, addr,
				   rb->reader ? " and the file lacks it"
					      : ": name the snapshot's file");
		return BGSNAP_EPARENT;
	}
	if (rb->h->target)
		return bgs_target_write(rb->h->target, addr, src,
					BGS_PAGE_SIZE);
	memcpy((void *)(uintptr_t)addr, src, BGS_PAGE_SIZE);
	return 0;
}

static int roll_back_pages(struct rollback *rb)
{
	struct bgsnap *h = rb->h;

	for (size_t k = 0; k < h->nregions; k++) {
		const struct bgs_region *r = &h->regions[k];
		const uint64_t end = r->first_page + bgs_region_pages(r);

		if (!bgs_region_protected(r))
			continue;
		for (uint64_t p =
			     bgs_bit_next(rb->m->written, r->first_page, end);
		     p < end; p = bgs_bit_next(rb->m->written, p + 1, end)) {
			const int ret = write_back(rb, r, p);

			if (ret)
				return ret;
			atomic_fetch_and(&rb->m->written[p / 64],
					 ~(1ULL << (p % 64)));
			rb->pages++;
		}
	}
	return 0;
}

static int open_snapshot(struct rollback *rb)
{
	const char *path = rb->path;
	struct rs_diag diag = { 0 };
	int r;

	rb->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (rb->fd < 0) {
		bgs_snap_set_error(rb->h, "%s: %s", path, strerror(errno));
		return -errno;
	}
	r = bgs_rs_open(&rb->reader, rb->fd, &diag);
	if (r)
		bgs_snap_set_error(rb->h, "%s: %s", path, diag.msg);
	else if (memcmp(bgs_rs_info(rb->reader)->snapshot_id, rb->m->base_id,
			16)) {
		bgs_snap_set_error(rb->h, "%s is not the snapshot tracked from",
				   path);
		r = BGSNAP_EPARENT;
	}
	return r;
}

BGSNAP_API int bgsnap_rollback(struct bgsnap *h,
			       const struct bgsnap_rollback_opts *opts)
{
	struct bgsnap_rollback_opts o;
	struct rollback rb = { .h = h, .m = h->monitor, .fd = -1 };
	const uint64_t t0 = bgs_now_ns();
	int64_t n;
	int r = bgs_struct_in(&o, sizeof(o), opts);

	if (r)
		return r;
	opts = &o;
	rb.path = o.path;
	if (h->save || h->restore)
		return -EBUSY;
	if (!rb.m || !rb.m->have_base) {
		bgs_snap_set_error(h, "not tracking since a snapshot (save one "
				      "with BGSNAP_SAVE_KEEP_TRACKING)");
		return -ENOENT;
	}
	if (h->target)
		r = bgs_target_freeze(h->target);
	else if (opts->pause)
		r = opts->pause(opts->arg);
	if (!r) {
		r = roll_back_pages(&rb);
		/* Written back or not, protect what is writable again; when
		 * every page is back, the undo log is no longer needed. */
		n = bgs_monitor_command(
			rb.m, r ? BGS_CMD_REPROTECT : BGS_CMD_ROLLED_BACK,
			NULL);
		if (!r && n < 0)
			r = (int)n;
		if (h->target)
			bgs_target_thaw(h->target);
		else if (opts->resume)
			opts->resume(opts->arg);
	}
	if (rb.reader)
		bgs_rs_close(rb.reader);
	if (rb.fd >= 0)
		close(rb.fd);
	h->stats = (struct bgsnap_stats){
		.size = sizeof(h->stats),
		.elapsed_ns = bgs_now_ns() - t0,
		.pages_total = h->total_pages,
		.pages_changed = rb.pages,
	};
	return r;
}
