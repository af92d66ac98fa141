/* SPDX-License-Identifier: MIT */
/* Uses the installed header and library: version, errors, snapshot files. */
#include <bgsnap.h>

#include <errno.h>
#include <stdio.h>

int main(void)
{
	struct bgsnap_file *f;
	char err[BGSNAP_FILE_ERROR_MAX];
	const int ret =
		bgsnap_file_open(&f, "/nonexistent/x.bgs", err, sizeof(err));

	if (bgsnap_version() != BGSNAP_VERSION_NUMBER) {
		fprintf(stderr, "header %d, library %d\n",
			BGSNAP_VERSION_NUMBER, bgsnap_version());
		return 1;
	}
	if (ret != -ENOENT || f) {
		fprintf(stderr, "bgsnap_file_open: %d (%s)\n", ret, err);
		return 1;
	}
	printf("bgsnap %s: %s\n", bgsnap_version_string(),
	       bgsnap_strerror(BGSNAP_ECHECKSUM));
	return 0;
}
