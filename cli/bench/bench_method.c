/* SPDX-License-Identifier: MIT */
/*
 * bgsnap bench: one run of one method on a fresh guest (the methods are
 * listed in 'bgsnap bench --help'). A uffd-pid save runs the library's
 * fault and copier threads in this process; see cmd_bench.c's DESIGN.
 */
#include "bench.h"

#include <bgsnap.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- one run of a method ----------------------------------------------- */

struct ctx {
	struct bench *b;
	uint64_t size;
	struct guest_proc g;
	char file[PATH_MAX], parent[PATH_MAX];
	struct run *out;
};

void bench_run_init(struct run *r)
{
	for (int i = 0; i < NFIG; i++)
		r->f[i] = NAN;
	r->ok = false;
}

/* The store settings every method shares, as guest save words. */
static void save_words(const struct bench *b, char *buf, size_t n)
{
	snprintf(buf, n, "buffer=%llu compress=%s threads=%llu%s%s nomem",
		 (unsigned long long)b->buffer, b->no_compress ? "none" : "lz4",
		 (unsigned long long)b->threads, b->cpus ? " cpus=" : "",
		 b->cpus ? b->cpus : "");
}

/* The start window of a guest reply. */
static void take_window(struct ctx *c, const char *reply)
{
	double *f = c->out->f;
	const double pause_at = guest_num_in(reply, "start", "pause_at_ns");

	f[F_BLACKOUT] = guest_num_in(reply, "start", "stop_max_ns") / 1e6;
	f[F_WINDOW] = guest_num_in(reply, "start", "window_ns") / 1e6;
	f[F_WORST_AT] = guest_num_in(reply, "start", "worst_due_ns") / 1e6;
	f[F_PAUSE_AT] = pause_at > 0 ? pause_at / 1e6 : NAN;
}

/* The figures of a guest 'save' reply. */
static void take_save(struct ctx *c, const char *reply)
{
	double *f = c->out->f;
	const double wall = guest_num(reply, "wall_ns") / 1e9;

	take_window(c, reply);
	f[F_PAUSE] = guest_num(reply, "blackout_ms");
	f[F_ARM] = guest_num(reply, "arm_ms");
	f[F_REPROT] = guest_num(reply, "reprotected_pages");
	f[F_ELAPSED] = wall;
	f[F_GIBS] = (double)c->size / GIB / wall;
	f[F_WDURING] = guest_num_in(reply, "writers", "ops_per_s");
	f[F_P50] = guest_num_in(reply, "writers", "lat_p50_ns") / 1e3;
	f[F_P99] = guest_num_in(reply, "writers", "lat_p99_ns") / 1e3;
	f[F_MAX] = guest_num_in(reply, "writers", "lat_max_ns") / 1e3;
	f[F_FILE] = guest_num(reply, "bytes_written");
	f[F_FAULTS] = guest_num(reply, "faults");
	f[F_STALL99] = guest_num(reply, "stall_us_p99");
	f[F_BUFFER] = guest_num(reply, "peak_buffer_bytes");
	for (int k = F_CPU_COPY; k <= F_CPU_WORKERS; k++)
		f[k] = guest_num(reply, bench_fig_keys[k]);
}

/* The methods uffd, uffd-1phase, fork and stw, where the guest saves
 * itself with the embedded API. */
static int run_embedded(struct ctx *c, enum method m)
{
	static const char *const how[NMETHODS] = {
		[M_UFFD] = "uffd",
		[M_UFFD_1PHASE] = "uffd one-phase",
		[M_FORK] = "fork",
		[M_STW] = "stw",
	};
	char cmd[PATH_MAX + 256], words[128];
	struct memwatch mw;
	double child;
	int r;

	save_words(c->b, words, sizeof(words));
	snprintf(cmd, sizeof(cmd), "save %s %s %s", c->file, how[m], words);
	r = bench_memwatch_start(&mw, &c->g);
	if (r) {
		cli_error("bench: %s", strerror(-r));
		return -1;
	}
	r = bench_guest_call_ms(&c->g, SAVE_MS, cmd);
	child = r ? 0 : guest_num(c->g.c.reply, "child_private_bytes");
	bench_memwatch_stop(&mw, isnan(child) ? 0 : (uint64_t)child, c->out->f);
	if (r)
		return -1;
	take_save(c, c->g.c.reply);
	if (m == M_FORK)
		c->out->f[F_PAUSE] = guest_num(c->g.c.reply, "fork_ms");
	return 0;
}

/* The guest's memory, from outside, as 'bgsnap save --pid --include
 * RANGE' does; the start window closed at the start's return. */
static int pid_start(struct ctx *c, struct bgsnap *h, uint64_t *started)
{
	const char *include[] = { c->g.range };
	const struct bgsnap_target_opts topts = { .size = sizeof(topts),
						  .include = include,
						  .ninclude = 1 };
	const struct bgsnap_save_opts opts = {
		.size = sizeof(opts),
		.buffer_budget = c->b->buffer,
		.compression = c->b->no_compress ? BGSNAP_COMPRESS_NONE
						 : BGSNAP_COMPRESS_LZ4,
		.threads = (unsigned)c->b->threads,
		.cpus = c->b->cpus,
	};
	sigset_t old;
	int r;

	/* Signals are held back: the library may have the guest stopped
	 * while it attaches. */
	sigprocmask(SIG_BLOCK, cli_stop_signals(), &old);
	r = bgsnap_target_pid(h, c->g.c.pid, &topts);
	/* The start window opens at the start call, as for the others. */
	if (!r)
		r = bench_guest_call(&c->g, "window open") ? -EIO : 0;
	if (!r)
		r = bgsnap_save_start(h, c->file, &opts);
	*started = cli_now_ns();
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (r)
		cli_error("bench: uffd-pid: process %d: %s", (int)c->g.c.pid,
			  *bgsnap_last_error(h) ? bgsnap_last_error(h)
						: bgsnap_strerror(r));
	return r;
}

static int pid_save(struct ctx *c, struct bgsnap *h, struct bgsnap_stats *st,
		    uint64_t *t0, uint64_t *done)
{
	char cmd[64];
	uint64_t started;
	int r;

	if (bench_guest_call(&c->g, "reset"))
		return -1;
	*t0 = cli_now_ns();
	if (pid_start(c, h, &started))
		return -1;
	snprintf(cmd, sizeof(cmd), "window close %llu",
		 (unsigned long long)started);
	r = bench_guest_call(&c->g, cmd);
	if (!r) {
		r = bench_guest_call(&c->g, "window get");
		take_window(c, c->g.c.reply);
	}
	if (r)
		bgsnap_cancel(h);
	r = bgsnap_wait(h) || r ? -1 : 0;
	*done = cli_now_ns();
	if (r)
		cli_error("bench: uffd-pid: %s", *bgsnap_last_error(h)
							 ? bgsnap_last_error(h)
							 : "the save failed");
	else {
		st->size = sizeof(*st);
		bgsnap_stats(h, st);
	}
	return r;
}

static int run_pid(struct ctx *c)
{
	double *f = c->out->f;
	struct bgsnap_stats st = { .size = sizeof(st) };
	struct memwatch mw;
	struct bgsnap *h;
	uint64_t t0 = 0, done = 0;
	int r = bgsnap_new(&h);

	if (r) {
		cli_error("bench: %s", bgsnap_strerror(r));
		return -1;
	}
	r = bench_memwatch_start(&mw, &c->g);
	if (!r) {
		r = pid_save(c, h, &st, &t0, &done);
		if (!r)
			r = bench_guest_call(&c->g, "stats");
		bench_memwatch_stop(&mw, 0, f);
	}
	bgsnap_free(h);
	if (r)
		return -1;
	f[F_PAUSE] = (double)st.blackout_ns / 1e6;
	f[F_ARM] = (double)st.arm_ns / 1e6;
	f[F_REPROT] = (double)st.reprotected_pages;
	f[F_ELAPSED] = (double)(done - t0) / 1e9;
	f[F_GIBS] = (double)c->size / GIB / f[F_ELAPSED];
	f[F_WDURING] = guest_num(c->g.c.reply, "ops_per_s");
	f[F_P50] = guest_num(c->g.c.reply, "lat_p50_ns") / 1e3;
	f[F_P99] = guest_num(c->g.c.reply, "lat_p99_ns") / 1e3;
	f[F_MAX] = guest_num(c->g.c.reply, "lat_max_ns") / 1e3;
	f[F_FILE] = (double)st.bytes_written;
	f[F_FAULTS] = (double)st.faults;
	f[F_STALL99] = (double)st.stall_ns_p99 / 1e3;
	f[F_BUFFER] = (double)st.peak_buffer_bytes;
	f[F_CPU_COPY] = (double)st.cpu_copy_ns / 1e9;
	f[F_CPU_COMPRESS] = (double)st.cpu_compress_ns / 1e9;
	f[F_CPU_CHECKSUM] = (double)st.cpu_checksum_ns / 1e9;
	f[F_CPU_UNPROTECT] = (double)st.cpu_unprotect_ns / 1e9;
	f[F_CPU_COPIER] = (double)st.cpu_copier_ns / 1e9;
	f[F_CPU_FAULT] = (double)st.cpu_fault_ns / 1e9;
	f[F_CPU_WORKERS] = (double)st.cpu_workers_ns / 1e9;
	return 0;
}

/* A tracked snapshot of quiet memory (writers held): a base from which
 * what the writers change is measured. */
static int tracked_base(struct ctx *c, const char *extra)
{
	char cmd[PATH_MAX + 256], words[128];

	save_words(c->b, words, sizeof(words));
	snprintf(cmd, sizeof(cmd), "save %s uffd keep held %s %s", c->parent,
		 words, extra);
	if (bench_guest_call(&c->g, "hold"))
		return -1;
	if (bench_guest_call_ms(&c->g, SAVE_MS, cmd)) {
		bench_guest_call(&c->g, "release");
		return -1;
	}
	c->out->f[F_PARENT_ELAPSED] = guest_num(c->g.c.reply, "wall_ns") / 1e9;
	c->out->f[F_PARENT_FILE] = guest_num(c->g.c.reply, "bytes_written");
	return bench_guest_call(&c->g, "release");
}

/* Wait between the parent snapshot and the incremental one: --incr-gap,
 * or until --incr-dirty percent of the pages were written. */
static int incr_gap(struct ctx *c)
{
	const uint64_t end = cli_now_ns() + c->b->incr_gap_ns;
	const double want = (double)c->size / PAGE * c->b->incr_dirty / 100;

	while (cli_now_ns() < end) {
		if (cli_interrupted())
			return -1;
		if (c->b->incr_dirty > 0) {
			if (bench_guest_call(&c->g, "written"))
				return -1;
			if (guest_num(c->g.c.reply, "pages") >= want)
				return 0;
		}
		nanosleep(&(struct timespec){ 0, 5000000 }, NULL);
	}
	return 0;
}

static int run_incr(struct ctx *c)
{
	char cmd[PATH_MAX + 256], words[128];
	struct memwatch mw;
	int r;

	if (tracked_base(c, "") || incr_gap(c))
		return -1;
	save_words(c->b, words, sizeof(words));
	/* Tracking goes on, as in a chain ('bgsnap watch'). */
	snprintf(cmd, sizeof(cmd), "save %s uffd incremental keep %s", c->file,
		 words);
	r = bench_memwatch_start(&mw, &c->g);
	if (r) {
		cli_error("bench: %s", strerror(-r));
		return -1;
	}
	r = bench_guest_call_ms(&c->g, SAVE_MS, cmd);
	bench_memwatch_stop(&mw, 0, c->out->f);
	if (r)
		return -1;
	take_save(c, c->g.c.reply);
	c->out->f[F_WRITTEN] = guest_num(c->g.c.reply, "pages_total") -
			       guest_num(c->g.c.reply, "pages_parent");
	return 0;
}

static int run_rollback(struct ctx *c)
{
	char undo[64], cmd[64];
	/* Room for the content of what is written before the hold. */
	const uint64_t budget =
		c->size / 25 > (16u << 20) ? c->size / 25 : 16u << 20;

	snprintf(undo, sizeof(undo), "undo=%llu", (unsigned long long)budget);
	snprintf(cmd, sizeof(cmd), "rollback dirty=%g timeout=60s",
		 ROLLBACK_PCT);
	if (tracked_base(c, undo) || bench_guest_call(&c->g, cmd))
		return -1;
	c->out->f[F_ROLLBACK] = guest_num(c->g.c.reply, "rollback_ns") / 1e6;
	c->out->f[F_ROLLED] = guest_num(c->g.c.reply, "rolled_back_pages");
	c->out->f[F_WRITTEN] = guest_num(c->g.c.reply, "written_pages");
	return bench_guest_call(&c->g, "untrack");
}

/* Let the writers warm up, then measure them alone for BEFORE_MS: their
 * transfers a second and the longest delay one saw, with no save. */
static int writers_alone(struct ctx *c)
{
	if (!cli_pause_ms(WARMUP_MS) || bench_guest_call(&c->g, "reset") ||
	    !cli_pause_ms(BEFORE_MS) || bench_guest_call(&c->g, "stats"))
		return -1;
	c->out->f[F_WBEFORE] = guest_num(c->g.c.reply, "ops_per_s");
	c->out->f[F_NOISE] = guest_num(c->g.c.reply, "stop_max_ns") / 1e6;
	return 0;
}

int bench_run_method(struct bench *b, uint64_t size, enum method m,
		     struct run *out)
{
	struct ctx c = { .b = b, .size = size, .out = out };
	double load[3];
	uint64_t t0 = cli_now_ns();
	int r;

	bench_run_init(out);
	bench_load_avg(load);
	out->f[F_LOAD] = load[0];
	snprintf(c.file, sizeof(c.file), "%s/%s.bgs", b->dir,
		 bench_method_names[m]);
	snprintf(c.parent, sizeof(c.parent), "%s/%s-parent.bgs", b->dir,
		 bench_method_names[m]);
	r = bench_guest_start(b, size, &c.g);
	if (!r)
		r = writers_alone(&c);
	if (!r) {
		bench_progress(
			b, "  %s: guest ready in %.1f s, %.2f M transfers/s",
			bench_method_names[m],
			(double)(cli_now_ns() - t0) / 1e9,
			out->f[F_WBEFORE] / 1e6);
		switch (m) {
		case M_UFFD_PID:
			r = run_pid(&c);
			break;
		case M_UFFD_INCR:
			r = run_incr(&c);
			break;
		case M_ROLLBACK:
			r = run_rollback(&c);
			break;
		default:
			r = run_embedded(&c, m);
		}
	}
	guest_end(&c.g.c, 2000);
	unlink(c.parent);
	bench_settle(b->dir, c.file);
	if (r)
		return -1;
	out->f[F_WRATIO] = out->f[F_WDURING] / out->f[F_WBEFORE];
	out->ok = true;
	return 0;
}
