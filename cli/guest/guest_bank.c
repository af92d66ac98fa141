/* SPDX-License-Identifier: MIT */
#include "guest_bank.h"
#include "guest_client.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define BANK_MAGIC   0x4b4e41424e534742ULL /* "BGSNBANK" */
#define PAGE	     4096u
#define JOURNAL_PAGE 1u
#define FIRST_ACCT   2u
#define PARK_SIGNAL  (SIGRTMIN + 3)

struct bank_header {
	uint64_t magic;
	uint64_t len;
	uint32_t naccounts;
	uint32_t pad;
	int64_t total;
};

/* One per writer, 64 bytes, in the journal page. */
struct journal {
	_Atomic uint32_t active;
	uint32_t pad;
	uint32_t from, to;
	int64_t amount;
	int64_t from_old, to_old;
	uint64_t seq;
	uint64_t pad2[2];
};
_Static_assert(sizeof(struct journal) == 64, "journal slots are 64 bytes");
_Static_assert(BANK_MAX_WRITERS * 64 <= PAGE, "the journal is one page");

/* At the start of each account's page; the rest is payload. */
struct account {
	_Atomic uint32_t lock;
	uint32_t writes;
	_Atomic int64_t balance;
};

static struct account *account_at(uint8_t *mem, uint32_t i)
{
	return (struct account *)(mem + (size_t)(FIRST_ACCT + i) * PAGE);
}

static const struct account *caccount_at(const uint8_t *mem, uint32_t i)
{
	return (const struct account *)(mem + (size_t)(FIRST_ACCT + i) * PAGE);
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ULL;
}

/* Payload like real memory: 30% zero pages, structured records, text,
 * and incompressible bytes. */
static void fill_payload(uint8_t *page, uint64_t *rng)
{
	static const char text[] =
		"the quick brown fox jumps over the lazy dog; lorem ipsum "
		"dolor sit amet, consectetur adipiscing elit. ";
	const unsigned kind = (unsigned)(rnd(rng) % 10);
	uint8_t *p = page + sizeof(struct account);
	const size_t n = PAGE - sizeof(struct account);

	if (kind < 3) {
		memset(p, 0, n);
	} else if (kind < 6) {
		for (size_t i = 0; i + 16 <= n; i += 16) {
			const uint64_t rec[2] = { i / 16, 0x1000 + i * 3 };
			memcpy(p + i, rec, sizeof(rec));
		}
	} else if (kind < 8) {
		for (size_t i = 0; i < n; i++)
			p[i] = (uint8_t)text[i % (sizeof(text) - 1)];
	} else {
		for (size_t i = 0; i + 8 <= n; i += 8) {
			const uint64_t v = rnd(rng);
			memcpy(p + i, &v, 8);
		}
	}
}

int bank_format(void *mem, size_t len, uint64_t seed)
{
	uint8_t *m = mem;
	struct bank_header *h = mem;
	uint64_t rng = seed | 1;
	int64_t total = 0;

	if (len < (FIRST_ACCT + 2) * PAGE || len % PAGE)
		return -EINVAL;
	memset(m, 0, FIRST_ACCT * PAGE);
	h->magic = BANK_MAGIC;
	h->len = len;
	h->naccounts = (uint32_t)(len / PAGE - FIRST_ACCT);
	for (uint32_t i = 0; i < h->naccounts; i++) {
		struct account *a = account_at(m, i);

		fill_payload((uint8_t *)a, &rng);
		atomic_init(&a->lock, 0);
		a->writes = 0;
		atomic_init(&a->balance, 1000);
		total += 1000;
	}
	h->total = total;
	return 0;
}

static int header_ok(const void *image, size_t len, char *why, size_t n)
{
	const struct bank_header *h = image;

	if (len < (FIRST_ACCT + 2) * PAGE || h->magic != BANK_MAGIC ||
	    h->len != len || h->naccounts != len / PAGE - FIRST_ACCT) {
		snprintf(why, n,
			 "not a bank image (header damaged or wrong "
			 "size)");
		return -1;
	}
	return 0;
}

int bank_check(const void *image, size_t len, char *why, size_t whylen)
{
	const uint8_t *m = image;
	const struct bank_header *h = image;
	const struct journal *j = (const void *)(m + JOURNAL_PAGE * PAGE);
	int64_t sum = 0;

	if (header_ok(image, len, why, whylen))
		return -1;
	for (uint32_t i = 0; i < h->naccounts; i++)
		sum += atomic_load_explicit(&caccount_at(m, i)->balance,
					    memory_order_relaxed);
	for (unsigned w = 0; w < BANK_MAX_WRITERS; w++) {
		if (!atomic_load_explicit(&j[w].active, memory_order_relaxed))
			continue;
		if (j[w].from >= h->naccounts || j[w].to >= h->naccounts) {
			snprintf(why, whylen, "journal slot %u is damaged", w);
			return -1;
		}
		const int64_t f = atomic_load_explicit(
			&caccount_at(m, j[w].from)->balance,
			memory_order_relaxed);
		const int64_t t =
			atomic_load_explicit(&caccount_at(m, j[w].to)->balance,
					     memory_order_relaxed);
		const bool debited = f == j[w].from_old - j[w].amount;
		const bool credited = t == j[w].to_old + j[w].amount;

		if ((!debited && f != j[w].from_old) ||
		    (!credited && t != j[w].to_old) || (credited && !debited)) {
			snprintf(why, whylen,
				 "writer %u's transfer %llu is torn: "
				 "accounts %u and %u hold %lld and %lld, the "
				 "journal says %lld -> %lld of %lld",
				 w, (unsigned long long)j[w].seq, j[w].from,
				 j[w].to, (long long)f, (long long)t,
				 (long long)j[w].from_old,
				 (long long)j[w].to_old,
				 (long long)j[w].amount);
			return -1;
		}
		sum += (debited ? j[w].amount : 0) -
		       (credited ? j[w].amount : 0);
	}
	if (sum != h->total) {
		snprintf(why, whylen,
			 "the books do not balance: %lld instead "
			 "of %lld (pages from different instants)",
			 (long long)sum, (long long)h->total);
		return -1;
	}
	return 0;
}

void bank_recover(void *mem, size_t len)
{
	uint8_t *m = mem;
	struct bank_header *h = mem;
	struct journal *j = (void *)(m + JOURNAL_PAGE * PAGE);
	char why[128];

	if (header_ok(mem, len, why, sizeof(why)))
		return;
	for (unsigned w = 0; w < BANK_MAX_WRITERS; w++) {
		if (!atomic_load(&j[w].active) || j[w].from >= h->naccounts ||
		    j[w].to >= h->naccounts)
			continue;
		atomic_store(&account_at(m, j[w].from)->balance,
			     j[w].from_old - j[w].amount);
		atomic_store(&account_at(m, j[w].to)->balance,
			     j[w].to_old + j[w].amount);
		atomic_store(&j[w].active, 0);
	}
	/* Only locks that are set are written: memory that is being tracked
	 * (write-protected) sees no write to the pages that need none. */
	for (uint32_t i = 0; i < h->naccounts; i++)
		if (atomic_load_explicit(&account_at(m, i)->lock,
					 memory_order_relaxed))
			atomic_store(&account_at(m, i)->lock, 0);
}

/* ---- writers ------------------------------------------------------------- */

static _Thread_local struct bank_writer *self;

static void park_handler(int sig)
{
	struct bank *b = self ? self->bank : NULL;
	const uint64_t t0 = guest_now_ns();
	const struct timespec tick = { 0, 20000 };

	(void)sig;
	if (!b || !atomic_load(&b->paused))
		return; /* a late or early signal: nothing to do */
	atomic_store(&self->parked, true);
	atomic_fetch_add(&b->parked, 1);
	while (atomic_load(&b->paused))
		nanosleep(&tick, NULL);
	const uint64_t stopped = guest_now_ns() - t0;
	if (stopped > atomic_load(&self->max_stop_ns))
		atomic_store(&self->max_stop_ns, stopped);
	atomic_fetch_sub(&b->parked, 1);
	atomic_store(&self->parked, false);
}

static void lock_acct(struct account *a)
{
	while (atomic_exchange_explicit(&a->lock, 1, memory_order_acquire))
		;
}

static void unlock_acct(struct account *a)
{
	atomic_store_explicit(&a->lock, 0, memory_order_release);
}

static void pick(struct bank_writer *w, uint32_t *from, uint32_t *to)
{
	const uint32_t n = w->bank->naccounts;
	uint64_t r = rnd(&w->rng);

	switch (w->bank->pattern) {
	case BANK_SEQUENTIAL:
		*from = (uint32_t)((atomic_load(&w->ops) * 2 +
				    w->id * (n / BANK_MAX_WRITERS)) %
				   n);
		*to = (*from + 1) % n;
		return;
	case BANK_HOT:
		if (r % 10) {
			const uint32_t hot = n / 10 > 1 ? n / 10 : 2;
			*from = (uint32_t)(rnd(&w->rng) % hot);
			*to = (uint32_t)(rnd(&w->rng) % hot);
			break;
		}
		__attribute__((fallthrough)); /* 10% anywhere */
	case BANK_RANDOM:
	default:
		*from = (uint32_t)(rnd(&w->rng) % n);
		*to = (uint32_t)(rnd(&w->rng) % n);
		break;
	}
	if (*to == *from)
		*to = (*from + 1) % n;
}

static void transfer(struct bank_writer *w, struct journal *j)
{
	uint8_t *m = w->bank->mem;
	uint32_t from, to;
	struct account *a, *b;
	const int64_t amount = (int64_t)(rnd(&w->rng) % 100) + 1;

	pick(w, &from, &to);
	a = account_at(m, from < to ? from : to);
	b = account_at(m, from < to ? to : from);
	lock_acct(a);
	lock_acct(b);
	j->from = from;
	j->to = to;
	j->amount = amount;
	j->from_old = atomic_load_explicit(&account_at(m, from)->balance,
					   memory_order_relaxed);
	j->to_old = atomic_load_explicit(&account_at(m, to)->balance,
					 memory_order_relaxed);
	j->seq++;
	/* Release: the entry's fields are stored before it is marked
	 * active. */
	atomic_store_explicit(&j->active, 1, memory_order_release);
	atomic_store_explicit(&account_at(m, from)->balance,
			      j->from_old - amount, memory_order_release);
	account_at(m, from)->writes++;
	atomic_store_explicit(&account_at(m, to)->balance, j->to_old + amount,
			      memory_order_release);
	account_at(m, to)->writes++;
	atomic_store_explicit(&j->active, 0, memory_order_release);
	unlock_acct(b);
	unlock_acct(a);
}

/* Bucket of @ns: exact below 8, then 3 bits of mantissa per octave. */
static unsigned lat_bucket_of(uint64_t ns)
{
	unsigned e, b;

	if (ns < 8)
		return (unsigned)ns;
	e = 63u - (unsigned)__builtin_clzll(ns);
	b = 8 + (e - 3) * 8 + (unsigned)((ns >> (e - 3)) & 7);
	return b < BANK_LAT_BUCKETS ? b : BANK_LAT_BUCKETS - 1;
}

/* The largest latency that falls in bucket @b. */
static uint64_t lat_bucket_top(unsigned b)
{
	unsigned e;

	if (b < 8)
		return b;
	e = (b - 8) / 8 + 3;
	return ((8ULL + (b - 8) % 8 + 1) << (e - 3)) - 1;
}

static void raise_max(_Atomic uint64_t *max, uint64_t v)
{
	if (v > atomic_load_explicit(max, memory_order_relaxed))
		atomic_store_explicit(max, v, memory_order_relaxed);
}

static void record_op(struct bank_writer *w, uint64_t lat_ns, uint64_t delay_ns)
{
	atomic_fetch_add_explicit(&w->lat_bucket[lat_bucket_of(lat_ns)], 1,
				  memory_order_relaxed);
	raise_max(&w->lat_max_ns, lat_ns);
	raise_max(&w->max_delay_ns, delay_ns);
}

/* A transfer that ended at @end, due at @due: if it overlapped the
 * window, its delay from the later of its due time and the open. */
static void window_note(struct bank_writer *w, uint64_t due, uint64_t end)
{
	struct bank *b = w->bank;
	/* Acquire: a new window's close (UINT64_MAX) is seen with its
	 * open, never the last window's close. */
	const uint64_t open =
		atomic_load_explicit(&b->win_open_ns, memory_order_acquire);
	const unsigned n =
		atomic_load_explicit(&w->win_steps, memory_order_relaxed);
	const uint64_t delay = end - (due > open ? due : open);

	if (open && end >= open &&
	    due <= atomic_load_explicit(&b->win_close_ns,
					memory_order_relaxed) &&
	    delay > atomic_load_explicit(&w->win_max_ns,
					 memory_order_relaxed)) {
		atomic_store_explicit(&w->win_max_ns, delay,
				      memory_order_relaxed);
		if (n < BANK_WIN_STEPS) {
			w->win_step_due[n] = due;
			w->win_step_max[n] = delay;
			/* Release: the step is stored before the count that
			 * makes readers look at it. */
			atomic_store_explicit(&w->win_steps, n + 1,
					      memory_order_release);
		}
	}
	/* Release: a reader that sees this end also sees the window step
	 * stored above for this transfer. */
	atomic_store_explicit(&w->last_end_ns, end, memory_order_release);
}

static void sleep_until(uint64_t when)
{
	const uint64_t t = guest_now_ns();

	if (when <= t)
		return;
	nanosleep(&(struct timespec){ (time_t)((when - t) / 1000000000ULL),
				      (long)((when - t) % 1000000000ULL) },
		  NULL);
}

/* Asleep, not polling: a held guest's writers would otherwise take a CPU
 * share from what runs beside it (a bench's Ceph cluster, say). */
static void wait_held(struct bank *b)
{
	atomic_fetch_add(&b->held, 1);
	while (atomic_load(&b->hold) && !atomic_load(&b->stop))
		syscall(SYS_futex, &b->hold, FUTEX_WAIT_PRIVATE, 1, NULL, NULL,
			0);
	atomic_fetch_sub(&b->held, 1);
}

static void end_hold(struct bank *b)
{
	atomic_store(&b->hold, 0);
	syscall(SYS_futex, &b->hold, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL,
		0);
}

static void *writer_main(void *arg)
{
	struct bank_writer *w = arg;
	struct bank *b = w->bank;
	struct journal *j = (void *)(b->mem + JOURNAL_PAGE * PAGE +
				     w->id * sizeof(struct journal));
	const uint64_t interval =
		b->rate ? 1000000000ULL * b->nwriters / b->rate : 0;
	uint64_t next = guest_now_ns(), last_end = next;

	self = w;
	while (!atomic_load_explicit(&b->stop, memory_order_relaxed)) {
		if (atomic_load_explicit(&b->hold, memory_order_acquire)) {
			wait_held(b);
			next = last_end =
				guest_now_ns(); /* a hold is no delay */
			continue;
		}
		/* Due: when this transfer should start, by the rate's
		 * schedule or right after the last one if running behind. */
		uint64_t due = last_end;
		if (interval) {
			next += interval;
			sleep_until(next);
			due = next > due ? next : due;
		}
		const uint64_t t0 = guest_now_ns();
		transfer(w, j);
		last_end = guest_now_ns();
		record_op(w, last_end - t0, last_end - due);
		window_note(w, due, last_end);
		atomic_fetch_add_explicit(&w->ops, 1, memory_order_relaxed);
	}
	return NULL;
}

int bank_start(struct bank *b, void *mem, size_t len, unsigned nwriters,
	       enum bank_pattern pattern, uint64_t rate, uint64_t seed)
{
	struct sigaction sa = { .sa_handler = park_handler,
				.sa_flags = SA_RESTART };
	char why[128];

	if (!nwriters || nwriters > BANK_MAX_WRITERS ||
	    header_ok(mem, len, why, sizeof(why)))
		return -EINVAL;
	memset(b, 0, sizeof(*b));
	b->mem = mem;
	b->len = len;
	b->naccounts = ((struct bank_header *)mem)->naccounts;
	b->nwriters = nwriters;
	b->pattern = pattern;
	b->rate = rate;
	sigemptyset(&sa.sa_mask);
	sigaction(PARK_SIGNAL, &sa, NULL);
	for (unsigned i = 0; i < nwriters; i++) {
		struct bank_writer *w = &b->writer[i];

		w->bank = b;
		w->id = i;
		w->rng = (seed + i * 0x9e3779b97f4a7c15ULL) | 1;
		const int r = pthread_create(&w->thread, NULL, writer_main, w);
		if (r) {
			b->nwriters = i;
			bank_stop(b);
			return -r;
		}
	}
	return 0;
}

void bank_stop(struct bank *b)
{
	atomic_store(&b->stop, true);
	atomic_store(&b->paused, false);
	end_hold(b); /* after stop: a writer about to sleep sees either */
	for (unsigned i = 0; i < b->nwriters; i++)
		pthread_join(b->writer[i].thread, NULL);
	b->nwriters = 0;
}

static void wait_count(_Atomic unsigned *count, unsigned want)
{
	while (atomic_load(count) != want)
		nanosleep(&(struct timespec){ 0, 10000 }, NULL);
}

void bank_pause(struct bank *b)
{
	atomic_store(&b->paused, true);
	/* Signal until all are parked: a thread that has not yet set up
	 * (or is leaving the handler of the last pause) ignores one. */
	while (atomic_load(&b->parked) != b->nwriters) {
		for (unsigned i = 0; i < b->nwriters; i++)
			if (!atomic_load(&b->writer[i].parked))
				pthread_kill(b->writer[i].thread, PARK_SIGNAL);
		nanosleep(&(struct timespec){ 0, 50000 }, NULL);
	}
}

void bank_resume(struct bank *b)
{
	atomic_store(&b->paused, false);
	wait_count(&b->parked, 0);
}

void bank_hold(struct bank *b)
{
	atomic_store(&b->hold, 1);
	wait_count(&b->held, b->nwriters);
}

void bank_release(struct bank *b)
{
	end_hold(b);
	wait_count(&b->held, 0);
}

static uint64_t bucket_percentile(const uint64_t *bucket, uint64_t total,
				  double p)
{
	const uint64_t want = (uint64_t)((double)total * p / 100.0 + 0.5);
	uint64_t seen = 0;

	if (!total)
		return 0;
	for (unsigned i = 0; i < BANK_LAT_BUCKETS; i++) {
		seen += bucket[i];
		if (seen >= (want ? want : 1))
			return lat_bucket_top(i);
	}
	return 0;
}

void bank_figures(struct bank *b, struct bank_figures *f)
{
	uint64_t bucket[BANK_LAT_BUCKETS] = { 0 }, total = 0;

	memset(f, 0, sizeof(*f));
	for (unsigned i = 0; i < b->nwriters; i++) {
		struct bank_writer *w = &b->writer[i];
		const uint64_t ops = atomic_load(&w->ops);

		f->ops += ops;
		if (!i || ops < f->ops_min)
			f->ops_min = ops;
		for (unsigned k = 0; k < BANK_LAT_BUCKETS; k++) {
			const uint64_t n = atomic_load_explicit(
				&w->lat_bucket[k], memory_order_relaxed);

			bucket[k] += n;
			total += n;
		}
		if (atomic_load(&w->lat_max_ns) > f->lat_max_ns)
			f->lat_max_ns = atomic_load(&w->lat_max_ns);
		if (atomic_load(&w->max_stop_ns) > f->max_stop_ns)
			f->max_stop_ns = atomic_load(&w->max_stop_ns);
		if (atomic_load(&w->max_delay_ns) > f->max_delay_ns)
			f->max_delay_ns = atomic_load(&w->max_delay_ns);
	}
	f->lat_p50_ns = bucket_percentile(bucket, total, 50);
	f->lat_p99_ns = bucket_percentile(bucket, total, 99);
}

void bank_figures_reset(struct bank *b)
{
	for (unsigned i = 0; i < b->nwriters; i++) {
		struct bank_writer *w = &b->writer[i];

		atomic_store(&w->ops, 0);
		atomic_store(&w->lat_max_ns, 0);
		atomic_store(&w->max_stop_ns, 0);
		atomic_store(&w->max_delay_ns, 0);
		for (unsigned k = 0; k < BANK_LAT_BUCKETS; k++)
			atomic_store_explicit(&w->lat_bucket[k], 0,
					      memory_order_relaxed);
	}
}

/* ---- the start window ---------------------------------------------------- */

void bank_window_open(struct bank *b)
{
	/* No window is open (bank_window_max closed the last): writers
	 * leave the steps alone until the open below. */
	atomic_store(&b->win_open_ns, 0);
	for (unsigned i = 0; i < b->nwriters; i++) {
		atomic_store(&b->writer[i].win_max_ns, 0);
		atomic_store(&b->writer[i].win_steps, 0);
	}
	atomic_store(&b->win_close_ns, UINT64_MAX);
	atomic_store(&b->win_open_ns, guest_now_ns());
}

void bank_window_close(struct bank *b)
{
	atomic_store(&b->win_close_ns, guest_now_ns());
}

void bank_window_close_at(struct bank *b, uint64_t ns)
{
	atomic_store(&b->win_close_ns, ns);
}

/* The longest delay of @w's transfers due by @close. */
static uint64_t window_max_of(struct bank_writer *w, uint64_t close,
			      uint64_t *due)
{
	const unsigned n =
		atomic_load_explicit(&w->win_steps, memory_order_acquire);
	uint64_t max = 0;

	for (unsigned k = 0; k < n && w->win_step_due[k] <= close; k++) {
		max = w->win_step_max[k];
		*due = w->win_step_due[k];
	}
	/* All the steps are used (the window stayed open far too long), so
	 * fall back on the running maximum. */
	if (n == BANK_WIN_STEPS && w->win_step_due[n - 1] <= close)
		max = atomic_load(&w->win_max_ns);
	return max;
}

uint64_t bank_window_max(struct bank *b, uint64_t timeout_ns, bool *complete)
{
	const uint64_t close = atomic_load(&b->win_close_ns);
	const uint64_t deadline = guest_now_ns() + timeout_ns;
	uint64_t max = 0;
	unsigned done = 0;

	/* A writer that has not ended a transfer since the close may still
	 * be stopped in one that overlapped the window. */
	while (done < b->nwriters && guest_now_ns() < deadline) {
		done = 0;
		for (unsigned i = 0; i < b->nwriters; i++)
			done += atomic_load_explicit(&b->writer[i].last_end_ns,
						     memory_order_acquire) >
				close;
		if (done < b->nwriters)
			nanosleep(&(struct timespec){ 0, 100000 }, NULL);
	}
	b->win_worst_due_ns = 0;
	for (unsigned i = 0; i < b->nwriters; i++) {
		uint64_t due = 0;
		const uint64_t m = window_max_of(&b->writer[i], close, &due);

		if (m > max) {
			max = m;
			b->win_worst_due_ns = due;
		}
	}
	atomic_store(&b->win_open_ns, 0);
	*complete = done == b->nwriters;
	return max;
}
