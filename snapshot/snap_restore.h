/* SPDX-License-Identifier: MIT */
/*
 * A restore in progress: shared by the eager restore (snap_restore.c) and
 * the lazy one (snap_lazy.c). Which thread owns each field is said on it.
 */
#ifndef BGS_SNAP_RESTORE_H
#define BGS_SNAP_RESTORE_H

#include "snap_internal.h"

#define BGS_FILL_MAX_PAGES 4096u /* the fill's largest chunk: 16 MiB */
#define BGS_FILL_MIN_PAGES 8u	 /* ... and its smallest, after a fault */

#define BGS_MAX_CHAIN	   64

/* An ancestor of an incremental snapshot: its region numbers differ. */
struct bgs_parent {
	int fd;
	struct rs_reader *reader; /* shared reads: decode_to only */
	uint32_t *region;	  /* child's region -> its region */
};

struct bgs_restore {
	struct bgsnap *h;		 /* regions read-only meanwhile */
	struct bgsnap_restore_opts opts; /* read-only */
	int fd;				 /* the store, read-only */
	bool own_fd;			 /* a spool bgsnap made */
	struct rs_reader *reader;	 /* shared reads: decode_to only */
	struct rs_rados *rados;		 /* a lazy one's, in RADOS, or NULL */
	const struct bgs_region **dest;	 /* per snapshot region */
	uint32_t *snap_region;		 /* per handle region */
	size_t max_record;		 /* bytes of the largest record
						 * of the whole chain */
	size_t *order;			 /* eager: the extents in file order */
	struct bgs_parent chain[BGS_MAX_CHAIN]; /* parent, grandparent ... */
	size_t nchain;
	struct bgs_first_error error; /* any thread */
	uint64_t t_start, t_resume;   /* the starting thread */
	_Atomic uint64_t t_end;

	/* Figures: any thread adds, any thread reads. */
	_Atomic uint64_t pages_done, pages_by_fault, pages_by_fill;
	_Atomic uint64_t pages_zero, pages_poisoned, bytes_read;
	_Atomic uint64_t pages_changed;

	/* Lazy only (snap_lazy.c). */
	struct bgs_uffd uffd;
	int stop_fd; /* eventfd: fault thread exits */
	pthread_t fault_thread, fill_thread;
	bool fault_started, fill_started; /* the starting thread */
	_Atomic uint8_t *placed;	  /* per extent: in place */
	_Atomic uint64_t *discarded;	  /* bit per handle page: the
						 * owner dropped it (REMOVE) */
	pthread_mutex_t events; /* the fault thread reads the uffd and marks
				 * discards with it, the fill places pages */
	bool events_init;
	_Atomic uint64_t faults_seen; /* fault thread: the fill backs
						 * off when it moves */
	uint8_t *zero;		      /* a huge page of zeroes */
	struct lazy *lazy;	      /* the threads' tools */
	struct bgs_hist latency;      /* fault thread */
	uint64_t faults;	      /* fault thread */
};

int bgs_restore_fail(struct bgs_restore *r, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Replace [addr, addr + len) of @g with zeroes cheaply: release the pages
 * (never-touched ones stay unpopulated). */
void bgs_restore_zero(const struct bgs_region *g, uint64_t addr, uint64_t len);

/* An ancestor found by bgs_restore_find_parent(). */
struct bgs_found_parent {
	int fd; /* open on it, read-only */
	struct rs_reader *reader;
	char path[4096]; /* where it was found */
};

/*
 * Find the parent of the incremental snapshot @child, read from
 * @child_path ("" for a stream: then the current directory is beside it),
 * the one way every reader does: the first of @cands whose snapshot id is
 * @child's parent id, else the file @child names for it (attachment
 * "bgsnap.parent", a bare file name) beside it, if it has that id.
 * Returns 0 with @p filled (the caller closes p->reader, then p->fd); 1
 * when it is nowhere, with why in @diag->msg (code BGSNAP_EPARENT); or
 * the error that keeps a file from being read as a snapshot, @diag->msg
 * naming it. Opens files only; any thread.
 */
int bgs_restore_find_parent(struct rs_reader *child, const char *child_path,
			    const char *const *cands, size_t ncands,
			    struct bgs_found_parent *p, struct rs_diag *diag);

/*
 * Decode pages [first, first + n) of the snapshot's region @region as the
 * chain from level @level up has them (a PARENT extent's pages) into @dst.
 * @tmp holds max_record bytes. Returns 0 or an error (message set).
 */
int bgs_restore_from_chain(struct bgs_restore *r, struct rs_decoder *dec,
			   uint8_t *tmp, size_t level, uint32_t region,
			   uint64_t first, uint64_t n, uint8_t *dst);

/* Open and check the store (a stream is spooled first) and its chain of
 * parents: r->h and r->opts set, r->fd -1. */
int bgs_restore_open(struct bgs_restore *r, const char *path, int fd);
void bgs_restore_free(struct bgs_restore *r);

/* Call @fn with every attachment of the snapshot, checksum verified, in
 * file order; its first non-zero return ends the walk and is returned. */
typedef int bgs_attachment_fn(void *arg, const char *name, const void *data,
			      size_t len);
int bgs_restore_each_attachment(struct bgs_restore *r, bgs_attachment_fn *fn,
				void *arg);
/* Hand every attachment but bgsnap's own back to the owner. */
int bgs_restore_attachments(struct bgs_restore *r);

/* snap_lazy.c: register, start the threads, return (owner runnable). */
int bgs_lazy_start(struct bgs_restore *r);
/* snap_lazy.c: wait for the fill to end and release everything. */
void bgs_lazy_join(struct bgs_restore *r);

#endif
