/*
 * Dump the image that holds an OEP as a PE file, after emulation, with its
 * import table rebuilt (IAT reconstruction).
 *
 * The file mirrors memory: every section's file offset equals its RVA and
 * its raw size equals its (aligned) virtual size, with FileAlignment =
 * SectionAlignment, so what the unpacked code sees at an address is what
 * the file holds at that RVA. The image keeps the base it had in memory:
 * the code is already relocated there (a .reloc directory stays valid, as
 * its deltas are taken from that base).
 *
 * Layout: when the region holding the OEP starts with a plausible PE
 * header (the main image, or an image a stub wrote with its headers), its
 * sections are kept. Otherwise the contiguous written pages around the
 * OEP become one read-write-execute section under a new header.
 *
 * Imports: the image is scanned for aligned pointer-size values that are
 * stand-in export addresses (what the loader or a stub's GetProcAddress put
 * into IAT slots). Consecutive slots of one DLL form one import descriptor
 * whose FirstThunk is the run itself, so every `call [slot]` in the code
 * stays valid; a new section holds the descriptors, the lookup tables, the
 * hint/name entries and the DLL names, and each slot gets its hint/name
 * RVA (or ordinal) in the file, as a linker writes it. Limits: images up to
 * 1 GiB, at most MAX_SLOTS slots (more are left as they are), values are
 * taken only at pointer-aligned RVAs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mamori/emu.h"

#define MAX_DUMP_IMAGE	((uint64_t)1 << 30)
#define MAX_SLOTS	16384
#define MAX_SECTIONS	96
#define MAX_NAME	255 /* longer "API names" are not worth an import entry */
#define NEW_HEADER_SIZE 0x1000u

/* PE constants used here. */
#define SCN_CNT_CODE	  0x00000020u
#define SCN_CNT_INIT_DATA 0x00000040u
#define SCN_MEM_EXECUTE	  0x20000000u
#define SCN_MEM_READ	  0x40000000u
#define SCN_MEM_WRITE	  0x80000000u
#define DIR_IMPORT	  1
#define DIR_SECURITY	  4
#define DIR_DEBUG	  6
#define DIR_BOUND_IMPORT  11
#define DIR_IAT		  12
#define DIR_DELAY_IMPORT  13
#define PE_NUM_DIRS	  16

typedef struct dump_section {
	uint8_t name[8];
	uint32_t rva, size; /* size: virtual = raw, aligned */
	uint32_t chars;
} dump_section;

/* Where things are in the header of the image being written. */
typedef struct layout {
	bool plus;
	uint32_t opt_off, opt_size, n_dirs;
	uint32_t sectab_off;
	uint32_t align;
	uint64_t image_base;
	dump_section secs[MAX_SECTIONS + 1];
	uint32_t n_secs;
	uint32_t image_end; /* end of the last section (aligned) */
} layout;

typedef struct slot {
	uint32_t rva;
	mamori_emu_api_info api;
} slot;

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

static bool is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

/* Little-endian loads and stores on buffers whose bounds the caller
 * checked (every offset below is derived from sizes computed here). */
static uint16_t ld16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t ld32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t ld64(const uint8_t *p)
{
	return ld32(p) | (uint64_t)ld32(p + 4) << 32;
}

static void st16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void st32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void st64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* ------------------------------------------------------------ the layout */

/*
 * Read the PE header at the start of `mem` (the region's bytes) and keep
 * its section layout when it is consistent: right machine, aligned and
 * ordered sections inside the region, the OEP inside the image. Returns
 * false to fall back to a single section.
 */
static bool layout_from_header(layout *L, const uint8_t *mem, uint64_t mem_size, mamori_arch arch,
			       uint64_t oep_rva)
{
	memset(L, 0, sizeof(*L));
	if (mem_size < 0x200 || mem[0] != 'M' || mem[1] != 'Z')
		return false;
	uint32_t lfanew = ld32(mem + 0x3c);
	if (lfanew < 0x40 || lfanew > 0x800 || (uint64_t)lfanew + 24 + 112 > mem_size)
		return false;
	const uint8_t *pe = mem + lfanew;
	if (ld32(pe) != 0x00004550)
		return false;
	uint16_t machine = ld16(pe + 4), n_secs = ld16(pe + 6), opt_size = ld16(pe + 20);
	L->plus = arch == MAMORI_ARCH_X86_64;
	if (machine != (L->plus ? 0x8664 : 0x014c) || n_secs == 0 || n_secs > MAX_SECTIONS)
		return false;
	L->opt_off = lfanew + 24;
	L->opt_size = opt_size;
	uint32_t fixed = L->plus ? 112 : 96;
	if (opt_size < fixed + 8 * 2 || (uint64_t)L->opt_off + opt_size > mem_size)
		return false;
	const uint8_t *opt = mem + L->opt_off;
	if (ld16(opt) != (L->plus ? 0x20b : 0x10b))
		return false;
	L->align = ld32(opt + 32);
	L->n_dirs = ld32(opt + fixed - 4);
	if (!is_pow2(L->align) || L->align < 0x200 || L->align > 0x10000)
		return false;
	if (L->n_dirs > PE_NUM_DIRS)
		L->n_dirs = PE_NUM_DIRS;
	if (fixed + 8 * L->n_dirs > opt_size)
		L->n_dirs = (opt_size - fixed) / 8;
	if (L->n_dirs < 2)
		return false;
	L->sectab_off = L->opt_off + opt_size;
	uint64_t sectab_end = (uint64_t)L->sectab_off + 40ull * n_secs;
	if (sectab_end > mem_size)
		return false;
	uint64_t prev_end = sectab_end;
	for (uint32_t i = 0; i < n_secs; i++) {
		const uint8_t *s = mem + L->sectab_off + (size_t)40 * i;
		uint32_t vsize = ld32(s + 8), rva = ld32(s + 12), raw = ld32(s + 16);
		if (!vsize)
			vsize = raw;
		if (!vsize)
			continue; /* takes no memory: leave it out */
		uint64_t size = align_up(vsize, L->align);
		if (rva % L->align || rva < prev_end || rva + size > mem_size)
			return false;
		dump_section *d = &L->secs[L->n_secs];
		memcpy(d->name, s, 8);
		if (d->name[0] == '/') {
			/* "/N" names a COFF string table entry, and the string table
			 * (never mapped) is not in the dump: tools that resolve such
			 * names (GNU objdump) would refuse the file. */
			char n[9];
			snprintf(n, sizeof(n), ".sec%u", L->n_secs);
			memset(d->name, 0, 8);
			memcpy(d->name, n, strlen(n));
		}
		L->n_secs++;
		d->rva = rva;
		d->size = (uint32_t)size;
		d->chars = ld32(s + 36);
		prev_end = rva + size;
	}
	if (!L->n_secs || oep_rva < L->secs[0].rva || oep_rva >= prev_end)
		return false;
	L->image_end = (uint32_t)prev_end;
	return true;
}

/* Write a new header at the start of `img` for one section. */
static void write_new_header(uint8_t *img, layout *L, mamori_arch arch)
{
	memset(img, 0, NEW_HEADER_SIZE);
	L->plus = arch == MAMORI_ARCH_X86_64;
	img[0] = 'M';
	img[1] = 'Z';
	st32(img + 0x3c, 0x40);
	uint8_t *pe = img + 0x40;
	st32(pe, 0x00004550);
	st16(pe + 4, L->plus ? 0x8664 : 0x014c);
	st16(pe + 6, (uint16_t)L->n_secs);
	L->opt_off = 0x40 + 24;
	L->n_dirs = PE_NUM_DIRS;
	L->opt_size = (L->plus ? 112 : 96) + 8 * PE_NUM_DIRS;
	st16(pe + 20, (uint16_t)L->opt_size);
	/* EXECUTABLE_IMAGE | RELOCS_STRIPPED, plus 32BIT_MACHINE or LARGE_ADDRESS_AWARE */
	st16(pe + 22, (uint16_t)(0x0003 | (L->plus ? 0x0020 : 0x0100)));
	uint8_t *opt = img + L->opt_off;
	st16(opt, L->plus ? 0x20b : 0x10b);
	st32(opt + 32, L->align);
	st32(opt + 36, L->align);
	st16(opt + 40, 6); /* OS and subsystem version 6.0 */
	st16(opt + 48, 6);
	st16(opt + 68, 3); /* console */
	if (L->plus) {
		st64(opt + 72, 0x100000);
		st64(opt + 80, 0x1000);
		st64(opt + 88, 0x100000);
		st64(opt + 96, 0x1000);
	} else {
		st32(opt + 72, 0x100000);
		st32(opt + 76, 0x1000);
		st32(opt + 80, 0x100000);
		st32(opt + 84, 0x1000);
	}
	st32(opt + (L->plus ? 108 : 92), PE_NUM_DIRS);
	L->sectab_off = L->opt_off + L->opt_size;
}

/* ------------------------------------------------------------ IAT scan */

typedef struct module_span {
	uint64_t base, size;
} module_span;

/*
 * Collect the slots: aligned pointer values in the sections that are
 * export addresses of a stand-in module. The module regions are checked
 * first, so most values cost a comparison, not a lookup.
 */
static int scan_slots(slot **out, size_t *out_n, const mamori_emu *e, const layout *L, const uint8_t *img)
{
	module_span mods[256];
	size_t n_mods = 0;
	mamori_vec v;
	mamori_vec_init(&v, sizeof(slot), MAX_SLOTS);
	for (size_t i = 0; i < mamori_emu_region_count(e) && n_mods < 256; i++) {
		mamori_emu_region r;
		if (mamori_emu_region_at(e, i, &r) == MAMORI_OK && r.kind == MAMORI_EMU_REGION_MODULE)
			mods[n_mods++] = (module_span){ r.base, r.size };
	}
	unsigned ps = L->plus ? 8 : 4;
	for (uint32_t s = 0; s < L->n_secs; s++) {
		const dump_section *d = &L->secs[s];
		for (uint64_t rva = d->rva; rva + ps <= (uint64_t)d->rva + d->size; rva += ps) {
			uint64_t val = L->plus ? ld64(img + rva) : ld32(img + rva);
			if (!val)
				continue;
			bool in_module = false;
			for (size_t m = 0; m < n_mods && !in_module; m++)
				in_module = val - mods[m].base < mods[m].size;
			if (!in_module)
				continue;
			slot sl = { .rva = (uint32_t)rva };
			if (mamori_emu_api_at(e, val, &sl.api) != MAMORI_OK || !sl.api.dll ||
			    strlen(sl.api.dll) > MAX_NAME || (sl.api.name && strlen(sl.api.name) > MAX_NAME))
				continue;
			if (mamori_vec_push(&v, &sl) != MAMORI_OK)
				goto done; /* more than MAX_SLOTS: the rest stay as they are */
		}
	}
done:
	*out = mamori_vec_steal(&v, out_n);
	return MAMORI_OK;
}

/* A run: consecutive slots of one DLL, one import descriptor. */
static bool continues_run(const slot *prev, const slot *cur, unsigned ps)
{
	return cur->rva == prev->rva + ps && !strcmp(cur->api.dll, prev->api.dll);
}

/*
 * Build the import section at `imp_rva` in `img` (which has room for
 * `imp_size` bytes there, zeroed) and patch the slots. `imp_size` comes
 * from import_size() over the same slots.
 */
static uint32_t import_size(const slot *slots, size_t n, unsigned ps, uint32_t *out_desc_size)
{
	uint64_t runs = 0, ilt = 0, names = 0;
	for (size_t i = 0; i < n; i++) {
		bool start = i == 0 || !continues_run(&slots[i - 1], &slots[i], ps);
		if (start) {
			runs++;
			ilt += ps; /* the terminator */
			names += strlen(slots[i].api.dll) + 1;
		}
		ilt += ps;
		if (slots[i].api.name)
			names += align_up(2 + strlen(slots[i].api.name) + 1, 2);
	}
	*out_desc_size = (uint32_t)(20 * (runs + 1));
	return (uint32_t)(20 * (runs + 1) + ilt + names);
}

static void build_imports(uint8_t *img, uint32_t imp_rva, const slot *slots, size_t n, unsigned ps)
{
	uint32_t desc_size;
	(void)import_size(slots, n, ps, &desc_size);
	uint64_t ord_flag = ps == 8 ? 1ull << 63 : 1ull << 31;
	/* First pass: ILT positions follow the descriptors, names follow the ILTs. */
	uint32_t ilt_at = imp_rva + desc_size, ilt_total = 0;
	for (size_t i = 0; i < n; i++) {
		if (i == 0 || !continues_run(&slots[i - 1], &slots[i], ps))
			ilt_total += ps;
		ilt_total += ps;
	}
	uint32_t name_at = ilt_at + ilt_total;
	uint32_t desc_at = imp_rva;
	for (size_t i = 0; i < n;) {
		size_t j = i + 1;
		while (j < n && continues_run(&slots[j - 1], &slots[j], ps))
			j++;
		/* descriptor: OriginalFirstThunk, TimeDateStamp, ForwarderChain, Name, FirstThunk */
		st32(img + desc_at, ilt_at);
		st32(img + desc_at + 12, name_at);
		st32(img + desc_at + 16, slots[i].rva);
		desc_at += 20;
		size_t dl = strlen(slots[i].api.dll);
		memcpy(img + name_at, slots[i].api.dll, dl + 1);
		name_at += (uint32_t)dl + 1;
		for (size_t k = i; k < j; k++) {
			uint64_t thunk;
			if (slots[k].api.name) {
				name_at = (uint32_t)align_up(name_at, 2);
				size_t nl = strlen(slots[k].api.name);
				st16(img + name_at, 0);
				memcpy(img + name_at + 2, slots[k].api.name, nl + 1);
				thunk = name_at;
				name_at += (uint32_t)(2 + nl + 1);
			} else {
				thunk = ord_flag | slots[k].api.ordinal;
			}
			if (ps == 8) {
				st64(img + ilt_at, thunk);
				st64(img + slots[k].rva, thunk);
			} else {
				st32(img + ilt_at, (uint32_t)thunk);
				st32(img + slots[k].rva, (uint32_t)thunk);
			}
			ilt_at += ps;
		}
		ilt_at += ps; /* terminator, already zero */
		i = j;
	}
}

/* ------------------------------------------------------------ the header */

static void set_dir(uint8_t *img, const layout *L, unsigned idx, uint32_t rva, uint32_t size)
{
	if (idx >= L->n_dirs)
		return;
	uint8_t *d = img + L->opt_off + (L->plus ? 112 : 96) + (size_t)8 * idx;
	st32(d, rva);
	st32(d + 4, size);
}

/* Rewrite the header for the file layout: sections at their RVAs with raw
 * size = virtual size, entry, base, sizes, no symbols, checksum 0. */
static void finish_header(uint8_t *img, const layout *L, uint32_t headers_size, uint32_t oep_rva)
{
	uint8_t *coff = img + L->opt_off - 20;
	st16(coff + 2, (uint16_t)L->n_secs);
	st32(coff + 8, 0);  /* PointerToSymbolTable: file offsets no longer hold */
	st32(coff + 12, 0); /* NumberOfSymbols */
	uint8_t *opt = img + L->opt_off;
	st32(opt + 16, oep_rva);
	if (L->plus)
		st64(opt + 24, L->image_base);
	else
		st32(opt + 28, (uint32_t)L->image_base);
	st32(opt + 32, L->align);
	st32(opt + 36, L->align); /* FileAlignment = SectionAlignment: file mirrors memory */
	st32(opt + 56, L->image_end);
	st32(opt + 60, headers_size);
	st32(opt + 64, 0);			     /* CheckSum */
	st32(opt + (L->plus ? 108 : 92), L->n_dirs); /* the count read, within bounds */
	for (uint32_t i = 0; i < L->n_secs; i++) {
		uint8_t *s = img + L->sectab_off + (size_t)40 * i;
		memset(s, 0, 40);
		memcpy(s, L->secs[i].name, 8);
		st32(s + 8, L->secs[i].size);
		st32(s + 12, L->secs[i].rva);
		st32(s + 16, L->secs[i].size);
		st32(s + 20, L->secs[i].rva);
		st32(s + 36, L->secs[i].chars);
	}
}

/* The data directories that may name something the dump no longer holds:
 * cleared when the dump does not parse with them. */
static const unsigned optional_dirs[] = { 0, 2, 3, 5, 7, 8, 9, 10, 14 };

int mamori_emu_dump(uint8_t **out, size_t *out_len, const mamori_emu *e, uint64_t oep)
{
	int rc = MAMORI_OK;
	uint8_t *mem = NULL, *img = NULL;
	slot *slots = NULL;
	size_t n_slots = 0;
	mamori_binary *check = NULL;
	layout L;
	*out = NULL;
	*out_len = 0;
	if (!e)
		return mamori_fail(MAMORI_EINVAL, "dump: no emulator");

	mamori_emu_region reg;
	bool found = false;
	for (size_t i = 0; i < mamori_emu_region_count(e) && !found; i++)
		found = mamori_emu_region_at(e, i, &reg) == MAMORI_OK && oep - reg.base < reg.size;
	if (!found)
		return mamori_fail(MAMORI_ENOTFOUND, "dump: OEP 0x%llx is not in a mapped region",
				   (unsigned long long)oep);
	if (reg.size > MAX_DUMP_IMAGE)
		return mamori_fail(MAMORI_ELIMIT, "dump: region of 0x%llx bytes is larger than 1 GiB",
				   (unsigned long long)reg.size);
	mamori_arch arch = mamori_emu_arch(e);
	mem = malloc(reg.size ? reg.size : 1);
	if (!mem) {
		rc = mamori_fail(MAMORI_ENOMEM, "dump: %llu bytes", (unsigned long long)reg.size);
		goto done;
	}
	if ((rc = mamori_emu_read(e, reg.base, mem, reg.size)))
		goto done;

	uint64_t oep_rva, copy_off = 0, copy_len = 0;
	uint32_t headers_size;
	bool kept = layout_from_header(&L, mem, reg.size, arch, oep - reg.base);
	if (kept) {
		L.image_base = reg.base;
		oep_rva = oep - reg.base;
		headers_size = L.secs[0].rva;
	} else {
		/* One section: the contiguous written pages around the OEP, or the
		 * whole region when the OEP's page was not written (code the
		 * loader mapped, behind a header we could not use). */
		memset(&L, 0, sizeof(L));
		uint64_t lo = (oep - reg.base) & ~0xfffull, hi = lo + 0x1000;
		if (mamori_emu_page_written(e, oep)) {
			while (lo >= 0x1000 && mamori_emu_page_written(e, reg.base + lo - 0x1000))
				lo -= 0x1000;
			while (hi < reg.size && mamori_emu_page_written(e, reg.base + hi))
				hi += 0x1000;
		} else {
			lo = 0;
			hi = align_up(reg.size, 0x1000);
		}
		if (hi > reg.size)
			hi = reg.size;
		uint64_t code_va = reg.base + lo;
		if (code_va < 0x10000) {
			rc = mamori_fail(MAMORI_EUNSUPPORTED,
					 "dump: code at 0x%llx leaves no room for a header",
					 (unsigned long long)code_va);
			goto done;
		}
		/* A 64 KiB-aligned base like a linker's, at least one header page below. */
		L.image_base = (code_va - NEW_HEADER_SIZE) & ~0xffffull;
		L.align = 0x1000;
		L.n_secs = 1;
		dump_section *d = &L.secs[0];
		memcpy(d->name, ".text", 6);
		d->rva = (uint32_t)(code_va - L.image_base);
		d->size = (uint32_t)align_up(hi - lo, 0x1000);
		d->chars = SCN_CNT_CODE | SCN_MEM_EXECUTE | SCN_MEM_READ | SCN_MEM_WRITE;
		L.image_end = d->rva + d->size;
		copy_off = lo;
		copy_len = hi - lo;
		oep_rva = oep - L.image_base;
		headers_size = NEW_HEADER_SIZE;
	}
	if (arch == MAMORI_ARCH_X86 && L.image_base > UINT32_MAX) {
		rc = mamori_fail(MAMORI_EUNSUPPORTED, "dump: 32-bit image at 0x%llx",
				 (unsigned long long)L.image_base);
		goto done;
	}

	/* The image bytes, with room for the import section after them. */
	unsigned ps = arch == MAMORI_ARCH_X86_64 ? 8 : 4;
	img = calloc(1, L.image_end);
	if (!img) {
		rc = mamori_fail(MAMORI_ENOMEM, "dump: %u bytes", L.image_end);
		goto done;
	}
	if (kept) {
		memcpy(img, mem, L.image_end);
	} else {
		write_new_header(img, &L, arch);
		memcpy(img + L.secs[0].rva, mem + copy_off, copy_len);
	}
	free(mem);
	mem = NULL;

	if ((rc = scan_slots(&slots, &n_slots, e, &L, img)))
		goto done;
	uint32_t desc_size = 0, imp_size = 0;
	if (n_slots)
		imp_size = import_size(slots, n_slots, ps, &desc_size);

	/* Room for one more section header, or the imports go at the end of the last section. */
	uint64_t sectab_end = (uint64_t)L.sectab_off + 40ull * (L.n_secs + 1);
	bool new_section = n_slots && sectab_end <= headers_size && L.n_secs < MAX_SECTIONS + 1;
	uint32_t imp_rva = L.image_end;
	if (n_slots) {
		uint32_t grown = (uint32_t)align_up(imp_size, L.align);
		uint8_t *bigger = realloc(img, (size_t)L.image_end + grown);
		if (!bigger) {
			rc = mamori_fail(MAMORI_ENOMEM, "dump: import section");
			goto done;
		}
		img = bigger;
		memset(img + L.image_end, 0, grown);
		if (new_section) {
			dump_section *d = &L.secs[L.n_secs++];
			memcpy(d->name, ".idata2", 8);
			d->rva = imp_rva;
			d->size = grown;
			d->chars = SCN_CNT_INIT_DATA | SCN_MEM_READ | SCN_MEM_WRITE;
		} else {
			dump_section *d = &L.secs[L.n_secs - 1];
			d->size = imp_rva + grown - d->rva;
			d->chars |= SCN_MEM_READ;
		}
		L.image_end += grown;
		build_imports(img, imp_rva, slots, n_slots, ps);
	}
	finish_header(img, &L, headers_size, (uint32_t)oep_rva);
	set_dir(img, &L, DIR_IMPORT, n_slots ? imp_rva : 0, n_slots ? desc_size : 0);
	if (n_slots) {
		uint32_t lo = slots[0].rva, hi = slots[n_slots - 1].rva + ps;
		set_dir(img, &L, DIR_IAT, lo, hi - lo);
	} else {
		set_dir(img, &L, DIR_IAT, 0, 0);
	}
	set_dir(img, &L, DIR_SECURITY, 0, 0); /* a file offset, and the signature is void anyway */
	set_dir(img, &L, DIR_DEBUG, 0, 0);    /* its entries hold file offsets */
	set_dir(img, &L, DIR_BOUND_IMPORT, 0, 0);
	set_dir(img, &L, DIR_DELAY_IMPORT, 0, 0);

	/* The dump must load in our own loader; directories the unpacked image
	 * left inconsistent (a stub may reuse their memory) are dropped. */
	rc = mamori_binary_parse(&check, img, L.image_end, NULL);
	if (rc != MAMORI_OK) {
		for (size_t i = 0; i < sizeof(optional_dirs) / sizeof(optional_dirs[0]); i++)
			set_dir(img, &L, optional_dirs[i], 0, 0);
		rc = mamori_binary_parse(&check, img, L.image_end, NULL);
		if (rc != MAMORI_OK) {
			/* mamori_fail() writes the detail it would read: copy it first. */
			char why[256];
			snprintf(why, sizeof(why), "%s", mamori_error_detail());
			rc = mamori_fail(rc, "dump: the rebuilt image does not parse: %s", why);
			goto done;
		}
	}
	*out = img;
	*out_len = L.image_end;
	img = NULL;
done:
	mamori_binary_free(check);
	free(slots);
	free(img);
	free(mem);
	return rc;
}
