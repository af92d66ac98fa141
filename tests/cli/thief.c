/* SPDX-License-Identifier: MIT */
/*
 * thief PID: what another process of a target's user would do to take the
 * descriptors root hands the target during a save. Loops over every thread
 * of PID, pidfd_getfd on each of its first 64 descriptors (reading any
 * socket it gets, which may carry one), until SIGTERM; then prints
 * "plain N uffd N dev N": how many ordinary descriptors, uffds and
 * /dev/userfaultfd descriptors it took. Run it as the target's user.
 */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL
#endif
#define FDS 64

static volatile sig_atomic_t stop;
static unsigned long taken[3];

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

/* 1 a uffd, 2 /dev/userfaultfd, 0 anything else. */
static int kind(int fd)
{
	char path[64], link[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0)
		return 0;
	link[n] = '\0';
	if (!strcmp(link, "anon_inode:[userfaultfd]"))
		return 1;
	return strcmp(link, "/dev/userfaultfd") ? 0 : 2;
}

static int received(int sock)
{
	char byte, ctl[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { &byte, 1 };
	struct msghdr mh = { .msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = ctl,
			     .msg_controllen = sizeof(ctl) };
	struct cmsghdr *c;
	int fd, k;

	if (recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) < 0)
		return 0;
	c = CMSG_FIRSTHDR(&mh);
	if (!c || c->cmsg_type != SCM_RIGHTS)
		return 0;
	memcpy(&fd, CMSG_DATA(c), sizeof(fd));
	k = kind(fd);
	close(fd);
	return k;
}

static void from_thread(pid_t tid)
{
	const int pfd = (int)syscall(SYS_pidfd_open, tid, PIDFD_THREAD);
	int fd, got, k;

	if (pfd < 0)
		return;
	for (fd = 0; fd < FDS; fd++) {
		got = (int)syscall(SYS_pidfd_getfd, pfd, fd, 0);
		if (got < 0)
			continue;
		k = kind(got);
		taken[k ? k : received(got)]++;
		close(got);
	}
	close(pfd);
}

int main(int argc, char **argv)
{
	char path[64];
	struct dirent *de;
	DIR *d;

	if (argc != 2) {
		fprintf(stderr, "usage: thief PID\n");
		return 2;
	}
	signal(SIGTERM, on_term);
	snprintf(path, sizeof(path), "/proc/%s/task", argv[1]);
	while (!stop) {
		if (!(d = opendir(path)))
			break;
		while ((de = readdir(d)))
			if (atoi(de->d_name) > 0)
				from_thread((pid_t)atoi(de->d_name));
		closedir(d);
	}
	printf("plain %lu uffd %lu dev %lu\n", taken[0], taken[1], taken[2]);
	return 0;
}
