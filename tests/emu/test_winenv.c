/*
 * Tests of the emulator's Windows environment (src/emu/winenv.c,
 * winapi.c, and the exception and layer machinery of emu.c): the mingw
 * fixtures run through their CRT to exit with the output that wine64
 * gives, relocated images, a PEB walk and export-table parse from raw
 * code, x86 SEH, the x64 unhandled-exception filter, unknown APIs, the
 * API-call, memory and instruction limits, the virtual clock and nested
 * layers. Raw code is listed with its disassembly; API addresses in it are
 * placeholders (0x11111111 ...) patched with the stand-in exports' real
 * addresses, which the test reads from the export tables in guest memory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "fixture.h"
#include "mamori/base.h"
#include "mamori/binfmt.h"
#include "mamori/emu.h"

#define CODE_VA 0x400000ull

/* The command line the expected output was taken with: wine64 passes
 * argv[0] as the DOS path of the program, so `cd /work/main/tests/fixtures
 * && WINEDEBUG=-all /usr/lib/wine/wine64 pe64.exe abc def` printed
 * "265 1605812809" (acc over every argv character, then the checksum of
 * argv[0] = "Z:\work\main\tests\fixtures\pe64.exe"). The 32-bit fixture is
 * built from the same source, so with the same command line it must print
 * the same line. */
#define WINE_CMDLINE "Z:\\work\\main\\tests\\fixtures\\pe64.exe abc def"
#define WINE_OUTPUT  "265 1605812809\n"

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void wr32(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Replace every 4- (or 8-) byte little-endian `from` in `buf` by `to`. */
static void patch(uint8_t *buf, size_t n, uint64_t from, uint64_t to, size_t w)
{
	int hits = 0;
	for (size_t i = 0; i + w <= n; i++) {
		uint64_t v = 0;
		for (size_t k = 0; k < w; k++)
			v |= (uint64_t)buf[i + k] << (8 * k);
		if (v == from) {
			for (size_t k = 0; k < w; k++)
				buf[i + k] = (uint8_t)(to >> (8 * k));
			hits++;
		}
	}
	assert_true(hits > 0);
}

/* The address of export `name` of stand-in `dll`, found like shellcode
 * does it: the module's region, its PE header, its export directory. The
 * layout is the same in every emulator of the arch (raw code). */
static uint64_t export_va(mamori_arch arch, const char *dll, const char *name, uint64_t *dll_base)
{
	static const uint8_t ret = 0xc3;
	mamori_emu *e = NULL;
	assert_int_equal(mamori_emu_new_raw(&e, arch, CODE_VA, &ret, 1, NULL), MAMORI_OK);
	uint64_t base = 0, found = 0;
	for (size_t i = 0; i < mamori_emu_region_count(e); i++) {
		mamori_emu_region r;
		assert_int_equal(mamori_emu_region_at(e, i, &r), MAMORI_OK);
		if (r.kind == MAMORI_EMU_REGION_MODULE && r.name && !strcmp(r.name, dll))
			base = r.base;
	}
	assert_true(base != 0);
	uint8_t h[0x200];
	assert_int_equal(mamori_emu_read(e, base, h, sizeof(h)), MAMORI_OK);
	assert_true(h[0] == 'M' && h[1] == 'Z');
	uint32_t pe = rd32(h + 0x3c);
	uint32_t exp_rva = rd32(h + pe + 24 + (arch == MAMORI_ARCH_X86 ? 96 : 112));
	uint8_t d[40];
	assert_int_equal(mamori_emu_read(e, base + exp_rva, d, sizeof(d)), MAMORI_OK);
	uint32_t n_names = rd32(d + 24), funcs = rd32(d + 28), names = rd32(d + 32), ords = rd32(d + 36);
	for (uint32_t i = 0; i < n_names && !found; i++) {
		uint8_t b[4], s[64] = { 0 }, o[2];
		assert_int_equal(mamori_emu_read(e, base + names + 4ull * i, b, 4), MAMORI_OK);
		assert_int_equal(mamori_emu_read(e, base + rd32(b), s, strlen(name) + 1), MAMORI_OK);
		if (memcmp(s, name, strlen(name) + 1))
			continue;
		assert_int_equal(mamori_emu_read(e, base + ords + 2ull * i, o, 2), MAMORI_OK);
		assert_int_equal(mamori_emu_read(e, base + funcs + 4ull * (o[0] | o[1] << 8), b, 4),
				 MAMORI_OK);
		found = base + rd32(b);
	}
	assert_true(found != 0);
	mamori_emu_api_info info;
	assert_int_equal(mamori_emu_api_at(e, found, &info), MAMORI_OK);
	assert_string_equal(info.name, name);
	assert_string_equal(info.dll, dll);
	mamori_emu_free(e);
	if (dll_base)
		*dll_base = base;
	return found;
}

/* Run raw code (copied into a buffer of `buf_size` bytes at CODE_VA). */
static mamori_emu *run_raw(mamori_arch arch, const uint8_t *code, size_t n, size_t buf_size,
			   const mamori_emu_limits *lim, mamori_emu_report *r)
{
	uint8_t *buf = calloc(1, buf_size);
	assert_non_null(buf);
	memcpy(buf, code, n);
	mamori_emu *e = NULL;
	assert_int_equal(mamori_emu_new_raw(&e, arch, CODE_VA, buf, buf_size, lim), MAMORI_OK);
	assert_int_equal(mamori_emu_run(e, r), MAMORI_OK);
	free(buf);
	return e;
}

static const uint8_t peb_walk[] = {
	0x64, 0xa1, 0x30, 0x00, 0x00, 0x00,	  /* 00: mov eax,fs:0x30 */
	0x8b, 0x40, 0x0c,			  /* 06: mov eax,DWORD PTR [eax+0xc] */
	0x8d, 0x50, 0x0c,			  /* 09: lea edx,[eax+0xc] */
	0x8b, 0x1a,				  /* 0c: mov ebx,DWORD PTR [edx] */
	0x39, 0xd3,				  /* 0e: cmp ebx,edx */
	0x74, 0x77,				  /* 10: je 89 <fail> */
	0x8b, 0x73, 0x30,			  /* 12: mov esi,DWORD PTR [ebx+0x30] */
	0x66, 0x83, 0x7b, 0x2c, 0x18,		  /* 15: cmp WORD PTR [ebx+0x2c],0x18 */
	0x75, 0x11,				  /* 1a: jne 2d <skip> */
	0x81, 0x3e, 0x4b, 0x00, 0x45, 0x00,	  /* 1c: cmp DWORD PTR [esi],0x45004b */
	0x75, 0x09,				  /* 22: jne 2d <skip> */
	0x81, 0x7e, 0x0c, 0x33, 0x00, 0x32, 0x00, /* 24: cmp DWORD PTR [esi+0xc],0x320033 */
	0x74, 0x04,				  /* 2b: je 31 <found> */
	0x8b, 0x1b,				  /* 2d: mov ebx,DWORD PTR [ebx] */
	0xeb, 0xdd,				  /* 2f: jmp e <next> */
	0x8b, 0x6b, 0x18,			  /* 31: mov ebp,DWORD PTR [ebx+0x18] */
	0x8b, 0x45, 0x3c,			  /* 34: mov eax,DWORD PTR [ebp+0x3c] */
	0x8b, 0x44, 0x05, 0x78,			  /* 37: mov eax,DWORD PTR [ebp+eax*1+0x78] */
	0x01, 0xe8,				  /* 3b: add eax,ebp */
	0x8b, 0x48, 0x18,			  /* 3d: mov ecx,DWORD PTR [eax+0x18] */
	0x8b, 0x78, 0x20,			  /* 40: mov edi,DWORD PTR [eax+0x20] */
	0x01, 0xef,				  /* 43: add edi,ebp */
	0x49,					  /* 45: dec ecx */
	0x78, 0x41,				  /* 46: js 89 <fail> */
	0x8b, 0x34, 0x8f,			  /* 48: mov esi,DWORD PTR [edi+ecx*4] */
	0x01, 0xee,				  /* 4b: add esi,ebp */
	0x81, 0x3e, 0x47, 0x65, 0x74, 0x50,	  /* 4d: cmp DWORD PTR [esi],0x50746547 */
	0x75, 0xf0,				  /* 53: jne 45 <names> */
	0x81, 0x7e, 0x04, 0x72, 0x6f, 0x63, 0x41, /* 55: cmp DWORD PTR [esi+0x4],0x41636f72 */
	0x75, 0xe7,				  /* 5c: jne 45 <names> */
	0x81, 0x7e, 0x08, 0x64, 0x64, 0x72, 0x65, /* 5e: cmp DWORD PTR [esi+0x8],0x65726464 */
	0x75, 0xde,				  /* 65: jne 45 <names> */
	0x66, 0x81, 0x7e, 0x0c, 0x73, 0x73,	  /* 67: cmp WORD PTR [esi+0xc],0x7373 */
	0x75, 0xd6,				  /* 6d: jne 45 <names> */
	0x80, 0x7e, 0x0e, 0x00,			  /* 6f: cmp BYTE PTR [esi+0xe],0x0 */
	0x75, 0xd0,				  /* 73: jne 45 <names> */
	0x8b, 0x50, 0x24,			  /* 75: mov edx,DWORD PTR [eax+0x24] */
	0x01, 0xea,				  /* 78: add edx,ebp */
	0x0f, 0xb7, 0x0c, 0x4a,			  /* 7a: movzx ecx,WORD PTR [edx+ecx*2] */
	0x8b, 0x50, 0x1c,			  /* 7e: mov edx,DWORD PTR [eax+0x1c] */
	0x01, 0xea,				  /* 81: add edx,ebp */
	0x8b, 0x04, 0x8a,			  /* 83: mov eax,DWORD PTR [edx+ecx*4] */
	0x01, 0xe8,				  /* 86: add eax,ebp */
	0xc3,					  /* 88: ret */
	0x31, 0xc0,				  /* 89: xor eax,eax */
	0xc3,					  /* 8b: ret */
};

/* ------------------------------------------------------------ PE fixtures */

static mamori_emu *run_pe(const uint8_t *data, size_t size, const char *cmdline, mamori_emu_report *r)
{
	mamori_binary *b = NULL;
	assert_int_equal(mamori_binary_parse(&b, data, size, NULL), MAMORI_OK);
	mamori_emu_limits lim = { .cmdline = cmdline };
	mamori_emu *e = NULL;
	assert_int_equal(mamori_emu_new(&e, b, &lim), MAMORI_OK);
	mamori_binary_free(b);
	assert_int_equal(mamori_emu_run(e, r), MAMORI_OK);
	return e;
}

static void check_output(mamori_emu *e, const mamori_emu_report *r, const char *want)
{
	if (r->status != MAMORI_EMU_EXIT)
		print_message("status %s (%s) at 0x%llx\n", mamori_emu_status_name(r->status),
			      r->fault ? r->fault : "-", (unsigned long long)r->pc);
	assert_int_equal(r->status, MAMORI_EMU_EXIT);
	assert_int_equal(r->exit_code, 0);
	assert_int_equal(r->unknown_api_calls, 0);
	size_t n = 0;
	const uint8_t *out = mamori_emu_output(e, &n);
	assert_int_equal(n, strlen(want));
	assert_memory_equal(out, want, n);
}

static void check_fixture(const char *name)
{
	fixture f = load(name);
	mamori_emu_report r;
	mamori_emu *e = run_pe(f.data, f.size, WINE_CMDLINE, &r);
	check_output(e, &r, WINE_OUTPUT);
	assert_false(r.has_wx);
	assert_true(r.api_calls > 20);
	/* The trace names the CRT's calls, ending with exit. */
	size_t nt = mamori_emu_trace_count(e);
	assert_true(nt > 0);
	mamori_emu_api_info info;
	assert_int_equal(mamori_emu_api_by_id(e, mamori_emu_trace_at(e, nt - 1)->api, &info), MAMORI_OK);
	assert_string_equal(info.name, "exit");
	assert_string_equal(info.dll, "msvcrt.dll");
	assert_true(info.implemented);
	mamori_emu_free(e);
	free(f.data);
}

static void test_pe32_runs(void **state)
{
	(void)state;
	check_fixture("pe32.exe");
}

static void test_pe64_runs(void **state)
{
	(void)state;
	check_fixture("pe64.exe");
}

/* File offset of an RVA through the section table (0: none). */
static size_t file_off(const uint8_t *sec, uint16_t nsec, uint32_t rva)
{
	for (uint16_t i = 0; i < nsec; i++) {
		const uint8_t *h = sec + 40 * i;
		if (rva >= rd32(h + 12) && rva - rd32(h + 12) < rd32(h + 16))
			return rd32(h + 20) + (rva - rd32(h + 12));
	}
	return 0;
}

/* Rebase a PE file in place to `new_base` (apply its base relocations to
 * the file bytes and set ImageBase), so that its preferred base collides
 * with the emulator's system area and the loader must relocate it back. */
static void rebase_file(uint8_t *d, size_t n, uint64_t new_base)
{
	uint32_t pe = rd32(d + 0x3c);
	uint16_t nsec = (uint16_t)(d[pe + 6] | d[pe + 7] << 8),
		 opt_size = (uint16_t)(d[pe + 20] | d[pe + 21] << 8);
	uint8_t *opt = d + pe + 24;
	bool p64 = opt[0] == 0x0b && opt[1] == 0x02;
	uint64_t old = p64 ? (uint64_t)rd32(opt + 24) | (uint64_t)rd32(opt + 28) << 32 : rd32(opt + 28);
	uint8_t *dd = opt + (p64 ? 112 : 96);
	uint32_t rrva = rd32(dd + 5 * 8), rsize = rd32(dd + 5 * 8 + 4);
	const uint8_t *sec = opt + opt_size;
	uint64_t delta = new_base - old;
	size_t r = file_off(sec, nsec, rrva);
	assert_true(rrva && rsize && r && r + rsize <= n);
	int applied = 0;
	for (size_t at = r; at + 8 <= r + rsize;) {
		uint32_t page = rd32(d + at), bsize = rd32(d + at + 4);
		assert_true(bsize >= 8);
		for (uint32_t i = 0; i < (bsize - 8) / 2; i++) {
			uint16_t v = (uint16_t)(d[at + 8 + 2 * i] | d[at + 9 + 2 * i] << 8);
			size_t o = file_off(sec, nsec, page + (v & 0xfffu));
			if (v >> 12 == 3) {
				wr32(d + o, rd32(d + o) + delta);
				applied++;
			} else if (v >> 12 == 10) {
				uint64_t x = (uint64_t)rd32(d + o) | (uint64_t)rd32(d + o + 4) << 32;
				x += delta;
				wr32(d + o, x);
				wr32(d + o + 4, x >> 32);
				applied++;
			}
		}
		at += bsize;
	}
	assert_true(applied > 10);
	wr32(opt + (p64 ? 24 : 28), new_base);
	if (p64)
		wr32(opt + 28, new_base >> 32);
}

static void check_relocated(const char *name)
{
	fixture f = load(name);
	rebase_file(f.data, f.size, 0x70000000); /* the stand-in modules live there */
	mamori_emu_report r;
	mamori_emu *e = run_pe(f.data, f.size, WINE_CMDLINE, &r);
	uint64_t base = mamori_emu_image_base(e);
	assert_true(base != 0x70000000 && base != 0);
	assert_true(base + 0x10000 <= 0x70000000);
	check_output(e, &r, WINE_OUTPUT);
	mamori_emu_free(e);

	/* With IMAGE_FILE_RELOCS_STRIPPED it cannot be placed: a clear error. */
	uint32_t pe = rd32(f.data + 0x3c);
	f.data[pe + 22] |= 1;
	mamori_binary *b = NULL;
	assert_int_equal(mamori_binary_parse(&b, f.data, f.size, NULL), MAMORI_OK);
	assert_int_equal(mamori_emu_new(&e, b, NULL), MAMORI_EUNSUPPORTED);
	assert_null(e);
	assert_non_null(strstr(mamori_error_detail(), "relocations"));
	mamori_binary_free(b);
	free(f.data);
}

static void test_relocation_x86(void **state)
{
	(void)state;
	check_relocated("pe32.exe");
}

static void test_relocation_x64(void **state)
{
	(void)state;
	check_relocated("pe64.exe");
}

/* ------------------------------------------------------------- raw code */

/* From FS:[0x30] through PEB.Ldr's load-order list to KERNEL32.DLL
 * (BaseDllName compared on "KE" and "32"), then its export directory by
 * hand: the name "GetProcAddress", its ordinal, its function RVA; returns
 * the address (0 when the walk fails). */
/* x86 SEH: install a frame for `handler` (at 0x24) through FS:[0], read
 * [0]; the handler moves Eip past the faulting 2-byte load, stores the
 * exception code in the CONTEXT's Ebx and continues execution, so the
 * code returns the code. */
static const uint8_t seh_code[] = {
	0x68, 0x24, 0x00, 0x40, 0x00,		  /* 00: push 0x400024 */
	0x64, 0xff, 0x35, 0x00, 0x00, 0x00, 0x00, /* 05: push DWORD PTR fs:0x0 */
	0x64, 0x89, 0x25, 0x00, 0x00, 0x00, 0x00, /* 0c: mov DWORD PTR fs:0x0,esp */
	0x31, 0xc0,				  /* 13: xor eax,eax */
	0x8b, 0x00,				  /* 15: mov eax,DWORD PTR [eax] */
	0x64, 0x8f, 0x05, 0x00, 0x00, 0x00, 0x00, /* 17: pop DWORD PTR fs:0x0 */
	0x83, 0xc4, 0x04,			  /* 1e: add esp,0x4 */
	0x89, 0xd8,				  /* 21: mov eax,ebx */
	0xc3,					  /* 23: ret */
	0x8b, 0x4c, 0x24, 0x0c,			  /* 24: mov ecx,DWORD PTR [esp+0xc] */
	0x83, 0x81, 0xb8, 0x00, 0x00, 0x00, 0x02, /* 28: add DWORD PTR [ecx+0xb8],0x2 */
	0x8b, 0x44, 0x24, 0x04,			  /* 2f: mov eax,DWORD PTR [esp+0x4] */
	0x8b, 0x00,				  /* 33: mov eax,DWORD PTR [eax] */
	0x89, 0x81, 0xa4, 0x00, 0x00, 0x00,	  /* 35: mov DWORD PTR [ecx+0xa4],eax */
	0x31, 0xc0,				  /* 3b: xor eax,eax */
	0xc3,					  /* 3d: ret */
};
/* x64: SetUnhandledExceptionFilter(filter at 0x25) (placeholder
 * 0x2222222222222222), then read [0]; the filter moves Rip past the load,
 * puts the code in Rbx and answers EXCEPTION_CONTINUE_EXECUTION (-1). */
static const uint8_t filter_code[] = {
	0x48, 0x83, 0xec, 0x28,					    /* 00: sub rsp,0x28 */
	0x48, 0xb9, 0x25, 0x00, 0x40, 0x00, 0x00,		    /* 04: movabs rcx,0x400025 */
	0x00, 0x00, 0x00, 0x48, 0xb8, 0x22, 0x22, 0x22, 0x22, 0x22, /* 0e: movabs rax,0x2222222222222222 */
	0x22, 0x22, 0x22, 0xff, 0xd0,				    /* 18: call rax */
	0x31, 0xc0,						    /* 1a: xor eax,eax */
	0x8b, 0x00,						    /* 1c: mov eax,DWORD PTR [rax] */
	0x48, 0x83, 0xc4, 0x28,					    /* 1e: add rsp,0x28 */
	0x89, 0xd8,						    /* 22: mov eax,ebx */
	0xc3,							    /* 24: ret */
	0x48, 0x8b, 0x51, 0x08,					    /* 25: mov rdx,QWORD PTR [rcx+0x8] */
	0x48, 0x83, 0x82, 0xf8, 0x00, 0x00, 0x00,		    /* 29: add QWORD PTR [rdx+0xf8],0x2 */
	0x02, 0x48, 0x8b, 0x01,					    /* 31: mov rax,QWORD PTR [rcx] */
	0x8b, 0x00,						    /* 34: mov eax,DWORD PTR [rax] */
	0x48, 0x89, 0x82, 0x90, 0x00, 0x00, 0x00,		    /* 36: mov QWORD PTR [rdx+0x90],rax */
	0xb8, 0xff, 0xff, 0xff, 0xff,				    /* 3d: mov eax,0xffffffff */
	0xc3,							    /* 42: ret */
};
/* GetProcAddress(kernel32, "NoSuchFunction") must give an address; calling it
 * returns 0, then GetLastError must say 120 (ERROR_CALL_NOT_IMPLEMENTED).
 * The name follows the code at 0x2b. Placeholders: 0x33333333 kernel32,
 * 0x11111111 GetProcAddress, 0x44444444 GetLastError. */
static const uint8_t unknown_code[] = {
	0x68, 0x2b, 0x00, 0x40, 0x00, /* 00: push 0x40002b */
	0x68, 0x33, 0x33, 0x33, 0x33, /* 05: push 0x33333333 */
	0xb8, 0x11, 0x11, 0x11, 0x11, /* 0a: mov eax,0x11111111 */
	0xff, 0xd0,		      /* 0f: call eax */
	0x85, 0xc0,		      /* 11: test eax,eax */
	0x74, 0x10,		      /* 13: je 25 <bad> */
	0xff, 0xd0,		      /* 15: call eax */
	0x89, 0xc3,		      /* 17: mov ebx,eax */
	0xb8, 0x44, 0x44, 0x44, 0x44, /* 19: mov eax,0x44444444 */
	0xff, 0xd0,		      /* 1e: call eax */
	0x85, 0xdb,		      /* 20: test ebx,ebx */
	0x75, 0x01,		      /* 22: jne 25 <bad> */
	0xc3,			      /* 24: ret */
	0xb8, 0x01, 0x00, 0x00, 0x00, /* 25: mov eax,0x1 */
	0xc3,			      /* 2a: ret */
};
/* An API storm: GetTickCount (0x55555555) forever. */
static const uint8_t apiloop_code[] = {
	0xb8, 0x55, 0x55, 0x55, 0x55, /* 00: mov eax,0x55555555 */
	0xff, 0xd0,		      /* 05: call eax */
	0xeb, 0xf7,		      /* 07: jmp 0 <l> */
};
/* A memory bomb: VirtualAlloc(0, 1 MiB, MEM_COMMIT|MEM_RESERVE,
 * PAGE_READWRITE) (0x66666666) forever. */
static const uint8_t bomb_code[] = {
	0x6a, 0x04,		      /* 00: push 0x4 */
	0x68, 0x00, 0x30, 0x00, 0x00, /* 02: push 0x3000 */
	0x68, 0x00, 0x00, 0x10, 0x00, /* 07: push 0x100000 */
	0x6a, 0x00,		      /* 0c: push 0x0 */
	0xb8, 0x66, 0x66, 0x66, 0x66, /* 0e: mov eax,0x66666666 */
	0xff, 0xd0,		      /* 13: call eax */
	0xeb, 0xe9,		      /* 15: jmp 0 <l> */
};
/* GetTickCount (0x55555555), Sleep(10000) (0x77777777), GetTickCount:
 * returns the difference. */
static const uint8_t clock_code[] = {
	0xb8, 0x55, 0x55, 0x55, 0x55, /* 00: mov eax,0x55555555 */
	0xff, 0xd0,		      /* 05: call eax */
	0x89, 0xc6,		      /* 07: mov esi,eax */
	0x68, 0x10, 0x27, 0x00, 0x00, /* 09: push 0x2710 */
	0xb8, 0x77, 0x77, 0x77, 0x77, /* 0e: mov eax,0x77777777 */
	0xff, 0xd0,		      /* 13: call eax */
	0xb8, 0x55, 0x55, 0x55, 0x55, /* 15: mov eax,0x55555555 */
	0xff, 0xd0,		      /* 1a: call eax */
	0x29, 0xf0,		      /* 1c: sub eax,esi */
	0xc3,			      /* 1e: ret */
};
/* Two nested layers: the code copies layer 1 (bytes 0x18..0x30) to
 * 0x401000 and jumps there; layer 1 copies layer 2 (0x30..0x36) to 0x402000
 * and jumps there; layer 2 returns 42. */
static const uint8_t layers_code[] = {
	0xbe, 0x18, 0x00, 0x40, 0x00, /* 00: mov esi,0x400018 */
	0xbf, 0x00, 0x10, 0x40, 0x00, /* 05: mov edi,0x401000 */
	0xb9, 0x18, 0x00, 0x00, 0x00, /* 0a: mov ecx,0x18 */
	0xf3, 0xa4,		      /* 0f: rep movs BYTE PTR es:[edi],BYTE PTR ds:[esi] */
	0xb8, 0x00, 0x10, 0x40, 0x00, /* 11: mov eax,0x401000 */
	0xff, 0xe0,		      /* 16: jmp eax */
	0xbe, 0x30, 0x00, 0x40, 0x00, /* 18: mov esi,0x400030 */
	0xbf, 0x00, 0x20, 0x40, 0x00, /* 1d: mov edi,0x402000 */
	0xb9, 0x06, 0x00, 0x00, 0x00, /* 22: mov ecx,0x6 */
	0xf3, 0xa4,		      /* 27: rep movs BYTE PTR es:[edi],BYTE PTR ds:[esi] */
	0xb8, 0x00, 0x20, 0x40, 0x00, /* 29: mov eax,0x402000 */
	0xff, 0xe0,		      /* 2e: jmp eax */
	0xb8, 0x2a, 0x00, 0x00, 0x00, /* 30: mov eax,0x2a */
	0xc3,			      /* 35: ret */
};

static void test_peb_walk(void **state)
{
	(void)state;
	mamori_emu_report r;
	mamori_emu *e = run_raw(MAMORI_ARCH_X86, peb_walk, sizeof(peb_walk), 0x1000, NULL, &r);
	assert_int_equal(r.status, MAMORI_EMU_EXIT);
	assert_true(r.exit_code != 0);
	mamori_emu_api_info info;
	assert_int_equal(mamori_emu_api_at(e, r.exit_code, &info), MAMORI_OK);
	assert_string_equal(info.dll, "kernel32.dll");
	assert_string_equal(info.name, "GetProcAddress");
	assert_true(info.implemented);
	assert_int_equal(info.va, r.exit_code);
	mamori_emu_free(e);
}

static void test_seh_x86(void **state)
{
	(void)state;
	mamori_emu_report r;
	mamori_emu *e = run_raw(MAMORI_ARCH_X86, seh_code, sizeof(seh_code), 0x1000, NULL, &r);
	assert_int_equal(r.status, MAMORI_EMU_EXIT);
	assert_int_equal(r.exit_code, 0xc0000005u);
	mamori_emu_free(e);
}

static void test_unhandled_filter_x64(void **state)
{
	(void)state;
	uint8_t code[sizeof(filter_code)];
	memcpy(code, filter_code, sizeof(code));
	patch(code, sizeof(code), 0x2222222222222222ull,
	      export_va(MAMORI_ARCH_X86_64, "kernel32.dll", "SetUnhandledExceptionFilter", NULL), 8);
	mamori_emu_report r;
	mamori_emu *e = run_raw(MAMORI_ARCH_X86_64, code, sizeof(code), 0x1000, NULL, &r);
	assert_int_equal(r.status, MAMORI_EMU_EXIT);
	assert_int_equal(r.exit_code, 0xc0000005u);
	assert_int_equal(r.api_calls, 1);
	mamori_emu_free(e);

	/* Without the filter the same fault is unhandled: FAULT, named. */
	static const uint8_t bare[] = {
		0x31, 0xc0, /* xor eax, eax */
		0x8b, 0x00, /* mov eax, [rax] */
		0xc3,	    /* ret */
	};
	e = run_raw(MAMORI_ARCH_X86_64, bare, sizeof(bare), 0x1000, NULL, &r);
	assert_int_equal(r.status, MAMORI_EMU_FAULT);
	assert_string_equal(r.fault, "unmapped read");
	assert_int_equal(r.fault_addr, 0);
	mamori_emu_free(e);
}

/* AddVectoredExceptionHandler(1, handler at 0x21) (0x11111111), then
 * RaiseException(0xe0001234, 0, 0, NULL) (0x22222222); the handler puts
 * the code in the CONTEXT's Eax and answers EXCEPTION_CONTINUE_EXECUTION,
 * so RaiseException "returns" the code, which the code returns. */
static const uint8_t veh_code[] = {
	0x68, 0x21, 0x00, 0x40, 0x00,	    /* 00: push 0x400021 */
	0x6a, 0x01,			    /* 05: push 0x1 */
	0xb8, 0x11, 0x11, 0x11, 0x11,	    /* 07: mov eax,0x11111111 */
	0xff, 0xd0,			    /* 0c: call eax */
	0x6a, 0x00,			    /* 0e: push 0x0 */
	0x6a, 0x00,			    /* 10: push 0x0 */
	0x6a, 0x00,			    /* 12: push 0x0 */
	0x68, 0x34, 0x12, 0x00, 0xe0,	    /* 14: push 0xe0001234 */
	0xb8, 0x22, 0x22, 0x22, 0x22,	    /* 19: mov eax,0x22222222 */
	0xff, 0xd0,			    /* 1e: call eax */
	0xc3,				    /* 20: ret */
	0x8b, 0x4c, 0x24, 0x04,		    /* 21: mov ecx,DWORD PTR [esp+0x4] */
	0x8b, 0x11,			    /* 25: mov edx,DWORD PTR [ecx] */
	0x8b, 0x12,			    /* 27: mov edx,DWORD PTR [edx] */
	0x8b, 0x49, 0x04,		    /* 29: mov ecx,DWORD PTR [ecx+0x4] */
	0x89, 0x91, 0xb0, 0x00, 0x00, 0x00, /* 2c: mov DWORD PTR [ecx+0xb0],edx */
	0xb8, 0xff, 0xff, 0xff, 0xff,	    /* 32: mov eax,0xffffffff */
	0xc2, 0x04, 0x00,		    /* 37: ret 0x4 */
};

static void test_vectored_handler(void **state)
{
	(void)state;
	uint8_t code[sizeof(veh_code)];
	memcpy(code, veh_code, sizeof(code));
	patch(code, sizeof(code), 0x11111111,
	      export_va(MAMORI_ARCH_X86, "kernel32.dll", "AddVectoredExceptionHandler", NULL), 4);
	patch(code, sizeof(code), 0x22222222,
	      export_va(MAMORI_ARCH_X86, "kernel32.dll", "RaiseException", NULL), 4);
	mamori_emu_report r;
	mamori_emu *e = run_raw(MAMORI_ARCH_X86, code, sizeof(code), 0x1000, NULL, &r);
	assert_int_equal(r.status, MAMORI_EMU_EXIT);
	assert_int_equal(r.exit_code, 0xe0001234u);
	assert_int_equal(r.api_calls, 2);
	mamori_emu_free(e);
}

/* Faults nobody handles end the run with a named fault. */
static void test_faults(void **state)
{
	(void)state;
	static const uint8_t ud2[] = { 0x90, 0x0f, 0x0b };		/* nop; ud2 */
	static const uint8_t div0[] = { 0x31, 0xc9, 0xf7, 0xf1, 0xc3 }; /* xor ecx, ecx; div ecx; ret */
	static const uint8_t int3[] = { 0x90, 0xcc, 0xc3 };		/* nop; int3; ret */
	static const uint8_t *codes[] = { ud2, div0, int3 };
	static const size_t sizes[] = { sizeof(ud2), sizeof(div0), sizeof(int3) };
	static const char *want[] = { "illegal instruction", "integer divide by zero", "breakpoint" };
	static const uint64_t at[] = { CODE_VA + 1, CODE_VA + 2, CODE_VA + 1 };
	for (int a = MAMORI_ARCH_X86; a <= MAMORI_ARCH_X86_64; a++) {
		for (size_t i = 0; i < 3; i++) {
			mamori_emu_report r;
			mamori_emu *e = run_raw((mamori_arch)a, codes[i], sizes[i], 0x1000, NULL, &r);
			assert_int_equal(r.status, MAMORI_EMU_FAULT);
			assert_string_equal(r.fault, want[i]);
			assert_int_equal(r.fault_addr, at[i]);
			mamori_emu_free(e);
		}
	}
}

static void test_unknown_api(void **state)
{
	(void)state;
	uint64_t k32 = 0;
	uint8_t code[0x40] = { 0 };
	memcpy(code, unknown_code, sizeof(unknown_code));
	memcpy(code + 0x2b, "NoSuchFunction", 15);
	patch(code, sizeof(code), 0x11111111,
	      export_va(MAMORI_ARCH_X86, "kernel32.dll", "GetProcAddress", &k32), 4);
	patch(code, sizeof(code), 0x33333333, k32, 4);
	patch(code, sizeof(code), 0x44444444,
	      export_va(MAMORI_ARCH_X86, "kernel32.dll", "GetLastError", NULL), 4);
	mamori_emu_report r;
	mamori_emu *e = run_raw(MAMORI_ARCH_X86, code, sizeof(code), 0x1000, NULL, &r);
	assert_int_equal(r.status, MAMORI_EMU_EXIT);
	assert_int_equal(r.exit_code, 120); /* ERROR_CALL_NOT_IMPLEMENTED */
	assert_int_equal(r.api_calls, 3);
	assert_int_equal(r.unknown_api_calls, 1);
	/* The trace logs it by name. */
	assert_int_equal(mamori_emu_trace_count(e), 3);
	const mamori_emu_api_call *c = mamori_emu_trace_at(e, 1);
	mamori_emu_api_info info;
	assert_int_equal(mamori_emu_api_by_id(e, c->api, &info), MAMORI_OK);
	assert_string_equal(info.name, "NoSuchFunction");
	assert_string_equal(info.dll, "kernel32.dll");
	assert_false(info.implemented);
	assert_int_equal(c->ret, 0);
	assert_int_equal(c->caller, CODE_VA + 0x17);
	mamori_emu_free(e);
}

static void test_api_limit(void **state)
{
	(void)state;
	uint8_t code[sizeof(apiloop_code)];
	memcpy(code, apiloop_code, sizeof(code));
	patch(code, sizeof(code), 0x55555555,
	      export_va(MAMORI_ARCH_X86, "kernel32.dll", "GetTickCount", NULL), 4);
	mamori_emu_limits lim = { .max_api_calls = 1000, .max_trace = 10 };
	mamori_emu_report r;
	mamori_emu *e = run_raw(MAMORI_ARCH_X86, code, sizeof(code), 0x1000, &lim, &r);
	assert_int_equal(r.status, MAMORI_EMU_LIMIT);
	assert_string_equal(r.limit, "api_calls");
	assert_int_equal(r.api_calls, 1000);
	assert_int_equal(mamori_emu_trace_count(e), 10);
	mamori_emu_free(e);
}

static void test_memory_bomb(void **state)
{
	(void)state;
	uint8_t code[sizeof(bomb_code)];
	memcpy(code, bomb_code, sizeof(code));
	patch(code, sizeof(code), 0x66666666,
	      export_va(MAMORI_ARCH_X86, "kernel32.dll", "VirtualAlloc", NULL), 4);
	mamori_emu_limits lim = { .max_memory = 64ull << 20 };
	mamori_emu_report r;
	mamori_emu *e = run_raw(MAMORI_ARCH_X86, code, sizeof(code), 0x1000, &lim, &r);
	assert_int_equal(r.status, MAMORI_EMU_LIMIT);
	assert_string_equal(r.limit, "memory");
	assert_true(r.api_calls > 40 && r.api_calls < 64);
	size_t allocs = 0;
	for (size_t i = 0; i < mamori_emu_region_count(e); i++) {
		mamori_emu_region reg;
		assert_int_equal(mamori_emu_region_at(e, i, &reg), MAMORI_OK);
		allocs += reg.kind == MAMORI_EMU_REGION_ALLOC && reg.size == (1u << 20);
	}
	assert_int_equal(allocs, r.api_calls - 1);
	mamori_emu_free(e);
}

static void test_insn_limit(void **state)
{
	(void)state;
	static const uint8_t loop[] = { 0xeb, 0xfe }; /* jmp $ */
	mamori_emu_limits lim = { .max_insns = 100000 };
	for (int a = MAMORI_ARCH_X86; a <= MAMORI_ARCH_X86_64; a++) {
		mamori_emu_report r;
		mamori_emu *e = run_raw((mamori_arch)a, loop, sizeof(loop), 0x1000, &lim, &r);
		assert_int_equal(r.status, MAMORI_EMU_LIMIT);
		assert_string_equal(r.limit, "insns");
		assert_int_equal(r.insns, 100000);
		mamori_emu_free(e);
	}
}

static void test_virtual_clock(void **state)
{
	(void)state;
	uint8_t code[sizeof(clock_code)];
	memcpy(code, clock_code, sizeof(code));
	patch(code, sizeof(code), 0x55555555,
	      export_va(MAMORI_ARCH_X86, "kernel32.dll", "GetTickCount", NULL), 4);
	patch(code, sizeof(code), 0x77777777, export_va(MAMORI_ARCH_X86, "kernel32.dll", "Sleep", NULL), 4);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	mamori_emu_report r;
	mamori_emu *e = run_raw(MAMORI_ARCH_X86, code, sizeof(code), 0x1000, NULL, &r);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_int_equal(r.status, MAMORI_EMU_EXIT);
	assert_true(r.exit_code >= 10000 && r.exit_code < 10100);
	double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	assert_true(s < 2.0); /* Sleep did not wait 10 s */
	mamori_emu_free(e);
}

static void test_layers(void **state)
{
	(void)state;
	mamori_emu_report r;
	mamori_emu *e = run_raw(MAMORI_ARCH_X86, layers_code, sizeof(layers_code), 0x3000, NULL, &r);
	assert_int_equal(r.status, MAMORI_EMU_EXIT);
	assert_int_equal(r.exit_code, 42);
	assert_int_equal(r.n_layers, 2);
	assert_int_equal(mamori_emu_layer_count(e), 2);
	const mamori_emu_layer *l1 = mamori_emu_layer_at(e, 0), *l2 = mamori_emu_layer_at(e, 1);
	assert_int_equal(l1->entry, 0x401000);
	assert_int_equal(l1->from, CODE_VA + 0x11);   /* the block "mov eax; jmp eax" */
	assert_int_equal(l1->writer, CODE_VA + 0x0f); /* rep movsb */
	assert_int_equal(l1->base, 0x401000);
	assert_int_equal(l1->size, 0x1000);
	assert_int_equal(l2->entry, 0x402000);
	assert_int_equal(l2->from, 0x401000 + 0x11);
	assert_int_equal(l2->writer, 0x401000 + 0x0f);
	assert_int_equal(l2->base, 0x402000);
	assert_int_equal(l2->size, 0x1000);
	assert_true(l1->insns < l2->insns && l2->insns < r.insns);
	assert_true(r.has_wx);
	assert_int_equal(r.wx_va, 0x401000);
	assert_true(mamori_emu_page_written(e, 0x401000));
	assert_true(mamori_emu_page_written(e, 0x402000));
	assert_false(mamori_emu_page_written(e, CODE_VA));
	mamori_emu_free(e);

	/* settle_insns: stop soon after the last layer instead of running on. */
	static const uint8_t settle[] = {
		0xbf, 0x00, 0x10, 0x40, 0x00,	    /* mov edi, 0x401000 */
		0xc7, 0x07, 0xeb, 0xfe, 0x00, 0x00, /* mov dword [edi], 0xfeeb (jmp $) */
		0xff, 0xe7,			    /* jmp edi */
	};
	mamori_emu_limits lim = { .settle_insns = 5000 };
	e = run_raw(MAMORI_ARCH_X86, settle, sizeof(settle), 0x2000, &lim, &r);
	assert_int_equal(r.status, MAMORI_EMU_SETTLED);
	assert_int_equal(r.n_layers, 1);
	assert_int_equal(r.insns, 3 + 5000);
	mamori_emu_free(e);

	/* max_layers: the second layer is one too many. */
	mamori_emu_limits one = { .max_layers = 1 };
	e = run_raw(MAMORI_ARCH_X86, layers_code, sizeof(layers_code), 0x3000, &one, &r);
	assert_int_equal(r.status, MAMORI_EMU_LIMIT);
	assert_string_equal(r.limit, "layers");
	assert_int_equal(r.n_layers, 1);
	assert_int_equal(r.pc, 0x402000);
	mamori_emu_free(e);
}

/* One rep movsb copies 0x11000 bytes (17 pages, each a first write that
 * restarts the instruction) from the code to 0x402000, then runs the copy
 * of `tail` (at 0x18): one layer spanning the whole copy. */
static const uint8_t bigcopy_code[] = {
	0xbe, 0x00, 0x00, 0x40, 0x00, /* 00: mov esi,0x400000 */
	0xbf, 0x00, 0x20, 0x40, 0x00, /* 05: mov edi,0x402000 */
	0xb9, 0x00, 0x10, 0x01, 0x00, /* 0a: mov ecx,0x11000 */
	0xf3, 0xa4,		      /* 0f: rep movs BYTE PTR es:[edi],BYTE PTR ds:[esi] */
	0xb8, 0x18, 0x20, 0x40, 0x00, /* 11: mov eax,0x402018 */
	0xff, 0xe0,		      /* 16: jmp eax */
	0xb8, 0x07, 0x00, 0x00, 0x00, /* 18: mov eax,0x7 */
	0xc3,			      /* 1d: ret */
};

static void test_big_copy(void **state)
{
	(void)state;
	mamori_emu_report r;
	mamori_emu *e = run_raw(MAMORI_ARCH_X86, bigcopy_code, sizeof(bigcopy_code), 0x14000, NULL, &r);
	assert_int_equal(r.status, MAMORI_EMU_EXIT);
	assert_int_equal(r.exit_code, 7);
	assert_int_equal(r.n_layers, 1);
	const mamori_emu_layer *l = mamori_emu_layer_at(e, 0);
	assert_int_equal(l->entry, 0x402018);
	assert_int_equal(l->base, 0x402000);
	assert_int_equal(l->size, 0x11000);
	/* Unicorn runs the code hook once per rep iteration. */
	assert_true(r.insns >= 0x11000 + 7 && r.insns <= 0x11000 + 8);
	uint8_t b[sizeof(bigcopy_code)];
	assert_int_equal(mamori_emu_read(e, 0x402000, b, sizeof(b)), MAMORI_OK);
	assert_memory_equal(b, bigcopy_code, sizeof(b));
	mamori_emu_free(e);
}

/* GetModuleHandleA("user32.dll") (0x11111111) before it is loaded: 0;
 * LoadLibraryA (0x22222222) of "nosuch.dll" (at 0x60): an empty stand-in;
 * LoadLibraryA("user32.dll") (at 0x4c), then GetModuleHandleA gives the
 * same handle. Returns the nosuch.dll handle, 0 when a check failed. */
static const uint8_t mods_code[] = {
	0x68, 0x4c, 0x00, 0x40, 0x00, /* 00: push 0x40004c */
	0xb8, 0x11, 0x11, 0x11, 0x11, /* 05: mov eax,0x11111111 */
	0xff, 0xd0,		      /* 0a: call eax */
	0x89, 0xc6,		      /* 0c: mov esi,eax */
	0x68, 0x60, 0x00, 0x40, 0x00, /* 0e: push 0x400060 */
	0xb8, 0x22, 0x22, 0x22, 0x22, /* 13: mov eax,0x22222222 */
	0xff, 0xd0,		      /* 18: call eax */
	0x89, 0xc7,		      /* 1a: mov edi,eax */
	0x68, 0x4c, 0x00, 0x40, 0x00, /* 1c: push 0x40004c */
	0xb8, 0x22, 0x22, 0x22, 0x22, /* 21: mov eax,0x22222222 */
	0xff, 0xd0,		      /* 26: call eax */
	0x89, 0xc3,		      /* 28: mov ebx,eax */
	0x68, 0x4c, 0x00, 0x40, 0x00, /* 2a: push 0x40004c */
	0xb8, 0x11, 0x11, 0x11, 0x11, /* 2f: mov eax,0x11111111 */
	0xff, 0xd0,		      /* 34: call eax */
	0x39, 0xd8,		      /* 36: cmp eax,ebx */
	0x75, 0x0f,		      /* 38: jne 49 <bad> */
	0x85, 0xf6,		      /* 3a: test esi,esi */
	0x75, 0x0b,		      /* 3c: jne 49 <bad> */
	0x85, 0xff,		      /* 3e: test edi,edi */
	0x74, 0x07,		      /* 40: je 49 <bad> */
	0x85, 0xdb,		      /* 42: test ebx,ebx */
	0x74, 0x03,		      /* 44: je 49 <bad> */
	0x89, 0xf8,		      /* 46: mov eax,edi */
	0xc3,			      /* 48: ret */
	0x31, 0xc0,		      /* 49: xor eax,eax */
	0xc3,			      /* 4b: ret */
};

static void test_modules(void **state)
{
	(void)state;
	uint8_t code[0x80] = { 0 };
	memcpy(code, mods_code, sizeof(mods_code));
	memcpy(code + 0x4c, "user32.dll", 11);
	memcpy(code + 0x60, "nosuch.dll", 11);
	patch(code, sizeof(code), 0x11111111,
	      export_va(MAMORI_ARCH_X86, "kernel32.dll", "GetModuleHandleA", NULL), 4);
	patch(code, sizeof(code), 0x22222222,
	      export_va(MAMORI_ARCH_X86, "kernel32.dll", "LoadLibraryA", NULL), 4);
	mamori_emu_report r;
	mamori_emu *e = run_raw(MAMORI_ARCH_X86, code, sizeof(code), 0x1000, NULL, &r);
	assert_int_equal(r.status, MAMORI_EMU_EXIT);
	assert_true(r.exit_code != 0);
	bool found = false;
	for (size_t i = 0; i < mamori_emu_region_count(e); i++) {
		mamori_emu_region reg;
		assert_int_equal(mamori_emu_region_at(e, i, &reg), MAMORI_OK);
		if (reg.base == r.exit_code) {
			assert_int_equal(reg.kind, MAMORI_EMU_REGION_MODULE);
			assert_string_equal(reg.name, "nosuch.dll");
			found = true;
		}
	}
	assert_true(found);
	mamori_emu_free(e);

	/* The start-up environment: three modules, sorted disjoint regions
	 * below 2 GiB, export names sorted (binary search by real loaders),
	 * KUSER_SHARED_DATA. */
	for (int a = MAMORI_ARCH_X86; a <= MAMORI_ARCH_X86_64; a++) {
		static const uint8_t ret = 0xc3;
		assert_int_equal(mamori_emu_new_raw(&e, (mamori_arch)a, CODE_VA, &ret, 1, NULL), MAMORI_OK);
		size_t modules = 0;
		for (size_t i = 0; i < mamori_emu_region_count(e); i++) {
			mamori_emu_region reg;
			assert_int_equal(mamori_emu_region_at(e, i, &reg), MAMORI_OK);
			assert_true(reg.base + reg.size <= 0x80000000ull);
			if (i > 0) {
				mamori_emu_region prev;
				assert_int_equal(mamori_emu_region_at(e, i - 1, &prev), MAMORI_OK);
				assert_true(prev.base + prev.size <= reg.base);
			}
			if (reg.kind != MAMORI_EMU_REGION_MODULE)
				continue;
			modules++;
			uint8_t h[0x200], d[40];
			assert_int_equal(mamori_emu_read(e, reg.base, h, sizeof(h)), MAMORI_OK);
			uint32_t exp_rva = rd32(h + rd32(h + 0x3c) + 24 + (a == MAMORI_ARCH_X86 ? 96 : 112));
			assert_int_equal(mamori_emu_read(e, reg.base + exp_rva, d, sizeof(d)), MAMORI_OK);
			char prevname[64] = "";
			for (uint32_t k = 0; k < rd32(d + 24); k++) {
				uint8_t b[4];
				char name[64] = { 0 };
				assert_int_equal(mamori_emu_read(e, reg.base + rd32(d + 32) + 4ull * k, b, 4),
						 MAMORI_OK);
				assert_int_equal(
					mamori_emu_read(e, reg.base + rd32(b), name, sizeof(name) - 1),
					MAMORI_OK);
				assert_true(strcmp(prevname, name) < 0);
				snprintf(prevname, sizeof(prevname), "%s", name);
			}
		}
		assert_int_equal(modules, 3); /* ntdll, kernel32, kernelbase */
		uint8_t k[0x280];
		assert_int_equal(mamori_emu_read(e, 0x7ffe0000, k, sizeof(k)), MAMORI_OK);
		assert_int_equal(rd32(k + 0x26c), 10); /* KUSER_SHARED_DATA.NtMajorVersion */
		mamori_emu_free(e);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pe32_runs),
		cmocka_unit_test(test_pe64_runs),
		cmocka_unit_test(test_relocation_x86),
		cmocka_unit_test(test_relocation_x64),
		cmocka_unit_test(test_peb_walk),
		cmocka_unit_test(test_seh_x86),
		cmocka_unit_test(test_unhandled_filter_x64),
		cmocka_unit_test(test_vectored_handler),
		cmocka_unit_test(test_faults),
		cmocka_unit_test(test_unknown_api),
		cmocka_unit_test(test_api_limit),
		cmocka_unit_test(test_memory_bomb),
		cmocka_unit_test(test_insn_limit),
		cmocka_unit_test(test_virtual_clock),
		cmocka_unit_test(test_layers),
		cmocka_unit_test(test_big_copy),
		cmocka_unit_test(test_modules),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
