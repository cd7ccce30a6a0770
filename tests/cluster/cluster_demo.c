/*
 * A synthetic collection shaped like the study's: three big families (about
 * 50%, 25% and 20%), a few small ones and some singletons, each family made
 * of versions (subfamilies). It times mamori_hac() and writes PREFIX.svg and
 * PREFIX.nwk so the drawing can be looked at. A development aid, not a test.
 *
 * usage: cluster_demo N SEED OUT_PREFIX [CUT [uniform]]
 * ("uniform" replaces the families by random distances: the slow case.)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mamori/base.h"
#include "mamori/cluster.h"

static uint64_t rng = 1;

static double unit(void)
{
	rng = rng * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
	return (double)(rng >> 11) / 9007199254740992.0;
}

int main(int argc, char **argv)
{
	static const char *const fam_names[] = { "lua",	   "zlib",  "sqlite3", "bzip2", "lz4",
						 "xxhash", "expat", "cjson",   "lzo2",	"misc" };
	static const double shares[] = { 0.50, 0.25, 0.20, 0.012, 0.008, 0.006, 0.005, 0.004, 0.003 };
	size_t n, nfam = sizeof(shares) / sizeof(shares[0]);
	double cut = 0.7;
	char *end;

	if (argc < 4) {
		fprintf(stderr, "usage: %s N SEED OUT_PREFIX [CUT]\n", argv[0]);
		return 2;
	}
	n = strtoull(argv[1], &end, 10);
	if (*end || n < 2 || n > 30000)
		return 2;
	rng = strtoull(argv[2], &end, 10);
	if (argc > 4)
		cut = strtod(argv[4], &end);

	int *fam = malloc(n * sizeof(*fam));
	double *x = malloc(n * sizeof(*x)), *y = malloc(n * sizeof(*y));
	char **names = calloc(n, sizeof(char *));
	float *d = malloc(n * (n - 1) / 2 * sizeof(*d));
	if (!fam || !x || !y || !names || !d)
		return 1;
	size_t i = 0;
	for (size_t f = 0; f < nfam && i < n; f++) {
		size_t count = (size_t)(shares[f] * (double)n + 0.5);
		size_t subs = f < 3 ? 4 + f * 2 : 1 + (size_t)(unit() * 2);
		double sx[16], sy[16];
		for (size_t s = 0; s < subs; s++) {
			sx[s] = unit();
			sy[s] = unit();
		}
		for (size_t c = 0; c < count && i < n; c++, i++) {
			size_t s = (size_t)(unit() * (double)subs);
			fam[i] = (int)f;
			x[i] = sx[s] + (unit() - 0.5) * 0.15;
			y[i] = sy[s] + (unit() - 0.5) * 0.15;
			names[i] = malloc(64);
			snprintf(names[i], 64, "%s-v%zu-%s-%08llx", fam_names[f], s + 1,
				 unit() < 0.5 ? "x86" : "x64", (unsigned long long)(rng >> 32));
		}
	}
	for (; i < n; i++) { /* singletons */
		fam[i] = -(int)i - 1;
		x[i] = y[i] = 0;
		names[i] = malloc(64);
		snprintf(names[i], 64, "unknown-%08llx", (unsigned long long)(rng >> 32));
		unit();
	}
	/* Shuffle so that families are not contiguous in the input. */
	for (size_t a = n; a > 1; a--) {
		size_t b = (size_t)(unit() * (double)a);
		int tf = fam[a - 1];
		double tx = x[a - 1], ty = y[a - 1];
		char *tn = names[a - 1];
		fam[a - 1] = fam[b], x[a - 1] = x[b], y[a - 1] = y[b], names[a - 1] = names[b];
		fam[b] = tf, x[b] = tx, y[b] = ty, names[b] = tn;
	}
	size_t k = 0;
	for (size_t a = 0; a < n; a++)
		for (size_t b = a + 1; b < n; b++) {
			double v;
			if (argc > 5 && strcmp(argv[5], "uniform") == 0)
				v = unit();
			else if (fam[a] == fam[b])
				v = fmin(0.6, 0.02 + 0.45 * hypot(x[a] - x[b], y[a] - y[b]) + 0.02 * unit());
			else
				v = 0.82 + 0.16 * unit();
			d[k++] = (float)v;
		}

	mamori_dendrogram *dg = NULL;
	double t0 = mamori_now();
	int err = mamori_hac(&dg, d, n, MAMORI_LINK_AVERAGE);
	double t1 = mamori_now();
	if (err) {
		fprintf(stderr, "hac: %s: %s\n", mamori_strerror(err), mamori_error_detail());
		return 1;
	}
	int64_t *labels = malloc(n * sizeof(*labels));
	size_t nk = 0;
	char path[512];
	char *nw = NULL;
	mamori_dendrogram_cut(labels, &nk, dg, cut);
	double t2 = mamori_now();
	snprintf(path, sizeof(path), "%s.svg", argv[3]);
	FILE *f = fopen(path, "w");
	char title[128];
	snprintf(title, sizeof(title), "Synthetic collection: %zu samples, average linkage", n);
	mamori_svg_opts o = { .title = title, .cut_height = cut, .labels = labels };
	if (!f || mamori_dendrogram_svg(f, dg, (const char *const *)names, &o) != MAMORI_OK)
		return 1;
	fclose(f);
	double t3 = mamori_now();
	if (mamori_dendrogram_newick(&nw, dg, (const char *const *)names) != MAMORI_OK)
		return 1;
	snprintf(path, sizeof(path), "%s.nwk", argv[3]);
	if (mamori_file_write_atomic(path, nw, strlen(nw)) != MAMORI_OK)
		return 1;
	double t4 = mamori_now();
	printf("n=%zu hac=%.2fs cut=%.3fs svg=%.3fs newick=%.3fs clusters=%zu peak_rss=%.0fMB\n", n, t1 - t0,
	       t2 - t1, t3 - t2, t4 - t3, nk, (double)mamori_peak_rss() / 1e6);
	free(nw);
	mamori_dendrogram_free(dg);
	for (size_t a = 0; a < n; a++)
		free(names[a]);
	free(names);
	free(labels);
	free(fam);
	free(x);
	free(y);
	free(d);
	return 0;
}
