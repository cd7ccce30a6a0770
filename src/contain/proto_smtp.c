/*
 * SMTP classifier and parser. The server speaks first ("220 ... ESMTP"),
 * and a bare "220" banner is shared with FTP, so the banner only decides
 * when it names its protocol; otherwise the client's first command does
 * (EHLO/HELO here, USER in proto_ftp.c). From the client: HELO/EHLO, MAIL
 * FROM, RCPT TO (count and list), DATA, and from the message the Subject
 * header and its size; from the server: banner and reply codes. After
 * STARTTLS is accepted the rest is TLS and is not parsed. Lines are bounded
 * by PROTO_LINE_MAX, recipients listed by PROTO_MAX_LIST (all counted).
 */
#include <stdlib.h>
#include <string.h>

#include "proto.h"

typedef struct smtp_state {
	proto_lines lines[2];
	bool in_data;	    /* client: inside DATA, until "." */
	bool in_headers;    /* client: inside the message's header block */
	bool starttls;	    /* client asked for STARTTLS */
	bool tls;	    /* the server accepted it: stop parsing */
	bool seen_banner;   /* server: the first reply line was seen */
	bool banner_done;   /* server: the greeting (which answers no command) is over */
	json_t *from;	    /* the current envelope sender */
	json_t *subject;    /* the current message's Subject */
	size_t rcpts;	    /* recipients of the current envelope */
	uint64_t data_size; /* bytes of the current message */
	size_t awaiting;    /* client commands not answered yet (pipelining) */
} smtp_state;

/* Does a 220 banner name SMTP, FTP, or neither? Shared knowledge with
 * proto_ftp.c, kept as plain word lists so both stay readable. */
static bool banner_says(const char *s, size_t len, const char *const *words)
{
	for (const char *const *w = words; *w; w++) {
		size_t n = strlen(*w);
		for (size_t i = 0; i + n <= len; i++)
			if (proto_prefix_ci(s + i, n, *w))
				return true;
	}
	return false;
}

static const char *const smtp_words[] = { "SMTP", "ESMTP", "Postfix", "Exim", "Sendmail", "mail", NULL };
static const char *const ftp_words[] = { "FTP", "FileZilla", NULL };

static int smtp_probe(const uint8_t *buf, size_t len, proto_dir dir, proto_transport transport)
{
	const char *s = (const char *)buf;
	const uint8_t *nl = memchr(buf, '\n', len);
	size_t line = nl ? (size_t)(nl - buf) : len;
	(void)transport;
	if (!proto_looks_text(buf, line))
		return 0;
	if (dir == PROTO_TO_CLIENT) {
		static const char code[] = "220";
		if (memcmp(s, code, len < 3 ? len : 3) != 0)
			return 0;
		if (!nl)
			return len < 512 ? PROTO_PROBE_MORE : 0;
		if (line < 4 || (s[3] != ' ' && s[3] != '-' && s[3] != '\r'))
			return 0;
		if (banner_says(s, line, ftp_words))
			return 0;
		return banner_says(s, line, smtp_words) ? 85 : 25;
	}
	if (!nl)
		return len < 512 ? PROTO_PROBE_MORE : 0;
	if (line > 0 && s[line - 1] == '\r')
		line--;
	if (proto_word_is(s, line, "EHLO") || proto_word_is(s, line, "HELO"))
		return 90;
	if (proto_prefix_ci(s, line, "MAIL FROM:"))
		return 80;
	return 0;
}

static int smtp_state_new(void **out, proto_transport transport)
{
	smtp_state *st = calloc(1, sizeof(*st));
	(void)transport;
	*out = st;
	if (!st)
		return mamori_fail(MAMORI_ENOMEM, "smtp: no memory for state");
	proto_lines_init(&st->lines[0], PROTO_LINE_MAX);
	proto_lines_init(&st->lines[1], PROTO_LINE_MAX);
	return MAMORI_OK;
}

static void smtp_state_free(void *state)
{
	smtp_state *st = state;
	if (!st)
		return;
	json_decref(st->from);
	json_decref(st->subject);
	free(st);
}

/* The address in "MAIL FROM:<a@b> SIZE=1" or "RCPT TO: <c@d>". */
static json_t *smtp_address(const char *arg, size_t len)
{
	size_t i = 0;
	while (i < len && arg[i] == ' ')
		i++;
	const char *lt = memchr(arg + i, '<', len - i);
	if (lt) {
		const char *gt = memchr(lt, '>', (size_t)(arg + len - lt));
		size_t end = gt ? (size_t)(gt - arg) : len;
		return proto_str(lt + 1, end - (size_t)(lt + 1 - arg));
	}
	size_t end = i;
	while (end < len && arg[end] != ' ')
		end++;
	return proto_str(arg + i, end - i);
}

static void reset_envelope(smtp_state *st)
{
	json_decref(st->from);
	json_decref(st->subject);
	st->from = st->subject = NULL;
	st->rcpts = 0;
	st->data_size = 0;
}

static int data_line(smtp_state *st, const char *line, size_t len, proto_out *out)
{
	if (len == 1 && line[0] == '.') {
		st->awaiting++;
		json_t *ev = json_pack("{s:O?,s:I,s:O?,s:I}", "from", st->from, "rcpt_count",
				       (json_int_t)st->rcpts, "subject", st->subject, "size",
				       (json_int_t)st->data_size);
		st->in_data = false;
		proto_meta_add(out, "messages", 1);
		if (st->subject)
			proto_meta_append(out, "subjects", json_incref(st->subject));
		reset_envelope(st);
		return proto_emit(out, "smtp_message", ev);
	}
	st->data_size += len + 2;
	if (st->in_headers) {
		if (len == 0) {
			st->in_headers = false;
		} else if (!st->subject && len > 8 && proto_prefix_ci(line, len, "Subject:")) {
			size_t i = 8;
			while (i < len && line[i] == ' ')
				i++;
			st->subject = proto_str(line + i, len - i);
		}
	}
	return MAMORI_OK;
}

static int client_line(smtp_state *st, const char *line, size_t len, proto_out *out)
{
	if (st->in_data)
		return data_line(st, line, len, out);
	st->awaiting++;
	if (proto_word_is(line, len, "HELO") || proto_word_is(line, len, "EHLO")) {
		json_t *name = proto_str(len > 5 ? line + 5 : "", len > 5 ? len - 5 : 0);
		proto_meta_set(out, "helo", json_incref(name));
		return proto_emit(out, "smtp_helo",
				  json_pack("{s:o,s:o}", "command", json_stringn(line, 4), "name", name));
	}
	if (proto_prefix_ci(line, len, "MAIL FROM:")) {
		reset_envelope(st);
		st->from = smtp_address(line + 10, len - 10);
		proto_meta_append_unique(out, "mail_from", json_string_value(st->from),
					 json_string_length(st->from));
		return proto_emit(out, "smtp_mail_from", json_pack("{s:O?}", "from", st->from));
	}
	if (proto_prefix_ci(line, len, "RCPT TO:")) {
		json_t *to = smtp_address(line + 8, len - 8);
		st->rcpts++;
		proto_meta_add(out, "rcpt_count", 1);
		proto_meta_append_unique(out, "rcpt_to", json_string_value(to), json_string_length(to));
		return proto_emit(out, "smtp_rcpt_to", json_pack("{s:o}", "to", to));
	}
	if (proto_word_is(line, len, "DATA")) {
		st->in_data = true;
		st->in_headers = true;
		return proto_emit(out, "smtp_data", json_pack("{s:I}", "rcpt_count", (json_int_t)st->rcpts));
	}
	if (proto_word_is(line, len, "STARTTLS")) {
		st->starttls = true;
		return proto_meta_set(out, "starttls", json_true());
	}
	if (proto_word_is(line, len, "AUTH") && len > 5) {
		const char *sp = memchr(line + 5, ' ', len - 5);
		size_t n = sp ? (size_t)(sp - (line + 5)) : len - 5;
		return proto_meta_set(out, "auth", proto_str(line + 5, n));
	}
	if (proto_word_is(line, len, "RSET")) {
		reset_envelope(st);
		return MAMORI_OK;
	}
	if (proto_word_is(line, len, "QUIT"))
		return proto_emit(out, "smtp_quit", NULL);
	return MAMORI_OK;
}

static int server_line(smtp_state *st, const char *line, size_t len, proto_out *out)
{
	if (len < 3 || line[0] < '1' || line[0] > '5' || line[1] < '0' || line[1] > '9' || line[2] < '0' ||
	    line[2] > '9')
		return mamori_fail(MAMORI_EFORMAT, "smtp: server line without a reply code");
	int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	bool last = len == 3 || line[3] == ' ';
	if (!st->seen_banner) {
		st->seen_banner = true;
		proto_meta_set(out, "banner", proto_str(line, len));
		proto_meta_set(out, "banner_code", json_integer(code));
	}
	if (!last)
		return MAMORI_OK; /* continuation of a multi-line reply */
	proto_meta_add(out, "replies", 1);
	if (!st->banner_done)
		st->banner_done = true;
	else if (st->awaiting > 0)
		st->awaiting--;
	/* The reply to DATA (the last command) is a refusal and no message
	 * byte came: the client's next lines are commands again. */
	if (st->in_data && st->data_size == 0 && st->awaiting == 0 && code >= 400)
		st->in_data = false;
	if (code >= 500)
		proto_meta_add(out, "rejections", 1);
	if (code == 220 && st->starttls)
		st->tls = true;
	return MAMORI_OK;
}

static int smtp_line(void *ctx, const char *line, size_t len, bool overlong, proto_dir dir, proto_out *out)
{
	smtp_state *st = ctx;
	(void)overlong; /* proto_lines_feed() flags it in the metadata */
	return dir == PROTO_TO_SERVER ? client_line(st, line, len, out) : server_line(st, line, len, out);
}

static int smtp_parse(void *state, const uint8_t *buf, size_t len, proto_dir dir, proto_out *out)
{
	smtp_state *st = state;
	if (st->tls)
		return MAMORI_OK;
	return proto_lines_feed(&st->lines[dir], buf, len, smtp_line, st, dir, out, NULL);
}

const proto_parser proto_smtp = {
	.name = "smtp",
	.transports = PROTO_TCP,
	.probe = smtp_probe,
	.state_new = smtp_state_new,
	.parse = smtp_parse,
	.state_free = smtp_state_free,
};
