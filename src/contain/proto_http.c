/*
 * HTTP/1.x classifier and parser. Requests give method, URI, Host and
 * User-Agent; responses give status, Content-Length and Content-Type. Bodies
 * are skipped by Content-Length or by chunked framing so that keep-alive
 * requests after them still parse; a response whose body runs until close
 * ends parsing of that direction. Header blocks are bounded by
 * HTTP_MAX_HEADERS lines of at most PROTO_LINE_MAX bytes (longer lines are
 * truncated and flagged). HTTP/2 and TLS-wrapped HTTP are not seen here.
 */
#include <stdlib.h>
#include <string.h>

#include "proto.h"

#define HTTP_MAX_HEADERS 128

static const char *const methods[] = { "GET",	  "POST",    "HEAD",  "PUT",   "DELETE",
				       "OPTIONS", "CONNECT", "TRACE", "PATCH", "PROPFIND" };

typedef enum {
	HTTP_START,	 /* waiting for a request or status line */
	HTTP_HEADERS,	 /* inside a header block */
	HTTP_BODY,	 /* skipping body_left bytes */
	HTTP_CHUNK_SIZE, /* waiting for a chunk-size line */
	HTTP_CHUNK_DATA, /* skipping a chunk, then its CRLF */
	HTTP_CHUNK_END,	 /* the empty line after chunk data */
	HTTP_TRAILERS,	 /* trailer lines until an empty one */
	HTTP_DONE,	 /* body until close, or an upgrade: nothing more to parse */
} http_phase;

typedef struct http_side {
	proto_lines lines;
	http_phase phase;
	uint64_t body_left;
	unsigned n_headers;
	json_t *msg; /* the event being built from the current header block */
	bool chunked;
	bool has_length;
	uint64_t length;
} http_side;

/* Requests waiting for their response, oldest first, because the body
 * rules of a response depend on its request (HEAD, CONNECT) and clients may
 * pipeline. Past HTTP_MAX_PIPELINE waiting requests the oldest are
 * forgotten (their responses are then framed as answers to GET). */
#define HTTP_MAX_PIPELINE 32
enum { REQ_OTHER, REQ_HEAD, REQ_CONNECT };

typedef struct http_state {
	http_side side[2];
	uint8_t pending[HTTP_MAX_PIPELINE];
	size_t pending_head, pending_count;
	uint8_t answering; /* the kind of request the current response answers */
} http_state;

static void pending_push(http_state *st, uint8_t kind)
{
	if (st->pending_count == HTTP_MAX_PIPELINE) {
		st->pending_head = (st->pending_head + 1) % HTTP_MAX_PIPELINE;
		st->pending_count--;
	}
	st->pending[(st->pending_head + st->pending_count++) % HTTP_MAX_PIPELINE] = kind;
}

static uint8_t pending_pop(http_state *st)
{
	if (st->pending_count == 0)
		return REQ_OTHER;
	uint8_t kind = st->pending[st->pending_head];
	st->pending_head = (st->pending_head + 1) % HTTP_MAX_PIPELINE;
	st->pending_count--;
	return kind;
}

static bool is_method(const char *s, size_t len, size_t *out_mlen)
{
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		size_t n = strlen(methods[i]);
		if (len > n && memcmp(s, methods[i], n) == 0 && s[n] == ' ') {
			*out_mlen = n;
			return true;
		}
	}
	return false;
}

static int http_probe(const uint8_t *buf, size_t len, proto_dir dir, proto_transport transport)
{
	const char *s = (const char *)buf;
	(void)transport;
	if (len == 0)
		return PROTO_PROBE_MORE;
	if (dir == PROTO_TO_CLIENT) {
		const char *v = "HTTP/1.";
		size_t n = len < 7 ? len : 7;
		if (memcmp(s, v, n) != 0)
			return 0;
		return len < 7 ? PROTO_PROBE_MORE : 60;
	}
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		size_t n = strlen(methods[i]);
		if (len <= n) {
			if (memcmp(s, methods[i], len) == 0)
				return PROTO_PROBE_MORE;
			continue;
		}
		if (memcmp(s, methods[i], n) != 0 || s[n] != ' ')
			continue;
		const uint8_t *nl = memchr(buf, '\n', len);
		size_t line = nl ? (size_t)(nl - buf) : len;
		if (!proto_looks_text(buf, line))
			return 10;
		/* "GET / HTTP/1.1" is certain; a method and a space alone
		 * is still far more likely HTTP than anything else. */
		if (memmem(s + n, line - n, " HTTP/1.", 8))
			return 95;
		if (!nl && len < 256)
			return PROTO_PROBE_MORE;
		return 60;
	}
	return 0;
}

static int http_state_new(void **out, proto_transport transport)
{
	http_state *st = calloc(1, sizeof(*st));
	(void)transport;
	*out = st;
	if (!st)
		return mamori_fail(MAMORI_ENOMEM, "http: no memory for state");
	proto_lines_init(&st->side[0].lines, PROTO_LINE_MAX);
	proto_lines_init(&st->side[1].lines, PROTO_LINE_MAX);
	return MAMORI_OK;
}

static void http_state_free(void *state)
{
	http_state *st = state;
	if (!st)
		return;
	json_decref(st->side[0].msg);
	json_decref(st->side[1].msg);
	free(st);
}

/* A decimal or hex number of at most 18 digits (no overflow); false if
 * there is none or it is followed by anything but spaces/`;`. */
static bool parse_number(const char *s, size_t len, unsigned base, uint64_t *out)
{
	uint64_t v = 0;
	size_t i = 0, digits = 0;
	while (i < len && (s[i] == ' ' || s[i] == '\t'))
		i++;
	for (; i < len; i++, digits++) {
		char c = s[i];
		unsigned d;
		if (c >= '0' && c <= '9')
			d = (unsigned)(c - '0');
		else if (base == 16 && c >= 'a' && c <= 'f')
			d = (unsigned)(c - 'a' + 10);
		else if (base == 16 && c >= 'A' && c <= 'F')
			d = (unsigned)(c - 'A' + 10);
		else
			break;
		if (digits >= 18)
			return false;
		v = v * base + d;
	}
	while (i < len && (s[i] == ' ' || s[i] == '\t'))
		i++;
	if (digits == 0 || (i < len && s[i] != ';'))
		return false;
	*out = v;
	return true;
}

/* Value of a "Name: value" header line if its name is `name`. */
static bool header_value(const char *line, size_t len, const char *name, const char **out_v, size_t *out_vlen)
{
	size_t n = strlen(name);
	if (len <= n || !proto_prefix_ci(line, len, name) || line[n] != ':')
		return false;
	size_t i = n + 1;
	while (i < len && (line[i] == ' ' || line[i] == '\t'))
		i++;
	size_t end = len;
	while (end > i && (line[end - 1] == ' ' || line[end - 1] == '\t'))
		end--;
	*out_v = line + i;
	*out_vlen = end - i;
	return true;
}

static int start_line(http_state *st, http_side *sd, const char *line, size_t len, proto_dir dir,
		      proto_out *out)
{
	json_t *msg = json_object();
	if (!msg)
		return mamori_fail(MAMORI_ENOMEM, "http: no memory");
	json_decref(sd->msg);
	sd->msg = msg;
	sd->chunked = sd->has_length = false;
	sd->n_headers = 0;
	if (dir == PROTO_TO_SERVER) {
		size_t mlen;
		if (!is_method(line, len, &mlen))
			return mamori_fail(MAMORI_EFORMAT, "http: not a request line");
		const char *uri = line + mlen + 1;
		const char *end = line + len;
		const char *sp = memchr(uri, ' ', (size_t)(end - uri));
		size_t ulen = sp ? (size_t)(sp - uri) : (size_t)(end - uri);
		json_object_set_new(msg, "method", json_stringn(line, mlen));
		json_object_set_new(msg, "uri", proto_str(uri, ulen));
		if (sp)
			json_object_set_new(msg, "version", proto_str(sp + 1, (size_t)(end - sp - 1)));
		pending_push(st, mlen == 4 && memcmp(line, "HEAD", 4) == 0	? REQ_HEAD
				 : mlen == 7 && memcmp(line, "CONNECT", 7) == 0 ? REQ_CONNECT
										: REQ_OTHER);
		proto_meta_add(out, "requests", 1);
		return proto_meta_append_unique(out, "uris", uri, ulen);
	}
	uint64_t status;
	if (len < 12 || memcmp(line, "HTTP/1.", 7) != 0 || line[8] != ' ' ||
	    !parse_number(line + 9, 3, 10, &status))
		return mamori_fail(MAMORI_EFORMAT, "http: not a status line");
	/* 1xx responses are interim: the final one answers the same request. */
	if (status / 100 != 1)
		st->answering = pending_pop(st);
	json_object_set_new(msg, "status", json_integer((json_int_t)status));
	if (len > 13)
		json_object_set_new(msg, "reason", proto_str(line + 13, len - 13));
	proto_meta_add(out, "responses", 1);
	return proto_meta_set(out, "last_status", json_integer((json_int_t)status));
}

/* The end of a header block: emit the message, choose how to skip the body. */
static int end_of_headers(http_state *st, http_side *sd, proto_dir dir, proto_out *out)
{
	int err;
	uint64_t status = (uint64_t)json_integer_value(json_object_get(sd->msg, "status"));
	if (sd->has_length)
		json_object_set_new(sd->msg, "content_length", json_integer((json_int_t)sd->length));
	if (sd->chunked)
		json_object_set_new(sd->msg, "chunked", json_true());
	err = proto_emit(out, dir == PROTO_TO_SERVER ? "http_request" : "http_response", sd->msg);
	sd->msg = NULL;
	if (err != MAMORI_OK)
		return err;
	bool no_body = dir == PROTO_TO_CLIENT &&
		       (st->answering == REQ_HEAD || status / 100 == 1 || status == 204 || status == 304);
	if (dir == PROTO_TO_CLIENT &&
	    (status == 101 || (st->answering == REQ_CONNECT && status / 100 == 2))) {
		/* The connection becomes something else, both ways. */
		sd->phase = HTTP_DONE;
		st->side[PROTO_TO_SERVER].phase = HTTP_DONE;
		return proto_meta_set(out, "upgraded", json_true());
	}
	/* A request without a length has no body; a response without one
	 * runs until the connection closes. */
	if (!no_body && !sd->chunked && !sd->has_length && dir == PROTO_TO_CLIENT) {
		sd->phase = HTTP_DONE;
		return proto_meta_set(out, "body_until_close", json_true());
	}
	if (no_body || (!sd->chunked && !sd->has_length)) {
		sd->phase = HTTP_START;
	} else if (sd->chunked) {
		sd->phase = HTTP_CHUNK_SIZE;
	} else {
		sd->body_left = sd->length;
		sd->phase = sd->length ? HTTP_BODY : HTTP_START;
	}
	return PROTO_LINES_STOP; /* so the caller can count body bytes */
}

static int header_line(http_state *st, http_side *sd, const char *line, size_t len, proto_dir dir,
		       proto_out *out)
{
	const char *v;
	size_t vlen;
	if (len == 0)
		return end_of_headers(st, sd, dir, out);
	if (++sd->n_headers > HTTP_MAX_HEADERS)
		return mamori_fail(MAMORI_ELIMIT, "http: more than %d header lines", HTTP_MAX_HEADERS);
	if (header_value(line, len, "Content-Length", &v, &vlen)) {
		if (!parse_number(v, vlen, 10, &sd->length))
			return mamori_fail(MAMORI_EFORMAT, "http: bad Content-Length");
		sd->has_length = true;
	} else if (header_value(line, len, "Transfer-Encoding", &v, &vlen)) {
		sd->chunked = vlen >= 7 && proto_prefix_ci(v + vlen - 7, 7, "chunked");
	} else if (dir == PROTO_TO_SERVER && header_value(line, len, "Host", &v, &vlen)) {
		json_object_set_new(sd->msg, "host", proto_str(v, vlen));
		return proto_meta_append_unique(out, "hosts", v, vlen);
	} else if (dir == PROTO_TO_SERVER && header_value(line, len, "User-Agent", &v, &vlen)) {
		json_object_set_new(sd->msg, "user_agent", proto_str(v, vlen));
		return proto_meta_append_unique(out, "user_agents", v, vlen);
	} else if (dir == PROTO_TO_CLIENT && header_value(line, len, "Content-Type", &v, &vlen)) {
		json_object_set_new(sd->msg, "content_type", proto_str(v, vlen));
	} else if (dir == PROTO_TO_CLIENT && header_value(line, len, "Server", &v, &vlen)) {
		json_object_set_new(sd->msg, "server", proto_str(v, vlen));
	}
	return MAMORI_OK;
}

static int http_line(void *ctx, const char *line, size_t len, bool overlong, proto_dir dir, proto_out *out)
{
	http_state *st = ctx;
	http_side *sd = &st->side[dir];
	(void)overlong; /* proto_lines_feed() flags it in the metadata */
	switch (sd->phase) {
	case HTTP_START:
		if (len == 0)
			return MAMORI_OK; /* stray CRLF between messages is allowed */
		sd->phase = HTTP_HEADERS;
		return start_line(st, sd, line, len, dir, out);
	case HTTP_HEADERS: return header_line(st, sd, line, len, dir, out);
	case HTTP_CHUNK_SIZE: {
		uint64_t n;
		if (!parse_number(line, len, 16, &n))
			return mamori_fail(MAMORI_EFORMAT, "http: bad chunk size");
		proto_meta_add(out, "chunks", 1);
		if (n == 0) {
			sd->phase = HTTP_TRAILERS;
			return MAMORI_OK;
		}
		sd->body_left = n;
		sd->phase = HTTP_CHUNK_DATA;
		return PROTO_LINES_STOP;
	}
	case HTTP_CHUNK_END:
		if (len != 0)
			return mamori_fail(MAMORI_EFORMAT, "http: chunk data not followed by CRLF");
		sd->phase = HTTP_CHUNK_SIZE;
		return MAMORI_OK;
	case HTTP_TRAILERS:
		if (len == 0)
			sd->phase = HTTP_START;
		return MAMORI_OK;
	default: return MAMORI_OK;
	}
}

static int http_parse(void *state, const uint8_t *buf, size_t len, proto_dir dir, proto_out *out)
{
	http_state *st = state;
	http_side *sd = &st->side[dir];
	int err = MAMORI_OK;
	while (len > 0 && err == MAMORI_OK) {
		if (sd->phase == HTTP_DONE)
			break;
		if (sd->phase == HTTP_BODY || sd->phase == HTTP_CHUNK_DATA) {
			size_t n = sd->body_left < len ? (size_t)sd->body_left : len;
			sd->body_left -= n;
			buf += n;
			len -= n;
			proto_meta_add(
				out, dir == PROTO_TO_SERVER ? "body_bytes_to_server" : "body_bytes_to_client",
				(json_int_t)n);
			if (sd->body_left == 0)
				sd->phase = sd->phase == HTTP_BODY ? HTTP_START : HTTP_CHUNK_END;
			continue;
		}
		size_t used = 0;
		err = proto_lines_feed(&sd->lines, buf, len, http_line, st, dir, out, &used);
		buf += used;
		len -= used;
	}
	return err;
}

const proto_parser proto_http = {
	.name = "http",
	.transports = PROTO_TCP,
	.probe = http_probe,
	.state_new = http_state_new,
	.parse = http_parse,
	.state_free = http_state_free,
};
