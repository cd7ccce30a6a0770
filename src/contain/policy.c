/*
 * Containment policy: parser and evaluator (syntax in docs/contain-policy.md).
 *
 * The parser reads the text line by line through a bounded cursor: a line
 * longer than CONTAIN_POLICY_MAX_LINE, a NUL byte, an unknown word, a value
 * out of range or an option that does not belong to the rule's action is an
 * error naming the line. Nothing is taken on trust: numbers are parsed digit
 * by digit with overflow checks, names against fixed character sets.
 *
 * Evaluation walks the rules in order and returns the first that matches;
 * when none does, an implicit "reflect * to=sink" answers, so every flow gets
 * a verdict. Rate and distinct-count conditions and max-hosts ask the
 * per-session detector, which the caller owns.
 */
#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mamori/base.h"
#include "policy.h"

static const char default_policy_text[] =
	"# mamori default containment policy (also compiled into mamori; see\n"
	"# docs/contain-policy.md). Rules are tried top to bottom; the first that\n"
	"# matches a flow decides its verdict.\n"
	"\n"
	"# Floods and scans never leave, whatever protocol they speak. The thresholds\n"
	"# are counted per destination host (rates) or per session (distinct hosts).\n"
	"drop flood conn-rate>50/s\n"
	"drop flood pkt-rate>500/s\n"
	"drop scan distinct-dst>20/10s\n"
	"drop scan distinct-port>20/10s\n"
	"\n"
	"# Spam goes to the SMTP sink, which stores it and never relays.\n"
	"reflect proto=smtp to=smtp-sink\n"
	"\n"
	"# Name resolution reaches the upstream resolver so the sample finds its C&C.\n"
	"forward proto=dns\n"
	"\n"
	"# Command and control: IRC, and HTTP or TLS polling of a few hosts. Downloads\n"
	"# over HTTP and FTP go through within a byte budget.\n"
	"forward proto=irc\n"
	"limit proto=http max-hosts=5 bytes=64M\n"
	"forward proto=tls max-hosts=5\n"
	"limit proto=ftp max-hosts=3 bytes=64M\n"
	"\n"
	"# Anything else gets a fake answer.\n"
	"reflect proto=http to=http\n"
	"reflect * to=sink\n"
	"\n"
	"# The fake resolver (used when DNS is reflected) answers every name with the\n"
	"# sinkhole address.\n"
	"dns sinkhole=198.51.100.53 ttl=60\n";

#define MAX_POLICY_FILE ((size_t)1 << 20)

struct contain_policy {
	size_t n_rules;
	contain_rule rules[CONTAIN_POLICY_MAX_RULES];
	contain_dns_config dns;
};

/* The fake services a REFLECT may name (implemented in fakesvc.c). */
static const char *const known_services[] = { "smtp-sink", "http", "irc", "dns", "sink" };

static const contain_rule implicit_sink = {
	.line = 0,
	.text = "reflect * to=sink (implicit last rule)",
	.action = CONTAIN_VERDICT_REFLECT,
	.service = "sink",
};

const char *contain_verdict_name(contain_verdict_kind k)
{
	switch (k) {
	case CONTAIN_VERDICT_FORWARD: return "forward";
	case CONTAIN_VERDICT_REFLECT: return "reflect";
	case CONTAIN_VERDICT_DROP: return "drop";
	case CONTAIN_VERDICT_LIMIT: return "limit";
	}
	return "?";
}

const char *contain_policy_default_text(void)
{
	return default_policy_text;
}

/* ------------------------------------------------------------------ */
/* Parsing                                                              */
/* ------------------------------------------------------------------ */

typedef struct parse_ctx {
	const char *name;
	unsigned line;
} parse_ctx;

#define PFAIL(ctx, ...) parse_fail((ctx), __VA_ARGS__)

__attribute__((format(printf, 2, 3))) static int parse_fail(const parse_ctx *ctx, const char *fmt, ...)
{
	char what[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap); // NOLINT(clang-analyzer-valist.Uninitialized): see error.c
	va_end(ap);
	return mamori_fail(MAMORI_EFORMAT, "%s:%u: %s", ctx->name, ctx->line, what);
}

/* Decimal digits only, with an overflow check; the whole string must be
 * used. */
static bool parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	if (!*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		unsigned d = (unsigned)(*s - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

/* "10", "10K", "10M", "10G" (powers of 1024). */
static bool parse_size(const char *s, uint64_t *out)
{
	char digits[24];
	size_t len = strlen(s);
	if (len == 0 || len >= sizeof(digits))
		return false;
	memcpy(digits, s, len + 1);
	uint64_t mul = 1;
	switch (toupper((unsigned char)digits[len - 1])) {
	case 'K': mul = 1ull << 10; break;
	case 'M': mul = 1ull << 20; break;
	case 'G': mul = 1ull << 30; break;
	default: break;
	}
	if (mul != 1)
		digits[len - 1] = '\0';
	uint64_t v;
	if (!parse_u64(digits, &v) || v > UINT64_MAX / mul)
		return false;
	*out = v * mul;
	return true;
}

/* "/s" or "/Ns" after a count: the window in seconds. */
static bool parse_per(const char *s, double *out)
{
	if (s[0] != '/')
		return false;
	s++;
	size_t len = strlen(s);
	if (len == 0 || s[len - 1] != 's')
		return false;
	if (len == 1) {
		*out = 1;
		return true;
	}
	char digits[16];
	if (len - 1 >= sizeof(digits))
		return false;
	memcpy(digits, s, len - 1);
	digits[len - 1] = '\0';
	uint64_t w;
	if (!parse_u64(digits, &w) || w == 0)
		return false;
	*out = (double)w;
	return true;
}

static bool is_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

static bool is_glob_char(char c)
{
	return isalnum((unsigned char)c) || strchr("-_.*?", c) != NULL;
}

static bool valid_glob(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!is_glob_char(*s))
			return false;
	return true;
}

static int parse_protos(const parse_ctx *ctx, contain_rule *r, const char *v)
{
	char buf[CONTAIN_POLICY_MAX_LINE];
	snprintf(buf, sizeof(buf), "%s", v);
	char *save = NULL;
	for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (r->n_protos == CONTAIN_POLICY_MAX_PROTOS)
			return PFAIL(ctx, "more than %d protocols in proto=", CONTAIN_POLICY_MAX_PROTOS);
		size_t len = strlen(tok);
		if (len == 0 || len >= sizeof(r->protos[0]))
			return PFAIL(ctx, "bad protocol name '%.32s'", tok);
		for (size_t i = 0; i < len; i++)
			if (!is_name_char(tok[i]))
				return PFAIL(ctx,
					     "bad protocol name '%.32s' (lowercase letters, digits, '-')",
					     tok);
		memcpy(r->protos[r->n_protos++], tok, len + 1);
	}
	if (r->n_protos == 0)
		return PFAIL(ctx, "empty proto=");
	return MAMORI_OK;
}

static int parse_transports(const parse_ctx *ctx, contain_rule *r, const char *v)
{
	char buf[64];
	if (strlen(v) >= sizeof(buf))
		return PFAIL(ctx, "bad transport list");
	snprintf(buf, sizeof(buf), "%s", v);
	char *save = NULL;
	for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (strcmp(tok, "tcp") == 0)
			r->transports |= CONTAIN_TRANSPORT_TCP;
		else if (strcmp(tok, "udp") == 0)
			r->transports |= CONTAIN_TRANSPORT_UDP;
		else if (strcmp(tok, "other") == 0)
			r->transports |= CONTAIN_TRANSPORT_OTHER;
		else
			return PFAIL(ctx, "unknown transport '%.16s' (tcp, udp, other)", tok);
	}
	if (!r->transports)
		return PFAIL(ctx, "empty transport=");
	return MAMORI_OK;
}

static int parse_ports(const parse_ctx *ctx, contain_rule *r, const char *v)
{
	char buf[16];
	if (strlen(v) >= sizeof(buf))
		return PFAIL(ctx, "bad port '%.16s'", v);
	snprintf(buf, sizeof(buf), "%s", v);
	char *dash = strchr(buf, '-');
	const char *hi_s = buf;
	if (dash) {
		*dash = '\0';
		hi_s = dash + 1;
	}
	uint64_t lo, hi;
	if (!parse_u64(buf, &lo) || !parse_u64(hi_s, &hi) || lo == 0 || hi > 65535 || lo > hi)
		return PFAIL(ctx, "bad port '%.16s' (N or N-M, 1..65535)", v);
	r->port_lo = (uint16_t)lo;
	r->port_hi = (uint16_t)hi;
	return MAMORI_OK;
}

static int parse_cidr(const parse_ctx *ctx, contain_addr *addr, unsigned *prefix, const char *v)
{
	char buf[64];
	if (strlen(v) >= sizeof(buf))
		return PFAIL(ctx, "bad address '%.32s'", v);
	snprintf(buf, sizeof(buf), "%s", v);
	char *slash = strchr(buf, '/');
	if (slash)
		*slash = '\0';
	if (contain_addr_parse(addr, buf) != MAMORI_OK)
		return PFAIL(ctx, "bad address '%.48s'", v);
	unsigned max = addr->family == 6 ? 128 : 32;
	uint64_t p = max;
	if (slash && (!parse_u64(slash + 1, &p) || p > max))
		return PFAIL(ctx, "bad prefix length in '%.48s'", v);
	*prefix = (unsigned)p;
	return MAMORI_OK;
}

static const struct {
	const char *name;
	contain_metric metric;
} metric_names[] = {
	{ "conn-rate", CONTAIN_METRIC_CONN_RATE },
	{ "pkt-rate", CONTAIN_METRIC_PKT_RATE },
	{ "distinct-dst", CONTAIN_METRIC_DISTINCT_DST },
	{ "distinct-port", CONTAIN_METRIC_DISTINCT_PORT },
	{ "total-conn-rate", CONTAIN_METRIC_TOTAL_CONN_RATE },
	{ "total-pkt-rate", CONTAIN_METRIC_TOTAL_PKT_RATE },
};

/* "metric>N/s" or "metric>N/Ws". */
static int parse_cond(const parse_ctx *ctx, contain_rule *r, const char *tok, const char *gt)
{
	size_t nlen = (size_t)(gt - tok);
	contain_metric m = 0;
	for (size_t i = 0; i < sizeof(metric_names) / sizeof(metric_names[0]); i++)
		if (strlen(metric_names[i].name) == nlen && strncmp(metric_names[i].name, tok, nlen) == 0)
			m = metric_names[i].metric;
	if (!m)
		return PFAIL(ctx,
			     "unknown measure '%.*s' (conn-rate, pkt-rate, distinct-dst, distinct-port, "
			     "total-conn-rate, total-pkt-rate)",
			     (int)(nlen > 32 ? 32 : nlen), tok);
	if (r->n_conds == CONTAIN_POLICY_MAX_CONDS)
		return PFAIL(ctx, "more than %d conditions", CONTAIN_POLICY_MAX_CONDS);
	const char *num = gt + 1;
	const char *slash = strchr(num, '/');
	char digits[24];
	size_t dlen = slash ? (size_t)(slash - num) : strlen(num);
	uint64_t count;
	double window = 0;
	if (!slash || dlen == 0 || dlen >= sizeof(digits))
		return PFAIL(ctx, "bad condition '%.48s' (write e.g. %s>50/s or %s>20/10s)", tok,
			     contain_metric_name(m), contain_metric_name(m));
	memcpy(digits, num, dlen);
	digits[dlen] = '\0';
	if (!parse_u64(digits, &count) || !parse_per(slash, &window))
		return PFAIL(ctx, "bad condition '%.48s' (write e.g. %s>50/s or %s>20/10s)", tok,
			     contain_metric_name(m), contain_metric_name(m));
	if (window > CONTAIN_DETECT_MAX_WINDOW)
		return PFAIL(ctx, "window of %.0fs in '%.48s' is longer than %ds", window, tok,
			     CONTAIN_DETECT_MAX_WINDOW);
	contain_cond *c = &r->conds[r->n_conds++];
	c->metric = m;
	c->count = count;
	c->window = window;
	return MAMORI_OK;
}

static int parse_dns_line(const parse_ctx *ctx, contain_dns_config *dns, char **toks, size_t n)
{
	const char *host = NULL, *answer = NULL, *sinkhole = NULL, *ttl = NULL;
	bool nx = false;
	for (size_t i = 1; i < n; i++) {
		char *t = toks[i];
		if (strcmp(t, "nxdomain") == 0)
			nx = true;
		else if (strncmp(t, "host=", 5) == 0)
			host = t + 5;
		else if (strncmp(t, "answer=", 7) == 0)
			answer = t + 7;
		else if (strncmp(t, "sinkhole=", 9) == 0)
			sinkhole = t + 9;
		else if (strncmp(t, "ttl=", 4) == 0)
			ttl = t + 4;
		else
			return PFAIL(ctx,
				     "unknown dns option '%.32s' (host=, answer=, nxdomain, sinkhole=, ttl=)",
				     t);
	}
	contain_addr a;
	if (sinkhole) {
		if (host || answer || nx)
			return PFAIL(ctx, "dns sinkhole= stands alone (with ttl=)");
		if (contain_addr_parse(&a, sinkhole) != MAMORI_OK || a.family != 4)
			return PFAIL(ctx, "dns sinkhole must be an IPv4 address, not '%.48s'", sinkhole);
		memcpy(dns->sinkhole, a.bytes, 4);
	}
	if (ttl) {
		uint64_t v;
		if (!parse_u64(ttl, &v) || v > 86400)
			return PFAIL(ctx, "bad ttl '%.16s' (0..86400)", ttl);
		dns->ttl = (uint32_t)v;
	}
	if (sinkhole || (ttl && !host))
		return MAMORI_OK;
	if (!host)
		return PFAIL(ctx, "dns rule needs host=GLOB with answer=ADDR or nxdomain");
	if (!valid_glob(host) || strlen(host) >= sizeof(dns->rules[0].glob))
		return PFAIL(ctx, "bad host pattern '%.48s'", host);
	if (nx == (answer != NULL))
		return PFAIL(ctx, "dns host= needs exactly one of answer=ADDR and nxdomain");
	if (dns->n_rules == CONTAIN_POLICY_MAX_DNS)
		return PFAIL(ctx, "more than %d dns rules", CONTAIN_POLICY_MAX_DNS);
	contain_dns_rule *dr = &dns->rules[dns->n_rules];
	memset(dr, 0, sizeof(*dr));
	snprintf(dr->glob, sizeof(dr->glob), "%s", host);
	dr->nxdomain = nx;
	if (answer) {
		if (contain_addr_parse(&a, answer) != MAMORI_OK || a.family != 4)
			return PFAIL(ctx, "dns answer must be an IPv4 address, not '%.48s'", answer);
		memcpy(dr->addr, a.bytes, 4);
	}
	dns->n_rules++;
	return MAMORI_OK;
}

static bool is_known_service(const char *s)
{
	for (size_t i = 0; i < sizeof(known_services) / sizeof(known_services[0]); i++)
		if (strcmp(s, known_services[i]) == 0)
			return true;
	return false;
}

/* Parse one rule line (already split into tokens). */
static int parse_rule(const parse_ctx *ctx, contain_rule *r, char **toks, size_t n, const char *raw)
{
	memset(r, 0, sizeof(*r));
	r->line = ctx->line;
	snprintf(r->text, sizeof(r->text), "%s", raw);
	const char *a = toks[0];
	if (strcmp(a, "forward") == 0)
		r->action = CONTAIN_VERDICT_FORWARD;
	else if (strcmp(a, "reflect") == 0)
		r->action = CONTAIN_VERDICT_REFLECT;
	else if (strcmp(a, "drop") == 0)
		r->action = CONTAIN_VERDICT_DROP;
	else if (strcmp(a, "limit") == 0)
		r->action = CONTAIN_VERDICT_LIMIT;
	else
		return PFAIL(ctx, "unknown action '%.32s' (forward, reflect, drop, limit, dns)", a);

	unsigned seen = 0; /* bit per key, to refuse duplicates */
	enum {
		K_PROTO = 1,
		K_HOST = 2,
		K_PORT = 4,
		K_TRANSPORT = 8,
		K_DST = 16,
		K_MAXH = 32,
		K_TO = 64,
		K_BYTES = 128,
		K_RATE = 256
	};
	int rc = MAMORI_OK;
	for (size_t i = 1; i < n && rc == MAMORI_OK; i++) {
		char *t = toks[i];
		char *gt = strchr(t, '>');
		char *eq = strchr(t, '=');
		if (strcmp(t, "*") == 0)
			continue;
		if (strcmp(t, "flood") == 0 || strcmp(t, "scan") == 0) {
			if (r->label[0])
				return PFAIL(ctx, "more than one of flood/scan");
			snprintf(r->label, sizeof(r->label), "%s", t);
			continue;
		}
		if (gt && (!eq || gt < eq)) {
			rc = parse_cond(ctx, r, t, gt);
			continue;
		}
		if (!eq)
			return PFAIL(ctx, "unknown word '%.32s'", t);
		*eq = '\0';
		const char *k = t, *v = eq + 1;
		unsigned bit = 0;
		if (strcmp(k, "proto") == 0) {
			bit = K_PROTO;
		} else if (strcmp(k, "host") == 0) {
			bit = K_HOST;
		} else if (strcmp(k, "port") == 0) {
			bit = K_PORT;
		} else if (strcmp(k, "transport") == 0) {
			bit = K_TRANSPORT;
		} else if (strcmp(k, "dst") == 0) {
			bit = K_DST;
		} else if (strcmp(k, "max-hosts") == 0) {
			bit = K_MAXH;
		} else if (strcmp(k, "to") == 0) {
			bit = K_TO;
		} else if (strcmp(k, "bytes") == 0) {
			bit = K_BYTES;
		} else if (strcmp(k, "rate") == 0) {
			bit = K_RATE;
		} else {
			return PFAIL(
				ctx,
				"unknown option '%.32s' (proto, host, port, transport, dst, max-hosts, to, "
				"bytes, rate)",
				k);
		}
		if (seen & bit)
			return PFAIL(ctx, "%s= given twice", k);
		seen |= bit;
		if (!*v)
			return PFAIL(ctx, "%s= needs a value", k);
		switch (bit) {
		case K_PROTO: rc = parse_protos(ctx, r, v); break;
		case K_HOST:
			if (!valid_glob(v) || strlen(v) >= sizeof(r->host_glob))
				return PFAIL(ctx,
					     "bad host pattern '%.48s' (letters, digits, '-', '.', '*', '?')",
					     v);
			snprintf(r->host_glob, sizeof(r->host_glob), "%s", v);
			break;
		case K_PORT: rc = parse_ports(ctx, r, v); break;
		case K_TRANSPORT: rc = parse_transports(ctx, r, v); break;
		case K_DST:
			r->has_dst = true;
			rc = parse_cidr(ctx, &r->dst, &r->dst_prefix, v);
			break;
		case K_MAXH: {
			uint64_t m;
			if (!parse_u64(v, &m) || m == 0 || m > 100000)
				return PFAIL(ctx, "bad max-hosts '%.16s' (1..100000)", v);
			r->max_hosts = (uint32_t)m;
			break;
		}
		case K_TO:
			if (r->action != CONTAIN_VERDICT_REFLECT)
				return PFAIL(ctx, "to= belongs to reflect rules only");
			if (!is_known_service(v))
				return PFAIL(ctx, "unknown service '%.32s' (smtp-sink, http, irc, dns, sink)",
					     v);
			snprintf(r->service, sizeof(r->service), "%s", v);
			break;
		case K_BYTES:
			if (r->action != CONTAIN_VERDICT_LIMIT)
				return PFAIL(ctx, "bytes= belongs to limit rules only");
			if (!parse_size(v, &r->byte_budget) || r->byte_budget == 0)
				return PFAIL(ctx, "bad byte budget '%.24s' (e.g. 10M)", v);
			break;
		case K_RATE: {
			if (r->action != CONTAIN_VERDICT_LIMIT)
				return PFAIL(ctx, "rate= belongs to limit rules only");
			char buf[32];
			const char *slash = strchr(v, '/');
			double per = 0;
			size_t len = slash ? (size_t)(slash - v) : 0;
			if (!slash || len == 0 || len >= sizeof(buf) || !parse_per(slash, &per))
				return PFAIL(ctx, "bad rate '%.24s' (bytes per second, e.g. rate=100K/s)", v);
			memcpy(buf, v, len);
			buf[len] = '\0';
			uint64_t amount;
			if (!parse_size(buf, &amount) || amount == 0)
				return PFAIL(ctx, "bad rate '%.24s' (bytes per second, e.g. rate=100K/s)", v);
			r->byte_rate = (uint64_t)((double)amount / per);
			if (r->byte_rate == 0)
				r->byte_rate = 1;
			break;
		}
		default: break;
		}
	}
	if (rc != MAMORI_OK)
		return rc;
	if (r->action == CONTAIN_VERDICT_REFLECT && !r->service[0])
		return PFAIL(ctx, "reflect needs to=SERVICE (smtp-sink, http, irc, dns, sink)");
	if (r->action == CONTAIN_VERDICT_LIMIT && !r->byte_budget && !r->byte_rate)
		return PFAIL(ctx, "limit needs bytes=SIZE and/or rate=SIZE/s");
	if (r->label[0] && r->n_conds == 0)
		return PFAIL(ctx, "'%s' needs a condition such as conn-rate>50/s or distinct-dst>20/10s",
			     r->label);
	return MAMORI_OK;
}

int contain_policy_parse(contain_policy **out, const char *name, const char *text, size_t len)
{
	*out = NULL;
	parse_ctx ctx = { .name = name ? name : "policy", .line = 0 };
	contain_policy *p = calloc(1, sizeof(*p));
	if (!p)
		return mamori_fail(MAMORI_ENOMEM, "policy");
	static const uint8_t default_sinkhole[4] = { 198, 51, 100, 53 };
	memcpy(p->dns.sinkhole, default_sinkhole, 4);
	p->dns.ttl = 60;

	int rc = MAMORI_OK;
	mamori_cursor cur;
	mamori_cursor_init(&cur, text, len);
	char line[CONTAIN_POLICY_MAX_LINE + 1];
	while (rc == MAMORI_OK && mamori_cursor_left(&cur) > 0) {
		ctx.line++;
		size_t n = 0;
		bool too_long = false, has_nul = false;
		uint8_t c;
		while (mamori_read_u8(&cur, &c) == MAMORI_OK && c != '\n') {
			if (c == '\0')
				has_nul = true;
			if (n < CONTAIN_POLICY_MAX_LINE)
				line[n++] = (char)c;
			else
				too_long = true;
		}
		if (n && line[n - 1] == '\r')
			n--;
		line[n] = '\0';
		if (too_long) {
			rc = PFAIL(&ctx, "line longer than %d bytes", CONTAIN_POLICY_MAX_LINE);
			break;
		}
		if (has_nul) {
			rc = PFAIL(&ctx, "NUL byte in the line");
			break;
		}
		char *hash = strchr(line, '#');
		if (hash)
			*hash = '\0';
		char raw[CONTAIN_POLICY_MAX_LINE + 1];
		char *start = line;
		while (*start == ' ' || *start == '\t')
			start++;
		snprintf(raw, sizeof(raw), "%s", start);
		for (size_t e = strlen(raw); e > 0 && (raw[e - 1] == ' ' || raw[e - 1] == '\t'); e--)
			raw[e - 1] = '\0';

		char *toks[CONTAIN_POLICY_MAX_LINE / 2 + 1];
		size_t nt = 0;
		char *save = NULL;
		for (char *t = strtok_r(line, " \t", &save); t; t = strtok_r(NULL, " \t", &save))
			toks[nt++] = t;
		if (nt == 0)
			continue;
		for (const char *s = raw; *s; s++)
			if (!isprint((unsigned char)*s) && *s != '\t') {
				rc = PFAIL(&ctx, "control or non-ASCII byte 0x%02x", (unsigned char)*s);
				break;
			}
		if (rc != MAMORI_OK)
			break;
		if (strcmp(toks[0], "dns") == 0) {
			rc = parse_dns_line(&ctx, &p->dns, toks, nt);
			continue;
		}
		if (p->n_rules == CONTAIN_POLICY_MAX_RULES) {
			rc = mamori_fail(MAMORI_ELIMIT, "%s:%u: more than %d rules", ctx.name, ctx.line,
					 CONTAIN_POLICY_MAX_RULES);
			break;
		}
		rc = parse_rule(&ctx, &p->rules[p->n_rules], toks, nt, raw);
		if (rc == MAMORI_OK)
			p->n_rules++;
	}
	if (rc != MAMORI_OK) {
		contain_policy_free(p);
		return rc;
	}
	*out = p;
	return MAMORI_OK;
}

int contain_policy_load(contain_policy **out, const char *path)
{
	*out = NULL;
	uint8_t *data = NULL;
	size_t len = 0;
	int rc = mamori_file_read(&data, &len, path, MAX_POLICY_FILE);
	if (rc == MAMORI_OK)
		rc = contain_policy_parse(out, path, (const char *)data, len);
	free(data);
	return rc;
}

int contain_policy_default(contain_policy **out)
{
	return contain_policy_parse(out, "default.policy", default_policy_text, strlen(default_policy_text));
}

void contain_policy_free(contain_policy *p)
{
	free(p);
}

size_t contain_policy_rule_count(const contain_policy *p)
{
	return p->n_rules;
}

const contain_rule *contain_policy_rule(const contain_policy *p, size_t i)
{
	return i < p->n_rules ? &p->rules[i] : NULL;
}

const contain_dns_config *contain_policy_dns(const contain_policy *p)
{
	return &p->dns;
}

/* ------------------------------------------------------------------ */
/* Evaluation                                                           */
/* ------------------------------------------------------------------ */

bool contain_glob_match(const char *glob, const char *text)
{
	/* Iterative with one backtrack point: linear in practice, never
	 * exponential on hostile names. */
	const char *star = NULL, *resume = NULL;
	while (*text) {
		if (*glob == '*') {
			star = glob++;
			resume = text;
		} else if (*glob == '?' || tolower((unsigned char)*glob) == tolower((unsigned char)*text)) {
			glob++;
			text++;
		} else if (star) {
			glob = star + 1;
			text = ++resume;
		} else {
			return false;
		}
	}
	while (*glob == '*')
		glob++;
	return *glob == '\0';
}

/* The name a flow is going to: HTTP Host, TLS SNI, DNS query name. */
static const char *flow_host(const contain_flow *f)
{
	static const char *const keys[] = { "host", "sni", "qname", "server" };
	for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
		for (size_t i = 0; i < f->n_meta; i++)
			if (f->meta[i].key && f->meta[i].value && f->meta[i].value[0] &&
			    strcmp(f->meta[i].key, keys[k]) == 0)
				return f->meta[i].value;
	return NULL;
}

static bool cidr_match(const contain_addr *net, unsigned prefix, const contain_addr *a)
{
	if (net->family != a->family)
		return false;
	unsigned full = prefix / 8, rest = prefix % 8;
	if (memcmp(net->bytes, a->bytes, full) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));
	return (net->bytes[full] & mask) == (a->bytes[full] & mask);
}

static bool rule_selects(const contain_rule *r, const contain_flow *f, const char *host)
{
	if (r->n_protos) {
		bool any = false;
		for (size_t i = 0; i < r->n_protos && !any; i++)
			any = f->proto && strcmp(r->protos[i], f->proto) == 0;
		if (!any)
			return false;
	}
	if (r->transports && !(r->transports & (unsigned)f->transport))
		return false;
	if (r->port_lo && (f->dst_port < r->port_lo || f->dst_port > r->port_hi))
		return false;
	if (r->has_dst && !cidr_match(&r->dst, r->dst_prefix, &f->dst))
		return false;
	if (r->host_glob[0] && (!host || !contain_glob_match(r->host_glob, host)))
		return false;
	return true;
}

void contain_policy_eval(contain_verdict *out, const contain_policy *p, const contain_flow *flow,
			 contain_detect *det, double now)
{
	memset(out, 0, sizeof(*out));
	const char *host = flow_host(flow);
	char dst_text[64];
	contain_addr_format(&flow->dst, dst_text, sizeof(dst_text));
	const contain_rule *match = &implicit_sink;

	for (size_t i = 0; i < p->n_rules; i++) {
		const contain_rule *r = &p->rules[i];
		if (!rule_selects(r, flow, host))
			continue;
		bool conds_hold = true;
		char why[128] = "";
		for (size_t c = 0; c < r->n_conds && conds_hold; c++) {
			const contain_cond *cd = &r->conds[c];
			uint64_t v =
				det ? contain_detect_count(det, now, cd->metric, &flow->dst, cd->window) : 0;
			conds_hold = det && v > cd->count;
			if (conds_hold && c == 0)
				snprintf(why, sizeof(why), "%s: %s %llu in %gs > %llu%s%s",
					 r->label[0] ? r->label : "condition",
					 contain_metric_name(cd->metric), (unsigned long long)v, cd->window,
					 (unsigned long long)cd->count,
					 cd->metric == CONTAIN_METRIC_DISTINCT_DST ? "" : " to ",
					 cd->metric == CONTAIN_METRIC_DISTINCT_DST ? "" : dst_text);
		}
		if (!conds_hold)
			continue;
		if (r->max_hosts && det) {
			/* Per-rule scope: "the first N hosts this rule let through". */
			char scope[16];
			snprintf(scope, sizeof(scope), "rule%u", r->line);
			uint32_t rank = contain_detect_name_rank(det, scope, host ? host : dst_text);
			if (rank > r->max_hosts)
				continue;
		}
		match = r;
		snprintf(out->reason, sizeof(out->reason), "%s", why);
		break;
	}
	out->rule = match;
	out->kind = match->action;
	out->service = match->service[0] ? match->service : NULL;
	out->byte_budget = match->byte_budget;
	out->byte_rate = match->byte_rate;
	if (!out->reason[0])
		snprintf(out->reason, sizeof(out->reason), "%s %u: %.100s", match->line ? "line" : "default",
			 match->line, match->text);
}

const char *contain_fake_service_for(const char *proto)
{
	static const char *const map[][2] = {
		{ "smtp", "smtp-sink" }, { "http", "http" }, { "irc", "irc" }, { "dns", "dns" }
	};
	for (size_t i = 0; proto && i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(proto, map[i][0]) == 0)
			return map[i][1];
	return "sink";
}

json_t *contain_verdict_json(const contain_verdict *v)
{
	json_t *o = json_object();
	if (!o)
		return NULL;
	json_object_set_new(o, "verdict", json_string(contain_verdict_name(v->kind)));
	if (v->service)
		json_object_set_new(o, "service", json_string(v->service));
	if (v->byte_budget)
		json_object_set_new(o, "bytes", mamori_json_u64(v->byte_budget));
	if (v->byte_rate)
		json_object_set_new(o, "rate", mamori_json_u64(v->byte_rate));
	json_t *rule = json_object();
	json_object_set_new(rule, "line", json_integer(v->rule ? (json_int_t)v->rule->line : 0));
	json_object_set_new(rule, "text", json_string(v->rule ? v->rule->text : ""));
	json_object_set_new(o, "rule", rule);
	json_object_set_new(o, "reason", json_string(v->reason));
	return o;
}

json_t *contain_alert_json(const contain_alert *a)
{
	json_t *o = json_object();
	if (!o)
		return NULL;
	json_object_set_new(o, "kind", json_string(a->kind == CONTAIN_ALERT_FLOOD ? "flood" : "scan"));
	json_object_set_new(o, "measure", json_string(contain_metric_name(a->metric)));
	if (a->has_target) {
		char buf[64];
		contain_addr_format(&a->target, buf, sizeof(buf));
		json_object_set_new(o, "target", json_string(buf));
	}
	json_object_set_new(o, "count", mamori_json_u64(a->count));
	json_object_set_new(o, "window", json_real(a->window));
	json_object_set_new(o, "rate", json_real(a->rate));
	return o;
}
