/*
 * Tests of the protocol classifiers (src/contain/proto*.c) on bytes captured
 * from real tools (tests/contain/data, made by capture.py: swaks, curl,
 * openssl s_client/s_server, ngircd, dnsmasq) and on hand-made malformed,
 * truncated, oversized and confusable input. Every captured flow is fed
 * four ways (as captured, byte at a time, in random splits, and with each
 * direction's consecutive reads merged into one) and must give
 * the same events and metadata each time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "proto.h"

#ifndef PROTO_DATA_DIR
#error "PROTO_DATA_DIR must name tests/contain/data"
#endif

typedef struct record {
	proto_dir dir;
	const uint8_t *data;
	size_t len;
} record;

typedef struct flow_file {
	uint8_t *bytes;
	proto_transport transport;
	record rec[256];
	size_t n;
} flow_file;

static void load_flow(flow_file *ff, const char *name)
{
	char path[512];
	size_t size, pos = 1;
	snprintf(path, sizeof(path), "%s/%s", PROTO_DATA_DIR, name);
	assert_int_equal(mamori_file_read(&ff->bytes, &size, path, 1 << 20), MAMORI_OK);
	assert_true(size >= 1);
	ff->transport = ff->bytes[0] == 'U' ? PROTO_UDP : PROTO_TCP;
	ff->n = 0;
	while (pos < size) {
		assert_true(size - pos >= 5 && ff->n < 256);
		uint32_t len = (uint32_t)ff->bytes[pos + 1] << 24 | (uint32_t)ff->bytes[pos + 2] << 16 |
			       (uint32_t)ff->bytes[pos + 3] << 8 | ff->bytes[pos + 4];
		assert_true(len <= size - pos - 5);
		ff->rec[ff->n++] = (record){ ff->bytes[pos] == 'S' ? PROTO_TO_CLIENT : PROTO_TO_SERVER,
					     ff->bytes + pos + 5, len };
		pos += 5 + len;
	}
}

typedef enum { FEED_AS_CAPTURED, FEED_BYTES, FEED_RANDOM, FEED_MERGED } feed_mode;

/* FEED_MERGED: a TCP flow's consecutive reads in one direction as one read,
 * as a slower reader would see them. */
static void merge_records(const flow_file *in, flow_file *out)
{
	size_t total = 0;
	for (size_t i = 0; i < in->n; i++)
		total += in->rec[i].len;
	out->bytes = malloc(total ? total : 1);
	out->transport = in->transport;
	out->n = 0;
	size_t pos = 0;
	for (size_t i = 0; i < in->n; i++) {
		bool extend = in->transport == PROTO_TCP && out->n > 0 &&
			      out->rec[out->n - 1].dir == in->rec[i].dir;
		memcpy(out->bytes + pos, in->rec[i].data, in->rec[i].len);
		if (extend)
			out->rec[out->n - 1].len += in->rec[i].len;
		else
			out->rec[out->n++] = (record){ in->rec[i].dir, out->bytes + pos, in->rec[i].len };
		pos += in->rec[i].len;
	}
}

/* Feed a flow, collect all events, settle. The caller frees both. */
static proto_flow *run_flow(const flow_file *ff, feed_mode mode, json_t **out_events)
{
	proto_flow *f;
	json_t *all = json_array();
	unsigned seed = 12345;
	assert_int_equal(proto_flow_new(&f, ff->transport), MAMORI_OK);
	for (size_t i = 0; i < ff->n; i++) {
		const record *r = &ff->rec[i];
		size_t off = 0;
		while (off < r->len) {
			size_t n = r->len - off;
			if (ff->transport == PROTO_TCP && mode == FEED_BYTES)
				n = 1;
			if (ff->transport == PROTO_TCP && mode == FEED_RANDOM) {
				seed = seed * 1103515245u + 12345u;
				size_t k = 1 + (seed >> 16) % 37;
				n = k < n ? k : n;
			}
			assert_int_equal(proto_flow_feed(f, r->data + off, n, r->dir), MAMORI_OK);
			off += n;
			json_t *ev = proto_flow_take_events(f);
			json_array_extend(all, ev);
			json_decref(ev);
		}
	}
	assert_int_equal(proto_flow_settle(f), MAMORI_OK);
	json_t *ev = proto_flow_take_events(f);
	json_array_extend(all, ev);
	json_decref(ev);
	*out_events = all;
	return f;
}

/* Run a captured flow in every feeding mode; all must agree. Returns the
 * as-captured result. */
static proto_flow *run_all_modes(const char *name, json_t **out_events)
{
	flow_file ff;
	json_t *ev0;
	load_flow(&ff, name);
	proto_flow *f0 = run_flow(&ff, FEED_AS_CAPTURED, &ev0);
	flow_file merged;
	merge_records(&ff, &merged);
	for (int m = FEED_BYTES; m <= FEED_MERGED; m++) {
		json_t *ev;
		proto_flow *f = run_flow(m == FEED_MERGED ? &merged : &ff, (feed_mode)m, &ev);
		if (!json_equal(ev, ev0) || !json_equal(proto_flow_meta(f), proto_flow_meta(f0))) {
			char *a = json_dumps(ev0, JSON_SORT_KEYS), *b = json_dumps(ev, JSON_SORT_KEYS);
			char *c = json_dumps(proto_flow_meta(f0), JSON_SORT_KEYS);
			char *d = json_dumps(proto_flow_meta(f), JSON_SORT_KEYS);
			print_error("%s mode %d differs:\n%s\n%s\n%s\n%s\n", name, m, a, b, c, d);
			free(a);
			free(b);
			free(c);
			free(d);
			fail();
		}
		json_decref(ev);
		proto_flow_free(f);
	}
	free(ff.bytes);
	free(merged.bytes);
	*out_events = ev0;
	return f0;
}

/* The n-th event of `type`, or NULL. */
static json_t *event_of(json_t *events, const char *type, size_t nth)
{
	size_t i;
	json_t *e;
	json_array_foreach(events, i, e)
	{
		if (strcmp(json_string_value(json_object_get(e, "type")), type) == 0 && nth-- == 0)
			return e;
	}
	return NULL;
}

static const char *str_at(json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));
	return s ? s : "(missing)";
}

static json_int_t int_at(json_t *obj, const char *key)
{
	return json_integer_value(json_object_get(obj, key));
}

static bool list_has(json_t *obj, const char *key, const char *value)
{
	size_t i;
	json_t *v;
	json_array_foreach(json_object_get(obj, key), i, v)
	{
		if (json_is_string(v) && strcmp(json_string_value(v), value) == 0)
			return true;
	}
	return false;
}

static size_t count_events(json_t *events, const char *type)
{
	size_t n = 0;
	while (event_of(events, type, n))
		n++;
	return n;
}

/* ------------------------------------------------------------------ */

static void test_smtp_swaks(void **state)
{
	json_t *ev;
	(void)state;
	proto_flow *f = run_all_modes("smtp_swaks.flow", &ev);
	json_t *m = proto_flow_meta(f);
	assert_string_equal(proto_flow_proto(f), "smtp");
	assert_true(proto_flow_confidence(f) >= PROTO_CONFIDENT);
	assert_string_equal(str_at(m, "helo"), "bot.example.test");
	assert_true(list_has(m, "mail_from", "bot@198.51.100.5"));
	assert_int_equal(int_at(m, "rcpt_count"), 3);
	assert_true(list_has(m, "rcpt_to", "alice@203.0.113.10"));
	assert_true(list_has(m, "rcpt_to", "carol@203.0.113.12"));
	assert_int_equal(int_at(m, "messages"), 1);
	assert_int_equal(int_at(m, "banner_code"), 220);
	json_t *msg = event_of(ev, "smtp_message", 0);
	assert_non_null(msg);
	assert_string_equal(str_at(msg, "subject"), "Cheap watches, best prices");
	assert_string_equal(str_at(msg, "from"), "bot@198.51.100.5");
	assert_int_equal(int_at(msg, "rcpt_count"), 3);
	assert_int_equal(count_events(ev, "smtp_rcpt_to"), 3);
	assert_non_null(event_of(ev, "smtp_data", 0));
	assert_non_null(event_of(ev, "smtp_quit", 0));
	json_decref(ev);
	proto_flow_free(f);
}

static void test_http_curl(void **state)
{
	json_t *ev;
	(void)state;
	proto_flow *f = run_all_modes("http_curl.flow", &ev);
	json_t *m = proto_flow_meta(f);
	assert_string_equal(proto_flow_proto(f), "http");
	assert_int_equal(proto_flow_confidence(f), 95);
	assert_int_equal(int_at(m, "requests"), 2);
	assert_int_equal(int_at(m, "responses"), 2);
	assert_true(list_has(m, "hosts", "dl.example.test"));
	assert_true(list_has(m, "uris", "/payload.bin"));
	assert_int_equal(int_at(m, "body_bytes_to_client"), 25 + 4096);
	json_t *req = event_of(ev, "http_request", 1);
	assert_non_null(req);
	assert_string_equal(str_at(req, "method"), "GET");
	assert_string_equal(str_at(req, "uri"), "/payload.bin");
	assert_string_equal(str_at(req, "host"), "dl.example.test");
	assert_string_equal(str_at(req, "user_agent"), "Mozilla/4.0 (bot 1.0)");
	json_t *resp = event_of(ev, "http_response", 1);
	assert_non_null(resp);
	assert_int_equal(int_at(resp, "status"), 200);
	assert_int_equal(int_at(resp, "content_length"), 4096);
	assert_string_equal(str_at(resp, "content_type"), "application/octet-stream");
	assert_null(json_object_get(m, "error"));
	json_decref(ev);
	proto_flow_free(f);
}

static void test_tls_openssl(void **state)
{
	json_t *ev;
	(void)state;
	proto_flow *f = run_all_modes("tls_openssl.flow", &ev);
	json_t *m = proto_flow_meta(f);
	assert_string_equal(proto_flow_proto(f), "tls");
	assert_string_equal(str_at(m, "sni"), "c2.example.test");
	assert_string_equal(str_at(m, "client_version"), "TLS 1.3");
	assert_string_equal(str_at(m, "server_version"), "TLS 1.3");
	json_t *ch = event_of(ev, "tls_client_hello", 0);
	assert_non_null(ch);
	assert_string_equal(str_at(ch, "legacy_version"), "TLS 1.2");
	assert_string_equal(json_string_value(json_array_get(json_object_get(ch, "alpn"), 0)), "http/1.1");
	assert_true(int_at(ch, "cipher_suites") > 0);
	assert_non_null(event_of(ev, "tls_server_hello", 0));
	assert_null(json_object_get(m, "error"));
	json_decref(ev);
	proto_flow_free(f);
}

static void test_irc_ngircd(void **state)
{
	json_t *ev;
	(void)state;
	proto_flow *f = run_all_modes("irc_ngircd.flow", &ev);
	json_t *m = proto_flow_meta(f);
	assert_string_equal(proto_flow_proto(f), "irc");
	assert_string_equal(str_at(m, "nick"), "bot0042");
	assert_string_equal(str_at(m, "user"), "bot");
	assert_string_equal(str_at(m, "server"), "irc.example.test");
	assert_true(json_is_true(json_object_get(m, "registered")));
	assert_true(list_has(m, "channels", "#c2"));
	assert_true(list_has(m, "numerics", "001"));
	assert_int_equal(int_at(m, "pings_sent"), 1);
	json_t *topic = event_of(ev, "irc_topic", 0);
	assert_non_null(topic);
	assert_string_equal(str_at(topic, "channel"), "#c2");
	assert_string_equal(str_at(topic, "topic"), "!dl http://dl.example.test/payload.bin");
	json_t *cmd = event_of(ev, "irc_privmsg_in", 0);
	assert_non_null(cmd);
	assert_string_equal(str_at(cmd, "from"), "herder!~herder@127.0.0.1");
	assert_string_equal(str_at(cmd, "text"), "!dl http://dl.example.test/payload.bin");
	json_t *said = event_of(ev, "irc_privmsg", 0);
	assert_string_equal(str_at(said, "target"), "#c2");
	assert_string_equal(str_at(said, "text"), "done 4096 bytes");
	assert_non_null(event_of(ev, "irc_join", 0));
	assert_non_null(event_of(ev, "irc_quit", 0));
	json_decref(ev);
	proto_flow_free(f);
}

static void test_dns_udp(void **state)
{
	json_t *ev;
	(void)state;
	proto_flow *f = run_all_modes("dns_dnsmasq_udp.flow", &ev);
	json_t *m = proto_flow_meta(f);
	assert_string_equal(proto_flow_proto(f), "dns");
	assert_int_equal(int_at(m, "queries"), 2);
	assert_int_equal(int_at(m, "responses"), 2);
	assert_true(list_has(m, "qnames", "c2.example.test"));
	assert_true(list_has(m, "addresses", "198.51.100.7"));
	json_t *q = event_of(ev, "dns_query", 0);
	assert_int_equal(int_at(q, "id"), 0x1234);
	assert_string_equal(str_at(q, "qname"), "c2.example.test");
	assert_string_equal(str_at(q, "qtype"), "A");
	json_t *r = event_of(ev, "dns_response", 1);
	assert_int_equal(int_at(r, "id"), 0x1235);
	assert_int_equal(int_at(r, "rcode"), 0);
	json_t *answers = json_object_get(r, "answers");
	/* dnsmasq answers a --cname alias with the CNAME alone when the
	 * target comes from --address. */
	assert_int_equal(json_array_size(answers), 1);
	assert_string_equal(str_at(json_array_get(answers, 0), "type"), "CNAME");
	assert_string_equal(str_at(json_array_get(answers, 0), "target"), "c2.example.test");
	json_decref(ev);
	proto_flow_free(f);
}

static void test_dns_tcp(void **state)
{
	json_t *ev;
	(void)state;
	proto_flow *f = run_all_modes("dns_dnsmasq_tcp.flow", &ev);
	json_t *m = proto_flow_meta(f);
	assert_string_equal(proto_flow_proto(f), "dns");
	assert_true(list_has(m, "addresses", "198.51.100.8"));
	json_t *q = event_of(ev, "dns_query", 0);
	assert_int_equal(int_at(q, "id"), 0x2222);
	assert_string_equal(str_at(q, "qname"), "dl.example.test");
	assert_non_null(event_of(ev, "dns_response", 0));
	json_decref(ev);
	proto_flow_free(f);
}

static void test_ftp_vsftpd(void **state)
{
	json_t *ev;
	(void)state;
	proto_flow *f = run_all_modes("ftp_vsftpd.flow", &ev);
	json_t *m = proto_flow_meta(f);
	assert_string_equal(proto_flow_proto(f), "ftp");
	assert_int_equal(proto_flow_confidence(f), 85); /* decided on the banner alone */
	assert_string_equal(str_at(m, "banner"), "220 (vsFTPd 3.0.3)");
	assert_string_equal(str_at(m, "user"), "anonymous");
	assert_string_equal(str_at(m, "pass"), "***");
	assert_int_equal(int_at(m, "pass_length"), strlen("hunter2-secret"));
	assert_true(json_is_true(json_object_get(m, "logged_in")));
	assert_true(list_has(m, "retrieved", "bot-update.exe"));
	assert_true(list_has(m, "stored", "stolen.txt"));
	assert_true(list_has(m, "directories", "/pub"));
	json_t *pasv = event_of(ev, "ftp_pasv", 1);
	assert_string_equal(str_at(pasv, "address"), "198.51.100.9");
	assert_int_equal(int_at(pasv, "port"), 195 * 256 + 81);
	/* The password appears nowhere in what we record. */
	char *a = json_dumps(m, 0), *b = json_dumps(ev, 0);
	assert_null(strstr(a, "hunter2"));
	assert_null(strstr(b, "hunter2"));
	free(a);
	free(b);
	json_decref(ev);
	proto_flow_free(f);
}

/* "220 Welcome" fits SMTP and FTP: the flow waits for the client. */
static void test_banner_confusion(void **state)
{
	json_t *ev;
	proto_flow *f;
	(void)state;
	f = run_all_modes("ftp_plain_banner.flow", &ev);
	assert_string_equal(proto_flow_proto(f), "ftp");
	assert_string_equal(str_at(proto_flow_meta(f), "banner"), "220 Welcome");
	assert_string_equal(str_at(proto_flow_meta(f), "user"), "ftp");
	json_decref(ev);
	proto_flow_free(f);
	f = run_all_modes("smtp_plain_banner.flow", &ev);
	assert_string_equal(proto_flow_proto(f), "smtp");
	assert_string_equal(str_at(proto_flow_meta(f), "helo"), "x");
	json_decref(ev);
	proto_flow_free(f);

	/* Undecided after the bare banner; decided by the banner's words. */
	static const char plain[] = "220 Welcome\r\n";
	assert_int_equal(proto_flow_new(&f, PROTO_TCP), MAMORI_OK);
	assert_int_equal(proto_flow_feed(f, (const uint8_t *)plain, strlen(plain), PROTO_TO_CLIENT),
			 MAMORI_OK);
	assert_false(proto_flow_decided(f));
	assert_null(proto_flow_proto(f));
	/* Nobody answers before the banner wait runs out: a weak guess. */
	assert_int_equal(proto_flow_settle(f), MAMORI_OK);
	assert_string_equal(proto_flow_proto(f), "smtp");
	assert_true(proto_flow_confidence(f) < PROTO_CONFIDENT);
	proto_flow_free(f);

	static const struct {
		const char *banner, *proto;
	} banners[] = {
		{ "220 mx.example.test ESMTP Exim 4.96\r\n", "smtp" },
		{ "220-mail.example.test ESMTP\r\n", "smtp" },
		{ "220 ProFTPD Server (Debian) [198.51.100.9]\r\n", "ftp" },
		{ "220 FileZilla Server 1.8\r\n", "ftp" },
		{ "220 Microsoft FTP Service\r\n", "ftp" },
		{ ":irc.example.test NOTICE * :*** Looking up your hostname\r\n", "irc" },
		{ "NOTICE AUTH :*** Checking Ident\r\n", "irc" },
	};
	for (size_t i = 0; i < sizeof(banners) / sizeof(banners[0]); i++) {
		const char *b = banners[i].banner;
		int score;
		const proto_parser *p =
			proto_classify((const uint8_t *)b, strlen(b), PROTO_TO_CLIENT, PROTO_TCP, &score);
		assert_non_null(p);
		assert_string_equal(p->name, banners[i].proto);
		assert_true(score >= PROTO_CONFIDENT);
	}
}

/* Content, not port: HTTP bytes sent to port 6667 are HTTP; the same word
 * USER means IRC or FTP depending on its arguments. */
static void test_content_not_port(void **state)
{
	static const struct {
		const char *bytes, *proto;
		size_t len; /* 0: strlen */
	} cases[] = {
		{ "GET /cmd.txt HTTP/1.1\r\nHost: 203.0.113.5:6667\r\n\r\n", "http", 0 },
		{ "POST /gate.php HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc", "http", 0 },
		{ "NICK bot\r\n", "irc", 0 },
		{ "PASS secret\r\nNICK bot\r\nUSER b 0 * :b\r\n", "irc", 0 },
		{ "USER bot 0 * :real name\r\n", "irc", 0 },
		{ "USER anonymous\r\n", "ftp", 0 },
		{ "EHLO pc\r\n", "smtp", 0 },
		{ "\x16\x03\x01\x00\x40\x01", "tls", 6 },
		{ "\x00\x1f\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01x\x00\x00\x01\x00\x01", "dns",
		  21 },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		proto_flow *f;
		size_t len = cases[i].len ? cases[i].len : strlen(cases[i].bytes);
		assert_int_equal(proto_flow_new(&f, PROTO_TCP), MAMORI_OK);
		assert_int_equal(proto_flow_feed(f, (const uint8_t *)cases[i].bytes, len, PROTO_TO_SERVER),
				 MAMORI_OK);
		assert_true(proto_flow_decided(f));
		assert_string_equal(proto_flow_proto(f), cases[i].proto);
		proto_flow_free(f);
	}
}

static void test_unknown(void **state)
{
	proto_flow *f;
	(void)state;
	/* Binary bytes nobody could claim: decided at once. */
	static const uint8_t junk[] = { 0x00, 0xff, 0x13, 0x37, 0x42, 0x99, 0x01, 0x02, 0x03, 0x04 };
	assert_int_equal(proto_flow_new(&f, PROTO_TCP), MAMORI_OK);
	assert_int_equal(proto_flow_feed(f, junk, sizeof(junk), PROTO_TO_SERVER), MAMORI_OK);
	assert_true(proto_flow_decided(f));
	assert_string_equal(proto_flow_proto(f), "unknown");
	assert_string_equal(str_at(proto_flow_meta(f), "first_bytes_to_server"), "00ff1337429901020304");
	assert_int_equal(proto_flow_feed(f, junk, sizeof(junk), PROTO_TO_CLIENT), MAMORI_OK);
	proto_flow_free(f);

	/* Text that might still become something: waits, then unknown. */
	static const char hello[] = "hello there";
	assert_int_equal(proto_flow_new(&f, PROTO_TCP), MAMORI_OK);
	assert_int_equal(proto_flow_feed(f, (const uint8_t *)hello, strlen(hello), PROTO_TO_SERVER),
			 MAMORI_OK);
	assert_int_equal(proto_flow_settle(f), MAMORI_OK);
	assert_string_equal(proto_flow_proto(f), "unknown");
	assert_int_equal(proto_flow_confidence(f), 0);
	proto_flow_free(f);

	/* A flow closed before any byte. */
	assert_int_equal(proto_flow_new(&f, PROTO_UDP), MAMORI_OK);
	assert_int_equal(proto_flow_settle(f), MAMORI_OK);
	assert_int_equal(proto_flow_settle(f), MAMORI_OK);
	assert_string_equal(proto_flow_proto(f), "unknown");
	proto_flow_free(f);
	proto_flow_free(NULL);

	/* Both sides trickle text without a line end: once the buffered
	 * reads run out, the flow is decided anyway. */
	assert_int_equal(proto_flow_new(&f, PROTO_TCP), MAMORI_OK);
	for (int i = 0; i < 2 * PROTO_PROBE_SEGMENTS && !proto_flow_decided(f); i++)
		assert_int_equal(proto_flow_feed(f, (const uint8_t *)"N", 1, (proto_dir)(i & 1)), MAMORI_OK);
	assert_true(proto_flow_decided(f));
	assert_string_equal(proto_flow_proto(f), "unknown");
	proto_flow_free(f);

	/* Text that keeps probers asking for more until the buffer is full. */
	assert_int_equal(proto_flow_new(&f, PROTO_TCP), MAMORI_OK);
	for (int i = 0; i < 3 * PROTO_PROBE_MAX && !proto_flow_decided(f); i++)
		assert_int_equal(proto_flow_feed(f, (const uint8_t *)"G", 1, PROTO_TO_SERVER), MAMORI_OK);
	assert_true(proto_flow_decided(f));
	proto_flow_free(f);
}

/* Feed `bytes` to a flow classified from them; return the flow. */
static proto_flow *feed_text(proto_transport t, proto_dir dir, const void *bytes, size_t len)
{
	proto_flow *f;
	assert_int_equal(proto_flow_new(&f, t), MAMORI_OK);
	assert_int_equal(proto_flow_feed(f, bytes, len, dir), MAMORI_OK);
	assert_int_equal(proto_flow_settle(f), MAMORI_OK);
	return f;
}

static void test_malformed(void **state)
{
	proto_flow *f;
	(void)state;
	/* HTTP with a Content-Length that is not a number. */
	static const char bad_len[] =
		"POST / HTTP/1.1\r\nContent-Length: 12abc\r\n\r\nGET / HTTP/1.1\r\n\r\n";
	f = feed_text(PROTO_TCP, PROTO_TO_SERVER, bad_len, strlen(bad_len));
	assert_string_equal(proto_flow_proto(f), "http");
	assert_non_null(json_object_get(proto_flow_meta(f), "error"));
	/* Later bytes are accepted and ignored. */
	assert_int_equal(proto_flow_feed(f, (const uint8_t *)"x", 1, PROTO_TO_SERVER), MAMORI_OK);
	proto_flow_free(f);

	/* A TLS ClientHello whose extensions claim more than there is. */
	static const uint8_t bad_tls[] = { 0x16, 0x03, 0x01, 0x00, 0x2f, 0x01, 0x00, 0x00, 0x2b, 0x03, 0x03,
					   1,	 2,    3,    4,	   5,	 6,    7,    8,	   9,	 10,   11,
					   12,	 13,   14,   15,   16,	 17,   18,   19,   20,	 21,   22,
					   23,	 24,   25,   26,   27,	 28,   29,   30,   31,	 32,   0x00,
					   0x00, 0x02, 0x13, 0x01, 0x01, 0x00, 0x00, 0x40 };
	f = feed_text(PROTO_TCP, PROTO_TO_SERVER, bad_tls, sizeof(bad_tls));
	assert_string_equal(proto_flow_proto(f), "tls");
	assert_non_null(json_object_get(proto_flow_meta(f), "error"));
	proto_flow_free(f);

	/* A TLS ClientHello cut short: no error, just no hello yet. */
	flow_file ff;
	load_flow(&ff, "tls_openssl.flow");
	f = feed_text(PROTO_TCP, PROTO_TO_SERVER, ff.rec[0].data, 100);
	assert_string_equal(proto_flow_proto(f), "tls");
	assert_null(json_object_get(proto_flow_meta(f), "error"));
	assert_null(json_object_get(proto_flow_meta(f), "sni"));
	proto_flow_free(f);
	free(ff.bytes);

	/* A DNS response whose answer name points at itself. */
	static const uint8_t loop[] = { 0x12, 0x34, 0x81, 0x80, 0,  1, 0, 1,	0,  0,	 0, 0,
					1,    'a',  0,	  0,	1,  0, 1, 0xc0, 19, 0,	 1, 0,
					1,    0,    0,	  0,	60, 0, 4, 198,	51, 100, 1 };
	f = feed_text(PROTO_UDP, PROTO_TO_CLIENT, loop, sizeof(loop));
	assert_string_equal(proto_flow_proto(f), "dns");
	assert_non_null(json_object_get(proto_flow_meta(f), "error"));
	proto_flow_free(f);

	/* An SMTP server line without a reply code. */
	static const char smtp[] = "220 x ESMTP\r\nhello?\r\n";
	f = feed_text(PROTO_TCP, PROTO_TO_CLIENT, smtp, strlen(smtp));
	assert_string_equal(proto_flow_proto(f), "smtp");
	assert_non_null(json_object_get(proto_flow_meta(f), "error"));
	proto_flow_free(f);

	/* An IRC line far over the limit, then a normal one. */
	size_t big = 10000;
	char *irc = malloc(big + 64);
	memcpy(irc, "NICK a\r\nPRIVMSG #x :", 20);
	memset(irc + 20, 'A', big);
	memcpy(irc + 20 + big, "\r\nJOIN #after\r\n", 16);
	f = feed_text(PROTO_TCP, PROTO_TO_SERVER, irc, 20 + big + 15);
	assert_string_equal(proto_flow_proto(f), "irc");
	assert_true(json_is_true(json_object_get(proto_flow_meta(f), "overlong_lines")));
	assert_true(list_has(proto_flow_meta(f), "channels", "#after"));
	json_t *ev = proto_flow_take_events(f);
	json_t *msg = event_of(ev, "irc_privmsg", 0);
	assert_true(json_string_length(json_object_get(msg, "text")) <= PROTO_MAX_STR);
	json_decref(ev);
	proto_flow_free(f);
	free(irc);
}

/* Every prefix of every captured flow, fed as captured: no crash, no leak
 * (run under ASan by `make test`), and always a decision after settle. */
static void test_truncated(void **state)
{
	static const char *files[] = { "smtp_swaks.flow", "http_curl.flow",	  "tls_openssl.flow",
				       "irc_ngircd.flow", "dns_dnsmasq_udp.flow", "dns_dnsmasq_tcp.flow",
				       "ftp_vsftpd.flow" };
	(void)state;
	for (size_t k = 0; k < sizeof(files) / sizeof(files[0]); k++) {
		flow_file ff;
		size_t total = 0;
		load_flow(&ff, files[k]);
		for (size_t i = 0; i < ff.n; i++)
			total += ff.rec[i].len;
		for (size_t cut = 0; cut <= total; cut += 1 + cut / 64) {
			proto_flow *f;
			size_t left = cut;
			assert_int_equal(proto_flow_new(&f, ff.transport), MAMORI_OK);
			for (size_t i = 0; i < ff.n && left > 0; i++) {
				size_t n = ff.rec[i].len < left ? ff.rec[i].len : left;
				assert_int_equal(proto_flow_feed(f, ff.rec[i].data, n, ff.rec[i].dir),
						 MAMORI_OK);
				left -= n;
			}
			assert_int_equal(proto_flow_settle(f), MAMORI_OK);
			assert_non_null(proto_flow_proto(f));
			assert_non_null(json_object_get(proto_flow_meta(f), "proto"));
			proto_flow_free(f);
		}
		free(ff.bytes);
	}
}

static void test_limits(void **state)
{
	proto_flow *f;
	char line[128];
	(void)state;
	/* 1000 recipients: all counted, PROTO_MAX_LIST listed, events capped. */
	assert_int_equal(proto_flow_new(&f, PROTO_TCP), MAMORI_OK);
	assert_int_equal(
		proto_flow_feed(f, (const uint8_t *)"EHLO a\r\nMAIL FROM:<s@x>\r\n", 25, PROTO_TO_SERVER),
		MAMORI_OK);
	for (int i = 0; i < 1000; i++) {
		int n = snprintf(line, sizeof(line), "RCPT TO:<u%d@203.0.113.%d>\r\n", i, i % 250);
		assert_int_equal(proto_flow_feed(f, (const uint8_t *)line, (size_t)n, PROTO_TO_SERVER),
				 MAMORI_OK);
	}
	json_t *m = proto_flow_meta(f);
	assert_int_equal(int_at(m, "rcpt_count"), 1000);
	assert_int_equal(json_array_size(json_object_get(m, "rcpt_to")), PROTO_MAX_LIST);
	assert_int_equal(int_at(m, "rcpt_to_dropped"), 1000 - PROTO_MAX_LIST);
	json_t *ev = proto_flow_take_events(f);
	assert_int_equal(json_array_size(ev), PROTO_MAX_EVENTS);
	assert_true(int_at(m, "events_dropped") > 0);
	json_decref(ev);
	/* Draining makes room again. */
	assert_int_equal(proto_flow_feed(f, (const uint8_t *)"DATA\r\n", 6, PROTO_TO_SERVER), MAMORI_OK);
	ev = proto_flow_take_events(f);
	assert_int_equal(json_array_size(ev), 1);
	json_decref(ev);
	proto_flow_free(f);

	/* The per-direction parse budget: a huge body is counted up to it. */
	static const char head[] = "HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n";
	static const char req[] = "GET /big HTTP/1.1\r\n\r\n";
	static uint8_t chunk[65536];
	assert_int_equal(proto_flow_new(&f, PROTO_TCP), MAMORI_OK);
	assert_int_equal(proto_flow_feed(f, (const uint8_t *)req, strlen(req), PROTO_TO_SERVER), MAMORI_OK);
	assert_int_equal(proto_flow_feed(f, (const uint8_t *)head, strlen(head), PROTO_TO_CLIENT), MAMORI_OK);
	for (size_t sent = 0; sent < PROTO_MAX_FLOW_BYTES + sizeof(chunk); sent += sizeof(chunk))
		assert_int_equal(proto_flow_feed(f, chunk, sizeof(chunk), PROTO_TO_CLIENT), MAMORI_OK);
	m = proto_flow_meta(f);
	assert_true(json_is_true(json_object_get(m, "truncated_to_client")));
	assert_int_equal(int_at(m, "body_bytes_to_client"), PROTO_MAX_FLOW_BYTES - strlen(head));
	proto_flow_free(f);
}

/* With PIPELINING the replies come late; a refused DATA ends data mode
 * only when it is the reply to DATA itself. */
static void test_smtp_pipelining(void **state)
{
	proto_flow *f;
	static const char banner[] = "220 mx ESMTP\r\n";
	static const char cmds[] =
		"EHLO a\r\nMAIL FROM:<s@x>\r\nRCPT TO:<r1@y>\r\nRCPT TO:<r2@y>\r\nDATA\r\n";
	static const char replies[] =
		"250 ok\r\n250 ok\r\n550 no such user\r\n250 ok\r\n554 no valid recipients\r\n";
	static const char again[] = "RSET\r\nMAIL FROM:<s2@x>\r\n";
	(void)state;
	assert_int_equal(proto_flow_new(&f, PROTO_TCP), MAMORI_OK);
	assert_int_equal(proto_flow_feed(f, (const uint8_t *)banner, strlen(banner), PROTO_TO_CLIENT),
			 MAMORI_OK);
	assert_string_equal(proto_flow_proto(f), "smtp");
	assert_int_equal(proto_flow_feed(f, (const uint8_t *)cmds, strlen(cmds), PROTO_TO_SERVER), MAMORI_OK);
	/* The 550 to a RCPT must not end data mode; the 554 to DATA does. */
	for (size_t i = 0; i < strlen(replies); i++)
		assert_int_equal(proto_flow_feed(f, (const uint8_t *)replies + i, 1, PROTO_TO_CLIENT),
				 MAMORI_OK);
	assert_int_equal(proto_flow_feed(f, (const uint8_t *)again, strlen(again), PROTO_TO_SERVER),
			 MAMORI_OK);
	json_t *m = proto_flow_meta(f);
	assert_true(list_has(m, "mail_from", "s2@x"));
	assert_int_equal(int_at(m, "rejections"), 2);
	assert_null(json_object_get(m, "messages"));
	proto_flow_free(f);
}

static void test_http_framing(void **state)
{
	proto_flow *f;
	(void)state;
	/* Chunked response, then a HEAD (no body), then 204, keep-alive. */
	static const char req[] =
		"GET /a HTTP/1.1\r\nHost: h\r\n\r\nHEAD /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n";
	static const char resp[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
				   "5\r\nhello\r\nA;ext=1\r\n0123456789\r\n0\r\nX-Trailer: y\r\n\r\n"
				   "HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n"
				   "HTTP/1.1 204 No Content\r\n\r\n";
	assert_int_equal(proto_flow_new(&f, PROTO_TCP), MAMORI_OK);
	assert_int_equal(proto_flow_feed(f, (const uint8_t *)req, strlen(req), PROTO_TO_SERVER), MAMORI_OK);
	for (size_t i = 0; i < strlen(resp); i++)
		assert_int_equal(proto_flow_feed(f, (const uint8_t *)resp + i, 1, PROTO_TO_CLIENT),
				 MAMORI_OK);
	json_t *m = proto_flow_meta(f);
	assert_null(json_object_get(m, "error"));
	assert_int_equal(int_at(m, "requests"), 3);
	assert_int_equal(int_at(m, "responses"), 3);
	assert_int_equal(int_at(m, "chunks"), 3);
	assert_int_equal(int_at(m, "body_bytes_to_client"), 15);
	assert_int_equal(int_at(m, "last_status"), 204);
	proto_flow_free(f);
}

static void test_strings(void **state)
{
	(void)state;
	json_t *s = proto_str("a\x01\xff\xc3\xa9z", 6); /* control, invalid byte, é */
	assert_string_equal(json_string_value(s), "a??\xc3\xa9z");
	json_decref(s);
	char big[1000];
	memset(big, 'x', sizeof(big));
	s = proto_str(big, sizeof(big));
	assert_int_equal(json_string_length(s), PROTO_MAX_STR);
	json_decref(s);
	s = proto_str("\xe2\x82", 2); /* a cut multi-byte sequence */
	assert_string_equal(json_string_value(s), "??");
	json_decref(s);

	size_t n;
	const proto_parser *const *reg = proto_registry(&n);
	assert_true(n >= 6);
	for (size_t i = 0; i < n; i++) {
		assert_ptr_equal(proto_find(reg[i]->name), reg[i]);
		/* Every probe copes with no bytes at all. */
		int score = reg[i]->probe((const uint8_t *)"", 0, PROTO_TO_SERVER, PROTO_TCP);
		assert_true(score == PROTO_PROBE_MORE || (score >= 0 && score <= 100));
	}
	assert_null(proto_find("gopher"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_smtp_swaks),	 cmocka_unit_test(test_http_curl),
		cmocka_unit_test(test_tls_openssl),	 cmocka_unit_test(test_irc_ngircd),
		cmocka_unit_test(test_dns_udp),		 cmocka_unit_test(test_dns_tcp),
		cmocka_unit_test(test_ftp_vsftpd),	 cmocka_unit_test(test_banner_confusion),
		cmocka_unit_test(test_content_not_port), cmocka_unit_test(test_unknown),
		cmocka_unit_test(test_malformed),	 cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_limits),		 cmocka_unit_test(test_smtp_pipelining),
		cmocka_unit_test(test_http_framing),	 cmocka_unit_test(test_strings),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
