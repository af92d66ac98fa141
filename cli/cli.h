/* SPDX-License-Identifier: MIT */
/*
 * The bgsnap command: shared helpers for the subcommands (cmd_*.c).
 *
 * Exit codes (documented in bgsnap(1)):
 *   0  success
 *   1  the operation failed (a save, restore, verify ... did not succeed)
 *   2  usage error (bad arguments)
 *   3  the snapshot file is damaged or not a snapshot
 *   4  the system lacks a capability bgsnap needs
 */
#ifndef BGS_CLI_H
#define BGS_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

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

/* "error: ..." on stderr, one line, prefixed with the program name. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Write @s as a JSON string literal (quotes and escapes included). */
void cli_json_string(FILE *f, const char *s);

/* True if argv[i] is -h or --help. */
bool cli_wants_help(int argc, char **argv);

#endif /* BGS_CLI_H */
