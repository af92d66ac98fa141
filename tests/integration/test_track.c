/* SPDX-License-Identifier: MIT */
/*
 * Dirty tracking on the real kernel: two-phase arming loses no write
 * (a writer that is never paused, hammering during the phase switch);
 * a chain of five incremental snapshots restores to exactly the state at
 * each instant; rollback restores exactly, from memory and from the file;
 * one-phase arming still holds both oracles; tracking survives swap-out.
 */
#include "testutil.h"
#include "guest_bank.h"
#include "bgsnap.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MiB (1UL << 20)
#define PG  4096UL

struct owner {
	char *mem;
	size_t len;
	char *reference;
	struct bank bank;
};

static int own_pause(void *arg)
{
	struct owner *o = arg;

	bank_pause(&o->bank);
	memcpy(o->reference, o->mem, o->len);
	return 0;
}

static void own_resume(void *arg)
{
	bank_resume(&((struct owner *)arg)->bank);
}

static void owner_init(struct owner *o, size_t len)
{
	o->len = len;
	o->mem = tu_map_anon(len, false);
	o->reference = malloc(len);
	memset(o->reference, 0, len);
	assert_int_equal(bank_format(o->mem, len, tu_seed()), 0);
	assert_int_equal(
		bank_start(&o->bank, o->mem, len, 2, BANK_RANDOM, 0, tu_seed()),
		0);
}

static void owner_fini(struct owner *o)
{
	bank_stop(&o->bank);
	tu_unmap(o->mem, o->len);
	free(o->reference);
}

static void restore_equals(const char *path, const char *want, size_t len,
			   bool lazy)
{
	struct bgsnap_restore_opts ro = { .size = sizeof(ro),
					  .flags = lazy ? BGSNAP_RESTORE_LAZY
							: 0 };
	char *mem = tu_map_anon(len, false), why[256];
	struct bgsnap *h;

	assert_int_equal(bgsnap_new(&h), 0);
	assert_int_equal(bgsnap_add_region(h, "ram", mem, len), 0);
	if (bgsnap_restore(h, path, &ro))
		fail_msg("restore %s: %s", path, bgsnap_last_error(h));
	for (size_t i = 0; i < len; i += PG)
		if (memcmp(mem + i, want + i, PG))
			fail_msg("%s: page %zu differs from its instant", path,
				 i / PG);
	if (bank_check(mem, len, why, sizeof(why)))
		fail_msg("%s: %s", path, why);
	bgsnap_free(h);
	tu_unmap(mem, len);
}

/* ---- a chain of five ----------------------------------------------------- */

static void test_chain_of_five(void **state)
{
	const size_t len = 32 * MiB;
	struct owner o;
	struct bgsnap_save_opts so = { .size = sizeof(so),
				       .pause = own_pause,
				       .resume = own_resume,
				       .arg = &o };
	char path[5][256], *ref[5];
	struct bgsnap_stats st = { .size = sizeof(st) };
	struct bgsnap *h;
	struct stat fs[5];

	(void)state;
	owner_init(&o, len);
	/* Writers at a modest rate: a few % of the pages change between
	 * snapshots. */
	bank_stop(&o.bank);
	assert_int_equal(
		bank_start(&o.bank, o.mem, len, 2, BANK_RANDOM, 500, tu_seed()),
		0);
	assert_int_equal(bgsnap_new(&h), 0);
	assert_int_equal(bgsnap_add_region(h, "ram", o.mem, len), 0);
	for (int i = 0; i < 5; i++) {
		snprintf(path[i], sizeof(path[i]), "%s/chain-%d.bgs",
			 tu_tmpdir(), i);
		so.flags = BGSNAP_SAVE_KEEP_TRACKING |
			   (i ? BGSNAP_SAVE_INCREMENTAL : 0);
		if (bgsnap_save(h, path[i], &so))
			fail_msg("save %d: %s", i, bgsnap_last_error(h));
		assert_int_equal(bgsnap_stats(h, &st), 0);
		assert_int_equal(stat(path[i], &fs[i]), 0);
		fprintf(stderr,
			"# snapshot %d: %lld bytes, parent pages %llu, "
			"blackout %.3f ms, re-protected %llu, armed in %.1f "
			"ms, elapsed %.1f ms\n",
			i, (long long)fs[i].st_size,
			(unsigned long long)st.pages_parent,
			st.blackout_ns / 1e6,
			(unsigned long long)st.reprotected_pages,
			st.arm_ns / 1e6, st.elapsed_ns / 1e6);
		if (i)
			assert_true(st.pages_parent > 0);
		ref[i] = malloc(len);
		memcpy(ref[i], o.reference, len);
		tu_sleep_ms(20);
	}
	bgsnap_free(h);
	owner_fini(&o);
	for (int i = 1; i < 5; i++)
		assert_true(fs[i].st_size < fs[0].st_size);
	for (int i = 0; i < 5; i++) {
		restore_equals(path[i], ref[i], len, false);
		if (i == 4)
			restore_equals(path[i], ref[i], len, true);
	}
	/* Flattened, the last one needs no parent any more. */
	char flat[300];
	snprintf(flat, sizeof(flat), "%s/flat.bgs", tu_tmpdir());
	assert_int_equal(bgsnap_new(&h), 0);
	if (bgsnap_flatten(h, path[4], flat, NULL))
		fail_msg("flatten: %s", bgsnap_last_error(h));
	bgsnap_free(h);
	for (int i = 0; i < 5; i++)
		unlink(path[i]);
	restore_equals(flat, ref[4], len, false);
	unlink(flat);
	for (int i = 0; i < 5; i++)
		free(ref[i]);
}

/* An incremental save against a file, without tracking: pages compared. */
static void test_incremental_by_comparison(void **state)
{
	const size_t len = 16 * MiB;
	char *mem = tu_map_anon(len, false), *want = malloc(len);
	char full[256], incr[256];
	struct bgsnap_save_opts so = { .size = sizeof(so),
				       .flags = BGSNAP_SAVE_INCREMENTAL,
				       .parent = full };
	struct bgsnap_stats st = { .size = sizeof(st) };
	struct bgsnap *h;
	struct stat a, b;

	(void)state;
	assert_int_equal(bank_format(mem, len, tu_seed()), 0);
	snprintf(full, sizeof(full), "%s/cmp-full.bgs", tu_tmpdir());
	snprintf(incr, sizeof(incr), "%s/cmp-incr.bgs", tu_tmpdir());
	assert_int_equal(bgsnap_new(&h), 0);
	assert_int_equal(bgsnap_add_region(h, "ram", mem, len), 0);
	assert_int_equal(bgsnap_save(h, full, NULL), 0);
	for (size_t i = 0; i < len; i += 64 * PG) /* 1 page in 64 */
		mem[i + 100] ^= 1;
	memcpy(want, mem, len);
	if (bgsnap_save(h, incr, &so))
		fail_msg("%s", bgsnap_last_error(h));
	assert_int_equal(bgsnap_stats(h, &st), 0);
	assert_int_equal(st.pages_parent + len / (64 * PG), len / PG);
	assert_int_equal(stat(full, &a), 0);
	assert_int_equal(stat(incr, &b), 0);
	assert_true(b.st_size * 20 < a.st_size);
	bgsnap_free(h);
	restore_equals(incr, want, len, false);
	unlink(full);
	unlink(incr);
	free(want);
	tu_unmap(mem, len);
}

/* ---- the phase switch loses nothing ------------------------------------- */

#define SEQ_PAGES 512

struct sequencer {
	pthread_t t;
	char *mem;
	_Atomic bool stop;
	_Atomic uint64_t value;
	int lost;
};

/* Never paused: writes value v to page 0, 1, ... then v + 1 ..., and
 * reads each write back. Any point-in-time image holds v on a prefix of
 * the pages and v - 1 on the rest. */
static void *sequencer_main(void *arg)
{
	struct sequencer *q = arg;

	for (uint64_t v = 1; !atomic_load(&q->stop); v++) {
		for (int i = 0; i < SEQ_PAGES; i++) {
			volatile uint64_t *slot =
				(volatile uint64_t *)(q->mem +
						      (size_t)i * 8 * PG);
			*slot = v;
			if (*slot != v)
				q->lost++;
		}
		atomic_store(&q->value, v);
	}
	return NULL;
}

static void check_sequence(const char *image)
{
	uint64_t first = *(const uint64_t *)image;
	int drops = 0;

	for (int i = 1; i < SEQ_PAGES; i++) {
		const uint64_t x =
			*(const uint64_t *)(image + (size_t)i * 8 * PG);
		const uint64_t prev =
			*(const uint64_t *)(image + (size_t)(i - 1) * 8 * PG);
		if (x == prev)
			continue;
		if (x + 1 != prev || ++drops > 1)
			fail_msg("torn: page %d holds %llu after %llu (first "
				 "%llu)",
				 i, (unsigned long long)x,
				 (unsigned long long)prev,
				 (unsigned long long)first);
	}
}

static void test_phase_switch_loses_nothing(void **state)
{
	const size_t len = (size_t)SEQ_PAGES * 8 * PG;
	struct sequencer q = { .mem = tu_map_anon(len, false) };
	struct bgsnap_save_opts so = { .size = sizeof(so),
				       .flags = BGSNAP_SAVE_KEEP_TRACKING };
	char path[256], *image = malloc(len);
	struct bgsnap *h;
	const char *env = getenv("BGSNAP_TEST_REPEAT");
	const int rounds = env ? atoi(env) * 10 : 20;

	(void)state;
	memset(q.mem, 0, len);
	pthread_create(&q.t, NULL, sequencer_main, &q);
	assert_int_equal(bgsnap_new(&h), 0);
	assert_int_equal(bgsnap_add_region(h, "seq", q.mem, len), 0);
	snprintf(path, sizeof(path), "%s/switch.bgs", tu_tmpdir());
	for (int i = 0; i < rounds; i++) {
		const uint64_t before = atomic_load(&q.value);

		if (bgsnap_save(h, path, &so))
			fail_msg("save %d: %s", i, bgsnap_last_error(h));
		tu_snapshot_region(path, "seq", image, len);
		check_sequence(image);
		/* Not an old state: the writer's progress is in it. */
		assert_true(*(uint64_t *)image >= before);
	}
	atomic_store(&q.stop, true);
	pthread_join(q.t, NULL);
	assert_int_equal(q.lost, 0);
	bgsnap_free(h);
	unlink(path);
	free(image);
	tu_unmap(q.mem, len);
}

/* ---- rollback ------------------------------------------------------------ */

struct live {
	struct owner *o;
	int equal;
};

static int hold(void *arg)
{
	bank_hold(&((struct live *)arg)->o->bank);
	return 0;
}

static void check_and_release(void *arg)
{
	struct live *l = arg;

	l->equal = !memcmp(l->o->mem, l->o->reference, l->o->len);
	bank_recover(l->o->mem, l->o->len);
	bank_release(&l->o->bank);
}

static void rollback_case(size_t undo_budget)
{
	const size_t len = 32 * MiB;
	struct owner o;
	struct live l = { &o, 0 };
	struct bgsnap_save_opts so = { .size = sizeof(so),
				       .pause = own_pause,
				       .resume = own_resume,
				       .arg = &o,
				       .undo_budget = undo_budget,
				       .flags = BGSNAP_SAVE_KEEP_TRACKING };
	char path[256];
	struct bgsnap_rollback_opts ro = { .size = sizeof(ro),
					   .pause = hold,
					   .resume = check_and_release,
					   .arg = &l,
					   .path = path };
	struct bgsnap_stats st = { .size = sizeof(st) };
	struct bgsnap *h;

	owner_init(&o, len);
	snprintf(path, sizeof(path), "%s/rollback.bgs", tu_tmpdir());
	assert_int_equal(bgsnap_new(&h), 0);
	assert_int_equal(bgsnap_add_region(h, "ram", o.mem, len), 0);
	assert_int_equal(bgsnap_save(h, path, &so), 0);
	for (int i = 0; i < 3; i++) {
		uint64_t written = 0;

		tu_sleep_ms(30);
		assert_int_equal(bgsnap_track_written(h, &written), 0);
		assert_true(written > 0);
		if (bgsnap_rollback(h, &ro))
			fail_msg("rollback: %s", bgsnap_last_error(h));
		assert_true(l.equal);
		assert_int_equal(bgsnap_stats(h, &st), 0);
		fprintf(stderr,
			"# rollback %d (undo %zu MiB): %llu pages in "
			"%.3f ms\n",
			i, undo_budget >> 20,
			(unsigned long long)st.pages_changed,
			st.elapsed_ns / 1e6);
		assert_true(st.pages_changed >= written);
	}
	bgsnap_free(h);
	unlink(path);
	owner_fini(&o);
}

static void test_rollback_from_memory(void **state)
{
	(void)state;
	rollback_case(64 * MiB);
}

static void test_rollback_from_file(void **state)
{
	(void)state;
	rollback_case(0);
}

/*
 * The undo budget holds the pages written since the last rollback, not all
 * the pages ever written since the snapshot: rollbacks that each write
 * other pages, half the budget at a time, go on from memory alone (no file
 * named) for as long as they are repeated.
 */
static void test_rollback_budget_reused(void **state)
{
	const size_t len = 8 * MiB, budget = 1 * MiB;
	const size_t per_round = budget / PG / 2;
	struct bgsnap_save_opts so = { .size = sizeof(so),
				       .undo_budget = budget,
				       .flags = BGSNAP_SAVE_KEEP_TRACKING };
	uint8_t *mem = tu_map_kind(TU_ANON, len);
	uint8_t *reference = malloc(len);
	char path[256];
	struct bgsnap *h;

	(void)state;
	assert_non_null(mem);
	assert_non_null(reference);
	for (size_t i = 0; i < len; i += 8)
		memcpy(mem + i, &i, sizeof(i));
	memcpy(reference, mem, len);
	snprintf(path, sizeof(path), "%s/budget.bgs", tu_tmpdir());
	assert_int_equal(bgsnap_new(&h), 0);
	assert_int_equal(bgsnap_add_region(h, "ram", mem, len), 0);
	assert_int_equal(bgsnap_save(h, path, &so), 0);
	unlink(path); /* memory alone from here on */
	for (size_t round = 0; round < len / PG / per_round; round++) {
		for (size_t k = 0; k < per_round; k++)
			memset(mem + (round * per_round + k) * PG, 0xEE, 64);
		if (bgsnap_rollback(h, NULL))
			fail_msg("rollback %zu: %s", round,
				 bgsnap_last_error(h));
		assert_memory_equal(mem, reference, len);
	}
	bgsnap_free(h);
	tu_unmap(mem, len);
	free(reference);
}

/* ---- one-phase arming ---------------------------------------------------- */

static void test_one_phase(void **state)
{
	const size_t len = 32 * MiB;
	struct owner o;
	struct bgsnap_save_opts so = { .size = sizeof(so),
				       .pause = own_pause,
				       .resume = own_resume,
				       .arg = &o,
				       .flags = BGSNAP_SAVE_ONE_PHASE };
	char path[256];
	struct bgsnap *h;

	(void)state;
	owner_init(&o, len);
	snprintf(path, sizeof(path), "%s/one.bgs", tu_tmpdir());
	assert_int_equal(bgsnap_new(&h), 0);
	assert_int_equal(bgsnap_add_region(h, "ram", o.mem, len), 0);
	assert_int_equal(bgsnap_save(h, path, &so), 0);
	bgsnap_free(h);
	restore_equals(path, o.reference, len, false);
	restore_equals(path, o.reference, len, true);
	unlink(path);
	owner_fini(&o);
}

/* ---- swap ---------------------------------------------------------------- */

static char swapfile[64];

static void swap_off(void)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "swapoff '%s' 2>/dev/null; rm -f '%s'",
		 swapfile, swapfile);
	if (system(cmd))
		fprintf(stderr, "# could not remove %s\n", swapfile);
}

/* A tracked page swapped out and written is still seen written. */
static void test_tracking_survives_swap(void **state)
{
	const size_t len = 16 * MiB;
	char cmd[600], *mem = tu_map_anon(len, false);
	struct bgsnap *h;
	uint64_t written = 0;

	(void)state;
	tu_need_root("swapon, and swapping the pages out");
	snprintf(swapfile, sizeof(swapfile), "/var/tmp/bgs-swap-%d",
		 (int)getpid());
	snprintf(cmd, sizeof(cmd),
		 "fallocate -l 256M '%s' && chmod 600 '%s' && "
		 "mkswap '%s' >/dev/null && swapon '%s'",
		 swapfile, swapfile, swapfile, swapfile);
	assert_int_equal(system(cmd), 0);
	atexit(swap_off);
	memset(mem, 0x77, len);
	assert_int_equal(bgsnap_new(&h), 0);
	assert_int_equal(bgsnap_add_region(h, "ram", mem, len), 0);
	assert_int_equal(bgsnap_track_start(h), 0);
	assert_int_equal(madvise(mem, len, MADV_PAGEOUT), 0);
	for (size_t i = 0; i < len; i += 16 * PG)
		mem[i] = 1;
	assert_int_equal(bgsnap_track_written(h, &written), 0);
	assert_int_equal(written, len / (16 * PG));
	bgsnap_free(h);
	for (size_t i = 0; i < len; i += PG)
		assert_int_equal(mem[i], i % (16 * PG) ? 0x77 : 1);
	swap_off();
	tu_unmap(mem, len);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_chain_of_five),
		cmocka_unit_test(test_incremental_by_comparison),
		cmocka_unit_test(test_phase_switch_loses_nothing),
		cmocka_unit_test(test_rollback_from_memory),
		cmocka_unit_test(test_rollback_from_file),
		cmocka_unit_test(test_rollback_budget_reused),
		cmocka_unit_test(test_one_phase),
		cmocka_unit_test(test_tracking_survives_swap),
	};
	struct bgs_uffd u;

	tu_open_wp(&u);
	bgs_uffd_close(&u);
	tu_seed();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
