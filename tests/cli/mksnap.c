/* SPDX-License-Identifier: MIT */
/*
 * mksnap: make a snapshot with known content through the public API only,
 * for the command's end-to-end tests.
 *
 *   mksnap OUT.bgs DIR
 *
 * Registers a few regions, fills them (data, zero pages touched and never
 * touched, compressible and random bytes), attaches a blob, saves to
 * OUT.bgs, and writes what the regions held into DIR: rN.orig per region
 * and manifest.json ([{"name":..., "orig": "rN.orig", "len": ...}]).
 * Exit 0, 1 on failure (a refused permission among them), 77 only when
 * the kernel lacks userfaultfd write-protect.
 */
#include <bgsnap.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096u

struct region {
	const char *name;
	size_t len;
	int shared; /* a memfd instead of anonymous memory */
	void (*fill)(unsigned char *p, size_t len);
	unsigned char *mem;
};

static unsigned long long rng = 0x9e3779b97f4a7c15ull;

static unsigned long long next_rand(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 2685821657736338717ull;
}

/* Page i: 8n never touched, 8n+1 written then zeroed, 8n+2..4 text,
 * 8n+5..7 random. */
static void fill_mixed(unsigned char *p, size_t len)
{
	static const char text[] = "bgsnap keeps memory as it was. ";

	for (size_t pg = 0; pg < len / PAGE; pg++) {
		unsigned char *q = p + pg * PAGE;

		switch (pg % 8) {
		case 0:
			break;
		case 1: {
			volatile unsigned char *v = q;

			v[100] = 1;
			v[100] = 0;
			break;
		}
		case 2:
		case 3:
		case 4:
			for (size_t i = 0; i < PAGE; i++)
				q[i] = (unsigned char)
					text[(i + pg) % (sizeof(text) - 1)];
			break;
		default:
			for (size_t i = 0; i < PAGE; i += 8) {
				const unsigned long long v = next_rand();
				memcpy(q + i, &v, 8);
			}
		}
	}
}

/* Three data pages in a mostly never-touched region. */
static void fill_sparse(unsigned char *p, size_t len)
{
	const size_t pages[] = { 0, 1000, len / PAGE - 1 };

	for (size_t i = 0; i < 3; i++)
		memset(p + pages[i] * PAGE, 0x5a + (int)i, PAGE);
}

static void fill_all(unsigned char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (unsigned char)(i * 7 + i / PAGE);
}

/* Incompressible: stored raw. */
static void fill_noise(unsigned char *p, size_t len)
{
	for (size_t i = 0; i < len; i += 8) {
		const unsigned long long v = next_rand();
		memcpy(p + i, &v, 8);
	}
}

static struct region regions[] = {
	{ "ram", 2u << 20, 0, fill_mixed, NULL },
	{ "sparse", 16u << 20, 0, fill_sparse, NULL },
	{ "../../evil/name with space", 64u << 10, 0, fill_all, NULL },
	{ "shm", 256u << 10, 1, fill_mixed, NULL },
	{ "noise", 128u << 10, 0, fill_noise, NULL },
};
#define NREGIONS (sizeof(regions) / sizeof(regions[0]))

static int map_region(struct region *r)
{
	int fd = -1;
	void *p;

	if (r->shared) {
		fd = memfd_create("mksnap", MFD_CLOEXEC);
		if (fd < 0 || ftruncate(fd, (off_t)r->len))
			return -errno;
	}
	p = mmap(NULL, r->len, PROT_READ | PROT_WRITE,
		 r->shared ? MAP_SHARED : MAP_PRIVATE | MAP_ANONYMOUS, fd, 0);
	if (fd >= 0)
		close(fd);
	if (p == MAP_FAILED)
		return -errno;
	/* 4 KiB pages: the zero/data pattern is per page. */
	madvise(p, r->len, MADV_NOHUGEPAGE);
	r->mem = p;
	r->fill(r->mem, r->len);
	return 0;
}

static int write_file(const char *path, const void *p, size_t len)
{
	FILE *f = fopen(path, "w");
	int ok;

	if (!f)
		return -1;
	ok = fwrite(p, 1, len, f) == len;
	return fclose(f) || !ok ? -1 : 0;
}

static int write_originals(const char *dir)
{
	char path[4096];
	FILE *m;

	for (size_t i = 0; i < NREGIONS; i++) {
		snprintf(path, sizeof(path), "%s/r%zu.orig", dir, i);
		if (write_file(path, regions[i].mem, regions[i].len))
			return -1;
	}
	snprintf(path, sizeof(path), "%s/manifest.json", dir);
	m = fopen(path, "w");
	if (!m)
		return -1;
	fputc('[', m);
	for (size_t i = 0; i < NREGIONS; i++)
		fprintf(m,
			"%s{\"name\":\"%s\",\"orig\":\"r%zu.orig\","
			"\"len\":%zu}",
			i ? "," : "", regions[i].name, i, regions[i].len);
	fputs("]\n", m);
	return fclose(m) ? -1 : 0;
}

static int save(struct bgsnap *h, const char *out)
{
	static const char blob[] = "device state of a pretend VMM";
	int ret;

	for (size_t i = 0; i < NREGIONS; i++) {
		ret = map_region(&regions[i]);
		if (!ret)
			ret = bgsnap_add_region(h, regions[i].name,
						regions[i].mem, regions[i].len);
		if (ret) {
			fprintf(stderr, "mksnap: region '%s': %s (%s)\n",
				regions[i].name, bgsnap_strerror(ret),
				bgsnap_last_error(h));
			return ret;
		}
	}
	ret = bgsnap_attach(h, "vmm.state", blob, sizeof(blob));
	if (!ret)
		ret = bgsnap_save(h, out, NULL);
	if (ret)
		fprintf(stderr, "mksnap: save: %s (%s)\n", bgsnap_strerror(ret),
			bgsnap_last_error(h));
	return ret;
}

int main(int argc, char **argv)
{
	struct bgsnap *h;
	int ret;

	if (argc != 3) {
		fprintf(stderr, "usage: mksnap OUT.bgs DIR\n");
		return 1;
	}
	if (bgsnap_new(&h))
		return 1;
	ret = save(h, argv[1]);
	bgsnap_free(h);
	if (ret == -ENOSYS || ret == -ENOTSUP || ret == -EOPNOTSUPP) {
		fprintf(stderr, "mksnap: SKIP: this kernel lacks userfaultfd "
				"write-protect\n");
		return 77;
	}
	if (ret == -EPERM)
		fprintf(stderr, "mksnap: saving needs userfaultfd rights (run "
				"the suite as root)\n");
	if (ret)
		return 1;
	if (write_originals(argv[2])) {
		perror("mksnap: writing the originals");
		return 1;
	}
	return 0;
}
