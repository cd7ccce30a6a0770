/*
 * Internals of the probabilistic disassembler (prob.c), shared with its
 * trainer (scripts/train-disasm/train.c) so that training computes exactly
 * the features the runtime computes. Not a public header.
 *
 * The pipeline over all code regions, indexed globally (region after region):
 * prob_superset() decodes at every byte and sets the data-flow flags;
 * prob_stage1() scores each offset from learned n-gram tables and its
 * fall-through chain; prob_hits() lets likely branches vote for their
 * targets (given the model, prob_superset() does both in its own pass);
 * prob_best_stream() gives the final log-odds and picks the best
 * non-overlapping stream.
 */
#ifndef MAMORI_PROB_INTERNAL_H
#define MAMORI_PROB_INTERNAL_H

#include <Zydis/Zydis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mamori/base.h"
#include "mamori/binfmt.h"
#include "mamori/disasm.h"

/* Each table has one half for x86 and one for x86-64: the same bytes and
 * mnemonics are not equally likely in both (0x40-0x4f are inc/dec or REX). */
#define PROB_VOCAB	 4096u	 /* Zydis mnemonic ids (2048 per arch); 0 = does not decode */
#define PROB_MNEM_END	 2047u	 /* pseudo-mnemonic after an instruction that ends a path */
#define PROB_BIGRAM_SIZE 131072u /* hashed (mnemonic, next mnemonic) pairs */
#define PROB_BYTEPAIR	 131072u /* (byte before, first byte) */
#define PROB_TABLE_SCALE 64.0f	 /* tables hold log-odds times this */
#define PROB_S1_NW	 5	 /* 1, local, chain of the successor, poisoned, target outside code */
#define PROB_S2_NW                                                       \
	6 /* 1, stage-1 log-odds, log1p(branch votes), format hint, best \
	   * predecessor, stage-1 log-odds of a direct branch's target */
#define PROB_INVALID_LOGIT (-30.0f)

typedef struct prob_model {
	const char *info;	 /* version and training set */
	const int16_t *unigram;	 /* [PROB_VOCAB] log-odds of a start given its mnemonic */
	const int16_t *bigram;	 /* [PROB_BIGRAM_SIZE] ... given (mnemonic, next mnemonic) */
	const int16_t *bytepair; /* [PROB_BYTEPAIR] ... given (byte before, first byte) */
	float decay;		 /* weight of the successor's chain score */
	float break_penalty;	 /* nats lost when a non-ending instruction has no successor */
	float data_penalty;	 /* nats lost per byte called data (code is the common case) */
	float w1[PROB_S1_NW];
	float w2[PROB_S2_NW];
} prob_model;

/* The model embedded at build time from data/disasm-model (prob_model_data.c). */
extern const prob_model prob_model_builtin;
extern const char prob_analyzer_id[];
extern const char prob_analyzer_id_pad[];

enum {
	PK_VALID = 1,  /* decodes */
	PK_ENDS = 2,   /* ret, jmp, hlt, ud*, int3, iret: no fall-through */
	PK_BRANCH = 4, /* direct relative jump, jcc or call with `target` */
	/* Privileged instructions are left to the mnemonic tables, since
	 * Zydis's minimal mode does not flag them. */
	PK_DEF_USED = 8,   /* writes a register that its chain reads later (not next) */
	PK_OUTSIDE = 16,   /* direct branch whose target is not in any code region */
	PK_DEF_NEXT = 32,  /* writes a register that the next instruction reads */
	PK_HINT = 64,	   /* entry, export, function symbol, call/jmp through an import slot */
	PK_DEF_DEAD = 128, /* writes a register that its chain overwrites unread */
};

#define PROB_NO_TARGET UINT32_MAX
#define PROB_HITS_ONE  1024u /* fixed-point unit of st->hits */

/* Decodes of short position-independent instructions, keyed by their
 * first three bytes (direct-mapped): most offsets of a superset are
 * instructions of one to three bytes, and Zydis is most of the cost. */
#define PROB_MEMO_BITS 14 /* at most */
typedef struct prob_memo {
	uint32_t key; /* the first three bytes, little-endian */
	int32_t rel;  /* displacement of a direct branch (kind has PK_BRANCH) */
	uint16_t mnem;
	uint16_t defs, uses; /* registers written and read */
	uint8_t len;	     /* 0: empty */
	uint8_t kind;	     /* PK_VALID, PK_ENDS, PK_BRANCH */
} prob_memo;

typedef struct prob_state {
	const mamori_binary *b;
	bool is_64;
	ZydisDecoder dec;     /* full decoder, for the listing */
	ZydisDecoder dec_min; /* minimal mode, for the superset */
	size_t n;	      /* code bytes over all regions */
	size_t *region_off;   /* global index of each region's first byte; [n_code + 1] */
	uint8_t *len;	      /* instruction length at each offset (0: does not decode) */
	uint8_t *kind;	      /* PK_* */
	uint16_t *mnem;	      /* Zydis mnemonic (0 when invalid) */
	uint32_t *target;     /* global index of the direct target or PROB_NO_TARGET */
	float *score;	      /* stage-1 log-odds, then the final log-odds */
	uint32_t *hits;	      /* sum of the stage-1 probabilities of branches to here (x PROB_HITS_ONE) */
	int8_t *pred;	      /* best stage-1 log-odds of an instruction falling through to here (x8) */
	int8_t *tq;	      /* stage-1 log-odds of the target of a direct branch here (x8) */
	uint8_t *choice;      /* best-stream decisions (prob_best_stream) */
	uint8_t *reloc;	      /* bitmap of relocation targets (bit g & 7 of byte g >> 3) */
	prob_memo *memo;      /* [1 << memo_bits] */
	unsigned memo_bits;   /* 8..PROB_MEMO_BITS, by the size of the code */
	uint64_t *iat;	      /* sorted import address table slots (PE) */
	size_t n_iat;
	float softplus[1025];	  /* softplus(z) for z in [-32, 32] by 1/16 */
	uint16_t sigmoid_q[1025]; /* PROB_HITS_ONE / (1 + exp(-z)), same grid */
	mamori_vec pending;	  /* branches (uint32 global offsets) whose tq waits for the target */
	bool hits_done;		  /* prob_hits() done (in prob_superset() when given a model) */
} prob_state;

/* Allocate and superset-decode the code of `b` (borrowed; must outlive the
 * state). Hints come from the entry point, exports and calls or jumps
 * through import slots, and from function symbols when `use_symbols`.
 * With a model `m`, stage 1 and the votes are done in the same pass (the
 * same as prob_stage1(st, m, NULL) and prob_hits(st) afterwards; the
 * latter then does nothing). MAMORI_ELIMIT past
 * MAMORI_DISASM_PROB_MAX_CODE. */
int prob_superset(prob_state *st, const mamori_binary *b, bool use_symbols, const prob_model *m);
void prob_state_free(prob_state *st);

/* The three table keys of global offset `g` (unigram, bigram, bytepair). */
void prob_keys(const prob_state *st, size_t region, size_t g, uint32_t out[3]);

/* Stage 1 into st->score; when `out_x` is not NULL it gets the PROB_S1_NW
 * features of every offset (training). */
void prob_stage1(prob_state *st, const prob_model *m, float *out_x);
/* Votes of branches for their targets and the best fall-through
 * predecessor of each offset (st->hits, st->pred). Once per state. */
void prob_hits(prob_state *st);
/* The stage-2 features of global offset g into out[PROB_S2_NW]. */
void prob_stage2_x(const prob_state *st, size_t g, float *out);
/* Final log-odds into st->score and the best stream; prob_walk_next()
 * then walks it. */
void prob_best_stream(prob_state *st, const prob_model *m);

float prob_sigmoid(float z);

/* Walk the best stream of region r: *pos starts at region_off[r];
 * each call returns true with the global offset of the next instruction
 * start in *out_g (data bytes are skipped), false at the region's end. */
typedef struct prob_walk {
	size_t g, end;
	bool forced; /* the previous instruction requires a successor */
} prob_walk;
void prob_walk_init(prob_walk *w, const prob_state *st, size_t region);
bool prob_walk_next(prob_walk *w, const prob_state *st, size_t *out_g);

/* Analyzer id of the probabilistic method with `opts` (NULL: defaults):
 * prob_analyzer_id, with "+pad" for keep_padding and "+nosym" for
 * no_symbols, e.g. "prob-v3+pad+nosym+zydis4". Static string. */
const char *prob_analyzer_id_of(const mamori_disasm_opts *opts);

/* Called by mamori_disasm() for MAMORI_DISASM_PROBABILISTIC. */
int prob_disasm_listing(mamori_listing **out, const mamori_binary *b, const mamori_disasm_opts *opts);

#endif
