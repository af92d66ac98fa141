/* SPDX-License-Identifier: MIT */
/*
 * Restore speed against the limits it works within, measured in the same
 * run on the same snapshot (issue 5):
 *
 *   eager  bgsnap_restore() of a snapshot of -s MiB of realistic content
 *          (rt_fill: zero pages, structs, text, random) into fresh memory,
 *          against reading the file alone (sequential 1 MiB reads) and lz4
 *          decompression alone on one thread (every record from memory into
 *          a cache-hot buffer; raw records copied). Before the restore and
 *          the read floor the file's pages are dropped from the page cache,
 *          so both read from the disk, as a restore after a reboot does.
 *   lazy   for each -l size, bgsnap_restore_start() with
 *          BGSNAP_RESTORE_LAZY: the time until the owner may run (resume)
 *          and the fault service latency (fault read to page in place),
 *          while a thread reads random pages during the background fill;
 *          "cold" with the file's pages dropped from the page cache (each
 *          fault then waits for the disk), "warm" with the file read just
 *          before (a snapshot just taken, or on tmpfs).
 *
 * Figures are medians of -r repeats, as GiB of memory restored per second.
 * Every restore is checked against the source (XXH3 of the whole region),
 * so a fast wrong restore cannot pass for a fast one.
 *
 *   bench_restore [-s MiB] [-l MiB,MiB...] [-d dir] [-r repeats]
 */
#include "rs_testutil.h"
#include "testutil.h"

#include "bgsnap.h"

#include <errno.h>
#include <fcntl.h>
#include <lz4.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#define MiB	    ((size_t)1 << 20)
#define GiB	    ((size_t)1 << 30)
#define MAX_REPEATS 15
#define MAX_LAZY    8
#define READ_CHUNK  (1u << 20)

struct bench {
	const char *dir;
	int repeats;
	char path[4096];
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int dcmp(const void *a, const void *b)
{
	const double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), dcmp);
	return v[n / 2];
}

static void die(const char *what, int err)
{
	fprintf(stderr, "bench_restore: %s: %s\n", what, bgsnap_strerror(err));
	exit(1);
}

static void die_h(struct bgsnap *h, const char *what, int err)
{
	fprintf(stderr, "bench_restore: %s: %s: %s\n", what,
		bgsnap_strerror(err), bgsnap_last_error(h));
	exit(1);
}

/* Fresh, unpopulated anonymous memory: what a restore starts from. */
static void *map(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED)
		die("mmap", -errno);
	return p;
}

static struct bgsnap *handle_for(void *mem, size_t len)
{
	struct bgsnap *h;
	int ret = bgsnap_new(&h);

	if (ret)
		die("bgsnap_new", ret);
	ret = bgsnap_add_region(h, "ram", mem, len);
	if (ret)
		die_h(h, "bgsnap_add_region", ret);
	return h;
}

/* Drop the file's pages from the page cache: the next read is the disk's. */
static void drop_cache(const char *path)
{
	const int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		die(path, -errno);
	if (fdatasync(fd) || posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED))
		die("dropping the page cache", -errno);
	close(fd);
}

/* Save @len bytes of realistic content; returns the content's XXH3. */
static uint64_t make_snapshot(struct bench *b, size_t len, uint64_t seed)
{
	uint8_t *src = map(len);
	struct bgsnap *h = handle_for(src, len);
	uint64_t sum;
	int ret;

	rt_fill(src, len / RS_PAGE, RT_REALISTIC, seed);
	sum = XXH3_64bits(src, len);
	ret = bgsnap_save(h, b->path, NULL);
	if (ret)
		die_h(h, "bgsnap_save", ret);
	bgsnap_free(h);
	munmap(src, len);
	return sum;
}

static void check(const void *mem, size_t len, uint64_t want, const char *how)
{
	if (XXH3_64bits(mem, len) != want) {
		fprintf(stderr, "bench_restore: the %s restore is wrong\n",
			how);
		exit(1);
	}
}

/* ---- the limits ---------------------------------------------------------- */

static double run_read(const char *path)
{
	char *buf = malloc(READ_CHUNK);
	const int fd = open(path, O_RDONLY | O_CLOEXEC);
	const double t = now();
	ssize_t n;

	if (!buf || fd < 0)
		die(path, -errno);
	while ((n = read(fd, buf, READ_CHUNK)) > 0)
		;
	if (n < 0)
		die("read", -errno);
	const double dt = now() - t;

	close(fd);
	free(buf);
	return dt;
}

/* Every record decoded on this thread, the file already in memory. */
static double run_lz4(const char *path)
{
	const int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct rs_reader *r;
	size_t len, max = 0;
	uint8_t *file, *dst;
	int ret;

	if (fd < 0)
		die(path, -errno);
	file = rt_slurp(fd, &len);
	ret = bgs_rs_open(&r, fd, NULL);
	if (ret)
		die("bgs_rs_open", ret);
	for (size_t i = 0; i < bgs_rs_extent_count(r); i++)
		if (bgs_rs_extent(r, i)->npages > max)
			max = bgs_rs_extent(r, i)->npages;
	dst = malloc(max * RS_PAGE);
	if (!file || !dst)
		die("malloc", -ENOMEM);

	const double t = now();

	for (size_t i = 0; i < bgs_rs_extent_count(r); i++) {
		const struct rs_extent *e = bgs_rs_extent(r, i);
		const size_t raw = e->npages * RS_PAGE;
		const uint8_t *data = file + e->offset + bgs_rs_rechdr_len(r);

		if (e->offset + bgs_rs_rechdr_len(r) + e->stored_len > len)
			die("a record beyond the file", -EINVAL);
		if (e->encoding == RS_ENC_RAW)
			memcpy(dst, data, raw);
		else if (e->encoding == RS_ENC_LZ4 &&
			 LZ4_decompress_safe((const char *)data, (char *)dst,
					     (int)e->stored_len,
					     (int)raw) != (int)raw)
			die("lz4 decompress", -EIO);
	}
	const double dt = now() - t;

	free(dst);
	free(file);
	bgs_rs_close(r);
	close(fd);
	return dt;
}

/* ---- eager --------------------------------------------------------------- */

static double run_eager(struct bench *b, size_t len, uint64_t sum)
{
	uint8_t *dst = map(len);
	struct bgsnap *h = handle_for(dst, len);
	const double t = now();
	const int ret = bgsnap_restore(h, b->path, NULL);
	const double dt = now() - t;

	if (ret)
		die_h(h, "bgsnap_restore", ret);
	check(dst, len, sum, "eager");
	bgsnap_free(h);
	munmap(dst, len);
	return dt;
}

static void bench_eager(struct bench *b, size_t len)
{
	double rd[MAX_REPEATS], lz[MAX_REPEATS], eg[MAX_REPEATS];
	const uint64_t sum = make_snapshot(b, len, 1);
	const double gib = (double)len / GiB;

	for (int i = 0; i < b->repeats; i++) {
		drop_cache(b->path);
		rd[i] = run_read(b->path);
		lz[i] = run_lz4(b->path);
		drop_cache(b->path);
		eg[i] = run_eager(b, len, sum);
	}
	const double read = gib / median(rd, b->repeats);
	const double lz4 = gib / median(lz, b->repeats);
	const double eager = gib / median(eg, b->repeats);
	const double floor = read < lz4 ? read : lz4;

	printf("eager, %zu MiB (GiB of memory restored per second):\n"
	       "  read the file      %6.2f GiB/s  (page cache dropped)\n"
	       "  lz4 alone          %6.2f GiB/s  (one thread)\n"
	       "  bgsnap_restore     %6.2f GiB/s  (%.0f ms)\n"
	       "  target: eager >= 80%% of min(read, lz4): %.0f%%  %s\n",
	       len / MiB, read, lz4, eager, 1e3 * gib / eager,
	       100 * eager / floor, eager >= 0.8 * floor ? "ok" : "MISS");
	unlink(b->path);
}

/* ---- lazy ---------------------------------------------------------------- */

struct toucher {
	const volatile uint8_t *mem;
	size_t npages;
	atomic_bool stop;
	uint64_t touches;
};

/* The owner, resumed: reads random pages until the fill is done. */
static void *touch_main(void *arg)
{
	struct toucher *t = arg;
	uint64_t state = 42, sink = 0;

	while (!atomic_load_explicit(&t->stop, memory_order_relaxed)) {
		sink += t->mem[rt_rand(&state) % t->npages * RS_PAGE];
		t->touches++;
	}
	return (void *)(uintptr_t)sink;
}

static void lazy_row(struct bench *b, size_t len, uint64_t sum, bool cold)
{
	const struct bgsnap_restore_opts o = { .size = sizeof(o),
					       .flags = BGSNAP_RESTORE_LAZY };
	double resume[MAX_REPEATS], p50[MAX_REPEATS], p99[MAX_REPEATS],
		total[MAX_REPEATS], faults[MAX_REPEATS];

	for (int i = 0; i < b->repeats; i++) {
		uint8_t *dst = map(len);
		struct bgsnap *h = handle_for(dst, len);
		struct toucher t = { .mem = dst, .npages = len / RS_PAGE };
		struct bgsnap_stats st = { .size = sizeof(st) };
		pthread_t thread;
		int ret;

		if (cold)
			drop_cache(b->path);
		else
			run_read(b->path);
		ret = bgsnap_restore_start(h, b->path, &o);
		if (ret)
			die_h(h, "bgsnap_restore_start", ret);
		if (pthread_create(&thread, NULL, touch_main, &t))
			die("pthread_create", -EAGAIN);
		ret = bgsnap_wait(h);
		atomic_store(&t.stop, true);
		pthread_join(thread, NULL);
		if (ret)
			die_h(h, "lazy restore", ret);
		if (bgsnap_stats(h, &st))
			die("bgsnap_stats", -EBUSY);
		check(dst, len, sum, "lazy");
		resume[i] = (double)st.resume_ns / 1e6;
		p50[i] = (double)st.stall_ns_p50 / 1e3;
		p99[i] = (double)st.stall_ns_p99 / 1e3;
		total[i] = (double)st.elapsed_ns / 1e9;
		faults[i] = (double)st.faults;
		bgsnap_free(h);
		munmap(dst, len);
	}
	const double r = median(resume, b->repeats);
	const double f = median(p50, b->repeats);

	printf("lazy, %5zu MiB, %s: resume %7.3f ms, fault service p50 %5.1f "
	       "us "
	       "p99 %6.1f us, %6.0f faults, all in place after %.2f s  %s\n",
	       len / MiB, cold ? "cold" : "warm", r, f, median(p99, b->repeats),
	       median(faults, b->repeats), median(total, b->repeats),
	       r < 5 && f < 50 ? "ok" : "MISS");
}

static void bench_lazy(struct bench *b, size_t len)
{
	const uint64_t sum = make_snapshot(b, len, 2);

	lazy_row(b, len, sum, true);
	lazy_row(b, len, sum, false);
	unlink(b->path);
}

/* ---- main ---------------------------------------------------------------- */

static void usage(void)
{
	fprintf(stderr, "usage: bench_restore [-s MiB] [-l MiB,MiB...] "
			"[-d dir] [-r repeats]\n");
	exit(2);
}

static size_t mib(const char *s, char **end)
{
	const unsigned long long v = strtoull(s, end, 10);

	if (*end == s || !v || v > (1ull << 24))
		usage();
	return (size_t)v * MiB;
}

int main(int argc, char **argv)
{
	struct bench b = { .dir = ".", .repeats = 3 };
	size_t eager = GiB, lazy[MAX_LAZY] = { GiB, 8 * GiB };
	int nlazy = 2, opt;
	char load[128], *end;

	while ((opt = getopt(argc, argv, "s:l:d:r:h")) != -1) {
		switch (opt) {
		case 's':
			eager = mib(optarg, &end);
			if (*end)
				usage();
			break;
		case 'l':
			nlazy = 0;
			for (const char *s = optarg;; s = end + 1) {
				if (nlazy == MAX_LAZY)
					usage();
				lazy[nlazy++] = mib(s, &end);
				if (*end != ',')
					break;
			}
			if (*end)
				usage();
			break;
		case 'd':
			b.dir = optarg;
			break;
		case 'r':
			b.repeats = atoi(optarg);
			break;
		default:
			usage();
		}
	}
	if (optind != argc || b.repeats < 1 || b.repeats > MAX_REPEATS)
		usage();
	snprintf(b.path, sizeof(b.path), "%s/bench_restore.%d.bgs", b.dir,
		 (int)getpid());
	printf("bench_restore: realistic content, %d repeats (median), "
	       "files in %s, %ld CPUs, load %s",
	       b.repeats, b.dir, sysconf(_SC_NPROCESSORS_ONLN),
	       tu_loadavg(load, sizeof(load)));
	/* A missed target is a figure to report, not a failure. */
	bench_eager(&b, eager);
	printf("lazy (targets: resume < 5 ms, fault service p50 < 50 us):\n");
	for (int i = 0; i < nlazy; i++)
		bench_lazy(&b, lazy[i]);
	printf("load at the end %s", tu_loadavg(load, sizeof(load)));
	return 0;
}
