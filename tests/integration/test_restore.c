/* SPDX-License-Identifier: MIT */
/*
 * Restore, eager and lazy, on the real kernel: round trips of a save taken
 * with writers running, for every memory kind; lazy restore with readers
 * and writers racing the fill; every class of damaged file (eager writes
 * nothing; lazy refuses before resuming or poisons just the bad record);
 * region mismatches; a restore from a pipe; attachments handed back; and
 * a restore into the live memory a snapshot was taken from.
 */
#include "testutil.h"
#include "guest_bank.h"
#include "ramstore.h"
#include "uffd.h"
#include "bgsnap.h"
#include "snap_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MiB	      (1UL << 20)
#define PG	      4096UL

#define BANK_LEN(len) ((len)-MiB)

enum kind {
	ANON = TU_ANON,
	THP = TU_THP,
	MEMFD = TU_MEMFD,
	HUGETLB = TU_HUGETLB
};

static char *map_kind(enum kind k, size_t len)
{
	char *p = tu_map_kind((enum tu_kind)k, len);

	assert_non_null(p);
	return p;
}

/* The source: a bank under two writers, saved with a reference copy
 * taken at the snapshot instant. */
struct source {
	char *mem;
	size_t len;
	char *reference;
	struct bank bank;
	char path[256];
};

static int src_pause(void *arg)
{
	struct source *s = arg;

	bank_pause(&s->bank);
	memcpy(s->reference, s->mem, s->len);
	return 0;
}

static void src_resume(void *arg)
{
	bank_resume(&((struct source *)arg)->bank);
}

static void make_snapshot(struct source *s, enum kind k, size_t len,
			  const char *attachment)
{
	struct bgsnap_save_opts o = { .size = sizeof(o),
				      .pause = src_pause,
				      .resume = src_resume,
				      .arg = s };
	struct bgsnap *h;

	s->len = len;
	s->mem = map_kind(k, len);
	assert_non_null(s->mem);
	s->reference = malloc(len);
	memset(s->reference, 0, len);
	/* The bank leaves the last MiB never touched: zero runs. */
	assert_int_equal(bank_format(s->mem, BANK_LEN(len), tu_seed()), 0);
	assert_int_equal(bank_start(&s->bank, s->mem, BANK_LEN(len), 2,
				    BANK_RANDOM, 0, tu_seed()),
			 0);
	snprintf(s->path, sizeof(s->path), "%s/restore-%d.bgs", tu_tmpdir(),
		 (int)k);
	assert_int_equal(bgsnap_new(&h), 0);
	assert_int_equal(bgsnap_add_region(h, "ram", s->mem, len), 0);
	if (attachment)
		assert_int_equal(bgsnap_attach(h, "device", attachment,
					       strlen(attachment) + 1),
				 0);
	assert_int_equal(bgsnap_save(h, s->path, &o), 0);
	bgsnap_free(h);
}

static void drop_source(struct source *s)
{
	bank_stop(&s->bank);
	tu_unmap(s->mem, s->len);
	free(s->reference);
	unlink(s->path);
}

/* A fresh destination of the same kind, registered under the same name. */
static struct bgsnap *destination(enum kind k, size_t len, char **mem)
{
	struct bgsnap *h;

	*mem = map_kind(k, len);
	assert_non_null(*mem);
	assert_int_equal(bgsnap_new(&h), 0);
	assert_int_equal(bgsnap_add_region(h, "ram", *mem, len), 0);
	return h;
}

static void expect_equal(const char *got, const char *want, size_t len)
{
	char why[256];

	for (size_t i = 0; i < len; i += PG)
		if (memcmp(got + i, want + i, PG))
			fail_msg("page %zu differs from the snapshot instant",
				 i / PG);
	if (bank_check(got, BANK_LEN(len), why, sizeof(why)))
		fail_msg("%s", why);
}

static void round_trip(enum kind k, bool lazy)
{
	const size_t len = (k == HUGETLB ? 16 : 32) * MiB;
	struct bgsnap_restore_opts o = { .size = sizeof(o),
					 .flags = lazy ? BGSNAP_RESTORE_LAZY
						       : 0 };
	struct bgsnap_stats st = { .size = sizeof(st) };
	struct source s = { 0 };
	struct bgsnap *h;
	char *mem;

	make_snapshot(&s, k, len, NULL);
	h = destination(k, len, &mem);
	if (bgsnap_restore_start(h, s.path, &o))
		fail_msg("restore: %s", bgsnap_last_error(h));
	if (lazy) /* the owner runs at once, touching every page */
		expect_equal(mem, s.reference, len);
	assert_int_equal(bgsnap_wait(h), 0);
	expect_equal(mem, s.reference, len);
	assert_int_equal(bgsnap_stats(h, &st), 0);
	fprintf(stderr,
		"# %s kind %d: resume %.3f ms, total %.1f ms, by fault "
		"%llu, by fill %llu, zero %llu, fault p50 %.1f us p99 %.1f "
		"us\n",
		lazy ? "lazy" : "eager", (int)k, st.resume_ns / 1e6,
		st.elapsed_ns / 1e6, (unsigned long long)st.pages_by_fault,
		(unsigned long long)st.pages_by_fill,
		(unsigned long long)st.pages_zero, st.stall_ns_p50 / 1e3,
		st.stall_ns_p99 / 1e3);
	if (lazy)
		assert_int_equal(st.pages_by_fault + st.pages_by_fill,
				 len / PG);
	if (!lazy && (k == ANON || k == THP)) {
		/* Fresh private memory: one pass, each record read once. */
		struct stat fst;

		assert_int_equal(stat(s.path, &fst), 0);
		assert_true(st.bytes_read <= (uint64_t)fst.st_size);
	}
	bgsnap_free(h);
	tu_unmap(mem, len);
	drop_source(&s);
}

static void test_eager_anon(void **st)
{
	(void)st;
	round_trip(ANON, false);
}
static void test_eager_thp(void **st)
{
	(void)st;
	round_trip(THP, false);
}
static void test_eager_memfd(void **st)
{
	(void)st;
	round_trip(MEMFD, false);
}
static void test_eager_hugetlb(void **st)
{
	(void)st;
	round_trip(HUGETLB, false);
}
static void test_lazy_anon(void **st)
{
	(void)st;
	round_trip(ANON, true);
}
static void test_lazy_thp(void **st)
{
	(void)st;
	round_trip(THP, true);
}
static void test_lazy_memfd(void **st)
{
	(void)st;
	round_trip(MEMFD, true);
}
static void test_lazy_hugetlb(void **st)
{
	(void)st;
	round_trip(HUGETLB, true);
}

/* ---- the owner works while the fill runs --------------------------------- */

struct toucher {
	pthread_t t;
	char *mem;
	const char *reference;
	size_t pages;
	bool writer;
	uint64_t seed;
	uint8_t *written; /* writer: pages it wrote */
	int bad;
};

/* Writers own the even pages, readers check the odd ones. */
static void *toucher_main(void *arg)
{
	struct toucher *t = arg;

	for (int n = 0; n < 20000; n++) {
		size_t p = (size_t)(tu_rand(&t->seed) % (t->pages / 2)) * 2;

		if (t->writer) {
			memset(t->mem + p * PG + 100, 0xAB, 16);
			t->written[p] = 1;
		} else if (memcmp(t->mem + (p + 1) * PG,
				  t->reference + (p + 1) * PG, PG)) {
			t->bad++;
		}
	}
	return NULL;
}

static void test_lazy_with_owner_running(void **state)
{
	const size_t len = 64 * MiB;
	struct bgsnap_restore_opts o = { .size = sizeof(o),
					 .flags = BGSNAP_RESTORE_LAZY };
	struct toucher t[3];
	struct source s = { 0 };
	uint8_t *written = calloc(len / PG, 1);
	struct bgsnap *h;
	char *mem;

	(void)state;
	make_snapshot(&s, ANON, len, NULL);
	h = destination(ANON, len, &mem);
	assert_int_equal(bgsnap_restore_start(h, s.path, &o), 0);
	for (int i = 0; i < 3; i++) {
		t[i] = (struct toucher){ .mem = mem,
					 .reference = s.reference,
					 .pages = len / PG,
					 .writer = i == 0,
					 .seed = tu_seed() + (uint64_t)i,
					 .written = written };
		pthread_create(&t[i].t, NULL, toucher_main, &t[i]);
	}
	for (int i = 0; i < 3; i++) {
		pthread_join(t[i].t, NULL);
		assert_int_equal(t[i].bad, 0);
	}
	assert_int_equal(bgsnap_wait(h), 0);
	for (size_t p = 0; p < len / PG; p++) {
		char want[PG];

		memcpy(want, s.reference + p * PG, PG);
		if (written[p])
			memset(want + 100, 0xAB, 16); /* never overwritten */
		if (memcmp(mem + p * PG, want, PG))
			fail_msg("page %zu is wrong after the restore", p);
	}
	bgsnap_free(h);
	tu_unmap(mem, len);
	free(written);
	drop_source(&s);
}

static bool page_is_zero(const char *p)
{
	for (size_t i = 0; i < PG; i++)
		if (p[i])
			return false;
	return true;
}

/*
 * An owner's discard racing the fill: the owner discards (MADV_DONTNEED) a
 * page of the piece the fill has looked at but not placed yet (a test hook
 * holds the fill there), leaves it untouched until the fill has moved on,
 * then reads it: zeroes, as after any discard, never the snapshot's data.
 */
static void test_lazy_discard_race(void **state)
{
	const size_t len = 8 * MiB, pages = len / PG;
	struct bgsnap_restore_opts o = { .size = sizeof(o),
					 .flags = BGSNAP_RESTORE_LAZY };
	struct bgsnap_progress pr = { .size = sizeof(pr) };
	struct source s = { 0 };
	int checked = 0, stale = 0;
	struct bgsnap *h;
	char *mem;

	(void)state;
	make_snapshot(&s, ANON, len, NULL);
	h = destination(ANON, len, &mem);
	h->test_hooks.fill_delay_us = 2000;
	assert_int_equal(bgsnap_restore_start(h, s.path, &o), 0);
	for (bgsnap_progress(h, &pr); pr.running && pr.pages_done < pages;
	     bgsnap_progress(h, &pr)) {
		/* The fill sleeps before placing a piece of at least 8 pages
		 * that starts where it has got to. */
		const size_t p = pr.pages_done + 2;

		if (p >= pages || page_is_zero(s.reference + p * PG)) {
			usleep(500);
			continue;
		}
		assert_int_equal(madvise(mem + p * PG, PG, MADV_DONTNEED), 0);
		usleep(6000); /* the fill places the piece meanwhile */
		checked++;
		stale += !page_is_zero(mem + p * PG);
	}
	assert_int_equal(bgsnap_wait(h), 0);
	print_message("%d discards raced the fill, %d read stale data\n",
		      checked, stale);
	assert_true(checked >= 10);
	assert_int_equal(stale, 0);
	bgsnap_free(h);
	tu_unmap(mem, len);
	drop_source(&s);
}

/* ---- damaged files ------------------------------------------------------- */

static void copy_file(const char *from, const char *to)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", from, to);
	assert_int_equal(system(cmd), 0);
}

static void flip(const char *path, off_t at)
{
	const int fd = open(path, O_RDWR);
	unsigned char b;

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &b, 1, at), 1);
	b ^= 0x5a;
	assert_int_equal(pwrite(fd, &b, 1, at), 1);
	close(fd);
}

/*
 * Damage the payload of a data record in the second half of the file and
 * say which pages it holds. A changed byte of lz4 data may still decode to
 * the same pages (a match offset pointing at equal bytes): such a change
 * is no damage at all, so it is undone and the next byte tried, until the
 * record no longer decodes.
 */
static void damage_data_record(const char *path, uint64_t *first,
			       uint64_t *npages)
{
	const int fd = open(path, O_RDONLY);
	struct rs_decoder *dec;
	struct rs_reader *r;
	const struct rs_extent *e = NULL;
	size_t i;
	void *pages;

	assert_true(fd >= 0);
	assert_int_equal(bgs_rs_open(&r, fd, NULL), 0);
	for (i = bgs_rs_extent_count(r) / 2; i < bgs_rs_extent_count(r); i++) {
		e = bgs_rs_extent(r, i);
		if (e->encoding == RS_ENC_LZ4 || e->encoding == RS_ENC_RAW)
			break;
	}
	assert_true(i < bgs_rs_extent_count(r));
	*first = e->first;
	*npages = e->npages;
	pages = malloc(e->npages * PG);
	assert_non_null(pages);
	assert_int_equal(bgs_rs_decoder_new(&dec), 0);
	for (uint64_t b = e->stored_len / 2;; b++) {
		const off_t at = (off_t)(e->offset + bgs_rs_rechdr_len(r) + b);

		assert_true(b < e->stored_len);
		flip(path, at);
		if (bgs_rs_decode_to(r, dec, i, pages, NULL) < 0)
			break;
		flip(path, at);
	}
	bgs_rs_decoder_free(dec);
	free(pages);
	bgs_rs_close(r);
	close(fd);
}

enum damage {
	BAD_MAGIC,
	BAD_HEADER,
	TRUNCATED,
	BAD_RECORD,
	BAD_FOOTER,
	BAD_INDEX,
	EMPTY,
	DAMAGE_COUNT
};

static void damage(const char *good, const char *bad, enum damage d)
{
	struct stat st;
	uint64_t first, npages;

	copy_file(good, bad);
	assert_int_equal(stat(bad, &st), 0);
	switch (d) {
	case BAD_MAGIC:
		flip(bad, 0);
		break;
	case BAD_HEADER:
		flip(bad, 40);
		break;
	case TRUNCATED:
		assert_int_equal(truncate(bad, st.st_size / 2), 0);
		break;
	case BAD_RECORD:
		damage_data_record(bad, &first, &npages);
		break;
	case BAD_FOOTER:
		flip(bad, st.st_size - 20);
		break;
	case BAD_INDEX:
		flip(bad, st.st_size - 64 - 30);
		break;
	case EMPTY:
	case DAMAGE_COUNT:
		assert_int_equal(truncate(bad, 0), 0);
		break;
	}
}

static int found(void *arg, uint64_t start, uint64_t end, uint64_t cats)
{
	(void)arg, (void)start, (void)end, (void)cats;
	return 1;
}

/* No page of [mem, mem + len) is present or swapped out. */
static bool empty(const char *mem, size_t len)
{
	const struct bgs_scan_query q = {
		.anyof = PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
	};
	struct bgs_pagemap pm;
	int ret;

	assert_int_equal(bgs_uffd_pagemap_open(&pm, 0), 0);
	ret = bgs_uffd_pagemap_scan(&pm, (uint64_t)(uintptr_t)mem,
				    (uint64_t)(uintptr_t)mem + len, &q, found,
				    NULL);
	bgs_uffd_pagemap_close(&pm);
	assert_true(ret >= 0);
	return ret == 0;
}

/*
 * Every damage class is refused, with a message, and nothing is written.
 * Memory that holds something is restored in two passes, checked before
 * written: it keeps its bytes. Fresh memory is restored in one pass: a
 * damaged record met halfway leaves it as empty as it was.
 */
static void damaged_eager(bool fresh)
{
	const size_t len = 16 * MiB;
	struct source s = { 0 };
	char bad[300], *mem, *before = malloc(len);
	struct bgsnap *h;

	assert_non_null(before);
	memset(before, 0x3c, len);
	make_snapshot(&s, ANON, len, NULL);
	snprintf(bad, sizeof(bad), "%s.bad", s.path);
	for (int d = 0; d < DAMAGE_COUNT; d++) {
		h = destination(ANON, len, &mem);
		if (fresh)
			assert_true(empty(mem, len));
		else
			memset(mem, 0x3c, len);
		damage(s.path, bad, (enum damage)d);
		const int r = bgsnap_restore(h, bad, NULL);
		fprintf(stderr, "# damage %d: %s: %s\n", d, bgsnap_strerror(r),
			bgsnap_last_error(h));
		assert_true(r < 0);
		assert_true(bgsnap_last_error(h)[0] != '\0');
		if (!fresh)
			assert_memory_equal(mem, before, len);
		else if (!empty(mem, len))
			fail_msg("damage %d: pages left in the memory", d);
		else
			for (size_t i = 0; i < len; i += PG)
				assert_int_equal(mem[i], 0);
		bgsnap_free(h);
		tu_unmap(mem, len);
	}
	unlink(bad);
	free(before);
	drop_source(&s);
}

static void test_damaged_eager_writes_nothing(void **state)
{
	(void)state;
	damaged_eager(false);
}

static void test_damaged_eager_fresh(void **state)
{
	(void)state;
	damaged_eager(true);
}

static void test_damaged_lazy(void **state)
{
	const size_t len = 16 * MiB;
	struct bgsnap_restore_opts o = { .size = sizeof(o),
					 .flags = BGSNAP_RESTORE_LAZY };
	struct source s = { 0 };
	char bad[300], *mem;
	uint64_t first = 0, npages = 0;
	struct bgsnap_stats st = { .size = sizeof(st) };
	struct bgsnap *h;

	(void)state;
	make_snapshot(&s, ANON, len, NULL);
	snprintf(bad, sizeof(bad), "%s.bad", s.path);
	/* Damage found when opening: refused before the owner resumes. */
	for (int d = 0; d < DAMAGE_COUNT; d++) {
		if (d == BAD_RECORD)
			continue;
		h = destination(ANON, len, &mem);
		memset(mem, 0x3c, len);
		damage(s.path, bad, (enum damage)d);
		assert_true(bgsnap_restore_start(h, bad, &o) < 0);
		for (size_t i = 0; i < len; i += PG)
			assert_int_equal(mem[i], 0x3c);
		bgsnap_free(h);
		tu_unmap(mem, len);
	}
	/* A damaged record: exactly its pages are poisoned. */
	copy_file(s.path, bad);
	damage_data_record(bad, &first, &npages);
	h = destination(ANON, len, &mem);
	assert_int_equal(bgsnap_restore_start(h, bad, &o), 0);
	const int r = bgsnap_wait(h);
	assert_true(r == BGSNAP_ECHECKSUM || r == BGSNAP_ECORRUPT);
	fprintf(stderr, "# %s\n", bgsnap_last_error(h));
	assert_int_equal(bgsnap_stats(h, &st), 0);
	assert_int_equal(st.pages_poisoned, npages);
	for (uint64_t p = 0; p < len / PG; p++) {
		const bool in_bad = p >= first && p < first + npages;

		assert_int_equal(tu_page_raises_sigbus(mem + p * PG), in_bad);
		if (!in_bad && memcmp(mem + p * PG, s.reference + p * PG, PG))
			fail_msg("page %llu is wrong", (unsigned long long)p);
	}
	bgsnap_free(h);
	tu_unmap(mem, len);
	unlink(bad);
	drop_source(&s);
}

/* Pages the fill cannot place (here its first placing fails with ENOMEM,
 * as UFFDIO_COPY does without memory) are poisoned, exactly those: the
 * restore fails saying why, and the owner never reads zeroes there. */
static void test_lazy_place_failure(void **state)
{
	const size_t len = 16 * MiB;
	struct bgsnap_restore_opts o = { .size = sizeof(o),
					 .flags = BGSNAP_RESTORE_LAZY };
	struct bgsnap_stats st = { .size = sizeof(st) };
	struct source s = { 0 };
	uint64_t poisoned = 0;
	struct bgsnap *h;
	char *mem;
	int r;

	(void)state;
	make_snapshot(&s, ANON, len, NULL);
	h = destination(ANON, len, &mem);
	h->test_hooks.place_error = -ENOMEM;
	assert_int_equal(bgsnap_restore_start(h, s.path, &o), 0);
	r = bgsnap_wait(h);
	fprintf(stderr, "# %s\n", bgsnap_last_error(h));
	assert_int_equal(r, -ENOMEM);
	assert_non_null(strstr(bgsnap_last_error(h), "poisoned"));
	assert_int_equal(bgsnap_stats(h, &st), 0);
	assert_true(st.pages_poisoned > 0);
	for (uint64_t p = 0; p < len / PG; p++) {
		if (tu_page_raises_sigbus(mem + p * PG)) {
			poisoned++;
			continue;
		}
		if (memcmp(mem + p * PG, s.reference + p * PG, PG))
			fail_msg("page %llu is wrong", (unsigned long long)p);
	}
	assert_int_equal(poisoned, st.pages_poisoned);
	bgsnap_free(h);
	tu_unmap(mem, len);
	drop_source(&s);
}

/* ---- matching ------------------------------------------------------------ */

static void test_region_mismatch(void **state)
{
	const size_t len = 8 * MiB;
	struct source s = { 0 };
	struct bgsnap *h;
	char *mem;

	(void)state;
	make_snapshot(&s, ANON, len, NULL);
	/* Wrong size. */
	mem = tu_map_anon(2 * len, false);
	memset(mem, 0x11, 2 * len);
	assert_int_equal(bgsnap_new(&h), 0);
	assert_int_equal(bgsnap_add_region(h, "ram", mem, 2 * len), 0);
	assert_int_equal(bgsnap_restore(h, s.path, NULL), BGSNAP_EMISMATCH);
	assert_non_null(strstr(bgsnap_last_error(h), "'ram'"));
	bgsnap_free(h);
	/* Wrong name. */
	assert_int_equal(bgsnap_new(&h), 0);
	assert_int_equal(bgsnap_add_region(h, "other", mem, len), 0);
	assert_int_equal(bgsnap_restore(h, s.path, NULL), BGSNAP_EMISMATCH);
	bgsnap_free(h);
	/* Wrong kind. */
	tu_unmap(mem, 2 * len);
	mem = tu_map_memfd(len, NULL);
	memset(mem, 0x11, len);
	assert_int_equal(bgsnap_new(&h), 0);
	assert_int_equal(bgsnap_add_region(h, "ram", mem, len), 0);
	assert_int_equal(bgsnap_restore(h, s.path, NULL), BGSNAP_EMISMATCH);
	for (size_t i = 0; i < len; i++)
		assert_int_equal(mem[i], 0x11);
	bgsnap_free(h);
	tu_unmap(mem, len);
	drop_source(&s);
}

/* ---- from a pipe, and attachments ---------------------------------------- */

struct feeder {
	const char *path;
	int fd;
};

static void *feeder_main(void *arg)
{
	struct feeder *f = arg;
	const int in = open(f->path, O_RDONLY);
	char buf[65536];
	ssize_t n;

	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(f->fd, buf, (size_t)n) != n)
			break;
	close(in);
	close(f->fd);
	return NULL;
}

struct got_attachment {
	char name[64];
	char data[64];
	int calls;
};

static int on_attachment(void *arg, const char *name, const void *data,
			 size_t len)
{
	struct got_attachment *g = arg;

	snprintf(g->name, sizeof(g->name), "%s", name);
	memcpy(g->data, data, len < sizeof(g->data) ? len : sizeof(g->data));
	g->calls++;
	return 0;
}

static void test_from_pipe_with_attachment(void **state)
{
	const size_t len = 16 * MiB;
	struct source s = { 0 };
	struct got_attachment got = { 0 };
	struct bgsnap_restore_opts o = { .size = sizeof(o),
					 .attachment = on_attachment,
					 .arg = &got };
	struct feeder f;
	pthread_t t;
	int fds[2];
	struct bgsnap *h;
	char *mem;

	(void)state;
	make_snapshot(&s, ANON, len, "vcpu state 42");
	h = destination(ANON, len, &mem);
	assert_int_equal(pipe(fds), 0);
	f = (struct feeder){ s.path, fds[1] };
	pthread_create(&t, NULL, feeder_main, &f);
	if (bgsnap_restore_start_fd(h, fds[0], &o))
		fail_msg("%s", bgsnap_last_error(h));
	assert_int_equal(bgsnap_wait(h), 0);
	pthread_join(t, NULL);
	close(fds[0]);
	expect_equal(mem, s.reference, len);
	assert_int_equal(got.calls, 1);
	assert_string_equal(got.name, "device");
	assert_string_equal(got.data, "vcpu state 42");
	bgsnap_free(h);
	tu_unmap(mem, len);
	drop_source(&s);
}

/* ---- back into the live memory it was taken from ------------------------- */

struct live {
	struct source *s;
	bool equal_while_paused;
};

static int live_pause(void *arg)
{
	bank_hold(&((struct live *)arg)->s->bank);
	return 0;
}

static void live_resume(void *arg)
{
	struct live *l = arg;

	l->equal_while_paused = !memcmp(l->s->mem, l->s->reference, l->s->len);
	bank_recover(l->s->mem, BANK_LEN(l->s->len));
	bank_release(&l->s->bank);
}

static void test_restore_into_live_memory(void **state)
{
	const size_t len = 32 * MiB;
	struct source s = { 0 };
	struct live l = { &s, false };
	struct bgsnap_restore_opts o = { .size = sizeof(o),
					 .pause = live_pause,
					 .resume = live_resume,
					 .arg = &l };
	struct bank_figures a, b;
	struct bgsnap *h;
	char why[256], *image = malloc(len);

	(void)state;
	make_snapshot(&s, ANON, len, NULL);
	tu_sleep_ms(50); /* the writers move on */
	assert_int_not_equal(memcmp(s.mem, s.reference, len), 0);
	assert_int_equal(bgsnap_new(&h), 0);
	assert_int_equal(bgsnap_add_region(h, "ram", s.mem, len), 0);
	assert_int_equal(bgsnap_restore(h, s.path, &o), 0);
	assert_true(l.equal_while_paused);
	/* The owner carries on from there, consistently. */
	bank_figures(&s.bank, &a);
	tu_sleep_ms(30);
	bank_figures(&s.bank, &b);
	assert_true(b.ops > a.ops);
	bank_pause(&s.bank);
	memcpy(image, s.mem, len);
	bank_resume(&s.bank);
	if (bank_check(image, BANK_LEN(len), why, sizeof(why)))
		fail_msg("%s", why);
	bgsnap_free(h);
	free(image);
	drop_source(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_eager_anon),
		cmocka_unit_test(test_eager_thp),
		cmocka_unit_test(test_eager_memfd),
		cmocka_unit_test(test_eager_hugetlb),
		cmocka_unit_test(test_lazy_anon),
		cmocka_unit_test(test_lazy_thp),
		cmocka_unit_test(test_lazy_memfd),
		cmocka_unit_test(test_lazy_hugetlb),
		cmocka_unit_test(test_lazy_with_owner_running),
		cmocka_unit_test(test_lazy_discard_race),
		cmocka_unit_test(test_damaged_eager_writes_nothing),
		cmocka_unit_test(test_damaged_eager_fresh),
		cmocka_unit_test(test_damaged_lazy),
		cmocka_unit_test(test_lazy_place_failure),
		cmocka_unit_test(test_region_mismatch),
		cmocka_unit_test(test_from_pipe_with_attachment),
		cmocka_unit_test(test_restore_into_live_memory),
	};
	struct bgs_uffd u;

	tu_open_wp(&u);
	bgs_uffd_close(&u);
	tu_seed();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
