/*
 * The bodies of HTTP/1.x responses: see httpbody.h. A cursor walks the
 * buffer; every length read from the wire is checked against what is left
 * before it is used.
 */
#include "httpbody.h"

#include <stdlib.h>
#include <string.h>

#include "mamori/base.h"

#define CHUNK_LINE_MAX 64

/* Offset of the first "\r\n" in p[0..len), or len when there is none. */
static size_t crlf_at(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++)
		if (p[i] == '\r' && p[i + 1] == '\n')
			return i;
	return len;
}

static int lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* The value of header `name` in one header line, trimmed; false if the line
 * is another header. */
static bool header_is(const uint8_t *line, size_t len, const char *name, const uint8_t **v, size_t *vlen)
{
	size_t n = strlen(name);
	if (len <= n || line[n] != ':')
		return false;
	for (size_t i = 0; i < n; i++)
		if (lower(line[i]) != lower((unsigned char)name[i]))
			return false;
	size_t a = n + 1, b = len;
	while (a < b && (line[a] == ' ' || line[a] == '\t'))
		a++;
	while (b > a && (line[b - 1] == ' ' || line[b - 1] == '\t'))
		b--;
	*v = line + a;
	*vlen = b - a;
	return true;
}

/* Digits of `base` (10 or 16) in v[0..len), at least one, no overflow. */
static bool parse_u64(const uint8_t *v, size_t len, unsigned base, uint64_t *out)
{
	uint64_t x = 0;
	if (len == 0 || len > 20)
		return false;
	for (size_t i = 0; i < len; i++) {
		int c = lower(v[i]);
		unsigned d = c >= '0' && c <= '9'		  ? (unsigned)(c - '0')
			     : base == 16 && c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
								  : 99u;
		if (d >= base || x > (UINT64_MAX - d) / base)
			return false;
		x = x * base + d;
	}
	*out = x;
	return true;
}

typedef struct head_info {
	unsigned status;
	bool has_length, chunked;
	uint64_t length;
} head_info;

/* The head at p[0..head_len) (without its final empty line). */
static int parse_head(const uint8_t *p, size_t head_len, head_info *h)
{
	memset(h, 0, sizeof *h);
	size_t line_len = crlf_at(p, head_len);
	uint64_t status;
	if (line_len < 12 || memcmp(p, "HTTP/1.", 7) != 0 || p[8] != ' ' ||
	    !parse_u64(p + 9, 3, 10, &status) || status < 100)
		return mamori_fail(MAMORI_EFORMAT, "http body: not a status line");
	h->status = (unsigned)status;
	size_t pos = line_len + 2;
	while (pos < head_len) {
		size_t n = crlf_at(p + pos, head_len - pos);
		const uint8_t *v;
		size_t vlen;
		if (header_is(p + pos, n, "content-length", &v, &vlen)) {
			if (!parse_u64(v, vlen, 10, &h->length))
				return mamori_fail(MAMORI_EFORMAT, "http body: bad Content-Length");
			h->has_length = true;
		} else if (header_is(p + pos, n, "transfer-encoding", &v, &vlen)) {
			static const char chunked[] = "chunked";
			h->chunked = vlen >= 7;
			for (size_t i = 0; h->chunked && i < 7; i++)
				h->chunked = lower(v[vlen - 7 + i]) == chunked[i];
		}
		pos += n + 2;
	}
	return MAMORI_OK;
}

/* De-chunk from p[0..len) into `out` (at least len bytes): *used is how far
 * the framing went, *complete whether the last chunk and trailers were seen. */
static int dechunk(const uint8_t *p, size_t len, uint8_t *out, size_t *out_len, size_t *used, bool *complete)
{
	size_t pos = 0, o = 0;
	*complete = false;
	for (;;) {
		size_t n = crlf_at(p + pos, len - pos);
		if (n == len - pos)
			break; /* cut short inside a size line */
		if (n > CHUNK_LINE_MAX)
			return mamori_fail(MAMORI_EFORMAT, "http body: chunk-size line too long");
		size_t digits = 0;
		while (digits < n && p[pos + digits] != ';' && p[pos + digits] != ' ' &&
		       p[pos + digits] != '\t')
			digits++;
		uint64_t size;
		if (!parse_u64(p + pos, digits, 16, &size))
			return mamori_fail(MAMORI_EFORMAT, "http body: bad chunk size");
		pos += n + 2;
		if (size == 0) {
			/* Trailer lines up to an empty one. */
			for (;;) {
				size_t t = crlf_at(p + pos, len - pos);
				if (t == len - pos)
					goto done;
				pos += t + 2;
				if (t == 0) {
					*complete = true;
					goto done;
				}
			}
		}
		size_t take = size < len - pos ? (size_t)size : len - pos;
		memcpy(out + o, p + pos, take);
		o += take;
		pos += take;
		if (take < size)
			break;
		if (len - pos < 2)
			break;
		if (p[pos] != '\r' || p[pos + 1] != '\n')
			return mamori_fail(MAMORI_EFORMAT, "http body: chunk data not followed by CRLF");
		pos += 2;
	}
done:
	*out_len = o;
	*used = pos;
	return MAMORI_OK;
}

int contain_httpbody_split(const uint8_t *buf, size_t len, bool closed, const bool *head_request,
			   size_t n_requests, httpbody_fn fn, void *ctx)
{
	size_t pos = 0, index = 0;
	uint8_t *plain = NULL;
	int rc = MAMORI_OK;
	while (pos < len && rc == MAMORI_OK) {
		size_t limit = len - pos < HTTPBODY_HEAD_MAX ? len - pos : HTTPBODY_HEAD_MAX;
		size_t head_len = 0;
		for (size_t i = 0; i + 4 <= limit; i++)
			if (!memcmp(buf + pos + i, "\r\n\r\n", 4)) {
				head_len = i + 2;
				break;
			}
		if (head_len == 0) {
			if (limit == HTTPBODY_HEAD_MAX)
				rc = mamori_fail(MAMORI_EFORMAT, "http body: head over %d bytes",
						 HTTPBODY_HEAD_MAX);
			break; /* a head cut short: nothing more to say */
		}
		head_info h;
		if ((rc = parse_head(buf + pos, head_len, &h)) != MAMORI_OK)
			break;
		pos += head_len + 2;
		if (h.status / 100 == 1)
			continue; /* interim: the final response answers the same request */
		bool head = index < n_requests && head_request && head_request[index];
		httpbody_msg m = { .index = index++, .status = h.status, .chunked = h.chunked };
		bool last = false;
		if (head || h.status == 204 || h.status == 304) {
			m.complete = true;
		} else if (h.chunked) {
			free(plain);
			if (!(plain = malloc(len - pos + 1))) {
				rc = mamori_fail(MAMORI_ENOMEM, "http body: no memory");
				break;
			}
			size_t used = 0;
			if ((rc = dechunk(buf + pos, len - pos, plain, &m.body_len, &used, &m.complete)) !=
			    MAMORI_OK)
				break;
			m.body = plain;
			pos += used;
			last = !m.complete;
		} else if (h.has_length) {
			m.body = buf + pos;
			m.complete = h.length <= len - pos;
			m.body_len = m.complete ? (size_t)h.length : len - pos;
			pos += m.body_len;
			last = !m.complete;
		} else {
			m.body = buf + pos;
			m.body_len = len - pos;
			m.complete = closed;
			pos = len;
			last = true;
		}
		rc = fn(ctx, &m);
		if (last)
			break;
	}
	free(plain);
	return rc;
}
