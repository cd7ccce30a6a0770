/*
 * Tests of the event log (src/base/event.c): the shared header in order,
 * the same events in the JSON-lines file and in the database, refusals
 * (header fields in the body, oversized events: nothing written), several
 * threads at once (every event once, seq 1..N), and the database migration
 * that adds the events table to a schema-1 database without losing data.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <sqlite3.h>

#include "mamori/base.h"

static char tmpdir[256];

static int make_tmpdir(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/mamori-test-event-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_tmpdir(void **state)
{
	(void)state;
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

/* The file's lines, parsed. */
static json_t *read_lines(const char *path)
{
	json_t *arr = json_array();
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	char *line = NULL;
	size_t cap = 0;
	while (getline(&line, &cap, f) > 0) {
		json_error_t err;
		json_t *ev = json_loads(line, 0, &err);
		assert_non_null(ev);
		json_array_append_new(arr, ev);
	}
	free(line);
	fclose(f);
	return arr;
}

static int collect(void *ctx, const char *json)
{
	json_array_append_new((json_t *)ctx, json_loads(json, 0, NULL));
	return 0;
}

static void test_header_file_and_db(void **state)
{
	(void)state;
	char db_path[512], file[512];
	snprintf(db_path, sizeof(db_path), "%s/a.db", tmpdir);
	snprintf(file, sizeof(file), "%s/a.jsonl", tmpdir);
	mamori_db *db = NULL;
	assert_int_equal(mamori_db_open(&db, db_path), MAMORI_OK);
	mamori_eventlog *log = NULL;
	assert_int_equal(mamori_eventlog_open(&log, NULL, NULL, "contain", "s1"), MAMORI_EINVAL);
	assert_int_equal(mamori_eventlog_open(&log, db, file, "", "s1"), MAMORI_EINVAL);
	assert_int_equal(mamori_eventlog_open(&log, db, "/nonexistent-dir/x.jsonl", "contain", "s1"),
			 MAMORI_EIO);
	assert_int_equal(mamori_eventlog_open(&log, db, file, "contain", "session-1"), MAMORI_OK);

	json_t *body = json_pack("{s:s, s:i}", "proto", "irc", "dport", 6667);
	assert_int_equal(mamori_event_emit(log, "flow_start", body), MAMORI_OK);
	json_decref(body);
	assert_int_equal(mamori_event_emit(log, "flow_end", NULL), MAMORI_OK);
	/* A body may not forge the header. */
	body = json_pack("{s:s}", "sensor", "forged");
	assert_int_equal(mamori_event_emit(log, "x", body), MAMORI_EINVAL);
	json_decref(body);
	/* Too large: refused whole, nothing written, seq unchanged. */
	char *big = malloc(MAMORI_EVENT_MAX_BYTES + 10);
	memset(big, 'a', MAMORI_EVENT_MAX_BYTES + 9);
	big[MAMORI_EVENT_MAX_BYTES + 9] = '\0';
	body = json_pack("{s:s}", "blob", big);
	assert_int_equal(mamori_event_emit(log, "big", body), MAMORI_ELIMIT);
	json_decref(body);
	free(big);
	assert_int_equal(mamori_eventlog_count(log), 2);
	mamori_eventlog_free(log);

	json_t *lines = read_lines(file);
	assert_int_equal(json_array_size(lines), 2);
	json_t *first = json_array_get(lines, 0);
	/* The header comes first, in order. */
	const char *want[] = { "time", "sensor", "subject", "type", "seq", "proto", "dport" };
	void *it = json_object_iter(first);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++, it = json_object_iter_next(first, it)) {
		assert_non_null(it);
		assert_string_equal(json_object_iter_key(it), want[i]);
	}
	assert_string_equal(json_string_value(json_object_get(first, "sensor")), "contain");
	assert_string_equal(json_string_value(json_object_get(first, "subject")), "session-1");
	assert_string_equal(json_string_value(json_object_get(first, "type")), "flow_start");
	assert_int_equal(json_integer_value(json_object_get(first, "seq")), 1);
	assert_int_equal(json_integer_value(json_object_get(first, "dport")), 6667);
	const char *when = json_string_value(json_object_get(first, "time"));
	assert_int_equal(strlen(when), strlen("2026-11-26T10:20:00.123456Z"));
	assert_int_equal(when[strlen(when) - 1], 'Z');

	/* The database holds the same events, filterable by type. */
	json_t *rows = json_array();
	assert_int_equal(mamori_db_events_each(db, "session-1", NULL, collect, rows), MAMORI_OK);
	assert_int_equal(json_array_size(rows), 2);
	assert_true(json_equal(json_array_get(rows, 0), first));
	json_decref(rows);
	rows = json_array();
	assert_int_equal(mamori_db_events_each(db, "session-1", "flow_end", collect, rows), MAMORI_OK);
	assert_int_equal(json_array_size(rows), 1);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(rows, 0), "seq")), 2);
	json_decref(rows);
	rows = json_array();
	assert_int_equal(mamori_db_events_each(db, "other", NULL, collect, rows), MAMORI_OK);
	assert_int_equal(json_array_size(rows), 0);
	json_decref(rows);
	json_decref(lines);
	mamori_db_free(db);
}

enum { THREADS = 4, PER_THREAD = 250 };

static void *emit_many(void *arg)
{
	mamori_eventlog *log = arg;
	for (int i = 0; i < PER_THREAD; i++) {
		json_t *body = json_pack("{s:i}", "i", i);
		if (mamori_event_emit(log, "tick", body) != MAMORI_OK)
			abort();
		json_decref(body);
	}
	return NULL;
}

static void test_threads(void **state)
{
	(void)state;
	char file[512];
	snprintf(file, sizeof(file), "%s/t.jsonl", tmpdir);
	mamori_eventlog *log = NULL;
	assert_int_equal(mamori_eventlog_open(&log, NULL, file, "test", "threads"), MAMORI_OK);
	pthread_t th[THREADS];
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, emit_many, log), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	mamori_eventlog_free(log);
	json_t *lines = read_lines(file);
	assert_int_equal(json_array_size(lines), THREADS * PER_THREAD);
	/* seq is 1..N in file order: lines are whole and in emission order. */
	for (size_t i = 0; i < json_array_size(lines); i++)
		assert_int_equal(json_integer_value(json_object_get(json_array_get(lines, i), "seq")), i + 1);
	json_decref(lines);
}

static void test_migration_from_schema_1(void **state)
{
	(void)state;
	char path[512];
	snprintf(path, sizeof(path), "%s/old.db", tmpdir);
	mamori_db *db = NULL;
	assert_int_equal(mamori_db_open(&db, path), MAMORI_OK);
	const char *sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
	assert_int_equal(mamori_db_sample_add(db, sha, 3, "/x/abc"), MAMORI_OK);
	mamori_db_free(db);
	/* Make it what a schema-1 mamori left behind. */
	sqlite3 *h;
	assert_int_equal(sqlite3_open(path, &h), SQLITE_OK);
	assert_int_equal(sqlite3_exec(h, "DROP TABLE events; PRAGMA user_version=1", NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(h);
	assert_int_equal(mamori_db_open(&db, path), MAMORI_OK);
	assert_int_equal(mamori_db_schema_version(db), 2);
	assert_int_equal(mamori_db_event_put(db, "t", "s", "sub", "type", "{}"), MAMORI_OK);
	mamori_db_free(db);
	assert_int_equal(sqlite3_open(path, &h), SQLITE_OK);
	sqlite3_stmt *st = NULL;
	assert_int_equal(sqlite3_prepare_v2(h, "SELECT count(*) FROM samples", -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(st, 0), 1); /* the old data is still there */
	sqlite3_finalize(st);
	sqlite3_close(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_file_and_db),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_migration_from_schema_1),
	};
	return cmocka_run_group_tests(tests, make_tmpdir, remove_tmpdir);
}
