/* SPDX-License-Identifier: MIT */
/*
 * bgsnap bench: the floors, what the hardware and the kernel allow on a
 * region like the guest's: write-protecting it whole, the fault round
 * trip, lz4 alone on its content, a plain disk write. The only file of
 * bench that makes raw UFFDIO ioctls and calls liblz4.
 *
 * DESIGN
 * Threads: main; the handler runs only during the fault round-trip floor,
 * reading the floor's userfaultfd and unprotecting each faulted page;
 * main writes, then stops and joins it.
 */
#include "bench.h"

#include <bgsnap.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/userfaultfd.h>
#include <lz4.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
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
	int uffd;
};

/* Like the guest's memory: private anonymous, 4 KiB or THP, with the
 * guest's content (the same seed). */
static int region_map(const struct bench *b, uint64_t size, struct region *r)
{
	const size_t extra = b->thp ? HUGE_2M : 0;
	uintptr_t start;

	memset(r, 0, sizeof(*r));
	r->uffd = -1;
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
	if (r->uffd >= 0)
		close(r->uffd);
	if (r->map && r->map != MAP_FAILED)
		munmap(r->map, r->map_len);
}

static double floor_lz4(const struct region *r, double *ratio)
{
	const int bound = LZ4_compressBound((int)LZ4_CHUNK);
	char *dst = malloc((size_t)bound);
	uint64_t out = 0, t0;
	double s;

	if (!dst)
		return NAN;
	t0 = cli_now_ns();
	for (size_t off = 0; off + LZ4_CHUNK <= r->len; off += LZ4_CHUNK)
		out += (uint64_t)LZ4_compress_fast((const char *)r->mem + off,
						   dst, (int)LZ4_CHUNK, bound,
						   1);
	s = (double)(cli_now_ns() - t0) / 1e9;
	free(dst);
	*ratio = out ? (double)(r->len / LZ4_CHUNK * LZ4_CHUNK) / (double)out
		     : NAN;
	return (double)r->len / GIB / s;
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

static int uffd_wp(int uffd, void *addr, size_t len, bool on)
{
	struct uffdio_writeprotect wp = {
		.range = { .start = (uintptr_t)addr, .len = len },
		.mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};

	return ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) ? -errno : 0;
}

/* A userfaultfd of our own over the region, registered for write
 * protection. Raw syscalls: this is a measuring tool, not the library. */
static int floor_uffd(struct region *r)
{
	struct uffdio_api api = { .api = UFFD_API,
				  .features = UFFD_FEATURE_PAGEFAULT_FLAG_WP };
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)r->mem, .len = r->len },
		.mode = UFFDIO_REGISTER_MODE_WP,
	};

	r->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (r->uffd < 0 || ioctl(r->uffd, UFFDIO_API, &api) ||
	    ioctl(r->uffd, UFFDIO_REGISTER, &reg)) {
		cli_error("bench: floors: userfaultfd: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static double floor_wp(struct region *r)
{
	double t[WP_REPEAT];

	for (int i = 0; i < WP_REPEAT; i++) {
		const uint64_t t0 = cli_now_ns();

		if (uffd_wp(r->uffd, r->mem, r->len, true))
			return NAN;
		t[i] = (double)(cli_now_ns() - t0) / 1e6;
		if (uffd_wp(r->uffd, r->mem, r->len, false))
			return NAN;
	}
	return bench_median(t, WP_REPEAT);
}

struct handler {
	pthread_t thread;
	struct region *r;
	size_t unit; /* what one fault unprotects */
	_Atomic bool stop;
};

static void *handler_main(void *arg)
{
	struct handler *h = arg;
	struct pollfd p = { .fd = h->r->uffd, .events = POLLIN };

	while (!atomic_load(&h->stop)) {
		struct uffd_msg msg;

		if (poll(&p, 1, 10) <= 0)
			continue;
		if (read(h->r->uffd, &msg, sizeof(msg)) != sizeof(msg) ||
		    msg.event != UFFD_EVENT_PAGEFAULT)
			continue;
		uffd_wp(h->r->uffd,
			(void *)(uintptr_t)(msg.arg.pagefault.address &
					    ~(uint64_t)(h->unit - 1)),
			h->unit, false);
	}
	return NULL;
}

/* Writes to protected pages, each served by the handler thread. */
static int floor_faults(struct region *r, bool thp, double *p50, double *p99)
{
	struct handler h = { .r = r, .unit = thp ? HUGE_2M : PAGE };
	const size_t units = r->len / h.unit;
	const size_t n = units < FAULTS ? units : FAULTS;
	double *lat = calloc(n, sizeof(*lat));
	int ret;

	if (!lat || uffd_wp(r->uffd, r->mem, r->len, true)) {
		free(lat);
		return -1;
	}
	ret = -pthread_create(&h.thread, NULL, handler_main, &h);
	for (size_t i = 0; !ret && i < n; i++) {
		/* Spread over the region; the value written is the one there:
		 * the content stays the guest's. */
		_Atomic uint64_t *p =
			(_Atomic uint64_t *)(r->mem +
					     (i * (units / n)) * h.unit + 64);
		const uint64_t v =
			atomic_load_explicit(p, memory_order_relaxed);
		const uint64_t t0 = cli_now_ns();

		atomic_store_explicit(p, v, memory_order_relaxed);
		lat[i] = (double)(cli_now_ns() - t0) / 1e3;
	}
	if (!ret) {
		atomic_store(&h.stop, true);
		pthread_join(h.thread, NULL);
		qsort(lat, n, sizeof(*lat), dcmp);
		*p50 = lat[n / 2];
		*p99 = lat[n * 99 / 100];
	}
	uffd_wp(r->uffd, r->mem, r->len, false);
	free(lat);
	return ret;
}

void bench_measure_floors(struct bench *b, uint64_t size, struct floors *fl)
{
	char s[CLI_FMT_LEN];
	struct region r;

	memset(fl, 0, sizeof(*fl));
	fl->wp_ms = fl->fault_p50_us = fl->fault_p99_us = NAN;
	fl->lz4_gibs = fl->lz4_ratio = fl->disk_gibs = NAN;
	bench_progress(b, "%s: floors (formatting the content)",
		       cli_fmt_size(s, size));
	if (region_map(b, size, &r))
		return;
	fl->lz4_gibs = floor_lz4(&r, &fl->lz4_ratio);
	fl->disk_gibs = floor_disk(b, &r, &fl->disk_direct);
	if (!floor_uffd(&r)) {
		fl->wp_ms = floor_wp(&r);
		if (floor_faults(&r, b->thp, &fl->fault_p50_us,
				 &fl->fault_p99_us))
			cli_warn("bench: floors: the fault round trip failed");
	}
	region_unmap(&r);
	fl->ok = !isnan(fl->wp_ms) && !isnan(fl->lz4_gibs) &&
		 !isnan(fl->disk_gibs);
	bench_progress(b,
		       "%s: floors: write-protect %.2f ms, fault p50 %.1f us, "
		       "lz4 %.2f GiB/s, disk %.2f GiB/s",
		       s, fl->wp_ms, fl->fault_p50_us, fl->lz4_gibs,
		       fl->disk_gibs);
}
