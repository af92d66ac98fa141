/* SPDX-License-Identifier: MIT */
/*
 * 'bgsnap restore --pid' end to end, through the built binary, into
 * 'bgsnap guest' processes:
 *   - the round trip the demo makes: save under writers, hold them, a dry
 *     run (something would change), restore only the guest's memory
 *     (--include its range), the memory then equals the snapshot byte for
 *     byte and a second dry run finds nothing to change; recover the
 *     journal, release, and the guest runs on with balanced books;
 *   - every class of bad file (bad magic, truncated, a flipped byte in the
 *     header, in a record's payload, in the index, in the footer; empty,
 *     random bytes, a directory, missing) through 'verify' and 'restore':
 *     a non-zero exit, one clear line, and the target untouched;
 *   - a snapshot of another process: refused, nothing written;
 *   - a mapping gone since the snapshot (a thread's stack): a restore of
 *     the whole process is refused, one limited to a data region works.
 */
#include "pid_util.h"
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define GUEST_SIZE   "64M"
#define RUN_MS	     60000
#define EXIT_BADFILE 3

static void path_in_dir(char *buf, size_t n, const char *name)
{
	snprintf(buf, n, "%s/%s", pt_dir(), name);
}

static void save_guest(struct pt_guest *g, const char *file)
{
	struct pt_run r;
	char pid[16];

	snprintf(pid, sizeof(pid), "%d", (int)g->c.pid);
	pt_run(&r, RUN_MS, -1, "save", "--pid", pid, "-o", file, "-q", NULL);
	if (r.code)
		fail_msg("save: exit %d: %s", r.code, r.err);
	pt_run_free(&r);
}

/* 'restore FILE --pid G --include RANGE' plus up to two more arguments. */
static void restore(struct pt_run *r, const struct pt_guest *g,
		    const char *file, const char *a1, const char *a2)
{
	char pid[16];

	snprintf(pid, sizeof(pid), "%d", (int)g->c.pid);
	pt_run(r, RUN_MS, -1, "restore", file, "--pid", pid, "--include",
	       g->range, a1, a2, NULL);
}

static uint64_t dry_run_changed(const struct pt_guest *g, const char *file)
{
	struct pt_run r;
	uint64_t n;

	restore(&r, g, file, "--dry-run", "--json");
	if (r.code)
		fail_msg("restore --dry-run: exit %d: %s", r.code, r.err);
	fprintf(stderr, "# dry run: %s", r.out);
	assert_non_null(strstr(r.out, "\"dry_run\":true"));
	assert_non_null(strstr(r.out, "\"regions\":[{\"name\":"));
	n = (uint64_t)pt_num(r.out, "pages_changed");
	pt_run_free(&r);
	return n;
}

/* The guest's memory now, writers held: a dump, into a directory any
 * guest may write (one may run as nobody). */
static uint8_t *guest_memory(struct pt_guest *g)
{
	char dir[256], dump[300];
	uint8_t *mem;
	size_t len;

	path_in_dir(dir, sizeof(dir), "dumps");
	if (mkdir(dir, 0700) == 0) {
		assert_int_equal(chmod(dir, 01777), 0);
		assert_int_equal(chmod(pt_dir(), 0711), 0);
	}
	snprintf(dump, sizeof(dump), "%s/mem.raw", dir);
	pt_guest_must(g, "dump %s", dump);
	mem = pt_read_file(dump, &len);
	unlink(dump);
	assert_int_equal(len, g->len);
	return mem;
}

static void expect_same(const uint8_t *a, const uint8_t *b, size_t len,
			const char *what)
{
	for (size_t i = 0; i < len; i += PT_PAGE)
		if (memcmp(a + i, b + i, PT_PAGE))
			fail_msg("page %zu: %s", i / PT_PAGE, what);
}

/* ---- the round trip ------------------------------------------------------ */

static void round_trip(const char *kind, unsigned uid)
{
	char file[256];
	uint8_t *image, *mem;
	struct pt_guest g;
	struct pt_run r;

	path_in_dir(file, sizeof(file), "trip.bgs");
	pt_guest_start(&g, uid, GUEST_SIZE, kind, NULL);
	tu_sleep_ms(100);
	save_guest(&g, file);
	tu_sleep_ms(200); /* the writers move on from the snapshot */
	pt_guest_must(&g, "hold");
	assert_true(dry_run_changed(&g, file) > 0);
	restore(&r, &g, file, NULL, NULL);
	if (r.code)
		fail_msg("restore: exit %d: %s", r.code, r.err);
	assert_non_null(strstr(r.out, "restored"));
	pt_run_free(&r);
	/* Right after the restore, before the journal is replayed, the
	 * memory is the snapshot's, byte for byte. */
	image = pt_export_guest(&g, file);
	pt_check_image(&g, image);
	mem = guest_memory(&g);
	expect_same(mem, image, g.len,
		    "differs from the snapshot right "
		    "after the restore");
	assert_int_equal(dry_run_changed(&g, file), 0);
	free(mem);
	free(image);
	pt_guest_must(&g, "recover");
	pt_guest_must(&g, "release");
	for (int i = 0; i < 3; i++)
		pt_guest_healthy(&g, 150, 0);
	pt_guest_untraced(&g);
	pt_guest_stop(&g);
	unlink(file);
}

static void test_round_trip_4k(void **state)
{
	(void)state;
	round_trip("4k", 0);
}

static void test_round_trip_memfd(void **state)
{
	(void)state;
	round_trip("memfd", 0);
}

static void test_round_trip_nonroot(void **state)
{
	(void)state;
	round_trip("thp", 65534);
}

/* 'bgsnap restore -': the snapshot comes through a pipe (spooled and
 * verified first by the library). */
static void test_restore_from_pipe(void **state)
{
	char file[256], cmd[1024];
	uint8_t *image, *mem;
	struct pt_guest g;

	(void)state;
	path_in_dir(file, sizeof(file), "pipe.bgs");
	pt_guest_start(&g, 0, "16M", "4k", NULL);
	tu_sleep_ms(100);
	save_guest(&g, file);
	tu_sleep_ms(100);
	pt_guest_must(&g, "hold");
	snprintf(cmd, sizeof(cmd),
		 "cat %s | %s restore - --pid %d --include "
		 "%s --quiet",
		 file, pt_bgsnap, (int)g.c.pid, g.range);
	assert_int_equal(system(cmd), 0);
	image = pt_export_guest(&g, file);
	mem = guest_memory(&g);
	expect_same(mem, image, g.len,
		    "differs from the snapshot after a "
		    "restore from a pipe");
	free(mem);
	free(image);
	pt_guest_must(&g, "recover");
	pt_guest_must(&g, "release");
	pt_guest_healthy(&g, 100, 0);
	pt_guest_stop(&g);
	unlink(file);
}

/* ---- a mapping gone since the snapshot ----------------------------------- */

struct kid {
	pid_t pid;
	int to, from;
	uint64_t data; /* the region to restore */
};

static void *idle_thread(void *arg)
{
	char c;

	return read(*(int *)arg, &c, 1) < 0 ? NULL : arg;
}

/* A process with a data region and a thread on a stack of its own, which
 * it unmaps when told ('j'): the snapshot then has a region that is gone. */
static void __attribute__((noreturn)) kid_main(int in, int out)
{
	const size_t stack_len = 256 << 10;
	/* Shared: a mapping of its own, never merged with the stack's. */
	char *data = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE,
			  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	char *stack = mmap(NULL, stack_len, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	pthread_attr_t attr;
	pthread_t t;
	int quit[2];
	char c;

	if (data == MAP_FAILED || stack == MAP_FAILED || pipe(quit))
		_exit(1);
	memset(data, 'a', 1 << 20);
	memset(stack, 0, stack_len); /* populated: saved, not skipped */
	pthread_attr_init(&attr);
	pthread_attr_setstack(&attr, stack, stack_len);
	if (pthread_create(&t, &attr, idle_thread, &quit[0]))
		_exit(1);
	if (write(out, &data, sizeof(data)) != sizeof(data) ||
	    read(in, &c, 1) != 1)
		_exit(1);
	memset(data, 'b', 1 << 20); /* something for the restore to undo */
	if (write(quit[1], "q", 1) != 1 || pthread_join(t, NULL))
		_exit(1);
	munmap(stack, stack_len);
	if (write(out, "d", 1) != 1)
		_exit(1);
	while (read(in, &c, 1) > 0)
		;
	_exit(data[0] == 'a' ? 0 : 3); /* restored */
}

/* The kid of a failed test is killed by the teardown, never left. */
static pid_t live_kid;

static int kill_kid(void **state)
{
	(void)state;
	if (live_kid > 0) {
		kill(live_kid, SIGKILL);
		waitpid(live_kid, NULL, 0);
	}
	live_kid = 0;
	return 0;
}

static void kid_start(struct kid *k)
{
	int in[2], out[2];

	assert_int_equal(pipe2(in, O_CLOEXEC), 0);
	assert_int_equal(pipe2(out, O_CLOEXEC), 0);
	k->pid = fork();
	assert_true(k->pid >= 0);
	if (!k->pid) {
		/* Only our ends: the parent's closing them is our EOF. */
		close(in[1]);
		close(out[0]);
		kid_main(in[0], out[1]);
	}
	live_kid = k->pid;
	close(in[0]);
	close(out[1]);
	k->to = in[1];
	k->from = out[0];
	assert_int_equal(read(k->from, &k->data, sizeof(k->data)),
			 sizeof(k->data));
}

static void test_mapping_gone(void **state)
{
	char file[256], pid[16], range[64];
	struct pt_run r;
	struct kid k;
	int status;
	char c;

	(void)state;
	path_in_dir(file, sizeof(file), "gone.bgs");
	kid_start(&k);
	snprintf(pid, sizeof(pid), "%d", (int)k.pid);
	snprintf(range, sizeof(range), "%llx-%llx", (unsigned long long)k.data,
		 (unsigned long long)k.data + (1 << 20));
	pt_run(&r, RUN_MS, -1, "save", "--pid", pid, "-o", file, "-q", NULL);
	if (r.code)
		fail_msg("save: exit %d: %s", r.code, r.err);
	pt_run_free(&r);
	assert_int_equal(write(k.to, "j", 1), 1);
	assert_int_equal(read(k.from, &c, 1), 1);
	/* The whole process: a region of the snapshot is gone, refused. */
	pt_run(&r, RUN_MS, -1, "restore", file, "--pid", pid, "--dry-run",
	       NULL);
	fprintf(stderr, "# %s", r.err);
	assert_int_equal(r.code, 1);
	assert_non_null(strstr(r.err, "nothing was written"));
	pt_run_free(&r);
	/* Only the data region: the thread's stack is none of its concern. */
	pt_run(&r, RUN_MS, -1, "restore", file, "--pid", pid, "--include",
	       range, NULL);
	if (r.code)
		fail_msg("restore --include: exit %d: %s", r.code, r.err);
	pt_run_free(&r);
	close(k.to);
	assert_int_equal(waitpid(k.pid, &status, 0), k.pid);
	live_kid = 0;
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0); /* 3: not restored */
	close(k.from);
	unlink(file);
}

/* ---- bad files ----------------------------------------------------------- */

static void write_file(const char *path, const uint8_t *data, size_t len)
{
	const int fd =
		open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* Bytes of a record header: 56 with the STORED_SUMS flag (1.1), else 48
 * (FORMAT.md §3). */
static size_t rechdr_len(const uint8_t *f)
{
	return f[20] & 1 ? 56 : 48;
}

/* The offset of the first payload byte of the first PAGES record that
 * stores data (FORMAT.md §1, §3). That byte matters in every encoding
 * and format: in 1.0, a byte of lz4 data further in may be a match
 * offset, and a changed offset that points at equal bytes decodes to the
 * same pages. In lz4 the first byte holds the length of the first
 * literals. */
static size_t payload_byte(const uint8_t *f, size_t len)
{
	const size_t hl = rechdr_len(f);
	size_t off = le64(f + 12) & 0xffffffff; /* header_len */

	while (off + hl <= len) {
		const uint8_t type = f[off + 4];
		const uint64_t plen = le64(f + off + 24);

		if (type == 2 && plen > 0)
			return off + hl;
		if (type == 4)
			break;
		off += hl + plen;
	}
	fail_msg("no PAGES record with a payload");
	return 0;
}

/* Where a damaged copy of the good file is made. */
enum damage {
	BAD_MAGIC,
	TRUNCATED,
	HEADER_BYTE,
	PAYLOAD_BYTE,
	INDEX_BYTE,
	FOOTER_BYTE,
	EMPTY,
	RANDOM,
	DIRECTORY,
	MISSING,
	NDAMAGE
};

static const char *const damage_names[] = {
	"bad magic",   "truncated", "header byte", "payload byte", "index byte",
	"footer byte", "empty",	    "random",	   "directory",	   "missing",
};

static void make_bad(enum damage d, const uint8_t *good, size_t len,
		     const char *path)
{
	uint8_t *f = malloc(len);
	uint64_t rng = 0x1234;

	memcpy(f, good, len);
	switch (d) {
	case BAD_MAGIC:
		f[1] ^= 0x20;
		break;
	case TRUNCATED:
		len /= 2;
		break;
	case HEADER_BYTE:
		f[100] ^= 0x01; /* the host name: only the checksum knows */
		break;
	case PAYLOAD_BYTE:
		f[payload_byte(f, len)] ^= 0x40;
		break;
	case INDEX_BYTE: /* the first entry's offset field, low byte */
		f[le64(f + len - 64 + 8) + rechdr_len(f)] ^= 0x08;
		break;
	case FOOTER_BYTE:
		f[len - 64 + 30] ^= 0x01; /* nrecords */
		break;
	case EMPTY:
		len = 0;
		break;
	case RANDOM:
		for (size_t i = 0; i < len; i++)
			f[i] = (uint8_t)tu_rand(&rng);
		break;
	case DIRECTORY:
		assert_int_equal(mkdir(path, 0700), 0);
		free(f);
		return;
	case MISSING:
	case NDAMAGE:
		free(f);
		return;
	}
	write_file(path, f, len);
	free(f);
}

static void remove_bad(const char *path)
{
	if (unlink(path) && errno == EISDIR)
		rmdir(path);
}

static void test_bad_files(void **state)
{
	char good[256], bad[256], pid[16];
	uint8_t *file, *before, *after;
	struct pt_guest g;
	struct pt_run r;
	size_t len;

	(void)state;
	path_in_dir(good, sizeof(good), "good.bgs");
	path_in_dir(bad, sizeof(bad), "bad.bgs");
	pt_guest_start(&g, 0, "16M", "4k", NULL);
	save_guest(&g, good);
	file = pt_read_file(good, &len);
	snprintf(pid, sizeof(pid), "%d", (int)g.c.pid);
	pt_guest_must(&g, "hold");
	before = guest_memory(&g);
	for (int d = 0; d < NDAMAGE; d++) {
		make_bad((enum damage)d, file, len, bad);
		pt_run(&r, RUN_MS, -1, "verify", bad, NULL);
		fprintf(stderr, "# %-12s verify:  %d %s", damage_names[d],
			r.code, r.err);
		if (r.code != EXIT_BADFILE)
			fail_msg("verify of a %s file: exit %d",
				 damage_names[d], r.code);
		pt_one_error_line(r.err);
		pt_run_free(&r);
		restore(&r, &g, bad, NULL, NULL);
		fprintf(stderr, "# %-12s restore: %d %s", damage_names[d],
			r.code, r.err);
		if (r.code != EXIT_BADFILE)
			fail_msg("restore of a %s file: exit %d",
				 damage_names[d], r.code);
		pt_one_error_line(r.err);
		assert_non_null(strstr(r.err, "nothing was written"));
		pt_run_free(&r);
		remove_bad(bad);
	}
	after = guest_memory(&g);
	expect_same(after, before, g.len, "changed by a failed restore");
	pt_guest_untraced(&g);
	pt_guest_must(&g, "release");
	pt_guest_healthy(&g, 100, 0);
	free(before);
	free(after);
	free(file);
	pt_guest_stop(&g);
	unlink(good);
}

/* A snapshot of one guest does not fit another: refused, nothing written. */
static void test_other_process(void **state)
{
	struct pt_guest a, b;
	uint8_t *before, *after;
	char file[256];
	struct pt_run r;

	(void)state;
	path_in_dir(file, sizeof(file), "a.bgs");
	pt_guest_start(&a, 0, "16M", "4k", NULL);
	pt_guest_start(&b, 0, "16M", "4k", NULL);
	save_guest(&a, file);
	pt_guest_must(&b, "hold");
	before = guest_memory(&b);
	restore(&r, &b, file, NULL, NULL);
	fprintf(stderr, "# %s", r.err);
	assert_int_equal(r.code, 1);
	pt_one_error_line(r.err);
	assert_non_null(strstr(r.err, "nothing was written"));
	pt_run_free(&r);
	after = guest_memory(&b);
	expect_same(after, before, b.len, "changed by a refused restore");
	pt_guest_must(&b, "release");
	pt_guest_healthy(&b, 100, 0);
	free(before);
	free(after);
	pt_guest_stop(&a);
	pt_guest_stop(&b);
	unlink(file);
}

/* ---- streams checked as they arrive -------------------------------------- */

#define FEED_MAX (256ULL << 20) /* what a stream test offers at most */

/* Bytes of every mapping of @pid (/proc/PID/maps). */
static uint64_t region_bytes(pid_t pid)
{
	char path[64], line[512];
	unsigned long long a, b;
	uint64_t total = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	f = fopen(path, "re");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%llx-%llx", &a, &b) == 2)
			total += b - a;
	fclose(f);
	return total;
}

/* Until @pid is blocked in read(2) on its standard input
 * (/proc/PID/syscall: "0 0x0 ..."). */
static void wait_reading_stdin(pid_t pid)
{
	char path[64], line[256];

	snprintf(path, sizeof(path), "/proc/%d/syscall", (int)pid);
	for (int i = 0; i < 2000; i++) {
		FILE *f = fopen(path, "re");
		bool reading = false;

		if (f) {
			reading = fgets(line, sizeof(line), f) &&
				  !strncmp(line, "0 0x0 ", 6);
			fclose(f);
		}
		if (reading)
			return;
		tu_sleep_ms(10);
	}
	fail_msg("bgsnap never waited for its standard input");
}

/* 'restore - --pid G --dry-run' reading from a pipe this test writes. */
static pid_t restore_stream(const struct pt_guest *g, int *in, int *err)
{
	char pid[16];
	int i[2], e[2];
	pid_t b;

	snprintf(pid, sizeof(pid), "%d", (int)g->c.pid);
	assert_int_equal(pipe2(i, O_CLOEXEC), 0);
	assert_int_equal(pipe2(e, O_CLOEXEC), 0);
	b = fork();
	assert_true(b >= 0);
	if (!b) {
		dup2(i[0], STDIN_FILENO);
		dup2(e[1], STDERR_FILENO);
		execl(pt_bgsnap, "bgsnap", "restore", "-", "--pid", pid,
		      "--dry-run", "-q", (char *)NULL);
		_exit(127);
	}
	close(i[0]);
	close(e[1]);
	*in = i[1];
	*err = e[0];
	return b;
}

/* Write @buf (@len bytes) to @fd again and again until its reader goes
 * or FEED_MAX bytes: the bytes written. */
static uint64_t feed(int fd, const uint8_t *buf, size_t len)
{
	uint64_t total = 0;

	while (total < FEED_MAX) {
		const ssize_t n = write(fd, buf, len);

		if (n <= 0)
			break;
		total += (uint64_t)n;
	}
	return total;
}

/* The exit status of @b and its one line on @err, in @msg. */
static int stream_end(pid_t b, int err, char *msg, size_t n)
{
	ssize_t got;
	int status;

	assert_int_equal(waitpid(b, &status, 0), b);
	got = read(err, msg, n - 1);
	msg[got > 0 ? got : 0] = '\0';
	close(err);
	fprintf(stderr, "# %s", msg);
	pt_one_error_line(msg);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

/* /dev/zero and random bytes on standard input: refused at their first
 * bytes, having read little of what was offered (it read everything,
 * 4.3 GB in 5 s from /dev/zero, before it looked). */
static void test_stream_garbage(void **state)
{
	static uint8_t buf[64 << 10];
	uint64_t rng = tu_seed(), total;
	char msg[512];
	struct pt_guest g;
	int in, err;
	pid_t b;

	(void)state;
	signal(SIGPIPE, SIG_IGN);
	pt_guest_start(&g, 0, "16M", "4k", NULL);
	for (int random = 0; random < 2; random++) {
		for (size_t i = 0; i < sizeof(buf); i++)
			buf[i] = random ? (uint8_t)tu_rand(&rng) : 0;
		b = restore_stream(&g, &in, &err);
		total = feed(in, buf, sizeof(buf));
		close(in);
		assert_int_equal(stream_end(b, err, msg, sizeof(msg)),
				 EXIT_BADFILE);
		assert_non_null(strstr(msg, "not a bgsnap"));
		fprintf(stderr, "# %s: %llu bytes taken\n",
			random ? "random" : "zeros", (unsigned long long)total);
		assert_true(total < (4u << 20));
	}
	pt_guest_healthy(&g, 100, 0);
	pt_guest_stop(&g);
}

/* The bytes of a snapshot of @g: its header and region table in
 * *@prefix bytes, then its first page record at @buf + *@rec, *@reclen
 * bytes long. */
static uint8_t *first_page_record(struct pt_guest *g, size_t *prefix,
				  size_t *rec, size_t *reclen)
{
	char file[256];
	uint64_t len64, off;
	size_t len;
	uint8_t *buf;

	path_in_dir(file, sizeof(file), "stream.bgs");
	save_guest(g, file);
	buf = pt_read_file(file, &len);
	unlink(file);
	/* The header's length at 12; a record's type at 4 and its payload's
	 * length at 24 of its 56-byte header (FORMAT.md). */
	memcpy(&len64, buf + 24 + 256, 8);
	off = 256 + 56 + len64;
	*prefix = (size_t)off;
	while (off + 56 < len && buf[off + 4] != 2) {
		memcpy(&len64, buf + off + 24, 8);
		off += 56 + len64;
	}
	assert_true(off + 56 < len);
	memcpy(&len64, buf + off + 24, 8);
	*rec = (size_t)off;
	*reclen = 56 + (size_t)len64;
	return buf;
}

/* All the page records the regions can hold, after a valid header and
 * region table: one record sent again and again is refused once there
 * are more than the regions declared can hold, not at the end. */
static void test_stream_bounded(void **state)
{
	size_t prefix, rec, reclen;
	uint64_t total, regions = 0;
	struct pt_guest g;
	char msg[512];
	uint8_t *snap;
	int in, err;
	pid_t b;

	(void)state;
	signal(SIGPIPE, SIG_IGN);
	pt_guest_start(&g, 0, "16M", "4k", NULL);
	snap = first_page_record(&g, &prefix, &rec, &reclen);
	b = restore_stream(&g, &in, &err);
	assert_int_equal(write(in, snap, prefix), (ssize_t)prefix);
	total = prefix + feed(in, snap + rec, reclen);
	close(in);
	assert_int_equal(stream_end(b, err, msg, sizeof(msg)), EXIT_BADFILE);
	assert_non_null(strstr(msg, "a snapshot of its regions can hold"));
	assert_non_null(strstr(msg, "nothing was written"));
	/* What the process maps, in all, bounds the pages. */
	regions = region_bytes(g.c.pid);
	fprintf(stderr, "# %llu bytes taken; the process maps %llu bytes\n",
		(unsigned long long)total, (unsigned long long)regions);
	assert_true(total < regions + regions / 8 + (8u << 20));
	free(snap);
	pt_guest_healthy(&g, 100, 0);
	pt_guest_stop(&g);
}

/* SIGINT while the stream is read: the restore ends at once, nothing
 * written (signals are held back only while the process is written). */
static void test_stream_sigint(void **state)
{
	size_t prefix, rec, reclen;
	struct pt_guest g;
	char msg[512];
	uint8_t *snap;
	int in, err;
	pid_t b;

	(void)state;
	pt_guest_start(&g, 0, "16M", "4k", NULL);
	snap = first_page_record(&g, &prefix, &rec, &reclen);
	b = restore_stream(&g, &in, &err);
	assert_int_equal(write(in, snap, prefix), (ssize_t)prefix);
	wait_reading_stdin(b);
	kill(b, SIGINT);
	assert_int_equal(stream_end(b, err, msg, sizeof(msg)), 1);
	assert_non_null(strstr(msg, "cancelled by"));
	assert_non_null(strstr(msg, "nothing was written"));
	close(in);
	free(snap);
	pt_guest_untraced(&g);
	pt_guest_healthy(&g, 100, 0);
	pt_guest_stop(&g);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_4k),
		cmocka_unit_test(test_round_trip_memfd),
		cmocka_unit_test(test_round_trip_nonroot),
		cmocka_unit_test(test_restore_from_pipe),
		cmocka_unit_test_teardown(test_mapping_gone, kill_kid),
		cmocka_unit_test(test_bad_files),
		cmocka_unit_test(test_other_process),
		cmocka_unit_test(test_stream_garbage),
		cmocka_unit_test(test_stream_bounded),
		cmocka_unit_test(test_stream_sigint),
	};

	pt_init(argc, argv);
	/* By hand: only the cases whose name matches (a glob). */
	if (getenv("BGSNAP_TEST_FILTER"))
		cmocka_set_test_filter(getenv("BGSNAP_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
