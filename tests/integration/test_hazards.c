/* SPDX-License-Identifier: MIT */
/*
 * Hazards are refused or detected, never saved wrong (kernel-uffd.md §0,
 * §3, §10), and every failing save ends clean: nothing protected, no file,
 * the owner running.
 */
#include "testutil.h"
#include "snap_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MiB (1UL << 20)
#define LEN (32 * MiB)

static char path[256];

static int setup(void **state)
{
	(void)state;
	snprintf(path, sizeof(path), "%s/hazard.bgs", tu_tmpdir());
	return 0;
}

static char *filled(size_t len)
{
	char *p = tu_map_anon(len, false);

	for (size_t i = 0; i < len; i += 4096)
		snprintf(p + i, 4096, "page %zu", i / 4096);
	return p;
}

static void expect_clean(char *mem, size_t len)
{
	tu_assert_unprotected(mem, len);
	assert_int_equal(access(path, F_OK), -1);
	tu_assert_no_file_like(tu_tmpdir(), "hazard.bgs");
	mem[0] = 'x'; /* the owner can still write */
}

/* A save whose resume callback does @act to the memory right after the
 * snapshot instant, before the copier can save it. */
struct during {
	char *mem;
	void (*act)(struct during *d);
	void *moved;
	struct bgsnap *h; /* set by save_with */
	unsigned threads; /* compression threads of the save */
};

static void during_resume(void *arg)
{
	struct during *d = arg;

	d->act(d);
}

static int save_with(char *mem, struct during *d, struct bgsnap **hp)
{
	struct bgsnap_save_opts o = { .size = sizeof(o),
				      .resume = during_resume,
				      .arg = d,
				      .threads = d->threads };
	struct bgsnap *h;
	int r;

	assert_int_equal(bgsnap_new(&h), 0);
	assert_int_equal(bgsnap_add_region(h, "ram", mem, LEN), 0);
	d->h = h;
	r = bgsnap_save(h, path, &o);
	fprintf(stderr, "# %s: %s\n", bgsnap_strerror(r), bgsnap_last_error(h));
	*hp = h;
	return r;
}

static void act_unmap(struct during *d)
{
	munmap(d->mem + LEN - MiB, MiB);
}

static void act_dontneed(struct during *d)
{
	madvise(d->mem + LEN - MiB, MiB, MADV_DONTNEED);
}

static void act_mremap(struct during *d)
{
	void *to =
		mmap(NULL, MiB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	d->moved = mremap(d->mem + LEN - MiB, MiB, MiB,
			  MREMAP_MAYMOVE | MREMAP_FIXED, to);
	assert_true(d->moved != MAP_FAILED);
}

/* A region unmapped right after arming (with @threads compression
 * threads: a failed read of a job's run ends the save too). */
static void unmap_during_save(unsigned threads)
{
	char *mem = filled(LEN);
	struct during d = { .mem = mem, .act = act_unmap, .threads = threads };
	struct bgsnap *h;

	assert_int_equal(save_with(mem, &d, &h), BGSNAP_EHAZARD);
	assert_non_null(strstr(bgsnap_last_error(h), "'ram'"));
	expect_clean(mem, LEN - MiB);
	bgsnap_free(h);
	tu_unmap(mem, LEN - MiB);
}

static void test_unmap_during_save(void **state)
{
	(void)state;
	unmap_during_save(0);
}

static void test_unmap_during_save_threads(void **state)
{
	(void)state;
	unmap_during_save(2);
}

static void act_protect_none(struct during *d)
{
	assert_int_equal(mprotect(d->mem + LEN - MiB, MiB, PROT_NONE), 0);
}

/* A save during which @d->act makes memory in the last MiB PROT_NONE:
 * it succeeds, nothing stays protected, and the snapshot is the memory
 * (made readable again). */
static void expect_saved_whole(struct during *d)
{
	char *back = malloc(LEN);
	struct bgsnap *h;

	assert_non_null(back);
	assert_int_equal(save_with(d->mem, d, &h), 0);
	assert_int_equal(
		mprotect(d->mem + LEN - MiB, MiB, PROT_READ | PROT_WRITE), 0);
	tu_assert_unprotected(d->mem, LEN);
	tu_snapshot_region(path, "ram", back, LEN);
	assert_memory_equal(back, d->mem, LEN);
	bgsnap_free(h);
	free(back);
	unlink(path);
	tu_unmap(d->mem, LEN);
}

/*
 * Not a hazard: memory made PROT_NONE after the snapshot instant still
 * holds its data, and is saved. The copier's read of it in place faults,
 * and comes back (the guard, snap_guard.c); the kernel then reads it as a
 * debugger would. Without the guard the process dies of a SIGSEGV.
 */
static void protect_none_during_save(unsigned threads)
{
	struct during d = { .mem = filled(LEN),
			    .act = act_protect_none,
			    .threads = threads };

	expect_saved_whole(&d);
}

static void test_protect_none_during_save(void **state)
{
	(void)state;
	protect_none_during_save(0);
}

static void test_protect_none_during_save_threads(void **state)
{
	(void)state;
	protect_none_during_save(2);
}

/* Two zero pages, then pages with data, the last four of a chunk made
 * PROT_NONE: the writer stores the zero pages as a record of their own
 * before a read faults in the same chunk. */
#define CHUNK_AT (LEN - MiB)

static void act_protect_mid_chunk(struct during *d)
{
	assert_int_equal(mprotect(d->mem + CHUNK_AT + 4 * 4096, MiB - 4 * 4096,
				  PROT_NONE),
			 0);
}

/*
 * A read in place that faults after the writer appended part of its run:
 * that part stays, the rest is read through the kernel, and the snapshot
 * is whole (it failed with EHAZARD when any part was appended).
 */
static void test_protect_none_mid_chunk(void **state)
{
	struct during d = { .mem = filled(LEN), .act = act_protect_mid_chunk };

	(void)state;
	memset(d.mem + CHUNK_AT, 0, 2 * 4096); /* populated, and zero */
	expect_saved_whole(&d);
}

static void test_dontneed_during_save(void **state)
{
	char *mem = filled(LEN);
	struct during d = { .mem = mem, .act = act_dontneed };
	struct bgsnap *h;

	(void)state;
	assert_int_equal(save_with(mem, &d, &h), BGSNAP_EHAZARD);
	assert_non_null(strstr(bgsnap_last_error(h), "discarded"));
	expect_clean(mem, LEN);
	bgsnap_free(h);
	tu_unmap(mem, LEN);
}

static void test_mremap_during_save(void **state)
{
	char *mem = filled(LEN);
	struct during d = { .mem = mem, .act = act_mremap };
	struct bgsnap *h;

	(void)state;
	assert_int_equal(save_with(mem, &d, &h), BGSNAP_EHAZARD);
	assert_non_null(strstr(bgsnap_last_error(h), "mremap"));
	expect_clean(mem, LEN - MiB);
	tu_assert_unprotected(d.moved, MiB);
	bgsnap_free(h);
	tu_unmap(mem, LEN - MiB);
	tu_unmap(d.moved, MiB);
}

/* ---- KSM ----------------------------------------------------------------- */

static long ksm_read(const char *knob)
{
	char p[128];
	long v = -1;
	FILE *f;

	snprintf(p, sizeof(p), "/sys/kernel/mm/ksm/%s", knob);
	f = fopen(p, "re");
	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

static void ksm_write(const char *knob, long v)
{
	char p[128];
	FILE *f;

	snprintf(p, sizeof(p), "/sys/kernel/mm/ksm/%s", knob);
	f = fopen(p, "we");
	assert_non_null(f);
	fprintf(f, "%ld\n", v);
	fclose(f);
}

static long ksm_old_run, ksm_old_scan, ksm_old_sleep;

static void ksm_save_settings(void)
{
	tu_need_root("KSM settings in /sys/kernel/mm/ksm");
	if (ksm_read("run") < 0)
		tu_skip_missing("KSM (CONFIG_KSM: no /sys/kernel/mm/ksm/run)");
	ksm_old_run = ksm_read("run");
	ksm_old_scan = ksm_read("pages_to_scan");
	ksm_old_sleep = ksm_read("sleep_millisecs");
}

static void ksm_restore_settings(void)
{
	ksm_write("run", 2); /* unmerge everything */
	ksm_write("run", ksm_old_run == 1 ? 1 : 0);
	ksm_write("pages_to_scan", ksm_old_scan);
	ksm_write("sleep_millisecs", ksm_old_sleep);
}

static char *mergeable(size_t len)
{
	char *p = tu_map_anon(len, false);

	memset(p, 'k', len); /* identical pages: all mergeable */
	assert_int_equal(madvise(p, len, MADV_MERGEABLE), 0);
	return p;
}

static void test_ksm_running_refused(void **state)
{
	char *mem;
	struct bgsnap *h;

	(void)state;
	ksm_save_settings();
	mem = mergeable(4 * MiB);
	ksm_write("run", 1);
	assert_int_equal(bgsnap_new(&h), 0);
	assert_int_equal(bgsnap_add_region(h, "ram", mem, 4 * MiB),
			 BGSNAP_EUNSAFE);
	assert_non_null(strstr(bgsnap_last_error(h), "MERGEABLE"));
	ksm_restore_settings();
	bgsnap_free(h);
	tu_unmap(mem, 4 * MiB);
}

/* ksmd started after the instant merges protected pages and drops their
 * protection: verify-after-copy must catch it. */
static void ksm_merge(struct during *d)
{
	(void)d;
	ksm_write("pages_to_scan", 100000);
	ksm_write("sleep_millisecs", 0);
	ksm_write("run", 1);
	for (int i = 0; i < 300 && ksm_read("pages_sharing") < 1000; i++)
		tu_sleep_ms(10);
}

static void test_ksm_merge_detected(void **state)
{
	char *mem;
	struct during d = { .act = ksm_merge };
	struct bgsnap *h;

	(void)state;
	ksm_save_settings();
	ksm_write("run", 0);
	mem = mergeable(LEN);
	d.mem = mem;
	assert_int_equal(save_with(mem, &d, &h), BGSNAP_EINCONSISTENT);
	assert_true(ksm_read("pages_sharing") > 0);
	ksm_restore_settings();
	expect_clean(mem, LEN);
	bgsnap_free(h);
	tu_unmap(mem, LEN);
}

/* ---- refused before anything is armed ---------------------------------- */

static void test_file_mapping_refused(void **state)
{
	char fpath[256];
	struct bgsnap *h;
	int fd;
	void *p;

	(void)state;
	snprintf(fpath, sizeof(fpath), "%s/file.data", tu_tmpdir());
	fd = open(fpath, O_RDWR | O_CREAT, 0600);
	assert_int_equal(ftruncate(fd, MiB), 0);
	p = mmap(NULL, MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	assert_int_equal(bgsnap_new(&h), 0);
	assert_int_equal(bgsnap_add_region(h, "file", p, MiB), BGSNAP_EUNSAFE);
	assert_non_null(strstr(bgsnap_last_error(h), "file mapping"));
	bgsnap_free(h);
	munmap(p, MiB);
	close(fd);
}

static void test_mixed_kinds_refused(void **state)
{
	char *p = tu_map_anon(2 * 4096, false);
	int fd;
	struct bgsnap *h;

	(void)state;
	assert_non_null(tu_map_memfd(4096, &fd));
	assert_true(mmap(p + 4096, 4096, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_FIXED, fd, 0) != MAP_FAILED);
	assert_int_equal(bgsnap_new(&h), 0);
	assert_int_equal(bgsnap_add_region(h, "mixed", p, 2 * 4096),
			 BGSNAP_EUNSAFE);
	assert_non_null(strstr(bgsnap_last_error(h), "mixes"));
	bgsnap_free(h);
	tu_unmap(p, 2 * 4096);
	close(fd);
}

static void test_foreign_uffd_refused(void **state)
{
	char *mem = filled(4 * MiB);
	struct bgs_uffd other;
	struct bgsnap *h;

	(void)state;
	assert_int_equal(bgsnap_new(&h), 0);
	assert_int_equal(bgsnap_add_region(h, "ram", mem, 4 * MiB), 0);
	/* Someone else takes the range after it was added. */
	tu_open_wp(&other);
	assert_int_equal(bgs_uffd_register(&other, (uint64_t)(uintptr_t)mem,
					   4 * MiB, UFFDIO_REGISTER_MODE_WP,
					   NULL),
			 0);
	assert_int_equal(bgsnap_save(h, path, NULL), BGSNAP_EUNSAFE);
	assert_non_null(strstr(bgsnap_last_error(h), "userfaultfd"));
	expect_clean(mem, 4 * MiB);
	bgsnap_free(h);
	/* ... and a range already held is refused when added. */
	assert_int_equal(bgsnap_new(&h), 0);
	assert_int_equal(bgsnap_add_region(h, "ram", mem, 4 * MiB),
			 BGSNAP_EUNSAFE);
	bgsnap_free(h);
	bgs_uffd_close(&other);
	tu_unmap(mem, 4 * MiB);
}

static void test_unmapped_region_refused(void **state)
{
	char *mem = filled(4 * MiB);
	struct bgsnap *h;

	(void)state;
	assert_int_equal(bgsnap_new(&h), 0);
	assert_int_equal(bgsnap_add_region(h, "ram", mem, 4 * MiB), 0);
	tu_unmap(mem, 4 * MiB);
	/* The range may now be reused by anyone, bgsnap included. */
	assert_int_equal(bgsnap_save(h, path, NULL), -EFAULT);
	assert_int_equal(access(path, F_OK), -1);
	bgsnap_free(h);
}

/* A copier that writes registered memory would deadlock; the fault thread
 * sees the copier's own thread id and fails the save instead. */
static void test_copier_self_fault_detected(void **state)
{
	char *mem = filled(LEN);
	struct bgsnap *h;

	(void)state;
	assert_int_equal(bgsnap_new(&h), 0);
	h->test_hooks.copier_poke = mem + LEN - 4096;
	assert_int_equal(bgsnap_add_region(h, "ram", mem, LEN), 0);
	assert_int_equal(bgsnap_save(h, path, NULL), BGSNAP_EUNSAFE);
	assert_non_null(strstr(bgsnap_last_error(h), "copier"));
	expect_clean(mem, LEN);
	bgsnap_free(h);
	tu_unmap(mem, LEN);
}

/* A writer over every page of the region, once, in its own thread. */
struct writer {
	pthread_t t;
	char *mem;
	_Atomic bool done;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;

	for (size_t i = 0; i < LEN; i += 4096)
		w->mem[i + 100] = 'w';
	atomic_store(&w->done, true);
	return NULL;
}

/* The same over the last MiB of the region only. */
static void *moved_writer_main(void *arg)
{
	struct writer *w = arg;

	for (size_t i = LEN - MiB; i < LEN; i += 4096)
		w->mem[i + 100] = 'w';
	atomic_store(&w->done, true);
	return NULL;
}

static struct writer fault_writer;

static void act_break_fault_thread(struct during *d)
{
	atomic_store(&d->h->test_hooks.fault_read_error, -EBADF);
	fault_writer.mem = d->mem;
	atomic_init(&fault_writer.done, false);
	assert_int_equal(pthread_create(&fault_writer.t, NULL, writer_main,
					&fault_writer),
			 0);
}

/* The fault thread's read of the uffd fails while a writer faults: the
 * save fails saying so, the writer is let go, nothing stays protected,
 * and the handle saves again. (Before, the thread left silently and the
 * save's end waited for it for ever: the alarm ends such a run.) */
static void test_fault_thread_failure(void **state)
{
	char *mem = filled(LEN);
	struct during d = { .mem = mem, .act = act_break_fault_thread };
	struct bgsnap *h;

	(void)state;
	alarm(60);
	assert_int_equal(save_with(mem, &d, &h), -EBADF);
	assert_non_null(strstr(bgsnap_last_error(h), "fault thread"));
	for (int i = 0; i < 5000 && !atomic_load(&fault_writer.done); i++)
		tu_sleep_ms(1);
	assert_true(atomic_load(&fault_writer.done));
	pthread_join(fault_writer.t, NULL);
	expect_clean(mem, LEN);
	assert_int_equal(bgsnap_save(h, path, NULL), 0);
	alarm(0);
	assert_int_equal(unlink(path), 0);
	bgsnap_free(h);
	tu_unmap(mem, LEN);
}

/* The same while tracking goes on after a save, with nobody to end it:
 * the pages stay protected, and the writer must still be let go. */
static void test_fault_thread_failure_tracking(void **state)
{
	const struct bgsnap_save_opts o = {
		.size = sizeof(o),
		.flags = BGSNAP_SAVE_KEEP_TRACKING,
	};
	char *mem = filled(LEN);
	struct bgsnap *h;

	(void)state;
	alarm(60);
	assert_int_equal(bgsnap_new(&h), 0);
	assert_int_equal(bgsnap_add_region(h, "ram", mem, LEN), 0);
	assert_int_equal(bgsnap_save(h, path, &o), 0);
	atomic_store(&h->test_hooks.fault_read_error, -EIO);
	fault_writer.mem = mem;
	atomic_init(&fault_writer.done, false);
	assert_int_equal(pthread_create(&fault_writer.t, NULL, writer_main,
					&fault_writer),
			 0);
	for (int i = 0; i < 5000 && !atomic_load(&fault_writer.done); i++)
		tu_sleep_ms(1);
	assert_true(atomic_load(&fault_writer.done));
	pthread_join(fault_writer.t, NULL);
	/* The next save says why it cannot track from here. */
	assert_true(bgsnap_save(h, path, &o) < 0);
	assert_non_null(strstr(bgsnap_last_error(h), "fault thread"));
	alarm(0);
	bgsnap_free(h);
	tu_assert_unprotected(mem, LEN);
	unlink(path);
	tu_unmap(mem, LEN);
}

/* Pages a tracked save leaves protected, moved by mremap to where no
 * region is: a write there must go through, not fault for ever. */
static void test_write_to_moved_tracked_pages(void **state)
{
	const struct bgsnap_save_opts o = {
		.size = sizeof(o),
		.flags = BGSNAP_SAVE_KEEP_TRACKING,
	};
	char *mem = filled(LEN);
	struct writer w = { 0 };
	void *to =
		mmap(NULL, MiB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct bgsnap *h;
	char *moved;

	(void)state;
	assert_int_equal(bgsnap_new(&h), 0);
	assert_int_equal(bgsnap_add_region(h, "ram", mem, LEN), 0);
	assert_int_equal(bgsnap_save(h, path, &o), 0);
	moved = mremap(mem + LEN - MiB, MiB, MiB, MREMAP_MAYMOVE | MREMAP_FIXED,
		       to);
	assert_true(moved != MAP_FAILED);
	w.mem = moved -
		(LEN - MiB); /* the writer's last MiB is the moved one */
	atomic_init(&w.done, false);
	assert_int_equal(pthread_create(&w.t, NULL, moved_writer_main, &w), 0);
	for (int i = 0; i < 3000 && !atomic_load(&w.done); i++)
		tu_sleep_ms(1);
	/* One fault a page at most: a writer woken on a page still
	 * protected faults again and again. */
	assert_true(atomic_load(&h->monitor->strays) <= MiB / 4096);
	bgsnap_track_stop(h); /* lets a stuck writer go, then ... */
	pthread_join(w.t, NULL);
	assert_true(atomic_load(&w.done)); /* ... it must not have been */
	assert_int_equal(moved[100], 'w');
	assert_int_equal(unlink(path), 0);
	bgsnap_free(h);
	munmap(moved, MiB);
	tu_unmap(mem, LEN - MiB);
}

static int failing_pause(void *arg)
{
	(void)arg;
	return -EIO;
}

static void test_pause_failure(void **state)
{
	char *mem = filled(4 * MiB);
	struct bgsnap_save_opts o = { .size = sizeof(o),
				      .pause = failing_pause };
	struct bgsnap *h;

	(void)state;
	assert_int_equal(bgsnap_new(&h), 0);
	assert_int_equal(bgsnap_add_region(h, "ram", mem, 4 * MiB), 0);
	assert_int_equal(bgsnap_save(h, path, &o), -EIO);
	assert_non_null(strstr(bgsnap_last_error(h), "pause"));
	expect_clean(mem, 4 * MiB);
	/* The handle is usable again. */
	assert_int_equal(bgsnap_save(h, path, NULL), 0);
	assert_int_equal(unlink(path), 0);
	bgsnap_free(h);
	tu_unmap(mem, 4 * MiB);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_unmap_during_save, setup),
		cmocka_unit_test_setup(test_unmap_during_save_threads, setup),
		cmocka_unit_test_setup(test_protect_none_during_save, setup),
		cmocka_unit_test_setup(test_protect_none_during_save_threads,
				       setup),
		cmocka_unit_test_setup(test_protect_none_mid_chunk, setup),
		cmocka_unit_test_setup(test_dontneed_during_save, setup),
		cmocka_unit_test_setup(test_mremap_during_save, setup),
		cmocka_unit_test_setup(test_ksm_running_refused, setup),
		cmocka_unit_test_setup(test_ksm_merge_detected, setup),
		cmocka_unit_test_setup(test_file_mapping_refused, setup),
		cmocka_unit_test_setup(test_mixed_kinds_refused, setup),
		cmocka_unit_test_setup(test_foreign_uffd_refused, setup),
		cmocka_unit_test_setup(test_unmapped_region_refused, setup),
		cmocka_unit_test_setup(test_copier_self_fault_detected, setup),
		cmocka_unit_test_setup(test_fault_thread_failure, setup),
		cmocka_unit_test_setup(test_fault_thread_failure_tracking,
				       setup),
		cmocka_unit_test_setup(test_write_to_moved_tracked_pages,
				       setup),
		cmocka_unit_test_setup(test_pause_failure, setup),
	};
	struct bgs_uffd u;

	tu_open_wp(&u);
	bgs_uffd_close(&u);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
