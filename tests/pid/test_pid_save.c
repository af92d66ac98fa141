/* SPDX-License-Identifier: MIT */
/*
 * 'bgsnap save --pid' end to end, through the built binary, against
 * 'bgsnap guest' processes whose writers run during the save:
 *   - every page kind of guest memory; the file verifies ('bgsnap verify')
 *     and the guest's memory exported from it ('bgsnap export') balances
 *     (oracle 2) and holds, byte for byte, what the writers never touch;
 *   - writers held: the snapshot equals the memory exactly (oracle 1);
 *   - '-o -' into a file, refused onto a terminal; --json parses (python3)
 *     and has the stable keys;
 *   - -o never replaces what it must not (issue 13, item 10): a file
 *     without --force, a FIFO, a device or a symlink even with it, the
 *     save's own parent or an ancestor (standard output too);
 *   - the target exits mid-save; SIGINT cancels; a non-root target; a
 *     non-root bgsnap refused with the cause named; bad arguments;
 *   - the true reason for what cannot be a target (issue 13, item 15): a
 *     kernel thread, a thread id, a stopped process; a missing
 *     userfaultfd is exit 4.
 * After every save the guest must answer, make progress in every writer,
 * balance, hold no userfaultfd, have no tracer and no page protected.
 */
#include "pid_util.h"
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#define GUEST_SIZE "64M"
#define SAVE_MS	   60000
#define NOBODY	   65534

static void path_in_dir(char *buf, size_t n, const char *name)
{
	snprintf(buf, n, "%s/%s", pt_dir(), name);
}

static void must_verify(const char *file)
{
	struct pt_run r;

	pt_run(&r, SAVE_MS, -1, "verify", file, "--quiet", NULL);
	if (r.code)
		fail_msg("bgsnap verify %s: exit %d: %s", file, r.code, r.err);
	pt_run_free(&r);
}

/* The guest after a save: alive, consistent, and free of bgsnap. */
static void must_be_unharmed(struct pt_guest *g)
{
	pt_guest_untraced(g);
	pt_guest_unprotected(g);
	pt_guest_healthy(g, 200, 0);
}

static void check_saved_guest(const struct pt_guest *g, const char *file)
{
	uint8_t *image;

	must_verify(file);
	image = pt_export_guest(g, file);
	pt_check_image(g, image);
	free(image);
}

/* ---- under writers, every kind ------------------------------------------- */

/* A save unregisters the memory a slice at a time, which splits its
 * mapping for a while: it must come back whole. */
static void save_kind(const char *kind)
{
	char file[256], pid[16], before[64], after[64];
	struct pt_guest g;
	struct pt_run r;

	path_in_dir(file, sizeof(file), "kind.bgs");
	pt_guest_start(&g, 0, GUEST_SIZE, kind, NULL);
	tu_sleep_ms(200); /* writers well under way */
	pt_guest_mapping(&g, before, sizeof(before));
	snprintf(pid, sizeof(pid), "%d", (int)g.c.pid);
	pt_run(&r, SAVE_MS, -1, "save", "--pid", pid, "-o", file, "--json",
	       NULL);
	if (r.code)
		fail_msg("save --pid of a %s guest: exit %d: %s", kind, r.code,
			 r.err);
	fprintf(stderr, "# %s: %s", kind, r.out);
	assert_true(pt_num(r.out, "pages_total") >= g.len / PT_PAGE);
	assert_true(pt_num(r.out, "blackout_ms") > 0);
	pt_run_free(&r);
	check_saved_guest(&g, file);
	must_be_unharmed(&g);
	pt_guest_mapping(&g, after, sizeof(after));
	assert_string_equal(after, before);
	pt_guest_stop(&g);
	unlink(file);
}

static void test_save_4k(void **state)
{
	(void)state;
	save_kind("4k");
}

static void test_save_thp(void **state)
{
	(void)state;
	save_kind("thp");
}

static void test_save_memfd(void **state)
{
	(void)state;
	save_kind("memfd");
}

/* ---- oracle 1: writers held, the snapshot is the memory ------------------ */

static void test_save_held_exact(void **state)
{
	char file[256], dump[256], pid[16];
	uint8_t *image, *mem;
	struct pt_guest g;
	struct pt_run r;
	size_t len;

	(void)state;
	path_in_dir(file, sizeof(file), "held.bgs");
	path_in_dir(dump, sizeof(dump), "held.raw");
	pt_guest_start(&g, 0, GUEST_SIZE, "4k", NULL);
	tu_sleep_ms(100);
	pt_guest_must(&g, "hold");
	pt_guest_must(&g, "dump %s", dump);
	snprintf(pid, sizeof(pid), "%d", (int)g.c.pid);
	pt_run(&r, SAVE_MS, -1, "save", "-p", pid, "-o", file, "-q", NULL);
	if (r.code)
		fail_msg("save: exit %d: %s", r.code, r.err);
	assert_string_equal(r.out, ""); /* --quiet */
	pt_run_free(&r);
	image = pt_export_guest(&g, file);
	mem = pt_read_file(dump, &len);
	assert_int_equal(len, g.len);
	for (size_t i = 0; i < len; i += PT_PAGE)
		if (memcmp(image + i, mem + i, PT_PAGE))
			fail_msg("page %zu of the snapshot differs from the "
				 "memory it was taken of",
				 i / PT_PAGE);
	pt_check_image(&g, image);
	free(mem);
	free(image);
	pt_guest_must(&g, "release");
	must_be_unharmed(&g);
	pt_guest_stop(&g);
	unlink(file);
	unlink(dump);
}

/*
 * Memory its owner made PROT_NONE while it holds data (a thread's guard
 * page after a debugger read it, a buffer an allocator fenced off) is
 * saved as it is, although process_vm_readv cannot read it.
 */
static void test_save_prot_none_with_data(void **state)
{
	const size_t len = 1 << 20;
	char file[256], pid[16], name[1100], out[256];
	int ready[2];
	uint8_t *image;
	struct pt_run r;
	uint8_t *mem;
	pid_t child;
	size_t got;

	(void)state;
	path_in_dir(file, sizeof(file), "none.bgs");
	path_in_dir(out, sizeof(out), "none.raw");
	mem = mmap(NULL, len, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(mem != MAP_FAILED);
	for (size_t i = 0; i < len; i++)
		mem[i] = (uint8_t)(i * 7 + i / PT_PAGE);
	assert_int_equal(pipe(ready), 0);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (mprotect(mem, len, PROT_NONE))
			_exit(1);
		(void)!write(ready[1], "r", 1);
		for (;;)
			pause();
	}
	assert_int_equal(read(ready[0], name, 1), 1);
	close(ready[0]);
	close(ready[1]);
	snprintf(pid, sizeof(pid), "%d", (int)child);
	pt_run(&r, SAVE_MS, -1, "save", "-p", pid, "-o", file, "-q", NULL);
	if (r.code)
		fail_msg("save: exit %d: %s", r.code, r.err);
	pt_run_free(&r);
	kill(child, SIGKILL);
	assert_int_equal(waitpid(child, NULL, 0), child);
	pt_region_name(file, (uintptr_t)mem, name, sizeof(name));
	pt_run(&r, SAVE_MS, -1, "export", file, "--region", name, "-o", out,
	       "-q", NULL);
	if (r.code)
		fail_msg("export: exit %d: %s", r.code, r.err);
	pt_run_free(&r);
	image = pt_read_file(out, &got);
	assert_int_equal(got, len);
	assert_memory_equal(image, mem, len);
	free(image);
	munmap(mem, len);
	unlink(file);
	unlink(out);
}

/*
 * A save reads a target's pages without taking them from whom it shares
 * them with: after a fork, parent and child share their pages copy-on-
 * write, and reading them must leave them shared (process_vm_readv, which
 * pins each page, gave the target a private copy of each: a save of a
 * process that forked doubled its memory).
 */
static void test_save_keeps_pages_shared(void **state)
{
	const size_t len = 16 << 20;
	char file[256], pid[16];
	struct pt_run r;
	uint8_t *mem;
	int ready[2];
	pid_t child;
	char c;

	(void)state;
	path_in_dir(file, sizeof(file), "shared.bgs");
	mem = mmap(NULL, len, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(mem != MAP_FAILED);
	assert_int_equal(madvise(mem, len, MADV_NOHUGEPAGE), 0);
	for (size_t i = 0; i < len; i += PT_PAGE)
		memset(mem + i, (int)(i / PT_PAGE) | 1, PT_PAGE);
	assert_int_equal(pipe(ready), 0);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		(void)!write(ready[1], "r", 1);
		for (;;)
			pause();
	}
	assert_int_equal(read(ready[0], &c, 1), 1);
	close(ready[0]);
	close(ready[1]);
	tu_assert_still_shared(child, mem, "before the save");
	snprintf(pid, sizeof(pid), "%d", (int)child);
	pt_run(&r, SAVE_MS, -1, "save", "-p", pid, "-o", file, "-q", NULL);
	if (r.code)
		fail_msg("save: exit %d: %s", r.code, r.err);
	pt_run_free(&r);
	tu_assert_still_shared(child, mem, "after the save");
	kill(child, SIGKILL);
	assert_int_equal(waitpid(child, NULL, 0), child);
	munmap(mem, len);
	unlink(file);
}

/* ---- what -o must not replace -------------------------------------------- */

static void save_to(struct pt_run *r, pid_t pid, const char *file,
		    const char *extra1, const char *extra2)
{
	char p[16];

	snprintf(p, sizeof(p), "%d", (int)pid);
	pt_run(r, SAVE_MS, -1, "save", "--pid", p, "-o", file, "-q", extra1,
	       extra2, NULL);
}

/* A save to @file, with @extra (or NULL), refused with one line
 * containing @why; the file there stays as it was (@keep, its bytes,
 * for a regular one). */
static void expect_refused(pid_t pid, const char *file, const char *extra1,
			   const char *extra2, const char *why,
			   const uint8_t *keep, size_t keep_len)
{
	struct pt_run r;
	uint8_t *now;
	size_t len;

	save_to(&r, pid, file, extra1, extra2);
	fprintf(stderr, "# -o %s %s %s: %d %s", file, extra1 ? extra1 : "",
		extra2 ? extra2 : "", r.code, r.err);
	if (r.code != 1)
		fail_msg("save -o %s: exit %d, expected 1: %s", file, r.code,
			 r.err);
	pt_one_error_line(r.err);
	if (!strstr(r.err, why))
		fail_msg("save -o %s: the error does not say '%s': %s", file,
			 why, r.err);
	pt_run_free(&r);
	if (keep) {
		now = pt_read_file(file, &len);
		if (len != keep_len || memcmp(now, keep, len))
			fail_msg("save -o %s changed the file there", file);
		free(now);
	}
	tu_assert_no_file_like(pt_dir(), ".tmp");
}

static void expect_kind(const char *path, mode_t kind)
{
	struct stat st;

	assert_int_equal(lstat(path, &st), 0);
	if ((st.st_mode & S_IFMT) != kind)
		fail_msg("%s was replaced (mode %o)", path, st.st_mode);
}

static void test_output_refused(void **state)
{
	char full[256], incr[256], keep[256], fifo[256], dev[256], link[256];
	static const char precious[] = "precious\n";
	char opt[300];
	uint8_t *full_bytes, *incr_bytes;
	size_t full_len, incr_len;
	struct pt_guest g;
	struct pt_run r;
	int fd;

	(void)state;
	path_in_dir(full, sizeof(full), "own-full.bgs");
	path_in_dir(incr, sizeof(incr), "own-incr.bgs");
	path_in_dir(keep, sizeof(keep), "own-keep");
	path_in_dir(fifo, sizeof(fifo), "own-fifo");
	path_in_dir(dev, sizeof(dev), "own-null");
	path_in_dir(link, sizeof(link), "own-link");
	pt_guest_start(&g, 0, "8M", "4k", NULL);

	/* An existing file: only with --force. */
	fd = open(keep, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, precious, strlen(precious)),
			 (ssize_t)strlen(precious));
	close(fd);
	expect_refused(g.c.pid, keep, NULL, NULL,
		       "exists (--force replaces it)",
		       (const uint8_t *)precious, strlen(precious));
	save_to(&r, g.c.pid, keep, "--force", NULL);
	if (r.code)
		fail_msg("save --force over a file: exit %d: %s", r.code,
			 r.err);
	pt_run_free(&r);
	must_verify(keep);

	/* What is not a regular file: never, not even with --force (the
	 * FIFO, opened, would have blocked: the run's timeout says). */
	assert_int_equal(mkfifo(fifo, 0600), 0);
	expect_refused(g.c.pid, fifo, "--force", NULL, "is a FIFO: refused",
		       NULL, 0);
	expect_kind(fifo, S_IFIFO);
	assert_int_equal(mknod(dev, S_IFCHR | 0600, makedev(1, 3)), 0);
	expect_refused(g.c.pid, dev, "--force", NULL,
		       "is a character device: refused", NULL, 0);
	expect_kind(dev, S_IFCHR);
	assert_int_equal(symlink(keep, link), 0);
	expect_refused(g.c.pid, link, "--force", NULL,
		       "is a symbolic link: refused", NULL, 0);
	expect_kind(link, S_IFLNK);

	/* The save's own chain: never, by inode (a link to it too). */
	save_to(&r, g.c.pid, full, NULL, NULL);
	assert_int_equal(r.code, 0);
	pt_run_free(&r);
	full_bytes = pt_read_file(full, &full_len);
	expect_refused(g.c.pid, full, "--parent", full, "is this save's parent",
		       full_bytes, full_len);
	unlink(link);
	assert_int_equal(symlink(full, link), 0);
	save_to(&r, g.c.pid, incr, "--parent", link);
	if (r.code)
		fail_msg("save --parent: exit %d: %s", r.code, r.err);
	pt_run_free(&r);
	incr_bytes = pt_read_file(incr, &incr_len);
	/* With --force too. */
	snprintf(opt, sizeof(opt), "--parent=%s", incr);
	expect_refused(g.c.pid, incr, "--force", opt, "is this save's parent",
		       incr_bytes, incr_len);
	expect_refused(g.c.pid, full, "--force", opt,
		       "is an ancestor of this save's parent (level 1",
		       full_bytes, full_len);
	must_verify(incr);

	/* Standard output that is the parent ('>> parent.bgs'). */
	fd = open(incr, O_WRONLY | O_APPEND | O_CLOEXEC);
	assert_true(fd >= 0);
	{
		char p[16];

		snprintf(p, sizeof(p), "%d", (int)g.c.pid);
		pt_run(&r, SAVE_MS, fd, "save", "--pid", p, "-o", "-",
		       "--parent", incr, NULL);
	}
	close(fd);
	assert_int_equal(r.code, 1);
	pt_one_error_line(r.err);
	assert_non_null(strstr(r.err, "standard output: is this save's "
				      "parent"));
	pt_run_free(&r);
	must_verify(incr);

	must_be_unharmed(&g);
	pt_guest_stop(&g);
	free(full_bytes);
	free(incr_bytes);
	unlink(full);
	unlink(incr);
	unlink(keep);
	unlink(fifo);
	unlink(dev);
	unlink(link);
}

/* ---- standard output, terminals, JSON ------------------------------------ */

static void test_save_stdout(void **state)
{
	char file[256], pid[16];
	struct pt_guest g;
	struct pt_run r;
	int fd, pty;

	(void)state;
	path_in_dir(file, sizeof(file), "stdout.bgs");
	pt_guest_start(&g, 0, GUEST_SIZE, "4k", NULL);
	snprintf(pid, sizeof(pid), "%d", (int)g.c.pid);
	fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	pt_run(&r, SAVE_MS, fd, "save", "--pid", pid, "-o", "-", NULL);
	close(fd);
	if (r.code)
		fail_msg("save -o -: exit %d: %s", r.code, r.err);
	/* The report goes to stderr when the snapshot takes stdout. */
	assert_non_null(strstr(r.err, "saved process"));
	pt_run_free(&r);
	check_saved_guest(&g, file);

	pty = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	assert_true(pty >= 0);
	assert_int_equal(grantpt(pty), 0);
	assert_int_equal(unlockpt(pty), 0);
	fd = open(ptsname(pty), O_RDWR | O_NOCTTY | O_CLOEXEC);
	assert_true(fd >= 0);
	pt_run(&r, SAVE_MS, fd, "save", "--pid", pid, "-o", "-", NULL);
	assert_int_equal(r.code, 2);
	pt_one_error_line(r.err);
	assert_non_null(strstr(r.err, "terminal"));
	pt_run_free(&r);
	close(fd);
	close(pty);
	must_be_unharmed(&g);
	pt_guest_stop(&g);
	unlink(file);
}

/* ---- a consumer slower than the writers ---------------------------------- */

#define SLOW_BYTES_PER_S (10u << 20)

struct slow_reader {
	int in, out;
	uint64_t bytes;
};

/* Copy @in to @out at SLOW_BYTES_PER_S at most, as 'pv -L 10m' would. */
static void *slow_reader_main(void *arg)
{
	struct slow_reader *sr = arg;
	static char buf[64 << 10];
	const uint64_t t0 = tu_now_ns();
	ssize_t n;

	while ((n = read(sr->in, buf, sizeof(buf))) > 0) {
		const uint64_t due =
			sr->bytes * 1000000000ULL / SLOW_BYTES_PER_S;
		const uint64_t now = tu_now_ns() - t0;

		if (write(sr->out, buf, (size_t)n) != n)
			break;
		sr->bytes += (uint64_t)n;
		if (due > now)
			tu_sleep_ms((unsigned)((due - now) / 1000000));
	}
	return NULL;
}

/*
 * A save into a pipe read at 10 MB/s while the writers run: the disk is
 * far behind, so the buffers fill and faulted pages spill. The snapshot
 * must still verify and balance, and the guest run on unharmed. How long
 * a write fault waited is printed (a benchmark figure, not asserted).
 */
static void test_save_slow_consumer(void **state)
{
	char file[256], pid[16];
	struct slow_reader sr = { 0 };
	struct pt_guest g;
	struct pt_run r;
	pthread_t t;
	int p[2];

	(void)state;
	path_in_dir(file, sizeof(file), "slow.bgs");
	pt_guest_start(&g, 0, "128M", "4k", NULL);
	tu_sleep_ms(200);
	snprintf(pid, sizeof(pid), "%d", (int)g.c.pid);
	sr.out = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(sr.out >= 0);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	sr.in = p[0];
	assert_int_equal(pthread_create(&t, NULL, slow_reader_main, &sr), 0);
	pt_run(&r, SAVE_MS, p[1], "save", "--pid", pid, "-o", "-", "--json",
	       "--buffer", "4M", NULL);
	close(p[1]);
	pthread_join(t, NULL);
	close(p[0]);
	close(sr.out);
	if (r.code)
		fail_msg("save -o - into a slow reader: exit %d: %s", r.code,
			 r.err);
	fprintf(stderr, "# into %u MB/s: %s", SLOW_BYTES_PER_S >> 20, r.err);
	assert_true(pt_num(r.err, "pages_by_fault") > 0);
	pt_run_free(&r);
	check_saved_guest(&g, file);
	must_be_unharmed(&g);
	pt_guest_stop(&g);
	unlink(file);
}

/* Run python3 on @json: it must parse and have every key. */
static void json_has_keys(const char *json, const char *keys)
{
	char path[256], cmd[1024];
	FILE *f;
	int status;

	path_in_dir(path, sizeof(path), "out.json");
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(json, f);
	fclose(f);
	snprintf(cmd, sizeof(cmd),
		 "python3 -c 'import json,sys\n"
		 "d = json.load(open(sys.argv[1]))\n"
		 "missing = [k for k in sys.argv[2].split() if k not in d]\n"
		 "sys.exit(\"missing keys: \" + \" \".join(missing) if missing "
		 "else 0)' %s '%s'",
		 path, keys);
	status = system(cmd);
	if (status == -1 || WEXITSTATUS(status) == 127) {
		fprintf(stderr, "# no python3: JSON keys not checked\n");
		return;
	}
	if (status)
		fail_msg("--json output does not parse or lacks keys: %s",
			 json);
	unlink(path);
}

static void test_save_json(void **state)
{
	static const char keys[] =
		"file pid regions blackout_ms elapsed_s pages_total "
		"pages_by_fault pages_zero bytes_written compression_ratio "
		"stall_us_p50 stall_us_p99 stall_us_max peak_buffer_bytes";
	char file[256], pid[16];
	struct pt_guest g;
	struct pt_run r;

	(void)state;
	path_in_dir(file, sizeof(file), "json.bgs");
	pt_guest_start(&g, 0, "16M", "4k", NULL);
	snprintf(pid, sizeof(pid), "%d", (int)g.c.pid);
	pt_run(&r, SAVE_MS, -1, "save", "--pid", pid, "-o", file, "--json",
	       "--compress", "none", "--buffer", "8M", "--no-verify", NULL);
	if (r.code)
		fail_msg("save --json: exit %d: %s", r.code, r.err);
	json_has_keys(r.out, keys);
	assert_non_null(strstr(r.out, "\"regions\":{\"saved\":"));
	assert_true(pt_num(r.out, "compression_ratio") <= 1.0);
	pt_run_free(&r);
	pt_run(&r, SAVE_MS, -1, "save", "--pid", pid, "-o", file, "--json",
	       "--stop-the-world", "--lz4-accel", "8", "--force", NULL);
	if (r.code)
		fail_msg("save --stop-the-world: exit %d: %s", r.code, r.err);
	json_has_keys(r.out, keys);
	assert_int_equal((int)pt_num(r.out, "pages_by_fault"), 0);
	pt_run_free(&r);
	check_saved_guest(&g, file);
	must_be_unharmed(&g);
	pt_guest_stop(&g);
	unlink(file);
}

/* ---- the save ends early ------------------------------------------------- */

/* Bytes of the save's temporary files in the test directory, -1: none.
 * The command's is ".NAME.save.PID.N.tmp", beside it the library's is
 * "..NAME.save.PID.N.tmp.XXXXXX.tmp" until it is renamed to the former. */
static long long temp_file_size(const char *final_name)
{
	DIR *d = opendir(pt_dir());
	struct dirent *e;
	long long size = -1;
	char prefix[128];

	snprintf(prefix, sizeof(prefix), ".%s.", final_name);
	assert_non_null(d);
	while ((e = readdir(d))) {
		char path[512];
		struct stat st;

		if (strncmp(e->d_name, prefix, strlen(prefix)) &&
		    (e->d_name[0] != '.' ||
		     strncmp(e->d_name + 1, prefix, strlen(prefix))))
			continue;
		snprintf(path, sizeof(path), "%s/%s", pt_dir(), e->d_name);
		if (!stat(path, &st))
			size = (long long)st.st_size;
	}
	closedir(d);
	return size;
}

/* Wait until the save writes pages (past its blackout): true, or false
 * if bgsnap ended first (*@status set). */
static bool wait_copying(pid_t bgsnap, const char *name, int *status)
{
	for (int i = 0; i < 20000; i++) {
		if (waitpid(bgsnap, status, WNOHANG) == bgsnap)
			return false;
		if (temp_file_size(name) > 1 << 20)
			return true;
		usleep(500);
	}
	fail_msg("the save never started writing");
	return false;
}

static int wait_exit(pid_t pid, int ms)
{
	int status;

	for (int i = 0; i < ms / 5; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status)
						 : -WTERMSIG(status);
		tu_sleep_ms(5);
	}
	kill(pid, SIGKILL);
	fail_msg("bgsnap did not end within %d ms", ms);
	return -1;
}

/* bgsnap with its stderr on a pipe, saving @pid into @file, with the
 * options @opt and @opt2 (each an option and its value, "--max-stall=1")
 * unless NULL. */
static pid_t spawn_save(const char *pid, const char *file, int *err_fd,
			const char *opt, const char *opt2)
{
	int err[2];
	pid_t b;

	assert_int_equal(pipe2(err, O_CLOEXEC), 0);
	b = fork();
	assert_true(b >= 0);
	if (!b) {
		/* A process group of its own, with its parent (this test) in
		 * another of the same session: not orphaned, so job control
		 * signals can stop it, as they can a save run from a shell. */
		setpgid(0, 0);
		dup2(err[1], STDERR_FILENO);
		execl(pt_bgsnap, "bgsnap", "save", "--pid", pid, "-o", file,
		      "--compress", "none", opt, opt2, (char *)NULL);
		_exit(127);
	}
	close(err[1]);
	*err_fd = err[0];
	return b;
}

static void read_message(int fd, char *out, size_t n)
{
	ssize_t got;

	memset(out, 0, n);
	got = read(fd, out, n - 1);
	close(fd);
	assert_true(got > 0);
	fprintf(stderr, "# %s", out);
	pt_one_error_line(out);
}

/*
 * A guest and a save of it caught while it copies pages (past the
 * blackout). The save runs in bgsnap's own time, so a fast one can end
 * first: then again, with a new guest, a few times.
 */
static pid_t save_caught_copying(struct pt_guest *g, const char *name,
				 char *file, size_t n, char *pid, int *err,
				 const char *opt, const char *opt2)
{
	int status;

	path_in_dir(file, n, name);
	for (int tries = 0; tries < 3; tries++) {
		pt_guest_start(g, 0, "256M", "4k", NULL);
		snprintf(pid, 16, "%d", (int)g->c.pid);
		const pid_t b = spawn_save(pid, file, err, opt, opt2);
		if (wait_copying(b, name, &status))
			return b;
		fprintf(stderr, "# the save ended before it was caught; "
				"again\n");
		close(*err);
		pt_guest_kill(g);
		unlink(file);
	}
	fail_msg("every save ended before it could be caught");
	return -1;
}

/* Kill the guest while bgsnap is stopped, so the death surely falls
 * mid-save; then bgsnap must say so in one line and leave no file. The
 * guest is reaped only after bgsnap runs again: while bgsnap has it
 * frozen, it is bgsnap's tracee, and a tracee is not its parent's to reap
 * before its tracer lets it go. */
static void kill_guest_under(pid_t bgsnap, struct pt_guest *g, int err,
			     const char *name, const char *file)
{
	char pid[16], msg[512];

	snprintf(pid, sizeof(pid), "%d", (int)g->c.pid);
	kill(bgsnap, SIGSTOP);
	kill(g->c.pid, SIGKILL);
	kill(bgsnap, SIGCONT);
	assert_int_equal(wait_exit(bgsnap, SAVE_MS), 1);
	read_message(err, msg, sizeof(msg));
	assert_non_null(strstr(msg, pid));
	assert_non_null(strstr(msg, "exited during the save"));
	assert_non_null(strstr(msg, "no snapshot was written"));
	assert_int_equal(access(file, F_OK), -1);
	assert_int_equal(temp_file_size(name), -1);
	pt_guest_kill(g);
}

/* The target dies while its pages are copied (with @opt, an option of
 * the save, or NULL). */
static void target_exits(const char *opt)
{
	char file[256], pid[16];
	struct pt_guest g;
	int err;
	pid_t b;

	b = save_caught_copying(&g, "exit.bgs", file, sizeof(file), pid, &err,
				opt, NULL);
	kill_guest_under(b, &g, err, "exit.bgs", file);
}

static void test_target_exits(void **state)
{
	(void)state;
	target_exits(NULL);
}

/* With compression threads: a read that fails for the copier ends the
 * save as well (it waited for its half-filled job for ever). */
static void test_target_exits_threads(void **state)
{
	(void)state;
	target_exits("--threads=2");
}

/* Wait until bgsnap has the guest stopped (it is the guest's tracer):
 * true, or false if bgsnap ended first (*@status set). Polled without
 * sleeping: bgsnap holds a guest for a few milliseconds at a time. */
static bool wait_tracing(pid_t bgsnap, pid_t guest, int *status)
{
	const uint64_t deadline = tu_now_ns() + (uint64_t)SAVE_MS * 1000000;

	while (tu_now_ns() < deadline) {
		if (pt_tracer_of(guest) == bgsnap)
			return true;
		if (waitpid(bgsnap, status, WNOHANG) == bgsnap)
			return false;
	}
	fail_msg("bgsnap never stopped guest %d", (int)guest);
	return false;
}

/* The target dies while bgsnap has it stopped: to make its uffd in it, or
 * in the blackout. */
static void test_target_exits_while_stopped(void **state)
{
	char file[256], pid[16];
	struct pt_guest g;
	int err, status;

	(void)state;
	path_in_dir(file, sizeof(file), "stopped.bgs");
	for (int tries = 0; tries < 3; tries++) {
		pt_guest_start(&g, 0, "256M", "4k", NULL);
		snprintf(pid, sizeof(pid), "%d", (int)g.c.pid);
		const pid_t b = spawn_save(pid, file, &err, NULL, NULL);
		if (wait_tracing(b, g.c.pid, &status)) {
			kill_guest_under(b, &g, err, "stopped.bgs", file);
			return;
		}
		fprintf(stderr, "# the save ended before it was caught; "
				"again\n");
		close(err);
		pt_guest_kill(&g);
		unlink(file);
	}
	fail_msg("every save ended before it could be caught");
}

static void test_sigint_cancels(void **state)
{
	char file[256], pid[16], msg[512];
	struct pt_guest g;
	int err;
	pid_t b;

	(void)state;
	b = save_caught_copying(&g, "int.bgs", file, sizeof(file), pid, &err,
				NULL, NULL);
	kill(b, SIGINT);
	assert_int_equal(wait_exit(b, SAVE_MS), 1);
	read_message(err, msg, sizeof(msg));
	assert_non_null(strstr(msg, "cancelled"));
	/* Cancelled cleanly: no file, not even the temporary one. */
	assert_int_equal(access(file, F_OK), -1);
	assert_int_equal(temp_file_size("int.bgs"), -1);
	must_be_unharmed(&g);
	pt_guest_stop(&g);
}

/* Ctrl-Z (and a background write to the terminal) must not stop a save:
 * its target's writers would wait until SIGCONT. */
static void test_sigtstp_ignored(void **state)
{
	char file[256], pid[16];
	struct pt_guest g;
	int err;
	pid_t b;

	(void)state;
	b = save_caught_copying(&g, "tstp.bgs", file, sizeof(file), pid, &err,
				NULL, NULL);
	kill(b, SIGTSTP);
	kill(b, SIGTTOU);
	kill(b, SIGTTIN);
	assert_int_equal(wait_exit(b, SAVE_MS), 0);
	close(err);
	must_verify(file);
	must_be_unharmed(&g);
	pt_guest_stop(&g);
	unlink(file);
}

/* bgsnap as nobody saving @pid to @file: its exit status, its stderr in
 * @out. */
static int save_as_nobody(const char *pid, const char *file, char *out,
			  size_t n)
{
	int err[2], code;
	ssize_t got;
	pid_t b;

	assert_int_equal(pipe2(err, O_CLOEXEC), 0);
	b = fork();
	assert_true(b >= 0);
	if (!b) {
		dup2(err[1], STDERR_FILENO);
		if (setgid(NOBODY) || setuid(NOBODY))
			_exit(126);
		execl(pt_bgsnap, "bgsnap", "save", "--pid", pid, "-o", file,
		      "-q", (char *)NULL);
		_exit(127);
	}
	close(err[1]);
	code = wait_exit(b, SAVE_MS);
	got = read(err[0], out, n - 1);
	out[got > 0 ? got : 0] = '\0';
	close(err[0]);
	fprintf(stderr, "# as nobody, -o %s: %d %s", file, code, out);
	return code;
}

/* A directory the user may not write in: said of FILE, before the save
 * (the library would name the command's temporary file). */
static void test_output_dir_unwritable(void **state)
{
	char file[256], pid[16], out[1024];
	struct pt_guest g;

	(void)state;
	path_in_dir(file, sizeof(file), "nobody-here.bgs");
	pt_guest_start(&g, NOBODY, "8M", "4k", NULL);
	snprintf(pid, sizeof(pid), "%d", (int)g.c.pid);
	assert_int_equal(chmod(pt_dir(), 0755), 0);
	assert_int_equal(save_as_nobody(pid, file, out, sizeof(out)), 1);
	pt_one_error_line(out);
	assert_non_null(strstr(out, "nobody-here.bgs: cannot be written in "
				    "its directory: Permission denied"));
	assert_null(strstr(out, ".tmp"));
	assert_int_equal(access(file, F_OK), -1);
	assert_int_equal(chmod(pt_dir(), 0700), 0);
	must_be_unharmed(&g);
	pt_guest_stop(&g);
}

/* ---- users --------------------------------------------------------------- */

static void test_nonroot_target(void **state)
{
	char file[256], pid[16];
	struct pt_guest g;
	struct pt_run r;

	(void)state;
	path_in_dir(file, sizeof(file), "nobody.bgs");
	pt_guest_start(&g, NOBODY, GUEST_SIZE, "4k", NULL);
	tu_sleep_ms(100);
	snprintf(pid, sizeof(pid), "%d", (int)g.c.pid);
	pt_run(&r, SAVE_MS, -1, "save", "--pid", pid, "-o", file, NULL);
	if (r.code)
		fail_msg("save of a non-root target: exit %d: %s", r.code,
			 r.err);
	pt_run_free(&r);
	check_saved_guest(&g, file);
	must_be_unharmed(&g);
	pt_guest_stop(&g);
	unlink(file);
}

/* bgsnap as nobody may not trace root's guest: one line naming why. */
static void test_ptrace_refused(void **state)
{
	char pid[16], out[512] = { 0 }, never[64];
	struct pt_guest g;
	int err[2];
	pid_t b;

	(void)state;
	/* Where nobody may write, and no other run's (an existing file
	 * would be refused first). */
	snprintf(never, sizeof(never), "/tmp/bgsnap-never-%d.bgs",
		 (int)getpid());
	pt_guest_start(&g, 0, "16M", "4k", NULL);
	snprintf(pid, sizeof(pid), "%d", (int)g.c.pid);
	assert_int_equal(pipe2(err, O_CLOEXEC), 0);
	b = fork();
	assert_true(b >= 0);
	if (!b) {
		dup2(err[1], STDERR_FILENO);
		if (setgid(NOBODY) || setuid(NOBODY))
			_exit(126);
		execl(pt_bgsnap, "bgsnap", "save", "--pid", pid, "-o", never,
		      (char *)NULL);
		_exit(127);
	}
	close(err[1]);
	assert_int_equal(wait_exit(b, SAVE_MS), 1);
	assert_true(read(err[0], out, sizeof(out) - 1) > 0);
	close(err[0]);
	fprintf(stderr, "# %s", out);
	pt_one_error_line(out);
	assert_non_null(strstr(out, pid));
	assert_non_null(strstr(out, "CAP_SYS_PTRACE")); /* the cause */
	assert_int_equal(access(never, F_OK), -1);
	must_be_unharmed(&g);
	pt_guest_stop(&g);
}

static void test_bad_arguments(void **state)
{
	static const char *const cases[][8] = {
		{ "save", "-o", "x.bgs", NULL }, /* no --pid */
		{ "save", "--pid", "1", NULL },	 /* no -o */
		{ "save", "--pid", "1", "-o", "x", "--compress", "zstd", NULL },
		{ "save", "--pid", "1", "-o", "x", "--buffer", "12Q", NULL },
		{ "save", "--pid", "1", "-o", "x", "--lz4-accel", "0", NULL },
		{ "save", "--pid", "1", "-o", "x", "extra", NULL },
		{ "restore", "--pid", "1", NULL }, /* no FILE */
		{ "restore", "x.bgs", NULL },	   /* no --pid */
	};
	struct pt_run r;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *const *c = cases[i];

		pt_run(&r, 10000, -1, c[0], c[1], c[2], c[3], c[4], c[5], c[6],
		       c[7]);
		if (r.code != 2)
			fail_msg("case %zu: exit %d, not 2: %s", i, r.code,
				 r.err);
		pt_one_error_line(r.err);
		pt_run_free(&r);
	}
	/* No such process: a failure, not a usage error. */
	pt_run(&r, 10000, -1, "save", "--pid", "2147483647", "-o", "x.bgs",
	       NULL);
	assert_int_equal(r.code, 1);
	pt_one_error_line(r.err);
	pt_run_free(&r);
	pt_run(&r, 10000, -1, "save", "--help", NULL);
	assert_int_equal(r.code, 0);
	assert_non_null(strstr(r.out, "usage: bgsnap save"));
	pt_run_free(&r);
}

/* ---- the reason said is the true one ------------------------------------- */

/* @cmd ... --pid @pid fails (exit 1) with one line saying @why, and not
 * @not (may be NULL). */
static void expect_reason(const char *cmd, const char *pid, const char *why,
			  const char * not )
{
	char dir[256], file[256];
	struct pt_run r;

	path_in_dir(dir, sizeof(dir), "reason");
	path_in_dir(file, sizeof(file), "reason.bgs");
	if (!strcmp(cmd, "save"))
		pt_run(&r, SAVE_MS, -1, "save", "--pid", pid, "-o", file, NULL);
	else if (!strcmp(cmd, "restore"))
		pt_run(&r, SAVE_MS, -1, "restore", file, "--pid", pid, NULL);
	else
		pt_run(&r, SAVE_MS, -1, "watch", "--pid", pid, "-o", dir,
		       "--count", "1", NULL);
	fprintf(stderr, "# %s --pid %s: %d %s", cmd, pid, r.code, r.err);
	if (r.code != 1)
		fail_msg("%s --pid %s: exit %d, expected 1", cmd, pid, r.code);
	pt_one_error_line(r.err);
	if (!strstr(r.err, why) || (not &&strstr(r.err, not )))
		fail_msg("%s --pid %s: the error does not say '%s'", cmd, pid,
			 why);
	pt_run_free(&r);
	assert_int_equal(access(file, F_OK), -1);
	assert_int_equal(access(dir, F_OK), -1);
}

static bool kthreadd_is_2(void)
{
	char comm[32] = "";
	FILE *f = fopen("/proc/2/comm", "re");

	if (f) {
		if (!fgets(comm, sizeof(comm), f))
			comm[0] = '\0';
		fclose(f);
	}
	return !strcmp(comm, "kthreadd\n");
}

/* Is every thread of @pid stopped (state T)? */
static bool all_stopped(pid_t pid)
{
	char dir[64], path[512], line[512];
	struct dirent *e;
	bool all = true;
	DIR *d;

	snprintf(dir, sizeof(dir), "/proc/%d/task", (int)pid);
	d = opendir(dir);
	assert_non_null(d);
	while (all && (e = readdir(d))) {
		const char *p;
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s/stat", dir, e->d_name);
		f = fopen(path, "re");
		if (!f)
			continue; /* a thread gone */
		if (!fgets(line, sizeof(line), f))
			line[0] = '\0';
		fclose(f);
		p = strrchr(line, ')');
		all = p && p[1] == ' ' && p[2] == 'T';
	}
	closedir(d);
	return all;
}

/* kill() only asks: wait until every thread of @pid is stopped. */
static void wait_stopped(pid_t pid)
{
	for (int i = 0; i < 1000; i++) {
		if (all_stopped(pid))
			return;
		tu_sleep_ms(5);
	}
	fail_msg("process %d did not stop", (int)pid);
}

/* A thread of @pid's that is not its main thread. */
static pid_t other_thread(pid_t pid)
{
	char path[64];
	struct dirent *e;
	pid_t tid = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	assert_non_null(d);
	while ((e = readdir(d)) && !tid)
		if (atoi(e->d_name) > 0 && atoi(e->d_name) != pid)
			tid = atoi(e->d_name);
	closedir(d);
	assert_true(tid > 0);
	return tid;
}

static void test_wrong_targets(void **state)
{
	static const char *const cmds[] = { "save", "restore", "watch" };
	char pid[16], tid[16], want[80];
	struct pt_guest g;

	(void)state;
	/* kthreadd: not "selected by --include/--exclude", none given. */
	if (!kthreadd_is_2())
		fprintf(stderr, "# pid 2 is not kthreadd (a pid namespace?): "
				"a kernel thread not tried\n");
	for (size_t i = 0; i < 3 && kthreadd_is_2(); i++)
		expect_reason(cmds[i], "2",
			      "process 2 (kthreadd) is a kernel "
			      "thread",
			      "--include");
	/* A writer thread of a guest: not "pidfd_open: No such file". */
	pt_guest_start(&g, 0, "8M", "4k", NULL);
	snprintf(pid, sizeof(pid), "%d", (int)g.c.pid);
	snprintf(tid, sizeof(tid), "%d", (int)other_thread(g.c.pid));
	snprintf(want, sizeof(want), "%s is a thread of process %s", tid, pid);
	for (size_t i = 0; i < 3; i++)
		expect_reason(cmds[i], tid, want, "pidfd_open");
	/* Stopped: not "32-bit, no stack room or sigsuspend". */
	assert_int_equal(kill(g.c.pid, SIGSTOP), 0);
	wait_stopped(g.c.pid);
	expect_reason("save", pid, "it is stopped (SIGSTOP or job control)",
		      "32-bit");
	assert_int_equal(kill(g.c.pid, SIGCONT), 0);
	must_be_unharmed(&g);
	pt_guest_stop(&g);
}

/* A user who may not have a userfaultfd here: exit 4, as documented for
 * a missing capability (it was 1). */
static void test_missing_capability(void **state)
{
	char pid[16], out[1024], never[64];
	struct pt_guest g;
	int code;

	(void)state;
	/* Where nobody may write, and no other run's. */
	snprintf(never, sizeof(never), "/tmp/bgsnap-nocap-%d.bgs",
		 (int)getpid());
	pt_guest_start(&g, NOBODY, "8M", "4k", NULL);
	snprintf(pid, sizeof(pid), "%d", (int)g.c.pid);
	code = save_as_nobody(pid, never, out, sizeof(out));
	if (!code) {
		/* This machine gives nobody a userfaultfd: nothing to see. */
		fprintf(stderr, "# nobody may use userfaultfd here: exit 4 "
				"not checked\n");
		unlink(never);
	} else {
		assert_int_equal(code, 4);
		pt_one_error_line(out);
		assert_non_null(strstr(out, "userfaultfd"));
		assert_non_null(strstr(out, "(see 'bgsnap caps')"));
		assert_int_equal(access(never, F_OK), -1);
	}
	must_be_unharmed(&g);
	pt_guest_stop(&g);
}

/* ---- reasons when another save or the process's own mappings interfere -- */

/* Start @argv (pt_bgsnap's arguments, NULL-terminated) with stdout into
 * @out and stderr into @err (-1: /dev/null). */
static pid_t spawn_fds(const char *const *argv, int out, int err)
{
	const pid_t child = fork();

	assert_true(child >= 0);
	if (child == 0) {
		const int null = open("/dev/null", O_RDWR);

		dup2(out >= 0 ? out : null, 1);
		dup2(err >= 0 ? err : null, 2);
		execv(pt_bgsnap, (char *const *)(uintptr_t)argv);
		_exit(127);
	}
	return child;
}

/* Wait for @child; its stderr, read from @rd, into @buf. */
static int reap_err(pid_t child, int rd, char *buf, size_t len)
{
	size_t n = 0;
	ssize_t got;
	int status;

	while (n + 1 < len && (got = read(rd, buf + n, len - 1 - n)) > 0)
		n += (size_t)got;
	buf[n] = '\0';
	close(rd);
	assert_int_equal(waitpid(child, &status, 0), child);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

/* Until some mapping of @pid is registered with a userfaultfd for write
 * protection ("uw" in smaps' VmFlags). */
static void wait_registered(pid_t pid)
{
	char path[64], line[512];

	snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
	for (int i = 0; i < 2000; i++) {
		FILE *f = fopen(path, "re");
		bool found = false;

		assert_non_null(f);
		while (!found && fgets(line, sizeof(line), f))
			found = !strncmp(line, "VmFlags:", 8) &&
				strstr(line, " uw");
		fclose(f);
		if (found)
			return;
		tu_sleep_ms(10);
	}
	fail_msg("process %d: no mapping registered in 20 s", (int)pid);
}

/* A save that holds the guest (its output not read) and a second one:
 * the second names the first, never a security module or the process's
 * own userfaultfd; then pairs of saves started together, where the loser
 * has lost at any step. */
static void test_concurrent_saves(void **state)
{
	char pid[16], file[256], err[2048];
	const char *held[] = { "bgsnap", "save",     "--pid", pid, "-o",
			       "-",	 "--buffer", "1M",    NULL };
	const char *save[] = { "bgsnap", "save", "--pid",   pid,
			       "-o",	 file,	 "--force", NULL };
	struct pt_guest g;
	struct pt_run r;
	int out[2], e[2][2];
	pid_t first, pair[2];

	(void)state;
	pt_guest_start(&g, 0, "128M", "4k", NULL);
	snprintf(pid, sizeof(pid), "%d", (int)g.c.pid);
	path_in_dir(file, sizeof(file), "pair.bgs");
	assert_int_equal(pipe2(out, O_CLOEXEC), 0);
	first = spawn_fds(held, out[1], -1);
	close(out[1]);
	wait_registered(g.c.pid);
	pt_run(&r, SAVE_MS, -1, "save", "--pid", pid, "-o", file, NULL);
	fprintf(stderr, "# while another save holds it: %d %s", r.code, r.err);
	assert_int_equal(r.code, 1);
	pt_one_error_line(r.err);
	assert_non_null(strstr(r.err, "another save or restore of this "
				      "process runs"));
	pt_run_free(&r);
	close(out[0]); /* the held save fails on EPIPE */
	assert_int_equal(waitpid(first, NULL, 0), first);

	for (int i = 0; i < 10; i++) {
		for (int k = 0; k < 2; k++) {
			assert_int_equal(pipe2(e[k], O_CLOEXEC), 0);
			pair[k] = spawn_fds(save, -1, e[k][1]);
			close(e[k][1]);
		}
		for (int k = 0; k < 2; k++) {
			if (!reap_err(pair[k], e[k][0], err, sizeof(err)))
				continue;
			fprintf(stderr, "# the loser: %s", err);
			pt_one_error_line(err);
			if (strstr(err, "security module") ||
			    strstr(err, "itself") || !strstr(err, "another"))
				fail_msg("not the other save named: %s", err);
		}
	}
	must_be_unharmed(&g);
	pt_guest_stop(&g);
	unlink(file);
}

/* Unmaps and maps again, at random, 4 MiB of 64 MiB, until killed. */
static void churn(void)
{
	const size_t len = 64 << 20, chunk = 4 << 20;
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	/* Never outlive the test, even one that failed half-way. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (p == MAP_FAILED)
		_exit(1);
	memset(p, 1, len);
	for (unsigned i = 0;; i++) {
		char *c = p + (size_t)(rand() % 16) * chunk;

		munmap(c, chunk);
		if (mmap(c, chunk, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1,
			 0) == MAP_FAILED)
			_exit(1);
		memset(c, (int)i, chunk);
		usleep(200);
	}
}

/* munmap and mmap during saves: a failure says the mapping changed or
 * vanished, never a bare "No such file or directory"; and a process that
 * is not there is named once. */
static void test_mapping_changes(void **state)
{
	char pid[16], file[256];
	unsigned failed = 0;
	struct pt_run r;
	pid_t child;

	(void)state;
	path_in_dir(file, sizeof(file), "churn.bgs");
	child = fork();
	assert_true(child >= 0);
	if (child == 0)
		churn();
	snprintf(pid, sizeof(pid), "%d", (int)child);
	tu_sleep_ms(300);
	for (int i = 0; i < 20; i++) {
		pt_run(&r, SAVE_MS, -1, "save", "--pid", pid, "-o", file,
		       "--force", NULL);
		if (r.code) {
			failed++;
			fprintf(stderr, "# %s", r.err);
			pt_one_error_line(r.err);
			if (strstr(r.err, "No such file"))
				fail_msg("no reason given: %s", r.err);
		}
		pt_run_free(&r);
	}
	fprintf(stderr, "# %u of 20 saves failed\n", failed);
	kill(child, SIGKILL);
	assert_int_equal(waitpid(child, NULL, 0), child);
	/* Reaped: that pid names no process now. */
	pt_run(&r, SAVE_MS, -1, "save", "--pid", pid, "-o", file, "--force",
	       NULL);
	fprintf(stderr, "# %s", r.err);
	assert_int_equal(r.code, 1);
	pt_one_error_line(r.err);
	assert_non_null(strstr(r.err, "no such process"));
	if (strstr(strstr(r.err, pid) + 1, pid))
		fail_msg("the pid said twice: %s", r.err);
	pt_run_free(&r);
	unlink(file);
}

/* ---- --max-stall ----------------------------------------------------------- */

/* -o - into a reader that never reads, writers running: the save is
 * abandoned after a second without a completed write, the guest released
 * and unharmed. */
static void test_max_stall_reader(void **state)
{
	char pid[16], msg[1024];
	const char *argv[] = { "bgsnap", "save",	"--pid",    pid,
			       "-o",	 "-",		"--buffer", "1M",
			       "-q",	 "--max-stall", "1",	    NULL };
	struct pt_guest g;
	int out[2], err[2];
	pid_t b;

	(void)state;
	pt_guest_start(&g, 0, "128M", "4k", NULL);
	snprintf(pid, sizeof(pid), "%d", (int)g.c.pid);
	assert_int_equal(pipe2(out, O_CLOEXEC), 0);
	assert_int_equal(pipe2(err, O_CLOEXEC), 0);
	b = spawn_fds(argv, out[1], err[1]);
	close(out[1]);
	close(err[1]);
	assert_int_equal(wait_exit(b, SAVE_MS), 1);
	read_message(err[0], msg, sizeof(msg));
	assert_non_null(strstr(msg, "no write of the snapshot completed for "
				    "1000 ms"));
	must_be_unharmed(&g);
	close(out[0]);
	pt_guest_stop(&g);
}

/* bgsnap stopped for longer than --max-stall mid-copy (with @opt, an
 * option of the save, or NULL): once continued, it gives up at once,
 * leaves no file and the guest unharmed. */
static void max_stall_stopped(const char *opt)
{
	char file[256], pid[16], msg[1024];
	struct pt_guest g;
	int err;
	pid_t b;

	b = save_caught_copying(&g, "stall.bgs", file, sizeof(file), pid, &err,
				"--max-stall=1", opt);
	kill(b, SIGSTOP);
	tu_sleep_ms(2500); /* the stop to be caught, not a bound checked */
	kill(b, SIGCONT);
	assert_int_equal(wait_exit(b, SAVE_MS), 1);
	read_message(err, msg, sizeof(msg));
	assert_non_null(strstr(msg, "bgsnap did not run for"));
	assert_int_equal(access(file, F_OK), -1);
	must_be_unharmed(&g);
	pt_guest_stop(&g);
}

static void test_max_stall_stopped(void **state)
{
	(void)state;
	max_stall_stopped(NULL);
}

/* The guest stopped by bgsnap for the whole copy: it is the starting
 * thread, waiting for the copier, that sees bgsnap did not run. */
static void test_max_stall_stopped_world(void **state)
{
	(void)state;
	max_stall_stopped("--stop-the-world");
}

/* Stopped while its copier waits for a slow reader of -o -: a wait for
 * the output that the stop falls into does not excuse the stop (the
 * output made progress meanwhile: the reader read on). */
static void test_max_stall_stopped_writing(void **state)
{
	char pid[16], msg[1024];
	const char *argv[] = { "bgsnap", "save",	"--pid",    pid,
			       "-o",	 "-",		"--buffer", "1M",
			       "-q",	 "--max-stall", "1",	    NULL };
	struct pt_guest g;
	int out[2], err[2];
	pid_t b, reader;

	(void)state;
	pt_guest_start(&g, 0, "128M", "4k", NULL);
	snprintf(pid, sizeof(pid), "%d", (int)g.c.pid);
	assert_int_equal(pipe2(out, O_CLOEXEC), 0);
	assert_int_equal(pipe2(err, O_CLOEXEC), 0);
	b = spawn_fds(argv, out[1], err[1]);
	close(out[1]);
	close(err[1]);
	/* The first MiB here: the save is under way when it is stopped
	 * (bgsnap may take a while to start, under ASan). */
	for (size_t got = 0; got < (1u << 20);) {
		static char first[65536];
		const ssize_t n = read(out[0], first, sizeof(first));

		assert_true(n > 0);
		got += (size_t)n;
	}
	reader = fork();
	assert_true(reader >= 0);
	if (reader == 0) { /* 8 MiB/s: the copier waits for it all along */
		static char buf[16384];

		while (read(out[0], buf, sizeof(buf)) > 0)
			usleep(2000);
		_exit(0);
	}
	close(out[0]);
	kill(b, SIGSTOP);
	tu_sleep_ms(2500);
	kill(b, SIGCONT);
	assert_int_equal(wait_exit(b, SAVE_MS), 1);
	read_message(err[0], msg, sizeof(msg));
	assert_non_null(strstr(msg, "bgsnap did not run for"));
	must_be_unharmed(&g);
	assert_int_equal(waitpid(reader, NULL, 0), reader);
	pt_guest_stop(&g);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_save_4k),
		cmocka_unit_test(test_save_thp),
		cmocka_unit_test(test_save_memfd),
		cmocka_unit_test(test_save_held_exact),
		cmocka_unit_test(test_save_prot_none_with_data),
		cmocka_unit_test(test_save_keeps_pages_shared),
		cmocka_unit_test(test_save_stdout),
		cmocka_unit_test(test_save_slow_consumer),
		cmocka_unit_test(test_output_refused),
		cmocka_unit_test(test_output_dir_unwritable),
		cmocka_unit_test(test_save_json),
		cmocka_unit_test(test_target_exits),
		cmocka_unit_test(test_target_exits_threads),
		cmocka_unit_test(test_target_exits_while_stopped),
		cmocka_unit_test(test_sigint_cancels),
		cmocka_unit_test(test_sigtstp_ignored),
		cmocka_unit_test(test_nonroot_target),
		cmocka_unit_test(test_ptrace_refused),
		cmocka_unit_test(test_wrong_targets),
		cmocka_unit_test(test_missing_capability),
		cmocka_unit_test(test_concurrent_saves),
		cmocka_unit_test(test_mapping_changes),
		cmocka_unit_test(test_max_stall_reader),
		cmocka_unit_test(test_max_stall_stopped),
		cmocka_unit_test(test_max_stall_stopped_world),
		cmocka_unit_test(test_max_stall_stopped_writing),
	};

	pt_init(argc, argv);
	/* By hand: only the cases whose name matches (a glob). */
	if (getenv("BGSNAP_TEST_FILTER"))
		cmocka_set_test_filter(getenv("BGSNAP_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
