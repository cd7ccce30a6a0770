/*
 * One longest common subsequence as runs of matched tokens, in bounded
 * memory.
 *
 * align_rec() strips the common prefix and suffix, then picks the cheapest
 * exact method for what is left:
 *   - Myers' greedy algorithm with its trace (O(D^2) memory, capped at
 *     SIM_TRACE_BYTES), which suits the near-identical variants of a family;
 *   - the bit-parallel kernel keeping every row (n * m / 8 bytes, capped at
 *     SIM_ROWS_BYTES) and a traceback over the bits;
 *   - otherwise Hirschberg's divide and conquer: split the longer sequence
 *     in the middle, find the best column for the split from a forward and a
 *     backward bit-parallel pass (LCS of the halves), and recurse.
 * Memory is O(n + m) plus those capped buffers and the match masks; time is
 * about twice the bit-parallel LCS for long unrelated inputs.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mamori/base.h"
#include "mamori/similarity.h"
#include "sim_internal.h"

#define SIM_TRACE_BYTES ((size_t)16 << 20)
#define SIM_ROWS_BYTES	((size_t)16 << 20)

typedef struct align_ctx {
	mamori_vec runs; /* of mamori_match_run */
	size_t lcs;
} align_ctx;

/* Append a run in global coordinates, merging it with the previous one
 * when they touch in both sequences. Runs arrive in increasing order. */
static int push_run(align_ctx *ctx, size_t a_pos, size_t b_pos, size_t len)
{
	if (len == 0)
		return MAMORI_OK;
	ctx->lcs += len;
	if (ctx->runs.count) {
		mamori_match_run *last = &MAMORI_VEC_AT(&ctx->runs, mamori_match_run, ctx->runs.count - 1);
		if (last->a_pos + last->len == a_pos && last->b_pos + last->len == b_pos) {
			last->len += len;
			return MAMORI_OK;
		}
	}
	mamori_match_run r = { a_pos, b_pos, len };
	return mamori_vec_push(&ctx->runs, &r);
}

/* A subproblem: x[0..nx) against y[0..ny) where x starts at global position
 * x_off of its sequence; `swapped` says x is b (so runs swap back). */
typedef struct span {
	const uint32_t *x, *y;
	size_t nx, ny, x_off, y_off;
	bool swapped;
} span;

static int span_push(align_ctx *ctx, const span *sp, size_t xi, size_t yi, size_t len)
{
	if (sp->swapped)
		return push_run(ctx, sp->y_off + yi, sp->x_off + xi, len);
	return push_run(ctx, sp->x_off + xi, sp->y_off + yi, len);
}

/* Runs of a run list in local coordinates, collected backwards. */
typedef struct local_run {
	int32_t x, y, len;
} local_run;

/*
 * Myers with the whole trace: V of step d holds d+1 values (diagonals
 * -d, -d+2, ..., d) at trace[d(d+1)/2 ...]. Returns 1 and pushes the runs
 * when D <= dcap, 0 when it gave up, negative on error.
 */
static int align_myers(align_ctx *ctx, const span *sp, size_t dcap, uint64_t budget)
{
	int result = 0;
	int32_t *trace = NULL;
	local_run *lr = NULL;
	const uint32_t *a = sp->x, *b = sp->y;
	int32_t N = (int32_t)sp->nx, M = (int32_t)sp->ny;
	if (dcap > sp->nx + sp->ny)
		dcap = sp->nx + sp->ny;
	size_t total = (dcap + 1) * (dcap + 2) / 2;
	trace = malloc(total * sizeof(*trace));
	if (!trace) {
		result = mamori_fail(MAMORI_ENOMEM, "align: no memory for a difference trace");
		goto done;
	}
	uint64_t work = 0;
	size_t D = 0;
	bool found = false;
	for (size_t d = 0; d <= dcap && !found; d++) {
		int32_t *row = trace + d * (d + 1) / 2, *prev = d ? trace + (d - 1) * d / 2 : NULL;
		int32_t dd = (int32_t)d;
		for (int32_t k = -dd, idx = 0; k <= dd; k += 2, idx++) {
			int32_t x;
			/* prev index of diagonal k-1 is idx-1, of k+1 is idx */
			if (d == 0)
				x = 0;
			else if (k == -dd || (k != dd && prev[idx - 1] < prev[idx]))
				x = prev[idx];
			else
				x = prev[idx - 1] + 1;
			int32_t y = x - k, x0 = x;
			while (x < N && y < M && a[x] == b[y]) {
				x++;
				y++;
			}
			work += (uint64_t)(x - x0) + 1;
			row[idx] = x;
			if (x >= N && y >= M) {
				found = true;
				D = d;
				break;
			}
		}
		if (!found && work > budget)
			break;
	}
	if (!found)
		goto done;

	/* Walk back from (N, M): each step d ends with a snake on diagonal k. */
	lr = malloc((D + 1) * sizeof(*lr));
	if (!lr) {
		result = mamori_fail(MAMORI_ENOMEM, "align: no memory for a difference trace");
		goto done;
	}
	size_t n_lr = 0;
	int32_t k = N - M, x_end = N;
	for (size_t d = D; d > 0; d--) {
		int32_t dd = (int32_t)d;
		const int32_t *prev = trace + (d - 1) * d / 2;
		int32_t idx = (k + dd) / 2, x_start, pk;
		if (k == -dd || (k != dd && prev[idx - 1] < prev[idx])) {
			pk = k + 1;
			x_start = prev[idx];
		} else {
			pk = k - 1;
			x_start = prev[idx - 1] + 1;
		}
		if (x_end > x_start)
			lr[n_lr++] = (local_run){ x_start, x_start - k, x_end - x_start };
		x_end = prev[(pk + dd - 1) / 2];
		k = pk;
	}
	if (x_end > 0)
		lr[n_lr++] = (local_run){ 0, 0, x_end };
	for (size_t i = n_lr; i-- > 0;) {
		int err = span_push(ctx, sp, (size_t)lr[i].x, (size_t)lr[i].y, (size_t)lr[i].len);
		if (err) {
			result = err;
			goto done;
		}
	}
	result = 1;
done:
	free(lr);
	free(trace);
	return result;
}

/* Bit-parallel with every row kept, then a traceback: at (i, j) a match is
 * always part of some LCS; otherwise go left when L[i][j-1] == L[i][j]
 * (bit j-1 of row i is 1), else up. */
static int align_rows(align_ctx *ctx, const span *sp)
{
	int err = MAMORI_OK;
	sim_bp bp = { 0 };
	uint64_t *rows = NULL, *V = NULL;
	local_run *lr = NULL;
	size_t n = sp->nx, m = sp->ny, n_lr = 0;
	err = sim_bp_init(&bp, sp->y, m);
	if (err)
		goto done;
	err = sim_bp_masks(&bp, NULL, SIM_MASK_BUDGET);
	if (err)
		goto done;
	size_t w = bp.w;
	rows = malloc(n * w * sizeof(*rows));
	V = malloc(w * sizeof(*V));
	lr = malloc(((n < m ? n : m) + 1) * sizeof(*lr));
	if (!rows || !V || !lr) {
		err = mamori_fail(MAMORI_ENOMEM, "align: no memory for %zu x %zu rows", n, m);
		goto done;
	}
	memset(V, 0xff, w * sizeof(*V));
	size_t unused;
	sim_bp_run(&bp, sp->x, n, 0, V, 0, &unused, rows);
	size_t i = n, j = m;
	while (i > 0 && j > 0) {
		if (sp->x[i - 1] == sp->y[j - 1]) {
			size_t len = 0;
			while (i > 0 && j > 0 && sp->x[i - 1] == sp->y[j - 1]) {
				i--;
				j--;
				len++;
			}
			lr[n_lr++] = (local_run){ (int32_t)i, (int32_t)j, (int32_t)len };
		} else if ((rows[(i - 1) * w + (j - 1) / 64] >> ((j - 1) & 63)) & 1) {
			j--;
		} else {
			i--;
		}
	}
	for (size_t r = n_lr; r-- > 0;) {
		err = span_push(ctx, sp, (size_t)lr[r].x, (size_t)lr[r].y, (size_t)lr[r].len);
		if (err)
			goto done;
	}
done:
	free(lr);
	free(V);
	free(rows);
	sim_bp_free(&bp);
	return err;
}

/* Final LCS row of x against y: out[j] = LCS(x, y[0..j)) for j = 0..ny. */
static int lcs_row(size_t *out, const uint32_t *x, size_t nx, const uint32_t *y, size_t ny)
{
	int err = MAMORI_OK;
	sim_bp bp = { 0 };
	uint64_t *V = NULL;
	uint32_t *cnt = NULL;
	err = sim_bp_init(&bp, y, ny);
	if (err)
		goto done;
	cnt = calloc(bp.n_sym + 1, sizeof(*cnt));
	if (!cnt) {
		err = mamori_fail(MAMORI_ENOMEM, "align: no memory for a histogram");
		goto done;
	}
	size_t rows, unused;
	sim_bp_histogram(&bp, x, nx, cnt, &rows);
	err = sim_bp_masks(&bp, cnt, SIM_MASK_BUDGET);
	if (err)
		goto done;
	V = malloc(bp.w * sizeof(*V));
	if (!V) {
		err = mamori_fail(MAMORI_ENOMEM, "align: no memory for the bit vector");
		goto done;
	}
	memset(V, 0xff, bp.w * sizeof(*V));
	sim_bp_run(&bp, x, nx, rows, V, 0, &unused, NULL);
	out[0] = 0;
	for (size_t j = 0; j < ny; j++)
		out[j + 1] = out[j] + !((V[j >> 6] >> (j & 63)) & 1);
done:
	free(cnt);
	free(V);
	sim_bp_free(&bp);
	return err;
}

static uint32_t *reversed(const uint32_t *s, size_t n)
{
	uint32_t *r = malloc((n + 1) * sizeof(*r));
	if (r)
		for (size_t i = 0; i < n; i++)
			r[i] = s[n - 1 - i];
	return r;
}

/* Hirschberg: the best column to cut y at when x is cut at its middle. */
static int hirschberg_split(size_t *out_j, const span *sp)
{
	int err = MAMORI_OK;
	size_t nx = sp->nx, ny = sp->ny, mid = nx / 2;
	size_t *fwd = malloc((ny + 1) * sizeof(*fwd)), *bwd = malloc((ny + 1) * sizeof(*bwd));
	uint32_t *rx = reversed(sp->x + mid, nx - mid), *ry = reversed(sp->y, ny);
	if (!fwd || !bwd || !rx || !ry) {
		err = mamori_fail(MAMORI_ENOMEM, "align: no memory to split %zu x %zu", nx, ny);
		goto done;
	}
	err = lcs_row(fwd, sp->x, mid, sp->y, ny);
	if (!err)
		err = lcs_row(bwd, rx, nx - mid, ry, ny);
	if (err)
		goto done;
	size_t best = 0, best_j = 0;
	for (size_t j = 0; j <= ny; j++) {
		size_t v = fwd[j] + bwd[ny - j];
		if (v > best || j == 0) {
			best = v;
			best_j = j;
		}
	}
	*out_j = best_j;
done:
	free(fwd);
	free(bwd);
	free(rx);
	free(ry);
	return err;
}

static int align_rec(align_ctx *ctx, span sp)
{
	int err = MAMORI_OK;
	size_t p = sim_prefix(sp.x, sp.nx, sp.y, sp.ny);
	err = span_push(ctx, &sp, 0, 0, p);
	if (err)
		return err;
	sp.x += p;
	sp.y += p;
	sp.nx -= p;
	sp.ny -= p;
	sp.x_off += p;
	sp.y_off += p;
	size_t s = sim_suffix(sp.x, sp.nx, sp.y, sp.ny, sp.nx < sp.ny ? sp.nx : sp.ny);
	sp.nx -= s;
	sp.ny -= s;
	span whole = sp; /* orientation of the suffix, pushed last */

	if (sp.nx && sp.ny) {
		if (sp.ny > sp.nx) { /* rows over the longer one, bits over the shorter */
			span t = { sp.y, sp.x, sp.ny, sp.nx, sp.y_off, sp.x_off, !sp.swapped };
			sp = t;
		}
		uint64_t w = (sp.ny + 63) / 64;
		uint64_t bp_cost = (uint64_t)sp.nx * w;
		size_t dcap = (size_t)sqrt(2.0 * (double)SIM_TRACE_BYTES / (double)sizeof(int32_t)) - 2;
		int r = align_myers(ctx, &sp, dcap, bp_cost / 2 + 64);
		if (r < 0)
			return r;
		if (r == 0 && sp.nx * w * sizeof(uint64_t) <= SIM_ROWS_BYTES) {
			err = align_rows(ctx, &sp);
		} else if (r == 0) {
			size_t j = 0, mid = sp.nx / 2;
			err = hirschberg_split(&j, &sp);
			if (!err) {
				span left = { sp.x, sp.y, mid, j, sp.x_off, sp.y_off, sp.swapped };
				span right = { sp.x + mid,     sp.y + j,     sp.nx - mid, sp.ny - j,
					       sp.x_off + mid, sp.y_off + j, sp.swapped };
				err = align_rec(ctx, left);
				if (!err)
					err = align_rec(ctx, right);
			}
		}
		if (err)
			return err;
	}
	return span_push(ctx, &whole, whole.nx, whole.ny, s);
}

int mamori_align(mamori_alignment **out, const uint32_t *a, size_t n, const uint32_t *b, size_t m)
{
	int err = MAMORI_OK;
	align_ctx ctx = { 0 };
	mamori_alignment *al = NULL;
	*out = NULL;
	if (n > MAMORI_SIM_MAX_LEN || m > MAMORI_SIM_MAX_LEN)
		return mamori_fail(MAMORI_ELIMIT, "align: sequence of %zu tokens is over the limit",
				   n > m ? n : m);
	mamori_vec_init(&ctx.runs, sizeof(mamori_match_run), (n < m ? n : m) + 1);
	span sp = { a, b, n, m, 0, 0, false };
	err = align_rec(&ctx, sp);
	if (err)
		goto done;
	al = calloc(1, sizeof(*al));
	if (!al) {
		err = mamori_fail(MAMORI_ENOMEM, "align: no memory for the result");
		goto done;
	}
	al->runs = mamori_vec_steal(&ctx.runs, &al->n_runs);
	al->lcs = ctx.lcs;
	*out = al;
done:
	mamori_vec_free(&ctx.runs);
	return err;
}

void mamori_alignment_free(mamori_alignment *al)
{
	if (!al)
		return;
	free(al->runs);
	free(al);
}
