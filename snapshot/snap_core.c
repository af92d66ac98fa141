/* SPDX-License-Identifier: MIT */
/*
 * Core files: the attachment "bgsnap.core" (encoded at a save of another
 * process, decoded with every bound checked: a snapshot may be hostile)
 * and the ELF core file written from it and the snapshot's memory.
 *
 * The attachment (FORMAT.md §6.1): a 16-byte header, then items, each a
 * u32 type, a u32 length and that many bytes; unknown types are skipped.
 *
 * The core is laid out as the kernel's dumper (fs/binfmt_elf.c) lays it
 * out: the ELF header, a PT_NOTE then one PT_LOAD per mapping, the notes
 * (per thread NT_PRSTATUS, for the first thread NT_PRPSINFO, NT_SIGINFO,
 * NT_AUXV and NT_FILE after it, then its NT_FPREGSET and NT_X86_XSTATE;
 * a stopped thread's signal as NT_SIGINFO after its NT_PRSTATUS), the
 * CPU's NT_X86_XSAVE_LAYOUT after every thread's notes, then
 * page-aligned memory, holes for zero pages. Which memory a mapping gets
 * follows the kernel's vma_dump_size() and the coredump_filter bits.
 */
#include "snap_internal.h"

#include <elf.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/procfs.h>
#include <unistd.h>

#define CORE_NAME     "bgsnap.core"
#define CORE_MAGIC    "BGSCORE\0"
#define CORE_VERSION  1
#define HDR_LEN	      16
#define ITEM_HDR      8
#define MAP_FIXED_LEN 28
#define MAX_PATH_LEN  4096
#define MAX_NOTE      (1u << 20)
#define PAGE	      4096u
#define CHUNK	      (1u << 20)

_Static_assert(sizeof(struct elf_prstatus) == 336, "x86_64 elf_prstatus");
_Static_assert(sizeof(struct elf_prpsinfo) == 136, "x86_64 elf_prpsinfo");
_Static_assert(sizeof(elf_gregset_t) == 27 * 8, "x86_64 general registers");

enum item {
	IT_PSINFO = 1,	      /* NT_PRPSINFO's descriptor (136 bytes) */
	IT_AUXV = 2,	      /* NT_AUXV's descriptor */
	IT_FILTER = 3,	      /* u32 coredump_filter */
	IT_PRSTATUS = 4,      /* NT_PRSTATUS (336 bytes): starts a thread */
	IT_FPREGS = 5,	      /* NT_FPREGSET (512 bytes) of that thread */
	IT_XSTATE = 6,	      /* NT_X86_XSTATE of that thread */
	IT_SIGINFO = 7,	      /* NT_SIGINFO (128 bytes) of that thread */
	IT_MAP = 8,	      /* one mapping (below) */
	IT_MEM = 9,	      /* u64 address, then bytes the snapshot lacks */
	IT_XSAVE_LAYOUT = 10, /* NT_X86_XSAVE_LAYOUT's descriptor */
};

#ifndef NT_X86_XSAVE_LAYOUT
#define NT_X86_XSAVE_LAYOUT 0x205
#endif

/* IT_MAP flags. */
#define MF_READ	    (1u << 0)
#define MF_WRITE    (1u << 1)
#define MF_EXEC	    (1u << 2)
#define MF_SHARED   (1u << 3)
#define MF_FILE	    (1u << 4)  /* file-backed: listed in NT_FILE */
#define MF_UNLINKED (1u << 5)  /* its file has no name left (memfd, shmem) */
#define MF_ANON	    (1u << 6)  /* private and has anonymous pages */
#define MF_DONTDUMP (1u << 7)  /* MADV_DONTDUMP */
#define MF_HUGETLB  (1u << 8)  /* hugetlbfs */
#define MF_IO	    (1u << 9)  /* VM_IO / VM_PFNMAP device memory */
#define MF_ALWAYS   (1u << 10) /* vDSO, vvar, vsyscall: always dumped */
#define MF_KNOWN    ((1u << 11) - 1)

/* coredump_filter bits (core(5)). */
#define DUMP_ANON_PRIVATE    (1u << 0)
#define DUMP_ANON_SHARED     (1u << 1)
#define DUMP_MAPPED_PRIVATE  (1u << 2)
#define DUMP_MAPPED_SHARED   (1u << 3)
#define DUMP_ELF_HEADERS     (1u << 4)
#define DUMP_HUGETLB_PRIVATE (1u << 5)
#define DUMP_HUGETLB_SHARED  (1u << 6)

/* ---- encoding ------------------------------------------------------------ */

struct buf {
	uint8_t *p;
	size_t len, cap;
	int err;
};

static void put(struct buf *b, const void *data, size_t len)
{
	if (b->err)
		return;
	if (b->len + len > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		uint8_t *p;

		while (cap < b->len + len)
			cap *= 2;
		p = realloc(b->p, cap);
		if (!p) {
			b->err = -ENOMEM;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, len);
	b->len += len;
}

static void put_u32(struct buf *b, uint32_t v)
{
	put(b, &v, sizeof(v));
}

static void put_u64(struct buf *b, uint64_t v)
{
	put(b, &v, sizeof(v));
}

static void put_item(struct buf *b, uint32_t type, const void *data, size_t len)
{
	put_u32(b, type);
	put_u32(b, (uint32_t)len);
	put(b, data, len);
}

static void put_psinfo(struct buf *b, const struct bgs_target_core *c,
		       pid_t pid)
{
	const struct bgs_target_psinfo *s = &c->psinfo;
	struct elf_prpsinfo ps = {
		.pr_state = (char)s->state,
		.pr_sname = s->sname,
		.pr_zomb = (char)s->zomb,
		.pr_nice = s->nice,
		.pr_flag = s->flag,
		.pr_uid = s->uid,
		.pr_gid = s->gid,
		.pr_pid = pid,
		.pr_ppid = c->ppid,
		.pr_pgrp = c->pgrp,
		.pr_sid = c->sid,
	};

	memcpy(ps.pr_fname, s->fname, sizeof(ps.pr_fname));
	memcpy(ps.pr_psargs, s->psargs, sizeof(ps.pr_psargs));
	put_item(b, IT_PSINFO, &ps, sizeof(ps));
}

static void put_thread(struct buf *b, const struct bgs_target_core *c,
		       const struct bgs_target_core_thread *t)
{
	struct elf_prstatus st = {
		.pr_info.si_signo = t->cursig,
		.pr_cursig = (short)t->cursig,
		.pr_sighold = t->sighold,
		.pr_pid = t->tid,
		.pr_ppid = c->ppid,
		.pr_pgrp = c->pgrp,
		.pr_sid = c->sid,
		.pr_fpvalid = t->has_fp,
	};

	memcpy(&st.pr_reg, t->regs, sizeof(st.pr_reg));
	put_item(b, IT_PRSTATUS, &st, sizeof(st));
	if (t->has_siginfo)
		put_item(b, IT_SIGINFO, t->siginfo, sizeof(t->siginfo));
	if (t->has_fp)
		put_item(b, IT_FPREGS, t->fpregs, sizeof(t->fpregs));
	if (t->xstate)
		put_item(b, IT_XSTATE, t->xstate, t->xstate_len);
}

static uint32_t map_flags(const struct bgs_target_map *m)
{
	const bool file = m->label[0] == '/';
	uint32_t f = (m->prot & PROT_READ ? MF_READ : 0) |
		     (m->prot & PROT_WRITE ? MF_WRITE : 0) |
		     (m->prot & PROT_EXEC ? MF_EXEC : 0) |
		     (m->shared ? MF_SHARED : 0) | (file ? MF_FILE : 0) |
		     (m->deleted ? MF_UNLINKED : 0);

	/* The kernel asks whether the mapping has an anon_vma; a mapping
	 * bgsnap saves as private memory, or one with anonymous pages, has. */
	if (!m->shared &&
	    ((m->kind == BGS_TKIND_ANON && m->action != BGS_TACT_SKIP) ||
	     m->kind == BGS_TKIND_FILE_PRIVATE || m->anon))
		f |= MF_ANON;
	if (m->vmflags & BGS_VMF_DD)
		f |= MF_DONTDUMP;
	if (m->vmflags & BGS_VMF_HT)
		f |= MF_HUGETLB;
	if (m->vmflags & (BGS_VMF_IO | BGS_VMF_PF))
		f |= MF_IO;
	if (m->kind == BGS_TKIND_SPECIAL)
		f |= MF_ALWAYS;
	return f;
}

/* The path as the kernel prints it in NT_FILE: " (deleted)" kept. */
static void put_map(struct buf *b, const struct bgs_target_map *m)
{
	static const char deleted[] = " (deleted)";
	const bool file = m->label[0] == '/';
	const size_t plen = file ? strlen(m->label) : 0;
	const size_t dlen = file && m->deleted ? sizeof(deleted) - 1 : 0;

	put_u32(b, IT_MAP);
	put_u32(b, (uint32_t)(MAP_FIXED_LEN + plen + dlen));
	put_u64(b, m->start);
	put_u64(b, m->end);
	put_u64(b, file ? m->offset : 0);
	put_u32(b, map_flags(m));
	put(b, m->label, plen);
	put(b, deleted, dlen);
}

int bgs_core_encode(const struct bgs_target_core *c,
		    const struct bgs_target_maps *m, pid_t pid, uint8_t **out,
		    size_t *len)
{
	struct buf b = { 0 };
	const uint16_t version = CORE_VERSION, machine = EM_X86_64;

	put(&b, CORE_MAGIC, 8);
	put(&b, &version, 2);
	put(&b, &machine, 2);
	put_u32(&b, 0); /* reserved */
	put_psinfo(&b, c, pid);
	put_item(&b, IT_AUXV, c->auxv, c->auxv_len);
	put_item(&b, IT_FILTER, &c->filter, sizeof(c->filter));
	for (size_t i = 0; i < c->nthreads; i++)
		put_thread(&b, c, &c->threads[i]);
	for (size_t i = 0; i < m->n; i++)
		if (m->v[i].end - m->v[i].start < (1ull << 57))
			put_map(&b, &m->v[i]);
	if (c->xsave_layout_len)
		put_item(&b, IT_XSAVE_LAYOUT, c->xsave_layout,
			 c->xsave_layout_len);
	for (size_t i = 0; i < c->nmem; i++) {
		put_u32(&b, IT_MEM);
		put_u32(&b, 8 + c->mem[i].len);
		put_u64(&b, c->mem[i].addr);
		put(&b, c->mem[i].data, c->mem[i].len);
	}
	if (b.err) {
		free(b.p);
		return b.err;
	}
	*out = b.p;
	*len = b.len;
	return 0;
}

/* ---- decoding ------------------------------------------------------------ */

struct span {
	const uint8_t *p;
	uint32_t len;
};

struct thread {
	struct span prstatus, fpregs, xstate, siginfo;
};

struct map {
	uint64_t start, end, pgoff;
	uint32_t flags;
	struct span path;
	long region;   /* the saved region at the same range, or -1 */
	uint64_t dump; /* bytes of the segment in the file */
	uint64_t offset;
};

struct plan {
	struct span psinfo, auxv, xsave_layout;
	uint32_t filter;
	struct thread *threads;
	size_t nthreads;
	struct map *maps;
	size_t nmaps;
	struct span *mem; /* address in the first 8 bytes */
	size_t nmem;
};

static void plan_free(struct plan *p)
{
	free(p->threads);
	free(p->maps);
	free(p->mem);
}

static uint64_t get_u64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static uint32_t get_u32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

/* Grow @v (of @n elements of @size) by one zeroed element. */
static void *grow(void *v, size_t n, size_t size)
{
	uint8_t *g = realloc(v, (n + 1) * size);

	if (g)
		memset(g + n * size, 0, size);
	return g;
}

static int take_map(struct plan *p, struct span s)
{
	struct map m = { 0 };
	struct map *g;

	if (s.len < MAP_FIXED_LEN || s.len > MAP_FIXED_LEN + MAX_PATH_LEN)
		return -EINVAL;
	m.start = get_u64(s.p);
	m.end = get_u64(s.p + 8);
	m.pgoff = get_u64(s.p + 16);
	m.flags = get_u32(s.p + 24);
	m.path = (struct span){ s.p + MAP_FIXED_LEN, s.len - MAP_FIXED_LEN };
	m.region = -1;
	if (m.start % PAGE || m.end % PAGE || m.end <= m.start ||
	    m.pgoff % PAGE || (m.flags & ~MF_KNOWN) ||
	    memchr(m.path.p, 0, m.path.len) ||
	    (p->nmaps && m.start < p->maps[p->nmaps - 1].end))
		return -EINVAL;
	g = grow(p->maps, p->nmaps, sizeof(*g));
	if (!g)
		return -ENOMEM;
	p->maps = g;
	g[p->nmaps++] = m;
	return 0;
}

static int take_thread(struct plan *p, struct span s)
{
	struct thread *g;

	if (s.len != sizeof(struct elf_prstatus))
		return -EINVAL;
	g = grow(p->threads, p->nthreads, sizeof(*g));
	if (!g)
		return -ENOMEM;
	p->threads = g;
	g[p->nthreads++].prstatus = s;
	return 0;
}

/* A register set of the thread last started; each at most once. */
static int take_regset(struct plan *p, uint32_t type, struct span s)
{
	struct thread *t = p->nthreads ? &p->threads[p->nthreads - 1] : NULL;
	struct span *dst;
	uint32_t want = 0;

	if (!t)
		return -EINVAL;
	if (type == IT_FPREGS) {
		dst = &t->fpregs;
		want = 512;
	} else if (type == IT_SIGINFO) {
		dst = &t->siginfo;
		want = 128;
	} else {
		dst = &t->xstate;
	}
	if (dst->p || (want && s.len != want) || !s.len || s.len > MAX_NOTE)
		return -EINVAL;
	*dst = s;
	return 0;
}

static int take_mem(struct plan *p, struct span s)
{
	struct span *g;

	if (s.len <= 8 || s.len > MAX_NOTE + 8)
		return -EINVAL;
	g = grow(p->mem, p->nmem, sizeof(*g));
	if (!g)
		return -ENOMEM;
	p->mem = g;
	g[p->nmem++] = s;
	return 0;
}

static int take_item(struct plan *p, uint32_t type, struct span s)
{
	switch (type) {
	case IT_PSINFO:
		if (p->psinfo.p || s.len != sizeof(struct elf_prpsinfo))
			return -EINVAL;
		p->psinfo = s;
		return 0;
	case IT_AUXV:
		if (p->auxv.p || s.len % 16 || s.len > MAX_NOTE)
			return -EINVAL;
		p->auxv = s;
		return 0;
	case IT_FILTER:
		if (s.len != 4)
			return -EINVAL;
		p->filter = get_u32(s.p);
		return 0;
	case IT_PRSTATUS:
		return take_thread(p, s);
	case IT_FPREGS:
	case IT_XSTATE:
	case IT_SIGINFO:
		return take_regset(p, type, s);
	case IT_MAP:
		return take_map(p, s);
	case IT_MEM:
		return take_mem(p, s);
	case IT_XSAVE_LAYOUT:
		if (p->xsave_layout.p || !s.len || s.len % 16 ||
		    s.len > 64 * 16)
			return -EINVAL;
		p->xsave_layout = s;
		return 0;
	default:
		return 0; /* a later version's: skipped */
	}
}

static int decode(const uint8_t *a, size_t len, struct plan *p)
{
	size_t off = HDR_LEN;

	if (len < HDR_LEN || memcmp(a, CORE_MAGIC, 8))
		return -EINVAL;
	if (a[8] != CORE_VERSION || a[9] || get_u32(a + 12))
		return -EINVAL;
	if ((a[10] | a[11] << 8) != EM_X86_64)
		return -EOPNOTSUPP;
	while (off < len) {
		uint32_t type, ilen;
		int r;

		if (len - off < ITEM_HDR)
			return -EINVAL;
		type = get_u32(a + off);
		ilen = get_u32(a + off + 4);
		off += ITEM_HDR;
		if (ilen > len - off)
			return -EINVAL;
		r = take_item(p, type, (struct span){ a + off, ilen });
		if (r)
			return r;
		off += ilen;
	}
	return p->psinfo.p && p->auxv.p && p->nthreads ? 0 : -EINVAL;
}

/* ---- the layout ---------------------------------------------------------- */

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

/* The bytes recorded at @addr (IT_MEM), or NULL. */
static const struct span *mem_at(const struct plan *p, uint64_t addr)
{
	for (size_t i = 0; i < p->nmem; i++)
		if (get_u64(p->mem[i].p) == addr)
			return &p->mem[i];
	return NULL;
}

/* The first page of an ELF file mapped from its start, when recorded. */
static uint64_t elf_header(const struct plan *p, const struct map *m,
			   uint32_t filter)
{
	const struct span *hdr = mem_at(p, m->start);

	return (filter & DUMP_ELF_HEADERS) && !m->pgoff &&
			       (m->flags & MF_READ) && hdr &&
			       hdr->len - 8 == PAGE
		       ? PAGE
		       : 0;
}

/* The kernel's vma_dump_size(), from what the save recorded; a mapping the
 * snapshot has no bytes for is written empty (and counted). */
static uint64_t dump_size(const struct plan *p, const struct map *m,
			  uint32_t filter, bool *unsaved)
{
	const uint64_t whole = m->end - m->start;
	const uint32_t f = m->flags;
	uint32_t want;

	if (f & MF_ALWAYS)
		return whole;
	if (f & MF_DONTDUMP)
		return 0;
	if (f & MF_HUGETLB)
		want = f & MF_SHARED ? DUMP_HUGETLB_SHARED
				     : DUMP_HUGETLB_PRIVATE;
	else if (f & MF_IO)
		return 0;
	else if (f & MF_SHARED)
		want = f & MF_UNLINKED || !(f & MF_FILE) ? DUMP_ANON_SHARED
							 : DUMP_MAPPED_SHARED;
	else if ((f & MF_ANON) && (filter & DUMP_ANON_PRIVATE))
		want = DUMP_ANON_PRIVATE;
	else if (!(f & MF_FILE))
		return 0;
	else if (filter & DUMP_MAPPED_PRIVATE)
		want = DUMP_MAPPED_PRIVATE;
	else
		return elf_header(p, m, filter);
	if (!(filter & want))
		return 0;
	if (m->region >= 0)
		return whole;
	*unsaved = true;
	return f & MF_FILE ? elf_header(p, m, filter) : 0;
}

/* Each mapping's saved region, by range. */
static void match_regions(struct bgsnap_file *f, struct plan *p)
{
	struct bgsnap_file_info in = { .size = sizeof(in) };

	bgsnap_file_info(f, &in);
	for (size_t i = 0; i < in.regions; i++) {
		struct bgsnap_file_region r = { .size = sizeof(r) };

		if (bgsnap_file_region(f, i, &r) ||
		    r.kind == BGSNAP_KIND_UNSAVED)
			continue;
		for (size_t k = 0; k < p->nmaps; k++)
			if (p->maps[k].start == r.addr &&
			    p->maps[k].end - p->maps[k].start == r.len)
				p->maps[k].region = (long)i;
	}
}

/* ---- the notes ----------------------------------------------------------- */

static void put_note(struct buf *b, const char *name, uint32_t type,
		     const void *desc, uint64_t len)
{
	static const uint8_t zero[4];
	const uint32_t namesz = (uint32_t)strlen(name) + 1;

	put_u32(b, namesz);
	put_u32(b, (uint32_t)len);
	put_u32(b, type);
	put(b, name, namesz);
	put(b, zero, align_up(namesz, 4) - namesz);
	put(b, desc, len);
	put(b, zero, align_up(len, 4) - len);
}

static void put_nt_file(struct buf *b, const struct plan *p)
{
	struct buf d = { 0 };
	uint64_t n = 0;

	for (size_t i = 0; i < p->nmaps; i++)
		n += !!(p->maps[i].flags & MF_FILE);
	put_u64(&d, n);
	put_u64(&d, PAGE);
	for (size_t i = 0; i < p->nmaps; i++) {
		const struct map *m = &p->maps[i];

		if (!(m->flags & MF_FILE))
			continue;
		put_u64(&d, m->start);
		put_u64(&d, m->end);
		put_u64(&d, m->pgoff / PAGE);
	}
	for (size_t i = 0; i < p->nmaps; i++)
		if (p->maps[i].flags & MF_FILE) {
			put(&d, p->maps[i].path.p, p->maps[i].path.len);
			put(&d, "", 1);
		}
	if (d.err)
		b->err = d.err;
	else
		put_note(b, "CORE", NT_FILE, d.p, d.len);
	free(d.p);
}

static void put_span_note(struct buf *b, const char *name, uint32_t type,
			  struct span s)
{
	if (s.p)
		put_note(b, name, type, s.p, s.len);
}

static int build_notes(const struct plan *p, struct buf *b)
{
	for (size_t i = 0; i < p->nthreads; i++) {
		const struct thread *t = &p->threads[i];

		put_span_note(b, "CORE", NT_PRSTATUS, t->prstatus);
		if (!i)
			put_span_note(b, "CORE", NT_PRPSINFO, p->psinfo);
		put_span_note(b, "CORE", NT_SIGINFO, t->siginfo);
		if (!i) {
			put_span_note(b, "CORE", NT_AUXV, p->auxv);
			put_nt_file(b, p);
		}
		put_span_note(b, "CORE", NT_FPREGSET, t->fpregs);
		put_span_note(b, "LINUX", NT_X86_XSTATE, t->xstate);
	}
	/* The kernel's extra notes come after every thread's. */
	put_span_note(b, "LINUX", NT_X86_XSAVE_LAYOUT, p->xsave_layout);
	return b->err;
}

/* ---- writing ------------------------------------------------------------- */

struct job {
	struct bgsnap_file *f;
	int fd;
	const struct bgsnap_core_opts *o;
	uint64_t done, total;
	uint8_t *chunk;
};

static int write_at(struct job *j, const void *p, size_t len, uint64_t off)
{
	const uint8_t *c = p;

	while (len) {
		const ssize_t n = pwrite(j->fd, c, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return bgs_file_fail(j->f, n < 0 ? -errno : -EIO,
					     "writing the core file: %s",
					     strerror(n < 0 ? errno : EIO));
		c += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static bool all_zero(const uint8_t *p, size_t len)
{
	return !p[0] && !memcmp(p, p + 1, len - 1);
}

/* Pages of @buf that are not all zero, written at @off; zero ones stay
 * holes, as the kernel leaves pages it cannot or need not write. */
static int write_pages(struct job *j, const uint8_t *buf, size_t len,
		       uint64_t off)
{
	for (size_t i = 0; i < len; i += PAGE) {
		const size_t n = len - i < PAGE ? len - i : PAGE;
		int r;

		if (all_zero(buf + i, n))
			continue;
		r = write_at(j, buf + i, n, off + i);
		if (r)
			return r;
	}
	return 0;
}

static void progress(struct job *j, uint64_t bytes)
{
	j->done += bytes;
	if (j->o && j->o->progress)
		j->o->progress(j->o->arg, j->done, j->total);
}

static int write_region(struct job *j, const struct map *m)
{
	uint64_t pos = 0;

	while (pos < m->dump) {
		uint64_t run;
		const int how =
			bgsnap_file_map(j->f, (size_t)m->region, pos, &run);
		size_t n;
		int r;

		if (how < 0)
			return how;
		if (run > m->dump - pos)
			run = m->dump - pos;
		n = run < CHUNK ? (size_t)run : CHUNK;
		if (how == BGSNAP_PAGES_ZERO) {
			pos += run;
			progress(j, run);
			continue;
		}
		r = bgsnap_file_read(j->f, (size_t)m->region, pos, j->chunk, n);
		if (!r)
			r = write_pages(j, j->chunk, n, m->offset + pos);
		if (r)
			return r;
		pos += n;
		progress(j, n);
	}
	return 0;
}

/* A mapping the snapshot does not save: the recorded bytes, zero else. */
static int write_recorded(struct job *j, const struct plan *p,
			  const struct map *m)
{
	for (size_t i = 0; i < p->nmem; i++) {
		const uint64_t a = get_u64(p->mem[i].p);
		const uint64_t n = p->mem[i].len - 8;
		int r;

		if (a < m->start || a >= m->start + m->dump ||
		    n > m->start + m->dump - a)
			continue;
		r = write_pages(j, p->mem[i].p + 8, (size_t)n,
				m->offset + (a - m->start));
		if (r)
			return r;
	}
	progress(j, m->dump);
	return 0;
}

static int write_memory(struct job *j, const struct plan *p)
{
	for (size_t i = 0; i < p->nmaps; i++) {
		const struct map *m = &p->maps[i];
		int r;

		if (!m->dump)
			continue;
		r = m->region >= 0 && !(m->flags & MF_ALWAYS) &&
				    m->dump == m->end - m->start
			    ? write_region(j, m)
			    : write_recorded(j, p, m);
		if (r)
			return r;
	}
	return 0;
}

static uint32_t phdr_flags(uint32_t f)
{
	return (f & MF_READ ? PF_R : 0) | (f & MF_WRITE ? PF_W : 0) |
	       (f & MF_EXEC ? PF_X : 0);
}

static void put_headers(struct buf *b, const struct plan *p, uint64_t notes,
			uint64_t notes_len)
{
	const Elf64_Ehdr eh = {
		.e_ident = { ELFMAG0, ELFMAG1, ELFMAG2, ELFMAG3, ELFCLASS64,
			     ELFDATA2LSB, EV_CURRENT, ELFOSABI_NONE },
		.e_type = ET_CORE,
		.e_machine = EM_X86_64,
		.e_version = EV_CURRENT,
		.e_phoff = sizeof(Elf64_Ehdr),
		.e_ehsize = sizeof(Elf64_Ehdr),
		.e_phentsize = sizeof(Elf64_Phdr),
		.e_phnum = (Elf64_Half)(p->nmaps + 1),
	};
	const Elf64_Phdr note = { .p_type = PT_NOTE,
				  .p_offset = notes,
				  .p_filesz = notes_len,
				  .p_align = 4 };

	put(b, &eh, sizeof(eh));
	put(b, &note, sizeof(note));
	for (size_t i = 0; i < p->nmaps; i++) {
		const struct map *m = &p->maps[i];
		const Elf64_Phdr ph = {
			.p_type = PT_LOAD,
			.p_flags = phdr_flags(m->flags),
			.p_offset = m->offset,
			.p_vaddr = m->start,
			.p_filesz = m->dump,
			.p_memsz = m->end - m->start,
			.p_align = PAGE,
		};

		put(b, &ph, sizeof(ph));
	}
}

/* Decide every segment's size and place; returns the file's size. */
static uint64_t lay_out(struct plan *p, uint64_t data, uint32_t filter,
			struct bgsnap_core_info *info)
{
	uint64_t off = data;

	for (size_t i = 0; i < p->nmaps; i++) {
		struct map *m = &p->maps[i];
		bool unsaved = false;

		m->dump = dump_size(p, m, filter, &unsaved);
		m->offset = off;
		off += m->dump;
		info->data_bytes += m->dump;
		info->segments_unsaved += unsaved;
	}
	return off;
}

static int write_core(struct job *j, struct plan *p,
		      struct bgsnap_core_info *info)
{
	struct buf notes = { 0 }, head = { 0 };
	const uint64_t hdr_len =
		sizeof(Elf64_Ehdr) + (p->nmaps + 1) * sizeof(Elf64_Phdr);
	int r = build_notes(p, &notes);

	if (r)
		goto out_free;
	info->file_size = lay_out(p, align_up(hdr_len + notes.len, PAGE),
				  info->filter, info);
	j->total = info->data_bytes;
	put_headers(&head, p, hdr_len, notes.len);
	put(&head, notes.p, notes.len);
	r = head.err;
	if (!r)
		r = write_at(j, head.p, head.len, 0);
	if (!r)
		r = write_memory(j, p);
	if (!r && ftruncate(j->fd, (off_t)info->file_size))
		r = bgs_file_fail(j->f, -errno, "writing the core file: %s",
				  strerror(errno));
out_free:
	free(notes.p);
	free(head.p);
	return r == -ENOMEM ? bgs_file_fail(j->f, r, "out of memory") : r;
}

/* ---- the public call ----------------------------------------------------- */

static int load(struct bgsnap_file *f, uint8_t **a, size_t *len)
{
	const int i = bgsnap_file_find_attachment(f, CORE_NAME);
	const char *name;
	int r;

	if (i < 0)
		return bgs_file_fail(f, -ENOENT,
				     "no '" CORE_NAME "' attachment: the "
				     "snapshot was not saved from another "
				     "process with 'save --pid' (or by an "
				     "older bgsnap)");
	bgsnap_file_attachment(f, (size_t)i, &name, len);
	*a = malloc(*len ? *len : 1);
	if (!*a)
		return bgs_file_fail(f, -ENOMEM, "out of memory");
	r = bgsnap_file_attachment_read(f, (size_t)i, *a, *len);
	if (r)
		free(*a);
	return r;
}

static int check_plan(struct bgsnap_file *f, int r, const struct plan *p)
{
	if (r == -ENOMEM)
		return bgs_file_fail(f, r, "out of memory");
	if (r == -EOPNOTSUPP)
		return bgs_file_fail(f, r,
				     "attachment '" CORE_NAME "': "
				     "not an x86_64 process");
	if (r)
		return bgs_file_fail(f, BGSNAP_ECORRUPT,
				     "attachment '" CORE_NAME "': malformed");
	if (p->nmaps + 1 >= PN_XNUM)
		return bgs_file_fail(f, -E2BIG,
				     "%zu mappings: more than an ELF core "
				     "numbers without extended numbering",
				     p->nmaps);
	return 0;
}

BGSNAP_API int bgsnap_file_write_core(struct bgsnap_file *f, int fd,
				      const struct bgsnap_core_opts *o,
				      struct bgsnap_core_info *info)
{
	struct bgsnap_core_info out = { .size = sizeof(out) };
	struct bgsnap_core_opts opts;
	struct plan p = { 0 };
	struct job j = { .f = f, .fd = fd, .o = &opts };
	uint8_t *a;
	size_t len;
	int r = bgs_struct_in(&opts, sizeof(opts), o);

	if (!o)
		opts.filter = -1; /* the process's own filter */
	if (r || (info && info->size < sizeof(size_t)))
		return r ? r : -EINVAL;
	r = load(f, &a, &len);
	if (r)
		return r;
	r = check_plan(f, decode(a, len, &p), &p);
	if (r)
		goto out_free;
	match_regions(f, &p);
	out.filter = opts.filter >= 0 ? (uint32_t)opts.filter : p.filter;
	out.threads = p.nthreads;
	out.segments = p.nmaps;
	j.chunk = malloc(CHUNK);
	r = j.chunk ? write_core(&j, &p, &out)
		    : bgs_file_fail(f, -ENOMEM, "out of memory");
	free(j.chunk);
out_free:
	plan_free(&p);
	free(a);
	if (info)
		bgs_struct_out(info, &out, sizeof(out));
	return r;
}
