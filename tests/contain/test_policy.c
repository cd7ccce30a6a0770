/* Unit tests of the containment policy and the flood/scan detector: the
 * parser (good files and every error with its line), evaluation order, the
 * default policy's decisions for typical flows, and detection driven by
 * synthetic timestamps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detect.h"
#include "mamori/base.h"
#include "policy.h"

static contain_policy *parse_ok(const char *text)
{
	contain_policy *p = NULL;
	int rc = contain_policy_parse(&p, "t.policy", text, strlen(text));
	if (rc != MAMORI_OK)
		fail_msg("parse failed: %s", mamori_error_detail());
	return p;
}

static contain_flow flow_to(const char *proto, const char *dst, uint16_t port, const contain_meta *meta,
			    size_t n_meta)
{
	contain_flow f;
	memset(&f, 0, sizeof(f));
	f.proto = proto;
	f.meta = meta;
	f.n_meta = n_meta;
	assert_int_equal(contain_addr_parse(&f.dst, dst), MAMORI_OK);
	f.dst_port = port;
	f.transport = strcmp(proto, "dns") == 0 ? CONTAIN_TRANSPORT_UDP : CONTAIN_TRANSPORT_TCP;
	return f;
}

static void test_parse_good(void **state)
{
	(void)state;
	const char *text =
		"# a comment line\n"
		"\n"
		"forward proto=irc\r\n"
		"  forward proto=http,tls host=*.example max-hosts=3   # trailing comment\n"
		"reflect proto=smtp to=smtp-sink\n"
		"drop flood conn-rate>50/s\n"
		"drop scan distinct-dst>20/10s distinct-port>5/2s\n"
		"limit proto=http bytes=10M rate=100K/s transport=tcp port=80-8080 dst=203.0.113.0/24\n"
		"dns host=c2.example answer=203.0.113.9\n"
		"dns host=*.bad nxdomain\n"
		"dns sinkhole=198.51.100.1 ttl=30\n"
		"reflect * to=sink";
	contain_policy *p = parse_ok(text);
	assert_int_equal(contain_policy_rule_count(p), 7);
	const contain_rule *r = contain_policy_rule(p, 1);
	assert_int_equal(r->line, 4);
	assert_int_equal(r->action, CONTAIN_VERDICT_FORWARD);
	assert_int_equal(r->n_protos, 2);
	assert_string_equal(r->protos[1], "tls");
	assert_string_equal(r->host_glob, "*.example");
	assert_int_equal(r->max_hosts, 3);
	assert_string_equal(r->text, "forward proto=http,tls host=*.example max-hosts=3");
	r = contain_policy_rule(p, 4);
	assert_string_equal(r->label, "scan");
	assert_int_equal(r->n_conds, 2);
	assert_int_equal(r->conds[1].metric, CONTAIN_METRIC_DISTINCT_PORT);
	assert_int_equal(r->conds[1].count, 5);
	assert_true(r->conds[1].window == 2.0);
	r = contain_policy_rule(p, 5);
	assert_int_equal(r->action, CONTAIN_VERDICT_LIMIT);
	assert_int_equal(r->byte_budget, 10u << 20);
	assert_int_equal(r->byte_rate, 100u << 10);
	assert_int_equal(r->port_lo, 80);
	assert_int_equal(r->port_hi, 8080);
	assert_int_equal(r->dst_prefix, 24);
	assert_int_equal(r->transports, CONTAIN_TRANSPORT_TCP);
	r = contain_policy_rule(p, 6);
	assert_int_equal(r->line, 12);
	assert_string_equal(r->service, "sink");
	const contain_dns_config *dns = contain_policy_dns(p);
	assert_int_equal(dns->n_rules, 2);
	assert_int_equal(dns->ttl, 30);
	assert_int_equal(dns->sinkhole[3], 1);
	assert_true(dns->rules[1].nxdomain);
	assert_int_equal(dns->rules[0].addr[3], 9);
	contain_policy_free(p);

	/* The examples of the brief, as written there. */
	p = parse_ok("forward proto=irc\n"
		     "forward proto=http host=*.example max-hosts=3\n"
		     "reflect proto=smtp to=smtp-sink\n"
		     "drop flood conn-rate>50/s\n"
		     "drop scan distinct-dst>20/10s\n"
		     "limit proto=http bytes=10M rate=100/s\n"
		     "reflect * to=sink\n");
	assert_int_equal(contain_policy_rule_count(p), 7);
	assert_int_equal(contain_policy_rule(p, 5)->byte_rate, 100);
	contain_policy_free(p);

	/* An empty policy is valid: everything goes to the implicit sink. */
	p = parse_ok("");
	assert_int_equal(contain_policy_rule_count(p), 0);
	contain_policy_free(p);
}

static void test_parse_errors(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		const char *detail; /* expected prefix after "t.policy:" */
	} cases[] = {
		{ "forward proto=irc\nallow proto=http\n", "2: unknown action 'allow'" },
		{ "\n\nforward colour=red\n", "3: unknown option 'colour'" },
		{ "forward proto=irc proto=http\n", "1: proto= given twice" },
		{ "forward proto=IRC\n", "1: bad protocol name 'IRC'" },
		{ "forward proto=\n", "1: proto= needs a value" },
		{ "forward bogus\n", "1: unknown word 'bogus'" },
		{ "reflect proto=smtp\n", "1: reflect needs to=SERVICE" },
		{ "reflect proto=smtp to=mailhog\n", "1: unknown service 'mailhog'" },
		{ "forward proto=smtp to=sink\n", "1: to= belongs to reflect rules only" },
		{ "drop bytes=10M\n", "1: bytes= belongs to limit rules only" },
		{ "limit proto=http\n", "1: limit needs bytes=SIZE" },
		{ "limit proto=http bytes=10X\n", "1: bad byte budget '10X'" },
		{ "limit proto=http rate=100\n", "1: bad rate '100'" },
		{ "limit proto=http bytes=99999999999999999999\n", "1: bad byte budget" },
		{ "drop flood\n", "1: 'flood' needs a condition" },
		{ "drop flood scan conn-rate>1/s\n", "1: more than one of flood/scan" },
		{ "drop flood conn-speed>50/s\n", "1: unknown measure 'conn-speed'" },
		{ "drop flood conn-rate>50\n", "1: bad condition 'conn-rate>50'" },
		{ "drop flood conn-rate>50/m\n", "1: bad condition" },
		{ "drop scan distinct-dst>20/60s\n", "1: window of 60s" },
		{ "forward port=0\n", "1: bad port '0'" },
		{ "forward port=90-80\n", "1: bad port '90-80'" },
		{ "forward port=70000\n", "1: bad port" },
		{ "forward dst=203.0.113.0/33\n", "1: bad prefix length" },
		{ "forward dst=example.com\n", "1: bad address" },
		{ "forward transport=sctp\n", "1: unknown transport 'sctp'" },
		{ "forward max-hosts=0\n", "1: bad max-hosts '0'" },
		{ "forward host=a/b\n", "1: bad host pattern 'a/b'" },
		{ "dns host=x.example\n", "1: dns host= needs exactly one of answer=ADDR and nxdomain" },
		{ "dns host=x.example answer=::1\n", "1: dns answer must be an IPv4 address" },
		{ "dns sinkhole=1.2.3\n", "1: dns sinkhole must be an IPv4 address" },
		{ "dns colour=red\n", "1: unknown dns option 'colour=red'" },
		{ "dns ttl=99999999\n", "1: bad ttl" },
		{ "forward proto=irc\nforward proto=\xc3\xa9\n", "2: control or non-ASCII byte 0xc3" },
		{ "drop flood conn-rate>1/s conn-rate>1/s pkt-rate>1/s pkt-rate>1/s distinct-dst>1/s\n",
		  "1: more than 4 conditions" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		contain_policy *p = (contain_policy *)1;
		int rc = contain_policy_parse(&p, "t.policy", cases[i].text, strlen(cases[i].text));
		if (rc != MAMORI_EFORMAT)
			fail_msg("case %zu (%s) gave %d", i, cases[i].text, rc);
		assert_null(p);
		char want[256];
		snprintf(want, sizeof(want), "t.policy:%s", cases[i].detail);
		if (strncmp(mamori_error_detail(), want, strlen(want)) != 0)
			fail_msg("case %zu: got '%s', want '%s'", i, mamori_error_detail(), want);
	}

	/* A NUL byte and an over-long line, with their line numbers. */
	const char nul[] = "forward proto=irc\nforward\0proto=http\n";
	contain_policy *p = NULL;
	assert_int_equal(contain_policy_parse(&p, "t.policy", nul, sizeof(nul) - 1), MAMORI_EFORMAT);
	assert_string_equal(mamori_error_detail(), "t.policy:2: NUL byte in the line");
	char *longline = malloc(3000);
	memset(longline, 'a', 2999);
	memcpy(longline, "\n\n\nforward host=", 16);
	longline[2999] = '\0';
	assert_int_equal(contain_policy_parse(&p, "t.policy", longline, 2999), MAMORI_EFORMAT);
	assert_string_equal(mamori_error_detail(), "t.policy:4: line longer than 1024 bytes");
	free(longline);

	/* Too many rules is a limit, still with its line. */
	size_t big = (CONTAIN_POLICY_MAX_RULES + 1) * 16;
	char *many = malloc(big + 1);
	size_t pos = 0;
	for (int i = 0; i <= CONTAIN_POLICY_MAX_RULES; i++)
		pos += (size_t)snprintf(many + pos, big + 1 - pos, "drop port=1\n");
	assert_int_equal(contain_policy_parse(&p, "t.policy", many, pos), MAMORI_ELIMIT);
	assert_string_equal(mamori_error_detail(), "t.policy:257: more than 256 rules");
	free(many);

	assert_int_equal(contain_policy_load(&p, "/nonexistent/x.policy"), MAMORI_EIO);
}

static void test_eval_order(void **state)
{
	(void)state;
	contain_policy *p = parse_ok("drop proto=http host=*.evil.example\n"
				     "limit proto=http port=8080 bytes=1K\n"
				     "forward proto=http,irc\n"
				     "reflect proto=http to=http\n"
				     "drop dst=203.0.113.0/24\n");
	contain_verdict v;
	contain_meta evil[] = { { "method", "GET" }, { "host", "CDN.Evil.Example" } };
	contain_flow f = flow_to("http", "198.51.100.4", 80, evil, 2);
	contain_policy_eval(&v, p, &f, NULL, 0);
	assert_int_equal(v.kind, CONTAIN_VERDICT_DROP);
	assert_int_equal(v.rule->line, 1);

	contain_meta good[] = { { "host", "www.example" } };
	f = flow_to("http", "198.51.100.4", 8080, good, 1);
	contain_policy_eval(&v, p, &f, NULL, 0);
	assert_int_equal(v.kind, CONTAIN_VERDICT_LIMIT);
	assert_int_equal(v.byte_budget, 1024);
	assert_int_equal(v.rule->line, 2);

	f = flow_to("irc", "203.0.113.7", 6667, NULL, 0);
	contain_policy_eval(&v, p, &f, NULL, 0);
	assert_int_equal(v.kind, CONTAIN_VERDICT_FORWARD); /* line 3 before line 5 */
	assert_int_equal(v.rule->line, 3);

	f = flow_to("ftp", "203.0.113.7", 21, NULL, 0);
	contain_policy_eval(&v, p, &f, NULL, 0);
	assert_int_equal(v.kind, CONTAIN_VERDICT_DROP);
	assert_int_equal(v.rule->line, 5);
	assert_string_equal(v.reason, "line 5: drop dst=203.0.113.0/24");

	f = flow_to("ftp", "198.51.100.7", 21, NULL, 0);
	contain_policy_eval(&v, p, &f, NULL, 0);
	assert_int_equal(v.kind, CONTAIN_VERDICT_REFLECT); /* implicit last rule */
	assert_string_equal(v.service, "sink");
	assert_int_equal(v.rule->line, 0);
	contain_policy_free(p);
}

static void test_default_policy(void **state)
{
	(void)state;
	contain_policy *p = NULL;
	assert_int_equal(contain_policy_default(&p), MAMORI_OK);
	contain_detect *d = NULL;
	assert_int_equal(contain_detect_new(&d, 0, 0), MAMORI_OK);
	contain_verdict v;
	double t = 1000.0;

	/* IRC to the C&C is forwarded. */
	contain_meta irc[] = { { "nick", "bot123" }, { "channel", "#cc" } };
	contain_flow f = flow_to("irc", "203.0.113.10", 6667, irc, 2);
	contain_detect_conn(d, t, &f.dst, f.dst_port, f.transport);
	contain_policy_eval(&v, p, &f, d, t);
	assert_int_equal(v.kind, CONTAIN_VERDICT_FORWARD);

	/* DNS to resolve it, too. */
	contain_meta q[] = { { "qname", "cc.example" } };
	f = flow_to("dns", "203.0.113.53", 53, q, 1);
	contain_detect_conn(d, t, &f.dst, f.dst_port, f.transport);
	contain_policy_eval(&v, p, &f, d, t);
	assert_int_equal(v.kind, CONTAIN_VERDICT_FORWARD);

	/* Spam is reflected to the SMTP sink. */
	contain_meta smtp[] = { { "helo", "x" }, { "mail_from", "a@b.example" } };
	f = flow_to("smtp", "198.51.100.25", 25, smtp, 2);
	contain_detect_conn(d, t, &f.dst, f.dst_port, f.transport);
	contain_policy_eval(&v, p, &f, d, t);
	assert_int_equal(v.kind, CONTAIN_VERDICT_REFLECT);
	assert_string_equal(v.service, "smtp-sink");

	/* HTTP polling of a few hosts goes through within a byte budget; the
	 * sixth distinct host gets the fake web server. A host seen before
	 * keeps its verdict. */
	const char *hosts[] = {
		"a.example", "b.example", "c.example", "d.example", "e.example", "f.example"
	};
	for (size_t i = 0; i < 6; i++) {
		contain_meta h[] = { { "host", hosts[i] } };
		f = flow_to("http", "198.51.100.80", 80, h, 1);
		t += 0.5;
		contain_detect_conn(d, t, &f.dst, f.dst_port, f.transport);
		contain_policy_eval(&v, p, &f, d, t);
		if (i < 5) {
			assert_int_equal(v.kind, CONTAIN_VERDICT_LIMIT);
			assert_int_equal(v.byte_budget, 64u << 20);
		} else {
			assert_int_equal(v.kind, CONTAIN_VERDICT_REFLECT);
			assert_string_equal(v.service, "http");
		}
	}
	contain_meta again[] = { { "host", "A.example" } };
	f = flow_to("http", "198.51.100.80", 80, again, 1);
	contain_policy_eval(&v, p, &f, d, t);
	assert_int_equal(v.kind, CONTAIN_VERDICT_LIMIT);

	/* Unknown protocols get the generic sink. */
	f = flow_to("unknown", "198.51.100.99", 4444, NULL, 0);
	contain_detect_conn(d, t, &f.dst, f.dst_port, f.transport);
	contain_policy_eval(&v, p, &f, d, t);
	assert_int_equal(v.kind, CONTAIN_VERDICT_REFLECT);
	assert_string_equal(v.service, "sink");

	/* A SYN flood on one host: the 51st connection within a second is
	 * dropped, and the reason names the target and the rate. */
	t = 2000.0;
	f = flow_to("unknown", "203.0.113.66", 80, NULL, 0);
	for (int i = 1; i <= 60; i++) {
		double ti = t + i * 0.01;
		contain_detect_conn(d, ti, &f.dst, f.dst_port, f.transport);
		contain_policy_eval(&v, p, &f, d, ti);
		if (i <= 50)
			assert_int_equal(v.kind, CONTAIN_VERDICT_REFLECT);
		else
			assert_int_equal(v.kind, CONTAIN_VERDICT_DROP);
	}
	assert_string_equal(v.rule->label, "flood");
	assert_string_equal(v.reason, "flood: conn-rate 60 in 1s > 50 to 203.0.113.66");
	json_t *ev = contain_verdict_json(&v);
	char *evs = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER);
	assert_string_equal(
		evs, "{\"verdict\":\"drop\",\"rule\":{\"line\":7,\"text\":\"drop flood conn-rate>50/s\"},"
		     "\"reason\":\"flood: conn-rate 60 in 1s > 50 to 203.0.113.66\"}");
	free(evs);
	json_decref(ev);
	/* The IRC C&C on another host is unaffected by the flood. */
	f = flow_to("irc", "203.0.113.10", 6667, irc, 2);
	contain_policy_eval(&v, p, &f, d, t + 0.7);
	assert_int_equal(v.kind, CONTAIN_VERDICT_FORWARD);

	/* A scan of a range, slowly (no flood): from the 21st distinct host
	 * within 10 s on, connections are dropped. */
	t = 3000.0;
	char ip[32];
	for (int i = 1; i <= 30; i++) {
		snprintf(ip, sizeof(ip), "198.51.100.%d", 100 + i);
		f = flow_to("unknown", ip, 445, NULL, 0);
		double ti = t + i * 0.2;
		contain_detect_conn(d, ti, &f.dst, f.dst_port, f.transport);
		contain_policy_eval(&v, p, &f, d, ti);
		assert_int_equal(v.kind, i <= 20 ? CONTAIN_VERDICT_REFLECT : CONTAIN_VERDICT_DROP);
	}
	assert_string_equal(v.rule->label, "scan");
	assert_string_equal(v.reason, "scan: distinct-dst 30 in 10s > 20");
	/* Ten seconds after the scan stopped, the window has emptied. */
	f = flow_to("irc", "203.0.113.10", 6667, irc, 2);
	contain_detect_conn(d, t + 17, &f.dst, f.dst_port, f.transport);
	contain_policy_eval(&v, p, &f, d, t + 17);
	assert_int_equal(v.kind, CONTAIN_VERDICT_FORWARD);

	contain_detect_free(d);
	contain_policy_free(p);
}

/* The compiled-in default policy is exactly data/contain/default.policy. */
static void test_default_file(void **state)
{
	(void)state;
	const char *root = getenv("MAMORI_SOURCE_ROOT");
	char path[1024];
	snprintf(path, sizeof(path), "%s/data/contain/default.policy", root ? root : "../..");
	uint8_t *data = NULL;
	size_t len = 0;
	assert_int_equal(mamori_file_read(&data, &len, path, 1 << 20), MAMORI_OK);
	const char *text = contain_policy_default_text();
	assert_int_equal(len, strlen(text));
	assert_memory_equal(data, text, len);
	free(data);
	contain_policy *p = NULL;
	assert_int_equal(contain_policy_load(&p, path), MAMORI_OK);
	assert_true(contain_policy_rule_count(p) >= 8);
	contain_policy_free(p);
}

static void test_glob(void **state)
{
	(void)state;
	assert_string_equal(contain_fake_service_for("smtp"), "smtp-sink");
	assert_string_equal(contain_fake_service_for("irc"), "irc");
	assert_string_equal(contain_fake_service_for("tls"), "sink");
	assert_string_equal(contain_fake_service_for(NULL), "sink");
	assert_true(contain_glob_match("*.example", "a.b.EXAMPLE"));
	assert_false(contain_glob_match("*.example", "example"));
	assert_true(contain_glob_match("c?.example", "c2.example"));
	assert_true(contain_glob_match("*", ""));
	assert_false(contain_glob_match(
		"a*b*c*d*e*f", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
}

static void test_detect_rates(void **state)
{
	(void)state;
	contain_detect *d = NULL;
	assert_int_equal(contain_detect_new(&d, 0, 0), MAMORI_OK);
	contain_addr a, b;
	contain_addr_parse(&a, "203.0.113.5");
	contain_addr_parse(&b, "2001:db8::1");
	/* 100 connections to a over [10.0, 10.99], 3 packets each; 5 to b. */
	for (int i = 0; i < 100; i++) {
		double t = 10.0 + i * 0.01;
		contain_detect_conn(d, t, &a, 80, CONTAIN_TRANSPORT_TCP);
		contain_detect_packet(d, t, &a, 80, CONTAIN_TRANSPORT_TCP);
		contain_detect_packet(d, t, &a, 80, CONTAIN_TRANSPORT_TCP);
	}
	for (int i = 0; i < 5; i++)
		contain_detect_conn(d, 10.5, &b, (uint16_t)(1000 + i), CONTAIN_TRANSPORT_UDP);
	assert_int_equal(contain_detect_count(d, 10.99, CONTAIN_METRIC_CONN_RATE, &a, 1), 100);
	assert_int_equal(contain_detect_count(d, 10.99, CONTAIN_METRIC_PKT_RATE, &a, 1), 300);
	assert_int_equal(contain_detect_count(d, 10.99, CONTAIN_METRIC_CONN_RATE, &a, 0.5), 50);
	assert_int_equal(contain_detect_count(d, 10.99, CONTAIN_METRIC_TOTAL_CONN_RATE, NULL, 1), 105);
	assert_int_equal(contain_detect_count(d, 10.99, CONTAIN_METRIC_DISTINCT_DST, NULL, 1), 2);
	assert_int_equal(contain_detect_count(d, 10.99, CONTAIN_METRIC_DISTINCT_PORT, &b, 1), 5);
	assert_int_equal(contain_detect_count(d, 10.99, CONTAIN_METRIC_DISTINCT_PORT, &a, 1), 1);
	/* Half a second later half the connections have slid out. */
	assert_int_equal(contain_detect_count(d, 11.49, CONTAIN_METRIC_CONN_RATE, &a, 1), 50);
	/* Long after, nothing is left, even though the ring slots were reused. */
	assert_int_equal(contain_detect_count(d, 30.0, CONTAIN_METRIC_CONN_RATE, &a, 10), 0);
	assert_int_equal(contain_detect_count(d, 30.0, CONTAIN_METRIC_DISTINCT_DST, NULL, 10), 0);
	contain_detect_conn(d, 30.0, &a, 80, CONTAIN_TRANSPORT_TCP);
	assert_int_equal(contain_detect_count(d, 30.0, CONTAIN_METRIC_CONN_RATE, &a, 10), 1);

	/* Alerts: a flood on a, with its rate. */
	for (int i = 0; i < 80; i++)
		contain_detect_conn(d, 40.0 + i * 0.01, &a, 80, CONTAIN_TRANSPORT_TCP);
	contain_detect_limits lim;
	contain_detect_limits_default(&lim);
	contain_alert al[8];
	size_t n = 0;
	contain_detect_check(d, 40.8, &lim, al, 8, &n);
	assert_int_equal(n, 1);
	assert_int_equal(al[0].kind, CONTAIN_ALERT_FLOOD);
	assert_int_equal(al[0].metric, CONTAIN_METRIC_CONN_RATE);
	assert_true(al[0].has_target && contain_addr_equal(&al[0].target, &a));
	assert_int_equal(al[0].count, 80);
	assert_true(al[0].rate == 80.0);
	json_t *aj = contain_alert_json(&al[0]);
	char *ajs = json_dumps(aj, JSON_COMPACT | JSON_PRESERVE_ORDER);
	assert_string_equal(ajs, "{\"kind\":\"flood\",\"measure\":\"conn-rate\",\"target\":\"203.0.113.5\","
				 "\"count\":80,\"window\":1.0,\"rate\":80.0}");
	free(ajs);
	json_decref(aj);
	contain_detect_check(d, 42.0, &lim, al, 8, &n);
	assert_int_equal(n, 0);
	contain_detect_free(d);
}

/* Tables far smaller than the scan: distinct counts stay at or above the
 * truth, the flood target survives eviction, memory stays capped. */
static void test_detect_bounded(void **state)
{
	(void)state;
	contain_detect *d = NULL;
	assert_int_equal(contain_detect_new(&d, 16, 32), MAMORI_OK);
	contain_addr target, x;
	contain_addr_parse(&target, "203.0.113.1");
	double t = 100.0;
	for (int i = 0; i < 2000; i++) {
		t += 0.004; /* 2000 hosts in 8 s, interleaved with a flood */
		x.family = 4;
		x.bytes[0] = 10;
		x.bytes[1] = (uint8_t)(i >> 16);
		x.bytes[2] = (uint8_t)(i >> 8);
		x.bytes[3] = (uint8_t)i;
		contain_detect_conn(d, t, &x, 445, CONTAIN_TRANSPORT_TCP);
		contain_detect_conn(d, t, &target, (uint16_t)(1 + i % 1000), CONTAIN_TRANSPORT_UDP);
	}
	uint64_t distinct = contain_detect_count(d, t, CONTAIN_METRIC_DISTINCT_DST, NULL, 10);
	assert_true(distinct >= 2001);
	assert_true(contain_detect_count(d, t, CONTAIN_METRIC_DISTINCT_PORT, &target, 10) >= 1000);
	/* 250/s; the window is counted in 100 ms buckets, so the current,
	 * partly filled bucket may hold fewer. */
	uint64_t rate = contain_detect_count(d, t, CONTAIN_METRIC_CONN_RATE, &target, 1);
	assert_true(rate >= 225 && rate <= 250);
	contain_detect_limits lim;
	contain_detect_limits_default(&lim);
	contain_alert al[4];
	size_t n = 0;
	contain_detect_check(d, t, &lim, al, 4, &n);
	bool flood = false, port_scan = false, host_scan = false;
	for (size_t i = 0; i < n; i++) {
		flood |= al[i].kind == CONTAIN_ALERT_FLOOD && contain_addr_equal(&al[i].target, &target);
		port_scan |= al[i].metric == CONTAIN_METRIC_DISTINCT_PORT;
		host_scan |= al[i].metric == CONTAIN_METRIC_DISTINCT_DST && !al[i].has_target;
	}
	assert_true(flood && port_scan && host_scan);

	/* Names: ranks by first sight, per scope, case-insensitive, capped. */
	assert_int_equal(contain_detect_name_rank(d, "http", "a.example"), 1);
	assert_int_equal(contain_detect_name_rank(d, "http", "b.example"), 2);
	assert_int_equal(contain_detect_name_rank(d, "irc", "b.example"), 1);
	assert_int_equal(contain_detect_name_rank(d, "http", "A.EXAMPLE"), 1);
	char name[32];
	uint32_t last = 0;
	for (int i = 0; i < 2000; i++) {
		snprintf(name, sizeof(name), "h%d.example", i);
		last = contain_detect_name_rank(d, "many", name);
	}
	assert_int_equal(last, UINT32_MAX);
	contain_detect_free(d);
}

/* Mutated policies: every outcome is a policy or a line-numbered error, never
 * a crash (run under ASan/valgrind to mean something). */
static void test_parse_garbage(void **state)
{
	(void)state;
	const char *base = contain_policy_default_text();
	size_t len = strlen(base);
	char *buf = malloc(len + 1);
	uint32_t seed = 12345;
	for (int round = 0; round < 3000; round++) {
		memcpy(buf, base, len + 1);
		for (int k = 0; k < 1 + round % 8; k++) {
			seed = seed * 1103515245u + 12345u;
			size_t at = (seed >> 8) % len;
			seed = seed * 1103515245u + 12345u;
			buf[at] = (char)(seed >> 16);
		}
		contain_policy *p = NULL;
		int rc = contain_policy_parse(&p, "t.policy", buf, len);
		if (rc == MAMORI_OK) {
			assert_non_null(p);
			contain_policy_free(p);
		} else {
			assert_true(rc == MAMORI_EFORMAT || rc == MAMORI_ELIMIT);
			assert_null(p);
			assert_true(strncmp(mamori_error_detail(), "t.policy:", 9) == 0);
		}
	}
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_good),    cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_eval_order),    cmocka_unit_test(test_default_policy),
		cmocka_unit_test(test_default_file),  cmocka_unit_test(test_glob),
		cmocka_unit_test(test_detect_rates),  cmocka_unit_test(test_detect_bounded),
		cmocka_unit_test(test_parse_garbage),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
