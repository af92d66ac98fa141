/* SPDX-License-Identifier: MIT */
/*
 * The guard under which a save reads its owner's memory in place: a read
 * that faults inside the guarded range (PROT_NONE, unmapped, past the end
 * of a memfd) comes back as -EFAULT, also on a thread that blocks every
 * signal, as bgsnap's threads do; every other fault reaches the handler
 * that was there before, and that handler is back once the guard goes,
 * unless another was installed over the guard's meanwhile.
 */
#include "snap_internal.h"
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PG 4096

struct copy {
	uint8_t *dst;
	const uint8_t *src;
	size_t len;
	bool done; /* the copy returned */
};

static void do_copy(void *arg)
{
	struct copy *c = arg;

	memcpy(c->dst, c->src, c->len);
	c->done = true;
}

static int guarded_copy(const uint8_t *src, size_t len, uint8_t *dst)
{
	struct copy c = { dst, src, len, false };
	const int ret = bgs_guard_run(src, len, do_copy, &c);

	assert_int_equal(ret == 0, c.done);
	return ret;
}

/* Three pages: readable, PROT_NONE, readable. */
static uint8_t *three_pages(void)
{
	uint8_t *p = mmap(NULL, 3 * PG, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	assert_true(p != MAP_FAILED);
	memset(p, 'a', 3 * PG);
	assert_int_equal(mprotect(p + PG, PG, PROT_NONE), 0);
	return p;
}

static void test_fault_in_range_returns(void **state)
{
	uint8_t *p = three_pages();
	uint8_t buf[3 * PG];

	(void)state;
	assert_int_equal(bgs_guard_hold(), 0);
	assert_int_equal(guarded_copy(p, PG, buf), 0);
	assert_int_equal(buf[PG - 1], 'a');
	assert_int_equal(guarded_copy(p, 3 * PG, buf), -EFAULT);
	assert_int_equal(guarded_copy(p + 2 * PG, PG, buf), 0);
	/* Unmapped: the same. */
	assert_int_equal(munmap(p, 3 * PG), 0);
	assert_int_equal(guarded_copy(p, PG, buf), -EFAULT);
	bgs_guard_release();
}

/* A guarded read past the end of a memfd: SIGBUS, not SIGSEGV. */
static void read_past_memfd_end(void)
{
	const int fd = memfd_create("guard", 0);
	uint8_t *p, buf[PG];

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 2 * PG), 0);
	p = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(p != MAP_FAILED);
	memset(p, 'b', 2 * PG);
	assert_int_equal(ftruncate(fd, PG), 0);
	assert_int_equal(guarded_copy(p, PG, buf), 0);
	assert_int_equal(guarded_copy(p + PG, PG, buf), -EFAULT);
	munmap(p, 2 * PG);
	close(fd);
}

static void test_bus_error_returns(void **state)
{
	(void)state;
	assert_int_equal(bgs_guard_hold(), 0);
	read_past_memfd_end();
	bgs_guard_release();
}

static void *raise_bus(void *arg)
{
	(void)arg;
	raise(SIGBUS);
	return NULL;
}

/* Ignored before the guard, a SIGBUS sent to one of the owner's threads
 * (not one that made guarded reads) stays ignored: the process lives. */
static void test_ignored_stays_ignored(void **state)
{
	struct sigaction ign = { .sa_handler = SIG_IGN }, old;
	pthread_t t;

	(void)state;
	sigemptyset(&ign.sa_mask);
	assert_int_equal(sigaction(SIGBUS, &ign, &old), 0);
	assert_int_equal(bgs_guard_hold(), 0);
	assert_int_equal(pthread_create(&t, NULL, raise_bus, NULL), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	bgs_guard_release();
	assert_int_equal(sigaction(SIGBUS, &old, NULL), 0);
}

/* A handler of the owner's: it makes the page readable and counts. */
static _Atomic int owner_faults;
static uint8_t *owner_page;

static void owner_handler(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	if ((uint8_t *)si->si_addr >= owner_page &&
	    (uint8_t *)si->si_addr < owner_page + PG) {
		mprotect(owner_page, PG, PROT_READ);
		atomic_fetch_add(&owner_faults, 1);
	}
}

static volatile uint8_t sink;

static void read_owner_page(void *arg)
{
	(void)arg;
	sink = owner_page[0];
}

static void test_other_faults_reach_the_owner(void **state)
{
	struct sigaction sa = { .sa_sigaction = owner_handler,
				.sa_flags = SA_SIGINFO },
			 old, now;
	uint8_t *p = three_pages();
	uint8_t buf[PG];

	(void)state;
	sigemptyset(&sa.sa_mask);
	assert_int_equal(sigaction(SIGSEGV, &sa, &old), 0);
	owner_page = p + PG;
	atomic_store(&owner_faults, 0);
	assert_int_equal(bgs_guard_hold(), 0);
	assert_int_equal(bgs_guard_hold(), 0); /* two saves at once */

	/* Unguarded: the owner's handler gets it, and the read goes on. */
	sink = owner_page[0];
	assert_int_equal(atomic_load(&owner_faults), 1);
	/* Guarded, but outside the range guarded: the owner's too. */
	assert_int_equal(mprotect(owner_page, PG, PROT_NONE), 0);
	assert_int_equal(bgs_guard_run(p, PG, read_owner_page, NULL), 0);
	assert_int_equal(atomic_load(&owner_faults), 2);
	/* Inside it: the guard's, the owner never sees it. */
	assert_int_equal(mprotect(owner_page, PG, PROT_NONE), 0);
	assert_int_equal(guarded_copy(owner_page, PG, buf), -EFAULT);
	assert_int_equal(atomic_load(&owner_faults), 2);

	/* Released by both: the owner's handler is back. */
	bgs_guard_release();
	assert_int_equal(sigaction(SIGSEGV, NULL, &now), 0);
	assert_true(now.sa_sigaction != owner_handler);
	bgs_guard_release();
	assert_int_equal(sigaction(SIGSEGV, NULL, &now), 0);
	assert_true(now.sa_sigaction == owner_handler);
	assert_int_equal(sigaction(SIGSEGV, &old, NULL), 0);
	munmap(p, 3 * PG);
}

/* On a bgsnap thread, every signal blocked: still -EFAULT, not a kill. */
struct blocked {
	uint8_t *p;
	int faulted, read; /* what the two guarded copies returned */
};

static void *blocked_thread(void *arg)
{
	struct blocked *b = arg;
	uint8_t buf[PG];

	b->faulted = bgs_guard_run(b->p + PG, PG, do_copy,
				   &(struct copy){ buf, b->p + PG, PG, false });
	b->read = bgs_guard_run(b->p, PG, do_copy,
				&(struct copy){ buf, b->p, PG, false });
	return NULL;
}

static void test_thread_blocking_signals(void **state)
{
	struct blocked b = { three_pages(), 1, 1 };
	pthread_t t;

	(void)state;
	assert_int_equal(bgs_guard_hold(), 0);
	assert_int_equal(bgs_thread_start(&t, NULL, NULL, blocked_thread, &b),
			 0);
	pthread_join(t, NULL);
	assert_int_equal(b.faulted, -EFAULT);
	assert_int_equal(b.read, 0);
	bgs_guard_release();
	munmap(b.p, 3 * PG);
}

/* The thread a SIGSEGV sent by kill() was handled on. */
static _Atomic pid_t sent_on;

static void sent_handler(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	if (si->si_code <= 0)
		atomic_store(&sent_on, (pid_t)syscall(SYS_gettid));
}

struct redirected {
	uint8_t *p;
	_Atomic int step;  /* 1: took the signals; 2: go on */
	int before, after; /* its guarded reads of a PROT_NONE page */
};

static void *redirected_thread(void *arg)
{
	struct redirected *t = arg;
	uint8_t buf[PG];

	t->before = bgs_guard_run(t->p + PG, PG, do_copy,
				  &(struct copy){ buf, t->p + PG, PG, false });
	atomic_store(&t->step, 1);
	while (atomic_load(&t->step) != 2)
		tu_sleep_ms(1);
	t->after = bgs_guard_run(t->p + PG, PG, do_copy,
				 &(struct copy){ buf, t->p + PG, PG, false });
	return NULL;
}

/* An owner's thread that takes SIGSEGV once told to (its mask, from
 * its creator's, blocks it). */
static _Atomic int owner_step; /* 1: running; 2: take it; 3: took it */

static void *owner_thread(void *arg)
{
	sigset_t segv;

	(void)arg;
	sigemptyset(&segv);
	sigaddset(&segv, SIGSEGV);
	atomic_store(&owner_step, 1);
	while (atomic_load(&owner_step) != 2)
		tu_sleep_ms(1);
	pthread_sigmask(SIG_UNBLOCK, &segv, NULL);
	while (!atomic_load(&sent_on))
		tu_sleep_ms(1);
	atomic_store(&owner_step, 3);
	return NULL;
}

/*
 * A SIGSEGV that kill() sends the process and the kernel gives to a
 * guarded bgsnap thread (the only one taking it) is not handled there:
 * an owner's handler must never run on bgsnap's threads. It waits for one
 * of the owner's threads, and the bgsnap thread's guarded reads go on.
 * (This test's main thread made guarded reads, so it counts as bgsnap's:
 * the owner's thread is another.)
 */
static void test_sent_signal_goes_to_the_owner(void **state)
{
	struct sigaction sa = { .sa_sigaction = sent_handler,
				.sa_flags = SA_SIGINFO },
			 old;
	struct redirected t = { .p = three_pages() };
	pthread_t th, owner;
	sigset_t segv, was;

	(void)state;
	sigemptyset(&sa.sa_mask);
	sigemptyset(&segv);
	sigaddset(&segv, SIGSEGV);
	atomic_store(&sent_on, 0);
	atomic_store(&owner_step, 0);
	assert_int_equal(sigaction(SIGSEGV, &sa, &old), 0);
	assert_int_equal(bgs_guard_hold(), 0);
	assert_int_equal(pthread_sigmask(SIG_BLOCK, &segv, &was), 0);
	assert_int_equal(pthread_create(&owner, NULL, owner_thread, NULL), 0);
	assert_int_equal(
		bgs_thread_start(&th, NULL, NULL, redirected_thread, &t), 0);
	while (atomic_load(&t.step) != 1 || atomic_load(&owner_step) != 1)
		tu_sleep_ms(1);
	/* Only the bgsnap thread takes it now. */
	assert_int_equal(kill(getpid(), SIGSEGV), 0);
	tu_sleep_ms(50);
	assert_int_equal(atomic_load(&sent_on), 0); /* not on bgsnap's */
	atomic_store(&owner_step, 2);
	assert_int_equal(pthread_join(owner, NULL), 0);
	assert_int_equal(atomic_load(&owner_step), 3);
	assert_int_not_equal(atomic_load(&sent_on), 0);
	assert_int_not_equal(atomic_load(&sent_on), (pid_t)syscall(SYS_gettid));
	atomic_store(&t.step, 2);
	pthread_join(th, NULL);
	assert_int_equal(t.before, -EFAULT);
	assert_int_equal(t.after, -EFAULT);
	assert_int_equal(pthread_sigmask(SIG_SETMASK, &was, NULL), 0);
	bgs_guard_release();
	assert_int_equal(sigaction(SIGSEGV, &old, NULL), 0);
	munmap(t.p, 3 * PG);
}

/* A handler installed over the guard's while it is held, chaining to it
 * as a well-behaved one does. */
static struct sigaction over_old;
static _Atomic int over_calls;

static void over_handler(int sig, siginfo_t *si, void *uc)
{
	atomic_fetch_add(&over_calls, 1);
	over_old.sa_sigaction(sig, si, uc);
}

/*
 * Once displaced by such a handler, the guard never goes over it again:
 * theirs calls ours, and ours on top would call theirs, for ever, on a
 * fault that is neither's. Guarded reads still come back, through theirs.
 * (Last: the guard stays displaced in this process.)
 */
static void test_displaced_never_reinstalled(void **state)
{
	struct sigaction owner = { .sa_sigaction = owner_handler,
				   .sa_flags = SA_SIGINFO },
			 over = { .sa_sigaction = over_handler,
				  .sa_flags = SA_SIGINFO | SA_NODEFER },
			 old, now;
	uint8_t *p = three_pages();
	uint8_t buf[PG];

	(void)state;
	sigemptyset(&owner.sa_mask);
	sigemptyset(&over.sa_mask);
	assert_int_equal(sigaction(SIGSEGV, &owner, &old), 0);
	owner_page = p + PG;
	atomic_store(&owner_faults, 0);
	assert_int_equal(bgs_guard_hold(), 0);
	assert_int_equal(sigaction(SIGSEGV, &over, &over_old), 0);
	assert_true(over_old.sa_flags & SA_SIGINFO);
	bgs_guard_release(); /* theirs stays */
	assert_int_equal(bgs_guard_hold(), 0);
	assert_int_equal(sigaction(SIGSEGV, NULL, &now), 0);
	assert_true(now.sa_sigaction == over_handler);

	/* A guarded read comes back through theirs. */
	assert_int_equal(guarded_copy(owner_page, PG, buf), -EFAULT);
	assert_int_equal(atomic_load(&over_calls), 1);
	/* A fault that is not the guard's: theirs, ours, the owner's, once
	 * each, and the read goes on. */
	sink = owner_page[0];
	assert_int_equal(atomic_load(&over_calls), 2);
	assert_int_equal(atomic_load(&owner_faults), 1);
	/* SIGBUS was not displaced: guarded there as before. */
	read_past_memfd_end();

	bgs_guard_release();
	assert_int_equal(sigaction(SIGSEGV, &old, NULL), 0);
	munmap(p, 3 * PG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fault_in_range_returns),
		cmocka_unit_test(test_bus_error_returns),
		cmocka_unit_test(test_other_faults_reach_the_owner),
		cmocka_unit_test(test_thread_blocking_signals),
		cmocka_unit_test(test_ignored_stays_ignored),
		cmocka_unit_test(test_sent_signal_goes_to_the_owner),
		cmocka_unit_test(test_displaced_never_reinstalled),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
