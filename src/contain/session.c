/*
 * One containment session from start to end: see session.h. The namespaces
 * sit behind a mutex so that a signal thread can cut the inmate off
 * (contain_session_cut) while the main thread still runs the session.
 */
#include "session.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

struct contain_session {
	contain_session_net net;
	pthread_mutex_t lock;
	bool live; /* the namespaces exist */
	contain_gateway *gw;
};

int contain_session_start(contain_session **out, const contain_session_opts *o)
{
	*out = NULL;
	if (!o || !o->dir)
		return mamori_fail(MAMORI_EINVAL, "session: a folder is required");
	if (o->upstream_netns && o->upstream_host)
		return mamori_fail(MAMORI_EINVAL, "session: choose one upstream, a namespace or the host");
	int err = mamori_mkdir_p(o->dir);
	if (err != MAMORI_OK)
		return err;
	contain_session *s = calloc(1, sizeof *s);
	if (!s)
		return mamori_fail(MAMORI_ENOMEM, "session: no memory");
	pthread_mutex_init(&s->lock, NULL);
	contain_netns_config cfg = { .tag = NULL,
				     .slot = o->slot ? o->slot % CONTAIN_SLOT_COUNT
						     : (uint32_t)getpid() % CONTAIN_SLOT_COUNT,
				     .upstream_netns = o->upstream_netns,
				     .tcp_port = CONTAIN_SESSION_TCP_PORT,
				     .udp_port = CONTAIN_SESSION_UDP_PORT,
				     .nfqueue = CONTAIN_SESSION_NFQUEUE };
	pthread_mutex_lock(&s->lock);
	err = contain_session_net_create(&s->net, &cfg);
	s->live = err == MAMORI_OK;
	pthread_mutex_unlock(&s->lock);
	if (err != MAMORI_OK)
		goto done;
	char path[4200];
	if (snprintf(path, sizeof path, "%s/net.txt", o->dir) >= (int)sizeof path) {
		err = mamori_fail(MAMORI_EINVAL, "session: folder name too long");
		goto done;
	}
	if ((err = contain_session_net_record(&s->net, path)) != MAMORI_OK)
		goto done;
	contain_gateway_opts go = { .net = &s->net,
				    .policy = o->policy,
				    .session_dir = o->dir,
				    .upstream_netns = o->upstream_netns,
				    .upstream_host = o->upstream_host,
				    .db = o->db };
	if ((err = contain_gateway_start(&s->gw, &go)) != MAMORI_OK)
		goto done;
	char upstream[64];
	snprintf(upstream, sizeof upstream, "%s%s",
		 o->upstream_host    ? "host"
		 : o->upstream_netns ? "netns:"
				     : "none",
		 o->upstream_netns ? o->upstream_netns : "");
	char inmate_addr[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &s->net.inmate_addr, inmate_addr, sizeof inmate_addr);
	json_t *ev = json_pack("{s:s, s:s, s:s, s:s, s:s}", "inmate", o->inmate ? o->inmate : "", "upstream",
			       upstream, "policy", o->policy_name ? o->policy_name : "default",
			       "inmate_netns", s->net.inmate_ns, "inmate_addr", inmate_addr);
	mamori_event_emit(contain_gateway_eventlog(s->gw), "session_start", ev);
	json_decref(ev);
done:
	if (err != MAMORI_OK) {
		contain_session_end(s, NULL, -2, NULL);
		return err;
	}
	*out = s;
	return MAMORI_OK;
}

const contain_session_net *contain_session_network(const contain_session *s)
{
	return &s->net;
}

mamori_eventlog *contain_session_log(contain_session *s)
{
	return contain_gateway_eventlog(s->gw);
}

void contain_session_peek(contain_session *s, contain_gateway_stats *out)
{
	contain_gateway_peek(s ? s->gw : NULL, out);
}

void contain_session_cut(contain_session *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	if (s->live)
		contain_session_net_destroy(&s->net);
	s->live = false;
	pthread_mutex_unlock(&s->lock);
}

void contain_session_end(contain_session *s, const char *reason, int exit_code, contain_gateway_stats *stats)
{
	if (stats)
		memset(stats, 0, sizeof *stats);
	if (!s)
		return;
	if (reason && s->gw) {
		contain_gateway_stats st;
		contain_gateway_peek(s->gw, &st);
		json_t *ev =
			json_pack("{s:s, s:I, s:I, s:I, s:I, s:I}", "reason", reason, "flows",
				  (json_int_t)st.flows, "forwarded", (json_int_t)st.forwarded, "reflected",
				  (json_int_t)st.reflected, "dropped", (json_int_t)st.dropped,
				  "refused_over_cap", (json_int_t)st.refused_over_cap);
		if (ev && exit_code >= -1)
			json_object_set_new(ev, "exit_code", json_integer(exit_code));
		mamori_event_emit(contain_gateway_eventlog(s->gw), "session_end", ev);
		json_decref(ev);
	}
	contain_gateway_stop(s->gw, stats);
	contain_session_cut(s);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
