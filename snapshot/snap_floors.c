/* SPDX-License-Identifier: MIT */
/*
 * The floors (bgsnap_measure_floors): what the kernel and the CPU allow on
 * the caller's memory, with none of a save's machinery around it. Arming
 * is one write-protect of the whole range; a fault's floor is the round
 * trip of a write to a protected page, served by a second thread that does
 * nothing but unprotect; compression's floor is lz4 alone, the way the
 * store calls it. A save's blackout, stall and throughput are read against
 * these, measured in the same run.
 *
 * DESIGN
 * Threads: the caller; during the fault floor, one server thread reads the
 * floor's own userfaultfd and unprotects each faulted unit. The caller
 * writes, then stops and joins it. The floor is taken three times: where
 * the scheduler puts the server, then with both pinned to one CPU, then
 * to two (on virtual CPUs a wake-up across CPUs can cost several times
 * the rest of the round trip).
 */
#include "snap_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#define FLOOR_WP_REPEAT 3
#define FLOOR_FAULTS	2000
#define FLOOR_POLL_MS	10 /* how soon the server sees it must stop */

static int cmp_double(const void *a, const void *b)
{
	const double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double ms_since(uint64_t t0)
{
	return (double)(bgs_now_ns() - t0) / 1e6;
}

static double floor_protect(const struct bgs_uffd *u, uint64_t addr,
			    uint64_t len)
{
	double t[FLOOR_WP_REPEAT];

	for (int i = 0; i < FLOOR_WP_REPEAT; i++) {
		const uint64_t t0 = bgs_now_ns();

		if (bgs_uffd_protect(u, addr, len, 0))
			return NAN;
		t[i] = ms_since(t0);
		if (bgs_uffd_unprotect(u, addr, len, 0))
			return NAN;
	}
	qsort(t, FLOOR_WP_REPEAT, sizeof(*t), cmp_double);
	return t[FLOOR_WP_REPEAT / 2];
}

struct fault_server {
	const struct bgs_uffd *u;
	uint64_t unit;
	_Atomic bool stop;
};

static void *fault_server_main(void *arg)
{
	struct fault_server *s = arg;
	struct pollfd p = { .fd = s->u->fd, .events = POLLIN };

	while (!atomic_load(&s->stop)) {
		struct uffd_msg msg;

		if (poll(&p, 1, FLOOR_POLL_MS) <= 0 ||
		    bgs_uffd_read(s->u, &msg, 1) != 1 ||
		    !bgs_uffd_msg_is_wp(&msg))
			continue;
		bgs_uffd_unprotect(s->u,
				   msg.arg.pagefault.address & ~(s->unit - 1),
				   s->unit, 0);
	}
	return NULL;
}

/* Where the server runs against the writing caller. */
enum placement { ANY_CPU, SAME_CPU, OTHER_CPU };

/*
 * Pin the caller to the CPU it is on, and fill @server with that CPU
 * (SAME_CPU) or another the caller may use (OTHER_CPU); @saved: the
 * caller's affinity, to be put back. False if that cannot be: one CPU
 * only, or no affinity calls.
 */
static bool place(enum placement where, cpu_set_t *saved, cpu_set_t *server)
{
	const int cpu = sched_getcpu();
	cpu_set_t self;
	int other = -1;

	if (cpu < 0 || sched_getaffinity(0, sizeof(*saved), saved))
		return false;
	for (int c = 0; c < CPU_SETSIZE && other < 0; c++)
		if (c != cpu && CPU_ISSET(c, saved))
			other = c;
	if (where == OTHER_CPU && other < 0)
		return false;
	CPU_ZERO(&self);
	CPU_SET(cpu, &self);
	if (sched_setaffinity(0, sizeof(self), &self))
		return false;
	CPU_ZERO(server);
	CPU_SET(where == SAME_CPU ? cpu : other, server);
	return true;
}

/* Writes spread over the range, each to a protected unit; the value
 * written is the one there, so the caller's content is kept. The round
 * trip's p50 and p99 into @p50 and @p99 (untouched if not measured). */
static int floor_faults(const struct bgs_uffd *u, uint8_t *mem, uint64_t len,
			uint64_t unit, enum placement where, double *p50,
			double *p99)
{
	struct fault_server s = { .u = u, .unit = unit };
	const uint64_t units = len / unit;
	const uint64_t n = units < FLOOR_FAULTS ? units : FLOOR_FAULTS;
	double *lat = calloc(n ? n : 1, sizeof(*lat));
	cpu_set_t saved, server;
	bool placed = false;
	pthread_t thread;
	int ret;

	if (!lat)
		return -ENOMEM;
	if (where != ANY_CPU) {
		placed = place(where, &saved, &server);
		if (!placed) {
			free(lat);
			return 0;
		}
	}
	ret = bgs_uffd_protect(u, (uintptr_t)mem, len, 0);
	if (!ret)
		ret = bgs_thread_start(&thread, NULL, placed ? &server : NULL,
				       fault_server_main, &s);
	for (uint64_t i = 0; !ret && i < n; i++) {
		_Atomic uint64_t *p =
			(_Atomic uint64_t *)(mem + i * (units / n) * unit);
		const uint64_t v =
			atomic_load_explicit(p, memory_order_relaxed);
		const uint64_t t0 = bgs_now_ns();

		atomic_store_explicit(p, v, memory_order_relaxed);
		lat[i] = (double)(bgs_now_ns() - t0) / 1e3;
	}
	if (!ret) {
		atomic_store(&s.stop, true);
		pthread_join(thread, NULL);
		qsort(lat, n, sizeof(*lat), cmp_double);
		if (n) {
			*p50 = lat[n / 2];
			if (p99)
				*p99 = lat[n * 99 / 100];
		}
	}
	bgs_uffd_unprotect(u, (uintptr_t)mem, len, 0);
	if (placed)
		sched_setaffinity(0, sizeof(saved), &saved);
	free(lat);
	return ret;
}

static void floor_lz4(const void *mem, uint64_t len, struct bgsnap_floors *out)
{
	uint64_t ns, stored;

	if (bgs_rs_measure_lz4(mem, len, 1, &ns, &stored) || !ns || !stored)
		return;
	out->lz4_gib_s = (double)len / (1u << 30) / ((double)ns / 1e9);
	out->lz4_ratio = (double)len / (double)stored;
}

BGSNAP_API int bgsnap_measure_floors(void *mem, size_t len, size_t unit,
				     struct bgsnap_floors *out)
{
	const uintptr_t addr = (uintptr_t)mem;
	struct bgsnap_floors f = {
		sizeof(f), NAN, NAN, NAN, NAN, NAN, NAN, NAN
	};
	struct bgs_uffd u;
	int ret;

	if (!out || out->size < sizeof(size_t))
		return -EINVAL;
	if (!mem || !len || !unit || (unit & (unit - 1)) || addr % unit ||
	    len % unit)
		ret = -EINVAL;
	else
		ret = bgs_uffd_open(&u, 0, UFFD_FEATURE_PAGEFAULT_FLAG_WP);
	if (!ret) {
		floor_lz4(mem, len, &f);
		ret = bgs_uffd_register(&u, addr, len, UFFDIO_REGISTER_MODE_WP,
					NULL);
		if (!ret) {
			f.write_protect_ms = floor_protect(&u, addr, len);
			ret = floor_faults(&u, mem, len, unit, ANY_CPU,
					   &f.fault_p50_us, &f.fault_p99_us);
			if (!ret)
				ret = floor_faults(&u, mem, len, unit, SAME_CPU,
						   &f.fault_same_cpu_p50_us,
						   NULL);
			if (!ret)
				ret = floor_faults(
					&u, mem, len, unit, OTHER_CPU,
					&f.fault_other_cpu_p50_us, NULL);
		}
		bgs_uffd_close(&u);
	}
	bgs_struct_out(out, &f, sizeof(f));
	return ret;
}
