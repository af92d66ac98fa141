/* SPDX-License-Identifier: MIT */
/*
 * Syscalls injected into a stopped thread of the target, and the uffd made
 * that way (x86_64). (Over 1000 lines: injection and the helper thread
 * that makes the uffd are one sequence, each step safe against a kill at
 * any instant only given the steps around it; it is read as a whole.)
 *
 * DESIGN
 *
 * The constraint that shapes everything: bgsnap may be SIGKILLed at any
 * instant, and the kernel then detaches its tracees, which run on with
 * whatever registers they hold. The recipe of kernel-uffd.md §5.2
 * (registers pointed at a `syscall` at rip-2, PTRACE_SINGLESTEP, registers
 * restored) breaks two ways if the tracer dies in the middle: the thread
 * runs on from the injected registers (the wrapper it sat in "returns" our
 * syscall's result, argument registers clobbered), and a death during the
 * single-step's SIGTRAP stop delivers that SIGTRAP, which kills the target
 * (measured: target killed by signal 5). So:
 *
 *  1. The injected registers are always resumable. The thread's stack gets,
 *     below the red zone, a signal frame of its own state (the registers as
 *     they will be after the kernel's syscall-restart logic, the signal mask
 *     from PTRACE_GETSIGMASK, the FPU/AVX state from PTRACE_GETREGSET
 *     NT_X86_XSTATE), and rip is pointed at `syscall; ret` found in the
 *     target's text, with rsp at the frame, whose first word is the address
 *     of a `mov $15,%rax; syscall` (rt_sigreturn, e.g. glibc's __restore_rt).
 *     Left alone, the thread runs the syscall, `ret`s into rt_sigreturn and
 *     is exactly where it was (its interrupted syscall restarted). This is
 *     also where the kernel itself would put a signal frame, and no bigger.
 *  2. Stops are syscall-stops (PTRACE_SYSCALL with PTRACE_O_TRACESYSGOOD),
 *     never single-steps: a dead tracer's syscall-stop resumes with
 *     SIGTRAP|0x80, which is no valid signal, so nothing is delivered.
 *  3. With bgsnap alive, the frame is never used: after the syscall-exit
 *     stop we PTRACE_INTERRUPT + PTRACE_CONT, so the thread stops again
 *     inside the kernel's signal path before returning to user mode, and
 *     there the saved registers go back with PTRACE_SETREGS. The kernel's
 *     restart logic then runs on them exactly as if nothing had happened:
 *     read() is re-issued, nanosleep() resumes through its restart_block.
 *     The frame path cannot use a restart_block (rt_sigreturn resets it),
 *     so it re-issues such a wait with its own arguments, still in the
 *     registers: exact for an absolute timeout (glibc's timed waits), the
 *     whole of a relative one again. Never EINTR: a program without signal
 *     handlers has never seen one. Only a thread already inside
 *     restart_syscall(2) has lost its call and would get EINTR; it is the
 *     last choice for injection, timed waits the next to last.
 *  4. During injection the thread blocks every signal (PTRACE_SETSIGMASK),
 *     so no handler runs while the other threads are frozen; the mask is
 *     put back before the thread is released (and by rt_sigreturn on the
 *     frame path). PTRACE_SETSIGMASK forgets TIF_RESTORE_SIGMASK, so a
 *     thread inside sigsuspend/ppoll/pselect/epoll_pwait with a mask is
 *     never used (it would keep the temporary mask).
 *
 * Ordering that makes each step safe to die in: frame written before the
 * registers change; injected registers set before the mask is; mask put
 * back before the registers are. Killed anywhere, the thread resumes either
 * with its own registers or through the frame.
 *
 * Descriptors: the uffd is made in the target (userfaultfd(2) runs its
 * permission check on the caller, so it must be the target's own call),
 * fetched with pidfd_getfd, and the target's copy dropped, so bgsnap holds
 * the only reference (§5.3). A non-root target on a system with
 * vm.unprivileged_userfaultfd=0 gets EPERM; then bgsnap opens
 * /dev/userfaultfd and passes it in over a socketpair made in the target,
 * and the target calls USERFAULTFD_IOC_NEW on it. That descriptor is root's
 * privilege: no other process of the target's user may ever take it (or
 * the uffd made with it). So on Linux 6.9+ the calls run in a helper thread
 * cloned into the target without CLONE_FILES, whose descriptor table nobody
 * else shares, after the target was made non-dumpable (when bgsnap has
 * CAP_SYS_PTRACE); the helper exits when the uffd is taken, and dumpable
 * is put back. The argument is in DESIGN.md ("Saving another user's
 * process"). Killed at any instant, the helper runs frames on its own page
 * (close its whole table, dumpable back, exit): the target never keeps a
 * descriptor, and is dumpable again.
 * Before 6.9 (no PIDFD_THREAD to reach a helper's table) the calls run in
 * the target's own table, and root refuses the /dev/userfaultfd path.
 */
#include "uffd_target.h"
#include "uffd_compat.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)

#include <dirent.h>
#include <elf.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/user.h>

/* Kernel-internal restart codes (include/linux/errno.h). */
#define ERESTARTSYS	      512
#define ERESTARTNOINTR	      513
#define ERESTARTNOHAND	      514
#define ERESTART_RESTARTBLOCK 516

/* arch/x86/include/uapi/asm/sigcontext.h, ucontext.h */
#define FP_XSTATE_MAGIC1     0x46505853U
#define FP_XSTATE_MAGIC2     0x46505845U
#define UC_FP_XSTATE	     0x1
#define UC_SIGCONTEXT_SS     0x2
#define UC_STRICT_RESTORE_SS 0x4
#define SW_BYTES_OFF	     464 /* fxsave sw_reserved: XCR0 from ptrace */
#define USER64_CS	     0x33

#define RED_ZONE	     128
#define DATA_SIZE	     256
#define XBUF_SIZE	     16384
/* Stack below rsp a thread must have: more than the frame, with margin. */
#define MIN_ROOM	16384
#define STEP_TIMEOUT_MS 2000
#define NO_SIGNALS	(~0ULL)

/* The 64-bit struct sigcontext (uapi), spelled out: glibc's differs in
 * field names and its header clashes with the kernel's. */
struct ksigcontext {
	uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
	uint64_t di, si, bp, bx, dx, ax, cx, sp, ip, flags;
	uint16_t cs, gs, fs, ss;
	uint64_t err, trapno, oldmask, cr2, fpstate, reserved1[8];
};

/* struct rt_sigframe (arch/x86/include/asm/sigframe.h) with the kernel's
 * struct ucontext, whose sigset is 8 bytes. */
struct kframe {
	uint64_t pretcode; /* popped by `ret`: the rt_sigreturn code */
	uint64_t uc_flags;
	uint64_t uc_link;
	struct {
		uint64_t ss_sp;
		int32_t ss_flags;
		int32_t pad;
		uint64_t ss_size;
	} uc_stack;
	struct ksigcontext uc_mcontext;
	uint64_t uc_sigmask;
	uint8_t info[128]; /* siginfo: unread, but inside access_ok() */
};

_Static_assert(sizeof(struct ksigcontext) == 256, "sigcontext is 256 bytes");
_Static_assert(offsetof(struct kframe, uc_mcontext) == 48, "uc_mcontext");
_Static_assert(offsetof(struct kframe, uc_sigmask) == 304, "uc_sigmask");

static const uint8_t pat_syscall_ret[] = { 0x0f, 0x05, 0xc3 };
static const uint8_t pat_sigret_rax[] = { 0x48, 0xc7, 0xc0, 0x0f, 0,
					  0,	0,    0x0f, 0x05 };
static const uint8_t pat_sigret_eax[] = { 0xb8, 0x0f, 0, 0, 0, 0x0f, 0x05 };

/* One injection session on one stopped thread. */
struct inj {
	struct bgs_target *t;
	pid_t tid;
	struct user_regs_struct saved; /* as stopped */
	uint64_t mask;		       /* its signal mask */
	uint64_t frame;		       /* rsp for injected calls */
	uint64_t data;		       /* scratch for syscall arguments */
	uint64_t room;		       /* writable stack below rsp */
	int stop_sig;		       /* a SIGSTOP that came meanwhile */
	int pidfd;		       /* for pidfd_getfd from its fd table */
	bool live;		       /* the thread holds injected registers */
};

/* ---- finding the code ---------------------------------------------------- */

static void scan_chunk(struct bgs_target *t, const uint8_t *buf, size_t len,
		       uint64_t addr)
{
	const uint8_t *p;

	if (!t->gadget_syscall &&
	    (p = memmem(buf, len, pat_syscall_ret, sizeof(pat_syscall_ret))))
		t->gadget_syscall = addr + (uint64_t)(p - buf);
	if (t->gadget_sigret)
		return;
	p = memmem(buf, len, pat_sigret_rax, sizeof(pat_sigret_rax));
	if (!p)
		p = memmem(buf, len, pat_sigret_eax, sizeof(pat_sigret_eax));
	if (p)
		t->gadget_sigret = addr + (uint64_t)(p - buf);
}

#define SCAN_CHUNK   (1UL << 20)
#define SCAN_OVERLAP 16

static void scan_region(struct bgs_target *t, uint8_t *buf, uint64_t start,
			uint64_t end)
{
	while (start < end && !(t->gadget_syscall && t->gadget_sigret)) {
		const uint64_t len =
			end - start < SCAN_CHUNK ? end - start : SCAN_CHUNK;

		if (bgs_target_read(t, start, buf, len))
			return;
		scan_chunk(t, buf, len, start);
		if (len <= SCAN_OVERLAP)
			return;
		start += len - SCAN_OVERLAP;
	}
}

/* Executable mappings, [vdso] first (always there, small). */
static void scan_maps(struct bgs_target *t, char *maps, uint8_t *buf)
{
	char *line, *save = NULL;
	int pass;

	for (pass = 0; pass < 2; pass++) {
		char *copy = strdup(maps);

		if (!copy)
			return;
		for (line = strtok_r(copy, "\n", &save); line;
		     line = strtok_r(NULL, "\n", &save)) {
			unsigned long long s, e;
			char perms[8];

			if (sscanf(line, "%llx-%llx %7s", &s, &e, perms) != 3 ||
			    perms[2] != 'x' ||
			    (strstr(line, "[vdso]") != NULL) != (pass == 0))
				continue;
			scan_region(t, buf, s, e);
		}
		free(copy);
	}
}

static bool gadgets_intact(struct bgs_target *t)
{
	uint8_t a[sizeof(pat_syscall_ret)], b[sizeof(pat_sigret_rax)];

	if (!t->gadget_syscall || !t->gadget_sigret ||
	    bgs_target_read(t, t->gadget_syscall, a, sizeof(a)) ||
	    bgs_target_read(t, t->gadget_sigret, b, sizeof(pat_sigret_eax)))
		return false;
	if (memcmp(a, pat_syscall_ret, sizeof(a)))
		return false;
	return !memcmp(b, pat_sigret_eax, sizeof(pat_sigret_eax)) ||
	       (!bgs_target_read(t, t->gadget_sigret, b, sizeof(b)) &&
		!memcmp(b, pat_sigret_rax, sizeof(b)));
}

/* Shadow stacks would refuse our `ret` and rt_sigreturn. glibc enables
 * them at startup and a thread inherits its creator's, so the main
 * thread's status speaks for the process. */
static bool has_shadow_stack(const struct bgs_target *t)
{
	char path[64], *text, *line;
	bool shstk = false;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)t->pid);
	if (bgs_target_slurp(path, &text, NULL))
		return false;
	line = strstr(text, "x86_Thread_features:");
	if (line) {
		line[strcspn(line, "\n")] = '\0';
		shstk = strstr(line, "shstk") != NULL;
	}
	free(text);
	return shstk;
}

int bgs_target_inject_prepare(struct bgs_target *t)
{
	char path[64], *maps;
	uint8_t *buf;
	int err;

	if (gadgets_intact(t))
		return 0;
	t->gadget_syscall = t->gadget_sigret = 0;
	if (has_shadow_stack(t))
		return bgs_target_fail(t, -EOPNOTSUPP,
				       "process %d uses shadow "
				       "stacks (CET): syscall injection is not "
				       "supported",
				       (int)t->pid);
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)t->pid);
	err = bgs_target_slurp(path, &maps, NULL);
	if (err)
		return bgs_target_fail(t, -ESRCH, "process %d is gone",
				       (int)t->pid);
	buf = malloc(SCAN_CHUNK);
	if (buf)
		scan_maps(t, maps, buf);
	free(buf);
	free(maps);
	if (!buf)
		return -ENOMEM;
	if (!t->gadget_syscall || !t->gadget_sigret)
		return bgs_target_fail(t, -ENOTSUP,
				       "process %d has no "
				       "`syscall; ret` or rt_sigreturn code in "
				       "its executable mappings",
				       (int)t->pid);
	return 0;
}

/* ---- choosing a thread --------------------------------------------------- */

static bool in_syscall(const struct user_regs_struct *r)
{
	return (int64_t)r->orig_rax >= 0;
}

static bool restarting(const struct user_regs_struct *r)
{
	const int64_t rax = (int64_t)r->rax;

	return in_syscall(r) &&
	       (rax == -ERESTARTSYS || rax == -ERESTARTNOINTR ||
		rax == -ERESTARTNOHAND || rax == -ERESTART_RESTARTBLOCK);
}

/* Waits that swap the signal mask in for their duration (see DESIGN 4). */
static bool swaps_mask(const struct user_regs_struct *r)
{
	if (!restarting(r))
		return false;
	switch (r->orig_rax) {
	case SYS_rt_sigsuspend:
		return true;
	case SYS_ppoll:
		return r->r10 != 0;
	case SYS_pselect6:
		return r->r9 != 0;
	case SYS_epoll_pwait:
	case SYS_epoll_pwait2:
		return r->r8 != 0;
	default:
		return false;
	}
}

/* Higher is better, < 0 unusable. Threads blocked in a restartable syscall
 * are idle anyway; on the frame path a timed wait would start over, and a
 * wait already restarted once would end in EINTR. */
static int score(const struct user_regs_struct *r)
{
	if (r->cs != USER64_CS || swaps_mask(r))
		return -1;
	if (in_syscall(r) && r->orig_rax == SYS_restart_syscall)
		return 0;
	if (in_syscall(r) && (int64_t)r->rax == -ERESTART_RESTARTBLOCK)
		return 1;
	return restarting(r) ? 3 : 2;
}

/* Bytes of writable mapping below @rsp, in the mapping that holds it. */
static uint64_t stack_room(const char *maps, uint64_t rsp)
{
	const char *line = maps;

	while (line && *line) {
		unsigned long long s, e;
		char perms[8];

		if (sscanf(line, "%llx-%llx %7s", &s, &e, perms) == 3 &&
		    rsp > s && rsp <= e)
			return perms[1] == 'w' ? rsp - s : 0;
		line = strchr(line, '\n');
		line = line ? line + 1 : NULL;
	}
	return 0;
}

static int try_thread(const struct bgs_target_thread *th, const char *maps,
		      struct user_regs_struct *r, uint64_t *room)
{
	if (th->stop != BGS_TSTOP_INTERRUPT ||
	    ptrace(PTRACE_GETREGS, th->tid, NULL, r))
		return -1;
	*room = stack_room(maps, r->rsp);
	return *room < MIN_ROOM ? -1 : score(r);
}

static int choose(struct inj *in, pid_t want, const char *maps)
{
	struct bgs_target *t = in->t;
	struct user_regs_struct r;
	uint64_t room;
	int best = -1;
	size_t i;

	for (i = 0; i < t->nthreads; i++) {
		const struct bgs_target_thread *th = &t->threads[i];
		int s;

		if (want && th->tid != want)
			continue;
		s = try_thread(th, maps, &r, &room);
		if (s > best) {
			best = s;
			in->tid = th->tid;
			in->saved = r;
			in->room = room;
		}
	}
	if (best >= 0)
		return 0;
	if (want)
		return bgs_target_fail(t, -EBUSY,
				       "thread %d of process %d "
				       "cannot run injected calls (not "
				       "interrupt-stopped, 32-bit, short stack "
				       "or a signal-mask wait)",
				       (int)want, (int)t->pid);
	return bgs_target_fail(t, -EBUSY,
			       "no thread of process %d can run "
			       "injected calls (each is 32-bit, has no stack "
			       "room, or waits in sigsuspend/ppoll/pselect "
			       "with a signal mask)",
			       (int)t->pid);
}

/* ---- the restore frame --------------------------------------------------- */

/* What the kernel's syscall-restart logic would make of @r when no signal
 * handler runs (arch/x86/kernel/signal.c arch_do_signal_or_restart), as far
 * as a signal frame can say it (DESIGN 3). */
static void resume_regs(struct user_regs_struct *r)
{
	if (!restarting(r))
		return;
	if (r->orig_rax == SYS_restart_syscall) {
		r->rax = (uint64_t)-EINTR;
		return;
	}
	r->rax = r->orig_rax;
	r->rip -= 2;
}

static void fill_sigcontext(struct ksigcontext *sc,
			    const struct user_regs_struct *r)
{
	sc->r8 = r->r8;
	sc->r9 = r->r9;
	sc->r10 = r->r10;
	sc->r11 = r->r11;
	sc->r12 = r->r12;
	sc->r13 = r->r13;
	sc->r14 = r->r14;
	sc->r15 = r->r15;
	sc->di = r->rdi;
	sc->si = r->rsi;
	sc->bp = r->rbp;
	sc->bx = r->rbx;
	sc->dx = r->rdx;
	sc->ax = r->rax;
	sc->cx = r->rcx;
	sc->sp = r->rsp;
	sc->ip = r->rip;
	sc->flags = r->eflags;
	sc->cs = (uint16_t)r->cs;
	sc->ss = (uint16_t)r->ss;
}

/* The thread's FPU/AVX state in signal-frame layout: the ptrace xsave
 * image plus the software bytes and trailing magic the kernel checks
 * (check_xstate_in_sigframe). Returns its size, 512 if only the legacy
 * fxsave area could be had (*@xstate false), or -errno. */
static int64_t read_fpu(struct inj *in, bool *xstate)
{
	struct bgs_target *t = in->t;
	struct iovec iov = { t->xbuf, XBUF_SIZE };
	uint8_t *x = t->xbuf;
	uint32_t sw[12] = { 0 };
	uint64_t xcr0;

	*xstate = ptrace(PTRACE_GETREGSET, in->tid, (void *)NT_X86_XSTATE,
			 &iov) == 0 &&
		  iov.iov_len > 576;
	if (!*xstate) {
		iov.iov_len = 512;
		if (ptrace(PTRACE_GETREGSET, in->tid, (void *)NT_PRFPREG, &iov))
			return -errno;
		memset(x + SW_BYTES_OFF, 0, sizeof(sw));
		return 512;
	}
	memcpy(&xcr0, x + SW_BYTES_OFF, sizeof(xcr0));
	sw[0] = FP_XSTATE_MAGIC1;
	sw[1] = (uint32_t)iov.iov_len + 4;   /* extended_size */
	memcpy(&sw[2], &xcr0, sizeof(xcr0)); /* xfeatures */
	sw[4] = (uint32_t)iov.iov_len;	     /* xstate_size */
	memcpy(x + SW_BYTES_OFF, sw, sizeof(sw));
	sw[0] = FP_XSTATE_MAGIC2;
	memcpy(x + iov.iov_len, &sw[0], 4);
	return (int64_t)iov.iov_len + 4;
}

static void fill_frame(const struct inj *in, struct kframe *f, uint64_t fp,
		       bool xstate)
{
	struct user_regs_struct r = in->saved;

	memset(f, 0, sizeof(*f));
	resume_regs(&r);
	f->pretcode = in->t->gadget_sigret;
	f->uc_flags = (xstate ? UC_FP_XSTATE : 0) | UC_SIGCONTEXT_SS |
		      UC_STRICT_RESTORE_SS;
	/* An invalid ss_flags makes rt_sigreturn's sigaltstack update fail
	 * (silently), so the thread keeps the alternate stack it has. */
	f->uc_stack.ss_flags = 3;
	fill_sigcontext(&f->uc_mcontext, &r);
	f->uc_mcontext.fpstate = fp;
	f->uc_sigmask = in->mask;
}

static int write_frame(struct inj *in)
{
	struct bgs_target *t = in->t;
	const uint64_t top = (in->saved.rsp - RED_ZONE) & ~63ULL;
	struct kframe f;
	uint64_t fp;
	bool xstate;
	int64_t fplen = read_fpu(in, &xstate);
	int err;

	if (fplen < 0)
		return bgs_target_fail(t, (int)fplen,
				       "reading the FPU state of "
				       "thread %d: %s",
				       (int)in->tid, strerror((int)-fplen));
	in->data = top - DATA_SIZE;
	fp = (in->data - (uint64_t)fplen) & ~63ULL;
	in->frame = (fp - sizeof(f)) & ~15ULL;
	if (in->saved.rsp - in->frame > in->room)
		return bgs_target_fail(t, -EBUSY,
				       "thread %d has no stack room "
				       "for injected calls",
				       (int)in->tid);
	fill_frame(in, &f, fp, xstate);
	err = bgs_target_write(t, fp, t->xbuf, (size_t)fplen);
	if (!err)
		err = bgs_target_write(t, in->frame, &f, sizeof(f));
	return err;
}

/* ---- stepping the thread ------------------------------------------------- */

static int gone(struct inj *in)
{
	in->live = false;
	return bgs_target_fail(in->t, -ESRCH,
			       "process %d went away during an "
			       "injected syscall",
			       (int)in->t->pid);
}

/* Resume with @req and wait for the next stop. Returns the stop status,
 * or -errno. */
static int resume_wait(struct inj *in, int req)
{
	int st, r;

	if (ptrace(req, in->tid, NULL, NULL))
		return errno == ESRCH ? gone(in) : -errno;
	r = bgs_target_wait(in->tid, &st, STEP_TIMEOUT_MS);
	if (r == 0)
		return bgs_target_fail(in->t, -ETIMEDOUT,
				       "thread %d did not "
				       "come back from an injected syscall",
				       (int)in->tid);
	if (r < 0 || !WIFSTOPPED(st))
		return gone(in);
	return st;
}

/* Stops that are not the one awaited: a group stop passes, a SIGSTOP is
 * kept for later, a fault signal means the injected code failed. */
static int other_stop(struct inj *in, int st)
{
	const int sig = WSTOPSIG(st);

	if ((st >> 16) != 0 || sig == (SIGTRAP | 0x80))
		return 0;
	if (sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN ||
	    sig == SIGTTOU) {
		in->stop_sig = sig;
		return 0;
	}
	return bgs_target_fail(in->t, -EFAULT,
			       "injected code faulted in "
			       "thread %d (signal %d)",
			       (int)in->tid, sig);
}

static int syscall_stop(struct inj *in)
{
	for (;;) {
		const int st = resume_wait(in, PTRACE_SYSCALL);
		int err;

		if (st < 0)
			return st;
		if ((st >> 16) == 0 && WSTOPSIG(st) == (SIGTRAP | 0x80))
			return 0;
		err = other_stop(in, st);
		if (err)
			return err;
	}
}

static int interrupt_stop(struct inj *in)
{
	int req = PTRACE_CONT;

	if (ptrace(PTRACE_INTERRUPT, in->tid, NULL, NULL))
		return gone(in);
	for (;;) {
		const int st = resume_wait(in, req);

		if (st < 0)
			return st;
		if ((st >> 16) == PTRACE_EVENT_STOP)
			return 0;
		other_stop(in, st); /* suppressed: it was ours */
	}
}

static int set_mask(struct inj *in, uint64_t mask)
{
	if (ptrace(PTRACE_SETSIGMASK, in->tid, (void *)sizeof(mask), &mask))
		return errno == ESRCH ? gone(in) : -errno;
	return 0;
}

/* At the syscall-entry stop: the thread must be about to run exactly the
 * call we set up, at our `syscall`. Another process of the target's user
 * may write the target's memory (a /proc/PID/mem it opened earlier), so
 * the bytes at the gadget may have changed since they were checked; a
 * different call is skipped and the injection fails. */
static int entry_check(struct inj *in, const struct user_regs_struct *want)
{
	struct user_regs_struct r;

	if (ptrace(PTRACE_GETREGS, in->tid, NULL, &r))
		return gone(in);
	if (r.orig_rax == want->rax && r.rip == want->rip + 2 &&
	    r.rdi == want->rdi && r.rsi == want->rsi && r.rdx == want->rdx &&
	    r.r10 == want->r10 && r.r8 == want->r8 && r.r9 == want->r9)
		return 0;
	r.orig_rax = (uint64_t)-1;
	if (ptrace(PTRACE_SETREGS, in->tid, NULL, &r))
		return gone(in);
	return bgs_target_fail(in->t, -EFAULT,
			       "thread %d of process %d entered another "
			       "syscall than the one injected (its code "
			       "changed under us)",
			       (int)in->tid, (int)in->t->pid);
}

static int inj_call(struct inj *in, long nr, const uint64_t a[6], int64_t *ret)
{
	struct user_regs_struct r = in->saved;
	int err;

	r.rip = in->t->gadget_syscall;
	r.rsp = in->frame;
	r.rax = (uint64_t)nr;
	r.orig_rax = (uint64_t)-1; /* no syscall-restart on the way out */
	r.rdi = a[0];
	r.rsi = a[1];
	r.rdx = a[2];
	r.r10 = a[3];
	r.r8 = a[4];
	r.r9 = a[5];
	if (ptrace(PTRACE_SETREGS, in->tid, NULL, &r))
		return errno == ESRCH ? gone(in) : -errno;
	if (!in->live) {
		in->live = true;
		if ((err = set_mask(in, NO_SIGNALS)))
			return err;
	}
	bgs_target_at(in->t, BGS_TSTAGE_REGS_SET);
	if ((err = syscall_stop(in)) || (err = entry_check(in, &r)))
		return err;
	bgs_target_at(in->t, BGS_TSTAGE_SYSCALL_ENTRY);
	if ((err = syscall_stop(in)))
		return err;
	if (ptrace(PTRACE_GETREGS, in->tid, NULL, &r))
		return gone(in);
	*ret = (int64_t)r.rax;
	bgs_target_at(in->t, BGS_TSTAGE_SYSCALL_EXIT);
	return 0;
}

static int call(struct inj *in, long nr, uint64_t a0, uint64_t a1, uint64_t a2,
		uint64_t a3, int64_t *ret)
{
	const uint64_t a[6] = { a0, a1, a2, a3, 0, 0 };

	return inj_call(in, nr, a, ret);
}

/* Back to the interrupt stop with the thread's own registers and mask. */
static int inj_end(struct inj *in)
{
	int err;

	if (!in->live)
		return 0;
	err = set_mask(in, in->mask);
	if (!err)
		err = interrupt_stop(in);
	if (!err && ptrace(PTRACE_SETREGS, in->tid, NULL, &in->saved))
		err = errno == ESRCH ? gone(in) : -errno;
	if (err)
		return err;
	in->live = false;
	bgs_target_at(in->t, BGS_TSTAGE_RESTORED);
	if (in->stop_sig)
		syscall(SYS_tgkill, in->t->pid, in->tid, in->stop_sig);
	return 0;
}

static int inj_begin(struct inj *in, struct bgs_target *t, pid_t tid)
{
	char path[64], *maps;
	int err;

	memset(in, 0, sizeof(*in));
	in->t = t;
	in->pidfd = t->pidfd;
	if (!t->nthreads || t->tracer != (pid_t)syscall(SYS_gettid))
		return bgs_target_fail(t, -EINVAL,
				       "process %d is not frozen "
				       "by this thread",
				       (int)t->pid);
	if (!t->xbuf && !(t->xbuf = malloc(XBUF_SIZE + 64)))
		return -ENOMEM;
	if ((err = bgs_target_inject_prepare(t)))
		return err;
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)t->pid);
	if (bgs_target_slurp(path, &maps, NULL))
		return bgs_target_fail(t, -ESRCH, "process %d is gone",
				       (int)t->pid);
	err = choose(in, tid, maps);
	free(maps);
	if (err)
		return err;
	if (ptrace(PTRACE_GETSIGMASK, in->tid, (void *)sizeof(in->mask),
		   &in->mask))
		return gone(in);
	if ((err = write_frame(in)))
		return err;
	bgs_target_at(t, BGS_TSTAGE_FRAME_WRITTEN);
	return 0;
}

int bgs_target_syscall(struct bgs_target *t, pid_t tid, long nr,
		       const uint64_t args[6], int64_t *ret)
{
	struct inj in;
	int err, end;

	err = inj_begin(&in, t, tid);
	if (err)
		return err;
	err = inj_call(&in, nr, args, ret);
	end = inj_end(&in);
	return err ? err : end;
}

/* ---- the uffd ------------------------------------------------------------ */

/* Descriptors put into the target's own table (the fallback path), to
 * close again. */
struct tfds {
	int fd[4];
	int n;
};

static int injected_err(struct inj *in, const char *what, int64_t r)
{
	return bgs_target_fail(in->t, (int)r,
			       "injected %s in process %d "
			       "failed: %s",
			       what, (int)in->t->pid, strerror((int)-r));
}

static int send_fd(int sock, int fd)
{
	char byte = 0, ctl[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { &byte, 1 };
	struct msghdr mh = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = ctl,
		.msg_controllen = sizeof(ctl),
	};
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);

	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	return sendmsg(sock, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) == 1 ? 0
								    : -errno;
}

/* The scratch data area, as the target sees it. */
struct recv_area {
	int sv[2];
	char byte;
	struct iovec iov;
	struct msghdr mh;
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl;
};

_Static_assert(sizeof(struct recv_area) <= DATA_SIZE, "fits the scratch");

static int getfd(struct inj *in, int tfd, int *fd)
{
	*fd = (int)syscall(SYS_pidfd_getfd, in->pidfd, tfd, 0);
	if (*fd < 0)
		return bgs_target_fail(in->t, -errno,
				       "pidfd_getfd of process "
				       "%d: %s",
				       (int)in->t->pid, strerror(errno));
	return 0;
}

static int not_given(struct inj *in)
{
	return bgs_target_fail(in->t, -EPROTO,
			       "the helper thread of process %d reported "
			       "descriptors it was not given",
			       (int)in->t->pid);
}

/* socketpair in the target; one end comes here and carries @devfd in.
 * With @want, the numbers the target's memory reports must be those:
 * checked before anything is sent. */
static int pass_in(struct inj *in, int sv[2], const int *want, int devfd)
{
	const uint64_t a = in->data;
	int64_t r;
	int err, s0;

	err = call(in, SYS_socketpair, AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0,
		   a + offsetof(struct recv_area, sv), &r);
	if (err || r < 0)
		return err ? err : injected_err(in, "socketpair()", r);
	if ((err = bgs_target_read(in->t, a, sv, 2 * sizeof(int))))
		return err;
	if (want && (sv[0] != want[0] || sv[1] != want[1]))
		return not_given(in);
	if ((err = getfd(in, sv[0], &s0)))
		return err;
	err = send_fd(s0, devfd);
	close(s0);
	return err ? bgs_target_fail(in->t, err, "sendmsg(SCM_RIGHTS): %s",
				     strerror(-err))
		   : 0;
}

static int recv_in(struct inj *in, int sock, int *tdev)
{
	const uint64_t a = in->data;
	struct recv_area ra;
	struct cmsghdr *c;
	int64_t r;
	int err;

	memset(&ra, 0, sizeof(ra));
	ra.iov.iov_base =
		(void *)(uintptr_t)(a + offsetof(struct recv_area, byte));
	ra.iov.iov_len = 1;
	ra.mh.msg_iov =
		(void *)(uintptr_t)(a + offsetof(struct recv_area, iov));
	ra.mh.msg_iovlen = 1;
	ra.mh.msg_control =
		(void *)(uintptr_t)(a + offsetof(struct recv_area, ctl));
	ra.mh.msg_controllen = sizeof(ra.ctl.buf);
	if ((err = bgs_target_write(in->t, a, &ra, sizeof(ra))))
		return err;
	err = call(in, SYS_recvmsg, (uint64_t)sock,
		   a + offsetof(struct recv_area, mh),
		   MSG_CMSG_CLOEXEC | MSG_DONTWAIT, 0, &r);
	if (err || r < 0)
		return err ? err : injected_err(in, "recvmsg()", r);
	if ((err = bgs_target_read(in->t, a, &ra, sizeof(ra))))
		return err;
	ra.mh.msg_control = ra.ctl.buf; /* to walk our copy */
	c = CMSG_FIRSTHDR(&ra.mh);
	if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
	    c->cmsg_len != CMSG_LEN(sizeof(int)))
		return bgs_target_fail(in->t, -EPROTO,
				       "no descriptor arrived "
				       "in process %d",
				       (int)in->t->pid);
	memcpy(tdev, CMSG_DATA(c), sizeof(int));
	return 0;
}

static int open_dev(struct inj *in, int *devfd)
{
	*devfd = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (*devfd >= 0)
		return 0;
	return bgs_target_fail(in->t, -EPERM,
			       "process %d may not "
			       "create a userfaultfd (EPERM: "
			       "vm.unprivileged_userfaultfd=0) and "
			       "/dev/userfaultfd cannot be opened: %s",
			       (int)in->t->pid, strerror(errno));
}

static bool is_uffd(int fd)
{
	char path[64], link[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0)
		return false;
	link[n] = '\0';
	return !strcmp(link, "anon_inode:[userfaultfd]");
}

static int take_uffd(struct inj *in, int ufd_t, int *fd)
{
	int err = getfd(in, ufd_t, fd);

	if (err)
		return err;
	bgs_target_at(in->t, BGS_TSTAGE_UFFD_TAKEN);
	if (is_uffd(*fd))
		return 0;
	close(*fd);
	*fd = -1;
	return bgs_target_fail(in->t, -EPROTO,
			       "descriptor %d of process %d "
			       "is not the uffd just made",
			       ufd_t, (int)in->t->pid);
}

/* Never UFFD_USER_MODE_ONLY: it turns kernel writes into EFAULT. */
static int inject_userfaultfd(struct inj *in, int64_t *ufd)
{
	return call(in, SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK, 0, 0, 0, ufd);
}

static int made(struct inj *in, const struct bgs_target_uffd *out, int64_t ufd)
{
	if (ufd < 0)
		return injected_err(in,
				    out->via_dev ? "USERFAULTFD_IOC_NEW"
						 : "userfaultfd()",
				    ufd);
	bgs_target_at(in->t, BGS_TSTAGE_UFFD_MADE);
	return 0;
}

/* ---- the uffd made in the target's own fd table (before Linux 6.9) ------- */

/* Close what the injected calls made in the target's table. One that
 * cannot be closed (the call refused at its entry check, or failing) is
 * an error: a uffd left in the target would be the target's to use. */
static int close_injected(struct inj *in, struct tfds *tf)
{
	int err = 0;
	int64_t r;

	while (tf->n > 0 && in->live) {
		const int fd = tf->fd[--tf->n];
		const int e = call(in, SYS_close, (uint64_t)fd, 0, 0, 0, &r);

		if (!err && (e || r < 0))
			err = e ? e
				: bgs_target_fail(in->t, (int)r,
						  "close(%d) in process %d: %s",
						  fd, (int)in->t->pid,
						  strerror((int)-r));
	}
	return err;
}

/* Only for a target of bgsnap's own user: the descriptor gives it nothing
 * that user could not open itself (see DESIGN, "Descriptors"). */
static int shared_via_dev(struct inj *in, struct tfds *tf, int64_t *ufd)
{
	int devfd, sv[2], tdev = -1, err;

	if ((err = open_dev(in, &devfd)))
		return err;
	err = pass_in(in, sv, NULL, devfd);
	close(devfd);
	if (err)
		return err;
	tf->fd[tf->n++] = sv[0];
	tf->fd[tf->n++] = sv[1];
	if ((err = recv_in(in, sv[1], &tdev)))
		return err;
	tf->fd[tf->n++] = tdev;
	return call(in, SYS_ioctl, (uint64_t)tdev, USERFAULTFD_IOC_NEW,
		    O_CLOEXEC | O_NONBLOCK, 0, ufd);
}

static int make_uffd_shared(struct inj *in, bool privileged,
			    struct bgs_target_uffd *out)
{
	struct tfds tf = { .n = 0 };
	int64_t ufd;
	int err, end;

	err = inject_userfaultfd(in, &ufd);
	if (!err && (ufd == -EPERM || ufd == -ENOSYS)) {
		out->via_dev = true;
		err = privileged ? bgs_target_fail(in->t, -EPERM,
						   "process %d may not create "
						   "a userfaultfd, and handing "
						   "it /dev/userfaultfd safely "
						   "needs Linux 6.9 "
						   "(PIDFD_THREAD)",
						   (int)in->t->pid)
				 : shared_via_dev(in, &tf, &ufd);
	}
	if (!err && !(err = made(in, out, ufd))) {
		tf.fd[tf.n++] = (int)ufd;
		err = take_uffd(in, (int)ufd, &out->fd);
	}
	end = close_injected(in, &tf);
	if (!err && end) {
		close(out->fd); /* the target may hold the uffd still */
		out->fd = -1;
		err = end;
	}
	return err;
}

/* ---- the uffd made in a helper thread (Linux 6.9+) ----------------------- */

#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL
#endif
#define PG 4096UL
/* A thread of the target with a table of descriptors of its own. */
#define HELPER_CLONE                                                           \
	(CLONE_VM | CLONE_FS | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM)

struct helper {
	struct inj h;		/* the session on the helper thread */
	pid_t tid;		/* 0 once it has exited */
	uint64_t page;		/* its page: scratch data and its frames */
	uint64_t own_frame;	/* the parent thread's frame */
	uint64_t restore_frame; /* below it: dumpable back, then own_frame */
	bool privileged;	/* bgsnap may do more than the target's user */
	bool guarded;		/* no other process of the user can reach it */
	bool undumpable;	/* we made the target non-dumpable */
};

static bool have_thread_pidfd(void)
{
	static int have = -1;

	if (have < 0) {
		const int fd =
			(int)syscall(SYS_pidfd_open, (pid_t)syscall(SYS_gettid),
				     PIDFD_THREAD);

		have = fd >= 0;
		if (fd >= 0)
			close(fd);
	}
	return have;
}

/* CAP_SYS_PTRACE: bgsnap can reach the target whatever its dumpable flag,
 * and may hold privileges the target's user has not. Without it bgsnap
 * runs as the target's own user. */
static bool privileged(void)
{
	char *text, *line;
	unsigned long long eff = 0;

	if (bgs_target_slurp("/proc/self/status", &text, NULL))
		return true;
	line = strstr(text, "CapEff:");
	if (line)
		eff = strtoull(line + 7, NULL, 16);
	free(text);
	return (eff >> 19) & 1; /* CAP_SYS_PTRACE */
}

static bool same_userns(pid_t pid)
{
	char path[64];
	struct stat a, b;

	snprintf(path, sizeof(path), "/proc/%d/ns/user", (int)pid);
	return stat(path, &a) == 0 && stat("/proc/self/ns/user", &b) == 0 &&
	       a.st_ino == b.st_ino && a.st_dev == b.st_dev;
}

/* The @n lowest free numbers in the helper's table: where the kernel puts
 * the next descriptors, as only the helper's own calls change its table
 * (the numbers the target's memory reports are checked against these). */
static int lowest_free(struct helper *hp, int *fds, int n)
{
	char path[64];
	struct dirent *de;
	bool *used;
	size_t cap = 4096;
	int k = 0, i;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/fd", (int)hp->h.t->pid,
		 (int)hp->tid);
	if (!(d = opendir(path)))
		return bgs_target_fail(hp->h.t, -ESRCH, "process %d is gone",
				       (int)hp->h.t->pid);
	used = calloc(cap, sizeof(*used));
	while (used && (de = readdir(d))) {
		const long fd = strtol(de->d_name, NULL, 10);

		if (de->d_name[0] >= '0' && de->d_name[0] <= '9' && fd >= 0 &&
		    (size_t)fd < cap)
			used[fd] = true;
	}
	closedir(d);
	if (!used)
		return -ENOMEM;
	for (i = 0; (size_t)i < cap && k < n; i++)
		if (!used[i])
			fds[k++] = i;
	free(used);
	return k == n ? 0
		      : bgs_target_fail(hp->h.t, -EMFILE,
					"process %d has no free "
					"descriptor below %zu",
					(int)hp->h.t->pid, cap);
}

#define KFRAME sizeof(struct kframe)

/* A frame that `ret` pops into rt_sigreturn: the thread calls @nr(@a0,
 * @a1), signals blocked, then `ret`s to the frame at @next. Chained, they
 * are what a thread runs if bgsnap dies while it holds injected
 * registers. */
static int write_call_frame(struct inj *in, uint64_t at, long nr, uint64_t a0,
			    uint64_t a1, uint64_t next)
{
	struct kframe f;

	memset(&f, 0, sizeof(f));
	f.pretcode = in->t->gadget_sigret;
	f.uc_flags = UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS;
	f.uc_stack.ss_flags = 3; /* as in fill_frame */
	f.uc_mcontext.ip = in->t->gadget_syscall;
	f.uc_mcontext.ax = (uint64_t)nr;
	f.uc_mcontext.di = a0;
	f.uc_mcontext.si = a1;
	f.uc_mcontext.sp = next;
	f.uc_mcontext.flags = in->saved.eflags;
	f.uc_mcontext.cs = (uint16_t)in->saved.cs;
	f.uc_mcontext.ss = (uint16_t)in->saved.ss;
	f.uc_sigmask = NO_SIGNALS;
	return bgs_target_write(in->t, at, &f, sizeof(f));
}

/* Where the parent thread's injected calls return to: through a frame
 * that makes the target dumpable again (@on), or straight to its own. */
static int parent_restores(struct inj *in, struct helper *hp, bool on)
{
	struct user_regs_struct r;

	in->frame = on ? hp->restore_frame : hp->own_frame;
	if (ptrace(PTRACE_GETREGS, in->tid, NULL, &r))
		return gone(in);
	r.rsp = in->frame;
	return ptrace(PTRACE_SETREGS, in->tid, NULL, &r) ? gone(in) : 0;
}

/* The target may make a kernel-fault uffd itself (its CAP_SYS_PTRACE, or
 * vm.unprivileged_userfaultfd=1): what it gets is its own right, and it
 * needs no guarding. A sysctl turned off meanwhile is caught later (see
 * helper_via_dev). */
static bool may_userfaultfd(pid_t pid)
{
	char path[64], *text, *line;
	unsigned long long eff = 0;
	int fd, n;
	char c = '0';

	fd = open("/proc/sys/vm/unprivileged_userfaultfd",
		  O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = (int)read(fd, &c, 1);
		close(fd);
		if (n == 1 && c == '1')
			return true;
	}
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if (bgs_target_slurp(path, &text, NULL))
		return false;
	line = strstr(text, "CapEff:");
	if (line)
		eff = strtoull(line + 7, NULL, 16);
	free(text);
	return (eff >> 19) & 1; /* CAP_SYS_PTRACE */
}

/* Non-dumpable, no process without CAP_SYS_PTRACE can pidfd_getfd from
 * the target, open its /proc/PID/fd or its memory: set before the helper
 * exists, so every check on the helper sees it (DESIGN.md, "Saving another
 * user's process"). Killed from here until the helper exists, the parent
 * thread makes it dumpable again on its way back (no descriptor of ours
 * exists yet anywhere). */
static int lower_dumpable(struct inj *in, struct helper *hp)
{
	int64_t r;
	int err;

	hp->own_frame = in->frame;
	hp->guarded = !hp->privileged;
	if (hp->guarded || may_userfaultfd(in->t->pid))
		return 0;
	err = call(in, SYS_prctl, PR_GET_DUMPABLE, 0, 0, 0, &r);
	if (err || r < 0)
		return err ? err : injected_err(in, "prctl()", r);
	hp->guarded = r != 1; /* 0 or 2: already out of the user's reach */
	if (hp->guarded)
		return 0;
	hp->restore_frame = (in->frame - KFRAME) & ~15ULL;
	if (in->saved.rsp - hp->restore_frame > in->room)
		return bgs_target_fail(in->t, -EBUSY,
				       "thread %d has no stack room "
				       "for injected calls",
				       (int)in->tid);
	err = write_call_frame(in, hp->restore_frame, SYS_prctl,
			       PR_SET_DUMPABLE, 1, in->frame);
	if (!err)
		err = parent_restores(in, hp, true);
	if (!err)
		err = call(in, SYS_prctl, PR_SET_DUMPABLE, 0, 0, 0, &r);
	if (!err && r < 0)
		err = injected_err(in, "prctl(PR_SET_DUMPABLE)", r);
	hp->guarded = hp->undumpable = !err;
	return err;
}

static int helper_map(struct inj *in, struct helper *hp)
{
	const uint64_t a[6] = { 0,
				PG,
				PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS,
				(uint64_t)-1,
				0 };
	int64_t r;
	int err = inj_call(in, SYS_mmap, a, &r);

	if (err || (r < 0 && r > -4096))
		return err ? err : injected_err(in, "mmap()", r);
	hp->page = (uint64_t)r;
	return 0;
}

/* What the helper runs if bgsnap dies, on its page: close every
 * descriptor of its own table, make the target dumpable again if we
 * lowered it, exit. Returns the first frame (its stack pointer). */
static int helper_frames(struct inj *in, struct helper *hp, uint64_t *first)
{
	const uint64_t f_exit = (hp->page + PG - KFRAME) & ~15ULL;
	const uint64_t f_dump = (f_exit - KFRAME) & ~15ULL;
	const uint64_t f_close = (f_dump - KFRAME) & ~15ULL;
	int err;

	err = write_call_frame(in, f_exit, SYS_exit, 0, 0, f_exit);
	if (!err)
		err = write_call_frame(in, f_dump, SYS_prctl, PR_SET_DUMPABLE,
				       1, f_exit);
	if (!err)
		err = write_call_frame(in, f_close, SYS_close_range, 0, ~0U,
				       hp->undumpable ? f_dump : f_exit);
	*first = f_close;
	return err;
}

/* The new thread starts in a ptrace stop (TRACECLONE): adopt it. */
static int helper_adopt(struct inj *in, struct helper *hp, uint64_t frame)
{
	struct inj *h = &hp->h;
	int st;

	if (bgs_target_wait(hp->tid, &st, STEP_TIMEOUT_MS) <= 0 ||
	    !WIFSTOPPED(st) || (st >> 16) != PTRACE_EVENT_STOP)
		return bgs_target_fail(in->t, -ESRCH,
				       "the helper thread %d of process %d "
				       "did not stop",
				       (int)hp->tid, (int)in->t->pid);
	h->t = in->t;
	h->tid = hp->tid;
	h->mask = NO_SIGNALS;
	h->data = hp->page;
	h->frame = frame;
	h->live = true;
	if (ptrace(PTRACE_GETREGS, h->tid, NULL, &h->saved))
		return gone(h);
	h->pidfd = (int)syscall(SYS_pidfd_open, h->tid, PIDFD_THREAD);
	if (h->pidfd < 0)
		return bgs_target_fail(in->t, -errno, "pidfd_open(%d): %s",
				       (int)h->tid, strerror(errno));
	return 0;
}

static int helper_start(struct inj *in, struct helper *hp)
{
	uint64_t frame;
	int64_t r;
	int err;

	if ((err = lower_dumpable(in, hp)) || (err = helper_map(in, hp)) ||
	    (err = helper_frames(in, hp, &frame)))
		return err;
	err = call(in, SYS_clone, HELPER_CLONE, frame, 0, 0, &r);
	if (err || r <= 0)
		return err ? err : injected_err(in, "clone()", r);
	hp->tid = (pid_t)r;
	/* helper_end() makes it exit even if it is never adopted (the
	 * process exits meanwhile): it must know the process by then. */
	hp->h.t = in->t;
	/* From here the helper puts dumpable back if bgsnap dies, after
	 * closing what it holds; the parent must not do it before. */
	if (hp->undumpable && (err = parent_restores(in, hp, false)))
		return err;
	return helper_adopt(in, hp, frame);
}

/* The devfd reaches only the helper's table; every number it takes
 * there is known before the call that makes it. */
static int helper_via_dev(struct helper *hp, int64_t *ufd)
{
	struct inj *h = &hp->h;
	int devfd, sv[2], free_fd[3], tdev = -1, err;

	if (!hp->guarded)
		return bgs_target_fail(h->t, -EAGAIN,
				       "process %d could create a userfaultfd "
				       "when the save began and no longer "
				       "can (vm.unprivileged_userfaultfd "
				       "changed?); try again",
				       (int)h->t->pid);
	if (hp->privileged && !same_userns(h->t->pid))
		return bgs_target_fail(h->t, -EPERM,
				       "process %d may not create a "
				       "userfaultfd and runs in another user "
				       "namespace, whose owner could take "
				       "/dev/userfaultfd from it",
				       (int)h->t->pid);
	if ((err = lowest_free(hp, free_fd, 3)) || (err = open_dev(h, &devfd)))
		return err;
	err = pass_in(h, sv, free_fd, devfd);
	close(devfd);
	if (!err)
		err = recv_in(h, free_fd[1], &tdev);
	if (!err && tdev != free_fd[2])
		err = not_given(h);
	if (err)
		return err;
	return call(h, SYS_ioctl, (uint64_t)tdev, USERFAULTFD_IOC_NEW,
		    O_CLOEXEC | O_NONBLOCK, 0, ufd);
}

static int helper_uffd(struct helper *hp, struct bgs_target_uffd *out)
{
	struct inj *h = &hp->h;
	int64_t ufd;
	int err;

	err = inject_userfaultfd(h, &ufd);
	if (!err && (ufd == -EPERM || ufd == -ENOSYS)) {
		out->via_dev = true;
		err = helper_via_dev(hp, &ufd);
	}
	if (!err)
		err = made(h, out, ufd);
	return err ? err : take_uffd(h, (int)ufd, &out->fd);
}

/*
 * At a syscall-entry stop of the helper, make whatever it was about to
 * call exit(0) instead. The code it runs is the target's own text, which
 * the target's user may have rewritten under us (through a /proc/PID/mem
 * opened while the process was dumpable), and the helper still holds
 * root's descriptors: no call it makes from here on may be its own.
 */
static void force_exit(pid_t tid)
{
	struct __ptrace_syscall_info si;
	struct user_regs_struct r;

	if (ptrace(PTRACE_GET_SYSCALL_INFO, tid, sizeof(si), &si) <= 0 ||
	    si.op != PTRACE_SYSCALL_INFO_ENTRY ||
	    ptrace(PTRACE_GETREGS, tid, NULL, &r))
		return;
	r.orig_rax = SYS_exit;
	r.rdi = 0;
	ptrace(PTRACE_SETREGS, tid, NULL, &r);
}

#define HELPER_EXIT_MS 30000 /* then it runs code of the target's user */

/*
 * exit(2) in the helper: its table, and every descriptor in it, goes.
 * Every system call it enters on the way is made exit (force_exit). A
 * helper that reaches no system call at all for HELPER_EXIT_MS runs code
 * bgsnap did not put there; it may not be left running with root's
 * descriptors once bgsnap lets go, so the process is killed.
 */
static int helper_exit(struct helper *hp)
{
	struct inj *h = &hp->h;
	struct user_regs_struct r = h->saved;
	int st, i;

	r.rip = h->t->gadget_syscall;
	r.rsp = h->frame;
	r.rax = SYS_exit;
	r.orig_rax = (uint64_t)-1;
	r.rdi = 0;
	if (ptrace(PTRACE_SETREGS, hp->tid, NULL, &r) && errno != ESRCH)
		return -errno;
	for (i = 0; i < 8; i++) {
		if (ptrace(PTRACE_SYSCALL, hp->tid, NULL, NULL) &&
		    errno != ESRCH)
			return -errno;
		if (bgs_target_wait(hp->tid, &st, HELPER_EXIT_MS) <= 0) {
			kill(h->t->pid, SIGKILL);
			return bgs_target_fail(
				h->t, -ETIMEDOUT,
				"process %d was killed: its helper thread %d, "
				"holding bgsnap's userfaultfd, ran code bgsnap "
				"did not put there (was the process's memory "
				"rewritten during the save?)",
				(int)h->t->pid, (int)hp->tid);
		}
		if (WIFEXITED(st) || WIFSIGNALED(st)) {
			hp->tid = 0;
			return 0;
		}
		if (WIFSTOPPED(st) && WSTOPSIG(st) == (SIGTRAP | 0x80))
			force_exit(hp->tid);
	}
	return bgs_target_fail(h->t, -ETIMEDOUT,
			       "the helper thread %d of process %d did not "
			       "exit",
			       (int)hp->tid, (int)h->t->pid);
}

/* Helper gone, then its page, then dumpable back: in that order, so no
 * descriptor ever sits where the target's user can reach it. */
static int helper_end(struct inj *in, struct helper *hp)
{
	int64_t r;
	int err = 0;

	if (hp->h.pidfd > 0)
		close(hp->h.pidfd);
	if (hp->tid > 0 && (err = helper_exit(hp)))
		return err; /* the target stays non-dumpable */
	/* Helper gone: killed from here on, the parent puts dumpable back. */
	if (hp->undumpable && in->live && (err = parent_restores(in, hp, true)))
		return err;
	if (hp->page && in->live)
		err = call(in, SYS_munmap, hp->page, PG, 0, 0, &r);
	if (!err && hp->undumpable && in->live) {
		err = call(in, SYS_prctl, PR_SET_DUMPABLE, 1, 0, 0, &r);
		if (!err && r < 0)
			err = injected_err(in, "prctl(PR_SET_DUMPABLE)", r);
	}
	return err;
}

static int make_uffd_helper(struct inj *in, bool priv,
			    struct bgs_target_uffd *out)
{
	struct helper hp = { .privileged = priv };
	int err, end;

	err = helper_start(in, &hp);
	if (!err)
		err = helper_uffd(&hp, out);
	end = helper_end(in, &hp);
	return err ? err : end;
}

int bgs_target_inject_uffd(struct bgs_target *t, pid_t tid,
			   struct bgs_target_uffd *out)
{
	const uint64_t start = bgs_target_now_ns();
	const bool priv = privileged();
	struct inj in;
	int err, end;

	out->fd = -1;
	out->via_dev = false;
	out->tid = 0;
	err = inj_begin(&in, t, tid);
	if (err)
		return err;
	out->tid = in.tid;
	err = have_thread_pidfd() && !t->no_helper
		      ? make_uffd_helper(&in, priv, out)
		      : make_uffd_shared(&in, priv, out);
	if (!err)
		bgs_target_at(t, BGS_TSTAGE_UFFD_CLOSED);
	end = inj_end(&in);
	if (!err)
		err = end;
	if (err && out->fd >= 0) {
		close(out->fd);
		out->fd = -1;
	}
	t->inject_ns = bgs_target_now_ns() - start;
	return err;
}

#else /* !__x86_64__ */

int bgs_target_inject_prepare(struct bgs_target *t)
{
	return bgs_target_fail(t, -EOPNOTSUPP,
			       "syscall injection is "
			       "implemented for x86_64 only");
}

int bgs_target_syscall(struct bgs_target *t, pid_t tid, long nr,
		       const uint64_t args[6], int64_t *ret)
{
	(void)tid;
	(void)nr;
	(void)args;
	(void)ret;
	return bgs_target_inject_prepare(t);
}

int bgs_target_inject_uffd(struct bgs_target *t, pid_t tid,
			   struct bgs_target_uffd *out)
{
	(void)tid;
	out->fd = -1;
	return bgs_target_inject_prepare(t);
}

#endif
