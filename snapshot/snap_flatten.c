/* SPDX-License-Identifier: MIT */
/*
 * Flatten: an incremental snapshot and its parents, written out as one
 * full snapshot. Same regions, same attachments (but the parent's name),
 * a new id; every page decoded (its checksums proved) and stored again.
 */
#include "snap_restore.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Every attachment but the link to a parent: the flat file has none. */
static int copy_attachment(void *arg, const char *name, const void *data,
			   size_t len)
{
	if (!strcmp(name, "bgsnap.parent"))
		return 0;
	return bgs_rs_put_attachment(arg, name, data, len);
}

static int copy_pages(struct bgs_restore *r, struct rs_writer *w,
		      struct rs_decoder *dec, uint8_t *buf, uint8_t *tmp)
{
	struct rs_diag diag = { 0 };

	for (size_t i = 0; i < bgs_rs_extent_count(r->reader); i++) {
		const struct rs_extent *e = bgs_rs_extent(r->reader, i);
		const int enc = bgs_rs_decode_to(r->reader, dec, i, buf, &diag);
		int ret = 0;

		if (enc < 0) {
			bgs_snap_set_error(r->h, "%s", diag.msg);
			return enc;
		}
		if (enc == RS_ENC_PARENT)
			ret = bgs_restore_from_chain(r, dec, tmp, 0, e->region,
						     e->first, e->npages, buf);
		if (ret) {
			bgs_snap_set_error(r->h, "%s", r->error.msg);
			return ret;
		}
		ret = enc == RS_ENC_ZERO
			      ? bgs_rs_put_zero(w, e->region, e->first,
						e->npages)
			      : bgs_rs_put_pages(w, e->region, e->first,
						 e->npages, buf);
		if (ret < 0)
			return ret;
	}
	return 0;
}

static int flatten(struct bgs_restore *r, const char *out)
{
	const size_t n = bgs_rs_region_count(r->reader);
	struct rs_writer_opts wo = { .nregions = n };
	struct rs_region *table = calloc(n ? n : 1, sizeof(*table));
	uint8_t *buf = malloc(2 * r->max_record + 1);
	struct rs_decoder *dec = NULL;
	struct rs_writer *w = NULL;
	const bool rados = bgs_rs_is_rados(out);
	int tmp = -1;
	int ret = table && buf ? bgs_rs_decoder_new(&dec) : -ENOMEM;

	for (size_t i = 0; i < n && table; i++)
		table[i] = *bgs_rs_region(r->reader, i);
	wo.regions = table;
	wo.no_replace = r->opts.flags & BGSNAP_FLATTEN_NO_REPLACE;
	/* Into RADOS: whole into a temporary file, then stored. */
	if (!ret && rados) {
		tmp = bgs_snap_rados_tmpfile();
		ret = tmp < 0 ? tmp : bgs_rs_writer_open_fd(&w, tmp, &wo);
	} else if (!ret) {
		ret = bgs_rs_writer_open_path(&w, out, &wo);
	}
	if (!ret)
		ret = bgs_restore_each_attachment(r, copy_attachment, w);
	if (!ret)
		ret = copy_pages(r, w, dec, buf, buf + r->max_record);
	if (w && !ret)
		ret = bgs_rs_writer_commit(w);
	else if (w)
		bgs_rs_writer_abort(w);
	if (!ret && rados) {
		char msg[256];

		ret = bgs_snap_rados_store(out, tmp, wo.no_replace, msg,
					   sizeof(msg));
		if (ret)
			bgs_snap_set_error(r->h, "writing %s: %s", out, msg);
	}
	if (tmp >= 0)
		close(tmp);
	if (ret && !r->h->errmsg[0])
		bgs_snap_set_error(r->h, "writing %s: %s", out,
				   bgsnap_strerror(ret));
	bgs_rs_decoder_free(dec);
	free(buf);
	free(table);
	return ret;
}

BGSNAP_API int bgsnap_flatten(struct bgsnap *h, const char *path,
			      const char *out,
			      const struct bgsnap_restore_opts *opts)
{
	struct bgs_restore *r;
	int ret;

	if (!path || !out)
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	ret = bgs_struct_in(&r->opts, sizeof(r->opts), opts);
	if (ret) {
		free(r);
		return ret;
	}
	r->h = h;
	r->opts.flags &= ~(unsigned)BGSNAP_RESTORE_LAZY;
	r->fd = -1;
	r->uffd.fd = -1;
	r->stop_fd = -1;
	h->errmsg[0] = '\0';
	ret = bgs_restore_open(r, path, -1);
	if (!ret)
		ret = flatten(r, out);
	bgs_restore_free(r);
	return ret;
}
