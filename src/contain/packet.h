/*
 * One IPv4 packet as the gateway sees it on inmate0 (internal to
 * src/contain): a bounded parser of the IP header and of the first bytes of
 * TCP, UDP and ICMP, for the NFQUEUE listener (nfq.h) and the session
 * capture's per-packet callback (capture.h), which feed flood and scan
 * detection (detect.h).
 *
 * The input is hostile (the inmate writes it) and may be cut short by a
 * snap length or an NFQUEUE copy range, so the parser reads only through a
 * cursor, never past `len`, and never trusts a length field: the IP total
 * length must cover the header, and bytes past it (Ethernet padding) are
 * ignored; a total length larger than what was captured marks the packet
 * `truncated` rather than wrong. Only the first fragment (offset 0) carries
 * the transport header, so later fragments have no ports. IP options are
 * skipped, not interpreted. IPv6 is not parsed: the sessions disable it.
 */
#ifndef MAMORI_CONTAIN_PACKET_H
#define MAMORI_CONTAIN_PACKET_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "detect.h"

/* TCP flag bits as on the wire (byte 13 of the header). */
#define CONTAIN_TCP_FIN 0x01u
#define CONTAIN_TCP_SYN 0x02u
#define CONTAIN_TCP_RST 0x04u
#define CONTAIN_TCP_PSH 0x08u
#define CONTAIN_TCP_ACK 0x10u
#define CONTAIN_TCP_URG 0x20u

/** What the parser found; free of pointers, so it can be copied. */
typedef struct contain_packet {
	struct in_addr src, dst; /**< network byte order */
	uint8_t proto;		 /**< IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP, ... */
	uint8_t ttl;
	uint8_t header_len;   /**< IP header bytes, options included (20..60) */
	uint16_t total_len;   /**< the IP total length field (checked >= header_len) */
	uint16_t ip_id;	      /**< identification, for fragments */
	uint16_t frag_offset; /**< in bytes (the field times 8) */
	bool more_fragments;
	bool dont_fragment;
	bool truncated; /**< total_len > the bytes that were captured */

	/** The transport header was complete within the captured bytes (first
	 *  fragment only): TCP 20 bytes or more as its data offset says, UDP 8,
	 *  ICMP 4. The fields below are valid only then. */
	bool has_transport;
	uint16_t sport, dport; /**< TCP and UDP, host order */
	uint8_t tcp_flags;     /**< CONTAIN_TCP_* */
	uint32_t tcp_seq;      /**< host order */
	uint8_t icmp_type, icmp_code;

	/** Where the transport payload starts in the input, and how many of its
	 *  bytes were captured (0 without a transport header). */
	uint16_t payload_off;
	uint16_t payload_len;
} contain_packet;

/**
 * Parse the IPv4 packet at `data` (`len` bytes captured, from the first
 * byte of the IP header). Fills `out` entirely (zeroes first). Errors, with
 * `out` zeroed: MAMORI_ETRUNC (fewer than 20 bytes, or fewer than the
 * header length says), MAMORI_EFORMAT (not version 4, header length under
 * 20, total length under the header length). A packet whose transport
 * header is cut short or inconsistent still parses, with has_transport
 * false.
 */
int contain_packet_parse(contain_packet *out, const uint8_t *data, size_t len);

/** True for a TCP connection attempt: SYN set, ACK clear. */
bool contain_packet_is_syn(const contain_packet *p);

/** The transport for detect.h: TCP, UDP or OTHER (ICMP and the rest). */
contain_transport contain_packet_transport(const contain_packet *p);

/** Destination (or source) as a detect.h address. */
void contain_packet_dst_addr(const contain_packet *p, contain_addr *out);
void contain_packet_src_addr(const contain_packet *p, contain_addr *out);

/**
 * Feed one packet from the inmate to a detector: a TCP SYN (without ACK)
 * counts as a new connection to dst:dport, anything else as a packet (to
 * dst:dport for TCP and UDP with a transport header, dst:0 otherwise; ICMP
 * echo requests count as packets too, so a ping flood is a packet-rate
 * flood). This is what the gateway does with each packet from the capture
 * callback or the NFQUEUE listener.
 */
void contain_packet_feed_detect(contain_detect *d, const contain_packet *p, double now);

/**
 * The answer a host would give to the ICMP echo request `req` (`len` bytes
 * from its first IP byte, as parsed into `p`): an IPv4 echo reply from the
 * request's destination to its source, with the same identifier, sequence
 * and data (as much of it as was captured), into `out` (at least
 * `len` bytes; `*out_len` its length). MAMORI_EINVAL when `req` is not a
 * whole-header echo request (a later fragment, no ICMP header).
 */
int contain_packet_echo_reply(uint8_t *out, size_t cap, size_t *out_len, const contain_packet *p,
			      const uint8_t *req, size_t len);

/**
 * The IPv4 packet inside a link-layer frame of pcap link type `linktype`
 * (DLT_EN10MB with at most two VLAN tags, DLT_RAW, DLT_IPV4,
 * DLT_LINUX_SLL). On success *out_ip and *out_len name the IP bytes inside
 * `frame`; MAMORI_EUNSUPPORTED for other link types or non-IPv4 frames,
 * MAMORI_ETRUNC for a frame shorter than its link header.
 */
int contain_packet_from_frame(const uint8_t **out_ip, size_t *out_len, int linktype, const uint8_t *frame,
			      size_t len);

#endif
