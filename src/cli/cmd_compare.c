/*
 * `mamori compare A B [--json] [--threshold T]`: how much code two samples
 * share, and where, like a diff of their instruction streams.
 *
 * Both files are parsed and disassembled exactly as classification does
 * (padding left out), then aligned by one longest common subsequence of
 * their tokens. The report lists, in address order, the runs of
 * instructions both share (with their addresses in each sample) and the
 * changed regions between them (what A lost and B gained, with a few token
 * texts when the change is small). With --threshold T the exact comparison
 * stops as soon as S is provably below T and only that is reported.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "mamori/base.h"
#include "mamori/binfmt.h"
#include "mamori/disasm.h"
#include "mamori/similarity.h"

/* Changes up to this many instructions on a side show their token texts. */
#define SMALL_CHANGE 4

static void compare_usage(FILE *f)
{
	fprintf(f, "usage: mamori compare A B [--json] [--threshold T]\n"
		   "  S = |LCS| / (|A| + |B| - |LCS|) over the instruction tokens, then the shared runs\n"
		   "  and the changed regions with their addresses in A and in B.\n"
		   "  --json         print {\"similarity\", \"lcs\", \"a\": {\"path\", \"sha256\", "
		   "\"instructions\"},\n"
		   "                 \"b\": {...}, \"shared\": [{\"a_va\", \"b_va\", \"count\"}],\n"
		   "                 \"changed\": [{\"a_va\", \"a_count\", \"b_va\", \"b_count\"}]}\n"
		   "  --threshold T  stop early when S < T (0..1): then only \"below\": true and an upper\n"
		   "                 bound \"similarity_max\" are given (similarity and lcs are null)\n");
}

typedef struct sample {
	const char *path;
	char sha256[65];
	uint8_t *data;
	mamori_binary *bin;
	mamori_listing *listing;
	uint32_t *tokens;
} sample;

static void sample_clear(sample *s)
{
	mamori_listing_free(s->listing);
	mamori_binary_free(s->bin);
	free(s->data);
	free(s->tokens);
	memset(s, 0, sizeof(*s));
}

static int sample_load(sample *s, const char *path)
{
	size_t size = 0;
	int rc;
	s->path = path;
	if ((rc = mamori_file_read(&s->data, &size, path, MAMORI_MAX_SAMPLE_SIZE)) < 0)
		return rc;
	mamori_sha256_hex(s->sha256, s->data, size);
	if ((rc = mamori_binary_parse(&s->bin, s->data, size, NULL)) < 0 ||
	    (rc = mamori_disasm(&s->listing, s->bin, NULL)) < 0)
		return rc;
	s->tokens = malloc((s->listing->count + 1) * sizeof(*s->tokens));
	if (!s->tokens)
		return mamori_fail(MAMORI_ENOMEM, "compare: no memory for %zu tokens", s->listing->count);
	for (size_t i = 0; i < s->listing->count; i++)
		s->tokens[i] = s->listing->insns[i].token;
	return MAMORI_OK;
}

/* Address of instruction position `i`; the end of the code for i == count,
 * which is where an insertion at the end goes. */
static uint64_t pos_va(const mamori_listing *l, size_t i)
{
	if (i < l->count)
		return l->insns[i].va;
	if (l->count == 0)
		return 0;
	return l->insns[l->count - 1].va + l->insns[l->count - 1].len;
}

/* Last byte of instructions [i, i+count). */
static uint64_t range_end(const mamori_listing *l, size_t i, size_t count)
{
	const mamori_insn *last = &l->insns[i + count - 1];
	return last->va + last->len - 1;
}

/* A region of the diff: shared (a and b counts equal) or changed. */
typedef struct region {
	bool shared;
	size_t a, na, b, nb;
} region;

/* Turn the alignment into alternating changed and shared regions. */
static int regions_of(region **out, size_t *out_n, const mamori_alignment *al, size_t n, size_t m)
{
	mamori_vec v;
	int rc = MAMORI_OK;
	mamori_vec_init(&v, sizeof(region), 2 * al->n_runs + 2);
	size_t pa = 0, pb = 0;
	for (size_t r = 0; r <= al->n_runs && rc == MAMORI_OK; r++) {
		size_t ra = r < al->n_runs ? al->runs[r].a_pos : n,
		       rb = r < al->n_runs ? al->runs[r].b_pos : m;
		if (ra > pa || rb > pb)
			rc = mamori_vec_push(&v, &(region){ false, pa, ra - pa, pb, rb - pb });
		if (r < al->n_runs && rc == MAMORI_OK) {
			rc = mamori_vec_push(&v, &(region){ true, ra, al->runs[r].len, rb, al->runs[r].len });
			pa = ra + al->runs[r].len;
			pb = rb + al->runs[r].len;
		}
	}
	if (rc) {
		mamori_vec_free(&v);
		return rc;
	}
	*out = mamori_vec_steal(&v, out_n);
	return MAMORI_OK;
}

static void print_tokens(const sample *s, size_t i, size_t count, char sign)
{
	char text[128];
	for (size_t k = 0; k < count; k++) {
		if (mamori_token_text(text, sizeof(text), s->tokens[i + k]) < 0)
			snprintf(text, sizeof(text), "?");
		printf("      %c %#llx  %s\n", sign, (unsigned long long)s->listing->insns[i + k].va, text);
	}
}

static void print_side(const sample *s, size_t i, size_t count, const char *verb)
{
	if (count)
		printf("%#llx-%#llx %6zu %s", (unsigned long long)pos_va(s->listing, i),
		       (unsigned long long)range_end(s->listing, i, count), count, verb);
	else
		printf("at %#llx %s", (unsigned long long)pos_va(s->listing, i), "(nothing)");
}

static int print_text(const sample *a, const sample *b, double threshold, int sim_rc, double s, size_t lcs,
		      const region *rg, size_t n_rg)
{
	printf("A  %s  %s  %zu instructions\n", a->path, a->sha256, a->listing->count);
	printf("B  %s  %s  %zu instructions\n", b->path, b->sha256, b->listing->count);
	if (sim_rc == MAMORI_EBELOW) {
		printf("similarity < %.4f (at most %.4f); no alignment below the threshold\n", threshold, s);
		return fflush(stdout) ? mamori_fail(MAMORI_EIO, "compare: writing stdout") : MAMORI_OK;
	}
	size_t n_shared = 0, n_changed = 0;
	for (size_t i = 0; i < n_rg; i++)
		rg[i].shared ? n_shared++ : n_changed++;
	printf("similarity %.4f  (LCS %zu; %zu shared runs, %zu changed regions)\n\n", s, lcs, n_shared,
	       n_changed);
	for (size_t i = 0; i < n_rg; i++) {
		const region *r = &rg[i];
		if (r->shared) {
			printf("  = shared   A ");
			print_side(a, r->a, r->na, "insns");
			printf("   B ");
			print_side(b, r->b, r->nb, "insns");
			printf("\n");
			continue;
		}
		printf("  ~ changed  A ");
		print_side(a, r->a, r->na, "removed");
		printf("   B ");
		print_side(b, r->b, r->nb, "added");
		printf("\n");
		if (r->na <= SMALL_CHANGE && r->nb <= SMALL_CHANGE) {
			print_tokens(a, r->a, r->na, '-');
			print_tokens(b, r->b, r->nb, '+');
		}
	}
	return fflush(stdout) ? mamori_fail(MAMORI_EIO, "compare: writing stdout") : MAMORI_OK;
}

static json_t *sample_json(const sample *s)
{
	return json_pack("{s:s, s:s, s:I}", "path", s->path, "sha256", s->sha256, "instructions",
			 (json_int_t)s->listing->count);
}

static int print_json(const sample *a, const sample *b, bool has_threshold, double threshold, int sim_rc,
		      double s, size_t lcs, const region *rg, size_t n_rg)
{
	int rc = MAMORI_ENOMEM;
	json_t *root = json_object(), *shared = json_array(), *changed = json_array();
	if (!root || !shared || !changed)
		goto done;
	for (size_t i = 0; i < n_rg; i++) {
		const region *r = &rg[i];
		json_t *o;
		if (r->shared)
			o = json_pack("{s:o, s:o, s:I}", "a_va", mamori_json_u64(pos_va(a->listing, r->a)),
				      "b_va", mamori_json_u64(pos_va(b->listing, r->b)), "count",
				      (json_int_t)r->na);
		else
			o = json_pack("{s:o, s:I, s:o, s:I}", "a_va",
				      mamori_json_u64(pos_va(a->listing, r->a)), "a_count", (json_int_t)r->na,
				      "b_va", mamori_json_u64(pos_va(b->listing, r->b)), "b_count",
				      (json_int_t)r->nb);
		if (!o || json_array_append_new(r->shared ? shared : changed, o))
			goto done;
	}
	bool below = sim_rc == MAMORI_EBELOW;
	if (json_object_set_new(root, "similarity", below ? json_null() : json_real(s)) ||
	    json_object_set_new(root, "lcs", below ? json_null() : json_integer((json_int_t)lcs)) ||
	    json_object_set_new(root, "a", sample_json(a)) || json_object_set_new(root, "b", sample_json(b)))
		goto done;
	if (has_threshold && (json_object_set_new(root, "threshold", json_real(threshold)) ||
			      json_object_set_new(root, "below", json_boolean(below)) ||
			      (below && json_object_set_new(root, "similarity_max", json_real(s)))))
		goto done;
	rc = json_object_set(root, "shared", shared) || json_object_set(root, "changed", changed)
		     ? MAMORI_ENOMEM
		     : MAMORI_OK;
	if (rc == MAMORI_OK)
		rc = mamori_json_write(stdout, root, true);
done:
	if (rc == MAMORI_ENOMEM)
		rc = mamori_fail(MAMORI_ENOMEM, "compare: building JSON");
	json_decref(shared);
	json_decref(changed);
	json_decref(root);
	return rc;
}

int cmd_compare(int argc, char **argv)
{
	const char *paths[2] = { NULL, NULL };
	size_t n_paths = 0;
	bool json = false, has_threshold = false;
	double threshold = 0.0;
	sample sa = { 0 }, sb = { 0 };
	mamori_alignment *al = NULL;
	region *rg = NULL;
	size_t n_rg = 0, lcs = 0;
	double s = 0.0;
	const char *failed = NULL;
	int rc = MAMORI_OK, sim_rc = MAMORI_OK;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			compare_usage(stdout);
			return MAMORI_EXIT_OK;
		} else if (!strcmp(argv[i], "--json")) {
			json = true;
		} else if (!strcmp(argv[i], "--threshold")) {
			char *end = NULL;
			if (i + 1 >= argc) {
				fprintf(stderr, "mamori compare: --threshold needs a number\n");
				return MAMORI_EXIT_USAGE;
			}
			errno = 0;
			threshold = strtod(argv[++i], &end);
			if (errno || end == argv[i] || *end || !(threshold >= 0.0 && threshold <= 1.0)) {
				fprintf(stderr, "mamori compare: --threshold '%s' is not a number in 0..1\n",
					argv[i]);
				return MAMORI_EXIT_USAGE;
			}
			has_threshold = true;
		} else if (argv[i][0] == '-' && argv[i][1]) {
			fprintf(stderr, "mamori compare: unknown option '%s'\n", argv[i]);
			compare_usage(stderr);
			return MAMORI_EXIT_USAGE;
		} else if (n_paths == 2) {
			fprintf(stderr, "mamori compare: two files only ('%s' is a third)\n", argv[i]);
			return MAMORI_EXIT_USAGE;
		} else {
			paths[n_paths++] = argv[i];
		}
	}
	if (n_paths != 2) {
		compare_usage(stderr);
		return MAMORI_EXIT_USAGE;
	}

	if ((rc = sample_load(&sa, paths[0])) < 0) {
		failed = paths[0];
		goto done;
	}
	if ((rc = sample_load(&sb, paths[1])) < 0) {
		failed = paths[1];
		goto done;
	}
	size_t n = sa.listing->count, m = sb.listing->count;
	if (has_threshold && threshold > 0.0) {
		/* The cheap exact answer first: below the threshold there is no
		 * alignment to show. */
		sim_rc = mamori_similarity(&s, sa.tokens, n, sb.tokens, m, threshold);
		if (sim_rc != MAMORI_OK && sim_rc != MAMORI_EBELOW) {
			rc = sim_rc;
			goto done;
		}
	}
	if (sim_rc == MAMORI_OK) {
		if ((rc = mamori_align(&al, sa.tokens, n, sb.tokens, m)) < 0 ||
		    (rc = regions_of(&rg, &n_rg, al, n, m)) < 0)
			goto done;
		lcs = al->lcs;
		s = mamori_similarity_from_lcs(n, m, lcs);
	}
	rc = json ? print_json(&sa, &sb, has_threshold, threshold, sim_rc, s, lcs, rg, n_rg)
		  : print_text(&sa, &sb, threshold, sim_rc, s, lcs, rg, n_rg);
done:
	if (rc < 0) {
		if (failed)
			fprintf(stderr, "mamori compare: %s: %s: %s\n", failed, mamori_strerror(rc),
				mamori_error_detail());
		else
			fprintf(stderr, "mamori compare: %s: %s\n", mamori_strerror(rc),
				mamori_error_detail());
	}
	free(rg);
	mamori_alignment_free(al);
	sample_clear(&sa);
	sample_clear(&sb);
	return mamori_exit_code(rc);
}
