/*
 * `mamori disasm FILE [--method traversal|prob] [--json] [--limit N] [--all]`:
 * the listing of a PE or ELF file as mamori_disasm() sees it, one
 * instruction a line with its address, bytes, Intel text and token, or as
 * JSON. The listing is the one fingerprints are made of, so padding is left
 * out unless --all is given. With --method prob each instruction also shows
 * the model's probability that it starts there, and the stretches judged to
 * be data are shown between them (and as "regions" in JSON).
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "mamori/base.h"
#include "mamori/binfmt.h"
#include "mamori/disasm.h"

static void disasm_usage(FILE *f)
{
	fprintf(f, "usage: mamori disasm FILE [--method traversal|prob] [--json] [--limit N] [--all]\n"
		   "                    [--no-symbols]\n"
		   "  --method   traversal (default): recursive traversal + sweep of the gaps;\n"
		   "             prob: probabilistic disassembly (probabilities, data regions)\n"
		   "  --json     print {\"analyzer\", \"count\", \"shown\", \"instructions\": [{\"va\", "
		   "\"len\",\n"
		   "             \"bytes\", \"text\", \"token\", \"token_text\"}]}\n"
		   "             with --method prob also \"p\" per instruction and \"regions\":\n"
		   "             [{\"va\", \"size\", \"kind\": \"code\"|\"data\"}]\n"
		   "  --limit N  show only the first N instructions (count still gives all)\n"
		   "  --all      also list padding (NOPs, ENDBR, INT3), which fingerprints leave out\n"
		   "  --no-symbols  prob: ignore symbols as hints (as classify does, so stripped and\n"
		   "             unstripped builds disassemble alike)\n");
}

/* Bytes of the instruction as hex; the listing is sorted and so are the
 * regions, so the caller walks both in step through `*region`. */
static void insn_hex(char out[31], const mamori_binary *b, size_t *region, const mamori_insn *in)
{
	out[0] = '\0';
	while (*region < b->n_code && in->va - b->code[*region].va >= b->code[*region].size &&
	       in->va >= b->code[*region].va)
		(*region)++;
	if (*region >= b->n_code)
		return;
	const mamori_region *r = &b->code[*region];
	if (in->va < r->va || !mamori_span_fits(r->size, in->va - r->va, in->len))
		return;
	for (size_t i = 0; i < in->len && i < 15; i++)
		snprintf(out + 2 * i, 3, "%02x", r->bytes[in->va - r->va + i]);
}

/* The three texts of one listing line: bytes, Intel syntax, token. */
static void describe_insn(char hex[31], char text[256], char tok[128], const mamori_binary *b, size_t *region,
			  const mamori_insn *in)
{
	insn_hex(hex, b, region, in);
	if (mamori_disasm_format(text, 256, b, in->va) < 0)
		snprintf(text, 256, "?");
	if (mamori_token_text(tok, 128, in->token) < 0)
		snprintf(tok, 128, "?");
}

/* With the probabilistic method `pl` gives probabilities and data spans;
 * the data spans before each instruction are printed in front of it. */
static int print_text(const mamori_binary *b, const mamori_listing *l, const mamori_prob_listing *pl,
		      size_t shown)
{
	int width = b->arch == MAMORI_ARCH_X86_64 ? 16 : 8;
	size_t region = 0, span = 0;
	char hex[31], text[256], tok[128];

	for (size_t i = 0; i < shown; i++) {
		const mamori_insn *in = &l->insns[i];
		for (; pl && span < pl->n_spans && pl->spans[span].va <= in->va; span++)
			if (!pl->spans[span].is_code && printf("%0*llx  data, %llu bytes\n", width,
							       (unsigned long long)pl->spans[span].va,
							       (unsigned long long)pl->spans[span].size) < 0)
				return mamori_fail(MAMORI_EIO, "disasm: writing stdout");
		describe_insn(hex, text, tok, b, &region, in);
		int w = pl ? printf("%0*llx  %-30s  %-48s %-40s p=%.4f\n", width, (unsigned long long)in->va,
				    hex, text, tok, (double)pl->p[i])
			   : printf("%0*llx  %-30s  %-48s %s\n", width, (unsigned long long)in->va, hex, text,
				    tok);
		if (w < 0)
			return mamori_fail(MAMORI_EIO, "disasm: writing stdout");
	}
	for (; pl && shown == l->count && span < pl->n_spans; span++)
		if (!pl->spans[span].is_code &&
		    printf("%0*llx  data, %llu bytes\n", width, (unsigned long long)pl->spans[span].va,
			   (unsigned long long)pl->spans[span].size) < 0)
			return mamori_fail(MAMORI_EIO, "disasm: writing stdout");
	if (shown < l->count && printf("... %zu more instructions\n", l->count - shown) < 0)
		return mamori_fail(MAMORI_EIO, "disasm: writing stdout");
	return fflush(stdout) ? mamori_fail(MAMORI_EIO, "disasm: writing stdout") : MAMORI_OK;
}

static int print_json(const mamori_binary *b, const mamori_listing *l, const mamori_prob_listing *pl,
		      size_t shown, const char *analyzer)
{
	json_t *root = json_object(), *arr = json_array(), *regions = pl ? json_array() : NULL;
	size_t region = 0;
	char hex[31], text[256], tok[128];
	int rc = MAMORI_ENOMEM;

	if (!root || !arr)
		goto done;
	for (size_t i = 0; i < shown; i++) {
		const mamori_insn *in = &l->insns[i];
		describe_insn(hex, text, tok, b, &region, in);
		json_t *o = json_pack("{s:o, s:i, s:s, s:s, s:I, s:s}", "va", mamori_json_u64(in->va), "len",
				      (int)in->len, "bytes", hex, "text", text, "token",
				      (json_int_t)in->token, "token_text", tok);
		if (!o || (pl && json_object_set_new(o, "p", json_real((double)pl->p[i]))) ||
		    json_array_append_new(arr, o))
			goto done;
	}
	if (pl && !regions)
		goto done;
	for (size_t i = 0; pl && i < pl->n_spans; i++) {
		json_t *o = json_pack("{s:o, s:o, s:s}", "va", mamori_json_u64(pl->spans[i].va), "size",
				      mamori_json_u64(pl->spans[i].size), "kind",
				      pl->spans[i].is_code ? "code" : "data");
		if (!o || json_array_append_new(regions, o))
			goto done;
	}
	if (pl) {
		rc = json_object_set_new(root, "regions", regions);
		regions = NULL;
		if (rc) {
			rc = MAMORI_ENOMEM;
			goto done;
		}
		rc = MAMORI_ENOMEM;
	}
	if (json_object_set_new(root, "analyzer", json_string(analyzer)) ||
	    json_object_set_new(root, "count", json_integer((json_int_t)l->count)) ||
	    json_object_set_new(root, "shown", json_integer((json_int_t)shown)))
		goto done;
	rc = json_object_set_new(root, "instructions", arr);
	arr = NULL;
	if (rc) {
		rc = MAMORI_ENOMEM;
		goto done;
	}
	rc = mamori_json_write(stdout, root, true);
done:
	if (rc == MAMORI_ENOMEM)
		rc = mamori_fail(MAMORI_ENOMEM, "disasm: building JSON");
	json_decref(arr);
	json_decref(regions);
	json_decref(root);
	return rc;
}

int cmd_disasm(int argc, char **argv)
{
	const char *path = NULL;
	bool json = false;
	size_t limit = 0;
	mamori_disasm_opts opts = { 0 };
	uint8_t *data = NULL;
	size_t size = 0;
	mamori_binary *bin = NULL;
	mamori_listing *l = NULL, prob_view = { 0 };
	mamori_prob_listing *pl = NULL;
	int rc;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			disasm_usage(stdout);
			return MAMORI_EXIT_OK;
		} else if (!strcmp(argv[i], "--json")) {
			json = true;
		} else if (!strcmp(argv[i], "--method")) {
			if (i + 1 >= argc) {
				fprintf(stderr, "mamori disasm: --method needs traversal or prob\n");
				return MAMORI_EXIT_USAGE;
			}
			i++;
			if (!strcmp(argv[i], "traversal")) {
				opts.method = MAMORI_DISASM_TRAVERSAL;
			} else if (!strcmp(argv[i], "prob")) {
				opts.method = MAMORI_DISASM_PROBABILISTIC;
			} else {
				fprintf(stderr, "mamori disasm: unknown method '%s' (traversal or prob)\n",
					argv[i]);
				return MAMORI_EXIT_USAGE;
			}
		} else if (!strcmp(argv[i], "--all")) {
			opts.keep_padding = true;
		} else if (!strcmp(argv[i], "--no-symbols")) {
			opts.no_symbols = true;
		} else if (!strcmp(argv[i], "--limit")) {
			char *end = NULL;
			if (i + 1 >= argc) {
				fprintf(stderr, "mamori disasm: --limit needs a number\n");
				return MAMORI_EXIT_USAGE;
			}
			errno = 0;
			unsigned long long v = strtoull(argv[++i], &end, 10);
			if (errno || end == argv[i] || *end || argv[i][0] == '-' || v == 0 || v > SIZE_MAX) {
				fprintf(stderr, "mamori disasm: --limit '%s' is not a positive number\n",
					argv[i]);
				return MAMORI_EXIT_USAGE;
			}
			limit = (size_t)v;
		} else if (argv[i][0] == '-' && argv[i][1]) {
			fprintf(stderr, "mamori disasm: unknown option '%s'\n", argv[i]);
			disasm_usage(stderr);
			return MAMORI_EXIT_USAGE;
		} else if (path) {
			fprintf(stderr, "mamori disasm: one FILE only ('%s' and '%s')\n", path, argv[i]);
			return MAMORI_EXIT_USAGE;
		} else {
			path = argv[i];
		}
	}
	if (!path) {
		disasm_usage(stderr);
		return MAMORI_EXIT_USAGE;
	}

	if ((rc = mamori_file_read(&data, &size, path, MAMORI_MAX_SAMPLE_SIZE)) < 0 ||
	    (rc = mamori_binary_parse(&bin, data, size, NULL)) < 0)
		goto done;
	const mamori_listing *view = NULL;
	if (opts.method == MAMORI_DISASM_PROBABILISTIC) {
		/* One run gives listing, probabilities and spans. */
		if ((rc = mamori_disasm_prob(&pl, bin, &opts)) < 0)
			goto done;
		prob_view.insns = pl->insns;
		prob_view.count = pl->count;
		view = &prob_view;
	} else {
		if ((rc = mamori_disasm(&l, bin, &opts)) < 0)
			goto done;
		view = l;
	}
	size_t shown = limit && limit < view->count ? limit : view->count;
	rc = json ? print_json(bin, view, pl, shown, mamori_disasm_analyzer_id(&opts))
		  : print_text(bin, view, pl, shown);
done:
	if (rc < 0)
		fprintf(stderr, "mamori disasm: %s: %s: %s\n", path, mamori_strerror(rc),
			mamori_error_detail());
	mamori_listing_free(l);
	mamori_prob_listing_free(pl);
	mamori_binary_free(bin);
	free(data);
	return mamori_exit_code(rc);
}
