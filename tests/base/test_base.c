/* Unit tests of the base library: errors, bounded cursor, growth buffer,
 * hashing, files, the sample store and the database. */
#include <pthread.h>
#include <setjmp.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mamori/base.h"

static char tmpdir[256];

static int make_tmpdir(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/mamori-test-base-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_tmpdir(void **state)
{
	(void)state;
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "chmod -R u+w '%s' && rm -rf '%s'", tmpdir, tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_errors(void **state)
{
	(void)state;
	const int codes[] = { MAMORI_OK,     MAMORI_ENOMEM,    MAMORI_EIO,	    MAMORI_EINVAL,
			      MAMORI_ETRUNC, MAMORI_EFORMAT,   MAMORI_EUNSUPPORTED, MAMORI_ELIMIT,
			      MAMORI_EDB,    MAMORI_ENOTFOUND, MAMORI_EBELOW };
	size_t n = sizeof(codes) / sizeof(codes[0]);
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n; j++)
			assert_string_not_equal(mamori_strerror(codes[i]), mamori_strerror(codes[j]));
	assert_string_equal(mamori_strerror(-999), "unknown error");
	assert_int_equal(mamori_fail(MAMORI_EFORMAT, "section %d overlaps", 3), MAMORI_EFORMAT);
	assert_string_equal(mamori_error_detail(), "section 3 overlaps");
	mamori_error_clear();
	assert_string_equal(mamori_error_detail(), "");
	assert_int_equal(mamori_exit_code(MAMORI_EFORMAT), MAMORI_EXIT_BADINPUT);
	assert_int_equal(mamori_exit_code(MAMORI_EINVAL), MAMORI_EXIT_USAGE);
	assert_int_equal(mamori_exit_code(MAMORI_ELIMIT), MAMORI_EXIT_LIMIT);
	assert_int_equal(mamori_exit_code(MAMORI_EIO), MAMORI_EXIT_FAILURE);
}

static void *set_detail_thread(void *arg)
{
	(void)arg;
	mamori_fail(MAMORI_EIO, "other thread");
	return NULL;
}

static void test_error_detail_is_per_thread(void **state)
{
	(void)state;
	mamori_fail(MAMORI_EINVAL, "main thread");
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, set_detail_thread, NULL), 0);
	pthread_join(t, NULL);
	assert_string_equal(mamori_error_detail(), "main thread");
}

static void test_cursor(void **state)
{
	(void)state;
	const uint8_t buf[] = { 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 'h', 'i', 0, 'x' };
	mamori_cursor c;
	uint8_t u8;
	uint16_t u16;
	uint32_t u32;
	uint64_t u64;
	mamori_cursor_init(&c, buf, sizeof(buf));
	assert_int_equal(mamori_read_u16le(&c, &u16), MAMORI_OK);
	assert_int_equal(u16, 0x0201);
	assert_int_equal(mamori_read_u32be(&c, &u32), MAMORI_OK);
	assert_int_equal(u32, 0x03040506);
	assert_int_equal(mamori_cursor_left(&c), 7);
	/* A read that does not fit fails and leaves the cursor where it was. */
	assert_int_equal(mamori_read_u64le(&c, &u64), MAMORI_ETRUNC);
	assert_int_equal(c.pos, 6);
	assert_int_equal(mamori_read_u8(&c, &u8), MAMORI_OK);
	assert_int_equal(u8, 0x07);
	assert_int_equal(mamori_cursor_seek(&c, sizeof(buf) + 1), MAMORI_ETRUNC);
	assert_int_equal(mamori_cursor_seek(&c, sizeof(buf)), MAMORI_OK);
	assert_int_equal(mamori_read_u8(&c, &u8), MAMORI_ETRUNC);
	assert_int_equal(mamori_cursor_skip(&c, 1), MAMORI_ETRUNC);

	mamori_cursor sub;
	assert_int_equal(mamori_cursor_sub(&sub, &c, 8, 4), MAMORI_OK);
	assert_int_equal(sub.size, 4);
	assert_int_equal(mamori_read_u32le(&sub, &u32), MAMORI_OK);
	assert_int_equal(u32, 0x00696809);
	assert_int_equal(mamori_cursor_sub(&sub, &c, 10, 4), MAMORI_ETRUNC);
	assert_int_equal(mamori_cursor_sub(&sub, &c, UINT64_MAX, 2), MAMORI_ETRUNC);

	char *s = NULL;
	assert_int_equal(mamori_read_cstr_at(&s, &c, 9, 16), MAMORI_OK);
	assert_string_equal(s, "hi");
	free(s);
	assert_int_equal(mamori_read_cstr_at(&s, &c, 9, 1), MAMORI_ELIMIT);
	assert_null(s);
	assert_int_equal(mamori_read_cstr_at(&s, &c, 12, 16), MAMORI_ETRUNC);
	assert_int_equal(mamori_read_cstr_at(&s, &c, 13, 16), MAMORI_ETRUNC);
	assert_true(mamori_span_fits(10, 0, 10));
	assert_false(mamori_span_fits(10, 1, 10));
	assert_false(mamori_span_fits(10, 5, UINT64_MAX));
}

static void test_vec_limit(void **state)
{
	(void)state;
	mamori_vec v;
	mamori_vec_init(&v, sizeof(uint32_t), 100);
	for (uint32_t i = 0; i < 100; i++)
		assert_int_equal(mamori_vec_push(&v, &i), MAMORI_OK);
	uint32_t x = 7;
	assert_int_equal(mamori_vec_push(&v, &x), MAMORI_ELIMIT);
	assert_int_equal(v.count, 100);
	assert_int_equal(MAMORI_VEC_AT(&v, uint32_t, 99), 99);
	void *slot;
	assert_int_equal(mamori_vec_grow(&v, SIZE_MAX, &slot), MAMORI_ELIMIT);
	size_t n;
	uint32_t *data = mamori_vec_steal(&v, &n);
	assert_int_equal(n, 100);
	assert_int_equal(data[42], 42);
	free(data);
	mamori_vec_free(&v);
	mamori_vec_free(NULL);
}

static void test_hashes(void **state)
{
	(void)state;
	char sha[65], md5[33];
	mamori_sha256_hex(sha, "abc", 3);
	assert_string_equal(sha, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	mamori_md5_hex(md5, "abc", 3);
	assert_string_equal(md5, "900150983cd24fb0d6963f7d28e17f72");
	assert_int_not_equal(mamori_hash64("a", 1, 0), mamori_hash64("b", 1, 0));
	assert_int_not_equal(mamori_hash64("a", 1, 0), mamori_hash64("a", 1, 1));
}

static void test_files(void **state)
{
	(void)state;
	char path[512];
	uint8_t *data;
	size_t len;
	snprintf(path, sizeof(path), "%s/f.bin", tmpdir);
	assert_int_equal(mamori_file_write_atomic(path, "hello", 5), MAMORI_OK);
	assert_int_equal(mamori_file_read(&data, &len, path, 5), MAMORI_OK);
	assert_int_equal(len, 5);
	assert_memory_equal(data, "hello", 5);
	assert_int_equal(data[5], 0);
	free(data);
	assert_int_equal(mamori_file_read(&data, &len, path, 4), MAMORI_ELIMIT);
	assert_null(data);
	assert_int_equal(mamori_file_read(&data, &len, tmpdir, 100), MAMORI_EIO);
	snprintf(path, sizeof(path), "%s/missing", tmpdir);
	assert_int_equal(mamori_file_read(&data, &len, path, 100), MAMORI_EIO);
	assert_non_null(strstr(mamori_error_detail(), "missing"));
	snprintf(path, sizeof(path), "%s/a/b/c", tmpdir);
	assert_int_equal(mamori_mkdir_p(path), MAMORI_OK);
	assert_int_equal(mamori_mkdir_p(path), MAMORI_OK);
}

static void test_store(void **state)
{
	(void)state;
	char dir[512], sha[65], sha2[65], path[1024];
	struct stat st;
	snprintf(dir, sizeof(dir), "%s/store", tmpdir);
	mamori_store *s = NULL;
	assert_int_equal(mamori_store_open(&s, dir), MAMORI_OK);
	assert_int_equal(mamori_store_put(s, "abc", 3, sha), MAMORI_OK);
	assert_string_equal(sha, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	assert_int_equal(mamori_store_put(s, "abc", 3, sha2), MAMORI_OK);
	assert_string_equal(sha, sha2);
	assert_int_equal(mamori_store_path(s, sha, path, sizeof(path)), MAMORI_OK);
	assert_non_null(strstr(path, "/ba/ba7816bf"));
	assert_int_equal(stat(path, &st), 0);
	/* Read-only and never executable. */
	assert_int_equal(st.st_mode & 0777, 0444);
	assert_int_equal(mamori_store_path(s,
					   "00000000000000000000000000000000000000000000000000000000000000ff",
					   path, sizeof(path)),
			 MAMORI_ENOTFOUND);
	assert_int_equal(mamori_store_path(s, "../../etc/passwd", path, sizeof(path)), MAMORI_EINVAL);
	mamori_store_free(s);
	mamori_store_free(NULL);
}

static void test_db(void **state)
{
	(void)state;
	char path[512];
	snprintf(path, sizeof(path), "%s/t.db", tmpdir);
	mamori_db *db = NULL;
	assert_int_equal(mamori_db_open(&db, path), MAMORI_OK);
	assert_int_equal(mamori_db_schema_version(db), 2);
	const char *sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
	assert_int_equal(mamori_db_sample_add(db, sha, 3, "/x/abc"), MAMORI_OK);
	assert_int_equal(mamori_db_sample_add(db, sha, 3, "/x/abc"), MAMORI_OK);

	mamori_fingerprint fp, got;
	memset(&fp, 0, sizeof(fp));
	snprintf(fp.sha256, sizeof(fp.sha256), "%s", sha);
	snprintf(fp.analyzer, sizeof(fp.analyzer), "test-v1");
	uint32_t toks[] = { 1, 0xdeadbeef, 3, 0x80000000 };
	fp.ok = true;
	fp.tokens = toks;
	fp.n_tokens = 4;
	fp.format = (char *)"pe32";
	snprintf(fp.seq_hash, sizeof(fp.seq_hash), "%064d", 7);
	assert_int_equal(mamori_db_fingerprint_get(db, sha, "test-v1", &got), MAMORI_ENOTFOUND);
	assert_int_equal(mamori_db_fingerprint_put(db, &fp), MAMORI_OK);
	assert_int_equal(mamori_db_fingerprint_get(db, sha, "test-v1", &got), MAMORI_OK);
	assert_true(got.ok);
	assert_int_equal(got.n_tokens, 4);
	assert_memory_equal(got.tokens, toks, sizeof(toks));
	assert_string_equal(got.format, "pe32");
	assert_string_equal(got.seq_hash, fp.seq_hash);
	mamori_fingerprint_clear(&got);
	/* Another analyzer version does not see it: a re-analysis is due. */
	assert_int_equal(mamori_db_fingerprint_get(db, sha, "test-v2", &got), MAMORI_ENOTFOUND);

	/* Similarity cache: symmetric, and a cut-off value only answers for
	 * floors at or above the one it was cut at. */
	double s;
	bool below;
	assert_int_equal(mamori_db_similarity_put(db, "bbb", "aaa", 0.3, 0.81, false), MAMORI_OK);
	assert_int_equal(mamori_db_similarity_get(db, "aaa", "bbb", 0.3, &s, &below), MAMORI_OK);
	assert_true(s > 0.80 && s < 0.82);
	assert_false(below);
	assert_int_equal(mamori_db_similarity_get(db, "aaa", "bbb", 0.9, &s, &below), MAMORI_OK);
	assert_true(below);
	assert_int_equal(mamori_db_similarity_put(db, "ccc", "aaa", 0.3, 0, true), MAMORI_OK);
	assert_int_equal(mamori_db_similarity_get(db, "aaa", "ccc", 0.4, &s, &below), MAMORI_OK);
	assert_true(below);
	assert_int_equal(mamori_db_similarity_get(db, "aaa", "ccc", 0.1, &s, &below), MAMORI_ENOTFOUND);

	const char *shas[] = { sha, "00" };
	int64_t clusters[] = { 0, -1 }, run_id;
	assert_int_equal(
		mamori_db_cluster_run_save(db, &run_id, 0.5, "average", "test-v1", 2, shas, clusters),
		MAMORI_OK);
	assert_true(run_id > 0);
	mamori_db_free(db);

	/* Reopening keeps the data and the schema version. */
	assert_int_equal(mamori_db_open(&db, path), MAMORI_OK);
	assert_int_equal(mamori_db_schema_version(db), 2);
	assert_int_equal(mamori_db_fingerprint_get(db, sha, "test-v1", &got), MAMORI_OK);
	mamori_fingerprint_clear(&got);
	mamori_db_free(db);

	/* A database from a newer mamori is refused, not damaged. */
	sqlite3 *h;
	assert_int_equal(sqlite3_open(path, &h), SQLITE_OK);
	assert_int_equal(sqlite3_exec(h, "PRAGMA user_version=99", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(h);
	assert_int_equal(mamori_db_open(&db, path), MAMORI_EDB);
	assert_non_null(strstr(mamori_error_detail(), "newer"));
	mamori_db_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_errors), cmocka_unit_test(test_error_detail_is_per_thread),
		cmocka_unit_test(test_cursor), cmocka_unit_test(test_vec_limit),
		cmocka_unit_test(test_hashes), cmocka_unit_test(test_files),
		cmocka_unit_test(test_store),  cmocka_unit_test(test_db),
	};
	return cmocka_run_group_tests(tests, make_tmpdir, remove_tmpdir);
}
