/* SPDX-License-Identifier: MIT */
/*
 * Reading the owner's memory where it lies, without a crash if it goes.
 *
 * A save inside the owner's process can read the registered memory in
 * place: compress it straight from there, or memcpy it, instead of
 * process_vm_readv, whose page-by-page pinning and copy cost as much as
 * lz4 itself. The catch is that the owner may unmap that memory, or make
 * it PROT_NONE, while the copier reads it. The kernel tells the fault
 * thread of an unmap only after it happened (UFFD_EVENT_UNMAP), so the
 * copier's read would be a SIGSEGV, and a process killed by the library
 * meant to keep it running.
 *
 * So such reads run under a guard: a SIGSEGV and SIGBUS handler, installed
 * while any save that reads in place runs, turns a fault of a guarded
 * thread at an address inside its guarded range into a return of -EFAULT
 * from bgs_guard_run(). Every other fault goes to the handler that was
 * there before ours (or to the default action), as if we were not there.
 * The handler is async-signal-safe: it reads initial-exec thread-locals
 * and a fixed table of guarded threads keyed by thread id, and calls only
 * signal-safe functions; on the owner's threads it costs no system call.
 */
#include "snap_internal.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define GUARD_SLOTS 16 /* threads guarded at once: concurrent saves' copiers */
#define SLOT_BUSY   (-1) /* claimed, not yet armed */

struct guard_slot {
	_Atomic pid_t tid; /* 0: free; SLOT_BUSY; else armed for this thread */
	uintptr_t lo, hi;  /* the guarded range */
	sigjmp_buf *env;   /* where a fault inside it returns to */
};

static struct guard_slot slots[GUARD_SLOTS];

static pthread_mutex_t install_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned holders;

/* Per signal: the handler ours chains to, and whether someone installed
 * theirs over ours while it was held. Theirs may chain to ours, so ours
 * is then never put over theirs again (each would call the other for
 * ever on a fault that is neither's), unless theirs is gone (SIG_DFL,
 * SIG_IGN). */
struct chained {
	int sig;
	struct sigaction before;
	bool displaced;
};

static struct chained segv = { .sig = SIGSEGV }, bus = { .sig = SIGBUS };

/* A guarded thread's id, and whether it takes SIGSEGV and SIGBUS now
 * (initial-exec: the handler reads them without a call). */
static _Thread_local pid_t guarded_tid
	__attribute__((tls_model("initial-exec")));
static _Thread_local bool guarded __attribute__((tls_model("initial-exec")));

/* Not ours: do what would have happened without us. */
static void forward(int sig, siginfo_t *si, void *uc)
{
	const struct sigaction *b = sig == SIGSEGV ? &segv.before : &bus.before;

	if (b->sa_flags & SA_SIGINFO) {
		b->sa_sigaction(sig, si, uc);
		return;
	}
	if (b->sa_handler == SIG_IGN && si->si_code <= 0)
		return; /* sent, and ignored: as before us */
	if (b->sa_handler != SIG_DFL && b->sa_handler != SIG_IGN) {
		b->sa_handler(sig);
		return;
	}
	/* The default action: for a fault, returning runs the faulting
	 * instruction again, which now gets it; a signal sent by kill()
	 * is sent again. */
	signal(sig, SIG_DFL);
	if (si->si_code <= 0)
		raise(sig);
}

static void on_fault(int sig, siginfo_t *si, void *uc)
{
	const pid_t tid = guarded_tid; /* 0 on the owner's threads */
	const uintptr_t addr = (uintptr_t)si->si_addr;

	/* Sent to the process by kill() and given to a bgsnap thread: no
	 * handler of the owner's may run here (snap_util.c). Blocked here
	 * (until this thread's next guarded read), it is sent again, for
	 * one of the owner's threads. */
	if (si->si_code <= 0 && guarded) {
		sigset_t this;

		sigemptyset(&this);
		sigaddset(&this, sig);
		pthread_sigmask(SIG_BLOCK, &this, NULL);
		sigaddset(&((ucontext_t *)uc)->uc_sigmask, sig);
		guarded = false;
		kill(getpid(), sig);
		return;
	}
	for (size_t i = 0; tid && i < GUARD_SLOTS; i++) {
		struct guard_slot *g = &slots[i];

		if (atomic_load_explicit(&g->tid, memory_order_acquire) != tid)
			continue;
		if (si->si_code > 0 && addr >= g->lo && addr < g->hi)
			siglongjmp(*g->env, 1);
		break;
	}
	forward(sig, si, uc);
}

static bool is_ours(const struct sigaction *a)
{
	return (a->sa_flags & SA_SIGINFO) && a->sa_sigaction == on_fault;
}

static bool is_handler(const struct sigaction *a)
{
	return (a->sa_flags & SA_SIGINFO) ||
	       (a->sa_handler != SIG_DFL && a->sa_handler != SIG_IGN);
}

/* Put ours in front of what is there now, which it then chains to:
 * that is recorded before ours can run. */
static int install(struct chained *c)
{
	struct sigaction sa = { .sa_sigaction = on_fault,
				/* NODEFER: siglongjmp leaves no signal
				 * blocked, without saving the mask. */
				.sa_flags =
					SA_SIGINFO | SA_NODEFER | SA_ONSTACK };
	struct sigaction now;

	sigemptyset(&sa.sa_mask);
	if (sigaction(c->sig, NULL, &now))
		return -errno;
	if (is_ours(&now) || (c->displaced && is_handler(&now)))
		return 0;
	c->before = now;
	c->displaced = false;
	return sigaction(c->sig, &sa, NULL) ? -errno : 0;
}

/* Put back what ours chained to, unless someone installed theirs over
 * ours since: theirs may call ours, which goes on forwarding. */
static void uninstall(struct chained *c)
{
	struct sigaction now;

	if (!sigaction(c->sig, NULL, &now) && is_ours(&now))
		sigaction(c->sig, &c->before, NULL);
	else
		c->displaced = true;
}

int bgs_guard_hold(void)
{
	int ret = 0;

	pthread_mutex_lock(&install_lock);
	if (!holders) {
		ret = install(&segv);
		if (!ret) {
			ret = install(&bus);
			if (ret)
				uninstall(&segv);
		}
	}
	if (!ret)
		holders++;
	pthread_mutex_unlock(&install_lock);
	return ret;
}

void bgs_guard_release(void)
{
	pthread_mutex_lock(&install_lock);
	if (holders && !--holders) {
		uninstall(&segv);
		uninstall(&bus);
	}
	pthread_mutex_unlock(&install_lock);
}

static struct guard_slot *claim(void)
{
	for (size_t i = 0; i < GUARD_SLOTS; i++) {
		pid_t free_slot = 0;

		if (atomic_compare_exchange_strong(&slots[i].tid, &free_slot,
						   SLOT_BUSY))
			return &slots[i];
	}
	return NULL;
}

/*
 * bgsnap's threads start with every signal blocked (bgs_thread_start),
 * and the kernel kills a process whose thread faults with the fault's
 * signal blocked. A guarded thread takes these two, once; one that kill()
 * sent the process and the kernel gives it goes on to another thread
 * (on_fault).
 */
static pid_t guarded_thread(void)
{
	sigset_t faults;

	if (!guarded) {
		sigemptyset(&faults);
		sigaddset(&faults, SIGSEGV);
		sigaddset(&faults, SIGBUS);
		pthread_sigmask(SIG_UNBLOCK, &faults, NULL);
		guarded_tid = (pid_t)syscall(SYS_gettid);
		guarded = true;
	}
	return guarded_tid;
}

int bgs_guard_run(const void *at, size_t len, void (*fn)(void *arg), void *arg)
{
	const pid_t tid = guarded_thread();
	struct guard_slot *g = claim();
	sigjmp_buf env;

	if (!g)
		return -EAGAIN;
	g->lo = (uintptr_t)at;
	g->hi = (uintptr_t)at + len;
	g->env = &env;
	if (sigsetjmp(env, 0)) {
		atomic_store_explicit(&g->tid, 0, memory_order_release);
		return -EFAULT;
	}
	atomic_store_explicit(&g->tid, tid, memory_order_release);
	fn(arg);
	atomic_store_explicit(&g->tid, 0, memory_order_release);
	return 0;
}
