/*
 * The static classification pipeline (see mamori/classify.h for the
 * stages). Work that is per sample or per pair runs on a small pool of
 * threads; the database is one SQLite connection guarded by a mutex and
 * written in one transaction per stage.
 *
 * Identical token sequences are analysed once: similarity is computed over
 * unique sequences, and samples that share a sequence are at distance 0.
 * Pairs that the candidate search does not propose, or whose exact
 * similarity is provably below the floor, are at distance 1.
 *
 * Packed samples: with --unpack auto (the default) a PE whose static pack
 * hint says packed is unpacked first (mamori_unpack, in a child process)
 * and, when that yields a dump, the dump's code is what is disassembled.
 * Such fingerprints are kept in the database under their own analyzer id
 * (the disassembler's id + "+unpack1"), so code from a dump and code from
 * the file never share a cache entry; the fingerprint's format field then
 * also records the unpack status and which code was used
 * ("pe32 unpack=unpacked code=unpacked").
 *
 * Limits: at most `max_files` inputs, samples of at most 256 MiB, and at
 * most MAX_LEAVES distinct samples in one clustering (the distance matrix is
 * dense; larger corpora are for the MPI mode of a later issue).
 */
#include <errno.h>
#include <fts.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mamori/base.h"
#include "mamori/binfmt.h"
#include "mamori/classify.h"
#include "mamori/cluster.h"
#include "mamori/disasm.h"
#include "mamori/emu.h"
#include "mamori/similarity.h"

#define DEFAULT_MAX_FILES 200000
#define MAX_LEAVES	  40000
#define MAX_THREADS	  256

/* ------------------------------------------------------------------ */
/* Small helpers                                                        */
/* ------------------------------------------------------------------ */

static char *xstrdup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xstrdup_printf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = NULL;
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

static const char *base_name(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash ? slash + 1 : path;
}

static unsigned default_jobs(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}

/* A parallel for-loop: `fn(ctx, i)` for i in [0, n) over `jobs` threads. */
typedef void (*work_fn)(void *ctx, size_t i);
typedef struct pool_job {
	work_fn fn;
	void *ctx;
	size_t n;
	atomic_size_t next;
	mamori_progress *progress;
} pool_job;

static void *pool_worker(void *arg)
{
	pool_job *job = arg;
	for (;;) {
		size_t i = atomic_fetch_add(&job->next, 1);
		if (i >= job->n)
			break;
		job->fn(job->ctx, i);
		mamori_progress_add(job->progress, 1);
	}
	return NULL;
}

static void parallel_for(size_t n, unsigned jobs, work_fn fn, void *ctx, const char *label)
{
	pool_job job = { .fn = fn, .ctx = ctx, .n = n, .progress = mamori_progress_start(label, n) };
	atomic_init(&job.next, 0);
	pthread_t th[MAX_THREADS];
	unsigned started = 0;
	if (jobs > MAX_THREADS)
		jobs = MAX_THREADS;
	if (jobs > n)
		jobs = n ? (unsigned)n : 1;
	for (unsigned t = 1; t < jobs; t++)
		if (pthread_create(&th[started], NULL, pool_worker, &job) == 0)
			started++;
	pool_worker(&job); /* the calling thread works too */
	for (unsigned t = 0; t < started; t++)
		pthread_join(th[t], NULL);
	mamori_progress_finish(job.progress);
}

/* ------------------------------------------------------------------ */
/* State                                                                */
/* ------------------------------------------------------------------ */

typedef struct item {
	char *path;
	char sha256[65];
	uint64_t size;
	bool ok;
	bool need_analysis;
	char *error;
	int64_t seq;  /* index into the unique sequences, -1 if none */
	int64_t leaf; /* index of its distinct sample in the clustering, -1 if failed */
	int64_t cluster;
	bool want_unpack;   /* analysed through mamori_unpack (AUTO + hint, or ALWAYS) */
	bool code_unpacked; /* the dump's code was used */
	int unpack_status;  /* mamori_unpack_status, 0 when not tried */
} item;

typedef struct sequence {
	char hash[65];
	uint32_t *tokens;
	size_t n;
	size_t first_item; /* for names in reports */
} sequence;

typedef struct stage_stat {
	const char *name;
	double wall_s;
	double peak_rss_mb;
} stage_stat;

typedef struct run {
	const mamori_classify_opts *opts;
	mamori_db *db;
	mamori_store *store;
	const char *analyzer;	  /* fingerprints of the file's code */
	char analyzer_unpack[64]; /* fingerprints of samples that went through the unpacker */
	char analyzer_run[96];	  /* what the cluster run is recorded under */
	mamori_disasm_opts disasm;
	pthread_mutex_t lock; /* guards db and seqs */
	item *items;
	size_t n_items;
	sequence *seqs;
	size_t n_seqs, cap_seqs;
	size_t *seq_table; /* open addressing: index+1, 0 = empty */
	size_t seq_table_cap;
	stage_stat stages[5];
	size_t n_stages;
	double stage_start;
} run;

static void stage_begin(run *r)
{
	r->stage_start = mamori_now();
}

static void stage_end(run *r, const char *name)
{
	stage_stat *s = &r->stages[r->n_stages++];
	s->name = name;
	s->wall_s = mamori_now() - r->stage_start;
	s->peak_rss_mb = (double)mamori_peak_rss() / (1024.0 * 1024.0);
}

static void item_fail(item *it, int err)
{
	it->ok = false;
	free(it->error);
	const char *detail = mamori_error_detail();
	it->error = detail[0] ? xstrdup_printf("%s: %s", mamori_strerror(err), detail)
			      : xstrdup_printf("%s", mamori_strerror(err));
}

/* Find or add a unique sequence; takes ownership of `tokens` (freed when the
 * sequence is already known or on failure). Caller holds the lock. Returns
 * the index, or -1 on allocation failure. */
static int64_t seq_intern(run *r, const char *hash, uint32_t *tokens, size_t n, size_t item_index)
{
	if (r->n_seqs * 2 >= r->seq_table_cap) {
		size_t cap = r->seq_table_cap ? r->seq_table_cap * 2 : 1024;
		size_t *t = calloc(cap, sizeof(*t));
		if (!t) {
			free(tokens);
			return -1;
		}
		for (size_t i = 0; i < r->n_seqs; i++) {
			size_t h = (size_t)mamori_hash64(r->seqs[i].hash, 64, 0) & (cap - 1);
			while (t[h])
				h = (h + 1) & (cap - 1);
			t[h] = i + 1;
		}
		free(r->seq_table);
		r->seq_table = t;
		r->seq_table_cap = cap;
	}
	size_t h = (size_t)mamori_hash64(hash, 64, 0) & (r->seq_table_cap - 1);
	while (r->seq_table[h]) {
		size_t idx = r->seq_table[h] - 1;
		if (!strcmp(r->seqs[idx].hash, hash)) {
			free(tokens);
			return (int64_t)idx;
		}
		h = (h + 1) & (r->seq_table_cap - 1);
	}
	if (r->n_seqs == r->cap_seqs) {
		size_t cap = r->cap_seqs ? r->cap_seqs * 2 : 256;
		sequence *s = realloc(r->seqs, cap * sizeof(*s));
		if (!s) {
			free(tokens);
			return -1;
		}
		r->seqs = s;
		r->cap_seqs = cap;
	}
	sequence *s = &r->seqs[r->n_seqs];
	snprintf(s->hash, sizeof(s->hash), "%s", hash);
	s->tokens = tokens;
	s->n = n;
	s->first_item = item_index;
	r->seq_table[h] = ++r->n_seqs;
	return (int64_t)(r->n_seqs - 1);
}

static void token_seq_hash(char out[65], const uint32_t *tokens, size_t n)
{
	/* Hash the little-endian bytes so the value is the same on any host. */
	uint8_t *bytes = malloc(n * 4 + 1);
	if (!bytes) {
		out[0] = '\0';
		return;
	}
	for (size_t i = 0; i < n; i++) {
		bytes[4 * i] = (uint8_t)tokens[i];
		bytes[4 * i + 1] = (uint8_t)(tokens[i] >> 8);
		bytes[4 * i + 2] = (uint8_t)(tokens[i] >> 16);
		bytes[4 * i + 3] = (uint8_t)(tokens[i] >> 24);
	}
	mamori_sha256_hex(out, bytes, n * 4);
	free(bytes);
}

/* ------------------------------------------------------------------ */
/* Walking the inputs                                                   */
/* ------------------------------------------------------------------ */

static int cmp_fts(const FTSENT **a, const FTSENT **b)
{
	return strcmp((*a)->fts_name, (*b)->fts_name);
}

static int collect_files(run *r, const char *const *paths, size_t n_paths)
{
	int rc = MAMORI_OK;
	size_t max = r->opts->max_files ? r->opts->max_files : DEFAULT_MAX_FILES;
	mamori_vec v;
	mamori_vec_init(&v, sizeof(item), max);
	char **argv = calloc(n_paths + 1, sizeof(char *));
	FTS *fts = NULL;
	if (!argv) {
		rc = mamori_fail(MAMORI_ENOMEM, "input list");
		goto done;
	}
	for (size_t i = 0; i < n_paths; i++) {
		if (access(paths[i], F_OK) != 0) {
			rc = mamori_fail(MAMORI_EINVAL, "%s: %s", paths[i], strerror(errno));
			goto done;
		}
		argv[i] = (char *)paths[i];
	}
	fts = fts_open(argv, FTS_PHYSICAL | FTS_NOCHDIR, cmp_fts);
	if (!fts) {
		rc = mamori_fail(MAMORI_EIO, "cannot walk the inputs: %s", strerror(errno));
		goto done;
	}
	FTSENT *e;
	while ((e = fts_read(fts))) {
		if (e->fts_info != FTS_F)
			continue;
		item it = { .seq = -1, .leaf = -1, .cluster = -1 };
		it.path = strdup(e->fts_path);
		if (!it.path) {
			rc = mamori_fail(MAMORI_ENOMEM, "input list");
			goto done;
		}
		if ((rc = mamori_vec_push(&v, &it))) {
			free(it.path);
			rc = mamori_fail(MAMORI_ELIMIT, "more than %zu input files (raise --max-files)", max);
			goto done;
		}
	}
done:
	if (fts)
		fts_close(fts);
	free(argv);
	if (rc != MAMORI_OK) {
		for (size_t i = 0; i < v.count; i++)
			free(MAMORI_VEC_AT(&v, item, i).path);
		mamori_vec_free(&v);
		return rc;
	}
	r->items = mamori_vec_steal(&v, &r->n_items);
	return MAMORI_OK;
}

/* ------------------------------------------------------------------ */
/* Stage 1: ingest                                                      */
/* ------------------------------------------------------------------ */

/* Whether `data` goes through the unpacker under the run's mode: PE
 * executables only (the emulator runs no DLLs), all of them for ALWAYS,
 * those whose static pack hint says packed for AUTO. */
static bool wants_unpack(const run *r, const uint8_t *data, size_t len)
{
	if (r->opts->unpack == MAMORI_CLASSIFY_UNPACK_NEVER)
		return false;
	mamori_binary *b = NULL;
	bool want = false;
	if (mamori_binary_parse(&b, data, len, NULL) == MAMORI_OK &&
	    (b->format == MAMORI_FMT_PE32 || b->format == MAMORI_FMT_PE32PLUS) && !b->is_dll) {
		if (r->opts->unpack == MAMORI_CLASSIFY_UNPACK_ALWAYS) {
			want = true;
		} else {
			mamori_pack_hint h;
			mamori_pack_hint_of(&h, b);
			want = h.packed;
		}
	}
	mamori_binary_free(b);
	return want;
}

/* The format field of an unpacker fingerprint carries its outcome. */
static void unpack_format_decode(item *it, const char *format)
{
	const char *u = format ? strstr(format, " unpack=") : NULL;
	const char *c = format ? strstr(format, " code=") : NULL;
	it->unpack_status = 0;
	for (int st = MAMORI_UNPACK_UNPACKED; u && st <= MAMORI_UNPACK_ERROR; st++) {
		const char *name = mamori_unpack_status_name((mamori_unpack_status)st);
		size_t n = strlen(name);
		if (!strncmp(u + 8, name, n) && (u[8 + n] == ' ' || u[8 + n] == '\0'))
			it->unpack_status = st;
	}
	it->code_unpacked = c && !strncmp(c + 6, "unpacked", 8);
}

static void ingest_one(void *ctx, size_t i)
{
	run *r = ctx;
	item *it = &r->items[i];
	uint8_t *data = NULL;
	size_t len = 0;
	mamori_fingerprint fp;
	int rc = mamori_file_read(&data, &len, it->path, MAMORI_MAX_SAMPLE_SIZE);
	if (rc != MAMORI_OK) {
		item_fail(it, rc);
		return;
	}
	it->size = len;
	it->want_unpack = wants_unpack(r, data, len);
	rc = mamori_store_put(r->store, data, len, it->sha256);
	free(data);
	if (rc != MAMORI_OK) {
		item_fail(it, rc);
		return;
	}
	pthread_mutex_lock(&r->lock);
	rc = mamori_db_sample_add(r->db, it->sha256, len, it->path);
	if (rc == MAMORI_OK)
		rc = mamori_db_fingerprint_get(r->db, it->sha256,
					       it->want_unpack ? r->analyzer_unpack : r->analyzer, &fp);
	if (rc == MAMORI_OK) {
		if (it->want_unpack)
			unpack_format_decode(it, fp.format);
		if (fp.ok) {
			it->ok = true;
			it->seq = seq_intern(r, fp.seq_hash, fp.tokens, fp.n_tokens, i);
			fp.tokens = NULL;
			if (it->seq < 0)
				item_fail(it, mamori_fail(MAMORI_ENOMEM, "sequence table"));
		} else {
			it->ok = false;
			it->error = fp.error ? strdup(fp.error) : strdup("analysis failed");
		}
		mamori_fingerprint_clear(&fp);
	} else if (rc == MAMORI_ENOTFOUND) {
		it->need_analysis = true;
	} else {
		item_fail(it, rc);
	}
	pthread_mutex_unlock(&r->lock);
}

/* ------------------------------------------------------------------ */
/* Stage 2: disassembly of what the database does not hold              */
/* ------------------------------------------------------------------ */

/* The sample is read a second time, from the store: holding every file
 * from ingest to here would cost the corpus size in memory (1 GB for the
 * benchmark corpus), and the second read comes from the page cache. */

/*
 * Unpack the sample and, when that gives a dump whose code disassembles,
 * hand back the dump's binary and listing (`*bin` borrows ur->dump). On
 * any other outcome *bin and *lst stay NULL and the file is used.
 */
static void unpack_code_of(const run *r, item *it, const uint8_t *data, size_t len, mamori_unpack_result *ur,
			   mamori_binary **bin, mamori_listing **lst)
{
	mamori_unpack_options uo;
	memset(&uo, 0, sizeof(uo));
	uo.timeout_ms = r->opts->unpack_timeout_ms;
	if (mamori_unpack(ur, data, len, &uo) != MAMORI_OK) {
		it->unpack_status = MAMORI_UNPACK_ERROR;
		return;
	}
	it->unpack_status = ur->status;
	if (ur->status != MAMORI_UNPACK_UNPACKED || !ur->dump)
		return;
	if (mamori_binary_parse(bin, ur->dump, ur->dump_len, NULL) != MAMORI_OK)
		return;
	if (mamori_disasm(lst, *bin, &r->disasm) != MAMORI_OK || (*lst)->count == 0) {
		mamori_listing_free(*lst);
		mamori_binary_free(*bin);
		*lst = NULL;
		*bin = NULL;
		return;
	}
	it->code_unpacked = true;
}

static void analyse_one(void *ctx, size_t i)
{
	run *r = ctx;
	item *it = &r->items[i];
	if (!it->need_analysis)
		return;
	uint8_t *data = NULL;
	size_t len = 0;
	mamori_binary *bin = NULL;
	mamori_listing *lst = NULL;
	mamori_fingerprint fp;
	mamori_unpack_result ur;
	memset(&fp, 0, sizeof(fp));
	memset(&ur, 0, sizeof(ur));
	const char *analyzer = it->want_unpack ? r->analyzer_unpack : r->analyzer;
	char path[4096];
	int rc = mamori_store_path(r->store, it->sha256, path, sizeof(path));
	if (rc == MAMORI_OK)
		rc = mamori_file_read(&data, &len, path, MAMORI_MAX_SAMPLE_SIZE);
	if (rc == MAMORI_OK && it->want_unpack)
		unpack_code_of(r, it, data, len, &ur, &bin, &lst);
	if (rc == MAMORI_OK && !bin)
		rc = mamori_binary_parse(&bin, data, len, NULL);
	if (rc == MAMORI_OK && !lst)
		rc = mamori_disasm(&lst, bin, &r->disasm);
	if (rc == MAMORI_OK && lst->count == 0)
		rc = mamori_fail(MAMORI_EFORMAT, "no instructions found in the executable regions");
	snprintf(fp.sha256, sizeof(fp.sha256), "%s", it->sha256);
	snprintf(fp.analyzer, sizeof(fp.analyzer), "%s", analyzer);
	if (rc == MAMORI_OK) {
		fp.ok = true;
		if (it->want_unpack)
			fp.format = xstrdup_printf(
				"%s unpack=%s code=%s", mamori_format_name(bin->format),
				mamori_unpack_status_name((mamori_unpack_status)it->unpack_status),
				it->code_unpacked ? "unpacked" : "file");
		else
			fp.format = strdup(mamori_format_name(bin->format));
		fp.n_tokens = lst->count;
		fp.tokens = malloc((lst->count ? lst->count : 1) * sizeof(uint32_t));
		if (!fp.tokens) {
			rc = mamori_fail(MAMORI_ENOMEM, "%zu tokens", lst->count);
		} else {
			for (size_t k = 0; k < lst->count; k++)
				fp.tokens[k] = lst->insns[k].token;
			token_seq_hash(fp.seq_hash, fp.tokens, fp.n_tokens);
		}
	}
	/* mamori_fingerprint_clear() (db.c) frees the tokens; the analyzer cannot see it. */
	if (rc != MAMORI_OK) { // NOLINT(clang-analyzer-unix.Malloc)
		item_fail(it, rc);
		mamori_fingerprint_clear(&fp);
		snprintf(fp.sha256, sizeof(fp.sha256), "%s", it->sha256);
		snprintf(fp.analyzer, sizeof(fp.analyzer), "%s", analyzer);
		fp.ok = false;
		fp.error = it->error ? strdup(it->error) : NULL;
	}
	/* Resource exhaustion is about this machine, not the sample: do not
	 * cache it as the sample's verdict. */
	bool cache = rc == MAMORI_OK || (rc != MAMORI_ENOMEM && rc != MAMORI_EIO);
	/* So is an unpacker error (a timeout under load, a crash): try again next time. */
	if (it->want_unpack && it->unpack_status == MAMORI_UNPACK_ERROR)
		cache = false;
	pthread_mutex_lock(&r->lock);
	int dbrc = cache ? mamori_db_fingerprint_put(r->db, &fp) : MAMORI_OK;
	if (rc == MAMORI_OK) {
		it->ok = true;
		it->seq = seq_intern(r, fp.seq_hash, fp.tokens, fp.n_tokens, i);
		fp.tokens = NULL;
		if (it->seq < 0)
			item_fail(it, mamori_fail(MAMORI_ENOMEM, "sequence table"));
	}
	if (dbrc != MAMORI_OK)
		mamori_log(MAMORI_LOG_WARN, "%s: %s", it->path, mamori_error_detail());
	pthread_mutex_unlock(&r->lock);
	mamori_fingerprint_clear(&fp);
	mamori_listing_free(lst);
	mamori_binary_free(bin);
	mamori_unpack_result_free(&ur);
	free(data);
}

/* ------------------------------------------------------------------ */
/* The sequences that are compared                                      */
/* ------------------------------------------------------------------ */

/* Known library code is removed first (see libcode.c), then the tokens are
 * put in the chosen view: exact tokens, architecture-neutral ones, or the
 * skeleton without pure data movement. */
static int prepare_sequences(run *r, mamori_classify_result *res)
{
	int rc = MAMORI_OK;
	mamori_libcode *lc = NULL;
	size_t builtin = 0;
	if (!r->opts->keep_library_code) {
		if ((rc = mamori_libcode_new(&lc, MAMORI_LIBCODE_K)))
			goto done;
		mamori_libcode_set_disasm(lc, &r->disasm);
		if ((rc = mamori_libcode_add_builtin(lc, &builtin)))
			goto done;
		for (size_t i = 0; i < r->opts->n_library_refs; i++) {
			uint8_t *data = NULL;
			size_t len = 0;
			rc = mamori_file_read(&data, &len, r->opts->library_refs[i], MAMORI_MAX_SAMPLE_SIZE);
			if (rc == MAMORI_OK)
				rc = mamori_libcode_add_binary(lc, data, len);
			free(data);
			if (rc != MAMORI_OK) {
				/* mamori_fail() writes the detail it would read: copy it first. */
				char why[256];
				snprintf(why, sizeof(why), "%s", mamori_error_detail());
				rc = mamori_fail(rc, "library reference %s: %s", r->opts->library_refs[i],
						 why);
				goto done;
			}
		}
		res->library_windows = mamori_libcode_size(lc);
	}
	for (size_t i = 0; i < r->n_seqs; i++) {
		sequence *s = &r->seqs[i];
		size_t n = lc ? mamori_libcode_filter(lc, s->tokens, s->n) : s->n;
		res->tokens_total += s->n;
		res->library_tokens_removed += s->n - n;
		if (r->opts->view != MAMORI_VIEW_EXACT) {
			size_t kept = 0;
			for (size_t t = 0; t < n; t++) {
				uint32_t tok = s->tokens[t];
				if (r->opts->view >= MAMORI_VIEW_SKELETON && mamori_token_is_data_move(tok))
					continue;
				tok = mamori_token_arch_neutral(tok);
				if (r->opts->view == MAMORI_VIEW_MNEMONIC)
					tok = mamori_token_mnemonic_only(tok);
				s->tokens[kept++] = tok;
			}
			n = kept;
		}
		res->tokens_compared += n;
		/* The cache key must name what is compared. */
		s->n = n;
		char view_hash[65];
		token_seq_hash(view_hash, s->tokens, n);
		snprintf(s->hash, sizeof(s->hash), "%s", view_hash);
	}
done:
	mamori_libcode_free(lc);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Stage 3: similarity over unique sequences                            */
/* ------------------------------------------------------------------ */

typedef struct pair_job {
	run *r;
	mamori_pair *pairs;
	size_t n;
	float *sim; /* result per pair; < 0 = below the floor */
	bool *cached;
} pair_job;

static void pair_one(void *ctx, size_t k)
{
	pair_job *pj = ctx;
	if (pj->cached[k])
		return;
	const sequence *a = &pj->r->seqs[pj->pairs[k].a];
	const sequence *b = &pj->r->seqs[pj->pairs[k].b];
	double s = 0;
	int rc = mamori_similarity(&s, a->tokens, a->n, b->tokens, b->n, pj->r->opts->floor);
	pj->sim[k] = rc == MAMORI_OK ? (float)s : -1.0f;
}

static int all_pairs(mamori_pair **out, size_t *out_count, const run *r)
{
	/* Exhaustive candidates, still with the free length filter: S <= min/max. */
	mamori_vec v;
	mamori_vec_init(&v, sizeof(mamori_pair), SIZE_MAX / sizeof(mamori_pair));
	for (size_t i = 0; i < r->n_seqs; i++) {
		for (size_t j = i + 1; j < r->n_seqs; j++) {
			size_t lo = r->seqs[i].n < r->seqs[j].n ? r->seqs[i].n : r->seqs[j].n;
			size_t hi = r->seqs[i].n < r->seqs[j].n ? r->seqs[j].n : r->seqs[i].n;
			if (hi && (double)lo / (double)hi < r->opts->floor)
				continue;
			mamori_pair p = { (uint32_t)i, (uint32_t)j };
			int rc = mamori_vec_push(&v, &p);
			if (rc != MAMORI_OK) {
				mamori_vec_free(&v);
				return rc;
			}
		}
	}
	*out = mamori_vec_steal(&v, out_count);
	return MAMORI_OK;
}

static int compute_similarities(run *r, float *seq_dist, mamori_classify_result *res)
{
	int rc = MAMORI_OK;
	mamori_pair *pairs = NULL;
	size_t n_pairs = 0;
	mamori_lsh *lsh = NULL;
	pair_job pj = { .r = r };
	FILE *pf = NULL;
	size_t all = r->n_seqs > 1 ? r->n_seqs * (r->n_seqs - 1) / 2 : 0;
	res->candidates_used = r->opts->candidates;
	if (res->candidates_used == MAMORI_CANDIDATES_AUTO)
		res->candidates_used =
			all <= MAMORI_CLASSIFY_AUTO_MAX_PAIRS ? MAMORI_CANDIDATES_ALL : MAMORI_CANDIDATES_LSH;
	if (res->candidates_used == MAMORI_CANDIDATES_ALL) {
		rc = all_pairs(&pairs, &n_pairs, r);
	} else {
		rc = mamori_lsh_new(&lsh, NULL);
		for (size_t i = 0; rc == MAMORI_OK && i < r->n_seqs; i++)
			rc = mamori_lsh_add(lsh, (uint32_t)i, r->seqs[i].tokens, r->seqs[i].n);
		if (rc == MAMORI_OK)
			rc = mamori_lsh_candidates(lsh, r->opts->floor, &pairs, &n_pairs);
	}
	if (rc != MAMORI_OK)
		goto done;
	res->candidate_pairs = n_pairs;
	pj.pairs = pairs;
	pj.n = n_pairs;
	pj.sim = calloc(n_pairs ? n_pairs : 1, sizeof(float));
	pj.cached = calloc(n_pairs ? n_pairs : 1, sizeof(bool));
	if (!pj.sim || !pj.cached) {
		rc = mamori_fail(MAMORI_ENOMEM, "%zu candidate pairs", n_pairs);
		goto done;
	}
	for (size_t k = 0; k < n_pairs; k++) {
		double s;
		bool below;
		if (mamori_db_similarity_get(r->db, r->seqs[pairs[k].a].hash, r->seqs[pairs[k].b].hash,
					     r->opts->floor, &s, &below) == MAMORI_OK) {
			pj.cached[k] = true;
			pj.sim[k] = below ? -1.0f : (float)s;
			res->cached_pairs++;
		}
	}
	parallel_for(n_pairs, r->opts->jobs, pair_one, &pj, "similarity");
	if ((rc = mamori_db_begin(r->db)))
		goto done;
	for (size_t k = 0; k < n_pairs; k++) {
		if (pj.cached[k])
			continue;
		res->exact_pairs++;
		bool below = pj.sim[k] < 0;
		int prc = mamori_db_similarity_put(r->db, r->seqs[pairs[k].a].hash, r->seqs[pairs[k].b].hash,
						   r->opts->floor, below ? 0.0 : pj.sim[k], below);
		if (prc != MAMORI_OK)
			mamori_log(MAMORI_LOG_WARN, "similarity cache: %s", mamori_error_detail());
	}
	if ((rc = mamori_db_commit(r->db)))
		goto done;
	if (r->opts->pairs_out) {
		pf = fopen(r->opts->pairs_out, "w");
		if (!pf) {
			rc = mamori_fail(MAMORI_EIO, "%s: %s", r->opts->pairs_out, strerror(errno));
			goto done;
		}
		fprintf(pf, "sha_a,sha_b,similarity\n");
	}
	for (size_t k = 0; k < n_pairs; k++) {
		if (pj.sim[k] < 0) {
			res->below_pairs++;
			continue;
		}
		size_t a = pairs[k].a, b = pairs[k].b;
		seq_dist[mamori_condensed_index(r->n_seqs, a, b)] = 1.0f - pj.sim[k];
		if (pf)
			fprintf(pf, "%s,%s,%.6f\n", r->items[r->seqs[a].first_item].sha256,
				r->items[r->seqs[b].first_item].sha256, pj.sim[k]);
	}
	if (pf && fclose(pf) != 0)
		rc = mamori_fail(MAMORI_EIO, "%s: write failed", r->opts->pairs_out);
	pf = NULL;
done:
	if (pf)
		fclose(pf);
	mamori_lsh_free(lsh);
	free(pairs);
	free(pj.sim);
	free(pj.cached);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Stage 4: clustering                                                  */
/* ------------------------------------------------------------------ */

typedef struct leafset {
	size_t n;
	size_t *item_of_leaf; /* first item index of each distinct sample */
	float *dist;	      /* condensed n x n */
	mamori_dendrogram *tree;
	int64_t *labels;
	size_t k;
} leafset;

static void leafset_free(leafset *ls)
{
	free(ls->item_of_leaf);
	free(ls->dist);
	mamori_dendrogram_free(ls->tree);
	free(ls->labels);
}

/* Assign a leaf to every distinct ok sample (by SHA-256). */
static int assign_leaves(run *r, leafset *ls)
{
	ls->item_of_leaf = calloc(r->n_items ? r->n_items : 1, sizeof(size_t));
	if (!ls->item_of_leaf)
		return mamori_fail(MAMORI_ENOMEM, "leaf table");
	/* Hash table from sha to leaf. */
	size_t cap = 1;
	while (cap < r->n_items * 2 + 2)
		cap <<= 1;
	int64_t *table = malloc(cap * sizeof(int64_t));
	if (!table)
		return mamori_fail(MAMORI_ENOMEM, "leaf table");
	for (size_t i = 0; i < cap; i++)
		table[i] = -1;
	for (size_t i = 0; i < r->n_items; i++) {
		item *it = &r->items[i];
		if (!it->ok)
			continue;
		size_t h = (size_t)mamori_hash64(it->sha256, 64, 1) & (cap - 1);
		while (table[h] >= 0 && strcmp(r->items[ls->item_of_leaf[table[h]]].sha256, it->sha256) != 0)
			h = (h + 1) & (cap - 1);
		if (table[h] < 0) {
			table[h] = (int64_t)ls->n;
			ls->item_of_leaf[ls->n++] = i;
		}
		it->leaf = table[h];
	}
	free(table);
	if (ls->n > MAX_LEAVES)
		return mamori_fail(MAMORI_ELIMIT, "%zu distinct samples is more than %d for one clustering",
				   ls->n, MAX_LEAVES);
	return MAMORI_OK;
}

static int cluster_leaves(run *r, leafset *ls, const float *seq_dist)
{
	size_t n = ls->n;
	size_t cells = n > 1 ? n * (n - 1) / 2 : 1;
	ls->dist = malloc(cells * sizeof(float));
	ls->labels = malloc((n ? n : 1) * sizeof(int64_t));
	if (!ls->dist || !ls->labels)
		return mamori_fail(MAMORI_ENOMEM, "distance matrix of %zu samples", n);
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		size_t si = (size_t)r->items[ls->item_of_leaf[i]].seq;
		for (size_t j = i + 1; j < n; j++, k++) {
			size_t sj = (size_t)r->items[ls->item_of_leaf[j]].seq;
			ls->dist[k] = si == sj
					      ? 0.0f
					      : seq_dist[si < sj ? mamori_condensed_index(r->n_seqs, si, sj)
								 : mamori_condensed_index(r->n_seqs, sj, si)];
		}
	}
	if (n == 0)
		return MAMORI_OK;
	/* mamori_hac may reuse the matrix as scratch; keep a copy for medoids. */
	float *work = malloc(cells * sizeof(float));
	if (!work)
		return mamori_fail(MAMORI_ENOMEM, "distance matrix of %zu samples", n);
	memcpy(work, ls->dist, cells * sizeof(float));
	int rc = mamori_hac(&ls->tree, work, n, r->opts->linkage);
	free(work);
	if (rc == MAMORI_OK)
		rc = mamori_dendrogram_cut(ls->labels, &ls->k, ls->tree, 1.0 - r->opts->threshold);
	return rc;
}

/* The representative of a cluster is its medoid: the member with the
 * smallest total distance to the others. */
static int pick_representatives(const leafset *ls, size_t *rep_leaf)
{
	double *best = malloc((ls->k ? ls->k : 1) * sizeof(double));
	double *sum = malloc((ls->n ? ls->n : 1) * sizeof(double));
	if (!best || !sum) {
		free(best);
		free(sum);
		return mamori_fail(MAMORI_ENOMEM, "representatives");
	}
	for (size_t i = 0; i < ls->n; i++)
		sum[i] = 0;
	for (size_t i = 0; i < ls->n; i++)
		for (size_t j = i + 1; j < ls->n; j++)
			if (ls->labels[i] == ls->labels[j]) {
				double d = ls->dist[mamori_condensed_index(ls->n, i, j)];
				sum[i] += d;
				sum[j] += d;
			}
	for (size_t c = 0; c < ls->k; c++)
		best[c] = -1;
	for (size_t i = 0; i < ls->n; i++) {
		size_t c = (size_t)ls->labels[i];
		if (best[c] < 0 || sum[i] < best[c]) {
			best[c] = sum[i];
			rep_leaf[c] = i;
		}
	}
	free(best);
	free(sum);
	return MAMORI_OK;
}

/* ------------------------------------------------------------------ */
/* Stage 5: output                                                      */
/* ------------------------------------------------------------------ */

static int out_path(char *buf, size_t size, const char *dir, const char *name)
{
	int n = snprintf(buf, size, "%s/%s", dir, name);
	if (n < 0 || (size_t)n >= size)
		return mamori_fail(MAMORI_EINVAL, "output path too long: %s/%s", dir, name);
	return MAMORI_OK;
}

static int write_clusters_json(const run *r, const leafset *ls, const mamori_classify_result *res)
{
	char path[4096];
	int rc = out_path(path, sizeof(path), r->opts->out_dir, "clusters.json");
	if (rc)
		return rc;
	json_t *root = json_object();
	json_t *samples = json_array();
	json_t *clusters = json_array();
	json_object_set_new(root, "threshold", json_real(r->opts->threshold));
	json_object_set_new(root, "linkage", json_string(mamori_linkage_name(r->opts->linkage)));
	json_object_set_new(root, "analyzer", json_string(r->analyzer));
	json_object_set_new(root, "view", json_string(mamori_view_name(r->opts->view)));
	json_object_set_new(root, "library_code_removed", json_boolean(!r->opts->keep_library_code));
	json_object_set_new(root, "unpack", json_string(mamori_classify_unpack_name(r->opts->unpack)));
	for (size_t i = 0; i < r->n_items; i++) {
		const item *it = &r->items[i];
		json_t *s = json_object();
		json_object_set_new(s, "path", json_string(it->path));
		json_object_set_new(s, "sha256", it->sha256[0] ? json_string(it->sha256) : json_null());
		json_object_set_new(s, "cluster", it->cluster >= 0 ? json_integer(it->cluster) : json_null());
		json_object_set_new(s, "status", json_string(it->ok ? "ok" : "error"));
		json_object_set_new(s, "code",
				    it->ok ? json_string(it->code_unpacked ? "unpacked" : "file")
					   : json_null());
		json_object_set_new(s, "unpack",
				    it->unpack_status ? json_string(mamori_unpack_status_name(
								(mamori_unpack_status)it->unpack_status))
						      : json_null());
		if (!it->ok)
			json_object_set_new(s, "error", json_string(it->error ? it->error : "unknown error"));
		json_array_append_new(samples, s);
	}
	for (size_t c = 0; c < res->n_clusters; c++) {
		const mamori_classify_cluster *cl = &res->clusters[c];
		json_t *o = json_object();
		json_t *members = json_array();
		json_object_set_new(o, "id", json_integer(cl->id));
		json_object_set_new(o, "size", json_integer((json_int_t)cl->size));
		json_object_set_new(o, "share", json_real(cl->share));
		json_object_set_new(o, "representative", json_string(r->items[cl->representative].sha256));
		json_object_set_new(o, "representative_path", json_string(r->items[cl->representative].path));
		for (size_t l = 0; l < ls->n; l++)
			if (ls->labels[l] == cl->id)
				json_array_append_new(members,
						      json_string(r->items[ls->item_of_leaf[l]].sha256));
		json_object_set_new(o, "members", members);
		json_array_append_new(clusters, o);
	}
	json_object_set_new(root, "samples", samples);
	json_object_set_new(root, "clusters", clusters);
	rc = mamori_json_write_path(path, root);
	json_decref(root);
	return rc;
}

static int write_tree_files(const run *r, const leafset *ls)
{
	int rc = MAMORI_OK;
	char path[4096];
	char *newick = NULL;
	FILE *f = NULL;
	const char **names = calloc(ls->n ? ls->n : 1, sizeof(char *));
	if (!names)
		return mamori_fail(MAMORI_ENOMEM, "leaf names");
	for (size_t l = 0; l < ls->n; l++)
		names[l] = base_name(r->items[ls->item_of_leaf[l]].path);
	if (!ls->tree)
		goto done;
	if ((rc = mamori_dendrogram_newick(&newick, ls->tree, names)))
		goto done;
	if ((rc = out_path(path, sizeof(path), r->opts->out_dir, "tree.nwk")))
		goto done;
	if ((rc = mamori_file_write_atomic(path, newick, strlen(newick))))
		goto done;
	if ((rc = out_path(path, sizeof(path), r->opts->out_dir, "dendrogram.svg")))
		goto done;
	f = fopen(path, "w");
	if (!f) {
		rc = mamori_fail(MAMORI_EIO, "%s: %s", path, strerror(errno));
		goto done;
	}
	char title[256];
	snprintf(title, sizeof(title), "mamori: %zu samples, %zu families at similarity %.2f (%s linkage)",
		 ls->n, ls->k, r->opts->threshold, mamori_linkage_name(r->opts->linkage));
	mamori_svg_opts so = { .title = title,
			       .cut_height = 1.0 - r->opts->threshold,
			       .labels = ls->labels,
			       .label_max_chars = 28 };
	rc = mamori_dendrogram_svg(f, ls->tree, names, &so);
	if (fclose(f) != 0 && rc == MAMORI_OK)
		rc = mamori_fail(MAMORI_EIO, "%s: write failed", path);
	f = NULL;
done:
	free(names);
	free(newick);
	return rc;
}

static int write_stats(const run *r, const mamori_classify_result *res, const leafset *ls)
{
	char path[4096];
	int rc = out_path(path, sizeof(path), r->opts->out_dir, "stats.json");
	if (rc)
		return rc;
	json_t *root = json_object();
	json_t *stages = json_array();
	json_object_set_new(root, "analyzer", json_string(r->analyzer));
	json_object_set_new(root, "samples", json_integer((json_int_t)r->n_items));
	json_object_set_new(root, "ok", json_integer((json_int_t)(r->n_items - res->n_failed)));
	json_object_set_new(root, "failed", json_integer((json_int_t)res->n_failed));
	json_object_set_new(root, "distinct_samples", json_integer((json_int_t)ls->n));
	json_object_set_new(root, "unique_sequences", json_integer((json_int_t)res->unique_sequences));
	json_object_set_new(root, "candidates", json_string(mamori_candidates_name(res->candidates_used)));
	json_object_set_new(root, "candidate_pairs", json_integer((json_int_t)res->candidate_pairs));
	json_object_set_new(root, "exact_pairs", json_integer((json_int_t)res->exact_pairs));
	json_object_set_new(root, "cached_pairs", json_integer((json_int_t)res->cached_pairs));
	json_object_set_new(root, "below_pairs", json_integer((json_int_t)res->below_pairs));
	json_object_set_new(root, "clusters", json_integer((json_int_t)res->n_clusters));
	json_object_set_new(root, "library_windows", json_integer((json_int_t)res->library_windows));
	json_object_set_new(root, "tokens_total", json_integer((json_int_t)res->tokens_total));
	json_object_set_new(root, "library_tokens_removed",
			    json_integer((json_int_t)res->library_tokens_removed));
	json_object_set_new(root, "tokens_compared", json_integer((json_int_t)res->tokens_compared));
	json_object_set_new(root, "view", json_string(mamori_view_name(r->opts->view)));
	json_object_set_new(root, "threshold", json_real(r->opts->threshold));
	json_object_set_new(root, "floor", json_real(r->opts->floor));
	json_object_set_new(root, "jobs", json_integer(r->opts->jobs));
	{
		/* What the unpacker did: per status, and how many samples were compared by the dump's code.
		 */
		size_t per[MAMORI_UNPACK_ERROR + 1] = { 0 };
		json_t *u = json_object();
		for (size_t i = 0; i < r->n_items; i++)
			if (r->items[i].unpack_status >= MAMORI_UNPACK_UNPACKED &&
			    r->items[i].unpack_status <= MAMORI_UNPACK_ERROR)
				per[r->items[i].unpack_status]++;
		json_object_set_new(u, "mode", json_string(mamori_classify_unpack_name(r->opts->unpack)));
		json_object_set_new(u, "tried", json_integer((json_int_t)res->unpack_tried));
		for (int st = MAMORI_UNPACK_UNPACKED; st <= MAMORI_UNPACK_ERROR; st++)
			json_object_set_new(u, mamori_unpack_status_name((mamori_unpack_status)st),
					    json_integer((json_int_t)per[st]));
		json_object_set_new(u, "code_unpacked", json_integer((json_int_t)res->code_unpacked));
		json_object_set_new(
			u, "code_file",
			json_integer((json_int_t)(r->n_items - res->n_failed - res->code_unpacked)));
		json_object_set_new(root, "unpack", u);
	}
	double total = 0;
	for (size_t s = 0; s < r->n_stages; s++) {
		json_t *o = json_object();
		json_object_set_new(o, "name", json_string(r->stages[s].name));
		json_object_set_new(o, "wall_s", json_real(r->stages[s].wall_s));
		json_object_set_new(o, "peak_rss_mb", json_real(r->stages[s].peak_rss_mb));
		json_array_append_new(stages, o);
		total += r->stages[s].wall_s;
	}
	json_object_set_new(root, "wall_s", json_real(total));
	json_object_set_new(root, "peak_rss_mb", json_real((double)mamori_peak_rss() / (1024.0 * 1024.0)));
	json_object_set_new(root, "stages", stages);
	rc = mamori_json_write_path(path, root);
	json_decref(root);
	return rc;
}

/* ------------------------------------------------------------------ */
/* The pipeline                                                         */
/* ------------------------------------------------------------------ */

const char *mamori_candidates_name(mamori_candidates c)
{
	switch (c) {
	case MAMORI_CANDIDATES_AUTO: return "auto";
	case MAMORI_CANDIDATES_LSH: return "lsh";
	case MAMORI_CANDIDATES_ALL: return "all";
	}
	return "?";
}

const char *mamori_view_name(mamori_view v)
{
	switch (v) {
	case MAMORI_VIEW_EXACT: return "exact";
	case MAMORI_VIEW_ARCH_NEUTRAL: return "arch-neutral";
	case MAMORI_VIEW_SKELETON: return "skeleton";
	case MAMORI_VIEW_MNEMONIC: return "mnemonic";
	}
	return "?";
}

const char *mamori_classify_unpack_name(mamori_classify_unpack u)
{
	switch (u) {
	case MAMORI_CLASSIFY_UNPACK_AUTO: return "auto";
	case MAMORI_CLASSIFY_UNPACK_NEVER: return "never";
	case MAMORI_CLASSIFY_UNPACK_ALWAYS: return "always";
	}
	return "?";
}

int mamori_classify_unpack_parse(mamori_classify_unpack *out, const char *s)
{
	for (int u = MAMORI_CLASSIFY_UNPACK_AUTO; u <= MAMORI_CLASSIFY_UNPACK_ALWAYS; u++)
		if (!strcmp(s, mamori_classify_unpack_name((mamori_classify_unpack)u))) {
			*out = (mamori_classify_unpack)u;
			return MAMORI_OK;
		}
	return mamori_fail(MAMORI_EINVAL, "unknown unpack mode '%s' (auto, never, always)", s);
}

int mamori_view_parse(mamori_view *out, const char *s)
{
	for (int v = MAMORI_VIEW_EXACT; v <= MAMORI_VIEW_MNEMONIC; v++)
		if (!strcmp(s, mamori_view_name((mamori_view)v))) {
			*out = (mamori_view)v;
			return MAMORI_OK;
		}
	return mamori_fail(MAMORI_EINVAL, "unknown view '%s' (exact, arch-neutral, skeleton, mnemonic)", s);
}

void mamori_classify_opts_init(mamori_classify_opts *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->db_path = "mamori.db";
	opts->out_dir = "mamori-out";
	opts->threshold = MAMORI_CLASSIFY_DEFAULT_THRESHOLD;
	opts->floor = -1;
	opts->linkage = MAMORI_LINK_AVERAGE;
	opts->candidates = MAMORI_CANDIDATES_AUTO;
	opts->view = MAMORI_CLASSIFY_DEFAULT_VIEW;
	opts->disasm = MAMORI_CLASSIFY_DEFAULT_DISASM;
}

void mamori_classify_result_free(mamori_classify_result *res)
{
	if (!res)
		return;
	for (size_t i = 0; i < res->n_samples; i++) {
		free(res->samples[i].path);
		free(res->samples[i].error);
	}
	free(res->samples);
	free(res->clusters);
	free(res);
}

static int cmp_cluster_id(const void *a, const void *b)
{
	int64_t x = ((const mamori_classify_cluster *)a)->id, y = ((const mamori_classify_cluster *)b)->id;
	return (x > y) - (x < y);
}

int mamori_classify_run(mamori_classify_result **out, const char *const *paths, size_t n_paths,
			const mamori_classify_opts *user_opts)
{
	int rc = MAMORI_OK;
	mamori_classify_opts opts = *user_opts;
	run r;
	leafset ls;
	float *seq_dist = NULL;
	size_t *rep_leaf = NULL;
	char *store_dir = NULL;
	mamori_classify_result *res = calloc(1, sizeof(*res));
	memset(&r, 0, sizeof(r));
	memset(&ls, 0, sizeof(ls));
	pthread_mutex_init(&r.lock, NULL);
	*out = NULL;
	double t0 = mamori_now();
	if (!res)
		return mamori_fail(MAMORI_ENOMEM, "result");
	if (!(opts.threshold > 0 && opts.threshold <= 1)) {
		rc = mamori_fail(MAMORI_EINVAL, "threshold %g is not in (0, 1]", opts.threshold);
		goto done;
	}
	if (opts.floor < 0)
		opts.floor = opts.threshold / 2;
	if (opts.floor > opts.threshold) {
		rc = mamori_fail(MAMORI_EINVAL, "floor %g is above the threshold %g", opts.floor,
				 opts.threshold);
		goto done;
	}
	if (!opts.jobs)
		opts.jobs = default_jobs();
	r.opts = &opts;
	r.disasm.method = opts.disasm;
	/* Symbols would make a stripped and an unstripped build of one program
	 * disassemble differently under the probabilistic method. */
	r.disasm.no_symbols = true;
	r.analyzer = mamori_disasm_analyzer_id(&r.disasm);
	snprintf(r.analyzer_unpack, sizeof(r.analyzer_unpack), "%s+unpack1", r.analyzer);
	if (opts.unpack == MAMORI_CLASSIFY_UNPACK_NEVER)
		snprintf(r.analyzer_run, sizeof(r.analyzer_run), "%s", r.analyzer);
	else
		snprintf(r.analyzer_run, sizeof(r.analyzer_run), "%s+unpack-%s", r.analyzer,
			 mamori_classify_unpack_name(opts.unpack));
	store_dir = opts.store_dir ? strdup(opts.store_dir) : xstrdup_printf("%s.store", opts.db_path);
	if (!store_dir) {
		rc = mamori_fail(MAMORI_ENOMEM, "store path");
		goto done;
	}
	if ((rc = mamori_mkdir_p(opts.out_dir)))
		goto done;
	if ((rc = mamori_db_open(&r.db, opts.db_path)))
		goto done;
	if ((rc = mamori_store_open(&r.store, store_dir)))
		goto done;
	if ((rc = collect_files(&r, paths, n_paths)))
		goto done;
	if (r.n_items == 0) {
		rc = mamori_fail(MAMORI_EINVAL, "no files found in the given paths");
		goto done;
	}

	stage_begin(&r);
	if ((rc = mamori_db_begin(r.db)))
		goto done;
	parallel_for(r.n_items, opts.jobs, ingest_one, &r, "ingest");
	if ((rc = mamori_db_commit(r.db)))
		goto done;
	stage_end(&r, "ingest");

	stage_begin(&r);
	if ((rc = mamori_db_begin(r.db)))
		goto done;
	parallel_for(r.n_items, opts.jobs, analyse_one, &r, "disassemble");
	if ((rc = mamori_db_commit(r.db)))
		goto done;
	stage_end(&r, "disasm");

	/* Sequences in first-seen item order make every later step deterministic
	 * whatever the thread schedule was. */
	stage_begin(&r);
	res->unique_sequences = r.n_seqs;
	size_t cells = r.n_seqs > 1 ? r.n_seqs * (r.n_seqs - 1) / 2 : 1;
	seq_dist = malloc(cells * sizeof(float));
	if (!seq_dist) {
		rc = mamori_fail(MAMORI_ENOMEM, "similarity matrix of %zu sequences", r.n_seqs);
		goto done;
	}
	for (size_t k = 0; k < cells; k++)
		seq_dist[k] = 1.0f;
	if ((rc = prepare_sequences(&r, res)) || (rc = compute_similarities(&r, seq_dist, res)))
		goto done;
	stage_end(&r, "similarity");

	stage_begin(&r);
	if ((rc = assign_leaves(&r, &ls)) || (rc = cluster_leaves(&r, &ls, seq_dist)))
		goto done;
	free(seq_dist);
	seq_dist = NULL;
	rep_leaf = calloc(ls.k ? ls.k : 1, sizeof(size_t));
	res->clusters = calloc(ls.k ? ls.k : 1, sizeof(*res->clusters));
	if (!rep_leaf || !res->clusters) {
		rc = mamori_fail(MAMORI_ENOMEM, "clusters");
		goto done;
	}
	if ((rc = pick_representatives(&ls, rep_leaf)))
		goto done;
	res->n_clusters = ls.k;
	for (size_t c = 0; c < ls.k; c++) {
		res->clusters[c].id = (int64_t)c;
		res->clusters[c].representative = ls.item_of_leaf[rep_leaf[c]];
	}
	for (size_t l = 0; l < ls.n; l++)
		res->clusters[ls.labels[l]].size++;
	for (size_t c = 0; c < ls.k; c++)
		res->clusters[c].share = ls.n ? (double)res->clusters[c].size / (double)ls.n : 0;
	qsort(res->clusters, res->n_clusters, sizeof(*res->clusters), cmp_cluster_id);
	for (size_t i = 0; i < r.n_items; i++)
		r.items[i].cluster = r.items[i].leaf >= 0 ? ls.labels[r.items[i].leaf] : -1;
	stage_end(&r, "cluster");

	stage_begin(&r);
	for (size_t i = 0; i < r.n_items; i++) {
		if (!r.items[i].ok)
			res->n_failed++;
		res->unpack_tried += r.items[i].unpack_status != 0;
		res->code_unpacked += r.items[i].ok && r.items[i].code_unpacked;
	}
	{
		const char **shas = calloc(ls.n ? ls.n : 1, sizeof(char *));
		if (!shas) {
			rc = mamori_fail(MAMORI_ENOMEM, "cluster run");
			goto done;
		}
		for (size_t l = 0; l < ls.n; l++)
			shas[l] = r.items[ls.item_of_leaf[l]].sha256;
		int64_t run_id;
		rc = mamori_db_cluster_run_save(r.db, &run_id, opts.threshold,
						mamori_linkage_name(opts.linkage), r.analyzer_run, ls.n, shas,
						ls.labels);
		free(shas);
		if (rc)
			goto done;
	}
	if ((rc = write_clusters_json(&r, &ls, res)) || (rc = write_tree_files(&r, &ls)))
		goto done;
	stage_end(&r, "output");
	if ((rc = write_stats(&r, res, &ls)))
		goto done;

	/* Hand the per-sample outcome to the caller. */
	res->samples = calloc(r.n_items, sizeof(*res->samples));
	if (!res->samples) {
		rc = mamori_fail(MAMORI_ENOMEM, "result");
		goto done;
	}
	res->n_samples = r.n_items;
	for (size_t i = 0; i < r.n_items; i++) {
		mamori_classify_sample *s = &res->samples[i];
		s->path = r.items[i].path;
		r.items[i].path = NULL;
		s->error = r.items[i].error;
		r.items[i].error = NULL;
		s->ok = r.items[i].ok;
		s->cluster = r.items[i].cluster;
		s->code_unpacked = r.items[i].code_unpacked;
		s->unpack_status = r.items[i].unpack_status;
		snprintf(s->sha256, sizeof(s->sha256), "%s", r.items[i].sha256);
	}
	res->wall_s = mamori_now() - t0;
done:
	for (size_t i = 0; i < r.n_items; i++) {
		free(r.items[i].path);
		free(r.items[i].error);
	}
	free(r.items);
	for (size_t s = 0; s < r.n_seqs; s++)
		free(r.seqs[s].tokens);
	free(r.seqs);
	free(r.seq_table);
	free(seq_dist);
	free(rep_leaf);
	free(store_dir);
	leafset_free(&ls);
	mamori_store_free(r.store);
	mamori_db_free(r.db);
	pthread_mutex_destroy(&r.lock);
	if (rc != MAMORI_OK) {
		mamori_classify_result_free(res);
		return rc;
	}
	*out = res;
	return MAMORI_OK;
}
