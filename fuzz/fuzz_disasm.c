/*
 * libFuzzer target for both disassembly methods on raw bytes (seeds:
 * fuzz/corpus/disasm). The first byte chooses the mode: bit 0 x86-64, bit 1
 * keep padding, bit 2 an entry point at the offset given by the second
 * byte, bit 3 a function symbol at half that offset, bit 4 no_symbols;
 * the rest is one code region at 0x401000. Each method must succeed
 * (inputs are far below every limit) and give a sorted, non-overlapping
 * listing inside the region; the probabilistic one also spans covering the
 * region and probabilities in [0,1], and the same instructions through
 * mamori_disasm(). The seeds are slices of the fixtures' code, text,
 * zeros and random bytes, each behind a mode byte.
 */
#include <stdint.h>
#include <stdlib.h>

#include "mamori/base.h"
#include "mamori/binfmt.h"
#include "mamori/disasm.h"

#define FUZZ_CHECK(cond)                  \
	do {                              \
		if (!(cond))              \
			__builtin_trap(); \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_listing(const mamori_region *r, const mamori_insn *insns, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		FUZZ_CHECK(insns[i].len >= 1 && insns[i].len <= 15);
		FUZZ_CHECK(insns[i].va >= r->va &&
			   mamori_span_fits(r->size, insns[i].va - r->va, insns[i].len));
		FUZZ_CHECK(i == 0 || insns[i - 1].va + insns[i - 1].len <= insns[i].va);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	uint8_t mode = data[0];
	mamori_region r = { .va = 0x401000, .bytes = data + 2, .size = size - 2 };
	mamori_binary b = { .format = (mode & 1) ? MAMORI_FMT_PE32PLUS : MAMORI_FMT_PE32,
			    .arch = (mode & 1) ? MAMORI_ARCH_X86_64 : MAMORI_ARCH_X86,
			    .entry = r.va + data[1],
			    .has_entry = (mode & 4) != 0,
			    .code = r.size ? &r : NULL,
			    .n_code = r.size ? 1 : 0 };
	mamori_symbol sym = { .name = (char *)"f", .va = r.va + data[1] / 2u, .is_func = true };
	if (mode & 8) {
		b.symbols = &sym;
		b.n_symbols = 1;
	}
	mamori_disasm_opts opts = { .keep_padding = (mode & 2) != 0, .no_symbols = (mode & 16) != 0 };
	mamori_listing *l = NULL, *lp = NULL;
	mamori_prob_listing *pl = NULL;

	FUZZ_CHECK(mamori_disasm(&l, &b, &opts) == MAMORI_OK);
	check_listing(&r, l->insns, l->count);

	opts.method = MAMORI_DISASM_PROBABILISTIC;
	FUZZ_CHECK(mamori_disasm_prob(&pl, &b, &opts) == MAMORI_OK);
	check_listing(&r, pl->insns, pl->count);
	uint64_t covered = 0;
	for (size_t i = 0; i < pl->count; i++)
		FUZZ_CHECK(pl->p[i] >= 0.0f && pl->p[i] <= 1.0f);
	for (size_t i = 0; i < pl->n_spans; i++) {
		FUZZ_CHECK(pl->spans[i].size > 0 && pl->spans[i].va >= r.va);
		FUZZ_CHECK(i == 0 || pl->spans[i - 1].va + pl->spans[i - 1].size <= pl->spans[i].va);
		covered += pl->spans[i].size;
	}
	FUZZ_CHECK(covered == r.size);
	FUZZ_CHECK(mamori_disasm(&lp, &b, &opts) == MAMORI_OK);
	FUZZ_CHECK(lp->count == pl->count);
	for (size_t i = 0; i < lp->count; i++) /* field by field: the struct has padding */
		FUZZ_CHECK(lp->insns[i].va == pl->insns[i].va && lp->insns[i].len == pl->insns[i].len &&
			   lp->insns[i].token == pl->insns[i].token);

	mamori_listing_free(l);
	mamori_listing_free(lp);
	mamori_prob_listing_free(pl);
	return 0;
}
