/* SPDX-License-Identifier: MIT */
/*
 * A snapshot in a Ceph RADOS pool: see rs_rados.h and FORMAT.md.
 *
 * The head, all integers little-endian:
 *   magic "BGSRADOS" | u32 version (1) | u32 object size | u64 bytes |
 *   u64 data objects | 16 bytes upload id | u64 checksum per data object |
 *   u64 checksum of everything before it
 * Checksums are XXH3-64, as in the snapshot itself. A head is checked
 * whole (its own checksum, every count against the others and against
 * its length) before any of it is used.
 */
#include "rs_rados.h"
#include "rs_format.h"

#include <endian.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <rados/librados.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define HEAD_MAGIC    "BGSRADOS"
#define HEAD_VERSION  1u
#define HEAD_FIXED    48u	 /* bytes before the checksums */
#define MAX_OBJECTS   (1u << 24) /* 64 TiB in 4 MiB objects */
#define NAME_MAX_LEN  200u
#define DEFAULT_WAIT  30u
#define CACHE_OBJECTS 4u /* whole data objects a source keeps */

/* A data object a source read whole, checked. */
struct cached {
	uint64_t index;
	uint8_t *buf; /* NULL: empty */
	uint64_t used;
};

struct head;

static void stop_keeper(struct rs_rados *r);

/*
 * librados is loaded when a rados:// target is first used, not when a
 * program linked with bgsnap starts: it brings some thirty shared
 * libraries (C++, Ceph's common code) that every bgsnap command would load
 * otherwise, and a machine without Ceph runs bgsnap all the same.
 */
#define RADOS_FUNCTIONS(X)                                                     \
	X(rados_aio_create_completion2)                                        \
	X(rados_aio_get_return_value)                                          \
	X(rados_aio_read)                                                      \
	X(rados_aio_remove)                                                    \
	X(rados_aio_release)                                                   \
	X(rados_aio_wait_for_complete)                                         \
	X(rados_aio_write)                                                     \
	X(rados_conf_parse_env)                                                \
	X(rados_conf_read_file)                                                \
	X(rados_conf_set)                                                      \
	X(rados_connect)                                                       \
	X(rados_create)                                                        \
	X(rados_ioctx_create)                                                  \
	X(rados_ioctx_destroy)                                                 \
	X(rados_nobjects_list_close)                                           \
	X(rados_nobjects_list_next)                                            \
	X(rados_nobjects_list_open)                                            \
	X(rados_read)                                                          \
	X(rados_remove)                                                        \
	X(rados_shutdown)                                                      \
	X(rados_stat)                                                          \
	X(rados_create_write_op)                                               \
	X(rados_release_write_op)                                              \
	X(rados_write_op_create)                                               \
	X(rados_write_op_operate)                                              \
	X(rados_write_op_write_full)                                           \
	X(rados_write_full)

static struct {
#define X(f) __typeof__(f) *f;
	RADOS_FUNCTIONS(X)
#undef X
} lib;
static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static char lib_error[256]; /* why it could not be loaded, or "" */

static void lib_load(void)
{
	void *h = dlopen("librados.so.2", RTLD_NOW | RTLD_LOCAL);

	if (!h) {
		snprintf(lib_error, sizeof(lib_error),
			 "librados cannot be loaded (%s): install librados2",
			 dlerror());
		return;
	}
	/* The POSIX way to make a function pointer of dlsym's answer. */
#define X(f)                                                                   \
	*(void **)&lib.f = dlsym(h, #f);                                       \
	if (!lib.f) {                                                          \
		snprintf(lib_error, sizeof(lib_error),                         \
			 "librados.so.2 has no %s: too old", #f);              \
		return;                                                        \
	}
	RADOS_FUNCTIONS(X)
#undef X
}

bool bgs_rs_rados_available(char *why, size_t len)
{
	pthread_once(&lib_once, lib_load);
	if (why)
		snprintf(why, len, "%s", lib_error);
	return !lib_error[0];
}

/* A connection to a cluster and one pool: a handle's own, or shared by
 * several (bgs_rs_rados_open_shared), freed with the last of them. */
struct rs_conn {
	rados_t cluster;
	rados_ioctx_t io;
	bool have_io;
	_Atomic unsigned refs;
};

struct rs_rados {
	struct rs_conn *conn;
	rados_ioctx_t io; /* conn->io */
	char target[NAME_MAX_LEN + 16];
	char pool[NAME_MAX_LEN + 1];
	char name[NAME_MAX_LEN + 1];
	unsigned timeout_s;
	/* The upload: its id, and what it stored. */
	char upload[33];
	uint64_t bytes, nobjects;
	uint64_t *sums;
	size_t sums_cap;
	bool in_doubt;	    /* its head may have been written: keep its data */
	unsigned lease_s;   /* the upload's lease lasts this long */
	uint64_t leased_ns; /* when it was last asked for (monotonic) */
	/* The lease's keeper: a thread that renews it, so that a save that
	 * has nothing to store for a while (a slow scan, a parent compared
	 * page by page) keeps it all the same. */
	pthread_t keeper;
	bool keeping;
	bool keeper_stop; /* under keeper_lock */
	pthread_mutex_t keeper_lock;
	pthread_cond_t keeper_wake;
	/* Storing piece by piece (bgs_rs_rados_put): the data object being
	 * written, hashed as it comes. */
	struct rs_hashing *hashing;
	/* The upload's first failure (a put, a write under way, the keeper;
	 * any thread), with what it says, both under failed_lock: once set,
	 * every put fails with it, and on_failure is told. */
	_Atomic int failed;
	struct rs_diag failed_diag;
	pthread_mutex_t failed_lock;
	void (*on_failure)(void *arg);
	void *on_failure_arg;
	/* As a source (bgs_rs_rados_source): the head, and data objects
	 * read whole (lock). */
	uint8_t *src_raw;
	struct head *src;
	pthread_mutex_t lock;
	struct cached cache[CACHE_OBJECTS];
	uint64_t clock;
	_Atomic uint64_t bytes_read; /* of data objects, in place */
	/* An operation got no answer within the timeout: the cluster is
	 * taken for down, and nothing after waits the timeout again. Every
	 * read fails at once (a lazy restore's fill reads thousands of
	 * records), and a save that failed leaves what it stored, and its
	 * lease, for gc once the lease runs out, rather than wait a
	 * timeout for each removal. */
	_Atomic bool down;
};

/* A data object being written or read, and its buffer. */
struct slot {
	rados_completion_t c;
	uint8_t *buf;
	uint64_t index;
	size_t len;
};

static int fail(struct rs_diag *d, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* @ret, an operation's result; a timeout marks the cluster down. */
static int answered(struct rs_rados *r, int ret)
{
	if (ret == -ETIMEDOUT)
		atomic_store(&r->down, true);
	return ret;
}

static int fail(struct rs_diag *d, int code, const char *fmt, ...)
{
	va_list ap;

	if (d) {
		d->code = code;
		d->offset = 0;
		va_start(ap, fmt);
		vsnprintf(d->msg, sizeof(d->msg), fmt, ap);
		va_end(ap);
	}
	return code;
}

const char *bgs_rs_rados_why(const struct rs_rados *r, int err, char *buf,
			     size_t len)
{
	if (err == -ETIMEDOUT)
		snprintf(buf, len,
			 "no answer within %u s (is an OSD or monitor down?)",
			 r->timeout_s);
	else if (err == -EPERM || err == -EACCES)
		snprintf(buf, len,
			 "permission denied (the client key's caps on pool "
			 "'%s' do not allow it)",
			 r->pool);
	else
		snprintf(buf, len, "%s", strerror(-err));
	return buf;
}

static void data_name(const struct rs_rados *r, const char *upload,
		      uint64_t index, char *out, size_t len)
{
	snprintf(out, len, "%s.%s.%08" PRIx64, r->name, upload, index);
}

/* An object of an upload: NAME.<upload>.<index> or NAME.<upload>.lease. */
struct upload_object {
	char *oid;
	size_t name_len; /* the snapshot's name is oid[0, name_len) */
	bool lease;
};

static bool all_hex(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((p[i] >= '0' && p[i] <= '9') ||
		      (p[i] >= 'a' && p[i] <= 'f')))
			return false;
	return true;
}

static bool parse_upload_oid(const char *oid, struct upload_object *o)
{
	const size_t len = strlen(oid);
	const char *upload;
	size_t tail;

	if (len > 6 && !strcmp(oid + len - 6, ".lease"))
		tail = 6;
	else if (len > 9 && oid[len - 9] == '.' && all_hex(oid + len - 8, 8))
		tail = 9;
	else
		return false;
	/* A name of a byte at least, '.', the upload's 32 hex digits. */
	if (len < tail + 34)
		return false;
	upload = oid + len - tail - 32;
	if (upload[-1] != '.' || !all_hex(upload, 32))
		return false;
	o->name_len = (size_t)(upload - 1 - oid);
	o->lease = tail == 6;
	return o->name_len <= NAME_MAX_LEN;
}

/* ---- connecting ---------------------------------------------------------- */

static int parse_target(struct rs_rados *r, const char *target, bool pool_only,
			struct rs_diag *d)
{
	const char *pool = target + strlen("rados://");
	const char *slash = strchr(pool, '/');
	const size_t pool_len = slash ? (size_t)(slash - pool) : strlen(pool);
	const char *name = slash ? slash + 1 : "";
	struct upload_object o;

	if (pool_only && (!pool_len || pool_len > NAME_MAX_LEN || *name))
		return fail(d, -EINVAL,
			    "not rados://POOL (a pool of at most %u bytes)",
			    NAME_MAX_LEN);
	if (!pool_only && (!pool_len || !*name || pool_len > NAME_MAX_LEN ||
			   strlen(name) > NAME_MAX_LEN))
		return fail(d, -EINVAL,
			    "not rados://POOL/NAME (a pool and a name of at "
			    "most %u bytes each)",
			    NAME_MAX_LEN);
	/* gc would take a head of that shape for an upload's object. */
	if (!pool_only && parse_upload_oid(name, &o))
		return fail(d, -EINVAL,
			    "'%s' ends as a snapshot's data object or lease "
			    "does (.<32 hex digits>.<8 hex digits> or "
			    ".lease): not a snapshot name",
			    name);
	snprintf(r->pool, sizeof(r->pool), "%.*s", (int)pool_len, pool);
	snprintf(r->name, sizeof(r->name), "%s", name);
	snprintf(r->target, sizeof(r->target), "%s", target);
	return 0;
}

static int configure(struct rs_rados *r, const struct rs_rados_cfg *cfg,
		     struct rs_diag *d)
{
	char secs[16], e[320];
	static const char *const timeouts[] = { "rados_osd_op_timeout",
						"rados_mon_op_timeout",
						"client_mount_timeout" };
	int ret;

	ret = lib.rados_conf_read_file(r->conn->cluster,
				       cfg && cfg->conf ? cfg->conf : NULL);
	if (ret < 0)
		return fail(d, ret, "cannot read the Ceph configuration %s: %s",
			    cfg && cfg->conf
				    ? cfg->conf
				    : "(CEPH_CONF or /etc/ceph/ceph.conf)",
			    bgs_rs_rados_why(r, ret, e, sizeof(e)));
	ret = lib.rados_conf_parse_env(r->conn->cluster, NULL);
	if (ret < 0)
		return fail(d, ret, "CEPH_ARGS: %s",
			    bgs_rs_rados_why(r, ret, e, sizeof(e)));
	/* An OSD that is down makes librados wait for ever by default: the
	 * owner of a save, or a lazy restore, must not. */
	snprintf(secs, sizeof(secs), "%u", r->timeout_s);
	for (size_t i = 0; i < sizeof(timeouts) / sizeof(timeouts[0]); i++) {
		ret = lib.rados_conf_set(r->conn->cluster, timeouts[i], secs);
		if (ret < 0)
			return fail(d, ret, "setting %s: %s", timeouts[i],
				    strerror(-ret));
	}
	return 0;
}

static void conn_put(struct rs_conn *c)
{
	if (!c || atomic_fetch_sub(&c->refs, 1) != 1)
		return;
	if (c->have_io)
		lib.rados_ioctx_destroy(c->io);
	lib.rados_shutdown(c->cluster);
	free(c);
}

/* A handle for @target, not connected yet. */
static int handle_new(struct rs_rados **out, const char *target, bool pool_only,
		      unsigned timeout_s, struct rs_diag *d)
{
	struct rs_rados *r = calloc(1, sizeof(*r));
	int ret;

	*out = NULL;
	if (!r)
		return fail(d, -ENOMEM, "out of memory");
	if (!bgs_rs_rados_available(NULL, 0)) {
		free(r);
		return fail(d, -ENOTSUP, "%s", lib_error);
	}
	r->timeout_s = timeout_s ? timeout_s : DEFAULT_WAIT;
	ret = parse_target(r, target, pool_only, d);
	if (ret) {
		free(r);
		return ret;
	}
	pthread_mutex_init(&r->lock, NULL);
	pthread_mutex_init(&r->keeper_lock, NULL);
	pthread_mutex_init(&r->failed_lock, NULL);
	pthread_condattr_t ca;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->keeper_wake, &ca);
	pthread_condattr_destroy(&ca);
	*out = r;
	return 0;
}

/* Connect @r to its cluster and pool: a connection of its own. */
static int connect_own(struct rs_rados *r, const struct rs_rados_cfg *cfg,
		       struct rs_diag *d)
{
	char e[320];
	int ret;

	r->conn = calloc(1, sizeof(*r->conn));
	if (!r->conn)
		return fail(d, -ENOMEM, "out of memory");
	atomic_init(&r->conn->refs, 1);
	ret = lib.rados_create(&r->conn->cluster,
			       cfg && cfg->id ? cfg->id : NULL);
	if (ret < 0) {
		free(r->conn);
		r->conn = NULL;
		return fail(d, ret, "cannot set up the Ceph client: %s",
			    strerror(-ret));
	}
	ret = configure(r, cfg, d);
	if (!ret) {
		ret = lib.rados_connect(r->conn->cluster);
		if (ret < 0)
			fail(d, ret,
			     "cannot connect to the Ceph cluster as "
			     "client.%s: %s",
			     cfg && cfg->id ? cfg->id : "admin",
			     bgs_rs_rados_why(r, ret, e, sizeof(e)));
	}
	if (!ret) {
		ret = lib.rados_ioctx_create(r->conn->cluster, r->pool,
					     &r->conn->io);
		if (ret < 0)
			fail(d, ret, "pool '%s': %s", r->pool,
			     ret == -ENOENT
				     ? "no such pool"
				     : bgs_rs_rados_why(r, ret, e, sizeof(e)));
		r->conn->have_io = !ret;
		r->io = r->conn->io;
	}
	return ret;
}

static int open_target(struct rs_rados **out, const char *target,
		       bool pool_only, const struct rs_rados_cfg *cfg,
		       struct rs_diag *d)
{
	int ret = handle_new(out, target, pool_only,
			     cfg ? cfg->op_timeout_s : 0, d);

	if (!ret)
		ret = connect_own(*out, cfg, d);
	if (ret && *out) {
		bgs_rs_rados_close(*out);
		*out = NULL;
	}
	return ret;
}

int bgs_rs_rados_open(struct rs_rados **out, const char *target,
		      const struct rs_rados_cfg *cfg, struct rs_diag *d)
{
	return open_target(out, target, false, cfg, d);
}

int bgs_rs_rados_open_pool(struct rs_rados **out, const char *target,
			   const struct rs_rados_cfg *cfg, struct rs_diag *d)
{
	return open_target(out, target, true, cfg, d);
}

int bgs_rs_rados_open_shared(struct rs_rados **out, const char *target,
			     bool pool_only, const struct rs_rados *with,
			     struct rs_diag *d)
{
	int ret = handle_new(out, target, pool_only, with->timeout_s, d);

	if (ret)
		return ret;
	if (strcmp((*out)->pool, with->pool)) {
		bgs_rs_rados_close(*out);
		*out = NULL;
		return fail(d, -EINVAL, "not in pool '%s'", with->pool);
	}
	atomic_fetch_add(&with->conn->refs, 1);
	(*out)->conn = with->conn;
	(*out)->io = with->io;
	return 0;
}

const char *bgs_rs_rados_pool(const struct rs_rados *r)
{
	return r->pool;
}

void bgs_rs_rados_close(struct rs_rados *r)
{
	if (!r)
		return;
	stop_keeper(r);
	conn_put(r->conn);
	for (unsigned i = 0; i < CACHE_OBJECTS; i++)
		free(r->cache[i].buf);
	pthread_mutex_destroy(&r->lock);
	pthread_mutex_destroy(&r->keeper_lock);
	pthread_mutex_destroy(&r->failed_lock);
	pthread_cond_destroy(&r->keeper_wake);
	bgs_rs_hashing_free(r->hashing);
	free(r->src);
	free(r->src_raw);
	free(r->sums);
	free(r);
}

int bgs_rs_rados_exists(struct rs_rados *r)
{
	uint64_t size;
	time_t mtime;
	const int ret = lib.rados_stat(r->io, r->name, &size, &mtime);

	return ret == -ENOENT ? 0 : ret < 0 ? ret : 1;
}

/* ---- the head ------------------------------------------------------------ */

static size_t head_len(uint64_t nobjects)
{
	return HEAD_FIXED + (size_t)nobjects * 8 + 8;
}

static void put64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return le64toh(v);
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return le32toh(v);
}

static uint8_t *head_encode(const struct rs_rados *r, size_t *len)
{
	uint8_t *h = calloc(1, head_len(r->nobjects));
	uint32_t v;

	if (!h)
		return NULL;
	memcpy(h, HEAD_MAGIC, 8);
	v = htole32(HEAD_VERSION);
	memcpy(h + 8, &v, 4);
	v = htole32(RS_RADOS_OBJECT);
	memcpy(h + 12, &v, 4);
	put64(h + 16, r->bytes);
	put64(h + 24, r->nobjects);
	for (int i = 0; i < 16; i++) /* the id as its 32 hex digits' bytes */
		sscanf(r->upload + 2 * i, "%2hhx", &h[32 + i]);
	for (uint64_t i = 0; i < r->nobjects; i++)
		put64(h + HEAD_FIXED + i * 8, r->sums[i]);
	*len = head_len(r->nobjects);
	put64(h + *len - 8, bgs_rs_hash(h, *len - 8));
	return h;
}

/* A head read back: what it says, once every field is checked. */
struct head {
	uint32_t object_size;
	uint64_t bytes, nobjects;
	char upload[33];
	const uint8_t *sums;
};

static int head_decode(const uint8_t *h, size_t len, struct head *out,
		       struct rs_diag *d)
{
	uint64_t n;

	if (len < HEAD_FIXED + 8 || memcmp(h, HEAD_MAGIC, 8))
		return fail(d, RS_EBADMAGIC,
			    "the head object is not a bgsnap snapshot's");
	if (get32(h + 8) != HEAD_VERSION)
		return fail(d, RS_EVERSION,
			    "head version %u is not supported (1 is)",
			    get32(h + 8));
	if (get64(h + len - 8) != bgs_rs_hash(h, len - 8))
		return fail(d, RS_ECHECKSUM,
			    "the head object is damaged (checksum "
			    "mismatch)");
	out->object_size = get32(h + 12);
	out->bytes = get64(h + 16);
	n = get64(h + 24);
	/* N objects hold bytes: all but the last full, the last not empty
	 * (no sum here can overflow: N < 2^24, S <= 2^26). */
	if (out->object_size < 4096 || out->object_size > (64u << 20) ||
	    n > MAX_OBJECTS || head_len(n) != len ||
	    out->bytes > n * out->object_size ||
	    (n && out->bytes <= (n - 1) * out->object_size))
		return fail(d, RS_ECORRUPT,
			    "the head object's counts disagree (%" PRIu64
			    " bytes in %" PRIu64 " objects of %u bytes, %zu "
			    "bytes of head)",
			    out->bytes, n, out->object_size, len);
	out->nobjects = n;
	for (int i = 0; i < 16; i++)
		snprintf(out->upload + 2 * i, 3, "%02x", h[32 + i]);
	out->sums = h + HEAD_FIXED;
	return 0;
}

/* The head under the name into *@h (malloc'd) and @out; 0, -ENOENT when
 * there is none, or another error with @d set. */
static int head_read(struct rs_rados *r, const char *name, uint8_t **h,
		     struct head *out, struct rs_diag *d)
{
	uint64_t size;
	time_t mtime;
	char e[320];
	int ret = lib.rados_stat(r->io, name, &size, &mtime);

	*h = NULL;
	if (ret == -ENOENT)
		return fail(d, -ENOENT, "no such snapshot");
	if (ret < 0)
		return fail(d, ret, "reading its head: %s",
			    bgs_rs_rados_why(r, ret, e, sizeof(e)));
	if (size > head_len(MAX_OBJECTS) || size < HEAD_FIXED + 8)
		return fail(d, RS_ECORRUPT,
			    "the head object has an impossible size (%" PRIu64
			    " bytes)",
			    size);
	*h = malloc(size);
	if (!*h)
		return fail(d, -ENOMEM, "out of memory");
	ret = lib.rados_read(r->io, name, (char *)*h, size, 0);
	if (ret >= 0 && (uint64_t)ret != size)
		ret = -EIO; /* changed under us */
	if (ret < 0) {
		free(*h);
		*h = NULL;
		return fail(d, ret, "reading its head: %s",
			    bgs_rs_rados_why(r, ret, e, sizeof(e)));
	}
	ret = head_decode(*h, size, out, d);
	if (ret) {
		free(*h);
		*h = NULL;
	}
	return ret;
}

/* ---- the upload's lease --------------------------------------------------- */

/*
 * While a save uploads, it holds a lease on its data: the object
 * NAME.<upload>.lease, which says for how many seconds, rewritten every
 * quarter of that for as long as the save lives. 'bgsnap gc' takes an
 * upload that no head names for an orphan only once its lease ran out:
 * its mtime (which librados sets from the saving host's clock) against
 * gc's host's clock, so the two must agree, as NTP keeps them, within
 * what the lease has to spare (a live save's lease is at most a quarter
 * lease and a timeout old: 105 s to spare by default). A save in progress
 * is never collected, and one that was killed is, a lease later. A plain
 * object, not a RADOS lock: a key that may write the snapshot may write
 * it (locks need class-method caps). A head write that timed out and may
 * yet land keeps its data, and its lease, which it no longer renews: gc
 * takes the data a lease later if no head names it by then.
 *
 * A save whose process stopped for long (SIGSTOP, a debugger) may have
 * lost its data to gc meanwhile: it never renews a lease once half of it
 * has gone by on its own clock since it last asked, and fails rather than
 * publish. The keeper thread renews a quarter lease after the last
 * renewal, which took one operation timeout at most, so the lease is four
 * timeouts and a minute: a live save never gives up.
 */
#define LEASE_EXTRA_S 60u

static unsigned lease_seconds(unsigned timeout_s)
{
	/* The tests' knob: a killed save's lease runs out sooner. */
	const char *env = getenv("BGSNAP_RADOS_LEASE_SECONDS");
	const unsigned long v = env ? strtoul(env, NULL, 10) : 0;

	return v && v <= 86400 ? (unsigned)v : 4 * timeout_s + LEASE_EXTRA_S;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void lease_oid(const char *name, const char *upload, char *out,
		      size_t len)
{
	snprintf(out, len, "%s.%s.lease", name, upload);
}

static uint64_t lease_age_ns(const struct rs_rados *r)
{
	return now_ns() - r->leased_ns;
}

static int lease_lost(const struct rs_rados *r, struct rs_diag *d)
{
	return fail(d, -ETIMEDOUT,
		    "the save was held up for more than %u s and its data "
		    "may have been collected as an orphan ('bgsnap gc')",
		    r->lease_s / 2);
}

/* Take the upload's lease, or renew it while it surely still holds. */
static int hold_lease(struct rs_rados *r, bool renew, struct rs_diag *d)
{
	char oid[NAME_MAX_LEN + 64], text[16], e[320];
	const uint64_t t = now_ns();
	int ret;

	if (renew && lease_age_ns(r) >= (uint64_t)r->lease_s * 500000000u)
		return lease_lost(r, d);
	lease_oid(r->name, r->upload, oid, sizeof(oid));
	snprintf(text, sizeof(text), "%u\n", r->lease_s);
	ret = answered(r, lib.rados_write_full(r->io, oid, text, strlen(text)));
	if (ret < 0)
		return fail(d, ret, "writing its lease '%s': %s", oid,
			    bgs_rs_rados_why(r, ret, e, sizeof(e)));
	r->leased_ns = t;
	return 0;
}

static void drop_lease(struct rs_rados *r)
{
	char oid[NAME_MAX_LEN + 64];

	lease_oid(r->name, r->upload, oid, sizeof(oid));
	(void)lib.rados_remove(r->io, oid);
}

/* ---- storing ------------------------------------------------------------- */

/* The upload's first failure, and what it says: the later ones are its
 * consequences. Any thread. */
static void upload_failed(struct rs_rados *r, const struct rs_diag *d)
{
	bool first;

	pthread_mutex_lock(&r->failed_lock);
	first = !atomic_load(&r->failed);
	if (first) {
		r->failed_diag = *d;
		atomic_store(&r->failed, d->code);
	}
	pthread_mutex_unlock(&r->failed_lock);
	if (first && r->on_failure)
		r->on_failure(r->on_failure_arg);
}

int bgs_rs_rados_failure(struct rs_rados *r, struct rs_diag *d)
{
	int ret;

	pthread_mutex_lock(&r->failed_lock);
	ret = atomic_load(&r->failed);
	if (ret && d)
		*d = r->failed_diag;
	pthread_mutex_unlock(&r->failed_lock);
	return ret;
}

/* Renew the lease every quarter of it until stopped; a renewal that
 * fails (the cluster, or a save held up past half the lease) fails the
 * upload. */
static void *keeper_main(void *arg)
{
	struct rs_rados *r = arg;
	const uint64_t every_ns = (uint64_t)r->lease_s * 250000000u;

	pthread_mutex_lock(&r->keeper_lock);
	while (!r->keeper_stop) {
		const uint64_t due = r->leased_ns + every_ns;
		const struct timespec at = {
			.tv_sec = (time_t)(due / 1000000000u),
			.tv_nsec = (long)(due % 1000000000u)
		};
		struct rs_diag d = { 0 };

		if (pthread_cond_timedwait(&r->keeper_wake, &r->keeper_lock,
					   &at) != ETIMEDOUT ||
		    r->keeper_stop)
			continue;
		pthread_mutex_unlock(&r->keeper_lock);
		if (hold_lease(r, true, &d)) {
			upload_failed(r, &d); /* no lock held: it calls out */
			return NULL;
		}
		pthread_mutex_lock(&r->keeper_lock);
	}
	pthread_mutex_unlock(&r->keeper_lock);
	return NULL;
}

static int start_keeper(struct rs_rados *r, const cpu_set_t *cpus,
			struct rs_diag *d)
{
	pthread_attr_t attr;
	sigset_t all, old;
	int ret;

	r->keeper_stop = false;
	pthread_attr_init(&attr);
	if (cpus)
		pthread_attr_setaffinity_np(&attr, sizeof(*cpus), cpus);
	/* Every signal blocked, as in bgsnap's other threads: the caller's
	 * handlers are the caller's threads' business. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	ret = -pthread_create(&r->keeper, &attr, keeper_main, r);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	r->keeping = !ret;
	return ret ? fail(d, ret, "starting a thread: %s", strerror(-ret)) : 0;
}

/* Waits for a renewal under way (an operation timeout at most). */
static void stop_keeper(struct rs_rados *r)
{
	if (!r->keeping)
		return;
	pthread_mutex_lock(&r->keeper_lock);
	r->keeper_stop = true;
	pthread_cond_signal(&r->keeper_wake);
	pthread_mutex_unlock(&r->keeper_lock);
	pthread_join(r->keeper, NULL);
	r->keeping = false;
}

int bgs_rs_rados_upload_begin(struct rs_rados *r, const cpu_set_t *cpus,
			      void (*on_failure)(void *arg), void *arg,
			      struct rs_diag *d)
{
	uint8_t id[16];
	int ret;

	if (getrandom(id, sizeof(id), 0) != sizeof(id))
		return fail(d, -errno, "getrandom: %s", strerror(errno));
	for (int i = 0; i < 16; i++)
		snprintf(r->upload + 2 * i, 3, "%02x", id[i]);
	r->lease_s = lease_seconds(r->timeout_s);
	r->bytes = r->nobjects = 0;
	r->on_failure = on_failure;
	r->on_failure_arg = arg;
	if (r->hashing) /* a handle's earlier upload may have stopped halfway */
		(void)bgs_rs_hashing_end(r->hashing);
	else
		r->hashing = bgs_rs_hashing_new();
	if (!r->hashing)
		return fail(d, -ENOMEM, "out of memory");
	ret = hold_lease(r, false, d);
	return ret ? ret : start_keeper(r, cpus, d);
}

/* The slot's operation ended: its result, as an error that names it. */
static int finish(struct rs_rados *r, struct slot *s, const char *upload,
		  bool write, struct rs_diag *d)
{
	char oid[NAME_MAX_LEN + 64], e[320];
	int ret;

	if (!s->c)
		return 0;
	lib.rados_aio_wait_for_complete(s->c);
	ret = answered(r, lib.rados_aio_get_return_value(s->c));
	lib.rados_aio_release(s->c);
	s->c = NULL;
	if (ret >= 0)
		return write ? 0 : ret;
	data_name(r, upload, s->index, oid, sizeof(oid));
	if (!write && ret == -ENOENT)
		return fail(d, RS_ETRUNCATED, "data object '%s' is missing",
			    oid);
	return fail(d, ret, "%s data object '%s': %s",
		    write ? "writing" : "reading", oid,
		    bgs_rs_rados_why(r, ret, e, sizeof(e)));
}

static void finish_all(struct rs_rados *r, struct slot *slots,
		       const char *upload, bool write)
{
	for (unsigned i = 0; i < RS_RADOS_DEPTH; i++)
		finish(r, &slots[i], upload, write, NULL);
}

static struct slot *slots_new(void)
{
	struct slot *s = calloc(RS_RADOS_DEPTH, sizeof(*s));

	for (unsigned i = 0; s && i < RS_RADOS_DEPTH; i++) {
		s[i].buf = malloc(RS_RADOS_OBJECT);
		if (!s[i].buf) {
			while (i--)
				free(s[i].buf);
			free(s);
			return NULL;
		}
	}
	return s;
}

static void slots_free(struct slot *s)
{
	for (unsigned i = 0; i < RS_RADOS_DEPTH; i++)
		free(s[i].buf);
	free(s);
}

/* Room for the checksum of data object nobjects (the one being written). */
static int sums_room(struct rs_rados *r)
{
	if (r->nobjects < r->sums_cap)
		return 0;
	const size_t cap = r->sums_cap ? 2 * r->sums_cap : 256;
	uint64_t *p = realloc(r->sums, cap * sizeof(*p));

	if (!p)
		return -ENOMEM;
	r->sums = p;
	r->sums_cap = cap;
	return 0;
}

/* A write of bgs_rs_rados_put() under way. */
struct put {
	struct rs_rados *r;
	uint64_t index;
	void (*stored)(void *ticket, int res);
	void *ticket;
};

/* librados's thread: the write ended. Releasing the completion in its own
 * callback is safe: librados holds a reference of its own until after. */
static void put_done(rados_completion_t c, void *arg)
{
	struct put *p = arg;
	const int ret = answered(p->r, lib.rados_aio_get_return_value(c));

	if (ret < 0) {
		char oid[NAME_MAX_LEN + 64], e[320];
		struct rs_diag d;

		data_name(p->r, p->r->upload, p->index, oid, sizeof(oid));
		fail(&d, ret, "writing data object '%s': %s", oid,
		     bgs_rs_rados_why(p->r, ret, e, sizeof(e)));
		upload_failed(p->r, &d);
	}
	lib.rados_aio_release(c);
	p->stored(p->ticket, ret < 0 ? ret : 0);
	free(p);
}

int bgs_rs_rados_put(struct rs_rados *r, const void *buf, size_t len,
		     uint64_t pos, void (*stored)(void *ticket, int res),
		     void *ticket)
{
	const uint64_t index = pos / RS_RADOS_OBJECT;
	const size_t off = (size_t)(pos % RS_RADOS_OBJECT);
	char oid[NAME_MAX_LEN + 64], e[320];
	struct rs_diag d = { 0 };
	rados_completion_t c;
	struct put *p = NULL;
	int ret = atomic_load(&r->failed);

	if (ret)
		return ret;
	if (pos != r->bytes || !len || len > RS_RADOS_OBJECT - off)
		ret = fail(&d, -EINVAL, "a piece at %" PRIu64 " out of order",
			   pos);
	else if (index >= MAX_OBJECTS)
		ret = fail(&d, -EFBIG, "more than %u data objects",
			   MAX_OBJECTS);
	else if (sums_room(r) || !(p = malloc(sizeof(*p))))
		ret = fail(&d, -ENOMEM, "out of memory");
	if (ret) {
		upload_failed(r, &d);
		return ret;
	}
	*p = (struct put){ r, index, stored, ticket };
	bgs_rs_hashing_add(r->hashing, buf, len);
	data_name(r, r->upload, index, oid, sizeof(oid));
	lib.rados_aio_create_completion2(p, put_done, &c);
	/* librados copies @buf before this returns. */
	ret = lib.rados_aio_write(r->io, oid, c, buf, len, off);
	if (ret < 0) {
		lib.rados_aio_release(c);
		free(p);
		fail(&d, ret, "writing data object '%s': %s", oid,
		     bgs_rs_rados_why(r, ret, e, sizeof(e)));
		upload_failed(r, &d);
		return ret;
	}
	r->bytes += len;
	if (off + len == RS_RADOS_OBJECT) /* its room made above */
		r->sums[r->nobjects++] = bgs_rs_hashing_end(r->hashing);
	return 0;
}

int bgs_rs_rados_upload_end(struct rs_rados *r, struct rs_diag *d)
{
	int ret;

	stop_keeper(r);
	ret = bgs_rs_rados_failure(r, d);
	if (ret)
		return ret;
	if (r->bytes % RS_RADOS_OBJECT) /* the last, its room made by put */
		r->sums[r->nobjects++] = bgs_rs_hashing_end(r->hashing);
	return 0;
}

/* Up to @len bytes from @fd: fewer only at its end. */
static ssize_t read_full(int fd, uint8_t *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		const ssize_t n = read(fd, buf + got, len - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

static void room_back(void *ticket, int res)
{
	(void)res; /* the upload's failure, if any, is recorded */
	sem_post(ticket);
}

int bgs_rs_rados_upload(struct rs_rados *r, int fd, struct rs_diag *d)
{
	uint8_t *buf = malloc(RS_RADOS_OBJECT);
	sem_t room; /* writes that may be under way */
	int ret = buf ? bgs_rs_rados_upload_begin(r, NULL, NULL, NULL, d)
		      : fail(d, -ENOMEM, "out of memory");

	sem_init(&room, 0, RS_RADOS_DEPTH);
	for (uint64_t pos = 0; !ret;) {
		const ssize_t n = read_full(fd, buf, RS_RADOS_OBJECT);
		struct rs_diag e;

		if (n < 0) {
			fail(&e, (int)n, "reading the snapshot: %s",
			     strerror((int)-n));
			upload_failed(r, &e);
		}
		if (n <= 0)
			break;
		while (sem_wait(&room) && errno == EINTR)
			;
		if (bgs_rs_rados_put(r, buf, (size_t)n, pos, room_back,
				     &room)) {
			sem_post(&room);
			break;
		}
		pos += (size_t)n;
	}
	for (unsigned i = 0; i < RS_RADOS_DEPTH; i++)
		while (sem_wait(&room) && errno == EINTR)
			;
	sem_destroy(&room);
	free(buf);
	return ret ? ret : bgs_rs_rados_upload_end(r, d);
}

/* Best effort: a cluster that does not answer leaves the rest (named by
 * no head) rather than make the caller wait a timeout per object. */
static void remove_data(struct rs_rados *r, const char *upload,
			uint64_t nobjects)
{
	rados_completion_t c[RS_RADOS_DEPTH] = { 0 };
	char oid[NAME_MAX_LEN + 64];
	bool down = false;

	/* RS_RADOS_DEPTH at a time, as they were written. */
	for (uint64_t i = 0; i < nobjects + RS_RADOS_DEPTH; i++) {
		rados_completion_t *s = &c[i % RS_RADOS_DEPTH];

		if (*s) {
			lib.rados_aio_wait_for_complete(*s);
			down |= lib.rados_aio_get_return_value(*s) ==
				-ETIMEDOUT;
			lib.rados_aio_release(*s);
			*s = NULL;
		}
		if (i >= nobjects || down)
			continue;
		data_name(r, upload, i, oid, sizeof(oid));
		lib.rados_aio_create_completion2(NULL, NULL, s);
		if (lib.rados_aio_remove(r->io, oid, *s) < 0) {
			lib.rados_aio_release(*s);
			*s = NULL;
		}
	}
}

/*
 * The head's write failed with @err; but a write that timed out may still
 * be applied by the OSD, then or later. So the head is read back: ours,
 * the snapshot is in place after all; another's or none, it failed, and
 * its data may go; unreadable, no one can tell, and the data stays (named
 * by no head if the write never lands, an orphan rather than a head that
 * names nothing).
 */
static int publish_failed(struct rs_rados *r, int err, struct rs_diag *d)
{
	struct head now;
	uint8_t *raw = NULL;
	char e[320];
	/* A cluster that did not answer is not asked again. */
	const int ret = atomic_load(&r->down)
				? -ETIMEDOUT
				: head_read(r, r->name, &raw, &now, NULL);

	if (!ret && !strcmp(now.upload, r->upload)) {
		free(raw);
		return 0;
	}
	free(raw);
	r->in_doubt = ret && ret != -ENOENT;
	return fail(d, err, "writing its head: %s%s",
		    bgs_rs_rados_why(r, err, e, sizeof(e)),
		    r->in_doubt ? " (it may yet appear: its data is kept)"
				: "");
}

/* Write @h as the head; with @exclusive, only where there is none. */
static int write_head(struct rs_rados *r, const uint8_t *h, size_t len,
		      bool exclusive)
{
	rados_write_op_t op;
	int ret;

	if (!exclusive)
		return lib.rados_write_full(r->io, r->name, (const char *)h,
					    len);
	op = lib.rados_create_write_op();
	if (!op)
		return -ENOMEM;
	/* One operation, applied whole or not at all: created, or -EEXIST. */
	lib.rados_write_op_create(op, LIBRADOS_CREATE_EXCLUSIVE, NULL);
	lib.rados_write_op_write_full(op, (const char *)h, len);
	ret = lib.rados_write_op_operate(op, r->io, r->name, NULL, 0);
	lib.rados_release_write_op(op);
	return ret;
}

int bgs_rs_rados_publish(struct rs_rados *r, bool exclusive, struct rs_diag *d)
{
	struct head old;
	uint8_t *old_raw = NULL, *h;
	size_t len;
	int ret;

	/* The data is still ours (not collected as an orphan), and stays
	 * so while the head is written. */
	ret = hold_lease(r, true, d);
	if (ret)
		return ret;
	/* What it replaces, to remove once the new head is in place: a
	 * head that cannot be read is replaced all the same. */
	if (exclusive || head_read(r, r->name, &old_raw, &old, NULL))
		old_raw = NULL;
	h = head_encode(r, &len);
	if (!h) {
		free(old_raw);
		return fail(d, -ENOMEM, "out of memory");
	}
	/* Once more, right before: the process may have been stopped since
	 * (SIGSTOP, a debugger) for longer than the lease. */
	ret = lease_age_ns(r) >= (uint64_t)r->lease_s * 500000000u
		      ? lease_lost(r, d)
		      : answered(r, write_head(r, h, len, exclusive));
	free(h);
	if (ret == -EEXIST && exclusive)
		ret = fail(d, -EEXIST, "a snapshot already exists there");
	else if (ret < 0)
		ret = publish_failed(r, ret, d);
	if (!ret && old_raw)
		remove_data(r, old.upload, old.nobjects);
	if (!ret)
		drop_lease(r);
	free(old_raw);
	return ret;
}

void bgs_rs_rados_discard(struct rs_rados *r)
{
	stop_keeper(r);
	/* An upload named (its lease taken, or tried) and not in doubt. */
	if (r->upload[0] && !r->in_doubt && !atomic_load(&r->down)) {
		/* Every object a piece went to, the last one whole or not. */
		remove_data(r, r->upload,
			    (r->bytes + RS_RADOS_OBJECT - 1) / RS_RADOS_OBJECT);
		drop_lease(r);
	}
	r->nobjects = 0;
	r->bytes = 0;
}

/* ---- collecting orphans -------------------------------------------------- */

static const char *upload_of(const struct upload_object *o)
{
	return o->oid + o->name_len + 1;
}

static bool same_upload(const struct upload_object *a,
			const struct upload_object *b)
{
	return a->name_len == b->name_len &&
	       !memcmp(a->oid, b->oid, a->name_len + 33);
}

/* By name, then upload: an upload's objects side by side. */
static int by_upload(const void *a, const void *b)
{
	const struct upload_object *x = a, *y = b;
	const size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
	const int c = memcmp(x->oid, y->oid, n);

	if (c)
		return c;
	if (x->name_len != y->name_len)
		return x->name_len < y->name_len ? -1 : 1;
	return strcmp(upload_of(x), upload_of(y));
}

static void uploads_free(struct upload_object *o, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(o[i].oid);
	free(o);
}

/*
 * Call @each with the name of every object of the pool, in no order; a
 * non-zero return stops the walk and is returned as it is. Otherwise 0,
 * or the listing's error with @d set.
 */
static int walk_pool(struct rs_rados *r,
		     int (*each)(void *arg, const char *oid), void *arg,
		     struct rs_diag *d)
{
	rados_list_ctx_t ctx;
	const char *oid;
	char e[320];
	int stop = 0, ret = lib.rados_nobjects_list_open(r->io, &ctx);

	if (ret < 0)
		return fail(d, ret, "listing the pool: %s",
			    bgs_rs_rados_why(r, ret, e, sizeof(e)));
	while (!stop &&
	       (ret = lib.rados_nobjects_list_next(ctx, &oid, NULL, NULL)) == 0)
		stop = each(arg, oid);
	lib.rados_nobjects_list_close(ctx);
	if (stop)
		return stop;
	if (ret != -ENOENT) /* -ENOENT: the end of the list */
		return fail(d, ret, "listing the pool: %s",
			    bgs_rs_rados_why(r, ret, e, sizeof(e)));
	return 0;
}

struct heads_walk {
	const char *prefix;
	int (*each)(void *arg, const char *name);
	void *arg;
};

static int head_each(void *arg, const char *oid)
{
	const struct heads_walk *w = arg;
	struct upload_object o;

	if (strncmp(oid, w->prefix, strlen(w->prefix)) ||
	    parse_upload_oid(oid, &o))
		return 0;
	return w->each(w->arg, oid);
}

int bgs_rs_rados_list(struct rs_rados *r, const char *prefix,
		      int (*each)(void *arg, const char *name), void *arg,
		      struct rs_diag *d)
{
	struct heads_walk w = { prefix, each, arg };

	return walk_pool(r, head_each, &w, d);
}

struct uploads_walk {
	struct upload_object *o;
	size_t n, cap;
};

static int upload_each(void *arg, const char *oid)
{
	struct uploads_walk *w = arg;
	struct upload_object one;

	if (!parse_upload_oid(oid, &one))
		return 0;
	if (w->n == w->cap) {
		const size_t c = w->cap ? 2 * w->cap : 256;
		struct upload_object *p = realloc(w->o, c * sizeof(*p));

		if (!p)
			return -ENOMEM;
		w->o = p;
		w->cap = c;
	}
	one.oid = strdup(oid);
	if (!one.oid)
		return -ENOMEM;
	w->o[w->n++] = one;
	return 0;
}

/* Every object of an upload in the pool, sorted by upload. */
static int list_uploads(struct rs_rados *r, struct upload_object **out,
			size_t *count, struct rs_diag *d)
{
	struct uploads_walk w = { NULL, 0, 0 };
	const int ret = walk_pool(r, upload_each, &w, d);

	if (ret) {
		uploads_free(w.o, w.n);
		return ret == -ENOMEM ? fail(d, ret, "out of memory") : ret;
	}
	if (w.n)
		qsort(w.o, w.n, sizeof(*w.o), by_upload);
	*out = w.o;
	*count = w.n;
	return 0;
}

/* The upload the head @name names into @upload; 0 or -errno (-ENOENT:
 * no head). */
static int head_upload(struct rs_rados *r, const char *name, char *upload)
{
	struct head h;
	uint8_t *raw;
	const int ret = head_read(r, name, &raw, &h, NULL);

	if (!ret)
		memcpy(upload, h.upload, sizeof(h.upload));
	free(raw);
	return ret;
}

/* Does the lease @oid still hold at @now? 1, 0 or -errno. */
static int lease_holds(struct rs_rados *r, const char *oid, time_t now)
{
	char text[16];
	uint64_t size;
	time_t mtime;
	unsigned long secs;
	int ret = lib.rados_stat(r->io, oid, &size, &mtime);

	if (ret == -ENOENT)
		return 0;
	if (ret < 0)
		return ret;
	ret = lib.rados_read(r->io, oid, text, sizeof(text) - 1, 0);
	if (ret == -ENOENT)
		return 0;
	if (ret < 0)
		return ret;
	text[ret] = '\0';
	secs = strtoul(text, NULL, 10);
	/* One that says nothing sensible lasts the longest a save's may. */
	if (!secs || secs > 86400)
		secs = 86400;
	/* mtime is whole seconds: a second more, to be sure. */
	return now <= mtime + (time_t)secs + 1;
}

static uint64_t bytes_of(struct rs_rados *r, const struct upload_object *o,
			 size_t n)
{
	uint64_t total = 0, size;
	time_t mtime;

	for (size_t i = 0; i < n; i++)
		if (lib.rados_stat(r->io, o[i].oid, &size, &mtime) == 0)
			total += size;
	return total;
}

/* Remove the objects, RS_RADOS_DEPTH at a time; the first error. */
static int remove_objects(struct rs_rados *r, const struct upload_object *o,
			  size_t n)
{
	rados_completion_t c[RS_RADOS_DEPTH] = { 0 };
	int err = 0;

	for (size_t i = 0; i < n + RS_RADOS_DEPTH; i++) {
		rados_completion_t *s = &c[i % RS_RADOS_DEPTH];
		int ret;

		if (*s) {
			lib.rados_aio_wait_for_complete(*s);
			ret = lib.rados_aio_get_return_value(*s);
			lib.rados_aio_release(*s);
			*s = NULL;
			if (ret < 0 && ret != -ENOENT && !err)
				err = ret;
		}
		if (i >= n || err == -ETIMEDOUT)
			continue;
		lib.rados_aio_create_completion2(NULL, NULL, s);
		ret = lib.rados_aio_remove(r->io, o[i].oid, *s);
		if (ret < 0) {
			lib.rados_aio_release(*s);
			*s = NULL;
			if (!err)
				err = ret;
		}
	}
	return err;
}

/*
 * Is the upload [@o, +@n) an orphan: no live lease, and (read after the
 * lease, as a save publishes in the other order: head, then drop the
 * lease) no head that names it? Fills @out's state; false if it is not
 * one at all.
 */
static bool judge(struct rs_rados *r, const char *name, time_t now,
		  struct rs_orphan *out)
{
	char live[33], lease[NAME_MAX_LEN + 64];
	int ret;

	/* By its name, listed or not: one written while the pool was listed
	 * may have been passed by (a pool is listed a placement group at a
	 * time), and a save writes its lease before any data. */
	lease_oid(name, out->upload, lease, sizeof(lease));
	ret = lease_holds(r, lease, now);
	if (ret) {
		out->state = ret > 0 ? RS_ORPHAN_BUSY : RS_ORPHAN_UNSURE;
		out->error = ret < 0 ? ret : 0;
		return true;
	}
	ret = head_upload(r, name, live);
	if (!ret && !strcmp(live, out->upload))
		return false;
	out->state = ret && ret != -ENOENT ? RS_ORPHAN_UNSURE : RS_ORPHAN;
	out->error = out->state == RS_ORPHAN_UNSURE ? ret : 0;
	return true;
}

/* Remove an orphan: its lease first (listed or not), then its data. */
static int remove_orphan(struct rs_rados *r, const char *name,
			 const char *upload, const struct upload_object *o,
			 size_t n)
{
	char lease[NAME_MAX_LEN + 64];
	size_t at = n;
	int ret;

	lease_oid(name, upload, lease, sizeof(lease));
	ret = lib.rados_remove(r->io, lease);
	if (ret < 0 && ret != -ENOENT)
		return ret;
	for (size_t i = 0; i < n; i++)
		if (o[i].lease)
			at = i;
	ret = remove_objects(r, o, at);
	if (!ret && at + 1 < n)
		ret = remove_objects(r, o + at + 1, n - at - 1);
	return ret;
}

int bgs_rs_rados_gc(struct rs_rados *r, bool dry_run,
		    int (*each)(void *arg, const struct rs_orphan *o),
		    void *arg, struct rs_diag *d)
{
	struct upload_object *o = NULL;
	char name[NAME_MAX_LEN + 1], upload[33];
	size_t n = 0, j;
	time_t now;
	int ret = list_uploads(r, &o, &n, d);

	if (ret)
		return ret;
	/* An object's mtime is the clock of the host that wrote it: the
	 * saving host's and this one's must agree, as NTP keeps them. */
	now = time(NULL);
	for (size_t i = 0; !ret && i < n; i = j) {
		struct rs_orphan found = { .name = name, .upload = upload };

		for (j = i + 1; j < n && same_upload(&o[i], &o[j]); j++)
			;
		snprintf(name, sizeof(name), "%.*s", (int)o[i].name_len,
			 o[i].oid);
		memcpy(upload, upload_of(&o[i]), 32);
		upload[32] = '\0';
		if (!judge(r, name, now, &found))
			continue;
		found.objects = j - i;
		found.bytes = bytes_of(r, o + i, j - i);
		if (found.state == RS_ORPHAN && !dry_run)
			found.error =
				remove_orphan(r, name, upload, o + i, j - i);
		ret = each ? each(arg, &found) : 0;
	}
	uploads_free(o, n);
	return ret;
}

/* ---- reading ------------------------------------------------------------- */

/* Check the data object in slot @s against the head, then write it. */
static int take_object(struct rs_rados *r, const struct head *h,
		       const struct slot *s, size_t got, int fd,
		       struct rs_diag *d)
{
	char oid[NAME_MAX_LEN + 64];
	ssize_t n;

	data_name(r, h->upload, s->index, oid, sizeof(oid));
	if (got != s->len)
		return fail(d, RS_ETRUNCATED,
			    "data object '%s' holds %zu bytes, the head "
			    "says %zu",
			    oid, got, s->len);
	if (bgs_rs_hash(s->buf, s->len) != get64(h->sums + s->index * 8))
		return fail(d, RS_ECHECKSUM,
			    "data object '%s' is damaged (checksum "
			    "mismatch)",
			    oid);
	n = pwrite(fd, s->buf, s->len, (off_t)(s->index * h->object_size));
	if (n != (ssize_t)s->len)
		return fail(d, n < 0 ? -errno : -EIO,
			    "writing the local copy: %s",
			    strerror(n < 0 ? errno : EIO));
	return 0;
}

int bgs_rs_rados_download(struct rs_rados *r, int fd, struct rs_diag *d)
{
	struct slot *slots = NULL;
	struct head h;
	uint8_t *raw;
	uint64_t next = 0, done = 0;
	int ret = head_read(r, r->name, &raw, &h, d);

	if (ret)
		return ret;
	if (h.object_size > RS_RADOS_OBJECT) {
		ret = fail(d, RS_ECORRUPT,
			   "data objects of %u bytes: at most %u are read",
			   h.object_size, RS_RADOS_OBJECT);
		goto out;
	}
	slots = slots_new();
	if (!slots) {
		ret = fail(d, -ENOMEM, "out of memory");
		goto out;
	}
	/* RS_RADOS_DEPTH reads in flight, taken in order. */
	while (!ret && done < h.nobjects) {
		while (next < h.nobjects && next < done + RS_RADOS_DEPTH) {
			struct slot *s = &slots[next % RS_RADOS_DEPTH];
			char oid[NAME_MAX_LEN + 64];

			s->index = next;
			s->len = next + 1 < h.nobjects
					 ? h.object_size
					 : h.bytes - next * h.object_size;
			data_name(r, h.upload, next, oid, sizeof(oid));
			lib.rados_aio_create_completion2(NULL, NULL, &s->c);
			ret = lib.rados_aio_read(r->io, oid, s->c,
						 (char *)s->buf, h.object_size,
						 0);
			if (ret < 0) {
				lib.rados_aio_release(s->c);
				s->c = NULL;
				fail(d, ret, "reading data object '%s': %s",
				     oid, strerror(-ret));
				break;
			}
			next++;
		}
		if (ret)
			break;
		struct slot *s = &slots[done % RS_RADOS_DEPTH];
		const int got = finish(r, s, h.upload, false, d);

		ret = got < 0 ? got : take_object(r, &h, s, (size_t)got, fd, d);
		done++;
	}
	finish_all(r, slots, h.upload, false);
	if (!ret && ftruncate(fd, (off_t)h.bytes))
		ret = fail(d, -errno, "sizing the local copy: %s",
			   strerror(errno));
out:
	if (slots)
		slots_free(slots);
	free(raw);
	return ret;
}

/* ---- a source: reading in place ------------------------------------------ */

/*
 * A lazy restore reads records where its faults fall, and then the rest
 * in order. A record-sized read (WHOLE_MIN to WHOLE_MAX bytes) in the
 * data object of its thread's last such read, or in one next to it,
 * takes the whole object, checked against the head, and keeps it for the
 * reads that follow: the fill, and faults that walk the memory either
 * way (read-ahead). Any other reads only its own bytes, one read, which
 * the record's own checksums cover: a fault far from the last (a whole
 * object costs it 8-16 ms here, its record a small read); the reads that
 * open the snapshot, and its index, before the owner may resume (a whole
 * object there cost 4-14 ms of a 1 GiB restore's resume).
 *
 * (Continuing the thread's last read is no sign: the reader reads a
 * record's header and then its payload, so every payload continues.)
 */
#define WHOLE_MIN 4096u
#define WHOLE_MAX (RS_RADOS_OBJECT / 8)

/* This thread's last record-sized read: its source and data object. */
static __thread const struct rs_rados *last_source;
static __thread uint64_t last_object;

static bool cache_copy(struct rs_rados *r, uint64_t index, uint64_t in,
		       void *buf, size_t len)
{
	bool hit = false;

	pthread_mutex_lock(&r->lock);
	for (unsigned i = 0; i < CACHE_OBJECTS && !hit; i++) {
		struct cached *c = &r->cache[i];

		if (c->buf && c->index == index) {
			c->used = ++r->clock;
			memcpy(buf, c->buf + in, len);
			hit = true;
		}
	}
	pthread_mutex_unlock(&r->lock);
	return hit;
}

/* Keep @obj (malloc'd, data object @index), in place of the least
 * recently used; freed if another thread kept the same one first. */
static void cache_put(struct rs_rados *r, uint64_t index, uint8_t *obj)
{
	struct cached *v = &r->cache[0];

	pthread_mutex_lock(&r->lock);
	for (unsigned i = 0; i < CACHE_OBJECTS && v; i++) {
		struct cached *c = &r->cache[i];

		if (c->buf && c->index == index)
			v = NULL;
		else if (!c->buf || (v->buf && c->used < v->used))
			v = c;
	}
	if (v) {
		free(v->buf);
		*v = (struct cached){ index, obj, ++r->clock };
		obj = NULL;
	}
	pthread_mutex_unlock(&r->lock);
	free(obj);
}

static uint64_t object_len(const struct head *h, uint64_t index)
{
	return index + 1 < h->nobjects ? h->object_size
				       : h->bytes - index * h->object_size;
}

/* librados's answer to a read of @want bytes, as a reader's error. */
static int read_result(int ret, uint64_t want)
{
	if (ret == -ENOENT)
		return RS_ETRUNCATED; /* the data object is missing */
	if (ret >= 0 && (uint64_t)ret != want)
		return RS_ETRUNCATED;
	return ret < 0 ? ret : 0;
}

/* Data object @index whole, checked, into the cache. */
static int fetch_whole(struct rs_rados *r, uint64_t index)
{
	const struct head *h = r->src;
	const uint64_t len = object_len(h, index);
	char oid[NAME_MAX_LEN + 64];
	uint8_t *obj = malloc(len);
	int ret;

	if (!obj)
		return -ENOMEM;
	data_name(r, h->upload, index, oid, sizeof(oid));
	ret = read_result(lib.rados_read(r->io, oid, (char *)obj, len, 0), len);
	if (!ret)
		atomic_fetch_add(&r->bytes_read, len);
	if (!ret && bgs_rs_hash(obj, len) != get64(h->sums + index * 8))
		ret = RS_ECHECKSUM;
	if (ret) {
		free(obj);
		return ret;
	}
	cache_put(r, index, obj);
	return 0;
}

/* @n bytes at @in of data object @index: from the cache, else the whole
 * object when @whole, else (or if it was evicted at once) its own. */
static int read_piece(struct rs_rados *r, uint64_t index, uint64_t in,
		      uint8_t *p, size_t n, bool whole)
{
	char oid[NAME_MAX_LEN + 64];
	int ret;

	if (cache_copy(r, index, in, p, n))
		return 0;
	if (whole) {
		ret = fetch_whole(r, index);
		if (ret || cache_copy(r, index, in, p, n))
			return ret;
	}
	data_name(r, r->src->upload, index, oid, sizeof(oid));
	ret = read_result(lib.rados_read(r->io, oid, (char *)p, n, in), n);
	if (!ret)
		atomic_fetch_add(&r->bytes_read, n);
	return ret;
}

static int source_read(void *ctx, void *buf, size_t len, uint64_t off)
{
	struct rs_rados *r = ctx;
	const struct head *h = r->src;
	const uint64_t object = off / h->object_size;
	const bool record = len >= WHOLE_MIN && len <= WHOLE_MAX;
	uint8_t *p = buf;
	bool near;

	if (off > h->bytes || len > h->bytes - off)
		return RS_ETRUNCATED;
	if (atomic_load(&r->down))
		return -ETIMEDOUT;
	near = record && last_source == r && object + 1 >= last_object &&
	       object <= last_object + 1;
	if (record) {
		last_source = r;
		last_object = object;
	}
	while (len) {
		const uint64_t index = off / h->object_size;
		const uint64_t in = off % h->object_size;
		uint64_t left;
		size_t n;
		int ret;

		if (index >= h->nobjects) /* the head's checks make it so */
			return RS_ECORRUPT;
		left = object_len(h, index) - in;
		n = len < left ? len : (size_t)left;
		ret = read_piece(r, index, in, p, n, near);
		if (ret == -ETIMEDOUT)
			atomic_store(&r->down, true);
		if (ret)
			return ret;
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

uint64_t bgs_rs_rados_bytes_read(const struct rs_rados *r)
{
	return atomic_load(&r->bytes_read);
}

int bgs_rs_rados_source(struct rs_rados *r, struct rs_source *src,
			struct rs_diag *d)
{
	struct head h;
	int ret;

	if (!r->src) {
		ret = head_read(r, r->name, &r->src_raw, &h, d);
		if (ret)
			return ret;
		r->src = malloc(sizeof(*r->src));
		if (!r->src)
			return fail(d, -ENOMEM, "out of memory");
		*r->src = h;
	}
	*src = (struct rs_source){ .read = source_read,
				   .ctx = r,
				   .size = r->src->bytes };
	return 0;
}
