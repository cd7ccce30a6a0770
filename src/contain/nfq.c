/*
 * The NFQUEUE listener (nfq.h) on the libmnl API of libnetfilter_queue.
 *
 * Why that API and not nfq_open(): a netlink socket belongs to the network
 * namespace it was created in, so all we need is a socket made inside the
 * gateway namespace (contain_netns_socket, which switches namespaces for
 * the one socket() call on this thread) handed to mnl_socket_fdopen(). The
 * older nfq_open() API opens its socket itself, so the thread would have to
 * stay inside the namespace across library calls we do not control, and it
 * needs libnfnetlink on top. The libmnl API only builds and parses messages;
 * reading, writing and error handling stay ours.
 *
 * The queue is bound and configured with one message (bind, copy-packet
 * mode with the copy range, queue length, fail-open explicitly off) and its
 * acknowledgement is awaited, so start() reports a refused bind. The thread
 * then waits on the socket and an eventfd; stop() writes the eventfd, so it
 * returns at once instead of after a poll timeout. One verdict message per
 * packet; the kernel keeps the packet, so the verdict carries no payload.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <libnetfilter_queue/libnetfilter_queue.h>

#include "mamori/base.h"
#include "netns.h"
#include "nfq.h"

#define MAX_COPY_RANGE	  65535u
#define RECV_SLACK	  8192u	    /* netlink and attribute headers around the payload */
#define SOCKET_RCVBUF	  (4 << 20) /* room for bursts (a ping flood) before overruns */
#define CONFIG_TIMEOUT_MS 2000
#define CONTROL_BUFFER	  512u /* one config or verdict message */

struct contain_nfq {
	contain_nfq_config cfg;
	struct mnl_socket *nl;
	unsigned portid;
	int wake_fd;
	pthread_t th;
	bool thread;
	uint8_t *buf;
	size_t buf_size;
	_Atomic uint64_t packets, accepted, dropped, malformed, overruns, errors;
};

static int send_verdict(contain_nfq *q, uint32_t id, contain_nfq_verdict v)
{
	_Alignas(struct nlmsghdr) char msg[CONTROL_BUFFER];
	struct nlmsghdr *nlh = nfq_nlmsg_put(msg, NFQNL_MSG_VERDICT, q->cfg.queue);
	nfq_nlmsg_verdict_put(nlh, (int)id, v == CONTAIN_NFQ_ACCEPT ? NF_ACCEPT : NF_DROP);
	/* Counted before it is sent: once the kernel has it, the packet (or
	 * its answer) can be seen elsewhere before this thread goes on. */
	_Atomic uint64_t *counter = v == CONTAIN_NFQ_ACCEPT ? &q->accepted : &q->dropped;
	atomic_fetch_add(counter, 1);
	if (mnl_socket_sendto(q->nl, nlh, nlh->nlmsg_len) < 0) {
		/* Not issued: the packet stays queued until the socket closes,
		 * and is dropped then. */
		atomic_fetch_sub(counter, 1);
		atomic_fetch_add(&q->errors, 1);
		return -1;
	}
	return 0;
}

/* One queued packet: parse what was copied, ask, answer. A packet without
 * a header or payload (a malformed message) gets DROP if it has an id. */
static int on_message(const struct nlmsghdr *nlh, void *data)
{
	contain_nfq *q = data;
	if (nlh->nlmsg_type != ((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET))
		return MNL_CB_OK;
	struct nlattr *attr[NFQA_MAX + 1] = { 0 };
	if (nfq_nlmsg_parse(nlh, attr) < 0 || !attr[NFQA_PACKET_HDR] ||
	    mnl_attr_get_payload_len(attr[NFQA_PACKET_HDR]) < sizeof(struct nfqnl_msg_packet_hdr)) {
		atomic_fetch_add(&q->errors, 1);
		return MNL_CB_OK;
	}
	const struct nfqnl_msg_packet_hdr *ph = mnl_attr_get_payload(attr[NFQA_PACKET_HDR]);
	uint32_t id = ntohl(ph->packet_id);
	atomic_fetch_add(&q->packets, 1);
	const uint8_t *payload = NULL;
	size_t len = 0;
	if (attr[NFQA_PAYLOAD]) {
		payload = mnl_attr_get_payload(attr[NFQA_PAYLOAD]);
		len = mnl_attr_get_payload_len(attr[NFQA_PAYLOAD]);
	}
	contain_packet p;
	contain_nfq_verdict v = CONTAIN_NFQ_DROP;
	if (!payload || contain_packet_parse(&p, payload, len) != MAMORI_OK)
		atomic_fetch_add(&q->malformed, 1);
	else if (q->cfg.decide)
		v = q->cfg.decide(q->cfg.ctx, &p, payload, len) == CONTAIN_NFQ_ACCEPT ? CONTAIN_NFQ_ACCEPT
										      : CONTAIN_NFQ_DROP;
	send_verdict(q, id, v);
	return MNL_CB_OK;
}

/* Read whatever is waiting without blocking. Returns -1 when the socket
 * is unusable (the thread ends: the kernel then drops what is queued). */
static int drain(contain_nfq *q)
{
	int fd = mnl_socket_get_fd(q->nl);
	for (;;) {
		ssize_t n = recv(fd, q->buf, q->buf_size, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			if (errno == EINTR)
				continue;
			if (errno == ENOBUFS) {
				atomic_fetch_add(&q->overruns, 1);
				continue;
			}
			return -1;
		}
		/* Error messages (a verdict for a packet that is gone) come back
		 * as -1 here; they are counted and the rest goes on. */
		if (mnl_cb_run(q->buf, (size_t)n, 0, q->portid, on_message, q) < 0)
			atomic_fetch_add(&q->errors, 1);
	}
}

static void *nfq_main(void *arg)
{
	contain_nfq *q = arg;
	struct pollfd pfd[2] = { { .fd = mnl_socket_get_fd(q->nl), .events = POLLIN },
				 { .fd = q->wake_fd, .events = POLLIN } };
	for (;;) {
		int ready = poll(pfd, 2, -1);
		if (ready < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd[1].revents)
			break;
		if (pfd[0].revents & (POLLERR | POLLHUP | POLLNVAL)) {
			/* POLLERR is how an overrun is announced; recv reports it. */
			if (drain(q) < 0)
				break;
			continue;
		}
		if (drain(q) < 0)
			break;
	}
	return NULL;
}

/* Bind and configure in one message and wait for its acknowledgement;
 * packets that arrive in between (the queue is live from the bind on) are
 * answered as usual. */
static int configure(contain_nfq *q)
{
	_Alignas(struct nlmsghdr) char msg[CONTROL_BUFFER];
	struct nlmsghdr *nlh = nfq_nlmsg_put(msg, NFQNL_MSG_CONFIG, q->cfg.queue);
	uint32_t seq = (uint32_t)time(NULL);
	nlh->nlmsg_flags |= NLM_F_ACK;
	nlh->nlmsg_seq = seq;
	nfq_nlmsg_cfg_put_cmd(nlh, AF_INET, NFQNL_CFG_CMD_BIND);
	nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_PACKET, (int)q->cfg.copy_range);
	nfq_nlmsg_cfg_put_qmaxlen(nlh, q->cfg.max_queued);
	/* Fail-open off, explicitly: a full queue must drop, not forward. */
	mnl_attr_put_u32(nlh, NFQA_CFG_MASK, htonl(NFQA_CFG_F_FAIL_OPEN));
	mnl_attr_put_u32(nlh, NFQA_CFG_FLAGS, htonl(0));
	if (mnl_socket_sendto(q->nl, nlh, nlh->nlmsg_len) < 0)
		return mamori_fail(MAMORI_EIO, "nfq: cannot send the bind of queue %u: %s", q->cfg.queue,
				   strerror(errno));
	int fd = mnl_socket_get_fd(q->nl);
	double deadline = mamori_now() + CONFIG_TIMEOUT_MS / 1000.0;
	for (;;) {
		int left_ms = (int)((deadline - mamori_now()) * 1000.0);
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		if (left_ms <= 0 || poll(&pfd, 1, left_ms) <= 0)
			return mamori_fail(MAMORI_EIO, "nfq: no answer to the bind of queue %u",
					   q->cfg.queue);
		ssize_t n = recv(fd, q->buf, q->buf_size, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			if (errno == ENOBUFS) {
				atomic_fetch_add(&q->overruns, 1);
				continue;
			}
			return mamori_fail(MAMORI_EIO, "nfq: bind of queue %u: %s", q->cfg.queue,
					   strerror(errno));
		}
		int rc = mnl_cb_run(q->buf, (size_t)n, seq, q->portid, on_message, q);
		if (rc < 0)
			return mamori_fail(MAMORI_EIO, "nfq: the kernel refused queue %u: %s", q->cfg.queue,
					   strerror(errno));
		if (rc == MNL_CB_STOP)
			return MAMORI_OK;
	}
}

static void nfq_free(contain_nfq *q)
{
	if (!q)
		return;
	if (q->nl)
		mnl_socket_close(q->nl);
	if (q->wake_fd >= 0)
		close(q->wake_fd);
	free(q->buf);
	free(q);
}

int contain_nfq_start(contain_nfq **out, const contain_nfq_config *cfg)
{
	*out = NULL;
	int rc = MAMORI_OK, fd = -1;
	if (cfg->copy_range > MAX_COPY_RANGE)
		return mamori_fail(MAMORI_EINVAL, "nfq: copy range %u over %u", cfg->copy_range,
				   MAX_COPY_RANGE);
	contain_nfq *q = calloc(1, sizeof(*q));
	if (!q)
		return mamori_fail(MAMORI_ENOMEM, "nfq");
	q->wake_fd = -1;
	q->cfg = *cfg;
	if (!q->cfg.copy_range)
		q->cfg.copy_range = CONTAIN_NFQ_DEFAULT_COPY;
	if (!q->cfg.max_queued)
		q->cfg.max_queued = CONTAIN_NFQ_DEFAULT_QUEUED;
	q->buf_size = q->cfg.copy_range + RECV_SLACK;
	q->buf = malloc(q->buf_size);
	if (!q->buf) {
		rc = mamori_fail(MAMORI_ENOMEM, "nfq: buffer");
		goto done;
	}
	q->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (q->wake_fd < 0) {
		rc = mamori_fail(MAMORI_EIO, "nfq: eventfd: %s", strerror(errno));
		goto done;
	}
	if ((rc = contain_netns_socket(&fd, cfg->netns, AF_NETLINK, SOCK_RAW, NETLINK_NETFILTER)) !=
	    MAMORI_OK)
		goto done;
	int size = SOCKET_RCVBUF;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) != 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	q->nl = mnl_socket_fdopen(fd);
	if (!q->nl) {
		close(fd);
		rc = mamori_fail(MAMORI_EIO, "nfq: netlink socket: %s", strerror(errno));
		goto done;
	}
	if (mnl_socket_bind(q->nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		rc = mamori_fail(MAMORI_EIO, "nfq: netlink bind: %s", strerror(errno));
		goto done;
	}
	q->portid = mnl_socket_get_portid(q->nl);
	if ((rc = configure(q)) != MAMORI_OK)
		goto done;
	if (pthread_create(&q->th, NULL, nfq_main, q) != 0) {
		rc = mamori_fail(MAMORI_ENOMEM, "nfq: no thread");
		goto done;
	}
	q->thread = true;
done:
	if (rc != MAMORI_OK) {
		/* Closing the socket unbinds the queue: its packets are dropped. */
		nfq_free(q);
		return rc;
	}
	*out = q;
	return MAMORI_OK;
}

void contain_nfq_stats_get(contain_nfq *q, contain_nfq_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!q)
		return;
	out->packets = atomic_load(&q->packets);
	out->accepted = atomic_load(&q->accepted);
	out->dropped = atomic_load(&q->dropped);
	out->malformed = atomic_load(&q->malformed);
	out->overruns = atomic_load(&q->overruns);
	out->errors = atomic_load(&q->errors);
}

void contain_nfq_stop(contain_nfq *q, contain_nfq_stats *stats)
{
	if (!q) {
		if (stats)
			memset(stats, 0, sizeof(*stats));
		return;
	}
	if (q->thread) {
		uint64_t one = 1;
		if (write(q->wake_fd, &one, sizeof(one)) != (ssize_t)sizeof(one))
			abort(); /* an eventfd write cannot fail here; a thread we cannot stop is worse */
		pthread_join(q->th, NULL);
	}
	/* Unbind explicitly (closing would too); no acknowledgement awaited. */
	_Alignas(struct nlmsghdr) char msg[CONTROL_BUFFER];
	struct nlmsghdr *nlh = nfq_nlmsg_put(msg, NFQNL_MSG_CONFIG, q->cfg.queue);
	nfq_nlmsg_cfg_put_cmd(nlh, AF_INET, NFQNL_CFG_CMD_UNBIND);
	mnl_socket_sendto(q->nl, nlh, nlh->nlmsg_len);
	if (stats)
		contain_nfq_stats_get(q, stats);
	nfq_free(q);
}
