/*
 * What both loader fuzz targets do with a binary that parsed: walk every
 * output (JSON view, VA lookups of entry, regions, exports and symbols) and
 * check the invariants callers rely on, trapping when one breaks, so the
 * fuzzer finds logic errors as well as memory errors.
 */
#ifndef MAMORI_FUZZ_COMMON_H
#define MAMORI_FUZZ_COMMON_H

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "binfmt_internal.h"

#define FUZZ_CHECK(cond)                  \
	do {                              \
		if (!(cond))              \
			__builtin_trap(); \
	} while (0)

static inline void fuzz_touch_va(const mamori_binary *b, uint64_t va)
{
	const uint8_t *p;
	size_t len;
	if (mamori_binary_va_bytes(b, va, &p, &len) == MAMORI_OK) {
		FUZZ_CHECK(p >= b->data && len > 0 && len <= b->size - (size_t)(p - b->data));
		volatile uint8_t sink = p[0] ^ p[len - 1];
		(void)sink;
	}
}

static inline void fuzz_exercise(const mamori_binary *b)
{
	if (b->has_entry)
		fuzz_touch_va(b, b->entry);
	for (size_t i = 0; i < b->n_code; i++) {
		const mamori_region *r = &b->code[i];
		FUZZ_CHECK(r->size > 0 && r->bytes >= b->data);
		FUZZ_CHECK((size_t)(r->bytes - b->data) <= b->size &&
			   r->size <= b->size - (size_t)(r->bytes - b->data));
		FUZZ_CHECK(i == 0 || b->code[i - 1].va + b->code[i - 1].size <= r->va);
		fuzz_touch_va(b, r->va);
	}
	for (size_t i = 0; i < b->n_sections; i++)
		FUZZ_CHECK(memchr(b->sections[i].name, 0, sizeof(b->sections[i].name)) != NULL);
	for (size_t i = 0; i < b->n_exports; i++)
		if (b->exports[i].va)
			fuzz_touch_va(b, b->exports[i].va);
	for (size_t i = 0; i < b->n_symbols && i < 4096; i++) {
		FUZZ_CHECK(b->symbols[i].name != NULL);
		fuzz_touch_va(b, b->symbols[i].va);
	}
	for (size_t i = 0; i < b->n_imports; i++)
		FUZZ_CHECK(b->imports[i].dll != NULL);
	FUZZ_CHECK(strlen(b->imphash) == (b->n_imports ? 32u : 0u));
	json_t *j = mamori_binary_to_json(b);
	FUZZ_CHECK(j != NULL);
	char *s = json_dumps(j, JSON_COMPACT);
	FUZZ_CHECK(s != NULL);
	free(s);
	json_decref(j);
}

static inline int fuzz_one(const uint8_t *data, size_t size, int (*loader)(binfmt_impl *))
{
	mamori_binary *b = NULL;
	/* Small limits keep each run fast without hiding code paths. */
	mamori_binfmt_limits lim = { .max_sections = 256,
				     .max_imports = 4096,
				     .max_exports = 4096,
				     .max_symbols = 16384,
				     .max_name_len = 1024 };
	int err = binfmt_parse_with(&b, data, size, &lim, loader);
	if (err == MAMORI_OK)
		fuzz_exercise(b);
	else
		FUZZ_CHECK(b == NULL && err < 0 && mamori_error_detail()[0] != '\0');
	mamori_binary_free(b);
	return 0;
}

#endif
