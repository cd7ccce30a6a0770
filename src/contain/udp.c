/*
 * The gateway's UDP core: TPROXYed datagrams in, a verdict per flow, then
 * forward, reflect or drop. See udp.h for the contract.
 *
 * Limits: IPv4; one thread and one epoll set for every flow; a fixed table
 * of max_flows slots with a hash index (chains bounded by the table size,
 * keyed with a per-relay seed so the inmate cannot aim its ports at one
 * chain); one datagram buffer and one reply buffer of 64 KiB; at most
 * UDP_BATCH datagrams read from one socket per wake-up so a flood on one
 * flow cannot starve the others; the thread wakes at least every 200 ms,
 * and at once on contain_udp_stop() (an eventfd). A flow socket outlives
 * its flow by UDP_LINGER_S, so that no datagram of the next flow of the
 * same key is lost (close_flow_socket); at most UDP_PENDING_MAX datagrams
 * wait to be served that way, more are dropped and counted.
 *
 * Sockets in other namespaces are made by a setns() there and back around
 * socket(): the thread otherwise stays in the namespace it was started
 * from, so callbacks run where the caller runs.
 */
#include "udp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mamori/base.h"
#include "netns.h"

#define UDP_TICK_MS	    200
#define UDP_SWEEP_S	    0.1 /* idle timeouts are checked this often */
#define UDP_EVENTS	    64
#define UDP_BATCH	    32
#define UDP_DNS_PORT	    53
#define UDP_LISTEN_RCVBUF   (1 << 20)
#define UDP_DEFAULT_FLOWS   1024u
#define UDP_DEFAULT_IDLE_MS 30000u
#define UDP_PENDING_MAX	    64	 /* datagrams rescued from closing flow sockets */
#define UDP_LINGER_S	    0.02 /* how long a closing flow socket is kept before close */

/* What an epoll event refers to: the low two bits of its data; then the
 * slot index and, in the high 32 bits, the slot's generation. */
enum { SIDE_LISTEN = 0, SIDE_INMATE = 1, SIDE_UPSTREAM = 2, SIDE_WAKE = 3 };

#define UDP_BURST_MIN 65536.0 /* a LIMIT rate's bucket holds at least the largest datagram */

typedef struct udp_slot {
	contain_udp_flow f;
	int in_fd;		      /* transparent, bound to orig_dst, connected to src; -1: none */
	int up_fd;		      /* upstream, connected to orig_dst; -1: none */
	uint32_t gen;		      /* bumped when the slot is freed: stale epoll events are ignored */
	int32_t next;		      /* next in the hash chain, or in the free list */
	int32_t drop_prev, drop_next; /* the DROP flows, least recently active first */
	bool in_drop_list;
	double last; /* mamori_now() of the last datagram either way */
	bool used;
	double tokens, tokens_t; /* the LIMIT rate's bucket */
	uint64_t budget_used;	 /* bytes the LIMIT budget let through, both ways */
} udp_slot;

/* A datagram that reached a flow's socket as the flow ended: it belongs to
 * the next flow of the same key, served from the main loop. */
typedef struct pending_dgram {
	struct sockaddr_in src, dst;
	size_t n;
	uint8_t data[];
} pending_dgram;

/* A flow socket that was disconnected but not yet closed (see
 * close_flow_socket), with the key its datagrams belong to. */
typedef struct lingering {
	int fd;
	double close_at;
	struct sockaddr_in src, dst;
} lingering;

struct contain_udp {
	contain_udp_config cfg;
	char listen_ns[CONTAIN_NAME_MAX];
	char upstream_ns[CONTAIN_NAME_MAX];
	int listen_fd, epoll_fd, wake_fd;
	int home_ns_fd;	    /* the namespace the thread comes back to */
	int listen_ns_fd;   /* where reply sockets are made; -1: home */
	int upstream_ns_fd; /* where upstream sockets are made; -1: home */
	bool can_forward;
	struct sockaddr_in listen_sa;
	pthread_t thread;
	bool started;
	atomic_bool stop;
	uint64_t next_id, seed;
	udp_slot *slots;
	int32_t *buckets;
	uint32_t n_buckets; /* a power of two */
	int32_t free_head;
	int32_t drop_head, drop_tail;
	uint8_t *buf;				 /* one datagram from either side */
	uint8_t *out;				 /* one reflected reply */
	pending_dgram *pending[UDP_PENDING_MAX]; /* a ring, oldest first */
	unsigned pending_head, n_pending;
	lingering *linger; /* a ring of max_flows, oldest first */
	uint32_t linger_head, n_linger;
	pthread_mutex_t lock;
	contain_udp_stats stats; /* under lock: read by other threads */
};

#define STAT_ADD(u, field, n)                     \
	do {                                      \
		pthread_mutex_lock(&(u)->lock);   \
		(u)->stats.field += (n);          \
		pthread_mutex_unlock(&(u)->lock); \
	} while (0)

static uint64_t ev_data(uint32_t gen, uint32_t idx, int side)
{
	return (uint64_t)gen << 32 | (uint64_t)idx << 2 | (uint64_t)side;
}

/* ---- the flow table ---- */

typedef struct flow_key {
	uint32_t src_addr, dst_addr;
	uint16_t src_port, dst_port;
} flow_key;

static flow_key key_of(const struct sockaddr_in *src, const struct sockaddr_in *dst)
{
	flow_key k;
	memset(&k, 0, sizeof k); /* no padding bytes in the hash */
	k.src_addr = src->sin_addr.s_addr;
	k.dst_addr = dst->sin_addr.s_addr;
	k.src_port = src->sin_port;
	k.dst_port = dst->sin_port;
	return k;
}

static uint32_t bucket_of(const contain_udp *u, const flow_key *k)
{
	return (uint32_t)mamori_hash64(k, sizeof *k, u->seed) & (u->n_buckets - 1);
}

static int32_t flow_find(const contain_udp *u, const struct sockaddr_in *src, const struct sockaddr_in *dst)
{
	flow_key k = key_of(src, dst);
	for (int32_t i = u->buckets[bucket_of(u, &k)]; i >= 0; i = u->slots[i].next) {
		const contain_udp_flow *f = &u->slots[i].f;
		if (f->src.sin_addr.s_addr == k.src_addr && f->src.sin_port == k.src_port &&
		    f->orig_dst.sin_addr.s_addr == k.dst_addr && f->orig_dst.sin_port == k.dst_port)
			return i;
	}
	return -1;
}

static void flow_unlink(contain_udp *u, int32_t idx)
{
	flow_key k = key_of(&u->slots[idx].f.src, &u->slots[idx].f.orig_dst);
	int32_t *link = &u->buckets[bucket_of(u, &k)];
	while (*link >= 0 && *link != idx)
		link = &u->slots[*link].next;
	if (*link == idx)
		*link = u->slots[idx].next;
}

/* DROP flows own no socket and matter only as a remembered verdict: when
 * the table is full, the one quiet longest makes room, so that a scan or a
 * flood of dropped datagrams cannot lock out the flows the inmate needs
 * (its DNS). Flows with sockets are never evicted. */
static void drop_list_remove(contain_udp *u, int32_t idx)
{
	udp_slot *s = &u->slots[idx];
	if (!s->in_drop_list)
		return;
	if (s->drop_prev >= 0)
		u->slots[s->drop_prev].drop_next = s->drop_next;
	else
		u->drop_head = s->drop_next;
	if (s->drop_next >= 0)
		u->slots[s->drop_next].drop_prev = s->drop_prev;
	else
		u->drop_tail = s->drop_prev;
	s->in_drop_list = false;
}

static void drop_list_append(contain_udp *u, int32_t idx)
{
	udp_slot *s = &u->slots[idx];
	drop_list_remove(u, idx);
	s->drop_prev = u->drop_tail;
	s->drop_next = -1;
	if (u->drop_tail >= 0)
		u->slots[u->drop_tail].drop_next = idx;
	else
		u->drop_head = idx;
	u->drop_tail = idx;
	s->in_drop_list = true;
}

/* ---- sockets ---- */

/* A non-blocking UDP socket in the namespace `ns_fd` (-1: the thread's
 * own). Returns 0 or an errno. */
static int socket_in(contain_udp *u, int ns_fd, int *out_fd)
{
	*out_fd = -1;
	if (ns_fd >= 0 && setns(ns_fd, CLONE_NEWNET) != 0)
		return errno;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int err = fd < 0 ? errno : 0;
	/* Coming back cannot fail for a namespace we hold open; if it did,
	 * the thread would make its next "home" sockets in the wrong place, so
	 * this socket fails too and the flow is dropped. */
	if (ns_fd >= 0 && setns(u->home_ns_fd, CLONE_NEWNET) != 0 && err == 0)
		err = errno;
	if (fd >= 0 && err != 0) {
		close(fd);
		fd = -1;
	}
	*out_fd = fd;
	return err;
}

/* The socket that answers the inmate as if it were the original
 * destination, and that the kernel hands the flow's later datagrams to.
 * SO_REUSEADDR: many flows go to the same destination (one DNS server). */
static int reply_socket(contain_udp *u, const contain_udp_flow *f, int *out_fd)
{
	int fd = -1, one = 1;
	int err = socket_in(u, u->listen_ns_fd, &fd);
	if (err != 0)
		return err;
	if (setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof one) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
	    bind(fd, (const struct sockaddr *)&f->orig_dst, sizeof f->orig_dst) != 0 ||
	    connect(fd, (const struct sockaddr *)&f->src, sizeof f->src) != 0) {
		err = errno;
		close(fd);
		return err;
	}
	*out_fd = fd;
	return 0;
}

static int upstream_socket(contain_udp *u, const contain_udp_flow *f, int *out_fd)
{
	int fd = -1;
	int err = socket_in(u, u->upstream_ns_fd, &fd);
	if (err != 0)
		return err;
	if (connect(fd, (const struct sockaddr *)&f->orig_dst, sizeof f->orig_dst) != 0) {
		err = errno;
		close(fd);
		return err;
	}
	*out_fd = fd;
	return 0;
}

static bool watch(contain_udp *u, int fd, uint32_t gen, uint32_t idx, int side)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = ev_data(gen, idx, side) };
	return epoll_ctl(u->epoll_fd, EPOLL_CTL_ADD, fd, &ev) == 0;
}

static void close_watched(contain_udp *u, int *fd)
{
	if (*fd < 0)
		return;
	epoll_ctl(u->epoll_fd, EPOLL_CTL_DEL, *fd, NULL);
	close(*fd);
	*fd = -1;
}

/* No peer can have these addresses: answering "from" them, or sending to
 * them from the upstream side, makes no sense. */
static bool peer_addr_ok(struct in_addr a)
{
	uint32_t h = ntohl(a.s_addr);
	uint32_t top = h >> 24;
	return top != 0 && top != 127 && top < 224;
}

/* ---- flows ---- */

/* Move what sits in a closing flow's socket to the pending queue. */
static void rescue_queued(contain_udp *u, int fd, const struct sockaddr_in *src,
			  const struct sockaddr_in *dst)
{
	for (int i = 0; i < UDP_BATCH; i++) {
		uint8_t probe;
		ssize_t len = recv(fd, &probe, 1, MSG_DONTWAIT | MSG_PEEK | MSG_TRUNC);
		if (len < 0 && errno == EINTR)
			continue;
		if (len < 0 || len > CONTAIN_UDP_DGRAM_MAX)
			return;
		pending_dgram *d =
			u->n_pending < UDP_PENDING_MAX ? malloc(sizeof *d + (size_t)len + 1) : NULL;
		ssize_t got =
			recv(fd, d != NULL ? d->data : &probe, d != NULL ? (size_t)len : 1, MSG_DONTWAIT);
		if (d == NULL || got != len) {
			free(d);
			pthread_mutex_lock(&u->lock);
			u->stats.datagrams_up++;
			u->stats.not_passed++;
			pthread_mutex_unlock(&u->lock);
			continue;
		}
		d->src = *src;
		d->dst = *dst;
		d->n = (size_t)len;
		u->pending[(u->pending_head + u->n_pending++) % UDP_PENDING_MAX] = d;
	}
}

/* Close the flow socket of an ending flow without losing the inmate's next
 * datagram of the same key (a stub resolver sends its next query from the
 * same port right after the answer, often before the flow is closed). The
 * disconnect comes first: from then on the TPROXY lookup no longer picks
 * this socket (it wants a connected one) and new datagrams of the key go to
 * the listening socket. What already sits in the socket is taken now; what
 * the kernel assigned to it just before the disconnect but queues only
 * after this drain is taken when the socket, kept open that long, is closed
 * UDP_LINGER_S later. */
static void close_flow_socket(contain_udp *u, udp_slot *s)
{
	int fd = s->in_fd;
	s->in_fd = -1;
	epoll_ctl(u->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
	struct sockaddr unspec = { .sa_family = AF_UNSPEC };
	if (connect(fd, &unspec, sizeof unspec) != 0) {
		close(fd);
		return;
	}
	rescue_queued(u, fd, &s->f.src, &s->f.orig_dst);
	if (u->n_linger == u->cfg.max_flows) {
		close(fd); /* a burst of flow ends: this one takes its chance */
		return;
	}
	lingering *l = &u->linger[(u->linger_head + u->n_linger++) % u->cfg.max_flows];
	l->fd = fd;
	l->close_at = mamori_now() + UDP_LINGER_S;
	l->src = s->f.src;
	l->dst = s->f.orig_dst;
}

/* Close the lingering sockets whose time is up (all of them with `all`). */
static void close_lingering(contain_udp *u, double now, bool all)
{
	while (u->n_linger > 0) {
		lingering *l = &u->linger[u->linger_head];
		if (!all && l->close_at > now)
			break;
		if (!all)
			rescue_queued(u, l->fd, &l->src, &l->dst);
		close(l->fd);
		u->linger_head = (u->linger_head + 1) % u->cfg.max_flows;
		u->n_linger--;
	}
}

static void flow_end(contain_udp *u, int32_t idx, const char *reason)
{
	udp_slot *s = &u->slots[idx];
	if (s->in_fd >= 0 && strcmp(reason, "stop") != 0)
		close_flow_socket(u, s);
	close_watched(u, &s->in_fd);
	close_watched(u, &s->up_fd);
	s->f.t_end = mamori_now();
	s->f.end_reason = reason;
	if (u->cfg.on_end != NULL)
		u->cfg.on_end(u->cfg.ctx, &s->f);
	flow_unlink(u, idx);
	drop_list_remove(u, idx);
	s->used = false;
	s->gen++;
	s->next = u->free_head;
	u->free_head = idx;
	pthread_mutex_lock(&u->lock);
	u->stats.active--;
	pthread_mutex_unlock(&u->lock);
}

/* A DNS flow is over once every query in it was answered. */
static bool flow_answered(const contain_udp *u, const udp_slot *s)
{
	return !u->cfg.dns_keep_open && ntohs(s->f.orig_dst.sin_port) == UDP_DNS_PORT &&
	       s->f.packets_down > 0 && s->f.packets_down >= s->f.packets_up;
}

static void data_cb(contain_udp *u, udp_slot *s, bool up, const uint8_t *data, size_t n)
{
	if (u->cfg.on_data != NULL)
		u->cfg.on_data(u->cfg.ctx, &s->f, up, data, n);
}

/* May a datagram of `n` bytes pass a limited flow? (FORWARD only; a flow
 * without limits always may.) Counts what its limits drop. */
static bool within_limits(udp_slot *s, size_t n)
{
	const relay_limits *l = &s->f.limits;
	bool ok = true;
	if (l->byte_budget && s->budget_used + n > l->byte_budget)
		ok = false;
	if (ok && l->byte_rate) {
		double now = mamori_now(), burst = (double)l->byte_rate / 8.0;
		if (burst < UDP_BURST_MIN)
			burst = UDP_BURST_MIN;
		s->tokens += (now - s->tokens_t) * (double)l->byte_rate;
		if (s->tokens > burst)
			s->tokens = burst;
		s->tokens_t = now;
		ok = s->tokens >= (double)n;
		if (ok)
			s->tokens -= (double)n;
	}
	if (ok)
		s->budget_used += n;
	else
		s->f.limited++;
	return ok;
}

/* Send one datagram to the inmate from the flow's reply socket. */
static bool to_inmate(contain_udp *u, udp_slot *s, const uint8_t *data, size_t n)
{
	if (s->in_fd < 0 || send(s->in_fd, data, n, MSG_NOSIGNAL) != (ssize_t)n)
		return false;
	s->f.packets_down++;
	s->f.bytes_down += n;
	STAT_ADD(u, datagrams_down, 1);
	return true;
}

/* One datagram from the inmate, of a flow whose verdict is known. */
static void flow_up(contain_udp *u, int32_t idx, const uint8_t *data, size_t n)
{
	udp_slot *s = &u->slots[idx];
	s->last = mamori_now();
	if (s->in_drop_list)
		drop_list_append(u, idx);
	s->f.packets_up++;
	s->f.bytes_up += n;
	bool passed = false;
	size_t reply = 0;
	if (s->f.verdict == RELAY_FORWARD && s->up_fd >= 0 && within_limits(s, n)) {
		/* A pending ICMP error of an earlier datagram fails this send
		 * once (and is cleared): try again. */
		for (int tries = 0; tries < 2 && !passed; tries++)
			passed = send(s->up_fd, data, n, MSG_NOSIGNAL) == (ssize_t)n;
	} else if (s->f.verdict == RELAY_REFLECT) {
		passed = true;
		if (u->cfg.reflect(u->cfg.ctx, &s->f, data, n, u->out, CONTAIN_UDP_DGRAM_MAX, &reply) !=
			    MAMORI_OK ||
		    reply > CONTAIN_UDP_DGRAM_MAX || !to_inmate(u, s, u->out, reply))
			reply = 0;
	}
	pthread_mutex_lock(&u->lock);
	u->stats.datagrams_up++;
	if (!passed)
		u->stats.not_passed++;
	pthread_mutex_unlock(&u->lock);
	if (!passed)
		s->f.dropped_up++;
	data_cb(u, s, true, data, n);
	if (reply > 0)
		data_cb(u, s, false, u->out, reply);
	if (flow_answered(u, s))
		flow_end(u, idx, "answered");
}

/* A new flow: ask for the verdict, make its sockets, pass its first datagram. */
static void flow_open(contain_udp *u, const struct sockaddr_in *src, const struct sockaddr_in *dst,
		      const uint8_t *data, size_t n)
{
	if (u->free_head < 0 && u->drop_head >= 0) {
		flow_end(u, u->drop_head, "evicted");
		STAT_ADD(u, evicted, 1);
	}
	if (u->free_head < 0) {
		pthread_mutex_lock(&u->lock);
		u->stats.datagrams_up++;
		u->stats.not_passed++;
		u->stats.refused_over_cap++;
		pthread_mutex_unlock(&u->lock);
		return;
	}
	int32_t idx = u->free_head;
	udp_slot *s = &u->slots[idx];
	u->free_head = s->next;
	uint32_t gen = s->gen;
	memset(&s->f, 0, sizeof s->f);
	s->f.id = ++u->next_id;
	s->f.src = *src;
	s->f.orig_dst = *dst;
	s->f.t_start = s->last = mamori_now();
	s->in_fd = s->up_fd = -1;
	s->used = true;
	flow_key k = key_of(src, dst);
	uint32_t b = bucket_of(u, &k);
	s->next = u->buckets[b];
	u->buckets[b] = idx;
	pthread_mutex_lock(&u->lock);
	u->stats.flows++;
	u->stats.active++;
	pthread_mutex_unlock(&u->lock);

	relay_limits lim = { 0 };
	int v = u->cfg.decide(u->cfg.ctx, &s->f, data, n, &lim);
	s->budget_used = 0;
	s->tokens = UDP_BURST_MIN; /* a full bucket to start with, as the relay's */
	s->tokens_t = mamori_now();
	if (v == RELAY_FORWARD && !u->can_forward)
		v = u->cfg.reflect != NULL ? RELAY_REFLECT : RELAY_DROP;
	if (v == RELAY_REFLECT && u->cfg.reflect == NULL)
		v = RELAY_DROP;
	if ((v != RELAY_FORWARD && v != RELAY_REFLECT) || !peer_addr_ok(dst->sin_addr) ||
	    !peer_addr_ok(src->sin_addr))
		v = RELAY_DROP;
	if (v != RELAY_DROP && (reply_socket(u, &s->f, &s->in_fd) != 0 ||
				!watch(u, s->in_fd, gen, (uint32_t)idx, SIDE_INMATE))) {
		/* Without it no answer could reach the inmate: say so in the
		 * verdict rather than pretend. */
		if (s->in_fd >= 0)
			close(s->in_fd);
		s->in_fd = -1;
		v = RELAY_DROP;
		STAT_ADD(u, socket_failed, 1);
	}
	if (v == RELAY_FORWARD) {
		s->f.upstream_errno = upstream_socket(u, &s->f, &s->up_fd);
		if (s->f.upstream_errno == 0 && !watch(u, s->up_fd, gen, (uint32_t)idx, SIDE_UPSTREAM)) {
			s->f.upstream_errno = errno;
			close(s->up_fd);
			s->up_fd = -1;
		}
		/* The flow stays, its datagrams dropped: the next one does
		 * not ask for a verdict again. */
		if (s->f.upstream_errno != 0)
			STAT_ADD(u, upstream_failed, 1);
	}
	s->f.verdict = v;
	if (v == RELAY_FORWARD)
		s->f.limits = lim;
	if (v == RELAY_DROP && s->in_fd < 0 && s->up_fd < 0)
		drop_list_append(u, idx);
	pthread_mutex_lock(&u->lock);
	if (v == RELAY_FORWARD)
		u->stats.forwarded++;
	else if (v == RELAY_REFLECT)
		u->stats.reflected++;
	else
		u->stats.dropped++;
	pthread_mutex_unlock(&u->lock);
	flow_up(u, idx, data, n);
}

static void dispatch(contain_udp *u, const struct sockaddr_in *src, const struct sockaddr_in *dst,
		     const uint8_t *data, size_t n)
{
	int32_t idx = flow_find(u, src, dst);
	if (idx >= 0)
		flow_up(u, idx, data, n);
	else
		flow_open(u, src, dst, data, n);
}

/* Datagrams on the listening socket: first ones of new flows, those of
 * flows without a socket of their own (DROP), and any that overtook the
 * making of a flow's reply socket. */
static void read_listen(contain_udp *u)
{
	for (int i = 0; i < UDP_BATCH; i++) {
		union {
			struct cmsghdr align;
			char buf[CMSG_SPACE(sizeof(struct sockaddr_in))];
		} control;
		struct sockaddr_in src;
		struct iovec iov = { .iov_base = u->buf, .iov_len = CONTAIN_UDP_DGRAM_MAX };
		struct msghdr msg = { .msg_name = &src,
				      .msg_namelen = sizeof src,
				      .msg_iov = &iov,
				      .msg_iovlen = 1,
				      .msg_control = control.buf,
				      .msg_controllen = sizeof control.buf };
		ssize_t got = recvmsg(u->listen_fd, &msg, MSG_DONTWAIT);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			return;
		if (msg.msg_namelen < sizeof src || src.sin_family != AF_INET || (msg.msg_flags & MSG_TRUNC))
			continue;
		/* Sent to the port directly, not TPROXYed: the local address is
		 * the destination, as relay.c does for TCP. */
		struct sockaddr_in dst = u->listen_sa;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c))
			if (c->cmsg_level == SOL_IP && c->cmsg_type == IP_ORIGDSTADDR &&
			    c->cmsg_len >= CMSG_LEN(sizeof dst))
				memcpy(&dst, CMSG_DATA(c), sizeof dst);
		dst.sin_family = AF_INET;
		dispatch(u, &src, &dst, u->buf, (size_t)got);
	}
}

/* The datagrams rescued from closed flow sockets, oldest first. Serving
 * one may end a flow and rescue more: the loop runs until none is left,
 * which it must, as each one is a datagram the kernel delivered. */
static void serve_pending(contain_udp *u)
{
	while (u->n_pending > 0) {
		pending_dgram *d = u->pending[u->pending_head];
		u->pending_head = (u->pending_head + 1) % UDP_PENDING_MAX;
		u->n_pending--;
		dispatch(u, &d->src, &d->dst, d->data, d->n);
		free(d);
	}
}

/* Datagrams on a flow's own reply socket: the inmate's, after the first. */
static void read_inmate(contain_udp *u, int32_t idx, uint32_t gen)
{
	for (int i = 0; i < UDP_BATCH && u->slots[idx].used && u->slots[idx].gen == gen; i++) {
		ssize_t got = recv(u->slots[idx].in_fd, u->buf, CONTAIN_UDP_DGRAM_MAX, MSG_DONTWAIT);
		if (got < 0 && errno == EINTR)
			continue;
		/* ECONNREFUSED: the inmate closed its port to an answer. */
		if (got < 0)
			return;
		flow_up(u, idx, u->buf, (size_t)got);
	}
}

/* Answers from upstream, passed back to the inmate. */
static void read_upstream(contain_udp *u, int32_t idx, uint32_t gen)
{
	for (int i = 0; i < UDP_BATCH && u->slots[idx].used && u->slots[idx].gen == gen; i++) {
		udp_slot *s = &u->slots[idx];
		ssize_t got = recv(s->up_fd, u->buf, CONTAIN_UDP_DGRAM_MAX, MSG_DONTWAIT);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			/* An ICMP error upstream (port unreachable): kept for the
			 * record, the flow goes on. */
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				s->f.upstream_errno = errno;
			return;
		}
		s->last = mamori_now();
		if (!within_limits(s, (size_t)got) || !to_inmate(u, s, u->buf, (size_t)got))
			continue;
		data_cb(u, s, false, u->buf, (size_t)got);
		if (flow_answered(u, s))
			flow_end(u, idx, "answered");
	}
}

static void sweep_idle(contain_udp *u, double now)
{
	double idle = u->cfg.idle_timeout_ms / 1000.0;
	for (uint32_t i = 0; i < u->cfg.max_flows; i++)
		if (u->slots[i].used && now - u->slots[i].last >= idle)
			flow_end(u, (int32_t)i, "idle");
}

static void *udp_thread(void *arg)
{
	contain_udp *u = arg;
	struct epoll_event ev[UDP_EVENTS];
	double next_sweep = mamori_now() + UDP_SWEEP_S;
	while (!atomic_load(&u->stop)) {
		int n = epoll_wait(u->epoll_fd, ev, UDP_EVENTS, UDP_TICK_MS);
		for (int i = 0; i < n && !atomic_load(&u->stop); i++) {
			uint64_t d = ev[i].data.u64;
			int side = (int)(d & 3);
			uint32_t idx = (uint32_t)(d >> 2) & 0x3fffffffu, gen = (uint32_t)(d >> 32);
			if (side == SIDE_LISTEN)
				read_listen(u);
			/* else: the flow may have ended earlier in this batch */
			else if (side != SIDE_WAKE && idx < u->cfg.max_flows && u->slots[idx].used &&
				 u->slots[idx].gen == gen) {
				if (side == SIDE_INMATE)
					read_inmate(u, (int32_t)idx, gen);
				else
					read_upstream(u, (int32_t)idx, gen);
			}
			serve_pending(u);
		}
		double now = mamori_now();
		/* Every round, not only every sweep: at thousands of DNS
		 * flows a second the ring of lingering sockets must not fill. */
		close_lingering(u, now, false);
		serve_pending(u);
		if (now >= next_sweep) {
			sweep_idle(u, now);
			serve_pending(u);
			next_sweep = now + UDP_SWEEP_S;
		}
	}
	close_lingering(u, 0, true);
	for (unsigned i = 0; i < u->n_pending; i++)
		free(u->pending[(u->pending_head + i) % UDP_PENDING_MAX]);
	u->n_pending = 0;
	for (uint32_t i = 0; i < u->cfg.max_flows; i++)
		if (u->slots[i].used)
			flow_end(u, (int32_t)i, "stop");
	return NULL;
}

/* ---- life cycle ---- */

static int open_ns(int *out_fd, const char *name, const char *what)
{
	int rc = contain_netns_open(out_fd, name);
	if (rc != MAMORI_OK)
		return mamori_fail(rc, "udp: %s namespace: %s", what, mamori_error_detail());
	return MAMORI_OK;
}

static int listen_socket(contain_udp *u)
{
	int one = 1, rcvbuf = UDP_LISTEN_RCVBUF;
	int err = socket_in(u, u->listen_ns_fd, &u->listen_fd);
	if (err != 0)
		return mamori_fail(MAMORI_EIO, "udp: socket: %s", strerror(err));
	/* Without IP_TRANSPARENT the TPROXY target refuses the socket; without
	 * IP_RECVORIGDSTADDR we would not learn where a datagram was going. */
	if (setsockopt(u->listen_fd, SOL_IP, IP_TRANSPARENT, &one, sizeof one) != 0 ||
	    setsockopt(u->listen_fd, SOL_IP, IP_RECVORIGDSTADDR, &one, sizeof one) != 0)
		return mamori_fail(MAMORI_EIO, "udp: transparent socket: %s", strerror(errno));
	setsockopt(u->listen_fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf); /* bursts; best effort */
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr = u->cfg.listen_addr,
				  .sin_port = htons(u->cfg.port) };
	if (bind(u->listen_fd, (struct sockaddr *)&sa, sizeof sa) != 0)
		return mamori_fail(MAMORI_EIO, "udp: bind to port %u: %s", u->cfg.port, strerror(errno));
	socklen_t len = sizeof u->listen_sa;
	getsockname(u->listen_fd, (struct sockaddr *)&u->listen_sa, &len);
	return MAMORI_OK;
}

static int table_init(contain_udp *u)
{
	u->n_buckets = 1;
	while (u->n_buckets < 2 * u->cfg.max_flows)
		u->n_buckets <<= 1;
	u->slots = calloc(u->cfg.max_flows, sizeof *u->slots);
	u->buckets = malloc((size_t)u->n_buckets * sizeof *u->buckets);
	u->buf = malloc(CONTAIN_UDP_DGRAM_MAX);
	u->out = malloc(CONTAIN_UDP_DGRAM_MAX);
	u->linger = calloc(u->cfg.max_flows, sizeof *u->linger);
	if (u->slots == NULL || u->buckets == NULL || u->buf == NULL || u->out == NULL || u->linger == NULL)
		return mamori_fail(MAMORI_ENOMEM, "udp: out of memory for %u flows", u->cfg.max_flows);
	for (uint32_t i = 0; i < u->n_buckets; i++)
		u->buckets[i] = -1;
	for (uint32_t i = 0; i < u->cfg.max_flows; i++) {
		u->slots[i].in_fd = u->slots[i].up_fd = -1;
		u->slots[i].next = i + 1 < u->cfg.max_flows ? (int32_t)(i + 1) : -1;
	}
	u->free_head = 0;
	u->drop_head = u->drop_tail = -1;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t seed_src[3] = { (uint64_t)ts.tv_nsec, (uint64_t)ts.tv_sec, (uint64_t)(uintptr_t)u };
	u->seed = mamori_hash64(seed_src, sizeof seed_src, (uint64_t)getpid());
	return MAMORI_OK;
}

int contain_udp_start(contain_udp **out, const contain_udp_config *cfg)
{
	*out = NULL;
	if (cfg->decide == NULL)
		return mamori_fail(MAMORI_EINVAL, "udp: a decide callback is required");
	if ((cfg->listen_netns != NULL && !contain_netns_name_ok(cfg->listen_netns)) ||
	    (cfg->upstream_netns != NULL && !contain_netns_name_ok(cfg->upstream_netns)))
		return mamori_fail(MAMORI_EINVAL, "udp: bad namespace name");
	if (cfg->max_flows > CONTAIN_UDP_FLOWS_MAX)
		return mamori_fail(MAMORI_EINVAL, "udp: max_flows %u above %u", cfg->max_flows,
				   CONTAIN_UDP_FLOWS_MAX);
	contain_udp *u = calloc(1, sizeof *u);
	if (u == NULL)
		return mamori_fail(MAMORI_ENOMEM, "udp: out of memory");
	u->cfg = *cfg;
	u->listen_fd = u->epoll_fd = u->wake_fd = -1;
	u->home_ns_fd = u->listen_ns_fd = u->upstream_ns_fd = -1;
	pthread_mutex_init(&u->lock, NULL);
	if (cfg->listen_netns != NULL) {
		snprintf(u->listen_ns, sizeof u->listen_ns, "%s", cfg->listen_netns);
		u->cfg.listen_netns = u->listen_ns;
	}
	if (cfg->upstream_netns != NULL) {
		snprintf(u->upstream_ns, sizeof u->upstream_ns, "%s", cfg->upstream_netns);
		u->cfg.upstream_netns = u->upstream_ns;
	}
	if (u->cfg.max_flows == 0)
		u->cfg.max_flows = UDP_DEFAULT_FLOWS;
	if (u->cfg.idle_timeout_ms == 0)
		u->cfg.idle_timeout_ms = UDP_DEFAULT_IDLE_MS;

	int rc = table_init(u);
	if (rc != MAMORI_OK)
		goto done;
	/* The thread inherits the caller's namespace: that is "home". */
	u->home_ns_fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (u->home_ns_fd < 0) {
		rc = mamori_fail(MAMORI_EIO, "udp: own namespace: %s", strerror(errno));
		goto done;
	}
	if (u->cfg.listen_netns != NULL &&
	    (rc = open_ns(&u->listen_ns_fd, u->cfg.listen_netns, "listen")) != MAMORI_OK)
		goto done;
	if (u->cfg.upstream_netns != NULL) {
		rc = open_ns(&u->upstream_ns_fd, u->cfg.upstream_netns, "upstream");
		if (rc != MAMORI_OK)
			goto done;
		u->can_forward = true;
	} else {
		u->can_forward = u->cfg.upstream_own_netns;
	}
	rc = listen_socket(u);
	if (rc != MAMORI_OK)
		goto done;
	u->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	u->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (u->epoll_fd < 0 || u->wake_fd < 0 || !watch(u, u->listen_fd, 0, 0, SIDE_LISTEN) ||
	    !watch(u, u->wake_fd, 0, 0, SIDE_WAKE)) {
		rc = mamori_fail(MAMORI_EIO, "udp: epoll: %s", strerror(errno));
		goto done;
	}
	if (pthread_create(&u->thread, NULL, udp_thread, u) != 0) {
		rc = mamori_fail(MAMORI_EIO, "udp: cannot start thread");
		goto done;
	}
	u->started = true;
	*out = u;
	u = NULL;
done:
	contain_udp_stop(u);
	return rc;
}

uint16_t contain_udp_port(const contain_udp *u)
{
	return ntohs(u->listen_sa.sin_port);
}

void contain_udp_stats_get(contain_udp *u, contain_udp_stats *out)
{
	pthread_mutex_lock(&u->lock);
	*out = u->stats;
	pthread_mutex_unlock(&u->lock);
}

void contain_udp_stop(contain_udp *u)
{
	if (u == NULL)
		return;
	atomic_store(&u->stop, true);
	if (u->started) {
		uint64_t one = 1;
		/* The eventfd wakes the thread at once; without it the tick does. */
		ssize_t w = write(u->wake_fd, &one, sizeof one);
		(void)w;
		pthread_join(u->thread, NULL);
	}
	int fds[] = {
		u->listen_fd, u->epoll_fd, u->wake_fd, u->home_ns_fd, u->listen_ns_fd, u->upstream_ns_fd
	};
	for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	free(u->slots);
	free(u->buckets);
	free(u->buf);
	free(u->out);
	free(u->linger);
	pthread_mutex_destroy(&u->lock);
	free(u);
}
