/* SPDX-License-Identifier: MIT */
/*
 * The public calls that need no session (version, error strings, the
 * capability probe), and those shared by a save and a restore (wait,
 * progress, statistics).
 */
#include "snap_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define STR2(x) #x
#define STR(x)	STR2(x)

BGSNAP_API int bgsnap_version(void)
{
	return BGSNAP_VERSION_NUMBER;
}

BGSNAP_API const char *bgsnap_version_string(void)
{
	return STR(BGSNAP_VERSION_MAJOR) "." STR(BGSNAP_VERSION_MINOR) "." STR(
		BGSNAP_VERSION_PATCH);
}

BGSNAP_API const char *bgsnap_strerror(int err)
{
	switch (err) {
	case BGSNAP_EBADMAGIC:
		return "not a bgsnap snapshot (bad magic)";
	case BGSNAP_EVERSION:
		return "unsupported snapshot format version";
	case BGSNAP_ETRUNCATED:
		return "snapshot is truncated";
	case BGSNAP_ECHECKSUM:
		return "checksum mismatch";
	case BGSNAP_EOVERLAP:
		return "pages stored more than once";
	case BGSNAP_EMISSING:
		return "pages missing from the snapshot";
	case BGSNAP_ERANGE:
		return "record out of range";
	case BGSNAP_ECORRUPT:
		return "malformed snapshot record";
	case BGSNAP_EPARENT:
		return "parent snapshot missing or not the right one";
	case BGSNAP_EMISMATCH:
		return "memory regions do not match the snapshot";
	case BGSNAP_EINCONSISTENT:
		return "a page lost its write protection during the save";
	case BGSNAP_EHAZARD:
		return "memory was unmapped, moved or discarded during the "
		       "save";
	case BGSNAP_EUNSAFE:
		return "memory cannot be write-protected safely";
	case BGSNAP_ETARGET:
		return "the target process went away";
	}
	if (err < 0 && err > -4096)
		return strerror(-err);
	return err >= 0 ? "success" : "unknown error";
}

BGSNAP_API int bgsnap_probe(struct bgsnap_capability *caps, size_t max)
{
	struct bgs_uffd_cap found[BGS_UFFD_MAX_CAPS];
	const int n = bgs_uffd_probe(found);
	size_t i;

	for (i = 0; i < (size_t)n && i < max; i++) {
		snprintf(caps[i].name, sizeof(caps[i].name), "%s",
			 found[i].name);
		snprintf(caps[i].detail, sizeof(caps[i].detail), "%s",
			 found[i].detail);
		caps[i].ok = found[i].ok;
		caps[i].required = found[i].required;
	}
	if (i < max) {
		char why[256];
		const bool rados = bgs_snap_rados_available(why, sizeof(why));

		snprintf(caps[i].name, sizeof(caps[i].name), "rados");
		snprintf(
			caps[i].detail, sizeof(caps[i].detail), "%s",
			rados ? "snapshots in Ceph (rados://POOL/NAME) through "
				"librados"
			      : why);
		caps[i].ok = rados;
		caps[i].required = 0;
		i++;
	}
	return (int)i;
}

/* ---- shared by a save and a restore ------------------------------------- */

BGSNAP_API int bgsnap_wait(struct bgsnap *h)
{
	if (h->save)
		return bgs_save_wait(h);
	if (h->restore)
		return bgs_restore_wait(h);
	if (h->result_pending) {
		h->result_pending = false;
		return h->result;
	}
	return -EINVAL;
}

static void progress_of(struct bgsnap *mh, struct bgsnap_progress *p)
{
	const struct bgsnap *h = mh;
	struct bgs_save *s;

	pthread_mutex_lock(&mh->live_lock);
	s = atomic_load(&mh->live);
	if (s) {
		struct rs_writer_stats ws = { 0 };

		pthread_mutex_lock(&s->lock);
		p->running = !s->finished;
		if (s->writer)
			bgs_rs_writer_stats(s->writer, &ws);
		pthread_mutex_unlock(&s->lock);
		p->pages_total = h->total_pages;
		p->pages_done = atomic_load(&s->pages_done);
		p->bytes_written = ws.stored_bytes;
		p->elapsed_ns = bgs_now_ns() - atomic_load(&s->t_start);
	} else if (atomic_load(&mh->live_restore)) {
		bgs_restore_progress(atomic_load(&mh->live_restore), p);
	} else {
		p->pages_total = h->stats.pages_total;
		p->pages_done = h->stats.pages_total;
		p->bytes_written = h->stats.bytes_written;
		p->elapsed_ns = h->stats.elapsed_ns;
	}
	pthread_mutex_unlock(&mh->live_lock);
}

BGSNAP_API void bgsnap_progress(const struct bgsnap *h,
				struct bgsnap_progress *p)
{
	struct bgsnap *mh = (struct bgsnap *)(uintptr_t)h;
	struct bgsnap_progress out = { .size = sizeof(out) };

	progress_of(mh, &out);
	bgs_struct_out(p, &out, sizeof(out));
}

BGSNAP_API int bgsnap_stats(const struct bgsnap *h, struct bgsnap_stats *st)
{
	if (h->save || h->restore)
		return -EBUSY;
	return bgs_struct_out(st, &h->stats, sizeof(h->stats));
}
