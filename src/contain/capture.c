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
 * Limits: one interface per capture; the file is capped at max_bytes
 * (packets past the cap are counted, not written); snaplen at most 65535.
 */
#include <errno.h>
#include <pcap/pcap.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "capture.h"
#include "mamori/base.h"
#include "netns.h"

#define DEFAULT_MAX_BYTES ((uint64_t)1 << 30)
#define PCAP_FILE_HEADER  24u
#define PCAP_REC_HEADER	  16u

struct contain_capture {
	pcap_t *p;
	pcap_dumper_t *d;
	pthread_t th;
	atomic_bool stop;
	uint64_t max_bytes, file_bytes;
	contain_capture_stats st;
};

static void on_packet(u_char *user, const struct pcap_pkthdr *h, const u_char *bytes)
{
	contain_capture *c = (contain_capture *)user;
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
		int n = ready > 0 ? pcap_dispatch(c->p, -1, on_packet, (u_char *)c) : 0;
		if (n < 0)
			break;
		if (atomic_load(&c->stop) && (n == 0 || ++rounds_after_stop >= STOP_DRAIN_ROUNDS))
			break;
	}
	return NULL;
}

int contain_capture_start(contain_capture **out, const char *netns, const char *ifname, const char *pcap_path,
			  const char *filter, uint32_t snaplen, uint64_t max_bytes)
{
	*out = NULL;
	char err[PCAP_ERRBUF_SIZE] = "";
	int rc = MAMORI_OK, saved = -1;
	contain_capture *c = calloc(1, sizeof(*c));
	if (!c)
		return mamori_fail(MAMORI_ENOMEM, "capture");
	c->max_bytes = max_bytes ? max_bytes : DEFAULT_MAX_BYTES;
	c->file_bytes = PCAP_FILE_HEADER;
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
	c->d = pcap_dump_open(c->p, pcap_path);
	if (!c->d) {
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
	pcap_dump_close(c->d);
	pcap_close(c->p);
	if (stats)
		*stats = c->st;
	free(c);
}
