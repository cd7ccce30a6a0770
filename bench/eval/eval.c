/*
 * Labels, assignments and scores for the benchmark (see eval.h).
 *
 * The CSV dialect is deliberately narrow: comma-separated, no quoting, LF or
 * CRLF line ends, a fixed header, a bounded field length and row count. The
 * corpus builder writes exactly that, and anything else is a sign of a wrong
 * file, so it is rejected with the line number rather than guessed at.
 * Scores are computed by sorting (truth, cluster) pairs, which needs no hash
 * table and costs O(n log n) for n samples.
 */
#include "eval.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "mamori/base.h"

static const char LABELS_HEADER[] = "sha256,family,subfamily,program,arch,opt,stripped";
enum { LABELS_FIELDS = 7 };

/* ------------------------------------------------------------------ */
/* Line and field splitting                                             */
/* ------------------------------------------------------------------ */

/* A line of the input, borrowed from the buffer, without its line end. */
typedef struct line_reader {
	const char *buf;
	size_t len;
	size_t pos;
	size_t lineno;
} line_reader;

static bool next_line(line_reader *r, const char **out, size_t *out_len)
{
	if (r->pos >= r->len)
		return false;
	const char *start = r->buf + r->pos;
	const char *nl = memchr(start, '\n', r->len - r->pos);
	size_t n = nl ? (size_t)(nl - start) : r->len - r->pos;
	r->pos += n + (nl ? 1 : 0);
	if (n > 0 && start[n - 1] == '\r')
		n--;
	r->lineno++;
	*out = start;
	*out_len = n;
	return true;
}

/* Split `line` at commas into at most `max` borrowed fields. */
static int split_fields(const char **fields, size_t *lens, size_t *out_count, size_t max, const char *line,
			size_t len, const char *name, size_t lineno)
{
	size_t count = 0, start = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && line[i] == '"')
			return mamori_fail(MAMORI_EFORMAT, "%s:%zu: quoted fields are not supported", name,
					   lineno);
		if (i < len && line[i] == '\0')
			return mamori_fail(MAMORI_EFORMAT, "%s:%zu: NUL byte in line", name, lineno);
		if (i < len && line[i] != ',')
			continue;
		if (count == max)
			return mamori_fail(MAMORI_EFORMAT, "%s:%zu: more than %zu fields", name, lineno, max);
		if (i - start > MAMORI_EVAL_MAX_FIELD)
			return mamori_fail(MAMORI_ELIMIT, "%s:%zu: field %zu longer than %d bytes", name,
					   lineno, count + 1, MAMORI_EVAL_MAX_FIELD);
		fields[count] = line + start;
		lens[count] = i - start;
		count++;
		start = i + 1;
	}
	*out_count = count;
	return MAMORI_OK;
}

/* Copy a 64-digit hex SHA-256 into `out` in lowercase; false if malformed. */
static bool parse_sha256(char out[65], const char *s, size_t len)
{
	if (len != 64)
		return false;
	for (size_t i = 0; i < 64; i++) {
		char c = s[i];
		if (c >= 'A' && c <= 'F')
			c = (char)(c - 'A' + 'a');
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
		out[i] = c;
	}
	out[64] = '\0';
	return true;
}

/* ------------------------------------------------------------------ */
/* String interning: family and subfamily names to dense ids            */
/* ------------------------------------------------------------------ */

typedef struct intern_table {
	char **keys; /* owned; NULL marks an empty slot */
	int64_t *ids;
	size_t cap; /* power of two, at least twice the most keys */
	size_t count;
} intern_table;

static int intern_init(intern_table *t, size_t max_keys)
{
	size_t cap = 16;
	while (cap < 2 * max_keys)
		cap *= 2;
	t->keys = calloc(cap, sizeof(*t->keys));
	t->ids = calloc(cap, sizeof(*t->ids));
	t->cap = cap;
	t->count = 0;
	if (!t->keys || !t->ids)
		return mamori_fail(MAMORI_ENOMEM, "labels: no memory for the name table");
	return MAMORI_OK;
}

/* Free the table; keys listed in `keep` (by id) are handed out instead. */
static void intern_free(intern_table *t, char **keep)
{
	for (size_t i = 0; t->keys && i < t->cap; i++) {
		if (!t->keys[i])
			continue;
		if (keep)
			keep[t->ids[i]] = t->keys[i];
		else
			free(t->keys[i]);
	}
	free(t->keys);
	free(t->ids);
	t->keys = NULL;
	t->ids = NULL;
}

static int intern_get(int64_t *out, intern_table *t, const char *key, size_t len)
{
	size_t mask = t->cap - 1;
	size_t i = (size_t)mamori_hash64(key, len, 0) & mask;
	while (t->keys[i]) {
		if (strlen(t->keys[i]) == len && memcmp(t->keys[i], key, len) == 0) {
			*out = t->ids[i];
			return MAMORI_OK;
		}
		i = (i + 1) & mask;
	}
	char *copy = malloc(len + 1);
	if (!copy)
		return mamori_fail(MAMORI_ENOMEM, "labels: no memory for a name");
	memcpy(copy, key, len);
	copy[len] = '\0';
	t->keys[i] = copy;
	t->ids[i] = (int64_t)t->count;
	*out = (int64_t)t->count++;
	return MAMORI_OK;
}

/* ------------------------------------------------------------------ */
/* Labels                                                               */
/* ------------------------------------------------------------------ */

/* Rows sorted by SHA-256 for lookups; kept next to the public struct. */
typedef struct labels_impl {
	mamori_eval_labels pub;
	size_t *by_sha;
} labels_impl;

static const mamori_eval_labels *sort_ctx;

static int cmp_row_sha(const void *a, const void *b)
{
	size_t ra = *(const size_t *)a, rb = *(const size_t *)b;
	int c = memcmp(sort_ctx->sha256[ra], sort_ctx->sha256[rb], 64);
	if (c != 0)
		return c;
	return ra < rb ? -1 : ra > rb;
}

void mamori_eval_labels_free(mamori_eval_labels *l)
{
	if (!l)
		return;
	labels_impl *impl = (labels_impl *)l;
	for (size_t i = 0; l->family_names && i < l->n_families; i++)
		free(l->family_names[i]);
	free(l->family_names);
	free(l->sha256);
	free(l->family);
	free(l->subfamily);
	free(impl->by_sha);
	free(impl);
}

int mamori_eval_labels_parse(mamori_eval_labels **out, const char *buf, size_t len, const char *name)
{
	int err = MAMORI_OK;
	intern_table fams = { 0 }, subs = { 0 };
	labels_impl *impl = NULL;
	char *subkey = NULL;
	*out = NULL;

	/* An upper bound on rows, so every array is sized once. */
	size_t max_rows = 1;
	for (size_t i = 0; i < len; i++)
		max_rows += buf[i] == '\n';
	if (max_rows > MAMORI_EVAL_MAX_ROWS + 2) {
		err = mamori_fail(MAMORI_ELIMIT, "%s: more than %zu rows", name, MAMORI_EVAL_MAX_ROWS);
		goto done;
	}
	impl = calloc(1, sizeof(*impl));
	if (!impl) {
		err = mamori_fail(MAMORI_ENOMEM, "%s: no memory", name);
		goto done;
	}
	mamori_eval_labels *l = &impl->pub;
	l->sha256 = calloc(max_rows, sizeof(*l->sha256));
	l->family = calloc(max_rows, sizeof(*l->family));
	l->subfamily = calloc(max_rows, sizeof(*l->subfamily));
	impl->by_sha = calloc(max_rows, sizeof(*impl->by_sha));
	subkey = malloc(2 * MAMORI_EVAL_MAX_FIELD + 2);
	if (!l->sha256 || !l->family || !l->subfamily || !impl->by_sha || !subkey) {
		err = mamori_fail(MAMORI_ENOMEM, "%s: no memory for %zu rows", name, max_rows);
		goto done;
	}
	if ((err = intern_init(&fams, max_rows)) < 0 || (err = intern_init(&subs, max_rows)) < 0)
		goto done;

	line_reader r = { .buf = buf, .len = len };
	const char *line;
	size_t line_len;
	if (!next_line(&r, &line, &line_len) || line_len != strlen(LABELS_HEADER) ||
	    memcmp(line, LABELS_HEADER, line_len) != 0) {
		err = mamori_fail(MAMORI_EFORMAT, "%s:1: header must be '%s'", name, LABELS_HEADER);
		goto done;
	}
	while (next_line(&r, &line, &line_len)) {
		const char *f[LABELS_FIELDS];
		size_t fl[LABELS_FIELDS], count = 0;
		if (line_len == 0) {
			/* Only a final empty line (a trailing newline) is allowed. */
			if (r.pos < r.len) {
				err = mamori_fail(MAMORI_EFORMAT, "%s:%zu: empty line", name, r.lineno);
				goto done;
			}
			break;
		}
		if ((err = split_fields(f, fl, &count, LABELS_FIELDS, line, line_len, name, r.lineno)) < 0)
			goto done;
		if (count != LABELS_FIELDS) {
			err = mamori_fail(MAMORI_EFORMAT, "%s:%zu: %zu fields, expected %d", name, r.lineno,
					  count, LABELS_FIELDS);
			goto done;
		}
		if (!parse_sha256(l->sha256[l->n], f[0], fl[0])) {
			err = mamori_fail(MAMORI_EFORMAT, "%s:%zu: sha256 is not 64 hex digits", name,
					  r.lineno);
			goto done;
		}
		if (fl[1] == 0) {
			err = mamori_fail(MAMORI_EFORMAT, "%s:%zu: empty family", name, r.lineno);
			goto done;
		}
		if ((err = intern_get(&l->family[l->n], &fams, f[1], fl[1])) < 0)
			goto done;
		/* Subfamilies are named within their family: "lua/5.1". An empty
		 * subfamily means the family has only one. */
		memcpy(subkey, f[1], fl[1]);
		subkey[fl[1]] = '/';
		memcpy(subkey + fl[1] + 1, f[2], fl[2]);
		if ((err = intern_get(&l->subfamily[l->n], &subs, subkey, fl[1] + 1 + fl[2])) < 0)
			goto done;
		l->n++;
	}
	if (l->n == 0) {
		err = mamori_fail(MAMORI_EFORMAT, "%s: no samples", name);
		goto done;
	}
	l->n_families = fams.count;
	l->n_subfamilies = subs.count;
	l->family_names = calloc(fams.count + 1, sizeof(*l->family_names));
	if (!l->family_names) {
		err = mamori_fail(MAMORI_ENOMEM, "%s: no memory", name);
		goto done;
	}
	intern_free(&fams, l->family_names);
	for (size_t i = 0; i < l->n; i++)
		impl->by_sha[i] = i;
	sort_ctx = l;
	qsort(impl->by_sha, l->n, sizeof(*impl->by_sha), cmp_row_sha);
	sort_ctx = NULL;
	*out = l;
	impl = NULL;
done:
	intern_free(&fams, NULL);
	intern_free(&subs, NULL);
	free(subkey);
	mamori_eval_labels_free(impl ? &impl->pub : NULL);
	return err;
}

int mamori_eval_labels_load(mamori_eval_labels **out, const char *path)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	*out = NULL;
	int err = mamori_file_read(&buf, &len, path, MAMORI_EVAL_MAX_FILE);
	if (err == MAMORI_OK)
		err = mamori_eval_labels_parse(out, (const char *)buf, len, path);
	free(buf);
	return err;
}

const int64_t *mamori_eval_labels_truth(const mamori_eval_labels *l, mamori_eval_level level)
{
	return level == MAMORI_EVAL_SUBFAMILY ? l->subfamily : l->family;
}

/* First position in by_sha whose row has `sha256`, or n. */
static size_t lower_bound(const mamori_eval_labels *l, const char *sha256)
{
	const size_t *by_sha = ((const labels_impl *)l)->by_sha;
	size_t lo = 0, hi = l->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (memcmp(l->sha256[by_sha[mid]], sha256, 64) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int64_t mamori_eval_labels_find(const mamori_eval_labels *l, const char *sha256)
{
	size_t pos = lower_bound(l, sha256);
	if (pos < l->n && memcmp(l->sha256[((const labels_impl *)l)->by_sha[pos]], sha256, 64) == 0)
		return (int64_t)((const labels_impl *)l)->by_sha[pos];
	return -1;
}

/* Give every labels row with `sha256` the cluster `cluster`. A corpus may hold
 * the same bytes under two names; both rows get the one cluster. Returns the
 * number of rows set. */
static size_t assign_rows(int64_t *assign, bool *seen, const mamori_eval_labels *l, const char *sha256,
			  int64_t cluster)
{
	const size_t *by_sha = ((const labels_impl *)l)->by_sha;
	size_t set = 0;
	for (size_t pos = lower_bound(l, sha256); pos < l->n; pos++) {
		size_t row = by_sha[pos];
		if (memcmp(l->sha256[row], sha256, 64) != 0)
			break;
		assign[row] = cluster;
		seen[row] = true;
		set++;
	}
	return set;
}

static void count_outcome(size_t *out_missing, size_t *out_failed, const int64_t *assign, const bool *seen,
			  size_t n)
{
	size_t missing = 0, failed = 0;
	for (size_t i = 0; i < n; i++) {
		if (!seen[i])
			missing++;
		else if (assign[i] < 0)
			failed++;
	}
	if (out_missing)
		*out_missing = missing;
	if (out_failed)
		*out_failed = failed;
}

/* ------------------------------------------------------------------ */
/* Assignments                                                          */
/* ------------------------------------------------------------------ */

int mamori_eval_assign_from_clusters_json(int64_t *out, size_t *out_missing, size_t *out_failed,
					  const mamori_eval_labels *labels, const char *path)
{
	int err = MAMORI_OK;
	uint8_t *buf = NULL;
	size_t len = 0;
	json_t *root = NULL;
	bool *seen = calloc(labels->n, sizeof(*seen));
	if (!seen) {
		err = mamori_fail(MAMORI_ENOMEM, "%s: no memory", path);
		goto done;
	}
	for (size_t i = 0; i < labels->n; i++)
		out[i] = -1;
	/* clusters.json of a large corpus is bigger than a labels file. */
	if ((err = mamori_file_read(&buf, &len, path, 4 * MAMORI_EVAL_MAX_FILE)) < 0)
		goto done;
	json_error_t jerr;
	root = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		err = mamori_fail(MAMORI_EFORMAT, "%s:%d: %s", path, jerr.line, jerr.text);
		goto done;
	}
	json_t *samples = json_object_get(root, "samples");
	if (!json_is_object(root) || !json_is_array(samples)) {
		err = mamori_fail(MAMORI_EFORMAT, "%s: no \"samples\" array", path);
		goto done;
	}
	if (json_array_size(samples) > MAMORI_EVAL_MAX_ROWS) {
		err = mamori_fail(MAMORI_ELIMIT, "%s: more than %zu samples", path, MAMORI_EVAL_MAX_ROWS);
		goto done;
	}
	size_t idx;
	json_t *s;
	json_array_foreach(samples, idx, s)
	{
		json_t *jsha = json_object_get(s, "sha256");
		json_t *jcl = json_object_get(s, "cluster");
		char sha[65];
		if (!json_is_string(jsha) ||
		    !parse_sha256(sha, json_string_value(jsha), json_string_length(jsha))) {
			err = mamori_fail(MAMORI_EFORMAT, "%s: samples[%zu].sha256 is not a SHA-256", path,
					  idx);
			goto done;
		}
		int64_t cluster = -1;
		if (json_is_integer(jcl) && json_integer_value(jcl) >= 0)
			cluster = json_integer_value(jcl);
		else if (!json_is_null(jcl)) {
			err = mamori_fail(MAMORI_EFORMAT,
					  "%s: samples[%zu].cluster must be a cluster id or null", path, idx);
			goto done;
		}
		assign_rows(out, seen, labels, sha, cluster);
	}
	count_outcome(out_missing, out_failed, out, seen, labels->n);
done:
	json_decref(root);
	free(buf);
	free(seen);
	return err;
}

int mamori_eval_assign_parse_csv(int64_t *out, size_t *out_missing, size_t *out_failed,
				 const mamori_eval_labels *labels, const char *buf, size_t len,
				 const char *name)
{
	int err = MAMORI_OK;
	size_t rows = 0;
	bool *seen = calloc(labels->n, sizeof(*seen));
	if (!seen)
		return mamori_fail(MAMORI_ENOMEM, "%s: no memory", name);
	for (size_t i = 0; i < labels->n; i++)
		out[i] = -1;

	line_reader r = { .buf = buf, .len = len };
	const char *line;
	size_t line_len;
	if (!next_line(&r, &line, &line_len) || line_len != strlen("sha256,cluster") ||
	    memcmp(line, "sha256,cluster", line_len) != 0) {
		err = mamori_fail(MAMORI_EFORMAT, "%s:1: header must be 'sha256,cluster'", name);
		goto done;
	}
	while (next_line(&r, &line, &line_len)) {
		const char *f[2];
		size_t fl[2], count = 0;
		char sha[65], num[32];
		if (line_len == 0) {
			if (r.pos < r.len) {
				err = mamori_fail(MAMORI_EFORMAT, "%s:%zu: empty line", name, r.lineno);
				goto done;
			}
			break;
		}
		if (++rows > MAMORI_EVAL_MAX_ROWS) {
			err = mamori_fail(MAMORI_ELIMIT, "%s: more than %zu rows", name,
					  MAMORI_EVAL_MAX_ROWS);
			goto done;
		}
		if ((err = split_fields(f, fl, &count, 2, line, line_len, name, r.lineno)) < 0)
			goto done;
		if (count != 2 || !parse_sha256(sha, f[0], fl[0])) {
			err = mamori_fail(MAMORI_EFORMAT, "%s:%zu: expected 'sha256,cluster'", name,
					  r.lineno);
			goto done;
		}
		int64_t cluster = -1;
		if (fl[1] > 0) {
			char *end = NULL;
			if (fl[1] >= sizeof(num)) {
				err = mamori_fail(MAMORI_EFORMAT, "%s:%zu: cluster id too long", name,
						  r.lineno);
				goto done;
			}
			memcpy(num, f[1], fl[1]);
			num[fl[1]] = '\0';
			errno = 0;
			long long v = strtoll(num, &end, 10);
			if (errno != 0 || end != num + fl[1] || v < -1) {
				err = mamori_fail(MAMORI_EFORMAT, "%s:%zu: cluster '%s' is not an id or -1",
						  name, r.lineno, num);
				goto done;
			}
			cluster = v;
		}
		assign_rows(out, seen, labels, sha, cluster);
	}
	count_outcome(out_missing, out_failed, out, seen, labels->n);
done:
	free(seen);
	return err;
}

int mamori_eval_assign_from_csv(int64_t *out, size_t *out_missing, size_t *out_failed,
				const mamori_eval_labels *labels, const char *path)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int err = mamori_file_read(&buf, &len, path, 4 * MAMORI_EVAL_MAX_FILE);
	if (err == MAMORI_OK)
		err = mamori_eval_assign_parse_csv(out, out_missing, out_failed, labels, (const char *)buf,
						   len, path);
	free(buf);
	return err;
}

/* ------------------------------------------------------------------ */
/* Scores                                                               */
/* ------------------------------------------------------------------ */

typedef struct pair {
	int64_t major;
	int64_t minor;
} pair;

static int cmp_pair(const void *a, const void *b)
{
	const pair *x = a, *y = b;
	if (x->major != y->major)
		return x->major < y->major ? -1 : 1;
	return x->minor < y->minor ? -1 : x->minor > y->minor;
}

static double choose2(uint64_t k)
{
	return (double)k * (double)(k - (k > 0)) / 2.0;
}

/*
 * Walk pairs sorted by (major, minor). For each major group, add the largest
 * run of equal minors to `*out_best_sum` (the precision/recall numerator) and
 * the group's C(size, 2) to `*out_group_pairs`; optionally the cells' C(k, 2)
 * to `*out_cell_pairs`. Returns the number of major groups.
 */
static size_t sweep_groups(uint64_t *out_best_sum, double *out_group_pairs, double *out_cell_pairs,
			   const pair *p, size_t n)
{
	size_t groups = 0;
	uint64_t best_sum = 0;
	double group_pairs = 0, cell_pairs = 0;
	size_t i = 0;
	while (i < n) {
		size_t g = i;
		uint64_t best = 0;
		while (g < n && p[g].major == p[i].major) {
			size_t c = g;
			while (c < n && p[c].major == p[g].major && p[c].minor == p[g].minor)
				c++;
			uint64_t cell = c - g;
			if (cell > best)
				best = cell;
			cell_pairs += choose2(cell);
			g = c;
		}
		best_sum += best;
		group_pairs += choose2(g - i);
		groups++;
		i = g;
	}
	*out_best_sum = best_sum;
	*out_group_pairs = group_pairs;
	if (out_cell_pairs)
		*out_cell_pairs = cell_pairs;
	return groups;
}

int mamori_eval_score(mamori_eval_scores *out, const int64_t *truth, const int64_t *pred, size_t n)
{
	int err = MAMORI_OK;
	pair *p = NULL;
	memset(out, 0, sizeof(*out));
	if (n == 0)
		return mamori_fail(MAMORI_EINVAL, "score: no samples");
	p = malloc(n * sizeof(*p));
	if (!p)
		return mamori_fail(MAMORI_ENOMEM, "score: no memory for %zu samples", n);

	/* Unclustered samples become singletons with ids past every real one. */
	int64_t next = 0;
	for (size_t i = 0; i < n; i++) {
		if (truth[i] < 0) {
			err = mamori_fail(MAMORI_EINVAL, "score: sample %zu has no truth class", i);
			goto done;
		}
		if (pred[i] >= next)
			next = pred[i] + 1;
	}
	for (size_t i = 0; i < n; i++)
		p[i] = (pair){ .major = pred[i] >= 0 ? pred[i] : next++, .minor = truth[i] };

	uint64_t prec_sum, rec_sum;
	double cluster_pairs, class_pairs, cell_pairs;
	qsort(p, n, sizeof(*p), cmp_pair);
	out->n_clusters = sweep_groups(&prec_sum, &cluster_pairs, &cell_pairs, p, n);
	for (size_t i = 0; i < n; i++)
		p[i] = (pair){ .major = p[i].minor, .minor = p[i].major };
	qsort(p, n, sizeof(*p), cmp_pair);
	sweep_groups(&rec_sum, &class_pairs, NULL, p, n);

	out->n = n;
	out->precision = (double)prec_sum / (double)n;
	out->recall = (double)rec_sum / (double)n;
	out->f1 = out->precision + out->recall > 0
			  ? 2 * out->precision * out->recall / (out->precision + out->recall)
			  : 0;
	/* When both partitions are trivial and equal (all one, or all
	 * singletons) the index is 0/0; like scikit-learn, call that agreement. */
	double expected = n > 1 ? cluster_pairs * class_pairs / choose2(n) : 0;
	double max_index = (cluster_pairs + class_pairs) / 2;
	out->ari = max_index - expected != 0 ? (cell_pairs - expected) / (max_index - expected) : 1.0;
done:
	free(p);
	return err;
}
