/*
 * Communication features of a containment session (report.h), computed
 * from its events alone (docs/contain-events.md), so that a report can be
 * redone from events.jsonl or the database long after the session.
 *
 * Everything in the events came from the sample (host names, URIs, IRC
 * nicks, mail subjects): strings are cut to REPORT_MAX_STR bytes, every
 * list and set has a cap, and the SVG escapes every text it draws. Sets
 * are jansson objects used as ordered sets (key = member).
 */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "mamori/base.h"
#include "mamori/contain.h"

#define REPORT_MAX_STR	 256
#define REPORT_MAX_SET	 ((size_t)64) /* members kept per set (nicks, URIs, subjects, ...) */
#define REPORT_MAX_FLOWS 1000000
#define REPORT_MAX_LINE	 ((size_t)1 << 20)
#define SVG_GRAPH_NODES	 40

typedef struct flow {
	char dst[64];
	int dport;
	char proto[16];
	char verdict[16];
	double t0, t1; /* t1 < 0: no flow_end seen */
	json_int_t up, down;
} flow;

struct mamori_contain_report {
	char session[REPORT_MAX_STR];
	double start, end; /* from the event times */
	size_t events, skipped;
	flow *flows;
	size_t n_flows, cap_flows;
	json_t *flow_index; /* flow id -> index into flows */
	json_t *verdicts;   /* verdict -> count */
	json_t *irc;	    /* "dst:port" -> {server, nicks{}, users{}, channels{}, privmsg, texts[]} */
	json_t *http;	    /* host -> {dst, uris{}, methods{}, user_agents{}, requests, times[]} */
	json_t *downloads;  /* [{url, sha256, size}] */
	json_t *spam;	    /* {messages, senders{}, recipients{}, recipients_total, subjects{}} */
	json_t *detects;    /* [{kind, targets, rate, count}] */
	json_t *dns;	    /* qname -> {answers{}, queries, sinkholed} */
	json_t *names;	    /* address -> first DNS name that answered it */
};

/* ------------------------------------------------------------ helpers */

/* A string field of an event, cut to REPORT_MAX_STR bytes; NULL if absent. */
static const char *str_field(const json_t *ev, const char *key, char *buf)
{
	const char *s = json_string_value(json_object_get(ev, key));
	if (!s)
		return NULL;
	snprintf(buf, REPORT_MAX_STR, "%s", s);
	return buf;
}

/* Copy `src` into `dst` of `cap` bytes, cut if longer (the sample chose it). */
static void copy_cut(char *dst, size_t cap, const char *src)
{
	size_t n = strlen(src);
	if (n >= cap)
		n = cap - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

static void set_add(json_t *set, const char *member)
{
	if (member && *member && json_object_size(set) < REPORT_MAX_SET)
		json_object_set_new(set, member, json_true());
}

static json_t *set_to_array(const json_t *set)
{
	json_t *a = json_array();
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)set, k, v)
	{
		(void)v;
		json_array_append_new(a, json_string(k));
	}
	return a;
}

static void count_add(json_t *counts, const char *key, json_int_t n)
{
	json_t *c = json_object_get(counts, key);
	json_object_set_new(counts, key, json_integer((c ? json_integer_value(c) : 0) + n));
}

/* "2026-11-26T10:20:00.123456Z" -> seconds since the epoch; < 0 if bad. */
static double parse_time(const char *s)
{
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	if (!s)
		return -1;
	const char *rest = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!rest)
		return -1;
	double frac = 0;
	if (*rest == '.') {
		double scale = 0.1;
		for (rest++; *rest >= '0' && *rest <= '9'; rest++, scale /= 10)
			frac += (*rest - '0') * scale;
	}
	return (double)timegm(&tm) + frac;
}

/* Digits and hex runs in a URI become placeholders, so that the URIs a bot
 * polls with changing ids show as one pattern: /gate.php?id=123 ->
 * /gate.php?id={n}. */
static void uri_pattern(const char *uri, char *out, size_t cap)
{
	size_t o = 0;
	for (size_t i = 0; uri[i] && o + 4 < cap;) {
		size_t j = i;
		bool digits = true;
		while (uri[j] && ((uri[j] >= '0' && uri[j] <= '9') || (uri[j] >= 'a' && uri[j] <= 'f') ||
				  (uri[j] >= 'A' && uri[j] <= 'F'))) {
			if (uri[j] < '0' || uri[j] > '9')
				digits = false;
			j++;
		}
		/* A run counts when it is all digits, or hex of 8+ (ids, hashes). */
		if (j > i && (digits || j - i >= 8) && (i == 0 || !isalpha((unsigned char)uri[i - 1]))) {
			const char *ph = digits ? "{n}" : "{hex}";
			size_t pl = strlen(ph);
			if (o + pl + 1 >= cap)
				break;
			memcpy(out + o, ph, pl);
			o += pl;
			i = j;
		} else {
			out[o++] = uri[i++];
		}
	}
	out[o] = '\0';
}

/* ------------------------------------------------------------- events */

static flow *flow_of(mamori_contain_report *r, const json_t *ev)
{
	json_t *id = json_object_get(ev, "flow");
	char key[32];
	if (!json_is_integer(id))
		return NULL;
	snprintf(key, sizeof(key), "%lld", (long long)json_integer_value(id));
	json_t *ix = json_object_get(r->flow_index, key);
	return ix ? &r->flows[json_integer_value(ix)] : NULL;
}

static int on_flow_start(mamori_contain_report *r, const json_t *ev, double t)
{
	json_t *id = json_object_get(ev, "flow");
	if (!json_is_integer(id))
		return MAMORI_OK;
	if (r->n_flows == REPORT_MAX_FLOWS)
		return mamori_fail(MAMORI_ELIMIT, "report: more than %d flows", REPORT_MAX_FLOWS);
	if (r->n_flows == r->cap_flows) {
		size_t cap = r->cap_flows ? r->cap_flows * 2 : 256;
		flow *bigger = realloc(r->flows, cap * sizeof(*bigger));
		if (!bigger)
			return mamori_fail(MAMORI_ENOMEM, "report: flows");
		r->flows = bigger;
		r->cap_flows = cap;
	}
	flow *f = &r->flows[r->n_flows];
	memset(f, 0, sizeof(*f));
	char buf[REPORT_MAX_STR];
	copy_cut(f->dst, sizeof(f->dst), str_field(ev, "dst", buf) ? buf : "?");
	f->dport = (int)json_integer_value(json_object_get(ev, "dport"));
	copy_cut(f->proto, sizeof(f->proto), str_field(ev, "proto", buf) ? buf : "unknown");
	copy_cut(f->verdict, sizeof(f->verdict), str_field(ev, "verdict", buf) ? buf : "?");
	f->t0 = t;
	f->t1 = -1;
	char key[32];
	snprintf(key, sizeof(key), "%lld", (long long)json_integer_value(id));
	json_object_set_new(r->flow_index, key, json_integer((json_int_t)r->n_flows));
	r->n_flows++;
	count_add(r->verdicts, f->verdict, 1);
	return MAMORI_OK;
}

static void on_flow_end(mamori_contain_report *r, const json_t *ev, double t)
{
	flow *f = flow_of(r, ev);
	if (!f)
		return;
	f->t1 = t;
	f->up = json_integer_value(json_object_get(ev, "bytes_up"));
	f->down = json_integer_value(json_object_get(ev, "bytes_down"));
}

static void on_irc(mamori_contain_report *r, const json_t *ev)
{
	flow *f = flow_of(r, ev);
	char key[96], buf[REPORT_MAX_STR];
	snprintf(key, sizeof(key), "%s:%d", f ? f->dst : "?", f ? f->dport : 0);
	json_t *s = json_object_get(r->irc, key);
	if (!s) {
		if (json_object_size(r->irc) >= REPORT_MAX_SET)
			return;
		s = json_pack("{s:s, s:s, s:{}, s:{}, s:{}, s:i, s:[]}", "server", key, "verdict",
			      f ? f->verdict : "?", "nicks", "users", "channels", "privmsg", 0, "texts");
		json_object_set_new(r->irc, key, s);
	}
	const char *cmd = str_field(ev, "command", buf);
	if (!cmd)
		return;
	char v[REPORT_MAX_STR];
	if (!strcmp(cmd, "NICK"))
		set_add(json_object_get(s, "nicks"), str_field(ev, "nick", v));
	else if (!strcmp(cmd, "USER"))
		set_add(json_object_get(s, "users"), str_field(ev, "user", v));
	else if (!strcmp(cmd, "JOIN"))
		set_add(json_object_get(s, "channels"), str_field(ev, "channel", v));
	else if (!strcmp(cmd, "PRIVMSG")) {
		count_add(s, "privmsg", 1);
		json_t *texts = json_object_get(s, "texts");
		if (json_array_size(texts) < 10 && str_field(ev, "text", v))
			json_array_append_new(texts, json_string(v));
	}
}

static void on_http(mamori_contain_report *r, const json_t *ev, double t)
{
	flow *f = flow_of(r, ev);
	char host[REPORT_MAX_STR], uri[REPORT_MAX_STR], pat[REPORT_MAX_STR], v[REPORT_MAX_STR];
	if (!str_field(ev, "host", host))
		snprintf(host, sizeof(host), "%s", f ? f->dst : "?");
	json_t *h = json_object_get(r->http, host);
	if (!h) {
		if (json_object_size(r->http) >= REPORT_MAX_SET)
			return;
		h = json_pack("{s:s, s:s, s:{}, s:{}, s:{}, s:i, s:[]}", "host", host, "dst",
			      f ? f->dst : "?", "uris", "methods", "user_agents", "requests", 0, "times");
		json_object_set_new(r->http, host, h);
	}
	if (str_field(ev, "uri", uri)) {
		uri_pattern(uri, pat, sizeof(pat));
		set_add(json_object_get(h, "uris"), pat);
	}
	set_add(json_object_get(h, "methods"), str_field(ev, "method", v));
	set_add(json_object_get(h, "user_agents"), str_field(ev, "user_agent", v));
	count_add(h, "requests", 1);
	json_t *times = json_object_get(h, "times");
	if (json_array_size(times) < 1000)
		json_array_append_new(times, json_real(t));
}

static void on_smtp(mamori_contain_report *r, const json_t *ev)
{
	char v[REPORT_MAX_STR];
	count_add(r->spam, "messages", 1);
	set_add(json_object_get(r->spam, "senders"), str_field(ev, "from", v));
	set_add(json_object_get(r->spam, "subjects"), str_field(ev, "mail_subject", v));
	json_t *rcpt = json_object_get(ev, "rcpt");
	size_t i;
	json_t *x;
	json_array_foreach(rcpt, i, x)
	{
		if (!json_is_string(x))
			continue;
		count_add(r->spam, "recipients_total", 1);
		snprintf(v, sizeof(v), "%s", json_string_value(x));
		set_add(json_object_get(r->spam, "recipients"), v);
	}
}

static void on_download(mamori_contain_report *r, const json_t *ev)
{
	if (json_array_size(r->downloads) >= REPORT_MAX_SET)
		return;
	char url[REPORT_MAX_STR], sha[REPORT_MAX_STR];
	json_array_append_new(r->downloads,
			      json_pack("{s:s, s:s, s:I}", "url", str_field(ev, "url", url) ? url : "?",
					"sha256", str_field(ev, "sha256", sha) ? sha : "?", "size",
					json_integer_value(json_object_get(ev, "size"))));
}

/* A session-wide measure (distinct-dst: a scan of a range) fires once per
 * new host; those events are one scan, so they merge into one entry whose
 * targets grow and whose count and rate are the highest seen. True when
 * `ev` merged. */
static bool merge_detect(mamori_contain_report *r, const json_t *ev)
{
	char kind[REPORT_MAX_STR], measure[REPORT_MAX_STR];
	if (!str_field(ev, "measure", measure) || strcmp(measure, "distinct-dst") != 0 ||
	    !str_field(ev, "kind", kind))
		return false;
	size_t i;
	json_t *d;
	json_array_foreach(r->detects, i, d)
	{
		if (strcmp(json_string_value(json_object_get(d, "kind")), kind) != 0 ||
		    !json_string_value(json_object_get(d, "measure")) ||
		    strcmp(json_string_value(json_object_get(d, "measure")), measure) != 0)
			continue;
		json_t *targets = json_object_get(d, "targets");
		size_t k;
		json_t *x;
		json_array_foreach(json_object_get(ev, "targets"), k, x)
		{
			bool seen = !json_is_string(x) || json_array_size(targets) >= REPORT_MAX_SET;
			size_t m;
			json_t *y;
			json_array_foreach(targets, m, y) seen = seen || json_equal(x, y);
			if (!seen) {
				char v[REPORT_MAX_STR];
				snprintf(v, sizeof(v), "%s", json_string_value(x));
				json_array_append_new(targets, json_string(v));
			}
		}
		json_int_t count = json_integer_value(json_object_get(ev, "count"));
		if (count > json_integer_value(json_object_get(d, "count"))) {
			json_object_set_new(d, "count", json_integer(count));
			json_object_set_new(d, "rate",
					    json_real(json_number_value(json_object_get(ev, "rate"))));
		}
		return true;
	}
	return false;
}

static void on_detect(mamori_contain_report *r, const json_t *ev)
{
	if (merge_detect(r, ev) || json_array_size(r->detects) >= REPORT_MAX_SET)
		return;
	char kind[REPORT_MAX_STR];
	json_t *targets = json_array();
	size_t i;
	json_t *x;
	json_array_foreach(json_object_get(ev, "targets"), i, x)
	{
		if (json_is_string(x) && json_array_size(targets) < REPORT_MAX_SET) {
			char v[REPORT_MAX_STR];
			snprintf(v, sizeof(v), "%s", json_string_value(x));
			json_array_append_new(targets, json_string(v));
		}
	}
	json_t *rate = json_object_get(ev, "rate");
	json_t *d = json_pack("{s:s, s:o, s:f, s:I, s:s}", "kind", str_field(ev, "kind", kind) ? kind : "?",
			      "targets", targets, "rate", json_number_value(rate), "count",
			      json_integer_value(json_object_get(ev, "count")), "verdict",
			      json_string_value(json_object_get(ev, "verdict"))
				      ? json_string_value(json_object_get(ev, "verdict"))
				      : "?");
	/* What was counted (conn-rate, pkt-rate, distinct-port, ...) and over
	 * how long, when the event says. */
	char measure[REPORT_MAX_STR];
	if (d && str_field(ev, "measure", measure))
		json_object_set_new(d, "measure", json_string(measure));
	if (d && json_is_integer(json_object_get(ev, "window_ms")))
		json_object_set(d, "window_ms", json_object_get(ev, "window_ms"));
	json_array_append_new(r->detects, d);
}

static void on_dns(mamori_contain_report *r, const json_t *ev)
{
	char q[REPORT_MAX_STR], v[REPORT_MAX_STR];
	if (!str_field(ev, "qname", q))
		return;
	json_t *d = json_object_get(r->dns, q);
	if (!d) {
		if (json_object_size(r->dns) >= 4 * REPORT_MAX_SET)
			return;
		d = json_pack("{s:{}, s:i, s:b}", "answers", "queries", 0, "sinkholed", 0);
		json_object_set_new(r->dns, q, d);
	}
	count_add(d, "queries", 1);
	if (json_is_true(json_object_get(ev, "sinkholed")))
		json_object_set_new(d, "sinkholed", json_true());
	size_t i;
	json_t *x;
	json_array_foreach(json_object_get(ev, "answers"), i, x)
	{
		if (!json_is_string(x))
			continue;
		snprintf(v, sizeof(v), "%s", json_string_value(x));
		set_add(json_object_get(d, "answers"), v);
		if (!json_object_get(r->names, v) &&
		    json_object_size(r->names) < MAMORI_CONTAIN_REPORT_MAX_DESTS)
			json_object_set_new(r->names, v, json_string(q));
	}
}

int mamori_contain_report_new(mamori_contain_report **out)
{
	mamori_contain_report *r = calloc(1, sizeof(*r));
	*out = NULL;
	if (!r)
		return mamori_fail(MAMORI_ENOMEM, "report");
	r->start = r->end = -1;
	r->flow_index = json_object();
	r->verdicts = json_object();
	r->irc = json_object();
	r->http = json_object();
	r->downloads = json_array();
	r->spam = json_pack("{s:i, s:{}, s:{}, s:i, s:{}}", "messages", 0, "senders", "recipients",
			    "recipients_total", 0, "subjects");
	r->detects = json_array();
	r->dns = json_object();
	r->names = json_object();
	if (!r->flow_index || !r->verdicts || !r->irc || !r->http || !r->downloads || !r->spam ||
	    !r->detects || !r->dns || !r->names) {
		mamori_contain_report_free(r);
		return mamori_fail(MAMORI_ENOMEM, "report");
	}
	*out = r;
	return MAMORI_OK;
}

int mamori_contain_report_add(mamori_contain_report *r, const json_t *ev)
{
	const char *type = json_string_value(json_object_get(ev, "type"));
	double t = parse_time(json_string_value(json_object_get(ev, "time")));
	if (!json_is_object(ev) || !type || t < 0) {
		r->skipped++;
		return MAMORI_OK;
	}
	r->events++;
	if (!r->session[0] && json_string_value(json_object_get(ev, "subject")))
		snprintf(r->session, sizeof(r->session), "%s",
			 json_string_value(json_object_get(ev, "subject")));
	if (r->start < 0 || t < r->start)
		r->start = t;
	if (t > r->end)
		r->end = t;
	if (!strcmp(type, "flow_start"))
		return on_flow_start(r, ev, t);
	if (!strcmp(type, "flow_end"))
		on_flow_end(r, ev, t);
	else if (!strcmp(type, "irc"))
		on_irc(r, ev);
	else if (!strcmp(type, "http"))
		on_http(r, ev, t);
	else if (!strcmp(type, "smtp"))
		on_smtp(r, ev);
	else if (!strcmp(type, "download"))
		on_download(r, ev);
	else if (!strcmp(type, "detect"))
		on_detect(r, ev);
	else if (!strcmp(type, "dns"))
		on_dns(r, ev);
	return MAMORI_OK;
}

int mamori_contain_report_load(mamori_contain_report **out, const char *events_jsonl)
{
	*out = NULL;
	FILE *f = fopen(events_jsonl, "r");
	if (!f)
		return mamori_fail(MAMORI_EIO, "%s: cannot open", events_jsonl);
	mamori_contain_report *r = NULL;
	int rc = mamori_contain_report_new(&r);
	char *line = NULL;
	size_t cap = 0, lines = 0;
	ssize_t n;
	while (rc == MAMORI_OK && (n = getline(&line, &cap, f)) > 0) {
		if (++lines > MAMORI_CONTAIN_REPORT_MAX_EVENTS) {
			rc = mamori_fail(MAMORI_ELIMIT, "%s: more than %d events", events_jsonl,
					 MAMORI_CONTAIN_REPORT_MAX_EVENTS);
			break;
		}
		if ((size_t)n > REPORT_MAX_LINE) {
			r->skipped++;
			continue;
		}
		json_t *ev = json_loadb(line, (size_t)n, 0, NULL);
		if (!ev) {
			r->skipped++;
			continue;
		}
		rc = mamori_contain_report_add(r, ev);
		json_decref(ev);
	}
	free(line);
	fclose(f);
	if (rc != MAMORI_OK) {
		mamori_contain_report_free(r);
		return rc;
	}
	*out = r;
	return MAMORI_OK;
}

/* ------------------------------------------------------------- output */

/* One destination: an address with its flows, for the table and the SVG. */
typedef struct dest {
	const char *addr;
	size_t flows;
	double first;
	char verdict[16]; /* the most frequent */
	json_t *ports;	  /* "port/proto" set */
	json_t *votes;	  /* verdict -> flows, while counting */
} dest;

static int dest_by_flows(const void *a, const void *b)
{
	const dest *x = a, *y = b;
	if (x->flows != y->flows)
		return x->flows < y->flows ? 1 : -1;
	return x->first < y->first ? -1 : x->first > y->first;
}

/* The destinations, most flows first (at most MAMORI_CONTAIN_REPORT_MAX_DESTS). */
static dest *dests_of(const mamori_contain_report *r, size_t *out_n)
{
	json_t *ix = json_object();
	dest *d = calloc(MAMORI_CONTAIN_REPORT_MAX_DESTS, sizeof(*d));
	size_t n = 0;
	if (!ix || !d) {
		json_decref(ix);
		free(d);
		*out_n = 0;
		return NULL;
	}
	for (size_t i = 0; i < r->n_flows; i++) {
		const flow *f = &r->flows[i];
		json_t *k = json_object_get(ix, f->dst);
		size_t j;
		if (k) {
			j = (size_t)json_integer_value(k);
		} else {
			if (n == MAMORI_CONTAIN_REPORT_MAX_DESTS)
				continue;
			j = n++;
			json_object_set_new(ix, f->dst, json_integer((json_int_t)j));
			d[j].addr = f->dst;
			d[j].first = f->t0;
			d[j].ports = json_object();
			d[j].votes = json_object();
		}
		d[j].flows++;
		char port[48];
		snprintf(port, sizeof(port), "%d/%s", f->dport, f->proto);
		set_add(d[j].ports, port);
		count_add(d[j].votes, f->verdict, 1);
	}
	for (size_t j = 0; j < n; j++) {
		const char *k;
		json_t *v;
		json_int_t best = -1;
		json_object_foreach(d[j].votes, k, v)
		{
			if (json_integer_value(v) > best) {
				best = json_integer_value(v);
				copy_cut(d[j].verdict, sizeof(d[j].verdict), k);
			}
		}
		json_decref(d[j].votes);
		d[j].votes = NULL;
	}
	json_decref(ix);
	qsort(d, n, sizeof(*d), dest_by_flows);
	*out_n = n;
	return d;
}

static void dests_free(dest *d, size_t n)
{
	for (size_t i = 0; d && i < n; i++)
		json_decref(d[i].ports);
	free(d);
}

/* Median gap between requests, in seconds (a bot's polling interval). */
static double median_gap(const json_t *times)
{
	size_t n = json_array_size(times);
	if (n < 2)
		return -1;
	double *gaps = malloc((n - 1) * sizeof(*gaps));
	if (!gaps)
		return -1;
	for (size_t i = 1; i < n; i++)
		gaps[i - 1] = json_real_value(json_array_get(times, i)) -
			      json_real_value(json_array_get(times, i - 1));
	for (size_t i = 1; i < n - 1; i++) /* insertion sort: n is at most 1,000 */
		for (size_t j = i; j > 0 && gaps[j - 1] > gaps[j]; j--) {
			double t = gaps[j];
			gaps[j] = gaps[j - 1];
			gaps[j - 1] = t;
		}
	double m = gaps[(n - 1) / 2];
	free(gaps);
	return m;
}

json_t *mamori_contain_report_json(const mamori_contain_report *r)
{
	json_t *root = json_object();
	json_object_set_new(root, "session", json_string(r->session));
	json_object_set_new(root, "start", json_real(r->start));
	json_object_set_new(root, "end", json_real(r->end));
	json_object_set_new(root, "events", json_integer((json_int_t)r->events));
	json_object_set_new(root, "skipped", json_integer((json_int_t)r->skipped));
	json_t *flows = json_object();
	json_object_set_new(flows, "total", json_integer((json_int_t)r->n_flows));
	json_object_set_new(flows, "by_verdict", json_deep_copy(r->verdicts));
	json_object_set_new(root, "flows", flows);

	/* C&C: IRC sessions, and HTTP hosts polled more than once. */
	json_t *cnc = json_array();
	const char *k;
	json_t *v;
	json_object_foreach(r->irc, k, v)
	{
		json_array_append_new(cnc, json_pack("{s:s, s:O, s:O, s:o, s:o, s:o, s:O, s:O}", "protocol",
						     "irc", "server", json_object_get(v, "server"), "verdict",
						     json_object_get(v, "verdict"), "nicks",
						     set_to_array(json_object_get(v, "nicks")), "users",
						     set_to_array(json_object_get(v, "users")), "channels",
						     set_to_array(json_object_get(v, "channels")), "privmsg",
						     json_object_get(v, "privmsg"), "texts",
						     json_object_get(v, "texts")));
	}
	json_object_foreach(r->http, k, v)
	{
		double gap = median_gap(json_object_get(v, "times"));
		json_array_append_new(
			cnc, json_pack("{s:s, s:O, s:O, s:o, s:o, s:o, s:O, s:o}", "protocol", "http", "host",
				       json_object_get(v, "host"), "dst", json_object_get(v, "dst"),
				       "uri_patterns", set_to_array(json_object_get(v, "uris")), "methods",
				       set_to_array(json_object_get(v, "methods")), "user_agents",
				       set_to_array(json_object_get(v, "user_agents")), "requests",
				       json_object_get(v, "requests"), "polling_interval_s",
				       gap >= 0 ? json_real(gap) : json_null()));
	}
	json_object_set_new(root, "cnc", cnc);
	json_object_set_new(root, "downloads", json_deep_copy(r->downloads));

	json_t *spam = json_object();
	json_object_set(spam, "messages", json_object_get(r->spam, "messages"));
	json_object_set_new(spam, "senders", set_to_array(json_object_get(r->spam, "senders")));
	json_object_set(spam, "recipients_total", json_object_get(r->spam, "recipients_total"));
	json_object_set_new(
		spam, "recipients_distinct",
		json_integer((json_int_t)json_object_size(json_object_get(r->spam, "recipients"))));
	json_object_set_new(spam, "recipients", set_to_array(json_object_get(r->spam, "recipients")));
	json_object_set_new(spam, "subjects", set_to_array(json_object_get(r->spam, "subjects")));
	json_object_set_new(root, "spam", spam);

	json_t *floods = json_array(), *scans = json_array();
	size_t i;
	json_array_foreach(r->detects, i, v)
	{
		const char *kind = json_string_value(json_object_get(v, "kind"));
		json_array_append(kind && !strcmp(kind, "scan") ? scans : floods, v);
	}
	json_object_set_new(root, "floods", floods);
	json_object_set_new(root, "scans", scans);

	json_t *dns = json_array();
	json_object_foreach(r->dns, k, v)
	{
		json_array_append_new(dns, json_pack("{s:s, s:o, s:O, s:O}", "qname", k, "answers",
						     set_to_array(json_object_get(v, "answers")), "queries",
						     json_object_get(v, "queries"), "sinkholed",
						     json_object_get(v, "sinkholed")));
	}
	json_object_set_new(root, "dns", dns);

	size_t nd = 0;
	dest *d = dests_of(r, &nd);
	json_t *dests = json_array();
	for (size_t j = 0; j < nd; j++) {
		const char *name = json_string_value(json_object_get(r->names, d[j].addr));
		json_array_append_new(dests,
				      json_pack("{s:s, s:s?, s:I, s:s, s:o}", "addr", d[j].addr, "name", name,
						"flows", (json_int_t)d[j].flows, "verdict", d[j].verdict,
						"ports", set_to_array(d[j].ports)));
	}
	dests_free(d, nd);
	json_object_set_new(root, "destinations", dests);
	return root;
}

/* Text for SVG: &, <, >, " and ' escaped, control bytes dropped, cut to
 * `max` visible characters. */
static void svg_text(FILE *f, const char *s, size_t max)
{
	for (size_t i = 0; s && s[i] && i < max; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '&')
			fputs("&amp;", f);
		else if (c == '<')
			fputs("&lt;", f);
		else if (c == '>')
			fputs("&gt;", f);
		else if (c == '"')
			fputs("&quot;", f);
		else if (c == '\'')
			fputs("&apos;", f);
		else if (c >= 0x20 && c < 0x7f)
			fputc(c, f);
		else
			fputc('?', f);
	}
}

static const char *verdict_colour(const char *v)
{
	if (!strcmp(v, "forward"))
		return "#2e8b57";
	if (!strcmp(v, "reflect"))
		return "#3b6fd8";
	if (!strcmp(v, "drop"))
		return "#d0342c";
	if (!strcmp(v, "limit"))
		return "#e08a00";
	return "#888888";
}

int mamori_contain_report_svg(const mamori_contain_report *r, FILE *f)
{
	size_t nd = 0;
	dest *d = dests_of(r, &nd);
	if (!d && r->n_flows)
		return mamori_fail(MAMORI_ENOMEM, "report: destinations");
	size_t rows = nd < MAMORI_CONTAIN_REPORT_SVG_ROWS ? nd : MAMORI_CONTAIN_REPORT_SVG_ROWS;
	const double label_w = 230, plot_w = 700, row_h = 18, top = 70;
	double timeline_h = top + (double)(rows ? rows : 1) * row_h + 40;
	const double graph_r = 230, graph_h = 2 * graph_r + 120;
	double width = label_w + plot_w + 40, height = timeline_h + graph_h;
	double span = r->end > r->start ? r->end - r->start : 1;

	fprintf(f,
		"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
		"font-family=\"sans-serif\" font-size=\"12\">\n",
		width, height);
	fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
	fprintf(f, "<text x=\"10\" y=\"22\" font-size=\"16\" font-weight=\"bold\">Session ");
	svg_text(f, r->session, 80);
	fprintf(f, ": %zu flows to %zu destinations over %.1f s</text>\n", r->n_flows, nd, span);
	/* Legend. */
	static const char *const verdicts[] = { "forward", "reflect", "drop", "limit" };
	for (int i = 0; i < 4; i++) {
		fprintf(f, "<rect x=\"%d\" y=\"34\" width=\"12\" height=\"12\" fill=\"%s\"/>", 10 + i * 110,
			verdict_colour(verdicts[i]));
		fprintf(f, "<text x=\"%d\" y=\"45\">%s</text>\n", 27 + i * 110, verdicts[i]);
	}
	/* Timeline: one row per destination, one bar per flow. */
	fprintf(f,
		"<text x=\"10\" y=\"%.0f\" font-weight=\"bold\">Connections per destination over "
		"time</text>\n",
		top - 6);
	for (size_t j = 0; j < rows; j++) {
		double y = top + (double)j * row_h;
		const char *name = json_string_value(json_object_get(r->names, d[j].addr));
		fprintf(f, "<text x=\"10\" y=\"%.1f\">", y + 13);
		svg_text(f, d[j].addr, 40);
		if (name) {
			fputs(" (", f);
			svg_text(f, name, 24);
			fputc(')', f);
		}
		fprintf(f,
			"</text>\n<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>\n",
			label_w, label_w + plot_w, y + 9, y + 9);
	}
	for (size_t i = 0; i < r->n_flows; i++) {
		const flow *fl = &r->flows[i];
		size_t j = 0;
		while (j < rows && strcmp(d[j].addr, fl->dst) != 0)
			j++;
		if (j == rows)
			continue;
		double t1 = fl->t1 >= 0 ? fl->t1 : r->end;
		double x = label_w + (fl->t0 - r->start) / span * plot_w;
		double w = (t1 - fl->t0) / span * plot_w;
		fprintf(f,
			"<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"12\" fill=\"%s\" "
			"opacity=\"0.8\">"
			"<title>%d/%s %s</title></rect>\n",
			x, top + (double)j * row_h + 3, w < 2 ? 2 : w, verdict_colour(fl->verdict), fl->dport,
			fl->proto, fl->verdict);
	}
	if (nd > rows)
		fprintf(f, "<text x=\"10\" y=\"%.0f\">+ %zu more destinations</text>\n",
			top + (double)rows * row_h + 14, nd - rows);
	fprintf(f,
		"<text x=\"%.0f\" y=\"%.0f\">0 s</text><text x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">%.1f "
		"s</text>\n",
		label_w, timeline_h - 14, label_w + plot_w, timeline_h - 14, span);

	/* Graph: the sample in the middle, destinations around it. */
	double cx = width / 2, cy = timeline_h + graph_r + 50;
	fprintf(f, "<text x=\"10\" y=\"%.0f\" font-weight=\"bold\">Destinations of the sample</text>\n",
		timeline_h + 16);
	size_t nodes = nd < SVG_GRAPH_NODES ? nd : SVG_GRAPH_NODES;
	for (size_t j = 0; j < nodes; j++) {
		double a = 2 * M_PI * (double)j / (double)(nodes ? nodes : 1) - M_PI / 2;
		double x = cx + graph_r * cos(a), y = cy + graph_r * sin(a);
		double sw = 1 + log((double)d[j].flows + 1);
		fprintf(f,
			"<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
			"stroke-width=\"%.1f\"/>\n",
			cx, cy, x, y, verdict_colour(d[j].verdict), sw);
		fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"6\" fill=\"%s\"/>\n", x, y,
			verdict_colour(d[j].verdict));
		fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\" font-size=\"11\">",
			x + (cos(a) >= 0 ? 9 : -9), y + 4, cos(a) >= 0 ? "start" : "end");
		const char *name = json_string_value(json_object_get(r->names, d[j].addr));
		svg_text(f, name ? name : d[j].addr, 32);
		fprintf(f, " [");
		const char *port;
		json_t *unused;
		int shown = 0;
		json_object_foreach(d[j].ports, port, unused)
		{
			(void)unused;
			if (shown++ == 3) {
				fputs(" ...", f);
				break;
			}
			if (shown > 1)
				fputc(' ', f);
			svg_text(f, port, 24);
		}
		fprintf(f, "] %zu</text>\n", d[j].flows);
	}
	fprintf(f,
		"<circle cx=\"%.1f\" cy=\"%.1f\" r=\"22\" fill=\"#333\"/><text x=\"%.1f\" y=\"%.1f\" "
		"fill=\"white\" text-anchor=\"middle\">sample</text>\n",
		cx, cy, cx, cy + 4);
	if (nd > nodes)
		fprintf(f, "<text x=\"10\" y=\"%.0f\">+ %zu more destinations not drawn</text>\n",
			height - 10, nd - nodes);
	fprintf(f, "</svg>\n");
	dests_free(d, nd);
	return ferror(f) ? mamori_fail(MAMORI_EIO, "report: cannot write the SVG") : MAMORI_OK;
}

void mamori_contain_report_free(mamori_contain_report *r)
{
	if (!r)
		return;
	free(r->flows);
	json_decref(r->flow_index);
	json_decref(r->verdicts);
	json_decref(r->irc);
	json_decref(r->http);
	json_decref(r->downloads);
	json_decref(r->spam);
	json_decref(r->detects);
	json_decref(r->dns);
	json_decref(r->names);
	free(r);
}
