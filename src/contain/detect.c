/*
 * Flood and scan detection (see detect.h for the model and its limits).
 *
 * Each tracked host owns a ring of 100 ms buckets (connections, packets, and
 * ports that could not be tracked); the session has one more ring. A bucket
 * carries the absolute bucket number it holds, so a stale slot is recognised
 * and reset instead of being cleared by a timer. Hosts and host:port pairs sit
 * in two tables with an open-addressing index. When a table is full, the
 * expired entries and the least recently seen quarter are evicted in one
 * pass; those still inside the longest window are added to an "untracked"
 * counter at the time they were last seen: a flood target is always recent,
 * so a scan cannot evict it, and distinct counts stay at or above the truth.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "detect.h"
#include "mamori/base.h"

#define BUCKETS_PER_SECOND 10
#define RING		   (CONTAIN_DETECT_MAX_WINDOW * BUCKETS_PER_SECOND + 1)
#define MAX_NAMES	   1024
#define MAX_SCOPES	   32

typedef struct bucket {
	uint32_t stamp; /* absolute bucket number + 1; 0 = never used */
	uint32_t conns;
	uint32_t pkts;
	uint32_t untracked; /* hosts (session ring) or ports (host ring) */
} bucket;

/* Zero-initialised so that keys compare with memcmp. */
typedef struct dkey {
	uint8_t family;
	uint8_t transport;
	uint16_t port;
	uint8_t addr[16];
} dkey;

typedef struct dentry {
	dkey key;
	double first_seen;
	double last_seen;
} dentry;

typedef struct dtable {
	dentry *e;
	bucket *rings; /* RING buckets per entry, or NULL */
	size_t n, cap;
	uint32_t *index; /* entry number + 1; 0 = empty */
	size_t index_mask;
} dtable;

typedef struct dname {
	uint64_t hash;
	uint32_t rank;
	uint8_t scope;
	char *name;
} dname;

struct contain_detect {
	dtable hosts;
	dtable endpoints;
	bucket session[RING];
	dname names[MAX_NAMES];
	size_t n_names;
	char scopes[MAX_SCOPES][16];
	uint32_t scope_count[MAX_SCOPES];
	size_t n_scopes;
};

int contain_addr_parse(contain_addr *out, const char *text)
{
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, text, out->bytes) == 1) {
		out->family = 4;
		return MAMORI_OK;
	}
	if (inet_pton(AF_INET6, text, out->bytes) == 1) {
		out->family = 6;
		return MAMORI_OK;
	}
	return mamori_fail(MAMORI_EINVAL, "not an IP address: '%.64s'", text);
}

void contain_addr_format(const contain_addr *a, char *buf, size_t size)
{
	if (!inet_ntop(a->family == 6 ? AF_INET6 : AF_INET, a->bytes, buf, (socklen_t)size) && size)
		buf[0] = '\0';
}

bool contain_addr_equal(const contain_addr *a, const contain_addr *b)
{
	size_t len = a->family == 6 ? 16 : 4;
	return a->family == b->family && memcmp(a->bytes, b->bytes, len) == 0;
}

const char *contain_metric_name(contain_metric m)
{
	switch (m) {
	case CONTAIN_METRIC_CONN_RATE: return "conn-rate";
	case CONTAIN_METRIC_PKT_RATE: return "pkt-rate";
	case CONTAIN_METRIC_DISTINCT_DST: return "distinct-dst";
	case CONTAIN_METRIC_DISTINCT_PORT: return "distinct-port";
	case CONTAIN_METRIC_TOTAL_CONN_RATE: return "total-conn-rate";
	case CONTAIN_METRIC_TOTAL_PKT_RATE: return "total-pkt-rate";
	}
	return "?";
}

static dkey make_key(const contain_addr *a, uint16_t port, contain_transport transport)
{
	dkey k;
	memset(&k, 0, sizeof(k));
	k.family = a->family;
	memcpy(k.addr, a->bytes, a->family == 6 ? 16 : 4);
	k.port = port;
	k.transport = (uint8_t)transport;
	return k;
}

static uint32_t bucket_of(double now)
{
	if (!(now > 0))
		return 1;
	return (uint32_t)fmod(floor(now * BUCKETS_PER_SECOND), 4294967294.0) + 1;
}

/* The slot for absolute bucket `b`, reset when it still holds an older one. */
static bucket *ring_slot(bucket *ring, uint32_t b)
{
	bucket *s = &ring[b % RING];
	if (s->stamp != b) {
		memset(s, 0, sizeof(*s));
		s->stamp = b;
	}
	return s;
}

/* Sum over the last `window` seconds ending at `now`, of one field. */
enum ring_field { F_CONNS, F_PKTS, F_UNTRACKED };
static uint64_t ring_sum(const bucket *ring, double now, double window, enum ring_field f)
{
	uint32_t cur = bucket_of(now);
	long k = lround(ceil(window * BUCKETS_PER_SECOND - 1e-9));
	if (k < 1)
		k = 1;
	if (k > RING - 1)
		k = RING - 1;
	uint64_t sum = 0;
	for (long i = 0; i < k; i++) {
		uint32_t b = cur - (uint32_t)i;
		if (b == 0)
			break;
		const bucket *s = &ring[b % RING];
		if (s->stamp != b)
			continue;
		sum += f == F_CONNS ? s->conns : f == F_PKTS ? s->pkts : s->untracked;
	}
	return sum;
}

static double clamp_window(double w)
{
	if (!(w >= 1.0 / BUCKETS_PER_SECOND))
		return 1.0 / BUCKETS_PER_SECOND;
	if (w > CONTAIN_DETECT_MAX_WINDOW)
		return CONTAIN_DETECT_MAX_WINDOW;
	return w;
}

static int table_init(dtable *t, size_t cap, bool rings)
{
	memset(t, 0, sizeof(*t));
	size_t isz = 16;
	while (isz < cap * 2)
		isz <<= 1;
	t->cap = cap;
	t->e = calloc(cap, sizeof(*t->e));
	t->index = calloc(isz, sizeof(*t->index));
	t->index_mask = isz - 1;
	if (rings)
		t->rings = calloc(cap * RING, sizeof(bucket));
	if (!t->e || !t->index || (rings && !t->rings))
		return mamori_fail(MAMORI_ENOMEM, "detector table of %zu entries", cap);
	return MAMORI_OK;
}

static void table_free(dtable *t)
{
	free(t->e);
	free(t->rings);
	free(t->index);
}

static size_t key_slot(const dtable *t, const dkey *k)
{
	return (size_t)mamori_hash64(k, sizeof(*k), 0x6d616d6f) & t->index_mask;
}

static long table_find(const dtable *t, const dkey *k)
{
	for (size_t s = key_slot(t, k);; s = (s + 1) & t->index_mask) {
		uint32_t v = t->index[s];
		if (v == 0)
			return -1;
		if (memcmp(&t->e[v - 1].key, k, sizeof(*k)) == 0)
			return (long)(v - 1);
	}
}

static void table_index_put(dtable *t, size_t i)
{
	size_t s = key_slot(t, &t->e[i].key);
	while (t->index[s])
		s = (s + 1) & t->index_mask;
	t->index[s] = (uint32_t)(i + 1);
}

static void table_reindex(dtable *t)
{
	memset(t->index, 0, (t->index_mask + 1) * sizeof(*t->index));
	for (size_t i = 0; i < t->n; i++)
		table_index_put(t, i);
}

static void host_key_of(dkey *hk, const dkey *ek)
{
	*hk = *ek;
	hk->port = 0;
	hk->transport = 0;
}

/* An entry leaves the table: if it is still inside the longest window,
 * count it as untracked at the time it was last seen, so distinct counts
 * over that window still include it. */
static void note_evicted(contain_detect *d, dtable *t, const dentry *victim, double now)
{
	if (victim->last_seen < now - CONTAIN_DETECT_MAX_WINDOW)
		return;
	uint32_t b = bucket_of(victim->last_seen);
	if (t == &d->hosts) {
		ring_slot(d->session, b)->untracked++;
	} else {
		dkey hk;
		host_key_of(&hk, &victim->key);
		long h = table_find(&d->hosts, &hk);
		if (h >= 0)
			ring_slot(&d->hosts.rings[(size_t)h * RING], b)->untracked++;
	}
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Make room in a full table: drop everything older than the longest window
 * and at least the least recently seen quarter, in one pass and one
 * reindex, so that a scan costs O(log n) per new entry instead of O(n). The
 * survivors keep their order (first sight). */
static void table_evict(contain_detect *d, dtable *t, double now)
{
	size_t n = t->n, quota = n / 4 ? n / 4 : 1;
	double *seen = malloc(n * sizeof(*seen));
	double cut = -1;
	size_t equal_budget;
	if (seen) {
		for (size_t i = 0; i < n; i++)
			seen[i] = t->e[i].last_seen;
		qsort(seen, n, sizeof(*seen), cmp_double);
		cut = seen[quota - 1];
		size_t less = 0;
		while (less < n && seen[less] < cut)
			less++;
		equal_budget = quota - less;
		free(seen);
	} else {
		/* No memory for the sort: evict just the least recent entry. */
		size_t lru = 0;
		for (size_t i = 1; i < n; i++)
			if (t->e[i].last_seen < t->e[lru].last_seen)
				lru = i;
		cut = t->e[lru].last_seen;
		equal_budget = 1;
	}
	double expired = now - CONTAIN_DETECT_MAX_WINDOW;
	size_t keep = 0;
	for (size_t i = 0; i < n; i++) {
		const dentry *e = &t->e[i];
		bool evict = e->last_seen < cut || e->last_seen < expired;
		if (!evict && e->last_seen == cut && equal_budget > 0) {
			evict = true;
			equal_budget--;
		}
		if (evict) {
			note_evicted(d, t, e, now);
			continue;
		}
		if (keep != i) {
			t->e[keep] = t->e[i];
			if (t->rings)
				memcpy(&t->rings[keep * RING], &t->rings[i * RING], RING * sizeof(bucket));
		}
		keep++;
	}
	t->n = keep;
	table_reindex(t);
}

/* Find or insert `k`; returns the entry number, updating last_seen. */
static size_t table_touch(contain_detect *d, dtable *t, const dkey *k, double now, bool *created)
{
	long i = table_find(t, k);
	*created = false;
	if (i < 0) {
		if (t->n == t->cap)
			table_evict(d, t, now);
		i = (long)t->n++;
		t->e[i].key = *k;
		t->e[i].first_seen = now;
		if (t->rings)
			memset(&t->rings[(size_t)i * RING], 0, RING * sizeof(bucket));
		table_index_put(t, (size_t)i);
		*created = true;
	}
	if (now > t->e[i].last_seen || *created)
		t->e[i].last_seen = now;
	return (size_t)i;
}

int contain_detect_new(contain_detect **out, size_t max_hosts, size_t max_endpoints)
{
	*out = NULL;
	if (max_hosts == 0)
		max_hosts = CONTAIN_DETECT_DEFAULT_HOSTS;
	if (max_endpoints == 0)
		max_endpoints = CONTAIN_DETECT_DEFAULT_ENDPOINTS;
	if (max_hosts > (1u << 20) || max_endpoints > (1u << 22))
		return mamori_fail(MAMORI_ELIMIT, "detector caps too large (%zu hosts, %zu endpoints)",
				   max_hosts, max_endpoints);
	contain_detect *d = calloc(1, sizeof(*d));
	if (!d)
		return mamori_fail(MAMORI_ENOMEM, "detector");
	int rc = table_init(&d->hosts, max_hosts, true);
	if (rc == MAMORI_OK)
		rc = table_init(&d->endpoints, max_endpoints, false);
	if (rc != MAMORI_OK) {
		contain_detect_free(d);
		return rc;
	}
	*out = d;
	return MAMORI_OK;
}

void contain_detect_free(contain_detect *d)
{
	if (!d)
		return;
	table_free(&d->hosts);
	table_free(&d->endpoints);
	for (size_t i = 0; i < d->n_names; i++)
		free(d->names[i].name);
	free(d);
}

static void record(contain_detect *d, double now, const contain_addr *dst, uint16_t port,
		   contain_transport transport, bool is_conn)
{
	uint32_t b = bucket_of(now);
	bucket *s = ring_slot(d->session, b);
	s->pkts++;
	if (is_conn)
		s->conns++;

	dkey ek = make_key(dst, port, transport);
	dkey hk;
	host_key_of(&hk, &ek);
	bool created;
	size_t h = table_touch(d, &d->hosts, &hk, now, &created);
	bucket *hs = ring_slot(&d->hosts.rings[h * RING], b);
	hs->pkts++;
	if (is_conn)
		hs->conns++;
	table_touch(d, &d->endpoints, &ek, now, &created);
}

void contain_detect_conn(contain_detect *d, double now, const contain_addr *dst, uint16_t port,
			 contain_transport transport)
{
	record(d, now, dst, port, transport, true);
}

void contain_detect_packet(contain_detect *d, double now, const contain_addr *dst, uint16_t port,
			   contain_transport transport)
{
	record(d, now, dst, port, transport, false);
}

static uint64_t count_recent(const dtable *t, double since, const dkey *host)
{
	uint64_t n = 0;
	for (size_t i = 0; i < t->n; i++) {
		if (t->e[i].last_seen < since)
			continue;
		if (host) {
			dkey hk;
			host_key_of(&hk, &t->e[i].key);
			if (memcmp(&hk, host, sizeof(hk)) != 0)
				continue;
		}
		n++;
	}
	return n;
}

/* Distinct-count windows are measured against last_seen, so a window of W
 * covers the same buckets as the rate counters: (now - W, now]. */
static double window_start(double now, double window)
{
	uint32_t k = (uint32_t)lround(ceil(window * BUCKETS_PER_SECOND - 1e-9));
	return (floor(now * BUCKETS_PER_SECOND) - k + 1) / BUCKETS_PER_SECOND;
}

uint64_t contain_detect_count(contain_detect *d, double now, contain_metric metric, const contain_addr *dst,
			      double window)
{
	window = clamp_window(window);
	dkey hk;
	long h = -1;
	if (dst) {
		hk = make_key(dst, 0, 0);
		h = table_find(&d->hosts, &hk);
	}
	const bucket *hr = h >= 0 ? &d->hosts.rings[(size_t)h * RING] : NULL;
	switch (metric) {
	case CONTAIN_METRIC_CONN_RATE: return hr ? ring_sum(hr, now, window, F_CONNS) : 0;
	case CONTAIN_METRIC_PKT_RATE: return hr ? ring_sum(hr, now, window, F_PKTS) : 0;
	case CONTAIN_METRIC_TOTAL_CONN_RATE: return ring_sum(d->session, now, window, F_CONNS);
	case CONTAIN_METRIC_TOTAL_PKT_RATE: return ring_sum(d->session, now, window, F_PKTS);
	case CONTAIN_METRIC_DISTINCT_DST:
		return count_recent(&d->hosts, window_start(now, window), NULL) +
		       ring_sum(d->session, now, window, F_UNTRACKED);
	case CONTAIN_METRIC_DISTINCT_PORT:
		if (!hr)
			return 0;
		return count_recent(&d->endpoints, window_start(now, window), &hk) +
		       ring_sum(hr, now, window, F_UNTRACKED);
	}
	return 0;
}

uint32_t contain_detect_name_rank(contain_detect *d, const char *scope, const char *name)
{
	char lower[CONTAIN_DETECT_NAME_MAX + 1];
	size_t len = 0;
	for (; name[len] && len < CONTAIN_DETECT_NAME_MAX; len++)
		lower[len] = (char)tolower((unsigned char)name[len]);
	lower[len] = '\0';

	size_t sc = 0;
	for (; sc < d->n_scopes; sc++)
		if (strncmp(d->scopes[sc], scope, sizeof(d->scopes[sc]) - 1) == 0)
			break;
	if (sc == d->n_scopes) {
		if (d->n_scopes == MAX_SCOPES)
			return UINT32_MAX;
		snprintf(d->scopes[sc], sizeof(d->scopes[sc]), "%s", scope);
		d->n_scopes++;
	}

	uint64_t hash = mamori_hash64(lower, len, sc);
	for (size_t i = 0; i < d->n_names; i++)
		if (d->names[i].hash == hash && d->names[i].scope == sc &&
		    strcmp(d->names[i].name, lower) == 0)
			return d->names[i].rank;
	if (d->n_names == MAX_NAMES)
		return UINT32_MAX;
	char *copy = strdup(lower);
	if (!copy)
		return UINT32_MAX;
	dname *n = &d->names[d->n_names++];
	n->hash = hash;
	n->scope = (uint8_t)sc;
	n->name = copy;
	n->rank = ++d->scope_count[sc];
	return n->rank;
}

void contain_detect_limits_default(contain_detect_limits *out)
{
	out->conn_per_window = 50;
	out->pkt_per_window = 500;
	out->flood_window = 1;
	out->distinct_dst = 20;
	out->distinct_port = 20;
	out->scan_window = 10;
}

static void push_alert(contain_alert *out, size_t max, size_t *n, contain_alert_kind kind, contain_metric m,
		       const dkey *host, uint64_t count, double window)
{
	if (*n >= max)
		return;
	contain_alert *a = &out[(*n)++];
	memset(a, 0, sizeof(*a));
	a->kind = kind;
	a->metric = m;
	if (host) {
		a->has_target = true;
		a->target.family = host->family;
		memcpy(a->target.bytes, host->addr, sizeof(a->target.bytes));
	}
	a->count = count;
	a->window = window;
	a->rate = (double)count / window;
}

void contain_detect_check(contain_detect *d, double now, const contain_detect_limits *lim, contain_alert *out,
			  size_t max, size_t *n_out)
{
	*n_out = 0;
	double fw = clamp_window(lim->flood_window), sw = clamp_window(lim->scan_window);
	/* Hosts are appended on first sight and only reordered by eviction, so
	 * sorting by first_seen keeps the oldest target first. */
	size_t nh = d->hosts.n;
	size_t *order = malloc((nh ? nh : 1) * sizeof(*order));
	if (!order)
		return;
	for (size_t i = 0; i < nh; i++)
		order[i] = i;
	for (size_t i = 1; i < nh; i++) /* insertion sort: nearly sorted */
		for (size_t j = i;
		     j > 0 && d->hosts.e[order[j]].first_seen < d->hosts.e[order[j - 1]].first_seen; j--) {
			size_t t = order[j];
			order[j] = order[j - 1];
			order[j - 1] = t;
		}
	for (size_t oi = 0; oi < nh; oi++) {
		size_t i = order[oi];
		const bucket *r = &d->hosts.rings[i * RING];
		const dkey *k = &d->hosts.e[i].key;
		uint64_t c = lim->conn_per_window ? ring_sum(r, now, fw, F_CONNS) : 0;
		uint64_t p = lim->pkt_per_window ? ring_sum(r, now, fw, F_PKTS) : 0;
		if (lim->conn_per_window && c > lim->conn_per_window)
			push_alert(out, max, n_out, CONTAIN_ALERT_FLOOD, CONTAIN_METRIC_CONN_RATE, k, c, fw);
		else if (lim->pkt_per_window && p > lim->pkt_per_window)
			push_alert(out, max, n_out, CONTAIN_ALERT_FLOOD, CONTAIN_METRIC_PKT_RATE, k, p, fw);
		if (lim->distinct_port) {
			uint64_t ports = count_recent(&d->endpoints, window_start(now, sw), k) +
					 ring_sum(r, now, sw, F_UNTRACKED);
			if (ports > lim->distinct_port)
				push_alert(out, max, n_out, CONTAIN_ALERT_SCAN, CONTAIN_METRIC_DISTINCT_PORT,
					   k, ports, sw);
		}
	}
	free(order);
	if (lim->distinct_dst) {
		uint64_t hosts = contain_detect_count(d, now, CONTAIN_METRIC_DISTINCT_DST, NULL, sw);
		if (hosts > lim->distinct_dst)
			push_alert(out, max, n_out, CONTAIN_ALERT_SCAN, CONTAIN_METRIC_DISTINCT_DST, NULL,
				   hosts, sw);
	}
}
