/*
 * Tests of the benchmark scores and input parsers (bench/eval/eval.c).
 *
 * Every expected score is worked out by hand in the comment next to it; the
 * two ARI examples are the ones in scikit-learn's documentation of
 * adjusted_rand_score, which follows Hubert and Arabie (1985).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "eval.h"
#include "mamori/base.h"

#define EPS  1e-9
#define N(a) (sizeof(a) / sizeof((a)[0]))

static void score(mamori_eval_scores *s, const int64_t *truth, const int64_t *pred, size_t n)
{
	assert_int_equal(mamori_eval_score(s, truth, pred, n), MAMORI_OK);
	assert_int_equal(s->n, n);
}

static void test_perfect(void **state)
{
	(void)state;
	/* Cluster ids need not match class ids, only the partition. */
	const int64_t truth[] = { 0, 0, 1, 1, 2 };
	const int64_t pred[] = { 5, 5, 3, 3, 9 };
	mamori_eval_scores s;
	score(&s, truth, pred, N(truth));
	assert_float_equal(s.precision, 1.0, EPS);
	assert_float_equal(s.recall, 1.0, EPS);
	assert_float_equal(s.f1, 1.0, EPS);
	assert_float_equal(s.ari, 1.0, EPS);
	assert_int_equal(s.n_clusters, 3);
}

static void test_all_in_one(void **state)
{
	(void)state;
	/* Classes of 3, 2, 1 in one cluster: precision 3/6, recall (3+2+1)/6 = 1,
	 * F1 = 2/3. Pairs: cells 3+1 = 4, cluster 15, classes 4; expected
	 * 15*4/15 = 4, max (15+4)/2 = 9.5, ARI = (4-4)/5.5 = 0. */
	const int64_t truth[] = { 0, 0, 0, 1, 1, 2 };
	const int64_t pred[] = { 7, 7, 7, 7, 7, 7 };
	mamori_eval_scores s;
	score(&s, truth, pred, N(truth));
	assert_float_equal(s.precision, 0.5, EPS);
	assert_float_equal(s.recall, 1.0, EPS);
	assert_float_equal(s.f1, 2.0 / 3.0, EPS);
	assert_float_equal(s.ari, 0.0, EPS);
	assert_int_equal(s.n_clusters, 1);
}

static void test_all_singletons(void **state)
{
	(void)state;
	/* Failed samples (-1) are singletons: precision 1, recall 3/6 (one per
	 * class), F1 = 2/3; no pairs anywhere but in the classes: expected 0,
	 * max 4/2 = 2, ARI = 0. */
	const int64_t truth[] = { 0, 0, 0, 1, 1, 2 };
	const int64_t pred[] = { -1, -1, -1, -1, -1, -1 };
	mamori_eval_scores s;
	score(&s, truth, pred, N(truth));
	assert_float_equal(s.precision, 1.0, EPS);
	assert_float_equal(s.recall, 0.5, EPS);
	assert_float_equal(s.f1, 2.0 / 3.0, EPS);
	assert_float_equal(s.ari, 0.0, EPS);
	assert_int_equal(s.n_clusters, 6);
}

static void test_ari_textbook(void **state)
{
	(void)state;
	/* scikit-learn: ARI([0,0,0,1,1,1], [0,0,1,1,2,2]) = 0.2424...: cells
	 * 2,1,1,2 -> 2 pairs; classes 3+3 = 6; clusters 1+1+1 = 3; expected
	 * 6*3/15 = 1.2; max 4.5; (2-1.2)/(4.5-1.2) = 8/33. Precision
	 * (2+1+2)/6, recall (2+2)/6. */
	const int64_t truth[] = { 0, 0, 0, 1, 1, 1 };
	const int64_t pred[] = { 0, 0, 1, 1, 2, 2 };
	mamori_eval_scores s;
	score(&s, truth, pred, N(truth));
	assert_float_equal(s.ari, 8.0 / 33.0, EPS);
	assert_float_equal(s.precision, 5.0 / 6.0, EPS);
	assert_float_equal(s.recall, 4.0 / 6.0, EPS);
	assert_float_equal(s.f1, 2 * (5.0 / 6) * (4.0 / 6) / (5.0 / 6 + 4.0 / 6), EPS);

	/* scikit-learn: ARI([0,0,1,1], [0,0,1,2]) = 0.5714...: cells 1 pair,
	 * classes 2, clusters 1; expected 2/6; max 1.5; (1-1/3)/(1.5-1/3) = 4/7. */
	const int64_t truth2[] = { 0, 0, 1, 1 };
	const int64_t pred2[] = { 0, 0, 1, 2 };
	score(&s, truth2, pred2, N(truth2));
	assert_float_equal(s.ari, 4.0 / 7.0, EPS);
	assert_float_equal(s.precision, 1.0, EPS);
	assert_float_equal(s.recall, 3.0 / 4.0, EPS);
}

static void test_failed_cost_recall(void **state)
{
	(void)state;
	/* One of three family members failed: precision (2+1+1)/4 = 1, recall
	 * (2+1)/4. */
	const int64_t truth[] = { 0, 0, 0, 1 };
	const int64_t pred[] = { 1, 1, -1, 0 };
	mamori_eval_scores s;
	score(&s, truth, pred, N(truth));
	assert_float_equal(s.precision, 1.0, EPS);
	assert_float_equal(s.recall, 3.0 / 4.0, EPS);
	assert_int_equal(s.n_clusters, 3);
	/* A failed sample's singleton id must not collide with a real cluster:
	 * a real cluster numbered just past the others stays distinct. */
	const int64_t pred2[] = { -1, 0, 0, 1 };
	const int64_t truth2[] = { 1, 0, 0, 1 };
	score(&s, truth2, pred2, N(truth2));
	assert_int_equal(s.n_clusters, 3);
	assert_float_equal(s.precision, 1.0, EPS);
}

static void test_score_rejects(void **state)
{
	(void)state;
	const int64_t truth[] = { 0, -1 };
	const int64_t pred[] = { 0, 0 };
	mamori_eval_scores s;
	assert_int_equal(mamori_eval_score(&s, truth, pred, 0), MAMORI_EINVAL);
	assert_int_equal(mamori_eval_score(&s, truth, pred, 2), MAMORI_EINVAL);
}

#define SHA_A  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define SHA_B  "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define SHA_C  "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
#define SHA_D  "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"
#define SHA_E  "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"
#define HEADER "sha256,family,subfamily,program,arch,opt,stripped"

static const char GOOD_LABELS[] = HEADER
	"\r\n" SHA_C ",lua,5.1,lua,i686,O2,1\r\n" SHA_A ",lua,5.4,luac,x86_64,O0,0\r\n" SHA_B
	",zlib,5.1,minigzip,i686,Os,1\n"
	"DDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDD,lua,5.1,lua,i686,O1,0\n" SHA_A
	",lua,5.4,luac,x86_64,O0,0\n";

static mamori_eval_labels *good_labels(void)
{
	mamori_eval_labels *l = NULL;
	assert_int_equal(mamori_eval_labels_parse(&l, GOOD_LABELS, strlen(GOOD_LABELS), "t"), MAMORI_OK);
	assert_non_null(l);
	return l;
}

static void test_labels_parse(void **state)
{
	(void)state;
	mamori_eval_labels *l = good_labels();
	assert_int_equal(l->n, 5);
	assert_int_equal(l->n_families, 2);
	/* lua/5.1, lua/5.4, zlib/5.1: the subfamily is named within its family. */
	assert_int_equal(l->n_subfamilies, 3);
	assert_int_equal(l->family[0], l->family[1]);
	assert_int_not_equal(l->family[0], l->family[2]);
	assert_int_equal(l->subfamily[0], l->subfamily[3]);
	assert_int_not_equal(l->subfamily[0], l->subfamily[2]);
	assert_string_equal(l->family_names[l->family[2]], "zlib");
	/* Upper-case hex is folded. */
	assert_string_equal(l->sha256[3], SHA_D);
	assert_int_equal(mamori_eval_labels_find(l, SHA_B), 2);
	/* A repeated digest finds its first row. */
	assert_int_equal(mamori_eval_labels_find(l, SHA_A), 1);
	assert_int_equal(mamori_eval_labels_find(l, SHA_E), -1);
	assert_ptr_equal(mamori_eval_labels_truth(l, MAMORI_EVAL_SUBFAMILY), l->subfamily);
	mamori_eval_labels_free(l);
	mamori_eval_labels_free(NULL);
}

static void expect_labels_error(const char *text, int want)
{
	mamori_eval_labels *l = (mamori_eval_labels *)1;
	assert_int_equal(mamori_eval_labels_parse(&l, text, strlen(text), "bad.csv"), want);
	assert_null(l);
	assert_true(strstr(mamori_error_detail(), "bad.csv") != NULL);
}

static void test_labels_reject(void **state)
{
	(void)state;
	expect_labels_error("sha256,family\n" SHA_A ",lua\n", MAMORI_EFORMAT);
	expect_labels_error(HEADER "\n", MAMORI_EFORMAT);
	expect_labels_error("", MAMORI_EFORMAT);
	expect_labels_error(HEADER "\n" SHA_A ",lua,5.1,lua,i686,O2\n", MAMORI_EFORMAT);
	expect_labels_error(HEADER "\n" SHA_A ",lua,5.1,lua,i686,O2,1,extra\n", MAMORI_EFORMAT);
	expect_labels_error(HEADER "\n" SHA_A ",\"lua\",5.1,lua,i686,O2,1\n", MAMORI_EFORMAT);
	expect_labels_error(HEADER "\nabc,lua,5.1,lua,i686,O2,1\n", MAMORI_EFORMAT);
	expect_labels_error(HEADER "\n" SHA_A ",,5.1,lua,i686,O2,1\n", MAMORI_EFORMAT);
	expect_labels_error(HEADER "\n" SHA_A ",lua,5.1,lua,i686,O2,1\n\n" SHA_B ",lua,5.1,lua,i686,O2,1\n",
			    MAMORI_EFORMAT);
	/* A field over the length limit. */
	char big[1024];
	char name[300];
	memset(name, 'x', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	snprintf(big, sizeof(big), HEADER "\n" SHA_A ",%s,5.1,lua,i686,O2,1\n", name);
	expect_labels_error(big, MAMORI_ELIMIT);
	/* An embedded NUL is not silently a line end. */
	static const char nul[] = HEADER "\n" SHA_A ",lu\0a,5.1,lua,i686,O2,1\n";
	mamori_eval_labels *l = NULL;
	assert_int_equal(mamori_eval_labels_parse(&l, nul, sizeof(nul) - 1, "nul.csv"), MAMORI_EFORMAT);
}

static void test_assign_csv(void **state)
{
	(void)state;
	mamori_eval_labels *l = good_labels();
	int64_t a[5];
	size_t missing = 99, failed = 99;
	/* C and D clustered together, A failed (both its rows), B absent. */
	static const char csv[] = "sha256,cluster\n" SHA_C ",3\n" SHA_D ",3\n" SHA_A ",\n";
	assert_int_equal(mamori_eval_assign_parse_csv(a, &missing, &failed, l, csv, strlen(csv), "a.csv"),
			 MAMORI_OK);
	assert_int_equal(a[0], 3);
	assert_int_equal(a[3], 3);
	assert_int_equal(a[1], -1);
	assert_int_equal(a[4], -1);
	assert_int_equal(a[2], -1);
	assert_int_equal(missing, 1);
	assert_int_equal(failed, 2);

	static const char bad[] = "sha256,cluster\n" SHA_C ",x3\n";
	assert_int_equal(mamori_eval_assign_parse_csv(a, &missing, &failed, l, bad, strlen(bad), "a.csv"),
			 MAMORI_EFORMAT);
	static const char neg[] = "sha256,cluster\n" SHA_C ",-2\n";
	assert_int_equal(mamori_eval_assign_parse_csv(a, &missing, &failed, l, neg, strlen(neg), "a.csv"),
			 MAMORI_EFORMAT);
	static const char hdr[] = "sha,cluster\n";
	assert_int_equal(mamori_eval_assign_parse_csv(a, &missing, &failed, l, hdr, strlen(hdr), "a.csv"),
			 MAMORI_EFORMAT);
	mamori_eval_labels_free(l);
}

static char *write_temp(const char *text)
{
	char *path = strdup("/tmp/mamori-eval-XXXXXX");
	assert_non_null(path);
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

static void test_assign_clusters_json(void **state)
{
	(void)state;
	mamori_eval_labels *l = good_labels();
	int64_t a[5];
	size_t missing = 99, failed = 99;
	char *path = write_temp(
		"{\"threshold\": 0.7, \"linkage\": \"average\", \"samples\": ["
		"{\"path\": \"x\", \"sha256\": \"" SHA_C "\", \"cluster\": 0, \"status\": \"ok\"},"
		"{\"path\": \"y\", \"sha256\": \"" SHA_B "\", \"cluster\": 1, \"status\": \"ok\"},"
		"{\"path\": \"z\", \"sha256\": \"" SHA_A "\", \"cluster\": null, \"status\": \"error\","
		" \"error\": \"truncated\"}], \"clusters\": []}");
	assert_int_equal(mamori_eval_assign_from_clusters_json(a, &missing, &failed, l, path), MAMORI_OK);
	assert_int_equal(a[0], 0);
	assert_int_equal(a[2], 1);
	assert_int_equal(a[1], -1);
	assert_int_equal(a[3], -1);
	assert_int_equal(missing, 1);
	assert_int_equal(failed, 2);
	/* lua rows: C in cluster 0 alone, D missing, A (twice) failed -> all
	 * singletons except C: precision 1, recall (1 + 1) / 5 at family level. */
	mamori_eval_scores s;
	assert_int_equal(mamori_eval_score(&s, l->family, a, l->n), MAMORI_OK);
	assert_float_equal(s.recall, 2.0 / 5.0, EPS);
	assert_float_equal(s.precision, 1.0, EPS);
	unlink(path);
	free(path);

	path = write_temp("{\"samples\": [{\"sha256\": \"" SHA_C "\", \"cluster\": \"0\"}]}");
	assert_int_equal(mamori_eval_assign_from_clusters_json(a, &missing, &failed, l, path),
			 MAMORI_EFORMAT);
	unlink(path);
	free(path);
	path = write_temp("{\"samples\": [{\"sha256\": \"" SHA_C "\", \"cluster\": 0}, ");
	assert_int_equal(mamori_eval_assign_from_clusters_json(a, &missing, &failed, l, path),
			 MAMORI_EFORMAT);
	unlink(path);
	free(path);
	mamori_eval_labels_free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_perfect),
		cmocka_unit_test(test_all_in_one),
		cmocka_unit_test(test_all_singletons),
		cmocka_unit_test(test_ari_textbook),
		cmocka_unit_test(test_failed_cost_recall),
		cmocka_unit_test(test_score_rejects),
		cmocka_unit_test(test_labels_parse),
		cmocka_unit_test(test_labels_reject),
		cmocka_unit_test(test_assign_csv),
		cmocka_unit_test(test_assign_clusters_json),
	};
	return cmocka_run_group_tests_name("bench-eval", tests, NULL, NULL);
}
