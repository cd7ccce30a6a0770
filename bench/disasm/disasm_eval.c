/*
 * disasm-eval: precision and recall of instruction starts against the
 * ground truth of scripts/disasm-truth.
 *
 *   disasm-eval --manifest DIR/manifest.csv [--method M] [--json] [--verbose] [--repeat N]
 *
 * Methods: traversal (mamori_disasm() default), prob (mamori_disasm() with
 * the probabilistic method, when built with it), recursive (a textbook
 * recursive traversal with Zydis written here: entry point, exports and
 * function symbols, direct branches and calls, no gap sweep) and objdump
 * (binutils' linear sweep, parsed from `objdump -d`). Only bytes whose
 * truth is known (NAME.known) are scored; counts are summed per binary
 * class (plain, datacode) and arch. Throughput is MB of code (bytes of the
 * executable regions) per second on one core, for the in-process methods;
 * for objdump it is the wall time of the process, text output included.
 * mamori's listings keep padding (NOPs, INT3) so that every method lists
 * every instruction; padding bytes are unknown in the truth anyway.
 * --repeat N runs each method N times per binary and keeps the best time
 * (the machine is shared; the minimum is the least noisy estimate).
 * --verbose adds a line per binary on stderr: its counts and first errors.
 * Exit codes are those of `mamori` (0 ok, 2 usage, 3 bad input, 1 other).
 */
#include <Zydis/Zydis.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dtruth.h"
#include "mamori/base.h"
#include "mamori/binfmt.h"
#include "mamori/disasm.h"

extern char **environ;

enum {
	MAX_ROWS = 100000,
	MAX_GROUPS = 64,
};
#define MAX_FILE  ((size_t)512 << 20)
#define MAX_TRUTH ((size_t)64 << 20)

typedef enum { M_TRAVERSAL, M_PROB, M_RECURSIVE, M_OBJDUMP } method;

static const char *const method_names[] = { "traversal", "prob", "recursive", "objdump" };

typedef struct group {
	char cls[32], arch[16];
	size_t binaries;
	mamori_dtruth_counts c;
	uint64_t code_bytes;
	double seconds;
} group;

static void usage(FILE *f)
{
	fputs("usage: disasm-eval --manifest DIR/manifest.csv [--method traversal|prob|recursive|objdump] "
	      "[--json] [--verbose] [--repeat N]\n",
	      f);
}

/* ------------------------------------------------------------------ */
/* The textbook recursive traversal. */

typedef struct walk {
	const mamori_binary *b;
	ZydisDecoder dec;
	uint8_t **seen; /* per region, one flag per byte: instruction decoded here */
	mamori_vec todo, starts;
} walk;

static size_t region_of(const mamori_binary *b, uint64_t va)
{
	size_t lo = 0, hi = b->n_code;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (b->code[mid].va + b->code[mid].size <= va)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < b->n_code && b->code[lo].va <= va ? lo : SIZE_MAX;
}

static int push_target(walk *w, uint64_t va)
{
	size_t r = region_of(w->b, va);
	if (r == SIZE_MAX || !w->seen[r] || w->seen[r][va - w->b->code[r].va])
		return MAMORI_OK;
	return mamori_vec_push(&w->todo, &va);
}

static int follow(walk *w, uint64_t va)
{
	size_t r = region_of(w->b, va);
	if (r == SIZE_MAX || !w->seen[r])
		return MAMORI_OK;
	const mamori_region *reg = &w->b->code[r];
	ZydisDecodedInstruction in;
	ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
	for (uint64_t off = va - reg->va; off < reg->size && !w->seen[r][off];) {
		if (!ZYAN_SUCCESS(
			    ZydisDecoderDecodeFull(&w->dec, reg->bytes + off, reg->size - off, &in, ops)))
			return MAMORI_OK;
		w->seen[r][off] = 1;
		uint64_t here = reg->va + off, target;
		int rc = mamori_vec_push(&w->starts, &here);
		if (rc != MAMORI_OK)
			return rc;
		ZydisInstructionCategory cat = in.meta.category;
		bool rel = in.operand_count_visible > 0 && ops[0].type == ZYDIS_OPERAND_TYPE_IMMEDIATE &&
			   ops[0].imm.is_relative;
		if ((cat == ZYDIS_CATEGORY_UNCOND_BR || cat == ZYDIS_CATEGORY_COND_BR ||
		     cat == ZYDIS_CATEGORY_CALL) &&
		    rel && ZYAN_SUCCESS(ZydisCalcAbsoluteAddress(&in, &ops[0], here, &target)) &&
		    (rc = push_target(w, target)) != MAMORI_OK)
			return rc;
		if (cat == ZYDIS_CATEGORY_UNCOND_BR || cat == ZYDIS_CATEGORY_RET ||
		    in.mnemonic == ZYDIS_MNEMONIC_HLT || in.mnemonic == ZYDIS_MNEMONIC_UD2 ||
		    in.mnemonic == ZYDIS_MNEMONIC_INT3)
			return MAMORI_OK;
		off += in.length;
	}
	return MAMORI_OK;
}

static int recursive_starts(uint64_t **out, size_t *out_n, const mamori_binary *b)
{
	walk w = { .b = b };
	uint64_t total = 0;
	int rc = MAMORI_OK;
	for (size_t i = 0; i < b->n_code; i++)
		total += b->code[i].size;
	mamori_vec_init(&w.todo, sizeof(uint64_t), (size_t)total + 4 * (b->n_exports + b->n_symbols) + 16);
	mamori_vec_init(&w.starts, sizeof(uint64_t), (size_t)total + 1);
	bool is_64 = b->arch == MAMORI_ARCH_X86_64;
	if (!ZYAN_SUCCESS(ZydisDecoderInit(&w.dec,
					   is_64 ? ZYDIS_MACHINE_MODE_LONG_64 : ZYDIS_MACHINE_MODE_LEGACY_32,
					   is_64 ? ZYDIS_STACK_WIDTH_64 : ZYDIS_STACK_WIDTH_32))) {
		rc = mamori_fail(MAMORI_EUNSUPPORTED, "Zydis decoder init failed");
		goto done;
	}
	w.seen = calloc(b->n_code ? b->n_code : 1, sizeof(*w.seen));
	if (!w.seen) {
		rc = MAMORI_ENOMEM;
		goto done;
	}
	for (size_t i = 0; i < b->n_code; i++)
		if (!(w.seen[i] = calloc(b->code[i].size ? b->code[i].size : 1, 1))) {
			rc = MAMORI_ENOMEM;
			goto done;
		}
	if (b->has_entry && (rc = push_target(&w, b->entry)) != MAMORI_OK)
		goto done;
	for (size_t i = 0; i < b->n_exports; i++)
		if (b->exports[i].va && (rc = push_target(&w, b->exports[i].va)) != MAMORI_OK)
			goto done;
	for (size_t i = 0; i < b->n_symbols; i++)
		if (b->symbols[i].is_func && (rc = push_target(&w, b->symbols[i].va)) != MAMORI_OK)
			goto done;
	while (w.todo.count > 0) {
		uint64_t va = MAMORI_VEC_AT(&w.todo, uint64_t, --w.todo.count);
		if ((rc = follow(&w, va)) != MAMORI_OK)
			goto done;
	}
	uint64_t *a = mamori_vec_steal(&w.starts, out_n);
	*out_n = mamori_dtruth_sort_unique(a, *out_n);
	*out = a;
done:
	if (w.seen)
		for (size_t i = 0; i < b->n_code; i++)
			free(w.seen[i]);
	free(w.seen);
	mamori_vec_free(&w.todo);
	mamori_vec_free(&w.starts);
	return rc;
}

/* ------------------------------------------------------------------ */
/* mamori's own methods. */

static int mamori_starts(uint64_t **out, size_t *out_n, const mamori_binary *b, method m)
{
	mamori_disasm_opts opts = { .keep_padding = true };
#ifdef DISASM_EVAL_HAVE_PROB
	if (m == M_PROB)
		opts.method = MAMORI_DISASM_PROBABILISTIC;
#else
	if (m == M_PROB)
		return mamori_fail(MAMORI_EUNSUPPORTED, "built without the probabilistic method");
#endif
	mamori_listing *l = NULL;
	int rc = mamori_disasm(&l, b, &opts);
	if (rc != MAMORI_OK)
		return rc;
	uint64_t *a = malloc((l->count ? l->count : 1) * sizeof(*a));
	if (!a) {
		mamori_listing_free(l);
		return MAMORI_ENOMEM;
	}
	for (size_t i = 0; i < l->count; i++)
		a[i] = l->insns[i].va;
	*out_n = mamori_dtruth_sort_unique(a, l->count);
	*out = a;
	mamori_listing_free(l);
	return MAMORI_OK;
}

/* ------------------------------------------------------------------ */
/* objdump's linear sweep, run with a fixed argv (no shell). */

static int objdump_starts(uint64_t **out, size_t *out_n, const char *path, size_t max)
{
	int fds[2] = { -1, -1 };
	FILE *f = NULL;
	char *line = NULL;
	size_t cap = 0;
	pid_t pid = -1;
	mamori_vec v;
	mamori_vec_init(&v, sizeof(uint64_t), max);
	posix_spawn_file_actions_t fa;
	bool fa_init = false;
	int rc = MAMORI_OK;
	if (pipe(fds) != 0) {
		rc = mamori_fail(MAMORI_EIO, "pipe: %s", strerror(errno));
		goto done;
	}
	if (posix_spawn_file_actions_init(&fa) != 0) {
		rc = MAMORI_ENOMEM;
		goto done;
	}
	fa_init = true;
	posix_spawn_file_actions_addclose(&fa, fds[0]);
	posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
	posix_spawn_file_actions_addclose(&fa, fds[1]);
	char *argv[] = { "objdump", "-d", "--no-show-raw-insn", "-M", "intel", (char *)path, NULL };
	int err = posix_spawnp(&pid, "objdump", &fa, NULL, argv, environ);
	if (err != 0) {
		pid = -1;
		rc = mamori_fail(MAMORI_EIO, "cannot run objdump: %s", strerror(err));
		goto done;
	}
	close(fds[1]);
	fds[1] = -1;
	if (!(f = fdopen(fds[0], "r"))) {
		rc = mamori_fail(MAMORI_EIO, "fdopen: %s", strerror(errno));
		goto done;
	}
	fds[0] = -1;
	/* Instruction lines look like "  401000:\tpush   ebp"; headers and labels start in column 0. */
	while (getline(&line, &cap, f) > 0) {
		char *p = line, *end;
		if (*p != ' ')
			continue;
		p += strspn(p, " ");
		errno = 0;
		unsigned long long va = strtoull(p, &end, 16);
		if (end == p || errno != 0 || end[0] != ':' || end[1] != '\t')
			continue;
		uint64_t a = va;
		if (rc == MAMORI_OK && (rc = mamori_vec_push(&v, &a)) != MAMORI_OK)
			continue; /* keep draining the pipe so that objdump can exit */
	}
done:
	if (f)
		fclose(f);
	if (fds[0] >= 0)
		close(fds[0]);
	if (fds[1] >= 0)
		close(fds[1]);
	if (fa_init)
		posix_spawn_file_actions_destroy(&fa);
	if (pid > 0) {
		int status = 0;
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		if (rc == MAMORI_OK && (!WIFEXITED(status) || WEXITSTATUS(status) != 0))
			rc = mamori_fail(MAMORI_EIO, "objdump failed on %s", path);
	}
	free(line);
	if (rc == MAMORI_OK) {
		uint64_t *a = mamori_vec_steal(&v, out_n);
		*out_n = mamori_dtruth_sort_unique(a, *out_n);
		*out = a;
	}
	mamori_vec_free(&v);
	return rc;
}

/* ------------------------------------------------------------------ */

static int read_text(uint64_t **addrs, size_t *n_addrs, mamori_dtruth_range **ranges, size_t *n_ranges,
		     const char *path)
{
	uint8_t *data = NULL;
	size_t len = 0;
	int rc = mamori_file_read(&data, &len, path, MAX_TRUTH);
	if (rc == MAMORI_OK)
		rc = addrs ? mamori_dtruth_parse_addrs(addrs, n_addrs, (const char *)data, len, MAX_TRUTH)
			   : mamori_dtruth_parse_ranges(ranges, n_ranges, (const char *)data, len, MAX_TRUTH);
	free(data);
	return rc;
}

static group *group_for(group *groups, size_t *n, const char *cls, const char *arch)
{
	for (size_t i = 0; i < *n; i++)
		if (strcmp(groups[i].cls, cls) == 0 && strcmp(groups[i].arch, arch) == 0)
			return &groups[i];
	if (*n >= MAX_GROUPS)
		return NULL;
	group *g = &groups[(*n)++];
	memset(g, 0, sizeof(*g));
	snprintf(g->cls, sizeof(g->cls), "%s", cls);
	snprintf(g->arch, sizeof(g->arch), "%s", arch);
	return g;
}

/* Score one binary; its counts go to `g`. With `verbose`, a line per binary
 * on stderr with its counts and first errors. */
static int eval_one(group *g, const char *dir, const mamori_dtruth_row *row, method m, int repeat,
		    bool verbose)
{
	char path[4096], tpath[4096], kpath[4096];
	uint8_t *data = NULL;
	size_t len = 0, n_truth = 0, n_known = 0, n_pred = 0;
	uint64_t *truth = NULL, *pred = NULL;
	mamori_dtruth_range *known = NULL;
	mamori_binary *b = NULL;
	int rc;
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, row->file) >= sizeof(path) ||
	    (size_t)snprintf(tpath, sizeof(tpath), "%s/%s", dir, row->truth) >= sizeof(tpath) ||
	    (size_t)snprintf(kpath, sizeof(kpath), "%s/%s.known", dir, row->file) >= sizeof(kpath)) {
		rc = mamori_fail(MAMORI_EINVAL, "path too long: %s", row->file);
		goto done;
	}
	if ((rc = read_text(&truth, &n_truth, NULL, NULL, tpath)) != MAMORI_OK ||
	    (rc = read_text(NULL, NULL, &known, &n_known, kpath)) != MAMORI_OK ||
	    (rc = mamori_file_read(&data, &len, path, MAX_FILE)) != MAMORI_OK ||
	    (rc = mamori_binary_parse(&b, data, len, NULL)) != MAMORI_OK)
		goto done;
	uint64_t code = 0;
	for (size_t i = 0; i < b->n_code; i++)
		code += b->code[i].size;
	double best = 0;
	for (int r = 0; r < repeat; r++) {
		free(pred);
		pred = NULL;
		double t0 = mamori_now();
		switch (m) {
		case M_TRAVERSAL:
		case M_PROB: rc = mamori_starts(&pred, &n_pred, b, m); break;
		case M_RECURSIVE: rc = recursive_starts(&pred, &n_pred, b); break;
		case M_OBJDUMP: rc = objdump_starts(&pred, &n_pred, path, 2 * (size_t)code + 65536); break;
		}
		double t = mamori_now() - t0;
		if (rc != MAMORI_OK)
			goto done;
		if (r == 0 || t < best)
			best = t;
	}
	mamori_dtruth_counts one = { 0 };
	mamori_dtruth_score(&one, truth, n_truth, known, n_known, pred, n_pred);
	g->c.tp += one.tp;
	g->c.fp += one.fp;
	g->c.fn += one.fn;
	g->binaries++;
	if (verbose) {
		enum { SHOW = 5 };
		uint64_t fp[SHOW], fn[SHOW];
		size_t n_fp, n_fn;
		mamori_dtruth_first_errors(fp, &n_fp, fn, &n_fn, SHOW, truth, n_truth, known, n_known, pred,
					   n_pred);
		fprintf(stderr, "%s: tp %llu fp %llu fn %llu; fp:", row->file, (unsigned long long)one.tp,
			(unsigned long long)one.fp, (unsigned long long)one.fn);
		for (size_t i = 0; i < n_fp; i++)
			fprintf(stderr, " %#llx", (unsigned long long)fp[i]);
		fputs("; fn:", stderr);
		for (size_t i = 0; i < n_fn; i++)
			fprintf(stderr, " %#llx", (unsigned long long)fn[i]);
		fputc('\n', stderr);
	}
	g->code_bytes += code;
	g->seconds += best;
done:
	if (rc != MAMORI_OK)
		fprintf(stderr, "disasm-eval: %s: %s%s%s\n", row->file, mamori_strerror(rc),
			*mamori_error_detail() ? ": " : "", mamori_error_detail());
	mamori_binary_free(b);
	free(data);
	free(truth);
	free(known);
	free(pred);
	return rc;
}

static double mb_per_s(const group *g)
{
	return g->seconds > 0 ? (double)g->code_bytes / 1e6 / g->seconds : 0.0;
}

static void add_group(group *to, const group *from)
{
	to->binaries += from->binaries;
	to->c.tp += from->c.tp;
	to->c.fp += from->c.fp;
	to->c.fn += from->c.fn;
	to->code_bytes += from->code_bytes;
	to->seconds += from->seconds;
}

static json_t *group_json(const group *g)
{
	return json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:f, s:f, s:I, s:f, s:f}", "class", g->cls, "arch",
			 g->arch, "binaries", (json_int_t)g->binaries, "tp", (json_int_t)g->c.tp, "fp",
			 (json_int_t)g->c.fp, "fn", (json_int_t)g->c.fn, "precision",
			 mamori_dtruth_precision(&g->c), "recall", mamori_dtruth_recall(&g->c), "code_bytes",
			 (json_int_t)g->code_bytes, "seconds", g->seconds, "mb_per_s", mb_per_s(g));
}

static void print_group(const group *g)
{
	printf("%-9s %-7s %8zu %10llu %9.4f%% %9.4f%% %9.2f\n", g->cls, g->arch, g->binaries,
	       (unsigned long long)g->c.tp + (unsigned long long)g->c.fn,
	       100.0 * mamori_dtruth_precision(&g->c), 100.0 * mamori_dtruth_recall(&g->c), mb_per_s(g));
}

static int cmp_group(const void *a, const void *b)
{
	const group *x = a, *y = b;
	int c = strcmp(x->cls, y->cls);
	return c ? c : strcmp(x->arch, y->arch);
}

int main(int argc, char **argv)
{
	const char *manifest = NULL;
	method m = M_TRAVERSAL;
	bool json = false, verbose = false;
	int repeat = 1;
	static const struct option opts[] = {
		{ "manifest", required_argument, NULL, 'm' },
		{ "method", required_argument, NULL, 'M' },
		{ "json", no_argument, NULL, 'j' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "repeat", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'm': manifest = optarg; break;
		case 'j': json = true; break;
		case 'v': verbose = true; break;
		case 'r': {
			char *end;
			errno = 0;
			long v = strtol(optarg, &end, 10);
			if (errno != 0 || *end != '\0' || v < 1 || v > 100) {
				fprintf(stderr, "disasm-eval: --repeat wants 1..100\n");
				return 2;
			}
			repeat = (int)v;
			break;
		}
		case 'M': {
			size_t i = 0;
			while (i < sizeof(method_names) / sizeof(method_names[0]) &&
			       strcmp(optarg, method_names[i]) != 0)
				i++;
			if (i == sizeof(method_names) / sizeof(method_names[0])) {
				fprintf(stderr, "disasm-eval: unknown method %s\n", optarg);
				usage(stderr);
				return 2;
			}
			m = (method)i;
			break;
		}
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!manifest || optind != argc) {
		usage(stderr);
		return 2;
	}
#ifndef DISASM_EVAL_HAVE_PROB
	if (m == M_PROB) {
		fprintf(stderr, "disasm-eval: built without the probabilistic method\n");
		return 2;
	}
#endif
	mamori_dtruth_row *rows = NULL;
	size_t n_rows = 0, n_groups = 0, failed = 0;
	group groups[MAX_GROUPS];
	char dir[4096];
	int rc = mamori_dtruth_manifest_read(&rows, &n_rows, manifest, MAX_ROWS);
	if (rc != MAMORI_OK) {
		fprintf(stderr, "disasm-eval: %s: %s: %s\n", manifest, mamori_strerror(rc),
			mamori_error_detail());
		return mamori_exit_code(rc);
	}
	const char *slash = strrchr(manifest, '/');
	snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - manifest) : 1, slash ? manifest : ".");
	for (size_t i = 0; i < n_rows; i++) {
		group *g = group_for(groups, &n_groups, rows[i].cls, rows[i].arch);
		if (!g || eval_one(g, dir, &rows[i], m, repeat, verbose) != MAMORI_OK)
			failed++;
	}
	qsort(groups, n_groups, sizeof(groups[0]), cmp_group);
	/* Totals per class, after the per-arch rows. */
	group totals[MAX_GROUPS];
	size_t n_totals = 0;
	for (size_t i = 0; i < n_groups; i++) {
		group *t = group_for(totals, &n_totals, groups[i].cls, "all");
		if (t)
			add_group(t, &groups[i]);
	}
	if (json) {
		json_t *root = json_object(), *arr = json_array(), *tarr = json_array();
		for (size_t i = 0; i < n_groups; i++)
			json_array_append_new(arr, group_json(&groups[i]));
		for (size_t i = 0; i < n_totals; i++)
			json_array_append_new(tarr, group_json(&totals[i]));
		json_object_set_new(root, "method", json_string(method_names[m]));
		json_object_set_new(root, "groups", arr);
		json_object_set_new(root, "classes", tarr);
		json_object_set_new(root, "failed", json_integer((json_int_t)failed));
		mamori_json_write(stdout, root, true);
		json_decref(root);
	} else {
		printf("method: %s (%zu binaries, %zu failed)\n", method_names[m], n_rows - failed, failed);
		printf("%-9s %-7s %8s %10s %10s %10s %9s\n", "class", "arch", "binaries", "starts",
		       "precision", "recall", "MB/s");
		for (size_t i = 0; i < n_groups; i++)
			print_group(&groups[i]);
		for (size_t i = 0; i < n_totals; i++)
			print_group(&totals[i]);
	}
	mamori_dtruth_rows_free(rows, n_rows);
	return failed ? 1 : 0;
}
