/*
 * The gateway's TCP core: accept redirected connections, learn where they
 * were going, ask for a verdict after the first bytes, then forward, drop or
 * reflect. See relay.h for the contract.
 *
 * Limits: IPv4; one thread per connection (cap max_conns, 256 KiB stacks);
 * relayed bytes move by splice() through one 256 KiB pipe per direction
 * (six descriptors per connection), or through a 64 KiB buffer when no pipe
 * can be had; every wait is bounded (first bytes, upstream connect, idle)
 * and checks the stop flag at least every 200 ms, so contain_relay_stop()
 * returns within about that time.
 */
#include "relay.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mamori/base.h"
#include "netns.h"

#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80 /* linux/netfilter_ipv4.h, which clashes with netinet/in.h */
#endif

#define RELAY_BUF	 65536
#define RELAY_PIPE_SIZE	 (256 * 1024)
#define RELAY_TICK_MS	 200
#define RELAY_STACK_SIZE ((size_t)256 * 1024)

struct contain_relay {
	contain_relay_config cfg;
	char listen_ns[CONTAIN_NAME_MAX];
	char upstream_ns[CONTAIN_NAME_MAX];
	int listen_fd;
	int upstream_ns_fd; /* -1: no upstream */
	uint16_t port;
	pthread_t accept_thread;
	bool accept_started;
	atomic_bool stop;
	atomic_uint_fast64_t next_id;
	pthread_mutex_t lock;
	pthread_cond_t idle; /* signalled when active drops to 0 */
	contain_relay_stats stats;
};

typedef struct conn {
	contain_relay *r;
	int fd;
	relay_flow flow;
} conn;

static void stat_add(contain_relay *r, uint64_t *field)
{
	pthread_mutex_lock(&r->lock);
	(*field)++;
	pthread_mutex_unlock(&r->lock);
}

/* Close with a reset, so the inmate sees the connection refused rather than
 * a clean end it might mistake for a server's answer. */
static void close_reset(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	close(fd);
}

/* Wait until fd is ready for `events`, in ticks so a stop is noticed.
 * Returns 1 ready, 0 timeout or stop, -1 error. */
static int wait_fd(contain_relay *r, int fd, short events, unsigned timeout_ms)
{
	double deadline = mamori_now() + timeout_ms / 1000.0;
	for (;;) {
		if (atomic_load(&r->stop))
			return 0;
		double left = deadline - mamori_now();
		if (left <= 0)
			return 0;
		int ms = left * 1000.0 < RELAY_TICK_MS ? (int)(left * 1000.0) + 1 : RELAY_TICK_MS;
		struct pollfd p = { .fd = fd, .events = events };
		int n = poll(&p, 1, ms);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n > 0)
			return 1;
	}
}

/* Connect to the original destination from the upstream namespace. This
 * thread moves there for good: it exists only for this connection, and the
 * inmate's socket keeps its own namespace. */
static int upstream_connect(contain_relay *r, const struct sockaddr_in *dst, int *out_fd)
{
	*out_fd = -1;
	if (setns(r->upstream_ns_fd, CLONE_NEWNET) != 0)
		return errno;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return errno;
	if (connect(fd, (const struct sockaddr *)dst, sizeof *dst) != 0 && errno != EINPROGRESS) {
		int err = errno;
		close(fd);
		return err;
	}
	int w = wait_fd(r, fd, POLLOUT, r->cfg.connect_timeout_ms);
	int err = 0;
	socklen_t len = sizeof err;
	if (w <= 0)
		err = ETIMEDOUT;
	else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
		err = errno;
	if (err != 0) {
		close(fd);
		return err;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	*out_fd = fd;
	return 0;
}

/* Move what is readable on `from` to `to`: 1 moved, 0 end of stream, -1
 * error. Through a pipe with splice() when there is one, so bulk data never
 * enters user space; else through `buf`. */
static int move_once(contain_relay *r, conn *c, int i, int from, int to, const int pipefd[2], uint8_t *buf,
		     uint64_t *count)
{
	if (pipefd[0] >= 0) {
		ssize_t got =
			splice(from, NULL, pipefd[1], NULL, RELAY_BUF, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (got < 0)
			return errno == EAGAIN || errno == EINTR ? 1 : -1;
		if (got == 0)
			return 0;
		size_t left = (size_t)got;
		while (left > 0) {
			ssize_t put = splice(pipefd[0], NULL, to, NULL, left, SPLICE_F_MOVE);
			if (put < 0 && errno == EINTR)
				continue;
			if (put <= 0)
				return -1;
			left -= (size_t)put;
		}
		*count += (uint64_t)got;
		return 1;
	}
	ssize_t got = recv(from, buf, RELAY_BUF, 0);
	if (got < 0)
		return errno == EAGAIN || errno == EINTR ? 1 : -1;
	if (got == 0)
		return 0;
	if (!mamori_send_all(to, buf, (size_t)got))
		return -1;
	*count += (uint64_t)got;
	if (r->cfg.on_data != NULL)
		r->cfg.on_data(r->cfg.ctx, &c->flow, i == 0, buf, (size_t)got);
	return 1;
}

/* Copy both ways until both sides have finished sending, an error, the
 * idle timeout or a stop. A side's EOF is passed on as a half-close. */
static void relay_both(contain_relay *r, conn *c, int up, uint8_t *buf)
{
	int fds[2] = { c->fd, up };
	uint64_t *counts[2] = { &c->flow.bytes_up, &c->flow.bytes_down };
	bool open_in[2] = { true, true };
	/* One pipe per direction for splice(); out of descriptors, a direction
	 * falls back to copying, which is slower but the same. */
	int pipes[2][2] = { { -1, -1 }, { -1, -1 } };
	for (int i = 0; i < 2 && r->cfg.on_data == NULL; i++)
		if (pipe2(pipes[i], O_CLOEXEC | O_NONBLOCK) != 0)
			pipes[i][0] = pipes[i][1] = -1;
		else
			fcntl(pipes[i][1], F_SETPIPE_SZ, RELAY_PIPE_SIZE); /* fewer, larger moves */
	double last = mamori_now();
	while ((open_in[0] || open_in[1]) && !atomic_load(&r->stop)) {
		struct pollfd p[2];
		for (int i = 0; i < 2; i++) {
			p[i].fd = open_in[i] ? fds[i] : -1;
			p[i].events = POLLIN;
			p[i].revents = 0;
		}
		int n = poll(p, 2, RELAY_TICK_MS);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		if (n == 0) {
			if ((mamori_now() - last) * 1000.0 > r->cfg.idle_timeout_ms)
				break;
			continue;
		}
		last = mamori_now();
		bool failed = false;
		for (int i = 0; i < 2 && !failed; i++) {
			if (!open_in[i] || p[i].revents == 0)
				continue;
			int m = move_once(r, c, i, fds[i], fds[1 - i], pipes[i], buf, counts[i]);
			if (m < 0)
				failed = true;
			if (m == 0) {
				open_in[i] = false;
				shutdown(fds[1 - i], SHUT_WR);
			}
		}
		if (failed)
			break;
	}
	for (int i = 0; i < 2; i++)
		for (int j = 0; j < 2; j++)
			if (pipes[i][j] >= 0)
				close(pipes[i][j]);
}

static void handle_conn(conn *c)
{
	contain_relay *r = c->r;
	uint8_t *buf = malloc(RELAY_BUF);
	size_t n = 0;
	int up = -1;
	if (buf == NULL) {
		close_reset(c->fd);
		c->fd = -1;
		c->flow.verdict = RELAY_DROP;
		goto done;
	}
	/* Short wait: a client of a server-speaks-first protocol (SMTP, FTP,
	 * IRC on some servers) sends nothing until greeted. */
	if (wait_fd(r, c->fd, POLLIN, r->cfg.first_wait_ms) > 0) {
		ssize_t got = recv(c->fd, buf, r->cfg.first_max, 0);
		if (got > 0)
			n = (size_t)got;
	}
	int v = atomic_load(&r->stop) ? RELAY_DROP : r->cfg.decide(r->cfg.ctx, &c->flow, buf, n);
	if (v == RELAY_FORWARD && r->upstream_ns_fd < 0)
		v = r->cfg.reflect != NULL ? RELAY_REFLECT : RELAY_DROP;
	if (v == RELAY_REFLECT && r->cfg.reflect == NULL)
		v = RELAY_DROP;
	if (v != RELAY_FORWARD && v != RELAY_REFLECT)
		v = RELAY_DROP;
	c->flow.verdict = v;
	if (v == RELAY_DROP) {
		stat_add(r, &r->stats.dropped);
		close_reset(c->fd);
		c->fd = -1;
		goto done;
	}
	if (v == RELAY_REFLECT) {
		stat_add(r, &r->stats.reflected);
		int fd = c->fd;
		c->fd = -1;
		r->cfg.reflect(r->cfg.ctx, &c->flow, fd, buf, n);
		goto done;
	}
	stat_add(r, &r->stats.forwarded);
	c->flow.upstream_errno = upstream_connect(r, &c->flow.orig_dst, &up);
	if (c->flow.upstream_errno != 0) {
		stat_add(r, &r->stats.upstream_failed);
		close_reset(c->fd);
		c->fd = -1;
		goto done;
	}
	if (n > 0) {
		if (!mamori_send_all(up, buf, n))
			goto done;
		c->flow.bytes_up += n;
		if (r->cfg.on_data != NULL)
			r->cfg.on_data(r->cfg.ctx, &c->flow, true, buf, n);
	}
	relay_both(r, c, up, buf);
done:
	if (up >= 0)
		close(up);
	if (c->fd >= 0)
		close(c->fd);
	free(buf);
	c->flow.t_end = mamori_now();
	if (r->cfg.on_end != NULL)
		r->cfg.on_end(r->cfg.ctx, &c->flow);
}

static void *conn_thread(void *arg)
{
	conn *c = arg;
	contain_relay *r = c->r;
	handle_conn(c);
	free(c);
	pthread_mutex_lock(&r->lock);
	if (--r->stats.active == 0)
		pthread_cond_broadcast(&r->idle);
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

static void start_conn(contain_relay *r, int fd, const struct sockaddr_in *src)
{
	pthread_mutex_lock(&r->lock);
	bool over = r->stats.active >= r->cfg.max_conns;
	if (over)
		r->stats.refused_over_cap++;
	else
		r->stats.active++;
	pthread_mutex_unlock(&r->lock);
	if (over) {
		close_reset(fd);
		return;
	}
	conn *c = calloc(1, sizeof *c);
	if (c == NULL)
		goto fail;
	c->r = r;
	c->fd = fd;
	c->flow.id = atomic_fetch_add(&r->next_id, 1) + 1;
	c->flow.src = *src;
	c->flow.t_start = mamori_now();
	socklen_t len = sizeof c->flow.orig_dst;
	/* Not redirected (a direct connection to the gateway port): the local
	 * address is the destination, which no upstream route reaches. */
	if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &c->flow.orig_dst, &len) != 0) {
		len = sizeof c->flow.orig_dst;
		getsockname(fd, (struct sockaddr *)&c->flow.orig_dst, &len);
	}
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, RELAY_STACK_SIZE);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_t t;
	int e = pthread_create(&t, &attr, conn_thread, c);
	pthread_attr_destroy(&attr);
	if (e == 0)
		return;
	free(c);
fail:
	close_reset(fd);
	pthread_mutex_lock(&r->lock);
	if (--r->stats.active == 0)
		pthread_cond_broadcast(&r->idle);
	pthread_mutex_unlock(&r->lock);
}

static void *accept_thread(void *arg)
{
	contain_relay *r = arg;
	while (!atomic_load(&r->stop)) {
		struct pollfd p = { .fd = r->listen_fd, .events = POLLIN };
		int n = poll(&p, 1, RELAY_TICK_MS);
		if (n <= 0)
			continue;
		struct sockaddr_in src;
		socklen_t len = sizeof src;
		int fd = accept4(r->listen_fd, (struct sockaddr *)&src, &len, SOCK_CLOEXEC);
		if (fd < 0) {
			/* Out of descriptors: the pending connection stays readable,
			 * so back off instead of spinning on it. */
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
				usleep(RELAY_TICK_MS * 1000 / 4);
			continue;
		}
		stat_add(r, &r->stats.accepted);
		start_conn(r, fd, &src);
	}
	return NULL;
}

int contain_relay_start(contain_relay **out, const contain_relay_config *cfg)
{
	*out = NULL;
	if (cfg->decide == NULL)
		return mamori_fail(MAMORI_EINVAL, "relay: a decide callback is required");
	if ((cfg->listen_netns != NULL && !contain_netns_name_ok(cfg->listen_netns)) ||
	    (cfg->upstream_netns != NULL && !contain_netns_name_ok(cfg->upstream_netns)))
		return mamori_fail(MAMORI_EINVAL, "relay: bad namespace name");
	contain_relay *r = calloc(1, sizeof *r);
	if (r == NULL)
		return mamori_fail(MAMORI_ENOMEM, "relay: out of memory");
	r->cfg = *cfg;
	r->listen_fd = -1;
	r->upstream_ns_fd = -1;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->idle, NULL);
	if (cfg->listen_netns != NULL) {
		snprintf(r->listen_ns, sizeof r->listen_ns, "%s", cfg->listen_netns);
		r->cfg.listen_netns = r->listen_ns;
	}
	if (cfg->upstream_netns != NULL) {
		snprintf(r->upstream_ns, sizeof r->upstream_ns, "%s", cfg->upstream_netns);
		r->cfg.upstream_netns = r->upstream_ns;
	}
	if (r->cfg.max_conns == 0)
		r->cfg.max_conns = 256;
	if (r->cfg.first_wait_ms == 0)
		r->cfg.first_wait_ms = 300;
	if (r->cfg.connect_timeout_ms == 0)
		r->cfg.connect_timeout_ms = 5000;
	if (r->cfg.idle_timeout_ms == 0)
		r->cfg.idle_timeout_ms = 60000;
	if (r->cfg.first_max == 0 || r->cfg.first_max > RELAY_BUF)
		r->cfg.first_max = r->cfg.first_max == 0 ? 4096 : RELAY_BUF;

	int rc = contain_netns_socket(&r->listen_fd, r->cfg.listen_netns, AF_INET, SOCK_STREAM, 0);
	if (rc != MAMORI_OK)
		goto done;
	int one = 1;
	setsockopt(r->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr = cfg->listen_addr,
				  .sin_port = htons(cfg->port) };
	if (bind(r->listen_fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(r->listen_fd, 1024) != 0) {
		rc = mamori_fail(MAMORI_EIO, "relay: bind/listen on port %u: %s", cfg->port, strerror(errno));
		goto done;
	}
	socklen_t len = sizeof sa;
	getsockname(r->listen_fd, (struct sockaddr *)&sa, &len);
	r->port = ntohs(sa.sin_port);
	if (r->cfg.upstream_netns != NULL) {
		rc = contain_netns_open(&r->upstream_ns_fd, r->cfg.upstream_netns);
		if (rc != MAMORI_OK)
			goto done;
	} else if (r->cfg.upstream_own_netns) {
		r->upstream_ns_fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
		if (r->upstream_ns_fd < 0) {
			rc = mamori_fail(MAMORI_EIO, "relay: own namespace: %s", strerror(errno));
			goto done;
		}
	}
	if (pthread_create(&r->accept_thread, NULL, accept_thread, r) != 0) {
		rc = mamori_fail(MAMORI_EIO, "relay: cannot start accept thread");
		goto done;
	}
	r->accept_started = true;
	*out = r;
	r = NULL;
done:
	contain_relay_stop(r);
	return rc;
}

uint16_t contain_relay_port(const contain_relay *r)
{
	return r->port;
}

void contain_relay_stats_get(contain_relay *r, contain_relay_stats *out)
{
	pthread_mutex_lock(&r->lock);
	*out = r->stats;
	pthread_mutex_unlock(&r->lock);
}

void contain_relay_stop(contain_relay *r)
{
	if (r == NULL)
		return;
	atomic_store(&r->stop, true);
	if (r->accept_started)
		pthread_join(r->accept_thread, NULL);
	if (r->listen_fd >= 0)
		close(r->listen_fd);
	pthread_mutex_lock(&r->lock);
	while (r->stats.active > 0)
		pthread_cond_wait(&r->idle, &r->lock);
	pthread_mutex_unlock(&r->lock);
	if (r->upstream_ns_fd >= 0)
		close(r->upstream_ns_fd);
	pthread_cond_destroy(&r->idle);
	pthread_mutex_destroy(&r->lock);
	free(r);
}
