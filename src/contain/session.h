/*
 * One containment session from start to end (internal to src/contain): the
 * session folder, its namespaces (netns.h), the gateway (gateway.h) and the
 * session_start / session_end events. Shared by `mamori sandbox run` (a
 * command runs behind the gateway) and `mamori contain run` (the gateway
 * alone, for whatever another tool puts into the inmate namespace).
 *
 * contain_session_cut() removes the namespaces at once and may be called
 * from any thread (a signal thread) while the session runs: the inmate is
 * cut off the moment it returns; the gateway keeps recording what is still
 * in flight until contain_session_end().
 */
#ifndef MAMORI_CONTAIN_SESSION_H
#define MAMORI_CONTAIN_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#include "gateway.h"
#include "mamori/base.h"
#include "netns.h"
#include "policy.h"

/* The gateway's ports and queue inside its own namespace: fixed, since
 * every session has a namespace of its own. */
#define CONTAIN_SESSION_TCP_PORT 15001
#define CONTAIN_SESSION_UDP_PORT 15053
#define CONTAIN_SESSION_NFQUEUE	 7

typedef struct contain_session_opts {
	const char *dir;	      /**< session folder, created if missing; required */
	const contain_policy *policy; /**< borrowed; NULL: the built-in default */
	const char *policy_name;      /**< for session_start; NULL: "default" */
	const char *upstream_netns;   /**< lab namespace to forward into */
	bool upstream_host;	      /**< forward from the caller's own namespace */
	mamori_db *db;		      /**< borrowed, may be NULL */
	const char *inmate;	      /**< what runs behind the gateway, for session_start */
	uint32_t slot;		      /**< address slot; 0: from the pid */
} contain_session_opts;

typedef struct contain_session contain_session;

/** Create the namespaces (recorded in DIR/net.txt for `mamori contain
 *  cleanup`), start the gateway and emit session_start. On failure nothing
 *  is left behind. --upstream-netns and --upstream host exclude each other. */
int contain_session_start(contain_session **out, const contain_session_opts *o);
/** The session's namespaces (borrowed; valid until contain_session_end). */
const contain_session_net *contain_session_network(const contain_session *s);
/** The session's event log (borrowed). */
mamori_eventlog *contain_session_log(contain_session *s);
/** The gateway's counts so far (contain_gateway_peek). */
void contain_session_peek(contain_session *s, contain_gateway_stats *out);
/** Remove the namespaces now (idempotent, thread-safe). */
void contain_session_cut(contain_session *s);
/** Emit session_end with `reason`, `exit_code` (exit_code < -1: left out)
 *  and the gateway's counts, stop the gateway, remove the namespaces and
 *  free. `stats` may be NULL. NULL is fine. */
void contain_session_end(contain_session *s, const char *reason, int exit_code, contain_gateway_stats *stats);

#endif
