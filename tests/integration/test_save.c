/* SPDX-License-Identifier: MIT */
/*
 * The engine end to end, on the real kernel, with writers running
 * throughout: both point-in-time oracles (a reference copy taken while the
 * owner is paused at the snapshot instant, and the bank's books) across
 * every memory kind, several regions at once and a 1 GiB region; kernel-
 * mode writers; save-once; cancel and ENOSPC with nothing left behind.
 *
 * BGSNAP_TEST_REPEAT=N repeats each oracle case N times (default 2).
 */
#include "testutil.h"
#include "guest_bank.h"
#include "snap_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MiB (1UL << 20)

struct guest {
	const char *name;
	char *mem;
	size_t len;
	char *reference; /* copied while paused at the snapshot instant */
	struct bank bank;
	bool writers;
};

struct owner {
	struct guest *g;
	size_t n;
};

/* Pause: park every writer at an arbitrary point, then copy the memory
 * aside: that copy is the state at the snapshot instant. */
static int owner_pause(void *arg)
{
	struct owner *o = arg;

	for (size_t i = 0; i < o->n; i++)
		if (o->g[i].writers)
			bank_pause(&o->g[i].bank);
	for (size_t i = 0; i < o->n; i++)
		if (o->g[i].reference)
			memcpy(o->g[i].reference, o->g[i].mem, o->g[i].len);
	return 0;
}

static void owner_resume(void *arg)
{
	struct owner *o = arg;

	for (size_t i = 0; i < o->n; i++)
		if (o->g[i].writers)
			bank_resume(&o->g[i].bank);
}

enum kind {
	ANON = TU_ANON,
	THP = TU_THP,
	MEMFD = TU_MEMFD,
	HUGETLB = TU_HUGETLB
};

static char *map_kind(enum kind k, size_t len)
{
	char *p = tu_map_kind((enum tu_kind)k, len);

	assert_non_null(p);
	return p;
}

static void guest_init(struct guest *g, const char *name, enum kind k,
		       size_t len, unsigned writers)
{
	g->name = name;
	g->len = len;
	g->mem = map_kind(k, len);
	assert_non_null(g->mem);
	assert_int_equal(bank_format(g->mem, len, tu_seed()), 0);
	g->reference = malloc(len);
	assert_non_null(g->reference);
	memset(g->reference, 0, len); /* no page faults inside the pause */
	g->writers = writers > 0;
	if (writers)
		assert_int_equal(bank_start(&g->bank, g->mem, len, writers,
					    BANK_RANDOM, 0, tu_seed()),
				 0);
}

static void guest_fini(struct guest *g)
{
	if (g->writers)
		bank_stop(&g->bank);
	free(g->reference);
	tu_unmap(g->mem, g->len);
}

static void check_snapshot(const char *path, struct guest *g)
{
	char *image = malloc(g->len), why[256];

	assert_non_null(image);
	tu_snapshot_region(path, g->name, image, g->len);
	/* Oracle 1: byte for byte the memory at the instant. */
	if (memcmp(image, g->reference, g->len)) {
		for (size_t i = 0; i < g->len; i += 4096)
			if (memcmp(image + i, g->reference + i, 4096)) {
				fprintf(stderr,
					"# region %s: page %zu differs from "
					"the reference copy\n",
					g->name, i / 4096);
				break;
			}
		fail();
	}
	/* Oracle 2: the books balance. */
	if (bank_check(image, g->len, why, sizeof(why))) {
		fprintf(stderr, "# region %s: %s\n", g->name, why);
		fail();
	}
	free(image);
}

static unsigned repeats(void)
{
	const char *env = getenv("BGSNAP_TEST_REPEAT");

	return env ? (unsigned)atoi(env) : 2;
}

/* Save @n guests (regions) with their writers running; check both oracles,
 * that nothing stays protected and that the writers carried on. */
static void save_and_check(struct guest *g, size_t n,
			   const struct bgsnap_save_opts *extra)
{
	char path[256];
	struct owner o = { g, n };
	struct bgsnap_save_opts opts =
		extra ? *extra
		      : (struct bgsnap_save_opts){ .size = sizeof(opts) };
	struct bgsnap_stats st = { .size = sizeof(st) };
	struct bgsnap *h;
	struct bank_figures before, after;
	uint64_t pages = 0;

	snprintf(path, sizeof(path), "%s/save.bgs", tu_tmpdir());
	opts.pause = owner_pause;
	opts.resume = owner_resume;
	opts.arg = &o;
	assert_int_equal(bgsnap_new(&h), 0);
	for (size_t i = 0; i < n; i++) {
		if (bgsnap_add_region(h, g[i].name, g[i].mem, g[i].len))
			fprintf(stderr, "# %s\n", bgsnap_last_error(h));
		pages += g[i].len / 4096;
	}
	assert_int_equal(bgsnap_region_count(h), n);
	bank_figures(&g[0].bank, &before);
	if (bgsnap_save(h, path, &opts)) {
		fprintf(stderr, "# save: %s\n", bgsnap_last_error(h));
		fail();
	}
	assert_int_equal(bgsnap_stats(h, &st), 0);
	assert_int_equal(st.pages_total, pages);
	assert_int_equal(st.pages_by_scan + st.pages_by_fault +
				 st.pages_unpopulated,
			 pages);
	assert_true(st.blackout_ns > 0);
	fprintf(stderr,
		"# %zu region(s), %llu pages: blackout %.3f ms, "
		"elapsed %.1f ms, by fault %llu, faults %llu, stall p50 %.1f "
		"p99 %.1f max %.1f us, ratio %.2f\n",
		n, (unsigned long long)pages, st.blackout_ns / 1e6,
		st.elapsed_ns / 1e6, (unsigned long long)st.pages_by_fault,
		(unsigned long long)st.faults, st.stall_ns_p50 / 1e3,
		st.stall_ns_p99 / 1e3, st.stall_ns_max / 1e3,
		st.compression_ratio);
	for (size_t i = 0; i < n; i++) {
		tu_assert_unprotected(g[i].mem, g[i].len);
		check_snapshot(path, &g[i]);
	}
	if (g[0].writers) {
		bank_figures(&g[0].bank, &after);
		assert_true(after.ops > before.ops);
	}
	bgsnap_free(h);
	assert_int_equal(unlink(path), 0);
	tu_assert_no_file_like(tu_tmpdir(), "save.bgs");
}

static void oracle_case(enum kind k, size_t len)
{
	struct guest g = { 0 };

	guest_init(&g, "ram", k, len, 2);
	for (unsigned i = 0; i < repeats(); i++)
		save_and_check(&g, 1, NULL);
	guest_fini(&g);
}

static void test_anon(void **state)
{
	(void)state;
	oracle_case(ANON, 64 * MiB);
}

static void test_thp(void **state)
{
	(void)state;
	oracle_case(THP, 64 * MiB);
}

static void test_memfd(void **state)
{
	(void)state;
	oracle_case(MEMFD, 64 * MiB);
}

static void test_hugetlb(void **state)
{
	(void)state;
	oracle_case(HUGETLB, 32 * MiB);
}

static void test_several_regions(void **state)
{
	struct guest g[3] = { 0 };

	(void)state;
	guest_init(&g[0], "anon", ANON, 32 * MiB, 2);
	guest_init(&g[1], "thp", THP, 32 * MiB, 1);
	guest_init(&g[2], "memfd", MEMFD, 16 * MiB, 1);
	for (unsigned i = 0; i < repeats(); i++)
		save_and_check(g, 3, NULL);
	for (int i = 0; i < 3; i++)
		guest_fini(&g[i]);
}

/* Compression threads behind the copier: the same two oracles, on every
 * kind at once (a hugetlbfs page, THP blocks, 4 KiB runs), and the
 * threads' work shows in the statistics. */
static void test_threads(void **state)
{
	const struct bgsnap_save_opts opts = { .size = sizeof(opts),
					       .threads = 2 };
	struct guest g[4] = { 0 };

	(void)state;
	guest_init(&g[0], "anon", ANON, 32 * MiB, 2);
	guest_init(&g[1], "thp", THP, 32 * MiB, 1);
	guest_init(&g[2], "memfd", MEMFD, 16 * MiB, 1);
	guest_init(&g[3], "hugetlb", HUGETLB, 16 * MiB, 1);
	for (unsigned i = 0; i < repeats(); i++)
		save_and_check(g, 4, &opts);
	for (size_t i = 0; i < 4; i++)
		guest_fini(&g[i]);
}

/* The tasks of this process, by tid, into @tids (at most @max). */
static size_t list_tasks(pid_t *tids, size_t max)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	size_t n = 0;

	assert_non_null(d);
	while ((e = readdir(d)) && n < max)
		if (e->d_name[0] != '.')
			tids[n++] = (pid_t)atoi(e->d_name);
	closedir(d);
	return n;
}

static bool listed(const pid_t *tids, size_t n, pid_t tid)
{
	for (size_t i = 0; i < n; i++)
		if (tids[i] == tid)
			return true;
	return false;
}

/* Task @tid's Cpus_allowed_list, or "" once it is gone. */
static void cpus_of(pid_t tid, char *out, size_t len)
{
	char path[64], line[256];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%d/status", (int)tid);
	*out = 0;
	f = fopen(path, "re");
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "Cpus_allowed_list:", 18))
			snprintf(out, len, "%s",
				 line + 18 + strspn(line + 18, "\t "));
	if (f)
		fclose(f);
	out[strcspn(out, "\n")] = 0;
}

/* A save's threads (copier, fault thread, compression threads) run only on
 * the CPUs it is given; a bad list is refused. */
static void test_cpus(void **state)
{
	struct bgsnap_save_opts opts = { .size = sizeof(opts), .threads = 1 };
	struct guest g = { 0 };
	pid_t before[256], after[256];
	size_t nbefore, nafter, seen = 0;
	char path[256], cpu[16], got[64];
	cpu_set_t mine;
	struct bgsnap *h;
	int last = -1;

	(void)state;
	assert_int_equal(sched_getaffinity(0, sizeof(mine), &mine), 0);
	for (int c = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, &mine))
			last = c;
	snprintf(cpu, sizeof(cpu), "%d", last);
	snprintf(path, sizeof(path), "%s/cpus.bgs", tu_tmpdir());
	guest_init(&g, "ram", ANON, 256 * MiB, 2);
	assert_int_equal(bgsnap_new(&h), 0);
	assert_int_equal(bgsnap_add_region(h, g.name, g.mem, g.len), 0);
	opts.cpus = "1-0";
	assert_int_equal(bgsnap_save(h, path, &opts), -EINVAL);
	assert_non_null(strstr(bgsnap_last_error(h), "not a CPU list"));
	opts.cpus = cpu;
	nbefore = list_tasks(before, 256);
	assert_int_equal(bgsnap_save_start(h, path, &opts), 0);
	nafter = list_tasks(after, 256);
	for (size_t i = 0; i < nafter; i++) {
		if (listed(before, nbefore, after[i]))
			continue;
		cpus_of(after[i], got, sizeof(got));
		if (!*got)
			continue; /* gone already */
		fprintf(stderr, "# task %d: CPUs %s\n", (int)after[i], got);
		assert_string_equal(got, cpu);
		seen++;
	}
	assert_int_equal(bgsnap_wait(h), 0);
	assert_true(seen >= 2); /* the copier and the fault thread at least */
	bgsnap_free(h);
	unlink(path);
	guest_fini(&g);
}

static void test_one_gib(void **state)
{
	struct guest g = { 0 };

	(void)state;
	guest_init(&g, "big", ANON, 1024 * MiB, 2);
	save_and_check(&g, 1, NULL);
	guest_fini(&g);
}

/* Untouched memory is saved as zero without being read or populated. */
static void test_unpopulated_skipped(void **state)
{
	const size_t len = 256 * MiB;
	char *mem = tu_map_anon(len, false);
	char path[256];
	struct bgsnap *h;
	struct bgsnap_stats st = { .size = sizeof(st) };

	(void)state;
	memset(mem, 7, 4 * MiB); /* the first 1024 pages only */
	snprintf(path, sizeof(path), "%s/sparse.bgs", tu_tmpdir());
	assert_int_equal(bgsnap_new(&h), 0);
	assert_int_equal(bgsnap_add_region(h, "sparse", mem, len), 0);
	assert_int_equal(bgsnap_save(h, path, NULL), 0);
	assert_int_equal(bgsnap_stats(h, &st), 0);
	assert_int_equal(st.pages_unpopulated, len / 4096 - 1024);
	assert_int_equal(st.pages_by_scan, 1024);
	char *image = malloc(len);
	tu_snapshot_region(path, "sparse", image, len);
	for (size_t i = 0; i < len; i++)
		if (image[i] != (i < 4 * MiB ? 7 : 0))
			fail_msg("byte %zu is %d", i, image[i]);
	free(image);
	bgsnap_free(h);
	unlink(path);
	tu_unmap(mem, len);
}

/* ---- kernel-mode writers ------------------------------------------------- */

/* The bank writes only the first bytes of each page: kernel writes go
 * after them. */
#define KWRITE_OFF 64
#define KWRITE_LEN 4000

struct kwriter {
	char *dst;
	int pipe_rd;
	struct io_uring ring;
	int file_fd;
	char *uring_dst;
	int pipe_ret, uring_ret;
};

static void *kwriter_main(void *arg)
{
	struct kwriter *k = arg;
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;

	/* read(2) from a pipe into a page the copier has not saved yet. */
	k->pipe_ret = (int)read(k->pipe_rd, k->dst, KWRITE_LEN);
	/* An io_uring read (io-wq worker, IOSQE_ASYNC) into another. */
	sqe = io_uring_get_sqe(&k->ring);
	io_uring_prep_read(sqe, k->file_fd, k->uring_dst, 4096, 0);
	sqe->flags |= IOSQE_ASYNC;
	io_uring_submit(&k->ring);
	io_uring_wait_cqe(&k->ring, &cqe);
	k->uring_ret = cqe->res;
	io_uring_cqe_seen(&k->ring, cqe);
	return NULL;
}

struct kernel_ctx {
	struct owner o;
	struct kwriter k;
	pthread_t t;
};

static void kernel_writes_resume(void *arg)
{
	struct kernel_ctx *c = arg;

	owner_resume(&c->o);
	/* Right after the instant, before the copier reaches them. */
	pthread_create(&c->t, NULL, kwriter_main, &c->k);
}

static void test_kernel_writers(void **state)
{
	const size_t len = 256 * MiB;
	struct guest g = { 0 };
	struct kernel_ctx c = { 0 };
	struct bgsnap_save_opts opts = { .size = sizeof(opts) };
	char path[256], fpath[256], *image, payload[KWRITE_LEN];
	int fds[2];
	struct bgsnap *h;

	(void)state;
	guest_init(&g, "ram", ANON, len, 1);
	memset(payload, 'K', sizeof(payload));
	assert_int_equal(pipe(fds), 0);
	assert_int_equal(write(fds[1], payload, KWRITE_LEN), KWRITE_LEN);
	snprintf(fpath, sizeof(fpath), "%s/kwrite.data", tu_tmpdir());
	c.k.file_fd = open(fpath, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_int_equal(write(c.k.file_fd, "URING", 5), 5);
	assert_int_equal(io_uring_queue_init(4, &c.k.ring, 0), 0);
	c.k.pipe_rd = fds[0];
	/* Near the end: the scan reaches them last. */
	c.k.dst = g.mem + len - 8 * 4096 + KWRITE_OFF;
	c.k.uring_dst = g.mem + len - 4 * 4096 + KWRITE_OFF;
	c.o = (struct owner){ &g, 1 };
	opts.pause = owner_pause; /* c.o is the first member */
	opts.resume = kernel_writes_resume;
	opts.arg = &c;

	snprintf(path, sizeof(path), "%s/kernel.bgs", tu_tmpdir());
	assert_int_equal(bgsnap_new(&h), 0);
	assert_int_equal(bgsnap_add_region(h, "ram", g.mem, len), 0);
	assert_int_equal(bgsnap_save_start(h, path, &opts), 0);
	assert_int_equal(bgsnap_wait(h), 0);
	pthread_join(c.t, NULL);
	/* The kernel's writes blocked, then landed in full. */
	assert_int_equal(c.k.pipe_ret, KWRITE_LEN);
	assert_int_equal(c.k.uring_ret, 5);
	assert_memory_equal(c.k.dst, payload, KWRITE_LEN);
	assert_memory_equal(c.k.uring_dst, "URING", 5);
	/* ... after the old content was saved. */
	image = malloc(len);
	tu_snapshot_region(path, "ram", image, len);
	assert_memory_equal(image + len - 8 * 4096,
			    g.reference + len - 8 * 4096, 4096);
	assert_memory_equal(image + len - 4 * 4096,
			    g.reference + len - 4 * 4096, 4096);
	assert_memory_not_equal(image + len - 8 * 4096 + KWRITE_OFF, payload,
				KWRITE_LEN);
	free(image);
	bgsnap_free(h);
	io_uring_queue_exit(&c.k.ring);
	close(c.k.file_fd);
	close(fds[0]);
	close(fds[1]);
	guest_fini(&g);
}

/* ---- save-once ----------------------------------------------------------- */

static void test_save_once(void **state)
{
	const size_t len = 128 * MiB;
	struct guest g = { 0 };
	struct owner o = { &g, 1 };
	struct bgsnap_save_opts opts = { .size = sizeof(opts),
					 .pause = owner_pause,
					 .resume = owner_resume,
					 .arg = &o };
	uint8_t *count = calloc(len / 4096, 1);
	struct bgsnap_stats st = { .size = sizeof(st) };
	struct bgsnap *h;
	char path[256];
	uint64_t reads = 0;

	(void)state;
	guest_init(&g, "ram", ANON, len, 4); /* many faults */
	snprintf(path, sizeof(path), "%s/once.bgs", tu_tmpdir());
	assert_int_equal(bgsnap_new(&h), 0);
	h->test_hooks.read_count = count;
	assert_int_equal(bgsnap_add_region(h, "ram", g.mem, len), 0);
	assert_int_equal(bgsnap_save(h, path, &opts), 0);
	assert_int_equal(bgsnap_stats(h, &st), 0);
	for (size_t i = 0; i < len / 4096; i++) {
		if (count[i] > 1)
			fail_msg("page %zu was read %u times", i, count[i]);
		reads += count[i];
	}
	assert_int_equal(reads + st.pages_unpopulated, len / 4096);
	fprintf(stderr, "# %llu faults, %llu pages saved by fault\n",
		(unsigned long long)st.faults,
		(unsigned long long)st.pages_by_fault);
	check_snapshot(path, &g);
	bgsnap_free(h);
	unlink(path);
	free(count);
	guest_fini(&g);
}

/* ---- the scan's unprotect batch ------------------------------------------ */

/* Bit 57 of /proc/self/pagemap: the page's PTE is uffd-wp protected. */
static bool wp_bit(const void *addr)
{
	const int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	uint64_t e = 0;

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &e, sizeof(e),
			       (off_t)((uintptr_t)addr / 4096 * sizeof(e))),
			 sizeof(e));
	close(fd);
	return e & (1ULL << 57);
}

struct batch_write {
	volatile uint8_t *page;
	_Atomic bool done;
};

static void *batch_write_main(void *arg)
{
	struct batch_write *w = arg;

	w->page[0] ^= 0x5a;
	atomic_store(&w->done, true);
	return NULL;
}

struct drain {
	int from, to;
};

static void *drain_main(void *arg)
{
	const struct drain *d = arg;
	char buf[65536];
	ssize_t n;

	while ((n = read(d->from, buf, sizeof(buf))) > 0)
		assert_int_equal(write(d->to, buf, (size_t)n), n);
	return NULL;
}

static uint64_t sum_reads(const volatile uint8_t *count, size_t pages)
{
	uint64_t sum = 0;

	for (size_t i = 0; i < pages; i++)
		sum += count[i];
	return sum;
}

/*
 * The scan unprotects the runs it stored in batches (one TLB flush for
 * 2 MiB); until then they are protected and not yet saved. A write while
 * the disk is behind (here a pipe nobody reads, the buffers full), to the
 * batch's last page (@into) or to the page after it (whose fault-around
 * block reaches back into the batch): the writer goes on, no page is read
 * twice, and the snapshot has the pages as they were.
 *
 * Where the scan stops is made to fall inside a batch and a fault-around
 * block: the region begins half a block past a block's start (blocks are
 * aligned in the address space, the scan's chunks from the region's
 * start), and its first 256 pages are zero, which take no room in the
 * buffers (while the rest, incompressible, fills them in whole chunks).
 * Small pages only: the scan saves a huge page whole, in a batch of its
 * own.
 */
#define BATCH_ZERO_PAGES 256

static void batch_case(bool into)
{
	const size_t len = 16 * MiB, pages = len / 4096;
	const size_t block = BGS_FAULT_AROUND * 4096;
	uint8_t *map = (uint8_t *)map_kind(ANON, len + 2 * block);
	uint8_t *mem = map + (block - (uintptr_t)map % block) + block / 2;
	uint8_t *before = malloc(len), *image = malloc(len);
	uint8_t *count = calloc(pages, 1);
	struct bgsnap_save_opts opts = { .size = sizeof(opts),
					 .buffer_budget = 1 };
	struct bgsnap_progress p = { .size = sizeof(p) };
	struct batch_write w = { 0 };
	uint64_t seed = tu_seed(), reads = 0, last;
	pthread_t writer, drainer;
	struct drain d;
	struct bgsnap *h;
	char path[256];
	int fds[2];
	size_t at;

	assert_non_null(before);
	assert_non_null(image);
	assert_non_null(count);
	assert_int_equal(madvise(map, len + 2 * block, MADV_NOHUGEPAGE), 0);
	memset(mem, 0, BATCH_ZERO_PAGES * 4096);
	for (size_t i = BATCH_ZERO_PAGES * 4096 / 8; i < len / 8; i++)
		((uint64_t *)mem)[i] = tu_rand(&seed);
	memcpy(before, mem, len);
	assert_int_equal(pipe(fds), 0);
	assert_int_equal(bgsnap_new(&h), 0);
	h->test_hooks.read_count = count;
	assert_int_equal(bgsnap_add_region(h, "ram", mem, len), 0);
	assert_int_equal(bgsnap_save_start_fd(h, fds[1], &opts), 0);
	/* The scan stores what the buffers take, then waits for the pipe:
	 * no read for 300 ms. (The save's own counts, live; @count gets them
	 * at the end.) */
	for (int i = 0, still = 0; i < 300 && still < 3; i++) {
		last = reads;
		tu_sleep_ms(100);
		reads = sum_reads(h->save->read_count, pages);
		still = reads && reads == last ? still + 1 : 0;
	}
	bgsnap_progress(h, &p);
	fprintf(stderr, "# the scan stopped at %llu pages read, %llu saved\n",
		(unsigned long long)reads, (unsigned long long)p.pages_done);
	assert_true(p.running);
	assert_true(reads < pages);
	/* Read in order from the start; those not saved wait in the batch,
	 * still protected. (If the set-up above stops doing what it says,
	 * the test proves nothing, and says so here.) */
	assert_true(p.pages_done < reads);
	assert_true(wp_bit(mem + (reads - 1) * 4096));
	assert_true((uintptr_t)(mem + reads * 4096) % block != 0);

	at = into ? reads - 1 : reads;
	w.page = mem + at * 4096;
	assert_int_equal(pthread_create(&writer, NULL, batch_write_main, &w),
			 0);
	for (int i = 0; i < 1000 && !atomic_load(&w.done); i++)
		tu_sleep_ms(10);
	assert_true(atomic_load(&w.done)); /* not waiting on the pipe */
	pthread_join(writer, NULL);
	if (into) { /* the batch, unprotected with it (the writer may go on
		     * a moment before the pages are counted saved) */
		for (int i = 0; i < 500; i++) {
			bgsnap_progress(h, &p);
			if (p.pages_done >= reads)
				break;
			tu_sleep_ms(10);
		}
		assert_true(p.pages_done >= reads);
		assert_false(wp_bit(mem + (reads - 2) * 4096));
	}

	snprintf(path, sizeof(path), "%s/batch.bgs", tu_tmpdir());
	d = (struct drain){ fds[0],
			    open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600) };
	assert_true(d.to >= 0);
	assert_int_equal(pthread_create(&drainer, NULL, drain_main, &d), 0);
	if (bgsnap_wait(h))
		fail_msg("save: %s", bgsnap_last_error(h));
	close(fds[1]);
	pthread_join(drainer, NULL);
	close(d.to);
	close(fds[0]);
	for (size_t i = 0; i < pages; i++)
		if (count[i] != 1)
			fail_msg("page %zu was read %u times", i, count[i]);
	tu_snapshot_region(path, "ram", image, len);
	assert_memory_equal(image, before, len);
	assert_int_equal(mem[at * 4096], before[at * 4096] ^ 0x5a);
	bgsnap_free(h);
	unlink(path);
	free(count);
	free(image);
	free(before);
	tu_unmap(map, len + 2 * block);
}

static void test_write_to_unprotect_batch(void **state)
{
	(void)state;
	batch_case(true);
}

static void test_write_next_to_unprotect_batch(void **state)
{
	(void)state;
	batch_case(false);
}

/* ---- ends that are not success ------------------------------------------- */

static void check_clean_failure(struct guest *g, const char *dir,
				const char *name)
{
	struct bank_figures a, b;
	char path[512];

	tu_assert_unprotected(g->mem, g->len);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_int_equal(access(path, F_OK), -1);
	tu_assert_no_file_like(dir, name);
	if (g->writers) { /* the writers keep going (a loaded machine may
			   * not run them for a while: 5 s at most) */
		bank_figures(&g->bank, &a);
		for (int i = 0; i < 500; i++) {
			tu_sleep_ms(10);
			bank_figures(&g->bank, &b);
			if (b.ops > a.ops)
				break;
		}
		assert_true(b.ops > a.ops);
	}
}

static void test_cancel(void **state)
{
	const size_t len = 512 * MiB;
	struct guest g = { 0 };
	struct owner o = { &g, 1 };
	struct bgsnap_save_opts opts = { .size = sizeof(opts),
					 .pause = owner_pause,
					 .resume = owner_resume,
					 .arg = &o };
	struct bgsnap_progress p = { .size = sizeof(p) };
	struct bgsnap *h;
	char path[256];

	(void)state;
	guest_init(&g, "ram", ANON, len, 2);
	free(g.reference);
	g.reference = NULL;
	snprintf(path, sizeof(path), "%s/cancel.bgs", tu_tmpdir());
	assert_int_equal(bgsnap_new(&h), 0);
	assert_int_equal(bgsnap_add_region(h, "ram", g.mem, len), 0);
	assert_int_equal(bgsnap_save_start(h, path, &opts), 0);
	tu_sleep_ms(50);
	bgsnap_progress(h, &p);
	assert_true(p.running);
	assert_true(p.pages_done < p.pages_total);
	bgsnap_cancel(h);
	assert_int_equal(bgsnap_wait(h), -ECANCELED);
	check_clean_failure(&g, tu_tmpdir(), "cancel.bgs");
	bgsnap_free(h);
	guest_fini(&g);
}

/* A private mount namespace with a 16 MiB tmpfs: the save runs out of
 * space half way. Runs in a child so the namespace dies with it. */
static void enospc_child(void)
{
	const size_t len = 128 * MiB;
	struct guest g = { 0 };
	struct owner o = { &g, 1 };
	struct bgsnap_save_opts opts = { .size = sizeof(opts),
					 .pause = owner_pause,
					 .resume = owner_resume,
					 .arg = &o,
					 .compression = BGSNAP_COMPRESS_NONE };
	const char *dir = "/tmp/bgsnap-enospc";
	struct bgsnap *h;
	int r;

	mkdir(dir, 0700);
	if (unshare(CLONE_NEWNS) ||
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) ||
	    mount("tmpfs", dir, "tmpfs", 0, "size=16m")) {
		perror("# private tmpfs");
		exit(2);
	}
	guest_init(&g, "ram", ANON, len, 2);
	free(g.reference);
	g.reference = NULL;
	assert_int_equal(bgsnap_new(&h), 0);
	assert_int_equal(bgsnap_add_region(h, "ram", g.mem, len), 0);
	r = bgsnap_save(h, "/tmp/bgsnap-enospc/full.bgs", &opts);
	fprintf(stderr, "# save: %s (%s)\n", bgsnap_strerror(r),
		bgsnap_last_error(h));
	assert_int_equal(r, -ENOSPC);
	check_clean_failure(&g, dir, "full.bgs");
	bgsnap_free(h);
	guest_fini(&g);
	exit(0);
}

static void test_enospc(void **state)
{
	int status;
	pid_t pid;

	(void)state;
	tu_need_root("mounting a tmpfs");
	pid = fork();
	if (pid == 0)
		enospc_child();
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	rmdir("/tmp/bgsnap-enospc");
}

/* The floors are measured on the caller's memory and leave it as it was:
 * same content, writable, no userfaultfd left on it. */
static void test_floors(void **state)
{
	const size_t len = 8 * MiB;
	uint8_t *mem = mmap(NULL, len, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *copy = malloc(len);
	struct bgsnap_floors f = { .size = sizeof(f) };
	cpu_set_t before, after;
	struct bgs_uffd u;

	(void)state;
	assert_true(mem != MAP_FAILED && copy);
	madvise(mem, len, MADV_NOHUGEPAGE);
	for (size_t i = 0; i < len; i++)
		mem[i] = (uint8_t)(i % 251 < 100 ? i / 4096 : (size_t)rand());
	memcpy(copy, mem, len);
	assert_int_equal(bgsnap_measure_floors(mem + 1, len - 4096, 4096, &f),
			 -EINVAL);
	assert_int_equal(bgsnap_measure_floors(mem, len, 3000, &f), -EINVAL);
	assert_int_equal(sched_getaffinity(0, sizeof(before), &before), 0);
	assert_int_equal(bgsnap_measure_floors(mem, len, 4096, &f), 0);
	assert_true(f.write_protect_ms > 0 && f.write_protect_ms < 1e4);
	assert_true(f.fault_p50_us > 0 && f.fault_p50_us <= f.fault_p99_us);
	/* Pinned round trips: on one CPU always, on two where the caller may
	 * use two; the caller's own affinity given back. */
	assert_true(f.fault_same_cpu_p50_us > 0);
	if (CPU_COUNT(&before) > 1)
		assert_true(f.fault_other_cpu_p50_us > 0);
	else
		assert_true(isnan(f.fault_other_cpu_p50_us));
	assert_int_equal(sched_getaffinity(0, sizeof(after), &after), 0);
	assert_true(CPU_EQUAL(&before, &after));
	assert_true(f.lz4_gib_s > 0);
	/* About 100 of every 251 bytes repeat within a page. */
	assert_true(f.lz4_ratio > 1.1 && f.lz4_ratio < 3);
	assert_memory_equal(mem, copy, len);
	/* The floor's uffd is gone: another can register the range (EBUSY
	 * otherwise), and a write does not fault. */
	tu_open_wp(&u);
	assert_int_equal(bgs_uffd_register(&u, (uintptr_t)mem, len,
					   UFFDIO_REGISTER_MODE_WP, NULL),
			 0);
	bgs_uffd_close(&u);
	memset(mem, 1, len);
	munmap(mem, len);
	free(copy);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_anon),
		cmocka_unit_test(test_thp),
		cmocka_unit_test(test_memfd),
		cmocka_unit_test(test_hugetlb),
		cmocka_unit_test(test_several_regions),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_cpus),
		cmocka_unit_test(test_one_gib),
		cmocka_unit_test(test_unpopulated_skipped),
		cmocka_unit_test(test_kernel_writers),
		cmocka_unit_test(test_save_once),
		cmocka_unit_test(test_write_to_unprotect_batch),
		cmocka_unit_test(test_write_next_to_unprotect_batch),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_enospc),
		cmocka_unit_test(test_floors),
	};
	struct bgs_uffd u;

	tu_open_wp(&u); /* exits 77 where the kernel has no uffd-wp */
	bgs_uffd_close(&u);
	tu_seed();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
