/*
 * The gateway's UDP core (internal to src/contain): the datagram twin of
 * relay.h.
 *
 * The session's rules TPROXY every UDP datagram of the inmate to one port of
 * the gateway namespace (netns.h). A transparent socket bound there
 * (IP_TRANSPARENT, IP_RECVORIGDSTADDR) receives each datagram with its
 * source and its original destination. A flow is the pair (inmate
 * address:port, original destination address:port). Its first datagram goes
 * to a verdict callback and every later one follows that verdict:
 *
 * - FORWARD sends the flow's datagrams from a UDP socket created in the
 *   upstream namespace and connected to the original destination; answers
 *   go back to the inmate from a transparent socket bound to the original
 *   destination address:port, so the inmate sees them come from where it
 *   sent (a connected client accepts nothing else);
 * - REFLECT passes each datagram to a callback that may return one reply
 *   datagram (the fake DNS), sent back the same way;
 * - DROP swallows them.
 *
 * The per-flow reply socket is also connected to the inmate's address, and
 * that makes the kernel's TPROXY lookup deliver the flow's later datagrams
 * straight to it; the listening socket sees only first datagrams (and those
 * of DROP flows, which own no socket).
 *
 * Flows sit in a table of cfg.max_flows entries. When it is full, a new
 * flow evicts the DROP flow that was quiet longest (it owns no socket, only
 * its verdict, so a UDP scan cannot lock out the inmate's DNS); with no DROP
 * flow to evict, the datagram is dropped and counted. A flow ends after
 * idle_timeout_ms without a datagram either way, or, for destination port
 * 53 unless dns_keep_open, as soon as every datagram it carried up was
 * answered (one DNS query, one answer: the next query, from the same port or
 * not, is a new flow with a verdict of its own; a datagram that reaches the
 * old flow's socket as it closes is served as the new flow's, not lost).
 * Without an upstream nothing is ever forwarded: FORWARD becomes REFLECT
 * when a reflect callback exists, else DROP.
 * Datagrams to addresses that cannot be a peer (0/8, 127/8, multicast,
 * 240/4 and broadcast) are always dropped, after the callback saw them.
 *
 * One thread serves every flow and runs every callback, one at a time:
 * callbacks need no locking among themselves but must return quickly, as
 * they hold up all UDP of the session. Up to two descriptors per flow: the
 * caller's RLIMIT_NOFILE should allow 3 * max_flows + a few (a closed
 * flow's socket lingers for 20 ms).
 */
#ifndef MAMORI_CONTAIN_UDP_H
#define MAMORI_CONTAIN_UDP_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "relay.h" /* relay_verdict: the same three verdicts */

/** Largest datagram relayed (a bigger one cannot exist in IPv4). */
#define CONTAIN_UDP_DGRAM_MAX 65535
/** Hard ceiling of cfg.max_flows. */
#define CONTAIN_UDP_FLOWS_MAX 65536u

/** What the relay knows of one flow. Borrowed by every callback for the
 *  duration of the call only. */
typedef struct contain_udp_flow {
	uint64_t id;			   /**< 1, 2, ... per relay */
	struct sockaddr_in src;		   /**< the inmate's end */
	struct sockaddr_in orig_dst;	   /**< where the inmate sent it */
	double t_start, t_end;		   /**< mamori_now() at the first datagram and at the end */
	int verdict;			   /**< relay_verdict applied (0 while decide runs) */
	uint64_t packets_up, bytes_up;	   /**< datagrams from the inmate, passed on or not */
	uint64_t packets_down, bytes_down; /**< datagrams sent to the inmate */
	uint64_t dropped_up;		   /**< datagrams from the inmate that went nowhere */
	int upstream_errno;		   /**< FORWARD: why the upstream socket failed; 0 otherwise */
	const char *end_reason;		   /**< at on_end: "idle", "answered", "evicted" or "stop" */
	relay_limits limits;		   /**< FORWARD: as decide set them */
	uint64_t limited;		   /**< datagrams dropped by those limits, either way */
} contain_udp_flow;

/** Verdict on a new flow from its first datagram. Returns a relay_verdict.
 *  `lim` is zeroed on entry; for a limited FORWARD set its fields: datagrams
 *  (either way) that would pass the flow's byte budget, or find its token
 *  bucket (burst: an eighth of a second's worth, at least 64 KiB) short, are
 *  dropped, as a saturated link would. */
typedef int (*udp_decide_fn)(void *ctx, const contain_udp_flow *f, const uint8_t *data, size_t n,
			     relay_limits *lim);
/** REFLECT: every datagram of the flow. Write a reply of at most `out_cap`
 *  bytes to `out` and its length to `*out_len` (0: no reply); a result
 *  other than MAMORI_OK means no reply either. */
typedef int (*udp_reflect_fn)(void *ctx, const contain_udp_flow *f, const uint8_t *in, size_t n, uint8_t *out,
			      size_t out_cap, size_t *out_len);
/** Every datagram the inmate sends (whatever the verdict: f->verdict says
 *  what became of it) and every one sent back to it, after it was passed
 *  on; `up` is true for inmate -> outside. A reflected reply comes right
 *  after its query. */
typedef void (*udp_data_fn)(void *ctx, const contain_udp_flow *f, bool up, const uint8_t *data, size_t n);
/** Once per flow when it ends, with final counts. */
typedef void (*udp_end_fn)(void *ctx, const contain_udp_flow *f);

typedef struct contain_udp_config {
	const char *listen_netns;   /**< gateway namespace; NULL: the caller's own */
	struct in_addr listen_addr; /**< the TPROXY rule's --on-ip (the gateway's inmate0 address);
				     *   INADDR_ANY works too but also takes datagrams sent to the
				     *   port from other links */
	uint16_t port;		    /**< the TPROXY --on-port; 0: pick one (contain_udp_port) */
	const char *upstream_netns; /**< where FORWARD sends from; NULL: see upstream_own_netns */
	bool upstream_own_netns;    /**< without upstream_netns: forward from the caller's own
				     *   namespace (`--upstream host`); false: never forward */
	unsigned max_flows;	    /**< flows at once; 0: 1024; at most CONTAIN_UDP_FLOWS_MAX */
	unsigned idle_timeout_ms;   /**< no datagram either way; 0: 30000 */
	bool dns_keep_open;	    /**< port-53 flows end by idle timeout only */
	udp_decide_fn decide;	    /**< required */
	udp_reflect_fn reflect;	    /**< optional */
	udp_data_fn on_data;	    /**< optional */
	udp_end_fn on_end;	    /**< optional */
	void *ctx;
} contain_udp_config;

typedef struct contain_udp_stats {
	uint64_t datagrams_up;			/**< received from the inmate */
	uint64_t datagrams_down;		/**< sent to the inmate: answers and replies */
	uint64_t flows;				/**< flows opened */
	uint64_t refused_over_cap;		/**< datagrams dropped: the flow table was full */
	uint64_t evicted;			/**< DROP flows ended early to make room */
	uint64_t forwarded, dropped, reflected; /**< flows, by the verdict applied */
	uint64_t upstream_failed;		/**< FORWARD flows whose upstream socket failed */
	uint64_t socket_failed;			/**< flows turned to DROP: no reply socket */
	uint64_t not_passed;			/**< inmate datagrams that went nowhere */
	unsigned active;			/**< flows open now */
} contain_udp_stats;

typedef struct contain_udp contain_udp;

/** Bind the transparent socket and start serving on a thread of its own.
 *  `*out` belongs to the caller (contain_udp_stop). */
int contain_udp_start(contain_udp **out, const contain_udp_config *cfg);
uint16_t contain_udp_port(const contain_udp *u);
void contain_udp_stats_get(contain_udp *u, contain_udp_stats *out);
/** Stop at once: end every open flow (on_end with "stop"), join the thread
 *  and free. Accepts NULL. */
void contain_udp_stop(contain_udp *u);

#endif
