/* SPDX-License-Identifier: MIT */
/*
 * A lazy restore from a snapshot in Ceph (rados://POOL/NAME), through the
 * library, against the cluster of the ceph_cluster fixture (run by
 * tests/ceph/with_cluster.sh):
 *   - the owner runs at once and finds every page as it was at the
 *     instant, served by reads of the faulted records only, while the fill
 *     reads the rest a whole object at a time;
 *   - the same on a connection kept by bgsnap_ceph_connect(), which needs
 *     no configuration any more, until bgsnap_ceph_config() drops it;
 *   - the OSD killed while it restores: the owner is not left waiting for
 *     ever; the pages not placed yet raise SIGBUS once the operation
 *     timeout has passed, those placed are the snapshot's, and the
 *     restore ends, within the timeout, with an error that says why.
 */
#include "testutil.h"
#include "guest_bank.h"
#include "bgsnap.h"

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
static void save_to_pool(char *mem, size_t len)
{
	struct bgsnap_save_opts o = { .size = sizeof(o) };
	struct bgsnap *h = with_region(mem, len);

	if (bgsnap_save(h, target, &o))
		fail_msg("save to %s: %s", target, bgsnap_last_error(h));
	bgsnap_free(h);
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
