/* SPDX-License-Identifier: MIT */
/*
 * ramstore: the snapshot store (internal API). Format: ramstore/FORMAT.md.
 *
 * It stands alone: no uffd, no threads of its own. A writer or reader is
 * used by one thread at a time, except the calls marked "any thread".
 * Errors are negative errno or one of the RS_E* format codes below, whose
 * values are the public BGSNAP_E* codes (snapshot/ asserts they match).
 * The first error of a writer sticks: every later call returns it.
 */
#ifndef BGS_RAMSTORE_H
#define BGS_RAMSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sched.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

/* The CPU time of the calling thread, in nanoseconds: what the save's
 * stage breakdown is counted in. */
static inline uint64_t bgs_thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * The stage breakdown is sampled. Reading the thread's CPU clock is a
 * system call (0.55 us on this machine kind, against 22 ns for the
 * vDSO's monotonic clock), and at six reads per 32 KiB record it cost a
 * tenth of a save's CPU. So one call of a stage in BGS_STAGE_EVERY,
 * picked at random (not every Nth, which could fall in step with a
 * pattern of the calls), is timed and counts for that many, less the
 * cost of the clock read itself that each timed interval holds. Over the
 * tens of thousands of records of a GiB the estimate is within a few per
 * cent; the threads' total CPU time is read exactly.
 *
 *	uint64_t t = bgs_stage_start(&seed);	(0: not timed this time)
 *	...stage A...
 *	t = bgs_stage_lap(&a_ns, t);
 *	...stage B...
 *	bgs_stage_lap(&b_ns, t);
 */
#define BGS_STAGE_EVERY 16u

static inline uint64_t bgs_stage_start(uint32_t *seed)
{
	*seed = *seed * 1664525u + 1013904223u; /* an LCG: its top bits */
	return *seed >> 28 == 0 ? bgs_thread_cpu_ns() : 0;
}

/* What one read of the clock costs, measured once. */
uint64_t bgs_stage_clock_ns(void);

/* Count the stage timed since @t0 into @acc; the time now, or 0. */
static inline uint64_t bgs_stage_lap(uint64_t *acc, uint64_t t0)
{
	uint64_t now, ns;

	if (!t0)
		return 0;
	now = bgs_thread_cpu_ns();
	ns = now - t0;
	ns = ns > bgs_stage_clock_ns() ? ns - bgs_stage_clock_ns() : 0;
	*acc += ns * BGS_STAGE_EVERY;
	return now;
}

enum {
	RS_EBADMAGIC = -4100,  /* not a bgsnap snapshot */
	RS_EVERSION = -4101,   /* format version not supported */
	RS_ETRUNCATED = -4102, /* the file ends too early */
	RS_ECHECKSUM = -4103,  /* a checksum does not match */
	RS_EOVERLAP = -4104,   /* a page is stored more than once */
	RS_EMISSING = -4105,   /* a page of a region is not stored */
	RS_ERANGE = -4106,     /* a record points outside its region */
	RS_ECORRUPT = -4107,   /* a malformed record or field */
};

/* Memory kinds of a region (stored in the file; values are stable). */
enum rs_kind {
	RS_KIND_ANON = 1,	  /* private anonymous, 4 KiB pages */
	RS_KIND_ANON_THP = 2,	  /* private anonymous with THP */
	RS_KIND_SHMEM = 3,	  /* memfd / shmem / tmpfs, shared */
	RS_KIND_HUGETLB = 4,	  /* hugetlbfs */
	RS_KIND_FILE_PRIVATE = 5, /* private file mapping (copied stopped) */
	RS_KIND_UNSAVED = 6,	  /* recorded by name only: no pages */
};

#define RS_NAME_MAX	  1023	      /* bytes of a region/attachment name */
#define RS_ATTACHMENT_MAX (64u << 20) /* bytes of one attachment */
#define RS_RECORD_MAX_PAGES                                                    \
	512 /* 4 KiB pages in one stored record,
					  * except a huge page, kept whole */
#define RS_MAX_REGIONS 65536

struct rs_region {
	char name[RS_NAME_MAX + 1]; /* unique in a snapshot, NUL-terminated */
	uint64_t base;		    /* address when saved */
	uint64_t length;	    /* bytes, a multiple of page_size */
	uint32_t page_size;	    /* 4096, or the huge page size (hugetlb) */
	uint16_t kind;		    /* enum rs_kind */
	uint16_t prot;		    /* PROT_* bits when saved, informational */
};

/* Where an error was found, for a message that names it. */
struct rs_diag {
	int code;	 /* the error returned */
	uint64_t offset; /* file offset of the offending structure */
	char msg[256];	 /* one line, e.g. "record at offset 8192 (region
			  * 'ram', pages 64..127): data checksum mismatch" */
};

/* ---- writer -------------------------------------------------------------- */

enum rs_compression {
	RS_COMP_LZ4 = 0, /* default */
	RS_COMP_NONE = 1,
};

struct rs_writer_opts {
	enum rs_compression compression;
	int lz4_acceleration;	 /* 1 = LZ4 default; higher: faster, larger */
	size_t buffer_budget;	 /* bytes of write buffers; 0: 64 MiB
				   * (at least two of the largest records) */
	uint64_t overflow_pages; /* how many pages urgent puts may hold
				   * beyond the budget while the disk is
				   * behind (address space reserved, memory
				   * used only as needed); 0: none, they
				   * wait like any other */
	uint8_t snapshot_id[16]; /* all zero: a random one is made */
	uint8_t parent_id[16];	 /* all zero: not incremental */
	const struct rs_region *regions; /* the table, fixed at open */
	size_t nregions;
	bool sync_io;	 /* write(2) in the caller instead of io_uring (the
		       * fallback anyway where io_uring is unavailable) */
	bool no_replace; /* path mode: -EEXIST at commit rather than
			  * replace a file already at the path */
	bool format_1_0; /* tests only: write format 1.0 (no stored
			  * checksums), which readers must go on reading */
	const cpu_set_t *cpus; /* where io_uring's workers may run; NULL:
				* anywhere. Where they cannot be pinned,
				* the caller's thread writes instead. */
	/* With io_uring: no write completing for this long while writes
	 * are in flight fails the store with -ETIMEDOUT (0: no limit). */
	uint64_t max_stall_ns;
};

struct rs_writer;

/*
 * Create the store at @path: a temporary file beside it (0600, O_EXCL,
 * O_NOFOLLOW), renamed over @path only by a successful commit. A symlink
 * at @path is refused (-ELOOP). The header and region table are written
 * first, so a reader of a pipe knows the regions before any page.
 */
int bgs_rs_writer_open_path(struct rs_writer **w, const char *path,
			    const struct rs_writer_opts *o);
/* The same onto @fd (a file, or a pipe: never seeks). The caller keeps
 * ownership of @fd; commit does not close it. */
int bgs_rs_writer_open_fd(struct rs_writer **w, int fd,
			  const struct rs_writer_opts *o);
/* The same into @sink (rs_wqueue.h: an object store), written straight
 * from the writer's buffers. The commit waits until all of it is stored;
 * what it then means is the sink's business (a head to write). */
struct rs_wq_sink;
int bgs_rs_writer_open_sink(struct rs_writer **w, const struct rs_wq_sink *sink,
			    const struct rs_writer_opts *o);

/*
 * Store @npages pages of region @region starting at page @first (counted in
 * 4 KiB pages from the region's start), copying them out of @src. When this
 * returns, @src is no longer referenced. All-zero pages cost no data. May
 * wait for buffer space (back-pressure). A huge page of a hugetlb region is
 * never split across records: @first and @npages must be multiples of it.
 */
int bgs_rs_put_pages(struct rs_writer *w, uint32_t region, uint64_t first,
		     uint64_t npages, const void *src);
/*
 * Encoding apart from writing, for compression on other threads: an
 * encoder turns runs of pages, @max_pages in all, into their records (zero
 * runs found, lz4 or a copy, both checksums) in memory of its own; the
 * writer's thread then appends them all with bgs_rs_put_encoded(), as
 * bgs_rs_put_pages() would have, and the encoder is empty again. One
 * thread uses an encoder at a time; encoding only reads the writer's
 * settings and region table, fixed at open, so it runs beside the
 * writer's own puts.
 */
struct rs_encoder;
int bgs_rs_encoder_new(struct rs_encoder **e, const struct rs_writer *w,
		       uint64_t max_pages);
void bgs_rs_encoder_free(struct rs_encoder *e);
int bgs_rs_encode(struct rs_encoder *e, uint32_t region, uint64_t first,
		  uint64_t npages, const void *src);
/* The writer's thread: append what @e holds; @e is empty after. */
int bgs_rs_put_encoded(struct rs_writer *w, struct rs_encoder *e);
/* Drop what @e holds (an encoding that failed half way). */
void bgs_rs_encoder_clear(struct rs_encoder *e);

/*
 * Puts of pages a writer of the owner waits on: from bgs_rs_writer_urgent(w,
 * true) to (w, false), puts never wait for the disk. When the buffers are
 * full, their records go to the overflow (up to overflow_pages pages;
 * past it, they wait like any other).
 */
void bgs_rs_writer_urgent(struct rs_writer *w, bool urgent);
/* Would a put of @npages pages be taken now, without waiting? Never
 * waits itself: reaps finished writes and starts pending ones. */
bool bgs_rs_writer_ready(struct rs_writer *w, uint64_t npages);
/* A descriptor that polls readable when a write finishes (then
 * bgs_rs_writer_ready may change its mind), or -1: writes are
 * synchronous, there is nothing to wait for. */
int bgs_rs_writer_wait_fd(const struct rs_writer *w);
/* Store a run known to be zero without reading it (never-populated). */
int bgs_rs_put_zero(struct rs_writer *w, uint32_t region, uint64_t first,
		    uint64_t npages);
/* Store a run as "same as in the parent snapshot" (incremental). */
int bgs_rs_put_parent(struct rs_writer *w, uint32_t region, uint64_t first,
		      uint64_t npages);
/* An opaque named blob (device state, statistics ...), at most
 * RS_ATTACHMENT_MAX bytes. Names starting with "bgsnap." are bgsnap's. */
int bgs_rs_put_attachment(struct rs_writer *w, const char *name,
			  const void *data, size_t len);

/* Write index and footer, reap every write, fsync, rename, fsync the
 * directory. Frees @w whatever the result. */
int bgs_rs_writer_commit(struct rs_writer *w);
/* Give up: wait for writes in flight, remove the temporary file, free. */
void bgs_rs_writer_abort(struct rs_writer *w);

struct rs_writer_stats {
	uint64_t pages;	       /* pages stored, all encodings */
	uint64_t zero_pages;   /* of which all zero */
	uint64_t raw_bytes;    /* bytes of non-zero page data handed in */
	uint64_t stored_bytes; /* bytes of the store so far, written or
				 * queued in the buffer pool */
	uint64_t records;
	uint64_t peak_buffer_bytes;   /* high-water mark of the buffer pool,
				     * overflow included */
	uint64_t peak_overflow_bytes; /* of the overflow alone */
	/* CPU time of the putting thread (nanoseconds) in lz4, and in the
	 * checksums of raw and stored bytes. */
	uint64_t compress_ns, checksum_ns;
};
/* Any thread; the figures are each exact, not mutually atomic. */
void bgs_rs_writer_stats(const struct rs_writer *w, struct rs_writer_stats *s);
/* Records appended so far, and the pages of those appended after the
 * first @since of them (the putting thread's own count). */
uint64_t bgs_rs_writer_records(const struct rs_writer *w);
uint64_t bgs_rs_writer_pages_since(const struct rs_writer *w, uint64_t since);

/*
 * lz4 alone on @len bytes at @src, in blocks of a record's most pages, the
 * way the writer compresses them with acceleration @accel: the calling
 * thread's CPU nanoseconds it took, and the bytes it would store (a block
 * lz4 cannot shrink counts raw). The floor a save's compression is read
 * against, in the unit a save's stages are counted in: CPU time, not the
 * wall clock, which on a shared host also counts other tasks' turns.
 */
int bgs_rs_measure_lz4(const void *src, size_t len, int accel, uint64_t *ns,
		       uint64_t *stored);

/* Does @target name a snapshot in a Ceph RADOS pool (rados://POOL/NAME,
 * rs_rados.h) rather than a file? */
static inline bool bgs_rs_is_rados(const char *target)
{
	return target && !strncmp(target, "rados://", 8);
}

/* ---- reader -------------------------------------------------------------- */

enum rs_encoding {
	RS_ENC_ZERO = 0,
	RS_ENC_RAW = 1,
	RS_ENC_LZ4 = 2,
	RS_ENC_PARENT = 3,
};

struct rs_info {
	uint16_t version_major, version_minor;
	uint32_t page_size; /* 4096 */
	uint8_t snapshot_id[16];
	uint8_t parent_id[16]; /* all zero: a full snapshot */
	uint64_t created_ns;   /* CLOCK_REALTIME */
	char host[65];
	char kernel[65];
	uint64_t file_size;
	uint64_t nrecords;
};

/* One stored record, as the index lists it. */
struct rs_extent {
	uint32_t region;
	uint8_t encoding; /* enum rs_encoding */
	uint64_t first;	  /* first 4 KiB page in the region */
	uint64_t npages;
	uint64_t offset;     /* file offset of the record header */
	uint32_t stored_len; /* payload bytes */
};

struct rs_reader;

/*
 * Open a complete store on a seekable @fd (kept by the caller) and
 * validate header, footer, index and region table before anything else;
 * record payloads are checked when decoded (or by bgs_rs_verify).
 * On error, @diag (if not NULL) says what and where.
 */
int bgs_rs_open(struct rs_reader **r, int fd, struct rs_diag *diag);
void bgs_rs_close(struct rs_reader *r);

/*
 * Bytes of a store that is not a file (a snapshot in RADOS): read(ctx,
 * buf, len, off) gives exactly @len bytes at @off, 0, or an error
 * (RS_ETRUNCATED past the end); it is called from several threads at
 * once (decoders, bgs_rs_decode_to). The reader opened on it reads only
 * what it needs: header, footer, region table and index at open, then
 * each record when it is decoded. bgs_rs_verify needs a file.
 */
struct rs_source {
	int (*read)(void *ctx, void *buf, size_t len, uint64_t off);
	void *ctx;
	uint64_t size; /* bytes of the store */
};
int bgs_rs_open_source(struct rs_reader **r, const struct rs_source *src,
		       struct rs_diag *diag);

const struct rs_info *bgs_rs_info(const struct rs_reader *r);
size_t bgs_rs_region_count(const struct rs_reader *r);
const struct rs_region *bgs_rs_region(const struct rs_reader *r, size_t i);
size_t bgs_rs_attachment_count(const struct rs_reader *r);
/* Name and size of attachment @i; bgs_rs_attachment_read copies it into a
 * buffer of at least *@len bytes, checksum verified. */
int bgs_rs_attachment_info(const struct rs_reader *r, size_t i,
			   const char **name, size_t *len);
int bgs_rs_attachment_read(struct rs_reader *r, size_t i, void *buf,
			   struct rs_diag *diag);

/* The index, sorted by (region, first). */
size_t bgs_rs_extent_count(const struct rs_reader *r);
const struct rs_extent *bgs_rs_extent(const struct rs_reader *r, size_t i);
/* The extent holding page @page of @region, or -1. O(log n). */
ssize_t bgs_rs_find(const struct rs_reader *r, uint32_t region, uint64_t page);

/*
 * Decode extent @i (checksums of header and data verified): *@data points
 * to its npages * 4 KiB bytes, valid until the next decode on @r (a small
 * cache of recently decoded records makes neighbouring faults cheap). ZERO
 * gives zeroes. PARENT returns 1 with *@data NULL: the caller looks in the
 * parent snapshot. Otherwise returns 0.
 */
int bgs_rs_decode(struct rs_reader *r, size_t i, const void **data,
		  struct rs_diag *diag);

/*
 * Decode extent @i straight into @dst (its npages * 4 KiB bytes), header
 * and data checksums verified; @dst is untouched for ZERO and PARENT
 * extents, whose records are not even read (the index, checked at open,
 * says all there is; bgs_rs_verify checks their headers).
 * Returns the extent's encoding (enum rs_encoding) or an error.
 * Unlike bgs_rs_decode this only reads @r: several threads may decode at
 * once, each with a decoder of its own (it holds the scratch buffer).
 */
struct rs_decoder;
int bgs_rs_decoder_new(struct rs_decoder **dec);
void bgs_rs_decoder_free(struct rs_decoder *dec);
int bgs_rs_decode_to(const struct rs_reader *r, struct rs_decoder *dec,
		     size_t i, void *dst, struct rs_diag *diag);
/* The same from @rec, the record's bytes (bgs_rs_rechdr_len() +
 * stored_len, from the extent's offset) the caller read, with other
 * records, in one large read. */
int bgs_rs_decode_from(const struct rs_reader *r, size_t i, const void *rec,
		       void *dst, struct rs_diag *diag);
/* Bytes of a record header in this store: 56 (1.1) or 48 (1.0). */
uint32_t bgs_rs_rechdr_len(const struct rs_reader *r);

enum rs_verify_flags {
	/* Decode every page record too and check its pages' checksum, as a
	 * restore does. Without it, a 1.1 store's records are checked as
	 * stored (every byte, nothing decoded); a 1.0 store, which has no
	 * stored checksums, is always decoded. */
	RS_VERIFY_DEEP = 1,
};

/*
 * Check everything: every record's header checksum, its payload's
 * checksums (see @flags, enum rs_verify_flags), that every page of every
 * saved region is covered exactly once, that the index matches the
 * records. Reads the file sequentially with large reads. @progress (may
 * be NULL) is called with bytes checked so far.
 */
int bgs_rs_verify(struct rs_reader *r, unsigned flags, struct rs_diag *diag,
		  void (*progress)(void *arg, uint64_t done, uint64_t total),
		  void *arg);

/* ---- sequential decoding from a stream (pipe, no index) -------------- */

struct rs_stream;

/* Read and check the header and region table from @fd (not seeked). */
int bgs_rs_stream_open(struct rs_stream **s, int fd, struct rs_diag *diag);

/* Attachments a copied stream may carry in all (bgs_rs_stream_open_tee). */
#define RS_STREAM_ATTACH_MAX (1ULL << 30)
/*
 * The same, copying every byte read from @fd to @tee as it comes, for a
 * stream kept as a file: page records are checked as stored, not
 * decoded, and no more bytes are read than a store of the regions its
 * header declares may have (each page in a record of its own, at most
 * RS_STREAM_ATTACH_MAX bytes of attachments, the index, the footer):
 * beyond, RS_ECORRUPT. A signal interrupting a read ends it with -EINTR.
 */
int bgs_rs_stream_open_tee(struct rs_stream **s, int fd, int tee,
			   struct rs_diag *diag);
void bgs_rs_stream_close(struct rs_stream *s);
const struct rs_info *bgs_rs_stream_info(const struct rs_stream *s);
size_t bgs_rs_stream_region_count(const struct rs_stream *s);
const struct rs_region *bgs_rs_stream_region(const struct rs_stream *s,
					     size_t i);

struct rs_item {
	enum { RS_ITEM_PAGES, RS_ITEM_ATTACHMENT } type;
	/* RS_ITEM_PAGES */
	uint32_t region;
	uint8_t encoding;
	uint64_t first, npages;
	/* both: decoded bytes (npages * 4 KiB, or the attachment), valid
	 * until the next call; NULL for ZERO and PARENT pages */
	const void *data;
	size_t len;
	const char *name; /* RS_ITEM_ATTACHMENT */
};

/*
 * The next item, checksums verified. Returns 1 with an item, 0 at a
 * clean end (index and footer read and checked, and every page of every
 * region seen exactly once), or an error. The store must be the end of
 * the stream: the call that reaches the footer reads on to end-of-file.
 */
int bgs_rs_stream_next(struct rs_stream *s, struct rs_item *item,
		       struct rs_diag *diag);

#endif /* BGS_RAMSTORE_H */
