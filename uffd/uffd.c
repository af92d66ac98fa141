/* SPDX-License-Identifier: MIT */
/*
 * userfaultfd creation, feature negotiation and the range ioctls.
 * The error table is in uffd.h; this file is where EAGAIN is retried.
 */
#include "uffd.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int bgs_uffd_create(int flags)
{
	int fd, dev, err;

	if (flags & UFFD_USER_MODE_ONLY)
		return -EINVAL;
	flags |= O_CLOEXEC | O_NONBLOCK;

	fd = (int)syscall(SYS_userfaultfd, flags);
	if (fd >= 0)
		return fd;
	err = errno;
	if (err != EPERM && err != ENOSYS)
		return -err;

	/* Refused by vm.unprivileged_userfaultfd: /dev/userfaultfd's file
	 * mode is the only check on this path (Linux 6.1+). */
	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev < 0)
		return -err;
	fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
	if (fd < 0)
		fd = -errno;
	close(dev);
	return fd;
}

int64_t bgs_uffd_offered_features(void)
{
	struct uffdio_api api = { .api = UFFD_API };
	int fd = bgs_uffd_create(0);
	int64_t ret;

	if (fd < 0)
		return fd;
	/* Asking for nothing returns everything the kernel offers. */
	ret = ioctl(fd, UFFDIO_API, &api) ? -errno : (int64_t)api.features;
	close(fd);
	return ret;
}

static int negotiate(struct bgs_uffd *u, uint64_t want, uint64_t need)
{
	struct uffdio_api api = { .api = UFFD_API };
	int64_t offered = bgs_uffd_offered_features();

	if (offered < 0)
		return (int)offered;
	if ((need & (uint64_t)offered) != need)
		return -ENOTSUP;
	/* UFFDIO_API reports all offered features on output whatever was
	 * asked, so remember what we enabled ourselves. */
	api.features = (want | need) & (uint64_t)offered;
	if (ioctl(u->fd, UFFDIO_API, &api))
		return -errno;
	u->offered = (uint64_t)offered;
	u->features = (want | need) & (uint64_t)offered;
	return 0;
}

int bgs_uffd_adopt(struct bgs_uffd *u, int fd, uint64_t want, uint64_t need)
{
	int ret;

	u->fd = fd;
	ret = negotiate(u, want, need);
	if (ret < 0)
		bgs_uffd_close(u);
	return ret;
}

int bgs_uffd_open(struct bgs_uffd *u, uint64_t want, uint64_t need)
{
	int fd = bgs_uffd_create(0);

	u->fd = -1;
	if (fd < 0)
		return fd;
	return bgs_uffd_adopt(u, fd, want, need);
}

void bgs_uffd_close(struct bgs_uffd *u)
{
	if (u->fd >= 0)
		close(u->fd);
	u->fd = -1;
}

/* Sleep a little longer each time an event blocks the ioctl; false when the
 * budget is spent. The event reader is another thread, so this is short. */
static bool eagain_backoff(uint64_t *slept_ns)
{
	uint64_t step = *slept_ns < 1000 ? 1000 : *slept_ns / 4;
	struct timespec ts;

	if (step > 1000000)
		step = 1000000;
	if (*slept_ns >= BGS_UFFD_EAGAIN_BUDGET_NS)
		return false;
	ts.tv_sec = 0;
	ts.tv_nsec = (long)step;
	nanosleep(&ts, NULL);
	*slept_ns += step;
	return true;
}

static int ioctl_retry(int fd, unsigned long req, void *arg, unsigned flags)
{
	uint64_t slept = 0;

	for (;;) {
		if (ioctl(fd, req, arg) == 0)
			return 0;
		if (errno != EAGAIN || (flags & BGS_UFFD_NORETRY) ||
		    !eagain_backoff(&slept))
			return -errno;
	}
}

int bgs_uffd_register(const struct bgs_uffd *u, uint64_t addr, uint64_t len,
		      uint64_t mode, uint64_t *ioctls)
{
	struct uffdio_register reg = {
		.range = { .start = addr, .len = len },
		.mode = mode,
	};

	if (ioctl(u->fd, UFFDIO_REGISTER, &reg))
		return -errno;
	if (ioctls)
		*ioctls = reg.ioctls;
	return 0;
}

int bgs_uffd_unregister(const struct bgs_uffd *u, uint64_t addr, uint64_t len)
{
	struct uffdio_range range = { .start = addr, .len = len };

	return ioctl(u->fd, UFFDIO_UNREGISTER, &range) ? -errno : 0;
}

static int writeprotect(const struct bgs_uffd *u, uint64_t addr, uint64_t len,
			uint64_t mode, unsigned flags)
{
	struct uffdio_writeprotect wp = {
		.range = { .start = addr, .len = len },
		.mode = mode,
	};

	return ioctl_retry(u->fd, UFFDIO_WRITEPROTECT, &wp, flags);
}

int bgs_uffd_protect(const struct bgs_uffd *u, uint64_t addr, uint64_t len,
		     unsigned flags)
{
	return writeprotect(u, addr, len, UFFDIO_WRITEPROTECT_MODE_WP, flags);
}

int bgs_uffd_unprotect(const struct bgs_uffd *u, uint64_t addr, uint64_t len,
		       unsigned flags)
{
	return writeprotect(u, addr, len,
			    (flags & BGS_UFFD_DONTWAKE)
				    ? UFFDIO_WRITEPROTECT_MODE_DONTWAKE
				    : 0,
			    flags);
}

/*
 * UFFDIO_COPY, UFFDIO_ZEROPAGE and UFFDIO_POISON report progress in a
 * result field: bytes placed (> 0, then the ioctl says EAGAIN for the
 * rest) or -errno for the first page. One loop serves all three: continue
 * after partial progress, skip pages that are already there, back off
 * while an event is pending (unless told not to).
 */
struct mfill {
	unsigned long req;
	const char *src; /* UFFDIO_COPY only */
	uint64_t page_size;
	unsigned flags;
};

static int64_t mfill_once(const struct bgs_uffd *u, const struct mfill *m,
			  uint64_t dst, uint64_t off, uint64_t len)
{
	const uint64_t mode =
		(m->flags & BGS_UFFD_DONTWAKE) ? UFFDIO_COPY_MODE_DONTWAKE : 0;

	if (m->req == UFFDIO_COPY) {
		struct uffdio_copy c = {
			.dst = dst,
			.src = (uint64_t)(uintptr_t)(m->src + off),
			.len = len,
			.mode = mode,
		};
		if (ioctl(u->fd, UFFDIO_COPY, &c) == 0)
			return (int64_t)len;
		return c.copy ? c.copy : -errno;
	} else if (m->req == UFFDIO_ZEROPAGE) {
		struct uffdio_zeropage z = {
			.range = { .start = dst, .len = len },
			.mode = mode,
		};
		if (ioctl(u->fd, UFFDIO_ZEROPAGE, &z) == 0)
			return (int64_t)len;
		return z.zeropage ? z.zeropage : -errno;
	} else {
		struct uffdio_poison p = {
			.range = { .start = dst, .len = len },
			.mode = mode,
		};
		if (ioctl(u->fd, UFFDIO_POISON, &p) == 0)
			return (int64_t)len;
		return p.updated ? p.updated : -errno;
	}
}

static int64_t mfill(const struct bgs_uffd *u, const struct mfill *m,
		     uint64_t dst, uint64_t len)
{
	uint64_t off = 0, slept = 0;
	int64_t placed = 0;

	while (off < len) {
		int64_t r = mfill_once(u, m, dst + off, off, len - off);

		if (r > 0) {
			off += (uint64_t)r;
			placed += r;
		} else if (r == -EEXIST) {
			off += m->page_size; /* already mapped: leave it */
		} else if (r != -EAGAIN || (m->flags & BGS_UFFD_NORETRY) ||
			   !eagain_backoff(&slept)) {
			return r;
		}
	}
	return placed;
}

int64_t bgs_uffd_copy(const struct bgs_uffd *u, uint64_t dst, const void *src,
		      uint64_t len, uint64_t page_size, unsigned flags)
{
	const struct mfill m = { UFFDIO_COPY, src, page_size, flags };

	return mfill(u, &m, dst, len);
}

int64_t bgs_uffd_zeropage(const struct bgs_uffd *u, uint64_t dst, uint64_t len,
			  uint64_t page_size, unsigned flags)
{
	const struct mfill m = { UFFDIO_ZEROPAGE, NULL, page_size, flags };

	return mfill(u, &m, dst, len);
}

int64_t bgs_uffd_poison(const struct bgs_uffd *u, uint64_t dst, uint64_t len,
			uint64_t page_size, unsigned flags)
{
	const struct mfill m = { UFFDIO_POISON, NULL, page_size, flags };

	return mfill(u, &m, dst, len);
}

int bgs_uffd_wake(const struct bgs_uffd *u, uint64_t addr, uint64_t len)
{
	struct uffdio_range range = { .start = addr, .len = len };

	return ioctl(u->fd, UFFDIO_WAKE, &range) ? -errno : 0;
}

int bgs_uffd_read(const struct bgs_uffd *u, struct uffd_msg *msgs, size_t max)
{
	ssize_t n;

	do {
		n = read(u->fd, msgs, max * sizeof(*msgs));
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EAGAIN ? 0 : -errno;
	return (int)((size_t)n / sizeof(*msgs));
}

const char *bgs_uffd_event_name(uint8_t event)
{
	switch (event) {
	case UFFD_EVENT_PAGEFAULT:
		return "pagefault";
	case UFFD_EVENT_FORK:
		return "fork";
	case UFFD_EVENT_REMAP:
		return "remap";
	case UFFD_EVENT_REMOVE:
		return "remove";
	case UFFD_EVENT_UNMAP:
		return "unmap";
	default:
		return "unknown";
	}
}
