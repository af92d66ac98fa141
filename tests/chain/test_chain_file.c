/* SPDX-License-Identifier: MIT */
/*
 * Chains in the public snapshot-file API (snapshot/snap_file.c) over files
 * the store's writer makes directly, with known ids and contents:
 *
 *   a.bgs  full: region "m" (32 pages), "n" (8 pages), "u" unsaved
 *   b.bgs  parent a: "m" 0-7 new data, 8-31 parent; "n" all parent
 *   c.bgs  parent b: "m" 0-3 parent, 4-5 new data, 6-31 parent;
 *          "n" 0-1 zero, 2-7 parent
 *
 * Reads of c follow the chain by region name; the parent is found beside
 * (bgsnap.parent) or among the files offered, by id; a missing, wrong or
 * damaged ancestor is reported naming the file; verify_chain checks every
 * file and the links; flatten (the restore's side of the one rule) gives
 * the same bytes.
 */
#include "testutil.h"
#include "rs_testutil.h"

#include <bgsnap.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAGE  4096u
#define M_PGS 32u
#define N_PGS 8u

static char dir[256];
static uint8_t a_m[M_PGS * PAGE], a_n[N_PGS * PAGE];
static uint8_t b_m[8 * PAGE], c_m[2 * PAGE];
static uint8_t want_m[M_PGS * PAGE], want_n[N_PGS * PAGE]; /* c's view */

static const struct rs_region table[] = {
	{ .name = "m",
	  .base = 0x10000000,
	  .length = M_PGS * PAGE,
	  .page_size = PAGE,
	  .kind = RS_KIND_ANON,
	  .prot = 3 },
	{ .name = "n",
	  .base = 0x20000000,
	  .length = N_PGS * PAGE,
	  .page_size = PAGE,
	  .kind = RS_KIND_SHMEM,
	  .prot = 3 },
	{ .name = "u",
	  .base = 0x30000000,
	  .length = 4 * PAGE,
	  .page_size = PAGE,
	  .kind = RS_KIND_UNSAVED,
	  .prot = 1 },
};

static int fill_a(struct rs_writer *w, void *arg)
{
	int ret = bgs_rs_put_pages(w, 0, 0, M_PGS, a_m);

	(void)arg;
	return ret ? ret : bgs_rs_put_pages(w, 1, 0, N_PGS, a_n);
}

static int fill_b(struct rs_writer *w, void *arg)
{
	int ret = bgs_rs_put_pages(w, 0, 0, 8, b_m);

	(void)arg;
	if (!ret)
		ret = bgs_rs_put_parent(w, 0, 8, M_PGS - 8);
	if (!ret)
		ret = bgs_rs_put_parent(w, 1, 0, N_PGS);
	if (!ret)
		ret = bgs_rs_put_attachment(w, "bgsnap.parent", "a.bgs", 5);
	return ret;
}

static int fill_c(struct rs_writer *w, void *arg)
{
	int ret = bgs_rs_put_parent(w, 0, 0, 4);

	(void)arg;
	if (!ret)
		ret = bgs_rs_put_pages(w, 0, 4, 2, c_m);
	if (!ret)
		ret = bgs_rs_put_parent(w, 0, 6, M_PGS - 6);
	if (!ret)
		ret = bgs_rs_put_zero(w, 1, 0, 2);
	if (!ret)
		ret = bgs_rs_put_parent(w, 1, 2, N_PGS - 2);
	if (!ret)
		ret = bgs_rs_put_attachment(w, "bgsnap.parent", "b.bgs", 5);
	return ret;
}

/* "d": parent a, but its region "z" is left to a parent that lacks it. */
static const struct rs_region table_d[] = {
	{ .name = "z",
	  .base = 0x40000000,
	  .length = 4 * PAGE,
	  .page_size = PAGE,
	  .kind = RS_KIND_ANON,
	  .prot = 3 },
};

static int fill_d(struct rs_writer *w, void *arg)
{
	int ret = bgs_rs_put_parent(w, 0, 0, 4);

	(void)arg;
	return ret ? ret
		   : bgs_rs_put_attachment(w, "bgsnap.parent", "a.bgs", 5);
}

static void write_file(const char *path, const uint8_t *buf, size_t len)
{
	const int fd =
		open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	assert_int_equal(close(fd), 0);
}

static uint8_t *slurp(const char *path, size_t *len)
{
	const int fd = open(path, O_RDONLY | O_CLOEXEC);
	uint8_t *buf;

	assert_true(fd >= 0);
	buf = rt_slurp(fd, len);
	close(fd);
	assert_non_null(buf);
	return buf;
}

static void make(const char *name, const struct rs_region *regions,
		 size_t nregions, int (*fill)(struct rs_writer *, void *),
		 uint8_t id, uint8_t parent)
{
	struct rs_writer_opts o = { .regions = regions, .nregions = nregions };
	char path[300];
	uint8_t *buf;
	size_t len;

	memset(o.snapshot_id, id, sizeof(o.snapshot_id));
	memset(o.parent_id, parent, sizeof(o.parent_id));
	buf = rt_make_store(&o, fill, NULL, &len);
	assert_non_null(buf);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	write_file(path, buf, len);
	free(buf);
}

/* dir/@sub/@name, in one of four buffers used in turn. */
static const char *in_dir(const char *sub, const char *name)
{
	static char path[4][400];
	static unsigned next;
	char *p = path[next++ % 4];

	snprintf(p, 400, "%s%s%s/%s", dir, *sub ? "/" : "", sub, name);
	return p;
}

/* Copy dir/@name to dir/@sub/@as. */
static void copy_to(const char *name, const char *sub, const char *as)
{
	char d[400];
	uint8_t *buf;
	size_t len;

	snprintf(d, sizeof(d), "%s/%s", dir, sub);
	mkdir(d, 0700);
	buf = slurp(in_dir("", name), &len);
	write_file(in_dir(sub, as), buf, len);
	free(buf);
}

static int setup(void **state)
{
	(void)state;
	rt_fill(a_m, M_PGS, RT_REALISTIC, 11);
	rt_fill(a_n, N_PGS, RT_TEXT, 12);
	rt_fill(b_m, 8, RT_RANDOM, 13);
	rt_fill(c_m, 2, RT_STRUCT, 14);
	memcpy(want_m, a_m, sizeof(want_m));
	memcpy(want_m, b_m, sizeof(b_m));
	memcpy(want_m + 4 * PAGE, c_m, sizeof(c_m));
	memcpy(want_n, a_n, sizeof(want_n));
	memset(want_n, 0, 2 * PAGE);
	snprintf(dir, sizeof(dir), "%s", tu_tmpdir());
	make("a.bgs", table, 3, fill_a, 0xaa, 0);
	make("b.bgs", table, 3, fill_b, 0xbb, 0xaa);
	make("c.bgs", table, 3, fill_c, 0xcc, 0xbb);
	make("d.bgs", table_d, 1, fill_d, 0xdd, 0xaa);
	return 0;
}

static struct bgsnap_file *open_ok(const char *path)
{
	char err[BGSNAP_FILE_ERROR_MAX];
	struct bgsnap_file *f;
	const int ret = bgsnap_file_open(&f, path, err, sizeof(err));

	if (ret)
		fail_msg("%s: %s", path, err);
	return f;
}

static bool ends_with(const char *s, const char *end)
{
	return strlen(s) >= strlen(end) &&
	       !strcmp(s + strlen(s) - strlen(end), end);
}

static void expect_error(struct bgsnap_file *f, const char *a, const char *b)
{
	const char *msg = bgsnap_file_last_error(f);

	fprintf(stderr, "# message: %s\n", msg);
	if (!strstr(msg, a) || (b && !strstr(msg, b)))
		fail_msg("message '%s' lacks '%s'%s%s", msg, a, b ? " or " : "",
			 b ? b : "");
}

static void expect_content(struct bgsnap_file *f)
{
	static uint8_t buf[M_PGS * PAGE];

	memset(buf, 0xee, sizeof(buf));
	assert_int_equal(bgsnap_file_read(f, 0, 0, buf, M_PGS * PAGE), 0);
	assert_memory_equal(buf, want_m, M_PGS * PAGE);
	/* Unaligned, across c's data, b's data and a's pages. */
	assert_int_equal(
		bgsnap_file_read(f, 0, 3 * PAGE + 5, buf, 7 * PAGE + 9), 0);
	assert_memory_equal(buf, want_m + 3 * PAGE + 5, 7 * PAGE + 9);
	assert_int_equal(bgsnap_file_read(f, 1, 0, buf, N_PGS * PAGE), 0);
	assert_memory_equal(buf, want_n, N_PGS * PAGE);
}

/* ---- the cases ----------------------------------------------------------- */

static void test_read_through_chain(void **state)
{
	struct bgsnap_file *c = open_ok(in_dir("", "c.bgs"));
	struct bgsnap_file *b, *a, *none;
	uint64_t len;

	(void)state;
	assert_string_equal(bgsnap_file_path(c), in_dir("", "c.bgs"));
	/* The map says where pages are; it opens nothing. */
	assert_int_equal(bgsnap_file_map(c, 0, 0, &len), BGSNAP_PAGES_PARENT);
	assert_int_equal(len, 4 * PAGE);
	assert_int_equal(bgsnap_file_map(c, 0, 4 * PAGE, &len),
			 BGSNAP_PAGES_DATA);
	expect_content(c);
	assert_int_equal(bgsnap_file_parent(c, &b), 0);
	assert_true(ends_with(bgsnap_file_path(b), "/b.bgs"));
	assert_int_equal(bgsnap_file_map(b, 0, 0, &len), BGSNAP_PAGES_DATA);
	assert_int_equal(len, 8 * PAGE);
	assert_int_equal(bgsnap_file_parent(b, &a), 0);
	assert_true(ends_with(bgsnap_file_path(a), "/a.bgs"));
	assert_int_equal(bgsnap_file_parent(a, &none), -ENOENT);
	assert_null(none);
	/* The same handle again, not a second one. */
	assert_int_equal(bgsnap_file_parent(c, &none), 0);
	assert_ptr_equal(none, b);
	/* The unsaved region is still unsaved. */
	assert_int_equal(bgsnap_file_read(c, 2, 0, (uint8_t[16]){ 0 }, 16),
			 -ENODATA);
	bgsnap_file_close(c);
}

struct seen {
	uint64_t last, total;
	unsigned calls;
};

static void progress(void *arg, uint64_t done, uint64_t total)
{
	struct seen *s = arg;

	assert_true(done >= s->last && done <= total);
	s->last = done;
	s->total = total;
	s->calls++;
}

static uint64_t file_size(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return (uint64_t)st.st_size;
}

static void test_verify_chain(void **state)
{
	struct bgsnap_file *c = open_ok(in_dir("", "c.bgs"));
	struct seen s = { 0 };
	const uint64_t total = file_size(in_dir("", "a.bgs")) +
			       file_size(in_dir("", "b.bgs")) +
			       file_size(in_dir("", "c.bgs"));

	(void)state;
	assert_int_equal(bgsnap_file_verify_chain(c, progress, &s), 0);
	assert_true(s.calls >= 3);
	assert_int_equal(s.total, total);
	assert_int_equal(s.last, total);
	assert_int_equal(bgsnap_file_verify_chain(c, NULL, NULL), 0);
	/* Deep, set on the parent's handle: the whole chain decoded. */
	{
		struct bgsnap_file *b;

		assert_int_equal(bgsnap_file_parent(c, &b), 0);
		assert_int_equal(bgsnap_file_set_verify(b, BGSNAP_VERIFY_DEEP),
				 0);
		assert_int_equal(bgsnap_file_verify_chain(c, NULL, NULL), 0);
	}
	bgsnap_file_close(c);
	/* A full snapshot: just itself. */
	c = open_ok(in_dir("", "a.bgs"));
	assert_int_equal(bgsnap_file_verify_chain(c, NULL, NULL), 0);
	bgsnap_file_close(c);
}

/* c alone elsewhere: its parent is missing until offered. */
static void test_missing_then_offered(void **state)
{
	struct bgsnap_file *c, *p;
	uint8_t buf[PAGE];

	(void)state;
	copy_to("c.bgs", "alone", "c.bgs");
	c = open_ok(in_dir("alone", "c.bgs"));
	/* Its own pages read without any parent. */
	assert_int_equal(bgsnap_file_read(c, 0, 4 * PAGE, buf, PAGE), 0);
	assert_memory_equal(buf, c_m, PAGE);
	assert_int_equal(bgsnap_file_read(c, 0, 0, buf, PAGE), BGSNAP_EPARENT);
	expect_error(c, "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "b.bgs");
	expect_error(c, "is not there", NULL);
	assert_int_equal(bgsnap_file_parent(c, &p), BGSNAP_EPARENT);
	assert_null(p);
	assert_int_equal(bgsnap_file_verify_chain(c, NULL, NULL),
			 BGSNAP_EPARENT);
	/* Offered in any order, found by id; a stranger among them is
	 * passed over. */
	assert_int_equal(bgsnap_file_add_parent(c, in_dir("", "d.bgs")), 0);
	assert_int_equal(bgsnap_file_add_parent(c, in_dir("", "a.bgs")), 0);
	assert_int_equal(bgsnap_file_add_parent(c, in_dir("", "b.bgs")), 0);
	assert_int_equal(bgsnap_file_add_parent(c, ""), -EINVAL);
	expect_content(c);
	assert_int_equal(bgsnap_file_verify_chain(c, NULL, NULL), 0);
	bgsnap_file_close(c);
}

/* A file under the parent's name that is another snapshot. */
static void test_wrong_file_beside(void **state)
{
	struct bgsnap_file *c;
	uint8_t buf[PAGE];

	(void)state;
	copy_to("c.bgs", "wrong", "c.bgs");
	copy_to("a.bgs", "wrong", "b.bgs");
	c = open_ok(in_dir("wrong", "c.bgs"));
	assert_int_equal(bgsnap_file_read(c, 0, 0, buf, PAGE), BGSNAP_EPARENT);
	expect_error(c, "b.bgs", "another one");
	bgsnap_file_close(c);
}

/* A grandparent missing: the message says whose. */
static void test_grandparent_missing(void **state)
{
	struct bgsnap_file *c;
	uint8_t buf[PAGE];

	(void)state;
	copy_to("c.bgs", "nogp", "c.bgs");
	copy_to("b.bgs", "nogp", "b.bgs");
	c = open_ok(in_dir("nogp", "c.bgs"));
	/* Page 0 is b's, page 10 is a's. */
	assert_int_equal(bgsnap_file_read(c, 0, 0, buf, PAGE), 0);
	assert_memory_equal(buf, b_m, PAGE);
	assert_int_equal(bgsnap_file_read(c, 0, 10 * PAGE, buf, PAGE),
			 BGSNAP_EPARENT);
	expect_error(c, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "a.bgs");
	assert_int_equal(bgsnap_file_verify_chain(c, NULL, NULL),
			 BGSNAP_EPARENT);
	expect_error(c, "nogp/b.bgs: ", "a.bgs");
	bgsnap_file_close(c);
}

/* One flipped byte in b's data: reads and verify_chain name b. */
static void test_damaged_parent(void **state)
{
	struct bgsnap_file *c, *b;
	struct rt_layout l;
	uint8_t *buf, page[PAGE];
	size_t len;

	(void)state;
	copy_to("c.bgs", "bad", "c.bgs");
	copy_to("a.bgs", "bad", "a.bgs");
	buf = slurp(in_dir("", "b.bgs"), &len);
	rt_parse(buf, len, &l);
	/* recs[0] is the region table, recs[1] b's first data record. */
	assert_true(l.n > 2);
	buf[l.recs[1].off + l.recs[1].len - 1] ^= 0x40;
	write_file(in_dir("bad", "b.bgs"), buf, len);
	rt_layout_free(&l);
	free(buf);
	c = open_ok(in_dir("bad", "c.bgs"));
	assert_int_equal(bgsnap_file_read(c, 0, 0, page, PAGE),
			 BGSNAP_ECHECKSUM);
	expect_error(c, "bad/b.bgs: ", "checksum");
	/* Pages of a pass through b's index only: still readable. */
	assert_int_equal(bgsnap_file_read(c, 0, 10 * PAGE, page, PAGE), 0);
	assert_memory_equal(page, a_m + 10 * PAGE, PAGE);
	assert_int_equal(bgsnap_file_verify(c, NULL, NULL), 0);
	assert_int_equal(bgsnap_file_verify_chain(c, NULL, NULL),
			 BGSNAP_ECHECKSUM);
	expect_error(c, "bad/b.bgs: ", "checksum");
	assert_int_equal(bgsnap_file_parent(c, &b), 0);
	assert_int_equal(bgsnap_file_verify(b, NULL, NULL), BGSNAP_ECHECKSUM);
	bgsnap_file_close(c);
}

/* A region left to a parent that never saved it. */
static void test_parent_lacks_region(void **state)
{
	struct bgsnap_file *d = open_ok(in_dir("", "d.bgs"));
	uint8_t buf[PAGE];

	(void)state;
	assert_int_equal(bgsnap_file_read(d, 0, 0, buf, PAGE), BGSNAP_EPARENT);
	expect_error(d, "region 'z'", "a.bgs");
	assert_int_equal(bgsnap_file_verify_chain(d, NULL, NULL),
			 BGSNAP_EPARENT);
	expect_error(d, "region 'z'", NULL);
	bgsnap_file_close(d);
}

/* The restore's side of the one rule: flatten finds the same chain,
 * beside or offered, and its output reads the same. */
static void test_flatten_agrees(void **state)
{
	char pb[400], pa[400];
	const char *const parents[] = { pb, pa };
	struct bgsnap_restore_opts o = { .size = sizeof(o),
					 .parents = parents,
					 .nparents = 2 };
	struct bgsnap_file_info in = { .size = sizeof(in) };
	struct bgsnap_file *f;
	struct bgsnap *h;

	(void)state;
	snprintf(pb, sizeof(pb), "%s", in_dir("", "b.bgs"));
	snprintf(pa, sizeof(pa), "%s", in_dir("", "a.bgs"));
	copy_to("c.bgs", "alone", "c.bgs");
	assert_int_equal(bgsnap_new(&h), 0);
	assert_int_equal(bgsnap_flatten(h, in_dir("", "c.bgs"),
					in_dir("", "flat.bgs"), NULL),
			 0);
	f = open_ok(in_dir("", "flat.bgs"));
	bgsnap_file_info(f, &in);
	assert_false(in.incremental);
	expect_content(f);
	bgsnap_file_close(f);
	/* Alone, the restore's message is the file API's. */
	assert_int_equal(bgsnap_flatten(h, in_dir("alone", "c.bgs"),
					in_dir("", "flat2.bgs"), NULL),
			 BGSNAP_EPARENT);
	fprintf(stderr, "# flatten: %s\n", bgsnap_last_error(h));
	assert_non_null(strstr(bgsnap_last_error(h), "b.bgs, the file named "
						     "for it, is not there"));
	assert_int_equal(bgsnap_flatten(h, in_dir("alone", "c.bgs"),
					in_dir("", "flat2.bgs"), &o),
			 0);
	f = open_ok(in_dir("", "flat2.bgs"));
	expect_content(f);
	bgsnap_file_close(f);
	bgsnap_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_read_through_chain),
		cmocka_unit_test(test_verify_chain),
		cmocka_unit_test(test_missing_then_offered),
		cmocka_unit_test(test_wrong_file_beside),
		cmocka_unit_test(test_grandparent_missing),
		cmocka_unit_test(test_damaged_parent),
		cmocka_unit_test(test_parent_lacks_region),
		cmocka_unit_test(test_flatten_agrees),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
