/* SPDX-License-Identifier: MIT */
/*
 * bgsnap bench, split by what each part does (the DESIGN block of
 * cmd_bench.c covers them all):
 *   cmd_bench.c       options, setup, the run over sizes and methods;
 *   bench_guest.c     the guest driver: start a guest, call it, and
 *                     sample its memory and CPU during a save;
 *   bench_floors.c    the floors: a plain disk write, and the library's
 *                     own (bgsnap_measure_floors) on the guest's content;
 *   bench_method.c    one run of one method;
 *   bench_report.c    medians, the tables, the targets, the JSON document.
 * The types below are shared by those files; nothing else includes this.
 */
#ifndef BGS_BENCH_H
#define BGS_BENCH_H

#include "cli.h"
#include "guest_bank.h"
#include "guest_client.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define PAGE	   4096u
#define HUGE_2M	   (2u << 20)
#define GIB	   (1024.0 * 1024.0 * 1024.0)
#define MAX_SIZES  8
#define MAX_REPEAT 15
#define MAX_TIDS   (BANK_MAX_WRITERS + 8)
#define SAMPLE_NS  20000000L /* memory sampling interval */
/* A child's smaps walk costs ~14 ms of CPU per GiB: once a second, as a
 * safety net; a fork child measures itself at its end, its peak. */
#define CHILD_EVERY    50
#define WARMUP_MS      500    /* the writers run before they are measured */
#define BEFORE_MS      1000   /* and are measured alone this long */
#define GUEST_START_MS 600000 /* formatting 4 GiB on a busy machine */
#define CALL_MS	       60000
#define SAVE_MS	       1800000
#define DISK_BLOCK     (1u << 20)
#define ROLLBACK_PCT   1.0
#define MEM_SLACK      (16u << 20) /* the target: buffer budget + 16 MiB */
#define MAX_TARGETS    24

enum method {
	M_UFFD,
	M_UFFD_1PHASE,
	M_UFFD_PID,
	M_FORK,
	M_STW,
	M_UFFD_INCR,
	M_ROLLBACK,
	NMETHODS
};

/* Every figure a run yields; NAN where it does not apply. */
enum fig {
	F_BLACKOUT, /* ms, seen by the writers */
	F_PAUSE,    /* ms, the method's own stop */
	F_ARM,	    /* ms, arming while the owner runs */
	F_REPROT,   /* pages protected again inside the pause */
	F_ELAPSED,  /* s */
	F_GIBS,	    /* GiB of memory a second */
	F_WBEFORE,  /* writer transfers/s alone */
	F_WDURING,  /* the same during the save */
	F_WRATIO,   /* during / before */
	F_P50,	    /* us */
	F_P99,
	F_MAX,
	F_MEM,	/* bytes */
	F_FILE, /* bytes */
	F_FAULTS,
	F_STALL99,	  /* us */
	F_BUFFER,	  /* bytes */
	F_WRITTEN,	  /* pages stored (incr) or written (rollback) */
	F_PARENT_ELAPSED, /* s, uffd-incr's first snapshot */
	F_PARENT_FILE,	  /* bytes */
	F_ROLLBACK,	  /* ms */
	F_ROLLED,	  /* pages put back */
	F_NOISE,	  /* ms: the longest writer delay in the second alone */
	F_WINDOW,	  /* ms: the start window */
	F_WORST_AT,	  /* ms into it: the worst-stopped transfer was due */
	F_PAUSE_AT,	  /* ms into it: the pause began */
	F_CPU_SAVER,	  /* CPU s: bgsnap's threads, a fork child */
	F_CPU_WRITERS,	  /* CPU s: the guest's writers */
	F_CPU_MAIN,	  /* CPU s: the thread that starts the save (arming) */
	/* CPU s of bgsnap's threads by stage (bgsnap_stats' cpu_*_ns) */
	F_CPU_COPY,
	F_CPU_COMPRESS,
	F_CPU_CHECKSUM,
	F_CPU_UNPROTECT,
	F_CPU_COPIER,  /* all of the copier's */
	F_CPU_FAULT,   /* all of the fault thread's */
	F_CPU_WORKERS, /* all of the compression threads' */
	F_LOAD,	       /* 1-minute load average at the run's start */
	NFIG
};

struct run {
	double f[NFIG];
	bool ok;
};

/* Where a save's CPU time goes, per GiB (bench_cpu_stages). */
enum stage {
	ST_COPY,
	ST_COMPRESS,
	ST_CHECKSUM,
	ST_UNPROTECT,
	ST_WRITE,
	ST_OTHER,
	NSTAGES
};

struct floors {
	double wp_ms;
	double fault_p50_us, fault_p99_us;
	double fault_same_cpu_p50_us, fault_other_cpu_p50_us;
	double lz4_gibs, lz4_ratio;
	double disk_gibs;
	bool disk_direct;
	bool ok;
};

struct size_result {
	uint64_t size;
	struct floors fl;
	struct run runs[NMETHODS][MAX_REPEAT];
	struct run med[NMETHODS];
};

struct bench {
	uint64_t sizes[MAX_SIZES];
	int nsizes;
	bool thp;
	unsigned writers;
	int pattern;
	uint64_t rate;
	unsigned methods; /* bit per enum method */
	unsigned repeat;
	uint64_t incr_gap_ns;
	double incr_dirty;
	const char *parent_dir;
	uint64_t buffer;
	bool no_compress;
	uint64_t threads; /* bgsnap_save_opts.threads */
	const char *cpus; /* bgsnap_save_opts.cpus, or NULL */
	uint64_t seed;
	bool json, quiet;
	char dir[PATH_MAX - 64]; /* ours, inside parent_dir */
	char exe[PATH_MAX];
	char command[1024]; /* as given, for --json */
	int failures;
	uint64_t start_ns;
	double load_start[3], load_end[3];
	struct size_result *res; /* one per size */
};

/* A started guest (guest_client.h) and what its 'info' said. */
struct guest_proc {
	struct guest_client c;
	uint64_t addr, len;
	char range[64];
	int tid[MAX_TIDS]; /* its writers: its threads but main, at start */
	int ntid;
};

/* CPU clock ticks of the processes and threads involved in a save. */
struct cpu_snap {
	uint64_t total, children; /* the guest, and its waited-for children */
	uint64_t main; /* its main thread (it arms an embedded save) */
	uint64_t writer[MAX_TIDS];	/* its writers (guest_proc.tid) */
	uint64_t self_total, self_main; /* this process (uffd-pid saves) */
};

/* ---- memory during a save ----------------------------------------------- */

struct memwatch {
	pthread_t thread;
	_Atomic bool stop;
	const struct guest_proc *g;
	int guest;
	uint64_t before; /* main, before the start */
	struct cpu_snap cpu0;
	/* The sampler's, read by main after the join: */
	uint64_t peak;
	uint64_t last_main; /* the guest's and ours at the last sample */
	unsigned samples;
	uint64_t own_cpu_ns; /* the sampler thread's CPU time */
};

/* A performance target, checked on this run's figures. */
struct target {
	const char *id;	  /* stable, for --json */
	const char *text; /* short, for the table */
	const char *unit;
	double value, limit;
	double ratio; /* value over what it is compared with (a floor,
		       * fork's figure, uffd's, the limit) */
	int ok;	      /* 1 met, 0 missed, -1 not measured or not a limit */
	char note[96];
};

struct targets {
	struct target t[MAX_TARGETS];
	int n;
};

extern const char *const bench_method_names[NMETHODS];
/* The JSON keys of the figures, stable, in this order. */
extern const char *const bench_fig_keys[NFIG];
extern const char *const bench_pattern_names[3];

/* cmd_bench.c */
void bench_progress(const struct bench *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void bench_load_avg(double l[3]);
bool bench_ready(void);

/* bench_guest.c */
int bench_guest_call_ms(struct guest_proc *g, uint64_t ms, const char *cmd);
int bench_guest_call(struct guest_proc *g, const char *cmd);
int bench_guest_start(const struct bench *b, uint64_t size,
		      struct guest_proc *g);
int bench_memwatch_start(struct memwatch *m, const struct guest_proc *g);
void bench_memwatch_stop(struct memwatch *m, uint64_t child_end, double *f);

/* bench_floors.c */
double bench_median(double *v, int n);
void bench_settle(const char *dir, const char *path);
void bench_measure_floors(struct bench *b, uint64_t size, struct floors *fl);

/* bench_method.c */
void bench_run_init(struct run *r);
int bench_run_method(struct bench *b, uint64_t size, enum method m,
		     struct run *out);

/* bench_report.c */
void bench_median_runs(const struct bench *b, struct size_result *s);
void bench_targets_sweep(const struct bench *b, struct targets *ts);
void bench_print_targets(const struct targets *ts, const char *title);
void bench_print_size(const struct bench *b, const struct size_result *s);
void bench_print_growth(const struct bench *b);
int bench_report_json(const struct bench *b);
extern const char *const bench_stage_names[NSTAGES];
void bench_cpu_stages(const double *f, uint64_t size, double st[NSTAGES]);

#endif
