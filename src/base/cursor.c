/*
 * Bounded reading of hostile bytes. Every read checks the remaining length
 * first and fails with MAMORI_ETRUNC without moving the cursor, so parsers
 * can never read past the end of the buffer they were given.
 */
#include <stdlib.h>
#include <string.h>

#include "mamori/base.h"

void mamori_cursor_init(mamori_cursor *cur, const void *data, size_t size)
{
	cur->data = data;
	cur->size = data ? size : 0;
	cur->pos = 0;
}

int mamori_cursor_sub(mamori_cursor *out, const mamori_cursor *parent, uint64_t off, uint64_t len)
{
	if (!mamori_span_fits(parent->size, off, len))
		return mamori_fail(MAMORI_ETRUNC, "range %#llx+%#llx lies outside %zu bytes",
				   (unsigned long long)off, (unsigned long long)len, parent->size);
	out->data = parent->data + off;
	out->size = (size_t)len;
	out->pos = 0;
	return MAMORI_OK;
}

int mamori_cursor_seek(mamori_cursor *cur, uint64_t pos)
{
	if (pos > cur->size)
		return mamori_fail(MAMORI_ETRUNC, "offset %#llx lies past the end (%zu bytes)",
				   (unsigned long long)pos, cur->size);
	cur->pos = (size_t)pos;
	return MAMORI_OK;
}

int mamori_cursor_skip(mamori_cursor *cur, uint64_t n)
{
	if (n > cur->size - cur->pos)
		return mamori_fail(MAMORI_ETRUNC, "skip of %llu bytes at offset %#zx passes the end",
				   (unsigned long long)n, cur->pos);
	cur->pos += (size_t)n;
	return MAMORI_OK;
}

size_t mamori_cursor_left(const mamori_cursor *cur)
{
	return cur->size - cur->pos;
}

static int need(const mamori_cursor *cur, size_t n)
{
	if (n > cur->size - cur->pos)
		return mamori_fail(MAMORI_ETRUNC, "need %zu bytes at offset %#zx, only %zu left", n, cur->pos,
				   cur->size - cur->pos);
	return MAMORI_OK;
}

int mamori_read_u8(mamori_cursor *cur, uint8_t *v)
{
	int rc = need(cur, 1);
	if (rc == MAMORI_OK)
		*v = cur->data[cur->pos++];
	return rc;
}

static uint64_t load_le(const uint8_t *p, size_t n)
{
	uint64_t v = 0;
	for (size_t i = n; i-- > 0;)
		v = (v << 8) | p[i];
	return v;
}

static uint64_t load_be(const uint8_t *p, size_t n)
{
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++)
		v = (v << 8) | p[i];
	return v;
}

#define DEFINE_READ(name, type, n, loader)                          \
	int name(mamori_cursor *cur, type *v)                       \
	{                                                           \
		int rc = need(cur, n);                              \
		if (rc == MAMORI_OK) {                              \
			*v = (type)loader(cur->data + cur->pos, n); \
			cur->pos += n;                              \
		}                                                   \
		return rc;                                          \
	}

DEFINE_READ(mamori_read_u16le, uint16_t, 2, load_le)
DEFINE_READ(mamori_read_u32le, uint32_t, 4, load_le)
DEFINE_READ(mamori_read_u64le, uint64_t, 8, load_le)
DEFINE_READ(mamori_read_u16be, uint16_t, 2, load_be)
DEFINE_READ(mamori_read_u32be, uint32_t, 4, load_be)
DEFINE_READ(mamori_read_u64be, uint64_t, 8, load_be)

int mamori_read_bytes(mamori_cursor *cur, size_t n, const uint8_t **out)
{
	int rc = need(cur, n);
	if (rc == MAMORI_OK) {
		*out = cur->data + cur->pos;
		cur->pos += n;
	}
	return rc;
}

int mamori_read_cstr_at(char **out, const mamori_cursor *cur, uint64_t off, size_t max)
{
	*out = NULL;
	if (off >= cur->size)
		return mamori_fail(MAMORI_ETRUNC, "string offset %#llx lies past the end (%zu bytes)",
				   (unsigned long long)off, cur->size);
	size_t avail = cur->size - (size_t)off;
	size_t scan = avail < max + 1 ? avail : max + 1;
	const uint8_t *start = cur->data + off;
	const uint8_t *nul = memchr(start, 0, scan);
	if (!nul) {
		if (scan == avail && avail <= max)
			return mamori_fail(MAMORI_ETRUNC, "string at %#llx has no terminator before the end",
					   (unsigned long long)off);
		return mamori_fail(MAMORI_ELIMIT, "string at %#llx is longer than %zu bytes",
				   (unsigned long long)off, max);
	}
	size_t len = (size_t)(nul - start);
	char *s = malloc(len + 1);
	if (!s)
		return mamori_fail(MAMORI_ENOMEM, "string of %zu bytes", len);
	memcpy(s, start, len);
	s[len] = '\0';
	*out = s;
	return MAMORI_OK;
}
