/* SPDX-License-Identifier: MIT */
/* Helpers shared by the tests: memory of each kind, waiting on a uffd,
 * huge page reservation, seeds. */
#ifndef BGS_TESTUTIL_H
#define BGS_TESTUTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <sys/types.h>
#include <cmocka.h>

#include "uffd.h"

#define TU_HUGE_2M (2UL << 20)

/* Anonymous private memory; @thp aligns to 2 MiB and asks for THP. */
void *tu_map_anon(size_t len, bool thp);
/* A memfd mapped shared; *@fd receives the memfd (may be NULL). */
void *tu_map_memfd(size_t len, int *fd);
/* MAP_HUGETLB memory (2 MiB pages), or NULL if none can be had. */
void *tu_map_hugetlb(size_t len);
void tu_unmap(void *p, size_t len);

/* Memory of each kind a region may be (hugetlb reserves its pages). */
enum tu_kind { TU_ANON, TU_THP, TU_MEMFD, TU_HUGETLB };
void *tu_map_kind(enum tu_kind k, size_t len);

/*
 * Make sure @n free 2 MiB huge pages exist. As root, raises
 * vm.nr_hugepages and puts the old value back at exit. Returns false (and
 * says why) when they cannot be had.
 */
bool tu_hugetlb_reserve(unsigned n);

/* Wait up to @timeout_ms for one message on @u; 1 read, 0 timeout, <0 err. */
int tu_wait_msg(const struct bgs_uffd *u, struct uffd_msg *msg, int timeout_ms);

uint64_t tu_now_ns(void);
/* The median of @n figures (sorts them). */
double tu_median(double *v, size_t n);
/* A bench's options: -s MiB (a multiple of @step bytes) into *@size and
 * -r 1-99 into *@repeats, each kept where not given. 0, or 2 after a
 * usage line naming @name. */
int tu_bench_args(int argc, char **argv, const char *name, size_t step,
		  size_t *size, int *repeats);
/* tests/ceph/cluster.sh @cmd (kill-osd, start-osd) on the fixture's
 * cluster, for a test run by tests/ceph/with_cluster.sh: its exit status. */
int tu_ceph_cluster(const char *cmd);
/* Does reading the byte at @p raise SIGBUS (a poisoned page)? */
bool tu_page_raises_sigbus(volatile char *p);
void tu_sleep_ms(unsigned ms);

/* The run's random seed: $BGSNAP_TEST_SEED or the clock; printed once. */
uint64_t tu_seed(void);
/* xorshift64*: small, fast, deterministic for a seed. */
uint64_t tu_rand(uint64_t *state);

/* The test needs root (ptrace of another user's process, mounts, swap, KSM
 * settings). The suite runs as root, so not being root fails the test with
 * that reason: a skip would count as a pass. */
void tu_need_root(const char *why);

/* This kernel lacks @feature, the one reason to skip a test case: says so,
 * then skips it, or fails it under BGSNAP_CI=1 (CI allows no skip, as a
 * cmocka skip counts as a pass in ctest). Only from a test body. */
void tu_skip_missing(const char *feature);

/* Open a uffd for WP tests or skip the whole program (exit 77) when this
 * kernel has no uffd-wp at all. */
void tu_open_wp(struct bgs_uffd *u);

#endif

/* ---- snapshots (need the store and the engine) ------------------------- */

/*
 * Decode region @name of the snapshot at @path into @buf (@len bytes,
 * which must be the region's length). Fails the test on any error.
 */
void tu_snapshot_region(const char *path, const char *name, void *buf,
			size_t len);

/* Fail unless @pid has a mapping starting at @addr that holds under
 * 1 MiB of pages no other process shares (smaps' Private_Dirty): the
 * pages it shares copy-on-write stayed shared. @after says what might
 * have un-shared them, for the message. */
void tu_assert_still_shared(pid_t pid, const void *addr, const char *after);

/* Fail unless no page of [addr, addr+len) of this process is still
 * write-protected (no uffd-wp bit, no marker). */
void tu_assert_unprotected(const void *addr, size_t len);

/* Fail if any file in @dir (other than those listed in @keep, NULL-ended)
 * has a name containing @needle: temp files left behind. */
void tu_assert_no_file_like(const char *dir, const char *needle);

/* /proc/loadavg's line into @buf (benchmarks say how busy the machine
 * was), or "?"; returns @buf. */
const char *tu_loadavg(char *buf, size_t len);

/* A fresh empty directory under /tmp for this test; removed at exit. */
const char *tu_tmpdir(void);
