/*
 * mamori-baseline: cluster the corpus with a byte-level fuzzy hash (ssdeep or
 * TLSH, through Debian's own libfuzzy and libtlsh) and score it, so that the
 * benchmark compares mamori against the usual tools on equal terms.
 *
 *   mamori-baseline --method ssdeep|tlsh --labels labels.csv [--linkage L]
 *                   [--jobs N] [--step S] [--assign-out FILE] [--json] PATH...
 *
 * Every pair of distinct samples is compared (no candidate search: the
 * baselines get their best case). Scores become distances in [0, 1] --
 * ssdeep: 1 - score/100; TLSH: min(d, 300)/300 -- and are clustered with the
 * same hierarchical clustering as mamori (src/cluster). The cut threshold is
 * swept over [0, 1) and the baseline is reported at the threshold with the
 * best family-level F1; the subfamily scores are taken at that same cut.
 * A file the hash cannot digest (TLSH needs 256 varied bytes) stays a
 * singleton. Files not listed in labels.csv are ignored, and identical files
 * are hashed once. Memory is one float per pair: 4 * n^2 / 2 bytes.
 */
#include <dirent.h>
#include <errno.h>
#include <fuzzy.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "eval.h"
#include "mamori/base.h"
#include "mamori/cluster.h"
#include "tlsh_shim.h"

enum { MAX_DEPTH = 64 };
#define MAX_FILES ((size_t)1 << 20)
/* TLSH distances beyond this are "unrelated"; typical same-family pairs are
 * well under 100, so 300 keeps the useful range and bounds the scale. */
#define TLSH_CAP 300.0

typedef enum { METHOD_SSDEEP, METHOD_TLSH } method;

/* One distinct sample: its labels row and its digest (NULL/empty: none). */
typedef struct item {
	char sha256[65];
	char *ssdeep;
	mamori_tlsh *tlsh;
} item;

/* ------------------------------------------------------------------ */
/* Walking the inputs                                                   */
/* ------------------------------------------------------------------ */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int push_path(mamori_vec *files, const char *path)
{
	char *copy = strdup(path);
	if (!copy)
		return mamori_fail(MAMORI_ENOMEM, "no memory for a path");
	int err = mamori_vec_push(files, &copy);
	if (err < 0)
		free(copy);
	return err;
}

/* Collect regular files under `path` (symlinks are not followed). */
static int walk(mamori_vec *files, const char *path, int depth)
{
	struct stat st;
	if (lstat(path, &st) != 0)
		return mamori_fail(MAMORI_EIO, "%s: %s", path, strerror(errno));
	if (S_ISREG(st.st_mode))
		return push_path(files, path);
	if (!S_ISDIR(st.st_mode))
		return MAMORI_OK;
	if (depth >= MAX_DEPTH)
		return mamori_fail(MAMORI_ELIMIT, "%s: directories nested deeper than %d", path, MAX_DEPTH);
	int err = MAMORI_OK;
	DIR *dir = opendir(path);
	if (!dir)
		return mamori_fail(MAMORI_EIO, "%s: %s", path, strerror(errno));
	struct dirent *de;
	char child[4096];
	while ((de = readdir(dir)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		int len = snprintf(child, sizeof(child), "%s/%s", path, de->d_name);
		if (len < 0 || (size_t)len >= sizeof(child)) {
			err = mamori_fail(MAMORI_ELIMIT, "%s/%s: path too long", path, de->d_name);
			break;
		}
		if ((err = walk(files, child, depth + 1)) < 0)
			break;
	}
	closedir(dir);
	return err;
}

/* ------------------------------------------------------------------ */
/* Pairwise distances, split over threads by interleaved rows           */
/* ------------------------------------------------------------------ */

typedef struct dist_job {
	const item *items;
	size_t n;
	method m;
	float *dist;
	size_t first, stride;
} dist_job;

static float pair_distance(const item *a, const item *b, method m)
{
	if (m == METHOD_SSDEEP) {
		if (!a->ssdeep || !b->ssdeep)
			return 1.0f;
		int score = fuzzy_compare(a->ssdeep, b->ssdeep);
		return score < 0 ? 1.0f : (float)(1.0 - score / 100.0);
	}
	if (!a->tlsh || !b->tlsh)
		return 1.0f;
	double d = mamori_tlsh_diff(a->tlsh, b->tlsh);
	return (float)((d < TLSH_CAP ? (d < 0 ? 0 : d) : TLSH_CAP) / TLSH_CAP);
}

static void *dist_worker(void *arg)
{
	dist_job *job = arg;
	for (size_t i = job->first; i < job->n; i += job->stride) {
		size_t base = mamori_condensed_index(job->n, i, i + 1);
		for (size_t j = i + 1; j < job->n; j++)
			job->dist[base + (j - i - 1)] = pair_distance(&job->items[i], &job->items[j], job->m);
	}
	return NULL;
}

static void compute_distances(float *dist, const item *items, size_t n, method m, unsigned jobs)
{
	pthread_t tids[64];
	dist_job work[64];
	bool started[64] = { false };
	if (n < 2)
		return;
	if (jobs > 64)
		jobs = 64;
	for (unsigned t = 0; t < jobs; t++) {
		work[t] = (dist_job){
			.items = items, .n = n, .m = m, .dist = dist, .first = t, .stride = jobs
		};
		if (t > 0)
			started[t] = pthread_create(&tids[t], NULL, dist_worker, &work[t]) == 0;
	}
	/* Share 0 is done on this thread, and so is any whose thread did not start. */
	for (unsigned t = 0; t < jobs; t++)
		if (!started[t])
			dist_worker(&work[t]);
	for (unsigned t = 1; t < jobs; t++)
		if (started[t])
			pthread_join(tids[t], NULL);
}

/* ------------------------------------------------------------------ */
/* Threshold sweep                                                      */
/* ------------------------------------------------------------------ */

/* Labels rows -> cluster ids of the cut (-1 where the file was not found). */
static void rows_from_cut(int64_t *assign, const mamori_eval_labels *labels, const int64_t *row_item,
			  const int64_t *cut)
{
	for (size_t r = 0; r < labels->n; r++)
		assign[r] = row_item[r] >= 0 ? cut[row_item[r]] : -1;
}

typedef struct sweep_point {
	double threshold;
	mamori_eval_scores family, subfamily;
} sweep_point;

static json_t *scores_json(const mamori_eval_scores *s)
{
	return json_pack("{s:f, s:f, s:f, s:f, s:I}", "precision", s->precision, "recall", s->recall, "f1",
			 s->f1, "ari", s->ari, "clusters", (json_int_t)s->n_clusters);
}

static void usage(FILE *f)
{
	fputs("usage: mamori-baseline --method ssdeep|tlsh --labels labels.csv [--linkage "
	      "average|single|complete]\n"
	      "                       [--jobs N] [--step S] [--assign-out FILE] [--json] PATH...\n",
	      f);
}

static int parse_positive(double *out, const char *s, double max)
{
	char *end = NULL;
	errno = 0;
	double v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !(v > 0) || v > max)
		return mamori_fail(MAMORI_EINVAL, "'%s' is not a number in (0, %g]", s, max);
	*out = v;
	return MAMORI_OK;
}

int main(int argc, char **argv)
{
	const char *labels_path = NULL, *assign_out = NULL, *method_name = NULL;
	mamori_linkage link = MAMORI_LINK_AVERAGE;
	double step = 0.01, jobs_d = (double)sysconf(_SC_NPROCESSORS_ONLN);
	bool json = false;
	static const struct option opts[] = {
		{ "method", required_argument, NULL, 'm' },
		{ "labels", required_argument, NULL, 'l' },
		{ "linkage", required_argument, NULL, 'k' },
		{ "jobs", required_argument, NULL, 'j' },
		{ "step", required_argument, NULL, 's' },
		{ "assign-out", required_argument, NULL, 'o' },
		{ "json", no_argument, NULL, 'J' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c, err = MAMORI_OK;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'm': method_name = optarg; break;
		case 'l': labels_path = optarg; break;
		case 'o': assign_out = optarg; break;
		case 'J': json = true; break;
		case 'k': err = mamori_linkage_parse(&link, optarg); break;
		case 'j': err = parse_positive(&jobs_d, optarg, 64); break;
		case 's': err = parse_positive(&step, optarg, 1); break;
		case 'h': usage(stdout); return MAMORI_EXIT_OK;
		default: usage(stderr); return MAMORI_EXIT_USAGE;
		}
		if (err < 0) {
			fprintf(stderr, "mamori-baseline: %s\n", mamori_error_detail());
			return MAMORI_EXIT_USAGE;
		}
	}
	method m;
	if (method_name && strcmp(method_name, "ssdeep") == 0) {
		m = METHOD_SSDEEP;
	} else if (method_name && strcmp(method_name, "tlsh") == 0) {
		m = METHOD_TLSH;
	} else {
		usage(stderr);
		return MAMORI_EXIT_USAGE;
	}
	if (!labels_path || optind == argc) {
		usage(stderr);
		return MAMORI_EXIT_USAGE;
	}
	unsigned jobs = jobs_d < 1 ? 1 : (unsigned)jobs_d;

	mamori_eval_labels *labels = NULL;
	mamori_vec files;
	item *items = NULL;
	size_t n = 0, unlabelled = 0, undigested = 0;
	int64_t *row_item = NULL, *cut = NULL, *assign = NULL;
	float *dist = NULL;
	mamori_dendrogram *dendro = NULL;
	sweep_point *sweep = NULL;
	json_t *root = NULL;
	mamori_vec_init(&files, sizeof(char *), MAX_FILES);

	double t0 = mamori_now();
	if ((err = mamori_eval_labels_load(&labels, labels_path)) < 0)
		goto done;
	for (int a = optind; a < argc; a++)
		if ((err = walk(&files, argv[a], 0)) < 0)
			goto done;
	char **paths = files.data;
	qsort(paths, files.count, sizeof(*paths), cmp_str);

	/* Hash every labelled file once per distinct content. */
	items = calloc(files.count + 1, sizeof(*items));
	row_item = malloc(labels->n * sizeof(*row_item));
	if (!items || !row_item) {
		err = mamori_fail(MAMORI_ENOMEM, "no memory for %zu files", files.count);
		goto done;
	}
	for (size_t r = 0; r < labels->n; r++)
		row_item[r] = -1;
	for (size_t f = 0; f < files.count; f++) {
		uint8_t *buf = NULL;
		size_t len = 0;
		char sha[65];
		if ((err = mamori_file_read(&buf, &len, paths[f], MAMORI_MAX_SAMPLE_SIZE)) < 0)
			goto done;
		mamori_sha256_hex(sha, buf, len);
		int64_t row = mamori_eval_labels_find(labels, sha);
		if (row < 0 || row_item[row] >= 0) {
			unlabelled += row < 0;
			free(buf);
			continue;
		}
		item *it = &items[n];
		memcpy(it->sha256, sha, sizeof(sha));
		if (m == METHOD_SSDEEP) {
			it->ssdeep = malloc(FUZZY_MAX_RESULT);
			if (!it->ssdeep) {
				free(buf);
				err = mamori_fail(MAMORI_ENOMEM, "no memory for a digest");
				goto done;
			}
			if (len > UINT32_MAX || fuzzy_hash_buf(buf, (uint32_t)len, it->ssdeep) != 0) {
				free(it->ssdeep);
				it->ssdeep = NULL;
			}
		} else {
			mamori_tlsh_new(&it->tlsh, buf, len);
		}
		undigested += !it->ssdeep && !it->tlsh;
		free(buf);
		row_item[row] = (int64_t)n++;
	}
	/* A labels row repeating earlier bytes shares the item of the first row
	 * with them (the one _find returns). */
	for (size_t r = 0; r < labels->n; r++)
		row_item[r] = row_item[mamori_eval_labels_find(labels, labels->sha256[r])];
	if (unlabelled > 0)
		fprintf(stderr, "mamori-baseline: %zu files are not in %s and were ignored\n", unlabelled,
			labels_path);
	double t_hash = mamori_now();

	size_t pairs = n * (n - (n > 0)) / 2;
	dist = n > 1 ? malloc(pairs * sizeof(*dist)) : NULL;
	cut = malloc((n + 1) * sizeof(*cut));
	assign = malloc(labels->n * sizeof(*assign));
	/* Cuts at 0, step, ... below 1: a cut at 1 would join samples that share
	 * nothing by the hash's measure, which is no clustering at all. */
	size_t n_steps = (size_t)ceil(1.0 / step - 1e-9);
	sweep = calloc(n_steps, sizeof(*sweep));
	if ((n > 1 && !dist) || !cut || !assign || !sweep) {
		err = mamori_fail(MAMORI_ENOMEM, "no memory for %zu pairs", pairs);
		goto done;
	}
	compute_distances(dist, items, n, m, jobs);
	double t_compare = mamori_now();
	if ((err = mamori_hac(&dendro, dist, n, link)) < 0)
		goto done;
	double t_cluster = mamori_now();

	size_t best = 0;
	for (size_t s = 0; s < n_steps; s++) {
		size_t k;
		sweep[s].threshold = round((double)s * step * 1e6) / 1e6;
		if ((err = mamori_dendrogram_cut(cut, &k, dendro, sweep[s].threshold)) < 0)
			goto done;
		rows_from_cut(assign, labels, row_item, cut);
		if ((err = mamori_eval_score(&sweep[s].family, labels->family, assign, labels->n)) < 0 ||
		    (err = mamori_eval_score(&sweep[s].subfamily, labels->subfamily, assign, labels->n)) < 0)
			goto done;
		if (sweep[s].family.f1 > sweep[best].family.f1)
			best = s;
	}
	double t_sweep = mamori_now();

	if (assign_out) {
		size_t k;
		FILE *f = fopen(assign_out, "w");
		if (!f) {
			err = mamori_fail(MAMORI_EIO, "%s: %s", assign_out, strerror(errno));
			goto done;
		}
		if ((err = mamori_dendrogram_cut(cut, &k, dendro, sweep[best].threshold)) == MAMORI_OK) {
			fputs("sha256,cluster\n", f);
			for (size_t i = 0; i < n; i++)
				fprintf(f, "%s,%lld\n", items[i].sha256,
					(items[i].ssdeep || items[i].tlsh) ? (long long)cut[i] : -1LL);
		}
		if (fclose(f) != 0 && err == MAMORI_OK)
			err = mamori_fail(MAMORI_EIO, "%s: write failed", assign_out);
		if (err < 0)
			goto done;
	}

	const sweep_point *b = &sweep[best];
	double peak_mb = (double)mamori_peak_rss() / (1024.0 * 1024.0);
	if (json) {
		json_t *curve = json_array();
		for (size_t s = 0; s < n_steps; s++)
			json_array_append_new(curve,
					      json_pack("{s:f, s:f, s:f}", "threshold", sweep[s].threshold,
							"family_f1", sweep[s].family.f1, "subfamily_f1",
							sweep[s].subfamily.f1));
		root = json_pack(
			"{s:s, s:s, s:I, s:I, s:I, s:I, s:f, s:o, s:o, s:f, s:f, s:f, s:f, s:f, s:f, s:o}",
			"method", method_name, "linkage", mamori_linkage_name(link), "samples",
			(json_int_t)labels->n, "distinct", (json_int_t)n, "undigested",
			(json_int_t)undigested, "unlabelled_files", (json_int_t)unlabelled, "threshold",
			b->threshold, "family", scores_json(&b->family), "subfamily",
			scores_json(&b->subfamily), "hash_s", t_hash - t0, "compare_s", t_compare - t_hash,
			"cluster_s", t_cluster - t_compare, "sweep_s", t_sweep - t_cluster, "wall_s",
			t_sweep - t0, "peak_rss_mb", peak_mb, "sweep", curve);
		if (!root) {
			err = mamori_fail(MAMORI_ENOMEM, "no memory for the report");
			goto done;
		}
		err = mamori_json_write(stdout, root, true);
	} else {
		printf("%s: %zu samples (%zu distinct, %zu undigested), best cut at distance %.2f\n",
		       method_name, labels->n, n, undigested, b->threshold);
		printf("  family     precision %.4f  recall %.4f  F1 %.4f  ARI %.4f  clusters %zu\n",
		       b->family.precision, b->family.recall, b->family.f1, b->family.ari,
		       b->family.n_clusters);
		printf("  subfamily  precision %.4f  recall %.4f  F1 %.4f  ARI %.4f\n",
		       b->subfamily.precision, b->subfamily.recall, b->subfamily.f1, b->subfamily.ari);
		printf("  time: hash %.2fs, compare %.2fs, cluster %.2fs; peak RSS %.0f MB\n", t_hash - t0,
		       t_compare - t_hash, t_cluster - t_compare, peak_mb);
	}
done:
	if (err < 0)
		fprintf(stderr, "mamori-baseline: %s: %s\n", mamori_strerror(err), mamori_error_detail());
	json_decref(root);
	for (size_t i = 0; items && i < n; i++) {
		free(items[i].ssdeep);
		mamori_tlsh_free(items[i].tlsh);
	}
	free(items);
	for (size_t f = 0; f < files.count; f++)
		free(((char **)files.data)[f]);
	mamori_vec_free(&files);
	mamori_dendrogram_free(dendro);
	free(sweep);
	free(dist);
	free(cut);
	free(assign);
	free(row_item);
	mamori_eval_labels_free(labels);
	return err < 0 ? mamori_exit_code(err) : MAMORI_EXIT_OK;
}
