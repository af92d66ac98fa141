/* SPDX-License-Identifier: MIT */
/*
 * A lazy restore from a snapshot in Ceph (rados://POOL/NAME), through the
 * library, against the cluster of the ceph_cluster fixture (run by
 * tests/ceph/with_cluster.sh):
 *   - the owner runs at once and finds every page as it was at the
 *     instant, served by reads of the faulted records (and of their whole
 *     objects as its faults walk the memory), while the fill reads the
 *     rest a whole object at a time;
 *   - the same on a connection kept by bgsnap_ceph_connect(), which needs
 *     no configuration any more, until bgsnap_ceph_config() drops it;
 *   - what the reads in place fetch: a record far from the last one read,
 *     its own bytes; a second in the same object, the object whole (read
 *     ahead); a third there, nothing;
 *   - the OSD killed while it restores: the owner is not left waiting for
 *     ever; the pages not placed yet raise SIGBUS once the operation
 *     timeout has passed, those placed are the snapshot's, and the
 *     restore ends, within the timeout, with an error that says why.
 */
#include "testutil.h"
#include "guest_bank.h"
#include "bgsnap.h"
#include "rs_rados.h"
#include "snap_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MiB (1UL << 20)
#define PG  4096UL

static char target[256];

static struct bgsnap *with_region(char *mem, size_t len)
{
	struct bgsnap *h;

	assert_int_equal(bgsnap_new(&h), 0);
	assert_int_equal(bgsnap_add_region(h, "ram", mem, len), 0);
	return h;
}

/* A snapshot of @len bytes of @mem in the pool. */
static void save_to_pool_as(char *mem, size_t len,
			    enum bgsnap_compression compression)
{
	struct bgsnap_save_opts o = { .size = sizeof(o),
				      .compression = compression };
	struct bgsnap *h = with_region(mem, len);

	if (bgsnap_save(h, target, &o))
		fail_msg("save to %s: %s", target, bgsnap_last_error(h));
	bgsnap_free(h);
}

static void save_to_pool(char *mem, size_t len)
{
	save_to_pool_as(mem, len, BGSNAP_COMPRESS_LZ4);
}

static char *fresh(size_t len)
{
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	assert_true(p != MAP_FAILED);
	return p;
}

/* BGSNAP_RADOS_LAZY_MIB=1024 measures a larger one (64 MiB: the test). */
static size_t test_len(void)
{
	const char *mib = getenv("BGSNAP_RADOS_LAZY_MIB");

	return (mib ? strtoull(mib, NULL, 10) : 64) * MiB;
}

/* Restore @src's snapshot lazily into fresh memory, the owner reading it
 * at once; every page must be the snapshot's. */
static void lazy_round_trip(const char *src, size_t len, const char *how)
{
	struct bgsnap_restore_opts o = { .size = sizeof(o),
					 .flags = BGSNAP_RESTORE_LAZY };
	struct bgsnap_stats st = { .size = sizeof(st) };
	char *dst = fresh(len), why[256];
	struct bgsnap *h = with_region(dst, len);

	if (bgsnap_restore_start(h, target, &o))
		fail_msg("lazy restore from %s (%s): %s", target, how,
			 bgsnap_last_error(h));
	/* The owner runs at once: from the end backwards, ahead of the
	 * fill, so that most of these are faults. */
	for (size_t i = len; i; i -= PG)
		if (memcmp(dst + i - PG, src + i - PG, PG))
			fail_msg("page %zu differs from the snapshot",
				 (i - PG) / PG);
	assert_int_equal(bgsnap_wait(h), 0);
	assert_int_equal(bgsnap_stats(h, &st), 0);
	fprintf(stderr,
		"# lazy from RADOS, %zu MiB, %s: resume %.3f ms, total %.1f "
		"ms, by fault %llu, by fill %llu, fault p50 %.1f us p99 %.1f "
		"us max %.1f us\n",
		len / MiB, how, st.resume_ns / 1e6, st.elapsed_ns / 1e6,
		(unsigned long long)st.pages_by_fault,
		(unsigned long long)st.pages_by_fill, st.stall_ns_p50 / 1e3,
		st.stall_ns_p99 / 1e3, st.stall_ns_max / 1e3);
	assert_true(st.pages_by_fault > 0);
	assert_int_equal(st.pages_by_fault + st.pages_by_fill, len / PG);
	assert_memory_equal(dst, src, len);
	if (bank_check(dst, len - MiB, why, sizeof(why)))
		fail_msg("%s", why);
	bgsnap_free(h);
	munmap(dst, len);
}

/* Data object of the record of extent @e, or -1 if the record crosses
 * into the next one. */
static int64_t object_of(const struct rs_reader *rd, const struct rs_extent *e)
{
	const uint64_t first = e->offset / RS_RADOS_OBJECT;
	const uint64_t end = e->offset + bgs_rs_rechdr_len(rd) + e->stored_len;

	return (end - 1) / RS_RADOS_OBJECT == first ? (int64_t)first : -1;
}

/* The @nth (from 0) extent of a record-sized record wholly in data
 * object @object, or NULL. */
static const struct rs_extent *record_in(const struct rs_reader *rd,
					 int64_t object, unsigned nth)
{
	for (size_t i = 0; i < bgs_rs_extent_count(rd); i++) {
		const struct rs_extent *e = bgs_rs_extent(rd, i);

		if (e->encoding == RS_ENC_RAW && e->stored_len >= 4096 &&
		    object_of(rd, e) == object && !nth--)
			return e;
	}
	return NULL;
}

/* Bytes fetched from the pool to decode @e. */
static uint64_t fetched_for(struct rs_rados *r, const struct rs_reader *rd,
			    struct rs_decoder *dec, const struct rs_extent *e,
			    void *buf)
{
	const uint64_t before = bgs_rs_rados_bytes_read(r);
	const size_t i = (size_t)(e - bgs_rs_extent(rd, 0));
	struct rs_diag d = { 0 };

	if (bgs_rs_decode_to(rd, dec, i, buf, &d) < 0)
		fail_msg("decoding extent %zu: %s", i, d.msg);
	return bgs_rs_rados_bytes_read(r) - before;
}

/*
 * A fault fetches its record, not its data object (8-16 ms here against
 * a small read's fraction of one); a second record in the same object
 * fetches the object whole, for the reads that follow it there. Records
 * stored raw, so that objects hold many of them; read by this thread,
 * whose last read (the index, at the end) is far from the object used.
 */
static void test_reads_fetch_what_they_need(void **state)
{
	const size_t len = 64 * MiB;
	char *src = fresh(len), msg[512];
	uint8_t *buf = malloc(RS_RECORD_MAX_PAGES * PG);
	const struct rs_extent *a, *b, *c, *far;
	struct rs_decoder *dec;
	struct rs_reader *rd;
	struct rs_rados *r;
	int64_t objects = 0, k;

	(void)state;
	assert_non_null(buf);
	assert_int_equal(bank_format(src, len - MiB, tu_seed()), 0);
	save_to_pool_as(src, len, BGSNAP_COMPRESS_NONE);
	if (bgs_snap_rados_in_open(target, &r, &rd, msg, sizeof(msg)))
		fail_msg("opening %s in place: %s", target, msg);
	assert_int_equal(bgs_rs_decoder_new(&dec), 0);
	for (size_t i = 0; i < bgs_rs_extent_count(rd); i++) {
		const struct rs_extent *e = bgs_rs_extent(rd, i);
		const int64_t o = (int64_t)(e->offset / RS_RADOS_OBJECT);

		objects = o + 1 > objects ? o + 1 : objects;
	}
	assert_true(objects >= 6); /* the index is in the last */
	k = objects / 2;
	a = record_in(rd, k, 0);
	b = record_in(rd, k, 1);
	c = record_in(rd, k, 2);
	far = record_in(rd, k - 2, 0);
	assert_true(a && b && c && far);

	assert_int_equal(fetched_for(r, rd, dec, a, buf),
			 bgs_rs_rechdr_len(rd) + a->stored_len);
	/* its header alone, then, from its payload on, the object */
	assert_int_equal(fetched_for(r, rd, dec, b, buf),
			 bgs_rs_rechdr_len(rd) + RS_RADOS_OBJECT);
	assert_int_equal(fetched_for(r, rd, dec, c, buf), 0);
	assert_int_equal(fetched_for(r, rd, dec, far, buf),
			 bgs_rs_rechdr_len(rd) + far->stored_len);
	assert_memory_equal(buf, src + far->first * PG, far->npages * PG);

	bgs_rs_decoder_free(dec);
	bgs_rs_close(rd);
	bgs_snap_rados_in_close(r);
	free(buf);
	munmap(src, len);
}

static void test_lazy_round_trip(void **state)
{
	const size_t len = test_len();
	char *src = fresh(len);

	(void)state;
	assert_int_equal(bank_format(src, len - MiB, tu_seed()), 0);
	save_to_pool(src, len);
	lazy_round_trip(src, len, "connecting");
	munmap(src, len);
}

/*
 * With the pool's connection kept (bgsnap_ceph_connect), a restore
 * connects no more: it works even once the configuration it was made
 * with cannot be read; bgsnap_ceph_config() drops it, and the next one
 * connects (and fails here, for want of that configuration).
 */
static void test_lazy_kept_connection(void **state)
{
	const size_t len = test_len();
	struct bgsnap_restore_opts o = { .size = sizeof(o),
					 .flags = BGSNAP_RESTORE_LAZY };
	char *src = fresh(len), *dst, pool[256], err[512], *conf;
	struct bgsnap *h;
	int ret;

	(void)state;
	assert_non_null(getenv("CEPH_CONF"));
	conf = strdup(getenv("CEPH_CONF"));
	assert_int_equal(bank_format(src, len - MiB, tu_seed()), 0);
	save_to_pool(src, len);
	snprintf(pool, sizeof(pool), "rados://%s", getenv("BGSNAP_CEPH_POOL"));
	if (bgsnap_ceph_connect(pool, err, sizeof(err)))
		fail_msg("bgsnap_ceph_connect: %s", err);
	setenv("CEPH_CONF", "/nonexistent/ceph.conf", 1);
	lazy_round_trip(src, len, "connection kept");
	assert_int_equal(bgsnap_ceph_config(NULL, getenv("BGSNAP_CEPH_ID"), 5),
			 0);
	dst = fresh(len);
	h = with_region(dst, len);
	ret = bgsnap_restore_start(h, target, &o);
	fprintf(stderr, "# connection dropped: %d %s\n", ret,
		bgsnap_last_error(h));
	assert_true(ret < 0);
	assert_non_null(strstr(bgsnap_last_error(h), "configuration"));
	bgsnap_free(h);
	setenv("CEPH_CONF", conf, 1);
	free(conf);
	munmap(dst, len);
	munmap(src, len);
}

static void test_lazy_osd_killed(void **state)
{
	const size_t len = 256 * MiB; /* random: the fill takes a while */
	struct bgsnap_restore_opts o = { .size = sizeof(o),
					 .flags = BGSNAP_RESTORE_LAZY };
	char *src = fresh(len), *dst = fresh(len);
	uint64_t seed = tu_seed() | 1;
	struct bgsnap *h;
	uint64_t t0, ms, poisoned = 0;
	int r;

	(void)state;
	for (size_t i = 0; i < len; i += 8) {
		const uint64_t v = tu_rand(&seed);

		memcpy(src + i, &v, 8);
	}
	save_to_pool(src, len);
	h = with_region(dst, len);
	assert_int_equal(bgsnap_restore_start(h, target, &o), 0);
	assert_int_equal(tu_ceph_cluster("kill-osd"), 0);
	t0 = tu_now_ns();
	r = bgsnap_wait(h);
	ms = (tu_now_ns() - t0) / 1000000;
	for (size_t i = 0; i < len; i += PG) {
		if (tu_page_raises_sigbus(dst + i))
			poisoned++;
		else if (memcmp(dst + i, src + i, PG))
			fail_msg("page %zu is neither the snapshot's nor "
				 "poisoned",
				 i / PG);
	}
	fprintf(stderr,
		"# the restore ended after %llu ms: %d %s; %llu of %zu pages "
		"poisoned\n",
		(unsigned long long)ms, r, bgsnap_last_error(h),
		(unsigned long long)poisoned, len / PG);
	assert_int_equal(tu_ceph_cluster("start-osd"), 0);
	assert_true(r < 0);
	assert_non_null(strstr(bgsnap_last_error(h), "poisoned"));
	assert_true(poisoned > 0);
	assert_true(ms < 60000); /* the 5 s timeout, not for ever */
	bgsnap_free(h);
	munmap(src, len);
	munmap(dst, len);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lazy_round_trip),
		cmocka_unit_test(test_lazy_kept_connection),
		cmocka_unit_test(test_reads_fetch_what_they_need),
		cmocka_unit_test(test_lazy_osd_killed),
	};

	(void)argc;
	(void)argv;
	if (!getenv("BGSNAP_CEPH_POOL") || !getenv("BGSNAP_CEPH_ID")) {
		fprintf(stderr, "test_rados_lazy: run it through "
				"tests/ceph/with_cluster.sh\n");
		return 1;
	}
	snprintf(target, sizeof(target), "rados://%s/lazy-%d",
		 getenv("BGSNAP_CEPH_POOL"), (int)getpid());
	if (bgsnap_ceph_config(NULL, getenv("BGSNAP_CEPH_ID"), 5))
		return 1;
	tu_seed();
	if (getenv("BGSNAP_TEST_FILTER"))
		cmocka_set_test_filter(getenv("BGSNAP_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
