/* Unit tests of the strict PE/ELF loaders: every checked-in fixture parses
 * with the facts objdump/readelf report for it (expected values below were
 * taken from those tools, and the imphashes from tests/binfmt/imphash.py,
 * an independent implementation over objdump's import listing); then
 * truncations, byte flips and targeted corruptions, each of which must fail
 * cleanly with the right error or parse into a consistent structure.
 * Run under ASan, the buffers are exact-size copies so an over-read shows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* cmocka needs the headers above first. */
#include <cmocka.h>

#include <jansson.h>

#include "fixture.h"
#include "mamori/base.h"
#include "mamori/binfmt.h"

/* An exact-size heap copy, so ASan reports any read past `len`. */
static uint8_t *copy_of(const uint8_t *data, size_t len)
{
	uint8_t *c = malloc(len ? len : 1);
	assert_non_null(c);
	if (len)
		memcpy(c, data, len);
	return c;
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static void wr32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void wr16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static const mamori_section *find_section(const mamori_binary *b, const char *name)
{
	for (size_t i = 0; i < b->n_sections; i++)
		if (!strcmp(b->sections[i].name, name))
			return &b->sections[i];
	return NULL;
}

static const mamori_symbol *find_symbol(const mamori_binary *b, const char *name)
{
	for (size_t i = 0; i < b->n_symbols; i++)
		if (b->symbols[i].name && !strcmp(b->symbols[i].name, name))
			return &b->symbols[i];
	return NULL;
}

static bool has_reloc_target(const mamori_binary *b, uint64_t va)
{
	for (size_t i = 0; i < b->n_reloc_targets; i++)
		if (b->reloc_targets[i] == va)
			return true;
	return false;
}

static size_t count_imports_from(const mamori_binary *b, const char *dll)
{
	size_t n = 0;
	for (size_t i = 0; i < b->n_imports; i++)
		if (!strcmp(b->imports[i].dll, dll))
			n++;
	return n;
}

/* What must hold for any successful parse, hostile or not. The JSON view
 * is the slow part, so the byte-flip loop asks for it only now and then. */
static void check_consistent_json(const mamori_binary *b, bool with_json)
{
	assert_true(b->format >= MAMORI_FMT_PE32 && b->format <= MAMORI_FMT_ELF64);
	assert_true(b->arch == MAMORI_ARCH_X86 || b->arch == MAMORI_ARCH_X86_64);
	for (size_t i = 0; i < b->n_code; i++) {
		const mamori_region *r = &b->code[i];
		assert_true(r->size > 0);
		assert_true(r->bytes >= b->data && (size_t)(r->bytes - b->data) <= b->size);
		assert_true(r->size <= b->size - (size_t)(r->bytes - b->data));
		if (i > 0)
			assert_true(b->code[i - 1].va + b->code[i - 1].size <= r->va);
		const uint8_t *p;
		size_t len;
		if (mamori_binary_va_bytes(b, r->va, &p, &len) == MAMORI_OK) {
			assert_true(p >= b->data && len <= b->size - (size_t)(p - b->data));
			assert_true(len > 0);
		}
	}
	for (size_t i = 0; i < b->n_sections; i++) {
		assert_true(strlen(b->sections[i].name) < 64);
		if (b->sections[i].raw_size)
			assert_true(
				mamori_span_fits(b->size, b->sections[i].raw_off, b->sections[i].raw_size));
	}
	for (size_t i = 0; i < b->n_imports; i++)
		assert_non_null(b->imports[i].dll);
	for (size_t i = 0; i < b->n_symbols; i++)
		assert_non_null(b->symbols[i].name);
	assert_true(strlen(b->imphash) == (b->n_imports ? 32u : 0u));
	assert_true(!b->n_reloc_targets || b->reloc_targets);
	for (size_t i = 0; i < b->n_reloc_targets; i++) {
		const uint8_t *p;
		size_t len;
		if (i > 0)
			assert_true(b->reloc_targets[i - 1] < b->reloc_targets[i]);
		bool in = false;
		for (size_t k = 0; k < b->n_code && !in; k++)
			in = b->reloc_targets[i] - b->code[k].va < b->code[k].size;
		assert_true(in);
		assert_int_equal(mamori_binary_va_bytes(b, b->reloc_targets[i], &p, &len), MAMORI_OK);
	}
	if (!with_json)
		return;
	json_t *j = mamori_binary_to_json(b);
	assert_non_null(j);
	assert_int_equal(json_array_size(json_object_get(j, "sections")), b->n_sections);
	assert_int_equal(json_integer_value(json_object_get(j, "reloc_targets_in_code")), b->n_reloc_targets);
	json_decref(j);
}

static void check_consistent(const mamori_binary *b)
{
	check_consistent_json(b, true);
}

static mamori_binary *parse_ok(const fixture *f)
{
	mamori_binary *b = NULL;
	int err = mamori_binary_parse(&b, f->data, f->size, NULL);
	if (err != MAMORI_OK)
		fail_msg("parse failed: %s: %s", mamori_strerror(err), mamori_error_detail());
	assert_non_null(b);
	check_consistent(b);
	return b;
}

/* Parse a mutated copy; expect `want` (or any error when want == 1). */
static void expect_error(const uint8_t *data, size_t len, int want)
{
	mamori_binary *b = NULL;
	uint8_t *c = copy_of(data, len);
	mamori_error_clear();
	int err = mamori_binary_parse(&b, c, len, NULL);
	if (err == MAMORI_OK)
		fail_msg("expected an error, parse succeeded (len %zu)", len);
	assert_null(b);
	assert_true(strlen(mamori_error_detail()) > 0);
	if (want != 1 && err != want)
		fail_msg("expected %s, got %s: %s", mamori_strerror(want), mamori_strerror(err),
			 mamori_error_detail());
	free(c);
}

/* ------------------------------------------------------------------ */
/* Fixtures                                                             */
/* ------------------------------------------------------------------ */

static void test_pe64_exe(void **state)
{
	(void)state;
	fixture f = load("pe64.exe");
	mamori_binary *b = parse_ok(&f);
	assert_int_equal(b->format, MAMORI_FMT_PE32PLUS);
	assert_int_equal(b->arch, MAMORI_ARCH_X86_64);
	assert_string_equal(mamori_format_name(b->format), "pe32+");
	assert_string_equal(mamori_arch_name(b->arch), "x86_64");
	assert_int_equal(b->image_base, 0x140000000ull);
	assert_true(b->has_entry);
	assert_int_equal(b->entry, 0x1400014d0ull);
	assert_false(b->is_dll);
	assert_int_equal(b->n_sections, 19);
	assert_string_equal(b->sections[0].name, ".text");
	assert_int_equal(b->sections[0].va, 0x140001000ull);
	assert_int_equal(b->sections[0].vsize, 0x6e28);
	assert_int_equal(b->sections[0].raw_off, 0x600);
	assert_int_equal(b->sections[0].flags, MAMORI_SEC_READ | MAMORI_SEC_EXEC);
	/* Long names come from the COFF string table ("/4" in the header). */
	assert_string_equal(b->sections[10].name, ".debug_aranges");
	assert_string_equal(b->sections[16].name, ".debug_line_str");
	const mamori_section *bss = find_section(b, ".bss");
	assert_non_null(bss);
	assert_int_equal(bss->raw_size, 0);
	assert_int_equal(bss->flags, MAMORI_SEC_READ | MAMORI_SEC_WRITE);
	assert_true(b->timestamp != 0);
	assert_int_equal(b->timestamp, rd32(f.data + rd32(f.data + 0x3c) + 8));

	assert_int_equal(b->n_imports, 49);
	assert_int_equal(count_imports_from(b, "KERNEL32.dll"), 14);
	assert_int_equal(count_imports_from(b, "msvcrt.dll"), 35);
	assert_string_equal(b->imports[0].name, "DeleteCriticalSection");
	assert_int_equal(b->imports[0].ordinal, 283);
	assert_int_equal(b->imports[0].thunk_va, 0x14000d1d8ull);
	assert_int_equal(b->imports[1].thunk_va, 0x14000d1e0ull);
	assert_string_equal(b->imports[14].dll, "msvcrt.dll");
	assert_string_equal(b->imports[14].name, "__C_specific_handler");
	assert_string_equal(b->imphash, "270326227205b0058b12d681b94bdc8f");
	assert_int_equal(b->n_exports, 0);

	const mamori_symbol *m = find_symbol(b, "main");
	assert_non_null(m);
	assert_int_equal(m->va, 0x140001600ull);
	assert_true(m->is_func);
	const mamori_symbol *cc = find_symbol(b, "classify_char");
	assert_non_null(cc);
	assert_int_equal(cc->va, 0x140001581ull);
	assert_true(cc->is_func);

	assert_int_equal(b->n_code, 1);
	assert_int_equal(b->code[0].va, 0x140001000ull);
	assert_int_equal(b->code[0].size, 0x6e28);
	assert_ptr_equal(b->code[0].bytes, f.data + 0x600);

	const uint8_t *p;
	size_t len;
	assert_int_equal(mamori_binary_va_bytes(b, b->entry, &p, &len), MAMORI_OK);
	assert_ptr_equal(p, f.data + 0x600 + 0x4d0);
	assert_int_equal(len, 0x6e28 - 0x4d0);
	assert_int_equal(mamori_binary_va_bytes(b, 0x140000000ull, &p, &len), MAMORI_OK); /* headers */
	assert_ptr_equal(p, f.data);
	assert_int_equal(mamori_binary_va_bytes(b, bss->va, &p, &len), MAMORI_ENOTFOUND);
	assert_int_equal(mamori_binary_va_bytes(b, 0x10, &p, &len), MAMORI_ENOTFOUND);
	assert_null(p);

	json_t *j = mamori_binary_to_json(b);
	assert_string_equal(json_string_value(json_object_get(j, "format")), "pe32+");
	assert_int_equal(json_integer_value(json_object_get(j, "entry")), 0x1400014d0ll);
	assert_string_equal(json_string_value(json_object_get(j, "imphash")),
			    "270326227205b0058b12d681b94bdc8f");
	assert_int_equal(json_array_size(json_object_get(j, "imports")), 49);
	json_decref(j);
	mamori_binary_free(b);
	free(f.data);
}

static void test_pe64_stripped(void **state)
{
	(void)state;
	fixture f = load("pe64-stripped.exe");
	mamori_binary *b = parse_ok(&f);
	assert_int_equal(b->format, MAMORI_FMT_PE32PLUS);
	assert_int_equal(b->n_sections, 10);
	assert_int_equal(b->n_symbols, 0);
	assert_int_equal(b->entry, 0x1400014d0ull);
	assert_int_equal(b->n_imports, 49);
	assert_string_equal(b->imphash, "270326227205b0058b12d681b94bdc8f");
	assert_int_equal(b->n_code, 1);
	mamori_binary_free(b);
	free(f.data);
}

static void test_pe32_exe(void **state)
{
	(void)state;
	fixture f = load("pe32.exe");
	mamori_binary *b = parse_ok(&f);
	assert_int_equal(b->format, MAMORI_FMT_PE32);
	assert_int_equal(b->arch, MAMORI_ARCH_X86);
	assert_string_equal(mamori_format_name(b->format), "pe32");
	assert_int_equal(b->image_base, 0x400000);
	assert_int_equal(b->entry, 0x4014b0);
	assert_int_equal(b->n_sections, 17);
	assert_int_equal(b->n_imports, 55);
	assert_true(count_imports_from(b, "KERNEL32.dll") > 0);
	assert_true(count_imports_from(b, "msvcrt.dll") > 0);
	assert_string_equal(b->imphash, "126e35d8433c496eacb359ebdc170bdf");
	assert_non_null(find_symbol(b, "_main"));
	assert_true(find_symbol(b, "_main")->is_func);
	assert_true(b->n_code >= 1);
	mamori_binary_free(b);
	free(f.data);
}

static void test_pe64_dll(void **state)
{
	(void)state;
	fixture f = load("pe64.dll");
	mamori_binary *b = parse_ok(&f);
	assert_int_equal(b->format, MAMORI_FMT_PE32PLUS);
	assert_true(b->is_dll);
	assert_int_equal(b->n_sections, 20);
	assert_int_equal(b->entry, 0x36e5c1320ull);
	assert_int_equal(b->n_exports, 2);
	assert_string_equal(b->exports[0].name, "fixture_export_add");
	assert_int_equal(b->exports[0].ordinal, 1);
	assert_int_equal(b->exports[0].va, b->image_base + 0x13ef);
	assert_null(b->exports[0].forwarder);
	assert_string_equal(b->exports[1].name, "fixture_export_checksum");
	assert_int_equal(b->exports[1].ordinal, 2);
	assert_int_equal(b->exports[1].va, b->image_base + 0x13f3);
	assert_int_equal(b->n_imports, 22);
	assert_string_equal(b->imphash, "df00652ad3e78ba777ba702462655cf8");
	/* DIR64 relocations of the CRT's pointer tables (objdump -p: .reloc),
	 * e.g. the TLS callback and the __xi_a initialiser in .rdata/.CRT. */
	assert_int_equal(b->n_reloc_targets, 9);
	assert_true(has_reloc_target(b, find_symbol(b, "pre_c_init")->va));
	assert_true(has_reloc_target(b, find_symbol(b, "__dyn_tls_init")->va));
	assert_false(has_reloc_target(b, b->exports[0].va));
	mamori_binary_free(b);
	free(f.data);
}

static void test_pe32_dll(void **state)
{
	(void)state;
	fixture f = load("pe32.dll");
	mamori_binary *b = parse_ok(&f);
	assert_int_equal(b->format, MAMORI_FMT_PE32);
	assert_true(b->is_dll);
	assert_int_equal(b->n_sections, 18);
	assert_int_equal(b->entry, 0x66441390);
	assert_int_equal(b->n_exports, 2);
	assert_string_equal(b->exports[0].name, "fixture_export_add");
	assert_int_equal(b->n_imports, 26);
	assert_string_equal(b->imphash, "9d1684f5e4e000def639ebe9a2345431");
	/* HIGHLOW relocations: CRT pointer tables and classify_char's jump
	 * table in .rdata, whose first case label is 0x664414c3. */
	assert_int_equal(b->n_reloc_targets, 15);
	assert_true(has_reloc_target(b, find_symbol(b, "_pre_c_init")->va));
	assert_true(has_reloc_target(b, 0x664414c3));
	const mamori_symbol *cc = find_symbol(b, "_classify_char");
	assert_non_null(cc);
	assert_true(0x664414c3 > cc->va && 0x664414c3 - cc->va < 0x100);
	mamori_binary_free(b);
	free(f.data);
}

static void test_elf64(void **state)
{
	(void)state;
	fixture f = load("elf64");
	mamori_binary *b = parse_ok(&f);
	assert_int_equal(b->format, MAMORI_FMT_ELF64);
	assert_int_equal(b->arch, MAMORI_ARCH_X86_64);
	assert_string_equal(mamori_format_name(b->format), "elf64");
	assert_int_equal(b->image_base, 0);
	assert_true(b->has_entry);
	assert_int_equal(b->entry, 0x1060);
	assert_false(b->is_dll); /* a PIE has PT_INTERP */
	assert_int_equal(b->n_sections, 30);
	assert_string_equal(b->sections[0].name, ".interp");
	const mamori_section *text = find_section(b, ".text");
	assert_non_null(text);
	assert_int_equal(text->va, 0x1060);
	assert_int_equal(text->vsize, 0x276);
	assert_int_equal(text->flags, MAMORI_SEC_READ | MAMORI_SEC_EXEC);
	assert_int_equal(find_section(b, ".bss")->raw_size, 0);
	assert_int_equal(b->n_imports, 0);
	assert_string_equal(b->imphash, "");
	const mamori_symbol *m = find_symbol(b, "main");
	assert_non_null(m);
	assert_int_equal(m->va, 0x11cc);
	assert_int_equal(m->size, 266);
	assert_true(m->is_func);
	assert_int_equal(find_symbol(b, "classify_char")->va, 0x1158);
	/* .init, .plt, .plt.got, .text, .fini */
	assert_int_equal(b->n_code, 5);
	assert_int_equal(b->code[0].va, 0x1000);
	assert_int_equal(b->code[3].va, 0x1060);
	assert_int_equal(b->code[3].size, 0x276);
	assert_ptr_equal(b->code[3].bytes, f.data + 0x1060);
	const uint8_t *p;
	size_t len;
	assert_int_equal(mamori_binary_va_bytes(b, 0x1060, &p, &len), MAMORI_OK);
	assert_ptr_equal(p, f.data + 0x1060);
	/* R_X86_64_RELATIVE in .rela.dyn: .init_array and .fini_array. */
	assert_int_equal(b->n_reloc_targets, 2);
	assert_true(has_reloc_target(b, find_symbol(b, "frame_dummy")->va));
	assert_true(has_reloc_target(b, find_symbol(b, "__do_global_dtors_aux")->va));
	mamori_binary_free(b);
	free(f.data);
}

static void test_elf64_stripped(void **state)
{
	(void)state;
	fixture f = load("elf64-stripped");
	mamori_binary *b = parse_ok(&f);
	assert_int_equal(b->format, MAMORI_FMT_ELF64);
	assert_int_equal(b->entry, 0x1060);
	assert_int_equal(b->n_sections, 28);
	assert_null(find_symbol(b, "main")); /* only .dynsym is left */
	assert_int_equal(b->n_code, 5);
	mamori_binary_free(b);
	free(f.data);
}

static void test_elf32(void **state)
{
	(void)state;
	fixture f = load("elf32");
	mamori_binary *b = parse_ok(&f);
	assert_int_equal(b->format, MAMORI_FMT_ELF32);
	assert_int_equal(b->arch, MAMORI_ARCH_X86);
	assert_string_equal(mamori_arch_name(b->arch), "x86");
	assert_int_equal(b->entry, 0x804902b);
	assert_int_equal(b->image_base, 0x8048000);
	assert_int_equal(b->n_sections, 7);
	const mamori_symbol *s = find_symbol(b, "_start");
	assert_non_null(s);
	assert_int_equal(s->va, 0x804902b);
	assert_int_equal(s->size, 28);
	assert_true(s->is_func);
	assert_true(find_symbol(b, "fib")->is_func);
	assert_false(find_symbol(b, "_end")->is_func);
	assert_int_equal(b->n_code, 1);
	assert_int_equal(b->code[0].va, 0x8049000);
	mamori_binary_free(b);
	free(f.data);
}

/* ------------------------------------------------------------------ */
/* Hostile inputs                                                       */
/* ------------------------------------------------------------------ */

static const char *const all_fixtures[] = { "pe32.exe", "pe64.exe", "pe64-stripped.exe", "pe32.dll",
					    "pe64.dll", "elf64",    "elf64-stripped",	 "elf32" };
#define N_FIXTURES (sizeof(all_fixtures) / sizeof(all_fixtures[0]))

/* Every strict prefix of a fixture is missing something it declares. */
static void test_truncations(void **state)
{
	(void)state;
	for (size_t k = 0; k < N_FIXTURES; k++) {
		fixture f = load(all_fixtures[k]);
		size_t step = f.size / 997 + 1;
		for (size_t len = 0; len < f.size; len += (len < 2048 ? 1 : step))
			expect_error(f.data, len, 1);
		expect_error(f.data, f.size - 1, 1);
		free(f.data);
	}
}

/* Flip bytes all over the headers and tables: an error or a consistent
 * parse, never a crash or an over-read. */
static void test_byte_flips(void **state)
{
	(void)state;
	static const uint8_t masks[] = { 0xff, 0x80, 0x01, 0x7f };
	size_t ok = 0, failed = 0;
	for (size_t k = 0; k < N_FIXTURES; k++) {
		fixture f = load(all_fixtures[k]);
		uint8_t *c = copy_of(f.data, f.size);
		size_t step = f.size / 1001 + 1;
		for (size_t pos = 0; pos < f.size; pos += (pos < 768 ? 1 : step)) {
			for (size_t m = 0; m < (pos < 768 ? sizeof(masks) : 2); m++) {
				mamori_binary *b = NULL;
				c[pos] ^= masks[m];
				int err = mamori_binary_parse(&b, c, f.size, NULL);
				if (err == MAMORI_OK) {
					check_consistent_json(b, ok % 64 == 0);
					ok++;
				} else {
					assert_null(b);
					assert_true(err == MAMORI_ETRUNC || err == MAMORI_EFORMAT ||
						    err == MAMORI_EUNSUPPORTED || err == MAMORI_ELIMIT);
					assert_true(strlen(mamori_error_detail()) > 0);
					failed++;
				}
				mamori_binary_free(b);
				c[pos] ^= masks[m];
			}
		}
		free(c);
		free(f.data);
	}
	/* Both outcomes must occur, or the flips did not reach anything. */
	assert_true(ok > 0);
	assert_true(failed > 0);
}

/* Byte offsets of a PE fixture's headers, found independently. */
typedef struct pe_layout {
	size_t coff, opt, sectab;
	uint16_t n_secs;
	bool plus;
} pe_layout;

static pe_layout pe_layout_of(const uint8_t *d)
{
	pe_layout l;
	l.coff = rd32(d + 0x3c) + 4;
	l.n_secs = rd16(d + l.coff + 2);
	l.opt = l.coff + 20;
	l.plus = rd16(d + l.opt) == 0x20b;
	l.sectab = l.opt + rd16(d + l.coff + 16);
	return l;
}

static void test_pe_corruptions(void **state)
{
	(void)state;
	fixture f = load("pe64.exe");
	pe_layout l = pe_layout_of(f.data);
	uint8_t *c = copy_of(f.data, f.size);
	size_t ndirs_off = l.opt + 108;

	expect_error(c, 1, MAMORI_ETRUNC);
	c[0] = 'X';
	expect_error(c, f.size, MAMORI_EUNSUPPORTED);
	memcpy(c, f.data, f.size);

	wr32(c + 0x3c, 0xfffffff0); /* e_lfanew past the end */
	expect_error(c, f.size, MAMORI_ETRUNC);
	memcpy(c, f.data, f.size);

	c[l.coff - 4] = 'X'; /* signature */
	expect_error(c, f.size, MAMORI_EFORMAT);
	memcpy(c, f.data, f.size);

	wr16(c + l.coff, 0x01c0); /* ARM */
	expect_error(c, f.size, MAMORI_EUNSUPPORTED);
	memcpy(c, f.data, f.size);

	wr16(c + l.coff + 2, 2000); /* NumberOfSections */
	expect_error(c, f.size, MAMORI_ELIMIT);
	memcpy(c, f.data, f.size);

	wr32(c + ndirs_off, 0x7fffffff); /* NumberOfRvaAndSizes */
	expect_error(c, f.size, MAMORI_EFORMAT);
	memcpy(c, f.data, f.size);

	wr16(c + l.opt, 0x10b); /* PE32 magic on amd64 */
	expect_error(c, f.size, MAMORI_EFORMAT);
	memcpy(c, f.data, f.size);

	wr32(c + l.opt + 32, 0x1001); /* SectionAlignment not a power of two */
	expect_error(c, f.size, MAMORI_EFORMAT);
	memcpy(c, f.data, f.size);

	/* Section 1 placed at section 0's RVA: the RVA ranges overlap. */
	wr32(c + l.sectab + 40 + 12, rd32(f.data + l.sectab + 12));
	expect_error(c, f.size, MAMORI_EFORMAT);
	memcpy(c, f.data, f.size);

	/* Section 1's raw data moved onto section 0's. */
	wr32(c + l.sectab + 40 + 20, rd32(f.data + l.sectab + 20));
	expect_error(c, f.size, MAMORI_EFORMAT);
	memcpy(c, f.data, f.size);

	/* Section 0's raw data moved into the headers. */
	wr32(c + l.sectab + 20, 0x200);
	expect_error(c, f.size, MAMORI_EFORMAT);
	memcpy(c, f.data, f.size);

	/* A gigantic SizeOfRawData. */
	wr32(c + l.sectab + 16, 0xfffff000);
	expect_error(c, f.size, MAMORI_ETRUNC);
	memcpy(c, f.data, f.size);

	/* Import directory pointing nowhere. */
	wr32(c + l.opt + 112 + 8, 0x7ff00000);
	expect_error(c, f.size, MAMORI_EFORMAT);
	memcpy(c, f.data, f.size);

	/* Entry point beyond SizeOfImage. */
	wr32(c + l.opt + 16, 0x7ffffff0);
	expect_error(c, f.size, MAMORI_EFORMAT);
	memcpy(c, f.data, f.size);

	/* A symbol table claiming 100 million entries. */
	wr32(c + l.coff + 12, 100000000);
	expect_error(c, f.size, MAMORI_ETRUNC);
	memcpy(c, f.data, f.size);

	/* Limits from the caller. */
	mamori_binary *b = NULL;
	mamori_binfmt_limits lim = { .max_imports = 10 };
	assert_int_equal(mamori_binary_parse(&b, c, f.size, &lim), MAMORI_ELIMIT);
	lim = (mamori_binfmt_limits){ .max_symbols = 5 };
	assert_int_equal(mamori_binary_parse(&b, c, f.size, &lim), MAMORI_ELIMIT);
	lim = (mamori_binfmt_limits){ .max_sections = 8 };
	assert_int_equal(mamori_binary_parse(&b, c, f.size, &lim), MAMORI_ELIMIT);
	lim = (mamori_binfmt_limits){ .max_name_len = 8 };
	assert_int_equal(mamori_binary_parse(&b, c, f.size, &lim), MAMORI_ELIMIT);
	assert_null(b);
	free(c);
	free(f.data);
}

/* Rewrite the first import thunk (ILT and IAT) to import ordinal 5: the
 * import shows no name and imphash uses "ord5". */
/* A base relocation block of a bad size is refused, not half-read. */
static void test_pe_reloc_corruptions(void **state)
{
	(void)state;
	fixture f = load("pe64.dll");
	pe_layout l = pe_layout_of(f.data);
	mamori_binary *b = parse_ok(&f);
	uint32_t rva = rd32(f.data + l.opt + 112 + 5 * 8);
	uint32_t size = rd32(f.data + l.opt + 112 + 5 * 8 + 4);
	size_t off = 0;
	assert_true(rva && size >= 8);
	for (size_t i = 0; i < b->n_sections; i++) {
		const mamori_section *s = &b->sections[i];
		if (b->image_base + rva >= s->va && b->image_base + rva - s->va < s->raw_size)
			off = (size_t)(s->raw_off + (b->image_base + rva - s->va));
	}
	mamori_binary_free(b);
	assert_true(off > 0 && off + 8 <= f.size);
	uint8_t *c = copy_of(f.data, f.size);

	wr32(c + off + 4, 7); /* shorter than its header */
	expect_error(c, f.size, MAMORI_EFORMAT);
	memcpy(c, f.data, f.size);

	wr32(c + off + 4, size + 2); /* longer than the directory */
	expect_error(c, f.size, MAMORI_EFORMAT);
	memcpy(c, f.data, f.size);

	wr32(c + off + 4, 9); /* odd */
	expect_error(c, f.size, MAMORI_EFORMAT);
	memcpy(c, f.data, f.size);

	/* A fixup of another type is ignored: one target fewer or the same. */
	wr16(c + off + 8, 0);
	b = NULL;
	assert_int_equal(mamori_binary_parse(&b, c, f.size, NULL), MAMORI_OK);
	check_consistent(b);
	assert_true(b->n_reloc_targets <= 9);
	mamori_binary_free(b);
	free(c);
	free(f.data);
}

static void test_pe_import_by_ordinal(void **state)
{
	(void)state;
	fixture f = load("pe64.exe");
	uint8_t *c = copy_of(f.data, f.size);
	/* From objdump -p: ILT of KERNEL32.dll at RVA 0xd040, IAT at 0xd1d8,
	 * .idata at RVA 0xd000, file offset 0x9200. */
	const size_t ilt = 0x9200 + 0x40, iat = 0x9200 + 0x1d8;
	const uint8_t ord[8] = { 5, 0, 0, 0, 0, 0, 0, 0x80 };
	memcpy(c + ilt, ord, 8);
	memcpy(c + iat, ord, 8);
	mamori_binary *b = NULL;
	mamori_binary *orig = NULL;
	assert_int_equal(mamori_binary_parse(&b, c, f.size, NULL), MAMORI_OK);
	assert_int_equal(mamori_binary_parse(&orig, f.data, f.size, NULL), MAMORI_OK);
	assert_null(b->imports[0].name);
	assert_int_equal(b->imports[0].ordinal, 5);
	assert_string_equal(b->imports[0].dll, "KERNEL32.dll");

	/* The imphash string, built here from the original names. */
	char *s = NULL;
	size_t len = 0;
	FILE *mf = open_memstream(&s, &len);
	assert_non_null(mf);
	for (size_t i = 0; i < orig->n_imports; i++) {
		const char *dll = i < 14 ? "kernel32" : "msvcrt";
		fprintf(mf, "%s%s.", i ? "," : "", dll);
		if (i == 0) {
			fputs("ord5", mf);
		} else {
			for (const char *p = orig->imports[i].name; *p; p++)
				fputc((*p >= 'A' && *p <= 'Z') ? *p - 'A' + 'a' : *p, mf);
		}
	}
	fclose(mf);
	char want[33];
	mamori_md5_hex(want, s, len);
	assert_string_equal(b->imphash, want);
	free(s);

	/* Junk in the reserved bits of an ordinal thunk is refused. */
	c[ilt + 4] = 1;
	expect_error(c, f.size, MAMORI_EFORMAT);
	mamori_binary_free(b);
	mamori_binary_free(orig);
	free(c);
	free(f.data);
}

static void test_elf_corruptions(void **state)
{
	(void)state;
	fixture f = load("elf64");
	uint8_t *c = copy_of(f.data, f.size);
	uint64_t shoff = rd32(f.data + 0x28); /* fits 32 bits in the fixture */
	uint64_t phoff = rd32(f.data + 0x20);

	c[5] = 2; /* big-endian */
	expect_error(c, f.size, MAMORI_EUNSUPPORTED);
	memcpy(c, f.data, f.size);

	c[4] = 7; /* class */
	expect_error(c, f.size, MAMORI_EFORMAT);
	memcpy(c, f.data, f.size);

	wr16(c + 18, 40); /* EM_ARM */
	expect_error(c, f.size, MAMORI_EUNSUPPORTED);
	memcpy(c, f.data, f.size);

	wr16(c + 16, 1); /* ET_REL */
	expect_error(c, f.size, MAMORI_EUNSUPPORTED);
	memcpy(c, f.data, f.size);

	wr16(c + 56, 0xffff); /* e_phnum */
	expect_error(c, f.size, MAMORI_ELIMIT);
	memcpy(c, f.data, f.size);

	wr16(c + 60, 1000); /* e_shnum: the table runs off the end */
	expect_error(c, f.size, MAMORI_ETRUNC);
	memcpy(c, f.data, f.size);

	wr16(c + 54, 57); /* e_phentsize */
	expect_error(c, f.size, MAMORI_EFORMAT);
	memcpy(c, f.data, f.size);

	/* .rela.dyn with a bad entry size. */
	bool rela_seen = false;
	for (uint16_t i = 1; i < rd16(f.data + 60); i++) {
		uint8_t *sh = c + shoff + (size_t)i * 64;
		if (rd32(sh + 4) == 4 /* SHT_RELA */ && (sh[8] & 2) /* SHF_ALLOC */) {
			wr32(sh + 56, 23);
			rela_seen = true;
			break;
		}
	}
	assert_true(rela_seen);
	expect_error(c, f.size, MAMORI_EFORMAT);
	memcpy(c, f.data, f.size);

	wr32(c + 0x18, 0x7fff0000); /* entry outside every PT_LOAD */
	expect_error(c, f.size, MAMORI_EFORMAT);
	memcpy(c, f.data, f.size);

	/* Find the .text section header (addr 0x1060) and corrupt it. */
	size_t text = 0;
	for (size_t i = 1; i < rd16(f.data + 60); i++) {
		size_t h = (size_t)shoff + i * 64;
		if (rd32(f.data + h + 16) == 0x1060 && rd32(f.data + h + 4) == 1)
			text = h;
	}
	assert_true(text != 0);
	wr32(c + text + 24, 0x7fffff00); /* sh_offset past the end */
	expect_error(c, f.size, MAMORI_ETRUNC);
	memcpy(c, f.data, f.size);
	wr32(c + text + 24, 0x1000); /* file offset disagrees with the segment */
	expect_error(c, f.size, MAMORI_EFORMAT);
	memcpy(c, f.data, f.size);
	wr32(c + text + 16, 0x1000); /* overlaps .init in memory */
	wr32(c + text + 24, 0x1000);
	expect_error(c, f.size, MAMORI_EFORMAT);
	memcpy(c, f.data, f.size);

	/* Two PT_LOADs at the same address. */
	size_t first_load = 0, second_load = 0;
	for (size_t i = 0; i < rd16(f.data + 56); i++) {
		size_t h = (size_t)phoff + i * 56;
		if (rd32(f.data + h) == 1) {
			if (!first_load)
				first_load = h;
			else if (!second_load)
				second_load = h;
		}
	}
	assert_true(first_load && second_load);
	memcpy(c + second_load + 16, f.data + first_load + 16, 8);
	expect_error(c, f.size, MAMORI_EFORMAT);
	memcpy(c, f.data, f.size);
	/* PT_LOAD with a file size bigger than the file. */
	wr32(c + first_load + 32, 0x7fffffff);
	expect_error(c, f.size, MAMORI_ETRUNC);
	memcpy(c, f.data, f.size);

	mamori_binary *b = NULL;
	mamori_binfmt_limits lim = { .max_symbols = 3 };
	assert_int_equal(mamori_binary_parse(&b, c, f.size, &lim), MAMORI_ELIMIT);
	assert_null(b);
	free(c);
	free(f.data);
}

static void test_not_a_binary(void **state)
{
	(void)state;
	static const uint8_t text[] = "#!/bin/sh\necho hello\n";
	mamori_binary *b = (mamori_binary *)1;
	assert_int_equal(mamori_binary_parse(&b, text, sizeof(text), NULL), MAMORI_EUNSUPPORTED);
	assert_null(b);
	assert_int_equal(mamori_binary_parse(&b, NULL, 0, NULL), MAMORI_ETRUNC);
	mamori_binary_free(NULL);
	assert_string_equal(mamori_format_name((mamori_format)99), "?");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pe64_exe),
		cmocka_unit_test(test_pe64_stripped),
		cmocka_unit_test(test_pe32_exe),
		cmocka_unit_test(test_pe64_dll),
		cmocka_unit_test(test_pe32_dll),
		cmocka_unit_test(test_elf64),
		cmocka_unit_test(test_elf64_stripped),
		cmocka_unit_test(test_elf32),
		cmocka_unit_test(test_truncations),
		cmocka_unit_test(test_byte_flips),
		cmocka_unit_test(test_pe_corruptions),
		cmocka_unit_test(test_pe_import_by_ordinal),
		cmocka_unit_test(test_elf_corruptions),
		cmocka_unit_test(test_not_a_binary),
		cmocka_unit_test(test_pe_reloc_corruptions),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
