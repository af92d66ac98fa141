/* SPDX-License-Identifier: MIT */
/*
 * What another process of a target's user does to take the descriptors
 * root hands the target during a save: pidfd_getfd on every thread's
 * descriptors, and recvmsg on any socket so taken (it may carry one).
 * Shared by the thief of cli_nonroot (tests/cli/thief.c) and
 * test_target_inject; it needs nothing but libc.
 */
#ifndef TU_THIEF_H
#define TU_THIEF_H

#include <sys/types.h>

/* What a descriptor is. */
enum tu_fd_kind { TU_FD_PLAIN, TU_FD_UFFD, TU_FD_DEV, TU_FD_KINDS };

/* The kind of @fd, one of this process's. */
enum tu_fd_kind tu_fd_kind(int fd);
/* A descriptor sent on @sock (SCM_RIGHTS, not waited for): its kind, and
 * it is closed; -1 when none came. */
int tu_fd_receive(int sock);
/* One pass over the first @nfds descriptors of every thread of @pid, each
 * taken counted in @taken by its kind (a socket by what it carried, if
 * anything). -1 once the process is gone, else 0. */
int tu_thief_pass(pid_t pid, int nfds, unsigned long taken[TU_FD_KINDS]);

#endif
