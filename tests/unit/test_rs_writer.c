/* SPDX-License-Identifier: MIT */
/*
 * The writer's contract at its edges: the target path (0600 whatever the
 * umask, a symlink refused and left alone, a directory refused, an old
 * file replaced only by a successful commit), bad arguments and options,
 * the first error sticking, and a commit that refuses a store with pages
 * missing or stored twice, leaving no file behind.
 */
#include "rs_testutil.h"
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PG RS_PAGE

static uint8_t page[16 * PG];
static char dir[256], path[300];

static struct rs_region regions[3];

static int setup(void **state)
{
	(void)state;
	rt_fill(page, 16, RT_TEXT, 1);
	memset(regions, 0, sizeof(regions));
	strcpy(regions[0].name, "ram");
	regions[0].length = 16 * PG;
	regions[0].page_size = PG;
	regions[0].kind = RS_KIND_ANON;
	strcpy(regions[1].name, "huge");
	regions[1].base = 1u << 30;
	regions[1].length = 16 * PG;
	regions[1].page_size = 8 * PG;
	regions[1].kind = RS_KIND_HUGETLB;
	strcpy(regions[2].name, "gone");
	regions[2].length = PG;
	regions[2].page_size = PG;
	regions[2].kind = RS_KIND_UNSAVED;
	return 0;
}

static int per_test(void **state)
{
	(void)state;
	rt_mkdtemp(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/snap.bgs", dir);
	return 0;
}

static int per_test_done(void **state)
{
	(void)state;
	rt_rmdir(dir);
	return 0;
}

static const struct rs_writer_opts opts = { .regions = regions, .nregions = 3 };

static struct rs_writer *open_w(void)
{
	struct rs_writer *w;

	assert_int_equal(bgs_rs_writer_open_path(&w, path, &opts), 0);
	return w;
}

static void put_all(struct rs_writer *w)
{
	assert_int_equal(bgs_rs_put_pages(w, 0, 0, 16, page), 0);
	assert_int_equal(bgs_rs_put_pages(w, 1, 0, 16, page), 0);
}

/* ---- the target path ----------------------------------------------------- */

static void test_mode_0600(void **state)
{
	const mode_t old = umask(0);
	struct rs_writer *w;
	struct stat st;

	(void)state;
	w = open_w();
	umask(old);
	put_all(w);
	assert_int_equal(bgs_rs_writer_commit(w), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(rt_count_entries(dir), 1);
}

static void test_symlink_refused(void **state)
{
	char target[320];
	struct rs_writer *w;
	struct stat st;

	(void)state;
	snprintf(target, sizeof(target), "%s/elsewhere", dir);
	assert_int_equal(symlink(target, path), 0);
	assert_int_equal(bgs_rs_writer_open_path(&w, path, &opts), -ELOOP);
	assert_null(w);
	/* the link is left as it was, its target never created */
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	assert_int_equal(access(target, F_OK), -1);
	assert_int_equal(rt_count_entries(dir), 1);
	/* a dangling link to an existing file: the same */
	close(open(target, O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
	assert_int_equal(bgs_rs_writer_open_path(&w, path, &opts), -ELOOP);
	assert_int_equal(stat(target, &st), 0);
	assert_int_equal(st.st_size, 0);
	assert_int_equal(rt_count_entries(dir), 2);
}

static void test_bad_targets(void **state)
{
	char p[400];
	struct rs_writer *w;

	(void)state;
	assert_int_equal(mkdir(path, 0700), 0);
	assert_int_equal(bgs_rs_writer_open_path(&w, path, &opts), -EISDIR);
	rmdir(path);
	snprintf(p, sizeof(p), "%s/", dir);
	assert_int_equal(bgs_rs_writer_open_path(&w, p, &opts), -EISDIR);
	snprintf(p, sizeof(p), "%s/no/such/dir/snap", dir);
	assert_int_equal(bgs_rs_writer_open_path(&w, p, &opts), -ENOENT);
	assert_int_equal(bgs_rs_writer_open_path(&w, NULL, &opts), -EINVAL);
	assert_int_equal(rt_count_entries(dir), 0);
}

static void test_replace_on_commit_only(void **state)
{
	struct rs_writer *w;
	struct stat before, after;
	int fd;

	(void)state;
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	assert_int_equal(write(fd, "old", 3), 3);
	close(fd);
	assert_int_equal(stat(path, &before), 0);
	/* abort: the old file stays as it was */
	w = open_w();
	put_all(w);
	bgs_rs_writer_abort(w);
	assert_int_equal(stat(path, &after), 0);
	assert_int_equal(after.st_ino, before.st_ino);
	assert_int_equal(after.st_size, 3);
	assert_int_equal(rt_count_entries(dir), 1);
	/* commit: replaced */
	w = open_w();
	put_all(w);
	assert_int_equal(bgs_rs_writer_commit(w), 0);
	assert_int_equal(stat(path, &after), 0);
	assert_true(after.st_ino != before.st_ino);
	assert_true(after.st_size > 3);
	assert_int_equal(rt_count_entries(dir), 1);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	{
		struct rs_reader *r;

		assert_int_equal(bgs_rs_open(&r, fd, NULL), 0);
		assert_int_equal(bgs_rs_verify(r, 0, NULL, NULL, NULL), 0);
		bgs_rs_close(r);
	}
	close(fd);
}

/* The rename at commit fails: the error comes back, no file is left. */
static void test_commit_rename_fails(void **state)
{
	char inner[400];
	struct rs_writer *w;
	int ret;

	(void)state;
	w = open_w();
	put_all(w);
	assert_int_equal(mkdir(path, 0700), 0); /* a directory took the name */
	snprintf(inner, sizeof(inner), "%s/x", path);
	close(open(inner, O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
	ret = bgs_rs_writer_commit(w);
	assert_true(ret == -EISDIR || ret == -ENOTEMPTY || ret == -EEXIST);
	assert_int_equal(rt_count_entries(dir), 1);
	unlink(inner);
	rmdir(path);
}

/* ---- arguments, options, sticky errors ----------------------------------- */

static void test_bad_options(void **state)
{
	struct rs_region bad[2];
	struct rs_writer_opts o = opts;
	struct rs_writer *w;

	(void)state;
	o.compression = 7;
	assert_int_equal(bgs_rs_writer_open_path(&w, path, &o), -EINVAL);
	assert_int_equal(bgs_rs_writer_open_path(&w, path, NULL), -EINVAL);
	o = opts;
	o.regions = NULL;
	assert_int_equal(bgs_rs_writer_open_path(&w, path, &o), -EINVAL);
	memcpy(bad, regions, sizeof(bad));
	o.regions = bad;
	o.nregions = 2;
	strcpy(bad[1].name, "ram"); /* twice */
	assert_int_equal(bgs_rs_writer_open_path(&w, path, &o), -EINVAL);
	memcpy(bad, regions, sizeof(bad));
	bad[0].length = PG + 1;
	assert_int_equal(bgs_rs_writer_open_path(&w, path, &o), -EINVAL);
	memcpy(bad, regions, sizeof(bad));
	bad[1].page_size = 3 * PG;
	assert_int_equal(bgs_rs_writer_open_path(&w, path, &o), -EINVAL);
	memcpy(bad, regions, sizeof(bad));
	bad[0].name[0] = '\0';
	assert_int_equal(bgs_rs_writer_open_path(&w, path, &o), -EINVAL);
	memcpy(bad, regions, sizeof(bad));
	bad[0].kind = 0;
	assert_int_equal(bgs_rs_writer_open_path(&w, path, &o), -EINVAL);
	assert_int_equal(bgs_rs_writer_open_fd(&w, -1, &opts), -EBADF);
	assert_int_equal(rt_count_entries(dir), 0);
}

/* Each bad call fails, the error sticks, commit returns it, no file. */
static void sticks(int (*bad)(struct rs_writer *), int want)
{
	struct rs_writer *w = open_w();
	struct rs_writer_stats s;

	assert_int_equal(bad(w), want);
	assert_int_equal(bgs_rs_put_pages(w, 0, 0, 1, page), want);
	assert_int_equal(bgs_rs_put_zero(w, 0, 1, 1), want);
	assert_int_equal(bgs_rs_put_attachment(w, "a", "b", 1), want);
	bgs_rs_writer_stats(w, &s); /* still fine to ask */
	assert_int_equal(s.pages, 0);
	assert_int_equal(bgs_rs_writer_commit(w), want);
	assert_int_equal(rt_count_entries(dir), 0);
}

static int bad_region(struct rs_writer *w)
{
	return bgs_rs_put_pages(w, 3, 0, 1, page);
}

static int unsaved_region(struct rs_writer *w)
{
	return bgs_rs_put_zero(w, 2, 0, 1);
}

static int past_end(struct rs_writer *w)
{
	return bgs_rs_put_pages(w, 0, 10, 7, page);
}

static int huge_split(struct rs_writer *w)
{
	return bgs_rs_put_pages(w, 1, 4, 8, page);
}

static int no_parent(struct rs_writer *w)
{
	return bgs_rs_put_parent(w, 0, 0, 1);
}

static int big_attachment(struct rs_writer *w)
{
	return bgs_rs_put_attachment(w, "big", page, RS_ATTACHMENT_MAX + 1);
}

static int bad_name(struct rs_writer *w)
{
	return bgs_rs_put_attachment(w, "a\nb", page, 1);
}

static int twice_named(struct rs_writer *w)
{
	const int ret = bgs_rs_put_attachment(w, "x", page, 1);

	return ret ? ret : bgs_rs_put_attachment(w, "x", page, 1);
}

static void test_errors_stick(void **state)
{
	(void)state;
	sticks(bad_region, -EINVAL);
	sticks(unsaved_region, -EINVAL);
	sticks(past_end, RS_ERANGE);
	sticks(huge_split, -EINVAL);
	sticks(no_parent, -EINVAL);
	sticks(big_attachment, -EINVAL);
	sticks(bad_name, -EINVAL);
	sticks(twice_named, -EEXIST);
}

static void test_commit_checks_coverage(void **state)
{
	struct rs_writer *w;

	(void)state;
	w = open_w();
	assert_int_equal(bgs_rs_put_pages(w, 0, 0, 15, page), 0);
	assert_int_equal(bgs_rs_put_pages(w, 1, 0, 16, page), 0);
	assert_int_equal(bgs_rs_writer_commit(w), RS_EMISSING);
	assert_int_equal(rt_count_entries(dir), 0);
	w = open_w();
	put_all(w);
	assert_int_equal(bgs_rs_put_zero(w, 0, 3, 1), 0);
	assert_int_equal(bgs_rs_writer_commit(w), RS_EOVERLAP);
	assert_int_equal(rt_count_entries(dir), 0);
}

/* A 64 MiB attachment, the most there may be, and empty regions. */
static void test_largest_attachment(void **state)
{
	const struct rs_writer_opts o = { .regions = regions,
					  .nregions = 0,
					  .buffer_budget = 1 };
	uint8_t *big = malloc(RS_ATTACHMENT_MAX), *back;
	struct rs_writer *w;
	struct rs_reader *r;
	const char *name;
	size_t len;
	int fd;

	(void)state;
	for (size_t i = 0; i < RS_ATTACHMENT_MAX; i += PG)
		memcpy(big + i, page + (i / PG % 16) * PG, PG);
	assert_int_equal(bgs_rs_writer_open_path(&w, path, &o), 0);
	assert_int_equal(
		bgs_rs_put_attachment(w, "bgsnap.max", big, RS_ATTACHMENT_MAX),
		0);
	assert_int_equal(bgs_rs_writer_commit(w), 0);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_int_equal(bgs_rs_open(&r, fd, NULL), 0);
	assert_int_equal(bgs_rs_region_count(r), 0);
	assert_int_equal(bgs_rs_extent_count(r), 0);
	assert_int_equal(bgs_rs_attachment_info(r, 0, &name, &len), 0);
	assert_string_equal(name, "bgsnap.max");
	assert_int_equal(len, RS_ATTACHMENT_MAX);
	back = malloc(len);
	assert_int_equal(bgs_rs_attachment_read(r, 0, back, NULL), 0);
	assert_memory_equal(back, big, len);
	assert_int_equal(bgs_rs_verify(r, 0, NULL, NULL, NULL), 0);
	bgs_rs_close(r);
	close(fd);
	free(back);
	free(big);
}

static uint64_t progress_calls, progress_last, progress_total;

static void progress(void *arg, uint64_t done, uint64_t total)
{
	(void)arg;
	assert_true(done >= progress_last && done <= total);
	progress_calls++;
	progress_last = done;
	progress_total = total;
}

static void test_verify_progress(void **state)
{
	struct rs_writer *w = open_w();
	struct rs_reader *r;
	struct stat st;
	int fd;

	(void)state;
	put_all(w);
	assert_int_equal(bgs_rs_writer_commit(w), 0);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(bgs_rs_open(&r, fd, NULL), 0);
	assert_int_equal(bgs_rs_verify(r, 0, NULL, progress, NULL), 0);
	assert_true(progress_calls >= 1);
	assert_int_equal(progress_last, st.st_size);
	assert_int_equal(progress_total, st.st_size);
	bgs_rs_close(r);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_mode_0600, per_test,
						per_test_done),
		cmocka_unit_test_setup_teardown(test_symlink_refused, per_test,
						per_test_done),
		cmocka_unit_test_setup_teardown(test_bad_targets, per_test,
						per_test_done),
		cmocka_unit_test_setup_teardown(test_replace_on_commit_only,
						per_test, per_test_done),
		cmocka_unit_test_setup_teardown(test_commit_rename_fails,
						per_test, per_test_done),
		cmocka_unit_test_setup_teardown(test_bad_options, per_test,
						per_test_done),
		cmocka_unit_test_setup_teardown(test_errors_stick, per_test,
						per_test_done),
		cmocka_unit_test_setup_teardown(test_commit_checks_coverage,
						per_test, per_test_done),
		cmocka_unit_test_setup_teardown(test_largest_attachment,
						per_test, per_test_done),
		cmocka_unit_test_setup_teardown(test_verify_progress, per_test,
						per_test_done),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
