/* SPDX-License-Identifier: MIT */
/*
 * Helpers for the end-to-end tests of 'bgsnap save/restore --pid': the
 * built binary is run as a user would, against 'bgsnap guest' processes
 * driven through their line protocol (cli/guest/cmd_guest.c).
 *
 * Every test program takes the bgsnap binary as argv[1] and calls
 * pt_init() first, which fails when not root and exits 77 only when the
 * kernel lacks a feature a save needs (userfaultfd write-protect, ...).
 */
#ifndef BGS_PID_UTIL_H
#define BGS_PID_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "guest_client.h"

#define PT_PAGE 4096u

/* The bgsnap binary under test. */
extern const char *pt_bgsnap;

/* Set pt_bgsnap from argv[1]; exit 1 when not root, 77 when the kernel
 * cannot save a process (printing why either way). */
void pt_init(int argc, char **argv);

/* A fresh empty directory for this program; removed at exit. */
const char *pt_dir(void);

/* ---- guests -------------------------------------------------------------- */

struct pt_guest {
	struct guest_client c; /* the process and its last reply */
	/* From 'info': */
	uint64_t addr, len, seed;
	char range[64];
};

/*
 * Start 'bgsnap guest --size SIZE --kind KIND --seed SEED' plus the extra
 * NULL-terminated arguments, as user @uid (0: as we are), and read its
 * 'info'. Fails the test on any error.
 */
void pt_guest_start(struct pt_guest *g, unsigned uid, const char *size,
		    const char *kind, ...);

/* Send a command; true when the reply says ok. Fails the test when no
 * reply comes within @timeout_ms (0: 20 s): a hung guest. */
bool pt_guest_call(struct pt_guest *g, int timeout_ms, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The same, failing the test unless ok. */
void pt_guest_must(struct pt_guest *g, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* 'quit' and reap (SIGKILL after 5 s). */
void pt_guest_stop(struct pt_guest *g);
/* SIGKILL and reap. */
void pt_guest_kill(struct pt_guest *g);

/* Fail unless the guest answers within @timeout_ms, every one of its
 * writers makes progress within @run_ms (or 5 s at most, looking again
 * every 50 ms) and its books balance. */
void pt_guest_healthy(struct pt_guest *g, unsigned run_ms, int timeout_ms);

/* The TracerPid of @pid (0: none), -1 if it cannot be read. */
int pt_tracer_of(pid_t pid);

/* Fail unless the guest holds no userfaultfd and no tracer. */
void pt_guest_untraced(const struct pt_guest *g);
/* Fail if the guest has a tracer or a mapping registered with a
 * userfaultfd; return how many userfaultfd descriptors it holds. */
int pt_guest_leftovers(const struct pt_guest *g);

/* The range ("start-end", hex) of the mapping that holds the guest's
 * memory, from /proc/PID/maps. */
void pt_guest_mapping(const struct pt_guest *g, char *range, size_t n);

/* Fail if any page of the guest's memory is still write-protected. */
void pt_guest_unprotected(const struct pt_guest *g);

/* The number after "key": in @json (the first); fails the test when
 * there is none. Strings: guest_str(). */
double pt_num(const char *json, const char *key);

/* ---- running the binary -------------------------------------------------- */

struct pt_run {
	int code;  /* exit status, or -signal when killed by one */
	char *out; /* stdout and stderr, NUL-terminated, malloc'd */
	char *err;
};

/*
 * Run pt_bgsnap with the NULL-terminated arguments; stdout and stderr are
 * captured (stdout goes to @out_fd instead when it is >= 0). Fails the
 * test if it runs longer than @timeout_ms.
 */
void pt_run(struct pt_run *r, int timeout_ms, int out_fd, const char *arg, ...);
void pt_run_free(struct pt_run *r);

/* Start pt_bgsnap without waiting; stdout and stderr go to /dev/null. */
pid_t pt_spawn(const char *arg, ...);

/* Fail unless @err is exactly one line "bgsnap: error: ...". */
void pt_one_error_line(const char *err);

/* ---- snapshots ----------------------------------------------------------- */

/* The name of the saved region at @addr of the snapshot @file. */
void pt_region_name(const char *file, uint64_t addr, char *name, size_t n);

/* 'bgsnap export' the guest's memory out of @file into a malloc'd
 * buffer of g->len bytes. */
uint8_t *pt_export_guest(const struct pt_guest *g, const char *file);

/*
 * The two checks of a saved guest image: its books balance (oracle 2),
 * and every byte the writers never touch (the bank header page, and each
 * account page past its 16-byte account) is as the guest formatted it.
 */
void pt_check_image(const struct pt_guest *g, const uint8_t *image);

/* Read a whole file into a malloc'd buffer; *@len its size. */
uint8_t *pt_read_file(const char *path, size_t *len);

#endif
