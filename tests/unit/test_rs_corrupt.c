/* SPDX-License-Identifier: MIT */
/*
 * Bad stores get the right error, never a crash: every byte of a valid
 * store flipped, the store cut at every length, each field set to a bad
 * value with the checksums fixed so the check behind them is reached,
 * records dropped, duplicated and inserted, and random files. Each file
 * goes through both readers: open + decode everything + attachments +
 * verify, and the stream reader. Every case runs on a store of format 1.1
 * and on one of 1.0; 1.1's stored checksums make verify, which decodes
 * nothing there, refuse every changed bit.
 */
#include "rs_testutil.h"
#include "testutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PG RS_PAGE

/* ---- the valid store every case starts from ------------------------------ */

enum { R_RAM, R_HUGE, R_OLD };

static struct rs_region regions[3];
static uint8_t ram[12 * PG], huge[8 * PG];
static const char dev_state[] = "device state: 0123456789abcdef";
static bool v10;      /* the group of format 1.0 */
static uint8_t *base; /* the valid store */
static size_t base_len;
static struct rt_layout lay;

static int fill_store(struct rs_writer *w, void *arg)
{
	int ret;

	(void)arg;
	/* One record of each kind, in a known order. */
	ret = bgs_rs_put_pages(w, R_RAM, 0, 4, ram); /* ZERO */
	if (!ret)
		ret = bgs_rs_put_pages(w, R_RAM, 4, 1, ram + 4 * PG); /* RAW */
	if (!ret)
		ret = bgs_rs_put_pages(w, R_RAM, 5, 7, ram + 5 * PG); /* LZ4 */
	if (!ret)
		ret = bgs_rs_put_attachment(w, "dev", dev_state,
					    sizeof(dev_state));
	if (!ret)
		ret = bgs_rs_put_pages(w, R_HUGE, 0, 8, huge); /* ZERO + LZ4 */
	return ret;
}

static void make_regions(void)
{
	static const char *const names[] = { "ram", "big", "old" };
	static const uint16_t kinds[] = { RS_KIND_ANON, RS_KIND_HUGETLB,
					  RS_KIND_UNSAVED };
	static const uint32_t sizes[] = { PG, 4 * PG, PG };
	static const uint64_t pages[] = { 12, 8, 3 };

	for (int i = 0; i < 3; i++) {
		struct rs_region *r = &regions[i];

		memset(r, 0, sizeof(*r));
		strcpy(r->name, names[i]);
		r->base = 0x10000000ull * (uint64_t)(i + 1);
		r->length = pages[i] * PG;
		r->page_size = sizes[i];
		r->kind = kinds[i];
		r->prot = 1;
	}
}

static int setup(void **state)
{
	const struct rs_writer_opts o = { .regions = regions,
					  .nregions = 3,
					  .format_1_0 = v10 };

	(void)state;
	make_regions();
	memset(ram, 0, sizeof(ram));
	rt_fill(ram + 4 * PG, 1, RT_RANDOM, 1);
	rt_fill(ram + 5 * PG, 7, RT_STRUCT, 2);
	memset(huge, 0, sizeof(huge));
	rt_fill(huge + 4 * PG, 4, RT_TEXT, 3);
	/* mostly zero, so the store stays small and each byte is cheap */
	for (int i = 5; i < 12; i++)
		memset(ram + i * PG + 256, 0, PG - 256);
	for (int i = 4; i < 8; i++)
		memset(huge + i * PG + 256, 0, PG - 256);
	base = rt_make_store(&o, fill_store, NULL, &base_len);
	rt_parse(base, base_len, &lay);
	/* regions, 2 + 2 ram records... : the shape this file expects */
	assert_int_equal(lay.n, 8);
	assert_int_equal(lay.rechdr_len, v10 ? 48 : 56);
	return 0;
}

static int setup_v11(void **state)
{
	v10 = false;
	return setup(state);
}

static int setup_v10(void **state)
{
	v10 = true;
	return setup(state);
}

static int teardown(void **state)
{
	(void)state;
	rt_layout_free(&lay);
	free(base);
	return 0;
}

static uint8_t *copy_base(void)
{
	uint8_t *p = malloc(base_len + 64);

	assert_non_null(p);
	memcpy(p, base, base_len);
	return p;
}

/* ---- running both readers ------------------------------------------------ */

static bool is_store_error(int ret)
{
	return ret <= RS_EBADMAGIC && ret >= RS_ECORRUPT;
}

static void check_diag(int ret, const struct rs_diag *d)
{
	if (ret >= 0)
		return;
	assert_int_equal(d->code, ret);
	assert_true(d->msg[0] != '\0');
}

/* One memfd for all the files this test makes, loaded at offset 0. */
static int load(const uint8_t *buf, size_t len)
{
	static int fd = -1;

	if (fd < 0)
		fd = rt_memfd(NULL, 0);
	assert_int_equal(ftruncate(fd, 0), 0);
	assert_int_equal(pwrite(fd, buf, len, 0), (ssize_t)len);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	return fd;
}

/* Every extent decoded straight into a buffer: the same verdict as
 * bgs_rs_decode (ZERO and PARENT records are not read by it). */
static int decode_to_all(const struct rs_reader *r, struct rs_diag *d)
{
	static uint8_t buf[16 * PG];
	struct rs_decoder *dec;
	int ret = bgs_rs_decoder_new(&dec);

	for (size_t i = 0; !ret && i < bgs_rs_extent_count(r); i++) {
		ret = bgs_rs_decode_to(r, dec, i, buf, d);
		ret = ret > 0 ? 0 : ret;
	}
	bgs_rs_decoder_free(dec);
	return ret;
}

/* Open, decode every extent (both ways), read every attachment, verify:
 * the first error, or 0. */
static int run_open(const uint8_t *buf, size_t len)
{
	const int fd = load(buf, len);
	struct rs_reader *r;
	struct rs_diag d = { 0 };
	const void *data;
	int ret = bgs_rs_open(&r, fd, &d);

	for (size_t i = 0; !ret && i < bgs_rs_extent_count(r); i++) {
		ret = bgs_rs_decode(r, i, &data, &d);
		ret = ret == 1 ? 0 : ret;
	}
	if (!ret)
		ret = decode_to_all(r, &d);
	for (size_t i = 0; !ret && i < bgs_rs_attachment_count(r); i++) {
		const char *name;
		size_t n;
		uint8_t *p;

		assert_int_equal(bgs_rs_attachment_info(r, i, &name, &n), 0);
		p = malloc(n + 1);
		ret = bgs_rs_attachment_read(r, i, p, &d);
		free(p);
	}
	if (!ret)
		ret = bgs_rs_verify(r, 0, &d, NULL, NULL);
	check_diag(ret, &d);
	bgs_rs_close(r);
	return ret;
}

static int run_stream(const uint8_t *buf, size_t len)
{
	const int fd = load(buf, len);
	struct rs_stream *s;
	struct rs_diag d = { 0 };
	struct rs_item it;
	int ret = bgs_rs_stream_open(&s, fd, &d);

	if (!ret)
		do
			ret = bgs_rs_stream_next(s, &it, &d);
		while (ret == 1);
	check_diag(ret, &d);
	bgs_rs_stream_close(s);
	return ret;
}

static void expect(const uint8_t *buf, size_t len, int want_open,
		   int want_stream, const char *what)
{
	const int o = run_open(buf, len), s = run_stream(buf, len);

	if (o != want_open || s != want_stream)
		fail_msg("%s: open %d (want %d), stream %d (want %d)", what, o,
			 want_open, s, want_stream);
}

/* ---- every byte flipped -------------------------------------------------- */

/* The codes a flip at @off may give: @o for the open path, @s for the
 * stream (bit n set: RS_EBADMAGIC - n). */
#define B(code)	 (1u << (RS_EBADMAGIC - (code)))
#define LZ4_SAME (1u << 8) /* no error at all */

static void flip_expect(size_t off, unsigned *o, unsigned *s)
{
	const struct rt_rec *r = NULL;

	if (off < 8) {
		*o = *s = B(RS_EBADMAGIC);
		return;
	}
	if (off < 10) {
		*o = *s = B(RS_EVERSION);
		return;
	}
	if (off >= 12 && off < 16) {
		*o = *s = B(RS_ECORRUPT);
		return;
	}
	if (off < lay.header_len) {
		*o = *s = B(RS_ECHECKSUM);
		return;
	}
	if (off >= lay.footer_off) {
		*o = off < lay.footer_off + 8 ? B(RS_ETRUNCATED)
					      : B(RS_ECHECKSUM);
		*s = off < lay.footer_off + 8 ? B(RS_ECORRUPT)
					      : B(RS_ECHECKSUM);
		return;
	}
	for (size_t i = 0; i < lay.n; i++)
		if (off >= lay.recs[i].off &&
		    off < lay.recs[i].off + lay.recs[i].len)
			r = &lay.recs[i];
	assert_non_null(r);
	if (off < r->off + 4) { /* the record magic */
		*o = *s = B(RS_ECORRUPT);
		return;
	}
	*o = *s = B(RS_ECHECKSUM);
	if (off < r->off + lay.rechdr_len)
		return;
	/* In 1.0 an lz4 byte may break decoding, change the pages or (a
	 * match moved onto equal bytes) change nothing: the checksum is of
	 * the pages, so then the store is still right. 1.1 checks the bytes
	 * as stored before decoding them. */
	if (v10 && r->h.type == RS_REC_PAGES && r->h.encoding == RS_ENC_LZ4)
		*o = *s = B(RS_ECHECKSUM) | B(RS_ECORRUPT) | LZ4_SAME;
	/* open checks an attachment's name before it can read its data */
	if (r->h.type == RS_REC_ATTACHMENT &&
	    off < r->off + lay.rechdr_len + r->h.a)
		*o |= B(RS_ECORRUPT);
}

static void test_flip_every_byte(void **state)
{
	uint8_t *buf = copy_base();
	unsigned same = 0, lz4 = 0;

	(void)state;
	for (size_t off = 0; off < base_len; off++) {
		unsigned want_o, want_s;
		int o, s;

		flip_expect(off, &want_o, &want_s);
		buf[off] ^= 0x5a;
		o = run_open(buf, base_len);
		s = run_stream(buf, base_len);
		buf[off] ^= 0x5a;
		lz4 += !!(want_o & LZ4_SAME);
		if (!o && !s && (want_o & LZ4_SAME)) {
			same++;
			continue;
		}
		if (!is_store_error(o) || !(B(o) & want_o) ||
		    !is_store_error(s) || !(B(s) & want_s))
			fail_msg("byte %zu flipped: open %d, stream %d", off, o,
				 s);
	}
	if (v10)
		print_message("format 1.0: %zu bytes flipped; of %u lz4 bytes "
			      "%u decoded the same\n",
			      base_len, lz4, same);
	/* 1.0: rare, a match moved onto equal data; 1.1 checks the bytes */
	if (v10)
		assert_true(same * 50 < lz4);
	else
		assert_int_equal(same, 0);
	free(buf);
}

/* ---- every bit of lz4 payloads and of record headers --------------------- */

/* What verify says of @buf (with @flags): open's error, verify's, or 0. */
static int run_verify(const uint8_t *buf, size_t len, unsigned flags)
{
	const int fd = load(buf, len);
	struct rs_reader *r;
	struct rs_diag d = { 0 };
	int ret = bgs_rs_open(&r, fd, &d);

	if (!ret)
		ret = bgs_rs_verify(r, flags, &d, NULL, NULL);
	check_diag(ret, &d);
	bgs_rs_close(r);
	return ret;
}

/*
 * Flip every bit of [from, to) in turn. Each must be refused with @want
 * by verify, plain and deep, and by the stream reader; for a 1.0 store
 * with @lz4_ok, whose lz4 bytes may decode to the same pages, refusing is
 * not required: returns how many flips plain verify let pass.
 */
static unsigned flip_bits(size_t from, size_t to, int want, bool lz4_ok)
{
	uint8_t *buf = copy_base();
	unsigned passed = 0;

	for (size_t off = from; off < to; off++) {
		for (unsigned bit = 0; bit < 8; bit++) {
			int v, deep, s;

			buf[off] ^= (uint8_t)(1u << bit);
			v = run_verify(buf, base_len, 0);
			deep = run_verify(buf, base_len, RS_VERIFY_DEEP);
			s = run_stream(buf, base_len);
			buf[off] ^= (uint8_t)(1u << bit);
			passed += !v;
			if (lz4_ok && v10 && (!v || is_store_error(v)) &&
			    (!s || is_store_error(s)))
				continue;
			if (v != want || deep != want || s != want)
				fail_msg("format 1.%d: bit %u of byte %zu "
					 "flipped: verify %d, deep %d, stream "
					 "%d (want %d)",
					 v10 ? 0 : 1, bit, off, v, deep, s,
					 want);
		}
	}
	free(buf);
	return passed;
}

/* In 1.1 no bit of an lz4 payload can change unnoticed, and verify
 * notices without decoding (issue 13: 1.0 let some through). */
static void test_lz4_payload_bits(void **state)
{
	unsigned bits = 0, passed = 0;

	(void)state;
	for (size_t i = 0; i < lay.n; i++) {
		const struct rt_rec *r = &lay.recs[i];
		const size_t p = r->off + lay.rechdr_len;

		if (r->h.type != RS_REC_PAGES || r->h.encoding != RS_ENC_LZ4)
			continue;
		passed +=
			flip_bits(p, p + r->h.payload_len, RS_ECHECKSUM, true);
		bits += 8 * (unsigned)r->h.payload_len;
	}
	print_message("format 1.%d: %u lz4 payload bits flipped, %u passed "
		      "verify\n",
		      v10 ? 0 : 1, bits, passed);
	assert_true(bits > 0);
	if (!v10)
		assert_int_equal(passed, 0);
}

/* Every bit of every record header, in either format: the magic's give
 * "no record header there", the others a header checksum mismatch. */
static void test_record_header_bits(void **state)
{
	(void)state;
	for (size_t i = 0; i < lay.n; i++) {
		const size_t o = lay.recs[i].off;

		flip_bits(o, o + 4, RS_ECORRUPT, false);
		flip_bits(o + 4, o + lay.rechdr_len, RS_ECHECKSUM, false);
	}
}

static void test_valid_base(void **state)
{
	(void)state;
	expect(base, base_len, 0, 0, "the valid store");
}

/* ---- cut at every length ------------------------------------------------- */

static void test_truncate_everywhere(void **state)
{
	(void)state;
	for (size_t len = 0; len < base_len; len++) {
		const int o = run_open(base, len), s = run_stream(base, len);

		if (o != RS_ETRUNCATED || s != RS_ETRUNCATED)
			fail_msg("cut at %zu: open %d, stream %d", len, o, s);
	}
}

/* ---- fields set to bad values, checksums fixed --------------------------- */

static const struct rt_rec *find_rec(uint8_t type, uint32_t region,
				     uint64_t first)
{
	for (size_t i = 0; i < lay.n; i++) {
		const struct rt_rec *r = &lay.recs[i];

		if (r->h.type == type &&
		    (type != RS_REC_PAGES ||
		     (r->h.a == region && r->h.c == first)))
			return r;
	}
	fail_msg("no record %u/%u/%llu", type, region,
		 (unsigned long long)first);
	return NULL;
}

/* The offset of the index entry of the record at @rec_off. */
static size_t ientry(const uint8_t *buf, uint64_t rec_off)
{
	const struct rt_rec *ix = &lay.recs[lay.n - 1];

	for (size_t i = 0; i < ix->h.c; i++) {
		const size_t at = ix->off + lay.rechdr_len + i * 32;
		rs_le64 v;

		memcpy(&v, buf + at, 8);
		if (rs_get64(&v) == rec_off)
			return at;
	}
	fail_msg("no index entry for %llu", (unsigned long long)rec_off);
	return 0;
}

/* Region table entry @i. */
static size_t rentry(const uint8_t *buf, int i)
{
	size_t at = lay.recs[0].off + lay.rechdr_len;

	for (; i > 0; i--) {
		rs_le16 n;

		memcpy(&n, buf + at + 24, 2);
		at += 32 + rs_get16(&n);
	}
	return at;
}

static void put16(uint8_t *p, uint16_t v)
{
	rs_put16((rs_le16 *)p, v);
}

static void put32(uint8_t *p, uint32_t v)
{
	rs_put32((rs_le32 *)p, v);
}

static void put64(uint8_t *p, uint64_t v)
{
	rs_put64((rs_le64 *)p, v);
}

static uint64_t get64(const uint8_t *p)
{
	return rs_get64((const rs_le64 *)p);
}

/* Every checksum but the page and attachment data's. */
static void fix_sums(uint8_t *buf, size_t len)
{
	rt_fix_header(buf);
	for (size_t i = 0; i < lay.n; i++) {
		const uint8_t t = lay.recs[i].h.type;

		if (t == RS_REC_REGIONS || t == RS_REC_INDEX)
			rt_fix_data(buf, lay.recs[i].off);
		else
			rt_fix_rechdr(buf, lay.recs[i].off);
	}
	rt_fix_footer(buf, len);
}

struct edit {
	const char *what;
	void (*apply)(uint8_t *buf);
	int want_open, want_stream;
};

#define REC(type, region, first) find_rec(type, region, first)->off
#define RAW_REC			 REC(RS_REC_PAGES, R_RAM, 4)
#define LZ4_REC			 REC(RS_REC_PAGES, R_RAM, 5)
#define ZERO_REC		 REC(RS_REC_PAGES, R_RAM, 0)
#define HUGE_REC		 REC(RS_REC_PAGES, R_HUGE, 4)
#define ATT_REC			 REC(RS_REC_ATTACHMENT, 0, 0)
#define FOOTER			 lay.footer_off

static void e_major(uint8_t *b)
{
	put16(b + 8, 2);
}
static void e_minor(uint8_t *b)
{
	put16(b + 10, 9);
}
static void e_hlen(uint8_t *b)
{
	put32(b + 12, 248);
}
static void e_pagesize(uint8_t *b)
{
	put32(b + 16, 8192);
}
static void e_incompat(uint8_t *b)
{
	b[20] |= 8;
}
static void e_compat(uint8_t *b)
{
	b[22] |= 0x10;
}
static void e_incr(uint8_t *b)
{
	b[22] |= 1;
}
static void e_nregions(uint8_t *b)
{
	put32(b + 24, 4);
}
static void e_reserved(uint8_t *b)
{
	b[210] = 7;
}
static void e_rlen_grow(uint8_t *b)
{
	put64(b + rentry(b, 0) + 8, 13 * PG);
}
static void e_rlen_shrink(uint8_t *b)
{
	put64(b + rentry(b, 0) + 8, 8 * PG);
}
static void e_rkind(uint8_t *b)
{
	put16(b + rentry(b, 0) + 20, 9);
}
static void e_rpage(uint8_t *b)
{
	put32(b + rentry(b, 0) + 16, 8192);
}
static void e_rhuge(uint8_t *b)
{
	put32(b + rentry(b, 1) + 16, 3 * PG);
}
static void e_rname0(uint8_t *b)
{
	put16(b + rentry(b, 0) + 24, 0);
}
static void e_rnamebad(uint8_t *b)
{
	b[rentry(b, 0) + 33] = '\n';
}
static void e_rdup(uint8_t *b)
{
	memcpy(b + rentry(b, 1) + 32, "ram", 3);
}
static void e_rreserved(uint8_t *b)
{
	b[rentry(b, 2) + 27] = 1;
}
static void e_rbase(uint8_t *b)
{
	b[rentry(b, 0)] = 1;
}
static void e_encoding(uint8_t *b)
{
	b[LZ4_REC + 5] = 7;
}
static void e_npages0(uint8_t *b)
{
	put32(b + RAW_REC + 12, 0);
	put32(b + ientry(b, RAW_REC) + 16, 0);
}
static void e_zerosum(uint8_t *b)
{
	put64(b + ZERO_REC + 32, 5);
}
static void e_lz4sum(uint8_t *b)
{
	b[LZ4_REC + 32] ^= 1;
}
static void e_overlap(uint8_t *b)
{
	put64(b + RAW_REC + 16, 3);
	put64(b + ientry(b, RAW_REC) + 8, 3);
}
static void e_overlap_rec(uint8_t *b)
{
	put64(b + RAW_REC + 16, 3);
}
static void e_unsaved(uint8_t *b)
{
	put32(b + RAW_REC + 8, R_OLD);
}
static void e_noregion(uint8_t *b)
{
	put32(b + RAW_REC + 8, 7);
}
static void e_outside(uint8_t *b)
{
	put64(b + RAW_REC + 16, 1ull << 40);
}
static void e_split_huge(uint8_t *b)
{
	put64(b + HUGE_REC + 16, 2);
}
static void e_recmagic(uint8_t *b)
{
	b[LZ4_REC] ^= 1;
}
static void e_ixswap(uint8_t *b)
{
	const size_t x = ientry(b, RAW_REC), y = ientry(b, LZ4_REC);
	uint8_t t[32];

	memcpy(t, b + x, 32);
	memcpy(b + x, b + y, 32);
	memcpy(b + y, t, 32);
}
static void e_ixreserved(uint8_t *b)
{
	b[ientry(b, LZ4_REC) + 31] = 1;
}
static void e_ixoff1(uint8_t *b)
{
	b[ientry(b, LZ4_REC)] += 1;
}
static void e_ixoffbig(uint8_t *b)
{
	put64(b + ientry(b, LZ4_REC), 1ull << 50);
}
static void e_ixcount(uint8_t *b)
{
	b[lay.recs[lay.n - 1].off + 16] += 1;
}
static void e_ixtype(uint8_t *b)
{
	b[ientry(b, ATT_REC) + 28] = RS_REC_PAGES;
}
static void e_fidx(uint8_t *b)
{
	put64(b + FOOTER + 8, get64(b + FOOTER + 8) + 48);
}
static void e_fsize_up(uint8_t *b)
{
	put64(b + FOOTER + 16, base_len + 1);
}
static void e_fsize_down(uint8_t *b)
{
	put64(b + FOOTER + 16, base_len - 1);
}
static void e_fid(uint8_t *b)
{
	b[FOOTER + 40] ^= 1;
}
static void e_fnrec(uint8_t *b)
{
	b[FOOTER + 24] += 1;
}
static void e_fnatt(uint8_t *b)
{
	put64(b + FOOTER + 32, 1ull << 40);
}
static void e_attbig(uint8_t *b)
{
	put64(b + ATT_REC + 16, 65ull << 20);
}
static void e_attname0(uint8_t *b)
{
	put32(b + ATT_REC + 8, 0);
}

static const struct edit edits[] = {
	{ "major version 2", e_major, RS_EVERSION, RS_EVERSION },
	{ "minor version 9", e_minor, 0, 0 },
	{ "header length 248", e_hlen, RS_ECORRUPT, RS_ECORRUPT },
	{ "page size 8192", e_pagesize, RS_ECORRUPT, RS_ECORRUPT },
	{ "unknown incompatible flag", e_incompat, RS_EVERSION, RS_EVERSION },
	{ "unknown compatible flag", e_compat, 0, 0 },
	{ "incremental without parent", e_incr, RS_ECORRUPT, RS_ECORRUPT },
	{ "nregions 4", e_nregions, RS_ECORRUPT, RS_ECORRUPT },
	{ "reserved header byte", e_reserved, 0, 0 },
	{ "region longer", e_rlen_grow, RS_EMISSING, RS_EMISSING },
	{ "region shorter", e_rlen_shrink, RS_ERANGE, RS_ERANGE },
	{ "region kind 9", e_rkind, RS_ECORRUPT, RS_ECORRUPT },
	{ "anon page size 8192", e_rpage, RS_ECORRUPT, RS_ECORRUPT },
	{ "huge page size 12 KiB", e_rhuge, RS_ECORRUPT, RS_ECORRUPT },
	{ "empty region name", e_rname0, RS_ECORRUPT, RS_ECORRUPT },
	{ "control byte in name", e_rnamebad, RS_ECORRUPT, RS_ECORRUPT },
	{ "duplicate region name", e_rdup, RS_ECORRUPT, RS_ECORRUPT },
	{ "region reserved byte", e_rreserved, RS_ECORRUPT, RS_ECORRUPT },
	{ "unaligned region base", e_rbase, RS_ECORRUPT, RS_ECORRUPT },
	{ "encoding 7", e_encoding, RS_ECORRUPT, RS_ECORRUPT },
	{ "zero pages", e_npages0, RS_ECORRUPT, RS_ECORRUPT },
	{ "zero record with a checksum", e_zerosum, RS_ECORRUPT, RS_ECORRUPT },
	{ "lz4 data checksum", e_lz4sum, RS_ECHECKSUM, RS_ECHECKSUM },
	{ "overlapping records", e_overlap, RS_EOVERLAP, RS_EOVERLAP },
	{ "record moved, index not", e_overlap_rec, RS_ECORRUPT, RS_EOVERLAP },
	{ "pages of an unsaved region", e_unsaved, RS_ERANGE, RS_ERANGE },
	{ "no such region", e_noregion, RS_ECORRUPT, RS_ECORRUPT },
	{ "record outside its region", e_outside, RS_ERANGE, RS_ERANGE },
	{ "split huge page", e_split_huge, RS_ECORRUPT, RS_ECORRUPT },
	{ "record magic", e_recmagic, RS_ECORRUPT, RS_ECORRUPT },
	{ "index out of order", e_ixswap, RS_ECORRUPT, RS_ECORRUPT },
	{ "index reserved byte", e_ixreserved, RS_ECORRUPT, RS_ECORRUPT },
	{ "index offset off by one", e_ixoff1, RS_ECORRUPT, RS_ECORRUPT },
	{ "index offset outside", e_ixoffbig, RS_ECORRUPT, RS_ECORRUPT },
	{ "index entry count", e_ixcount, RS_ECORRUPT, RS_ECORRUPT },
	{ "index entry type", e_ixtype, RS_ECORRUPT, RS_ECORRUPT },
	{ "footer index offset", e_fidx, RS_ECORRUPT, RS_ECORRUPT },
	{ "footer size too big", e_fsize_up, RS_ETRUNCATED, RS_ECORRUPT },
	{ "footer size too small", e_fsize_down, RS_ECORRUPT, RS_ECORRUPT },
	{ "footer snapshot id", e_fid, RS_ECORRUPT, RS_ECORRUPT },
	{ "footer record count", e_fnrec, RS_ECORRUPT, RS_ECORRUPT },
	{ "footer attachment count", e_fnatt, RS_ECORRUPT, RS_ECORRUPT },
	{ "attachment of 65 MiB", e_attbig, RS_ECORRUPT, RS_ECORRUPT },
	{ "attachment without name", e_attname0, RS_ECORRUPT, RS_ECORRUPT },
};

static void test_bad_fields(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
		uint8_t *buf = copy_base();

		edits[i].apply(buf);
		fix_sums(buf, base_len);
		expect(buf, base_len, edits[i].want_open, edits[i].want_stream,
		       edits[i].what);
		free(buf);
	}
}

/* An lz4 block that was wrong before its stored checksum was taken (a
 * writer's bug): the stored bytes are as written, so verify as stored
 * passes a 1.1 store; deep verify, the stream and every decode refuse it.
 * 1.0 has only the pages' checksum: every verify decodes and refuses. */
static void test_verify_as_stored(void **state)
{
	const struct rt_rec *r = find_rec(RS_REC_PAGES, R_RAM, 5);
	const size_t p = r->off + lay.rechdr_len;
	uint8_t *buf = copy_base();

	(void)state;
	assert_int_equal(r->h.encoding, RS_ENC_LZ4);
	memset(buf + p, 0xff, r->h.payload_len); /* decodes to nothing */
	if (!v10) {
		put64(buf + r->off + 40,
		      bgs_rs_hash(buf + p, r->h.payload_len));
		rt_fix_rechdr(buf, r->off);
	}
	assert_int_equal(run_verify(buf, base_len, 0), v10 ? RS_ECORRUPT : 0);
	assert_int_equal(run_verify(buf, base_len, RS_VERIFY_DEEP),
			 RS_ECORRUPT);
	expect(buf, base_len, RS_ECORRUPT, RS_ECORRUPT, "bad lz4 block");
	free(buf);
}

/* ---- records dropped, duplicated, inserted ------------------------------- */

/* The data records of the base store, with @extra inserted at @at
 * (if not NULL), record @drop left out and record @dup given twice. */
static uint8_t *records_edit(const struct rt_blob *extra, size_t at,
			     ssize_t drop, ssize_t dup, size_t *len)
{
	struct rt_blob b[16];
	size_t n = 0;
	uint8_t *out;

	for (size_t i = 1; i + 1 < lay.n; i++) {
		if (extra && i == at)
			b[n++] = *extra;
		if ((ssize_t)i != drop)
			b[n++] = rt_blob_of(base, &lay.recs[i]);
		if ((ssize_t)i == dup)
			b[n++] = rt_blob_of(base, &lay.recs[i]);
	}
	out = rt_rebuild(base, &lay, b, n, len);
	return out;
}

static size_t rec_index(const struct rt_rec *r)
{
	return (size_t)(r - lay.recs);
}

/* A record of type 9, unknown to this reader, with a payload of 5 zero
 * bytes whose stored checksum (1.1) is @stored. */
static struct rt_blob unknown_record(uint8_t *buf, uint16_t flags,
				     uint64_t stored)
{
	memset(buf, 0, RS_RECHDR_MAX + 5);
	bgs_rs_rec_encode(buf,
			  &(struct rs_rechdr){ .type = 9,
					       .flags = flags,
					       .payload_len = 5,
					       .stored_csum = stored },
			  lay.rechdr_len);
	return (struct rt_blob){ buf, lay.rechdr_len + 5 };
}

static void test_records_edited(void **state)
{
	static const uint8_t zero5[5];
	const uint64_t sum5 = bgs_rs_hash(zero5, sizeof(zero5));
	uint8_t unknown[RS_RECHDR_MAX + 5];
	struct rt_blob extra;
	size_t len;
	uint8_t *p;

	(void)state;
	/* a record type from the future, skippable or not */
	extra = unknown_record(unknown, RS_RECF_SKIPPABLE, sum5);
	p = records_edit(&extra, 3, -1, -1, &len);
	expect(p, len, 0, 0, "skippable unknown record");
	free(p);
	/* 1.1: skipped, but its payload still checked as stored */
	extra = unknown_record(unknown, RS_RECF_SKIPPABLE, sum5 ^ 1);
	p = records_edit(&extra, 3, -1, -1, &len);
	expect(p, len, v10 ? 0 : RS_ECHECKSUM, v10 ? 0 : RS_ECHECKSUM,
	       "skippable unknown record, stored checksum wrong");
	free(p);
	extra = unknown_record(unknown, 0, sum5);
	p = records_edit(&extra, 3, -1, -1, &len);
	expect(p, len, RS_EVERSION, RS_EVERSION, "unknown record");
	free(p);
	/* a second region table */
	extra = rt_blob_of(base, &lay.recs[0]);
	p = records_edit(&extra, 2, -1, -1, &len);
	expect(p, len, RS_ECORRUPT, RS_ECORRUPT, "second region table");
	free(p);
	p = records_edit(NULL, 0,
			 (ssize_t)rec_index(find_rec(RS_REC_PAGES, R_RAM, 4)),
			 -1, &len);
	expect(p, len, RS_EMISSING, RS_EMISSING, "record dropped");
	free(p);
	p = records_edit(NULL, 0, -1,
			 (ssize_t)rec_index(find_rec(RS_REC_PAGES, R_HUGE, 4)),
			 &len);
	expect(p, len, RS_EOVERLAP, RS_EOVERLAP, "record twice");
	free(p);
	p = records_edit(NULL, 0, -1,
			 (ssize_t)rec_index(find_rec(RS_REC_ATTACHMENT, 0, 0)),
			 &len);
	expect(p, len, RS_ECORRUPT, RS_ECORRUPT, "attachment twice");
	free(p);
	/* all records reversed: still valid */
	{
		struct rt_blob b[16];
		size_t n = 0;

		for (size_t i = lay.n - 2; i >= 1; i--)
			b[n++] = rt_blob_of(base, &lay.recs[i]);
		p = rt_rebuild(base, &lay, b, n, &len);
		expect(p, len, 0, 0, "records reversed");
		free(p);
	}
}

static void test_trailing_data(void **state)
{
	uint8_t *buf = copy_base();

	(void)state;
	memset(buf + base_len, 0, 10);
	expect(buf, base_len + 10, RS_ETRUNCATED, RS_ECORRUPT, "trailing data");
	free(buf);
}

/* ---- random files -------------------------------------------------------- */

static void test_random_files(void **state)
{
	uint64_t seed = tu_seed();
	uint8_t *buf = malloc(base_len + 4096);

	(void)state;
	for (int i = 0; i < 600; i++) {
		size_t len = tu_rand(&seed) % (base_len + 4096);
		const int kind = i % 3;
		bool only_lz4 = kind == 2;
		int o, s;

		for (size_t k = 0; k < len; k++)
			buf[k] = (uint8_t)tu_rand(&seed);
		if (kind == 1 && len >= RS_HEADER_SIZE) {
			/* a valid header, then noise */
			memcpy(buf, base, RS_HEADER_SIZE);
		} else if (kind == 2) {
			/* the valid store with a few bytes changed */
			const int n = 1 + (int)(tu_rand(&seed) % 8);

			len = base_len;
			memcpy(buf, base, len);
			for (int k = 0; k < n; k++) {
				const size_t off = tu_rand(&seed) % len;
				unsigned want_o, want_s;

				buf[off] ^= (uint8_t)(1 + tu_rand(&seed) % 255);
				flip_expect(off, &want_o, &want_s);
				only_lz4 &= !!(want_o & LZ4_SAME);
			}
		}
		o = run_open(buf, len);
		s = run_stream(buf, len);
		/* Changes to lz4 data alone may decode to the same pages: the
		 * store is then still right (see flip_expect). */
		if (only_lz4 && !o && !s)
			continue;
		if (!is_store_error(o) || !is_store_error(s))
			fail_msg("random file %d (kind %d, %zu bytes): open %d,"
				 " stream %d",
				 i, kind, len, o, s);
	}
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_base),
		cmocka_unit_test(test_lz4_payload_bits),
		cmocka_unit_test(test_record_header_bits),
		cmocka_unit_test(test_verify_as_stored),
		cmocka_unit_test(test_flip_every_byte),
		cmocka_unit_test(test_truncate_everywhere),
		cmocka_unit_test(test_bad_fields),
		cmocka_unit_test(test_records_edited),
		cmocka_unit_test(test_trailing_data),
		cmocka_unit_test(test_random_files),
	};
	int failed;

	tu_seed();
	failed = cmocka_run_group_tests_name("format 1.1", tests, setup_v11,
					     teardown);
	return failed + cmocka_run_group_tests_name("format 1.0", tests,
						    setup_v10, teardown);
}
