/* Reference binaries of known library code, embedded at build time. */
#ifndef MAMORI_LIBREF_DATA_H
#define MAMORI_LIBREF_DATA_H
#include <stddef.h>
#include <stdint.h>

struct libref_blob {
	const char *name;
	const uint8_t *data;
	size_t size;
};
extern const struct libref_blob libref_blobs[];
extern const size_t libref_count;
#endif
