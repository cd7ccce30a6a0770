/*
 * Normalisation of instructions into tokens, and the text of a token.
 *
 * A token keeps what a compiler chose to do (the mnemonic, the class of each
 * register, whether an operand is an immediate, a branch target or memory
 * and how that memory is addressed, the memory size, REP/LOCK) and drops
 * what moves between builds: addresses, displacements, immediate values,
 * register numbers, scale factors and encoding lengths. Limits: only three
 * operand kinds fit (a 4th visible operand, seen in some AVX/AVX-512 forms,
 * is only flagged), and the memory size is that of the first memory operand.
 */
#include <stdio.h>
#include <string.h>

#include "disasm_internal.h"
#include "mamori/base.h"

_Static_assert(ZYDIS_MNEMONIC_MAX_VALUE <= TOK_MNEM_MASK, "Zydis mnemonics no longer fit in 11 bits");
_Static_assert(OPK_COUNT <= TOK_OP_MASK + 1, "operand kinds no longer fit in 5 bits");

static unsigned reg_kind(ZydisRegister reg)
{
	switch (ZydisRegisterGetClass(reg)) {
	case ZYDIS_REGCLASS_GPR8: return OPK_GPR8;
	case ZYDIS_REGCLASS_GPR16: return OPK_GPR16;
	case ZYDIS_REGCLASS_GPR32: return OPK_GPR32;
	case ZYDIS_REGCLASS_GPR64: return OPK_GPR64;
	case ZYDIS_REGCLASS_SEGMENT: return OPK_SEG;
	case ZYDIS_REGCLASS_X87: return OPK_X87;
	case ZYDIS_REGCLASS_MMX: return OPK_MMX;
	case ZYDIS_REGCLASS_XMM: return OPK_XMM;
	case ZYDIS_REGCLASS_YMM: return OPK_YMM;
	case ZYDIS_REGCLASS_ZMM: return OPK_ZMM;
	case ZYDIS_REGCLASS_MASK: return OPK_MASK;
	case ZYDIS_REGCLASS_CONTROL: return OPK_CTRL;
	case ZYDIS_REGCLASS_DEBUG: return OPK_DEBUG;
	default: return OPK_OTHER_REG;
	}
}

static bool is_vector_reg(ZydisRegister reg)
{
	ZydisRegisterClass c = ZydisRegisterGetClass(reg);
	return c == ZYDIS_REGCLASS_XMM || c == ZYDIS_REGCLASS_YMM || c == ZYDIS_REGCLASS_ZMM;
}

static unsigned mem_kind(const ZydisDecodedOperandMem *m)
{
	/* A displacement of 0 is an encoding choice ([rbp+0] is how [rbp] must
	 * be encoded), so it counts as no displacement. */
	bool disp = m->disp.has_displacement && m->disp.value != 0;
	bool base = m->base != ZYDIS_REGISTER_NONE;
	bool index = m->index != ZYDIS_REGISTER_NONE;

	if (m->segment == ZYDIS_REGISTER_FS || m->segment == ZYDIS_REGISTER_GS)
		return OPK_MEM_FSGS;
	if (m->base == ZYDIS_REGISTER_RIP || m->base == ZYDIS_REGISTER_EIP)
		return OPK_MEM_RIP;
	if (index && is_vector_reg(m->index))
		return OPK_MEM_VSIB;
	if (!base && !index)
		return OPK_MEM_ABS;
	if (!base)
		return OPK_MEM_INDEX_DISP;
	if (!index)
		return disp ? OPK_MEM_BASE_DISP : OPK_MEM_BASE;
	return disp ? OPK_MEM_BASE_INDEX_DISP : OPK_MEM_BASE_INDEX;
}

static unsigned mem_size_class(const ZydisDecodedOperand *op)
{
	if (op->mem.type == ZYDIS_MEMOP_TYPE_AGEN)
		return 0;
	switch (op->size) {
	case 0: return 0;
	case 8: return 1;
	case 16: return 2;
	case 32: return 3;
	case 64: return 4;
	case 128: return 6;
	default: return op->size > 128 ? 7 : 5;
	}
}

static uint32_t nop_token(void)
{
	return (uint32_t)ZYDIS_MNEMONIC_NOP << TOK_MNEM_SHIFT;
}

bool mamori_disasm_is_padding(const ZydisDecodedInstruction *in, const ZydisDecodedOperand *ops)
{
	switch (in->mnemonic) {
	case ZYDIS_MNEMONIC_NOP:
	case ZYDIS_MNEMONIC_ENDBR32:
	case ZYDIS_MNEMONIC_ENDBR64:
	case ZYDIS_MNEMONIC_INT3: return true;
	case ZYDIS_MNEMONIC_LEA:
		/* lea esi,[esi+0] and lea esi,[esi+eiz*1+0]: gas pads 32-bit code so */
		return in->operand_count_visible == 2 && ops[0].type == ZYDIS_OPERAND_TYPE_REGISTER &&
		       ops[1].type == ZYDIS_OPERAND_TYPE_MEMORY && ops[1].mem.base == ops[0].reg.value &&
		       ops[1].mem.index == ZYDIS_REGISTER_NONE && ops[1].mem.disp.value == 0 &&
		       ops[1].mem.segment != ZYDIS_REGISTER_FS && ops[1].mem.segment != ZYDIS_REGISTER_GS;
	case ZYDIS_MNEMONIC_MOV:
	case ZYDIS_MNEMONIC_XCHG:
		/* mov edi,edi (hot-patch point) and xchg; not in 64-bit mode,
		 * where a 32-bit self-move zero-extends and means something. */
		return in->machine_mode != ZYDIS_MACHINE_MODE_LONG_64 && in->operand_count_visible == 2 &&
		       ops[0].type == ZYDIS_OPERAND_TYPE_REGISTER &&
		       ops[1].type == ZYDIS_OPERAND_TYPE_REGISTER && ops[0].reg.value == ops[1].reg.value;
	default: return false;
	}
}

uint32_t mamori_disasm_token(const ZydisDecodedInstruction *in, const ZydisDecodedOperand *ops)
{
	uint32_t tok;
	unsigned prefix = TOK_PREFIX_NONE;
	unsigned msize = 0;
	bool have_mem = false;
	uint8_t n = in->operand_count_visible;

	if (in->mnemonic != ZYDIS_MNEMONIC_INT3 && mamori_disasm_is_padding(in, ops))
		return nop_token();

	/* A prefix counts only where it changes the meaning; `rep ret` and
	 * similar are alignment tricks. */
	if ((in->attributes & ZYDIS_ATTRIB_HAS_LOCK) && (in->attributes & ZYDIS_ATTRIB_ACCEPTS_LOCK))
		prefix = TOK_PREFIX_LOCK;
	else if ((in->attributes & ZYDIS_ATTRIB_HAS_REPNE) && (in->attributes & ZYDIS_ATTRIB_ACCEPTS_REPNE))
		prefix = TOK_PREFIX_REPNE;
	else if ((in->attributes & (ZYDIS_ATTRIB_HAS_REP | ZYDIS_ATTRIB_HAS_REPE)) &&
		 (in->attributes & (ZYDIS_ATTRIB_ACCEPTS_REP | ZYDIS_ATTRIB_ACCEPTS_REPE)))
		prefix = TOK_PREFIX_REP;

	tok = ((uint32_t)in->mnemonic & TOK_MNEM_MASK) << TOK_MNEM_SHIFT;
	tok |= (uint32_t)prefix << TOK_PREFIX_SHIFT;
	for (uint8_t i = 0; i < n && i < 3; i++) {
		unsigned kind = OPK_NONE;

		switch (ops[i].type) {
		case ZYDIS_OPERAND_TYPE_REGISTER: kind = reg_kind(ops[i].reg.value); break;
		case ZYDIS_OPERAND_TYPE_MEMORY:
			kind = mem_kind(&ops[i].mem);
			if (!have_mem) {
				msize = mem_size_class(&ops[i]);
				have_mem = true;
			}
			break;
		case ZYDIS_OPERAND_TYPE_POINTER: kind = OPK_PTR; break;
		case ZYDIS_OPERAND_TYPE_IMMEDIATE: kind = ops[i].imm.is_relative ? OPK_REL : OPK_IMM; break;
		default: break;
		}
		tok |= (uint32_t)kind << TOK_OP_SHIFT(i);
	}
	tok |= (uint32_t)msize << TOK_MSIZE_SHIFT;
	if (n > 3)
		tok |= TOK_MORE_OPS;
	return tok;
}

static const char *const op_kind_text[OPK_COUNT] = {
	[OPK_NONE] = "",
	[OPK_GPR8] = "r8",
	[OPK_GPR16] = "r16",
	[OPK_GPR32] = "r32",
	[OPK_GPR64] = "r64",
	[OPK_SEG] = "sreg",
	[OPK_X87] = "st",
	[OPK_MMX] = "mm",
	[OPK_XMM] = "xmm",
	[OPK_YMM] = "ymm",
	[OPK_ZMM] = "zmm",
	[OPK_MASK] = "k",
	[OPK_CTRL] = "cr",
	[OPK_DEBUG] = "dr",
	[OPK_OTHER_REG] = "reg",
	[OPK_IMM] = "imm",
	[OPK_REL] = "rel",
	[OPK_PTR] = "ptr",
	[OPK_MEM_BASE] = "[base]",
	[OPK_MEM_BASE_DISP] = "[base+disp]",
	[OPK_MEM_BASE_INDEX] = "[base+index*s]",
	[OPK_MEM_BASE_INDEX_DISP] = "[base+index*s+disp]",
	[OPK_MEM_INDEX_DISP] = "[index*s+disp]",
	[OPK_MEM_ABS] = "[disp]",
	[OPK_MEM_RIP] = "[rip+disp]",
	[OPK_MEM_VSIB] = "[vsib]",
	[OPK_MEM_FSGS] = "[fs/gs:...]",
};

static const char *const msize_text[8] = { "m", "m8", "m16", "m32", "m64", "m80", "m128", "m256+" };
static const char *const prefix_text[4] = { "", "lock ", "rep ", "repne " };

static bool is_mem_kind(unsigned kind)
{
	return kind >= OPK_MEM_BASE && kind < OPK_COUNT;
}

int mamori_token_text(char *buf, size_t bufsize, uint32_t token)
{
	unsigned mnem = (token >> TOK_MNEM_SHIFT) & TOK_MNEM_MASK;
	unsigned prefix = (token >> TOK_PREFIX_SHIFT) & TOK_PREFIX_MASK;
	unsigned msize = (token >> TOK_MSIZE_SHIFT) & TOK_MSIZE_MASK;
	unsigned kinds[3];
	unsigned n_ops = 0;
	bool have_mem = false;
	const char *name;
	size_t used;
	int w;

	if (!buf || bufsize == 0)
		return mamori_fail(MAMORI_EINVAL, "token text: no buffer");
	buf[0] = '\0';
	name = mnem > ZYDIS_MNEMONIC_INVALID && mnem <= ZYDIS_MNEMONIC_MAX_VALUE
		       ? ZydisMnemonicGetString((ZydisMnemonic)mnem)
		       : NULL;
	if (!name)
		return mamori_fail(MAMORI_EINVAL, "token 0x%08x: no mnemonic %u", (unsigned)token, mnem);
	for (unsigned i = 0; i < 3; i++) {
		kinds[i] = (token >> TOK_OP_SHIFT(i)) & TOK_OP_MASK;
		if (kinds[i] >= OPK_COUNT)
			return mamori_fail(MAMORI_EINVAL, "token 0x%08x: operand kind %u", (unsigned)token,
					   kinds[i]);
		if (kinds[i] != OPK_NONE)
			n_ops = i + 1;
		have_mem |= is_mem_kind(kinds[i]);
	}
	/* Texts are unique per token: reject what the encoder never makes. */
	for (unsigned i = 0; i < n_ops; i++)
		if (kinds[i] == OPK_NONE)
			return mamori_fail(MAMORI_EINVAL, "token 0x%08x: operand %u missing", (unsigned)token,
					   i);
	if ((msize && !have_mem) || ((token & TOK_MORE_OPS) && n_ops < 3))
		return mamori_fail(MAMORI_EINVAL, "token 0x%08x: inconsistent fields", (unsigned)token);

	w = snprintf(buf, bufsize, "%s%s", prefix_text[prefix], name);
	if (w < 0 || (size_t)w >= bufsize)
		return mamori_fail(MAMORI_ELIMIT, "token text: buffer of %zu bytes too small", bufsize);
	used = (size_t)w;
	for (unsigned i = 0; i < n_ops; i++) {
		bool mem = is_mem_kind(kinds[i]);
		w = snprintf(buf + used, bufsize - used, "%s%s%s", i ? ", " : " ",
			     mem ? msize_text[msize] : "", op_kind_text[kinds[i]]);
		if (w < 0 || (size_t)w >= bufsize - used)
			return mamori_fail(MAMORI_ELIMIT, "token text: buffer of %zu bytes too small",
					   bufsize);
		used += (size_t)w;
	}
	if (token & TOK_MORE_OPS) {
		w = snprintf(buf + used, bufsize - used, ", ...");
		if (w < 0 || (size_t)w >= bufsize - used)
			return mamori_fail(MAMORI_ELIMIT, "token text: buffer of %zu bytes too small",
					   bufsize);
	}
	return MAMORI_OK;
}

uint32_t mamori_token_arch_neutral(uint32_t token)
{
	token &= ~(TOK_MSIZE_MASK << TOK_MSIZE_SHIFT);
	for (int i = 0; i < 3; i++) {
		uint32_t kind = (token >> TOK_OP_SHIFT(i)) & TOK_OP_MASK;
		if (kind == OPK_GPR64)
			kind = OPK_GPR32;
		else if (kind == OPK_MEM_RIP)
			kind = OPK_MEM_ABS;
		token = (token & ~(TOK_OP_MASK << TOK_OP_SHIFT(i))) | (kind << TOK_OP_SHIFT(i));
	}
	return token;
}

uint32_t mamori_token_mnemonic_only(uint32_t token)
{
	return token & (TOK_MNEM_MASK << TOK_MNEM_SHIFT);
}

bool mamori_token_is_data_move(uint32_t token)
{
	switch ((token >> TOK_MNEM_SHIFT) & TOK_MNEM_MASK) {
	case ZYDIS_MNEMONIC_MOV:
	case ZYDIS_MNEMONIC_MOVZX:
	case ZYDIS_MNEMONIC_MOVSX:
	case ZYDIS_MNEMONIC_MOVSXD:
	case ZYDIS_MNEMONIC_LEA:
	case ZYDIS_MNEMONIC_PUSH:
	case ZYDIS_MNEMONIC_POP: return true;
	default: return false;
	}
}
