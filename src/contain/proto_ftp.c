/*
 * FTP control-channel classifier and parser. The server speaks first with a
 * "220" banner that SMTP shares: the banner decides only when it says "FTP"
 * (or names an FTP server, and not "SMTP"); otherwise the client's first command does (USER with a
 * single argument, FEAT, SYST, AUTH TLS). From the client: USER, PASS (only
 * its length is kept; the password never enters metadata), RETR/STOR/APPE
 * file names, CWD, PORT/PASV; from the server: banner, login result and the
 * 227 passive address, which the gateway needs to follow the data channel.
 * After AUTH TLS is accepted the rest is TLS and is not parsed. Lines are
 * bounded by PROTO_LINE_MAX.
 */
#include <stdlib.h>
#include <string.h>

#include "proto.h"

typedef struct ftp_state {
	proto_lines lines[2];
	bool seen_banner;
	bool auth_tls; /* the client asked for AUTH TLS/SSL */
	bool tls;      /* ...and the server accepted: stop parsing */
} ftp_state;

static bool says_word(const char *s, size_t len, const char *word)
{
	size_t n = strlen(word);
	for (size_t i = 0; i + n <= len; i++)
		if (proto_prefix_ci(s + i, n, word))
			return true;
	return false;
}

static int ftp_probe(const uint8_t *buf, size_t len, proto_dir dir, proto_transport transport)
{
	const char *s = (const char *)buf;
	const uint8_t *nl = memchr(buf, '\n', len);
	size_t line = nl ? (size_t)(nl - buf) : len;
	(void)transport;
	if (!proto_looks_text(buf, line))
		return 0;
	if (!nl)
		return len < 512 ? PROTO_PROBE_MORE : 0;
	if (line > 0 && s[line - 1] == '\r')
		line--;
	if (dir == PROTO_TO_CLIENT) {
		if (line < 3 || memcmp(s, "220", 3) != 0 || (line > 3 && s[3] != ' ' && s[3] != '-'))
			return 0;
		if (says_word(s, line, "SMTP"))
			return 0;
		/* FileZilla Server's banner does not say "FTP". */
		return says_word(s, line, "FTP") || says_word(s, line, "FileZilla") ? 85 : 25;
	}
	if (proto_word_is(s, line, "USER")) {
		/* One argument: "USER anonymous". IRC's USER has four. */
		size_t spaces = 0;
		for (size_t i = 5; i < line; i++)
			spaces += s[i] == ' ';
		return line > 5 && spaces == 0 ? 70 : 0;
	}
	if (proto_word_is(s, line, "AUTH") && line > 5 &&
	    (proto_prefix_ci(s + 5, line - 5, "TLS") || proto_prefix_ci(s + 5, line - 5, "SSL")))
		return 60;
	if (proto_word_is(s, line, "FEAT") || proto_word_is(s, line, "SYST") ||
	    proto_word_is(s, line, "OPTS"))
		return 60;
	return 0;
}

static int ftp_state_new(void **out, proto_transport transport)
{
	ftp_state *st = calloc(1, sizeof(*st));
	(void)transport;
	*out = st;
	if (!st)
		return mamori_fail(MAMORI_ENOMEM, "ftp: no memory for state");
	proto_lines_init(&st->lines[0], PROTO_LINE_MAX);
	proto_lines_init(&st->lines[1], PROTO_LINE_MAX);
	return MAMORI_OK;
}

static void ftp_state_free(void *state)
{
	free(state);
}

/* "227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)" -> address and port. */
static int ftp_pasv(const char *line, size_t len, proto_out *out)
{
	const char *p = memchr(line, '(', len);
	unsigned v[6] = { 0 };
	size_t k = 0, digits = 0;
	if (!p)
		return MAMORI_OK;
	for (p++; p < line + len && k < 6; p++) {
		if (*p >= '0' && *p <= '9' && digits < 3) {
			v[k] = v[k] * 10 + (unsigned)(*p - '0');
			digits++;
		} else if ((*p == ',' || *p == ')') && digits > 0 && v[k] <= 255) {
			k++;
			digits = 0;
			if (*p == ')')
				break;
		} else {
			return MAMORI_OK; /* not the usual form; nothing to record */
		}
	}
	if (k != 6)
		return MAMORI_OK;
	char addr[16];
	snprintf(addr, sizeof(addr), "%u.%u.%u.%u", v[0], v[1], v[2], v[3]);
	return proto_emit(out, "ftp_pasv",
			  json_pack("{s:s,s:i}", "address", addr, "port", (int)(v[4] * 256 + v[5])));
}

static int server_line(ftp_state *st, const char *line, size_t len, proto_out *out)
{
	if (len < 3 || line[0] < '1' || line[0] > '5' || line[1] < '0' || line[1] > '9' || line[2] < '0' ||
	    line[2] > '9') {
		/* Continuation lines of multi-line replies may be free text. */
		return st->seen_banner ? MAMORI_OK
				       : mamori_fail(MAMORI_EFORMAT, "ftp: server line without a reply code");
	}
	int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (!st->seen_banner) {
		st->seen_banner = true;
		proto_meta_set(out, "banner", proto_str(line, len));
		return proto_meta_set(out, "banner_code", json_integer(code));
	}
	if (len > 3 && line[3] == '-')
		return MAMORI_OK;
	proto_meta_add(out, "replies", 1);
	switch (code) {
	case 230: return proto_meta_set(out, "logged_in", json_true());
	case 530: return proto_meta_add(out, "login_failures", 1);
	case 227: return ftp_pasv(line, len, out);
	case 234:
		if (st->auth_tls)
			st->tls = true;
		return MAMORI_OK;
	default: return MAMORI_OK;
	}
}

static int client_line(ftp_state *st, const char *line, size_t len, proto_out *out)
{
	const char *arg = len > 5 ? line + 5 : "";
	size_t alen = len > 5 ? len - 5 : 0;
	if (proto_word_is(line, len, "USER")) {
		proto_meta_set(out, "user", proto_str(arg, alen));
		return proto_emit(out, "ftp_user", json_pack("{s:o}", "user", proto_str(arg, alen)));
	}
	if (proto_word_is(line, len, "PASS")) {
		/* The password itself stays out of every record. */
		proto_meta_set(out, "pass", json_string("***"));
		return proto_meta_set(out, "pass_length", json_integer((json_int_t)alen));
	}
	static const struct {
		const char *cmd, *list, *event;
	} transfers[] = { { "RETR", "retrieved", "ftp_retr" },
			  { "STOR", "stored", "ftp_stor" },
			  { "APPE", "stored", "ftp_stor" } };
	for (size_t i = 0; i < sizeof(transfers) / sizeof(transfers[0]); i++) {
		if (!proto_word_is(line, len, transfers[i].cmd))
			continue;
		proto_meta_append_unique(out, transfers[i].list, arg, alen);
		return proto_emit(out, transfers[i].event, json_pack("{s:o}", "file", proto_str(arg, alen)));
	}
	if (proto_word_is(line, len, "CWD"))
		return proto_meta_append_unique(out, "directories", len > 4 ? line + 4 : "",
						len > 4 ? len - 4 : 0);
	if (proto_word_is(line, len, "PASV") || proto_word_is(line, len, "EPSV"))
		return proto_meta_set(out, "data_mode", json_string("passive"));
	if (proto_word_is(line, len, "PORT") || proto_word_is(line, len, "EPRT"))
		return proto_meta_set(out, "data_mode", json_string("active"));
	if (proto_word_is(line, len, "AUTH")) {
		st->auth_tls = true;
		return proto_meta_set(out, "auth_tls", json_true());
	}
	if (proto_word_is(line, len, "QUIT"))
		return proto_emit(out, "ftp_quit", NULL);
	return MAMORI_OK;
}

static int ftp_line(void *ctx, const char *line, size_t len, bool overlong, proto_dir dir, proto_out *out)
{
	ftp_state *st = ctx;
	(void)overlong; /* proto_lines_feed() flags it in the metadata */
	return dir == PROTO_TO_SERVER ? client_line(st, line, len, out) : server_line(st, line, len, out);
}

static int ftp_parse(void *state, const uint8_t *buf, size_t len, proto_dir dir, proto_out *out)
{
	ftp_state *st = state;
	if (st->tls)
		return MAMORI_OK;
	return proto_lines_feed(&st->lines[dir], buf, len, ftp_line, st, dir, out, NULL);
}

const proto_parser proto_ftp = {
	.name = "ftp",
	.transports = PROTO_TCP,
	.probe = ftp_probe,
	.state_new = ftp_state_new,
	.parse = ftp_parse,
	.state_free = ftp_state_free,
};
