/*
 * Would an eBPF sockmap redirect beat the relay's splice() for bulk data?
 * (docs/benchmarks.md, "Containment gateway"). A probe, not a benchmark of
 * mamori: on the loopback of the caller's namespace it moves BULK bytes
 * from a sender thread to a receiver three ways and prints MB/s for each:
 *
 *   direct    the receiver connects to the sender;
 *   splice    through a relay thread that splices upstream -> pipe ->
 *             client, as src/contain/relay.c does for a flow nobody reads;
 *   sockmap   through the same two relay sockets, but the relay thread
 *             only puts them into two SOCKMAPs and an SK_SKB verdict
 *             program (six instructions, loaded with bpf(2)) redirects every
 *             skb arriving on the upstream socket to the client socket's
 *             egress: the kernel alone moves the bytes.
 *
 * Needs root (BPF). Binds 127.0.0.1 only. usage: sockmap_probe [MiB]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "mamori/base.h"

#define CHUNK (1u << 20)

static uint64_t bulk = 1024ull << 20;
static uint8_t send_buf[CHUNK], recv_buf[CHUNK];

static long sys_bpf(int cmd, union bpf_attr *a)
{
	return syscall(SYS_bpf, cmd, a, sizeof *a);
}

static int tcp_listen(uint16_t *port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof a;
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 8) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
		perror("sockmap_probe: listen");
		exit(2);
	}
	*port = ntohs(a.sin_port);
	return fd;
}

static int tcp_connect(uint16_t port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
		perror("sockmap_probe: connect");
		exit(2);
	}
	return fd;
}

/* The sender: one connection at a time, `bulk` bytes each. */
static void *sender(void *arg)
{
	int lfd = *(int *)arg;
	for (;;) {
		int c = accept(lfd, NULL, NULL);
		if (c < 0)
			return NULL;
		for (uint64_t left = bulk; left > 0;) {
			ssize_t n = send(c, send_buf, left < CHUNK ? left : CHUNK, MSG_NOSIGNAL);
			if (n <= 0)
				break;
			left -= (uint64_t)n;
		}
		close(c);
	}
}

/* Receive everything from `port`; MB/s (10^6 bytes/s), or -1 when short. */
static double receive(uint16_t port)
{
	int fd = tcp_connect(port);
	uint64_t got = 0;
	double t0 = mamori_now();
	while (got < bulk) {
		ssize_t n = recv(fd, recv_buf, sizeof recv_buf, 0);
		if (n <= 0)
			break;
		got += (uint64_t)n;
	}
	double secs = mamori_now() - t0;
	close(fd);
	if (got != bulk)
		fprintf(stderr, "sockmap_probe: %llu of %llu bytes arrived\n", (unsigned long long)got,
			(unsigned long long)bulk);
	return got == bulk ? (double)got / secs / 1e6 : -1.0;
}

typedef struct relay_arg {
	int listen_fd;
	uint16_t up_port;
	int map_in, map_out; /* sockmap mode; -1: splice */
} relay_arg;

static int map_put(int map, int fd)
{
	uint32_t key = 0;
	uint64_t value = (uint64_t)fd;
	union bpf_attr a;
	memset(&a, 0, sizeof a);
	a.map_fd = (uint32_t)map;
	a.key = (uint64_t)(uintptr_t)&key;
	a.value = (uint64_t)(uintptr_t)&value;
	a.flags = BPF_ANY;
	return (int)sys_bpf(BPF_MAP_UPDATE_ELEM, &a);
}

static void *relay(void *arg)
{
	relay_arg *r = arg;
	int c = accept(r->listen_fd, NULL, NULL);
	int u = tcp_connect(r->up_port);
	if (r->map_in >= 0) {
		/* The client socket is the target; the program runs on the upstream one. */
		if (map_put(r->map_out, c) != 0 || map_put(r->map_in, u) != 0)
			perror("sockmap_probe: map update");
		/* Until the receiver closes: reading the client socket would
		 * race the redirect (it belongs to the sockmap now). */
		struct pollfd p = { .fd = c, .events = POLLRDHUP };
		while (poll(&p, 1, 1000) == 0)
			;
	} else {
		int p[2];
		if (pipe2(p, O_CLOEXEC) == 0) {
			fcntl(p[1], F_SETPIPE_SZ, CHUNK);
			for (;;) {
				ssize_t n = splice(u, NULL, p[1], NULL, CHUNK, SPLICE_F_MOVE);
				if (n <= 0)
					break;
				while (n > 0) {
					ssize_t m = splice(p[0], NULL, c, NULL, (size_t)n, SPLICE_F_MOVE);
					if (m <= 0)
						break;
					n -= m;
				}
			}
			close(p[0]);
			close(p[1]);
		}
	}
	close(c);
	close(u);
	return NULL;
}

/* Two sockmaps and the verdict program, attached to the first. */
static int sockmap_setup(int *map_in, int *map_out)
{
	union bpf_attr a;
	memset(&a, 0, sizeof a);
	a.map_type = BPF_MAP_TYPE_SOCKMAP;
	a.key_size = 4;
	a.value_size = 8;
	a.max_entries = 1;
	*map_in = (int)sys_bpf(BPF_MAP_CREATE, &a);
	*map_out = (int)sys_bpf(BPF_MAP_CREATE, &a);
	if (*map_in < 0 || *map_out < 0)
		return -1;
	/* return bpf_sk_redirect_map(skb, map_out, 0, 0): to the egress of the client socket. */
	struct bpf_insn prog[] = {
		{ .code = 0x18, /* BPF_LD | BPF_DW | BPF_IMM (both 0): lddw */
		  .dst_reg = 2,
		  .src_reg = BPF_PSEUDO_MAP_FD,
		  .imm = *map_out },
		{ .code = 0 },
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = 3, .imm = 0 },
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = 4, .imm = 0 },
		{ .code = BPF_JMP | BPF_CALL, .imm = BPF_FUNC_sk_redirect_map },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	static char log[16384];
	memset(&a, 0, sizeof a);
	a.prog_type = BPF_PROG_TYPE_SK_SKB;
	a.insns = (uint64_t)(uintptr_t)prog;
	a.insn_cnt = sizeof prog / sizeof prog[0];
	a.license = (uint64_t)(uintptr_t) "GPL";
	a.log_buf = (uint64_t)(uintptr_t)log;
	a.log_size = sizeof log;
	a.log_level = 1;
	int fd = (int)sys_bpf(BPF_PROG_LOAD, &a);
	if (fd < 0) {
		fprintf(stderr, "sockmap_probe: program: %s\n%s", strerror(errno), log);
		return -1;
	}
	memset(&a, 0, sizeof a);
	a.target_fd = (uint32_t)*map_in;
	a.attach_bpf_fd = (uint32_t)fd;
	a.attach_type = BPF_SK_SKB_VERDICT;
	return (int)sys_bpf(BPF_PROG_ATTACH, &a);
}

static double through_relay(uint16_t up_port, bool sockmap)
{
	relay_arg r = { .up_port = up_port, .map_in = -1, .map_out = -1 };
	uint16_t port;
	r.listen_fd = tcp_listen(&port);
	if (sockmap && sockmap_setup(&r.map_in, &r.map_out) != 0) {
		perror("sockmap_probe: sockmap");
		exit(2);
	}
	pthread_t t;
	pthread_create(&t, NULL, relay, &r);
	double mbs = receive(port);
	pthread_join(t, NULL);
	close(r.listen_fd);
	if (sockmap) {
		close(r.map_in);
		close(r.map_out);
	}
	return mbs;
}

int main(int argc, char **argv)
{
	if (argc > 1)
		bulk = strtoull(argv[1], NULL, 10) << 20;
	if (bulk == 0)
		bulk = 1024ull << 20;
	memset(send_buf, 'x', sizeof send_buf);
	uint16_t up_port;
	int lfd = tcp_listen(&up_port);
	pthread_t t;
	pthread_create(&t, NULL, sender, &lfd);
	for (int round = 0; round < 2; round++) {
		double d = receive(up_port), s = through_relay(up_port, false),
		       m = through_relay(up_port, true);
		printf("round %d: direct %.0f MB/s, splice relay %.0f MB/s (%.0f%%), sockmap redirect %.0f "
		       "MB/s "
		       "(%.0f%%)\n",
		       round + 1, d, s, 100.0 * s / d, m, 100.0 * m / d);
	}
	return 0;
}
