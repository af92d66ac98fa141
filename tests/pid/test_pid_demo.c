/* SPDX-License-Identifier: MIT */
/*
 * 'bgsnap demo --json' end to end (issue 13, item 3): the report's figures
 * as one JSON document on stdout with the documented keys in their order,
 * values that agree with the run (every step passed, the memory equal to
 * the snapshot after the restore), and when a step fails, ok false, the
 * step named and the steps not passed null. python3 reads the JSON; the
 * test fails without it (a CI machine has it: lib.sh needs it too).
 * Needs root; 77 only where the kernel lacks a feature (pt_init).
 */
#include "pid_util.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define RUN_MS 120000

/* The keys, in order; checked by the script below. */
static const char check_py[] =
	"import json, sys\n"
	"d = json.load(open(sys.argv[1]))\n"
	"ok = sys.argv[2] == 'ok'\n"
	"steps = ['guest', 'save', 'verify', 'invariant', 'restore',\n"
	"         'run_on']\n"
	"assert list(d) == ['ok', 'failed_step'] + steps + ['file'], list(d)\n"
	"assert d['ok'] is ok\n"
	"keys = {\n"
	"  'guest': ['pid', 'size', 'kind', 'writers', 'rate',\n"
	"            'transfers_per_s'],\n"
	"  'save': ['regions', 'bytes_saved', 'blackout_ms', 'elapsed_s',\n"
	"           'throughput_bytes_per_s', 'pages_total', 'pages_by_scan',\n"
	"           'pages_by_fault', 'pages_zero', 'pages_unpopulated',\n"
	"           'bytes_written', 'raw_bytes', 'compression_ratio',\n"
	"           'faults', 'stall_us_p50', 'stall_us_p99', 'stall_us_max',\n"
	"           'stall_wait_us_p50', 'stall_wait_us_p99',\n"
	"           'peak_buffer_bytes', 'cpu_copy_s', 'cpu_compress_s',\n"
	"           'cpu_checksum_s', 'cpu_unprotect_s', 'cpu_copier_s',\n"
	"           'cpu_fault_thread_s', 'cpu_workers_s',\n"
	"           'writer_transfers_per_s', 'writer_stop_max_ns'],\n"
	"  'verify': ['elapsed_ns'],\n"
	"  'invariant': ['balanced'],\n"
	"  'restore': ['pages_changed', 'bytes_changed',\n"
	"              'pages_differing_after', 'elapsed_ns'],\n"
	"  'run_on': ['checks', 'transfers'],\n"
	"}\n"
	"if not ok:\n"
	"    assert d['failed_step'] == 'guest', d['failed_step']\n"
	"    assert all(d[s] is None for s in steps), d\n"
	"    assert d['file'] is None\n"
	"    sys.exit(0)\n"
	"assert d['failed_step'] is None and d['file'] is None\n"
	"for s in steps:\n"
	"    assert list(d[s]) == keys[s], (s, list(d[s]))\n"
	"g, sv, r = d['guest'], d['save'], d['restore']\n"
	"assert g['pid'] > 0 and g['size'] == 16 << 20 and g['kind'] == '4k'\n"
	"assert g['writers'] == 2 and g['transfers_per_s'] > 0\n"
	"assert list(sv['regions']) == ['saved', 'copied', 'skipped']\n"
	"assert sv['regions']['saved'] > 0 and sv['bytes_saved'] >= g['size']\n"
	"assert sv['pages_total'] * 4096 >= g['size'] and sv['blackout_ms'] > "
	"0\n"
	"assert sv['bytes_written'] > 0 and d['verify']['elapsed_ns'] > 0\n"
	"assert d['invariant']['balanced'] is True\n"
	"assert r['pages_differing_after'] == 0 and r['elapsed_ns'] > 0\n"
	"assert r['bytes_changed'] == r['pages_changed'] * 4096\n"
	"assert d['run_on']['checks'] == 3 and d['run_on']['transfers'] > 0\n";

/* python3 on @json: exits 0 when it has every key, in order, and sane
 * values (@ok: of a run that passed). */
static void check_json(const char *json, bool ok)
{
	char script[256], doc[256], cmd[1024];
	FILE *f;
	int status;

	snprintf(script, sizeof(script), "%s/check.py", pt_dir());
	snprintf(doc, sizeof(doc), "%s/demo.json", pt_dir());
	f = fopen(script, "w");
	assert_non_null(f);
	fputs(check_py, f);
	fclose(f);
	f = fopen(doc, "w");
	assert_non_null(f);
	fputs(json, f);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "python3 %s %s %s", script, doc,
		 ok ? "ok" : "failed");
	status = system(cmd);
	if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status))
		fail_msg("demo --json: not the documented document: %s", json);
	unlink(script);
	unlink(doc);
}

static void test_demo_json(void **state)
{
	struct pt_run r;

	(void)state;
	pt_run(&r, RUN_MS, -1, "demo", "--size", "16M", "--json", "--dir",
	       pt_dir(), NULL);
	fprintf(stderr, "# %s%s", r.out, r.err);
	if (r.code)
		fail_msg("demo --json: exit %d: %s", r.code, r.err);
	/* One document, one line, nothing else on stdout. */
	assert_int_equal(r.out[0], '{');
	assert_non_null(strchr(r.out, '\n'));
	assert_int_equal(strchr(r.out, '\n')[1], '\0');
	check_json(r.out, true);
	pt_run_free(&r);
	tu_assert_no_file_like(pt_dir(), "bgsnap-demo.");
}

/* A step that fails: still one document, saying which. */
static void test_demo_json_failed(void **state)
{
	char dir[300];
	struct pt_run r;

	(void)state;
	snprintf(dir, sizeof(dir), "%s/no/such/dir", pt_dir());
	pt_run(&r, RUN_MS, -1, "demo", "--size", "16M", "--json", "--dir", dir,
	       NULL);
	fprintf(stderr, "# %s%s", r.out, r.err);
	assert_int_equal(r.code, 1);
	pt_one_error_line(r.err);
	check_json(r.out, false);
	pt_run_free(&r);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_demo_json),
		cmocka_unit_test(test_demo_json_failed),
	};

	pt_init(argc, argv);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
