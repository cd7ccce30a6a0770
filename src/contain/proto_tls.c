/*
 * TLS classifier and parser: the record layer is followed until the first
 * handshake message of each direction has arrived whole (it may span
 * several records and reads), then the ClientHello gives SNI, offered
 * versions, ALPN and the cipher suite count, and the ServerHello the chosen
 * version and suite. Everything after the hellos is encrypted and only
 * counted. Records are checked (type 20..24, version 3.x, at most 2^14+2048
 * bytes); a hello is at most TLS_MAX_HELLO bytes. SSLv2 hellos are not
 * recognised.
 */
#include <stdlib.h>
#include <string.h>

#include "proto.h"

#define TLS_MAX_RECORD (16384 + 2048)
#define TLS_MAX_HELLO  ((size_t)64 * 1024)

typedef struct tls_side {
	uint8_t hdr[5];
	size_t hdr_len;
	size_t body_left;
	uint8_t *hello; /* the first handshake message, being reassembled */
	size_t hello_len;
	bool done;
} tls_side;

typedef struct tls_state {
	tls_side side[2];
} tls_state;

static int tls_probe(const uint8_t *buf, size_t len, proto_dir dir, proto_transport transport)
{
	/* 16 03 0x LL LL 01|02: a handshake record carrying a hello. */
	const uint8_t want_type = dir == PROTO_TO_SERVER ? 1 : 2;
	(void)transport;
	if (len == 0)
		return PROTO_PROBE_MORE;
	if (buf[0] != 0x16)
		return 0;
	if (len >= 2 && buf[1] != 0x03)
		return 0;
	if (len >= 3 && buf[2] > 0x04)
		return 0;
	if (len < 6)
		return PROTO_PROBE_MORE;
	uint16_t rlen = (uint16_t)(buf[3] << 8 | buf[4]);
	if (rlen < 4 || rlen > TLS_MAX_RECORD || buf[5] != want_type)
		return 0;
	return dir == PROTO_TO_SERVER ? 95 : 60;
}

static int tls_state_new(void **out, proto_transport transport)
{
	tls_state *st = calloc(1, sizeof(*st));
	(void)transport;
	*out = st;
	if (!st)
		return mamori_fail(MAMORI_ENOMEM, "tls: no memory for state");
	return MAMORI_OK;
}

static void tls_state_free(void *state)
{
	tls_state *st = state;
	if (!st)
		return;
	free(st->side[0].hello);
	free(st->side[1].hello);
	free(st);
}

static bool is_grease(uint16_t v)
{
	return (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0xff);
}

static const char *version_name(uint16_t v)
{
	switch (v) {
	case 0x0300: return "SSL 3.0";
	case 0x0301: return "TLS 1.0";
	case 0x0302: return "TLS 1.1";
	case 0x0303: return "TLS 1.2";
	case 0x0304: return "TLS 1.3";
	default: return "unknown";
	}
}

/* server_name: a list of (type, name); only host_name (0) is defined. */
static int ext_sni(mamori_cursor *c, json_t *hello, proto_out *out)
{
	uint16_t list_len, name_len;
	uint8_t type;
	const uint8_t *name;
	if (mamori_read_u16be(c, &list_len) || mamori_read_u8(c, &type) || mamori_read_u16be(c, &name_len) ||
	    mamori_read_bytes(c, name_len, &name))
		return mamori_fail(MAMORI_ETRUNC, "tls: server_name extension cut short");
	if (type != 0)
		return MAMORI_OK;
	json_object_set_new(hello, "sni", proto_str(name, name_len));
	return proto_meta_set(out, "sni", proto_str(name, name_len));
}

static int ext_versions_client(mamori_cursor *c, json_t *hello, uint16_t *best)
{
	uint8_t n;
	if (mamori_read_u8(c, &n) || n % 2)
		return mamori_fail(MAMORI_EFORMAT, "tls: bad supported_versions");
	json_t *list = json_array();
	for (uint8_t i = 0; i < n / 2; i++) {
		uint16_t v;
		if (mamori_read_u16be(c, &v)) {
			json_decref(list);
			return mamori_fail(MAMORI_ETRUNC, "tls: supported_versions cut short");
		}
		if (is_grease(v))
			continue;
		json_array_append_new(list, json_string(version_name(v)));
		if (v > *best && v <= 0x0304)
			*best = v;
	}
	json_object_set_new(hello, "versions", list);
	return MAMORI_OK;
}

static int ext_alpn(mamori_cursor *c, json_t *hello)
{
	uint16_t total;
	if (mamori_read_u16be(c, &total))
		return mamori_fail(MAMORI_ETRUNC, "tls: ALPN cut short");
	json_t *list = json_array();
	while (mamori_cursor_left(c) > 0 && json_array_size(list) < PROTO_MAX_LIST) {
		uint8_t n;
		const uint8_t *p;
		if (mamori_read_u8(c, &n) || mamori_read_bytes(c, n, &p)) {
			json_decref(list);
			return mamori_fail(MAMORI_ETRUNC, "tls: ALPN entry cut short");
		}
		json_array_append_new(list, proto_str(p, n));
	}
	json_object_set_new(hello, "alpn", list);
	return MAMORI_OK;
}

/* Both hellos: version, random, session id, then the parts that differ. */
static int parse_hello(const uint8_t *msg, size_t len, proto_dir dir, proto_out *out)
{
	mamori_cursor c;
	uint16_t legacy, n16, ext_total;
	uint8_t n8;
	const uint8_t *skip;
	int err = MAMORI_OK;
	json_t *hello = json_object();
	if (!hello)
		return mamori_fail(MAMORI_ENOMEM, "tls: no memory");
	mamori_cursor_init(&c, msg, len);
	if (mamori_read_u16be(&c, &legacy) || mamori_cursor_skip(&c, 32) || mamori_read_u8(&c, &n8) ||
	    n8 > 32 || mamori_cursor_skip(&c, n8)) {
		err = mamori_fail(MAMORI_ETRUNC, "tls: hello cut short");
		goto done;
	}
	uint16_t version = legacy;
	if (dir == PROTO_TO_SERVER) {
		if (mamori_read_u16be(&c, &n16) || n16 % 2 || mamori_read_bytes(&c, n16, &skip) ||
		    mamori_read_u8(&c, &n8) || mamori_cursor_skip(&c, n8)) {
			err = mamori_fail(MAMORI_ETRUNC, "tls: ClientHello suites cut short");
			goto done;
		}
		json_object_set_new(hello, "cipher_suites", json_integer(n16 / 2));
	} else {
		uint16_t suite;
		if (mamori_read_u16be(&c, &suite) || mamori_read_u8(&c, &n8)) {
			err = mamori_fail(MAMORI_ETRUNC, "tls: ServerHello cut short");
			goto done;
		}
		json_object_set_new(hello, "cipher_suite", json_integer(suite));
	}
	/* Extensions are optional before TLS 1.2. */
	if (mamori_cursor_left(&c) >= 2) {
		mamori_cursor exts;
		if (mamori_read_u16be(&c, &ext_total) ||
		    mamori_cursor_sub(&exts, &c, c.pos, ext_total) != MAMORI_OK) {
			err = mamori_fail(MAMORI_ETRUNC, "tls: extensions cut short");
			goto done;
		}
		while (mamori_cursor_left(&exts) > 0 && err == MAMORI_OK) {
			uint16_t type, elen;
			mamori_cursor e;
			if (mamori_read_u16be(&exts, &type) || mamori_read_u16be(&exts, &elen) ||
			    mamori_cursor_sub(&e, &exts, exts.pos, elen) != MAMORI_OK) {
				err = mamori_fail(MAMORI_ETRUNC, "tls: extension cut short");
				goto done;
			}
			exts.pos += elen;
			if (type == 0x0000 && dir == PROTO_TO_SERVER)
				err = ext_sni(&e, hello, out);
			else if (type == 0x0010 && dir == PROTO_TO_SERVER)
				err = ext_alpn(&e, hello);
			else if (type == 0x002b && dir == PROTO_TO_SERVER)
				err = ext_versions_client(&e, hello, &version);
			else if (type == 0x002b && mamori_read_u16be(&e, &version) != MAMORI_OK)
				err = mamori_fail(MAMORI_ETRUNC, "tls: selected version cut short");
		}
	}
	if (err != MAMORI_OK)
		goto done;
	json_object_set_new(hello, "version", json_string(version_name(version)));
	json_object_set_new(hello, "legacy_version", json_string(version_name(legacy)));
	proto_meta_set(out, dir == PROTO_TO_SERVER ? "client_version" : "server_version",
		       json_string(version_name(version)));
	err = proto_emit(out, dir == PROTO_TO_SERVER ? "tls_client_hello" : "tls_server_hello", hello);
	hello = NULL;
done:
	json_decref(hello);
	return err;
}

/* Append handshake bytes; parse the first message once it is whole. */
static int hello_bytes(tls_side *sd, const uint8_t *buf, size_t len, proto_dir dir, proto_out *out)
{
	if (!sd->hello) {
		sd->hello = calloc(1, TLS_MAX_HELLO);
		if (!sd->hello)
			return mamori_fail(MAMORI_ENOMEM, "tls: no memory for a hello");
	}
	size_t take = len < TLS_MAX_HELLO - sd->hello_len ? len : TLS_MAX_HELLO - sd->hello_len;
	memcpy(sd->hello + sd->hello_len, buf, take);
	sd->hello_len += take;
	if (sd->hello_len < 4)
		return MAMORI_OK;
	uint8_t want = dir == PROTO_TO_SERVER ? 1 : 2;
	size_t msg_len = (size_t)sd->hello[1] << 16 | (size_t)sd->hello[2] << 8 | sd->hello[3];
	if (sd->hello[0] != want)
		return mamori_fail(MAMORI_EFORMAT, "tls: first handshake message is type %u, not a hello",
				   sd->hello[0]);
	if (msg_len > TLS_MAX_HELLO - 4)
		return mamori_fail(MAMORI_ELIMIT, "tls: hello of %zu bytes is too large", msg_len);
	if (sd->hello_len < 4 + msg_len)
		return MAMORI_OK;
	sd->done = true;
	int err = parse_hello(sd->hello + 4, msg_len, dir, out);
	free(sd->hello);
	sd->hello = NULL;
	return err;
}

static int tls_parse(void *state, const uint8_t *buf, size_t len, proto_dir dir, proto_out *out)
{
	tls_state *st = state;
	tls_side *sd = &st->side[dir];
	int err = MAMORI_OK;
	while (len > 0 && err == MAMORI_OK) {
		if (sd->hdr_len < 5) {
			size_t n = 5 - sd->hdr_len < len ? 5 - sd->hdr_len : len;
			memcpy(sd->hdr + sd->hdr_len, buf, n);
			sd->hdr_len += n;
			buf += n;
			len -= n;
			if (sd->hdr_len < 5)
				break;
			size_t rlen = (size_t)sd->hdr[3] << 8 | sd->hdr[4];
			if (sd->hdr[0] < 20 || sd->hdr[0] > 24 || sd->hdr[1] != 3 || rlen > TLS_MAX_RECORD)
				return mamori_fail(MAMORI_EFORMAT, "tls: bad record header %02x %02x %02x",
						   sd->hdr[0], sd->hdr[1], sd->hdr[2]);
			sd->body_left = rlen;
			proto_meta_add(out,
				       dir == PROTO_TO_SERVER ? "records_to_server" : "records_to_client", 1);
			if (sd->hdr[0] == 21)
				proto_meta_add(out, "alerts", 1);
		}
		size_t n = sd->body_left < len ? sd->body_left : len;
		if (sd->hdr[0] == 22 && !sd->done)
			err = hello_bytes(sd, buf, n, dir, out);
		else if (sd->hdr[0] != 22 && sd->hdr[0] != 21 && !sd->done) /* alerts may come first */
			err = mamori_fail(MAMORI_EFORMAT, "tls: record type %u before the hello", sd->hdr[0]);
		buf += n;
		len -= n;
		sd->body_left -= n;
		if (sd->body_left == 0)
			sd->hdr_len = 0;
	}
	return err;
}

const proto_parser proto_tls = {
	.name = "tls",
	.transports = PROTO_TCP,
	.probe = tls_probe,
	.state_new = tls_state_new,
	.parse = tls_parse,
	.state_free = tls_state_free,
};
