/*
 * Ground-truth files of scripts/disasm-truth and the precision/recall
 * arithmetic of disasm-eval. The files are ours (written by the builder),
 * but are still read through bounded parsers: a line longer than 256 bytes
 * or more entries than the caller's max is an error, not a crash.
 */
#include "dtruth.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mamori/base.h"

enum { LINE_MAX_LEN = 256, MANIFEST_COLS = 8 };

static const char *const manifest_header = "file,truth,format,arch,compiler,class,program,opt";

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int cmp_range(const void *a, const void *b)
{
	const mamori_dtruth_range *x = a, *y = b;
	if (x->start != y->start)
		return x->start < y->start ? -1 : 1;
	return x->end < y->end ? -1 : x->end > y->end;
}

size_t mamori_dtruth_sort_unique(uint64_t *v, size_t n)
{
	if (n == 0)
		return 0;
	qsort(v, n, sizeof(*v), cmp_u64);
	size_t w = 1;
	for (size_t i = 1; i < n; i++)
		if (v[i] != v[w - 1])
			v[w++] = v[i];
	return w;
}

/* Next line of `text` into `line` (NUL-terminated, without the newline and a
 * trailing CR). Returns 1 for a line, 0 at the end, or an error. */
static int next_line(char line[LINE_MAX_LEN], const char *text, size_t len, size_t *pos, size_t lineno)
{
	if (*pos >= len)
		return 0;
	const char *start = text + *pos;
	const char *nl = memchr(start, '\n', len - *pos);
	size_t n = nl ? (size_t)(nl - start) : len - *pos;
	*pos += n + (nl != NULL);
	if (n > 0 && start[n - 1] == '\r')
		n--;
	if (n >= LINE_MAX_LEN)
		return mamori_fail(MAMORI_EFORMAT, "line %zu longer than %d bytes", lineno, LINE_MAX_LEN - 1);
	memcpy(line, start, n);
	line[n] = '\0';
	return 1;
}

static int parse_hex(uint64_t *out, const char *s, char **end, size_t lineno)
{
	errno = 0;
	unsigned long long v = strtoull(s, end, 16);
	if (*end == s || errno != 0)
		return mamori_fail(MAMORI_EFORMAT, "line %zu: not a hex address", lineno);
	*out = v;
	return MAMORI_OK;
}

static bool blank(const char *s)
{
	return s[strspn(s, " \t")] == '\0';
}

int mamori_dtruth_parse_addrs(uint64_t **out, size_t *out_n, const char *text, size_t len, size_t max)
{
	mamori_vec v;
	mamori_vec_init(&v, sizeof(uint64_t), max);
	char line[LINE_MAX_LEN];
	size_t pos = 0, lineno = 0;
	int rc;
	while ((rc = next_line(line, text, len, &pos, ++lineno)) == 1) {
		if (blank(line))
			continue;
		uint64_t va;
		char *end;
		if ((rc = parse_hex(&va, line, &end, lineno)) != MAMORI_OK)
			goto done;
		if (!blank(end)) {
			rc = mamori_fail(MAMORI_EFORMAT, "line %zu: junk after the address", lineno);
			goto done;
		}
		if ((rc = mamori_vec_push(&v, &va)) != MAMORI_OK)
			goto done;
	}
	if (rc < 0)
		goto done;
	size_t n;
	uint64_t *a = mamori_vec_steal(&v, &n);
	*out_n = mamori_dtruth_sort_unique(a, n);
	*out = a;
	rc = MAMORI_OK;
done:
	mamori_vec_free(&v);
	return rc;
}

int mamori_dtruth_parse_ranges(mamori_dtruth_range **out, size_t *out_n, const char *text, size_t len,
			       size_t max)
{
	mamori_vec v;
	mamori_vec_init(&v, sizeof(mamori_dtruth_range), max);
	char line[LINE_MAX_LEN];
	size_t pos = 0, lineno = 0;
	int rc;
	while ((rc = next_line(line, text, len, &pos, ++lineno)) == 1) {
		if (blank(line))
			continue;
		mamori_dtruth_range r;
		char *end, *end2;
		if ((rc = parse_hex(&r.start, line, &end, lineno)) != MAMORI_OK ||
		    (rc = parse_hex(&r.end, end, &end2, lineno)) != MAMORI_OK)
			goto done;
		if (!blank(end2) || r.end < r.start) {
			rc = mamori_fail(MAMORI_EFORMAT, "line %zu: want \"start end\" with start <= end",
					 lineno);
			goto done;
		}
		if (r.end > r.start && (rc = mamori_vec_push(&v, &r)) != MAMORI_OK)
			goto done;
	}
	if (rc < 0)
		goto done;
	size_t n, w = 0;
	mamori_dtruth_range *a = mamori_vec_steal(&v, &n);
	if (n > 0) {
		qsort(a, n, sizeof(*a), cmp_range);
		w = 1;
		for (size_t i = 1; i < n; i++) {
			if (a[i].start <= a[w - 1].end) {
				if (a[i].end > a[w - 1].end)
					a[w - 1].end = a[i].end;
			} else {
				a[w++] = a[i];
			}
		}
	}
	*out = a;
	*out_n = w;
	rc = MAMORI_OK;
done:
	mamori_vec_free(&v);
	return rc;
}

void mamori_dtruth_rows_free(mamori_dtruth_row *rows, size_t n)
{
	if (!rows)
		return;
	for (size_t i = 0; i < n; i++) {
		mamori_dtruth_row *r = &rows[i];
		char *f[MANIFEST_COLS] = { r->file,	r->truth, r->format,  r->arch,
					   r->compiler, r->cls,	  r->program, r->opt };
		for (size_t c = 0; c < MANIFEST_COLS; c++)
			free(f[c]);
	}
	free(rows);
}

int mamori_dtruth_manifest_read(mamori_dtruth_row **out, size_t *out_n, const char *path, size_t max_rows)
{
	uint8_t *data = NULL;
	size_t len = 0;
	mamori_vec v;
	mamori_vec_init(&v, sizeof(mamori_dtruth_row), max_rows);
	int rc = mamori_file_read(&data, &len, path, (size_t)16 << 20);
	if (rc != MAMORI_OK)
		goto done;
	char line[LINE_MAX_LEN];
	size_t pos = 0, lineno = 0;
	while ((rc = next_line(line, (const char *)data, len, &pos, ++lineno)) == 1) {
		if (lineno == 1) {
			if (strcmp(line, manifest_header) != 0) {
				rc = mamori_fail(MAMORI_EFORMAT, "%s: header is not \"%s\"", path,
						 manifest_header);
				goto done;
			}
			continue;
		}
		if (blank(line))
			continue;
		char *f[MANIFEST_COLS] = { 0 };
		char *p = line;
		size_t c = 0;
		for (; c < MANIFEST_COLS && p; c++) {
			char *comma = strchr(p, ',');
			if (comma)
				*comma = '\0';
			f[c] = strdup(p);
			p = comma ? comma + 1 : NULL;
		}
		mamori_dtruth_row row = { f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7] };
		rc = mamori_vec_push(&v, &row);
		if (rc != MAMORI_OK) {
			for (size_t k = 0; k < MANIFEST_COLS; k++)
				free(f[k]);
			goto done;
		}
		bool ok = c == MANIFEST_COLS && p == NULL;
		for (size_t k = 0; k < MANIFEST_COLS; k++)
			ok = ok && f[k] != NULL && f[k][0] != '\0';
		if (!ok) {
			rc = mamori_fail(MAMORI_EFORMAT, "%s:%zu: want 8 non-empty fields", path, lineno);
			goto done;
		}
	}
	if (rc < 0)
		goto done;
	*out = mamori_vec_steal(&v, out_n);
	rc = MAMORI_OK;
done:
	if (rc != MAMORI_OK) {
		size_t n = 0;
		mamori_dtruth_row *rows = mamori_vec_steal(&v, &n);
		mamori_dtruth_rows_free(rows, n);
	}
	mamori_vec_free(&v);
	free(data);
	return rc;
}

/* Index of the known range holding `va`, or SIZE_MAX. */
static size_t range_of(const mamori_dtruth_range *known, size_t n, uint64_t va)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (known[mid].end <= va)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && known[lo].start <= va ? lo : SIZE_MAX;
}

/* Walk truth and predictions together over the known bytes; `fp`/`fn` (when
 * not NULL) collect the first `cap` errors. */
static void walk_scores(mamori_dtruth_counts *acc, uint64_t *fp, size_t *n_fp, uint64_t *fn, size_t *n_fn,
			size_t cap, const uint64_t *truth, size_t n_truth, const mamori_dtruth_range *known,
			size_t n_known, const uint64_t *pred, size_t n_pred)
{
	size_t i = 0, j = 0;
	while (i < n_truth || j < n_pred) {
		uint64_t va;
		bool in_truth, in_pred;
		if (j >= n_pred || (i < n_truth && truth[i] < pred[j])) {
			va = truth[i++];
			in_truth = true, in_pred = false;
		} else if (i >= n_truth || pred[j] < truth[i]) {
			va = pred[j++];
			in_truth = false, in_pred = true;
		} else {
			va = truth[i++];
			j++;
			in_truth = in_pred = true;
		}
		if (range_of(known, n_known, va) == SIZE_MAX)
			continue;
		if (in_truth && in_pred) {
			acc->tp++;
		} else if (in_pred) {
			acc->fp++;
			if (fp && *n_fp < cap)
				fp[(*n_fp)++] = va;
		} else {
			acc->fn++;
			if (fn && *n_fn < cap)
				fn[(*n_fn)++] = va;
		}
	}
}

void mamori_dtruth_score(mamori_dtruth_counts *acc, const uint64_t *truth, size_t n_truth,
			 const mamori_dtruth_range *known, size_t n_known, const uint64_t *pred,
			 size_t n_pred)
{
	walk_scores(acc, NULL, NULL, NULL, NULL, 0, truth, n_truth, known, n_known, pred, n_pred);
}

void mamori_dtruth_first_errors(uint64_t *fp, size_t *n_fp, uint64_t *fn, size_t *n_fn, size_t cap,
				const uint64_t *truth, size_t n_truth, const mamori_dtruth_range *known,
				size_t n_known, const uint64_t *pred, size_t n_pred)
{
	mamori_dtruth_counts c = { 0 };
	*n_fp = *n_fn = 0;
	walk_scores(&c, fp, n_fp, fn, n_fn, cap, truth, n_truth, known, n_known, pred, n_pred);
}

double mamori_dtruth_precision(const mamori_dtruth_counts *c)
{
	return c->tp + c->fp ? (double)c->tp / (double)(c->tp + c->fp) : 1.0;
}

double mamori_dtruth_recall(const mamori_dtruth_counts *c)
{
	return c->tp + c->fn ? (double)c->tp / (double)(c->tp + c->fn) : 1.0;
}
