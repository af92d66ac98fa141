/* SPDX-License-Identifier: MIT */
#include "tu_thief.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL
#endif

enum tu_fd_kind tu_fd_kind(int fd)
{
	char path[64], link[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0)
		return TU_FD_PLAIN;
	link[n] = '\0';
	if (!strcmp(link, "anon_inode:[userfaultfd]"))
		return TU_FD_UFFD;
	return strcmp(link, "/dev/userfaultfd") ? TU_FD_PLAIN : TU_FD_DEV;
}

int tu_fd_receive(int sock)
{
	char byte, ctl[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { &byte, 1 };
	struct msghdr mh = { .msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = ctl,
			     .msg_controllen = sizeof(ctl) };
	struct cmsghdr *c;
	int fd, kind;

	if (recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) < 0)
		return -1;
	c = CMSG_FIRSTHDR(&mh);
	if (!c || c->cmsg_type != SCM_RIGHTS)
		return -1;
	memcpy(&fd, CMSG_DATA(c), sizeof(fd));
	kind = (int)tu_fd_kind(fd);
	close(fd);
	return kind;
}

static void from_thread(pid_t tid, int nfds, unsigned long *taken)
{
	const int pfd = (int)syscall(SYS_pidfd_open, tid, PIDFD_THREAD);

	for (int fd = 0; pfd >= 0 && fd < nfds; fd++) {
		const int got = (int)syscall(SYS_pidfd_getfd, pfd, fd, 0);
		int kind;

		if (got < 0)
			continue;
		kind = (int)tu_fd_kind(got);
		if (kind == TU_FD_PLAIN && (kind = tu_fd_receive(got)) < 0)
			kind = TU_FD_PLAIN;
		taken[kind]++;
		close(got);
	}
	if (pfd >= 0)
		close(pfd);
}

int tu_thief_pass(pid_t pid, int nfds, unsigned long taken[TU_FD_KINDS])
{
	char path[64];
	struct dirent *de;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	if (!(d = opendir(path)))
		return -1;
	while ((de = readdir(d)))
		if (atoi(de->d_name) > 0)
			from_thread((pid_t)atoi(de->d_name), nfds, taken);
	closedir(d);
	return 0;
}
