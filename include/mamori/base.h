/*
 * mamori base services: errors, bounded readers for hostile bytes, growth
 * buffers with a hard maximum, hashing, file reading with a size limit, a
 * progress line, JSON output, the sample store and the database.
 *
 * Every other subsystem builds on this header. Nothing here allocates behind
 * the caller's back: what is returned through `**out` belongs to the caller
 * and has a matching `_free`; everything else is borrowed.
 */
#ifndef MAMORI_BASE_H
#define MAMORI_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ */
/* Errors                                                               */
/* ------------------------------------------------------------------ */

/**
 * One error enum for the whole project. MAMORI_OK is 0, every error is
 * negative, and a number is never reused once released.
 */
typedef enum mamori_error {
	MAMORI_OK = 0,
	MAMORI_ENOMEM = -1,	  /**< out of memory */
	MAMORI_EIO = -2,	  /**< a file or stream could not be read/written */
	MAMORI_EINVAL = -3,	  /**< bad argument from the caller or user */
	MAMORI_ETRUNC = -4,	  /**< input ends before a structure it declares */
	MAMORI_EFORMAT = -5,	  /**< input is malformed or inconsistent */
	MAMORI_EUNSUPPORTED = -6, /**< valid but not handled (arch, format) */
	MAMORI_ELIMIT = -7,	  /**< a resource limit was reached */
	MAMORI_EDB = -8,	  /**< database error */
	MAMORI_ENOTFOUND = -9,	  /**< a requested thing does not exist */
	MAMORI_EBELOW = -10,	  /**< similarity provably below the cut-off */
} mamori_error;

/** Short, static description of an error code. Never NULL. */
const char *mamori_strerror(int err);

/**
 * Per-thread detail of the last error: what was wrong with which input.
 * Returns "" when no detail was set. Valid until the next call on the same
 * thread that sets an error.
 */
const char *mamori_error_detail(void);

/** Set the per-thread detail and return `err`, so callers can write
 *  `return mamori_fail(MAMORI_EFORMAT, "PE: section %u overlaps", i);` */
int mamori_fail(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#if defined(__clang_analyzer__) && !defined(MAMORI_ERROR_IMPL) && !defined(mamori_fail)
/* For the static analyzer only: it cannot see into error.c, so it would
 * follow paths where mamori_fail() returned MAMORI_OK after a failure. */
#define mamori_fail(err, ...) (mamori_fail((err), __VA_ARGS__), (err))
#endif

/** Clear the per-thread detail. */
void mamori_error_clear(void);

/* Process exit codes of the `mamori` CLI; fixed and documented in README. */
enum {
	MAMORI_EXIT_OK = 0,
	MAMORI_EXIT_FAILURE = 1,  /**< internal error (I/O, memory, database) */
	MAMORI_EXIT_USAGE = 2,	  /**< bad command line */
	MAMORI_EXIT_BADINPUT = 3, /**< an input file is malformed or unsupported */
	MAMORI_EXIT_PARTIAL = 4,  /**< some inputs failed; the rest was done */
	MAMORI_EXIT_LIMIT = 5,	  /**< a resource limit stopped the work */
};

/** Map an error code to the CLI exit code above. */
int mamori_exit_code(int err);

/* ------------------------------------------------------------------ */
/* Bounded reading of hostile bytes                                     */
/* ------------------------------------------------------------------ */

/** True when [off, off+len) lies inside a buffer of `size` bytes, without
 *  overflow. Use for every "fits in file/image" check. */
static inline bool mamori_span_fits(uint64_t size, uint64_t off, uint64_t len)
{
	return off <= size && len <= size - off;
}

/** A read cursor that carries its own limit. Reads fail with
 *  MAMORI_ETRUNC instead of overrunning; the position is unchanged then. */
typedef struct mamori_cursor {
	const uint8_t *data;
	size_t size;
	size_t pos;
} mamori_cursor;

void mamori_cursor_init(mamori_cursor *cur, const void *data, size_t size);
/** A sub-cursor over [off, off+len) of `parent`; fails if it does not fit. */
int mamori_cursor_sub(mamori_cursor *out, const mamori_cursor *parent, uint64_t off, uint64_t len);
int mamori_cursor_seek(mamori_cursor *cur, uint64_t pos);
int mamori_cursor_skip(mamori_cursor *cur, uint64_t n);
size_t mamori_cursor_left(const mamori_cursor *cur);
int mamori_read_u8(mamori_cursor *cur, uint8_t *v);
int mamori_read_u16le(mamori_cursor *cur, uint16_t *v);
int mamori_read_u32le(mamori_cursor *cur, uint32_t *v);
int mamori_read_u64le(mamori_cursor *cur, uint64_t *v);
int mamori_read_u16be(mamori_cursor *cur, uint16_t *v);
int mamori_read_u32be(mamori_cursor *cur, uint32_t *v);
int mamori_read_u64be(mamori_cursor *cur, uint64_t *v);
/** Borrow `n` bytes at the cursor and advance. */
int mamori_read_bytes(mamori_cursor *cur, size_t n, const uint8_t **out);
/**
 * Read a NUL-terminated string of at most `max` bytes (without the NUL)
 * starting at absolute offset `off`; copies it into a new heap string.
 * Fails with MAMORI_ETRUNC when no NUL is found within the buffer and
 * MAMORI_ELIMIT when the string is longer than `max`.
 */
int mamori_read_cstr_at(char **out, const mamori_cursor *cur, uint64_t off, size_t max);

/* ------------------------------------------------------------------ */
/* Growth buffer with a hard maximum                                    */
/* ------------------------------------------------------------------ */

/** A vector of fixed-size elements that grows up to `max_count`. */
typedef struct mamori_vec {
	void *data;
	size_t count;
	size_t cap;
	size_t elem_size;
	size_t max_count;
} mamori_vec;

void mamori_vec_init(mamori_vec *v, size_t elem_size, size_t max_count);
/** Append one element (copied from `elem`); MAMORI_ELIMIT past max_count. */
int mamori_vec_push(mamori_vec *v, const void *elem);
/** Reserve room and return a pointer to `n` new zeroed elements. */
int mamori_vec_grow(mamori_vec *v, size_t n, void **out);
/** Give up ownership of the data to the caller (who frees it with free()). */
void *mamori_vec_steal(mamori_vec *v, size_t *count);
void mamori_vec_free(mamori_vec *v);
#define MAMORI_VEC_AT(v, type, i) (((type *)(v)->data)[i])

/* ------------------------------------------------------------------ */
/* Files and hashing                                                    */
/* ------------------------------------------------------------------ */

/** Default maximum size of a sample mamori will read (256 MiB). */
#define MAMORI_MAX_SAMPLE_SIZE ((size_t)256 << 20)

/**
 * Read a whole regular file of at most `max` bytes. `*out` is a heap buffer
 * owned by the caller (free()); it has one extra NUL byte after `*out_len`.
 * Fails with MAMORI_ELIMIT when larger, MAMORI_EIO when unreadable.
 */
int mamori_file_read(uint8_t **out, size_t *out_len, const char *path, size_t max);

/** Write a file atomically (temp file + rename). */
int mamori_file_write_atomic(const char *path, const void *data, size_t len);
/** Write all `n` bytes to descriptor `fd`, going on after EINTR and short
 *  writes; false on any other failure (errno tells). */
bool mamori_write_all(int fd, const void *buf, size_t n);
/** Like mamori_write_all() for a socket, with MSG_NOSIGNAL: a peer that
 *  went away gives false (EPIPE), never SIGPIPE. */
bool mamori_send_all(int fd, const void *buf, size_t n);

/** Create a directory and its parents (mode 0755). */
int mamori_mkdir_p(const char *path);

/** SHA-256 of a buffer as 64 lowercase hex digits plus NUL. */
void mamori_sha256_hex(char out[65], const void *data, size_t len);
/** MD5 (used only for imphash, which is defined with MD5). */
void mamori_md5_hex(char out[33], const void *data, size_t len);
/** 64-bit FNV-1a; a fast non-cryptographic hash for tables. */
uint64_t mamori_hash64(const void *data, size_t len, uint64_t seed);

/* ------------------------------------------------------------------ */
/* Logging and progress                                                 */
/* ------------------------------------------------------------------ */

typedef enum { MAMORI_LOG_ERROR, MAMORI_LOG_WARN, MAMORI_LOG_INFO, MAMORI_LOG_DEBUG } mamori_log_level;
void mamori_log_set_level(mamori_log_level lvl);
void mamori_log(mamori_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** A progress line on stderr, redrawn at most ~10 times a second, and quiet
 *  when stderr is not a TTY. Thread-safe: several workers may call update. */
typedef struct mamori_progress mamori_progress;
/** Always returns a usable object (NULL-safe functions below). */
mamori_progress *mamori_progress_start(const char *label, uint64_t total);
void mamori_progress_add(mamori_progress *p, uint64_t n);
void mamori_progress_set(mamori_progress *p, uint64_t done);
/** Erase the line and free. NULL is fine. */
void mamori_progress_finish(mamori_progress *p);

/** Monotonic time in seconds. */
double mamori_now(void);
/** Peak resident set size of this process in bytes (0 if unknown). */
uint64_t mamori_peak_rss(void);

/* ------------------------------------------------------------------ */
/* JSON output (jansson)                                                */
/* ------------------------------------------------------------------ */

struct json_t;
/** Write `root` to `f` indented (for people) or compact, with a newline.
 *  Does not take ownership of `root`. */
int mamori_json_write(FILE *f, const struct json_t *root, bool pretty);
/** Write `root` to a file path atomically. */
int mamori_json_write_path(const char *path, const struct json_t *root);
/** A 64-bit address as a JSON integer (jansson's json_int_t is 64-bit). */
struct json_t *mamori_json_u64(uint64_t v);

/* ------------------------------------------------------------------ */
/* Sample store                                                         */
/* ------------------------------------------------------------------ */

/** A folder of samples named by SHA-256 (`ab/abcdef...`), read-only
 *  (mode 0444) and never executed. */
typedef struct mamori_store mamori_store;

int mamori_store_open(mamori_store **out, const char *dir);
void mamori_store_free(mamori_store *s);
/** Store bytes (once) and return their SHA-256. Existing samples are not
 *  rewritten. */
int mamori_store_put(mamori_store *s, const void *data, size_t len, char sha256_out[65]);
/** Path of a stored sample into `buf`; MAMORI_ENOTFOUND if absent. */
int mamori_store_path(const mamori_store *s, const char *sha256, char *buf, size_t bufsize);

/* ------------------------------------------------------------------ */
/* Database                                                             */
/* ------------------------------------------------------------------ */

/** SQLite database in WAL mode with a versioned, migrated schema.
 *  One connection; callers serialise access (it is not shared across
 *  threads without a lock). */
typedef struct mamori_db mamori_db;

int mamori_db_open(mamori_db **out, const char *path);
void mamori_db_free(mamori_db *db);
/** Schema version after migrations. */
int mamori_db_schema_version(mamori_db *db);
int mamori_db_begin(mamori_db *db);
int mamori_db_commit(mamori_db *db);

/** Record a sample (idempotent) and the path it was seen at. */
int mamori_db_sample_add(mamori_db *db, const char *sha256, uint64_t size, const char *path);

/** A stored analysis result of one sample under one analyzer version. */
typedef struct mamori_fingerprint {
	char sha256[65];
	char analyzer[64]; /**< e.g. "traversal-v1"; a new version re-analyses */
	bool ok;	   /**< false: analysis failed, see `error` */
	char *error;	   /**< heap string or NULL */
	char *format;	   /**< "pe32", "pe32+", "elf32", "elf64" or NULL */
	uint32_t *tokens;  /**< heap array of `n_tokens` instruction tokens */
	size_t n_tokens;
	char seq_hash[65]; /**< SHA-256 of the token sequence ("" if failed) */
} mamori_fingerprint;

void mamori_fingerprint_clear(mamori_fingerprint *fp);
/** MAMORI_ENOTFOUND when not analysed yet under that analyzer. */
int mamori_db_fingerprint_get(mamori_db *db, const char *sha256, const char *analyzer,
			      mamori_fingerprint *out);
int mamori_db_fingerprint_put(mamori_db *db, const mamori_fingerprint *fp);

/** Cached exact similarity between two token sequences (by seq_hash).
 *  `below` is true when the value was cut off below `floor`. */
int mamori_db_similarity_get(mamori_db *db, const char *seq_a, const char *seq_b, double floor, double *out_s,
			     bool *out_below);
int mamori_db_similarity_put(mamori_db *db, const char *seq_a, const char *seq_b, double floor, double s,
			     bool below);

/** Save one clustering run; returns its id. `clusters[i]` is the cluster
 *  of `sha256s[i]`, or -1 for a sample that failed. */
int mamori_db_cluster_run_save(mamori_db *db, int64_t *out_run_id, double threshold, const char *linkage,
			       const char *analyzer, size_t n, const char *const *sha256s,
			       const int64_t *clusters);

/** Store one event (what mamori_event_emit() does for its database);
 *  `json` is the whole event, the other fields are its header. */
int mamori_db_event_put(mamori_db *db, const char *time, const char *sensor, const char *subject,
			const char *type, const char *json);
/** Call `fn` with each stored event of `subject` (of `type`, or all when
 *  NULL) in the order they were stored; a non-zero return stops and is
 *  returned. */
int mamori_db_events_each(mamori_db *db, const char *subject, const char *type,
			  int (*fn)(void *ctx, const char *json), void *ctx);

/* ------------------------------------------------------------------ */
/* Event log                                                            */
/* ------------------------------------------------------------------ */

/** Where one sensor writes its events (a gateway session, a honeypot, the
 *  unpacker): every event is one JSON object that starts with the shared
 *  header {"time", "sensor", "subject", "type", "seq"} and goes to the
 *  database and/or to a JSON-lines file. Safe to use from several threads. */
typedef struct mamori_eventlog mamori_eventlog;

/** Largest event (serialised JSON) accepted: 1 MiB. */
#define MAMORI_EVENT_MAX_BYTES ((size_t)1 << 20)

/**
 * Open a log for `sensor` (e.g. "contain") about `subject` (a session id or
 * a sample SHA-256). `db` (borrowed, may be NULL; it must outlive the log
 * and is used under the log's lock only) and `jsonl_path` (appended to,
 * created 0640; may be NULL) are where events go; at least one of them.
 * `*out` belongs to the caller (mamori_eventlog_free).
 */
int mamori_eventlog_open(mamori_eventlog **out, mamori_db *db, const char *jsonl_path, const char *sensor,
			 const char *subject);

/**
 * Emit one event of `type`: the header, then every field of `body` (a JSON
 * object, borrowed, may be NULL; fields named like a header field are
 * refused with MAMORI_EINVAL). The JSON line is written and flushed before
 * the call returns. MAMORI_ELIMIT when the event exceeds
 * MAMORI_EVENT_MAX_BYTES (nothing is written then).
 */
int mamori_event_emit(mamori_eventlog *log, const char *type, const struct json_t *body);

/** Events emitted so far. */
uint64_t mamori_eventlog_count(const mamori_eventlog *log);

/** Close the log; NULL is fine. */
void mamori_eventlog_free(mamori_eventlog *log);

#ifdef __cplusplus
}
#endif
#endif
