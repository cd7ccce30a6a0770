/*
 * Packet capture of a session (issue 5, "Recording"): a libpcap capture
 * of one interface inside a named network namespace, written to a pcap
 * file by a thread of its own until stopped. The gateway records the
 * inmate side with it (the gateway end of the inmate's veth); tests record
 * the lab internet's side to prove what did or did not leave. Internal to
 * src/contain.
 *
 * A capture can also hand every IPv4 packet that arrives on the interface
 * (on inmate0: every packet from the inmate, also those no socket of the
 * gateway ever sees, such as SYNs of a flood or a scan) to a callback, for
 * packet-level flood and scan detection.
 */
#ifndef MAMORI_CONTAIN_CAPTURE_H
#define MAMORI_CONTAIN_CAPTURE_H

#include <stdint.h>

#include "packet.h"

typedef struct contain_capture contain_capture;

/** What a capture saw when it stopped. */
typedef struct contain_capture_stats {
	uint64_t packets;   /**< written to the file */
	uint64_t bytes;	    /**< captured bytes written */
	uint64_t dropped;   /**< dropped by the kernel (pcap_stats) */
	uint64_t cut;	    /**< not written: the file reached max_bytes */
	uint64_t inbound;   /**< IPv4 packets from the peer passed to the callback */
	uint64_t malformed; /**< packets from the peer the IPv4 parser rejected */
} contain_capture_stats;

/**
 * Start capturing on `ifname` in network namespace `netns` (a name under
 * /run/netns; NULL for the caller's own namespace) into `pcap_path`,
 * packets cut to `snaplen` bytes (0: 65535), the file at most `max_bytes`
 * (0: 1 GiB; later packets are counted in `cut`). `filter` is an optional
 * BPF expression. The capture is open and filtering when this returns, so
 * nothing sent afterwards is missed. Errors: MAMORI_ENOTFOUND (no such
 * namespace or interface), MAMORI_EINVAL (bad filter), MAMORI_EIO.
 */
int contain_capture_start(contain_capture **out, const char *netns, const char *ifname, const char *pcap_path,
			  const char *filter, uint32_t snaplen, uint64_t max_bytes);

/**
 * Called on the capture's thread for each IPv4 packet that arrives on the
 * interface from its peer and passes the filter (frames the interface
 * itself sends are skipped), whether or not it fits in the file. `ts` is
 * when the kernel received it, on the mamori_now() clock (CLOCK_MONOTONIC),
 * so it mixes with the gateway's other detector inputs. Packets the parser
 * rejects are not passed; they are counted in
 * contain_capture_stats.malformed. The callback must be quick: the capture
 * waits for it.
 */
typedef void (*contain_capture_packet_fn)(void *ctx, const contain_packet *p, double ts);

/**
 * contain_capture_start with a per-packet callback (`on_packet` may be
 * NULL: the plain capture). `pcap_path` may be NULL here: nothing is
 * written, the callback still sees every packet.
 */
int contain_capture_start_cb(contain_capture **out, const char *netns, const char *ifname,
			     const char *pcap_path, const char *filter, uint32_t snaplen, uint64_t max_bytes,
			     contain_capture_packet_fn on_packet, void *ctx);

/** Stop, flush and close the file; fill `stats` (may be NULL). NULL is fine. */
void contain_capture_stop(contain_capture *c, contain_capture_stats *stats);

#endif
