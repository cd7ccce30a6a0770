/*
 * mamori binary formats: strict loaders for PE32, PE32+ (i386, amd64) and
 * ELF32, ELF64 (EM_386, EM_X86_64, little-endian; ET_EXEC and ET_DYN).
 *
 * A parse yields headers, sections, the entry point, imports with their
 * imphash, exports, symbols and the executable regions. The loaders are
 * strict: a truncated, corrupt, overlapping or gigantic file is refused
 * with an error naming what is wrong, instead of being half-understood.
 * The parsed binary borrows the caller's bytes: the buffer must outlive it.
 *
 * Relocations are read only for the code addresses they point at (at
 * most 4 Mi entries; a bad relocation table is refused like any other).
 *
 * Executable regions: PE takes every section with IMAGE_SCN_MEM_EXECUTE or
 * IMAGE_SCN_CNT_CODE; ELF takes the SHF_ALLOC|SHF_EXECINSTR sections when
 * the file has section headers, and the PT_LOAD segments with PF_X
 * otherwise. Either way the regions hold only file-backed bytes, sorted by
 * VA, with overlaps trimmed.
 */
#ifndef MAMORI_BINFMT_H
#define MAMORI_BINFMT_H

#include "mamori/base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { MAMORI_FMT_PE32 = 1, MAMORI_FMT_PE32PLUS, MAMORI_FMT_ELF32, MAMORI_FMT_ELF64 } mamori_format;
typedef enum { MAMORI_ARCH_X86 = 1, MAMORI_ARCH_X86_64 } mamori_arch;
enum { MAMORI_SEC_READ = 1, MAMORI_SEC_WRITE = 2, MAMORI_SEC_EXEC = 4 };

/** One section. PE: `vsize` is VirtualSize (SizeOfRawData when that is 0);
 *  long "/N" names are resolved through the COFF string table. ELF: section
 *  headers except the null one; `raw_size` is 0 for SHT_NOBITS. */
typedef struct mamori_section {
	char name[64]; /**< NUL-terminated, truncated to 63 bytes */
	uint64_t va, vsize, raw_off, raw_size;
	uint32_t flags; /**< MAMORI_SEC_* */
} mamori_section;

/** One imported function (PE only; ELF has none here). */
typedef struct mamori_import {
	char *dll;	   /**< as written in the file, e.g. "KERNEL32.dll" */
	char *name;	   /**< NULL when imported by ordinal */
	uint32_t ordinal;  /**< the ordinal when by ordinal, else the hint */
	uint64_t thunk_va; /**< VA of the IAT slot */
} mamori_import;

/** One exported function (PE only). */
typedef struct mamori_export {
	char *name; /**< may be NULL (exported by ordinal only) */
	uint32_t ordinal;
	uint64_t va;	 /**< 0 for a forwarder */
	char *forwarder; /**< "DLL.Func" when forwarded, else NULL */
} mamori_export;

/** One symbol. PE: the COFF symbol table (external and static symbols
 *  defined in a section; size 0). ELF: .symtab when present, else .dynsym
 *  (defined FUNC, OBJECT and NOTYPE symbols with a name). `is_func` marks
 *  functions in executable sections. */
typedef struct mamori_symbol {
	char *name;
	uint64_t va;
	uint64_t size;
	bool is_func;
} mamori_symbol;

/** An executable region: `bytes` points into the caller's buffer (file
 *  bytes of that region; `size` of them), mapped at `va`. Overlaps removed,
 *  sorted by va. */
typedef struct mamori_region {
	uint64_t va;
	const uint8_t *bytes;
	size_t size;
} mamori_region;

/** Limits on attacker-controlled counts. A value of 0 means the default. */
typedef struct mamori_binfmt_limits {
	size_t max_sections; /**< sections, and ELF program headers (default 1024) */
	size_t max_imports;  /**< imported functions and import descriptors (default 65536) */
	size_t max_exports;  /**< export address table entries (default 65536) */
	size_t max_symbols;  /**< symbols kept (default 1048576) */
	size_t max_name_len; /**< longest name string (default 4096) */
} mamori_binfmt_limits;

/** A parsed binary. Everything in it is owned by the binary and freed by
 *  mamori_binary_free(), except `data` and the regions' bytes, which are
 *  borrowed from the caller's buffer. */
typedef struct mamori_binary {
	mamori_format format;
	mamori_arch arch;
	uint64_t image_base; /**< PE ImageBase; ELF lowest PT_LOAD vaddr, page-aligned down */
	uint64_t entry;	     /**< VA; 0 when none */
	bool has_entry;
	uint32_t timestamp; /**< PE TimeDateStamp; 0 for ELF */
	bool is_dll;	    /**< PE IMAGE_FILE_DLL; ELF ET_DYN without PT_INTERP */
	mamori_section *sections;
	size_t n_sections;
	mamori_import *imports;
	size_t n_imports;
	mamori_export *exports;
	size_t n_exports;
	mamori_symbol *symbols;
	size_t n_symbols;
	mamori_region *code;
	size_t n_code;
	char imphash[33]; /**< pefile-compatible MD5 imphash; "" when no imports */
	const uint8_t *data;
	size_t size;
	/** VAs that a relocation applied outside the code regions makes
	 *  point into a code region (function pointers, vtable slots,
	 *  callbacks in data; relocations inside code are left out, since
	 *  they point at data embedded in code as often as at code), sorted
	 *  and deduplicated.
	 *  PE: HIGHLOW/DIR64 base relocations, the stored pointer being the
	 *  target. ELF (with section headers): R_386_RELATIVE and
	 *  R_X86_64_RELATIVE, and R_386_32 / R_X86_64_64 against defined
	 *  symbols, in SHF_ALLOC relocation sections. */
	uint64_t *reloc_targets;
	size_t n_reloc_targets;
} mamori_binary;

/** The default limits (what a NULL `lim` means). */
mamori_binfmt_limits mamori_binfmt_limits_default(void);

/**
 * Parse `data` strictly as PE or ELF. `lim` NULL (or zero fields) means the
 * defaults. On success `*out` belongs to the caller (mamori_binary_free);
 * `data` is borrowed and must outlive it. Errors: MAMORI_ETRUNC,
 * MAMORI_EFORMAT, MAMORI_EUNSUPPORTED (non-x86 machine, not PE/ELF),
 * MAMORI_ELIMIT, MAMORI_ENOMEM, each with mamori_fail() detail.
 */
int mamori_binary_parse(mamori_binary **out, const uint8_t *data, size_t size,
			const mamori_binfmt_limits *lim);

/** Free a binary; NULL is fine. */
void mamori_binary_free(mamori_binary *b);

/** "pe32", "pe32+", "elf32", "elf64" ("?" otherwise). */
const char *mamori_format_name(mamori_format f);
/** "x86", "x86_64" ("?" otherwise). */
const char *mamori_arch_name(mamori_arch a);

/**
 * Map a VA to file bytes: on success `*out` points at the bytes (borrowed
 * from the caller's buffer) and `*out_len` is how many are available in the
 * file from there within its section (PE) or segment (ELF). MAMORI_ENOTFOUND
 * when the VA is not mapped or not backed by file bytes.
 */
int mamori_binary_va_bytes(const mamori_binary *b, uint64_t va, const uint8_t **out, size_t *out_len);

/** The structure as JSON (a new reference owned by the caller), or NULL
 *  when out of memory. Addresses are integers. */
struct json_t *mamori_binary_to_json(const mamori_binary *b);

#ifdef __cplusplus
}
#endif
#endif
