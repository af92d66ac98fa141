/* SPDX-License-Identifier: MIT */
/*
 * Compression workers behind the one copier (bgsnap_save_opts.threads).
 *
 * DESIGN
 * The copier still reads each page out of the owner once, checks it and
 * unprotects it; what it has read goes into a job (a buffer of one scan
 * run, or of several faulted runs) that a worker turns into records (ramstore's encoder: zero runs, lz4,
 * checksums). The copier alone appends finished jobs to the writer, so the
 * writer keeps one thread, and the file format is what it always was.
 * Records land in the file in the order jobs finish; the index says where
 * each is.
 *
 * Threads: the copier takes a FREE job, fills it with one run of the scan
 * or with several faulted runs, QUEUEs it and later collects it once
 * DONE; N workers take QUEUED jobs, encode them and mark them DONE, then
 * kick the copier (its wake eventfd) in case it sleeps. Job states change
 * under the lock; a job's buffers belong to whoever holds it in its state
 * (the copier: FILLING and DONE; a worker: RUNNING).
 *
 * Memory: JOBS_PER_WORKER jobs per worker, each two runs' worth (the
 * pages and their records), so that a worker always finds one queued
 * while the copier fills or collects the others. With two a worker, the
 * copier waited for a free job and slept: on virtual CPUs each wake-up
 * across CPUs costs tens of microseconds, and a 1 GiB save with one
 * worker took 0.62-0.70 s idle and 1.33 s under two writers; with four,
 * 0.52-0.61 s and 1.01 s (eight gained nothing more).
 */
#include "snap_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

enum job_state { JOB_FREE, JOB_FILLING, JOB_QUEUED, JOB_RUNNING, JOB_DONE };

#define JOB_RUNS	64 /* runs in one job at most (faulted runs are small) */
#define JOBS_PER_WORKER 4

struct bgs_job {
	struct bgs_buffered_run run[JOB_RUNS]; /* in data */
	unsigned nruns;
	uint64_t pages; /* of data, taken */
	uint8_t *data;	/* the runs' pages, read from the owner */
	struct rs_encoder *enc;
	int err;
	enum job_state state;
};

struct bgs_workers {
	struct bgs_save *s;
	pthread_mutex_t lock;
	pthread_cond_t cond;	  /* a job was queued, or stop */
	pthread_cond_t done_cond; /* a job is done */
	bool stop;
	unsigned nthreads, started;
	pthread_t *threads;
	struct bgs_job *jobs;
	unsigned njobs;
	size_t job_len;		 /* bytes of a job's pages */
	uint64_t inflight_pages; /* queued, running or done, not collected */
	_Atomic uint64_t cpu_ns; /* the workers' CPU time, at their exit */
};

static struct bgs_job *next_queued(struct bgs_workers *w)
{
	for (unsigned i = 0; i < w->njobs; i++)
		if (w->jobs[i].state == JOB_QUEUED)
			return &w->jobs[i];
	return NULL;
}

static void *worker_main(void *arg)
{
	struct bgs_workers *w = arg;
	struct bgs_job *j;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		while (!w->stop && !(j = next_queued(w)))
			pthread_cond_wait(&w->cond, &w->lock);
		if (w->stop)
			break;
		j->state = JOB_RUNNING;
		pthread_mutex_unlock(&w->lock);
		for (unsigned k = 0; k < j->nruns && !j->err; k++)
			j->err = bgs_rs_encode(
				j->enc,
				(uint32_t)(j->run[k].r - w->s->h->regions),
				j->run[k].first - j->run[k].r->first_page,
				j->run[k].n,
				j->data + j->run[k].at * BGS_PAGE_SIZE);
		pthread_mutex_lock(&w->lock);
		j->state = JOB_DONE;
		pthread_cond_signal(&w->done_cond);
		bgs_copier_kick(w->s);
	}
	pthread_mutex_unlock(&w->lock);
	atomic_fetch_add(&w->cpu_ns, bgs_thread_cpu_ns());
	return NULL;
}

uint64_t bgs_workers_stop(struct bgs_workers *w)
{
	uint64_t cpu_ns;

	if (!w)
		return 0;
	pthread_mutex_lock(&w->lock);
	w->stop = true;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
	for (unsigned i = 0; i < w->started; i++)
		pthread_join(w->threads[i], NULL);
	for (unsigned i = 0; w->jobs && i < w->njobs; i++) {
		if (w->jobs[i].data)
			munmap(w->jobs[i].data, w->job_len);
		bgs_rs_encoder_free(w->jobs[i].enc);
	}
	free(w->jobs);
	free(w->threads);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
	pthread_cond_destroy(&w->done_cond);
	cpu_ns = atomic_load(&w->cpu_ns);
	free(w);
	return cpu_ns;
}

int bgs_workers_start(struct bgs_save *s, unsigned nthreads,
		      struct bgs_workers **out)
{
	struct bgs_workers *w = calloc(1, sizeof(*w));
	int ret = 0;

	*out = NULL;
	if (!w)
		return -ENOMEM;
	w->s = s;
	w->nthreads = nthreads;
	w->njobs = JOBS_PER_WORKER * nthreads;
	w->job_len = s->staging_len;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	pthread_cond_init(&w->done_cond, NULL);
	w->threads = calloc(nthreads, sizeof(*w->threads));
	w->jobs = calloc(w->njobs, sizeof(*w->jobs));
	if (!w->threads || !w->jobs)
		ret = -ENOMEM;
	for (unsigned i = 0; !ret && i < w->njobs; i++) {
		struct bgs_job *j = &w->jobs[i];

		j->data = mmap(NULL, w->job_len, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (j->data == MAP_FAILED) {
			j->data = NULL;
			ret = -ENOMEM;
		} else {
			ret = bgs_rs_encoder_new(&j->enc, s->writer,
						 w->job_len / BGS_PAGE_SIZE);
		}
	}
	for (; !ret && w->started < nthreads; w->started++)
		ret = bgs_thread_start(&w->threads[w->started], NULL,
				       bgs_save_cpus(s), worker_main, w);
	if (ret) {
		(void)bgs_workers_stop(w);
		return ret;
	}
	*out = w;
	return 0;
}

uint64_t bgs_workers_inflight(const struct bgs_workers *w)
{
	return w->inflight_pages; /* the copier's own count */
}

struct bgs_job *bgs_workers_take(struct bgs_workers *w)
{
	struct bgs_job *j = NULL;

	pthread_mutex_lock(&w->lock);
	for (unsigned i = 0; i < w->njobs && !j; i++)
		if (w->jobs[i].state == JOB_FREE)
			j = &w->jobs[i];
	if (j) {
		j->state = JOB_FILLING;
		j->nruns = 0;
		j->pages = 0;
		j->err = 0;
		bgs_rs_encoder_clear(j->enc); /* a failed job's records */
	}
	pthread_mutex_unlock(&w->lock);
	return j;
}

uint8_t *bgs_job_room(const struct bgs_workers *w, const struct bgs_job *j,
		      uint64_t n)
{
	if (j->nruns == JOB_RUNS || j->pages + n > w->job_len / BGS_PAGE_SIZE)
		return NULL;
	return j->data + j->pages * BGS_PAGE_SIZE;
}

void bgs_job_add(struct bgs_job *j, const struct bgs_region *r, uint64_t first,
		 uint64_t n)
{
	j->run[j->nruns].r = r;
	j->run[j->nruns].first = first;
	j->run[j->nruns].n = n;
	j->run[j->nruns++].at = j->pages;
	j->pages += n;
}

void bgs_workers_submit(struct bgs_workers *w, struct bgs_job *j)
{
	pthread_mutex_lock(&w->lock);
	if (j->nruns) {
		j->state = JOB_QUEUED;
		w->inflight_pages += j->pages;
		pthread_cond_signal(&w->cond);
	} else {
		j->state = JOB_FREE;
	}
	pthread_mutex_unlock(&w->lock);
}

/* Take the next DONE job, or NULL; with @wait, wait for one while any is
 * queued or running. */
static struct bgs_job *take_done(struct bgs_workers *w, bool wait)
{
	struct bgs_job *done = NULL;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		bool busy = false;

		for (unsigned i = 0; i < w->njobs && !done; i++) {
			if (w->jobs[i].state == JOB_DONE)
				done = &w->jobs[i];
			busy |= w->jobs[i].state != JOB_FREE;
		}
		if (done || !wait || !busy)
			break;
		pthread_cond_wait(&w->done_cond, &w->lock);
	}
	pthread_mutex_unlock(&w->lock);
	return done;
}

int bgs_workers_collect(struct bgs_workers *w, bool all, bool append)
{
	struct bgs_job *j;
	int ret = 0;

	while ((j = take_done(w, all))) {
		if (!ret && append)
			ret = j->err ? j->err
				     : bgs_rs_put_encoded(w->s->writer, j->enc);
		pthread_mutex_lock(&w->lock);
		w->inflight_pages -= j->pages;
		j->state = JOB_FREE;
		pthread_mutex_unlock(&w->lock);
	}
	return ret;
}

bool bgs_workers_done(struct bgs_workers *w)
{
	bool done = false;

	pthread_mutex_lock(&w->lock);
	for (unsigned i = 0; i < w->njobs && !done; i++)
		done = w->jobs[i].state == JOB_DONE;
	pthread_mutex_unlock(&w->lock);
	return done;
}
