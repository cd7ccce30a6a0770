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
#include <ftw.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
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

#include "gateway.h"
#include "mamori/base.h"
#include "mamori/contain.h"
#include "netns.h"
#include "sandbox.h"

#define HTTP_ADDR      "198.51.100.10"
#define SMTP_ADDR      "203.0.113.25"
#define GW_TCP_PORT    15001
#define GW_UDP_PORT    15053
#define BLACKHOLE_BASE 4200000u
#define MAX_SESSIONS   5
#define FILE_SIZE      6000

static const char *const lab_ranges[] = { "198.51.100.0/24", "203.0.113.0/24" };
static const char *mamori_prog;

static struct {
	bool ready;
	char pid_tag[8];
	char internet[CONTAIN_NAME_MAX];
	char dir[64];
	uint32_t metric;
	bool blackholes;
	contain_session_net sessions[MAX_SESSIONS];
	bool used[MAX_SESSIONS];
	int http_fd, count_fd;
	atomic_bool stop;
	atomic_ulong port25, port80; /* TCP packets arriving in the internet namespace */
	pthread_t http_thread, count_thread;
	bool threads;
	char file[FILE_SIZE + 1];
} lab = { .http_fd = -1, .count_fd = -1 };

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void lab_cleanup(void)
{
	for (int i = 0; i < MAX_SESSIONS; i++) {
		if (lab.used[i])
			contain_session_net_destroy(&lab.sessions[i]);
		lab.used[i] = false;
	}
	if (lab.internet[0] != '\0')
		contain_netns_del(lab.internet);
	if (lab.blackholes) {
		for (size_t i = 0; i < 2; i++)
			contain_netns_blackhole(false, lab_ranges[i], lab.metric);
		lab.blackholes = false;
	}
}

static void on_signal(int sig)
{
	lab_cleanup();
	signal(sig, SIG_DFL);
	raise(sig);
}

/* HTTP/1.0 server of one file: read the request head (bounded), answer. */
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
		char req[4096];
		size_t got = 0;
		while (got < sizeof req - 1) {
			struct pollfd q = { .fd = c, .events = POLLIN };
			if (poll(&q, 1, 3000) <= 0)
				break;
			ssize_t n = recv(c, req + got, sizeof req - 1 - got, 0);
			if (n <= 0)
				break;
			got += (size_t)n;
			req[got] = '\0';
			if (strstr(req, "\r\n\r\n"))
				break;
		}
		char head[128];
		int hl = snprintf(head, sizeof head,
				  "HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n"
				  "Content-Length: %d\r\n\r\n",
				  FILE_SIZE);
		if (send(c, head, (size_t)hl, MSG_NOSIGNAL) == hl)
			send(c, lab.file, FILE_SIZE, MSG_NOSIGNAL);
		shutdown(c, SHUT_WR);
		close(c);
	}
	return NULL;
}

/* Counts TCP packets to/from ports 25 and 80 arriving on any interface of
 * the internet namespace (loopback ones once: not the outgoing copy). */
static void *count_main(void *arg)
{
	(void)arg;
	uint8_t buf[2048];
	while (!atomic_load(&lab.stop)) {
		struct pollfd p = { .fd = lab.count_fd, .events = POLLIN };
		if (poll(&p, 1, 100) <= 0)
			continue;
		struct sockaddr_ll from;
		socklen_t len = sizeof from;
		ssize_t n = recvfrom(lab.count_fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &len);
		if (n < 14 + 20 + 4 || from.sll_pkttype == PACKET_OUTGOING ||
		    ntohs(from.sll_protocol) != ETH_P_IP)
			continue;
		const uint8_t *ip = buf + 14;
		size_t ihl = (size_t)(ip[0] & 0x0f) * 4;
		if ((ip[0] >> 4) != 4 || ip[9] != IPPROTO_TCP || ihl < 20 || (size_t)n < 14 + ihl + 4)
			continue;
		const uint8_t *tcp = ip + ihl;
		unsigned sport = (unsigned)tcp[0] << 8 | tcp[1], dport = (unsigned)tcp[2] << 8 | tcp[3];
		if (sport == 25 || dport == 25)
			atomic_fetch_add(&lab.port25, 1);
		if (sport == 80 || dport == 80)
			atomic_fetch_add(&lab.port80, 1);
	}
	return NULL;
}

static int lab_setup(void **state)
{
	(void)state;
	if (geteuid() != 0)
		return 0;
	snprintf(lab.pid_tag, sizeof lab.pid_tag, "t%06x", (unsigned)getpid() & 0xffffffu);
	snprintf(lab.internet, sizeof lab.internet, CONTAIN_NS_PREFIX "%s-net", lab.pid_tag);
	snprintf(lab.dir, sizeof lab.dir, "/tmp/mamori-test-gw-%d", (int)getpid());
	lab.metric = BLACKHOLE_BASE + (uint32_t)getpid() % 100000u;
	for (size_t i = 0; i < FILE_SIZE; i++)
		lab.file[i] = (char)('a' + (i * 7 + i / 13) % 26);
	lab.file[FILE_SIZE - 1] = '\n';
	atexit(lab_cleanup);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGPIPE, SIG_IGN);
	if (mamori_mkdir_p(lab.dir) != MAMORI_OK)
		return -1;
	lab.blackholes = true;
	for (size_t i = 0; i < 2; i++)
		if (contain_netns_blackhole(true, lab_ranges[i], lab.metric) != MAMORI_OK)
			return -1;
	if (contain_netns_add(lab.internet) != MAMORI_OK ||
	    contain_netns_addr_add(lab.internet, "lo", HTTP_ADDR, 32) != MAMORI_OK ||
	    contain_netns_addr_add(lab.internet, "lo", SMTP_ADDR, 32) != MAMORI_OK)
		return -1;
	if (contain_netns_socket(&lab.http_fd, lab.internet, AF_INET, SOCK_STREAM, 0) != MAMORI_OK ||
	    contain_netns_socket(&lab.count_fd, lab.internet, AF_PACKET, SOCK_RAW, htons(ETH_P_ALL)) !=
		    MAMORI_OK)
		return -1;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(80) };
	inet_pton(AF_INET, HTTP_ADDR, &sa.sin_addr);
	int one = 1;
	setsockopt(lab.http_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(lab.http_fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lab.http_fd, 16) != 0)
		return -1;
	if (pthread_create(&lab.http_thread, NULL, http_main, NULL) != 0 ||
	    pthread_create(&lab.count_thread, NULL, count_main, NULL) != 0)
		return -1;
	lab.threads = true;
	lab.ready = true;
	return 0;
}

static int lab_teardown(void **state)
{
	(void)state;
	atomic_store(&lab.stop, true);
	if (lab.threads) {
		pthread_join(lab.http_thread, NULL);
		pthread_join(lab.count_thread, NULL);
	}
	if (lab.http_fd >= 0)
		close(lab.http_fd);
	if (lab.count_fd >= 0)
		close(lab.count_fd);
	lab_cleanup();
	if (lab.dir[0] != '\0')
		nftw(lab.dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}

#define REQUIRE_LAB()           \
	do {                    \
		if (!lab.ready) \
			skip(); \
	} while (0)

static contain_session_net *session_new(int k, bool upstream)
{
	char tag[CONTAIN_TAG_MAX];
	snprintf(tag, sizeof tag, "%s%c", lab.pid_tag, 'a' + k);
	contain_netns_config cfg = { .tag = tag,
				     .slot = (uint32_t)k,
				     .upstream_netns = upstream ? lab.internet : NULL,
				     .tcp_port = GW_TCP_PORT,
				     .udp_port = GW_UDP_PORT,
				     .nfqueue = 7 };
	lab.used[k] = true;
	if (contain_session_net_create(&lab.sessions[k], &cfg) != MAMORI_OK)
		fail_msg("session: %s", mamori_error_detail());
	return &lab.sessions[k];
}

static void session_end(int k)
{
	assert_int_equal(contain_session_net_destroy(&lab.sessions[k]), MAMORI_OK);
	assert_false(contain_netns_exists(lab.sessions[k].inmate_ns));
	lab.used[k] = false;
}

static void session_dir(char *out, size_t cap, const char *name)
{
	snprintf(out, cap, "%s/%s", lab.dir, name);
	assert_int_equal(mamori_mkdir_p(out), MAMORI_OK);
}

/* Run a shell snippet in the inmate; its stdout into `out` (NUL-terminated). */
static int inmate_sh(const contain_session_net *net, const char *dir, const char *script, char *out,
		     size_t cap)
{
	char *const argv[] = { "/bin/sh", "-c", (char *)script, NULL };
	contain_sandbox_config cfg = {
		.netns = net->inmate_ns, .session_dir = dir, .argv = argv, .timeout_ms = 30000
	};
	contain_sandbox_result res;
	if (contain_sandbox_run(&res, &cfg) != MAMORI_OK)
		fail_msg("sandbox: %s", mamori_error_detail());
	char path[256];
	snprintf(path, sizeof path, "%s/stdout.txt", dir);
	uint8_t *data = NULL;
	size_t len = 0;
	out[0] = '\0';
	if (mamori_file_read(&data, &len, path, 1 << 20) == MAMORI_OK) {
		size_t n = len < cap - 1 ? len : cap - 1;
		memcpy(out, data, n);
		out[n] = '\0';
		free(data);
	}
	assert_false(res.timed_out);
	return res.exited ? res.exit_code : 128 + res.term_signal;
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
	REQUIRE_LAB();
	contain_session_net *net = session_new(0, true);
	char dir[128];
	session_dir(dir, sizeof dir, "s-forward");
	contain_gateway *gw = NULL;
	contain_gateway_opts o = { .net = net, .session_dir = dir, .upstream_netns = lab.internet };
	if (contain_gateway_start(&gw, &o) != MAMORI_OK)
		fail_msg("gateway: %s", mamori_error_detail());
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
	session_end(0);
}

/* No upstream: nothing is forwarded; HTTP is answered by the fake service. */
static void test_no_upstream_reflects_everything(void **state)
{
	(void)state;
	REQUIRE_LAB();
	contain_session_net *net = session_new(1, false);
	char dir[128];
	session_dir(dir, sizeof dir, "s-none");
	contain_gateway *gw = NULL;
	contain_gateway_opts o = { .net = net, .session_dir = dir };
	if (contain_gateway_start(&gw, &o) != MAMORI_OK)
		fail_msg("gateway: %s", mamori_error_detail());
	unsigned long p80 = atomic_load(&lab.port80), p25 = atomic_load(&lab.port25);
	char out[8192];
	inmate_sh(net, dir, "curl -s -m 10 http://" HTTP_ADDR "/file", out, sizeof out);
	assert_true(strcmp(out, lab.file) != 0);
	assert_int_equal(inmate_sh(net, dir, swaks_cmd, out, sizeof out), 0);
	contain_gateway_stats st;
	contain_gateway_stop(gw, &st);
	assert_int_equal(st.forwarded, 0);
	assert_int_equal(st.reflected, 2);
	assert_int_equal(atomic_load(&lab.port80) - p80, 0);
	assert_int_equal(atomic_load(&lab.port25) - p25, 0);
	check_session(dir, false);
	json_t *evs = events_of(dir);
	json_t *http_start = find_event(evs, "flow_start", "dport", 80);
	assert_string_equal(json_string_value(json_object_get(http_start, "service")), "http");
	assert_non_null(json_object_get(http_start, "policy_verdict"));
	json_decref(evs);
	session_end(1);
}

/* A DROP rule: the connection is reset and nothing reaches the lab. */
static void test_drop_policy(void **state)
{
	(void)state;
	REQUIRE_LAB();
	static const char text[] = "drop proto=http\nreflect * to=sink\n";
	contain_policy *pol = NULL;
	assert_int_equal(contain_policy_parse(&pol, "test", text, sizeof text - 1), MAMORI_OK);
	contain_session_net *net = session_new(2, true);
	char dir[128];
	session_dir(dir, sizeof dir, "s-drop");
	contain_gateway *gw = NULL;
	contain_gateway_opts o = {
		.net = net, .policy = pol, .session_dir = dir, .upstream_netns = lab.internet
	};
	if (contain_gateway_start(&gw, &o) != MAMORI_OK)
		fail_msg("gateway: %s", mamori_error_detail());
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
	session_end(2);
}

/* A connection flood: past the default policy's 50/s the flows are
 * dropped, one `detect` event names the target, and the report lists it. */
static void test_flood_detected(void **state)
{
	(void)state;
	REQUIRE_LAB();
	contain_session_net *net = session_new(3, false);
	char dir[128];
	session_dir(dir, sizeof dir, "s-flood");
	contain_gateway *gw = NULL;
	contain_gateway_opts o = { .net = net, .session_dir = dir, .first_wait_ms = 50 };
	if (contain_gateway_start(&gw, &o) != MAMORI_OK)
		fail_msg("gateway: %s", mamori_error_detail());
	char out[256];
	inmate_sh(net, dir,
		  "for i in $(seq 1 120); do bash -c 'exec 3<>/dev/tcp/203.0.113.30/9999' 2>/dev/null; done; "
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
	session_end(3);
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
	REQUIRE_LAB();
	contain_session_net *net = session_new(4, false);
	char dir[128];
	session_dir(dir, sizeof dir, "s-stop");
	contain_gateway *gw = NULL;
	contain_gateway_opts o = { .net = net, .session_dir = dir };
	if (contain_gateway_start(&gw, &o) != MAMORI_OK)
		fail_msg("gateway: %s", mamori_error_detail());
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
	session_end(4);
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
	REQUIRE_LAB();
	if (!mamori_prog)
		skip();
	char dir[128];
	snprintf(dir, sizeof dir, "%s/s-cli", lab.dir);
	char db_path[160];
	snprintf(db_path, sizeof db_path, "%s/s-cli.db", lab.dir);
	unsigned long p25 = atomic_load(&lab.port25);
	char script[1024];
	snprintf(script, sizeof script, "curl -s -m 10 -o /dev/null http://%s/file; %s", HTTP_ADDR,
		 swaks_cmd);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int devnull = open("/dev/null", O_WRONLY);
		if (devnull >= 0)
			dup2(devnull, STDOUT_FILENO);
		execl(mamori_prog, mamori_prog, "sandbox", "run", "--session", dir, "--upstream-netns",
		      lab.internet, "--timeout", "40", "--db", db_path, "--", "/bin/sh", "-c", script,
		      (char *)NULL);
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
}

/* `--upstream host` is refused with a clear message (no root needed). */
static void test_cli_upstream_host_refused(void **state)
{
	(void)state;
	if (!mamori_prog)
		skip();
	char cmd[512];
	snprintf(cmd, sizeof cmd, "%s sandbox run --upstream host -- /bin/true 2>&1", mamori_prog);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	char out[1024];
	size_t n = fread(out, 1, sizeof out - 1, p);
	out[n] = '\0';
	int status = pclose(p);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), MAMORI_EXIT_USAGE);
	assert_non_null(strstr(out, "--upstream-netns"));
}

/* An interrupted `mamori sandbox run` still removes its namespaces. */
static void test_cli_sigterm_cleans_up(void **state)
{
	(void)state;
	REQUIRE_LAB();
	if (!mamori_prog)
		skip();
	char dir[128];
	snprintf(dir, sizeof dir, "%s/s-term", lab.dir);
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
		cmocka_unit_test(test_flood_detected),
		cmocka_unit_test(test_stop_with_open_flow),
		cmocka_unit_test(test_cli_sandbox_run),
		cmocka_unit_test(test_cli_sigterm_cleans_up),
		cmocka_unit_test(test_cli_upstream_host_refused),
	};
	return cmocka_run_group_tests(tests, lab_setup, lab_teardown);
}
