/* SPDX-License-Identifier: MIT */
/*
 * bgsnap: point-in-time snapshots of live memory, saved in the background.
 *
 * This is the only public header of libbgsnap.
 *
 * Conventions
 *  - Functions return >= 0 on success and a negative errno or a negative
 *    BGSNAP_E* code (below -4095) on failure; bgsnap_strerror() names both.
 *  - A handle is not thread-safe except where a function says so.
 *  - Every struct passed to or filled by the library (options, progress,
 *    statistics, descriptions) starts with `size_t size`, which the caller
 *    sets to sizeof the struct it was built with, e.g.
 *        struct bgsnap_stats st = { .size = sizeof(st) };
 *    Structs only ever grow at the end, so the size tells the library which
 *    fields the caller has, in both directions:
 *      - an older caller (a smaller size): the library reads only @size
 *        bytes of its options, the fields it lacks taking their defaults
 *        (zero), and writes only @size bytes of its results;
 *      - a newer caller (a larger size): the library reads the fields it
 *        knows; every byte beyond them must be zero, else the call fails
 *        with -E2BIG (the caller asked for something this library cannot
 *        do), as the kernel's clone3() and openat2() do; in results, the
 *        bytes beyond what it knows are zeroed.
 *    A size below sizeof(size_t) (a struct left zeroed) is -EINVAL; a
 *    function that cannot fail leaves such a struct untouched. An options
 *    pointer may still be NULL for all defaults. struct bgsnap_capability
 *    is the one exception: it never grows; new facts are new entries.
 */
#ifndef BGSNAP_H
#define BGSNAP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(BGSNAP_BUILDING)
#define BGSNAP_API __attribute__((visibility("default")))
#else
#define BGSNAP_API
#endif

#define BGSNAP_VERSION_MAJOR 0
#define BGSNAP_VERSION_MINOR 1
#define BGSNAP_VERSION_PATCH 0
#define BGSNAP_VERSION_NUMBER                                                  \
	(BGSNAP_VERSION_MAJOR * 10000 + BGSNAP_VERSION_MINOR * 100 +           \
	 BGSNAP_VERSION_PATCH)

/* The library's version number, e.g. 100 for 0.1.0; may differ from the
 * header's BGSNAP_VERSION_NUMBER when linked dynamically. Any thread. */
BGSNAP_API int bgsnap_version(void);
/* The same as a string, e.g. "0.1.0". Static storage. Any thread. */
BGSNAP_API const char *bgsnap_version_string(void);

/*
 * Errors specific to bgsnap. Everything else is a negative errno.
 */
enum bgsnap_error {
	BGSNAP_EBADMAGIC = -4100,     /* not a bgsnap snapshot */
	BGSNAP_EVERSION = -4101,      /* format version not supported */
	BGSNAP_ETRUNCATED = -4102,    /* the file ends too early */
	BGSNAP_ECHECKSUM = -4103,     /* a checksum does not match */
	BGSNAP_EOVERLAP = -4104,      /* a page is stored more than once */
	BGSNAP_EMISSING = -4105,      /* a page of a region is not stored */
	BGSNAP_ERANGE = -4106,	      /* a record points outside its region */
	BGSNAP_ECORRUPT = -4107,      /* a malformed record or field */
	BGSNAP_EPARENT = -4108,	      /* the parent snapshot is missing/wrong */
	BGSNAP_EMISMATCH = -4109,     /* regions differ from the snapshot's */
	BGSNAP_EINCONSISTENT = -4110, /* a page lost protection while saved */
	BGSNAP_EHAZARD = -4111,	      /* memory was unmapped/moved/dropped */
	BGSNAP_EUNSAFE = -4112,	      /* memory that cannot be protected */
	BGSNAP_ETARGET = -4113,	      /* the target process went away */
};

/* A one-line description of @err (negative errno or BGSNAP_E*).
 * Static storage; any thread. */
BGSNAP_API const char *bgsnap_strerror(int err);

/*
 * Capabilities of this kernel and process, for a snapshot: one entry per
 * thing bgsnap uses, each with a one-line explanation that says how to get
 * it when it is missing.
 */
struct bgsnap_capability {
	/* Fixed: it never grows (no size field); what a later library
	 * probes comes as more entries. */
	char name[32];
	int ok;		  /* 1 available, 0 missing */
	int required;	  /* 1 if saving anonymous memory needs it */
	char detail[256]; /* one line */
};

#define BGSNAP_MAX_CAPABILITIES 32

/*
 * Probe what is available, filling up to @max entries of @caps.
 * Returns the number of entries filled (the probe has at most
 * BGSNAP_MAX_CAPABILITIES), or a negative errno. Any thread.
 */
BGSNAP_API int bgsnap_probe(struct bgsnap_capability *caps, size_t max);

/*
 * Snapshots in Ceph. Wherever a snapshot's file name goes (a save's
 * path, a restore's, bgsnap_file_open's), "rados://POOL/NAME" names a
 * snapshot in a RADOS pool instead, where this library was built with
 * librados (bgsnap_probe lists "rados"). A save makes it visible under
 * NAME only once it is complete, replacing what was there; a failed one
 * leaves nothing under NAME. Reading fetches it whole, every object
 * checked, into an unnamed temporary file ($TMPDIR, else /var/tmp).
 *
 * The cluster is found as the rados command finds it. This sets, for the
 * whole process, the ceph.conf and the client id to use (NULL: librados's
 * defaults: CEPH_CONF, then /etc/ceph/ceph.conf; client.admin; CEPH_ARGS
 * is read too), and the seconds after which an operation without an
 * answer fails (an OSD down; 0: 30 s). Returns 0, -ENOMEM, or -ENOTSUP
 * without librados. Any thread; it applies to targets opened after it.
 */
BGSNAP_API int bgsnap_ceph_config(const char *conf, const char *id,
				  unsigned op_timeout_s);

/*
 * Connect to the pool @pool ("rados://POOL") now, as bgsnap_ceph_config()
 * says, and keep the connection: every later rados:// target in that pool,
 * from any thread, uses it instead of connecting anew (10-80 ms here),
 * until bgsnap_ceph_config() is called again. A program that restores
 * lazily from a pool calls this when it starts, so that a resume does not
 * wait for a connect. Connections to up to 8 pools are kept; another call
 * for the same pool replaces its connection. Returns 0 or -errno, with a
 * one-line reason in @err (may be NULL).
 */
BGSNAP_API int bgsnap_ceph_connect(const char *pool, char *err, size_t err_len);

/*
 * The snapshots in a pool: @each is called with "rados://POOL/NAME" for
 * every object of @where's pool whose name starts with @where's PREFIX
 * ("rados://POOL" lists all, "rados://POOL/vm1/" those of vm1/) and that
 * may be a snapshot's head (an upload's data objects and leases are left
 * out; a name is not read to check it), in no order. A non-zero return
 * of @each stops the walk and is returned. Returns 0 or -errno, with a
 * one-line reason in @err (may be NULL).
 */
BGSNAP_API int bgsnap_rados_list(const char *where,
				 int (*each)(void *arg, const char *target),
				 void *arg, char *err, size_t err_len);

/*
 * A save to rados://POOL/NAME stores data objects first and the head that
 * names them last; a save that crashed (or whose clean-up could not reach
 * the cluster) leaves data objects that no head names: orphans. While a
 * save runs it holds a lease on its upload (an object it rewrites every
 * quarter lease); the lease is four operation timeouts and a minute (3
 * minutes by default), and a dead save's data is an orphan once it runs
 * out. (A save held up for half a lease, by SIGSTOP or a debugger, fails
 * rather than publish data that may be gone.)
 *
 * bgsnap_rados_gc() finds the uploads of pool @pool ("rados://POOL") that
 * no head names and calls @each (may be NULL) for each: state
 * BGSNAP_ORPHAN, removed (its lease first) unless @flags has
 * BGSNAP_GC_DRY_RUN, error set if its removal failed (the rest is found
 * again next time); BGSNAP_ORPHAN_BUSY, a live save's, left alone; or
 * BGSNAP_ORPHAN_UNSURE, left alone because its head or lease cannot be
 * read (error says why). Snapshots and the data they name are never
 * touched. A non-zero return of @each stops the walk and is returned.
 * Returns 0 or -errno, with a one-line reason in @err (may be NULL).
 */
enum bgsnap_orphan_state {
	BGSNAP_ORPHAN = 0,
	BGSNAP_ORPHAN_BUSY = 1,
	BGSNAP_ORPHAN_UNSURE = 2,
};

struct bgsnap_orphan {
	size_t size;	    /* sizeof, set by the library */
	const char *name;   /* the snapshot name it was saved under */
	const char *upload; /* the save's upload id, 32 hex digits */
	uint64_t objects;   /* its objects, data and lease */
	uint64_t bytes;
	int state; /* enum bgsnap_orphan_state */
	int error; /* -errno: see above */
};

#define BGSNAP_GC_DRY_RUN 1u

BGSNAP_API int bgsnap_rados_gc(const char *pool, unsigned flags,
			       int (*each)(void *arg,
					   const struct bgsnap_orphan *o),
			       void *arg, char *err, size_t err_len);

/*
 * The floors: what this machine and kernel allow, measured on the caller's
 * memory, so that a save's figures can be read against them (bgsnap bench
 * does). @mem is @len bytes of private anonymous memory of this process,
 * filled with content like what will be saved; its values are kept. Not
 * registered with a handle while this runs. @unit is what one write fault
 * unprotects: 4096, or 2 MiB for THP-backed memory. Fields that could not be
 * measured are NAN. Returns 0 or a negative errno (the userfaultfd could not
 * be made or registered). Takes about a second per GiB; any thread (it
 * pins the calling thread to one CPU while it measures the pinned round
 * trips, and gives it back its affinity after).
 */
struct bgsnap_floors {
	size_t size;		 /* sizeof, set by the caller */
	double write_protect_ms; /* protecting all of @mem at once, median of 3 */
	double fault_p50_us;	 /* a write to a protected page, until a */
	double fault_p99_us;	 /* second thread has unprotected its unit */
	double lz4_gib_s;	 /* lz4 alone in records, GiB per CPU second */
	double lz4_ratio;	 /* raw over compressed bytes */
	/* fault_p50_us with the two threads pinned to one CPU, and to two
	 * (NAN where the caller may run on one CPU only) */
	double fault_same_cpu_p50_us;
	double fault_other_cpu_p50_us;
};

BGSNAP_API int bgsnap_measure_floors(void *mem, size_t len, size_t unit,
				     struct bgsnap_floors *out);

/* ---- sessions and regions ----------------------------------------------- */

/*
 * A handle holds the memory regions of one owner and runs one operation
 * (a save, a restore) at a time. Threads: a handle is not thread-safe;
 * the owner drives it from one thread at a time, except the calls marked
 * "any thread" (progress, cancel). While a save runs, bgsnap runs two
 * threads of its own (a fault thread and one copier) with every signal
 * blocked; neither ever touches registered memory except to read it.
 */
struct bgsnap;

/*
 * Create a handle. Returns 0 and sets *@out, or -ENOMEM.
 * Free it with bgsnap_free().
 */
BGSNAP_API int bgsnap_new(struct bgsnap **out);

/*
 * Free @h (NULL is fine). An operation still running is cancelled and
 * waited for first, so nothing is left protected or blocked.
 */
BGSNAP_API void bgsnap_free(struct bgsnap *h);

/*
 * The last error's detailed message for @h, one line naming the region,
 * address or file record at fault (e.g. "region 'ram' [0x7f..,+1 GiB):
 * MADV_MERGEABLE (KSM would drop write protection)"). Empty if none.
 * Valid until the next call on @h.
 */
BGSNAP_API const char *bgsnap_last_error(const struct bgsnap *h);

/* Memory kinds. Values are stable (they are stored in snapshot files). */
enum bgsnap_kind {
	BGSNAP_KIND_AUTO = 0, /* detect from the mapping */
	BGSNAP_KIND_ANON = 1, /* private anonymous, 4 KiB pages */
	BGSNAP_KIND_ANON_THP =
		2,		 /* private anonymous, transparent huge pages */
	BGSNAP_KIND_SHMEM = 3,	 /* memfd, shmem, tmpfs, shared anonymous */
	BGSNAP_KIND_HUGETLB = 4, /* hugetlbfs (2 MiB or 1 GiB pages) */
	/* Only in another process (bgsnap_target_pid): */
	BGSNAP_KIND_FILE_PRIVATE = 5, /* private file mapping (.data, relro):
				       * copied while the process is stopped */
	BGSNAP_KIND_UNSAVED = 6,      /* recorded by name only (read-only file,
				   * [vdso], device memory, excluded ...) */
};

/*
 * Register [@addr, @addr + @len) under @name (unique in @h, at most 1023
 * bytes). The range must be page-aligned (huge-page-aligned for hugetlbfs)
 * and mapped, of one kind that userfaultfd can write-protect: private
 * anonymous (4 KiB or THP), memfd/shmem, or hugetlbfs. Registration does
 * not touch the memory. Errors:
 *   -EINVAL       misaligned, empty, or @name empty, too long or taken;
 *   -EEXIST       overlaps a region already registered in @h;
 *   -EFAULT       part of the range is not mapped;
 *   BGSNAP_EUNSAFE  the memory cannot be protected safely: a file mapping,
 *                 KSM-mergeable memory, a range another userfaultfd holds,
 *                 or mixed kinds (bgsnap_last_error() says which).
 */
BGSNAP_API int bgsnap_add_region(struct bgsnap *h, const char *name, void *addr,
				 size_t len);

/*
 * Work on another process instead of this one: the regions become the
 * mappings of process @pid, each named after its path or kind and its
 * start address ("[heap]@55d0c0000000", "/memfd:ram@7f12..."), unique.
 * Private anonymous memory (heap, stacks, anonymous mmaps), memfd/shmem
 * and hugetlbfs are write-protected and saved in the background; private
 * file mappings with pages of their own (.data, relro) are copied while the
 * process is stopped; the rest is recorded by name only. The process is
 * stopped (ptrace) only inside a save's blackout or a restore; bgsnap needs
 * the same permission as a debugger, and the target never keeps anything
 * of bgsnap's: if bgsnap dies at any instant, it runs on unharmed.
 *
 * @opts may select mappings: each spec is either a glob matched against
 * a region's name and its path/kind, or a hex address range "A-B"; with
 * any include, a mapping must match one; any exclude match leaves it out
 * (recorded by name only).
 *
 * Must be called on a handle without regions. Errors: -ESRCH (no such
 * process), -EPERM (ptrace not permitted: bgsnap_last_error() says why:
 * Yama, another user, already traced by ...), -EBUSY, -EINVAL (a bad
 * range), BGSNAP_EUNSAFE (a mapping bgsnap cannot save safely: another
 * userfaultfd holds it, or KSM merges it).
 */
struct bgsnap_target_opts {
	size_t size; /* sizeof, set by the caller */
	const char *const *include;
	size_t ninclude;
	const char *const *exclude;
	size_t nexclude;
};
BGSNAP_API int bgsnap_target_pid(struct bgsnap *h, int pid,
				 const struct bgsnap_target_opts *opts);

/* The number of regions registered. */
BGSNAP_API size_t bgsnap_region_count(const struct bgsnap *h);

struct bgsnap_region_info {
	size_t size;	  /* sizeof, set by the caller */
	const char *name; /* owned by @h */
	void *addr;
	size_t len;
	size_t page_size; /* 4096, or the huge page size for hugetlbfs */
	enum bgsnap_kind kind;
	const char *why; /* another process's mapping: why this kind and
			   * what a save does with it (one line); else "" */
};

/* Describe region @i (0 <= @i < bgsnap_region_count()). -ERANGE if not. */
BGSNAP_API int bgsnap_region(const struct bgsnap *h, size_t i,
			     struct bgsnap_region_info *info);

/*
 * Attach an opaque blob (a VMM's device state ...) to the next snapshot.
 * @data is copied. @name must be unique, not start with "bgsnap.", and be
 * at most 255 bytes; @len at most 64 MiB. May be called before a save
 * starts or from inside its pause callback (where device state is taken).
 * Errors: -EINVAL, -EEXIST (name taken), -E2BIG, -ENOMEM.
 */
BGSNAP_API int bgsnap_attach(struct bgsnap *h, const char *name,
			     const void *data, size_t len);
/* Drop all attachments (they are also dropped after each save). */
BGSNAP_API void bgsnap_attach_clear(struct bgsnap *h);

/* ---- saving -------------------------------------------------------------- */

enum bgsnap_compression {
	BGSNAP_COMPRESS_LZ4 = 0, /* default */
	BGSNAP_COMPRESS_NONE = 1,
};

enum bgsnap_save_flags {
	/* Skip verify-after-copy (on by default): the check that each page
	 * was still write-protected when it was saved. */
	BGSNAP_SAVE_NO_VERIFY = 1u << 0,
	/* Keep the owner paused for the whole copy; no userfaultfd at all.
	 * For owners that are quiescent anyway (a fork child) and baselines. */
	BGSNAP_SAVE_STOP_THE_WORLD = 1u << 1,
	/* Arm all protection inside the pause, as bgsnap did first: the
	 * blackout then grows with memory size. By default (two-phase
	 * arming) protection is armed while the owner runs and the pause
	 * re-protects only the pages written since. */
	BGSNAP_SAVE_ONE_PHASE = 1u << 2,
	/* Keep tracking writes after the save: pages stay protected, the
	 * first write to each is recorded. The next save is then armed in
	 * a blackout that depends on what was written, and may be
	 * incremental. Tracking ends with bgsnap_track_stop(), a save
	 * without this flag, or bgsnap_free(). */
	BGSNAP_SAVE_KEEP_TRACKING = 1u << 3,
	/* Store only the pages changed since a parent snapshot; the others
	 * are recorded as "same as the parent". The parent is the last
	 * snapshot saved with BGSNAP_SAVE_KEEP_TRACKING, whose tracking
	 * tells the changed pages without reading the others; or the file
	 * named by `parent`, whose pages are then compared one by one (a
	 * smaller file, not a faster save). BGSNAP_EPARENT when there is
	 * neither. */
	BGSNAP_SAVE_INCREMENTAL = 1u << 4,
	/* Fail with -EEXIST rather than replace a snapshot already at the
	 * path: a file (put in place with RENAME_NOREPLACE), or a rados://
	 * snapshot (its head created exclusively); atomic either way: of
	 * two saves at once, one fails. */
	BGSNAP_SAVE_NO_REPLACE = 1u << 5,
};

struct bgsnap_save_opts {
	size_t size; /* sizeof, set by the caller; zero the rest */
	/* Bytes for write buffers; 0: 64 MiB. When they are full (the disk
	 * or a pipe's reader is behind), the save's scan waits, never a
	 * write fault: a faulted page's record goes to an overflow beyond
	 * the budget, at most what a fork() would copy, compressed. */
	size_t buffer_budget;
	enum bgsnap_compression compression;
	int lz4_acceleration; /* 0 or 1: LZ4 default; higher: faster */
	unsigned flags;	      /* enum bgsnap_save_flags */
	/*
	 * The owner's quiesce hooks, both optional, called on the thread that
	 * starts the save: @pause before write protection is armed (a VMM
	 * stops its vCPUs), @resume right after. A negative return from
	 * @pause cancels the save with that error (and @resume is not
	 * called). The time between them is the blackout.
	 */
	int (*pause)(void *arg);
	void (*resume)(void *arg);
	void *arg;
	/* With BGSNAP_SAVE_KEEP_TRACKING: keep, in up to this many bytes of
	 * memory, the content each page had at the snapshot instant when it
	 * is first written after it, so that bgsnap_rollback() puts it back
	 * from memory (fast) rather than from the file. 0: none. */
	size_t undo_budget;
	/* With BGSNAP_SAVE_INCREMENTAL: the parent's file, unless tracking
	 * since it. Readers look for it beside the new file, by its name. */
	const char *parent;
	/* Threads that compress and checksum what the one copier read, at
	 * most BGSNAP_MAX_THREADS; 0: the copier does it itself. Each page
	 * is still read once and unprotected by the copier; the file is the
	 * same. Each thread takes 2 jobs of 2 runs' worth of memory (0.5 MiB,
	 * 4 MiB with THP) besides the buffer budget. */
	unsigned threads;
	/* The CPUs bgsnap's threads run on for this save (its copier, fault
	 * thread, compression threads and io_uring's workers; for a
	 * rados:// target, its putter and lease threads and the threads of
	 * librados's connection, unless the connection is a kept one), as a
	 * list like "2-3,6" (taskset -c's form): a VMM or a database keeps
	 * them off the CPUs its own threads are pinned to. NULL: wherever
	 * the thread that starts the save may run. */
	const char *cpus;
	/* Abandon the save when it makes no progress for this long: no
	 * write of the snapshot completes (a pipe's reader stopped reading,
	 * a disk hangs), or bgsnap's own threads did not run (the process
	 * was stopped). The owner is then released at once (nothing left
	 * protected, every writer woken) and bgsnap_wait() returns
	 * -ETIMEDOUT. 0: no limit. A stop of the whole process cannot be
	 * caught while it lasts: the owner's writers that fault wait until
	 * it is continued, then the save ends. A write is bounded only
	 * through io_uring (used wherever the kernel allows it); without,
	 * a write(2) that blocks is seen only when it returns. */
	unsigned max_stall_ms;
};

#define BGSNAP_MAX_THREADS 64

/*
 * Start a save of every registered region to @path (created 0600 under a
 * temporary name beside it, renamed over @path only when complete; a
 * symlink at @path is refused). Pauses the owner (callback), arms write
 * protection, resumes it and returns: the copy runs in the background.
 * @opts may be NULL for defaults. On error nothing is left protected, no
 * thread runs and no file exists under @path. Errors: -EBUSY (an
 * operation runs), -ENOENT (no region), -EPERM (no userfaultfd access;
 * see bgsnap_probe), BGSNAP_EUNSAFE (bgsnap's own memory lies in a
 * region), file errors, or the pause callback's error.
 *
 * Signals: the copier reads and compresses this process's registered
 * memory where it lies (no copy; another process's, bgsnap_target_pid,
 * is read through the kernel), and the owner may still unmap it or make
 * it PROT_NONE meanwhile. So while a save runs, bgsnap holds a SIGSEGV and
 * SIGBUS handler: it takes only its own threads' faults inside the memory
 * they read (the save then reads that memory the kernel's way, or fails
 * with BGSNAP_EHAZARD) and passes every other to the handler installed
 * before it, or to the default action. The previous handlers are back
 * when the last save ends. An application that installs its own handler
 * for these signals during a save should chain to the one it replaces.
 */
BGSNAP_API int bgsnap_save_start(struct bgsnap *h, const char *path,
				 const struct bgsnap_save_opts *opts);
/* The same, writing to @fd (a file or a pipe; never seeked). The caller
 * keeps @fd, which must stay open until bgsnap_wait() returns. */
BGSNAP_API int bgsnap_save_start_fd(struct bgsnap *h, int fd,
				    const struct bgsnap_save_opts *opts);

/*
 * Wait for the running operation to end and return its result: 0, or the
 * error that ended it (-ECANCELED after bgsnap_cancel(), -ENOSPC ...,
 * BGSNAP_EHAZARD when memory was unmapped or discarded under the save,
 * BGSNAP_EINCONSISTENT when a page lost protection by other means).
 * Whatever the result, nothing is left protected, no writer blocked, all
 * threads are joined and no partial file exists under the final name.
 * Returns -EINVAL if nothing was started.
 */
BGSNAP_API int bgsnap_wait(struct bgsnap *h);

/* Start and wait. */
BGSNAP_API int bgsnap_save(struct bgsnap *h, const char *path,
			   const struct bgsnap_save_opts *opts);

/* Ask the running operation to stop; bgsnap_wait() then returns
 * -ECANCELED. Any thread; a no-op when nothing runs. */
BGSNAP_API void bgsnap_cancel(struct bgsnap *h);

struct bgsnap_progress {
	size_t size; /* sizeof, set by the caller */
	int running; /* 1 until the operation has ended */
	uint64_t pages_total;
	uint64_t pages_done;
	uint64_t bytes_written;
	uint64_t elapsed_ns;
};

/* Where the running (or last) operation is. Any thread. */
BGSNAP_API void bgsnap_progress(const struct bgsnap *h,
				struct bgsnap_progress *p);

struct bgsnap_stats {
	size_t size;		    /* sizeof, set by the caller */
	uint64_t blackout_ns;	    /* pause callback to resume callback */
	uint64_t elapsed_ns;	    /* start to end, commit included */
	uint64_t pages_total;	    /* 4 KiB pages in all regions */
	uint64_t pages_by_scan;	    /* saved by the background scan */
	uint64_t pages_by_fault;    /* saved because a writer faulted */
	uint64_t pages_zero;	    /* stored as zero (no data) */
	uint64_t pages_unpopulated; /* of those, skipped without reading */
	uint64_t bytes_written;	    /* bytes of the snapshot file */
	uint64_t raw_bytes;	    /* bytes of non-zero page data saved */
	double compression_ratio;   /* raw_bytes / page data bytes stored */
	uint64_t faults;	    /* write faults served */
	uint64_t stall_ns_p50;	    /* writer stall: fault read to unprotect */
	uint64_t stall_ns_p99;
	uint64_t stall_ns_max;
	uint64_t peak_buffer_bytes; /* high-water mark of write buffers,
				     * the overflow included */
	uint64_t arm_ns; /* protecting before the pause (two-phase) */
	uint64_t reprotected_pages; /* protected again inside the pause */
	uint64_t pages_parent;	    /* incremental: the parent's pages */
	/* A restore fills these (and pages_total, pages_by_fault,
	 * pages_zero, elapsed_ns, faults; stall_* is then the fault service
	 * latency: fault read to page in place). */
	uint64_t resume_ns;	 /* restore start to the owner runnable */
	uint64_t pages_by_fill;	 /* lazy: placed by the background fill */
	uint64_t pages_poisoned; /* lazy: of a damaged record, poisoned */
	uint64_t bytes_read;	 /* bytes of the snapshot file read */
	uint64_t pages_changed;	 /* eager: pages whose content changed */
	/* A save: the CPU time of bgsnap's own threads (nanoseconds), by
	 * stage. The copier's: copy (reading pages out of the owner and
	 * checking they are still protected), compress (lz4), checksum (of
	 * raw and stored bytes) and unprotect; then all of the copier's and
	 * all of the fault thread's CPU time during the save: what the
	 * stages leave of them is bookkeeping, hand-offs and submitting
	 * writes. io_uring's own workers, which write, are in none. */
	uint64_t cpu_copy_ns;
	uint64_t cpu_compress_ns;
	uint64_t cpu_checksum_ns;
	uint64_t cpu_unprotect_ns;
	uint64_t cpu_copier_ns;
	uint64_t cpu_fault_ns;
	uint64_t cpu_workers_ns; /* all of the compression threads' */
	/* A save: of a writer's stall, the part until the copier took its
	 * fault (the rest is reading, checking and unprotecting the run). */
	uint64_t stall_wait_ns_p50;
	uint64_t stall_wait_ns_p99;
};

/* Statistics of the last finished operation (zeros before one).
 * Returns -EBUSY while one is running. */
BGSNAP_API int bgsnap_stats(const struct bgsnap *h, struct bgsnap_stats *s);

/* ---- tracking and rollback ----------------------------------------------- */

/*
 * Start tracking writes now, as two-phase arming does before a save:
 * protection is armed while the owner runs (this call takes that long),
 * and each page written from then on is only recorded. A later save then
 * pauses the owner only to protect again what was written. Errors as for
 * bgsnap_save_start (arming), -EBUSY if already tracking.
 */
BGSNAP_API int bgsnap_track_start(struct bgsnap *h);

/* Stop tracking: every page unprotected. A no-op when not tracking. */
BGSNAP_API void bgsnap_track_stop(struct bgsnap *h);

/* Pages written since the last snapshot instant (or tracking start).
 * -ENOENT when not tracking. Any thread. */
BGSNAP_API int bgsnap_track_written(const struct bgsnap *h, uint64_t *pages);

struct bgsnap_rollback_opts {
	size_t size; /* sizeof, set by the caller */
	/* The owner's quiesce hooks, around the writes (optional). */
	int (*pause)(void *arg);
	void (*resume)(void *arg);
	void *arg;
	/* The snapshot's file, for pages whose content was not kept in
	 * memory (undo_budget spent, or none). NULL: memory only. */
	const char *path;
};

/*
 * Put the regions back as they were at the last snapshot saved with
 * BGSNAP_SAVE_KEEP_TRACKING, writing only the pages written since, from
 * the content kept in memory (undo_budget) or else from its file; then
 * protect them again: tracking goes on from that snapshot, and rollbacks
 * may repeat (snapshot fuzzers and test harnesses do thousands a second).
 * Errors: -ENOENT (not tracking since a snapshot), BGSNAP_EPARENT (a page
 * is not in memory and @path is not that snapshot), file errors; on error
 * the memory may be partly rolled back, and bgsnap_last_error() says so.
 */
BGSNAP_API int bgsnap_rollback(struct bgsnap *h,
			       const struct bgsnap_rollback_opts *opts);

/* ---- restoring ----------------------------------------------------------- */

enum bgsnap_restore_flags {
	/*
	 * Lazy (postcopy-style): register the regions for missing-page
	 * faults and return as soon as faults can be served; pages come from
	 * the file when first touched, and a background fill brings in the
	 * rest. The regions' current content is discarded first.
	 */
	BGSNAP_RESTORE_LAZY = 1u << 0,
	/* Check everything, write nothing: count in pages_changed the pages
	 * whose content would change (the memory is read, not stopped). */
	BGSNAP_RESTORE_DRY_RUN = 1u << 1,
	/* bgsnap_flatten() only: fail with -EEXIST rather than replace a
	 * snapshot already at @out (atomically, as BGSNAP_SAVE_NO_REPLACE). */
	BGSNAP_FLATTEN_NO_REPLACE = 1u << 2,
};

struct bgsnap_restore_opts {
	size_t size;	/* sizeof, set by the caller; zero the rest */
	unsigned flags; /* enum bgsnap_restore_flags */
	/* The owner's quiesce hooks for an eager restore into live memory
	 * (optional; called on the restoring thread around the writes; for
	 * another process, while bgsnap has it stopped). */
	int (*pause)(void *arg);
	void (*resume)(void *arg);
	void *arg;
	/* Each attachment of the snapshot (device state) is handed back
	 * here, checksum verified, before any page is written; @data is valid
	 * during the call. A negative return aborts the restore with it. */
	int (*attachment)(void *arg, const char *name, const void *data,
			  size_t len);
	unsigned threads;      /* eager: decoding threads; 0: one per CPU */
	const char *spool_dir; /* restore from a pipe: where the verified
				 * copy is spooled; NULL: $TMPDIR or /tmp */
	/* An incremental snapshot's ancestors, in any order (matched by
	 * snapshot id). Without them, the parent named in the snapshot is
	 * looked for beside it, and so on up the chain. */
	const char *const *parents;
	size_t nparents;
};

/*
 * Restore the snapshot at @path into the registered regions, matched by
 * name: every saved region of the snapshot needs a registered region of
 * the same name, length, page size and kind (anonymous 4 KiB and THP
 * match each other), and every registered region must be in the snapshot;
 * otherwise BGSNAP_EMISMATCH, with nothing written.
 *
 * Eager (default): the whole file is validated — header, index, every
 * record's checksums, coverage of every page — before the first byte is
 * written; then every page is decoded straight into its region (zero runs
 * release pages instead of writing them). The owner is paused through the
 * callbacks around the writes only. Fresh memory (private anonymous
 * regions with no page present or swapped out, as new guest RAM is) is
 * checked and written in one pass, the owner paused throughout: if a
 * record proves damaged, the regions are emptied again, as they were.
 * Synchronous: bgsnap_wait() then just returns the result.
 *
 * Lazy (BGSNAP_RESTORE_LAZY): header, index and region table are checked,
 * the attachments handed back, the regions registered for missing-page
 * faults, and the call returns: the owner may run. A fault thread serves
 * touched pages first; a background fill places the rest; bgsnap_wait()
 * returns when every page is in place and the regions are released. A
 * record found damaged when it is needed is never served as data: its
 * pages are poisoned (an access raises SIGBUS, as a memory error would)
 * and bgsnap_wait() reports the error found (BGSNAP_ECHECKSUM,
 * BGSNAP_ECORRUPT ...).
 * A lazy restore cannot be cancelled: the owner already runs on it.
 *
 * Errors: -EBUSY, -ENOENT (no region), file errors, BGSNAP_E* format
 * codes (bgsnap_last_error() names the place), BGSNAP_EMISMATCH, and
 * BGSNAP_EPARENT for an incremental snapshot whose parent is missing.
 */
BGSNAP_API int bgsnap_restore_start(struct bgsnap *h, const char *path,
				    const struct bgsnap_restore_opts *opts);
/* The same from @fd. A regular file is read in place; a pipe (a stream)
 * is first copied to a spool file while being verified (memory: a few
 * MiB of buffers; disk: the snapshot's size), then restored from it. The
 * stream is checked as it arrives: bytes that are not a snapshot are
 * refused at the first header (BGSNAP_EBADMAGIC ...), and the spool
 * never grows beyond what a snapshot of the regions the stream declares
 * can hold (each page raw in a record of its own, at most 1 GiB of
 * attachments; beyond, BGSNAP_ECORRUPT). A signal that interrupts a read
 * of the stream ends the restore with -EINTR, nothing written. Lazy
 * restore needs a regular file. */
BGSNAP_API int bgsnap_restore_start_fd(struct bgsnap *h, int fd,
				       const struct bgsnap_restore_opts *opts);
/* Start and wait. */
BGSNAP_API int bgsnap_restore(struct bgsnap *h, const char *path,
			      const struct bgsnap_restore_opts *opts);

/*
 * Write the incremental snapshot @path, resolved through its chain of
 * parents (found as for a restore: @opts->parents, else beside it), as a
 * full snapshot at @out (created as a save creates it: a file, or
 * rados://POOL/NAME, written whole to a temporary file first, then
 * stored). Every record read is checked. @h only carries the error
 * message; it needs no region.
 * Errors: as bgsnap_restore's opening, BGSNAP_EPARENT, file errors.
 */
BGSNAP_API int bgsnap_flatten(struct bgsnap *h, const char *path,
			      const char *out,
			      const struct bgsnap_restore_opts *opts);

/* ---- snapshot files ------------------------------------------------------ */

/*
 * Reading a snapshot file: what it holds, its attachments and statistics,
 * a full check, and the bytes of any region (for export). A file handle
 * reads one complete snapshot file and never writes it; no thread of its
 * own. Like a session handle it is not thread-safe; separate handles, even
 * on the same file, may be used from separate threads.
 *
 * A call that fails on the file's content returns a BGSNAP_E* code and
 * leaves a one-line message naming where the damage is, e.g. "record at
 * offset 8192 (region 'ram', pages 64..127): data checksum mismatch", in
 * bgsnap_file_last_error(); bgsnap_file_open(), which has no handle yet,
 * writes its message into a buffer of the caller's.
 */
struct bgsnap_file;

/* Bytes that hold any message of bgsnap_file_open() and
 * bgsnap_file_last_error(), NUL included. */
#define BGSNAP_FILE_ERROR_MAX 256

/*
 * Open the snapshot file at @path read-only and validate what locates
 * everything else: header, footer, region table and index, including that
 * every page of every saved region is stored exactly once. Record payloads
 * are checked when read (bgsnap_file_read), or all at once by
 * bgsnap_file_verify(). Returns 0 and sets *@out (close it with
 * bgsnap_file_close()), or an error with *@out NULL and, when @err is not
 * NULL, a one-line message in @err (@errlen bytes; BGSNAP_FILE_ERROR_MAX
 * is enough) naming the place:
 *   -ENOENT, -EACCES ...  the file cannot be opened;
 *   -EISDIR               @path is a directory;
 *   -ESPIPE               not a regular file (a pipe, a device);
 *   BGSNAP_EBADMAGIC      not a bgsnap snapshot;
 *   BGSNAP_ETRUNCATED     the file ends early (empty, or a save that
 *                         never finished);
 *   BGSNAP_EVERSION       a format version or feature this library lacks;
 *   BGSNAP_ECHECKSUM, BGSNAP_ECORRUPT, BGSNAP_EOVERLAP, BGSNAP_EMISSING,
 *   BGSNAP_ERANGE         damaged;
 *   -ENOMEM, -EIO.
 * Any thread.
 */
BGSNAP_API int bgsnap_file_open(struct bgsnap_file **out, const char *path,
				char *err, size_t errlen);

/* Close @f (NULL is fine), and the parents it opened. Every string and
 * parent handle @f handed out dies with it. */
BGSNAP_API void bgsnap_file_close(struct bgsnap_file *f);

/* The path @f was opened with, or, for a parent, where it was found.
 * Owned by @f. */
BGSNAP_API const char *bgsnap_file_path(const struct bgsnap_file *f);

/* The message of the last call on @f that failed, one line ("" if none).
 * Valid until the next call on @f. */
BGSNAP_API const char *bgsnap_file_last_error(const struct bgsnap_file *f);

struct bgsnap_file_info {
	size_t size;		/* sizeof, set by the caller */
	unsigned version_major; /* of the file format */
	unsigned version_minor;
	uint8_t snapshot_id[16];
	uint8_t parent_id[16]; /* all zero: a full snapshot */
	int incremental;       /* 1: has a parent (pages may be PARENT) */
	uint64_t created_ns;   /* CLOCK_REALTIME at the save, ns */
	char host[65];	       /* uname -n at the save (unprintable bytes
				 * shown as '?') */
	char kernel[65];       /* uname -r at the save */
	uint64_t file_size;    /* bytes */
	uint64_t records;      /* page records */
	size_t regions;
	size_t attachments;
	/* Over all regions, in 4 KiB pages (unsaved regions count none): */
	uint64_t pages;
	uint64_t pages_data;	  /* stored as bytes, raw or compressed */
	uint64_t pages_zero;	  /* stored as "all zero": no bytes */
	uint64_t pages_parent;	  /* stored as "as in the parent" */
	uint64_t data_bytes;	  /* bytes stored for the data pages */
	double compression_ratio; /* pages_data * 4096 / data_bytes; 0 when
				   * no data page */
};

/* Describe the file: fills @info, returns 0. Reads nothing. */
BGSNAP_API int bgsnap_file_info(const struct bgsnap_file *f,
				struct bgsnap_file_info *info);

struct bgsnap_file_region {
	size_t size;	    /* sizeof, set by the caller */
	const char *name;   /* owned by the file handle */
	uint64_t addr;	    /* where it was when saved */
	uint64_t len;	    /* bytes */
	uint64_t page_size; /* 4096, or the huge page size (hugetlbfs) */
	int kind;	    /* enum bgsnap_kind, never AUTO; see
				 * bgsnap_kind_name() */
	int prot;	    /* PROT_* bits when saved */
	/* In 4 KiB pages; all zero for an unsaved region: */
	uint64_t pages; /* len / 4096 */
	uint64_t pages_data;
	uint64_t pages_zero;
	uint64_t pages_parent;
	uint64_t data_bytes; /* bytes stored for its data pages */
	uint64_t records;    /* page records */
};

/* Describe region @i (0 <= @i < info.regions), in the file's order.
 * -ERANGE if there is none. Reads nothing. */
BGSNAP_API int bgsnap_file_region(const struct bgsnap_file *f, size_t i,
				  struct bgsnap_file_region *r);
/* The index of the region named @name, or -ENOENT. */
BGSNAP_API int bgsnap_file_find_region(const struct bgsnap_file *f,
				       const char *name);

/* A memory kind's name: "anon", "anon_thp", "shmem", "hugetlb",
 * "file_private", "unsaved" ("auto" for 0, "unknown" for anything else).
 * Static storage; any thread. */
BGSNAP_API const char *bgsnap_kind_name(int kind);

/*
 * Name and size of attachment @i (0 <= @i < info.attachments), in file
 * order; *@name is owned by @f. Names starting with "bgsnap." are
 * bgsnap's own. -ERANGE if there is none. Reads nothing.
 */
BGSNAP_API int bgsnap_file_attachment(const struct bgsnap_file *f, size_t i,
				      const char **name, size_t *len);
/* The index of the attachment named @name, or -ENOENT. */
BGSNAP_API int bgsnap_file_find_attachment(const struct bgsnap_file *f,
					   const char *name);
/*
 * Copy attachment @i into @buf (@len bytes, at least its size), checksum
 * verified. Returns 0, -ERANGE (no such attachment), -ENOBUFS (@len too
 * small), BGSNAP_ECHECKSUM (damaged: @buf is then unspecified), -EIO.
 */
BGSNAP_API int bgsnap_file_attachment_read(struct bgsnap_file *f, size_t i,
					   void *buf, size_t len);

/*
 * The statistics the save stored with the snapshot (the attachment
 * "bgsnap.stats"): a JSON object, as text, NUL-terminated, owned by @f
 * and valid until it is closed. Keys, all numbers unless said: blackout_ns,
 * pages_total, pages_by_scan, pages_by_fault, pages_unpopulated, faults,
 * stall_ns_p50, stall_ns_p99, stall_ns_max (ns a writer waited on a
 * fault), stop_the_world (boolean); later versions may add keys. The
 * checksum guards against damage, not forgery: a program that embeds the
 * text in its own output should check it parses. Errors: -ENOENT (saved
 * without statistics), BGSNAP_ECHECKSUM, BGSNAP_ECORRUPT (not text),
 * -EIO, -ENOMEM.
 */
BGSNAP_API int bgsnap_file_stats_json(struct bgsnap_file *f, const char **json);

/*
 * Check the whole file: every record's header and data checksums (pages
 * and attachments; how pages are checked: bgsnap_file_set_verify()), that
 * every page of every saved region is stored exactly once, that the index
 * lists exactly the records there are, and that the file has not changed
 * since it was opened. Reads the file once, front to back. @progress (may
 * be NULL) is called on this thread every few MiB with the bytes checked
 * and the file size, and with done == total at the end of a good file.
 * Returns 0 if the file is perfect, else the first problem found
 * (BGSNAP_E*, message in bgsnap_file_last_error()), -EIO or -ENOMEM. The
 * pages of an incremental snapshot stored in its parent are not looked
 * at: the parent is another file (see bgsnap_file_verify_chain()).
 */
BGSNAP_API int bgsnap_file_verify(struct bgsnap_file *f,
				  void (*progress)(void *arg, uint64_t done,
						   uint64_t total),
				  void *arg);

/* How bgsnap_file_verify() and bgsnap_file_verify_chain() check pages. */
enum bgsnap_verify {
	/* The default. A format 1.1 file: every byte as stored, against
	 * its checksum (any changed byte is found), without decompressing.
	 * A 1.0 file has no checksums of its compressed bytes: its pages
	 * are decompressed and checked, as by BGSNAP_VERIFY_DEEP. */
	BGSNAP_VERIFY_STORED = 0,
	/* Also decompress every page record and check the pages against
	 * their own checksum, as a restore does: slower, and it finds what
	 * the stored checksums cannot, a writer's bad compressed data. */
	BGSNAP_VERIFY_DEEP = 1,
};

/* Choose how @f, and every ancestor its chain check reaches, is checked
 * (enum bgsnap_verify). Set on a parent's handle, it is set for the
 * handle the caller opened. Returns 0, or -EINVAL for an unknown @how. */
BGSNAP_API int bgsnap_file_set_verify(struct bgsnap_file *f, int how);

/*
 * Chains. An incremental snapshot stores only the pages changed since its
 * parent; the others (BGSNAP_PAGES_PARENT) are the parent's, which may be
 * incremental too, up to a full snapshot. A file handle finds each
 * ancestor the way a restore does: among the files offered with
 * bgsnap_file_add_parent(), by snapshot id, else the file the child names
 * for it (attachment "bgsnap.parent", a bare file name) in the child's
 * directory, if it has that id; and so on up (at most 64 levels). An
 * ancestor is opened, as a file handle of its own owned by its child,
 * when first needed: a read of its pages, bgsnap_file_parent(),
 * bgsnap_file_verify_chain(). It stays open until @f is closed.
 */

/*
 * Offer the file at @path as an ancestor of @f (of any level, in any
 * order): it is used for the ancestor whose snapshot id it has, in
 * preference to the file found beside. Not opened now; ancestors already
 * found stay as they are, one not found yet is looked for again when next
 * needed. Returns 0, -EINVAL (@path empty), -ENOMEM.
 */
BGSNAP_API int bgsnap_file_add_parent(struct bgsnap_file *f, const char *path);

/*
 * The parent of the incremental snapshot @f: *@parent is a file handle
 * owned by @f (never close it), on which every call works, this one
 * included; bgsnap_file_path() says which file it is. Returns 0, or with
 * *@parent NULL: -ENOENT (@f is a full snapshot), BGSNAP_EPARENT (not
 * found: the message gives the id and where it was looked for), or the
 * error of opening the file found (BGSNAP_E* when it is damaged, the
 * message naming it), -ENOMEM.
 */
BGSNAP_API int bgsnap_file_parent(struct bgsnap_file *f,
				  struct bgsnap_file **parent);

/*
 * Check @f and every ancestor, as bgsnap_file_verify() checks one file,
 * and that the chain holds together: each ancestor's snapshot id is its
 * child's parent id, and every page a child leaves to its parent lies
 * inside a saved region of the same name there. Every ancestor is found
 * first, so a missing one is reported before anything is read. @progress
 * (may be NULL) sees the bytes checked over all files and their total.
 * Returns 0 if all is perfect, else the first problem: BGSNAP_EPARENT (an
 * ancestor missing, or not fitting), BGSNAP_E* (damage), -EIO, -ENOMEM;
 * the message names the file at fault when it is an ancestor. For a full
 * snapshot this is bgsnap_file_verify().
 */
BGSNAP_API int bgsnap_file_verify_chain(
	struct bgsnap_file *f,
	void (*progress)(void *arg, uint64_t done, uint64_t total), void *arg);

/* How a run of pages is stored. */
enum bgsnap_pages {
	BGSNAP_PAGES_DATA = 1,	 /* as bytes (raw or compressed) */
	BGSNAP_PAGES_ZERO = 2,	 /* all zero: nothing stored */
	BGSNAP_PAGES_PARENT = 3, /* as in the parent snapshot (another file) */
	BGSNAP_PAGES_NONE = 4,	 /* an unsaved region: nothing at all */
};

/*
 * How region @region is stored from byte @offset on, as lseek's SEEK_HOLE
 * tells holes from data: returns the enum bgsnap_pages of the page holding
 * @offset and sets *@len to the bytes from @offset to the end of the run
 * of pages stored the same way. Reads nothing, and opens no parent: a run
 * of BGSNAP_PAGES_PARENT is in the parent (bgsnap_file_parent() and its
 * bgsnap_file_map() say how it is stored there, under the region's
 * name). -ERANGE if there is no such region or @offset is not inside it
 * (an empty region has no byte).
 */
BGSNAP_API int bgsnap_file_map(struct bgsnap_file *f, size_t region,
			       uint64_t offset, uint64_t *len);

/*
 * Read @len bytes of region @region from byte @offset (any offset and
 * length inside the region) into @buf: the memory as it was at the
 * snapshot's instant. Each record is checked (header and data checksums)
 * as it is decoded; zero pages are not read from the file. Pages stored
 * in the parent are read from it, region by name, up the chain as far as
 * needed (see "Chains" above). Returns 0, or -ERANGE (not inside the
 * region), -ENODATA (an unsaved region), BGSNAP_EPARENT (a parent needed
 * is missing, or lacks the region's pages), BGSNAP_E* (damage: the
 * message names the record, and the file when it is a parent), -EIO,
 * -ENOMEM; @buf is then unspecified.
 */
BGSNAP_API int bgsnap_file_read(struct bgsnap_file *f, size_t region,
				uint64_t offset, void *buf, size_t len);

/*
 * Core files. A save of another process (bgsnap_target_pid) records, at
 * the snapshot's instant, what an ELF core file needs besides memory: every
 * thread's registers, the process's psinfo, auxiliary vector, mappings and
 * coredump_filter (the attachment "bgsnap.core", FORMAT.md). From it and
 * the saved memory bgsnap_file_write_core() writes the core file the
 * kernel would have written at that instant, which gdb, readelf and
 * elfutils read as any other core.
 */
struct bgsnap_core_opts {
	size_t size; /* sizeof, set by the caller */
	/* coredump_filter bits (core(5)): which mappings' memory is
	 * written. -1: the process's own filter, as it was at the save. */
	int64_t filter;
	/* Called on this thread every few MiB with the bytes of memory
	 * written and their total. May be NULL. */
	void (*progress)(void *arg, uint64_t done, uint64_t total);
	void *arg;
};

struct bgsnap_core_info {
	size_t size;	     /* sizeof, set by the caller */
	uint32_t filter;     /* the coredump_filter used */
	size_t threads;	     /* NT_PRSTATUS notes */
	size_t segments;     /* PT_LOAD segments: one per mapping */
	uint64_t file_size;  /* bytes of the core file */
	uint64_t data_bytes; /* bytes of memory in it (holes included) */
	/* Mappings the filter asks for that the snapshot did not save
	 * (shared or read-only file mappings, excluded ones): written with
	 * no bytes, as the kernel writes a mapping it does not dump. */
	size_t segments_unsaved;
};

/*
 * Write the ELF core file of the snapshot @f (an incremental one too: its
 * parents are read as bgsnap_file_read() reads them) to @fd, a regular
 * file open for writing, from offset 0, holes for zero pages. The same
 * snapshot and options always give the same bytes. @o may be NULL (the
 * process's own filter); @info (may be NULL) receives what was written.
 * The caller owns @fd: it syncs, names and closes it. Returns 0, or
 * -ENOENT (the snapshot has no "bgsnap.core": not a save of another
 * process, or made by an older bgsnap), BGSNAP_ECORRUPT (the
 * attachment is malformed), -EOPNOTSUPP (not an x86_64 core), -E2BIG (more
 * mappings than an ELF file can number), the errors of bgsnap_file_read(),
 * or -errno of a write; the message in bgsnap_file_last_error().
 */
BGSNAP_API int bgsnap_file_write_core(struct bgsnap_file *f, int fd,
				      const struct bgsnap_core_opts *o,
				      struct bgsnap_core_info *info);

#ifdef __cplusplus
}
#endif

#endif /* BGSNAP_H */
