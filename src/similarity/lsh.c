/*
 * Candidate search: which pairs of a corpus deserve an exact comparison.
 *
 * Each sample gets a MinHash signature of its set of token n-grams, made by
 * one-permutation hashing (one hash per n-gram, its high bits choose one of
 * K bins, each bin keeps its minimum) with rotation densification for empty
 * bins (Shrivastava & Li 2014), so a signature costs O(n + K), not O(nK).
 * The signature is cut into bands of r = K / bands hashes; two samples are
 * candidates when one band agrees entirely and the length filter
 * S <= min(n,m)/max(n,m) lets them reach the floor.
 *
 * Limits: the n-gram Jaccard index is not S. Edits spread thinly over a
 * sequence lower the n-gram Jaccard index much more than S, so recall is
 * measured (bench) rather than promised. A bucket of k equal band values
 * yields k(k-1)/2 pairs: a corpus of many identical samples should be
 * deduplicated first. At most 2^28 pairs are returned.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "mamori/base.h"
#include "mamori/similarity.h"

#define LSH_MAX_PAIRS ((size_t)1 << 28)
#define LSH_EMPTY     UINT64_MAX

struct mamori_lsh {
	size_t ngram, k, bands, r;
	uint64_t *sig; /* cap * k */
	size_t *len;   /* tokens per id */
	uint8_t *present;
	size_t cap;   /* ids allocated */
	size_t n_ids; /* 1 + largest id added */
};

static inline uint64_t mix64(uint64_t z)
{
	z ^= z >> 30;
	z *= 0xBF58476D1CE4E5B9ull;
	z ^= z >> 27;
	z *= 0x94D049BB133111EBull;
	z ^= z >> 31;
	return z;
}

int mamori_lsh_new(mamori_lsh **out, const mamori_lsh_params *p)
{
	*out = NULL;
	size_t ngram = p && p->ngram ? p->ngram : MAMORI_LSH_DEFAULT_NGRAM;
	size_t k = p && p->num_hashes ? p->num_hashes : MAMORI_LSH_DEFAULT_HASHES;
	size_t bands =
		p && p->bands ? p->bands : (k < MAMORI_LSH_DEFAULT_BANDS ? k : MAMORI_LSH_DEFAULT_BANDS);
	if (ngram > 64 || k > 1024 || bands > k)
		return mamori_fail(MAMORI_EINVAL, "lsh: bad parameters (ngram %zu, hashes %zu, bands %zu)",
				   ngram, k, bands);
	mamori_lsh *l = calloc(1, sizeof(*l));
	if (!l)
		return mamori_fail(MAMORI_ENOMEM, "lsh: no memory");
	l->ngram = ngram;
	l->k = k;
	l->bands = bands;
	l->r = k / bands;
	*out = l;
	return MAMORI_OK;
}

void mamori_lsh_free(mamori_lsh *l)
{
	if (!l)
		return;
	free(l->sig);
	free(l->len);
	free(l->present);
	free(l);
}

static int lsh_reserve(mamori_lsh *l, size_t ids)
{
	if (ids <= l->cap)
		return MAMORI_OK;
	size_t cap = l->cap ? l->cap : 64;
	while (cap < ids)
		cap *= 2;
	uint64_t *sig = realloc(l->sig, cap * l->k * sizeof(*sig));
	if (!sig)
		return mamori_fail(MAMORI_ENOMEM, "lsh: no memory for %zu signatures", cap);
	l->sig = sig;
	size_t *len = realloc(l->len, cap * sizeof(*len));
	if (!len)
		return mamori_fail(MAMORI_ENOMEM, "lsh: no memory for %zu signatures", cap);
	l->len = len;
	uint8_t *present = realloc(l->present, cap);
	if (!present)
		return mamori_fail(MAMORI_ENOMEM, "lsh: no memory for %zu signatures", cap);
	memset(present + l->cap, 0, cap - l->cap);
	l->present = present;
	l->cap = cap;
	return MAMORI_OK;
}

/* MinHash by one-permutation hashing; every bin ends up filled. */
static void lsh_signature(const mamori_lsh *l, uint64_t *sig, const uint32_t *t, size_t n)
{
	size_t k = l->k;
	for (size_t j = 0; j < k; j++)
		sig[j] = LSH_EMPTY;
	if (n == 0)
		return; /* every empty sequence has the same all-empty signature */
	size_t g = n < l->ngram ? n : l->ngram;
	for (size_t i = 0; i + g <= n; i++) {
		uint64_t h = 0x243F6A8885A308D3ull;
		for (size_t q = 0; q < g; q++)
			h = mix64(h ^ t[i + q]);
		if (h == LSH_EMPTY)
			h--;
		size_t bin = (size_t)(((h >> 32) * (uint64_t)k) >> 32);
		if (h < sig[bin])
			sig[bin] = h;
	}
	/* Rotation densification: an empty bin borrows the value of the next
	 * originally filled bin to its right, salted with the distance, so two
	 * sequences agree on it exactly when they agree on the borrowed bin.
	 * One sweep leftwards around the circle from a filled bin. */
	bool filled[1024];
	size_t f = k;
	for (size_t j = 0; j < k; j++) {
		filled[j] = sig[j] != LSH_EMPTY;
		if (filled[j] && f == k)
			f = j;
	}
	size_t next = f;
	for (size_t s = 1; s < k; s++) {
		size_t j = (f + k - s) % k;
		if (filled[j]) {
			next = j;
			continue;
		}
		size_t dist = (next + k - j) % k;
		sig[j] = mix64(sig[next] + (uint64_t)dist * 0x9E3779B97F4A7C15ull);
	}
}

int mamori_lsh_add(mamori_lsh *l, uint32_t id, const uint32_t *tokens, size_t n)
{
	if (id >= MAMORI_LSH_MAX_IDS)
		return mamori_fail(MAMORI_ELIMIT, "lsh: sample id %u is over the limit", id);
	int err = lsh_reserve(l, (size_t)id + 1);
	if (err)
		return err;
	lsh_signature(l, l->sig + (size_t)id * l->k, tokens, n);
	l->len[id] = n;
	l->present[id] = 1;
	if ((size_t)id + 1 > l->n_ids)
		l->n_ids = (size_t)id + 1;
	return MAMORI_OK;
}

static int cmp_u64(const void *x, const void *y)
{
	uint64_t p = *(const uint64_t *)x, q = *(const uint64_t *)y;
	return p < q ? -1 : p > q;
}

typedef struct band_entry {
	uint64_t h;
	uint32_t id;
} band_entry;

static int cmp_band(const void *x, const void *y)
{
	const band_entry *p = x, *q = y;
	if (p->h != q->h)
		return p->h < q->h ? -1 : 1;
	return p->id < q->id ? -1 : p->id > q->id;
}

static size_t sort_unique(uint64_t *v, size_t n)
{
	if (n == 0)
		return 0;
	qsort(v, n, sizeof(*v), cmp_u64);
	size_t u = 1;
	for (size_t i = 1; i < n; i++)
		if (v[i] != v[u - 1])
			v[u++] = v[i];
	return u;
}

/* Candidate pairs as (a << 32 | b), deduplicated lazily: bands repeat
 * pairs, so the list is compacted before it grows. */
typedef struct pair_list {
	uint64_t *v;
	size_t n, cap;
} pair_list;

static int pairs_add(pair_list *pl, const mamori_lsh *l, double floor, uint32_t a, uint32_t b)
{
	size_t la = l->len[a], lb = l->len[b];
	if (mamori_lcs_needed(la, lb, floor) > (la < lb ? la : lb))
		return MAMORI_OK; /* the length filter */
	if (pl->n == pl->cap) {
		pl->n = sort_unique(pl->v, pl->n);
		if (pl->n > LSH_MAX_PAIRS)
			return mamori_fail(MAMORI_ELIMIT, "lsh: more than %zu candidate pairs",
					   LSH_MAX_PAIRS);
		if (pl->n > pl->cap / 2 || pl->cap == 0) {
			size_t nc = pl->cap ? pl->cap * 2 : 4096;
			uint64_t *np = realloc(pl->v, nc * sizeof(*np));
			if (!np)
				return mamori_fail(MAMORI_ENOMEM, "lsh: no memory for %zu pairs", nc);
			pl->v = np;
			pl->cap = nc;
		}
	}
	pl->v[pl->n++] = (uint64_t)a << 32 | b;
	return MAMORI_OK;
}

int mamori_lsh_candidates(mamori_lsh *l, double floor, mamori_pair **out, size_t *out_count)
{
	int err = MAMORI_OK;
	band_entry *be = NULL;
	pair_list pl = { 0 };
	size_t unique_after = 0;
	*out = NULL;
	*out_count = 0;
	size_t n_present = 0;
	for (size_t i = 0; i < l->n_ids; i++)
		n_present += l->present[i];
	if (n_present < 2)
		goto done;
	be = malloc(n_present * sizeof(*be));
	if (!be) {
		err = mamori_fail(MAMORI_ENOMEM, "lsh: no memory for %zu band entries", n_present);
		goto done;
	}
	for (size_t band = 0; band < l->bands; band++) {
		size_t nb = 0;
		for (size_t i = 0; i < l->n_ids; i++) {
			if (!l->present[i])
				continue;
			const uint64_t *s = l->sig + i * l->k + band * l->r;
			uint64_t h = mix64(band + 1);
			for (size_t q = 0; q < l->r; q++)
				h = mix64(h ^ s[q]);
			be[nb++] = (band_entry){ h, (uint32_t)i };
		}
		qsort(be, nb, sizeof(*be), cmp_band);
		for (size_t g = 0; g < nb;) {
			size_t e = g + 1;
			while (e < nb && be[e].h == be[g].h)
				e++;
			for (size_t x = g; x < e; x++) {
				for (size_t y = x + 1; y < e; y++) {
					/* a < b: a bucket is sorted by id */
					err = pairs_add(&pl, l, floor, be[x].id, be[y].id);
					if (err)
						goto done;
				}
			}
			g = e;
		}
	}
	unique_after = sort_unique(pl.v, pl.n);
	if (unique_after > LSH_MAX_PAIRS) {
		err = mamori_fail(MAMORI_ELIMIT, "lsh: more than %zu candidate pairs", LSH_MAX_PAIRS);
		goto done;
	}
	if (unique_after) {
		mamori_pair *res = malloc(unique_after * sizeof(*res));
		if (!res) {
			err = mamori_fail(MAMORI_ENOMEM, "lsh: no memory for %zu pairs", unique_after);
			goto done;
		}
		for (size_t i = 0; i < unique_after; i++)
			res[i] = (mamori_pair){ (uint32_t)(pl.v[i] >> 32), (uint32_t)pl.v[i] };
		*out = res;
		*out_count = unique_after;
	}
done:
	free(be);
	free(pl.v);
	return err;
}
