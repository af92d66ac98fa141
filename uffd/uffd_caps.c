/* SPDX-License-Identifier: MIT */
/*
 * The capability probe: what this kernel and this process can do, each
 * thing in one line, and for what is missing, how to get it.
 */
#include "uffd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

static struct bgs_uffd_cap *add(struct bgs_uffd_cap *caps, int *n,
				const char *name, bool ok, bool required,
				const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

static struct bgs_uffd_cap *add(struct bgs_uffd_cap *caps, int *n,
				const char *name, bool ok, bool required,
				const char *fmt, ...)
{
	struct bgs_uffd_cap *c = &caps[(*n)++];
	va_list ap;

	c->name = name;
	c->ok = ok;
	c->required = required;
	va_start(ap, fmt);
	vsnprintf(c->detail, sizeof(c->detail), fmt, ap);
	va_end(ap);
	return c;
}

/* First line of a small /proc or /sys file, without the newline. */
static bool read_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "re");
	bool ok;

	if (!f)
		return false;
	ok = fgets(buf, (int)len, f) != NULL;
	fclose(f);
	if (ok)
		buf[strcspn(buf, "\n")] = '\0';
	return ok;
}

static long read_long(const char *path, long fallback)
{
	char buf[64];

	return read_line(path, buf, sizeof(buf)) ? strtol(buf, NULL, 10)
						 : fallback;
}

static void probe_kernel(struct bgs_uffd_cap *caps, int *n)
{
	struct utsname u;
	int major = 0, minor = 0;

	uname(&u);
	sscanf(u.release, "%d.%d", &major, &minor);
	const bool recent = major > 6 || (major == 6 && minor >= 9);
	add(caps, n, "kernel", recent, false,
	    recent ? "Linux %s"
		   : "Linux %s: 6.9 or newer is recommended (uffd-wp fixes, "
		     "PAGEMAP_SCAN fixes, close() resets protection)",
	    u.release);
}

static void probe_access(struct bgs_uffd_cap *caps, int *n)
{
	const long unpriv =
		read_long("/proc/sys/vm/unprivileged_userfaultfd", -1);
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	const int sys_err = fd < 0 ? errno : 0;

	if (fd >= 0) {
		close(fd);
		add(caps, n, "userfaultfd", true, true,
		    "userfaultfd(2) with kernel faults is permitted (%s)",
		    geteuid() == 0 ? "root"
		    : unpriv == 1  ? "vm.unprivileged_userfaultfd=1"
				   : "CAP_SYS_PTRACE");
		return;
	}
	if (sys_err == ENOSYS) {
		add(caps, n, "userfaultfd", false, true,
		    "the kernel has no userfaultfd (CONFIG_USERFAULTFD=n)");
		return;
	}
	fd = bgs_uffd_create(0);
	if (fd >= 0) {
		close(fd);
		add(caps, n, "userfaultfd", true, true,
		    "via /dev/userfaultfd (the syscall is refused: "
		    "vm.unprivileged_userfaultfd=0)");
		return;
	}
	add(caps, n, "userfaultfd", false, true,
	    "not permitted for uid %d: run as root (or with CAP_SYS_PTRACE), "
	    "or 'sudo sysctl vm.unprivileged_userfaultfd=1', or grant access "
	    "to /dev/userfaultfd ('sudo setfacl -m u:%d:rw /dev/userfaultfd')",
	    (int)geteuid(), (int)geteuid());
}

static void probe_features(struct bgs_uffd_cap *caps, int *n, uint64_t f,
			   bool known)
{
	const char *unknown = "unknown: userfaultfd is not available here";
	const uint64_t events = UFFD_FEATURE_EVENT_REMAP |
				UFFD_FEATURE_EVENT_REMOVE |
				UFFD_FEATURE_EVENT_UNMAP;
	const bool wp = f & UFFD_FEATURE_PAGEFAULT_FLAG_WP;

	add(caps, n, "uffd-wp", wp, true, "%s",
	    !known ? unknown
	    : wp   ? "write-protect faults on anonymous memory"
		   : "no write-protect support: needs Linux 5.7+ on x86_64 "
		     "with CONFIG_HAVE_ARCH_USERFAULTFD_WP");
	add(caps, n, "wp-unpopulated", f & UFFD_FEATURE_WP_UNPOPULATED, false,
	    "%s",
	    !known ? unknown
	    : (f & UFFD_FEATURE_WP_UNPOPULATED)
		    ? "never-touched pages are protected without populating "
		      "them"
		    : "Linux < 6.4: never-touched pages are read-populated "
		      "before protecting (slower arming, more page tables)");
	add(caps, n, "wp-shmem-hugetlbfs", f & UFFD_FEATURE_WP_HUGETLBFS_SHMEM,
	    false, "%s",
	    !known ? unknown
	    : (f & UFFD_FEATURE_WP_HUGETLBFS_SHMEM)
		    ? "memfd/shmem and hugetlbfs regions can be snapshotted"
		    : "only anonymous memory: needs Linux 5.19+ with "
		      "CONFIG_PTE_MARKER_UFFD_WP");
	add(caps, n, "uffd-events", (f & events) == events, true, "%s",
	    !known ? unknown
	    : (f & events) == events
		    ? "mremap/munmap/MADV_DONTNEED during a save are seen"
		    : "the kernel does not report remap/remove/unmap events");
	add(caps, n, "uffd-poison", f & UFFD_FEATURE_POISON, false, "%s",
	    !known ? unknown
	    : (f & UFFD_FEATURE_POISON)
		    ? "lazy restore poisons pages of a damaged record"
		    : "Linux < 6.6: lazy restore cannot poison a damaged "
		      "record, "
		      "it fails the restore instead");
}

/*
 * PAGEMAP_SCAN's categories (of @report) of one fresh private anonymous
 * page after a write to it (@write) or a read; -errno when it cannot say
 * (no PAGEMAP_SCAN before Linux 6.7).
 */
static int64_t scan_fresh_page(bool write, uint64_t report)
{
	struct bgs_pagemap pm;
	struct page_region vec[1];
	const long psz = sysconf(_SC_PAGESIZE);
	char *p = mmap(NULL, (size_t)psz, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int64_t ret = -ENOMEM;

	if (p != MAP_FAILED && bgs_uffd_pagemap_open(&pm, 0) == 0) {
		struct pm_scan_arg a = {
			.size = sizeof(a),
			.start = (uint64_t)(uintptr_t)p,
			.end = (uint64_t)(uintptr_t)p + (uint64_t)psz,
			.vec = (uint64_t)(uintptr_t)vec,
			.vec_len = 1,
			.category_anyof_mask = PAGE_IS_PRESENT,
			.return_mask = report,
		};

		if (write)
			p[0] = 1;
		else
			(void)*(volatile char *)p;
		ret = ioctl(pm.fd, PAGEMAP_SCAN, &a);
		ret = ret == 1	? (int64_t)vec[0].categories
		      : ret < 0 ? -errno
				: -ENODATA;
		bgs_uffd_pagemap_close(&pm);
	}
	if (p != MAP_FAILED)
		munmap(p, (size_t)psz);
	return ret;
}

static void probe_pagemap_scan(struct bgs_uffd_cap *caps, int *n)
{
	const int64_t r = scan_fresh_page(true, PAGE_IS_PRESENT);

	add(caps, n, "pagemap-scan", r > 0, true, "%s%s",
	    r > 0 ? "PAGEMAP_SCAN finds populated pages and verifies "
		    "protection after each copy"
		  : "PAGEMAP_SCAN is missing (Linux 6.7+): ",
	    r > 0 ? "" : strerror((int)-r));
}

/*
 * Kernel builds differ here: most map the shared zero page on a read of
 * never-written private anonymous memory, some map a fresh page. Both are
 * right for bgsnap; with fresh pages, memory that was only ever read is
 * copied and found zero rather than skipped by PAGEMAP_SCAN.
 */
static void probe_read_zero_page(struct bgs_uffd_cap *caps, int *n)
{
	const int64_t cats =
		scan_fresh_page(false, PAGE_IS_PRESENT | PAGE_IS_PFNZERO);

	if (cats <= 0)
		return; /* no PAGEMAP_SCAN: its own line says so */
	add(caps, n, "read-zero-page", true, false, "%s",
	    cats & PAGE_IS_PFNZERO
		    ? "a read of never-written memory maps the zero page: "
		      "such pages are skipped as zero"
		    : "a read of never-written memory maps a fresh page on "
		      "this kernel: such pages are read and found zero");
}

static void probe_io_uring(struct bgs_uffd_cap *caps, int *n)
{
	/* struct io_uring_params is 120 bytes; zeroed means defaults. */
	unsigned char params[120] = { 0 };
	const int fd = (int)syscall(SYS_io_uring_setup, 4, params);
	const int err = errno;
	const long disabled =
		read_long("/proc/sys/kernel/io_uring_disabled", 0);

	if (fd >= 0)
		close(fd);
	add(caps, n, "io_uring", fd >= 0, true,
	    fd >= 0 ? "snapshot files are written with io_uring%s"
		    : "io_uring is refused (%s): 'sudo sysctl "
		      "kernel.io_uring_disabled=0'",
	    fd >= 0    ? ""
	    : disabled ? "kernel.io_uring_disabled"
		       : strerror(err));
}

static void probe_memory(struct bgs_uffd_cap *caps, int *n)
{
	char thp[128] = "absent";
	const long huge = read_long("/proc/sys/vm/nr_hugepages", 0);
	const long free_huge = read_long(
		"/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", 0);
	const long ksm = read_long("/sys/kernel/mm/ksm/run", 0);

	read_line("/sys/kernel/mm/transparent_hugepage/enabled", thp,
		  sizeof(thp));
	add(caps, n, "thp",
	    strstr(thp, "[never]") == NULL && strcmp(thp, "absent"), false,
	    "transparent huge pages: %s", thp);
	add(caps, n, "hugetlbfs", free_huge > 0, false,
	    free_huge > 0
		    ? "%ld of %ld 2 MiB huge pages free"
		    : "no free 2 MiB huge pages (%ld reserved): 'sudo "
		      "sysctl vm.nr_hugepages=N' to use hugetlbfs regions",
	    free_huge > 0 ? free_huge : huge, huge);
	add(caps, n, "ksm", ksm != 1, false, "%s",
	    ksm == 1 ? "ksmd is running: merging drops write protection, so "
		       "bgsnap refuses MADV_MERGEABLE regions ('echo 0 > "
		       "/sys/kernel/mm/ksm/run' to stop it)"
		     : "ksmd is not running (merging would drop protection)");
}

static void probe_ptrace(struct bgs_uffd_cap *caps, int *n)
{
	const long scope = read_long("/proc/sys/kernel/yama/ptrace_scope", -1);
	const int pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
	int dup = -1;

	if (pidfd >= 0) {
		dup = (int)syscall(SYS_pidfd_getfd, pidfd, pidfd, 0);
		if (dup >= 0)
			close(dup);
		close(pidfd);
	}
	add(caps, n, "pidfd_getfd", dup >= 0, false, "%s",
	    dup >= 0 ? "save --pid can take a uffd from the target"
		     : "pidfd_getfd(2) is missing (Linux 5.6+): no --pid");
	add(caps, n, "ptrace", scope <= 0 || geteuid() == 0, false, "%s",
	    scope < 0	 ? "no Yama: --pid works on processes of your own user"
	    : scope == 0 ? "Yama ptrace_scope=0: --pid works on processes of "
			   "your own user"
	    : geteuid() == 0 ? "Yama ptrace_scope>0, but running as root"
			     : "Yama ptrace_scope>0: --pid needs root or "
			       "CAP_SYS_PTRACE ('sudo sysctl "
			       "kernel.yama.ptrace_scope=0' to relax)");
}

int bgs_uffd_probe(struct bgs_uffd_cap *caps)
{
	const int64_t offered = bgs_uffd_offered_features();
	int n = 0;

	probe_kernel(caps, &n);
	probe_access(caps, &n);
	probe_features(caps, &n, offered > 0 ? (uint64_t)offered : 0,
		       offered > 0);
	probe_pagemap_scan(caps, &n);
	probe_read_zero_page(caps, &n);
	probe_io_uring(caps, &n);
	probe_memory(caps, &n);
	probe_ptrace(caps, &n);
	return n;
}
