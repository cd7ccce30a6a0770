/*
 * Session packet capture (capture.h) on libpcap. The capture socket is
 * opened inside the target network namespace: the calling thread enters
 * it with setns() just long enough to activate the handle (a packet socket
 * belongs to the namespace it was created in, whatever thread reads it
 * later), then returns to its own. A thread of ours then writes packets to
 * the pcap file until stop() asks it to end, and goes on until a read
 * timeout passes with nothing new before the file is closed, so a packet
 * sent before stop() is in the file (stop() takes 100 ms or more).
 *
 * With a per-packet callback, each frame is also classified by direction
 * (on Ethernet: a source MAC other than the interface's own means it came
 * from the peer; with Linux cooked headers the packet type says it) and its
 * IPv4 packet parsed by packet.c before the callback sees it.
 *
 * Limits: one interface per capture; the file is capped at max_bytes
 * (packets past the cap are counted, not written; the callback still sees
 * them); snaplen at most 65535.
 */
#include <errno.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <pcap/pcap.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "capture.h"
#include "mamori/base.h"
#include "netns.h"

#define DEFAULT_MAX_BYTES ((uint64_t)1 << 30)
#define PCAP_FILE_HEADER  24u
#define PCAP_REC_HEADER	  16u
#define ETH_ADDR_LEN	  6u
#define SLL_OUTGOING	  4u /* PACKET_OUTGOING in a Linux cooked header */

struct contain_capture {
	pcap_t *p;
	pcap_dumper_t *d;
	pthread_t th;
	atomic_bool stop;
	uint64_t max_bytes, file_bytes;
	contain_capture_stats st;
	contain_capture_packet_fn callback;
	void *ctx;
	int linktype;
	bool has_mac;
	uint8_t mac[ETH_ADDR_LEN]; /* the interface's own: frames it sends carry it */
};

/* True when the frame arrived from the peer rather than being sent by the
 * interface itself. */
static bool frame_is_inbound(const contain_capture *c, const uint8_t *frame, size_t len)
{
	mamori_cursor cur;
	mamori_cursor_init(&cur, frame, len);
	const uint8_t *src = NULL;
	uint16_t pkttype = 0;
	switch (c->linktype) {
	case DLT_EN10MB:
		if (mamori_cursor_skip(&cur, ETH_ADDR_LEN) != MAMORI_OK ||
		    mamori_read_bytes(&cur, ETH_ADDR_LEN, &src) != MAMORI_OK)
			return false;
		return !c->has_mac || memcmp(src, c->mac, ETH_ADDR_LEN) != 0;
	case DLT_LINUX_SLL: return mamori_read_u16be(&cur, &pkttype) == MAMORI_OK && pkttype != SLL_OUTGOING;
	default: return true;
	}
}

/* The kernel's receive time (wall clock) moved to the mamori_now() clock,
 * which the detector's other inputs use. */
static double monotonic_ts(const struct pcap_pkthdr *h)
{
	struct timespec wall;
	clock_gettime(CLOCK_REALTIME, &wall);
	double now = mamori_now();
	double age = ((double)wall.tv_sec + (double)wall.tv_nsec / 1e9) -
		     ((double)h->ts.tv_sec + (double)h->ts.tv_usec / 1e6);
	return age > 0 ? now - age : now;
}

static void pass_to_callback(contain_capture *c, const struct pcap_pkthdr *h, const u_char *bytes)
{
	if (!frame_is_inbound(c, bytes, h->caplen))
		return;
	const uint8_t *ip = NULL;
	size_t ip_len = 0;
	if (contain_packet_from_frame(&ip, &ip_len, c->linktype, bytes, h->caplen) != MAMORI_OK)
		return; /* ARP and the like: not IPv4, nothing to count */
	contain_packet p;
	if (contain_packet_parse(&p, ip, ip_len) != MAMORI_OK) {
		c->st.malformed++;
		return;
	}
	c->st.inbound++;
	c->callback(c->ctx, &p, monotonic_ts(h));
}

static void capture_packet(u_char *user, const struct pcap_pkthdr *h, const u_char *bytes)
{
	contain_capture *c = (contain_capture *)user;
	if (c->callback)
		pass_to_callback(c, h, bytes);
	if (!c->d)
		return;
	uint64_t rec = PCAP_REC_HEADER + h->caplen;
	if (c->file_bytes + rec > c->max_bytes) {
		c->st.cut++;
		return;
	}
	pcap_dump((u_char *)c->d, h, bytes);
	c->file_bytes += rec;
	c->st.packets++;
	c->st.bytes += h->caplen;
}

/* The thread waits on the capture's descriptor itself, 150 ms at a time,
 * and reads without blocking: a blocking pcap read on Linux's TPACKET_V3
 * ring can wait forever when no packet comes (an empty block is never
 * handed over), and the thread would never see stop(). Packets reach the
 * ring's reader within the 100 ms block timeout, so after stop() the loop
 * goes on until one wait passes with nothing new (at most
 * STOP_DRAIN_ROUNDS waits). */
#define POLL_MS		  150
#define STOP_DRAIN_ROUNDS 20

static void *capture_main(void *arg)
{
	contain_capture *c = arg;
	int fd = pcap_get_selectable_fd(c->p), rounds_after_stop = 0;
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int ready = poll(&pfd, 1, POLL_MS);
		if (ready < 0 && errno != EINTR)
			break;
		int n = ready > 0 ? pcap_dispatch(c->p, -1, capture_packet, (u_char *)c) : 0;
		if (n < 0)
			break;
		if (atomic_load(&c->stop) && (n == 0 || ++rounds_after_stop >= STOP_DRAIN_ROUNDS))
			break;
	}
	return NULL;
}

/* The interface's own MAC, from a socket inside its namespace. Without it
 * every Ethernet frame counts as inbound (the callback over-counts rather
 * than misses). */
static void read_own_mac(contain_capture *c, const char *netns, const char *ifname)
{
	int fd = -1;
	if (contain_netns_socket(&fd, netns, AF_INET, SOCK_DGRAM, 0) != MAMORI_OK)
		return;
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	if (ioctl(fd, SIOCGIFHWADDR, &ifr) == 0 && ifr.ifr_hwaddr.sa_family == ARPHRD_ETHER) {
		memcpy(c->mac, ifr.ifr_hwaddr.sa_data, ETH_ADDR_LEN);
		c->has_mac = true;
	}
	close(fd);
}

int contain_capture_start(contain_capture **out, const char *netns, const char *ifname, const char *pcap_path,
			  const char *filter, uint32_t snaplen, uint64_t max_bytes)
{
	return contain_capture_start_cb(out, netns, ifname, pcap_path, filter, snaplen, max_bytes, NULL,
					NULL);
}

int contain_capture_start_cb(contain_capture **out, const char *netns, const char *ifname,
			     const char *pcap_path, const char *filter, uint32_t snaplen, uint64_t max_bytes,
			     contain_capture_packet_fn on_packet, void *ctx)
{
	*out = NULL;
	char err[PCAP_ERRBUF_SIZE] = "";
	int rc = MAMORI_OK, saved = -1;
	if (!pcap_path && !on_packet)
		return mamori_fail(MAMORI_EINVAL, "capture: neither a file nor a callback");
	contain_capture *c = calloc(1, sizeof(*c));
	if (!c)
		return mamori_fail(MAMORI_ENOMEM, "capture");
	c->max_bytes = max_bytes ? max_bytes : DEFAULT_MAX_BYTES;
	c->file_bytes = PCAP_FILE_HEADER;
	c->callback = on_packet;
	c->ctx = ctx;
	if (!snaplen || snaplen > 65535)
		snaplen = 65535;
	if (netns && (rc = contain_netns_enter(&saved, netns)) != MAMORI_OK)
		goto done;
	c->p = pcap_create(ifname, err);
	if (!c->p) {
		rc = mamori_fail(MAMORI_EIO, "capture %s: %s", ifname, err);
		goto back;
	}
	pcap_set_snaplen(c->p, (int)snaplen);
	pcap_set_promisc(c->p, 0);
	/* No immediate mode: there a read waits for a packet however long it
	 * takes, and the thread could never see stop(). With the 100 ms timeout
	 * every read returns at least that often. */
	pcap_set_timeout(c->p, 100);
	pcap_set_buffer_size(c->p, 8 << 20);
	int act = pcap_activate(c->p);
	if (act < 0) {
		rc = mamori_fail(act == PCAP_ERROR_NO_SUCH_DEVICE ? MAMORI_ENOTFOUND : MAMORI_EIO,
				 "capture %s%s%s: %s", netns ? netns : "", netns ? ":" : "", ifname,
				 pcap_geterr(c->p));
		goto back;
	}
back:
	/* This thread must not go on inside the sample's namespace. */
	if (contain_netns_leave(saved) != MAMORI_OK)
		abort();
	if (rc != MAMORI_OK)
		goto done;
	if (filter && *filter) {
		struct bpf_program prog;
		if (pcap_compile(c->p, &prog, filter, 1, PCAP_NETMASK_UNKNOWN) != 0) {
			rc = mamori_fail(MAMORI_EINVAL, "capture: bad filter '%s': %s", filter,
					 pcap_geterr(c->p));
			goto done;
		}
		int set = pcap_setfilter(c->p, &prog);
		pcap_freecode(&prog);
		if (set != 0) {
			rc = mamori_fail(MAMORI_EIO, "capture: cannot set the filter: %s", pcap_geterr(c->p));
			goto done;
		}
	}
	if (pcap_setnonblock(c->p, 1, err) != 0) {
		rc = mamori_fail(MAMORI_EIO, "capture: %s", err);
		goto done;
	}
	c->linktype = pcap_datalink(c->p);
	if (on_packet)
		read_own_mac(c, netns, ifname);
	if (pcap_path)
		c->d = pcap_dump_open(c->p, pcap_path);
	if (pcap_path && !c->d) {
		rc = mamori_fail(MAMORI_EIO, "capture: %s: %s", pcap_path, pcap_geterr(c->p));
		goto done;
	}
	atomic_init(&c->stop, false);
	if (pthread_create(&c->th, NULL, capture_main, c) != 0) {
		rc = mamori_fail(MAMORI_ENOMEM, "capture: no thread");
		goto done;
	}
done:
	if (rc != MAMORI_OK) {
		if (c->d)
			pcap_dump_close(c->d);
		if (c->p)
			pcap_close(c->p);
		free(c);
		return rc;
	}
	*out = c;
	return MAMORI_OK;
}

void contain_capture_stop(contain_capture *c, contain_capture_stats *stats)
{
	if (!c) {
		if (stats)
			memset(stats, 0, sizeof(*stats));
		return;
	}
	atomic_store(&c->stop, true);
	pthread_join(c->th, NULL);
	struct pcap_stat ps;
	if (pcap_stats(c->p, &ps) == 0)
		c->st.dropped = ps.ps_drop;
	if (c->d)
		pcap_dump_close(c->d);
	pcap_close(c->p);
	if (stats)
		*stats = c->st;
	free(c);
}
