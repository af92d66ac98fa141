/* SPDX-License-Identifier: MIT */
/* bgsnap gc: remove the data of saves to a Ceph pool that no snapshot names. */
#include "cli.h"

#include <bgsnap.h>
#include <errno.h>
#include <string.h>

static const char gc_usage[] =
	"usage: bgsnap gc rados://POOL [--dry-run]\n"
	"\n"
	"A save to rados://POOL/NAME stores its data objects first and the\n"
	"head that names them last. A save that was killed, or whose clean-up\n"
	"could not reach the cluster, leaves data objects that no head names:\n"
	"orphans. This finds them and removes them; a snapshot, and the data\n"
	"it names, is never touched.\n"
	"\n"
	"A save in progress holds a lease on its data, renewed every quarter\n"
	"lease, and is left alone ('busy'). The lease is four operation\n"
	"timeouts and a minute (3 minutes by default): the data of a save "
	"that\n"
	"died is an orphan once it runs out. Data whose snapshot head or "
	"lease\n"
	"cannot be read is left too ('unsure'), with the reason.\n"
	"\n"
	"One line per upload found: 'orphan', 'busy' or 'unsure', the name it\n"
	"was saved under, its upload id, its objects and bytes; then a total.\n"
	"\n"
	"  -n, --dry-run   list the orphans, remove nothing\n"
	"  -h, --help      this text\n"
	"\n"
	"The cluster: --ceph-conf, --ceph-id, --ceph-timeout (bgsnap --help).\n"
	"Exit status: 0 done (or nothing to do), 1 the pool could not be\n"
	"listed or an orphan could not be removed, 2 usage.\n";

static const struct option gc_options[] = {
	{ "dry-run", no_argument, NULL, 'n' },
	CLI_OPT_HELP_ENTRY,
	{ 0 },
};

struct gc {
	bool dry_run;
	uint64_t orphans, bytes, failed;
};

static const char *state_name(int state)
{
	return state == BGSNAP_ORPHAN_BUSY     ? "busy"
	       : state == BGSNAP_ORPHAN_UNSURE ? "unsure"
					       : "orphan";
}

static int report(void *arg, const struct bgsnap_orphan *o)
{
	struct gc *gc = arg;
	char size[CLI_FMT_LEN];

	printf("%-6s %s %s: %llu object%s, %s", state_name(o->state), o->name,
	       o->upload, (unsigned long long)o->objects,
	       o->objects == 1 ? "" : "s", cli_fmt_size(size, o->bytes));
	if (o->state == BGSNAP_ORPHAN_BUSY)
		printf(" (a save in progress holds its lease)");
	else if (o->state == BGSNAP_ORPHAN_UNSURE)
		printf(" (left: %s)", bgsnap_strerror(o->error));
	else if (o->error)
		printf(" (NOT removed: %s)", bgsnap_strerror(o->error));
	else
		printf(gc->dry_run ? " (would be removed)" : " (removed)");
	printf("\n");
	if (o->state == BGSNAP_ORPHAN && !o->error) {
		gc->orphans++;
		gc->bytes += o->bytes;
	}
	gc->failed += o->state == BGSNAP_ORPHAN && o->error;
	return 0;
}

int cmd_gc(int argc, char **argv)
{
	struct gc gc = { 0 };
	const struct cli_opt opts[] = {
		{ 'n', .flag = &gc.dry_run },
		{ 0 },
	};
	struct cli_getopt g = { .cmd = "gc",
				.usage = gc_usage,
				.shortopts = "n",
				.longopts = gc_options,
				.opts = opts };
	const int code = cli_parse(&g, argc, argv, 1, 1, "rados://POOL");
	char err[512], size[CLI_FMT_LEN];
	int ret;

	if (code >= 0)
		return code;
	if (strncmp(argv[optind], "rados://", 8) ||
	    strchr(argv[optind] + 8, '/')) {
		cli_error("gc: '%s' is not rados://POOL", argv[optind]);
		return EXIT_USAGE;
	}
	ret = bgsnap_rados_gc(argv[optind], gc.dry_run ? BGSNAP_GC_DRY_RUN : 0,
			      report, &gc, err, sizeof(err));
	if (ret) {
		cli_error("gc: %s", err);
		return EXIT_FAILED;
	}
	printf("%s: %llu orphaned upload%s, %s\n",
	       gc.dry_run ? "would remove" : "removed",
	       (unsigned long long)gc.orphans, gc.orphans == 1 ? "" : "s",
	       cli_fmt_size(size, gc.bytes));
	if (gc.failed) {
		cli_error("gc: %llu orphans could not be removed (see above)",
			  (unsigned long long)gc.failed);
		return EXIT_FAILED;
	}
	return EXIT_OK;
}
