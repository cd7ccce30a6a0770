/*
 * The lab shared by the containment tests: see lab.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "lab.h"

#include <arpa/inet.h>
#include <ftw.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mamori/base.h"
#include "sandbox.h"

#define BLACKHOLE_BASE 4200000u

lab_state the_lab;

static const char *const lab_ranges[] = { "198.51.100.0/24", "203.0.113.0/24" };

/* What only this file needs to undo. */
static struct {
	uint32_t metric;
	bool blackholes;
	bool used[LAB_MAX_SESSIONS];
	int count_fd;
	lab_packet_fn count_fn;
	pthread_t count_thread;
	bool counting;
	atomic_bool stop;
} priv = { .count_fd = -1 };

/* Namespaces and routes: what must go even when the process is dying. */
static void remove_network(void)
{
	for (int i = 0; i < LAB_MAX_SESSIONS; i++) {
		if (priv.used[i])
			contain_session_net_destroy(&the_lab.sessions[i]);
		priv.used[i] = false;
	}
	if (the_lab.internet[0] != '\0')
		contain_netns_del(the_lab.internet);
	if (priv.blackholes) {
		for (size_t i = 0; i < 2; i++)
			contain_netns_blackhole(false, lab_ranges[i], priv.metric);
		priv.blackholes = false;
	}
}

static void on_signal(int sig)
{
	remove_network();
	signal(sig, SIG_DFL);
	raise(sig);
}

int lab_open(const char *name, const char *const *addrs)
{
	if (geteuid() != 0)
		return 0;
	snprintf(the_lab.pid_tag, sizeof the_lab.pid_tag, "t%06x", (unsigned)getpid() & 0xffffffu);
	snprintf(the_lab.internet, sizeof the_lab.internet, CONTAIN_NS_PREFIX "%s-net", the_lab.pid_tag);
	snprintf(the_lab.dir, sizeof the_lab.dir, "/tmp/mamori-test-%s-%d", name, (int)getpid());
	priv.metric = BLACKHOLE_BASE + (uint32_t)getpid() % 100000u;
	atexit(remove_network);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGPIPE, SIG_IGN);
	if (mamori_mkdir_p(the_lab.dir) != MAMORI_OK)
		return -1;
	priv.blackholes = true;
	for (size_t i = 0; i < 2; i++)
		if (contain_netns_blackhole(true, lab_ranges[i], priv.metric) != MAMORI_OK)
			return -1;
	if (contain_netns_add(the_lab.internet) != MAMORI_OK)
		return -1;
	for (size_t i = 0; addrs && addrs[i]; i++)
		if (contain_netns_addr_add(the_lab.internet, "lo", addrs[i], 32) != MAMORI_OK)
			return -1;
	the_lab.ready = true;
	return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

void lab_close(void)
{
	atomic_store(&priv.stop, true);
	if (priv.counting)
		pthread_join(priv.count_thread, NULL);
	priv.counting = false;
	if (priv.count_fd >= 0)
		close(priv.count_fd);
	priv.count_fd = -1;
	remove_network();
	if (the_lab.dir[0] != '\0')
		nftw(the_lab.dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	the_lab.ready = false;
}

contain_session_net *lab_session_new(int k, bool upstream)
{
	assert_true(k >= 0 && k < LAB_MAX_SESSIONS);
	char tag[CONTAIN_TAG_MAX];
	snprintf(tag, sizeof tag, "%s%c", the_lab.pid_tag, 'a' + k);
	contain_netns_config cfg = { .tag = tag,
				     .slot = (uint32_t)k,
				     .upstream_netns = upstream ? the_lab.internet : NULL,
				     .tcp_port = LAB_TCP_PORT,
				     .udp_port = LAB_UDP_PORT,
				     .nfqueue = LAB_NFQUEUE };
	/* A slot a failed test left in use: remove its session first (a create
	 * over it would forget its names), so one failure does not cascade. */
	if (priv.used[k])
		contain_session_net_destroy(&the_lab.sessions[k]);
	priv.used[k] = true;
	if (contain_session_net_create(&the_lab.sessions[k], &cfg) != MAMORI_OK)
		fail_msg("session: %s", mamori_error_detail());
	return &the_lab.sessions[k];
}

void lab_session_end(int k)
{
	contain_session_net *net = &the_lab.sessions[k];
	assert_int_equal(contain_session_net_destroy(net), MAMORI_OK);
	assert_false(contain_netns_exists(net->inmate_ns));
	assert_false(contain_netns_exists(net->gateway_ns));
	priv.used[k] = false;
}

void lab_session_track(int k, bool tracked)
{
	assert_true(k >= 0 && k < LAB_MAX_SESSIONS);
	priv.used[k] = tracked;
}

void lab_dir(char *out, size_t cap, const char *name)
{
	snprintf(out, cap, "%s/%s", the_lab.dir, name);
	assert_int_equal(mamori_mkdir_p(out), MAMORI_OK);
}

int lab_inmate_sh(const char *inmate_ns, const char *dir, const char *script, char *out, size_t cap,
		  unsigned timeout_ms)
{
	char *const argv[] = { "/bin/bash", "-c", (char *)script, NULL };
	contain_sandbox_config cfg = { .netns = inmate_ns,
				       .session_dir = dir,
				       .argv = argv,
				       .timeout_ms = timeout_ms ? timeout_ms : 30000,
				       .raw_sockets = true };
	contain_sandbox_result res;
	if (contain_sandbox_run(&res, &cfg) != MAMORI_OK)
		fail_msg("sandbox: %s", mamori_error_detail());
	if (out && cap > 0) {
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
	}
	assert_false(res.timed_out);
	return res.exited ? res.exit_code : 128 + res.term_signal;
}

void lab_wait_for(atomic_int *v, int want)
{
	for (int i = 0; i < 300 && atomic_load(v) < want; i++)
		usleep(10000);
}

int lab_listen(const char *addr, uint16_t port)
{
	int fd = -1;
	if (contain_netns_socket(&fd, the_lab.internet, AF_INET, SOCK_STREAM, 0) != MAMORI_OK)
		return -1;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
	    listen(fd, 64) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

long lab_nfqueue_packets(const char *gw_ns)
{
	char cmd[160];
	snprintf(cmd, sizeof cmd, "ip netns exec %s iptables -w -L FORWARD -v -x -n 2>/dev/null", gw_ns);
	FILE *f = popen(cmd, "r");
	assert_non_null(f);
	char line[512];
	long pkts = -1;
	while (fgets(line, sizeof line, f) != NULL)
		if (strstr(line, "NFQUEUE") != NULL)
			pkts = strtol(line, NULL, 10);
	pclose(f);
	return pkts;
}

void lab_close_nothing_left(void)
{
	char internet[CONTAIN_NAME_MAX], tag[8];
	snprintf(internet, sizeof internet, "%s", the_lab.internet);
	snprintf(tag, sizeof tag, "%s", the_lab.pid_tag);
	lab_close();
	assert_false(contain_netns_exists(internet));
	FILE *f = popen("ip netns list 2>/dev/null", "r");
	assert_non_null(f);
	char line[256];
	int ours = 0;
	while (fgets(line, sizeof line, f) != NULL)
		if (strstr(line, tag) != NULL)
			ours++;
	pclose(f);
	assert_int_equal(ours, 0);
}

static void *count_main(void *arg)
{
	(void)arg;
	uint8_t buf[2048];
	while (!atomic_load(&priv.stop)) {
		struct pollfd p = { .fd = priv.count_fd, .events = POLLIN };
		if (poll(&p, 1, 100) <= 0)
			continue;
		struct sockaddr_ll from;
		socklen_t len = sizeof from;
		ssize_t n = recvfrom(priv.count_fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &len);
		if (n < 14 + 20 || from.sll_pkttype == PACKET_OUTGOING ||
		    ntohs(from.sll_protocol) != ETH_P_IP)
			continue;
		priv.count_fn(buf + 14, (size_t)n - 14);
	}
	return NULL;
}

int lab_count_start(lab_packet_fn fn)
{
	if (priv.counting || !fn)
		return -1;
	if (contain_netns_socket(&priv.count_fd, the_lab.internet, AF_PACKET, SOCK_RAW, htons(ETH_P_ALL)) !=
	    MAMORI_OK)
		return -1;
	/* A flood must not overrun the counter itself (a sanitizer build reads
	 * slowly): room for a few seconds of it. */
	int rcvbuf = 32 << 20;
	setsockopt(priv.count_fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf);
	priv.count_fn = fn;
	if (pthread_create(&priv.count_thread, NULL, count_main, NULL) != 0)
		return -1;
	priv.counting = true;
	return 0;
}
