/*
 * Kernels shared by the exact LCS (lcs.c) and the alignment (align.c): the
 * bit-parallel LCS over 64-bit words and Myers' greedy O(ND) difference
 * algorithm. Not a public interface.
 *
 * Bit-parallel LCS (Allison-Dix 1986, Hyyro 2004): the columns of the DP
 * table are the bits of a vector V over `b` (m bits). Row i updates
 *   V' = (V + (V & M[a_i])) | (V & ~M[a_i])
 * where M[c] has bit j set iff b[j] == c. After row i, the number of zero
 * bits among the low j bits of V is L[i][j], the LCS of a[0..i) and b[0..j).
 * A row whose symbol does not occur in b leaves V unchanged, so it is skipped.
 */
#ifndef MAMORI_SIM_INTERNAL_H
#define MAMORI_SIM_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mamori/base.h"

/** Match masks over one sequence `b` (the bit dimension). */
typedef struct sim_bp {
	size_t m, w; /* bits and 64-bit words */
	/* open-addressing map symbol -> dense symbol index */
	uint32_t *keys;
	int32_t *slot; /* -1: empty */
	size_t cap_mask;
	size_t n_sym;
	uint32_t *sym_key;   /* per symbol */
	uint32_t *cnt_b;     /* occurrences in b */
	uint32_t *pos_start; /* CSR: positions of symbol s in b are pos[pos_start[s]..pos_start[s+1]) */
	uint32_t *pos;
	uint64_t **mask;   /* per symbol: dense mask (w words) or NULL (built on the fly) */
	uint64_t *dense;   /* backing store of the dense masks */
	uint64_t *scratch; /* 4 * w zero words for on-the-fly masks */
	uint64_t *zero;	   /* w zero words */
} sim_bp;

/** Build the symbol map, counts and position lists of b (borrowed; must
 *  outlive bp). Masks are built by sim_bp_masks(). */
int sim_bp_init(sim_bp *bp, const uint32_t *b, size_t m);
void sim_bp_free(sim_bp *bp);
/** Dense symbol index of c, or -1 when c is not in b. */
int32_t sim_bp_lookup(const sim_bp *bp, uint32_t c);
/**
 * Histogram bound sum_c min(count_a(c), count_b(c)) >= LCS, and the number
 * of rows of `a` whose symbol occurs in b. `cnt_a` (n_sym entries, zeroed by
 * the caller) receives the counts of a per symbol of b.
 */
size_t sim_bp_histogram(const sim_bp *bp, const uint32_t *a, size_t n, uint32_t *cnt_a, size_t *out_rows);
/** Build the masks; symbols that do not fit `budget_bytes` of dense masks
 *  (the least used by a, per `cnt_a`, which may be NULL) get theirs on the fly. */
int sim_bp_masks(sim_bp *bp, const uint32_t *cnt_a, size_t budget_bytes);

/**
 * Run rows a[0..n) over V (w words, initialised by the caller to all ones).
 * `rows` is the number of rows whose symbol is in b (from sim_bp_histogram).
 * With need > 0, stops once the LCS provably stays below `need`: returns
 * false and *out_ub holds an upper bound (< need). Otherwise returns true
 * and V is final. With `trace` (n * w words), the V after each row i is
 * stored at trace + i*w (skipped rows included), and no cut-off applies.
 */
bool sim_bp_run(const sim_bp *bp, const uint32_t *a, size_t n, size_t rows, uint64_t *V, size_t need,
		size_t *out_ub, uint64_t *trace);

/** Number of zero bits among the low j bits of V: L[i][j]. */
size_t sim_bp_zeros(const uint64_t *V, size_t j);

/* Myers' greedy algorithm, forward only, length only. */
enum { SIM_MYERS_FOUND = 0, SIM_MYERS_CUT = 1, SIM_MYERS_BUDGET = 2 };
/**
 * Edit distance D (insertions + deletions) of a and b if D <= dmax and the
 * work (diagonals visited + snake steps) stays within `budget`. Returns
 * SIM_MYERS_FOUND with *out_d = D; SIM_MYERS_CUT when D > dmax; or
 * SIM_MYERS_BUDGET with *out_d = the largest d proven < D (D > *out_d).
 * -1 on allocation failure.
 */
int sim_myers(size_t *out_d, const uint32_t *a, size_t n, const uint32_t *b, size_t m, size_t dmax,
	      uint64_t budget);

/** Length of the common prefix / suffix (suffix bounded by `max`). */
size_t sim_prefix(const uint32_t *a, size_t n, const uint32_t *b, size_t m);
size_t sim_suffix(const uint32_t *a, size_t n, const uint32_t *b, size_t m, size_t max);

/** Default cap on dense match masks. */
#define SIM_MASK_BUDGET ((size_t)32 << 20)

#endif
