/*
 * Test packers for the unpacker (issue 4). Test tools only: they are built
 * with the tests and never installed. Each packer takes a key, so one input
 * gives many different packed files. Limits: PE32 (i686) and PE32+ (x86-64)
 * executables whose header area has room for one more section header.
 */
#ifndef MAMORI_TESTPACK_H
#define MAMORI_TESTPACK_H

#include <stddef.h>
#include <stdint.h>

/** Name of the section the XOR packer appends. */
#define MAMORI_TESTPACK_XOR_SECTION ".mpk"

/** What the XOR packer did, for tests and the CLI. */
typedef struct mamori_testpack_info {
	uint32_t text_rva;   /**< start of the encrypted range */
	uint32_t text_size;  /**< bytes encrypted (min of raw and virtual size) */
	uint32_t text_off;   /**< file offset of the encrypted range */
	uint32_t oep_rva;    /**< original AddressOfEntryPoint */
	uint32_t stub_rva;   /**< new AddressOfEntryPoint (start of the stub) */
	uint32_t stub_off;   /**< file offset of the stub */
	uint32_t stub_size;  /**< stub bytes */
	int tls_neutralised; /**< 1 when TLS callbacks were cut off (see README) */
	uint32_t tls_cb_off; /**< file offset of the patched AddressOfCallBacks (4 or 8 bytes), else 0 */
} mamori_testpack_info;

/** Next byte of the rolling key stream: returns the byte and advances `*k`. */
uint8_t mamori_testpack_key_next(uint32_t *k);

/**
 * XOR-pack `in` (a PE32 or PE32+ executable) with `key`. On success `*out`
 * is a new heap buffer owned by the caller (free()) of `*out_len` bytes;
 * `info` (may be NULL) says what was done. Errors through mamori_fail():
 * MAMORI_EUNSUPPORTED (not PE, a DLL, no room for a section header, ...),
 * MAMORI_EFORMAT/ETRUNC (from the parser), MAMORI_ENOMEM.
 */
int mamori_testpack_xor(uint8_t **out, size_t *out_len, mamori_testpack_info *info, const uint8_t *in,
			size_t in_len, uint32_t key);

#endif
