/*
 * Tests of the session report (src/contain/report.c): a bot-like session
 * is written through the real event log (mamori_eventlog, the same path
 * the gateway uses) and the report must name the C&C (IRC server, nick,
 * channel; the HTTP host with its URI pattern and polling interval), the
 * download with its hash, the spam (sender, recipients, subject), the
 * flood target and the scan; hostile strings must come out escaped in an
 * SVG that xmllint accepts; broken lines are skipped, not fatal.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "mamori/base.h"
#include "mamori/contain.h"

static char tmpdir[256], events[512];

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/mamori-test-report-XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	snprintf(events, sizeof(events), "%s/events.jsonl", tmpdir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[600];
	if (getenv("MAMORI_TEST_KEEP")) { /* to look at report.svg */
		fprintf(stderr, "kept %s\n", tmpdir);
		return 0;
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static void emit(mamori_eventlog *log, const char *type, json_t *body)
{
	int rc = mamori_event_emit(log, type, body);
	if (rc != MAMORI_OK)
		print_error("%s: %s\n", type, mamori_error_detail());
	assert_int_equal(rc, MAMORI_OK);
	json_decref(body);
}

static void flow(mamori_eventlog *log, int id, const char *dst, int dport, const char *proto,
		 const char *verdict)
{
	emit(log, "flow_start",
	     json_pack("{s:i, s:s, s:s, s:i, s:s, s:i, s:s, s:s, s:s}", "flow", id, "transport", "tcp", "src",
		       "10.66.0.2", "sport", 40000 + id, "dst", dst, "dport", dport, "proto", proto,
		       "verdict", verdict, "rule", "test"));
}

static void flow_end(mamori_eventlog *log, int id)
{
	emit(log, "flow_end",
	     json_pack("{s:i, s:i, s:i, s:i}", "flow", id, "bytes_up", 100, "bytes_down", 2000, "duration_ms",
		       5));
}

/* A bot: resolves its C&C, joins IRC, polls an HTTP panel, downloads,
 * spams, floods and scans. Nick and subject carry markup. */
static void write_session(void)
{
	mamori_eventlog *log = NULL;
	assert_int_equal(mamori_eventlog_open(&log, NULL, events, "contain", "s-test"), MAMORI_OK);
	emit(log, "dns",
	     json_pack("{s:s, s:s, s:[s], s:b}", "qname", "cc.bot.example", "qtype", "A", "answers",
		       "198.51.100.10", "sinkholed", 0));
	flow(log, 1, "198.51.100.10", 6667, "irc", "forward");
	emit(log, "irc", json_pack("{s:i, s:s, s:s}", "flow", 1, "command", "NICK", "nick", "bot<script>"));
	emit(log, "irc", json_pack("{s:i, s:s, s:s}", "flow", 1, "command", "USER", "user", "botuser"));
	emit(log, "irc", json_pack("{s:i, s:s, s:s}", "flow", 1, "command", "JOIN", "channel", "#botnet"));
	emit(log, "irc",
	     json_pack("{s:i, s:s, s:s, s:s}", "flow", 1, "command", "PRIVMSG", "target", "#botnet", "text",
		       "!download http://203.0.113.5/payload.bin"));
	for (int i = 0; i < 5; i++) {
		char uri[64];
		snprintf(uri, sizeof(uri), "/gate.php?id=%d&t=%d", 1000 + i, 77 * i);
		flow(log, 10 + i, "203.0.113.5", 80, "http", "forward");
		emit(log, "http",
		     json_pack("{s:i, s:s, s:s, s:s, s:s}", "flow", 10 + i, "method", "GET", "host",
			       "panel.example", "uri", uri, "user_agent", "Bot/1.0"));
		flow_end(log, 10 + i);
		usleep(20000);
	}
	emit(log, "download",
	     json_pack("{s:i, s:s, s:s, s:i, s:b}", "flow", 14, "url", "http://203.0.113.5/payload.bin",
		       "sha256", "5b1a1e2f0e8a9c3d4b5a6978c0d1e2f3a4b5c6d7e8f90123456789abcdef0123", "size",
		       4096, "stored", 1));
	flow(log, 20, "203.0.113.25", 25, "smtp", "reflect");
	emit(log, "smtp",
	     json_pack("{s:i, s:s, s:[s,s,s], s:s, s:i}", "flow", 20, "from", "spammer@bot.example", "rcpt",
		       "a@victim.example", "b@victim.example", "c@victim.example", "mail_subject",
		       "Cheap & <b>bold</b>", "bytes", 512));
	flow_end(log, 20);
	for (int i = 0; i < 30; i++)
		flow(log, 100 + i, "203.0.113.99", 80, "unknown", "drop");
	emit(log, "detect",
	     json_pack("{s:s, s:[s], s:f, s:i, s:i, s:s, s:s}", "kind", "flood", "targets", "203.0.113.99:80",
		       "rate", 512.5, "count", 30, "window_ms", 1000, "verdict", "drop", "measure",
		       "pkt-rate"));
	emit(log, "detect",
	     json_pack("{s:s, s:[s,s,s], s:f, s:i, s:i, s:s}", "kind", "scan", "targets", "198.51.100.1:22",
		       "198.51.100.2:22", "198.51.100.3:22", "rate", 60.0, "count", 20, "window_ms", 10000,
		       "verdict", "drop"));
	/* A range scan fires once per new host: one scan in the report. */
	for (int i = 0; i < 3; i++) {
		char host[32];
		snprintf(host, sizeof host, "203.0.113.%d", 120 + i);
		emit(log, "detect",
		     json_pack("{s:s, s:[s], s:f, s:i, s:i, s:s, s:s}", "kind", "scan", "targets", host,
			       "rate", 2.1 + i, "count", 21 + i, "window_ms", 10000, "verdict", "drop",
			       "measure", "distinct-dst"));
	}
	mamori_eventlog_free(log);
}

static json_t *find(json_t *arr, const char *key, const char *value)
{
	size_t i;
	json_t *v;
	json_array_foreach(arr, i, v)
	{
		const char *s = json_string_value(json_object_get(v, key));
		if (s && !strcmp(s, value))
			return v;
	}
	return NULL;
}

static bool array_has(json_t *arr, const char *value)
{
	size_t i;
	json_t *v;
	json_array_foreach(arr, i,
			   v) if (json_is_string(v) && !strcmp(json_string_value(v), value)) return true;
	return false;
}

static void test_features(void **state)
{
	(void)state;
	write_session();
	mamori_contain_report *r = NULL;
	assert_int_equal(mamori_contain_report_load(&r, events), MAMORI_OK);
	json_t *j = mamori_contain_report_json(r);
	assert_string_equal(json_string_value(json_object_get(j, "session")), "s-test");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "flows"), "total")),
			 1 + 5 + 1 + 30);
	json_t *by = json_object_get(json_object_get(j, "flows"), "by_verdict");
	assert_int_equal(json_integer_value(json_object_get(by, "drop")), 30);
	assert_int_equal(json_integer_value(json_object_get(by, "reflect")), 1);

	json_t *cnc = json_object_get(j, "cnc");
	json_t *irc = find(cnc, "protocol", "irc");
	assert_non_null(irc);
	assert_string_equal(json_string_value(json_object_get(irc, "server")), "198.51.100.10:6667");
	assert_true(array_has(json_object_get(irc, "nicks"), "bot<script>"));
	assert_true(array_has(json_object_get(irc, "channels"), "#botnet"));
	assert_true(array_has(json_object_get(irc, "users"), "botuser"));
	assert_int_equal(json_integer_value(json_object_get(irc, "privmsg")), 1);
	json_t *http = find(cnc, "protocol", "http");
	assert_non_null(http);
	assert_string_equal(json_string_value(json_object_get(http, "host")), "panel.example");
	assert_int_equal(json_integer_value(json_object_get(http, "requests")), 5);
	/* Five URIs with changing ids are one pattern. */
	assert_int_equal(json_array_size(json_object_get(http, "uri_patterns")), 1);
	assert_string_equal(json_string_value(json_array_get(json_object_get(http, "uri_patterns"), 0)),
			    "/gate.php?id={n}&t={n}");
	double gap = json_real_value(json_object_get(http, "polling_interval_s"));
	assert_true(gap > 0.01 && gap < 1.0);

	json_t *dl = json_array_get(json_object_get(j, "downloads"), 0);
	assert_string_equal(json_string_value(json_object_get(dl, "url")), "http://203.0.113.5/payload.bin");
	assert_int_equal(strlen(json_string_value(json_object_get(dl, "sha256"))), 64);

	json_t *spam = json_object_get(j, "spam");
	assert_int_equal(json_integer_value(json_object_get(spam, "messages")), 1);
	assert_int_equal(json_integer_value(json_object_get(spam, "recipients_total")), 3);
	assert_int_equal(json_integer_value(json_object_get(spam, "recipients_distinct")), 3);
	assert_true(array_has(json_object_get(spam, "senders"), "spammer@bot.example"));

	json_t *flood = json_array_get(json_object_get(j, "floods"), 0);
	assert_non_null(flood);
	assert_true(array_has(json_object_get(flood, "targets"), "203.0.113.99:80"));
	assert_true(json_real_value(json_object_get(flood, "rate")) > 500);
	assert_string_equal(json_string_value(json_object_get(flood, "measure")), "pkt-rate");
	assert_int_equal(json_integer_value(json_object_get(flood, "window_ms")), 1000);
	assert_int_equal(json_array_size(json_object_get(j, "scans")), 2);
	json_t *range = json_array_get(json_object_get(j, "scans"), 1);
	assert_string_equal(json_string_value(json_object_get(range, "measure")), "distinct-dst");
	assert_int_equal(json_array_size(json_object_get(range, "targets")), 3);
	assert_int_equal(json_integer_value(json_object_get(range, "count")), 23);

	/* Destinations: most flows first, named from the DNS answers. */
	json_t *dests = json_object_get(j, "destinations");
	assert_string_equal(json_string_value(json_object_get(json_array_get(dests, 0), "addr")),
			    "203.0.113.99");
	json_t *cc = find(dests, "addr", "198.51.100.10");
	assert_string_equal(json_string_value(json_object_get(cc, "name")), "cc.bot.example");
	json_decref(j);

	/* The SVG parses as XML, and the markup the sample sent is text. */
	char svg[600], cmd[700];
	snprintf(svg, sizeof(svg), "%s/report.svg", tmpdir);
	FILE *f = fopen(svg, "w");
	assert_non_null(f);
	assert_int_equal(mamori_contain_report_svg(r, f), MAMORI_OK);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "xmllint --noout '%s'", svg);
	assert_int_equal(system(cmd), 0);
	char *text = NULL;
	size_t len = 0;
	assert_int_equal(mamori_file_read((uint8_t **)&text, &len, svg, 1 << 24), MAMORI_OK);
	text = realloc(text, len + 1);
	text[len] = '\0';
	assert_non_null(strstr(text, "cc.bot.example"));
	assert_non_null(strstr(text, "#d0342c")); /* a dropped flow drawn in red */
	assert_null(strstr(text, "<script>"));
	free(text);
	mamori_contain_report_free(r);
}

static void test_bad_lines_are_skipped(void **state)
{
	(void)state;
	char path[600];
	snprintf(path, sizeof(path), "%s/bad.jsonl", tmpdir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("not json\n[1,2]\n{\"type\":\"flow_start\"}\n"
	      "{\"time\":\"2026-11-26T10:00:00.5Z\",\"sensor\":\"contain\",\"subject\":\"s\",\"type\":\"flow_"
	      "start\","
	      "\"seq\":1,\"flow\":\"not-a-number\"}\n"
	      "{\"time\":\"2026-11-26T10:00:01Z\",\"sensor\":\"contain\",\"subject\":\"s\",\"type\":\"flow_"
	      "end\","
	      "\"seq\":2,\"flow\":42}\n",
	      f);
	fclose(f);
	mamori_contain_report *r = NULL;
	assert_int_equal(mamori_contain_report_load(&r, path), MAMORI_OK);
	json_t *j = mamori_contain_report_json(r);
	assert_int_equal(json_integer_value(json_object_get(j, "skipped")), 3);
	assert_int_equal(json_integer_value(json_object_get(j, "events")), 2);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "flows"), "total")), 0);
	json_decref(j);
	mamori_contain_report_free(r);
	assert_int_equal(mamori_contain_report_load(&r, "/nonexistent/events.jsonl"), MAMORI_EIO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_features),
		cmocka_unit_test(test_bad_lines_are_skipped),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
