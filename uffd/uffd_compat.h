/* SPDX-License-Identifier: MIT */
/*
 * Kernel interface constants that older uapi headers lack.
 *
 * This is the one place where bgsnap defines them. The build headers on the
 * reference machine are Linux 6.1 while the kernel is 6.18, so everything
 * newer than 6.1 is defined here, each guarded so a newer header wins.
 * Values are from include/uapi/linux/userfaultfd.h and fs.h in mainline
 * (see ../shared/reference/kernel-uffd.md §1.1).
 *
 * Trap: UFFD_FEATURE_WP_UNPOPULATED is bit 13. Bit 14 is POISON; asking for
 * it by mistake is accepted and never-touched pages then stay unprotected.
 * tests/unit/test_uffd.c checks the bit against pagemap.
 */
#ifndef BGS_UFFD_COMPAT_H
#define BGS_UFFD_COMPAT_H

#include <linux/types.h>
#include <linux/fs.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC	    0xAA
#define USERFAULTFD_IOC_NEW _IO(USERFAULTFD_IOC, 0x00)
#endif

#ifndef UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define UFFD_FEATURE_WP_HUGETLBFS_SHMEM (1ULL << 12)
#endif
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1ULL << 13)
#endif
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1ULL << 14)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1ULL << 15)
#endif
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1ULL << 16)
#endif

#ifndef UFFDIO_CONTINUE_MODE_WP
#define UFFDIO_CONTINUE_MODE_WP ((__u64)1 << 1)
#endif

#ifndef _UFFDIO_POISON
#define _UFFDIO_POISON 0x08
struct uffdio_poison {
	struct uffdio_range range;
	__u64 mode;
	__s64 updated;
};
#define UFFDIO_POISON_MODE_DONTWAKE ((__u64)1 << 0)
#define UFFDIO_POISON		    _IOWR(UFFDIO, _UFFDIO_POISON, struct uffdio_poison)
#endif

#ifndef _UFFDIO_MOVE
#define _UFFDIO_MOVE 0x05
struct uffdio_move {
	__u64 dst;
	__u64 src;
	__u64 len;
	__u64 mode;
	__s64 move;
};
#define UFFDIO_MOVE_MODE_DONTWAKE	 ((__u64)1 << 0)
#define UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES ((__u64)1 << 1)
#define UFFDIO_MOVE			 _IOWR(UFFDIO, _UFFDIO_MOVE, struct uffdio_move)
#endif

/* PAGEMAP_SCAN: include/uapi/linux/fs.h, Linux 6.7. */
#ifndef PAGEMAP_SCAN
#define PAGEMAP_SCAN	  _IOWR('f', 16, struct pm_scan_arg)
#define PAGE_IS_WPALLOWED (1 << 0)
#define PAGE_IS_WRITTEN	  (1 << 1)
#define PAGE_IS_FILE	  (1 << 2)
#define PAGE_IS_PRESENT	  (1 << 3)
#define PAGE_IS_SWAPPED	  (1 << 4)
#define PAGE_IS_PFNZERO	  (1 << 5)
#define PAGE_IS_HUGE	  (1 << 6)
struct page_region {
	__u64 start;
	__u64 end;
	__u64 categories;
};
#define PM_SCAN_WP_MATCHING   (1 << 0)
#define PM_SCAN_CHECK_WPASYNC (1 << 1)
struct pm_scan_arg {
	__u64 size;
	__u64 flags;
	__u64 start;
	__u64 end;
	__u64 walk_end;
	__u64 vec;
	__u64 vec_len;
	__u64 max_pages;
	__u64 category_inverted;
	__u64 category_mask;
	__u64 category_anyof_mask;
	__u64 return_mask;
};
#endif

/* The categories every 6.7+ kernel knows; a mask with other bits is EINVAL. */
#define BGS_PAGE_IS_KNOWN                                                      \
	(PAGE_IS_WPALLOWED | PAGE_IS_WRITTEN | PAGE_IS_FILE |                  \
	 PAGE_IS_PRESENT | PAGE_IS_SWAPPED | PAGE_IS_PFNZERO | PAGE_IS_HUGE)

/* Documentation/admin-guide/mm/pagemap.rst: bits of a pagemap entry. */
#define BGS_PM_PFN_MASK ((1ULL << 55) - 1) /* 0 without CAP_SYS_ADMIN */
#define BGS_PM_UFFD_WP	(1ULL << 57)
#define BGS_PM_SWAP	(1ULL << 62)
#define BGS_PM_PRESENT	(1ULL << 63)

_Static_assert(sizeof(struct pm_scan_arg) == 96, "pm_scan_arg is 96 bytes");
_Static_assert(UFFD_FEATURE_WP_UNPOPULATED == 0x2000,
	       "WP_UNPOPULATED is bit 13");

#endif /* BGS_UFFD_COMPAT_H */
