/*
 * Tests of the gateway (src/contain/gateway.c) and `mamori sandbox run`,
 * end to end with real tools in the inmate (curl, swaks) and real
 * namespaces (root required; skipped otherwise).
 *
 * The lab: an "internet" namespace of the test's own ("mamori-t<pid>-net")
 * with a tiny HTTP server of ours on 198.51.100.10:80 serving one file, the
 * SMTP target 203.0.113.25 (an address with nothing listening: anything that
 * arrives there is a leak), and a raw packet counter that counts the TCP
 * packets to or from ports 25 and 80 arriving on any interface there. A
 * blackhole route for both TEST-NET ranges sits in the host's namespace while
 * the tests run. Every namespace, route and file is removed at the end, also
 * when an assertion fails (group teardown), at exit, and on SIGTERM/SIGINT
 * (meson's timeout).
 *
 * argv[1] is the mamori program, for the CLI test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/ip.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#include "gateway.h"
#include "lab.h"
#include "mamori/base.h"
#include "mamori/contain.h"
#include "netns.h"
#include "sandbox.h"

#define HTTP_ADDR  "198.51.100.10"
#define SMTP_ADDR  "203.0.113.25"
#define FLOOD_ADDR "203.0.113.66"
#define PING_ADDR  "198.51.100.10"
#define FILE_SIZE  6000

static const char *mamori_prog;

/* This test's own part of the lab (lab.h has the namespaces). */
static struct {
	int http_fd;
	atomic_bool stop;
	atomic_ulong port25, port80; /* TCP packets arriving in the internet namespace */
	atomic_ulong icmp, flood;    /* ICMP packets, and any packet to FLOOD_ADDR, arriving there */
	pthread_t http_thread;
	bool threads;
	char file[FILE_SIZE + 1];
} lab = { .http_fd = -1 };

/* HTTP/1.0 server of one file: read the request head (bounded), answer. */
/* Answer one request head in `req`: /chunked in chunks of 1000 bytes,
 * anything else with a length. HTTP/1.1 keeps the connection. */
static bool http_answer(int c, const char *req)
{
	bool chunked = strstr(req, " /chunked ") != NULL;
	bool keep = strstr(req, "HTTP/1.1\r\n") != NULL;
	char head[160];
	int hl = chunked ? snprintf(head, sizeof head,
				    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
				    "Transfer-Encoding: chunked\r\n\r\n")
			 : snprintf(head, sizeof head,
				    "HTTP/%s 200 OK\r\nContent-Type: application/octet-stream\r\n"
				    "Content-Length: %d\r\n\r\n",
				    keep ? "1.1" : "1.0", FILE_SIZE);
	if (send(c, head, (size_t)hl, MSG_NOSIGNAL) != hl)
		return false;
	if (!chunked)
		return send(c, lab.file, FILE_SIZE, MSG_NOSIGNAL) == FILE_SIZE && keep;
	for (size_t off = 0; off < FILE_SIZE; off += 1000) {
		size_t n = FILE_SIZE - off < 1000 ? FILE_SIZE - off : 1000;
		char size_line[32];
		int sl = snprintf(size_line, sizeof size_line, "%zx\r\n", n);
		if (send(c, size_line, (size_t)sl, MSG_NOSIGNAL) != sl ||
		    send(c, lab.file + off, n, MSG_NOSIGNAL) != (ssize_t)n ||
		    send(c, "\r\n", 2, MSG_NOSIGNAL) != 2)
			return false;
	}
	return send(c, "0\r\n\r\n", 5, MSG_NOSIGNAL) == 5 && keep;
}

/* HTTP server of one file: reads each request head (bounded) and answers;
 * HTTP/1.1 connections stay open for the next request. */
static void *http_main(void *arg)
{
	(void)arg;
	while (!atomic_load(&lab.stop)) {
		struct pollfd p = { .fd = lab.http_fd, .events = POLLIN };
		if (poll(&p, 1, 100) <= 0)
			continue;
		int c = accept(lab.http_fd, NULL, NULL);
		if (c < 0)
			continue;
		bool more = true;
		while (more) {
			char req[4096];
			size_t got = 0;
			req[0] = '\0';
			while (got < sizeof req - 1 && !strstr(req, "\r\n\r\n")) {
				struct pollfd q = { .fd = c, .events = POLLIN };
				if (poll(&q, 1, 3000) <= 0)
					break;
				ssize_t n = recv(c, req + got, sizeof req - 1 - got, 0);
				if (n <= 0)
					break;
				got += (size_t)n;
				req[got] = '\0';
			}
			more = strstr(req, "\r\n\r\n") && http_answer(c, req);
		}
		shutdown(c, SHUT_WR);
		close(c);
	}
	return NULL;
}

/* Counts TCP packets to/from ports 25 and 80 arriving on any interface of
 * the internet namespace (loopback ones once: not the outgoing copy). */
/* Counts what arrives in the lab internet (lab_count_start). */
static void count_packet(const uint8_t *ip, size_t len)
{
	size_t ihl = (size_t)(ip[0] & 0x0f) * 4;
	struct in_addr flood;
	inet_pton(AF_INET, FLOOD_ADDR, &flood);
	if (!memcmp(ip + 16, &flood, 4))
		atomic_fetch_add(&lab.flood, 1);
	if (ip[9] == IPPROTO_ICMP)
		atomic_fetch_add(&lab.icmp, 1);
	if ((ip[0] >> 4) != 4 || ip[9] != IPPROTO_TCP || ihl < 20 || len < ihl + 4)
		return;
	const uint8_t *tcp = ip + ihl;
	unsigned sport = (unsigned)tcp[0] << 8 | tcp[1], dport = (unsigned)tcp[2] << 8 | tcp[3];
	if (sport == 25 || dport == 25)
		atomic_fetch_add(&lab.port25, 1);
	if (sport == 80 || dport == 80)
		atomic_fetch_add(&lab.port80, 1);
}

static int lab_setup(void **state)
{
	(void)state;
	for (size_t i = 0; i < FILE_SIZE; i++)
		lab.file[i] = (char)('a' + (i * 7 + i / 13) % 26);
	lab.file[FILE_SIZE - 1] = '\n';
	static const char *const addrs[] = { HTTP_ADDR, SMTP_ADDR, NULL };
	if (lab_open("gw", addrs) != 0)
		return -1;
	if (!the_lab.ready)
		return 0;
	if ((lab.http_fd = lab_listen(HTTP_ADDR, 80)) < 0 || lab_count_start(count_packet) != 0)
		return -1;
	if (pthread_create(&lab.http_thread, NULL, http_main, NULL) != 0)
		return -1;
	lab.threads = true;
	return 0;
}

static int lab_teardown(void **state)
{
	(void)state;
	atomic_store(&lab.stop, true);
	if (lab.threads)
		pthread_join(lab.http_thread, NULL);
	if (lab.http_fd >= 0)
		close(lab.http_fd);
	lab_close();
	return 0;
}

/* Run a shell snippet in the inmate; its stdout into `out` (NUL-terminated). */
static int inmate_sh(const contain_session_net *net, const char *dir, const char *script, char *out,
		     size_t cap)
{
	return lab_inmate_sh(net->inmate_ns, dir, script, out, cap, 0);
}

/* Session `k` with its gateway, recording into the lab folder `name`
 * (its path into `dir`): the lab internet upstream when `upstream`, policy
 * `pol` (NULL: the built-in one), the first-bytes wait `first_wait_ms` (0:
 * the default). */
static void gateway_up(contain_session_net **net, contain_gateway **gw, char *dir, size_t cap, int k,
		       const char *name, bool upstream, const contain_policy *pol, unsigned first_wait_ms)
{
	*net = lab_session_new(k, upstream);
	lab_dir(dir, cap, name);
	contain_gateway_opts o = { .net = *net,
				   .policy = pol,
				   .session_dir = dir,
				   .upstream_netns = upstream ? the_lab.internet : NULL,
				   .first_wait_ms = first_wait_ms };
	if (contain_gateway_start(gw, &o) != MAMORI_OK)
		fail_msg("gateway: %s", mamori_error_detail());
}

/* All events of a session, as an array. */
static json_t *events_of(const char *dir)
{
	char path[256];
	snprintf(path, sizeof path, "%s/events.jsonl", dir);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	json_t *all = json_array();
	char line[65536];
	while (fgets(line, sizeof line, f)) {
		json_t *ev = json_loads(line, 0, NULL);
		assert_non_null(ev);
		json_array_append_new(all, ev);
	}
	fclose(f);
	return all;
}

/* The first event of `type` whose `key` is the integer `value`. */
static json_t *find_event(json_t *evs, const char *type, const char *key, json_int_t value)
{
	size_t i;
	json_t *ev;
	json_array_foreach(evs, i, ev)
	{
		if (!strcmp(json_string_value(json_object_get(ev, "type")), type) &&
		    json_integer_value(json_object_get(ev, key)) == value)
			return ev;
	}
	return NULL;
}

static bool array_has(const json_t *arr, const char *s)
{
	size_t i;
	json_t *v;
	json_array_foreach(arr, i, v) if (json_is_string(v) && !strcmp(json_string_value(v), s)) return true;
	return false;
}

static const char swaks_cmd[] =
	"swaks --server " SMTP_ADDR " --to a@x.example,b@x.example --from bot@y.example "
	"--header 'Subject: cheap pills' --timeout 10 >/dev/null 2>&1; echo swaks=$?";

/* Checks shared by the library and CLI tests on a finished session. */
static void check_session(const char *dir, bool forwarded_http)
{
	json_t *evs = events_of(dir);
	json_t *http_start = find_event(evs, "flow_start", "dport", 80);
	json_t *smtp_start = find_event(evs, "flow_start", "dport", 25);
	assert_non_null(http_start);
	assert_non_null(smtp_start);
	const char *hv = json_string_value(json_object_get(http_start, "verdict"));
	if (forwarded_http)
		assert_true(!strcmp(hv, "forward") || !strcmp(hv, "limit"));
	else
		assert_string_equal(hv, "reflect");
	assert_string_equal(json_string_value(json_object_get(http_start, "proto")), "http");
	assert_string_equal(json_string_value(json_object_get(smtp_start, "verdict")), "reflect");
	assert_string_equal(json_string_value(json_object_get(smtp_start, "service")), "smtp-sink");
	assert_non_null(json_object_get(smtp_start, "rule"));
	/* The protocol events and the ends of both flows. */
	json_t *smtp =
		find_event(evs, "smtp", "flow", json_integer_value(json_object_get(smtp_start, "flow")));
	assert_non_null(smtp);
	assert_true(array_has(json_object_get(smtp, "rcpt"), "a@x.example"));
	assert_true(array_has(json_object_get(smtp, "rcpt"), "b@x.example"));
	assert_string_equal(json_string_value(json_object_get(smtp, "mail_subject")), "cheap pills");
	json_t *http =
		find_event(evs, "http", "flow", json_integer_value(json_object_get(http_start, "flow")));
	assert_non_null(http);
	assert_string_equal(json_string_value(json_object_get(http, "uri")), "/file");
	json_t *end =
		find_event(evs, "flow_end", "flow", json_integer_value(json_object_get(http_start, "flow")));
	assert_non_null(end);
	char sha[65];
	mamori_sha256_hex(sha, lab.file, FILE_SIZE);
	if (forwarded_http) {
		assert_true(json_integer_value(json_object_get(end, "bytes_down")) > FILE_SIZE);
		/* The forwarded file is a download, hashed and in the store. */
		json_t *dl = find_event(evs, "download", "flow",
					json_integer_value(json_object_get(http_start, "flow")));
		assert_non_null(dl);
		assert_string_equal(json_string_value(json_object_get(dl, "url")),
				    "http://" HTTP_ADDR "/file");
		assert_string_equal(json_string_value(json_object_get(dl, "sha256")), sha);
		assert_int_equal(json_integer_value(json_object_get(dl, "size")), FILE_SIZE);
		assert_true(json_is_true(json_object_get(dl, "stored")));
		mamori_store *store = NULL;
		char store_dir[256], stored[512];
		snprintf(store_dir, sizeof store_dir, "%s/store", dir);
		assert_int_equal(mamori_store_open(&store, store_dir), MAMORI_OK);
		assert_int_equal(mamori_store_path(store, sha, stored, sizeof stored), MAMORI_OK);
		mamori_store_free(store);
	} else {
		assert_null(find_event(evs, "download", "flow",
				       json_integer_value(json_object_get(http_start, "flow"))));
	}
	json_decref(evs);

	/* The mail sits in the session's mail folder with both recipients. */
	char path[256];
	snprintf(path, sizeof path, "%s/events.jsonl", dir);
	mamori_contain_report *r = NULL;
	assert_int_equal(mamori_contain_report_load(&r, path), MAMORI_OK);
	json_t *j = mamori_contain_report_json(r);
	json_t *spam = json_object_get(j, "spam");
	assert_int_equal(json_integer_value(json_object_get(spam, "messages")), 1);
	assert_true(array_has(json_object_get(spam, "recipients"), "a@x.example"));
	assert_true(array_has(json_object_get(spam, "recipients"), "b@x.example"));
	bool host_named = false;
	size_t i;
	json_t *c;
	json_array_foreach(json_object_get(j, "cnc"), i, c)
	{
		if (json_string_value(json_object_get(c, "host")) &&
		    !strcmp(json_string_value(json_object_get(c, "host")), HTTP_ADDR))
			host_named = true;
	}
	assert_true(host_named);
	if (forwarded_http) {
		json_t *d = json_array_get(json_object_get(j, "downloads"), 0);
		assert_non_null(d);
		assert_string_equal(json_string_value(json_object_get(d, "sha256")), sha);
	}
	json_decref(j);
	mamori_contain_report_free(r);
}

/* The stored mail: one .json sidecar in SESSION/mail with both recipients. */
static void check_mail(const char *dir)
{
	char cmd[512], out[4096] = "";
	snprintf(cmd, sizeof cmd, "cat %s/mail/*.json 2>/dev/null", dir);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	size_t n = fread(out, 1, sizeof out - 1, p);
	out[n] = '\0';
	pclose(p);
	json_t *side = json_loads(out, 0, NULL);
	assert_non_null(side);
	assert_true(array_has(json_object_get(side, "rcpt"), "a@x.example"));
	assert_true(array_has(json_object_get(side, "rcpt"), "b@x.example"));
	json_decref(side);
}

/* FORWARD: curl gets the lab's file through the gateway. REFLECT: swaks's
 * mail lands in the sink, and not one port-25 packet reaches the lab. */
static void test_forward_and_reflect(void **state)
{
	(void)state;
	LAB_REQUIRE();
	contain_session_net *net = NULL;
	contain_gateway *gw = NULL;
	char dir[128];
	gateway_up(&net, &gw, dir, sizeof dir, 0, "s-forward", true, NULL, 0);
	unsigned long p25 = atomic_load(&lab.port25), p80 = atomic_load(&lab.port80);
	char *out = malloc(1 << 20);
	assert_non_null(out);
	assert_int_equal(inmate_sh(net, dir, "curl -s -m 10 http://" HTTP_ADDR "/file", out, 1 << 20), 0);
	assert_int_equal(strlen(out), FILE_SIZE);
	assert_memory_equal(out, lab.file, FILE_SIZE);
	assert_int_equal(inmate_sh(net, dir, swaks_cmd, out, 1 << 20), 0);
	assert_string_equal(out, "swaks=0\n");
	contain_gateway_stats st;
	contain_gateway_stop(gw, &st);
	usleep(200 * 1000); /* let the counter see the last packets */
	assert_int_equal(st.flows, 2);
	assert_int_equal(st.forwarded, 1);
	assert_int_equal(st.reflected, 1);
	assert_true(st.capture_packets > 0);
	assert_int_equal(atomic_load(&lab.port25) - p25, 0);
	assert_true(atomic_load(&lab.port80) - p80 > 0); /* the counter works */
	check_session(dir, true);
	check_mail(dir);
	char pcap[256];
	struct stat sb;
	snprintf(pcap, sizeof pcap, "%s/inmate.pcap", dir);
	assert_int_equal(stat(pcap, &sb), 0);
	assert_true(sb.st_size > 24);
	free(out);
	lab_session_end(0);
}

/* No upstream: nothing is forwarded; HTTP is answered by the fake service. */
static void test_no_upstream_reflects_everything(void **state)
{
	(void)state;
	LAB_REQUIRE();
	contain_session_net *net = NULL;
	contain_gateway *gw = NULL;
	char dir[128];
	gateway_up(&net, &gw, dir, sizeof dir, 1, "s-none", false, NULL, 0);
	unsigned long p80 = atomic_load(&lab.port80), p25 = atomic_load(&lab.port25);
	char out[8192];
	inmate_sh(net, dir, "curl -s -m 10 http://" HTTP_ADDR "/file", out, sizeof out);
	assert_true(strcmp(out, lab.file) != 0);
	assert_int_equal(inmate_sh(net, dir, swaks_cmd, out, sizeof out), 0);
	/* DNS over UDP: the fake resolver answers with the policy's sinkhole. */
	assert_int_equal(inmate_sh(net, dir, "dig +short +time=3 +tries=1 @203.0.113.53 cc.bot.example", out,
				   sizeof out),
			 0);
	assert_string_equal(out, "198.51.100.53\n");
	contain_gateway_stats st;
	contain_gateway_stop(gw, &st);
	assert_int_equal(st.forwarded, 0);
	assert_int_equal(st.reflected, 3);
	assert_int_equal(atomic_load(&lab.port80) - p80, 0);
	assert_int_equal(atomic_load(&lab.port25) - p25, 0);
	check_session(dir, false);
	json_t *evs = events_of(dir);
	json_t *http_start = find_event(evs, "flow_start", "dport", 80);
	assert_string_equal(json_string_value(json_object_get(http_start, "service")), "http");
	assert_non_null(json_object_get(http_start, "policy_verdict"));
	json_t *dns_start = find_event(evs, "flow_start", "dport", 53);
	assert_non_null(dns_start);
	assert_string_equal(json_string_value(json_object_get(dns_start, "transport")), "udp");
	assert_string_equal(json_string_value(json_object_get(dns_start, "proto")), "dns");
	assert_string_equal(json_string_value(json_object_get(dns_start, "service")), "dns");
	json_t *dns = find_event(evs, "dns", "flow", json_integer_value(json_object_get(dns_start, "flow")));
	assert_non_null(dns);
	assert_string_equal(json_string_value(json_object_get(dns, "qname")), "cc.bot.example");
	assert_true(json_is_true(json_object_get(dns, "sinkholed")));
	assert_true(array_has(json_object_get(dns, "answers"), "198.51.100.53"));
	json_decref(evs);
	lab_session_end(1);
}

/* A DROP rule: the connection is reset and nothing reaches the lab. */
static void test_drop_policy(void **state)
{
	(void)state;
	LAB_REQUIRE();
	static const char text[] = "drop proto=http\nreflect * to=sink\n";
	contain_policy *pol = NULL;
	assert_int_equal(contain_policy_parse(&pol, "test", text, sizeof text - 1), MAMORI_OK);
	contain_session_net *net = NULL;
	contain_gateway *gw = NULL;
	char dir[128];
	gateway_up(&net, &gw, dir, sizeof dir, 2, "s-drop", true, pol, 0);
	unsigned long p80 = atomic_load(&lab.port80);
	char out[8192];
	assert_int_not_equal(inmate_sh(net, dir, "curl -s -m 10 http://" HTTP_ADDR "/file", out, sizeof out),
			     0);
	contain_gateway_stats st;
	contain_gateway_stop(gw, &st);
	usleep(200 * 1000);
	assert_int_equal(st.dropped, 1);
	assert_int_equal(atomic_load(&lab.port80) - p80, 0);
	json_t *evs = events_of(dir);
	json_t *start = find_event(evs, "flow_start", "dport", 80);
	assert_non_null(start);
	assert_string_equal(json_string_value(json_object_get(start, "verdict")), "drop");
	assert_string_equal(json_string_value(json_object_get(start, "rule")), "drop proto=http");
	json_decref(evs);
	contain_policy_free(pol);
	lab_session_end(2);
}

/* A connection flood: past the default policy's 50/s the flows are
 * dropped, one `detect` event names the target, and the report lists it. */
/* Two downloads on one kept-alive connection, the second chunked: each is
 * a download of its own with its own URL, de-chunked to the same file. */
static void test_keepalive_downloads(void **state)
{
	(void)state;
	LAB_REQUIRE();
	contain_session_net *net = NULL;
	contain_gateway *gw = NULL;
	char dir[128];
	gateway_up(&net, &gw, dir, sizeof dir, 2, "s-keepalive", true, NULL, 0);
	char out[256];
	assert_int_equal(inmate_sh(net, dir,
				   "curl -s -m 10 -o /dev/null -o /dev/null -w '%{num_connects} ' "
				   "http://" HTTP_ADDR "/file http://" HTTP_ADDR "/chunked",
				   out, sizeof out),
			 0);
	contain_gateway_stats st;
	contain_gateway_stop(gw, &st);
	assert_string_equal(out, "1 0 "); /* the second reused the connection */
	assert_int_equal(st.flows, 1);
	json_t *evs = events_of(dir);
	size_t i;
	json_t *ev, *downs = json_array();
	json_array_foreach(evs, i, ev)
	{
		if (!strcmp(json_string_value(json_object_get(ev, "type")), "download"))
			json_array_append(downs, ev);
	}
	assert_int_equal(json_array_size(downs), 2);
	json_t *d0 = json_array_get(downs, 0), *d1 = json_array_get(downs, 1);
	assert_string_equal(json_string_value(json_object_get(d0, "url")), "http://" HTTP_ADDR "/file");
	assert_string_equal(json_string_value(json_object_get(d1, "url")), "http://" HTTP_ADDR "/chunked");
	assert_true(json_is_true(json_object_get(d1, "chunked")));
	assert_int_equal(json_integer_value(json_object_get(d1, "size")), FILE_SIZE);
	char sha[65];
	mamori_sha256_hex(sha, lab.file, FILE_SIZE);
	assert_string_equal(json_string_value(json_object_get(d0, "sha256")), sha);
	assert_string_equal(json_string_value(json_object_get(d1, "sha256")), sha);
	json_decref(downs);
	json_decref(evs);
	lab_session_end(2);
}

/* What no socket of the gateway sees: a SYN flood (hping3) is detected
 * from the capture and names its target, and not one of its packets leaves;
 * ICMP goes through NFQUEUE: reflected by the default policy (the gateway
 * answers the ping itself and nothing leaves), let out when a policy
 * forwards it (the lab host answers). */
static void test_packet_path(void **state)
{
	(void)state;
	LAB_REQUIRE();
	static const char fwd_icmp[] = "forward proto=icmp\nreflect * to=sink\n";
	contain_policy *pol = NULL;
	assert_int_equal(contain_policy_parse(&pol, "test", fwd_icmp, sizeof fwd_icmp - 1), MAMORI_OK);
	for (int round = 0; round < 2; round++) {
		contain_session_net *net = NULL;
		contain_gateway *gw = NULL;
		char dir[128];
		gateway_up(&net, &gw, dir, sizeof dir, 3, round ? "s-icmp-fwd" : "s-packets", true,
			   round ? pol : NULL, 0);
		unsigned long flood0 = atomic_load(&lab.flood), icmp0 = atomic_load(&lab.icmp);
		char out[256];
		if (round == 0)
			inmate_sh(net, dir,
				  "hping3 -S -p 80 --faster -c 3000 " FLOOD_ADDR " >/dev/null 2>&1; echo $?",
				  out, sizeof out);
		/* The answer's TTL tells who gave it: 64 from the gateway itself,
		 * one less from the lab host a hop behind it. */
		inmate_sh(net, dir, "ping -n -c 2 -W 2 " PING_ADDR " | grep -o 'ttl=[0-9]*' | sort -u", out,
			  sizeof out);
		usleep(300 * 1000); /* the capture's block timeout */
		contain_gateway_stats st;
		contain_gateway_stop(gw, &st);
		assert_string_equal(out, round ? "ttl=63\n" : "ttl=64\n");
		if (round)
			assert_true(atomic_load(&lab.icmp) - icmp0 >= 2); /* the requests arrived */
		else
			assert_int_equal(atomic_load(&lab.icmp) - icmp0, 0);
		assert_int_equal(atomic_load(&lab.flood) - flood0, 0);
		json_t *evs = events_of(dir);
		size_t i;
		json_t *ev, *icmp = NULL, *flood = NULL;
		json_array_foreach(evs, i, ev)
		{
			const char *type = json_string_value(json_object_get(ev, "type"));
			if (!strcmp(type, "flow_start") &&
			    !strcmp(json_string_value(json_object_get(ev, "proto")), "icmp"))
				icmp = ev;
			if (!strcmp(type, "detect") && array_has(json_object_get(ev, "targets"), FLOOD_ADDR))
				flood = ev;
		}
		assert_non_null(icmp);
		assert_string_equal(json_string_value(json_object_get(icmp, "transport")), "other");
		assert_string_equal(json_string_value(json_object_get(icmp, "verdict")),
				    round ? "forward" : "reflect");
		assert_string_equal(json_string_value(json_object_get(icmp, "dst")), PING_ADDR);
		if (round == 0) {
			assert_non_null(flood);
			assert_string_equal(json_string_value(json_object_get(flood, "kind")), "flood");
		}
		json_decref(evs);
		lab_session_end(3);
	}
	contain_policy_free(pol);
}

/* LIMIT: a byte budget cuts the download short (and no download is
 * recorded); a byte rate slows it down but lets it finish. */
static void limited_fetch(const char *policy_text, const char *name, double *seconds, json_t **flow_end,
			  json_t **download)
{
	contain_policy *pol = NULL;
	assert_int_equal(contain_policy_parse(&pol, "test", policy_text, strlen(policy_text)), MAMORI_OK);
	contain_session_net *net = NULL;
	contain_gateway *gw = NULL;
	char dir[128];
	gateway_up(&net, &gw, dir, sizeof dir, 2, name, true, pol, 0);
	char out[256];
	double t0 = mamori_now();
	inmate_sh(net, dir, "curl -s -m 20 -o /dev/null http://" HTTP_ADDR "/file", out, sizeof out);
	*seconds = mamori_now() - t0;
	contain_gateway_stop(gw, NULL);
	json_t *evs = events_of(dir);
	json_t *start = find_event(evs, "flow_start", "dport", 80);
	assert_non_null(start);
	assert_string_equal(json_string_value(json_object_get(start, "verdict")), "limit");
	json_int_t id = json_integer_value(json_object_get(start, "flow"));
	*flow_end = json_incref(find_event(evs, "flow_end", "flow", id));
	assert_non_null(*flow_end);
	*download = json_incref(find_event(evs, "download", "flow", id));
	json_decref(evs);
	contain_policy_free(pol);
	lab_session_end(2);
}

static void test_limit_policy(void **state)
{
	(void)state;
	LAB_REQUIRE();
	double secs;
	json_t *end = NULL, *down = NULL;
	limited_fetch("limit proto=http bytes=2000\nreflect * to=sink\n", "s-budget", &secs, &end, &down);
	assert_string_equal(json_string_value(json_object_get(end, "reason")), "byte_budget");
	json_int_t moved = json_integer_value(json_object_get(end, "bytes_up")) +
			   json_integer_value(json_object_get(end, "bytes_down"));
	assert_true(moved > 0 && moved <= 2000);
	assert_null(down); /* a cut-off body is not a download */
	json_decref(end);

	limited_fetch("limit proto=http rate=2K/s\nreflect * to=sink\n", "s-rate", &secs, &end, &down);
	assert_string_equal(json_string_value(json_object_get(end, "reason")), "closed");
	assert_true(json_integer_value(json_object_get(end, "bytes_down")) > FILE_SIZE);
	assert_true(json_integer_value(json_object_get(end, "throttled_ms")) > 0);
	/* About 6.2 KB at 2 KiB/s, less what the bucket holds at the start. */
	assert_true(secs >= 1.5);
	assert_non_null(down);
	assert_int_equal(json_integer_value(json_object_get(down, "size")), FILE_SIZE);
	json_decref(end);
	json_decref(down);
}

static void test_flood_detected(void **state)
{
	(void)state;
	LAB_REQUIRE();
	contain_session_net *net = NULL;
	contain_gateway *gw = NULL;
	char dir[128];
	gateway_up(&net, &gw, dir, sizeof dir, 3, "s-flood", false, NULL, 50);
	char out[256];
	inmate_sh(net, dir,
		  "for i in $(seq 1 120); do : 3<>/dev/tcp/203.0.113.30/9999; done 2>/dev/null; "
		  "echo done",
		  out, sizeof out);
	assert_string_equal(out, "done\n");
	contain_gateway_stats st;
	contain_gateway_stop(gw, &st);
	assert_int_equal(st.flows, 120);
	assert_true(st.dropped > 0);
	json_t *evs = events_of(dir);
	size_t i, n_detect = 0;
	json_t *ev;
	json_array_foreach(evs, i, ev)
	{
		if (strcmp(json_string_value(json_object_get(ev, "type")), "detect") != 0)
			continue;
		n_detect++;
		assert_string_equal(json_string_value(json_object_get(ev, "kind")), "flood");
		assert_true(array_has(json_object_get(ev, "targets"), "203.0.113.30"));
	}
	assert_int_equal(n_detect, 1);
	json_decref(evs);
	char path[256];
	snprintf(path, sizeof path, "%s/events.jsonl", dir);
	mamori_contain_report *r = NULL;
	assert_int_equal(mamori_contain_report_load(&r, path), MAMORI_OK);
	json_t *j = mamori_contain_report_json(r);
	assert_true(json_array_size(json_object_get(j, "floods")) >= 1);
	json_decref(j);
	mamori_contain_report_free(r);
	lab_session_end(3);
}

typedef struct bg_inmate {
	const contain_session_net *net;
	const char *dir;
	const char *script;
	contain_sandbox_result res;
	int rc;
} bg_inmate;

static void *bg_inmate_main(void *arg)
{
	bg_inmate *b = arg;
	char *const argv[] = { "/bin/bash", "-c", (char *)b->script, NULL };
	contain_sandbox_config cfg = {
		.netns = b->net->inmate_ns, .session_dir = b->dir, .argv = argv, .timeout_ms = 6000
	};
	b->rc = contain_sandbox_run(&b->res, &cfg);
	return NULL;
}

/* Stopping the gateway while the inmate holds a reflected connection open
 * (an SMTP client that never speaks) ends in bounded time, and the flow
 * still gets its flow_end. */
static void test_stop_with_open_flow(void **state)
{
	(void)state;
	LAB_REQUIRE();
	contain_session_net *net = NULL;
	contain_gateway *gw = NULL;
	char dir[128];
	gateway_up(&net, &gw, dir, sizeof dir, 4, "s-stop", false, NULL, 0);
	bg_inmate b = { .net = net, .dir = dir, .script = "exec 3<>/dev/tcp/" SMTP_ADDR "/25; sleep 5" };
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, bg_inmate_main, &b), 0);
	usleep(1000 * 1000); /* connected, greeted, silent */
	double t0 = mamori_now();
	contain_gateway_stats st;
	contain_gateway_stop(gw, &st);
	double took = mamori_now() - t0;
	pthread_join(th, NULL);
	assert_int_equal(b.rc, MAMORI_OK);
	assert_true(took < 2.0);
	assert_int_equal(st.flows, 1);
	assert_int_equal(st.reflected, 1);
	json_t *evs = events_of(dir);
	assert_non_null(find_event(evs, "flow_end", "flow", 1));
	json_decref(evs);
	lab_session_end(4);
}

/* The inmate namespace a session recorded in SESSION/net.txt, or "". */
static void recorded_inmate(const char *dir, char *out, size_t cap)
{
	char path[256], line[128];
	snprintf(path, sizeof path, "%s/net.txt", dir);
	out[0] = '\0';
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	while (fgets(line, sizeof line, f))
		if (!strncmp(line, "inmate=", 7)) {
			line[strcspn(line, "\n")] = '\0';
			size_t n = strlen(line + 7);
			if (n < cap)
				memcpy(out, line + 7, n + 1);
		}
	fclose(f);
}

static int count_event(void *ctx, const char *json)
{
	(void)json;
	(*(int *)ctx)++;
	return MAMORI_OK;
}

/* `mamori sandbox run` end to end: the same checks, and no namespace left. */
static void test_cli_sandbox_run(void **state)
{
	(void)state;
	LAB_REQUIRE();
	if (!mamori_prog)
		skip();
	char dir[128];
	snprintf(dir, sizeof dir, "%s/s-cli", the_lab.dir);
	char db_path[160];
	snprintf(db_path, sizeof db_path, "%s/s-cli.db", the_lab.dir);
	unsigned long p25 = atomic_load(&lab.port25);
	char script[1024];
	snprintf(script, sizeof script, "cat /etc/resolv.conf; curl -s -m 10 -o /dev/null http://%s/file; %s",
		 HTTP_ADDR, swaks_cmd);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int devnull = open("/dev/null", O_WRONLY);
		if (devnull >= 0)
			dup2(devnull, STDOUT_FILENO);
		execl(mamori_prog, mamori_prog, "sandbox", "run", "--session", dir, "--upstream-netns",
		      the_lab.internet, "--timeout", "40", "--db", db_path, "--resolver", "198.51.100.53",
		      "--", "/bin/sh", "-c", script, (char *)NULL);
		_exit(127);
	}
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(atomic_load(&lab.port25) - p25, 0);
	check_session(dir, true);
	check_mail(dir);
	char path[256];
	struct stat sb;
	/* --resolver: the inmate saw the session's resolv.conf, not the host's. */
	snprintf(path, sizeof path, "%s/stdout.txt", dir);
	uint8_t *out = NULL;
	size_t out_len = 0;
	assert_int_equal(mamori_file_read(&out, &out_len, path, 1 << 20), MAMORI_OK);
	assert_non_null(memmem(out, out_len, "nameserver 198.51.100.53\n", 25));
	free(out);
	snprintf(path, sizeof path, "%s/report.json", dir);
	assert_int_equal(stat(path, &sb), 0);
	snprintf(path, sizeof path, "%s/report.svg", dir);
	assert_int_equal(stat(path, &sb), 0);
	char inmate[CONTAIN_NAME_MAX];
	recorded_inmate(dir, inmate, sizeof inmate);
	assert_true(inmate[0] != '\0');
	assert_false(contain_netns_exists(inmate)); /* The same events went to the database. */
	mamori_db *db = NULL;
	assert_int_equal(mamori_db_open(&db, db_path), MAMORI_OK);
	int flows = 0;
	assert_int_equal(mamori_db_events_each(db, "s-cli", "flow_start", count_event, &flows), MAMORI_OK);
	assert_int_equal(flows, 2);
	mamori_db_free(db);
	/* The download is a sample: one row, with its path in the store. */
	sqlite3 *sq = NULL;
	assert_int_equal(sqlite3_open_v2(db_path, &sq, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	sqlite3_stmt *st = NULL;
	assert_int_equal(sqlite3_prepare_v2(sq,
					    "SELECT s.size, p.path FROM samples s JOIN sample_paths p "
					    "ON p.sha256 = s.sha256",
					    -1, &st, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int64(st, 0), FILE_SIZE);
	assert_non_null(strstr((const char *)sqlite3_column_text(st, 1), "/s-cli/store/"));
	assert_int_equal(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
	sqlite3_close(sq);
}

/* Run mamori with `args` (NULL-terminated, after the program name) in
 * namespace `netns` (NULL: ours), stdout to `out_path` (NULL: /dev/null).
 * Returns the pid. */
static pid_t mamori_spawn(const char *netns, const char *out_path, const char *const *args)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int out = open(out_path ? out_path : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (out >= 0)
			dup2(out, STDOUT_FILENO);
		int saved = -1;
		if (netns && contain_netns_enter(&saved, netns) != MAMORI_OK)
			_exit(126);
		const char *argv[24] = { mamori_prog };
		for (size_t i = 0; args[i] && i + 2 < sizeof argv / sizeof argv[0]; i++)
			argv[i + 1] = args[i];
		execv(mamori_prog, (char *const *)argv);
		_exit(127);
	}
	return pid;
}

static int wait_exit(pid_t pid)
{
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

/* Bad upstream choices are refused with a clear message (no root needed). */
static void test_cli_upstream_choices(void **state)
{
	(void)state;
	if (!mamori_prog)
		skip();
	char both[128];
	snprintf(both, sizeof both, "--upstream host --upstream-netns %s", the_lab.internet);
	const char *const bad[] = { "--upstream internet", "--upstream",
				    the_lab.ready ? both : "--upstream x" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char cmd[512];
		snprintf(cmd, sizeof cmd, "%s sandbox run %s -- /bin/true 2>&1", mamori_prog, bad[i]);
		FILE *p = popen(cmd, "r");
		assert_non_null(p);
		char out[1024];
		size_t n = fread(out, 1, sizeof out - 1, p);
		out[n] = '\0';
		int status = pclose(p);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), MAMORI_EXIT_USAGE);
		assert_non_null(strstr(out, "--upstream"));
	}
}

/* `--upstream host` forwards from the namespace mamori itself runs in. The
 * test runs mamori inside the lab internet namespace, so "the host" is the
 * lab: the download comes from the lab's HTTP server and nothing can reach
 * any other network. */
static void test_cli_upstream_host(void **state)
{
	(void)state;
	LAB_REQUIRE();
	if (!mamori_prog)
		skip();
	char dir[128], script[256];
	snprintf(dir, sizeof dir, "%s/s-host", the_lab.dir);
	snprintf(script, sizeof script, "curl -s -m 10 -o /dev/null -w '%%{http_code}' http://%s/file",
		 HTTP_ADDR);
	const char *const args[] = { "sandbox", "run", "--session", dir,  "--upstream", "host", "--timeout",
				     "30",	"--",  "/bin/sh",   "-c", script,	NULL };
	assert_int_equal(wait_exit(mamori_spawn(the_lab.internet, NULL, args)), 0);
	json_t *evs = events_of(dir);
	json_t *start = find_event(evs, "flow_start", "dport", 80);
	assert_non_null(start);
	assert_string_equal(json_string_value(json_object_get(start, "verdict")), "limit");
	size_t i;
	json_t *ev;
	bool upstream_host = false, downloaded = false;
	json_array_foreach(evs, i, ev)
	{
		const char *type = json_string_value(json_object_get(ev, "type"));
		if (!strcmp(type, "session_start"))
			upstream_host = !strcmp(json_string_value(json_object_get(ev, "upstream")), "host");
		if (!strcmp(type, "download"))
			downloaded = json_integer_value(json_object_get(ev, "size")) == FILE_SIZE;
	}
	assert_true(upstream_host);
	assert_true(downloaded);
	json_decref(evs);
	char path[256];
	snprintf(path, sizeof path, "%s/stdout.txt", dir);
	uint8_t *out = NULL;
	size_t len = 0;
	assert_int_equal(mamori_file_read(&out, &len, path, 4096), MAMORI_OK);
	assert_true(len == 3 && !memcmp(out, "200", 3));
	free(out);
}

/* `mamori contain run`: the gateway alone. It prints the inmate namespace
 * (JSON), something else puts a program there, a signal ends the session
 * with its report, and nothing is left behind. */
static void test_cli_contain_run(void **state)
{
	(void)state;
	LAB_REQUIRE();
	if (!mamori_prog)
		skip();
	char dir[128], ready[160];
	snprintf(dir, sizeof dir, "%s/s-run", the_lab.dir);
	snprintf(ready, sizeof ready, "%s/s-run.out", the_lab.dir);
	const char *const args[] = { "contain",	       "run",	 "--session", dir, "--upstream-netns",
				     the_lab.internet, "--json", NULL };
	pid_t pid = mamori_spawn(NULL, ready, args);
	json_t *hello = NULL;
	for (int i = 0; i < 100 && !hello; i++) {
		usleep(50 * 1000);
		hello = json_load_file(ready, JSON_DISABLE_EOF_CHECK, NULL);
	}
	assert_non_null(hello);
	const char *inmate_ns = json_string_value(json_object_get(hello, "inmate_netns"));
	assert_non_null(inmate_ns);
	assert_true(contain_netns_exists(inmate_ns));
	contain_session_net net = { 0 };
	snprintf(net.inmate_ns, sizeof net.inmate_ns, "%s", inmate_ns);
	char wdir[160], out[64], script[256];
	snprintf(wdir, sizeof wdir, "%s/s-run-work", the_lab.dir);
	assert_int_equal(mamori_mkdir_p(wdir), MAMORI_OK);
	snprintf(script, sizeof script, "curl -s -m 10 -o /dev/null -w '%%{http_code}' http://%s/file",
		 HTTP_ADDR);
	assert_int_equal(inmate_sh(&net, wdir, script, out, sizeof out), 0);
	assert_string_equal(out, "200");
	kill(pid, SIGTERM);
	assert_int_equal(wait_exit(pid), 128 + SIGTERM);
	assert_false(contain_netns_exists(net.inmate_ns));
	json_decref(hello);
	json_t *evs = events_of(dir);
	assert_non_null(find_event(evs, "flow_start", "dport", 80));
	json_t *last = json_array_get(evs, json_array_size(evs) - 1);
	assert_string_equal(json_string_value(json_object_get(last, "type")), "session_end");
	assert_string_equal(json_string_value(json_object_get(last, "reason")), "interrupted");
	json_decref(evs);
	char path[256];
	struct stat sb;
	snprintf(path, sizeof path, "%s/report.json", dir);
	assert_int_equal(stat(path, &sb), 0);
	/* Cleanup from the record is idempotent: nothing is left to remove. */
	const char *const clean[] = { "contain", "cleanup", dir, NULL };
	assert_int_equal(wait_exit(mamori_spawn(NULL, NULL, clean)), 0);
}

/* A gateway killed mid-session (SIGKILL: no cleanup runs): the inmate
 * command dies with it, whatever is left in the inmate namespace has no way
 * out and nothing reaches the lab, and `mamori contain cleanup` removes the
 * namespaces from the session's record. */
static void test_cli_gateway_killed(void **state)
{
	(void)state;
	LAB_REQUIRE();
	if (!mamori_prog)
		skip();
	char dir[128];
	snprintf(dir, sizeof dir, "%s/s-kill", the_lab.dir);
	const char *const args[] = { "sandbox",
				     "run",
				     "--session",
				     dir,
				     "--upstream-netns",
				     the_lab.internet,
				     "--timeout",
				     "60",
				     "--",
				     "/bin/sleep",
				     "30",
				     NULL };
	pid_t pid = mamori_spawn(NULL, NULL, args);
	char inmate[CONTAIN_NAME_MAX] = "";
	for (int i = 0; i < 100 && (inmate[0] == '\0' || !contain_netns_exists(inmate)); i++) {
		usleep(50 * 1000);
		recorded_inmate(dir, inmate, sizeof inmate);
	}
	assert_true(contain_netns_exists(inmate));
	usleep(300 * 1000);
	kill(pid, SIGKILL);
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(contain_netns_exists(inmate)); /* nobody cleaned up */
	unsigned long p80 = atomic_load(&lab.port80);
	char wdir[160], out[256];
	snprintf(wdir, sizeof wdir, "%s/s-kill-work", the_lab.dir);
	assert_int_equal(mamori_mkdir_p(wdir), MAMORI_OK);
	/* curl: refused at once (no relay listens); ping: no answer (no
	 * NFQUEUE listener, so the kernel drops). */
	lab_inmate_sh(inmate, wdir,
		      "curl -s -m 3 -o /dev/null http://" HTTP_ADDR "/file; echo $?; "
		      "ping -n -c 1 -W 1 " PING_ADDR " >/dev/null 2>&1; echo $?",
		      out, sizeof out, 0);
	assert_string_equal(out, "7\n1\n");
	usleep(300 * 1000);
	assert_int_equal(atomic_load(&lab.port80) - p80, 0);
	const char *const clean[] = { "contain", "cleanup", dir, NULL };
	assert_int_equal(wait_exit(mamori_spawn(NULL, NULL, clean)), 0);
	assert_false(contain_netns_exists(inmate));
}

/* An interrupted `mamori sandbox run` still removes its namespaces. */
static void test_cli_sigterm_cleans_up(void **state)
{
	(void)state;
	LAB_REQUIRE();
	if (!mamori_prog)
		skip();
	char dir[128];
	snprintf(dir, sizeof dir, "%s/s-term", the_lab.dir);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int devnull = open("/dev/null", O_WRONLY);
		if (devnull >= 0) {
			dup2(devnull, STDOUT_FILENO);
			dup2(devnull, STDERR_FILENO);
		}
		execl(mamori_prog, mamori_prog, "sandbox", "run", "--session", dir, "--timeout", "60", "--",
		      "/bin/sleep", "30", (char *)NULL);
		_exit(127);
	}
	/* Wait until the session's namespaces exist, then interrupt. */
	char inmate[CONTAIN_NAME_MAX] = "";
	for (int i = 0; i < 100 && (inmate[0] == '\0' || !contain_netns_exists(inmate)); i++) {
		usleep(50 * 1000);
		recorded_inmate(dir, inmate, sizeof inmate);
	}
	assert_true(inmate[0] != '\0');
	assert_true(contain_netns_exists(inmate));
	usleep(300 * 1000);
	double t0 = mamori_now();
	kill(pid, SIGTERM);
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(mamori_now() - t0 < 5.0);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 128 + SIGTERM);
	assert_false(contain_netns_exists(inmate));
	/* The session still ended properly: its last event says why, and the
	 * report was written. */
	json_t *evs = events_of(dir);
	json_t *last = json_array_get(evs, json_array_size(evs) - 1);
	assert_string_equal(json_string_value(json_object_get(last, "type")), "session_end");
	assert_string_equal(json_string_value(json_object_get(last, "reason")), "interrupted");
	json_decref(evs);
	char path[256];
	struct stat sb;
	snprintf(path, sizeof path, "%s/report.json", dir);
	assert_int_equal(stat(path, &sb), 0);
	char gw_ns[CONTAIN_NAME_MAX];
	snprintf(gw_ns, sizeof gw_ns, "%.*s-gw", (int)strlen(inmate) - 3, inmate);
	assert_false(contain_netns_exists(gw_ns));
}

int main(int argc, char **argv)
{
	mamori_prog = argc > 1 ? argv[1] : NULL;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_forward_and_reflect),
		cmocka_unit_test(test_no_upstream_reflects_everything),
		cmocka_unit_test(test_drop_policy),
		cmocka_unit_test(test_limit_policy),
		cmocka_unit_test(test_keepalive_downloads),
		cmocka_unit_test(test_flood_detected),
		cmocka_unit_test(test_packet_path),
		cmocka_unit_test(test_stop_with_open_flow),
		cmocka_unit_test(test_cli_sandbox_run),
		cmocka_unit_test(test_cli_sigterm_cleans_up),
		cmocka_unit_test(test_cli_upstream_choices),
		cmocka_unit_test(test_cli_upstream_host),
		cmocka_unit_test(test_cli_contain_run),
		cmocka_unit_test(test_cli_gateway_killed),
	};
	return cmocka_run_group_tests(tests, lab_setup, lab_teardown);
}
