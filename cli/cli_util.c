/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the subcommands: messages and exit codes, option
 * parsing, sizes and durations, human-readable figures, a JSON writer,
 * the clock and /proc, the progress bar, output and input files, and what
 * /proc says of a target process. See cli.h for the conventions they
 * implement.
 *
 * The file is over 1000 lines because it is every helper the commands
 * share; its sections do not call each other much, and each is short.
 * It is kept as one file so that the unit test (tests/cli/test_cli_util.c)
 * links it alone, as the commands see it.
 */
#include "cli.h"

#include <bgsnap.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The progress bar on screen, if any. Messages erase it before they
 * print. */
static struct cli_progress *shown;

/* ---- messages and exit codes -------------------------------------------- */

static void erase_progress(void)
{
	if (shown && shown->drawn) {
		fputs("\r\033[K", stderr);
		shown->drawn = false;
	}
}

static void __attribute__((format(printf, 2, 0)))
message(const char *kind, const char *fmt, va_list ap)
{
	erase_progress();
	fprintf(stderr, "bgsnap: %s: ", kind);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

void cli_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	message("error", fmt, ap);
	va_end(ap);
}

void cli_warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	message("warning", fmt, ap);
	va_end(ap);
}

int cli_file_exit(int err)
{
	if (err <= BGSNAP_EBADMAGIC && err >= BGSNAP_ECORRUPT)
		return EXIT_BADFILE;
	switch (-err) {
	case ENOENT:
	case ENOTDIR:
	case EISDIR:
	case ESPIPE: /* a pipe, a device: not a snapshot file */
		return EXIT_BADFILE;
	}
	return EXIT_FAILED;
}

static volatile sig_atomic_t caught;

static void on_signal(int sig)
{
	caught = sig;
}

static const int stop_sigs[] = { SIGINT, SIGTERM, SIGHUP };

const sigset_t *cli_stop_signals(void)
{
	static sigset_t set;

	sigemptyset(&set);
	for (size_t i = 0; i < sizeof(stop_sigs) / sizeof(stop_sigs[0]); i++)
		sigaddset(&set, stop_sigs[i]);
	return &set;
}

void cli_catch_signals(void)
{
	/* A command that holds another process must not be stopped by job
	 * control: every writer of a process being saved would wait on a
	 * protected page until SIGCONT. (SIGSTOP cannot be refused.) */
	static const int job_control[] = { SIGTSTP, SIGTTIN, SIGTTOU };
	struct sigaction sa = { .sa_handler = on_signal };
	const struct sigaction ignore = { .sa_handler = SIG_IGN };

	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(stop_sigs) / sizeof(stop_sigs[0]); i++)
		sigaction(stop_sigs[i], &sa, NULL);
	for (size_t i = 0; i < sizeof(job_control) / sizeof(job_control[0]);
	     i++)
		sigaction(job_control[i], &ignore, NULL);
}

int cli_interrupted(void)
{
	return caught;
}

/* ---- options ------------------------------------------------------------ */

static void usage_error(const struct cli_getopt *g, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void usage_error(const struct cli_getopt *g, const char *fmt, ...)
{
	char what[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	cli_error("%s: %s (see 'bgsnap %s --help')", g->cmd, what, g->cmd);
}

/* How the user wrote option @c, for messages. */
static void name_option(struct cli_getopt *g, int c, int longindex, char **argv)
{
	const char *arg = optind > 0 ? argv[optind - 1] : "";

	if (longindex >= 0)
		snprintf(g->optname, sizeof(g->optname), "--%s",
			 g->longopts[longindex].name);
	else if (c != '?' && c != ':')
		snprintf(g->optname, sizeof(g->optname), "-%c", c);
	else if (optopt && strncmp(arg, "--", 2))
		snprintf(g->optname, sizeof(g->optname), "-%c", optopt);
	else
		snprintf(g->optname, sizeof(g->optname), "%.*s",
			 (int)strcspn(arg, "="), arg);
}

static int bad_option(struct cli_getopt *g, int c, char **argv)
{
	const char *arg = optind > 0 ? argv[optind - 1] : "";

	/* getopt_long leaves optopt 0 for an unknown long option and sets
	 * it to the option's value for "--json=1". */
	if (c == ':')
		usage_error(g, "option '%s' needs an argument", g->optname);
	else if (optopt && !strncmp(arg, "--", 2) && strchr(arg, '='))
		usage_error(g, "option '%.*s' takes no argument",
			    (int)(strchr(arg, '=') - arg), arg);
	else if (optopt)
		usage_error(g, "unknown option '-%c'", optopt);
	else
		usage_error(g, "unknown option '%s'", arg);
	return CLI_OPT_BAD;
}

int cli_getopt(struct cli_getopt *g, int argc, char **argv)
{
	int longindex = -1;
	int c;

	if (!g->spec[0]) {
		/* ':' first: a missing argument is told apart from an
		 * unknown option. Start over on a fresh argv. */
		snprintf(g->spec, sizeof(g->spec), ":%sh", g->shortopts);
		optind = 0;
	}
	opterr = 0;
	c = getopt_long(argc, argv, g->spec, g->longopts, &longindex);
	if (c == -1)
		return CLI_OPT_END;
	name_option(g, c, longindex, argv);
	if (c == '?' || c == ':')
		return bad_option(g, c, argv);
	if (c == 'h') {
		fputs(g->usage, stdout);
		return CLI_OPT_HELP;
	}
	return c;
}

int cli_operands(const struct cli_getopt *g, int argc, char **argv, int min,
		 int max, const char *what)
{
	const int n = argc - optind;

	if (n < min) {
		usage_error(g, "missing %s", what);
		return -1;
	}
	if (n > max) {
		usage_error(g, "unexpected argument '%s'", argv[optind + max]);
		return -1;
	}
	return n;
}

static bool arg_result(const struct cli_getopt *g, const char *arg, int ret,
		       const char *kind, const char *hint)
{
	if (ret == -ERANGE)
		usage_error(g, "%s: '%s' is too large", g->optname, arg);
	else if (ret)
		usage_error(g, "%s: '%s' is not %s (%s)", g->optname, arg, kind,
			    hint);
	return !ret;
}

bool cli_arg_size(const struct cli_getopt *g, const char *arg, uint64_t *out)
{
	return arg_result(g, arg, cli_parse_size(arg, out), "a size",
			  "use e.g. 64K, 512M, 4G or bytes");
}

bool cli_arg_duration(const struct cli_getopt *g, const char *arg, uint64_t *ns)
{
	return arg_result(g, arg, cli_parse_duration(arg, ns), "a duration",
			  "use e.g. 500ms, 10s, 2m");
}

bool cli_arg_uint(const struct cli_getopt *g, const char *arg, uint64_t min,
		  uint64_t max, uint64_t *out)
{
	const int ret = cli_parse_uint(arg, out);

	if (!ret && (*out < min || *out > max)) {
		usage_error(g, "%s: %s is out of range (%llu..%llu)",
			    g->optname, arg, (unsigned long long)min,
			    (unsigned long long)max);
		return false;
	}
	return arg_result(g, arg, ret, "a whole number", "digits only");
}

static const struct cli_opt *find_opt(const struct cli_opt *t, int c)
{
	for (; t && t->val; t++)
		if (t->val == c)
			return t;
	return NULL;
}

static bool store_pid(struct cli_getopt *g, int *pid)
{
	uint64_t v;

	if (!cli_arg_uint(g, optarg, 1, INT32_MAX, &v))
		return false;
	*pid = (int)v;
	return true;
}

static bool store_list(const struct cli_getopt *g, const struct cli_opt *o)
{
	if (*o->count == o->cap) {
		cli_error("%s: %s: at most %zu of them", g->cmd,
			  o->name ? o->name : g->optname, o->cap);
		return false;
	}
	o->list[(*o->count)++] = optarg;
	return true;
}

/* The current option, stored where @o says: true, or false after a
 * one-line error. */
static bool store_opt(struct cli_getopt *g, const struct cli_opt *o)
{
	if (o->flag)
		*o->flag = true;
	else if (o->str)
		*o->str = optarg;
	else if (o->size)
		return cli_arg_size(g, optarg, o->size);
	else if (o->duration)
		return cli_arg_duration(g, optarg, o->duration);
	else if (o->uint)
		return cli_arg_uint(g, optarg, o->min, o->max, o->uint);
	else if (o->pid)
		return store_pid(g, o->pid);
	else
		return store_list(g, o);
	return true;
}

static bool has_dest(const struct cli_opt *o)
{
	return o->flag || o->str || o->size || o->duration || o->uint ||
	       o->pid || o->list;
}

int cli_parse(struct cli_getopt *g, int argc, char **argv, int min, int max,
	      const char *what)
{
	const struct cli_opt *o;
	bool ok;
	int c;

	while ((c = cli_getopt(g, argc, argv)) != CLI_OPT_END) {
		if (c == CLI_OPT_HELP)
			return EXIT_OK;
		if (c == CLI_OPT_BAD)
			return EXIT_USAGE;
		o = find_opt(g->opts, c);
		if (o && has_dest(o))
			ok = store_opt(g, o);
		else
			ok = g->take && g->take(g, c, g->ctx);
		if (!ok)
			return EXIT_USAGE;
	}
	if (cli_operands(g, argc, argv, min, max, what) < 0)
		return EXIT_USAGE;
	return -1;
}

bool cli_wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
			return true;
	return false;
}

/* ---- parsing ------------------------------------------------------------ */

#define FRAC_DIGITS 6
#define FRAC_SCALE  1000000u

/* A decimal number with an optional fraction: *@ip whole part, *@frac
 * millionths (further digits dropped). Advances *@sp past it. */
static int parse_number(const char **sp, uint64_t *ip, uint64_t *frac)
{
	const char *s = *sp;
	unsigned digits = 0;
	uint64_t scale = FRAC_SCALE;

	*ip = 0;
	*frac = 0;
	if (*s < '0' || *s > '9')
		return -EINVAL;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (*ip > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
			return -ERANGE;
		*ip = *ip * 10 + (uint64_t)(*s - '0');
	}
	if (*s == '.') {
		if (s[1] < '0' || s[1] > '9')
			return -EINVAL;
		for (s++; *s >= '0' && *s <= '9'; s++)
			if (digits++ < FRAC_DIGITS) {
				scale /= 10;
				*frac += (uint64_t)(*s - '0') * scale;
			}
	}
	*sp = s;
	return 0;
}

/* @ip + @frac/1e6, times @mult, rounded down; -ERANGE on overflow. */
static int scale_number(uint64_t ip, uint64_t frac, uint64_t mult,
			uint64_t *out)
{
	uint64_t part;

	if (mult && ip > UINT64_MAX / mult)
		return -ERANGE;
	/* frac < 1e6 and mult <= 2^40 or 3.6e12: the product fits. */
	part = frac * mult / FRAC_SCALE;
	if (ip * mult > UINT64_MAX - part)
		return -ERANGE;
	*out = ip * mult + part;
	return 0;
}

struct unit {
	const char *name;
	uint64_t mult;
};

static const struct unit size_units[] = {
	{ "", 1 },	     { "b", 1 },
	{ "k", 1ull << 10 }, { "kib", 1ull << 10 },
	{ "m", 1ull << 20 }, { "mib", 1ull << 20 },
	{ "g", 1ull << 30 }, { "gib", 1ull << 30 },
	{ "t", 1ull << 40 }, { "tib", 1ull << 40 },
};

static const struct unit time_units[] = {
	{ "", 1000000000ull },
	{ "ns", 1 },
	{ "us", 1000 },
	{ "ms", 1000000 },
	{ "s", 1000000000ull },
	{ "m", 60000000000ull },
	{ "h", 3600000000000ull },
};

static int parse_with_units(const char *s, const struct unit *u, size_t n,
			    uint64_t *out)
{
	uint64_t ip, frac;
	int ret;

	if (!s)
		return -EINVAL;
	ret = parse_number(&s, &ip, &frac);
	if (ret)
		return ret;
	for (size_t i = 0; i < n; i++)
		if (!strcasecmp(s, u[i].name))
			return scale_number(ip, frac, u[i].mult, out);
	return -EINVAL;
}

int cli_parse_size(const char *s, uint64_t *bytes)
{
	return parse_with_units(s, size_units,
				sizeof(size_units) / sizeof(size_units[0]),
				bytes);
}

int cli_parse_duration(const char *s, uint64_t *ns)
{
	return parse_with_units(s, time_units,
				sizeof(time_units) / sizeof(time_units[0]), ns);
}

int cli_parse_uint(const char *s, uint64_t *v)
{
	uint64_t frac;

	if (!s || !*s || strspn(s, "0123456789") != strlen(s))
		return -EINVAL;
	return parse_number(&s, v, &frac);
}

/* ---- human-readable figures --------------------------------------------- */

/* @v in @unit with three significant digits. */
static const char *fmt_scaled(char *buf, double v, const char *unit)
{
	const int prec = v < 9.995 ? 2 : v < 99.95 ? 1 : 0;

	snprintf(buf, CLI_FMT_LEN, "%.*f %s", prec, v, unit);
	return buf;
}

static const char *const size_names[] = { "B",	 "KiB", "MiB", "GiB",
					  "TiB", "PiB", "EiB" };

const char *cli_fmt_size(char *buf, uint64_t bytes)
{
	unsigned u = 0;

	while (u < 6 && bytes >= (1ull << (10 * (u + 1))))
		u++;
	if (!(bytes & ((1ull << (10 * u)) - 1))) {
		snprintf(buf, CLI_FMT_LEN, "%llu %s",
			 (unsigned long long)(bytes >> (10 * u)),
			 size_names[u]);
		return buf;
	}
	return fmt_scaled(buf, (double)bytes / (double)(1ull << (10 * u)),
			  size_names[u]);
}

const char *cli_fmt_rate(char *buf, double bytes_per_s)
{
	static const char *const names[] = { "B/s", "KiB/s", "MiB/s", "GiB/s",
					     "TiB/s" };
	unsigned u = 0;

	if (!isfinite(bytes_per_s) || bytes_per_s < 0)
		bytes_per_s = 0;
	while (u < 4 && bytes_per_s >= 1023.5) {
		bytes_per_s /= 1024;
		u++;
	}
	return fmt_scaled(buf, bytes_per_s, names[u]);
}

const char *cli_fmt_duration(char *buf, uint64_t ns)
{
	const uint64_t s = ns / 1000000000ull;

	if (ns < 1000)
		snprintf(buf, CLI_FMT_LEN, "%llu ns", (unsigned long long)ns);
	else if (ns < 1000000)
		fmt_scaled(buf, (double)ns / 1e3, "us");
	else if (ns < 1000000000)
		fmt_scaled(buf, (double)ns / 1e6, "ms");
	else if (ns < 60000000000ull)
		fmt_scaled(buf, (double)ns / 1e9, "s");
	else if (s < 3600)
		snprintf(buf, CLI_FMT_LEN, "%llum%02llus",
			 (unsigned long long)(s / 60),
			 (unsigned long long)(s % 60));
	else
		snprintf(buf, CLI_FMT_LEN, "%lluh%02llum",
			 (unsigned long long)(s / 3600),
			 (unsigned long long)(s / 60 % 60));
	return buf;
}

/* ---- JSON --------------------------------------------------------------- */

/* The length of the valid UTF-8 sequence at @s, or 0 if there is none
 * (overlong forms, surrogates and values above U+10FFFF are invalid). */
static size_t utf8_len(const unsigned char *s)
{
	size_t n;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, cp = s[0] & 0x07;
	else
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80) /* a NUL stops here too */
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	return n;
}

static void json_escape_byte(FILE *f, unsigned char c)
{
	switch (c) {
	case '"':
	case '\\':
		fprintf(f, "\\%c", c);
		return;
	case '\b':
		fputs("\\b", f);
		return;
	case '\f':
		fputs("\\f", f);
		return;
	case '\n':
		fputs("\\n", f);
		return;
	case '\r':
		fputs("\\r", f);
		return;
	case '\t':
		fputs("\\t", f);
		return;
	}
	if (c < 0x20 || c == 0x7f)
		fprintf(f, "\\u%04x", c);
	else
		fputc(c, f);
}

void cli_json_string(FILE *f, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	fputc('"', f);
	while (*p) {
		const size_t n = utf8_len(p);

		if (n == 1)
			json_escape_byte(f, *p);
		else if (n)
			fwrite(p, 1, n, f);
		else
			fputs("\\ufffd", f); /* one invalid byte */
		p += n ? n : 1;
	}
	fputc('"', f);
}

void cli_json_init(struct cli_json *j, FILE *f)
{
	memset(j, 0, sizeof(*j));
	j->f = f;
}

/* Called before each value: writes the comma that separates it from the
 * previous one, unless it follows a key. */
static void json_value(struct cli_json *j)
{
	if (j->after_key) {
		j->after_key = false;
		return;
	}
	if (j->need_comma[j->depth])
		fputc(',', j->f);
	j->need_comma[j->depth] = true;
}

static void json_open(struct cli_json *j, char c)
{
	json_value(j);
	fputc(c, j->f);
	if (j->depth < CLI_JSON_MAX_DEPTH)
		j->need_comma[++j->depth] = false;
}

static void json_close(struct cli_json *j, char c)
{
	if (j->depth)
		j->depth--;
	fputc(c, j->f);
}

void cli_json_object_begin(struct cli_json *j)
{
	json_open(j, '{');
}

void cli_json_object_end(struct cli_json *j)
{
	json_close(j, '}');
}

void cli_json_array_begin(struct cli_json *j)
{
	json_open(j, '[');
}

void cli_json_array_end(struct cli_json *j)
{
	json_close(j, ']');
}

void cli_json_key(struct cli_json *j, const char *key)
{
	json_value(j);
	cli_json_string(j->f, key);
	fputc(':', j->f);
	j->after_key = true;
}

void cli_json_str(struct cli_json *j, const char *s)
{
	json_value(j);
	if (s)
		cli_json_string(j->f, s);
	else
		fputs("null", j->f);
}

void cli_json_uint(struct cli_json *j, uint64_t v)
{
	json_value(j);
	fprintf(j->f, "%llu", (unsigned long long)v);
}

void cli_json_int(struct cli_json *j, int64_t v)
{
	json_value(j);
	fprintf(j->f, "%lld", (long long)v);
}

void cli_json_double(struct cli_json *j, double v)
{
	json_value(j);
	/* %g never prints a locale's decimal comma: the command does not
	 * call setlocale(). */
	if (isfinite(v))
		fprintf(j->f, "%.15g", v);
	else
		fputs("null", j->f);
}

void cli_json_bool(struct cli_json *j, bool v)
{
	json_value(j);
	fputs(v ? "true" : "false", j->f);
}

void cli_json_null(struct cli_json *j)
{
	json_value(j);
	fputs("null", j->f);
}

void cli_json_kstr(struct cli_json *j, const char *key, const char *s)
{
	cli_json_key(j, key);
	cli_json_str(j, s);
}

void cli_json_kuint(struct cli_json *j, const char *key, uint64_t v)
{
	cli_json_key(j, key);
	cli_json_uint(j, v);
}

void cli_json_kint(struct cli_json *j, const char *key, int64_t v)
{
	cli_json_key(j, key);
	cli_json_int(j, v);
}

void cli_json_kdouble(struct cli_json *j, const char *key, double v)
{
	cli_json_key(j, key);
	cli_json_double(j, v);
}

void cli_json_kbool(struct cli_json *j, const char *key, bool v)
{
	cli_json_key(j, key);
	cli_json_bool(j, v);
}

int cli_json_end(struct cli_json *j)
{
	fputc('\n', j->f);
	if (fflush(j->f) || ferror(j->f))
		return -EIO;
	return 0;
}

/* ---- time and /proc ----------------------------------------------------- */

uint64_t cli_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

bool cli_pause_ms(uint64_t ms)
{
	const uint64_t end = cli_now_ns() + ms * 1000000;

	while (!cli_interrupted() && cli_now_ns() < end)
		nanosleep(&(struct timespec){ 0, 5000000 }, NULL);
	return !cli_interrupted();
}

ssize_t cli_read_small(const char *path, char *buf, size_t size)
{
	const int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	return n;
}

uint64_t cli_proc_kb(const char *path, const char *const *keys, int n)
{
	char buf[4096];
	uint64_t kb = 0;

	if (cli_read_small(path, buf, sizeof(buf)) < 0)
		return 0;
	for (int i = 0; i < n; i++) {
		const size_t klen = strlen(keys[i]);

		for (const char *p = buf; p; p = strchr(p, '\n')) {
			p += *p == '\n';
			if (!strncmp(p, keys[i], klen)) {
				kb += strtoull(p + klen, NULL, 10);
				break;
			}
		}
	}
	return kb * 1024;
}

/* ---- progress bar -------------------------------------------------------- */

#define PROGRESS_INTERVAL_NS 100000000ull /* ten redraws a second */

static unsigned terminal_width(void)
{
	struct winsize ws;

	if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) || ws.ws_col < 20)
		return 80;
	return ws.ws_col;
}

/* "ETA 3s", "ETA 1m05s", "ETA 2h03m": whole seconds, rounded up. */
static void fmt_eta(char *buf, size_t len, uint64_t done, uint64_t total,
		    uint64_t elapsed_ns)
{
	double left;
	uint64_t s;

	if (!done || !total || done >= total) {
		snprintf(buf, len, "ETA --");
		return;
	}
	left = (double)elapsed_ns / 1e9 * (double)(total - done) / (double)done;
	s = left > 359999 ? 359999 : (uint64_t)ceil(left);
	if (s < 60)
		snprintf(buf, len, "ETA %llus", (unsigned long long)s);
	else if (s < 3600)
		snprintf(buf, len, "ETA %llum%02llus",
			 (unsigned long long)(s / 60),
			 (unsigned long long)(s % 60));
	else
		snprintf(buf, len, "ETA %lluh%02llum",
			 (unsigned long long)(s / 3600),
			 (unsigned long long)(s / 60 % 60));
}

static void fmt_bar(char *buf, size_t width, uint64_t done, uint64_t total)
{
	const size_t fill =
		(size_t)((double)width * (double)done / (double)total);

	for (size_t i = 0; i < width; i++)
		buf[i] = i < fill ? '#' : '-';
	buf[width] = '\0';
}

void cli_progress_format(char *buf, size_t len, unsigned width,
			 const char *label, uint64_t done, uint64_t total,
			 uint64_t elapsed_ns)
{
	char d[CLI_FMT_LEN], t[CLI_FMT_LEN], r[CLI_FMT_LEN], eta[32];
	char tail[160], bar[128];
	const double secs = (double)elapsed_ns / 1e9;
	size_t room;
	int n;

	if (total && done > total)
		done = total;
	cli_fmt_rate(r, secs > 0 ? (double)done / secs : 0);
	if (!total) {
		snprintf(buf, len, "%s  %s  %s", label, cli_fmt_size(d, done),
			 r);
		return;
	}
	fmt_eta(eta, sizeof(eta), done, total, elapsed_ns);
	/* Fixed widths: the bar keeps its length as the figures change. */
	n = snprintf(tail, sizeof(tail), " %3u%%  %8s / %s  %10s  %-10s",
		     (unsigned)(done * 100 / total), cli_fmt_size(d, done),
		     cli_fmt_size(t, total), r, eta);
	/* The bar takes what the label and figures leave, one column
	 * spare so the cursor never wraps. */
	room = width > strlen(label) + (size_t)n + 4
		       ? width - strlen(label) - (size_t)n - 4
		       : 0;
	if (room > sizeof(bar) - 1)
		room = sizeof(bar) - 1;
	if (room < 10) {
		snprintf(buf, len, "%s%s", label, tail);
		return;
	}
	fmt_bar(bar, room, done, total);
	snprintf(buf, len, "%s [%s]%s", label, bar, tail);
}

static void draw(struct cli_progress *p, uint64_t now)
{
	char line[256];

	cli_progress_format(line, sizeof(line), terminal_width(), p->label,
			    p->done, p->total, now - p->start_ns);
	fprintf(stderr, "\r%s\033[K", line);
	fflush(stderr);
	p->drawn = true;
	p->drawn_ns = now;
}

void cli_progress_start(struct cli_progress *p, const char *label,
			uint64_t total, bool quiet)
{
	memset(p, 0, sizeof(*p));
	p->on = !quiet && isatty(STDERR_FILENO);
	p->label = label;
	p->total = total;
	/* The first draw comes after one interval: a command that is done
	 * by then never flashes a bar. */
	p->start_ns = cli_now_ns();
	p->drawn_ns = p->start_ns;
	if (p->on)
		shown = p;
}

void cli_progress_total(struct cli_progress *p, uint64_t total)
{
	p->total = total;
}

void cli_progress_update(struct cli_progress *p, uint64_t done)
{
	const uint64_t now = cli_now_ns();

	p->done = done;
	if (p->on && now - p->drawn_ns >= PROGRESS_INTERVAL_NS)
		draw(p, now);
}

void cli_progress_end(struct cli_progress *p)
{
	if (shown == p) {
		erase_progress();
		shown = NULL;
	}
	p->on = false;
}

/* ---- output files ------------------------------------------------------- */

/* Room for the temporary's decoration around a final name. */
#define OUTPUT_NAME_MAX	  (NAME_MAX - 24)
#define OUTPUT_TEMP_TRIES 100

int cli_output_dir(const char *path, int *dirfd, char *name)
{
	const char *slash = strrchr(path, '/');
	const char *base = slash ? slash + 1 : path;
	char dir[PATH_MAX];

	*dirfd = -1;
	if (!*base || !strcmp(base, ".") || !strcmp(base, "..") ||
	    strlen(base) > OUTPUT_NAME_MAX) {
		cli_error("%s: not a file name for the output", path);
		return -1;
	}
	snprintf(name, NAME_MAX + 1, "%s", base);
	snprintf(dir, sizeof(dir), "%.*s",
		 slash ? (slash == path ? 1 : (int)(slash - path)) : 1,
		 slash ? path : ".");
	*dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (*dirfd < 0)
		cli_error("%s: %s", dir, strerror(errno));
	return *dirfd < 0 ? -1 : 0;
}

/* What a file that is not a regular one is, for messages. */
static const char *file_kind(mode_t mode)
{
	if (S_ISLNK(mode))
		return "a symbolic link";
	if (S_ISDIR(mode))
		return "a directory";
	if (S_ISFIFO(mode))
		return "a FIFO";
	if (S_ISCHR(mode))
		return "a character device";
	if (S_ISBLK(mode))
		return "a block device";
	if (S_ISSOCK(mode))
		return "a socket";
	return "not a regular file";
}

int cli_output_check(int dirfd, const char *name, const char *what, bool force)
{
	struct stat st;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW)) {
		if (errno == ENOENT)
			return 0;
		cli_error("%s: %s", what, strerror(errno));
		return -1;
	}
	if (!S_ISREG(st.st_mode))
		cli_error("%s: is %s: refused (never replaced, even with "
			  "--force)",
			  what, file_kind(st.st_mode));
	else if (!force)
		cli_error("%s: exists (--force replaces it)", what);
	else
		return 0;
	return -1;
}

int cli_output_temp(int dirfd, const char *name, const char *tag,
		    const char *what, char *tmp)
{
	struct stat st;

	for (unsigned attempt = 0; attempt < OUTPUT_TEMP_TRIES; attempt++) {
		snprintf(tmp, NAME_MAX + 1, ".%.200s.%s.%d.%u.tmp", name, tag,
			 (int)getpid(), attempt);
		if (fstatat(dirfd, tmp, &st, AT_SYMLINK_NOFOLLOW) &&
		    errno == ENOENT)
			return 0;
	}
	cli_error("%s: no free temporary name beside it", what);
	return -1;
}

/* Without --force: never replace an existing file, atomically. */
static int publish_noreplace(int dirfd, const char *tmp, const char *name)
{
	if (!renameat2(dirfd, tmp, dirfd, name, RENAME_NOREPLACE))
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -errno;
	/* A file system without RENAME_NOREPLACE: link() never replaces. */
	if (linkat(dirfd, tmp, dirfd, name, 0))
		return -errno;
	unlinkat(dirfd, tmp, 0);
	return 0;
}

int cli_output_publish(int dirfd, const char *tmp, const char *name,
		       const char *what, bool force)
{
	int ret;

	if (force && cli_output_check(dirfd, name, what, true))
		return -EEXIST;
	if (force)
		ret = renameat(dirfd, tmp, dirfd, name) ? -errno : 0;
	else
		ret = publish_noreplace(dirfd, tmp, name);
	/* A file appeared at @name since the check: say what it is. */
	if (ret == -EEXIST && !cli_output_check(dirfd, name, what, false))
		cli_error("%s: exists (--force replaces it)", what);
	else if (ret && ret != -EEXIST)
		cli_error("%s: %s", what, strerror(-ret));
	return ret;
}

/* ---- input files --------------------------------------------------------- */

int cli_input_check(const char *label, const char *path, const char *hint)
{
	struct stat st;

	if (stat(path, &st) || S_ISREG(st.st_mode))
		return 0;
	cli_error("%s%s: not a regular file but %s%s%s", label ? label : "",
		  path, file_kind(st.st_mode), hint ? "; " : "",
		  hint ? hint : "");
	return -1;
}

/* ---- target processes ---------------------------------------------------- */

#define PF_KTHREAD 0x00200000u /* include/linux/sched.h */

struct proc_facts {
	char name[64];
	int tgid;
	char state;
	unsigned long flags;
};

/* /proc/@pid/status's Name and Tgid. 0, or -1 when it cannot be read. */
static int read_status(int pid, struct proc_facts *pf)
{
	char path[64], line[256];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		const char *v = line + 5 + strspn(line + 5, " \t");

		if (!strncmp(line, "Name:", 5))
			snprintf(pf->name, sizeof(pf->name), "%.*s",
				 (int)strcspn(v, "\n"), v);
		else if (!strncmp(line, "Tgid:", 5))
			pf->tgid = atoi(v);
	}
	fclose(f);
	return 0;
}

/* /proc/@pid/stat's state and flags (after the name, which may hold
 * anything but ends at the last ')'). 0, or -1. */
static int read_stat(int pid, struct proc_facts *pf)
{
	char path[64], buf[1024];
	const char *p;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "re");
	if (!f)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 1, " %c %*d %*d %*d %*d %*d %lu", &pf->state,
			 &pf->flags) != 2)
		return -1;
	return 0;
}

static int proc_facts(int pid, struct proc_facts *pf)
{
	memset(pf, 0, sizeof(*pf));
	return read_status(pid, pf) || read_stat(pid, pf) ? -1 : 0;
}

int cli_target_check(const char *cmd, int pid)
{
	struct proc_facts pf;

	if (proc_facts(pid, &pf))
		return 0;
	if (pf.tgid > 0 && pf.tgid != pid) {
		cli_error("%s: %d is a thread of process %d (%s), not a "
			  "process: give --pid %d",
			  cmd, pid, pf.tgid, pf.name, pf.tgid);
		return -1;
	}
	if (pf.flags & PF_KTHREAD) {
		cli_error("%s: process %d (%s) is a kernel thread: it has no "
			  "user memory",
			  cmd, pid, pf.name);
		return -1;
	}
	return 0;
}

void cli_error_no_mapping(const char *cmd, int pid, bool filtered)
{
	if (filtered)
		cli_error("%s: no mapping of process %d is selected by "
			  "--include/--exclude",
			  cmd, pid);
	else
		cli_error("%s: process %d has no mapping that can be saved or "
			  "restored (only file and special mappings)",
			  cmd, pid);
}

/* Does this system lack a capability that every save needs? */
static bool lacks_capability(void)
{
	struct bgsnap_capability caps[BGSNAP_MAX_CAPABILITIES];
	const int n = bgsnap_probe(caps, BGSNAP_MAX_CAPABILITIES);

	for (int i = 0; i < n; i++)
		if (caps[i].required && !caps[i].ok)
			return true;
	return false;
}

int cli_save_failure(int pid, int err, bool attached, char *why, size_t len)
{
	struct proc_facts pf;

	why[0] = '\0';
	if (err == -EBUSY && !proc_facts(pid, &pf) && pf.state == 'T') {
		snprintf(why, len,
			 "it is stopped (SIGSTOP or job control), "
			 "and a stopped process cannot run the calls bgsnap "
			 "injects: continue it ('kill -CONT %d') and try "
			 "again",
			 pid);
		return EXIT_FAILED;
	}
	switch (-err) {
	case EPERM:
	case EACCES:
		return attached && lacks_capability() ? EXIT_NOCAP
						      : EXIT_FAILED;
	case ENOTSUP:
	case ENOSYS:
		return EXIT_NOCAP;
	case EINVAL:
		return EXIT_USAGE;
	}
	return EXIT_FAILED;
}

size_t cli_selected(const struct bgsnap *h)
{
	size_t n = 0;

	for (size_t i = 0; i < bgsnap_region_count(h); i++) {
		struct bgsnap_region_info ri = { .size = sizeof(ri) };

		n += !bgsnap_region(h, i, &ri) &&
		     ri.kind != BGSNAP_KIND_UNSAVED;
	}
	return n;
}

const char *cli_pid_prefix(char *buf, size_t len, int pid, const char *msg)
{
	char name[32];
	const int n = snprintf(name, sizeof(name), "process %d", pid);

	for (const char *p = msg; (p = strstr(p, name)); p += n)
		if (!isdigit((unsigned char)p[n]))
			return "";
	snprintf(buf, len, "%s: ", name);
	return buf;
}
