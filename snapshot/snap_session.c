/* SPDX-License-Identifier: MIT */
/*
 * Handles, regions and attachments: what a save or restore works on.
 * A region's kind is read from /proc/self/smaps and then proved by a trial
 * UFFDIO_REGISTER on a throw-away uffd, which is the kernel's own answer to
 * "can this be write-protected" (QEMU probes the same way). Only when it is
 * added: a save registers it at once after its check anyway, and closing
 * the trial's uffd clears the write-protect bits of every page of the
 * range, 106-161 ms for 4 GiB of memory in use here.
 */
#include "snap_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <stdbool.h>

BGSNAP_API int bgsnap_new(struct bgsnap **out)
{
	struct bgsnap *h = calloc(1, sizeof(*h));

	if (!h)
		return -ENOMEM;
	pthread_mutex_init(&h->live_lock, NULL);
	*out = h;
	return 0;
}

static void clear_regions(struct bgsnap *h)
{
	for (size_t i = 0; i < h->nregions; i++)
		free(h->regions[i].name);
	h->nregions = 0;
	h->total_pages = 0;
}

static void free_strings(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

BGSNAP_API void bgsnap_free(struct bgsnap *h)
{
	if (!h)
		return;
	if (h->save || h->restore) {
		bgsnap_cancel(h);
		bgsnap_wait(h);
	}
	bgsnap_track_stop(h);
	clear_regions(h);
	free(h->regions);
	if (h->target) {
		bgs_target_close(h->target);
		free(h->target);
	}
	bgs_target_maps_free(&h->maps);
	free_strings(h->include, h->ninclude);
	free_strings(h->exclude, h->nexclude);
	bgsnap_attach_clear(h);
	pthread_mutex_destroy(&h->live_lock);
	free(h);
}

void bgs_snap_set_error(struct bgsnap *h, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(h->errmsg, sizeof(h->errmsg), fmt, ap);
	va_end(ap);
}

BGSNAP_API const char *bgsnap_last_error(const struct bgsnap *h)
{
	return h->errmsg;
}

/* ---- what the kernel says about a range of our own memory ------------- */

struct range_facts {
	uint64_t covered;   /* bytes of the range found mapped */
	int kinds;	    /* bit per enum bgsnap_kind seen */
	uint32_t huge_size; /* hugetlbfs page size */
	bool unreadable, mergeable, foreign_uffd, file, shared_file;
	uint16_t prot;
	char file_name[256];
};

static bool has_flag(const char *vmflags, const char *flag)
{
	const size_t n = strlen(flag);

	for (const char *p = vmflags; (p = strstr(p, flag)); p += n)
		if ((p == vmflags || p[-1] == ' ') &&
		    (p[n] == ' ' || !p[n] || p[n] == '\n'))
			return true;
	return false;
}

static bool is_shmem_path(const char *path)
{
	return !strncmp(path, "/memfd:", 7) || !strncmp(path, "/dev/shm/", 9) ||
	       !strncmp(path, "/SYSV", 5) || !strncmp(path, "/dev/zero", 9);
}

struct vma {
	uint64_t start, end;
	char perms[5];
	char path[256];
	uint64_t anon_huge_kb, page_kb;
};

static void classify(struct range_facts *f, const struct vma *v,
		     const char *vmflags, uint64_t a, uint64_t b)
{
	const uint64_t lo = v->start > a ? v->start : a;
	const uint64_t hi = v->end < b ? v->end : b;
	const bool shared = v->perms[3] == 's';

	f->covered += hi - lo;
	f->prot = (uint16_t)((v->perms[0] == 'r' ? PROT_READ : 0) |
			     (v->perms[1] == 'w' ? PROT_WRITE : 0) |
			     (v->perms[2] == 'x' ? PROT_EXEC : 0));
	if (v->perms[0] != 'r')
		f->unreadable = true;
	if (has_flag(vmflags, "mg"))
		f->mergeable = true;
	if (has_flag(vmflags, "uw") || has_flag(vmflags, "um") ||
	    has_flag(vmflags, "ui"))
		f->foreign_uffd = true;
	if (has_flag(vmflags, "ht")) {
		f->kinds |= 1 << BGSNAP_KIND_HUGETLB;
		f->huge_size = (uint32_t)(v->page_kb * 1024);
	} else if (v->path[0] == '/' && !is_shmem_path(v->path)) {
		f->file = true;
		snprintf(f->file_name, sizeof(f->file_name), "%s", v->path);
	} else if (shared) {
		f->kinds |= 1 << BGSNAP_KIND_SHMEM;
	} else if (has_flag(vmflags, "hg") || v->anon_huge_kb) {
		f->kinds |= 1 << BGSNAP_KIND_ANON_THP;
	} else {
		f->kinds |= 1 << BGSNAP_KIND_ANON;
	}
}

/* Walk /proc/self/smaps for the mappings that overlap [a, b). */
static int range_facts(uint64_t a, uint64_t b, struct range_facts *f)
{
	FILE *smaps = fopen("/proc/self/smaps", "re");
	char line[512];
	struct vma v = { 0 };
	bool in = false;

	if (!smaps)
		return -errno;
	memset(f, 0, sizeof(*f));
	while (fgets(line, sizeof(line), smaps)) {
		uint64_t s, e;
		int path_at = 0;

		if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %4s %*s %*s %*s %n",
			   &s, &e, v.perms, &path_at) >= 3 &&
		    path_at) {
			v.start = s;
			v.end = e;
			snprintf(v.path, sizeof(v.path), "%s", line + path_at);
			v.path[strcspn(v.path, "\n")] = '\0';
			v.anon_huge_kb = v.page_kb = 0;
			in = s < b && e > a;
		} else if (in) {
			sscanf(line, "AnonHugePages: %" SCNu64,
			       &v.anon_huge_kb);
			sscanf(line, "KernelPageSize: %" SCNu64, &v.page_kb);
			if (!strncmp(line, "VmFlags:", 8))
				classify(f, &v, line + 8, a, b);
		}
	}
	fclose(smaps);
	return 0;
}

static const char *kind_name(enum bgsnap_kind k)
{
	static const char *const names[] = { "auto", "anonymous",
					     "anonymous THP", "shmem",
					     "hugetlbfs" };

	return (unsigned)k < 5 ? names[k] : "unknown";
}

/* Ask the kernel: can [a, b) be registered for write-protect faults? */
static int trial_register(uint64_t a, uint64_t len)
{
	struct bgs_uffd u;
	int r = bgs_uffd_open(&u, BGS_UFFD_FEATURES_WP,
			      UFFD_FEATURE_PAGEFAULT_FLAG_WP);

	if (r < 0)
		return r;
	r = bgs_uffd_register(&u, a, len, UFFDIO_REGISTER_MODE_WP, NULL);
	bgs_uffd_close(&u); /* closing unregisters */
	return r;
}

static int check_range(struct bgsnap *h, const char *name, uint64_t a,
		       uint64_t len, bool trial, enum bgsnap_kind *kind,
		       uint32_t *page_size, uint16_t *prot)
{
	struct range_facts f;
	int r = range_facts(a, a + len, &f), k;

	if (r < 0)
		return r;
	if (f.covered != len) {
		bgs_snap_set_error(h,
				   "region '%s' [0x%" PRIx64 ", +%" PRIu64
				   "): not all of it is mapped",
				   name, a, len);
		return -EFAULT;
	}
	const char *why = f.file ? "a file mapping cannot be write-protected"
			  : f.foreign_uffd
				  ? "another userfaultfd already holds it"
			  : f.unreadable ? "it is not readable (PROT_NONE?)"
			  : (f.kinds & (f.kinds - 1)) ? "it mixes memory kinds"
						      : NULL;
	if (!why && f.mergeable &&
	    access("/sys/kernel/mm/ksm/run", F_OK) == 0) {
		FILE *run = fopen("/sys/kernel/mm/ksm/run", "re");
		if (run && fgetc(run) == '1')
			why = "it is MADV_MERGEABLE and ksmd runs: KSM merging "
			      "drops write protection (MADV_UNMERGEABLE it)";
		if (run)
			fclose(run);
	}
	if (why) {
		bgs_snap_set_error(
			h, "region '%s' [0x%" PRIx64 ", +%" PRIu64 "): %s%s%s",
			name, a, len, why, f.file ? ": " : "",
			f.file ? f.file_name : "");
		return BGSNAP_EUNSAFE;
	}
	for (k = 1; !(f.kinds & (1 << k)); k++)
		;
	*kind = (enum bgsnap_kind)k;
	*page_size = k == BGSNAP_KIND_HUGETLB ? f.huge_size : BGS_PAGE_SIZE;
	*prot = f.prot;
	if (*page_size > BGS_THP_SIZE) {
		bgs_snap_set_error(h,
				   "region '%s': %u MiB huge pages are not "
				   "supported (2 MiB are)",
				   name, *page_size >> 20);
		return -ENOTSUP;
	}
	if ((a | len) & (*page_size - 1)) {
		bgs_snap_set_error(h,
				   "region '%s': address and length must "
				   "be multiples of its %u KiB pages",
				   name, *page_size >> 10);
		return -EINVAL;
	}
	if (!trial)
		return 0;
	r = trial_register(a, len);
	if (r == -EINVAL || r == -EBUSY) {
		bgs_snap_set_error(h,
				   "region '%s' (%s): the kernel refuses to "
				   "write-protect it (%s)",
				   name, kind_name(*kind),
				   r == -EBUSY ? "another userfaultfd holds it"
					       : "unsupported memory");
		return BGSNAP_EUNSAFE;
	}
	if (r < 0)
		bgs_snap_set_error(h, "region '%s': userfaultfd: %s", name,
				   strerror(-r));
	return r;
}

int bgs_snap_check_region(struct bgsnap *h, struct bgs_region *g)
{
	enum bgsnap_kind kind;
	uint32_t page_size;
	uint16_t prot;
	const int r = check_range(h, g->name, g->base, g->len, false, &kind,
				  &page_size, &prot);

	if (r < 0)
		return r;
	if (bgs_region_is_anon(g) &&
	    (kind == BGSNAP_KIND_ANON || kind == BGSNAP_KIND_ANON_THP))
		g->kind = kind;
	if (kind != g->kind || page_size != g->page_size) {
		bgs_snap_set_error(h,
				   "region '%s' changed since it was added: "
				   "now %s memory",
				   g->name, kind_name(kind));
		return BGSNAP_EUNSAFE;
	}
	return 0;
}

static void renumber(struct bgsnap *h)
{
	uint64_t page = 0;

	for (size_t i = 0; i < h->nregions; i++) {
		h->regions[i].first_page = page;
		page += bgs_region_pages(&h->regions[i]);
	}
	h->total_pages = page;
}

static int validate_new_region(struct bgsnap *h, const char *name, uint64_t a,
			       uint64_t len)
{
	if (!name || !*name || strlen(name) > RS_NAME_MAX || !len ||
	    (a | len) & (BGS_PAGE_SIZE - 1) || a + len < a) {
		bgs_snap_set_error(h,
				   "region '%s': needs a name of 1..%d "
				   "bytes and a non-empty page-aligned range",
				   name ? name : "", RS_NAME_MAX);
		return -EINVAL;
	}
	for (size_t i = 0; i < h->nregions; i++) {
		const struct bgs_region *r = &h->regions[i];

		if (!strcmp(r->name, name)) {
			bgs_snap_set_error(h, "region name '%s' is taken",
					   name);
			return -EINVAL;
		}
		if (a < r->base + r->len && r->base < a + len) {
			bgs_snap_set_error(h,
					   "region '%s' overlaps region '%s'",
					   name, r->name);
			return -EEXIST;
		}
	}
	return 0;
}

/* Insert @reg (its name copied) in address order. */
static int insert_region(struct bgsnap *h, struct bgs_region reg,
			 const char *name)
{
	struct bgs_region *grown;
	size_t at;

	reg.name = strdup(name);
	grown = realloc(h->regions, (h->nregions + 1) * sizeof(*grown));
	if (!reg.name || !grown) {
		free(reg.name);
		if (grown)
			h->regions = grown;
		return -ENOMEM;
	}
	h->regions = grown;
	for (at = h->nregions; at > 0 && h->regions[at - 1].base > reg.base;
	     at--)
		h->regions[at] = h->regions[at - 1];
	h->regions[at] = reg;
	h->nregions++;
	renumber(h);
	return 0;
}

static bool busy(struct bgsnap *h)
{
	if (h->save || h->restore)
		bgs_snap_set_error(h, "cannot change the regions while an "
				      "operation runs");
	return h->save || h->restore;
}

BGSNAP_API int bgsnap_add_region(struct bgsnap *h, const char *name, void *addr,
				 size_t len)
{
	const uint64_t a = (uint64_t)(uintptr_t)addr;
	struct bgs_region reg = { .base = a, .len = len, .why = "" };
	int r;

	if (busy(h))
		return -EBUSY;
	if (h->target) {
		bgs_snap_set_error(h,
				   "this handle works on process %d: its "
				   "regions are its mappings",
				   h->target->pid);
		return -EINVAL;
	}
	r = validate_new_region(h, name, a, len);
	if (!r)
		r = check_range(h, name, a, len, true, &reg.kind,
				&reg.page_size, &reg.prot);
	if (!r)
		r = insert_region(h, reg, name);
	if (!r)
		h->errmsg[0] = '\0';
	return r;
}

/* ---- another process ---------------------------------------------------- */

static bool ksm_running(void)
{
	FILE *run = fopen("/sys/kernel/mm/ksm/run", "re");
	const bool on = run && fgetc(run) == '1';

	if (run)
		fclose(run);
	return on;
}

static enum bgsnap_kind target_kind(const struct bgs_target_map *m)
{
	if (m->excluded || m->action == BGS_TACT_SKIP)
		return BGSNAP_KIND_UNSAVED;
	if (m->action == BGS_TACT_COPY)
		return BGSNAP_KIND_FILE_PRIVATE;
	switch (m->kind) {
	case BGS_TKIND_SHMEM:
		return BGSNAP_KIND_SHMEM;
	case BGS_TKIND_HUGETLB:
		return BGSNAP_KIND_HUGETLB;
	default:
		return m->thp_eligible ? BGSNAP_KIND_ANON_THP
				       : BGSNAP_KIND_ANON;
	}
}

const char *bgs_snap_uffd_holder(const struct bgsnap *h)
{
	if (!h->target)
		return "another userfaultfd of this process holds it";
	/* Another bgsnap takes the uffd it makes in the process out of it:
	 * a uffd among the process's descriptors is most likely its own. */
	if (bgs_target_has_uffd(h->target->pid))
		return "a userfaultfd is registered on it: the process's own, "
		       "or another save's of this process";
	return "another save or restore of this process runs (another "
	       "process holds a userfaultfd registered on it)";
}

static int target_map_refused(struct bgsnap *h, const struct bgs_target_map *m)
{
	const char *why = NULL;

	if (m->excluded || m->action != BGS_TACT_PROTECT)
		return 0;
	if (m->hazards & BGS_THZ_UFFD)
		why = bgs_snap_uffd_holder(h);
	else if ((m->hazards & BGS_THZ_KSM) && ksm_running())
		why = "it is MADV_MERGEABLE and ksmd runs: KSM merging drops "
		      "write protection (exclude it or stop ksmd)";
	else if (m->page_size > BGS_THP_SIZE)
		why = "1 GiB huge pages are not supported (2 MiB are)";
	if (!why)
		return 0;
	bgs_snap_set_error(h, "process %d, mapping %s: %s", h->target->pid,
			   m->name, why);
	return BGSNAP_EUNSAFE;
}

int bgs_snap_target_refresh(struct bgsnap *h)
{
	const uint64_t t0 = bgs_now_ns();
	struct bgs_target_maps maps = { 0 };
	int r = bgs_target_maps_read(h->target, &maps);

	if (!r)
		r = bgs_target_maps_filter(
			&maps, (const char *const *)h->include, h->ninclude,
			(const char *const *)h->exclude, h->nexclude);
	if (r) {
		bgs_snap_set_error(h, "%s", h->target->msg);
		bgs_target_maps_free(&maps);
		return r;
	}
	clear_regions(h);
	for (size_t i = 0; i < maps.n && !r; i++) {
		const struct bgs_target_map *m = &maps.v[i];
		const struct bgs_region reg = {
			.base = m->start,
			.len = m->end - m->start,
			.page_size = m->kind == BGS_TKIND_HUGETLB
					     ? (uint32_t)m->page_size
					     : BGS_PAGE_SIZE,
			.kind = target_kind(m),
			.prot = (uint16_t)m->prot,
			.why = m->excluded ? "excluded by a filter" : m->why,
		};

		r = target_map_refused(h, m);
		if (!r)
			r = insert_region(h, reg, m->name);
	}
	bgs_target_maps_free(&h->maps);
	h->maps = maps;
	h->maps_read_ns = r ? 0 : t0;
	return r;
}

int bgs_snap_target_current(struct bgsnap *h)
{
	if (h->maps_read_ns &&
	    bgs_now_ns() - h->maps_read_ns < BGS_MAPS_FRESH_NS &&
	    bgs_target_maps_changed(h->target, &h->maps) == 0)
		return 0;
	return bgs_snap_target_refresh(h);
}

static int copy_strings(char ***dst, size_t *n, const char *const *src,
			size_t count)
{
	*dst = calloc(count ? count : 1, sizeof(**dst));
	if (!*dst)
		return -ENOMEM;
	for (*n = 0; *n < count; (*n)++)
		if (!((*dst)[*n] = strdup(src[*n])))
			return -ENOMEM;
	return 0;
}

BGSNAP_API int bgsnap_target_pid(struct bgsnap *h, int pid,
				 const struct bgsnap_target_opts *opts)
{
	struct bgsnap_target_opts o;
	int r = bgs_struct_in(&o, sizeof(o), opts);

	if (r)
		return r;
	opts = &o;
	if (busy(h))
		return -EBUSY;
	if (h->nregions || h->target) {
		bgs_snap_set_error(h, "bgsnap_target_pid needs a handle "
				      "without regions");
		return -EBUSY;
	}
	h->target = calloc(1, sizeof(*h->target));
	if (!h->target)
		return -ENOMEM;
	r = bgs_target_open(h->target, pid);
	if (r)
		bgs_snap_set_error(h, "%s", h->target->msg);
	if (!r)
		r = copy_strings(&h->include, &h->ninclude, opts->include,
				 opts->ninclude);
	if (!r)
		r = copy_strings(&h->exclude, &h->nexclude, opts->exclude,
				 opts->nexclude);
	if (!r)
		r = bgs_snap_target_refresh(h);
	if (r) {
		bgs_target_close(h->target);
		free(h->target);
		h->target = NULL;
		clear_regions(h);
	}
	return r;
}

BGSNAP_API size_t bgsnap_region_count(const struct bgsnap *h)
{
	return h->nregions;
}

BGSNAP_API int bgsnap_region(const struct bgsnap *h, size_t i,
			     struct bgsnap_region_info *info)
{
	const struct bgs_region *r;
	struct bgsnap_region_info out;

	if (i >= h->nregions)
		return -ERANGE;
	r = &h->regions[i];
	out = (struct bgsnap_region_info){
		.name = r->name,
		.addr = (void *)(uintptr_t)r->base,
		.len = r->len,
		.page_size = r->page_size,
		.kind = r->kind,
		.why = r->why ? r->why : "",
	};
	return bgs_struct_out(info, &out, sizeof(out));
}

int bgs_snap_begin(struct bgsnap *h)
{
	if (h->save || h->restore) {
		bgs_snap_set_error(h, "an operation is already running");
		return -EBUSY;
	}
	if (!h->nregions) {
		bgs_snap_set_error(h, "no region is registered");
		return -ENOENT;
	}
	h->errmsg[0] = '\0';
	h->result_pending = false;
	return 0;
}

int bgs_snap_for_pages(const struct bgsnap *h, uint64_t start, uint64_t end,
		       bgs_page_fn fn, void *arg)
{
	for (size_t i = 0; i < h->nregions; i++) {
		const struct bgs_region *r = &h->regions[i];
		const uint64_t lo = start > r->base ? start : r->base;
		const uint64_t hi =
			end < r->base + r->len ? end : r->base + r->len;

		if (!bgs_region_protected(r))
			continue;
		for (uint64_t a = lo & ~(uint64_t)(BGS_PAGE_SIZE - 1); a < hi;
		     a += BGS_PAGE_SIZE) {
			const int ret = fn(
				arg, r,
				r->first_page + (a - r->base) / BGS_PAGE_SIZE);
			if (ret)
				return ret;
		}
	}
	return 0;
}

const struct bgs_region *bgs_snap_region_of_page(const struct bgsnap *h,
						 uint64_t page)
{
	size_t lo = 0, hi = h->nregions;

	while (lo < hi) {
		const size_t mid = (lo + hi) / 2;
		const struct bgs_region *r = &h->regions[mid];

		if (page < r->first_page)
			hi = mid;
		else if (page >= r->first_page + bgs_region_pages(r))
			lo = mid + 1;
		else
			return r;
	}
	return NULL;
}

const struct bgs_region *bgs_snap_region_of_addr(const struct bgsnap *h,
						 uint64_t addr)
{
	size_t lo = 0, hi = h->nregions;

	while (lo < hi) {
		const size_t mid = (lo + hi) / 2;
		const struct bgs_region *r = &h->regions[mid];

		if (addr < r->base)
			hi = mid;
		else if (addr >= r->base + r->len)
			lo = mid + 1;
		else
			return r;
	}
	return NULL;
}

/* ---- attachments -------------------------------------------------------- */

BGSNAP_API int bgsnap_attach(struct bgsnap *h, const char *name,
			     const void *data, size_t len)
{
	struct bgs_attachment *grown, a = { 0 };

	if (!name || !*name || strlen(name) > 255 ||
	    !strncmp(name, "bgsnap.", 7) || (len && !data))
		return -EINVAL;
	if (len > RS_ATTACHMENT_MAX)
		return -E2BIG;
	for (size_t i = 0; i < h->nattachments; i++)
		if (!strcmp(h->attachments[i].name, name))
			return -EEXIST;
	a.name = strdup(name);
	a.data = malloc(len ? len : 1);
	a.len = len;
	grown = realloc(h->attachments, (h->nattachments + 1) * sizeof(*grown));
	if (!a.name || !a.data || !grown) {
		free(a.name);
		free(a.data);
		if (grown)
			h->attachments = grown;
		return -ENOMEM;
	}
	if (len)
		memcpy(a.data, data, len);
	h->attachments = grown;
	h->attachments[h->nattachments++] = a;
	return 0;
}

BGSNAP_API void bgsnap_attach_clear(struct bgsnap *h)
{
	for (size_t i = 0; i < h->nattachments; i++) {
		free(h->attachments[i].name);
		free(h->attachments[i].data);
	}
	free(h->attachments);
	h->attachments = NULL;
	h->nattachments = 0;
}
