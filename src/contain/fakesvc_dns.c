/*
 * The fake resolver: answers one DNS query datagram (see fakesvc.h).
 *
 * The query is read through the bounded cursor: a 12-byte header, exactly
 * one question whose name is made of plain labels (no compression pointers,
 * which a question never needs), at most 63 bytes a label and 255 a name.
 * The answer echoes the question bytes and, for A/IN, adds one record that
 * points back at the question name (0xC00C). Any extra sections of the query
 * (an EDNS OPT record) are ignored; the reply carries none.
 */
#include <ctype.h>
#include <string.h>

#include "fakesvc.h"
#include "mamori/base.h"

#define DNS_TYPE_A   1
#define DNS_TYPE_ANY 255
#define DNS_CLASS_IN 1

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

int contain_fakedns_answer(uint8_t *out, size_t cap, size_t *out_len, const uint8_t *query, size_t qlen,
			   const contain_dns_config *cfg, char *qname)
{
	*out_len = 0;
	if (qname)
		qname[0] = '\0';
	mamori_cursor cur;
	mamori_cursor_init(&cur, query, qlen);
	/* id, flags, and the four section counts. */
	uint16_t hdr[6];
	for (size_t i = 0; i < 6; i++)
		if (mamori_read_u16be(&cur, &hdr[i]) != MAMORI_OK)
			return mamori_fail(MAMORI_ETRUNC, "DNS query shorter than its header (%zu bytes)",
					   qlen);
	uint16_t id = hdr[0], flags = hdr[1], qd = hdr[2];
	if (flags & 0x8000)
		return mamori_fail(MAMORI_EFORMAT, "DNS datagram is a response, not a query");
	if (cap < 12)
		return mamori_fail(MAMORI_ELIMIT, "DNS answer buffer too small");
	unsigned opcode = (flags >> 11) & 0xf;
	uint16_t rd = flags & 0x0100;
	if (opcode != 0) {
		/* NOTIMP, no sections: we only answer standard queries. */
		put16(out, id);
		put16(out + 2, (uint16_t)(0x8000 | (opcode << 11) | rd | 4));
		memset(out + 4, 0, 8);
		*out_len = 12;
		return MAMORI_OK;
	}
	if (qd != 1)
		return mamori_fail(MAMORI_EFORMAT, "DNS query with %u questions", qd);

	char name[256];
	size_t nlen = 0;
	size_t qstart = cur.pos;
	for (;;) {
		uint8_t l;
		if (mamori_read_u8(&cur, &l) != MAMORI_OK)
			return mamori_fail(MAMORI_ETRUNC, "DNS question name truncated");
		if (l == 0)
			break;
		if (l > 63)
			return mamori_fail(MAMORI_EFORMAT,
					   "DNS label of %u bytes (or a pointer) in a question", l);
		const uint8_t *lab;
		if (mamori_read_bytes(&cur, l, &lab) != MAMORI_OK)
			return mamori_fail(MAMORI_ETRUNC, "DNS label truncated");
		if (nlen + (nlen ? 1u : 0u) + l > 253)
			return mamori_fail(MAMORI_EFORMAT, "DNS name longer than 253 characters");
		if (nlen)
			name[nlen++] = '.';
		for (size_t i = 0; i < l; i++) {
			int c = tolower(lab[i]);
			name[nlen++] = (isalnum(c) || c == '-' || c == '_') && c < 0x80 ? (char)c : '?';
		}
	}
	name[nlen] = '\0';
	uint16_t qtype, qclass;
	if (mamori_read_u16be(&cur, &qtype) || mamori_read_u16be(&cur, &qclass))
		return mamori_fail(MAMORI_ETRUNC, "DNS question type/class truncated");
	size_t qend = cur.pos;
	if (qname)
		memcpy(qname, name, nlen + 1);

	const contain_dns_rule *rule = NULL;
	for (size_t i = 0; i < cfg->n_rules && !rule; i++)
		if (contain_glob_match(cfg->rules[i].glob, name))
			rule = &cfg->rules[i];
	bool nx = rule && rule->nxdomain;
	bool answer = !nx && qclass == DNS_CLASS_IN && (qtype == DNS_TYPE_A || qtype == DNS_TYPE_ANY);
	size_t qbytes = qend - qstart;
	size_t need = 12 + qbytes + (answer ? 16 : 0);
	if (need > cap)
		return mamori_fail(MAMORI_ELIMIT, "DNS answer of %zu bytes does not fit %zu", need, cap);

	put16(out, id);
	/* QR, opcode 0, AA, RD copied, RA; rcode NXDOMAIN or NOERROR. */
	put16(out + 2, (uint16_t)(0x8000 | 0x0400 | rd | 0x0080 | (nx ? 3 : 0)));
	put16(out + 4, 1);
	put16(out + 6, answer ? 1 : 0);
	put16(out + 8, 0);
	put16(out + 10, 0);
	memcpy(out + 12, query + qstart, qbytes);
	size_t pos = 12 + qbytes;
	if (answer) {
		const uint8_t *addr = rule ? rule->addr : cfg->sinkhole;
		put16(out + pos, 0xC00C);
		put16(out + pos + 2, DNS_TYPE_A);
		put16(out + pos + 4, DNS_CLASS_IN);
		out[pos + 6] = (uint8_t)(cfg->ttl >> 24);
		out[pos + 7] = (uint8_t)(cfg->ttl >> 16);
		out[pos + 8] = (uint8_t)(cfg->ttl >> 8);
		out[pos + 9] = (uint8_t)cfg->ttl;
		put16(out + pos + 10, 4);
		memcpy(out + pos + 12, addr, 4);
		pos += 16;
	}
	*out_len = pos;
	return MAMORI_OK;
}
