/*
 * Tests of src/emu: hand-written raw code (the assembly is in the comment
 * next to the bytes) for write-then-execute, the instruction limit, faults
 * and the TEB through FS/GS, on both archs; the PE fixtures mapped, bound
 * and run to exit; and the speed of a tight loop with tracking on (printed,
 * loosely asserted: sanitizer builds and loaded machines are slower).
 * MAMORI_FIXTURES names the fixtures folder.
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

#include "mamori/base.h"
#include "mamori/binfmt.h"
#include "mamori/emu.h"

#define CODE_VA 0x400000ull

static mamori_emu_report run_raw(mamori_arch arch, const uint8_t *code, size_t n, size_t buf_size,
				 const mamori_emu_limits *lim)
{
	uint8_t *buf = calloc(1, buf_size);
	assert_non_null(buf);
	memcpy(buf, code, n);
	mamori_emu *e = NULL;
	assert_int_equal(mamori_emu_new_raw(&e, arch, CODE_VA, buf, buf_size, lim), MAMORI_OK);
	mamori_emu_report r;
	assert_int_equal(mamori_emu_run(e, &r), MAMORI_OK);
	mamori_emu_report again;
	assert_int_equal(mamori_emu_run(e, &again), MAMORI_EINVAL);
	mamori_emu_free(e);
	free(buf);
	return r;
}

/* The same bytes mean the same in both modes (edi/rdi). */
static const uint8_t wx_code[] = {
	0xbf, 0x00, 0x10, 0x40, 0x00,	    /* mov edi, 0x401000 */
	0xc7, 0x07, 0x90, 0x90, 0x90, 0x90, /* mov dword [edi], 0x90909090 */
	0xc6, 0x47, 0x04, 0xc3,		    /* mov byte [edi+4], 0xc3 (ret) */
	0xff, 0xe7,			    /* jmp edi */
};

static void check_wx(mamori_arch arch)
{
	/* Without stop_at_wx: the event is recorded and the code returns. */
	mamori_emu_report r = run_raw(arch, wx_code, sizeof(wx_code), 0x2000, NULL);
	assert_int_equal(r.status, MAMORI_EMU_EXIT);
	assert_true(r.has_wx);
	assert_int_equal(r.wx_va, CODE_VA + 0x1000);
	assert_int_equal(r.wx_insns, 4);
	assert_int_equal(r.insns, 4 + 5); /* 4 nops and the ret */

	mamori_emu_limits lim = { .stop_at_wx = true };
	r = run_raw(arch, wx_code, sizeof(wx_code), 0x2000, &lim);
	assert_int_equal(r.status, MAMORI_EMU_WX_STOP);
	assert_int_equal(r.wx_va, CODE_VA + 0x1000);
	assert_int_equal(r.insns, 4);
}

static void test_wx_x86(void **state)
{
	(void)state;
	check_wx(MAMORI_ARCH_X86);
}

static void test_wx_x64(void **state)
{
	(void)state;
	check_wx(MAMORI_ARCH_X86_64);
}

/* Data written but never executed is no event. */
static void test_no_wx_for_data(void **state)
{
	(void)state;
	static const uint8_t code[] = {
		0xbf, 0x00, 0x10, 0x40, 0x00, /* mov edi, 0x401000 */
		0xc6, 0x07, 0x01,	      /* mov byte [edi], 1 */
		0xc3,			      /* ret */
	};
	mamori_emu_report r = run_raw(MAMORI_ARCH_X86, code, sizeof(code), 0x2000, NULL);
	assert_int_equal(r.status, MAMORI_EMU_EXIT);
	assert_false(r.has_wx);
	assert_int_equal(r.insns, 3);
}

static void test_limit(void **state)
{
	(void)state;
	static const uint8_t loop[] = { 0xeb, 0xfe }; /* jmp $ */
	mamori_emu_limits lim = { .max_insns = 12345 };
	for (int a = MAMORI_ARCH_X86; a <= MAMORI_ARCH_X86_64; a++) {
		mamori_emu_report r = run_raw((mamori_arch)a, loop, sizeof(loop), 0x1000, &lim);
		assert_int_equal(r.status, MAMORI_EMU_LIMIT);
		assert_int_equal(r.insns, 12345);
		assert_int_equal(r.pc, CODE_VA);
	}
}

static void test_bad_jump(void **state)
{
	(void)state;
	static const uint8_t code[] = {
		0xb8, 0x78, 0x56, 0x34, 0x12, /* mov eax, 0x12345678 */
		0xff, 0xe0,		      /* jmp eax */
	};
	for (int a = MAMORI_ARCH_X86; a <= MAMORI_ARCH_X86_64; a++) {
		mamori_emu_report r = run_raw((mamori_arch)a, code, sizeof(code), 0x1000, NULL);
		assert_int_equal(r.status, MAMORI_EMU_FAULT);
		assert_int_equal(r.fault_addr, 0x12345678);
	}
	static const uint8_t load[] = {
		0xa1, 0x00, 0x00, 0x00, 0x00, /* mov eax, [0] */
		0xc3,
	};
	mamori_emu_report r = run_raw(MAMORI_ARCH_X86, load, sizeof(load), 0x1000, NULL);
	assert_int_equal(r.status, MAMORI_EMU_FAULT);
	assert_int_equal(r.fault_addr, 0);
}

/* TEB.Self through FS (x86) and GS (x86-64): it returns to the exit when
 * Self == 0x7ffd2000 (the documented TEB address) and halts otherwise. */
static void test_teb(void **state)
{
	(void)state;
	static const uint8_t x86[] = {
		0x64, 0xa1, 0x18, 0x00, 0x00, 0x00, /* mov eax, fs:[0x18] */
		0x8b, 0x58, 0x30,		    /* mov ebx, [eax+0x30] (PEB) */
		0x2d, 0x00, 0x20, 0xfd, 0x7f,	    /* sub eax, 0x7ffd2000 */
		0x74, 0x01,			    /* jz +1 */
		0xf4,				    /* hlt */
		0xc3,				    /* ret */
	};
	static const uint8_t x64[] = {
		0x65, 0x48, 0x8b, 0x04, 0x25, 0x30, 0x00, 0x00, 0x00, /* mov rax, gs:[0x30] */
		0x48, 0x8b, 0x58, 0x60,				      /* mov rbx, [rax+0x60] (PEB) */
		0x48, 0x2d, 0x00, 0x20, 0xfd, 0x7f,		      /* sub rax, 0x7ffd2000 */
		0x74, 0x01,					      /* jz +1 */
		0xf4,						      /* hlt */
		0xc3,						      /* ret */
	};
	mamori_emu_report r = run_raw(MAMORI_ARCH_X86, x86, sizeof(x86), 0x1000, NULL);
	assert_int_equal(r.status, MAMORI_EMU_EXIT);
	r = run_raw(MAMORI_ARCH_X86_64, x64, sizeof(x64), 0x1000, NULL);
	assert_int_equal(r.status, MAMORI_EMU_EXIT);
}

static void test_bad_args(void **state)
{
	(void)state;
	static const uint8_t ret = 0xc3;
	mamori_emu *e = (mamori_emu *)&e;
	assert_int_equal(mamori_emu_new_raw(&e, MAMORI_ARCH_X86, CODE_VA + 1, &ret, 1, NULL), MAMORI_EINVAL);
	assert_null(e);
	assert_int_equal(mamori_emu_new_raw(&e, MAMORI_ARCH_X86, 0x7fe00000, &ret, 1, NULL), MAMORI_EINVAL);
	mamori_emu_limits lim = { .max_memory = 0x10000 }; /* less than the stack */
	assert_int_equal(mamori_emu_new_raw(&e, MAMORI_ARCH_X86, CODE_VA, &ret, 1, &lim), MAMORI_ELIMIT);
	assert_null(e);
	mamori_emu_free(NULL);
	assert_string_equal(mamori_emu_status_name(MAMORI_EMU_WX_STOP), "wx_stop");
}

/* ------------------------------------------------------------ PE fixtures */

static char *fixture_path(const char *name)
{
	const char *dir = getenv("MAMORI_FIXTURES");
	if (!dir)
		dir = "tests/fixtures";
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = malloc(n);
	assert_non_null(p);
	snprintf(p, n, "%s/%s", dir, name);
	return p;
}

/* The mingw fixtures run through their CRT start-up to main and exit (the
 * exact output is checked in test_winenv.c): every import is bound to a
 * stand-in, nothing is written and then executed. */
static void check_pe(const char *name)
{
	char *path = fixture_path(name);
	uint8_t *data = NULL;
	size_t size = 0;
	assert_int_equal(mamori_file_read(&data, &size, path, 64u << 20), MAMORI_OK);
	mamori_binary *b = NULL;
	assert_int_equal(mamori_binary_parse(&b, data, size, NULL), MAMORI_OK);
	mamori_emu *e = NULL;
	assert_int_equal(mamori_emu_new(&e, b, NULL), MAMORI_OK);
	assert_int_equal(mamori_emu_image_base(e), b->image_base);
	assert_int_equal(mamori_emu_arch(e), b->arch);
	mamori_emu_report r;
	assert_int_equal(mamori_emu_run(e, &r), MAMORI_OK);
	if (r.status != MAMORI_EMU_EXIT)
		print_message("%s: %s (%s) at 0x%llx after %llu insns\n", name,
			      mamori_emu_status_name(r.status), r.fault ? r.fault : "-",
			      (unsigned long long)r.pc, (unsigned long long)r.insns);
	assert_int_equal(r.status, MAMORI_EMU_EXIT);
	assert_int_equal(r.exit_code, 0);
	assert_true(r.insns > 1000);
	assert_true(r.api_calls > 0);
	assert_int_equal(r.unknown_api_calls, 0);
	assert_false(r.has_wx);
	assert_int_equal(r.n_layers, 0);
	size_t n = 0;
	assert_non_null(mamori_emu_output(e, &n));
	assert_true(n > 0);
	/* Every IAT slot holds a stand-in export. */
	size_t w = b->arch == MAMORI_ARCH_X86 ? 4 : 8;
	for (size_t i = 0; i < b->n_imports; i++) {
		uint8_t v[8] = { 0 };
		assert_int_equal(mamori_emu_read(e, b->imports[i].thunk_va, v, w), MAMORI_OK);
		uint64_t va = 0;
		for (size_t k = 0; k < w; k++)
			va |= (uint64_t)v[k] << (8 * k);
		mamori_emu_api_info info;
		assert_int_equal(mamori_emu_api_at(e, va, &info), MAMORI_OK);
		if (b->imports[i].name)
			assert_string_equal(info.name, b->imports[i].name);
	}
	mamori_emu_free(e);
	mamori_binary_free(b);
	free(data);
	free(path);
}

static void test_pe32(void **state)
{
	(void)state;
	check_pe("pe32.exe");
}

static void test_pe64(void **state)
{
	(void)state;
	check_pe("pe64.exe");
}

/* ------------------------------------------------------------------ speed */

static double mips(const uint8_t *code, size_t n, uint64_t want_insns)
{
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	mamori_emu_report r = run_raw(MAMORI_ARCH_X86, code, n, 0x2000, NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_int_equal(r.status, MAMORI_EMU_EXIT);
	assert_int_equal(r.insns, want_insns);
	double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	return (double)r.insns / s / 1e6;
}

/* Speed with every hook installed, on a register-only loop and on a loop
 * that stores to a page on each iteration (the write hook fires). */
static void test_speed(void **state)
{
	(void)state;
	static const uint8_t regs[] = {
		0xb9, 0x00, 0x2d, 0x31, 0x01, /* mov ecx, 20,000,000 */
		0x49,			      /* l: dec ecx */
		0x75, 0xfd,		      /* jnz l */
		0xc3,			      /* ret */
	};
	static const uint8_t stores[] = {
		0xbf, 0x00, 0x10, 0x40, 0x00, /* mov edi, 0x401000 */
		0xb9, 0x80, 0x96, 0x98, 0x00, /* mov ecx, 10,000,000 */
		0x89, 0x0f,		      /* l: mov [edi], ecx */
		0x49,			      /* dec ecx */
		0x75, 0xfb,		      /* jnz l */
		0xc3,			      /* ret */
	};
	double a = mips(regs, sizeof(regs), 2 + 2ull * 20000000);
	double b = mips(stores, sizeof(stores), 3 + 3ull * 10000000);
	print_message("emu speed (tracking on): %.1f M insns/s register loop, %.1f M insns/s store loop\n", a,
		      b);
	assert_true(a > 1.0 && b > 1.0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_wx_x86),	       cmocka_unit_test(test_wx_x64),
		cmocka_unit_test(test_no_wx_for_data), cmocka_unit_test(test_limit),
		cmocka_unit_test(test_bad_jump),       cmocka_unit_test(test_teb),
		cmocka_unit_test(test_bad_args),       cmocka_unit_test(test_pe32),
		cmocka_unit_test(test_pe64),	       cmocka_unit_test(test_speed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
