/* SPDX-License-Identifier: MIT */
/*
 * The store written and read back: every memory kind and encoding, pages
 * handed in any order and in runs of any length, attachments up to 16 MiB,
 * incremental (parent) records, through a path, a memfd and a real pipe
 * (reader thread and reader process), with io_uring and with write(2), in
 * format 1.1 and in 1.0 (which must stay readable). Every decoded byte is
 * compared with what was written.
 */
#include "rs_testutil.h"
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PG     RS_PAGE
#define HUGE2M (2u << 20)

/* ---- a scene: regions with known content --------------------------------- */

enum { R_RAM, R_THP, R_SHM, R_HUGE, R_FILE, R_GONE, R_NEVER, NREG };

struct scene {
	struct rs_region reg[NREG];
	uint8_t *mem[NREG];    /* what the pages hold */
	uint8_t *parent[NREG]; /* per page: stored as "same as parent" */
	bool incremental;
	bool format_1_0; /* written as 1.0 */
	uint8_t *big;	 /* a 16 MiB attachment */
	size_t big_len;
};

static const char small_att[] = "{\"vcpus\":2,\"state\":\"paused\"}";

static void region(struct scene *s, int i, const char *name, uint16_t kind,
		   uint64_t pages, uint32_t page_size, enum rt_content c)
{
	struct rs_region *r = &s->reg[i];

	snprintf(r->name, sizeof(r->name), "%s", name);
	r->base = 0x7f0000000000ull + (uint64_t)i * (1ull << 32);
	r->length = pages * PG;
	r->page_size = page_size;
	r->kind = kind;
	r->prot = 3;
	s->parent[i] = calloc(pages + 1, 1);
	assert_non_null(s->parent[i]);
	if (kind == RS_KIND_UNSAVED)
		return;
	s->mem[i] = malloc(pages * PG + 1);
	assert_non_null(s->mem[i]);
	rt_fill(s->mem[i], pages, c, (uint64_t)i + 1);
}

static void scene_init(struct scene *s, bool incremental, bool big)
{
	memset(s, 0, sizeof(*s));
	region(s, R_RAM, "pc.ram", RS_KIND_ANON, 700, PG, RT_REALISTIC);
	region(s, R_THP, "heap", RS_KIND_ANON_THP, 100, PG, RT_STRUCT);
	region(s, R_SHM, "shm", RS_KIND_SHMEM, 40, PG, RT_RANDOM);
	region(s, R_HUGE, "huge", RS_KIND_HUGETLB, 1024, HUGE2M, RT_TEXT);
	memset(s->mem[R_HUGE], 0, HUGE2M); /* one huge page zero, one not */
	region(s, R_FILE, "lib.so", RS_KIND_FILE_PRIVATE, 8, PG, RT_TEXT);
	region(s, R_GONE, "unsaved", RS_KIND_UNSAVED, 2, PG, RT_ZERO);
	region(s, R_NEVER, "never", RS_KIND_ANON, 64, PG, RT_ZERO);
	s->incremental = incremental;
	if (incremental) /* pages 100..199 and 600..699 of pc.ram */
		for (int p = 0; p < 100; p++) {
			s->parent[R_RAM][100 + p] = 1;
			s->parent[R_RAM][600 + p] = 1;
		}
	if (big) {
		s->big_len = 16u << 20;
		s->big = malloc(s->big_len);
		assert_non_null(s->big);
		rt_fill(s->big, s->big_len / PG, RT_REALISTIC, 77);
	}
}

static void scene_free(struct scene *s)
{
	for (int i = 0; i < NREG; i++) {
		free(s->mem[i]);
		free(s->parent[i]);
	}
	free(s->big);
}

static void scene_opts(const struct scene *s, struct rs_writer_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->regions = s->reg;
	o->nregions = NREG;
	o->format_1_0 = s->format_1_0;
	if (s->incremental)
		memset(o->parent_id, 0xab, sizeof(o->parent_id));
}

struct run {
	uint32_t region;
	uint64_t first, n;
};

/* Cut every saved region into runs of random length (whole huge pages),
 * never mixing parent and saved pages, then shuffle them. */
static size_t make_runs(const struct scene *s, struct run *runs, uint64_t *seed)
{
	size_t n = 0;

	for (uint32_t i = 0; i < NREG; i++) {
		const uint64_t pages = s->reg[i].length / PG;
		const uint64_t unit = s->reg[i].page_size / PG;

		if (s->reg[i].kind == RS_KIND_UNSAVED)
			continue;
		for (uint64_t p = 0; p < pages;) {
			uint64_t len = unit * (1 + tu_rand(seed) % 3);

			if (unit == 1)
				len = 1 + tu_rand(seed) %
						  (tu_rand(seed) % 2 ? 8 : 700);
			if (len > pages - p)
				len = pages - p;
			for (uint64_t k = 1; k < len; k++)
				if (s->parent[i][p + k] != s->parent[i][p])
					len = k;
			runs[n++] = (struct run){ i, p, len };
			p += len;
		}
	}
	for (size_t i = n; i > 1; i--) {
		const size_t j = tu_rand(seed) % i;
		const struct run t = runs[i - 1];

		runs[i - 1] = runs[j];
		runs[j] = t;
	}
	return n;
}

struct fill_ctx {
	const struct scene *s;
	uint64_t seed;
};

static int scene_fill(struct rs_writer *w, void *arg)
{
	const struct fill_ctx *c = arg;
	const struct scene *s = c->s;
	struct run *runs = malloc(4096 * sizeof(*runs));
	uint64_t seed = c->seed;
	const size_t n = make_runs(s, runs, &seed);
	int ret = 0;

	for (size_t i = 0; i < n && !ret; i++) {
		const struct run *r = &runs[i];

		if (s->parent[r->region][r->first])
			ret = bgs_rs_put_parent(w, r->region, r->first, r->n);
		else if (r->region == R_NEVER)
			ret = bgs_rs_put_zero(w, r->region, r->first, r->n);
		else
			ret = bgs_rs_put_pages(w, r->region, r->first, r->n,
					       s->mem[r->region] +
						       r->first * PG);
		if (i == n / 2 && !ret) /* attachments may come anywhere */
			ret = bgs_rs_put_attachment(w, "vmm.state", small_att,
						    sizeof(small_att));
	}
	if (!ret && s->big)
		ret = bgs_rs_put_attachment(w, "bgsnap.big", s->big,
					    s->big_len);
	if (!ret)
		ret = bgs_rs_put_attachment(w, "empty", NULL, 0);
	free(runs);
	return ret;
}

/* ---- checking what comes back -------------------------------------------- */

static void check_pages(const struct scene *s, uint32_t region, uint8_t enc,
			uint64_t first, uint64_t n, const void *data)
{
	assert_true(region < NREG);
	assert_true(s->reg[region].kind != RS_KIND_UNSAVED);
	for (uint64_t p = first; p < first + n; p++)
		assert_int_equal(s->parent[region][p], enc == RS_ENC_PARENT);
	if (enc == RS_ENC_PARENT) {
		assert_null(data);
		return;
	}
	if (!data) { /* a ZERO record from the stream */
		assert_int_equal(enc, RS_ENC_ZERO);
		for (uint64_t p = first; p < first + n; p++)
			assert_true(
				bgs_rs_page_is_zero(s->mem[region] + p * PG));
		return;
	}
	assert_memory_equal(data, s->mem[region] + first * PG, n * PG);
}

static void check_regions(const struct scene *s, const struct rs_region *r,
			  size_t n)
{
	assert_int_equal(n, NREG);
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(r[i].name, s->reg[i].name);
		assert_int_equal(r[i].base, s->reg[i].base);
		assert_int_equal(r[i].length, s->reg[i].length);
		assert_int_equal(r[i].page_size, s->reg[i].page_size);
		assert_int_equal(r[i].kind, s->reg[i].kind);
		assert_int_equal(r[i].prot, s->reg[i].prot);
	}
}

static void check_attachments(const struct scene *s, struct rs_reader *r)
{
	const size_t want = s->big ? 3 : 2;
	struct rs_diag d;

	assert_int_equal(bgs_rs_attachment_count(r), want);
	for (size_t i = 0; i < want; i++) {
		const char *name;
		size_t len;
		uint8_t *buf;

		assert_int_equal(bgs_rs_attachment_info(r, i, &name, &len), 0);
		buf = malloc(len + 1);
		assert_int_equal(bgs_rs_attachment_read(r, i, buf, &d), 0);
		if (!strcmp(name, "vmm.state"))
			assert_memory_equal(buf, small_att, len);
		else if (!strcmp(name, "bgsnap.big"))
			assert_memory_equal(buf, s->big, s->big_len);
		else
			assert_true(!strcmp(name, "empty") && !len);
		free(buf);
	}
	assert_int_equal(bgs_rs_attachment_info(r, want, &(const char *){ 0 },
						&(size_t){ 0 }),
			 -EINVAL);
}

/* Threads decoding every extent of one reader at once, each with its
 * own decoder, straight into buffers of their own. */
struct decoding {
	pthread_t thread;
	const struct scene *s;
	const struct rs_reader *r;
	size_t start;
	int ret;
};

static void *decode_all(void *arg)
{
	struct decoding *t = arg;
	const size_t n = bgs_rs_extent_count(t->r);
	uint8_t *buf = malloc(512 * PG);
	struct rs_decoder *dec;

	t->ret = bgs_rs_decoder_new(&dec);
	for (size_t k = 0; k < n && !t->ret; k++) {
		const size_t i = (t->start + k) % n;
		const struct rs_extent *e = bgs_rs_extent(t->r, i);
		const int enc = bgs_rs_decode_to(t->r, dec, i, buf, NULL);
		const uint8_t *want = t->s->mem[e->region];

		if (enc != e->encoding)
			t->ret = enc < 0 ? enc : -EPROTO;
		else if ((enc == RS_ENC_RAW || enc == RS_ENC_LZ4) &&
			 memcmp(buf, want + e->first * PG, e->npages * PG))
			t->ret = -EBADMSG;
	}
	bgs_rs_decoder_free(dec);
	free(buf);
	return NULL;
}

static void check_decode_to(const struct scene *s, const struct rs_reader *r)
{
	struct decoding t[3];

	for (int i = 0; i < 3; i++) {
		t[i] = (struct decoding){ .s = s,
					  .r = r,
					  .start = (size_t)i * 7 };
		assert_int_equal(
			pthread_create(&t[i].thread, NULL, decode_all, &t[i]),
			0);
	}
	for (int i = 0; i < 3; i++) {
		pthread_join(t[i].thread, NULL);
		assert_int_equal(t[i].ret, 0);
	}
}

static void check_reader(const struct scene *s, int fd)
{
	struct rs_reader *r;
	struct rs_diag d = { 0 };
	uint64_t pages = 0;
	const void *data;

	assert_int_equal(bgs_rs_open(&r, fd, &d), 0);
	assert_int_equal(bgs_rs_info(r)->version_major, 1);
	assert_int_equal(bgs_rs_info(r)->version_minor, s->format_1_0 ? 0 : 2);
	assert_int_equal(bgs_rs_rechdr_len(r), s->format_1_0 ? 48 : 56);
	assert_int_equal(bgs_rs_info(r)->page_size, PG);
	assert_int_equal(bgs_rs_info(r)->parent_id[3],
			 s->incremental ? 0xab : 0);
	assert_true(bgs_rs_info(r)->created_ns > 0);
	assert_true(bgs_rs_info(r)->kernel[0] != '\0');
	check_regions(s, bgs_rs_region(r, 0), bgs_rs_region_count(r));
	assert_null(bgs_rs_region(r, NREG));
	for (size_t i = 0; i < bgs_rs_extent_count(r); i++) {
		const struct rs_extent *e = bgs_rs_extent(r, i);
		const int ret = bgs_rs_decode(r, i, &data, &d);

		assert_int_equal(ret, e->encoding == RS_ENC_PARENT);
		if (e->encoding == RS_ENC_ZERO)
			for (uint64_t k = 0; k < e->npages; k++)
				assert_true(bgs_rs_page_is_zero(
					(const uint8_t *)data + k * PG));
		else
			check_pages(s, e->region, e->encoding, e->first,
				    e->npages, data);
		/* find: every page of the extent, and only them */
		assert_int_equal(bgs_rs_find(r, e->region, e->first),
				 (ssize_t)i);
		assert_int_equal(
			bgs_rs_find(r, e->region, e->first + e->npages - 1),
			(ssize_t)i);
		if (e->region == R_HUGE)
			assert_int_equal(e->npages % 512, 0);
		pages += e->npages;
	}
	assert_int_equal(pages, 700 + 100 + 40 + 1024 + 8 + 64);
	assert_int_equal(bgs_rs_info(r)->nrecords, bgs_rs_extent_count(r));
	assert_int_equal(bgs_rs_find(r, R_GONE, 0), -1);
	assert_int_equal(bgs_rs_find(r, R_RAM, 700), -1);
	assert_int_equal(bgs_rs_find(r, NREG, 0), -1);
	assert_int_equal(bgs_rs_decode(r, bgs_rs_extent_count(r), &data, &d),
			 -EINVAL);
	check_attachments(s, r);
	check_decode_to(s, r);
	assert_int_equal(bgs_rs_verify(r, 0, &d, NULL, NULL), 0);
	assert_int_equal(bgs_rs_verify(r, RS_VERIFY_DEEP, &d, NULL, NULL), 0);
	bgs_rs_close(r);
}

/* Read a whole stream; returns the number of PAGES items. */
static size_t check_stream(const struct scene *s, int fd)
{
	struct rs_stream *st;
	struct rs_diag d = { 0 };
	struct rs_item it;
	size_t items = 0, atts = 0;
	uint64_t pages = 0;
	int ret;

	assert_int_equal(bgs_rs_stream_open(&st, fd, &d), 0);
	check_regions(s, bgs_rs_stream_region(st, 0),
		      bgs_rs_stream_region_count(st));
	while ((ret = bgs_rs_stream_next(st, &it, &d)) == 1) {
		if (it.type == RS_ITEM_ATTACHMENT) {
			atts++;
			if (!strcmp(it.name, "bgsnap.big"))
				assert_memory_equal(it.data, s->big, it.len);
			continue;
		}
		check_pages(s, it.region, it.encoding, it.first, it.npages,
			    it.data);
		assert_int_equal(it.len, it.data ? it.npages * PG : 0);
		pages += it.npages;
		items++;
	}
	if (ret)
		print_message("stream: %s\n", d.msg);
	assert_int_equal(ret, 0);
	assert_int_equal(bgs_rs_stream_next(st, &it, &d), 0); /* stays 0 */
	assert_int_equal(pages, 700 + 100 + 40 + 1024 + 8 + 64);
	assert_int_equal(atts, s->big ? 3 : 2);
	assert_int_equal(bgs_rs_stream_info(st)->nrecords, items);
	bgs_rs_stream_close(st);
	return items;
}

/* ---- the tests ----------------------------------------------------------- */

static void roundtrip_path(bool sync_io, enum rs_compression comp,
			   bool incremental, bool format_1_0)
{
	struct scene s;
	struct rs_writer_opts o;
	struct rs_writer *w;
	struct rs_writer_stats ws;
	struct fill_ctx c = { .s = &s, .seed = tu_seed() };
	char dir[256], path[300];
	struct stat st;
	int fd;

	scene_init(&s, incremental, true);
	s.format_1_0 = format_1_0;
	scene_opts(&s, &o);
	o.sync_io = sync_io;
	o.compression = comp;
	memset(o.snapshot_id, 0x42, 16);
	rt_mkdtemp(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/snap.bgs", dir);
	assert_int_equal(bgs_rs_writer_open_path(&w, path, &o), 0);
	assert_int_equal(stat(path, &st), -1); /* not there until commit */
	assert_int_equal(rt_count_entries(dir), 1);
	assert_int_equal(scene_fill(w, &c), 0);
	bgs_rs_writer_stats(w, &ws);
	assert_int_equal(ws.pages, 700 + 100 + 40 + 1024 + 8 + 64);
	assert_true(ws.zero_pages >= 512 + 64);
	assert_true(ws.records > 0);
	assert_true(ws.peak_buffer_bytes > 0 &&
		    ws.peak_buffer_bytes <= (64u << 20));
	assert_int_equal(bgs_rs_writer_commit(w), 0);
	assert_int_equal(rt_count_entries(dir), 1);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	check_reader(&s, fd);
	assert_int_equal(check_stream(&s, fd), ws.records);
	close(fd);
	rt_rmdir(dir);
	scene_free(&s);
}

static void test_roundtrip_lz4_uring(void **state)
{
	(void)state;
	roundtrip_path(false, RS_COMP_LZ4, false, false);
}

static void test_roundtrip_none_sync(void **state)
{
	(void)state;
	roundtrip_path(true, RS_COMP_NONE, false, false);
}

static void test_roundtrip_incremental(void **state)
{
	(void)state;
	roundtrip_path(false, RS_COMP_LZ4, true, false);
}

/* Format 1.0, as files written before 1.1 are: read, decoded, streamed
 * and verified (both ways) all the same. */
static void test_roundtrip_format_1_0(void **state)
{
	(void)state;
	roundtrip_path(false, RS_COMP_LZ4, false, true);
	roundtrip_path(true, RS_COMP_LZ4, true, true);
}

/* Each encoding appears where it should; NONE never compresses. */
static void test_encodings(void **state)
{
	struct scene s;
	struct rs_writer_opts o;
	struct fill_ctx c = { .s = &s, .seed = 1 };
	size_t len, count[4] = { 0 };
	struct rs_reader *r;
	uint8_t *buf;
	int fd;

	(void)state;
	for (int comp = 0; comp < 2; comp++) {
		scene_init(&s, true, false);
		scene_opts(&s, &o);
		o.compression = comp ? RS_COMP_NONE : RS_COMP_LZ4;
		o.lz4_acceleration = 8;
		memset(count, 0, sizeof(count));
		buf = rt_make_store(&o, scene_fill, &c, &len);
		fd = rt_memfd(buf, len);
		assert_int_equal(bgs_rs_open(&r, fd, NULL), 0);
		for (size_t i = 0; i < bgs_rs_extent_count(r); i++)
			count[bgs_rs_extent(r, i)->encoding]++;
		assert_true(count[RS_ENC_ZERO] && count[RS_ENC_RAW] &&
			    count[RS_ENC_PARENT]);
		assert_true(comp ? !count[RS_ENC_LZ4] : count[RS_ENC_LZ4] > 0);
		/* shm is random: lz4 cannot shrink it, so it is stored raw */
		for (size_t i = 0; i < bgs_rs_extent_count(r); i++)
			if (bgs_rs_extent(r, i)->region == R_SHM)
				assert_int_equal(bgs_rs_extent(r, i)->encoding,
						 RS_ENC_RAW);
		check_reader(&s, fd);
		bgs_rs_close(r);
		close(fd);
		free(buf);
		scene_free(&s);
	}
}

/* ---- pipes --------------------------------------------------------------- */

struct pipe_reader {
	const struct scene *s;
	int fd;
	size_t items;
};

static void *pipe_reader_main(void *arg)
{
	struct pipe_reader *p = arg;

	p->items = check_stream(p->s, p->fd);
	return NULL;
}

static void test_pipe_thread(void **state)
{
	struct scene s;
	struct rs_writer_opts o;
	struct rs_writer *w;
	struct rs_writer_stats ws;
	struct fill_ctx c = { .s = &s, .seed = tu_seed() };
	struct pipe_reader pr = { .s = &s };
	pthread_t t;
	int fds[2];

	(void)state;
	for (int sync = 0; sync < 2; sync++) {
		scene_init(&s, false, sync);
		scene_opts(&s, &o);
		o.sync_io = sync;
		o.buffer_budget = 1; /* the smallest: back-pressure all along */
		assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
		pr.fd = fds[0];
		assert_int_equal(
			pthread_create(&t, NULL, pipe_reader_main, &pr), 0);
		assert_int_equal(bgs_rs_writer_open_fd(&w, fds[1], &o), 0);
		assert_int_equal(scene_fill(w, &c), 0);
		bgs_rs_writer_stats(w, &ws);
		/* raised to two of the largest records, never more */
		assert_true(ws.peak_buffer_bytes <= 2 * (512 * PG + 56) + PG);
		assert_int_equal(bgs_rs_writer_commit(w), 0);
		close(fds[1]); /* the caller's: the reader sees the end */
		pthread_join(t, NULL);
		assert_int_equal(pr.items, ws.records);
		close(fds[0]);
		scene_free(&s);
	}
}

/* A writer process feeds a pipe; this one reads it. */
static void test_pipe_child(void **state)
{
	struct scene s;
	struct rs_writer_opts o;
	struct fill_ctx c = { .s = &s, .seed = 99 };
	int fds[2], status;
	pid_t pid;

	(void)state;
	scene_init(&s, true, true);
	scene_opts(&s, &o);
	assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (!pid) {
		struct rs_writer *w;
		int ret;

		close(fds[0]);
		ret = bgs_rs_writer_open_fd(&w, fds[1], &o);
		if (!ret)
			ret = scene_fill(w, &c);
		if (!ret)
			ret = bgs_rs_writer_commit(w);
		_exit(ret ? 1 : 0);
	}
	close(fds[1]);
	check_stream(&s, fds[0]);
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	scene_free(&s);
}

/* ---- stats from another thread ------------------------------------------- */

struct poller {
	struct rs_writer *w;
	atomic_bool stop;
	atomic_uint polls;
	bool monotonic;
};

/* Until the poller has polled @n times: it must overlap the writes. */
static void wait_polls(struct poller *p, unsigned n)
{
	while (atomic_load(&p->polls) < n)
		tu_sleep_ms(1);
}

static void *poller_main(void *arg)
{
	struct poller *p = arg;
	struct rs_writer_stats prev = { 0 }, now;

	p->monotonic = true;
	while (!atomic_load(&p->stop)) {
		bgs_rs_writer_stats(p->w, &now);
		p->monotonic &= now.pages >= prev.pages &&
				now.stored_bytes >= prev.stored_bytes &&
				now.records >= prev.records &&
				now.peak_buffer_bytes >= prev.peak_buffer_bytes;
		prev = now;
		atomic_fetch_add(&p->polls, 1);
	}
	return NULL;
}

static void test_stats_thread(void **state)
{
	struct scene s;
	struct rs_writer_opts o;
	struct fill_ctx c = { .s = &s, .seed = 5 };
	struct poller p = { 0 };
	struct rs_writer_stats ws;
	pthread_t t;
	char dir[256], path[300];

	(void)state;
	scene_init(&s, false, true);
	scene_opts(&s, &o);
	rt_mkdtemp(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/s", dir);
	assert_int_equal(bgs_rs_writer_open_path(&p.w, path, &o), 0);
	atomic_init(&p.stop, false);
	atomic_init(&p.polls, 0);
	assert_int_equal(pthread_create(&t, NULL, poller_main, &p), 0);
	wait_polls(&p, 1);
	assert_int_equal(scene_fill(p.w, &c), 0);
	wait_polls(&p, atomic_load(&p.polls) + 1);
	atomic_store(&p.stop, true);
	pthread_join(t, NULL);
	assert_true(p.monotonic);
	bgs_rs_writer_stats(p.w, &ws);
	assert_true(ws.raw_bytes > 0 && ws.raw_bytes % PG == 0);
	assert_int_equal(bgs_rs_writer_commit(p.w), 0);
	rt_rmdir(dir);
	scene_free(&s);
}

/* ---- records in any order, rebuilt by hand ------------------------------- */

static void test_shuffled_records(void **state)
{
	struct scene s;
	struct rs_writer_opts o;
	struct fill_ctx c = { .s = &s, .seed = 3 };
	struct rt_layout l;
	struct rt_blob *b;
	uint64_t seed = tu_seed();
	size_t len, n, out_len;
	uint8_t *buf, *out;
	int fd;

	(void)state;
	scene_init(&s, false, false);
	scene_opts(&s, &o);
	buf = rt_make_store(&o, scene_fill, &c, &len);
	rt_parse(buf, len, &l);
	n = l.n - 2; /* without region table and index */
	b = calloc(n, sizeof(*b));
	for (size_t i = 0; i < n; i++)
		b[i] = rt_blob_of(buf, &l.recs[i + 1]);
	for (size_t i = n; i > 1; i--) {
		const size_t j = tu_rand(&seed) % i;
		const struct rt_blob t = b[i - 1];

		b[i - 1] = b[j];
		b[j] = t;
	}
	out = rt_rebuild(buf, &l, b, n, &out_len);
	assert_int_equal(out_len, len);
	fd = rt_memfd(out, out_len);
	check_reader(&s, fd);
	check_stream(&s, fd);
	close(fd);
	free(out);
	free(b);
	rt_layout_free(&l);
	free(buf);
	scene_free(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_lz4_uring),
		cmocka_unit_test(test_roundtrip_none_sync),
		cmocka_unit_test(test_roundtrip_incremental),
		cmocka_unit_test(test_roundtrip_format_1_0),
		cmocka_unit_test(test_encodings),
		cmocka_unit_test(test_pipe_thread),
		cmocka_unit_test(test_pipe_child),
		cmocka_unit_test(test_stats_thread),
		cmocka_unit_test(test_shuffled_records),
	};

	signal(SIGPIPE, SIG_IGN);
	tu_seed();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
