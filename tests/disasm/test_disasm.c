/*
 * Tests of src/disasm: tokens of hand-written instruction bytes (the
 * disassembly is in the comment next to each), traversal on small hand-made
 * code, hostile regions, and the fixtures checked against objdump, which
 * must agree on >= 99% of the instruction starts inside function symbols.
 * MAMORI_FIXTURES names the fixtures folder.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fixture.h"
#include "mamori/base.h"
#include "mamori/binfmt.h"
#include "mamori/disasm.h"

/* ---------------------------------------------------------------- helpers */

static uint32_t tok(const uint8_t *bytes, size_t n, bool is_64)
{
	uint32_t t = 0;
	uint8_t len = 0;
	assert_int_equal(mamori_token_of_bytes(&t, &len, bytes, n, is_64), MAMORI_OK);
	assert_int_equal(len, n);
	return t;
}

#define TOK32(...) tok((const uint8_t[]){ __VA_ARGS__ }, sizeof((const uint8_t[]){ __VA_ARGS__ }), false)
#define TOK64(...) tok((const uint8_t[]){ __VA_ARGS__ }, sizeof((const uint8_t[]){ __VA_ARGS__ }), true)

static void assert_text(uint32_t t, const char *want)
{
	char buf[128];
	assert_int_equal(mamori_token_text(buf, sizeof(buf), t), MAMORI_OK);
	assert_string_equal(buf, want);
}

/* Sorted, non-overlapping, every instruction inside a region. */
static void assert_well_formed(const mamori_binary *b, const mamori_listing *l)
{
	for (size_t i = 0; i < l->count; i++) {
		const mamori_insn *in = &l->insns[i];
		assert_true(in->len >= 1 && in->len <= 15);
		if (i > 0)
			assert_true(l->insns[i - 1].va + l->insns[i - 1].len <= in->va);
		bool inside = false;
		for (size_t r = 0; r < b->n_code; r++)
			if (in->va >= b->code[r].va &&
			    mamori_span_fits(b->code[r].size, in->va - b->code[r].va, in->len))
				inside = true;
		assert_true(inside);
	}
}

static bool listing_has(const mamori_listing *l, uint64_t va)
{
	size_t lo = 0, hi = l->count;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (l->insns[mid].va == va)
			return true;
		if (l->insns[mid].va < va)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/* ----------------------------------------------------------------- tokens */

static void test_immediates_abstracted(void **state)
{
	(void)state;
	/* mov eax,1 / mov eax,2 */
	assert_int_equal(TOK32(0xb8, 0x01, 0x00, 0x00, 0x00), TOK32(0xb8, 0x02, 0x00, 0x00, 0x00));
	assert_int_equal(TOK64(0xb8, 0x01, 0x00, 0x00, 0x00), TOK64(0xb8, 0x02, 0x00, 0x00, 0x00));
	/* mov eax,1 vs mov rax,1 (48 c7 c0 01 00 00 00) */
	assert_int_not_equal(TOK64(0xb8, 0x01, 0x00, 0x00, 0x00),
			     TOK64(0x48, 0xc7, 0xc0, 0x01, 0x00, 0x00, 0x00));
	assert_text(TOK64(0xb8, 0x01, 0x00, 0x00, 0x00), "mov r32, imm");
	assert_text(TOK64(0x48, 0xc7, 0xc0, 0x01, 0x00, 0x00, 0x00), "mov r64, imm");
	/* mov eax,ecx vs mov edx,ebx: register numbers do not count */
	assert_int_equal(TOK32(0x89, 0xc8), TOK32(0x89, 0xda));
	/* push 1 (6a 01) and push 0x12345678 (68 ...): same push imm */
	assert_int_equal(TOK32(0x6a, 0x01), TOK32(0x68, 0x78, 0x56, 0x34, 0x12));
	assert_text(TOK32(0x6a, 0x01), "push imm");
	/* add eax,1 (83 c0 01) vs add al,1 (04 01) differ by register class */
	assert_int_not_equal(TOK32(0x83, 0xc0, 0x01), TOK32(0x04, 0x01));
}

static void test_branches_abstracted(void **state)
{
	(void)state;
	/* call rel32 with two targets */
	assert_int_equal(TOK32(0xe8, 0x00, 0x00, 0x00, 0x00), TOK32(0xe8, 0x10, 0x20, 0x00, 0x00));
	assert_text(TOK32(0xe8, 0x00, 0x00, 0x00, 0x00), "call rel");
	/* jz short (74 05) and jz near (0f 84 00 01 00 00) */
	assert_int_equal(TOK32(0x74, 0x05), TOK32(0x0f, 0x84, 0x00, 0x01, 0x00, 0x00));
	assert_text(TOK64(0x74, 0x05), "jz rel");
	/* jmp short and jmp near */
	assert_int_equal(TOK64(0xeb, 0x05), TOK64(0xe9, 0x00, 0x01, 0x00, 0x00));
	/* call [rip+disp] (ff 15 ...) vs call rax (ff d0) */
	assert_text(TOK64(0xff, 0x15, 0x10, 0x00, 0x00, 0x00), "call m64[rip+disp]");
	assert_text(TOK64(0xff, 0xd0), "call r64");
}

static void test_memory_forms(void **state)
{
	(void)state;
	assert_text(TOK32(0x8b, 0x03), "mov r32, m32[base]");		 /* mov eax,[ebx] */
	assert_text(TOK32(0x8b, 0x43, 0x08), "mov r32, m32[base+disp]"); /* mov eax,[ebx+8] */
	/* mov eax,[ebx+0x1000]: disp32 instead of disp8 is the same form */
	assert_int_equal(TOK32(0x8b, 0x43, 0x08), TOK32(0x8b, 0x83, 0x00, 0x10, 0x00, 0x00));
	/* mov eax,[ebp+0] is how [ebp] must be encoded */
	assert_text(TOK32(0x8b, 0x45, 0x00), "mov r32, m32[base]");
	assert_text(TOK32(0x8b, 0x04, 0x8b), "mov r32, m32[base+index*s]"); /* mov eax,[ebx+ecx*4] */
	assert_text(TOK32(0x8b, 0x44, 0x8b, 0x04), "mov r32, m32[base+index*s+disp]");
	assert_text(TOK32(0x8b, 0x04, 0x8d, 0x00, 0x10, 0x00, 0x00), "mov r32, m32[index*s+disp]");
	assert_text(TOK32(0xa1, 0x00, 0x10, 0x00, 0x00), "mov r32, m32[disp]"); /* mov eax,[0x1000] */
	assert_text(TOK64(0x48, 0x8b, 0x05, 0x00, 0x00, 0x00, 0x00), "mov r64, m64[rip+disp]");
	assert_text(TOK32(0x64, 0xa1, 0x30, 0x00, 0x00, 0x00),
		    "mov r32, m32[fs/gs:...]");			       /* mov eax,fs:[0x30] */
	assert_text(TOK32(0x8d, 0x43, 0x08), "lea r32, m[base+disp]"); /* lea eax,[ebx+8] */
	assert_text(TOK32(0x0f, 0xb6, 0x03), "movzx r32, m8[base]");   /* movzx eax,byte [ebx] */
	assert_text(TOK32(0xc7, 0x03, 0x01, 0x00, 0x00, 0x00), "mov m32[base], imm"); /* mov dword [ebx],1 */
	assert_text(TOK32(0xc6, 0x03, 0x01), "mov m8[base], imm");		      /* mov byte [ebx],1 */
	assert_text(TOK64(0x66, 0x0f, 0x6f, 0x01), "movdqa xmm, m128[base]");	      /* movdqa xmm0,[rcx] */
	assert_text(TOK64(0xc5, 0xfc, 0x28, 0xc1), "vmovaps ymm, ymm");		      /* vmovaps ymm0,ymm1 */
}

static void test_padding_one_token(void **state)
{
	(void)state;
	uint32_t nop = TOK32(0x90);
	assert_text(nop, "nop");
	assert_int_equal(TOK32(0x66, 0x90), nop);		    /* xchg ax,ax */
	assert_int_equal(TOK32(0x0f, 0x1f, 0x00), nop);		    /* nop dword [eax] */
	assert_int_equal(TOK64(0x0f, 0x1f, 0x44, 0x00, 0x00), nop); /* nop dword [rax+rax+0] */
	assert_int_equal(TOK64(0x66, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00), nop);
	assert_int_equal(TOK32(0x8d, 0x76, 0x00), nop);				/* lea esi,[esi+0] */
	assert_int_equal(TOK32(0x8d, 0xb4, 0x26, 0x00, 0x00, 0x00, 0x00), nop); /* lea esi,[esi+eiz+0] */
	assert_int_equal(TOK32(0x8b, 0xff), nop);				/* mov edi,edi */
	/* in 64-bit code mov edi,edi clears the upper half: not padding */
	assert_int_not_equal(TOK64(0x89, 0xff), nop);
	/* lea esi,[esi+4] is arithmetic */
	assert_int_not_equal(TOK32(0x8d, 0x76, 0x04), nop);
}

static void test_prefixes(void **state)
{
	(void)state;
	assert_text(TOK32(0xf3, 0xab), "rep stosd"); /* rep stosd: Zydis hides its operands */
	assert_int_not_equal(TOK32(0xf3, 0xab), TOK32(0xab));
	assert_text(TOK32(0xf0, 0x0f, 0xb1, 0x0b),
		    "lock cmpxchg m32[base], r32"); /* lock cmpxchg [ebx],ecx */
	assert_text(TOK32(0xf2, 0xae), "repne scasb");
	/* rep ret is an alignment trick for old AMD branch predictors */
	assert_int_equal(TOK64(0xf3, 0xc3), TOK64(0xc3));
	assert_text(TOK64(0xc3), "ret");
}

static void test_token_text_errors(void **state)
{
	(void)state;
	char buf[8];
	char big[128];
	assert_int_equal(mamori_token_text(big, sizeof(big), 0), MAMORI_EINVAL);	   /* no mnemonic */
	assert_int_equal(mamori_token_text(big, sizeof(big), 0xffffffffu), MAMORI_EINVAL); /* out of range */
	/* operand 1 without operand 0 is never produced */
	uint32_t t = TOK32(0x90) | (4u << 6);
	assert_int_equal(mamori_token_text(big, sizeof(big), t), MAMORI_EINVAL);
	assert_int_equal(mamori_token_text(buf, sizeof(buf), TOK32(0x8b, 0x43, 0x08)), MAMORI_ELIMIT);
	assert_int_equal(strlen(buf), sizeof(buf) - 1);
	uint8_t len;
	uint32_t out;
	const uint8_t bad[] = { 0xff, 0xff }; /* ff /7 is undefined */
	assert_int_equal(mamori_token_of_bytes(&out, &len, bad, sizeof(bad), false), MAMORI_EFORMAT);
}

/* -------------------------------------------------------------- traversal */

static void test_traversal_skips_data(void **state)
{
	(void)state;
	const uint8_t code[] = {
		0xeb, 0x02,		      /* 1000: jmp 1004 */
		0xff, 0xff,		      /* 1002: data (does not decode) */
		0x74, 0x06,		      /* 1004: jz 100c */
		0xe8, 0x03, 0x00, 0x00, 0x00, /* 1006: call 100e */
		0xc3,			      /* 100b: ret */
		0x90, 0xcc,		      /* 100c: nop; int3 (padding: left out) */
		0xb8, 0x01, 0x00, 0x00, 0x00, /* 100e: mov eax,1 */
		0xc3,			      /* 1013: ret */
	};
	mamori_region r;
	mamori_binary b = fake_binary(&r, code, sizeof(code), false);
	mamori_listing *l = NULL;

	assert_int_equal(mamori_disasm(&l, &b, NULL), MAMORI_OK);
	assert_well_formed(&b, l);
	const uint64_t want[] = { 0x1000, 0x1004, 0x1006, 0x100b, 0x100e, 0x1013 };
	assert_int_equal(l->count, sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < l->count; i++)
		assert_int_equal(l->insns[i].va, want[i]);
	mamori_listing_free(l);

	/* with padding kept, nop and int3 appear too */
	mamori_disasm_opts o = { .keep_padding = true };
	assert_int_equal(mamori_disasm(&l, &b, &o), MAMORI_OK);
	assert_int_equal(l->count, 8);
	assert_true(listing_has(l, 0x100c) && listing_has(l, 0x100d));
	mamori_listing_free(l);
	assert_string_not_equal(mamori_disasm_analyzer_id(&o), mamori_disasm_analyzer_id(NULL));
}

static void test_traversal_overlap_first_wins(void **state)
{
	(void)state;
	/* jz into the middle of a mov: the traversal keeps the fall-through
	 * path (taken first, depth-first on the stack) and drops the other. */
	const uint8_t code[] = {
		0x74, 0x01,		      /* 1000: jz 1003 */
		0xb8, 0xc3, 0x00, 0x00, 0x00, /* 1002: mov eax,0xc3 (1003 would be ret) */
		0xc3,			      /* 1007: ret */
	};
	mamori_region r;
	mamori_binary b = fake_binary(&r, code, sizeof(code), false);
	mamori_listing *l = NULL;

	assert_int_equal(mamori_disasm(&l, &b, NULL), MAMORI_OK);
	assert_well_formed(&b, l);
	assert_int_equal(l->count, 3);
	assert_true(listing_has(l, 0x1000) && listing_has(l, 0x1002) && listing_has(l, 0x1007));
	mamori_listing_free(l);
}

static void test_gap_sweep_and_no_code(void **state)
{
	(void)state;
	/* entry is a ret; a function only reached indirectly sits after
	 * int3 and zero padding and must be found by the sweep */
	const uint8_t code[] = {
		0xc3, 0xcc, 0xcc, 0x00, 0x00, 0x00, 0x00, 0x55, /* 1007: push ebp */
		0x89, 0xe5,					/* 1008: mov ebp,esp */
		0x5d,						/* 100a: pop ebp */
		0xc3,						/* 100b: ret */
		0xb8, 0x01, 0x00, /* 100c: truncated mov: must not run past the region */
	};
	mamori_region r;
	mamori_binary b = fake_binary(&r, code, sizeof(code), false);
	mamori_listing *l = NULL;

	assert_int_equal(mamori_disasm(&l, &b, NULL), MAMORI_OK);
	assert_well_formed(&b, l);
	assert_true(listing_has(l, 0x1000) && listing_has(l, 0x1007) && listing_has(l, 0x1008) &&
		    listing_has(l, 0x100a) && listing_has(l, 0x100b));
	assert_false(listing_has(l, 0x100c));
	mamori_listing_free(l);

	/* no code at all: an empty listing, and the entry outside code is fine */
	mamori_binary empty = { .arch = MAMORI_ARCH_X86_64, .entry = 0x1234, .has_entry = true };
	assert_int_equal(mamori_disasm(&l, &empty, NULL), MAMORI_OK);
	assert_int_equal(l->count, 0);
	mamori_listing_free(l);

	/* bad arguments */
	mamori_disasm_opts bad = { .method = (mamori_disasm_method)7 };
	assert_int_equal(mamori_disasm(&l, &b, &bad), MAMORI_EINVAL);
	assert_null(l);
	mamori_binary arm = b;
	arm.arch = (mamori_arch)99;
	assert_int_equal(mamori_disasm(&l, &arm, NULL), MAMORI_EUNSUPPORTED);
	mamori_listing_free(NULL);
}

static void test_hostile_regions(void **state)
{
	(void)state;
	const size_t n = (size_t)1 << 20;
	uint8_t *buf = malloc(n);
	mamori_region r;
	mamori_listing *l = NULL;
	uint64_t x = 0x9e3779b97f4a7c15ull;

	assert_non_null(buf);
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		buf[i] = (uint8_t)x;
	}
	for (int is64 = 0; is64 < 2; is64++) {
		mamori_binary b = fake_binary(&r, buf, n, is64);
		assert_int_equal(mamori_disasm(&l, &b, NULL), MAMORI_OK);
		assert_well_formed(&b, l);
		assert_true(l->count > n / 16);
		mamori_listing *again = NULL;
		assert_int_equal(mamori_disasm(&again, &b, NULL), MAMORI_OK); /* deterministic */
		assert_int_equal(again->count, l->count);
		assert_memory_equal(again->insns, l->insns, l->count * sizeof(mamori_insn));
		mamori_listing_free(again);
		mamori_listing_free(l);
		l = NULL;

		mamori_disasm_opts small = { .max_insns = 100 };
		assert_int_equal(mamori_disasm(&l, &b, &small), MAMORI_ELIMIT);
		assert_null(l);
		assert_non_null(strstr(mamori_error_detail(), "100"));
	}

	memset(buf, 0, n); /* all zero: the entry decodes `add [eax],al` chains, the rest is skipped */
	mamori_binary z = fake_binary(&r, buf, n, false);
	assert_int_equal(mamori_disasm(&l, &z, NULL), MAMORI_OK);
	assert_well_formed(&z, l);
	mamori_listing_free(l);
	free(buf);
}

/* ------------------------------------------------- fixtures against objdump */

static bool is_padding_text(const char *t)
{
	static const char *const pads[] = { "nop",
					    "xchg   ax,ax",
					    "int3",
					    "(bad)",
					    "endbr",
					    "lea    esi,[esi",
					    "lea    edi,[edi",
					    "mov    edi,edi",
					    "add    BYTE PTR [eax],al",
					    "add    BYTE PTR [rax],al",
					    "data16",
					    "cs nop",
					    "ds nop" };
	for (size_t i = 0; i < sizeof(pads) / sizeof(pads[0]); i++)
		if (!strncmp(t, pads[i], strlen(pads[i])))
			return true;
	return false;
}

static bool is_func_at(const mamori_binary *b, uint64_t va)
{
	for (size_t i = 0; i < b->n_symbols; i++)
		if (b->symbols[i].is_func && b->symbols[i].va == va)
			return true;
	return false;
}

/* Instruction starts objdump finds inside function symbols, and how many of
 * them our listing has. */
static void objdump_agreement(const char *name, size_t *out_total, size_t *out_found, size_t *out_count)
{
	char *path = fixture_path(name);
	uint8_t *data = NULL;
	size_t size = 0;
	mamori_binary *b = NULL;
	mamori_listing *l = NULL;
	char cmd[4200], line[1024];
	bool in_func = false;
	size_t total = 0, found = 0;

	assert_int_equal(mamori_file_read(&data, &size, path, MAMORI_MAX_SAMPLE_SIZE), MAMORI_OK);
	assert_int_equal(mamori_binary_parse(&b, data, size, NULL), MAMORI_OK);
	assert_int_equal(mamori_disasm(&l, b, NULL), MAMORI_OK);
	assert_well_formed(b, l);

	snprintf(cmd, sizeof(cmd), "objdump -d -M intel --no-show-raw-insn '%s'", path);
	FILE *f = popen(cmd, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		unsigned long long va;
		char sym[512];
		if (sscanf(line, "%llx <%511[^>]>:", &va, sym) == 2) {
			in_func = is_func_at(b, va);
			continue;
		}
		/* "  401000:\tmov ..." (wide addresses have no leading blanks) */
		char *end = NULL;
		va = strtoull(line, &end, 16);
		if (!in_func || end == line || end[0] != ':' || end[1] != '\t' || is_padding_text(end + 2))
			continue;
		total++;
		found += listing_has(l, va);
	}
	assert_int_equal(pclose(f), 0);
	*out_total = total;
	*out_found = found;
	*out_count = l->count;
	mamori_listing_free(l);
	mamori_binary_free(b);
	free(data);
	free(path);
}

static void test_fixtures_match_objdump(void **state)
{
	(void)state;
	static const char *const names[] = {
		"pe32.exe", "pe64.exe", "pe32.dll", "pe64.dll", "elf64", "elf32"
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		size_t total, found, count;
		objdump_agreement(names[i], &total, &found, &count);
		print_message("%-10s objdump starts in functions %zu, ours %zu (%.2f%%), listing %zu\n",
			      names[i], total, found, total ? 100.0 * (double)found / (double)total : 0.0,
			      count);
		assert_true(total >= 10);
		assert_true(found * 100 >= total * 99);
	}
}

static void test_stripped_and_tokens_unique(void **state)
{
	(void)state;
	static const char *const names[] = { "pe64-stripped.exe", "elf64-stripped", "pe32.exe", "pe64.exe" };
	/* texts of distinct tokens never collide: collect all, sort, compare neighbours */
	uint32_t *seen = NULL;
	size_t n_seen = 0;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char *path = fixture_path(names[i]);
		uint8_t *data = NULL;
		size_t size = 0;
		mamori_binary *b = NULL;
		mamori_listing *l = NULL;
		assert_int_equal(mamori_file_read(&data, &size, path, MAMORI_MAX_SAMPLE_SIZE), MAMORI_OK);
		assert_int_equal(mamori_binary_parse(&b, data, size, NULL), MAMORI_OK);
		assert_int_equal(mamori_disasm(&l, b, NULL), MAMORI_OK);
		assert_well_formed(b, l);
		assert_true(l->count > 100);
		seen = realloc(seen, (n_seen + l->count) * sizeof(*seen));
		assert_non_null(seen);
		for (size_t k = 0; k < l->count; k++) {
			char text[128];
			assert_int_equal(mamori_token_text(text, sizeof(text), l->insns[k].token), MAMORI_OK);
			assert_int_equal(mamori_disasm_format(text, sizeof(text), b, l->insns[k].va),
					 MAMORI_OK);
			seen[n_seen++] = l->insns[k].token;
		}
		mamori_listing_free(l);
		mamori_binary_free(b);
		free(data);
		free(path);
	}
	/* distinct tokens -> distinct texts */
	size_t uniq = 0;
	for (size_t i = 0; i < n_seen; i++) {
		size_t k;
		for (k = 0; k < uniq && seen[k] != seen[i]; k++)
			;
		if (k == uniq)
			seen[uniq++] = seen[i];
	}
	char(*texts)[128] = calloc(uniq, sizeof(*texts));
	assert_non_null(texts);
	for (size_t i = 0; i < uniq; i++)
		assert_int_equal(mamori_token_text(texts[i], sizeof(texts[i]), seen[i]), MAMORI_OK);
	for (size_t i = 0; i < uniq; i++)
		for (size_t k = i + 1; k < uniq; k++)
			assert_string_not_equal(texts[i], texts[k]);
	assert_true(uniq > 50);
	free(texts);
	free(seen);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_immediates_abstracted),
		cmocka_unit_test(test_branches_abstracted),
		cmocka_unit_test(test_memory_forms),
		cmocka_unit_test(test_padding_one_token),
		cmocka_unit_test(test_prefixes),
		cmocka_unit_test(test_token_text_errors),
		cmocka_unit_test(test_traversal_skips_data),
		cmocka_unit_test(test_traversal_overlap_first_wins),
		cmocka_unit_test(test_gap_sweep_and_no_code),
		cmocka_unit_test(test_hostile_regions),
		cmocka_unit_test(test_fixtures_match_objdump),
		cmocka_unit_test(test_stripped_and_tokens_unique),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
