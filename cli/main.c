/* SPDX-License-Identifier: MIT */
/* bgsnap: the command-line entry point; one function per subcommand. */
#include "cli.h"

#include <bgsnap.h>
#include <string.h>

static const struct cli_cmd commands[] = {
	{ "caps", cmd_caps, "report what this machine offers for snapshots" },
	{ "save", cmd_save, "snapshot a running process (--pid) into a file" },
	{ "restore", cmd_restore,
	  "put a snapshot back into a process (--pid)" },
	{ "demo", cmd_demo, "snapshot, check and restore a built-in guest" },
	/* Hidden: the workload process of the demo, tests and benchmark. */
	{ "guest", cmd_guest, NULL },
	{ "info", cmd_info, "describe a snapshot file" },
	{ "verify", cmd_verify, "check every byte of a snapshot file" },
	{ "export", cmd_export, "write a region's memory to a raw file" },
	{ "core", cmd_core, "write a core file of a running process (--pid)" },
	{ "flatten", cmd_flatten, "write a snapshot and its parents as one" },
	{ "watch", cmd_watch, "snapshot a process (--pid) every interval" },
	{ "gc", cmd_gc, "remove what killed saves left in a Ceph pool" },
	{ "bench", cmd_bench, "measure against fork() and stop-the-world" },
};

/*
 * Where a snapshot's file name goes, rados://POOL/NAME names one in Ceph;
 * the cluster is chosen as the rados command chooses it. These options
 * may come anywhere on the line, for every command.
 */
static int ceph_options(int *argc, char **argv)
{
	const char *conf = NULL, *id = NULL;
	uint64_t timeout = 0;
	int n = 1;

	for (int i = 1; i < *argc; i++) {
		const char *v = NULL;
		const char *const names[] = { "--ceph-conf", "--ceph-id",
					      "--ceph-timeout" };
		size_t k;

		for (k = 0; k < 3; k++) {
			const size_t len = strlen(names[k]);

			if (!strcmp(argv[i], names[k]) && i + 1 < *argc) {
				v = argv[++i];
				break;
			}
			if (!strncmp(argv[i], names[k], len) &&
			    argv[i][len] == '=') {
				v = argv[i] + len + 1;
				break;
			}
		}
		if (!v) {
			argv[n++] = argv[i];
			continue;
		}
		if (k == 0)
			conf = v;
		else if (k == 1)
			id = v;
		else if (cli_parse_uint(v, &timeout) || !timeout ||
			 timeout > 86400) {
			cli_error("--ceph-timeout '%s': a number of seconds",
				  v);
			return -1;
		}
	}
	argv[n] = NULL;
	*argc = n;
	if ((conf || id || timeout) &&
	    bgsnap_ceph_config(conf, id, (unsigned)timeout)) {
		cli_error("--ceph-conf, --ceph-id: this bgsnap was built "
			  "without librados");
		return -1;
	}
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: bgsnap [--version] [--help] <command> [<args>]\n\n"
		   "commands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (commands[i].summary)
			fprintf(f, "  %-10s %s\n", commands[i].name,
				commands[i].summary);
	fprintf(f, "\n'bgsnap <command> --help' describes a command.\n"
		   "\nWherever a snapshot FILE goes, rados://POOL/NAME names "
		   "one in a Ceph\npool. The cluster: --ceph-conf FILE "
		   "(else CEPH_CONF, /etc/ceph/ceph.conf),\n--ceph-id ID "
		   "(client.ID; else client.admin), --ceph-timeout SECONDS "
		   "(an\noperation without an answer fails; 30), anywhere "
		   "on the line.\n");
}

int main(int argc, char **argv)
{
	if (ceph_options(&argc, argv))
		return EXIT_USAGE;
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
		printf("bgsnap %s\n", bgsnap_version_string());
		return EXIT_OK;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
	    !strcmp(argv[1], "help")) {
		usage(stdout);
		return EXIT_OK;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].run(argc - 1, argv + 1);
	cli_error("unknown command '%s' (see 'bgsnap --help')", argv[1]);
	return EXIT_USAGE;
}
