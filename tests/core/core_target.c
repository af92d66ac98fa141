/* SPDX-License-Identifier: MIT */
/*
 * The process the core tests take cores of: known values in a global, on
 * the heap and on each thread's stack, threads blocked in known functions,
 * and (with "writers") two threads that keep a pair of globals equal, so
 * that a core taken at one instant must show them equal.
 *
 *   core_target [writers] [thp] [memfd] [hugetlb] [big]
 *
 * "big" adds 512 MiB of bytes lz4 cannot shrink, so that a save takes
 * long enough to be caught in the middle. It prints "ready PID" once
 * every thread is in place, then waits. It takes no input; the test
 * kills it. Exit 77: no huge page could be had for "hugetlb".
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define NWAITERS 3
#define THP_SIZE (4u << 20)
#define HUGE_2M	 (2u << 20)
#define BIG	 (512u << 20)

/* Read by gdb in the tests: keep every name and value in step with
 * test_core.sh. */
volatile uint64_t core_global = 0x1122334455667788ull;
char *core_heap;
/* Equal whenever no writer is between its two stores; on pages of their
 * own, so that a copy of memory not taken at one instant tells. */
volatile uint64_t pair_a __attribute__((aligned(4096)));
volatile uint64_t pair_b __attribute__((aligned(4096)));
pthread_mutex_t pair_lock = PTHREAD_MUTEX_INITIALIZER;
char *core_thp, *core_memfd, *core_hugetlb, *core_big;
static pthread_barrier_t ready;

/* Named in the tests' backtraces: external, so the compiler keeps them. */
void core_wait_here(int n);
void core_writer_loop(void);
void core_main_sleeps(void);
static pthread_mutex_t never = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never_cond = PTHREAD_COND_INITIALIZER;

/* Each waiter blocks here, its number in a local on its stack. */
__attribute__((noinline)) void core_wait_here(int n)
{
	volatile uint64_t core_stack_value =
		0xabc0000000000000ull + (unsigned)n;

	pthread_barrier_wait(&ready);
	pthread_mutex_lock(&never);
	for (;;)
		pthread_cond_wait(&never_cond, &never);
	(void)core_stack_value;
}

static void *waiter(void *arg)
{
	core_wait_here((int)(intptr_t)arg);
	return NULL;
}

/* Writers: the two halves of the pair change together under the lock;
 * a core of one instant may catch a writer between the two stores, and
 * then the lock shows it held. */
__attribute__((noinline)) void core_writer_loop(void)
{
	for (;;) {
		pthread_mutex_lock(&pair_lock);
		pair_a++;
		pair_b++;
		pthread_mutex_unlock(&pair_lock);
	}
}

static void *writer(void *arg)
{
	(void)arg;
	pthread_barrier_wait(&ready);
	core_writer_loop();
	return NULL;
}

__attribute__((noinline)) void core_main_sleeps(void)
{
	for (;;)
		pause();
}

static void fill(char *p, size_t len, const char *tag)
{
	for (size_t i = 0; i < len; i += 4096)
		snprintf(p + i, 64, "%s page %zu", tag, i / 4096);
}

static char *map_thp(void)
{
	char *p = mmap(NULL, 2 * THP_SIZE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *a;

	if (p == MAP_FAILED)
		return NULL;
	a = (char *)(((uintptr_t)p + HUGE_2M - 1) & ~(uintptr_t)(HUGE_2M - 1));
	madvise(a, THP_SIZE, MADV_HUGEPAGE);
	fill(a, THP_SIZE, "thp");
	return a;
}

static char *map_memfd(void)
{
	const int fd = memfd_create("core-memfd", MFD_CLOEXEC);
	char *p;

	if (fd < 0 || ftruncate(fd, 1 << 20))
		return NULL;
	p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return NULL;
	fill(p, 1 << 20, "memfd");
	return p;
}

static char *map_hugetlb(void)
{
	char *p = mmap(NULL, HUGE_2M, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	fill(p, HUGE_2M, "hugetlb");
	return p;
}

static char *map_big(void)
{
	uint64_t *p = malloc(BIG), x = 88172645463325252ull;

	for (size_t i = 0; p && i < BIG / 8; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = x;
	}
	return (char *)p;
}

static int has(int argc, char **argv, const char *word)
{
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], word))
			return 1;
	return 0;
}

int main(int argc, char **argv)
{
	const int writers = has(argc, argv, "writers") ? 2 : 0;
	pthread_t t;

	core_heap = malloc(1 << 20);
	if (!core_heap)
		return 1;
	fill(core_heap, 1 << 20, "heap");
	strcpy(core_heap, "core heap string");
	if (has(argc, argv, "thp") && !(core_thp = map_thp()))
		return 1;
	if (has(argc, argv, "memfd") && !(core_memfd = map_memfd()))
		return 1;
	if (has(argc, argv, "hugetlb") && !(core_hugetlb = map_hugetlb())) {
		fprintf(stderr, "no huge page: %s\n", strerror(errno));
		return 77;
	}
	if (has(argc, argv, "big") && !(core_big = map_big()))
		return 1;
	pthread_barrier_init(&ready, NULL, NWAITERS + writers + 1);
	for (int i = 0; i < NWAITERS; i++)
		if (pthread_create(&t, NULL, waiter, (void *)(intptr_t)(i + 1)))
			return 1;
	for (int i = 0; i < writers; i++)
		if (pthread_create(&t, NULL, writer, NULL))
			return 1;
	pthread_barrier_wait(&ready);
	printf("ready %d\n", (int)getpid());
	fflush(stdout);
	core_main_sleeps();
	return 0;
}
