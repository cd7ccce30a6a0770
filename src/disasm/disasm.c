/*
 * From a parsed binary to a listing of tokens: recursive traversal, then a
 * linear sweep of the gaps.
 *
 * Traversal starts at the entry point, then each export, then each function
 * symbol, in that order, and drains a worklist (an explicit stack, never C
 * recursion) before taking the next root. It follows direct jumps, calls and
 * conditional branches and stops a path at ret, jmp, ud2, hlt, int3, bytes
 * that do not decode, or an instruction that would overlap one already
 * taken (the first path to claim a byte wins, so the result depends only on
 * the input). Indirect jumps are not resolved; the sweep picks up what they
 * reach. The sweep then decodes each gap from its start, skipping INT3 and
 * zero padding, resyncing one byte on bytes that do not decode, and never
 * letting an instruction run into traversed code.
 *
 * The traversal only claims bytes in a state map (and decodes operands of
 * relative branches only); one pass in address order then decodes what it
 * claimed again with all visible operands, makes the tokens and sweeps the
 * gaps in between. Decoding twice costs less than sorting the listing and
 * keeps memory to the output (about 25-35 MB/s of code on one core).
 *
 * Limits: the work is linear in the code size (each byte is decoded as the
 * start of an instruction at most once per phase); one state byte per code
 * byte is kept; more than max_insns listed instructions fail with
 * MAMORI_ELIMIT. Data inside code sections (jump tables of some compilers)
 * is swept as if it were code; probabilistic disassembly will do better.
 */
#include <stdlib.h>
#include <string.h>

#include "disasm_internal.h"
#include "mamori/base.h"
#include "mamori/binfmt.h"
#include "prob_internal.h"

/* Total code we accept to map: one state byte each. The loaders already
 * cap files at MAMORI_MAX_SAMPLE_SIZE, this guards hand-made binaries. */
#define MAX_CODE_BYTES ((uint64_t)1 << 30)

enum { ST_FREE = 0, ST_START, ST_BODY };

typedef struct code_map {
	const mamori_region *regions;
	size_t n;
	size_t *state_off; /* where each region's states begin in `state` */
	uint8_t *state;
	size_t hint; /* region of the last lookup; code is local */
} code_map;

typedef struct walker {
	ZydisDecoder dec;
	code_map map;
	mamori_vec insns; /* mamori_insn, in address order */
	mamori_vec stack; /* uint64_t VAs still to visit */
	size_t n_starts;  /* instructions the traversal claimed */
	bool keep_padding;
	size_t max_insns;
} walker;

static bool map_find(code_map *m, uint64_t va, size_t *out_region, size_t *out_off)
{
	size_t lo = 0, hi = m->n;

	if (m->hint < m->n && va >= m->regions[m->hint].va &&
	    va - m->regions[m->hint].va < m->regions[m->hint].size) {
		*out_region = m->hint;
		*out_off = (size_t)(va - m->regions[m->hint].va);
		return true;
	}
	while (lo < hi) { /* last region with va <= target */
		size_t mid = lo + (hi - lo) / 2;
		if (m->regions[mid].va <= va)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return false;
	lo--;
	if (va - m->regions[lo].va >= m->regions[lo].size)
		return false;
	m->hint = lo;
	*out_region = lo;
	*out_off = (size_t)(va - m->regions[lo].va);
	return true;
}

static bool decode_at(const ZydisDecoder *dec, const uint8_t *p, size_t avail, ZydisDecodedInstruction *in,
		      ZydisDecodedOperand *ops)
{
	ZydisDecoderContext ctx;

	/* Only the visible operands: the token needs nothing else, and the
	 * hidden ones (flags, stack pointer) cost decode time. */
	if (!ZYAN_SUCCESS(ZydisDecoderDecodeInstruction(dec, &ctx, p, avail, in)))
		return false;
	return ZYAN_SUCCESS(ZydisDecoderDecodeOperands(dec, &ctx, in, ops, in->operand_count_visible));
}

/* True when execution cannot fall through to the next instruction:
 * returns, unconditional jumps and the instructions that trap or halt. */
bool mamori_disasm_ends_path(const ZydisDecodedInstruction *in)
{
	switch (in->meta.category) {
	case ZYDIS_CATEGORY_RET:
	case ZYDIS_CATEGORY_UNCOND_BR: return true;
	default: break;
	}
	switch (in->mnemonic) {
	case ZYDIS_MNEMONIC_UD0:
	case ZYDIS_MNEMONIC_UD1:
	case ZYDIS_MNEMONIC_UD2:
	case ZYDIS_MNEMONIC_HLT:
	case ZYDIS_MNEMONIC_INT3:
	case ZYDIS_MNEMONIC_IRET:
	case ZYDIS_MNEMONIC_IRETD:
	case ZYDIS_MNEMONIC_IRETQ: return true;
	default: return false;
	}
}

/* Emit one decoded instruction; the listing is built in address order. */
static int emit(walker *w, uint64_t va, const ZydisDecodedInstruction *in, const ZydisDecodedOperand *ops)
{
	if (!w->keep_padding && mamori_disasm_is_padding(in, ops))
		return MAMORI_OK;
	if (w->insns.count >= w->max_insns)
		return mamori_fail(MAMORI_ELIMIT, "disasm: more than %zu instructions (max_insns)",
				   w->max_insns);
	mamori_insn insn = { .va = va, .len = in->length, .token = mamori_disasm_token(in, ops) };
	return mamori_vec_push(&w->insns, &insn);
}

static int push_target(walker *w, uint64_t va)
{
	size_t r, off;

	/* Only targets not yet decoded: this bounds the stack by the code size. */
	if (!map_find(&w->map, va, &r, &off) || w->map.state[w->map.state_off[r] + off] != ST_FREE)
		return MAMORI_OK;
	return mamori_vec_push(&w->stack, &va);
}

/* Follow one path from `va` until it ends, pushing branch targets. It only
 * claims bytes: tokens are made later, in address order, which spares a
 * sort. Operands are decoded only for relative branches. */
static int walk_path(walker *w, uint64_t va)
{
	ZydisDecoderContext ctx;
	ZydisDecodedInstruction in;
	ZydisDecodedOperand op;
	size_t r, off;
	int rc;

	if (!map_find(&w->map, va, &r, &off))
		return MAMORI_OK;
	const mamori_region *reg = &w->map.regions[r];
	uint8_t *st = w->map.state + w->map.state_off[r];
	while (off < reg->size && st[off] == ST_FREE) {
		if (!ZYAN_SUCCESS(ZydisDecoderDecodeInstruction(&w->dec, &ctx, reg->bytes + off,
								reg->size - off, &in)))
			break;
		for (size_t k = 1; k < in.length; k++)
			if (st[off + k] != ST_FREE)
				return MAMORI_OK; /* would overlap an instruction already taken */
		uint64_t here = reg->va + off;
		st[off] = ST_START;
		memset(st + off + 1, ST_BODY, in.length - 1u);
		w->n_starts++;
		if ((in.attributes & ZYDIS_ATTRIB_IS_RELATIVE) && in.operand_count_visible >= 1 &&
		    (in.meta.category == ZYDIS_CATEGORY_COND_BR ||
		     in.meta.category == ZYDIS_CATEGORY_UNCOND_BR ||
		     in.meta.category == ZYDIS_CATEGORY_CALL) &&
		    ZYAN_SUCCESS(ZydisDecoderDecodeOperands(&w->dec, &ctx, &in, &op, 1)) &&
		    op.type == ZYDIS_OPERAND_TYPE_IMMEDIATE && op.imm.is_relative) {
			ZyanU64 target;
			if (ZYAN_SUCCESS(ZydisCalcAbsoluteAddress(&in, &op, here, &target)) &&
			    (rc = push_target(w, target)) < 0)
				return rc;
		}
		if (mamori_disasm_ends_path(&in))
			break;
		off += in.length;
	}
	return MAMORI_OK;
}

static int traverse_from(walker *w, uint64_t root)
{
	int rc;

	if ((rc = push_target(w, root)) < 0)
		return rc;
	while (w->stack.count > 0) {
		uint64_t va = MAMORI_VEC_AT(&w->stack, uint64_t, w->stack.count - 1);
		w->stack.count--;
		if ((rc = walk_path(w, va)) < 0)
			return rc;
	}
	return MAMORI_OK;
}

/* Linear sweep of [off, end) of region r, all of it free. */
static int sweep_gap(walker *w, size_t r, size_t off, size_t end)
{
	ZydisDecodedInstruction in;
	ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
	const mamori_region *reg = &w->map.regions[r];
	int rc;

	while (off < end) {
		const uint8_t *p = reg->bytes + off;
		if (p[0] == 0xcc) {
			off++;
			continue;
		}
		if (p[0] == 0x00 && end - off >= 2 && p[1] == 0x00) {
			off += 2; /* zero fill; `add [eax],al` is never what it is */
			continue;
		}
		if (!decode_at(&w->dec, p, end - off, &in, ops)) {
			off++;
			continue;
		}
		if ((rc = emit(w, reg->va + off, &in, ops)) < 0)
			return rc;
		off += in.length;
	}
	return MAMORI_OK;
}

/* The listing in address order: what the traversal claimed is decoded
 * again, now with operands, and the gaps in between are swept. */
static int collect(walker *w)
{
	ZydisDecodedInstruction in;
	ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
	int rc;

	/* Most of the listing is known now: one allocation, not a series of
	 * doublings. */
	if (w->n_starts) {
		if ((rc = mamori_vec_grow(&w->insns, w->n_starts < w->max_insns ? w->n_starts : w->max_insns,
					  NULL)) < 0)
			return rc;
		w->insns.count = 0;
	}
	for (size_t r = 0; r < w->map.n; r++) {
		const mamori_region *reg = &w->map.regions[r];
		const uint8_t *st = w->map.state + w->map.state_off[r];
		size_t off = 0;
		while (off < reg->size) {
			if (st[off] == ST_START) {
				/* Same bytes, same decoder: it decodes as it did. */
				uint64_t va = reg->va + off;
				if (!decode_at(&w->dec, reg->bytes + off, reg->size - off, &in, ops))
					return mamori_fail(MAMORI_EFORMAT, "disasm: 0x%llx no longer decodes",
							   (unsigned long long)va);
				if ((rc = emit(w, va, &in, ops)) < 0)
					return rc;
				off += in.length;
				continue;
			}
			if (st[off] != ST_FREE) { /* not reached: a body follows its start */
				off++;
				continue;
			}
			size_t end = off;
			while (end < reg->size && st[end] == ST_FREE)
				end++;
			if ((rc = sweep_gap(w, r, off, end)) < 0)
				return rc;
			off = end;
		}
	}
	return MAMORI_OK;
}

int mamori_disasm_check_regions(const mamori_binary *b, uint64_t max_code, const char *method,
				uint64_t *out_total)
{
	uint64_t total = 0;

	*out_total = 0;
	if (b->n_code && !b->code)
		return mamori_fail(MAMORI_EINVAL, "disasm: %zu code regions but no array", b->n_code);
	for (size_t i = 0; i < b->n_code; i++) {
		const mamori_region *r = &b->code[i];
		if (r->size > 0 && !r->bytes)
			return mamori_fail(MAMORI_EINVAL, "disasm: code region %zu has no bytes", i);
		if (r->size > UINT64_MAX - r->va)
			return mamori_fail(MAMORI_EFORMAT, "disasm: code region %zu wraps the address space",
					   i);
		if (i > 0 && r->va < b->code[i - 1].va + b->code[i - 1].size)
			return mamori_fail(MAMORI_EFORMAT,
					   "disasm: code regions %zu and %zu overlap or are unsorted", i - 1,
					   i);
		total += r->size;
		if (total > max_code)
			return mamori_fail(MAMORI_ELIMIT, "disasm: more than %llu bytes of code%s",
					   (unsigned long long)max_code, method);
	}
	*out_total = total;
	return MAMORI_OK;
}

static int map_init(code_map *m, const mamori_binary *b)
{
	uint64_t total = 0;

	memset(m, 0, sizeof(*m));
	m->regions = b->code;
	m->n = b->n_code;
	if (m->n == 0)
		return MAMORI_OK;
	int rc = mamori_disasm_check_regions(b, MAX_CODE_BYTES, "", &total);
	if (rc < 0)
		return rc;
	m->state_off = malloc(m->n * sizeof(*m->state_off));
	m->state = calloc(total ? (size_t)total : 1, 1);
	if (!m->state_off || !m->state)
		return mamori_fail(MAMORI_ENOMEM, "disasm: state of %llu code bytes",
				   (unsigned long long)total);
	size_t at = 0;
	for (size_t i = 0; i < m->n; i++) {
		m->state_off[i] = at;
		at += b->code[i].size;
	}
	return MAMORI_OK;
}

static void map_free(code_map *m)
{
	free(m->state_off);
	free(m->state);
}

int mamori_disasm(mamori_listing **out, const mamori_binary *b, const mamori_disasm_opts *opts)
{
	static const mamori_disasm_opts defaults = { 0 };
	mamori_listing *l = NULL;
	walker w;
	int rc;

	memset(&w, 0, sizeof(w));
	mamori_vec_init(&w.insns, sizeof(mamori_insn), SIZE_MAX / sizeof(mamori_insn));
	mamori_vec_init(&w.stack, sizeof(uint64_t), SIZE_MAX / sizeof(uint64_t));
	if (!out || !b) {
		rc = mamori_fail(MAMORI_EINVAL, "disasm: no output or no binary");
		goto done;
	}
	*out = NULL;
	if (!opts)
		opts = &defaults;
	if (opts->method == MAMORI_DISASM_PROBABILISTIC) {
		rc = prob_disasm_listing(out, b, opts);
		goto done;
	}
	if (opts->method != MAMORI_DISASM_TRAVERSAL) {
		rc = mamori_fail(MAMORI_EINVAL, "disasm: unknown method %d", (int)opts->method);
		goto done;
	}
	w.max_insns = opts->max_insns ? opts->max_insns : MAMORI_DISASM_DEFAULT_MAX_INSNS;
	w.keep_padding = opts->keep_padding;
	if (b->arch == MAMORI_ARCH_X86_64)
		rc = ZYAN_SUCCESS(ZydisDecoderInit(&w.dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64))
			     ? MAMORI_OK
			     : MAMORI_EUNSUPPORTED;
	else if (b->arch == MAMORI_ARCH_X86)
		rc = ZYAN_SUCCESS(
			     ZydisDecoderInit(&w.dec, ZYDIS_MACHINE_MODE_LEGACY_32, ZYDIS_STACK_WIDTH_32))
			     ? MAMORI_OK
			     : MAMORI_EUNSUPPORTED;
	else
		rc = MAMORI_EUNSUPPORTED;
	if (rc < 0) {
		rc = mamori_fail(rc, "disasm: architecture %d is not x86 or x86-64", (int)b->arch);
		goto done;
	}
	if ((rc = map_init(&w.map, b)) < 0)
		goto done;

	if (b->has_entry && (rc = traverse_from(&w, b->entry)) < 0)
		goto done;
	for (size_t i = 0; i < b->n_exports; i++)
		if (!b->exports[i].forwarder && b->exports[i].va &&
		    (rc = traverse_from(&w, b->exports[i].va)) < 0)
			goto done;
	for (size_t i = 0; i < b->n_symbols; i++)
		if (b->symbols[i].is_func && (rc = traverse_from(&w, b->symbols[i].va)) < 0)
			goto done;
	if ((rc = collect(&w)) < 0)
		goto done;

	if (!(l = calloc(1, sizeof(*l)))) {
		rc = mamori_fail(MAMORI_ENOMEM, "disasm: listing");
		goto done;
	}
	l->insns = mamori_vec_steal(&w.insns, &l->count);
	*out = l;
	l = NULL;
	rc = MAMORI_OK;
done:
	mamori_listing_free(l);
	mamori_vec_free(&w.insns);
	mamori_vec_free(&w.stack);
	map_free(&w.map);
	return rc;
}

void mamori_listing_free(mamori_listing *l)
{
	if (!l)
		return;
	free(l->insns);
	free(l);
}

const char *mamori_disasm_analyzer_id(const mamori_disasm_opts *opts)
{
	/* Bump the version whenever tokens or the choice of instructions change. */
	if (opts && opts->method == MAMORI_DISASM_PROBABILISTIC)
		return prob_analyzer_id_of(opts);
	if (opts && opts->keep_padding)
		return "traversal-v1+pad+zydis4";
	return "traversal-v1+zydis4";
}

static bool decoder_for(ZydisDecoder *dec, bool is_64)
{
	return is_64 ? ZYAN_SUCCESS(ZydisDecoderInit(dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64))
		     : ZYAN_SUCCESS(
			       ZydisDecoderInit(dec, ZYDIS_MACHINE_MODE_LEGACY_32, ZYDIS_STACK_WIDTH_32));
}

int mamori_token_of_bytes(uint32_t *out, uint8_t *out_len, const uint8_t *bytes, size_t size, bool is_64)
{
	ZydisDecoder dec;
	ZydisDecodedInstruction in;
	ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];

	if (!out || !out_len || (!bytes && size))
		return mamori_fail(MAMORI_EINVAL, "token: no output or no bytes");
	if (!decoder_for(&dec, is_64))
		return mamori_fail(MAMORI_EUNSUPPORTED, "token: decoder init failed");
	if (!decode_at(&dec, bytes, size, &in, ops))
		return mamori_fail(MAMORI_EFORMAT, "token: %zu bytes do not decode as one instruction", size);
	*out = mamori_disasm_token(&in, ops);
	*out_len = in.length;
	return MAMORI_OK;
}

int mamori_disasm_format(char *buf, size_t bufsize, const mamori_binary *b, uint64_t va)
{
	ZydisDecoder dec;
	ZydisFormatter fmt;
	ZydisDecodedInstruction in;
	ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
	code_map m = { 0 };
	size_t r, off;

	if (!buf || bufsize == 0 || !b)
		return mamori_fail(MAMORI_EINVAL, "disasm format: no buffer or no binary");
	buf[0] = '\0';
	if (b->arch != MAMORI_ARCH_X86 && b->arch != MAMORI_ARCH_X86_64)
		return mamori_fail(MAMORI_EUNSUPPORTED, "disasm format: architecture %d", (int)b->arch);
	m.regions = b->code;
	m.n = b->code ? b->n_code : 0;
	if (!map_find(&m, va, &r, &off))
		return mamori_fail(MAMORI_ENOTFOUND, "disasm format: 0x%llx is not in code",
				   (unsigned long long)va);
	if (!decoder_for(&dec, b->arch == MAMORI_ARCH_X86_64) ||
	    !ZYAN_SUCCESS(ZydisFormatterInit(&fmt, ZYDIS_FORMATTER_STYLE_INTEL)))
		return mamori_fail(MAMORI_EUNSUPPORTED, "disasm format: Zydis init failed");
	/* All operands here: the formatter shows implicit ones too. */
	if (!ZYAN_SUCCESS(
		    ZydisDecoderDecodeFull(&dec, b->code[r].bytes + off, b->code[r].size - off, &in, ops)))
		return mamori_fail(MAMORI_EFORMAT, "disasm format: no instruction at 0x%llx",
				   (unsigned long long)va);
	if (!ZYAN_SUCCESS(ZydisFormatterFormatInstruction(&fmt, &in, ops, in.operand_count_visible, buf,
							  bufsize, va, NULL))) {
		buf[0] = '\0';
		return mamori_fail(MAMORI_ELIMIT, "disasm format: buffer of %zu bytes too small", bufsize);
	}
	return MAMORI_OK;
}
