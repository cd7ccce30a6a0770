/*
 * Tests of src/similarity: the fast exact LCS against the textbook dynamic
 * program on thousands of random pairs (alphabets 2..1000, lengths 0..300,
 * lengths across 64-bit word boundaries) and adversarial pairs; the cut-off
 * (never "below" when the exact LCS reaches min_lcs, and a valid upper
 * bound); the internal kernels (Myers, on-the-fly masks); alignments
 * (runs add up to the LCS, increase strictly, match tokens; long inputs
 * through divide and conquer); and the LSH candidate search.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mamori/base.h"
#include "mamori/similarity.h"
#include "sim_internal.h"

/* ---------------------------------------------------------------- helpers */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rnd(void)
{
	uint64_t x = rng_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

static size_t rnd_below(size_t n)
{
	return n ? (size_t)(rnd() % n) : 0;
}

static void fill_random(uint32_t *s, size_t n, size_t alphabet)
{
	for (size_t i = 0; i < n; i++)
		s[i] = (uint32_t)rnd_below(alphabet) * 2654435761u; /* sparse symbols */
}

/* A copy of a[0..n) with random substitutions, insertions and deletions;
 * returns the new length (out has room for 2n + 8). */
static size_t mutate(uint32_t *out, const uint32_t *a, size_t n, size_t edits, size_t alphabet)
{
	size_t len = n;
	memcpy(out, a, n * sizeof(*a));
	for (size_t e = 0; e < edits; e++) {
		size_t op = rnd_below(3), at = rnd_below(len + 1);
		uint32_t sym = (uint32_t)rnd_below(alphabet) * 2654435761u;
		if (op == 0 && at < len) {
			out[at] = sym;
		} else if (op == 1 && len < 2 * n + 8) {
			memmove(out + at + 1, out + at, (len - at) * sizeof(*out));
			out[at] = sym;
			len++;
		} else if (at < len) {
			memmove(out + at, out + at + 1, (len - at - 1) * sizeof(*out));
			len--;
		}
	}
	return len;
}

/* mamori_lcs against the DP, exact and with cut-offs around the answer. */
static void check_pair(const uint32_t *a, size_t n, const uint32_t *b, size_t m)
{
	size_t want = mamori_lcs_dp(a, n, b, m), got = 0;
	assert_int_equal(mamori_lcs(&got, a, n, b, m, 0), MAMORI_OK);
	if (got != want)
		fail_msg("lcs n=%zu m=%zu: got %zu, dp %zu", n, m, got, want);
	size_t mins[] = { 1, want, want + 1, want + 2, want / 2 + 1, (n < m ? n : m), (n < m ? n : m) + 1 };
	for (size_t i = 0; i < sizeof(mins) / sizeof(mins[0]); i++) {
		size_t min = mins[i], v = 0;
		if (min == 0)
			continue;
		int err = mamori_lcs(&v, a, n, b, m, min);
		if (err == MAMORI_OK) {
			if (v != want)
				fail_msg("lcs min=%zu n=%zu m=%zu: got %zu, dp %zu", min, n, m, v, want);
		} else {
			assert_int_equal(err, MAMORI_EBELOW);
			if (want >= min)
				fail_msg("claimed below %zu but lcs is %zu (n=%zu m=%zu)", min, want, n, m);
			if (v < want || v >= min)
				fail_msg("bad upper bound %zu (lcs %zu, min %zu)", v, want, min);
		}
	}
}

/* ------------------------------------------------------------ exact LCS */

static void test_dp_small(void **state)
{
	(void)state;
	const uint32_t a[] = { 1, 2, 3, 4, 1 }, b[] = { 3, 4, 1, 2, 1, 3 };
	assert_int_equal(mamori_lcs_dp(a, 5, b, 6), 3); /* 3 4 1 */
	assert_int_equal(mamori_lcs_dp(a, 0, b, 6), 0);
	assert_int_equal(mamori_lcs_dp(a, 5, a, 5), 5);
}

static void test_random_pairs(void **state)
{
	(void)state;
	static const size_t alphabets[] = { 2, 3, 4, 8, 20, 100, 1000 };
	uint32_t *a = malloc(700 * sizeof(*a)), *b = malloc(700 * sizeof(*b));
	assert_non_null(a);
	assert_non_null(b);
	for (int iter = 0; iter < 3000; iter++) {
		size_t alpha = alphabets[rnd_below(7)];
		size_t n = rnd_below(301), m;
		fill_random(a, n, alpha);
		if (iter % 3 == 0) {
			m = rnd_below(301);
			fill_random(b, m, alpha);
		} else {
			/* related: a variant with a few to many edits */
			m = mutate(b, a, n, rnd_below(n / 4 + 2), alpha);
		}
		check_pair(a, n, b, m);
	}
	free(a);
	free(b);
}

static void test_word_boundaries(void **state)
{
	(void)state;
	static const size_t lens[] = { 0, 1, 2, 63, 64, 65, 127, 128, 129, 191, 192, 193, 255, 256, 257 };
	size_t nl = sizeof(lens) / sizeof(lens[0]);
	uint32_t a[300], b[300];
	for (size_t i = 0; i < nl; i++)
		for (size_t j = 0; j < nl; j++)
			for (size_t alpha = 2; alpha <= 50; alpha += 48) {
				fill_random(a, lens[i], alpha);
				fill_random(b, lens[j], alpha);
				check_pair(a, lens[i], b, lens[j]);
				/* all-match masks: the carry runs through whole words */
				for (size_t k = 0; k < lens[i]; k++)
					a[k] = 7;
				for (size_t k = 0; k < lens[j]; k++)
					b[k] = (k % 5) ? 7 : 9;
				check_pair(a, lens[i], b, lens[j]);
			}
}

static void test_adversarial(void **state)
{
	(void)state;
	enum { N = 1500 };
	uint32_t *a = malloc(4 * N * sizeof(*a)), *b = malloc(4 * N * sizeof(*b));
	assert_non_null(a);
	assert_non_null(b);
	size_t v;

	fill_random(a, N, 300);
	/* identical */
	check_pair(a, N, a, N);
	assert_int_equal(mamori_lcs(&v, a, N, a, N, N), MAMORI_OK);
	assert_int_equal(v, N);
	/* reversed */
	for (size_t i = 0; i < N; i++)
		b[i] = a[N - 1 - i];
	check_pair(a, N, b, N);
	/* one or both empty */
	check_pair(a, N, b, 0);
	check_pair(a, 0, b, N);
	check_pair(a, 0, b, 0);
	assert_int_equal(mamori_lcs(&v, a, N, b, 0, 1), MAMORI_EBELOW);
	assert_int_equal(v, 0);
	/* all the same symbol, different lengths */
	for (size_t i = 0; i < N; i++)
		a[i] = 0xFFFFFFFFu;
	for (size_t i = 0; i < 700; i++)
		b[i] = 0xFFFFFFFFu;
	check_pair(a, N, b, 700);
	assert_int_equal(mamori_lcs(&v, a, N, b, 700, 0), MAMORI_OK);
	assert_int_equal(v, 700);
	/* disjoint alphabets */
	for (size_t i = 0; i < 700; i++)
		b[i] = 0;
	check_pair(a, N, b, 700);
	/* near-identical with few edits, edits at the ends too */
	fill_random(a, N, 1000);
	for (size_t edits = 1; edits < 40; edits += 7) {
		size_t m = mutate(b, a, N, edits, 1000);
		check_pair(a, N, b, m);
		b[0] ^= 1;
		b[m - 1] ^= 1;
		check_pair(a, N, b, m);
	}
	/* shifted (rotation) */
	for (size_t shift = 1; shift < N; shift += 377) {
		for (size_t i = 0; i < N; i++)
			b[i] = a[(i + shift) % N];
		check_pair(a, N, b, N);
	}
	/* periodic sequences of different periods */
	for (size_t i = 0; i < N; i++) {
		a[i] = (uint32_t)(i % 3);
		b[i] = (uint32_t)(i % 4);
	}
	check_pair(a, N, b, N);
	check_pair(a, N, b, N / 3);
	/* a long sequence against a short one */
	fill_random(a, 4 * N, 30);
	fill_random(b, 70, 30);
	check_pair(a, 4 * N, b, 70);
	check_pair(b, 70, a, 4 * N);
	free(a);
	free(b);
}

/* A larger near-identical pair: Myers ends it; the DP confirms. */
static void test_large_variants(void **state)
{
	(void)state;
	enum { N = 6000 };
	uint32_t *a = malloc(N * sizeof(*a)), *b = malloc((2 * N + 8) * sizeof(*b));
	assert_non_null(a);
	assert_non_null(b);
	fill_random(a, N, 400);
	for (size_t edits = 0; edits <= 600; edits += 150) {
		size_t m = mutate(b, a, N, edits, 400);
		check_pair(a, N, b, m);
	}
	fill_random(b, N, 400);
	check_pair(a, N, b, N);
	free(a);
	free(b);
}

/* ------------------------------------------------------- kernels direct */

static void test_myers_direct(void **state)
{
	(void)state;
	uint32_t a[400], b[900];
	for (int iter = 0; iter < 300; iter++) {
		size_t n = rnd_below(401), alpha = 2 + rnd_below(30);
		fill_random(a, n, alpha);
		size_t m = mutate(b, a, n, rnd_below(40), alpha);
		size_t dist = n + m - 2 * mamori_lcs_dp(a, n, b, m), d = 0;
		assert_int_equal(sim_myers(&d, a, n, b, m, n + m, UINT64_MAX), SIM_MYERS_FOUND);
		assert_int_equal(d, dist);
		if (dist > 0) {
			assert_int_equal(sim_myers(&d, a, n, b, m, dist - 1, UINT64_MAX), SIM_MYERS_CUT);
			int r = sim_myers(&d, a, n, b, m, n + m, 1);
			if (r == SIM_MYERS_BUDGET)
				assert_true(d < dist);
			else
				assert_int_equal(d, dist);
		}
	}
}

/* Masks built on the fly (budget 0) or partly dense give the same rows. */
static void test_sparse_masks(void **state)
{
	(void)state;
	uint32_t a[500], b[500];
	size_t budgets[] = { 0, 8 * 8, 8 * 8 * 10, SIM_MASK_BUDGET };
	for (int iter = 0; iter < 60; iter++) {
		size_t n = 1 + rnd_below(500), m = 1 + rnd_below(500), alpha = 2 + rnd_below(200);
		fill_random(a, n, alpha);
		fill_random(b, m, alpha);
		size_t want = mamori_lcs_dp(a, n, b, m);
		for (size_t k = 0; k < 4; k++) {
			sim_bp bp;
			assert_int_equal(sim_bp_init(&bp, b, m), MAMORI_OK);
			uint32_t *cnt = calloc(bp.n_sym + 1, sizeof(*cnt));
			assert_non_null(cnt);
			size_t rows, ub;
			size_t hist = sim_bp_histogram(&bp, a, n, cnt, &rows);
			assert_true(hist >= want);
			assert_int_equal(sim_bp_masks(&bp, cnt, budgets[k]), MAMORI_OK);
			uint64_t V[8];
			memset(V, 0xff, sizeof(V));
			assert_true(sim_bp_run(&bp, a, n, rows, V, 0, &ub, NULL));
			assert_int_equal(sim_bp_zeros(V, m), want);
			free(cnt);
			sim_bp_free(&bp);
		}
	}
}

/* ------------------------------------------------------------ similarity */

static void test_similarity_values(void **state)
{
	(void)state;
	assert_true(mamori_similarity_from_lcs(0, 0, 0) == 1.0);
	assert_true(mamori_similarity_from_lcs(10, 10, 10) == 1.0);
	assert_true(mamori_similarity_from_lcs(10, 10, 0) == 0.0);
	assert_true(mamori_similarity_from_lcs(4, 6, 4) == 4.0 / 6.0);
	assert_int_equal(mamori_lcs_needed(10, 10, 0.0), 0);
	assert_int_equal(mamori_lcs_needed(10, 10, 1.0), 10);
	assert_int_equal(mamori_lcs_needed(10, 20, 0.9), 11); /* only 10 possible */
	for (int iter = 0; iter < 5000; iter++) {
		size_t n = rnd_below(100000), m = rnd_below(100000);
		double f = (double)rnd_below(1001) / 1000.0;
		size_t l = mamori_lcs_needed(n, m, f), mn = n < m ? n : m;
		assert_true(l <= mn + 1);
		if (l <= mn)
			assert_true(mamori_similarity_from_lcs(n, m, l) >= f);
		if (l > 0 && f > 0)
			assert_true(mamori_similarity_from_lcs(n, m, l - 1) < f);
	}
}

static void test_similarity_floor(void **state)
{
	(void)state;
	uint32_t a[300], b[700];
	for (int iter = 0; iter < 1500; iter++) {
		size_t n = rnd_below(301), alpha = 2 + rnd_below(60), m;
		fill_random(a, n, alpha);
		if (iter & 1) {
			m = rnd_below(301);
			fill_random(b, m, alpha);
		} else {
			m = mutate(b, a, n, rnd_below(n / 3 + 2), alpha);
		}
		double exact = mamori_similarity_from_lcs(n, m, mamori_lcs_dp(a, n, b, m)), s = -1;
		assert_int_equal(mamori_similarity(&s, a, n, b, m, 0.0), MAMORI_OK);
		assert_true(s == exact);
		double fl = (double)rnd_below(101) / 100.0;
		int err = mamori_similarity(&s, a, n, b, m, fl);
		if (err == MAMORI_EBELOW) {
			assert_true(exact < fl);
			assert_true(s >= exact && s < fl);
		} else {
			assert_int_equal(err, MAMORI_OK);
			assert_true(s == exact);
		}
	}
}

/* ------------------------------------------------------------- alignment */

static void check_alignment(const uint32_t *a, size_t n, const uint32_t *b, size_t m, size_t want)
{
	mamori_alignment *al = NULL;
	assert_int_equal(mamori_align(&al, a, n, b, m), MAMORI_OK);
	assert_non_null(al);
	size_t sum = 0;
	for (size_t r = 0; r < al->n_runs; r++) {
		const mamori_match_run *x = &al->runs[r];
		assert_true(x->len > 0);
		assert_true(x->a_pos + x->len <= n && x->b_pos + x->len <= m);
		for (size_t i = 0; i < x->len; i++)
			if (a[x->a_pos + i] != b[x->b_pos + i])
				fail_msg("run %zu does not match at %zu", r, i);
		if (r > 0) {
			const mamori_match_run *p = &al->runs[r - 1];
			assert_true(x->a_pos >= p->a_pos + p->len);
			assert_true(x->b_pos >= p->b_pos + p->len);
			/* maximal: adjacent in both would have been merged */
			assert_false(x->a_pos == p->a_pos + p->len && x->b_pos == p->b_pos + p->len);
		}
		sum += x->len;
	}
	if (sum != want || al->lcs != want)
		fail_msg("alignment n=%zu m=%zu: runs sum %zu, lcs %zu, want %zu", n, m, sum, al->lcs, want);
	mamori_alignment_free(al);
}

static void test_align_random(void **state)
{
	(void)state;
	uint32_t *a = malloc(700 * sizeof(*a)), *b = malloc(700 * sizeof(*b));
	assert_non_null(a);
	assert_non_null(b);
	for (int iter = 0; iter < 1500; iter++) {
		size_t alpha = 2 + rnd_below(iter % 2 ? 10 : 1000), n = rnd_below(301), m;
		fill_random(a, n, alpha);
		if (iter % 3 == 0) {
			m = rnd_below(301);
			fill_random(b, m, alpha);
		} else {
			m = mutate(b, a, n, rnd_below(n / 4 + 2), alpha);
		}
		check_alignment(a, n, b, m, mamori_lcs_dp(a, n, b, m));
	}
	mamori_alignment_free(NULL);
	free(a);
	free(b);
}

/* Past the row-storage cap the alignment splits (Hirschberg); a long
 * near-identical pair goes through Myers' trace. */
static void test_align_large(void **state)
{
	(void)state;
	enum { N = 13000 };
	uint32_t *a = malloc(N * sizeof(*a)), *b = malloc((2 * N + 8) * sizeof(*b));
	assert_non_null(a);
	assert_non_null(b);
	fill_random(a, N, 40);
	fill_random(b, N, 40);
	check_alignment(a, N, b, N, mamori_lcs_dp(a, N, b, N));
	size_t m = mutate(b, a, N, 300, 40);
	check_alignment(a, N, b, m, mamori_lcs_dp(a, N, b, m));
	m = mutate(b, a, N, 3000, 40);
	check_alignment(a, N, b, m, mamori_lcs_dp(a, N, b, m));
	free(a);
	free(b);
}

/* 120k tokens: alignment in bounded memory agrees with mamori_lcs. */
static void test_align_huge(void **state)
{
	(void)state;
	enum { N = 120000 };
	uint32_t *a = malloc(N * sizeof(*a)), *b = malloc((2 * N + 8) * sizeof(*b));
	assert_non_null(a);
	assert_non_null(b);
	fill_random(a, N, 500);
	size_t m = mutate(b, a, N, 2000, 500), want = 0;
	assert_int_equal(mamori_lcs(&want, a, N, b, m, 0), MAMORI_OK);
	check_alignment(a, N, b, m, want);
	free(a);
	free(b);
}

/* ------------------------------------------------------------------- LSH */

static int has_pair(const mamori_pair *p, size_t n, uint32_t a, uint32_t b)
{
	for (size_t i = 0; i < n; i++)
		if (p[i].a == a && p[i].b == b)
			return 1;
	return 0;
}

static void test_lsh_identical_and_filter(void **state)
{
	(void)state;
	mamori_lsh *l = NULL;
	assert_int_equal(mamori_lsh_new(&l, NULL), MAMORI_OK);
	uint32_t s[3000], t[3000];
	fill_random(s, 3000, 200);
	fill_random(t, 3000, 200);
	assert_int_equal(mamori_lsh_add(l, 0, s, 3000), MAMORI_OK);
	assert_int_equal(mamori_lsh_add(l, 3, s, 3000), MAMORI_OK); /* equal to 0 */
	assert_int_equal(mamori_lsh_add(l, 1, t, 3000), MAMORI_OK); /* unrelated */
	assert_int_equal(mamori_lsh_add(l, 2, s, 1500), MAMORI_OK); /* a prefix: too short for 0.6 */
	assert_int_equal(mamori_lsh_add(l, 4, s, 2), MAMORI_OK);    /* shorter than an n-gram */
	assert_int_equal(mamori_lsh_add(l, 5, s, 2), MAMORI_OK);
	assert_int_equal(mamori_lsh_add(l, 6, s, 0), MAMORI_OK);
	assert_int_equal(mamori_lsh_add(l, 7, t, 0), MAMORI_OK);
	mamori_pair *p = NULL;
	size_t np = 0;
	assert_int_equal(mamori_lsh_candidates(l, 0.6, &p, &np), MAMORI_OK);
	assert_true(has_pair(p, np, 0, 3));
	assert_true(has_pair(p, np, 4, 5));
	assert_true(has_pair(p, np, 6, 7));
	assert_false(has_pair(p, np, 0, 1));
	assert_false(has_pair(p, np, 0, 2));
	for (size_t i = 0; i < np; i++) {
		assert_true(p[i].a < p[i].b);
		if (i)
			assert_true(p[i - 1].a < p[i].a || (p[i - 1].a == p[i].a && p[i - 1].b < p[i].b));
	}
	free(p);
	/* with floor 0 the length filter lets the prefix through; it shares n-grams */
	assert_int_equal(mamori_lsh_candidates(l, 0.0, &p, &np), MAMORI_OK);
	assert_true(has_pair(p, np, 0, 2));
	free(p);
	assert_int_equal(mamori_lsh_add(l, MAMORI_LSH_MAX_IDS, s, 10), MAMORI_ELIMIT);
	mamori_lsh_free(l);
	mamori_lsh_free(NULL);
	mamori_lsh_params bad = { .ngram = 4, .num_hashes = 8, .bands = 9 };
	assert_int_equal(mamori_lsh_new(&l, &bad), MAMORI_EINVAL);
	assert_null(l);
}

/* Families of variants with 3% edits are found; unrelated samples mostly not. */
static void test_lsh_recall(void **state)
{
	(void)state;
	enum { FAM = 30, LEN = 2000 };
	mamori_lsh *l = NULL;
	assert_int_equal(mamori_lsh_new(&l, NULL), MAMORI_OK);
	uint32_t *base = malloc(LEN * sizeof(*base)), *var = malloc((2 * LEN + 8) * sizeof(*var));
	assert_non_null(base);
	assert_non_null(var);
	for (uint32_t f = 0; f < FAM; f++) {
		fill_random(base, LEN, 300);
		assert_int_equal(mamori_lsh_add(l, 2 * f, base, LEN), MAMORI_OK);
		size_t m = mutate(var, base, LEN, LEN * 3 / 100, 300);
		assert_int_equal(mamori_lsh_add(l, 2 * f + 1, var, m), MAMORI_OK);
	}
	mamori_pair *p = NULL;
	size_t np = 0, found = 0, false_pos = 0;
	assert_int_equal(mamori_lsh_candidates(l, 0.7, &p, &np), MAMORI_OK);
	for (size_t i = 0; i < np; i++) {
		if (p[i].b == p[i].a + 1 && p[i].a % 2 == 0)
			found++;
		else
			false_pos++;
	}
	assert_true(found >= FAM * 95 / 100);
	assert_true(false_pos <= (size_t)FAM * (2 * FAM - 1) / 20); /* < 5% of the unrelated pairs */
	free(p);
	free(base);
	free(var);
	mamori_lsh_free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dp_small),
		cmocka_unit_test(test_random_pairs),
		cmocka_unit_test(test_word_boundaries),
		cmocka_unit_test(test_adversarial),
		cmocka_unit_test(test_large_variants),
		cmocka_unit_test(test_myers_direct),
		cmocka_unit_test(test_sparse_masks),
		cmocka_unit_test(test_similarity_values),
		cmocka_unit_test(test_similarity_floor),
		cmocka_unit_test(test_align_random),
		cmocka_unit_test(test_align_large),
		cmocka_unit_test(test_align_huge),
		cmocka_unit_test(test_lsh_identical_and_filter),
		cmocka_unit_test(test_lsh_recall),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
