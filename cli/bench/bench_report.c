/* SPDX-License-Identifier: MIT */
/*
 * bgsnap bench: the report. Medians over the runs, the tables, the
 * performance targets checked with ratios from this run, and the --json
 * document.
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

/* ---- the report ---------------------------------------------------------- */

void bench_median_runs(const struct bench *b, struct size_result *s)
{
	for (int m = 0; m < NMETHODS; m++) {
		struct run *med = &s->med[m];

		bench_run_init(med);
		for (unsigned i = 0; i < b->repeat; i++)
			med->ok |= s->runs[m][i].ok;
		for (int k = 0; k < NFIG; k++) {
			double v[MAX_REPEAT];

			for (unsigned i = 0; i < b->repeat; i++)
				v[i] = s->runs[m][i].ok ? s->runs[m][i].f[k]
							: NAN;
			med->f[k] = bench_median(v, (int)b->repeat);
		}
	}
}

static bool ran(const struct bench *b, const struct size_result *s, int m)
{
	return (b->methods & (1u << m)) && s->med[m].ok;
}

/* Formatting that shows "-" for a figure that does not apply. */
static const char *fmt_ms(char *buf, double ms)
{
	if (isnan(ms))
		return "-";
	if (ms < 0) {
		char pos[CLI_FMT_LEN];

		snprintf(buf, CLI_FMT_LEN, "-%s",
			 cli_fmt_duration(pos, (uint64_t)(-ms * 1e6 + 0.5)));
		return buf;
	}
	return cli_fmt_duration(buf, (uint64_t)(ms * 1e6 + 0.5));
}

static const char *fmt_us(char *buf, double us)
{
	return fmt_ms(buf, us / 1e3);
}

static const char *fmt_bytes(char *buf, double v)
{
	if (isnan(v))
		return "-";
	return cli_fmt_size(buf, (uint64_t)v);
}

/* @v with @decimals, and @suffix ("%" ...). */
static const char *fmt_num(char *buf, double v, int decimals,
			   const char *suffix)
{
	if (isnan(v) || isinf(v))
		return "-";
	snprintf(buf, CLI_FMT_LEN, "%.*f%s", decimals, v, suffix);
	return buf;
}

static void print_header(const struct bench *b, uint64_t size)
{
	char s[CLI_FMT_LEN], buf[CLI_FMT_LEN], rate[32];

	snprintf(rate, sizeof(rate), b->rate ? "%llu/s" : "max rate",
		 (unsigned long long)b->rate);
	printf("\n%s guest, %s pages, %u writers, %s writes at %s; %s, %s "
	       "buffers, %llu compression thread%s; %u run%s each\n",
	       cli_fmt_size(s, size), b->thp ? "THP" : "4 KiB", b->writers,
	       bench_pattern_names[b->pattern], rate,
	       b->no_compress ? "uncompressed" : "lz4",
	       cli_fmt_size(buf, b->buffer), (unsigned long long)b->threads,
	       b->threads == 1 ? "" : "s", b->repeat, b->repeat > 1 ? "s" : "");
}

static void print_main_table(const struct bench *b, const struct size_result *s)
{
	char c[10][CLI_FMT_LEN];

	printf("%-12s %9s %9s %6s %8s %9s %9s %9s %10s %10s\n", "method",
	       "blackout", "elapsed", "GiB/s", "writers", "p50", "p99", "max",
	       "memory", "file");
	for (int m = 0; m < NMETHODS; m++) {
		const double *f = s->med[m].f;

		if (!(b->methods & (1u << m)))
			continue;
		if (!s->med[m].ok) {
			printf("%-12s (failed)\n", bench_method_names[m]);
			continue;
		}
		if (m == M_ROLLBACK)
			continue;
		printf("%-12s %9s %9s %6s %8s %9s %9s %9s %10s %10s\n",
		       bench_method_names[m], fmt_ms(c[0], f[F_BLACKOUT]),
		       fmt_ms(c[1], f[F_ELAPSED] * 1e3),
		       fmt_num(c[2], f[F_GIBS], 2, ""),
		       fmt_num(c[3], f[F_WRATIO] * 100, 0, "%"),
		       fmt_us(c[4], f[F_P50]), fmt_us(c[5], f[F_P99]),
		       fmt_us(c[6], f[F_MAX]), fmt_bytes(c[7], f[F_MEM]),
		       fmt_bytes(c[8], f[F_FILE]));
	}
}

static void print_engine_table(const struct bench *b,
			       const struct size_result *s)
{
	char c[9][CLI_FMT_LEN];

	printf("%-12s %9s %9s %11s %8s %9s %9s %6s %6s %6s\n", "", "pause",
	       "arm", "reprotected", "faults", "stall p99", "buffers", "cpu:sv",
	       "wr", "main");
	for (int m = 0; m < NMETHODS; m++) {
		const double *f = s->med[m].f;

		if (!ran(b, s, m) || m == M_ROLLBACK)
			continue;
		printf("%-12s %9s %9s %11s %8s %9s %9s %6s %6s %6s\n",
		       bench_method_names[m], fmt_ms(c[0], f[F_PAUSE]),
		       fmt_ms(c[1], f[F_ARM] > 0 ? f[F_ARM] : NAN),
		       fmt_num(c[2], f[F_REPROT], 0, ""),
		       fmt_num(c[3], f[F_FAULTS], 0, ""),
		       fmt_us(c[4], f[F_STALL99] > 0 ? f[F_STALL99] : NAN),
		       fmt_bytes(c[5], f[F_BUFFER]),
		       fmt_num(c[6], f[F_CPU_SAVER] / f[F_ELAPSED], 2, ""),
		       fmt_num(c[7], f[F_CPU_WRITERS] / f[F_ELAPSED], 2, ""),
		       fmt_num(c[8], f[F_CPU_MAIN] / f[F_ELAPSED], 2, ""));
	}
}

/* Where each method's CPU time went, per GiB saved (bench_cpu_stages). */
static void print_stage_table(const struct bench *b,
			      const struct size_result *s)
{
	char c[NSTAGES + 1][CLI_FMT_LEN];
	double st[NSTAGES];

	printf("%-12s", "cpu s/GiB");
	for (int k = 0; k < NSTAGES; k++)
		printf(" %9s", bench_stage_names[k]);
	printf(" %9s\n", "lz4 alone");
	for (int m = 0; m < NMETHODS; m++) {
		const double *f = s->med[m].f;

		if (!ran(b, s, m) || isnan(f[F_CPU_COPIER]))
			continue;
		bench_cpu_stages(f, s->size, st);
		printf("%-12s", bench_method_names[m]);
		for (int k = 0; k < NSTAGES; k++)
			printf(" %9s", fmt_num(c[k], st[k], 3, ""));
		printf(" %9s\n",
		       fmt_num(c[NSTAGES], 1 / s->fl.lz4_gibs, 3, ""));
	}
}

/* Where in the start window the worst stop fell. */
static void print_window_table(const struct bench *b,
			       const struct size_result *s)
{
	char c[6][CLI_FMT_LEN];

	printf("%-12s %9s %9s %9s %9s %9s %9s\n", "start", "window", "pause at",
	       "worst at", "blackout", "pause", "noise");
	for (int m = 0; m < NMETHODS; m++) {
		const double *f = s->med[m].f;

		if (!ran(b, s, m) || m == M_ROLLBACK)
			continue;
		printf("%-12s %9s %9s %9s %9s %9s %9s\n", bench_method_names[m],
		       fmt_ms(c[0], f[F_WINDOW]), fmt_ms(c[1], f[F_PAUSE_AT]),
		       fmt_ms(c[2], f[F_WORST_AT]), fmt_ms(c[3], f[F_BLACKOUT]),
		       fmt_ms(c[4], f[F_PAUSE]), fmt_ms(c[5], f[F_NOISE]));
	}
}

static void print_specials(const struct bench *b, const struct size_result *s)
{
	const double pages = (double)s->size / PAGE;
	char c[4][CLI_FMT_LEN];

	if (ran(b, s, M_UFFD_INCR)) {
		const double *f = s->med[M_UFFD_INCR].f;

		printf("uffd-incr: stored %.0f pages (%.2f%%) written since "
		       "its "
		       "parent; %s (%.1f%% of the parent's %s), %s (%.1f%% of "
		       "%s)\n",
		       f[F_WRITTEN], f[F_WRITTEN] / pages * 100,
		       fmt_ms(c[0], f[F_ELAPSED] * 1e3),
		       f[F_ELAPSED] / f[F_PARENT_ELAPSED] * 100,
		       fmt_ms(c[1], f[F_PARENT_ELAPSED] * 1e3),
		       fmt_bytes(c[2], f[F_FILE]),
		       f[F_FILE] / f[F_PARENT_FILE] * 100,
		       fmt_bytes(c[3], f[F_PARENT_FILE]));
	}
	if (ran(b, s, M_ROLLBACK)) {
		const double *f = s->med[M_ROLLBACK].f;

		printf("rollback:  %s to put back %.0f pages (%.2f%%) from the "
		       "undo log, writers held\n",
		       fmt_ms(c[0], f[F_ROLLBACK]), f[F_ROLLED],
		       f[F_ROLLED] / pages * 100);
	}
}

static void print_floors(const struct bench *b, const struct size_result *s)
{
	const struct floors *fl = &s->fl;

	(void)b;
	printf("floors:    write-protect %.2f ms (%.1f ms/GiB); fault round "
	       "trip p50 %.1f us, p99 %.1f us (p50 on one CPU %.1f us, "
	       "across two %.1f us)\n",
	       fl->wp_ms, fl->wp_ms / ((double)s->size / GIB), fl->fault_p50_us,
	       fl->fault_p99_us, fl->fault_same_cpu_p50_us,
	       fl->fault_other_cpu_p50_us);
	printf("           lz4 %.2f GiB/s (ratio %.2f, one thread); disk %.2f "
	       "GiB/s (%s 1 MiB writes + fsync)\n",
	       fl->lz4_gibs, fl->lz4_ratio, fl->disk_gibs,
	       fl->disk_direct ? "O_DIRECT" : "buffered");
}

/* ---- targets ------------------------------------------------------------- */

static struct target *target_add(struct targets *ts, const char *id,
				 const char *text, const char *unit)
{
	struct target *t = &ts->t[ts->n++];

	memset(t, 0, sizeof(*t));
	t->id = id;
	t->text = text;
	t->unit = unit;
	t->value = t->limit = t->ratio = NAN;
	t->ok = -1;
	return t;
}

/* What differs from a target's conditions (4 GiB, 2 writers, random
 * writes at @want_rate, 4 KiB pages if @want_4k), into @note. */
static void conditions(const struct bench *b, uint64_t size, uint64_t want_rate,
		       bool want_4k, struct target *t)
{
	const char *what[5];
	size_t len = 0;
	int n = 0;

	if (size != 4ull << 30)
		what[n++] = "size";
	if (b->writers != 2)
		what[n++] = "writers";
	if (b->pattern != BANK_RANDOM)
		what[n++] = "pattern";
	if (b->rate != want_rate)
		what[n++] = "rate";
	if (want_4k && b->thp)
		what[n++] = "page kind";
	for (int i = 0; i < n && len < sizeof(t->note); i++)
		len += (size_t)snprintf(
			t->note + len, sizeof(t->note) - len, "%s%s",
			i ? ", " : "conditions differ: ", what[i]);
}

static void check(struct target *t, double v, double limit, double basis,
		  bool at_most)
{
	t->value = v;
	t->limit = limit;
	t->ratio = v / basis;
	if (!isnan(v) && !isnan(limit))
		t->ok = at_most ? v <= limit : v >= limit;
}

static double fig(const struct bench *b, const struct size_result *s, int m,
		  enum fig k)
{
	return ran(b, s, m) ? s->med[m].f[k] : NAN;
}

static void targets_blackout(const struct bench *b, const struct size_result *s,
			     struct targets *ts)
{
	const double wp = s->fl.wp_ms;
	struct target *t;

	t = target_add(ts, "i7-blackout-wp",
		       "uffd blackout <= 1.2x write-"
		       "protect",
		       "ms");
	check(t, fig(b, s, M_UFFD, F_BLACKOUT), 1.2 * wp, wp, true);
	conditions(b, s->size, 0, false, t);
	t = target_add(ts, "i7-blackout-wp-1phase",
		       "uffd-1phase blackout <= "
		       "1.2x write-protect",
		       "ms");
	check(t, fig(b, s, M_UFFD_1PHASE, F_BLACKOUT), 1.2 * wp, wp, true);
	conditions(b, s->size, 0, false, t);
	if (b->thp) {
		t = target_add(ts, "i7-blackout-thp",
			       "uffd blackout (THP) < "
			       "1 ms",
			       "ms");
		check(t, fig(b, s, M_UFFD, F_BLACKOUT), 1, 1, true);
		conditions(b, s->size, 0, false, t);
	}
	t = target_add(ts, "i8-blackout", "uffd blackout < 2 ms", "ms");
	check(t, fig(b, s, M_UFFD, F_BLACKOUT), 2, 2, true);
	conditions(b, s->size, 50000, true, t);
	t = target_add(ts, "i8-blackout-fork", "fork blackout / uffd's >= 25",
		       "x");
	check(t, fig(b, s, M_FORK, F_BLACKOUT) / fig(b, s, M_UFFD, F_BLACKOUT),
	      25, 25, false);
	conditions(b, s->size, 50000, true, t);
}

static void targets_issue7(const struct bench *b, const struct size_result *s,
			   struct targets *ts)
{
	const double floor = fmin(s->fl.lz4_gibs, s->fl.disk_gibs);
	const double mem_limit = (double)(b->buffer + MEM_SLACK) / (1 << 20);
	struct target *t;

	t = target_add(ts, "i7-memory", "uffd extra memory <= buffers + 16 MiB",
		       "MiB");
	check(t, fig(b, s, M_UFFD, F_MEM) / (1 << 20), mem_limit, mem_limit,
	      true);
	t = target_add(ts, "i7-memory-fork", "fork extra memory / the guest's",
		       "x");
	t->value = fig(b, s, M_FORK, F_MEM) / (double)s->size;
	snprintf(t->note, sizeof(t->note),
		 "information: grows with what the "
		 "writers touch");
	t = target_add(ts, "i7-throughput", "uffd >= 90% of min(lz4, disk)",
		       "GiB/s");
	check(t, fig(b, s, M_UFFD, F_GIBS), 0.9 * floor, floor, false);
	conditions(b, s->size, 0, false, t);
	t = target_add(ts, "i7-writers",
		       "uffd writers during the save >= "
		       "fork's",
		       "share");
	check(t, fig(b, s, M_UFFD, F_WRATIO), fig(b, s, M_FORK, F_WRATIO),
	      fig(b, s, M_FORK, F_WRATIO), false);
	conditions(b, s->size, 0, false, t);
	t = target_add(ts, "i7-p99", "uffd writer p99 <= 3x fork's", "us");
	check(t, fig(b, s, M_UFFD, F_P99), 3 * fig(b, s, M_FORK, F_P99),
	      fig(b, s, M_FORK, F_P99), true);
	conditions(b, s->size, 0, false, t);
	t = target_add(ts, "i7-pid-elapsed",
		       "uffd-pid elapsed <= 1.25x "
		       "uffd's",
		       "s");
	check(t, fig(b, s, M_UFFD_PID, F_ELAPSED),
	      1.25 * fig(b, s, M_UFFD, F_ELAPSED), fig(b, s, M_UFFD, F_ELAPSED),
	      true);
	conditions(b, s->size, 0, false, t);
}

/* An incremental figure as a share of its parent's, below 5%; @written:
 * the share of the pages written since the parent. */
static void incr_target(struct targets *ts, const struct bench *b,
			const struct size_result *s, const char *id,
			const char *what, enum fig fig_incr,
			enum fig fig_parent, double written)
{
	struct target *t = target_add(ts, id, what, "share");

	check(t,
	      fig(b, s, M_UFFD_INCR, fig_incr) /
		      fig(b, s, M_UFFD_INCR, fig_parent),
	      0.05, 0.05, true);
	if (!isnan(written))
		snprintf(t->note, sizeof(t->note),
			 "%.2f%% of the pages written, the target's: 1%%",
			 written * 100);
}

static void targets_issue8(const struct bench *b, const struct size_result *s,
			   struct targets *ts)
{
	const double pages = (double)s->size / PAGE;
	const double written = fig(b, s, M_UFFD_INCR, F_WRITTEN) / pages;
	struct target *t;

	incr_target(ts, b, s, "i8-incr-elapsed",
		    "uffd-incr elapsed < 5% of its parent's", F_ELAPSED,
		    F_PARENT_ELAPSED, written);
	incr_target(ts, b, s, "i8-incr-size",
		    "uffd-incr file < 5% of its parent's", F_FILE,
		    F_PARENT_FILE, written);
	t = target_add(ts, "i8-rollback", "rollback of 1% of the pages < 20 ms",
		       "ms");
	check(t, fig(b, s, M_ROLLBACK, F_ROLLBACK), 20, 20, true);
	if (s->size != 4ull << 30)
		snprintf(t->note, sizeof(t->note), "conditions differ: size");
}

/* The idle owner issue 12's throughput targets are for: writers at a
 * trickle (the bench has at least one). */
#define IDLE_RATE 1000u

static void idle_condition(const struct bench *b, struct target *t)
{
	if (!b->rate || b->rate > IDLE_RATE)
		snprintf(t->note, sizeof(t->note),
			 "conditions differ: rate (the target's: an idle "
			 "owner, --rate %u or less)",
			 IDLE_RATE);
}

static void targets_issue12(const struct bench *b, const struct size_result *s,
			    struct targets *ts)
{
	const double lz4_s = 1 / s->fl.lz4_gibs; /* CPU s per GiB */
	const double threads = b->threads ? (double)b->threads : 1;
	double st[NSTAGES], cpu = 0;
	struct target *t;

	bench_cpu_stages(s->med[M_UFFD].f, s->size, st);
	for (int k = 0; k < NSTAGES; k++)
		cpu += st[k];
	t = target_add(ts, "i12-cpu", "uffd saving CPU <= 1.5x lz4 alone",
		       "s/GiB");
	if (ran(b, s, M_UFFD) && !b->no_compress)
		check(t, cpu, 1.5 * lz4_s, lz4_s, true);
	if (b->no_compress) {
		t = target_add(ts, "i12-throughput-none",
			       "uffd, uncompressed >= 90% of disk", "GiB/s");
		check(t, fig(b, s, M_UFFD, F_GIBS), 0.9 * s->fl.disk_gibs,
		      s->fl.disk_gibs, false);
	} else {
		const double floor =
			fmin(s->fl.disk_gibs, s->fl.lz4_gibs * threads);

		t = target_add(ts, "i12-throughput",
			       "uffd >= 90% of min(disk, lz4 x threads)",
			       "GiB/s");
		check(t, fig(b, s, M_UFFD, F_GIBS), 0.9 * floor, floor, false);
	}
	idle_condition(b, t);
	t = target_add(ts, "i12-writers", "uffd throughput >= fork's", "GiB/s");
	check(t, fig(b, s, M_UFFD, F_GIBS), fig(b, s, M_FORK, F_GIBS),
	      fig(b, s, M_FORK, F_GIBS), false);
	if (b->writers != 2 || b->rate)
		snprintf(t->note, sizeof(t->note),
			 "conditions differ: the target's: 2 writers at max "
			 "rate");
}

/* Across the sweep: the largest size's blackout against the smallest's. */
void bench_targets_sweep(const struct bench *b, struct targets *ts)
{
	const struct size_result *lo = &b->res[0], *hi = &b->res[0];
	struct target *t;

	for (int i = 1; i < b->nsizes; i++) {
		lo = b->res[i].size < lo->size ? &b->res[i] : lo;
		hi = b->res[i].size > hi->size ? &b->res[i] : hi;
	}
	if (lo == hi)
		return;
	t = target_add(ts, "i8-blackout-growth",
		       "uffd blackout, largest size / "
		       "smallest <= 1.5",
		       "x");
	check(t,
	      fig(b, hi, M_UFFD, F_BLACKOUT) / fig(b, lo, M_UFFD, F_BLACKOUT),
	      1.5, 1, true);
	if (lo->size != 1ull << 30 || hi->size != 4ull << 30)
		snprintf(t->note, sizeof(t->note),
			 "conditions differ: sizes "
			 "(the target's: 1 and 4 GiB)");
}

void bench_print_targets(const struct targets *ts, const char *title)
{
	static const char *const verdict[] = { "  - ", "MISS", " ok " };

	if (!ts->n)
		return;
	printf("%s\n", title);
	for (int i = 0; i < ts->n; i++) {
		const struct target *t = &ts->t[i];
		char v[24], l[24], r[16] = "";

		if (isnan(t->value))
			snprintf(v, sizeof(v), "-");
		else
			snprintf(v, sizeof(v), "%.3g %s", t->value, t->unit);
		if (isnan(t->limit))
			l[0] = '\0';
		else
			snprintf(l, sizeof(l), "%.3g %s", t->limit, t->unit);
		if (!isnan(t->ratio) && !isnan(t->limit))
			snprintf(r, sizeof(r), "x%.3g", t->ratio);
		printf("  %s %-43s %11s %s %-11s %-7s%s%s\n",
		       verdict[t->ok + 1], t->text, v, l[0] ? "vs" : "  ", l, r,
		       t->note[0] ? " " : "", t->note);
	}
}

static void size_targets(const struct bench *b, const struct size_result *s,
			 struct targets *ts)
{
	ts->n = 0;
	targets_blackout(b, s, ts);
	targets_issue7(b, s, ts);
	targets_issue8(b, s, ts);
	targets_issue12(b, s, ts);
}

void bench_print_size(const struct bench *b, const struct size_result *s)
{
	struct targets ts;

	print_header(b, s->size);
	print_main_table(b, s);
	print_engine_table(b, s);
	print_window_table(b, s);
	print_stage_table(b, s);
	print_specials(b, s);
	print_floors(b, s);
	size_targets(b, s, &ts);
	bench_print_targets(
		&ts, "targets (i7: 4 GiB, 2 writers, random writes at "
		     "max rate; i8: the same at 50000 writes/s, 4 KiB pages; "
		     "i12: any size, as each line says; x: the ratio):");
	fflush(stdout);
}

/* With several sizes: how each figure grows from the smallest. */
void bench_print_growth(const struct bench *b)
{
	static const struct {
		enum fig k;
		const char *name;
	} figs[] = {
		{ F_BLACKOUT, "blackout" }, { F_PAUSE, "pause" },
		{ F_ELAPSED, "elapsed" },   { F_MEM, "memory" },
		{ F_FILE, "file" },
	};
	char c[CLI_FMT_LEN];

	if (b->nsizes < 2)
		return;
	printf("\ngrowth with size:");
	for (int i = 0; i < b->nsizes; i++)
		printf("%s%s", i ? " -> " : " ",
		       cli_fmt_size(c, b->res[i].size));
	printf("  (x: last over first)\n");
	for (int m = 0; m < NMETHODS; m++) {
		if (!(b->methods & (1u << m)) || m == M_ROLLBACK)
			continue;
		printf("%-12s", bench_method_names[m]);
		for (size_t k = 0; k < sizeof(figs) / sizeof(figs[0]); k++) {
			const double first = b->res[0].med[m].f[figs[k].k];
			const double last =
				b->res[b->nsizes - 1].med[m].f[figs[k].k];

			printf("  %s x%s", figs[k].name,
			       fmt_num(c, last / first, 2, ""));
		}
		putchar('\n');
	}
	if (b->methods & (1u << M_ROLLBACK)) {
		const double first = b->res[0].med[M_ROLLBACK].f[F_ROLLBACK];
		const double last =
			b->res[b->nsizes - 1].med[M_ROLLBACK].f[F_ROLLBACK];

		printf("%-12s  rollback x%s\n", "rollback",
		       fmt_num(c, last / first, 2, ""));
	}
}

/* ---- JSON ---------------------------------------------------------------- */

static void json_kdouble_or_null(struct cli_json *j, const char *key, double v)
{
	cli_json_key(j, key);
	if (isnan(v))
		cli_json_null(j);
	else
		cli_json_double(j, v);
}

/*
 * Every CPU second of a save by stage, per GiB saved. The library counts
 * the stages (compress and checksum on whichever thread did them) and all
 * of the copier's, the fault thread's and the compression threads' time;
 * what else the saving threads used (cpu_saver_s) is io_uring's workers,
 * which write: "write". What bgsnap's own threads used outside the stages
 * (bookkeeping, hand-offs, waiting in a retry) is "other".
 */
void bench_cpu_stages(const double *f, uint64_t size, double st[NSTAGES])
{
	const double gib = (double)size / GIB;
	const double staged = f[F_CPU_COPY] + f[F_CPU_COMPRESS] +
			      f[F_CPU_CHECKSUM] + f[F_CPU_UNPROTECT];
	const double own = f[F_CPU_COPIER] + f[F_CPU_FAULT] +
			   (isnan(f[F_CPU_WORKERS]) ? 0 : f[F_CPU_WORKERS]);

	st[ST_COPY] = f[F_CPU_COPY] / gib;
	st[ST_COMPRESS] = f[F_CPU_COMPRESS] / gib;
	st[ST_CHECKSUM] = f[F_CPU_CHECKSUM] / gib;
	st[ST_UNPROTECT] = f[F_CPU_UNPROTECT] / gib;
	st[ST_WRITE] = fmax(0, f[F_CPU_SAVER] - own) / gib;
	st[ST_OTHER] = fmax(0, own - staged) / gib;
}

const char *const bench_stage_names[NSTAGES] = {
	"copy", "compress", "checksum", "unprotect", "write", "other",
};

static void json_figs(struct cli_json *j, const double *f, uint64_t size)
{
	double st[NSTAGES];

	for (int k = 0; k < NFIG; k++)
		json_kdouble_or_null(j, bench_fig_keys[k], f[k]);
	bench_cpu_stages(f, size, st);
	cli_json_key(j, "cpu_stages_s_per_gib");
	if (isnan(f[F_CPU_COPIER])) {
		cli_json_null(j);
		return;
	}
	cli_json_object_begin(j);
	for (int k = 0; k < NSTAGES; k++)
		json_kdouble_or_null(j, bench_stage_names[k], st[k]);
	cli_json_object_end(j);
}

static void json_targets(struct cli_json *j, const struct targets *ts)
{
	cli_json_array_begin(j);
	for (int i = 0; i < ts->n; i++) {
		const struct target *t = &ts->t[i];

		cli_json_object_begin(j);
		cli_json_kstr(j, "id", t->id);
		cli_json_kstr(j, "text", t->text);
		cli_json_kstr(j, "unit", t->unit);
		json_kdouble_or_null(j, "value", t->value);
		json_kdouble_or_null(j, "limit", t->limit);
		json_kdouble_or_null(j, "ratio", t->ratio);
		cli_json_key(j, "met");
		if (t->ok < 0)
			cli_json_null(j);
		else
			cli_json_bool(j, t->ok);
		cli_json_kstr(j, "note", t->note);
		cli_json_object_end(j);
	}
	cli_json_array_end(j);
}

static void json_floors(struct cli_json *j, const struct floors *fl)
{
	cli_json_key(j, "floors");
	cli_json_object_begin(j);
	json_kdouble_or_null(j, "write_protect_ms", fl->wp_ms);
	json_kdouble_or_null(j, "fault_p50_us", fl->fault_p50_us);
	json_kdouble_or_null(j, "fault_p99_us", fl->fault_p99_us);
	json_kdouble_or_null(j, "fault_same_cpu_p50_us",
			     fl->fault_same_cpu_p50_us);
	json_kdouble_or_null(j, "fault_other_cpu_p50_us",
			     fl->fault_other_cpu_p50_us);
	json_kdouble_or_null(j, "lz4_gib_s", fl->lz4_gibs);
	json_kdouble_or_null(j, "lz4_ratio", fl->lz4_ratio);
	json_kdouble_or_null(j, "disk_gib_s", fl->disk_gibs);
	cli_json_kstr(j, "disk_mode",
		      fl->disk_direct ? "O_DIRECT" : "buffered+fsync");
	cli_json_object_end(j);
}

static void json_size(struct cli_json *j, const struct bench *b,
		      const struct size_result *s)
{
	struct targets ts;

	cli_json_object_begin(j);
	cli_json_kuint(j, "size_bytes", s->size);
	json_floors(j, &s->fl);
	cli_json_key(j, "methods");
	cli_json_object_begin(j);
	for (int m = 0; m < NMETHODS; m++) {
		if (!(b->methods & (1u << m)))
			continue;
		cli_json_key(j, bench_method_names[m]);
		cli_json_object_begin(j);
		cli_json_kbool(j, "ok", s->med[m].ok);
		json_figs(j, s->med[m].f, s->size);
		cli_json_key(j, "runs");
		cli_json_array_begin(j);
		for (unsigned i = 0; i < b->repeat; i++) {
			cli_json_object_begin(j);
			cli_json_kbool(j, "ok", s->runs[m][i].ok);
			json_figs(j, s->runs[m][i].f, s->size);
			cli_json_object_end(j);
		}
		cli_json_array_end(j);
		cli_json_object_end(j);
	}
	cli_json_object_end(j);
	size_targets(b, s, &ts);
	cli_json_key(j, "targets");
	json_targets(j, &ts);
	cli_json_object_end(j);
}

static void json_settings(struct cli_json *j, const struct bench *b)
{
	cli_json_key(j, "settings");
	cli_json_object_begin(j);
	cli_json_kstr(j, "kind", b->thp ? "thp" : "4k");
	cli_json_kuint(j, "writers", b->writers);
	cli_json_kstr(j, "pattern", bench_pattern_names[b->pattern]);
	cli_json_kuint(j, "rate", b->rate);
	cli_json_kuint(j, "repeat", b->repeat);
	cli_json_kdouble(j, "incr_gap_s", (double)b->incr_gap_ns / 1e9);
	cli_json_kdouble(j, "incr_dirty_pct", b->incr_dirty);
	cli_json_kuint(j, "buffer_bytes", b->buffer);
	cli_json_kstr(j, "compression", b->no_compress ? "none" : "lz4");
	cli_json_kuint(j, "threads", b->threads);
	cli_json_kstr(j, "cpus", b->cpus ? b->cpus : "");
	cli_json_kuint(j, "seed", b->seed);
	cli_json_kstr(j, "dir", b->parent_dir);
	cli_json_object_end(j);
}

static void json_load(struct cli_json *j, const char *key, const double *l)
{
	cli_json_key(j, key);
	cli_json_array_begin(j);
	for (int i = 0; i < 3; i++)
		if (isnan(l[i]))
			cli_json_null(j);
		else
			cli_json_double(j, l[i]);
	cli_json_array_end(j);
}

int bench_report_json(const struct bench *b)
{
	struct targets ts = { .n = 0 };
	struct cli_json j;

	cli_json_init(&j, stdout);
	cli_json_object_begin(&j);
	cli_json_kstr(&j, "version", bgsnap_version_string());
	cli_json_kstr(&j, "command", b->command);
	json_settings(&j, b);
	json_load(&j, "load_avg_start", b->load_start);
	json_load(&j, "load_avg_end", b->load_end);
	cli_json_kdouble(&j, "runtime_s",
			 (double)(cli_now_ns() - b->start_ns) / 1e9);
	cli_json_key(&j, "sizes");
	cli_json_array_begin(&j);
	for (int i = 0; i < b->nsizes; i++)
		json_size(&j, b, &b->res[i]);
	cli_json_array_end(&j);
	bench_targets_sweep(b, &ts);
	cli_json_key(&j, "targets");
	json_targets(&j, &ts);
	cli_json_object_end(&j);
	return cli_json_end(&j);
}
