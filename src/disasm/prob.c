/*
 * Probabilistic disassembly: decode an instruction at every byte of the
 * code (superset), give every offset the log-odds of being a true
 * instruction start, and choose the most likely stream of non-overlapping
 * instructions, the rest being data.
 *
 * The log-odds combine, in two stages learned by scripts/train-disasm:
 * n-gram tables (mnemonic; mnemonic with its fall-through successor and
 * the data-flow flags; byte before with first byte), the score of the
 * fall-through chain (decayed sum along successors, so evidence flows
 * backwards), a poison flag for chains that run into bytes that do not
 * decode or off the region, direct branches out of the code; then votes
 * of likely direct branches and calls for their targets, the stage-1 score
 * of the best instruction falling through to the offset and of a branch's
 * target, and the format's hints (entry, exports, function symbols unless
 * no_symbols, `call`/`jmp` through an import slot; the best stream always
 * starts an instruction at a hint that decodes). Targets of relocations
 * stored outside the code (mamori_binary.reloc_targets; kept even with
 * no_symbols, as they are not symbols) are starts whenever they decode
 * too, but are not a stage-2 feature.
 * The data-flow flags come from a backward liveness pass over the chain,
 * with the registers each common integer opcode reads and writes taken
 * from its raw encoding: an instruction whose result the next instruction
 * or a later one reads is likely code, one whose result is overwritten
 * unread is not (see data_flow()).
 * The best stream is a dynamic programme over offsets (backwards, two
 * states: free, or bound to start an instruction because the previous one
 * falls through), maximising the sum over bytes of log p (start) or
 * log(1 - p) (data or inside an instruction), minus learned penalties when
 * an instruction that falls through is followed by data and for each byte
 * of data.
 *
 * Limits: linear time (one decode per byte, constant work per byte after
 * it; the DP keeps only 16 slots of scores thanks to the 15-byte maximum
 * instruction length); about 20 bytes of state per code byte, and at most
 * MAMORI_DISASM_PROB_MAX_CODE bytes of code. Speed: Zydis is most of the
 * cost, so the superset decodes in Zydis's minimal mode and remembers
 * short position-independent instructions by their bytes (prob_memo), and
 * the listing remembers tokens the same way; branch votes are added up in
 * the decoding pass. The registers of
 * rarer opcodes (SSE, string, shifts) are not modelled.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <threads.h>

#include "disasm_internal.h"
#include "mamori/base.h"
#include "prob_internal.h"

#define NEG_INF (-1e30)

/* Registers (bit i: general register i, REX numbering; never rsp, which
 * every push, call and frame access touches) that the instruction reads
 * and writes, from its raw encoding, for the most common integer opcodes
 * only: compilers emit mostly these, and the data-flow evidence needs no
 * more than a rough idea. Others read and write nothing. Memory operands
 * read their base and index. Position-independent. */
static void regs_of(const ZydisDecodedInstruction *in, uint16_t *out_defs, uint16_t *out_uses)
{
	uint16_t defs = 0, uses = 0;
	unsigned rexr = 0, rexx = 0, rexb = 0;
	if (in->encoding == ZYDIS_INSTRUCTION_ENCODING_LEGACY && in->raw.rex.offset) {
		rexr = in->raw.rex.R, rexx = in->raw.rex.X, rexb = in->raw.rex.B;
	}
	unsigned op = in->opcode, mod = in->raw.modrm.mod;
	unsigned reg = in->raw.modrm.reg | rexr << 3, rm = in->raw.modrm.rm | rexb << 3;
	uint16_t rbit = (uint16_t)(1u << reg), rmbit = 0, addr = 0;
	if (mod == 3) {
		rmbit = (uint16_t)(1u << rm);
	} else if (in->raw.modrm.rm == 4) {
		if (!(in->raw.sib.base == 5 && mod == 0))
			addr |= (uint16_t)(1u << (in->raw.sib.base | rexb << 3));
		if ((in->raw.sib.index | rexx << 3) != 4)
			addr |= (uint16_t)(1u << (in->raw.sib.index | rexx << 3));
	} else if (!(in->raw.modrm.rm == 5 && mod == 0)) {
		addr = (uint16_t)(1u << rm);
	}
	if (in->opcode_map == ZYDIS_OPCODE_MAP_DEFAULT) {
		if (op < 0x40 && (op & 7) < 4) { /* add, or, adc, sbb, and, sub, xor, cmp */
			bool to_reg = op & 2, cmp = (op & 0x38) == 0x38;
			uses = (uint16_t)(rbit | rmbit | addr);
			if (!cmp)
				defs = to_reg ? rbit : rmbit;
			/* xor r, r and sub r, r only set r */
			if (mod == 3 && reg == rm && ((op & 0x38) == 0x30 || (op & 0x38) == 0x28))
				uses = 0;
		} else if (op == 0x84 || op == 0x85) { /* test */
			uses = (uint16_t)(rbit | rmbit | addr);
		} else if (op == 0x88 || op == 0x89) { /* mov r/m, r */
			uses = (uint16_t)(rbit | addr);
			defs = rmbit;
		} else if (op == 0x8a || op == 0x8b || op == 0x63) { /* mov r, r/m; movsxd */
			uses = (uint16_t)(rmbit | addr);
			defs = rbit;
		} else if (op == 0x8d) { /* lea */
			uses = addr;
			defs = rbit;
		} else if (op >= 0x50 && op <= 0x57) {
			uses = (uint16_t)(1u << ((op & 7) | rexb << 3));
		} else if ((op >= 0x58 && op <= 0x5f) || (op >= 0xb8 && op <= 0xbf)) { /* pop r; mov r, imm */
			defs = (uint16_t)(1u << ((op & 7) | rexb << 3));
		} else if (op == 0xc6 || op == 0xc7) { /* mov r/m, imm */
			uses = addr;
			defs = rmbit;
		} else if (op == 0x80 || op == 0x81 || op == 0x83) { /* group 1 r/m, imm */
			uses = (uint16_t)(rmbit | addr);
			if (in->raw.modrm.reg != 7)
				defs = rmbit;
		} else if (op == 0xc3) { /* ret reads the result */
			uses = 1;
		} else if (op == 0xff) { /* inc, dec, call, jmp, push r/m */
			uses = (uint16_t)(rmbit | addr);
			if (in->raw.modrm.reg <= 1)
				defs = rmbit;
		}
	} else if (in->opcode_map == ZYDIS_OPCODE_MAP_0F) {
		if (op == 0xb6 || op == 0xb7 || op == 0xbe || op == 0xbf) { /* movzx, movsx */
			uses = (uint16_t)(rmbit | addr);
			defs = rbit;
		} else if (op == 0xaf || (op >= 0x40 && op <= 0x4f)) { /* imul, cmovcc */
			uses = (uint16_t)(rbit | rmbit | addr);
			defs = rbit;
		}
	}
	*out_defs = defs & (uint16_t)~0x10u;
	*out_uses = uses & (uint16_t)~0x10u;
}

/* Global index of `va` in the code, or false. Regions are sorted. */
static bool global_index(const prob_state *st, uint64_t va, size_t *out)
{
	const mamori_binary *b = st->b;
	size_t lo = 0, hi = b->n_code;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (b->code[mid].va <= va)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0 || va - b->code[lo - 1].va >= b->code[lo - 1].size)
		return false;
	*out = st->region_off[lo - 1] + (size_t)(va - b->code[lo - 1].va);
	return true;
}

static void mark_hint(prob_state *st, uint64_t va)
{
	size_t g;
	if (global_index(st, va, &g))
		st->kind[g] |= PK_HINT;
}

/* Relocation targets are kept apart from PK_HINT: as a stage-2 feature
 * they made the model trade recall for precision on data in code, while
 * as forced starts alone they only add recall (disasm-eval on the ground
 * truth). */
static void mark_reloc(prob_state *st, uint64_t va)
{
	size_t g;
	if (global_index(st, va, &g))
		st->reloc[g >> 3] |= (uint8_t)(1u << (g & 7));
}

/* Log-odds kept in a byte: x8, clamped to [-10, 10]. */
static int8_t q8(float z)
{
	if (z < -10.0f)
		z = -10.0f;
	if (z > 10.0f)
		z = 10.0f;
	return (int8_t)(z * 8.0f);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* `call [slot]` / `jmp [slot]` (FF 15 / FF 25, absolute in x86, RIP-relative
 * in x86-64) through an import address table slot: compilers emit these as
 * import thunks and calls, and data rarely holds those exact six bytes. */
static bool calls_import(const prob_state *st, const mamori_region *reg, size_t off)
{
	const uint8_t *p = reg->bytes + off + 2;
	uint32_t disp = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
	uint64_t slot = st->is_64 ? reg->va + off + 6 + (uint64_t)(int64_t)(int32_t)disp : disp;
	size_t lo = 0, hi = st->n_iat;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (st->iat[mid] < slot)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < st->n_iat && st->iat[lo] == slot;
}

static inline void stage1_at(prob_state *st, const prob_model *m, size_t r, size_t g, float chain[16],
			     uint8_t poison[16], float *out_x);
static inline int hits_at(prob_state *st, size_t r, size_t g, bool fused);

/* Data-flow flags of the decoded offset g (kind, len set), walking
 * backwards: PK_DEF_USED when it writes a register that its chain then
 * reads, PK_DEF_DEAD when it writes one that its chain overwrites unread.
 * Real code does the first all the time and the second rarely. */
static inline void data_flow(prob_state *st, size_t g, size_t e, uint16_t defs, uint16_t uses,
			     uint16_t live[16], uint16_t killed[16], uint16_t used[16])
{
	size_t nx = g + st->len[g];
	uint16_t ln = 0, kn = 0, un = 0;
	if (!(st->kind[g] & PK_ENDS) && nx < e) {
		ln = live[nx & 15];
		kn = killed[nx & 15];
		un = used[nx & 15];
	}
	used[g & 15] = uses;
	if (defs & un)
		st->kind[g] |= PK_DEF_NEXT;
	else if (defs & ln)
		st->kind[g] |= PK_DEF_USED;
	if (defs & kn)
		st->kind[g] |= PK_DEF_DEAD;
	live[g & 15] = (uint16_t)(uses | (ln & ~defs));
	killed[g & 15] = (uint16_t)((defs | kn) & ~uses);
}

/* Backwards, so that stage 1 (which looks at successors) can run in the
 * same pass when `m` is given: one pass over the state instead of two. */
static int decode_region(prob_state *st, size_t r, const prob_model *m)
{
	const mamori_region *reg = &st->b->code[r];
	size_t base = st->region_off[r];
	ZydisDecodedInstruction in;
	float chain[16] = { 0 };
	uint8_t poison[16] = { 0 };
	/* Along the fall-through chain from each offset: registers read before
	 * being written (live) and written before being read. */
	uint16_t live[16] = { 0 }, killed[16] = { 0 }, used[16] = { 0 };

	for (size_t off = reg->size; off-- > 0;) {
		size_t g = base + off;
		const uint8_t *p = reg->bytes + off;
		uint16_t defs, uses, mn;
		uint8_t len, k;
		int64_t rel = 0;
		prob_memo *memo = NULL;
		uint32_t key = 0;
		st->target[g] = PROB_NO_TARGET;
		if (reg->size - off >= 3) {
			key = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16;
			memo = &st->memo[(key * 0x9E3779B1u) >> (32 - st->memo_bits)];
		}
		if (memo && memo->len && memo->key == key) {
			len = memo->len;
			k = memo->kind;
			mn = memo->mnem;
			defs = memo->defs;
			uses = memo->uses;
			rel = memo->rel;
		} else if (ZYAN_SUCCESS(ZydisDecoderDecodeInstruction(&st->dec_min, NULL, p, reg->size - off,
								      &in))) {
			regs_of(&in, &defs, &uses);
			len = in.length;
			mn = (uint16_t)(in.mnemonic < PROB_MNEM_END ? in.mnemonic : PROB_MNEM_END - 1);
			k = PK_VALID;
			if (mamori_disasm_ends_path(&in))
				k |= PK_ENDS;
			/* PK_BRANCH here means "direct branch by `rel`"; whether
			 * the target is in the code is settled below. */
			if ((in.attributes & ZYDIS_ATTRIB_IS_RELATIVE) && in.raw.imm[0].is_relative &&
			    (in.meta.category == ZYDIS_CATEGORY_COND_BR ||
			     in.meta.category == ZYDIS_CATEGORY_UNCOND_BR ||
			     in.meta.category == ZYDIS_CATEGORY_CALL)) {
				k |= PK_BRANCH;
				rel = in.raw.imm[0].value.s;
			}
			if (memo && len <= 3) {
				/* Short instructions: the same bytes always decode
				 * the same (a branch's displacement is in its key). */
				memo->key = key;
				memo->len = len;
				memo->kind = k;
				memo->mnem = mn;
				memo->defs = defs;
				memo->uses = uses;
				memo->rel = (int32_t)rel;
			}
		} else {
			st->len[g] = 0;
			st->kind[g] = 0;
			st->mnem[g] = 0;
			live[g & 15] = killed[g & 15] = used[g & 15] = 0;
			if (m)
				stage1_at(st, m, r, g, chain, poison, NULL);
			continue;
		}
		if (k & PK_BRANCH) {
			uint64_t t = reg->va + off + len + (uint64_t)rel;
			size_t tg;
			if (!st->is_64)
				t &= 0xffffffffu;
			if (global_index(st, t, &tg)) {
				st->target[g] = (uint32_t)tg;
			} else {
				k = (uint8_t)((k & ~PK_BRANCH) | PK_OUTSIDE);
			}
		}
		if (len == 6 && st->n_iat && p[0] == 0xff && (p[1] == 0x15 || p[1] == 0x25) &&
		    calls_import(st, reg, off))
			k |= PK_HINT;
		st->len[g] = len;
		st->kind[g] = k;
		st->mnem[g] = mn;
		data_flow(st, g, base + reg->size, defs, uses, live, killed, used);
		if (m) {
			int rc;
			stage1_at(st, m, r, g, chain, poison, NULL);
			if ((rc = hits_at(st, r, g, true)) < 0)
				return rc;
		}
	}
	return MAMORI_OK;
}

int prob_superset(prob_state *st, const mamori_binary *b, bool use_symbols, const prob_model *m)
{
	uint64_t total64 = 0;
	int rc;

	memset(st, 0, sizeof(*st));
	st->b = b;
	if ((rc = mamori_disasm_check_regions(b, MAMORI_DISASM_PROB_MAX_CODE, " for the probabilistic method",
					      &total64)) < 0)
		return rc;
	size_t total = (size_t)total64; /* at most MAMORI_DISASM_PROB_MAX_CODE */
	st->is_64 = b->arch == MAMORI_ARCH_X86_64;
	if (b->arch == MAMORI_ARCH_X86_64)
		rc = ZYAN_SUCCESS(
			     ZydisDecoderInit(&st->dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64))
			     ? MAMORI_OK
			     : MAMORI_EUNSUPPORTED;
	else if (b->arch == MAMORI_ARCH_X86)
		rc = ZYAN_SUCCESS(
			     ZydisDecoderInit(&st->dec, ZYDIS_MACHINE_MODE_LEGACY_32, ZYDIS_STACK_WIDTH_32))
			     ? MAMORI_OK
			     : MAMORI_EUNSUPPORTED;
	else
		rc = MAMORI_EUNSUPPORTED;
	if (rc < 0)
		return mamori_fail(rc, "disasm: architecture %d is not x86 or x86-64", (int)b->arch);
	/* The superset needs only lengths, mnemonics, categories and relative
	 * immediates, which Zydis's minimal mode gives about 10% faster. */
	st->dec_min = st->dec;
	if (!ZYAN_SUCCESS(ZydisDecoderEnableMode(&st->dec_min, ZYDIS_DECODER_MODE_MINIMAL, ZYAN_TRUE)))
		return mamori_fail(MAMORI_EUNSUPPORTED, "disasm: Zydis has no minimal mode");
	st->n = total;
	size_t n1 = total ? total : 1;
	st->region_off = malloc((b->n_code + 1) * sizeof(*st->region_off));
	st->len = malloc(n1);
	st->kind = malloc(n1);
	st->mnem = malloc(n1 * sizeof(*st->mnem));
	st->target = malloc(n1 * sizeof(*st->target));
	st->score = malloc(n1 * sizeof(*st->score));
	st->hits = calloc(n1, sizeof(*st->hits));
	st->pred = malloc(n1);
	mamori_vec_init(&st->pending, sizeof(uint32_t), SIZE_MAX / sizeof(uint32_t));
	st->tq = calloc(n1, 1);
	st->choice = calloc(n1, 1);
	st->reloc = calloc(n1 / 8 + 1, 1);
	/* Small code needs a small memo: zeroing it is a fixed cost per call. */
	st->memo_bits = 8;
	while (st->memo_bits < PROB_MEMO_BITS && ((size_t)1 << (st->memo_bits + 2)) < total)
		st->memo_bits++;
	st->memo = calloc((size_t)1 << st->memo_bits, sizeof(*st->memo));
	if (!st->region_off || !st->len || !st->kind || !st->mnem || !st->target || !st->score || !st->hits ||
	    !st->pred || !st->tq || !st->choice || !st->reloc || !st->memo)
		return mamori_fail(MAMORI_ENOMEM, "disasm: state of %zu code bytes", total);
	size_t at = 0;
	for (size_t r = 0; r < b->n_code; r++) {
		st->region_off[r] = at;
		at += b->code[r].size;
	}
	st->region_off[b->n_code] = at;
	for (int i = 0; i <= 1024; i++) {
		double z = (i - 512) / 16.0;
		st->softplus[i] = (float)(z > 0 ? z + log1p(exp(-z)) : log1p(exp(z)));
		st->sigmoid_q[i] = (uint16_t)lrint(PROB_HITS_ONE / (1.0 + exp(-z)));
	}
	memset(st->pred, q8(-10.0f), n1);
	if (b->n_imports && b->imports) {
		if (!(st->iat = malloc(b->n_imports * sizeof(*st->iat))))
			return mamori_fail(MAMORI_ENOMEM, "disasm: %zu import slots", b->n_imports);
		for (size_t i = 0; i < b->n_imports; i++)
			st->iat[i] = b->imports[i].thunk_va;
		st->n_iat = b->n_imports;
		qsort(st->iat, st->n_iat, sizeof(*st->iat), cmp_u64);
	}
	for (size_t r = 0; r < b->n_code; r++)
		if ((rc = decode_region(st, r, m)) < 0)
			return rc;
	if (m) {
		/* Branches whose targets were not scored yet when they were. */
		const uint32_t *pend = st->pending.data;
		for (size_t i = 0; i < st->pending.count; i++)
			st->tq[pend[i]] = q8(st->score[st->target[pend[i]]]);
		st->hits_done = true;
	}
	if (b->has_entry)
		mark_hint(st, b->entry);
	for (size_t i = 0; i < b->n_exports; i++)
		if (!b->exports[i].forwarder && b->exports[i].va)
			mark_hint(st, b->exports[i].va);
	/* Relocations are not symbols: they stay with no_symbols. */
	for (size_t i = 0; i < b->n_reloc_targets && b->reloc_targets; i++)
		mark_reloc(st, b->reloc_targets[i]);
	if (use_symbols)
		for (size_t i = 0; i < b->n_symbols; i++)
			if (b->symbols[i].is_func)
				mark_hint(st, b->symbols[i].va);
	return MAMORI_OK;
}

void prob_state_free(prob_state *st)
{
	if (!st)
		return;
	free(st->region_off);
	free(st->len);
	free(st->kind);
	free(st->mnem);
	free(st->target);
	free(st->score);
	free(st->hits);
	free(st->pred);
	free(st->iat);
	free(st->tq);
	free(st->choice);
	free(st->reloc);
	free(st->memo);
	mamori_vec_free(&st->pending);
	memset(st, 0, sizeof(*st));
}

void prob_keys(const prob_state *st, size_t region, size_t g, uint32_t out[3])
{
	size_t s = st->region_off[region], e = st->region_off[region + 1];
	const uint8_t *bytes = st->b->code[region].bytes;
	uint32_t m1 = st->mnem[g], m2;

	if ((st->kind[g] & PK_VALID) && (st->kind[g] & PK_ENDS))
		m2 = PROB_MNEM_END;
	else if (!(st->kind[g] & PK_VALID) || g + st->len[g] >= e)
		m2 = 0; /* no successor: does not decode, or runs off the region */
	else
		m2 = st->mnem[g + st->len[g]];
	uint32_t arch = st->is_64 ? 1u : 0u;
	/* The bigram is also conditioned on the data-flow flags. */
	uint32_t df = (st->kind[g] & PK_DEF_USED ? 1u : 0u) | (st->kind[g] & PK_DEF_DEAD ? 2u : 0u) |
		      (st->kind[g] & PK_DEF_NEXT ? 4u : 0u);
	out[0] = arch << 11 | m1;
	out[1] = arch << 16 |
		 (((m1 * 0x9E3779B1u) ^ (m2 * 0x85EBCA77u) ^ (df * 0xC2B2AE3Du) ^ ((m1 ^ m2) >> 3)) >> 16);
	out[2] = arch << 16 | (g > s ? (uint32_t)bytes[g - s - 1] << 8 : 0) | bytes[g - s];
}

static inline float softplus(const prob_state *st, float z)
{
	if (z <= -32.0f)
		return 0.0f;
	if (z >= 32.0f)
		return z;
	return st->softplus[(int)((z + 32.0f) * 16.0f + 0.5f)];
}

/* Stage-1 probability in units of 1/PROB_HITS_ONE; integers, so that the
 * votes add up to the same sums in any order. */
static inline uint32_t sigmoid_q(const prob_state *st, float z)
{
	if (z <= -32.0f)
		return 0;
	if (z >= 32.0f)
		return PROB_HITS_ONE;
	return st->sigmoid_q[(int)((z + 32.0f) * 16.0f + 0.5f)];
}

float prob_sigmoid(float z)
{
	if (z < -40.0f)
		return 0.0f;
	if (z > 40.0f)
		return 1.0f;
	return 1.0f / (1.0f + expf(-z));
}

/* Stage 1 at global offset g of region r, walking backwards: `chain` and
 * `poison` hold the last 16 offsets' chain scores and poison flags, which
 * is enough since a successor is at most 15 bytes ahead. */
static inline void stage1_at(prob_state *st, const prob_model *m, size_t r, size_t g, float chain[16],
			     uint8_t poison[16], float *out_x)
{
	size_t e = st->region_off[r + 1];
	uint32_t k[3];
	float x[PROB_S1_NW] = { 1.0f, 0, 0, 0, 0 };
	uint8_t kind = st->kind[g];
	if (!(kind & PK_VALID)) {
		chain[g & 15] = 0;
		poison[g & 15] = 1;
		st->score[g] = PROB_INVALID_LOGIT;
		if (out_x)
			memcpy(out_x + g * PROB_S1_NW, x, sizeof(x));
		return;
	}
	prob_keys(st, r, g, k);
	x[1] = (m->unigram[k[0]] + m->bigram[k[1]] + m->bytepair[k[2]]) / PROB_TABLE_SCALE;
	size_t nx = g + st->len[g];
	uint8_t pois = 0;
	if (!(kind & PK_ENDS)) {
		if (nx >= e) {
			pois = 1;
		} else {
			x[2] = chain[nx & 15];
			pois = poison[nx & 15];
		}
	}
	x[3] = pois;
	x[4] = (kind & PK_OUTSIDE) ? 1.0f : 0.0f;
	chain[g & 15] = x[1] + m->decay * x[2];
	poison[g & 15] = pois;
	/* w1 . x, spelled out: this runs once per code byte. */
	st->score[g] = m->w1[0] + m->w1[1] * x[1] + m->w1[2] * x[2] + m->w1[3] * x[3] + m->w1[4] * x[4];
	if (out_x)
		memcpy(out_x + g * PROB_S1_NW, x, sizeof(x));
}

void prob_stage1(prob_state *st, const prob_model *m, float *out_x)
{
	for (size_t r = 0; r < st->b->n_code; r++) {
		size_t s = st->region_off[r], e = st->region_off[r + 1];
		float chain[16] = { 0 };
		uint8_t poison[16] = { 0 };
		for (size_t g = e; g-- > s;)
			stage1_at(st, m, r, g, chain, poison, out_x);
	}
}

/* Votes of the branch at g for its target, and g as the fall-through
 * predecessor of its successor; every sum or maximum here is the same in
 * any order. `fused`: called from the superset's backward pass, where a
 * target that has no stage-1 score yet waits in st->pending. */
static inline int hits_at(prob_state *st, size_t r, size_t g, bool fused)
{
	uint8_t k = st->kind[g];
	if (!(k & PK_VALID))
		return MAMORI_OK;
	float z = st->score[g];
	if (k & PK_BRANCH) {
		uint32_t t = st->target[g];
		if (z > -12.0f) {
			uint32_t h = st->hits[t] + sigmoid_q(st, z);
			st->hits[t] = h < st->hits[t] ? UINT32_MAX : h;
		}
		if (!fused || t < st->region_off[r] || (t >= g && t < st->region_off[r + 1]))
			st->tq[g] = q8(st->score[t]);
		else {
			uint32_t gi = (uint32_t)g;
			int rc = mamori_vec_push(&st->pending, &gi);
			if (rc < 0)
				return rc;
		}
	}
	size_t nx = g + st->len[g];
	int8_t qz = q8(z);
	if (!(k & PK_ENDS) && nx < st->region_off[r + 1]) {
		int8_t was = st->pred[nx];
		st->pred[nx] = qz > was ? qz : was;
	}
	return MAMORI_OK;
}

void prob_hits(prob_state *st)
{
	/* Done already when prob_superset() had the model. */
	if (st->n == 0 || st->hits_done)
		return;
	for (size_t r = 0; r < st->b->n_code; r++)
		for (size_t g = st->region_off[r]; g < st->region_off[r + 1]; g++)
			(void)hits_at(st, r, g, false);
	st->hits_done = true;
}

void prob_stage2_x(const prob_state *st, size_t g, float *out)
{
	out[0] = 1.0f;
	out[1] = st->score[g];
	out[2] = st->hits[g] > 0 ? log1pf(st->hits[g] / (float)PROB_HITS_ONE) : 0.0f;
	out[3] = (st->kind[g] & PK_HINT) ? 1.0f : 0.0f;
	out[4] = st->pred[g] / 8.0f;
	out[5] = st->tq[g] / 8.0f;
}

/* w2 . prob_stage2_x(), spelled out: this runs once per code byte. */
static inline float final_score(const prob_state *st, const prob_model *m, size_t g)
{
	const float *w = m->w2;
	float z = w[0] + w[1] * st->score[g] + w[4] * (st->pred[g] / 8.0f) + w[5] * (st->tq[g] / 8.0f);
	if (st->hits[g] > 0)
		z += w[2] * log1pf(st->hits[g] / (float)PROB_HITS_ONE);
	if (st->kind[g] & PK_HINT)
		z += w[3];
	return z;
}

enum { CH_START = 1, CH_FORCE_NEXT = 2 };

void prob_best_stream(prob_state *st, const prob_model *m)
{
	/* The final log-odds are made here, in the same backward pass: a
	 * stage-1 score is read (as itself, or as a target's or a
	 * predecessor's) only before it is overwritten, since prob_hits()
	 * already copied what the others need. */
	for (size_t r = 0; r < st->b->n_code; r++) {
		size_t s = st->region_off[r], e = st->region_off[r + 1];
		/* F: best of the suffix when free; G: when it must start an
		 * instruction; SQ: sum of log(1 - p) over the suffix. Only the
		 * next 15 offsets are ever looked at. */
		double F[16] = { 0 }, G[16] = { 0 }, SQ[16] = { 0 };
		for (size_t g = e; g-- > s;) {
			double lq = 0, lp = NEG_INF;
			if (st->kind[g] & PK_VALID) {
				float z = st->score[g] = final_score(st, m, g);
				lq = -softplus(st, z);
				lp = lq + z; /* softplus(-z) = softplus(z) - z */
			}
			double sq_next = g + 1 < e ? SQ[(g + 1) & 15] : 0.0;
			double f_next = g + 1 < e ? F[(g + 1) & 15] : 0.0;
			double gi = NEG_INF;
			uint8_t ch = 0;
			size_t nx = g + st->len[g];
			if ((st->kind[g] & PK_VALID) && nx <= e) {
				double sq_nx = nx < e ? SQ[nx & 15] : 0.0;
				double fn = nx < e ? F[nx & 15] : 0.0, gn = nx < e ? G[nx & 15] : 0.0;
				double cont = fn;
				if (!(st->kind[g] & PK_ENDS) && nx < e) {
					cont = fn - m->break_penalty;
					bool bind = gn >= cont;
					ch |= (uint8_t)(bind * CH_FORCE_NEXT);
					cont = bind ? gn : cont;
				}
				gi = lp + (sq_next - sq_nx) + cont;
			}
			double data = lq + f_next - m->data_penalty;
			/* The format's hints (entry, exports, function symbols,
			 * relocation targets) are starts whenever they decode. */
			if (((st->kind[g] & PK_HINT) || ((st->reloc[g >> 3] >> (g & 7)) & 1)) && gi > NEG_INF)
				data = NEG_INF;
			/* Branch-free: which way this goes is data-dependent. */
			bool start = gi >= data;
			ch |= (uint8_t)(start * CH_START);
			F[g & 15] = start ? gi : data;
			G[g & 15] = gi;
			SQ[g & 15] = lq + sq_next;
			st->choice[g] = ch;
		}
	}
}

void prob_walk_init(prob_walk *w, const prob_state *st, size_t region)
{
	w->g = st->region_off[region];
	w->end = st->region_off[region + 1];
	w->forced = false;
}

bool prob_walk_next(prob_walk *w, const prob_state *st, size_t *out_g)
{
	while (w->g < w->end) {
		size_t g = w->g;
		uint8_t ch = st->choice[g];
		/* A bound offset has a finite G whenever the DP chose to bind it. */
		if (w->forced || (ch & CH_START)) {
			w->forced = (ch & CH_FORCE_NEXT) != 0;
			w->g = g + (st->len[g] ? st->len[g] : 1);
			*out_g = g;
			return true;
		}
		w->g++;
	}
	return false;
}

static bool decode_full(const prob_state *st, const uint8_t *p, size_t avail, ZydisDecodedInstruction *in,
			ZydisDecodedOperand *ops)
{
	ZydisDecoderContext ctx;
	if (!ZYAN_SUCCESS(ZydisDecoderDecodeInstruction(&st->dec, &ctx, p, avail, in)))
		return false;
	return ZYAN_SUCCESS(ZydisDecoderDecodeOperands(&st->dec, &ctx, in, ops, in->operand_count_visible));
}

/* Tokens of short instructions by their bytes: a token never depends on
 * where the instruction is, and most listed instructions are short and
 * repeat (push, pop, ret, mov between registers). */
typedef struct token_memo {
	uint64_t key; /* the instruction's bytes, little-endian */
	uint32_t token;
	uint8_t len; /* 0: empty */
	bool pad;
} token_memo;

/* Length, token and padding status of the instruction at `off` of `reg`:
 * 1 when it decodes, 0 when it does not, or an error. */
static int token_at(const prob_state *st, token_memo *tm, const mamori_region *reg, size_t off,
		    uint8_t *out_len, uint32_t *out_token, bool *out_pad)
{
	const uint8_t *p = reg->bytes + off;
	size_t avail = reg->size - off;
	uint8_t len = st->len[st->region_off[reg - st->b->code] + off];
	token_memo *e = NULL;
	uint64_t key = 0;

	if (len >= 1 && len <= 8 && avail >= len) {
		for (uint8_t i = 0; i < len; i++)
			key |= (uint64_t)p[i] << (8 * i);
		e = &tm[((key ^ len) * 0x9E3779B97F4A7C15u) >> (64 - st->memo_bits)];
		if (e->len == len && e->key == key) {
			*out_len = len;
			*out_token = e->token;
			*out_pad = e->pad;
			return 1;
		}
	}
	ZydisDecodedInstruction in;
	ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
	if (!decode_full(st, p, avail, &in, ops))
		return 0;
	*out_len = in.length;
	*out_token = mamori_disasm_token(&in, ops);
	*out_pad = mamori_disasm_is_padding(&in, ops);
	if (e && in.length == len) {
		e->key = key;
		e->len = len;
		e->token = *out_token;
		e->pad = *out_pad;
	}
	return 1;
}

static int push_span(mamori_vec *spans, uint64_t va, uint64_t size, bool is_code)
{
	if (spans->count > 0) {
		mamori_disasm_span *last = &MAMORI_VEC_AT(spans, mamori_disasm_span, spans->count - 1);
		if (last->is_code == is_code && last->va + last->size == va) {
			last->size += size;
			return MAMORI_OK;
		}
	}
	mamori_disasm_span sp = { .va = va, .size = size, .is_code = is_code };
	return mamori_vec_push(spans, &sp);
}

/* Run the whole pipeline and collect the chosen instructions (and, when
 * `spans`/`probs` are given, the spans and probabilities). */
static int run(const mamori_binary *b, const mamori_disasm_opts *opts, mamori_vec *insns, mamori_vec *probs,
	       mamori_vec *spans)
{
	static const mamori_disasm_opts defaults = { 0 };
	const prob_model *m = &prob_model_builtin;
	prob_state st;
	token_memo *tmemo = NULL;
	int rc;

	memset(&st, 0, sizeof(st));
	if (!b) {
		rc = mamori_fail(MAMORI_EINVAL, "disasm: no binary");
		goto done;
	}
	if (!opts)
		opts = &defaults;
	size_t max_insns = opts->max_insns ? opts->max_insns : MAMORI_DISASM_DEFAULT_MAX_INSNS;
	if ((rc = prob_superset(&st, b, !opts->no_symbols, m)) < 0)
		goto done;
	prob_hits(&st);
	prob_best_stream(&st, m);
	if (!(tmemo = calloc((size_t)1 << st.memo_bits, sizeof(*tmemo)))) {
		rc = mamori_fail(MAMORI_ENOMEM, "disasm: token memo");
		goto done;
	}

	for (size_t r = 0; r < b->n_code; r++) {
		const mamori_region *reg = &b->code[r];
		size_t base = st.region_off[r], g, covered = base;
		prob_walk w;
		prob_walk_init(&w, &st, r);
		while (prob_walk_next(&w, &st, &g)) {
			uint64_t va = reg->va + (g - base);
			uint8_t len;
			uint32_t token;
			bool pad;
			if ((rc = token_at(&st, tmemo, reg, g - base, &len, &token, &pad)) < 0)
				goto done;
			if (rc == 0) /* cannot happen: the DP binds only decodable offsets */
				continue;
			if (spans && g > covered &&
			    (rc = push_span(spans, reg->va + (covered - base), g - covered, false)) < 0)
				goto done;
			if (spans && (rc = push_span(spans, va, len, true)) < 0)
				goto done;
			covered = g + len;
			if (!opts->keep_padding && pad)
				continue;
			if (insns->count >= max_insns) {
				rc = mamori_fail(MAMORI_ELIMIT,
						 "disasm: more than %zu instructions (max_insns)", max_insns);
				goto done;
			}
			mamori_insn insn = { .va = va, .len = len, .token = token };
			if ((rc = mamori_vec_push(insns, &insn)) < 0)
				goto done;
			if (probs) {
				float p = prob_sigmoid(st.score[g]);
				if ((rc = mamori_vec_push(probs, &p)) < 0)
					goto done;
			}
		}
		size_t end = st.region_off[r + 1];
		if (spans && end > covered &&
		    (rc = push_span(spans, reg->va + (covered - base), end - covered, false)) < 0)
			goto done;
	}
	rc = MAMORI_OK;
done:
	free(tmemo);
	prob_state_free(&st);
	return rc;
}

int prob_disasm_listing(mamori_listing **out, const mamori_binary *b, const mamori_disasm_opts *opts)
{
	mamori_vec insns;
	mamori_listing *l = NULL;
	int rc;

	mamori_vec_init(&insns, sizeof(mamori_insn), SIZE_MAX / sizeof(mamori_insn));
	if (!out) {
		rc = mamori_fail(MAMORI_EINVAL, "disasm: no output");
		goto done;
	}
	*out = NULL;
	if ((rc = run(b, opts, &insns, NULL, NULL)) < 0)
		goto done;
	if (!(l = calloc(1, sizeof(*l)))) {
		rc = mamori_fail(MAMORI_ENOMEM, "disasm: listing");
		goto done;
	}
	l->insns = mamori_vec_steal(&insns, &l->count);
	*out = l;
	rc = MAMORI_OK;
done:
	mamori_vec_free(&insns);
	return rc;
}

int mamori_disasm_prob(mamori_prob_listing **out, const mamori_binary *b, const mamori_disasm_opts *opts)
{
	mamori_vec insns, probs, spans;
	mamori_prob_listing *l = NULL;
	int rc;

	mamori_vec_init(&insns, sizeof(mamori_insn), SIZE_MAX / sizeof(mamori_insn));
	mamori_vec_init(&probs, sizeof(float), SIZE_MAX / sizeof(float));
	mamori_vec_init(&spans, sizeof(mamori_disasm_span), SIZE_MAX / sizeof(mamori_disasm_span));
	if (!out) {
		rc = mamori_fail(MAMORI_EINVAL, "disasm: no output");
		goto done;
	}
	*out = NULL;
	if ((rc = run(b, opts, &insns, &probs, &spans)) < 0)
		goto done;
	if (!(l = calloc(1, sizeof(*l)))) {
		rc = mamori_fail(MAMORI_ENOMEM, "disasm: listing");
		goto done;
	}
	size_t np;
	l->insns = mamori_vec_steal(&insns, &l->count);
	l->p = mamori_vec_steal(&probs, &np);
	l->spans = mamori_vec_steal(&spans, &l->n_spans);
	*out = l;
	rc = MAMORI_OK;
done:
	mamori_vec_free(&insns);
	mamori_vec_free(&probs);
	mamori_vec_free(&spans);
	return rc;
}

void mamori_prob_listing_free(mamori_prob_listing *l)
{
	if (!l)
		return;
	free(l->insns);
	free(l->p);
	free(l->spans);
	free(l);
}

/* The ids without symbols are the model's ids with "+nosym" before the
 * decoder's suffix; built once, since the version lives in the model. */
static char nosym_id[2][96];
static once_flag nosym_once = ONCE_FLAG_INIT;

static void make_nosym_ids(void)
{
	const char *ids[2] = { prob_analyzer_id, prob_analyzer_id_pad };
	for (int i = 0; i < 2; i++) {
		const char *sfx = strrchr(ids[i], '+');
		int head = sfx ? (int)(sfx - ids[i]) : (int)strlen(ids[i]);
		snprintf(nosym_id[i], sizeof(nosym_id[i]), "%.*s+nosym%s", head, ids[i], sfx ? sfx : "");
	}
}

const char *prob_analyzer_id_of(const mamori_disasm_opts *opts)
{
	bool pad = opts && opts->keep_padding;
	if (!opts || !opts->no_symbols)
		return pad ? prob_analyzer_id_pad : prob_analyzer_id;
	call_once(&nosym_once, make_nosym_ids);
	return nosym_id[pad];
}

const char *mamori_disasm_model_info(void)
{
	return prob_model_builtin.info;
}
