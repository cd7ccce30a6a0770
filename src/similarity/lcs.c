/*
 * Exact LCS length and similarity, fast.
 *
 * mamori_lcs() tries cheap exits first and the expensive kernel last:
 *   1. strip the common prefix and suffix (equal sequences end here);
 *   2. length and histogram bounds: LCS <= min(n,m) and
 *      LCS <= sum over tokens of min(count in a, count in b);
 *   3. Myers' greedy O(ND) algorithm, LCS = (n + m - D) / 2, under a work
 *      budget of a fraction of the bit-parallel cost, and cut at the D that
 *      the caller's min_lcs allows; near-identical variants end here;
 *   4. the bit-parallel kernel over 64-bit words, four rows per pass over
 *      the vector, with a cut-off checked every few rows: after row i,
 *      LCS <= L[i][m-r] + min(r, m) where r rows (that can match) are left.
 *
 * Limits: sequences up to MAMORI_SIM_MAX_LEN tokens; dense match masks are
 * capped at SIM_MASK_BUDGET bytes, the rarest symbols (by rows x
 * occurrences) get theirs built on the fly from position lists instead.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mamori/base.h"
#include "mamori/similarity.h"
#include "sim_internal.h"

/* Effective rows between two cut-off checks; a check costs about one row. */
#define SIM_CHECK_ROWS 32

size_t mamori_lcs_dp(const uint32_t *a, size_t n, const uint32_t *b, size_t m)
{
	if (m > n) {
		const uint32_t *t = a;
		a = b;
		b = t;
		size_t tn = n;
		n = m;
		m = tn;
	}
	if (m == 0)
		return 0;
	size_t *row = calloc(m + 1, sizeof(*row));
	if (!row)
		return 0;
	for (size_t i = 0; i < n; i++) {
		size_t diag = 0; /* row[j-1] of the previous row */
		for (size_t j = 1; j <= m; j++) {
			size_t up = row[j];
			if (a[i] == b[j - 1])
				row[j] = diag + 1;
			else if (row[j - 1] > up)
				row[j] = row[j - 1];
			diag = up;
		}
	}
	size_t r = row[m];
	free(row);
	return r;
}

size_t sim_prefix(const uint32_t *a, size_t n, const uint32_t *b, size_t m)
{
	size_t lim = n < m ? n : m, i = 0;
	while (i < lim && a[i] == b[i])
		i++;
	return i;
}

size_t sim_suffix(const uint32_t *a, size_t n, const uint32_t *b, size_t m, size_t max)
{
	size_t i = 0;
	while (i < max && i < n && i < m && a[n - 1 - i] == b[m - 1 - i])
		i++;
	return i;
}

/* ------------------------------------------------------------------ */
/* Symbol map, histogram and match masks                                */
/* ------------------------------------------------------------------ */

static inline size_t sym_hash(uint32_t c, size_t cap_mask)
{
	return (size_t)(((uint64_t)c * 0x9E3779B97F4A7C15ull) >> 32) & cap_mask;
}

int32_t sim_bp_lookup(const sim_bp *bp, uint32_t c)
{
	size_t h = sym_hash(c, bp->cap_mask);
	for (;;) {
		int32_t s = bp->slot[h];
		if (s < 0 || bp->keys[h] == c)
			return s;
		h = (h + 1) & bp->cap_mask;
	}
}

void sim_bp_free(sim_bp *bp)
{
	if (!bp)
		return;
	free(bp->keys);
	free(bp->slot);
	free(bp->sym_key);
	free(bp->cnt_b);
	free(bp->pos_start);
	free(bp->pos);
	free(bp->mask);
	free(bp->dense);
	free(bp->scratch);
	free(bp->zero);
	memset(bp, 0, sizeof(*bp));
}

int sim_bp_init(sim_bp *bp, const uint32_t *b, size_t m)
{
	int err = MAMORI_OK;
	uint32_t *fill = NULL;
	memset(bp, 0, sizeof(*bp));
	bp->m = m;
	bp->w = (m + 63) / 64;
	size_t cap = 16;
	while (cap < 2 * m)
		cap *= 2;
	bp->cap_mask = cap - 1;
	bp->keys = malloc(cap * sizeof(*bp->keys));
	bp->slot = malloc(cap * sizeof(*bp->slot));
	bp->sym_key = malloc((m + 1) * sizeof(*bp->sym_key));
	bp->cnt_b = calloc(m + 1, sizeof(*bp->cnt_b));
	bp->pos = malloc((m + 1) * sizeof(*bp->pos));
	bp->scratch = calloc(4 * bp->w + 1, sizeof(*bp->scratch));
	bp->zero = calloc(bp->w + 1, sizeof(*bp->zero));
	if (!bp->keys || !bp->slot || !bp->sym_key || !bp->cnt_b || !bp->pos || !bp->scratch || !bp->zero) {
		err = mamori_fail(MAMORI_ENOMEM, "similarity: no memory for the match masks of %zu tokens",
				  m);
		goto done;
	}
	memset(bp->slot, 0xff, cap * sizeof(*bp->slot));
	for (size_t j = 0; j < m; j++) {
		size_t h = sym_hash(b[j], bp->cap_mask);
		while (bp->slot[h] >= 0 && bp->keys[h] != b[j])
			h = (h + 1) & bp->cap_mask;
		if (bp->slot[h] < 0) {
			bp->keys[h] = b[j];
			bp->slot[h] = (int32_t)bp->n_sym;
			bp->sym_key[bp->n_sym++] = b[j];
		}
		bp->cnt_b[bp->slot[h]]++;
	}
	bp->pos_start = malloc((bp->n_sym + 1) * sizeof(*bp->pos_start));
	fill = malloc((bp->n_sym + 1) * sizeof(*fill));
	if (!bp->pos_start || !fill) {
		err = mamori_fail(MAMORI_ENOMEM, "similarity: no memory for the position lists");
		goto done;
	}
	uint32_t acc = 0;
	for (size_t s = 0; s < bp->n_sym; s++) {
		bp->pos_start[s] = acc;
		fill[s] = acc;
		acc += bp->cnt_b[s];
	}
	bp->pos_start[bp->n_sym] = acc;
	for (size_t j = 0; j < m; j++)
		bp->pos[fill[sim_bp_lookup(bp, b[j])]++] = (uint32_t)j;
done:
	free(fill);
	if (err)
		sim_bp_free(bp);
	return err;
}

size_t sim_bp_histogram(const sim_bp *bp, const uint32_t *a, size_t n, uint32_t *cnt_a, size_t *out_rows)
{
	size_t rows = 0, bound = 0;
	for (size_t i = 0; i < n; i++) {
		int32_t s = sim_bp_lookup(bp, a[i]);
		if (s < 0)
			continue;
		rows++;
		if (cnt_a[s]++ < bp->cnt_b[s])
			bound++;
	}
	*out_rows = rows;
	return bound;
}

typedef struct sym_weight {
	uint64_t weight;
	uint32_t sym;
} sym_weight;

static int cmp_weight_desc(const void *x, const void *y)
{
	const sym_weight *p = x, *q = y;
	return p->weight < q->weight ? 1 : p->weight > q->weight ? -1 : 0;
}

int sim_bp_masks(sim_bp *bp, const uint32_t *cnt_a, size_t budget_bytes)
{
	int err = MAMORI_OK;
	sym_weight *order = NULL;
	size_t w = bp->w, used = 0;
	bp->mask = calloc(bp->n_sym + 1, sizeof(*bp->mask));
	order = malloc((bp->n_sym + 1) * sizeof(*order));
	if (!bp->mask || !order) {
		err = mamori_fail(MAMORI_ENOMEM, "similarity: no memory for %zu match masks", bp->n_sym);
		goto done;
	}
	for (size_t s = 0; s < bp->n_sym; s++) {
		uint64_t ca = cnt_a ? cnt_a[s] : 1;
		if (ca)
			order[used++] = (sym_weight){ ca * bp->cnt_b[s], (uint32_t)s };
	}
	size_t fit = w ? budget_bytes / (w * sizeof(uint64_t)) : 0;
	if (used > fit) {
		/* The dense masks would pass the cap: keep them for the symbols whose
		 * on-the-fly construction would cost most (rows x occurrences). */
		qsort(order, used, sizeof(*order), cmp_weight_desc);
		used = fit;
	}
	if (used) {
		bp->dense = calloc(used * w, sizeof(*bp->dense));
		if (!bp->dense) {
			err = mamori_fail(MAMORI_ENOMEM, "similarity: no memory for %zu match masks", used);
			goto done;
		}
	}
	for (size_t i = 0; i < used; i++) {
		uint32_t s = order[i].sym;
		uint64_t *mk = bp->dense + i * w;
		for (uint32_t p = bp->pos_start[s]; p < bp->pos_start[s + 1]; p++)
			mk[bp->pos[p] >> 6] |= (uint64_t)1 << (bp->pos[p] & 63);
		bp->mask[s] = mk;
	}
done:
	free(order);
	return err;
}

/* ------------------------------------------------------------------ */
/* Bit-parallel kernel                                                  */
/* ------------------------------------------------------------------ */

size_t sim_bp_zeros(const uint64_t *V, size_t j)
{
	size_t ones = 0, full = j / 64;
	for (size_t k = 0; k < full; k++)
		ones += (size_t)__builtin_popcountll(V[k]);
	if (j & 63)
		ones += (size_t)__builtin_popcountll(V[full] & (((uint64_t)1 << (j & 63)) - 1));
	return j - ones;
}

/* One word of V' = (V + (V & M)) | (V & ~M), with the carry of the add
 * coming in and going out through *c. */
static inline uint64_t bp_word(uint64_t v, uint64_t mk, uint64_t *c)
{
	uint64_t u = v & mk;
	uint64_t s = v + u;
	uint64_t carry = s < v;
	uint64_t s2 = s + *c;
	carry |= s2 < s;
	*c = carry;
	return s2 | (v & ~mk);
}

static void bp_row1(uint64_t *restrict V, size_t w, const uint64_t *restrict m0)
{
	uint64_t c0 = 0;
	for (size_t k = 0; k < w; k++)
		V[k] = bp_word(V[k], m0[k], &c0);
}

/* Four rows per pass: V[k] stays in a register while the four rows (each
 * with its own carry) update it, so V is loaded and stored once, not four
 * times. Row r+1 at word k only needs row r at words <= k, which is done. */
static void bp_row4(uint64_t *restrict V, size_t w, const uint64_t *restrict m0, const uint64_t *restrict m1,
		    const uint64_t *restrict m2, const uint64_t *restrict m3)
{
	uint64_t c0 = 0, c1 = 0, c2 = 0, c3 = 0;
	for (size_t k = 0; k < w; k++) {
		uint64_t v = V[k];
		v = bp_word(v, m0[k], &c0);
		v = bp_word(v, m1[k], &c1);
		v = bp_word(v, m2[k], &c2);
		v = bp_word(v, m3[k], &c3);
		V[k] = v;
	}
}

/* The mask of symbol s: dense, or built into `scratch` (w zero words). */
static const uint64_t *bp_mask_of(const sim_bp *bp, int32_t s, uint64_t *scratch)
{
	if (bp->mask[s])
		return bp->mask[s];
	for (uint32_t p = bp->pos_start[s]; p < bp->pos_start[s + 1]; p++)
		scratch[bp->pos[p] >> 6] |= (uint64_t)1 << (bp->pos[p] & 63);
	return scratch;
}

static void bp_mask_release(const sim_bp *bp, int32_t s, uint64_t *scratch)
{
	if (bp->mask[s])
		return;
	for (uint32_t p = bp->pos_start[s]; p < bp->pos_start[s + 1]; p++)
		scratch[bp->pos[p] >> 6] = 0;
}

bool sim_bp_run(const sim_bp *bp, const uint32_t *a, size_t n, size_t rows, uint64_t *V, size_t need,
		size_t *out_ub, uint64_t *trace)
{
	size_t w = bp->w, m = bp->m;
	if (trace) {
		for (size_t i = 0; i < n; i++) {
			int32_t s = sim_bp_lookup(bp, a[i]);
			if (s >= 0) {
				bp_row1(V, w, bp_mask_of(bp, s, bp->scratch));
				bp_mask_release(bp, s, bp->scratch);
			}
			memcpy(trace + i * w, V, w * sizeof(*V));
		}
		return true;
	}
	size_t done = 0, next_check = SIM_CHECK_ROWS, i = 0;
	while (i < n) {
		const uint64_t *mk[4];
		int32_t sym[4];
		int r = 0;
		for (; r < 4 && i < n; i++) {
			int32_t s = sim_bp_lookup(bp, a[i]);
			if (s < 0)
				continue;
			sym[r] = s;
			mk[r] = bp_mask_of(bp, s, bp->scratch + (size_t)r * w);
			r++;
		}
		if (r == 4) {
			bp_row4(V, w, mk[0], mk[1], mk[2], mk[3]);
		} else {
			for (int k = 0; k < r; k++)
				bp_row1(V, w, mk[k]);
		}
		for (int k = 0; k < r; k++)
			bp_mask_release(bp, sym[k], bp->scratch + (size_t)k * w);
		done += (size_t)r;
		if (need && done >= next_check) {
			next_check = done + SIM_CHECK_ROWS;
			size_t left = rows - done;
			size_t bound = sim_bp_zeros(V, m > left ? m - left : 0) + (left < m ? left : m);
			if (bound < need) {
				*out_ub = bound;
				return false;
			}
		}
	}
	return true;
}

/* ------------------------------------------------------------------ */
/* Myers' greedy difference algorithm (length only)                     */
/* ------------------------------------------------------------------ */

/*
 * The edit graph is taken as unbounded (no matches outside the n x m grid),
 * which removes every boundary case: a path that reaches x >= n and y >= m
 * at cost d shows D <= d, and the first such d is D.
 */
int sim_myers(size_t *out_d, const uint32_t *a, size_t n, const uint32_t *b, size_t m, size_t dmax,
	      uint64_t budget)
{
	if (dmax > n + m)
		dmax = n + m;
	/* Step d visits d + 1 diagonals, so the budget alone stops by sqrt(2 budget). */
	size_t dlim = dmax;
	double cap = sqrt(2.0 * (double)budget) + 2.0;
	if ((double)dlim > cap)
		dlim = (size_t)cap;
	ptrdiff_t *V = malloc((2 * dlim + 3) * sizeof(*V));
	if (!V)
		return -1;
	ptrdiff_t off = (ptrdiff_t)dlim + 1;
	ptrdiff_t N = (ptrdiff_t)n, M = (ptrdiff_t)m;
	uint64_t work = 0;
	int result = dlim == dmax ? SIM_MYERS_CUT : SIM_MYERS_BUDGET;
	*out_d = dlim;
	for (size_t d = 0; d <= dlim; d++) {
		ptrdiff_t D = (ptrdiff_t)d;
		for (ptrdiff_t k = -D; k <= D; k += 2) {
			ptrdiff_t x;
			if (d == 0)
				x = 0;
			else if (k == -D || (k != D && V[off + k - 1] < V[off + k + 1]))
				x = V[off + k + 1];
			else
				x = V[off + k - 1] + 1;
			ptrdiff_t y = x - k, x0 = x;
			while (x < N && y < M && a[x] == b[y]) {
				x++;
				y++;
			}
			work += (uint64_t)(x - x0) + 1;
			V[off + k] = x;
			if (x >= N && y >= M) {
				*out_d = d;
				result = SIM_MYERS_FOUND;
				goto done;
			}
		}
		if (work > budget && d < dlim) {
			*out_d = d;
			result = SIM_MYERS_BUDGET;
			goto done;
		}
	}
done:
	free(V);
	return result;
}

/* ------------------------------------------------------------------ */
/* Public entry points                                                  */
/* ------------------------------------------------------------------ */

int mamori_lcs(size_t *out_lcs, const uint32_t *a, size_t n, const uint32_t *b, size_t m, size_t min_lcs)
{
	int err = MAMORI_OK;
	sim_bp bp = { 0 };
	uint32_t *cnt_a = NULL;
	uint64_t *V = NULL;
	*out_lcs = 0;
	if (n > MAMORI_SIM_MAX_LEN || m > MAMORI_SIM_MAX_LEN)
		return mamori_fail(MAMORI_ELIMIT, "similarity: sequence of %zu tokens is over the limit",
				   n > m ? n : m);

	size_t p = sim_prefix(a, n, b, m);
	a += p;
	b += p;
	n -= p;
	m -= p;
	size_t s = sim_suffix(a, n, b, m, n < m ? n : m);
	n -= s;
	m -= s;
	size_t base = p + s;
	size_t need = min_lcs > base ? min_lcs - base : 0;
	size_t lcs = 0;

	if (m > n) { /* the shorter sequence is the bit dimension */
		const uint32_t *t = a;
		a = b;
		b = t;
		size_t tn = n;
		n = m;
		m = tn;
	}
	size_t ub = m;
	if (ub < need)
		goto below;
	if (m == 0)
		goto exact;

	err = sim_bp_init(&bp, b, m);
	if (err)
		goto done;
	cnt_a = calloc(bp.n_sym + 1, sizeof(*cnt_a));
	if (!cnt_a) {
		err = mamori_fail(MAMORI_ENOMEM, "similarity: no memory for a histogram");
		goto done;
	}
	size_t rows;
	ub = sim_bp_histogram(&bp, a, n, cnt_a, &rows);
	if (ub < need)
		goto below;
	if (ub == 0)
		goto exact;

	/* Myers costs about (n + m) + D^2 / 2 steps of 1-2.5 ns, a bit-parallel
	 * word step 0.7-1.4 ns (measured on x86-64): a budget of a fifth of the
	 * bit-parallel steps keeps a failed attempt under ~40% of its time. It
	 * is not started when the histogram already shows D is too large. */
	uint64_t bp_cost = (uint64_t)rows * bp.w;
	uint64_t budget = bp_cost / 5;
	double dmin = (double)(n + m - 2 * ub);
	if (dmin * dmin / 2 + (double)(n + m) <= (double)budget) {
		size_t dmax = n + m - 2 * need, d;
		int r = sim_myers(&d, a, n, b, m, dmax, budget);
		if (r < 0) {
			err = mamori_fail(MAMORI_ENOMEM,
					  "similarity: no memory for the difference algorithm");
			goto done;
		}
		if (r == SIM_MYERS_FOUND) {
			lcs = (n + m - d) / 2;
			goto exact;
		}
		/* D > d, so LCS = (n + m - D) / 2 <= (n + m - d - 1) / 2 */
		size_t ub_myers = (n + m - d - 1) / 2;
		if (ub_myers < ub)
			ub = ub_myers;
		if (ub < need)
			goto below;
	}

	err = sim_bp_masks(&bp, cnt_a, SIM_MASK_BUDGET);
	if (err)
		goto done;
	V = malloc(bp.w * sizeof(*V));
	if (!V) {
		err = mamori_fail(MAMORI_ENOMEM, "similarity: no memory for the bit vector");
		goto done;
	}
	memset(V, 0xff, bp.w * sizeof(*V));
	size_t ub_bp;
	if (!sim_bp_run(&bp, a, n, rows, V, need, &ub_bp, NULL)) {
		ub = ub_bp < ub ? ub_bp : ub;
		goto below;
	}
	lcs = sim_bp_zeros(V, m);
exact:
	*out_lcs = base + lcs;
	err = MAMORI_OK;
	goto done;
below:
	*out_lcs = base + ub;
	err = MAMORI_EBELOW;
done:
	free(V);
	free(cnt_a);
	sim_bp_free(&bp);
	return err;
}

double mamori_similarity_from_lcs(size_t n, size_t m, size_t lcs)
{
	if (n + m == 0)
		return 1.0;
	return (double)lcs / (double)(n + m - lcs);
}

size_t mamori_lcs_needed(size_t n, size_t m, double floor)
{
	if (!(floor > 0.0))
		return 0;
	size_t mn = n < m ? n : m;
	double est = ceil(floor * (double)(n + m) / (1.0 + floor));
	size_t l = est < 0.0 ? 0 : est > (double)mn + 1.0 ? mn + 1 : (size_t)est;
	/* The estimate can be off by one in floating point: settle it against
	 * the very function callers compare with. */
	while (l > 0 && mamori_similarity_from_lcs(n, m, l - 1) >= floor)
		l--;
	while (l <= mn && mamori_similarity_from_lcs(n, m, l) < floor)
		l++;
	return l;
}

int mamori_similarity(double *out_s, const uint32_t *a, size_t n, const uint32_t *b, size_t m, double floor)
{
	size_t need = mamori_lcs_needed(n, m, floor), mn = n < m ? n : m, lcs;
	*out_s = 0.0;
	if (need > mn) {
		*out_s = mamori_similarity_from_lcs(n, m, mn);
		return MAMORI_EBELOW;
	}
	int err = mamori_lcs(&lcs, a, n, b, m, need);
	if (err == MAMORI_OK || err == MAMORI_EBELOW)
		*out_s = mamori_similarity_from_lcs(n, m, lcs);
	return err;
}
