/*
 * Test helpers shared by the test executables: the checked-in fixtures of
 * tests/fixtures, found through $MAMORI_FIXTURES (set by meson), else the
 * source-relative path. Failures abort the calling cmocka test.
 */
#ifndef MAMORI_TEST_FIXTURE_H
#define MAMORI_TEST_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

typedef struct fixture {
	uint8_t *data; /**< heap buffer, free() it */
	size_t size;
} fixture;

/** Path of fixture `name`; the caller frees it. */
char *fixture_path(const char *name);
/** Read fixture `name` whole. */
fixture load(const char *name);

#endif
