/*
 * Network namespaces of one containment session (internal to src/contain).
 *
 * A session owns two named namespaces, visible to `ip netns list` as
 * "mamori-<tag>-in" (the inmate) and "mamori-<tag>-gw" (the gateway), and a
 * veth between them: "eth0" in the inmate (10.66.S.x+2/30, default route via
 * the gateway) and "inmate0" in the gateway (10.66.S.x+1/30). Optionally a
 * second veth joins the gateway ("up0") to an existing "internet" namespace
 * (peer "mm-<tag>" there, 10.67.S.x/30) with routes to the two TEST-NET
 * ranges 198.51.100.0/24 and 203.0.113.0/24 only: never a default route.
 *
 * Interception lives in the gateway's own iptables-nft tables: inmate TCP is
 * REDIRECTed to the gateway's TCP port, UDP goes through TPROXY (mark 0x1,
 * table 100) to its UDP port, every other IP packet to NFQUEUE, and the
 * kernel forwards nothing (FORWARD policy DROP): the gateway process decides.
 * IPv6 is disabled in both namespaces so that no second stack can leak.
 * Packets that the gateway accepts from NFQUEUE leave by up0, masqueraded.
 *
 * The relay's FORWARD sockets can live in either of two places: in the
 * upstream namespace itself (as with `--upstream host`, where that is the
 * host's), or in the gateway namespace, whose only way out is up0 with its
 * two TEST-NET routes (a second wall for lab runs).
 *
 * Links, addresses, routes and rules go through rtnetlink (libmnl) from a
 * thread that setns()-es into the namespace for the duration of the call, so
 * the rest of the process keeps its own namespace. iptables rules are loaded
 * by iptables-restore in a forked child that setns()-es first: the nft
 * netlink format is not a stable API worth re-implementing.
 *
 * Cleanup is idempotent and works from the recorded names alone, so a
 * session whose process crashed can be cleaned by a later one.
 */
#ifndef MAMORI_CONTAIN_NETNS_H
#define MAMORI_CONTAIN_NETNS_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#define CONTAIN_NS_PREFIX  "mamori-"
#define CONTAIN_NAME_MAX   32	  /* namespace names, with the NUL */
#define CONTAIN_TAG_MAX	   9	  /* 8 characters and the NUL */
#define CONTAIN_SLOT_COUNT 16384u /* /30 subnets in a /16 */

/* ---- named namespaces, as `ip netns` keeps them in /run/netns ---- */

/** True when `name` is a safe namespace name: 1..31 of [A-Za-z0-9._-],
 *  not "." or "..". */
bool contain_netns_name_ok(const char *name);
/** Create a named namespace with its loopback up. Fails if it exists. */
int contain_netns_add(const char *name);
/** Remove a named namespace. Absent is not an error (idempotent). */
int contain_netns_del(const char *name);
bool contain_netns_exists(const char *name);
/** Open the namespace file; the caller closes *out_fd. */
int contain_netns_open(int *out_fd, const char *name);
/** Create a socket inside namespace `name` (NULL: the caller's own). The
 *  socket stays in that namespace for its whole life. */
int contain_netns_socket(int *out_fd, const char *name, int domain, int type, int proto);
/** Move the calling thread into `name` and return through *out_saved a
 *  descriptor of the namespace it was in, for contain_netns_leave(). */
int contain_netns_enter(int *out_saved, const char *name);
/** Return the calling thread to the namespace saved by _enter and close it. */
int contain_netns_leave(int saved);

/* ---- rtnetlink helpers, each run inside namespace `ns` (NULL: own) ---- */

int contain_netns_addr_add(const char *ns, const char *ifname, const char *addr, unsigned prefix);
int contain_netns_link_up(const char *ns, const char *ifname);
int contain_netns_link_del(const char *ns, const char *ifname);
/** Add or remove a blackhole route for `cidr` with `metric` in the caller's
 *  own namespace. A distinct metric lets concurrent tests each own a route
 *  for the same prefix. Removing an absent route is not an error. */
int contain_netns_blackhole(bool add, const char *cidr, uint32_t metric);

/* ---- one session's topology ---- */

typedef struct contain_netns_config {
	const char *tag;	    /**< 1..8 of [a-z0-9]; NULL: derived from pid and time */
	uint32_t slot;		    /**< which /30 in 10.66/16 and 10.67/16, < CONTAIN_SLOT_COUNT */
	const char *upstream_netns; /**< lab "internet" namespace; NULL: no upstream link */
	uint16_t tcp_port;	    /**< gateway port that inmate TCP is redirected to */
	uint16_t udp_port;	    /**< gateway port that inmate UDP is TPROXYed to */
	uint16_t nfqueue;	    /**< NFQUEUE number for all other inmate IP */
} contain_netns_config;

typedef struct contain_session_net {
	char tag[CONTAIN_TAG_MAX];
	char inmate_ns[CONTAIN_NAME_MAX];
	char gateway_ns[CONTAIN_NAME_MAX];
	char upstream_ns[CONTAIN_NAME_MAX]; /**< "" without upstream */
	char upstream_if[16];		    /**< our veth end inside upstream_ns */
	uint32_t slot;
	struct in_addr inmate_addr;  /**< eth0 in the inmate */
	struct in_addr gateway_addr; /**< inmate0 in the gateway */
	struct in_addr up_gw_addr;   /**< up0 in the gateway */
	struct in_addr up_peer_addr; /**< upstream_if in upstream_ns */
	uint16_t tcp_port, udp_port, nfqueue;
} contain_session_net;

/**
 * Build the session's namespaces, links, routes and rules. On failure
 * everything this call created is removed again (and nothing else, not even
 * a namespace of the same name that existed before), and `out` is zeroed,
 * so contain_session_net_destroy(out) is always safe after the call.
 */
int contain_session_net_create(contain_session_net *out, const contain_netns_config *cfg);
/** Remove everything the session created. Idempotent. */
int contain_session_net_destroy(const contain_session_net *net);
/** Write the names to `path` (key=value lines), for cleanup after a crash. */
int contain_session_net_record(const contain_session_net *net, const char *path);
/** Read a file written by _record and destroy what it names. */
int contain_session_net_cleanup_file(const char *path);

#endif
