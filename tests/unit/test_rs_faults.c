/* SPDX-License-Identifier: MIT */
/*
 * The writer when the system fails it: ENOSPC on a full tmpfs (mounted in
 * a private mount namespace) and from /dev/full, EFBIG from RLIMIT_FSIZE,
 * EIO from a terminal whose other side is gone, EPIPE from a pipe nobody
 * reads, and SIGKILL in the middle of a save. Each time: the error comes
 * back, the process lives on, nothing is left under the final name and,
 * unless the process was killed, no temporary file either. Each case runs
 * with io_uring and with write(2), and ends with abort and with commit.
 *
 * Not covered: EIO from a real block device, which needs dm-error or a
 * failing loop device; the terminal gives a real EIO from write(2) and an
 * io_uring completion instead.
 */
#include "rs_testutil.h"
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PG RS_PAGE

/* Checks inside a forked child, which must not return into cmocka. */
#define CHILD_CHECK(cond)                                                      \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: child: %s failed\n", __FILE__, \
				__LINE__, #cond);                              \
			_exit(1);                                              \
		}                                                              \
	} while (0)

static uint8_t *random_pages; /* 2 MiB of incompressible data */

static struct rs_region one_region(uint64_t pages)
{
	struct rs_region r = { .base = 1ull << 32,
			       .length = pages * PG,
			       .page_size = PG,
			       .kind = RS_KIND_ANON };

	strcpy(r.name, "ram");
	return r;
}

/*
 * Save @mib MiB of random pages to @path (or @fd if @path is NULL) and
 * end with commit, or abort after the first error if @abort_on_error.
 * Returns the first error.
 */
static int save(const char *path, int fd, unsigned mib, bool sync_io,
		bool abort_on_error)
{
	const uint64_t pages = (uint64_t)mib << 8;
	const struct rs_region r = one_region(pages);
	const struct rs_writer_opts o = { .regions = &r,
					  .nregions = 1,
					  .sync_io = sync_io };
	struct rs_writer *w;
	int ret = path ? bgs_rs_writer_open_path(&w, path, &o)
		       : bgs_rs_writer_open_fd(&w, fd, &o);

	if (ret)
		return ret;
	for (uint64_t p = 0; p < pages && !ret; p += 512)
		ret = bgs_rs_put_pages(w, 0, p, 512, random_pages);
	if (ret && abort_on_error) {
		bgs_rs_writer_abort(w);
		return ret;
	}
	/* commit returns the sticky error, or its own */
	return bgs_rs_writer_commit(w);
}

static int setup(void **state)
{
	(void)state;
	random_pages = malloc(512 * PG);
	rt_fill(random_pages, 512, RT_RANDOM, 11);
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	free(random_pages);
	return 0;
}

/* Run @fn in a child, which must exit 0. */
static void in_child(void (*fn)(void))
{
	int status;
	const pid_t pid = fork();

	assert_true(pid >= 0);
	if (!pid) {
		fn();
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* Every way to end, every I/O path: @want each time, @dir left empty. */
static void save_all_ways(const char *dir, unsigned mib, int want)
{
	char path[300];

	snprintf(path, sizeof(path), "%s/snap.bgs", dir);
	for (int sync = 0; sync < 2; sync++) {
		for (int ab = 0; ab < 2; ab++) {
			const int ret = save(path, -1, mib, sync, ab);

			if (ret != want)
				fprintf(stderr, "sync %d abort %d: %d\n", sync,
					ab, ret);
			CHILD_CHECK(ret == want);
			CHILD_CHECK(rt_count_entries(dir) == 0);
		}
	}
}

/* ---- ENOSPC: a 1 MiB tmpfs of our own ------------------------------------ */

static void enospc_child(void)
{
	char dir[256], path[300];
	struct stat st;

	if (unshare(CLONE_NEWNS)) {
		fprintf(stderr, "unshare(CLONE_NEWNS): %s\n", strerror(errno));
		_exit(1);
	}
	CHILD_CHECK(!mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL));
	rt_mkdtemp(dir, sizeof(dir));
	CHILD_CHECK(!mount("tmpfs", dir, "tmpfs", 0, "size=1m,mode=0700"));
	save_all_ways(dir, 4, -ENOSPC);
	/* what fits is saved, and is right */
	snprintf(path, sizeof(path), "%s/small.bgs", dir);
	CHILD_CHECK(save(path, -1, 0, false, false) == 0);
	CHILD_CHECK(!stat(path, &st) && (st.st_mode & 0777) == 0600);
	CHILD_CHECK(rt_count_entries(dir) == 1);
	CHILD_CHECK(!umount(dir));
	rmdir(dir);
}

static void test_enospc_tmpfs(void **state)
{
	(void)state;
	tu_need_root("a mount namespace with a tmpfs of its own");
	in_child(enospc_child);
}

/* ---- EFBIG: RLIMIT_FSIZE, SIGXFSZ ignored -------------------------------- */

static void efbig_child(void)
{
	const struct rlimit rl = { 1 << 20, 1 << 20 };
	char dir[256];

	signal(SIGXFSZ, SIG_IGN);
	rt_mkdtemp(dir, sizeof(dir));
	CHILD_CHECK(!setrlimit(RLIMIT_FSIZE, &rl));
	save_all_ways(dir, 4, -EFBIG);
	rmdir(dir);
}

static void test_efbig_rlimit(void **state)
{
	(void)state;
	in_child(efbig_child);
}

/* ---- errors from the descriptor given ------------------------------------ */

/* fd mode: @fd fails with @want at some point, open, put or commit. */
static void fd_fails(int fd, int want)
{
	for (int sync = 0; sync < 2; sync++)
		for (int ab = 0; ab < 2; ab++)
			assert_int_equal(save(NULL, fd, 4, sync, ab), want);
}

static void test_dev_full(void **state)
{
	const int fd = open("/dev/full", O_WRONLY | O_CLOEXEC);

	(void)state;
	assert_true(fd >= 0);
	fd_fails(fd, -ENOSPC);
	close(fd);
}

static void test_eio_terminal(void **state)
{
	const int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	int tty;

	(void)state;
	assert_true(master >= 0);
	assert_int_equal(grantpt(master), 0);
	assert_int_equal(unlockpt(master), 0);
	tty = open(ptsname(master), O_WRONLY | O_NOCTTY | O_CLOEXEC);
	assert_true(tty >= 0);
	close(master); /* the terminal hangs up: writes fail with EIO */
	fd_fails(tty, -EIO);
	close(tty);
}

static void test_epipe(void **state)
{
	int fds[2];

	(void)state;
	assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
	close(fds[0]);
	fd_fails(fds[1], -EPIPE);
	close(fds[1]);
}

/* ---- SIGKILL in the middle of a save ------------------------------------- */

static void endless_save(const char *path)
{
	const struct rs_region r = one_region(1u << 20); /* 4 GiB */
	const struct rs_writer_opts o = { .regions = &r, .nregions = 1 };
	struct rs_writer *w;
	int ret = bgs_rs_writer_open_path(&w, path, &o);

	for (uint64_t p = 0; !ret; p = (p + 512) % (1u << 20)) {
		ret = bgs_rs_put_pages(w, 0, p, 512, random_pages);
		usleep(200);
	}
	_exit(2); /* a put failed: the parent sees it */
}

/* The one entry of @dir, its size and that it is private. */
static bool only_entry(const char *dir, char *name, size_t len, off_t *size)
{
	DIR *d = opendir(dir);
	char path[600];
	struct dirent *e;
	struct stat st;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
		    n++ == 0)
			snprintf(name, len, "%s", e->d_name);
	closedir(d);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (n != 1 || stat(path, &st))
		return false;
	*size = st.st_size;
	return (st.st_mode & 0777) == 0600;
}

static void test_sigkill_mid_save(void **state)
{
	char dir[256], path[300], name[256];
	off_t size = 0;
	int status;
	pid_t pid;

	(void)state;
	rt_mkdtemp(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/snap.bgs", dir);
	pid = fork();
	assert_true(pid >= 0);
	if (!pid)
		endless_save(path);
	/* wait until the temporary file has grown past 8 MiB */
	for (int i = 0; i < 20000 && size < (8 << 20); i++) {
		if (!only_entry(dir, name, sizeof(name), &size))
			size = 0;
		usleep(1000);
	}
	assert_true(size >= (8 << 20));
	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	/* never a file under the final name; the temporary one stays, named
	 * for it and private */
	assert_int_equal(access(path, F_OK), -1);
	assert_true(only_entry(dir, name, sizeof(name), &size));
	assert_int_equal(strncmp(name, ".snap.bgs.", 10), 0);
	assert_string_equal(name + strlen(name) - 4, ".tmp");
	rt_rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_enospc_tmpfs),
		cmocka_unit_test(test_efbig_rlimit),
		cmocka_unit_test(test_dev_full),
		cmocka_unit_test(test_eio_terminal),
		cmocka_unit_test(test_epipe),
		cmocka_unit_test(test_sigkill_mid_save),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
