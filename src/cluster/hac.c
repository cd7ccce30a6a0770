/*
 * Agglomerative hierarchical clustering with the nearest-neighbour chain
 * (Murtagh 1983; Müllner 2011, "Modern hierarchical, agglomerative clustering
 * algorithms"). Follow nearest neighbours from any cluster until two clusters
 * are each other's nearest neighbour, merge them, and keep the rest of the
 * chain. That is exact for reducible linkages (average, single, complete) and
 * needs O(n^2) time and O(n) memory besides the matrix.
 *
 * The merges come out of the chain in no particular height order; they are
 * sorted afterwards (stably, after making each merge at least as high as its
 * children, so float rounding can never put a parent before its child) and
 * renumbered to the scipy-style "ids >= n are earlier merges" form.
 *
 * Limits: the matrix is the caller's and is overwritten in place; distances
 * are floats, updates are computed in double and rounded back to float.
 */
#include "cluster_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *mamori_linkage_name(mamori_linkage l)
{
	switch (l) {
	case MAMORI_LINK_AVERAGE: return "average";
	case MAMORI_LINK_SINGLE: return "single";
	case MAMORI_LINK_COMPLETE: return "complete";
	}
	return "?";
}

int mamori_linkage_parse(mamori_linkage *out, const char *s)
{
	static const mamori_linkage all[] = { MAMORI_LINK_AVERAGE, MAMORI_LINK_SINGLE, MAMORI_LINK_COMPLETE };

	if (!out || !s)
		return mamori_fail(MAMORI_EINVAL, "linkage: no name given");
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		if (strcmp(s, mamori_linkage_name(all[i])) == 0) {
			*out = all[i];
			return MAMORI_OK;
		}
	}
	return mamori_fail(MAMORI_EINVAL, "linkage: unknown name '%s' (expected average, single or complete)",
			   s);
}

size_t mamori_condensed_index(size_t n, size_t i, size_t j)
{
	if (i == j || i >= n || j >= n)
		return SIZE_MAX;
	if (i > j) {
		size_t t = i;
		i = j;
		j = t;
	}
	return n * i - i * (i + 1) / 2 + (j - i - 1);
}

void mamori_dendrogram_free(mamori_dendrogram *d)
{
	if (!d)
		return;
	free(d->merges);
	free(d);
}

/* A merge as the chain finds it: two matrix slots (the surviving cluster
 * keeps slot `y`) and the order in which it happened, for a stable sort. */
typedef struct raw_merge {
	uint32_t x, y;
	uint32_t order;
	double height;
} raw_merge;

static int raw_merge_cmp(const void *pa, const void *pb)
{
	const raw_merge *a = pa, *b = pb;

	if (a->height != b->height)
		return a->height < b->height ? -1 : 1;
	return (a->order > b->order) - (a->order < b->order);
}

/* Lance-Williams update of d(i, x ∪ y) from d(i, x) and d(i, y). */
static inline float linkage_update(mamori_linkage link, float dix, float diy, double nx, double ny)
{
	switch (link) {
	case MAMORI_LINK_SINGLE: return dix < diy ? dix : diy;
	case MAMORI_LINK_COMPLETE: return dix > diy ? dix : diy;
	case MAMORI_LINK_AVERAGE: break;
	}
	return (float)((nx * (double)dix + ny * (double)diy) / (nx + ny));
}

static inline size_t pair_index(const size_t *row, uint32_t i, uint32_t j)
{
	return i < j ? row[i] + (j - i - 1) : row[j] + (i - j - 1);
}

static inline float pair_dist(const float *dist, const size_t *row, uint32_t i, uint32_t j)
{
	return dist[pair_index(row, i, j)];
}

/* Position of slot x in the ascending list of live slots (x is live). */
static size_t active_find(const uint32_t *active, size_t n_active, uint32_t x)
{
	size_t lo = 0, hi = n_active;

	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (active[mid] <= x)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

static int check_matrix(const float *dist, size_t n)
{
	size_t k = 0;

	for (size_t i = 0; i + 1 < n; i++) {
		for (size_t j = i + 1; j < n; j++, k++) {
			float v = dist[k];
			/* !(v >= 0) also catches NaN. */
			if (!(v >= 0.0f) || isinf(v))
				return mamori_fail(MAMORI_EINVAL,
						   "cluster: distance between items %zu and %zu is %g "
						   "(must be finite and >= 0)",
						   i, j, (double)v);
		}
	}
	return MAMORI_OK;
}

/* Turn the chain's slot-based merges into a sorted dendrogram. */
static int build_dendrogram(mamori_dendrogram *d, raw_merge *raw, size_t n)
{
	int err = MAMORI_OK;
	size_t m = n - 1;
	int64_t *slot_merge = NULL; /* last merge that produced the cluster in a slot, -1: a leaf */
	uint32_t *slot_id = NULL;   /* current node id of the cluster in a slot */
	uint32_t *slot_size = NULL;

	slot_merge = malloc(n * sizeof(*slot_merge));
	slot_id = malloc(n * sizeof(*slot_id));
	slot_size = malloc(n * sizeof(*slot_size));
	d->merges = calloc(m, sizeof(*d->merges));
	if (!slot_merge || !slot_id || !slot_size || !d->merges) {
		err = mamori_fail(MAMORI_ENOMEM, "cluster: no memory for a dendrogram of %zu leaves", n);
		goto done;
	}
	for (size_t i = 0; i < n; i++) {
		slot_merge[i] = -1;
		slot_id[i] = (uint32_t)i;
		slot_size[i] = 1;
	}
	/* In chain order every merge comes after the merges of its children, so
	 * lifting heights here makes the sort below respect the tree. */
	for (size_t k = 0; k < m; k++) {
		raw_merge *r = &raw[k];
		if (slot_merge[r->x] >= 0 && raw[slot_merge[r->x]].height > r->height)
			r->height = raw[slot_merge[r->x]].height;
		if (slot_merge[r->y] >= 0 && raw[slot_merge[r->y]].height > r->height)
			r->height = raw[slot_merge[r->y]].height;
		slot_merge[r->y] = (int64_t)k;
		r->order = (uint32_t)k;
	}
	qsort(raw, m, sizeof(*raw), raw_merge_cmp);
	for (size_t k = 0; k < m; k++) {
		const raw_merge *r = &raw[k];
		uint32_t a = slot_id[r->x], b = slot_id[r->y];
		mamori_merge *out = &d->merges[k];

		out->a = a < b ? a : b;
		out->b = a < b ? b : a;
		out->height = r->height;
		out->size = slot_size[r->x] + slot_size[r->y];
		slot_size[r->y] = out->size;
		slot_id[r->y] = (uint32_t)(n + k);
	}
	d->n_merges = m;
done:
	free(slot_merge);
	free(slot_id);
	free(slot_size);
	return err;
}

int mamori_hac(mamori_dendrogram **out, float *dist, size_t n, mamori_linkage link)
{
	int err = MAMORI_OK;
	mamori_dendrogram *d = NULL;
	size_t *row = NULL;	 /* condensed offset of row i: D(i, j>i) = dist[row[i] + j-i-1] */
	uint32_t *active = NULL; /* live slots, ascending */
	uint32_t *size = NULL;
	uint32_t *chain = NULL;
	raw_merge *raw = NULL;
	size_t n_active, chain_len = 0;

	if (!out)
		return mamori_fail(MAMORI_EINVAL, "cluster: no output pointer");
	*out = NULL;
	if (link != MAMORI_LINK_AVERAGE && link != MAMORI_LINK_SINGLE && link != MAMORI_LINK_COMPLETE)
		return mamori_fail(MAMORI_EINVAL, "cluster: unknown linkage %d", (int)link);
	if (n > MAMORI_CLUSTER_MAX_LEAVES)
		return mamori_fail(MAMORI_ELIMIT, "cluster: %zu items is more than the limit of %zu", n,
				   MAMORI_CLUSTER_MAX_LEAVES);
	if (n >= 2 && !dist)
		return mamori_fail(MAMORI_EINVAL, "cluster: no distance matrix for %zu items", n);

	d = calloc(1, sizeof(*d));
	if (!d)
		return mamori_fail(MAMORI_ENOMEM, "cluster: no memory");
	d->n_leaves = n;
	if (n < 2)
		goto done;
	err = check_matrix(dist, n);
	if (err)
		goto done;

	row = malloc(n * sizeof(*row));
	active = malloc(n * sizeof(*active));
	size = malloc(n * sizeof(*size));
	chain = malloc(n * sizeof(*chain));
	raw = malloc((n - 1) * sizeof(*raw));
	if (!row || !active || !size || !chain || !raw) {
		err = mamori_fail(MAMORI_ENOMEM, "cluster: no memory for %zu items", n);
		goto done;
	}
	for (size_t i = 0; i < n; i++) {
		row[i] = n * i - i * (i + 1) / 2;
		active[i] = (uint32_t)i;
		size[i] = 1;
	}
	n_active = n;

	for (size_t k = 0; k + 1 < n; k++) {
		uint32_t x, y;
		double best;

		if (chain_len == 0)
			chain[chain_len++] = active[0];
		for (;;) {
			x = chain[chain_len - 1];
			/* Preferring the previous chain element on ties guarantees
			 * the chain ends in a reciprocal pair. */
			if (chain_len >= 2) {
				y = chain[chain_len - 2];
				best = pair_dist(dist, row, x, y);
			} else {
				y = UINT32_MAX;
				best = INFINITY;
			}
			/* Split the scan at x: the slots below it are read down a
			 * column of the condensed matrix, the slots above along
			 * row x, which is contiguous. */
			size_t pos = active_find(active, n_active, x);
			for (size_t t = 0; t < pos; t++) {
				uint32_t i = active[t];
				float v = dist[row[i] + (x - i - 1)];
				if (v < best) {
					best = v;
					y = i;
				}
			}
			const float *rx = dist + row[x];
			for (size_t t = pos + 1; t < n_active; t++) {
				uint32_t i = active[t];
				float v = rx[i - x - 1];
				if (v < best) {
					best = v;
					y = i;
				}
			}
			if (y == UINT32_MAX) {
				/* Cannot happen: check_matrix() let only finite
				 * distances in, the updates keep them finite, and at
				 * least two slots are live, so one of them beats
				 * INFINITY. Checked because the analyzer cannot see
				 * that, and a slot of UINT32_MAX would index far out
				 * of the matrix. */
				err = mamori_fail(MAMORI_EINVAL, "cluster: no nearest neighbour for slot %u",
						  x);
				goto done;
			}
			if (chain_len >= 2 && y == chain[chain_len - 2])
				break;
			chain[chain_len++] = y;
		}
		chain_len -= 2;
		if (x > y) {
			uint32_t t = x;
			x = y;
			y = t;
		}
		raw[k] = (raw_merge){ .x = x, .y = y, .height = best };

		/* Cluster x ∪ y lives on in slot y; slot x dies. */
		double nx = size[x], ny = size[y];
		size_t w = 0;
		for (size_t t = 0; t < n_active; t++) {
			uint32_t i = active[t];
			if (i == x)
				continue;
			active[w++] = i;
			if (i == y)
				continue;
			float *pix = &dist[pair_index(row, i, x)];
			float *piy = &dist[pair_index(row, i, y)];
			*piy = linkage_update(link, *pix, *piy, nx, ny);
		}
		n_active = w;
		size[y] += size[x];
	}
	err = build_dendrogram(d, raw, n);
done:
	free(row);
	free(active);
	free(size);
	free(chain);
	free(raw);
	if (err) {
		mamori_dendrogram_free(d);
		return err;
	}
	*out = d;
	return MAMORI_OK;
}
