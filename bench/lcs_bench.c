/*
 * lcs_bench: the exact-LCS kernel against the textbook dynamic program on
 * two 20,000-token sequences, and the recall of the LSH candidate search on
 * a synthetic corpus of families.
 *
 * Sequences are drawn from a skewed, instruction-like distribution: a Zipf
 * law over 600 tokens with short "idioms" (prologue, call setup) repeated,
 * so the alphabet use resembles real token streams. Three pairs: a variant
 * with ~5% edits in small clusters, a distant variant (~30% edits), and an
 * unrelated sequence from the same distribution. Times are the best of a
 * few runs. Usage: lcs_bench [length] (default 20000).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mamori/base.h"
#include "mamori/similarity.h"

static uint64_t rng = 0x2545F4914F6CDD1Dull;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static double unif(void)
{
	return (double)(rnd() >> 11) / 9007199254740992.0;
}

#define VOCAB 600
static double zipf_cdf[VOCAB];

static void zipf_init(void)
{
	double acc = 0;
	for (int i = 0; i < VOCAB; i++)
		acc += 1.0 / pow(i + 1, 1.1);
	double run = 0;
	for (int i = 0; i < VOCAB; i++) {
		run += 1.0 / pow(i + 1, 1.1) / acc;
		zipf_cdf[i] = run;
	}
}

static uint32_t token(void)
{
	double u = unif();
	int lo = 0, hi = VOCAB - 1;
	while (lo < hi) {
		int mid = (lo + hi) / 2;
		if (zipf_cdf[mid] < u)
			lo = mid + 1;
		else
			hi = mid;
	}
	return (uint32_t)lo * 2654435761u + 0x1000;
}

/* Instruction-like stream: mostly Zipf tokens, with idioms of 3..8 tokens. */
static void gen(uint32_t *s, size_t n)
{
	static uint32_t idioms[16][8];
	static int ready;
	if (!ready) {
		for (int i = 0; i < 16; i++)
			for (int j = 0; j < 8; j++)
				idioms[i][j] = token();
		ready = 1;
	}
	size_t i = 0;
	while (i < n) {
		if (rnd() % 10 == 0) {
			int id = (int)(rnd() % 16), len = 3 + (int)(rnd() % 6);
			for (int j = 0; j < len && i < n; j++)
				s[i++] = idioms[id][j];
		} else {
			s[i++] = token();
		}
	}
}

/* Edits in clusters of 1..4, as recompiled code changes; rate = fraction of tokens. */
static size_t mutate(uint32_t *out, const uint32_t *a, size_t n, double rate)
{
	size_t o = 0, i = 0;
	while (i < n) {
		if (unif() < rate / 2.5) {
			int len = 1 + (int)(rnd() % 4), op = (int)(rnd() % 3);
			for (int j = 0; j < len && i < n; j++) {
				if (op == 0) {
					out[o++] = token(); /* substitute */
					i++;
				} else if (op == 1) {
					out[o++] = token(); /* insert */
				} else {
					i++; /* delete */
				}
			}
		} else {
			out[o++] = a[i++];
		}
	}
	return o;
}

typedef struct row {
	const char *name;
	size_t n, m, lcs;
	double t_dp, t_fast, t_cut, t_align;
	int cut_below;
} row;

static double best_of(int reps, size_t *out, const uint32_t *a, size_t n, const uint32_t *b, size_t m,
		      size_t min_lcs, int *out_err)
{
	double best = 1e30;
	for (int r = 0; r < reps; r++) {
		double t0 = mamori_now();
		*out_err = mamori_lcs(out, a, n, b, m, min_lcs);
		double t = mamori_now() - t0;
		if (t < best)
			best = t;
	}
	return best;
}

static int bench_pair(row *r, const uint32_t *a, size_t n, const uint32_t *b, size_t m)
{
	r->n = n;
	r->m = m;
	double t0 = mamori_now();
	size_t dp = mamori_lcs_dp(a, n, b, m);
	r->t_dp = mamori_now() - t0;
	int err;
	r->t_fast = best_of(5, &r->lcs, a, n, b, m, 0, &err);
	if (err || r->lcs != dp) {
		fprintf(stderr, "lcs_bench: %s: mamori_lcs %zu != dp %zu (%d)\n", r->name, r->lcs, dp, err);
		return 1;
	}
	/* cut-off at S >= 0.5, what classification asks for distant pairs */
	size_t ub;
	r->t_cut = best_of(5, &ub, a, n, b, m, mamori_lcs_needed(n, m, 0.5), &err);
	r->cut_below = err == MAMORI_EBELOW;
	mamori_alignment *al = NULL;
	t0 = mamori_now();
	err = mamori_align(&al, a, n, b, m);
	r->t_align = mamori_now() - t0;
	if (err || al->lcs != dp) {
		fprintf(stderr, "lcs_bench: %s: alignment wrong\n", r->name);
		mamori_alignment_free(al);
		return 1;
	}
	mamori_alignment_free(al);
	return 0;
}

/* Synthetic corpus: families of variants at several edit rates; every pair
 * is compared exactly and the pairs with S >= threshold that LSH misses
 * are counted. */
static int bench_recall(size_t len)
{
	enum { FAMS = 20, PER = 8 };
	const double rates[PER] = { 0.0, 0.02, 0.05, 0.08, 0.12, 0.16, 0.2, 0.3 };
	const size_t total = (size_t)FAMS * PER, n_pairs = total * (total - 1) / 2;
	int result = 1;
	mamori_lsh *l = NULL;
	double *sims = NULL;
	uint32_t **seq = calloc(total, sizeof(*seq));
	size_t *lens = calloc(total, sizeof(*lens));
	uint32_t *base = malloc(len * sizeof(*base));
	if (!seq || !lens || !base)
		goto done;
	for (size_t f = 0; f < FAMS; f++) {
		gen(base, len);
		for (size_t v = 0; v < PER; v++) {
			size_t id = f * PER + v;
			seq[id] = malloc((2 * len + 8) * sizeof(uint32_t));
			if (!seq[id])
				goto done;
			lens[id] = mutate(seq[id], base, len, rates[v]);
		}
	}
	if (mamori_lsh_new(&l, NULL))
		goto done;
	double t0 = mamori_now();
	for (size_t i = 0; i < total; i++)
		mamori_lsh_add(l, (uint32_t)i, seq[i], lens[i]);
	double t_sig = mamori_now() - t0;
	const double thresholds[] = { 0.5, 0.6, 0.7, 0.8, 0.9 };
	sims = malloc(total * total * sizeof(*sims));
	if (!sims)
		goto done;
	t0 = mamori_now();
	for (size_t i = 0; i < total; i++)
		for (size_t j = i + 1; j < total; j++) {
			double s;
			int err = mamori_similarity(&s, seq[i], lens[i], seq[j], lens[j], 0.4);
			sims[i * total + j] = err == MAMORI_OK ? s : 0.0;
		}
	double t_all = mamori_now() - t0;
	printf("\nLSH recall, synthetic corpus: %zu samples of ~%zu tokens, %d families x %d variants "
	       "(0-30%% edits)\n",
	       total, len, FAMS, PER);
	printf("all %zu pairs exact with cut-off 0.4: %.2f s; signatures: %.3f s\n", n_pairs, t_all, t_sig);
	printf("| threshold | pairs >= T | candidates | missed | recall | exact comparisons saved |\n");
	printf("|---|---|---|---|---|---|\n");
	for (size_t t = 0; t < sizeof(thresholds) / sizeof(thresholds[0]); t++) {
		mamori_pair *p = NULL;
		size_t np = 0, above = 0, missed = 0;
		if (mamori_lsh_candidates(l, thresholds[t], &p, &np))
			goto done;
		for (size_t i = 0; i < total; i++)
			for (size_t j = i + 1; j < total; j++) {
				if (sims[i * total + j] < thresholds[t])
					continue;
				above++;
				int hit = 0;
				for (size_t k = 0; k < np && !hit; k++)
					hit = p[k].a == i && p[k].b == j;
				missed += !hit;
			}
		printf("| %.1f | %zu | %zu | %zu | %.4f | %.1f%% |\n", thresholds[t], above, np, missed,
		       above ? (double)(above - missed) / (double)above : 1.0,
		       100.0 * (1.0 - (double)np / (double)n_pairs));
		free(p);
	}
	result = 0;
done:
	mamori_lsh_free(l);
	for (size_t i = 0; seq && i < total; i++)
		free(seq[i]);
	free(seq);
	free(lens);
	free(base);
	free(sims);
	return result;
}

int main(int argc, char **argv)
{
	size_t n = 20000;
	if (argc > 1) {
		char *end;
		unsigned long long v = strtoull(argv[1], &end, 10);
		if (*end || v == 0 || v > 1000000) {
			fprintf(stderr, "usage: lcs_bench [length 1..1000000]\n");
			return MAMORI_EXIT_USAGE;
		}
		n = (size_t)v;
	}
	zipf_init();
	uint32_t *a = malloc(n * sizeof(*a)), *b = malloc((2 * n + 8) * sizeof(*b));
	if (!a || !b) {
		free(a);
		free(b);
		return MAMORI_EXIT_FAILURE;
	}
	gen(a, n);
	row rows[4] = { { .name = "identical" },
			{ .name = "variant, ~5% edits" },
			{ .name = "distant, ~30% edits" },
			{ .name = "unrelated" } };
	int bad = 0;
	memcpy(b, a, n * sizeof(*a));
	bad |= bench_pair(&rows[0], a, n, b, n);
	size_t m = mutate(b, a, n, 0.05);
	bad |= bench_pair(&rows[1], a, n, b, m);
	m = mutate(b, a, n, 0.30);
	bad |= bench_pair(&rows[2], a, n, b, m);
	gen(b, n);
	bad |= bench_pair(&rows[3], a, n, b, n);
	if (bad) {
		free(a);
		free(b);
		return MAMORI_EXIT_FAILURE;
	}

	printf("Exact LCS, %zu-token sequences (skewed instruction-like tokens); best of 5\n", n);
	printf("| pair | n x m | LCS | S | textbook DP | mamori_lcs | speedup | with cut-off S>=0.5 | "
	       "alignment |\n");
	printf("|---|---|---|---|---|---|---|---|---|\n");
	for (int i = 0; i < 4; i++) {
		row *r = &rows[i];
		printf("| %s | %zu x %zu | %zu | %.3f | %.3f s | %.2f ms | %.0fx | %.2f ms%s | %.1f ms |\n",
		       r->name, r->n, r->m, r->lcs, mamori_similarity_from_lcs(r->n, r->m, r->lcs), r->t_dp,
		       r->t_fast * 1e3, r->t_dp / (r->t_fast > 1e-9 ? r->t_fast : 1e-9), r->t_cut * 1e3,
		       r->cut_below ? " (below)" : "", r->t_align * 1e3);
	}
	free(a);
	free(b);
	return bench_recall(5000) ? MAMORI_EXIT_FAILURE : MAMORI_EXIT_OK;
}
