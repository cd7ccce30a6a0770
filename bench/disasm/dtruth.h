/*
 * Ground truth of instruction starts (scripts/disasm-truth) and its scoring,
 * for the disasm-eval benchmark: reading the manifest, the .truth files (one
 * hex VA per line) and the .known files ("start end" hex, half-open), and
 * counting true/false positives and false negatives over the known bytes
 * only. Limits: files are bounded by the max given to each reader; the
 * manifest has no quoted fields (the builder writes none).
 */
#ifndef MAMORI_BENCH_DTRUTH_H
#define MAMORI_BENCH_DTRUTH_H

#include <stddef.h>
#include <stdint.h>

/** A half-open byte range [start, end). */
typedef struct mamori_dtruth_range {
	uint64_t start, end;
} mamori_dtruth_range;

/** Counts over known bytes: starts found (tp), non-starts reported as starts
 *  (fp) and starts missed (fn). */
typedef struct mamori_dtruth_counts {
	uint64_t tp, fp, fn;
} mamori_dtruth_counts;

/** One manifest row; strings owned by the row. */
typedef struct mamori_dtruth_row {
	char *file, *truth, *format, *arch, *compiler, *cls, *program, *opt;
} mamori_dtruth_row;

/**
 * Read a manifest.csv (header `file,truth,format,arch,compiler,class,program,opt`).
 * `*out` (an array of `*out_n` rows) belongs to the caller:
 * mamori_dtruth_rows_free(). Paths are kept as written (relative to the
 * manifest's folder). MAMORI_EFORMAT on a bad header or row.
 */
int mamori_dtruth_manifest_read(mamori_dtruth_row **out, size_t *out_n, const char *path, size_t max_rows);
void mamori_dtruth_rows_free(mamori_dtruth_row *rows, size_t n);

/** Parse a truth text (one hex VA per line, "0x" optional) into a sorted,
 *  deduplicated array owned by the caller (free()). */
int mamori_dtruth_parse_addrs(uint64_t **out, size_t *out_n, const char *text, size_t len, size_t max);

/** Parse a known text ("start end" hex per line) into sorted, merged ranges
 *  owned by the caller (free()). MAMORI_EFORMAT when end < start. */
int mamori_dtruth_parse_ranges(mamori_dtruth_range **out, size_t *out_n, const char *text, size_t len,
			       size_t max);

/**
 * Add to `acc` the counts of `pred` (sorted, unique) against `truth`
 * (sorted, unique) over the bytes in `known` (sorted, merged). Predictions
 * and truth outside `known` are ignored.
 */
void mamori_dtruth_score(mamori_dtruth_counts *acc, const uint64_t *truth, size_t n_truth,
			 const mamori_dtruth_range *known, size_t n_known, const uint64_t *pred,
			 size_t n_pred);

/**
 * The first (lowest) false positives and false negatives of `pred` against
 * `truth` over `known`, at most `cap` of each, into `fp` and `fn`; their
 * numbers into `*n_fp` and `*n_fn`. For looking at what a method gets wrong.
 */
void mamori_dtruth_first_errors(uint64_t *fp, size_t *n_fp, uint64_t *fn, size_t *n_fn, size_t cap,
				const uint64_t *truth, size_t n_truth, const mamori_dtruth_range *known,
				size_t n_known, const uint64_t *pred, size_t n_pred);

/** tp/(tp+fp) and tp/(tp+fn); 1.0 when the denominator is 0 (nothing claimed, nothing to find). */
double mamori_dtruth_precision(const mamori_dtruth_counts *c);
double mamori_dtruth_recall(const mamori_dtruth_counts *c);

/** Sort and deduplicate `v` in place; returns the new count. */
size_t mamori_dtruth_sort_unique(uint64_t *v, size_t n);

#endif
