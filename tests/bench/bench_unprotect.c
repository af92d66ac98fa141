/* SPDX-License-Identifier: MIT */
/*
 * What unprotecting costs, by the size of each UFFDIO_WRITEPROTECT: the
 * figures behind the scan's unprotect batches and the cost of a fault's
 * (DESIGN.md, "The mechanism"). Every ioctl flushes the TLB of each CPU
 * that runs the process; below 33 pages the kernel flushes page by page.
 *
 * Protects SIZE MiB of written anonymous memory (4 KiB pages), then
 * unprotects it:
 *   - all of it, in ioctls of 64 KiB to SIZE: seconds per GiB;
 *   - single ranges of 1 to 64 pages, as a fault's run: microseconds each.
 * Each figure is the median of REPEATS, alone and while another thread of
 * the process runs on another CPU (as the owner's threads do).
 *
 *   bench_unprotect [-s MiB] [-r repeats]
 */
#include "testutil.h"
#include "uffd.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define KiB	    1024ul
#define RANGE_CALLS 512 /* single ranges timed per repeat */

static struct bgs_uffd u;
static uint8_t *mem;
static size_t size;
static atomic_bool spin_stop;

static void *spin_main(void *arg)
{
	(void)arg;
	while (!atomic_load_explicit(&spin_stop, memory_order_relaxed))
		;
	return NULL;
}

static void must(int ret, const char *what)
{
	if (ret) {
		fprintf(stderr, "bench_unprotect: %s: %s\n", what,
			strerror(-ret));
		exit(1);
	}
}

static void protect_all(void)
{
	must(bgs_uffd_protect(&u, (uintptr_t)mem, size, 0), "protect");
}

/* Seconds per GiB to unprotect all of it, @step bytes an ioctl. */
static double unprotect_by(size_t step)
{
	uint64_t t;

	protect_all();
	t = tu_now_ns();
	for (size_t off = 0; off < size; off += step)
		must(bgs_uffd_unprotect(&u, (uintptr_t)mem + off, step, 0),
		     "unprotect");
	t = tu_now_ns() - t;
	return (double)t / 1e9 * (double)(1ul << 30) / (double)size;
}

/* Microseconds an ioctl unprotecting @pages pages, spread over it all. */
static double unprotect_ranges(size_t pages)
{
	const size_t len = pages * 4 * KiB, gap = size / RANGE_CALLS;
	uint64_t t;

	protect_all();
	t = tu_now_ns();
	for (size_t i = 0; i < RANGE_CALLS; i++)
		must(bgs_uffd_unprotect(&u, (uintptr_t)mem + i * gap, len, 0),
		     "unprotect");
	t = tu_now_ns() - t;
	return (double)t / 1e3 / RANGE_CALLS;
}

/* The median of @repeats of @f(@arg), alone and beside a running thread. */
static void measure(double (*f)(size_t), size_t arg, int repeats, double out[2])
{
	for (int beside = 0; beside < 2; beside++) {
		pthread_t spinner;
		double t[99];

		atomic_store(&spin_stop, false);
		if (beside && pthread_create(&spinner, NULL, spin_main, NULL))
			exit(1);
		for (int i = 0; i < repeats; i++)
			t[i] = f(arg);
		atomic_store(&spin_stop, true);
		if (beside)
			pthread_join(spinner, NULL);
		out[beside] = tu_median(t, (size_t)repeats);
	}
}

int main(int argc, char **argv)
{
	static const size_t steps[] = { 64 * KiB, 256 * KiB, 2048 * KiB,
					16384 * KiB, 0 /* all */ };
	static const size_t pages[] = { 1, 4, 16, 32, 64 };
	int repeats = 3;
	double r[2];

	size = 1024ul << 20;
	if (tu_bench_args(argc, argv, "bench_unprotect", 16ul << 20, &size,
			  &repeats))
		return 2;
	tu_open_wp(&u); /* exits 77 where the kernel has no uffd-wp */
	mem = mmap(NULL, size, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (mem == MAP_FAILED || madvise(mem, size, MADV_NOHUGEPAGE)) {
		perror("bench_unprotect: mmap");
		return 1;
	}
	memset(mem, 1, size);
	must(bgs_uffd_register(&u, (uintptr_t)mem, size,
			       UFFDIO_REGISTER_MODE_WP, NULL),
	     "register");

	printf("%-14s %10s %22s\n", "ioctl size", "s/GiB", "beside a thread");
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		const size_t step = steps[i] ? steps[i] : size;

		measure(unprotect_by, step, repeats, r);
		printf("%8zu KiB   %10.3f %22.3f\n", step / KiB, r[0], r[1]);
	}
	printf("\n%-14s %10s %22s\n", "one range", "us each",
	       "beside a thread");
	for (size_t i = 0; i < sizeof(pages) / sizeof(pages[0]); i++) {
		measure(unprotect_ranges, pages[i], repeats, r);
		printf("%8zu pages %10.1f %22.1f\n", pages[i], r[0], r[1]);
	}
	bgs_uffd_close(&u);
	munmap(mem, size);
	return 0;
}
