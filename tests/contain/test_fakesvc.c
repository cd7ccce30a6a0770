/* Tests of the fake services with real clients where the machine has them
 * (swaks for SMTP, curl for HTTP, dig for DNS, each against 127.0.0.1 only)
 * and raw protocol lines over socketpair() for the rest: an IRC session,
 * SMTP corner cases, the generic sink and hostile DNS datagrams. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fakesvc.h"
#include "mamori/base.h"
#include "policy.h"

static char tmpdir[256];

static int make_tmpdir(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/mamori-test-fakesvc-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_tmpdir(void **state)
{
	(void)state;
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static bool have_tool(const char *name)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", name);
	return system(cmd) == 0;
}

static contain_fakesvc_opts opts_for(const char *maildir)
{
	contain_fakesvc_opts o;
	contain_fakesvc_opts_default(&o);
	o.timeout_ms = 3000;
	o.maildir = maildir;
	return o;
}

/* Send `client` through a socketpair, half-close, run `svc` on the other
 * end, and return everything it answered (heap string). */
typedef int (*svc_fn)(json_t **, int, const contain_fakesvc_opts *);
static char *converse(svc_fn svc, const char *client, size_t len, const contain_fakesvc_opts *o, json_t **rec)
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(write(sv[0], client, len), (ssize_t)len);
	shutdown(sv[0], SHUT_WR);
	assert_int_equal(svc(rec, sv[1], o), MAMORI_OK);
	close(sv[1]);
	size_t cap = 1 << 20, n = 0;
	char *out = malloc(cap + 1);
	ssize_t got;
	while (n < cap && (got = read(sv[0], out + n, cap - n)) > 0)
		n += (size_t)got;
	out[n] = '\0';
	close(sv[0]);
	return out;
}

/* A loopback listener on an ephemeral port. */
static int listen_loopback(int type, uint16_t *port)
{
	int fd = socket(AF_INET, type, 0);
	assert_true(fd >= 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	if (type == SOCK_STREAM)
		assert_int_equal(listen(fd, 4), 0);
	socklen_t al = sizeof(a);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

typedef struct server_job {
	int listen_fd;
	svc_fn svc;
	const contain_fakesvc_opts *opts;
	json_t *rec;
	int rc;
} server_job;

static void *serve_one(void *arg)
{
	server_job *j = arg;
	int c = accept(j->listen_fd, NULL, NULL);
	j->rc = c < 0 ? MAMORI_EIO : j->svc(&j->rec, c, j->opts);
	if (c >= 0)
		close(c);
	return NULL;
}

static json_t *read_json(const char *path)
{
	json_error_t err;
	json_t *j = json_load_file(path, 0, &err);
	if (!j)
		fail_msg("%s: %s", path, err.text);
	return j;
}

/* swaks, a real SMTP client, sends one mail to three recipients; the sink
 * stores it with all of them and a sidecar. */
static void test_smtp_swaks(void **state)
{
	(void)state;
	if (!have_tool("swaks"))
		skip();
	char maildir[300];
	snprintf(maildir, sizeof(maildir), "%s/swaks", tmpdir);
	assert_int_equal(mamori_mkdir_p(maildir), MAMORI_OK);
	contain_fakesvc_opts o = opts_for(maildir);
	uint16_t port;
	server_job job = { .listen_fd = listen_loopback(SOCK_STREAM, &port),
			   .svc = contain_fakesvc_smtp,
			   .opts = &o };
	pthread_t th;
	pthread_create(&th, NULL, serve_one, &job);
	char cmd[1024];
	snprintf(cmd, sizeof(cmd),
		 "swaks --server 127.0.0.1:%u --from spammer@bot.example "
		 "--to alice@victim.example,bob@victim.example,carol@victim.example "
		 "--header 'Subject: Cheap pills' --body 'Buy now.\n.leading dot line' "
		 "--helo infected.example --timeout 5 >%s/swaks.log 2>&1",
		 port, tmpdir);
	int st = system(cmd);
	pthread_join(th, NULL);
	close(job.listen_fd);
	assert_int_equal(WEXITSTATUS(st), 0);
	assert_int_equal(job.rc, MAMORI_OK);

	json_t *rec = job.rec;
	assert_string_equal(json_string_value(json_object_get(rec, "end")), "quit");
	assert_string_equal(json_string_value(json_object_get(rec, "helo")), "infected.example");
	json_t *msgs = json_object_get(rec, "messages");
	assert_int_equal(json_array_size(msgs), 1);
	json_t *m = json_array_get(msgs, 0);
	assert_string_equal(json_string_value(json_object_get(m, "from")), "spammer@bot.example");
	json_t *rcpt = json_object_get(m, "rcpt");
	assert_int_equal(json_array_size(rcpt), 3);
	assert_string_equal(json_string_value(json_array_get(rcpt, 2)), "carol@victim.example");
	assert_string_equal(json_string_value(json_object_get(m, "subject")), "Cheap pills");

	/* The .eml and the sidecar on disk agree with the record. */
	const char *file = json_string_value(json_object_get(m, "file"));
	char path[600];
	snprintf(path, sizeof(path), "%s/%s", maildir, file);
	uint8_t *eml = NULL;
	size_t len = 0;
	assert_int_equal(mamori_file_read(&eml, &len, path, 1 << 20), MAMORI_OK);
	assert_int_equal(len, (size_t)json_integer_value(json_object_get(m, "bytes")));
	assert_non_null(strstr((char *)eml, "Subject: Cheap pills"));
	assert_non_null(strstr((char *)eml, "\r\n.leading dot line\r\n")); /* unstuffed */
	free(eml);
	snprintf(path + strlen(path) - 4, 6, ".json");
	json_t *side = read_json(path);
	assert_int_equal(json_array_size(json_object_get(side, "rcpt")), 3);
	assert_string_equal(json_string_value(json_object_get(side, "subject")), "Cheap pills");
	json_decref(side);
	json_decref(rec);
}

/* SMTP corner cases in raw lines: order errors, an over-long line, two
 * messages in one session, a message over the size limit, RSET. */
static void test_smtp_raw(void **state)
{
	(void)state;
	char maildir[300];
	snprintf(maildir, sizeof(maildir), "%s/raw", tmpdir);
	assert_int_equal(mamori_mkdir_p(maildir), MAMORI_OK);
	contain_fakesvc_opts o = opts_for(maildir);
	o.max_line = 100;
	o.max_message = 100;
	char longline[300];
	memset(longline, 'x', sizeof(longline) - 3);
	memcpy(longline + sizeof(longline) - 3, "\r\n", 3);
	char script[2048];
	snprintf(script, sizeof(script),
		 "HELO bot\r\n"
		 "RCPT TO:<early@x.example>\r\n"
		 "DATA\r\n"
		 "%s"
		 "MAIL FROM:<a@x.example>\r\n"
		 "RCPT TO:<b@x.example>\r\n"
		 "DATA\r\n"
		 "Subject: first\r\n\r\nhello\r\n.\r\n"
		 "MAIL FROM:<c@x.example>\r\n"
		 "RCPT TO:<d@x.example>\r\n"
		 "DATA\r\n"
		 "Subject: too big\r\n\r\n%.250s\r\n.\r\n"
		 "MAIL FROM:<e@x.example>\r\n"
		 "RSET\r\n"
		 "RCPT TO:<f@x.example>\r\n"
		 "WHAT\r\n",
		 longline, longline);
	json_t *rec = NULL;
	char *out = converse(contain_fakesvc_smtp, script, strlen(script), &o, &rec);
	const char *expect[] = { "220 ",
				 "250 mail.example",
				 "503 5.5.1 Error: need MAIL",
				 "503 5.5.1 Error: need RCPT",
				 "500 5.5.0 Line too long",
				 "250 2.1.0",
				 "250 2.1.5",
				 "354 ",
				 "250 2.0.0 Ok: queued as 1",
				 "250 2.1.0",
				 "250 2.1.5",
				 "354 ",
				 "552 5.3.4",
				 "250 2.1.0",
				 "250 2.0.0 Ok",
				 "503 5.5.1 Error: need MAIL",
				 "502 5.5.2" };
	const char *p = out;
	for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
		const char *hit = strstr(p, expect[i]);
		if (!hit)
			fail_msg("reply %zu '%s' missing after: %s", i, expect[i], p);
		p = hit + strlen(expect[i]);
	}
	assert_string_equal(json_string_value(json_object_get(rec, "end")), "eof");
	json_t *msgs = json_object_get(rec, "messages");
	assert_int_equal(json_array_size(msgs), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 0), "subject")), "first");
	free(out);
	json_decref(rec);

	/* Mail cannot be stored: the client is told, the caller gets EIO. */
	o.maildir = "/nonexistent/mail";
	const char *s2 = "HELO a\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n";
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(write(sv[0], s2, strlen(s2)), (ssize_t)strlen(s2));
	shutdown(sv[0], SHUT_WR);
	assert_int_equal(contain_fakesvc_smtp(&rec, sv[1], &o), MAMORI_EIO);
	char buf[2048];
	ssize_t n = read(sv[0], buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = '\0';
	assert_non_null(strstr(buf, "451 4.3.0"));
	assert_non_null(strstr(buf, "221 "));
	json_decref(rec);
	close(sv[0]);
	close(sv[1]);
}

/* An IRC session as a bot would send it. */
static void test_irc(void **state)
{
	(void)state;
	contain_fakesvc_opts o = opts_for(tmpdir);
	const char *script = "NICK bot4711\r\n"
			     "USER bot 0 * :Real Bot\r\n"
			     "PING :12345\r\n"
			     "JOIN #cc,#backup key\r\n"
			     "MODE bot4711 +i\r\n"
			     "PRIVMSG #cc :!ready v1.2\r\n"
			     "PRIVMSG master :\x01VERSION\x01\r\n"
			     ":bot4711 QUIT :bye\r\n"
			     "PRIVMSG #cc :after quit\r\n";
	json_t *rec = NULL;
	char *out = converse(contain_fakesvc_irc, script, strlen(script), &o, &rec);
	assert_non_null(
		strstr(out, " 001 bot4711 :Welcome to the Internet Relay Network bot4711!bot@inmate\r\n"));
	assert_non_null(strstr(out, " 376 bot4711 "));
	assert_non_null(strstr(out, "PONG irc.example :12345\r\n"));
	assert_non_null(strstr(out, ":bot4711!bot@inmate JOIN :#cc\r\n"));
	assert_non_null(strstr(out, ":bot4711!bot@inmate JOIN :#backup\r\n"));
	assert_non_null(strstr(out, " 366 bot4711 #backup "));
	assert_non_null(strstr(out, "ERROR :Closing Link"));
	assert_string_equal(json_string_value(json_object_get(rec, "nick")), "bot4711");
	assert_string_equal(json_string_value(json_object_get(rec, "user")), "bot");
	assert_string_equal(json_string_value(json_object_get(rec, "realname")), "Real Bot");
	json_t *ch = json_object_get(rec, "channels");
	assert_int_equal(json_array_size(ch), 2);
	assert_string_equal(json_string_value(json_array_get(ch, 1)), "#backup");
	json_t *msgs = json_object_get(rec, "messages");
	assert_int_equal(json_array_size(msgs), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 0), "text")),
			    "!ready v1.2");
	assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 1), "text")), "?VERSION?");
	assert_string_equal(json_string_value(json_object_get(rec, "end")), "quit");
	free(out);
	json_decref(rec);
}

/* A bot that floods JOINs and never reads its replies cannot wedge the
 * service: replies time out and the session ends; records stay capped. */
static void test_irc_hostile(void **state)
{
	(void)state;
	contain_fakesvc_opts o = opts_for(tmpdir);
	o.timeout_ms = 300;
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	char line[4100];
	size_t n = (size_t)snprintf(line, sizeof(line), "NICK a\r\nUSER a 0 * :a\r\nJOIN ");
	for (int i = 0; n < 4000; i++)
		n += (size_t)snprintf(line + n, sizeof(line) - n, "#c%d,", i);
	memcpy(line + n, "\r\n", 3);
	n += 2;
	for (int i = 0; i < 5; i++)
		assert_int_equal(write(sv[0], line, n), (ssize_t)n);
	const char junk[] = "PRIVMSG #x :\x00\xff\r\n\r\n\r\n::::\r\n \r\n";
	assert_int_equal(write(sv[0], junk, sizeof(junk) - 1), (ssize_t)sizeof(junk) - 1);
	double t0 = mamori_now();
	json_t *rec = NULL;
	assert_int_equal(contain_fakesvc_irc(&rec, sv[1], &o), MAMORI_OK);
	assert_true(mamori_now() - t0 < 5.0);
	assert_string_equal(json_string_value(json_object_get(rec, "end")), "error");
	assert_true(json_array_size(json_object_get(rec, "channels")) <= 256);
	json_decref(rec);

	/* A slow drip: every read is on time, the session deadline ends it. */
	o.timeout_ms = 1000;
	o.session_ms = 200;
	t0 = mamori_now();
	assert_int_equal(contain_fakesvc_sink(&rec, sv[1], &o), MAMORI_OK);
	assert_true(mamori_now() - t0 < 0.9);
	assert_string_equal(json_string_value(json_object_get(rec, "end")), "timeout");
	json_decref(rec);
	close(sv[0]);
	close(sv[1]);
}

/* curl, a real HTTP client, gets 200 and a body; the request is recorded. */
static void test_http_curl(void **state)
{
	(void)state;
	if (!have_tool("curl"))
		skip();
	contain_fakesvc_opts o = opts_for(tmpdir);
	uint16_t port;
	server_job job = { .listen_fd = listen_loopback(SOCK_STREAM, &port),
			   .svc = contain_fakesvc_http,
			   .opts = &o };
	pthread_t th;
	pthread_create(&th, NULL, serve_one, &job);
	char cmd[1024];
	snprintf(cmd, sizeof(cmd),
		 "curl -s --noproxy '*' -m 5 -A 'BotAgent/1.0' -H 'Host: cc.example' "
		 "-o %s/body.html -w '%%{http_code}' http://127.0.0.1:%u/gate.php?id=42 >%s/code.txt",
		 tmpdir, port, tmpdir);
	int st = system(cmd);
	pthread_join(th, NULL);
	close(job.listen_fd);
	assert_int_equal(WEXITSTATUS(st), 0);
	char path[300];
	snprintf(path, sizeof(path), "%s/code.txt", tmpdir);
	uint8_t *code = NULL;
	size_t len = 0;
	assert_int_equal(mamori_file_read(&code, &len, path, 100), MAMORI_OK);
	assert_string_equal((char *)code, "200");
	free(code);
	json_t *rec = job.rec;
	assert_string_equal(json_string_value(json_object_get(rec, "method")), "GET");
	assert_string_equal(json_string_value(json_object_get(rec, "uri")), "/gate.php?id=42");
	assert_string_equal(json_string_value(json_object_get(rec, "host")), "cc.example");
	assert_string_equal(json_string_value(json_object_get(rec, "user_agent")), "BotAgent/1.0");
	json_decref(rec);
}

static void test_http_raw(void **state)
{
	(void)state;
	contain_fakesvc_opts o = opts_for(tmpdir);
	json_t *rec = NULL;
	const char *post = "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
	char *out = converse(contain_fakesvc_http, post, strlen(post), &o, &rec);
	assert_true(strncmp(out, "HTTP/1.1 200 OK\r\n", 17) == 0);
	assert_int_equal(json_integer_value(json_object_get(rec, "body_bytes")), 5);
	free(out);
	json_decref(rec);

	const char bad[] = "\x16\x03\x01\x00\xa5garbage\r\n\r\n";
	out = converse(contain_fakesvc_http, bad, sizeof(bad) - 1, &o, &rec);
	assert_true(strncmp(out, "HTTP/1.1 400 ", 13) == 0);
	assert_string_equal(json_string_value(json_object_get(rec, "request_line")), "?????garbage");
	free(out);
	json_decref(rec);

	o.max_line = 64;
	char big[200];
	snprintf(big, sizeof(big), "GET /%0150d HTTP/1.1\r\n\r\n", 0);
	out = converse(contain_fakesvc_http, big, strlen(big), &o, &rec);
	assert_true(strncmp(out, "HTTP/1.1 414 ", 13) == 0);
	free(out);
	json_decref(rec);
}

static void test_sink(void **state)
{
	(void)state;
	contain_fakesvc_opts o = opts_for(tmpdir);
	o.sink_keep = 8;
	json_t *rec = NULL;
	const char data[] = "\x00\x01hello world, this is more than eight bytes";
	char *out = converse(contain_fakesvc_sink, data, sizeof(data) - 1, &o, &rec);
	assert_string_equal(out, "");
	assert_int_equal(json_integer_value(json_object_get(rec, "bytes")), sizeof(data) - 1);
	assert_string_equal(json_string_value(json_object_get(rec, "head_hex")), "000168656c6c6f20");
	assert_string_equal(json_string_value(json_object_get(rec, "head_text")), "??hello ");
	assert_string_equal(json_string_value(json_object_get(rec, "end")), "eof");
	free(out);
	json_decref(rec);

	/* The byte limit ends a session that never stops sending. */
	o.max_bytes = 1000;
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	char junk[4000];
	memset(junk, 'j', sizeof(junk));
	assert_int_equal(write(sv[0], junk, sizeof(junk)), (ssize_t)sizeof(junk));
	assert_int_equal(contain_fakesvc_run(&rec, "sink", sv[1], &o), MAMORI_OK);
	assert_int_equal(json_integer_value(json_object_get(rec, "bytes")), 1000);
	assert_string_equal(json_string_value(json_object_get(rec, "end")), "limit");
	json_decref(rec);

	/* Silence ends it after the timeout. */
	o.timeout_ms = 100;
	o.max_bytes = 1 << 20;
	assert_int_equal(contain_fakesvc_run(&rec, "sink", sv[1], &o), MAMORI_OK);
	assert_string_equal(json_string_value(json_object_get(rec, "end")), "timeout");
	json_decref(rec);
	assert_int_equal(contain_fakesvc_run(&rec, "ssh", sv[1], &o), MAMORI_EINVAL);
	close(sv[0]);
	close(sv[1]);
}

/* Query for `name`/`qtype`, as dig would build it (without EDNS). */
static size_t build_query(uint8_t *q, uint16_t id, const char *name, uint16_t qtype)
{
	size_t n = 0;
	q[n++] = (uint8_t)(id >> 8);
	q[n++] = (uint8_t)id;
	q[n++] = 0x01; /* RD */
	q[n++] = 0x00;
	const uint8_t counts[8] = { 0, 1, 0, 0, 0, 0, 0, 0 };
	memcpy(q + n, counts, 8);
	n += 8;
	const char *p = name;
	while (*p) {
		const char *dot = strchr(p, '.');
		size_t l = dot ? (size_t)(dot - p) : strlen(p);
		q[n++] = (uint8_t)l;
		memcpy(q + n, p, l);
		n += l;
		p += l + (dot ? 1 : 0);
	}
	q[n++] = 0;
	q[n++] = (uint8_t)(qtype >> 8);
	q[n++] = (uint8_t)qtype;
	q[n++] = 0;
	q[n++] = 1;
	return n;
}

static void test_dns_bytes(void **state)
{
	(void)state;
	contain_policy *p = NULL;
	const char *text = "dns host=cc.example answer=203.0.113.9\n"
			   "dns host=*.dga.example nxdomain\n"
			   "dns sinkhole=198.51.100.53 ttl=300\n";
	assert_int_equal(contain_policy_parse(&p, "dns.policy", text, strlen(text)), MAMORI_OK);
	const contain_dns_config *cfg = contain_policy_dns(p);
	uint8_t q[512], a[512];
	size_t qn, an;
	char qname[256];

	/* A for a configured name: header, echoed question, one answer. */
	qn = build_query(q, 0xbeef, "CC.example", 1);
	assert_int_equal(contain_fakedns_answer(a, sizeof(a), &an, q, qn, cfg, qname), MAMORI_OK);
	assert_string_equal(qname, "cc.example");
	const uint8_t want_hdr[12] = { 0xbe, 0xef, 0x85, 0x80, 0, 1, 0, 1, 0, 0, 0, 0 };
	assert_int_equal(an, qn + 16);
	assert_memory_equal(a, want_hdr, 12);
	assert_memory_equal(a + 12, q + 12, qn - 12);
	const uint8_t want_rr[16] = { 0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x01, 0x2c, 0, 4, 203, 0, 113, 9 };
	assert_memory_equal(a + qn, want_rr, 16);

	/* Any other name: the sinkhole. */
	qn = build_query(q, 1, "update.example", 1);
	assert_int_equal(contain_fakedns_answer(a, sizeof(a), &an, q, qn, cfg, qname), MAMORI_OK);
	const uint8_t sink[4] = { 198, 51, 100, 53 };
	assert_memory_equal(a + an - 4, sink, 4);

	/* NXDOMAIN by policy, no answer. */
	qn = build_query(q, 2, "xkqzv.dga.example", 1);
	assert_int_equal(contain_fakedns_answer(a, sizeof(a), &an, q, qn, cfg, qname), MAMORI_OK);
	assert_int_equal(a[3] & 0xf, 3);
	assert_int_equal(a[7], 0);
	assert_int_equal(an, qn);

	/* AAAA: NOERROR without records. */
	qn = build_query(q, 3, "cc.example", 28);
	assert_int_equal(contain_fakedns_answer(a, sizeof(a), &an, q, qn, cfg, qname), MAMORI_OK);
	assert_int_equal(a[3] & 0xf, 0);
	assert_int_equal(a[7], 0);

	/* Opcode STATUS: NOTIMP. */
	qn = build_query(q, 4, "cc.example", 1);
	q[2] = 0x10;
	assert_int_equal(contain_fakedns_answer(a, sizeof(a), &an, q, qn, cfg, qname), MAMORI_OK);
	assert_int_equal(an, 12);
	assert_int_equal(a[3] & 0xf, 4);

	/* Hostile datagrams are refused, never over-read. */
	qn = build_query(q, 5, "cc.example", 1);
	for (size_t cut = 0; cut < qn; cut++)
		assert_int_not_equal(contain_fakedns_answer(a, sizeof(a), &an, q, cut, cfg, qname),
				     MAMORI_OK);
	uint8_t ptr[] = { 0, 6, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1 };
	assert_int_equal(contain_fakedns_answer(a, sizeof(a), &an, ptr, sizeof(ptr), cfg, qname),
			 MAMORI_EFORMAT);
	uint8_t two[64];
	qn = build_query(two, 7, "a.example", 1);
	two[5] = 2;
	assert_int_equal(contain_fakedns_answer(a, sizeof(a), &an, two, qn, cfg, qname), MAMORI_EFORMAT);
	qn = build_query(q, 8, "cc.example", 1);
	q[2] |= 0x80; /* a response */
	assert_int_equal(contain_fakedns_answer(a, sizeof(a), &an, q, qn, cfg, qname), MAMORI_EFORMAT);
	uint8_t longname[600];
	memcpy(longname, q, 12);
	longname[5] = 1;
	size_t pos = 12;
	for (int i = 0; i < 5; i++) {
		longname[pos++] = 63;
		memset(longname + pos, 'a', 63);
		pos += 63;
	}
	longname[pos++] = 0;
	memcpy(longname + pos, "\0\1\0\1", 4);
	pos += 4;
	assert_int_equal(contain_fakedns_answer(a, sizeof(a), &an, longname, pos, cfg, qname),
			 MAMORI_EFORMAT);
	qn = build_query(q, 9, "cc.example", 1);
	assert_int_equal(contain_fakedns_answer(a, 20, &an, q, qn, cfg, qname), MAMORI_ELIMIT);

	/* Random mutations (meaningful under ASan/valgrind): an answer, when
	 * there is one, fits, carries the query's id and echoes its question. */
	uint32_t seed = 7;
	for (int round = 0; round < 20000; round++) {
		qn = build_query(q, (uint16_t)round, "www.cc.example", 1);
		for (int k = 0; k < 1 + round % 4; k++) {
			seed = seed * 1103515245u + 12345u;
			q[(seed >> 8) % qn] = (uint8_t)(seed >> 20);
		}
		seed = seed * 1103515245u + 12345u;
		size_t len = round % 3 ? qn : (seed >> 8) % (qn + 1);
		if (contain_fakedns_answer(a, sizeof(a), &an, q, len, cfg, qname) == MAMORI_OK) {
			assert_true(an >= 12 && an <= sizeof(a));
			assert_memory_equal(a, q, 2);
			assert_true(strlen(qname) <= 253);
		} else {
			assert_int_equal(an, 0);
		}
	}
	contain_policy_free(p);
}

/* DNS over TCP: two length-prefixed queries in one stream, then garbage. */
static void test_dns_tcp(void **state)
{
	(void)state;
	contain_policy *p = NULL;
	const char *text = "dns host=cc.example answer=203.0.113.9\n";
	assert_int_equal(contain_policy_parse(&p, "dns.policy", text, strlen(text)), MAMORI_OK);
	contain_fakesvc_opts o = opts_for(tmpdir);
	o.dns = contain_policy_dns(p);
	uint8_t stream[512], q[256];
	size_t n = 0;
	const char *names[] = { "cc.example", "other.example" };
	for (int i = 0; i < 2; i++) {
		size_t qn = build_query(q, (uint16_t)(100 + i), names[i], 1);
		stream[n++] = (uint8_t)(qn >> 8);
		stream[n++] = (uint8_t)qn;
		memcpy(stream + n, q, qn);
		n += qn;
	}
	memcpy(stream + n, "\0\3abc", 5);
	n += 5;
	json_t *rec = NULL;
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(write(sv[0], stream, n), (ssize_t)n);
	shutdown(sv[0], SHUT_WR);
	assert_int_equal(contain_fakesvc_run(&rec, "dns", sv[1], &o), MAMORI_OK);
	uint8_t ans[1024];
	ssize_t got = read(sv[0], ans, sizeof(ans));
	assert_true(got > 4);
	size_t a1 = (size_t)ans[0] << 8 | ans[1];
	assert_int_equal(ans[2], 0);
	assert_int_equal(ans[3], 100);
	const uint8_t want1[4] = { 203, 0, 113, 9 }, want2[4] = { 198, 51, 100, 53 };
	assert_memory_equal(ans + 2 + a1 - 4, want1, 4);
	size_t a2 = (size_t)ans[2 + a1] << 8 | ans[3 + a1];
	assert_int_equal((size_t)got, 4 + a1 + a2);
	assert_memory_equal(ans + 4 + a1 + a2 - 4, want2, 4);
	assert_string_equal(json_string_value(json_object_get(rec, "end")), "malformed");
	assert_int_equal(json_array_size(json_object_get(rec, "queries")), 2);
	assert_string_equal(json_string_value(json_array_get(json_object_get(rec, "queries"), 1)),
			    "other.example");
	json_decref(rec);
	close(sv[0]);
	close(sv[1]);
	contain_policy_free(p);
}

typedef struct dns_job {
	int fd;
	const contain_dns_config *cfg;
	int answered;
} dns_job;

static void *serve_dns(void *arg)
{
	dns_job *j = arg;
	for (int i = 0; i < 2; i++) {
		uint8_t q[1500], a[1500];
		struct sockaddr_in from;
		socklen_t fl = sizeof(from);
		ssize_t n = recvfrom(j->fd, q, sizeof(q), 0, (struct sockaddr *)&from, &fl);
		if (n <= 0)
			break;
		size_t an;
		if (contain_fakedns_answer(a, sizeof(a), &an, q, (size_t)n, j->cfg, NULL) == MAMORI_OK) {
			sendto(j->fd, a, an, 0, (struct sockaddr *)&from, fl);
			j->answered++;
		}
	}
	return NULL;
}

/* dig, a real resolver client (with EDNS), over loopback UDP. */
static void test_dns_dig(void **state)
{
	(void)state;
	if (!have_tool("dig"))
		skip();
	contain_policy *p = NULL;
	assert_int_equal(contain_policy_default(&p), MAMORI_OK);
	uint16_t port;
	dns_job job = { .fd = listen_loopback(SOCK_DGRAM, &port), .cfg = contain_policy_dns(p) };
	pthread_t th;
	pthread_create(&th, NULL, serve_dns, &job);
	char cmd[512];
	snprintf(cmd, sizeof(cmd),
		 "dig +short +tries=1 +time=3 @127.0.0.1 -p %u cc.example A >%s/dig.txt 2>&1", port, tmpdir);
	int st1 = system(cmd);
	snprintf(cmd, sizeof(cmd),
		 "dig +tries=1 +time=3 @127.0.0.1 -p %u nothing.example AAAA | grep -q 'status: NOERROR'",
		 port);
	int st2 = system(cmd);
	pthread_join(th, NULL);
	close(job.fd);
	assert_int_equal(WEXITSTATUS(st1), 0);
	assert_int_equal(WEXITSTATUS(st2), 0);
	assert_int_equal(job.answered, 2);
	char path[300];
	snprintf(path, sizeof(path), "%s/dig.txt", tmpdir);
	uint8_t *txt = NULL;
	size_t len = 0;
	assert_int_equal(mamori_file_read(&txt, &len, path, 4096), MAMORI_OK);
	assert_string_equal((char *)txt, "198.51.100.53\n");
	free(txt);

	/* The same over TCP. */
	contain_fakesvc_opts o = opts_for(tmpdir);
	o.dns = contain_policy_dns(p);
	server_job tj = { .listen_fd = listen_loopback(SOCK_STREAM, &port),
			  .svc = contain_fakesvc_dns_tcp,
			  .opts = &o };
	pthread_create(&th, NULL, serve_one, &tj);
	snprintf(cmd, sizeof(cmd),
		 "dig +tcp +short +tries=1 +time=3 @127.0.0.1 -p %u tcp.example A >%s/dig.txt 2>&1", port,
		 tmpdir);
	int st3 = system(cmd);
	pthread_join(th, NULL);
	close(tj.listen_fd);
	assert_int_equal(WEXITSTATUS(st3), 0);
	assert_int_equal(mamori_file_read(&txt, &len, path, 4096), MAMORI_OK);
	assert_string_equal((char *)txt, "198.51.100.53\n");
	free(txt);
	assert_string_equal(json_string_value(json_array_get(json_object_get(tj.rec, "queries"), 0)),
			    "tcp.example");
	json_decref(tj.rec);
	contain_policy_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_smtp_swaks), cmocka_unit_test(test_smtp_raw),
		cmocka_unit_test(test_irc),	   cmocka_unit_test(test_irc_hostile),
		cmocka_unit_test(test_http_curl),  cmocka_unit_test(test_http_raw),
		cmocka_unit_test(test_sink),	   cmocka_unit_test(test_dns_bytes),
		cmocka_unit_test(test_dns_dig),	   cmocka_unit_test(test_dns_tcp),
	};
	return cmocka_run_group_tests(tests, make_tmpdir, remove_tmpdir);
}
