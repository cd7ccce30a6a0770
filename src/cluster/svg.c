/*
 * The circular dendrogram, drawn like the figure in malware clustering
 * papers: leaf names around the rim, each merge an arc at the radius of its
 * similarity (rim = 1, centre = 0) spanning its children's angles, and radial
 * stems from each child down to its parent's arc.
 *
 * Size is what matters at 3,000+ leaves: the stems and arcs of one colour go
 * into a single <path>, coordinates are rounded to 0.1 unit, and the canvas
 * grows with the leaf count so that a fixed 10-unit font keeps ~1.15 font
 * heights per leaf on the rim (legible once zoomed; the colours and the
 * legend carry the overview). Leaf names are made safe for XML: invalid UTF-8
 * and control characters become '?', and long names are cut with an ellipsis.
 *
 * No recursion: node angles and colours follow from the merge list in order,
 * because a merge always comes after its children.
 */
#include "cluster_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SVG_MAX_PATH_BYTES  ((size_t)1 << 30)
#define LEAF_FONT	    10.0
#define DEFAULT_LABEL_CHARS 24
#define LEGEND_ROWS	    12

/* Distinct colours for the largest clusters (Tableau 10 and 20 without
 * their greys, which are kept for the classes below). */
static const char *const palette[] = {
	"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
	"#17becf", "#bcbd22", "#393b79", "#ad494a", "#637939", "#e7ba52", "#7b4173",
	"#3182bd", "#e6550d", "#31a354", "#756bb1", "#843c39", "#de9ed6",
};
#define N_PALETTE (sizeof(palette) / sizeof(palette[0]))

/* Colour buckets after the palette: */
enum {
	BUCKET_OTHER = N_PALETTE, /* clusters of 2+ beyond the palette */
	BUCKET_SINGLE,		  /* a cluster of one */
	BUCKET_MIXED,		  /* branches above the cut, or no labels at all */
	N_BUCKETS,
};

static const char *bucket_colour(size_t b)
{
	if (b < N_PALETTE)
		return palette[b];
	if (b == BUCKET_OTHER)
		return "#8c8c8c";
	if (b == BUCKET_SINGLE)
		return "#b4b4b4";
	return "#3c3c3c";
}

/* Text colour on white: the palette colour, or a readable grey. */
static const char *bucket_text_colour(size_t b)
{
	return b < N_PALETTE ? palette[b] : "#555555";
}

/* ---- safe text ---- */

/* Decode one UTF-8 character that XML 1.0 allows as text; returns its byte
 * length, or 0 when the bytes at s are not such a character. */
static size_t utf8_char(const unsigned char *s)
{
	uint32_t cp;
	size_t len;

	if (s[0] < 0x80)
		return (s[0] >= 0x20 && s[0] != 0x7f) || s[0] == '\t' ? 1 : 0;
	if ((s[0] & 0xe0) == 0xc0) {
		cp = s[0] & 0x1f;
		len = 2;
	} else if ((s[0] & 0xf0) == 0xe0) {
		cp = s[0] & 0x0f;
		len = 3;
	} else if ((s[0] & 0xf8) == 0xf0) {
		cp = s[0] & 0x07;
		len = 4;
	} else {
		return 0;
	}
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80) /* also stops at the NUL */
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || cp == 0xfffe || cp == 0xffff ||
	    (cp >= 0x80 && cp <= 0x9f))
		return 0;
	return len;
}

/* Append `s` as XML text, at most max_chars characters ("…" marks a cut). */
static int xml_text(mamori_vec *v, const char *s, size_t max_chars)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t total = 0, chars = 0;
	int err = MAMORI_OK;

	for (const unsigned char *q = p; *q; total++) {
		size_t len = utf8_char(q);
		q += len ? len : 1;
	}
	if (max_chars == 0)
		max_chars = 1;
	while (*p && !err) {
		size_t len = utf8_char(p);
		if (total > max_chars && chars == max_chars - 1)
			return cluster_buf_put(v, "\xe2\x80\xa6", 3);
		if (len == 0)
			err = cluster_buf_put(v, "?", 1);
		else if (*p == '&')
			err = cluster_buf_put(v, "&amp;", 5);
		else if (*p == '<')
			err = cluster_buf_put(v, "&lt;", 4);
		else if (*p == '>')
			err = cluster_buf_put(v, "&gt;", 4);
		else
			err = cluster_buf_put(v, (const char *)p, len);
		p += len ? len : 1;
		chars++;
	}
	return err;
}

/* ---- layout ---- */

typedef struct layout {
	size_t n, nodes;
	double *theta; /* angle of each node, radians, clockwise from east */
	double *radius;
	uint8_t *bucket; /* colour bucket of each node */
	int64_t *label;	 /* flat cluster of all leaves below a node, or MIXED_LABEL */
	double R;	 /* rim radius (leaves) */
	double hscale;	 /* height drawn at the centre */
} layout;

#define MIXED_LABEL INT64_C(-1)

static void layout_free(layout *l)
{
	free(l->theta);
	free(l->radius);
	free(l->bucket);
	free(l->label);
	memset(l, 0, sizeof(*l));
}

typedef struct cluster_size {
	int64_t label;
	size_t size;
} cluster_size;

static int cluster_size_cmp(const void *pa, const void *pb)
{
	const cluster_size *a = pa, *b = pb;

	if (a->size != b->size)
		return a->size > b->size ? -1 : 1;
	return (a->label > b->label) - (a->label < b->label);
}

/* Sizes of the labelled clusters, largest first (labels outside [0, n)
 * count as unlabelled). `*out_sizes` has `*out_k` entries. */
static int cluster_sizes(cluster_size **out_sizes, size_t *out_k, const int64_t *labels, size_t n)
{
	cluster_size *cs = calloc(n ? n : 1, sizeof(*cs));
	size_t k = 0;

	if (!cs)
		return mamori_fail(MAMORI_ENOMEM, "svg: no memory for %zu clusters", n);
	for (size_t i = 0; i < n; i++)
		cs[i].label = (int64_t)i;
	for (size_t i = 0; i < n; i++)
		if (labels[i] >= 0 && (uint64_t)labels[i] < n)
			cs[labels[i]].size++;
	qsort(cs, n, sizeof(*cs), cluster_size_cmp);
	while (k < n && cs[k].size > 0)
		k++;
	*out_sizes = cs;
	*out_k = k;
	return MAMORI_OK;
}

static int layout_make(layout *l, const mamori_dendrogram *d, const int64_t *labels, const cluster_size *cs,
		       size_t k)
{
	int err;
	uint32_t *order = NULL;
	uint8_t *rank_bucket = NULL; /* colour bucket by label value */
	size_t n = d->n_leaves;

	memset(l, 0, sizeof(*l));
	l->n = n;
	l->nodes = n + d->n_merges;
	err = mamori_dendrogram_leaf_order(&order, d);
	if (err)
		return err;
	l->theta = malloc(l->nodes * sizeof(*l->theta));
	l->radius = malloc(l->nodes * sizeof(*l->radius));
	l->bucket = malloc(l->nodes);
	l->label = malloc(l->nodes * sizeof(*l->label));
	rank_bucket = malloc(n);
	if (!l->theta || !l->radius || !l->bucket || !l->label || !rank_bucket) {
		err = mamori_fail(MAMORI_ENOMEM, "svg: no memory for %zu nodes", l->nodes);
		goto done;
	}
	l->R = fmax(200.0, (double)n * LEAF_FONT * 1.15 / (2.0 * M_PI));
	l->hscale = fmax(1.0, d->n_merges ? d->merges[d->n_merges - 1].height : 0.0);

	memset(rank_bucket, BUCKET_SINGLE, n);
	for (size_t r = 0; r < k; r++)
		rank_bucket[cs[r].label] = cs[r].size == 1 ? BUCKET_SINGLE
					   : r < N_PALETTE ? (uint8_t)r
							   : BUCKET_OTHER;
	for (size_t p = 0; p < n; p++) {
		uint32_t leaf = order[p];
		l->theta[leaf] = -M_PI / 2 + 2.0 * M_PI * ((double)p + 0.5) / (double)n;
		l->radius[leaf] = l->R;
		if (!labels) {
			l->bucket[leaf] = BUCKET_MIXED;
			l->label[leaf] = MIXED_LABEL;
		} else if (labels[leaf] >= 0 && (uint64_t)labels[leaf] < n) {
			l->bucket[leaf] = rank_bucket[labels[leaf]];
			l->label[leaf] = labels[leaf];
		} else {
			l->bucket[leaf] = BUCKET_SINGLE;
			l->label[leaf] = MIXED_LABEL;
		}
	}
	for (size_t m = 0; m < d->n_merges; m++) {
		const mamori_merge *g = &d->merges[m];
		size_t id = n + m;
		double h = fmin(fmax(g->height, 0.0), l->hscale);
		l->theta[id] = (l->theta[g->a] + l->theta[g->b]) / 2.0;
		l->radius[id] = l->R * (1.0 - h / l->hscale);
		/* A branch keeps its cluster's colour only while it holds one
		 * cluster; different clusters that share a colour (the small
		 * ones) are told apart by label. */
		l->label[id] = l->label[g->a] == l->label[g->b] ? l->label[g->a] : MIXED_LABEL;
		l->bucket[id] = l->label[id] >= 0 ? l->bucket[g->a] : BUCKET_MIXED;
	}
done:
	free(order);
	free(rank_bucket);
	if (err)
		layout_free(l);
	return err;
}

/* ---- drawing ---- */

static double px(double r, double t)
{
	return r * cos(t);
}

static double py(double r, double t)
{
	return r * sin(t);
}

/* Line weight grows with the number of leaves under a branch, so that the
 * structure near the centre stays visible when the whole circle is on
 * screen, while the dense twigs at the rim stay thin. */
#define N_WEIGHTS 3
#define N_PATHS	  ((size_t)N_BUCKETS * N_WEIGHTS)
static const double weight_factor[N_WEIGHTS] = { 1.0, 2.5, 5.0 };

static size_t weight_of(const mamori_dendrogram *d, uint32_t id)
{
	uint32_t size = id < d->n_leaves ? 1 : d->merges[id - d->n_leaves].size;

	return size <= 4 ? 0 : size <= 64 ? 1 : 2;
}

/* Stem of every non-root node and arc of every merge, one path per colour
 * and weight. */
static int draw_tree(FILE *f, const mamori_dendrogram *d, const layout *l, double stroke)
{
	int err = MAMORI_OK;
	mamori_vec paths[N_PATHS];
	size_t n = l->n;

	for (size_t b = 0; b < N_PATHS; b++)
		mamori_vec_init(&paths[b], 1, SVG_MAX_PATH_BYTES);
	for (size_t m = 0; m < d->n_merges && !err; m++) {
		const mamori_merge *g = &d->merges[m];
		size_t id = n + m;
		double r = l->radius[id];
		uint32_t kids[2] = { g->a, g->b };

		for (int s = 0; s < 2 && !err; s++) {
			uint32_t c = kids[s];
			double t = l->theta[c];
			if (l->radius[c] - r < 0.05)
				continue;
			err = cluster_buf_printf(&paths[(size_t)l->bucket[c] * N_WEIGHTS + weight_of(d, c)],
						 "M%.1f %.1fL%.1f %.1f", px(l->radius[c], t),
						 py(l->radius[c], t), px(r, t), py(r, t));
		}
		if (err)
			break;
		double ta = l->theta[g->a], tb = l->theta[g->b];
		if (r < 0.05)
			continue; /* an arc at the centre has no length */
		err = cluster_buf_printf(
			&paths[(size_t)l->bucket[id] * N_WEIGHTS + weight_of(d, (uint32_t)id)],
			"M%.1f %.1fA%.1f %.1f 0 %d 1 %.1f %.1f", px(r, ta), py(r, ta), r, r,
			tb - ta > M_PI ? 1 : 0, px(r, tb), py(r, tb));
	}
	for (size_t p = 0; p < N_PATHS && !err; p++) {
		if (paths[p].count == 0)
			continue;
		fprintf(f, "<path stroke=\"%s\" stroke-width=\"%.2f\" d=\"", bucket_colour(p / N_WEIGHTS),
			stroke * weight_factor[p % N_WEIGHTS]);
		fwrite(paths[p].data, 1, paths[p].count, f);
		fputs("\"/>\n", f);
	}
	for (size_t p = 0; p < N_PATHS; p++)
		mamori_vec_free(&paths[p]);
	return err;
}

/* Leaf names, rotated to point outward; on the left half turned round so
 * that they read left to right. */
static int draw_leaves(FILE *f, const layout *l, const char *const *names, size_t max_chars)
{
	int err = MAMORI_OK;
	mamori_vec text;
	double gap = LEAF_FONT * 0.5;

	mamori_vec_init(&text, 1, SVG_MAX_PATH_BYTES);
	for (size_t i = 0; i < l->n && !err; i++) {
		char num[24];
		const char *name = names ? names[i] : NULL;
		double deg = l->theta[i] * 180.0 / M_PI;
		bool left = cos(l->theta[i]) < 0;

		if (!name) {
			snprintf(num, sizeof(num), "%zu", i);
			name = num;
		}
		text.count = 0;
		err = xml_text(&text, name, max_chars);
		if (err)
			break;
		fprintf(f, "<text class=\"k%d%s\" transform=\"rotate(%.2f)\" x=\"%.1f\" y=\"%.1f\">",
			(int)l->bucket[i], left ? " l" : "", left ? deg + 180.0 : deg,
			left ? -(l->R + gap) : l->R + gap, LEAF_FONT * 0.35);
		fwrite(text.data, 1, text.count, f);
		fputs("</text>\n", f);
	}
	mamori_vec_free(&text);
	return err;
}

static void write_empty(FILE *f, const char *title_xml)
{
	fputs("<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 400 120\" width=\"400\" "
	      "height=\"120\">\n",
	      f);
	fprintf(f, "<text x=\"20\" y=\"40\" font-family=\"sans-serif\" font-size=\"20\">%s</text>\n",
		title_xml);
	fputs("<text x=\"20\" y=\"80\" font-family=\"sans-serif\" font-size=\"14\">no "
	      "samples</text>\n</svg>\n",
	      f);
}

int mamori_dendrogram_svg(FILE *f, const mamori_dendrogram *d, const char *const *names,
			  const mamori_svg_opts *opts)
{
	static const mamori_svg_opts defaults = { .cut_height = -1.0 };
	int err;
	int64_t *own_labels = NULL;
	const int64_t *labels;
	cluster_size *cs = NULL;
	size_t k = 0, n, singles = 0, max_chars;
	layout l = { 0 };
	mamori_vec title = { 0 };

	if (!f)
		return mamori_fail(MAMORI_EINVAL, "svg: no output stream");
	err = cluster_check(d);
	if (err)
		return err;
	if (!opts)
		opts = &defaults;
	n = d->n_leaves;
	max_chars = opts->label_max_chars ? opts->label_max_chars : DEFAULT_LABEL_CHARS;
	mamori_vec_init(&title, 1, 1 << 20);
	err = xml_text(&title, opts->title ? opts->title : "mamori dendrogram", 200);
	if (!err)
		err = cluster_buf_put(&title, "", 1);
	if (err)
		goto done;
	fputs("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n", f);
	if (n == 0) {
		write_empty(f, title.data);
		goto finish;
	}

	labels = opts->labels;
	if (!labels && opts->cut_height >= 0) {
		size_t k_cut;
		own_labels = malloc(n * sizeof(*own_labels));
		if (!own_labels) {
			err = mamori_fail(MAMORI_ENOMEM, "svg: no memory for %zu labels", n);
			goto done;
		}
		err = mamori_dendrogram_cut(own_labels, &k_cut, d, opts->cut_height);
		if (err)
			goto done;
		labels = own_labels;
	}
	if (labels) {
		err = cluster_sizes(&cs, &k, labels, n);
		if (err)
			goto done;
	}
	err = layout_make(&l, d, labels, cs, k);
	if (err)
		goto done;
	for (size_t r = 0; r < k; r++)
		singles += cs[r].size == 1;

	/* Geometry: the circle with its names, a header above and the legend
	 * to the right, all in units where a leaf name is 10 high. */
	double band = LEAF_FONT * 0.62 * (double)max_chars + LEAF_FONT;
	double rtot = l.R + band;
	double lf = fmax(14.0, rtot / 45.0); /* legend font */
	double margin = lf * 1.5;
	double header = lf * 4.5;
	double legend_w = lf * 22.0;
	double width = 2 * rtot + legend_w + 3 * margin;
	double height = fmax(header + 2 * rtot + 2 * margin, header + lf * 1.6 * (LEGEND_ROWS + 8));
	double cx = margin + rtot, cy = header + margin + rtot;
	double stroke = fmax(0.8, fmin(2.0, l.R / 2000.0));

	fprintf(f,
		"<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %.0f %.0f\" width=\"%.0f\" "
		"height=\"%.0f\" font-family=\"Helvetica,Arial,sans-serif\">\n",
		width, height, fmin(width, 2400.0), fmin(width, 2400.0) * height / width);
	fprintf(f,
		"<title>%s</title>\n<style>text{font-size:%.0fpx}.l{text-anchor:end}"
		".lg text{font-size:%.1fpx;fill:#222}.lg .h{font-size:%.1fpx;font-weight:bold}",
		(char *)title.data, LEAF_FONT, lf, lf * 1.8);
	for (size_t b = 0; b < N_BUCKETS; b++)
		fprintf(f, ".k%zu{fill:%s}", b, bucket_text_colour(b));
	fputs("</style>\n", f);
	fprintf(f, "<rect width=\"%.0f\" height=\"%.0f\" fill=\"#ffffff\"/>\n", width, height);

	fprintf(f, "<g transform=\"translate(%.1f %.1f)\">\n", cx, cy);
	/* Similarity guide rings, faint, under the tree. */
	fputs("<g fill=\"none\" stroke=\"#e2e2e2\">\n", f);
	for (int q = 1; q <= 3; q++) {
		double s = q * 0.25;				/* similarity */
		double rr = l.R * (1.0 - (1.0 - s) / l.hscale); /* distance 1-s */
		if (rr > 0)
			fprintf(f, "<circle r=\"%.1f\" stroke-width=\"%.1f\"/>\n", rr, stroke);
	}
	fputs("</g>\n<g fill=\"none\" stroke-linecap=\"round\">\n", f);
	err = draw_tree(f, d, &l, stroke);
	if (err)
		goto done;
	fputs("</g>\n", f);
	if (opts->cut_height >= 0 && opts->cut_height <= l.hscale) {
		double rc = l.R * (1.0 - opts->cut_height / l.hscale);
		fprintf(f,
			"<circle r=\"%.1f\" fill=\"none\" stroke=\"#000000\" stroke-opacity=\"0.7\" "
			"stroke-width=\"%.1f\" stroke-dasharray=\"%.1f %.1f\"/>\n",
			rc, lf / 8, lf * 0.8, lf * 0.5);
	}
	/* Guide ring labels along the top, with a white halo over the tree. */
	fprintf(f,
		"<g font-size=\"%.1f\" fill=\"#888888\" text-anchor=\"middle\" paint-order=\"stroke\" "
		"stroke=\"#ffffff\" stroke-width=\"%.1f\">\n",
		lf * 0.7, lf * 0.2);
	for (int q = 1; q <= 3; q++) {
		double s = q * 0.25;
		double rr = l.R * (1.0 - (1.0 - s) / l.hscale);
		if (rr > lf)
			fprintf(f, "<text y=\"%.1f\" style=\"font-size:%.1fpx\">%.2f</text>\n",
				-rr - lf * 0.2, lf * 0.7, s);
	}
	fputs("</g>\n", f);
	err = draw_leaves(f, &l, names, max_chars);
	if (err)
		goto done;
	fputs("</g>\n", f);

	/* Header and legend. */
	double lx = 2 * rtot + 2 * margin, ly = header + margin + lf;
	fprintf(f, "<g class=\"lg\">\n<text class=\"h\" x=\"%.1f\" y=\"%.1f\">%s</text>\n", margin,
		margin + lf * 1.8, (char *)title.data);
	fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">%zu samples", margin, margin + lf * 3.6, n);
	if (labels)
		fprintf(f, ", %zu clusters", k);
	if (opts->cut_height >= 0)
		fprintf(f, ", cut at distance %.3g (similarity %.3g)", opts->cut_height,
			1.0 - opts->cut_height);
	fputs(". Radius shows similarity: names on the rim, 0 at the centre.</text>\n", f);
	if (labels) {
		fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" style=\"font-weight:bold\">Largest clusters</text>\n",
			lx, ly);
		ly += lf * 1.6;
		size_t shown = 0, rest = 0, rest_samples = 0;
		for (size_t r = 0; r < k; r++) {
			if (cs[r].size < 2)
				continue;
			if (shown == LEGEND_ROWS || r >= N_PALETTE) {
				rest++;
				rest_samples += cs[r].size;
				continue;
			}
			fprintf(f,
				"<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>"
				"<text x=\"%.1f\" y=\"%.1f\">cluster %lld: %zu (%.1f%%)</text>\n",
				lx, ly - lf * 0.8, lf, lf, palette[r], lx + lf * 1.5, ly,
				(long long)cs[r].label, cs[r].size, 100.0 * (double)cs[r].size / (double)n);
			ly += lf * 1.5;
			shown++;
		}
		if (rest) {
			fprintf(f,
				"<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>"
				"<text x=\"%.1f\" y=\"%.1f\">%zu more clusters: %zu</text>\n",
				lx, ly - lf * 0.8, lf, lf, bucket_colour(BUCKET_OTHER), lx + lf * 1.5, ly,
				rest, rest_samples);
			ly += lf * 1.5;
		}
		if (singles) {
			fprintf(f,
				"<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>"
				"<text x=\"%.1f\" y=\"%.1f\">singletons: %zu</text>\n",
				lx, ly - lf * 0.8, lf, lf, bucket_colour(BUCKET_SINGLE), lx + lf * 1.5, ly,
				singles);
			ly += lf * 1.5;
		}
	}
	if (opts->cut_height >= 0) {
		ly += lf * 0.5;
		fprintf(f,
			"<path d=\"M%.1f %.1fh%.1f\" stroke=\"#000000\" stroke-width=\"%.1f\" "
			"stroke-dasharray=\"%.1f %.1f\"/><text x=\"%.1f\" y=\"%.1f\">cut: similarity "
			"%.3g</text>\n",
			lx, ly - lf * 0.35, lf * 2.5, lf / 8, lf * 0.8, lf * 0.5, lx + lf * 3, ly,
			1.0 - opts->cut_height);
		ly += lf * 1.5;
	}
	fprintf(f,
		"<path d=\"M%.1f %.1fh%.1f\" stroke=\"#3c3c3c\" stroke-width=\"%.1f\"/>"
		"<text x=\"%.1f\" y=\"%.1f\">joins above the threshold</text>\n</g>\n</svg>\n",
		lx, ly - lf * 0.35, lf * 2.5, lf / 8, lx + lf * 3, ly);
finish:
	if (fflush(f) != 0 || ferror(f))
		err = mamori_fail(MAMORI_EIO, "svg: writing the dendrogram failed");
done:
	free(own_labels);
	free(cs);
	layout_free(&l);
	mamori_vec_free(&title);
	return err;
}
