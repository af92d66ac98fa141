/* SPDX-License-Identifier: MIT */
/*
 * The core writer (snapshot/snap_core.c) over snapshots the store's writer
 * makes directly, with a "bgsnap.core" attachment encoded from a made-up
 * process: the ELF layout and notes a debugger reads, memory and holes
 * where they belong, and attachments that are damaged or hostile, which
 * must be refused (BGSNAP_ECORRUPT) or read within their bounds, never
 * followed outside them.
 */
#include "testutil.h"
#include "rs_testutil.h"
#include "snap_internal.h"

#include <elf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE	 4096u
#define ANON	 0x10000000ull
#define TEXT	 0x20000000ull
#define NPAGES	 16
#define NTHREADS 2

static uint8_t anon[NPAGES * PAGE];
static char heap_label[] = "[heap]", text_label[] = "/bin/prog";
static uint8_t elf_page[PAGE];

static const struct rs_region regions[] = {
	{ .name = "anon@10000000",
	  .base = ANON,
	  .length = NPAGES * PAGE,
	  .page_size = PAGE,
	  .kind = RS_KIND_ANON,
	  .prot = 3 },
	{ .name = "/bin/prog@20000000",
	  .base = TEXT,
	  .length = 4 * PAGE,
	  .page_size = PAGE,
	  .kind = RS_KIND_UNSAVED,
	  .prot = 5 },
};

/* A process of two threads, the second stopped by SIGUSR1; a heap of
 * NPAGES whose odd pages are zero; its program's text, of which only the
 * ELF header page is recorded. */
static void make_core(struct bgs_target_core *c, struct bgs_target_maps *m)
{
	static struct bgs_target_core_thread th[NTHREADS];
	static struct bgs_target_core_mem mem;
	static struct bgs_target_map maps[2];
	static uint8_t auxv[32] = { 6, 0, 0, 0, 0, 0, 0, 0, 0, 16 };
	static uint8_t xstate[832];

	memset(c, 0, sizeof(*c));
	c->psinfo.sname = 'S';
	memcpy(c->psinfo.fname, "prog", 4);
	memcpy(c->psinfo.psargs, "prog --flag", 11);
	c->auxv = auxv;
	c->auxv_len = sizeof(auxv);
	c->filter = 0x33;
	memcpy(c->xsave_layout, (uint32_t[4]){ 2, 256, 576, 0 }, 16);
	c->xsave_layout_len = 16;
	for (int i = 0; i < NTHREADS; i++) {
		th[i] = (struct bgs_target_core_thread){ .tid = 100 + i,
							 .has_fp = true };
		memset(th[i].regs, 0x10 + i, sizeof(th[i].regs));
		th[i].xstate = xstate;
		th[i].xstate_len = sizeof(xstate);
	}
	th[1].cursig = 10;
	th[1].has_siginfo = true;
	c->threads = th;
	c->nthreads = NTHREADS;
	memcpy(elf_page, ELFMAG, SELFMAG);
	mem = (struct bgs_target_core_mem){ TEXT, PAGE, elf_page };
	c->mem = &mem;
	c->nmem = 1;
	maps[0] = (struct bgs_target_map){ .start = ANON,
					   .end = ANON + NPAGES * PAGE,
					   .prot = 3,
					   .kind = BGS_TKIND_ANON,
					   .label = heap_label };
	maps[1] = (struct bgs_target_map){ .start = TEXT,
					   .end = TEXT + 4 * PAGE,
					   .prot = 5,
					   .kind = BGS_TKIND_FILE,
					   .action = BGS_TACT_SKIP,
					   .label = text_label };
	m->v = maps;
	m->n = 2;
}

struct blob {
	const uint8_t *p;
	size_t len;
};

static int fill(struct rs_writer *w, void *arg)
{
	const struct blob *b = arg;
	int ret = 0;

	for (uint32_t p = 0; p < NPAGES && !ret; p++)
		ret = p % 2 ? bgs_rs_put_zero(w, 0, p, 1)
			    : bgs_rs_put_pages(w, 0, p, 1, anon + p * PAGE);
	if (!ret && b->p)
		ret = bgs_rs_put_attachment(w, "bgsnap.core", b->p, b->len);
	return ret;
}

/* A snapshot carrying @att (none when NULL), opened. */
static struct bgsnap_file *open_with(const uint8_t *att, size_t len)
{
	const struct rs_writer_opts o = { .regions = regions,
					  .nregions = 2,
					  .sync_io = true };
	struct blob b = { att, len };
	struct bgsnap_file *f;
	char path[64], err[BGSNAP_FILE_ERROR_MAX];
	size_t n;
	uint8_t *store = rt_make_store(&o, fill, &b, &n);
	const int fd = rt_memfd(store, n);

	free(store);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	assert_int_equal(bgsnap_file_open(&f, path, err, sizeof(err)), 0);
	close(fd);
	return f;
}

/* The core of a snapshot with @att: the result, and its bytes. */
static int write_core(const uint8_t *att, size_t len, uint8_t **core,
		      size_t *core_len)
{
	struct bgsnap_file *f = open_with(att, len);
	const int fd = memfd_create("core", MFD_CLOEXEC);
	int r;

	assert_true(fd >= 0);
	r = bgsnap_file_write_core(f, fd, NULL, NULL);
	if (core)
		*core = rt_slurp(fd, core_len);
	close(fd);
	bgsnap_file_close(f);
	return r;
}

static uint8_t *encoded(size_t *len)
{
	struct bgs_target_core c;
	struct bgs_target_maps m;
	uint8_t *a;

	for (size_t i = 0; i < sizeof(anon); i++)
		anon[i] = (uint8_t)(i / PAGE % 2 ? 0 : 1 + i % 251);
	make_core(&c, &m);
	assert_int_equal(bgs_core_encode(&c, &m, 100, &a, len), 0);
	return a;
}

/* ---- a good core --------------------------------------------------------- */

static const Elf64_Phdr *phdr(const uint8_t *core, int i)
{
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)core;

	return (const Elf64_Phdr *)(core + eh->e_phoff) + i;
}

/* The types of the notes, in order, into @types; their count. */
static size_t note_types(const uint8_t *core, uint32_t *types, size_t max)
{
	const Elf64_Phdr *ph = phdr(core, 0);
	size_t off = ph->p_offset, n = 0;

	assert_int_equal(ph->p_type, PT_NOTE);
	while (off < ph->p_offset + ph->p_filesz && n < max) {
		const Elf64_Nhdr *nh = (const Elf64_Nhdr *)(core + off);

		types[n++] = nh->n_type;
		off += sizeof(*nh) + (nh->n_namesz + 3) / 4 * 4 +
		       (nh->n_descsz + 3) / 4 * 4;
	}
	return n;
}

static void test_layout(void **state)
{
	static const uint32_t want[] = {
		NT_PRSTATUS, NT_PRPSINFO,   NT_AUXV,	 NT_FILE,
		NT_FPREGSET, NT_X86_XSTATE, NT_PRSTATUS, NT_SIGINFO,
		NT_FPREGSET, NT_X86_XSTATE, 0x205 /* NT_X86_XSAVE_LAYOUT */
	};
	uint32_t types[32];
	size_t alen, clen;
	uint8_t *a = encoded(&alen), *core;
	const Elf64_Ehdr *eh;

	(void)state;
	assert_int_equal(write_core(a, alen, &core, &clen), 0);
	eh = (const Elf64_Ehdr *)core;
	assert_memory_equal(eh->e_ident, ELFMAG, SELFMAG);
	assert_int_equal(eh->e_type, ET_CORE);
	assert_int_equal(eh->e_machine, EM_X86_64);
	assert_int_equal(eh->e_phnum, 3);
	assert_int_equal(note_types(core, types, 32), 11);
	assert_memory_equal(types, want, sizeof(want));
	/* The heap: whole, writable; its zero pages are holes, read 0. */
	assert_int_equal(phdr(core, 1)->p_vaddr, ANON);
	assert_int_equal(phdr(core, 1)->p_filesz, NPAGES * PAGE);
	assert_int_equal(phdr(core, 1)->p_flags, PF_R | PF_W);
	assert_int_equal(phdr(core, 1)->p_offset % PAGE, 0);
	assert_memory_equal(core + phdr(core, 1)->p_offset, anon, sizeof(anon));
	/* The text: its ELF header page only, as the default filter does. */
	assert_int_equal(phdr(core, 2)->p_filesz, PAGE);
	assert_int_equal(phdr(core, 2)->p_memsz, 4 * PAGE);
	assert_int_equal(phdr(core, 2)->p_flags, PF_R | PF_X);
	assert_memory_equal(core + phdr(core, 2)->p_offset, elf_page, PAGE);
	assert_int_equal(clen, phdr(core, 2)->p_offset + PAGE);
	free(core);
	free(a);
}

/* The same snapshot gives the same bytes. */
static void test_same_bytes(void **state)
{
	size_t alen, l1, l2;
	uint8_t *a = encoded(&alen), *c1, *c2;

	(void)state;
	assert_int_equal(write_core(a, alen, &c1, &l1), 0);
	assert_int_equal(write_core(a, alen, &c2, &l2), 0);
	assert_int_equal(l1, l2);
	assert_memory_equal(c1, c2, l1);
	free(c1);
	free(c2);
	free(a);
}

/* ---- bad attachments ----------------------------------------------------- */

static void test_missing(void **state)
{
	(void)state;
	assert_int_equal(write_core(NULL, 0, NULL, NULL), -ENOENT);
}

/* Each damage named, refused. */
static void test_refused(void **state)
{
	static const struct {
		size_t off;
		uint8_t byte;
		int want;
	} cases[] = {
		{ 0, 'X', BGSNAP_ECORRUPT },	   /* magic */
		{ 8, 2, BGSNAP_ECORRUPT },	   /* version */
		{ 10, 3, -EOPNOTSUPP },		   /* machine (EM_386) */
		{ 12, 1, BGSNAP_ECORRUPT },	   /* reserved */
		{ 16 + 4, 135, BGSNAP_ECORRUPT },  /* psinfo length */
		{ 16 + 7, 0x7f, BGSNAP_ECORRUPT }, /* an item past the end */
	};
	size_t alen;
	uint8_t *a = encoded(&alen);

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t *b = malloc(alen);

		memcpy(b, a, alen);
		b[cases[i].off] = cases[i].byte;
		assert_int_equal(write_core(b, alen, NULL, NULL),
				 cases[i].want);
		free(b);
	}
	free(a);
}

/* An item of a later version is skipped, but only if it is all there. */
static void test_unknown_item(void **state)
{
	const uint32_t item[2] = { 99, 1000 };
	size_t alen;
	uint8_t *a = encoded(&alen), *b = calloc(1, alen + 8 + 1000);

	(void)state;
	memcpy(b, a, alen);
	memcpy(b + alen, item, sizeof(item));
	assert_int_equal(write_core(b, alen + 8 + 1000, NULL, NULL), 0);
	assert_int_equal(write_core(b, alen + 8 + 10, NULL, NULL),
			 BGSNAP_ECORRUPT);
	free(b);
	free(a);
}

/* Cut anywhere: read within bounds; a good core only when the cut falls
 * between items after everything required. */
static void test_truncated(void **state)
{
	size_t alen;
	uint8_t *a = encoded(&alen);

	(void)state;
	for (size_t n = 0; n < alen; n += 7) {
		uint8_t *b = malloc(n ? n : 1);
		int r;

		memcpy(b, a, n);
		r = write_core(b, n, NULL, NULL);
		assert_true(r == 0 || r == BGSNAP_ECORRUPT);
		free(b);
	}
	free(a);
}

/* Random bytes changed: refused or read within bounds, never more. */
static void test_flipped(void **state)
{
	uint64_t seed = tu_seed();
	size_t alen;
	uint8_t *a = encoded(&alen);

	(void)state;
	for (int i = 0; i < 300; i++) {
		uint8_t *b = malloc(alen);
		int r;

		memcpy(b, a, alen);
		for (int k = 0; k < 3; k++)
			b[rt_rand(&seed) % alen] = (uint8_t)rt_rand(&seed);
		r = write_core(b, alen, NULL, NULL);
		assert_true(r == 0 || r == BGSNAP_ECORRUPT ||
			    r == -EOPNOTSUPP || r == -E2BIG);
		free(b);
	}
	free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layout),
		cmocka_unit_test(test_same_bytes),
		cmocka_unit_test(test_missing),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_unknown_item),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_flipped),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
