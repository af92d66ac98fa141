/* SPDX-License-Identifier: MIT */
#include "guest_client.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

uint64_t guest_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* ---- the process --------------------------------------------------------- */

static int drop_privileges(unsigned uid)
{
	if (setgroups(0, NULL) || setgid((gid_t)uid) || setuid((uid_t)uid))
		return -1;
	return 0;
}

/* In the child: never returns. */
static void exec_guest(int in, int out, const char *exe,
		       const char *const *argv, unsigned uid)
{
	setpgid(0, 0);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (dup2(in, STDIN_FILENO) < 0 || dup2(out, STDOUT_FILENO) < 0)
		_exit(126);
	if (uid && drop_privileges(uid))
		_exit(125);
	execv(exe, (char *const *)(uintptr_t)argv);
	_exit(127);
}

int guest_spawn(struct guest_client *g, const char *exe,
		const char *const *argv, unsigned uid)
{
	int in[2], out[2], err;

	memset(g, 0, sizeof(*g));
	if (pipe2(in, O_CLOEXEC))
		return -errno;
	if (pipe2(out, O_CLOEXEC)) {
		err = -errno;
		goto out_close_in;
	}
	g->pid = fork();
	if (g->pid == 0)
		exec_guest(in[0], out[1], exe, argv, uid);
	if (g->pid < 0) {
		err = -errno;
		g->pid = 0;
		goto out_close_out;
	}
	close(in[0]);
	close(out[1]);
	g->to = in[1];
	g->from = out[0];
	return 0;
out_close_out:
	close(out[0]);
	close(out[1]);
out_close_in:
	close(in[0]);
	close(in[1]);
	return err;
}

static bool reaped(pid_t pid, unsigned ms)
{
	int status;

	for (unsigned i = 0; i < ms / 10; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return true;
		nanosleep(&(struct timespec){ 0, 10000000 }, NULL);
	}
	return false;
}

static void forget(struct guest_client *g)
{
	close(g->to);
	close(g->from);
	g->pid = 0;
}

void guest_end(struct guest_client *g, unsigned wait_ms)
{
	if (g->pid <= 0)
		return;
	if (write(g->to, "quit\n", 5) != 5 || !reaped(g->pid, wait_ms)) {
		kill(g->pid, SIGKILL);
		waitpid(g->pid, NULL, 0);
	}
	forget(g);
}

void guest_kill(struct guest_client *g)
{
	if (g->pid <= 0)
		return;
	kill(g->pid, SIGKILL);
	waitpid(g->pid, NULL, 0);
	forget(g);
}

/* ---- the protocol -------------------------------------------------------- */

/* Move the first complete line of g->buf into g->reply: false if none. */
static bool take_line(struct guest_client *g)
{
	char *nl = memchr(g->buf, '\n', g->have);
	size_t len;

	if (!nl)
		return false;
	len = (size_t)(nl - g->buf);
	memcpy(g->reply, g->buf, len);
	g->reply[len] = '\0';
	g->have -= len + 1;
	memmove(g->buf, nl + 1, g->have);
	return true;
}

static int read_reply(struct guest_client *g, uint64_t timeout_ms)
{
	const uint64_t deadline = guest_now_ns() + timeout_ms * 1000000ULL;
	struct pollfd p = { .fd = g->from, .events = POLLIN };
	ssize_t n;

	while (!take_line(g)) {
		if (g->have == sizeof(g->buf) || guest_now_ns() > deadline)
			return -ETIMEDOUT;
		/* EINTR too: the caller looks at its signals after. */
		if (poll(&p, 1, 100) <= 0)
			continue;
		n = read(g->from, g->buf + g->have, sizeof(g->buf) - g->have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n ? -errno : -EPIPE;
		g->have += (size_t)n;
	}
	return 0;
}

int guest_request(struct guest_client *g, uint64_t timeout_ms, const char *cmd)
{
	char line[4096 + 256];
	const int len = snprintf(line, sizeof(line), "%s\n", cmd);

	if (len < 0 || (size_t)len >= sizeof(line) ||
	    write(g->to, line, (size_t)len) != len)
		return -EPIPE;
	return read_reply(g, timeout_ms);
}

bool guest_reply_ok(const struct guest_client *g)
{
	return strstr(g->reply, "\"ok\":true") != NULL;
}

int guest_ask(struct guest_client *g, uint64_t timeout_ms, const char *cmd,
	      char *err, size_t errlen)
{
	const int r = guest_request(g, timeout_ms, cmd);
	char why[512] = "no reason given";

	if (r) {
		snprintf(err, errlen, "guest command '%s': %s", cmd,
			 r == -EPIPE ? "the guest is gone" : strerror(-r));
		return -1;
	}
	if (guest_reply_ok(g))
		return 0;
	guest_str(g->reply, "error", why, sizeof(why));
	snprintf(err, errlen, "guest command '%s' failed: %s", cmd, why);
	return -1;
}

/* ---- reading a reply ----------------------------------------------------- */

double guest_num(const char *json, const char *key)
{
	char pat[80];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(json, pat);
	return p ? strtod(p + strlen(pat), NULL) : NAN;
}

double guest_num_in(const char *json, const char *obj, const char *key)
{
	char pat[80], sub[GUEST_REPLY_MAX];
	const char *p, *end;

	snprintf(pat, sizeof(pat), "\"%s\":{", obj);
	p = strstr(json, pat);
	if (!p)
		return NAN;
	p += strlen(pat) - 1;
	end = strchr(p, '}');
	if (!end || (size_t)(end - p) >= sizeof(sub))
		return NAN;
	memcpy(sub, p, (size_t)(end - p));
	sub[end - p] = '\0';
	return guest_num(sub, key);
}

bool guest_str(const char *json, const char *key, char *out, size_t n)
{
	char pat[80];
	const char *p, *end;

	snprintf(pat, sizeof(pat), "\"%s\":\"", key);
	p = strstr(json, pat);
	if (!p)
		return false;
	p += strlen(pat);
	end = strchr(p, '"');
	if (!end || (size_t)(end - p) >= n)
		return false;
	memcpy(out, p, (size_t)(end - p));
	out[end - p] = '\0';
	return true;
}
