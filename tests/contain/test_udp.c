/*
 * Tests of the UDP relay (src/contain/udp.c) with real namespaces and real
 * peers (root required; skipped otherwise).
 *
 * The lab, as in test_netns.c: an "internet" namespace of the test's own
 * ("mamori-t<pid>-net") with dnsmasq on 198.51.100.53 (cc.example ->
 * 203.0.113.10), a UDP echo server on 198.51.100.10:7 and a packet counter
 * on every interface, and a blackhole route for both TEST-NET ranges in the
 * host's namespace while the tests run. The inmate speaks through `dig` and
 * bash's /dev/udp, inside the sandbox. Every namespace, route and dnsmasq is
 * removed at the end, also when an assertion fails (group teardown), at
 * exit, and on SIGTERM/SIGINT; the last test asserts that nothing of ours
 * is left.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fakesvc.h"
#include "lab.h"
#include "mamori/base.h"
#include "netns.h"
#include "policy.h"
#include "sandbox.h"
#include "udp.h"

#define DNS_ADDR  "198.51.100.53"
#define CC_ANSWER "203.0.113.10"
#define ECHO_ADDR "198.51.100.10"
#define ECHO_PORT 7

/* This test's own part of the lab (lab.h has the namespaces). */
static struct {
	pid_t dnsmasq;
	int echo_fd;
	atomic_bool stop;
	atomic_ulong packets;	 /* received in the internet namespace */
	atomic_ulong udp_to_dns; /* UDP datagrams that arrived for port 53 there */
	atomic_ulong udp_to_9;	 /* and for port 9 (the scan's) */
	atomic_ulong echoed;	 /* datagrams the echo server answered */
	atomic_uint echo_peer;	 /* address the echo server last saw (network order) */
	pthread_t echo_thread;
	bool threads;
} lab = { .echo_fd = -1 };

static void dnsmasq_stop(void)
{
	if (lab.dnsmasq > 0) {
		kill(lab.dnsmasq, SIGKILL);
		waitpid(lab.dnsmasq, NULL, 0);
		lab.dnsmasq = 0;
	}
}

static void *echo_main(void *arg)
{
	(void)arg;
	uint8_t buf[2048];
	while (!atomic_load(&lab.stop)) {
		struct pollfd p = { .fd = lab.echo_fd, .events = POLLIN };
		if (poll(&p, 1, 100) <= 0)
			continue;
		struct sockaddr_in peer;
		socklen_t plen = sizeof peer;
		ssize_t n = recvfrom(lab.echo_fd, buf, sizeof buf, 0, (struct sockaddr *)&peer, &plen);
		if (n < 0)
			continue;
		atomic_store(&lab.echo_peer, peer.sin_addr.s_addr);
		if (sendto(lab.echo_fd, buf, (size_t)n, 0, (struct sockaddr *)&peer, plen) == n)
			atomic_fetch_add(&lab.echoed, 1);
	}
	return NULL;
}

/* Counts every packet that arrives in the internet namespace, and among
 * them the UDP datagrams to ports 53 and 9 (lab_count_start). */
static void count_packet(const uint8_t *ip, size_t len)
{
	atomic_fetch_add(&lab.packets, 1);
	size_t ihl = (size_t)(ip[0] & 0x0f) * 4;
	if (ip[9] != 17 || len < ihl + 8)
		return;
	if (ip[ihl + 2] == 0 && ip[ihl + 3] == 53)
		atomic_fetch_add(&lab.udp_to_dns, 1);
	if (ip[ihl + 2] == 0 && ip[ihl + 3] == 9)
		atomic_fetch_add(&lab.udp_to_9, 1);
}

static const char *find_program(const char *name, char *buf, size_t size)
{
	static const char *const dirs[] = { "/usr/sbin", "/usr/bin", "/sbin", "/bin" };
	for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
		snprintf(buf, size, "%s/%s", dirs[i], name);
		if (access(buf, X_OK) == 0)
			return buf;
	}
	return NULL;
}

/* A query for cc.example (A, IN) with id 0x4d4d. */
static const uint8_t cc_query[] = { 0x4d, 0x4d, 0x01, 0x00, 0,	 1,   0,   0,	0,   0, 0, 0, 2, 'c',
				    'c',  7,	'e',  'x',  'a', 'm', 'p', 'l', 'e', 0, 0, 1, 0, 1 };

/* dnsmasq answers once it is up: ask it from inside the internet namespace. */
static bool dnsmasq_answers(void)
{
	int fd = -1;
	if (contain_netns_socket(&fd, the_lab.internet, AF_INET, SOCK_DGRAM, 0) != MAMORI_OK)
		return false;
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(53) };
	inet_pton(AF_INET, DNS_ADDR, &to.sin_addr);
	bool ok = false;
	for (int i = 0; i < 50 && !ok; i++) {
		uint8_t ans[512];
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (sendto(fd, cc_query, sizeof cc_query, 0, (struct sockaddr *)&to, sizeof to) < 0) {
			usleep(100000);
			continue;
		}
		ok = poll(&p, 1, 100) == 1 && recv(fd, ans, sizeof ans, 0) > 12 && ans[0] == 0x4d;
	}
	close(fd);
	return ok;
}

/* dnsmasq in the internet namespace: one record, nothing else. */
static int dnsmasq_start(void)
{
	char prog[64];
	if (find_program("dnsmasq", prog, sizeof prog) == NULL)
		return 0; /* the DNS forward test skips */
	int nsfd = -1;
	if (contain_netns_open(&nsfd, the_lab.internet) != MAMORI_OK)
		return -1;
	char pidfile[128], logfile[128];
	snprintf(pidfile, sizeof pidfile, "--pid-file=%s/dnsmasq.pid", the_lab.dir);
	snprintf(logfile, sizeof logfile, "--log-facility=%s/dnsmasq.log", the_lab.dir);
	pid_t pid = fork();
	if (pid < 0) {
		close(nsfd);
		return -1;
	}
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (setns(nsfd, CLONE_NEWNET) != 0)
			_exit(126);
		char *const argv[] = { prog,
				       "--keep-in-foreground",
				       "--conf-file=/dev/null",
				       "--no-resolv",
				       "--no-hosts",
				       "--bind-interfaces",
				       "--listen-address=" DNS_ADDR,
				       "--port=53",
				       "--user=root",
				       "--address=/cc.example/" CC_ANSWER,
				       pidfile,
				       logfile,
				       "--log-queries",
				       NULL };
		execv(prog, argv);
		_exit(127);
	}
	close(nsfd);
	lab.dnsmasq = pid;
	return dnsmasq_answers() ? 0 : -1;
}

static int lab_setup(void **state)
{
	(void)state;
	static const char *const addrs[] = { ECHO_ADDR, DNS_ADDR, NULL };
	if (lab_open("udp", addrs) != 0)
		return -1;
	if (!the_lab.ready)
		return 0;
	if (contain_netns_socket(&lab.echo_fd, the_lab.internet, AF_INET, SOCK_DGRAM, 0) != MAMORI_OK)
		return -1;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(ECHO_PORT) };
	inet_pton(AF_INET, ECHO_ADDR, &sa.sin_addr);
	if (bind(lab.echo_fd, (struct sockaddr *)&sa, sizeof sa) != 0)
		return -1;
	if (dnsmasq_start() != 0 || lab_count_start(count_packet) != 0)
		return -1;
	if (pthread_create(&lab.echo_thread, NULL, echo_main, NULL) != 0)
		return -1;
	lab.threads = true;
	return 0;
}

static int lab_teardown(void **state)
{
	(void)state;
	atomic_store(&lab.stop, true);
	if (lab.threads)
		pthread_join(lab.echo_thread, NULL);
	if (lab.echo_fd >= 0)
		close(lab.echo_fd);
	dnsmasq_stop();
	lab_close();
	return 0;
}

/* A session in slot `k` linked to the lab internet. */
static contain_session_net *session_new(int k)
{
	return lab_session_new(k, true);
}

/* Run a bash snippet in the inmate; returns its exit code, stdout in `out`. */
static int inmate_sh(const contain_session_net *net, const char *script, char *out, size_t out_size)
{
	return lab_inmate_sh(net->inmate_ns, the_lab.dir, script, out, out_size, 10000);
}

/* What the callbacks saw, and what decide answers. The relay's thread
 * writes, the test reads after waiting for `ended`: the lock orders them. */
typedef struct probe {
	int verdict;
	relay_limits limits;	       /* what decide answers FORWARD with */
	uint16_t drop_port;	       /* flows to this port get DROP instead (0: none) */
	int evicted;		       /* flows ended with "evicted" */
	const contain_dns_config *dns; /* the reflect callback's answers */
	pthread_mutex_t lock;
	atomic_int decided, ended;
	contain_udp_flow first_flow; /* as decide saw it */
	contain_udp_flow ended_flow; /* the last one to end */
	unsigned data_up, data_down; /* on_data calls */
	uint8_t last_up[512], last_down[512];
	size_t last_up_n, last_down_n;
	char qname[256]; /* from the reflect callback */
} probe;

static void probe_init(probe *p, int verdict)
{
	memset(p, 0, sizeof *p);
	p->verdict = verdict;
	pthread_mutex_init(&p->lock, NULL);
}

static int probe_decide(void *ctx, const contain_udp_flow *f, const uint8_t *data, size_t n,
			relay_limits *lim)
{
	probe *p = ctx;
	(void)data;
	(void)n;
	*lim = p->limits;
	pthread_mutex_lock(&p->lock);
	if (atomic_load(&p->decided) == 0)
		p->first_flow = *f;
	pthread_mutex_unlock(&p->lock);
	atomic_fetch_add(&p->decided, 1);
	if (p->drop_port != 0 && ntohs(f->orig_dst.sin_port) == p->drop_port)
		return RELAY_DROP;
	return p->verdict;
}

static void probe_data(void *ctx, const contain_udp_flow *f, bool up, const uint8_t *data, size_t n)
{
	probe *p = ctx;
	(void)f;
	size_t keep = n < sizeof p->last_up ? n : sizeof p->last_up;
	pthread_mutex_lock(&p->lock);
	if (up) {
		p->data_up++;
		memcpy(p->last_up, data, keep);
		p->last_up_n = keep;
	} else {
		p->data_down++;
		memcpy(p->last_down, data, keep);
		p->last_down_n = keep;
	}
	pthread_mutex_unlock(&p->lock);
}

static void probe_end(void *ctx, const contain_udp_flow *f)
{
	probe *p = ctx;
	pthread_mutex_lock(&p->lock);
	p->ended_flow = *f;
	if (strcmp(f->end_reason, "evicted") == 0)
		p->evicted++;
	pthread_mutex_unlock(&p->lock);
	atomic_fetch_add(&p->ended, 1);
}

/* The gateway's fake resolver, the real one. */
static int probe_reflect(void *ctx, const contain_udp_flow *f, const uint8_t *in, size_t n, uint8_t *out,
			 size_t out_cap, size_t *out_len)
{
	probe *p = ctx;
	(void)f;
	char qname[256];
	int rc = contain_fakedns_answer(out, out_cap, out_len, in, n, p->dns, qname);
	if (rc == MAMORI_OK) {
		pthread_mutex_lock(&p->lock);
		memcpy(p->qname, qname, sizeof p->qname);
		pthread_mutex_unlock(&p->lock);
	}
	return rc;
}

static contain_udp *udp_start(const contain_session_net *net, probe *p, const char *upstream_ns,
			      unsigned max_flows, unsigned idle_ms)
{
	contain_udp_config cfg = { .listen_netns = net->gateway_ns,
				   .listen_addr = net->gateway_addr,
				   .port = LAB_UDP_PORT,
				   .upstream_netns = upstream_ns,
				   .max_flows = max_flows,
				   .idle_timeout_ms = idle_ms,
				   .decide = probe_decide,
				   .reflect = p->dns != NULL ? probe_reflect : NULL,
				   .on_data = probe_data,
				   .on_end = probe_end,
				   .ctx = p };
	contain_udp *u = NULL;
	if (contain_udp_start(&u, &cfg) != MAMORI_OK)
		fail_msg("udp: %s", mamori_error_detail());
	return u;
}

/* Let stragglers of earlier traffic pass, then start a fresh count. */
static void packets_reset(void)
{
	usleep(200000);
	atomic_store(&lab.packets, 0);
	atomic_store(&lab.udp_to_dns, 0);
	atomic_store(&lab.udp_to_9, 0);
}

static unsigned long packets_after_quiet(void)
{
	usleep(500000);
	return atomic_load(&lab.packets);
}

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* True when `ans` carries the 4 bytes of `addr` somewhere after its header. */
static bool answer_has(const uint8_t *ans, size_t n, const char *addr)
{
	uint8_t a[4];
	inet_pton(AF_INET, addr, a);
	for (size_t i = 12; i + 4 <= n; i++)
		if (memcmp(ans + i, a, 4) == 0)
			return true;
	return false;
}

static const char dig_cc[] = "dig +short +time=2 +tries=1 @" DNS_ADDR " cc.example A";

/* ---------------------------------------------------------------- */

static void test_config_errors(void **state)
{
	(void)state;
	contain_udp *u = (contain_udp *)1;
	contain_udp_config cfg = { 0 };
	assert_int_equal(contain_udp_start(&u, &cfg), MAMORI_EINVAL); /* no decide */
	assert_null(u);
	probe p;
	probe_init(&p, RELAY_DROP);
	cfg.decide = probe_decide;
	cfg.listen_netns = "../etc";
	assert_int_equal(contain_udp_start(&u, &cfg), MAMORI_EINVAL);
	cfg.listen_netns = NULL;
	cfg.max_flows = CONTAIN_UDP_FLOWS_MAX + 1;
	assert_int_equal(contain_udp_start(&u, &cfg), MAMORI_EINVAL);
	contain_udp_stop(NULL);
}

/* 1. dig in the inmate asks dnsmasq in the lab through the gateway's
 * up0 link: the answer comes back from 198.51.100.53:53 (dig checks), the
 * callbacks saw query and answer, and the flow ends with the answer. */
static void test_dns_forward(void **state)
{
	(void)state;
	LAB_REQUIRE();
	if (lab.dnsmasq <= 0)
		skip();
	contain_session_net *net = session_new(0);
	probe p;
	probe_init(&p, RELAY_FORWARD);
	contain_udp *u = udp_start(net, &p, net->gateway_ns, 0, 0);
	packets_reset();
	char out[256];
	int code = inmate_sh(net, dig_cc, out, sizeof out);
	lab_wait_for(&p.ended, 1);
	contain_udp_stats st;
	contain_udp_stats_get(u, &st);
	contain_udp_stop(u);
	assert_int_equal(code, 0);
	assert_string_equal(out, CC_ANSWER "\n");
	assert_true(atomic_load(&lab.udp_to_dns) >= 1); /* it really went to the lab */
	assert_int_equal(atomic_load(&p.decided), 1);
	char a[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &p.first_flow.orig_dst.sin_addr, a, sizeof a);
	assert_string_equal(a, DNS_ADDR);
	assert_int_equal(ntohs(p.first_flow.orig_dst.sin_port), 53);
	assert_int_equal(p.first_flow.src.sin_addr.s_addr, net->inmate_addr.s_addr);
	assert_int_equal(p.first_flow.verdict, 0);
	/* on_data: the query (QR clear), then the answer to it (QR set, same
	 * id) naming the address. */
	assert_int_equal(p.data_up, 1);
	assert_int_equal(p.data_down, 1);
	assert_true(p.last_up_n > 12 && p.last_down_n > 12);
	assert_int_equal(p.last_up[2] & 0x80, 0);
	assert_int_equal(p.last_down[2] & 0x80, 0x80);
	assert_int_equal(be16(p.last_up), be16(p.last_down));
	assert_true(answer_has(p.last_down, p.last_down_n, CC_ANSWER));
	assert_int_equal(atomic_load(&p.ended), 1);
	assert_int_equal(p.ended_flow.verdict, RELAY_FORWARD);
	assert_string_equal(p.ended_flow.end_reason, "answered");
	assert_int_equal(p.ended_flow.packets_up, 1);
	assert_int_equal(p.ended_flow.packets_down, 1);
	assert_int_equal(p.ended_flow.bytes_down, p.last_down_n);
	assert_int_equal(p.ended_flow.dropped_up, 0);
	assert_true(p.ended_flow.t_end >= p.ended_flow.t_start);
	assert_int_equal(st.forwarded, 1);
	assert_int_equal(st.datagrams_up, 1);
	assert_int_equal(st.datagrams_down, 1);
	assert_int_equal(st.active, 0);
	lab_session_end(0);
}

/* 2. No upstream: FORWARD falls back to REFLECT and the fake resolver of
 * the policy answers (a rule, then the sinkhole); nothing reaches the lab
 * although the session's up0 link is in place. */
static void test_dns_reflect(void **state)
{
	(void)state;
	LAB_REQUIRE();
	static const char policy_text[] = "dns host=cc.example answer=203.0.113.9\n"
					  "dns sinkhole=203.0.113.66 ttl=60\n";
	contain_policy *pol = NULL;
	if (contain_policy_parse(&pol, "udp-test", policy_text, sizeof policy_text - 1) != MAMORI_OK)
		fail_msg("policy: %s", mamori_error_detail());
	contain_session_net *net = session_new(1);
	probe p;
	probe_init(&p, RELAY_FORWARD);
	p.dns = contain_policy_dns(pol);
	contain_udp *u = udp_start(net, &p, NULL, 0, 0);
	packets_reset();
	char out[256];
	int code = inmate_sh(net,
			     "dig +short +time=2 +tries=1 @" DNS_ADDR " cc.example A;"
			     " dig +short +time=2 +tries=1 @" DNS_ADDR " evil.example A",
			     out, sizeof out);
	lab_wait_for(&p.ended, 2);
	unsigned long leaked = packets_after_quiet();
	contain_udp_stats st;
	contain_udp_stats_get(u, &st);
	contain_udp_stop(u);
	contain_policy_free(pol);
	assert_int_equal(code, 0);
	assert_string_equal(out, "203.0.113.9\n203.0.113.66\n");
	assert_int_equal(leaked, 0);
	assert_int_equal(atomic_load(&p.decided), 2);
	assert_int_equal(atomic_load(&p.ended), 2);
	assert_int_equal(p.ended_flow.verdict, RELAY_REFLECT);
	assert_string_equal(p.ended_flow.end_reason, "answered");
	assert_string_equal(p.qname, "evil.example");
	assert_int_equal(p.data_up, 2);
	assert_int_equal(p.data_down, 2);
	assert_true(answer_has(p.last_down, p.last_down_n, "203.0.113.66"));
	assert_int_equal(st.reflected, 2);
	assert_int_equal(st.forwarded, 0);
	lab_session_end(1);
}

/* A stub resolver asks from one port, the next query right after each
 * answer: each query is a flow of its own (the last one ended with its
 * answer), and none is lost although the next often reaches the previous
 * flow's socket while that is being closed. */
static void test_dns_back_to_back(void **state)
{
	(void)state;
	LAB_REQUIRE();
	static contain_dns_config dns = { .sinkhole = { 203, 0, 113, 66 }, .ttl = 60 };
	contain_session_net *net = session_new(1);
	probe p;
	probe_init(&p, RELAY_REFLECT);
	p.dns = &dns;
	contain_udp *u = udp_start(net, &p, NULL, 0, 0);
	char out[256];
	int code = inmate_sh(net,
			     "python3 -c \"\n"
			     "import socket\n"
			     "q = bytes.fromhex('4d4d01000001000000000000026363076578616d706c650000010001')\n"
			     "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
			     "s.connect(('" DNS_ADDR "', 53))\n"
			     "s.settimeout(2)\n"
			     "n = 0\n"
			     "try:\n"
			     "    for i in range(3000):\n"
			     "        s.send(q)\n"
			     "        if s.recv(512)[:2] == q[:2]: n += 1\n"
			     "except OSError:\n"
			     "    pass\n"
			     "print(n, end='')\"",
			     out, sizeof out);
	lab_wait_for(&p.ended, 3000);
	contain_udp_stats st;
	contain_udp_stats_get(u, &st);
	contain_udp_stop(u);
	if (code == 127)
		skip(); /* no python3 */
	assert_int_equal(code, 0);
	assert_string_equal(out, "3000");
	assert_int_equal(st.flows, 3000);
	assert_int_equal(st.reflected, 3000);
	assert_int_equal(st.datagrams_down, 3000);
	assert_int_equal(st.not_passed, 0);
	assert_int_equal(atomic_load(&p.ended), 3000);
	lab_session_end(1);
}

/* With dns_keep_open a DNS flow lives on after its answer and ends idle;
 * a relay asked for port 0 gets a port of its own. */
static void test_dns_keep_open(void **state)
{
	(void)state;
	LAB_REQUIRE();
	if (lab.dnsmasq <= 0)
		skip();
	contain_session_net *net = session_new(2);
	probe p;
	probe_init(&p, RELAY_FORWARD);
	contain_udp_config cfg = { .listen_netns = net->gateway_ns,
				   .listen_addr = net->gateway_addr,
				   .port = LAB_UDP_PORT,
				   .upstream_netns = net->gateway_ns,
				   .idle_timeout_ms = 400,
				   .dns_keep_open = true,
				   .decide = probe_decide,
				   .on_end = probe_end,
				   .ctx = &p };
	contain_udp *u = NULL;
	assert_int_equal(contain_udp_start(&u, &cfg), MAMORI_OK);
	cfg.port = 0;
	contain_udp *spare = NULL;
	assert_int_equal(contain_udp_start(&spare, &cfg), MAMORI_OK);
	assert_int_not_equal(contain_udp_port(spare), 0);
	assert_int_not_equal(contain_udp_port(spare), LAB_UDP_PORT);
	contain_udp_stop(spare);
	char out[256];
	int code = inmate_sh(net, dig_cc, out, sizeof out);
	double answered = mamori_now();
	lab_wait_for(&p.ended, 1);
	contain_udp_stop(u);
	assert_int_equal(code, 0);
	assert_string_equal(out, CC_ANSWER "\n");
	assert_int_equal(atomic_load(&p.ended), 1);
	assert_string_equal(p.ended_flow.end_reason, "idle");
	assert_true(p.ended_flow.t_end - answered > 0.2);
	lab_session_end(2);
}

/* 3. DROP: dig gets no answer, nothing leaves, the flow ends idle with its
 * datagram counted as dropped. */
static void test_drop(void **state)
{
	(void)state;
	LAB_REQUIRE();
	contain_session_net *net = session_new(2);
	probe p;
	probe_init(&p, RELAY_DROP);
	contain_udp *u = udp_start(net, &p, net->gateway_ns, 0, 400);
	packets_reset();
	char out[256];
	int code = inmate_sh(net, "dig +short +time=1 +tries=1 @" DNS_ADDR " cc.example A; echo rc=$?", out,
			     sizeof out);
	lab_wait_for(&p.ended, 1);
	unsigned long leaked = packets_after_quiet();
	contain_udp_stats st;
	contain_udp_stats_get(u, &st);
	contain_udp_stop(u);
	assert_int_equal(code, 0);
	assert_non_null(strstr(out, "rc=9")); /* dig: no reply from any server */
	assert_int_equal(leaked, 0);
	assert_int_equal(atomic_load(&p.ended), 1);
	assert_int_equal(p.ended_flow.verdict, RELAY_DROP);
	assert_string_equal(p.ended_flow.end_reason, "idle");
	assert_int_equal(p.ended_flow.packets_up, 1);
	assert_int_equal(p.ended_flow.dropped_up, 1);
	assert_int_equal(p.ended_flow.packets_down, 0);
	assert_int_equal(p.data_up, 1); /* the gateway still sees what was dropped */
	assert_int_equal(p.data_down, 0);
	assert_int_equal(st.dropped, 1);
	assert_int_equal(st.not_passed, 1);
	assert_int_equal(st.datagrams_down, 0);
	lab_session_end(2);
}

/* 4. A generic UDP exchange (not DNS), both ways, twice on one flow. Bash's
 * /dev/udp socket is connected: it reads only what comes from the echo
 * server's own address and port. The echo server sees the gateway's up0
 * address; the flow ends idle with all counts. */
static void test_echo_forward(void **state)
{
	(void)state;
	LAB_REQUIRE();
	contain_session_net *net = session_new(3);
	probe p;
	probe_init(&p, RELAY_FORWARD);
	contain_udp *u = udp_start(net, &p, net->gateway_ns, 0, 600);
	atomic_store(&lab.echo_peer, 0);
	atomic_store(&lab.echoed, 0);
	char out[256];
	int code = inmate_sh(net,
			     "exec 3<>/dev/udp/" ECHO_ADDR
			     "/7 || exit 3; printf one >&3; timeout 2 head -c 3 <&3;"
			     " printf -- -two >&3; timeout 2 head -c 4 <&3",
			     out, sizeof out);
	lab_wait_for(&p.ended, 1);
	contain_udp_stats st;
	contain_udp_stats_get(u, &st);
	contain_udp_stop(u);
	assert_int_equal(code, 0);
	assert_string_equal(out, "one-two");
	assert_int_equal(atomic_load(&lab.echo_peer), net->up_gw_addr.s_addr);
	assert_int_equal(atomic_load(&lab.echoed), 2);
	assert_int_equal(atomic_load(&p.decided), 1);
	assert_int_equal(atomic_load(&p.ended), 1);
	assert_int_equal(p.ended_flow.verdict, RELAY_FORWARD);
	assert_string_equal(p.ended_flow.end_reason, "idle");
	assert_int_equal(p.ended_flow.packets_up, 2);
	assert_int_equal(p.ended_flow.packets_down, 2);
	assert_int_equal(p.ended_flow.bytes_up, 7);
	assert_int_equal(p.ended_flow.bytes_down, 7);
	assert_int_equal(p.data_up, 2);
	assert_int_equal(p.data_down, 2);
	assert_int_equal(p.last_down_n, 4);
	assert_memory_equal(p.last_down, "-two", 4);
	assert_int_equal(st.flows, 1);
	assert_int_equal(st.datagrams_up, 2);
	assert_int_equal(st.datagrams_down, 2);
	lab_session_end(3);
}

/* LIMIT on datagrams: past the byte budget (both ways together) nothing
 * passes; the rate's bucket drops what it cannot cover, like a saturated
 * link. */
static void test_echo_limits(void **state)
{
	(void)state;
	LAB_REQUIRE();
	contain_session_net *net = session_new(3);
	probe p;
	probe_init(&p, RELAY_FORWARD);
	p.limits.byte_budget = 10;
	contain_udp *u = udp_start(net, &p, net->gateway_ns, 0, 600);
	atomic_store(&lab.echoed, 0);
	char out[256];
	/* "one" up and back (6 bytes), "-two" up (10): its echo would pass 10. */
	inmate_sh(net,
		  "exec 3<>/dev/udp/" ECHO_ADDR "/7 || exit 3; printf one >&3; timeout 2 head -c 3 <&3;"
		  " printf -- -two >&3; timeout 1 head -c 4 <&3; echo",
		  out, sizeof out);
	lab_wait_for(&p.ended, 1);
	contain_udp_stop(u);
	assert_string_equal(out, "one\n");
	assert_int_equal(atomic_load(&lab.echoed), 2); /* both reached the lab */
	assert_int_equal(p.ended_flow.limited, 1);     /* the second echo did not come back */
	assert_int_equal(p.ended_flow.limits.byte_budget, 10);
	lab_session_end(3);

	net = session_new(3);
	probe_init(&p, RELAY_FORWARD);
	p.limits.byte_rate = 1000; /* bucket: 64 KiB at the start, then 1,000 bytes/s */
	u = udp_start(net, &p, net->gateway_ns, 0, 600);
	atomic_store(&lab.echoed, 0);
	inmate_sh(net,
		  "exec 3<>/dev/udp/" ECHO_ADDR "/7 || exit 3;"
		  " for i in $(seq 200); do printf '%1000s' x >&3; done",
		  out, sizeof out);
	lab_wait_for(&p.ended, 1);
	contain_udp_stop(u);
	/* 200 KB up and whatever echoes back share one 64 KiB start. */
	unsigned long echoed = atomic_load(&lab.echoed);
	/* What passed both ways fits the bucket: its 64 KiB start and 1,000
	 * bytes a second for as long as the flow lived. */
	double secs = p.ended_flow.t_end - p.ended_flow.t_start;
	uint64_t passed = (uint64_t)echoed + p.ended_flow.packets_down;
	assert_true(echoed >= 20);
	assert_true((double)passed * 1000.0 <= 65536.0 + 1000.0 * (secs + 1.0));
	/* Each datagram from the inmate that did not reach the lab was held
	 * back by the bucket (the kernel may drop a few more under load). */
	assert_true(p.ended_flow.limited >= p.ended_flow.packets_up - echoed);
	assert_true(p.ended_flow.limited > 100);
	lab_session_end(3);
}

/* 5. More flows than the table holds: the excess is dropped and counted,
 * the flows inside go on, and once they expire new ones are served. This
 * relay listens on INADDR_ANY, which the TPROXY rule finds as well. */
static void test_flow_cap(void **state)
{
	(void)state;
	LAB_REQUIRE();
	contain_session_net *net = session_new(4);
	probe p;
	probe_init(&p, RELAY_FORWARD);
	contain_udp_config cfg = { .listen_netns = net->gateway_ns,
				   .port = LAB_UDP_PORT,
				   .upstream_netns = net->gateway_ns,
				   .max_flows = 2,
				   .idle_timeout_ms = 1500,
				   .decide = probe_decide,
				   .on_end = probe_end,
				   .ctx = &p };
	contain_udp *u = NULL;
	assert_int_equal(contain_udp_start(&u, &cfg), MAMORI_OK);
	assert_int_equal(contain_udp_port(u), LAB_UDP_PORT);
	atomic_store(&lab.echoed, 0);
	char out[256];
	/* Five sockets, five source ports, five flows; the first two stay open
	 * and still get answers after the others were refused. */
	int code = inmate_sh(net,
			     "exec 3<>/dev/udp/" ECHO_ADDR "/7 4<>/dev/udp/" ECHO_ADDR "/7 || exit 3;"
			     " printf a >&3; printf b >&4; timeout 1 head -c 1 <&3; timeout 1 head -c 1 <&4;"
			     " for i in 1 2 3; do printf x >/dev/udp/" ECHO_ADDR "/7; done; sleep 0.2;"
			     " printf c >&3; timeout 1 head -c 1 <&3",
			     out, sizeof out);
	contain_udp_stats st;
	contain_udp_stats_get(u, &st);
	assert_int_equal(code, 0);
	assert_string_equal(out, "abc");
	assert_int_equal(st.flows, 2);
	assert_int_equal(st.refused_over_cap, 3);
	assert_int_equal(st.active, 2);
	assert_int_equal(atomic_load(&lab.echoed), 3);
	lab_wait_for(&p.ended, 2);
	assert_int_equal(atomic_load(&p.ended), 2);
	code = inmate_sh(net, "exec 3<>/dev/udp/" ECHO_ADDR "/7; printf again >&3; timeout 2 head -c 5 <&3",
			 out, sizeof out);
	contain_udp_stats_get(u, &st);
	contain_udp_stop(u);
	assert_int_equal(code, 0);
	assert_string_equal(out, "again");
	assert_int_equal(st.flows, 3);
	assert_int_equal(st.refused_over_cap, 3);
	lab_session_end(4);
}

/* A scan fills the table with DROP flows; they make room for the flows
 * the inmate needs, quietest first, and nothing is refused. */
static void test_drop_flows_evicted(void **state)
{
	(void)state;
	LAB_REQUIRE();
	contain_session_net *net = session_new(7);
	probe p;
	probe_init(&p, RELAY_FORWARD);
	p.drop_port = 9;
	contain_udp *u = udp_start(net, &p, net->gateway_ns, 2, 0);
	packets_reset();
	char out[256];
	int code = inmate_sh(net,
			     "for i in 1 2 3 4; do printf x >/dev/udp/203.0.113.$i/9; done;"
			     " exec 3<>/dev/udp/" ECHO_ADDR
			     "/7 || exit 3; printf hi >&3; timeout 2 head -c 2 <&3",
			     out, sizeof out);
	contain_udp_stats st;
	contain_udp_stats_get(u, &st);
	assert_int_equal(code, 0);
	assert_string_equal(out, "hi");
	assert_int_equal(st.flows, 5);
	assert_int_equal(st.dropped, 4);
	assert_int_equal(st.forwarded, 1);
	assert_int_equal(st.evicted, 3);
	assert_int_equal(st.refused_over_cap, 0);
	assert_int_equal(st.active, 2);
	assert_int_equal(p.evicted, 3);
	/* The scan's datagrams never left (the echo's did, and came back). */
	assert_int_equal(atomic_load(&lab.udp_to_9), 0);
	assert_true(atomic_load(&lab.packets) >= 1);
	contain_udp_stop(u);
	assert_int_equal(atomic_load(&p.ended), 5);
	lab_session_end(7);
}

/* 6. Stop with flows open (idle timeout 30 s) returns at once and ends
 * each flow with "stop". */
static void test_stop_with_open_flows(void **state)
{
	(void)state;
	LAB_REQUIRE();
	contain_session_net *net = session_new(5);
	probe p;
	probe_init(&p, RELAY_FORWARD);
	contain_udp *u = udp_start(net, &p, net->gateway_ns, 0, 0);
	char out[256];
	int code = inmate_sh(net,
			     "for i in 1 2 3; do printf x >/dev/udp/" ECHO_ADDR "/7; done;"
			     " printf q >/dev/udp/" DNS_ADDR "/5353; sleep 0.3",
			     out, sizeof out);
	contain_udp_stats st;
	contain_udp_stats_get(u, &st);
	assert_int_equal(code, 0);
	assert_int_equal(st.active, 4);
	assert_int_equal(atomic_load(&p.ended), 0);
	double t0 = mamori_now();
	contain_udp_stop(u);
	double took = mamori_now() - t0;
	assert_true(took < 0.3);
	assert_int_equal(atomic_load(&p.ended), 4);
	assert_string_equal(p.ended_flow.end_reason, "stop");
	lab_session_end(5);
}

/* An upstream without a route to the destination (here the lab namespace
 * itself, which has none to 10.99/16; the gateway namespace now routes
 * everything else into a dead end instead): the flow keeps its verdict,
 * records why its upstream socket failed and drops its datagrams without
 * asking again. */
static void test_forward_unrouted(void **state)
{
	(void)state;
	LAB_REQUIRE();
	contain_session_net *net = session_new(0);
	probe p;
	probe_init(&p, RELAY_FORWARD);
	contain_udp *u = udp_start(net, &p, the_lab.internet, 0, 300);
	packets_reset();
	char out[64];
	int code = inmate_sh(net, "exec 3<>/dev/udp/10.99.0.1/9 || exit 3; printf a >&3; printf b >&3", out,
			     sizeof out);
	lab_wait_for(&p.ended, 1);
	unsigned long leaked = packets_after_quiet();
	contain_udp_stats st;
	contain_udp_stats_get(u, &st);
	contain_udp_stop(u);
	assert_int_equal(code, 0);
	assert_int_equal(leaked, 0);
	assert_int_equal(atomic_load(&p.decided), 1);
	assert_int_equal(p.ended_flow.verdict, RELAY_FORWARD);
	assert_int_equal(p.ended_flow.upstream_errno, ENETUNREACH);
	assert_int_equal(p.ended_flow.packets_up, 2);
	assert_int_equal(p.ended_flow.dropped_up, 2);
	assert_int_equal(st.upstream_failed, 1);
	assert_int_equal(st.not_passed, 2);
	/* From the gateway namespace the same datagrams go nowhere either
	 * (whether the kernel refuses them or routes them into the dead end). */
	probe_init(&p, RELAY_FORWARD);
	u = udp_start(net, &p, net->gateway_ns, 0, 300);
	packets_reset();
	code = inmate_sh(net, "exec 3<>/dev/udp/10.99.0.1/9 || exit 3; printf a >&3; timeout 1 head -c 1 <&3",
			 out, sizeof out);
	lab_wait_for(&p.ended, 1);
	leaked = packets_after_quiet();
	contain_udp_stop(u);
	assert_int_not_equal(code, 0); /* no answer */
	assert_int_equal(leaked, 0);
	assert_int_equal(p.ended_flow.packets_down, 0);
	lab_session_end(0);
}

/* Flows to addresses that cannot be a peer are dropped whatever the
 * verdict: a broadcast from the inmate reaches the gateway's socket (a
 * multicast datagram does not: the kernel drops it before TPROXY's socket
 * gets it, as no group was joined). */
static void test_odd_destinations(void **state)
{
	(void)state;
	LAB_REQUIRE();
	contain_session_net *net = session_new(6);
	probe p;
	probe_init(&p, RELAY_FORWARD);
	contain_udp *u = udp_start(net, &p, net->gateway_ns, 0, 300);
	packets_reset();
	int fd = -1;
	assert_int_equal(contain_netns_socket(&fd, net->inmate_ns, AF_INET, SOCK_DGRAM, 0), MAMORI_OK);
	int one = 1;
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &one, sizeof one), 0);
	static const char *const odd[] = { "255.255.255.255", "224.0.0.251" };
	for (size_t i = 0; i < 2; i++) {
		struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(9) };
		inet_pton(AF_INET, odd[i], &to.sin_addr);
		assert_int_equal(sendto(fd, "m", 1, 0, (struct sockaddr *)&to, sizeof to), 1);
	}
	close(fd);
	lab_wait_for(&p.ended, 1);
	unsigned long leaked = packets_after_quiet();
	contain_udp_stats st;
	contain_udp_stats_get(u, &st);
	contain_udp_stop(u);
	assert_int_equal(leaked, 0);
	assert_int_equal(st.flows, 1);
	assert_int_equal(st.dropped, 1);
	assert_int_equal(st.forwarded, 0);
	assert_int_equal(p.ended_flow.verdict, RELAY_DROP);
	assert_int_equal(p.first_flow.orig_dst.sin_addr.s_addr, htonl(0xffffffffu));
	lab_session_end(6);
}

static void test_nothing_left(void **state)
{
	(void)state;
	LAB_REQUIRE();
	dnsmasq_stop();
	lab_close_nothing_left();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_dns_forward),
		cmocka_unit_test(test_dns_reflect),
		cmocka_unit_test(test_dns_back_to_back),
		cmocka_unit_test(test_dns_keep_open),
		cmocka_unit_test(test_drop),
		cmocka_unit_test(test_echo_forward),
		cmocka_unit_test(test_echo_limits),
		cmocka_unit_test(test_flow_cap),
		cmocka_unit_test(test_drop_flows_evicted),
		cmocka_unit_test(test_stop_with_open_flows),
		cmocka_unit_test(test_forward_unrouted),
		cmocka_unit_test(test_odd_destinations),
		cmocka_unit_test(test_nothing_left),
	};
	return cmocka_run_group_tests(tests, lab_setup, lab_teardown);
}
