/* SPDX-License-Identifier: MIT */
/*
 * rados://POOL/NAME wherever a snapshot file goes (ramstore/rs_rados.h has
 * the layout).
 *
 * A save writes its snapshot, byte for byte what a file would get, as data
 * objects: the writer's queue hands each piece of its buffers over
 * (rs_wq_sink), and a putter thread gives it to librados, several in
 * flight, with no pipe and no copy of bgsnap's own between; once
 * the writer has committed, the head is written, and only then does the
 * snapshot exist under its name. The owner's faults never wait for the
 * cluster: the writer's rules for a slow disk (a reserved overflow for
 * faulted pages, the scan waits) hold for a slow cluster alike. If the
 * cluster fails (an OSD down past the operation timeout, a key without
 * write caps), the write that failed fails the save as soon as the
 * copier sees it (its completion wakes the copier); the data stored is
 * removed.
 *
 * Reading (info, verify, export, an eager restore, a parent) fetches the
 * snapshot, every data object checked against the head, into an unnamed
 * temporary file, and reads that: every check of a snapshot file applies
 * unchanged. A lazy restore reads in place (bgs_snap_rados_in_open).
 * Flatten writes a temporary file too, then stores it.
 *
 * Connections: each target connects on its own, unless the program keeps
 * the pool's connection (bgsnap_ceph_connect); the table of kept ones is
 * changed under config.lock, and a handle opened on one holds a reference
 * to it, so dropping it from the table never pulls it from under a user.
 */
#include "snap_internal.h"
#include "rs_wqueue.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef BGSNAP_HAVE_RADOS
#include "rs_rados.h"

bool bgs_snap_rados_available(char *why, size_t len)
{
	return bgs_rs_rados_available(why, len);
}

#define KEPT_MAX 8 /* pools whose connection is kept (bgsnap_ceph_connect) */

/* The process-wide choice of cluster (bgsnap_ceph_config), and the
 * connections kept for later targets. */
static struct {
	pthread_mutex_t lock;
	char *conf, *id;
	unsigned timeout_s;
	struct rs_rados *kept[KEPT_MAX];
} config = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* The kept connection to the pool of @target, or NULL. Under the lock. */
static struct rs_rados *kept_for(const char *target)
{
	const char *pool = target + strlen("rados://");
	const size_t len = strcspn(pool, "/");

	for (int i = 0; i < KEPT_MAX; i++) {
		const char *p =
			config.kept[i] ? bgs_rs_rados_pool(config.kept[i]) : "";

		if (config.kept[i] && strlen(p) == len && !memcmp(p, pool, len))
			return config.kept[i];
	}
	return NULL;
}

BGSNAP_API int bgsnap_ceph_config(const char *conf, const char *id,
				  unsigned op_timeout_s)
{
	char *c = conf ? strdup(conf) : NULL, *i = id ? strdup(id) : NULL;
	struct rs_rados *old[KEPT_MAX];

	if ((conf && !c) || (id && !i)) {
		free(c);
		free(i);
		return -ENOMEM;
	}
	pthread_mutex_lock(&config.lock);
	free(config.conf);
	free(config.id);
	config.conf = c;
	config.id = i;
	config.timeout_s = op_timeout_s;
	/* Made with the old settings: dropped (those in use live on), and
	 * closed once unlocked (a shutdown may take a while). */
	memcpy(old, config.kept, sizeof(old));
	memset(config.kept, 0, sizeof(config.kept));
	pthread_mutex_unlock(&config.lock);
	for (int k = 0; k < KEPT_MAX; k++)
		bgs_rs_rados_close(old[k]);
	return 0;
}

/* A connection of its own for @target, as bgsnap_ceph_config() says. */
static int connect_new(struct rs_rados **r, const char *target, bool pool_only,
		       struct rs_diag *diag)
{
	struct rs_rados_cfg cfg;
	char *conf, *id;
	bool oom;
	int ret;

	/* Copied: a connect may take the whole timeout, and must not hold
	 * up another target's, or bgsnap_ceph_config. */
	pthread_mutex_lock(&config.lock);
	conf = config.conf ? strdup(config.conf) : NULL;
	id = config.id ? strdup(config.id) : NULL;
	cfg = (struct rs_rados_cfg){ .conf = conf,
				     .id = id,
				     .op_timeout_s = config.timeout_s };
	oom = (config.conf && !conf) || (config.id && !id);
	pthread_mutex_unlock(&config.lock);
	*r = NULL;
	if (oom) {
		snprintf(diag->msg, sizeof(diag->msg), "out of memory");
		ret = -ENOMEM;
	} else if (pool_only)
		ret = bgs_rs_rados_open_pool(r, target, &cfg, diag);
	else
		ret = bgs_rs_rados_open(r, target, &cfg, diag);
	free(conf);
	free(id);
	return ret;
}

/* A handle for @target: on the pool's kept connection, else its own. */
static int connect_to(struct rs_rados **r, const char *target, bool pool_only,
		      struct rs_diag *diag)
{
	struct rs_rados *kept;
	int ret;

	pthread_mutex_lock(&config.lock);
	kept = kept_for(target);
	ret = kept ? bgs_rs_rados_open_shared(r, target, pool_only, kept, diag)
		   : 0;
	pthread_mutex_unlock(&config.lock);
	return kept ? ret : connect_new(r, target, pool_only, diag);
}

BGSNAP_API int bgsnap_ceph_connect(const char *pool, char *err, size_t err_len)
{
	struct rs_diag diag = { .msg = "" };
	struct rs_rados *r = NULL;
	int ret = -EINVAL, slot = -1;

	if (pool && !strncmp(pool, "rados://", 8))
		ret = connect_new(&r, pool, true, &diag);
	else
		snprintf(diag.msg, sizeof(diag.msg), "not rados://POOL");
	if (!ret) {
		pthread_mutex_lock(&config.lock);
		for (int i = 0; i < KEPT_MAX && slot < 0; i++)
			if (!config.kept[i] ||
			    !strcmp(bgs_rs_rados_pool(config.kept[i]),
				    bgs_rs_rados_pool(r)))
				slot = i;
		if (slot >= 0) {
			/* A new connection replaces one to the same pool
			 * (which lives on while in use), closed below. */
			struct rs_rados *replaced = config.kept[slot];

			config.kept[slot] = r;
			r = replaced;
		}
		pthread_mutex_unlock(&config.lock);
		if (slot < 0) {
			snprintf(diag.msg, sizeof(diag.msg),
				 "connections to %d pools are kept already, "
				 "the most",
				 KEPT_MAX);
			ret = -ENOSPC;
		}
		bgs_rs_rados_close(r);
	}
	if (ret && err && err_len)
		snprintf(err, err_len, "%s: %s", pool ? pool : "(null)",
			 diag.msg[0] ? diag.msg : strerror(-ret));
	return ret;
}

/* A temporary file with no name: where $TMPDIR says, else /var/tmp. */
static int unnamed_file(void)
{
	const char *dir = getenv("TMPDIR");
	int fd = open(dir && *dir ? dir : "/var/tmp",
		      O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	return fd < 0 ? -errno : fd;
}

int bgs_snap_rados_fetch(const char *target, char *msg, size_t len)
{
	struct rs_diag diag = { 0 };
	struct rs_rados *r;
	int fd, ret = connect_to(&r, target, false, &diag);

	if (ret) {
		snprintf(msg, len, "%s", diag.msg);
		return ret;
	}
	fd = unnamed_file();
	if (fd < 0) {
		snprintf(msg, len, "a temporary file for it: %s",
			 strerror(-fd));
		bgs_rs_rados_close(r);
		return fd;
	}
	ret = bgs_rs_rados_download(r, fd, &diag);
	bgs_rs_rados_close(r);
	if (ret) {
		snprintf(msg, len, "%s", diag.msg);
		close(fd);
		return ret;
	}
	return fd;
}

int bgs_snap_rados_tmpfile(void)
{
	return unnamed_file();
}

int bgs_snap_rados_store(const char *target, int fd, bool exclusive, char *msg,
			 size_t len)
{
	struct rs_diag diag = { 0 };
	struct rs_rados *r;
	int ret = connect_to(&r, target, false, &diag);

	if (!ret && exclusive)
		ret = bgs_rs_rados_exists(r) > 0 ? -EEXIST : 0;
	if (ret == -EEXIST)
		snprintf(diag.msg, sizeof(diag.msg),
			 "a snapshot already exists there");
	if (!ret && lseek(fd, 0, SEEK_SET) < 0)
		ret = -errno;
	if (!ret) {
		ret = bgs_rs_rados_upload(r, fd, &diag);
		if (!ret)
			ret = bgs_rs_rados_publish(r, exclusive, &diag);
		if (ret)
			bgs_rs_rados_discard(r);
	}
	if (ret)
		snprintf(msg, len, "%s",
			 diag.msg[0] ? diag.msg : strerror(-ret));
	bgs_rs_rados_close(r);
	return ret;
}

/* ---- reading in place ---------------------------------------------------- */

int bgs_snap_rados_in_open(const char *target, struct rs_rados **r,
			   struct rs_reader **reader, char *msg, size_t len)
{
	struct rs_diag diag = { 0 };
	struct rs_source src;
	int ret = connect_to(r, target, false, &diag);

	if (!ret)
		ret = bgs_rs_rados_source(*r, &src, &diag);
	if (!ret)
		ret = bgs_rs_open_source(reader, &src, &diag);
	if (ret) {
		snprintf(msg, len, "%s", diag.msg);
		bgs_rs_rados_close(*r); /* NULL if it did not connect */
		*r = NULL;
	}
	return ret;
}

void bgs_snap_rados_in_close(struct rs_rados *r)
{
	bgs_rs_rados_close(r);
}

/* ---- saving -------------------------------------------------------------- */

/* Pieces queued for the putter: the writer has RS_WQ_DEPTH in flight at
 * most. */
#define SINK_QUEUE 16u
_Static_assert(SINK_QUEUE >= RS_WQ_DEPTH, "a piece in flight always fits");

struct bgs_rados_sink {
	struct rs_rados *r;
	struct bgs_save *s;
	bool no_replace;
	char target[256];
	struct rs_diag diag;
	/*
	 * The putter: a thread that hashes the writer's pieces into their
	 * objects' checksums and gives them to librados, which copies them
	 * (0.8 ms for 4 MiB together), so that the copier, who may be
	 * serving a fault, only queues them; on two CPUs it also runs beside
	 * the copier. The queue is in order, under lock.
	 */
	pthread_t putter;
	bool putting;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct piece {
		const void *buf;
		size_t len;
		uint64_t pos;
		void (*stored)(void *ticket, int res);
		void *ticket;
	} queue[SINK_QUEUE];
	unsigned head, n;
	bool stop;
};

/* Fail the save with @err and what @k's last error says. */
static int sink_fail(struct bgs_rados_sink *k, int err)
{
	return bgs_save_fail(k->s, err, "%s: %s", k->target, k->diag.msg);
}

/* The cluster failed the upload (any thread): fail the save at once and
 * say why, so that the owner's faults do not pile up behind it. */
static void cluster_failed(void *arg)
{
	struct bgs_rados_sink *k = arg;

	bgs_rados_sink_failed(k);
	bgs_copier_kick(k->s);
}

static void *putter_main(void *arg)
{
	struct bgs_rados_sink *k = arg;

	pthread_mutex_lock(&k->lock);
	for (;;) {
		if (!k->n && k->stop)
			break;
		if (!k->n) {
			pthread_cond_wait(&k->wake, &k->lock);
			continue;
		}
		const struct piece p = k->queue[k->head];

		k->head = (k->head + 1) % SINK_QUEUE;
		k->n--;
		pthread_mutex_unlock(&k->lock);
		const int ret = bgs_rs_rados_put(k->r, p.buf, p.len, p.pos,
						 p.stored, p.ticket);

		/* Refused at once: told all the same, as the queue expects
		 * of a piece it was told was taken. */
		if (ret)
			p.stored(p.ticket, ret);
		pthread_mutex_lock(&k->lock);
	}
	pthread_mutex_unlock(&k->lock);
	return NULL;
}

/* The writer's queue hands its buffers over here (rs_wq_sink.put). */
static int sink_put(void *ctx, const void *buf, size_t len, uint64_t pos,
		    void (*stored)(void *ticket, int res), void *ticket)
{
	struct bgs_rados_sink *k = ctx;
	int ret = 0;

	pthread_mutex_lock(&k->lock);
	if (k->n == SINK_QUEUE) {
		ret = -EOVERFLOW; /* more than the writer has in flight */
	} else {
		k->queue[(k->head + k->n++) % SINK_QUEUE] =
			(struct piece){ buf, len, pos, stored, ticket };
		pthread_cond_signal(&k->wake);
	}
	pthread_mutex_unlock(&k->lock);
	return ret;
}

/* On the save's CPUs (--cpus), every signal blocked, as its other threads. */
static int start_putter(struct bgs_rados_sink *k)
{
	const int ret = bgs_thread_start(&k->putter, NULL, bgs_save_cpus(k->s),
					 putter_main, k);

	k->putting = !ret;
	if (ret)
		snprintf(k->diag.msg, sizeof(k->diag.msg),
			 "starting a thread: %s", strerror(-ret));
	return ret;
}

/* The writer is gone, so nothing is queued. */
static void stop_putter(struct bgs_rados_sink *k)
{
	if (k->putting) {
		pthread_mutex_lock(&k->lock);
		k->stop = true;
		pthread_cond_signal(&k->wake);
		pthread_mutex_unlock(&k->lock);
		pthread_join(k->putter, NULL);
		k->putting = false;
	}
	pthread_mutex_destroy(&k->lock);
	pthread_cond_destroy(&k->wake);
}

/* With BGSNAP_SAVE_NO_REPLACE: -EEXIST if a snapshot is there. */
static int exists_refused(struct bgs_rados_sink *k)
{
	const int ret = bgs_rs_rados_exists(k->r);

	if (ret > 0) {
		snprintf(k->diag.msg, sizeof(k->diag.msg),
			 "a snapshot already exists there");
		return -EEXIST;
	}
	if (ret < 0) {
		char e[320];

		snprintf(k->diag.msg, sizeof(k->diag.msg),
			 "looking for a snapshot there: %s",
			 bgs_rs_rados_why(k->r, ret, e, sizeof(e)));
	}
	return ret;
}

/*
 * librados starts its threads (the messengers, which copy and checksum
 * every byte sent, and timers) when it connects, with the connecting
 * thread's CPUs: so the connect runs on the save's (--cpus), and this
 * thread's own are put back after. A kept connection's threads run where
 * they started.
 */
static int connect_on_save_cpus(struct bgs_rados_sink *k, const char *target)
{
	const cpu_set_t *cpus = bgs_save_cpus(k->s);
	cpu_set_t mine;
	const bool moved =
		cpus &&
		!pthread_getaffinity_np(pthread_self(), sizeof(mine), &mine) &&
		!pthread_setaffinity_np(pthread_self(), sizeof(*cpus), cpus);
	const int ret = connect_to(&k->r, target, false, &k->diag);

	if (moved)
		pthread_setaffinity_np(pthread_self(), sizeof(mine), &mine);
	return ret;
}

int bgs_rados_sink_open(struct bgs_save *s, const char *target,
			struct bgs_rados_sink **out, struct rs_wq_sink *sink)
{
	struct bgs_rados_sink *k = calloc(1, sizeof(*k));
	int ret;

	if (!k)
		return -ENOMEM;
	k->s = s;
	k->no_replace = s->opts.flags & BGSNAP_SAVE_NO_REPLACE;
	snprintf(k->target, sizeof(k->target), "%s", target);
	pthread_mutex_init(&k->lock, NULL);
	pthread_cond_init(&k->wake, NULL);
	ret = connect_on_save_cpus(k, target);
	if (!ret && k->no_replace)
		ret = exists_refused(k);
	if (!ret)
		ret = bgs_rs_rados_upload_begin(k->r, bgs_save_cpus(s),
						cluster_failed, k, &k->diag);
	if (!ret)
		ret = start_putter(k);
	if (ret) {
		bgs_snap_set_error(s->h, "%s: %s", target,
				   k->diag.msg[0] ? k->diag.msg
						  : strerror(-ret));
		stop_putter(k);
		if (k->r)
			bgs_rs_rados_discard(k->r); /* a lease it took */
		bgs_rs_rados_close(k->r);
		free(k);
		return ret;
	}
	*out = k;
	*sink = (struct rs_wq_sink){ .put = sink_put,
				     .ctx = k,
				     .piece = RS_RADOS_OBJECT };
	return 0;
}

int bgs_rados_sink_failed(struct bgs_rados_sink *k)
{
	struct rs_diag d;
	const int ret = bgs_rs_rados_failure(k->r, &d);

	return ret ? bgs_save_fail(k->s, ret, "%s: %s", k->target, d.msg) : 0;
}

int bgs_rados_sink_close(struct bgs_rados_sink *k, int result)
{
	int ended;

	/* The writer is gone: every put has been told how it ended. */
	stop_putter(k);
	ended = bgs_rs_rados_upload_end(k->r, &k->diag);

	if (!result && ended)
		result = sink_fail(k, ended);
	if (!result) {
		result = bgs_rs_rados_publish(k->r, k->no_replace, &k->diag);
		if (result)
			sink_fail(k, result);
	}
	if (result)
		bgs_rs_rados_discard(k->r);
	bgs_rs_rados_close(k->r);
	free(k);
	return result;
}

/* ---- listing ------------------------------------------------------------- */

struct list_walk {
	int (*each)(void *arg, const char *target);
	void *arg;
	const char *pool;
};

static int list_each(void *arg, const char *name)
{
	const struct list_walk *w = arg;
	char target[600];

	snprintf(target, sizeof(target), "rados://%s/%s", w->pool, name);
	return w->each(w->arg, target);
}

BGSNAP_API int bgsnap_rados_list(const char *where,
				 int (*each)(void *arg, const char *target),
				 void *arg, char *err, size_t err_len)
{
	struct rs_diag diag = { .msg = "" };
	const char *slash = where && !strncmp(where, "rados://", 8)
				    ? strchr(where + 8, '/')
				    : NULL;
	const size_t base_len =
		where ? (slash ? (size_t)(slash - where) : strlen(where)) : 0;
	char base[300];
	struct rs_rados *r;
	int ret = -EINVAL;

	if (!where || strncmp(where, "rados://", 8) || !each ||
	    base_len >= sizeof(base)) {
		snprintf(diag.msg, sizeof(diag.msg),
			 "not rados://POOL or rados://POOL/PREFIX");
	} else {
		/* The pool alone: rados://POOL. */
		snprintf(base, sizeof(base), "%.*s", (int)base_len, where);
		ret = connect_to(&r, base, true, &diag);
		if (!ret) {
			struct list_walk w = { each, arg,
					       bgs_rs_rados_pool(r) };

			ret = bgs_rs_rados_list(r, slash ? slash + 1 : "",
						list_each, &w, &diag);
			bgs_rs_rados_close(r);
		}
	}
	if (ret < 0 && err && err_len)
		snprintf(err, err_len, "%s: %s", where ? where : "(null)",
			 diag.msg[0] ? diag.msg : strerror(-ret));
	return ret;
}

/* ---- orphans ------------------------------------------------------------- */

struct gc_walk {
	int (*each)(void *arg, const struct bgsnap_orphan *o);
	void *arg;
};

static int gc_each(void *arg, const struct rs_orphan *o)
{
	const struct gc_walk *w = arg;
	const struct bgsnap_orphan out = {
		.size = sizeof(out),
		.name = o->name,
		.upload = o->upload,
		.objects = o->objects,
		.bytes = o->bytes,
		.state = o->state == RS_ORPHAN_BUSY	? BGSNAP_ORPHAN_BUSY
			 : o->state == RS_ORPHAN_UNSURE ? BGSNAP_ORPHAN_UNSURE
							: BGSNAP_ORPHAN,
		.error = o->error,
	};

	return w->each ? w->each(w->arg, &out) : 0;
}

BGSNAP_API int bgsnap_rados_gc(const char *pool, unsigned flags,
			       int (*each)(void *arg,
					   const struct bgsnap_orphan *o),
			       void *arg, char *err, size_t err_len)
{
	struct gc_walk w = { each, arg };
	struct rs_diag diag = { .msg = "" };
	struct rs_rados *r;
	int ret;

	if (flags & ~BGSNAP_GC_DRY_RUN) {
		snprintf(diag.msg, sizeof(diag.msg), "unknown flags 0x%x",
			 flags & ~BGSNAP_GC_DRY_RUN);
		ret = -EINVAL;
	} else if (!pool || strncmp(pool, "rados://", 8)) {
		snprintf(diag.msg, sizeof(diag.msg), "not rados://POOL");
		ret = -EINVAL;
	} else {
		ret = connect_to(&r, pool, true, &diag);
		if (!ret) {
			ret = bgs_rs_rados_gc(r, flags & BGSNAP_GC_DRY_RUN,
					      gc_each, &w, &diag);
			bgs_rs_rados_close(r);
		}
	}
	if (ret && err && err_len)
		snprintf(err, err_len, "%s: %s", pool ? pool : "(null)",
			 diag.msg[0] ? diag.msg : strerror(-ret));
	return ret;
}

#else /* !BGSNAP_HAVE_RADOS */

static const char no_rados[] =
	"this bgsnap was built without librados's header: no rados:// "
	"targets (install librados-dev and rebuild)";

bool bgs_snap_rados_available(char *why, size_t len)
{
	snprintf(why, len, "%s", no_rados);
	return false;
}

BGSNAP_API int bgsnap_ceph_config(const char *conf, const char *id,
				  unsigned op_timeout_s)
{
	(void)conf;
	(void)id;
	(void)op_timeout_s;
	return -ENOTSUP;
}

BGSNAP_API int bgsnap_ceph_connect(const char *pool, char *err, size_t err_len)
{
	(void)pool;
	if (err && err_len)
		snprintf(err, err_len, "%s", no_rados);
	return -ENOTSUP;
}

BGSNAP_API int bgsnap_rados_list(const char *where,
				 int (*each)(void *arg, const char *target),
				 void *arg, char *err, size_t err_len)
{
	(void)where;
	(void)each;
	(void)arg;
	if (err && err_len)
		snprintf(err, err_len, "%s", no_rados);
	return -ENOTSUP;
}

BGSNAP_API int bgsnap_rados_gc(const char *pool, unsigned flags,
			       int (*each)(void *arg,
					   const struct bgsnap_orphan *o),
			       void *arg, char *err, size_t err_len)
{
	(void)pool;
	(void)flags;
	(void)each;
	(void)arg;
	if (err && err_len)
		snprintf(err, err_len, "%s", no_rados);
	return -ENOTSUP;
}

int bgs_snap_rados_fetch(const char *target, char *msg, size_t len)
{
	(void)target;
	snprintf(msg, len, "%s", no_rados);
	return -ENOTSUP;
}

int bgs_snap_rados_tmpfile(void)
{
	return -ENOTSUP;
}

int bgs_snap_rados_store(const char *target, int fd, bool exclusive, char *msg,
			 size_t len)
{
	(void)target;
	(void)fd;
	(void)exclusive;
	snprintf(msg, len, "%s", no_rados);
	return -ENOTSUP;
}

int bgs_snap_rados_in_open(const char *target, struct rs_rados **r,
			   struct rs_reader **reader, char *msg, size_t len)
{
	(void)target;
	(void)reader;
	*r = NULL;
	snprintf(msg, len, "%s", no_rados);
	return -ENOTSUP;
}

void bgs_snap_rados_in_close(struct rs_rados *r)
{
	(void)r;
}

int bgs_rados_sink_open(struct bgs_save *s, const char *target,
			struct bgs_rados_sink **out, struct rs_wq_sink *sink)
{
	(void)out;
	(void)sink;
	bgs_snap_set_error(s->h, "%s: %s", target, no_rados);
	return -ENOTSUP;
}

int bgs_rados_sink_failed(struct bgs_rados_sink *k)
{
	(void)k;
	return 0;
}

int bgs_rados_sink_close(struct bgs_rados_sink *k, int result)
{
	(void)k;
	return result;
}

#endif
