/* SPDX-License-Identifier: MIT */
/*
 * bgsnap demo: the whole story on a built-in guest, with every figure
 * measured in this run.
 *
 *   1. start the guest ('bgsnap guest': memory with a bank in it, writer
 *      threads moving money) and measure its writers alone;
 *   2. save it while it runs, exactly as 'bgsnap save --pid' does
 *      (cli_save_pid());
 *   3. verify the file (every checksum, every page once), read the guest's
 *      memory back out of it and check that the books balance: a torn,
 *      not point-in-time, image would not (DESIGN.md, oracle 2);
 *   4. restore the snapshot into the guest: its writers held between
 *      transfers, only its memory written (the rest of a live process
 *      must not be rolled back under its threads), then the journal
 *      replayed; a dry run before and after shows what changed and that
 *      the memory then equals the snapshot;
 *   5. let the writers run on and check the books a few times.
 * Any failed check makes the exit status 1. The guest and the files go
 * away on every path: the guest gets 'quit' (or SIGKILL), and dies with
 * the demo if the demo is killed (PR_SET_PDEATHSIG, end of its stdin).
 * With --json, the report's figures go to one JSON document instead, one
 * object per step, null for the steps not passed.
 */
#include "cli.h"
#include "guest_bank.h"
#include "guest_client.h"

#include <bgsnap.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE		 4096u
#define GUEST_TIMEOUT_MS 30000
#define CHECKS		 3

static const char demo_usage[] =
	"usage: bgsnap demo [--size SIZE] [--writers N] [--rate OPS]\n"
	"                   [--kind 4k|thp|memfd] [--dir DIR] [--keep] "
	"[--json]\n"
	"\n"
	"Start a built-in guest process (SIZE of memory, default 512M, with N\n"
	"writer threads, default 2, moving money between accounts one per "
	"page\n"
	"at OPS transfers a second, 0 = as fast as they can), snapshot it "
	"while\n"
	"it runs as 'bgsnap save --pid' does, verify the file, check that the\n"
	"guest's memory in it balances (a torn snapshot would not), restore "
	"it\n"
	"into the guest, check that the guest runs on consistently, and "
	"report\n"
	"what was measured. Exit status 0 when every check passed, 1 if one\n"
	"failed, 4 when this system cannot snapshot (see 'bgsnap caps').\n"
	"\n"
	"options:\n"
	"  -s, --size SIZE     guest memory (default 512M)\n"
	"  -w, --writers N     writer threads (default 2)\n"
	"  -r, --rate OPS      transfers a second, all writers (default 0: "
	"max)\n"
	"  -k, --kind KIND     4k, thp or memfd pages (default 4k)\n"
	"  -d, --dir DIR       where the snapshot goes (default $TMPDIR or "
	"/tmp)\n"
	"      --keep          keep the snapshot (its path is printed)\n"
	"      --json          the report as one JSON object on stdout, its "
	"keys\n"
	"                      stable (sizes in bytes, times in ns unless the "
	"key\n"
	"                      says otherwise):\n"
	"    ok, failed_step (null, or the first step that did not pass), "
	"then\n"
	"    one object per step, null if it was not passed:\n"
	"    guest      pid, size, kind, writers, rate, transfers_per_s "
	"(alone)\n"
	"    save       regions {saved, copied, skipped}, bytes_saved, the "
	"keys\n"
	"               of 'save --json' (blackout_ms, elapsed_s,\n"
	"               throughput_bytes_per_s, pages_total, pages_by_fault,\n"
	"               bytes_written, compression_ratio, faults, "
	"stall_us_p99\n"
	"               ...), writer_transfers_per_s, writer_stop_max_ns\n"
	"    verify     elapsed_ns\n"
	"    invariant  balanced\n"
	"    restore    pages_changed, bytes_changed, pages_differing_after,\n"
	"               elapsed_ns\n"
	"    run_on     checks, transfers\n"
	"    and file (the snapshot kept by --keep, else null)\n"
	"  -h, --help          this help\n";

enum { OPT_KEEP = 256, OPT_JSON };

/* The steps, in order, as the JSON report names them. */
enum demo_step {
	STEP_GUEST,
	STEP_SAVE,
	STEP_VERIFY,
	STEP_INVARIANT,
	STEP_RESTORE,
	STEP_RUN_ON,
	NSTEPS,
};

static const char *const step_keys[NSTEPS] = {
	"guest", "save", "verify", "invariant", "restore", "run_on",
};

static const struct option demo_options[] = {
	{ "size", required_argument, NULL, 's' },
	{ "writers", required_argument, NULL, 'w' },
	{ "rate", required_argument, NULL, 'r' },
	{ "kind", required_argument, NULL, 'k' },
	{ "dir", required_argument, NULL, 'd' },
	{ "keep", no_argument, NULL, OPT_KEEP },
	{ "json", no_argument, NULL, OPT_JSON },
	CLI_OPT_HELP_ENTRY,
	{ NULL, 0, NULL, 0 },
};

/* Writer figures from a 'stats' reply. */
struct writer_figs {
	double ops_per_s;
	double ops;
	double lat_p99_ns;
	double stop_max_ns;
};

struct demo {
	uint64_t size, rate;
	uint64_t writers;
	const char *kind;
	const char *parent_dir;
	bool keep, json;
	unsigned passed; /* steps passed (enum demo_step) */
	char dir[PATH_MAX - 16];
	char file[PATH_MAX];
	struct guest_client g;
	pid_t guest_pid; /* g.pid, kept once the guest is gone */
	uint64_t addr, len;
	char range[64];
	/* Figures, for the report. */
	struct writer_figs alone, during;
	struct bgsnap_stats save;
	struct cli_save_result saved;
	uint64_t verify_ns, restore_ns, changed_before, changed_after;
	uint64_t bank_ops_after;
};

/* ---- talking to the guest ------------------------------------------------ */

/* Send one command and read its reply: 0 when it says ok, else -1 after
 * a one-line error. */
static int guest_call(struct guest_client *g, const char *cmd)
{
	char err[1024];

	if (!guest_ask(g, GUEST_TIMEOUT_MS, cmd, err, sizeof(err)))
		return 0;
	cli_error("demo: %s", err);
	return -1;
}

static int spawn(struct demo *d)
{
	char size[32], writers[32], rate[32];
	char exe[PATH_MAX];
	const ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	const char *argv[] = { "bgsnap",    "guest", "--size", size,
			       "--writers", writers, "--rate", rate,
			       "--kind",    d->kind, NULL };
	int r;

	if (n < 0) {
		cli_error("demo: /proc/self/exe: %s", strerror(errno));
		return -1;
	}
	exe[n] = '\0';
	snprintf(size, sizeof(size), "%llu", (unsigned long long)d->size);
	snprintf(writers, sizeof(writers), "%llu",
		 (unsigned long long)d->writers);
	snprintf(rate, sizeof(rate), "%llu", (unsigned long long)d->rate);
	r = guest_spawn(&d->g, exe, argv, 0);
	if (r)
		cli_error("demo: cannot start the guest: %s", strerror(-r));
	return r;
}

static void read_figs(const struct guest_client *g, struct writer_figs *f)
{
	f->ops = guest_num(g->reply, "ops");
	f->ops_per_s = guest_num(g->reply, "ops_per_s");
	f->lat_p99_ns = guest_num(g->reply, "lat_p99_ns");
	f->stop_max_ns = guest_num(g->reply, "stop_max_ns");
}

/* ---- the steps ----------------------------------------------------------- */

static void step(struct demo *d, const char *what, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Print the line of a step that passed (nothing with --json). */
static void step(struct demo *d, const char *what, const char *fmt, ...)
{
	va_list ap;

	d->passed++;
	if (d->json)
		return;
	printf("  %-10s", what);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static int start_guest(struct demo *d)
{
	char b[CLI_FMT_LEN];

	if (spawn(d) || guest_call(&d->g, "info"))
		return -1;
	d->guest_pid = d->g.pid;
	d->addr = (uint64_t)guest_num(d->g.reply, "addr");
	d->len = (uint64_t)guest_num(d->g.reply, "len");
	guest_str(d->g.reply, "range", d->range, sizeof(d->range));
	/* The writers alone, for comparison with the save. */
	if (guest_call(&d->g, "reset") || !cli_pause_ms(1000) ||
	    guest_call(&d->g, "stats"))
		return -1;
	read_figs(&d->g, &d->alone);
	step(d, "guest",
	     "pid %d: %s of %s memory, %llu writers, %.2f M "
	     "transfers/s",
	     (int)d->g.pid, cli_fmt_size(b, d->len), d->kind,
	     (unsigned long long)d->writers, d->alone.ops_per_s / 1e6);
	return 0;
}

static int save_guest(struct demo *d)
{
	const struct bgsnap_save_opts opts = { .size = sizeof(opts) };
	const struct cli_save_req req = {
		.pid = d->g.pid,
		.path = d->file,
		.opts = &opts,
	};
	struct cli_save_result *res = &d->saved;
	char b1[CLI_FMT_LEN], b2[CLI_FMT_LEN];

	if (guest_call(&d->g, "reset"))
		return -1;
	res->stats = &d->save;
	if (cli_save_pid(&req, res))
		return -1;
	if (guest_call(&d->g, "stats"))
		return -1;
	read_figs(&d->g, &d->during);
	step(d, "save",
	     "%s of process %d (%zu regions saved, %zu copied, "
	     "%zu skipped) into %s while it ran",
	     cli_fmt_size(b1, res->bytes_saved), (int)d->g.pid,
	     res->regions_saved, res->regions_copied, res->regions_skipped,
	     cli_fmt_size(b2, d->save.bytes_written));
	return 0;
}

/* The saved region that was the guest's memory. */
static int find_guest_region(struct demo *d, struct bgsnap_file *f)
{
	struct bgsnap_file_info info = { .size = sizeof(info) };

	bgsnap_file_info(f, &info);
	for (size_t i = 0; i < info.regions; i++) {
		struct bgsnap_file_region r = { .size = sizeof(r) };

		if (!bgsnap_file_region(f, i, &r) && r.addr == d->addr &&
		    r.len == d->len)
			return (int)i;
	}
	cli_error("demo: the snapshot has no region at the guest's memory "
		  "(0x%llx, %llu bytes)",
		  (unsigned long long)d->addr, (unsigned long long)d->len);
	return -1;
}

/* DESIGN.md's oracle 2: the guest's memory, as saved, balances. */
static int check_books(struct demo *d, struct bgsnap_file *f, int region)
{
	char why[256];
	void *image = mmap(NULL, d->len, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int r;

	if (image == MAP_FAILED) {
		cli_error("demo: no memory for the guest's image: %s",
			  strerror(errno));
		return -1;
	}
	r = bgsnap_file_read(f, (size_t)region, 0, image, d->len);
	if (r)
		cli_error("demo: reading the guest's memory from the snapshot: "
			  "%s",
			  bgsnap_file_last_error(f));
	else if (bank_check(image, d->len, why, sizeof(why))) {
		cli_error("demo: the snapshot is not point-in-time: %s", why);
		r = -1;
	}
	munmap(image, d->len);
	return r ? -1 : 0;
}

static int verify_file(struct demo *d)
{
	char err[BGSNAP_FILE_ERROR_MAX];
	struct bgsnap_file *f;
	uint64_t t0 = cli_now_ns();
	int r = bgsnap_file_open(&f, d->file, err, sizeof(err));

	if (r) {
		cli_error("demo: %s: %s", d->file, err);
		return -1;
	}
	r = bgsnap_file_verify(f, NULL, NULL);
	d->verify_ns = cli_now_ns() - t0;
	if (r) {
		cli_error("demo: %s: %s", d->file, bgsnap_file_last_error(f));
		goto out_close;
	}
	step(d, "verify", "ok: every checksum, every page stored exactly once");
	r = find_guest_region(d, f);
	if (r >= 0)
		r = check_books(d, f, r);
	if (!r)
		step(d, "invariant",
		     "ok: the guest's memory in the snapshot "
		     "balances (a torn image would not)");
out_close:
	bgsnap_file_close(f);
	return r ? -1 : 0;
}

/* Restore (or dry-run) the snapshot into the guest's memory only. */
static int restore_into_guest(struct demo *d, bool dry, uint64_t *changed,
			      uint64_t *ns)
{
	const char *include[] = { d->range };
	const struct bgsnap_target_opts topts = { .size = sizeof(topts),
						  .include = include,
						  .ninclude = 1 };
	const struct bgsnap_restore_opts o = {
		.size = sizeof(o),
		.flags = dry ? BGSNAP_RESTORE_DRY_RUN : 0,
	};
	struct bgsnap_stats st = { .size = sizeof(st) };
	struct bgsnap *h;
	uint64_t t0 = cli_now_ns();
	int r = bgsnap_new(&h);

	if (r) {
		cli_error("demo: %s", bgsnap_strerror(r));
		return -1;
	}
	r = bgsnap_target_pid(h, d->g.pid, &topts);
	/* "Try again": the guest's mappings changed under the restore (as
	 * 'bgsnap restore' does, a few tries). */
	for (int tries = 1; !r; tries++) {
		r = bgsnap_restore(h, d->file, &o);
		if (r != -EAGAIN || tries == 3)
			break;
		r = 0;
	}
	if (r)
		cli_error("demo: restore%s into process %d: %s",
			  dry ? " --dry-run" : "", (int)d->g.pid,
			  *bgsnap_last_error(h) ? bgsnap_last_error(h)
						: bgsnap_strerror(r));
	else if (!bgsnap_stats(h, &st) && changed)
		*changed = st.pages_changed;
	if (ns)
		*ns = cli_now_ns() - t0;
	bgsnap_free(h);
	return r ? -1 : 0;
}

static int restore_guest(struct demo *d)
{
	char b[CLI_FMT_LEN];
	int r;

	if (guest_call(&d->g, "hold"))
		return -1;
	r = restore_into_guest(d, true, &d->changed_before, NULL);
	if (!r)
		r = restore_into_guest(d, false, NULL, &d->restore_ns);
	if (!r)
		r = restore_into_guest(d, true, &d->changed_after, NULL);
	if (!r && d->changed_after) {
		cli_error("demo: right after the restore %llu pages of the "
			  "guest differ from the snapshot",
			  (unsigned long long)d->changed_after);
		r = -1;
	}
	/* The writers are released whatever happened: the guest must run
	 * on. */
	if (!r)
		r = guest_call(&d->g, "recover");
	if (guest_call(&d->g, "release") || r)
		return -1;
	step(d, "restore",
	     "ok: %llu changed pages put back (%s), then equal "
	     "to the snapshot; journal replayed",
	     (unsigned long long)d->changed_before,
	     cli_fmt_size(b, d->changed_before * PAGE));
	return 0;
}

static int run_on(struct demo *d)
{
	if (guest_call(&d->g, "reset"))
		return -1;
	for (int i = 0; i < CHECKS; i++)
		if (!cli_pause_ms(300) || guest_call(&d->g, "check"))
			return -1;
	if (guest_call(&d->g, "stats"))
		return -1;
	d->bank_ops_after = (uint64_t)guest_num(d->g.reply, "ops");
	if (!d->bank_ops_after) {
		cli_error("demo: the guest's writers made no progress after "
			  "the restore");
		return -1;
	}
	step(d, "run on",
	     "ok: %d checks balanced while the writers ran on "
	     "(%llu transfers)",
	     CHECKS, (unsigned long long)d->bank_ops_after);
	return 0;
}

/* ---- the report ---------------------------------------------------------- */

static void report(const struct demo *d)
{
	const struct bgsnap_stats *s = &d->save;
	char b1[CLI_FMT_LEN], b2[CLI_FMT_LEN], b3[CLI_FMT_LEN];
	const double bytes = (double)s->pages_total * PAGE;

	printf("\nmeasured in this run\n");
	printf("  blackout        %s: the guest was stopped only this long\n",
	       cli_fmt_duration(b1, s->blackout_ns));
	printf("  throughput      %s (%s in %s)\n",
	       cli_fmt_rate(b1, s->elapsed_ns
					? bytes * 1e9 / (double)s->elapsed_ns
					: 0),
	       cli_fmt_size(b2, s->pages_total * PAGE),
	       cli_fmt_duration(b3, s->elapsed_ns));
	printf("  saved by fault  %llu of %llu pages (a writer reached them "
	       "before the copier)\n",
	       (unsigned long long)s->pages_by_fault,
	       (unsigned long long)s->pages_total);
	printf("  writer stall    p99 %s, max %s per write fault (%llu "
	       "faults)\n",
	       cli_fmt_duration(b1, s->stall_ns_p99),
	       cli_fmt_duration(b2, s->stall_ns_max),
	       (unsigned long long)s->faults);
	printf("  writers         %.2f M transfers/s during the save, %.2f M "
	       "alone; longest stop %s\n",
	       d->during.ops_per_s / 1e6, d->alone.ops_per_s / 1e6,
	       cli_fmt_duration(b1, (uint64_t)d->during.stop_max_ns));
	printf("  file            %s, compression %.2fx, verified in %s\n",
	       cli_fmt_size(b1, s->bytes_written), s->compression_ratio,
	       cli_fmt_duration(b2, d->verify_ns));
	printf("  restore         %s (verify, stop, write %s, resume)\n",
	       cli_fmt_duration(b1, d->restore_ns), cli_fmt_size(b2, d->len));
}

/* The figures of step @k, or null when it did not pass. */
static void json_step(struct cli_json *j, const struct demo *d,
		      enum demo_step k)
{
	cli_json_key(j, step_keys[k]);
	if (d->passed <= k) {
		cli_json_null(j);
		return;
	}
	cli_json_object_begin(j);
	switch (k) {
	case STEP_GUEST:
		cli_json_kint(j, "pid", d->guest_pid);
		cli_json_kuint(j, "size", d->len);
		cli_json_kstr(j, "kind", d->kind);
		cli_json_kuint(j, "writers", d->writers);
		cli_json_kuint(j, "rate", d->rate);
		cli_json_kdouble(j, "transfers_per_s", d->alone.ops_per_s);
		break;
	case STEP_SAVE:
		cli_json_key(j, "regions");
		cli_json_object_begin(j);
		cli_json_kuint(j, "saved", d->saved.regions_saved);
		cli_json_kuint(j, "copied", d->saved.regions_copied);
		cli_json_kuint(j, "skipped", d->saved.regions_skipped);
		cli_json_object_end(j);
		cli_json_kuint(j, "bytes_saved", d->saved.bytes_saved);
		cli_json_save_stats(j, &d->save);
		cli_json_kdouble(j, "writer_transfers_per_s",
				 d->during.ops_per_s);
		cli_json_kuint(j, "writer_stop_max_ns",
			       (uint64_t)d->during.stop_max_ns);
		break;
	case STEP_VERIFY:
		cli_json_kuint(j, "elapsed_ns", d->verify_ns);
		break;
	case STEP_INVARIANT:
		cli_json_kbool(j, "balanced", true);
		break;
	case STEP_RESTORE:
		cli_json_kuint(j, "pages_changed", d->changed_before);
		cli_json_kuint(j, "bytes_changed", d->changed_before * PAGE);
		cli_json_kuint(j, "pages_differing_after", d->changed_after);
		cli_json_kuint(j, "elapsed_ns", d->restore_ns);
		break;
	case STEP_RUN_ON:
		cli_json_kuint(j, "checks", CHECKS);
		cli_json_kuint(j, "transfers", d->bank_ops_after);
		break;
	case NSTEPS:
		break;
	}
	cli_json_object_end(j);
}

/* The report as one JSON object (--json): 0, or -EIO after a message. */
static int report_json(const struct demo *d, bool ok)
{
	const bool kept = d->keep && d->file[0] && !access(d->file, F_OK);
	struct cli_json j;

	cli_json_init(&j, stdout);
	cli_json_object_begin(&j);
	cli_json_kbool(&j, "ok", ok);
	cli_json_kstr(
		&j, "failed_step",
		ok ? NULL
		   : step_keys[d->passed < NSTEPS ? d->passed : NSTEPS - 1]);
	for (int k = 0; k < NSTEPS; k++)
		json_step(&j, d, (enum demo_step)k);
	cli_json_kstr(&j, "file", kept ? d->file : NULL);
	cli_json_object_end(&j);
	if (!cli_json_end(&j))
		return 0;
	cli_error("demo: writing to stdout: %s", strerror(EIO));
	return -EIO;
}

/* ---- setup and cleanup --------------------------------------------------- */

static int make_dir(struct demo *d)
{
	const char *parent = d->parent_dir	? d->parent_dir
			     : getenv("TMPDIR") ? getenv("TMPDIR")
						: "/tmp";

	snprintf(d->dir, sizeof(d->dir), "%s/bgsnap-demo.XXXXXX", parent);
	if (!mkdtemp(d->dir)) {
		cli_error("demo: cannot make a directory in %s: %s", parent,
			  strerror(errno));
		d->dir[0] = '\0';
		return -1;
	}
	snprintf(d->file, sizeof(d->file), "%s/guest.bgs", d->dir);
	return 0;
}

static void remove_files(const struct demo *d)
{
	if (!d->dir[0])
		return;
	if (d->keep && !access(d->file, F_OK)) {
		if (!d->json)
			printf("  kept      %s\n", d->file);
		return;
	}
	unlink(d->file);
	rmdir(d->dir);
}

static bool ready(void)
{
	struct bgsnap_capability caps[BGSNAP_MAX_CAPABILITIES];
	const int n = bgsnap_probe(caps, BGSNAP_MAX_CAPABILITIES);

	for (int i = 0; i < n; i++)
		if (caps[i].required && !caps[i].ok) {
			cli_error("demo: %s: %s (see 'bgsnap caps')",
				  caps[i].name, caps[i].detail);
			return false;
		}
	return n >= 0;
}

/* ---- options ------------------------------------------------------------- */

/* --kind, the option the table cannot store: true, or false after a
 * usage error. */
static bool take_option(struct cli_getopt *o, int c, void *ctx)
{
	struct demo *d = ctx;

	if (c != 'k')
		return false;
	if (strcmp(optarg, "4k") && strcmp(optarg, "thp") &&
	    strcmp(optarg, "memfd")) {
		cli_error("demo: %s: '%s' is not 4k, thp or memfd", o->optname,
			  optarg);
		return false;
	}
	d->kind = optarg;
	return true;
}

/* Parsed options, or an exit code (EXIT_OK after --help). */
static int parse_args(int argc, char **argv, struct demo *d)
{
	const struct cli_opt opts[] = {
		{ 's', .size = &d->size },
		{ 'w', .uint = &d->writers, .min = 1, .max = BANK_MAX_WRITERS },
		{ 'r', .uint = &d->rate, .max = UINT32_MAX },
		{ 'd', .str = &d->parent_dir },
		{ OPT_KEEP, .flag = &d->keep },
		{ OPT_JSON, .flag = &d->json },
		{ 0 },
	};
	struct cli_getopt o = { .cmd = "demo",
				.usage = demo_usage,
				.shortopts = "s:w:r:k:d:",
				.longopts = demo_options,
				.opts = opts,
				.take = take_option,
				.ctx = d };
	const int code = cli_parse(&o, argc, argv, 0, 0, "");

	if (code >= 0)
		return code;
	if (d->size < 1u << 20) {
		cli_error("demo: --size: at least 1M");
		return EXIT_USAGE;
	}
	return -1;
}

static int run(struct demo *d)
{
	char b[CLI_FMT_LEN];

	if (!d->json) {
		printf("bgsnap demo: snapshot a %s guest while %llu writers "
		       "run, check it, restore it\n",
		       cli_fmt_size(b, d->size),
		       (unsigned long long)d->writers);
		fflush(stdout);
	}
	if (make_dir(d) || start_guest(d) || save_guest(d) || verify_file(d) ||
	    restore_guest(d) || run_on(d))
		return -1;
	if (!d->json)
		report(d);
	return 0;
}

int cmd_demo(int argc, char **argv)
{
	struct demo d = { .size = 512u << 20, .writers = 2, .kind = "4k" };
	int r = parse_args(argc, argv, &d);

	if (r >= 0)
		return r;
	if (!ready())
		return EXIT_NOCAP;
	cli_catch_signals();
	signal(SIGPIPE, SIG_IGN);
	r = run(&d);
	guest_end(&d.g, 1000);
	remove_files(&d);
	if (cli_interrupted()) {
		cli_error("demo: interrupted by %s; the guest and the files "
			  "are gone",
			  strsignal(cli_interrupted()));
		r = -1;
	}
	if (d.json) {
		if (report_json(&d, !r))
			r = -1;
	} else if (!cli_interrupted()) {
		printf(r ? "\ndemo FAILED (see the error above)\n"
			 : "\nall checks passed\n");
	}
	return r ? EXIT_FAILED : EXIT_OK;
}
