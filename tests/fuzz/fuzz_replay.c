/* SPDX-License-Identifier: MIT */
/*
 * Replays a fuzz target's corpus without libFuzzer: every file in every
 * directory (or file) named on the command line goes through
 * LLVMFuzzerTestOneInput once, in name order. A crash or a sanitizer
 * report fails the test; so does finding no input at all.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rbe");
	uint8_t *buf = NULL;
	long len;

	if (!f || fseek(f, 0, SEEK_END) || (len = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET))
		goto out_fail;
	buf = malloc((size_t)len + 1);
	if (!buf || fread(buf, 1, (size_t)len, f) != (size_t)len)
		goto out_fail;
	fclose(f);
	LLVMFuzzerTestOneInput(buf, (size_t)len);
	free(buf);
	return 1;
out_fail:
	fprintf(stderr, "fuzz_replay: cannot read %s\n", path);
	free(buf);
	if (f)
		fclose(f);
	exit(1);
}

static int run_dir(const char *dir)
{
	struct dirent **names;
	const int n = scandir(dir, &names, NULL, alphasort);
	char path[4096];
	int runs = 0;

	if (n < 0) {
		perror(dir);
		exit(1);
	}
	for (int i = 0; i < n; i++) {
		if (names[i]->d_name[0] != '.') {
			snprintf(path, sizeof(path), "%s/%s", dir,
				 names[i]->d_name);
			runs += run_file(path);
		}
		free(names[i]);
	}
	free(names);
	return runs;
}

int main(int argc, char **argv)
{
	int runs = 0;

	for (int i = 1; i < argc; i++) {
		struct stat st;

		if (stat(argv[i], &st)) {
			perror(argv[i]);
			return 1;
		}
		runs += S_ISDIR(st.st_mode) ? run_dir(argv[i])
					    : run_file(argv[i]);
	}
	printf("fuzz_replay: %d inputs, no crash\n", runs);
	return runs ? 0 : 1;
}
