/*
 * End to end for issue 4: pack the fixtures with every test packer, emulate
 * the packed files with mamori's emulator, and check
 *  - xor under many keys: the first write-then-execute event is the
 *    original entry point (the OEP a generic unpacker must find);
 *  - every technique, both archs, two keys: the run reaches exit, the last
 *    layer is the OEP (image base + entry RVA for xor; for the image
 *    packers the start of the unpacked image, whose own headers are found
 *    there, + entry RVA), and the packed program prints what the original
 *    prints and exits with its code. This is how the 32-bit packed programs
 *    are checked (no 32-bit Wine here); the 64-bit ones also run under
 *    wine64 in test_packers.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "mamori/base.h"
#include "mamori/binfmt.h"
#include "mamori/emu.h"
#include "testpack.h"

static void check_oep(const char *name, uint32_t key)
{
	uint8_t *packed = NULL;
	size_t packed_len = 0;
	mamori_testpack_info info;
	mamori_binary *bin = NULL;
	mamori_emu *emu = NULL;
	mamori_emu_report rep;
	fixture orig = load(name);
	assert_int_equal(mamori_testpack_xor(&packed, &packed_len, &info, orig.data, orig.size, key),
			 MAMORI_OK);
	assert_int_equal(mamori_binary_parse(&bin, packed, packed_len, NULL), MAMORI_OK);
	mamori_emu_limits lim = mamori_emu_limits_default();
	lim.stop_at_wx = true;
	lim.max_insns = 50000000;
	assert_int_equal(mamori_emu_new(&emu, bin, &lim), MAMORI_OK);
	assert_int_equal(mamori_emu_run(emu, &rep), MAMORI_OK);
	if (rep.status != MAMORI_EMU_WX_STOP || rep.wx_va != bin->image_base + info.oep_rva)
		fail_msg("%s key %u: status %s, wx_va %#llx, OEP %#llx", name, key,
			 mamori_emu_status_name(rep.status), (unsigned long long)rep.wx_va,
			 (unsigned long long)(bin->image_base + info.oep_rva));
	/* The stub ran: at least one instruction per encrypted byte. */
	assert_true(rep.wx_insns >= info.text_size);
	mamori_emu_free(emu);
	mamori_binary_free(bin);
	free(packed);
	free(orig.data);
}

static void test_oep_pe32(void **state)
{
	(void)state;
	for (uint32_t key = 1; key <= 8; key++)
		check_oep("pe32.exe", key * 2654435761u);
}

static void test_oep_pe64(void **state)
{
	(void)state;
	for (uint32_t key = 1; key <= 8; key++)
		check_oep("pe64.exe", key * 2654435761u);
}

typedef enum technique { T_XOR, T_LZ, T_ANTIEMU, T_NESTED_XOR, T_NESTED_LZ, T_NESTED3, T_END } technique;

static const char *const technique_names[] = { "xor",		"lz",
					       "antiemu",	"nested(lz,xor)",
					       "nested(lz,lz)", "nested(lz,lz,xor)" };
/* Layers of written code each technique shows: one per stub that unpacks. */
static const size_t technique_layers[] = { 1, 1, 1, 2, 2, 3 };

static int pack(technique t, uint8_t **out, size_t *out_len, mamori_testpack_image_info *info,
		const fixture *f, uint32_t key)
{
	mamori_testpack_opts opt = { .sleep_ms = 25 };
	mamori_testpack_info xi;
	int rc;

	switch (t) {
	case T_XOR:
		rc = mamori_testpack_xor(out, out_len, &xi, f->data, f->size, key);
		memset(info, 0, sizeof(*info));
		info->oep_rva = xi.oep_rva;
		return rc;
	case T_LZ: return mamori_testpack_lz(out, out_len, info, f->data, f->size, key, &opt);
	case T_ANTIEMU: return mamori_testpack_antiemu(out, out_len, info, f->data, f->size, key, &opt);
	case T_NESTED_XOR: opt.outer = MAMORI_TESTPACK_OUTER_XOR; break;
	case T_NESTED_LZ: opt.outer = MAMORI_TESTPACK_OUTER_LZ; break;
	case T_NESTED3:
		opt.outer = MAMORI_TESTPACK_OUTER_XOR;
		opt.layers = 3;
		break;
	default: return MAMORI_EINVAL;
	}
	return mamori_testpack_nested(out, out_len, info, f->data, f->size, key, &opt);
}

/* What one emulated run printed and how it ended. */
typedef struct run_result {
	mamori_emu_report rep;
	char out[4096];
} run_result;

static mamori_emu *emulate(run_result *r, const uint8_t *data, size_t len)
{
	mamori_binary *bin = NULL;
	mamori_emu *emu = NULL;

	assert_int_equal(mamori_binary_parse(&bin, data, len, NULL), MAMORI_OK);
	mamori_emu_limits lim = mamori_emu_limits_default();
	lim.max_insns = 200000000;
	lim.cmdline = "prog.exe abc defg";
	assert_int_equal(mamori_emu_new(&emu, bin, &lim), MAMORI_OK);
	assert_int_equal(mamori_emu_run(emu, &r->rep), MAMORI_OK);
	size_t n = 0;
	const uint8_t *o = mamori_emu_output(emu, &n);
	if (n >= sizeof(r->out))
		n = sizeof(r->out) - 1;
	if (n)
		memcpy(r->out, o, n);
	r->out[n] = 0;
	mamori_binary_free(bin);
	return emu;
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The last layer is the OEP: for xor the image's own entry; else the
 * unpacked image's start (its MZ/PE headers there, entry RVA matching) +
 * the entry RVA. */
static void check_last_layer(const mamori_emu *emu, technique t, const mamori_testpack_image_info *info,
			     const char *what)
{
	size_t n = mamori_emu_layer_count(emu);
	if (n < technique_layers[t])
		fail_msg("%s: %zu layers, want >= %zu", what, n, technique_layers[t]);
	const mamori_emu_layer *last = mamori_emu_layer_at(emu, n - 1);
	assert_non_null(last);
	if (t == T_XOR) {
		if (last->entry != mamori_emu_image_base(emu) + info->oep_rva)
			fail_msg("%s: last layer %#llx, OEP %#llx", what, (unsigned long long)last->entry,
				 (unsigned long long)(mamori_emu_image_base(emu) + info->oep_rva));
		return;
	}
	uint64_t base = last->entry - info->oep_rva;
	uint8_t hdr[0x200];
	if (mamori_emu_read(emu, base, hdr, sizeof(hdr)) != MAMORI_OK || hdr[0] != 'M' || hdr[1] != 'Z')
		fail_msg("%s: last layer %#llx is not the OEP (no image at %#llx)", what,
			 (unsigned long long)last->entry, (unsigned long long)base);
	uint32_t pe = le32(hdr + 0x3c);
	assert_true(pe + 24 + 20 <= sizeof(hdr));
	assert_int_equal(le32(hdr + pe + 24 + 16), info->oep_rva);
	assert_true(base != mamori_emu_image_base(emu)); /* unpacked elsewhere, not in place */
}

static void check_runs(const char *name)
{
	fixture f = load(name);
	run_result orig, packed;
	mamori_emu *emu = emulate(&orig, f.data, f.size);
	mamori_emu_free(emu);
	if (orig.rep.status != MAMORI_EMU_EXIT)
		fail_msg("%s: the original does not run to exit in the emulator (%s %s %s)", name,
			 mamori_emu_status_name(orig.rep.status), orig.rep.limit ? orig.rep.limit : "",
			 orig.rep.fault ? orig.rep.fault : "");
	assert_true(strlen(orig.out) > 3);
	for (technique t = T_XOR; t < T_END; t++) {
		static const uint32_t keys[] = { 5u, 0x80000006u };
		for (size_t ki = 0; ki < sizeof(keys) / sizeof(*keys); ki++) {
			uint32_t key = keys[ki];
			char what[128];
			uint8_t *o = NULL;
			size_t olen = 0;
			mamori_testpack_image_info info;
			snprintf(what, sizeof(what), "%s %s key %#x", name, technique_names[t], key);
			assert_int_equal(pack(t, &o, &olen, &info, &f, key), MAMORI_OK);
			emu = emulate(&packed, o, olen);
			if (packed.rep.status != MAMORI_EMU_EXIT ||
			    packed.rep.exit_code != orig.rep.exit_code || strcmp(packed.out, orig.out) != 0)
				fail_msg("%s: %s (%s%s, pc %#llx, %llu insns) exit %u output '%s'; original "
					 "exit %u "
					 "output '%s'",
					 what, mamori_emu_status_name(packed.rep.status),
					 packed.rep.limit ? packed.rep.limit : "",
					 packed.rep.fault ? packed.rep.fault : "",
					 (unsigned long long)packed.rep.pc,
					 (unsigned long long)packed.rep.insns, packed.rep.exit_code,
					 packed.out, orig.rep.exit_code, orig.out);
			check_last_layer(emu, t, &info, what);
			fprintf(stderr, "%s: exit %u, same output, %zu layers, %llu insns\n", what,
				packed.rep.exit_code, mamori_emu_layer_count(emu),
				(unsigned long long)packed.rep.insns);
			mamori_emu_free(emu);
			free(o);
		}
	}
	free(f.data);
}

static void test_runs_pe32(void **state)
{
	(void)state;
	check_runs("pe32.exe");
}

static void test_runs_pe64(void **state)
{
	(void)state;
	check_runs("pe64.exe");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_oep_pe32),
		cmocka_unit_test(test_oep_pe64),
		cmocka_unit_test(test_runs_pe32),
		cmocka_unit_test(test_runs_pe64),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
