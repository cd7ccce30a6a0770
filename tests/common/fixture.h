/*
 * Test helpers shared by the test executables: the checked-in fixtures of
 * tests/fixtures, found through $MAMORI_FIXTURES (set by meson), else the
 * source-relative path, and a hand-made binary of raw code. Failures abort
 * the calling cmocka test.
 */
#ifndef MAMORI_TEST_FIXTURE_H
#define MAMORI_TEST_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mamori/binfmt.h"

typedef struct fixture {
	uint8_t *data; /**< heap buffer, free() it */
	size_t size;
} fixture;

/** Path of fixture `name`; the caller frees it. */
char *fixture_path(const char *name);
/** Read fixture `name` whole. */
fixture load(const char *name);

/** A binary with one code region of `n` bytes at 0x1000 (entry there), as a
 *  loader would hand it over; `r` and `bytes` must outlive it. */
mamori_binary fake_binary(mamori_region *r, const uint8_t *bytes, size_t n, bool is_64);

#endif
