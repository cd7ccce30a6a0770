/*
 * libFuzzer target for the IPv4 packet parser (src/contain/packet.c): the
 * input is one packet from its first IP byte, as the seeds in
 * fuzz/corpus/packet are (real packets from fuzz/make_packet_seeds.sh and
 * malformed variants). Each input is parsed as IP, then as the payload of
 * an Ethernet, a Linux cooked and a raw frame (the capture's path), and
 * every packet that parses is fed to a flood detector as the gateway does.
 * Traps when an invariant breaks: a header length outside 20..60 or over
 * the total length, a payload outside the input or the total length,
 * transport fields on a later fragment, a SYN without a transport header,
 * a failed parse that leaves anything in the output.
 */
#include <pcap/dlt.h>
#include <stdlib.h>
#include <string.h>

#include "detect.h"
#include "mamori/base.h"
#include "packet.h"

#define FUZZ_CHECK(cond)                  \
	do {                              \
		if (!(cond))              \
			__builtin_trap(); \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static contain_detect *detector;
static double clock_s = 1.0;

static void check_packet(const uint8_t *data, size_t size)
{
	contain_packet p;
	int rc = contain_packet_parse(&p, data, size);
	if (rc != MAMORI_OK) {
		FUZZ_CHECK(rc == MAMORI_ETRUNC || rc == MAMORI_EFORMAT);
		FUZZ_CHECK(p.proto == 0 && p.header_len == 0 && p.total_len == 0 && p.src.s_addr == 0 &&
			   p.dst.s_addr == 0 && !p.has_transport && p.payload_len == 0);
		return;
	}
	FUZZ_CHECK(p.header_len >= 20 && p.header_len <= 60 && p.header_len % 4 == 0);
	FUZZ_CHECK(p.header_len <= p.total_len && p.header_len <= size);
	FUZZ_CHECK(p.truncated == (size < p.total_len));
	if (p.has_transport) {
		FUZZ_CHECK(p.frag_offset == 0);
		FUZZ_CHECK(p.payload_off >= p.header_len);
		FUZZ_CHECK(mamori_span_fits(size, p.payload_off, p.payload_len));
		FUZZ_CHECK((size_t)p.payload_off + p.payload_len <= p.total_len);
		/* Touch every payload byte so ASan sees an overrun. */
		volatile uint8_t sink = 0;
		for (size_t i = 0; i < p.payload_len; i++)
			sink ^= data[p.payload_off + i];
		(void)sink;
	} else {
		FUZZ_CHECK(p.sport == 0 && p.dport == 0 && p.tcp_flags == 0 && p.payload_len == 0);
		FUZZ_CHECK(!contain_packet_is_syn(&p));
	}
	if (p.frag_offset != 0)
		FUZZ_CHECK(!p.has_transport);
	/* The fake echo reply: only for echo requests, never longer than the
	 * request, from its destination to its source. */
	static uint8_t reply[65536];
	size_t reply_len = 0;
	if (contain_packet_echo_reply(reply, sizeof reply, &reply_len, &p, data, size) == MAMORI_OK) {
		FUZZ_CHECK(p.proto == IPPROTO_ICMP && p.icmp_type == 8);
		FUZZ_CHECK(reply_len >= 28 && reply_len <= 20 + size - p.header_len);
		contain_packet r;
		FUZZ_CHECK(contain_packet_parse(&r, reply, reply_len) == MAMORI_OK);
		FUZZ_CHECK(r.has_transport && r.icmp_type == 0 && r.src.s_addr == p.dst.s_addr &&
			   r.dst.s_addr == p.src.s_addr);
	} else {
		FUZZ_CHECK(reply_len == 0);
	}
	if (detector) {
		clock_s += 0.001;
		contain_packet_feed_detect(detector, &p, clock_s);
	}
}

static void check_frame(int linktype, const uint8_t *frame, size_t size)
{
	const uint8_t *ip = NULL;
	size_t len = 0;
	if (contain_packet_from_frame(&ip, &len, linktype, frame, size) != MAMORI_OK) {
		FUZZ_CHECK(ip == NULL && len == 0);
		return;
	}
	FUZZ_CHECK(ip >= frame && len <= size && (size_t)(ip - frame) == size - len);
	check_packet(ip, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!detector && contain_detect_new(&detector, 64, 256) != MAMORI_OK)
		__builtin_trap();
	check_packet(data, size);
	check_frame(DLT_RAW, data, size);
	/* The input behind an Ethernet header, an 802.1Q tag and a Linux
	 * cooked header, in one exact-size heap copy each. */
	static const uint8_t eth[14] = { [12] = 0x08 }, vlan[18] = { [12] = 0x81, [16] = 0x08 },
			     sll[16] = { [14] = 0x08 };
	const struct {
		int linktype;
		const uint8_t *head;
		size_t len;
	} wraps[] = { { DLT_EN10MB, eth, sizeof eth },
		      { DLT_EN10MB, vlan, sizeof vlan },
		      { DLT_LINUX_SLL, sll, sizeof sll } };
	for (size_t w = 0; w < sizeof wraps / sizeof wraps[0]; w++) {
		uint8_t *frame = malloc(wraps[w].len + size);
		if (!frame)
			return 0;
		memcpy(frame, wraps[w].head, wraps[w].len);
		if (size)
			memcpy(frame + wraps[w].len, data, size);
		check_frame(wraps[w].linktype, frame, wraps[w].len + size);
		/* The link header cut short. */
		check_frame(wraps[w].linktype, frame, wraps[w].len - 1);
		free(frame);
	}
	return 0;
}
