/* SPDX-License-Identifier: MIT */
/* The command's helpers (cli/cli_util.c): sizes, durations, figures, the
 * JSON writer, option parsing, the progress bar's text and output files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "cli.h"

#include <bgsnap.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_parse_size(void **state)
{
	static const struct {
		const char *s;
		uint64_t v;
	} ok[] = {
		{ "0", 0 },
		{ "4096", 4096 },
		{ "4096B", 4096 },
		{ "64K", 65536 },
		{ "64k", 65536 },
		{ "64KiB", 65536 },
		{ "64kib", 65536 },
		{ "512M", 512ull << 20 },
		{ "4G", 4ull << 30 },
		{ "1.5G", 3ull << 29 },
		{ "0.5K", 512 },
		{ "2T", 2ull << 40 },
		{ "1.0000009K", 1024 }, /* digits past six are dropped */
		{ "18446744073709551615", UINT64_MAX },
		{ "16777215T", 16777215ull << 40 },
	};
	static const char *const bad[] = {
		"",    "K",    "12Q",	"-1",	 "+1",	 " 1",
		"1 ",  "1 K",  "1.",	".5K",	 "12MB", "12KB",
		"1e3", "0x10", "1.5.5", "4GiBs", "5P",
	};
	uint64_t v;

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		v = 1;
		assert_int_equal(cli_parse_size(ok[i].s, &v), 0);
		assert_int_equal(v, ok[i].v);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(cli_parse_size(bad[i], &v), -EINVAL);
	assert_int_equal(cli_parse_size(NULL, &v), -EINVAL);
	assert_int_equal(cli_parse_size("18446744073709551616", &v), -ERANGE);
	assert_int_equal(cli_parse_size("16777216T", &v), -ERANGE);
	assert_int_equal(cli_parse_size("16777215.99999T", &v), 0);
	assert_int_equal(cli_parse_size("17179869184G", &v), -ERANGE);
}

static void test_parse_duration(void **state)
{
	static const struct {
		const char *s;
		uint64_t ns;
	} ok[] = {
		{ "10s", 10000000000ull },
		{ "500ms", 500000000ull },
		{ "1.5s", 1500000000ull },
		{ "2m", 120000000000ull },
		{ "1h", 3600000000000ull },
		{ "250us", 250000ull },
		{ "7ns", 7 },
		{ "3", 3000000000ull },
		{ "0.25", 250000000ull },
		{ "10MS", 10000000ull },
	};
	static const char *const bad[] = {
		"", "s", "10x", "10 s", "-1s", "1.s", "ms", "1d",
	};
	uint64_t v;

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		assert_int_equal(cli_parse_duration(ok[i].s, &v), 0);
		assert_int_equal(v, ok[i].ns);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(cli_parse_duration(bad[i], &v), -EINVAL);
	assert_int_equal(cli_parse_duration("99999999999h", &v), -ERANGE);
}

static void test_parse_uint(void **state)
{
	uint64_t v;

	(void)state;
	assert_int_equal(cli_parse_uint("0", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(cli_parse_uint("4242", &v), 0);
	assert_int_equal(v, 4242);
	assert_int_equal(cli_parse_uint("18446744073709551615", &v), 0);
	assert_int_equal(v, UINT64_MAX);
	assert_int_equal(cli_parse_uint("18446744073709551616", &v), -ERANGE);
	assert_int_equal(cli_parse_uint("4.2", &v), -EINVAL);
	assert_int_equal(cli_parse_uint("42K", &v), -EINVAL);
	assert_int_equal(cli_parse_uint("", &v), -EINVAL);
	assert_int_equal(cli_parse_uint("-1", &v), -EINVAL);
}

static void test_format(void **state)
{
	char b[CLI_FMT_LEN];

	(void)state;
	assert_string_equal(cli_fmt_size(b, 0), "0 B");
	assert_string_equal(cli_fmt_size(b, 1023), "1023 B");
	assert_string_equal(cli_fmt_size(b, 1024), "1 KiB");
	assert_string_equal(cli_fmt_size(b, 1536), "1.50 KiB");
	assert_string_equal(cli_fmt_size(b, 512ull << 20), "512 MiB");
	assert_string_equal(cli_fmt_size(b, 3ull << 29), "1.50 GiB");
	assert_string_equal(cli_fmt_size(b, 123456789), "118 MiB");
	assert_string_equal(cli_fmt_size(b, 10 * 1024 + 1), "10.0 KiB");
	assert_string_equal(cli_fmt_size(b, UINT64_MAX), "16.0 EiB");
	assert_string_equal(cli_fmt_rate(b, 1.2 * (1 << 30)), "1.20 GiB/s");
	assert_string_equal(cli_fmt_rate(b, 0), "0.00 B/s");
	assert_string_equal(cli_fmt_rate(b, NAN), "0.00 B/s");
	assert_string_equal(cli_fmt_rate(b, 1023.9), "1.00 KiB/s");
	assert_string_equal(cli_fmt_duration(b, 850), "850 ns");
	assert_string_equal(cli_fmt_duration(b, 12345), "12.3 us");
	assert_string_equal(cli_fmt_duration(b, 1234567), "1.23 ms");
	assert_string_equal(cli_fmt_duration(b, 2500000000ull), "2.50 s");
	assert_string_equal(cli_fmt_duration(b, 65000000000ull), "1m05s");
	assert_string_equal(cli_fmt_duration(b, 7380000000000ull), "2h03m");
}

/* What @fn writes with a JSON writer, as a string (caller frees). */
static char *json_of(void (*fn)(struct cli_json *j))
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	struct cli_json j;

	assert_non_null(f);
	cli_json_init(&j, f);
	fn(&j);
	assert_int_equal(cli_json_end(&j), 0);
	fclose(f);
	return buf;
}

static void nested(struct cli_json *j)
{
	cli_json_object_begin(j);
	cli_json_kuint(j, "a", 1);
	cli_json_key(j, "b");
	cli_json_array_begin(j);
	cli_json_uint(j, 1);
	cli_json_int(j, -2);
	cli_json_object_begin(j);
	cli_json_kstr(j, "c", "x\"y");
	cli_json_object_end(j);
	cli_json_array_begin(j);
	cli_json_array_end(j);
	cli_json_object_begin(j);
	cli_json_object_end(j);
	cli_json_array_end(j);
	cli_json_kstr(j, "d", NULL);
	cli_json_kbool(j, "e", true);
	cli_json_kdouble(j, "f", 1.5);
	cli_json_kdouble(j, "g", NAN);
	cli_json_kdouble(j, "h", 1.0 / 3);
	cli_json_kint(j, "i", INT64_MIN);
	cli_json_key(j, "k");
	cli_json_null(j);
	cli_json_object_end(j);
}

static void escapes(struct cli_json *j)
{
	cli_json_array_begin(j);
	cli_json_str(j, "\x01\n\t\r\b\f\\\"/\x7f"
			"\xc3\xa9"	   /* é */
			"\xe2\x82\xac"	   /* € */
			"\xf0\x9f\x98\x80" /* an emoji */
			"\xff");
	cli_json_str(j, "\xed\xa0\x80"); /* a surrogate */
	cli_json_str(j, "\xc0\xaf");	 /* overlong '/' */
	cli_json_str(j, "a\xe2\x82");	 /* cut short */
	cli_json_str(j, "");
	cli_json_array_end(j);
}

static void test_json(void **state)
{
	char *s;

	(void)state;
	s = json_of(nested);
	assert_string_equal(s, "{\"a\":1,\"b\":[1,-2,{\"c\":\"x\\\"y\"},[],{}],"
			       "\"d\":null,\"e\":true,\"f\":1.5,\"g\":null,"
			       "\"h\":0.333333333333333,"
			       "\"i\":-9223372036854775808,\"k\":null}\n");
	free(s);
	s = json_of(escapes);
	assert_string_equal(s, "[\"\\u0001\\n\\t\\r\\b\\f\\\\\\\"/\\u007f"
			       "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"
			       "\\ufffd\",\"\\ufffd\\ufffd\\ufffd\","
			       "\"\\ufffd\\ufffd\","
			       "\"a\\ufffd\\ufffd\",\"\"]\n");
	free(s);
}

/* Run @fn with stderr going to a file; returns what it wrote. */
static char *stderr_of(int (*fn)(void *), void *arg, int *ret)
{
	char path[] = "/tmp/bgsnap-test-XXXXXX";
	const int fd = mkstemp(path);
	const int saved = dup(STDERR_FILENO);
	char *buf = calloc(1, 4096);

	assert_true(fd >= 0 && saved >= 0 && buf);
	unlink(path);
	fflush(stderr);
	dup2(fd, STDERR_FILENO);
	*ret = fn(arg);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	assert_true(pread(fd, buf, 4095, 0) >= 0);
	close(fd);
	return buf;
}

static const struct option test_longopts[] = {
	{ "json", no_argument, NULL, 'j' },
	{ "region", required_argument, NULL, 'r' },
	{ "output", required_argument, NULL, 'o' },
	{ "buffer", required_argument, NULL, 'b' },
	CLI_OPT_HELP_ENTRY,
	{ 0 },
};

struct run {
	int argc;
	const char *args[8];
	char copy[8][40]; /* getopt permutes argv: a writable copy */
	char *argv[8];
	int opts[8]; /* what cli_getopt returned, in order */
	int nopts;
	char arg_b[40]; /* the --buffer argument seen */
	char name_b[40];
};

static int run_getopt(void *arg)
{
	struct run *r = arg;
	struct cli_getopt g = { .cmd = "export",
				.usage = "",
				.shortopts = "jr:o:b:",
				.longopts = test_longopts };
	int c;

	for (int i = 0; i < r->argc; i++) {
		snprintf(r->copy[i], sizeof(r->copy[i]), "%s", r->args[i]);
		r->argv[i] = r->copy[i];
	}
	r->nopts = 0;
	do {
		c = cli_getopt(&g, r->argc, r->argv);
		r->opts[r->nopts++] = c;
		if (c == 'b') {
			snprintf(r->arg_b, sizeof(r->arg_b), "%s", optarg);
			snprintf(r->name_b, sizeof(r->name_b), "%s", g.optname);
		}
	} while (c >= 0 && r->nopts < 7);
	return c == CLI_OPT_END
		       ? cli_operands(&g, r->argc, r->argv, 1, 1, "FILE")
		       : c;
}

#define RUN(...)                                                               \
	{                                                                      \
		.argc = sizeof((const char *[]){ __VA_ARGS__ }) /              \
			sizeof(char *),                                        \
		.args = {                                                      \
			__VA_ARGS__                                            \
		}                                                              \
	}

static void test_getopt(void **state)
{
	struct run mixed = RUN("export", "FILE", "--region", "ram", "-o", "out",
			       "--buffer=64K", "--json");
	struct run bad_long = RUN("export", "--jsn", "FILE");
	struct run bad_short = RUN("export", "-x", "FILE");
	struct run missing = RUN("export", "FILE", "--region");
	struct run missing_short = RUN("export", "FILE", "-r");
	struct run noarg = RUN("export", "--json=1", "FILE");
	struct run extra = RUN("export", "FILE", "MORE");
	struct run none = RUN("export", "--json");
	struct run shortb = RUN("export", "-b", "1M", "F");
	char *err;
	int ret;

	(void)state;
	err = stderr_of(run_getopt, &mixed, &ret);
	assert_int_equal(ret, 1);
	assert_string_equal(err, "");
	assert_int_equal(mixed.nopts, 5);
	assert_int_equal(mixed.opts[0], 'r');
	assert_int_equal(mixed.opts[1], 'o');
	assert_int_equal(mixed.opts[2], 'b');
	assert_int_equal(mixed.opts[3], 'j');
	assert_string_equal(mixed.arg_b, "64K");
	assert_string_equal(mixed.name_b, "--buffer");
	assert_string_equal(mixed.argv[optind], "FILE");
	free(err);

	err = stderr_of(run_getopt, &shortb, &ret);
	assert_int_equal(ret, 1);
	assert_string_equal(shortb.name_b, "-b");
	free(err);

	err = stderr_of(run_getopt, &bad_long, &ret);
	assert_int_equal(ret, CLI_OPT_BAD);
	assert_string_equal(err, "bgsnap: error: export: unknown option "
				 "'--jsn' (see 'bgsnap export --help')\n");
	free(err);
	err = stderr_of(run_getopt, &bad_short, &ret);
	assert_int_equal(ret, CLI_OPT_BAD);
	assert_string_equal(err, "bgsnap: error: export: unknown option '-x' "
				 "(see 'bgsnap export --help')\n");
	free(err);
	err = stderr_of(run_getopt, &missing, &ret);
	assert_int_equal(ret, CLI_OPT_BAD);
	assert_string_equal(err, "bgsnap: error: export: option '--region' "
				 "needs an argument (see 'bgsnap export "
				 "--help')\n");
	free(err);
	err = stderr_of(run_getopt, &missing_short, &ret);
	assert_int_equal(ret, CLI_OPT_BAD);
	assert_string_equal(err, "bgsnap: error: export: option '-r' needs an "
				 "argument (see 'bgsnap export --help')\n");
	free(err);
	err = stderr_of(run_getopt, &noarg, &ret);
	assert_int_equal(ret, CLI_OPT_BAD);
	assert_string_equal(err, "bgsnap: error: export: option '--json' "
				 "takes no argument (see 'bgsnap export "
				 "--help')\n");
	free(err);
	err = stderr_of(run_getopt, &extra, &ret);
	assert_int_equal(ret, -1);
	assert_string_equal(err, "bgsnap: error: export: unexpected argument "
				 "'MORE' (see 'bgsnap export --help')\n");
	free(err);
	err = stderr_of(run_getopt, &none, &ret);
	assert_int_equal(ret, -1);
	assert_string_equal(err, "bgsnap: error: export: missing FILE (see "
				 "'bgsnap export --help')\n");
	free(err);
}

static int bad_size(void *arg)
{
	struct cli_getopt g = { .cmd = "save" };
	uint64_t v;

	snprintf(g.optname, sizeof(g.optname), "--buffer");
	return cli_arg_size(&g, arg, &v);
}

static int big_uint(void *arg)
{
	struct cli_getopt g = { .cmd = "demo" };
	uint64_t v;

	snprintf(g.optname, sizeof(g.optname), "--writers");
	return cli_arg_uint(&g, arg, 1, 64, &v);
}

static void test_arg_messages(void **state)
{
	char *err;
	int ret;

	(void)state;
	err = stderr_of(bad_size, (char[]){ "12Q" }, &ret);
	assert_false(ret);
	assert_string_equal(err, "bgsnap: error: save: --buffer: '12Q' is not "
				 "a size (use e.g. 64K, 512M, 4G or bytes) "
				 "(see 'bgsnap save --help')\n");
	free(err);
	err = stderr_of(bad_size, (char[]){ "99999999999999999999" }, &ret);
	assert_false(ret);
	assert_non_null(strstr(err, "is too large"));
	free(err);
	err = stderr_of(bad_size, (char[]){ "4G" }, &ret);
	assert_true(ret);
	assert_string_equal(err, "");
	free(err);
	err = stderr_of(big_uint, (char[]){ "65" }, &ret);
	assert_false(ret);
	assert_string_equal(err, "bgsnap: error: demo: --writers: 65 is out "
				 "of range (1..64) (see 'bgsnap demo "
				 "--help')\n");
	free(err);
}

static void test_progress_text(void **state)
{
	char line[256];

	(void)state;
	cli_progress_format(line, sizeof(line), 80, "verify", 256ull << 20,
			    512ull << 20, 1000000000ull);
	assert_non_null(strstr(line, "verify ["));
	assert_non_null(strstr(line, "]  50%   256 MiB / 512 MiB   256 MiB/s  "
				     "ETA 1s"));
	assert_true(strlen(line) < 80);
	/* The bar keeps its length while the figures change. */
	{
		char other[256];

		cli_progress_format(other, sizeof(other), 80, "verify",
				    66ull << 20, 512ull << 20, 7000000000ull);
		assert_int_equal(strchr(other, ']') - other,
				 strchr(line, ']') - line);
	}
	cli_progress_format(line, sizeof(line), 30, "verify", 1, 2,
			    1000000000ull);
	assert_null(strchr(line, '[')); /* too narrow for a bar */
	cli_progress_format(line, sizeof(line), 80, "save", 1 << 20, 0,
			    1000000000ull);
	assert_string_equal(line, "save  1 MiB  1.00 MiB/s");
	cli_progress_format(line, sizeof(line), 200, "x", 10, 10, 0);
	assert_non_null(strstr(line, "100%"));
	assert_non_null(strstr(line, "ETA --"));
}

static void test_file_exit(void **state)
{
	(void)state;
	assert_int_equal(cli_file_exit(BGSNAP_EBADMAGIC), EXIT_BADFILE);
	assert_int_equal(cli_file_exit(BGSNAP_ECORRUPT), EXIT_BADFILE);
	assert_int_equal(cli_file_exit(BGSNAP_ECHECKSUM), EXIT_BADFILE);
	assert_int_equal(cli_file_exit(-ENOENT), EXIT_BADFILE);
	assert_int_equal(cli_file_exit(-EISDIR), EXIT_BADFILE);
	assert_int_equal(cli_file_exit(-ENOMEM), EXIT_FAILED);
	assert_int_equal(cli_file_exit(-EIO), EXIT_FAILED);
	assert_int_equal(cli_file_exit(BGSNAP_EPARENT), EXIT_FAILED);
}

/* ---- output files ------------------------------------------------------- */

static void put_file(int dirfd, const char *name, const char *text)
{
	const int fd = openat(dirfd, name,
			      O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static void expect_text(int dirfd, const char *name, const char *text)
{
	char buf[64] = { 0 };
	const int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_true(read(fd, buf, sizeof(buf) - 1) >= 0);
	close(fd);
	assert_string_equal(buf, text);
}

static mode_t kind_of(int dirfd, const char *name)
{
	struct stat st;

	assert_int_equal(fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW), 0);
	return st.st_mode & S_IFMT;
}

/*
 * cli_output_publish() over what appeared at the name after the check
 * (issue 13, item 10): without --force nothing is replaced; with it only
 * a regular file, never a FIFO, a directory or a symbolic link.
 */
static void test_output_publish(void **state)
{
	static const char *const others[] = { "fifo", "dir", "link" };
	char dir[] = "/tmp/bgsnap-cli-util.XXXXXX", tmp[NAME_MAX + 1];
	int dirfd;

	(void)state;
	assert_non_null(mkdtemp(dir));
	dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(dirfd >= 0);
	assert_int_equal(mkfifoat(dirfd, "fifo", 0600), 0);
	assert_int_equal(mkdirat(dirfd, "dir", 0700), 0);
	assert_int_equal(symlinkat("file", dirfd, "link"), 0);
	put_file(dirfd, "file", "old");
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(
			cli_output_check(dirfd, others[i], others[i], true),
			-1);
	assert_int_equal(cli_output_check(dirfd, "file", "file", false), -1);
	assert_int_equal(cli_output_check(dirfd, "file", "file", true), 0);
	assert_int_equal(cli_output_check(dirfd, "none", "none", false), 0);

	assert_int_equal(cli_output_temp(dirfd, "file", "t", "file", tmp), 0);
	assert_true(!strncmp(tmp, ".file.t.", 8));
	put_file(dirfd, tmp, "new");
	for (size_t i = 0; i < 3; i++)
		for (int force = 0; force < 2; force++)
			assert_int_equal(cli_output_publish(dirfd, tmp,
							    others[i],
							    others[i], force),
					 -EEXIST);
	assert_int_equal(kind_of(dirfd, "fifo"), S_IFIFO);
	assert_int_equal(kind_of(dirfd, "dir"), S_IFDIR);
	assert_int_equal(kind_of(dirfd, "link"), S_IFLNK);
	assert_int_equal(cli_output_publish(dirfd, tmp, "file", "file", false),
			 -EEXIST);
	expect_text(dirfd, "file", "old");
	assert_int_equal(cli_output_publish(dirfd, tmp, "file", "file", true),
			 0);
	expect_text(dirfd, "file", "new");
	put_file(dirfd, tmp, "newer");
	assert_int_equal(cli_output_publish(dirfd, tmp, "none", "none", false),
			 0);
	expect_text(dirfd, "none", "newer");
	assert_int_equal(faccessat(dirfd, tmp, F_OK, 0), -1);

	for (size_t i = 0; i < 3; i++)
		unlinkat(dirfd, others[i],
			 !strcmp(others[i], "dir") ? AT_REMOVEDIR : 0);
	unlinkat(dirfd, "file", 0);
	unlinkat(dirfd, "none", 0);
	close(dirfd);
	assert_int_equal(rmdir(dir), 0);
}

/* ---- target processes --------------------------------------------------- */

static void *idle_thread(void *arg)
{
	int *tid = arg;

	__atomic_store_n(tid, (int)gettid(), __ATOMIC_RELEASE);
	pause();
	return NULL;
}

/* A thread id is not a process (issue 13, item 15): "a thread of process
 * N", not pidfd_open's "No such file or directory". */
static void test_target_check(void **state)
{
	pthread_t t;
	int tid = 0;

	(void)state;
	assert_int_equal(cli_target_check("save", getpid()), 0);
	assert_int_equal(pthread_create(&t, NULL, idle_thread, &tid), 0);
	while (!__atomic_load_n(&tid, __ATOMIC_ACQUIRE))
		usleep(1000);
	assert_int_equal(cli_target_check("save", tid), -1);
	pthread_cancel(t);
	pthread_join(t, NULL);
	/* Gone: /proc cannot say, so attaching will. */
	assert_int_equal(cli_target_check("save", INT32_MAX), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_parse_duration),
		cmocka_unit_test(test_parse_uint),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_getopt),
		cmocka_unit_test(test_arg_messages),
		cmocka_unit_test(test_progress_text),
		cmocka_unit_test(test_file_exit),
		cmocka_unit_test(test_output_publish),
		cmocka_unit_test(test_target_check),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
