/*
 * mamori classify: group samples into families. Options are parsed here;
 * the pipeline lives in src/classify.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "mamori/base.h"
#include "mamori/classify.h"
#include "mamori/cluster.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: mamori classify [options] PATH...\n"
		"\n"
		"Walks files and folders, stores every sample by SHA-256, analyses what the\n"
		"database does not hold yet, and clusters the samples into families by the\n"
		"longest common subsequence of their instruction tokens.\n"
		"\n"
		"  --db FILE          SQLite database (default mamori.db)\n"
		"  --store DIR        sample store (default <db>.store)\n"
		"  --out DIR          report folder (default mamori-out): clusters.json,\n"
		"                     dendrogram.svg, tree.nwk, stats.json\n"
		"  --threshold T      similarity at which samples join a family (default %.3g)\n"
		"  --floor F          exact similarity below F is cut off (default T/2)\n"
		"  --linkage L        average (default), single or complete\n"
		"  --jobs N           worker threads (default: all CPUs)\n"
		"  --candidates M     auto (default: all pairs up to %d, else lsh),\n"
		"                     lsh (MinHash/LSH search) or all (every pair)\n"
		"  --pairs-out FILE   CSV of computed pairs with similarity >= floor\n"
		"  --max-files N      refuse more than N inputs (default 200000)\n"
		"  --top N            rows of the family table (default 20)\n"
		"  --view V           exact, arch-neutral, skeleton or mnemonic (default %s):\n"
		"                     what of each instruction sequence is compared\n"
		"  --disasm M         prob (default, probabilistic) or traversal (recursive\n"
		"                     traversal + gap sweep): how samples are disassembled\n"
		"  --keep-library-code  compare whole programs, without removing known\n"
		"                     runtime code (CRT start-up, compiler helpers)\n"
		"  --library-ref FILE another reference binary of library code (repeatable)\n"
		"  --unpack M         auto (default: PE samples that look packed), always (every\n"
		"                     PE) or never: emulate the sample in a child process and,\n"
		"                     when it unpacks, compare the dump's code instead of the\n"
		"                     file's (clusters.json says which: \"code\", \"unpack\")\n"
		"  --unpack-timeout MS  wall-clock limit of one unpack (default 60000)\n"
		"  -q, --quiet        no family table\n"
		"\n"
		"Exit: 0 all analysed, 4 some samples failed (see clusters.json), 2 usage,\n"
		"1 internal error, 5 a limit was reached.\n",
		MAMORI_CLASSIFY_DEFAULT_THRESHOLD, MAMORI_CLASSIFY_AUTO_MAX_PAIRS,
		mamori_view_name(MAMORI_CLASSIFY_DEFAULT_VIEW));
}

static void print_table(const mamori_classify_result *res, size_t top, const char *out_dir)
{
	size_t singletons = 0;
	for (size_t c = 0; c < res->n_clusters; c++)
		singletons += res->clusters[c].size == 1;
	printf("%-8s %8s %7s  %s\n", "cluster", "size", "share", "representative");
	for (size_t c = 0; c < res->n_clusters && c < top; c++) {
		const mamori_classify_cluster *cl = &res->clusters[c];
		const mamori_classify_sample *rep = &res->samples[cl->representative];
		const char *name = strrchr(rep->path, '/');
		printf("%-8lld %8zu %6.1f%%  %s (%.12s)\n", (long long)cl->id, cl->size, cl->share * 100,
		       name ? name + 1 : rep->path, rep->sha256);
	}
	if (res->n_clusters > top)
		printf("... %zu more clusters\n", res->n_clusters - top);
	printf("\n%zu samples, %zu failed, %zu families (%zu singletons); %zu unique code sequences, "
	       "%zu %s pairs (%zu computed, %zu cached) in %.1fs\n",
	       res->n_samples, res->n_failed, res->n_clusters, singletons, res->unique_sequences,
	       res->candidate_pairs, res->candidates_used == MAMORI_CANDIDATES_LSH ? "candidate" : "compared",
	       res->exact_pairs, res->cached_pairs, res->wall_s);
	if (res->unpack_tried)
		printf("unpacker: %zu samples emulated, %zu compared by their unpacked code\n",
		       res->unpack_tried, res->code_unpacked);
	printf("report: %s/clusters.json  %s/dendrogram.svg  %s/tree.nwk  %s/stats.json\n", out_dir, out_dir,
	       out_dir, out_dir);
}

int cmd_classify(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "db", required_argument, NULL, 'd' },
		{ "store", required_argument, NULL, 's' },
		{ "out", required_argument, NULL, 'o' },
		{ "threshold", required_argument, NULL, 't' },
		{ "floor", required_argument, NULL, 'f' },
		{ "linkage", required_argument, NULL, 'l' },
		{ "jobs", required_argument, NULL, 'j' },
		{ "candidates", required_argument, NULL, 'c' },
		{ "pairs-out", required_argument, NULL, 'p' },
		{ "max-files", required_argument, NULL, 'm' },
		{ "top", required_argument, NULL, 'T' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ "keep-library-code", no_argument, NULL, 'K' },
		{ "library-ref", required_argument, NULL, 'R' },
		{ "view", required_argument, NULL, 'V' },
		{ "disasm", required_argument, NULL, 'D' },
		{ "unpack", required_argument, NULL, 'U' },
		{ "unpack-timeout", required_argument, NULL, 'W' },
		{ NULL, 0, NULL, 0 },
	};
	mamori_classify_opts opts;
	mamori_classify_opts_init(&opts);
	uint64_t v, top = 20;
	const char *refs[64];
	size_t n_refs = 0;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "qhj:o:", longopts, NULL)) != -1) {
		switch (c) {
		case 'd': opts.db_path = optarg; break;
		case 's': opts.store_dir = optarg; break;
		case 'o': opts.out_dir = optarg; break;
		case 't':
			if (!cli_parse_double(&opts.threshold, optarg, 0.001, 1, "classify", "--threshold"))
				return MAMORI_EXIT_USAGE;
			break;
		case 'f':
			if (!cli_parse_double(&opts.floor, optarg, 0, 1, "classify", "--floor"))
				return MAMORI_EXIT_USAGE;
			break;
		case 'l':
			if (mamori_linkage_parse(&opts.linkage, optarg) != MAMORI_OK) {
				fprintf(stderr,
					"mamori classify: --linkage is average, single or complete, not "
					"'%s'\n",
					optarg);
				return MAMORI_EXIT_USAGE;
			}
			break;
		case 'j':
			if (!cli_parse_u64(&v, optarg, 1, 256, "classify", "--jobs"))
				return MAMORI_EXIT_USAGE;
			opts.jobs = (unsigned)v;
			break;
		case 'c':
			if (!strcmp(optarg, "auto"))
				opts.candidates = MAMORI_CANDIDATES_AUTO;
			else if (!strcmp(optarg, "lsh"))
				opts.candidates = MAMORI_CANDIDATES_LSH;
			else if (!strcmp(optarg, "all"))
				opts.candidates = MAMORI_CANDIDATES_ALL;
			else {
				fprintf(stderr,
					"mamori classify: --candidates is auto, lsh or all, not '%s'\n",
					optarg);
				return MAMORI_EXIT_USAGE;
			}
			break;
		case 'p': opts.pairs_out = optarg; break;
		case 'm':
			if (!cli_parse_u64(&v, optarg, 1, 100000000, "classify", "--max-files"))
				return MAMORI_EXIT_USAGE;
			opts.max_files = (size_t)v;
			break;
		case 'T':
			if (!cli_parse_u64(&top, optarg, 0, 1000000, "classify", "--top"))
				return MAMORI_EXIT_USAGE;
			break;
		case 'q': opts.quiet = true; break;
		case 'K': opts.keep_library_code = true; break;
		case 'D':
			if (!strcmp(optarg, "traversal"))
				opts.disasm = MAMORI_DISASM_TRAVERSAL;
			else if (!strcmp(optarg, "prob"))
				opts.disasm = MAMORI_DISASM_PROBABILISTIC;
			else {
				fprintf(stderr, "mamori classify: --disasm is traversal or prob, not '%s'\n",
					optarg);
				return MAMORI_EXIT_USAGE;
			}
			break;
		case 'V':
			if (mamori_view_parse(&opts.view, optarg) != MAMORI_OK) {
				fprintf(stderr,
					"mamori classify: --view is exact, arch-neutral, skeleton or "
					"mnemonic, not '%s'\n",
					optarg);
				return MAMORI_EXIT_USAGE;
			}
			break;
		case 'U':
			if (mamori_classify_unpack_parse(&opts.unpack, optarg) != MAMORI_OK) {
				fprintf(stderr,
					"mamori classify: --unpack is auto, always or never, not '%s'\n",
					optarg);
				return MAMORI_EXIT_USAGE;
			}
			break;
		case 'W':
			if (!cli_parse_u64(&v, optarg, 1, 24ull * 3600 * 1000, "classify",
					   "--unpack-timeout"))
				return MAMORI_EXIT_USAGE;
			opts.unpack_timeout_ms = (uint32_t)v;
			break;
		case 'R':
			if (n_refs == sizeof(refs) / sizeof(refs[0])) {
				fprintf(stderr, "mamori classify: at most 64 --library-ref files\n");
				return MAMORI_EXIT_USAGE;
			}
			refs[n_refs++] = optarg;
			break;
		case 'h': usage(stdout); return MAMORI_EXIT_OK;
		default: usage(stderr); return MAMORI_EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "mamori classify: no PATH given\n");
		usage(stderr);
		return MAMORI_EXIT_USAGE;
	}
	if (opts.floor > opts.threshold) {
		fprintf(stderr, "mamori classify: --floor %g is above --threshold %g\n", opts.floor,
			opts.threshold);
		return MAMORI_EXIT_USAGE;
	}
	opts.library_refs = refs;
	opts.n_library_refs = n_refs;
	mamori_classify_result *res = NULL;
	int rc =
		mamori_classify_run(&res, (const char *const *)argv + optind, (size_t)(argc - optind), &opts);
	if (rc != MAMORI_OK) {
		cli_report_error("classify", NULL, rc);
		return mamori_exit_code(rc);
	}
	for (size_t i = 0; i < res->n_samples; i++)
		if (!res->samples[i].ok)
			fprintf(stderr, "mamori classify: %s: %s\n", res->samples[i].path,
				res->samples[i].error);
	if (!opts.quiet)
		print_table(res, (size_t)top, opts.out_dir);
	int exit_code = res->n_failed ? MAMORI_EXIT_PARTIAL : MAMORI_EXIT_OK;
	mamori_classify_result_free(res);
	return exit_code;
}
