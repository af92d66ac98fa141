/* SPDX-License-Identifier: MIT */
/* bgsnap caps: what this machine offers, and how to get what is missing. */
#include "cli.h"

#include <bgsnap.h>
#include <string.h>

static const char caps_usage[] =
	"usage: bgsnap caps [--json]\n"
	"\n"
	"Report what this kernel and user can do for a snapshot, one line per\n"
	"capability, with how to get what is missing. Exit status 0 when "
	"every\n"
	"required capability is present, 4 otherwise.\n";

static void print_text(const struct bgsnap_capability *caps, int n)
{
	for (int i = 0; i < n; i++)
		printf("%-4s %-19s %s\n",
		       caps[i].ok	  ? "ok"
		       : caps[i].required ? "MISS"
					  : "--",
		       caps[i].name, caps[i].detail);
}

static void print_json(const struct bgsnap_capability *caps, int n, bool ready)
{
	printf("{\"version\":");
	cli_json_string(stdout, bgsnap_version_string());
	printf(",\"ready\":%s,\"capabilities\":[", ready ? "true" : "false");
	for (int i = 0; i < n; i++) {
		printf("%s{\"name\":", i ? "," : "");
		cli_json_string(stdout, caps[i].name);
		printf(",\"ok\":%s,\"required\":%s,\"detail\":",
		       caps[i].ok ? "true" : "false",
		       caps[i].required ? "true" : "false");
		cli_json_string(stdout, caps[i].detail);
		printf("}");
	}
	printf("]}\n");
}

int cmd_caps(int argc, char **argv)
{
	struct bgsnap_capability caps[BGSNAP_MAX_CAPABILITIES];
	bool json = false, ready = true;
	int n;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json")) {
			json = true;
		} else if (!strcmp(argv[i], "-h") ||
			   !strcmp(argv[i], "--help")) {
			fputs(caps_usage, stdout);
			return EXIT_OK;
		} else {
			cli_error("caps: unknown argument '%s'", argv[i]);
			fputs(caps_usage, stderr);
			return EXIT_USAGE;
		}
	}
	n = bgsnap_probe(caps, BGSNAP_MAX_CAPABILITIES);
	if (n < 0) {
		cli_error("caps: %s", bgsnap_strerror(n));
		return EXIT_FAILED;
	}
	for (int i = 0; i < n; i++)
		if (caps[i].required && !caps[i].ok)
			ready = false;
	if (json)
		print_json(caps, n, ready);
	else
		print_text(caps, n);
	return ready ? EXIT_OK : EXIT_NOCAP;
}
