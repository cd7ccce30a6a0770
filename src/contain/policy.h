/*
 * Containment policy: a readable, line-based rule file, its parser (with
 * line-numbered errors) and the evaluation of one flow against it, giving a
 * verdict (FORWARD, REFLECT to a fake service, DROP, LIMIT) and the rule that
 * matched. First match wins; a policy whose rules all miss reflects to the
 * generic sink. The syntax is documented in docs/contain-policy.md.
 *
 * Limits: CONTAIN_POLICY_MAX_RULES rules, lines of CONTAIN_POLICY_MAX_LINE
 * bytes, a file of at most 1 MiB. A parsed policy is read-only and may be
 * shared; mutable per-session state (rates, distinct hosts) lives in the
 * contain_detect passed to contain_policy_eval().
 */
#ifndef MAMORI_CONTAIN_POLICY_H
#define MAMORI_CONTAIN_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "detect.h"

#define CONTAIN_POLICY_MAX_RULES  256
#define CONTAIN_POLICY_MAX_LINE	  1024
#define CONTAIN_POLICY_MAX_PROTOS 8
#define CONTAIN_POLICY_MAX_CONDS  4
#define CONTAIN_POLICY_MAX_DNS	  64

typedef enum contain_verdict_kind {
	CONTAIN_VERDICT_FORWARD = 1,
	CONTAIN_VERDICT_REFLECT,
	CONTAIN_VERDICT_DROP,
	CONTAIN_VERDICT_LIMIT, /**< forward within a byte budget and/or rate */
} contain_verdict_kind;

/** "forward", "reflect", "drop", "limit". */
const char *contain_verdict_name(contain_verdict_kind k);

/** A "metric>count/window" condition; all of a rule's conditions must hold. */
typedef struct contain_cond {
	contain_metric metric;
	uint64_t count; /**< holds when the metric exceeds this */
	double window;	/**< seconds */
} contain_cond;

/** One parsed rule. */
typedef struct contain_rule {
	unsigned line;	/**< in the policy text; 0 = implicit */
	char text[160]; /**< the rule as written (shortened) */
	contain_verdict_kind action;
	char label[16];	 /**< "flood", "scan" or "" */
	size_t n_protos; /**< 0 = any protocol */
	char protos[CONTAIN_POLICY_MAX_PROTOS][16];
	char host_glob[128];	   /**< "" = any host */
	unsigned transports;	   /**< mask of contain_transport; 0 = any */
	uint16_t port_lo, port_hi; /**< 0,0 = any port */
	bool has_dst;
	contain_addr dst; /**< dst=CIDR */
	unsigned dst_prefix;
	uint32_t max_hosts; /**< 0 = unlimited */
	size_t n_conds;
	contain_cond conds[CONTAIN_POLICY_MAX_CONDS];
	char service[24];     /**< REFLECT: the fake service */
	uint64_t byte_budget; /**< LIMIT: per flow; 0 = none */
	uint64_t byte_rate;   /**< LIMIT: bytes per second; 0 = none */
} contain_rule;

/** A DNS answer rule: names matching `glob` get `addr`, or NXDOMAIN. */
typedef struct contain_dns_rule {
	char glob[128];
	bool nxdomain;
	uint8_t addr[4];
} contain_dns_rule;

/** The fake resolver's configuration, from "dns" lines of the policy. */
typedef struct contain_dns_config {
	uint8_t sinkhole[4]; /**< answer for names no rule names */
	uint32_t ttl;
	size_t n_rules;
	contain_dns_rule rules[CONTAIN_POLICY_MAX_DNS];
} contain_dns_config;

typedef struct contain_policy contain_policy;

/**
 * Parse policy text (need not be NUL-terminated). On error `*out` is NULL,
 * the result is MAMORI_EFORMAT (or ELIMIT) and the error detail reads
 * "<name>:<line>: <what is wrong>".
 */
int contain_policy_parse(contain_policy **out, const char *name, const char *text, size_t len);
/** Read and parse a policy file (at most 1 MiB). */
int contain_policy_load(contain_policy **out, const char *path);
/** The built-in default policy (the text of data/contain/default.policy). */
int contain_policy_default(contain_policy **out);
/** The built-in default policy's text. */
const char *contain_policy_default_text(void);
void contain_policy_free(contain_policy *p);

size_t contain_policy_rule_count(const contain_policy *p);
const contain_rule *contain_policy_rule(const contain_policy *p, size_t i);
const contain_dns_config *contain_policy_dns(const contain_policy *p);

/** A metadata key/value pair from a classifier (e.g. "host" -> "a.example"). */
typedef struct contain_meta {
	const char *key;
	const char *value;
} contain_meta;

/** What the evaluator needs to know about a flow. All borrowed. */
typedef struct contain_flow {
	const char *proto; /**< "dns", "http", "irc", "smtp", "ftp", "tls", "unknown" */
	const contain_meta *meta;
	size_t n_meta;
	contain_addr dst; /**< original destination */
	uint16_t dst_port;
	contain_transport transport;
} contain_flow;

typedef struct contain_verdict {
	contain_verdict_kind kind;
	const char *service;	  /**< REFLECT: fake service name (static or rule-owned) */
	uint64_t byte_budget;	  /**< LIMIT */
	uint64_t byte_rate;	  /**< LIMIT */
	const contain_rule *rule; /**< the matching rule, owned by the policy; never NULL */
	char reason[128];	  /**< e.g. "flood: conn-rate 120 in 1s > 50 to 203.0.113.5" */
} contain_verdict;

/**
 * Evaluate `flow` at time `now` (same clock as the detector). `det` may be
 * NULL: rules with conditions then never match and max-hosts is not
 * enforced. The caller records the flow in `det` first
 * (contain_detect_conn), so a flood's own connection counts.
 */
void contain_policy_eval(contain_verdict *out, const contain_policy *p, const contain_flow *flow,
			 contain_detect *det, double now);

/**
 * The fake service that stands in for `proto` ("smtp" -> "smtp-sink",
 * "http", "irc", "dns", anything else -> "sink"): what the gateway reflects
 * to when a FORWARD or LIMIT verdict cannot be carried out because no
 * upstream was configured.
 */
const char *contain_fake_service_for(const char *proto);

struct json_t;
/** The verdict as an event fragment: {"verdict", "service"?, "bytes"?,
 *  "rate"?, "rule": {"line", "text"}, "reason"}. Caller owns the result. */
struct json_t *contain_verdict_json(const contain_verdict *v);
/** An alert as an event fragment: {"kind": "flood"|"scan", "measure",
 *  "target"?, "count", "window", "rate"}. Caller owns the result. */
struct json_t *contain_alert_json(const contain_alert *a);

/** Glob match ('*' any run, '?' one char), ignoring ASCII case. */
bool contain_glob_match(const char *glob, const char *text);

#endif
