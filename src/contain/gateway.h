/*
 * The containment gateway of one session (internal to src/contain): the TCP
 * relay in the gateway namespace with a verdict callback that classifies a
 * flow's first bytes (proto.h), records it in the flood/scan detector and
 * evaluates the policy (policy.h); FORWARD relays upstream, REFLECT hands the
 * connection to the fake service the verdict names (fakesvc.h) through a
 * socket pair, so that the gateway sees and parses both directions of a
 * reflected flow too; DROP resets. Every flow gives `flow_start` (verdict
 * and rule), the protocol events (http, irc, smtp) and `flow_end` in the
 * session's event log (SESSION/events.jsonl, and the database if given);
 * the inmate side is captured into SESSION/inmate.pcap; mail reflected to
 * the SMTP sink lands in SESSION/mail/.
 *
 * Limits of this first slice: TCP only (UDP and DNS through TPROXY and the
 * NFQUEUE path are not served yet: such packets are dropped by the session's
 * rules); LIMIT is carried out as FORWARD without a byte budget (the relay
 * has none yet; the event still says "limit"); a server-speaks-first flow
 * that sends nothing within the first wait is classified by its port (25,
 * 465, 587, 2525: smtp; 21: ftp) and marked "proto_by": "port". A
 * download is the body of the first 200 response of a forwarded HTTP flow
 * (not chunked, at most 64 MiB): it goes into the sample store and gives a
 * `download` event with its URL and SHA-256; later responses on a
 * kept-alive connection are not yet extracted.
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
	mamori_db *db;		/**< borrowed, may be NULL: events also go there */
	const char *store_dir;	/**< sample store for downloads; NULL: SESSION/store */
	unsigned first_wait_ms; /**< wait for first bytes; 0: 300 */
	unsigned reflect_ms;	/**< longest reflected session; 0: 30000 */
	bool no_capture;	/**< skip inmate.pcap (tests without libpcap rights) */
} contain_gateway_opts;

typedef struct contain_gateway contain_gateway;

typedef struct contain_gateway_stats {
	uint64_t flows, forwarded, reflected, dropped, events, capture_packets;
	uint64_t refused_over_cap; /**< reset by the relay before any verdict (too many at once) */
} contain_gateway_stats;

/** Open the event log, start the capture and the relay. `*out` belongs to
 *  the caller (contain_gateway_stop). On failure nothing is left running. */
int contain_gateway_start(contain_gateway **out, const contain_gateway_opts *o);
/** The session's event log (borrowed), for session_start/session_end. */
mamori_eventlog *contain_gateway_eventlog(contain_gateway *gw);
/** Stop the relay (ending every flow), the capture and the log; fill
 *  `stats` (may be NULL). NULL is fine. */
void contain_gateway_stop(contain_gateway *gw, contain_gateway_stats *stats);

#endif
