/* SPDX-License-Identifier: MIT */
/*
 * PAGEMAP_SCAN (Linux 6.7) over /proc/<pid>/pagemap, for this process or
 * another one. Read-only use: it works on sync-WP VMAs (kernel-uffd.md §7.3).
 * Category facts worth knowing when reading the results:
 *   - a uffd-wp PTE marker (never-touched page, protected) is SWAPPED;
 *   - a none PTE in a uffd-wp VMA is WRITTEN (nothing protects it);
 *   - a present page whose protection is gone (written since protected,
 *     unprotected, or dropped by KSM/DONTNEED) is WRITTEN.
 */
#include "uffd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

int bgs_uffd_pagemap_open(struct bgs_pagemap *pm, pid_t pid)
{
	char path[64];

	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)pid);
	else
		snprintf(path, sizeof(path), "/proc/self/pagemap");
	pm->fd = open(path, O_RDONLY | O_CLOEXEC);
	return pm->fd < 0 ? -errno : 0;
}

void bgs_uffd_pagemap_close(struct bgs_pagemap *pm)
{
	if (pm->fd >= 0)
		close(pm->fd);
	pm->fd = -1;
}

#define SCAN_VEC 256

int bgs_uffd_pagemap_scan(const struct bgs_pagemap *pm, uint64_t start,
			  uint64_t end, const struct bgs_scan_query *q,
			  bgs_scan_cb cb, void *arg)
{
	struct page_region vec[SCAN_VEC];
	struct pm_scan_arg a = {
		.size = sizeof(a),
		.vec = (uint64_t)(uintptr_t)vec,
		.vec_len = SCAN_VEC,
		.category_inverted = q->exclude,
		.category_mask = q->require | q->exclude,
		.category_anyof_mask = q->anyof,
		.return_mask = q->report,
	};

	if ((a.category_mask | q->anyof | q->report) &
	    ~(uint64_t)BGS_PAGE_IS_KNOWN)
		return -EINVAL;
	while (start < end) {
		long n;

		a.start = start;
		a.end = end;
		n = ioctl(pm->fd, PAGEMAP_SCAN, &a);
		if (n < 0)
			return -errno;
		for (long i = 0; i < n; i++) {
			int r = cb(arg, vec[i].start, vec[i].end,
				   vec[i].categories);
			if (r)
				return r;
		}
		/* walk_end says how far the kernel got (vec full or done). */
		if (a.walk_end <= start)
			return -EIO;
		start = a.walk_end;
	}
	return 0;
}

int bgs_uffd_pagemap_entry(const struct bgs_pagemap *pm, uint64_t addr,
			   uint64_t *entry)
{
	const off_t off = (off_t)(addr / (uint64_t)sysconf(_SC_PAGESIZE) * 8);

	const ssize_t n = pread(pm->fd, entry, sizeof(*entry), off);

	if (n < 0)
		return -errno;
	return n == sizeof(*entry) ? 0 : -EIO;
}
