/*
 * mamori-train-disasm: learn the parameters of the probabilistic
 * disassembler (src/disasm/prob.c) from labelled binaries and write them as
 * data/disasm-model/model.txt, which the build embeds.
 *
 *   mamori-train-disasm [--version V] MANIFEST.csv OUT.txt
 *   mamori-train-disasm --self-label [--version V] OUT.txt FILE...
 *   mamori-train-disasm --eval MANIFEST.csv   (scores the embedded model)
 *
 * MANIFEST.csv (corpus/disasm-truth, `make disasm-truth`) has the header
 * `file,truth,...`; paths are relative to the manifest's folder. Each truth
 * file lists instruction-start VAs (hex, one a line); next to it a `.known`
 * file lists `start end` hex ranges whose truth is known (end exclusive).
 * Only bytes in known ranges are used. --self-label is a stand-in for when
 * there is no truth: the traversal listing inside function symbols (ELF
 * sizes, or up to the next symbol) counts as truth; never ship that.
 *
 * Training is deterministic: inputs are sorted, no randomness. Steps: count
 * n-gram tables (smoothed log-likelihood ratios of start vs not start),
 * fit stage 1 then stage 2 by logistic regression (Newton's method on the
 * known bytes, subsampled by a fixed stride), then choose the best stream's
 * two penalties (fall-through break, data byte) by grid search for the
 * fewest 2 * missed + false starts (relative to each file's starts, summed
 * over files), and score the result.
 * Hints from function symbols are left out during training, since stripped
 * samples have none.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mamori/base.h"
#include "mamori/binfmt.h"
#include "mamori/disasm.h"
#include "prob_internal.h"

#define MAX_FILES     100000
#define MAX_SAMPLES   3000000
#define SMOOTH	      0.2
#define CLAMP_LOGODDS 12.0

typedef struct item {
	char *bin, *truth; /* truth NULL in --self-label mode */
} item;

typedef struct loaded {
	uint8_t *data;
	size_t size;
	mamori_binary *b;
	prob_state st;
	int8_t *label; /* -1 unknown, 0 not a start, 1 start */
} loaded;

static int cmp_item(const void *a, const void *b)
{
	return strcmp(((const item *)a)->bin, ((const item *)b)->bin);
}

static bool va_to_g(const prob_state *st, uint64_t va, size_t *out)
{
	for (size_t r = 0; r < st->b->n_code; r++) {
		const mamori_region *reg = &st->b->code[r];
		if (va >= reg->va && va - reg->va < reg->size) {
			*out = st->region_off[r] + (size_t)(va - reg->va);
			return true;
		}
	}
	return false;
}

static void mark_range(loaded *L, uint64_t s, uint64_t e)
{
	for (size_t r = 0; r < L->b->n_code; r++) {
		const mamori_region *reg = &L->b->code[r];
		uint64_t lo = s > reg->va ? s : reg->va,
			 hi = e < reg->va + reg->size ? e : reg->va + reg->size;
		for (uint64_t va = lo; va < hi; va++)
			L->label[L->st.region_off[r] + (va - reg->va)] = 0;
	}
}

static int read_lines(char **out, const char *path)
{
	uint8_t *d = NULL;
	size_t n = 0;
	int rc = mamori_file_read(&d, &n, path, (size_t)1 << 30);
	if (rc < 0)
		return rc;
	char *s = realloc(d, n + 1);
	if (!s) {
		free(d);
		return MAMORI_ENOMEM;
	}
	s[n] = '\0';
	*out = s;
	return MAMORI_OK;
}

static int label_from_truth(loaded *L, const char *truth)
{
	char known[4096], *text = NULL, *p, *end;
	int rc;

	snprintf(known, sizeof(known), "%s.known", truth);
	FILE *f = fopen(known, "r");
	if (!f) {
		/* also accept FOO.known next to FOO.truth / FOO.txt */
		snprintf(known, sizeof(known), "%s", truth);
		char *dot = strrchr(known, '.'), *slash = strrchr(known, '/');
		if (dot && (!slash || dot > slash))
			snprintf(dot, sizeof(known) - (size_t)(dot - known), ".known");
		f = fopen(known, "r");
	}
	if (!f)
		return mamori_fail(MAMORI_EIO, "train: no .known file for %s", truth);
	fclose(f);
	if ((rc = read_lines(&text, known)) < 0)
		return rc;
	for (p = text; *p;) {
		uint64_t s = strtoull(p, &end, 16);
		if (end == p) {
			p++;
			continue;
		}
		p = end;
		uint64_t e = strtoull(p, &end, 16);
		if (end == p)
			break;
		p = end;
		if (e > s && e - s < ((uint64_t)1 << 32))
			mark_range(L, s, e);
	}
	free(text);
	if ((rc = read_lines(&text, truth)) < 0)
		return rc;
	for (p = text; *p;) {
		uint64_t va = strtoull(p, &end, 16);
		size_t g;
		if (end == p) {
			p++;
			continue;
		}
		p = end;
		if (va_to_g(&L->st, va, &g) && L->label[g] == 0)
			L->label[g] = 1;
	}
	free(text);
	return MAMORI_OK;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Stand-in truth: the traversal inside function symbols. */
static int label_self(loaded *L)
{
	mamori_listing *l = NULL;
	mamori_disasm_opts o = { .keep_padding = true };
	uint64_t *starts = NULL;
	size_t n = 0;
	int rc;

	if ((rc = mamori_disasm(&l, L->b, &o)) < 0)
		return rc;
	starts = malloc((L->b->n_symbols + 1) * sizeof(*starts));
	if (!starts) {
		mamori_listing_free(l);
		return MAMORI_ENOMEM;
	}
	for (size_t i = 0; i < L->b->n_symbols; i++)
		if (L->b->symbols[i].is_func)
			starts[n++] = L->b->symbols[i].va;
	qsort(starts, n, sizeof(*starts), cmp_u64);
	for (size_t i = 0; i < L->b->n_symbols; i++) {
		const mamori_symbol *s = &L->b->symbols[i];
		if (!s->is_func)
			continue;
		uint64_t e = s->va + s->size;
		if (!s->size) {
			e = s->va;
			for (size_t k = 0; k < n; k++)
				if (starts[k] > s->va) {
					e = starts[k];
					break;
				}
		}
		if (e > s->va && e - s->va < (1u << 20))
			mark_range(L, s->va, e);
	}
	for (size_t i = 0; i < l->count; i++) {
		size_t g;
		if (va_to_g(&L->st, l->insns[i].va, &g) && L->label[g] == 0)
			L->label[g] = 1;
	}
	free(starts);
	mamori_listing_free(l);
	return MAMORI_OK;
}

static void unload(loaded *L)
{
	prob_state_free(&L->st);
	mamori_binary_free(L->b);
	free(L->data);
	free(L->label);
	memset(L, 0, sizeof(*L));
}

static int load(loaded *L, const item *it)
{
	int rc;
	memset(L, 0, sizeof(*L));
	if ((rc = mamori_file_read(&L->data, &L->size, it->bin, MAMORI_MAX_SAMPLE_SIZE)) < 0 ||
	    (rc = mamori_binary_parse(&L->b, L->data, L->size, NULL)) < 0 ||
	    (rc = prob_superset(&L->st, L->b, false, NULL)) < 0)
		return rc;
	if (!(L->label = malloc(L->st.n ? L->st.n : 1)))
		return MAMORI_ENOMEM;
	memset(L->label, -1, L->st.n ? L->st.n : 1);
	return it->truth ? label_from_truth(L, it->truth) : label_self(L);
}

/* ------------------------------------------------------------ regression */

static int solve(double *a, double *bv, int n) /* a: n*n, in place; result in bv */
{
	for (int c = 0; c < n; c++) {
		int piv = c;
		for (int r = c + 1; r < n; r++)
			if (fabs(a[r * n + c]) > fabs(a[piv * n + c]))
				piv = r;
		if (fabs(a[piv * n + c]) < 1e-12)
			return -1;
		for (int k = 0; k < n; k++) {
			double t = a[c * n + k];
			a[c * n + k] = a[piv * n + k];
			a[piv * n + k] = t;
		}
		double t = bv[c];
		bv[c] = bv[piv];
		bv[piv] = t;
		for (int r = 0; r < n; r++) {
			if (r == c)
				continue;
			double f = a[r * n + c] / a[c * n + c];
			for (int k = 0; k < n; k++)
				a[r * n + k] -= f * a[c * n + k];
			bv[r] -= f * bv[c];
		}
	}
	for (int c = 0; c < n; c++)
		bv[c] /= a[c * n + c];
	return 0;
}

/* Logistic regression by Newton's method with a small ridge. */
static void fit_logistic(float *w, int nw, const float *x, const int8_t *y, size_t n)
{
	double wd[8] = { 0 };
	for (int it = 0; it < 25; it++) {
		double H[64] = { 0 }, gr[8] = { 0 };
		for (size_t i = 0; i < n; i++) {
			const float *xi = x + i * (size_t)nw;
			double z = 0;
			for (int k = 0; k < nw; k++)
				z += wd[k] * xi[k];
			double p = 1.0 / (1.0 + exp(-z)), v = p * (1 - p);
			for (int k = 0; k < nw; k++) {
				gr[k] += (y[i] - p) * xi[k];
				for (int j = 0; j < nw; j++)
					H[k * nw + j] += v * xi[k] * xi[j];
			}
		}
		for (int k = 0; k < nw; k++) {
			H[k * nw + k] += 1e-3 * (double)n / 1000.0 + 1e-6;
			gr[k] -= (1e-3 * (double)n / 1000.0) * wd[k];
		}
		if (solve(H, gr, nw) < 0)
			break;
		double step = 0;
		for (int k = 0; k < nw; k++) {
			wd[k] += gr[k];
			step += fabs(gr[k]);
		}
		if (step < 1e-6)
			break;
	}
	for (int k = 0; k < nw; k++)
		w[k] = (float)wd[k];
}

/* Precision and recall of instruction starts of the best stream over the
 * known bytes of `items`, per file and in total, on stderr. */
static double score_set(const prob_model *mp, const item *items, size_t n_items, bool verbose)
{
	prob_model m = *mp;
	double tp_ = 0, fp = 0, fn = 0, cost = 0;
	for (size_t i = 0; i < n_items; i++) {
		loaded L;
		if (load(&L, &items[i]) < 0) {
			unload(&L);
			continue;
		}
		prob_stage1(&L.st, &m, NULL);
		prob_hits(&L.st);
		prob_best_stream(&L.st, &m);
		uint8_t *chosen = calloc(L.st.n ? L.st.n : 1, 1);
		if (!chosen)
			return -1;
		for (size_t r = 0; r < L.b->n_code; r++) {
			prob_walk w;
			size_t g;
			prob_walk_init(&w, &L.st, r);
			while (prob_walk_next(&w, &L.st, &g))
				chosen[g] = 1;
		}
		double ftp = 0, ffp = 0, ffn = 0;
		for (size_t g = 0; g < L.st.n; g++) {
			if (L.label[g] < 0)
				continue;
			ftp += chosen[g] && L.label[g];
			ffp += chosen[g] && !L.label[g];
			ffn += !chosen[g] && L.label[g];
		}
		tp_ += ftp, fp += ffp, fn += ffn;
		/* Per file, so that the small data-in-code programs count as
		 * much as the large plain ones; a missed start costs more
		 * than a false one, recall being the harder target. */
		cost += (4 * ffn + ffp) / (ftp + ffn + 1);
		free(chosen);
		unload(&L);
		if (verbose)
			fprintf(stderr, "eval: %-60s precision %.5f recall %.5f (tp %.0f fp %.0f fn %.0f)\n",
				items[i].bin, ftp / (ftp + ffp + 1e-9), ftp / (ftp + ffn + 1e-9), ftp, ffp,
				ffn);
	}
	if (verbose)
		fprintf(stderr, "score: precision %.5f recall %.5f (break penalty %.2f, data penalty %.2f)\n",
			tp_ / (tp_ + fp + 1e-9), tp_ / (tp_ + fn + 1e-9), (double)m.break_penalty,
			(double)m.data_penalty);
	return cost;
}

/* ------------------------------------------------------------- main */

static int parse_manifest(item **out, size_t *out_n, const char *path)
{
	char *text = NULL, dir[4096];
	item *items = NULL;
	size_t n = 0;
	int rc;

	if ((rc = read_lines(&text, path)) < 0)
		return rc;
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = '\0';
	else
		snprintf(dir, sizeof(dir), ".");
	if (!(items = calloc(MAX_FILES, sizeof(*items)))) {
		free(text);
		return MAMORI_ENOMEM;
	}
	char *line = text, *next;
	bool first = true;
	for (; line && *line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		if (first) {
			first = false;
			if (!strncmp(line, "file,", 5))
				continue;
		}
		char *c1 = strchr(line, ',');
		if (!c1 || n >= MAX_FILES)
			continue;
		*c1 = '\0';
		char *c2 = strchr(c1 + 1, ',');
		if (c2)
			*c2 = '\0';
		size_t lb = strlen(dir) + strlen(line) + 2, lt = strlen(dir) + strlen(c1 + 1) + 2;
		items[n].bin = malloc(lb);
		items[n].truth = malloc(lt);
		if (!items[n].bin || !items[n].truth)
			return MAMORI_ENOMEM;
		snprintf(items[n].bin, lb, "%s/%s", line[0] == '/' ? "" : dir, line);
		snprintf(items[n].truth, lt, "%s/%s", c1[1] == '/' ? "" : dir, c1 + 1);
		if (line[0] == '/')
			snprintf(items[n].bin, lb, "%s", line);
		if (c1[1] == '/')
			snprintf(items[n].truth, lt, "%s", c1 + 1);
		n++;
	}
	free(text);
	*out = items;
	*out_n = n;
	return MAMORI_OK;
}

static void quantize(int16_t *dst, const double *c1, const double *c0, size_t k, double n1, double n0)
{
	for (size_t i = 0; i < k; i++) {
		double lo = log((c1[i] + SMOOTH) / (n1 + SMOOTH * (double)k)) -
			    log((c0[i] + SMOOTH) / (n0 + SMOOTH * (double)k));
		if (lo > CLAMP_LOGODDS)
			lo = CLAMP_LOGODDS;
		if (lo < -CLAMP_LOGODDS)
			lo = -CLAMP_LOGODDS;
		dst[i] = (int16_t)lrint(lo * PROB_TABLE_SCALE);
	}
}

static void write_table(FILE *f, const char *name, const int16_t *t, size_t n)
{
	fprintf(f, "%s %zu\n", name, n);
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%d%c", t[i], (i % 32 == 31 || i + 1 == n) ? '\n' : ' ');
}

int main(int argc, char **argv)
{
	const char *version = "prob-v3", *out_path = NULL, *manifest = NULL;
	bool self = false, eval = false;
	item *items = NULL;
	size_t n_items = 0;
	int ai = 1;
	char trainset[512];

	for (; ai < argc && argv[ai][0] == '-'; ai++) {
		if (!strcmp(argv[ai], "--self-label"))
			self = true;
		else if (!strcmp(argv[ai], "--eval"))
			eval = true;
		else if (!strcmp(argv[ai], "--version") && ai + 1 < argc)
			version = argv[++ai];
		else {
			fprintf(stderr, "train: unknown option %s\n", argv[ai]);
			return 2;
		}
	}
	if (self) {
		if (argc - ai < 2) {
			fprintf(stderr, "usage: mamori-train-disasm --self-label OUT.txt FILE...\n");
			return 2;
		}
		out_path = argv[ai++];
		n_items = (size_t)(argc - ai);
		items = calloc(n_items, sizeof(*items));
		if (!items)
			return 1;
		for (size_t i = 0; i < n_items; i++)
			items[i].bin = argv[ai + (int)i];
		snprintf(trainset, sizeof(trainset), "self-labelled stand-in, %zu files", n_items);
	} else if (eval) {
		if (argc - ai != 1 || parse_manifest(&items, &n_items, argv[ai]) < 0) {
			fprintf(stderr, "usage: mamori-train-disasm --eval MANIFEST.csv\n");
			return 2;
		}
		snprintf(trainset, sizeof(trainset), "-");
	} else {
		if (argc - ai != 2) {
			fprintf(stderr, "usage: mamori-train-disasm [--version V] MANIFEST.csv OUT.txt\n");
			return 2;
		}
		manifest = argv[ai];
		out_path = argv[ai + 1];
		if (parse_manifest(&items, &n_items, manifest) < 0) {
			fprintf(stderr, "train: %s: %s\n", manifest, mamori_error_detail());
			return 1;
		}
		snprintf(trainset, sizeof(trainset), "trained on %s, %zu files", manifest, n_items);
	}
	qsort(items, n_items, sizeof(*items), cmp_item);

	if (eval) {
		prob_model m = prob_model_builtin;
		score_set(&m, items, n_items, true);
		return 0;
	}
	/* 1. n-gram counts. */
	double *u1 = calloc(PROB_VOCAB, 8), *u0 = calloc(PROB_VOCAB, 8);
	double *b1 = calloc(PROB_BIGRAM_SIZE, 8), *b0 = calloc(PROB_BIGRAM_SIZE, 8);
	double *p1 = calloc(PROB_BYTEPAIR, 8), *p0 = calloc(PROB_BYTEPAIR, 8);
	int16_t *tu = calloc(PROB_VOCAB, 2), *tb = calloc(PROB_BIGRAM_SIZE, 2),
		*tp = calloc(PROB_BYTEPAIR, 2);
	float *xs = malloc((size_t)MAX_SAMPLES * 8 * sizeof(float));
	int8_t *ys = malloc(MAX_SAMPLES);
	if (!u1 || !u0 || !b1 || !b0 || !p1 || !p0 || !tu || !tb || !tp || !xs || !ys)
		return 1;
	double n1 = 0, n0 = 0, known = 0;
	size_t used = 0;
	for (size_t i = 0; i < n_items; i++) {
		loaded L;
		if (load(&L, &items[i]) < 0) {
			fprintf(stderr, "train: skip %s: %s\n", items[i].bin, mamori_error_detail());
			unload(&L);
			continue;
		}
		used++;
		for (size_t r = 0; r < L.b->n_code; r++)
			for (size_t g = L.st.region_off[r]; g < L.st.region_off[r + 1]; g++) {
				uint32_t k[3];
				if (L.label[g] < 0)
					continue;
				known++;
				if (!(L.st.kind[g] & PK_VALID))
					continue;
				prob_keys(&L.st, r, g, k);
				if (L.label[g]) {
					u1[k[0]]++, b1[k[1]]++, p1[k[2]]++, n1++;
				} else {
					u0[k[0]]++, b0[k[1]]++, p0[k[2]]++, n0++;
				}
			}
		unload(&L);
	}
	fprintf(stderr, "train: %zu files, %.0f known bytes, %.0f starts\n", used, known, n1);
	if (n1 < 1 || n0 < 1) {
		fprintf(stderr, "train: no labelled starts or non-starts\n");
		return 1;
	}
	quantize(tu, u1, u0, PROB_VOCAB, n1, n0);
	quantize(tb, b1, b0, PROB_BIGRAM_SIZE, n1, n0);
	quantize(tp, p1, p0, PROB_BYTEPAIR, n1, n0);
	prob_model m = { .info = "training",
			 .unigram = tu,
			 .bigram = tb,
			 .bytepair = tp,
			 .decay = 0.75f,
			 .break_penalty = 12,
			 .data_penalty = 0,
			 .w1 = { 0, 1, 0.5f, -8, -2 },
			 .w2 = { 0, 1, 1, 3, 0, 0 } };

	/* 2. stage 1 and 3. stage 2, each by logistic regression on a strided sample. */
	size_t stride = (size_t)(n1 + n0) / MAX_SAMPLES + 1;
	for (int stage = 1; stage <= 2; stage++) {
		size_t ns = 0, seen = 0;
		int nw = stage == 1 ? PROB_S1_NW : PROB_S2_NW;
		for (size_t i = 0; i < n_items; i++) {
			loaded L;
			if (load(&L, &items[i]) < 0) {
				unload(&L);
				continue;
			}
			float *x1 = malloc((L.st.n ? L.st.n : 1) * PROB_S1_NW * sizeof(float));
			if (!x1)
				return 1;
			prob_stage1(&L.st, &m, x1);
			if (stage == 2)
				prob_hits(&L.st);
			for (size_t g = 0; g < L.st.n; g++) {
				if (L.label[g] < 0 || !(L.st.kind[g] & PK_VALID) || seen++ % stride ||
				    ns >= MAX_SAMPLES)
					continue;
				float *x = xs + ns * (size_t)nw;
				if (stage == 1) {
					memcpy(x, x1 + g * PROB_S1_NW, PROB_S1_NW * sizeof(float));
				} else {
					prob_stage2_x(&L.st, g, x);
				}
				ys[ns++] = L.label[g];
			}
			free(x1);
			unload(&L);
		}
		fit_logistic(stage == 1 ? m.w1 : m.w2, nw, xs, ys, ns);
		fprintf(stderr, "train: stage %d on %zu samples:", stage, ns);
		for (int k = 0; k < nw; k++)
			fprintf(stderr, " %.4f", (double)(stage == 1 ? m.w1[k] : m.w2[k]));
		fprintf(stderr, "\n");
	}

	/* 4. the two penalties of the best stream, by grid search. */
	static const float brk[] = { 8, 15, 30, 50, 80 },
			   dpen[] = { 0.1f, 0.3f, 0.6f, 1.0f, 1.5f, 2.2f, 3.0f };
	double best = -1;
	prob_model bm = m;
	for (size_t i = 0; i < sizeof(brk) / sizeof(brk[0]); i++)
		for (size_t j = 0; j < sizeof(dpen) / sizeof(dpen[0]); j++) {
			m.break_penalty = brk[i];
			m.data_penalty = dpen[j];
			double cost = score_set(&m, items, n_items, false);
			if (cost >= 0 && (best < 0 || cost < best)) {
				best = cost;
				bm = m;
			}
		}
	m = bm;
	score_set(&m, items, n_items, true);

	FILE *f = fopen(out_path, "w");
	if (!f) {
		perror(out_path);
		return 1;
	}
	fprintf(f, "mamori-disasm-model 1\n# written by scripts/train-disasm (mamori-train-disasm)\n");
	fprintf(f, "version %s\ntrainset %s\n", version, trainset);
	fprintf(f, "decay %.6g\nbreak_penalty %.6g\ndata_penalty %.6g\n", (double)m.decay,
		(double)m.break_penalty, (double)m.data_penalty);
	fprintf(f, "w1");
	for (int k = 0; k < PROB_S1_NW; k++)
		fprintf(f, " %.6g", (double)m.w1[k]);
	fprintf(f, "\nw2");
	for (int k = 0; k < PROB_S2_NW; k++)
		fprintf(f, " %.6g", (double)m.w2[k]);
	fprintf(f, "\n");
	write_table(f, "unigram", tu, PROB_VOCAB);
	write_table(f, "bigram", tb, PROB_BIGRAM_SIZE);
	write_table(f, "bytepair", tp, PROB_BYTEPAIR);
	if (fclose(f)) {
		perror(out_path);
		return 1;
	}
	if (!self)
		for (size_t i = 0; i < n_items; i++) {
			free(items[i].bin);
			free(items[i].truth);
		}
	free(items);
	free(u1), free(u0), free(b1), free(b0), free(p1), free(p0), free(tu), free(tb), free(tp), free(xs),
		free(ys);
	return 0;
}
