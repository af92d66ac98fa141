/* SPDX-License-Identifier: MIT */
/*
 * kill -9 of 'bgsnap save --pid' at random points of a save, the target
 * being a 'bgsnap guest' whose writers run throughout. After each kill:
 *   - the guest answers, and every one of its writers makes progress
 *     within a deadline (nothing left blocked on a fault);
 *   - its books balance, it has no tracer, no mapping registered with a
 *     userfaultfd and no page of its memory still write-protected;
 *   - it holds no userfaultfd descriptor either, but for one known window:
 *     killed between making the uffd inside the guest (an injected
 *     userfaultfd()) and closing the guest's copy of it, bgsnap leaves
 *     that descriptor behind, with nothing registered on it. Such trials
 *     are counted and reported, and the descriptor must protect nothing;
 *   - no file exists under the final name, unless the save had finished
 *     (then the file must verify): a file there is always complete.
 * The kill instant is drawn over the whole life of a save (attach,
 * blackout, copy, commit), measured first on the same guest.
 *
 * $BGSNAP_KILL_TRIALS sets the number of trials (default 10; the stress
 * run uses more). $BGSNAP_TEST_SEED replays a run.
 */
#include "pid_util.h"
#include "testutil.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define GUEST_SIZE     "64M"
#define HEALTH_MS      150
#define DEADLINE_MS    5000
#define DEFAULT_TRIALS 10

static unsigned trials(void)
{
	const char *e = getenv("BGSNAP_KILL_TRIALS");
	const long n = e ? atol(e) : DEFAULT_TRIALS;

	return n > 0 ? (unsigned)n : DEFAULT_TRIALS;
}

/* How long one whole save of @g takes here, in microseconds. */
static uint64_t measure_save_us(struct pt_guest *g, const char *file)
{
	const uint64_t t0 = tu_now_ns();
	struct pt_run r;
	char pid[16];

	snprintf(pid, sizeof(pid), "%d", (int)g->c.pid);
	pt_run(&r, 60000, -1, "save", "--pid", pid, "-o", file, "-q", NULL);
	if (r.code)
		fail_msg("save: exit %d: %s", r.code, r.err);
	pt_run_free(&r);
	unlink(file);
	return (tu_now_ns() - t0) / 1000;
}

/* Temporary files a killed save leaves (it cannot remove them). */
static void remove_leftovers(void)
{
	DIR *d = opendir(pt_dir());
	struct dirent *e;

	assert_non_null(d);
	while ((e = readdir(d))) {
		char path[512];

		if (e->d_name[0] != '.' || !strstr(e->d_name, ".tmp"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", pt_dir(), e->d_name);
		unlink(path);
	}
	closedir(d);
}

/* Trials that left a guest an (idle) userfaultfd descriptor, and how
 * many the current guest holds. */
static unsigned left_fd;
static int guest_fds;

/* 1 if the save was killed before it finished, 0 if it had finished. */
static int one_trial(struct pt_guest *g, const char *file, uint64_t delay_us)
{
	char pid[16];
	struct pt_run r;
	int status, finished;
	pid_t b;

	snprintf(pid, sizeof(pid), "%d", (int)g->c.pid);
	b = pt_spawn("save", "--pid", pid, "-o", file, "-q", NULL);
	usleep((useconds_t)delay_us);
	kill(b, SIGKILL);
	assert_int_equal(waitpid(b, &status, 0), b);
	finished = WIFEXITED(status);
	if (finished && WEXITSTATUS(status))
		fail_msg("the save failed before it was killed: exit %d",
			 WEXITSTATUS(status));
	pt_guest_healthy(g, HEALTH_MS, DEADLINE_MS);
	pt_guest_unprotected(g);
	if (pt_guest_leftovers(g) > guest_fds) {
		if (!WIFSIGNALED(status))
			fail_msg("a save that ended left the guest a "
				 "userfaultfd");
		guest_fds++;
		left_fd++;
	}
	if (!access(file, F_OK)) {
		/* Renamed into place: complete, even if killed after. */
		pt_run(&r, 60000, -1, "verify", file, "--quiet", NULL);
		if (r.code)
			fail_msg("a file under the final name does not "
				 "verify: %s",
				 r.err);
		pt_run_free(&r);
		unlink(file);
		finished = 1;
	}
	remove_leftovers();
	return !finished;
}

/* @n trials on a guest of @kind; returns how many killed mid-save. */
static unsigned kill_trials(const char *kind, unsigned n)
{
	uint64_t seed = tu_seed(), span_us, other;
	unsigned mid = 0;
	struct pt_guest g;
	char file[256];

	snprintf(file, sizeof(file), "%s/kill-%s.bgs", pt_dir(), kind);
	pt_guest_start(&g, 0, GUEST_SIZE, kind, NULL);
	guest_fds = 0;
	tu_sleep_ms(100);
	/* Draw within the shorter of two whole saves: on a loaded machine
	 * they vary, and a kill after the end tests little. The span shrinks
	 * further each time a kill comes too late. */
	span_us = measure_save_us(&g, file);
	other = measure_save_us(&g, file);
	span_us = other < span_us ? other : span_us;
	for (unsigned i = 0; i < n; i++) {
		const uint64_t delay = tu_rand(&seed) % span_us;
		const int killed = one_trial(&g, file, delay);

		mid += (unsigned)killed;
		if (!killed)
			span_us = span_us * 3 / 4 + 1;
	}
	fprintf(stderr,
		"# %s: %u trials, %u killed mid-save (span now "
		"%llu us)\n",
		kind, n, mid, (unsigned long long)span_us);
	pt_guest_stop(&g);
	return mid;
}

static void test_kill(void **state)
{
	static const char *const kinds[] = { "4k", "thp", "memfd" };
	const unsigned n = trials();
	unsigned mid = 0;

	(void)state;
	/* Spread over the kinds, the first getting what does not divide. */
	for (unsigned k = 0; k < 3; k++)
		if (n / 3 + (k == 0 ? n % 3 : 0))
			mid += kill_trials(kinds[k],
					   n / 3 + (k == 0 ? n % 3 : 0));
	fprintf(stderr,
		"# %u kills left the guest an idle userfaultfd "
		"descriptor (killed while bgsnap made it there)\n",
		left_fd);
	/* The draw covers the save: most kills must land inside it, or the
	 * test proved little. */
	if (mid * 2 < n)
		fail_msg("only %u of %u kills came before the save ended", mid,
			 n);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kill),
	};

	pt_init(argc, argv);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
