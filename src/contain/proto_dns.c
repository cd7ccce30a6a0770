/*
 * DNS classifier and parser, over UDP (one message per datagram) and TCP
 * (messages behind a two-byte length, reassembled across reads up to 64 KiB).
 * Queries give id, name and type; responses also the rcode and the answer
 * records (A and AAAA as addresses, CNAME/NS/PTR as names). Names are read
 * through a bounded cursor: compression pointers must point strictly
 * backwards (so they cannot loop), a name has at most 255 bytes, a message at
 * most DNS_MAX_QUESTIONS questions and DNS_MAX_ANSWERS parsed answers.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

#define DNS_HEADER	  12
#define DNS_MAX_NAME	  255
#define DNS_MAX_QUESTIONS 4
#define DNS_MAX_ANSWERS	  64

typedef struct dns_side {
	uint8_t len_bytes[2]; /* TCP: the length prefix, possibly split */
	size_t len_have;
	uint8_t *msg; /* TCP: the message being reassembled */
	size_t msg_len, msg_have;
} dns_side;

typedef struct dns_state {
	proto_transport transport;
	dns_side side[2];
} dns_state;

typedef struct dns_header {
	uint16_t id, flags, qd, an, ns, ar;
} dns_header;

static int read_header(mamori_cursor *c, dns_header *h)
{
	if (mamori_read_u16be(c, &h->id) || mamori_read_u16be(c, &h->flags) || mamori_read_u16be(c, &h->qd) ||
	    mamori_read_u16be(c, &h->an) || mamori_read_u16be(c, &h->ns) || mamori_read_u16be(c, &h->ar))
		return mamori_fail(MAMORI_ETRUNC, "dns: header cut short");
	return MAMORI_OK;
}

/* Read a possibly compressed name at the cursor into `out` (dotted, at most
 * DNS_MAX_NAME bytes, "." for the root) and advance past it. */
static int read_name(mamori_cursor *c, char out[DNS_MAX_NAME + 2], size_t *out_len)
{
	size_t pos = c->pos, n = 0, end = 0;
	size_t limit = c->pos; /* pointers must go below this */
	bool jumped = false;
	for (;;) {
		if (pos >= c->size)
			return mamori_fail(MAMORI_ETRUNC, "dns: name runs past the message");
		uint8_t l = c->data[pos];
		if ((l & 0xc0) == 0xc0) {
			if (pos + 1 >= c->size)
				return mamori_fail(MAMORI_ETRUNC, "dns: compression pointer cut short");
			size_t target = (size_t)(l & 0x3f) << 8 | c->data[pos + 1];
			if (target >= limit)
				return mamori_fail(MAMORI_EFORMAT,
						   "dns: compression pointer does not point back");
			if (!jumped)
				end = pos + 2;
			jumped = true;
			limit = target;
			pos = target;
			continue;
		}
		if (l & 0xc0)
			return mamori_fail(MAMORI_EFORMAT, "dns: reserved label type %#x", l);
		if (l == 0) {
			if (!jumped)
				end = pos + 1;
			break;
		}
		if (pos + 1 + l > c->size)
			return mamori_fail(MAMORI_ETRUNC, "dns: label runs past the message");
		if (n + l + 1 > DNS_MAX_NAME)
			return mamori_fail(MAMORI_EFORMAT, "dns: name longer than %d bytes", DNS_MAX_NAME);
		if (n)
			out[n++] = '.';
		memcpy(out + n, c->data + pos + 1, l);
		n += l;
		pos += 1 + (size_t)l;
	}
	if (n == 0)
		out[n++] = '.';
	out[n] = '\0';
	*out_len = n;
	c->pos = end;
	return MAMORI_OK;
}

static int read_question(mamori_cursor *c, char name[DNS_MAX_NAME + 2], size_t *name_len, uint16_t *qtype,
			 uint16_t *qclass)
{
	int err = read_name(c, name, name_len);
	if (err == MAMORI_OK && (mamori_read_u16be(c, qtype) || mamori_read_u16be(c, qclass)))
		err = mamori_fail(MAMORI_ETRUNC, "dns: question cut short");
	return err;
}

/* Score one message (possibly cut short at `len`): PROTO_PROBE_MORE when
 * the bytes so far fit DNS but the question is not complete yet. */
static int probe_message(const uint8_t *buf, size_t len, proto_dir dir, bool partial)
{
	mamori_cursor c;
	dns_header h;
	char name[DNS_MAX_NAME + 2];
	size_t nlen;
	uint16_t qtype, qclass;
	if (len < DNS_HEADER) {
		/* Judge the part of the header that did arrive, so that TCP
		 * junk with a plausible length prefix is turned down early. */
		if (!partial)
			return 0;
		if (len >= 3 && ((buf[2] >> 7) != (dir == PROTO_TO_CLIENT) || ((buf[2] >> 3) & 15) > 5))
			return 0;
		if (len >= 6 && (buf[4] != 0 || buf[5] != 1))
			return 0;
		return PROTO_PROBE_MORE;
	}
	mamori_cursor_init(&c, buf, len);
	if (read_header(&c, &h) != MAMORI_OK)
		return 0;
	bool qr = h.flags >> 15;
	unsigned opcode = (h.flags >> 11) & 15;
	if (h.qd != 1 || opcode > 5 || opcode == 3 || qr != (dir == PROTO_TO_CLIENT))
		return 0;
	if (!qr && (h.an != 0 || h.ns != 0 || h.ar > 2))
		return 0;
	int err = read_question(&c, name, &nlen, &qtype, &qclass);
	if (err == MAMORI_ETRUNC && partial)
		return PROTO_PROBE_MORE;
	if (err != MAMORI_OK || (qclass != 1 && qclass != 3 && qclass != 254 && qclass != 255) || qtype == 0)
		return 0;
	return qr ? 80 : 90;
}

static int dns_probe(const uint8_t *buf, size_t len, proto_dir dir, proto_transport transport)
{
	if (transport == PROTO_UDP)
		return probe_message(buf, len, dir, false);
	if (len < 2)
		return PROTO_PROBE_MORE;
	size_t mlen = (size_t)buf[0] << 8 | buf[1];
	if (mlen < DNS_HEADER + 5)
		return 0;
	size_t have = len - 2 < mlen ? len - 2 : mlen;
	int s = probe_message(buf + 2, have, dir, have < mlen);
	return s > 0 ? s - 5 : s; /* a little less sure than over UDP */
}

static int dns_state_new(void **out, proto_transport transport)
{
	dns_state *st = calloc(1, sizeof(*st));
	*out = st;
	if (!st)
		return mamori_fail(MAMORI_ENOMEM, "dns: no memory for state");
	st->transport = transport;
	return MAMORI_OK;
}

static void dns_state_free(void *state)
{
	dns_state *st = state;
	if (!st)
		return;
	free(st->side[0].msg);
	free(st->side[1].msg);
	free(st);
}

static const char *type_name(uint16_t t)
{
	switch (t) {
	case 1: return "A";
	case 2: return "NS";
	case 5: return "CNAME";
	case 6: return "SOA";
	case 12: return "PTR";
	case 15: return "MX";
	case 16: return "TXT";
	case 28: return "AAAA";
	case 33: return "SRV";
	case 255: return "ANY";
	default: return NULL;
	}
}

static json_t *type_json(uint16_t t)
{
	const char *n = type_name(t);
	return n ? json_string(n) : json_integer(t);
}

/* One answer record into `answers`; A/AAAA also into meta "addresses". */
static int read_answer(mamori_cursor *c, json_t *answers, proto_out *out)
{
	char name[DNS_MAX_NAME + 2], target[DNS_MAX_NAME + 2];
	size_t nlen, tlen;
	uint16_t type, class, rdlen;
	uint32_t ttl;
	const uint8_t *rdata;
	int err = read_name(c, name, &nlen);
	if (err != MAMORI_OK)
		return err;
	if (mamori_read_u16be(c, &type) || mamori_read_u16be(c, &class) || mamori_read_u32be(c, &ttl) ||
	    mamori_read_u16be(c, &rdlen))
		return mamori_fail(MAMORI_ETRUNC, "dns: answer cut short");
	size_t rd_pos = c->pos;
	if (mamori_read_bytes(c, rdlen, &rdata))
		return mamori_fail(MAMORI_ETRUNC, "dns: answer data cut short");
	json_t *rr = json_pack("{s:o,s:o,s:I}", "name", proto_str(name, nlen), "type", type_json(type), "ttl",
			       (json_int_t)ttl);
	if (!rr)
		return mamori_fail(MAMORI_ENOMEM, "dns: no memory");
	if ((type == 1 && rdlen == 4) || (type == 28 && rdlen == 16)) {
		char text[INET6_ADDRSTRLEN];
		inet_ntop(type == 1 ? AF_INET : AF_INET6, rdata, text, sizeof(text));
		json_object_set_new(rr, "address", json_string(text));
		proto_meta_append_unique(out, "addresses", text, strlen(text));
	} else if (type == 5 || type == 2 || type == 12) {
		/* The target may point back into the message, so read it
		 * with the whole message in view, then restore. */
		mamori_cursor t = *c;
		t.pos = rd_pos;
		if (read_name(&t, target, &tlen) == MAMORI_OK)
			json_object_set_new(rr, "target", proto_str(target, tlen));
	}
	json_array_append_new(answers, rr);
	return MAMORI_OK;
}

static int parse_message(const uint8_t *buf, size_t len, proto_dir dir, proto_out *out)
{
	mamori_cursor c;
	dns_header h;
	char name[DNS_MAX_NAME + 2];
	size_t nlen = 0;
	uint16_t qtype = 0, qclass = 0;
	int err;
	json_t *ev = NULL;
	mamori_cursor_init(&c, buf, len);
	if ((err = read_header(&c, &h)) != MAMORI_OK)
		goto done;
	bool qr = h.flags >> 15;
	ev = json_pack("{s:i}", "id", h.id);
	if (!ev) {
		err = mamori_fail(MAMORI_ENOMEM, "dns: no memory");
		goto done;
	}
	for (unsigned i = 0; i < h.qd && i < DNS_MAX_QUESTIONS; i++) {
		char other[DNS_MAX_NAME + 2];
		size_t olen;
		uint16_t t, k;
		err = read_question(&c, i == 0 ? name : other, i == 0 ? &nlen : &olen, i == 0 ? &qtype : &t,
				    i == 0 ? &qclass : &k);
		if (err != MAMORI_OK)
			goto done;
	}
	if (h.qd > DNS_MAX_QUESTIONS) {
		err = mamori_fail(MAMORI_ELIMIT, "dns: %u questions", h.qd);
		goto done;
	}
	if (h.qd > 0) {
		json_object_set_new(ev, "qname", proto_str(name, nlen));
		json_object_set_new(ev, "qtype", type_json(qtype));
		proto_meta_append_unique(out, "qnames", name, nlen);
	}
	proto_meta_add(out, qr ? "responses" : "queries", 1);
	if (qr) {
		json_t *answers = json_array();
		json_object_set_new(ev, "rcode", json_integer(h.flags & 15));
		json_object_set_new(ev, "answers", answers);
		for (unsigned i = 0; i < h.an && i < DNS_MAX_ANSWERS && err == MAMORI_OK; i++)
			err = read_answer(&c, answers, out);
		if (err != MAMORI_OK)
			goto done;
	}
	(void)dir;
	err = proto_emit(out, qr ? "dns_response" : "dns_query", ev);
	ev = NULL;
done:
	json_decref(ev);
	return err;
}

static int dns_parse(void *state, const uint8_t *buf, size_t len, proto_dir dir, proto_out *out)
{
	dns_state *st = state;
	dns_side *sd = &st->side[dir];
	int err = MAMORI_OK;
	if (st->transport == PROTO_UDP)
		return parse_message(buf, len, dir, out);
	while (len > 0 && err == MAMORI_OK) {
		if (sd->len_have < 2) {
			sd->len_bytes[sd->len_have++] = *buf++;
			len--;
			if (sd->len_have == 2) {
				sd->msg_len = (size_t)sd->len_bytes[0] << 8 | sd->len_bytes[1];
				sd->msg_have = 0;
				if (sd->msg_len < DNS_HEADER)
					return mamori_fail(MAMORI_EFORMAT, "dns: TCP message of %zu bytes",
							   sd->msg_len);
				if (!sd->msg && !(sd->msg = malloc(65535)))
					return mamori_fail(MAMORI_ENOMEM, "dns: no memory for a message");
			}
			continue;
		}
		size_t n = sd->msg_len - sd->msg_have < len ? sd->msg_len - sd->msg_have : len;
		memcpy(sd->msg + sd->msg_have, buf, n);
		sd->msg_have += n;
		buf += n;
		len -= n;
		if (sd->msg_have == sd->msg_len) {
			sd->len_have = 0;
			err = parse_message(sd->msg, sd->msg_len, dir, out);
		}
	}
	return err;
}

const proto_parser proto_dns = {
	.name = "dns",
	.transports = PROTO_TCP | PROTO_UDP,
	.probe = dns_probe,
	.state_new = dns_state_new,
	.parse = dns_parse,
	.state_free = dns_state_free,
};
