/* SPDX-License-Identifier: MIT */
/*
 * thief PID: what another process of a target's user would do to take the
 * descriptors root hands the target during a save. Loops over every thread
 * of PID, pidfd_getfd on each of its first 64 descriptors (reading any
 * socket it gets, which may carry one), until SIGTERM; then prints
 * "plain N uffd N dev N": how many ordinary descriptors, uffds and
 * /dev/userfaultfd descriptors it took. Run it as the target's user.
 */
#include "tu_thief.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define FDS 64

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

int main(int argc, char **argv)
{
	unsigned long taken[TU_FD_KINDS] = { 0 };

	if (argc != 2) {
		fprintf(stderr, "usage: thief PID\n");
		return 2;
	}
	signal(SIGTERM, on_term);
	while (!stop && tu_thief_pass((pid_t)atoi(argv[1]), FDS, taken) == 0)
		;
	printf("plain %lu uffd %lu dev %lu\n", taken[TU_FD_PLAIN],
	       taken[TU_FD_UFFD], taken[TU_FD_DEV]);
	return 0;
}
