/* SPDX-License-Identifier: MIT */
/*
 * Mappings of a target, classified: a kid makes one of every kind (heap,
 * stack, anonymous, THP, memfd, /dev/shm, SysV, shared anonymous, hugetlb,
 * private file written and read-only, shared file, PROT_NONE guard, KSM
 * mergeable, registered with its own uffd, MADV_DONTDUMP) and each must come
 * back with the right kind, action, hazards and a unique name. Kinds no
 * program can make (device memory, [vsyscall], droppable) are checked on
 * smaps text. Then filters and change detection.
 */
#include "testutil.h"
#include "tu_target.h"
#include "uffd_target.h"
#include "snap_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <unistd.h>

#define PG 4096UL
#define MB (1UL << 20)

enum {
	M_ANON,
	M_THP,
	M_MEMFD,
	M_HUGETLB,
	M_FILE_PRIV,
	M_FILE_RO,
	M_GUARD,
	M_KSM,
	M_UFFD,
	M_SHARED_ANON,
	M_DONTDUMP,
	M_DEVSHM,
	M_SYSV,
	M_FILE_SHARED,
	M_HEAP,
	M_STACK,
	M_COUNT
};

_Static_assert(M_COUNT <= sizeof(((struct tu_kid_shm *)0)->addr) /
				  sizeof(uint64_t),
	       "slots fit the shared page");

static char file_path[128];
static bool have_hugetlb;

static void *map_file(bool shared, int prot)
{
	const int fd = open(file_path, O_RDWR | O_CLOEXEC);
	void *p;

	if (fd < 0)
		return MAP_FAILED;
	p = mmap(NULL, 4 * PG, prot, shared ? MAP_SHARED : MAP_PRIVATE, fd, 0);
	close(fd);
	return p;
}

static void *map_devshm(void)
{
	char name[64];
	int fd;
	void *p;

	snprintf(name, sizeof(name), "/bgsnap-test-%d", (int)getpid());
	fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (fd < 0)
		return MAP_FAILED;
	shm_unlink(name);
	if (ftruncate(fd, 4 * PG))
		return MAP_FAILED;
	p = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	return p;
}

static void *map_sysv(void)
{
	const int id = shmget(IPC_PRIVATE, 4 * PG, IPC_CREAT | 0600);
	void *p;

	if (id < 0)
		return MAP_FAILED;
	p = shmat(id, NULL, 0);
	shmctl(id, IPC_RMID, NULL);
	return p == (void *)-1 ? MAP_FAILED : p;
}

static void *map_anon(size_t len, int prot, int flags)
{
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       (flags ? flags : MAP_PRIVATE) | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return p;
	memset(p, 1, len);
	if (prot != (PROT_READ | PROT_WRITE))
		mprotect(p, len, prot);
	return p;
}

/* Anonymous memory no neighbour merges with, between two PROT_NONE pages:
 * merged into an allocator's mapping (ASan's), it would be named after
 * that mapping's start, not its own. */
static void *map_anon_alone(size_t len)
{
	char *p = mmap(NULL, len + 2 * PG, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED || mprotect(p + PG, len, PROT_READ | PROT_WRITE))
		return MAP_FAILED;
	memset(p + PG, 1, len);
	return p + PG;
}

/* The uffd is this kid's own: the mapping must show up as taken. */
static void *map_uffd(void)
{
	static struct bgs_uffd u;
	char *p = map_anon(4 * PG, PROT_READ | PROT_WRITE, 0);

	if (p == MAP_FAILED || bgs_uffd_open(&u, 0, 0) ||
	    bgs_uffd_register(&u, (uintptr_t)p, 4 * PG, UFFDIO_REGISTER_MODE_WP,
			      NULL))
		return MAP_FAILED;
	return p;
}

static int kinds_setup(struct tu_kid *k)
{
	uint64_t *s = k->shm->addr;
	char *guard, *p;
	int local;

	s[M_ANON] = (uintptr_t)map_anon_alone(16 * PG);
	p = tu_map_anon(4 * MB, true);
	if (p)
		memset(p, 1, 4 * MB);
	s[M_THP] = (uintptr_t)p;
	p = tu_map_memfd(4 * PG, NULL);
	if (p)
		memset(p, 1, 4 * PG);
	s[M_MEMFD] = (uintptr_t)p;
	p = have_hugetlb ? tu_map_hugetlb(2 * MB) : NULL;
	if (p)
		p[0] = 1;
	s[M_HUGETLB] = (uintptr_t)p;
	p = map_file(false, PROT_READ | PROT_WRITE);
	if (p != MAP_FAILED)
		p[PG] = 1; /* one page of its own */
	s[M_FILE_PRIV] = (uintptr_t)p;
	s[M_FILE_RO] = (uintptr_t)map_file(false, PROT_READ);
	s[M_FILE_SHARED] = (uintptr_t)map_file(true, PROT_READ | PROT_WRITE);
	guard = mmap(NULL, 4 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
		     0);
	s[M_GUARD] = (uintptr_t)guard;
	s[M_KSM] = (uintptr_t)map_anon(4 * PG, PROT_READ | PROT_WRITE, 0);
	madvise((void *)(uintptr_t)s[M_KSM], 4 * PG, MADV_MERGEABLE);
	s[M_UFFD] = (uintptr_t)map_uffd();
	s[M_SHARED_ANON] =
		(uintptr_t)map_anon(4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED);
	s[M_DONTDUMP] = (uintptr_t)map_anon(4 * PG, PROT_READ | PROT_WRITE, 0);
	madvise((void *)(uintptr_t)s[M_DONTDUMP], 4 * PG, MADV_DONTDUMP);
	s[M_DEVSHM] = (uintptr_t)map_devshm();
	s[M_SYSV] = (uintptr_t)map_sysv();
	p = sbrk(16 * PG); /* [heap], whatever malloc uses */
	if (p != (void *)-1)
		memset(p, 1, 16 * PG);
	s[M_HEAP] = (uintptr_t)p;
	s[M_STACK] = (uintptr_t)&local;
	return 0;
}

/* 'm': one more mapping, for change detection; 'r': the MADV_DONTDUMP
 * mapping replaced by a private memfd mapping with the same range and
 * permissions. */
static int kinds_cmd(struct tu_kid *k, char cmd)
{
	if (cmd == 'm')
		mmap(NULL, PG, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (cmd == 'r') {
		const int fd = memfd_create("replacement", MFD_CLOEXEC);

		if (ftruncate(fd, 4 * PG))
			return -errno;
		mmap((void *)(uintptr_t)k->shm->addr[M_DONTDUMP], 4 * PG,
		     PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, 0);
		close(fd);
	}
	k->shm->why[0] = cmd; /* seen */
	return 0;
}

static void kinds_kid(struct tu_kid *k)
{
	int fd;

	snprintf(file_path, sizeof(file_path), "target-maps-%d.tmp",
		 (int)getpid());
	fd = open(file_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 4 * PG), 0);
	close(fd);
	have_hugetlb = tu_hugetlb_reserve(1);
	memset(k, 0, sizeof(*k));
	k->setup = kinds_setup;
	k->cmd = kinds_cmd;
	tu_kid_start(k, 0, 0, 0);
	unlink(file_path);
}

static const struct bgs_target_map *at(const struct bgs_target_maps *m,
				       const struct tu_kid *k, int slot)
{
	const uint64_t addr = k->shm->addr[slot];
	const struct bgs_target_map *map;

	if (addr == 0 || addr == (uint64_t)-1)
		fail_msg("the kid could not make mapping %d", slot);
	map = bgs_target_maps_find(m, addr);
	if (!map)
		fail_msg("no mapping at %#" PRIx64 " (slot %d)", addr, slot);
	return map;
}

static void expect(const struct bgs_target_maps *m, const struct tu_kid *k,
		   int slot, enum bgs_target_kind kind,
		   enum bgs_target_action action, uint32_t hazards)
{
	const struct bgs_target_map *map = at(m, k, slot);

	if (map->kind != kind || map->action != action ||
	    (map->hazards & hazards) != hazards)
		fail_msg("slot %d: %s is %s/%s hazards %#x (%s)", slot,
			 map->name, bgs_target_kind_name(map->kind),
			 bgs_target_action_name(map->action), map->hazards,
			 map->why);
}

static const struct bgs_target_map *by_label(const struct bgs_target_maps *m,
					     const char *part,
					     enum bgs_target_action action)
{
	size_t i;

	for (i = 0; i < m->n; i++)
		if (strstr(m->v[i].label, part) && m->v[i].action == action)
			return &m->v[i];
	return NULL;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void expect_unique_names(const struct bgs_target_maps *m)
{
	char **names = calloc(m->n, sizeof(*names));
	char want[96];
	size_t i;

	for (i = 0; i < m->n; i++) {
		names[i] = m->v[i].name;
		snprintf(want, sizeof(want), "@%" PRIx64, m->v[i].start);
		assert_non_null(strstr(m->v[i].name, want));
	}
	qsort(names, m->n, sizeof(*names), cmp_names);
	for (i = 1; i < m->n; i++)
		assert_string_not_equal(names[i - 1], names[i]);
	free(names);
}

static void check_special(const struct bgs_target_maps *m)
{
	const struct bgs_target_map *map = by_label(m, "[vdso]", BGS_TACT_SKIP);

	assert_non_null(map);
	assert_int_equal(map->kind, BGS_TKIND_SPECIAL);
	/* libc: text is left to the file, .data and relro are copied. */
	assert_non_null(by_label(m, "libc.so", BGS_TACT_SKIP));
	assert_non_null(by_label(m, "libc.so", BGS_TACT_COPY));
}

static void check_named(const struct bgs_target_maps *m, const struct tu_kid *k)
{
	char want[64];

	snprintf(want, sizeof(want), "anon@%" PRIx64, k->shm->addr[M_ANON]);
	assert_string_equal(at(m, k, M_ANON)->name, want);
	assert_string_equal(at(m, k, M_HEAP)->label, "[heap]");
	assert_string_equal(at(m, k, M_STACK)->label, "[stack]");
	assert_non_null(strstr(at(m, k, M_FILE_PRIV)->label, file_path));
	assert_true(at(m, k, M_MEMFD)->deleted);
	assert_non_null(strstr(at(m, k, M_MEMFD)->name, "/memfd:bgsnap-test@"));
	assert_true(at(m, k, M_THP)->thp_eligible);
	assert_false(at(m, k, M_ANON)->thp_eligible); /* THP is madvise */
}

/* A COPY mapping as a whole: file pages and the page of its own. */
static void check_copy(struct bgs_target *t, const struct bgs_target_maps *m,
		       const struct tu_kid *k)
{
	const struct bgs_target_map *map = at(m, k, M_FILE_PRIV);
	const size_t len = map->end - map->start;
	char *buf = malloc(len);

	assert_int_equal(map->action, BGS_TACT_COPY);
	memset(buf, 0x77, len);
	assert_int_equal(bgs_target_copy_map(t, map, buf), 0);
	assert_int_equal(buf[0], 0);
	assert_int_equal(buf[PG], 1);
	assert_int_equal(buf[len - 1], 0);
	free(buf);
}

static void test_kinds_of_a_live_target(void **state)
{
	struct bgs_target_maps m;
	struct bgs_target t;
	struct tu_kid k;
	uint64_t t0;

	(void)state;
	kinds_kid(&k);
	assert_int_equal(bgs_target_open(&t, k.pid), 0);
	t0 = tu_now_ns();
	assert_int_equal(bgs_target_maps_read(&t, &m), 0);
	fprintf(stderr, "# %zu mappings read and classified in %.0f us\n", m.n,
		(tu_now_ns() - t0) / 1e3);
	expect(&m, &k, M_ANON, BGS_TKIND_ANON, BGS_TACT_PROTECT, 0);
	expect(&m, &k, M_HEAP, BGS_TKIND_ANON, BGS_TACT_PROTECT, 0);
	expect(&m, &k, M_STACK, BGS_TKIND_ANON, BGS_TACT_PROTECT, 0);
	expect(&m, &k, M_THP, BGS_TKIND_ANON, BGS_TACT_PROTECT, 0);
	expect(&m, &k, M_MEMFD, BGS_TKIND_SHMEM, BGS_TACT_PROTECT,
	       BGS_THZ_SHARED);
	expect(&m, &k, M_DEVSHM, BGS_TKIND_SHMEM, BGS_TACT_PROTECT, 0);
	expect(&m, &k, M_SYSV, BGS_TKIND_SHMEM, BGS_TACT_PROTECT, 0);
	expect(&m, &k, M_SHARED_ANON, BGS_TKIND_SHMEM, BGS_TACT_PROTECT,
	       BGS_THZ_SHARED | BGS_THZ_SHARED_ANON);
	expect(&m, &k, M_FILE_PRIV, BGS_TKIND_FILE_PRIVATE, BGS_TACT_COPY, 0);
	expect(&m, &k, M_FILE_RO, BGS_TKIND_FILE, BGS_TACT_SKIP, 0);
	expect(&m, &k, M_FILE_SHARED, BGS_TKIND_FILE, BGS_TACT_SKIP,
	       BGS_THZ_SHARED);
	expect(&m, &k, M_GUARD, BGS_TKIND_ANON, BGS_TACT_SKIP, 0);
	expect(&m, &k, M_KSM, BGS_TKIND_ANON, BGS_TACT_PROTECT, BGS_THZ_KSM);
	expect(&m, &k, M_UFFD, BGS_TKIND_ANON, BGS_TACT_PROTECT, BGS_THZ_UFFD);
	expect(&m, &k, M_DONTDUMP, BGS_TKIND_ANON, BGS_TACT_SKIP,
	       BGS_THZ_DONTDUMP);
	if (have_hugetlb) {
		expect(&m, &k, M_HUGETLB, BGS_TKIND_HUGETLB, BGS_TACT_PROTECT,
		       0);
		assert_int_equal(at(&m, &k, M_HUGETLB)->page_size, 2 * MB);
	} else {
		fprintf(stderr, "# no huge pages: hugetlb not checked\n");
	}
	check_named(&m, &k);
	check_special(&m);
	expect_unique_names(&m);
	check_copy(&t, &m, &k);
	bgs_target_maps_free(&m);
	bgs_target_close(&t);
	assert_int_equal(tu_kid_finish(&k, 5000), 0);
}

static void test_filters_and_changes(void **state)
{
	const char *inc[2], *exc[1];
	struct bgs_target_maps m;
	struct bgs_target t;
	struct tu_kid k;
	char range[64];
	uint64_t t0;
	size_t i;

	(void)state;
	kinds_kid(&k);
	assert_int_equal(bgs_target_open(&t, k.pid), 0);
	assert_int_equal(bgs_target_maps_read(&t, &m), 0);

	/* Anonymous mappings and the MADV_DONTDUMP one by name, minus the
	 * KSM one by its address range. */
	inc[0] = "anon@*";
	inc[1] = at(&m, &k, M_DONTDUMP)->name;
	snprintf(range, sizeof(range), "0x%" PRIx64 "-%" PRIx64,
		 k.shm->addr[M_KSM], k.shm->addr[M_KSM] + 1);
	exc[0] = range;
	assert_int_equal(bgs_target_maps_filter(&m, inc, 2, exc, 1), 0);
	assert_false(at(&m, &k, M_ANON)->excluded);
	assert_true(at(&m, &k, M_KSM)->excluded);
	assert_true(at(&m, &k, M_HEAP)->excluded);
	assert_true(at(&m, &k, M_MEMFD)->excluded);
	assert_false(at(&m, &k, M_DONTDUMP)->excluded);
	assert_int_equal(at(&m, &k, M_DONTDUMP)->action, BGS_TACT_PROTECT);
	for (i = 0; i < m.n; i++)
		if (!m.v[i].excluded)
			assert_true(!strcmp(m.v[i].label, "anon"));

	/* Without includes, dontdump is skipped again; a bad range fails. */
	assert_int_equal(bgs_target_maps_filter(&m, NULL, 0, NULL, 0), 0);
	assert_int_equal(at(&m, &k, M_DONTDUMP)->action, BGS_TACT_SKIP);
	assert_false(at(&m, &k, M_HEAP)->excluded);
	exc[0] = "0x2000-0x1000";
	assert_int_equal(bgs_target_maps_filter(&m, NULL, 0, exc, 1), -EINVAL);

	t0 = tu_now_ns();
	assert_int_equal(bgs_target_maps_changed(&t, &m), 0);
	fprintf(stderr, "# maps unchanged: checked in %.0f us\n",
		(tu_now_ns() - t0) / 1e3);
	tu_kid_send(&k, 'm');
	for (i = 0; i < 2000 && k.shm->why[0] != 'm'; i++)
		tu_sleep_ms(1);
	assert_int_equal(bgs_target_maps_changed(&t, &m), 1);

	/* Another mapping at the same place, with the same permissions. */
	bgs_target_maps_free(&m);
	assert_int_equal(bgs_target_maps_read(&t, &m), 0);
	assert_int_equal(bgs_target_maps_changed(&t, &m), 0);
	tu_kid_send(&k, 'r');
	for (i = 0; i < 2000 && k.shm->why[0] != 'r'; i++)
		tu_sleep_ms(1);
	assert_int_equal(bgs_target_maps_changed(&t, &m), 1);
	bgs_target_maps_free(&m);
	bgs_target_close(&t);
	assert_int_equal(tu_kid_finish(&k, 5000), 0);
}

/* A save right after bgsnap_target_pid() listed the mappings does not walk
 * smaps again (50-90 ms at 4 GiB); one made later does. */
static void test_mappings_read_once_per_save(void **state)
{
	struct tu_kid k = { 0 };
	struct bgsnap *h;
	char path[256];
	uint64_t first;

	(void)state;
	snprintf(path, sizeof(path), "%s/once.bgs", tu_tmpdir());
	tu_kid_start(&k, 1, 0, 1);
	assert_int_equal(bgsnap_new(&h), 0);
	assert_int_equal(bgsnap_target_pid(h, k.pid, NULL), 0);
	first = h->maps_read_ns;
	assert_true(first != 0);
	assert_int_equal(bgsnap_save(h, path, NULL), 0);
	assert_true(h->maps_read_ns == first);
	tu_sleep_ms(BGS_MAPS_FRESH_NS / 1000000 + 50);
	assert_int_equal(bgsnap_save(h, path, NULL), 0);
	assert_true(h->maps_read_ns > first);
	bgsnap_free(h);
	unlink(path);
	assert_int_equal(tu_kid_finish(&k, 5000), 0);
}

/* What no test program can map. */
static const char synthetic[] =
	"7f0000000000-7f0000001000 rw-s 00000000 00:05 123   /dev/mem\n"
	"Rss:                   4 kB\n"
	"VmFlags: rd wr sh mr mw me ms io pf dd\n"
	"7f0000200000-7f0000400000 rw-s 00000000 00:10 77   /mnt/huge/f "
	"(deleted)\n"
	"KernelPageSize:     2048 kB\n"
	"VmFlags: rd wr sh mr mw me ms ht\n"
	"7f0000400000-7f0000401000 rw-p 00000000 00:00 0 \n"
	"VmFlags: rd wr mr mw me nr wf dd dp\n"
	"7f0000401000-7f0000402000 rw-p 00000000 00:00 0   [anon:glibc: "
	"malloc]\n"
	"Anonymous:             4 kB\n"
	"VmFlags: rd wr mr mw me um lo\n"
	"7f0000402000-7f0000403000 r--p 00001000 08:01 99   /usr/lib/x.so\n"
	"Anonymous:             4 kB\n"
	"VmFlags: rd mr mw me\n"
	"7f0000403000-7f0000404000 rw-s 00000000 00:01 5   /dev/zero "
	"(deleted)\n"
	"VmFlags: rd wr sh mr mw me ms ui\n"
	"ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0   [vsyscall]\n"
	"VmFlags: ex\n";

static void test_kinds_from_text(void **state)
{
	struct bgs_target_maps m;
	const struct bgs_target_map *v;

	(void)state;
	assert_int_equal(
		bgs_target_maps_parse(synthetic, sizeof(synthetic) - 1, 0, &m),
		0);
	assert_int_equal(m.n, 7);
	v = m.v;
	assert_int_equal(v[0].kind, BGS_TKIND_IO);
	assert_int_equal(v[0].action, BGS_TACT_SKIP);
	assert_int_equal(v[1].kind, BGS_TKIND_HUGETLB);
	assert_int_equal(v[1].page_size, 2 * MB);
	assert_string_equal(v[1].name, "/mnt/huge/f@7f0000200000");
	assert_int_equal(v[2].action, BGS_TACT_SKIP);
	assert_non_null(strstr(v[2].why, "droppable"));
	assert_int_equal(v[3].kind, BGS_TKIND_ANON);
	assert_true(v[3].hazards & BGS_THZ_UFFD);
	assert_true(v[3].hazards & BGS_THZ_LOCKED);
	assert_string_equal(v[3].label, "[anon:glibc: malloc]");
	assert_int_equal(v[4].kind, BGS_TKIND_FILE_PRIVATE); /* relro */
	assert_int_equal(v[4].action, BGS_TACT_COPY);
	assert_int_equal(v[5].kind, BGS_TKIND_SHMEM);
	assert_true(v[5].hazards & BGS_THZ_SHARED_ANON);
	assert_true(v[5].hazards & BGS_THZ_UFFD);
	assert_int_equal(v[6].kind, BGS_TKIND_SPECIAL);
	assert_ptr_equal(bgs_target_maps_find(&m, 0x7f0000401800), &v[3]);
	assert_null(bgs_target_maps_find(&m, 0x7f0000500000));
	bgs_target_maps_free(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kinds_of_a_live_target),
		cmocka_unit_test(test_filters_and_changes),
		cmocka_unit_test(test_mappings_read_once_per_save),
		cmocka_unit_test(test_kinds_from_text),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
