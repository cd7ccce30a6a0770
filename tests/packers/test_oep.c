/* End to end for issue 4's first technique: pack a fixture with the XOR
 * test packer under many keys, emulate the packed file with mamori's
 * emulator, and check that the first write-then-execute event is the
 * original entry point (the OEP a generic unpacker must find). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_oep_pe32),
		cmocka_unit_test(test_oep_pe64),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
