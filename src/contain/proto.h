/*
 * Protocol classifiers of the containment gateway, behind one small vtable
 * (STYLE.md 7, after Suricata's app-layer registration): each protocol has a
 * `probe` that scores a flow's first bytes by content (never by port), and a
 * per-flow `parse` that turns both directions of the stream into metadata
 * and events. A registry picks the best prober for a flow; what nobody
 * claims is "unknown".
 *
 * Limits: a flow buffers at most PROTO_PROBE_MAX bytes per direction while
 * it is undecided, parses at most PROTO_MAX_FLOW_BYTES per direction, keeps
 * at most PROTO_MAX_EVENTS pending events, PROTO_MAX_LIST entries per
 * metadata list and PROTO_MAX_STR bytes per string. Everything is fed
 * incrementally: a line or record split over any number of reads parses the
 * same as one read. Output is jansson: the flow's metadata object (a summary
 * that grows as the flow goes on) and an array of events to drain.
 *
 * This header is internal to src/contain; the gateway and the tests use it.
 */
#ifndef MAMORI_CONTAIN_PROTO_H
#define MAMORI_CONTAIN_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "mamori/base.h"

#define PROTO_PROBE_MORE     (-1)	       /**< probe: could be mine, need more bytes */
#define PROTO_CONFIDENT	     50		       /**< a score that decides at once */
#define PROTO_PROBE_MAX	     2048	       /**< bytes buffered per direction while undecided */
#define PROTO_PROBE_SEGMENTS 64		       /**< reads/datagrams buffered while undecided */
#define PROTO_MAX_FLOW_BYTES ((size_t)4 << 20) /**< bytes parsed per direction */
#define PROTO_MAX_EVENTS     256	       /**< pending events per flow; more are counted */
#define PROTO_MAX_LIST	     64		       /**< entries per metadata list; more are counted */
#define PROTO_MAX_STR	     256	       /**< bytes kept of any string from the wire */
#define PROTO_LINE_MAX	     2048	       /**< longest text line kept (longer: truncated) */

/** Direction of bytes within a flow: the side that opened it is the client. */
typedef enum proto_dir { PROTO_TO_SERVER = 0, PROTO_TO_CLIENT = 1 } proto_dir;

/** Transport of a flow; a bit mask in proto_parser.transports. */
typedef enum proto_transport { PROTO_TCP = 1, PROTO_UDP = 2 } proto_transport;

/** Where a parser writes. `meta` is the flow's summary object (it always
 *  holds "proto"); `events` is an array of objects with a "type". Both are
 *  owned by the flow. */
typedef struct proto_out {
	json_t *meta;
	json_t *events;
	size_t events_dropped;
} proto_out;

/** One protocol. Adding a protocol is one of these plus a line in the
 *  registry (proto.c). */
typedef struct proto_parser {
	const char *name;
	unsigned transports; /**< PROTO_TCP | PROTO_UDP */
	/** Score the first bytes of one direction (all that arrived so far on
	 *  TCP, one datagram on UDP): 0..100, or PROTO_PROBE_MORE. Must only
	 *  read `buf[0..len)`; `len` may be 0. */
	int (*probe)(const uint8_t *buf, size_t len, proto_dir dir, proto_transport transport);
	/** New per-flow state (owned by the flow, freed with state_free). */
	int (*state_new)(void **out, proto_transport transport);
	/** Consume bytes of one direction (a datagram on UDP). MAMORI_OK, or an
	 *  error when the stream stopped being this protocol: the flow then
	 *  stops parsing and records the error in its metadata. */
	int (*parse)(void *state, const uint8_t *buf, size_t len, proto_dir dir, proto_out *out);
	void (*state_free)(void *state);
} proto_parser;

/** The registered protocols, in order of preference on equal scores. */
const proto_parser *const *proto_registry(size_t *out_count);

/** The registered protocol named `name`, or NULL. */
const proto_parser *proto_find(const char *name);

/** One-shot classification of first bytes: the best parser and its score
 *  (0 and NULL when nobody claims them; PROTO_PROBE_MORE counts as 0). */
const proto_parser *proto_classify(const uint8_t *buf, size_t len, proto_dir dir, proto_transport transport,
				   int *out_confidence);

/* ------------------------------------------------------------------ */
/* A flow: classification then parsing, fed read by read               */
/* ------------------------------------------------------------------ */

typedef struct proto_flow proto_flow;

int proto_flow_new(proto_flow **out, proto_transport transport);
/** NULL is fine. */
void proto_flow_free(proto_flow *f);

/**
 * Feed the bytes of one read (TCP) or one datagram (UDP). Until the flow is
 * classified the bytes are buffered and probed; once it is, the buffered
 * reads are replayed in order into the parser. Malformed protocol data is
 * not an error of this call: it is recorded in the metadata ("error") and
 * parsing stops. Returns MAMORI_ENOMEM only.
 */
int proto_flow_feed(proto_flow *f, const uint8_t *buf, size_t len, proto_dir dir);

/** The wait for more first bytes is over (banner timeout, flow closed):
 *  decide with what arrived, possibly "unknown". Idempotent. */
int proto_flow_settle(proto_flow *f);

/** True once the flow has a protocol (possibly "unknown"). */
bool proto_flow_decided(const proto_flow *f);
/** The protocol's name, "unknown", or NULL while undecided. */
const char *proto_flow_proto(const proto_flow *f);
/** The score that decided the flow (0 for "unknown"). */
int proto_flow_confidence(const proto_flow *f);
/** The flow's metadata object; borrowed, valid until the flow is freed. */
json_t *proto_flow_meta(const proto_flow *f);
/** The events produced since the last call, as a new array owned by the
 *  caller (never NULL unless out of memory). */
json_t *proto_flow_take_events(proto_flow *f);

/* ------------------------------------------------------------------ */
/* Helpers for parsers                                                  */
/* ------------------------------------------------------------------ */

/** A JSON string from wire bytes: at most PROTO_MAX_STR bytes, invalid
 *  UTF-8 and control bytes replaced by '?'. NULL only when out of memory. */
json_t *proto_str(const void *buf, size_t len);

/** Append an event {"type": type, ...fields} (takes `fields`, which may be
 *  NULL). Past PROTO_MAX_EVENTS pending events it is counted and dropped. */
int proto_emit(proto_out *out, const char *type, json_t *fields);

/** Set meta[key] = value (takes `value`). */
int proto_meta_set(proto_out *out, const char *key, json_t *value);
/** Append `value` to the list meta[key] (takes `value`); past
 *  PROTO_MAX_LIST entries meta[key + "_dropped"] counts instead. */
int proto_meta_append(proto_out *out, const char *key, json_t *value);
/** Like proto_meta_append for strings, but skips values already listed. */
int proto_meta_append_unique(proto_out *out, const char *key, const char *s, size_t len);
/** meta[key] += n (an integer, created at 0). */
int proto_meta_add(proto_out *out, const char *key, json_int_t n);

/** Splits a byte stream into text lines (LF or CRLF), across reads. A line
 *  longer than `max` (≤ PROTO_LINE_MAX) is handed over once, truncated,
 *  with `overlong` set (and "overlong_lines": true in the flow's metadata),
 *  and the rest of it is skipped. */
typedef struct proto_lines {
	char buf[PROTO_LINE_MAX + 1];
	size_t len;
	size_t max;
	bool skipping;
} proto_lines;

typedef int (*proto_line_fn)(void *ctx, const char *line, size_t len, bool overlong, proto_dir dir,
			     proto_out *out);

void proto_lines_init(proto_lines *pl, size_t max);
/** Calls `fn` for every complete line in `buf` (without CR/LF, NUL-terminated
 *  in a borrowed buffer). Stops early when `fn` returns an error (returned)
 *  or PROTO_LINES_STOP (MAMORI_OK is returned); `*out_used` (may be NULL)
 *  says how many bytes of `buf` were consumed, so that a parser can switch
 *  to counting body bytes after a header block. */
#define PROTO_LINES_STOP 1
int proto_lines_feed(proto_lines *pl, const uint8_t *buf, size_t len, proto_line_fn fn, void *ctx,
		     proto_dir dir, proto_out *out, size_t *out_used);

/** True when `line` starts with the word `word` (ASCII case-insensitive),
 *  followed by a space or the end of the line. */
bool proto_word_is(const char *line, size_t len, const char *word);
/** Case-insensitive prefix test. */
bool proto_prefix_ci(const char *s, size_t len, const char *prefix);
/** Does a first chunk of bytes look like text lines (printable ASCII, tabs,
 *  CR/LF, some UTF-8)? Used by probes of text protocols. */
bool proto_looks_text(const uint8_t *buf, size_t len);

/* The protocols (proto_*.c). */
extern const proto_parser proto_dns;
extern const proto_parser proto_http;
extern const proto_parser proto_irc;
extern const proto_parser proto_smtp;
extern const proto_parser proto_ftp;
extern const proto_parser proto_tls;

#endif
