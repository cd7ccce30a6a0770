/*
 * mamori clustering: agglomerative hierarchical clustering of samples over a
 * condensed distance matrix (distance = 1 - similarity), flat clusters cut at
 * a threshold, and the tree written out as Newick and as a circular
 * dendrogram in SVG.
 *
 * The clustering runs in O(n^2) time with the nearest-neighbour-chain
 * algorithm, which is exact for the reducible linkages offered here
 * (average = UPGMA, single, complete). Memory beyond the caller's matrix is
 * O(n): the matrix itself is the work area and is overwritten.
 *
 * Ownership: what is returned through `**out` belongs to the caller and has a
 * matching `_free` (or plain free() where stated); everything else is borrowed.
 */
#ifndef MAMORI_CLUSTER_H
#define MAMORI_CLUSTER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Largest number of leaves mamori_hac() accepts (node ids must fit 32 bits
 *  and the matrix of this many items is already ~2 TB). */
#define MAMORI_CLUSTER_MAX_LEAVES ((size_t)1 << 20)

/** How the distance between two clusters follows from their members'. */
typedef enum {
	MAMORI_LINK_AVERAGE = 0, /**< UPGMA: mean of all member pairs (the default) */
	MAMORI_LINK_SINGLE,	 /**< nearest members */
	MAMORI_LINK_COMPLETE,	 /**< farthest members */
} mamori_linkage;

/** "average", "single" or "complete"; "?" for a value outside the enum. */
const char *mamori_linkage_name(mamori_linkage l);

/** Parse a linkage name (exact, lower case). MAMORI_EINVAL on an unknown name. */
int mamori_linkage_parse(mamori_linkage *out, const char *s);

/**
 * Index of the pair (i, j), i != j, in a condensed distance matrix of n items,
 * laid out like scipy's pdist: row i holds (i, i+1) ... (i, n-1), so for i < j
 * the index is n*i - i*(i+1)/2 + (j-i-1). The order of i and j does not matter.
 * The matrix has n*(n-1)/2 entries. Returns SIZE_MAX when i == j or either is
 * not below n.
 */
size_t mamori_condensed_index(size_t n, size_t i, size_t j);

/** One merge of the dendrogram. Ids below n_leaves are leaves; id n_leaves + k
 *  is the cluster made by merge k. a < b. */
typedef struct mamori_merge {
	uint32_t a, b;
	double height; /**< linkage distance at which a and b were joined */
	uint32_t size; /**< number of leaves under the new cluster */
} mamori_merge;

/** A full binary tree over n_leaves leaves: n_merges == n_leaves - 1 (0 when
 *  there are no leaves), heights non-decreasing, the last merge is the root. */
typedef struct mamori_dendrogram {
	size_t n_leaves;
	mamori_merge *merges;
	size_t n_merges;
} mamori_dendrogram;

/**
 * Agglomerative clustering of n items.
 *
 * `dist` is the condensed matrix (see mamori_condensed_index()) of
 * n*(n-1)/2 distances, normally in [0, 1]. It is used as the work area and
 * its contents are unspecified afterwards: copy it first if you still need it.
 * This keeps the peak memory at one matrix (800 MB at n = 20,000). Entries must
 * be finite and non-negative (MAMORI_EINVAL names the first bad pair).
 *
 * n == 0 gives an empty dendrogram (no leaves, no merges) and n == 1 a single
 * leaf; `dist` may be NULL for n < 2. Ties are broken deterministically (lower
 * indices first). On success `*out` belongs to the caller
 * (mamori_dendrogram_free()).
 */
int mamori_hac(mamori_dendrogram **out, float *dist, size_t n, mamori_linkage link);

/** Free a dendrogram; NULL is fine. */
void mamori_dendrogram_free(mamori_dendrogram *d);

/**
 * Flat clusters: the merges with height <= max_dist are applied, those above
 * are cut. `labels` (caller-owned, n_leaves entries) receives 0..k-1,
 * numbered by cluster size descending, ties by smallest leaf index, so cluster
 * 0 is the largest family. k goes to *out_k (0 for an empty dendrogram).
 * The threshold is rounded to float first, as the distances were, so that a
 * pair stored as 0.3f is inside a cut at 0.3. A negative max_dist leaves
 * every leaf on its own; NaN is MAMORI_EINVAL.
 */
int mamori_dendrogram_cut(int64_t *labels, size_t *out_k, const mamori_dendrogram *d, double max_dist);

/**
 * The tree as one line of Newick text ending in ";\n". Leaves carry their
 * names (NULL `names`, or a NULL entry, gives the leaf index); a name with
 * blanks, underscores or Newick punctuation is single-quoted with inner
 * quotes doubled, and control characters become '?'. Branch lengths are in
 * UPGMA convention: a node sits at depth height/2. An empty dendrogram gives
 * ";\n". `*out` is a heap string owned by the caller (free()).
 */
int mamori_dendrogram_newick(char **out, const mamori_dendrogram *d, const char *const *names);

/** Drawing options for mamori_dendrogram_svg(); all fields may be zero/NULL. */
typedef struct mamori_svg_opts {
	const char *title;	/**< heading; NULL: "mamori dendrogram" */
	double cut_height;	/**< threshold ring and colouring at this distance; < 0: none */
	const int64_t *labels;	/**< flat clusters (n_leaves entries, as from _cut) used for colours;
				     NULL: computed from cut_height when that is >= 0 */
	size_t label_max_chars; /**< leaf names are truncated to this many characters; 0: 24 */
} mamori_svg_opts;

/**
 * Write a circular dendrogram as SVG to `f`: leaf names around the outer
 * circle, each merge drawn as an arc at radius (1 - height) of the full radius
 * (so radius reads as similarity and the root is near the centre), spanning
 * its children's angles, with radial lines down to the children. Branches
 * inside one flat cluster take the cluster's colour (the largest clusters get
 * distinct colours, singletons grey). The threshold is a dashed ring and a
 * legend lists the largest clusters with their sizes. The picture grows with
 * the number of leaves so that names stay legible when zoomed. `names` may be
 * NULL (leaf indices are used) and `opts` may be NULL.
 */
int mamori_dendrogram_svg(FILE *f, const mamori_dendrogram *d, const char *const *names,
			  const mamori_svg_opts *opts);

/** Leaf order for drawing: a permutation of 0..n_leaves-1 from a left-to-right
 *  walk of the tree (child a before child b). `*out` is a heap array owned by
 *  the caller (free()); NULL for an empty dendrogram. */
int mamori_dendrogram_leaf_order(uint32_t **out, const mamori_dendrogram *d);

#ifdef __cplusplus
}
#endif
#endif
