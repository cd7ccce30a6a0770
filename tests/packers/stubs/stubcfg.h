/*
 * What the test packers and their stubs share: the stub's configuration
 * block (found in the stub file by its magic and patched by the packer),
 * the API-name hash of the anti-emulation stub, and the LZSS decoder.
 * Compiled twice: by the host compiler into the packer and its tests, and
 * by mingw-w64 into the freestanding stubs (so it uses nothing but
 * <stdint.h> and must stay free of host headers and libc calls).
 *
 * Payload format (see ../README.md): the original's memory image (headers
 * and sections at their RVAs, trailing zeros cut) compressed with LZSS,
 * then XORed with the rolling key stream `b ^= k & 0xff; k = k *
 * 1103515245 + 12345`. LZSS stream: a control byte, then 8 items, bit i
 * (LSB first) 1 = one literal byte, 0 = a match of 3 bytes: distance - 1
 * (16 bits little endian, so 1..65536) and length - 3 (3..258).
 */
#ifndef MAMORI_PACKERS_STUBCFG_H
#define MAMORI_PACKERS_STUBCFG_H

#include <stdint.h>

/* 16 bytes with the NUL; the packer refuses a stub without exactly one. */
#define MPK_MAGIC     "MAMORI-PKCFG-v1"
#define MPK_MAGIC_LEN 16

/* mpk_config.flags */
#define MPK_FLAG_RELOCS	 0x1u /* the original has base relocations: load it anywhere */
#define MPK_FLAG_RUN_TLS 0x2u /* call the original's TLS callbacks before the OEP */

/* Index of each API in mpk_config.api_hash (anti-emulation stub). */
enum {
	MPK_API_LOADLIBRARYA,
	MPK_API_GETPROCADDRESS,
	MPK_API_VIRTUALALLOC,
	MPK_API_GETTICKCOUNT,
	MPK_API_SLEEP,
	MPK_API_EXITPROCESS,
	MPK_API_SETUEF, /* SetUnhandledExceptionFilter (x64 SEH jump) */
	MPK_API_COUNT
};

/* The names the hashes stand for, in MPK_API_* order (packer side). */
#define MPK_API_NAMES                                                                                     \
	{                                                                                                 \
		"LoadLibraryA", "GetProcAddress", "VirtualAlloc", "GetTickCount", "Sleep", "ExitProcess", \
			"SetUnhandledExceptionFilter"                                                     \
	}

/* Which PEB_LDR_DATA list the anti-emulation stub walks (key-chosen). */
enum { MPK_LIST_LOAD = 0, MPK_LIST_MEMORY = 1, MPK_LIST_INIT = 2 };

/* Exit codes of a stub that cannot go on (never 0: a failed unpack must not
 * look like a clean run of the original). */
#define MPK_EXIT_ALLOC	 0x6d706b01u
#define MPK_EXIT_DECODE	 0x6d706b02u
#define MPK_EXIT_FORMAT	 0x6d706b03u
#define MPK_EXIT_IMPORT	 0x6d706b04u
#define MPK_EXIT_RESOLVE 0x6d706b05u

/* The block the packer patches. Fixed-size fields only, no pointers, so
 * the layout is the same in PE32 and PE32+ stubs and on the host. */
typedef struct mpk_config {
	char magic[MPK_MAGIC_LEN];
	uint32_t payload_rva;  /* payload, relative to the stub's own image base */
	uint32_t payload_size; /* compressed bytes */
	uint32_t image_size;   /* the original's SizeOfImage (bytes to allocate) */
	uint32_t data_size;    /* bytes the payload decompresses to (<= image_size) */
	uint32_t key;	       /* start of the key stream */
	uint32_t flags;	       /* MPK_FLAG_* */
	uint32_t base_lo;      /* the original's preferred ImageBase */
	uint32_t base_hi;
	/* anti-emulation stub only */
	uint32_t hash_seed;		  /* seed of mpk_hash() */
	uint32_t kernel32_hash;		  /* mpk_hash_lower("kernel32.dll") */
	uint32_t sleep_ms;		  /* Sleep() of the timing check */
	uint32_t ldr_list;		  /* MPK_LIST_* */
	uint32_t api_hash[MPK_API_COUNT]; /* mpk_hash() of MPK_API_NAMES */
	uint32_t reserved[5];
} mpk_config;

static inline uint32_t mpk_ror13(uint32_t h)
{
	return h >> 13 | h << 19;
}

/* Hash of an export name (case kept). */
static inline uint32_t mpk_hash(uint32_t seed, const char *s)
{
	uint32_t h = seed;

	while (*s)
		h = mpk_ror13(h) + (uint8_t)*s++;
	return h;
}

/* One step of the module-name hash: ASCII lower-cased (module names are
 * compared without case, as the loader does). */
static inline uint32_t mpk_hash_lower_step(uint32_t h, uint32_t c)
{
	if (c >= 'A' && c <= 'Z')
		c += 'a' - 'A';
	return mpk_ror13(h) + c;
}

/* Next byte of the key stream; advances *k. Same stream as the xor packer. */
static inline uint8_t mpk_key_next(uint32_t *k)
{
	uint8_t b = (uint8_t)(*k & 0xff);

	*k = *k * 1103515245u + 12345u;
	return b;
}

/*
 * Decrypt and decompress `in` (in_size bytes, key stream from `key`) into
 * exactly out_size bytes at `out`. Every read and write is bounded; 0 on
 * success, -1 when the stream is short, overlong or points before the
 * start of the output.
 */
static inline int mpk_lz_decode(uint8_t *out, uint32_t out_size, const uint8_t *in, uint32_t in_size,
				uint32_t key)
{
	uint32_t ip = 0, op = 0, k = key;

	while (op < out_size) {
		if (ip >= in_size)
			return -1;
		uint32_t ctl = in[ip++] ^ mpk_key_next(&k);
		for (int bit = 0; bit < 8 && op < out_size; bit++, ctl >>= 1) {
			if (ctl & 1) {
				if (ip >= in_size)
					return -1;
				out[op++] = in[ip++] ^ mpk_key_next(&k);
				continue;
			}
			if (in_size - ip < 3)
				return -1;
			uint32_t d = in[ip] ^ mpk_key_next(&k);
			d |= (uint32_t)(in[ip + 1] ^ mpk_key_next(&k)) << 8;
			uint32_t len = (uint32_t)(in[ip + 2] ^ mpk_key_next(&k)) + 3u;
			ip += 3;
			d += 1;
			if (d > op || len > out_size - op)
				return -1;
			for (uint32_t i = 0; i < len; i++, op++)
				out[op] = out[op - d];
		}
	}
	return 0;
}

#endif
