/*
 * The bodies of HTTP/1.x responses, for downloads (internal to
 * src/contain): the gateway keeps the server-to-client bytes of a forwarded
 * HTTP flow (bounded) and, when the flow ends, splits them into responses:
 * status line and head, then the body as Content-Length, chunked framing
 * (de-chunked here) or "until close" says. Keep-alive connections with
 * several responses, interim 1xx responses and HEAD requests (whose
 * responses have no body) are handled.
 *
 * The input is hostile (whatever the server, or the inmate through a
 * server it controls, sent), so everything is bounded: the head is at most
 * HTTPBODY_HEAD_MAX bytes, chunk-size lines at most 64 bytes, and the
 * de-chunked body is never longer than the input.
 */
#ifndef MAMORI_CONTAIN_HTTPBODY_H
#define MAMORI_CONTAIN_HTTPBODY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTPBODY_HEAD_MAX 16384

/** One final response. `body` is borrowed for the callback only. */
typedef struct httpbody_msg {
	size_t index;	 /**< 0, 1, ...: which request it answers (interim 1xx not counted) */
	unsigned status; /**< 100..999 */
	bool chunked;	 /**< the body came in chunks (de-chunked in `body`) */
	bool complete;	 /**< the body is whole: its length, last chunk, or the close, was seen */
	const uint8_t *body;
	size_t body_len;
} httpbody_msg;

/** Called for each final response in order; a non-zero return stops. */
typedef int (*httpbody_fn)(void *ctx, const httpbody_msg *m);

/**
 * Split `buf` (the server's bytes of one connection, from the first) into
 * responses. `head_request[i]` tells whether request i was a HEAD (no body
 * then); requests past `n_requests` are taken as GET. `closed`: the
 * connection ended after `buf`, so a body without length ends there and is
 * complete. Stops at the first malformed response (MAMORI_EFORMAT), after
 * calling `fn` for what came before it; MAMORI_ENOMEM when a chunked body
 * cannot be copied. Returns MAMORI_OK, or what `fn` returned.
 */
int contain_httpbody_split(const uint8_t *buf, size_t len, bool closed, const bool *head_request,
			   size_t n_requests, httpbody_fn fn, void *ctx);

#endif
