/*
 * Internals shared by the files of src/disasm: the normalisation of one
 * decoded Zydis instruction into a token, and the padding test. Not a
 * public header: only src/disasm includes it.
 */
#ifndef MAMORI_DISASM_INTERNAL_H
#define MAMORI_DISASM_INTERNAL_H

#include <Zydis/Zydis.h>
#include <stdbool.h>
#include <stdint.h>

#include "mamori/binfmt.h"
#include "mamori/disasm.h"

/* Token layout (see mamori/disasm.h). */
#define TOK_MNEM_SHIFT	 21
#define TOK_MNEM_MASK	 0x7ffu
#define TOK_PREFIX_SHIFT 19
#define TOK_PREFIX_MASK	 0x3u
#define TOK_MSIZE_SHIFT	 16
#define TOK_MSIZE_MASK	 0x7u
#define TOK_OP_BITS	 5
#define TOK_OP_MASK	 0x1fu
#define TOK_OP_SHIFT(i)	 (11 - TOK_OP_BITS * (i)) /* 11, 6, 1 */
#define TOK_MORE_OPS	 0x1u

enum { TOK_PREFIX_NONE, TOK_PREFIX_LOCK, TOK_PREFIX_REP, TOK_PREFIX_REPNE };

/** Operand kinds (5 bits). Values are part of stored fingerprints: append,
 *  never renumber. */
enum {
	OPK_NONE = 0,
	OPK_GPR8,
	OPK_GPR16,
	OPK_GPR32,
	OPK_GPR64,
	OPK_SEG,
	OPK_X87,
	OPK_MMX,
	OPK_XMM,
	OPK_YMM,
	OPK_ZMM,
	OPK_MASK,
	OPK_CTRL,
	OPK_DEBUG,
	OPK_OTHER_REG, /* ip, flags, tmm, bnd, table, test */
	OPK_IMM,
	OPK_REL,
	OPK_PTR,
	OPK_MEM_BASE,		 /* [base] */
	OPK_MEM_BASE_DISP,	 /* [base+disp] */
	OPK_MEM_BASE_INDEX,	 /* [base+index*s] */
	OPK_MEM_BASE_INDEX_DISP, /* [base+index*s+disp] */
	OPK_MEM_INDEX_DISP,	 /* [index*s+disp] */
	OPK_MEM_ABS,		 /* [disp] */
	OPK_MEM_RIP,		 /* [rip+disp] */
	OPK_MEM_VSIB,		 /* vector index (gathers/scatters) */
	OPK_MEM_FSGS,		 /* fs:/gs: override: thread-local data, TEB/PEB */
	OPK_COUNT
};

/** Token of a decoded instruction; `ops` holds its visible operands. */
uint32_t mamori_disasm_token(const ZydisDecodedInstruction *in, const ZydisDecodedOperand *ops);

/** Check the binary's code regions (bytes present, no wrap, sorted and
 *  disjoint) and that they hold at most `max_code` bytes in all; `method`
 *  is appended to the limit's message. Total through *out_total. */
int mamori_disasm_check_regions(const mamori_binary *b, uint64_t max_code, const char *method,
				uint64_t *out_total);

/** True when execution cannot fall through to the next instruction. */
bool mamori_disasm_ends_path(const ZydisDecodedInstruction *in);

/** True for instructions that only pad: NOPs of any form, ENDBR, INT3,
 *  `lea r,[r+0]` and (in 32-bit code) `mov r,r` with one register. */
bool mamori_disasm_is_padding(const ZydisDecodedInstruction *in, const ZydisDecodedOperand *ops);

#endif
