/*
 * Packet capture of a session (issue 5, "Recording"): a libpcap capture
 * of one interface inside a named network namespace, written to a pcap
 * file by a thread of its own until stopped. The gateway records the
 * inmate side with it (the gateway end of the inmate's veth); tests record
 * the lab internet's side to prove what did or did not leave. Internal to
 * src/contain.
 */
#ifndef MAMORI_CONTAIN_CAPTURE_H
#define MAMORI_CONTAIN_CAPTURE_H

#include <stdint.h>

typedef struct contain_capture contain_capture;

/** What a capture saw when it stopped. */
typedef struct contain_capture_stats {
	uint64_t packets; /**< written to the file */
	uint64_t bytes;	  /**< captured bytes written */
	uint64_t dropped; /**< dropped by the kernel (pcap_stats) */
	uint64_t cut;	  /**< not written: the file reached max_bytes */
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

/** Stop, flush and close the file; fill `stats` (may be NULL). NULL is fine. */
void contain_capture_stop(contain_capture *c, contain_capture_stats *stats);

#endif
