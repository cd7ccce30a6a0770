/*
 * Benchmark evaluation: ground-truth labels, cluster assignments and the
 * external cluster-quality scores that `make bench` reports.
 *
 * Precision and recall follow Bayer et al. (NDSS 2009) and Malheur (Rieck et
 * al.): precision = (1/n) * sum over clusters of the largest family share in
 * that cluster, recall = (1/n) * sum over families of the largest cluster
 * share of that family. F1 is their harmonic mean. The adjusted Rand index is
 * Hubert and Arabie's (1985). A sample whose analysis failed has no cluster;
 * it counts as a cluster of its own, so failures cost recall.
 *
 * This is benchmark code, not part of the `mamori` binary; it still parses its
 * CSV and JSON inputs strictly and with limits, since a corpus is data.
 */
#ifndef MAMORI_BENCH_EVAL_H
#define MAMORI_BENCH_EVAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Largest labels.csv or assignment file read (64 MiB). */
#define MAMORI_EVAL_MAX_FILE ((size_t)64 << 20)
/** Most rows in a labels or assignment file. */
#define MAMORI_EVAL_MAX_ROWS ((size_t)4 << 20)
/** Longest single CSV field. */
#define MAMORI_EVAL_MAX_FIELD 255

/** Which ground-truth grouping a score is measured against. */
typedef enum mamori_eval_level {
	MAMORI_EVAL_FAMILY,
	MAMORI_EVAL_SUBFAMILY,
} mamori_eval_level;

/** labels.csv in memory: one entry per row (per sample file). */
typedef struct mamori_eval_labels {
	size_t n;
	char (*sha256)[65]; /**< n lowercase hex digests */
	int64_t *family;    /**< n dense family ids, 0..n_families-1 */
	int64_t *subfamily; /**< n dense (family, subfamily) ids */
	size_t n_families;
	size_t n_subfamilies;
	char **family_names; /**< n_families heap strings */
} mamori_eval_labels;

/** The external scores of one clustering against one ground truth. */
typedef struct mamori_eval_scores {
	size_t n;	   /**< samples scored */
	size_t n_clusters; /**< clusters, failed samples counted as singletons */
	double precision;
	double recall;
	double f1;
	double ari;
} mamori_eval_scores;

/**
 * Load labels.csv (header `sha256,family,subfamily,program,arch,opt,stripped`,
 * exactly seven unquoted fields per row). `*out` belongs to the caller
 * (mamori_eval_labels_free).
 */
int mamori_eval_labels_load(mamori_eval_labels **out, const char *path);
/** Parse labels from a buffer of `len` bytes; same rules as the loader. */
int mamori_eval_labels_parse(mamori_eval_labels **out, const char *buf, size_t len, const char *name);
void mamori_eval_labels_free(mamori_eval_labels *l);
/** The truth ids of `level` (borrowed, `l->n` entries). */
const int64_t *mamori_eval_labels_truth(const mamori_eval_labels *l, mamori_eval_level level);
/** Row of `sha256` in `l`, or -1. Rows are looked up by binary search. */
int64_t mamori_eval_labels_find(const mamori_eval_labels *l, const char *sha256);

/**
 * Cluster assignment of each labels row, read from a `mamori classify`
 * clusters.json. `out` has `labels->n` entries: the cluster id, or -1 for a
 * sample that failed or is absent from the file. `*out_missing` counts rows
 * absent from the file; `*out_failed` those whose cluster was null.
 */
int mamori_eval_assign_from_clusters_json(int64_t *out, size_t *out_missing, size_t *out_failed,
					  const mamori_eval_labels *labels, const char *path);
/** The same from a CSV `sha256,cluster` (header required; cluster may be empty
 *  or -1 for a failed sample). */
int mamori_eval_assign_from_csv(int64_t *out, size_t *out_missing, size_t *out_failed,
				const mamori_eval_labels *labels, const char *path);
int mamori_eval_assign_parse_csv(int64_t *out, size_t *out_missing, size_t *out_failed,
				 const mamori_eval_labels *labels, const char *buf, size_t len,
				 const char *name);

/**
 * Score predicted clusters `pred` (negative = no cluster: a singleton) against
 * truth classes `truth` (non-negative), both of `n` entries.
 */
int mamori_eval_score(mamori_eval_scores *out, const int64_t *truth, const int64_t *pred, size_t n);

#endif
