/*
 * The containment gateway of one session: glue between the relay (relay.h),
 * the classifiers (proto.h), the detector and policy (detect.h, policy.h),
 * the fake services (fakesvc.h), the capture (capture.h) and the event log.
 * See gateway.h for what it does and what this first slice leaves out.
 *
 * Flows live in a small list under one lock, found by the relay's flow id;
 * every relay callback runs on the flow's own thread, so the per-flow
 * classifier state is only touched by that thread once it exists. The
 * detector and the policy evaluation share a second lock (the detector is
 * not thread-safe). Reflected connections go to the fake service through a
 * socket pair, pumped by the flow's thread: the service never sees the
 * inmate's socket, and the gateway parses both directions as for FORWARD.
 */
#include "gateway.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <jansson.h>

#include "capture.h"
#include "detect.h"
#include "fakesvc.h"
#include "httpbody.h"
#include "nfq.h"
#include "packet.h"
#include "proto.h"
#include "relay.h"
#include "udp.h"

#define GW_PATH_MAX	  4096
#define GW_PUMP_BUF	  16384
#define GW_MAX_RCPTS	  1000		     /* recipients kept per forwarded SMTP message */
#define GW_MAX_ALERTS	  256		     /* distinct (kind, target) detect events per session */
#define GW_SEND_TIMEOUT_S 5		     /* a peer that stops reading ends a reflected flow */
#define GW_DOWNLOAD_MAX	  ((size_t)64 << 20) /* response bytes kept per forwarded HTTP flow */
#define GW_MAX_REQUESTS	  32		     /* requests per HTTP flow whose responses may be downloads */
#define GW_PKT_FLOWS	  256		     /* non-TCP/UDP flows tracked at once */
#define GW_PKT_IDLE_S	  30.0		     /* such a flow ends after this long without a packet */
#define GW_PKT_RECHECK_S  0.1		     /* a flowing packet flow's verdict is re-taken this often */
#define GW_DETECT_EVERY_S 0.05		     /* packet-level flood/scan checks at most this often */
#define GW_ECHO_MAX	  2048 /* largest echo request answered (the NFQUEUE copy range is less) */
#define GW_SEEN_SLOTS	  8192 /* TCP connections remembered for counting once */
#define GW_SEEN_S	  10.0 /* how long one is remembered */

typedef struct gw_flow {
	uint64_t id;  /* the flow's number in the events: one sequence for all transports */
	uint64_t key; /* the TCP or the UDP relay's own id for it */
	contain_transport transport;
	proto_flow *pf;
	size_t first_fed; /* first bytes fed by decide; on_data repeats them */
	bool first_skipped;
	bool reflected;
	char verdict[12]; /* as applied: "forward", "reflect", "drop", "limit" */
	char service[24]; /* REFLECT: the fake service */
	uint64_t refl_up, refl_down;
	json_t *rcpts;	     /* SMTP recipients of the message being parsed */
	json_t *service_end; /* how the fake service ended */
	bool http;	     /* classified as HTTP: its response may be a download */
	/* The requests, oldest first, for the responses' URLs (downloads). */
	struct {
		char url[512];
		bool head;
	} req[GW_MAX_REQUESTS];
	size_t n_req;
	uint8_t *down; /* response bytes of a forwarded HTTP flow (bounded) */
	size_t down_len, down_cap;
	bool down_over; /* GW_DOWNLOAD_MAX reached: later bytes are not kept */
	bool opaque;	/* TLS or unknown: nothing to parse after the first bytes */
	struct gw_flow *next;
} gw_flow;

struct contain_gateway {
	contain_gateway_opts o;
	const contain_policy *policy;
	contain_policy *own_policy;
	contain_detect *det;
	pthread_mutex_t det_lock;
	pthread_mutex_t flows_lock;
	pthread_mutex_t db_lock; /* the database's sample statements (the event log has its own lock) */
	gw_flow *flows;
	mamori_eventlog *log;
	contain_capture *cap;
	contain_relay *relay;
	contain_udp *udp;
	mamori_store *store;
	char maildir[GW_PATH_MAX];
	struct {
		char kind[16];
		contain_addr target;
	} alerts[GW_MAX_ALERTS]; /* detect events already emitted (under det_lock) */
	size_t n_alerts;
	atomic_bool stopping;
	atomic_ullong flows_n, forwarded, reflected, dropped;
	atomic_ullong next_id;
	contain_nfq *nfq;
	double last_check; /* of packet-level floods and scans (under det_lock) */
	struct gw_seen {
		uint64_t key;
		double t;
	} seen[GW_SEEN_SLOTS]; /* TCP connections counted lately (conn_first_sight) */
	/* Non-TCP/UDP flows (NFQUEUE): one per (protocol, destination, ICMP
	 * type), touched only by the NFQUEUE thread, and at stop. */
	struct gw_pkt_flow {
		bool used;
		uint8_t proto, icmp_type;
		struct in_addr src, dst;
		uint64_t id; /* the gw_flow's key */
		int verdict; /* relay_verdict as applied */
		double t_start, last_seen, last_eval;
		uint64_t packets, bytes, replies;
	} pkt[GW_PKT_FLOWS];
	int raw_fd; /* IPPROTO_RAW in the gateway namespace: the virtual Internet's echo replies */
};

static void emit(contain_gateway *gw, const char *type, json_t *body)
{
	if (body) {
		mamori_event_emit(gw->log, type, body);
		json_decref(body);
	}
}

static gw_flow *flow_find(contain_gateway *gw, contain_transport transport, uint64_t key, bool unlink)
{
	pthread_mutex_lock(&gw->flows_lock);
	gw_flow **pp = &gw->flows;
	while (*pp && ((*pp)->key != key || (*pp)->transport != transport))
		pp = &(*pp)->next;
	gw_flow *f = *pp;
	if (f && unlink)
		*pp = f->next;
	pthread_mutex_unlock(&gw->flows_lock);
	return f;
}

static void flow_free(gw_flow *f)
{
	if (!f)
		return;
	proto_flow_free(f->pf);
	json_decref(f->rcpts);
	json_decref(f->service_end);
	free(f->down);
	free(f);
}

/* Copy `key` of `src` into `dst` under `as`, if it is there. */
static void copy_field(json_t *dst, const json_t *src, const char *key, const char *as)
{
	json_t *v = json_object_get(src, key);
	if (v)
		json_object_set(dst, as, v);
}

/* Classifier events (proto.h names) become the event types of
 * docs/contain-events.md; the rest stay in the flow's metadata only. */
static void translate_events(contain_gateway *gw, gw_flow *f, json_t *evs)
{
	size_t i;
	json_t *ev;
	json_array_foreach(evs, i, ev)
	{
		const char *t = json_string_value(json_object_get(ev, "type"));
		if (!t)
			continue;
		json_t *b = NULL;
		const char *out_type = NULL;
		if (!strcmp(t, "http_request")) {
			out_type = "http";
			b = json_object();
			copy_field(b, ev, "method", "method");
			copy_field(b, ev, "host", "host");
			copy_field(b, ev, "uri", "uri");
			copy_field(b, ev, "user_agent", "user_agent");
			if (f->n_req < GW_MAX_REQUESTS) {
				const char *h = json_string_value(json_object_get(ev, "host"));
				const char *u = json_string_value(json_object_get(ev, "uri"));
				const char *m = json_string_value(json_object_get(ev, "method"));
				snprintf(f->req[f->n_req].url, sizeof f->req[0].url, "http://%s%s",
					 h ? h : "?", u ? u : "/");
				f->req[f->n_req++].head = m && !strcmp(m, "HEAD");
			}
		} else if (!strncmp(t, "irc_", 4) && strcmp(t, "irc_privmsg_in") != 0 &&
			   strcmp(t, "irc_topic") != 0) {
			out_type = "irc";
			b = json_deep_copy(ev);
			json_object_del(b, "type");
			if (!json_object_get(b, "command")) {
				char cmd[16];
				size_t k = 0;
				for (const char *p = t + 4; *p && k + 1 < sizeof cmd; p++)
					cmd[k++] = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
				cmd[k] = '\0';
				json_object_set_new(b, "command", json_string(cmd));
			}
		} else if (!strcmp(t, "smtp_rcpt_to")) {
			if (!f->rcpts)
				f->rcpts = json_array();
			json_t *to = json_object_get(ev, "to");
			if (to && json_array_size(f->rcpts) < GW_MAX_RCPTS)
				json_array_append(f->rcpts, to);
		} else if (!strcmp(t, "smtp_message") && !f->reflected) {
			/* Mail reflected to the sink is reported from the sink's own
			 * record (with the stored file) when the service ends. */
			out_type = "smtp";
			b = json_object();
			copy_field(b, ev, "from", "from");
			json_object_set_new(b, "rcpt", f->rcpts ? f->rcpts : json_array());
			f->rcpts = NULL;
			copy_field(b, ev, "subject", "mail_subject");
			copy_field(b, ev, "size", "bytes");
		} else if (!strcmp(t, "smtp_message")) {
			json_decref(f->rcpts);
			f->rcpts = NULL;
		} else if (!strcmp(t, "dns_response")) {
			/* The answer, as addresses; a reflected flow's answers
			 * come from the fake resolver (the sinkhole). */
			out_type = "dns";
			b = json_object();
			copy_field(b, ev, "qname", "qname");
			copy_field(b, ev, "qtype", "qtype");
			copy_field(b, ev, "rcode", "rcode");
			json_t *addrs = json_array();
			size_t k;
			json_t *rr;
			json_array_foreach(json_object_get(ev, "answers"), k, rr)
			{
				if (json_string_value(json_object_get(rr, "address")))
					json_array_append(addrs, json_object_get(rr, "address"));
			}
			json_object_set_new(b, "answers", addrs);
			json_object_set_new(b, "sinkholed", json_boolean(f->reflected));
		}
		if (b) {
			json_object_set_new(b, "flow", json_integer((json_int_t)f->id));
			emit(gw, out_type, b);
		}
	}
}

/* Drain the flow's pending classifier events into the log. */
static void drain_events(contain_gateway *gw, gw_flow *f)
{
	json_t *evs = proto_flow_take_events(f->pf);
	translate_events(gw, f, evs);
	json_decref(evs);
}

/* A server-speaks-first client says nothing until greeted: without bytes
 * the port is all there is (marked in the event as "proto_by": "port"). */
static const char *proto_by_port(uint16_t port)
{
	switch (port) {
	case 25:
	case 465:
	case 587:
	case 2525: return "smtp";
	case 21: return "ftp";
	default: return NULL;
	}
}

/* A flood or scan rule matched: a `detect` event the first time for each
 * (kind, target), so that a flood of 10,000 connections is one event and
 * not 10,000 (each flow still has its flow_start). Called under det_lock. */
static json_t *detect_event(contain_gateway *gw, const contain_rule *rule, const contain_addr *dst,
			    double now)
{
	for (size_t i = 0; i < gw->n_alerts; i++)
		if (!strcmp(gw->alerts[i].kind, rule->label) &&
		    contain_addr_equal(&gw->alerts[i].target, dst))
			return NULL;
	if (gw->n_alerts >= GW_MAX_ALERTS)
		return NULL;
	snprintf(gw->alerts[gw->n_alerts].kind, sizeof gw->alerts[0].kind, "%s", rule->label);
	gw->alerts[gw->n_alerts++].target = *dst;
	char target[64];
	contain_addr_format(dst, target, sizeof target);
	double window = rule->n_conds ? rule->conds[0].window : 1.0;
	uint64_t count =
		rule->n_conds ? contain_detect_count(gw->det, now, rule->conds[0].metric, dst, window) : 0;
	json_t *ev = json_pack("{s:s, s:[s], s:f, s:I, s:I, s:s, s:s}", "kind", rule->label, "targets",
			       target, "rate", window > 0 ? (double)count / window : 0.0, "count",
			       (json_int_t)count, "window_ms", (json_int_t)(window * 1000.0), "verdict",
			       contain_verdict_name(rule->action), "rule", rule->text);
	if (ev && rule->n_conds)
		json_object_set_new(ev, "measure", json_string(contain_metric_name(rule->conds[0].metric)));
	return ev;
}

/* True the first time a TCP connection (destination, port, source port:
 * the source address is always the inmate's) is seen within GW_SEEN_S, by
 * the relay's verdict or by the capture's SYN: each connection counts once
 * in the detector, SYN retransmissions too. A fixed table; a collision
 * only forgets a connection early. Under det_lock. */
static bool conn_first_sight(contain_gateway *gw, uint32_t dst, uint16_t dport, uint16_t sport, double now)
{
	uint64_t key = (uint64_t)dst << 32 | (uint64_t)dport << 16 | sport;
	uint64_t h = key * 0x9e3779b97f4a7c15ull;
	struct gw_seen *e = &gw->seen[(h >> 32) % GW_SEEN_SLOTS];
	if (e->key == key && now - e->t < GW_SEEN_S)
		return false;
	e->key = key;
	e->t = now;
	return true;
}

/* What flow_verdict needs to know of a new flow. */
typedef struct gw_new_flow {
	contain_transport transport;
	const char *transport_name; /* "tcp", "udp", "other" */
	struct sockaddr_in src, dst;
	const char *proto, *proto_by;
	json_t *evs; /* the classifier's events so far (borrowed) */
} gw_new_flow;

/* The verdict on a new flow: policy (with the detector), what can be
 * carried out (no upstream: the protocol's fake service), the flow_start
 * and detect events, and the flow into the list. Returns a relay_verdict;
 * `*v` is the policy's own verdict. */
static int flow_verdict(contain_gateway *gw, gw_flow *f, const gw_new_flow *nf, relay_limits *lim)
{
	contain_verdict verdict, *v = &verdict;
	/* What the policy matches names on: the HTTP Host, the TLS SNI. */
	const char *host = NULL;
	size_t i;
	json_t *ev;
	json_array_foreach(nf->evs, i, ev)
	{
		if (!host && json_string_value(json_object_get(ev, "host")))
			host = json_string_value(json_object_get(ev, "host"));
	}
	json_t *meta = f->pf ? proto_flow_meta(f->pf) : NULL;
	contain_meta m[2];
	size_t n_meta = 0;
	if (host)
		m[n_meta++] = (contain_meta){ "host", host };
	if (json_string_value(json_object_get(meta, "sni")))
		m[n_meta++] = (contain_meta){ "sni", json_string_value(json_object_get(meta, "sni")) };

	char dst_text[INET_ADDRSTRLEN], src_text[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &nf->dst.sin_addr, dst_text, sizeof dst_text);
	inet_ntop(AF_INET, &nf->src.sin_addr, src_text, sizeof src_text);
	uint16_t dport = ntohs(nf->dst.sin_port);
	contain_addr dst = { .family = 4 };
	memcpy(dst.bytes, &nf->dst.sin_addr, 4);
	contain_flow cf = { .proto = nf->proto,
			    .meta = m,
			    .n_meta = n_meta,
			    .dst = dst,
			    .dst_port = dport,
			    .transport = nf->transport };
	double now = mamori_now();
	pthread_mutex_lock(&gw->det_lock);
	/* A TCP connection is counted by whichever sees it first: this
	 * verdict, or its SYN in the capture (which also sees the handshakes
	 * never completed, but up to its block timeout late). */
	if (nf->transport != CONTAIN_TRANSPORT_TCP ||
	    conn_first_sight(gw, nf->dst.sin_addr.s_addr, dport, ntohs(nf->src.sin_port), now))
		contain_detect_conn(gw->det, now, &dst, dport, nf->transport);
	contain_policy_eval(v, gw->policy, &cf, gw->det, now);
	json_t *detect = v->rule && v->rule->label[0] ? detect_event(gw, v->rule, &dst, now) : NULL;
	pthread_mutex_unlock(&gw->det_lock);

	/* Without an upstream nothing is forwarded: the stand-in service for
	 * the protocol answers instead. */
	int rv;
	const char *applied = contain_verdict_name(v->kind);
	const char *service = v->service;
	if (v->kind == CONTAIN_VERDICT_FORWARD || v->kind == CONTAIN_VERDICT_LIMIT) {
		if (gw->o.upstream_netns || gw->o.upstream_host) {
			rv = RELAY_FORWARD;
		} else {
			rv = RELAY_REFLECT;
			applied = "reflect";
			service = contain_fake_service_for(nf->proto);
		}
	} else if (v->kind == CONTAIN_VERDICT_REFLECT) {
		rv = RELAY_REFLECT;
		if (!service)
			service = contain_fake_service_for(nf->proto);
	} else {
		rv = RELAY_DROP;
	}
	snprintf(f->verdict, sizeof f->verdict, "%s", applied);
	snprintf(f->service, sizeof f->service, "%s", rv == RELAY_REFLECT && service ? service : "");
	f->reflected = rv == RELAY_REFLECT;
	f->http = !strcmp(nf->proto, "http");
	atomic_fetch_add(rv == RELAY_FORWARD   ? &gw->forwarded
			 : rv == RELAY_REFLECT ? &gw->reflected
					       : &gw->dropped,
			 1);

	json_t *b = contain_verdict_json(v);
	if (b) {
		json_t *rule = json_object_get(b, "rule");
		json_object_set_new(b, "rule_line", json_copy(json_object_get(rule, "line")));
		json_object_set(b, "rule", json_object_get(rule, "text"));
		if (strcmp(applied, contain_verdict_name(v->kind)) != 0)
			json_object_set_new(b, "policy_verdict", json_string(contain_verdict_name(v->kind)));
		json_object_set_new(b, "verdict", json_string(applied));
		if (f->service[0])
			json_object_set_new(b, "service", json_string(f->service));
		else
			json_object_del(b, "service");
		json_object_set_new(b, "flow", json_integer((json_int_t)f->id));
		json_object_set_new(b, "transport", json_string(nf->transport_name));
		json_object_set_new(b, "src", json_string(src_text));
		json_object_set_new(b, "sport", json_integer(ntohs(nf->src.sin_port)));
		json_object_set_new(b, "dst", json_string(dst_text));
		json_object_set_new(b, "dport", json_integer(dport));
		json_object_set_new(b, "proto", json_string(nf->proto));
		json_object_set_new(b, "proto_by", json_string(nf->proto_by));
		emit(gw, "flow_start", b);
	}
	emit(gw, "detect", detect);
	/* The events of the first bytes follow their flow_start. */
	translate_events(gw, f, nf->evs);
	pthread_mutex_lock(&gw->flows_lock);
	f->next = gw->flows;
	gw->flows = f;
	pthread_mutex_unlock(&gw->flows_lock);
	/* LIMIT: the rule's budget and rate, for the relay that carries it. */
	if (lim && rv == RELAY_FORWARD && v->kind == CONTAIN_VERDICT_LIMIT) {
		lim->byte_budget = v->byte_budget;
		lim->byte_rate = v->byte_rate;
	}
	return rv;
}

/* A new flow's record with its classifier fed the first bytes; NULL when
 * there is no memory (the caller drops the flow). */
static gw_flow *flow_new(contain_gateway *gw, contain_transport transport, uint64_t key, const uint8_t *first,
			 size_t n)
{
	atomic_fetch_add(&gw->flows_n, 1);
	gw_flow *f = calloc(1, sizeof *f);
	if (!f ||
	    proto_flow_new(&f->pf, transport == CONTAIN_TRANSPORT_UDP ? PROTO_UDP : PROTO_TCP) != MAMORI_OK) {
		flow_free(f);
		atomic_fetch_add(&gw->dropped, 1);
		return NULL;
	}
	f->id = atomic_fetch_add(&gw->next_id, 1) + 1;
	f->key = key;
	f->transport = transport;
	if (n > 0)
		proto_flow_feed(f->pf, first, n, PROTO_TO_SERVER);
	f->first_fed = n;
	/* Without bytes there is nothing to settle on: the flow stays open to
	 * classification by what the two sides say next (a reflected SMTP
	 * flow is recognised from the sink's greeting). */
	if (n > 0)
		proto_flow_settle(f->pf);
	return f;
}

static int gw_decide(void *ctx, const relay_flow *rf, const uint8_t *first, size_t n, relay_limits *lim)
{
	contain_gateway *gw = ctx;
	gw_flow *f = flow_new(gw, CONTAIN_TRANSPORT_TCP, rf->id, first, n);
	if (!f)
		return RELAY_DROP;
	gw_new_flow nf = { .transport = CONTAIN_TRANSPORT_TCP,
			   .transport_name = "tcp",
			   .src = rf->src,
			   .dst = rf->orig_dst,
			   .proto = proto_flow_proto(f->pf),
			   .proto_by = "content" };
	const char *by_port = proto_by_port(ntohs(rf->orig_dst.sin_port));
	if (n == 0 && by_port) {
		nf.proto = by_port;
		nf.proto_by = "port";
	}
	if (!nf.proto)
		nf.proto = "unknown";
	/* Bytes nobody parses further need not be copied out of the kernel. */
	f->opaque = !strcmp(nf.proto, "tls") || (n > 0 && !strcmp(nf.proto, "unknown"));
	nf.evs = proto_flow_take_events(f->pf);
	int rv = flow_verdict(gw, f, &nf, lim);
	json_decref(nf.evs);
	return rv;
}

/* Keep a forwarded HTTP flow's response bytes, up to GW_DOWNLOAD_MAX; past
 * that the rest is not kept (the response it cuts is then incomplete). */
static void down_append(gw_flow *f, const uint8_t *data, size_t n)
{
	if (n > GW_DOWNLOAD_MAX - f->down_len) {
		f->down_over = true;
		n = GW_DOWNLOAD_MAX - f->down_len;
	}
	if (f->down_len + n > f->down_cap) {
		size_t cap = f->down_cap ? f->down_cap : 65536;
		while (cap < f->down_len + n)
			cap *= 2;
		uint8_t *p = realloc(f->down, cap);
		if (!p) {
			f->down_over = true;
			return;
		}
		f->down = p;
		f->down_cap = cap;
	}
	memcpy(f->down + f->down_len, data, n);
	f->down_len += n;
}

typedef struct download_ctx {
	contain_gateway *gw;
	gw_flow *f;
} download_ctx;

/* One response of the flow: a complete 200 with a body is a download, into
 * the sample store (and the database's samples) with a `download` event. */
static int download_one(void *ctx, const httpbody_msg *m)
{
	download_ctx *d = ctx;
	contain_gateway *gw = d->gw;
	gw_flow *f = d->f;
	if (m->status != 200 || !m->complete || m->body_len == 0)
		return MAMORI_OK;
	char sha[65];
	bool stored = mamori_store_put(gw->store, m->body, m->body_len, sha) == MAMORI_OK;
	if (!stored)
		mamori_sha256_hex(sha, m->body, m->body_len);
	/* One row per sample in the database, as for every other collector. */
	char path[GW_PATH_MAX];
	if (stored && gw->o.db && mamori_store_path(gw->store, sha, path, sizeof path) == MAMORI_OK) {
		pthread_mutex_lock(&gw->db_lock);
		if (mamori_db_sample_add(gw->o.db, sha, m->body_len, path) != MAMORI_OK)
			fprintf(stderr, "mamori contain: download %.16s... not in the database: %s\n", sha,
				mamori_error_detail());
		pthread_mutex_unlock(&gw->db_lock);
	}
	const char *url = m->index < f->n_req ? f->req[m->index].url : "?";
	json_t *b = json_pack("{s:I, s:s, s:s, s:I, s:b}", "flow", (json_int_t)f->id, "url", url, "sha256",
			      sha, "size", (json_int_t)m->body_len, "stored", stored);
	if (b && m->chunked)
		json_object_set_new(b, "chunked", json_true());
	emit(gw, "download", b);
	return MAMORI_OK;
}

/* The responses of a forwarded HTTP flow, when it ends; `cut`: the gateway
 * ended it (a byte budget), so a body "until close" is not whole. */
static void download_finish(contain_gateway *gw, gw_flow *f, bool cut)
{
	if (!f->down || !gw->store)
		return;
	bool head[GW_MAX_REQUESTS];
	for (size_t i = 0; i < f->n_req; i++)
		head[i] = f->req[i].head;
	download_ctx d = { gw, f };
	/* A flow cut at GW_DOWNLOAD_MAX did not end where the buffer does. */
	contain_httpbody_split(f->down, f->down_len, !f->down_over && !cut, head, f->n_req, download_one, &d);
}

/* Bytes a relay passed on, into the flow's classifier and the log. The
 * relays hand the first bytes (or datagram) over again, which the verdict
 * already fed: false for those. */
static bool flow_feed(contain_gateway *gw, gw_flow *f, bool up, const uint8_t *data, size_t n)
{
	if (up && f->first_fed > 0 && !f->first_skipped) {
		f->first_skipped = true;
		return false;
	}
	proto_flow_feed(f->pf, data, n, up ? PROTO_TO_SERVER : PROTO_TO_CLIENT);
	drain_events(gw, f);
	return true;
}

static void gw_data(void *ctx, const relay_flow *rf, bool up, const uint8_t *data, size_t n)
{
	contain_gateway *gw = ctx;
	gw_flow *f = flow_find(gw, CONTAIN_TRANSPORT_TCP, rf->id, false);
	if (!f || !flow_feed(gw, f, up, data, n))
		return;
	if (!up && f->http && !f->down_over)
		down_append(f, data, n);
	/* The relay splices what we do not need to see (relay.h). */
	if (f->opaque || (!up && f->down_over))
		contain_relay_data_enough(rf, up);
}

typedef struct gw_service {
	const char *name;
	int fd;
	contain_fakesvc_opts o;
	json_t *record;
	int rc;
} gw_service;

static void *service_main(void *arg)
{
	gw_service *s = arg;
	s->rc = contain_fakesvc_run(&s->record, s->name, s->fd, &s->o);
	/* Closing our end is the service's "I am done" to the pump. */
	close(s->fd);
	return NULL;
}

/* Mail the sink stored, as `smtp` events with the file it went to. */
static void emit_sink_mail(contain_gateway *gw, gw_flow *f, const json_t *record)
{
	size_t i;
	json_t *m;
	json_array_foreach(json_object_get(record, "messages"), i, m)
	{
		json_t *b = json_object();
		json_object_set_new(b, "flow", json_integer((json_int_t)f->id));
		copy_field(b, m, "from", "from");
		copy_field(b, m, "rcpt", "rcpt");
		copy_field(b, m, "subject", "mail_subject");
		copy_field(b, m, "bytes", "bytes");
		copy_field(b, m, "sha256", "sha256");
		const char *file = json_string_value(json_object_get(m, "file"));
		if (file) {
			char rel[256];
			snprintf(rel, sizeof rel, "mail/%s", file);
			json_object_set_new(b, "stored", json_string(rel));
		}
		emit(gw, "smtp", b);
	}
}

/* REFLECT: the fake service runs on a thread of its own behind a socket
 * pair; this (the flow's) thread pumps bytes both ways and parses them.
 * Bounded by the service's own session limit and the gateway's stop. */
static void gw_reflect(void *ctx, const relay_flow *rf, int fd, const uint8_t *first, size_t n)
{
	contain_gateway *gw = ctx;
	gw_flow *f = flow_find(gw, CONTAIN_TRANSPORT_TCP, rf->id, false);
	int sv[2] = { -1, -1 };
	pthread_t th;
	bool started = false;
	uint8_t *buf = malloc(GW_PUMP_BUF);
	gw_service svc = { .name = f && f->service[0] ? f->service : "sink" };
	contain_fakesvc_opts_default(&svc.o);
	svc.o.maildir = gw->maildir;
	svc.o.session_ms = (int)gw->o.reflect_ms;
	svc.o.timeout_ms = 5000;
	svc.o.dns = contain_policy_dns(gw->policy);
	if (!f || !buf || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		goto done;
	struct timeval tv = { .tv_sec = GW_SEND_TIMEOUT_S };
	setsockopt(sv[0], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	svc.fd = sv[1];
	if (pthread_create(&th, NULL, service_main, &svc) != 0) {
		close(sv[1]);
		goto done;
	}
	started = true;
	sv[1] = -1; /* the service thread closes it */
	if (n > 0 && !mamori_send_all(sv[0], first, n))
		goto done;
	f->refl_up += n;
	double deadline = mamori_now() + gw->o.reflect_ms / 1000.0 + 2.0;
	bool inmate_open = true;
	while (!atomic_load(&gw->stopping) && mamori_now() < deadline) {
		struct pollfd p[2] = { { .fd = fd, .events = inmate_open ? POLLIN : 0 },
				       { .fd = sv[0], .events = POLLIN } };
		int pr = poll(p, 2, 200);
		if (pr < 0 && errno != EINTR)
			break;
		if (pr <= 0)
			continue;
		if (p[1].revents) {
			ssize_t got = recv(sv[0], buf, GW_PUMP_BUF, 0);
			if (got <= 0)
				break; /* the service is done */
			proto_flow_feed(f->pf, buf, (size_t)got, PROTO_TO_CLIENT);
			drain_events(gw, f);
			if (!mamori_send_all(fd, buf, (size_t)got))
				break;
			f->refl_down += (uint64_t)got;
		}
		if (inmate_open && p[0].revents) {
			ssize_t got = recv(fd, buf, GW_PUMP_BUF, 0);
			if (got <= 0) {
				inmate_open = false;
				shutdown(sv[0], SHUT_WR);
				continue;
			}
			proto_flow_feed(f->pf, buf, (size_t)got, PROTO_TO_SERVER);
			drain_events(gw, f);
			if (!mamori_send_all(sv[0], buf, (size_t)got))
				break;
			f->refl_up += (uint64_t)got;
		}
	}
done:
	close(fd);
	if (sv[0] >= 0)
		close(sv[0]); /* a service still reading sees EOF and ends */
	if (started) {
		pthread_join(th, NULL);
		if (svc.record) {
			if (!strcmp(svc.name, "smtp-sink"))
				emit_sink_mail(gw, f, svc.record);
			json_decref(f->service_end);
			f->service_end = json_incref(json_object_get(svc.record, "end"));
			json_decref(svc.record);
		}
	}
	free(buf);
}

/* The flow_end event's common part. */
static json_t *flow_end_event(gw_flow *f, uint64_t up, uint64_t down, double seconds, const char *reason,
			      int upstream_errno)
{
	json_t *b = json_pack("{s:I, s:I, s:I, s:I, s:s}", "flow", (json_int_t)f->id, "bytes_up",
			      (json_int_t)up, "bytes_down", (json_int_t)down, "duration_ms",
			      (json_int_t)(seconds * 1000.0), "reason", reason ? reason : "closed");
	if (b && upstream_errno)
		json_object_set_new(b, "upstream_error", json_string(strerror(upstream_errno)));
	if (b && proto_flow_meta(f->pf))
		json_object_set(b, "meta", proto_flow_meta(f->pf));
	return b;
}

static void gw_end(void *ctx, const relay_flow *rf)
{
	contain_gateway *gw = ctx;
	gw_flow *f = flow_find(gw, CONTAIN_TRANSPORT_TCP, rf->id, true);
	if (!f)
		return;
	proto_flow_settle(f->pf);
	drain_events(gw, f);
	download_finish(gw, f, rf->limited);
	bool refl = f->reflected;
	const char *reason = rf->verdict == RELAY_DROP ? "dropped"
			     : rf->upstream_errno      ? "upstream_failed"
			     : rf->limited	       ? "byte_budget"
			     : refl		       ? "service_done"
						       : "closed";
	json_t *b = flow_end_event(f, refl ? f->refl_up : rf->bytes_up, refl ? f->refl_down : rf->bytes_down,
				   rf->t_end - rf->t_start, reason, rf->upstream_errno);
	if (b && rf->throttled_s > 0)
		json_object_set_new(b, "throttled_ms", json_integer((json_int_t)(rf->throttled_s * 1000.0)));
	if (b && f->service_end)
		json_object_set(b, "service_end", f->service_end);
	emit(gw, "flow_end", b);
	flow_free(f);
}

/* ---- UDP (udp.h): the same verdicts, one datagram at a time ---- */

static int gw_udp_decide(void *ctx, const contain_udp_flow *uf, const uint8_t *data, size_t n,
			 relay_limits *lim)
{
	contain_gateway *gw = ctx;
	gw_flow *f = flow_new(gw, CONTAIN_TRANSPORT_UDP, uf->id, data, n);
	if (!f)
		return RELAY_DROP;
	const char *proto = proto_flow_proto(f->pf);
	gw_new_flow nf = { .transport = CONTAIN_TRANSPORT_UDP,
			   .transport_name = "udp",
			   .src = uf->src,
			   .dst = uf->orig_dst,
			   .proto = proto ? proto : "unknown",
			   .proto_by = "content",
			   .evs = proto_flow_take_events(f->pf) };
	int rv = flow_verdict(gw, f, &nf, lim);
	json_decref(nf.evs);
	return rv;
}

/* REFLECT: DNS gets the fake resolver's answer; any other service takes
 * datagrams without a word, as a host that drops them would. */
static int gw_udp_reflect(void *ctx, const contain_udp_flow *uf, const uint8_t *in, size_t n, uint8_t *out,
			  size_t out_cap, size_t *out_len)
{
	contain_gateway *gw = ctx;
	*out_len = 0;
	gw_flow *f = flow_find(gw, CONTAIN_TRANSPORT_UDP, uf->id, false);
	if (!f || strcmp(f->service, "dns") != 0)
		return MAMORI_OK;
	char qname[256];
	return contain_fakedns_answer(out, out_cap, out_len, in, n, contain_policy_dns(gw->policy), qname);
}

static void gw_udp_data(void *ctx, const contain_udp_flow *uf, bool up, const uint8_t *data, size_t n)
{
	contain_gateway *gw = ctx;
	gw_flow *f = flow_find(gw, CONTAIN_TRANSPORT_UDP, uf->id, false);
	if (f)
		flow_feed(gw, f, up, data, n);
}

static void gw_udp_end(void *ctx, const contain_udp_flow *uf)
{
	contain_gateway *gw = ctx;
	gw_flow *f = flow_find(gw, CONTAIN_TRANSPORT_UDP, uf->id, true);
	if (!f)
		return;
	proto_flow_settle(f->pf);
	drain_events(gw, f);
	json_t *b =
		flow_end_event(f, uf->bytes_up, uf->bytes_down, uf->t_end - uf->t_start,
			       uf->verdict == RELAY_DROP ? "dropped" : uf->end_reason, uf->upstream_errno);
	if (b) {
		json_object_set_new(b, "packets_up", json_integer((json_int_t)uf->packets_up));
		json_object_set_new(b, "packets_down", json_integer((json_int_t)uf->packets_down));
		if (uf->limited)
			json_object_set_new(b, "limited_datagrams", json_integer((json_int_t)uf->limited));
	}
	emit(gw, "flow_end", b);
	flow_free(f);
}

/* ---- packets: what no socket of the gateway sees ---- */

/* A packet-level probe of the policy for one packet's destination: the
 * flood and scan rules (conn-rate, pkt-rate, distinct-*) fire on it as on a
 * flow; the first time for each (kind, target) gives a `detect` event
 * (returned, for the caller to emit once the lock is released). `*kind`
 * (may be NULL) gets the verdict. Under det_lock. */
static json_t *packet_check(contain_gateway *gw, const contain_packet *p, double now,
			    contain_verdict_kind *kind)
{
	contain_flow cf = { .proto = p->proto == IPPROTO_ICMP ? "icmp" : "unknown",
			    .dst_port = p->has_transport ? p->dport : 0,
			    .transport = contain_packet_transport(p) };
	contain_packet_dst_addr(p, &cf.dst);
	contain_verdict v;
	contain_policy_eval(&v, gw->policy, &cf, gw->det, now);
	if (kind)
		*kind = v.kind;
	return v.rule && v.rule->label[0] ? detect_event(gw, v.rule, &cf.dst, now) : NULL;
}

/* Every packet from the inmate, from the session capture. A TCP SYN is a
 * connection attempt: the relay never sees those of a SYN flood or scan,
 * so they count here, once per connection with the relay's own count
 * (conn_first_sight). Datagrams and other packets count as packets (the
 * UDP relay and NFQUEUE count new flows). Established TCP is not counted:
 * a bulk transfer is no flood. */
static void gw_packet(void *ctx, const contain_packet *p, double captured)
{
	contain_gateway *gw = ctx;
	/* The detector's clock must not go back: the capture hands packets
	 * over up to its block timeout late, the relays right away. */
	(void)captured;
	double ts = mamori_now();
	if (p->proto == IPPROTO_TCP && !contain_packet_is_syn(p))
		return;
	contain_addr dst;
	contain_packet_dst_addr(p, &dst);
	json_t *detect = NULL;
	pthread_mutex_lock(&gw->det_lock);
	if (p->proto == IPPROTO_TCP) {
		if (p->has_transport && conn_first_sight(gw, p->dst.s_addr, p->dport, p->sport, ts))
			contain_detect_conn(gw->det, ts, &dst, p->dport, CONTAIN_TRANSPORT_TCP);
	} else
		contain_detect_packet(gw->det, ts, &dst, p->has_transport ? p->dport : 0,
				      contain_packet_transport(p));
	if (ts - gw->last_check >= GW_DETECT_EVERY_S) {
		gw->last_check = ts;
		detect = packet_check(gw, p, ts, NULL);
	}
	pthread_mutex_unlock(&gw->det_lock);
	emit(gw, "detect", detect);
}

static void pkt_flow_end(contain_gateway *gw, struct gw_pkt_flow *pf, const char *reason)
{
	gw_flow *f = flow_find(gw, CONTAIN_TRANSPORT_OTHER, pf->id, true);
	if (f) {
		json_t *b = flow_end_event(f, pf->bytes, 0, pf->last_seen - pf->t_start, reason, 0);
		if (b) {
			json_object_set_new(b, "packets_up", json_integer((json_int_t)pf->packets));
			json_object_set_new(b, "packets_down", json_integer((json_int_t)pf->replies));
		}
		emit(gw, "flow_end", b);
		flow_free(f);
	}
	pf->used = false;
}

/* REFLECT for a ping: the virtual Internet answers it, as the host it was
 * sent to would (the reply leaves the gateway toward the inmate only; the
 * request itself is dropped). Other packets of a reflected flow get no
 * answer, as from a host that ignores them. */
static void echo_reflect(contain_gateway *gw, struct gw_pkt_flow *pf, const contain_packet *p,
			 const uint8_t *data, size_t len)
{
	uint8_t reply[GW_ECHO_MAX];
	size_t n = 0;
	if (gw->raw_fd < 0 || !data || len > sizeof reply ||
	    contain_packet_echo_reply(reply, sizeof reply, &n, p, data, len) != MAMORI_OK)
		return;
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_addr = p->src };
	if (sendto(gw->raw_fd, reply, n, MSG_DONTWAIT, (struct sockaddr *)&to, sizeof to) == (ssize_t)n)
		pf->replies++;
}

/* The verdict on one queued packet (NFQUEUE: neither TCP nor UDP). A new
 * (protocol, destination, ICMP type) is a flow with a policy verdict and a
 * flow_start; its later packets follow that verdict, which is re-taken now
 * and then so that a ping flood turns into DROP. FORWARD lets the packet out
 * by the upstream link (lab namespaces only: with --upstream host the
 * gateway has no link to route it by); REFLECT answers pings itself
 * (echo_reflect) and drops the packet; DROP drops it. */
static contain_nfq_verdict gw_nfq(void *ctx, const contain_packet *p, const uint8_t *data, size_t len)
{
	contain_gateway *gw = ctx;
	double now = mamori_now();
	uint8_t icmp_type = p->proto == IPPROTO_ICMP && p->has_transport ? p->icmp_type : 0;
	/* ICMP errors from the inmate (unreachable, time exceeded, parameter
	 * problem, source quench, redirect) are about flows the gateway ended
	 * itself (an answer to a socket already closed): they have no
	 * business upstream and are no flows of their own. */
	if (p->proto == IPPROTO_ICMP &&
	    (icmp_type == 3 || icmp_type == 4 || icmp_type == 5 || icmp_type == 11 || icmp_type == 12))
		return CONTAIN_NFQ_DROP;
	struct gw_pkt_flow *hit = NULL, *free_slot = NULL, *oldest = NULL;
	for (size_t i = 0; i < GW_PKT_FLOWS; i++) {
		struct gw_pkt_flow *e = &gw->pkt[i];
		if (e->used && now - e->last_seen > GW_PKT_IDLE_S)
			pkt_flow_end(gw, e, "idle");
		if (!e->used) {
			free_slot = free_slot ? free_slot : e;
			continue;
		}
		if (e->proto == p->proto && e->icmp_type == icmp_type && e->dst.s_addr == p->dst.s_addr &&
		    e->src.s_addr == p->src.s_addr)
			hit = e;
		if (!oldest || e->last_seen < oldest->last_seen)
			oldest = e;
	}
	if (!hit) {
		if (!free_slot) {
			pkt_flow_end(gw, oldest, "evicted");
			free_slot = oldest;
		}
		gw_flow *f = flow_new(gw, CONTAIN_TRANSPORT_OTHER, 0, NULL, 0);
		if (!f)
			return CONTAIN_NFQ_DROP;
		f->key = f->id;
		char proto[16];
		snprintf(proto, sizeof proto, p->proto == IPPROTO_ICMP ? "icmp" : "ip-%u",
			 (unsigned)p->proto);
		gw_new_flow nf = { .transport = CONTAIN_TRANSPORT_OTHER,
				   .transport_name = "other",
				   .proto = proto,
				   .proto_by = "header" };
		nf.src.sin_addr = p->src;
		nf.dst.sin_addr = p->dst;
		int rv = flow_verdict(gw, f, &nf, NULL);
		if (rv == RELAY_FORWARD && !gw->o.upstream_netns)
			rv = RELAY_DROP;
		hit = free_slot;
		*hit = (struct gw_pkt_flow){ .used = true,
					     .proto = p->proto,
					     .icmp_type = icmp_type,
					     .src = p->src,
					     .dst = p->dst,
					     .id = f->id,
					     .verdict = rv,
					     .t_start = now,
					     .last_eval = now };
	} else if (hit->verdict != RELAY_DROP && now - hit->last_eval >= GW_PKT_RECHECK_S) {
		hit->last_eval = now;
		contain_verdict_kind kind;
		pthread_mutex_lock(&gw->det_lock);
		json_t *detect = packet_check(gw, p, now, &kind);
		pthread_mutex_unlock(&gw->det_lock);
		emit(gw, "detect", detect);
		if (kind == CONTAIN_VERDICT_DROP)
			hit->verdict = RELAY_DROP;
	}
	hit->last_seen = now;
	hit->packets++;
	hit->bytes += p->total_len;
	if (hit->verdict == RELAY_REFLECT)
		echo_reflect(gw, hit, p, data, len);
	return hit->verdict == RELAY_FORWARD ? CONTAIN_NFQ_ACCEPT : CONTAIN_NFQ_DROP;
}

static int path_join(char *out, size_t cap, const char *dir, const char *name)
{
	int n = snprintf(out, cap, "%s/%s", dir, name);
	if (n < 0 || (size_t)n >= cap)
		return mamori_fail(MAMORI_EINVAL, "session path too long: %.64s...", dir);
	return MAMORI_OK;
}

int contain_gateway_start(contain_gateway **out, const contain_gateway_opts *o)
{
	*out = NULL;
	if (!o || !o->net || !o->session_dir)
		return mamori_fail(MAMORI_EINVAL, "gateway: a session net and folder are required");
	if (o->upstream_netns && o->upstream_host)
		return mamori_fail(MAMORI_EINVAL,
				   "gateway: an upstream namespace and the host exclude each other");
	if (o->upstream_netns && strcmp(o->upstream_netns, o->net->upstream_ns) != 0)
		return mamori_fail(MAMORI_EINVAL,
				   "gateway: upstream '%.32s' is not the session's upstream '%.32s'",
				   o->upstream_netns, o->net->upstream_ns);
	int err = MAMORI_OK;
	char path[GW_PATH_MAX];
	contain_gateway *gw = calloc(1, sizeof *gw);
	if (!gw)
		return mamori_fail(MAMORI_ENOMEM, "gateway: no memory");
	gw->o = *o;
	gw->raw_fd = -1;
	if (!gw->o.reflect_ms)
		gw->o.reflect_ms = 30000;
	pthread_mutex_init(&gw->det_lock, NULL);
	pthread_mutex_init(&gw->flows_lock, NULL);
	pthread_mutex_init(&gw->db_lock, NULL);
	gw->policy = o->policy;
	if (!gw->policy) {
		if ((err = contain_policy_default(&gw->own_policy)) != MAMORI_OK)
			goto done;
		gw->policy = gw->own_policy;
	}
	if ((err = contain_detect_new(&gw->det, 0, 0)) != MAMORI_OK)
		goto done;
	if ((err = path_join(gw->maildir, sizeof gw->maildir, o->session_dir, "mail")) != MAMORI_OK ||
	    (err = mamori_mkdir_p(gw->maildir)) != MAMORI_OK)
		goto done;
	if (o->store_dir)
		err = mamori_store_open(&gw->store, o->store_dir);
	else if ((err = path_join(path, sizeof path, o->session_dir, "store")) == MAMORI_OK)
		err = mamori_store_open(&gw->store, path);
	if (err != MAMORI_OK)
		goto done;
	const char *subject = o->session_id;
	if (!subject) {
		const char *slash = strrchr(o->session_dir, '/');
		subject = slash && slash[1] ? slash + 1 : o->session_dir;
	}
	if ((err = path_join(path, sizeof path, o->session_dir, "events.jsonl")) != MAMORI_OK ||
	    (err = mamori_eventlog_open(&gw->log, o->db, path, "contain", subject)) != MAMORI_OK)
		goto done;
	if (!o->no_capture) {
		if ((err = path_join(path, sizeof path, o->session_dir, "inmate.pcap")) != MAMORI_OK ||
		    (err = contain_capture_start_cb(&gw->cap, o->net->gateway_ns, "inmate0", path, NULL, 0, 0,
						    gw_packet, gw)) != MAMORI_OK)
			goto done;
	}
	/* FORWARD leaves from the gateway namespace itself, whose only way out
	 * is up0 with routes to the two TEST-NET ranges (netns.h): a second
	 * wall behind the policy. */
	contain_relay_config rc = { .listen_netns = o->net->gateway_ns,
				    .listen_addr = { .s_addr = htonl(INADDR_ANY) },
				    .port = o->net->tcp_port,
				    .upstream_netns = o->upstream_netns ? o->net->gateway_ns : NULL,
				    .upstream_own_netns = o->upstream_host,
				    .first_wait_ms = o->first_wait_ms,
				    .decide = gw_decide,
				    .reflect = gw_reflect,
				    .on_end = gw_end,
				    .on_data = gw_data,
				    .ctx = gw };
	if ((err = contain_relay_start(&gw->relay, &rc)) != MAMORI_OK)
		goto done;
	contain_udp_config uc = { .listen_netns = o->net->gateway_ns,
				  .listen_addr = o->net->gateway_addr,
				  .port = o->net->udp_port,
				  .upstream_netns = o->upstream_netns ? o->net->gateway_ns : NULL,
				  .upstream_own_netns = o->upstream_host,
				  .decide = gw_udp_decide,
				  .reflect = gw_udp_reflect,
				  .on_data = gw_udp_data,
				  .on_end = gw_udp_end,
				  .ctx = gw };
	if ((err = contain_udp_start(&gw->udp, &uc)) != MAMORI_OK)
		goto done;
	if ((err = contain_netns_socket(&gw->raw_fd, o->net->gateway_ns, AF_INET, SOCK_RAW, IPPROTO_RAW)) !=
	    MAMORI_OK)
		goto done;
	contain_nfq_config qc = {
		.netns = o->net->gateway_ns, .queue = o->net->nfqueue, .decide = gw_nfq, .ctx = gw
	};
	err = contain_nfq_start(&gw->nfq, &qc);
done:
	if (err != MAMORI_OK) {
		contain_gateway_stop(gw, NULL);
		return err;
	}
	*out = gw;
	return MAMORI_OK;
}

mamori_eventlog *contain_gateway_eventlog(contain_gateway *gw)
{
	return gw ? gw->log : NULL;
}

void contain_gateway_peek(contain_gateway *gw, contain_gateway_stats *out)
{
	memset(out, 0, sizeof *out);
	if (!gw)
		return;
	out->flows = atomic_load(&gw->flows_n);
	out->forwarded = atomic_load(&gw->forwarded);
	out->reflected = atomic_load(&gw->reflected);
	out->dropped = atomic_load(&gw->dropped);
	contain_relay_stats rs = { 0 };
	if (gw->relay)
		contain_relay_stats_get(gw->relay, &rs);
	contain_udp_stats us = { 0 };
	if (gw->udp)
		contain_udp_stats_get(gw->udp, &us);
	out->refused_over_cap = rs.refused_over_cap + us.refused_over_cap;
}

void contain_gateway_stop(contain_gateway *gw, contain_gateway_stats *stats)
{
	if (stats)
		memset(stats, 0, sizeof *stats);
	if (!gw)
		return;
	atomic_store(&gw->stopping, true);
	contain_gateway_stats before;
	contain_gateway_peek(gw, &before);
	contain_relay_stop(gw->relay);
	contain_udp_stop(gw->udp);
	contain_nfq_stop(gw->nfq, NULL);
	if (gw->raw_fd >= 0)
		close(gw->raw_fd);
	for (size_t i = 0; i < GW_PKT_FLOWS; i++)
		if (gw->pkt[i].used)
			pkt_flow_end(gw, &gw->pkt[i], "stop");
	contain_capture_stats cs = { 0 };
	contain_capture_stop(gw->cap, &cs);
	if (stats) {
		stats->flows = atomic_load(&gw->flows_n);
		stats->forwarded = atomic_load(&gw->forwarded);
		stats->reflected = atomic_load(&gw->reflected);
		stats->dropped = atomic_load(&gw->dropped);
		stats->events = gw->log ? mamori_eventlog_count(gw->log) : 0;
		stats->capture_packets = cs.packets;
		stats->refused_over_cap = before.refused_over_cap;
	}
	/* Flows the relay never ended (it ends them all; this is a guard). */
	while (gw->flows) {
		gw_flow *f = gw->flows;
		gw->flows = f->next;
		flow_free(f);
	}
	mamori_eventlog_free(gw->log);
	contain_detect_free(gw->det);
	mamori_store_free(gw->store);
	contain_policy_free(gw->own_policy);
	pthread_mutex_destroy(&gw->det_lock);
	pthread_mutex_destroy(&gw->flows_lock);
	pthread_mutex_destroy(&gw->db_lock);
	free(gw);
}
