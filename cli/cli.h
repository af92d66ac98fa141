/* SPDX-License-Identifier: MIT */
/*
 * The bgsnap command: shared helpers for the subcommands (cmd_*.c).
 *
 * Exit codes (documented in bgsnap(1)):
 *   0  success
 *   1  the operation failed (a save, restore, verify ... did not succeed)
 *   2  usage error (bad arguments)
 *   3  the snapshot file is missing, damaged or not a snapshot
 *   4  the system lacks a capability bgsnap needs
 *
 * Conventions every subcommand follows:
 *  - options parsed with cli_parse() from a table; -h/--help prints the
 *    usage on stdout and exits 0; a usage error is one line on stderr,
 *    exit 2;
 *  - every error is one line on stderr, "bgsnap: error: ...", through
 *    cli_error(); a damaged file's message names where it is damaged;
 *  - --json writes one JSON document on stdout (cli_json_*) with stable
 *    keys, in a stable order; sizes in bytes, times in ns unless the key
 *    says otherwise (*_ms, *_s, *_us);
 *  - a progress bar only on a terminal and never with --quiet
 *    (cli_progress_*).
 *
 * Threads: these helpers keep process-wide state (getopt's position, the
 * progress bar, the signal caught) and are called from the command's main
 * thread only. bench and guest start threads of their own (the DESIGN
 * blocks of cmd_bench.c, cmd_guest.c and guest_bank.c list them); of the
 * helpers declared here those threads call only cli_now_ns(),
 * cli_read_small() and cli_proc_kb(), which keep no state.
 */
#ifndef BGS_CLI_H
#define BGS_CLI_H

#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

enum {
	EXIT_OK = 0,
	EXIT_FAILED = 1,
	EXIT_USAGE = 2,
	EXIT_BADFILE = 3,
	EXIT_NOCAP = 4,
};

struct cli_cmd {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
};

int cmd_caps(int argc, char **argv);
int cmd_save(int argc, char **argv);
int cmd_restore(int argc, char **argv);
int cmd_guest(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_flatten(int argc, char **argv);
int cmd_watch(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_core(int argc, char **argv);
int cmd_gc(int argc, char **argv);

/* ---- messages and exit codes -------------------------------------------- */

/* "bgsnap: error: ..." on stderr, one line (a progress bar is cleared
 * first). */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "bgsnap: warning: ..." on stderr, one line. */
void cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * The exit code for @err (negative errno or BGSNAP_E*) from opening,
 * reading or checking a snapshot file: EXIT_BADFILE when the file is
 * damaged, missing, a directory or not a snapshot; EXIT_FAILED otherwise
 * (no memory, an I/O error, permission denied).
 */
int cli_file_exit(int err);

/*
 * Catch SIGINT, SIGTERM and SIGHUP: instead of dying, the command sees
 * cli_interrupted() return the signal number, cleans up (removes its
 * temporary file) and exits. Commands with nothing to clean up need not
 * call it.
 */
void cli_catch_signals(void);
int cli_interrupted(void);
/* The signals cli_catch_signals() catches (SIGINT, SIGTERM, SIGHUP), as
 * a set to block while the library has a process stopped. Main thread. */
const sigset_t *cli_stop_signals(void);

/* ---- time and /proc ----------------------------------------------------- */

/* CLOCK_MONOTONIC in ns. Any thread. */
uint64_t cli_now_ns(void);
/* Sleep @ms, looking every 5 ms for a signal caught by
 * cli_catch_signals(): true after the whole sleep, false as soon as one
 * came. Main thread. */
bool cli_pause_ms(uint64_t ms);
/* One read() of @path into @buf of @size bytes, NUL-terminated: the
 * length, or -1 when it cannot be opened or reads nothing. For /proc
 * files that fit. Any thread. */
ssize_t cli_read_small(const char *path, char *buf, size_t size);
/* The kB of the lines of @path starting with @keys[0..@n) (each "Key:",
 * as in /proc/PID/status or smaps_rollup), summed, in bytes; 0 when
 * unreadable. Any thread. */
uint64_t cli_proc_kb(const char *path, const char *const *keys, int n);

/* ---- options ------------------------------------------------------------ */

/*
 * Every command declares its options the same way: a getopt_long table, a
 * table of struct cli_opt, a struct cli_getopt and one cli_parse() call.
 * The commands therefore look alike there (duplicates lists them as pairs
 * of the same shape); that is deliberate: the loop is written once, here,
 * and what differs between commands is data.
 */

enum {
	CLI_OPT_END = -1,  /* no more options; operands start at optind */
	CLI_OPT_HELP = -2, /* -h/--help: the usage is printed; exit 0 */
	CLI_OPT_BAD = -3,  /* a usage error was printed; exit EXIT_USAGE */
};

/* The --help entry every long option table ends with (before the zero
 * entry). */
/* (Kept on one line: clang-format would spread the braces over four.) */
/* clang-format off */
#define CLI_OPT_HELP_ENTRY { "help", no_argument, NULL, 'h' }
/* clang-format on */

/*
 * One option of a command's table for cli_parse(); the table ends with a
 * zero entry. Set at most one destination: cli_parse() stores the option
 * there (a flag is set to true; a string is the argument itself; size,
 * duration and uint go through cli_arg_size(), cli_arg_duration() and
 * cli_arg_uint() with [@min, @max]; a pid is a uint in [1, INT32_MAX]).
 * An entry with no destination, or an option not in the table, goes to the
 * command's take() callback.
 */
struct cli_opt {
	int val; /* getopt's value: the short letter or an OPT_* code */
	bool *flag;
	const char **str;
	uint64_t *size;
	uint64_t *duration;
	uint64_t *uint;
	uint64_t min, max; /* for uint */
	int *pid;	   /* a process id: a whole number in [1, INT32_MAX] */
	/* A repeatable option: the argument appended to @list, which holds
	 * @cap; one more is a usage error ("save: -i: at most 64 of them"). */
	const char **list;
	size_t *count;
	size_t cap;
	const char *name; /* the option in that message if set, else how the
			   * user wrote it */
};

/* Zero-initialize, then set the first four fields (and, for cli_parse(),
 * the table and the callback). */
struct cli_getopt {
	const char *cmd;	       /* "info": names the command in errors */
	const char *usage;	       /* printed on stdout by --help */
	const char *shortopts;	       /* getopt's, without 'h' (added) */
	const struct option *longopts; /* ends with CLI_OPT_HELP_ENTRY */
	/* Set by cli_getopt(): the option just returned as the user wrote
	 * it ("--buffer" or "-b"), for messages about its argument. */
	char optname[40];
	char spec[64]; /* private */
	/* For cli_parse(): the options stored without code (may be NULL),
	 * and the callback for the others: true, or false after a one-line
	 * error. @ctx is the command's own state, passed back. */
	const struct cli_opt *opts;
	bool (*take)(struct cli_getopt *g, int c, void *ctx);
	void *ctx;
};

/*
 * getopt_long() with the house conventions: options and operands may be
 * mixed; returns the option's value (optarg set as getopt does),
 * CLI_OPT_END, CLI_OPT_HELP after printing the usage on stdout, or
 * CLI_OPT_BAD after printing a one-line error ("bgsnap: error: info:
 * unknown option '--jsn' (see 'bgsnap info --help')"). Call it on the
 * subcommand's argv (argv[0] is the command name).
 */
int cli_getopt(struct cli_getopt *g, int argc, char **argv);

/*
 * Check that between @min and @max operands follow the options (from
 * optind). Returns their number, or -1 after a one-line error naming
 * @what (e.g. "FILE").
 */
int cli_operands(const struct cli_getopt *g, int argc, char **argv, int min,
		 int max, const char *what);

/*
 * The whole option loop of a command: cli_getopt() until the end, each
 * option stored by the table @g->opts or given to @g->take, then
 * cli_operands() with @min, @max and @what. Returns -1 when the command
 * goes on (operands from optind), EXIT_OK after --help printed the usage,
 * or EXIT_USAGE after a one-line error.
 */
int cli_parse(struct cli_getopt *g, int argc, char **argv, int min, int max,
	      const char *what);

/* The current option's argument as a size, a duration or a whole number
 * in [@min, @max]: true and *@out set, or false after a one-line error
 * naming the option ("save: --buffer: '12Q' is not a size ..."). */
bool cli_arg_size(const struct cli_getopt *g, const char *arg, uint64_t *out);
bool cli_arg_duration(const struct cli_getopt *g, const char *arg,
		      uint64_t *ns);
bool cli_arg_uint(const struct cli_getopt *g, const char *arg, uint64_t min,
		  uint64_t max, uint64_t *out);

/* True if an argument is -h or --help (for commands without options). */
bool cli_wants_help(int argc, char **argv);

/* ---- parsing ------------------------------------------------------------ */

/*
 * A size: a number with an optional unit, powers of 1024: "4096", "4096B",
 * "64K", "64KiB", "512M", "1.5G", "2T" (units case-insensitive; up to six
 * decimals, rounded down to a byte). Returns 0, -EINVAL (not a size; "MB"
 * and friends are refused as ambiguous) or -ERANGE (above 2^64 - 1).
 */
int cli_parse_size(const char *s, uint64_t *bytes);
/*
 * A duration: a number with a unit ns, us, ms, s, m (minutes) or h; a
 * bare number is seconds. "10s", "500ms", "1.5s", "2m". Returns 0,
 * -EINVAL or -ERANGE (above about 584 years).
 */
int cli_parse_duration(const char *s, uint64_t *ns);
/* A decimal whole number, no sign, no unit. 0, -EINVAL or -ERANGE. */
int cli_parse_uint(const char *s, uint64_t *v);

/* ---- human-readable figures --------------------------------------------- */

#define CLI_FMT_LEN 32

/* Into @buf (CLI_FMT_LEN bytes), which is returned, for use in printf:
 * sizes as "0 B", "512 MiB", "1.50 GiB" (three significant digits,
 * exact multiples without decimals); rates as "1.20 GiB/s"; durations as
 * "850 ns", "12.3 us", "1.23 ms", "2.50 s", "1m05s", "2h03m". */
const char *cli_fmt_size(char *buf, uint64_t bytes);
const char *cli_fmt_rate(char *buf, double bytes_per_s);
const char *cli_fmt_duration(char *buf, uint64_t ns);

/* ---- JSON --------------------------------------------------------------- */

/* Write @s as a JSON string literal (quotes and escapes included; bytes
 * that are not valid UTF-8 become U+FFFD). */
void cli_json_string(FILE *f, const char *s);

#define CLI_JSON_MAX_DEPTH 16

/*
 * A JSON writer: values are written as they are called, so keys come out
 * in the order the code emits them (stable); commas are placed for the
 * caller. Compact, one document per cli_json_end() (which adds the
 * newline). Nesting deeper than CLI_JSON_MAX_DEPTH is a bug and is
 * dropped.
 */
struct cli_json {
	FILE *f;
	unsigned depth;
	bool need_comma[CLI_JSON_MAX_DEPTH + 1];
	bool after_key;
};

void cli_json_init(struct cli_json *j, FILE *f);
void cli_json_object_begin(struct cli_json *j);
void cli_json_object_end(struct cli_json *j);
void cli_json_array_begin(struct cli_json *j);
void cli_json_array_end(struct cli_json *j);
/* The key of the next value (inside an object). */
void cli_json_key(struct cli_json *j, const char *key);
void cli_json_str(struct cli_json *j, const char *s); /* NULL: null */
void cli_json_uint(struct cli_json *j, uint64_t v);
void cli_json_int(struct cli_json *j, int64_t v);
void cli_json_double(struct cli_json *j, double v); /* not finite: null */
void cli_json_bool(struct cli_json *j, bool v);
void cli_json_null(struct cli_json *j);
/* Key and value in one call. */
void cli_json_kstr(struct cli_json *j, const char *key, const char *s);
void cli_json_kuint(struct cli_json *j, const char *key, uint64_t v);
void cli_json_kint(struct cli_json *j, const char *key, int64_t v);
void cli_json_kdouble(struct cli_json *j, const char *key, double v);
void cli_json_kbool(struct cli_json *j, const char *key, bool v);
/* End the document with a newline and flush: 0, or -EIO if any write
 * failed (a full disk behind stdout). */
int cli_json_end(struct cli_json *j);

/* ---- progress bar -------------------------------------------------------- */

/*
 * A one-line progress bar on stderr with percentage, amount, rate and ETA:
 *   verify [##########----------]  50%  256 MiB / 512 MiB  1.20 GiB/s  ETA 1s
 * Drawn only when stderr is a terminal and @quiet is false; redrawn at
 * most ten times a second; cli_progress_end() erases it, leaving the
 * terminal as it was. While one is shown, cli_error()/cli_warn() erase it
 * before printing.
 */
struct cli_progress {
	bool on;
	bool drawn;
	const char *label;
	uint64_t total; /* bytes; 0: unknown (no bar, no ETA) */
	uint64_t done;
	uint64_t start_ns, drawn_ns;
};

void cli_progress_start(struct cli_progress *p, const char *label,
			uint64_t total, bool quiet);
/* Set (or correct) the total once it is known. */
void cli_progress_total(struct cli_progress *p, uint64_t total);
void cli_progress_update(struct cli_progress *p, uint64_t done);
void cli_progress_end(struct cli_progress *p);
/* The text of the bar for a terminal @width columns wide (for tests). */
void cli_progress_format(char *buf, size_t len, unsigned width,
			 const char *label, uint64_t done, uint64_t total,
			 uint64_t elapsed_ns);

/* ---- output files -------------------------------------------------------- */

/*
 * What the commands that write files (save, export, flatten) share, so
 * that none ever replaces what it must not: an output is written under a
 * temporary name beside its final one and renamed into place when
 * complete. A symbolic link, a directory or any other file that is not a
 * regular one (a device, a FIFO, a socket) at the final name is refused,
 * --force or not; an existing regular file is replaced only with --force.
 */

struct stat;

/*
 * The directory of @path opened into *@dirfd, its last component into
 * @name (NAME_MAX + 1 bytes). 0, or -1 after a one-line error (not a
 * file name, or the directory cannot be opened).
 */
int cli_output_dir(const char *path, int *dirfd, char *name);

/*
 * May an output be written at @name in @dirfd (@what in messages)? 0
 * when nothing is there, or a regular file and @force; else -1 after a
 * one-line error ("exists (--force replaces it)", "is a FIFO: never
 * replaced" ...).
 */
int cli_output_check(int dirfd, const char *name, const char *what, bool force);

/*
 * A name beside @name in @dirfd that nothing has, ".NAME.TAG.PID.N.tmp",
 * into @tmp (NAME_MAX + 1 bytes). 0, or -1 after a one-line error
 * naming @what.
 */
int cli_output_temp(int dirfd, const char *name, const char *tag,
		    const char *what, char *tmp);

/*
 * Rename the complete temporary @tmp to @name, both in @dirfd. Without
 * @force nothing is ever replaced, atomically (RENAME_NOREPLACE, or
 * link() where the file system lacks it), whatever appeared meanwhile;
 * with it, what is there is checked again (cli_output_check()) just
 * before the rename. 0, or a negative errno after a one-line error
 * naming @what (-EEXIST: something is there). The caller removes @tmp
 * on failure and syncs the directory on success.
 */
int cli_output_publish(int dirfd, const char *tmp, const char *name,
		       const char *what, bool force);

/* ---- input files -------------------------------------------------------- */

/*
 * Refuse at once an input file that is not a regular one: a FIFO (whose
 * open would block until a writer comes, forever), a device, a socket, a
 * directory. 0 when @path is a regular file, or cannot be looked at (the
 * open then says why); else -1 after a one-line error, "@label@path: not
 * a regular file but a FIFO" (@label may be NULL), then "; @hint" if
 * @hint is not NULL. Nothing is opened (a device may act on an open);
 * stat() follows a symbolic link as the open will. What replaces the
 * file afterwards is the opener's to refuse: every open of a snapshot
 * file is made with O_NONBLOCK and checks again.
 */
int cli_input_check(const char *label, const char *path, const char *hint);

/* ---- target processes (save, restore, watch) ----------------------------- */

/*
 * What keeps @pid from being a target whatever is tried, said before
 * attaching, where the library's reason would mislead: a thread id (of
 * process N: /proc/@pid/status Tgid), a kernel thread (no user memory).
 * 0 when neither, or when /proc cannot say (attaching then says why);
 * else -1 after a one-line error "@cmd: ...".
 */
int cli_target_check(const char *cmd, int pid);

/* "process @pid: " to put before @msg, or "" when @msg names the process
 * already (the library's messages mostly do). Written into @buf. */
const char *cli_pid_prefix(char *buf, size_t len, int pid, const char *msg);

struct bgsnap;
/* How many of @h's mappings the --include/--exclude filters leave to
 * save or restore (regions not of kind BGSNAP_KIND_UNSAVED): restore and
 * watch refuse to go on with none. */
size_t cli_selected(const struct bgsnap *h);

/*
 * The error when no mapping of process @pid is selected: the fault of
 * --include/--exclude only when @filtered, else the process has nothing
 * that can be saved. One line, "@cmd: ...".
 */
void cli_error_no_mapping(const char *cmd, int pid, bool filtered);

/*
 * A save of process @pid failed with @err, @attached or in attaching
 * (bgsnap_target_pid): a truer reason than the library's into @why (@len
 * bytes; "" when there is none): a process stopped by SIGSTOP or job
 * control cannot run the calls bgsnap injects (-EBUSY). Returns the exit
 * code: EXIT_NOCAP when, @attached, a capability that saving needs is
 * missing (-EPERM/-EACCES, and 'bgsnap caps' says a required one is;
 * before, a refusal is ptrace's), and for -ENOTSUP/-ENOSYS; EXIT_USAGE
 * for -EINVAL (a bad address range in a filter); else EXIT_FAILED.
 */
int cli_save_failure(int pid, int err, bool attached, char *why, size_t len);

/* ---- core files (cmd_core.c) -------------------------------------------- */

struct bgsnap_file;
struct bgsnap_core_info;

/*
 * Write the core file of snapshot @f to @out as every output is written
 * (0600, a temporary name then a rename, never through a symbolic link,
 * nothing replaced without @force), a progress bar unless @quiet.
 * @filter: coredump_filter bits, -1 for the process's own. EXIT_OK, or an
 * exit code after a one-line error.
 */
int cli_core_write(struct bgsnap_file *f, const char *out, int64_t filter,
		   bool force, bool quiet, struct bgsnap_core_info *info);

/* A --filter argument: a whole number as /proc/PID/coredump_filter takes
 * it (0x for hex, a leading 0 for octal), below 2^32. */
bool cli_arg_filter(const struct cli_getopt *g, const char *arg,
		    int64_t *filter);

/* A core's summary as the keys of 'core --json' and 'export --core
 * --json' (core_bytes, threads, segments ...), into the open object. */
void cli_json_core_info(struct cli_json *j, const struct bgsnap_core_info *in);

/* ---- saving another process (cmd_save.c; the demo saves the same way) --- */

struct bgsnap_stats;
struct bgsnap_save_opts;

struct cli_save_req {
	int pid;
	const char *path; /* NULL: write to @fd */
	int fd;
	const char *const *include;
	size_t ninclude;
	const char *const *exclude;
	size_t nexclude;
	const struct bgsnap_save_opts *opts;
	bool quiet;	  /* no progress bar */
	const char *cmd;  /* in messages; NULL: "save" */
	const char *what; /* what a failure did not write; NULL: "snapshot" */
};

struct cli_save_result {
	size_t regions_saved;  /* protected, saved in the background */
	size_t regions_copied; /* private file mappings, copied while stopped */
	size_t regions_skipped;	    /* recorded by name only */
	uint64_t bytes_saved;	    /* bytes of the saved and copied regions */
	struct bgsnap_stats *stats; /* filled when not NULL */
};

/*
 * Save process @req->pid (bgsnap_target_pid, save, progress, wait) with
 * SIGINT/SIGTERM/SIGHUP cancelling it cleanly. Returns EXIT_OK, or an exit
 * code after a one-line error.
 */
int cli_save_pid(const struct cli_save_req *req, struct cli_save_result *res);

/* A save's statistics as the stable keys of 'save --json' (blackout_ms,
 * elapsed_s, pages_*, bytes_written, compression_ratio, stall_us_*,
 * peak_buffer_bytes ...), into the open object @j. */
void cli_json_save_stats(struct cli_json *j, const struct bgsnap_stats *st);

#endif /* BGS_CLI_H */
