/* SPDX-License-Identifier: MIT */
/*
 * Target memory: read through /proc/PID/mem, written through
 * process_vm_writev.
 *
 * Both are GUP accesses in the target's mm: a read never faults on a
 * write-protected page (kernel-uffd.md §10), so pages still protected can
 * be read. A write to a protected page blocks like any other kernel write
 * — restore writes only into unprotected memory.
 *
 * Reads never use process_vm_readv: it pins each page, and pinning an
 * anonymous page the target shares copy-on-write with a child (after any
 * fork) gives the target a private copy of it, so reading a process that
 * forked would grow its memory by what it read. /proc/PID/mem reads
 * without pinning, and with FOLL_FORCE: PROT_NONE memory (a mapping that
 * still holds data while its owner has it inaccessible) reads too.
 *
 * process_vm_writev stops at the first page it cannot access and returns
 * the bytes moved so far, so a write is resumed where it stopped; if it
 * then makes no progress at all, that span is retried through
 * /proc/PID/mem (FOLL_FORCE: PROT_NONE memory).
 */
#include "uffd_target.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define BATCH_IOVS  256		 /* of UIO_MAXIOV (1024): 4 KiB of stack */
#define BATCH_BYTES (1ULL << 30) /* well below MAX_RW_COUNT */

/* Where a transfer is: span index, offset in it, bytes moved so far. */
struct cursor {
	size_t i;
	uint64_t off;
	size_t done;
};

static void advance(const struct bgs_target_span *s, size_t n, struct cursor *c,
		    uint64_t bytes)
{
	c->done += bytes;
	while (bytes && c->i < n) {
		const uint64_t left = s[c->i].len - c->off;
		const uint64_t step = bytes < left ? bytes : left;

		c->off += step;
		bytes -= step;
		if (c->off == s[c->i].len) {
			c->i++;
			c->off = 0;
		}
	}
	while (c->i < n && s[c->i].len == 0)
		c->i++;
}

/* Remote iovecs from the cursor on; returns their count, *@bytes the sum. */
static int fill_iovs(const struct bgs_target_span *s, size_t n,
		     const struct cursor *c, struct iovec *iov, uint64_t *bytes)
{
	uint64_t off = c->off;
	size_t i;
	int k = 0;

	*bytes = 0;
	for (i = c->i; i < n && k < BATCH_IOVS && *bytes < BATCH_BYTES; i++) {
		uint64_t len = s[i].len - off;

		if (len > BATCH_BYTES - *bytes)
			len = BATCH_BYTES - *bytes;
		if (len) {
			iov[k].iov_base = (void *)(uintptr_t)(s[i].addr + off);
			iov[k++].iov_len = len;
			*bytes += len;
		}
		off = 0;
	}
	return k;
}

/* /proc/PID/mem, opened to read or to write as asked (a read needs no
 * write permission); its descriptor, or -errno (-ESRCH: gone). */
static int open_mem(struct bgs_target *t, bool write)
{
	int *fd = &t->memfd[write];
	char path[64];

	if (*fd >= 0)
		return *fd;
	snprintf(path, sizeof(path), "/proc/%d/mem", (int)t->pid);
	*fd = open(path, (write ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	if (*fd < 0)
		return errno == ENOENT ? -ESRCH : -errno;
	return *fd;
}

/* The rest of the current span through /proc/PID/mem; bytes moved or
 * -errno. */
static int64_t via_proc_mem(struct bgs_target *t, uint64_t addr, char *buf,
			    uint64_t len, bool write)
{
	const uint64_t chunk = len < BATCH_BYTES ? len : BATCH_BYTES;
	const int fd = open_mem(t, write);
	ssize_t r;

	if (fd < 0)
		return fd;
	if (write)
		r = pwrite(fd, buf, chunk, (off_t)addr);
	else
		r = pread(fd, buf, chunk, (off_t)addr);
	if (r < 0)
		return errno == EIO ? -EFAULT : -errno;
	return r ? r : -ESRCH; /* nothing at all: its mm is gone */
}

static int64_t one_write(struct bgs_target *t, struct iovec *local,
			 struct iovec *remote, int k)
{
	ssize_t r;

	do
		r = process_vm_writev(t->pid, local, 1, remote,
				      (unsigned long)k, 0);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : r;
}

static int fail(struct bgs_target *t, int err, uint64_t addr, bool write)
{
	if (err == -ESRCH)
		return bgs_target_fail(t, err, "process %d is gone",
				       (int)t->pid);
	return bgs_target_fail(t, err, "%s of process %d at 0x%llx: %s",
			       write ? "write" : "read", (int)t->pid,
			       (unsigned long long)addr, strerror(-err));
}

static int transfer(struct bgs_target *t, const struct bgs_target_span *s,
		    size_t n, char *buf, size_t *done, bool write)
{
	struct iovec remote[BATCH_IOVS];
	struct cursor c = { 0, 0, 0 };
	int64_t r = 0;

	advance(s, n, &c, 0);
	while (c.i < n) {
		uint64_t bytes;
		const int k = fill_iovs(s, n, &c, remote, &bytes);
		struct iovec local = { buf + c.done, bytes };

		/* Reads go to /proc/PID/mem at once; writes only where
		 * process_vm_writev could move nothing. */
		r = write ? one_write(t, &local, remote, k) : 0;
		if (r == 0 || r == -EFAULT)
			r = via_proc_mem(t, s[c.i].addr + c.off, buf + c.done,
					 s[c.i].len - c.off, write);
		if (r < 0)
			break;
		advance(s, n, &c, (uint64_t)r);
	}
	if (done)
		*done = c.done;
	return r < 0 ? fail(t, (int)r, s[c.i].addr + c.off, write) : 0;
}

int bgs_target_readv(struct bgs_target *t, const struct bgs_target_span *s,
		     size_t n, void *buf, size_t *done)
{
	return transfer(t, s, n, buf, done, false);
}

int bgs_target_writev(struct bgs_target *t, const struct bgs_target_span *s,
		      size_t n, const void *buf, size_t *done)
{
	/* The buffer is only read from on this path. */
	return transfer(t, s, n, (char *)(uintptr_t)buf, done, true);
}

int bgs_target_read(struct bgs_target *t, uint64_t addr, void *buf, size_t len)
{
	const struct bgs_target_span s = { addr, len };

	return bgs_target_readv(t, &s, 1, buf, NULL);
}

int bgs_target_write(struct bgs_target *t, uint64_t addr, const void *buf,
		     size_t len)
{
	const struct bgs_target_span s = { addr, len };

	return bgs_target_writev(t, &s, 1, buf, NULL);
}

int bgs_target_copy_map(struct bgs_target *t, const struct bgs_target_map *m,
			void *buf)
{
	const struct bgs_target_span s = { m->start, m->end - m->start };

	return bgs_target_readv(t, &s, 1, buf, NULL);
}
