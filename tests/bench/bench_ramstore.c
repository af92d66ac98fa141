/* SPDX-License-Identifier: MIT */
/*
 * Store throughput against the limits it works within, measured in the
 * same run on the same bytes: memcpy, lz4 alone on one core (compress and
 * decompress, in the writer's record size), and a plain sequential write
 * of the bytes to the same filesystem with fsync. Three contents: all
 * zero, realistic (zero, structs, text, random) and random.
 *
 *   bench_ramstore [-s MiB] [-d dir] [-r repeats] [-a accel] [-1 MiB]
 *
 * -1: also time single-page puts over that many MiB (the fault path).
 * Figures are GiB of input (page data) per second of wall time, medians
 * of the repeats, and the same per second of CPU time of the calling
 * thread (what the copier pays; robust on a loaded machine, but blind to
 * work done by kernel workers). The reader reads the file just written:
 * the first repeat from the disk (the writer bypasses the page cache),
 * the median from the page cache.
 */
#include "rs_testutil.h"
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <lz4.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define CHUNK_PAGES 512
#define CHUNK	    (CHUNK_PAGES * RS_PAGE)
#define MAX_REPEATS 15

struct bench {
	size_t size; /* bytes of page data */
	const char *dir;
	int repeats;
	int accel;
	size_t single; /* bytes put one page at a time, 0: skip */
	uint8_t *src, *dst, *comp;
	size_t *clen; /* compressed length of each chunk */
	char path[4096];
};

static double clock_s(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double now(void)
{
	return clock_s(CLOCK_MONOTONIC);
}

static double cpu_now(void)
{
	return clock_s(CLOCK_THREAD_CPUTIME_ID);
}

struct rate {
	double wall, cpu; /* GiB/s */
};

static int dcmp(const void *a, const void *b)
{
	const double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/*
 * Remove the last file and wait until the filesystem is done with it: on
 * ext4 mounted with "discard" the freed blocks are discarded at the next
 * journal commit, which would otherwise stall the next measurement.
 */
static void settle(struct bench *b)
{
	const int fd = open(b->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	unlink(b->path);
	if (fd >= 0) {
		syncfs(fd);
		close(fd);
	}
}

static double run_verify(struct bench *b);
static double run_stream(struct bench *b);
static double run_decode(struct bench *b);

/* Median throughput of @fn over @bytes, by wall and by thread CPU. */
static struct rate measure(struct bench *b, double (*fn)(struct bench *),
			   size_t bytes)
{
	double t[MAX_REPEATS], c[MAX_REPEATS];
	const double gib = (double)bytes / (1u << 30);

	for (int i = 0; i < b->repeats; i++) {
		double c0;

		if (fn != run_verify && fn != run_stream && fn != run_decode)
			settle(b);
		c0 = cpu_now();
		t[i] = fn(b);
		c[i] = cpu_now() - c0;
	}
	qsort(t, (size_t)b->repeats, sizeof(*t), dcmp);
	qsort(c, (size_t)b->repeats, sizeof(*c), dcmp);
	return (struct rate){ gib / t[b->repeats / 2],
			      gib / c[b->repeats / 2] };
}

static void *map(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);

	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	return p;
}

static void die(const char *what, int err)
{
	fprintf(stderr, "bench_ramstore: %s: %s\n", what,
		err < -4095 ? "format error" : strerror(-err));
	exit(1);
}

/* ---- the limits ---------------------------------------------------------- */

static double run_memcpy(struct bench *b)
{
	const double t = now();

	for (size_t off = 0; off < b->size; off += CHUNK)
		memcpy(b->dst + off, b->src + off, CHUNK);
	return now() - t;
}

static double run_lz4(struct bench *b)
{
	const int bound = LZ4_compressBound(CHUNK);
	const double t = now();

	for (size_t i = 0; i < b->size / CHUNK; i++)
		b->clen[i] = (size_t)LZ4_compress_fast(
			(const char *)b->src + i * CHUNK,
			(char *)b->comp + i * (size_t)bound, CHUNK, bound,
			b->accel);
	return now() - t;
}

static double run_unlz4(struct bench *b)
{
	const int bound = LZ4_compressBound(CHUNK);
	const double t = now();

	for (size_t i = 0; i < b->size / CHUNK; i++)
		if (LZ4_decompress_safe((const char *)b->comp +
						i * (size_t)bound,
					(char *)b->dst + i * CHUNK,
					(int)b->clen[i], CHUNK) != CHUNK)
			die("lz4 decompress", -EIO);
	return now() - t;
}

static double run_disk(struct bench *b)
{
	const double t = now();
	const int fd =
		open(b->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0)
		die(b->path, -errno);
	for (size_t off = 0; off < b->size; off += 8u << 20) {
		const size_t n =
			b->size - off < (8u << 20) ? b->size - off : 8u << 20;

		if (write(fd, b->src + off, n) != (ssize_t)n)
			die("write", -errno);
	}
	if (fsync(fd))
		die("fsync", -errno);
	close(fd);
	return now() - t;
}

/* ---- the store ----------------------------------------------------------- */

static struct rs_region bench_region(size_t size)
{
	struct rs_region r = { .base = 1ull << 40,
			       .length = size,
			       .page_size = RS_PAGE,
			       .kind = RS_KIND_ANON };

	strcpy(r.name, "ram");
	return r;
}

static double write_store(struct bench *b, size_t run_pages, size_t bytes,
			  struct rs_writer_stats *ws)
{
	const struct rs_region r = bench_region(bytes);
	const struct rs_writer_opts o = { .lz4_acceleration = b->accel,
					  .regions = &r,
					  .nregions = 1 };
	const size_t pages = bytes / RS_PAGE;
	struct rs_writer *w;
	double t = now();
	int ret = bgs_rs_writer_open_path(&w, b->path, &o);

	if (ret)
		die("open", ret);
	for (size_t p = 0; p < pages && !ret; p += run_pages)
		ret = bgs_rs_put_pages(w, 0, p, run_pages,
				       b->src + p * RS_PAGE);
	if (ret)
		die("put_pages", ret);
	if (ws)
		bgs_rs_writer_stats(w, ws);
	ret = bgs_rs_writer_commit(w);
	if (ret)
		die("commit", ret);
	return now() - t;
}

static double run_writer(struct bench *b)
{
	return write_store(b, CHUNK_PAGES, b->size, NULL);
}

static double run_single(struct bench *b)
{
	return write_store(b, 1, b->single, NULL);
}

static double run_verify(struct bench *b)
{
	const int fd = open(b->path, O_RDONLY | O_CLOEXEC);
	struct rs_reader *r;
	struct rs_diag d;
	double t = now();
	int ret = bgs_rs_open(&r, fd, &d);

	if (!ret)
		ret = bgs_rs_verify(r, 0, &d, NULL, NULL);
	if (ret)
		die(d.msg, ret);
	t = now() - t;
	bgs_rs_close(r);
	close(fd);
	return t;
}

static double run_stream(struct bench *b)
{
	const int fd = open(b->path, O_RDONLY | O_CLOEXEC);
	struct rs_stream *s;
	struct rs_item it;
	struct rs_diag d;
	double t = now();
	int ret = bgs_rs_stream_open(&s, fd, &d);

	if (ret)
		die(d.msg, ret);
	while ((ret = bgs_rs_stream_next(s, &it, &d)) == 1)
		if (it.data && it.type == RS_ITEM_PAGES)
			memcpy(b->dst + it.first * RS_PAGE, it.data, it.len);
	if (ret)
		die(d.msg, ret);
	t = now() - t;
	bgs_rs_stream_close(s);
	close(fd);
	return t;
}

/* Restore's way: every extent decoded straight into its place. */
static double run_decode(struct bench *b)
{
	const int fd = open(b->path, O_RDONLY | O_CLOEXEC);
	struct rs_decoder *dec = NULL;
	struct rs_reader *r;
	struct rs_diag d;
	double t = now();
	int ret = bgs_rs_open(&r, fd, &d);

	if (!ret)
		ret = bgs_rs_decoder_new(&dec);
	for (size_t i = 0; !ret && i < bgs_rs_extent_count(r); i++) {
		const struct rs_extent *e = bgs_rs_extent(r, i);

		ret = bgs_rs_decode_to(r, dec, i, b->dst + e->first * RS_PAGE,
				       &d);
		ret = ret < 0 ? ret : 0;
	}
	if (ret)
		die(d.msg, ret);
	t = now() - t;
	bgs_rs_decoder_free(dec);
	bgs_rs_close(r);
	close(fd);
	return t;
}

/* ---- the table ----------------------------------------------------------- */

static void row(const char *what, struct rate r, double mc, double lz,
		double disk, const char *extra)
{
	printf("  %-26s %6.2f %6.2f  %6.2f %6.2f %6.2f  %s\n", what, r.wall,
	       r.cpu, r.wall / mc, r.wall / lz, r.wall / disk, extra);
}

static void bench_content(struct bench *b, enum rt_content c, const char *name)
{
	struct rate mc, lz, unlz, disk, wr, one = { 0 }, ver, str, dec;
	struct rs_writer_stats ws;
	size_t comp = 0;
	char extra[160];
	double lim;

	if (c == RT_ZERO)
		memset(b->src, 0, b->size); /* populated, not the zero page */
	else
		rt_fill(b->src, b->size / RS_PAGE, c, 42);
	mc = measure(b, run_memcpy, b->size);
	lz = measure(b, run_lz4, b->size);
	for (size_t i = 0; i < b->size / CHUNK; i++)
		comp += b->clen[i];
	unlz = measure(b, run_unlz4, b->size);
	disk = measure(b, run_disk, b->size);
	wr = measure(b, run_writer, b->size);
	settle(b);
	write_store(b, CHUNK_PAGES, b->size, &ws);
	ver = measure(b, run_verify, b->size);
	str = measure(b, run_stream, b->size);
	dec = measure(b, run_decode, b->size);
	if (b->single)
		one = measure(b, run_single, b->single);
	settle(b);

	printf("\n%s, %zu MiB          GiB/s: wall    cpu  /memcpy   /lz4  "
	       "/disk"
	       "  (ratios of wall figures)\n",
	       name, b->size >> 20);
	row("memcpy", mc, mc.wall, lz.wall, disk.wall, "");
	snprintf(extra, sizeof(extra), "compression %.2f",
		 (double)b->size / (double)comp);
	row("lz4 compress alone", lz, mc.wall, lz.wall, disk.wall, extra);
	row("disk write + fsync", disk, mc.wall, lz.wall, disk.wall, "");
	lim = lz.wall < disk.wall ? lz.wall : disk.wall;
	snprintf(extra, sizeof(extra),
		 "/min(lz4,disk) %.2f (cpu /lz4 %.2f), compression %.2f, "
		 "peak buffer %.1f MiB",
		 wr.wall / lim, wr.cpu / lz.cpu,
		 (double)b->size / (double)ws.stored_bytes,
		 (double)ws.peak_buffer_bytes / (1 << 20));
	row("writer, 512-page puts", wr, mc.wall, lz.wall, disk.wall, extra);
	if (b->single) {
		snprintf(extra, sizeof(extra), "%.2f us/page wall, %.2f cpu",
			 1e6 * RS_PAGE / (one.wall * (1u << 30)),
			 1e6 * RS_PAGE / (one.cpu * (1u << 30)));
		row("writer, 1-page puts", one, mc.wall, lz.wall, disk.wall,
		    extra);
	}
	row("lz4 decompress alone", unlz, mc.wall, lz.wall, disk.wall,
	    "(the reader's limit)");
	snprintf(extra, sizeof(extra), "/lz4 decompress %.2f (cpu %.2f)",
		 ver.wall / unlz.wall, ver.cpu / unlz.cpu);
	row("reader: verify", ver, mc.wall, lz.wall, disk.wall, extra);
	snprintf(extra, sizeof(extra), "/lz4 decompress %.2f (cpu %.2f)",
		 str.wall / unlz.wall, str.cpu / unlz.cpu);
	row("reader: stream + copy out", str, mc.wall, lz.wall, disk.wall,
	    extra);
	snprintf(extra, sizeof(extra), "/lz4 decompress %.2f (cpu %.2f)",
		 dec.wall / unlz.wall, dec.cpu / unlz.cpu);
	row("reader: decode_to (restore)", dec, mc.wall, lz.wall, disk.wall,
	    extra);
	fflush(stdout);
}

static void usage(void)
{
	fprintf(stderr, "usage: bench_ramstore [-s MiB] [-d dir] "
			"[-r repeats] [-a accel] [-1 MiB]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct bench b = {
		.size = 1u << 30, .dir = ".", .repeats = 3, .accel = 1
	};
	char load[128];
	int opt;

	while ((opt = getopt(argc, argv, "s:d:r:a:1:h")) != -1) {
		switch (opt) {
		case 's':
			b.size = (size_t)strtoull(optarg, NULL, 0) << 20;
			break;
		case 'd':
			b.dir = optarg;
			break;
		case 'r':
			b.repeats = atoi(optarg);
			break;
		case 'a':
			b.accel = atoi(optarg);
			break;
		case '1':
			b.single = (size_t)strtoull(optarg, NULL, 0) << 20;
			break;
		default:
			usage();
		}
	}
	if (!b.size || b.size % CHUNK || b.repeats < 1 ||
	    b.repeats > MAX_REPEATS || b.single % RS_PAGE)
		usage();
	snprintf(b.path, sizeof(b.path), "%s/bench_ramstore.%d.bgs", b.dir,
		 (int)getpid());
	b.src = map(b.size);
	b.dst = map(b.size);
	b.comp = map(b.size / CHUNK * (size_t)LZ4_compressBound(CHUNK));
	b.clen = calloc(b.size / CHUNK, sizeof(*b.clen));
	printf("bench_ramstore: %zu MiB, %d repeats (median), lz4 "
	       "acceleration %d, files in %s, %ld CPUs, load %s",
	       b.size >> 20, b.repeats, b.accel, b.dir,
	       sysconf(_SC_NPROCESSORS_ONLN), tu_loadavg(load, sizeof(load)));
	bench_content(&b, RT_ZERO, "all-zero");
	bench_content(&b, RT_REALISTIC, "realistic");
	bench_content(&b, RT_RANDOM, "random");
	return 0;
}
