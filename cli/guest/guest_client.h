/* SPDX-License-Identifier: MIT */
/*
 * The one client of the built-in guest's line protocol (the PROTOCOL
 * block of cmd_guest.c): start a 'bgsnap guest' on two pipes, send it a
 * command, read its one-line JSON reply, pick figures out of the reply,
 * end it. demo, bench and the tests (tests/pid/) drive their guests
 * through it.
 *
 * It prints nothing and never exits: each caller words its own errors
 * (a command's one-line "bgsnap: error: ...", a test's failure).
 * A client is used by one thread at a time.
 */
#ifndef BGS_GUEST_CLIENT_H
#define BGS_GUEST_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The longest reply line: 'save' replies are the longest, some 2 KiB. */
#define GUEST_REPLY_MAX 16384

/* Zero-initialized when not started (pid 0). */
struct guest_client {
	pid_t pid;
	int to;			   /* its stdin */
	int from;		   /* its stdout */
	char buf[GUEST_REPLY_MAX]; /* read, not yet split into lines */
	size_t have;
	char reply[GUEST_REPLY_MAX]; /* the last reply line, no newline */
};

/* CLOCK_MONOTONIC in ns, for the bank and the client. The same as
 * cli_now_ns(): the guest's modules are linked into the tests without
 * cli_util.c. */
uint64_t guest_now_ns(void);

/*
 * Fork and exec @exe with @argv (NULL-terminated; argv[0] "bgsnap",
 * argv[1] "guest") on two fresh pipes. The child is in a process group
 * of its own (a terminal's ^C reaches only the caller, which ends it),
 * dies with the caller (PR_SET_PDEATHSIG) and, when @uid is not 0, runs
 * as that user (its gid too, no supplementary groups). Returns 0 or
 * -errno; on error nothing is left open.
 */
int guest_spawn(struct guest_client *g, const char *exe,
		const char *const *argv, unsigned uid);

/*
 * Send @cmd (no newline) and read its reply into g->reply within
 * @timeout_ms. Returns 0 (whatever the reply says), -EPIPE when the
 * guest is gone (or @cmd does not fit a line), -ETIMEDOUT, or another
 * -errno of read(). A signal does not cut the wait short.
 */
int guest_request(struct guest_client *g, uint64_t timeout_ms, const char *cmd);

/* True when g->reply says "ok":true. */
bool guest_reply_ok(const struct guest_client *g);

/*
 * guest_request() and a reply that says ok: 0, or -1 with @err (of
 * @errlen bytes) set to "guest command 'CMD': the guest is gone" (or
 * another reason) or "guest command 'CMD' failed: REASON" (the reply's
 * "error").
 */
int guest_ask(struct guest_client *g, uint64_t timeout_ms, const char *cmd,
	      char *err, size_t errlen);

/* 'quit', then SIGKILL if it is not gone within @wait_ms; reaped, the
 * pipes closed, pid 0. Nothing when not started. */
void guest_end(struct guest_client *g, unsigned wait_ms);
/* SIGKILL at once; reaped, the pipes closed, pid 0. */
void guest_kill(struct guest_client *g);

/* ---- reading a reply ---------------------------------------------------- */

/* The number after "key": in @json (the first such key), or NAN. */
double guest_num(const char *json, const char *key);
/* The same inside the object under key @obj (no deeper nesting). */
double guest_num_in(const char *json, const char *obj, const char *key);
/* The string after "key": (no escapes expected) into @out of @n bytes:
 * false when missing or too long. */
bool guest_str(const char *json, const char *key, char *out, size_t n);

#endif
