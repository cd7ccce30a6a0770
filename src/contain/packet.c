/*
 * The bounded IPv4 packet parser of packet.h. Every read goes through a
 * mamori_cursor limited to the bytes that are both captured and inside the
 * IP total length, so a lying length field can shrink what is read but
 * never extend it. Flags and ports are taken from the first fragment only:
 * a later fragment's first bytes are payload, and reading them as ports
 * would let a sample forge destinations for the detector.
 *
 * Limits: IPv4 only; IP options are skipped unread; a TCP header counts only
 * when its data offset is 5..15 words and fits in the captured bytes.
 */
#include <pcap/dlt.h>
#include <string.h>

#include "mamori/base.h"
#include "packet.h"

#define IPV4_MIN_HEADER 20u
#define TCP_MIN_HEADER	20u
#define UDP_HEADER	8u
#define ICMP_MIN_HEADER 4u
#define ETH_HEADER	14u
#define SLL_HEADER	16u
#define ETHERTYPE_IPV4	0x0800u
#define ETHERTYPE_VLAN	0x8100u
#define ETHERTYPE_QINQ	0x88a8u
#define IP_FLAG_DF	0x4000u
#define IP_FLAG_MF	0x2000u
#define IP_FRAG_MASK	0x1fffu

/* The transport header of a first fragment; `cur` holds the transport
 * bytes (captured and within the total length). Leaves has_transport false
 * when the header is short or inconsistent. */
static void parse_transport(contain_packet *p, mamori_cursor *cur)
{
	size_t start = cur->pos;
	uint16_t sport = 0, dport = 0;
	uint32_t seq = 0;
	uint8_t b = 0, flags = 0, type = 0, code = 0;
	size_t header = 0;
	switch (p->proto) {
	case IPPROTO_TCP:
		if (mamori_read_u16be(cur, &sport) != MAMORI_OK ||
		    mamori_read_u16be(cur, &dport) != MAMORI_OK ||
		    mamori_read_u32be(cur, &seq) != MAMORI_OK || mamori_cursor_skip(cur, 4) != MAMORI_OK ||
		    mamori_read_u8(cur, &b) != MAMORI_OK || mamori_read_u8(cur, &flags) != MAMORI_OK)
			return;
		header = (size_t)(b >> 4) * 4u;
		if (header < TCP_MIN_HEADER)
			return;
		break;
	case IPPROTO_UDP:
		if (mamori_read_u16be(cur, &sport) != MAMORI_OK ||
		    mamori_read_u16be(cur, &dport) != MAMORI_OK)
			return;
		header = UDP_HEADER;
		break;
	case IPPROTO_ICMP:
		if (mamori_read_u8(cur, &type) != MAMORI_OK || mamori_read_u8(cur, &code) != MAMORI_OK)
			return;
		header = ICMP_MIN_HEADER;
		break;
	default: return;
	}
	if (mamori_cursor_seek(cur, start) != MAMORI_OK || mamori_cursor_skip(cur, header) != MAMORI_OK)
		return;
	p->has_transport = true;
	p->sport = sport;
	p->dport = dport;
	p->tcp_seq = seq;
	p->tcp_flags = flags;
	p->icmp_type = type;
	p->icmp_code = code;
	p->payload_off = (uint16_t)cur->pos;
	p->payload_len = (uint16_t)mamori_cursor_left(cur);
}

int contain_packet_parse(contain_packet *out, const uint8_t *data, size_t len)
{
	memset(out, 0, sizeof(*out));
	mamori_cursor cur;
	mamori_cursor_init(&cur, data, len);
	uint8_t vihl = 0, tos = 0, ttl = 0, proto = 0;
	uint16_t total = 0, id = 0, frag = 0, sum = 0;
	uint32_t src = 0, dst = 0;
	if (mamori_read_u8(&cur, &vihl) != MAMORI_OK || mamori_read_u8(&cur, &tos) != MAMORI_OK ||
	    mamori_read_u16be(&cur, &total) != MAMORI_OK || mamori_read_u16be(&cur, &id) != MAMORI_OK ||
	    mamori_read_u16be(&cur, &frag) != MAMORI_OK || mamori_read_u8(&cur, &ttl) != MAMORI_OK ||
	    mamori_read_u8(&cur, &proto) != MAMORI_OK || mamori_read_u16be(&cur, &sum) != MAMORI_OK ||
	    mamori_read_u32be(&cur, &src) != MAMORI_OK || mamori_read_u32be(&cur, &dst) != MAMORI_OK)
		return mamori_fail(MAMORI_ETRUNC, "packet: %zu bytes, shorter than an IPv4 header", len);
	if (vihl >> 4 != 4)
		return mamori_fail(MAMORI_EFORMAT, "packet: IP version %u, not 4", (unsigned)(vihl >> 4));
	size_t header = (size_t)(vihl & 0x0f) * 4u;
	if (header < IPV4_MIN_HEADER)
		return mamori_fail(MAMORI_EFORMAT, "packet: IP header length %zu under 20", header);
	if (total < header)
		return mamori_fail(MAMORI_EFORMAT, "packet: total length %u under the header length %zu",
				   (unsigned)total, header);
	if (!mamori_span_fits(len, 0, header))
		return mamori_fail(MAMORI_ETRUNC, "packet: header of %zu bytes, only %zu captured", header,
				   len);
	/* What is both captured and inside the packet: padding after the total
	 * length is not the sample's, and bytes never captured cannot be read. */
	size_t usable = len < total ? len : total;
	out->src.s_addr = htonl(src);
	out->dst.s_addr = htonl(dst);
	out->proto = proto;
	out->ttl = ttl;
	out->header_len = (uint8_t)header;
	out->total_len = total;
	out->ip_id = id;
	out->frag_offset = (uint16_t)((frag & IP_FRAG_MASK) * 8u);
	out->more_fragments = (frag & IP_FLAG_MF) != 0;
	out->dont_fragment = (frag & IP_FLAG_DF) != 0;
	out->truncated = len < total;
	if (out->frag_offset == 0) {
		mamori_cursor l4;
		if (mamori_cursor_sub(&l4, &cur, header, usable - header) == MAMORI_OK) {
			parse_transport(out, &l4);
			if (out->has_transport)
				out->payload_off = (uint16_t)(out->payload_off + header);
		}
	}
	return MAMORI_OK;
}

bool contain_packet_is_syn(const contain_packet *p)
{
	return p->proto == IPPROTO_TCP && p->has_transport &&
	       (p->tcp_flags & (CONTAIN_TCP_SYN | CONTAIN_TCP_ACK)) == CONTAIN_TCP_SYN;
}

contain_transport contain_packet_transport(const contain_packet *p)
{
	if (p->proto == IPPROTO_TCP)
		return CONTAIN_TRANSPORT_TCP;
	if (p->proto == IPPROTO_UDP)
		return CONTAIN_TRANSPORT_UDP;
	return CONTAIN_TRANSPORT_OTHER;
}

static void to_addr(struct in_addr a, contain_addr *out)
{
	memset(out, 0, sizeof(*out));
	out->family = 4;
	memcpy(out->bytes, &a.s_addr, 4);
}

void contain_packet_dst_addr(const contain_packet *p, contain_addr *out)
{
	to_addr(p->dst, out);
}

void contain_packet_src_addr(const contain_packet *p, contain_addr *out)
{
	to_addr(p->src, out);
}

void contain_packet_feed_detect(contain_detect *d, const contain_packet *p, double now)
{
	contain_addr dst;
	contain_packet_dst_addr(p, &dst);
	bool ports = p->has_transport && (p->proto == IPPROTO_TCP || p->proto == IPPROTO_UDP);
	uint16_t port = ports ? p->dport : 0;
	if (contain_packet_is_syn(p))
		contain_detect_conn(d, now, &dst, port, CONTAIN_TRANSPORT_TCP);
	else
		contain_detect_packet(d, now, &dst, port, contain_packet_transport(p));
}

/* The Internet checksum (RFC 1071) of b[0..n). */
static uint16_t inet_checksum(const uint8_t *b, size_t n)
{
	uint32_t sum = 0;
	for (size_t i = 0; i + 1 < n; i += 2)
		sum += (uint32_t)b[i] << 8 | b[i + 1];
	if (n & 1)
		sum += (uint32_t)b[n - 1] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

int contain_packet_echo_reply(uint8_t *out, size_t cap, size_t *out_len, const contain_packet *p,
			      const uint8_t *req, size_t len)
{
	*out_len = 0;
	if (p->proto != IPPROTO_ICMP || !p->has_transport || p->icmp_type != 8 || p->icmp_code != 0 ||
	    p->frag_offset != 0 || p->more_fragments || p->header_len < 20 || len < (size_t)p->header_len + 8)
		return mamori_fail(MAMORI_EINVAL, "packet: not a whole ICMP echo request");
	/* The ICMP part as far as it was captured and as the IP length says. */
	size_t icmp_len = (len < p->total_len ? len : p->total_len) - p->header_len;
	if (icmp_len < 8) /* the IP length leaves no room for identifier and sequence */
		return mamori_fail(MAMORI_EINVAL, "packet: echo request of %zu ICMP bytes", icmp_len);
	size_t total = 20 + icmp_len;
	if (cap < total || total > 0xffff)
		return mamori_fail(MAMORI_ELIMIT, "packet: echo reply of %zu bytes does not fit", total);
	uint8_t *ip = out, *icmp = out + 20;
	memset(ip, 0, 20);
	ip[0] = 0x45;
	ip[2] = (uint8_t)(total >> 8);
	ip[3] = (uint8_t)total;
	ip[6] = 0x40; /* don't fragment */
	ip[8] = 64;
	ip[9] = IPPROTO_ICMP;
	memcpy(ip + 12, &p->dst, 4); /* from where the request went */
	memcpy(ip + 16, &p->src, 4);
	uint16_t c = inet_checksum(ip, 20);
	ip[10] = (uint8_t)(c >> 8);
	ip[11] = (uint8_t)c;
	memcpy(icmp, req + p->header_len, icmp_len);
	icmp[0] = 0; /* echo reply; code, identifier, sequence and data stay */
	icmp[2] = icmp[3] = 0;
	c = inet_checksum(icmp, icmp_len);
	icmp[2] = (uint8_t)(c >> 8);
	icmp[3] = (uint8_t)c;
	*out_len = total;
	return MAMORI_OK;
}

int contain_packet_from_frame(const uint8_t **out_ip, size_t *out_len, int linktype, const uint8_t *frame,
			      size_t len)
{
	*out_ip = NULL;
	*out_len = 0;
	mamori_cursor cur;
	mamori_cursor_init(&cur, frame, len);
	uint16_t type = 0;
	switch (linktype) {
	case DLT_RAW:
	case DLT_IPV4: type = ETHERTYPE_IPV4; break;
	case DLT_EN10MB:
		if (mamori_cursor_skip(&cur, ETH_HEADER - 2) != MAMORI_OK ||
		    mamori_read_u16be(&cur, &type) != MAMORI_OK)
			return mamori_fail(MAMORI_ETRUNC, "packet: frame of %zu bytes", len);
		/* At most two tags (802.1ad outer, 802.1Q inner): a frame that
		 * stacks more is not from any veth of ours. */
		for (int tags = 0; tags < 2 && (type == ETHERTYPE_VLAN || type == ETHERTYPE_QINQ); tags++)
			if (mamori_cursor_skip(&cur, 2) != MAMORI_OK ||
			    mamori_read_u16be(&cur, &type) != MAMORI_OK)
				return mamori_fail(MAMORI_ETRUNC, "packet: VLAN frame of %zu bytes", len);
		break;
	case DLT_LINUX_SLL:
		if (mamori_cursor_skip(&cur, SLL_HEADER - 2) != MAMORI_OK ||
		    mamori_read_u16be(&cur, &type) != MAMORI_OK)
			return mamori_fail(MAMORI_ETRUNC, "packet: SLL frame of %zu bytes", len);
		break;
	default: return mamori_fail(MAMORI_EUNSUPPORTED, "packet: link type %d", linktype);
	}
	if (type != ETHERTYPE_IPV4)
		return mamori_fail(MAMORI_EUNSUPPORTED, "packet: ethertype 0x%04x is not IPv4",
				   (unsigned)type);
	size_t left = mamori_cursor_left(&cur);
	if (mamori_read_bytes(&cur, left, out_ip) != MAMORI_OK)
		return mamori_fail(MAMORI_ETRUNC, "packet: frame of %zu bytes", len);
	*out_len = left;
	return MAMORI_OK;
}
