/* SPDX-License-Identifier: MIT */
/*
 * Stress: saves in a loop while writers write and a mutator moves
 * (mremap), unmaps or discards (MADV_DONTNEED) parts of the region at
 * random instants. Each save ends one way or the other (a moved, unmapped
 * or discarded page not yet saved fails it with BGSNAP_EHAZARD); what must
 * never happen is a writer left asleep, a save that does not end, or
 * protection left behind. A watchdog fails the run when a writer makes no
 * progress for WATCHDOG_MS.
 *
 * BGSNAP_STRESS_SECONDS (default 15) sets the length; run it for minutes
 * by hand. The seed is printed ($BGSNAP_TEST_SEED replays it).
 */
#include "testutil.h"
#include "snap_internal.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MiB	    (1UL << 20)
#define LEN	    (32 * MiB)
#define CHUNK	    MiB /* what the mutator moves, unmaps or discards */
#define WRITERS	    2
#define WATCHDOG_MS 5000

static char *mem;
static char path[256];
static _Atomic bool stop;
static _Atomic uint64_t progress[WRITERS];
static __thread sigjmp_buf *fault_jmp;

/* A writer may touch a chunk the mutator has just unmapped: skip it. */
static void on_segv(int sig)
{
	(void)sig;
	if (fault_jmp)
		siglongjmp(*fault_jmp, 1);
	abort();
}

static void *writer_main(void *arg)
{
	const unsigned id = (unsigned)(uintptr_t)arg;
	uint64_t rng = tu_seed() + id;
	sigjmp_buf jb;

	fault_jmp = &jb;
	while (!atomic_load(&stop)) {
		const size_t off = tu_rand(&rng) % (LEN / 4096) * 4096;

		if (!sigsetjmp(jb, 1))
			mem[off + 64 + id] = (char)rng;
		atomic_fetch_add(&progress[id], 1);
	}
	fault_jmp = NULL;
	return NULL;
}

/* Put a chunk back where the region expects it, as fresh memory. */
static void restore_chunk(size_t off)
{
	void *p = mmap(mem + off, CHUNK, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);

	assert_true(p == mem + off);
}

struct mutation {
	uint64_t rng;
	unsigned delay_us; /* after the snapshot instant */
	int kind;	   /* 0 mremap away and back, 1 munmap, 2 DONTNEED */
	size_t off;
};

static void mutate(void *arg)
{
	struct mutation *m = arg;
	char *to;

	usleep(m->delay_us);
	switch (m->kind) {
	case 0:
		to = mmap(NULL, CHUNK, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS,
			  -1, 0);
		assert_true(mremap(mem + m->off, CHUNK, CHUNK,
				   MREMAP_MAYMOVE | MREMAP_FIXED, to) == to);
		/* Written while away (where no region is), then back. */
		memset(to, 0x5a, 4096);
		assert_true(mremap(to, CHUNK, CHUNK,
				   MREMAP_MAYMOVE | MREMAP_FIXED,
				   mem + m->off) == mem + m->off);
		break;
	case 1:
		munmap(mem + m->off, CHUNK);
		restore_chunk(m->off);
		break;
	default:
		madvise(mem + m->off, CHUNK, MADV_DONTNEED);
		break;
	}
}

struct mutator {
	pthread_t t;
	bool started;
	struct mutation m;
};

static void *mutator_main(void *arg)
{
	mutate(arg);
	return NULL;
}

/* The resume callback: the owner runs again; the mutation starts. */
static void on_resume(void *arg)
{
	struct mutator *mt = arg;

	assert_int_equal(pthread_create(&mt->t, NULL, mutator_main, &mt->m), 0);
	mt->started = true;
}

static void *watchdog_main(void *arg)
{
	uint64_t last[WRITERS] = { 0 };
	uint64_t still_ms = 0;

	(void)arg;
	while (!atomic_load(&stop)) {
		bool moved = true;

		tu_sleep_ms(100);
		for (unsigned i = 0; i < WRITERS; i++) {
			const uint64_t p = atomic_load(&progress[i]);

			moved = moved && p != last[i];
			last[i] = p;
		}
		still_ms = moved ? 0 : still_ms + 100;
		if (still_ms >= WATCHDOG_MS) {
			fprintf(stderr, "a writer made no progress for %u ms\n",
				WATCHDOG_MS);
			_exit(1);
		}
	}
	return NULL;
}

static void test_saves_under_mutations(void **state)
{
	const char *env = getenv("BGSNAP_STRESS_SECONDS");
	const uint64_t seconds = env ? strtoull(env, NULL, 10) : 15;
	const uint64_t end = tu_now_ns() + seconds * 1000000000ULL;
	const struct sigaction sa = { .sa_handler = on_segv };
	unsigned saves = 0, failed = 0, kinds[3] = { 0 };
	pthread_t writers[WRITERS], dog;
	uint64_t rng = tu_seed();
	struct bgsnap *h;

	(void)state;
	/* After cmocka's own handlers, which it sets around each test. */
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
	mem = tu_map_anon(LEN, false);
	memset(mem, 1, LEN);
	assert_int_equal(bgsnap_new(&h), 0);
	assert_int_equal(bgsnap_add_region(h, "ram", mem, LEN), 0);
	for (unsigned i = 0; i < WRITERS; i++)
		assert_int_equal(pthread_create(&writers[i], NULL, writer_main,
						(void *)(uintptr_t)i),
				 0);
	assert_int_equal(pthread_create(&dog, NULL, watchdog_main, NULL), 0);
	while (tu_now_ns() < end) {
		struct mutator mt = {
			.m = {
				.delay_us = (unsigned)(tu_rand(&rng) % 20000),
				.kind = (int)(tu_rand(&rng) % 3),
				.off = tu_rand(&rng) % (LEN / CHUNK) * CHUNK,
			},
		};
		const struct bgsnap_save_opts o = { .size = sizeof(o),
						    .resume = on_resume,
						    .arg = &mt };
		const int r = bgsnap_save(h, path, &o);

		if (mt.started)
			pthread_join(mt.t, NULL);
		kinds[mt.m.kind]++;
		saves++;
		if (r) {
			/* Moved, unmapped or discarded before it was saved,
			 * seen by the event or by the copier's own check. */
			if (r != BGSNAP_EHAZARD && r != BGSNAP_EINCONSISTENT)
				fail_msg("save: %s: %s", bgsnap_strerror(r),
					 bgsnap_last_error(h));
			failed++;
		} else {
			assert_int_equal(unlink(path), 0);
		}
		tu_assert_unprotected(mem, LEN);
	}
	atomic_store(&stop, true);
	for (unsigned i = 0; i < WRITERS; i++)
		pthread_join(writers[i], NULL);
	pthread_join(dog, NULL);
	fprintf(stderr,
		"# %u saves (%u failed on a hazard): %u mremap, "
		"%u munmap, %u MADV_DONTNEED\n",
		saves, failed, kinds[0], kinds[1], kinds[2]);
	assert_true(saves > 0);
	bgsnap_free(h);
	tu_unmap(mem, LEN);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_saves_under_mutations),
	};
	struct bgs_uffd u;

	tu_open_wp(&u);
	bgs_uffd_close(&u);
	snprintf(path, sizeof(path), "%s/stress.bgs", tu_tmpdir());
	return cmocka_run_group_tests(tests, NULL, NULL);
}
