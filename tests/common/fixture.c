/* See fixture.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "mamori/base.h"

char *fixture_path(const char *name)
{
	const char *dir = getenv("MAMORI_FIXTURES");
	if (!dir)
		dir = "tests/fixtures";
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = malloc(n);
	assert_non_null(p);
	snprintf(p, n, "%s/%s", dir, name);
	return p;
}

fixture load(const char *name)
{
	fixture f = { 0 };
	char *path = fixture_path(name);
	assert_int_equal(mamori_file_read(&f.data, &f.size, path, MAMORI_MAX_SAMPLE_SIZE), MAMORI_OK);
	free(path);
	return f;
}

mamori_binary fake_binary(mamori_region *r, const uint8_t *bytes, size_t n, bool is_64)
{
	r->va = 0x1000;
	r->bytes = bytes;
	r->size = n;
	return (mamori_binary){ .format = is_64 ? MAMORI_FMT_ELF64 : MAMORI_FMT_ELF32,
				.arch = is_64 ? MAMORI_ARCH_X86_64 : MAMORI_ARCH_X86,
				.entry = 0x1000,
				.has_entry = true,
				.code = r,
				.n_code = 1 };
}
