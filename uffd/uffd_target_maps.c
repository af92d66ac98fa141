/* SPDX-License-Identifier: MIT */
/*
 * A target's mappings from /proc/PID/smaps, classified for a snapshot.
 *
 * Rules, first match wins (kernel-uffd.md §0.1, §10: only anonymous, shmem
 * and hugetlbfs VMAs can be registered for synchronous write-protect):
 *   [vdso] [vvar] [vvar_vclock] [vsyscall] [uprobes]  SPECIAL  skip
 *   io / pf / mm VmFlags (device memory)             IO       skip
 *   dp (droppable: the kernel may discard it)        -        skip
 *   ss (shadow stack)                                -        skip
 *   ht (hugetlbfs, private or shared)                HUGETLB  protect
 *   shared memory: /memfd:, /dev/shm/, /SYSV, shared /dev/zero (shared
 *     anonymous), or any MAP_SHARED file on tmpfs (statfs of map_files)
 *                                                    SHMEM    protect
 *   anonymous (no file, [heap], [stack], [anon:..], private /dev/zero)
 *                                                    ANON     protect
 *     ... but PROT_NONE with no page at all: a guard or an address-space
 *     reservation, nothing to save                  ANON     skip
 *   MAP_SHARED regular file: the file holds the data FILE     skip
 *   private file mapping that is writable or has anonymous (COWed) pages:
 *     .data, .bss tail, relro after mprotect(PROT_READ) — cannot be
 *     write-protected, so copied while the target is stopped
 *                                                    FILE_PRIVATE copy
 *   any other file mapping (text, rodata): the file holds it
 *                                                    FILE     skip
 * Then MADV_DONTDUMP (dd) turns protect/copy into skip, as a core dump
 * would; naming the mapping in an include filter brings it back.
 * THP eligibility is the kernel's own THPeligible line.
 */
#include "uffd_target.h"

#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/vfs.h>

#ifndef TMPFS_MAGIC
#define TMPFS_MAGIC 0x01021994
#endif

static const char why_special[] = "kernel special mapping";
static const char why_io[] = "device memory (VM_IO/VM_PFNMAP/VM_MIXEDMAP)";
static const char why_droppable[] = "droppable: the kernel may discard it";
static const char why_shstk[] = "shadow stack";
static const char why_hugetlb[] = "hugetlbfs";
static const char why_shmem[] = "shared memory (memfd/shmem/tmpfs/SysV)";
static const char why_anon[] = "private anonymous";
static const char why_guard[] = "PROT_NONE and empty: a guard or reservation";
static const char why_shared_file[] = "shared file mapping: the file holds it";
static const char why_file_private[] = "private file mapping with pages of "
				       "its own: copied while stopped";
static const char why_file[] = "read-only file mapping: the file holds it";
static const char why_dontdump[] = "MADV_DONTDUMP";
static const char why_dontdump_named[] = "MADV_DONTDUMP, but named by an "
					 "include";

const char *bgs_target_kind_name(enum bgs_target_kind k)
{
	static const char *const names[] = {
		[BGS_TKIND_ANON] = "anon",
		[BGS_TKIND_SHMEM] = "shmem",
		[BGS_TKIND_HUGETLB] = "hugetlb",
		[BGS_TKIND_FILE_PRIVATE] = "file-private",
		[BGS_TKIND_FILE] = "file",
		[BGS_TKIND_SPECIAL] = "special",
		[BGS_TKIND_IO] = "io",
	};

	return (unsigned)k < sizeof(names) / sizeof(names[0]) ? names[k] : "?";
}

const char *bgs_target_action_name(enum bgs_target_action a)
{
	switch (a) {
	case BGS_TACT_PROTECT:
		return "protect";
	case BGS_TACT_COPY:
		return "copy";
	default:
		return "skip";
	}
}

/* ---- parsing ------------------------------------------------------------- */

static uint32_t vmflag_bit(const char *f)
{
	static const struct {
		char name[3];
		uint32_t bit;
	} table[] = {
		{ "sh", BGS_VMF_SH }, { "ms", BGS_VMF_MS },
		{ "io", BGS_VMF_IO }, { "pf", BGS_VMF_PF },
		{ "mm", BGS_VMF_MM }, { "ht", BGS_VMF_HT },
		{ "dd", BGS_VMF_DD }, { "dp", BGS_VMF_DP },
		{ "mg", BGS_VMF_MG }, { "uw", BGS_VMF_UW },
		{ "um", BGS_VMF_UM }, { "ui", BGS_VMF_UI },
		{ "hg", BGS_VMF_HG }, { "nh", BGS_VMF_NH },
		{ "lo", BGS_VMF_LO }, { "gd", BGS_VMF_GD },
		{ "ss", BGS_VMF_SS },
	};
	size_t i;

	for (i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		if (!strcmp(f, table[i].name))
			return table[i].bit;
	return 0;
}

static uint32_t parse_vmflags(const char *s)
{
	uint32_t bits = 0;
	char f[8];
	int n;

	while (sscanf(s, " %7s%n", f, &n) == 1) {
		bits |= vmflag_bit(f);
		s += n;
	}
	return bits;
}

/* The "Key:   123 kB" lines kept, and where. */
static const struct {
	const char *key;
	size_t off;
} kb_fields[] = {
	{ "KernelPageSize", offsetof(struct bgs_target_map, page_size) },
	{ "Rss", offsetof(struct bgs_target_map, rss) },
	{ "Swap", offsetof(struct bgs_target_map, swap) },
	{ "Anonymous", offsetof(struct bgs_target_map, anon) },
	{ "AnonHugePages", offsetof(struct bgs_target_map, anon_huge) },
	{ "Shared_Clean", offsetof(struct bgs_target_map, shared_clean) },
	{ "Shared_Dirty", offsetof(struct bgs_target_map, shared_dirty) },
};

static bool key_is(const char *line, size_t klen, const char *key)
{
	return klen == strlen(key) && !strncmp(line, key, klen);
}

static void parse_field(struct bgs_target_map *m, const char *line)
{
	const char *colon = strchr(line, ':');
	unsigned long long v;
	size_t klen, i;

	if (!colon)
		return;
	klen = (size_t)(colon - line);
	if (key_is(line, klen, "VmFlags")) {
		m->vmflags = parse_vmflags(colon + 1);
		return;
	}
	if (sscanf(colon + 1, " %llu", &v) != 1)
		return;
	if (key_is(line, klen, "THPeligible"))
		m->thp_eligible = v != 0;
	for (i = 0; i < sizeof(kb_fields) / sizeof(kb_fields[0]); i++)
		if (key_is(line, klen, kb_fields[i].key))
			*(uint64_t *)((char *)m + kb_fields[i].off) = v * 1024;
}

static bool is_header(const char *line)
{
	const char *dash = strchr(line, '-'), *space = strchr(line, ' ');

	return isxdigit((unsigned char)line[0]) &&
	       !isupper((unsigned char)line[0]) && dash && space &&
	       dash < space;
}

static int set_label(struct bgs_target_map *m, const char *path)
{
	static const char deleted[] = " (deleted)";
	const size_t dl = sizeof(deleted) - 1;
	size_t len = strlen(path);

	if (len > dl && !strcmp(path + len - dl, deleted)) {
		m->deleted = true;
		len -= dl;
	}
	if (!len) {
		path = "anon";
		len = 4;
	}
	m->label = malloc(len + 1);
	if (!m->label)
		return -ENOMEM;
	memcpy(m->label, path, len);
	m->label[len] = '\0';
	return 0;
}

/* "start-end perms offset maj:min inode   path" */
static int parse_header(struct bgs_target_map *m, const char *line)
{
	unsigned long long start, end, off, ino;
	char perms[8];
	int n = 0;

	memset(m, 0, sizeof(*m));
	if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu%n", &start, &end, perms,
		   &off, &m->dev_major, &m->dev_minor, &ino, &n) < 7)
		return -EINVAL;
	m->start = start;
	m->end = end;
	m->offset = off;
	m->inode = ino;
	m->prot = (perms[0] == 'r' ? PROT_READ : 0) |
		  (perms[1] == 'w' ? PROT_WRITE : 0) |
		  (perms[2] == 'x' ? PROT_EXEC : 0);
	m->shared = perms[3] == 's';
	line += n;
	while (*line == ' ' || *line == '\t')
		line++;
	return set_label(m, line);
}

static int grow(struct bgs_target_maps *m, size_t *cap)
{
	struct bgs_target_map *v;

	if (m->n < *cap)
		return 0;
	*cap = *cap ? *cap * 2 : 64;
	v = realloc(m->v, *cap * sizeof(*v));
	if (!v)
		return -ENOMEM;
	m->v = v;
	return 0;
}

/* ---- classification ------------------------------------------------------ */

static bool label_is(const struct bgs_target_map *m, const char *prefix)
{
	return !strncmp(m->label, prefix, strlen(prefix));
}

static bool is_special(const struct bgs_target_map *m)
{
	return !strcmp(m->label, "[vdso]") || !strcmp(m->label, "[vvar]") ||
	       !strcmp(m->label, "[vvar_vclock]") ||
	       !strcmp(m->label, "[vsyscall]") ||
	       !strcmp(m->label, "[uprobes]");
}

static bool is_anonymous(const struct bgs_target_map *m)
{
	return !strcmp(m->label, "anon") || !strcmp(m->label, "[heap]") ||
	       label_is(m, "[stack") || label_is(m, "[anon:") ||
	       (!m->shared && !strcmp(m->label, "/dev/zero"));
}

static bool is_shared_anon(const struct bgs_target_map *m)
{
	return m->shared &&
	       (!strcmp(m->label, "/dev/zero") || label_is(m, "[anon_shmem:"));
}

/* Shared memory by name, else a MAP_SHARED file whose filesystem is tmpfs
 * (map_files needs CAP_SYS_ADMIN; without it the names must do). */
static bool is_shmem(const struct bgs_target_map *m, pid_t pid)
{
	char path[96];
	struct statfs sf;

	if (!m->shared)
		return false;
	if (label_is(m, "/memfd:") || label_is(m, "/dev/shm/") ||
	    label_is(m, "/SYSV") || is_shared_anon(m))
		return true;
	if (!pid || m->label[0] != '/')
		return false;
	snprintf(path, sizeof(path), "/proc/%d/map_files/%" PRIx64 "-%" PRIx64,
		 (int)pid, m->start, m->end);
	return statfs(path, &sf) == 0 && sf.f_type == TMPFS_MAGIC;
}

static void set_kind(struct bgs_target_map *m, enum bgs_target_kind k,
		     enum bgs_target_action a, const char *why)
{
	m->kind = k;
	m->action = a;
	m->why = why;
}

static void classify_anon(struct bgs_target_map *m)
{
	if (m->prot == 0 && m->rss == 0 && m->swap == 0) {
		set_kind(m, BGS_TKIND_ANON, BGS_TACT_SKIP, why_guard);
		return;
	}
	set_kind(m, BGS_TKIND_ANON, BGS_TACT_PROTECT, why_anon);
	if (m->prot == 0)
		m->hazards |= BGS_THZ_NOACCESS;
}

static void classify_file(struct bgs_target_map *m)
{
	if (m->shared)
		set_kind(m, BGS_TKIND_FILE, BGS_TACT_SKIP, why_shared_file);
	else if ((m->prot & PROT_WRITE) || m->anon)
		set_kind(m, BGS_TKIND_FILE_PRIVATE, BGS_TACT_COPY,
			 why_file_private);
	else
		set_kind(m, BGS_TKIND_FILE, BGS_TACT_SKIP, why_file);
}

static void classify_memory(struct bgs_target_map *m, pid_t pid)
{
	const uint32_t f = m->vmflags;

	if (is_special(m))
		set_kind(m, BGS_TKIND_SPECIAL, BGS_TACT_SKIP, why_special);
	else if (f & (BGS_VMF_IO | BGS_VMF_PF | BGS_VMF_MM))
		set_kind(m, BGS_TKIND_IO, BGS_TACT_SKIP, why_io);
	else if (f & BGS_VMF_DP)
		set_kind(m, BGS_TKIND_ANON, BGS_TACT_SKIP, why_droppable);
	else if (f & BGS_VMF_SS)
		set_kind(m, BGS_TKIND_ANON, BGS_TACT_SKIP, why_shstk);
	else if (f & BGS_VMF_HT)
		set_kind(m, BGS_TKIND_HUGETLB, BGS_TACT_PROTECT, why_hugetlb);
	else if (is_shmem(m, pid))
		set_kind(m, BGS_TKIND_SHMEM, BGS_TACT_PROTECT, why_shmem);
	else if (is_anonymous(m))
		classify_anon(m);
	else
		classify_file(m);
}

static void classify(struct bgs_target_map *m, pid_t pid)
{
	const uint32_t f = m->vmflags;

	if (f & BGS_VMF_MG)
		m->hazards |= BGS_THZ_KSM;
	if (f & (BGS_VMF_UW | BGS_VMF_UM | BGS_VMF_UI))
		m->hazards |= BGS_THZ_UFFD;
	if (f & BGS_VMF_LO)
		m->hazards |= BGS_THZ_LOCKED;
	if (m->shared && !is_special(m))
		m->hazards |= BGS_THZ_SHARED;
	if (is_shared_anon(m))
		m->hazards |= BGS_THZ_SHARED_ANON;
	if (!m->page_size)
		m->page_size = 4096;
	classify_memory(m, pid);
	if (f & BGS_VMF_DD) {
		m->hazards |= BGS_THZ_DONTDUMP;
		if (m->action != BGS_TACT_SKIP)
			set_kind(m, m->kind, BGS_TACT_SKIP, why_dontdump);
	}
}

static int finish(struct bgs_target_map *m, pid_t pid)
{
	const size_t len = strlen(m->label) + 1 + 16 + 1;

	classify(m, pid);
	m->name = malloc(len);
	if (!m->name)
		return -ENOMEM;
	snprintf(m->name, len, "%s@%" PRIx64, m->label, m->start);
	return 0;
}

/* ---- public -------------------------------------------------------------- */

void bgs_target_maps_free(struct bgs_target_maps *m)
{
	size_t i;

	for (i = 0; i < m->n; i++) {
		free(m->v[i].label);
		free(m->v[i].name);
	}
	free(m->v);
	m->v = NULL;
	m->n = 0;
}

static int parse_line(struct bgs_target_maps *m, size_t *cap, char *line,
		      pid_t pid)
{
	int err;

	if (!is_header(line)) {
		if (m->n)
			parse_field(&m->v[m->n - 1], line);
		return 0;
	}
	if (m->n && (err = finish(&m->v[m->n - 1], pid)))
		return err;
	if ((err = grow(m, cap)))
		return err;
	err = parse_header(&m->v[m->n], line);
	if (!err)
		m->n++;
	return err;
}

int bgs_target_maps_parse(const char *text, size_t len, pid_t pid,
			  struct bgs_target_maps *m)
{
	char *copy = strndup(text, len), *line, *save = NULL;
	size_t cap = 0;
	int err = 0;

	m->v = NULL;
	m->n = 0;
	if (!copy)
		return -ENOMEM;
	for (line = strtok_r(copy, "\n", &save); line && !err;
	     line = strtok_r(NULL, "\n", &save))
		err = parse_line(m, &cap, line, pid);
	if (!err && m->n)
		err = finish(&m->v[m->n - 1], pid);
	free(copy);
	if (err)
		bgs_target_maps_free(m);
	return err;
}

static int refused(struct bgs_target *t)
{
	struct bgs_target_facts f;

	bgs_target_gather_facts(t->pid, &f);
	bgs_target_explain_eperm(&f, t->msg, sizeof(t->msg));
	return -EPERM;
}

int bgs_target_maps_read(struct bgs_target *t, struct bgs_target_maps *m)
{
	char path[64], *text;
	size_t len;
	int err;

	snprintf(path, sizeof(path), "/proc/%d/smaps", (int)t->pid);
	err = bgs_target_slurp(path, &text, &len);
	if (err == -ENOENT || err == -ESRCH)
		return bgs_target_fail(t, -ESRCH, "process %d is gone",
				       (int)t->pid);
	/* smaps needs ptrace read access: say why it is refused. */
	if (err == -EACCES || err == -EPERM)
		return refused(t);
	if (err)
		return bgs_target_fail(t, err, "%s: %s", path, strerror(-err));
	err = bgs_target_maps_parse(text, len, t->pid, m);
	free(text);
	if (err)
		return bgs_target_fail(t, err, "%s: cannot parse: %s", path,
				       strerror(-err));
	return 0;
}

/* The same range, permissions and backing (offset, device, inode): a
 * mapping replaced at the same address by another shows here too. */
static bool same_line(const struct bgs_target_map *m, const char *line)
{
	unsigned long long start, end, offset, inode;
	unsigned major, minor;
	char perms[8];
	int prot;

	if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu", &start, &end, perms,
		   &offset, &major, &minor, &inode) != 7)
		return false;
	prot = (perms[0] == 'r' ? PROT_READ : 0) |
	       (perms[1] == 'w' ? PROT_WRITE : 0) |
	       (perms[2] == 'x' ? PROT_EXEC : 0);
	return start == m->start && end == m->end && prot == m->prot &&
	       (perms[3] == 's') == m->shared && offset == m->offset &&
	       major == m->dev_major && minor == m->dev_minor &&
	       inode == m->inode;
}

int bgs_target_maps_changed(struct bgs_target *t,
			    const struct bgs_target_maps *m)
{
	char path[64], *text, *line, *save = NULL;
	size_t i = 0;
	int changed = 0, err;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)t->pid);
	err = bgs_target_slurp(path, &text, NULL);
	if (err)
		return bgs_target_fail(t, err == -ENOENT ? -ESRCH : err,
				       "%s: %s", path, strerror(-err));
	for (line = strtok_r(text, "\n", &save); line && !changed;
	     line = strtok_r(NULL, "\n", &save), i++)
		changed = i >= m->n || !same_line(&m->v[i], line);
	free(text);
	return changed || i != m->n;
}

const struct bgs_target_map *
bgs_target_maps_find(const struct bgs_target_maps *m, uint64_t addr)
{
	size_t lo = 0, hi = m->n;

	/* smaps lists mappings in address order. */
	while (lo < hi) {
		const size_t mid = lo + (hi - lo) / 2;

		if (addr < m->v[mid].start)
			hi = mid;
		else if (addr >= m->v[mid].end)
			lo = mid + 1;
		else
			return &m->v[mid];
	}
	return NULL;
}

/* ---- filtering ----------------------------------------------------------- */

static bool hex_number(const char *s, const char *end, uint64_t *v)
{
	char *stop;

	if (end - s > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
		s += 2;
	if (s == end || !isxdigit((unsigned char)*s))
		return false;
	*v = strtoull(s, &stop, 16);
	return stop == end;
}

/* 1: "A-B" (hex), 0: not a range (a glob), -EINVAL: A-B with B <= A. */
static int parse_range(const char *spec, uint64_t *a, uint64_t *b)
{
	const char *dash = strchr(spec, '-');

	if (!dash || !hex_number(spec, dash, a) ||
	    !hex_number(dash + 1, dash + strlen(dash), b))
		return 0;
	return *b > *a ? 1 : -EINVAL;
}

static int spec_match(const char *spec, const struct bgs_target_map *m)
{
	uint64_t a, b;
	const int r = parse_range(spec, &a, &b);

	if (r < 0)
		return r;
	if (r)
		return m->start < b && a < m->end;
	return !fnmatch(spec, m->name, 0) || !fnmatch(spec, m->label, 0);
}

/* 1 if a spec matches, 0 if none, -EINVAL on a bad one. */
static int any_match(const char *const *specs, size_t n,
		     const struct bgs_target_map *m)
{
	size_t i;

	for (i = 0; i < n; i++) {
		const int r = spec_match(specs[i], m);

		if (r)
			return r;
	}
	return 0;
}

static enum bgs_target_action natural_action(enum bgs_target_kind k)
{
	return k == BGS_TKIND_FILE_PRIVATE ? BGS_TACT_COPY : BGS_TACT_PROTECT;
}

int bgs_target_maps_filter(struct bgs_target_maps *m,
			   const char *const *include, size_t ninclude,
			   const char *const *exclude, size_t nexclude)
{
	size_t i;

	for (i = 0; i < m->n; i++) {
		struct bgs_target_map *map = &m->v[i];
		const int inc =
			ninclude ? any_match(include, ninclude, map) : 1;
		const int exc = any_match(exclude, nexclude, map);

		if (inc < 0 || exc < 0)
			return -EINVAL;
		map->excluded = !inc || exc;
		if (map->why != why_dontdump && map->why != why_dontdump_named)
			continue;
		if (!map->excluded && ninclude)
			set_kind(map, map->kind, natural_action(map->kind),
				 why_dontdump_named);
		else
			set_kind(map, map->kind, BGS_TACT_SKIP, why_dontdump);
	}
	return 0;
}
