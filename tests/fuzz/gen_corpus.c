/* SPDX-License-Identifier: MIT */
/*
 * Writes the seed corpus of fuzz_reader into a directory: small valid
 * stores of several shapes, made by the writer, and broken ones derived
 * from them, each in format 1.1 and again in 1.0 (named v1.0-*), which
 * readers still read. The committed corpus (tests/fuzz/corpus/reader)
 * came from
 *
 *   rs_gen_corpus tests/fuzz/corpus/reader
 *
 * Contents are deterministic; the ids and times in headers are not.
 */
#include "rs_testutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PG RS_PAGE

static const char *outdir;
static const char *prefix = ""; /* of every name: "v1.0-" for 1.0 */

static void save(const char *name, const uint8_t *p, size_t len)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s%s", outdir, prefix, name);
	f = fopen(path, "wbe");
	if (!f || fwrite(p, 1, len, f) != len || fclose(f)) {
		perror(path);
		exit(1);
	}
	printf("%s%-28s %6zu bytes\n", prefix, name, len);
}

static struct rs_region region(const char *name, uint16_t kind,
			       uint32_t page_size, uint64_t pages)
{
	struct rs_region r = { .base = 0x7f0000000000ull,
			       .length = pages * PG,
			       .page_size = page_size,
			       .kind = kind,
			       .prot = 3 };

	snprintf(r.name, sizeof(r.name), "%s", name);
	return r;
}

/* Mostly zero pages, so the files stay small: a little data at the
 * start of each, of the kind asked for. */
static void sparse(uint8_t *p, size_t pages, enum rt_content c, int seed)
{
	memset(p, 0, pages * PG);
	for (size_t i = 0; i < pages; i++) {
		uint8_t page[PG];

		rt_fill(page, 1, c, (uint64_t)seed * 100 + i);
		memcpy(p + i * PG, page, 128);
	}
}

/* ---- the shapes ---------------------------------------------------------- */

static uint8_t ram[16 * PG], huge[8 * PG], rnd[PG];

static int fill_small(struct rs_writer *w, void *arg)
{
	int ret;

	(void)arg;
	ret = bgs_rs_put_pages(w, 0, 0, 2, ram);
	if (!ret)
		ret = bgs_rs_put_pages(w, 0, 2, 1, rnd); /* RAW */
	if (!ret)
		ret = bgs_rs_put_pages(w, 0, 3, 5, ram + 3 * PG);
	if (!ret)
		ret = bgs_rs_put_attachment(w, "vmm", "{\"cpus\":1}", 10);
	return ret;
}

static int fill_kinds(struct rs_writer *w, void *arg)
{
	int ret = 0;

	(void)arg;
	for (uint32_t r = 0; r < 5 && !ret; r++)
		ret = r == 3 ? bgs_rs_put_pages(w, r, 0, 8, huge)
			     : bgs_rs_put_pages(w, r, 0, 4, ram + r * PG);
	if (!ret)
		ret = bgs_rs_put_zero(w, 0, 4, 4);
	return ret;
}

static int fill_parent(struct rs_writer *w, void *arg)
{
	int ret;

	(void)arg;
	ret = bgs_rs_put_parent(w, 0, 0, 6);
	if (!ret)
		ret = bgs_rs_put_pages(w, 0, 6, 4, ram);
	if (!ret)
		ret = bgs_rs_put_parent(w, 0, 10, 6);
	return ret;
}

static int fill_attachments(struct rs_writer *w, void *arg)
{
	int ret;

	(void)arg;
	ret = bgs_rs_put_attachment(w, "bgsnap.stats", "{}", 2);
	if (!ret)
		ret = bgs_rs_put_attachment(w, "empty", NULL, 0);
	if (!ret)
		ret = bgs_rs_put_attachment(w, "dev", ram, 300);
	return ret;
}

static int fill_none(struct rs_writer *w, void *arg)
{
	(void)w;
	(void)arg;
	return 0;
}

/* ---- broken variants ----------------------------------------------------- */

static void broken(const char *name, const uint8_t *p, size_t len,
		   size_t flip_at, size_t cut)
{
	uint8_t *b = malloc(len);

	memcpy(b, p, len);
	if (flip_at < len)
		b[flip_at] ^= 0x40;
	save(name, b, cut ? cut : len);
	free(b);
}

/* The data records of @p rebuilt: dropped, doubled, reversed, or with
 * an unknown record (skippable or not) in front. */
static void rebuilt(const char *name, const uint8_t *p, size_t len, int how)
{
	struct rt_layout l;
	struct rt_blob b[32];
	static const uint8_t zero4[4]; /* its payload */
	uint8_t unknown[RS_RECHDR_MAX + 4] = { 0 };
	size_t n = 0, out_len;
	uint8_t *out;

	rt_parse(p, len, &l);
	bgs_rs_rec_encode(unknown,
			  &(struct rs_rechdr){
				  .type = 77,
				  .flags = how == 3 ? RS_RECF_SKIPPABLE : 0,
				  .payload_len = 4,
				  .stored_csum = bgs_rs_hash(zero4, 4),
			  },
			  l.rechdr_len);
	if (how == 3 || how == 4)
		b[n++] = (struct rt_blob){ unknown, l.rechdr_len + 4 };
	for (size_t i = 1; i + 1 < l.n; i++) {
		const size_t k = how == 2 ? l.n - 1 - i : i;

		if (how == 0 && i == 2)
			continue; /* dropped */
		b[n++] = rt_blob_of(p, &l.recs[k]);
		if (how == 1 && i == 2)
			b[n++] = rt_blob_of(p, &l.recs[k]); /* doubled */
	}
	out = rt_rebuild(p, &l, b, n, &out_len);
	save(name, out, out_len);
	free(out);
	rt_layout_free(&l);
}

/* The first lz4 payload of @p, with one byte flipped: in 1.0 it may
 * still decode to the same pages, in 1.1 its stored checksum fails. */
static void bad_lz4(const char *name, const uint8_t *p, size_t len)
{
	struct rt_layout l;

	rt_parse(p, len, &l);
	for (size_t i = 0; i < l.n; i++)
		if (l.recs[i].h.type == RS_REC_PAGES &&
		    l.recs[i].h.encoding == RS_ENC_LZ4) {
			broken(name, p, len,
			       l.recs[i].off + l.rechdr_len +
				       l.recs[i].h.payload_len / 2,
			       0);
			break;
		}
	rt_layout_free(&l);
}

/* Every shape and its broken variants, in the format @o asks for. */
static void all_shapes(struct rs_writer_opts *o)
{
	struct rs_region one[1], kinds[6], none[1];
	uint8_t *p;
	size_t len;

	one[0] = region("ram", RS_KIND_ANON, PG, 8);
	o->regions = one;
	o->nregions = 1;
	p = rt_make_store(o, fill_small, NULL, &len);
	save("valid-small", p, len);
	broken("bad-magic", p, len, 1, 0);
	broken("bad-version", p, len, 8, 0);
	broken("bad-header-sum", p, len, 100, 0);
	broken("bad-record-sum", p, len, RS_HEADER_SIZE + 20, 0);
	broken("bad-footer", p, len, len - 30, 0);
	broken("cut-in-half", p, len, len, len / 2);
	broken("cut-footer", p, len, len, len - 10);
	bad_lz4("bad-lz4-byte", p, len);
	rebuilt("dropped-record", p, len, 0);
	rebuilt("doubled-record", p, len, 1);
	rebuilt("valid-reversed", p, len, 2);
	rebuilt("valid-skippable", p, len, 3);
	rebuilt("unknown-record", p, len, 4);
	free(p);

	kinds[0] = region("anon", RS_KIND_ANON, PG, 8);
	kinds[1] = region("thp", RS_KIND_ANON_THP, PG, 4);
	kinds[2] = region("shm", RS_KIND_SHMEM, PG, 4);
	kinds[3] = region("huge", RS_KIND_HUGETLB, 4 * PG, 8);
	kinds[4] = region("file", RS_KIND_FILE_PRIVATE, PG, 4);
	kinds[5] = region("gone", RS_KIND_UNSAVED, PG, 2);
	o->regions = kinds;
	o->nregions = 6;
	p = rt_make_store(o, fill_kinds, NULL, &len);
	save("valid-kinds", p, len);
	free(p);

	one[0] = region("ram", RS_KIND_ANON, PG, 16);
	o->regions = one;
	o->nregions = 1;
	memset(o->parent_id, 0x5a, sizeof(o->parent_id));
	p = rt_make_store(o, fill_parent, NULL, &len);
	save("valid-incremental", p, len);
	free(p);
	memset(o->parent_id, 0, sizeof(o->parent_id));

	o->regions = none;
	o->nregions = 0;
	p = rt_make_store(o, fill_attachments, NULL, &len);
	save("valid-attachments", p, len);
	free(p);
	p = rt_make_store(o, fill_none, NULL, &len);
	save("valid-empty", p, len);
	free(p);
}

int main(int argc, char **argv)
{
	struct rs_writer_opts o = { 0 };

	if (argc != 2) {
		fprintf(stderr, "usage: rs_gen_corpus DIR\n");
		return 2;
	}
	outdir = argv[1];
	sparse(ram, 16, RT_TEXT, 1);
	memset(ram, 0, 2 * PG); /* two zero pages first */
	sparse(huge, 8, RT_STRUCT, 2);
	memset(huge, 0, 4 * PG); /* the first huge page zero */
	rt_fill(rnd, 1, RT_RANDOM, 3);

	all_shapes(&o);
	prefix = "v1.0-";
	o.format_1_0 = true;
	all_shapes(&o);
	return 0;
}
