/*
 * mamori-score: score one clustering against the corpus labels.
 *
 *   mamori-score --labels labels.csv (--clusters clusters.json | --assign FILE.csv)
 *                [--level family|subfamily] [--json]
 *
 * Prints precision, recall, F1 (Bayer et al. / Malheur) and the adjusted Rand
 * index at family and subfamily level, or only the level asked for. Labelled
 * samples missing from the clustering and samples that failed count as
 * singleton clusters. Exit codes are those of `mamori` (0 ok, 2 usage, 3 bad
 * input, 1 other failure).
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "mamori/base.h"

static void usage(FILE *f)
{
	fputs("usage: mamori-score --labels labels.csv (--clusters clusters.json | --assign FILE.csv)\n"
	      "                    [--level family|subfamily] [--json]\n",
	      f);
}

static json_t *scores_json(const mamori_eval_scores *s)
{
	return json_pack("{s:f, s:f, s:f, s:f, s:I}", "precision", s->precision, "recall", s->recall, "f1",
			 s->f1, "ari", s->ari, "clusters", (json_int_t)s->n_clusters);
}

int main(int argc, char **argv)
{
	const char *labels_path = NULL, *clusters_path = NULL, *assign_path = NULL;
	bool json = false, levels[2] = { true, true };
	static const struct option opts[] = {
		{ "labels", required_argument, NULL, 'l' },
		{ "clusters", required_argument, NULL, 'c' },
		{ "assign", required_argument, NULL, 'a' },
		{ "level", required_argument, NULL, 'L' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'l': labels_path = optarg; break;
		case 'c': clusters_path = optarg; break;
		case 'a': assign_path = optarg; break;
		case 'j': json = true; break;
		case 'L':
			if (strcmp(optarg, "family") == 0) {
				levels[MAMORI_EVAL_SUBFAMILY] = false;
			} else if (strcmp(optarg, "subfamily") == 0) {
				levels[MAMORI_EVAL_FAMILY] = false;
			} else {
				fprintf(stderr, "mamori-score: --level must be family or subfamily\n");
				return MAMORI_EXIT_USAGE;
			}
			break;
		case 'h': usage(stdout); return MAMORI_EXIT_OK;
		default: usage(stderr); return MAMORI_EXIT_USAGE;
		}
	}
	if (optind != argc || !labels_path || (!clusters_path == !assign_path)) {
		usage(stderr);
		return MAMORI_EXIT_USAGE;
	}

	int err = MAMORI_OK;
	mamori_eval_labels *labels = NULL;
	int64_t *assign = NULL;
	json_t *root = NULL;
	size_t missing = 0, failed = 0;
	if ((err = mamori_eval_labels_load(&labels, labels_path)) < 0)
		goto done;
	assign = malloc(labels->n * sizeof(*assign));
	if (!assign) {
		err = mamori_fail(MAMORI_ENOMEM, "no memory for %zu samples", labels->n);
		goto done;
	}
	if (clusters_path)
		err = mamori_eval_assign_from_clusters_json(assign, &missing, &failed, labels, clusters_path);
	else
		err = mamori_eval_assign_from_csv(assign, &missing, &failed, labels, assign_path);
	if (err < 0)
		goto done;
	if (missing > 0)
		fprintf(stderr,
			"mamori-score: %zu labelled samples are not in the clustering (scored as "
			"singletons)\n",
			missing);

	root = json_pack("{s:I, s:I, s:I}", "samples", (json_int_t)labels->n, "missing", (json_int_t)missing,
			 "failed", (json_int_t)failed);
	static const char *const level_names[2] = { "family", "subfamily" };
	for (int lv = 0; lv < 2; lv++) {
		if (!levels[lv])
			continue;
		mamori_eval_scores s;
		if ((err = mamori_eval_score(&s, mamori_eval_labels_truth(labels, (mamori_eval_level)lv),
					     assign, labels->n)) < 0)
			goto done;
		if (json) {
			json_object_set_new(root, level_names[lv], scores_json(&s));
		} else {
			printf("%-10s precision %.4f  recall %.4f  F1 %.4f  ARI %.4f  clusters %zu  (%zu "
			       "samples, "
			       "%zu failed, %zu missing)\n",
			       level_names[lv], s.precision, s.recall, s.f1, s.ari, s.n_clusters, s.n, failed,
			       missing);
		}
	}
	if (json)
		err = mamori_json_write(stdout, root, true);
done:
	if (err < 0)
		fprintf(stderr, "mamori-score: %s: %s\n", mamori_strerror(err), mamori_error_detail());
	json_decref(root);
	free(assign);
	mamori_eval_labels_free(labels);
	return err < 0 ? mamori_exit_code(err) : MAMORI_EXIT_OK;
}
