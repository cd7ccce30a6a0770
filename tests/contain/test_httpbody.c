/*
 * Tests of the HTTP response splitter for downloads (src/contain/httpbody.c):
 * lengths, chunks with extensions and trailers, keep-alive, HEAD, interim
 * responses, bodies until close, and malformed or truncated input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "httpbody.h"
#include "mamori/base.h"

#define MAX_MSGS 8

typedef struct got {
	size_t n;
	httpbody_msg m[MAX_MSGS];
	char body[MAX_MSGS][256];
} got;

static int collect(void *ctx, const httpbody_msg *m)
{
	got *g = ctx;
	if (g->n < MAX_MSGS) {
		g->m[g->n] = *m;
		size_t n = m->body_len < sizeof g->body[0] - 1 ? m->body_len : sizeof g->body[0] - 1;
		if (n > 0)
			memcpy(g->body[g->n], m->body, n);
		g->body[g->n][n] = '\0';
		g->m[g->n].body = NULL;
	}
	g->n++;
	return MAMORI_OK;
}

static int split(got *g, const char *text, bool closed, const bool *head, size_t n_head)
{
	memset(g, 0, sizeof *g);
	return contain_httpbody_split((const uint8_t *)text, strlen(text), closed, head, n_head, collect, g);
}

static void test_length(void **state)
{
	(void)state;
	got g;
	assert_int_equal(split(&g, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", true, NULL, 0),
			 MAMORI_OK);
	assert_int_equal(g.n, 1);
	assert_int_equal(g.m[0].status, 200);
	assert_true(g.m[0].complete);
	assert_false(g.m[0].chunked);
	assert_string_equal(g.body[0], "hello");
	/* Cut short: the same response, not complete, whether or not closed. */
	assert_int_equal(split(&g, "HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nhello", true, NULL, 0),
			 MAMORI_OK);
	assert_int_equal(g.n, 1);
	assert_false(g.m[0].complete);
	assert_int_equal(g.m[0].body_len, 5);
}

static void test_chunked_keep_alive(void **state)
{
	(void)state;
	got g;
	const char *text = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n"
			   "5;name=x\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n"
			   "HTTP/1.1 404 Not Found\r\ncontent-length:  3 \r\n\r\nnop"
			   "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
	assert_int_equal(split(&g, text, false, NULL, 0), MAMORI_OK);
	assert_int_equal(g.n, 3);
	assert_true(g.m[0].chunked && g.m[0].complete);
	assert_string_equal(g.body[0], "hello world");
	assert_int_equal(g.m[1].status, 404);
	assert_string_equal(g.body[1], "nop");
	assert_int_equal(g.m[2].index, 2);
	assert_string_equal(g.body[2], "ok");
	/* The last chunk missing: what came is there, not complete. */
	assert_int_equal(
		split(&g, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", true, NULL, 0),
		MAMORI_OK);
	assert_int_equal(g.n, 1);
	assert_false(g.m[0].complete);
	assert_string_equal(g.body[0], "hel");
}

static void test_head_and_interim(void **state)
{
	(void)state;
	got g;
	const bool head[] = { true, false };
	const char *text = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
			   "HTTP/1.1 100 Continue\r\n\r\n"
			   "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
			   "HTTP/1.1 204 No Content\r\n\r\n";
	assert_int_equal(split(&g, text, true, head, 2), MAMORI_OK);
	assert_int_equal(g.n, 3);
	assert_int_equal(g.m[0].body_len, 0); /* the HEAD's: no body despite its length */
	assert_true(g.m[0].complete);
	assert_int_equal(g.m[1].index, 1); /* the interim 100 answers nothing of its own */
	assert_string_equal(g.body[1], "ok");
	assert_int_equal(g.m[2].status, 204);
}

static void test_until_close(void **state)
{
	(void)state;
	got g;
	const char *text = "HTTP/1.0 200 OK\r\nServer: x\r\n\r\nbody until close";
	assert_int_equal(split(&g, text, true, NULL, 0), MAMORI_OK);
	assert_true(g.m[0].complete);
	assert_string_equal(g.body[0], "body until close");
	/* Not closed (the gateway stopped keeping bytes): not whole. */
	assert_int_equal(split(&g, text, false, NULL, 0), MAMORI_OK);
	assert_false(g.m[0].complete);
}

static void test_malformed(void **state)
{
	(void)state;
	got g;
	/* What came before the bad response is still reported. */
	assert_int_equal(
		split(&g, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxSSH-2.0-x\r\n\r\n", true, NULL, 0),
		MAMORI_EFORMAT);
	assert_int_equal(g.n, 1);
	assert_int_equal(split(&g, "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\nx",
			       true, NULL, 0),
			 MAMORI_EFORMAT);
	assert_int_equal(split(&g, "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nx", true, NULL, 0),
			 MAMORI_EFORMAT);
	assert_int_equal(
		split(&g, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhi\r\n", true, NULL, 0),
		MAMORI_EFORMAT);
	assert_int_equal(split(&g, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhiXX0\r\n\r\n",
			       true, NULL, 0),
			 MAMORI_EFORMAT);
	assert_int_equal(g.n, 0);
	assert_int_equal(split(&g, "HTTP/1.1 99 Odd\r\n\r\n", true, NULL, 0), MAMORI_EFORMAT);
	/* A chunk-size line longer than any real one. */
	char longline[256];
	snprintf(longline, sizeof longline,
		 "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;%0100d\r\nx\r\n0\r\n\r\n", 0);
	assert_int_equal(split(&g, longline, true, NULL, 0), MAMORI_EFORMAT);
	/* A head that never ends within the limit. */
	static char big[HTTPBODY_HEAD_MAX + 64];
	memset(big, 'a', sizeof big - 1);
	memcpy(big, "HTTP/1.1 200 OK\r\nX: ", 20);
	assert_int_equal(split(&g, big, true, NULL, 0), MAMORI_EFORMAT);
	/* A head cut short is simply the end. */
	assert_int_equal(split(&g, "HTTP/1.1 200 OK\r\nContent-Le", true, NULL, 0), MAMORI_OK);
	assert_int_equal(g.n, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_length),		 cmocka_unit_test(test_chunked_keep_alive),
		cmocka_unit_test(test_head_and_interim), cmocka_unit_test(test_until_close),
		cmocka_unit_test(test_malformed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
