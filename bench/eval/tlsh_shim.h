/*
 * A C face for Debian's TLSH library (libtlsh, which is C++ only), so the
 * baseline tool can use the real TLSH digest and distance rather than a
 * re-implementation. Only what the benchmark needs: digest a buffer, compare
 * two digests.
 */
#ifndef MAMORI_BENCH_TLSH_SHIM_H
#define MAMORI_BENCH_TLSH_SHIM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mamori_tlsh mamori_tlsh;

/**
 * Digest `len` bytes. Returns 0 and a new digest in `*out` (caller frees with
 * mamori_tlsh_free), or -1 when TLSH cannot digest the data (under 256 bytes,
 * too little variety, or no memory); then `*out` is NULL.
 */
int mamori_tlsh_new(mamori_tlsh **out, const unsigned char *data, size_t len);
/** TLSH distance (0 = same; grows without a fixed bound), length included. */
int mamori_tlsh_diff(const mamori_tlsh *a, const mamori_tlsh *b);
/** The hex digest, owned by `t`. */
const char *mamori_tlsh_digest(const mamori_tlsh *t);
void mamori_tlsh_free(mamori_tlsh *t);

#ifdef __cplusplus
}
#endif
#endif
