/*
 * Hashing: SHA-256 names samples, MD5 exists only because imphash is
 * defined with it, and FNV-1a serves hash tables. OpenSSL's EVP interface
 * does the cryptographic work.
 */
#include <openssl/evp.h>

#include "mamori/base.h"

static void digest_hex(char *out, const EVP_MD *md, const void *data, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char dig[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	if (!EVP_Digest(data, len, dig, &n, md, NULL))
		n = 0;
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hex[dig[i] >> 4];
		out[2 * i + 1] = hex[dig[i] & 15];
	}
	out[2 * (size_t)n] = '\0';
}

void mamori_sha256_hex(char out[65], const void *data, size_t len)
{
	digest_hex(out, EVP_sha256(), data, len);
}

void mamori_md5_hex(char out[33], const void *data, size_t len)
{
	digest_hex(out, EVP_md5(), data, len);
}

uint64_t mamori_hash64(const void *data, size_t len, uint64_t seed)
{
	const uint8_t *p = data;
	uint64_t h = 1469598103934665603ULL ^ seed;
	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 1099511628211ULL;
	}
	return h;
}
