/*
 * The containment benchmark (issue 5's targets), run as root by
 * bench/contain/run.sh (`make bench-contain`).
 *
 * One run builds a lab of its own and measures three paths to the same
 * HTTP server, one after the other:
 *   direct   an inmate-like namespace with a veth straight to the lab
 *            "internet" namespace (no gateway at all);
 *   relay    a session of the gateway's namespaces (netns.h) whose TCP goes
 *            through the relay (relay.h) with on_data set, as the gateway
 *            runs it: every byte is shown to the callback;
 *   gateway  the same session with the whole gateway (gateway.h): content
 *            classification, policy, events, inmate pcap, sample store.
 * For each: new connections per second (wrk -c 32 -t 2, Connection: close,
 * a 100-byte body), the median time of one connection (connect, request,
 * whole response) over N sequential ones, and bulk throughput both ways
 * (curl: a GET of a large body, a PUT of a sparse file of the same size).
 * Through relay and gateway it also sends flows of a reflected class
 * (SMTP, port 25) and a dropped class (port 9), while a packet socket in the
 * lab internet counts every TCP packet of those ports that arrives there,
 * for the whole run: the leak count, which must be 0.
 *
 * The HTTP server is ours (one epoll thread inside the lab namespace,
 * bodies from a pattern in memory) so that the server is never what limits
 * a figure. Every namespace is named mamori-<tag>-*, and a blackhole route
 * for both TEST-NET ranges sits in the host's namespace (metric from the
 * pid) while the run lasts; cleanup runs at exit and on SIGINT/SIGTERM, and
 * run.sh removes leftovers by the tag as a second line. Nothing binds
 * outside the lab namespaces.
 *
 * Output: a table with PASS/FAIL against the targets, then one JSON line.
 * Exit codes: 0 every target met, 1 a target missed, 2 the lab or a tool
 * failed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <pcap/pcap.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gateway.h"
#include "mamori/base.h"
#include "netns.h"
#include "policy.h"
#include "relay.h"

#define LAB_ADDR       "198.51.100.10"
#define HTTP_PORT      80
#define REFLECT_PORT   25 /* reflected class: SMTP */
#define DROP_PORT      9  /* dropped class */
#define GW_TCP_PORT    15001
#define GW_UDP_PORT    15053
#define DIRECT_NET     "10.68.0."
#define TINY_SIZE      100
#define PATTERN_SIZE   ((size_t)1 << 20)
#define REQ_MAX	       4096
#define HTTP_CONNS_MAX 4096
#define LEAK_FLOWS     10
#define OUT_MAX	       8192
#define BULK_RUNS_MAX  16

static const char url_tiny[] = "http://" LAB_ADDR "/tiny";
static const char url_bulk[] = "http://" LAB_ADDR "/bulk";
static const char url_sink[] = "http://" LAB_ADDR "/sink";

/* Targets of issue 5. */
#define TARGET_CONN_RATE  2000.0
#define TARGET_ADDED_MS	  1.0
#define TARGET_BULK_RATIO 0.70

static const char *const lab_ranges[] = { "198.51.100.0/24", "203.0.113.0/24" };

static struct {
	char tag[CONTAIN_TAG_MAX];
	char internet[CONTAIN_NAME_MAX];
	char direct[CONTAIN_NAME_MAX];
	char veth[16];
	char dir[256];
	uint32_t metric;
	bool blackholes, internet_made, direct_made, net_made;
	contain_session_net net;
	uint64_t bulk_bytes;
	int wrk_seconds;
	int lat_n;
	int bulk_runs;
	bool only_bulk;				 /* development: skip wrk and the latency series */
	bool gateway_no_capture;		 /* development: the gateway without its inmate pcap */
	bool relay_no_data;			 /* development: the relay without on_data (splice only) */
	double direct_mbs[2][2 * BULK_RUNS_MAX]; /* every direct transfer: [0] down, [1] up */
	size_t n_direct[2];
	double direct_cpu_s;
	uint64_t direct_bulk_bytes;
	uint8_t *pattern;
	int http_fd, count_fd;
	pthread_t http_thread, count_thread;
	bool threads;
	atomic_bool stop;
	atomic_ulong leaked;	/* TCP packets of the reflected/dropped ports in the lab */
	atomic_ulong seen_data; /* bytes shown to the relay's on_data */
	atomic_int child;	/* the tool running now (wrk, curl, ip), 0: none */
} B = { .http_fd = -1, .count_fd = -1 };

static void lab_cleanup(void)
{
	if (B.net_made)
		contain_session_net_destroy(&B.net);
	B.net_made = false;
	if (B.direct_made)
		contain_netns_del(B.direct);
	B.direct_made = false;
	if (B.internet_made)
		contain_netns_del(B.internet); /* takes the veths along */
	B.internet_made = false;
	if (B.blackholes)
		for (size_t i = 0; i < 2; i++)
			contain_netns_blackhole(false, lab_ranges[i], B.metric);
	B.blackholes = false;
}

/* SIGINT and SIGTERM are blocked in every thread but this one, which waits
 * for them: cleanup then runs on an ordinary thread, not in a signal
 * handler (where removing namespaces would not be async-signal-safe). */
static sigset_t stop_signals;

static void *signal_main(void *arg)
{
	(void)arg;
	int sig = 0;
	if (sigwait(&stop_signals, &sig) != 0)
		return NULL;
	pid_t child = atomic_load(&B.child);
	if (child > 0)
		kill(child, SIGTERM);
	lab_cleanup();
	_exit(128 + sig);
}

/* ---- the lab's HTTP server ---- */

enum { H_READ, H_DISCARD, H_WRITE, H_DRAIN };

typedef struct hconn {
	struct hconn *prev, *next; /* every open connection, so the end frees them */
	int fd;
	int phase;
	char req[REQ_MAX];
	size_t req_len;
	uint64_t discard; /* request body bytes still to read (PUT) */
	char head[160];
	size_t head_len, head_off;
	uint64_t body_len, body_off;
} hconn;

static void hconn_close(int ep, hconn **list, hconn *h)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, h->fd, NULL);
	close(h->fd);
	if (h->prev != NULL)
		h->prev->next = h->next;
	else
		*list = h->next;
	if (h->next != NULL)
		h->next->prev = h->prev;
	free(h);
}

/* "/bulk" is the large body, anything else the tiny one; a PUT's body is
 * read and discarded first. */
static bool http_request(hconn *h)
{
	h->req[h->req_len] = '\0';
	char *end = strstr(h->req, "\r\n\r\n");
	if (end == NULL)
		return h->req_len < REQ_MAX - 1; /* wait for more, within the limit */
	size_t head = (size_t)(end + 4 - h->req);
	h->body_len = strncmp(h->req, "GET /bulk", 9) == 0 ? B.bulk_bytes : TINY_SIZE;
	h->phase = H_WRITE;
	if (strncmp(h->req, "PUT ", 4) == 0 || strncmp(h->req, "POST ", 5) == 0) {
		h->body_len = TINY_SIZE;
		char *cl = strcasestr(h->req, "\r\ncontent-length:");
		uint64_t want = 0;
		if (cl != NULL && cl < end) {
			char *stop = NULL;
			want = strtoull(cl + 17, &stop, 10);
		}
		uint64_t have = h->req_len - head;
		h->discard = want > have ? want - have : 0;
		if (h->discard > 0)
			h->phase = H_DISCARD;
	}
	int n = snprintf(
		h->head, sizeof h->head,
		"HTTP/1.1 200 OK\r\nContent-Length: %llu\r\nContent-Type: application/octet-stream\r\n"
		"Connection: close\r\n\r\n",
		(unsigned long long)h->body_len);
	h->head_len = (size_t)n;
	return true;
}

/* Returns false when the connection is finished with. */
static bool http_step(int ep, hconn *h, uint32_t events)
{
	if (events & (EPOLLERR | EPOLLHUP) && h->phase != H_DRAIN && h->phase != H_WRITE)
		return false;
	if (h->phase == H_READ) {
		ssize_t n = recv(h->fd, h->req + h->req_len, REQ_MAX - 1 - h->req_len, 0);
		if (n <= 0)
			return n < 0 && errno == EAGAIN;
		h->req_len += (size_t)n;
		if (!http_request(h))
			return false;
	}
	while (h->phase == H_DISCARD) {
		char sink[65536];
		size_t want = h->discard < sizeof sink ? (size_t)h->discard : sizeof sink;
		ssize_t n = recv(h->fd, sink, want, 0);
		if (n <= 0)
			return n < 0 && errno == EAGAIN;
		h->discard -= (uint64_t)n;
		if (h->discard == 0)
			h->phase = H_WRITE;
	}
	if (h->phase == H_WRITE) {
		while (h->head_off < h->head_len) {
			ssize_t n =
				send(h->fd, h->head + h->head_off, h->head_len - h->head_off, MSG_NOSIGNAL);
			if (n < 0 && errno == EAGAIN)
				goto want_out;
			if (n <= 0)
				return false;
			h->head_off += (size_t)n;
		}
		while (h->body_off < h->body_len) {
			size_t off = (size_t)(h->body_off % PATTERN_SIZE);
			uint64_t left = h->body_len - h->body_off;
			size_t len = PATTERN_SIZE - off < left ? PATTERN_SIZE - off : (size_t)left;
			ssize_t n = send(h->fd, B.pattern + off, len, MSG_NOSIGNAL);
			if (n < 0 && errno == EAGAIN)
				goto want_out;
			if (n <= 0)
				return false;
			h->body_off += (uint64_t)n;
		}
		/* Half-close and wait for the client's close: closing with its
		 * bytes unread would reset the connection. */
		shutdown(h->fd, SHUT_WR);
		h->phase = H_DRAIN;
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = h };
		epoll_ctl(ep, EPOLL_CTL_MOD, h->fd, &ev);
		return true;
	}
	if (h->phase == H_DRAIN) {
		char sink[4096];
		ssize_t n = recv(h->fd, sink, sizeof sink, 0);
		return n > 0 || (n < 0 && errno == EAGAIN);
	}
	return true;
want_out:;
	struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = h };
	epoll_ctl(ep, EPOLL_CTL_MOD, h->fd, &ev);
	return true;
}

static void *http_main(void *arg)
{
	(void)arg;
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	epoll_ctl(ep, EPOLL_CTL_ADD, B.http_fd, &ev);
	unsigned open_conns = 0;
	hconn *conns = NULL;
	while (!atomic_load(&B.stop)) {
		struct epoll_event evs[64];
		int n = epoll_wait(ep, evs, 64, 100);
		for (int i = 0; i < n; i++) {
			hconn *h = evs[i].data.ptr;
			if (h == NULL) {
				for (;;) {
					int fd = accept4(B.http_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
					if (fd < 0)
						break;
					hconn *c = open_conns < HTTP_CONNS_MAX ? calloc(1, sizeof *c) : NULL;
					if (c == NULL) {
						close(fd);
						continue;
					}
					c->fd = fd;
					c->next = conns;
					if (conns != NULL)
						conns->prev = c;
					conns = c;
					open_conns++;
					struct epoll_event cev = { .events = EPOLLIN, .data.ptr = c };
					if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev) != 0) {
						hconn_close(ep, &conns, c);
						open_conns--;
					}
				}
				continue;
			}
			if (!http_step(ep, h, evs[i].events)) {
				hconn_close(ep, &conns, h);
				open_conns--;
			}
		}
	}
	while (conns != NULL) {
		hconn *next = conns->next;
		close(conns->fd);
		free(conns);
		conns = next;
	}
	close(ep);
	return NULL;
}

/* Only packets of the two watched ports reach the counter's socket: the
 * kernel filters, so the bulk traffic of the run costs the counter nothing
 * (a socket that saw every packet would tax whichever path moves more). */
static int counter_filter(int fd)
{
	pcap_t *dead = pcap_open_dead(DLT_EN10MB, 256);
	struct bpf_program prog;
	char expr[64];
	snprintf(expr, sizeof expr, "tcp port %d or tcp port %d", REFLECT_PORT, DROP_PORT);
	if (dead == NULL || pcap_compile(dead, &prog, expr, 1, PCAP_NETMASK_UNKNOWN) != 0) {
		if (dead != NULL)
			pcap_close(dead);
		return mamori_fail(MAMORI_EIO, "bench: cannot compile the counter's filter");
	}
	struct sock_fprog fp = { .len = (unsigned short)prog.bf_len,
				 .filter = (struct sock_filter *)prog.bf_insns };
	int rc = setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &fp, sizeof fp) == 0
			 ? MAMORI_OK
			 : mamori_fail(MAMORI_EIO, "bench: counter filter: %s", strerror(errno));
	pcap_freecode(&prog);
	pcap_close(dead);
	return rc;
}

/* Counts TCP packets to or from the reflected and dropped ports arriving on
 * any interface of the lab internet: none may. The filter is applied in
 * the kernel; the check here is the same, as a second look. */
static void *count_main(void *arg)
{
	(void)arg;
	uint8_t buf[256] = { 0 };
	while (!atomic_load(&B.stop)) {
		struct pollfd p = { .fd = B.count_fd, .events = POLLIN };
		if (poll(&p, 1, 100) <= 0)
			continue;
		struct sockaddr_ll from = { 0 };
		socklen_t len = sizeof from;
		ssize_t n = recvfrom(B.count_fd, buf, sizeof buf, MSG_TRUNC, (struct sockaddr *)&from, &len);
		if (n < 14 + 20 + 4 || from.sll_pkttype == PACKET_OUTGOING)
			continue;
		size_t have = (size_t)n < sizeof buf ? (size_t)n : sizeof buf;
		if (buf[12] != 0x08 || buf[13] != 0x00 || (buf[14] >> 4) != 4 || buf[14 + 9] != IPPROTO_TCP)
			continue;
		size_t ihl = (size_t)(buf[14] & 0x0f) * 4;
		if (ihl < 20 || 14 + ihl + 4 > have)
			continue;
		const uint8_t *tcp = buf + 14 + ihl;
		unsigned sport = (unsigned)tcp[0] << 8 | tcp[1], dport = (unsigned)tcp[2] << 8 | tcp[3];
		if (sport == REFLECT_PORT || dport == REFLECT_PORT || sport == DROP_PORT ||
		    dport == DROP_PORT)
			atomic_fetch_add(&B.leaked, 1);
	}
	return NULL;
}

/* ---- running tools inside a namespace ---- */

/* Run argv under `ip netns exec ns` (ns NULL: as it is), its stdout into
 * `out`. Returns the exit code, or -1 when it could not run. */
static int run_in(const char *ns, const char *const *argv, char *out, size_t out_size)
{
	const char *full[32] = { "ip", "netns", "exec", ns };
	size_t k = ns != NULL ? 4 : 0;
	for (size_t i = 0; argv[i] != NULL && k < 31; i++)
		full[k++] = argv[i];
	full[k] = NULL;
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) != 0)
		return -1;
	pid_t pid = fork();
	if (pid < 0) {
		close(pfd[0]);
		close(pfd[1]);
		return -1;
	}
	if (pid == 0) {
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL); /* the tool gets SIGINT/SIGTERM as usual */
		dup2(pfd[1], 1);
		int null = open("/dev/null", O_RDWR);
		if (null >= 0)
			dup2(null, 0);
		execvp(full[0], (char *const *)full);
		_exit(127);
	}
	atomic_store(&B.child, pid);
	close(pfd[1]);
	size_t len = 0;
	for (;;) {
		ssize_t n = read(pfd[0], out + len, out_size - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		if (len == out_size - 1)
			len = 0; /* keep the tail, which is where the summaries are */
	}
	out[len] = '\0';
	close(pfd[0]);
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	atomic_store(&B.child, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, size_t n)
{
	qsort(v, n, sizeof *v, cmp_double);
	return n == 0 ? 0 : n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

typedef struct path_result {
	const char *name;
	double conn_rate; /* wrk requests per second */
	uint64_t wrk_errors;
	double lat_median_ms, lat_p90_ms;
	double down_mbs, up_mbs;     /* 1e6 bytes per second, median of the runs */
	double down_ratio, up_ratio; /* to the direct path, median of the pairs */
	double cpu_s;		     /* this process's CPU time during its bulk transfers */
	uint64_t bulk_bytes;
	bool ok;
} path_result;

/* The number right after the first `key` in `text` (on its line); 0 when
 * there is none. */
static unsigned long long number_after(const char *text, const char *key)
{
	const char *at = strstr(text, key);
	if (at == NULL)
		return 0;
	char *end = NULL;
	unsigned long long v = strtoull(at + strlen(key), &end, 10);
	return end == at + strlen(key) ? 0 : v;
}

/* curl's "-w '%{size_...} %{time_total}'": false unless both are there. */
static bool parse_size_time(const char *text, unsigned long long *size, double *t)
{
	char *end = NULL;
	*size = strtoull(text, &end, 10);
	if (end == text || *end != ' ')
		return false;
	const char *rest = end + 1;
	*t = strtod(rest, &end);
	return end != rest;
}

static bool measure_wrk(const char *ns, path_result *res)
{
	char secs[16], out[OUT_MAX];
	snprintf(secs, sizeof secs, "%ds", B.wrk_seconds);
	const char *argv[] = { "wrk",	 "-c", "32", "-t", "2", "-d", secs, "-H", "Connection: close",
			       url_tiny, NULL };
	if (run_in(ns, argv, out, sizeof out) != 0)
		return false;
	char *rps = strstr(out, "Requests/sec:");
	if (rps == NULL)
		return false;
	res->conn_rate = strtod(rps + 13, NULL);
	res->wrk_errors = 0;
	char *se = strstr(out, "Socket errors:");
	if (se != NULL) {
		static const char *const kinds[] = { "connect ", "read ", "write ", "timeout " };
		for (size_t i = 0; i < 4; i++)
			res->wrk_errors += number_after(se, kinds[i]);
	}
	res->wrk_errors += number_after(out, "Non-2xx or 3xx responses:");
	return true;
}

/* One connection: connect, request, the whole response; seconds, or -1. */
static double one_request(const char *ns)
{
	int fd = -1;
	if (contain_netns_socket(&fd, ns, AF_INET, SOCK_STREAM, 0) != MAMORI_OK)
		return -1;
	struct timeval tv = { .tv_sec = 5 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(HTTP_PORT) };
	inet_pton(AF_INET, LAB_ADDR, &sa.sin_addr);
	static const char req[] = "GET /tiny HTTP/1.1\r\nHost: " LAB_ADDR "\r\nConnection: close\r\n\r\n";
	double t0 = mamori_now();
	double took = -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
	    send(fd, req, sizeof req - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof req - 1))
		goto done;
	char buf[1024];
	size_t total = 0;
	ssize_t n;
	while ((n = recv(fd, buf, sizeof buf, 0)) > 0)
		total += (size_t)n;
	if (n == 0 && total > TINY_SIZE)
		took = mamori_now() - t0;
done:
	close(fd);
	return took;
}

static bool measure_latency(const char *ns, path_result *res)
{
	if (B.lat_n <= 0)
		return false;
	double *v = calloc((size_t)B.lat_n, sizeof *v);
	if (v == NULL)
		return false;
	for (int i = 0; i < 20; i++) /* warm caches, ARP, the relay's threads */
		one_request(ns);
	size_t k = 0;
	for (int i = 0; i < B.lat_n; i++) {
		double t = one_request(ns);
		if (t >= 0)
			v[k++] = t * 1000.0;
	}
	bool ok = k * 100 >= (size_t)B.lat_n * 99; /* a failing path is no figure */
	res->lat_median_ms = median(v, k);
	res->lat_p90_ms = k ? v[(k * 9) / 10] : 0; /* sorted by median() */
	free(v);
	return ok;
}

/* One transfer of B.bulk_bytes by curl, a GET (down) or a PUT of the sparse
 * file (up); curl's own timing, in 1e6 bytes/s, and the CPU time this
 * process (the lab's server, and the relay or gateway) spent meanwhile. */
static double process_cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec / 1e6;
}

static bool bulk_once(const char *ns, bool down, const char *sparse, double *mbs, double *cpu_s)
{
	char out[512];
	const char *get[] = { "curl",	    "-sS", "-o", "/dev/null",
			      "--max-time", "120", "-w", "%{size_download} %{time_total}",
			      url_bulk,	    NULL };
	const char *put[] = { "curl",	    "-sS",  "-o", "/dev/null",
			      "--max-time", "120",  "-H", "Expect:",
			      "-T",	    sparse, "-w", "%{size_upload} %{time_total}",
			      url_sink,	    NULL };
	unsigned long long size = 0;
	double t = 0;
	double cpu0 = process_cpu_s();
	if (run_in(ns, down ? get : put, out, sizeof out) != 0 || !parse_size_time(out, &size, &t) ||
	    size != B.bulk_bytes || t <= 0)
		return false;
	*cpu_s = process_cpu_s() - cpu0;
	*mbs = (double)size / t / 1e6;
	return true;
}

/* Bulk both ways through `ns`, each transfer paired with one on the direct
 * path right before or after it (the order alternates): the machine is
 * shared, and a change of its load then moves both sides of a ratio alike.
 * The ratio reported is the median of the pairs' ratios. */
static bool measure_bulk(const char *ns, path_result *res, const char *sparse)
{
	double via[2][BULK_RUNS_MAX], ratio[2][BULK_RUNS_MAX];
	int runs = B.bulk_runs;
	for (int i = 0; i < runs; i++) {
		for (int up = 0; up < 2; up++) {
			double d = 0, v = 0, dc = 0, vc = 0;
			bool ok = i % 2 ? bulk_once(ns, !up, sparse, &v, &vc) &&
						  bulk_once(B.direct, !up, sparse, &d, &dc)
					: bulk_once(B.direct, !up, sparse, &d, &dc) &&
						  bulk_once(ns, !up, sparse, &v, &vc);
			if (!ok)
				return false;
			res->cpu_s += vc;
			B.direct_cpu_s += dc;
			res->bulk_bytes += B.bulk_bytes;
			B.direct_bulk_bytes += B.bulk_bytes;
			via[up][i] = v;
			ratio[up][i] = v / d;
			B.direct_mbs[up][B.n_direct[up]++] = d;
		}
	}
	res->down_mbs = median(via[0], (size_t)runs);
	res->up_mbs = median(via[1], (size_t)runs);
	res->down_ratio = median(ratio[0], (size_t)runs);
	res->up_ratio = median(ratio[1], (size_t)runs);
	return true;
}

/* Flows of the reflected and dropped classes from the inmate; what reaches
 * the lab internet is counted by count_main. */
static void leak_flows(const char *ns)
{
	for (int i = 0; i < LEAK_FLOWS; i++) {
		for (int k = 0; k < 2; k++) {
			int fd = -1;
			if (contain_netns_socket(&fd, ns, AF_INET, SOCK_STREAM, 0) != MAMORI_OK)
				continue;
			struct timeval tv = { .tv_sec = 1 };
			setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
			struct sockaddr_in sa = { .sin_family = AF_INET,
						  .sin_port = htons(k == 0 ? REFLECT_PORT : DROP_PORT) };
			inet_pton(AF_INET, LAB_ADDR, &sa.sin_addr);
			static const char helo[] = "HELO bench.example\r\nMAIL FROM:<a@bench.example>\r\n";
			if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
				send(fd, helo, sizeof helo - 1, MSG_NOSIGNAL);
				char buf[512];
				while (recv(fd, buf, sizeof buf, 0) > 0)
					;
			}
			close(fd);
		}
	}
}

/* Connections per second and latency; bulk too, except for the direct
 * path, which is measured in pairs with each of the others. */
static bool measure_path(const char *ns, path_result *res, const char *sparse)
{
	res->ok = (B.only_bulk || (measure_wrk(ns, res) && measure_latency(ns, res))) &&
		  (sparse == NULL || measure_bulk(ns, res, sparse));
	if (!res->ok)
		fprintf(stderr, "contain-bench: the %s path failed a measurement\n", res->name);
	return res->ok;
}

/* The counter must see what it is there to see: a SYN to the dropped port
 * from the direct path (no gateway there; the lab answers with a reset) is
 * counted, then the count starts again from zero. */
static bool counter_check(void)
{
	int fd = -1;
	if (contain_netns_socket(&fd, B.direct, AF_INET, SOCK_STREAM, 0) != MAMORI_OK)
		return false;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(DROP_PORT) };
	inet_pton(AF_INET, LAB_ADDR, &sa.sin_addr);
	/* Refused, as it should be: the lab has no listener there. */
	bool reached = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 || errno == ECONNREFUSED;
	close(fd);
	if (!reached) {
		fprintf(stderr, "contain-bench: the counter's probe did not reach the lab\n");
		return false;
	}
	for (int i = 0; i < 50 && atomic_load(&B.leaked) == 0; i++)
		usleep(10000);
	if (atomic_load(&B.leaked) == 0) {
		fprintf(stderr, "contain-bench: the leak counter did not see a packet it must see\n");
		return false;
	}
	usleep(100000);
	atomic_store(&B.leaked, 0);
	return true;
}

/* ---- the relay alone, with on_data set ---- */

static int bench_decide(void *ctx, const relay_flow *f, const uint8_t *first, size_t n, relay_limits *lim)
{
	(void)ctx;
	(void)first;
	(void)n;
	(void)lim;
	unsigned port = ntohs(f->orig_dst.sin_port);
	return port == REFLECT_PORT ? RELAY_REFLECT : port == DROP_PORT ? RELAY_DROP : RELAY_FORWARD;
}

/* What any recorder does at the least: look at every byte once. */
static void bench_data(void *ctx, const relay_flow *f, bool up, const uint8_t *data, size_t n)
{
	(void)ctx;
	(void)f;
	(void)up;
	uint8_t x = 0;
	for (size_t i = 0; i < n; i += 64)
		x ^= data[i];
	atomic_fetch_add(&B.seen_data, n + (x & 0));
}

/* A sink: read what the inmate sends for a moment, then close. */
static void bench_reflect(void *ctx, const relay_flow *f, int fd, const uint8_t *first, size_t n)
{
	(void)ctx;
	(void)f;
	(void)first;
	(void)n;
	char buf[512];
	struct pollfd p = { .fd = fd, .events = POLLIN };
	while (poll(&p, 1, 200) > 0 && recv(fd, buf, sizeof buf, 0) > 0)
		;
	close(fd);
}

/* ---- the lab ---- */

static int ip_cmd(const char *const *argv)
{
	char out[512];
	int rc = run_in(NULL, argv, out, sizeof out); /* always `ip -n LAB...`: nothing in the host */
	return rc == 0 ? MAMORI_OK
		       : mamori_fail(MAMORI_EIO, "bench: `ip %s %s %s` failed", argv[0], argv[1], argv[2]);
}

static int lab_setup(void)
{
	int rc;
	B.metric = 4300000u + (uint32_t)getpid() % 100000u;
	snprintf(B.internet, sizeof B.internet, CONTAIN_NS_PREFIX "%s-net", B.tag);
	snprintf(B.direct, sizeof B.direct, CONTAIN_NS_PREFIX "%s-dir", B.tag);
	snprintf(B.veth, sizeof B.veth, "mmd-%s", B.tag);
	B.blackholes = true;
	for (size_t i = 0; i < 2; i++)
		if ((rc = contain_netns_blackhole(true, lab_ranges[i], B.metric)) != MAMORI_OK)
			return rc;
	B.internet_made = true;
	if ((rc = contain_netns_add(B.internet)) != MAMORI_OK ||
	    (rc = contain_netns_addr_add(B.internet, "lo", LAB_ADDR, 32)) != MAMORI_OK)
		return rc;
	B.direct_made = true;
	if ((rc = contain_netns_add(B.direct)) != MAMORI_OK)
		return rc;
	/* The direct path: one veth from the inmate-like namespace straight
	 * into the lab internet, created inside the lab (never in the host). */
	const char *add[] = { "ip",   "-n",   B.internet, "link", "add",   B.veth,   "type",
			      "veth", "peer", "name",	  "eth0", "netns", B.direct, NULL };
	static const char direct_gw[] = DIRECT_NET "1";
	const char *route[] = { "ip",  "-n",	  B.direct, "route", "add", "198.51.100.0/24",
				"via", direct_gw, NULL };
	if ((rc = ip_cmd(add)) != MAMORI_OK ||
	    (rc = contain_netns_addr_add(B.internet, B.veth, direct_gw, 30)) != MAMORI_OK ||
	    (rc = contain_netns_link_up(B.internet, B.veth)) != MAMORI_OK ||
	    (rc = contain_netns_addr_add(B.direct, "eth0", DIRECT_NET "2", 30)) != MAMORI_OK ||
	    (rc = contain_netns_link_up(B.direct, "eth0")) != MAMORI_OK || (rc = ip_cmd(route)) != MAMORI_OK)
		return rc;
	contain_netns_config cfg = { .tag = B.tag,
				     .slot = 0,
				     .upstream_netns = B.internet,
				     .tcp_port = GW_TCP_PORT,
				     .udp_port = GW_UDP_PORT,
				     .nfqueue = 9 };
	B.net_made = true;
	if ((rc = contain_session_net_create(&B.net, &cfg)) != MAMORI_OK)
		return rc;

	B.pattern = malloc(PATTERN_SIZE);
	if (B.pattern == NULL)
		return mamori_fail(MAMORI_ENOMEM, "bench: out of memory");
	for (size_t i = 0; i < PATTERN_SIZE; i++)
		B.pattern[i] = (uint8_t)(i * 7 + (i >> 11));
	if ((rc = contain_netns_socket(&B.http_fd, B.internet, AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0)) !=
		    MAMORI_OK ||
	    (rc = contain_netns_socket(&B.count_fd, B.internet, AF_PACKET, SOCK_RAW, htons(ETH_P_ALL))) !=
		    MAMORI_OK ||
	    (rc = counter_filter(B.count_fd)) != MAMORI_OK)
		return rc;
	int one = 1;
	setsockopt(B.http_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(HTTP_PORT) };
	inet_pton(AF_INET, LAB_ADDR, &sa.sin_addr);
	if (bind(B.http_fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(B.http_fd, 4096) != 0)
		return mamori_fail(MAMORI_EIO, "bench: http listen: %s", strerror(errno));
	if (pthread_create(&B.http_thread, NULL, http_main, NULL) != 0)
		return mamori_fail(MAMORI_EIO, "bench: http thread");
	if (pthread_create(&B.count_thread, NULL, count_main, NULL) != 0) {
		atomic_store(&B.stop, true);
		pthread_join(B.http_thread, NULL);
		return mamori_fail(MAMORI_EIO, "bench: counter thread");
	}
	B.threads = true;
	return MAMORI_OK;
}

static void lab_teardown(void)
{
	atomic_store(&B.stop, true);
	if (B.threads) {
		pthread_join(B.http_thread, NULL);
		pthread_join(B.count_thread, NULL);
	}
	B.threads = false;
	if (B.http_fd >= 0)
		close(B.http_fd);
	if (B.count_fd >= 0)
		close(B.count_fd);
	B.http_fd = B.count_fd = -1;
	free(B.pattern);
	B.pattern = NULL;
	lab_cleanup();
}

/* ---- report ---- */

static const char *verdict(bool pass)
{
	return pass ? "PASS" : "FAIL";
}

static void usage(void)
{
	fprintf(stderr,
		"usage: contain_bench --tag TAG --dir DIR [--bulk-mib N] [--wrk-seconds N] [--lat-n N]"
		" [--bulk-runs N] [--only-bulk] [--relay-no-data] [--gateway-no-capture]\n");
}

int main(int argc, char **argv)
{
	B.bulk_bytes = (uint64_t)256 << 20;
	B.wrk_seconds = 10;
	B.lat_n = 1000;
	B.bulk_runs = 5;
	for (int i = 1; i < argc; i++) {
		const char *k = argv[i];
		bool *flag = !strcmp(k, "--only-bulk")		  ? &B.only_bulk
			     : !strcmp(k, "--relay-no-data")	  ? &B.relay_no_data
			     : !strcmp(k, "--gateway-no-capture") ? &B.gateway_no_capture
								  : NULL;
		if (flag != NULL) {
			*flag = true;
			continue;
		}
		if (i + 1 >= argc) {
			usage();
			return 2;
		}
		const char *v = argv[++i];
		char *end = NULL;
		unsigned long n = strtoul(v, &end, 10);
		bool num = end != v && *end == '\0' && n > 0 && n <= 100000;
		if (!strcmp(k, "--tag"))
			snprintf(B.tag, sizeof B.tag, "%s", v);
		else if (!strcmp(k, "--dir"))
			snprintf(B.dir, sizeof B.dir, "%s", v);
		else if (!strcmp(k, "--bulk-mib") && num)
			B.bulk_bytes = (uint64_t)n << 20;
		else if (!strcmp(k, "--wrk-seconds") && num)
			B.wrk_seconds = (int)n;
		else if (!strcmp(k, "--lat-n") && num)
			B.lat_n = (int)n;
		else if (!strcmp(k, "--bulk-runs") && num && n <= BULK_RUNS_MAX)
			B.bulk_runs = (int)n;
		else {
			usage();
			return 2;
		}
	}
	if (B.tag[0] == '\0' || B.dir[0] == '\0') {
		usage();
		return 2;
	}
	if (geteuid() != 0) {
		fprintf(stderr, "contain-bench: needs root (namespaces)\n");
		return 2;
	}
	atexit(lab_cleanup);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGINT);
	sigaddset(&stop_signals, SIGTERM);
	pthread_t signal_thread;
	if (pthread_sigmask(SIG_BLOCK, &stop_signals, NULL) != 0 ||
	    pthread_create(&signal_thread, NULL, signal_main, NULL) != 0) {
		fprintf(stderr, "contain-bench: cannot set up signal handling\n");
		return 2;
	}
	pthread_detach(signal_thread);

	int status = 2;
	contain_relay *relay = NULL;
	contain_gateway *gw = NULL;
	contain_policy *policy = NULL;
	char sparse[320], gwdir[320];
	snprintf(sparse, sizeof sparse, "%s/upload.sparse", B.dir);
	snprintf(gwdir, sizeof gwdir, "%s/gateway-session", B.dir);
	path_result direct = { .name = "direct" }, viarelay = { .name = "relay" },
		    viagw = { .name = "gateway" };
	/* A sparse file: curl reads zeros at memory speed, the disk is idle. */
	int sfd = open(sparse, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
	if (sfd < 0 || ftruncate(sfd, (off_t)B.bulk_bytes) != 0) {
		fprintf(stderr, "contain-bench: %s: %s\n", sparse, strerror(errno));
		goto done;
	}
	close(sfd);
	if (lab_setup() != MAMORI_OK) {
		fprintf(stderr, "contain-bench: lab: %s\n", mamori_error_detail());
		goto done;
	}
	fprintf(stderr, "contain-bench: direct path...\n");
	measure_path(B.direct, &direct, NULL);
	if (!counter_check())
		goto done;

	fprintf(stderr, "contain-bench: through the relay (on_data set)...\n");
	contain_relay_config rc = { .listen_netns = B.net.gateway_ns,
				    .port = GW_TCP_PORT,
				    .upstream_netns = B.net.gateway_ns, /* out by up0, as the gateway does */
				    .decide = bench_decide,
				    .reflect = bench_reflect,
				    .on_data = B.relay_no_data ? NULL : bench_data };
	if (contain_relay_start(&relay, &rc) != MAMORI_OK) {
		fprintf(stderr, "contain-bench: relay: %s\n", mamori_error_detail());
		goto done;
	}
	measure_path(B.net.inmate_ns, &viarelay, sparse);
	leak_flows(B.net.inmate_ns);
	contain_relay_stats rst;
	contain_relay_stats_get(relay, &rst);
	contain_relay_stop(relay);
	relay = NULL;

	fprintf(stderr, "contain-bench: through the whole gateway...\n");
	static const char policy_text[] = "forward port=80\n"
					  "reflect port=25 to=smtp-sink\n"
					  "drop port=9\n";
	if (contain_policy_parse(&policy, "bench", policy_text, sizeof policy_text - 1) != MAMORI_OK ||
	    mamori_mkdir_p(gwdir) != MAMORI_OK) {
		fprintf(stderr, "contain-bench: gateway set-up: %s\n", mamori_error_detail());
		goto done;
	}
	contain_gateway_opts go = { .net = &B.net,
				    .policy = policy,
				    .session_dir = gwdir,
				    .upstream_netns = B.internet,
				    .no_capture = B.gateway_no_capture };
	if (contain_gateway_start(&gw, &go) != MAMORI_OK) {
		fprintf(stderr, "contain-bench: gateway: %s\n", mamori_error_detail());
		goto done;
	}
	measure_path(B.net.inmate_ns, &viagw, sparse);
	leak_flows(B.net.inmate_ns);
	contain_gateway_stats gst;
	contain_gateway_stop(gw, &gst);
	gw = NULL;
	usleep(300000); /* stragglers reach the counter */
	unsigned long leaked = atomic_load(&B.leaked);

	direct.down_mbs = median(B.direct_mbs[0], B.n_direct[0]);
	direct.up_mbs = median(B.direct_mbs[1], B.n_direct[1]);
	bool pass_all = direct.ok && viarelay.ok && viagw.ok;
	printf("Containment gateway benchmark (issue 5): %llu MiB bulk, wrk %d s x 32 conns, %d sequential "
	       "connections\n",
	       (unsigned long long)(B.bulk_bytes >> 20), B.wrk_seconds, B.lat_n);
	printf("%-34s %12s %12s %12s  %-14s %s\n", "measure", "direct", "relay", "gateway", "target",
	       "relay/gateway");
	path_result *via[2] = { &viarelay, &viagw };
	bool p[2];
	for (int i = 0; i < 2; i++)
		p[i] = via[i]->ok && via[i]->conn_rate >= TARGET_CONN_RATE && via[i]->wrk_errors == 0;
	printf("%-34s %12.0f %12.0f %12.0f  %-14s %s/%s\n", "new connections /s (wrk)", direct.conn_rate,
	       viarelay.conn_rate, viagw.conn_rate, ">= 2000", verdict(p[0]), verdict(p[1]));
	pass_all = pass_all && p[0] && p[1];
	printf("%-34s %12.3f %12.3f %12.3f  %-14s\n", "connection time median (ms)", direct.lat_median_ms,
	       viarelay.lat_median_ms, viagw.lat_median_ms, "");
	printf("%-34s %12.3f %12.3f %12.3f  %-14s\n", "connection time p90 (ms)", direct.lat_p90_ms,
	       viarelay.lat_p90_ms, viagw.lat_p90_ms, "");
	double added[2];
	for (int i = 0; i < 2; i++) {
		added[i] = via[i]->lat_median_ms - direct.lat_median_ms;
		p[i] = via[i]->ok && direct.ok && added[i] < TARGET_ADDED_MS;
	}
	printf("%-34s %12s %12.3f %12.3f  %-14s %s/%s\n", "added latency, median (ms)", "-", added[0],
	       added[1], "< 1", verdict(p[0]), verdict(p[1]));
	pass_all = pass_all && p[0] && p[1];
	double dr[2], ur[2];
	for (int i = 0; i < 2; i++) {
		dr[i] = via[i]->down_ratio;
		ur[i] = via[i]->up_ratio;
	}
	printf("%-34s %12.0f %12.0f %12.0f  %-14s %s/%s\n", "bulk download (MB/s)", direct.down_mbs,
	       viarelay.down_mbs, viagw.down_mbs, ">= 70% direct", verdict(dr[0] >= TARGET_BULK_RATIO),
	       verdict(dr[1] >= TARGET_BULK_RATIO));
	printf("%-34s %12s %11.0f%% %11.0f%%\n", "  of direct", "", dr[0] * 100, dr[1] * 100);
	printf("%-34s %12.0f %12.0f %12.0f  %-14s %s/%s\n", "bulk upload (MB/s)", direct.up_mbs,
	       viarelay.up_mbs, viagw.up_mbs, ">= 70% direct", verdict(ur[0] >= TARGET_BULK_RATIO),
	       verdict(ur[1] >= TARGET_BULK_RATIO));
	printf("%-34s %12s %11.0f%% %11.0f%%\n", "  of direct", "", ur[0] * 100, ur[1] * 100);
	pass_all = pass_all && dr[0] >= TARGET_BULK_RATIO && dr[1] >= TARGET_BULK_RATIO &&
		   ur[0] >= TARGET_BULK_RATIO && ur[1] >= TARGET_BULK_RATIO;
	double gb[3] = { B.direct_bulk_bytes / 1e9, viarelay.bulk_bytes / 1e9, viagw.bulk_bytes / 1e9 };
	printf("%-34s %12.2f %12.2f %12.2f\n", "bench process CPU s per GB (bulk)",
	       gb[0] > 0 ? B.direct_cpu_s / gb[0] : 0, gb[1] > 0 ? viarelay.cpu_s / gb[1] : 0,
	       gb[2] > 0 ? viagw.cpu_s / gb[2] : 0);
	printf("%-34s %12s %12lu %12s  %-14s %s\n", "leaked packets (ports 25, 9)", "-", leaked,
	       "(whole run)", "0", verdict(leaked == 0));
	printf("%-34s %12s %12llu %12llu\n", "wrk socket errors + non-2xx", "",
	       (unsigned long long)viarelay.wrk_errors, (unsigned long long)viagw.wrk_errors);
	printf("relay: %llu accepted, %llu forwarded, %llu reflected, %llu dropped, %llu over cap; on_data "
	       "saw %lu "
	       "bytes\n",
	       (unsigned long long)rst.accepted, (unsigned long long)rst.forwarded,
	       (unsigned long long)rst.reflected, (unsigned long long)rst.dropped,
	       (unsigned long long)rst.refused_over_cap, atomic_load(&B.seen_data));
	printf("gateway: %llu flows, %llu forwarded, %llu reflected, %llu dropped, %llu events, %llu packets "
	       "captured\n",
	       (unsigned long long)gst.flows, (unsigned long long)gst.forwarded,
	       (unsigned long long)gst.reflected, (unsigned long long)gst.dropped,
	       (unsigned long long)gst.events, (unsigned long long)gst.capture_packets);
	pass_all = pass_all && leaked == 0;
	printf("{\"bench\":\"contain\",\"bulk_mib\":%llu,\"wrk_seconds\":%d,\"lat_n\":%d",
	       (unsigned long long)(B.bulk_bytes >> 20), B.wrk_seconds, B.lat_n);
	path_result *all[3] = { &direct, &viarelay, &viagw };
	for (int i = 0; i < 3; i++)
		printf(",\"%s\":{\"ok\":%s,\"conn_per_s\":%.0f,\"wrk_errors\":%llu,\"conn_ms_median\":%.3f,"
		       "\"conn_ms_p90\":%.3f,\"down_mb_s\":%.0f,\"up_mb_s\":%.0f}",
		       all[i]->name, all[i]->ok ? "true" : "false", all[i]->conn_rate,
		       (unsigned long long)all[i]->wrk_errors, all[i]->lat_median_ms, all[i]->lat_p90_ms,
		       all[i]->down_mbs, all[i]->up_mbs);
	printf(",\"added_ms\":{\"relay\":%.3f,\"gateway\":%.3f},\"down_ratio\":{\"relay\":%.3f,\"gateway\":%."
	       "3f},"
	       "\"up_ratio\":{\"relay\":%.3f,\"gateway\":%.3f},\"leaked_packets\":%lu,\"pass\":%s}\n",
	       added[0], added[1], dr[0], dr[1], ur[0], ur[1], leaked, pass_all ? "true" : "false");
	status = pass_all ? 0 : 1;
done:
	contain_relay_stop(relay);
	contain_gateway_stop(gw, NULL);
	contain_policy_free(policy);
	lab_teardown();
	unlink(sparse);
	return status;
}
