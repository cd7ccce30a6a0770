/*
 * Test packers for the unpacker (issue 4). Test tools only: they are built
 * with the tests and never installed. Each packer takes a key, so one input
 * gives many different packed files. Four techniques (README.md): `xor`
 * (in place, hand-assembled stub), `lz` (compressed image unpacked into
 * VirtualAlloc'd memory by a prebuilt C stub from stubs/), `nested` (lz
 * layers, then xor or lz outside) and `antiemu` (the lz loader behind
 * API hashing, timing checks and an SEH-based jump). Limits: PE32 (i686)
 * and PE32+ (x86-64) executables; xor needs room for one more section
 * header in the input's header area.
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

/* ------------------------------------------------ lz, nested, antiemu */

/** Environment variable that overrides the compiled-in stub directory. */
#define MAMORI_TESTPACK_STUBS_ENV "MAMORI_TESTPACK_STUBS"

/** Outer technique of `nested`. */
typedef enum mamori_testpack_outer {
	MAMORI_TESTPACK_OUTER_AUTO = 0, /**< chosen by the key: xor when bit 0 is set, else lz */
	MAMORI_TESTPACK_OUTER_XOR,
	MAMORI_TESTPACK_OUTER_LZ,
} mamori_testpack_outer;

/** Options of the stub-based packers; a zeroed struct (or NULL) means the defaults. */
typedef struct mamori_testpack_opts {
	const char *stub_dir;	     /**< directory of the prebuilt stubs; NULL: $MAMORI_TESTPACK_STUBS, else
					  the source tree's tests/packers/stubs (borrowed) */
	uint32_t layers;	     /**< nested: layers in all, 2..8 (0: 2) */
	mamori_testpack_outer outer; /**< nested: the outermost layer's technique */
	uint32_t sleep_ms;	     /**< antiemu: the timing check's Sleep (0: 20..83 ms from the key) */
	int run_tls;		     /**< lz/antiemu: call the original's TLS callbacks before its entry */
} mamori_testpack_opts;

/** What an image packer (lz, antiemu, nested) did. */
typedef struct mamori_testpack_image_info {
	uint32_t oep_rva;	  /**< the original's AddressOfEntryPoint (innermost for nested) */
	uint64_t orig_image_base; /**< the original's preferred ImageBase */
	uint32_t orig_image_size; /**< the original's SizeOfImage */
	int orig_relocs;	  /**< the original has base relocations (loaded anywhere) */
	uint32_t payload_rva;	  /**< outermost lz/antiemu layer: the payload in the packed file */
	uint32_t payload_off;
	uint32_t payload_size;
	uint32_t stub_entry_rva; /**< the packed file's AddressOfEntryPoint */
	uint32_t layers;	 /**< layers applied (1 for lz and antiemu) */
	char outer[8];		 /**< technique of the outermost layer ("lz", "xor", "antiemu") */
} mamori_testpack_image_info;

/**
 * Compress `n` bytes with the LZSS of stubs/stubcfg.h and encrypt them with
 * the key stream from `key`. `*out` (caller frees) holds `*out_len` bytes.
 */
int mamori_testpack_lz_encode(uint8_t **out, size_t *out_len, const uint8_t *in, size_t n, uint32_t key);

/** Decode what mamori_testpack_lz_encode() made into exactly `n` bytes (the stubs' decoder). */
int mamori_testpack_lz_decode(uint8_t *out, size_t n, const uint8_t *in, size_t in_len, uint32_t key);

/**
 * Pack `in` with technique 2 (`lz`): its memory image compressed and
 * encrypted into a section appended to the prebuilt lz stub. Same ownership
 * and errors as mamori_testpack_xor(), plus MAMORI_EIO/MAMORI_EFORMAT when
 * the stub file is missing or lacks its configuration block.
 */
int mamori_testpack_lz(uint8_t **out, size_t *out_len, mamori_testpack_image_info *info, const uint8_t *in,
		       size_t in_len, uint32_t key, const mamori_testpack_opts *opt);

/** Technique 4 (`antiemu`): like mamori_testpack_lz() with the anti-emulation stub. */
int mamori_testpack_antiemu(uint8_t **out, size_t *out_len, mamori_testpack_image_info *info,
			    const uint8_t *in, size_t in_len, uint32_t key, const mamori_testpack_opts *opt);

/**
 * Technique 3 (`nested`): opt->layers - 1 lz layers, then the outer one
 * (xor or lz, opt->outer). Each layer's key is derived from `key`.
 */
int mamori_testpack_nested(uint8_t **out, size_t *out_len, mamori_testpack_image_info *info,
			   const uint8_t *in, size_t in_len, uint32_t key, const mamori_testpack_opts *opt);

#endif
