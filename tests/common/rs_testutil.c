/* SPDX-License-Identifier: MIT */
#include "rs_testutil.h"
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <lz4.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* ---- page contents ------------------------------------------------------- */

uint64_t rt_rand(uint64_t *state)
{
	return tu_rand(state);
}

static void fill_random(uint8_t *p, uint64_t *s)
{
	for (size_t i = 0; i < RS_PAGE; i += 8) {
		const uint64_t v = tu_rand(s);

		memcpy(p + i, &v, 8);
	}
}

/* Records like a program's heap: ids that count, small numbers, pointers
 * into one mapping, flags, and padding. */
static void fill_struct(uint8_t *p, uint64_t *s)
{
	uint64_t id = tu_rand(s) % 100000;

	memset(p, 0, RS_PAGE);
	for (size_t i = 0; i < RS_PAGE; i += 64) {
		const uint64_t ptr =
			0x00007f3a12000000ull + (tu_rand(s) % 4096) * 64;
		const uint32_t small = (uint32_t)(tu_rand(s) % 300);
		const uint32_t flags = tu_rand(s) % 4 ? 0x11 : 0x13;

		memcpy(p + i, &id, 8);
		memcpy(p + i + 8, &ptr, 8);
		memcpy(p + i + 16, &small, 4);
		memcpy(p + i + 20, &flags, 4);
		id++;
	}
}

static void fill_text(uint8_t *p, uint64_t *s)
{
	static const char *const words[] = {
		"the",	  "snapshot", "page",	"memory", "write",  "protect",
		"fault",  "region",   "copier", "thread", "record", "index",
		"error",  "value",    "state",	"device", "guest",  "kernel",
		"return", "buffer",   "struct", "int",	  "while",  "for",
	};
	size_t i = 0;

	while (i < RS_PAGE) {
		char w[32];
		const uint64_t r = tu_rand(s);
		int n = r % 7 ? snprintf(w, sizeof(w), "%s%c", words[r % 24],
					 r % 11 ? ' ' : '\n')
			      : snprintf(w, sizeof(w), "%u ",
					 (unsigned)(r >> 20) % 10000);

		if ((size_t)n > RS_PAGE - i)
			n = (int)(RS_PAGE - i);
		memcpy(p + i, w, (size_t)n);
		i += (size_t)n;
	}
}

static void fill_page(uint8_t *p, enum rt_content c, uint64_t *s)
{
	switch (c) {
	case RT_ZERO:
		memset(p, 0, RS_PAGE);
		break;
	case RT_RANDOM:
		fill_random(p, s);
		break;
	case RT_STRUCT:
		fill_struct(p, s);
		break;
	case RT_TEXT:
	default:
		fill_text(p, s);
		break;
	}
}

/* Realistic: runs of 1..8 pages of one kind, 30% zero, 20% random. */
static enum rt_content pick(uint64_t *s)
{
	const unsigned r = (unsigned)(tu_rand(s) % 100);

	if (r < 30)
		return RT_ZERO;
	if (r < 50)
		return RT_RANDOM;
	return r < 75 ? RT_STRUCT : RT_TEXT;
}

void rt_fill(void *p, size_t npages, enum rt_content c, uint64_t seed)
{
	uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
	uint8_t *b = p;
	size_t i = 0;

	while (i < npages) {
		const enum rt_content k = c == RT_REALISTIC ? pick(&s) : c;
		size_t run = c == RT_REALISTIC ? 1 + tu_rand(&s) % 8 : npages;

		for (; run && i < npages; run--, i++)
			fill_page(b + i * RS_PAGE, k, &s);
	}
}

/* ---- files --------------------------------------------------------------- */

void rt_mkdtemp(char *dir, size_t len)
{
	const char *t = getenv("TMPDIR");

	snprintf(dir, len, "%s/bgsnap-rs-XXXXXX", t && *t ? t : "/tmp");
	assert_non_null(mkdtemp(dir));
}

void rt_rmdir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char path[4096];

	if (!d)
		return;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(dir);
}

int rt_count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	closedir(d);
	return n;
}

int rt_memfd(const void *buf, size_t len)
{
	const int fd = memfd_create("rs-test", MFD_CLOEXEC);
	const uint8_t *p = buf;
	size_t done = 0;

	assert_true(fd >= 0);
	while (done < len) {
		const ssize_t n = write(fd, p + done, len - done);

		assert_true(n > 0);
		done += (size_t)n;
	}
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	return fd;
}

uint8_t *rt_slurp(int fd, size_t *len)
{
	const off_t size = lseek(fd, 0, SEEK_END);
	uint8_t *p;

	assert_true(size >= 0);
	p = malloc((size_t)size + 1);
	assert_non_null(p);
	assert_int_equal(pread(fd, p, (size_t)size, 0), size);
	*len = (size_t)size;
	return p;
}

uint8_t *rt_make_store(const struct rs_writer_opts *o,
		       int (*fill)(struct rs_writer *w, void *arg), void *arg,
		       size_t *len)
{
	const int fd = memfd_create("rs-store", MFD_CLOEXEC);
	struct rs_writer *w;
	uint8_t *p;

	assert_true(fd >= 0);
	assert_int_equal(bgs_rs_writer_open_fd(&w, fd, o), 0);
	assert_int_equal(fill(w, arg), 0);
	assert_int_equal(bgs_rs_writer_commit(w), 0);
	p = rt_slurp(fd, len);
	close(fd);
	return p;
}

/* ---- editing valid stores ------------------------------------------------ */

uint32_t rt_rechdr_len(const uint8_t *buf)
{
	const struct rs_disk_header *d = (const struct rs_disk_header *)buf;

	return rs_get32(&d->flags) & RS_HF_STORED_SUMS ? RS_RECHDR_V11
						       : RS_RECHDR_V10;
}

void rt_parse(const uint8_t *buf, size_t len, struct rt_layout *l)
{
	uint64_t off;
	uint32_t hl;

	memset(l, 0, sizeof(*l));
	assert_int_equal(bgs_rs_header_start(buf, len, &hl, NULL), 0);
	l->header_len = hl;
	l->rechdr_len = rt_rechdr_len(buf);
	off = hl;
	for (;;) {
		struct rt_rec r = { .off = off };

		assert_true(off + l->rechdr_len <= len);
		assert_int_equal(bgs_rs_rec_decode(&r.h, buf + off,
						   l->rechdr_len, off, NULL),
				 0);
		r.len = l->rechdr_len + (size_t)r.h.payload_len;
		assert_true(off + r.len <= len);
		l->recs = realloc(l->recs, (l->n + 1) * sizeof(*l->recs));
		assert_non_null(l->recs);
		l->recs[l->n++] = r;
		off += r.len;
		if (r.h.type == RS_REC_INDEX)
			break;
	}
	l->footer_off = off;
	assert_int_equal(off + RS_FOOTER_SIZE, len);
}

void rt_layout_free(struct rt_layout *l)
{
	free(l->recs);
	l->recs = NULL;
}

void rt_fix_header(uint8_t *buf)
{
	uint32_t hl;
	rs_le64 v;

	memcpy(&hl, buf + 12, 4); /* little-endian host */
	rs_put64(&v, bgs_rs_hash(buf, hl - 8));
	memcpy(buf + hl - 8, &v, 8);
}

void rt_fix_rechdr(uint8_t *buf, uint64_t off)
{
	const uint32_t hl = rt_rechdr_len(buf);
	rs_le64 v;

	/* The header checksum is the last 8 bytes of either layout. */
	rs_put64(&v, bgs_rs_hash(buf + off, hl - 8));
	memcpy(buf + off + hl - 8, &v, 8);
}

static uint64_t data_sum(const uint8_t *rec, uint32_t hl)
{
	struct rs_disk_rec d;
	const uint8_t *payload = rec + hl;
	size_t plen, raw;
	uint8_t *out;
	uint64_t sum;

	memcpy(&d, rec, sizeof(d));
	plen = (size_t)rs_get64(&d.payload_len);
	if (d.type != RS_REC_PAGES)
		return bgs_rs_hash(payload, plen);
	if (d.encoding == RS_ENC_RAW)
		return bgs_rs_hash(payload, plen);
	if (d.encoding != RS_ENC_LZ4)
		return 0;
	raw = (size_t)rs_get32(&d.b) * RS_PAGE;
	out = malloc(raw);
	assert_non_null(out);
	assert_int_equal(LZ4_decompress_safe((const char *)payload, (char *)out,
					     (int)plen, (int)raw),
			 (int)raw);
	sum = bgs_rs_hash(out, raw);
	free(out);
	return sum;
}

void rt_fix_data(uint8_t *buf, uint64_t off)
{
	const uint32_t hl = rt_rechdr_len(buf);
	struct rs_disk_rec d;

	memcpy(&d, buf + off, hl);
	rs_put64(&d.data_csum, data_sum(buf + off, hl));
	if (hl == RS_RECHDR_V11)
		rs_put64(&d.stored_csum,
			 bgs_rs_hash(buf + off + hl,
				     (size_t)rs_get64(&d.payload_len)));
	memcpy(buf + off, &d, hl);
	rt_fix_rechdr(buf, off);
}

void rt_fix_footer(uint8_t *buf, size_t len)
{
	struct rs_disk_footer f;

	memcpy(&f, buf + len - RS_FOOTER_SIZE, sizeof(f));
	rs_put64(&f.checksum,
		 bgs_rs_hash(&f, offsetof(struct rs_disk_footer, checksum)));
	memcpy(buf + len - RS_FOOTER_SIZE, &f, sizeof(f));
}

struct rt_blob rt_blob_of(const uint8_t *buf, const struct rt_rec *r)
{
	return (struct rt_blob){ .p = buf + r->off, .len = r->len };
}

struct ientry {
	struct rs_extent e;
	uint8_t type;
};

static int ientry_cmp(const void *a, const void *b)
{
	const struct ientry *x = a, *y = b;

	if (x->type != y->type) /* attachments first, in file order */
		return x->type == RS_REC_ATTACHMENT ? -1 : 1;
	if (x->type == RS_REC_ATTACHMENT)
		return x->e.offset < y->e.offset ? -1 : 1;
	return bgs_rs_extent_cmp(&x->e, &y->e);
}

static size_t collect(const struct rt_blob *recs, size_t n, uint64_t off,
		      uint32_t hl, struct ientry *ix, size_t *npages,
		      size_t *natt)
{
	size_t k = 0;

	*npages = *natt = 0;
	for (size_t i = 0; i < n; off += recs[i++].len) {
		struct rs_rechdr h;

		assert_int_equal(
			bgs_rs_rec_decode(&h, recs[i].p, hl, off, NULL), 0);
		if (h.type != RS_REC_PAGES && h.type != RS_REC_ATTACHMENT)
			continue;
		ix[k] = (struct ientry){ .type = h.type };
		ix[k].e.offset = off;
		ix[k].e.stored_len = (uint32_t)h.payload_len;
		if (h.type == RS_REC_PAGES) {
			ix[k].e.region = h.a;
			ix[k].e.encoding = h.encoding;
			ix[k].e.first = h.c;
			ix[k].e.npages = h.b;
			++*npages;
		} else {
			++*natt;
		}
		k++;
	}
	return k;
}

uint8_t *rt_rebuild(const uint8_t *buf, const struct rt_layout *l,
		    const struct rt_blob *recs, size_t n, size_t *len)
{
	const uint64_t start = l->recs[0].off + l->recs[0].len;
	const uint32_t hl = l->rechdr_len;
	struct ientry *ix = calloc(n + 1, sizeof(*ix));
	size_t total = start, k, npages, natt;
	struct rs_disk_index *di;
	struct rs_footer f = { 0 };
	uint8_t *out, *p;
	uint64_t sum;

	assert_non_null(ix);
	for (size_t i = 0; i < n; i++)
		total += recs[i].len;
	k = collect(recs, n, start, hl, ix, &npages, &natt);
	qsort(ix, k, sizeof(*ix), ientry_cmp);
	f.index_offset = total;
	total += hl + k * RS_INDEX_ENTRY_SIZE + RS_FOOTER_SIZE;
	out = p = malloc(total);
	di = calloc(k + 1, sizeof(*di));
	assert_true(out && di);
	memcpy(p, buf, start);
	p += start;
	for (size_t i = 0; i < n; i++, p += recs[i - 1].len)
		memcpy(p, recs[i].p, recs[i].len);
	for (size_t i = 0; i < k; i++)
		bgs_rs_index_encode(&di[i], ix[i].type, &ix[i].e);
	sum = bgs_rs_hash(di, k * sizeof(*di));
	bgs_rs_rec_encode(p,
			  &(struct rs_rechdr){
				  .type = RS_REC_INDEX,
				  .c = k,
				  .payload_len = k * RS_INDEX_ENTRY_SIZE,
				  .data_csum = sum,
				  .stored_csum = sum,
			  },
			  hl);
	memcpy(p + hl, di, k * sizeof(*di));
	p += hl + k * sizeof(*di);
	f.file_size = total;
	f.nrecords = npages;
	f.nattachments = natt;
	memcpy(f.snapshot_id,
	       buf + offsetof(struct rs_disk_header, snapshot_id), 16);
	bgs_rs_footer_encode((struct rs_disk_footer *)p, &f);
	free(di);
	free(ix);
	*len = total;
	return out;
}
