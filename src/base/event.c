/*
 * The event log (docs/architecture.md, "Event log"): one helper builds
 * every event, so all sensors share one header {time, sensor, subject,
 * type, seq} followed by the event's own fields, and every event goes to
 * the database, a JSON-lines file, or both.
 *
 * Durability: the JSON line is written with one write() on an O_APPEND
 * descriptor and the call returns only after it, so a crash after
 * mamori_event_emit() returns loses nothing already emitted; a database
 * insert is done under the same lock, in SQLite's own transaction. An
 * event larger than MAMORI_EVENT_MAX_BYTES is refused whole, never cut.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "mamori/base.h"

struct mamori_eventlog {
	pthread_mutex_t lock;
	mamori_db *db;
	int fd; /* JSON lines, or -1 */
	char *sensor, *subject;
	uint64_t seq;
};

static const char *const header_fields[] = { "time", "sensor", "subject", "type", "seq" };

int mamori_eventlog_open(mamori_eventlog **out, mamori_db *db, const char *jsonl_path, const char *sensor,
			 const char *subject)
{
	*out = NULL;
	if (!sensor || !*sensor || !subject || !*subject || (!db && !jsonl_path))
		return mamori_fail(MAMORI_EINVAL,
				   "event log: a sensor, a subject and a destination are needed");
	mamori_eventlog *log = calloc(1, sizeof(*log));
	if (!log)
		return mamori_fail(MAMORI_ENOMEM, "event log");
	log->fd = -1;
	log->db = db;
	log->sensor = strdup(sensor);
	log->subject = strdup(subject);
	if (!log->sensor || !log->subject || pthread_mutex_init(&log->lock, NULL) != 0) {
		free(log->sensor);
		free(log->subject);
		free(log);
		return mamori_fail(MAMORI_ENOMEM, "event log");
	}
	if (jsonl_path) {
		log->fd = open(jsonl_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
		if (log->fd < 0) {
			int err = errno;
			mamori_eventlog_free(log);
			return mamori_fail(MAMORI_EIO, "%s: cannot open the event file: %s", jsonl_path,
					   strerror(err));
		}
	}
	*out = log;
	return MAMORI_OK;
}

/* UTC with microseconds, RFC 3339: "2026-11-26T10:20:00.123456Z". */
static void now_text(char *buf, size_t cap)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, cap - n, ".%06ldZ", ts.tv_nsec / 1000);
}

int mamori_event_emit(mamori_eventlog *log, const char *type, const json_t *body)
{
	if (!log || !type || !*type || (body && !json_is_object(body)))
		return mamori_fail(MAMORI_EINVAL, "event: a type and an object body are needed");
	for (size_t i = 0; body && i < sizeof(header_fields) / sizeof(header_fields[0]); i++)
		if (json_object_get(body, header_fields[i]))
			return mamori_fail(MAMORI_EINVAL, "event %s: field '%s' belongs to the header", type,
					   header_fields[i]);
	int rc = MAMORI_OK;
	char *text = NULL;
	char when[40];
	now_text(when, sizeof(when));
	json_t *ev = json_object();
	if (!ev)
		return mamori_fail(MAMORI_ENOMEM, "event");
	pthread_mutex_lock(&log->lock);
	uint64_t seq = log->seq + 1;
	/* Header first: jansson keeps insertion order with JSON_PRESERVE_ORDER. */
	json_object_set_new(ev, "time", json_string(when));
	json_object_set_new(ev, "sensor", json_string(log->sensor));
	json_object_set_new(ev, "subject", json_string(log->subject));
	json_object_set_new(ev, "type", json_string(type));
	json_object_set_new(ev, "seq", json_integer((json_int_t)seq));
	if (body && json_object_update(ev, (json_t *)body) != 0) {
		rc = mamori_fail(MAMORI_ENOMEM, "event %s", type);
		goto done;
	}
	text = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (!text) {
		rc = mamori_fail(MAMORI_ENOMEM, "event %s: cannot serialise", type);
		goto done;
	}
	size_t len = strlen(text);
	if (len > MAMORI_EVENT_MAX_BYTES) {
		rc = mamori_fail(MAMORI_ELIMIT, "event %s: %zu bytes, more than %zu", type, len,
				 MAMORI_EVENT_MAX_BYTES);
		goto done;
	}
	if (log->db && (rc = mamori_db_event_put(log->db, when, log->sensor, log->subject, type, text)))
		goto done;
	if (log->fd >= 0) {
		text[len] = '\n'; /* replaces the terminator: the line is written by length */
		if (!mamori_write_all(log->fd, text, len + 1)) {
			rc = mamori_fail(MAMORI_EIO, "event %s: cannot write the event file: %s", type,
					 strerror(errno));
			goto done;
		}
	}
	log->seq = seq;
done:
	pthread_mutex_unlock(&log->lock);
	free(text);
	json_decref(ev);
	return rc;
}

uint64_t mamori_eventlog_count(const mamori_eventlog *log)
{
	return log ? log->seq : 0;
}

void mamori_eventlog_free(mamori_eventlog *log)
{
	if (!log)
		return;
	if (log->fd >= 0)
		close(log->fd);
	pthread_mutex_destroy(&log->lock);
	free(log->sensor);
	free(log->subject);
	free(log);
}
