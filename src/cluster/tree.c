/*
 * Reading a dendrogram: the structural check, flat clusters at a threshold,
 * the leaf order for drawing, and Newick text.
 *
 * A tree made of chained samples can be n deep, so nothing here recurses:
 * walks use explicit stacks sized by the node count, and the flat cut works
 * top-down over the merge list (a parent always has a larger id than its
 * children).
 */
#include "cluster_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* Newick text grows up to this size; beyond it the names are unreasonable. */
#define NEWICK_MAX_BYTES ((size_t)1 << 30)

#define NO_NODE UINT32_MAX

int cluster_check(const mamori_dendrogram *d)
{
	int err = MAMORI_OK;
	uint8_t *used = NULL;
	size_t n, m;
	double prev = -INFINITY;

	if (!d)
		return mamori_fail(MAMORI_EINVAL, "dendrogram: none given");
	n = d->n_leaves;
	m = d->n_merges;
	if (n > MAMORI_CLUSTER_MAX_LEAVES)
		return mamori_fail(MAMORI_ELIMIT, "dendrogram: %zu leaves is more than the limit of %zu", n,
				   MAMORI_CLUSTER_MAX_LEAVES);
	if (m != (n ? n - 1 : 0))
		return mamori_fail(MAMORI_EINVAL, "dendrogram: %zu merges for %zu leaves (expected %zu)", m,
				   n, n ? n - 1 : 0);
	if (m == 0)
		return MAMORI_OK;
	if (!d->merges)
		return mamori_fail(MAMORI_EINVAL, "dendrogram: merge list missing");
	used = calloc(n + m, 1);
	if (!used)
		return mamori_fail(MAMORI_ENOMEM, "dendrogram: no memory to check %zu nodes", n + m);
	for (size_t k = 0; k < m; k++) {
		const mamori_merge *g = &d->merges[k];
		uint32_t ids[2] = { g->a, g->b };
		uint64_t size = 0;

		if (g->a == g->b || g->a >= n + k || g->b >= n + k) {
			err = mamori_fail(MAMORI_EINVAL,
					  "dendrogram: merge %zu joins nodes %u and %u, which are "
					  "not two distinct earlier nodes",
					  k, g->a, g->b);
			goto done;
		}
		for (int s = 0; s < 2; s++) {
			if (used[ids[s]]) {
				err = mamori_fail(MAMORI_EINVAL,
						  "dendrogram: node %u is merged twice (merge %zu)", ids[s],
						  k);
				goto done;
			}
			used[ids[s]] = 1;
			size += ids[s] < n ? 1 : d->merges[ids[s] - n].size;
		}
		if (size != g->size) {
			err = mamori_fail(MAMORI_EINVAL,
					  "dendrogram: merge %zu has size %u, its children add up "
					  "to %llu",
					  k, g->size, (unsigned long long)size);
			goto done;
		}
		if (isnan(g->height) || g->height < prev) {
			err = mamori_fail(MAMORI_EINVAL,
					  "dendrogram: merge %zu has height %g after %g (heights "
					  "must not decrease)",
					  k, g->height, prev);
			goto done;
		}
		prev = g->height;
	}
done:
	free(used);
	return err;
}

static double node_height(const mamori_dendrogram *d, uint32_t id)
{
	return id < d->n_leaves ? 0.0 : d->merges[id - d->n_leaves].height;
}

/* parent[id] for every node; the root's is NO_NODE. Caller frees. */
static int parents_make(uint32_t **out, const mamori_dendrogram *d)
{
	size_t nodes = d->n_leaves + d->n_merges;
	uint32_t *parent = malloc((nodes ? nodes : 1) * sizeof(*parent));

	if (!parent)
		return mamori_fail(MAMORI_ENOMEM, "dendrogram: no memory for %zu nodes", nodes);
	for (size_t i = 0; i < nodes; i++)
		parent[i] = NO_NODE;
	for (size_t k = 0; k < d->n_merges; k++) {
		parent[d->merges[k].a] = (uint32_t)(d->n_leaves + k);
		parent[d->merges[k].b] = (uint32_t)(d->n_leaves + k);
	}
	*out = parent;
	return MAMORI_OK;
}

typedef struct flat_cluster {
	uint32_t first; /* smallest leaf index, also the order of discovery */
	uint32_t size;
	uint32_t rank;
} flat_cluster;

static int flat_cluster_cmp(const void *pa, const void *pb)
{
	const flat_cluster *a = pa, *b = pb;

	if (a->size != b->size)
		return a->size > b->size ? -1 : 1;
	return (a->first > b->first) - (a->first < b->first);
}

int mamori_dendrogram_cut(int64_t *labels, size_t *out_k, const mamori_dendrogram *d, double max_dist)
{
	int err;
	size_t n, k = 0;
	uint32_t *parent = NULL, *rep = NULL, *slot = NULL;
	flat_cluster *fc = NULL;

	if (!out_k)
		return mamori_fail(MAMORI_EINVAL, "dendrogram cut: no output for the cluster count");
	*out_k = 0;
	err = cluster_check(d);
	if (err)
		return err;
	if (isnan(max_dist))
		return mamori_fail(MAMORI_EINVAL, "dendrogram cut: threshold is NaN");
	n = d->n_leaves;
	if (n == 0)
		return MAMORI_OK;
	if (!labels)
		return mamori_fail(MAMORI_EINVAL, "dendrogram cut: no label array for %zu leaves", n);
	/* Heights come from a float matrix: a pair stored as 0.3f (just above
	 * 0.3) must count as "at" a threshold of 0.3, so compare in float. */
	max_dist = (double)(float)max_dist;

	err = parents_make(&parent, d);
	if (err)
		goto done;
	rep = malloc((n + d->n_merges) * sizeof(*rep));
	slot = malloc((n + d->n_merges) * sizeof(*slot));
	fc = malloc(n * sizeof(*fc));
	if (!rep || !slot || !fc) {
		err = mamori_fail(MAMORI_ENOMEM, "dendrogram cut: no memory for %zu leaves", n);
		goto done;
	}
	/* Top-down: a node at or below the threshold belongs to the flat
	 * cluster of its parent if the parent is below too, else it roots one.
	 * A leaf always belongs somewhere, even under a negative threshold. */
	for (size_t id = n + d->n_merges; id-- > 0;) {
		uint32_t p = parent[id];
		if (id >= n && node_height(d, (uint32_t)id) > max_dist)
			rep[id] = NO_NODE;
		else if (p != NO_NODE && rep[p] != NO_NODE)
			rep[id] = rep[p];
		else
			rep[id] = (uint32_t)id;
		slot[id] = NO_NODE;
	}
	for (size_t i = 0; i < n; i++) {
		uint32_t r = rep[i];
		if (slot[r] == NO_NODE) {
			slot[r] = (uint32_t)k;
			fc[k++] = (flat_cluster){ .first = (uint32_t)i, .size = 0 };
		}
		fc[slot[r]].size++;
	}
	/* fc is in order of first leaf; sort, then give each representative
	 * its cluster's rank in place of its discovery index (every
	 * representative is the rep[] of exactly one cluster's first leaf). */
	qsort(fc, k, sizeof(*fc), flat_cluster_cmp);
	for (size_t r = 0; r < k; r++)
		slot[rep[fc[r].first]] = (uint32_t)r;
	for (size_t i = 0; i < n; i++)
		labels[i] = slot[rep[i]];
	*out_k = k;
done:
	free(parent);
	free(rep);
	free(slot);
	free(fc);
	return err;
}

int mamori_dendrogram_leaf_order(uint32_t **out, const mamori_dendrogram *d)
{
	int err;
	size_t n, w = 0, top = 0;
	uint32_t *order = NULL, *stack = NULL;

	if (!out)
		return mamori_fail(MAMORI_EINVAL, "leaf order: no output pointer");
	*out = NULL;
	err = cluster_check(d);
	if (err)
		return err;
	n = d->n_leaves;
	if (n == 0)
		return MAMORI_OK;
	order = malloc(n * sizeof(*order));
	stack = malloc(n * sizeof(*stack)); /* holds at most one pending sibling per level + 1 */
	if (!order || !stack) {
		err = mamori_fail(MAMORI_ENOMEM, "leaf order: no memory for %zu leaves", n);
		goto done;
	}
	stack[top++] = cluster_root(d);
	while (top > 0) {
		uint32_t id = stack[--top];
		/* Descend along child a, leaving each b on the stack: the stack
		 * never holds more than one entry per leaf still to come. */
		while (id >= n) {
			const mamori_merge *g = &d->merges[id - n];
			stack[top++] = g->b;
			id = g->a;
		}
		order[w++] = id;
	}
	*out = order;
	order = NULL;
done:
	free(order);
	free(stack);
	return err;
}

/* ---- Newick ---- */

int cluster_buf_put(mamori_vec *v, const char *s, size_t len)
{
	void *p;
	int err = mamori_vec_grow(v, len, &p);

	if (err)
		return err;
	memcpy(p, s, len);
	return MAMORI_OK;
}

int cluster_buf_printf(mamori_vec *v, const char *fmt, ...)
{
	char small[256];
	va_list ap;
	int w;

	va_start(ap, fmt);
	/* clang-analyzer 14 misreads va_start here (valist.Uninitialized); see base/error.c. */
	w = vsnprintf(small, sizeof(small), fmt, ap); // NOLINT(clang-analyzer-valist.Uninitialized)
	va_end(ap);
	if (w < 0)
		return mamori_fail(MAMORI_EINVAL, "text formatting failed");
	if ((size_t)w < sizeof(small))
		return cluster_buf_put(v, small, (size_t)w);
	/* Rare long line: format straight into the vector. */
	void *p;
	int err = mamori_vec_grow(v, (size_t)w + 1, &p);
	if (err)
		return err;
	va_start(ap, fmt);
	vsnprintf(p, (size_t)w + 1, fmt, ap);
	va_end(ap);
	v->count--; /* drop the NUL again */
	return MAMORI_OK;
}

static bool newick_needs_quotes(const char *s)
{
	if (!*s)
		return true;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c <= ' ' || c == 0x7f || strchr("()[]':;,_\"", c))
			return true;
	}
	return false;
}

static int newick_name(mamori_vec *v, const char *name, uint32_t leaf)
{
	char num[16];
	int err = MAMORI_OK;
	bool quote;

	if (!name) {
		snprintf(num, sizeof(num), "%u", leaf);
		name = num;
	}
	quote = newick_needs_quotes(name);
	if (quote && (err = cluster_buf_put(v, "'", 1)))
		return err;
	for (const char *s = name; *s && !err; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '\'')
			err = cluster_buf_put(v, "''", 2);
		else if (c < ' ' || c == 0x7f)
			err = cluster_buf_put(v, "?", 1);
		else
			err = cluster_buf_put(v, s, 1);
	}
	if (!err && quote)
		err = cluster_buf_put(v, "'", 1);
	return err;
}

static int newick_length(mamori_vec *v, double len)
{
	char num[40];
	int w;

	if (!(len > 0.0)) /* also folds -0 and NaN into 0 */
		len = 0.0;
	w = snprintf(num, sizeof(num), ":%.6g", len);
	return cluster_buf_put(v, num, (size_t)w);
}

enum { NW_ENTER, NW_COMMA, NW_CLOSE };

typedef struct nw_step {
	uint32_t id;
	uint32_t kind;
} nw_step;

int mamori_dendrogram_newick(char **out, const mamori_dendrogram *d, const char *const *names)
{
	int err;
	mamori_vec text, steps;
	uint32_t *parent = NULL;
	size_t n;

	if (!out)
		return mamori_fail(MAMORI_EINVAL, "newick: no output pointer");
	*out = NULL;
	err = cluster_check(d);
	if (err)
		return err;
	n = d->n_leaves;
	mamori_vec_init(&text, 1, NEWICK_MAX_BYTES);
	mamori_vec_init(&steps, sizeof(nw_step), 3 * (n + d->n_merges) + 1);
	if (n == 0) {
		err = cluster_buf_put(&text, ";\n", 3);
		goto finish;
	}
	err = parents_make(&parent, d);
	if (err)
		goto done;
	err = mamori_vec_push(&steps, &(nw_step){ cluster_root(d), NW_ENTER });
	while (!err && steps.count > 0) {
		nw_step st = MAMORI_VEC_AT(&steps, nw_step, --steps.count);
		uint32_t id = st.id;

		if (st.kind == NW_COMMA) {
			err = cluster_buf_put(&text, ",", 1);
			continue;
		}
		if (st.kind == NW_ENTER && id >= n) {
			const mamori_merge *g = &d->merges[id - n];
			if ((err = mamori_vec_push(&steps, &(nw_step){ id, NW_CLOSE })) ||
			    (err = mamori_vec_push(&steps, &(nw_step){ g->b, NW_ENTER })) ||
			    (err = mamori_vec_push(&steps, &(nw_step){ 0, NW_COMMA })) ||
			    (err = mamori_vec_push(&steps, &(nw_step){ g->a, NW_ENTER })))
				break;
			err = cluster_buf_put(&text, "(", 1);
			continue;
		}
		if (st.kind == NW_ENTER)
			err = newick_name(&text, names ? names[id] : NULL, id);
		else
			err = cluster_buf_put(&text, ")", 1);
		if (!err && parent[id] != NO_NODE)
			err = newick_length(&text, (node_height(d, parent[id]) - node_height(d, id)) / 2.0);
	}
	if (err)
		goto done;
	err = cluster_buf_put(&text, ";\n", 3);
finish:
	if (!err) {
		size_t len;
		*out = mamori_vec_steal(&text, &len);
		text.data = NULL;
	}
done:
	free(parent);
	mamori_vec_free(&text);
	mamori_vec_free(&steps);
	return err;
}
