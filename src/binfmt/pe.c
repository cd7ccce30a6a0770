/*
 * The strict PE32/PE32+ loader (i386 and amd64 images).
 *
 * What it refuses, because a loader or an analysis would misread it: a file
 * cut short of any structure it declares (headers, section raw data, the
 * COFF symbol and string tables), a section table that does not fit in
 * SizeOfHeaders, sections whose RVA ranges overlap each other or the
 * headers or run past SizeOfImage, section raw data that overlaps other
 * raw data or the headers, alignments that are not powers of two,
 * NumberOfRvaAndSizes above 16, import/export tables pointing outside the
 * file-backed image, and counts above the limits.
 *
 * What it tolerates, because real linkers produce it or it is cosmetic:
 * SizeOfRawData larger than VirtualSize (file alignment padding), a
 * VirtualSize of 0 (SizeOfRawData is used, as Windows does), long "/N"
 * section names that cannot be resolved (kept as written), export aliases
 * (only the first name of a function is kept), and anything after the last
 * section (overlay). Delay imports and resources are not read.
 *
 * Base relocations are read only for where they point: a block cut short
 * or longer than the directory is refused, as are more than
 * BINFMT_MAX_RELOCS entries; a fixup whose bytes are not in the file
 * (a pointer in uninitialised data) is skipped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "binfmt_internal.h"

#define PE_MACHINE_I386	      0x014c
#define PE_MACHINE_AMD64      0x8664
#define PE_FILE_DLL	      0x2000
#define PE_OPT_MAGIC_PE32     0x10b
#define PE_OPT_MAGIC_PE32PLUS 0x20b
#define PE_SCN_CNT_CODE	      0x00000020u
#define PE_SCN_MEM_EXECUTE    0x20000000u
#define PE_SCN_MEM_READ	      0x40000000u
#define PE_SCN_MEM_WRITE      0x80000000u
#define PE_DIR_EXPORT	      0
#define PE_DIR_IMPORT	      1
#define PE_DIR_BASERELOC      5
#define PE_REL_HIGHLOW	      3
#define PE_REL_DIR64	      10
#define PE_MAX_DIRS	      16
#define PE_SECTION_HDR_SIZE   40
#define PE_SYMBOL_SIZE	      18
#define PE_SYM_CLASS_EXTERNAL 2
#define PE_SYM_CLASS_STATIC   3
#define PE_SYM_DTYPE_FUNCTION 2

typedef struct pe_section {
	uint32_t va, vsize, raw_off, raw_size, chars;
} pe_section;

typedef struct pe_ctx {
	binfmt_impl *b;
	mamori_cursor file;
	bool plus;
	uint64_t image_base;
	uint32_t size_of_image, size_of_headers;
	uint32_t n_dirs;
	uint32_t dir_rva[PE_MAX_DIRS], dir_size[PE_MAX_DIRS];
	uint32_t symtab_off, n_symbols;
	uint64_t strtab_off, strtab_size; /* 0 size: no string table */
	pe_section *secs;
	uint16_t n_secs;
} pe_ctx;

static bool is_pow2(uint32_t v)
{
	return v && !(v & (v - 1));
}

/* File offset and file-backed length at an RVA, via the map (headers and
 * sections, sorted by VA). */
static bool pe_rva_to_off(const pe_ctx *c, uint32_t rva, uint64_t *off, uint64_t *avail)
{
	ptrdiff_t i = binfmt_map_find(c->b, c->image_base + rva);
	if (i < 0)
		return false;
	const binfmt_map *m = &c->b->map[i];
	uint64_t delta = c->image_base + rva - m->va;
	if (delta >= m->file_size)
		return false;
	*off = m->file_off + delta;
	*avail = m->file_size - delta;
	return true;
}

/* A cursor over `len` file-backed bytes at `rva`, for fixed-size tables. */
static int pe_table_at(mamori_cursor *out, const pe_ctx *c, uint32_t rva, uint64_t len, const char *what)
{
	uint64_t off, avail;
	if (!pe_rva_to_off(c, rva, &off, &avail))
		return mamori_fail(MAMORI_EFORMAT, "PE: %s at RVA 0x%x is not in the file-backed image", what,
				   rva);
	if (len > avail)
		return mamori_fail(MAMORI_EFORMAT,
				   "PE: %s at RVA 0x%x (%llu bytes) runs past the end of its section", what,
				   rva, (unsigned long long)len);
	if (mamori_cursor_sub(out, &c->file, off, len) < 0)
		return mamori_fail(MAMORI_ETRUNC, "PE: %s at RVA 0x%x is beyond the end of the file", what,
				   rva);
	return MAMORI_OK;
}

static int pe_string_at(char **out, pe_ctx *c, uint32_t rva, const char *what)
{
	uint64_t off, avail;
	*out = NULL;
	if (!pe_rva_to_off(c, rva, &off, &avail))
		return mamori_fail(MAMORI_EFORMAT, "PE: %s at RVA 0x%x is not in the file-backed image", what,
				   rva);
	char label[64];
	snprintf(label, sizeof(label), "PE: %s", what);
	return binfmt_strdup_at(out, c->b, off, avail, label);
}

static int pe_read_headers(pe_ctx *c, uint64_t *sectab_off)
{
	binfmt_impl *b = c->b;
	mamori_cursor cur = c->file;
	uint32_t lfanew, sig, timestamp;
	uint16_t machine, n_secs, opt_size, chars, magic;

	if (b->pub.size < 64)
		return mamori_fail(MAMORI_ETRUNC, "PE: DOS header needs 64 bytes, file has %zu", b->pub.size);
	if (b->pub.data[0] != 'M' || b->pub.data[1] != 'Z')
		return mamori_fail(MAMORI_EUNSUPPORTED, "PE: no MZ signature");
	/* 64 bytes are there: e_lfanew at 0x3c can be read. */
	(void)mamori_cursor_seek(&cur, 0x3c);
	(void)mamori_read_u32le(&cur, &lfanew);
	if (!mamori_span_fits(b->pub.size, lfanew, 24))
		return mamori_fail(MAMORI_ETRUNC,
				   "PE: e_lfanew 0x%x points past the end of the file (%zu bytes)", lfanew,
				   b->pub.size);
	(void)mamori_cursor_seek(&cur, lfanew);
	(void)mamori_read_u32le(&cur, &sig);
	if (sig != 0x00004550)
		return mamori_fail(MAMORI_EFORMAT, "PE: no PE signature at e_lfanew 0x%x", lfanew);
	/* The 20-byte COFF header fits: checked with the signature above. */
	(void)mamori_read_u16le(&cur, &machine);
	(void)mamori_read_u16le(&cur, &n_secs);
	(void)mamori_read_u32le(&cur, &timestamp);
	(void)mamori_read_u32le(&cur, &c->symtab_off);
	(void)mamori_read_u32le(&cur, &c->n_symbols);
	(void)mamori_read_u16le(&cur, &opt_size);
	(void)mamori_read_u16le(&cur, &chars);
	if (machine != PE_MACHINE_I386 && machine != PE_MACHINE_AMD64)
		return mamori_fail(MAMORI_EUNSUPPORTED, "PE: machine 0x%04x is neither i386 nor amd64",
				   machine);
	if (n_secs > b->lim.max_sections)
		return mamori_fail(MAMORI_ELIMIT, "PE: %u sections exceed the limit of %zu", n_secs,
				   b->lim.max_sections);
	b->pub.timestamp = timestamp;
	b->pub.is_dll = (chars & PE_FILE_DLL) != 0;
	c->n_secs = n_secs;

	uint64_t opt_off = (uint64_t)lfanew + 24;
	mamori_cursor opt;
	if (mamori_cursor_sub(&opt, &c->file, opt_off, opt_size) < 0)
		return mamori_fail(MAMORI_ETRUNC,
				   "PE: optional header (%u bytes at 0x%llx) runs past the end of the file",
				   opt_size, (unsigned long long)opt_off);
	if (mamori_read_u16le(&opt, &magic) < 0)
		return mamori_fail(MAMORI_EFORMAT, "PE: SizeOfOptionalHeader %u is too small for its magic",
				   opt_size);
	if (magic == PE_OPT_MAGIC_PE32)
		c->plus = false;
	else if (magic == PE_OPT_MAGIC_PE32PLUS)
		c->plus = true;
	else
		return mamori_fail(MAMORI_EFORMAT,
				   "PE: optional header magic 0x%04x is neither PE32 nor PE32+", magic);
	if (c->plus != (machine == PE_MACHINE_AMD64))
		return mamori_fail(MAMORI_EFORMAT, "PE: %s optional header with %s machine",
				   c->plus ? "PE32+" : "PE32",
				   machine == PE_MACHINE_AMD64 ? "amd64" : "i386");
	b->pub.format = c->plus ? MAMORI_FMT_PE32PLUS : MAMORI_FMT_PE32;
	b->pub.arch = c->plus ? MAMORI_ARCH_X86_64 : MAMORI_ARCH_X86;

	size_t fixed = c->plus ? 112 : 96;
	if (opt_size < fixed)
		return mamori_fail(MAMORI_EFORMAT,
				   "PE: SizeOfOptionalHeader %u is below the %zu bytes of a %s header",
				   opt_size, fixed, c->plus ? "PE32+" : "PE32");
	uint32_t entry, sect_align, file_align, image_base32;
	(void)mamori_cursor_seek(&opt, 16);
	(void)mamori_read_u32le(&opt, &entry);
	if (c->plus) {
		(void)mamori_cursor_seek(&opt, 24);
		(void)mamori_read_u64le(&opt, &c->image_base);
	} else {
		(void)mamori_cursor_seek(&opt, 28);
		(void)mamori_read_u32le(&opt, &image_base32);
		c->image_base = image_base32;
	}
	(void)mamori_read_u32le(&opt, &sect_align);
	(void)mamori_read_u32le(&opt, &file_align);
	(void)mamori_cursor_seek(&opt, 56);
	(void)mamori_read_u32le(&opt, &c->size_of_image);
	(void)mamori_read_u32le(&opt, &c->size_of_headers);
	(void)mamori_cursor_seek(&opt, fixed - 4);
	(void)mamori_read_u32le(&opt, &c->n_dirs);
	if (!is_pow2(sect_align) || !is_pow2(file_align) || file_align > sect_align)
		return mamori_fail(MAMORI_EFORMAT,
				   "PE: SectionAlignment 0x%x / FileAlignment 0x%x are not powers of two "
				   "with file <= section",
				   sect_align, file_align);
	if (c->n_dirs > PE_MAX_DIRS)
		return mamori_fail(MAMORI_EFORMAT, "PE: NumberOfRvaAndSizes %u exceeds %d", c->n_dirs,
				   PE_MAX_DIRS);
	if (fixed + 8 * (size_t)c->n_dirs > opt_size)
		return mamori_fail(MAMORI_EFORMAT,
				   "PE: %u data directories do not fit in SizeOfOptionalHeader %u", c->n_dirs,
				   opt_size);
	for (uint32_t i = 0; i < c->n_dirs; i++) {
		(void)mamori_read_u32le(&opt, &c->dir_rva[i]);
		(void)mamori_read_u32le(&opt, &c->dir_size[i]);
	}
	if (c->size_of_image == 0)
		return mamori_fail(MAMORI_EFORMAT, "PE: SizeOfImage is 0");
	if (c->image_base > UINT64_MAX - c->size_of_image)
		return mamori_fail(MAMORI_EFORMAT, "PE: ImageBase 0x%llx plus SizeOfImage overflows",
				   (unsigned long long)c->image_base);
	b->pub.image_base = c->image_base;
	if (entry) {
		if (entry >= c->size_of_image)
			return mamori_fail(MAMORI_EFORMAT,
					   "PE: entry point RVA 0x%x is past SizeOfImage 0x%x", entry,
					   c->size_of_image);
		b->pub.has_entry = true;
		b->pub.entry = c->image_base + entry;
	}

	*sectab_off = opt_off + opt_size;
	uint64_t sectab_end = *sectab_off + (uint64_t)n_secs * PE_SECTION_HDR_SIZE;
	if (sectab_end > b->pub.size)
		return mamori_fail(MAMORI_ETRUNC,
				   "PE: section table (%u entries at 0x%llx) runs past the end of the file",
				   n_secs, (unsigned long long)*sectab_off);
	if (sectab_end > c->size_of_headers)
		return mamori_fail(MAMORI_EFORMAT,
				   "PE: section table ends at 0x%llx, past SizeOfHeaders 0x%x",
				   (unsigned long long)sectab_end, c->size_of_headers);
	if (c->size_of_headers > b->pub.size)
		return mamori_fail(MAMORI_ETRUNC,
				   "PE: SizeOfHeaders 0x%x is past the end of the file (%zu bytes)",
				   c->size_of_headers, b->pub.size);
	if (c->size_of_headers > c->size_of_image)
		return mamori_fail(MAMORI_EFORMAT, "PE: SizeOfHeaders 0x%x is past SizeOfImage 0x%x",
				   c->size_of_headers, c->size_of_image);
	return MAMORI_OK;
}

/* The COFF string table sits right after the symbol table; long section
 * names and long symbol names point into it. */
static int pe_locate_strtab(pe_ctx *c)
{
	binfmt_impl *b = c->b;
	if (c->symtab_off == 0) {
		c->n_symbols = 0;
		return MAMORI_OK;
	}
	uint64_t syms_len = (uint64_t)c->n_symbols * PE_SYMBOL_SIZE;
	if (!mamori_span_fits(b->pub.size, c->symtab_off, syms_len))
		return mamori_fail(MAMORI_ETRUNC,
				   "PE: COFF symbol table (%u symbols at 0x%x) runs past the end of the file",
				   c->n_symbols, c->symtab_off);
	mamori_cursor cur;
	uint32_t size;
	(void)mamori_cursor_sub(&cur, &c->file, c->symtab_off + syms_len,
				b->pub.size - c->symtab_off - syms_len);
	if (mamori_read_u32le(&cur, &size) < 0)
		return mamori_fail(MAMORI_ETRUNC, "PE: COFF string table after the symbol table is missing");
	if (size < 4 || !mamori_span_fits(b->pub.size, c->symtab_off + syms_len, size))
		return mamori_fail(MAMORI_ETRUNC,
				   "PE: COFF string table size %u at 0x%llx does not fit in the file", size,
				   (unsigned long long)c->symtab_off + syms_len);
	c->strtab_off = c->symtab_off + syms_len;
	c->strtab_size = size;
	return MAMORI_OK;
}

/* "/123" names a string at offset 123 of the string table. Unresolvable
 * names are kept as written: Windows ignores section names. */
static void pe_section_name(pe_ctx *c, char dst[64], const uint8_t raw[8])
{
	binfmt_set_name(dst, (const char *)raw, 8);
	if (raw[0] != '/' || c->strtab_size == 0)
		return;
	uint64_t off = 0;
	size_t i = 1;
	for (; i < 8 && raw[i] >= '0' && raw[i] <= '9'; i++)
		off = off * 10 + (uint64_t)(raw[i] - '0');
	if (i == 1 || (i < 8 && raw[i] != '\0') || off < 4 || off >= c->strtab_size)
		return;
	const uint8_t *s = c->file.data + c->strtab_off + off;
	binfmt_set_name(dst, (const char *)s, (size_t)(c->strtab_size - off));
}

typedef struct raw_range {
	uint64_t off, end;
	uint16_t idx;
} raw_range;

static int raw_range_cmp(const void *pa, const void *pb)
{
	const raw_range *a = pa, *b = pb;
	if (a->off != b->off)
		return a->off < b->off ? -1 : 1;
	return (a->idx > b->idx) - (a->idx < b->idx);
}

static int pe_read_sections(pe_ctx *c, uint64_t sectab_off)
{
	binfmt_impl *b = c->b;
	raw_range *raw = NULL;
	size_t n_raw = 0;
	int err = MAMORI_OK;
	mamori_cursor cur;

	(void)mamori_cursor_sub(&cur, &c->file, sectab_off, (uint64_t)c->n_secs * PE_SECTION_HDR_SIZE);
	c->secs = calloc(c->n_secs ? c->n_secs : 1, sizeof(*c->secs));
	raw = calloc(c->n_secs ? c->n_secs : 1, sizeof(*raw));
	b->map = calloc((size_t)c->n_secs + 1, sizeof(*b->map));
	if (!c->secs || !raw || !b->map) {
		err = mamori_fail(MAMORI_ENOMEM, "PE: out of memory for %u sections", c->n_secs);
		goto done;
	}
	b->map[0] = (binfmt_map){ c->image_base, c->size_of_headers, 0, c->size_of_headers };
	b->n_map = c->size_of_headers ? 1 : 0;

	uint64_t prev_end = c->size_of_headers;
	const char *prev_name = "the headers";
	mamori_section *sec = NULL;
	for (uint16_t i = 0; i < c->n_secs; i++) {
		const uint8_t *name;
		pe_section *s = &c->secs[i];
		(void)mamori_read_bytes(&cur, 8, &name);
		(void)mamori_read_u32le(&cur, &s->vsize);
		(void)mamori_read_u32le(&cur, &s->va);
		(void)mamori_read_u32le(&cur, &s->raw_size);
		(void)mamori_read_u32le(&cur, &s->raw_off);
		(void)mamori_cursor_skip(&cur, 12);
		(void)mamori_read_u32le(&cur, &s->chars);
		if (s->vsize == 0)
			s->vsize = s->raw_size;
		if ((err = mamori_vec_grow(&b->sections, 1, (void **)&sec)) < 0)
			goto done;
		pe_section_name(c, sec->name, name);
		sec->va = c->image_base + s->va;
		sec->vsize = s->vsize;
		sec->raw_off = s->raw_size ? s->raw_off : 0;
		sec->raw_size = s->raw_size;
		sec->flags = ((s->chars & PE_SCN_MEM_READ) ? MAMORI_SEC_READ : 0) |
			     ((s->chars & PE_SCN_MEM_WRITE) ? MAMORI_SEC_WRITE : 0) |
			     ((s->chars & (PE_SCN_MEM_EXECUTE | PE_SCN_CNT_CODE)) ? MAMORI_SEC_EXEC : 0);

		uint64_t va_end = (uint64_t)s->va + s->vsize;
		if (s->va < prev_end) {
			err = mamori_fail(MAMORI_EFORMAT,
					  "PE: section %u '%s' at RVA 0x%x overlaps %s (ending at 0x%llx)", i,
					  sec->name, s->va, prev_name, (unsigned long long)prev_end);
			goto done;
		}
		if (va_end > c->size_of_image) {
			err = mamori_fail(MAMORI_EFORMAT,
					  "PE: section %u '%s' ends at RVA 0x%llx, past SizeOfImage 0x%x", i,
					  sec->name, (unsigned long long)va_end, c->size_of_image);
			goto done;
		}
		if (s->raw_size) {
			if (!mamori_span_fits(b->pub.size, s->raw_off, s->raw_size)) {
				err = mamori_fail(MAMORI_ETRUNC,
						  "PE: section %u '%s' raw data [0x%x, +0x%x) runs past the "
						  "end of the file (%zu bytes)",
						  i, sec->name, s->raw_off, s->raw_size, b->pub.size);
				goto done;
			}
			if (s->raw_off < c->size_of_headers) {
				err = mamori_fail(MAMORI_EFORMAT,
						  "PE: section %u '%s' raw data at 0x%x overlaps the headers "
						  "(SizeOfHeaders 0x%x)",
						  i, sec->name, s->raw_off, c->size_of_headers);
				goto done;
			}
			raw[n_raw++] = (raw_range){ s->raw_off, (uint64_t)s->raw_off + s->raw_size, i };
		}
		if (s->vsize) {
			uint64_t file_size = s->raw_size < s->vsize ? s->raw_size : s->vsize;
			b->map[b->n_map++] = (binfmt_map){ c->image_base + s->va, s->vsize,
							   s->raw_size ? s->raw_off : 0, file_size };
			prev_end = va_end;
			prev_name = "the previous section";
		}
		if ((s->chars & (PE_SCN_MEM_EXECUTE | PE_SCN_CNT_CODE)) && s->raw_size && s->vsize) {
			mamori_region *r;
			if ((err = mamori_vec_grow(&b->code, 1, (void **)&r)) < 0)
				goto done;
			r->va = c->image_base + s->va;
			r->bytes = b->pub.data + s->raw_off;
			r->size = s->raw_size < s->vsize ? s->raw_size : s->vsize;
		}
	}
	/* Raw data of two sections sharing file bytes: sort once, compare neighbours. */
	qsort(raw, n_raw, sizeof(*raw), raw_range_cmp);
	for (size_t i = 1; i < n_raw; i++) {
		if (raw[i].off < raw[i - 1].end) {
			const mamori_section *secs = b->sections.data;
			err = mamori_fail(MAMORI_EFORMAT,
					  "PE: raw data of sections %u '%s' and %u '%s' overlap at 0x%llx",
					  raw[i - 1].idx, secs[raw[i - 1].idx].name, raw[i].idx,
					  secs[raw[i].idx].name, (unsigned long long)raw[i].off);
			goto done;
		}
	}
done:
	free(raw);
	return err;
}

/* A data directory's RVA and size; 0 when the header declares fewer. */
static uint32_t pe_dir_rva(const pe_ctx *c, unsigned idx)
{
	return c->n_dirs > idx ? c->dir_rva[idx] : 0;
}

static uint32_t pe_dir_size(const pe_ctx *c, unsigned idx)
{
	return c->n_dirs > idx ? c->dir_size[idx] : 0;
}

static int pe_read_exports(pe_ctx *c)
{
	binfmt_impl *b = c->b;
	uint32_t dir_rva = pe_dir_rva(c, PE_DIR_EXPORT);
	uint32_t dir_size = pe_dir_size(c, PE_DIR_EXPORT);
	uint32_t *name_of = NULL;
	int err = MAMORI_OK;
	mamori_cursor dir, funcs, names, ords;

	if (!dir_rva || !dir_size)
		return MAMORI_OK;
	if ((err = pe_table_at(&dir, c, dir_rva, 40, "export directory")) < 0)
		return err;
	uint32_t base, n_funcs, n_names, funcs_rva, names_rva, ords_rva;
	(void)mamori_cursor_seek(&dir, 16);
	(void)mamori_read_u32le(&dir, &base);
	(void)mamori_read_u32le(&dir, &n_funcs);
	(void)mamori_read_u32le(&dir, &n_names);
	(void)mamori_read_u32le(&dir, &funcs_rva);
	(void)mamori_read_u32le(&dir, &names_rva);
	(void)mamori_read_u32le(&dir, &ords_rva);
	if (n_funcs > b->lim.max_exports)
		return mamori_fail(MAMORI_ELIMIT, "PE: %u exported functions exceed the limit of %zu",
				   n_funcs, b->lim.max_exports);
	if (n_names > n_funcs)
		return mamori_fail(MAMORI_EFORMAT, "PE: %u export names for only %u exported functions",
				   n_names, n_funcs);
	if (n_funcs && (uint64_t)base + n_funcs - 1 > UINT32_MAX)
		return mamori_fail(MAMORI_EFORMAT, "PE: export ordinal base %u plus %u functions overflows",
				   base, n_funcs);
	if (n_funcs == 0)
		return MAMORI_OK;
	if ((err = pe_table_at(&funcs, c, funcs_rva, (uint64_t)n_funcs * 4, "export address table")) < 0)
		return err;
	if (n_names) {
		if ((err = pe_table_at(&names, c, names_rva, (uint64_t)n_names * 4, "export name table")) < 0)
			return err;
		if ((err = pe_table_at(&ords, c, ords_rva, (uint64_t)n_names * 2, "export ordinal table")) <
		    0)
			return err;
	}
	name_of = malloc((size_t)n_funcs * sizeof(*name_of));
	if (!name_of)
		return mamori_fail(MAMORI_ENOMEM, "PE: out of memory for %u exports", n_funcs);
	memset(name_of, 0xff, (size_t)n_funcs * sizeof(*name_of));
	for (uint32_t j = 0; j < n_names; j++) {
		uint16_t idx;
		(void)mamori_read_u16le(&ords, &idx);
		if (idx >= n_funcs) {
			err = mamori_fail(MAMORI_EFORMAT,
					  "PE: export name %u refers to function %u of only %u", j, idx,
					  n_funcs);
			goto done;
		}
		if (name_of[idx] == UINT32_MAX)
			name_of[idx] = j;
	}
	for (uint32_t i = 0; i < n_funcs; i++) {
		uint32_t frva;
		(void)mamori_read_u32le(&funcs, &frva);
		if (!frva)
			continue;
		mamori_export e = { .ordinal = base + i };
		if (frva >= dir_rva && frva - dir_rva < dir_size) {
			err = pe_string_at(&e.forwarder, c, frva, "export forwarder");
		} else if (frva >= c->size_of_image) {
			err = mamori_fail(MAMORI_EFORMAT,
					  "PE: export ordinal %u at RVA 0x%x is past SizeOfImage 0x%x",
					  e.ordinal, frva, c->size_of_image);
		} else {
			e.va = c->image_base + frva;
		}
		if (err == MAMORI_OK && name_of[i] != UINT32_MAX) {
			uint32_t nrva;
			(void)mamori_cursor_seek(&names, (uint64_t)name_of[i] * 4);
			(void)mamori_read_u32le(&names, &nrva);
			err = pe_string_at(&e.name, c, nrva, "export name");
		}
		if (err == MAMORI_OK)
			err = mamori_vec_push(&b->exports, &e);
		if (err < 0) {
			free(e.name);
			free(e.forwarder);
			goto done;
		}
	}
done:
	free(name_of);
	return err;
}

static int pe_read_imports(pe_ctx *c)
{
	binfmt_impl *b = c->b;
	uint32_t dir_rva = pe_dir_rva(c, PE_DIR_IMPORT);
	uint32_t dir_size = pe_dir_size(c, PE_DIR_IMPORT);
	unsigned tsize = c->plus ? 8 : 4;
	uint64_t ord_flag = c->plus ? (1ull << 63) : (1ull << 31);
	char *dll = NULL;
	int err = MAMORI_OK;

	if (!dir_rva || !dir_size)
		return MAMORI_OK;
	for (uint64_t k = 0;; k++) {
		mamori_cursor d;
		uint32_t ilt, name_rva, iat;
		uint64_t drva = (uint64_t)dir_rva + k * 20;
		if (k > b->lim.max_imports) {
			err = mamori_fail(MAMORI_ELIMIT, "PE: more than %zu import descriptors",
					  b->lim.max_imports);
			goto done;
		}
		if (drva > UINT32_MAX) {
			err = mamori_fail(MAMORI_EFORMAT,
					  "PE: import descriptors run past the 4 GiB RVA space");
			goto done;
		}
		if ((err = pe_table_at(&d, c, (uint32_t)drva, 20, "import descriptor")) < 0)
			goto done;
		(void)mamori_read_u32le(&d, &ilt);
		(void)mamori_cursor_skip(&d, 8);
		(void)mamori_read_u32le(&d, &name_rva);
		(void)mamori_read_u32le(&d, &iat);
		if (!ilt && !name_rva && !iat)
			break;
		if (!name_rva || !iat) {
			err = mamori_fail(MAMORI_EFORMAT, "PE: import descriptor %llu has no %s",
					  (unsigned long long)k, name_rva ? "FirstThunk" : "DLL name");
			goto done;
		}
		if ((err = pe_string_at(&dll, c, name_rva, "import DLL name")) < 0)
			goto done;
		if (!dll) { /* unreachable: success always yields a string */
			err = MAMORI_ENOMEM;
			goto done;
		}
		uint32_t thunks = ilt ? ilt : iat;
		for (uint64_t t = 0;; t++) {
			mamori_cursor tc;
			uint64_t trva = (uint64_t)thunks + t * tsize, v;
			if (trva > UINT32_MAX) {
				err = mamori_fail(
					MAMORI_EFORMAT,
					"PE: import thunks of descriptor %llu run past the 4 GiB RVA space",
					(unsigned long long)k);
				goto done;
			}
			if ((err = pe_table_at(&tc, c, (uint32_t)trva, tsize, "import thunk")) < 0)
				goto done;
			if (c->plus) {
				(void)mamori_read_u64le(&tc, &v);
			} else {
				uint32_t v32;
				(void)mamori_read_u32le(&tc, &v32);
				v = v32;
			}
			if (!v)
				break;
			if (iat + (t + 1) * tsize > c->size_of_image) {
				err = mamori_fail(MAMORI_EFORMAT,
						  "PE: import address table of descriptor %llu runs past "
						  "SizeOfImage 0x%x",
						  (unsigned long long)k, c->size_of_image);
				goto done;
			}
			if (b->imports.count >= b->lim.max_imports) {
				err = mamori_fail(MAMORI_ELIMIT, "PE: more than %zu imported functions",
						  b->lim.max_imports);
				goto done;
			}
			mamori_import im = { .thunk_va = c->image_base + iat + t * tsize };
			if (v & ord_flag) {
				if (v & ~ord_flag & ~(uint64_t)0xffff) {
					err = mamori_fail(MAMORI_EFORMAT,
							  "PE: import by ordinal in descriptor %llu has junk "
							  "bits 0x%llx",
							  (unsigned long long)k, (unsigned long long)v);
					goto done;
				}
				im.ordinal = (uint32_t)(v & 0xffff);
			} else {
				mamori_cursor hint;
				uint16_t h;
				if (v > 0x7fffffff) {
					err = mamori_fail(MAMORI_EFORMAT,
							  "PE: import hint/name RVA 0x%llx in descriptor "
							  "%llu is invalid",
							  (unsigned long long)v, (unsigned long long)k);
					goto done;
				}
				if ((err = pe_table_at(&hint, c, (uint32_t)v, 2, "import hint")) < 0)
					goto done;
				(void)mamori_read_u16le(&hint, &h);
				im.ordinal = h;
				if ((err = pe_string_at(&im.name, c, (uint32_t)v + 2, "import name")) < 0)
					goto done;
			}
			im.dll = strdup(dll);
			if (!im.dll)
				err = mamori_fail(MAMORI_ENOMEM, "PE: out of memory for imports");
			if (err == MAMORI_OK)
				err = mamori_vec_push(&b->imports, &im);
			if (err != MAMORI_OK) {
				free(im.dll);
				free(im.name);
				goto done;
			}
		}
		free(dll);
		dll = NULL;
	}
done:
	free(dll);
	return err;
}

static int pe_read_symbols(pe_ctx *c)
{
	binfmt_impl *b = c->b;
	mamori_cursor cur;
	int err = MAMORI_OK;

	if (!c->n_symbols)
		return MAMORI_OK;
	(void)mamori_cursor_sub(&cur, &c->file, c->symtab_off, (uint64_t)c->n_symbols * PE_SYMBOL_SIZE);
	for (uint32_t i = 0; i < c->n_symbols; i++) {
		const uint8_t *name;
		uint32_t value;
		uint16_t secnum, type;
		uint8_t cls, n_aux;
		(void)mamori_cursor_seek(&cur, (uint64_t)i * PE_SYMBOL_SIZE);
		(void)mamori_read_bytes(&cur, 8, &name);
		(void)mamori_read_u32le(&cur, &value);
		(void)mamori_read_u16le(&cur, &secnum);
		(void)mamori_read_u16le(&cur, &type);
		(void)mamori_read_u8(&cur, &cls);
		(void)mamori_read_u8(&cur, &n_aux);
		i += n_aux;
		bool is_func_type = ((type >> 4) & 3) == PE_SYM_DTYPE_FUNCTION;
		/* Section-definition symbols (static, not functions, with aux
		 * records) name sections, not code or data. */
		if (secnum == 0 || secnum > c->n_secs)
			continue;
		if (cls != PE_SYM_CLASS_EXTERNAL &&
		    !(cls == PE_SYM_CLASS_STATIC && (n_aux == 0 || is_func_type)))
			continue;
		mamori_symbol sym = { 0 };
		if (!name[0] && !name[1] && !name[2] && !name[3]) {
			uint32_t off = (uint32_t)name[4] | (uint32_t)name[5] << 8 | (uint32_t)name[6] << 16 |
				       (uint32_t)name[7] << 24;
			if (off < 4 || off >= c->strtab_size) {
				err = mamori_fail(
					MAMORI_EFORMAT,
					"PE: COFF symbol %u name offset %u is outside the string table",
					i - n_aux, off);
				goto done;
			}
			err = binfmt_strdup_at(&sym.name, b, c->strtab_off + off, c->strtab_size - off,
					       "PE: COFF symbol name");
		} else {
			size_t n = 0;
			while (n < 8 && name[n])
				n++;
			sym.name = malloc(n + 1);
			if (!sym.name) {
				err = mamori_fail(MAMORI_ENOMEM, "PE: out of memory for symbols");
			} else {
				memcpy(sym.name, name, n);
				sym.name[n] = '\0';
			}
		}
		if (err < 0)
			goto done;
		const pe_section *s = &c->secs[secnum - 1];
		sym.va = c->image_base + s->va + value;
		sym.is_func = is_func_type && (s->chars & (PE_SCN_MEM_EXECUTE | PE_SCN_CNT_CODE));
		if (b->symbols.count >= b->lim.max_symbols)
			err = mamori_fail(MAMORI_ELIMIT, "PE: more than %zu COFF symbols",
					  b->lim.max_symbols);
		else
			err = mamori_vec_push(&b->symbols, &sym);
		if (err < 0) {
			free(sym.name);
			goto done;
		}
	}
done:
	return err;
}

/* The base relocation directory: blocks of 16-bit entries for one 4 KiB
 * page each. The pointer stored at a HIGHLOW/DIR64 fixup is an absolute
 * VA for the preferred ImageBase, so it is the target as it stands. */
static int pe_read_relocs(pe_ctx *c)
{
	binfmt_impl *b = c->b;
	uint32_t dir_rva = pe_dir_rva(c, PE_DIR_BASERELOC);
	uint32_t dir_size = pe_dir_size(c, PE_DIR_BASERELOC);
	unsigned want = c->plus ? PE_REL_DIR64 : PE_REL_HIGHLOW;
	unsigned psize = c->plus ? 8 : 4;
	uint64_t n_entries = 0;
	mamori_cursor dir;
	int err;

	if (!dir_rva || !dir_size)
		return MAMORI_OK;
	if ((err = pe_table_at(&dir, c, dir_rva, dir_size, "base relocation directory")) < 0)
		return err;
	for (uint64_t at = 0; at + 8 <= dir_size;) {
		uint32_t page, bsize;
		(void)mamori_cursor_seek(&dir, at);
		(void)mamori_read_u32le(&dir, &page);
		(void)mamori_read_u32le(&dir, &bsize);
		if (bsize == 0 && page == 0)
			break; /* zero padding after the last block */
		if (bsize < 8 || bsize % 2 || bsize > dir_size - at)
			return mamori_fail(MAMORI_EFORMAT,
					   "PE: base relocation block at RVA 0x%llx has size %u (directory "
					   "has %llu bytes left)",
					   (unsigned long long)dir_rva + at, bsize,
					   (unsigned long long)(dir_size - at));
		n_entries += (bsize - 8) / 2;
		if (n_entries > BINFMT_MAX_RELOCS)
			return mamori_fail(MAMORI_ELIMIT, "PE: more than %zu base relocations",
					   (size_t)BINFMT_MAX_RELOCS);
		for (uint32_t k = 0; k < (bsize - 8) / 2; k++) {
			uint16_t e;
			uint64_t off, avail, v;
			(void)mamori_read_u16le(&dir, &e);
			if ((unsigned)(e >> 12) != want)
				continue;
			uint64_t site = (uint64_t)page + (e & 0xfff);
			if (site > UINT32_MAX || !pe_rva_to_off(c, (uint32_t)site, &off, &avail) ||
			    avail < psize)
				continue;
			mamori_cursor pc;
			if (mamori_cursor_sub(&pc, &c->file, off, psize) < 0)
				continue;
			if (c->plus) {
				(void)mamori_read_u64le(&pc, &v);
			} else {
				uint32_t v32;
				(void)mamori_read_u32le(&pc, &v32);
				v = v32;
			}
			if ((err = binfmt_add_reloc(b, c->image_base + site, v)) < 0)
				return err;
		}
		at += bsize;
	}
	return MAMORI_OK;
}

int binfmt_pe_parse(binfmt_impl *b)
{
	pe_ctx c = { .b = b };
	uint64_t sectab_off = 0;
	int err;

	mamori_cursor_init(&c.file, b->pub.data, b->pub.size);
	if ((err = pe_read_headers(&c, &sectab_off)) < 0)
		goto done;
	if ((err = pe_locate_strtab(&c)) < 0)
		goto done;
	if ((err = pe_read_sections(&c, sectab_off)) < 0)
		goto done;
	if ((err = pe_read_exports(&c)) < 0)
		goto done;
	if ((err = pe_read_imports(&c)) < 0)
		goto done;
	if ((err = pe_read_symbols(&c)) < 0)
		goto done;
	if ((err = pe_read_relocs(&c)) < 0)
		goto done;
done:
	free(c.secs);
	return err;
}
