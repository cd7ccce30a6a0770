/*
 * Tests of the probabilistic disassembler (src/disasm/prob.c): agreement
 * with the traversal inside function symbols of the fixtures, code found
 * after inline data, determinism, the shape of the result (sorted,
 * non-overlapping instructions, spans covering the code, probabilities in
 * [0,1]) and bounded handling of hostile regions. MAMORI_FIXTURES names the
 * fixtures folder.
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

static const mamori_disasm_opts prob_opts = { .method = MAMORI_DISASM_PROBABILISTIC, .keep_padding = true };

/* Sorted, non-overlapping, inside the code, p in [0,1]; spans sorted,
 * alternating in kind where they touch, covering every code byte once,
 * and every instruction inside a code span. */
static void assert_well_formed(const mamori_binary *b, const mamori_prob_listing *l)
{
	size_t sp = 0;
	uint64_t covered = 0, total = 0;

	for (size_t i = 0; i < l->count; i++) {
		const mamori_insn *in = &l->insns[i];
		assert_true(in->len >= 1 && in->len <= 15);
		assert_true(l->p[i] >= 0.0f && l->p[i] <= 1.0f);
		if (i > 0)
			assert_true(l->insns[i - 1].va + l->insns[i - 1].len <= in->va);
		while (sp < l->n_spans && l->spans[sp].va + l->spans[sp].size <= in->va)
			sp++;
		assert_true(sp < l->n_spans);
		assert_true(l->spans[sp].is_code && l->spans[sp].va <= in->va &&
			    in->va + in->len <= l->spans[sp].va + l->spans[sp].size);
	}
	for (size_t i = 0; i < l->n_spans; i++) {
		assert_true(l->spans[i].size > 0);
		if (i > 0) {
			assert_true(l->spans[i - 1].va + l->spans[i - 1].size <= l->spans[i].va);
			if (l->spans[i - 1].va + l->spans[i - 1].size == l->spans[i].va)
				assert_true(l->spans[i - 1].is_code != l->spans[i].is_code);
		}
		covered += l->spans[i].size;
	}
	for (size_t r = 0; r < b->n_code; r++)
		total += b->code[r].size;
	assert_true(covered == total);
}

/* Field by field: mamori_insn has padding bytes. */
static bool same_insns(const mamori_insn *a, const mamori_insn *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (a[i].va != b[i].va || a[i].len != b[i].len || a[i].token != b[i].token)
			return false;
	return true;
}

static bool has_start(const mamori_prob_listing *l, uint64_t va)
{
	for (size_t i = 0; i < l->count; i++)
		if (l->insns[i].va == va)
			return true;
	return false;
}

/* ---------------------------------------------------------- hand-made code */

static void test_code_after_inline_data(void **state)
{
	(void)state;
	/* f1:  55            push rbp
	 *      48 89 e5      mov rbp, rsp
	 *      e8 rel32      call f2
	 *      5d            pop rbp
	 *      c3            ret
	 * then 48 bytes of text, then
	 * f2:  55            push rbp
	 *      48 89 e5      mov rbp, rsp
	 *      89 7d fc      mov [rbp-4], edi
	 *      8b 45 fc      mov eax, [rbp-4]
	 *      0f af c0      imul eax, eax
	 *      5d            pop rbp
	 *      c3            ret */
	static const char text[] = "Hello, this is a string between two functions!!";
	uint8_t code[128];
	size_t n = 0;
	const uint8_t f1a[] = { 0x55, 0x48, 0x89, 0xe5, 0xe8 };
	memcpy(code, f1a, sizeof(f1a));
	n = sizeof(f1a);
	size_t rel_at = n;
	n += 4;
	code[n++] = 0x5d;
	code[n++] = 0xc3;
	memcpy(code + n, text, 48);
	n += 48;
	size_t f2 = n;
	const uint8_t f2b[] = { 0x55, 0x48, 0x89, 0xe5, 0x89, 0x7d, 0xfc, 0x8b,
				0x45, 0xfc, 0x0f, 0xaf, 0xc0, 0x5d, 0xc3 };
	memcpy(code + n, f2b, sizeof(f2b));
	n += sizeof(f2b);
	int32_t rel = (int32_t)(f2 - (rel_at + 4));
	memcpy(code + rel_at, &rel, 4);

	mamori_region r;
	mamori_binary b = fake_binary(&r, code, n, true);
	mamori_prob_listing *l = NULL;
	assert_int_equal(mamori_disasm_prob(&l, &b, &prob_opts), MAMORI_OK);
	assert_well_formed(&b, l);
	const size_t f2_starts[] = { 0, 1, 4, 7, 10, 13, 14 };
	for (size_t i = 0; i < sizeof(f2_starts) / sizeof(f2_starts[0]); i++)
		assert_true(has_start(l, 0x1000 + f2 + f2_starts[i]));
	const size_t f1_starts[] = { 0, 1, 4, 9, 10 };
	for (size_t i = 0; i < sizeof(f1_starts) / sizeof(f1_starts[0]); i++)
		assert_true(has_start(l, 0x1000 + f1_starts[i]));
	/* Most of the text is data. */
	uint64_t data = 0;
	for (size_t i = 0; i < l->n_spans; i++)
		if (!l->spans[i].is_code)
			data += l->spans[i].size;
	assert_true(data >= 24);
	mamori_prob_listing_free(l);
}

/* no_symbols: function symbols stop counting, the entry point does not,
 * and the listing is the one of the same code without symbols. */
static void test_no_symbols(void **state)
{
	(void)state;
	/* f1 (entry): push rbp; mov rbp, rsp; pop rbp; ret; then text with a
	 * function symbol at its 'H' (a REX prefix that decodes). */
	static const char text[] = "Hello, this is a string between two functions!!";
	uint8_t code[64];
	const uint8_t f1[] = { 0x55, 0x48, 0x89, 0xe5, 0x5d, 0xc3 };
	memcpy(code, f1, sizeof(f1));
	memcpy(code + sizeof(f1), text, 48);
	size_t n = sizeof(f1) + 48;
	mamori_region r;
	mamori_binary b = fake_binary(&r, code, n, true);
	mamori_symbol sym = { .name = (char *)"f2", .va = 0x1000 + sizeof(f1), .is_func = true };
	mamori_prob_listing *bare = NULL, *with = NULL, *without = NULL;
	mamori_disasm_opts nosym = prob_opts;
	nosym.no_symbols = true;

	assert_int_equal(mamori_disasm_prob(&bare, &b, &prob_opts), MAMORI_OK);
	b.symbols = &sym;
	b.n_symbols = 1;
	assert_int_equal(mamori_disasm_prob(&with, &b, &prob_opts), MAMORI_OK);
	assert_int_equal(mamori_disasm_prob(&without, &b, &nosym), MAMORI_OK);
	assert_well_formed(&b, without);
	assert_true(has_start(with, sym.va));
	assert_true(has_start(without, 0x1000));
	assert_int_equal(without->count, bare->count);
	assert_true(same_insns(without->insns, bare->insns, bare->count));
	assert_false(with->count == bare->count && same_insns(with->insns, bare->insns, bare->count));
	mamori_prob_listing_free(bare);
	mamori_prob_listing_free(with);
	mamori_prob_listing_free(without);
}

/* A relocation target is a start whenever it decodes, with or without
 * no_symbols (relocations are not symbols), and costs nothing elsewhere. */
static void test_reloc_targets(void **state)
{
	(void)state;
	static const char text[] = "Hello, this is a string between two functions!!";
	uint8_t code[64];
	const uint8_t f1[] = { 0x55, 0x48, 0x89, 0xe5, 0x5d, 0xc3 };
	memcpy(code, f1, sizeof(f1));
	memcpy(code + sizeof(f1), text, 48);
	size_t n = sizeof(f1) + 48;
	mamori_region r;
	mamori_binary b = fake_binary(&r, code, n, true);
	uint64_t targets[] = { 0x1000 + sizeof(f1), 0x9000 /* outside the code: ignored */ };
	mamori_prob_listing *bare = NULL, *with = NULL, *without = NULL;
	mamori_disasm_opts nosym = prob_opts;
	nosym.no_symbols = true;

	assert_int_equal(mamori_disasm_prob(&bare, &b, &prob_opts), MAMORI_OK);
	assert_false(has_start(bare, targets[0]));
	b.reloc_targets = targets;
	b.n_reloc_targets = 2;
	assert_int_equal(mamori_disasm_prob(&with, &b, &prob_opts), MAMORI_OK);
	assert_int_equal(mamori_disasm_prob(&without, &b, &nosym), MAMORI_OK);
	assert_well_formed(&b, with);
	assert_well_formed(&b, without);
	assert_true(has_start(with, targets[0]));
	assert_true(has_start(without, targets[0]));
	assert_true(has_start(with, 0x1000));
	assert_int_equal(without->count, with->count);
	assert_true(same_insns(without->insns, with->insns, with->count));
	mamori_prob_listing_free(bare);
	mamori_prob_listing_free(with);
	mamori_prob_listing_free(without);
}

static void test_listing_matches_disasm(void **state)
{
	(void)state;
	/* xor eax,eax; inc eax; ret (x86) */
	static const uint8_t code[] = { 0x31, 0xc0, 0x40, 0xc3 };
	mamori_region r;
	mamori_binary b = fake_binary(&r, code, sizeof(code), false);
	mamori_prob_listing *pl = NULL;
	mamori_listing *l = NULL;
	assert_int_equal(mamori_disasm_prob(&pl, &b, &prob_opts), MAMORI_OK);
	assert_int_equal(mamori_disasm(&l, &b, &prob_opts), MAMORI_OK);
	assert_int_equal(l->count, pl->count);
	assert_int_equal(l->count, 3);
	assert_true(same_insns(l->insns, pl->insns, l->count));
	assert_string_not_equal(mamori_disasm_analyzer_id(&prob_opts), mamori_disasm_analyzer_id(NULL));
	assert_string_equal(mamori_disasm_analyzer_id(NULL), "traversal-v1+zydis4");
	assert_non_null(mamori_disasm_model_info());
	mamori_listing_free(l);
	mamori_prob_listing_free(pl);
	mamori_prob_listing_free(NULL);
}

static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void test_hostile_regions(void **state)
{
	(void)state;
	size_t n = (size_t)1 << 20;
	uint8_t *buf = malloc(n);
	uint64_t seed = 0x9e3779b97f4a7c15u;
	assert_non_null(buf);
	for (int is_64 = 0; is_64 <= 1; is_64++) {
		for (int kind = 0; kind < 3; kind++) {
			for (size_t i = 0; i < n; i++)
				buf[i] = kind == 0 ? (uint8_t)rng_next(&seed) : kind == 1 ? 0 : 0xff;
			mamori_region r;
			mamori_binary b = fake_binary(&r, buf, n, is_64);
			mamori_prob_listing *l = NULL, *l2 = NULL;
			assert_int_equal(mamori_disasm_prob(&l, &b, &prob_opts), MAMORI_OK);
			assert_well_formed(&b, l);
			/* Deterministic. */
			assert_int_equal(mamori_disasm_prob(&l2, &b, &prob_opts), MAMORI_OK);
			assert_int_equal(l->count, l2->count);
			assert_int_equal(l->n_spans, l2->n_spans);
			assert_true(same_insns(l->insns, l2->insns, l->count));
			assert_memory_equal(l->p, l2->p, l->count * sizeof(float));
			mamori_prob_listing_free(l);
			mamori_prob_listing_free(l2);
		}
	}
	/* Too much code: refused before any byte is read. */
	mamori_region r;
	mamori_binary b = fake_binary(&r, buf, MAMORI_DISASM_PROB_MAX_CODE + 1, true);
	mamori_prob_listing *l = NULL;
	assert_int_equal(mamori_disasm_prob(&l, &b, &prob_opts), MAMORI_ELIMIT);
	assert_null(l);
	/* max_insns holds: 600 x (push rbp; mov rbp, rsp; pop rbp; ret). */
	static const uint8_t fn[] = { 0x55, 0x48, 0x89, 0xe5, 0x5d, 0xc3 };
	for (size_t i = 0; i < 600; i++)
		memcpy(buf + i * sizeof(fn), fn, sizeof(fn));
	b = fake_binary(&r, buf, 600 * sizeof(fn), true);
	mamori_disasm_opts small = prob_opts;
	small.max_insns = 10;
	assert_int_equal(mamori_disasm_prob(&l, &b, &small), MAMORI_ELIMIT);
	assert_null(l);
	/* Overlapping regions are refused. */
	mamori_region two[2] = { { .va = 0x1000, .bytes = buf, .size = 64 },
				 { .va = 0x1020, .bytes = buf, .size = 64 } };
	b.code = two;
	b.n_code = 2;
	assert_int_equal(mamori_disasm_prob(&l, &b, &prob_opts), MAMORI_EFORMAT);
	assert_null(l);
	/* Empty code and bad arguments. */
	mamori_binary empty = { .arch = MAMORI_ARCH_X86_64 };
	assert_int_equal(mamori_disasm_prob(&l, &empty, &prob_opts), MAMORI_OK);
	assert_int_equal(l->count, 0);
	assert_int_equal(l->n_spans, 0);
	mamori_prob_listing_free(l);
	assert_int_equal(mamori_disasm_prob(NULL, &empty, &prob_opts), MAMORI_EINVAL);
	free(buf);
}

/* ------------------------------------------------------------- fixtures */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Function ranges: ELF symbol sizes, or (PE, size 0) up to the next
 * function symbol. Sorted starts `fs`, ends `fe`. */
static bool in_function(const uint64_t *fs, const uint64_t *fe, size_t n, uint64_t va)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (fs[mid] <= va)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo > 0 && va < fe[lo - 1];
}

static void agreement(const char *name)
{
	char *path = fixture_path(name);
	uint8_t *data = NULL;
	size_t size = 0;
	mamori_binary *b = NULL;
	mamori_listing *t = NULL;
	mamori_prob_listing *p = NULL;
	/* Without padding: alignment NOPs between functions are unknown in
	 * the ground truth the model learned from, and it may call them data. */
	mamori_disasm_opts trav = { 0 }, prob = { .method = MAMORI_DISASM_PROBABILISTIC };

	assert_int_equal(mamori_file_read(&data, &size, path, MAMORI_MAX_SAMPLE_SIZE), MAMORI_OK);
	assert_int_equal(mamori_binary_parse(&b, data, size, NULL), MAMORI_OK);
	uint64_t *fs = calloc(b->n_symbols + 1, 8), *fe = calloc(b->n_symbols + 1, 8);
	size_t nf = 0;
	assert_true(fs && fe);
	for (size_t i = 0; i < b->n_symbols; i++)
		if (b->symbols[i].is_func)
			fs[nf++] = b->symbols[i].va;
	qsort(fs, nf, 8, cmp_u64);
	for (size_t i = 0; i < nf; i++) {
		/* ELF symbols carry sizes; one without (like _init, written
		 * in assembly) would swallow the PLT stubs after it. */
		bool is_elf = b->format == MAMORI_FMT_ELF32 || b->format == MAMORI_FMT_ELF64;
		fe[i] = i + 1 < nf && !is_elf ? fs[i + 1] : fs[i];
		for (size_t k = 0; k < b->n_symbols; k++)
			if (b->symbols[k].is_func && b->symbols[k].va == fs[i] && b->symbols[k].size)
				fe[i] = fs[i] + b->symbols[k].size;
	}
	assert_int_equal(mamori_disasm(&t, b, &trav), MAMORI_OK);
	assert_int_equal(mamori_disasm_prob(&p, b, &prob), MAMORI_OK);
	assert_well_formed(b, p);
	size_t want = 0, found = 0, extra = 0, j = 0;
	for (size_t i = 0; i < t->count; i++) {
		uint64_t va = t->insns[i].va;
		if (!in_function(fs, fe, nf, va))
			continue;
		want++;
		while (j < p->count && p->insns[j].va < va)
			j++;
		found += j < p->count && p->insns[j].va == va;
	}
	j = 0;
	for (size_t i = 0; i < p->count; i++) {
		uint64_t va = p->insns[i].va;
		if (!in_function(fs, fe, nf, va))
			continue;
		while (j < t->count && t->insns[j].va < va)
			j++;
		extra += !(j < t->count && t->insns[j].va == va);
	}
	printf("# %s: %zu of %zu traversal starts in functions found, %zu extra\n", name, found, want, extra);
	assert_true(want > 20);
	assert_true(found * 100 >= want * 99);
	assert_true(extra * 100 <= want);
	mamori_listing_free(t);
	mamori_prob_listing_free(p);
	mamori_binary_free(b);
	free(fs);
	free(fe);
	free(data);
	free(path);
}

static void test_fixtures_agree_with_traversal(void **state)
{
	(void)state;
	static const char *const names[] = {
		"elf64", "elf32", "pe32.exe", "pe64.exe", "pe32.dll", "pe64.dll"
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		agreement(names[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_code_after_inline_data),
		cmocka_unit_test(test_listing_matches_disasm),
		cmocka_unit_test(test_no_symbols),
		cmocka_unit_test(test_reloc_targets),
		cmocka_unit_test(test_hostile_regions),
		cmocka_unit_test(test_fixtures_agree_with_traversal),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
