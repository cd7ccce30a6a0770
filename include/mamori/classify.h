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

#ifdef __cplusplus
extern "C" {
#endif

/** Similarity threshold used when the caller gives none (tuned on the
 *  benchmark corpus; see docs/benchmarks.md). */
#define MAMORI_CLASSIFY_DEFAULT_THRESHOLD 0.35

typedef enum { MAMORI_CANDIDATES_LSH = 0, MAMORI_CANDIDATES_ALL } mamori_candidates;

typedef struct mamori_classify_opts {
	const char *db_path;    /**< SQLite file; default "mamori.db" */
	const char *store_dir;  /**< sample store; default "<db>.store" */
	const char *out_dir;    /**< reports; default "mamori-out" */
	double threshold;       /**< similarity at which samples join a family */
	double floor;           /**< exact similarity below this is cut off (default threshold / 2) */
	mamori_linkage linkage; /**< default average */
	mamori_candidates candidates;
	unsigned jobs;          /**< worker threads; 0 = number of CPUs */
	const char *pairs_out;  /**< optional CSV of computed pairs >= floor */
	size_t max_files;       /**< 0 = default 200,000 */
	bool quiet;             /**< no family table on stdout */
} mamori_classify_opts;

/** Fill `opts` with the defaults. */
void mamori_classify_opts_init(mamori_classify_opts *opts);

/** One input file's outcome. */
typedef struct mamori_classify_sample {
	char *path;
	char sha256[65];  /**< "" when the file could not be read */
	bool ok;
	char *error;      /**< NULL when ok */
	int64_t cluster;  /**< -1 when failed */
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
