/*
 * libFuzzer target for the splitter of HTTP/1.x responses that the gateway
 * uses for downloads (src/contain/httpbody.c). The first input byte is the
 * flags (bit 0: the connection closed after the bytes; bits 1..7: which of
 * the first seven requests were HEAD), the rest is the server's bytes, as
 * in the seeds of fuzz/corpus/httpbody. Traps when a reported body lies
 * outside what a body can be (longer than the input), when indexes do not
 * count up from 0, or on an error code the splitter does not document.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "httpbody.h"
#include "mamori/base.h"

#define FUZZ_CHECK(cond)                  \
	do {                              \
		if (!(cond))              \
			__builtin_trap(); \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct seen {
	size_t input_len, next_index;
	uint64_t sum; /* touches every body byte, so ASan sees a bad pointer */
} seen;

static int on_msg(void *ctx, const httpbody_msg *m)
{
	seen *s = ctx;
	FUZZ_CHECK(m->index == s->next_index);
	s->next_index++;
	FUZZ_CHECK(m->status >= 100 && m->status <= 999);
	FUZZ_CHECK(m->body_len <= s->input_len);
	FUZZ_CHECK(m->body_len == 0 || m->body != NULL);
	for (size_t i = 0; i < m->body_len; i++)
		s->sum += m->body[i];
	return MAMORI_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	bool head[7];
	for (int i = 0; i < 7; i++)
		head[i] = (data[0] >> (i + 1)) & 1;
	seen s = { .input_len = size - 1 };
	int rc = contain_httpbody_split(data + 1, size - 1, data[0] & 1, head, 7, on_msg, &s);
	FUZZ_CHECK(rc == MAMORI_OK || rc == MAMORI_EFORMAT || rc == MAMORI_ENOMEM);
	return 0;
}
