/* SPDX-License-Identifier: MIT */
/*
 * bgs_uffd: the thin userfaultfd layer (internal).
 *
 * Every call works on a struct bgs_uffd, whichever process's memory the uffd
 * belongs to: a uffd is bound to the mm that created it, and any holder of
 * the descriptor may drive it (reference/kernel-uffd.md §5.1). Addresses are
 * therefore addresses in the uffd's process.
 *
 * Errors are negative errno. The uffd error table, as handled here:
 *   EAGAIN  an event (REMAP/REMOVE/UNMAP) is queued and unread; retried here
 *           with back-off for up to BGS_UFFD_EAGAIN_BUDGET_NS, then returned.
 *           So the thread that reads events must never call these while it
 *           holds an unread event: the copier retries, the fault thread reads.
 *   ESRCH   (protect) / ENOMEM (unregister): the uffd's process is gone.
 *   EEXIST  (copy/zeropage): the page is already mapped; the range helpers
 *           below skip such pages and go on.
 *   ENOENT  the range is not registered (for the mode asked).
 */
#ifndef BGS_UFFD_H
#define BGS_UFFD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "uffd_compat.h"

/* Features bgsnap turns on when the kernel offers them, for a WP snapshot. */
#define BGS_UFFD_FEATURES_WP                                                   \
	(UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_WP_UNPOPULATED |        \
	 UFFD_FEATURE_WP_HUGETLBFS_SHMEM | UFFD_FEATURE_EVENT_REMAP |          \
	 UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP |                \
	 UFFD_FEATURE_THREAD_ID)

/* ... and for a lazy (MISSING) restore. */
#define BGS_UFFD_FEATURES_MISSING                                              \
	(UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_MISSING_HUGETLBFS |         \
	 UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_REMOVE |                \
	 UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_POISON |                      \
	 UFFD_FEATURE_THREAD_ID)

#define BGS_UFFD_EAGAIN_BUDGET_NS (5ULL * 1000 * 1000 * 1000)

struct bgs_uffd {
	int fd;		   /* -1 when closed */
	uint64_t offered;  /* every feature the kernel offers */
	uint64_t features; /* the features enabled on this uffd */
};

/*
 * Create a uffd for this process: userfaultfd(2), falling back to
 * /dev/userfaultfd + USERFAULTFD_IOC_NEW when the syscall is refused
 * (vm.unprivileged_userfaultfd=0 without CAP_SYS_PTRACE). The descriptor is
 * O_CLOEXEC|O_NONBLOCK. @flags may hold only O_CLOEXEC/O_NONBLOCK-style
 * bits; UFFD_USER_MODE_ONLY is refused with -EINVAL, because such a uffd
 * turns the kernel's own writes into EFAULT for the owner (§4).
 * Then negotiates features (see bgs_uffd_api). On error @u->fd is -1.
 */
int bgs_uffd_open(struct bgs_uffd *u, uint64_t want, uint64_t need);

/* Raw creation only (no UFFDIO_API), for callers that negotiate later. */
int bgs_uffd_create(int flags);

/*
 * Take ownership of @fd, a uffd created without UFFD_USER_MODE_ONLY by the
 * caller's own code (e.g. injected into another process and fetched with
 * pidfd_getfd) on which UFFDIO_API has not been issued yet, and negotiate:
 * enable (@want | @need) & offered; -ENOTSUP if a bit of @need is not offered.
 * On error the descriptor is closed.
 */
int bgs_uffd_adopt(struct bgs_uffd *u, int fd, uint64_t want, uint64_t need);

/* Close (idempotent). Closing releases every protection and wakes waiters. */
void bgs_uffd_close(struct bgs_uffd *u);

/* Features the kernel offers (a throw-away uffd), or -errno. */
int64_t bgs_uffd_offered_features(void);

/*
 * Register [addr, addr+len) with @mode (UFFDIO_REGISTER_MODE_*). @ioctls, if
 * not NULL, receives the ioctls the kernel allows on the range.
 * -EBUSY: another uffd already has the range. -EINVAL: this memory kind
 * cannot be registered for @mode (e.g. a file mapping for WP).
 */
int bgs_uffd_register(const struct bgs_uffd *u, uint64_t addr, uint64_t len,
		      uint64_t mode, uint64_t *ioctls);
int bgs_uffd_unregister(const struct bgs_uffd *u, uint64_t addr, uint64_t len);

/* Flags of the calls below. */
#define BGS_UFFD_DONTWAKE 1u /* leave the threads waiting on the range asleep */
#define BGS_UFFD_NORETRY                                                       \
	2u /* return -EAGAIN at once while an event is
			      * pending: for the thread that reads events */

/* Write-protect / unprotect a range (one ioctl; EAGAIN retried unless
 * BGS_UFFD_NORETRY). Unprotect wakes the writers waiting in the range
 * unless BGS_UFFD_DONTWAKE. */
int bgs_uffd_protect(const struct bgs_uffd *u, uint64_t addr, uint64_t len,
		     unsigned flags);
int bgs_uffd_unprotect(const struct bgs_uffd *u, uint64_t addr, uint64_t len,
		       unsigned flags);

/*
 * Fill missing pages: UFFDIO_COPY from @src (an address in *this* process),
 * UFFDIO_ZEROPAGE, or UFFDIO_POISON (an access then raises SIGBUS:
 * BUS_MCEERR_AR, or BUS_ADRERR on kernels built without
 * CONFIG_MEMORY_FAILURE). Partial progress is continued; a page that is
 * already mapped (EEXIST) is skipped, @page_size at a time. Returns the
 * number of bytes this call placed, or -errno.
 */
int64_t bgs_uffd_copy(const struct bgs_uffd *u, uint64_t dst, const void *src,
		      uint64_t len, uint64_t page_size, unsigned flags);
int64_t bgs_uffd_zeropage(const struct bgs_uffd *u, uint64_t dst, uint64_t len,
			  uint64_t page_size, unsigned flags);
int64_t bgs_uffd_poison(const struct bgs_uffd *u, uint64_t dst, uint64_t len,
			uint64_t page_size, unsigned flags);

/* Wake threads waiting on faults in the range without changing it. */
int bgs_uffd_wake(const struct bgs_uffd *u, uint64_t addr, uint64_t len);

/*
 * Read up to @max messages without blocking. Returns the number read (0 when
 * none is queued) or -errno. Poll the descriptor to wait.
 */
int bgs_uffd_read(const struct bgs_uffd *u, struct uffd_msg *msgs, size_t max);

/* True if @msg is a write-protect fault (as opposed to a missing-page one). */
static inline bool bgs_uffd_msg_is_wp(const struct uffd_msg *msg)
{
	return msg->event == UFFD_EVENT_PAGEFAULT &&
	       (msg->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP);
}

const char *bgs_uffd_event_name(uint8_t event);

/* ---- PAGEMAP_SCAN (uffd_scan.c) ---------------------------------------- */

/* /proc/<pid>/pagemap, opened once; pid 0 means this process. */
struct bgs_pagemap {
	int fd;
};

int bgs_uffd_pagemap_open(struct bgs_pagemap *pm, pid_t pid);
void bgs_uffd_pagemap_close(struct bgs_pagemap *pm);

/*
 * Which pages of [start, end) fall in which categories (PAGE_IS_*).
 * A page is reported if it has every category in @require, none in
 * @exclude, and (when @anyof is non-zero) at least one of @anyof. Adjacent
 * pages with the same @report categories are merged into one region.
 * Regions go to @cb in address order; a non-zero return from @cb stops the
 * walk and is returned. Returns 0 or -errno (-ENOTTY: no PAGEMAP_SCAN).
 */
struct bgs_scan_query {
	uint64_t require;
	uint64_t exclude;
	uint64_t anyof;
	uint64_t report;
};
typedef int (*bgs_scan_cb)(void *arg, uint64_t start, uint64_t end,
			   uint64_t categories);
int bgs_uffd_pagemap_scan(const struct bgs_pagemap *pm, uint64_t start,
			  uint64_t end, const struct bgs_scan_query *q,
			  bgs_scan_cb cb, void *arg);

/* The classic pagemap entry of one page (bits 57, 62, 63 ...), or -errno. */
int bgs_uffd_pagemap_entry(const struct bgs_pagemap *pm, uint64_t addr,
			   uint64_t *entry);

/* ---- capability probe (uffd_caps.c) ------------------------------------- */

struct bgs_uffd_cap {
	const char *name;
	bool ok;
	bool required;	  /* a snapshot of anonymous memory needs it */
	char detail[256]; /* one line: what is there, or how to get it */
};

#define BGS_UFFD_MAX_CAPS 16

/* Fill @caps (BGS_UFFD_MAX_CAPS entries); returns how many. */
int bgs_uffd_probe(struct bgs_uffd_cap *caps);

#endif /* BGS_UFFD_H */
