/*
 * Tests of the session namespaces, the sandbox and the TCP relay, with real
 * namespaces (root required; skipped otherwise).
 *
 * The lab: an "internet" namespace of the test's own ("mamori-t<pid>-net")
 * with a TCP echo server on 198.51.100.10:7, a bulk server on
 * 198.51.100.10:19 (4 MiB of a known pattern per connection, for LIMIT and
 * the relay's splice/tee paths) and a packet counter on every interface, and a blackhole route for both
 * TEST-NET ranges in the host's namespace while the tests run (a second wall: a broken gateway still cannot
 * send them out). Every namespace and route is removed at the end, also
 * when an assertion fails (group teardown), at exit, and on SIGTERM/SIGINT
 * (meson's timeout); the last test asserts that `ip netns list` shows none
 * of ours.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lab.h"
#include "mamori/base.h"
#include "netns.h"
#include "relay.h"
#include "sandbox.h"

#define ECHO_ADDR "198.51.100.10"
#define ECHO_PORT 7
#define BULK_PORT 19
#define BULK_SIZE ((size_t)4 << 20)

/* This test's own part of the lab (lab.h has the namespaces). */
static struct {
	int echo_fd;
	int bulk_fd;
	uint8_t *bulk; /* BULK_SIZE bytes of the pattern */
	pthread_t bulk_thread;
	atomic_bool stop;
	atomic_ulong packets;  /* received in the internet namespace */
	atomic_uint echo_peer; /* address the echo server last saw (network order) */
	pthread_t echo_thread;
	bool threads;
} lab = { .echo_fd = -1, .bulk_fd = -1 };

/* One echo connection at a time is enough for these tests. */
static void *echo_main(void *arg)
{
	(void)arg;
	while (!atomic_load(&lab.stop)) {
		struct pollfd p = { .fd = lab.echo_fd, .events = POLLIN };
		if (poll(&p, 1, 100) <= 0)
			continue;
		struct sockaddr_in peer;
		socklen_t plen = sizeof peer;
		int c = accept(lab.echo_fd, (struct sockaddr *)&peer, &plen);
		if (c < 0)
			continue;
		atomic_store(&lab.echo_peer, peer.sin_addr.s_addr);
		char buf[4096];
		for (;;) {
			struct pollfd q = { .fd = c, .events = POLLIN };
			if (poll(&q, 1, 5000) <= 0)
				break;
			ssize_t n = recv(c, buf, sizeof buf, 0);
			if (n <= 0 || send(c, buf, (size_t)n, MSG_NOSIGNAL) != n)
				break;
		}
		close(c);
	}
	return NULL;
}

/* Serves each connection (one at a time): waits up to a second for the
 * client's request and discards it (closing with unread bytes would reset
 * the connection and lose the tail), sends the pattern, half-closes and
 * waits for the client to close. A relay that cuts the flow makes the
 * send fail, which ends the connection early. */
static void *bulk_main(void *arg)
{
	(void)arg;
	while (!atomic_load(&lab.stop)) {
		struct pollfd p = { .fd = lab.bulk_fd, .events = POLLIN };
		if (poll(&p, 1, 100) <= 0)
			continue;
		int c = accept(lab.bulk_fd, NULL, NULL);
		if (c < 0)
			continue;
		struct timeval tv = { .tv_sec = 10 };
		setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
		char req[256];
		struct pollfd q = { .fd = c, .events = POLLIN };
		if (poll(&q, 1, 1000) > 0 && recv(c, req, sizeof req, 0) < 0) {
			close(c);
			continue;
		}
		size_t off = 0;
		while (off < BULK_SIZE) {
			ssize_t n = send(c, lab.bulk + off, BULK_SIZE - off, MSG_NOSIGNAL);
			if (n <= 0)
				break;
			off += (size_t)n;
		}
		shutdown(c, SHUT_WR);
		while (poll(&q, 1, 5000) > 0 && recv(c, req, sizeof req, 0) > 0)
			;
		close(c);
	}
	return NULL;
}

/* Counts every IPv4 packet that arrives in the internet namespace
 * (lab_count_start). */
static void count_packet(const uint8_t *ip, size_t len)
{
	(void)ip;
	(void)len;
	atomic_fetch_add(&lab.packets, 1);
}

static int lab_setup(void **state)
{
	(void)state;
	static const char *const addrs[] = { ECHO_ADDR, "203.0.113.10", NULL };
	if (lab_open("netns", addrs) != 0)
		return -1;
	if (!the_lab.ready)
		return 0;
	lab.bulk = malloc(BULK_SIZE);
	if (lab.bulk == NULL)
		return -1;
	/* Not periodic within a pipe or a buffer, so a chunk passed twice or
	 * skipped by the relay changes the hash. */
	for (size_t i = 0; i < BULK_SIZE; i++)
		lab.bulk[i] = (uint8_t)(i * 7 + (i >> 16) * 13 + (i >> 9));
	if ((lab.echo_fd = lab_listen(ECHO_ADDR, ECHO_PORT)) < 0 ||
	    (lab.bulk_fd = lab_listen(ECHO_ADDR, BULK_PORT)) < 0 || lab_count_start(count_packet) != 0)
		return -1;
	if (pthread_create(&lab.echo_thread, NULL, echo_main, NULL) != 0 ||
	    pthread_create(&lab.bulk_thread, NULL, bulk_main, NULL) != 0)
		return -1;
	lab.threads = true;
	return 0;
}

static int lab_teardown(void **state)
{
	(void)state;
	atomic_store(&lab.stop, true);
	if (lab.threads) {
		pthread_join(lab.echo_thread, NULL);
		pthread_join(lab.bulk_thread, NULL);
	}
	if (lab.echo_fd >= 0)
		close(lab.echo_fd);
	if (lab.bulk_fd >= 0)
		close(lab.bulk_fd);
	free(lab.bulk);
	lab_close();
	return 0;
}

/* Run a bash snippet in the inmate; returns its exit code, stdout in `out`. */
static int inmate_sh(const contain_session_net *net, const char *script, char *out, size_t out_size)
{
	return lab_inmate_sh(net->inmate_ns, the_lab.dir, script, out, out_size, 10000);
}

/* What the verdict callback saw, and what it answers. */
typedef struct probe {
	int verdict;
	relay_limits limits; /* what decide answers with */
	atomic_int decided, ended;
	relay_flow last;
	char first[64];
	size_t first_n;
	relay_flow ended_flow;
	double t_decide;
	atomic_ulong data_up, data_down; /* bytes seen by on_data */
	uint64_t down_hash;		 /* FNV-1a of the bytes on_data saw downwards */
	size_t down_enough;		 /* nonzero: say "enough" after this many down */
} probe;

#define FNV_BASIS 0xcbf29ce484222325ull

static uint64_t fnv1a(uint64_t h, const uint8_t *data, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ data[i]) * 0x100000001b3ull;
	return h;
}

static void probe_data(void *ctx, const relay_flow *f, bool up, const uint8_t *data, size_t n)
{
	probe *p = ctx;
	if (!up) {
		if (atomic_load(&p->data_down) == 0)
			p->down_hash = FNV_BASIS;
		p->down_hash = fnv1a(p->down_hash, data, n);
	}
	unsigned long seen = atomic_fetch_add(up ? &p->data_up : &p->data_down, n) + n;
	if (!up && p->down_enough > 0 && seen >= p->down_enough)
		contain_relay_data_enough(f, false);
}

static int probe_decide(void *ctx, const relay_flow *f, const uint8_t *first, size_t n, relay_limits *lim)
{
	probe *p = ctx;
	*lim = p->limits;
	p->last = *f;
	p->first_n = n < sizeof p->first - 1 ? n : sizeof p->first - 1;
	memcpy(p->first, first, p->first_n);
	p->first[p->first_n] = '\0';
	p->t_decide = mamori_now();
	atomic_fetch_add(&p->decided, 1);
	return p->verdict;
}

static void probe_end(void *ctx, const relay_flow *f)
{
	probe *p = ctx;
	p->ended_flow = *f;
	atomic_fetch_add(&p->ended, 1);
}

static contain_relay *relay_from(const contain_session_net *net, probe *p, const char *upstream_ns,
				 bool record)
{
	contain_relay_config cfg = { .listen_netns = net->gateway_ns,
				     .port = LAB_TCP_PORT,
				     .upstream_netns = upstream_ns,
				     .decide = probe_decide,
				     .on_end = probe_end,
				     .on_data = record ? probe_data : NULL,
				     .ctx = p };
	contain_relay *r = NULL;
	if (contain_relay_start(&r, &cfg) != MAMORI_OK)
		fail_msg("relay: %s", mamori_error_detail());
	return r;
}

/* The relay connects upstream from inside the internet namespace itself. */
static contain_relay *relay_for(const contain_session_net *net, probe *p, bool upstream)
{
	return relay_from(net, p, upstream ? the_lab.internet : NULL, false);
}

/* Let stragglers of earlier traffic pass, then start a fresh count. */
static void packets_reset(void)
{
	usleep(200000);
	atomic_store(&lab.packets, 0);
}

static unsigned long packets_after_quiet(void)
{
	usleep(500000);
	return atomic_load(&lab.packets);
}

static const char echo_script[] = "exec 3<>/dev/tcp/" ECHO_ADDR "/7 || exit 3; printf hello >&3;"
				  " timeout 3 head -c 5 <&3";

/* ---------------------------------------------------------------- */

static void test_names_and_records(void **state)
{
	(void)state;
	assert_true(contain_netns_name_ok("mamori-abc-in"));
	assert_false(contain_netns_name_ok(""));
	assert_false(contain_netns_name_ok(".."));
	assert_false(contain_netns_name_ok("a/b"));
	assert_false(contain_netns_name_ok("0123456789012345678901234567890123"));
	contain_session_net net;
	contain_netns_config bad = { .tag = "UPPER", .tcp_port = 1, .udp_port = 1 };
	assert_int_equal(contain_session_net_create(&net, &bad), MAMORI_EINVAL);
	bad.tag = "ok";
	bad.slot = CONTAIN_SLOT_COUNT;
	assert_int_equal(contain_session_net_create(&net, &bad), MAMORI_EINVAL);
	/* A tampered record must not make cleanup delete foreign namespaces. */
	char path[] = "/tmp/mamori-test-record-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const char evil[] = "tag=x\ninmate=../../etc\n";
	assert_int_equal(write(fd, evil, sizeof evil - 1), (ssize_t)(sizeof evil - 1));
	close(fd);
	assert_int_equal(contain_session_net_cleanup_file(path), MAMORI_EFORMAT);
	assert_int_equal(mamori_file_write_atomic(path, "tag=x\ninmate=somebody-else\n", 27), MAMORI_OK);
	assert_int_equal(contain_session_net_cleanup_file(path), MAMORI_EFORMAT);
	unlink(path);
}

static void test_create_destroy(void **state)
{
	(void)state;
	LAB_REQUIRE();
	contain_session_net *net = lab_session_new(0, true);
	assert_true(contain_netns_exists(net->inmate_ns));
	assert_true(contain_netns_exists(net->gateway_ns));
	assert_string_equal(net->upstream_ns, the_lab.internet);
	char a[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &net->inmate_addr, a, sizeof a);
	assert_string_equal(a, "10.66.0.2");
	/* A second session of the same tag fails, and leaves the first alone. */
	contain_session_net twin;
	contain_netns_config cfg = { .tag = net->tag, .slot = 9, .tcp_port = 1, .udp_port = 1 };
	assert_int_not_equal(contain_session_net_create(&twin, &cfg), MAMORI_OK);
	assert_true(contain_netns_exists(net->inmate_ns));
	assert_true(contain_netns_exists(net->gateway_ns));
	assert_int_equal(contain_session_net_destroy(&twin), MAMORI_OK);
	assert_true(contain_netns_exists(net->gateway_ns));
	lab_session_end(0);
	assert_int_equal(contain_session_net_destroy(net), MAMORI_OK); /* idempotent */
}

/* A session whose process dies without cleaning up is removed later from
 * its record alone. */
static void test_cleanup_after_crash(void **state)
{
	(void)state;
	LAB_REQUIRE();
	char record[128];
	snprintf(record, sizeof record, "%s/session.net", the_lab.dir);
	contain_session_net *net = &the_lab.sessions[1];
	lab_session_track(1, true);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char tag[CONTAIN_TAG_MAX];
		snprintf(tag, sizeof tag, "%sb", the_lab.pid_tag);
		contain_netns_config cfg = { .tag = tag,
					     .slot = 1,
					     .upstream_netns = the_lab.internet,
					     .tcp_port = LAB_TCP_PORT,
					     .udp_port = LAB_UDP_PORT };
		contain_session_net n;
		if (contain_session_net_create(&n, &cfg) != MAMORI_OK ||
		    contain_session_net_record(&n, record) != MAMORI_OK)
			_exit(1);
		_exit(0); /* "crash": no cleanup */
	}
	int status = 0;
	waitpid(pid, &status, 0);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* What the crashed session left, so the lab can clean it if we fail. */
	snprintf(net->tag, sizeof net->tag, "%sb", the_lab.pid_tag);
	snprintf(net->inmate_ns, sizeof net->inmate_ns, CONTAIN_NS_PREFIX "%s-in", net->tag);
	snprintf(net->gateway_ns, sizeof net->gateway_ns, CONTAIN_NS_PREFIX "%s-gw", net->tag);
	assert_true(contain_netns_exists(net->inmate_ns));
	assert_true(contain_netns_exists(net->gateway_ns));
	assert_int_equal(contain_session_net_cleanup_file(record), MAMORI_OK);
	assert_false(contain_netns_exists(net->inmate_ns));
	assert_false(contain_netns_exists(net->gateway_ns));
	assert_int_equal(contain_session_net_cleanup_file(record), MAMORI_OK); /* idempotent */
	lab_session_track(1, false);
}

static void test_sandbox_limits(void **state)
{
	(void)state;
	LAB_REQUIRE();
	contain_session_net *net = lab_session_new(2, false);
	char out[256];
	/* pid 1 of its own pid namespace, own /proc, only lo and eth0. */
	assert_int_equal(inmate_sh(net, "echo $$; ls /sys/class/net | tr '\\n' ' '", out, sizeof out), 0);
	assert_string_equal(out, "1\neth0 lo ");
	assert_int_equal(inmate_sh(net, "ulimit -n; ulimit -t", out, sizeof out), 0);
	assert_string_equal(out, "256\n60\n");
	assert_int_equal(inmate_sh(net, "exit 42", out, sizeof out), 42);
	/* Root inside, but without capabilities: no way back to the host's
	 * namespace, no mounts, no changes to the (gateway's) rules. With raw
	 * sockets (as lab_inmate_sh and `mamori sandbox run` give) CAP_NET_RAW
	 * alone, bit 13; without, nothing at all. */
	static const char caps[] = "grep -E '^Cap(Eff|Bnd|Prm):' /proc/self/status | tr -d '\\t'";
	assert_int_equal(inmate_sh(net, caps, out, sizeof out), 0);
	assert_string_equal(out,
			    "CapPrm:0000000000002000\nCapEff:0000000000002000\nCapBnd:0000000000002000\n");
	char *const caps_argv[] = { "/bin/bash", "-c", (char *)caps, NULL };
	contain_sandbox_config plain = { .netns = net->inmate_ns,
					 .session_dir = the_lab.dir,
					 .argv = caps_argv };
	contain_sandbox_result plain_res;
	assert_int_equal(contain_sandbox_run(&plain_res, &plain), MAMORI_OK);
	assert_true(plain_res.exited && plain_res.exit_code == 0);
	char path[160];
	snprintf(path, sizeof path, "%s/stdout.txt", the_lab.dir);
	uint8_t *text = NULL;
	size_t text_len = 0;
	assert_int_equal(mamori_file_read(&text, &text_len, path, 4096), MAMORI_OK);
	static const char none[] =
		"CapPrm:0000000000000000\nCapEff:0000000000000000\nCapBnd:0000000000000000\n";
	assert_true(text_len == sizeof none - 1 && !memcmp(text, none, text_len));
	free(text);
	char escape[160];
	snprintf(escape, sizeof escape, "nsenter --net=/run/netns/%s true", net->gateway_ns);
	assert_int_not_equal(inmate_sh(net, escape, out, sizeof out), 0);
	assert_int_not_equal(inmate_sh(net, "mount -t tmpfs none /mnt", out, sizeof out), 0);
	/* The wall-clock timeout kills the whole tree. */
	char *const argv[] = { "/bin/bash", "-c", "sleep 30 & sleep 30", NULL };
	contain_sandbox_config cfg = {
		.netns = net->inmate_ns, .session_dir = the_lab.dir, .argv = argv, .timeout_ms = 300
	};
	contain_sandbox_result res;
	assert_int_equal(contain_sandbox_run(&res, &cfg), MAMORI_OK);
	assert_true(res.timed_out);
	assert_false(res.exited);
	assert_true(res.wall_seconds < 5.0);
	char *const missing[] = { "no-such-program-mamori", NULL };
	cfg.argv = missing;
	assert_int_equal(contain_sandbox_run(&res, &cfg), MAMORI_ENOTFOUND);
	lab_session_end(2);
}

static void test_forward_end_to_end(void **state)
{
	(void)state;
	LAB_REQUIRE();
	contain_session_net *net = lab_session_new(3, true);
	probe p = { .verdict = RELAY_FORWARD };
	contain_relay *r = relay_for(net, &p, true);
	packets_reset();
	char out[64];
	int code = inmate_sh(net, echo_script, out, sizeof out);
	lab_wait_for(&p.ended, 1);
	contain_relay_stop(r);
	/* The counter does see forwarded traffic: its zeros elsewhere mean something. */
	assert_true(atomic_load(&lab.packets) >= 5);
	assert_int_equal(code, 0);
	assert_string_equal(out, "hello");
	assert_int_equal(atomic_load(&p.decided), 1);
	char a[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &p.last.orig_dst.sin_addr, a, sizeof a);
	assert_string_equal(a, ECHO_ADDR);
	assert_int_equal(ntohs(p.last.orig_dst.sin_port), ECHO_PORT);
	assert_int_equal(p.last.src.sin_addr.s_addr, net->inmate_addr.s_addr);
	assert_string_equal(p.first, "hello");
	assert_int_equal(atomic_load(&p.ended), 1);
	assert_int_equal(p.ended_flow.verdict, RELAY_FORWARD);
	assert_int_equal(p.ended_flow.bytes_up, 5);
	assert_int_equal(p.ended_flow.bytes_down, 5);
	lab_session_end(3);
}

/* The relay connects from the gateway namespace: the connection crosses
 * up0 (the echo server sees the gateway's upstream address), and anything
 * outside the two TEST-NET ranges has no route at all. Recording is on. */
static void test_forward_via_gateway_link(void **state)
{
	(void)state;
	LAB_REQUIRE();
	contain_session_net *net = lab_session_new(1, true);
	probe p = { .verdict = RELAY_FORWARD };
	contain_relay *r = relay_from(net, &p, net->gateway_ns, true);
	atomic_store(&lab.echo_peer, 0);
	char out[64];
	int code = inmate_sh(net, echo_script, out, sizeof out);
	lab_wait_for(&p.ended, 1);
	assert_int_equal(code, 0);
	assert_string_equal(out, "hello");
	assert_int_equal(atomic_load(&lab.echo_peer), net->up_gw_addr.s_addr);
	assert_int_equal(p.ended_flow.bytes_down, 5);
	/* Recording (on_data) sees every byte both ways; splice is off then. */
	assert_int_equal(atomic_load(&p.data_up), 5);
	assert_int_equal(atomic_load(&p.data_down), 5);
	code = inmate_sh(net,
			 "exec 3<>/dev/tcp/10.99.0.1/80 || exit 3; printf x >&3; timeout 3 head -c 1 <&3",
			 out, sizeof out);
	lab_wait_for(&p.ended, 2);
	contain_relay_stop(r);
	assert_int_not_equal(code, 0);
	assert_int_equal(atomic_load(&p.ended), 2);
	assert_int_equal(p.ended_flow.upstream_errno, ENETUNREACH);
	lab_session_end(1);
}

/* A client that waits for the server to speak first is decided on after
 * the short wait, with no bytes; one that speaks at once is not kept waiting. */
static void test_server_speaks_first(void **state)
{
	(void)state;
	LAB_REQUIRE();
	contain_session_net *net = lab_session_new(2, false);
	probe p = { .verdict = RELAY_DROP };
	contain_relay *r = relay_for(net, &p, false);
	char out[64];
	int code =
		inmate_sh(net, "exec 3<>/dev/tcp/" ECHO_ADDR "/25 || exit 3; timeout 3 head -c 1 <&3; exit 0",
			  out, sizeof out);
	lab_wait_for(&p.ended, 1);
	assert_int_equal(code, 0);
	assert_int_equal(p.first_n, 0);
	double waited = p.t_decide - p.last.t_start;
	assert_true(waited >= 0.25 && waited < 1.0);
	code = inmate_sh(net, echo_script, out, sizeof out);
	lab_wait_for(&p.ended, 2);
	contain_relay_stop(r);
	assert_string_equal(p.first, "hello");
	assert_true(p.t_decide - p.last.t_start < 0.25);
	lab_session_end(2);
}

/* An ICMP echo request from the inmate's namespace (our own raw socket:
 * the sandbox has no CAP_NET_RAW, rightly). */
static void send_icmp_echo(const contain_session_net *net)
{
	int fd = -1;
	assert_int_equal(contain_netns_socket(&fd, net->inmate_ns, AF_INET, SOCK_RAW, IPPROTO_ICMP),
			 MAMORI_OK);
	uint8_t pkt[16] = { 8, 0, 0, 0, 0x12, 0x34, 0, 1, 'm', 'a', 'm', 'o', 'r', 'i', 0, 0 };
	uint32_t sum = 0;
	for (size_t i = 0; i < sizeof pkt; i += 2)
		sum += (uint32_t)(pkt[i] << 8 | pkt[i + 1]);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	sum = ~sum & 0xffff;
	pkt[2] = (uint8_t)(sum >> 8);
	pkt[3] = (uint8_t)sum;
	struct sockaddr_in to = { .sin_family = AF_INET };
	inet_pton(AF_INET, ECHO_ADDR, &to.sin_addr);
	assert_int_equal(sendto(fd, pkt, sizeof pkt, 0, (struct sockaddr *)&to, sizeof to),
			 (ssize_t)sizeof pkt);
	close(fd);
}

/* DROP closes the inmate's connection, and with an upstream link in place
 * nothing at all (TCP, UDP, anything) reaches the internet namespace. */
static void test_drop_leaks_nothing(void **state)
{
	(void)state;
	LAB_REQUIRE();
	contain_session_net *net = lab_session_new(4, true);
	probe p = { .verdict = RELAY_DROP };
	contain_relay *r = relay_for(net, &p, true);
	packets_reset();
	char out[64];
	int code = inmate_sh(net,
			     "printf x >/dev/udp/" ECHO_ADDR "/53; printf y >/dev/udp/203.0.113.10/9;"
			     " exec 3<>/dev/tcp/" ECHO_ADDR "/7 || exit 3; printf hello >&3;"
			     " timeout 3 head -c 5 <&3; exit 0",
			     out, sizeof out);
	lab_wait_for(&p.ended, 1);
	send_icmp_echo(net);
	unsigned long leaked = packets_after_quiet();
	contain_relay_stats st;
	contain_relay_stats_get(r, &st);
	contain_relay_stop(r);
	assert_int_equal(code, 0);
	assert_string_equal(out, "");
	assert_int_equal(atomic_load(&p.decided), 1);
	assert_int_equal(p.ended_flow.verdict, RELAY_DROP);
	assert_int_equal(st.dropped, 1);
	assert_int_equal(leaked, 0);
	/* The ICMP packet went to NFQUEUE (no listener: dropped there). */
	assert_int_equal(lab_nfqueue_packets(net->gateway_ns), 1);
	lab_session_end(4);
}

/* Without --upstream-netns the relay has nowhere to forward to: FORWARD
 * falls back to DROP and nothing arrives in the internet namespace. */
static void test_no_upstream(void **state)
{
	(void)state;
	LAB_REQUIRE();
	contain_session_net *net = lab_session_new(5, false);
	probe p = { .verdict = RELAY_FORWARD };
	contain_relay *r = relay_for(net, &p, false);
	packets_reset();
	char out[64];
	int code = inmate_sh(net,
			     "printf x >/dev/udp/" ECHO_ADDR "/53; exec 3<>/dev/tcp/" ECHO_ADDR
			     "/7 || exit 3; printf hello >&3; timeout 3 head -c 5 <&3; exit 0",
			     out, sizeof out);
	lab_wait_for(&p.ended, 1);
	unsigned long leaked = packets_after_quiet();
	contain_relay_stop(r);
	assert_int_equal(code, 0);
	assert_string_equal(out, "");
	assert_int_equal(p.ended_flow.verdict, RELAY_DROP);
	assert_int_equal(leaked, 0);
	lab_session_end(5);
}

/* The gateway runs as its own process; once it is SIGKILLed the inmate has
 * no path out, and nothing reaches the internet namespace. */
static void test_gateway_killed(void **state)
{
	(void)state;
	LAB_REQUIRE();
	contain_session_net *net = lab_session_new(6, true);
	int ready[2];
	assert_int_equal(pipe(ready), 0);
	pid_t gw = fork();
	assert_true(gw >= 0);
	if (gw == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
		static probe p = { .verdict = RELAY_FORWARD };
		contain_relay *r = relay_for(net, &p, true);
		(void)r;
		if (write(ready[1], "k", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(ready[1]);
	char c = 0;
	assert_int_equal(read(ready[0], &c, 1), 1);
	close(ready[0]);
	char out[64];
	int code = inmate_sh(net, echo_script, out, sizeof out);
	kill(gw, SIGKILL);
	waitpid(gw, NULL, 0);
	assert_int_equal(code, 0);
	assert_string_equal(out, "hello");
	packets_reset();
	code = inmate_sh(net,
			 "printf x >/dev/udp/" ECHO_ADDR "/53; exec 3<>/dev/tcp/" ECHO_ADDR
			 "/7 || exit 3; printf hello >&3; timeout 3 head -c 5 <&3; exit 0",
			 out, sizeof out);
	unsigned long leaked = packets_after_quiet();
	assert_int_equal(code, 3); /* connection refused by the gateway namespace */
	assert_int_equal(leaked, 0);
	lab_session_end(6);
}

/* Inmate UDP reaches a transparent socket in the gateway, which learns the
 * original destination; nothing reaches the internet namespace. */
static void test_udp_tproxy(void **state)
{
	(void)state;
	LAB_REQUIRE();
	contain_session_net *net = lab_session_new(7, true);
	int fd = -1;
	assert_int_equal(contain_netns_socket(&fd, net->gateway_ns, AF_INET, SOCK_DGRAM, 0), MAMORI_OK);
	int one = 1;
	assert_int_equal(setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof one), 0);
	assert_int_equal(setsockopt(fd, SOL_IP, IP_RECVORIGDSTADDR, &one, sizeof one), 0);
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr = net->gateway_addr,
				  .sin_port = htons(LAB_UDP_PORT) };
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	packets_reset();
	char out[64];
	assert_int_equal(inmate_sh(net, "printf ping >/dev/udp/" ECHO_ADDR "/53", out, sizeof out), 0);
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	assert_int_equal(poll(&pfd, 1, 2000), 1);
	char data[64];
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(struct sockaddr_in))];
	} control;
	struct sockaddr_in from;
	struct iovec iov = { .iov_base = data, .iov_len = sizeof data };
	struct msghdr msg = { .msg_name = &from,
			      .msg_namelen = sizeof from,
			      .msg_iov = &iov,
			      .msg_iovlen = 1,
			      .msg_control = control.buf,
			      .msg_controllen = sizeof control.buf };
	ssize_t n = recvmsg(fd, &msg, 0);
	close(fd);
	assert_int_equal(n, 4);
	assert_memory_equal(data, "ping", 4);
	assert_int_equal(from.sin_addr.s_addr, net->inmate_addr.s_addr);
	struct sockaddr_in orig = { 0 };
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c))
		if (c->cmsg_level == SOL_IP && c->cmsg_type == IP_ORIGDSTADDR)
			memcpy(&orig, CMSG_DATA(c), sizeof orig);
	char a[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &orig.sin_addr, a, sizeof a);
	assert_string_equal(a, ECHO_ADDR);
	assert_int_equal(ntohs(orig.sin_port), 53);
	assert_int_equal(packets_after_quiet(), 0);
	lab_session_end(7);
}

/* Holds a reflected connection until the inmate closes it. */
static void hold_reflect(void *ctx, const relay_flow *f, int fd, const uint8_t *first, size_t n)
{
	(void)ctx;
	(void)f;
	(void)first;
	(void)n;
	char buf[256];
	struct pollfd p = { .fd = fd, .events = POLLIN };
	while (poll(&p, 1, 3000) > 0 && recv(fd, buf, sizeof buf, 0) > 0)
		;
	close(fd);
}

/* Far more connections than the cap: the excess is reset at once and
 * counted, the rest is served. */
static void test_connection_cap(void **state)
{
	(void)state;
	LAB_REQUIRE();
	contain_session_net *net = lab_session_new(0, false);
	probe p = { .verdict = RELAY_REFLECT };
	contain_relay_config cfg = { .listen_netns = net->gateway_ns,
				     .port = LAB_TCP_PORT,
				     .max_conns = 2,
				     .decide = probe_decide,
				     .reflect = hold_reflect,
				     .on_end = probe_end,
				     .ctx = &p };
	contain_relay *r = NULL;
	assert_int_equal(contain_relay_start(&r, &cfg), MAMORI_OK);
	char out[64];
	int code = inmate_sh(net,
			     "for i in 3 4 5 6 7 8 9; do eval \"exec $i<>/dev/tcp/" ECHO_ADDR
			     "/7\" || exit 3; done; sleep 0.8",
			     out, sizeof out);
	lab_wait_for(&p.ended, 2);
	contain_relay_stats st;
	contain_relay_stats_get(r, &st);
	contain_relay_stop(r);
	assert_int_equal(code, 0);
	assert_int_equal(st.accepted, 7);
	assert_int_equal(st.refused_over_cap, 5);
	assert_int_equal(st.reflected, 2);
	assert_int_equal(atomic_load(&p.ended), 2);
	lab_session_end(0);
}

/* Download the bulk pattern in the inmate through `pipeline` (sha256sum,
 * wc -c): returns the pipeline's first word in `word` and the time the
 * download took in ms. */
static int bulk_fetch(const contain_session_net *net, const char *pipeline, char *word, size_t word_size,
		      long *ms)
{
	char script[512];
	snprintf(script, sizeof script,
		 "exec 3<>/dev/tcp/" ECHO_ADDR "/%d || exit 3; printf x >&3; s=$(date +%%s%%N);"
		 " r=$(timeout 8 cat <&3 | %s); echo \"$r $(( ($(date +%%s%%N) - s) / 1000000 ))\"",
		 BULK_PORT, pipeline);
	char out[256];
	int code = inmate_sh(net, script, out, sizeof out);
	char fmt[32];
	snprintf(fmt, sizeof fmt, "%%%zus %%*s %%ld", word_size - 1);
	if (strstr(pipeline, "wc") != NULL)
		snprintf(fmt, sizeof fmt, "%%%zus %%ld", word_size - 1);
	*ms = -1;
	word[0] = '\0';
	if (sscanf(out, fmt, word, ms) != 2)
		fail_msg("bulk output: '%s'", out);
	return code;
}

static contain_relay *relay_started(const contain_session_net *net, probe *p, bool record)
{
	return relay_from(net, p, net->gateway_ns, record);
}

/* 4 MiB through each data path of the relay, checked byte for byte on
 * both ends: splice alone (no on_data), splice + tee (on_data sees every
 * byte in order), and tee until on_data says "enough", then splice. */
static void test_relay_bulk_paths(void **state)
{
	(void)state;
	LAB_REQUIRE();
	contain_session_net *net = lab_session_new(3, true);
	char want[65], got[80];
	mamori_sha256_hex(want, lab.bulk, BULK_SIZE);
	uint64_t want_hash = fnv1a(FNV_BASIS, lab.bulk, BULK_SIZE);
	long ms = 0;

	probe plain = { .verdict = RELAY_FORWARD };
	contain_relay *r = relay_started(net, &plain, false);
	assert_int_equal(bulk_fetch(net, "sha256sum", got, sizeof got, &ms), 0);
	lab_wait_for(&plain.ended, 1);
	contain_relay_stop(r);
	assert_string_equal(got, want);
	assert_int_equal(plain.ended_flow.bytes_down, BULK_SIZE);
	assert_int_equal(plain.ended_flow.bytes_up, 1);

	probe rec = { .verdict = RELAY_FORWARD };
	r = relay_started(net, &rec, true);
	assert_int_equal(bulk_fetch(net, "sha256sum", got, sizeof got, &ms), 0);
	lab_wait_for(&rec.ended, 1);
	contain_relay_stop(r);
	assert_string_equal(got, want);
	assert_int_equal(rec.ended_flow.bytes_down, BULK_SIZE);
	assert_int_equal(atomic_load(&rec.data_down), BULK_SIZE);
	assert_int_equal(atomic_load(&rec.data_up), 1);
	assert_true(rec.down_hash == want_hash);

	probe enough = { .verdict = RELAY_FORWARD, .down_enough = 1 << 20 };
	r = relay_started(net, &enough, true);
	assert_int_equal(bulk_fetch(net, "sha256sum", got, sizeof got, &ms), 0);
	lab_wait_for(&enough.ended, 1);
	contain_relay_stop(r);
	assert_string_equal(got, want);
	assert_int_equal(enough.ended_flow.bytes_down, BULK_SIZE);
	assert_true(atomic_load(&enough.data_down) >= (1u << 20));
	/* At most one move (1 MiB) past the point where it said "enough". */
	assert_true(atomic_load(&enough.data_down) <= BULK_SIZE / 2);
	assert_true(enough.down_hash == fnv1a(FNV_BASIS, lab.bulk, atomic_load(&enough.data_down)));
	lab_session_end(3);
}

/* LIMIT by rate: 4 MiB at 1 MiB/s takes more than 3 s (the bucket's burst
 * is an eighth of a second), arrives whole, and is not cut. */
static void test_limit_rate(void **state)
{
	(void)state;
	LAB_REQUIRE();
	contain_session_net *net = lab_session_new(4, true);
	probe p = { .verdict = RELAY_FORWARD, .limits = { .byte_rate = 1 << 20 } };
	contain_relay *r = relay_started(net, &p, true);
	char got[32];
	long ms = 0;
	assert_int_equal(bulk_fetch(net, "wc -c", got, sizeof got, &ms), 0);
	lab_wait_for(&p.ended, 1);
	contain_relay_stats st;
	contain_relay_stats_get(r, &st);
	contain_relay_stop(r);
	print_message("4 MiB at 1 MiB/s: %ld ms, throttled %.2f s\n", ms, p.ended_flow.throttled_s);
	assert_string_equal(got, "4194304");
	assert_true(ms >= 3000);
	assert_true(ms < 7000);
	assert_false(p.ended_flow.limited);
	assert_true(p.ended_flow.limits.byte_rate == 1 << 20);
	assert_true(p.ended_flow.throttled_s > 2.0);
	assert_int_equal(st.throttled, 1);
	assert_int_equal(st.limited, 0);
	lab_session_end(4);
}

/* LIMIT by budget: a 100 KiB budget (both directions together) stops a
 * 4 MiB download at the budget; the flow is cut, marked and counted. A
 * budget the flow fits exactly does not cut it. */
static void test_limit_budget(void **state)
{
	(void)state;
	LAB_REQUIRE();
	contain_session_net *net = lab_session_new(5, true);
	probe p = { .verdict = RELAY_FORWARD, .limits = { .byte_budget = 100 << 10 } };
	contain_relay *r = relay_started(net, &p, true);
	char got[32];
	long ms = 0;
	bulk_fetch(net, "wc -c", got, sizeof got, &ms);
	lab_wait_for(&p.ended, 1);
	contain_relay_stats st;
	contain_relay_stats_get(r, &st);
	print_message("budget 100 KiB: the inmate got %s bytes in %ld ms\n", got, ms);
	assert_true(strtoul(got, NULL, 10) <= 100u << 10);
	assert_true(p.ended_flow.limited);
	assert_int_equal(p.ended_flow.bytes_up + p.ended_flow.bytes_down, 100 << 10);
	assert_int_equal(atomic_load(&p.data_down), (100 << 10) - 1);
	assert_int_equal(st.limited, 1);
	assert_true(ms < 3000); /* cut, not left to time out */
	contain_relay_stop(r);

	probe exact = { .verdict = RELAY_FORWARD, .limits = { .byte_budget = BULK_SIZE + 1 } };
	r = relay_started(net, &exact, false);
	assert_int_equal(bulk_fetch(net, "wc -c", got, sizeof got, &ms), 0);
	lab_wait_for(&exact.ended, 1);
	contain_relay_stats_get(r, &st);
	contain_relay_stop(r);
	assert_string_equal(got, "4194304");
	assert_false(exact.ended_flow.limited);
	assert_int_equal(st.limited, 0);
	lab_session_end(5);
}

static void test_nothing_left(void **state)
{
	(void)state;
	LAB_REQUIRE();
	lab_close_nothing_left();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names_and_records),   cmocka_unit_test(test_create_destroy),
		cmocka_unit_test(test_cleanup_after_crash), cmocka_unit_test(test_sandbox_limits),
		cmocka_unit_test(test_forward_end_to_end),  cmocka_unit_test(test_forward_via_gateway_link),
		cmocka_unit_test(test_server_speaks_first), cmocka_unit_test(test_drop_leaks_nothing),
		cmocka_unit_test(test_no_upstream),	    cmocka_unit_test(test_gateway_killed),
		cmocka_unit_test(test_udp_tproxy),	    cmocka_unit_test(test_connection_cap),
		cmocka_unit_test(test_relay_bulk_paths),    cmocka_unit_test(test_limit_rate),
		cmocka_unit_test(test_limit_budget),	    cmocka_unit_test(test_nothing_left),
	};
	return cmocka_run_group_tests(tests, lab_setup, lab_teardown);
}
