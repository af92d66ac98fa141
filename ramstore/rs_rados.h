/* SPDX-License-Identifier: MIT */
/*
 * A snapshot in a Ceph RADOS pool, named rados://POOL/NAME, through
 * librados (built only where librados is installed: BGSNAP_HAVE_RADOS).
 *
 * Layout (FORMAT.md, "A snapshot in RADOS"): the bytes of the snapshot,
 * exactly those a snapshot file holds, cut into data objects of
 * RS_RADOS_OBJECT bytes named NAME.<upload>.<index>, and a head object
 * NAME that names the upload, the size and every data object's checksum.
 * The head is written last, in one write_full, which RADOS applies whole
 * or not at all: a reader, who starts from the head, never sees half a
 * snapshot, the same promise as a file's temporary name and rename. The
 * data of an upload that failed or died is named by no head.
 *
 * One thread uses a handle at a time.
 */
#ifndef BGS_RS_RADOS_H
#define BGS_RS_RADOS_H

#include "ramstore.h"

#include <sched.h>
#include <stdbool.h>
#include <stdint.h>

#define RS_RADOS_OBJECT (4u << 20) /* bytes of a data object */
#define RS_RADOS_DEPTH	8u	   /* data objects in flight at once */

/* Can librados be loaded (it is, on first use)? If not, @why (may be
 * NULL) says why. */
bool bgs_rs_rados_available(char *why, size_t len);

/* Which cluster, as the rados command chooses it: NULL fields take
 * librados's defaults (CEPH_CONF, then /etc/ceph/ceph.conf; client.admin;
 * CEPH_ARGS). */
struct rs_rados_cfg {
	const char *conf;      /* a ceph.conf */
	const char *id;	       /* the client's id: "bgsnap" is client.bgsnap */
	unsigned op_timeout_s; /* an operation that takes longer fails
				* (-ETIMEDOUT) instead of waiting for an OSD
				* that is down; 0: 30 s */
};

struct rs_rados;

/* Connect for @target (rados://POOL/NAME). On error here and below, @diag
 * says why in one line, without the target (the caller names it). */
int bgs_rs_rados_open(struct rs_rados **r, const char *target,
		      const struct rs_rados_cfg *cfg, struct rs_diag *diag);
/* Connect for a whole pool, @target rados://POOL (gc, a kept
 * connection). */
int bgs_rs_rados_open_pool(struct rs_rados **r, const char *target,
			   const struct rs_rados_cfg *cfg,
			   struct rs_diag *diag);
/* A handle for @target (rados://POOL/NAME, or rados://POOL with
 * @pool_only) on the connection of @with, which must be to the same pool:
 * no connect, no configuration read. The connection lasts as long as the
 * last handle on it. Handles may then be used by different threads, one
 * thread per handle. */
int bgs_rs_rados_open_shared(struct rs_rados **r, const char *target,
			     bool pool_only, const struct rs_rados *with,
			     struct rs_diag *diag);
/* The pool of @r. */
const char *bgs_rs_rados_pool(const struct rs_rados *r);
void bgs_rs_rados_close(struct rs_rados *r);
/* What an error of librados's means here, in words (into @buf). */
const char *bgs_rs_rados_why(const struct rs_rados *r, int err, char *buf,
			     size_t len);
/* Is there a snapshot under the name (its head)? 1, 0 or -errno. */
int bgs_rs_rados_exists(struct rs_rados *r);

/*
 * Storing: an upload's data objects, then its head. Nothing is visible
 * under the name until bgs_rs_rados_publish(); on error, the caller still
 * calls bgs_rs_rados_discard().
 *
 * bgs_rs_rados_upload_begin() names a new upload and takes its lease,
 * which tells gc the upload is alive; a thread renews it until the end.
 * That thread runs on @cpus (NULL: anywhere). The upload's first failure,
 * whichever thread meets it (a write, the lease), calls @on_failure(@arg)
 * if not NULL, on that thread, with no lock held.
 */
int bgs_rs_rados_upload_begin(struct rs_rados *r, const cpu_set_t *cpus,
			      void (*on_failure)(void *arg), void *arg,
			      struct rs_diag *diag);
/*
 * Start storing the @len bytes at @buf as the snapshot's bytes from @pos
 * on: pieces come in order (@pos is what came before) and never cross
 * the end of a data object. librados has copied @buf when this returns.
 * Once the piece is stored, or failed, @stored(@ticket, 0 or -errno) is
 * called, on a thread of librados's. Returns 0, or -errno and @stored is
 * not called. The first failure fails the whole upload: every later put
 * returns it.
 */
int bgs_rs_rados_put(struct rs_rados *r, const void *buf, size_t len,
		     uint64_t pos, void (*stored)(void *ticket, int res),
		     void *ticket);
/* Every put has been stored (each @stored called): stop renewing the
 * lease, and say whether the upload failed. */
int bgs_rs_rados_upload_end(struct rs_rados *r, struct rs_diag *diag);
/* The upload's first failure and what it says (into @diag if not NULL),
 * or 0 if none is known yet. Any thread. */
int bgs_rs_rados_failure(struct rs_rados *r, struct rs_diag *diag);
/* All of it at once: begin, what @fd gives until its end (a file, read
 * from where it stands), RS_RADOS_DEPTH data objects in flight, end. */
int bgs_rs_rados_upload(struct rs_rados *r, int fd, struct rs_diag *diag);
/* Write the head: the upload becomes the snapshot under the name (the one
 * there before, if any, is replaced and its data objects removed). With
 * @exclusive, -EEXIST instead if there is one: atomically, in one RADOS
 * operation. */
int bgs_rs_rados_publish(struct rs_rados *r, bool exclusive,
			 struct rs_diag *diag);
/* Remove the data objects of an upload that will not be published. */
void bgs_rs_rados_discard(struct rs_rados *r);

/*
 * Read the snapshot into @fd (a file, written with pwrite from offset 0),
 * its data objects RS_RADOS_DEPTH at a time, each checked against the
 * head's checksum before a byte of it is written: a damaged or missing
 * object is an error that names it, and nothing after it is written.
 */
int bgs_rs_rados_download(struct rs_rados *r, int fd, struct rs_diag *diag);

/*
 * Read the snapshot in place, for bgs_rs_open_source() (a lazy restore):
 * a record-sized read (4 to 512 KiB) in or next to the data object of
 * its thread's last one takes the whole object, checked against the
 * head, and keeps a few of them; any other reads only its own bytes (the records' checksums
 * cover them). @r must outlive the reader.
 */
int bgs_rs_rados_source(struct rs_rados *r, struct rs_source *src,
			struct rs_diag *diag);
/* Bytes of data objects read in place through @r so far, whole objects
 * read ahead included. */
uint64_t bgs_rs_rados_bytes_read(const struct rs_rados *r);

/* Call @each with the name of every object of the pool of @r that starts
 * with @prefix and may be a snapshot's head (none of an upload's data
 * objects, leases, gc's own), in no order; a non-zero return stops it and
 * is returned. */
int bgs_rs_rados_list(struct rs_rados *r, const char *prefix,
		      int (*each)(void *arg, const char *name), void *arg,
		      struct rs_diag *diag);

/* An upload that no head names, as bgs_rs_rados_gc() found it. */
enum rs_orphan_state {
	RS_ORPHAN,	  /* removed, or would be (dry run) */
	RS_ORPHAN_BUSY,	  /* a live save's lease holds: left alone */
	RS_ORPHAN_UNSURE, /* its head or lease cannot be read: left alone */
};

struct rs_orphan {
	const char *name;   /* the snapshot name it was stored for */
	const char *upload; /* its id, 32 hex digits */
	uint64_t objects;   /* its data objects and its lease */
	uint64_t bytes;
	enum rs_orphan_state state;
	int error; /* RS_ORPHAN: its removal failed (-errno, left in part);
		    * RS_ORPHAN_UNSURE: why it could not be told */
};

/*
 * Find the orphans in the pool of @r (opened with bgs_rs_rados_open_pool):
 * the objects of uploads that no head names and no live save holds (its lease)
 * (crashed saves, data whose removal failed), and remove them unless
 * @dry_run, each upload's lease first. Calls @each for every upload no
 * head names, busy and unsure ones included; a non-zero return stops the
 * walk and is returned. Heads, and the uploads they name, are never
 * touched.
 */
int bgs_rs_rados_gc(struct rs_rados *r, bool dry_run,
		    int (*each)(void *arg, const struct rs_orphan *o),
		    void *arg, struct rs_diag *diag);

#endif /* BGS_RS_RADOS_H */
