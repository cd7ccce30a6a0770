/*
 * Tests of the test packers (suite 'packers'). For pe32.exe and pe64.exe and
 * two keys: the packed file parses, its entry lies in the new section, the
 * code bytes differ and decrypt back with the key stream, other bytes are
 * unchanged, and two keys give different stubs. When Unicorn is available
 * (HAVE_UNICORN), the stub itself is emulated from the entry point until it
 * reaches the OEP, and the decrypted memory is compared with the original;
 * the program itself is never run here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* cmocka needs the headers above first. */
#include <cmocka.h>

#ifdef HAVE_UNICORN
#include <unicorn/unicorn.h>
#endif

#include "fixture.h"
#include "mamori/base.h"
#include "mamori/binfmt.h"
#include "testpack.h"

static const mamori_section *find_section(const mamori_binary *b, const char *name)
{
	for (size_t i = 0; i < b->n_sections; i++)
		if (strcmp(b->sections[i].name, name) == 0)
			return &b->sections[i];
	return NULL;
}

#ifdef HAVE_UNICORN
/* Map the packed image's code section and stub, run from the entry point
 * until the OEP, and return the decrypted code bytes (caller frees). */
static uint8_t *emulate_stub(const uint8_t *img, const mamori_binary *b, const mamori_testpack_info *info)
{
	bool is64 = b->format == MAMORI_FMT_PE32PLUS;
	uc_engine *uc = NULL;
	uint64_t base = b->image_base;
	uint64_t stack = is64 ? 0x7ff00000ull : 0x00100000ull;
	uint64_t lo = base + (info->text_rva & ~0xfffu);
	uint64_t hi = (base + info->stub_rva + info->stub_size + 0xfff) & ~0xfffull;

	assert_int_equal(uc_open(UC_ARCH_X86, is64 ? UC_MODE_64 : UC_MODE_32, &uc), UC_ERR_OK);
	assert_int_equal(uc_mem_map(uc, lo, hi - lo, UC_PROT_ALL), UC_ERR_OK);
	assert_int_equal(uc_mem_map(uc, stack, 0x10000, UC_PROT_READ | UC_PROT_WRITE), UC_ERR_OK);
	assert_int_equal(uc_mem_write(uc, base + info->text_rva, img + info->text_off, info->text_size),
			 UC_ERR_OK);
	assert_int_equal(uc_mem_write(uc, base + info->stub_rva, img + info->stub_off, info->stub_size),
			 UC_ERR_OK);
	uint64_t sp = stack + 0x8000;
	assert_int_equal(uc_reg_write(uc, is64 ? UC_X86_REG_RSP : UC_X86_REG_ESP, &sp), UC_ERR_OK);
	/* Bounded: one loop turn is seven instructions per byte. */
	uc_err err = uc_emu_start(uc, base + info->stub_rva, base + info->oep_rva, 0,
				  (size_t)info->text_size * 8 + 64);
	assert_int_equal(err, UC_ERR_OK);
	uint64_t pc = 0;
	assert_int_equal(uc_reg_read(uc, is64 ? UC_X86_REG_RIP : UC_X86_REG_EIP, &pc), UC_ERR_OK);
	assert_int_equal(pc, base + info->oep_rva);
	uint64_t sp_after = 0;
	assert_int_equal(uc_reg_read(uc, is64 ? UC_X86_REG_RSP : UC_X86_REG_ESP, &sp_after), UC_ERR_OK);
	assert_int_equal(sp_after, sp); /* registers and stack restored */
	uint8_t *mem = malloc(info->text_size);
	assert_non_null(mem);
	assert_int_equal(uc_mem_read(uc, base + info->text_rva, mem, info->text_size), UC_ERR_OK);
	uc_close(uc);
	return mem;
}
#endif

static void check_pack(const char *name, mamori_format fmt)
{
	fixture f = load(name);
	static const uint32_t keys[] = { 0x1234u, 0xdeadbeefu };
	uint8_t *stubs[2] = { NULL, NULL };
	uint32_t stub_sizes[2] = { 0, 0 };
	uint8_t *outs[2] = { NULL, NULL };
	size_t out_lens[2] = { 0, 0 };

	for (int ki = 0; ki < 2; ki++) {
		uint8_t *o = NULL;
		size_t olen = 0;
		mamori_testpack_info info;
		assert_int_equal(mamori_testpack_xor(&o, &olen, &info, f.data, f.size, keys[ki]), MAMORI_OK);
		assert_true(olen > f.size);

		mamori_binary *b = NULL;
		assert_int_equal(mamori_binary_parse(&b, o, olen, NULL), MAMORI_OK);
		assert_int_equal(b->format, fmt);
		const mamori_section *mpk = find_section(b, MAMORI_TESTPACK_XOR_SECTION);
		assert_non_null(mpk);
		assert_true(mpk->flags & MAMORI_SEC_EXEC);
		assert_true(b->has_entry);
		assert_true(b->entry >= mpk->va && b->entry < mpk->va + mpk->vsize);
		assert_int_equal(b->entry, b->image_base + info.stub_rva);
		const mamori_section *text = find_section(b, ".text");
		assert_non_null(text);
		assert_int_equal(text->va, b->image_base + info.text_rva);
		assert_true(text->flags & MAMORI_SEC_WRITE);

		/* Code differs, and the key stream gives it back. */
		assert_memory_not_equal(o + info.text_off, f.data + info.text_off, info.text_size);
		uint8_t *dec = malloc(info.text_size);
		assert_non_null(dec);
		uint32_t k = keys[ki];
		for (uint32_t i = 0; i < info.text_size; i++)
			dec[i] = o[info.text_off + i] ^ mamori_testpack_key_next(&k);
		assert_memory_equal(dec, f.data + info.text_off, info.text_size);
		free(dec);
		/* Bytes after .text are unchanged but the TLS callback pointer, which now
		 * points at an empty list inside the new section. */
		size_t after = info.text_off + info.text_size;
		uint8_t *rest = malloc(f.size - after);
		assert_non_null(rest);
		memcpy(rest, o + after, f.size - after);
		if (info.tls_neutralised) {
			size_t w = fmt == MAMORI_FMT_PE32PLUS ? 8 : 4;
			assert_true(info.tls_cb_off >= after && info.tls_cb_off + w <= f.size);
			uint64_t cb = 0;
			for (size_t i = 0; i < w; i++)
				cb |= (uint64_t)o[info.tls_cb_off + i] << (8 * i);
			assert_true(cb >= mpk->va + info.stub_size && cb + w <= mpk->va + mpk->vsize);
			for (size_t i = 0; i < w; i++)
				assert_int_equal(o[(cb - b->image_base - info.stub_rva) + info.stub_off + i],
						 0);
			memcpy(rest + (info.tls_cb_off - after), f.data + info.tls_cb_off, w);
		}
		assert_memory_equal(rest, f.data + after, f.size - after);
		free(rest);
#ifdef HAVE_UNICORN
		uint8_t *mem = emulate_stub(o, b, &info);
		assert_memory_equal(mem, f.data + info.text_off, info.text_size);
		free(mem);
#endif
		stubs[ki] = malloc(info.stub_size);
		assert_non_null(stubs[ki]);
		memcpy(stubs[ki], o + info.stub_off, info.stub_size);
		stub_sizes[ki] = info.stub_size;
		outs[ki] = o;
		out_lens[ki] = olen;
		mamori_binary_free(b);
	}
	assert_true(out_lens[0] != out_lens[1] || memcmp(outs[0], outs[1], out_lens[0]) != 0);
	assert_true(stub_sizes[0] != stub_sizes[1] || memcmp(stubs[0], stubs[1], stub_sizes[0]) != 0);
	for (int ki = 0; ki < 2; ki++) {
		free(stubs[ki]);
		free(outs[ki]);
	}
	free(f.data);
}

static void test_xor_pe32(void **state)
{
	(void)state;
	check_pack("pe32.exe", MAMORI_FMT_PE32);
}

static void test_xor_pe64(void **state)
{
	(void)state;
	check_pack("pe64.exe", MAMORI_FMT_PE32PLUS);
}

/* Stubs differ across many keys (register and junk choice), not just in the
 * key immediate: compare them with the key bytes masked out. */
static void test_xor_stub_variants(void **state)
{
	(void)state;
	fixture f = load("pe64.exe");
	int distinct_sizes = 0;
	uint32_t seen = 0;
	for (uint32_t key = 1; key < 40; key++) {
		uint8_t *o = NULL;
		size_t olen = 0;
		mamori_testpack_info info;
		assert_int_equal(mamori_testpack_xor(&o, &olen, &info, f.data, f.size, key), MAMORI_OK);
		assert_true(info.stub_size < 64);
		if (!(seen & (1u << info.stub_size % 32))) {
			seen |= 1u << info.stub_size % 32;
			distinct_sizes++;
		}
		free(o);
	}
	assert_true(distinct_sizes >= 3);
	free(f.data);
}

static void test_xor_refuses(void **state)
{
	(void)state;
	uint8_t *o = NULL;
	size_t olen = 0;
	fixture elf = load("elf64");
	assert_int_equal(mamori_testpack_xor(&o, &olen, NULL, elf.data, elf.size, 1), MAMORI_EUNSUPPORTED);
	assert_null(o);
	assert_non_null(strstr(mamori_error_detail(), "not PE"));
	fixture dll = load("pe64.dll");
	assert_int_equal(mamori_testpack_xor(&o, &olen, NULL, dll.data, dll.size, 1), MAMORI_EUNSUPPORTED);
	assert_null(o);
	/* No room for another section header: pretend the headers end at the table's end. */
	fixture exe = load("pe32.exe");
	uint32_t pe = (uint32_t)exe.data[0x3c] | (uint32_t)exe.data[0x3d] << 8;
	uint16_t nsec = (uint16_t)(exe.data[pe + 6] | exe.data[pe + 7] << 8);
	uint16_t optsz = (uint16_t)(exe.data[pe + 20] | exe.data[pe + 21] << 8);
	uint32_t end = pe + 24 + optsz + nsec * 40u;
	uint8_t *h = exe.data + pe + 24 + 60; /* SizeOfHeaders */
	h[0] = (uint8_t)end;
	h[1] = (uint8_t)(end >> 8);
	h[2] = h[3] = 0;
	assert_int_equal(mamori_testpack_xor(&o, &olen, NULL, exe.data, exe.size, 1), MAMORI_EUNSUPPORTED);
	assert_non_null(strstr(mamori_error_detail(), "no room"));
	assert_null(o);
	free(elf.data);
	free(dll.data);
	free(exe.data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_xor_pe32),
		cmocka_unit_test(test_xor_pe64),
		cmocka_unit_test(test_xor_stub_variants),
		cmocka_unit_test(test_xor_refuses),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
