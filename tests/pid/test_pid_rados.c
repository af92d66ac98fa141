/* SPDX-License-Identifier: MIT */
/*
 * Snapshots in Ceph (rados://POOL/NAME), end to end through the built
 * binary, against the one-node cluster of the ceph_cluster fixture (run by
 * tests/ceph/with_cluster.sh, which exports its CEPH_CONF, pool and keys)
 * and 'bgsnap guest' processes:
 *   - a live save under writers into the pool, verify, and an eager
 *     restore from the pool: the memory right after it is the snapshot's
 *     byte for byte, the snapshot passes the bank oracle, and the guest
 *     runs on with balanced books;
 *   - a chain in the pool: an incremental save whose parent is in the
 *     pool, verified with its parent found beside it, restored byte for
 *     byte, flattened into the pool (not over an existing name without
 *     --force), and never saved over its own parent;
 *   - a watch into the pool: a chain numbered on by a second watch, the
 *     last snapshot verified with its parent and passing the oracle;
 *   - the same snapshot saved to a file and to the pool, writers held:
 *     the pool's exports the same bytes;
 *   - a damaged data object and a missing one: verify and restore refuse
 *     with one line that names the object, the guest untouched;
 *   - a key without write caps: one clear line, nothing under the name,
 *     no data object left, the guest unharmed;
 *   - a name taken: refused without --force, replaced with it (the old
 *     data objects removed); two saves to one new name at once without
 *     --force: exactly one succeeds, and the snapshot is whole;
 *   - the OSD killed while a save writes: it fails within the operation
 *     timeout with one clear line, nothing is visible under the name, the
 *     guest runs on unharmed; once the OSD is back, the same save works,
 *     and 'bgsnap gc' finds every upload of the name that no head names;
 *   - a save killed (SIGKILL) while it uploads: gc leaves its data while
 *     its lease holds, lists it as an orphan with --dry-run once the lease
 *     ran out (removing nothing), then removes all of it, and nothing
 *     else: the snapshot beside it still verifies;
 *   - a save stopped (SIGSTOP) for more than half its lease: it fails
 *     saying so once it runs again, nothing is left, the guest runs on;
 *   - a save with --cpus: all its threads but the main one, librados's
 *     included, run on those CPUs.
 */
#include "pid_util.h"
#include "testutil.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#define RUN_MS	     120000
#define EXIT_BADFILE 3

static const char *pool, *rw_id, *ro_id;

static void target(char *buf, size_t n, const char *name)
{
	snprintf(buf, n, "rados://%s/%s-%d", pool, name, (int)getpid());
}

/* The rados command as client.@id on the pool; its stdout in @out (may
 * be NULL). Exit status. */
static int rados(const char *id, char *out, size_t n, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int rados(const char *id, char *out, size_t n, const char *fmt, ...)
{
	char cmd[2048], args[1024];
	va_list ap;
	FILE *p;
	size_t got = 0;

	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof(cmd),
		 "timeout 60 rados --id %s --rados-osd-op-timeout 30 -p %s %s",
		 id, pool, args);
	p = popen(cmd, "r");
	assert_non_null(p);
	if (out) {
		while (got + 1 < n && !feof(p)) {
			const size_t k = fread(out + got, 1, n - 1 - got, p);

			if (!k)
				break;
			got += k;
		}
		out[got] = '\0';
	} else {
		char sink[4096];

		while (fread(sink, 1, sizeof(sink), p))
			;
	}
	return pclose(p);
}

/* The names after "@name." of the pool's objects that have it (its data
 * objects and lease), into @each; whether the head @name is there. */
static bool each_object_of(const char *name,
			   void (*each)(const char *rest, void *ctx), void *ctx)
{
	static char list[1 << 20];
	const size_t len = strlen(name);
	bool head = false;

	assert_int_equal(rados(rw_id, list, sizeof(list), "ls"), 0);
	for (char *save = NULL, *l = strtok_r(list, "\n", &save); l;
	     l = strtok_r(NULL, "\n", &save)) {
		if (!strncmp(l, name, len) && l[len] == '.')
			each(l + len + 1, ctx);
		head |= !strcmp(l, name);
	}
	return head;
}

static void count(const char *rest, void *ctx)
{
	(void)rest;
	++*(unsigned *)ctx;
}

/* How many objects of the pool start with "@name." (data objects and a
 * lease), and whether the head @name itself is there. */
static unsigned data_objects(const char *name, bool *head)
{
	unsigned n = 0;

	*head = each_object_of(name, count, &n);
	return n;
}

/* The object name of @t (rados://POOL/NAME). */
static const char *object_of(const char *t)
{
	return strrchr(t, '/') + 1;
}

static void save(struct pt_run *r, const struct pt_guest *g, const char *to,
		 const char *id, const char *extra)
{
	char pid[16];

	snprintf(pid, sizeof(pid), "%d", (int)g->c.pid);
	pt_run(r, RUN_MS, -1, "save", "--pid", pid, "-o", to, "-q", "--ceph-id",
	       id, extra, NULL);
}

static void must_save(const struct pt_guest *g, const char *to,
		      const char *extra)
{
	struct pt_run r;

	save(&r, g, to, rw_id, extra);
	if (r.code)
		fail_msg("save -o %s: exit %d: %s", to, r.code, r.err);
	pt_run_free(&r);
}

static void must_be_unharmed(struct pt_guest *g)
{
	pt_guest_untraced(g);
	pt_guest_unprotected(g);
	pt_guest_healthy(g, 200, 0);
}

/* The guest's memory now (writers held), through a dump. */
static uint8_t *guest_memory(struct pt_guest *g)
{
	char dump[300];
	uint8_t *mem;
	size_t len;

	snprintf(dump, sizeof(dump), "%s/mem.raw", pt_dir());
	pt_guest_must(g, "dump %s", dump);
	mem = pt_read_file(dump, &len);
	unlink(dump);
	assert_int_equal(len, g->len);
	return mem;
}

/* ---- the round trip ------------------------------------------------------ */

/* Restore @from into the guest, its writers held: right after, its memory
 * is the snapshot's byte for byte, and passes the bank oracle. Returns the
 * snapshot's image (exported from the pool). */
static uint8_t *restore_exact(struct pt_guest *g, const char *from)
{
	char pid[16];
	uint8_t *image, *mem;
	struct pt_run r;

	snprintf(pid, sizeof(pid), "%d", (int)g->c.pid);
	pt_run(&r, RUN_MS, -1, "restore", from, "--pid", pid, "--include",
	       g->range, "--ceph-id", rw_id, NULL);
	if (r.code)
		fail_msg("restore from %s: exit %d: %s", from, r.code, r.err);
	pt_run_free(&r);
	image = pt_export_guest(g, from); /* export reads the pool too */
	pt_check_image(g, image);
	mem = guest_memory(g);
	for (size_t i = 0; i < g->len; i += PT_PAGE)
		if (memcmp(mem + i, image + i, PT_PAGE))
			fail_msg("page %zu differs from %s right after the "
				 "restore",
				 i / PT_PAGE, from);
	free(mem);
	return image;
}

/* The restored guest recovers and runs on with balanced books; stopped. */
static void runs_on_restored(struct pt_guest *g)
{
	pt_guest_must(g, "recover");
	pt_guest_must(g, "release");
	pt_guest_healthy(g, 150, 0);
	pt_guest_untraced(g);
	pt_guest_stop(g);
}

static void test_round_trip(void **state)
{
	char to[256];
	struct pt_guest g;
	struct pt_run r;

	(void)state;
	target(to, sizeof(to), "trip");
	pt_guest_start(&g, 0, "64M", "4k", NULL);
	tu_sleep_ms(100);
	must_save(&g, to, NULL); /* the writers run all along */
	pt_run(&r, RUN_MS, -1, "verify", to, "--ceph-id", rw_id, NULL);
	if (r.code)
		fail_msg("verify %s: exit %d: %s", to, r.code, r.err);
	assert_non_null(strstr(r.out, ": ok: "));
	pt_run_free(&r);
	tu_sleep_ms(200); /* the writers move on from the snapshot */
	pt_guest_must(&g, "hold");
	free(restore_exact(&g, to));
	runs_on_restored(&g);
}

/* A chain in the pool: a full snapshot, then an incremental one whose
 * parent is found beside it in the pool; verified, restored, flattened
 * into the pool; never saved over its own parent. */
static void test_chain(void **state)
{
	char base[256], child[256], flat[256], pid[16];
	uint8_t *image, *flat_image;
	const char *parent;
	struct pt_guest g;
	struct pt_run r;

	(void)state;
	target(base, sizeof(base), "base");
	target(child, sizeof(child), "child");
	target(flat, sizeof(flat), "flat");
	pt_guest_start(&g, 0, "64M", "4k", NULL);
	snprintf(pid, sizeof(pid), "%d", (int)g.c.pid);
	must_save(&g, base, NULL);
	tu_sleep_ms(100);
	pt_run(&r, RUN_MS, -1, "save", "--pid", pid, "-o", child, "--parent",
	       base, "--ceph-id", rw_id, "--json", NULL);
	if (r.code)
		fail_msg("save --parent %s: exit %d: %s", base, r.code, r.err);
	/* Some pages were left to the parent (the writers do not write
	 * all 64 MiB in 100 ms). */
	parent = strstr(r.out, "\"pages_parent\":");
	assert_non_null(parent);
	assert_true(strtoull(parent + strlen("\"pages_parent\":"), NULL, 10) >
		    0);
	pt_run_free(&r);
	pt_run(&r, RUN_MS, -1, "verify", child, "--ceph-id", rw_id, NULL);
	if (r.code)
		fail_msg("verify %s: exit %d: %s", child, r.code, r.err);
	assert_non_null(strstr(r.out, "with its 1 parent"));
	pt_run_free(&r);
	/* Saved over its own parent: refused, even with --force. */
	pt_run(&r, RUN_MS, -1, "save", "--pid", pid, "-o", base, "--parent",
	       child, "--force", "--ceph-id", rw_id, NULL);
	assert_int_equal(r.code, 1);
	assert_non_null(strstr(r.err, "never replaces a snapshot of its own "
				      "chain"));
	pt_run_free(&r);
	/* Restored from the chain: byte for byte the child's memory. */
	pt_guest_must(&g, "hold");
	image = restore_exact(&g, child);
	/* Flattened into the pool: the same memory, no parent. */
	pt_run(&r, RUN_MS, -1, "flatten", child, "-o", flat, "--ceph-id", rw_id,
	       "-q", NULL);
	if (r.code)
		fail_msg("flatten %s: exit %d: %s", child, r.code, r.err);
	pt_run_free(&r);
	pt_run(&r, RUN_MS, -1, "flatten", child, "-o", flat, "--ceph-id", rw_id,
	       "-q", NULL);
	assert_int_equal(r.code, 1);
	assert_non_null(strstr(r.err, "already exists"));
	pt_run_free(&r);
	pt_run(&r, RUN_MS, -1, "info", flat, "--ceph-id", rw_id, NULL);
	assert_int_equal(r.code, 0);
	assert_non_null(strstr(r.out, "(a full snapshot)"));
	pt_run_free(&r);
	flat_image = pt_export_guest(&g, flat);
	assert_memory_equal(flat_image, image, g.len);
	free(flat_image);
	free(image);
	runs_on_restored(&g);
}

/* A watch into the pool: a chain DIR/snap-NNNNNN.bgs, numbered on by a
 * second watch from what the first left; the last verifies with its
 * parent found beside it and exports the guest's memory as it was. */
static void test_watch_into_pool(void **state)
{
	char dir[256], last[300], pid[16];
	struct pt_guest g;
	struct pt_run r;
	uint8_t *image;
	bool head;

	(void)state;
	target(dir, sizeof(dir), "watch");
	pt_guest_start(&g, 0, "64M", "4k", NULL);
	snprintf(pid, sizeof(pid), "%d", (int)g.c.pid);
	for (int round = 0; round < 2; round++) {
		pt_run(&r, RUN_MS, -1, "watch", "--pid", pid, "--every",
		       "200ms", "--count", "2", "-o", dir, "--ceph-id", rw_id,
		       NULL);
		if (r.code)
			fail_msg("watch -o %s: exit %d: %s", dir, r.code,
				 r.err);
		/* The second round numbers on from the first's. */
		assert_non_null(strstr(r.out, round ? "snap-000003.bgs"
						    : "snap-000001.bgs"));
		pt_run_free(&r);
	}
	for (int i = 0; i < 4; i++) {
		snprintf(last, sizeof(last), "%s/snap-%06d.bgs", object_of(dir),
			 i);
		(void)data_objects(last, &head);
		if (!head)
			fail_msg("no snapshot %s in the pool", last);
	}
	snprintf(last, sizeof(last), "%s/snap-000003.bgs", dir);
	pt_guest_must(&g, "hold");
	pt_run(&r, RUN_MS, -1, "verify", last, "--ceph-id", rw_id, NULL);
	if (r.code)
		fail_msg("verify %s: exit %d: %s", last, r.code, r.err);
	assert_non_null(strstr(r.out, "with its 1 parent"));
	pt_run_free(&r);
	image = pt_export_guest(&g, last);
	pt_check_image(&g, image);
	free(image);
	pt_guest_must(&g, "release");
	must_be_unharmed(&g);
	pt_guest_stop(&g);
}

/* Writers held: a file and the pool get the same snapshot. */
static void test_same_as_file(void **state)
{
	char to[256], file[256];
	uint8_t *a, *b;
	struct pt_guest g;

	(void)state;
	target(to, sizeof(to), "same");
	snprintf(file, sizeof(file), "%s/same.bgs", pt_dir());
	pt_guest_start(&g, 0, "64M", "4k", NULL);
	tu_sleep_ms(100);
	pt_guest_must(&g, "hold");
	must_save(&g, to, NULL);
	must_save(&g, file, NULL);
	a = pt_export_guest(&g, to);
	b = pt_export_guest(&g, file);
	assert_memory_equal(a, b, g.len);
	free(a);
	free(b);
	pt_guest_must(&g, "release");
	pt_guest_stop(&g);
	unlink(file);
}

/* ---- damage -------------------------------------------------------------- */

/* verify and restore of @to refuse with one line containing @why; the
 * guest's memory is untouched. */
static void expect_refused(struct pt_guest *g, const char *to, const char *why)
{
	char pid[16];
	struct pt_run r;
	uint8_t *before, *after;

	pt_run(&r, RUN_MS, -1, "verify", to, "--ceph-id", rw_id, NULL);
	fprintf(stderr, "# verify: %d %s", r.code, r.err);
	assert_int_equal(r.code, EXIT_BADFILE);
	pt_one_error_line(r.err);
	if (!strstr(r.err, why))
		fail_msg("verify does not say '%s': %s", why, r.err);
	pt_run_free(&r);
	before = guest_memory(g);
	snprintf(pid, sizeof(pid), "%d", (int)g->c.pid);
	pt_run(&r, RUN_MS, -1, "restore", to, "--pid", pid, "--include",
	       g->range, "--ceph-id", rw_id, NULL);
	fprintf(stderr, "# restore: %d %s", r.code, r.err);
	assert_int_not_equal(r.code, 0);
	pt_one_error_line(r.err);
	if (!strstr(r.err, why))
		fail_msg("restore does not say '%s': %s", why, r.err);
	pt_run_free(&r);
	after = guest_memory(g);
	assert_memory_equal(before, after, g->len);
	free(before);
	free(after);
}

/* The name of data object @index of the snapshot @name in the pool. */
static void data_object(const char *name, unsigned index, char *out, size_t n)
{
	static char list[1 << 20];
	char suffix[16];

	assert_int_equal(rados(rw_id, list, sizeof(list), "ls"), 0);
	snprintf(suffix, sizeof(suffix), ".%08x", index);
	for (char *save = NULL, *l = strtok_r(list, "\n", &save); l;
	     l = strtok_r(NULL, "\n", &save))
		if (!strncmp(l, name, strlen(name)) && l[strlen(name)] == '.' &&
		    strlen(l) > strlen(suffix) &&
		    !strcmp(l + strlen(l) - strlen(suffix), suffix)) {
			snprintf(out, n, "%s", l);
			return;
		}
	fail_msg("no data object %u of %s in the pool", index, name);
}

static void test_damaged_object(void **state)
{
	char to[256], obj[300], tmp[300];
	struct pt_guest g;
	uint8_t *bytes;
	size_t len;
	FILE *f;

	(void)state;
	target(to, sizeof(to), "damaged");
	pt_guest_start(&g, 0, "64M", "4k", NULL);
	pt_guest_must(&g, "hold");
	must_save(&g, to, NULL);
	data_object(object_of(to), 1, obj, sizeof(obj));
	snprintf(tmp, sizeof(tmp), "%s/obj", pt_dir());
	assert_int_equal(rados(rw_id, NULL, 0, "get %s %s", obj, tmp), 0);
	bytes = pt_read_file(tmp, &len);
	assert_true(len > 4096);
	bytes[len / 2] ^= 0x40; /* one bit, mid-object */
	f = fopen(tmp, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(bytes, 1, len, f), len);
	fclose(f);
	free(bytes);
	assert_int_equal(rados(rw_id, NULL, 0, "put %s %s", obj, tmp), 0);
	expect_refused(&g, to, "is damaged");
	assert_int_equal(rados(rw_id, NULL, 0, "rm %s", obj), 0);
	expect_refused(&g, to, "is missing");
	pt_guest_must(&g, "release");
	pt_guest_stop(&g);
	unlink(tmp);
}

/* ---- refusals ------------------------------------------------------------ */

static void test_read_only_key(void **state)
{
	char to[256];
	struct pt_guest g;
	struct pt_run r;
	bool head;

	(void)state;
	target(to, sizeof(to), "readonly");
	pt_guest_start(&g, 0, "64M", "4k", NULL);
	tu_sleep_ms(100);
	save(&r, &g, to, ro_id, NULL);
	fprintf(stderr, "# as client.%s: %d %s", ro_id, r.code, r.err);
	assert_int_equal(r.code, 1);
	pt_one_error_line(r.err);
	assert_non_null(strstr(r.err, "permission denied"));
	assert_non_null(strstr(r.err, "no snapshot was written"));
	pt_run_free(&r);
	assert_int_equal(data_objects(object_of(to), &head), 0);
	assert_false(head);
	must_be_unharmed(&g);
	pt_guest_stop(&g);
}

static void test_name_taken(void **state)
{
	char to[256];
	struct pt_guest g;
	struct pt_run r;
	unsigned first, now;
	bool head;

	(void)state;
	target(to, sizeof(to), "taken");
	pt_guest_start(&g, 0, "64M", "4k", NULL);
	must_save(&g, to, NULL);
	first = data_objects(object_of(to), &head);
	assert_true(head);
	assert_true(first > 0);
	save(&r, &g, to, rw_id, NULL);
	fprintf(stderr, "# again: %d %s", r.code, r.err);
	assert_int_equal(r.code, 1);
	pt_one_error_line(r.err);
	assert_non_null(strstr(r.err, "already exists"));
	pt_run_free(&r);
	assert_int_equal(data_objects(object_of(to), &head), first);
	must_save(&g, to, "--force");
	now = data_objects(object_of(to), &head);
	assert_true(head);
	/* The old upload's objects are gone: only the new one's are left,
	 * as many as a snapshot of the same guest takes (give or take the
	 * compression of what the writers changed). */
	assert_true(now > 0 && now <= first + 1);
	must_be_unharmed(&g);
	pt_guest_stop(&g);
}

/* ---- orphans ------------------------------------------------------------ */

#define MAX_UPLOADS 16

/* 'bgsnap gc' of the pool (@dry_run: --dry-run), which must succeed. */
static void gc(struct pt_run *r, bool dry_run)
{
	char p[256];

	snprintf(p, sizeof(p), "rados://%s", pool);
	pt_run(r, RUN_MS, -1, "gc", p, "--ceph-id", rw_id,
	       dry_run ? "--dry-run" : NULL, NULL);
	if (r->code)
		fail_msg("gc %s: exit %d: %s", p, r->code, r->err);
	fprintf(stderr, "# gc%s: %s", dry_run ? " --dry-run" : "", r->out);
}

/* How many uploads of @name gc's output @out reports as @state, and their
 * objects in all; their ids into @ids (MAX_UPLOADS) if not NULL. */
static unsigned reported(const char *out, const char *state, const char *name,
			 unsigned *objects, char (*ids)[33])
{
	unsigned n = 0;

	*objects = 0;
	for (const char *l = out; *l;) {
		char st[16], nm[256], up[33];
		unsigned k;

		if (sscanf(l, "%15s %255s %32[0-9a-f]: %u object", st, nm, up,
			   &k) == 4 &&
		    !strcmp(st, state) && !strcmp(nm, name)) {
			if (ids && n < MAX_UPLOADS)
				memcpy(ids[n], up, 33);
			n++;
			*objects += k;
		}
		l = strchr(l, '\n') ? strchr(l, '\n') + 1 : l + strlen(l);
	}
	return n;
}

struct uploads {
	char (*ids)[33];
	unsigned n;
};

static void note_upload(const char *rest, void *ctx)
{
	struct uploads *u = ctx;
	bool seen = false;

	if (strlen(rest) < 33 || rest[32] != '.')
		return;
	for (unsigned i = 0; i < u->n; i++)
		seen |= !strncmp(u->ids[i], rest, 32);
	if (!seen && u->n < MAX_UPLOADS) {
		memcpy(u->ids[u->n], rest, 32);
		u->ids[u->n++][32] = '\0';
	}
}

/* The distinct uploads among the pool's objects NAME.<upload>.* into @ids
 * (MAX_UPLOADS); their number. */
static unsigned uploads_of(const char *name, char (*ids)[33])
{
	struct uploads u = { ids, 0 };

	(void)each_object_of(name, note_upload, &u);
	return u.n;
}

static void test_gc_killed_save(void **state)
{
	char keep[256], to[256], pid[16];
	const char *argv[] = { "bgsnap", "save", "--pid",     pid,   "-o",
			       to,	 "-q",	 "--ceph-id", rw_id, NULL };
	struct pt_guest g;
	struct pt_run r;
	unsigned objects, left, kept;
	bool head;
	int status;
	pid_t b;

	(void)state;
	target(keep, sizeof(keep), "kept");
	target(to, sizeof(to), "killed");
	pt_guest_start(&g, 0, "256M", "4k", NULL);
	must_save(&g, keep, NULL);
	kept = data_objects(object_of(keep), &head);
	snprintf(pid, sizeof(pid), "%d", (int)g.c.pid);
	/* A lease of 6 s, not 3 minutes: the test waits it out. */
	setenv("BGSNAP_RADOS_LEASE_SECONDS", "6", 1);
	b = fork();
	assert_true(b >= 0);
	if (!b) {
		execv(pt_bgsnap, (char *const *)(uintptr_t)argv);
		_exit(127);
	}
	unsetenv("BGSNAP_RADOS_LEASE_SECONDS");
	/* Killed once it stored data (its lease comes first). */
	for (int i = 0; i < 1000 && data_objects(object_of(to), &head) < 2; i++)
		tu_sleep_ms(5);
	kill(b, SIGKILL);
	assert_int_equal(waitpid(b, &status, 0), b);
	assert_true(WIFSIGNALED(status)); /* not done before the kill */
	left = data_objects(object_of(to), &head);
	assert_false(head);
	assert_true(left >= 2);
	/* Its lease holds: gc leaves it, as a live save's. */
	gc(&r, false);
	assert_int_equal(reported(r.out, "busy", object_of(to), &objects, NULL),
			 1);
	assert_int_equal(objects, left);
	pt_run_free(&r);
	assert_int_equal(data_objects(object_of(to), &head), left);
	tu_sleep_ms(8000); /* the lease runs out (whole seconds, and one) */
	gc(&r, true);
	assert_int_equal(
		reported(r.out, "orphan", object_of(to), &objects, NULL), 1);
	assert_int_equal(objects, left);
	assert_non_null(strstr(r.out, "(would be removed)"));
	pt_run_free(&r);
	assert_int_equal(data_objects(object_of(to), &head), left);
	gc(&r, false);
	assert_int_equal(
		reported(r.out, "orphan", object_of(to), &objects, NULL), 1);
	assert_non_null(strstr(r.out, "(removed)"));
	pt_run_free(&r);
	assert_int_equal(data_objects(object_of(to), &head), 0);
	assert_false(head);
	/* Nothing else went: the snapshot beside it is whole. */
	assert_int_equal(data_objects(object_of(keep), &head), kept);
	assert_true(head);
	pt_run(&r, RUN_MS, -1, "verify", keep, "--ceph-id", rw_id, NULL);
	if (r.code)
		fail_msg("verify %s after gc: exit %d: %s", keep, r.code,
			 r.err);
	pt_run_free(&r);
	must_be_unharmed(&g);
	pt_guest_stop(&g);
}

/* Run the save @argv into @to, its stderr onto @err_fd (-1: as is), and
 * stop it (SIGSTOP) once it stored data: its lease taken and its threads
 * started. Its pid; it must not have ended before the stop. */
static pid_t save_stopped_midway(const char *const argv[], const char *to,
				 int err_fd)
{
	int status;
	bool head;
	pid_t b = fork();

	assert_true(b >= 0);
	if (!b) {
		if (err_fd >= 0)
			dup2(err_fd, 2);
		execv(pt_bgsnap, (char *const *)(uintptr_t)argv);
		_exit(127);
	}
	for (int i = 0; i < 1000 && data_objects(object_of(to), &head) < 2; i++)
		tu_sleep_ms(5);
	kill(b, SIGSTOP);
	assert_int_equal(waitpid(b, &status, WUNTRACED), b);
	assert_true(WIFSTOPPED(status));
	return b;
}

/* A save stopped (SIGSTOP, a debugger) for more than half its lease may
 * have lost its data to gc meanwhile: once it runs again it fails, saying
 * so, rather than publish; nothing is left under the name, and the guest
 * runs on. */
static void test_save_held_up(void **state)
{
	char to[256], pid[16], err[1024] = "";
	const char *argv[] = { "bgsnap", "save",      "--pid", pid,
			       "-o",	 to,	      "-q",    "--compress",
			       "none",	 "--ceph-id", rw_id,   NULL };
	struct pt_guest g;
	int status, e[2];
	ssize_t n;
	bool head;
	pid_t b;

	(void)state;
	target(to, sizeof(to), "heldup");
	pt_guest_start(&g, 0, "512M", "4k", NULL);
	snprintf(pid, sizeof(pid), "%d", (int)g.c.pid);
	assert_int_equal(pipe2(e, O_CLOEXEC), 0);
	/* A lease of 4 s: stopped for 3, the save is past half of it. */
	setenv("BGSNAP_RADOS_LEASE_SECONDS", "4", 1);
	b = save_stopped_midway(argv, to, e[1]);
	unsetenv("BGSNAP_RADOS_LEASE_SECONDS");
	close(e[1]);
	tu_sleep_ms(3000);
	kill(b, SIGCONT);
	assert_int_equal(waitpid(b, &status, 0), b);
	n = read(e[0], err, sizeof(err) - 1);
	close(e[0]);
	err[n > 0 ? n : 0] = '\0';
	fprintf(stderr, "# held up: %s", err);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 1);
	pt_one_error_line(err);
	assert_non_null(strstr(err, "held up"));
	assert_int_equal(data_objects(object_of(to), &head), 0);
	assert_false(head);
	must_be_unharmed(&g);
	pt_guest_stop(&g);
}

/* How many of process @pid's threads, its main one aside, may run on CPUs
 * other than @cpus (a Cpus_allowed_list); their number into *@all. */
static unsigned threads_off(pid_t pid, const char *cpus, unsigned *all)
{
	char path[320], line[256];
	unsigned off = 0;
	struct dirent *d;
	DIR *dir;

	*all = 0;
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	dir = opendir(path);
	while (dir && (d = readdir(dir))) {
		FILE *f;

		if (d->d_name[0] == '.' || atoi(d->d_name) == pid)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/status",
			 (int)pid, d->d_name);
		f = fopen(path, "re");
		while (f && fgets(line, sizeof(line), f)) {
			const char *v = line + 18 + strspn(line + 18, "\t ");

			if (strncmp(line, "Cpus_allowed_list:", 18))
				continue;
			++*all;
			if (strncmp(v, cpus, strlen(cpus)) ||
			    v[strlen(cpus)] != '\n') {
				fprintf(stderr, "# thread %s: %s", d->d_name,
					v);
				off++;
			}
		}
		if (f)
			fclose(f);
	}
	if (dir)
		closedir(dir);
	return off;
}

/* With --cpus, every thread of a save into the pool runs there: bgsnap's
 * (copier, fault thread, putter, lease keeper) and librados's (messengers,
 * timers), the main thread alone keeping its own. */
static void test_save_cpus(void **state)
{
	char to[256], pid[16];
	const char *argv[] = { "bgsnap", "save",   "--pid", pid,
			       "-o",	 to,	   "-q",    "--compress",
			       "none",	 "--cpus", "0",	    "--ceph-id",
			       rw_id,	 NULL };
	unsigned all = 0, off;
	struct pt_guest g;
	int status;
	pid_t b;

	(void)state;
	target(to, sizeof(to), "cpus");
	pt_guest_start(&g, 0, "512M", "4k", NULL);
	snprintf(pid, sizeof(pid), "%d", (int)g.c.pid);
	b = save_stopped_midway(argv, to, -1);
	off = threads_off(b, "0", &all);
	kill(b, SIGCONT);
	assert_int_equal(waitpid(b, &status, 0), b);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	fprintf(stderr, "# %u threads besides the main one, %u off CPU 0\n",
		all, off);
	/* bgsnap's four and librados's, a dozen here. */
	assert_true(all >= 8);
	assert_int_equal(off, 0);
	must_be_unharmed(&g);
	pt_guest_stop(&g);
}

/* Two saves to one new name at once, neither with --force: one wins, the
 * other fails at its head (both passed the look at the start), and what
 * is under the name is the winner's, whole. */
static void test_name_race(void **state)
{
	char to[256], pid[2][16];
	const char *argv[2][10];
	struct pt_guest g[2];
	struct pt_run r;
	int status[2];
	pid_t b[2];
	bool head;

	(void)state;
	target(to, sizeof(to), "race");
	for (int i = 0; i < 2; i++) {
		pt_guest_start(&g[i], 0, "128M", "4k", NULL);
		snprintf(pid[i], sizeof(pid[i]), "%d", (int)g[i].c.pid);
		const char *a[] = { "bgsnap", "save", "--pid",	   pid[i],
				    "-o",     to,     "--ceph-id", rw_id,
				    "-q",     NULL };
		memcpy(argv[i], a, sizeof(a));
	}
	for (int i = 0; i < 2; i++) {
		b[i] = fork();
		assert_true(b[i] >= 0);
		if (!b[i]) {
			int null = open("/dev/null", O_WRONLY);

			dup2(null, 2);
			execv(pt_bgsnap, (char *const *)(uintptr_t)argv[i]);
			_exit(127);
		}
	}
	for (int i = 0; i < 2; i++) {
		assert_int_equal(waitpid(b[i], &status[i], 0), b[i]);
		assert_true(WIFEXITED(status[i]));
	}
	fprintf(stderr, "# two saves to one name: exit %d and %d\n",
		WEXITSTATUS(status[0]), WEXITSTATUS(status[1]));
	/* One 0, one 1. */
	assert_int_equal(WEXITSTATUS(status[0]) + WEXITSTATUS(status[1]), 1);
	(void)data_objects(object_of(to), &head);
	assert_true(head);
	pt_run(&r, RUN_MS, -1, "verify", to, "--ceph-id", rw_id, NULL);
	if (r.code)
		fail_msg("verify %s: exit %d: %s", to, r.code, r.err);
	pt_run_free(&r);
	for (int i = 0; i < 2; i++) {
		must_be_unharmed(&g[i]);
		pt_guest_stop(&g[i]);
	}
}

/* ---- an OSD down ----------------------------------------------------- */

static void test_osd_killed(void **state)
{
	char to[256], pid[16];
	const char *argv[] = {
		"bgsnap",    "save", "--pid",	       pid, "-o", to, "-q",
		"--ceph-id", rw_id,  "--ceph-timeout", "5", NULL
	};
	struct pt_guest g;
	struct pt_run r;
	uint64_t t0, ms;
	pid_t b;
	int err[2], status;
	char msg[1024] = "";
	char ids[MAX_UPLOADS][33], found_ids[MAX_UPLOADS][33];
	unsigned nuploads, found, objects;
	ssize_t got;
	bool head;

	(void)state;
	target(to, sizeof(to), "osdkill");
	pt_guest_start(&g, 0, "256M", "4k", NULL);
	snprintf(pid, sizeof(pid), "%d", (int)g.c.pid);
	assert_int_equal(pipe(err), 0);
	t0 = tu_now_ns();
	b = fork();
	assert_true(b >= 0);
	if (!b) {
		dup2(err[1], 2);
		execv(pt_bgsnap, (char *const *)(uintptr_t)argv);
		_exit(127);
	}
	close(err[1]);
	tu_sleep_ms(150); /* writing: a 256 MiB guest takes a second */
	assert_int_equal(tu_ceph_cluster("kill-osd"), 0);
	assert_int_equal(waitpid(b, &status, 0), b);
	ms = (tu_now_ns() - t0) / 1000000;
	got = read(err[0], msg, sizeof(msg) - 1);
	close(err[0]);
	msg[got > 0 ? got : 0] = '\0';
	fprintf(stderr, "# OSD killed: exit %d after %llu ms: %s",
		WIFEXITED(status) ? WEXITSTATUS(status) : -1,
		(unsigned long long)ms, msg);
	assert_int_equal(tu_ceph_cluster("start-osd"), 0);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 1);
	pt_one_error_line(msg);
	assert_non_null(strstr(msg, "no answer within 5 s"));
	assert_non_null(strstr(msg, "no snapshot was written"));
	/* The timeout, and not once per operation: the writes in flight
	 * time out together (two timeouts at most, from the first sent to
	 * the last), and no removal waits a third: gc removes what it left. */
	assert_true(ms < 12000);
	(void)data_objects(object_of(to), &head);
	assert_false(head);
	must_be_unharmed(&g);
	/* The OSD back: the same save works. */
	save(&r, &g, to, rw_id, NULL);
	if (r.code)
		fail_msg("save after the OSD is back: exit %d: %s", r.code,
			 r.err);
	pt_run_free(&r);
	(void)data_objects(object_of(to), &head);
	assert_true(head);
	/* What the failed save left, gc finds: every upload of the name
	 * but the one its head names (busy until its lease runs out). */
	nuploads = uploads_of(object_of(to), ids);
	gc(&r, true);
	found = reported(r.out, "busy", object_of(to), &objects, found_ids);
	found += reported(r.out, "orphan", object_of(to), &objects,
			  found_ids + found);
	pt_run_free(&r);
	assert_int_equal(found, nuploads - 1);
	for (unsigned i = 0; i < found; i++) {
		bool listed = false;

		for (unsigned k = 0; k < nuploads; k++)
			listed |= !strcmp(ids[k], found_ids[i]);
		assert_true(listed);
	}
	pt_guest_stop(&g);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_same_as_file),
		cmocka_unit_test(test_chain),
		cmocka_unit_test(test_watch_into_pool),
		cmocka_unit_test(test_damaged_object),
		cmocka_unit_test(test_read_only_key),
		cmocka_unit_test(test_name_taken),
		cmocka_unit_test(test_name_race),
		cmocka_unit_test(test_osd_killed),
		cmocka_unit_test(test_gc_killed_save),
		cmocka_unit_test(test_save_held_up),
		cmocka_unit_test(test_save_cpus),
	};

	pool = getenv("BGSNAP_CEPH_POOL");
	rw_id = getenv("BGSNAP_CEPH_ID");
	ro_id = getenv("BGSNAP_CEPH_RO_ID");
	if (!pool || !rw_id || !ro_id || !getenv("CEPH_CONF")) {
		fprintf(stderr, "test_pid_rados: run it through "
				"tests/ceph/with_cluster.sh (no cluster in "
				"the environment)\n");
		return 1;
	}
	pt_init(argc, argv);
	if (getenv("BGSNAP_TEST_FILTER"))
		cmocka_set_test_filter(getenv("BGSNAP_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
