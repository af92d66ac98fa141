/* SPDX-License-Identifier: MIT */
/*
 * A forked child to act as a target process ("kid") for the target tests.
 *
 * The kid runs worker threads whose every syscall and register is checked:
 *   busy     FP loop in round-toward-zero mode; checks a double in an XMM
 *            register against an integer counter and the rounding mode, so
 *            a lost or reset FPU state is caught;
 *   reader   blocked in read() on a pipe; each 8-byte message must arrive
 *            whole and in order, any error (EINTR) is a failure;
 *   sleeper  nanosleep(10 ms) in a loop; EINTR or a short sleep is a failure;
 *   futex    FUTEX_WAIT with a 10 ms timeout in a loop; EINTR or a timeout
 *            before 10 ms is a failure (every sleeper and futex wait is
 *            restarted through a restart_block when stopped).
 * Its main thread reads one-byte commands from a control pipe ('q' quits).
 * Results come back through a shared page and the exit status (0 = all
 * checks held).
 */
#ifndef BGS_TU_TARGET_H
#define BGS_TU_TARGET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define TU_KID_MAX 32

enum tu_role { TU_BUSY, TU_READER, TU_SLEEPER, TU_FUTEX };

struct tu_kid_shm {
	atomic_int ready; /* setup done, workers created */
	atomic_int started;
	atomic_int stop;
	atomic_int failed;
	char why[200];
	int nthreads;
	pid_t tid[TU_KID_MAX];
	enum tu_role role[TU_KID_MAX];
	atomic_ulong count[TU_KID_MAX];
	uint64_t addr[16];   /* addresses the kid publishes */
	uint64_t arg[8];     /* free for a test's own use */
	uint32_t futex_word; /* futex waiters wait on it; nobody wakes them */
};

struct tu_kid;
/* A test's own command handler, run by the kid's main thread; returns
 * non-zero to fail the kid. */
typedef int (*tu_kid_cmd)(struct tu_kid *k, char cmd);
/* Run in the kid before the workers start (set up memory, drop
 * privileges); non-zero fails the kid at once. */
typedef int (*tu_kid_setup)(struct tu_kid *k);

struct tu_kid {
	pid_t pid;
	struct tu_kid_shm *shm;
	int ctl;	      /* parent: write end of the command pipe */
	int feed[TU_KID_MAX]; /* parent: write end of each reader's pipe */
	uint64_t next_msg;    /* parent: the next message for readers */
	int in_ctl;	      /* kid: read end of the command pipe */
	int in_feed[TU_KID_MAX];
	tu_kid_setup setup;
	tu_kid_cmd cmd;
	void *arg;
};

/* Start a kid with @nbusy, @nread, @nsleep workers, and as many futex
 * waiters as sleepers. Waits until all run. */
void tu_kid_start(struct tu_kid *k, int nbusy, int nread, int nsleep);

/* The tid of the @n-th worker with @role. */
pid_t tu_kid_tid(const struct tu_kid *k, enum tu_role role, int n);

/* Wait until thread @tid of the kid sits in syscall @nr (or any syscall if
 * @nr < 0). */
bool tu_wait_syscall(pid_t pid, pid_t tid, long nr, int timeout_ms);

/* Send the next message (1, 2, ...) to every reader. */
void tu_kid_feed(struct tu_kid *k);

void tu_kid_send(struct tu_kid *k, char cmd);

/*
 * Feed every reader a last message, quit, and wait up to @timeout_ms.
 * Returns the kid's exit code (printing why it failed), 128 + N after a
 * death by signal N (as a shell says it), or -1 on a timeout (then the kid
 * is killed) or when it cannot be waited for.
 */
int tu_kid_finish(struct tu_kid *k, int timeout_ms);

/* Wait for an already-quitting kid; as tu_kid_finish without the quit. */
int tu_kid_reap(struct tu_kid *k, int timeout_ms);

/* Kill and reap. */
void tu_kid_kill(struct tu_kid *k);

/* Number of the kid's descriptors whose link contains @what (NULL: all). */
int tu_count_fds(pid_t pid, const char *what);

/* Drop to uid/gid @id (65534 = nobody) in a child after setup. */
int tu_drop_privileges(unsigned id);

/* The one-letter state of a thread (/proc/PID/task/TID/stat). */
char tu_thread_state(pid_t pid, pid_t tid);

#endif
