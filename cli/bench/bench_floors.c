/* SPDX-License-Identifier: MIT */
/*
 * bgsnap bench: the floors, what the hardware and the kernel allow on a
 * region like the guest's, formatted with the guest's own content: a plain
 * disk write here, and through the library (bgsnap_measure_floors) the
 * write-protect of the whole region, the fault round trip and lz4 alone.
 */
#include "bench.h"

#include <bgsnap.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- floors -------------------------------------------------------------- */

static int dcmp(const void *a, const void *b)
{
	const double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

double bench_median(double *v, int n)
{
	int k = 0;

	for (int i = 0; i < n; i++)
		if (!isnan(v[i]))
			v[k++] = v[i];
	if (!k)
		return NAN;
	qsort(v, (size_t)k, sizeof(*v), dcmp);
	return k % 2 ? v[k / 2] : (v[k / 2 - 1] + v[k / 2]) / 2;
}

struct region {
	uint8_t *map, *mem;
	size_t map_len, len;
};

/* Like the guest's memory: private anonymous, 4 KiB or THP, with the
 * guest's content (the same seed). */
static int region_map(const struct bench *b, uint64_t size, struct region *r)
{
	const size_t extra = b->thp ? HUGE_2M : 0;
	uintptr_t start;

	memset(r, 0, sizeof(*r));
	r->len = b->thp ? (size + HUGE_2M - 1) / HUGE_2M * HUGE_2M
			: (size + PAGE - 1) / PAGE * PAGE;
	r->map_len = r->len + extra;
	r->map = mmap(NULL, r->map_len, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (r->map == MAP_FAILED) {
		cli_error("bench: floors: cannot map %zu bytes: %s", r->len,
			  strerror(errno));
		return -1;
	}
	start = (uintptr_t)r->map;
	if (extra)
		start = (start + extra - 1) & ~(uintptr_t)(extra - 1);
	r->mem = (uint8_t *)start;
	madvise(r->mem, r->len, b->thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	bank_format(r->mem, r->len, b->seed);
	return 0;
}

static void region_unmap(struct region *r)
{
	if (r->map && r->map != MAP_FAILED)
		munmap(r->map, r->map_len);
}

/* Remove @path and wait until the filesystem is done with it: on ext4
 * with "discard" the freed blocks are discarded at the next commit, which
 * would otherwise stall the next measurement. */
void bench_settle(const char *dir, const char *path)
{
	const int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (path)
		unlink(path);
	if (fd >= 0) {
		syncfs(fd);
		close(fd);
	}
}

static double floor_disk(const struct bench *b, const struct region *r,
			 bool *direct)
{
	char path[PATH_MAX];
	uint64_t t0;
	int fd, err = 0;

	snprintf(path, sizeof(path), "%s/disk-floor", b->dir);
	bench_settle(b->dir, NULL);
	t0 = cli_now_ns();
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_DIRECT,
		  0600);
	*direct = fd >= 0;
	if (fd < 0 && errno == EINVAL)
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		cli_error("bench: floors: %s: %s", path, strerror(errno));
		return NAN;
	}
	for (size_t off = 0; off < r->len && !err; off += DISK_BLOCK) {
		const size_t n =
			r->len - off < DISK_BLOCK ? r->len - off : DISK_BLOCK;
		const ssize_t w = write(fd, r->mem + off, n);

		if (w != (ssize_t)n)
			err = w < 0 ? errno : EIO;
	}
	if (!err && fsync(fd))
		err = errno;
	close(fd);
	t0 = cli_now_ns() - t0;
	bench_settle(b->dir, path);
	if (err) {
		cli_error("bench: floors: writing %s: %s", path, strerror(err));
		return NAN;
	}
	return (double)r->len / GIB / ((double)t0 / 1e9);
}

void bench_measure_floors(struct bench *b, uint64_t size, struct floors *fl)
{
	char s[CLI_FMT_LEN];
	struct bgsnap_floors m = { .size = sizeof(m) };
	struct region r;
	int ret;

	memset(fl, 0, sizeof(*fl));
	fl->wp_ms = fl->fault_p50_us = fl->fault_p99_us = NAN;
	fl->fault_same_cpu_p50_us = fl->fault_other_cpu_p50_us = NAN;
	fl->lz4_gibs = fl->lz4_ratio = fl->disk_gibs = NAN;
	bench_progress(b, "%s: floors (formatting the content)",
		       cli_fmt_size(s, size));
	if (region_map(b, size, &r))
		return;
	fl->disk_gibs = floor_disk(b, &r, &fl->disk_direct);
	ret = bgsnap_measure_floors(r.mem, r.len, b->thp ? HUGE_2M : PAGE, &m);
	if (ret)
		cli_warn("bench: floors: %s", strerror(-ret));
	fl->wp_ms = m.write_protect_ms;
	fl->fault_p50_us = m.fault_p50_us;
	fl->fault_p99_us = m.fault_p99_us;
	fl->fault_same_cpu_p50_us = m.fault_same_cpu_p50_us;
	fl->fault_other_cpu_p50_us = m.fault_other_cpu_p50_us;
	fl->lz4_gibs = m.lz4_gib_s;
	fl->lz4_ratio = m.lz4_ratio;
	region_unmap(&r);
	fl->ok = !isnan(fl->wp_ms) && !isnan(fl->lz4_gibs) &&
		 !isnan(fl->disk_gibs);
	bench_progress(b,
		       "%s: floors: write-protect %.2f ms, fault p50 %.1f us, "
		       "lz4 %.2f GiB/s, disk %.2f GiB/s",
		       s, fl->wp_ms, fl->fault_p50_us, fl->lz4_gibs,
		       fl->disk_gibs);
}
