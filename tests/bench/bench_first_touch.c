/* SPDX-License-Identifier: MIT */
/*
 * What writing memory costs the first time, against writing it again: the
 * figure behind the writer's overflow reusing its segments (DESIGN.md,
 * "What a writer of the owner waits for"). Copies SIZE MiB in 64 KiB
 * pieces, as the copier stores faulted runs, each way in turn, and prints
 * seconds per GiB, median of REPEATS:
 *
 *   reused      a buffer of 64 MiB written before, over and over
 *   new         anonymous memory never touched (a page fault a page)
 *   populated   the same, each 2 MiB made present by MADV_POPULATE_WRITE
 *               just before it is written
 *   huge        the same in transparent huge pages (MADV_HUGEPAGE)
 *
 * On a virtual machine whose page tables the host shadows, "new" costs up
 * to a hundred times "reused".
 *
 *   bench_first_touch [-s MiB] [-r repeats]
 */
#include "testutil.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PIECE (64u << 10)
#define RING  (64u << 20)
#define STEP  (2u << 20)

enum way { REUSED, NEW, POPULATED, HUGEPAGES, WAYS };
static const char *const way_name[WAYS] = { "reused", "new", "populated",
					    "huge" };

static void *map(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED) {
		perror("bench_first_touch: mmap");
		exit(1);
	}
	return p;
}

/* Seconds per GiB to copy @size bytes of @src, PIECE at a time, one way. */
static double copy_one_way(enum way w, size_t size, const uint8_t *src)
{
	const size_t span = w == REUSED ? RING : size;
	uint8_t *dst = map(span);
	uint64_t t;

	if (w == REUSED)
		memset(dst, 1, span);
	if (w == HUGEPAGES && madvise(dst, span, MADV_HUGEPAGE))
		perror("bench_first_touch: MADV_HUGEPAGE");
	t = tu_now_ns();
	for (size_t off = 0; off < size; off += PIECE) {
		uint8_t *to = dst + off % span;

		if (w == POPULATED && off % STEP == 0 &&
		    madvise(to, STEP, MADV_POPULATE_WRITE)) {
			perror("bench_first_touch: MADV_POPULATE_WRITE");
			exit(1);
		}
		memcpy(to, src, PIECE);
	}
	t = tu_now_ns() - t;
	munmap(dst, span);
	return (double)t / 1e9 * (double)(1u << 30) / (double)size;
}

int main(int argc, char **argv)
{
	size_t size = 1024u << 20;
	int repeats = 3;
	uint8_t *src;

	if (tu_bench_args(argc, argv, "bench_first_touch", STEP, &size,
			  &repeats))
		return 2;
	src = malloc(PIECE);
	if (!src) {
		perror("bench_first_touch");
		return 1;
	}
	memset(src, 7, PIECE);
	printf("%-10s %s\n", "memory", "s/GiB (median)");
	for (enum way w = REUSED; w < WAYS; w++) {
		double t[99];

		for (int i = 0; i < repeats; i++)
			t[i] = copy_one_way(w, size, src);
		printf("%-10s %.3f\n", way_name[w],
		       tu_median(t, (size_t)repeats));
	}
	free(src);
	return 0;
}
