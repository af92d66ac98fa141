/* SPDX-License-Identifier: MIT */
/*
 * Incremental chains end to end, through the built binary, against
 * 'bgsnap guest' processes under writers (and, for tracking that has to
 * restart, a small target of our own that maps memory on demand):
 *   - 'watch' takes a chain (full, then incremental); 'verify' checks it
 *     all; 'export' of the last one follows the chain, and its image is
 *     point-in-time (the bank balances) and equals the export of the
 *     'flatten'ed chain; 'info --json --chain' has the chain keys;
 *   - a parent missing: verify, export, flatten and restore fail with one
 *     clear line (exit 1) and write nothing; info says "not found";
 *     'info --chain' lists the chain up to it and exits 1 (3 when the
 *     file there is damaged); --parent makes them work;
 *   - 'watch' stops cleanly on SIGINT, when the process ends and with
 *     --count, leaving complete files only and nothing in the process;
 *     numbers on in a directory that has a chain; refuses a directory
 *     another watch writes; takes a full snapshot when the process's
 *     mappings change;
 *   - 'save --parent' writes a much smaller file when few pages changed,
 *     and it exports and restores exactly.
 * Needs root; 77 only where the kernel lacks a feature (pt_init).
 */
#include "pid_util.h"
#include "testutil.h"

#include <bgsnap.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define RUN_MS	   60000
#define LINE_MS	   30000 /* the longest wait for a line of 'watch' */
#define GUEST_SIZE "32M"

static struct pt_guest guest; /* the chain's, for every case */
static char chain[256];	      /* its directory */
static uint8_t *image;	      /* the guest memory of snap-000003.bgs */

static void path_in(char *buf, size_t n, const char *dir, const char *name)
{
	snprintf(buf, n, "%s/%s", dir, name);
}

static void expect_code(const struct pt_run *r, int code, const char *what)
{
	if (r->code != code)
		fail_msg("%s: exit %d, expected %d: %s%s", what, r->code, code,
			 r->out, r->err);
}

static unsigned count_of(const char *s, const char *needle)
{
	unsigned n = 0;

	for (; (s = strstr(s, needle)); s += strlen(needle))
		n++;
	return n;
}

/* ---- 'watch' as a process of its own ------------------------------------- */

struct watcher {
	pid_t pid;
	int out; /* its stdout, a pipe */
	int err; /* its stderr, a memfd */
	char buf[16384];
	size_t have;
};

static void spawn_watch(struct watcher *w, const char *dir, pid_t target,
			const char *every, const char *extra)
{
	char pid[16];
	const char *argv[] = { "bgsnap",  "watch", "--pid", pid,
			       "--every", every,   "-o",    dir,
			       "--json",  extra,   NULL };
	int p[2];

	snprintf(pid, sizeof(pid), "%d", (int)target);
	memset(w, 0, sizeof(*w));
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	w->err = memfd_create("err", MFD_CLOEXEC);
	assert_true(w->err >= 0);
	w->pid = fork();
	assert_true(w->pid >= 0);
	if (!w->pid) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (dup2(p[1], STDOUT_FILENO) < 0 ||
		    dup2(w->err, STDERR_FILENO) < 0)
			_exit(126);
		execv(pt_bgsnap, (char *const *)(uintptr_t)argv);
		_exit(127);
	}
	close(p[1]);
	w->out = p[0];
}

/* The next line 'watch' writes (NUL-terminated in @line): false at its
 * end of output; fails the test after LINE_MS. */
static bool watch_line(struct watcher *w, char *line, size_t n)
{
	const uint64_t deadline = tu_now_ns() / 1000000 + LINE_MS;

	for (;;) {
		char *nl = memchr(w->buf, '\n', w->have);
		struct pollfd p = { .fd = w->out, .events = POLLIN };
		ssize_t got;

		if (nl) {
			const size_t len = (size_t)(nl - w->buf);

			assert_true(len < n);
			memcpy(line, w->buf, len);
			line[len] = '\0';
			w->have -= len + 1;
			memmove(w->buf, nl + 1, w->have);
			fprintf(stderr, "# watch: %s\n", line);
			return true;
		}
		if (tu_now_ns() / 1000000 > deadline)
			fail_msg("'bgsnap watch' wrote no line in %d ms",
				 LINE_MS);
		if (poll(&p, 1, 50) <= 0)
			continue;
		got = read(w->out, w->buf + w->have, sizeof(w->buf) - w->have);
		if (got <= 0)
			return false;
		w->have += (size_t)got;
	}
}

/* Its exit status (after @sig, if not 0), and its stderr in @err. */
static int watch_end(struct watcher *w, int sig, char *err, size_t n)
{
	char line[4096];
	int status;
	ssize_t got;

	if (sig)
		kill(w->pid, sig);
	while (watch_line(w, line, sizeof(line)))
		;
	assert_int_equal(waitpid(w->pid, &status, 0), w->pid);
	got = pread(w->err, err, n - 1, 0);
	err[got > 0 ? got : 0] = '\0';
	close(w->out);
	close(w->err);
	if (*err)
		fprintf(stderr, "# watch stderr: %s", err);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

/* Every snap-*.bgs in @dir is a complete snapshot (no claim left empty),
 * and no temporary file is left: the number of them. */
static unsigned complete_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	unsigned n = 0;

	assert_non_null(d);
	while ((e = readdir(d))) {
		char path[512], err[BGSNAP_FILE_ERROR_MAX];
		struct bgsnap_file *f;

		if (strncmp(e->d_name, "snap-", 5))
			continue;
		path_in(path, sizeof(path), dir, e->d_name);
		if (bgsnap_file_open(&f, path, err, sizeof(err)))
			fail_msg("%s: %s", path, err);
		bgsnap_file_close(f);
		n++;
	}
	closedir(d);
	tu_assert_no_file_like(dir, ".tmp");
	return n;
}

static void guest_unharmed(struct pt_guest *g)
{
	pt_guest_untraced(g);
	pt_guest_unprotected(g);
	pt_guest_healthy(g, 100, 0);
}

/* ---- a chain by 'watch' -------------------------------------------------- */

static void expect_snapshot_line(const char *line, unsigned index)
{
	char want[64], parent[64];

	snprintf(want, sizeof(want), "{\"index\":%u,", index);
	if (strncmp(line, want, strlen(want)))
		fail_msg("not snapshot %u: %s", index, line);
	if (!index) {
		assert_non_null(strstr(line, "\"incremental\":false"));
		assert_non_null(strstr(line, "\"full_reason\":\"first\""));
		return;
	}
	assert_non_null(strstr(line, "\"incremental\":true"));
	snprintf(parent, sizeof(parent), "\"parent\":\"snap-%06u.bgs\"",
		 index - 1);
	if (!strstr(line, parent))
		fail_msg("snapshot %u does not name its parent: %s", index,
			 line);
	assert_true(pt_num(line, "pages_parent") > 0);
}

static void test_watch_chain(void **state)
{
	char pid[16], file[300];
	struct pt_run r;
	char *line, *next;

	(void)state;
	snprintf(pid, sizeof(pid), "%d", (int)guest.c.pid);
	pt_run(&r, RUN_MS, -1, "watch", "--pid", pid, "--every", "200ms", "-o",
	       chain, "--count", "4", "--json", NULL);
	expect_code(&r, 0, "watch --count 4");
	line = r.out;
	for (unsigned i = 0; i < 4; i++, line = next + 1) {
		next = strchr(line, '\n');
		assert_non_null(next);
		*next = '\0';
		expect_snapshot_line(line, i);
	}
	assert_non_null(strstr(line, "{\"stopped\":\"count\",\"snapshots\":4,"
				     "\"last\":\"snap-000003.bgs\""));
	pt_run_free(&r);
	assert_int_equal(complete_files(chain), 4);
	guest_unharmed(&guest);

	path_in(file, sizeof(file), chain, "snap-000003.bgs");
	pt_run(&r, RUN_MS, -1, "verify", file, NULL);
	expect_code(&r, 0, "verify");
	assert_non_null(strstr(r.out, "with its 3 parents"));
	pt_run_free(&r);
	pt_run(&r, RUN_MS, -1, "verify", file, "--chain", "--json", NULL);
	expect_code(&r, 0, "verify --chain --json");
	assert_non_null(strstr(r.out, "\"ok\":true"));
	assert_int_equal(count_of(r.out, "\"snapshot_id\":"), 4);
	pt_run_free(&r);

	/* Following the chain, the image is one instant's. */
	image = pt_export_guest(&guest, file);
	pt_check_image(&guest, image);
}

static void test_info_chain(void **state)
{
	char file[300], want[400];
	struct pt_run r;

	(void)state;
	path_in(file, sizeof(file), chain, "snap-000003.bgs");
	pt_run(&r, RUN_MS, -1, "info", file, "--json", "--chain", NULL);
	expect_code(&r, 0, "info --json --chain");
	assert_non_null(strstr(r.out, "\"parent_id\":\""));
	snprintf(want, sizeof(want), "\"parent_file\":\"%s/snap-000002.bgs\"",
		 chain);
	if (!strstr(r.out, want))
		fail_msg("info lacks %s: %s", want, r.out);
	assert_non_null(strstr(r.out, "\"parent_error\":null"));
	assert_non_null(strstr(r.out, "\"chain\":[{\"file\":"));
	/* FILE and its three ancestors, the last a full one. */
	assert_int_equal(count_of(strstr(r.out, "\"chain\":"), "\"file\":"), 4);
	assert_non_null(strstr(r.out, "\"parent_id\":null,\"file_size\""));
	pt_run_free(&r);
	pt_run(&r, RUN_MS, -1, "info", file, "--chain", NULL);
	expect_code(&r, 0, "info --chain");
	assert_non_null(strstr(r.out, "snap-000002.bgs"));
	assert_non_null(strstr(r.out, "snap-000000.bgs (full)"));
	pt_run_free(&r);
}

static void test_flatten(void **state)
{
	char file[300], flat[300];
	struct pt_run r;
	struct stat st;
	uint8_t *again;

	(void)state;
	path_in(file, sizeof(file), chain, "snap-000003.bgs");
	path_in(flat, sizeof(flat), pt_dir(), "flat.bgs");
	pt_run(&r, RUN_MS, -1, "flatten", file, "-o", flat, NULL);
	expect_code(&r, 0, "flatten");
	assert_non_null(strstr(r.out, "(4 snapshots)"));
	pt_run_free(&r);
	again = pt_export_guest(&guest, flat);
	if (memcmp(again, image, guest.len))
		fail_msg("the flattened chain's memory differs from the "
			 "chain's");
	free(again);
	pt_run(&r, RUN_MS, -1, "info", flat, NULL);
	expect_code(&r, 0, "info of the flattened");
	assert_non_null(strstr(r.out, "parent      none"));
	pt_run_free(&r);
	/* Never over a file without --force. */
	pt_run(&r, RUN_MS, -1, "flatten", file, "-o", flat, NULL);
	expect_code(&r, 1, "flatten over a file");
	pt_one_error_line(r.err);
	assert_non_null(strstr(r.err, "exists (--force replaces it)"));
	pt_run_free(&r);
	pt_run(&r, RUN_MS, -1, "flatten", file, "-o", flat, "--force", "-q",
	       NULL);
	expect_code(&r, 0, "flatten --force");
	pt_run_free(&r);
	tu_assert_no_file_like(pt_dir(), ".tmp");
	unlink(flat);
	/* Never over what is not a regular file, not even with --force. */
	assert_int_equal(mkfifo(flat, 0600), 0);
	pt_run(&r, RUN_MS, -1, "flatten", file, "-o", flat, "--force", NULL);
	expect_code(&r, 1, "flatten --force over a FIFO");
	pt_one_error_line(r.err);
	assert_non_null(strstr(r.err, "is a FIFO: refused"));
	pt_run_free(&r);
	assert_int_equal(lstat(flat, &st), 0);
	assert_true(S_ISFIFO(st.st_mode));
	tu_assert_no_file_like(pt_dir(), ".tmp");
	unlink(flat);
}

/* ---- a parent missing ---------------------------------------------------- */

/* 'info --chain' (text, then JSON) of @file, whose parent is missing:
 * listed up to it with why, exit @code (issue 13, item 11: it crashed). */
static void info_chain_incomplete(const char *file, int code, const char *why)
{
	struct pt_run r;
	const char *list;

	pt_run(&r, RUN_MS, -1, "info", file, "--chain", NULL);
	expect_code(&r, code, "info --chain, the chain incomplete");
	assert_non_null(strstr(r.out, "snap-000003.bgs\n"));
	if (!strstr(r.out, why))
		fail_msg("info --chain does not say '%s': %s", why, r.out);
	assert_non_null(strstr(r.out, "\nregions ("));
	pt_run_free(&r);
	pt_run(&r, RUN_MS, -1, "info", file, "--json", "--chain", NULL);
	expect_code(&r, code, "info --json --chain, the chain incomplete");
	assert_non_null(strstr(r.out, "\"parent_file\":null,"
				      "\"parent_error\":\""));
	list = strstr(r.out, "\"chain\":[");
	assert_non_null(list);
	/* FILE, then the parent that cannot be had, and the document ends. */
	assert_int_equal(count_of(list, "\"file\":"), 2);
	assert_non_null(strstr(list, "\"error\":null},{\"file\":null,"
				     "\"snapshot_id\":\""));
	assert_non_null(strstr(list, "\"}]}\n"));
	pt_run_free(&r);
}

static void info_chain_broken(const char *file)
{
	char parent[400], copy[400];
	uint8_t *bytes;
	size_t len;
	FILE *f;

	info_chain_incomplete(file, 1, "not found: ");
	/* A damaged file where the parent is looked for: 3. */
	path_in(parent, sizeof(parent), chain, "snap-000002.bgs");
	snprintf(copy, sizeof(copy), "%.*s/snap-000002.bgs",
		 (int)(strrchr(file, '/') - file), file);
	bytes = pt_read_file(parent, &len);
	bytes[0] ^= 0xff; /* the magic */
	f = fopen(copy, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(bytes, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
	free(bytes);
	info_chain_incomplete(file, 3, "unreadable: ");
	assert_int_equal(unlink(copy), 0);
}

static void test_missing_parent(void **state)
{
	char moved[300], file[400], from[400], to[400], name[1100], out[400];
	char pid[16], parent[400];
	static const char *const keep[] = { "snap-000000.bgs",
					    "snap-000001.bgs",
					    "snap-000003.bgs" };
	uint8_t *again;
	struct pt_run r;
	size_t len;

	(void)state;
	path_in(moved, sizeof(moved), pt_dir(), "moved");
	assert_int_equal(mkdir(moved, 0700), 0);
	for (size_t i = 0; i < 3; i++) {
		path_in(from, sizeof(from), chain, keep[i]);
		path_in(to, sizeof(to), moved, keep[i]);
		assert_int_equal(link(from, to), 0);
	}
	path_in(file, sizeof(file), moved, "snap-000003.bgs");
	path_in(out, sizeof(out), moved, "out.raw");
	path_in(parent, sizeof(parent), chain, "snap-000002.bgs");
	pt_region_name(file, guest.addr, name, sizeof(name));
	snprintf(pid, sizeof(pid), "%d", (int)guest.c.pid);

	pt_run(&r, RUN_MS, -1, "verify", file, NULL);
	expect_code(&r, 1, "verify, a parent missing");
	pt_one_error_line(r.err);
	assert_non_null(strstr(r.err, "snap-000002.bgs, the file named for "
				      "it, is not there"));
	assert_non_null(strstr(r.err, "--parent"));
	pt_run_free(&r);
	pt_run(&r, RUN_MS, -1, "export", file, "--region", name, "-o", out,
	       NULL);
	expect_code(&r, 1, "export, a parent missing");
	pt_one_error_line(r.err);
	assert_non_null(strstr(r.err, "is missing"));
	assert_int_equal(access(out, F_OK), -1);
	pt_run_free(&r);
	pt_run(&r, RUN_MS, -1, "flatten", file, "-o", out, NULL);
	expect_code(&r, 1, "flatten, a parent missing");
	pt_one_error_line(r.err);
	assert_non_null(strstr(r.err, "is missing"));
	assert_int_equal(access(out, F_OK), -1);
	pt_run_free(&r);
	pt_run(&r, RUN_MS, -1, "restore", file, "--pid", pid, "--include",
	       guest.range, NULL);
	expect_code(&r, 1, "restore, a parent missing");
	pt_one_error_line(r.err);
	assert_non_null(strstr(r.err, "is missing"));
	assert_non_null(strstr(r.err, "nothing was written"));
	pt_run_free(&r);
	guest_unharmed(&guest);
	pt_run(&r, RUN_MS, -1, "info", file, NULL);
	expect_code(&r, 0, "info, a parent missing");
	assert_non_null(strstr(r.out, "file not found: "));
	pt_run_free(&r);
	info_chain_broken(file);
	tu_assert_no_file_like(moved, ".tmp");

	/* Named, it is found by its id. */
	pt_run(&r, RUN_MS, -1, "verify", file, "--parent", parent, "-q", NULL);
	expect_code(&r, 0, "verify --parent");
	pt_run_free(&r);
	pt_run(&r, RUN_MS, -1, "export", file, "--region", name, "-o", out,
	       "--parent", parent, "-q", NULL);
	expect_code(&r, 0, "export --parent");
	pt_run_free(&r);
	again = pt_read_file(out, &len);
	assert_int_equal(len, guest.len);
	if (memcmp(again, image, guest.len))
		fail_msg("export --parent differs from the chain's export");
	free(again);
}

/* ---- how 'watch' stops --------------------------------------------------- */

static void test_watch_signal(void **state)
{
	char dir[300], line[4096], err[4096];
	struct watcher w;
	struct pt_run r;
	char pid[16];
	unsigned n;

	(void)state;
	path_in(dir, sizeof(dir), pt_dir(), "signal");
	spawn_watch(&w, dir, guest.c.pid, "200ms", NULL);
	for (unsigned i = 0; i < 2; i++) {
		assert_true(watch_line(&w, line, sizeof(line)));
		expect_snapshot_line(line, i);
	}
	assert_int_equal(watch_end(&w, SIGINT, err, sizeof(err)), 0);
	n = complete_files(dir);
	assert_true(n >= 2);
	guest_unharmed(&guest);
	/* Numbered on in a directory that has a chain: a new one. */
	snprintf(pid, sizeof(pid), "%d", (int)guest.c.pid);
	pt_run(&r, RUN_MS, -1, "watch", "--pid", pid, "-o", dir, "--count", "1",
	       "--json", NULL);
	expect_code(&r, 0, "watch into a directory with a chain");
	snprintf(line, sizeof(line), "{\"index\":%u,", n);
	if (strncmp(r.out, line, strlen(line)))
		fail_msg("not numbered on from %u: %s", n, r.out);
	assert_non_null(strstr(r.out, "\"full_reason\":\"first\""));
	pt_run_free(&r);
	assert_int_equal(complete_files(dir), n + 1);
}

static void test_watch_lock(void **state)
{
	char dir[300], line[4096], err[4096];
	struct watcher w;
	struct pt_run r;
	char pid[16];

	(void)state;
	path_in(dir, sizeof(dir), pt_dir(), "locked");
	spawn_watch(&w, dir, guest.c.pid, "10s", NULL);
	assert_true(watch_line(&w, line, sizeof(line)));
	snprintf(pid, sizeof(pid), "%d", (int)guest.c.pid);
	pt_run(&r, RUN_MS, -1, "watch", "--pid", pid, "-o", dir, NULL);
	expect_code(&r, 1, "a second watch on one directory");
	pt_one_error_line(r.err);
	assert_non_null(strstr(r.err, "another 'bgsnap watch' writes there"));
	pt_run_free(&r);
	assert_int_equal(watch_end(&w, SIGTERM, err, sizeof(err)), 0);
	assert_int_equal(complete_files(dir), 1);
	guest_unharmed(&guest);
}

static void test_watch_target_exits(void **state)
{
	char dir[300], line[4096], err[4096], want[64];
	struct pt_guest g;
	struct watcher w;
	pid_t pid;

	(void)state;
	path_in(dir, sizeof(dir), pt_dir(), "exits");
	pt_guest_start(&g, 0, "8M", "4k", NULL);
	pid = g.c.pid;
	spawn_watch(&w, dir, pid, "200ms", NULL);
	assert_true(watch_line(&w, line, sizeof(line)));
	expect_snapshot_line(line, 0);
	pt_guest_kill(&g);
	assert_int_equal(watch_end(&w, 0, err, sizeof(err)), 0);
	snprintf(want, sizeof(want), "process %d exited", (int)pid);
	assert_non_null(strstr(err, want));
	assert_true(complete_files(dir) >= 1);
}

/* ---- tracking restarts: a target that maps memory on demand -------------- */

#define OWN_PAGES 256

/* The target: writes its region, and maps more memory when told ('m');
 * ends at 'q' or the end of its input. _exit: never the test's atexit. */
static void own_target(int in, volatile uint8_t *mem)
{
	char c;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	for (unsigned i = 0;; i++) {
		struct pollfd p = { .fd = in, .events = POLLIN };

		mem[(i * 4099u) % (OWN_PAGES * PT_PAGE)] = (uint8_t)i;
		if (poll(&p, 1, 1) <= 0)
			continue;
		if (read(in, &c, 1) != 1 || c == 'q')
			_exit(0);
		if (c == 'm') {
			uint8_t *more =
				mmap(NULL, 16 * PT_PAGE, PROT_READ | PROT_WRITE,
				     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

			if (more == MAP_FAILED)
				_exit(1);
			more[0] = 1;
		}
	}
}

static void test_tracking_restarts(void **state)
{
	char dir[300], line[4096], err[4096], range[80], last[400];
	uint8_t *mem = mmap(NULL, OWN_PAGES * PT_PAGE, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct watcher w;
	struct pt_run r;
	int cmd[2];
	pid_t pid;
	bool restarted = false;
	unsigned index = 0;

	(void)state;
	assert_true(mem != MAP_FAILED);
	memset(mem, 0x5a, OWN_PAGES * PT_PAGE);
	assert_int_equal(pipe2(cmd, O_CLOEXEC), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (!pid)
		own_target(cmd[0], mem);
	close(cmd[0]);
	snprintf(range, sizeof(range), "--include=%lx-%lx", (unsigned long)mem,
		 (unsigned long)(mem + OWN_PAGES * PT_PAGE));
	path_in(dir, sizeof(dir), pt_dir(), "restarts");
	spawn_watch(&w, dir, pid, "200ms", range);
	for (; index < 2; index++) {
		assert_true(watch_line(&w, line, sizeof(line)));
		expect_snapshot_line(line, index);
	}
	assert_int_equal(write(cmd[1], "m", 1), 1);
	/* The next snapshot or the one after is full: tracking restarted. */
	for (; index < 5 && !restarted; index++) {
		assert_true(watch_line(&w, line, sizeof(line)));
		restarted = strstr(line, "\"full_reason\":"
					 "\"tracking-restarted\"") != NULL;
		assert_non_null(strstr(line, restarted
						     ? "\"incremental\":false"
						     : "\"incremental\":true"));
	}
	assert_true(restarted);
	/* And tracking goes on from it. */
	assert_true(watch_line(&w, line, sizeof(line)));
	assert_non_null(strstr(line, "\"incremental\":true"));
	index++;
	assert_int_equal(watch_end(&w, SIGINT, err, sizeof(err)), 0);
	assert_int_equal(write(cmd[1], "q", 1), 1);
	close(cmd[1]);
	waitpid(pid, NULL, 0);
	snprintf(last, sizeof(last), "%s/snap-%06u.bgs", dir, index - 1);
	pt_run(&r, RUN_MS, -1, "verify", last, "-q", NULL);
	expect_code(&r, 0, "verify after a restart");
	pt_run_free(&r);
	munmap(mem, OWN_PAGES * PT_PAGE);
}

/* ---- save --parent ------------------------------------------------------- */

static uint8_t *dump_guest(struct pt_guest *g)
{
	char dump[300];
	uint8_t *mem;
	size_t len;

	path_in(dump, sizeof(dump), pt_dir(), "mem.raw");
	pt_guest_must(g, "dump %s", dump);
	mem = pt_read_file(dump, &len);
	unlink(dump);
	assert_int_equal(len, g->len);
	return mem;
}

static uint64_t size_of(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return (uint64_t)st.st_size;
}

static void save(struct pt_guest *g, const char *file, const char *parent)
{
	char pid[16];
	struct pt_run r;

	snprintf(pid, sizeof(pid), "%d", (int)g->c.pid);
	pt_run(&r, RUN_MS, -1, "save", "--pid", pid, "-o", file, "--json",
	       parent ? "--parent" : NULL, parent, NULL);
	expect_code(&r, 0, parent ? "save --parent" : "save");
	if (parent)
		assert_true(pt_num(r.out, "pages_parent") > 0);
	pt_run_free(&r);
}

static void test_save_parent(void **state)
{
	char full[300], incr[300], pid[16];
	uint8_t *mem, *exported, *now;
	struct pt_guest g;
	struct pt_run r;

	(void)state;
	path_in(full, sizeof(full), pt_dir(), "full.bgs");
	path_in(incr, sizeof(incr), pt_dir(), "incr.bgs");
	pt_guest_start(&g, 0, GUEST_SIZE, "4k", "--rate", "500", NULL);
	snprintf(pid, sizeof(pid), "%d", (int)g.c.pid);
	pt_guest_must(&g, "hold");
	save(&g, full, NULL);
	pt_guest_must(&g, "release");
	tu_sleep_ms(100); /* a few dozen transfers: a few dozen pages */
	pt_guest_must(&g, "hold");
	mem = dump_guest(&g);
	save(&g, incr, full);
	fprintf(stderr, "# full %llu bytes, incremental %llu bytes\n",
		(unsigned long long)size_of(full),
		(unsigned long long)size_of(incr));
	if (size_of(incr) * 8 > size_of(full))
		fail_msg("the incremental file is not much smaller");
	exported = pt_export_guest(&g, incr);
	if (memcmp(exported, mem, g.len))
		fail_msg(
			"the incremental snapshot's memory is not the guest's");
	/* The writers move on; the restore puts the instant back. */
	pt_guest_must(&g, "release");
	tu_sleep_ms(200);
	pt_guest_must(&g, "hold");
	pt_run(&r, RUN_MS, -1, "restore", incr, "--pid", pid, "--include",
	       g.range, "-q", NULL);
	expect_code(&r, 0, "restore of an incremental snapshot");
	pt_run_free(&r);
	now = dump_guest(&g);
	if (memcmp(now, mem, g.len))
		fail_msg("after the restore the memory is not the snapshot's");
	pt_guest_must(&g, "recover");
	pt_guest_must(&g, "release");
	guest_unharmed(&g);
	pt_guest_stop(&g);
	free(now);
	free(exported);
	free(mem);
}

static int setup(void **state)
{
	(void)state;
	path_in(chain, sizeof(chain), pt_dir(), "chain");
	pt_guest_start(&guest, 0, GUEST_SIZE, "4k", "--rate", "20000", NULL);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	pt_guest_stop(&guest);
	free(image);
	return 0;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_watch_chain),
		cmocka_unit_test(test_info_chain),
		cmocka_unit_test(test_flatten),
		cmocka_unit_test(test_missing_parent),
		cmocka_unit_test(test_watch_signal),
		cmocka_unit_test(test_watch_lock),
		cmocka_unit_test(test_watch_target_exits),
		cmocka_unit_test(test_tracking_restarts),
		cmocka_unit_test(test_save_parent),
	};

	pt_init(argc, argv);
	return cmocka_run_group_tests(tests, setup, teardown);
}
