/*
 * mamori disassembly: x86 / x86-64 code of a parsed binary turned into a
 * listing of instructions, each normalised to a 32-bit token.
 *
 * The default method is recursive traversal from the entry point, the
 * exports and the function symbols, then a linear sweep over the gaps the
 * traversal left. MAMORI_DISASM_PROBABILISTIC instead decodes at every byte,
 * scores each offset with a model learned from ground truth
 * (data/disasm-model) and keeps the most likely stream of instructions,
 * calling the rest data; mamori_disasm_prob() also gives the probabilities
 * and the code/data spans.
 *
 * Tokens abstract away addresses, immediate values, register numbers and
 * encodings: a token is the mnemonic plus the kind of each visible operand
 * (register class, immediate, relative target, memory form) plus the size of
 * the memory operand and a REP/LOCK prefix. Layout of a token (stable; a
 * change means a new analyzer id):
 *
 *   bits 31..21  Zydis mnemonic id (11 bits)
 *   bits 20..19  prefix: 0 none, 1 lock, 2 rep/repe, 3 repne
 *   bits 18..16  memory operand size: 0 none/unsized, 1 m8, 2 m16, 3 m32,
 *                4 m64, 5 m80 (and other odd sizes), 6 m128, 7 m256+
 *   bits 15..11  kind of operand 0 (register class, imm, rel, memory form;
 *                the list is in src/disasm/token.c)
 *   bits 10..6   kind of operand 1
 *   bits  5..1   kind of operand 2
 *   bit   0      set when the instruction has a 4th visible operand
 *
 * Padding is not part of a listing by default: NOPs of every length and
 * form (0x90, 66 90, 0F 1F /0, `lea r,[r+0]`, 32-bit `mov r,r` with the
 * same register), ENDBR32/64 and INT3. They say nothing about what code
 * does but vary with alignment and compiler flags, which would make two
 * builds of the same source look less similar than they are.
 */
#ifndef MAMORI_DISASM_H
#define MAMORI_DISASM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct mamori_binary;

/** One decoded instruction. */
typedef struct mamori_insn {
	uint64_t va;	/**< virtual address of its first byte */
	uint8_t len;	/**< length in bytes (1..15) */
	uint32_t token; /**< normalised form, see the layout above */
} mamori_insn;

typedef enum {
	MAMORI_DISASM_TRAVERSAL = 0,	 /**< recursive traversal + linear sweep of the gaps */
	MAMORI_DISASM_PROBABILISTIC = 1, /**< superset decoding, learned model, best stream */
} mamori_disasm_method;

/** Options; a zeroed struct (or NULL) means the defaults. */
typedef struct mamori_disasm_opts {
	mamori_disasm_method method;
	size_t max_insns;  /**< at most this many instructions in a listing; 0 = 8M */
	bool keep_padding; /**< also list NOPs, ENDBR and INT3 (for people; not for fingerprints) */
	/**
	 * Probabilistic method only: ignore the function symbols (the entry
	 * point, exports and import thunks still count), so that stripped and
	 * unstripped builds of one program give the same listing. For
	 * fingerprints; it has its own analyzer id.
	 */
	bool no_symbols;
} mamori_disasm_opts;

/** Default of mamori_disasm_opts.max_insns. */
#define MAMORI_DISASM_DEFAULT_MAX_INSNS ((size_t)8 << 20)

/** A listing: instructions sorted by va, never overlapping. */
typedef struct mamori_listing {
	mamori_insn *insns;
	size_t count;
} mamori_listing;

/**
 * Disassemble the executable regions of `b` (borrowed). On success `*out` is
 * a listing owned by the caller (mamori_listing_free()); a binary without
 * code gives an empty listing. The result is deterministic: the same bytes
 * and options always give the same listing.
 *
 * More than max_insns instructions fail with MAMORI_ELIMIT (and no listing)
 * rather than yield a truncated one: a fingerprint of half a program would
 * silently compare as a different program. Errors: MAMORI_EINVAL (bad
 * options), MAMORI_EUNSUPPORTED (architecture), MAMORI_ELIMIT, MAMORI_ENOMEM.
 */
int mamori_disasm(mamori_listing **out, const struct mamori_binary *b, const mamori_disasm_opts *opts);

/** Free a listing; NULL is fine. */
void mamori_listing_free(mamori_listing *l);

/** A stretch of a code region judged to be code or data. */
typedef struct mamori_disasm_span {
	uint64_t va;
	uint64_t size;
	bool is_code; /**< false: bytes judged to be data (strings, tables, padding bytes) */
} mamori_disasm_span;

/**
 * What the probabilistic method decided: the listing, the model's
 * probability that each listed instruction starts where it does (parallel
 * to `insns`, each in [0,1]), and every byte of every code region as
 * code or data (`spans`, sorted, non-overlapping, covering the regions).
 */
typedef struct mamori_prob_listing {
	mamori_insn *insns;
	float *p;
	size_t count;
	mamori_disasm_span *spans;
	size_t n_spans;
} mamori_prob_listing;

/** Most code bytes the probabilistic method takes (it keeps about 20 bytes
 *  of state per code byte); more fail with MAMORI_ELIMIT. */
#define MAMORI_DISASM_PROB_MAX_CODE ((size_t)64 << 20)

/**
 * Probabilistic disassembly of `b` (borrowed) whatever `opts->method` says;
 * padding is listed only with keep_padding but always counts as code in
 * the spans. On success `*out` belongs to the caller
 * (mamori_prob_listing_free()). Deterministic. Errors as mamori_disasm(),
 * plus MAMORI_ELIMIT past MAMORI_DISASM_PROB_MAX_CODE bytes of code.
 * mamori_disasm() with MAMORI_DISASM_PROBABILISTIC gives the same
 * instructions without the probabilities and spans.
 */
int mamori_disasm_prob(mamori_prob_listing **out, const struct mamori_binary *b,
		       const mamori_disasm_opts *opts);

/** Free a probabilistic listing; NULL is fine. */
void mamori_prob_listing_free(mamori_prob_listing *l);

/** Version and training set of the embedded model, e.g.
 *  "prob-v3 (trained on corpus/disasm-truth/manifest.csv, 192 files)". Static string. */
const char *mamori_disasm_model_info(void);

/**
 * Name of the analysis that `opts` (NULL = defaults) selects, to store with
 * fingerprints, e.g. "traversal-v1+zydis4". It changes whenever the tokens or
 * the choice of instructions change, so stored results are recomputed.
 * Static string.
 */
const char *mamori_disasm_analyzer_id(const mamori_disasm_opts *opts);

/**
 * Human-readable text of a token into `buf`, e.g. "mov r32, m32[base+disp]",
 * "call rel", "push imm", "rep stosd m32[base], r32". Two different tokens
 * always give different texts. Returns MAMORI_OK, MAMORI_EINVAL for a
 * token no instruction has, or MAMORI_ELIMIT when `buf` is too small (it
 * then holds a truncated, NUL-terminated text).
 */
int mamori_token_text(char *buf, size_t bufsize, uint32_t token);

/**
 * Intel-syntax text of the instruction at `va` in the code of `b`, with
 * branch targets as absolute addresses (for listings; slow, not for bulk
 * work). MAMORI_ENOTFOUND when `va` is not in a code region, MAMORI_EFORMAT
 * when the bytes there do not decode, MAMORI_ELIMIT when `buf` is too small.
 */
int mamori_disasm_format(char *buf, size_t bufsize, const struct mamori_binary *b, uint64_t va);

/** Token of one instruction in raw bytes (x86-64 when `is_64`, else x86);
 *  for tests and tools. `*out_len` gets its length. MAMORI_EFORMAT when the
 *  bytes do not decode. */
int mamori_token_of_bytes(uint32_t *out, uint8_t *out_len, const uint8_t *bytes, size_t size, bool is_64);

/**
 * The architecture-neutral form of a token, for comparing code built for
 * x86 with code built for x86-64: 32- and 64-bit general registers are one
 * class, memory operand sizes are dropped, and [rip+disp] counts as an
 * absolute [disp]. Idempotent.
 */
uint32_t mamori_token_arch_neutral(uint32_t token);

/** The token of the bare mnemonic (no prefix, operand kinds or sizes). */
uint32_t mamori_token_mnemonic_only(uint32_t token);

/**
 * True for pure data movement between registers, memory and the stack
 * (mov, movzx, movsx, movsxd, lea, push, pop). Their number and placement
 * depend mostly on register allocation and optimisation level, not on what
 * the code computes.
 */
bool mamori_token_is_data_move(uint32_t token);

#ifdef __cplusplus
}
#endif
#endif
