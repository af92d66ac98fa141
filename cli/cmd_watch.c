/* SPDX-License-Identifier: MIT */
/*
 * bgsnap watch --pid: a chain of snapshots of a running process, one every
 * interval, into a directory.
 *
 * One bgsnap handle stays on the process for the whole watch and keeps
 * tracking its writes between saves (BGSNAP_SAVE_KEEP_TRACKING): every
 * snapshot after the first of a chain is incremental
 * (BGSNAP_SAVE_INCREMENTAL), its parent the snapshot before, which readers
 * find beside it by name. When the process's mappings change, the library
 * has to start tracking afresh and an incremental save fails with
 * BGSNAP_EPARENT: a full snapshot is taken instead, in the same slot, and
 * a new chain starts from it (--full-every starts one on purpose).
 *
 * Files: DIR/snap-NNNNNN.bgs, numbered on from the highest already there.
 * Each name is claimed first with an empty file (O_CREAT | O_EXCL, 0600)
 * that only the library's rename of the complete snapshot replaces: no
 * file is ever overwritten, no name reused; a failed save removes its
 * claim. A lock (flock) on DIR keeps two watches from writing one chain.
 * In a pool (rados://POOL/DIR) the numbering starts after what
 * bgsnap_rados_list() finds under DIR/, and each save creates its head
 * exclusively (BGSNAP_SAVE_NO_REPLACE) in place of a claim; there is no
 * lock.
 *
 * Single-threaded (the library runs its own threads during a save).
 * SIGINT, SIGTERM and SIGHUP are blocked but while waiting (ppoll), so the
 * blackout of a save is never cut short; one of them stops the watch, and
 * a save in progress is cancelled (its file never appears). The watch
 * also stops after --count snapshots, and when the process ends (its pidfd
 * becomes readable, or a save fails because it is gone). Stopping frees
 * the handle, which stops tracking: nothing stays protected in the
 * process, which runs on.
 */
#include "cli.h"

#include <bgsnap.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_SPECS   64
#define TICK_NS	    20000000ull /* how often a save's end is looked for */
#define START_TRIES 3		/* "try again": the mappings moved */
#define START_TAKEN 100		/* names in a pool taken by another */
#define NAME_FMT    "snap-%06u.bgs"

static const char watch_usage[] =
	"usage: bgsnap watch --pid PID --every DUR -o DIR [--count N]\n"
	"                    [--full-every N] [--include SPEC]...\n"
	"                    [--exclude SPEC]... [--json] [--quiet]\n"
	"\n"
	"Snapshot running process PID every DUR into DIR, as a chain: the "
	"first\n"
	"snapshot is full, each later one incremental, holding only the pages\n"
	"written since the one before (bgsnap keeps tracking the process's\n"
	"writes between snapshots, so an incremental snapshot costs what was\n"
	"written, not the size of the memory). Files are DIR/snap-000000.bgs,\n"
	"snap-000001.bgs ..., created 0600, numbered on from the highest\n"
	"already in DIR, never overwriting anything; DIR is created (0700) if\n"
	"missing. 'bgsnap info --chain', 'verify', 'export', 'flatten' and\n"
	"'restore' follow a chain by itself as long as its files stay "
	"together.\n"
	"DIR may be rados://POOL/DIR: the snapshots are then POOL's objects\n"
	"DIR/snap-NNNNNN.bgs, numbered on from those listed there, each head\n"
	"created exclusively (a name taken before a save starts is skipped;\n"
	"one taken while it runs fails it, and the watch stops); two\n"
	"watches into one pool DIR are not kept apart, as a lock keeps them "
	"in\n"
	"a directory.\n"
	"\n"
	"When the process maps or unmaps memory, tracking starts afresh and "
	"the\n"
	"next snapshot is a full one (said on its line). One line is printed "
	"per\n"
	"snapshot: its file, full or incremental, size, pages stored, the\n"
	"blackout (the process was stopped only for this) and the time taken.\n"
	"\n"
	"  -p, --pid PID         the process to watch (required)\n"
	"  -e, --every DUR       time between snapshots' starts, e.g. 10s,\n"
	"                        500ms (default 10s); a snapshot that takes\n"
	"                        longer delays the next\n"
	"  -o, --output DIR      the directory of the chain (required)\n"
	"  -n, --count N         stop after N snapshots (default: until "
	"stopped)\n"
	"      --full-every N    a full snapshot at least every N (1: all "
	"full;\n"
	"                        default 0: only the first, and after "
	"tracking\n"
	"                        restarts)\n"
	"  -i, --include SPEC    save only mappings matching SPEC "
	"(repeatable)\n"
	"  -x, --exclude SPEC    leave out mappings matching SPEC "
	"(repeatable),\n"
	"                        as for 'bgsnap save'\n"
	"      --json            one JSON object per line: each snapshot, and\n"
	"                        how the watch stopped (keys in bgsnap(1))\n"
	"  -q, --quiet           no lines but errors (and --json's)\n"
	"  -h, --help            this text\n"
	"\n"
	"SIGINT, SIGTERM or SIGHUP stop the watch (a snapshot in progress is\n"
	"dropped); so does the end of the process, with a message. The "
	"process\n"
	"runs on, with nothing of bgsnap's left in it.\n"
	"\n"
	"exit status: 0 stopped by a signal, --count, or the process's end;\n"
	"1 a snapshot failed (no such process, permission denied, disk full\n"
	"...); 2 usage error (also: no mapping selected); 4 this system lacks "
	"a\n"
	"capability (see 'bgsnap caps').\n";

enum {
	OPT_FULL_EVERY = 256,
	OPT_JSON,
};

static const struct option watch_options[] = {
	{ "pid", required_argument, NULL, 'p' },
	{ "every", required_argument, NULL, 'e' },
	{ "output", required_argument, NULL, 'o' },
	{ "count", required_argument, NULL, 'n' },
	{ "full-every", required_argument, NULL, OPT_FULL_EVERY },
	{ "include", required_argument, NULL, 'i' },
	{ "exclude", required_argument, NULL, 'x' },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "quiet", no_argument, NULL, 'q' },
	CLI_OPT_HELP_ENTRY,
	{ 0 },
};

/* Why a snapshot is full. */
enum full_reason { NOT_FULL, FULL_FIRST, FULL_EVERY, FULL_RESTARTED };

static const char *const reason_keys[] = { NULL, "first", "full-every",
					   "tracking-restarted" };

enum stop_reason {
	STOP_NONE,
	STOP_COUNT,
	STOP_SIGNAL,
	STOP_EXITED,
	STOP_ERROR
};

static const char *const stop_keys[] = { NULL, "count", "signal", "exited",
					 "error" };

struct watch {
	/* The command line. */
	int pid;
	uint64_t every_ns, count, full_every;
	const char *dir;
	const char *include[MAX_SPECS], *exclude[MAX_SPECS];
	size_t ninclude, nexclude;
	bool json, quiet;
	/* State. */
	struct bgsnap *h;
	int dirfd;
	int pidfd;	     /* -1: the process's end is seen by kill(0) */
	sigset_t waitmask;   /* the mask while waiting: signals come */
	unsigned next_index; /* the next file number to try */
	uint64_t taken;	     /* snapshots written */
	uint64_t chain_len;  /* of the current chain, its full one included */
	char last[NAME_MAX + 1]; /* the last snapshot written, "" if none */
	enum stop_reason stop;
	int code; /* exit code after an error */
};

/* One snapshot being taken. */
struct shot {
	unsigned index;
	char name[NAME_MAX + 1];
	char path[PATH_MAX];
	dev_t dev; /* of the claim, to remove only it */
	ino_t ino;
	enum full_reason full;
	struct bgsnap_stats st;
	uint64_t wall_ns; /* CLOCK_REALTIME at its start */
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t real_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static const char *detail(const struct bgsnap *h, int err)
{
	const char *d = bgsnap_last_error(h);

	return d && *d ? d : bgsnap_strerror(err);
}

/* ---- the process --------------------------------------------------------- */

static int open_pidfd(int pid)
{
#ifdef SYS_pidfd_open
	return (int)syscall(SYS_pidfd_open, pid, 0);
#else
	(void)pid;
	errno = ENOSYS;
	return -1;
#endif
}

/* Has the process ended (a zombie counts)? */
static bool target_gone(const struct watch *w)
{
	struct pollfd p = { .fd = w->pidfd, .events = POLLIN };

	if (w->pidfd >= 0)
		return poll(&p, 1, 0) > 0;
	return kill(w->pid, 0) && errno == ESRCH;
}

/*
 * Wait until @deadline (CLOCK_MONOTONIC), the process's end or a signal,
 * whichever comes first: signals are let in only here. Sets w->stop for
 * the last two; returns whether to go on.
 */
static bool wait_until(struct watch *w, uint64_t deadline)
{
	for (;;) {
		const uint64_t now = mono_ns();
		/* Without a pidfd, look at the process every 100 ms. */
		const uint64_t left = deadline > now ? deadline - now : 0;
		const uint64_t step = w->pidfd >= 0 || left < 100000000ull
					      ? left
					      : 100000000ull;
		const struct timespec ts = { (time_t)(step / 1000000000ull),
					     (long)(step % 1000000000ull) };
		struct pollfd p = { .fd = w->pidfd, .events = POLLIN };

		if (cli_interrupted()) {
			w->stop = STOP_SIGNAL;
			return false;
		}
		if (target_gone(w)) {
			w->stop = STOP_EXITED;
			return false;
		}
		if (!left)
			return true;
		ppoll(&p, w->pidfd >= 0 ? 1 : 0, &ts, &w->waitmask);
	}
}

/* ---- the directory ------------------------------------------------------- */

/* DIR is rados://POOL/DIR: the snapshots go to a Ceph pool. */
static bool in_pool(const struct watch *w)
{
	return !strncmp(w->dir, "rados://", 8);
}

/* DIR created 0700 if missing, never a symlink, opened and locked. */
static int open_dir(struct watch *w)
{
	struct stat st;

	if (in_pool(w)) {
		const char *slash = strchr(w->dir + 8, '/');

		/* rados://POOL/DIR: its snapshots are DIR/snap-NNNNNN.bgs. */
		if (!slash || slash == w->dir + 8 || !slash[1] ||
		    w->dir[strlen(w->dir) - 1] == '/') {
			cli_error("watch: %s: not rados://POOL/DIR", w->dir);
			return -1;
		}
		return 0;
	}
	if (mkdir(w->dir, 0700) && errno != EEXIST) {
		cli_error("watch: %s: %s", w->dir, strerror(errno));
		return -1;
	}
	if (!lstat(w->dir, &st) && S_ISLNK(st.st_mode)) {
		cli_error("watch: %s: is a symbolic link: refused", w->dir);
		return -1;
	}
	w->dirfd =
		open(w->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (w->dirfd < 0) {
		cli_error("watch: %s: %s", w->dir, strerror(errno));
		return -1;
	}
	if (flock(w->dirfd, LOCK_EX | LOCK_NB)) {
		cli_error("watch: %s: %s", w->dir,
			  errno == EWOULDBLOCK
				  ? "another 'bgsnap watch' writes there"
				  : strerror(errno));
		return -1;
	}
	return 0;
}

/* Note @name (snap-NNNNNN.bgs, else nothing) as taken. */
static void taken_name(struct watch *w, const char *name)
{
	unsigned n;
	int end = 0;

	if (sscanf(name, "snap-%u.bgs%n", &n, &end) == 1 && end && !name[end] &&
	    strlen(name) >= 15 && n >= w->next_index && n < UINT_MAX)
		w->next_index = n + 1;
}

static int taken_in_pool(void *arg, const char *target)
{
	taken_name(arg, strrchr(target, '/') + 1);
	return 0;
}

/* The number after the highest snap-NNNNNN.bgs in DIR (0 if none). */
static int first_index(struct watch *w)
{
	if (in_pool(w)) {
		char prefix[PATH_MAX], err[512];

		snprintf(prefix, sizeof(prefix), "%s/", w->dir);
		if (bgsnap_rados_list(prefix, taken_in_pool, w, err,
				      sizeof(err))) {
			cli_error("watch: %s", err);
			return -1;
		}
		return 0;
	}
	const int fd = dup(w->dirfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *e;

	if (!d) {
		if (fd >= 0)
			close(fd);
		cli_error("watch: %s: %s", w->dir, strerror(errno));
		return -1;
	}
	while ((e = readdir(d)))
		taken_name(w, e->d_name);
	closedir(d);
	return 0;
}

/* Claim the next free name with an empty file of ours. In a pool, the
 * next number: the save creates its head exclusively, and takes the next
 * one if another took it meanwhile (start_save). */
static int claim(struct watch *w, struct shot *s)
{
	struct stat st;

	if (in_pool(w)) {
		snprintf(s->name, sizeof(s->name), NAME_FMT, w->next_index);
		snprintf(s->path, sizeof(s->path), "%s/%s", w->dir, s->name);
		s->index = w->next_index++;
		return 0;
	}
	for (; w->next_index < UINT_MAX; w->next_index++) {
		int fd;

		snprintf(s->name, sizeof(s->name), NAME_FMT, w->next_index);
		fd = openat(w->dirfd, s->name,
			    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
				    O_CLOEXEC,
			    0600);
		if (fd < 0 && errno == EEXIST)
			continue;
		if (fd < 0 || fstat(fd, &st)) {
			cli_error("watch: %s/%s: %s", w->dir, s->name,
				  strerror(errno));
			if (fd >= 0)
				close(fd);
			return -1;
		}
		close(fd);
		s->index = w->next_index++;
		s->dev = st.st_dev;
		s->ino = st.st_ino;
		snprintf(s->path, sizeof(s->path), "%s/%s", w->dir, s->name);
		return 0;
	}
	cli_error("watch: %s: no file name left", w->dir);
	return -1;
}

/* Remove the claim of a snapshot that was not written: only if it is
 * still our empty file. */
static void unclaim(const struct watch *w, const struct shot *s)
{
	struct stat st;

	if (!in_pool(w) &&
	    !fstatat(w->dirfd, s->name, &st, AT_SYMLINK_NOFOLLOW) &&
	    st.st_dev == s->dev && st.st_ino == s->ino && !st.st_size)
		unlinkat(w->dirfd, s->name, 0);
}

/* ---- one snapshot -------------------------------------------------------- */

static int start_save(struct watch *w, struct shot *s)
{
	const struct bgsnap_save_opts o = {
		.size = sizeof(o),
		.flags = BGSNAP_SAVE_KEEP_TRACKING |
			 (s->full ? 0u : (unsigned)BGSNAP_SAVE_INCREMENTAL) |
			 (in_pool(w) ? (unsigned)BGSNAP_SAVE_NO_REPLACE : 0u),
	};
	int r;

	/* The process may map or unmap memory between bgsnap reading its
	 * mappings and stopping it: the library then says "try again". In
	 * a pool, a name taken since the listing: the next one. */
	for (int moved = 0, taken = 0;;) {
		r = bgsnap_save_start(w->h, s->path, &o);
		if (r == -EAGAIN && ++moved < START_TRIES)
			continue;
		if (r == -EEXIST && in_pool(w) && ++taken < START_TAKEN &&
		    !claim(w, s))
			continue;
		return r;
	}
}

/* The running save's end; a signal cancels it. */
static int finish_save(struct watch *w)
{
	const struct timespec tick = { 0, (long)TICK_NS };
	struct bgsnap_progress p = { .size = sizeof(p) };
	bool cancelled = false;

	for (bgsnap_progress(w->h, &p); p.running; bgsnap_progress(w->h, &p)) {
		if (cli_interrupted() && !cancelled) {
			bgsnap_cancel(w->h);
			cancelled = true;
		}
		ppoll(NULL, 0, &tick, &w->waitmask);
	}
	return bgsnap_wait(w->h);
}

/* Save @s; an incremental save the library cannot make (tracking had to
 * start afresh) becomes a full one. */
static int save(struct watch *w, struct shot *s)
{
	int r;

	s->wall_ns = real_ns();
	r = start_save(w, s);
	if (!r)
		r = finish_save(w);
	if (r == BGSNAP_EPARENT && !s->full) {
		s->full = FULL_RESTARTED;
		s->wall_ns = real_ns();
		r = start_save(w, s);
		if (!r)
			r = finish_save(w);
	}
	if (!r) {
		s->st.size = sizeof(s->st);
		bgsnap_stats(w->h, &s->st);
	}
	return r;
}

/* ---- reporting ----------------------------------------------------------- */

static void print_json(const struct watch *w, const struct shot *s,
		       const char *parent)
{
	const struct bgsnap_stats *st = &s->st;
	struct cli_json j;

	cli_json_init(&j, stdout);
	cli_json_object_begin(&j);
	cli_json_kuint(&j, "index", s->index);
	cli_json_kstr(&j, "file", s->path);
	cli_json_kuint(&j, "time_ns", s->wall_ns);
	cli_json_kbool(&j, "incremental", !s->full);
	cli_json_kstr(&j, "parent", parent);
	cli_json_kstr(&j, "full_reason", reason_keys[s->full]);
	cli_json_kuint(&j, "bytes_written", st->bytes_written);
	cli_json_kuint(&j, "pages_total", st->pages_total);
	cli_json_kuint(&j, "pages_stored", st->pages_total - st->pages_parent);
	cli_json_kuint(&j, "pages_parent", st->pages_parent);
	cli_json_kdouble(&j, "blackout_ms", (double)st->blackout_ns / 1e6);
	cli_json_kdouble(&j, "elapsed_s", (double)st->elapsed_ns / 1e9);
	cli_json_kint(&j, "pid", w->pid);
	cli_json_object_end(&j);
	cli_json_end(&j);
}

static void print_text(const struct shot *s, const char *parent)
{
	const struct bgsnap_stats *st = &s->st;
	char a[CLI_FMT_LEN], b[CLI_FMT_LEN], c[CLI_FMT_LEN], t[16];
	const time_t sec = (time_t)(s->wall_ns / 1000000000ull);
	struct tm tm;

	if (!localtime_r(&sec, &tm) || !strftime(t, sizeof(t), "%H:%M:%S", &tm))
		snprintf(t, sizeof(t), "?");
	printf("%s  %s  %-11s %9s  %8llu pages stored  blackout %8s  "
	       "elapsed %8s",
	       t, s->name, s->full ? "full" : "incremental",
	       cli_fmt_size(a, st->bytes_written),
	       (unsigned long long)(st->pages_total - st->pages_parent),
	       cli_fmt_duration(b, st->blackout_ns),
	       cli_fmt_duration(c, st->elapsed_ns));
	if (s->full == FULL_RESTARTED)
		printf("  (the mappings changed: tracking restarted)");
	else if (!s->full)
		printf("  (on %s)", parent);
	printf("\n");
}

/* One line for a snapshot written; false if stdout is gone. */
static bool report(struct watch *w, const struct shot *s)
{
	const char *parent = s->full ? NULL : w->last;

	if (w->json)
		print_json(w, s, parent);
	else if (!w->quiet)
		print_text(s, parent);
	if (fflush(stdout) || ferror(stdout)) {
		cli_error("watch: writing to stdout: %s", strerror(errno));
		return false;
	}
	return true;
}

static void report_end(const struct watch *w)
{
	struct cli_json j;

	if (w->stop == STOP_EXITED)
		fprintf(stderr,
			"bgsnap: watch: process %d exited: stopped "
			"after %llu snapshot%s\n",
			w->pid, (unsigned long long)w->taken,
			w->taken == 1 ? "" : "s");
	if (w->json) {
		cli_json_init(&j, stdout);
		cli_json_object_begin(&j);
		cli_json_kstr(&j, "stopped", stop_keys[w->stop]);
		cli_json_kuint(&j, "snapshots", w->taken);
		cli_json_kstr(&j, "last", w->last[0] ? w->last : NULL);
		cli_json_kint(&j, "pid", w->pid);
		cli_json_object_end(&j);
		cli_json_end(&j);
	} else if (!w->quiet && w->stop != STOP_ERROR) {
		printf("stopped (%s): %llu snapshot%s in %s%s%s; process %d "
		       "%s\n",
		       w->stop == STOP_SIGNAL  ? strsignal(cli_interrupted())
		       : w->stop == STOP_COUNT ? "--count reached"
					       : "the process exited",
		       (unsigned long long)w->taken, w->taken == 1 ? "" : "s",
		       w->dir, w->last[0] ? ", the last " : "", w->last, w->pid,
		       w->stop == STOP_EXITED ? "is gone" : "runs on");
		fflush(stdout);
	}
}

/* ---- the loop ------------------------------------------------------------ */

static enum full_reason full_reason(const struct watch *w)
{
	if (!w->chain_len)
		return FULL_FIRST;
	if (w->full_every && w->chain_len >= w->full_every)
		return FULL_EVERY;
	return NOT_FULL;
}

/* A save failed: the process's end stops the watch cleanly, a signal
 * too; anything else is an error. */
static void failed(struct watch *w, const struct shot *s, int r)
{
	if (r == -ECANCELED && cli_interrupted()) {
		w->stop = STOP_SIGNAL;
	} else if (r == BGSNAP_ETARGET || r == -ESRCH || target_gone(w)) {
		w->stop = STOP_EXITED;
	} else {
		char why[256];

		w->code = cli_save_failure(w->pid, r, true, why, sizeof(why));
		cli_error("watch: process %d: %s: %s%s", w->pid, s->name,
			  *why ? why : detail(w->h, r),
			  w->code == EXIT_NOCAP ? " (see 'bgsnap caps')" : "");
		w->stop = STOP_ERROR;
	}
}

/* Take one snapshot: false when the watch stops. */
static bool one(struct watch *w)
{
	struct shot s = { .full = full_reason(w) };
	int r;

	if (claim(w, &s)) {
		w->stop = STOP_ERROR;
		w->code = EXIT_FAILED;
		return false;
	}
	r = save(w, &s);
	if (r) {
		unclaim(w, &s);
		failed(w, &s, r);
		return false;
	}
	w->taken++;
	w->chain_len = s.full ? 1 : w->chain_len + 1;
	if (!report(w, &s)) {
		w->stop = STOP_ERROR;
		w->code = EXIT_FAILED;
	}
	snprintf(w->last, sizeof(w->last), "%s", s.name);
	if (!w->stop && w->count && w->taken == w->count)
		w->stop = STOP_COUNT;
	return !w->stop;
}

static void run(struct watch *w)
{
	uint64_t next = mono_ns();

	while (wait_until(w, next)) {
		const uint64_t started = mono_ns();

		if (!one(w))
			break;
		/* On schedule; a snapshot that overran delays the next. */
		next = started + w->every_ns;
		if (next < mono_ns())
			next = mono_ns();
	}
}

/* ---- setting up ---------------------------------------------------------- */

/* Attach to the process. Signals are held back meanwhile, because the
 * library may have the process stopped while it attaches. */
static int attach(struct watch *w)
{
	const struct bgsnap_target_opts topts = {
		.size = sizeof(topts),
		.include = w->include,
		.ninclude = w->ninclude,
		.exclude = w->exclude,
		.nexclude = w->nexclude,
	};
	char why[256];
	int r = bgsnap_new(&w->h);

	if (r) {
		cli_error("watch: %s", bgsnap_strerror(r));
		return EXIT_FAILED;
	}
	r = bgsnap_target_pid(w->h, w->pid, &topts);
	if (r) {
		const int code =
			cli_save_failure(w->pid, r, false, why, sizeof(why));
		const char *msg = *why ? why : detail(w->h, r);
		char pfx[32];

		cli_error("watch: %s%s",
			  cli_pid_prefix(pfx, sizeof(pfx), w->pid, msg), msg);
		return code;
	}
	if (!cli_selected(w->h)) {
		cli_error_no_mapping("watch", w->pid,
				     w->ninclude || w->nexclude);
		return w->ninclude || w->nexclude ? EXIT_USAGE : EXIT_FAILED;
	}
	w->pidfd = open_pidfd(w->pid);
	return EXIT_OK;
}

static void print_start(const struct watch *w)
{
	char a[CLI_FMT_LEN];

	if (w->quiet || w->json)
		return;
	printf("watching process %d every %s into %s, from " NAME_FMT "%s\n",
	       w->pid, cli_fmt_duration(a, w->every_ns), w->dir, w->next_index,
	       w->count ? "" : "; SIGINT stops");
	fflush(stdout);
}

/* --every, the option the table cannot store: true, or false after a
 * usage error. */
static bool take_option(struct cli_getopt *g, int c, void *ctx)
{
	struct watch *w = ctx;

	if (c != 'e' || !cli_arg_duration(g, optarg, &w->every_ns))
		return false;
	if (w->every_ns < 1000000ull) {
		cli_error("watch: --every: '%s' is below 1ms", optarg);
		return false;
	}
	return true;
}

/* The parsed command line, or an exit code (EXIT_OK after --help). */
static int parse(int argc, char **argv, struct watch *w)
{
	const struct cli_opt opts[] = {
		{ 'p', .pid = &w->pid },
		{ 'o', .str = &w->dir },
		{ 'n', .uint = &w->count, .min = 1, .max = UINT32_MAX },
		{ OPT_FULL_EVERY, .uint = &w->full_every, .max = UINT32_MAX },
		{ 'i', .list = w->include, .count = &w->ninclude,
		  .cap = MAX_SPECS },
		{ 'x', .list = w->exclude, .count = &w->nexclude,
		  .cap = MAX_SPECS },
		{ OPT_JSON, .flag = &w->json },
		{ 'q', .flag = &w->quiet },
		{ 0 },
	};
	struct cli_getopt g = { .cmd = "watch",
				.usage = watch_usage,
				.shortopts = "p:e:o:n:i:x:q",
				.longopts = watch_options,
				.opts = opts,
				.take = take_option,
				.ctx = w };
	const int code = cli_parse(&g, argc, argv, 0, 0, "");

	if (code >= 0)
		return code;
	if (!w->pid || !w->dir) {
		cli_error("watch: %s is required (see 'bgsnap watch --help')",
			  w->pid ? "-o DIR" : "--pid PID");
		return EXIT_USAGE;
	}
	return -1;
}

/* Catch SIGINT, SIGTERM and SIGHUP, and keep them blocked except while
 * the watch waits for the next snapshot, where they may end it. */
static void hold_signals(struct watch *w)
{
	cli_catch_signals();
	signal(SIGPIPE, SIG_IGN);
	sigprocmask(SIG_BLOCK, cli_stop_signals(), &w->waitmask);
	sigdelset(&w->waitmask, SIGINT);
	sigdelset(&w->waitmask, SIGTERM);
	sigdelset(&w->waitmask, SIGHUP);
}

int cmd_watch(int argc, char **argv)
{
	struct watch w = { .every_ns = 10000000000ull,
			   .dirfd = -1,
			   .pidfd = -1 };
	int code = parse(argc, argv, &w);

	if (code >= 0)
		return code;
	/* A thread id or a kernel thread is refused before DIR is made. */
	if (cli_target_check("watch", w.pid))
		return EXIT_FAILED;
	hold_signals(&w);
	if (open_dir(&w) || first_index(&w))
		code = EXIT_FAILED;
	else
		code = attach(&w);
	if (code == EXIT_OK) {
		print_start(&w);
		run(&w);
		code = w.stop == STOP_ERROR ? w.code : EXIT_OK;
	}
	/* Freeing the handle stops tracking, so nothing of bgsnap's stays in
	 * the process. */
	bgsnap_free(w.h);
	if (w.stop)
		report_end(&w);
	if (w.pidfd >= 0)
		close(w.pidfd);
	if (w.dirfd >= 0)
		close(w.dirfd);
	return code;
}
