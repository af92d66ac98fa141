/* SPDX-License-Identifier: MIT */
#include "pid_util.h"

#include "testutil.h"
#include "tu_target.h"
#include "guest_bank.h"
#include "guest_client.h"
#include "bgsnap.h"
#include "uffd.h"

#include <errno.h>
#include <math.h>
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
#include <time.h>
#include <unistd.h>

#define DEFAULT_TIMEOUT_MS 20000
#define MAX_ARGS	   32

const char *pt_bgsnap;

void pt_init(int argc, char **argv)
{
	struct bgsnap_capability caps[BGSNAP_MAX_CAPABILITIES];
	int n;

	if (argc < 2) {
		fprintf(stderr, "usage: %s BGSNAP_BINARY\n", argv[0]);
		exit(2);
	}
	pt_bgsnap = argv[1];
	/* Not root is no missing kernel feature: a failure, said so. */
	if (geteuid() != 0) {
		fprintf(stderr, "# FAIL: these tests save processes of other "
				"users and need root; run the suite as root\n");
		exit(1);
	}
	/* As root, a capability still missing is the kernel's. */
	n = bgsnap_probe(caps, BGSNAP_MAX_CAPABILITIES);
	for (int i = 0; i < n; i++)
		if (caps[i].required && !caps[i].ok) {
			fprintf(stderr, "# SKIP: this kernel lacks %s: %s\n",
				caps[i].name, caps[i].detail);
			exit(77);
		}
	/* A guest we started dies with us, whatever kills us. */
	signal(SIGPIPE, SIG_IGN);
}

const char *pt_dir(void)
{
	return tu_tmpdir();
}

/* ---- parsing replies ----------------------------------------------------- */

double pt_num(const char *json, const char *key)
{
	const double v = guest_num(json, key);

	if (isnan(v))
		fail_msg("no key '%s' in %s", key, json);
	return v;
}

/* ---- guests -------------------------------------------------------------- */

static void collect_args(const char **argv, size_t *argc, va_list ap)
{
	const char *a;

	while ((a = va_arg(ap, const char *)) && *argc < MAX_ARGS - 1)
		argv[(*argc)++] = a;
	argv[*argc] = NULL;
}

void pt_guest_start(struct pt_guest *g, unsigned uid, const char *size,
		    const char *kind, ...)
{
	const char *argv[MAX_ARGS] = { "bgsnap", "guest",  "--size",
				       size,	 "--kind", kind };
	size_t argc = 6;
	va_list ap;

	memset(g, 0, sizeof(*g));
	va_start(ap, kind);
	collect_args(argv, &argc, ap);
	va_end(ap);
	assert_int_equal(guest_spawn(&g->c, pt_bgsnap, argv, uid), 0);
	pt_guest_must(g, "info");
	g->addr = (uint64_t)pt_num(g->c.reply, "addr");
	g->len = (uint64_t)pt_num(g->c.reply, "len");
	g->seed = (uint64_t)pt_num(g->c.reply, "seed");
	assert_true(guest_str(g->c.reply, "range", g->range, sizeof(g->range)));
}

static uint64_t now_ms(void)
{
	return tu_now_ns() / 1000000;
}

static bool __attribute__((format(printf, 3, 0)))
vcall(struct pt_guest *g, int timeout_ms, const char *fmt, va_list ap)
{
	char line[512];
	int r;

	vsnprintf(line, sizeof(line), fmt, ap);
	r = guest_request(
		&g->c, timeout_ms ? (uint64_t)timeout_ms : DEFAULT_TIMEOUT_MS,
		line);
	if (r)
		fail_msg("guest %d: no reply to '%s': %s (hung or gone)",
			 (int)g->c.pid, line, strerror(-r));
	return guest_reply_ok(&g->c);
}

bool pt_guest_call(struct pt_guest *g, int timeout_ms, const char *fmt, ...)
{
	va_list ap;
	bool ok;

	va_start(ap, fmt);
	ok = vcall(g, timeout_ms, fmt, ap);
	va_end(ap);
	return ok;
}

void pt_guest_must(struct pt_guest *g, const char *fmt, ...)
{
	va_list ap;
	bool ok;

	va_start(ap, fmt);
	ok = vcall(g, 0, fmt, ap);
	va_end(ap);
	if (!ok)
		fail_msg("guest %d: %s", (int)g->c.pid, g->c.reply);
}

void pt_guest_stop(struct pt_guest *g)
{
	guest_end(&g->c, 5000);
}

void pt_guest_kill(struct pt_guest *g)
{
	guest_kill(&g->c);
}

void pt_guest_healthy(struct pt_guest *g, unsigned run_ms, int timeout_ms)
{
	const unsigned deadline_ms = 5000 > run_ms ? 5000 : run_ms;
	unsigned waited = 0;

	if (!pt_guest_call(g, timeout_ms, "reset"))
		fail_msg("guest %d: reset: %s", (int)g->c.pid, g->c.reply);
	/* Every writer must move within the deadline; on a loaded machine
	 * a thread may wait its turn for a while, so look a few times. */
	do {
		tu_sleep_ms(waited ? 50 : run_ms);
		waited += waited ? 50 : run_ms;
		if (!pt_guest_call(g, timeout_ms, "stats"))
			fail_msg("guest %d: stats: %s", (int)g->c.pid,
				 g->c.reply);
	} while (pt_num(g->c.reply, "ops_min") < 1 && waited < deadline_ms);
	if (pt_num(g->c.reply, "ops_min") < 1)
		fail_msg("guest %d: a writer made no progress in %u ms: %s",
			 (int)g->c.pid, waited, g->c.reply);
	if (!pt_guest_call(g, timeout_ms, "check"))
		fail_msg("guest %d: its books do not balance: %s",
			 (int)g->c.pid, g->c.reply);
}

int pt_tracer_of(pid_t pid)
{
	char path[64], buf[4096];
	const char *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	p = strstr(buf, "TracerPid:");
	return p ? atoi(p + 10) : -1;
}

/* Fail if a mapping of the guest is registered with a userfaultfd
 * (VmFlags uw, um or ui in smaps). */
static void no_registered_range(const struct pt_guest *g)
{
	char path[64], line[512];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/smaps", (int)g->c.pid);
	f = fopen(path, "re");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmFlags:", 8) &&
		    (strstr(line, " uw") || strstr(line, " um") ||
		     strstr(line, " ui")))
			fail_msg("guest %d: a mapping is still registered "
				 "with a userfaultfd: %s",
				 (int)g->c.pid, line);
	fclose(f);
}

int pt_guest_leftovers(const struct pt_guest *g)
{
	const int tracer = pt_tracer_of(g->c.pid);

	if (tracer < 0)
		fail_msg("guest %d: no /proc/%d/status", (int)g->c.pid,
			 (int)g->c.pid);
	if (tracer)
		fail_msg("guest %d is still traced by %d", (int)g->c.pid,
			 tracer);
	no_registered_range(g);
	return tu_count_fds(g->c.pid, "userfaultfd");
}

void pt_guest_untraced(const struct pt_guest *g)
{
	if (pt_guest_leftovers(g) != 0)
		fail_msg("guest %d still holds a userfaultfd", (int)g->c.pid);
}

void pt_guest_mapping(const struct pt_guest *g, char *range, size_t n)
{
	char path[64], line[512];
	unsigned long long start, end;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)g->c.pid);
	f = fopen(path, "re");
	assert_non_null(f);
	range[0] = '\0';
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%llx-%llx", &start, &end) == 2 &&
		    start <= g->addr && g->addr < end) {
			snprintf(range, n, "%llx-%llx", start, end);
			break;
		}
	fclose(f);
	if (!range[0])
		fail_msg("guest %d: no mapping holds its memory at 0x%llx",
			 (int)g->c.pid, (unsigned long long)g->addr);
}

static int report_protected(void *arg, uint64_t start, uint64_t end,
			    uint64_t cats)
{
	(void)end;
	fprintf(stderr,
		"# guest page 0x%llx is still write-protected "
		"(categories 0x%llx)\n",
		(unsigned long long)start, (unsigned long long)cats);
	*(int *)arg = 1;
	return 1;
}

void pt_guest_unprotected(const struct pt_guest *g)
{
	/* Present or swapped (a marker) and not WRITTEN: the uffd-wp bit. */
	const struct bgs_scan_query q = {
		.anyof = PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
		.exclude = PAGE_IS_WRITTEN,
		.report = PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
	};
	struct bgs_pagemap pm;
	int found = 0;

	assert_int_equal(bgs_uffd_pagemap_open(&pm, g->c.pid), 0);
	assert_true(bgs_uffd_pagemap_scan(&pm, g->addr, g->addr + g->len, &q,
					  report_protected, &found) >= 0);
	bgs_uffd_pagemap_close(&pm);
	if (found)
		fail_msg("guest %d: memory left write-protected",
			 (int)g->c.pid);
}

/* ---- running the binary -------------------------------------------------- */

static char *slurp_fd(int fd)
{
	struct stat st;
	char *s;

	assert_int_equal(fstat(fd, &st), 0);
	s = malloc((size_t)st.st_size + 1);
	assert_non_null(s);
	assert_int_equal(pread(fd, s, (size_t)st.st_size, 0), st.st_size);
	s[st.st_size] = '\0';
	close(fd);
	return s;
}

static pid_t spawn(const char **argv, int out, int err)
{
	const pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid)
		return pid;
	if (dup2(out, STDOUT_FILENO) < 0 || dup2(err, STDERR_FILENO) < 0)
		_exit(126);
	execv(pt_bgsnap, (char *const *)(uintptr_t)argv);
	_exit(127);
}

static int wait_code(pid_t pid, int timeout_ms, const char *what)
{
	const uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
	int status;

	while (waitpid(pid, &status, WNOHANG) != pid) {
		if (now_ms() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			fail_msg("'bgsnap %s' ran longer than %d ms", what,
				 timeout_ms);
		}
		tu_sleep_ms(5);
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

void pt_run(struct pt_run *r, int timeout_ms, int out_fd, const char *arg, ...)
{
	const char *argv[MAX_ARGS] = { "bgsnap", arg };
	size_t argc = 2;
	const int out = memfd_create("out", MFD_CLOEXEC);
	const int err = memfd_create("err", MFD_CLOEXEC);
	va_list ap;

	va_start(ap, arg);
	collect_args(argv, &argc, ap);
	va_end(ap);
	assert_true(out >= 0 && err >= 0);
	r->code = wait_code(spawn(argv, out_fd >= 0 ? out_fd : out, err),
			    timeout_ms, arg);
	r->out = slurp_fd(out);
	r->err = slurp_fd(err);
}

void pt_run_free(struct pt_run *r)
{
	free(r->out);
	free(r->err);
	r->out = r->err = NULL;
}

pid_t pt_spawn(const char *arg, ...)
{
	const char *argv[MAX_ARGS] = { "bgsnap", arg };
	size_t argc = 2;
	const int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
	pid_t pid;
	va_list ap;

	va_start(ap, arg);
	collect_args(argv, &argc, ap);
	va_end(ap);
	assert_true(null >= 0);
	pid = spawn(argv, null, null);
	close(null);
	return pid;
}

void pt_one_error_line(const char *err)
{
	const char *nl = strchr(err, '\n');

	if (strncmp(err, "bgsnap: error: ", 15) || !nl || nl[1])
		fail_msg("not one error line on stderr: '%s'", err);
}

/* ---- snapshots ----------------------------------------------------------- */

void pt_region_name(const char *file, uint64_t addr, char *name, size_t n)
{
	char err[BGSNAP_FILE_ERROR_MAX];
	struct bgsnap_file_info info = { .size = sizeof(info) };
	struct bgsnap_file *f;

	if (bgsnap_file_open(&f, file, err, sizeof(err)))
		fail_msg("%s: %s", file, err);
	bgsnap_file_info(f, &info);
	for (size_t i = 0; i < info.regions; i++) {
		struct bgsnap_file_region r = { .size = sizeof(r) };

		assert_int_equal(bgsnap_file_region(f, i, &r), 0);
		if (r.addr == addr) {
			snprintf(name, n, "%s", r.name);
			bgsnap_file_close(f);
			return;
		}
	}
	bgsnap_file_close(f);
	fail_msg("%s has no region at 0x%llx", file, (unsigned long long)addr);
}

uint8_t *pt_read_file(const char *path, size_t *len)
{
	const int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	uint8_t *buf;

	if (fd < 0)
		fail_msg("%s: %s", path, strerror(errno));
	assert_int_equal(fstat(fd, &st), 0);
	buf = malloc((size_t)st.st_size + 1);
	assert_non_null(buf);
	for (size_t done = 0; done < (size_t)st.st_size;) {
		const ssize_t n = pread(fd, buf + done,
					(size_t)st.st_size - done, (off_t)done);
		assert_true(n > 0);
		done += (size_t)n;
	}
	close(fd);
	*len = (size_t)st.st_size;
	return buf;
}

uint8_t *pt_export_guest(const struct pt_guest *g, const char *file)
{
	char name[1100], out[512];
	struct pt_run r;
	uint8_t *image;
	size_t len;

	pt_region_name(file, g->addr, name, sizeof(name));
	snprintf(out, sizeof(out), "%s/export.raw", pt_dir());
	unlink(out);
	pt_run(&r, 60000, -1, "export", file, "--region", name, "-o", out,
	       "--quiet", NULL);
	if (r.code)
		fail_msg("bgsnap export %s --region %s: exit %d: %s", file,
			 name, r.code, r.err);
	pt_run_free(&r);
	image = pt_read_file(out, &len);
	unlink(out);
	assert_int_equal(len, g->len);
	return image;
}

void pt_check_image(const struct pt_guest *g, const uint8_t *image)
{
	uint8_t *want = mmap(NULL, g->len, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	const size_t acct = 16; /* lock, writes, balance: the part they touch */
	char why[256];

	if (bank_check(image, g->len, why, sizeof(why)))
		fail_msg("the saved image is not point-in-time: %s", why);
	assert_true(want != MAP_FAILED);
	assert_int_equal(bank_format(want, g->len, g->seed), 0);
	if (memcmp(image, want, PT_PAGE))
		fail_msg("the bank's header page differs from the start");
	for (size_t pg = 2; pg < g->len / PT_PAGE; pg++)
		if (memcmp(image + pg * PT_PAGE + acct,
			   want + pg * PT_PAGE + acct, PT_PAGE - acct))
			fail_msg("page %zu: bytes the writers never touch "
				 "differ from what the guest formatted",
				 pg);
	munmap(want, g->len);
}
