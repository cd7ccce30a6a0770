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
#include "proto.h"
#include "relay.h"

#define GW_PATH_MAX	  4096
#define GW_PUMP_BUF	  16384
#define GW_MAX_RCPTS	  1000		     /* recipients kept per forwarded SMTP message */
#define GW_MAX_ALERTS	  256		     /* distinct (kind, target) detect events per session */
#define GW_SEND_TIMEOUT_S 5		     /* a peer that stops reading ends a reflected flow */
#define GW_DOWNLOAD_MAX	  ((size_t)64 << 20) /* response bytes kept per forwarded HTTP flow */
#define GW_HEAD_MAX	  16384		     /* longest response head searched */

typedef struct gw_flow {
	uint64_t id;
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
	char url[512];	     /* of the first request */
	uint8_t *down;	     /* response bytes of a forwarded HTTP flow (bounded) */
	size_t down_len, down_cap;
	bool down_over; /* past GW_DOWNLOAD_MAX: no download recorded */
	struct gw_flow *next;
} gw_flow;

struct contain_gateway {
	contain_gateway_opts o;
	const contain_policy *policy;
	contain_policy *own_policy;
	contain_detect *det;
	pthread_mutex_t det_lock;
	pthread_mutex_t flows_lock;
	gw_flow *flows;
	mamori_eventlog *log;
	contain_capture *cap;
	contain_relay *relay;
	mamori_store *store;
	char maildir[GW_PATH_MAX];
	struct {
		char kind[16];
		contain_addr target;
	} alerts[GW_MAX_ALERTS]; /* detect events already emitted (under det_lock) */
	size_t n_alerts;
	atomic_bool stopping;
	atomic_ullong flows_n, forwarded, reflected, dropped;
};

static void emit(contain_gateway *gw, const char *type, json_t *body)
{
	if (body) {
		mamori_event_emit(gw->log, type, body);
		json_decref(body);
	}
}

static gw_flow *flow_find(contain_gateway *gw, uint64_t id, bool unlink)
{
	pthread_mutex_lock(&gw->flows_lock);
	gw_flow **pp = &gw->flows;
	while (*pp && (*pp)->id != id)
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
			if (!f->url[0]) {
				const char *h = json_string_value(json_object_get(ev, "host"));
				const char *u = json_string_value(json_object_get(ev, "uri"));
				snprintf(f->url, sizeof f->url, "http://%s%s", h ? h : "?", u ? u : "/");
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
	return json_pack("{s:s, s:[s], s:f, s:I, s:I, s:s, s:s}", "kind", rule->label, "targets", target,
			 "rate", window > 0 ? (double)count / window : 0.0, "count", (json_int_t)count,
			 "window_ms", (json_int_t)(window * 1000.0), "verdict",
			 contain_verdict_name(rule->action), "rule", rule->text);
}

static int gw_decide(void *ctx, const relay_flow *rf, const uint8_t *first, size_t n)
{
	contain_gateway *gw = ctx;
	atomic_fetch_add(&gw->flows_n, 1);
	gw_flow *f = calloc(1, sizeof *f);
	if (!f || proto_flow_new(&f->pf, PROTO_TCP) != MAMORI_OK) {
		flow_free(f);
		atomic_fetch_add(&gw->dropped, 1);
		return RELAY_DROP;
	}
	f->id = rf->id;
	if (n > 0)
		proto_flow_feed(f->pf, first, n, PROTO_TO_SERVER);
	f->first_fed = n;
	/* Without bytes there is nothing to settle on: the flow stays open to
	 * classification by what the two sides say next (a reflected SMTP
	 * flow is recognised from the sink's greeting). */
	if (n > 0)
		proto_flow_settle(f->pf);

	uint16_t dport = ntohs(rf->orig_dst.sin_port);
	const char *proto = proto_flow_proto(f->pf);
	const char *proto_by = "content";
	if (n == 0 && proto_by_port(dport)) {
		proto = proto_by_port(dport);
		proto_by = "port";
	}
	if (!proto)
		proto = "unknown";

	/* What the policy matches names on: the HTTP Host, the TLS SNI. */
	json_t *evs = proto_flow_take_events(f->pf);
	const char *host = NULL;
	size_t i;
	json_t *ev;
	json_array_foreach(evs, i, ev)
	{
		if (!host && json_string_value(json_object_get(ev, "host")))
			host = json_string_value(json_object_get(ev, "host"));
	}
	json_t *meta = proto_flow_meta(f->pf);
	contain_meta m[2];
	size_t n_meta = 0;
	if (host)
		m[n_meta++] = (contain_meta){ "host", host };
	if (json_string_value(json_object_get(meta, "sni")))
		m[n_meta++] = (contain_meta){ "sni", json_string_value(json_object_get(meta, "sni")) };

	char dst_text[INET_ADDRSTRLEN], src_text[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &rf->orig_dst.sin_addr, dst_text, sizeof dst_text);
	inet_ntop(AF_INET, &rf->src.sin_addr, src_text, sizeof src_text);
	contain_addr dst = { .family = 4 };
	memcpy(dst.bytes, &rf->orig_dst.sin_addr, 4);
	contain_flow cf = { .proto = proto,
			    .meta = m,
			    .n_meta = n_meta,
			    .dst = dst,
			    .dst_port = dport,
			    .transport = CONTAIN_TRANSPORT_TCP };
	contain_verdict v;
	double now = mamori_now();
	pthread_mutex_lock(&gw->det_lock);
	contain_detect_conn(gw->det, now, &dst, dport, CONTAIN_TRANSPORT_TCP);
	contain_policy_eval(&v, gw->policy, &cf, gw->det, now);
	json_t *detect = v.rule && v.rule->label[0] ? detect_event(gw, v.rule, &dst, now) : NULL;
	pthread_mutex_unlock(&gw->det_lock);

	/* LIMIT: the relay has no byte budget yet, so it forwards (gateway.h).
	 * Without an upstream nothing is forwarded: the stand-in service for
	 * the protocol answers instead. */
	int rv;
	const char *applied = contain_verdict_name(v.kind);
	const char *service = v.service;
	if (v.kind == CONTAIN_VERDICT_FORWARD || v.kind == CONTAIN_VERDICT_LIMIT) {
		if (gw->o.upstream_netns) {
			rv = RELAY_FORWARD;
		} else {
			rv = RELAY_REFLECT;
			applied = "reflect";
			service = contain_fake_service_for(proto);
		}
	} else if (v.kind == CONTAIN_VERDICT_REFLECT) {
		rv = RELAY_REFLECT;
		if (!service)
			service = contain_fake_service_for(proto);
	} else {
		rv = RELAY_DROP;
	}
	snprintf(f->verdict, sizeof f->verdict, "%s", applied);
	snprintf(f->service, sizeof f->service, "%s", rv == RELAY_REFLECT && service ? service : "");
	f->reflected = rv == RELAY_REFLECT;
	f->http = !strcmp(proto, "http");
	atomic_fetch_add(rv == RELAY_FORWARD   ? &gw->forwarded
			 : rv == RELAY_REFLECT ? &gw->reflected
					       : &gw->dropped,
			 1);

	json_t *b = contain_verdict_json(&v);
	if (b) {
		json_t *rule = json_object_get(b, "rule");
		json_object_set_new(b, "rule_line", json_copy(json_object_get(rule, "line")));
		json_object_set(b, "rule", json_object_get(rule, "text"));
		if (strcmp(applied, contain_verdict_name(v.kind)) != 0)
			json_object_set_new(b, "policy_verdict", json_string(contain_verdict_name(v.kind)));
		json_object_set_new(b, "verdict", json_string(applied));
		if (f->service[0])
			json_object_set_new(b, "service", json_string(f->service));
		else
			json_object_del(b, "service");
		json_object_set_new(b, "flow", json_integer((json_int_t)rf->id));
		json_object_set_new(b, "transport", json_string("tcp"));
		json_object_set_new(b, "src", json_string(src_text));
		json_object_set_new(b, "sport", json_integer(ntohs(rf->src.sin_port)));
		json_object_set_new(b, "dst", json_string(dst_text));
		json_object_set_new(b, "dport", json_integer(dport));
		json_object_set_new(b, "proto", json_string(proto));
		json_object_set_new(b, "proto_by", json_string(proto_by));
		emit(gw, "flow_start", b);
	}
	emit(gw, "detect", detect);
	/* The events of the first bytes follow their flow_start. */
	translate_events(gw, f, evs);
	json_decref(evs);
	pthread_mutex_lock(&gw->flows_lock);
	f->next = gw->flows;
	gw->flows = f;
	pthread_mutex_unlock(&gw->flows_lock);
	return rv;
}

/* Keep a forwarded HTTP flow's response bytes, up to GW_DOWNLOAD_MAX. */
static void down_append(gw_flow *f, const uint8_t *data, size_t n)
{
	if (n > GW_DOWNLOAD_MAX - f->down_len) {
		f->down_over = true;
		free(f->down);
		f->down = NULL;
		f->down_len = f->down_cap = 0;
		return;
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

/* The first response of the flow, if it is a 200 with a plain body: into
 * the sample store, and a `download` event. The head is parsed from a
 * bounded, NUL-terminated, lowercased copy. */
static void download_finish(contain_gateway *gw, gw_flow *f)
{
	if (!f->down || f->down_len < 12 || !gw->store)
		return;
	size_t head_len = 0;
	size_t limit = f->down_len < GW_HEAD_MAX ? f->down_len : GW_HEAD_MAX;
	for (size_t i = 0; i + 4 <= limit; i++)
		if (!memcmp(f->down + i, "\r\n\r\n", 4)) {
			head_len = i + 4;
			break;
		}
	if (!head_len || memcmp(f->down, "HTTP/1.", 7) != 0 || memcmp(f->down + 8, " 200", 4) != 0)
		return;
	char head[GW_HEAD_MAX + 1];
	for (size_t i = 0; i < head_len; i++) {
		char c = (char)f->down[i];
		head[i] = c >= 'A' && c <= 'Z' ? (char)(c + 32) : c == '\0' ? ' ' : c;
	}
	head[head_len] = '\0';
	const char *te = strstr(head, "\ntransfer-encoding:");
	if (te && strstr(te, "chunked"))
		return; /* not de-chunked in this slice */
	size_t body_len = f->down_len - head_len;
	const char *cl = strstr(head, "\ncontent-length:");
	if (cl) {
		char *end = NULL;
		errno = 0;
		unsigned long long v = strtoull(cl + 16, &end, 10);
		if (errno == 0 && end != cl + 16 && v < body_len)
			body_len = (size_t)v;
	}
	if (body_len == 0)
		return;
	char sha[65];
	bool stored = mamori_store_put(gw->store, f->down + head_len, body_len, sha) == MAMORI_OK;
	if (!stored)
		mamori_sha256_hex(sha, f->down + head_len, body_len);
	emit(gw, "download",
	     json_pack("{s:I, s:s, s:s, s:I, s:b}", "flow", (json_int_t)f->id, "url",
		       f->url[0] ? f->url : "?", "sha256", sha, "size", (json_int_t)body_len, "stored",
		       stored));
}

static void gw_data(void *ctx, const relay_flow *rf, bool up, const uint8_t *data, size_t n)
{
	contain_gateway *gw = ctx;
	gw_flow *f = flow_find(gw, rf->id, false);
	if (!f)
		return;
	/* The relay hands the first bytes over again as its first chunk. */
	if (up && f->first_fed > 0 && !f->first_skipped) {
		f->first_skipped = true;
		return;
	}
	proto_flow_feed(f->pf, data, n, up ? PROTO_TO_SERVER : PROTO_TO_CLIENT);
	drain_events(gw, f);
	if (!up && f->http && !f->down_over)
		down_append(f, data, n);
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
	gw_flow *f = flow_find(gw, rf->id, false);
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

static void gw_end(void *ctx, const relay_flow *rf)
{
	contain_gateway *gw = ctx;
	gw_flow *f = flow_find(gw, rf->id, true);
	if (!f)
		return;
	proto_flow_settle(f->pf);
	drain_events(gw, f);
	if (!f->down_over)
		download_finish(gw, f);
	bool refl = f->reflected;
	const char *reason = rf->verdict == RELAY_DROP ? "dropped"
			     : rf->upstream_errno      ? "upstream_failed"
			     : refl		       ? "service_done"
						       : "closed";
	json_t *b = json_pack("{s:I, s:I, s:I, s:I, s:s}", "flow", (json_int_t)f->id, "bytes_up",
			      (json_int_t)(refl ? f->refl_up : rf->bytes_up), "bytes_down",
			      (json_int_t)(refl ? f->refl_down : rf->bytes_down), "duration_ms",
			      (json_int_t)((rf->t_end - rf->t_start) * 1000.0), "reason", reason);
	if (b && rf->upstream_errno)
		json_object_set_new(b, "upstream_error", json_string(strerror(rf->upstream_errno)));
	if (b && f->service_end)
		json_object_set(b, "service_end", f->service_end);
	if (b && proto_flow_meta(f->pf))
		json_object_set(b, "meta", proto_flow_meta(f->pf));
	emit(gw, "flow_end", b);
	flow_free(f);
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
	if (!gw->o.reflect_ms)
		gw->o.reflect_ms = 30000;
	pthread_mutex_init(&gw->det_lock, NULL);
	pthread_mutex_init(&gw->flows_lock, NULL);
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
		    (err = contain_capture_start(&gw->cap, o->net->gateway_ns, "inmate0", path, NULL, 0,
						 0)) != MAMORI_OK)
			goto done;
	}
	/* FORWARD leaves from the gateway namespace itself, whose only way out
	 * is up0 with routes to the two TEST-NET ranges (netns.h): a second
	 * wall behind the policy. */
	contain_relay_config rc = { .listen_netns = o->net->gateway_ns,
				    .listen_addr = { .s_addr = htonl(INADDR_ANY) },
				    .port = o->net->tcp_port,
				    .upstream_netns = o->upstream_netns ? o->net->gateway_ns : NULL,
				    .upstream_own_netns = false,
				    .first_wait_ms = o->first_wait_ms,
				    .decide = gw_decide,
				    .reflect = gw_reflect,
				    .on_end = gw_end,
				    .on_data = gw_data,
				    .ctx = gw };
	err = contain_relay_start(&gw->relay, &rc);
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

void contain_gateway_stop(contain_gateway *gw, contain_gateway_stats *stats)
{
	if (stats)
		memset(stats, 0, sizeof *stats);
	if (!gw)
		return;
	atomic_store(&gw->stopping, true);
	contain_relay_stats rs = { 0 };
	if (gw->relay)
		contain_relay_stats_get(gw->relay, &rs);
	contain_relay_stop(gw->relay);
	contain_capture_stats cs = { 0 };
	contain_capture_stop(gw->cap, &cs);
	if (stats) {
		stats->flows = atomic_load(&gw->flows_n);
		stats->forwarded = atomic_load(&gw->forwarded);
		stats->reflected = atomic_load(&gw->reflected);
		stats->dropped = atomic_load(&gw->dropped);
		stats->events = gw->log ? mamori_eventlog_count(gw->log) : 0;
		stats->capture_packets = cs.packets;
		stats->refused_over_cap = rs.refused_over_cap;
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
	free(gw);
}
