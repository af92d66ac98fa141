/* SPDX-License-Identifier: MIT */
/*
 * The public structs' size convention (bgsnap.h, "Conventions"), seen
 * from applications built against other versions of bgsnap.h: one whose
 * structs are shorter (an older header) and one whose structs are longer
 * (a newer header). Results are written into a buffer filled with a
 * canary: nothing may change past the size the caller gave, and what is
 * written before it must be what a caller of this version gets. Options
 * are read from a struct that ends where an unreadable page begins: a
 * read past the caller's size kills the test.
 *
 * Only bgsnap.h is used, as an application would.
 */
#include "bgsnap.h"
#include "testutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define CANARY 0xa5
#define SLACK  64 /* canary bytes checked past a struct */
#define LEN    (64UL << 10)

struct fixture {
	char dir[256];
	char path[300];
	void *mem;
	struct bgsnap *h;
	struct bgsnap_file *f;
	unsigned char *page; /* a readable page, then an unreadable one */
};

static int setup(void **state)
{
	struct fixture *x = calloc(1, sizeof(*x));
	const long ps = sysconf(_SC_PAGESIZE);

	snprintf(x->dir, sizeof(x->dir), "%s/bgs_abi_XXXXXX", tu_tmpdir());
	if (!mkdtemp(x->dir))
		return -1;
	snprintf(x->path, sizeof(x->path), "%s/a.bgs", x->dir);
	x->mem = tu_map_anon(LEN, false);
	memset(x->mem, 0x5a, LEN / 2);
	x->page = mmap(NULL, 2 * (size_t)ps, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (x->page == MAP_FAILED ||
	    mprotect(x->page + ps, (size_t)ps, PROT_NONE))
		return -1;
	if (bgsnap_new(&x->h) || bgsnap_add_region(x->h, "ram", x->mem, LEN))
		return -1;
	*state = x;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *x = *state;

	bgsnap_file_close(x->f);
	bgsnap_free(x->h);
	tu_unmap(x->mem, LEN);
	munmap(x->page, 2 * (size_t)sysconf(_SC_PAGESIZE));
	unlink(x->path);
	rmdir(x->dir);
	free(x);
	return 0;
}

/* @size bytes of options copied to the end of the readable page: a read
 * past them faults. */
static void *guarded(struct fixture *x, const void *opts, size_t size)
{
	unsigned char *p = x->page + sysconf(_SC_PAGESIZE) - size;

	memcpy(p, opts, size);
	return p;
}

/* A result struct of @size bytes followed by the canary, as the caller
 * of another version would have it. */
static unsigned char *sized(size_t size)
{
	unsigned char *b = malloc(size + SLACK);

	memset(b, CANARY, size + SLACK);
	memcpy(b, &size, sizeof(size));
	return b;
}

static void assert_canary(const unsigned char *b, size_t from, size_t to)
{
	for (size_t i = from; i < to; i++)
		if (b[i] != CANARY)
			fail_msg(
				"byte %zu past the caller's struct was written",
				i);
}

/* Calls @get with a struct of this version, then one of @old bytes and
 * one 16 bytes longer than this version's, and checks what each got. */
static void check_out(int (*get)(void *ctx, void *out), void *ctx, size_t full,
		      size_t old)
{
	unsigned char *ref = sized(full), *b;
	const size_t head = sizeof(size_t);

	assert_int_equal(get(ctx, ref), 0);
	assert_canary(ref, full, full + SLACK);

	b = sized(old);
	assert_int_equal(get(ctx, b), 0);
	assert_canary(b, old, old + SLACK);
	assert_memory_equal(b + head, ref + head, old - head);
	free(b);

	b = sized(full + 16);
	assert_int_equal(get(ctx, b), 0);
	assert_memory_equal(b + head, ref + head, full - head);
	for (size_t i = full; i < full + 16; i++)
		assert_int_equal(b[i], 0); /* unknown to the library: zero */
	assert_canary(b, full + 16, full + 16 + SLACK);
	free(b);

	b = sized(0);
	assert_int_equal(get(ctx, b), -EINVAL);
	assert_canary(b, head, SLACK);
	free(b);
	free(ref);
}

static int get_stats(void *ctx, void *out)
{
	return bgsnap_stats(ctx, out);
}

static int get_progress(void *ctx, void *out)
{
	const size_t size = *(size_t *)out;

	bgsnap_progress(ctx, out);
	return size < sizeof(size_t) ? -EINVAL : 0;
}

static int get_region(void *ctx, void *out)
{
	return bgsnap_region(ctx, 0, out);
}

static int get_file_info(void *ctx, void *out)
{
	return bgsnap_file_info(ctx, out);
}

static int get_file_region(void *ctx, void *out)
{
	return bgsnap_file_region(ctx, 0, out);
}

/* A save with the options of an older caller, which end before
 * undo_budget, read from the end of a page. */
static void save_old(struct fixture *x)
{
	const struct bgsnap_save_opts o = {
		.size = offsetof(struct bgsnap_save_opts, undo_budget),
		.compression = BGSNAP_COMPRESS_NONE,
	};

	assert_int_equal(bgsnap_save(x->h, x->path, guarded(x, &o, o.size)), 0);
	assert_int_equal(bgsnap_file_open(&x->f, x->path, NULL, 0), 0);
}

static void test_results_old_and_new(void **state)
{
	struct fixture *x = *state;

	save_old(x);
	check_out(get_stats, x->h, sizeof(struct bgsnap_stats),
		  offsetof(struct bgsnap_stats, pages_parent));
	check_out(get_progress, x->h, sizeof(struct bgsnap_progress),
		  offsetof(struct bgsnap_progress, elapsed_ns));
	check_out(get_region, x->h, sizeof(struct bgsnap_region_info),
		  offsetof(struct bgsnap_region_info, why));
	check_out(get_file_info, x->f, sizeof(struct bgsnap_file_info),
		  offsetof(struct bgsnap_file_info, data_bytes));
	check_out(get_file_region, x->f, sizeof(struct bgsnap_file_region),
		  offsetof(struct bgsnap_file_region, records));
}

static void test_stats_filled(void **state)
{
	struct fixture *x = *state;
	struct bgsnap_stats st = { .size = sizeof(st) };

	save_old(x);
	assert_int_equal(bgsnap_stats(x->h, &st), 0);
	assert_int_equal(st.size, sizeof(st));
	assert_int_equal(st.pages_total, LEN / 4096);
	assert_true(st.bytes_written > 0);
}

/* A newer caller's options: longer, with a field this library lacks. */
static void test_options_new(void **state)
{
	struct fixture *x = *state;
	struct {
		struct bgsnap_restore_opts o;
		uint64_t later;
	} r = { .o.size = sizeof(r), .later = 1 };
	struct {
		struct bgsnap_save_opts o;
		uint64_t later;
	} s = { .o.size = sizeof(s), .later = 1 };

	assert_int_equal(bgsnap_save(x->h, x->path, &s.o), -E2BIG);
	assert_int_equal(access(x->path, F_OK), -1);
	s.later = 0; /* not asked for: the library may ignore it */
	assert_int_equal(bgsnap_save(x->h, x->path, &s.o), 0);
	assert_int_equal(bgsnap_restore(x->h, x->path, &r.o), -E2BIG);
	r.later = 0;
	r.o.flags = BGSNAP_RESTORE_DRY_RUN;
	assert_int_equal(bgsnap_restore(x->h, x->path, &r.o), 0);
}

/* An older caller's restore options, read from the end of a page; and a
 * struct left zeroed, refused. */
static void test_options_old_and_zero(void **state)
{
	struct fixture *x = *state;
	const struct bgsnap_restore_opts o = {
		.size = offsetof(struct bgsnap_restore_opts, threads),
		.flags = BGSNAP_RESTORE_DRY_RUN,
	};
	const struct bgsnap_save_opts zero = { 0 };
	const struct bgsnap_rollback_opts rzero = { 0 };
	const struct bgsnap_target_opts tzero = { 0 };

	save_old(x);
	assert_int_equal(bgsnap_restore(x->h, x->path, guarded(x, &o, o.size)),
			 0);
	assert_int_equal(bgsnap_save(x->h, x->path, &zero), -EINVAL);
	assert_int_equal(bgsnap_rollback(x->h, &rzero), -EINVAL);
	assert_int_equal(bgsnap_target_pid(x->h, getpid(), &tzero), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_results_old_and_new, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_stats_filled, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_options_new, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_options_old_and_zero,
						setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
