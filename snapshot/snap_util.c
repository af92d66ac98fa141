/* SPDX-License-Identifier: MIT */
/* The engine's small helpers: the clock, the first error, threads and
 * the CPUs they run on, the public structs' sizes. */
#include "snap_internal.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

uint64_t bgs_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

int bgs_first_error_set(struct bgs_first_error *e, int code, const char *fmt,
			va_list ap)
{
	if (atomic_exchange(&e->claimed, true))
		return code;
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	atomic_store_explicit(&e->code, code, memory_order_release);
	return code;
}

int bgs_thread_start(pthread_t *t, void *stack, const cpu_set_t *cpus,
		     void *(*fn)(void *), void *arg)
{
	sigset_t all, old;
	pthread_attr_t attr;
	int r;

	pthread_attr_init(&attr);
	if (stack)
		pthread_attr_setstack(&attr, stack, BGS_STACK_SIZE);
	if (cpus)
		pthread_attr_setaffinity_np(&attr, sizeof(*cpus), cpus);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = pthread_create(t, &attr, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	return -r;
}

int bgs_parse_cpus(const char *list, cpu_set_t *set)
{
	const char *p = list;

	CPU_ZERO(set);
	do {
		char *end;
		unsigned long a, b;

		if (*p < '0' || *p > '9')
			return -EINVAL;
		a = b = strtoul(p, &end, 10);
		if (*end == '-') {
			p = end + 1;
			if (*p < '0' || *p > '9')
				return -EINVAL;
			b = strtoul(p, &end, 10);
		}
		if (a > b || b >= CPU_SETSIZE)
			return -EINVAL;
		for (unsigned long c = a; c <= b; c++)
			CPU_SET(c, set);
		p = end;
	} while (*p++ == ',');
	return p[-1] ? -EINVAL : 0;
}

/*
 * Public structs start with the caller's sizeof (bgsnap.h, "Conventions").
 * An older caller's struct is shorter: the fields it lacks take their
 * defaults (zero). A newer caller's is longer: what this library does not
 * know must be zero, or the caller asked for something it cannot do.
 */
int bgs_struct_in(void *dst, size_t dsize, const void *src)
{
	const size_t size = src ? *(const size_t *)src : dsize;
	const unsigned char *tail = (const unsigned char *)src + dsize;

	if (!src) {
		memset(dst, 0, dsize);
		*(size_t *)dst = dsize;
		return 0;
	}
	if (size < sizeof(size_t))
		return -EINVAL;
	memset(dst, 0, dsize);
	memcpy(dst, src, size < dsize ? size : dsize);
	for (size_t i = 0; size > dsize && i < size - dsize; i++)
		if (tail[i])
			return -E2BIG;
	*(size_t *)dst = dsize;
	return 0;
}

/* Never a byte past the caller's size; the fields this library does not
 * know are zeroed for a newer caller. */
int bgs_struct_out(void *dst, const void *src, size_t ssize)
{
	const size_t size = *(const size_t *)dst;
	const size_t head = sizeof(size_t);
	unsigned char *d = dst;

	if (size < head)
		return -EINVAL;
	memcpy(d + head, (const unsigned char *)src + head,
	       (size < ssize ? size : ssize) - head);
	if (size > ssize)
		memset(d + ssize, 0, size - ssize);
	return 0;
}
