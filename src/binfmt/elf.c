/*
 * The strict ELF32/ELF64 loader: little-endian EM_386 and EM_X86_64
 * executables and shared objects (ET_EXEC, ET_DYN).
 *
 * What it refuses: a file cut short of its program or section headers or
 * of any PT_LOAD or section contents; header sizes other than the ABI's;
 * PT_LOAD segments that overlap or are out of order, or whose file size
 * exceeds their memory size; an entry point outside every PT_LOAD; section
 * contents that overlap in the file or allocated sections that overlap in
 * memory (TLS .tbss excepted: it overlays the next section by design); an
 * executable section whose address and file offset disagree with its
 * segment; symbol tables with a bad entry size or string table link; names
 * outside their string table; counts above the limits.
 *
 * What it tolerates: files without section headers (regions then come from
 * PF_X segments), and unnamed or unresolvable sections (section names are
 * cosmetic). Imports and exports of ELF are not modelled here: dynamic
 * symbols appear in `symbols` when there is no .symtab.
 *
 * Relocations are read only for where they point, from SHF_ALLOC SHT_REL
 * and SHT_RELA sections (so not in files without section headers):
 * RELATIVE ones (image base 0, the value being the addend or, for REL,
 * the stored word) and R_386_32 / R_X86_64_64 against a defined symbol of
 * the linked table. A table with a bad entry size is refused, as are more
 * than BINFMT_MAX_RELOCS entries; entries whose site or symbol is not in
 * the file are skipped.
 */
#include <stdlib.h>
#include <string.h>

#include "binfmt_internal.h"

#define EM_386	      3
#define EM_X86_64     62
#define ET_EXEC	      2
#define ET_DYN	      3
#define PT_LOAD	      1
#define PT_INTERP     3
#define PF_X	      1
#define SHT_SYMTAB    2
#define SHT_STRTAB    3
#define SHT_RELA      4
#define SHT_REL	      9
#define SHT_NOBITS    8
#define SHT_DYNSYM    11
#define SHF_WRITE     0x1
#define SHF_ALLOC     0x2
#define SHF_EXECINSTR 0x4
#define SHF_TLS	      0x400
#define SHN_UNDEF     0
#define SHN_LORESERVE 0xff00
#define SHN_XINDEX    0xffff
#define STT_NOTYPE    0
#define STT_OBJECT    1
#define STT_FUNC      2
#define R_ABS	      1 /* R_386_32, R_X86_64_64 */
#define R_RELATIVE    8 /* R_386_RELATIVE, R_X86_64_RELATIVE */

typedef struct elf_shdr {
	uint32_t name, type, link;
	uint64_t flags, addr, offset, size, entsize;
} elf_shdr;

typedef struct elf_ctx {
	binfmt_impl *b;
	mamori_cursor file;
	bool is64;
	uint64_t entry, phoff, shoff;
	uint16_t type, phentsize, shentsize;
	uint32_t phnum, shnum, shstrndx;
	elf_shdr *sh;
} elf_ctx;

static int elf_read_addr(mamori_cursor *cur, bool is64, uint64_t *v)
{
	if (is64)
		return mamori_read_u64le(cur, v);
	uint32_t v32 = 0;
	int err = mamori_read_u32le(cur, &v32);
	*v = v32;
	return err;
}

static int elf_read_header(elf_ctx *c)
{
	binfmt_impl *b = c->b;
	mamori_cursor cur = c->file;
	const uint8_t *ident;
	uint16_t machine, ehsize, phnum, shnum, shstrndx;
	uint32_t version, flags;

	if (mamori_read_bytes(&cur, 16, &ident) < 0)
		return mamori_fail(MAMORI_ETRUNC, "ELF: identification needs 16 bytes, file has %zu",
				   b->pub.size);
	if (ident[4] != 1 && ident[4] != 2)
		return mamori_fail(MAMORI_EFORMAT, "ELF: class %u is neither ELFCLASS32 nor ELFCLASS64",
				   ident[4]);
	if (ident[5] == 2)
		return mamori_fail(MAMORI_EUNSUPPORTED, "ELF: big-endian files are not supported");
	if (ident[5] != 1)
		return mamori_fail(MAMORI_EFORMAT, "ELF: data encoding %u is invalid", ident[5]);
	if (ident[6] != 1)
		return mamori_fail(MAMORI_EFORMAT, "ELF: identification version %u is not 1", ident[6]);
	c->is64 = ident[4] == 2;
	size_t want = c->is64 ? 64 : 52;
	if (b->pub.size < want)
		return mamori_fail(MAMORI_ETRUNC, "ELF: header needs %zu bytes, file has %zu", want,
				   b->pub.size);
	(void)mamori_read_u16le(&cur, &c->type);
	(void)mamori_read_u16le(&cur, &machine);
	(void)mamori_read_u32le(&cur, &version);
	(void)elf_read_addr(&cur, c->is64, &c->entry);
	(void)elf_read_addr(&cur, c->is64, &c->phoff);
	(void)elf_read_addr(&cur, c->is64, &c->shoff);
	(void)mamori_read_u32le(&cur, &flags);
	(void)mamori_read_u16le(&cur, &ehsize);
	(void)mamori_read_u16le(&cur, &c->phentsize);
	(void)mamori_read_u16le(&cur, &phnum);
	(void)mamori_read_u16le(&cur, &c->shentsize);
	(void)mamori_read_u16le(&cur, &shnum);
	(void)mamori_read_u16le(&cur, &shstrndx);

	if (c->is64 ? machine != EM_X86_64 : machine != EM_386)
		return mamori_fail(MAMORI_EUNSUPPORTED, "ELF: machine %u is not %s", machine,
				   c->is64 ? "EM_X86_64 (ELF64)" : "EM_386 (ELF32)");
	if (c->type != ET_EXEC && c->type != ET_DYN)
		return mamori_fail(MAMORI_EUNSUPPORTED,
				   "ELF: type %u is neither an executable nor a shared object", c->type);
	if (version != 1)
		return mamori_fail(MAMORI_EFORMAT, "ELF: e_version %u is not 1", version);
	if (ehsize != want)
		return mamori_fail(MAMORI_EFORMAT, "ELF: e_ehsize %u is not %zu", ehsize, want);
	b->pub.format = c->is64 ? MAMORI_FMT_ELF64 : MAMORI_FMT_ELF32;
	b->pub.arch = c->is64 ? MAMORI_ARCH_X86_64 : MAMORI_ARCH_X86;

	c->phnum = phnum;
	if (phnum == 0 || c->phoff == 0)
		return mamori_fail(MAMORI_EFORMAT, "ELF: no program headers, so nothing would be loaded");
	if (c->phentsize != (c->is64 ? 56 : 32))
		return mamori_fail(MAMORI_EFORMAT, "ELF: e_phentsize %u is not %u", c->phentsize,
				   c->is64 ? 56 : 32);
	if (phnum > b->lim.max_sections)
		return mamori_fail(MAMORI_ELIMIT, "ELF: %u program headers exceed the limit of %zu", phnum,
				   b->lim.max_sections);
	if (!mamori_span_fits(b->pub.size, c->phoff, (uint64_t)phnum * c->phentsize))
		return mamori_fail(MAMORI_ETRUNC,
				   "ELF: %u program headers at 0x%llx run past the end of the file", phnum,
				   (unsigned long long)c->phoff);

	c->shnum = shnum;
	c->shstrndx = shstrndx;
	if (c->shoff == 0) {
		if (shnum != 0)
			return mamori_fail(MAMORI_EFORMAT, "ELF: %u section headers at offset 0", shnum);
		return MAMORI_OK;
	}
	if (c->shentsize != (c->is64 ? 64 : 40))
		return mamori_fail(MAMORI_EFORMAT, "ELF: e_shentsize %u is not %u", c->shentsize,
				   c->is64 ? 64 : 40);
	if (!mamori_span_fits(b->pub.size, c->shoff, c->shentsize))
		return mamori_fail(MAMORI_ETRUNC,
				   "ELF: section headers at 0x%llx are past the end of the file",
				   (unsigned long long)c->shoff);
	/* Extended numbering: counts too large for the header live in section 0. */
	if (shnum == 0 || shstrndx == SHN_XINDEX) {
		mamori_cursor s0;
		uint64_t size0;
		uint32_t link0;
		(void)mamori_cursor_sub(&s0, &c->file, c->shoff, c->shentsize);
		(void)mamori_cursor_seek(&s0, c->is64 ? 32 : 20);
		(void)elf_read_addr(&s0, c->is64, &size0);
		(void)mamori_read_u32le(&s0, &link0);
		if (shnum == 0)
			c->shnum = size0 > UINT32_MAX ? UINT32_MAX : (uint32_t)size0;
		if (shstrndx == SHN_XINDEX)
			c->shstrndx = link0;
	}
	if (c->shnum > b->lim.max_sections + 1)
		return mamori_fail(MAMORI_ELIMIT, "ELF: %u section headers exceed the limit of %zu", c->shnum,
				   b->lim.max_sections);
	if (!mamori_span_fits(b->pub.size, c->shoff, (uint64_t)c->shnum * c->shentsize))
		return mamori_fail(MAMORI_ETRUNC,
				   "ELF: %u section headers at 0x%llx run past the end of the file", c->shnum,
				   (unsigned long long)c->shoff);
	if (c->shstrndx != SHN_UNDEF && c->shstrndx >= c->shnum)
		return mamori_fail(MAMORI_EFORMAT, "ELF: e_shstrndx %u is not below the %u sections",
				   c->shstrndx, c->shnum);
	return MAMORI_OK;
}

static int elf_read_segments(elf_ctx *c)
{
	binfmt_impl *b = c->b;
	mamori_cursor cur;
	bool has_interp = false;
	uint64_t lowest = UINT64_MAX;

	b->map = calloc(c->phnum, sizeof(*b->map));
	if (!b->map)
		return mamori_fail(MAMORI_ENOMEM, "ELF: out of memory for %u segments", c->phnum);
	(void)mamori_cursor_sub(&cur, &c->file, c->phoff, (uint64_t)c->phnum * c->phentsize);
	for (uint32_t i = 0; i < c->phnum; i++) {
		uint32_t type, flags = 0;
		uint64_t offset, vaddr, paddr, filesz, memsz;
		(void)mamori_cursor_seek(&cur, (uint64_t)i * c->phentsize);
		(void)mamori_read_u32le(&cur, &type);
		if (c->is64)
			(void)mamori_read_u32le(&cur, &flags);
		(void)elf_read_addr(&cur, c->is64, &offset);
		(void)elf_read_addr(&cur, c->is64, &vaddr);
		(void)elf_read_addr(&cur, c->is64, &paddr);
		(void)elf_read_addr(&cur, c->is64, &filesz);
		(void)elf_read_addr(&cur, c->is64, &memsz);
		if (!c->is64)
			(void)mamori_read_u32le(&cur, &flags);
		if (type == PT_INTERP)
			has_interp = true;
		if (type != PT_LOAD)
			continue;
		if (!mamori_span_fits(b->pub.size, offset, filesz))
			return mamori_fail(MAMORI_ETRUNC,
					   "ELF: PT_LOAD %u file range [0x%llx, +0x%llx) runs past the end "
					   "of the file (%zu bytes)",
					   i, (unsigned long long)offset, (unsigned long long)filesz,
					   b->pub.size);
		if (filesz > memsz)
			return mamori_fail(MAMORI_EFORMAT,
					   "ELF: PT_LOAD %u file size 0x%llx exceeds its memory size 0x%llx",
					   i, (unsigned long long)filesz, (unsigned long long)memsz);
		if (vaddr > UINT64_MAX - memsz || (!c->is64 && vaddr + memsz > UINT32_MAX + 1ull))
			return mamori_fail(MAMORI_EFORMAT,
					   "ELF: PT_LOAD %u at 0x%llx overflows the address space", i,
					   (unsigned long long)vaddr);
		if (memsz == 0)
			continue;
		if (b->n_map) {
			const binfmt_map *prev = &b->map[b->n_map - 1];
			if (vaddr < prev->va + prev->mem_size)
				return mamori_fail(
					MAMORI_EFORMAT,
					"ELF: PT_LOAD %u at 0x%llx overlaps or precedes the previous PT_LOAD",
					i, (unsigned long long)vaddr);
		}
		b->map[b->n_map++] = (binfmt_map){ vaddr, memsz, offset, filesz };
		if (vaddr < lowest)
			lowest = vaddr;
		if ((flags & PF_X) && c->shnum == 0 && filesz) {
			mamori_region *r;
			int err = mamori_vec_grow(&b->code, 1, (void **)&r);
			if (err < 0)
				return err;
			r->va = vaddr;
			r->bytes = b->pub.data + offset;
			r->size = (size_t)filesz;
		}
	}
	if (b->n_map == 0)
		return mamori_fail(MAMORI_EFORMAT, "ELF: no PT_LOAD segment with contents");
	b->pub.image_base = lowest & ~(uint64_t)0xfff;
	b->pub.is_dll = c->type == ET_DYN && !has_interp;
	if (c->entry) {
		if (binfmt_map_find(b, c->entry) < 0)
			return mamori_fail(MAMORI_EFORMAT,
					   "ELF: entry point 0x%llx is outside every PT_LOAD segment",
					   (unsigned long long)c->entry);
		b->pub.has_entry = true;
		b->pub.entry = c->entry;
	}
	return MAMORI_OK;
}

typedef struct span {
	uint64_t start, end;
	uint32_t idx;
} span;

static int span_cmp(const void *pa, const void *pb)
{
	const span *a = pa, *b = pb;
	if (a->start != b->start)
		return a->start < b->start ? -1 : 1;
	return (a->idx > b->idx) - (a->idx < b->idx);
}

/* The first overlap between sorted spans, as an index, or 0 when none. */
static size_t spans_overlap(span *s, size_t n)
{
	qsort(s, n, sizeof(*s), span_cmp);
	for (size_t i = 1; i < n; i++)
		if (s[i].start < s[i - 1].end)
			return i;
	return 0;
}

static const char *elf_section_name(const elf_ctx *c, uint32_t idx)
{
	const mamori_section *secs = c->b->sections.data;
	return idx >= 1 && idx - 1 < c->b->sections.count ? secs[idx - 1].name : "?";
}

static int elf_read_sections(elf_ctx *c)
{
	binfmt_impl *b = c->b;
	mamori_cursor cur;
	span *file_spans = NULL, *mem_spans = NULL;
	size_t n_file = 0, n_mem = 0, bad;
	int err = MAMORI_OK;

	if (c->shnum == 0)
		return MAMORI_OK;
	c->sh = calloc(c->shnum, sizeof(*c->sh));
	file_spans = calloc(c->shnum, sizeof(*file_spans));
	mem_spans = calloc(c->shnum, sizeof(*mem_spans));
	if (!c->sh || !file_spans || !mem_spans) {
		err = mamori_fail(MAMORI_ENOMEM, "ELF: out of memory for %u sections", c->shnum);
		goto done;
	}
	(void)mamori_cursor_sub(&cur, &c->file, c->shoff, (uint64_t)c->shnum * c->shentsize);
	for (uint32_t i = 0; i < c->shnum; i++) {
		elf_shdr *s = &c->sh[i];
		uint32_t info, align32;
		uint64_t align;
		(void)mamori_cursor_seek(&cur, (uint64_t)i * c->shentsize);
		(void)mamori_read_u32le(&cur, &s->name);
		(void)mamori_read_u32le(&cur, &s->type);
		(void)elf_read_addr(&cur, c->is64, &s->flags);
		(void)elf_read_addr(&cur, c->is64, &s->addr);
		(void)elf_read_addr(&cur, c->is64, &s->offset);
		(void)elf_read_addr(&cur, c->is64, &s->size);
		(void)mamori_read_u32le(&cur, &s->link);
		(void)mamori_read_u32le(&cur, &info);
		if (c->is64) {
			(void)mamori_read_u64le(&cur, &align);
		} else {
			(void)mamori_read_u32le(&cur, &align32);
		}
		(void)elf_read_addr(&cur, c->is64, &s->entsize);
	}

	const elf_shdr *strs = c->shstrndx ? &c->sh[c->shstrndx] : NULL;
	if (strs && (strs->type == SHT_NOBITS || !mamori_span_fits(b->pub.size, strs->offset, strs->size)))
		strs = NULL; /* reported below as that section's own truncation, or a NOBITS table */
	for (uint32_t i = 1; i < c->shnum; i++) {
		const elf_shdr *s = &c->sh[i];
		mamori_section *sec;
		if ((err = mamori_vec_grow(&b->sections, 1, (void **)&sec)) < 0)
			goto done;
		if (strs && s->name < strs->size) {
			const uint8_t *nm = b->pub.data + strs->offset + s->name;
			size_t left = (size_t)(strs->size - s->name);
			if (memchr(nm, 0, left))
				binfmt_set_name(sec->name, (const char *)nm, left);
		}
		bool nobits = s->type == SHT_NOBITS;
		sec->va = s->addr;
		sec->vsize = s->size;
		sec->raw_off = nobits ? 0 : s->offset;
		sec->raw_size = nobits ? 0 : s->size;
		sec->flags = ((s->flags & SHF_ALLOC) ? MAMORI_SEC_READ : 0) |
			     ((s->flags & SHF_WRITE) ? MAMORI_SEC_WRITE : 0) |
			     ((s->flags & SHF_EXECINSTR) ? MAMORI_SEC_EXEC : 0);
		if (!nobits && s->size) {
			if (!mamori_span_fits(b->pub.size, s->offset, s->size)) {
				err = mamori_fail(MAMORI_ETRUNC,
						  "ELF: section %u '%s' [0x%llx, +0x%llx) runs past the end "
						  "of the file (%zu bytes)",
						  i, sec->name, (unsigned long long)s->offset,
						  (unsigned long long)s->size, b->pub.size);
				goto done;
			}
			file_spans[n_file++] = (span){ s->offset, s->offset + s->size, i };
		}
		if ((s->flags & SHF_ALLOC) && s->size && !(nobits && (s->flags & SHF_TLS))) {
			if (s->addr > UINT64_MAX - s->size) {
				err = mamori_fail(
					MAMORI_EFORMAT,
					"ELF: section %u '%s' at 0x%llx overflows the address space", i,
					sec->name, (unsigned long long)s->addr);
				goto done;
			}
			mem_spans[n_mem++] = (span){ s->addr, s->addr + s->size, i };
		}
		if ((s->flags & SHF_ALLOC) && (s->flags & SHF_EXECINSTR) && !nobits && s->size) {
			/* The disassembler reads regions and va_bytes() alike;
			 * both must see the same bytes at the same address. */
			ptrdiff_t m = binfmt_map_find(b, s->addr);
			const binfmt_map *seg = m >= 0 ? &b->map[m] : NULL;
			if (!seg || s->addr - seg->va + seg->file_off != s->offset ||
			    s->size > seg->file_size - (s->addr - seg->va) ||
			    s->addr - seg->va > seg->file_size) {
				err = mamori_fail(MAMORI_EFORMAT,
						  "ELF: executable section %u '%s' at 0x%llx does not match "
						  "a PT_LOAD segment",
						  i, sec->name, (unsigned long long)s->addr);
				goto done;
			}
			mamori_region *r;
			if ((err = mamori_vec_grow(&b->code, 1, (void **)&r)) < 0)
				goto done;
			r->va = s->addr;
			r->bytes = b->pub.data + s->offset;
			r->size = (size_t)s->size;
		}
	}
	if ((bad = spans_overlap(file_spans, n_file))) {
		err = mamori_fail(MAMORI_EFORMAT,
				  "ELF: contents of sections %u '%s' and %u '%s' overlap in the file",
				  file_spans[bad - 1].idx, elf_section_name(c, file_spans[bad - 1].idx),
				  file_spans[bad].idx, elf_section_name(c, file_spans[bad].idx));
		goto done;
	}
	if ((bad = spans_overlap(mem_spans, n_mem))) {
		err = mamori_fail(MAMORI_EFORMAT, "ELF: sections %u '%s' and %u '%s' overlap in memory",
				  mem_spans[bad - 1].idx, elf_section_name(c, mem_spans[bad - 1].idx),
				  mem_spans[bad].idx, elf_section_name(c, mem_spans[bad].idx));
		goto done;
	}
done:
	free(file_spans);
	free(mem_spans);
	return err;
}

/* .symtab when present (a superset of .dynsym), else .dynsym. */
static int elf_read_symbols(elf_ctx *c)
{
	binfmt_impl *b = c->b;
	uint32_t tab = 0;
	int err = MAMORI_OK;

	for (uint32_t i = 1; i < c->shnum && !tab; i++)
		if (c->sh[i].type == SHT_SYMTAB)
			tab = i;
	for (uint32_t i = 1; i < c->shnum && !tab; i++)
		if (c->sh[i].type == SHT_DYNSYM)
			tab = i;
	if (!tab)
		return MAMORI_OK;
	const elf_shdr *st = &c->sh[tab];
	const char *what = st->type == SHT_SYMTAB ? ".symtab" : ".dynsym";
	uint64_t entsize = c->is64 ? 24 : 16;
	if (st->entsize != entsize || st->size % entsize)
		return mamori_fail(MAMORI_EFORMAT,
				   "ELF: %s entry size %llu / size %llu do not fit %llu-byte symbols", what,
				   (unsigned long long)st->entsize, (unsigned long long)st->size,
				   (unsigned long long)entsize);
	if (st->link == 0 || st->link >= c->shnum || c->sh[st->link].type != SHT_STRTAB)
		return mamori_fail(MAMORI_EFORMAT, "ELF: %s links to section %u, which is not a string table",
				   what, st->link);
	const elf_shdr *strs = &c->sh[st->link];
	if (st->size == 0)
		return MAMORI_OK;
	/* Both tables were checked against the file size with the sections. */
	mamori_cursor cur;
	if (mamori_cursor_sub(&cur, &c->file, st->offset, st->size) < 0)
		return mamori_fail(MAMORI_ETRUNC, "ELF: %s runs past the end of the file", what);
	uint64_t n = st->size / entsize;
	for (uint64_t i = 1; i < n; i++) {
		uint32_t name;
		uint64_t value, size;
		uint8_t info, other;
		uint16_t shndx;
		(void)mamori_cursor_seek(&cur, i * entsize);
		(void)mamori_read_u32le(&cur, &name);
		if (c->is64) {
			(void)mamori_read_u8(&cur, &info);
			(void)mamori_read_u8(&cur, &other);
			(void)mamori_read_u16le(&cur, &shndx);
			(void)mamori_read_u64le(&cur, &value);
			(void)mamori_read_u64le(&cur, &size);
		} else {
			uint32_t v32, s32;
			(void)mamori_read_u32le(&cur, &v32);
			(void)mamori_read_u32le(&cur, &s32);
			(void)mamori_read_u8(&cur, &info);
			(void)mamori_read_u8(&cur, &other);
			(void)mamori_read_u16le(&cur, &shndx);
			value = v32;
			size = s32;
		}
		unsigned type = info & 0xf;
		if (!name || shndx == SHN_UNDEF || shndx >= SHN_LORESERVE)
			continue;
		if (type != STT_NOTYPE && type != STT_OBJECT && type != STT_FUNC)
			continue;
		if (shndx >= c->shnum)
			return mamori_fail(MAMORI_EFORMAT,
					   "ELF: %s symbol %llu refers to section %u of only %u", what,
					   (unsigned long long)i, shndx, c->shnum);
		if (name >= strs->size)
			return mamori_fail(MAMORI_EFORMAT,
					   "ELF: %s symbol %llu name offset %u is outside its string table",
					   what, (unsigned long long)i, name);
		if (b->symbols.count >= b->lim.max_symbols)
			return mamori_fail(MAMORI_ELIMIT, "ELF: more than %zu symbols in %s",
					   b->lim.max_symbols, what);
		mamori_symbol sym = { .va = value, .size = size };
		sym.is_func = type == STT_FUNC && (c->sh[shndx].flags & SHF_EXECINSTR);
		if ((err = binfmt_strdup_at(&sym.name, b, strs->offset + name, strs->size - name,
					    "ELF symbol name")) < 0)
			return err;
		if ((err = mamori_vec_push(&b->symbols, &sym)) < 0) {
			free(sym.name);
			return err;
		}
	}
	return MAMORI_OK;
}

/* The word stored at `va` in the file (the implicit addend of a REL entry). */
static bool elf_word_at(const elf_ctx *c, uint64_t va, uint64_t *out)
{
	ptrdiff_t m = binfmt_map_find(c->b, va);
	unsigned w = c->is64 ? 8 : 4;
	if (m < 0)
		return false;
	const binfmt_map *seg = &c->b->map[m];
	uint64_t delta = va - seg->va;
	if (delta >= seg->file_size || seg->file_size - delta < w)
		return false;
	mamori_cursor cur;
	if (mamori_cursor_sub(&cur, &c->file, seg->file_off + delta, w) < 0)
		return false;
	return elf_read_addr(&cur, c->is64, out) == MAMORI_OK;
}

/* The value of defined symbol `idx` of symbol table section `tab`. */
static bool elf_sym_value(const elf_ctx *c, uint32_t tab, uint64_t idx, uint64_t *out)
{
	if (tab == 0 || tab >= c->shnum)
		return false;
	const elf_shdr *st = &c->sh[tab];
	uint64_t entsize = c->is64 ? 24 : 16;
	if ((st->type != SHT_SYMTAB && st->type != SHT_DYNSYM) || st->entsize != entsize || idx == 0 ||
	    idx >= st->size / entsize)
		return false;
	mamori_cursor cur;
	uint16_t shndx;
	if (mamori_cursor_sub(&cur, &c->file, st->offset + idx * entsize, entsize) < 0)
		return false;
	if (c->is64) {
		(void)mamori_cursor_seek(&cur, 6);
		(void)mamori_read_u16le(&cur, &shndx);
		(void)mamori_read_u64le(&cur, out);
	} else {
		uint32_t v32;
		(void)mamori_cursor_seek(&cur, 4);
		(void)mamori_read_u32le(&cur, &v32);
		(void)mamori_cursor_seek(&cur, 14);
		(void)mamori_read_u16le(&cur, &shndx);
		*out = v32;
	}
	return shndx != SHN_UNDEF && shndx < SHN_LORESERVE;
}

static int elf_read_relocs(elf_ctx *c)
{
	binfmt_impl *b = c->b;
	uint64_t n_entries = 0;
	int err;

	for (uint32_t i = 1; i < c->shnum; i++) {
		const elf_shdr *s = &c->sh[i];
		if ((s->type != SHT_REL && s->type != SHT_RELA) || !(s->flags & SHF_ALLOC) || !s->size)
			continue;
		bool rela = s->type == SHT_RELA;
		uint64_t entsize = (uint64_t)(c->is64 ? 8 : 4) * (rela ? 3 : 2);
		if (s->entsize != entsize || s->size % entsize)
			return mamori_fail(MAMORI_EFORMAT,
					   "ELF: relocation section %u '%s' entry size %llu / size %llu do "
					   "not fit %llu-byte entries",
					   i, elf_section_name(c, i), (unsigned long long)s->entsize,
					   (unsigned long long)s->size, (unsigned long long)entsize);
		n_entries += s->size / entsize;
		if (n_entries > BINFMT_MAX_RELOCS)
			return mamori_fail(MAMORI_ELIMIT, "ELF: more than %zu relocations",
					   (size_t)BINFMT_MAX_RELOCS);
		/* The contents were checked against the file size with the sections. */
		mamori_cursor cur;
		if (mamori_cursor_sub(&cur, &c->file, s->offset, s->size) < 0)
			return mamori_fail(MAMORI_ETRUNC,
					   "ELF: relocation section %u runs past the end of the file", i);
		for (uint64_t k = 0; k < s->size / entsize; k++) {
			uint64_t where, info, addend = 0, type, sym, v;
			(void)elf_read_addr(&cur, c->is64, &where);
			(void)elf_read_addr(&cur, c->is64, &info);
			if (rela)
				(void)elf_read_addr(&cur, c->is64, &addend);
			type = c->is64 ? (info & 0xffffffffu) : (info & 0xff);
			sym = c->is64 ? info >> 32 : info >> 8;
			if (type != R_RELATIVE && type != R_ABS)
				continue;
			if (!rela && !elf_word_at(c, where, &addend))
				continue;
			if (type == R_RELATIVE) {
				v = addend;
			} else {
				uint64_t base;
				if (!elf_sym_value(c, s->link, sym, &base))
					continue;
				v = base + addend;
			}
			if (!c->is64)
				v &= 0xffffffffu;
			if ((err = binfmt_add_reloc(b, where, v)) < 0)
				return err;
		}
	}
	return MAMORI_OK;
}

int binfmt_elf_parse(binfmt_impl *b)
{
	elf_ctx c = { .b = b };
	int err;

	mamori_cursor_init(&c.file, b->pub.data, b->pub.size);
	if ((err = elf_read_header(&c)) < 0)
		goto done;
	if ((err = elf_read_segments(&c)) < 0)
		goto done;
	if ((err = elf_read_sections(&c)) < 0)
		goto done;
	if ((err = elf_read_symbols(&c)) < 0)
		goto done;
	if ((err = elf_read_relocs(&c)) < 0)
		goto done;
done:
	free(c.sh);
	return err;
}
