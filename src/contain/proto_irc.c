/*
 * IRC classifier and parser (RFC 1459/2812 message framing). From the
 * client: NICK, USER, PASS (length only), JOIN channels, PRIVMSG/NOTICE
 * target and text, PING, QUIT. From the server: its name, the numerics it
 * sent, the topic of joined channels and every PRIVMSG/NOTICE it relays,
 * because a bot's commands arrive as channel messages or topics. Lines are
 * bounded by PROTO_LINE_MAX (IRCv3 tags included; longer ones are flagged),
 * messages by IRC_MAX_PARAMS parameters.
 */
#include <stdlib.h>
#include <string.h>

#include "proto.h"

#define IRC_MAX_PARAMS 15

typedef struct irc_state {
	proto_lines lines[2];
} irc_state;

typedef struct irc_msg {
	const char *prefix;
	size_t prefix_len;
	const char *cmd;
	size_t cmd_len;
	const char *param[IRC_MAX_PARAMS];
	size_t param_len[IRC_MAX_PARAMS];
	size_t n_params;
} irc_msg;

/* Split one line into prefix, command and parameters; false when there is
 * no command. The last parameter may be a ":trailing" one with spaces. */
static bool irc_split(const char *line, size_t len, irc_msg *m)
{
	size_t i = 0;
	memset(m, 0, sizeof(*m));
	if (i < len && line[i] == '@') { /* IRCv3 message tags */
		while (i < len && line[i] != ' ')
			i++;
		while (i < len && line[i] == ' ')
			i++;
	}
	if (i < len && line[i] == ':') {
		m->prefix = line + i + 1;
		while (i < len && line[i] != ' ')
			i++;
		m->prefix_len = (size_t)(line + i - m->prefix);
		while (i < len && line[i] == ' ')
			i++;
	}
	m->cmd = line + i;
	while (i < len && line[i] != ' ')
		i++;
	m->cmd_len = (size_t)(line + i - m->cmd);
	if (m->cmd_len == 0)
		return false;
	while (i < len && m->n_params < IRC_MAX_PARAMS) {
		while (i < len && line[i] == ' ')
			i++;
		if (i >= len)
			break;
		if (line[i] == ':' || m->n_params == IRC_MAX_PARAMS - 1) {
			i += line[i] == ':';
			m->param[m->n_params] = line + i;
			m->param_len[m->n_params++] = len - i;
			break;
		}
		m->param[m->n_params] = line + i;
		while (i < len && line[i] != ' ')
			i++;
		m->param_len[m->n_params] = (size_t)(line + i - m->param[m->n_params]);
		m->n_params++;
	}
	return true;
}

static bool cmd_is(const irc_msg *m, const char *name)
{
	return m->cmd_len == strlen(name) && proto_prefix_ci(m->cmd, m->cmd_len, name);
}

static bool is_numeric(const irc_msg *m)
{
	return m->cmd_len == 3 && m->cmd[0] >= '0' && m->cmd[0] <= '9' && m->cmd[1] >= '0' &&
	       m->cmd[1] <= '9' && m->cmd[2] >= '0' && m->cmd[2] <= '9';
}

static bool all_printable(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 && s[i] != '\t' && s[i] != '\r')
			return false;
	return true;
}

/* Score one complete line. */
static int irc_probe_line(const char *line, size_t len, proto_dir dir)
{
	irc_msg m;
	if (!all_printable(line, len) || !irc_split(line, len, &m))
		return 0;
	if (dir == PROTO_TO_SERVER) {
		if (m.prefix)
			return 0;
		if (cmd_is(&m, "NICK") && m.n_params >= 1)
			return 85;
		/* "USER guest 0 * :Real Name" has four parameters; FTP's
		 * "USER anonymous" has one. */
		if (cmd_is(&m, "USER") && m.n_params >= 4)
			return 80;
		if (cmd_is(&m, "CAP") && m.n_params >= 1)
			return 70;
		if (cmd_is(&m, "PASS") && m.n_params == 1)
			return 20; /* FTP has PASS too; the next line decides */
		return 0;
	}
	if ((m.prefix && (is_numeric(&m) || cmd_is(&m, "NOTICE") || cmd_is(&m, "PING"))) ||
	    (cmd_is(&m, "NOTICE") && m.n_params >= 2) || (cmd_is(&m, "PING") && m.n_params == 1))
		return 75;
	if (cmd_is(&m, "ERROR") && m.n_params >= 1)
		return 40;
	return 0;
}

static int irc_probe(const uint8_t *buf, size_t len, proto_dir dir, proto_transport transport)
{
	const char *s = (const char *)buf;
	int best = 0;
	size_t i = 0;
	(void)transport;
	/* Clients often open with "PASS x" or "CAP LS" before NICK, so look
	 * at the first few lines. */
	for (int n = 0; n < 4 && i < len; n++) {
		const char *nl = memchr(s + i, '\n', len - i);
		if (!nl)
			return best == 0 && len - i < 512 && proto_looks_text(buf + i, len - i)
				       ? PROTO_PROBE_MORE
				       : best;
		size_t l = (size_t)(nl - (s + i));
		if (l > 0 && s[i + l - 1] == '\r')
			l--;
		int score = irc_probe_line(s + i, l, dir);
		if (score > best)
			best = score;
		if (score == 0 && n == 0)
			return 0;
		i = (size_t)(nl - s) + 1;
	}
	return best;
}

static int irc_state_new(void **out, proto_transport transport)
{
	irc_state *st = calloc(1, sizeof(*st));
	(void)transport;
	*out = st;
	if (!st)
		return mamori_fail(MAMORI_ENOMEM, "irc: no memory for state");
	proto_lines_init(&st->lines[0], PROTO_LINE_MAX);
	proto_lines_init(&st->lines[1], PROTO_LINE_MAX);
	return MAMORI_OK;
}

static void irc_state_free(void *state)
{
	free(state);
}

static int irc_message_event(const irc_msg *m, proto_dir dir, proto_out *out)
{
	json_t *ev;
	if (m->n_params < 2)
		return MAMORI_OK;
	ev = json_pack("{s:o,s:o}", "target", proto_str(m->param[0], m->param_len[0]), "text",
		       proto_str(m->param[1], m->param_len[1]));
	if (!ev)
		return mamori_fail(MAMORI_ENOMEM, "irc: no memory for an event");
	if (m->prefix)
		json_object_set_new(ev, "from", proto_str(m->prefix, m->prefix_len));
	json_object_set_new(ev, "command", json_string(cmd_is(m, "NOTICE") ? "NOTICE" : "PRIVMSG"));
	proto_meta_add(out, dir == PROTO_TO_SERVER ? "messages_sent" : "messages_received", 1);
	if (dir == PROTO_TO_SERVER)
		proto_meta_append_unique(out, "targets", m->param[0], m->param_len[0]);
	return proto_emit(out, dir == PROTO_TO_SERVER ? "irc_privmsg" : "irc_privmsg_in", ev);
}

static int irc_client(const irc_msg *m, proto_out *out)
{
	if (cmd_is(m, "NICK") && m->n_params >= 1) {
		proto_meta_set(out, "nick", proto_str(m->param[0], m->param_len[0]));
		return proto_emit(out, "irc_nick",
				  json_pack("{s:o}", "nick", proto_str(m->param[0], m->param_len[0])));
	}
	if (cmd_is(m, "USER") && m->n_params >= 1) {
		proto_meta_set(out, "user", proto_str(m->param[0], m->param_len[0]));
		if (m->n_params >= 4)
			proto_meta_set(out, "realname", proto_str(m->param[3], m->param_len[3]));
		return proto_emit(out, "irc_user",
				  json_pack("{s:o}", "user", proto_str(m->param[0], m->param_len[0])));
	}
	if (cmd_is(m, "PASS") && m->n_params >= 1)
		return proto_meta_set(out, "pass_length", json_integer((json_int_t)m->param_len[0]));
	if (cmd_is(m, "JOIN") && m->n_params >= 1) {
		/* "JOIN #a,#b key1,key2": one event per channel. */
		const char *p = m->param[0], *end = m->param[0] + m->param_len[0];
		int err = MAMORI_OK;
		while (p < end && err == MAMORI_OK) {
			const char *comma = memchr(p, ',', (size_t)(end - p));
			size_t n = comma ? (size_t)(comma - p) : (size_t)(end - p);
			if (n > 0) {
				err = proto_meta_append_unique(out, "channels", p, n);
				if (err == MAMORI_OK)
					err = proto_emit(out, "irc_join",
							 json_pack("{s:o}", "channel", proto_str(p, n)));
			}
			p += n + 1;
		}
		return err;
	}
	if (cmd_is(m, "PRIVMSG") || cmd_is(m, "NOTICE"))
		return irc_message_event(m, PROTO_TO_SERVER, out);
	if (cmd_is(m, "PING"))
		return proto_meta_add(out, "pings_sent", 1);
	if (cmd_is(m, "QUIT"))
		return proto_emit(out, "irc_quit", NULL);
	return MAMORI_OK;
}

static int irc_server(const irc_msg *m, proto_out *out)
{
	if (is_numeric(m)) {
		if (m->prefix && !json_object_get(out->meta, "server"))
			proto_meta_set(out, "server", proto_str(m->prefix, m->prefix_len));
		if (memcmp(m->cmd, "001", 3) == 0)
			proto_meta_set(out, "registered", json_true());
		/* 332: "<nick> <channel> :<topic>"; bots read orders there. */
		if (memcmp(m->cmd, "332", 3) == 0 && m->n_params >= 3)
			proto_emit(out, "irc_topic",
				   json_pack("{s:o,s:o}", "channel", proto_str(m->param[1], m->param_len[1]),
					     "topic", proto_str(m->param[2], m->param_len[2])));
		return proto_meta_append_unique(out, "numerics", m->cmd, 3);
	}
	if (cmd_is(m, "PRIVMSG") || cmd_is(m, "NOTICE"))
		return irc_message_event(m, PROTO_TO_CLIENT, out);
	if (cmd_is(m, "TOPIC") && m->n_params >= 2)
		return proto_emit(out, "irc_topic",
				  json_pack("{s:o,s:o}", "channel", proto_str(m->param[0], m->param_len[0]),
					    "topic", proto_str(m->param[1], m->param_len[1])));
	if (cmd_is(m, "PING"))
		return proto_meta_add(out, "pings_received", 1);
	return MAMORI_OK;
}

static int irc_line(void *ctx, const char *line, size_t len, bool overlong, proto_dir dir, proto_out *out)
{
	irc_msg m;
	(void)ctx;
	(void)overlong; /* proto_lines_feed() flags it in the metadata */
	if (len == 0 || !irc_split(line, len, &m))
		return MAMORI_OK;
	return dir == PROTO_TO_SERVER ? irc_client(&m, out) : irc_server(&m, out);
}

static int irc_parse(void *state, const uint8_t *buf, size_t len, proto_dir dir, proto_out *out)
{
	irc_state *st = state;
	return proto_lines_feed(&st->lines[dir], buf, len, irc_line, st, dir, out, NULL);
}

const proto_parser proto_irc = {
	.name = "irc",
	.transports = PROTO_TCP,
	.probe = irc_probe,
	.state_new = irc_state_new,
	.parse = irc_parse,
	.state_free = irc_state_free,
};
