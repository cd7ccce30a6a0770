/*
 * Fake stream services of the virtual Internet: SMTP sink, HTTP, IRC
 * stand-in and a generic sink (see fakesvc.h).
 *
 * All input comes from the inmate and is hostile. It is read through one
 * line reader with a fixed buffer: a line longer than `max_line` is drained
 * and answered with an error, a session that sends more than `max_bytes` or
 * stays silent past `timeout_ms` ends. Everything recorded is cut to fixed
 * sizes and reduced to printable ASCII before it reaches JSON, and lists
 * (recipients, channels, messages) have caps. Replies are written with
 * MSG_NOSIGNAL so an inmate that hangs up cannot kill the gateway.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "fakesvc.h"
#include "mamori/base.h"

#define READ_BUF	 8192
#define MAX_RCPTS	 1000
#define MAX_RECORDED	 256 /* list entries kept in a record */
#define MAX_TEXT	 512 /* characters kept of one recorded string */
#define MAX_BAD_COMMANDS 20

void contain_fakesvc_opts_default(contain_fakesvc_opts *out)
{
	memset(out, 0, sizeof(*out));
	out->timeout_ms = 10000;
	out->session_ms = 300000;
	out->max_line = 4096;
	out->max_bytes = (size_t)16 << 20;
	out->max_message = (size_t)10 << 20;
	out->max_messages = 100;
	out->sink_keep = 4096;
	out->maildir = ".";
	out->hostname = "mail.example";
}

/* ------------------------------------------------------------------ */
/* I/O                                                                  */
/* ------------------------------------------------------------------ */

typedef enum { LINE_OK, LINE_EOF, LINE_TIMEOUT, LINE_LIMIT, LINE_TOO_LONG, LINE_ERROR } line_status;

static const char *status_name(line_status s)
{
	switch (s) {
	case LINE_OK: return "ok";
	case LINE_EOF: return "eof";
	case LINE_TIMEOUT: return "timeout";
	case LINE_LIMIT: return "limit";
	case LINE_TOO_LONG: return "too-long";
	case LINE_ERROR: return "error";
	}
	return "?";
}

typedef struct reader {
	int fd;
	bool broken; /* a reply could not be sent: the session is over */
	int timeout_ms;
	double deadline; /* mamori_now() after which the session ends */
	size_t max_bytes;
	size_t total;
	uint8_t buf[READ_BUF];
	size_t pos, end;
} reader;

static void reader_init(reader *r, int fd, const contain_fakesvc_opts *o)
{
	memset(r, 0, sizeof(*r));
	r->fd = fd;
	r->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 10000;
	r->deadline = mamori_now() + (o->session_ms > 0 ? o->session_ms : 300000) / 1000.0;
	r->max_bytes = o->max_bytes;
	/* Replies block at most as long as reads do: an inmate that sends and
	 * never reads must not wedge the service. Not a socket: no timeout. */
	struct timeval tv = { .tv_sec = r->timeout_ms / 1000,
			      .tv_usec = (suseconds_t)(r->timeout_ms % 1000) * 1000 };
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static line_status reader_fill(reader *r)
{
	if (r->broken)
		return LINE_ERROR;
	if (r->total >= r->max_bytes)
		return LINE_LIMIT;
	struct pollfd p = { .fd = r->fd, .events = POLLIN };
	int n;
	do {
		/* Per-read timeout, cut short by the session deadline so a
		 * slow drip of bytes cannot hold the service forever. */
		double left_ms = (r->deadline - mamori_now()) * 1000.0;
		if (left_ms <= 0)
			return LINE_TIMEOUT;
		int wait = left_ms < r->timeout_ms ? (int)left_ms + 1 : r->timeout_ms;
		n = poll(&p, 1, wait);
	} while (n < 0 && errno == EINTR);
	if (n == 0)
		return LINE_TIMEOUT;
	if (n < 0)
		return LINE_ERROR;
	size_t want = sizeof(r->buf);
	if (want > r->max_bytes - r->total)
		want = r->max_bytes - r->total;
	ssize_t got;
	do
		got = read(r->fd, r->buf, want);
	while (got < 0 && errno == EINTR);
	if (got < 0)
		return errno == ECONNRESET ? LINE_EOF : LINE_ERROR;
	if (got == 0)
		return LINE_EOF;
	r->pos = 0;
	r->end = (size_t)got;
	r->total += (size_t)got;
	return LINE_OK;
}

/* One line without its CR LF into `line` (NUL-terminated, `cap` > 0). A line
 * longer than cap-1 is drained to its end and reported as too long. A last
 * line without LF at EOF is returned as a line. */
static line_status read_line(reader *r, char *line, size_t cap, size_t *len_out)
{
	size_t len = 0;
	bool too_long = false;
	for (;;) {
		if (r->pos == r->end) {
			line_status s = reader_fill(r);
			if (s != LINE_OK) {
				if (s == LINE_EOF && len > 0 && !too_long)
					break;
				return s;
			}
		}
		uint8_t c = r->buf[r->pos++];
		if (c == '\n')
			break;
		if (len + 1 < cap)
			line[len++] = (char)c;
		else
			too_long = true;
	}
	if (len && line[len - 1] == '\r')
		len--;
	line[len] = '\0';
	*len_out = len;
	return too_long ? LINE_TOO_LONG : LINE_OK;
}

static bool write_all(int fd, const void *data, size_t len)
{
	const uint8_t *p = data;
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == ENOTSOCK)
			n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

__attribute__((format(printf, 2, 3))) static bool reply(reader *r, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	/* clang-analyzer 14 misreads va_start here (valist.Uninitialized). */
	int n = vsnprintf(buf, sizeof(buf), fmt, ap); // NOLINT(clang-analyzer-valist.Uninitialized)
	va_end(ap);
	if (n < 0 || r->broken)
		return false;
	if (!write_all(r->fd, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1))
		r->broken = true;
	return !r->broken;
}

/* Printable ASCII only, at most MAX_TEXT characters: what the inmate sent
 * may be any bytes, JSON needs UTF-8 and reports need to stay readable. */
static json_t *safe_str(const char *s, size_t len)
{
	char buf[MAX_TEXT + 1];
	size_t n = 0;
	for (size_t i = 0; i < len && n < MAX_TEXT; i++) {
		unsigned char c = (unsigned char)s[i];
		buf[n++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	return json_stringn(buf, n);
}

static json_t *safe_cstr(const char *s)
{
	return safe_str(s, strlen(s));
}

static void append_capped(json_t *arr, json_t *v)
{
	if (json_array_size(arr) < MAX_RECORDED)
		json_array_append_new(arr, v);
	else
		json_decref(v);
}

static bool prefix_ci(const char *s, const char *prefix)
{
	return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

/* ------------------------------------------------------------------ */
/* SMTP sink                                                            */
/* ------------------------------------------------------------------ */

typedef struct growbuf {
	char *data;
	size_t len, cap, max;
	bool overflow;
} growbuf;

static void growbuf_add(growbuf *g, const char *s, size_t n)
{
	if (n == 0) /* an empty line of a message: nothing to copy, maybe no buffer yet */
		return;
	if (g->overflow || g->len + n > g->max) {
		g->overflow = true;
		return;
	}
	if (g->len + n > g->cap) {
		size_t cap = g->cap ? g->cap : 4096;
		while (cap < g->len + n)
			cap *= 2;
		if (cap > g->max)
			cap = g->max;
		char *d = realloc(g->data, cap);
		if (!d) {
			g->overflow = true;
			return;
		}
		g->data = d;
		g->cap = cap;
	}
	memcpy(g->data + g->len, s, n);
	g->len += n;
}

/* "MAIL FROM:<a@b> SIZE=10" -> "a@b"; also accepts a missing <>. */
static void smtp_address(const char *arg, char *out, size_t cap)
{
	const char *colon = strchr(arg, ':');
	const char *s = colon ? colon + 1 : arg;
	while (*s == ' ')
		s++;
	const char *e;
	if (*s == '<') {
		s++;
		e = strchr(s, '>');
		if (!e)
			e = s + strlen(s);
	} else {
		e = s;
		while (*e && *e != ' ')
			e++;
	}
	size_t n = (size_t)(e - s);
	if (n >= cap)
		n = cap - 1;
	memcpy(out, s, n);
	out[n] = '\0';
}

/* The Subject header of a message (unfolded), cut to `cap`-1 bytes. */
static void mail_subject(const char *msg, size_t len, char *out, size_t cap)
{
	size_t o = 0, i = 0;
	out[0] = '\0';
	bool in_subject = false;
	while (i < len) {
		size_t e = i;
		while (e < len && msg[e] != '\n')
			e++;
		size_t ll = e - i;
		if (ll && msg[i + ll - 1] == '\r')
			ll--;
		if (ll == 0)
			break; /* end of headers */
		const char *l = msg + i;
		if (in_subject && (l[0] == ' ' || l[0] == '\t')) {
			for (size_t k = 0; k < ll && o + 1 < cap; k++)
				out[o++] = l[k] == '\t' ? ' ' : l[k];
		} else if (in_subject) {
			break;
		} else if (ll >= 8 && strncasecmp(l, "Subject:", 8) == 0) {
			in_subject = true;
			size_t k = 8;
			while (k < ll && l[k] == ' ')
				k++;
			for (; k < ll && o + 1 < cap; k++)
				out[o++] = l[k];
		}
		i = e + 1;
	}
	out[o] = '\0';
}

/* Store one message as <maildir>/mail-XXXXXX.eml with a JSON sidecar. */
static int smtp_store(json_t **sidecar_out, const contain_fakesvc_opts *o, const growbuf *msg,
		      const char *from, json_t *rcpts, const char *helo)
{
	*sidecar_out = NULL;
	char path[4096];
	int n = snprintf(path, sizeof(path), "%s/mail-XXXXXX.eml", o->maildir);
	if (n < 0 || (size_t)n >= sizeof(path))
		return mamori_fail(MAMORI_EINVAL, "maildir path too long");
	int fd = mkstemps(path, 4);
	if (fd < 0)
		return mamori_fail(MAMORI_EIO, "cannot create a mail file in %s: %s", o->maildir,
				   strerror(errno));
	bool ok = write_all(fd, msg->data ? msg->data : "", msg->len);
	ok = close(fd) == 0 && ok;
	if (!ok)
		return mamori_fail(MAMORI_EIO, "cannot write %s", path);

	char subject[MAX_TEXT + 1];
	mail_subject(msg->data ? msg->data : "", msg->len, subject, sizeof(subject));
	char sha[65];
	mamori_sha256_hex(sha, msg->data ? msg->data : "", msg->len);
	json_t *side = json_object();
	const char *base = strrchr(path, '/');
	json_object_set_new(side, "file", safe_cstr(base ? base + 1 : path));
	json_object_set_new(side, "from", safe_cstr(from));
	json_object_set(side, "rcpt", rcpts);
	json_object_set_new(side, "subject", safe_cstr(subject));
	json_object_set_new(side, "bytes", json_integer((json_int_t)msg->len));
	json_object_set_new(side, "sha256", json_string(sha));
	json_object_set_new(side, "helo", safe_cstr(helo));

	char jpath[4096];
	snprintf(jpath, sizeof(jpath), "%.*s.json", (int)(strlen(path) - 4), path);
	int rc = mamori_json_write_path(jpath, side);
	if (rc != MAMORI_OK) {
		json_decref(side);
		return rc;
	}
	*sidecar_out = side;
	return MAMORI_OK;
}

/* Read DATA up to the lone dot, undoing dot-stuffing. */
static line_status smtp_read_data(reader *r, char *line, size_t cap, growbuf *msg)
{
	for (;;) {
		size_t len;
		line_status s = read_line(r, line, cap, &len);
		if (s == LINE_TOO_LONG) {
			/* Keep what fits: a long line in a body is not worth losing
			 * the message over, and the rest was drained. */
			s = LINE_OK;
			len = strlen(line);
		}
		if (s != LINE_OK)
			return s;
		if (len == 1 && line[0] == '.')
			return LINE_OK;
		const char *l = line;
		if (l[0] == '.') {
			l++;
			len--;
		}
		growbuf_add(msg, l, len);
		growbuf_add(msg, "\r\n", 2);
	}
}

int contain_fakesvc_smtp(json_t **out, int fd, const contain_fakesvc_opts *o)
{
	int rc = MAMORI_OK;
	reader *r = calloc(1, sizeof(*r));
	size_t cap = o->max_line < 64 ? 64 : o->max_line + 1;
	char *line = calloc(1, cap);
	json_t *rec = json_object();
	json_t *messages = json_array();
	json_t *rcpts = json_array();
	json_t *commands = json_array();
	char helo[256] = "", from[256] = "";
	bool in_mail = false;
	unsigned bad = 0;
	growbuf msg = { .max = o->max_message };
	const char *end = "eof";
	*out = NULL;
	if (!r || !line || !rec || !messages || !rcpts || !commands) {
		rc = mamori_fail(MAMORI_ENOMEM, "smtp sink");
		goto done;
	}
	reader_init(r, fd, o);
	json_object_set_new(rec, "service", json_string("smtp-sink"));
	if (!reply(r, "220 %s ESMTP ready\r\n", o->hostname)) {
		end = "error";
		goto done;
	}
	for (;;) {
		size_t len;
		line_status s = read_line(r, line, cap, &len);
		if (s == LINE_TOO_LONG) {
			reply(r, "500 5.5.0 Line too long\r\n");
			if (++bad > MAX_BAD_COMMANDS)
				break;
			continue;
		}
		if (s != LINE_OK) {
			end = status_name(s);
			break;
		}
		char verb[5] = "";
		for (size_t i = 0; i < 4 && i < len; i++)
			verb[i] = (char)toupper((unsigned char)line[i]);
		append_capped(commands, safe_str(line, len < 80 ? len : 80));
		const char *arg = len > 5 ? line + 5 : "";
		if (strcmp(verb, "EHLO") == 0) {
			snprintf(helo, sizeof(helo), "%s", arg);
			reply(r, "250-%s\r\n250-SIZE %zu\r\n250-8BITMIME\r\n250 HELP\r\n", o->hostname,
			      o->max_message);
		} else if (strcmp(verb, "HELO") == 0) {
			snprintf(helo, sizeof(helo), "%s", arg);
			reply(r, "250 %s\r\n", o->hostname);
		} else if (strcmp(verb, "MAIL") == 0 && prefix_ci(line, "MAIL FROM:")) {
			smtp_address(line, from, sizeof(from));
			json_array_clear(rcpts);
			in_mail = true;
			reply(r, "250 2.1.0 Ok\r\n");
		} else if (strcmp(verb, "RCPT") == 0 && prefix_ci(line, "RCPT TO:")) {
			if (!in_mail) {
				reply(r, "503 5.5.1 Error: need MAIL command\r\n");
			} else if (json_array_size(rcpts) >= MAX_RCPTS) {
				reply(r, "452 4.5.3 Error: too many recipients\r\n");
			} else {
				char to[256];
				smtp_address(line, to, sizeof(to));
				json_array_append_new(rcpts, safe_cstr(to));
				reply(r, "250 2.1.5 Ok\r\n");
			}
		} else if (strcmp(verb, "DATA") == 0) {
			if (!in_mail || json_array_size(rcpts) == 0) {
				reply(r, "503 5.5.1 Error: need RCPT command\r\n");
				continue;
			}
			reply(r, "354 End data with <CR><LF>.<CR><LF>\r\n");
			msg.len = 0;
			msg.overflow = false;
			s = smtp_read_data(r, line, cap, &msg);
			if (s != LINE_OK) {
				end = status_name(s);
				break;
			}
			in_mail = false;
			if (msg.overflow) {
				reply(r, "552 5.3.4 Error: message too big\r\n");
			} else if (json_array_size(messages) >= o->max_messages) {
				reply(r, "452 4.3.1 Error: too many messages\r\n");
			} else {
				json_t *side = NULL;
				int src = smtp_store(&side, o, &msg, from, rcpts, helo);
				if (src != MAMORI_OK) {
					rc = src;
					reply(r, "451 4.3.0 Error: local problem\r\n");
				} else {
					json_array_append_new(messages, side);
					reply(r, "250 2.0.0 Ok: queued as %zu\r\n",
					      json_array_size(messages));
				}
			}
		} else if (strcmp(verb, "RSET") == 0) {
			in_mail = false;
			json_array_clear(rcpts);
			reply(r, "250 2.0.0 Ok\r\n");
		} else if (strcmp(verb, "NOOP") == 0) {
			reply(r, "250 2.0.0 Ok\r\n");
		} else if (strcmp(verb, "VRFY") == 0) {
			reply(r, "252 2.0.0 Cannot VRFY user\r\n");
		} else if (strcmp(verb, "QUIT") == 0) {
			reply(r, "221 2.0.0 Bye\r\n");
			end = "quit";
			break;
		} else {
			reply(r, "502 5.5.2 Error: command not recognized\r\n");
			if (++bad > MAX_BAD_COMMANDS) {
				reply(r, "421 4.7.0 Too many errors\r\n");
				end = "limit";
				break;
			}
		}
	}
done:
	if (rec) {
		json_object_set_new(rec, "helo", safe_cstr(helo));
		json_object_set_new(rec, "commands", commands ? commands : json_array());
		json_object_set_new(rec, "messages", messages ? messages : json_array());
		json_object_set_new(rec, "end", json_string(end));
		commands = messages = NULL;
	}
	json_decref(commands);
	json_decref(messages);
	json_decref(rcpts);
	free(msg.data);
	free(line);
	free(r);
	*out = rec;
	return rc;
}

/* ------------------------------------------------------------------ */
/* HTTP                                                                 */
/* ------------------------------------------------------------------ */

#define HTTP_MAX_HEADERS 100
static const char http_body[] = "<html><head><title>OK</title></head><body>OK</body></html>\n";

int contain_fakesvc_http(json_t **out, int fd, const contain_fakesvc_opts *o)
{
	int rc = MAMORI_OK;
	reader *r = calloc(1, sizeof(*r));
	size_t cap = o->max_line < 64 ? 64 : o->max_line + 1;
	char *line = calloc(1, cap);
	json_t *rec = json_object();
	const char *end = "eof";
	*out = NULL;
	if (!r || !line || !rec) {
		rc = mamori_fail(MAMORI_ENOMEM, "http service");
		goto done;
	}
	reader_init(r, fd, o);
	json_object_set_new(rec, "service", json_string("http"));
	size_t len;
	line_status s = read_line(r, line, cap, &len);
	if (s != LINE_OK) {
		end = status_name(s);
		if (s == LINE_TOO_LONG)
			reply(r,
			      "HTTP/1.1 414 URI Too Long\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
		goto done;
	}
	/* METHOD SP URI SP VERSION */
	char *sp1 = strchr(line, ' ');
	char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
	json_object_set_new(rec, "request_line", safe_str(line, len));
	if (!sp1 || !sp2 || sp1 == line || strncmp(sp2 + 1, "HTTP/", 5) != 0) {
		reply(r, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
		end = "bad-request";
		goto done;
	}
	json_object_set_new(rec, "method", safe_str(line, (size_t)(sp1 - line)));
	json_object_set_new(rec, "uri", safe_str(sp1 + 1, (size_t)(sp2 - sp1 - 1)));
	json_object_set_new(rec, "version", safe_cstr(sp2 + 1));
	bool head = (size_t)(sp1 - line) == 4 && strncmp(line, "HEAD", 4) == 0;

	uint64_t content_length = 0;
	size_t n_headers = 0;
	for (;;) {
		s = read_line(r, line, cap, &len);
		if (s == LINE_TOO_LONG || (s == LINE_OK && ++n_headers > HTTP_MAX_HEADERS)) {
			reply(r, "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n"
				 "Connection: close\r\n\r\n");
			end = "limit";
			goto done;
		}
		if (s != LINE_OK) {
			end = status_name(s);
			goto done;
		}
		if (len == 0)
			break;
		const char *v = strchr(line, ':');
		if (!v)
			continue;
		v++;
		while (*v == ' ' || *v == '\t')
			v++;
		if (prefix_ci(line, "Host:"))
			json_object_set_new(rec, "host", safe_cstr(v));
		else if (prefix_ci(line, "User-Agent:"))
			json_object_set_new(rec, "user_agent", safe_cstr(v));
		else if (prefix_ci(line, "Content-Length:")) {
			content_length = 0;
			for (const char *d = v; *d >= '0' && *d <= '9' && content_length < UINT64_MAX / 10;
			     d++)
				content_length = content_length * 10 + (uint64_t)(*d - '0');
		}
	}
	json_object_set_new(rec, "headers", json_integer((json_int_t)n_headers));
	/* Swallow a body within the session limit so the client sees its
	 * reply instead of a reset. */
	uint64_t body = 0;
	while (body < content_length) {
		if (r->pos == r->end && reader_fill(r) != LINE_OK)
			break;
		size_t take = r->end - r->pos;
		if (take > content_length - body)
			take = (size_t)(content_length - body);
		r->pos += take;
		body += take;
	}
	json_object_set_new(rec, "body_bytes", json_integer((json_int_t)body));
	reply(r,
	      "HTTP/1.1 200 OK\r\nServer: Apache\r\nContent-Type: text/html\r\nContent-Length: %zu\r\n"
	      "Connection: close\r\n\r\n",
	      sizeof(http_body) - 1);
	if (!head)
		write_all(fd, http_body, sizeof(http_body) - 1);
	end = "done";
done:
	if (rec)
		json_object_set_new(rec, "end", json_string(end));
	free(line);
	free(r);
	*out = rec;
	return rc;
}

/* ------------------------------------------------------------------ */
/* IRC stand-in                                                         */
/* ------------------------------------------------------------------ */

/* Split "[:prefix] CMD params... [:trailing]" in place. */
typedef struct irc_msg {
	char *cmd;
	char *params[16];
	size_t n;
} irc_msg;

static void irc_split(char *line, irc_msg *m)
{
	memset(m, 0, sizeof(*m));
	char *p = line;
	if (*p == ':') {
		while (*p && *p != ' ')
			p++;
	}
	while (*p == ' ')
		p++;
	m->cmd = p;
	while (*p && *p != ' ')
		p++;
	while (*p) {
		*p++ = '\0';
		while (*p == ' ')
			p++;
		if (!*p)
			break;
		if (*p == ':' || m->n == 15) {
			m->params[m->n++] = *p == ':' ? p + 1 : p;
			break;
		}
		m->params[m->n++] = p;
		while (*p && *p != ' ')
			p++;
	}
	for (char *c = m->cmd; *c; c++)
		*c = (char)toupper((unsigned char)*c);
}

/* A nick or channel that is safe to echo back into the protocol. */
static void irc_token(char *out, size_t cap, const char *s)
{
	size_t n = 0;
	for (; *s && n + 1 < cap; s++) {
		unsigned char c = (unsigned char)*s;
		if (c > 0x20 && c < 0x7f && c != ',' && c != ':')
			out[n++] = (char)c;
	}
	out[n] = '\0';
}

int contain_fakesvc_irc(json_t **out, int fd, const contain_fakesvc_opts *o)
{
	int rc = MAMORI_OK;
	reader *r = calloc(1, sizeof(*r));
	size_t cap = o->max_line < 64 ? 64 : o->max_line + 1;
	char *line = calloc(1, cap);
	json_t *rec = json_object();
	json_t *nicks = json_array(), *channels = json_array(), *msgs = json_array();
	const char *end = "eof";
	const char *srv = "irc.example";
	char nick[64] = "*", user[64] = "";
	bool registered = false;
	size_t lines = 0;
	*out = NULL;
	if (!r || !line || !rec || !nicks || !channels || !msgs) {
		rc = mamori_fail(MAMORI_ENOMEM, "irc service");
		goto done;
	}
	reader_init(r, fd, o);
	json_object_set_new(rec, "service", json_string("irc"));
	reply(r, ":%s NOTICE * :*** Looking up your hostname...\r\n", srv);
	for (;;) {
		size_t len;
		line_status s = read_line(r, line, cap, &len);
		if (s == LINE_TOO_LONG) {
			reply(r, ":%s 417 %s :Input line was too long\r\n", srv, nick);
			continue;
		}
		if (s != LINE_OK) {
			end = status_name(s);
			break;
		}
		lines++;
		irc_msg m;
		irc_split(line, &m);
		if (strcmp(m.cmd, "NICK") == 0 && m.n >= 1) {
			irc_token(nick, sizeof(nick), m.params[0]);
			if (!nick[0])
				snprintf(nick, sizeof(nick), "*");
			append_capped(nicks, safe_cstr(nick));
			json_object_set_new(rec, "nick", safe_cstr(nick));
		} else if (strcmp(m.cmd, "USER") == 0 && m.n >= 1) {
			irc_token(user, sizeof(user), m.params[0]);
			json_object_set_new(rec, "user", safe_cstr(user));
			if (m.n >= 4)
				json_object_set_new(rec, "realname", safe_cstr(m.params[m.n - 1]));
		} else if (strcmp(m.cmd, "PING") == 0) {
			char tok[128];
			irc_token(tok, sizeof(tok), m.n ? m.params[0] : srv);
			reply(r, ":%s PONG %s :%s\r\n", srv, srv, tok);
		} else if (strcmp(m.cmd, "JOIN") == 0 && m.n >= 1) {
			char list[512];
			snprintf(list, sizeof(list), "%s", m.params[0]);
			char *save = NULL;
			for (char *c = strtok_r(list, ",", &save); c; c = strtok_r(NULL, ",", &save)) {
				char chan[64];
				irc_token(chan, sizeof(chan), c);
				if (!chan[0])
					continue;
				append_capped(channels, safe_cstr(chan));
				reply(r, ":%s!%s@inmate JOIN :%s\r\n", nick, user[0] ? user : nick, chan);
				reply(r, ":%s 353 %s = %s :@%s\r\n", srv, nick, chan, nick);
				reply(r, ":%s 366 %s %s :End of /NAMES list.\r\n", srv, nick, chan);
			}
		} else if ((strcmp(m.cmd, "PRIVMSG") == 0 || strcmp(m.cmd, "NOTICE") == 0) && m.n >= 2) {
			json_t *pm = json_object();
			json_object_set_new(pm, "command",
					    json_string(m.cmd[0] == 'P' ? "PRIVMSG" : "NOTICE"));
			json_object_set_new(pm, "target", safe_cstr(m.params[0]));
			json_object_set_new(pm, "text", safe_cstr(m.params[m.n - 1]));
			append_capped(msgs, pm);
		} else if (strcmp(m.cmd, "QUIT") == 0) {
			reply(r, "ERROR :Closing Link: %s (Quit)\r\n", nick);
			end = "quit";
			break;
		}
		if (!registered && strcmp(nick, "*") != 0 && user[0]) {
			registered = true;
			reply(r, ":%s 001 %s :Welcome to the Internet Relay Network %s!%s@inmate\r\n", srv,
			      nick, nick, user);
			reply(r, ":%s 002 %s :Your host is %s, running version ngircd-26\r\n", srv, nick,
			      srv);
			reply(r, ":%s 003 %s :This server has been started Mon Jan 1 2024\r\n", srv, nick);
			reply(r, ":%s 004 %s %s ngircd-26 abBcCioqrRswx abehiIklmMnoOPqQrRstvVz\r\n", srv,
			      nick, srv);
			reply(r, ":%s 375 %s :- %s message of the day\r\n", srv, nick, srv);
			reply(r, ":%s 372 %s :- Welcome.\r\n", srv, nick);
			reply(r, ":%s 376 %s :End of MOTD command.\r\n", srv, nick);
		}
	}
done:
	if (rec) {
		json_object_set_new(rec, "nicks", nicks);
		json_object_set_new(rec, "channels", channels);
		json_object_set_new(rec, "messages", msgs);
		json_object_set_new(rec, "lines", json_integer((json_int_t)lines));
		json_object_set_new(rec, "end", json_string(end));
	} else {
		json_decref(nicks);
		json_decref(channels);
		json_decref(msgs);
	}
	free(line);
	free(r);
	*out = rec;
	return rc;
}

/* ------------------------------------------------------------------ */
/* Generic sink                                                         */
/* ------------------------------------------------------------------ */

int contain_fakesvc_sink(json_t **out, int fd, const contain_fakesvc_opts *o)
{
	int rc = MAMORI_OK;
	reader *r = calloc(1, sizeof(*r));
	size_t keep_cap = o->sink_keep ? o->sink_keep : 1;
	uint8_t *keep = malloc(keep_cap);
	char *hex = malloc(keep_cap * 2 + 1);
	json_t *rec = json_object();
	size_t kept = 0;
	line_status s = LINE_OK;
	*out = NULL;
	if (!r || !keep || !hex || !rec) {
		rc = mamori_fail(MAMORI_ENOMEM, "sink service");
		goto done;
	}
	reader_init(r, fd, o);
	while ((s = reader_fill(r)) == LINE_OK) {
		size_t n = r->end;
		if (kept < o->sink_keep) {
			size_t take = o->sink_keep - kept < n ? o->sink_keep - kept : n;
			memcpy(keep + kept, r->buf, take);
			kept += take;
		}
	}
	for (size_t i = 0; i < kept; i++)
		snprintf(hex + 2 * i, 3, "%02x", keep[i]);
	hex[2 * kept] = '\0';
	json_object_set_new(rec, "service", json_string("sink"));
	json_object_set_new(rec, "bytes", json_integer((json_int_t)r->total));
	json_object_set_new(rec, "head_hex", json_string(hex));
	json_object_set_new(rec, "head_text", safe_str((const char *)keep, kept));
	json_object_set_new(rec, "end", json_string(status_name(s)));
done:
	free(hex);
	free(keep);
	free(r);
	*out = rec;
	return rc;
}

/* ------------------------------------------------------------------ */
/* DNS over TCP                                                         */
/* ------------------------------------------------------------------ */

static line_status read_exact(reader *r, uint8_t *buf, size_t n)
{
	size_t got = 0;
	while (got < n) {
		if (r->pos == r->end) {
			line_status s = reader_fill(r);
			if (s != LINE_OK)
				return s;
		}
		size_t take = r->end - r->pos < n - got ? r->end - r->pos : n - got;
		memcpy(buf + got, r->buf + r->pos, take);
		r->pos += take;
		got += take;
	}
	return LINE_OK;
}

int contain_fakesvc_dns_tcp(json_t **out, int fd, const contain_fakesvc_opts *o)
{
	int rc = MAMORI_OK;
	reader *r = calloc(1, sizeof(*r));
	uint8_t *query = malloc(65535), *answer = malloc(65537);
	json_t *rec = json_object(), *names = json_array();
	const char *end = "eof";
	contain_dns_config fallback;
	memset(&fallback, 0, sizeof(fallback));
	static const uint8_t sinkhole[4] = { 198, 51, 100, 53 };
	memcpy(fallback.sinkhole, sinkhole, 4);
	fallback.ttl = 60;
	const contain_dns_config *cfg = o->dns ? o->dns : &fallback;
	*out = NULL;
	if (!r || !query || !answer || !rec || !names) {
		rc = mamori_fail(MAMORI_ENOMEM, "dns service");
		goto done;
	}
	reader_init(r, fd, o);
	json_object_set_new(rec, "service", json_string("dns"));
	for (;;) {
		uint8_t lenb[2] = { 0, 0 };
		size_t qlen = 0;
		line_status s = read_exact(r, lenb, 2);
		if (s == LINE_OK) {
			qlen = (size_t)lenb[0] << 8 | lenb[1];
			s = read_exact(r, query, qlen);
		}
		if (s != LINE_OK) {
			end = status_name(s);
			break;
		}
		size_t alen = 0;
		char qname[256];
		if (contain_fakedns_answer(answer + 2, 65535, &alen, query, qlen, cfg, qname) != MAMORI_OK) {
			end = "malformed";
			break;
		}
		append_capped(names, safe_cstr(qname));
		answer[0] = (uint8_t)(alen >> 8);
		answer[1] = (uint8_t)alen;
		if (!write_all(fd, answer, alen + 2)) {
			end = "error";
			break;
		}
	}
done:
	if (rec) {
		json_object_set_new(rec, "queries", names);
		json_object_set_new(rec, "end", json_string(end));
	} else {
		json_decref(names);
	}
	free(answer);
	free(query);
	free(r);
	*out = rec;
	return rc;
}

int contain_fakesvc_run(json_t **out, const char *service, int fd, const contain_fakesvc_opts *o)
{
	*out = NULL;
	if (strcmp(service, "smtp-sink") == 0)
		return contain_fakesvc_smtp(out, fd, o);
	if (strcmp(service, "http") == 0)
		return contain_fakesvc_http(out, fd, o);
	if (strcmp(service, "irc") == 0)
		return contain_fakesvc_irc(out, fd, o);
	if (strcmp(service, "sink") == 0)
		return contain_fakesvc_sink(out, fd, o);
	if (strcmp(service, "dns") == 0)
		return contain_fakesvc_dns_tcp(out, fd, o);
	return mamori_fail(MAMORI_EINVAL, "no stream service named '%.32s'", service);
}
