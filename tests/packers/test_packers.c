/*
 * Tests of the test packers (suite 'packers').
 *  - xor: for pe32.exe and pe64.exe and two keys, the packed file parses, its
 *    entry lies in the new section, the code bytes differ and decrypt back
 *    with the key stream, other bytes are unchanged, and two keys give
 *    different stubs. When Unicorn is available (HAVE_UNICORN), the stub
 *    itself is emulated from the entry point until it reaches the OEP.
 *  - lz, antiemu, nested (xor and lz outside): per arch and several keys,
 *    the output parses, its entry is the stub's, keys give different files,
 *    and the payload decodes back to the original's memory image.
 *  - The LZSS coder round-trips and refuses corrupt streams; bad inputs
 *    are refused with a message.
 *  - Every technique's 64-bit packed fixture runs under wine64 (our own
 *    programs only; WINEDEBUG=-all, a private prefix, see wine_prefix()) with
 *    the original's stdout and exit code. A missing wine64 fails the test.
 *    The 32-bit ones are run in mamori's emulator by test_oep.c.
 */
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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

/* ------------------------------------------------ lz, antiemu, nested */

typedef enum technique { T_XOR, T_LZ, T_ANTIEMU, T_NESTED_XOR, T_NESTED_LZ, T_NESTED3 } technique;

static const char *technique_name(technique t)
{
	static const char *const names[] = { "xor",	      "lz",
					     "antiemu",	      "nested(lz,xor)",
					     "nested(lz,lz)", "nested(lz,lz,xor)" };
	return names[t];
}

/* Pack with technique `t`; info may be NULL for xor. */
static int pack(technique t, uint8_t **out, size_t *out_len, mamori_testpack_image_info *info,
		const fixture *f, uint32_t key)
{
	mamori_testpack_opts opt = { .sleep_ms = 25 };
	mamori_testpack_info xi;

	switch (t) {
	case T_XOR: return mamori_testpack_xor(out, out_len, &xi, f->data, f->size, key);
	case T_LZ: return mamori_testpack_lz(out, out_len, info, f->data, f->size, key, &opt);
	case T_ANTIEMU: return mamori_testpack_antiemu(out, out_len, info, f->data, f->size, key, &opt);
	case T_NESTED_XOR:
		opt.outer = MAMORI_TESTPACK_OUTER_XOR;
		return mamori_testpack_nested(out, out_len, info, f->data, f->size, key, &opt);
	case T_NESTED_LZ:
		opt.outer = MAMORI_TESTPACK_OUTER_LZ;
		return mamori_testpack_nested(out, out_len, info, f->data, f->size, key, &opt);
	case T_NESTED3:
		opt.outer = MAMORI_TESTPACK_OUTER_XOR;
		opt.layers = 3;
		return mamori_testpack_nested(out, out_len, info, f->data, f->size, key, &opt);
	}
	return MAMORI_EINVAL;
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The payload of a one-layer lz/antiemu file decodes to the original's
 * image: its headers and every section's file bytes at their RVAs. */
static void check_payload(const uint8_t *o, size_t olen, const mamori_testpack_image_info *info,
			  const fixture *f, uint32_t key)
{
	mamori_binary *orig = NULL;
	assert_true((size_t)info->payload_off + info->payload_size <= olen);
	uint8_t *img = calloc(1, info->orig_image_size);
	assert_non_null(img);
	/* The decoder stops at the last non-zero byte: decode into a prefix. */
	size_t n = info->orig_image_size;
	while (n > 0 &&
	       mamori_testpack_lz_decode(img, n, o + info->payload_off, info->payload_size, key) != MAMORI_OK)
		n = n > 4096 ? n - 4096 : 0;
	assert_true(n > 0);
	assert_int_equal(mamori_binary_parse(&orig, f->data, f->size, NULL), MAMORI_OK);
	uint32_t pe = le32(f->data + 0x3c);
	uint32_t hdr = le32(f->data + pe + 24 + 60);
	assert_memory_equal(img, f->data, hdr);
	for (size_t i = 0; i < orig->n_sections; i++) {
		const mamori_section *s = &orig->sections[i];
		uint64_t rva = s->va - orig->image_base;
		uint64_t len = s->raw_size < s->vsize || !s->vsize ? s->raw_size : s->vsize;
		if (rva + len > n)
			len = rva < n ? n - rva : 0;
		assert_memory_equal(img + rva, f->data + s->raw_off, len);
	}
	mamori_binary_free(orig);
	free(img);
}

static void check_image_packer(technique t, const char *name, mamori_format fmt)
{
	fixture f = load(name);
	static const uint32_t keys[] = { 1u, 0xdeadbeefu, 0x13572468u };
	uint8_t *outs[3] = { NULL, NULL, NULL };
	size_t lens[3] = { 0, 0, 0 };

	for (int ki = 0; ki < 3; ki++) {
		mamori_testpack_image_info info;
		assert_int_equal(pack(t, &outs[ki], &lens[ki], &info, &f, keys[ki]), MAMORI_OK);
		mamori_binary *b = NULL;
		assert_int_equal(mamori_binary_parse(&b, outs[ki], lens[ki], NULL), MAMORI_OK);
		assert_int_equal(b->format, fmt);
		assert_true(b->has_entry && !b->is_dll);
		assert_int_equal(b->entry, b->image_base + info.stub_entry_rva);
		assert_int_equal(info.oep_rva, le32(f.data + le32(f.data + 0x3c) + 24 + 16));
		assert_true(info.orig_relocs); /* mingw programs carry .reloc */
		if (t == T_LZ || t == T_ANTIEMU) {
			assert_int_equal(info.layers, 1);
			check_payload(outs[ki], lens[ki], &info, &f, keys[ki]);
			/* The original's code is not visible in the packed file. */
			assert_true(
				b->n_imports <=
				4); /* the lz stub: LoadLibraryA, GetProcAddress, VirtualAlloc, ExitProcess */
		} else if (t == T_NESTED_LZ || t == T_NESTED_XOR) {
			assert_int_equal(info.layers, 2);
			assert_string_equal(info.outer, t == T_NESTED_XOR ? "xor" : "lz");
		}
		mamori_binary_free(b);
	}
	for (int i = 0; i < 3; i++)
		for (int j = i + 1; j < 3; j++)
			assert_true(lens[i] != lens[j] || memcmp(outs[i], outs[j], lens[i]) != 0);
	for (int i = 0; i < 3; i++)
		free(outs[i]);
	free(f.data);
}

static void test_lz(void **state)
{
	(void)state;
	check_image_packer(T_LZ, "pe32.exe", MAMORI_FMT_PE32);
	check_image_packer(T_LZ, "pe64.exe", MAMORI_FMT_PE32PLUS);
	check_image_packer(T_LZ, "pe64-stripped.exe", MAMORI_FMT_PE32PLUS);
}

static void test_antiemu(void **state)
{
	(void)state;
	check_image_packer(T_ANTIEMU, "pe32.exe", MAMORI_FMT_PE32);
	check_image_packer(T_ANTIEMU, "pe64.exe", MAMORI_FMT_PE32PLUS);
}

static void test_nested(void **state)
{
	(void)state;
	for (technique t = T_NESTED_XOR; t <= T_NESTED3; t++) {
		check_image_packer(t, "pe32.exe", MAMORI_FMT_PE32);
		check_image_packer(t, "pe64.exe", MAMORI_FMT_PE32PLUS);
	}
}

/* The antiemu stub has no import table at all: its APIs come by hash. */
static void test_antiemu_no_imports(void **state)
{
	(void)state;
	fixture f = load("pe64.exe");
	uint8_t *o = NULL;
	size_t olen = 0;
	mamori_testpack_image_info info;
	assert_int_equal(mamori_testpack_antiemu(&o, &olen, &info, f.data, f.size, 99, NULL), MAMORI_OK);
	mamori_binary *b = NULL;
	assert_int_equal(mamori_binary_parse(&b, o, olen, NULL), MAMORI_OK);
	assert_int_equal(b->n_imports, 0);
	mamori_binary_free(b);
	free(o);
	free(f.data);
}

static void test_lz_roundtrip(void **state)
{
	(void)state;
	enum { N = 200000 };
	uint8_t *in = malloc(N), *back = malloc(N);
	assert_non_null(in);
	assert_non_null(back);
	uint32_t r = 12345;
	for (int kind = 0; kind < 4; kind++) {
		for (size_t i = 0; i < N; i++) {
			r = r * 1103515245u + 12345u;
			in[i] = kind == 0   ? (uint8_t)(r >> 16)	/* noise */
				: kind == 1 ? 0				/* zeros */
				: kind == 2 ? (uint8_t)("abcab"[i % 5]) /* short period */
					    : (uint8_t)(i % 70000 < 300 ? r >> 16
									: in[i % 70000]); /* far copies */
		}
		for (size_t n = 0; n <= N; n = n ? n * 7 : 1) {
			uint8_t *enc = NULL;
			size_t enc_len = 0;
			assert_int_equal(mamori_testpack_lz_encode(&enc, &enc_len, in, n, 0xabcdef01u),
					 MAMORI_OK);
			assert_true(enc_len <= n + n / 8 + 16);
			if (kind == 1 && n > 1000)
				assert_true(enc_len < n / 50);
			assert_int_equal(mamori_testpack_lz_decode(back, n, enc, enc_len, 0xabcdef01u),
					 MAMORI_OK);
			assert_memory_equal(back, in, n);
			if (n > 16) {
				/* Wrong key, truncation: refused, never an overrun. */
				assert_int_not_equal(
					mamori_testpack_lz_decode(back, n, enc, enc_len / 2, 0xabcdef01u),
					MAMORI_OK);
				(void)mamori_testpack_lz_decode(back, n, enc, enc_len, 0x1u);
			}
			free(enc);
		}
	}
	free(in);
	free(back);
}

static void test_image_refuses(void **state)
{
	(void)state;
	uint8_t *o = NULL;
	size_t olen = 0;
	fixture elf = load("elf64");
	fixture dll = load("pe32.dll");
	fixture exe = load("pe64.exe");
	assert_int_equal(mamori_testpack_lz(&o, &olen, NULL, elf.data, elf.size, 1, NULL),
			 MAMORI_EUNSUPPORTED);
	assert_non_null(strstr(mamori_error_detail(), "not PE"));
	assert_int_equal(mamori_testpack_antiemu(&o, &olen, NULL, dll.data, dll.size, 1, NULL),
			 MAMORI_EUNSUPPORTED);
	assert_non_null(strstr(mamori_error_detail(), "executables"));
	assert_int_equal(mamori_testpack_nested(&o, &olen, NULL, elf.data, elf.size, 1, NULL),
			 MAMORI_EUNSUPPORTED);
	mamori_testpack_opts opt = { .layers = 1 };
	assert_int_equal(mamori_testpack_nested(&o, &olen, NULL, exe.data, exe.size, 1, &opt), MAMORI_EINVAL);
	opt.layers = 9;
	assert_int_equal(mamori_testpack_nested(&o, &olen, NULL, exe.data, exe.size, 1, &opt), MAMORI_EINVAL);
	assert_non_null(strstr(mamori_error_detail(), "layers"));
	mamori_testpack_opts nostub = { .stub_dir = "/nonexistent/mamori-stubs" };
	assert_int_not_equal(mamori_testpack_lz(&o, &olen, NULL, exe.data, exe.size, 1, &nostub), MAMORI_OK);
	assert_non_null(strstr(mamori_error_detail(), "stub"));
	/* A truncated input is refused by the parser. */
	assert_int_not_equal(mamori_testpack_lz(&o, &olen, NULL, exe.data, 200, 1, NULL), MAMORI_OK);
	assert_null(o);
	free(elf.data);
	free(dll.data);
	free(exe.data);
}

/* ------------------------------------------------------------- wine64 */

static const char *wine64_path(void)
{
	static const char *const cands[] = { "/usr/lib/wine/wine64", "/usr/bin/wine64",
					     "/usr/local/bin/wine64" };
	for (size_t i = 0; i < sizeof(cands) / sizeof(*cands); i++)
		if (access(cands[i], X_OK) == 0)
			return cands[i];
	return NULL;
}

/* Run `wine64 prog.exe ARGS` in `dir` with a private prefix; capture stdout
 * (at most cap - 1 bytes) and return the exit status (-1 on timeout). */
static int run_wine(const char *wine, const char *dir, const char *prefix, char *outbuf, size_t cap)
{
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		dup2(fds[1], 1);
		int devnull = open("/dev/null", O_RDWR);
		if (devnull >= 0) {
			dup2(devnull, 0);
			dup2(devnull, 2);
		}
		if (chdir(dir) != 0)
			_exit(126);
		setenv("WINEDEBUG", "-all", 1);
		setenv("WINEPREFIX", prefix, 1);
		setenv("WINEDLLOVERRIDES",
		       "mscoree,mshtml=", 1); /* no Mono/Gecko prompts in a fresh prefix */
		unsetenv("DISPLAY");
		execl(wine, wine, "prog.exe", "abc", "defg", (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	size_t n = 0;
	time_t start = time(NULL);
	for (;;) {
		struct pollfd p = { .fd = fds[0], .events = POLLIN };
		int pr = poll(&p, 1, 1000);
		if (pr > 0) {
			char tmp[512];
			ssize_t r = read(fds[0], tmp, sizeof(tmp));
			if (r <= 0)
				break;
			size_t take = (size_t)r < cap - 1 - n ? (size_t)r : cap - 1 - n;
			memcpy(outbuf + n, tmp, take);
			n += take;
		}
		if (time(NULL) - start > 120) {
			kill(pid, SIGKILL);
			break;
		}
	}
	outbuf[n] = 0;
	close(fds[0]);
	int st = 0;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/*
 * The Wine prefix: $MAMORI_WINEPREFIX, else one per user in $TMPDIR shared by
 * all build trees (a prefix takes about 700 MB and 7 s to create), else one
 * in the build tree when that directory is not ours.
 */
static void wine_prefix(char *out, size_t cap, const char *build_tmp)
{
	const char *env = getenv("MAMORI_WINEPREFIX");
	const char *tmpdir = getenv("TMPDIR");
	struct stat st;

	if (env && *env) {
		snprintf(out, cap, "%s", env);
		return;
	}
	snprintf(out, cap, "%s/mamori-wine64-%u", tmpdir && *tmpdir ? tmpdir : "/tmp", (unsigned)geteuid());
	mkdir(out, 0700);
	if (lstat(out, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == geteuid())
		return;
	snprintf(out, cap, "%s/wineprefix", build_tmp);
}

static void write_file(const char *path, const uint8_t *data, size_t n)
{
	assert_int_equal(mamori_file_write_atomic(path, data, n), MAMORI_OK);
	assert_int_equal(chmod(path, 0755), 0);
}

/* Every technique's packed pe64.exe prints what the original prints and
 * exits the same way under wine64. The program path (argv[0]) enters the
 * output, so each one runs as the same DIR/prog.exe. */
static void test_wine64_runs(void **state)
{
	(void)state;
	const char *wine = wine64_path();
	const char *tmp = getenv("MAMORI_TEST_TMP");
	/* `make test` installs wine64 (scripts/install-deps.sh build): a
	 * missing one is a broken set-up, not a reason to pass. */
	if (!wine)
		fail_msg("wine64 is not installed (scripts/install-deps.sh build installs it)");
	if (!tmp)
		fail_msg("MAMORI_TEST_TMP is not set (tests/packers/meson.build sets it)");
	char dir[4096], prefix[4096], exe[4200];
	snprintf(dir, sizeof(dir), "%s/wine-run", tmp);
	wine_prefix(prefix, sizeof(prefix), tmp);
	snprintf(exe, sizeof(exe), "%s/prog.exe", dir);
	mkdir(tmp, 0755);
	mkdir(dir, 0755);
	fixture f = load("pe64.exe");
	char want[4096], got[4096];
	write_file(exe, f.data, f.size);
	int want_rc = run_wine(wine, dir, prefix, want, sizeof(want));
	assert_true(strlen(want) > 3);
	fprintf(stderr, "wine64 original: rc %d, %s", want_rc, want);
	for (technique t = T_XOR; t <= T_NESTED3; t++) {
		for (uint32_t key = 3; key <= 0x40000003u; key += 0x40000000u) {
			uint8_t *o = NULL;
			size_t olen = 0;
			mamori_testpack_image_info info;
			assert_int_equal(pack(t, &o, &olen, &info, &f, key), MAMORI_OK);
			write_file(exe, o, olen);
			int rc = run_wine(wine, dir, prefix, got, sizeof(got));
			if (rc != want_rc || strcmp(got, want) != 0)
				fail_msg("%s key %#x under wine64: rc %d, stdout '%s'; original rc %d, '%s'",
					 technique_name(t), key, rc, got, want_rc, want);
			fprintf(stderr, "wine64 %s key %#x: same output\n", technique_name(t), key);
			free(o);
		}
	}
	unlink(exe);
	free(f.data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_xor_pe32),
		cmocka_unit_test(test_xor_pe64),
		cmocka_unit_test(test_xor_stub_variants),
		cmocka_unit_test(test_xor_refuses),
		cmocka_unit_test(test_lz_roundtrip),
		cmocka_unit_test(test_lz),
		cmocka_unit_test(test_antiemu),
		cmocka_unit_test(test_antiemu_no_imports),
		cmocka_unit_test(test_nested),
		cmocka_unit_test(test_image_refuses),
		cmocka_unit_test(test_wine64_runs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
