/* SPDX-License-Identifier: MIT */
/*
 * The uffd layer against the real kernel: protection blocks writers (user
 * and kernel mode) until unprotected, for every memory kind bgsnap
 * supports; never-touched pages are protected; EAGAIN while an event is
 * unread; PAGEMAP_SCAN categories; MISSING-mode fills; a uffd driven from a
 * second process.
 */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define PG 4096UL

static struct bgs_uffd uffd;

/* ---- a thread that writes one byte, so the test can see it block ------ */

struct writer {
	pthread_t thread;
	volatile char *addr;
	char value;
	atomic_bool done;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;

	*w->addr = w->value;
	atomic_store(&w->done, true);
	return NULL;
}

static void writer_start(struct writer *w, void *addr, char value)
{
	w->addr = addr;
	w->value = value;
	atomic_init(&w->done, false);
	assert_int_equal(pthread_create(&w->thread, NULL, writer_main, w), 0);
}

/*
 * The heart of every WP test: a write to @addr (protected) must fault with
 * the WP flag at @expect_fault, stay blocked while protected, and land once
 * [@unprot, +@unprot_len) is unprotected.
 */
static void expect_blocked_write(char *addr, uint64_t expect_fault,
				 char *unprot, size_t unprot_len)
{
	struct writer w;
	struct uffd_msg msg;
	const char old = *addr;

	writer_start(&w, addr, (char)(old + 1));
	assert_int_equal(tu_wait_msg(&uffd, &msg, 5000), 1);
	assert_true(bgs_uffd_msg_is_wp(&msg));
	assert_int_equal(msg.arg.pagefault.address, expect_fault);
	tu_sleep_ms(30);
	assert_false(atomic_load(&w.done));
	assert_int_equal(*addr, old); /* reads see the protected content */
	assert_int_equal(bgs_uffd_unprotect(&uffd, (uint64_t)(uintptr_t)unprot,
					    unprot_len, 0),
			 0);
	pthread_join(w.thread, NULL);
	assert_true(atomic_load(&w.done));
	assert_int_equal(*addr, (char)(old + 1));
}

static void register_wp(void *p, size_t len)
{
	assert_int_equal(bgs_uffd_register(&uffd, (uint64_t)(uintptr_t)p, len,
					   UFFDIO_REGISTER_MODE_WP, NULL),
			 0);
	assert_int_equal(
		bgs_uffd_protect(&uffd, (uint64_t)(uintptr_t)p, len, 0), 0);
}

static void unregister(void *p, size_t len)
{
	assert_int_equal(
		bgs_uffd_unregister(&uffd, (uint64_t)(uintptr_t)p, len), 0);
}

static void test_protected_page_blocks_writer(void **state)
{
	char *p = tu_map_anon(4 * PG, false);

	(void)state;
	memset(p, 'a', 4 * PG);
	register_wp(p, 4 * PG);
	expect_blocked_write(p + PG + 17, (uint64_t)(uintptr_t)(p + PG), p + PG,
			     PG);
	/* Unprotecting one page leaves its neighbours protected. */
	expect_blocked_write(p + 2 * PG, (uint64_t)(uintptr_t)(p + 2 * PG),
			     p + 2 * PG, PG);
	unregister(p, 4 * PG);
	tu_unmap(p, 4 * PG);
}

static void test_unpopulated_pages_fault(void **state)
{
	struct bgs_pagemap pm;
	uint64_t entry;
	char *p = tu_map_anon(4 * PG, false);

	(void)state;
	assert_true(uffd.features & UFFD_FEATURE_WP_UNPOPULATED);
	register_wp(p, 4 * PG);
	/* The marker carries the uffd-wp bit: the right feature bit (13, not
	 * POISON's 14) was asked for. */
	assert_int_equal(bgs_uffd_pagemap_open(&pm, 0), 0);
	assert_int_equal(
		bgs_uffd_pagemap_entry(&pm, (uint64_t)(uintptr_t)(p + 2 * PG),
				       &entry),
		0);
	assert_true(entry & BGS_PM_UFFD_WP);
	assert_false(entry & BGS_PM_PRESENT);
	bgs_uffd_pagemap_close(&pm);
	expect_blocked_write(p + 2 * PG, (uint64_t)(uintptr_t)(p + 2 * PG),
			     p + 2 * PG, PG);
	/* A read of a marker maps a page (the zero page on most kernel
	 * builds) and keeps the protection. */
	assert_int_equal(p[3 * PG], 0);
	expect_blocked_write(p + 3 * PG, (uint64_t)(uintptr_t)(p + 3 * PG),
			     p + 3 * PG, PG);
	unregister(p, 4 * PG);
	tu_unmap(p, 4 * PG);
}

struct collect {
	uint64_t base;
	uint64_t cats[16];
};

static int collect_cb(void *arg, uint64_t start, uint64_t end, uint64_t cats)
{
	struct collect *c = arg;

	for (uint64_t a = start; a < end; a += PG)
		if ((a - c->base) / PG < 16)
			c->cats[(a - c->base) / PG] = cats;
	return 0;
}

static uint64_t huge_categories(char *p, size_t len)
{
	struct bgs_pagemap pm;
	const struct bgs_scan_query q = { .report = PAGE_IS_HUGE,
					  .anyof = PAGE_IS_PRESENT };
	struct collect c = { .base = (uint64_t)(uintptr_t)p };

	assert_int_equal(bgs_uffd_pagemap_open(&pm, 0), 0);
	assert_int_equal(bgs_uffd_pagemap_scan(&pm, c.base, c.base + len, &q,
					       collect_cb, &c),
			 0);
	bgs_uffd_pagemap_close(&pm);
	return c.cats[0];
}

static void test_thp_region(void **state)
{
	const size_t len = 2 * TU_HUGE_2M;
	char *p = tu_map_anon(len, true);

	(void)state;
	memset(p, 'h', len);
	if (!(huge_categories(p, len) & PAGE_IS_HUGE))
		tu_skip_missing("transparent huge pages (CONFIG_TRANSPARENT_"
				"HUGEPAGE, or \"never\" in /sys/kernel/mm/"
				"transparent_hugepage/enabled)");
	register_wp(p, len);
	assert_true(huge_categories(p, len) & PAGE_IS_HUGE);
	/* The fault names the 4 KiB page; unprotecting the whole huge page
	 * keeps it PMD-mapped. */
	expect_blocked_write(p + 5 * PG + 3, (uint64_t)(uintptr_t)(p + 5 * PG),
			     p, TU_HUGE_2M);
	assert_true(huge_categories(p, TU_HUGE_2M) & PAGE_IS_HUGE);
	unregister(p, len);
	tu_unmap(p, len);
}

static void test_memfd_region(void **state)
{
	char *p = tu_map_memfd(4 * PG, NULL);

	(void)state;
	assert_non_null(p);
	assert_true(uffd.features & UFFD_FEATURE_WP_HUGETLBFS_SHMEM);
	memset(p, 'm', 2 * PG); /* pages 2 and 3 never touched */
	register_wp(p, 4 * PG);
	expect_blocked_write(p + PG, (uint64_t)(uintptr_t)(p + PG), p + PG, PG);
	expect_blocked_write(p + 3 * PG, (uint64_t)(uintptr_t)(p + 3 * PG),
			     p + 3 * PG, PG);
	unregister(p, 4 * PG);
	tu_unmap(p, 4 * PG);
}

static void test_hugetlb_region(void **state)
{
	const size_t len = 2 * TU_HUGE_2M;
	char *p;

	(void)state;
	assert_true(tu_hugetlb_reserve(2));
	p = tu_map_hugetlb(len);
	assert_non_null(p);
	memset(p, 'H', len);
	register_wp(p, len);
	/* hugetlb protects whole huge pages only. */
	assert_int_equal(
		bgs_uffd_unprotect(&uffd, (uint64_t)(uintptr_t)p, PG, 0),
		-EINVAL);
	expect_blocked_write(p + TU_HUGE_2M + 0x1234,
			     (uint64_t)(uintptr_t)(p + TU_HUGE_2M),
			     p + TU_HUGE_2M, TU_HUGE_2M);
	unregister(p, len);
	tu_unmap(p, len);
}

struct piperead {
	int fd;
	char *buf;
	ssize_t ret;
	int err;
	atomic_bool done;
};

static void *piperead_main(void *arg)
{
	struct piperead *r = arg;

	r->ret = read(r->fd, r->buf, 5);
	r->err = errno;
	atomic_store(&r->done, true);
	return NULL;
}

/* read(2) into a protected buffer waits for the unprotect, it does not
 * fail with EFAULT (that would be a UFFD_USER_MODE_ONLY uffd). */
static void test_kernel_write_blocks(void **state)
{
	char *p = tu_map_anon(PG, false);
	struct piperead r = { .buf = p + 100 };
	struct uffd_msg msg;
	pthread_t t;
	int fds[2];

	(void)state;
	memset(p, 'k', PG);
	assert_int_equal(pipe(fds), 0);
	assert_int_equal(write(fds[1], "hello", 5), 5);
	register_wp(p, PG);
	r.fd = fds[0];
	atomic_init(&r.done, false);
	pthread_create(&t, NULL, piperead_main, &r);
	assert_int_equal(tu_wait_msg(&uffd, &msg, 5000), 1);
	assert_true(bgs_uffd_msg_is_wp(&msg));
	tu_sleep_ms(30);
	assert_false(atomic_load(&r.done));
	assert_memory_equal(p + 100, "kkkkk", 5);
	assert_int_equal(
		bgs_uffd_unprotect(&uffd, (uint64_t)(uintptr_t)p, PG, 0), 0);
	pthread_join(t, NULL);
	assert_int_equal(r.ret, 5);
	assert_memory_equal(p + 100, "hello", 5);
	close(fds[0]);
	close(fds[1]);
	unregister(p, PG);
	tu_unmap(p, PG);
}

static void test_user_mode_only_refused(void **state)
{
	(void)state;
	assert_int_equal(bgs_uffd_create(UFFD_USER_MODE_ONLY), -EINVAL);
}

static void test_registration_refusals(void **state)
{
	char path[] = "/tmp/bgsnap-test-XXXXXX";
	const int fd = mkstemp(path);
	struct bgs_uffd other;
	char *file, *p = tu_map_anon(PG, false);

	(void)state;
	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(ftruncate(fd, PG), 0);
	file = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	assert_true(file != MAP_FAILED);
	/* A private file mapping cannot be write-protected. */
	assert_int_equal(bgs_uffd_register(&uffd, (uint64_t)(uintptr_t)file, PG,
					   UFFDIO_REGISTER_MODE_WP, NULL),
			 -EINVAL);
	/* Protecting what is not registered is ENOENT. */
	assert_int_equal(bgs_uffd_protect(&uffd, (uint64_t)(uintptr_t)p, PG, 0),
			 -ENOENT);
	/* A range another uffd holds is EBUSY. */
	tu_open_wp(&other);
	assert_int_equal(bgs_uffd_register(&other, (uint64_t)(uintptr_t)p, PG,
					   UFFDIO_REGISTER_MODE_WP, NULL),
			 0);
	assert_int_equal(bgs_uffd_register(&uffd, (uint64_t)(uintptr_t)p, PG,
					   UFFDIO_REGISTER_MODE_WP, NULL),
			 -EBUSY);
	bgs_uffd_close(&other);
	munmap(file, PG);
	close(fd);
	tu_unmap(p, PG);
}

struct dontneed {
	void *addr;
	atomic_bool done;
};

static void *dontneed_main(void *arg)
{
	struct dontneed *d = arg;

	madvise(d->addr, PG, MADV_DONTNEED);
	atomic_store(&d->done, true);
	return NULL;
}

struct protector {
	char *addr;
	int ret;
};

static void *protector_main(void *arg)
{
	struct protector *pr = arg;

	pr->ret = bgs_uffd_protect(&uffd, (uint64_t)(uintptr_t)pr->addr, PG, 0);
	return NULL;
}

/* While a REMOVE event is unread, WRITEPROTECT says EAGAIN; the layer
 * retries until the event reader has taken it. */
static void test_eagain_while_event_unread(void **state)
{
	char *p = tu_map_anon(4 * PG, false);
	struct dontneed d = { .addr = p + 3 * PG };
	struct protector pr = { .addr = p };
	struct uffdio_writeprotect wp = {
		.range = { (uint64_t)(uintptr_t)p, PG },
		.mode = UFFDIO_WRITEPROTECT_MODE_WP,
	};
	struct pollfd pfd = { .fd = uffd.fd, .events = POLLIN };
	struct uffd_msg msg;
	pthread_t t1, t2;

	(void)state;
	assert_true(uffd.features & UFFD_FEATURE_EVENT_REMOVE);
	memset(p, 'e', 4 * PG);
	assert_int_equal(bgs_uffd_register(&uffd, (uint64_t)(uintptr_t)p,
					   4 * PG, UFFDIO_REGISTER_MODE_WP,
					   NULL),
			 0);
	atomic_init(&d.done, false);
	pthread_create(&t1, NULL, dontneed_main, &d);
	assert_int_equal(poll(&pfd, 1, 5000), 1); /* queued, not read */
	tu_sleep_ms(20);
	assert_false(atomic_load(&d.done)); /* madvise waits for the read */
	assert_int_equal(ioctl(uffd.fd, UFFDIO_WRITEPROTECT, &wp), -1);
	assert_int_equal(errno, EAGAIN);

	pthread_create(&t2, NULL, protector_main, &pr);
	tu_sleep_ms(50);
	assert_int_equal(bgs_uffd_read(&uffd, &msg, 1), 1);
	assert_int_equal(msg.event, UFFD_EVENT_REMOVE);
	assert_int_equal(msg.arg.remove.start,
			 (uint64_t)(uintptr_t)(p + 3 * PG));
	pthread_join(t2, NULL);
	assert_int_equal(pr.ret, 0);
	pthread_join(t1, NULL);
	expect_blocked_write(p, (uint64_t)(uintptr_t)p, p, PG);
	unregister(p, 4 * PG);
	tu_unmap(p, 4 * PG);
}

/*
 * Kernel builds differ: most map the shared zero page on a read of a
 * never-written private anonymous page, some map a fresh page. Find out
 * without PAGEMAP_SCAN, which is what is under test: two such reads in
 * separate mappings share a frame only if it is the zero page.
 */
static bool read_maps_zero_page(void)
{
	char *a = tu_map_anon(PG, false);
	char *b = tu_map_anon(PG, false);
	uint64_t ea = 0, eb = 0;
	struct bgs_pagemap pm;

	(void)*(volatile char *)a;
	(void)*(volatile char *)b;
	assert_int_equal(bgs_uffd_pagemap_open(&pm, 0), 0);
	assert_int_equal(
		bgs_uffd_pagemap_entry(&pm, (uint64_t)(uintptr_t)a, &ea), 0);
	assert_int_equal(
		bgs_uffd_pagemap_entry(&pm, (uint64_t)(uintptr_t)b, &eb), 0);
	bgs_uffd_pagemap_close(&pm);
	tu_unmap(a, PG);
	tu_unmap(b, PG);
	assert_true(ea & BGS_PM_PRESENT);
	/* Frame numbers read as 0 without CAP_SYS_ADMIN: then we cannot tell. */
	assert_true((ea & BGS_PM_PFN_MASK) != 0);
	return (ea & BGS_PM_PFN_MASK) == (eb & BGS_PM_PFN_MASK);
}

static void test_pagemap_scan_categories(void **state)
{
	const uint64_t all = PAGE_IS_PRESENT | PAGE_IS_WRITTEN |
			     PAGE_IS_SWAPPED | PAGE_IS_PFNZERO;
	const struct bgs_scan_query q = { .report = all };
	struct collect c;
	struct bgs_pagemap pm;
	const uint64_t read_page = read_maps_zero_page() ? PAGE_IS_PFNZERO : 0;
	char *p = tu_map_anon(5 * PG, false);
	volatile char sink;

	(void)state;
	p[0] = 1;		/* page 0: data, protected */
	sink = p[PG];		/* page 1: read only, protected */
	(void)sink;		/* page 2: never touched, protected (marker) */
	p[3 * PG] = 1;		/* page 3: data, unprotected, written again */
	register_wp(p, 4 * PG); /* page 4: not registered, never touched */
	assert_int_equal(bgs_uffd_unprotect(&uffd,
					    (uint64_t)(uintptr_t)(p + 3 * PG),
					    PG, 0),
			 0);
	p[3 * PG] = 2;

	c = (struct collect){ .base = (uint64_t)(uintptr_t)p };
	assert_int_equal(bgs_uffd_pagemap_open(&pm, 0), 0);
	assert_int_equal(bgs_uffd_pagemap_scan(&pm, c.base, c.base + 5 * PG, &q,
					       collect_cb, &c),
			 0);
	assert_int_equal(c.cats[0], PAGE_IS_PRESENT);
	assert_int_equal(c.cats[1], PAGE_IS_PRESENT | read_page);
	assert_int_equal(c.cats[2], PAGE_IS_SWAPPED);
	assert_int_equal(c.cats[3], PAGE_IS_PRESENT | PAGE_IS_WRITTEN);
	assert_int_equal(c.cats[4] & (PAGE_IS_PRESENT | PAGE_IS_SWAPPED), 0);

	/* Filters: only what has content (present or swapped/marker). */
	const struct bgs_scan_query populated = {
		.anyof = PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
		.exclude = PAGE_IS_PFNZERO,
		.report = PAGE_IS_PRESENT,
	};
	memset(&c.cats, 0, sizeof(c.cats));
	assert_int_equal(bgs_uffd_pagemap_scan(&pm, c.base, c.base + 5 * PG,
					       &populated, collect_cb, &c),
			 0);
	assert_int_equal(c.cats[0], PAGE_IS_PRESENT);
	assert_int_equal(c.cats[1], read_page ? 0 : PAGE_IS_PRESENT);
	assert_int_equal(c.cats[3], PAGE_IS_PRESENT);
	bgs_uffd_pagemap_close(&pm);
	unregister(p, 4 * PG);
	tu_unmap(p, 5 * PG);
}

struct reader {
	pthread_t thread;
	volatile char *addr;
	char seen;
	atomic_bool done;
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;

	r->seen = *r->addr;
	atomic_store(&r->done, true);
	return NULL;
}

static void reader_start(struct reader *r, void *addr)
{
	r->addr = addr;
	atomic_init(&r->done, false);
	pthread_create(&r->thread, NULL, reader_main, r);
}

static void test_missing_fill(void **state)
{
	struct bgs_uffd m;
	struct uffd_msg msgs[8];
	struct reader r0, r1, r2;
	char *p = tu_map_anon(4 * PG, false);
	char *q = tu_map_anon(PG, false);
	char src[4 * PG];
	const uint64_t base = (uint64_t)(uintptr_t)p;
	uint64_t ioctls;

	(void)state;
	assert_int_equal(bgs_uffd_open(&m, BGS_UFFD_FEATURES_MISSING, 0), 0);
	assert_int_equal(bgs_uffd_register(&m, base, 4 * PG,
					   UFFDIO_REGISTER_MODE_MISSING,
					   &ioctls),
			 0);
	assert_true(ioctls & (1ULL << _UFFDIO_COPY));
	assert_true(ioctls & (1ULL << _UFFDIO_ZEROPAGE));
	memset(src, 'X', sizeof(src));

	/* Two faults queued are read in one batch. */
	reader_start(&r0, p);
	reader_start(&r1, p + PG);
	tu_sleep_ms(100);
	assert_int_equal(bgs_uffd_read(&m, msgs, 8), 2);
	assert_int_equal(bgs_uffd_copy(&m, base, src, PG, PG, 0), PG);
	assert_int_equal(bgs_uffd_zeropage(&m, base + PG, PG, PG, 0), PG);
	pthread_join(r0.thread, NULL);
	pthread_join(r1.thread, NULL);
	assert_int_equal(r0.seen, 'X');
	assert_int_equal(r1.seen, 0);

	/* Pages already there are skipped, the rest are placed. */
	assert_int_equal(bgs_uffd_copy(&m, base, src, 4 * PG, PG, 0), 2 * PG);
	assert_int_equal(p[0], 'X');
	assert_int_equal(p[PG], 0);
	assert_int_equal(p[3 * PG], 'X');

	/* DONTWAKE leaves the faulting thread asleep until a wake. */
	assert_int_equal(bgs_uffd_register(&m, (uint64_t)(uintptr_t)q, PG,
					   UFFDIO_REGISTER_MODE_MISSING, NULL),
			 0);
	reader_start(&r2, q);
	assert_int_equal(tu_wait_msg(&m, msgs, 5000), 1);
	assert_int_equal(bgs_uffd_copy(&m, (uint64_t)(uintptr_t)q, src, PG, PG,
				       BGS_UFFD_DONTWAKE),
			 PG);
	tu_sleep_ms(30);
	assert_false(atomic_load(&r2.done));
	assert_int_equal(bgs_uffd_wake(&m, (uint64_t)(uintptr_t)q, PG), 0);
	pthread_join(r2.thread, NULL);
	assert_int_equal(r2.seen, 'X');
	bgs_uffd_close(&m);
	tu_unmap(p, 4 * PG);
	tu_unmap(q, PG);
}

static sigjmp_buf poison_jmp;
static volatile sig_atomic_t poison_code;

static void on_sigbus(int sig, siginfo_t *si, void *ctx)
{
	(void)sig;
	(void)ctx;
	poison_code = si->si_code;
	siglongjmp(poison_jmp, 1);
}

static void test_poison(void **state)
{
	struct bgs_uffd m;
	struct sigaction sa = { .sa_sigaction = on_sigbus,
				.sa_flags = SA_SIGINFO },
			 old;
	char *p = tu_map_anon(2 * PG, false);
	volatile char sink = 0;

	(void)state;
	assert_int_equal(bgs_uffd_open(&m, BGS_UFFD_FEATURES_MISSING, 0), 0);
	assert_true(m.features & UFFD_FEATURE_POISON);
	assert_int_equal(bgs_uffd_register(&m, (uint64_t)(uintptr_t)p, 2 * PG,
					   UFFDIO_REGISTER_MODE_MISSING, NULL),
			 0);
	assert_int_equal(
		bgs_uffd_zeropage(&m, (uint64_t)(uintptr_t)(p + PG), PG, PG, 0),
		PG);
	/* Poisoning skips the page already there. */
	assert_int_equal(
		bgs_uffd_poison(&m, (uint64_t)(uintptr_t)p, 2 * PG, PG, 0), PG);
	sigaction(SIGBUS, &sa, &old);
	poison_code = 0;
	if (!sigsetjmp(poison_jmp, 1))
		sink = p[10];
	sigaction(SIGBUS, &old, NULL);
	(void)sink;
	/* BUS_MCEERR_AR with CONFIG_MEMORY_FAILURE, BUS_ADRERR without. */
	assert_true(poison_code == BUS_MCEERR_AR || poison_code == BUS_ADRERR);
	assert_int_equal(p[PG], 0);
	bgs_uffd_close(&m);
	tu_unmap(p, 2 * PG);
}

/*
 * A uffd created by one process is driven from another after pidfd_getfd:
 * the child creates it (no UFFDIO_API) and waits; the parent takes it,
 * negotiates, registers and protects the child's memory, serves the
 * child's write fault by reading the old content with process_vm_readv.
 */
static void test_uffd_from_second_process(void **state)
{
	int to_parent[2], to_child[2], status;
	struct {
		int fd;
		uint64_t addr;
	} hello;
	struct bgs_uffd remote;
	struct uffd_msg msg;
	char old[PG], go = 1;
	pid_t child;

	(void)state;
	assert_int_equal(pipe(to_parent), 0);
	assert_int_equal(pipe(to_child), 0);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		char *mem = tu_map_anon(2 * PG, false);
		char done;

		memset(mem, 'c', 2 * PG);
		hello.fd = bgs_uffd_create(0);
		hello.addr = (uint64_t)(uintptr_t)mem;
		if (write(to_parent[1], &hello, sizeof(hello)) !=
			    sizeof(hello) ||
		    read(to_child[0], &done, 1) != 1)
			_exit(2);
		mem[PG + 1] = 'w'; /* blocks until the parent unprotects */
		_exit(mem[PG + 1] == 'w' && mem[PG] == 'c' ? 0 : 3);
	}
	assert_int_equal(read(to_parent[0], &hello, sizeof(hello)),
			 sizeof(hello));
	assert_true(hello.fd >= 0);

	const int pidfd = (int)syscall(SYS_pidfd_open, child, 0);
	const int fd = (int)syscall(SYS_pidfd_getfd, pidfd, hello.fd, 0);
	assert_true(fd >= 0);
	assert_int_equal(bgs_uffd_adopt(&remote, fd, BGS_UFFD_FEATURES_WP,
					UFFD_FEATURE_PAGEFAULT_FLAG_WP),
			 0);
	assert_int_equal(bgs_uffd_register(&remote, hello.addr, 2 * PG,
					   UFFDIO_REGISTER_MODE_WP, NULL),
			 0);
	assert_int_equal(bgs_uffd_protect(&remote, hello.addr, 2 * PG, 0), 0);
	assert_int_equal(write(to_child[1], &go, 1), 1);

	assert_int_equal(tu_wait_msg(&remote, &msg, 5000), 1);
	assert_true(bgs_uffd_msg_is_wp(&msg));
	assert_int_equal(msg.arg.pagefault.address, hello.addr + PG);
	struct iovec local = { old, PG };
	struct iovec rem = { (void *)(uintptr_t)(hello.addr + PG), PG };
	assert_int_equal(process_vm_readv(child, &local, 1, &rem, 1, 0), PG);
	assert_int_equal(old[1], 'c'); /* the content before the write */
	assert_int_equal(bgs_uffd_unprotect(&remote, hello.addr + PG, PG, 0),
			 0);
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	bgs_uffd_close(&remote);
	close(pidfd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_protected_page_blocks_writer),
		cmocka_unit_test(test_unpopulated_pages_fault),
		cmocka_unit_test(test_thp_region),
		cmocka_unit_test(test_memfd_region),
		cmocka_unit_test(test_hugetlb_region),
		cmocka_unit_test(test_kernel_write_blocks),
		cmocka_unit_test(test_user_mode_only_refused),
		cmocka_unit_test(test_registration_refusals),
		cmocka_unit_test(test_eagain_while_event_unread),
		cmocka_unit_test(test_pagemap_scan_categories),
		cmocka_unit_test(test_missing_fill),
		cmocka_unit_test(test_poison),
		cmocka_unit_test(test_uffd_from_second_process),
	};

	tu_open_wp(&uffd);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
