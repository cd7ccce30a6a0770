/*
 * Tests of the packet path: the IPv4 parser (src/contain/packet.c) over
 * hand-built and malformed packets, the NFQUEUE listener (nfq.c) and the
 * capture's per-packet callback (capture.c) with real namespaces, real
 * ICMP and hping3 SYN floods and scans.
 *
 * The lab (root only; those tests skip otherwise): an "internet" namespace
 * of the test's own ("mamori-t<pid>-net", named as tests/contain/lab.sh
 * expects, so it can clean up after a SIGKILL) holding 198.51.100.10 and
 * 203.0.113.9 on its loopback, and a raw counter of the IPv4 packets that
 * arrive there on any interface (ICMP echo requests counted apart); a
 * blackhole route for both TEST-NET ranges in the host's namespace while the
 * tests run. Every namespace and route is removed at the end, also when an
 * assertion fails (group teardown), at exit, and on SIGTERM/SIGINT (meson's
 * timeout). hping3 runs in the inmate namespace through `ip netns exec`: the
 * sandbox drops CAP_NET_RAW, and the point here is what the gateway sees.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <netinet/in.h>
#include <pcap/dlt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "capture.h"
#include "detect.h"
#include "lab.h"
#include "mamori/base.h"
#include "netns.h"
#include "nfq.h"
#include "packet.h"

/* ------------------------------------------------------------------ */
/* Hand-built packets                                                   */
/* ------------------------------------------------------------------ */

/* An IPv4 header of `ihl` words at `b`, options (if any) zero. */
static void ip_header(uint8_t *b, unsigned ihl, uint16_t total, uint8_t proto, const char *src,
		      const char *dst, uint16_t frag)
{
	memset(b, 0, (size_t)ihl * 4u);
	b[0] = (uint8_t)(0x40u | ihl);
	b[2] = (uint8_t)(total >> 8);
	b[3] = (uint8_t)total;
	b[4] = 0x12;
	b[5] = 0x34;
	b[6] = (uint8_t)(frag >> 8);
	b[7] = (uint8_t)frag;
	b[8] = 64;
	b[9] = proto;
	inet_pton(AF_INET, src, b + 12);
	inet_pton(AF_INET, dst, b + 16);
}

/* A TCP header at `b`: ports, sequence, data offset in words, flags. */
static void tcp_header(uint8_t *b, uint16_t sport, uint16_t dport, unsigned doff, uint8_t flags)
{
	memset(b, 0, 20);
	b[0] = (uint8_t)(sport >> 8);
	b[1] = (uint8_t)sport;
	b[2] = (uint8_t)(dport >> 8);
	b[3] = (uint8_t)dport;
	b[4] = 0xde;
	b[5] = 0xad;
	b[6] = 0xbe;
	b[7] = 0xef;
	b[12] = (uint8_t)(doff << 4);
	b[13] = flags;
}

/* 20-byte IP + 20-byte TCP SYN 10.66.0.2:40000 -> 203.0.113.9:80, with
 * `extra` payload bytes ("abcd..."). */
static size_t syn_packet(uint8_t *b, size_t extra)
{
	ip_header(b, 5, (uint16_t)(40 + extra), IPPROTO_TCP, "10.66.0.2", "203.0.113.9", 0x4000);
	tcp_header(b + 20, 40000, 80, 5, CONTAIN_TCP_SYN);
	for (size_t i = 0; i < extra; i++)
		b[40 + i] = (uint8_t)('a' + i % 26);
	return 40 + extra;
}

static void test_parse_tcp_syn(void **state)
{
	(void)state;
	uint8_t b[64];
	size_t n = syn_packet(b, 4);
	contain_packet p;
	assert_int_equal(contain_packet_parse(&p, b, n), MAMORI_OK);
	char a[INET_ADDRSTRLEN];
	assert_non_null(inet_ntop(AF_INET, &p.dst, a, sizeof a));
	assert_string_equal(a, "203.0.113.9");
	assert_non_null(inet_ntop(AF_INET, &p.src, a, sizeof a));
	assert_string_equal(a, "10.66.0.2");
	assert_int_equal(p.proto, IPPROTO_TCP);
	assert_int_equal(p.ttl, 64);
	assert_int_equal(p.header_len, 20);
	assert_int_equal(p.total_len, 44);
	assert_int_equal(p.ip_id, 0x1234);
	assert_true(p.dont_fragment);
	assert_false(p.more_fragments);
	assert_false(p.truncated);
	assert_true(p.has_transport);
	assert_int_equal(p.sport, 40000);
	assert_int_equal(p.dport, 80);
	assert_int_equal(p.tcp_seq, 0xdeadbeefu);
	assert_true(contain_packet_is_syn(&p));
	assert_int_equal(contain_packet_transport(&p), CONTAIN_TRANSPORT_TCP);
	assert_int_equal(p.payload_off, 40);
	assert_int_equal(p.payload_len, 4);
	assert_memory_equal(b + p.payload_off, "abcd", 4);
	/* SYN+ACK (a reply) and a bare ACK are no connection attempts. */
	b[33] = CONTAIN_TCP_SYN | CONTAIN_TCP_ACK;
	assert_int_equal(contain_packet_parse(&p, b, n), MAMORI_OK);
	assert_false(contain_packet_is_syn(&p));
	b[33] = CONTAIN_TCP_ACK;
	assert_int_equal(contain_packet_parse(&p, b, n), MAMORI_OK);
	assert_false(contain_packet_is_syn(&p));
	/* TCP options: the payload starts after the data offset. */
	ip_header(b, 5, 48, IPPROTO_TCP, "10.66.0.2", "203.0.113.9", 0);
	tcp_header(b + 20, 1, 2, 7, CONTAIN_TCP_SYN);
	assert_int_equal(contain_packet_parse(&p, b, 48), MAMORI_OK);
	assert_true(p.has_transport);
	assert_int_equal(p.payload_off, 48);
	assert_int_equal(p.payload_len, 0);
}

static void test_parse_udp_icmp_options(void **state)
{
	(void)state;
	uint8_t b[64];
	ip_header(b, 5, 32, IPPROTO_UDP, "10.66.0.2", "198.51.100.10", 0);
	memcpy(b + 20, "\x30\x39\x00\x35\x00\x0c\x00\x00xyzw", 12);
	contain_packet p;
	assert_int_equal(contain_packet_parse(&p, b, 32), MAMORI_OK);
	assert_true(p.has_transport);
	assert_int_equal(p.sport, 12345);
	assert_int_equal(p.dport, 53);
	assert_int_equal(p.payload_off, 28);
	assert_int_equal(p.payload_len, 4);
	assert_int_equal(contain_packet_transport(&p), CONTAIN_TRANSPORT_UDP);
	assert_false(contain_packet_is_syn(&p));
	/* ICMP echo request (type 8, code 0) behind 8 bytes of IP options. */
	ip_header(b, 7, 36, IPPROTO_ICMP, "10.66.0.2", "198.51.100.10", 0);
	b[20] = 1; /* NOP options: skipped, not interpreted */
	memcpy(b + 28, "\x08\x00\xf7\xff\x00\x00\x00\x00", 8);
	assert_int_equal(contain_packet_parse(&p, b, 36), MAMORI_OK);
	assert_int_equal(p.header_len, 28);
	assert_true(p.has_transport);
	assert_int_equal(p.icmp_type, 8);
	assert_int_equal(p.icmp_code, 0);
	assert_int_equal(p.sport, 0);
	assert_int_equal(p.payload_off, 32);
	assert_int_equal(p.payload_len, 4);
	assert_int_equal(contain_packet_transport(&p), CONTAIN_TRANSPORT_OTHER);
	/* A protocol we do not look into (GRE) parses, without a transport. */
	ip_header(b, 5, 24, 47, "10.66.0.2", "198.51.100.10", 0);
	assert_int_equal(contain_packet_parse(&p, b, 24), MAMORI_OK);
	assert_int_equal(p.proto, 47);
	assert_false(p.has_transport);
	assert_int_equal(contain_packet_transport(&p), CONTAIN_TRANSPORT_OTHER);
}

static void test_parse_malformed(void **state)
{
	(void)state;
	uint8_t b[80];
	contain_packet p;
	size_t n = syn_packet(b, 0);
	/* Short: nothing, one byte, 19 bytes. out is zeroed on failure. */
	memset(&p, 0xff, sizeof p);
	assert_int_equal(contain_packet_parse(&p, b, 0), MAMORI_ETRUNC);
	assert_int_equal(p.proto, 0);
	assert_false(p.has_transport);
	assert_int_equal(contain_packet_parse(&p, b, 1), MAMORI_ETRUNC);
	assert_int_equal(contain_packet_parse(&p, b, 19), MAMORI_ETRUNC);
	/* Version 6 or garbage in the version nibble. */
	b[0] = 0x65;
	assert_int_equal(contain_packet_parse(&p, b, n), MAMORI_EFORMAT);
	b[0] = 0x05;
	assert_int_equal(contain_packet_parse(&p, b, n), MAMORI_EFORMAT);
	/* Bad IHL: under 5 words; or 15 words (60 bytes) with 40 captured. */
	b[0] = 0x44;
	assert_int_equal(contain_packet_parse(&p, b, n), MAMORI_EFORMAT);
	b[0] = 0x40;
	assert_int_equal(contain_packet_parse(&p, b, n), MAMORI_EFORMAT);
	b[0] = 0x4f;
	b[3] = 60;
	assert_int_equal(contain_packet_parse(&p, b, n), MAMORI_ETRUNC);
	/* Total length under the header length. */
	n = syn_packet(b, 0);
	b[2] = 0;
	b[3] = 19;
	assert_int_equal(contain_packet_parse(&p, b, n), MAMORI_EFORMAT);
	b[3] = 0;
	assert_int_equal(contain_packet_parse(&p, b, n), MAMORI_EFORMAT);
}

/* Length fields that lie: the parser reads what is both captured and
 * inside the total length, never more. */
static void test_parse_lengths_lie(void **state)
{
	(void)state;
	uint8_t b[80];
	contain_packet p;
	/* Total length says 1500, 44 bytes captured (a snap length or an
	 * NFQUEUE copy range): truncated, headers still read, payload cut. */
	size_t n = syn_packet(b, 4);
	b[2] = 1500 >> 8;
	b[3] = 1500 & 0xff;
	assert_int_equal(contain_packet_parse(&p, b, n), MAMORI_OK);
	assert_true(p.truncated);
	assert_int_equal(p.total_len, 1500);
	assert_true(p.has_transport);
	assert_int_equal(p.dport, 80);
	assert_int_equal(p.payload_len, 4);
	/* Total length 30: only 10 bytes of the TCP header lie inside the
	 * packet; the 30 captured bytes past it (padding) are not the packet's. */
	n = syn_packet(b, 30);
	b[2] = 0;
	b[3] = 30;
	assert_int_equal(contain_packet_parse(&p, b, n), MAMORI_OK);
	assert_false(p.truncated);
	assert_false(p.has_transport);
	assert_int_equal(p.dport, 0);
	assert_false(contain_packet_is_syn(&p));
	/* Ethernet padding after a complete packet is ignored. */
	n = syn_packet(b, 0);
	memset(b + n, 0xee, 20);
	assert_int_equal(contain_packet_parse(&p, b, n + 20), MAMORI_OK);
	assert_true(p.has_transport);
	assert_int_equal(p.payload_len, 0);
	/* TCP data offset under 5 words, or past the end: no transport. */
	n = syn_packet(b, 0);
	b[32] = 4 << 4;
	assert_int_equal(contain_packet_parse(&p, b, n), MAMORI_OK);
	assert_false(p.has_transport);
	b[32] = 15 << 4;
	assert_int_equal(contain_packet_parse(&p, b, n), MAMORI_OK);
	assert_false(p.has_transport);
	/* UDP header cut by the capture: 6 of 8 bytes. */
	ip_header(b, 5, 28, IPPROTO_UDP, "10.66.0.2", "198.51.100.10", 0);
	memset(b + 20, 0, 8);
	assert_int_equal(contain_packet_parse(&p, b, 26), MAMORI_OK);
	assert_true(p.truncated);
	assert_false(p.has_transport);
	/* ICMP of 3 bytes. */
	ip_header(b, 5, 23, IPPROTO_ICMP, "10.66.0.2", "198.51.100.10", 0);
	assert_int_equal(contain_packet_parse(&p, b, 23), MAMORI_OK);
	assert_false(p.has_transport);
}

/* Only the first fragment has ports: a later one starts with payload that
 * a sample could shape to look like any port. */
static void test_parse_fragments(void **state)
{
	(void)state;
	uint8_t b[80];
	contain_packet p;
	/* First fragment: MF, offset 0. */
	size_t n = syn_packet(b, 8);
	b[6] = 0x20;
	b[7] = 0;
	assert_int_equal(contain_packet_parse(&p, b, n), MAMORI_OK);
	assert_true(p.more_fragments);
	assert_int_equal(p.frag_offset, 0);
	assert_true(p.has_transport);
	assert_int_equal(p.dport, 80);
	assert_true(contain_packet_is_syn(&p));
	/* Second fragment at 24 bytes (3 units) whose bytes look like a SYN to
	 * port 80: no ports, no SYN. */
	n = syn_packet(b, 8);
	b[6] = 0x20;
	b[7] = 3;
	assert_int_equal(contain_packet_parse(&p, b, n), MAMORI_OK);
	assert_int_equal(p.frag_offset, 24);
	assert_true(p.more_fragments);
	assert_false(p.has_transport);
	assert_int_equal(p.dport, 0);
	assert_false(contain_packet_is_syn(&p));
	/* Last fragment (no MF, offset 1 unit = 8 bytes): no ports either. */
	b[6] = 0;
	b[7] = 1;
	assert_int_equal(contain_packet_parse(&p, b, n), MAMORI_OK);
	assert_int_equal(p.frag_offset, 8);
	assert_false(p.more_fragments);
	assert_false(p.has_transport);
	/* A tiny first fragment of 8 TCP bytes: ports but no flags, so no
	 * transport header at all. */
	syn_packet(b, 0);
	b[3] = 28;
	b[6] = 0x20;
	assert_int_equal(contain_packet_parse(&p, b, 28), MAMORI_OK);
	assert_false(p.has_transport);
}

static void test_from_frame(void **state)
{
	(void)state;
	uint8_t f[128];
	const uint8_t *ip = NULL;
	size_t len = 0;
	contain_packet p;
	/* Ethernet II carrying IPv4. */
	memset(f, 0, 14);
	f[12] = 0x08;
	size_t n = syn_packet(f + 14, 0) + 14;
	assert_int_equal(contain_packet_from_frame(&ip, &len, DLT_EN10MB, f, n), MAMORI_OK);
	assert_int_equal(len, 40);
	assert_int_equal(contain_packet_parse(&p, ip, len), MAMORI_OK);
	assert_int_equal(p.dport, 80);
	/* ARP is not IPv4; a frame shorter than its header is truncated. */
	f[13] = 0x06;
	assert_int_equal(contain_packet_from_frame(&ip, &len, DLT_EN10MB, f, n), MAMORI_EUNSUPPORTED);
	assert_null(ip);
	assert_int_equal(contain_packet_from_frame(&ip, &len, DLT_EN10MB, f, 13), MAMORI_ETRUNC);
	/* One 802.1Q tag; a tag that ends the frame is truncated. */
	memset(f, 0, 18);
	f[12] = 0x81;
	f[16] = 0x08;
	n = syn_packet(f + 18, 0) + 18;
	assert_int_equal(contain_packet_from_frame(&ip, &len, DLT_EN10MB, f, n), MAMORI_OK);
	assert_int_equal(len, 40);
	assert_int_equal(contain_packet_from_frame(&ip, &len, DLT_EN10MB, f, 16), MAMORI_ETRUNC);
	/* Three stacked tags: the third is not unwrapped, so not IPv4. */
	memset(f, 0, 26);
	f[12] = 0x88;
	f[13] = 0xa8;
	f[16] = 0x81;
	f[20] = 0x81;
	f[24] = 0x08;
	assert_int_equal(contain_packet_from_frame(&ip, &len, DLT_EN10MB, f, 66), MAMORI_EUNSUPPORTED);
	/* Linux cooked (16-byte header, protocol in the last two bytes). */
	memset(f, 0, 16);
	f[14] = 0x08;
	n = syn_packet(f + 16, 0) + 16;
	assert_int_equal(contain_packet_from_frame(&ip, &len, DLT_LINUX_SLL, f, n), MAMORI_OK);
	assert_int_equal(len, 40);
	/* Raw IP; an unknown link type. */
	assert_int_equal(contain_packet_from_frame(&ip, &len, DLT_RAW, f + 16, 40), MAMORI_OK);
	assert_int_equal(len, 40);
	assert_int_equal(contain_packet_from_frame(&ip, &len, DLT_PPP, f, n), MAMORI_EUNSUPPORTED);
}

/* What the gateway does with each packet: SYNs are connections, the rest
 * packets; a flood and a scan come out of the detector. */
/* The virtual Internet's answer to a ping: swapped addresses, type 0,
 * the same identifier, sequence and data, correct checksums. */
static uint16_t sum16(const uint8_t *b, size_t n)
{
	uint32_t s = 0;
	for (size_t i = 0; i + 1 < n; i += 2)
		s += (uint32_t)b[i] << 8 | b[i + 1];
	if (n & 1)
		s += (uint32_t)b[n - 1] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)s;
}

static void test_echo_reply(void **state)
{
	(void)state;
	uint8_t req[64], out[128];
	ip_header(req, 5, sizeof req, IPPROTO_ICMP, "10.66.0.2", "198.51.100.10", 0x4000);
	req[20] = 8;
	req[21] = 0;
	req[24] = 0x12; /* identifier */
	req[25] = 0x34;
	req[26] = 0x00; /* sequence */
	req[27] = 0x07;
	for (size_t i = 28; i < sizeof req; i++)
		req[i] = (uint8_t)i;
	contain_packet p;
	assert_int_equal(contain_packet_parse(&p, req, sizeof req), MAMORI_OK);
	size_t n = 0;
	assert_int_equal(contain_packet_echo_reply(out, sizeof out, &n, &p, req, sizeof req), MAMORI_OK);
	assert_int_equal(n, sizeof req);
	contain_packet r;
	assert_int_equal(contain_packet_parse(&r, out, n), MAMORI_OK);
	assert_int_equal(r.src.s_addr, p.dst.s_addr);
	assert_int_equal(r.dst.s_addr, p.src.s_addr);
	assert_int_equal(r.icmp_type, 0);
	assert_int_equal(sum16(out, 20), 0xffff); /* header checksum */
	assert_int_equal(sum16(out + 20, n - 20), 0xffff);
	assert_memory_equal(out + 24, req + 24, sizeof req - 24); /* id, sequence, data */
	/* Not an echo request, a later fragment, or no room: no answer. */
	req[20] = 0;
	assert_int_equal(contain_packet_parse(&p, req, sizeof req), MAMORI_OK);
	assert_int_equal(contain_packet_echo_reply(out, sizeof out, &n, &p, req, sizeof req), MAMORI_EINVAL);
	req[20] = 8;
	assert_int_equal(contain_packet_parse(&p, req, sizeof req), MAMORI_OK);
	assert_int_equal(contain_packet_echo_reply(out, 40, &n, &p, req, sizeof req), MAMORI_ELIMIT);
	assert_int_equal(n, 0);
	ip_header(req, 5, sizeof req, IPPROTO_ICMP, "10.66.0.2", "198.51.100.10", 0x0010);
	assert_int_equal(contain_packet_parse(&p, req, sizeof req), MAMORI_OK);
	assert_int_equal(contain_packet_echo_reply(out, sizeof out, &n, &p, req, sizeof req), MAMORI_EINVAL);
}

static void test_feed_detect(void **state)
{
	(void)state;
	contain_detect *d = NULL;
	assert_int_equal(contain_detect_new(&d, 0, 0), MAMORI_OK);
	uint8_t b[64];
	contain_packet p;
	size_t n = syn_packet(b, 0);
	assert_int_equal(contain_packet_parse(&p, b, n), MAMORI_OK);
	/* 100 SYNs in a second to 203.0.113.9:80. */
	for (int i = 0; i < 100; i++)
		contain_packet_feed_detect(d, &p, 100.0 + i * 0.01);
	contain_addr dst;
	contain_packet_dst_addr(&p, &dst);
	assert_int_equal(contain_detect_count(d, 100.99, CONTAIN_METRIC_CONN_RATE, &dst, 1.0), 100);
	contain_detect_limits lim;
	contain_detect_limits_default(&lim);
	contain_alert al[8];
	size_t na = 0;
	contain_detect_check(d, 100.99, &lim, al, 8, &na);
	assert_int_equal(na, 1);
	assert_int_equal(al[0].kind, CONTAIN_ALERT_FLOOD);
	assert_true(al[0].has_target && contain_addr_equal(&al[0].target, &dst));
	/* Replies (SYN+ACK) count as packets, not connections. */
	b[33] = CONTAIN_TCP_SYN | CONTAIN_TCP_ACK;
	assert_int_equal(contain_packet_parse(&p, b, n), MAMORI_OK);
	contain_packet_feed_detect(d, &p, 100.99);
	assert_int_equal(contain_detect_count(d, 100.99, CONTAIN_METRIC_CONN_RATE, &dst, 1.0), 100);
	assert_int_equal(contain_detect_count(d, 100.99, CONTAIN_METRIC_PKT_RATE, &dst, 1.0), 101);
	/* 25 ports on one host, slowly: a scan, no flood. */
	contain_detect_free(d);
	assert_int_equal(contain_detect_new(&d, 0, 0), MAMORI_OK);
	for (int i = 0; i < 25; i++) {
		n = syn_packet(b, 0);
		b[22] = (uint8_t)((1000 + i) >> 8);
		b[23] = (uint8_t)(1000 + i);
		assert_int_equal(contain_packet_parse(&p, b, n), MAMORI_OK);
		contain_packet_feed_detect(d, &p, 200.0 + i * 0.2);
	}
	contain_detect_check(d, 205.0, &lim, al, 8, &na);
	assert_int_equal(na, 1);
	assert_int_equal(al[0].kind, CONTAIN_ALERT_SCAN);
	assert_int_equal(al[0].metric, CONTAIN_METRIC_DISTINCT_PORT);
	contain_detect_free(d);
}

/* ------------------------------------------------------------------ */
/* The lab                                                              */
/* ------------------------------------------------------------------ */

#define LAB_HOST     "198.51.100.10"
#define FLOOD_TARGET "203.0.113.9"
#define MAX_SESSIONS LAB_MAX_SESSIONS

/* This test's own part of the lab (lab.h has the namespaces). */
static struct {
	atomic_ulong ipv4; /* IPv4 packets arriving in the internet namespace */
	atomic_ulong echo; /* of which ICMP echo requests */
	pid_t listener;	   /* a listener process of test_nfq_listener_killed */
} lab;

/* Counts IPv4 packets arriving in the internet namespace (lab_count_start),
 * parsed with the code under test's sibling: an ICMP echo request is one
 * with type 8. */
static void count_packet(const uint8_t *ip, size_t len)
{
	atomic_fetch_add(&lab.ipv4, 1);
	contain_packet pk;
	if (contain_packet_parse(&pk, ip, len) == MAMORI_OK && pk.proto == IPPROTO_ICMP && pk.has_transport &&
	    pk.icmp_type == 8)
		atomic_fetch_add(&lab.echo, 1);
}

static void listener_stop(void)
{
	if (lab.listener > 0) {
		kill(lab.listener, SIGKILL);
		waitpid(lab.listener, NULL, 0);
		lab.listener = 0;
	}
}

static int lab_setup(void **state)
{
	(void)state;
	static const char *const addrs[] = { LAB_HOST, FLOOD_TARGET, NULL };
	if (lab_open("packet", addrs) != 0)
		return -1;
	if (!the_lab.ready)
		return 0;
	return lab_count_start(count_packet);
}

static int lab_teardown(void **state)
{
	(void)state;
	listener_stop();
	lab_close();
	return 0;
}

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof cmd)
		fail_msg("command too long");
	int rc = system(cmd);
	return rc == -1 ? -1 : WEXITSTATUS(rc);
}

/* A session in slot `k` with the lab as upstream. */
static contain_session_net *session_new(int k)
{
	return lab_session_new(k, true);
}

/* Let stragglers of earlier traffic pass, then count afresh. */
static void counts_reset(void)
{
	usleep(200000);
	atomic_store(&lab.ipv4, 0);
	atomic_store(&lab.echo, 0);
}

/* ---- ICMP from the inmate ---- */

static uint16_t icmp_checksum(const uint8_t *b, size_t n)
{
	uint32_t sum = 0;
	for (size_t i = 0; i + 1 < n; i += 2)
		sum += (uint32_t)(b[i] << 8 | b[i + 1]);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)(~sum & 0xffff);
}

#define PING_MAX 1400

/* An echo request of `size` bytes (16..PING_MAX) with sequence `seq`. */
static size_t echo_request(uint8_t *pkt, uint16_t seq, size_t size)
{
	memset(pkt, 0, size);
	pkt[0] = 8;
	pkt[4] = 0x4d;
	pkt[5] = 0x4d;
	pkt[6] = (uint8_t)(seq >> 8);
	pkt[7] = (uint8_t)seq;
	for (size_t i = 8; i < size; i++)
		pkt[i] = (uint8_t)("mamori"[i % 6]);
	uint16_t sum = icmp_checksum(pkt, size);
	pkt[2] = (uint8_t)(sum >> 8);
	pkt[3] = (uint8_t)sum;
	return size;
}

/* Send one echo request of `size` bytes from the inmate's namespace (our
 * own raw socket there: the sandbox has no CAP_NET_RAW) and wait up to
 * `wait_ms` for its reply, whole. Returns true when the reply came. */
static bool ping_from_inmate(const contain_session_net *net, uint16_t seq, size_t size, int wait_ms)
{
	int fd = -1;
	assert_int_equal(contain_netns_socket(&fd, net->inmate_ns, AF_INET, SOCK_RAW, IPPROTO_ICMP),
			 MAMORI_OK);
	uint8_t pkt[PING_MAX];
	assert_true(size >= 16 && size <= sizeof pkt);
	echo_request(pkt, seq, size);
	struct sockaddr_in to = { .sin_family = AF_INET };
	inet_pton(AF_INET, LAB_HOST, &to.sin_addr);
	assert_int_equal(sendto(fd, pkt, size, 0, (struct sockaddr *)&to, sizeof to), (ssize_t)size);
	bool replied = false;
	double deadline = mamori_now() + wait_ms / 1000.0;
	while (!replied && mamori_now() < deadline) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 50) <= 0)
			continue;
		uint8_t buf[PING_MAX + 64];
		ssize_t n = recv(fd, buf, sizeof buf, 0);
		contain_packet r;
		if (n > 0 && contain_packet_parse(&r, buf, (size_t)n) == MAMORI_OK && r.has_transport &&
		    r.icmp_type == 0 && r.src.s_addr == to.sin_addr.s_addr && !r.truncated &&
		    r.total_len == r.header_len + size && buf[r.payload_off + 2] == (uint8_t)(seq >> 8) &&
		    buf[r.payload_off + 3] == (uint8_t)seq)
			replied = true;
	}
	close(fd);
	return replied;
}

/* `count` echo requests as fast as the socket takes them. */
static void ping_flood_from_inmate(const contain_session_net *net, unsigned count)
{
	int fd = -1;
	assert_int_equal(contain_netns_socket(&fd, net->inmate_ns, AF_INET, SOCK_RAW, IPPROTO_ICMP),
			 MAMORI_OK);
	struct sockaddr_in to = { .sin_family = AF_INET };
	inet_pton(AF_INET, LAB_HOST, &to.sin_addr);
	uint8_t pkt[64];
	for (unsigned i = 0; i < count; i++) {
		echo_request(pkt, (uint16_t)i, sizeof pkt);
		while (sendto(fd, pkt, sizeof pkt, 0, (struct sockaddr *)&to, sizeof to) < 0 &&
		       errno == ENOBUFS)
			usleep(100);
	}
	close(fd);
}

typedef struct nfq_probe {
	contain_nfq_verdict verdict;
	unsigned accept_every; /* > 0: ACCEPT one packet in that many, DROP the rest */
	atomic_int seen, echo_to_lab, truncated;
} nfq_probe;

static contain_nfq_verdict probe_decide(void *ctx, const contain_packet *p, const uint8_t *data, size_t len)
{
	nfq_probe *pr = ctx;
	assert_true(data != NULL && len >= p->header_len);
	struct in_addr lab_host;
	inet_pton(AF_INET, LAB_HOST, &lab_host);
	if (p->proto == IPPROTO_ICMP && p->has_transport && p->icmp_type == 8 &&
	    p->dst.s_addr == lab_host.s_addr)
		atomic_fetch_add(&pr->echo_to_lab, 1);
	if (p->truncated)
		atomic_fetch_add(&pr->truncated, 1);
	int n = atomic_fetch_add(&pr->seen, 1);
	if (pr->accept_every)
		return n % (int)pr->accept_every == 0 ? CONTAIN_NFQ_ACCEPT : CONTAIN_NFQ_DROP;
	return pr->verdict;
}

/* Test 1: ICMP echo through the listener. ACCEPT: it reaches the lab and
 * the reply comes back. DROP: nothing reaches the lab. Stopped listener:
 * the packets wait in the queue and are dropped (fail-closed). */
static void test_nfq_icmp(void **state)
{
	(void)state;
	LAB_REQUIRE();
	contain_session_net *net = session_new(0);
	nfq_probe pr = { .verdict = CONTAIN_NFQ_ACCEPT };
	contain_nfq_config cfg = {
		.netns = net->gateway_ns, .queue = LAB_NFQUEUE, .decide = probe_decide, .ctx = &pr
	};
	contain_nfq *q = NULL;
	if (contain_nfq_start(&q, &cfg) != MAMORI_OK)
		fail_msg("nfq: %s", mamori_error_detail());
	/* A second listener on the same queue is refused, with a reason. */
	contain_nfq *twin = NULL;
	assert_int_equal(contain_nfq_start(&twin, &cfg), MAMORI_EIO);
	assert_null(twin);
	assert_non_null(strstr(mamori_error_detail(), "queue 7"));

	counts_reset();
	int replies = 0;
	for (uint16_t i = 1; i <= 3; i++)
		replies += ping_from_inmate(net, i, 16, 2000);
	contain_nfq_stats st;
	contain_nfq_stats_get(q, &st);
	assert_int_equal(replies, 3);
	assert_int_equal(atomic_load(&pr.echo_to_lab), 3);
	assert_int_equal(st.packets, 3);
	assert_int_equal(st.accepted, 3);
	assert_int_equal(st.dropped, 0);
	assert_int_equal(st.malformed, 0);
	/* The reply can come back before the counter thread has read the
	 * request from its socket. */
	for (int i = 0; i < 100 && atomic_load(&lab.echo) < 3; i++)
		usleep(10000);
	assert_int_equal(atomic_load(&lab.echo), 3);

	/* DROP: the listener sees them, the lab sees nothing. */
	pr.verdict = CONTAIN_NFQ_DROP;
	counts_reset();
	replies = 0;
	for (uint16_t i = 11; i <= 13; i++)
		replies += ping_from_inmate(net, i, 16, 500);
	usleep(300000);
	assert_int_equal(replies, 0);
	assert_int_equal(atomic_load(&lab.ipv4), 0);
	double t0 = mamori_now();
	contain_nfq_stop(q, &st);
	assert_true(mamori_now() - t0 < 0.5); /* woken, not polled */
	assert_int_equal(st.packets, 6);
	assert_int_equal(st.accepted, 3);
	assert_int_equal(st.dropped, 3);
	assert_int_equal(atomic_load(&pr.seen), 6);

	/* Nobody listening: queued, not forwarded. */
	long before = lab_nfqueue_packets(net->gateway_ns);
	counts_reset();
	assert_false(ping_from_inmate(net, 21, 16, 500));
	usleep(300000);
	assert_int_equal(atomic_load(&lab.ipv4), 0);
	assert_int_equal(lab_nfqueue_packets(net->gateway_ns), before + 1);

	/* A listener again on the freed queue works at once. */
	pr.verdict = CONTAIN_NFQ_ACCEPT;
	assert_int_equal(contain_nfq_start(&q, &cfg), MAMORI_OK);
	assert_true(ping_from_inmate(net, 31, 16, 2000));
	contain_nfq_stop(q, &st);
	assert_int_equal(st.accepted, 1);

	/* A copy range of 64 bytes: the listener sees a truncated packet (its
	 * headers are all it needs), the verdict lets the whole one through. */
	cfg.copy_range = 64;
	assert_int_equal(contain_nfq_start(&q, &cfg), MAMORI_OK);
	atomic_store(&pr.truncated, 0);
	assert_true(ping_from_inmate(net, 41, PING_MAX, 2000));
	contain_nfq_stop(q, &st);
	assert_int_equal(st.accepted, 1);
	assert_int_equal(atomic_load(&pr.truncated), 1);
	assert_int_equal(st.malformed, 0);
	cfg.copy_range = 70000;
	assert_int_equal(contain_nfq_start(&q, &cfg), MAMORI_EINVAL);
	lab_session_end(0);
}

/* Packets conntrack dropped in namespace `ns` when their entry clashed on
 * insertion (insert_failed of /proc/net/stat/nf_conntrack, summed over the
 * CPUs; such a packet also counts in "drop", which is not added). */
static long conntrack_drops(const char *ns)
{
	char cmd[160];
	snprintf(cmd, sizeof cmd, "ip netns exec %s cat /proc/net/stat/nf_conntrack", ns);
	FILE *f = popen(cmd, "r");
	assert_non_null(f);
	char line[512];
	int col_failed = -1;
	long sum = 0;
	while (fgets(line, sizeof line, f) != NULL) {
		char *save = NULL;
		int col = 0;
		for (char *tok = strtok_r(line, " \t\n", &save); tok;
		     tok = strtok_r(NULL, " \t\n", &save), col++) {
			if (!strcmp(tok, "insert_failed"))
				col_failed = col;
			else if (col == col_failed)
				sum += strtol(tok, NULL, 16);
		}
	}
	pclose(f);
	assert_true(col_failed >= 0);
	return sum;
}

/* A ping flood through the listener, one packet in ten accepted: exactly
 * the accepted ones reach the lab, whatever the kernel queue or the socket
 * had to drop on the way (those are never let through). */
static void test_nfq_ping_flood(void **state)
{
	(void)state;
	LAB_REQUIRE();
	contain_session_net *net = session_new(4);
	nfq_probe pr = { .accept_every = 10 };
	contain_nfq_config cfg = {
		.netns = net->gateway_ns, .queue = LAB_NFQUEUE, .decide = probe_decide, .ctx = &pr
	};
	contain_nfq *q = NULL;
	if (contain_nfq_start(&q, &cfg) != MAMORI_OK)
		fail_msg("nfq: %s", mamori_error_detail());
	counts_reset();
	long queued_before = lab_nfqueue_packets(net->gateway_ns);
	const unsigned sent = 20000;
	long ct_before = conntrack_drops(net->gateway_ns);
	double t0 = mamori_now();
	ping_flood_from_inmate(net, sent);
	contain_nfq_stats st;
	for (int i = 0; i < 200; i++) {
		contain_nfq_stats_get(q, &st);
		if (st.packets >= sent)
			break;
		usleep(10000);
	}
	double took = mamori_now() - t0;
	usleep(300000);
	contain_nfq_stop(q, &st);
	long queued = lab_nfqueue_packets(net->gateway_ns) - queued_before;
	print_message("ping flood: %u sent, %ld queued, %llu seen by the listener in %.2f s (%.0f/s), %llu "
		      "accepted, "
		      "%llu overruns, %llu errors, %lu at the lab\n",
		      sent, queued, (unsigned long long)st.packets, took, (double)st.packets / took,
		      (unsigned long long)st.accepted, (unsigned long long)st.overruns,
		      (unsigned long long)st.errors, atomic_load(&lab.echo));
	assert_true(st.packets >= sent / 2);
	assert_int_equal(st.accepted + st.dropped, st.packets);
	assert_int_equal(st.accepted, (st.packets + 9) / 10);
	/* Never more than was accepted (that would be a leak). A few accepted
	 * ones may be missing: the first packets of the flow wait in the queue
	 * together before their conntrack entry is confirmed, and the kernel
	 * drops those whose entry then clashes on insertion (seen as
	 * insert_failed/drop in /proc/net/stat/nf_conntrack of the gateway). */
	assert_true(atomic_load(&lab.echo) <= st.accepted);
	assert_true(atomic_load(&lab.ipv4) <= st.accepted);
	/* And every accepted one is accounted for: it reached the lab, or
	 * conntrack dropped it on that clash. */
	long ct_drops = conntrack_drops(net->gateway_ns) - ct_before;
	print_message("conntrack dropped %ld on insertion\n", ct_drops);
	assert_int_equal(atomic_load(&lab.echo) + (unsigned long)ct_drops, st.accepted);
	lab_session_end(4);
}

/* A listener that dies with the process: packets stay queued (dropped). */
static void test_nfq_listener_killed(void **state)
{
	(void)state;
	LAB_REQUIRE();
	contain_session_net *net = session_new(1);
	int ready[2];
	assert_int_equal(pipe(ready), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
		static nfq_probe pr = { .verdict = CONTAIN_NFQ_ACCEPT };
		contain_nfq_config cfg = {
			.netns = net->gateway_ns, .queue = LAB_NFQUEUE, .decide = probe_decide, .ctx = &pr
		};
		contain_nfq *q = NULL;
		if (contain_nfq_start(&q, &cfg) != MAMORI_OK || write(ready[1], "k", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	lab.listener = pid;
	close(ready[1]);
	char c = 0;
	assert_int_equal(read(ready[0], &c, 1), 1);
	close(ready[0]);
	assert_true(ping_from_inmate(net, 1, 16, 2000)); /* the child's listener works */
	kill(pid, SIGKILL);
	int status = 0;
	waitpid(pid, &status, 0);
	lab.listener = 0;
	counts_reset();
	assert_false(ping_from_inmate(net, 2, 16, 500));
	usleep(300000);
	assert_int_equal(atomic_load(&lab.ipv4), 0);
	lab_session_end(1);
}

/* ---- the capture callback ---- */

typedef struct syn_probe {
	struct in_addr target;
	uint64_t syns_to_target_80, syns, packets, rsts;
	uint32_t ports[65536 / 32]; /* distinct destination ports of SYNs */
	double last_ts;
	contain_detect *det;
} syn_probe;

static void probe_packet(void *ctx, const contain_packet *p, double ts)
{
	syn_probe *s = ctx;
	s->packets++;
	s->last_ts = ts;
	contain_packet_feed_detect(s->det, p, ts);
	if (p->proto == IPPROTO_TCP && (p->tcp_flags & CONTAIN_TCP_RST))
		s->rsts++;
	if (!contain_packet_is_syn(p))
		return;
	s->syns++;
	s->ports[p->dport / 32] |= 1u << (p->dport % 32);
	if (p->dst.s_addr == s->target.s_addr && p->dport == 80)
		s->syns_to_target_80++;
}

static unsigned distinct_ports(const syn_probe *s)
{
	unsigned n = 0;
	for (size_t i = 0; i < sizeof s->ports / sizeof s->ports[0]; i++)
		n += (unsigned)__builtin_popcount(s->ports[i]);
	return n;
}

static contain_capture *capture_inmate(const contain_session_net *net, syn_probe *s)
{
	inet_pton(AF_INET, FLOOD_TARGET, &s->target);
	assert_int_equal(contain_detect_new(&s->det, 0, 0), MAMORI_OK);
	char path[128];
	snprintf(path, sizeof path, "%s/inmate.pcap", the_lab.dir);
	contain_capture *c = NULL;
	if (contain_capture_start_cb(&c, net->gateway_ns, "inmate0", path, NULL, 0, 0, probe_packet, s) !=
	    MAMORI_OK)
		fail_msg("capture: %s", mamori_error_detail());
	return c;
}

static bool find_alert(contain_detect *d, double now, contain_alert_kind kind, contain_metric metric,
		       contain_alert *found)
{
	contain_detect_limits lim;
	contain_detect_limits_default(&lim);
	contain_alert al[16];
	size_t n = 0;
	contain_detect_check(d, now, &lim, al, 16, &n);
	contain_addr target;
	assert_int_equal(contain_addr_parse(&target, FLOOD_TARGET), MAMORI_OK);
	for (size_t i = 0; i < n; i++)
		if (al[i].kind == kind && al[i].metric == metric && al[i].has_target &&
		    contain_addr_equal(&al[i].target, &target)) {
			*found = al[i];
			return true;
		}
	return false;
}

/* Test 2: a SYN flood never completes a handshake, so no relay sees it;
 * the capture callback does, and nothing reaches the lab (REDIRECT ends
 * TCP at the gateway, whose kernel answers with RSTs). */
static void test_capture_syn_flood(void **state)
{
	(void)state;
	LAB_REQUIRE();
	contain_session_net *net = session_new(2);
	static syn_probe s;
	memset(&s, 0, sizeof s);
	contain_capture *c = capture_inmate(net, &s);
	counts_reset();
	double t0 = mamori_now();
	int rc = sh("ip netns exec %s hping3 -S -p 80 --faster -c 2000 " FLOOD_TARGET " >/dev/null 2>&1",
		    net->inmate_ns);
	double took = mamori_now() - t0;
	usleep(300000);
	unsigned long leaked = atomic_load(&lab.ipv4);
	contain_capture_stats st;
	contain_capture_stop(c, &st);
	print_message(
		"hping3 flood: %.2f s, callback saw %llu packets, %llu SYNs to :80; pcap %llu packets\n",
		took, (unsigned long long)s.packets, (unsigned long long)s.syns_to_target_80,
		(unsigned long long)st.packets);
	/* hping3 exits 1 when no reply matched its probes; it ran if it sent. */
	assert_true(rc == 0 || rc == 1);
	assert_true(s.syns_to_target_80 >= 1500);
	assert_int_equal(st.inbound, s.packets);
	assert_int_equal(st.malformed, 0);
	/* The file has both directions, the SYNs and the gateway's RSTs; the
	 * callback only what came from the inmate. */
	assert_true(st.packets >= s.syns_to_target_80 + 1000);
	assert_int_equal(s.rsts, 0);
	assert_int_equal(leaked, 0);
	contain_alert a;
	assert_true(find_alert(s.det, s.last_ts, CONTAIN_ALERT_FLOOD, CONTAIN_METRIC_CONN_RATE, &a));
	assert_true(a.rate >= 50.0);
	print_message("flood alert: %llu SYNs in %.1f s (%.0f/s)\n", (unsigned long long)a.count, a.window,
		      a.rate);
	contain_detect_free(s.det);
	lab_session_end(2);
}

/* Test 3: a SYN scan of 40 ports gives a distinct-port scan alert. */
static void test_capture_syn_scan(void **state)
{
	(void)state;
	LAB_REQUIRE();
	contain_session_net *net = session_new(3);
	static syn_probe s;
	memset(&s, 0, sizeof s);
	contain_capture *c = capture_inmate(net, &s);
	counts_reset();
	int rc = sh("ip netns exec %s timeout 20 hping3 -S --scan 1-40 " FLOOD_TARGET " >/dev/null 2>&1",
		    net->inmate_ns);
	usleep(300000);
	unsigned long leaked = atomic_load(&lab.ipv4);
	contain_capture_stats st;
	contain_capture_stop(c, &st);
	print_message("hping3 scan: exit %d, %llu SYNs, %u distinct ports\n", rc, (unsigned long long)s.syns,
		      distinct_ports(&s));
	assert_true(rc == 0 || rc == 1);
	assert_true(distinct_ports(&s) >= 40);
	assert_int_equal(leaked, 0);
	contain_alert a;
	assert_true(find_alert(s.det, s.last_ts, CONTAIN_ALERT_SCAN, CONTAIN_METRIC_DISTINCT_PORT, &a));
	assert_true(a.count >= 40);
	/* hping3 scans at line rate and retries ports that did not answer as
	 * it expects, so with the default limits this scan may be a connection
	 * flood too: not asserted either way. */
	contain_detect_free(s.det);
	lab_session_end(3);
}

/* The plain API still works, and a capture with neither file nor callback
 * is refused. */
static void test_capture_api(void **state)
{
	(void)state;
	contain_capture *c = NULL;
	assert_int_equal(contain_capture_start_cb(&c, NULL, "lo", NULL, NULL, 0, 0, NULL, NULL),
			 MAMORI_EINVAL);
	assert_null(c);
}

typedef struct udp_probe {
	unsigned datagrams;
	uint16_t last_dport;
	double first_ts, last_ts;
} udp_probe;

static void probe_udp(void *ctx, const contain_packet *p, double ts)
{
	udp_probe *u = ctx;
	if (p->proto != IPPROTO_UDP || !p->has_transport || p->dport != 9999)
		return;
	if (!u->datagrams++)
		u->first_ts = ts;
	u->last_ts = ts;
	u->last_dport = p->dport;
}

/* A callback-only capture (no file) on the lab's loopback: every datagram
 * reaches the callback once, time-stamped on the mamori_now() clock. */
static void test_capture_callback_only(void **state)
{
	(void)state;
	LAB_REQUIRE();
	udp_probe u = { 0 };
	contain_capture *c = NULL;
	if (contain_capture_start_cb(&c, the_lab.internet, "lo", NULL, "udp", 0, 0, probe_udp, &u) !=
	    MAMORI_OK)
		fail_msg("capture: %s", mamori_error_detail());
	int fd = -1;
	assert_int_equal(contain_netns_socket(&fd, the_lab.internet, AF_INET, SOCK_DGRAM, 0), MAMORI_OK);
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(9999) };
	inet_pton(AF_INET, LAB_HOST, &to.sin_addr);
	double t0 = mamori_now();
	for (int i = 0; i < 25; i++)
		assert_int_equal(sendto(fd, "x", 1, 0, (struct sockaddr *)&to, sizeof to), 1);
	double t1 = mamori_now();
	close(fd);
	contain_capture_stats st;
	contain_capture_stop(c, &st);
	assert_int_equal(u.datagrams, 25);
	assert_int_equal(st.packets, 0); /* no file */
	assert_int_equal(st.inbound, 25);
	assert_true(u.first_ts >= t0 - 0.05 && u.last_ts <= t1 + 0.05 && u.first_ts <= u.last_ts);
}

/* Nothing of ours is left behind. */
static void test_no_namespaces_left(void **state)
{
	(void)state;
	LAB_REQUIRE();
	listener_stop();
	lab_close_nothing_left();
}

int main(void)
{
	const struct CMUnitTest parser[] = {
		cmocka_unit_test(test_parse_tcp_syn),	cmocka_unit_test(test_parse_udp_icmp_options),
		cmocka_unit_test(test_parse_malformed), cmocka_unit_test(test_parse_lengths_lie),
		cmocka_unit_test(test_parse_fragments), cmocka_unit_test(test_from_frame),
		cmocka_unit_test(test_feed_detect),	cmocka_unit_test(test_echo_reply),
		cmocka_unit_test(test_capture_api),
	};
	const struct CMUnitTest lab_tests[] = {
		cmocka_unit_test(test_nfq_icmp),
		cmocka_unit_test(test_nfq_ping_flood),
		cmocka_unit_test(test_nfq_listener_killed),
		cmocka_unit_test(test_capture_syn_flood),
		cmocka_unit_test(test_capture_syn_scan),
		cmocka_unit_test(test_capture_callback_only),
		cmocka_unit_test(test_no_namespaces_left),
	};
	int failed = cmocka_run_group_tests_name("packet parser", parser, NULL, NULL);
	failed += cmocka_run_group_tests_name("packet path in the lab", lab_tests, lab_setup, lab_teardown);
	return failed ? 1 : 0;
}
