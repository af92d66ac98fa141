/* SPDX-License-Identifier: MIT */
/*
 * What an ELF core file of a target needs besides its memory, read the
 * way the kernel's core dumper (fs/binfmt_elf.c) would fill it in.
 *
 * Two steps, so that the pause stays short: bgs_target_core_prepare()
 * runs while the target is still running and reads what does not change
 * with its threads (psinfo, the auxiliary vector, its coredump_filter, the
 * vDSO and the first page of every ELF file it maps, which are file or
 * kernel data); bgs_target_core_threads() runs while every thread is
 * stopped, at the snapshot's instant, and reads only registers (three
 * ptrace calls per thread, a fourth for a thread stopped by a signal).
 * The CPU's xsave layout is read with CPUID: the note describes the
 * machine the process ran on, not the one that later writes the core.
 *
 * The per-thread times of NT_PRSTATUS (pr_utime, pr_stime ...) and the
 * pending signal set are left zero: reading them costs a /proc file per
 * thread inside the pause, and no debugger looks at them.
 *
 * x86_64 only; elsewhere bgs_target_core_threads() is -EOPNOTSUPP.
 */
#include "uffd_target.h"

#include <elf.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/uio.h>

#define XSTATE_MAX    16384
#define ELF_HDR_BYTES 4096u
#define VDSO_MAX      (64u << 10)

void bgs_target_core_free(struct bgs_target_core *c)
{
	for (size_t i = 0; i < c->nthreads; i++)
		free(c->threads[i].xstate);
	for (size_t i = 0; i < c->nmem; i++)
		free(c->mem[i].data);
	free(c->threads);
	free(c->mem);
	free(c->early);
	free(c->auxv);
	memset(c, 0, sizeof(*c));
}

/* ---- process-wide, before the pause ------------------------------------- */

static int read_proc(pid_t pid, const char *what, char **text, size_t *len)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, what);
	return bgs_target_slurp(path, text, len);
}

/* "pid (comm) S ppid pgrp session tty tpgid flags ... nice": comm may hold
 * spaces and parentheses, so the fields are counted from the last ')'. */
static int fill_stat(struct bgs_target_core *c, pid_t pid)
{
	static const char states[] = "RSDTZW";
	long long ppid, pgrp, sid, nice;
	unsigned long long flags;
	char *text, *rp, st;
	int r = read_proc(pid, "stat", &text, NULL);

	if (r)
		return r;
	rp = strrchr(text, ')');
	if (!rp || sscanf(rp + 1,
			  " %c %lld %lld %lld %*d %*d %llu %*u %*u %*u %*u "
			  "%*u %*u %*d %*d %*d %lld",
			  &st, &ppid, &pgrp, &sid, &flags, &nice) != 6) {
		free(text);
		return -EINVAL;
	}
	c->ppid = (int32_t)ppid;
	c->pgrp = (int32_t)pgrp;
	c->sid = (int32_t)sid;
	c->psinfo.sname = st;
	c->psinfo.state =
		strchr(states, st) ? (uint8_t)(strchr(states, st) - states) : 0;
	c->psinfo.zomb = st == 'Z';
	c->psinfo.nice = (int8_t)nice;
	c->psinfo.flag = flags;
	free(text);
	return 0;
}

/* The real uid and gid, as the kernel puts them in psinfo. */
static int fill_ids(struct bgs_target_core *c, pid_t pid)
{
	char *text, *p;
	int r = read_proc(pid, "status", &text, NULL);

	if (r)
		return r;
	p = strstr(text, "\nUid:");
	if (p)
		c->psinfo.uid = (uint32_t)strtoul(p + 5, NULL, 10);
	p = strstr(text, "\nGid:");
	if (p)
		c->psinfo.gid = (uint32_t)strtoul(p + 5, NULL, 10);
	free(text);
	return 0;
}

/* comm and the start of the command line, NULs as spaces (as the kernel
 * writes pr_psargs). */
static int fill_names(struct bgs_target_core *c, pid_t pid)
{
	char *text;
	size_t len, n;
	int r = read_proc(pid, "comm", &text, &len);

	if (r)
		return r;
	len = strcspn(text, "\n");
	memcpy(c->psinfo.fname, text,
	       len < sizeof(c->psinfo.fname) ? len : sizeof(c->psinfo.fname));
	free(text);
	if (read_proc(pid, "cmdline", &text, &len))
		return 0; /* a kernel thread or a zombie: no arguments */
	n = len < sizeof(c->psinfo.psargs) - 1 ? len
					       : sizeof(c->psinfo.psargs) - 1;
	for (size_t i = 0; i < n; i++)
		c->psinfo.psargs[i] = text[i] ? text[i] : ' ';
	while (n && c->psinfo.psargs[n - 1] == ' ')
		c->psinfo.psargs[--n] = '\0';
	free(text);
	return 0;
}

static int fill_auxv_filter(struct bgs_target_core *c, pid_t pid)
{
	char *text;
	size_t len;
	int r = read_proc(pid, "auxv", &text, &len);

	if (r)
		return r;
	c->auxv = (uint8_t *)text;
	c->auxv_len = len;
	c->filter = 0x33; /* the kernel's default, if the file says nothing */
	if (!read_proc(pid, "coredump_filter", &text, NULL)) {
		c->filter = (uint32_t)strtoul(text, NULL, 16);
		free(text);
	}
	return 0;
}

static int add_mem(struct bgs_target_core *c, uint64_t addr, uint8_t *data,
		   uint32_t len)
{
	struct bgs_target_core_mem *v =
		realloc(c->mem, (c->nmem + 1) * sizeof(*v));

	if (!v)
		return -ENOMEM;
	c->mem = v;
	v[c->nmem++] = (struct bgs_target_core_mem){ addr, len, data };
	return 0;
}

/* A copy of @len bytes at @addr, or NULL when they cannot be read. */
static uint8_t *copy_out(struct bgs_target *t, uint64_t addr, size_t len)
{
	uint8_t *buf = malloc(len);

	if (buf && bgs_target_read(t, addr, buf, len)) {
		free(buf);
		buf = NULL;
	}
	return buf;
}

/* The first page of a file mapped from offset 0, when it is an ELF header
 * (what coredump_filter bit 4 dumps, and how a debugger finds build ids);
 * the whole vDSO (always dumped; a debugger reads its symbols). */
static int fill_extra(struct bgs_target_core *c, struct bgs_target *t,
		      const struct bgs_target_maps *m)
{
	for (size_t i = 0; i < m->n; i++) {
		const struct bgs_target_map *v = &m->v[i];
		const uint64_t len = v->end - v->start;
		const bool vdso = !strcmp(v->label, "[vdso]");
		uint8_t *data;

		if (vdso && len <= VDSO_MAX) {
			data = copy_out(t, v->start, len);
			if (data && add_mem(c, v->start, data, (uint32_t)len))
				return -ENOMEM;
			continue;
		}
		if (v->label[0] != '/' || v->offset || !(v->prot & PROT_READ) ||
		    v->kind != BGS_TKIND_FILE || len < ELF_HDR_BYTES)
			continue;
		data = copy_out(t, v->start, ELF_HDR_BYTES);
		if (data && memcmp(data, ELFMAG, SELFMAG)) {
			free(data);
			data = NULL;
		}
		if (data && add_mem(c, v->start, data, ELF_HDR_BYTES))
			return -ENOMEM;
	}
	return 0;
}

#if defined(__x86_64__)
#include <cpuid.h>

#define CPUID_XSAVE_LEAF  0xd
#define CPUID1_OSXSAVE	  (1u << 27)
#define FIRST_EXT_FEATURE 2

/* What the kernel writes as NT_X86_XSAVE_LAYOUT: for each feature the
 * OS enabled for user space (XCR0) from AVX on, its size and offset in
 * the standard xsave format (CPUID leaf 0xd). */
static void fill_xsave_layout(struct bgs_target_core *c)
{
	unsigned a, b, cx, d, lo, hi;
	uint64_t xcr0;

	if (!__get_cpuid(1, &a, &b, &cx, &d) || !(cx & CPUID1_OSXSAVE))
		return;
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	xcr0 = (uint64_t)hi << 32 | lo;
	for (unsigned i = FIRST_EXT_FEATURE; i < 64; i++) {
		uint32_t rec[4] = { i, 0, 0, 0 };

		if (!(xcr0 & (1ull << i)) ||
		    !__get_cpuid_count(CPUID_XSAVE_LEAF, i, &a, &b, &cx, &d))
			continue;
		rec[1] = a;
		rec[2] = b;
		memcpy(c->xsave_layout + c->xsave_layout_len, rec, sizeof(rec));
		c->xsave_layout_len += sizeof(rec);
	}
}
#else
static void fill_xsave_layout(struct bgs_target_core *c)
{
	(void)c;
}
#endif

int bgs_target_core_prepare(struct bgs_target *t,
			    const struct bgs_target_maps *m,
			    struct bgs_target_core *c)
{
	int r;

	memset(c, 0, sizeof(*c));
	r = fill_stat(c, t->pid);
	if (!r)
		r = fill_ids(c, t->pid);
	if (!r)
		r = fill_names(c, t->pid);
	if (!r)
		r = fill_auxv_filter(c, t->pid);
	if (!r)
		r = fill_extra(c, t, m);
	if (!r)
		fill_xsave_layout(c);
	if (r) {
		bgs_target_core_free(c);
		return bgs_target_fail(t, r,
				       "reading process %d for its core "
				       "notes: %s",
				       (int)t->pid, strerror(-r));
	}
	return 0;
}

/* ---- per thread, while stopped ------------------------------------------ */

#if defined(__x86_64__)

static int read_regs(pid_t tid, struct bgs_target_core_thread *th)
{
	struct iovec iov = { th->regs, sizeof(th->regs) };

	if (ptrace(PTRACE_GETREGSET, tid, (void *)NT_PRSTATUS, &iov))
		return -errno;
	if (iov.iov_len != sizeof(th->regs))
		return -EIO;
	iov = (struct iovec){ th->fpregs, sizeof(th->fpregs) };
	th->has_fp = !ptrace(PTRACE_GETREGSET, tid, (void *)NT_PRFPREG, &iov) &&
		     iov.iov_len == sizeof(th->fpregs);
	return 0;
}

/* The xsave image, trimmed to the size the kernel reports. */
static int read_xstate(pid_t tid, struct bgs_target_core_thread *th,
		       uint8_t *buf)
{
	struct iovec iov = { buf, XSTATE_MAX };

	if (ptrace(PTRACE_GETREGSET, tid, (void *)NT_X86_XSTATE, &iov))
		return 0; /* no xsave: the legacy area is all there is */
	th->xstate = malloc(iov.iov_len);
	if (!th->xstate)
		return -ENOMEM;
	memcpy(th->xstate, buf, iov.iov_len);
	th->xstate_len = (uint32_t)iov.iov_len;
	return 0;
}

/* user_regs_struct, in 64-bit words. */
#define UR_RAX	       10
#define UR_ORIG_RAX    15
#define UR_RIP	       16
#define UR_RSP	       19
#define ERESTARTSYS    512
#define ERESTARTNOHAND 514
#define SYSCALL_LEN    2

int bgs_target_core_early(struct bgs_target *t, struct bgs_target_core *c)
{
	free(c->early);
	c->nearly = 0;
	c->early = calloc(t->nthreads ? t->nthreads : 1, sizeof(*c->early));
	if (!c->early)
		return bgs_target_fail(t, -ENOMEM, "out of memory");
	for (size_t i = 0; i < t->nthreads; i++) {
		struct bgs_target_core_early *e = &c->early[c->nearly];
		struct iovec iov = { e->regs, sizeof(e->regs) };

		e->tid = t->threads[i].tid;
		if (!ptrace(PTRACE_GETREGSET, e->tid, (void *)NT_PRSTATUS,
			    &iov))
			c->nearly++;
	}
	return 0;
}

/* A thread stopped early inside system call N (rax one of the restart
 * codes), now at the `syscall` instruction again with rax = N: it has not
 * run since, but for the restart; it is shown as it was then. */
static void undo_restart(const struct bgs_target_core *c,
			 struct bgs_target_core_thread *th)
{
	uint64_t r[27];

	memcpy(r, th->regs, sizeof(r));
	for (size_t i = 0; i < c->nearly; i++) {
		const uint64_t *e = c->early[i].regs;
		const int64_t code = -(int64_t)e[UR_RAX];

		if (c->early[i].tid != th->tid)
			continue;
		if ((int64_t)e[UR_ORIG_RAX] < 0 || code < ERESTARTSYS ||
		    code > ERESTARTNOHAND || r[UR_RAX] != e[UR_ORIG_RAX] ||
		    r[UR_ORIG_RAX] != e[UR_ORIG_RAX] ||
		    r[UR_RSP] != e[UR_RSP] ||
		    r[UR_RIP] != e[UR_RIP] - SYSCALL_LEN)
			return;
		r[UR_RAX] = e[UR_RAX];
		r[UR_RIP] = e[UR_RIP];
		memcpy(th->regs, r, sizeof(r));
		return;
	}
}

static int read_thread(const struct bgs_target_thread *tt,
		       struct bgs_target_core_thread *th, uint8_t *buf)
{
	int r;

	th->tid = tt->tid;
	r = read_regs(tt->tid, th);
	if (!r)
		r = read_xstate(tt->tid, th, buf);
	if (!r && ptrace(PTRACE_GETSIGMASK, tt->tid, (void *)sizeof(uint64_t),
			 &th->sighold))
		th->sighold = 0;
	if (!r && tt->stop == BGS_TSTOP_SIGNAL) {
		th->cursig = tt->sig;
		th->has_siginfo =
			!ptrace(PTRACE_GETSIGINFO, tt->tid, NULL, th->siginfo);
	}
	return r;
}

int bgs_target_core_threads(struct bgs_target *t, struct bgs_target_core *c)
{
	uint8_t *buf = malloc(XSTATE_MAX);
	int r = 0;

	c->threads = calloc(t->nthreads ? t->nthreads : 1, sizeof(*c->threads));
	if (!buf || !c->threads) {
		free(buf);
		return bgs_target_fail(t, -ENOMEM, "out of memory");
	}
	/* The main thread first: a debugger shows it as thread 1. */
	for (size_t i = 0; i < t->nthreads && !r; i++) {
		const struct bgs_target_thread *tt = &t->threads[i];

		if (tt->other_process)
			continue;
		r = read_thread(tt, &c->threads[c->nthreads], buf);
		if (!r)
			undo_restart(c, &c->threads[c->nthreads]);
		if (!r && tt->tid == t->pid && c->nthreads) {
			const struct bgs_target_core_thread main =
				c->threads[c->nthreads];

			memmove(&c->threads[1], &c->threads[0],
				c->nthreads * sizeof(*c->threads));
			c->threads[0] = main;
		}
		c->nthreads += !r;
	}
	free(buf);
	if (r)
		return bgs_target_fail(t, r,
				       "reading the registers of process "
				       "%d: %s",
				       (int)t->pid, strerror(-r));
	return 0;
}

#else

int bgs_target_core_threads(struct bgs_target *t, struct bgs_target_core *c)
{
	(void)c;
	return bgs_target_fail(t, -EOPNOTSUPP, "core notes: x86_64 only");
}

#endif
