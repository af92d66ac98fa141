/* SPDX-License-Identifier: MIT */
/* Test helpers that read snapshots and check protection. */
#include "testutil.h"
#include "ramstore.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void tu_snapshot_region(const char *path, const char *name, void *buf,
			size_t len)
{
	struct rs_diag diag = { 0 };
	struct rs_reader *r;
	const int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t region = SIZE_MAX;
	uint64_t covered = 0;

	assert_true(fd >= 0);
	if (bgs_rs_open(&r, fd, &diag)) {
		fprintf(stderr, "# %s: %s\n", path, diag.msg);
		fail();
	}
	for (size_t i = 0; i < bgs_rs_region_count(r); i++)
		if (!strcmp(bgs_rs_region(r, i)->name, name))
			region = i;
	assert_true(region != SIZE_MAX);
	assert_int_equal(bgs_rs_region(r, region)->length, len);
	for (size_t i = 0; i < bgs_rs_extent_count(r); i++) {
		const struct rs_extent *e = bgs_rs_extent(r, i);
		const void *data;
		int ret;

		if (e->region != region)
			continue;
		ret = bgs_rs_decode(r, i, &data, &diag);
		if (ret < 0)
			fprintf(stderr, "# %s: %s\n", path, diag.msg);
		assert_int_equal(ret, 0);
		assert_true((e->first + e->npages) * 4096 <= len);
		memcpy((char *)buf + e->first * 4096, data, e->npages * 4096);
		covered += e->npages;
	}
	assert_int_equal(covered * 4096, len);
	bgs_rs_close(r);
	close(fd);
}

static int report_protected(void *arg, uint64_t start, uint64_t end,
			    uint64_t cats)
{
	(void)end;
	fprintf(stderr,
		"# page 0x%llx is still protected (categories 0x%llx)\n",
		(unsigned long long)start, (unsigned long long)cats);
	*(int *)arg = 1;
	return 1;
}

void tu_assert_unprotected(const void *addr, size_t len)
{
	struct bgs_pagemap pm;
	/* Present or swapped (marker) and not WRITTEN: the uffd-wp bit. */
	const struct bgs_scan_query q = {
		.anyof = PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
		.exclude = PAGE_IS_WRITTEN,
		.report = PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
	};
	const uint64_t a = (uint64_t)(uintptr_t)addr;
	int found = 0;

	assert_int_equal(bgs_uffd_pagemap_open(&pm, 0), 0);
	assert_true(bgs_uffd_pagemap_scan(&pm, a, a + len, &q, report_protected,
					  &found) >= 0);
	bgs_uffd_pagemap_close(&pm);
	assert_int_equal(found, 0);
}

void tu_assert_no_file_like(const char *dir, const char *needle)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	assert_non_null(d);
	while ((e = readdir(d))) {
		if (strstr(e->d_name, needle)) {
			fprintf(stderr, "# left behind: %s/%s\n", dir,
				e->d_name);
			fail();
		}
	}
	closedir(d);
}

static char tmpdir[64];

static void remove_tmpdir(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "# could not remove %s\n", tmpdir);
}

const char *tu_tmpdir(void)
{
	if (!tmpdir[0]) {
		snprintf(tmpdir, sizeof(tmpdir), "/tmp/bgsnap-test-XXXXXX");
		if (!mkdtemp(tmpdir))
			abort();
		atexit(remove_tmpdir);
	}
	return tmpdir;
}
