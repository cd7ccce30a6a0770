/*
 * The gateway's TCP core: accept redirected connections, learn where they
 * were going, ask for a verdict after the first bytes, then forward, drop or
 * reflect, within the flow's limits. See relay.h for the contract.
 *
 * Limits: IPv4; one thread per connection (cap max_conns, 256 KiB stacks);
 * every wait is bounded (first bytes, upstream connect, idle, a peer that
 * stops reading) and checks the stop flag at least every 200 ms, so
 * contain_relay_stop() returns within about that time.
 *
 * How bytes move, which decides bulk throughput: a direction starts by
 * copying through a 64 KiB buffer (cheap to set up, and most flows are
 * small). Once one read fills that buffer the direction is bulk and moves
 * to splice() through a 1 MiB pipe: the payload pages go from one socket
 * to the other without entering user space. When on_data still wants the
 * bytes, tee() duplicates the pipe's pages into a second pipe and only that
 * duplicate is read out for the callback: one copy per byte instead of the
 * two of recv()+send(). A direction for which on_data said "enough"
 * (contain_relay_data_enough) is spliced without the tee. Out of
 * descriptors, a direction keeps copying: slower, but the same bytes. A
 * bulk direction holds two pipes and the flow a 1 MiB buffer while it tees.
 * Measured (docs/benchmarks.md): copy, tee and plain splice cost about the
 * same; the second TCP connection in the kernel is most of the relay's
 * cost, and 1 MiB moves beat 256 KiB ones.
 *
 * LIMIT: the byte budget caps each read at what is left of it; a side that
 * still has data once it is spent cuts the flow (a reset toward the inmate,
 * a close upstream), so at most the budget passes. The byte rate is one
 * token bucket for both directions (burst: an eighth of a second's worth,
 * 512 bytes to 256 KiB): a direction reads only what the bucket holds and
 * the flow sleeps, without polling its sockets, while it is empty.
 */
#include "relay.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mamori/base.h"
#include "netns.h"

#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80 /* linux/netfilter_ipv4.h, which clashes with netinet/in.h */
#endif

#define RELAY_BUF	 65536		   /* first bytes, and copying before a direction turns bulk */
#define RELAY_CHUNK	 ((size_t)1 << 20) /* most bytes one move takes once bulk */
#define RELAY_PIPE_SIZE	 (1 << 20)
#define RELAY_TICK_MS	 200
#define RELAY_BACKLOG	 1024 /* connections the kernel queues for accept() */
#define RELAY_ROUNDS	 8    /* moves of one direction per poll() while it stays full */
#define RELAY_STACK_SIZE ((size_t)256 * 1024)
#define RELAY_BURST_MIN	 512.0
#define RELAY_BURST_MAX	 (256.0 * 1024)
#define RELAY_GRANT_MIN	 4096.0 /* smallest read worth waking for under a rate */

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

/* One direction of a forwarded flow. */
typedef struct relay_dir {
	int from, to;
	bool up;	 /* inmate -> upstream */
	bool open;	 /* `from` has not ended */
	bool bulk_tried; /* pipes were set up, or could not be */
	int pipe[2];	 /* from -> pipe -> to, by splice; -1: copy */
	int dup[2];	 /* tee'd duplicate of pipe for on_data; -1: none */
	uint64_t *count;
} relay_dir;

typedef struct conn {
	contain_relay *r;
	int fd;
	relay_flow flow;
	bool data_enough[2]; /* [0]: up, [1]: down; set by contain_relay_data_enough */
	uint8_t *buf;	     /* RELAY_BUF, or RELAY_CHUNK once a direction tees */
	size_t buf_size;
	double tokens, tokens_t, burst; /* the rate's bucket (byte_rate > 0) */
	bool throttled;
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
 * inmate's socket keeps its own namespace. The socket stays non-blocking. */
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
	*out_fd = fd;
	return 0;
}

/* Send all of `data` on a non-blocking socket, waiting (in ticks) while the
 * peer does not read; a peer that reads nothing for the idle timeout, or a
 * stop, ends the flow. */
static bool send_all_wait(contain_relay *r, int fd, const uint8_t *data, size_t n)
{
	while (n > 0) {
		ssize_t put = send(fd, data, n, MSG_NOSIGNAL);
		if (put > 0) {
			data += put;
			n -= (size_t)put;
			continue;
		}
		if (put < 0 && errno == EINTR)
			continue;
		if (put < 0 && errno == EAGAIN && wait_fd(r, fd, POLLOUT, r->cfg.idle_timeout_ms) > 0)
			continue;
		return false;
	}
	return true;
}

/* Empty `n` bytes of a pipe into a non-blocking socket, as send_all_wait. */
static bool splice_all_wait(contain_relay *r, int pipe_rd, int fd, size_t n)
{
	while (n > 0) {
		ssize_t put = splice(pipe_rd, NULL, fd, NULL, n, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (put > 0) {
			n -= (size_t)put;
			continue;
		}
		if (put < 0 && errno == EINTR)
			continue;
		if (put < 0 && errno == EAGAIN && wait_fd(r, fd, POLLOUT, r->cfg.idle_timeout_ms) > 0)
			continue;
		return false;
	}
	return true;
}

static void pipe_close(int p[2])
{
	for (int j = 0; j < 2; j++)
		if (p[j] >= 0)
			close(p[j]);
	p[0] = p[1] = -1;
}

static bool pipe_open(int p[2])
{
	if (pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) {
		p[0] = p[1] = -1;
		return false;
	}
	fcntl(p[1], F_SETPIPE_SZ, RELAY_PIPE_SIZE); /* fewer, larger moves; a smaller pipe still works */
	return true;
}

static bool wants_data(const conn *c, const relay_dir *d)
{
	return c->r->cfg.on_data != NULL && !c->data_enough[d->up ? 0 : 1];
}

/* The direction has shown bulk (a full buffer in one read): from now on it
 * moves by splice, with a tee'd duplicate while on_data wants the bytes.
 * Without descriptors or memory it stays on copying. */
static void dir_go_bulk(conn *c, relay_dir *d)
{
	d->bulk_tried = true;
	if (!pipe_open(d->pipe))
		return;
	if (!wants_data(c, d))
		return;
	if (c->buf_size < RELAY_CHUNK) {
		uint8_t *big = realloc(c->buf, RELAY_CHUNK);
		if (big == NULL) {
			pipe_close(d->pipe);
			return;
		}
		c->buf = big;
		c->buf_size = RELAY_CHUNK;
	}
	if (!pipe_open(d->dup))
		pipe_close(d->pipe);
}

/* Read exactly `n` bytes that are known to sit in a pipe. */
static bool pipe_read_all(int fd, uint8_t *buf, size_t n)
{
	while (n > 0) {
		ssize_t got = read(fd, buf, n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			return false;
		buf += got;
		n -= (size_t)got;
	}
	return true;
}

/* Move up to `max` readable bytes of direction `d`: 1 moved (or nothing
 * was there after all), 0 end of stream, -1 error. */
static int move_once(conn *c, relay_dir *d, size_t max)
{
	contain_relay *r = c->r;
	bool want = wants_data(c, d);
	if (d->pipe[0] >= 0 && want && d->dup[0] < 0)
		pipe_close(d->pipe); /* not reached ("enough" is for good); copying is the safe answer */
	if (d->pipe[0] >= 0) {
		ssize_t got = splice(d->from, NULL, d->pipe[1], NULL, max, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (got < 0)
			return errno == EAGAIN || errno == EINTR ? 1 : -1;
		if (got == 0)
			return 0;
		*d->count += (uint64_t)got;
		size_t left = (size_t)got;
		while (left > 0) {
			size_t step = left;
			if (want) {
				/* tee() leaves the source pipe as it is: a short
				 * tee is passed on and read out before the next. */
				ssize_t t = tee(d->pipe[0], d->dup[1], left, SPLICE_F_NONBLOCK);
				if (t <= 0)
					return -1;
				step = (size_t)t;
			}
			if (!splice_all_wait(r, d->pipe[0], d->to, step))
				return -1;
			if (want) {
				if (!pipe_read_all(d->dup[0], c->buf, step))
					return -1;
				r->cfg.on_data(r->cfg.ctx, &c->flow, d->up, c->buf, step);
			}
			left -= step;
		}
		return 1;
	}
	size_t cap = max < c->buf_size ? max : c->buf_size;
	ssize_t got = recv(d->from, c->buf, cap, MSG_DONTWAIT);
	if (got < 0)
		return errno == EAGAIN || errno == EINTR ? 1 : -1;
	if (got == 0)
		return 0;
	if (!send_all_wait(r, d->to, c->buf, (size_t)got))
		return -1;
	*d->count += (uint64_t)got;
	if (want)
		r->cfg.on_data(r->cfg.ctx, &c->flow, d->up, c->buf, (size_t)got);
	if ((size_t)got >= RELAY_BUF && !d->bulk_tried)
		dir_go_bulk(c, d);
	return 1;
}

/* Refill the rate's bucket and say how many bytes may be read now; 0 means
 * wait `*wait_ms` first. Without a rate: any number. */
static size_t rate_grant(conn *c, int *wait_ms)
{
	uint64_t rate = c->flow.limits.byte_rate;
	*wait_ms = 0;
	if (rate == 0)
		return SIZE_MAX;
	double now = mamori_now();
	c->tokens += (now - c->tokens_t) * (double)rate;
	if (c->tokens > c->burst)
		c->tokens = c->burst;
	c->tokens_t = now;
	double want = c->burst < RELAY_GRANT_MIN ? c->burst : RELAY_GRANT_MIN;
	if (c->tokens >= want)
		return (size_t)c->tokens;
	double ms = (want - c->tokens) * 1000.0 / (double)rate;
	*wait_ms = ms >= RELAY_TICK_MS ? RELAY_TICK_MS : (int)ceil(ms);
	if (*wait_ms < 1)
		*wait_ms = 1;
	return 0;
}

/* What the budget still allows; SIZE_MAX without one. */
static size_t budget_left(const conn *c)
{
	uint64_t budget = c->flow.limits.byte_budget;
	if (budget == 0)
		return SIZE_MAX;
	uint64_t used = c->flow.bytes_up + c->flow.bytes_down;
	if (used >= budget)
		return 0;
	uint64_t left = budget - used;
	return left > SIZE_MAX ? SIZE_MAX : (size_t)left;
}

/* Budget spent: does `fd` hold more than the flow may pass? 1 yes, 0 it
 * ended instead, -1 nothing to say yet. */
static int wants_past_budget(int fd)
{
	uint8_t b;
	ssize_t got = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	if (got > 0)
		return 1;
	if (got == 0)
		return 0;
	return errno == EAGAIN || errno == EINTR ? -1 : 0;
}

/* Serve one readable direction: move what is there, within budget and
 * rate, and go on without another poll() while each move took all it was
 * allowed (a bulk sender has more queued). 1 moved, 0 end of stream, -1
 * error, 2 the budget is spent and the side wants more: cut. */
static int dir_service(conn *c, relay_dir *d, size_t *grant)
{
	for (int round = 0; round < RELAY_ROUNDS; round++) {
		size_t max = budget_left(c);
		if (max == 0) {
			int past = wants_past_budget(d->from);
			return past == 1 ? 2 : past == 0 ? 0 : 1;
		}
		if (max > *grant)
			max = *grant;
		if (max > RELAY_CHUNK)
			max = RELAY_CHUNK;
		uint64_t before = *d->count;
		int m = move_once(c, d, max);
		size_t moved = (size_t)(*d->count - before);
		if (c->flow.limits.byte_rate > 0)
			c->tokens -= (double)moved;
		if (*grant != SIZE_MAX)
			*grant -= moved;
		if (m <= 0 || moved < max || *grant == 0)
			return m;
	}
	return 1;
}

/* Copy both ways until both sides have finished sending, an error, the
 * idle timeout, a stop or the budget. A side's EOF is passed on as a
 * half-close. Returns true when the budget cut the flow. */
static bool relay_both(conn *c, int up)
{
	contain_relay *r = c->r;
	relay_dir dirs[2] = {
		{ .from = c->fd, .to = up, .up = true, .open = true, .count = &c->flow.bytes_up },
		{ .from = up, .to = c->fd, .up = false, .open = true, .count = &c->flow.bytes_down },
	};
	for (int i = 0; i < 2; i++) {
		dirs[i].pipe[0] = dirs[i].pipe[1] = dirs[i].dup[0] = dirs[i].dup[1] = -1;
		/* Nothing to show on_data: splice from the start. */
		if (r->cfg.on_data == NULL)
			dir_go_bulk(c, &dirs[i]);
	}
	bool cut = false;
	double last = mamori_now();
	while ((dirs[0].open || dirs[1].open) && !atomic_load(&r->stop)) {
		int wait_ms = 0;
		size_t grant = rate_grant(c, &wait_ms);
		if (grant == 0) {
			/* Not polling the sockets while the bucket is empty keeps
			 * this loop from spinning on data it may not read yet. */
			c->throttled = true;
			poll(NULL, 0, wait_ms);
			c->flow.throttled_s += wait_ms / 1000.0;
			last = mamori_now();
			continue;
		}
		struct pollfd p[2];
		for (int i = 0; i < 2; i++) {
			p[i].fd = dirs[i].open ? dirs[i].from : -1;
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
		for (int i = 0; i < 2 && !failed && !cut; i++) {
			relay_dir *d = &dirs[i];
			if (!d->open || p[i].revents == 0)
				continue;
			int m = dir_service(c, d, &grant);
			if (m < 0)
				failed = true;
			if (m == 2)
				cut = true;
			if (m == 0) {
				d->open = false;
				shutdown(d->to, SHUT_WR);
			}
		}
		if (failed || cut)
			break;
	}
	for (int i = 0; i < 2; i++) {
		pipe_close(dirs[i].pipe);
		pipe_close(dirs[i].dup);
	}
	return cut;
}

void contain_relay_data_enough(const relay_flow *f, bool up)
{
	/* `f` is the flow inside its conn (the callbacks get &c->flow); only
	 * the flow's own thread calls this, so no lock. */
	conn *c = (conn *)(void *)((char *)(uintptr_t)f - offsetof(conn, flow));
	c->data_enough[up ? 0 : 1] = true;
}

/* The bucket starts full: a limited flow may burst at once. */
static void rate_start(conn *c)
{
	double rate = (double)c->flow.limits.byte_rate;
	c->burst = rate / 8.0;
	if (c->burst < RELAY_BURST_MIN)
		c->burst = RELAY_BURST_MIN;
	if (c->burst > RELAY_BURST_MAX)
		c->burst = RELAY_BURST_MAX;
	c->tokens = c->burst;
	c->tokens_t = mamori_now();
}

static void handle_conn(conn *c)
{
	contain_relay *r = c->r;
	size_t n = 0;
	int up = -1;
	c->buf = malloc(RELAY_BUF);
	c->buf_size = RELAY_BUF;
	if (c->buf == NULL) {
		close_reset(c->fd);
		c->fd = -1;
		c->flow.verdict = RELAY_DROP;
		goto done;
	}
	/* Short wait: a client of a server-speaks-first protocol (SMTP, FTP,
	 * IRC on some servers) sends nothing until greeted. */
	if (wait_fd(r, c->fd, POLLIN, r->cfg.first_wait_ms) > 0) {
		ssize_t got = recv(c->fd, c->buf, r->cfg.first_max, 0);
		if (got > 0)
			n = (size_t)got;
	}
	/* Every accepted connection gets its verdict asked, even while the
	 * relay stops (then it is dropped whatever the answer): the caller
	 * records each flow, and a connection made just before the end is one. */
	relay_limits lim = { 0 };
	int v = r->cfg.decide(r->cfg.ctx, &c->flow, c->buf, n, &lim);
	if (atomic_load(&r->stop))
		v = RELAY_DROP;
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
		r->cfg.reflect(r->cfg.ctx, &c->flow, fd, c->buf, n);
		goto done;
	}
	stat_add(r, &r->stats.forwarded);
	c->flow.limits = lim;
	rate_start(c);
	c->flow.upstream_errno = upstream_connect(r, &c->flow.orig_dst, &up);
	if (c->flow.upstream_errno != 0) {
		stat_add(r, &r->stats.upstream_failed);
		close_reset(c->fd);
		c->fd = -1;
		goto done;
	}
	/* Both sockets non-blocking from here: every wait on a peer goes
	 * through wait_fd, which notices a stop. */
	fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
	if (n > 0) {
		/* The first bytes count against the budget like any others,
		 * and may overdraw the bucket (the flow then waits). */
		size_t pass = budget_left(c) < n ? budget_left(c) : n;
		if (!send_all_wait(r, up, c->buf, pass))
			goto done;
		c->flow.bytes_up += pass;
		if (c->flow.limits.byte_rate > 0)
			c->tokens -= (double)pass;
		if (r->cfg.on_data != NULL && pass > 0)
			r->cfg.on_data(r->cfg.ctx, &c->flow, true, c->buf, pass);
		c->flow.limited = pass < n;
	}
	if (!c->flow.limited)
		c->flow.limited = relay_both(c, up);
	if (c->throttled)
		stat_add(r, &r->stats.throttled);
	if (c->flow.limited) {
		stat_add(r, &r->stats.limited);
		close_reset(c->fd);
		c->fd = -1;
	}
done:
	if (up >= 0)
		close(up);
	if (c->fd >= 0)
		close(c->fd);
	free(c->buf);
	c->buf = NULL;
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
	/* Connections the kernel completed but nobody accepted yet are flows
	 * too: accept what is queued (at most a backlog's worth), so that
	 * each gets its verdict asked (a drop, since the relay stops) and is
	 * recorded, instead of vanishing with the listening socket. */
	fcntl(r->listen_fd, F_SETFL, fcntl(r->listen_fd, F_GETFL) | O_NONBLOCK);
	for (int i = 0; i < RELAY_BACKLOG; i++) {
		struct sockaddr_in src;
		socklen_t len = sizeof src;
		int fd = accept4(r->listen_fd, (struct sockaddr *)&src, &len, SOCK_CLOEXEC);
		if (fd < 0)
			break;
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
	if (bind(r->listen_fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
	    listen(r->listen_fd, RELAY_BACKLOG) != 0) {
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
