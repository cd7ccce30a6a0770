/* End-to-end tests of the classify pipeline on the checked-in fixtures:
 * every stage runs for real (store, database, disassembly, similarity,
 * clustering, reports). */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mamori/base.h"
#include "mamori/classify.h"
#include "mamori/disasm.h"

static char tmpdir[256];
static char samples[512];

static void copy_file(const char *from, const char *to, const char *append)
{
	uint8_t *data;
	size_t len;
	assert_int_equal(mamori_file_read(&data, &len, from, MAMORI_MAX_SAMPLE_SIZE), MAMORI_OK);
	FILE *f = fopen(to, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	if (append)
		fputs(append, f);
	fclose(f);
	free(data);
}

static void write_text(const char *path, const char *text)
{
	assert_int_equal(mamori_file_write_atomic(path, text, strlen(text)), MAMORI_OK);
}

static int setup(void **state)
{
	(void)state;
	const char *fx = getenv("MAMORI_FIXTURES");
	if (!fx)
		return -1;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/mamori-test-classify-XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	snprintf(samples, sizeof(samples), "%s/in/sub", tmpdir);
	if (mamori_mkdir_p(samples) != MAMORI_OK)
		return -1;
	snprintf(samples, sizeof(samples), "%s/in", tmpdir);
	const char *names[] = { "pe32.exe", "pe64.exe", "pe64-stripped.exe", "pe32.dll", "pe64.dll",
				"elf64",    "elf32" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char from[1024], to[1024];
		snprintf(from, sizeof(from), "%s/%s", fx, names[i]);
		snprintf(to, sizeof(to), "%s/%s", samples, names[i]);
		copy_file(from, to, NULL);
	}
	char from[1024], to[1024];
	/* A byte-level variant: same code, an appended overlay, another hash. */
	snprintf(from, sizeof(from), "%s/pe64.exe", fx);
	snprintf(to, sizeof(to), "%s/sub/pe64-overlay.exe", samples);
	copy_file(from, to, "OVERLAY-DATA-0123456789");
	snprintf(to, sizeof(to), "%s/sub/garbage.bin", samples);
	write_text(to, "this is not an executable at all, just text\n");
	snprintf(to, sizeof(to), "%s/sub/empty.exe", samples);
	write_text(to, "");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "chmod -R u+w '%s' && rm -rf '%s'", tmpdir, tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static const mamori_classify_sample *find(const mamori_classify_result *r, const char *suffix)
{
	for (size_t i = 0; i < r->n_samples; i++) {
		size_t n = strlen(r->samples[i].path), m = strlen(suffix);
		if (n >= m && !strcmp(r->samples[i].path + n - m, suffix))
			return &r->samples[i];
	}
	fail_msg("no sample %s", suffix);
	return NULL;
}

static void run_once(mamori_classify_result **res, const char *out, mamori_candidates cand)
{
	char db[512], outdir[512];
	snprintf(db, sizeof(db), "%s/m.db", tmpdir);
	snprintf(outdir, sizeof(outdir), "%s/%s", tmpdir, out);
	mamori_classify_opts o;
	mamori_classify_opts_init(&o);
	o.db_path = db;
	o.out_dir = outdir;
	o.jobs = 2;
	o.candidates = cand;
	const char *paths[] = { samples };
	int rc = mamori_classify_run(res, paths, 1, &o);
	if (rc != MAMORI_OK)
		fail_msg("classify: %s: %s", mamori_strerror(rc), mamori_error_detail());
}

static void test_pipeline(void **state)
{
	(void)state;
	mamori_classify_result *r = NULL;
	run_once(&r, "out1", MAMORI_CANDIDATES_LSH);
	assert_int_equal(r->n_samples, 10);
	/* The two non-executables fail with their reason; the rest goes on. */
	assert_int_equal(r->n_failed, 2);
	const mamori_classify_sample *g = find(r, "garbage.bin");
	assert_false(g->ok);
	assert_int_equal(g->cluster, -1);
	assert_non_null(g->error);
	assert_int_equal(strlen(g->sha256), 64);
	assert_false(find(r, "empty.exe")->ok);
	/* The overlay variant has the same code, so the same family. */
	const mamori_classify_sample *a = find(r, "/pe64.exe"), *b = find(r, "pe64-overlay.exe");
	assert_true(a->ok && b->ok);
	assert_string_not_equal(a->sha256, b->sha256);
	assert_int_equal(a->cluster, b->cluster);
	assert_true(r->unique_sequences < 8);
	/* The 32-bit freestanding ELF shares nothing with the mingw programs. */
	assert_int_not_equal(find(r, "elf32")->cluster, a->cluster);
	size_t total = 0;
	for (size_t c = 0; c < r->n_clusters; c++) {
		assert_int_equal(r->clusters[c].id, (int64_t)c);
		if (c)
			assert_true(r->clusters[c].size <= r->clusters[c - 1].size);
		total += r->clusters[c].size;
	}
	assert_int_equal(total, 8);
	size_t first_exact = r->exact_pairs;
	mamori_classify_result_free(r);

	/* Reports exist and have the documented shape. */
	char path[1024];
	snprintf(path, sizeof(path), "%s/out1/clusters.json", tmpdir);
	json_error_t err;
	json_t *root = json_load_file(path, 0, &err);
	assert_non_null(root);
	assert_true(json_is_real(json_object_get(root, "threshold")));
	assert_string_equal(json_string_value(json_object_get(root, "linkage")), "average");
	json_t *ss = json_object_get(root, "samples");
	assert_int_equal(json_array_size(ss), 10);
	size_t i;
	json_t *s;
	json_array_foreach(ss, i, s)
	{
		const char *st = json_string_value(json_object_get(s, "status"));
		assert_non_null(json_object_get(s, "path"));
		if (!strcmp(st, "ok")) {
			assert_true(json_is_integer(json_object_get(s, "cluster")));
		} else {
			assert_string_equal(st, "error");
			assert_true(json_is_null(json_object_get(s, "cluster")));
			assert_true(json_is_string(json_object_get(s, "error")));
		}
	}
	json_t *cl = json_array_get(json_object_get(root, "clusters"), 0);
	assert_true(json_is_integer(json_object_get(cl, "id")));
	assert_true(json_is_array(json_object_get(cl, "members")));
	assert_int_equal(strlen(json_string_value(json_object_get(cl, "representative"))), 64);
	json_decref(root);
	struct stat st;
	snprintf(path, sizeof(path), "%s/out1/dendrogram.svg", tmpdir);
	assert_int_equal(stat(path, &st), 0);
	assert_true(st.st_size > 500);
	snprintf(path, sizeof(path), "%s/out1/tree.nwk", tmpdir);
	assert_int_equal(stat(path, &st), 0);
	snprintf(path, sizeof(path), "%s/out1/stats.json", tmpdir);
	assert_int_equal(stat(path, &st), 0);

	/* A re-run on the same database reuses fingerprints and similarities. */
	run_once(&r, "out2", MAMORI_CANDIDATES_LSH);
	assert_int_equal(r->exact_pairs, 0);
	assert_int_equal(r->cached_pairs, first_exact);
	assert_int_equal(r->n_failed, 2);
	int64_t c1 = find(r, "/pe64.exe")->cluster;
	mamori_classify_result_free(r);

	/* Exhaustive candidates agree with the LSH search here. */
	run_once(&r, "out3", MAMORI_CANDIDATES_ALL);
	assert_int_equal(find(r, "/pe64.exe")->cluster, c1);
	assert_int_equal(find(r, "pe64-overlay.exe")->cluster, c1);
	mamori_classify_result_free(r);
}

static void test_bad_options(void **state)
{
	(void)state;
	mamori_classify_result *r = NULL;
	mamori_classify_opts o;
	mamori_classify_opts_init(&o);
	char db[512], outdir[512];
	snprintf(db, sizeof(db), "%s/bad.db", tmpdir);
	snprintf(outdir, sizeof(outdir), "%s/bad", tmpdir);
	o.db_path = db;
	o.out_dir = outdir;
	const char *paths[] = { samples };
	o.threshold = 0;
	assert_int_equal(mamori_classify_run(&r, paths, 1, &o), MAMORI_EINVAL);
	assert_null(r);
	o.threshold = 0.5;
	o.floor = 0.9;
	assert_int_equal(mamori_classify_run(&r, paths, 1, &o), MAMORI_EINVAL);
	o.floor = -1;
	const char *missing[] = { "/nonexistent/mamori/path" };
	assert_int_equal(mamori_classify_run(&r, missing, 1, &o), MAMORI_EINVAL);
	assert_non_null(strstr(mamori_error_detail(), "/nonexistent/mamori/path"));
	o.max_files = 3;
	assert_int_equal(mamori_classify_run(&r, paths, 1, &o), MAMORI_ELIMIT);
}

static void test_libcode(void **state)
{
	(void)state;
	mamori_libcode *lc = NULL;
	assert_int_equal(mamori_libcode_new(&lc, 1), MAMORI_EINVAL);
	assert_int_equal(mamori_libcode_new(&lc, 4), MAMORI_OK);
	const uint32_t lib[] = { 10, 11, 12, 13, 14 };
	assert_int_equal(mamori_libcode_add_tokens(lc, lib, 5), MAMORI_OK);
	assert_int_equal(mamori_libcode_size(lc), 2);
	/* 10 11 12 13 and 11 12 13 14 are library code; the rest stays, in order. */
	uint32_t seq[] = { 1, 2, 10, 11, 12, 13, 14, 3, 11, 12, 13, 4, 10, 11, 12, 13 };
	size_t n = mamori_libcode_filter(lc, seq, 16);
	const uint32_t want[] = { 1, 2, 3, 11, 12, 13, 4 };
	assert_int_equal(n, 7);
	assert_memory_equal(seq, want, sizeof(want));
	mamori_libcode_free(lc);

	/* The built-in references are real runtimes: a mingw program loses its
	 * CRT start-up code but keeps its own. */
	size_t count = 0;
	assert_int_equal(mamori_libcode_new(&lc, MAMORI_LIBCODE_K), MAMORI_OK);
	assert_int_equal(mamori_libcode_add_builtin(lc, &count), MAMORI_OK);
	assert_int_equal(count, 5);
	assert_true(mamori_libcode_size(lc) > 1000);
	mamori_libcode_free(lc);
}

static void test_views(void **state)
{
	(void)state;
	/* 64-bit and 32-bit forms of one operation meet in the arch-neutral view. */
	uint32_t t64, t32, tabs, trip;
	uint8_t len;
	const uint8_t add64[] = { 0x48, 0x01, 0xd8 };			 /* add rax, rbx */
	const uint8_t add32[] = { 0x01, 0xd8 };				 /* add eax, ebx */
	const uint8_t movrip[] = { 0x8b, 0x05, 0x10, 0x00, 0x00, 0x00 }; /* mov eax, [rip+0x10] */
	const uint8_t movabs[] = { 0x8b, 0x05, 0x10, 0x00, 0x40, 0x00 }; /* mov eax, [0x400010] */
	assert_int_equal(mamori_token_of_bytes(&t64, &len, add64, sizeof(add64), true), MAMORI_OK);
	assert_int_equal(mamori_token_of_bytes(&t32, &len, add32, sizeof(add32), false), MAMORI_OK);
	assert_int_not_equal(t64, t32);
	assert_int_equal(mamori_token_arch_neutral(t64), mamori_token_arch_neutral(t32));
	assert_int_equal(mamori_token_arch_neutral(mamori_token_arch_neutral(t64)),
			 mamori_token_arch_neutral(t64));
	assert_int_equal(mamori_token_of_bytes(&trip, &len, movrip, sizeof(movrip), true), MAMORI_OK);
	assert_int_equal(mamori_token_of_bytes(&tabs, &len, movabs, sizeof(movabs), false), MAMORI_OK);
	assert_int_not_equal(trip, tabs);
	assert_int_equal(mamori_token_arch_neutral(trip), mamori_token_arch_neutral(tabs));
	assert_true(mamori_token_is_data_move(trip));
	assert_false(mamori_token_is_data_move(t64));
	mamori_view v;
	assert_int_equal(mamori_view_parse(&v, "arch-neutral"), MAMORI_OK);
	assert_int_equal(v, MAMORI_VIEW_ARCH_NEUTRAL);
	assert_string_equal(mamori_view_name(MAMORI_VIEW_SKELETON), "skeleton");
	assert_int_equal(mamori_view_parse(&v, "fuzzy"), MAMORI_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_libcode),
		cmocka_unit_test(test_views),
		cmocka_unit_test(test_pipeline),
		cmocka_unit_test(test_bad_options),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
