/*
 * The containment gateway of one session (internal to src/contain; guide in
 * docs/containment.md). Three front ends share one verdict path:
 *
 * - TCP: the relay (relay.h) in the gateway namespace. The first bytes are
 *   classified (proto.h); the flow is recorded in the flood/scan detector
 *   and the policy decides (policy.h). FORWARD relays upstream, LIMIT
 *   forwards within the rule's byte budget and rate, REFLECT hands the
 *   connection to the fake service the verdict names (fakesvc.h) through a
 *   socket pair, so that the gateway parses both directions of a reflected
 *   flow too, and DROP resets.
 * - UDP: the TPROXY relay (udp.h), flow by flow; REFLECT answers DNS with
 *   the fake resolver and swallows the rest; LIMIT drops the datagrams past
 *   the budget or the rate.
 * - Everything else: the NFQUEUE listener (nfq.h). A flow per (protocol,
 *   source, destination, ICMP type); FORWARD accepts (out by the lab link;
 *   with --upstream host there is none, so it drops), the rest drops. The
 *   verdict of a forwarded packet flow is re-taken every 100 ms, so that a
 *   ping flood turns into DROP.
 *
 * The session capture (capture.h, SESSION/inmate.pcap) also hands every
 * packet from the inmate to the detector: SYNs (which the relay never sees
 * when a handshake is not completed), datagrams and other packets. The
 * policy's flood and scan rules are then checked for that destination, at
 * most every 50 ms, so SYN floods and SYN scans give `detect` events too.
 *
 * Every flow gives `flow_start` (verdict and rule), the protocol events
 * (dns, http, irc, smtp) and `flow_end` in the session's event log
 * (SESSION/events.jsonl, and the database if given). Mail reflected to the
 * SMTP sink lands in SESSION/mail/. A download is the body of the first 200
 * response of a forwarded HTTP flow (not chunked, complete as its
 * Content-Length says, at most 64 MiB): it goes into the sample store (and
 * the database's samples) and gives a `download` event with its URL and
 * SHA-256; later responses on a kept-alive connection are not extracted.
 */
#ifndef MAMORI_CONTAIN_GATEWAY_H
#define MAMORI_CONTAIN_GATEWAY_H

#include <stdbool.h>
#include <stdint.h>

#include "mamori/base.h"
#include "netns.h"
#include "policy.h"

typedef struct contain_gateway_opts {
	const contain_session_net *net; /**< the session's namespaces; required, borrowed */
	const contain_policy *policy;	/**< borrowed; NULL: the built-in default */
	const char *session_dir;	/**< existing folder; required */
	const char *session_id;		/**< event subject; NULL: the folder's last component */
	/** FORWARD connects from the gateway namespace out through its up0 link
	 *  to this lab namespace (it must be the net's upstream). NULL: nothing
	 *  is forwarded, every flow is reflected. */
	const char *upstream_netns;
	/** FORWARD connects from the caller's own namespace (`--upstream host`:
	 *  the host's network, as a real deployment does). Excludes upstream_netns. */
	bool upstream_host;
	mamori_db *db;		/**< borrowed, may be NULL: events also go there */
	const char *store_dir;	/**< sample store for downloads; NULL: SESSION/store */
	unsigned first_wait_ms; /**< wait for first bytes; 0: 300 */
	unsigned reflect_ms;	/**< longest reflected session; 0: 30000 */
	bool no_capture;	/**< skip inmate.pcap (tests without libpcap rights) */
} contain_gateway_opts;

typedef struct contain_gateway contain_gateway;

typedef struct contain_gateway_stats {
	uint64_t flows, forwarded, reflected, dropped, events, capture_packets;
	uint64_t refused_over_cap; /**< TCP reset, UDP dropped before any verdict (too many at once) */
} contain_gateway_stats;

/** Open the event log, start the capture and the relay. `*out` belongs to
 *  the caller (contain_gateway_stop). On failure nothing is left running. */
int contain_gateway_start(contain_gateway **out, const contain_gateway_opts *o);
/** The session's event log (borrowed), for session_start/session_end. */
mamori_eventlog *contain_gateway_eventlog(contain_gateway *gw);
/** The counts so far, while the gateway runs (flows, verdicts, refusals;
 *  events and capture_packets are filled only by contain_gateway_stop). */
void contain_gateway_peek(contain_gateway *gw, contain_gateway_stats *out);
/** Stop the relay (ending every flow), the capture and the log; fill
 *  `stats` (may be NULL). NULL is fine. */
void contain_gateway_stop(contain_gateway *gw, contain_gateway_stats *stats);

#endif
