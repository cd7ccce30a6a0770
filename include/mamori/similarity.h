/*
 * mamori similarity: how much code two samples share.
 *
 * S(A,B) = |LCS| / (|A| + |B| - |LCS|) over the token sequences of two
 * samples, where LCS is their longest common subsequence. S is 1 for equal
 * sequences (two empty ones included) and 0 when no token is shared.
 *
 * The LCS is computed exactly. The fast path strips the common prefix and
 * suffix, bounds the LCS by a token histogram, tries Myers' O(ND) difference
 * algorithm under a work budget (near-identical variants end there), and
 * otherwise runs a bit-parallel LCS over 64-bit words (Allison-Dix / Hyyro)
 * that stops as soon as the caller's cut-off cannot be reached any more.
 * Memory is O(n + m + distinct tokens * m / 64), capped; alignments use
 * divide and conquer, so 100k+ token inputs never need O(nm) memory.
 *
 * Candidate search finds the pairs worth an exact comparison in a large
 * corpus: a MinHash signature over token n-grams per sample (one-permutation
 * hashing with densification), LSH banding, and the length filter
 * S <= min(n,m) / max(n,m).
 *
 * All functions are reentrant; an mamori_lsh object is not thread-safe.
 */
#ifndef MAMORI_SIMILARITY_H
#define MAMORI_SIMILARITY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ */
/* Exact LCS and similarity                                             */
/* ------------------------------------------------------------------ */

/** Largest sequence length the exact functions accept (2^30 tokens, far
 *  more than a 256 MiB sample holds); longer inputs fail with MAMORI_ELIMIT. */
#define MAMORI_SIM_MAX_LEN ((size_t)1 << 30)

/**
 * Textbook O(nm)-time, O(min(n,m))-space dynamic program: the reference for
 * tests and benchmarks. Returns 0 if it cannot allocate its row (it never
 * does for inputs that fit in memory).
 */
size_t mamori_lcs_dp(const uint32_t *a, size_t n, const uint32_t *b, size_t m);

/**
 * Exact LCS length of a[0..n) and b[0..m) (both borrowed), fast.
 *
 * With min_lcs == 0 the result is always exact. With min_lcs > 0 the work
 * stops as soon as the LCS is provably below min_lcs: the function then
 * returns MAMORI_EBELOW and *out_lcs holds an upper bound (< min_lcs) of the
 * LCS. Otherwise it returns MAMORI_OK and *out_lcs is exact. Errors:
 * MAMORI_ENOMEM, MAMORI_ELIMIT (a sequence longer than MAMORI_SIM_MAX_LEN).
 */
int mamori_lcs(size_t *out_lcs, const uint32_t *a, size_t n, const uint32_t *b, size_t m, size_t min_lcs);

/** S from the two lengths and the LCS; 1.0 when both are empty. */
double mamori_similarity_from_lcs(size_t n, size_t m, size_t lcs);

/**
 * Smallest LCS for which S >= floor, consistent with
 * mamori_similarity_from_lcs() in floating point. 0 when floor <= 0;
 * min(n,m) + 1 when no LCS can reach the floor.
 */
size_t mamori_lcs_needed(size_t n, size_t m, double floor);

/**
 * Exact similarity into *out_s. With floor > 0, returns MAMORI_EBELOW when
 * S is provably below `floor`; *out_s then holds an upper bound (< floor).
 * floor <= 0 always gives the exact value. Errors as mamori_lcs().
 */
int mamori_similarity(double *out_s, const uint32_t *a, size_t n, const uint32_t *b, size_t m, double floor);

/* ------------------------------------------------------------------ */
/* Alignment                                                            */
/* ------------------------------------------------------------------ */

/** A maximal run of matched tokens: a[a_pos + i] == b[b_pos + i] for i < len. */
typedef struct mamori_match_run {
	size_t a_pos, b_pos, len;
} mamori_match_run;

/** One longest common subsequence as runs, in increasing order of both
 *  positions; the lengths of the runs add up to `lcs`. */
typedef struct mamori_alignment {
	mamori_match_run *runs;
	size_t n_runs;
	size_t lcs;
} mamori_alignment;

/**
 * Align a[0..n) with b[0..m) (borrowed). On success *out belongs to the
 * caller (mamori_alignment_free()). Runs of adjacent matches are merged, so
 * no two runs touch in both sequences. Memory stays O(n + m) plus capped
 * work buffers (divide and conquer for long inputs). Errors: MAMORI_ENOMEM,
 * MAMORI_ELIMIT (a sequence longer than MAMORI_SIM_MAX_LEN).
 */
int mamori_align(mamori_alignment **out, const uint32_t *a, size_t n, const uint32_t *b, size_t m);

/** Free an alignment; NULL is fine. */
void mamori_alignment_free(mamori_alignment *al);

/* ------------------------------------------------------------------ */
/* Candidate search                                                     */
/* ------------------------------------------------------------------ */

/** A pair of sample ids with a < b. */
typedef struct mamori_pair {
	uint32_t a, b;
} mamori_pair;

/** MinHash/LSH index over token sequences (opaque; not thread-safe). */
typedef struct mamori_lsh mamori_lsh;

/**
 * Parameters; zero fields mean the defaults: ngram 4, num_hashes 128,
 * bands 64 (so 2 hashes per band). A pair becomes a candidate when all the
 * hashes of at least one band agree, which for an n-gram Jaccard index J
 * happens with probability 1 - (1 - J^r)^bands, r = num_hashes / bands.
 */
typedef struct mamori_lsh_params {
	size_t ngram;	   /**< tokens per shingle, 1..64 */
	size_t num_hashes; /**< signature length, 1..1024 */
	size_t bands;	   /**< 1..num_hashes */
} mamori_lsh_params;

/** Default parameter values (see mamori_lsh_params). */
#define MAMORI_LSH_DEFAULT_NGRAM  4
#define MAMORI_LSH_DEFAULT_HASHES 128
#define MAMORI_LSH_DEFAULT_BANDS  64

/** Most ids one index holds (2^26). */
#define MAMORI_LSH_MAX_IDS ((uint32_t)1 << 26)

/** New empty index; `p` may be NULL. *out belongs to the caller
 *  (mamori_lsh_free()). MAMORI_EINVAL for out-of-range parameters. */
int mamori_lsh_new(mamori_lsh **out, const mamori_lsh_params *p);

/** Free an index; NULL is fine. */
void mamori_lsh_free(mamori_lsh *l);

/**
 * Add the sequence of sample `id` (tokens borrowed, not kept). Ids should be
 * dense, 0..N-1, in any order; adding an id twice replaces it. Errors:
 * MAMORI_ELIMIT (id >= MAMORI_LSH_MAX_IDS), MAMORI_ENOMEM.
 */
int mamori_lsh_add(mamori_lsh *l, uint32_t id, const uint32_t *tokens, size_t n);

/**
 * All pairs of added samples that may reach similarity `floor`: they share
 * an LSH band and pass the length filter. Equal sequences are always
 * candidates. The pairs are deduplicated and sorted by (a, b); *out is a
 * heap array owned by the caller (free()), NULL when *out_count is 0.
 * Errors: MAMORI_ENOMEM, MAMORI_ELIMIT (more than 2^28 pairs).
 */
int mamori_lsh_candidates(mamori_lsh *l, double floor, mamori_pair **out, size_t *out_count);

#ifdef __cplusplus
}
#endif
#endif
