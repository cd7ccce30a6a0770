/*
 * mamori containment gateway (issue 5): run a sample with controlled
 * Internet access and learn its communication. This header grows with the
 * subsystem; today it has the session report: the communication features
 * of a session computed from its events (docs/contain-events.md) — C&C
 * endpoints with protocol and identifiers, download URLs and hashes, spam,
 * floods and scans — as JSON and as an SVG (a timeline of connections per
 * destination coloured by verdict, and a graph of the destinations).
 */
#ifndef MAMORI_CONTAIN_H
#define MAMORI_CONTAIN_H

#include <stddef.h>
#include <stdio.h>

#include "mamori/base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mamori_contain_report mamori_contain_report;

/** Most events one report reads, and most destinations it keeps. */
#define MAMORI_CONTAIN_REPORT_MAX_EVENTS 2000000
#define MAMORI_CONTAIN_REPORT_MAX_DESTS	 4096
/** Destinations drawn as timeline rows. */
#define MAMORI_CONTAIN_REPORT_SVG_ROWS 60

/** An empty report to feed with mamori_contain_report_add(). `*out`
 *  belongs to the caller (mamori_contain_report_free). */
int mamori_contain_report_new(mamori_contain_report **out);

/**
 * Build a report from a session's events.jsonl. Lines that are not JSON
 * objects with the event header are counted as skipped, not fatal.
 * Errors: MAMORI_EIO, MAMORI_ELIMIT (more than
 * MAMORI_CONTAIN_REPORT_MAX_EVENTS lines), MAMORI_ENOMEM.
 */
int mamori_contain_report_load(mamori_contain_report **out, const char *events_jsonl);

/** Feed one event (a JSON object with the header, borrowed); for callers
 *  that read events elsewhere, e.g. the database. */
int mamori_contain_report_add(mamori_contain_report *r, const struct json_t *event);

/** The summary, a new reference: {"session", "start", "end", "events",
 *  "skipped", "flows": {"total", "by_verdict"}, "cnc": [...],
 *  "downloads": [...], "spam": {...}, "floods": [...], "scans": [...],
 *  "dns": [...], "destinations": [...]}. */
struct json_t *mamori_contain_report_json(const mamori_contain_report *r);

/** Write the SVG to `f`. */
int mamori_contain_report_svg(const mamori_contain_report *r, FILE *f);

/** NULL is fine. */
void mamori_contain_report_free(mamori_contain_report *r);

#ifdef __cplusplus
}
#endif
#endif
