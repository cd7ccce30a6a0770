/*
 * The unpacker end to end (issue 4): our fixtures packed by our own test
 * packers are emulated, the OEP is found, and the dump is checked against
 * the original (entry, imports, code similarity). Also the outcomes that
 * are not a dump: an unpacked program, an infinite loop, a file that
 * crashes Unicorn itself (isolation), a wall-clock timeout; the report's
 * shape; the static pack hint.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fixture.h"
#include "mamori/base.h"
#include "mamori/binfmt.h"
#include "mamori/disasm.h"
#include "mamori/emu.h"
#include "mamori/similarity.h"
#include "testpack.h"

/* Tokens of a PE's code, as classification sees them. */
static uint32_t *tokens_of(const uint8_t *data, size_t len, size_t *n)
{
	mamori_binary *b = NULL;
	mamori_listing *l = NULL;
	mamori_disasm_opts o = { .method = MAMORI_DISASM_PROBABILISTIC, .no_symbols = true };
	assert_int_equal(mamori_binary_parse(&b, data, len, NULL), MAMORI_OK);
	assert_int_equal(mamori_disasm(&l, b, &o), MAMORI_OK);
	uint32_t *t = malloc((l->count + 1) * sizeof(*t));
	assert_non_null(t);
	for (size_t i = 0; i < l->count; i++)
		t[i] = l->insns[i].token;
	*n = l->count;
	mamori_listing_free(l);
	mamori_binary_free(b);
	return t;
}

static double code_similarity(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	size_t n, m;
	uint32_t *ta = tokens_of(a, alen, &n), *tb = tokens_of(b, blen, &m);
	double s = 0;
	assert_int_equal(mamori_similarity(&s, ta, n, tb, m, 0), MAMORI_OK);
	free(ta);
	free(tb);
	return s;
}

static json_t *report_of(const mamori_unpack_result *r)
{
	json_error_t jerr;
	assert_non_null(r->report_json);
	json_t *root = json_loads(r->report_json, 0, &jerr);
	if (!root)
		fail_msg("report is not JSON: %s", jerr.text);
	return root;
}

/* Every import (DLL, name) of `orig` is among the dump's, DLL names compared
 * without case (the file says "KERNEL32.dll", the stand-in "kernel32.dll"). */
static void check_imports(const mamori_binary *orig, const mamori_binary *dump, const char *what)
{
	assert_true(orig->n_imports > 0);
	for (size_t i = 0; i < orig->n_imports; i++) {
		const mamori_import *want = &orig->imports[i];
		bool found = false;
		for (size_t k = 0; k < dump->n_imports && !found; k++) {
			const mamori_import *got = &dump->imports[k];
			found = !strcasecmp(want->dll, got->dll) && want->name && got->name &&
				!strcmp(want->name, got->name);
		}
		if (!found && want->name)
			fail_msg("%s: import %s!%s is missing from the dump (%zu imports)", what, want->dll,
				 want->name, dump->n_imports);
	}
}

/* Run `b` in the emulator to its exit; its output (a heap copy) and exit code. */
static char *emulated_output(const mamori_binary *b, uint32_t *exit_code)
{
	mamori_emu *e = NULL;
	mamori_emu_report rep;
	size_t n = 0;
	assert_int_equal(mamori_emu_new(&e, b, NULL), MAMORI_OK);
	assert_int_equal(mamori_emu_run(e, &rep), MAMORI_OK);
	assert_int_equal(rep.status, MAMORI_EMU_EXIT);
	const uint8_t *out = mamori_emu_output(e, &n);
	char *copy = calloc(1, n + 1);
	assert_non_null(copy);
	if (n)
		memcpy(copy, out, n);
	*exit_code = rep.exit_code;
	mamori_emu_free(e);
	return copy;
}

typedef int (*pack_fn)(uint8_t **out, size_t *out_len, const uint8_t *in, size_t len, uint32_t key,
		       uint32_t *oep_rva);

static int pack_xor(uint8_t **out, size_t *out_len, const uint8_t *in, size_t len, uint32_t key,
		    uint32_t *oep_rva)
{
	mamori_testpack_info info;
	int rc = mamori_testpack_xor(out, out_len, &info, in, len, key);
	*oep_rva = info.oep_rva;
	return rc;
}

/*
 * Pack `name` with `pack` under `key`, unpack it (isolated unless
 * `in_process`) and check the outcome against the original.
 */
static void check_unpack(const char *name, pack_fn pack, const char *technique, uint32_t key, bool in_process)
{
	fixture orig = load(name);
	uint8_t *packed = NULL;
	size_t packed_len = 0;
	uint32_t oep_rva = 0;
	char what[128];
	snprintf(what, sizeof(what), "%s %s key %u", name, technique, key);
	assert_int_equal(pack(&packed, &packed_len, orig.data, orig.size, key, &oep_rva), MAMORI_OK);
	mamori_binary *ob = NULL, *pb = NULL, *db = NULL;
	assert_int_equal(mamori_binary_parse(&ob, orig.data, orig.size, NULL), MAMORI_OK);
	assert_int_equal(mamori_binary_parse(&pb, packed, packed_len, NULL), MAMORI_OK);

	mamori_unpack_options opt = { .in_process = in_process };
	mamori_unpack_result r;
	assert_int_equal(mamori_unpack(&r, packed, packed_len, &opt), MAMORI_OK);
	if (r.status != MAMORI_UNPACK_UNPACKED)
		fail_msg("%s: status %s: %.400s", what, mamori_unpack_status_name(r.status), r.report_json);
	assert_true(r.has_oep);
	assert_true(r.n_layers >= 1);
	assert_non_null(r.dump);
	if (mamori_binary_parse(&db, r.dump, r.dump_len, NULL) != MAMORI_OK)
		fail_msg("%s: the dump does not parse: %s", what, mamori_error_detail());
	/* The OEP is the original entry, wherever the image was put. */
	assert_int_equal(r.oep - db->image_base, oep_rva);
	assert_int_equal(db->entry - db->image_base, oep_rva);
	if (!strcmp(technique, "xor"))
		assert_int_equal(r.oep, pb->image_base + oep_rva);
	check_imports(ob, db, what);
	/* Raw size = virtual size for every section. */
	for (size_t i = 0; i < db->n_sections; i++)
		assert_int_equal(db->sections[i].raw_size, db->sections[i].vsize);
	/* The dump is taken at the OEP with its imports rebuilt, so it runs
	 * like the original (here in the emulator, both archs; the CLI test
	 * also runs 64-bit dumps under wine64). */
	uint32_t orig_exit = 0, dump_exit = 0;
	char *orig_out = emulated_output(ob, &orig_exit), *dump_out = emulated_output(db, &dump_exit);
	if (strcmp(orig_out, dump_out) || orig_exit != dump_exit)
		fail_msg("%s: the dump prints '%s' (exit %u), the original '%s' (exit %u)", what, dump_out,
			 dump_exit, orig_out, orig_exit);
	assert_true(strlen(orig_out) > 0);
	free(orig_out);
	free(dump_out);
	double s = code_similarity(orig.data, orig.size, r.dump, r.dump_len);
	if (s < 0.95)
		fail_msg("%s: similarity dump vs original %.3f < 0.95", what, s);

	json_t *root = report_of(&r);
	assert_string_equal(json_string_value(json_object_get(root, "status")), "unpacked");
	assert_int_equal((uint64_t)json_integer_value(json_object_get(root, "oep")), r.oep);
	json_t *dump = json_object_get(root, "dump");
	assert_true(json_is_object(dump));
	assert_int_equal(json_integer_value(json_object_get(dump, "entry_rva")), oep_rva);
	assert_int_equal(json_integer_value(json_object_get(dump, "size")), r.dump_len);
	json_decref(root);

	mamori_unpack_result_free(&r);
	mamori_binary_free(db);
	mamori_binary_free(pb);
	mamori_binary_free(ob);
	free(packed);
	free(orig.data);
}

static void test_xor_pe32(void **state)
{
	(void)state;
	for (uint32_t k = 1; k <= 3; k++)
		check_unpack("pe32.exe", pack_xor, "xor", k * 2654435761u, k == 1);
}

static void test_xor_pe64(void **state)
{
	(void)state;
	for (uint32_t k = 1; k <= 3; k++)
		check_unpack("pe64.exe", pack_xor, "xor", k * 2654435761u, k == 1);
}

static int pack_lz(uint8_t **out, size_t *out_len, const uint8_t *in, size_t len, uint32_t key,
		   uint32_t *oep_rva)
{
	mamori_testpack_image_info info;
	int rc = mamori_testpack_lz(out, out_len, &info, in, len, key, NULL);
	*oep_rva = info.oep_rva;
	return rc;
}

static int pack_antiemu(uint8_t **out, size_t *out_len, const uint8_t *in, size_t len, uint32_t key,
			uint32_t *oep_rva)
{
	mamori_testpack_image_info info;
	int rc = mamori_testpack_antiemu(out, out_len, &info, in, len, key, NULL);
	*oep_rva = info.oep_rva;
	return rc;
}

static int pack_nested(uint8_t **out, size_t *out_len, const uint8_t *in, size_t len, uint32_t key,
		       uint32_t *oep_rva)
{
	mamori_testpack_image_info info;
	int rc = mamori_testpack_nested(out, out_len, &info, in, len, key, NULL);
	*oep_rva = info.oep_rva;
	return rc;
}

static void test_lz(void **state)
{
	(void)state;
	check_unpack("pe32.exe", pack_lz, "lz", 11, false);
	check_unpack("pe64.exe", pack_lz, "lz", 12, false);
}

static void test_nested(void **state)
{
	(void)state;
	check_unpack("pe32.exe", pack_nested, "nested", 21, false); /* outer xor (bit 0) */
	check_unpack("pe64.exe", pack_nested, "nested", 22, false); /* outer lz */
}

static void test_antiemu(void **state)
{
	(void)state;
	check_unpack("pe32.exe", pack_antiemu, "antiemu", 31, false);
	check_unpack("pe64.exe", pack_antiemu, "antiemu", 32, false);
}

/* The unpacked fixtures run without executing memory they wrote. */
static void test_not_packed(void **state)
{
	(void)state;
	const char *names[] = { "pe32.exe", "pe64.exe" };
	for (size_t i = 0; i < 2; i++) {
		fixture f = load(names[i]);
		mamori_unpack_result r;
		assert_int_equal(mamori_unpack(&r, f.data, f.size, NULL), MAMORI_OK);
		if (r.status != MAMORI_UNPACK_NOT_PACKED)
			fail_msg("%s: %s: %.300s", names[i], mamori_unpack_status_name(r.status),
				 r.report_json);
		assert_false(r.has_oep);
		assert_null(r.dump);
		json_t *root = report_of(&r);
		assert_true(json_is_null(json_object_get(root, "oep")));
		assert_true(json_is_null(json_object_get(root, "dump")));
		json_decref(root);
		mamori_unpack_result_free(&r);
		free(f.data);
	}
}

static void le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* pe32.exe with `code` written over its entry point. */
static fixture patched_entry(const uint8_t *code, size_t n)
{
	fixture f = load("pe32.exe");
	mamori_binary *b = NULL;
	const uint8_t *at;
	size_t avail;
	assert_int_equal(mamori_binary_parse(&b, f.data, f.size, NULL), MAMORI_OK);
	assert_int_equal(mamori_binary_va_bytes(b, b->entry, &at, &avail), MAMORI_OK);
	assert_true(avail >= n);
	memcpy(f.data + (at - f.data), code, n);
	mamori_binary_free(b);
	return f;
}

static void test_infinite_loop_is_limit(void **state)
{
	(void)state;
	static const uint8_t loop[] = { 0xeb, 0xfe }; /* jmp $ */
	fixture f = patched_entry(loop, sizeof(loop));
	mamori_unpack_options opt = { .lim = { .max_insns = 2000000 } };
	mamori_unpack_result r;
	assert_int_equal(mamori_unpack(&r, f.data, f.size, &opt), MAMORI_OK);
	if (r.status != MAMORI_UNPACK_LIMIT)
		fail_msg("status %s: %.300s", mamori_unpack_status_name(r.status), r.report_json);
	json_t *root = report_of(&r);
	json_t *limits = json_object_get(root, "limits_hit");
	assert_true(json_array_size(limits) >= 1);
	assert_string_equal(json_string_value(json_array_get(limits, 0)), "insns");
	json_decref(root);
	mamori_unpack_result_free(&r);
	free(f.data);
}

/* A program that jumps into data it wrote and dies there at once: the
 * wild jump is not an OEP. pe32.exe's .data is at 0x409000, .bss at
 * 0x40d000. The entry copies 17 bytes of "layer" code to 0x409100 and runs
 * it; that code writes ud2 to 0x40d000 and jumps there:
 *   entry:     mov esi, entry+0x20; mov edi, 0x409100; mov ecx, 17; rep movsb
 *              mov eax, 0x409100; jmp eax
 *   entry+0x20 (copied): mov dword [0x40d000], 0x0b0f0b0f; mov eax, 0x40d000; jmp eax
 * With `direct`, the entry instead writes ud2 to 0x409100 and jumps there. */
static fixture wild_jump_pe(bool direct, uint64_t *layer_entry)
{
	fixture f = load("pe32.exe");
	mamori_binary *b = NULL;
	const uint8_t *at;
	size_t avail;
	assert_int_equal(mamori_binary_parse(&b, f.data, f.size, NULL), MAMORI_OK);
	assert_int_equal(mamori_binary_va_bytes(b, b->entry, &at, &avail), MAMORI_OK);
	uint8_t *p = f.data + (at - f.data);
	uint32_t src = (uint32_t)b->entry + 0x20;
	if (direct) {
		static const uint8_t code[] = {
			0xbf, 0x00, 0x91, 0x40, 0x00,	    /* mov edi, 0x409100 */
			0xc7, 0x07, 0x0f, 0x0b, 0x0f, 0x0b, /* mov dword [edi], ud2 ud2 */
			0xff, 0xe7,			    /* jmp edi */
		};
		memcpy(p, code, sizeof(code));
	} else {
		uint8_t code[] = {
			0xbe, 0,    0,	  0,	0,    /* mov esi, entry+0x20 */
			0xbf, 0x00, 0x91, 0x40, 0x00, /* mov edi, 0x409100 */
			0xb9, 0x11, 0x00, 0x00, 0x00, /* mov ecx, 17 */
			0xf3, 0xa4,		      /* rep movsb */
			0xb8, 0x00, 0x91, 0x40, 0x00, /* mov eax, 0x409100 */
			0xff, 0xe0,		      /* jmp eax */
		};
		static const uint8_t layer[] = {
			0xc7, 0x05, 0x00, 0xd0, 0x40,
			0x00, 0x0f, 0x0b, 0x0f, 0x0b, /* mov [0x40d000], ud2 ud2 */
			0xb8, 0x00, 0xd0, 0x40, 0x00, /* mov eax, 0x40d000 */
			0xff, 0xe0,		      /* jmp eax */
		};
		le32(code + 1, src);
		memcpy(p, code, sizeof(code));
		memcpy(p + 0x20, layer, sizeof(layer));
	}
	*layer_entry = 0x409100;
	mamori_binary_free(b);
	return f;
}

static void test_wild_jump_is_not_oep(void **state)
{
	(void)state;
	uint64_t entry;
	mamori_unpack_options opt = { .in_process = true };
	mamori_unpack_result r;

	fixture f = wild_jump_pe(true, &entry);
	assert_int_equal(mamori_unpack(&r, f.data, f.size, &opt), MAMORI_OK);
	if (r.status != MAMORI_UNPACK_NOT_PACKED)
		fail_msg("direct wild jump: %s: %.400s", mamori_unpack_status_name(r.status), r.report_json);
	mamori_unpack_result_free(&r);
	free(f.data);

	f = wild_jump_pe(false, &entry);
	assert_int_equal(mamori_unpack(&r, f.data, f.size, &opt), MAMORI_OK);
	if (r.status != MAMORI_UNPACK_UNPACKED || r.oep != entry)
		fail_msg("layer then wild jump: %s, OEP %#llx: %.600s", mamori_unpack_status_name(r.status),
			 (unsigned long long)r.oep, r.report_json);
	json_t *root = report_of(&r);
	assert_int_equal(json_integer_value(json_object_get(root, "oep_layer")), 0);
	assert_int_equal(json_array_size(json_object_get(root, "layers")), 2);
	json_decref(root);
	mamori_unpack_result_free(&r);
	free(f.data);
}

static void test_timeout_kills_child(void **state)
{
	(void)state;
	static const uint8_t loop[] = { 0xeb, 0xfe };
	fixture f = patched_entry(loop, sizeof(loop));
	mamori_unpack_options opt = { .lim = { .max_insns = 1ull << 50 }, .timeout_ms = 300 };
	mamori_unpack_result r;
	double t0 = mamori_now();
	assert_int_equal(mamori_unpack(&r, f.data, f.size, &opt), MAMORI_OK);
	double took = mamori_now() - t0;
	assert_int_equal(r.status, MAMORI_UNPACK_ERROR);
	assert_true(took < 5.0);
	json_t *root = report_of(&r);
	assert_string_equal(json_string_value(json_object_get(root, "error_kind")), "timeout");
	json_decref(root);
	mamori_unpack_result_free(&r);
	free(f.data);
}

/* A file that makes Unicorn 2.0.1 abort the process (fuzz/known): isolated,
 * it is an ERROR, and this process lives on. */
static void test_unicorn_abort_is_error(void **state)
{
	(void)state;
	char *path = fixture_path("../../fuzz/known/emu-unicorn-tcg-fatal.bin");
	uint8_t *data = NULL;
	size_t len = 0;
	assert_int_equal(mamori_file_read(&data, &len, path, MAMORI_MAX_SAMPLE_SIZE), MAMORI_OK);
	mamori_unpack_result r;
	assert_int_equal(mamori_unpack(&r, data, len, NULL), MAMORI_OK);
	json_t *root = report_of(&r);
	/* The abort happens in Unicorn; should a later Unicorn fix it, the run
	 * must still end with a status, never take this process down. */
	if (r.status == MAMORI_UNPACK_ERROR) {
		const char *err = json_string_value(json_object_get(root, "error"));
		assert_non_null(err);
		assert_non_null(strstr(err, "emulator crashed: signal 6"));
		assert_string_equal(json_string_value(json_object_get(root, "error_kind")), "crash");
	}
	json_decref(root);
	mamori_unpack_result_free(&r);
	free(data);
	free(path);
}

static void test_bad_input_is_error(void **state)
{
	(void)state;
	static const uint8_t junk[] = "MZ this is not a PE file at all";
	mamori_unpack_result r;
	assert_int_equal(mamori_unpack(&r, junk, sizeof(junk), NULL), MAMORI_OK);
	assert_int_equal(r.status, MAMORI_UNPACK_ERROR);
	json_t *root = report_of(&r);
	assert_string_equal(json_string_value(json_object_get(root, "error_kind")), "input");
	json_decref(root);
	mamori_unpack_result_free(&r);
}

/* The report's top level: the keys and their types. */
static void test_report_shape(void **state)
{
	(void)state;
	fixture orig = load("pe64.exe");
	uint8_t *packed = NULL;
	size_t packed_len = 0;
	mamori_testpack_info info;
	assert_int_equal(mamori_testpack_xor(&packed, &packed_len, &info, orig.data, orig.size, 99),
			 MAMORI_OK);
	mamori_unpack_result r;
	assert_int_equal(mamori_unpack(&r, packed, packed_len, NULL), MAMORI_OK);
	json_t *root = report_of(&r);
	assert_true(json_is_string(json_object_get(root, "status")));
	json_t *oep = json_object_get(root, "oep");
	assert_true(json_is_integer(oep) || json_is_null(oep));
	assert_true(json_is_array(json_object_get(root, "layers")));
	assert_true(json_is_integer(json_object_get(root, "api_calls")));
	assert_true(json_is_integer(json_object_get(root, "unknown_api_calls")));
	assert_true(json_is_array(json_object_get(root, "api_trace")));
	assert_true(json_is_array(json_object_get(root, "regions")));
	assert_true(json_is_array(json_object_get(root, "limits_hit")));
	assert_true(json_is_object(json_object_get(root, "emu")));
	assert_true(json_is_number(json_object_get(root, "timing_ms")));
	assert_true(json_is_true(json_object_get(root, "isolated")));
	json_t *layer = json_array_get(json_object_get(root, "layers"), 0);
	assert_non_null(layer);
	const char *keys[] = { "entry", "from", "writer", "insns", "base", "size" };
	for (size_t i = 0; i < 6; i++)
		assert_true(json_is_integer(json_object_get(layer, keys[i])));
	json_t *call = json_array_get(json_object_get(root, "api_trace"), 0);
	if (call) {
		assert_true(json_is_string(json_object_get(call, "api")));
		assert_non_null(strchr(json_string_value(json_object_get(call, "api")), '!'));
		assert_true(json_is_integer(json_object_get(call, "caller")));
	}
	json_decref(root);
	mamori_unpack_result_free(&r);
	free(packed);
	free(orig.data);
}

/* Isolated unpacks from several threads at once (classify does that). */
typedef struct thread_job {
	const uint8_t *data;
	size_t len;
	mamori_unpack_status status;
	uint64_t oep;
} thread_job;

static void *unpack_thread(void *arg)
{
	thread_job *j = arg;
	mamori_unpack_result r;
	if (mamori_unpack(&r, j->data, j->len, NULL) == MAMORI_OK) {
		j->status = r.status;
		j->oep = r.oep;
	}
	mamori_unpack_result_free(&r);
	return NULL;
}

static void test_threads(void **state)
{
	(void)state;
	fixture orig = load("pe32.exe");
	enum { N = 6 };
	uint8_t *packed[N];
	thread_job jobs[N];
	pthread_t th[N];
	mamori_testpack_info info;
	for (int i = 0; i < N; i++) {
		assert_int_equal(mamori_testpack_xor(&packed[i], &jobs[i].len, &info, orig.data, orig.size,
						     (uint32_t)(1000 + i)),
				 MAMORI_OK);
		jobs[i].data = packed[i];
		jobs[i].status = 0;
	}
	for (int i = 0; i < N; i++)
		assert_int_equal(pthread_create(&th[i], NULL, unpack_thread, &jobs[i]), 0);
	for (int i = 0; i < N; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < N; i++) {
		assert_int_equal(jobs[i].status, MAMORI_UNPACK_UNPACKED);
		assert_int_equal(jobs[i].oep, 0x400000 + info.oep_rva);
		free(packed[i]);
	}
	free(orig.data);
}

/* Code written to a fresh page and run there: no PE header around the OEP,
 * so the dump is one section under a new header. Raw code at 0x400000:
 *   mov edi, 0x410000 ; mov dword [edi], 0x90c3c031 (xor eax,eax; ret; nop)
 *   jmp edi
 * and the written page is the only section. */
static void test_dump_headerless(void **state)
{
	(void)state;
	static const uint8_t code[] = {
		0xbf, 0x00, 0x00, 0x41, 0x00,	    /* mov edi, 0x410000 */
		0xc7, 0x07, 0x31, 0xc0, 0xc3, 0x90, /* mov dword [edi], 0x90c3c031 */
		0xff, 0xe7,			    /* jmp edi */
	};
	uint8_t page[0x11000] = { 0 };
	memcpy(page, code, sizeof(code));
	mamori_emu *e = NULL;
	mamori_emu_report rep;
	assert_int_equal(mamori_emu_new_raw(&e, MAMORI_ARCH_X86, 0x400000, page, sizeof(page), NULL),
			 MAMORI_OK);
	assert_int_equal(mamori_emu_run(e, &rep), MAMORI_OK);
	assert_true(mamori_emu_layer_count(e) >= 1);
	uint64_t oep = mamori_emu_layer_at(e, mamori_emu_layer_count(e) - 1)->entry;
	assert_int_equal(oep, 0x410000);
	uint8_t *dump = NULL;
	size_t len = 0;
	assert_int_equal(mamori_emu_dump(&dump, &len, e, oep), MAMORI_OK);
	mamori_binary *b = NULL;
	assert_int_equal(mamori_binary_parse(&b, dump, len, NULL), MAMORI_OK);
	assert_int_equal(b->entry, 0x410000);
	assert_int_equal(b->n_sections, 1);
	assert_true(b->sections[0].flags & MAMORI_SEC_EXEC);
	const uint8_t *at;
	size_t avail;
	assert_int_equal(mamori_binary_va_bytes(b, 0x410000, &at, &avail), MAMORI_OK);
	assert_memory_equal(at, "\x31\xc0\xc3\x90", 4);
	mamori_binary_free(b);
	free(dump);
	mamori_emu_free(e);
}

/* Raw x86 code at 0x400000 that starts with a PE header (which the guest
 * controls, so the dump must not trust it) and then writes code to
 * 0x401000 and runs it:
 *   0x400000: "MZ" (dec ebp; pop edx), jmp 0x400200
 *   0x400200: mov edi, 0x401000; mov dword [edi], 0x90c3c031; jmp edi
 * `variant` breaks the header in one way; 0 leaves it consistent. */
static void hostile_header_image(uint8_t *img, size_t size, int variant)
{
	memset(img, 0, size);
	img[0] = 'M';
	img[1] = 'Z';
	img[2] = 0xe9; /* jmp rel32 to 0x200 */
	le32(img + 3, 0x200 - 7);
	le32(img + 0x3c, 0x40);
	memcpy(img + 0x40, "PE\0\0", 4);
	le16(img + 0x44, 0x14c);
	le16(img + 0x46, 1);
	le16(img + 0x54, 0xe0);
	le16(img + 0x56, 0x102);
	uint8_t *opt = img + 0x58;
	le16(opt, 0x10b);
	le32(opt + 16, 0x1000);
	le32(opt + 32, 0x1000);
	le32(opt + 36, 0x200);
	le32(opt + 56, 0x2000);
	le32(opt + 60, 0x200);
	le32(opt + 92, 16);
	uint8_t *sec = img + 0x58 + 0xe0;
	memcpy(sec, ".text", 5);
	le32(sec + 8, 0x1000);
	le32(sec + 12, 0x1000);
	le32(sec + 16, 0x1000);
	le32(sec + 20, 0x1000);
	le32(sec + 36, 0xe0000020);
	switch (variant) {
	case 1: le16(img + 0x46, 0xffff); break;	/* sections far past the header page */
	case 2: le32(sec + 8, 0xffffffffu); break;	/* a section larger than the region */
	case 3: le32(opt + 32, 3); break;		/* alignment not a power of two */
	case 4: le32(sec + 12, 0x0); break;		/* section over the header */
	case 5: le32(img + 0x3c, 0xfffffff0u); break;	/* e_lfanew out of the region */
	case 6: le16(img + 0x54, 0xffff); break;	/* optional header out of the region */
	case 7: le32(opt + 92, 0xffffffffu); break;	/* absurd directory count */
	case 8: le32(opt + 96 + 8, 0x7ffff000u); break; /* import directory pointing nowhere */
	}
	static const uint8_t code[] = {
		0xbf, 0x00, 0x10, 0x40, 0x00,	    /* mov edi, 0x401000 */
		0xc7, 0x07, 0x31, 0xc0, 0xc3, 0x90, /* mov dword [edi], 0x90c3c031 */
		0xff, 0xe7,			    /* jmp edi */
	};
	memcpy(img + 0x200, code, sizeof(code));
}

/* Whatever the header says, the dump parses and its entry is the OEP. */
static void test_dump_hostile_header(void **state)
{
	(void)state;
	static uint8_t img[0x2000];
	for (int variant = 0; variant <= 8; variant++) {
		hostile_header_image(img, sizeof(img), variant);
		mamori_emu *e = NULL;
		mamori_emu_report rep;
		assert_int_equal(mamori_emu_new_raw(&e, MAMORI_ARCH_X86, 0x400000, img, sizeof(img), NULL),
				 MAMORI_OK);
		assert_int_equal(mamori_emu_run(e, &rep), MAMORI_OK);
		assert_true(mamori_emu_layer_count(e) >= 1);
		uint64_t oep = mamori_emu_layer_at(e, mamori_emu_layer_count(e) - 1)->entry;
		assert_int_equal(oep, 0x401000);
		uint8_t *dump = NULL;
		size_t len = 0;
		if (mamori_emu_dump(&dump, &len, e, oep) != MAMORI_OK)
			fail_msg("variant %d: %s", variant, mamori_error_detail());
		mamori_binary *b = NULL;
		assert_int_equal(mamori_binary_parse(&b, dump, len, NULL), MAMORI_OK);
		assert_int_equal(b->entry, 0x401000);
		const uint8_t *at;
		size_t avail;
		assert_int_equal(mamori_binary_va_bytes(b, 0x401000, &at, &avail), MAMORI_OK);
		assert_memory_equal(at, "\x31\xc0\xc3\x90", 4);
		if (variant == 0) /* the consistent header's layout is kept */
			assert_string_equal(b->sections[0].name, ".text");
		mamori_binary_free(b);
		free(dump);
		mamori_emu_free(e);
	}
}

/* The static hint: packed files say so, our plain fixtures do not. */
static void test_pack_hint(void **state)
{
	(void)state;
	const char *plain[] = { "pe32.exe", "pe64.exe", "pe64-stripped.exe" };
	for (size_t i = 0; i < 3; i++) {
		fixture f = load(plain[i]);
		mamori_binary *b = NULL;
		mamori_pack_hint h;
		assert_int_equal(mamori_binary_parse(&b, f.data, f.size, NULL), MAMORI_OK);
		mamori_pack_hint_of(&h, b);
		if (h.packed)
			fail_msg("%s looks packed: %s", plain[i], h.why);
		assert_true(h.max_entropy > 0 && h.max_entropy < 7.2);
		mamori_binary_free(b);
		free(f.data);
	}
	pack_fn packers[] = { pack_xor, pack_lz, pack_nested, pack_antiemu };
	const char *names[] = { "xor", "lz", "nested", "antiemu" };
	const char *fx[] = { "pe32.exe", "pe64.exe" };
	for (size_t p = 0; p < 4; p++) {
		for (size_t a = 0; a < 2; a++) {
			fixture f = load(fx[a]);
			uint8_t *packed = NULL;
			size_t len = 0;
			uint32_t oep;
			assert_int_equal(packers[p](&packed, &len, f.data, f.size, 77, &oep), MAMORI_OK);
			mamori_binary *b = NULL;
			mamori_pack_hint h;
			assert_int_equal(mamori_binary_parse(&b, packed, len, NULL), MAMORI_OK);
			mamori_pack_hint_of(&h, b);
			if (!h.packed)
				fail_msg("%s %s does not look packed: %s", fx[a], names[p], h.why);
			assert_true(h.why[0] != '\0');
			mamori_binary_free(b);
			free(packed);
			free(f.data);
		}
	}
	mamori_pack_hint h;
	mamori_pack_hint_of(&h, NULL);
	assert_false(h.packed);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pack_hint),
		cmocka_unit_test(test_bad_input_is_error),
		cmocka_unit_test(test_dump_headerless),
		cmocka_unit_test(test_dump_hostile_header),
		cmocka_unit_test(test_xor_pe32),
		cmocka_unit_test(test_xor_pe64),
		cmocka_unit_test(test_lz),
		cmocka_unit_test(test_nested),
		cmocka_unit_test(test_antiemu),
		cmocka_unit_test(test_not_packed),
		cmocka_unit_test(test_infinite_loop_is_limit),
		cmocka_unit_test(test_wild_jump_is_not_oep),
		cmocka_unit_test(test_timeout_kills_child),
		cmocka_unit_test(test_unicorn_abort_is_error),
		cmocka_unit_test(test_report_shape),
		cmocka_unit_test(test_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
