/*
 * Known library code. Every program a toolchain builds carries the same
 * runtime (start-up code, CRT helpers, libgcc): thousands of instructions
 * that say which compiler was used, not which program or family this is.
 * For small programs they are half the code and make unrelated samples
 * look alike. Like FLIRT signatures, we learn that code from reference
 * binaries (trivial programs built with the toolchain) and remove every
 * instruction covered by a token k-gram that also occurs in them before
 * comparing samples.
 *
 * The set holds 64-bit hashes of k consecutive tokens; lookups are by
 * open addressing. A window of k tokens matching library code by chance is
 * rare for k = 8, and costs only those k instructions.
 */
#include <stdlib.h>
#include <string.h>

#include "mamori/base.h"
#include "mamori/binfmt.h"
#include "mamori/classify.h"
#include "mamori/disasm.h"

#define MAX_ENTRIES ((size_t)1 << 26)

struct mamori_libcode {
	unsigned k;
	mamori_disasm_opts disasm; /* how reference binaries are disassembled */
	uint64_t *slots;	   /* 0 = empty; hashes are forced non-zero */
	size_t cap, count;
};

static uint64_t window_hash(const uint32_t *t, unsigned k)
{
	uint64_t h = mamori_hash64(t, (size_t)k * sizeof(uint32_t), 0x6c6962636f6465ULL);
	return h ? h : 1;
}

int mamori_libcode_new(mamori_libcode **out, unsigned k)
{
	*out = NULL;
	if (k < 2 || k > 64)
		return mamori_fail(MAMORI_EINVAL, "library k-gram length %u is not in 2..64", k);
	mamori_libcode *lc = calloc(1, sizeof(*lc));
	if (!lc)
		return mamori_fail(MAMORI_ENOMEM, "library code set");
	lc->k = k;
	lc->disasm.method = MAMORI_DISASM_TRAVERSAL;
	*out = lc;
	return MAMORI_OK;
}

void mamori_libcode_free(mamori_libcode *lc)
{
	if (!lc)
		return;
	free(lc->slots);
	free(lc);
}

void mamori_libcode_set_disasm(mamori_libcode *lc, const mamori_disasm_opts *opts)
{
	if (opts)
		lc->disasm = *opts;
}

size_t mamori_libcode_size(const mamori_libcode *lc)
{
	return lc ? lc->count : 0;
}

static int insert(mamori_libcode *lc, uint64_t h)
{
	if ((lc->count + 1) * 2 > lc->cap) {
		size_t cap = lc->cap ? lc->cap * 2 : 4096;
		if (cap / 2 > MAX_ENTRIES)
			return mamori_fail(MAMORI_ELIMIT, "more than %zu library code windows", MAX_ENTRIES);
		uint64_t *s = calloc(cap, sizeof(uint64_t));
		if (!s)
			return mamori_fail(MAMORI_ENOMEM, "library code set of %zu", cap);
		for (size_t i = 0; i < lc->cap; i++) {
			if (!lc->slots[i])
				continue;
			size_t j = (size_t)lc->slots[i] & (cap - 1);
			while (s[j])
				j = (j + 1) & (cap - 1);
			s[j] = lc->slots[i];
		}
		free(lc->slots);
		lc->slots = s;
		lc->cap = cap;
	}
	size_t j = (size_t)h & (lc->cap - 1);
	while (lc->slots[j]) {
		if (lc->slots[j] == h)
			return MAMORI_OK;
		j = (j + 1) & (lc->cap - 1);
	}
	lc->slots[j] = h;
	lc->count++;
	return MAMORI_OK;
}

static bool contains(const mamori_libcode *lc, uint64_t h)
{
	if (!lc->cap)
		return false;
	size_t j = (size_t)h & (lc->cap - 1);
	while (lc->slots[j]) {
		if (lc->slots[j] == h)
			return true;
		j = (j + 1) & (lc->cap - 1);
	}
	return false;
}

int mamori_libcode_add_tokens(mamori_libcode *lc, const uint32_t *tokens, size_t n)
{
	for (size_t i = 0; i + lc->k <= n; i++) {
		int rc = insert(lc, window_hash(tokens + i, lc->k));
		if (rc != MAMORI_OK)
			return rc;
	}
	return MAMORI_OK;
}

int mamori_libcode_add_binary(mamori_libcode *lc, const uint8_t *data, size_t len)
{
	mamori_binary *bin = NULL;
	mamori_listing *lst = NULL;
	uint32_t *tokens = NULL;
	int rc = mamori_binary_parse(&bin, data, len, NULL);
	if (rc == MAMORI_OK)
		rc = mamori_disasm(&lst, bin, &lc->disasm);
	if (rc != MAMORI_OK || !lst->count)
		goto done;
	tokens = malloc(lst->count * sizeof(uint32_t));
	if (!tokens) {
		rc = mamori_fail(MAMORI_ENOMEM, "%zu tokens", lst->count);
		goto done;
	}
	for (size_t i = 0; i < lst->count; i++)
		tokens[i] = lst->insns[i].token;
	rc = mamori_libcode_add_tokens(lc, tokens, lst->count);
done:
	free(tokens);
	mamori_listing_free(lst);
	mamori_binary_free(bin);
	return rc;
}

size_t mamori_libcode_filter(const mamori_libcode *lc, uint32_t *tokens, size_t n)
{
	if (!lc || !lc->count || !tokens || n < lc->k)
		return n;
	/* covered_until: first index not covered by a matching window so far. */
	size_t out = 0, covered_until = 0;
	for (size_t i = 0; i < n; i++) {
		if (i + lc->k <= n && contains(lc, window_hash(tokens + i, lc->k)))
			covered_until = i + lc->k;
		if (i >= covered_until)
			tokens[out++] = tokens[i];
	}
	return out;
}
