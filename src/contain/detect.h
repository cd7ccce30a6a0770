/*
 * Flood and scan detection for one inmate session: sliding-window counters
 * of new connections and packets, per destination host and session-wide, and
 * the number of distinct destination hosts and ports seen in a window.
 *
 * Time is passed in by the caller (seconds, any monotonic origin), so tests
 * drive it with synthetic timestamps. Counters live in 100 ms buckets; a
 * window is at most CONTAIN_DETECT_MAX_WINDOW seconds. Memory is bounded: at
 * most `max_hosts` destination hosts and `max_endpoints` host:port pairs are
 * tracked; past that, new destinations are counted in a session-wide
 * "untracked" counter so distinct counts never drop below the truth (they may
 * over-count a destination seen twice while the tables are full).
 */
#ifndef MAMORI_CONTAIN_DETECT_H
#define MAMORI_CONTAIN_DETECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Longest window any counter can answer for, in seconds. */
#define CONTAIN_DETECT_MAX_WINDOW 10
/** Default caps of the tracked tables. */
#define CONTAIN_DETECT_DEFAULT_HOSTS	 1024
#define CONTAIN_DETECT_DEFAULT_ENDPOINTS 4096
/** Longest name (host, SNI) remembered for max-hosts rules. */
#define CONTAIN_DETECT_NAME_MAX 255

typedef enum contain_transport {
	CONTAIN_TRANSPORT_TCP = 1,
	CONTAIN_TRANSPORT_UDP = 2,
	CONTAIN_TRANSPORT_OTHER = 4, /**< ICMP and the rest (NFQUEUE) */
} contain_transport;

/** An address as the gateway saw it: IPv4 (4 bytes) or IPv6 (16 bytes). */
typedef struct contain_addr {
	uint8_t family; /**< 4 or 6 */
	uint8_t bytes[16];
} contain_addr;

/** Parse "198.51.100.7" or an IPv6 literal; MAMORI_EINVAL if neither. */
int contain_addr_parse(contain_addr *out, const char *text);
/** Text form into `buf` (at least 46 bytes). */
void contain_addr_format(const contain_addr *a, char *buf, size_t size);
bool contain_addr_equal(const contain_addr *a, const contain_addr *b);

typedef enum contain_metric {
	CONTAIN_METRIC_CONN_RATE = 1,	/**< new connections to the flow's host */
	CONTAIN_METRIC_PKT_RATE,	/**< packets to the flow's host */
	CONTAIN_METRIC_DISTINCT_DST,	/**< distinct destination hosts, session-wide */
	CONTAIN_METRIC_DISTINCT_PORT,	/**< distinct ports on the flow's host */
	CONTAIN_METRIC_TOTAL_CONN_RATE, /**< new connections, session-wide */
	CONTAIN_METRIC_TOTAL_PKT_RATE,	/**< packets, session-wide */
} contain_metric;

/** Name of a metric as written in policy files ("conn-rate", ...). */
const char *contain_metric_name(contain_metric m);

typedef struct contain_detect contain_detect;

/** A detector; caps of 0 take the defaults. Free with contain_detect_free. */
int contain_detect_new(contain_detect **out, size_t max_hosts, size_t max_endpoints);
void contain_detect_free(contain_detect *d);

/** Record a new connection (TCP SYN, a new UDP flow, a new ICMP flow) to
 *  `dst`:`port` at time `now`; it also counts as one packet. */
void contain_detect_conn(contain_detect *d, double now, const contain_addr *dst, uint16_t port,
			 contain_transport transport);
/** Record one packet to `dst`:`port` at time `now`. */
void contain_detect_packet(contain_detect *d, double now, const contain_addr *dst, uint16_t port,
			   contain_transport transport);

/**
 * Count of `metric` over the last `window` seconds (clamped to 0.1 ..
 * CONTAIN_DETECT_MAX_WINDOW) ending at `now`. `dst` names the host for the
 * per-host metrics and is ignored by the session-wide ones.
 */
uint64_t contain_detect_count(contain_detect *d, double now, contain_metric metric, const contain_addr *dst,
			      double window);

/**
 * Rank of `name` among the distinct names seen so far under `scope` (e.g. a
 * protocol): 1 for the first name ever seen, 2 for the second... The name is
 * recorded on first sight. Past the cap, new names get rank UINT32_MAX so
 * that "only the first N hosts" rules stay closed. Matching ignores case.
 */
uint32_t contain_detect_name_rank(contain_detect *d, const char *scope, const char *name);

/** What a check found: a flood against one host, or a scan. */
typedef enum contain_alert_kind { CONTAIN_ALERT_FLOOD = 1, CONTAIN_ALERT_SCAN } contain_alert_kind;

typedef struct contain_alert {
	contain_alert_kind kind;
	contain_metric metric;
	bool has_target;     /**< false for session-wide alerts */
	contain_addr target; /**< the flooded or scanned host */
	uint64_t count;	     /**< events in the window */
	double window;	     /**< seconds */
	double rate;	     /**< count / window */
} contain_alert;

/** Thresholds for contain_detect_check; a limit of 0 disables that test. */
typedef struct contain_detect_limits {
	uint64_t conn_per_window; /**< flood: new connections to one host */
	uint64_t pkt_per_window;  /**< flood: packets to one host */
	double flood_window;
	uint64_t distinct_dst;	/**< scan: distinct hosts, session-wide */
	uint64_t distinct_port; /**< scan: distinct ports on one host */
	double scan_window;
} contain_detect_limits;

/** Defaults: 50 conns or 500 packets per second to one host; 20 hosts or 20
 *  ports in 10 s. */
void contain_detect_limits_default(contain_detect_limits *out);

/**
 * Every flood and scan in progress at `now`, hosts ordered by how long ago
 * they were first seen. Writes at most `max` alerts to `out`; `*n_out` is
 * the number written.
 */
void contain_detect_check(contain_detect *d, double now, const contain_detect_limits *lim, contain_alert *out,
			  size_t max, size_t *n_out);

#endif
