/*
 * Shared inside src/cluster: the structural check every tree consumer runs
 * first (a dendrogram may come from a caller, not only from mamori_hac()),
 * and a small growing text buffer for the Newick writer.
 */
#ifndef MAMORI_CLUSTER_INTERNAL_H
#define MAMORI_CLUSTER_INTERNAL_H

#include "mamori/base.h"
#include "mamori/cluster.h"

/**
 * MAMORI_EINVAL unless `d` is a full binary tree in merge form: n_merges ==
 * n_leaves - 1, every merge names two distinct nodes that exist before it,
 * each node is used once, sizes add up and heights are not NaN.
 */
int cluster_check(const mamori_dendrogram *d);

/** Id of the root node: the last merge, or leaf 0 for a one-leaf tree. */
static inline uint32_t cluster_root(const mamori_dendrogram *d)
{
	return (uint32_t)(d->n_leaves + d->n_merges - 1);
}

/** Append bytes to a byte vector (elem_size 1); fails at its maximum. */
int cluster_buf_put(mamori_vec *v, const char *s, size_t len);
/** Append printf-style text to a byte vector. */
int cluster_buf_printf(mamori_vec *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
