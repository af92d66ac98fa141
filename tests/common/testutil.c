/* SPDX-License-Identifier: MIT */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

void *tu_map_anon(size_t len, bool thp)
{
	const size_t extra = thp ? TU_HUGE_2M : 0;
	char *p = mmap(NULL, len + extra, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	char *aligned;

	if (p == MAP_FAILED)
		return NULL;
	if (!thp)
		return p;
	aligned = (char *)(((uintptr_t)p + TU_HUGE_2M - 1) & ~(TU_HUGE_2M - 1));
	if (aligned > p)
		munmap(p, (size_t)(aligned - p));
	if (aligned + len < p + len + extra)
		munmap(aligned + len,
		       (size_t)(p + len + extra - aligned - len));
	madvise(aligned, len, MADV_HUGEPAGE);
	return aligned;
}

void *tu_map_memfd(size_t len, int *fdp)
{
	const int fd = memfd_create("bgsnap-test", MFD_CLOEXEC);
	void *p;

	if (fd < 0 || ftruncate(fd, (off_t)len))
		return NULL;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (fdp)
		*fdp = fd;
	else
		close(fd);
	return p == MAP_FAILED ? NULL : p;
}

void *tu_map_hugetlb(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

void *tu_map_kind(enum tu_kind k, size_t len)
{
	switch (k) {
	case TU_ANON:
		return tu_map_anon(len, false);
	case TU_THP:
		return tu_map_anon(len, true);
	case TU_MEMFD:
		return tu_map_memfd(len, NULL);
	case TU_HUGETLB:
		/* Twice what one mapping needs: a test may hold two. */
		if (!tu_hugetlb_reserve((unsigned)(2 * len / TU_HUGE_2M)))
			return NULL;
		return tu_map_hugetlb(len);
	}
	return NULL;
}

void tu_unmap(void *p, size_t len)
{
	if (p)
		munmap(p, len);
}

static long old_nr_hugepages = -1;

static long read_sysctl(const char *path)
{
	FILE *f = fopen(path, "re");
	long v = -1;

	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

static bool write_sysctl(const char *path, long v)
{
	FILE *f = fopen(path, "we");
	bool ok;

	if (!f)
		return false;
	ok = fprintf(f, "%ld\n", v) > 0;
	return fclose(f) == 0 && ok;
}

#define NR_HUGE	  "/proc/sys/vm/nr_hugepages"
#define FREE_HUGE "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages"

static void restore_hugepages(void)
{
	if (old_nr_hugepages >= 0)
		write_sysctl(NR_HUGE, old_nr_hugepages);
}

bool tu_hugetlb_reserve(unsigned n)
{
	const long have = read_sysctl(NR_HUGE);

	if (read_sysctl(FREE_HUGE) >= (long)n)
		return true;
	if (geteuid() != 0 || have < 0) {
		fprintf(stderr,
			"# no %u free huge pages and not root to "
			"reserve them\n",
			n);
		return false;
	}
	if (old_nr_hugepages < 0) {
		old_nr_hugepages = have;
		atexit(restore_hugepages);
	}
	write_sysctl(NR_HUGE, have + (long)n);
	if (read_sysctl(FREE_HUGE) < (long)n) {
		fprintf(stderr,
			"# the kernel could not reserve %u huge pages "
			"(memory too fragmented)\n",
			n);
		return false;
	}
	return true;
}

int tu_wait_msg(const struct bgs_uffd *u, struct uffd_msg *msg, int timeout_ms)
{
	const uint64_t deadline = tu_now_ns() + (uint64_t)timeout_ms * 1000000;

	for (;;) {
		struct pollfd p = { .fd = u->fd, .events = POLLIN };
		const int64_t left = (int64_t)(deadline - tu_now_ns());
		int r;

		if (left <= 0)
			return 0;
		r = poll(&p, 1, (int)(left / 1000000) + 1);
		if (r < 0 && errno != EINTR)
			return -errno;
		r = bgs_uffd_read(u, msg, 1);
		if (r != 0)
			return r;
	}
}

static int cmp_double(const void *a, const void *b)
{
	const double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

double tu_median(double *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return v[n / 2];
}

int tu_bench_args(int argc, char **argv, const char *name, size_t step,
		  size_t *size, int *repeats)
{
	int opt;

	while ((opt = getopt(argc, argv, "s:r:")) != -1) {
		if (opt == 's')
			*size = (size_t)strtoul(optarg, NULL, 10) << 20;
		else if (opt == 'r')
			*repeats = atoi(optarg);
		else
			return 2;
	}
	if (*size < step || *size % step || *repeats < 1 || *repeats > 99) {
		fprintf(stderr,
			"usage: %s [-s MiB, a multiple of %zu] [-r 1-99]\n",
			name, step >> 20);
		return 2;
	}
	return 0;
}

uint64_t tu_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* The Private_Dirty kB of @pid's mapping that starts at @addr, or -1. */
static long private_dirty_kb(pid_t pid, const void *addr)
{
	char path[64], line[256], start[32];
	bool in = false;
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
	snprintf(start, sizeof(start), "%lx-", (unsigned long)addr);
	f = fopen(path, "re");
	if (!f)
		return -1;
	/* A mapping's first line is "start-end perms ..."; its fields
	 * follow, one "Name: value" a line. */
	while (fgets(line, sizeof(line), f)) {
		const char *dash = strchr(line, '-');

		if (dash && dash < strchr(line, ' '))
			in = !strncmp(line, start, strlen(start));
		else if (in && sscanf(line, "Private_Dirty: %ld kB", &kb) == 1)
			break;
	}
	fclose(f);
	return kb;
}

void tu_assert_still_shared(pid_t pid, const void *addr, const char *after)
{
	const long kb = private_dirty_kb(pid, addr);

	if (kb < 0)
		fail_msg("process %d has no mapping at %p in its smaps",
			 (int)pid, addr);
	/* A few pages the kernel may copy for its own reasons; the tests
	 * share 16 MiB. */
	if (kb >= 1024)
		fail_msg("%s: process %d holds %ld kB of its mapping at %p as "
			 "its own copy, not shared",
			 after, (int)pid, kb, addr);
}

void tu_sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static sigjmp_buf bus_jmp;

static void on_bus(int sig)
{
	(void)sig;
	siglongjmp(bus_jmp, 1);
}

bool tu_page_raises_sigbus(volatile char *p)
{
	struct sigaction sa = { .sa_handler = on_bus }, old;
	volatile bool bus = false;
	volatile char sink;

	sigaction(SIGBUS, &sa, &old);
	if (sigsetjmp(bus_jmp, 1))
		bus = true;
	else
		sink = *p;
	(void)sink;
	sigaction(SIGBUS, &old, NULL);
	return bus;
}

int tu_ceph_cluster(const char *cmd)
{
	char line[1024];

	snprintf(line, sizeof(line), "bash %s %s %s >&2",
		 getenv("BGSNAP_CEPH_CLUSTER"), cmd, getenv("BGSNAP_CEPH_DIR"));
	return system(line);
}

uint64_t tu_seed(void)
{
	static uint64_t seed;
	const char *env;

	if (seed)
		return seed;
	env = getenv("BGSNAP_TEST_SEED");
	seed = env ? strtoull(env, NULL, 0) : tu_now_ns() | 1;
	fprintf(stderr, "# seed %llu (BGSNAP_TEST_SEED=%llu to repeat)\n",
		(unsigned long long)seed, (unsigned long long)seed);
	return seed;
}

uint64_t tu_rand(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ULL;
}

void tu_need_root(const char *why)
{
	if (geteuid() != 0)
		fail_msg("this test needs root (%s); run the suite as root",
			 why);
}

void tu_skip_missing(const char *feature)
{
	const char *ci = getenv("BGSNAP_CI");

	fprintf(stderr, "# SKIP: this kernel lacks %s\n", feature);
	if (ci && !strcmp(ci, "1"))
		fail_msg("BGSNAP_CI=1: a skip is a failure in CI");
	skip();
}

void tu_open_wp(struct bgs_uffd *u)
{
	const int r = bgs_uffd_open(u, BGS_UFFD_FEATURES_WP,
				    UFFD_FEATURE_PAGEFAULT_FLAG_WP);

	if (r == -ENOTSUP || r == -ENOSYS) {
		fprintf(stderr, "# SKIP: this kernel has no uffd-wp (%s)\n",
			strerror(-r));
		exit(77);
	}
	if (r < 0) {
		fprintf(stderr,
			"# cannot open a userfaultfd: %s "
			"(run as root, see 'bgsnap caps')\n",
			strerror(-r));
		exit(1);
	}
}

const char *tu_loadavg(char *buf, size_t len)
{
	FILE *f = fopen("/proc/loadavg", "re");

	if (!f || !fgets(buf, (int)len, f))
		snprintf(buf, len, "?\n");
	if (f)
		fclose(f);
	return buf;
}
