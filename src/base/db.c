/*
 * The embedded database: SQLite in WAL mode with a numbered list of
 * migrations. PRAGMA user_version holds the schema version; opening a
 * database applies every migration it has not seen, each in its own
 * transaction, so an old database is brought up to date and a newer one
 * (from a later mamori) is refused rather than damaged.
 *
 * Token sequences are stored as little-endian uint32 blobs.
 */
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "mamori/base.h"

struct mamori_db {
	sqlite3 *h;
	sqlite3_stmt *fp_get, *fp_put, *sim_get, *sim_put, *sample_add, *path_add, *event_put;
};

static const char *const migrations[] = {
	/* 1: samples, fingerprints, similarity cache, clustering runs */
	"CREATE TABLE samples(sha256 TEXT PRIMARY KEY, size INTEGER NOT NULL,"
	"  first_seen TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now')));"
	"CREATE TABLE sample_paths(sha256 TEXT NOT NULL REFERENCES samples(sha256), path TEXT NOT NULL,"
	"  PRIMARY KEY(sha256, path));"
	"CREATE TABLE fingerprints(sha256 TEXT NOT NULL REFERENCES samples(sha256), analyzer TEXT NOT NULL,"
	"  ok INTEGER NOT NULL, error TEXT, format TEXT, n_tokens INTEGER NOT NULL, seq_hash TEXT,"
	"  tokens BLOB, created TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now')),"
	"  PRIMARY KEY(sha256, analyzer));"
	"CREATE INDEX fingerprints_seq ON fingerprints(seq_hash);"
	"CREATE TABLE similarities(seq_a TEXT NOT NULL, seq_b TEXT NOT NULL, floor REAL NOT NULL,"
	"  s REAL NOT NULL, below INTEGER NOT NULL, PRIMARY KEY(seq_a, seq_b));"
	"CREATE TABLE cluster_runs(id INTEGER PRIMARY KEY, created TEXT NOT NULL DEFAULT"
	"  (strftime('%Y-%m-%dT%H:%M:%SZ','now')), threshold REAL NOT NULL, linkage TEXT NOT NULL,"
	"  analyzer TEXT NOT NULL, n_samples INTEGER NOT NULL);"
	"CREATE TABLE cluster_members(run_id INTEGER NOT NULL REFERENCES cluster_runs(id),"
	"  sha256 TEXT NOT NULL, cluster INTEGER, PRIMARY KEY(run_id, sha256));",
	/* 2: the event log every sensor writes (see event.c): the shared header
	 * as columns for queries, the whole event as JSON. */
	"CREATE TABLE events(id INTEGER PRIMARY KEY, time TEXT NOT NULL, sensor TEXT NOT NULL,"
	"  subject TEXT NOT NULL, type TEXT NOT NULL, body TEXT NOT NULL);"
	"CREATE INDEX events_subject ON events(subject, type);"
	"CREATE INDEX events_type ON events(type);",
};

#define N_MIGRATIONS ((int)(sizeof(migrations) / sizeof(migrations[0])))

static int db_fail(mamori_db *db, const char *what)
{
	return mamori_fail(MAMORI_EDB, "%s: %s", what, db && db->h ? sqlite3_errmsg(db->h) : "no database");
}

static int exec(mamori_db *db, const char *sql)
{
	char *msg = NULL;
	if (sqlite3_exec(db->h, sql, NULL, NULL, &msg) != SQLITE_OK) {
		int rc = mamori_fail(MAMORI_EDB, "%s", msg ? msg : "sqlite error");
		sqlite3_free(msg);
		return rc;
	}
	return MAMORI_OK;
}

int mamori_db_schema_version(mamori_db *db)
{
	sqlite3_stmt *st = NULL;
	int v = -1;
	if (sqlite3_prepare_v2(db->h, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return v;
}

static int migrate(mamori_db *db)
{
	int v = mamori_db_schema_version(db);
	if (v < 0)
		return db_fail(db, "reading schema version");
	if (v > N_MIGRATIONS)
		return mamori_fail(MAMORI_EDB, "database schema %d is newer than this mamori (%d)", v,
				   N_MIGRATIONS);
	for (int i = v; i < N_MIGRATIONS; i++) {
		char pragma[64];
		snprintf(pragma, sizeof(pragma), "PRAGMA user_version=%d;", i + 1);
		int rc = exec(db, "BEGIN IMMEDIATE");
		if (rc == MAMORI_OK)
			rc = exec(db, migrations[i]);
		if (rc == MAMORI_OK)
			rc = exec(db, pragma);
		if (rc == MAMORI_OK)
			rc = exec(db, "COMMIT");
		if (rc != MAMORI_OK) {
			char detail[512];
			snprintf(detail, sizeof(detail), "%s", mamori_error_detail());
			sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
			return mamori_fail(MAMORI_EDB, "migration %d failed: %s", i + 1, detail);
		}
	}
	return MAMORI_OK;
}

static int prepare(mamori_db *db, sqlite3_stmt **st, const char *sql)
{
	if (sqlite3_prepare_v3(db->h, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK)
		return db_fail(db, "prepare");
	return MAMORI_OK;
}

int mamori_db_open(mamori_db **out, const char *path)
{
	int rc = MAMORI_OK;
	*out = NULL;
	mamori_db *db = calloc(1, sizeof(*db));
	if (!db)
		return mamori_fail(MAMORI_ENOMEM, "database handle");
	if (sqlite3_open_v2(path, &db->h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
			    NULL) != SQLITE_OK) {
		rc = mamori_fail(MAMORI_EDB, "%s: cannot open: %s", path,
				 db->h ? sqlite3_errmsg(db->h) : "out of memory");
		goto done;
	}
	sqlite3_busy_timeout(db->h, 10000);
	if ((rc = exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;")))
		goto done;
	if ((rc = migrate(db)))
		goto done;
	if ((rc = prepare(
		     db, &db->sample_add,
		     "INSERT INTO samples(sha256, size) VALUES(?1, ?2) ON CONFLICT(sha256) DO NOTHING")) ||
	    (rc = prepare(db, &db->path_add,
			  "INSERT OR IGNORE INTO sample_paths(sha256, path) VALUES(?1, ?2)")) ||
	    (rc = prepare(db, &db->fp_get,
			  "SELECT ok, error, format, n_tokens, seq_hash, tokens FROM fingerprints"
			  " WHERE sha256=?1 AND analyzer=?2")) ||
	    (rc = prepare(db, &db->fp_put,
			  "INSERT OR REPLACE INTO fingerprints(sha256, analyzer, ok, error, format, n_tokens,"
			  " seq_hash, tokens) VALUES(?1,?2,?3,?4,?5,?6,?7,?8)")) ||
	    (rc = prepare(db, &db->sim_get,
			  "SELECT floor, s, below FROM similarities WHERE seq_a=?1 AND seq_b=?2")) ||
	    (rc = prepare(db, &db->sim_put,
			  "INSERT OR REPLACE INTO similarities(seq_a, seq_b, floor, s, below) "
			  "VALUES(?1,?2,?3,?4,?5)")) ||
	    (rc = prepare(db, &db->event_put,
			  "INSERT INTO events(time, sensor, subject, type, body) VALUES(?1,?2,?3,?4,?5)")))
		goto done;
done:
	if (rc != MAMORI_OK) {
		mamori_db_free(db);
		return rc;
	}
	*out = db;
	return MAMORI_OK;
}

void mamori_db_free(mamori_db *db)
{
	if (!db)
		return;
	sqlite3_finalize(db->sample_add);
	sqlite3_finalize(db->path_add);
	sqlite3_finalize(db->fp_get);
	sqlite3_finalize(db->fp_put);
	sqlite3_finalize(db->sim_get);
	sqlite3_finalize(db->sim_put);
	sqlite3_finalize(db->event_put);
	sqlite3_close(db->h);
	free(db);
}

int mamori_db_begin(mamori_db *db)
{
	return exec(db, "BEGIN");
}

int mamori_db_commit(mamori_db *db)
{
	return exec(db, "COMMIT");
}

static int step_done(mamori_db *db, sqlite3_stmt *st, const char *what)
{
	int r = sqlite3_step(st);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return r == SQLITE_DONE ? MAMORI_OK : db_fail(db, what);
}

int mamori_db_sample_add(mamori_db *db, const char *sha256, uint64_t size, const char *path)
{
	sqlite3_bind_text(db->sample_add, 1, sha256, -1, SQLITE_STATIC);
	sqlite3_bind_int64(db->sample_add, 2, (sqlite3_int64)size);
	int rc = step_done(db, db->sample_add, "adding sample");
	if (rc == MAMORI_OK && path) {
		sqlite3_bind_text(db->path_add, 1, sha256, -1, SQLITE_STATIC);
		sqlite3_bind_text(db->path_add, 2, path, -1, SQLITE_STATIC);
		rc = step_done(db, db->path_add, "adding sample path");
	}
	return rc;
}

void mamori_fingerprint_clear(mamori_fingerprint *fp)
{
	if (!fp)
		return;
	free(fp->error);
	free(fp->format);
	free(fp->tokens);
	memset(fp, 0, sizeof(*fp));
}

static char *dup_col(sqlite3_stmt *st, int col)
{
	const unsigned char *t = sqlite3_column_text(st, col);
	return t ? strdup((const char *)t) : NULL;
}

int mamori_db_fingerprint_get(mamori_db *db, const char *sha256, const char *analyzer,
			      mamori_fingerprint *out)
{
	int rc = MAMORI_OK;
	sqlite3_stmt *st = db->fp_get;
	memset(out, 0, sizeof(*out));
	sqlite3_bind_text(st, 1, sha256, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, analyzer, -1, SQLITE_STATIC);
	int r = sqlite3_step(st);
	if (r == SQLITE_DONE) {
		rc = MAMORI_ENOTFOUND;
		goto done;
	}
	if (r != SQLITE_ROW) {
		rc = db_fail(db, "reading fingerprint");
		goto done;
	}
	snprintf(out->sha256, sizeof(out->sha256), "%s", sha256);
	snprintf(out->analyzer, sizeof(out->analyzer), "%s", analyzer);
	out->ok = sqlite3_column_int(st, 0) != 0;
	out->error = dup_col(st, 1);
	out->format = dup_col(st, 2);
	const unsigned char *sh = sqlite3_column_text(st, 4);
	snprintf(out->seq_hash, sizeof(out->seq_hash), "%s", sh ? (const char *)sh : "");
	const uint8_t *blob = sqlite3_column_blob(st, 5);
	size_t bytes = (size_t)sqlite3_column_bytes(st, 5);
	size_t n = (size_t)sqlite3_column_int64(st, 3);
	if (bytes != n * 4) {
		rc = mamori_fail(MAMORI_EDB, "fingerprint of %s has %zu token bytes for %zu tokens", sha256,
				 bytes, n);
		goto done;
	}
	if (n) {
		out->tokens = malloc(n * sizeof(uint32_t));
		if (!out->tokens) {
			rc = mamori_fail(MAMORI_ENOMEM, "%zu tokens", n);
			goto done;
		}
		for (size_t i = 0; i < n; i++)
			out->tokens[i] = (uint32_t)blob[4 * i] | (uint32_t)blob[4 * i + 1] << 8 |
					 (uint32_t)blob[4 * i + 2] << 16 | (uint32_t)blob[4 * i + 3] << 24;
	}
	out->n_tokens = n;
done:
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc != MAMORI_OK && rc != MAMORI_ENOTFOUND)
		mamori_fingerprint_clear(out);
	return rc;
}

int mamori_db_fingerprint_put(mamori_db *db, const mamori_fingerprint *fp)
{
	sqlite3_stmt *st = db->fp_put;
	uint8_t *blob = NULL;
	if (fp->n_tokens) {
		blob = malloc(fp->n_tokens * 4);
		if (!blob)
			return mamori_fail(MAMORI_ENOMEM, "%zu tokens", fp->n_tokens);
		for (size_t i = 0; i < fp->n_tokens; i++) {
			uint32_t t = fp->tokens[i];
			blob[4 * i] = (uint8_t)t;
			blob[4 * i + 1] = (uint8_t)(t >> 8);
			blob[4 * i + 2] = (uint8_t)(t >> 16);
			blob[4 * i + 3] = (uint8_t)(t >> 24);
		}
	}
	sqlite3_bind_text(st, 1, fp->sha256, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, fp->analyzer, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 3, fp->ok);
	sqlite3_bind_text(st, 4, fp->error, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, fp->format, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, (sqlite3_int64)fp->n_tokens);
	if (fp->seq_hash[0])
		sqlite3_bind_text(st, 7, fp->seq_hash, -1, SQLITE_STATIC);
	sqlite3_bind_blob64(st, 8, blob ? (const void *)blob : (const void *)"", fp->n_tokens * 4,
			    SQLITE_STATIC);
	int rc = step_done(db, st, "storing fingerprint");
	free(blob);
	return rc;
}

/* Pairs are stored with seq_a < seq_b so each unordered pair has one row. */
static void order_pair(const char **a, const char **b)
{
	if (strcmp(*a, *b) > 0) {
		const char *t = *a;
		*a = *b;
		*b = t;
	}
}

int mamori_db_similarity_get(mamori_db *db, const char *seq_a, const char *seq_b, double floor, double *out_s,
			     bool *out_below)
{
	int rc = MAMORI_ENOTFOUND;
	sqlite3_stmt *st = db->sim_get;
	order_pair(&seq_a, &seq_b);
	sqlite3_bind_text(st, 1, seq_a, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, seq_b, -1, SQLITE_STATIC);
	int r = sqlite3_step(st);
	if (r == SQLITE_ROW) {
		double stored_floor = sqlite3_column_double(st, 0);
		double s = sqlite3_column_double(st, 1);
		bool below = sqlite3_column_int(st, 2) != 0;
		/* A value cut off at a higher floor says nothing about a lower one. */
		if (!below || stored_floor <= floor) {
			*out_s = s;
			*out_below = below || s < floor;
			rc = MAMORI_OK;
		}
	} else if (r != SQLITE_DONE) {
		rc = db_fail(db, "reading similarity");
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc;
}

int mamori_db_similarity_put(mamori_db *db, const char *seq_a, const char *seq_b, double floor, double s,
			     bool below)
{
	sqlite3_stmt *st = db->sim_put;
	order_pair(&seq_a, &seq_b);
	sqlite3_bind_text(st, 1, seq_a, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, seq_b, -1, SQLITE_STATIC);
	sqlite3_bind_double(st, 3, floor);
	sqlite3_bind_double(st, 4, s);
	sqlite3_bind_int(st, 5, below);
	return step_done(db, st, "storing similarity");
}

int mamori_db_cluster_run_save(mamori_db *db, int64_t *out_run_id, double threshold, const char *linkage,
			       const char *analyzer, size_t n, const char *const *sha256s,
			       const int64_t *clusters)
{
	int rc = MAMORI_OK;
	sqlite3_stmt *run = NULL, *mem = NULL;
	*out_run_id = -1;
	if ((rc = exec(db, "BEGIN")))
		return rc;
	if ((rc = prepare(db, &run,
			  "INSERT INTO cluster_runs(threshold, linkage, analyzer, n_samples) "
			  "VALUES(?1,?2,?3,?4)")))
		goto done;
	if ((rc = prepare(
		     db, &mem,
		     "INSERT OR REPLACE INTO cluster_members(run_id, sha256, cluster) VALUES(?1,?2,?3)")))
		goto done;
	sqlite3_bind_double(run, 1, threshold);
	sqlite3_bind_text(run, 2, linkage, -1, SQLITE_STATIC);
	sqlite3_bind_text(run, 3, analyzer, -1, SQLITE_STATIC);
	sqlite3_bind_int64(run, 4, (sqlite3_int64)n);
	if ((rc = step_done(db, run, "saving cluster run")))
		goto done;
	int64_t id = sqlite3_last_insert_rowid(db->h);
	for (size_t i = 0; i < n; i++) {
		sqlite3_bind_int64(mem, 1, id);
		sqlite3_bind_text(mem, 2, sha256s[i], -1, SQLITE_STATIC);
		if (clusters[i] >= 0)
			sqlite3_bind_int64(mem, 3, clusters[i]);
		else
			sqlite3_bind_null(mem, 3);
		if ((rc = step_done(db, mem, "saving cluster member")))
			goto done;
	}
	*out_run_id = id;
done:
	sqlite3_finalize(run);
	sqlite3_finalize(mem);
	if (rc == MAMORI_OK)
		rc = exec(db, "COMMIT");
	else
		sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

int mamori_db_event_put(mamori_db *db, const char *time, const char *sensor, const char *subject,
			const char *type, const char *json)
{
	sqlite3_stmt *st = db->event_put;
	int rc = MAMORI_OK;
	sqlite3_reset(st);
	if (sqlite3_bind_text(st, 1, time, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(st, 2, sensor, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(st, 3, subject, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(st, 4, type, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(st, 5, json, -1, SQLITE_STATIC) != SQLITE_OK || sqlite3_step(st) != SQLITE_DONE)
		rc = db_fail(db, "storing an event");
	sqlite3_clear_bindings(st);
	sqlite3_reset(st);
	return rc;
}

int mamori_db_events_each(mamori_db *db, const char *subject, const char *type,
			  int (*fn)(void *ctx, const char *json), void *ctx)
{
	sqlite3_stmt *st = NULL;
	int rc = MAMORI_OK;
	if (sqlite3_prepare_v2(
		    db->h, "SELECT body FROM events WHERE subject=?1 AND (?2 IS NULL OR type=?2) ORDER BY id",
		    -1, &st, NULL) != SQLITE_OK)
		return db_fail(db, "reading events");
	sqlite3_bind_text(st, 1, subject, -1, SQLITE_STATIC);
	if (type)
		sqlite3_bind_text(st, 2, type, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 2);
	int step;
	while (rc == MAMORI_OK && (step = sqlite3_step(st)) == SQLITE_ROW)
		rc = fn(ctx, (const char *)sqlite3_column_text(st, 0));
	if (rc == MAMORI_OK && step != SQLITE_DONE)
		rc = db_fail(db, "reading events");
	sqlite3_finalize(st);
	return rc;
}
