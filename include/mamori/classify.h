/*
 * The static classification pipeline: from files and folders to families.
 *
 *   ingest      read each file (size-limited), SHA-256, sample store, database
 *   disasm      parse + disassemble what the database does not hold yet
 *   similarity  deduplicate token sequences, candidate search (LSH), exact
 *               LCS similarity with a cut-off, cached in the database
 *   cluster     hierarchical clustering over 1 - S, cut at the threshold
 *   output      clusters.json, dendrogram.svg, tree.nwk, stats.json
 *
 * A bad sample is recorded with its error and the rest goes on.
 */
#ifndef MAMORI_CLASSIFY_H
#define MAMORI_CLASSIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mamori/cluster.h"
#include "mamori/disasm.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Similarity threshold used when the caller gives none (tuned on the
 *  benchmark corpus; see docs/benchmarks.md). */
#define MAMORI_CLASSIFY_DEFAULT_THRESHOLD 0.245

/**
 * Which pairs get an exact similarity. ALL compares every pair the length
 * bound allows (exact but quadratic); LSH only those the MinHash/LSH search
 * proposes; AUTO (the default) compares all pairs while there are at most
 * MAMORI_CLASSIFY_AUTO_MAX_PAIRS of them, and uses LSH beyond.
 */
typedef enum { MAMORI_CANDIDATES_AUTO = 0, MAMORI_CANDIDATES_LSH, MAMORI_CANDIDATES_ALL } mamori_candidates;
#define MAMORI_CLASSIFY_AUTO_MAX_PAIRS 500000
const char *mamori_candidates_name(mamori_candidates c);

/**
 * How token sequences are compared (after known library code is removed):
 * - EXACT: the disassembler's tokens as they are;
 * - ARCH_NEUTRAL: mamori_token_arch_neutral() of each token, so x86 and
 *   x86-64 builds of one program line up;
 * - SKELETON: arch-neutral, without pure data movement
 *   (mamori_token_is_data_move()), which depends on register allocation
 *   and optimisation level more than on what the code does;
 * - MNEMONIC: the skeleton's mnemonics alone, so that unoptimised code
 *   (operands in stack slots) lines up with optimised code (in registers).
 */
typedef enum {
	MAMORI_VIEW_EXACT = 0,
	MAMORI_VIEW_ARCH_NEUTRAL,
	MAMORI_VIEW_SKELETON,
	MAMORI_VIEW_MNEMONIC
} mamori_view;
#define MAMORI_CLASSIFY_DEFAULT_VIEW   MAMORI_VIEW_MNEMONIC
#define MAMORI_CLASSIFY_DEFAULT_DISASM MAMORI_DISASM_PROBABILISTIC
const char *mamori_view_name(mamori_view v);
int mamori_view_parse(mamori_view *out, const char *s);

/**
 * When a sample is unpacked (mamori_unpack(), isolated) before it is
 * disassembled: AUTO when its static pack hint says packed
 * (mamori_pack_hint_of), ALWAYS for every PE, NEVER. When the unpack status
 * is "unpacked" the dump's code is disassembled instead of the file's.
 */
typedef enum {
	MAMORI_CLASSIFY_UNPACK_AUTO = 0,
	MAMORI_CLASSIFY_UNPACK_NEVER,
	MAMORI_CLASSIFY_UNPACK_ALWAYS
} mamori_classify_unpack;
const char *mamori_classify_unpack_name(mamori_classify_unpack u);
int mamori_classify_unpack_parse(mamori_classify_unpack *out, const char *s);

typedef struct mamori_classify_opts {
	const char *db_path;	/**< SQLite file; default "mamori.db" */
	const char *store_dir;	/**< sample store; default "<db>.store" */
	const char *out_dir;	/**< reports; default "mamori-out" */
	double threshold;	/**< similarity at which samples join a family */
	double floor;		/**< exact similarity below this is cut off (default threshold / 2) */
	mamori_linkage linkage; /**< default average */
	mamori_candidates candidates;
	mamori_view view;		 /**< default MAMORI_CLASSIFY_DEFAULT_VIEW */
	mamori_disasm_method disasm;	 /**< default MAMORI_CLASSIFY_DEFAULT_DISASM */
	unsigned jobs;			 /**< worker threads; 0 = number of CPUs */
	const char *pairs_out;		 /**< optional CSV of computed pairs >= floor */
	size_t max_files;		 /**< 0 = default 200,000 */
	bool quiet;			 /**< no family table on stdout */
	bool keep_library_code;		 /**< do not remove known runtime code before comparing */
	const char *const *library_refs; /**< extra reference binaries of library code */
	size_t n_library_refs;
	mamori_classify_unpack unpack; /**< default AUTO */
	uint32_t unpack_timeout_ms;    /**< wall-clock limit of one unpack (0: mamori_unpack's default) */
} mamori_classify_opts;

/** Fill `opts` with the defaults. */
void mamori_classify_opts_init(mamori_classify_opts *opts);

/**
 * Known library code: token k-grams of toolchain runtimes (start-up code,
 * CRT and compiler helpers) learnt from reference binaries. Instructions
 * covered by such a k-gram are removed before similarity, so samples are
 * compared by their own code, not by the compiler's runtime.
 */
typedef struct mamori_libcode mamori_libcode;
#define MAMORI_LIBCODE_K 8
int mamori_libcode_new(mamori_libcode **out, unsigned k);
void mamori_libcode_free(mamori_libcode *lc);
/** Disassemble reference binaries this way (default: the traversal); it
 *  must be the method the compared samples were disassembled with. */
void mamori_libcode_set_disasm(mamori_libcode *lc, const mamori_disasm_opts *opts);
/** Learn all k-grams of a token sequence. */
int mamori_libcode_add_tokens(mamori_libcode *lc, const uint32_t *tokens, size_t n);
/** Parse and disassemble a reference binary and learn its code. */
int mamori_libcode_add_binary(mamori_libcode *lc, const uint8_t *data, size_t len);
/** Learn the reference binaries built into mamori (data/libref: mingw-w64
 *  CRT and libmingwex for i686/x86_64, gcc x86-64 start files); returns how
 *  many were loaded through *out_count. */
int mamori_libcode_add_builtin(mamori_libcode *lc, size_t *out_count);
/** Remove, in place, every token covered by a known k-gram; returns the new length. */
size_t mamori_libcode_filter(const mamori_libcode *lc, uint32_t *tokens, size_t n);
size_t mamori_libcode_size(const mamori_libcode *lc);

/** One input file's outcome. */
typedef struct mamori_classify_sample {
	char *path;
	char sha256[65]; /**< "" when the file could not be read */
	bool ok;
	char *error;	    /**< NULL when ok */
	int64_t cluster;    /**< -1 when failed */
	bool code_unpacked; /**< the code compared came from the unpacked dump, not the file */
	int unpack_status;  /**< mamori_unpack_status (mamori/emu.h) when unpacking was tried, else 0 */
} mamori_classify_sample;

typedef struct mamori_classify_cluster {
	int64_t id;
	size_t size;
	double share;
	size_t representative; /**< index into samples */
} mamori_classify_cluster;

typedef struct mamori_classify_result {
	mamori_classify_sample *samples;
	size_t n_samples;
	size_t n_failed;
	mamori_classify_cluster *clusters;
	size_t n_clusters;
	size_t unique_sequences, candidate_pairs, exact_pairs, below_pairs, cached_pairs;
	mamori_candidates candidates_used; /**< ALL or LSH (AUTO resolved) */
	size_t library_windows;		   /**< known library k-grams used */
	size_t tokens_total;		   /**< tokens of the unique sequences */
	size_t library_tokens_removed;	   /**< of which were known library code */
	size_t tokens_compared;		   /**< tokens left in the compared view */
	size_t unpack_tried;		   /**< samples that were unpacked (or found in the database so) */
	size_t code_unpacked;		   /**< of which the dump's code was used */
	double wall_s;
} mamori_classify_result;

/**
 * Run the whole pipeline over `paths` (files or folders, walked
 * recursively without following symbolic links). On MAMORI_OK `*out` holds
 * the result (owned by the caller, free with mamori_classify_result_free);
 * samples that failed are in it with their error. An error return means
 * the run itself failed (database, output folder, limits).
 */
int mamori_classify_run(mamori_classify_result **out, const char *const *paths, size_t n_paths,
			const mamori_classify_opts *opts);
void mamori_classify_result_free(mamori_classify_result *r);

#ifdef __cplusplus
}
#endif
#endif
