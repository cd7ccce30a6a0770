/*
 * Internals shared by the PE and ELF loaders: the private part of a parsed
 * binary (a VA-to-file map sorted by VA), the growth vectors the loaders fill
 * and the helpers that finish a parse (regions, imphash). Not installed; the
 * fuzz targets include it to drive one loader at a time.
 */
#ifndef MAMORI_BINFMT_INTERNAL_H
#define MAMORI_BINFMT_INTERNAL_H

#include "mamori/binfmt.h"

/** One file-backed mapping: [va, va+mem_size) in memory, of which the first
 *  file_size bytes come from the file at file_off. Sorted by va, disjoint. */
typedef struct binfmt_map {
	uint64_t va, mem_size;
	uint64_t file_off, file_size;
} binfmt_map;

/** A binary under construction. `pub` comes first so a mamori_binary
 *  pointer handed out is also a binfmt_impl pointer. */
typedef struct binfmt_impl {
	mamori_binary pub;
	binfmt_map *map;
	size_t n_map;
	mamori_binfmt_limits lim;
	/* Bytes of names copied so far: many table entries may point at one
	 * long string, so the per-name limit alone does not bound memory. */
	uint64_t string_bytes;
	mamori_vec sections, imports, exports, symbols, code;
	/* Targets of relocations, anywhere: kept to those in code and
	 * sorted by binfmt_impl_finish(). */
	mamori_vec relocs;
} binfmt_impl;

/** Where a relocation is applied and the address it makes it point at. */
typedef struct binfmt_reloc {
	uint64_t site, target;
} binfmt_reloc;

/** Record a relocation (MAMORI_ELIMIT past BINFMT_MAX_RELOCS). */
int binfmt_add_reloc(binfmt_impl *b, uint64_t site, uint64_t target);

/** Most relocation entries one binary may have (all tables together). */
#define BINFMT_MAX_RELOCS ((size_t)4 << 20)

/** Most bytes of names one binary may hold (all strings together). */
#define BINFMT_STRING_BUDGET ((uint64_t)64 << 20)

/* Entry points of the two loaders: fill `b` from b->pub.data/size. */
int binfmt_pe_parse(binfmt_impl *b);
int binfmt_elf_parse(binfmt_impl *b);

/** Allocate an impl over `data` with limits (NULL = defaults). */
int binfmt_impl_new(binfmt_impl **out, const uint8_t *data, size_t size, const mamori_binfmt_limits *lim);
/** Move the vectors into `pub`, sort and trim the code regions. */
int binfmt_impl_finish(binfmt_impl *b);
/** Parse with one loader only (used by fuzz targets and the dispatcher). */
int binfmt_parse_with(mamori_binary **out, const uint8_t *data, size_t size, const mamori_binfmt_limits *lim,
		      int (*loader)(binfmt_impl *));

/** Index of the map entry containing `va`, or -1. Binary search. */
ptrdiff_t binfmt_map_find(const binfmt_impl *b, uint64_t va);

/** Copy a NUL-terminated string at file offset `off`, which must end within
 *  [off, off+avail) and be at most max_name_len bytes. `what` names it. */
int binfmt_strdup_at(char **out, binfmt_impl *b, uint64_t off, uint64_t avail, const char *what);

/** Copy `src` (up to a NUL or `len` bytes) into a section name, truncated
 *  to 63 bytes, with bytes outside printable ASCII replaced by '?'. */
void binfmt_set_name(char dst[64], const char *src, size_t len);

/** Compute the pefile-compatible imphash of b->pub.imports into b->pub.imphash. */
int binfmt_imphash(binfmt_impl *b);

#endif
