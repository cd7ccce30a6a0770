/*
 * The gateway's TCP core (internal to src/contain).
 *
 * Listens inside the gateway namespace on the port that the inmate's TCP is
 * REDIRECTed to, reads each connection's original destination
 * (SO_ORIGINAL_DST), waits briefly for the first payload bytes and asks a
 * verdict callback what to do: FORWARD opens a real connection to the
 * original destination from inside the upstream namespace and relays both
 * ways with byte counts; DROP closes (with a reset); REFLECT hands the
 * descriptor to a callback (a fake service). LIMIT is FORWARD with limits
 * that decide fills in (relay_limits): a byte budget for the flow, counted
 * over both directions together (the first bytes included), past which the
 * flow is cut (reset toward the inmate, closed upstream); and a byte rate,
 * one token bucket shared by both directions, which slows the flow down but
 * never ends it.
 *
 * One thread per connection, up to a cap; connections above the cap are
 * reset at once and counted. Without an upstream namespace nothing is ever
 * forwarded: FORWARD becomes REFLECT when a reflect callback exists, else
 * DROP.
 */
#ifndef MAMORI_CONTAIN_RELAY_H
#define MAMORI_CONTAIN_RELAY_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Limits on one forwarded flow; zero means none. */
typedef struct relay_limits {
	uint64_t byte_budget; /**< most bytes up + down together, first bytes included */
	uint64_t byte_rate;   /**< bytes per second, up + down together (token bucket) */
} relay_limits;

typedef enum relay_verdict {
	RELAY_FORWARD = 1,
	RELAY_DROP = 2,
	RELAY_REFLECT = 3,
} relay_verdict;

/** What the relay knows of one intercepted connection. Borrowed by every
 *  callback for the duration of the call only. */
typedef struct relay_flow {
	uint64_t id;		     /**< 1, 2, ... per relay */
	struct sockaddr_in src;	     /**< the inmate's end */
	struct sockaddr_in orig_dst; /**< where the inmate meant to connect */
	double t_start, t_end;	     /**< mamori_now() at accept and at close */
	int verdict;		     /**< relay_verdict actually applied */
	uint64_t bytes_up;	     /**< inmate -> upstream, including the first bytes */
	uint64_t bytes_down;	     /**< upstream -> inmate */
	int upstream_errno;	     /**< why FORWARD failed to connect; 0 otherwise */
	relay_limits limits;	     /**< as decide set them (FORWARD only) */
	bool limited;		     /**< cut because it wanted more than limits.byte_budget */
	double throttled_s;	     /**< seconds the rate limit held the flow back */
} relay_flow;

/* Every callback runs on the flow's own thread, so several run at once:
 * they must be thread-safe, and must return in bounded time (a REFLECT
 * handler too), since contain_relay_stop() waits for them. */

/** Verdict on a new flow, from its first `n` payload bytes (n may be 0 when
 *  the client waits for the server to speak first). Returns a relay_verdict.
 *  `lim` is zeroed on entry; for a limited FORWARD set its fields. */
typedef int (*relay_decide_fn)(void *ctx, const relay_flow *f, const uint8_t *first, size_t n,
			       relay_limits *lim);
/** REFLECT: the callee owns `fd` (must close it); `first` was already read
 *  from it. Runs on the connection's own thread. */
typedef void (*relay_reflect_fn)(void *ctx, const relay_flow *f, int fd, const uint8_t *first, size_t n);
/** Called once per accepted flow when it ends, with final counts. */
typedef void (*relay_end_fn)(void *ctx, const relay_flow *f);
/** FORWARD: every chunk relayed, after it was passed on; `up` is true for
 *  inmate -> upstream. The first bytes come first, as one chunk. A callback
 *  that needs no more of one direction says so with
 *  contain_relay_data_enough(); the relay then moves that direction without
 *  a copy to user space (splice only). Chunks are at most 1 MiB. */
typedef void (*relay_data_fn)(void *ctx, const relay_flow *f, bool up, const uint8_t *data, size_t n);

typedef struct contain_relay_config {
	const char *listen_netns;    /**< gateway namespace; NULL: the caller's own */
	struct in_addr listen_addr;  /**< usually INADDR_ANY */
	uint16_t port;		     /**< 0: pick one (see contain_relay_port) */
	const char *upstream_netns;  /**< where FORWARD connects from; NULL: see upstream_own_netns */
	bool upstream_own_netns;     /**< without upstream_netns: forward from the caller's own namespace
				      *   (`--upstream host`); false: never forward */
	unsigned max_conns;	     /**< concurrent connections; 0: 256 */
	unsigned first_wait_ms;	     /**< wait for the first bytes; 0: 300 */
	unsigned connect_timeout_ms; /**< upstream connect; 0: 5000 */
	unsigned idle_timeout_ms;    /**< no bytes either way; 0: 60000 */
	size_t first_max;	     /**< most first bytes passed to decide; 0: 4096 */
	relay_decide_fn decide;	     /**< required */
	relay_reflect_fn reflect;    /**< optional */
	relay_end_fn on_end;	     /**< optional */
	relay_data_fn on_data;	     /**< optional; when set, each chunk is also copied out for it */
	void *ctx;
} contain_relay_config;

typedef struct contain_relay_stats {
	uint64_t accepted, refused_over_cap, forwarded, dropped, reflected, upstream_failed;
	uint64_t limited;   /**< forwarded flows cut at their byte budget */
	uint64_t throttled; /**< forwarded flows the byte rate held back at least once */
	unsigned active;
} contain_relay_stats;

typedef struct contain_relay contain_relay;

/** Bind, listen and start accepting on a thread of its own. */
int contain_relay_start(contain_relay **out, const contain_relay_config *cfg);
uint16_t contain_relay_port(const contain_relay *r);
void contain_relay_stats_get(contain_relay *r, contain_relay_stats *out);
/** From inside on_data only (the flow's own thread, `f` as passed there):
 *  no more on_data calls for direction `up` of this flow. */
void contain_relay_data_enough(const relay_flow *f, bool up);
/** Stop accepting, end every connection, wait for their threads and free.
 *  Accepts NULL. */
void contain_relay_stop(contain_relay *r);

#endif
