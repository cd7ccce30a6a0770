/*
 * Tests of src/cluster: the nearest-neighbour-chain clustering against a
 * naive O(n^3) reference (global closest pair, Lance-Williams updates) on
 * many random matrices for all three linkages, hand-computed examples, ties,
 * the degenerate sizes, the flat cut, Newick (parsed back by a tiny parser)
 * and SVG (checked for tag nesting here, and by xmllint when installed).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "mamori/base.h"
#include "mamori/cluster.h"

/* ---- helpers ---- */

static uint64_t rng_state;

static uint32_t rng_next(void)
{
	/* xorshift64*: deterministic per seed, good enough for test data */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (uint32_t)((rng_state * UINT64_C(2685821657736338717)) >> 32);
}

static double rng_unit(void)
{
	return (rng_next() + 0.5) / 4294967296.0;
}

static size_t npairs(size_t n)
{
	return n * (n - 1) / 2;
}

/* Distinct values in (0,1): a shuffled, jittered ramp (the jitter keeps
 * averages of clusters from tying too, as they would on an exact ramp), so
 * that with no ties both algorithms must build the same tree. */
static float *matrix_uniform(size_t n)
{
	size_t m = npairs(n);
	float *d = malloc((m ? m : 1) * sizeof(*d));

	assert_non_null(d);
	for (size_t i = 0; i < m; i++)
		d[i] = (float)(((double)i + 0.1 + 0.8 * rng_unit()) / (double)m);
	for (size_t i = m; i > 1; i--) {
		size_t j = rng_next() % i;
		float t = d[i - 1];
		d[i - 1] = d[j];
		d[j] = t;
	}
	return d;
}

/* Points around a few centres in the plane, Euclidean distance scaled to
 * [0,1]: a matrix with real cluster structure. */
static float *matrix_clustered(size_t n)
{
	size_t m = npairs(n), k = 0, centres = 1 + rng_next() % 5;
	double *x = malloc((n + 1) * sizeof(*x)), *y = malloc((n + 1) * sizeof(*y));
	float *d = malloc((m ? m : 1) * sizeof(*d));
	double cx[6], cy[6], max = 0;

	assert_non_null(x);
	assert_non_null(y);
	assert_non_null(d);
	for (size_t c = 0; c < centres; c++) {
		cx[c] = rng_unit() * 10;
		cy[c] = rng_unit() * 10;
	}
	for (size_t i = 0; i < n; i++) {
		size_t c = rng_next() % centres;
		x[i] = cx[c] + rng_unit() - 0.5;
		y[i] = cy[c] + rng_unit() - 0.5;
	}
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n; j++) {
			double v = hypot(x[i] - x[j], y[i] - y[j]);
			d[k++] = (float)v;
			if (v > max)
				max = v;
		}
	for (size_t i = 0; i < m; i++)
		d[i] = (float)(d[i] / (max > 0 ? max : 1));
	free(x);
	free(y);
	return d;
}

static float *matrix_copy(const float *d, size_t n)
{
	size_t m = npairs(n);
	float *c = malloc((m ? m : 1) * sizeof(*c));

	assert_non_null(c);
	if (m)
		memcpy(c, d, m * sizeof(*c));
	return c;
}

/* ---- the naive reference ---- */

typedef struct ref_merge {
	size_t a, b; /* leaf representatives */
	double height;
} ref_merge;

static float ref_update(mamori_linkage link, float dix, float diy, double nx, double ny)
{
	if (link == MAMORI_LINK_SINGLE)
		return dix < diy ? dix : diy;
	if (link == MAMORI_LINK_COMPLETE)
		return dix > diy ? dix : diy;
	return (float)((nx * (double)dix + ny * (double)diy) / (nx + ny));
}

/* O(n^3): merge the globally closest pair of clusters, n-1 times. */
static ref_merge *ref_hac(const float *cond, size_t n, mamori_linkage link)
{
	float *D = malloc(n * n * sizeof(*D));
	size_t *size = malloc(n * sizeof(*size));
	int *alive = malloc(n * sizeof(*alive));
	ref_merge *out = malloc((n ? n : 1) * sizeof(*out));

	assert_non_null(D);
	assert_non_null(size);
	assert_non_null(alive);
	assert_non_null(out);
	for (size_t i = 0; i < n; i++) {
		size[i] = 1;
		alive[i] = 1;
		D[i * n + i] = 0;
		for (size_t j = i + 1; j < n; j++)
			D[i * n + j] = D[j * n + i] = cond[mamori_condensed_index(n, i, j)];
	}
	for (size_t k = 0; k + 1 < n; k++) {
		size_t bi = 0, bj = 0;
		float best = INFINITY;
		for (size_t i = 0; i < n; i++)
			for (size_t j = i + 1; alive[i] && j < n; j++)
				if (alive[j] && D[i * n + j] < best) {
					best = D[i * n + j];
					bi = i;
					bj = j;
				}
		out[k] = (ref_merge){ bi, bj, best };
		for (size_t i = 0; i < n; i++) {
			if (!alive[i] || i == bi || i == bj)
				continue;
			float v = ref_update(link, D[i * n + bi], D[i * n + bj], (double)size[bi],
					     (double)size[bj]);
			D[i * n + bi] = D[bi * n + i] = v;
		}
		size[bi] += size[bj];
		alive[bj] = 0;
	}
	free(D);
	free(size);
	free(alive);
	return out;
}

static size_t uf_find(size_t *p, size_t x)
{
	while (p[x] != x)
		x = p[x] = p[p[x]];
	return x;
}

/* Canonical labels of a partition given as a root per leaf: by size
 * descending, ties by smallest leaf. */
static size_t canonical_labels(int64_t *labels, const size_t *root, size_t n)
{
	size_t *count = calloc(n, sizeof(*count)), *first = malloc(n * sizeof(*first));
	size_t k = 0;

	assert_non_null(count);
	assert_non_null(first);
	for (size_t i = 0; i < n; i++)
		first[i] = SIZE_MAX;
	for (size_t i = 0; i < n; i++) {
		count[root[i]]++;
		if (first[root[i]] == SIZE_MAX) {
			first[root[i]] = i;
			k++;
		}
	}
	for (size_t i = 0; i < n; i++) {
		size_t r = root[i], rank = 0;
		for (size_t j = 0; j < n; j++) {
			if (first[j] == SIZE_MAX || j == r)
				continue;
			if (count[j] > count[r] || (count[j] == count[r] && first[j] < first[r]))
				rank++;
		}
		labels[i] = (int64_t)rank;
	}
	free(count);
	free(first);
	return k;
}

static size_t ref_cut(int64_t *labels, const ref_merge *rm, size_t n, double t)
{
	size_t *p = malloc(n * sizeof(*p)), *root = malloc(n * sizeof(*root)), k;

	assert_non_null(p);
	assert_non_null(root);
	for (size_t i = 0; i < n; i++)
		p[i] = i;
	for (size_t m = 0; m + 1 < n; m++)
		if (rm[m].height <= t)
			p[uf_find(p, rm[m].a)] = uf_find(p, rm[m].b);
	for (size_t i = 0; i < n; i++)
		root[i] = uf_find(p, i);
	k = canonical_labels(labels, root, n);
	free(p);
	free(root);
	return k;
}

/* Structural invariants any dendrogram from mamori_hac must keep. */
static void check_structure(const mamori_dendrogram *d, size_t n)
{
	uint8_t *used = calloc(2 * n + 1, 1);
	uint32_t *order = NULL;

	assert_non_null(used);
	assert_int_equal(d->n_leaves, n);
	assert_int_equal(d->n_merges, n ? n - 1 : 0);
	for (size_t k = 0; k < d->n_merges; k++) {
		const mamori_merge *g = &d->merges[k];
		assert_true(g->a < g->b);
		assert_true(g->b < n + k);
		assert_false(used[g->a]);
		assert_false(used[g->b]);
		used[g->a] = used[g->b] = 1;
		uint32_t sa = g->a < n ? 1 : d->merges[g->a - n].size;
		uint32_t sb = g->b < n ? 1 : d->merges[g->b - n].size;
		assert_int_equal(g->size, sa + sb);
		if (k > 0)
			assert_true(g->height >= d->merges[k - 1].height);
	}
	assert_int_equal(mamori_dendrogram_leaf_order(&order, d), MAMORI_OK);
	memset(used, 0, 2 * n + 1);
	for (size_t i = 0; i < n; i++) {
		assert_true(order[i] < n);
		assert_false(used[order[i]]);
		used[order[i]] = 1;
	}
	free(order);
	free(used);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Cluster `cond` both ways and compare heights and every distinct flat cut. */
static void compare_with_reference(const float *cond, size_t n, mamori_linkage link)
{
	float *work = matrix_copy(cond, n);
	mamori_dendrogram *d = NULL;
	ref_merge *rm = ref_hac(cond, n, link);
	double *rh = malloc((n ? n : 1) * sizeof(*rh));
	int64_t *la = malloc((n ? n : 1) * sizeof(*la)), *lb = malloc((n ? n : 1) * sizeof(*lb));

	assert_non_null(rh);
	assert_non_null(la);
	assert_non_null(lb);
	assert_int_equal(mamori_hac(&d, work, n, link), MAMORI_OK);
	check_structure(d, n);
	for (size_t k = 0; k + 1 < n; k++)
		rh[k] = rm[k].height;
	qsort(rh, n ? n - 1 : 0, sizeof(*rh), cmp_double);
	for (size_t k = 0; k + 1 < n; k++) {
		if (fabs(rh[k] - d->merges[k].height) >= 1e-5) {
			print_error("n=%zu %s merge %zu: reference %.9g, got %.9g\n", n,
				    mamori_linkage_name(link), k, rh[k], d->merges[k].height);
			for (size_t q = 0; q + 1 < n; q++)
				print_error("%zu: ref %zu %zu %.9g | got %u %u %.9g size %u\n", q, rm[q].a,
					    rm[q].b, rm[q].height, d->merges[q].a, d->merges[q].b,
					    d->merges[q].height, d->merges[q].size);
		}
		assert_true(fabs(rh[k] - d->merges[k].height) < 1e-5);
	}

	/* Every threshold that falls clearly between two heights. */
	for (size_t k = 0; k <= d->n_merges; k++) {
		double lo = k ? d->merges[k - 1].height : -0.5;
		double hi = k < d->n_merges ? d->merges[k].height : 2.0;
		size_t ka, kb;
		if (hi - lo < 1e-4)
			continue;
		double t = (lo + hi) / 2;
		assert_int_equal(mamori_dendrogram_cut(la, &ka, d, t), MAMORI_OK);
		kb = ref_cut(lb, rm, n, t);
		assert_int_equal(ka, kb);
		assert_int_equal(ka, n - k);
		for (size_t i = 0; i < n; i++)
			assert_int_equal(la[i], lb[i]);
	}
	mamori_dendrogram_free(d);
	free(work);
	free(rm);
	free(rh);
	free(la);
	free(lb);
}

/* ---- tests ---- */

static const mamori_linkage all_links[] = { MAMORI_LINK_AVERAGE, MAMORI_LINK_SINGLE, MAMORI_LINK_COMPLETE };

static void test_random_against_reference(void **state)
{
	(void)state;
	for (uint64_t seed = 1; seed <= 400; seed++) {
		rng_state = seed * UINT64_C(0x9e3779b97f4a7c15);
		size_t n = 1 + rng_next() % 60;
		float *u = matrix_uniform(n);
		float *c = matrix_clustered(n);
		for (size_t l = 0; l < 3; l++) {
			compare_with_reference(u, n, all_links[l]);
			compare_with_reference(c, n, all_links[l]);
		}
		free(u);
		free(c);
	}
}

/* A, B, C, D with hand-computed UPGMA, single and complete heights. */
static const float four[] = {
	0.2f, 0.6f, 0.8f, /* AB AC AD */
	0.5f, 0.7f,	  /* BC BD */
	0.3f,		  /* CD */
};

static void test_four_points(void **state)
{
	static const double want[3][3] = { { 0.2, 0.3, 0.65 }, { 0.2, 0.3, 0.5 }, { 0.2, 0.3, 0.8 } };
	(void)state;
	for (size_t l = 0; l < 3; l++) {
		float m[6];
		mamori_dendrogram *d = NULL;
		memcpy(m, four, sizeof(m));
		assert_int_equal(mamori_hac(&d, m, 4, all_links[l]), MAMORI_OK);
		assert_int_equal(d->n_merges, 3);
		for (size_t k = 0; k < 3; k++)
			assert_true(fabs(d->merges[k].height - want[l][k]) < 1e-6);
		assert_int_equal(d->merges[0].a, 0);
		assert_int_equal(d->merges[0].b, 1);
		assert_int_equal(d->merges[1].a, 2);
		assert_int_equal(d->merges[1].b, 3);
		assert_int_equal(d->merges[2].a, 4);
		assert_int_equal(d->merges[2].b, 5);
		assert_int_equal(d->merges[2].size, 4);

		int64_t lab[4];
		size_t k;
		assert_int_equal(mamori_dendrogram_cut(lab, &k, d, 0.25), MAMORI_OK);
		assert_int_equal(k, 3);
		assert_int_equal(lab[0], 0);
		assert_int_equal(lab[1], 0);
		assert_int_equal(lab[2], 1);
		assert_int_equal(lab[3], 2);
		assert_int_equal(mamori_dendrogram_cut(lab, &k, d, 0.3),
				 MAMORI_OK); /* <= applies, in float */
		assert_int_equal(k, 2);
		assert_int_equal(lab[2], 1);
		assert_int_equal(lab[3], 1);
		assert_int_equal(mamori_dendrogram_cut(lab, &k, d, -1), MAMORI_OK);
		assert_int_equal(k, 4);
		assert_int_equal(mamori_dendrogram_cut(lab, &k, d, 1.0), MAMORI_OK);
		assert_int_equal(k, 1);
		assert_int_equal(lab[3], 0);

		if (all_links[l] == MAMORI_LINK_AVERAGE) {
			static const char *const names[] = { "A", "B", "C", "D" };
			char *nw = NULL;
			assert_int_equal(mamori_dendrogram_newick(&nw, d, names), MAMORI_OK);
			assert_string_equal(nw, "((A:0.1,B:0.1):0.225,(C:0.15,D:0.15):0.175);\n");
			free(nw);
		}
		mamori_dendrogram_free(d);
	}
}

static void test_cut_ranks_by_size(void **state)
{
	/* Leaves 0 and 3 alone, 1-2-4 together: the big cluster is 0. */
	float m[10];
	mamori_dendrogram *d = NULL;
	int64_t lab[5];
	size_t k;
	(void)state;
	for (size_t i = 0; i < 5; i++)
		for (size_t j = i + 1; j < 5; j++) {
			bool in_i = i == 1 || i == 2 || i == 4, in_j = j == 1 || j == 2 || j == 4;
			m[mamori_condensed_index(5, i, j)] = in_i && in_j ? 0.1f : 0.9f;
		}
	assert_int_equal(mamori_hac(&d, m, 5, MAMORI_LINK_AVERAGE), MAMORI_OK);
	assert_int_equal(mamori_dendrogram_cut(lab, &k, d, 0.5), MAMORI_OK);
	assert_int_equal(k, 3);
	assert_int_equal(lab[1], 0);
	assert_int_equal(lab[2], 0);
	assert_int_equal(lab[4], 0);
	assert_int_equal(lab[0], 1);
	assert_int_equal(lab[3], 2);
	mamori_dendrogram_free(d);
}

static void test_ties(void **state)
{
	(void)state;
	/* All equal: every merge at 0.5 in every linkage. */
	for (size_t l = 0; l < 3; l++) {
		size_t n = 9;
		float *m = malloc(npairs(n) * sizeof(*m));
		mamori_dendrogram *d = NULL;
		int64_t lab[9];
		size_t k;
		assert_non_null(m);
		for (size_t i = 0; i < npairs(n); i++)
			m[i] = 0.5f;
		assert_int_equal(mamori_hac(&d, m, n, all_links[l]), MAMORI_OK);
		check_structure(d, n);
		for (size_t i = 0; i < d->n_merges; i++)
			assert_true(d->merges[i].height == (double)0.5f);
		assert_int_equal(mamori_dendrogram_cut(lab, &k, d, 0.49), MAMORI_OK);
		assert_int_equal(k, n);
		for (size_t i = 0; i < n; i++)
			assert_int_equal(lab[i], (int64_t)i); /* all size 1: by smallest leaf */
		assert_int_equal(mamori_dendrogram_cut(lab, &k, d, 0.5), MAMORI_OK);
		assert_int_equal(k, 1);
		mamori_dendrogram_free(d);
		free(m);
	}
	/* Few distinct values, many ties, identical samples (distance 0). Single
	 * linkage heights are unique (the minimum spanning tree), so compare them
	 * with the reference; the others must at least be valid trees. */
	for (uint64_t seed = 1; seed <= 60; seed++) {
		rng_state = seed;
		size_t n = 2 + rng_next() % 40;
		float *m = malloc(npairs(n) * sizeof(*m));
		assert_non_null(m);
		for (size_t i = 0; i < npairs(n); i++)
			m[i] = (float)(rng_next() % 4) * 0.25f;
		compare_with_reference(m, n, MAMORI_LINK_SINGLE);
		for (size_t l = 0; l < 3; l++) {
			float *w = matrix_copy(m, n);
			mamori_dendrogram *d = NULL;
			assert_int_equal(mamori_hac(&d, w, n, all_links[l]), MAMORI_OK);
			check_structure(d, n);
			mamori_dendrogram_free(d);
			free(w);
		}
		free(m);
	}
}

static void test_degenerate_sizes(void **state)
{
	mamori_dendrogram *d = NULL;
	int64_t lab[2];
	size_t k = 99;
	char *nw = NULL;
	uint32_t *order = (uint32_t *)&k;
	(void)state;

	/* n = 0: an empty dendrogram, documented, not an error. */
	assert_int_equal(mamori_hac(&d, NULL, 0, MAMORI_LINK_AVERAGE), MAMORI_OK);
	assert_int_equal(d->n_leaves, 0);
	assert_int_equal(d->n_merges, 0);
	assert_int_equal(mamori_dendrogram_cut(NULL, &k, d, 0.5), MAMORI_OK);
	assert_int_equal(k, 0);
	assert_int_equal(mamori_dendrogram_newick(&nw, d, NULL), MAMORI_OK);
	assert_string_equal(nw, ";\n");
	free(nw);
	assert_int_equal(mamori_dendrogram_leaf_order(&order, d), MAMORI_OK);
	assert_null(order);
	mamori_dendrogram_free(d);

	/* n = 1 */
	assert_int_equal(mamori_hac(&d, NULL, 1, MAMORI_LINK_COMPLETE), MAMORI_OK);
	assert_int_equal(d->n_merges, 0);
	assert_int_equal(mamori_dendrogram_cut(lab, &k, d, 0.5), MAMORI_OK);
	assert_int_equal(k, 1);
	assert_int_equal(lab[0], 0);
	const char *one[] = { "only one" };
	assert_int_equal(mamori_dendrogram_newick(&nw, d, one), MAMORI_OK);
	assert_string_equal(nw, "'only one';\n");
	free(nw);
	mamori_dendrogram_free(d);

	/* n = 2 */
	float m2[1] = { 0.25f };
	assert_int_equal(mamori_hac(&d, m2, 2, MAMORI_LINK_SINGLE), MAMORI_OK);
	assert_int_equal(d->n_merges, 1);
	assert_int_equal(d->merges[0].a, 0);
	assert_int_equal(d->merges[0].b, 1);
	assert_true(d->merges[0].height == 0.25);
	assert_int_equal(d->merges[0].size, 2);
	assert_int_equal(mamori_dendrogram_newick(&nw, d, NULL), MAMORI_OK);
	assert_string_equal(nw, "(0:0.125,1:0.125);\n");
	free(nw);
	mamori_dendrogram_free(d);
	mamori_dendrogram_free(NULL);
}

static void test_bad_input(void **state)
{
	mamori_dendrogram sentinel = { 0 }, *d = &sentinel;
	mamori_linkage l;
	float m[3] = { 0.1f, NAN, 0.3f };
	(void)state;

	assert_int_equal(mamori_hac(&d, m, 3, MAMORI_LINK_AVERAGE), MAMORI_EINVAL);
	assert_null(d);
	assert_non_null(strstr(mamori_error_detail(), "items 0 and 2"));
	m[1] = -0.1f;
	assert_int_equal(mamori_hac(&d, m, 3, MAMORI_LINK_AVERAGE), MAMORI_EINVAL);
	m[1] = INFINITY;
	assert_int_equal(mamori_hac(&d, m, 3, MAMORI_LINK_AVERAGE), MAMORI_EINVAL);
	assert_int_equal(mamori_hac(&d, NULL, 3, MAMORI_LINK_AVERAGE), MAMORI_EINVAL);
	assert_int_equal(mamori_hac(&d, m, 3, (mamori_linkage)7), MAMORI_EINVAL);
	assert_int_equal(mamori_hac(NULL, m, 3, MAMORI_LINK_AVERAGE), MAMORI_EINVAL);

	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(mamori_linkage_parse(&l, mamori_linkage_name(all_links[i])), MAMORI_OK);
		assert_int_equal(l, all_links[i]);
	}
	assert_string_equal(mamori_linkage_name(MAMORI_LINK_AVERAGE), "average");
	assert_string_equal(mamori_linkage_name(MAMORI_LINK_SINGLE), "single");
	assert_string_equal(mamori_linkage_name(MAMORI_LINK_COMPLETE), "complete");
	assert_int_equal(mamori_linkage_parse(&l, "ward"), MAMORI_EINVAL);
	assert_int_equal(mamori_linkage_parse(&l, "Average"), MAMORI_EINVAL);

	/* A hand-made tree with a node merged twice is refused. */
	mamori_merge bad[2] = { { 0, 1, 0.1, 2 }, { 0, 2, 0.2, 2 } };
	mamori_dendrogram bd = { .n_leaves = 3, .merges = bad, .n_merges = 2 };
	int64_t lab[3];
	size_t k;
	char *nw = NULL;
	assert_int_equal(mamori_dendrogram_cut(lab, &k, &bd, 0.5), MAMORI_EINVAL);
	assert_int_equal(mamori_dendrogram_newick(&nw, &bd, NULL), MAMORI_EINVAL);
	bad[1] = (mamori_merge){ 2, 3, 0.05, 3 }; /* height goes down */
	assert_int_equal(mamori_dendrogram_cut(lab, &k, &bd, 0.5), MAMORI_EINVAL);
	bad[1] = (mamori_merge){ 2, 3, 0.2, 3 };
	assert_int_equal(mamori_dendrogram_cut(lab, &k, &bd, 0.5), MAMORI_OK);
	assert_int_equal(mamori_dendrogram_cut(lab, &k, &bd, NAN), MAMORI_EINVAL);
	bd.n_merges = 1;
	assert_int_equal(mamori_dendrogram_cut(lab, &k, &bd, 0.5), MAMORI_EINVAL);
}

static void test_condensed_index(void **state)
{
	size_t n = 7, want = 0;
	(void)state;
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n; j++, want++) {
			assert_int_equal(mamori_condensed_index(n, i, j), want);
			assert_int_equal(mamori_condensed_index(n, j, i), want);
		}
	assert_int_equal(mamori_condensed_index(n, 3, 3), SIZE_MAX);
	assert_int_equal(mamori_condensed_index(n, 3, 7), SIZE_MAX);
}

/* ---- Newick parsed back ---- */

typedef struct newick_stats {
	size_t leaves, opens, closes, commas;
	char **names;
} newick_stats;

/* A tiny Newick reader: labels (quoted with '' escapes, or bare),
 * ":length", parentheses and commas, then ';'. Fails the test on bad syntax. */
static void newick_parse(newick_stats *st, const char *s, size_t max_leaves)
{
	int depth = 0;
	bool expect_label = true;

	memset(st, 0, sizeof(*st));
	st->names = calloc(max_leaves + 1, sizeof(char *));
	assert_non_null(st->names);
	for (;;) {
		char c = *s;
		if (c == '(') {
			assert_true(expect_label);
			depth++;
			st->opens++;
			s++;
			continue;
		}
		if (c == ',' || c == ')' || c == ';') {
			if (expect_label) { /* an empty label: only a leaf can be unnamed here */
				assert_true(c == ';' && st->opens == 0 && st->leaves == 0);
			}
			if (c == ',') {
				assert_true(depth > 0);
				st->commas++;
				expect_label = true;
			} else if (c == ')') {
				assert_true(depth > 0);
				depth--;
				st->closes++;
				expect_label = false;
				s++;
				/* an inner node may be followed by a length */
				if (*s == ':') {
					char *end;
					strtod(s + 1, &end);
					assert_true(end > s + 1);
					s = end;
				}
				continue;
			} else {
				assert_int_equal(depth, 0);
				assert_string_equal(s, ";\n");
				return;
			}
			s++;
			continue;
		}
		/* a leaf label */
		assert_true(expect_label);
		char buf[512];
		size_t w = 0;
		if (c == '\'') {
			s++;
			for (;;) {
				assert_true(*s != '\0');
				if (*s == '\'' && s[1] == '\'') {
					buf[w++] = '\'';
					s += 2;
				} else if (*s == '\'') {
					s++;
					break;
				} else {
					buf[w++] = *s++;
				}
				assert_true(w < sizeof(buf));
			}
		} else {
			while (*s && !strchr("(),:;'[] \t\n", *s)) {
				buf[w++] = *s++;
				assert_true(w < sizeof(buf));
			}
			assert_true(w > 0);
		}
		buf[w] = '\0';
		assert_true(st->leaves < max_leaves);
		st->names[st->leaves++] = strdup(buf);
		if (*s == ':') {
			char *end;
			double len = strtod(s + 1, &end);
			assert_true(end > s + 1);
			assert_true(len >= 0);
			s = end;
		}
		expect_label = false;
	}
}

static void newick_stats_free(newick_stats *st)
{
	for (size_t i = 0; i < st->leaves; i++)
		free(st->names[i]);
	free(st->names);
}

static void test_newick_roundtrip(void **state)
{
	static const char *const names[] = {
		"plain",       "with space", "colon:name", "it's",	"par(en)",
		"under_score", "semi;colon", "comma,here", "brack[et]", ""
	};
	size_t n = sizeof(names) / sizeof(names[0]);
	float *m;
	mamori_dendrogram *d = NULL;
	char *nw = NULL;
	newick_stats st;
	(void)state;

	rng_state = 42;
	m = matrix_uniform(n);
	assert_int_equal(mamori_hac(&d, m, n, MAMORI_LINK_AVERAGE), MAMORI_OK);
	assert_int_equal(mamori_dendrogram_newick(&nw, d, names), MAMORI_OK);
	newick_parse(&st, nw, n);
	assert_int_equal(st.leaves, n);
	assert_int_equal(st.opens, n - 1);
	assert_int_equal(st.closes, n - 1);
	assert_int_equal(st.commas, n - 1);
	for (size_t i = 0; i < n; i++) {
		bool found = false;
		for (size_t j = 0; j < st.leaves; j++)
			found |= strcmp(st.names[j], names[i]) == 0;
		assert_true(found);
	}
	assert_non_null(strstr(nw, "'it''s'"));
	assert_non_null(strstr(nw, "'under_score'"));
	newick_stats_free(&st);
	free(nw);
	mamori_dendrogram_free(d);
	free(m);
}

/* Points on a line at x = i^2: single linkage joins them one by one, a tree
 * as deep as it is wide. Nothing may recurse that deep. */
static mamori_dendrogram *chain_tree(size_t n)
{
	float *m = malloc(npairs(n) * sizeof(*m));
	mamori_dendrogram *d = NULL;
	double max = (double)(n - 1) * (double)(n - 1);

	assert_non_null(m);
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n; j++)
			m[mamori_condensed_index(n, i, j)] = (float)(((double)j * j - (double)i * i) / max);
	assert_int_equal(mamori_hac(&d, m, n, MAMORI_LINK_SINGLE), MAMORI_OK);
	free(m);
	return d;
}

static void test_deep_chain(void **state)
{
	size_t n = 4000;
	mamori_dendrogram *d = chain_tree(n);
	char *nw = NULL;
	newick_stats st;
	(void)state;

	check_structure(d, n);
	/* Every merge adds one leaf to the cluster built so far. */
	for (size_t k = 1; k < d->n_merges; k++)
		assert_int_equal(d->merges[k].size, k + 2);
	assert_int_equal(mamori_dendrogram_newick(&nw, d, NULL), MAMORI_OK);
	newick_parse(&st, nw, n);
	assert_int_equal(st.leaves, n);
	assert_int_equal(st.opens, n - 1);
	newick_stats_free(&st);
	free(nw);
	FILE *f = tmpfile();
	assert_non_null(f);
	assert_int_equal(mamori_dendrogram_svg(f, d, NULL, NULL), MAMORI_OK);
	fclose(f);
	mamori_dendrogram_free(d);
}

/* ---- SVG well-formedness ---- */

static char *read_stream(FILE *f, size_t *out_len)
{
	long len;
	char *buf;

	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	len = ftell(f);
	assert_true(len > 0);
	rewind(f);
	buf = malloc((size_t)len + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
	buf[len] = '\0';
	*out_len = (size_t)len;
	return buf;
}

/* Check that tags nest, that there is one root <svg>, that attribute values
 * are quoted and that text has no stray '<' or '&'. */
static void check_xml_nesting(const char *s)
{
	const char *stack[64];
	size_t stack_len[64];
	size_t depth = 0, roots = 0;

	while (*s) {
		if (*s == '&') {
			assert_true(strncmp(s, "&amp;", 5) == 0 || strncmp(s, "&lt;", 4) == 0 ||
				    strncmp(s, "&gt;", 4) == 0 || strncmp(s, "&quot;", 6) == 0);
			s++;
			continue;
		}
		if (*s != '<') {
			if (depth == 0)
				assert_true(*s == '\n' || *s == ' ');
			s++;
			continue;
		}
		if (s[1] == '?') {
			const char *e = strstr(s, "?>");
			assert_non_null(e);
			s = e + 2;
			continue;
		}
		bool closing = s[1] == '/';
		const char *name = s + (closing ? 2 : 1);
		size_t nlen = strcspn(name, " \t\n/>");
		assert_true(nlen > 0);
		const char *p = name + nlen;
		bool in_quote = false;
		while (*p && (in_quote || *p != '>')) {
			if (*p == '"')
				in_quote = !in_quote;
			assert_true(*p != '<');
			p++;
		}
		assert_int_equal(*p, '>');
		bool self_closing = p[-1] == '/';
		if (closing) {
			assert_true(depth > 0);
			depth--;
			assert_int_equal(stack_len[depth], nlen);
			assert_memory_equal(stack[depth], name, nlen);
		} else if (!self_closing) {
			if (depth == 0)
				roots++;
			assert_true(depth < 64);
			stack[depth] = name;
			stack_len[depth++] = nlen;
		}
		s = p + 1;
	}
	assert_int_equal(depth, 0);
	assert_int_equal(roots, 1);
}

static void xmllint_if_installed(const char *svg, size_t len)
{
	char path[] = "/tmp/mamori-cluster-XXXXXX";
	char cmd[256];
	int fd;

	if (system("command -v xmllint >/dev/null 2>&1") != 0) {
		print_message("xmllint not installed; only the nesting check ran\n");
		return;
	}
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, svg, len), (ssize_t)len);
	close(fd);
	snprintf(cmd, sizeof(cmd), "xmllint --noout '%s'", path);
	int rc = system(cmd);
	unlink(path);
	assert_int_equal(rc, 0);
}

static void test_svg(void **state)
{
	size_t n = 40;
	char **names = calloc(n, sizeof(char *));
	float *m;
	mamori_dendrogram *d = NULL;
	int64_t *lab = malloc(n * sizeof(*lab));
	size_t k, len;
	(void)state;

	assert_non_null(names);
	assert_non_null(lab);
	for (size_t i = 0; i < n; i++) {
		names[i] = malloc(48);
		assert_non_null(names[i]);
		snprintf(names[i], 48, "sample-%zu", i);
	}
	snprintf(names[3], 48, "a&b<c>\"q\"");
	snprintf(names[4], 48, "bad\xff\xfe utf8\x01");
	snprintf(names[5], 48, "%s", "\xc3\xa9t\xc3\xa9"); /* "été" */
	snprintf(names[6], 48, "%s", "a-very-long-name-that-is-cut-here");
	rng_state = 7;
	m = matrix_clustered(n);
	assert_int_equal(mamori_hac(&d, m, n, MAMORI_LINK_AVERAGE), MAMORI_OK);
	assert_int_equal(mamori_dendrogram_cut(lab, &k, d, 0.3), MAMORI_OK);

	/* Once with given labels, once computing them, once with nothing. */
	for (int variant = 0; variant < 3; variant++) {
		mamori_svg_opts o = { .title = "Families & <friends>",
				      .cut_height = variant == 2 ? -1 : 0.3,
				      .labels = variant == 0 ? lab : NULL,
				      .label_max_chars = 20 };
		FILE *f = tmpfile();
		assert_non_null(f);
		assert_int_equal(mamori_dendrogram_svg(f, d, (const char *const *)names, &o), MAMORI_OK);
		char *svg = read_stream(f, &len);
		fclose(f);
		check_xml_nesting(svg);
		xmllint_if_installed(svg, len);
		assert_non_null(strstr(svg, "Families &amp; &lt;friends&gt;"));
		for (size_t i = 7; i < n; i++) {
			char want[64];
			snprintf(want, sizeof(want), ">%s</text>", names[i]);
			assert_non_null(strstr(svg, want));
		}
		assert_non_null(strstr(svg, ">a&amp;b&lt;c&gt;\"q\"</text>"));
		assert_non_null(strstr(svg, ">bad?? utf8?</text>"));
		assert_non_null(strstr(svg, ">\xc3\xa9t\xc3\xa9</text>"));
		assert_non_null(strstr(svg, ">a-very-long-name-th\xe2\x80\xa6</text>"));
		assert_true((strstr(svg, "stroke-dasharray") != NULL) == (variant != 2));
		if (variant != 2)
			assert_non_null(strstr(svg, "cluster 0:"));
		free(svg);
	}
	/* No names at all: leaf indices. And the empty tree. */
	FILE *f = tmpfile();
	assert_non_null(f);
	assert_int_equal(mamori_dendrogram_svg(f, d, NULL, NULL), MAMORI_OK);
	char *svg = read_stream(f, &len);
	fclose(f);
	check_xml_nesting(svg);
	assert_non_null(strstr(svg, ">39</text>"));
	free(svg);
	mamori_dendrogram empty = { 0 };
	f = tmpfile();
	assert_non_null(f);
	assert_int_equal(mamori_dendrogram_svg(f, &empty, NULL, NULL), MAMORI_OK);
	svg = read_stream(f, &len);
	fclose(f);
	check_xml_nesting(svg);
	xmllint_if_installed(svg, len);
	free(svg);

	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	free(lab);
	free(m);
	mamori_dendrogram_free(d);
}

/* 3,000 leaves: the file must stay small and well-formed. */
static void test_svg_large(void **state)
{
	size_t n = 3000, k, len;
	float *m;
	mamori_dendrogram *d = NULL;
	int64_t *lab = malloc(n * sizeof(*lab));
	(void)state;

	assert_non_null(lab);
	rng_state = 99;
	m = matrix_clustered(n);
	assert_int_equal(mamori_hac(&d, m, n, MAMORI_LINK_AVERAGE), MAMORI_OK);
	assert_int_equal(mamori_dendrogram_cut(lab, &k, d, 0.1), MAMORI_OK);
	mamori_svg_opts o = { .title = "large", .cut_height = 0.1, .labels = lab };
	FILE *f = tmpfile();
	assert_non_null(f);
	assert_int_equal(mamori_dendrogram_svg(f, d, NULL, &o), MAMORI_OK);
	char *svg = read_stream(f, &len);
	fclose(f);
	assert_true(len < 2u << 20);
	check_xml_nesting(svg);
	xmllint_if_installed(svg, len);
	free(svg);
	free(lab);
	free(m);
	mamori_dendrogram_free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_condensed_index),
		cmocka_unit_test(test_four_points),
		cmocka_unit_test(test_cut_ranks_by_size),
		cmocka_unit_test(test_ties),
		cmocka_unit_test(test_degenerate_sizes),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_random_against_reference),
		cmocka_unit_test(test_newick_roundtrip),
		cmocka_unit_test(test_deep_chain),
		cmocka_unit_test(test_svg),
		cmocka_unit_test(test_svg_large),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
