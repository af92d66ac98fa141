/* SPDX-License-Identifier: MIT */
/*
 * The public snapshot-file API (snapshot/snap_file.c) over files the store's
 * writer makes directly, so every case is reachable without a live save:
 * unsaved and file-private regions, parent pages, statistics, damage, and
 * files that are not snapshots at all.
 */
#include "testutil.h"
#include "rs_testutil.h"

#include <bgsnap.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAGE  4096u
#define STATS "{\"blackout_ns\":1234,\"pages_total\":64,\"faults\":0}"

static char dir[256];
static char good[300], incr[300];
static uint8_t a_pages[64 * PAGE]; /* region "a" as written */
static uint8_t f_pages[8 * PAGE];  /* region "f" */

static const struct rs_region regions[] = {
	{ .name = "a",
	  .base = 0x10000000,
	  .length = 64 * PAGE,
	  .page_size = PAGE,
	  .kind = RS_KIND_ANON,
	  .prot = 3 },
	{ .name = "u",
	  .base = 0x20000000,
	  .length = 1 << 20,
	  .page_size = PAGE,
	  .kind = RS_KIND_UNSAVED,
	  .prot = 1 },
	{ .name = "f",
	  .base = 0x30000000,
	  .length = 8 * PAGE,
	  .page_size = PAGE,
	  .kind = RS_KIND_FILE_PRIVATE,
	  .prot = 7 },
	{ .name = "p",
	  .base = 0x40000000,
	  .length = 32 * PAGE,
	  .page_size = PAGE,
	  .kind = RS_KIND_SHMEM,
	  .prot = 3 },
};

/* "a": pages 0-9 data, 10-19 zero (never read), 20-29 data, 30-63 zero
 * (read, all zero); "f" data; "p" parent pages 0-15 (incremental files
 * only, else data), data 16-31. Stored out of order, as faults do. */
static int fill(struct rs_writer *w, void *arg)
{
	const bool incremental = arg != NULL;
	static uint8_t p_pages[32 * PAGE];
	int ret;

	ret = bgs_rs_put_pages(w, 0, 20, 10, a_pages + 20 * PAGE);
	if (!ret)
		ret = bgs_rs_put_pages(w, 0, 0, 10, a_pages);
	if (!ret)
		ret = bgs_rs_put_zero(w, 0, 10, 10);
	if (!ret)
		ret = bgs_rs_put_pages(w, 0, 30, 34, a_pages + 30 * PAGE);
	if (!ret)
		ret = bgs_rs_put_pages(w, 2, 0, 8, f_pages);
	if (!ret)
		ret = incremental ? bgs_rs_put_parent(w, 3, 0, 16)
				  : bgs_rs_put_pages(w, 3, 0, 16, p_pages);
	if (!ret)
		ret = bgs_rs_put_pages(w, 3, 16, 16, p_pages);
	if (!ret)
		ret = bgs_rs_put_attachment(w, "vmm.state", "0123456789", 10);
	if (!ret)
		ret = bgs_rs_put_attachment(w, "bgsnap.stats", STATS,
					    strlen(STATS));
	return ret;
}

static void write_store(const char *path, bool incremental)
{
	struct rs_writer_opts o = { .regions = regions, .nregions = 4 };
	size_t len;
	uint8_t *buf;
	FILE *f;

	if (incremental)
		memset(o.parent_id, 0xab, sizeof(o.parent_id));
	buf = rt_make_store(&o, fill, incremental ? &o : NULL, &len);
	assert_non_null(buf);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(buf, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
	free(buf);
}

static int setup(void **state)
{
	(void)state;
	rt_fill(a_pages, 10, RT_TEXT, 1);
	rt_fill(a_pages + 20 * PAGE, 10, RT_RANDOM, 2);
	rt_fill(f_pages, 8, RT_STRUCT, 3);
	rt_mkdtemp(dir, sizeof(dir));
	snprintf(good, sizeof(good), "%s/good.bgs", dir);
	snprintf(incr, sizeof(incr), "%s/incr.bgs", dir);
	write_store(good, false);
	write_store(incr, true);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	rt_rmdir(dir);
	return 0;
}

static struct bgsnap_file *open_ok(const char *path)
{
	char err[BGSNAP_FILE_ERROR_MAX] = "untouched";
	struct bgsnap_file *f;
	const int ret = bgsnap_file_open(&f, path, err, sizeof(err));

	if (ret)
		fprintf(stderr, "# %s: %s\n", path, err);
	assert_int_equal(ret, 0);
	assert_string_equal(bgsnap_file_last_error(f), "");
	return f;
}

static void test_info(void **state)
{
	struct bgsnap_file *f = open_ok(incr);
	struct bgsnap_file_info in = { .size = sizeof(in) };
	struct bgsnap_file_region r = { .size = sizeof(r) };
	struct stat st;

	(void)state;
	assert_int_equal(bgsnap_file_info(f, &in), 0);
	assert_int_equal(in.version_major, 1);
	assert_int_equal(in.regions, 4);
	assert_int_equal(in.attachments, 2);
	assert_true(in.incremental);
	assert_int_equal(in.parent_id[0], 0xab);
	assert_int_equal(in.pages, 64 + 8 + 32);
	assert_int_equal(in.pages_parent, 16);
	assert_int_equal(in.pages_zero + in.pages_data + in.pages_parent,
			 in.pages);
	assert_true(in.pages_zero >= 10 + 34); /* stored zero runs */
	assert_true(in.data_bytes > 0 && in.compression_ratio > 0);
	assert_int_equal(stat(incr, &st), 0);
	assert_int_equal(in.file_size, st.st_size);

	assert_int_equal(bgsnap_file_region(f, 0, &r), 0);
	assert_string_equal(r.name, "a");
	assert_int_equal(r.addr, 0x10000000);
	assert_int_equal(r.len, 64 * PAGE);
	assert_int_equal(r.page_size, PAGE);
	assert_string_equal(bgsnap_kind_name(r.kind), "anon");
	assert_int_equal(r.prot, 3);
	assert_int_equal(r.pages, 64);
	assert_int_equal(r.pages_data, 20);
	assert_int_equal(r.pages_zero, 44);
	assert_int_equal(bgsnap_file_region(f, 1, &r), 0);
	assert_string_equal(bgsnap_kind_name(r.kind), "unsaved");
	assert_int_equal(r.pages + r.records, 0);
	assert_int_equal(bgsnap_file_region(f, 3, &r), 0);
	assert_int_equal(r.pages_parent, 16);
	assert_int_equal(bgsnap_file_region(f, 4, &r), -ERANGE);
	assert_int_equal(bgsnap_file_find_region(f, "f"), 2);
	assert_int_equal(bgsnap_file_find_region(f, "nope"), -ENOENT);
	bgsnap_file_close(f);
	bgsnap_file_close(NULL);
}

static void test_kind_names(void **state)
{
	static const char *const names[] = { "auto",	 "anon",
					     "anon_thp", "shmem",
					     "hugetlb",	 "file_private",
					     "unsaved" };

	(void)state;
	for (int k = 0; k < 7; k++)
		assert_string_equal(bgsnap_kind_name(k), names[k]);
	assert_string_equal(bgsnap_kind_name(7), "unknown");
	assert_string_equal(bgsnap_kind_name(-1), "unknown");
}

static void test_attachments(void **state)
{
	struct bgsnap_file *f = open_ok(good);
	const char *name, *json;
	char buf[16] = { 0 };
	size_t len;
	int i;

	(void)state;
	i = bgsnap_file_find_attachment(f, "vmm.state");
	assert_true(i >= 0);
	assert_int_equal(bgsnap_file_attachment(f, (size_t)i, &name, &len), 0);
	assert_string_equal(name, "vmm.state");
	assert_int_equal(len, 10);
	assert_int_equal(bgsnap_file_attachment_read(f, (size_t)i, buf, 9),
			 -ENOBUFS);
	assert_non_null(strstr(bgsnap_file_last_error(f), "vmm.state"));
	assert_int_equal(bgsnap_file_attachment_read(f, (size_t)i, buf, 10), 0);
	assert_memory_equal(buf, "0123456789", 10);
	assert_int_equal(bgsnap_file_attachment(f, 2, &name, &len), -ERANGE);
	assert_int_equal(bgsnap_file_attachment_read(f, 2, buf, 16), -ERANGE);
	assert_int_equal(bgsnap_file_find_attachment(f, "x"), -ENOENT);
	assert_int_equal(bgsnap_file_stats_json(f, &json), 0);
	assert_string_equal(json, STATS);
	bgsnap_file_close(f);
}

static void test_map(void **state)
{
	struct bgsnap_file *f = open_ok(incr);
	uint64_t len;

	(void)state;
	assert_int_equal(bgsnap_file_map(f, 0, 0, &len), BGSNAP_PAGES_DATA);
	assert_int_equal(len, 10 * PAGE);
	assert_int_equal(bgsnap_file_map(f, 0, 5 * PAGE + 100, &len),
			 BGSNAP_PAGES_DATA);
	assert_int_equal(len, 5 * PAGE - 100);
	assert_int_equal(bgsnap_file_map(f, 0, 10 * PAGE, &len),
			 BGSNAP_PAGES_ZERO);
	assert_int_equal(len, 10 * PAGE);
	assert_int_equal(bgsnap_file_map(f, 0, 20 * PAGE, &len),
			 BGSNAP_PAGES_DATA);
	assert_int_equal(len, 10 * PAGE);
	/* 30-63 were written as pages: all zero, so stored as zero runs,
	 * merged into one. */
	assert_int_equal(bgsnap_file_map(f, 0, 30 * PAGE, &len),
			 BGSNAP_PAGES_ZERO);
	assert_int_equal(len, 34 * PAGE);
	assert_int_equal(bgsnap_file_map(f, 1, 4096, &len), BGSNAP_PAGES_NONE);
	assert_int_equal(len, (1 << 20) - 4096);
	assert_int_equal(bgsnap_file_map(f, 3, 0, &len), BGSNAP_PAGES_PARENT);
	assert_int_equal(len, 16 * PAGE);
	assert_int_equal(bgsnap_file_map(f, 0, 64 * PAGE, &len), -ERANGE);
	assert_int_equal(bgsnap_file_map(f, 9, 0, &len), -ERANGE);
	bgsnap_file_close(f);
}

static void test_read(void **state)
{
	struct bgsnap_file *f = open_ok(incr);
	uint8_t *buf = malloc(64 * PAGE);

	(void)state;
	assert_non_null(buf);
	memset(buf, 0xee, 64 * PAGE);
	assert_int_equal(bgsnap_file_read(f, 0, 0, buf, 64 * PAGE), 0);
	assert_memory_equal(buf, a_pages, 64 * PAGE);
	/* Unaligned, across data, zero and data again. */
	memset(buf, 0xee, 64 * PAGE);
	assert_int_equal(
		bgsnap_file_read(f, 0, 9 * PAGE + 7, buf, 12 * PAGE + 5), 0);
	assert_memory_equal(buf, a_pages + 9 * PAGE + 7, 12 * PAGE + 5);
	assert_int_equal(bgsnap_file_read(f, 0, 64 * PAGE, buf, 0), 0);
	assert_int_equal(bgsnap_file_read(f, 0, 63 * PAGE, buf, PAGE + 1),
			 -ERANGE);
	assert_int_equal(bgsnap_file_read(f, 2, 0, buf, 8 * PAGE), 0);
	assert_memory_equal(buf, f_pages, 8 * PAGE);
	assert_int_equal(bgsnap_file_read(f, 1, 0, buf, PAGE), -ENODATA);
	assert_int_equal(bgsnap_file_read(f, 3, 15 * PAGE, buf, 2 * PAGE),
			 BGSNAP_EPARENT);
	assert_non_null(strstr(bgsnap_file_last_error(f), "parent"));
	assert_int_equal(bgsnap_file_read(f, 3, 16 * PAGE, buf, PAGE), 0);
	assert_int_equal(bgsnap_file_read(f, 7, 0, buf, 1), -ERANGE);
	free(buf);
	bgsnap_file_close(f);
}

struct seen {
	unsigned calls;
	uint64_t last_done, total;
};

static void progress(void *arg, uint64_t done, uint64_t total)
{
	struct seen *s = arg;

	assert_true(done >= s->last_done && done <= total);
	s->calls++;
	s->last_done = done;
	s->total = total;
}

static void test_verify(void **state)
{
	struct bgsnap_file *f = open_ok(good);
	struct bgsnap_file_info in = { .size = sizeof(in) };
	struct seen s = { 0 };

	(void)state;
	bgsnap_file_info(f, &in);
	assert_int_equal(bgsnap_file_verify(f, progress, &s), 0);
	assert_true(s.calls >= 1);
	assert_int_equal(s.last_done, in.file_size);
	assert_int_equal(s.total, in.file_size);
	assert_int_equal(bgsnap_file_verify(f, NULL, NULL), 0);
	assert_int_equal(bgsnap_file_set_verify(f, 7), -EINVAL);
	assert_int_equal(bgsnap_file_set_verify(f, BGSNAP_VERIFY_DEEP), 0);
	assert_int_equal(bgsnap_file_verify(f, NULL, NULL), 0);
	bgsnap_file_close(f);
}

/* A copy of the good file with one byte of "a"'s first data record
 * flipped: open succeeds (the index is intact), reading or verifying
 * finds it and names the record. */
static void test_damage(void **state)
{
	char path[300];
	size_t len;
	uint8_t *buf;
	struct rt_layout l;
	struct bgsnap_file *f;
	int fd;
	uint8_t page[PAGE];

	(void)state;
	fd = open(good, O_RDONLY);
	buf = rt_slurp(fd, &len);
	close(fd);
	rt_parse(buf, len, &l);
	/* Record 1 is the first after the region table: "a" pages 20-29. */
	assert_int_equal(l.recs[1].h.type, RS_REC_PAGES);
	buf[l.recs[1].off + l.rechdr_len + 10] ^= 0x40;
	snprintf(path, sizeof(path), "%s/damaged.bgs", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	close(fd);

	f = open_ok(path);
	assert_int_equal(bgsnap_file_read(f, 0, 0, page, PAGE), 0);
	/* Random bytes are stored raw: the data checksum catches it. */
	assert_int_equal(bgsnap_file_read(f, 0, 25 * PAGE, page, PAGE),
			 BGSNAP_ECHECKSUM);
	assert_non_null(strstr(bgsnap_file_last_error(f), "record at offset"));
	assert_non_null(strstr(bgsnap_file_last_error(f), "region 'a'"));
	assert_true(bgsnap_file_verify(f, NULL, NULL) < 0);
	fprintf(stderr, "# verify: %s\n", bgsnap_file_last_error(f));
	assert_non_null(strstr(bgsnap_file_last_error(f), "region 'a'"));
	assert_int_equal(bgsnap_file_set_verify(f, BGSNAP_VERIFY_DEEP), 0);
	assert_true(bgsnap_file_verify(f, NULL, NULL) < 0);
	assert_non_null(strstr(bgsnap_file_last_error(f), "region 'a'"));
	bgsnap_file_close(f);
	rt_layout_free(&l);
	free(buf);
}

static void expect_open_error(const char *path, int code, const char *msg)
{
	char err[BGSNAP_FILE_ERROR_MAX] = "";
	struct bgsnap_file *f = (void *)1;
	const int ret = bgsnap_file_open(&f, path, err, sizeof(err));

	fprintf(stderr, "# %s: %d %s\n", path, ret, err);
	assert_int_equal(ret, code);
	assert_null(f);
	assert_non_null(strstr(err, msg));
	assert_null(strchr(err, '\n'));
	/* No buffer is fine too. */
	assert_int_equal(bgsnap_file_open(&f, path, NULL, 0), code);
}

static void test_not_snapshots(void **state)
{
	char path[300], rnd[8192];
	uint64_t seed = 7;
	int fd;

	(void)state;
	snprintf(path, sizeof(path), "%s/missing", dir);
	expect_open_error(path, -ENOENT, "No such file");
	expect_open_error(dir, -EISDIR, "directory");
	snprintf(path, sizeof(path), "%s/empty", dir);
	close(open(path, O_WRONLY | O_CREAT, 0600));
	expect_open_error(path, BGSNAP_ETRUNCATED, "empty");
	snprintf(path, sizeof(path), "%s/random", dir);
	for (size_t i = 0; i < sizeof(rnd); i++)
		rnd[i] = (char)rt_rand(&seed);
	fd = open(path, O_WRONLY | O_CREAT, 0600);
	assert_int_equal(write(fd, rnd, sizeof(rnd)), (ssize_t)sizeof(rnd));
	close(fd);
	expect_open_error(path, BGSNAP_EBADMAGIC, "magic");
	/* A FIFO without a writer: refused, and the open does not hang. */
	snprintf(path, sizeof(path), "%s/fifo", dir);
	assert_int_equal(mkfifo(path, 0600), 0);
	expect_open_error(path, -ESPIPE, "not a regular file");
}

/*
 * The library's own opens by path, under the commands' check (issue 13,
 * item 13): a FIFO where a restore, a flatten or a save's parent is read
 * is refused at once, never waited on (the alarm fails the test instead
 * of a hang).
 */
static void test_fifo_never_blocks(void **state)
{
	const size_t len = 4 * PAGE;
	char fifo[300], out[300];
	struct bgsnap_save_opts so = { .size = sizeof(so) };
	struct bgsnap *h;
	void *mem;

	(void)state;
	snprintf(fifo, sizeof(fifo), "%s/input-fifo", dir);
	snprintf(out, sizeof(out), "%s/fifo-out.bgs", dir);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	mem = mmap(NULL, len, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(mem != MAP_FAILED);
	assert_int_equal(bgsnap_new(&h), 0);
	assert_int_equal(bgsnap_add_region(h, "a", mem, len), 0);
	alarm(20);
	assert_int_equal(bgsnap_restore(h, fifo, NULL), -ESPIPE);
	assert_non_null(strstr(bgsnap_last_error(h), "not a regular file"));
	assert_int_equal(bgsnap_flatten(h, fifo, out, NULL), -ESPIPE);
	so.flags = BGSNAP_SAVE_INCREMENTAL;
	so.parent = fifo;
	assert_int_equal(bgsnap_save(h, out, &so), -ESPIPE);
	assert_non_null(strstr(bgsnap_last_error(h), "not a regular file"));
	alarm(0);
	assert_int_equal(access(out, F_OK), -1);
	tu_assert_no_file_like(dir, ".tmp");
	bgsnap_free(h);
	munmap(mem, len);
	unlink(fifo);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_info),
		cmocka_unit_test(test_kind_names),
		cmocka_unit_test(test_attachments),
		cmocka_unit_test(test_map),
		cmocka_unit_test(test_read),
		cmocka_unit_test(test_verify),
		cmocka_unit_test(test_damage),
		cmocka_unit_test(test_not_snapshots),
		cmocka_unit_test(test_fifo_never_blocks),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
