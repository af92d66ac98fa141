/* SPDX-License-Identifier: MIT */
/*
 * The Redis benchmark's own client (tests/bench/bench_redis.sh).
 * It speaks RESP over a plain TCP socket to 127.0.0.1, so it needs no
 * client library, and does what redis-benchmark cannot:
 *
 *   port       print a free TCP port on 127.0.0.1
 *   fill       write keys key:%012d holding 1000 random (incompressible)
 *              bytes each, pipelined; with -t, until INFO's used_memory
 *              reaches BYTES (redis-benchmark's -d values are 'xxx...')
 *   probe      one SET probe:k v every 10 ms, each reply timed with
 *              CLOCK_MONOTONIC; the file gets "t_ms latency_us" lines
 *              until SIGTERM or SIGINT, then p50/p99/max print as JSON.
 *              t_ms is the CLOCK_REALTIME of the send in ms, the clock
 *              the script stamps its phases with ($EPOCHREALTIME)
 *   stats      the probe's figures over the lines sent within [FROM, TO]
 *   rbstats    redis-benchmark runs of one phase (its default output,
 *              one file a run) merged into one: requests, ops/s, p50,
 *              p99, max
 *   svg        the probe's latency over time, one panel a condition,
 *              one line a method, x in seconds since its save started
 *
 * See usage() for the arguments.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define VALUE_LEN  1000
#define KEY_LEN	   16 /* "key:%012d" */
#define FILL_BATCH 512
#define REPLY_BUF  65536
#define MAX_RUNS   1024
#define MAX_POINTS 128
#define MAX_PANELS 4
#define MAX_SERIES 4
#define SVG_W	   960
#define PANEL_H	   300
#define PLOT_L	   70
#define PLOT_R	   20
#define PLOT_T	   36
#define PLOT_B	   44
#define TITLE_H	   40
#define NOTE_H	   24

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static int usage(void)
{
	fputs("usage: bench_redis_probe port\n"
	      "       bench_redis_probe fill -p PORT (-t BYTES | -n KEYS) "
	      "[-s SEED]\n"
	      "       bench_redis_probe probe -p PORT -o FILE [-i MS]\n"
	      "       bench_redis_probe stats FILE [FROM_MS TO_MS]\n"
	      "       bench_redis_probe rbstats FILE...\n"
	      "       bench_redis_probe svg -o OUT -t TITLE [-b S] [-a S] "
	      "(-P PANEL [-X SECONDS] (-s LABEL,FILE,START_MS,END_MS)...)...\n",
	      stderr);
	return 2;
}

static double mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static double real_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ---- the connection ------------------------------------------------------ */

struct conn {
	int fd;
	size_t len; /* bytes of a reply read but not yet consumed */
	char buf[REPLY_BUF];
};

static int conn_open(struct conn *c, int port)
{
	const struct sockaddr_in sa = {
		.sin_family = AF_INET,
		.sin_port = htons((uint16_t)port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	const int one = 1;

	c->len = 0;
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return -errno;
	if (connect(c->fd, (const struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one))) {
		const int err = -errno;

		close(c->fd);
		return err;
	}
	return 0;
}

static int send_all(int fd, const char *p, size_t len)
{
	while (len) {
		const ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR && !stop_requested)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* More of the reply stream into c->buf; -ECONNRESET when the server left. */
static int conn_fill(struct conn *c)
{
	ssize_t n;

	if (c->len == sizeof(c->buf))
		return -ENOBUFS;
	do
		n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
	while (n < 0 && errno == EINTR && !stop_requested);
	if (n < 0)
		return -errno;
	if (n == 0)
		return -ECONNRESET;
	c->len += (size_t)n;
	return 0;
}

static void conn_consume(struct conn *c, size_t n)
{
	memmove(c->buf, c->buf + n, c->len - n);
	c->len -= n;
}

/*
 * Reads @count one-line replies (+OK or -ERR); returns how many were
 * errors, or -errno. The first error is printed.
 */
static long read_status_replies(struct conn *c, long count)
{
	long errors = 0;

	while (count) {
		char *nl = memchr(c->buf, '\n', c->len);
		int r;

		if (nl) {
			if (c->buf[0] == '-' && !errors++)
				fprintf(stderr, "bench_redis_probe: %.*s\n",
					(int)(nl - c->buf), c->buf);
			conn_consume(c, (size_t)(nl - c->buf) + 1);
			count--;
			continue;
		}
		r = conn_fill(c);
		if (r < 0)
			return r;
	}
	return errors;
}

/* INFO memory's used_memory, or -errno. */
static long long used_memory(struct conn *c)
{
	static const char cmd[] = "*2\r\n$4\r\nINFO\r\n$6\r\nmemory\r\n";
	long long len = -1;
	char *p;
	int r = send_all(c->fd, cmd, sizeof(cmd) - 1);

	while (!r) {
		char *nl = memchr(c->buf, '\n', c->len);

		if (nl && len < 0)
			len = atoll(c->buf + 1);
		if (len >= 0 && (long long)c->len >= (nl - c->buf) + 3 + len)
			break;
		r = conn_fill(c);
	}
	if (r < 0)
		return r;
	c->buf[c->len - 1] = '\0';
	p = strstr(c->buf, "\nused_memory:");
	r = p ? 0 : -EPROTO;
	c->len = 0;
	return r ? r : atoll(p + 13);
}

/* ---- fill ---------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* One SET key:%012d <1000 random bytes> at @p; returns its length. */
static size_t put_set(char *p, long key, uint64_t *seed)
{
	int n = sprintf(p, "*3\r\n$3\r\nSET\r\n$%d\r\nkey:%012ld\r\n$%d\r\n",
			KEY_LEN, key, VALUE_LEN);

	for (int i = 0; i < VALUE_LEN; i += 8) {
		const uint64_t v = splitmix64(seed);

		memcpy(p + n + i, &v, VALUE_LEN - i < 8 ? VALUE_LEN - i : 8);
	}
	n += VALUE_LEN;
	memcpy(p + n, "\r\n", 2);
	return (size_t)n + 2;
}

#define SET_MAX (64 + KEY_LEN + VALUE_LEN)

/*
 * Keys [from, to), FILL_BATCH commands a write; the replies of a batch
 * are read after the next batch is sent, so the server always has work.
 * Returns 0 or -errno; a server error (-OOM...) is -EREMOTEIO.
 */
static int fill_range(struct conn *c, long from, long to, uint64_t *seed)
{
	static char batch[FILL_BATCH * SET_MAX];
	long pending = 0;

	for (long k = from; k < to;) {
		size_t len = 0;
		long n = 0, errs;
		int r;

		for (; k < to && n < FILL_BATCH; k++, n++)
			len += put_set(batch + len, k, seed);
		r = send_all(c->fd, batch, len);
		if (r < 0)
			return r;
		errs = read_status_replies(c, pending);
		if (errs)
			return errs < 0 ? (int)errs : -EREMOTEIO;
		pending = n;
	}
	return read_status_replies(c, pending) ? -EREMOTEIO : 0;
}

/*
 * Grows the keyspace until used_memory reaches @target: a first batch
 * measures the bytes a key costs, the bulk goes to 99% of the estimate,
 * small steps finish. Returns the number of keys, or -errno.
 */
static long fill_to_target(struct conn *c, long long target, uint64_t *seed)
{
	long first = target / 4096, keys = 0, step;

	first = first < 1024 ? 1024 : first > 65536 ? 65536 : first;
	step = first;

	for (;;) {
		const long long used = used_memory(c);
		int r;

		if (used < 0)
			return (long)used;
		if (used >= target)
			return keys;
		if (keys >= first) {
			const double per_key = (double)used / (double)keys;
			const long left =
				(long)((double)(target - used) / per_key);

			step = left > 8192 ? (long)(left * 0.99) : 4096;
		}
		r = fill_range(c, keys, keys + step, seed);
		if (r < 0)
			return r;
		keys += step;
	}
}

static int cmd_fill(int argc, char **argv)
{
	static struct conn c;
	long long target = -1;
	long keys = -1;
	uint64_t seed = 1;
	int port = 0, opt, r;
	double t0;

	while ((opt = getopt(argc, argv, "p:t:n:s:")) != -1) {
		switch (opt) {
		case 'p':
			port = atoi(optarg);
			break;
		case 't':
			target = atoll(optarg);
			break;
		case 'n':
			keys = atol(optarg);
			break;
		case 's':
			seed = strtoull(optarg, NULL, 0);
			break;
		default:
			return usage();
		}
	}
	if (port <= 0 || (target < 0) == (keys < 0))
		return usage();
	r = conn_open(&c, port);
	if (r < 0) {
		fprintf(stderr,
			"bench_redis_probe: fill: cannot connect to "
			"port %d: %s\n",
			port, strerror(-r));
		return 1;
	}
	t0 = mono_us();
	if (target >= 0)
		keys = fill_to_target(&c, target, &seed);
	else
		r = fill_range(&c, 0, keys, &seed);
	if (keys < 0 || r < 0) {
		fprintf(stderr, "bench_redis_probe: fill: %s\n",
			strerror(keys < 0 ? (int)-keys : -r));
		return 1;
	}
	printf("{\"keys\":%ld,\"used_memory_bytes\":%lld,\"seconds\":%.3f}\n",
	       keys, used_memory(&c), (mono_us() - t0) / 1e6);
	close(c.fd);
	return 0;
}

/* ---- the probe ----------------------------------------------------------- */

/* A probe's samples: when each SET was sent, and how long its reply took. */
struct sample {
	double t_ms, lat_us;
};

struct trace {
	struct sample *v;
	size_t n, cap;
};

static int trace_add(struct trace *t, struct sample x)
{
	if (t->n == t->cap) {
		const size_t cap = t->cap ? 2 * t->cap : 4096;
		struct sample *p = realloc(t->v, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		t->v = p;
		t->cap = cap;
	}
	t->v[t->n++] = x;
	return 0;
}

static int trace_write(const char *path, const struct trace *t)
{
	FILE *f = fopen(path, "w");

	if (!f)
		return -errno;
	for (size_t i = 0; i < t->n; i++)
		fprintf(f, "%.3f %.1f\n", t->v[i].t_ms, t->v[i].lat_us);
	return fclose(f) ? -errno : 0;
}

struct samples {
	double *v;
	size_t n, cap;
};

static int samples_add(struct samples *s, double v)
{
	if (s->n == s->cap) {
		const size_t cap = s->cap ? 2 * s->cap : 4096;
		double *p = realloc(s->v, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		s->v = p;
		s->cap = cap;
	}
	s->v[s->n++] = v;
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	const double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Nearest rank: the smallest sample with at least @q of them at or below. */
static double quantile(const double *sorted, size_t n, double q)
{
	size_t rank = (size_t)ceil(q * (double)n);

	return sorted[rank ? rank - 1 : 0];
}

static void print_stats(struct samples *s, long errors)
{
	if (!s->n) {
		printf("{\"samples\":0,\"errors\":%ld,\"p50_us\":null,"
		       "\"p99_us\":null,\"max_us\":null}\n",
		       errors);
		return;
	}
	qsort(s->v, s->n, sizeof(*s->v), cmp_double);
	printf("{\"samples\":%zu,\"errors\":%ld,\"p50_us\":%.1f,"
	       "\"p99_us\":%.1f,\"max_us\":%.1f}\n",
	       s->n, errors, quantile(s->v, s->n, 0.50),
	       quantile(s->v, s->n, 0.99), s->v[s->n - 1]);
}

/* One SET and its reply, timed; returns the latency in us, or -errno. */
static double probe_once(struct conn *c, long *errors)
{
	static const char cmd[] = "*3\r\n$3\r\nSET\r\n$7\r\nprobe:k\r\n"
				  "$1\r\nv\r\n";
	const double t0 = mono_us();
	long r = send_all(c->fd, cmd, sizeof(cmd) - 1);

	if (!r)
		r = read_status_replies(c, 1);
	if (r < 0)
		return (double)r;
	*errors += r;
	return mono_us() - t0;
}

/*
 * Sends on a fixed schedule: each send is due one interval after the
 * last one was due; a reply later than that moves the schedule to now,
 * so a stall is one long sample, not a burst of sends behind it. The
 * samples stay in memory until the end: a write to a file can wait on
 * the disk the saves are writing, and would hold the next send back.
 */
static int probe_loop(struct conn *c, long interval_us, struct trace *t,
		      long *errors)
{
	struct timespec due;

	clock_gettime(CLOCK_MONOTONIC, &due);
	while (!stop_requested) {
		const double t_ms = real_ms();
		const double lat = probe_once(c, errors);
		struct timespec now;

		if (lat < 0 && stop_requested)
			break;
		if (lat < 0)
			return (int)lat;
		if (trace_add(t, (struct sample){ t_ms, lat }) < 0)
			return -ENOMEM;
		due.tv_nsec += interval_us * 1000;
		due.tv_sec += due.tv_nsec / 1000000000;
		due.tv_nsec %= 1000000000;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec > due.tv_sec ||
		    (now.tv_sec == due.tv_sec && now.tv_nsec > due.tv_nsec))
			due = now;
		while (!stop_requested &&
		       clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &due,
				       NULL) == EINTR)
			;
	}
	return 0;
}

static int cmd_probe(int argc, char **argv)
{
	static struct conn c;
	const struct sigaction sa = { .sa_handler = on_stop }; /* no restart */
	struct samples s = { 0 };
	struct trace t = { 0 };
	const char *path = NULL;
	long interval_ms = 10, errors = 0;
	int port = 0, opt, r, w;

	while ((opt = getopt(argc, argv, "p:o:i:")) != -1) {
		switch (opt) {
		case 'p':
			port = atoi(optarg);
			break;
		case 'o':
			path = optarg;
			break;
		case 'i':
			interval_ms = atol(optarg);
			break;
		default:
			return usage();
		}
	}
	if (port <= 0 || !path || interval_ms <= 0)
		return usage();
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	r = conn_open(&c, port);
	if (!r) /* a first command, untimed: the server sets up the client */
		r = (int)fmin(probe_once(&c, &errors), 0);
	if (!r)
		r = probe_loop(&c, interval_ms * 1000, &t, &errors);
	if (r < 0)
		fprintf(stderr, "bench_redis_probe: probe: %s\n", strerror(-r));
	w = trace_write(path, &t);
	if (w < 0)
		fprintf(stderr, "bench_redis_probe: %s: %s\n", path,
			strerror(-w));
	for (size_t i = 0; i < t.n && !w; i++)
		w = samples_add(&s, t.v[i].lat_us);
	print_stats(&s, errors);
	free(s.v);
	free(t.v);
	return r < 0 || w < 0 || errors ? 1 : 0;
}

/* ---- the probe's file ---------------------------------------------------- */

static int trace_read(const char *path, struct trace *t)
{
	FILE *f = fopen(path, "r");
	struct sample x;
	int r = 0;

	*t = (struct trace){ 0 };
	if (!f)
		return -errno;
	while (!r && fscanf(f, "%lf %lf", &x.t_ms, &x.lat_us) == 2)
		r = trace_add(t, x);
	fclose(f);
	return r;
}

static int cmd_stats(int argc, char **argv)
{
	struct trace t;
	struct samples s = { 0 };
	double from = -INFINITY, to = INFINITY;
	int r;

	if (argc != 2 && argc != 4)
		return usage();
	if (argc == 4) {
		from = atof(argv[2]);
		to = atof(argv[3]);
	}
	r = trace_read(argv[1], &t);
	for (size_t i = 0; !r && i < t.n; i++)
		if (t.v[i].t_ms >= from && t.v[i].t_ms <= to)
			r = samples_add(&s, t.v[i].lat_us);
	if (r < 0) {
		fprintf(stderr, "bench_redis_probe: %s: %s\n", argv[1],
			strerror(-r));
		return 1;
	}
	print_stats(&s, 0);
	free(s.v);
	free(t.v);
	return s.n ? 0 : 1;
}

/* ---- redis-benchmark's output -------------------------------------------- */

/*
 * One run's figures. Its percentile and cumulative tables give points
 * (latency, requests at or below it) of its distribution.
 */
struct rb_run {
	long long requests;
	double rps, max_ms;
	size_t npts;
	double pt_ms[MAX_POINTS];
	long long pt_count[MAX_POINTS];
};

/* The summary's columns by name: "avg min p50 p95 p99 max" in 7.0. */
static void rb_summary(const char *header, const char *values, struct rb_run *r)
{
	char names[8][16];
	double v[8];
	const int nn = sscanf(header,
			      "%15s %15s %15s %15s %15s %15s %15s "
			      "%15s",
			      names[0], names[1], names[2], names[3], names[4],
			      names[5], names[6], names[7]);
	const int nv = sscanf(values, "%lf %lf %lf %lf %lf %lf %lf %lf", &v[0],
			      &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);

	for (int i = 0; i < nn && i < nv; i++)
		if (!strcmp(names[i], "max"))
			r->max_ms = v[i];
}

static int rb_read(const char *path, struct rb_run *r)
{
	FILE *f = fopen(path, "r");
	char line[512], prev[512] = "";

	memset(r, 0, sizeof(*r));
	r->max_ms = -1;
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		/* its progress lines end in \r, not \n */
		const char *cr = strrchr(line, '\r');
		const char *l = cr && cr[1] ? cr + 1 : line;
		double pct, ms;
		long long count;

		if (sscanf(l,
			   "%lf%% <= %lf milliseconds (cumulative count "
			   "%lld)",
			   &pct, &ms, &count) == 3 &&
		    r->npts < MAX_POINTS) {
			r->pt_ms[r->npts] = ms;
			r->pt_count[r->npts++] = count;
		}
		if (strstr(l, "requests completed"))
			sscanf(l, "%lld", &r->requests);
		sscanf(l, " throughput summary: %lf", &r->rps);
		if (strstr(prev, "avg") && strstr(prev, "max"))
			rb_summary(prev, l, r);
		snprintf(prev, sizeof(prev), "%s", l);
	}
	fclose(f);
	return r->requests > 0 && r->rps > 0 && r->npts && r->max_ms >= 0
		       ? 0
		       : -EPROTO;
}

/* Requests of run @r at or below @ms, as far as its points tell. */
static long long rb_at_or_below(const struct rb_run *r, double ms)
{
	long long c = 0;

	for (size_t i = 0; i < r->npts; i++)
		if (r->pt_ms[i] <= ms && r->pt_count[i] > c)
			c = r->pt_count[i];
	return c;
}

/*
 * The smallest latency any run printed at which the runs together have
 * at least @q of their requests at or below it. The count at a latency
 * is a lower bound between a run's points, so the figure errs high, by
 * at most the gap to the next point (0.1 ms below 2 ms, 1 ms above).
 */
static double rb_quantile(const struct rb_run *runs, size_t n, double q)
{
	long long total = 0;
	double best = INFINITY;

	for (size_t i = 0; i < n; i++)
		total += runs[i].requests;
	for (size_t i = 0; i < n; i++) {
		for (size_t p = 0; p < runs[i].npts; p++) {
			const double ms = runs[i].pt_ms[p];
			long long c = 0;

			if (ms >= best)
				continue;
			for (size_t j = 0; j < n; j++)
				c += rb_at_or_below(&runs[j], ms);
			if ((double)c >= q * (double)total)
				best = ms;
		}
	}
	return best;
}

static int cmd_rbstats(int argc, char **argv)
{
	static struct rb_run runs[MAX_RUNS];
	long long requests = 0;
	double seconds = 0, max_ms = 0;
	size_t n = 0;

	for (int i = 1; i < argc && n < MAX_RUNS; i++, n++) {
		if (rb_read(argv[i], &runs[n]) < 0) {
			fprintf(stderr,
				"bench_redis_probe: %s: not a finished "
				"redis-benchmark run\n",
				argv[i]);
			return 1;
		}
		requests += runs[n].requests;
		seconds += (double)runs[n].requests / runs[n].rps;
		max_ms = fmax(max_ms, runs[n].max_ms);
	}
	if (!n)
		return usage();
	printf("{\"runs\":%zu,\"requests\":%lld,\"seconds\":%.3f,"
	       "\"ops_s\":%.0f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,"
	       "\"max_ms\":%.3f}\n",
	       n, requests, seconds, (double)requests / seconds,
	       rb_quantile(runs, n, 0.50), rb_quantile(runs, n, 0.99), max_ms);
	return 0;
}

/* ---- svg ----------------------------------------------------------------- */

struct series {
	char label[64];
	const char *path;
	double start_ms, end_ms;
	struct trace t;
};

struct panel {
	const char *title;
	double xmax_s; /* the x axis's end; 0: after the last save's end */
	size_t nseries;
	struct series s[MAX_SERIES];
};

struct plot {
	const char *out, *title;
	double before_s, after_s; /* shown around each save */
	size_t npanels;
	struct panel p[MAX_PANELS];
};

/* One colour a method, the same in every panel. */
static const char *const colours[MAX_SERIES] = { "#d95f02", "#1f6fb4",
						 "#2ca02c", "#7b3294" };

static int series_parse(struct series *s, char *spec)
{
	char *save, *label = strtok_r(spec, ",", &save);
	char *path = strtok_r(NULL, ",", &save);
	char *start = strtok_r(NULL, ",", &save);
	char *end = strtok_r(NULL, ",", &save);

	if (!label || !path || !start || !end)
		return -EINVAL;
	snprintf(s->label, sizeof(s->label), "%s", label);
	s->path = path;
	s->start_ms = atof(start);
	s->end_ms = atof(end);
	return trace_read(path, &s->t);
}

static int in_window(const struct plot *pl, const struct series *s,
		     const struct sample *x)
{
	return x->t_ms >= s->start_ms - pl->before_s * 1e3 &&
	       x->t_ms <= s->end_ms + pl->after_s * 1e3;
}

/* Seconds since the save started, and latency in ms, over every series. */
static void panel_range(const struct plot *pl, const struct panel *p,
			double *xmax, double *ymin, double *ymax)
{
	*xmax = 0.1;
	*ymin = INFINITY;
	*ymax = 0;
	for (size_t i = 0; i < p->nseries; i++)
		*xmax = fmax(*xmax, (p->s[i].end_ms - p->s[i].start_ms) / 1e3 +
					    pl->after_s);
	if (p->xmax_s > 0)
		*xmax = p->xmax_s;
	for (size_t i = 0; i < p->nseries; i++) {
		const struct series *s = &p->s[i];

		for (size_t j = 0; j < s->t.n; j++) {
			if (!in_window(pl, s, &s->t.v[j]) ||
			    s->t.v[j].t_ms - s->start_ms > *xmax * 1e3)
				continue;
			*ymin = fmin(*ymin, s->t.v[j].lat_us / 1e3);
			*ymax = fmax(*ymax, s->t.v[j].lat_us / 1e3);
		}
	}
	if (*ymax <= 0)
		*ymin = *ymax = 1;
	*ymin = pow(10, floor(log10(fmax(*ymin, 0.001))));
	*ymax = pow(10, ceil(log10(fmax(*ymax, *ymin * 10))));
	if (*ymax < *ymin * 100)
		*ymax = *ymin * 100;
}

struct frame {
	double x0, y0, w, h; /* the plot area, in pixels */
	double xmin, xmax;   /* seconds */
	double lymin, lymax; /* log10 of ms */
};

static double fx(const struct frame *f, double s)
{
	return f->x0 + (s - f->xmin) / (f->xmax - f->xmin) * f->w;
}

static double fy(const struct frame *f, double ms)
{
	const double l = log10(fmax(ms, pow(10, f->lymin)));

	return f->y0 + f->h - (l - f->lymin) / (f->lymax - f->lymin) * f->h;
}

static void svg_text(FILE *o, double x, double y, const char *anchor,
		     const char *extra, const char *text)
{
	fprintf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\"%s>", x, y,
		anchor, extra);
	for (const char *c = text; *c; c++) {
		if (*c == '<')
			fputs("&lt;", o);
		else if (*c == '>')
			fputs("&gt;", o);
		else if (*c == '&')
			fputs("&amp;", o);
		else
			fputc(*c, o);
	}
	fputs("</text>\n", o);
}

/* @ms in s, ms or us, to three figures (@exact: as few as it takes). */
static void fmt_ms(char *buf, size_t len, double ms, int exact)
{
	const char *unit = ms >= 1000 ? "s" : ms >= 1 ? "ms" : "us";
	const double v = ms >= 1000 ? ms / 1000 : ms >= 1 ? ms : ms * 1000;
	const int prec = exact ? -1 : v >= 100 ? 0 : v >= 10 ? 1 : 2;

	if (prec < 0)
		snprintf(buf, len, "%g %s", v, unit);
	else
		snprintf(buf, len, "%.*f %s", prec, v, unit);
}

/* A step of 1, 2 or 5 times a power of ten giving about 10 ticks. */
static double nice_step(double span)
{
	const double raw = span / 10, mag = pow(10, floor(log10(raw)));

	return raw / mag < 1.5 ? mag : raw / mag < 3.5 ? 2 * mag : 5 * mag;
}

static void svg_axes(FILE *o, const struct frame *f)
{
	const double step = nice_step(f->xmax - f->xmin);
	char buf[32];

	fprintf(o,
		"<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
		"fill=\"none\" stroke=\"#444\"/>\n",
		f->x0, f->y0, f->w, f->h);
	for (double l = f->lymin; l <= f->lymax + 1e-9; l += 1) {
		const double y = fy(f, pow(10, l));

		fprintf(o,
			"<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" "
			"y2=\"%.1f\" stroke=\"#ddd\"/>\n",
			f->x0, y, f->x0 + f->w, y);
		fmt_ms(buf, sizeof(buf), pow(10, l), 1);
		svg_text(o, f->x0 - 6, y + 4, "end", "", buf);
	}
	for (double s = ceil(f->xmin / step) * step; s <= f->xmax + 1e-9;
	     s += step) {
		const double x = fx(f, s);

		fprintf(o,
			"<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" "
			"y2=\"%.1f\" stroke=\"#eee\"/>\n",
			x, f->y0, x, f->y0 + f->h);
		snprintf(buf, sizeof(buf), "%g", fabs(s) < 1e-9 ? 0 : s);
		svg_text(o, x, f->y0 + f->h + 16, "middle", "", buf);
	}
	svg_text(o, f->x0 + f->w / 2, f->y0 + f->h + 34, "middle", "",
		 "seconds since the save started");
	fprintf(o,
		"<text transform=\"translate(%.1f %.1f) rotate(-90)\" "
		"text-anchor=\"middle\">probe reply time</text>\n",
		f->x0 - 56, f->y0 + f->h / 2);
}

/*
 * The series as a polyline; per pixel column only the lowest and the
 * highest sample are kept, in their order, so every spike survives.
 */
static void svg_series(FILE *o, const struct plot *pl, const struct frame *f,
		       const struct series *s, const char *colour)
{
	long col = LONG_MIN;
	struct sample lo = { 0 }, hi = { 0 };
	int have = 0;

	fprintf(o,
		"<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.2\" "
		"stroke-linejoin=\"round\" points=\"",
		colour);
	for (size_t j = 0; j <= s->t.n; j++) {
		const struct sample *x = j < s->t.n ? &s->t.v[j] : NULL;
		const double sec = x ? (x->t_ms - s->start_ms) / 1e3 : 0;
		const long c = x ? (long)fx(f, sec) : LONG_MAX;

		if (x && (!in_window(pl, s, x) || sec > f->xmax))
			continue;
		if (c != col && have) {
			const struct sample *a = lo.t_ms < hi.t_ms ? &lo : &hi;
			const struct sample *b = a == &lo ? &hi : &lo;

			fprintf(o, "%.1f,%.1f %.1f,%.1f ",
				fx(f, (a->t_ms - s->start_ms) / 1e3),
				fy(f, a->lat_us / 1e3),
				fx(f, (b->t_ms - s->start_ms) / 1e3),
				fy(f, b->lat_us / 1e3));
			have = 0;
		}
		if (!x)
			break;
		if (!have || x->lat_us < lo.lat_us)
			lo = *x;
		if (!have || x->lat_us > hi.lat_us)
			hi = *x;
		have = 1;
		col = c;
	}
	fputs("\"/>\n", o);
}

static double series_max_ms(const struct series *s)
{
	double m = 0;

	for (size_t j = 0; j < s->t.n; j++)
		if (s->t.v[j].t_ms >= s->start_ms &&
		    s->t.v[j].t_ms <= s->end_ms)
			m = fmax(m, s->t.v[j].lat_us / 1e3);
	return m;
}

/* Where save @i ended, if within the axis, labelled on the side with room. */
static void svg_end_mark(FILE *o, const struct frame *f, const struct series *s,
			 size_t i)
{
	const double x = fx(f, (s->end_ms - s->start_ms) / 1e3);
	const int right = x < f->x0 + f->w / 2;
	char buf[96];

	if (x > f->x0 + f->w)
		return;
	fprintf(o,
		"<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
		"stroke=\"%s\" stroke-width=\"1.5\" "
		"stroke-dasharray=\"6 4\"/>\n",
		x, f->y0, x, f->y0 + f->h, colours[i]);
	snprintf(buf, sizeof(buf), "%s ends", s->label);
	svg_text(o, right ? x + 4 : x - 4, f->y0 + f->h - 8 - 16 * (double)i,
		 right ? "start" : "end", "", buf);
}

static void svg_legend(FILE *o, const struct frame *f, const struct series *s,
		       size_t i)
{
	const double y = f->y0 + 16 + 18 * (double)i;
	char buf[160], m[32];

	fprintf(o,
		"<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
		"stroke=\"%s\" stroke-width=\"3\"/>\n",
		f->x0 + f->w - 290, y - 4, f->x0 + f->w - 266, y - 4,
		colours[i]);
	fmt_ms(m, sizeof(m), series_max_ms(s), 0);
	snprintf(buf, sizeof(buf), "%s (max %s during the save)", s->label, m);
	svg_text(o, f->x0 + f->w - 260, y, "start", "", buf);
}

/* The start line, each save's end, and the legend. */
static void svg_marks(FILE *o, const struct frame *f, const struct panel *p)
{
	const double x0 = fx(f, 0);

	fprintf(o,
		"<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
		"stroke=\"#000\" stroke-width=\"1.5\"/>\n",
		x0, f->y0, x0, f->y0 + f->h);
	svg_text(o, x0 + 4, f->y0 + 14, "start", "", "saves start");
	for (size_t i = 0; i < p->nseries; i++) {
		svg_end_mark(o, f, &p->s[i], i);
		svg_legend(o, f, &p->s[i], i);
	}
}

static void svg_panel(FILE *o, const struct plot *pl, const struct panel *p,
		      double top)
{
	struct frame f = {
		.x0 = PLOT_L,
		.y0 = top + PLOT_T,
		.w = SVG_W - PLOT_L - PLOT_R,
		.h = PANEL_H - PLOT_T - PLOT_B,
		.xmin = -pl->before_s,
	};
	double ymin, ymax;

	panel_range(pl, p, &f.xmax, &ymin, &ymax);
	f.lymin = log10(ymin);
	f.lymax = log10(ymax);
	svg_text(o, f.x0, top + 22, "start", " font-weight=\"bold\"", p->title);
	svg_axes(o, &f);
	for (size_t i = 0; i < p->nseries; i++)
		svg_series(o, pl, &f, &p->s[i], colours[i]);
	svg_marks(o, &f, p);
}

static int svg_write(const struct plot *pl)
{
	const double h = TITLE_H + PANEL_H * (double)pl->npanels + NOTE_H;
	FILE *o = fopen(pl->out, "w");

	if (!o)
		return -errno;
	fprintf(o,
		"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" "
		"height=\"%.0f\" viewBox=\"0 0 %d %.0f\" "
		"font-family=\"sans-serif\" font-size=\"12\">\n"
		"<rect width=\"100%%\" height=\"100%%\" fill=\"#fff\"/>\n",
		SVG_W, h, SVG_W, h);
	svg_text(o, SVG_W / 2.0, 24, "middle",
		 " font-size=\"16\" font-weight=\"bold\"", pl->title);
	for (size_t i = 0; i < pl->npanels; i++)
		svg_panel(o, pl, &pl->p[i], TITLE_H + PANEL_H * (double)i);
	svg_text(o, 8, h - 8, "start", " fill=\"#555\"",
		 "probe: one SET every 10 ms on its own connection, reply "
		 "time (log scale); lines: each sample's pixel column keeps "
		 "its lowest and highest");
	fputs("</svg>\n", o);
	return fclose(o) ? -errno : 0;
}

static int cmd_svg(int argc, char **argv)
{
	static struct plot pl = { .before_s = 1, .after_s = 1 };
	struct panel *p = NULL;
	int opt, r = 0;

	while ((opt = getopt(argc, argv, "o:t:b:a:P:X:s:")) != -1 && !r) {
		switch (opt) {
		case 'o':
			pl.out = optarg;
			break;
		case 't':
			pl.title = optarg;
			break;
		case 'b':
			pl.before_s = atof(optarg);
			break;
		case 'a':
			pl.after_s = atof(optarg);
			break;
		case 'P':
			if (pl.npanels == MAX_PANELS)
				return usage();
			p = &pl.p[pl.npanels++];
			p->title = optarg;
			break;
		case 'X':
			if (!p)
				return usage();
			p->xmax_s = atof(optarg);
			break;
		case 's':
			if (!p || p->nseries == MAX_SERIES)
				return usage();
			r = series_parse(&p->s[p->nseries++], optarg);
			break;
		default:
			return usage();
		}
	}
	if (!r && (!pl.out || !pl.title || !pl.npanels))
		return usage();
	if (!r)
		r = svg_write(&pl);
	if (r < 0)
		fprintf(stderr, "bench_redis_probe: svg: %s\n", strerror(-r));
	return r < 0 ? 1 : 0;
}

/* ---- main ---------------------------------------------------------------- */

static int cmd_port(void)
{
	struct sockaddr_in sa = {
		.sin_family = AF_INET,
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	socklen_t len = sizeof(sa);
	const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    getsockname(fd, (struct sockaddr *)&sa, &len)) {
		perror("bench_redis_probe: port");
		return 1;
	}
	printf("%d\n", ntohs(sa.sin_port));
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage();
	if (!strcmp(argv[1], "port"))
		return cmd_port();
	if (!strcmp(argv[1], "fill"))
		return cmd_fill(argc - 1, argv + 1);
	if (!strcmp(argv[1], "probe"))
		return cmd_probe(argc - 1, argv + 1);
	if (!strcmp(argv[1], "stats"))
		return cmd_stats(argc - 1, argv + 1);
	if (!strcmp(argv[1], "rbstats"))
		return cmd_rbstats(argc - 1, argv + 1);
	if (!strcmp(argv[1], "svg"))
		return cmd_svg(argc - 1, argv + 1);
	return usage();
}
